#!/usr/bin/env bash
# Reproducible HTTP benchmark: GET /health (the HTTP baseline, no engine),
# POST /execute with unique nonces under both sync settings (group commit:
# concurrent requests share a transaction), replays, and the /execute bridge
# through the embedded broker at 64 and 256 connections with p50/p99.
# Reports requests/s and the ratio to the baseline measured in the same run.
# Loopback only; bounded by DURATION.
set -eu
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 2; }
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
. bench/lib.sh
port=$(free_port)

start() {
    local t0
    t0=$(date +%s%N)
    OPENEXEC_EXECUTE=${OPENEXEC_EXECUTE:-local} build/openexec run --http-port $port --db "$work/$1.db" --db-sync "$1" 2>"$work/log" &
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
# wrk ... -> "req/s p50 p99"
measure() {
    local c=$1; shift
    wrk -t2 -c"$c" -d"$DURATION" --latency "$@" |
        awk '/Requests\/sec/ {r = $2} $1 == "50%" {p50 = $2} $1 == "99%" {p99 = $2}
             END {print r, p50, p99}'
}

start normal
read -r base base50 base99 <<<"$(measure "$CONNS" "http://127.0.0.1:$port/health")"
read -r normal n50 n99 <<<"$(BENCH_RUN=n measure "$CONNS" -s bench/execute.lua "http://127.0.0.1:$port/execute")"
read -r replay r50 r99 <<<"$(measure "$CONNS" -s bench/replay.lua "http://127.0.0.1:$port/execute")"
stop
start full
read -r full f50 f99 <<<"$(BENCH_RUN=f measure "$CONNS" -s bench/execute.lua "http://127.0.0.1:$port/execute")"
read -r full256 g50 g99 <<<"$(BENCH_RUN=g measure 256 -s bench/execute.lua "http://127.0.0.1:$port/execute")"
stop
# Through Kafka: the /execute bridge with the embedded broker.
OPENEXEC_EXECUTE=kafka start normal
kafka_ready_ms=$ready_ms
read -r b64 b64_50 b64_99 <<<"$(BENCH_RUN=k measure 64 -s bench/execute.lua "http://127.0.0.1:$port/execute")"
read -r b256 b256_50 b256_99 <<<"$(BENCH_RUN=k2 measure 256 -s bench/execute.lua "http://127.0.0.1:$port/execute")"
stop
printf '%-44s %10s %8s %10s %10s\n' "HTTP ($DURATION each)" "req/s" "ratio" "p50" "p99"
for row in "GET /health, $CONNS conns (baseline):$base:$base50:$base99" \
           "POST /execute local, db-sync normal, $CONNS:$normal:$n50:$n99" \
           "POST /execute local, db-sync full, $CONNS:$full:$f50:$f99" \
           "POST /execute local, db-sync full, 256:$full256:$g50:$g99" \
           "POST /execute replays, $CONNS:$replay:$r50:$r99" \
           "POST /execute via Kafka, 64 conns:$b64:$b64_50:$b64_99" \
           "POST /execute via Kafka, 256 conns:$b256:$b256_50:$b256_99"; do
    IFS=: read -r name r p50 p99 <<<"$row"
    printf '%-44s %10.0f %8.3f %10s %10s\n' "$name" "$r" \
        "$(awk -v a="$r" -v b="$base" 'BEGIN{print a/b}')" "$p50" "$p99"
done
echo "/ready after start, embedded broker: $kafka_ready_ms ms (target 1000 ms)"
