-- wrk script: GET as given on the command line, only the summary line.

-- The summary line bench/run.sh reads: requests/s, p50, p99, p99.9 (from
-- wrk's full latency record, in ms) and the answers that were not 2xx/3xx
-- (wrk's --latency table stops at p99).
function done(summary, latency, requests)
    io.write(string.format("BENCH %.2f %.2fms %.2fms %.2fms %d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        latency:percentile(99.9) / 1000, summary.errors.status))
end
