#!/usr/bin/env bash
# Cost with growth: one SQLite ledger (db-sync full) filled in ROUNDS rounds
# of N requests (default 10 x 200,000: to two million rows), each round on a
# fresh 16-partition embedded broker (it keeps at most 5 MiB a partition)
# and a fresh worker, timed from ready to the last receipt acknowledged.
# Prints each round's rate, its ratio to the first round's and the
# worker's peak RSS, then the time `openexec ledger audit` takes on the
# whole ledger. Loopback only.
set -eu
cd "$(dirname "$0")/.."
N=${N:-200000}
ROUNDS=${ROUNDS:-10}
SYNC=${SYNC:-full}
work=$(mktemp -d)
# LEDGER=path keeps the ledger (and goes on from its size: FIRST=round).
LEDGER=${LEDGER:-$work/g.db}
FIRST=${FIRST:-0}
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
. bench/lib.sh

printf '%-52s %10s\n' "growth (one ledger, rounds of $N, db-sync $SYNC)" "msg/s"
first=
for r in $(seq "$FIRST" $((FIRST + ROUNDS - 1))); do
    rm -f "$work/bs"
    build/openexec broker --partitions 16 --bootstrap-file "$work/bs" >/dev/null 2>"$work/broker.log" &
    bpid=$!
    pids+=($bpid)
    for _ in $(seq 50); do [ -s "$work/bs" ] && break; sleep 0.1; done
    B=$(cat "$work/bs")
    bench/requests.sh "$N" $((r * N)) |
        build/openexec produce --brokers "$B" >"$work/produce.log" 2>&1
    port=$(free_port)
    build/openexec run --brokers "$B" --http-port "$port" --db "$LEDGER" --db-sync "$SYNC" \
        2>"$work/worker.log" &
    wpid=$!
    pids+=($wpid)
    timing=$(time_worker "$port" "$wpid" "$N" "round $r")
    read -r t0 t1 rss <<<"$timing"
    kill "$wpid"; wait "$wpid" 2>/dev/null || true
    kill "$bpid"; wait "$bpid" 2>/dev/null || true
    rate=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    first=${first:-$rate}
    printf '%-52s %10d   ratio %.3f   peak RSS %d KiB\n' \
        "  rows $((r * N)) to $(((r + 1) * N))" "$rate" \
        "$(awk -v a="$rate" -v b="$first" 'BEGIN { print a / b }')" "$rss"
done
rows=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from executions").fetchone()[0])' "$LEDGER")
echo "  ledger: $rows executions, $(du -k "$LEDGER" | cut -f1) KiB"
# The whole ledger checked against its receipts log, offline.
t0=$(date +%s.%N)
summary=$(build/openexec ledger audit --db "$LEDGER")
t1=$(date +%s.%N)
printf '  ledger audit: %.1f s (%s)\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
    "$summary"
