#!/usr/bin/env bash
# A Lua action against the built-in echo, on the same footing: N requests
# (default 100,000) with the same payloads on a fresh 16-partition
# embedded broker, one worker (SQLite, db-sync full, --actions-dir
# bench/actions/ in both), timed from ready to the last receipt
# acknowledged. The Lua action, bench/actions/quote.lua, reads three fields
# of the payload and returns a table of three; echo returns the payload
# under one key. Runs in the order echo, lua, lua, echo (a run right after
# another is slower: the disk still writes the last one's ledger back) and
# reports each rate, their means and the ratio lua/echo of the means.
# Loopback only.
set -eu
cd "$(dirname "$0")/.."
N=${N:-100000}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
. bench/lib.sh

requests() { # ACTION: N JSON lines, the same payloads whatever the action
    awk -v n="$N" -v a="$1" 'BEGIN {
        for (i = 0; i < n; i++)
            printf "{\"action\":\"%s\",\"payload\":{\"item\":\"sku-%d\",\"qty\":%d,\"price_cents\":250},\"nonce\":\"bench-%d\"}\n", a, i, i % 10 + 1, i }'
}
requests echo >"$work/echo.jsonl"
requests quote >"$work/lua.jsonl"

rate_of() { # echo|lua RUN: prints msg/s and peak RSS
    local what=$1 run=$2
    rm -f "$work/bs"
    build/openexec broker --partitions 16 --bootstrap-file "$work/bs" >/dev/null 2>"$work/broker.log" &
    local bpid=$!
    pids+=($bpid)
    for _ in $(seq 50); do [ -s "$work/bs" ] && break; sleep 0.1; done
    local B
    B=$(cat "$work/bs")
    build/openexec produce --brokers "$B" <"$work/$what.jsonl" >"$work/produce.log" 2>&1
    local port
    port=$(free_port)
    build/openexec run --brokers "$B" --http-port "$port" --db "$work/$what-$run.db" \
        --db-sync full --actions-dir bench/actions 2>"$work/worker-$what-$run.log" &
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

read -r e1 e1_rss <<<"$(rate_of echo 1)"
read -r l1 l1_rss <<<"$(rate_of lua 2)"
read -r l2 l2_rss <<<"$(rate_of lua 3)"
read -r e2 e2_rss <<<"$(rate_of echo 4)"
awk -v n="$N" -v e1="$e1" -v e2="$e2" -v l1="$l1" -v l2="$l2" \
    -v er="$((e1_rss > e2_rss ? e1_rss : e2_rss))" -v lr="$((l1_rss > l2_rss ? l1_rss : l2_rss))" 'BEGIN {
    e = (e1 + e2) / 2; l = (l1 + l2) / 2;
    printf "%-52s %10s\n", "Lua action vs echo (" n " requests, 16 partitions, db-sync full)", "msg/s";
    printf "%-52s %10.0f   runs %d, %d   peak RSS %d KiB\n", "  echo (built in)", e, e1, e2, er;
    printf "%-52s %10.0f   runs %d, %d   peak RSS %d KiB   ratio to echo %.3f\n",
        "  Lua action (bench/actions/quote.lua)", l, l1, l2, lr, l / e;
}'
