-- wrk script: POST /execute with a unique nonce per request.
local threads = {}
local next_id = 0

function setup(thread)
    next_id = next_id + 1
    thread:set("tid", next_id)
end

local counter = 0
function request()
    counter = counter + 1
    local body = string.format(
        '{"action":"add","payload":{"a":%d,"b":2},"nonce":"bench-%s-%d-%d"}',
        counter, os.getenv("BENCH_RUN") or "0", tid or 0, counter)
    return wrk.format("POST", "/execute", {["Content-Type"] = "application/json"}, body)
end

local non200 = 0
function response(status)
    if status ~= 200 then non200 = non200 + 1 end
end

-- The summary line bench/run.sh reads: requests/s, p50, p99, p99.9 (from
-- wrk's full latency record, in ms) and the answers that were not 2xx/3xx
-- (wrk's --latency table stops at p99).
function done(summary, latency, requests)
    io.write(string.format("BENCH %.2f %.2fms %.2fms %.2fms %d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        latency:percentile(99.9) / 1000, summary.errors.status))
end
