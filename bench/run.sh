#!/usr/bin/env bash
# Reproducible HTTP benchmark: GET /health (the HTTP baseline, no engine),
# POST /execute with unique nonces (a SQLite commit each) under both sync
# settings, and replays. Reports requests/s and the ratio to the baseline
# measured in the same run. Loopback only; bounded by DURATION.
set -eu
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
CONNS=${CONNS:-16}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 2; }
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))

start() {
    OPENEXEC_EXECUTE=${OPENEXEC_EXECUTE:-local} build/openexec run --http-port $port --db "$work/$1.db" --db-sync "$1" 2>"$work/log" &
    pid=$!
    for _ in $(seq 100); do curl -sf localhost:$port/ready >/dev/null && return; sleep 0.1; done
    echo "server did not start"; cat "$work/log"; exit 1
}
stop() { kill $pid; wait $pid || true; pid=; }
rate() { wrk -t2 -c"$CONNS" -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }

start normal
base=$(rate "http://127.0.0.1:$port/health")
normal=$(BENCH_RUN=n rate -s bench/execute.lua "http://127.0.0.1:$port/execute")
replay=$(rate -s bench/replay.lua "http://127.0.0.1:$port/execute")
stop
start full
full=$(BENCH_RUN=f rate -s bench/execute.lua "http://127.0.0.1:$port/execute")
stop
# Through Kafka: the /execute bridge with the embedded broker, 256 connections.
OPENEXEC_EXECUTE=kafka start normal
bridge=$(BENCH_RUN=k CONNS=256 rate -s bench/execute.lua "http://127.0.0.1:$port/execute")
bridge_p99=$(BENCH_RUN=k2 wrk -t2 -c256 -d"$DURATION" --latency -s bench/execute.lua \
    "http://127.0.0.1:$port/execute" | awk '$1 == "99%" {print $2}')
stop
printf '%-40s %10s %8s\n' "case ($CONNS connections, $DURATION)" "req/s" "ratio"
for row in "GET /health (baseline):$base" "POST /execute, db-sync normal:$normal" \
           "POST /execute, db-sync full:$full" "POST /execute, replays:$replay" \
           "POST /execute via Kafka, 256 conns:$bridge"; do
    name=${row%:*}; r=${row##*:}
    printf '%-40s %10.0f %8.3f\n' "$name" "$r" "$(awk -v a="$r" -v b="$base" 'BEGIN{print a/b}')"
done
echo "POST /execute via Kafka, 256 connections: p99 latency $bridge_p99"
