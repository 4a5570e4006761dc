#!/usr/bin/env bash
# Reproducible HTTP benchmark: GET /health (the HTTP baseline, no engine),
# POST /execute with unique nonces under both sync settings (group commit:
# concurrent requests share a transaction), replays, and the /execute bridge
# through the embedded broker at 64 and 256 connections. Reports requests/s,
# the ratio to the baseline measured in the same run, p50, p99 and p99.9
# (from wrk's full latency record) and the answers that were not 2xx/3xx.
# Loopback only; bounded by DURATION.
#
# ONLY=bridge runs just the Kafka bridge rows (ratios then read "-");
# OPENEXEC=path runs another build of the binary (an A/B comparison in one
# time window).
set -eu
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
ONLY=${ONLY:-all}
OPENEXEC=${OPENEXEC:-build/openexec}
case $ONLY in all | bridge) ;; *) echo "ONLY must be all or bridge"; exit 2 ;; esac
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 2; }
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
. bench/lib.sh
port=$(free_port)

start() {
    local t0
    t0=$(date +%s%N)
    OPENEXEC_EXECUTE=${OPENEXEC_EXECUTE:-local} "$OPENEXEC" run --http-port $port --db "$work/$1.db" --db-sync "$1" 2>"$work/log" &
    pid=$!
    for _ in $(seq 1000); do
        if curl -sf localhost:$port/ready >/dev/null; then
            ready_ms=$((($(date +%s%N) - t0) / 1000000))
            return
        fi
        sleep 0.01
    done
    echo "server did not start"; cat "$work/log"; exit 1
}
stop() { kill $pid; wait $pid || true; pid=; }
# measure CONNS [wrk args] -> "req/s p50 p99 p99.9 non2xx": the summary
# line of the script's done() (bench/latency.lua unless a script is given).
measure() {
    local c=$1; shift
    case " $* " in *" -s "*) ;; *) set -- -s bench/latency.lua "$@" ;; esac
    wrk -t2 -c"$c" -d"$DURATION" "$@" | awk '$1 == "BENCH" {print $2, $3, $4, $5, $6}'
}

rows=()
# row NAME "req/s p50 p99 p99.9 non2xx"
row() { rows+=("$1:${2// /:}"); }

base=
if [ "$ONLY" = all ]; then
    start normal
    m=$(measure "$CONNS" "http://127.0.0.1:$port/health")
    base=${m%% *}
    row "GET /health, $CONNS conns (baseline)" "$m"
    row "POST /execute local, db-sync normal, $CONNS" \
        "$(BENCH_RUN=n measure "$CONNS" -s bench/execute.lua "http://127.0.0.1:$port/execute")"
    replay=$(measure "$CONNS" -s bench/replay.lua "http://127.0.0.1:$port/execute")
    stop
    start full
    row "POST /execute local, db-sync full, $CONNS" \
        "$(BENCH_RUN=f measure "$CONNS" -s bench/execute.lua "http://127.0.0.1:$port/execute")"
    row "POST /execute local, db-sync full, 256" \
        "$(BENCH_RUN=g measure 256 -s bench/execute.lua "http://127.0.0.1:$port/execute")"
    row "POST /execute replays, $CONNS" "$replay"
    stop
fi
# Through Kafka: the /execute bridge with the embedded broker. Nonces are
# unique per run (BENCH_RUN carries the time): a second run on one ledger
# must not be answered as replays.
OPENEXEC_EXECUTE=kafka start normal
kafka_ready_ms=$ready_ms
run=$(date +%s%N)
row "POST /execute via Kafka, 64 conns" \
    "$(BENCH_RUN=k$run measure 64 -s bench/execute.lua "http://127.0.0.1:$port/execute")"
row "POST /execute via Kafka, 256 conns" \
    "$(BENCH_RUN=l$run measure 256 -s bench/execute.lua "http://127.0.0.1:$port/execute")"
stop
printf '%-44s %10s %8s %10s %10s %10s %7s\n' "HTTP ($DURATION each)" "req/s" "ratio" "p50" "p99" \
    "p99.9" "non2xx"
for r in "${rows[@]}"; do
    IFS=: read -r name rps p50 p99 p999 bad <<<"$r"
    ratio=-
    [ -n "$base" ] && ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN{printf "%.3f", a/b}')
    printf '%-44s %10.0f %8s %10s %10s %10s %7s\n' "$name" "$rps" "$ratio" "$p50" "$p99" "$p999" "$bad"
done
echo "/ready after start, embedded broker: $kafka_ready_ms ms (target 1000 ms)"
