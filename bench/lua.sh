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
    fresh_worker_rate "$1-$2" "$work/$1.jsonl" "$work/$1-$2.db" --actions-dir bench/actions
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
