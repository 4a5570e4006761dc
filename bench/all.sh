#!/usr/bin/env bash
# `make bench`: every benchmark, one after the other, into one report on
# stdout and in bench/results/latest.md (with the machine's CPU, the commit
# and the date). Each row carries its ratio to a baseline measured in the
# same run. Minutes, not hours: N=200,000 on the Kafka path, 100,000 per
# mode and per run of the Lua action against echo, ten rounds of 200,000
# for growth (two million rows, about two minutes).
set -eu
cd "$(dirname "$0")/.."
mkdir -p bench/results
out=bench/results/latest.md
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
    echo "# make bench"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "- CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores"
    echo
    echo '```'
    bench/run.sh
    echo
    N=${N:-200000} bench/kafka.sh
    echo
    N=${MODES_N:-100000} bench/modes.sh
    echo
    N=${LUA_N:-100000} bench/lua.sh
    echo
    bench/growth.sh
    echo '```'
} | tee "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "written to $out"
