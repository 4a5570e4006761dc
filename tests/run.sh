#!/usr/bin/env bash
# Runs the whole suite after `make all unit`, the sanitizer build and
# `make fuzz-build`: unit tests (normal and ASan+UBSan), a short run of every
# fuzz target, float and canonical-JSON vectors compared with Python, then
# the black-box tests of the real binary.
# Prints one closing line "total: N passed, N failed"; exits non-zero on
# any failure.
set -u
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
passed=0
failed=0
work=$(mktemp -d)
kafka_dir=$work/kafka
trap 'tests/kafka/kafka.sh down --dir "$kafka_dir" >/dev/null 2>&1; rm -rf "$work"' EXIT

# Adds the counts of a "... N passed, N failed" line from a step's output.
count() {
    local out=$1 status=$2 line p f
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    if [ -z "$line" ]; then
        failed=$((failed + 1))
        echo "   (no result line; exit status $status)"
        return
    fi
    p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+')
    f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        failed=$((failed + 1))
        echo "   (exit status $status)"
    fi
}

# Runs one step: its output goes to $step_out (the lane's own file), and
# only its last line (all of it on failure) is printed.
step_out=$work/out
step() {
    local name=$1 t0=$SECONDS
    shift
    echo "== $name"
    "$@" >"$step_out" 2>&1
    local status=$?
    if [ "$status" -ne 0 ]; then cat "$step_out"; else tail -n 1 "$step_out"; fi
    echo "   ($((SECONDS - t0)) s)"
    count "$step_out" "$status"
}

# go test of the receipt verifier (tests/verifier), ending with a line
# "N passed, N failed" of its top-level tests for count.
go_test_verifier() {
    local out status
    out=$(cd tests/verifier && go test -mod=readonly -count=1 -v ./... 2>&1)
    status=$?
    grep -vE '^(=== |    --- PASS)' <<<"$out"
    echo "$(grep -c '^--- PASS' <<<"$out") passed, $(grep -c '^--- FAIL' <<<"$out") failed"
    return "$status"
}

# test_worker runs once, in the sanitizer build below: its half minute is
# mostly the worker's backoffs against injected broker errors, the same in
# both builds, and the black-box suites run the normal build's worker
# throughout (keeps `make test` under 20 minutes).
for t in build/tests/test_*; do
    [ "$(basename "$t")" != test_worker ] || continue
    step "unit $(basename "$t")" "$t"
done
step "unit tests/verifier (go test; the receipt verifier)" go_test_verifier
# Every libFuzzer target for a few seconds (FUZZ_SMOKE_SECONDS, default 5)
# on its seed corpus and more: a broken harness, or a seed that crashes
# again (the regress-* seeds), fails the suite. `make fuzz` runs them longer.
# It runs on one core beside the sanitizer unit tests, which mostly wait
# (test_worker's backoffs); its result is printed and counted after them.
fuzz_t0=$SECONDS
tests/fuzz/run.sh "${FUZZ_SMOKE_SECONDS:-5}" >"$work/fuzz.out" 2>&1 &
fuzz_pid=$!
for t in build/san/tests/test_*; do
    step "unit (asan+ubsan) $(basename "$t")" "$t"
done
wait "$fuzz_pid"
fuzz_status=$?
echo "== fuzz smoke (libFuzzer, ASan+UBSan; beside the unit tests above)"
if [ "$fuzz_status" -ne 0 ]; then cat "$work/fuzz.out"; else tail -n 1 "$work/fuzz.out"; fi
echo "   ($((SECONDS - fuzz_t0)) s, in all)"
count "$work/fuzz.out" "$fuzz_status"

# Python's own float repr and json.dumps, compared byte for byte.
"$PYTHON" tests/engine/gen_json_vectors.py floats 200000 7 >"$work/floats"
echo "== float repr vs python (200000 vectors, counted as one test)"
if build/tests/test_json --float-vectors "$work/floats" >"$work/out" 2>&1; then
    passed=$((passed + 1)); tail -n 1 "$work/out"
else
    failed=$((failed + 1)); tail -n 25 "$work/out"
fi
"$PYTHON" tests/engine/gen_json_vectors.py docs 3000 11 "$work/docs.expected" >"$work/docs"
echo "== canonical JSON vs python (3000 documents)"
build/tests/test_json --canon "$work/docs" >"$work/docs.got" 2>&1
if cmp -s "$work/docs.got" "$work/docs.expected"; then
    passed=$((passed + 1)); echo "identical"
else
    failed=$((failed + 1)); diff "$work/docs.got" "$work/docs.expected" | head -n 20
fi

# Avro interop: python3-avro encodes requests and decodes receipts from
# schemas/ alone; the codec does the other directions.
step "avro interop with python3-avro" "$PYTHON" tests/codec/avro_interop.py selftest

# Black-box tests of the binary: real HTTP, real SQLite files, python3
# clients (Debian's interpreter, for python3-cryptography). They mostly
# wait (for brokers, groups, timeouts), so they run in two lanes: the
# embedded-broker suites here, and beside them a second lane (below) with
# the Apache Kafka node's suites, then the PostgreSQL-ledger suites. Every
# test's servers, brokers, topics, databases and temporary files are its
# own, and every port a free one (retried if taken). test_real_kafka runs
# last, alone: three brokers, kill -9s and elections, whose timings it
# measures.
#
# The second lane, first part: the Kafka suites again on Apache Kafka
# itself (KRaft, one node from the broker's jars on Maven Central,
# tests/kafka/kafka.sh), shared by the five files; each test makes topics
# of its own there with `openexec topics`. test_examples runs the client
# examples of docs/integrate.md on it too, the Java one only there (the
# embedded broker cannot serve kafka-clients). A broker that cannot be
# fetched or started fails the step with kafka.sh's reason.
# test_kafka_cluster (topics, readiness) uses the node too; test_real_kafka
# and test_kafka_secure start clusters of their own (three nodes, SASL_SSL).
apache_kafka_suites() {
    echo "== Apache Kafka for the suites"
    local up
    if up=$(tests/kafka/kafka.sh up --dir "$kafka_dir" --nodes 1 2>&1); then
        echo "$up"
        export OPENEXEC_TEST_KAFKA_BOOTSTRAP=${up#bootstrap.servers=}
        step "black-box test_kafka_cluster.py [apache kafka]" "$PYTHON" tests/http/test_kafka_cluster.py
        for t in test_kafka test_kafka_faults test_kafka_hardening test_kafka_group test_examples; do
            step "black-box $t.py [apache kafka]" env OPENEXEC_TEST_BROKER=kafka "$PYTHON" "tests/http/$t.py"
        done
        tests/kafka/kafka.sh down --dir "$kafka_dir"
        unset OPENEXEC_TEST_KAFKA_BOOTSTRAP
    else
        echo "   $up"
        failed=$((failed + 1))
    fi
}

# The second lane, second part: the same black-box suites with every
# service's ledger on PostgreSQL (a throw-away server the tests start,
# tests/http/pgcluster.py): each Server gets a database instead of a
# SQLite file. Left out: the command-line and HTTP framing tests, deploy/,
# the documents' tests (the ledger plays no part in them, or they name
# their own), and test_ledger, test_shared_ledger and test_signed_receipts,
# which choose their backends themselves, the Apache Kafka suites (their
# subject is the broker, not the ledger), and, to keep the suite short, the
# embedded-broker Kafka suites (including test_kafka_group, whose subject
# is the group's offsets, and test_examples, whose subject is the
# clients): workers on a PostgreSQL ledger are test_shared_ledger's
# (replays, conflicts, used approvals across workers, three workers under
# kill -9 and a PostgreSQL restart), and the hostile inputs stop before
# the ledger.
postgresql_suites() {
    for t in tests/http/test_*.py; do
        case $(basename "$t") in
            test_cli_config.py | test_http_hardening.py | test_ledger.py | test_shared_ledger.py | \
                test_signed_receipts.py | \
                test_real_kafka.py | test_kafka_secure.py | test_kafka_cluster.py | \
                test_kafka.py | test_kafka_faults.py | test_kafka_hardening.py | test_kafka_group.py | \
                test_examples.py | \
                test_deploy.py | test_readme.py | test_operations.py)
                continue ;;
        esac
        step "black-box $(basename "$t") [postgresql ledger]" \
            env OPENEXEC_TEST_LEDGER=postgresql "$PYTHON" "$t"
    done
}

# The second lane in the background: its output is kept in a file of its
# own, and printed and counted after the first lane.
second_lane() {
    step_out=$work/lane2.out
    passed=0
    failed=0
    apache_kafka_suites
    postgresql_suites
    echo "second lane: $passed passed, $failed failed"
}
second_lane >"$work/lane2" 2>&1 &
lane2_pid=$!

for t in tests/http/test_*.py; do
    case $(basename "$t") in
        test_kafka_cluster.py | test_real_kafka.py) continue ;;
    esac
    step "black-box $(basename "$t")" "$PYTHON" "$t"
done

wait "$lane2_pid"
lane2_status=$?
echo "== second lane (beside the suites above): Apache Kafka, PostgreSQL ledger"
cat "$work/lane2"
count "$work/lane2" "$lane2_status"

step "black-box test_real_kafka.py (alone)" "$PYTHON" tests/http/test_real_kafka.py

echo "total: $passed passed, $failed failed ($SECONDS s)"
[ "$failed" -eq 0 ]
