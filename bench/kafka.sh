#!/usr/bin/env bash
# Kafka-path benchmark: N requests already on a 16-partition embedded
# broker; measures (1) kcat consuming them raw, the transport baseline, and
# (2) one worker taking them from the topic to durable receipts (decode,
# execute, SQLite commit per batch, receipts acknowledged, offsets
# committed). Same broker, same run. Loopback only; bounded.
set -eu
cd "$(dirname "$0")/.."
N=${N:-100000}
SYNC=${SYNC:-full}
FORMAT=${FORMAT:-json}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
now() { date +%s.%N; }

build/openexec broker --partitions 16 --bootstrap-file "$work/bs" >/dev/null 2>"$work/broker.log" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/bs" ] && break; sleep 0.1; done
B=$(cat "$work/bs")

# The requests: JSON lines, produced keyed by nonce.
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
    printf "{\"action\":\"add\",\"payload\":{\"a\":%d,\"b\":2},\"nonce\":\"bench-%d\"}\n", i, i }' \
    >"$work/requests.jsonl"
build/openexec produce --brokers "$B" --format "$FORMAT" <"$work/requests.jsonl" 2>"$work/produce.log"

t0=$(now)
got=$(kcat -C -b "$B" -t openexec.requests -o beginning -e -q -c "$N" 2>/dev/null | wc -l)
t1=$(now)
[ "$got" -eq "$N" ] || { echo "kcat read $got of $N requests"; exit 1; }

port=$((20000 + RANDOM % 20000))
build/openexec run --brokers "$B" --http-port "$port" --db "$work/w.db" --db-sync "$SYNC" \
    --group-id bench 2>"$work/worker.log" &
pids+=($!)
# Start the clock when the worker is ready (its group join is not work).
for _ in $(seq 200); do curl -sf "localhost:$port/ready" >/dev/null && break; sleep 0.05; done
t2=$(now)
deadline=$(( $(date +%s) + 300 ))
while :; do
    done_n=$(curl -s "localhost:$port/metrics" | awk '/^openexec_receipts_produced_total/ {print $2}')
    [ "${done_n:-0}" -ge "$N" ] && break
    [ "$(date +%s)" -gt "$deadline" ] && { echo "timed out at $done_n of $N"; exit 1; }
    sleep 0.05
done
t3=$(now)
rss=$(awk '/VmHWM/ {print $2}' "/proc/${pids[1]}/status")
awk -v n="$N" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v rss="$rss" -v sync="$SYNC" -v fmt="$FORMAT" 'BEGIN {
    raw = n / (b - a); worker = n / (d - c);
    printf "%-52s %10s\n", "case (" n " requests, 16 partitions, " fmt ")", "msg/s";
    printf "%-52s %10.0f\n", "kcat consume (transport baseline)", raw;
    printf "%-52s %10.0f   ratio %.3f\n", "worker to durable receipts, db-sync " sync, worker, worker / raw;
    printf "%-52s %10d KiB\n", "worker peak RSS", rss;
}'
