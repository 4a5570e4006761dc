#!/usr/bin/env bash
# Kafka-path benchmark on real Apache Kafka: a one-node KRaft cluster from
# tests/kafka/kafka.sh (version: OPENEXEC_KAFKA_VERSION or kafka.sh's
# default), topics made by `openexec topics` with 16 partitions, N requests
# (bench/requests.sh, as bench/kafka.sh) published by `openexec produce`.
# Measures, through that same broker in the same run, (1) kcat consuming
# them raw, the transport baseline, and (2) one worker taking them to
# durable receipts on a SQLite ledger (decode, execute, ledger commit per
# batch, receipts acknowledged by the broker, offsets committed), and
# prints both rates and the ratio as bench/kafka.sh does. Loopback only;
# bounded; the cluster is stopped (kafka.sh down) on every exit.
set -eu
cd "$(dirname "$0")/.."
N=${N:-100000}
SYNC=${SYNC:-full}
FORMAT=${FORMAT:-json}
PARTITIONS=16
work=$(mktemp -d)
kdir=$work/kafka
wpid=
up=0
cleanup() {
    trap '' INT TERM # a second signal must not cut the cluster's shutdown short
    if [ -n "$wpid" ]; then kill "$wpid" 2>/dev/null || true; wait "$wpid" 2>/dev/null || true; fi
    [ "$up" = 0 ] || tests/kafka/kafka.sh down --dir "$kdir" >/dev/null 2>&1 ||
        echo "real_kafka.sh: kafka.sh down --dir $kdir failed" >&2
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
. bench/lib.sh
fail() { echo "real_kafka.sh: $*" >&2; exit 1; }

mkdir -p "$kdir"
up=1
tests/kafka/kafka.sh up --dir "$kdir" >"$work/up.out" 2>"$work/up.err" ||
    fail "$(cat "$work/up.err")"
B=$(sed -n 's/^bootstrap.servers=//p' "$work/up.out")
[ -n "$B" ] || fail "kafka.sh up printed no bootstrap.servers line"
version=$(cat "$kdir/version" 2>/dev/null || echo "?")

build/openexec topics --brokers "$B" --partitions "$PARTITIONS" --replication-factor 1 \
    >"$work/topics.log" 2>&1 || fail "openexec topics: $(cat "$work/topics.log")"

bench/requests.sh "$N" >"$work/requests.jsonl"
build/openexec produce --brokers "$B" --format "$FORMAT" <"$work/requests.jsonl" \
    >"$work/produce.log" 2>&1 || fail "openexec produce: $(tail -n1 "$work/produce.log")"

t0=$(now)
got=$(kcat -C -b "$B" -t openexec.requests -o beginning -e -q -c "$N" 2>/dev/null | wc -l)
t1=$(now)
[ "$got" -eq "$N" ] || fail "kcat read $got of $N requests"

port=$(free_port)
build/openexec run --brokers "$B" --http-port "$port" --db "$work/w.db" --db-sync "$SYNC" \
    --group-id bench-real-kafka 2>"$work/worker.log" &
wpid=$!
# Start the clock when the worker is ready (its group join is not work).
timing=$(time_worker "$port" "$wpid" "$N" "real Kafka") ||
    fail "$(tail -n3 "$work/worker.log")"
read -r t2 t3 rss <<<"$timing"
kill "$wpid"
wait "$wpid" 2>/dev/null || true
wpid=

awk -v n="$N" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v rss="$rss" -v sync="$SYNC" \
    -v fmt="$FORMAT" -v ver="$version" -v parts="$PARTITIONS" 'BEGIN {
    raw = n / (b - a);
    rate = n / (d - c);
    printf "%s\n", "real Apache Kafka " ver ", one KRaft node, same requests:";
    printf "%-52s %10s\n", "case (" n " requests, " parts " partitions, " fmt ")", "msg/s";
    printf "%-52s %10.0f\n", "kcat consume (transport baseline)", raw;
    printf "%-52s %10.0f   ratio %.3f\n", "worker to durable receipts, SQLite db-sync " sync,
        rate, rate / raw;
    printf "%-52s %10d KiB\n", "  peak RSS", rss;
}'
