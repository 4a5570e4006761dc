#!/usr/bin/env bash
# The worker in each mode on the same footing: N `add` requests (default
# 100,000) on a fresh 16-partition embedded broker, one worker (SQLite,
# db-sync full), timed from ready to the last receipt acknowledged: demo,
# clawshield with HMAC-SHA256 artifacts, clawshield with Ed25519 artifacts
# (signed by bench/signed_requests.py). Beside them, the single-core
# Ed25519 verify rate of `openssl speed` in the same run: the baseline of
# the Ed25519 row. Loopback only.
set -eu
cd "$(dirname "$0")/.."
N=${N:-100000}
PYTHON=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
. bench/lib.sh

bench/requests.sh "$N" >"$work/demo.jsonl"
"$PYTHON" bench/signed_requests.py "$N" hmac bench-secret >"$work/hmac.jsonl"
"$PYTHON" bench/signed_requests.py "$N" ed25519 "$work/pub.pem" >"$work/ed25519.jsonl"
verify=$(openssl speed -seconds 2 ed25519 2>/dev/null | awk '$1 == "253" && $4 == "(Ed25519)" {print $NF}')

rate_of() { # mode args...: prints msg/s and peak RSS
    local mode=$1
    shift
    fresh_worker_rate "$mode" "$work/$mode.jsonl" "$work/$mode.db" "$@"
}

read -r demo demo_rss <<<"$(rate_of demo)"
read -r hmac hmac_rss <<<"$(rate_of hmac --mode clawshield --secret bench-secret --tenant bench)"
read -r ed ed_rss <<<"$(rate_of ed25519 --mode clawshield --public-key "$(cat "$work/pub.pem")" --tenant bench)"
printf '%-52s %10s\n' "worker by mode ($N requests, 16 partitions, db-sync full)" "msg/s"
printf '%-52s %10d   peak RSS %d KiB\n' "  demo" "$demo" "$demo_rss"
printf '%-52s %10d   ratio to demo %.3f   peak RSS %d KiB\n' "  clawshield, HMAC-SHA256" "$hmac" \
    "$(awk -v a="$hmac" -v b="$demo" 'BEGIN { print a / b }')" "$hmac_rss"
printf '%-52s %10.0f\n' "  openssl speed ed25519 verify, one core" "${verify:-0}"
printf '%-52s %10d   ratio to openssl verify %.3f   peak RSS %d KiB\n' "  clawshield, Ed25519" "$ed" \
    "$(awk -v a="$ed" -v b="${verify:-0}" 'BEGIN { print (b > 0 ? a / b : 0) }')" "$ed_rss"
