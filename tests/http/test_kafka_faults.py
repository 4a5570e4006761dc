"""Fault tests of the Kafka path (docs/protocol.md §5, §6; ARCHITECTURE "effectively
once"): kill -9 of a worker in the middle of a backlog, restarted on the
same database; and two workers of one consumer group of which one is
killed and not restarted.

What must hold in both: every request is answered; every receipt of a nonce
carries the same id, result, receipt and request hash (computed here in
Python from docs/protocol.md §5); no nonce executes twice in one store; committed
offsets only cover requests that are stored and answered.

The kill -9 test also measures throughput: requests/s of the worker from
its first to its last receipt (receipt timestamps are the worker's produce
times), and, through the same broker in the same test, how fast kcat and
confluent_kafka alone consume the same request messages."""

import os
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (avro_request, committed_offsets,  # noqa: E402
                     execution_id, produce, receipt_hash, request_hash, result_json,
                     run_tests, ledger_query)
import harness as h  # noqa: E402  (topic names are per test on Apache Kafka)
from test_kafka import KafkaCase, jreq  # noqa: E402

# A killed member's partitions move after session.timeout.ms; lowered from
# the worker's 10 s default so that the tests stay short.
FAST_FAILOVER = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"]

# Shorter still on the embedded broker: a member that joins or leaves a
# running group makes it hold the rebalance open for session.timeout.ms -
# 1 s, and a killed member's partitions wait for its session to expire, so
# 3 s sessions make each change take about 4 s instead of 10-15 s. For the
# tests with one live worker at a time, or a light load (about 10,000
# requests at most): there a live member whose session expired anyway
# would only cause replays, which these tests tolerate and count. Apache
# Kafka refuses sessions under its group.min.session.timeout.ms (6 s).
QUICK_SESSION_MS = 6000 if h.BROKER == "kafka" else 3000
QUICK_REBALANCE = ["-X", "session.timeout.ms=%d" % QUICK_SESSION_MS,
                   "-X", "heartbeat.interval.ms=500"]


def make_requests(prefix, total):
    """[(nonce, action, payload, result)] of echo and add requests."""
    tag = uuid.uuid4().hex[:8]
    out = []
    for i in range(total):
        n = "%s-%s-%d" % (prefix, tag, i)
        if i % 3 == 0:
            out.append((n, "add", {"a": i, "b": -7}, {"sum": i - 7}))
        else:
            out.append((n, "echo", {"i": i, "s": "x%d" % (i % 97)}, {"echo": {"i": i, "s": "x%d" % (i % 97)}}))
    return out


class Faults(KafkaCase):
    def check_receipts(self, requests, got):
        """Every nonce answered; all its receipts identical in the hashed
        fields and equal to docs/protocol.md §5 computed here. Returns {nonce: (id,
        receipt)} and {nonce: number of receipts}."""
        expected = {}
        counts = {}
        for n, action, payload, result in requests:
            recs = [r for _, r in got[n]]
            self.assertTrue(recs, "no receipt for %s" % n)
            counts[n] = len(recs)
            h = request_hash(action, payload)
            want = {"id": execution_id("", n, h), "request_hash": h,
                    "result": result_json(result), "nonce": n, "action": action}
            want["receipt"] = receipt_hash(want["id"], result)
            for r in recs:
                self.assertIn(r["status"], ("executed", "replayed"), (n, r))
                self.assertIs(r["approved"], True, r)
                self.assertIsNone(r["error_code"], r)
                got_fields = {k: r[k] for k in want}
                self.assertEqual(got_fields, want, "receipts of %s differ: %r" % (n, recs))
            expected[n] = (want["id"], want["receipt"])
        return expected, counts

    def assertCommittedCovered(self, sent, requests, answered, stored, bootstrap, group,
                               reader=None):
        """Offsets are committed only after the outcome is stored and its
        receipt acknowledged (docs/protocol.md §6). With a reader (other workers still
        running and committing), its receipts up to the committed offsets
        read now are waited for (up to 10 s): acknowledged means on the
        topic, not yet read by this consumer."""
        committed = committed_offsets(bootstrap, group)
        below = [req[0] for req, (p, o) in zip(requests, sent) if o < committed.get(p, 0)]
        deadline = time.monotonic() + 10
        while reader is not None and time.monotonic() < deadline:
            answered = set(reader.by_key())
            if all(n in answered for n in below):
                break
            reader.poll(0.05)
        if callable(stored):  # read after the offsets: the ledger may grow meanwhile
            stored = stored()
        self.assertEqual([n for n in below if n not in answered][:5], [],
                         "committed but no receipt on the topic")
        self.assertEqual([n for n in below if n not in stored][:5], [],
                         "committed but not in the store")
        return len(below)

    def kill_mid_stream(self, w, reader, at_least, total, sent, requests, bootstrap, db):
        """Kills w with SIGKILL once `at_least` receipts are on the topic,
        then checks the state it left: receipts only for stored requests,
        committed offsets only over stored and answered requests. Returns
        (wall-clock ms of the kill, receipts on the topic after it)."""
        deadline = time.monotonic() + 60
        while len(reader.messages) < at_least:
            if time.monotonic() > deadline or not w.alive():
                self.fail("worker answered %d of %d requests in 60 s (alive: %s); log: %s"
                          % (len(reader.messages), total, w.alive(), w.log()))
            reader.poll(0.005)
        seen = len(reader.messages)
        kill_ms = time.time() * 1000
        self.assertEqual(w.kill9(), -9)
        # Everything the dead worker got acknowledged is on the topic now.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            reader.poll(0.05)
        on_topic = len(reader.messages)
        answered = set(reader.by_key())
        stored = dict(ledger_query(db, "SELECT nonce, id FROM executions"))
        covered = self.assertCommittedCovered(sent, requests, answered, stored, bootstrap,
                                              h.GROUP_ID)
        if len(stored) > len(answered):
            where = "after a SQLite commit, before all its receipts were acknowledged"
        elif len(answered) > covered:
            where = "after the receipts were acknowledged, before the offset commit"
        else:
            where = "between batches, or inside a batch not yet committed to SQLite"
        print("    kill -9 after %d receipts seen (%d on the topic, %d nonces answered), "
              "%d executions stored, %d requests below the committed offsets: the kill landed %s"
              % (seen, on_topic, len(answered), len(stored), covered, where))
        self.assertLess(len(answered), total, "the worker finished before the kill")
        self.assertLessEqual(answered, set(stored), "a receipt for a request not stored")
        return kill_ms, on_topic, stored

    def test_kill9_mid_stream_and_restart(self):
        total = 40000
        b = self.broker(partitions=16)
        requests = make_requests("k9", total)
        t0 = time.monotonic()
        sent = produce_requests(b.bootstrap, requests, avro_every=4)
        print("    produced %d requests (1 in 4 Avro) with confluent_kafka in %.2f s"
              % (total, time.monotonic() - t0))
        reader = self.reader(b.bootstrap)
        db = self.path("k9.db")
        # 1. Default settings: killed after its first batches. (Its batches
        # are of 5,000 and it runs at 60,000-90,000 requests/s here: the
        # seven batches left are 0.4-0.6 s for the reader to see the first
        # and for the kill to land before the worker is done.)
        w1 = self.worker(b.bootstrap, db=db, args=QUICK_REBALANCE, start=False)
        w1.start(wait_ready=False)
        kill_ms, before, stored1 = self.kill_mid_stream(w1, reader, total // 8, total, sent,
                                                        requests, b.bootstrap, db)
        # 2. Restarted on the same database with small batches, so that a
        # second kill -9 is likely to land inside a batch (between its
        # SQLite commit, its receipts and its offset commit); it waits for
        # the dead member's session to expire, then replays from the last
        # committed offsets.
        t_restart = time.monotonic()
        w2 = self.worker(b.bootstrap, db=db, args=QUICK_REBALANCE + ["--batch-max", "200"])
        print("    restarted worker ready after %.1f s" % (time.monotonic() - t_restart))
        _, _, stored2 = self.kill_mid_stream(w2, reader, before + 2000, total, sent, requests,
                                             b.bootstrap, db)
        # 3. Restarted again with the defaults: it answers the rest.
        t_restart = time.monotonic()
        w3 = self.worker(b.bootstrap, db=db, args=QUICK_REBALANCE)
        ready_s = time.monotonic() - t_restart
        got = self.receipts_for(reader, [r[0] for r in requests], timeout=120, settle=1.0)
        print("    restarted again, ready after %.1f s; all %d answered %.1f s after that restart"
              % (ready_s, total, time.monotonic() - t_restart))
        expected, counts = self.check_receipts(requests, got)
        dup = sum(1 for c in counts.values() if c > 1)
        for n, _, _, _ in requests:
            statuses = [r["status"] for _, r in got[n]]
            self.assertLessEqual(statuses.count("executed"), 1,
                                 "%s executed twice on one store: %r" % (n, statuses))
        rows = ledger_query(db, "SELECT nonce, id, receipt FROM executions")
        self.assertEqual(len(rows), total)
        self.assertEqual({n: (i, r) for n, i, r in rows}, expected)
        for n, id_ in list(stored1.items()) + list(stored2.items()):
            self.assertEqual(expected[n][0], id_)
        print("    %d receipts for %d requests: %d nonces answered more than once (replays "
              "after a crash)" % (len(reader.messages), total, dup))
        self.assertNoFatal(w3)

        # Throughput: from the receipt timestamps (the worker's produce
        # times). Before the first kill, worker 1 ran undisturbed with the
        # default settings through a backlog.
        ts1 = sorted(m.timestamp for m in reader.messages if m.timestamp <= kill_ms)
        rate1 = rate(len(ts1), ts1)
        all_ts = sorted(m.timestamp for m in reader.messages)
        overall = total / max((all_ts[-1] - all_ts[0]) / 1000.0, 1e-3)
        # The raw transport through the same broker, same messages.
        kcat_s, kcat_n = time_kcat(b.bootstrap, total)
        ck_s = time_confluent(b.bootstrap, total)
        kcat_rate = total / kcat_s
        ck_rate = total / ck_s
        print("    worker 1 (defaults), first to last receipt: %d receipts in %.3f s = %.0f "
              "requests/s%s" % (len(ts1), (ts1[-1] - ts1[0]) / 1000.0 if ts1 else 0, rate1,
                                pause_note(ts1)))
        print("    whole test, first to last receipt (two kills and restarts included): %.0f "
              "requests/s" % overall)
        print("    kcat alone consumed %d request messages in %.3f s = %.0f messages/s "
              "(process start included)" % (kcat_n, kcat_s, kcat_rate))
        print("    confluent_kafka alone consumed %d in %.3f s = %.0f messages/s"
              % (total, ck_s, ck_rate))
        print("    ratio worker 1/kcat: %.3f; worker 1/confluent_kafka: %.3f"
              % (rate1 / kcat_rate, rate1 / ck_rate))
        self.assertEqual(kcat_n, total)

    def test_two_workers_one_killed(self):
        # Two workers of one group on one ledger (a SQLite file both open,
        # OPENEXEC_LEDGER_SHARED=1; or one PostgreSQL database): one is
        # killed mid-batch, the other takes its partitions and answers what
        # was left from the shared ledger. Every nonce executes once.
        total = 5000
        b = self.broker(partitions=16)
        reader = self.reader(b.bootstrap)
        db = self.path("shared.db")
        shared = {"OPENEXEC_LEDGER_SHARED": "1"}
        # Started together: one rebalance gives both their partitions. Small
        # batches, so that worker 1 is killed with most of its share not
        # yet run (one batch would hold all of it).
        w1, w2 = self.start_together([self.worker(b.bootstrap, db=db, env=shared,
                                                  args=QUICK_REBALANCE + ["--batch-max", "50"],
                                                  start=False)
                                      for _ in range(2)])

        def shares():
            return (w1.metrics()["openexec_assigned_partitions"],
                    w2.metrics()["openexec_assigned_partitions"])

        deadline = time.monotonic() + 30
        while not (all(s > 0 for s in shares()) and sum(shares()) == 16):
            if time.monotonic() > deadline:
                self.fail("the two workers never shared the 16 partitions: %s; logs: %s / %s"
                          % (shares(), w1.log(), w2.log()))
            time.sleep(0.1)
        print("    partitions: worker 1 %d, worker 2 %d" % shares())
        requests = make_requests("two", total)
        # A backlog for both; worker 1 is killed as soon as it has executed
        # something, i.e. inside or just after one of its first batches:
        # stored, but receipts and offsets possibly not yet published, and
        # the rest of its partitions not yet read. Its partitions move to
        # worker 2 after the session timeout.
        sent = produce_requests(b.bootstrap, requests, avro_every=5)
        deadline = time.monotonic() + 60
        # The messages of the batches it has executed (counted before their
        # receipts are published; the requests' counters wait for that).
        ran = 0
        while ran == 0:
            if time.monotonic() > deadline:
                self.fail("worker 1 executed nothing within 60 s; log: %s" % w1.log())
            reader.poll(0)
            ran = w1.metrics().get("openexec_batch_size_sum", 0)
        killed_after = len(reader.messages)
        self.assertEqual(w1.kill9(), -9)
        # Killed with part of its share (about half the requests, 8 of 16
        # partitions) unread: with one large batch it ran all of it first.
        self.assertLess(ran, total * 2 // 5, "worker 1 ran %d requests before it was killed" % ran)
        reader.poll(0.5)
        stored = {n for (n,) in ledger_query(db, "SELECT nonce FROM executions")}
        covered = self.assertCommittedCovered(
            sent, requests, set(reader.by_key()),
            lambda: {n for (n,) in ledger_query(db, "SELECT nonce FROM executions")},
            b.bootstrap, h.GROUP_ID, reader=reader)
        print("    worker 1 killed after it ran %d; %d executions in the ledger, %d receipts on "
              "the topic, %d requests below the committed offsets"
              % (ran, len(stored), len(reader.messages), covered))
        t_kill = time.monotonic()
        got = self.receipts_for(reader, [r[0] for r in requests], timeout=90, settle=1.0)
        took = time.monotonic() - t_kill
        expected, counts = self.check_receipts(requests, got)
        rows = {n: (i, r) for n, i, r in ledger_query(db, "SELECT nonce, id, receipt FROM executions")}
        self.assertEqual(set(rows), set(expected))
        for n in rows:
            self.assertEqual(rows[n], expected[n])
        # One ledger: at most one "executed" receipt per nonce, ever.
        for n, _, _, _ in requests:
            ex = [r["status"] for _, r in got[n]].count("executed")
            self.assertLessEqual(ex, 1, (n, [r for _, r in got[n]]))
        # Worker 1's partitions come to worker 2 when its session expires,
        # which may be after the last receipt arrived.
        w2.wait_metric("openexec_assigned_partitions", lambda v: v == 16)
        print("    worker 1 killed after %d receipts seen; all %d answered %.1f s later; "
              "%d nonces with more than one receipt"
              % (killed_after, total, took, sum(1 for c in counts.values() if c > 1)))
        self.assertNoFatal(w2)


def produce_requests(bootstrap, requests, avro_every=0):
    """JSON requests keyed by nonce; with avro_every=k every k-th one in
    Avro single-object encoding (python3-avro)."""
    msgs = []
    for i, (n, a, p, _) in enumerate(requests):
        if avro_every and i % avro_every == 0:
            msgs.append((n, avro_request(a, p, n)))
        else:
            msgs.append((n, jreq(a, p, n)))
    return produce(bootstrap, msgs)


def pause_note(ts):
    """The longest pause between two receipts of a run (a fresh worker's
    first batch is followed by a long one: receipt timestamps are taken
    when a receipt is handed to the producer, and the first batch waits
    for the producer's metadata)."""
    if len(ts) < 3:
        return ""
    gap, at = max((ts[i + 1] - ts[i], i + 1) for i in range(len(ts) - 1))
    return "; longest pause between receipts %d ms, after the first %d" % (gap, at)


def rate(n, ts):
    if n < 2:
        return 0.0
    return n / max((ts[-1] - ts[0]) / 1000.0, 1e-3)


def time_kcat(bootstrap, total):
    """Seconds kcat takes to consume `total` request messages (one
    process, from the beginning), and how many it printed."""
    t0 = time.monotonic()
    p = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", h.REQUESTS_TOPIC, "-o", "beginning",
                        "-c", str(total), "-e", "-q", "-f", "%k\n"],
                       capture_output=True, timeout=120)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        raise AssertionError("kcat -C failed (%d): %s" % (p.returncode, p.stderr.decode()))
    return dt, p.stdout.count(b"\n")


def time_confluent(bootstrap, total):
    """Seconds a confluent_kafka consumer (created, assigned every
    partition from the beginning) takes to receive `total` messages."""
    import confluent_kafka
    t0 = time.monotonic()
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "raw-%d" % os.getpid(),
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    try:
        md = c.list_topics(h.REQUESTS_TOPIC, timeout=10)
        c.assign([confluent_kafka.TopicPartition(h.REQUESTS_TOPIC, p, confluent_kafka.OFFSET_BEGINNING)
                  for p in md.topics[h.REQUESTS_TOPIC].partitions])
        n = 0
        deadline = t0 + 120
        while n < total:
            if time.monotonic() > deadline:
                raise AssertionError("confluent_kafka read %d of %d in 120 s" % (n, total))
            n += sum(1 for m in c.consume(1000, 0.005) if not m.error())
        return time.monotonic() - t0
    finally:
        c.close()


if __name__ == "__main__":
    run_tests()
