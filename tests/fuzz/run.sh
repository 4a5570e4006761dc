#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz/ one after the other (the
# machines are shared: never two at once), each for SECONDS seconds.
#   tests/fuzz/run.sh SECONDS [TARGET...]
# Without targets it runs every tests/fuzz/fuzz_<target>.c.
# Each target starts from its seed corpus tests/fuzz/corpus/<target>/ (read
# only) plus what earlier runs found in build/fuzz/corpus/<target>/, where
# new inputs go; crash files go to build/fuzz/artifacts/, never into the
# source tree. Prints one line per target with libFuzzer's final counts and
# a closing line "N passed, N failed" (a target fails when libFuzzer reports
# a crash, leak, timeout or broken property, or cannot run at all).
set -u
cd "$(dirname "$0")/../.."
seconds=${1:?usage: tests/fuzz/run.sh SECONDS [TARGET...]}
shift
if [ $# -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        t=${f#tests/fuzz/fuzz_}
        set -- "$@" "${t%.c}"
    done
fi
passed=0
failed=0
mkdir -p build/fuzz/artifacts build/fuzz/logs
for t in "$@"; do
    bin=build/fuzz/fuzz_$t
    work=build/fuzz/corpus/$t
    log=build/fuzz/logs/$t.log
    mkdir -p "$work"
    # Inputs are at most 16 KiB, so one allocation of 64 MiB is a finding
    # (avro-c allocates a declared length before checking that the bytes
    # are there; the codec's bounds walk must keep such lengths from it);
    # -timeout catches a decoder that hangs on one input.
    "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=1024 -malloc_limit_mb=64 -max_len=16384 \
        -artifact_prefix="build/fuzz/artifacts/$t-" \
        "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1
    status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)
    if [ "$status" -eq 0 ] && [ -n "$execs" ]; then
        passed=$((passed + 1))
        echo "fuzz_$t: ok, ${execs} executions (${rate}/s) in ${seconds} s, ${cov:-cov: ?}"
    else
        failed=$((failed + 1))
        echo "fuzz_$t: FAILED (exit status $status), log $log:"
        grep -E 'ERROR|SUMMARY|property violated|runtime error|Test unit written' "$log" | head -n 20
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
