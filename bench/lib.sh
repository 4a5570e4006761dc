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
# fails with a line on stderr if the worker exits or times out.
time_worker() {
    local port=$1 pid=$2 n=$3 what=$4 d t0 deadline
    for _ in $(seq 600); do
        curl -sf "localhost:$port/ready" >/dev/null && break
        kill -0 "$pid" 2>/dev/null || { echo "$what: the worker exited" >&2; return 1; }
        sleep 0.05
    done
    t0=$(now)
    deadline=$(($(date +%s) + 300))
    while :; do
        d=$(curl -s "localhost:$port/metrics" | awk '/^openexec_receipts_produced_total/ {print $2}')
        [ "${d:-0}" -ge "$n" ] && break
        [ "$(date +%s)" -gt "$deadline" ] && { echo "$what: timed out at ${d:-0} of $n" >&2; return 1; }
        kill -0 "$pid" 2>/dev/null || { echo "$what: the worker exited" >&2; return 1; }
        sleep 0.05
    done
    echo "$t0 $(now) $(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
}
