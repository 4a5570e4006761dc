# Shared by the benchmark scripts (sourced, not run).
now() { date +%s.%N; }

# A loopback port free now, chosen by the kernel (a random pick from a fixed
# range could land on a port a broker connection holds: ephemeral ports
# start at 32768 here).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# time_worker PORT PID N WHAT: waits until the worker on PORT (process PID)
# is ready (its group join is not work; up to 30 s), then until it has had N
# receipts acknowledged (up to 300 s). Prints "start end peak_rss_kib";
# fails with a line on stderr if the worker exits or times out. The polling
# is one Python process on one kept-alive connection (bench/wait_worker.py):
# a shell loop of curl, awk and date every 50 ms used a fifth of a CPU,
# taken from the worker it timed.
time_worker() {
    "${PYTHON:-python3}" bench/wait_worker.py "$@"
}

# fresh_worker_rate WHAT INPUT DB [RUN ARGS...]: a fresh embedded broker in
# $work, the requests of INPUT produced to it, then one worker on it (SQLite
# DB, db-sync full, RUN ARGS) timed until $N receipts are acknowledged, all
# of them executions. Prints "msg/s peak_rss_kib"; stops both.
fresh_worker_rate() {
    local what=$1 input=$2 db=$3
    shift 3
    rm -f "$work/bs"
    build/openexec broker --partitions 16 --bootstrap-file "$work/bs" >/dev/null 2>"$work/broker.log" &
    local bpid=$!
    pids+=($bpid)
    for _ in $(seq 50); do [ -s "$work/bs" ] && break; sleep 0.1; done
    local B
    B=$(cat "$work/bs")
    build/openexec produce --brokers "$B" <"$input" >"$work/produce.log" 2>&1
    local port
    port=$(free_port)
    build/openexec run --brokers "$B" --http-port "$port" --db "$db" --db-sync full \
        "$@" 2>"$work/worker-$what.log" &
    local wpid=$!
    pids+=($wpid)
    local timing t0 t1 rss
    timing=$(time_worker "$port" "$wpid" "$N" "$what")
    read -r t0 t1 rss <<<"$timing"
    local executed
    executed=$(curl -s "localhost:$port/metrics" |
        awk '/^openexec_requests_total\{status="executed"\}/ {print $2}')
    [ "${executed:-0}" -ge "$N" ] || { echo "$what: only ${executed:-0} of $N executed" >&2; exit 1; }
    kill "$wpid"; wait "$wpid" 2>/dev/null || true
    kill "$bpid"; wait "$bpid" 2>/dev/null || true
    awk -v n="$N" -v a="$t0" -v b="$t1" -v r="$rss" 'BEGIN { printf "%.0f %d", n / (b - a), r }'
}
