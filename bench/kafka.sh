#!/usr/bin/env bash
# Kafka-path benchmark: N requests already on a 16-partition embedded
# broker; measures (1) kcat consuming them raw, the transport baseline, and
# (2) one worker taking them from the topic to durable receipts (decode,
# execute, ledger commit per batch, receipts acknowledged, offsets
# committed), once on a SQLite ledger and once on PostgreSQL. Same broker,
# same run. Then the same on real Apache Kafka (bench/real_kafka.sh: one
# KRaft node, SQLite ledger) unless REAL_KAFKA=0. Loopback only; bounded.
set -eu
cd "$(dirname "$0")/.."
N=${N:-100000}
SYNC=${SYNC:-full}
FORMAT=${FORMAT:-json}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
. bench/lib.sh

build/openexec broker --partitions 16 --bootstrap-file "$work/bs" >/dev/null 2>"$work/broker.log" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/bs" ] && break; sleep 0.1; done
B=$(cat "$work/bs")

# The requests: JSON lines (bench/requests.sh), produced keyed by nonce.
bench/requests.sh "$N" >"$work/requests.jsonl"
# The transport's produce rate: kcat writing the same lines to a topic of
# their own (auto-created by the embedded broker).
tp0=$(now)
kcat -P -b "$B" -t bench.kcat -l "$work/requests.jsonl" 2>"$work/kcat-produce.log"
tp1=$(now)
build/openexec produce --brokers "$B" --format "$FORMAT" <"$work/requests.jsonl" >"$work/produce.log" 2>&1

t0=$(now)
got=$(kcat -C -b "$B" -t openexec.requests -o beginning -e -q -c "$N" 2>/dev/null | wc -l)
t1=$(now)
[ "$got" -eq "$N" ] || { echo "kcat read $got of $N requests"; exit 1; }

# One worker per entry of LEDGERS, each its own group and ledger reading
# the same N requests from the beginning: SQLite (receipts signed, the
# default), SQLite with signing off (OPENEXEC_SIGNING=off, for the
# comparison only), then PostgreSQL (a throw-away server started here, as
# in the tests; unsigned: no key given). A run right after another is
# slower (the disk still writes the last one's ledger back), and single
# runs differ by up to 30% on a small machine (its speed drifts within
# minutes), so signed and unsigned run in six blocks of A B B A: each
# rate is the mean of its twelve, and signed/unsigned is also printed per
# block, with the mean of the blocks and its standard error, so that the spread
# is seen (one block's ratio ranged from 0.77 to 1.09 on an unchanged build).
AB="sqlite sqlite-unsigned sqlite-unsigned sqlite"
LEDGERS=${LEDGERS:-$AB $AB $AB $AB $AB $AB postgresql}
PYTHON=${PYTHON:-/usr/bin/python3}
results=()
run=0
for ledger in $LEDGERS; do
    run=$((run + 1))
    if [ "$ledger" = postgresql ]; then
        "$PYTHON" -u -c '
import signal, sys
sys.path.insert(0, "tests/http")
import pgcluster
url = pgcluster.fresh_database("bench")
# The test server runs with fsync=off; a durable ledger here, as SQLite.
c = pgcluster.shared_cluster()
c.query("postgres", "ALTER SYSTEM SET fsync = on")
c.query("postgres", "SELECT pg_reload_conf()")
print(url, flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
signal.pause()' >"$work/pg.url" 2>"$work/pg.log" &
        pids+=($!)
        for _ in $(seq 300); do [ -s "$work/pg.url" ] && break; sleep 0.1; done
        [ -s "$work/pg.url" ] || { echo "PostgreSQL did not start: $(cat "$work/pg.log")"; exit 1; }
        where=(--db-url "$(cat "$work/pg.url")")
    elif [ "$ledger" = sqlite-unsigned ]; then
        where=(--db "$work/u$run.db" --db-sync "$SYNC" --signing off)
    else
        where=(--db "$work/w$run.db" --db-sync "$SYNC")
    fi
    port=$(free_port)
    build/openexec run --brokers "$B" --http-port "$port" "${where[@]}" \
        --group-id "bench-$ledger-$run" 2>"$work/worker-$ledger-$run.log" &
    wpid=$!
    pids+=($wpid)
    timing=$(time_worker "$port" "$wpid" "$N" "$ledger")
    read -r t2 t3 rss <<<"$timing"
    kill "$wpid"
    wait "$wpid" 2>/dev/null || true
    # Measured: its ledger goes, so that the disk does not write it back
    # during the next run (what is deleted before writeback is not written).
    rm -f "$work/u$run.db"* "$work/w$run.db"*
    # The size of a receipt as this run published it (Avro, the default
    # receipt format): the mean of the last 50 on each partition of the
    # receipts topic, which are this run's.
    size=$(kcat -C -b "$B" -t openexec.receipts -o -50 -e -q -f '%S\n' 2>/dev/null |
        awk '{s += $1; n++} END {print n ? int(s / n) : 0}')
    results+=("$ledger $t2 $t3 $rss $size")
done

printf '%s\n' "${results[@]}" | awk -v n="$N" -v a="$t0" -v b="$t1" -v sync="$SYNC" -v fmt="$FORMAT" \
    -v pa="$tp0" -v pb="$tp1" '
{
    # Rates of the same ledger are averaged; the peak RSS is the largest.
    if (!($1 in runs)) order[++nl] = $1;
    rate = n / ($3 - $2);
    sum[$1] += rate; runs[$1]++;
    each[$1] = each[$1] (runs[$1] > 1 ? ", " : "") sprintf("%.0f", rate);
    if ($4 > rss[$1]) rss[$1] = $4;
    bytes[$1] = $5;
    # The SQLite runs four by four: one A B B A block each.
    if ($1 == "sqlite" || $1 == "sqlite-unsigned") {
        blk = int(k / 4);
        k++;
        bsum[blk, $1] += rate; bn[blk, $1]++;
    }
}
END {
    raw = n / (b - a);
    printf "%-52s %10s\n", "case (" n " requests, 16 partitions, " fmt ")", "msg/s";
    printf "%-52s %10.0f\n", "kcat produce (transport)", n / (pb - pa);
    printf "%-52s %10.0f\n", "kcat consume (transport baseline)", raw;
    base = ("sqlite" in runs) ? sum["sqlite"] / runs["sqlite"] : 0;
    for (i = 1; i <= nl; i++) {
        l = order[i]; rate = sum[l] / runs[l];
        if (l == "sqlite") label = "worker to durable receipts, SQLite db-sync " sync " signed";
        else if (l == "sqlite-unsigned") label = "  the same, signing off";
        else label = "worker to durable receipts, PostgreSQL (fsync on)";
        extra = (l == "postgresql" && base > 0) ? sprintf("   vs SQLite %.2f", rate / base) : "";
        if (l == "sqlite-unsigned" && base > 0) extra = sprintf("   signed/unsigned %.2f", base / rate);
        printf "%-52s %10.0f   ratio %.3f%s\n", label, rate, rate / raw, extra;
        if (runs[l] > 1) printf "%-52s %s\n", "  runs (msg/s)", each[l];
        if (l == "sqlite-unsigned" && k > 4) {
            blocks = ""; nb = 0; rs = 0; rq = 0;
            for (j = 0; j * 4 < k; j++)
                if (bn[j, "sqlite"] && bn[j, "sqlite-unsigned"]) {
                    r = (bsum[j, "sqlite"] / bn[j, "sqlite"]) / (bsum[j, "sqlite-unsigned"] / bn[j, "sqlite-unsigned"]);
                    blocks = blocks (blocks == "" ? "" : ", ") sprintf("%.2f", r);
                    nb++; rs += r; rq += r * r;
                }
            if (nb > 0)
                printf "%-52s %s\n", "  signed/unsigned by block", blocks;
            if (nb > 1) {
                m = rs / nb; v = (rq - nb * m * m) / (nb - 1);
                printf "%-52s %.3f, standard error %.3f\n", "  mean of the blocks", m, sqrt(v > 0 ? v : 0) / sqrt(nb);
            }
        }
        printf "%-52s %10d KiB\n", "  peak RSS", rss[l];
        printf "%-52s %10d bytes\n", "  receipt size (mean, as published)", bytes[l];
    }
}'

# The same requests through real Apache Kafka (one KRaft node), with this
# run's N, SYNC and FORMAT; the embedded broker and workers are stopped first.
if [ "${REAL_KAFKA:-1}" != 0 ]; then
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    pids=()
    N=$N SYNC=$SYNC FORMAT=$FORMAT bench/real_kafka.sh
fi
