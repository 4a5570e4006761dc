"""Black-box tests of the shared ledger (docs/operations.md; docs/protocol.md §4, §5, §6, §7): workers
of one consumer group on one PostgreSQL database, where nonce and approval
single use are database constraints that hold across the whole group; the
fail-closed stop of a worker on a private SQLite ledger that finds other
members in its group; a PostgreSQL ledger that goes away while the workers
run; and the receipt look-ups of a bridge-only node (`--worker 0`).

Every test that needs a shared ledger names a fresh database on the one
throw-away PostgreSQL cluster of this process (tests/http/pgcluster.py)
with `--db-url`, so it runs on PostgreSQL whatever OPENEXEC_TEST_LEDGER
says; the fail-closed test names two SQLite files with `--db`. The tests
that stop the cluster start it again before they end, failed or not.

Ids, request hashes and receipt hashes are computed here in Python
(harness.py, docs/protocol.md §5) and compared; every count is exact."""

import os
import random
import re
import sys
import time
import urllib.parse
import uuid
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (REQUESTS_TOPIC, cli, committed_offsets, decode_receipt,  # noqa: E402
                     execution_id, hmac_artifact, produce, receipt_hash, request_hash,
                     result_json, run_tests, sqlite_query)
from test_kafka import KafkaCase, jreq  # noqa: E402
from test_ledger import PG_V1  # noqa: E402
from test_kafka_faults import FAST_FAILOVER, QUICK_REBALANCE, QUICK_SESSION_MS  # noqa: E402
import pgcluster  # noqa: E402

SECRET = "shared-ledger-secret"
TENANT = "tenant-shared"
CLAW_ENV = {"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_SECRET_KEY": SECRET,
            "CLAWSHIELD_TENANT_ID": TENANT}
PARTITIONS = 16
STATUSES = ("executed", "replayed", "rejected")



def tag():
    return uuid.uuid4().hex[:8]


def partition_of(key, partitions=PARTITIONS):
    """librdkafka's default partitioner (consistent_random) for a non-empty
    key: CRC-32 of the key modulo the partition count."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    return (zlib.crc32(key) & 0xFFFFFFFF) % partitions


def pg_ledger():
    """A fresh database on the shared PostgreSQL cluster: (URL, name)."""
    url = pgcluster.fresh_database("sl")
    return url, urllib.parse.unquote(urllib.parse.urlparse(url).path[1:])


def pgq(dbname, sql, args=()):
    return [tuple(r) for r in pgcluster.shared_cluster().query(dbname, sql, tuple(args))]


def ensure_pg_running():
    c = pgcluster.shared_cluster()
    if not c.running():
        c.restart()


# The workers' role of the least-privilege tests: it logs in and holds only
# the grants SECURITY.md and docs/operations.md document
# (documented_grants).
WORKER_ROLE, WORKER_PASSWORD = "openexec_worker", "openexec-worker-pw"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def documented_grants():
    """The SQL lines of the ```sql block after the "<!-- grants:" marker of
    SECURITY.md and docs/operations.md; raises AssertionError unless each
    exists and they hold the same lines."""
    blocks = []
    for name in ("SECURITY.md", os.path.join("docs", "operations.md")):
        with open(os.path.join(ROOT, name)) as f:
            lines = [line.strip() for line in f.read().splitlines()]
        starts = [i for i, line in enumerate(lines) if line.startswith("<!-- grants:")]
        if len(starts) != 1 or lines[starts[0] + 1] != "```sql":
            raise AssertionError("%s: one grants marker followed by a ```sql block expected"
                                 % name)
        end = lines.index("```", starts[0] + 2)
        blocks.append([line for line in lines[starts[0] + 2:end] if line])
    if any(b != blocks[0] for b in blocks) or not blocks[0]:
        raise AssertionError("the grants of SECURITY.md and docs/operations.md "
                             "differ: %r" % blocks)
    return blocks[0]


def worker_role_url(dbname):
    """The URL of DBNAME for WORKER_ROLE (created once per cluster, with no
    privilege of its own)."""
    c = pgcluster.shared_cluster()
    if not c.query("postgres", "SELECT 1 FROM pg_roles WHERE rolname = %s", (WORKER_ROLE,)):
        c.query("postgres", "CREATE ROLE %s LOGIN PASSWORD '%s'" % (WORKER_ROLE, WORKER_PASSWORD))
    return c.url(dbname, user=WORKER_ROLE, password=WORKER_PASSWORD)


def grant_documented(dbname, version_1=False):
    """Runs the documented grants in DBNAME; the URL for WORKER_ROLE. On a
    ledger of schema version 1 (version_1), without the tables and
    sequence later versions added (logs, checkpoints: version 4), the
    grants on what it has."""
    url = worker_role_url(dbname)
    for line in documented_grants():
        if version_1:
            line = line.replace(", logs, checkpoints", "").replace(", logs_log_id_seq", "")
        pgq(dbname, line)
    return url


def committed_lag(bootstrap):
    """{partition: end offset - committed offset} of the requests topic for
    the workers' group, where they differ."""
    import confluent_kafka
    committed = committed_offsets(bootstrap, "openexec-workers")
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": "openexec-test-lag-%s" % tag()})
    try:
        ends = {p: c.get_watermark_offsets(confluent_kafka.TopicPartition(REQUESTS_TOPIC, p),
                                           timeout=10)[1] for p in range(PARTITIONS)}
    finally:
        c.close()
    return {p: e - committed.get(p, 0) for p, e in ends.items() if e != committed.get(p, 0)}


def ready(server):
    """(HTTP status of GET /ready, its reason or None)."""
    r = server.get("/ready", timeout=5)
    try:
        return r.status, r.json.get("reason")
    except ValueError:
        return r.status, None


def processed(server):
    """Requests this node's worker answered, all statuses."""
    m = server.metrics()
    return sum(m.get('openexec_requests_total{status="%s"}' % s, 0) for s in STATUSES)


class SharedLedger(KafkaCase):
    def setUp(self):
        super().setUp()
        self._members = []  # plain Kafka members of the workers' group (join_group)

    def tearDown(self):
        for c in self._members:
            c.close()
        self._members = []
        super().tearDown()

    # -- helpers

    def wait_until(self, pred, timeout, what, logs=()):
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                self.fail("%s: not within %.0f s; logs:\n%s" % (
                    what, timeout, "\n----\n".join(s.log()[-4000:] for s in logs)))
            time.sleep(0.1)

    def shares(self, workers):
        return [int(w.metrics()["openexec_assigned_partitions"]) for w in workers]

    def wait_sharing(self, workers, timeout=40):
        """Until every worker owns partitions and together all of them."""
        def ok():
            s = self.shares(workers)
            return all(x > 0 for x in s) and sum(s) == PARTITIONS

        self.wait_until(ok, timeout, "%d workers sharing the %d partitions (now %s)"
                        % (len(workers), PARTITIONS, self.shares(workers)), workers)
        return self.shares(workers)

    def quiet(self, reader, quiet=3.0, timeout=90):
        """Reads until no receipt has come for `quiet` s; returns how many
        came meanwhile."""
        n0 = len(reader.messages)
        deadline = time.monotonic() + timeout
        last, last_t = n0, time.monotonic()
        while time.monotonic() - last_t < quiet:
            self.assertLess(time.monotonic(), deadline, "receipts kept coming for %.0f s"
                            % timeout)
            reader.poll(0.1)
            if len(reader.messages) != last:
                last, last_t = len(reader.messages), time.monotonic()
        return len(reader.messages) - n0

    def describe(self, bootstrap, reader, requests, workers):
        """The state of the group when requests stay unanswered: which
        partitions hold them, each worker's /ready, metrics and log tail."""
        by = reader.by_key()
        missing = [n for n in requests if n not in by]
        parts = {}
        for n in missing:
            parts[partition_of(n)] = parts.get(partition_of(n), 0) + 1
        out = ["%d unanswered, by partition %s; committed lag %s"
               % (len(missing), sorted(parts.items()), committed_lag(bootstrap))]
        for i, w in enumerate(workers):
            if not w.alive():
                out.append("worker %d: not running" % (i + 1))
                continue
            m = w.metrics()
            out.append("worker %d: /ready %r; %s; log tail:\n%s" % (
                i + 1, ready(w), {k: v for k, v in m.items() if "ledger" in k or "assigned" in k
                                  or "lag" in k or "store_errors" in k},
                "\n".join(w.log().splitlines()[-15:])))
        return "\n".join(out)

    def assertNoFatalExceptPg(self, server):
        """assertNoFatal, but PostgreSQL's own "FATAL:  terminating
        connection ..." (libpq prints the server's message when the server
        goes away) is not the worker's."""
        log = "\n".join(line for line in server.log().splitlines()
                        if not line.startswith("FATAL:  terminating connection")).lower()
        for word in ("fatal", "worker stopped", "sanitizer", "segmentation"):
            self.assertNotIn(word, log, server.log()[-3000:])

    def pg_worker(self, bootstrap, url, env=None, args=(), start=True, failover=FAST_FAILOVER):
        return self.worker(bootstrap, env=env, args=["--db-url", url] + failover + list(args),
                           start=start)

    def assertStoredReceipt(self, body, action, payload, nonce, result, tenant="",
                            approval_id=None):
        """A GET /receipts answer (docs/protocol.md §7) for this execution."""
        h = request_hash(action, payload)
        eid = execution_id(tenant, nonce, h)
        want = {"id": eid, "nonce": nonce, "action": action, "request_hash": h,
                "result": result, "result_json": result_json(result), "approved": True,
                "approval_id": approval_id, "receipt": receipt_hash(eid, result)}
        self.assertEqual({k: body.get(k) for k in want}, want, body)
        self.assertIsInstance(body.get("created_at"), str, body)
        self.assertTrue(body["created_at"], body)

    # -- 1. fail closed on private ledgers

    def test_private_ledgers_fail_closed(self):
        b = self.broker(partitions=PARTITIONS)
        reader = self.reader(b.bootstrap)
        a_db, b_db = self.path("a.db"), self.path("b.db")
        wa = self.worker(b.bootstrap, args=["--db", a_db] + QUICK_REBALANCE)
        self.assertEqual(self.shares([wa]), [PARTITIONS])
        t = tag()
        first = ["fc1-%s-%d" % (t, i) for i in range(20)]
        produce(b.bootstrap, [(n, jreq("add", {"a": i, "b": 1}, n)) for i, n in enumerate(first)])
        got = self.receipts_for(reader, first)
        for i, n in enumerate(first):
            self.assertExecutedReceipt(self.only(got, n), "add", {"a": i, "b": 1}, n,
                                       {"sum": i + 1})
        self.assertEqual(sqlite_query(a_db, "SELECT count(*) FROM executions"), [(20,)])
        m = wa.metrics()
        self.assertEqual((m["openexec_ledger_unshared"],
                          m["openexec_ledger_unshared_events_total"]), (0, 0))

        # Worker B, another private ledger, same group: it never becomes
        # ready; both stop consuming once the partitions are split.
        wb = self.worker(b.bootstrap, args=["--db", b_db] + QUICK_REBALANCE, start=False)
        wb.start(wait_ready=False)
        t0 = time.monotonic()

        def stopped(w):
            st, reason = ready(w)
            m = w.metrics()
            return (st == 503 and reason and "other members" in reason and
                    m["openexec_ledger_unshared"] == 1 and
                    m["openexec_ledger_unshared_events_total"] >= 1)

        self.wait_until(lambda: stopped(wa) and stopped(wb), 40,
                        "both workers stopped (fail closed)", [wa, wb])
        print("    both workers stopped %.1f s after B started; partitions A %d, B %d"
              % ((time.monotonic() - t0,) + tuple(self.shares([wa, wb]))))
        for w in (wa, wb):
            self.assertIn("level=error component=worker msg=\"group openexec-workers has other members",
                          w.log())
            st, reason = ready(w)
            self.assertEqual(st, 503)
            self.assertIn("other members", reason)
            self.assertEqual(w.get("/health").status, 200)
        self.assertEqual(sum(self.shares([wa, wb])), PARTITIONS)

        # Requests produced now are answered by nobody.
        second = ["fc2-%s-%d" % (t, i) for i in range(50)]
        sent = produce(b.bootstrap, [(n, jreq("add", {"a": i, "b": 2}, n))
                                     for i, n in enumerate(second)])
        self.assertGreater(len({p for p, _ in sent}), 1)
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            reader.poll(0.1)
        self.assertEqual(len(reader.messages), 20, "receipts while both workers should be "
                         "stopped: %r" % reader.messages[20:25])
        self.assertEqual(sqlite_query(a_db, "SELECT count(*) FROM executions"), [(20,)])
        self.assertEqual(sqlite_query(b_db, "SELECT count(*) FROM executions"), [(0,)])
        self.assertEqual(sqlite_query(a_db, "SELECT count(*) FROM rejections"), [(0,)])
        self.assertEqual(sqlite_query(b_db, "SELECT count(*) FROM rejections"), [(0,)])
        for w in (wa, wb):
            self.assertEqual(processed(w), 20 if w is wa else 0)
            self.assertEqual(w.metrics()["openexec_ledger_unshared"], 1)

        # B leaves; A is alone again, resumes and answers the backlog.
        wb.stop()
        t0 = time.monotonic()
        wa.wait_ready(time.monotonic() + 30)
        resumed_s = time.monotonic() - t0
        got = self.receipts_for(reader, second, timeout=30, settle=1.0)
        print("    B stopped; A ready again after %.1f s, all 50 answered %.1f s after B stopped"
              % (resumed_s, time.monotonic() - t0))
        for i, n in enumerate(second):
            self.assertExecutedReceipt(self.only(got, n), "add", {"a": i, "b": 2}, n,
                                       {"sum": i + 2})
        self.assertEqual(len(reader.messages), 70)
        self.assertIn("consumption resumed", wa.log())
        m = wa.metrics()
        self.assertEqual(m["openexec_ledger_unshared"], 0)
        self.assertEqual(m["openexec_ledger_unshared_events_total"], 1)
        self.assertEqual(m["openexec_assigned_partitions"], PARTITIONS)
        rows = sqlite_query(a_db, "SELECT nonce FROM executions")
        self.assertEqual(sorted(n for (n,) in rows), sorted(first + second))
        self.assertEqual(sqlite_query(b_db, "SELECT count(*) FROM executions"), [(0,)])
        self.assertEqual(ready(wa), (200, None))
        self.assertNoFatal(wa)
        self.assertNoFatal(wb)

    # -- 2. a used nonce is not executed again after its partition moved

    def test_used_nonce_not_executed_again(self):
        b = self.broker(partitions=PARTITIONS)
        url, dbname = pg_ledger()
        reader = self.reader(b.bootstrap)
        wa = self.pg_worker(b.bootstrap, url, failover=QUICK_REBALANCE)
        nonces = ["rb-%d" % i for i in range(12)]
        first = {}
        for i, n in enumerate(nonces):
            r = wa.execute("add", {"a": i, "b": 1}, n)
            first[n] = self.assertExecuted(r, "add", {"a": i, "b": 1}, n, result={"sum": i + 1})
        self.assertEqual(processed(wa), 12)
        # B joins the group on the same ledger; partitions move to it.
        wb = self.pg_worker(b.bootstrap, url, failover=QUICK_REBALANCE)
        split = self.wait_sharing([wa, wb])
        print("    partitions after B joined: A %d, B %d" % tuple(split))
        self.assertEqual(split, [8, 8])
        owned_partitions = {partition_of(n) for n in nonces}
        self.assertEqual(len(owned_partitions), 12)  # so B owns at least 4 of them
        # The same nonces with other payloads, through both nodes' bridges.
        for i, n in enumerate(nonces):
            node = (wa, wb)[i % 2]
            self.assertDetail(node.execute("add", {"a": i, "b": 2}, n), 409)
        by_b = processed(wb)
        print("    conflicting re-sends answered: A %d, B %d" % (processed(wa) - 12, by_b))
        self.assertGreaterEqual(by_b, 4, "B answered none of the nonces on its partitions")
        self.assertEqual(processed(wa) - 12 + by_b, 12)
        rows = pgq(dbname, "SELECT nonce, id, result_json, receipt FROM executions")
        self.assertEqual(len(rows), 12)
        self.assertEqual({n: (i, rj, rc) for n, i, rj, rc in rows},
                         {n: (first[n]["id"], result_json({"sum": i + 1}), first[n]["receipt"])
                          for i, n in enumerate(nonces)})
        self.assertEqual(pgq(dbname, "SELECT error_code, count(*) FROM rejections "
                                     "GROUP BY error_code"), [("nonce_conflict", 12)])
        # The original requests again: replays of the original answers.
        for i, n in enumerate(nonces):
            node = (wb, wa)[i % 2]
            body = self.assertExecuted(node.execute("add", {"a": i, "b": 1}, n), "add",
                                       {"a": i, "b": 1}, n, result={"sum": i + 1},
                                       status="replayed")
            self.assertEqual((body["id"], body["receipt"]), (first[n]["id"], first[n]["receipt"]))
        self.assertEqual(pgq(dbname, "SELECT count(*) FROM executions"), [(12,)])
        got = self.receipts_for(reader, nonces, count=3)
        for i, n in enumerate(nonces):
            recs = [r for _, r in got[n]]
            self.assertEqual([r["status"] for r in recs], ["executed", "rejected", "replayed"], n)
            self.assertEqual(recs[1]["error_code"], "nonce_conflict")
            self.assertEqual(recs[1]["request_hash"], request_hash("add", {"a": i, "b": 2}))
            self.assertExecutedReceipt(recs[2], "add", {"a": i, "b": 1}, n, {"sum": i + 1},
                                       status="replayed")
        self.assertEqual(len(reader.messages), 36)
        self.assertNoFatal(wa)
        self.assertNoFatal(wb)

    # -- 3. one approval, one execution, group-wide

    def test_one_approval_one_execution(self):
        b = self.broker(partitions=PARTITIONS)
        url, dbname = pg_ledger()
        reader = self.reader(b.bootstrap)
        w1, w2 = self.start_together([self.pg_worker(b.bootstrap, url, env=CLAW_ENV, start=False)
                                      for _ in range(2)])
        split = self.wait_sharing([w1, w2])
        print("    partitions: %d / %d" % tuple(split))
        payload = {"msg": "one approval", "k": [1, 2]}
        art = hmac_artifact(SECRET, TENANT, "echo", payload)
        # Eight nonces on eight different partitions.
        t, nonces, parts = tag(), [], set()
        i = 0
        while len(nonces) < 8:
            n = "oa-%s-%d" % (t, i)
            i += 1
            if partition_of(n) not in parts:
                parts.add(partition_of(n))
                nonces.append(n)
        sent = produce(b.bootstrap, [(n, jreq("echo", payload, n, approval_artifact=art))
                                     for n in nonces])
        self.assertEqual(sorted(p for p, _ in sent), sorted(parts))
        self.assertEqual(len({p for p, _ in sent}), 8)
        got = self.receipts_for(reader, nonces, settle=1.0)
        executed, rejected = [], []
        for n in nonces:
            rec = self.only(got, n)
            (executed if rec["status"] == "executed" else rejected).append((n, rec))
        self.assertEqual(len(executed), 1, [r for _, r in executed])
        self.assertEqual(len(rejected), 7)
        n_ok, rec = executed[0]
        self.assertExecutedReceipt(rec, "echo", payload, n_ok, {"echo": payload}, tenant=TENANT,
                                   approval_id=art["approval_id"])
        for n, rec in rejected:
            self.assertRejectedReceipt(rec, "approval_invalid", nonce=n, action="echo",
                                       detail_contains="already used")
        by = (processed(w1), processed(w2))
        print("    the 8 requests answered by worker 1: %d, worker 2: %d" % by)
        self.assertEqual(sum(by), 8)
        self.assertTrue(all(x > 0 for x in by), "one worker answered all 8: %s" % (by,))
        self.assertEqual(pgq(dbname, "SELECT nonce, approval_id, tenant_id FROM executions"),
                         [(n_ok, art["approval_id"], TENANT)])
        self.assertEqual(sorted(pgq(dbname, "SELECT nonce, error_code FROM rejections")),
                         sorted((n, "approval_invalid") for n, _ in rejected))
        self.assertNoFatal(w1)
        self.assertNoFatal(w2)

    # -- 4. the message key is not the nonce

    def test_key_is_not_the_nonce(self):
        b = self.broker(partitions=PARTITIONS)
        url, dbname = pg_ledger()
        reader = self.reader(b.bootstrap)
        w1, w2 = self.start_together([self.pg_worker(b.bootstrap, url, start=False)
                                      for _ in range(2)])
        print("    partitions: %d / %d" % tuple(self.wait_sharing([w1, w2])))
        t = tag()
        nonces = ["kn-%s-%d" % (t, i) for i in range(100)]
        msgs = []
        for i, n in enumerate(nonces):
            msgs.append(("A-%d" % i, jreq("add", {"a": i}, n)))
            msgs.append((None, jreq("add", {"a": i + 1000}, n)))
        sent = produce(b.bootstrap, msgs)
        same = sum(1 for i in range(100) if sent[2 * i][0] == sent[2 * i + 1][0])
        print("    %d of 100 nonces had both copies on one partition" % same)
        self.assertLess(same, 50)
        got = self.receipts_for(reader, nonces, count=2, settle=1.0)
        winners = {}
        won_keyed = 0
        for i, n in enumerate(nonces):
            recs = [r for _, r in got[n]]
            self.assertEqual(len(recs), 2, (n, recs))
            ex = [r for r in recs if r["status"] == "executed"]
            rj = [r for r in recs if r["status"] == "rejected"]
            self.assertEqual((len(ex), len(rj)), (1, 1), (n, recs))
            h_keyed = request_hash("add", {"a": i})
            h_null = request_hash("add", {"a": i + 1000})
            if ex[0]["request_hash"] == h_keyed:
                won_keyed += 1
                self.assertExecutedReceipt(ex[0], "add", {"a": i}, n, {"sum": i})
                self.assertEqual(rj[0]["request_hash"], h_null)
            else:
                self.assertExecutedReceipt(ex[0], "add", {"a": i + 1000}, n, {"sum": i + 1000})
                self.assertEqual(rj[0]["request_hash"], h_keyed)
            self.assertRejectedReceipt(rj[0], "nonce_conflict", nonce=n, action="add")
            winners[n] = (ex[0]["id"], ex[0]["request_hash"], ex[0]["receipt"])
        print("    the keyed copy won for %d nonces, the unkeyed one for %d"
              % (won_keyed, 100 - won_keyed))
        self.assertEqual(len(reader.messages), 200)
        rows = pgq(dbname, "SELECT nonce, id, request_hash, receipt FROM executions")
        self.assertEqual(len(rows), 100)
        self.assertEqual({n: (i, h, r) for n, i, h, r in rows}, winners)
        self.assertEqual(pgq(dbname, "SELECT error_code, count(DISTINCT nonce), count(*) "
                                     "FROM rejections GROUP BY error_code"),
                         [("nonce_conflict", 100, 100)])
        self.assertEqual(processed(w1) + processed(w2), 200)
        self.assertNoFatal(w1)
        self.assertNoFatal(w2)

    # -- 5. any node answers GET /receipts from the shared ledger

    def test_receipts_from_any_node(self):
        b = self.broker(partitions=PARTITIONS)
        url, dbname = pg_ledger()
        reader = self.reader(b.bootstrap)
        w = self.pg_worker(b.bootstrap, url)
        bridge = self.pg_worker(b.bootstrap, url, args=["--worker", "0"])
        self.assertEqual(self.shares([w, bridge]), [PARTITIONS, 0])
        self.assertEqual(ready(bridge), (200, None))
        t = tag()
        # Through the bridge-only node's /execute.
        n1 = "any-%s-1" % t
        p1 = {"a": 40, "b": 2}
        body = self.assertExecuted(bridge.execute("add", p1, n1), "add", p1, n1,
                                   result={"sum": 42})
        # Straight to Kafka, with a nonce that must be escaped in a query.
        n2 = "any %s/2?&x=1+ü" % t
        p2 = {"msg": "direct"}
        produce(b.bootstrap, [(n2, jreq("echo", p2, n2))])
        rec2 = self.only(self.receipts_for(reader, [n2]), n2)
        self.assertExecutedReceipt(rec2, "echo", p2, n2, {"echo": p2})
        self.assertEqual(processed(w), 2)
        self.assertEqual(processed(bridge), 0)
        for n, action, payload, result, eid in ((n1, "add", p1, {"sum": 42}, body["id"]),
                                                 (n2, "echo", p2, {"echo": p2}, rec2["id"])):
            answers = []
            for node in (w, bridge):
                for path in ("/receipts/" + eid,
                             "/receipts?nonce=" + urllib.parse.quote(n, safe="")):
                    r = node.get(path)
                    self.assertStatus(r, 200, path)
                    self.assertJSONType(r)
                    self.assertStoredReceipt(r.json, action, payload, n, result)
                    answers.append(r.json)
            for a in answers[1:]:
                self.assertEqual(a, answers[0])
            (row,) = pgq(dbname, "SELECT id, request_hash, result_json, receipt FROM executions "
                                 "WHERE nonce = %s", (n,))
            self.assertEqual(row, (answers[0]["id"], answers[0]["request_hash"],
                                   answers[0]["result_json"], answers[0]["receipt"]))
        self.assertEqual(body["receipt"], receipt_hash(body["id"], {"sum": 42}))
        for node in (w, bridge):
            self.assertDetail(node.get("/receipts?nonce=no-such-nonce-" + t), 404)
            self.assertDetail(node.get("/receipts/" + execution_id("", "no-such", "0" * 64)), 404)
            self.assertDetail(node.get("/receipts"), 400)
        self.assertEqual(pgq(dbname, "SELECT count(*) FROM executions"), [(2,)])
        self.assertNoFatal(w)
        self.assertNoFatal(bridge)

    # -- 6. three workers, clawshield, a worker crash and a ledger crash

    def test_three_workers_clawshield_under_faults(self):
        # Each wave is far more than one batch of every worker (the kill and
        # the ledger crash land while requests flow: checked below), and
        # the shared artifacts are enough for their spread to be checked.
        ordinary_per_wave, shared_per_wave, waves = 3000, 200, 3
        t_test = time.monotonic()
        b = self.broker(partitions=PARTITIONS)
        url, dbname = pg_ledger()
        reader = self.reader(b.bootstrap)
        workers = self.start_together([self.pg_worker(b.bootstrap, url, env=CLAW_ENV,
                                                      start=False, failover=QUICK_REBALANCE)
                                       for _ in range(3)])
        print("    partitions: %s" % self.wait_sharing(workers))
        t = tag()
        rnd = random.Random(t)
        # nonce -> (action, payload, approval_id, shared group or None)
        requests = {}
        groups = {}  # shared group -> (approval_id, [its three nonces])

        def wave(w):
            """This wave's messages: ordinary requests, each with its own
            artifact, and artifacts presented under three nonces each;
            artifacts issued now (they are valid 300 s)."""
            msgs = []
            for i in range(ordinary_per_wave):
                k = w * ordinary_per_wave + i
                n = "o-%s-%d" % (t, k)
                action, payload = (("add", {"a": k, "b": -3}) if k % 2 else
                                   ("echo", {"k": k, "w": w}))
                art = hmac_artifact(SECRET, TENANT, action, payload)
                requests[n] = (action, payload, art["approval_id"], None)
                msgs.append((n, jreq(action, payload, n, approval_artifact=art)))
            for j in range(shared_per_wave):
                g = w * shared_per_wave + j
                payload = {"shared": g}
                art = hmac_artifact(SECRET, TENANT, "echo", payload)
                ns = ["s-%s-%d-%d" % (t, g, c) for c in range(3)]
                groups[g] = (art["approval_id"], ns)
                for n in ns:
                    requests[n] = ("echo", payload, art["approval_id"], g)
                    msgs.append((n, jreq("echo", payload, n, approval_artifact=art)))
            rnd.shuffle(msgs)
            return msgs

        def wait_receipts(count, what):
            deadline = time.monotonic() + 60
            while len(reader.messages) < count:
                if time.monotonic() > deadline:
                    self.fail("%s: %d receipts, not %d, after 60 s" % (what, len(reader.messages),
                                                                       count))
                reader.poll(0.005)

        # Wave 1; worker 3 is killed with about a third of it answered.
        sent = produce(b.bootstrap, wave(0))
        wait_receipts(len(sent) // 3, "wave 1")
        self.assertEqual(workers[2].kill9(), -9)
        killed_at = len(reader.messages)
        self.assertLess(killed_at, len(sent), "wave 1 was all answered before worker 3 was "
                        "killed")
        t_kill = time.monotonic()
        # Wave 2 while the dead worker's partitions wait for its session to
        # expire; the ledger crashes (SIGKILL) once part of it is answered.
        sent += produce(b.bootstrap, wave(1))
        wait_receipts(killed_at + 1000, "wave 2")
        cluster = pgcluster.shared_cluster()
        unavailable_seen = []
        try:
            cluster.kill()
            t_down = time.monotonic()
            pg_down_at = len(reader.messages)
            # Wave 3 while PostgreSQL is down.
            sent += produce(b.bootstrap, wave(2))

            def reports_unavailable():
                for i, w in enumerate(workers[:2]):
                    st, reason = ready(w)
                    if st == 503 and reason and reason.startswith("ledger unavailable"):
                        unavailable_seen.append((i, reason,
                                                 w.metrics()["openexec_ledger_unavailable"]))
                        return True
                return False

            self.wait_until(reports_unavailable, 30, "a worker's /ready saying 'ledger "
                            "unavailable'", workers[:2])
            print("    worker %d: /ready 503 %.1f s after PostgreSQL was killed: %r"
                  % (unavailable_seen[0][0] + 1, time.monotonic() - t_down,
                     unavailable_seen[0][1][:100]))
            self.assertEqual(unavailable_seen[0][2], 1)
            while time.monotonic() < t_down + 6:
                reader.poll(0.1)
        finally:
            ensure_pg_running()
        t_up = time.monotonic()
        print("    worker 3 killed after %d receipts; PostgreSQL killed %.1f s later after %d "
              "receipts, down %.1f s" % (killed_at, t_down - t_kill, pg_down_at, t_up - t_down))
        # The killed worker comes back on the same ledger.
        workers[2] = self.pg_worker(b.bootstrap, url, env=CLAW_ENV, failover=QUICK_REBALANCE)
        self.assertEqual(len(sent), len(requests))
        spread = sum(1 for _, ns in groups.values()
                     if len({partition_of(n) for n in ns}) > 1)
        # Three random keys share a partition with odds 1/256.
        self.assertGreaterEqual(spread, len(groups) - 15,
                                "shared artifacts not spread over partitions")
        try:
            got = self.receipts_for(reader, list(requests), timeout=120, settle=1.0)
        except AssertionError as e:
            self.fail("%s\n%s" % (str(e)[:300], self.describe(b.bootstrap, reader, requests,
                                                                workers)))
        print("    %d requests (%d ordinary, %d artifacts under 3 nonces each) answered %.1f s "
              "after PostgreSQL came back; %d receipts in all, %d nonces answered more than once"
              % (len(requests), waves * ordinary_per_wave, len(groups), time.monotonic() - t_up,
                 len(reader.messages), sum(1 for n in requests if len(got[n]) > 1)))
        for w in workers:
            self.wait_until(lambda: ready(w) == (200, None), 30, "/ready 200 again", [w])
            self.assertEqual(w.metrics()["openexec_ledger_unavailable"], 0)
        self.assertIn("ledger unavailable, consumption paused",
                      workers[0].log() + workers[1].log())

        # Receipts: every nonce answered; an executed nonce always with the
        # same id, result and receipt (docs/protocol.md §5, computed here), and
        # "executed" at most once; rejections only for the shared artifacts.
        executed = {}  # nonce -> (id, receipt, approval_id)
        for n, (action, payload, approval_id, g) in requests.items():
            recs = [r for _, r in got[n]]
            self.assertTrue(recs, n)
            statuses = {r["status"] for r in recs}
            if statuses <= {"executed", "replayed"}:
                self.assertLessEqual([r["status"] for r in recs].count("executed"), 1, (n, recs))
                result = {"sum": payload["a"] - 3} if action == "add" else {"echo": payload}
                for r in recs:
                    self.assertExecutedReceipt(r, action, payload, n, result, tenant=TENANT,
                                               status=r["status"], approval_id=approval_id)
                executed[n] = (recs[0]["id"], recs[0]["receipt"], approval_id)
            else:
                self.assertEqual(statuses, {"rejected"}, (n, recs))
                self.assertIsNotNone(g, "ordinary request rejected: %r" % recs)
                for r in recs:
                    self.assertRejectedReceipt(r, "approval_invalid", nonce=n, action="echo",
                                               detail_contains="already used")
        winners = {}
        for g, (approval_id, ns) in groups.items():
            won = [n for n in ns if n in executed]
            if len(won) != 1:
                self.fail("artifact %d executed under %s; receipts %r; the ledger's executions "
                          "of it: %r" % (g, won, {n: [r for _, r in got[n]] for n in ns},
                                         pgq(dbname, "SELECT nonce, id, receipt FROM executions "
                                                     "WHERE approval_id = %s", (approval_id,))))
            winners[g] = won[0]
        self.assertEqual(len(executed), waves * ordinary_per_wave + len(groups))
        # The ledger: each of those once, one execution per approval.
        rows = pgq(dbname, "SELECT nonce, id, receipt, approval_id FROM executions")
        self.assertEqual(len(rows), len(executed))
        self.assertEqual({n: (i, r, a) for n, i, r, a in rows}, executed)
        self.assertEqual(pgq(dbname, "SELECT count(DISTINCT approval_id), count(DISTINCT nonce) "
                                     "FROM executions"), [(len(executed), len(executed))])
        rej = pgq(dbname, "SELECT error_code, count(DISTINCT nonce) FROM rejections "
                          "GROUP BY error_code")
        self.assertEqual(rej, [("approval_invalid", 2 * len(groups))])
        losers = {n for g, (_, ns) in groups.items() for n in ns if n != winners[g]}
        self.assertEqual({n for (n,) in pgq(dbname, "SELECT DISTINCT nonce FROM rejections")},
                         losers)

        # A rebalance (worker 1 leaves), then 100 used nonces with other
        # payloads, each with a valid artifact of its own: all conflicts.
        workers[0].stop()
        print("    after worker 1 left: partitions %s" % self.wait_sharing(workers[1:]))
        # Receipts the rebalance re-published (replays from the committed
        # offsets): counted once the group has committed every offset and
        # nothing more comes for a while (a pause in the receipts alone is
        # not idle: a rebalance pauses them for seconds).
        n0 = len(reader.messages)
        deadline = time.monotonic() + 120
        lag = committed_lag(b.bootstrap)
        while lag:
            if time.monotonic() > deadline:
                self.fail("committed offsets still %d messages behind after 120 s: %s"
                          % (sum(lag.values()), lag))
            reader.poll(0.5)
            lag = committed_lag(b.bootstrap)
        self.quiet(reader, 1.0)
        print("    idle group: %d receipts re-published after worker 1 left, every offset "
              "committed" % (len(reader.messages) - n0))
        used = [n for n in requests if requests[n][3] is None][:90] + \
               [winners[g] for g in sorted(winners)[:10]]
        self.assertEqual(len(set(used)), 100)
        resent = {}  # nonce -> request hash of the re-send
        msgs = []
        for i, n in enumerate(used):
            payload = {"a": i, "b": 10 ** 6}
            resent[n] = request_hash("add", payload)
            msgs.append((n, jreq("add", payload, n,
                                 approval_artifact=hmac_artifact(SECRET, TENANT, "add", payload))))
        start = len(reader.messages)
        produce(b.bootstrap, msgs)
        answers, late = {}, []

        def sort_new(_r):
            # Receipts of the re-sends, and any other receipt that still
            # comes (a replay the rebalance caused).
            for m in reader.messages[start + len(late) + sum(map(len, answers.values())):]:
                rec = decode_receipt(m.value)
                if m.skey in resent and rec["request_hash"] == resent[m.skey]:
                    answers.setdefault(m.skey, []).append(rec)
                else:
                    late.append((m.skey, rec))
            return len(answers) == len(resent)

        reader.wait_for(sort_new, 30, "receipts of the 100 re-sends")
        self.quiet(reader, 1.0)
        sort_new(reader)
        # One answer each; a second only as a copy of the first (a
        # rebalance can deliver a message again (docs/protocol.md §1.4): receipts may be
        # published more than once, identical in their hashed fields).
        for n in used:
            rec = answers[n][0]
            self.assertRejectedReceipt(rec, "nonce_conflict", nonce=n, action="add")
            for copy in answers[n][1:]:
                self.assertEqual(copy, rec, n)
        copies = sum(len(a) - 1 for a in answers.values())
        # Anything else is a copy of an earlier answer (docs/protocol.md §6), never a new
        # verdict.
        for n, rec in late:
            if n in executed:
                self.assertEqual((rec["status"], rec["id"], rec["receipt"]),
                                 ("replayed",) + executed[n][:2], rec)
            else:
                self.assertIn(n, losers, rec)
                self.assertRejectedReceipt(rec, "approval_invalid", nonce=n,
                                           detail_contains="already used")
        print("    100 re-sends: 100 nonce_conflict (%d copies); %d other receipts (replays) "
              "came meanwhile" % (copies, len(late)))
        self.assertEqual(pgq(dbname, "SELECT count(*) FROM executions"), [(len(executed),)])
        # Each delivery of a re-send is one rejection row (and one receipt).
        self.assertEqual(pgq(dbname, "SELECT count(*), count(DISTINCT nonce) FROM rejections "
                                     "WHERE error_code = 'nonce_conflict'"), [(100 + copies, 100)])
        for w in workers:
            self.assertNoFatalExceptPg(w)
        print("    test body %.1f s" % (time.monotonic() - t_test))

    # -- 7. PostgreSQL goes away while a worker runs

    def test_ledger_outage_pauses_and_resumes(self):
        b = self.broker(partitions=PARTITIONS)
        url, dbname = pg_ledger()
        reader = self.reader(b.bootstrap)
        w = self.pg_worker(b.bootstrap, url)
        # A bridge-only node runs no batch that would find the ledger gone:
        # its /ready asks the ledger itself.
        bridge = self.pg_worker(b.bootstrap, url, args=["--worker", "0"])
        t = tag()
        warm = "out-%s-warm" % t
        produce(b.bootstrap, [(warm, jreq("echo", {"w": 1}, warm))])
        self.only(self.receipts_for(reader, [warm]), warm)
        self.assertEqual(w.get("/receipts?nonce=" + warm).status, 200)
        cluster = pgcluster.shared_cluster()
        nonces = ["out-%s-%d" % (t, i) for i in range(200)]
        try:
            cluster.stop()
            sent = produce(b.bootstrap, [(n, jreq("add", {"a": i, "b": 3}, n))
                                         for i, n in enumerate(nonces)])
            t0 = time.monotonic()

            def unavailable():
                st, reason = ready(w)
                return st == 503 and reason and reason.startswith("ledger unavailable")

            self.wait_until(unavailable, 30, "/ready 503 'ledger unavailable'", [w])
            print("    /ready 503 'ledger unavailable' %.1f s after the requests: %r"
                  % (time.monotonic() - t0, ready(w)[1][:120]))
            self.assertEqual(w.metrics()["openexec_ledger_unavailable"], 1)
            self.assertEqual(w.get("/health").status, 200)
            # Our words only: PostgreSQL's text, host and port are logged.
            self.assertEqual(ready(w), (503, "ledger unavailable"))
            self.wait_until(lambda: ready(bridge) == (503, "ledger unavailable"), 10,
                            "the bridge-only node's /ready 503 'ledger unavailable'", [bridge])
            self.assertDetail(w.get("/receipts?nonce=" + warm), 503, equals="ledger unavailable")
            self.assertIn("ledger unavailable, consumption paused", w.log())
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                reader.poll(0.1)
            self.assertEqual(len(reader.messages), 1, "receipts while the ledger is down: %r"
                             % reader.messages[1:4])
            self.assertTrue(unavailable())
            self.assertTrue(w.alive())
        finally:
            ensure_pg_running()
        t0 = time.monotonic()
        got = self.receipts_for(reader, nonces, timeout=60, settle=1.0)
        print("    PostgreSQL back; all 200 answered %.1f s later" % (time.monotonic() - t0))
        for i, n in enumerate(nonces):
            self.assertExecutedReceipt(self.only(got, n), "add", {"a": i, "b": 3}, n,
                                       {"sum": i + 3})
        self.assertEqual(len(reader.messages), 201)
        self.assertEqual(pgq(dbname, "SELECT count(*), count(DISTINCT nonce) FROM executions "
                                     "WHERE nonce <> %s", (warm,)), [(200, 200)])
        self.assertEqual(pgq(dbname, "SELECT count(*) FROM rejections"), [(0,)])
        self.wait_until(lambda: ready(w) == (200, None), 30, "/ready 200 again", [w])
        self.wait_until(lambda: ready(bridge) == (200, None), 30,
                        "the bridge-only node's /ready 200 again", [bridge])
        self.assertEqual(w.metrics()["openexec_ledger_unavailable"], 0)
        self.assertIn("ledger available again, consumption resumed", w.log())
        self.assertEqual(processed(w), 201)
        self.assertGreater(len({p for p, _ in sent}), 1)
        # The admin look-ups work again too.
        r = w.get("/receipts?nonce=" + nonces[7])
        self.assertStatus(r, 200)
        self.assertStoredReceipt(r.json, "add", {"a": 7, "b": 3}, nonces[7], {"sum": 10})
        self.assertNoFatalExceptPg(w)

    # -- 8. a rebalance during a ledger outage

    def join_group(self, bootstrap, worker):
        """A plain Kafka member (confluent_kafka, cooperative-sticky) joins
        the workers' group and takes partitions from `worker`; it pauses
        them and never commits. Returns (consumer, its partitions) once the
        two own all partitions between them."""
        import confluent_kafka
        c = confluent_kafka.Consumer({
            "bootstrap.servers": bootstrap, "group.id": "openexec-workers",
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": QUICK_SESSION_MS, "heartbeat.interval.ms": 500})
        self._members.append(c)
        c.subscribe([REQUESTS_TOPIC])
        deadline = time.monotonic() + 40
        mine = set()
        while True:
            c.poll(0.2)  # what it reads is never committed
            a = c.assignment()
            if a:
                c.pause(a)
                mine = {tp.partition for tp in a}
            if mine and len(mine) + self.shares([worker])[0] == PARTITIONS:
                return c, mine
            self.assertLess(time.monotonic(), deadline, "the member got no partitions (%s)"
                            % mine)

    def leave_group(self, consumer, worker):
        consumer.close()
        self._members.remove(consumer)
        self.wait_until(lambda: self.shares([worker]) == [PARTITIONS], 40,
                        "the worker owning every partition again", [worker])

    def outage_worker(self):
        b = self.broker(partitions=PARTITIONS)
        url, dbname = pg_ledger()
        reader = self.reader(b.bootstrap)
        w = self.pg_worker(b.bootstrap, url, failover=QUICK_REBALANCE)
        self.assertEqual(self.shares([w]), [PARTITIONS])
        return b, dbname, reader, w

    def wait_unavailable(self, w):
        def unavailable():
            st, reason = ready(w)
            return st == 503 and reason and reason.startswith("ledger unavailable")
        self.wait_until(unavailable, 30, "/ready 503 'ledger unavailable'", [w])

    def test_outage_batch_revoked_is_retried(self):
        # PostgreSQL is down; the worker holds a batch of one request and
        # waits for the ledger, consumption paused. A member joins and takes
        # that request's partition (the batch in hand is dropped), then
        # leaves again. Once PostgreSQL is back the request is answered.
        # Regression: the worker stayed paused for ever ("ledger
        # unavailable" in /ready) because only a batch in hand retried the
        # ledger, and its batch was gone.
        b, dbname, reader, w = self.outage_worker()
        # Partition 0: a cooperative-sticky newcomer here takes 0-7 (checked
        # below).
        n = next("rv-%s-%d" % (t, i) for t in [tag()] for i in range(1000)
                 if partition_of("rv-%s-%d" % (t, i)) == 0)
        try:
            pgcluster.shared_cluster().stop()
            ((p, _),) = produce(b.bootstrap, [(n, jreq("add", {"a": 1, "b": 2}, n))])
            self.assertEqual(p, 0)
            self.wait_unavailable(w)
            member, mine = self.join_group(b.bootstrap, w)
            print("    the member took partitions %s" % sorted(mine))
            self.assertIn(p, mine, "precondition: the member did not take the request's "
                          "partition")
        finally:
            ensure_pg_running()
        self.leave_group(member, w)
        got = self.receipts_for(reader, [n], timeout=30, settle=1.0)
        self.assertExecutedReceipt(self.only(got, n), "add", {"a": 1, "b": 2}, n, {"sum": 3})
        self.wait_until(lambda: ready(w) == (200, None), 30, "/ready 200", [w])
        self.assertEqual(w.metrics()["openexec_ledger_unavailable"], 0)
        self.assertEqual(pgq(dbname, "SELECT nonce FROM executions"), [(n,)])
        self.assertNoFatalExceptPg(w)

    def test_outage_partitions_back_after_rebalance(self):
        # PostgreSQL is down with one request on each partition; a member
        # joins and takes half of the partitions; PostgreSQL comes back (the
        # worker answers its half), then the member leaves and its half
        # returns to the worker, which must answer it too.
        # Regression: partitions paused during the outage, revoked, and
        # assigned again after the worker had resumed stayed paused for ever
        # (librdkafka keeps a partition's pause across an unassign), with
        # /ready 200.
        b, dbname, reader, w = self.outage_worker()
        t = tag()
        keys = {}
        i = 0
        while len(keys) < PARTITIONS:
            k = "pb-%s-%d" % (t, i)
            keys.setdefault(partition_of(k), k)
            i += 1
        nonces = [keys[p] for p in range(PARTITIONS)]
        try:
            pgcluster.shared_cluster().stop()
            sent = produce(b.bootstrap, [(n, jreq("add", {"a": p, "b": 1}, n))
                                         for p, n in enumerate(nonces)])
            self.assertEqual([p for p, _ in sent], list(range(PARTITIONS)))
            self.wait_unavailable(w)
            member, mine = self.join_group(b.bootstrap, w)
            print("    the member took partitions %s" % sorted(mine))
        finally:
            ensure_pg_running()
        theirs = [nonces[p] for p in sorted(mine)]
        ours = [nonces[p] for p in range(PARTITIONS) if p not in mine]
        self.receipts_for(reader, ours, timeout=30)
        self.wait_until(lambda: ready(w) == (200, None), 30, "/ready 200", [w])
        self.leave_group(member, w)
        got = self.receipts_for(reader, nonces, timeout=30, settle=1.0)
        for p, n in enumerate(nonces):
            self.assertExecutedReceipt(self.only(got, n), "add", {"a": p, "b": 1}, n,
                                       {"sum": p + 1})
        self.assertEqual(len(reader.messages), PARTITIONS)
        self.assertEqual(len(theirs), len(mine))
        self.assertEqual(pgq(dbname, "SELECT count(*) FROM executions"), [(PARTITIONS,)])
        self.assertEqual(ready(w), (200, None))
        self.assertNoFatalExceptPg(w)


    # -- 9. least privilege: workers with only the documented grants

    def test_documented_grants_are_enough(self):
        b = self.broker(partitions=PARTITIONS)
        url, dbname = pg_ledger()
        reader = self.reader(b.bootstrap)
        # The owner creates the schema; a second run finds nothing to do.
        r = cli(["ledger", "migrate", "--db-url", url])
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.fullmatch(r"ledger at version (\d+) \(was 0\)\n", r.stdout)
        self.assertTrue(m, r.stdout)
        version = int(m.group(1))
        r = cli(["ledger", "migrate", "--db-url", url])
        self.assertEqual((r.returncode, r.stdout),
                         (0, "ledger at version %d (was %d)\n" % (version, version)), r.stderr)
        wurl = grant_documented(dbname)
        # The role holds nothing more than the grants: no DDL, no UPDATE or
        # DELETE, not the owner.
        self.assertEqual(pgq(dbname, "SELECT has_schema_privilege(%s, 'public', 'CREATE'),"
                                     " has_table_privilege(%s, 'executions', 'UPDATE'),"
                                     " has_table_privilege(%s, 'rejections', 'DELETE'),"
                                     " has_table_privilege(%s, 'schema_migrations', 'INSERT'),"
                                     " pg_has_role(%s, (SELECT relowner FROM pg_class"
                                     "  WHERE oid = 'executions'::regclass), 'USAGE')",
                             [WORKER_ROLE] * 5), [(False, False, False, False, False)])
        w1, w2, bridge = self.start_together(
            [self.pg_worker(b.bootstrap, wurl, start=False),
             self.pg_worker(b.bootstrap, wurl, start=False),
             self.pg_worker(b.bootstrap, wurl, args=["--worker", "0"], start=False)])
        print("    partitions: %d / %d" % tuple(self.wait_sharing([w1, w2])))
        t = tag()
        nonces = ["lp-%s-%d" % (t, i) for i in range(20)]
        produce(b.bootstrap, [(n, jreq("add", {"a": i, "b": 1}, n)) for i, n in enumerate(nonces)])
        got = self.receipts_for(reader, nonces)
        for i, n in enumerate(nonces):
            self.assertExecutedReceipt(self.only(got, n), "add", {"a": i, "b": 1}, n,
                                       {"sum": i + 1})
        # Replays, conflicts and invalid requests, in Kafka mode: every one
        # is answered, every rejection recorded, and the workers go on.
        bad = {"lp-bad-json-%s" % t: b"{not json",
               "lp-unknown-%s" % t: jreq("no_such_action", {}, "lp-unknown-%s" % t),
               "lp-no-nonce-%s" % t: jreq("echo", {"x": 1}, None)}
        msgs = [(n, jreq("add", {"a": i, "b": 1}, n)) for i, n in enumerate(nonces[:5])]
        msgs += [(n, jreq("add", {"a": i, "b": 2}, n)) for i, n in enumerate(nonces[5:10])]
        msgs += list(bad.items())
        produce(b.bootstrap, msgs)
        got = self.receipts_for(reader, nonces[:10], count=2)
        got.update(self.receipts_for(reader, sorted(bad), settle=1.0))
        got = {k: [r for _, r in v] for k, v in got.items()}
        for i, n in enumerate(nonces[:5]):
            self.assertEqual([r["status"] for r in got[n]], ["executed", "replayed"], n)
            self.assertExecutedReceipt(got[n][1], "add", {"a": i, "b": 1}, n, {"sum": i + 1},
                                       status="replayed")
        for n in nonces[5:10]:
            self.assertEqual([r["status"] for r in got[n]], ["executed", "rejected"], n)
            self.assertRejectedReceipt(got[n][1], "nonce_conflict", nonce=n)
        self.assertRejectedReceipt(got["lp-bad-json-%s" % t][0], "malformed")
        self.assertRejectedReceipt(got["lp-unknown-%s" % t][0], "unknown_action")
        self.assertRejectedReceipt(got["lp-no-nonce-%s" % t][0], "malformed")
        # Through the bridge-only node: executed, replayed, conflict, invalid.
        n = "lp-bridge-%s" % t
        self.assertExecuted(bridge.execute("echo", {"m": 1}, n), "echo", {"m": 1}, n,
                            result={"echo": {"m": 1}})
        self.assertExecuted(bridge.execute("echo", {"m": 1}, n), "echo", {"m": 1}, n,
                            result={"echo": {"m": 1}}, status="replayed")
        self.assertDetail(bridge.execute("echo", {"m": 2}, n), 409)
        self.assertDetail(bridge.execute("no_such_action", {}, "lp-bridge-bad-%s" % t), 400)
        self.assertEqual(pgq(dbname, "SELECT count(*) FROM executions"), [(21,)])
        # The payloads kept, canonical, from the Kafka path too.
        self.assertEqual(pgq(dbname, "SELECT payload FROM executions WHERE nonce = %s",
                             (nonces[3],)), [('{"a":3,"b":1}',)])
        self.assertEqual(pgq(dbname, "SELECT payload FROM rejections WHERE nonce = %s",
                             (nonces[7],)), [('{"a":2,"b":2}',)])
        self.assertEqual(pgq(dbname, "SELECT error_code, count(*) FROM rejections"
                                     " GROUP BY error_code ORDER BY error_code"),
                         [("malformed", 2), ("nonce_conflict", 6), ("unknown_action", 2)])
        for w in (w1, w2, bridge):
            self.assertTrue(w.alive())
            self.assertEqual(ready(w), (200, None))
            self.assertNoFatal(w)
            self.assertNotIn("permission denied", w.log())
        self.assertEqual(processed(w1) + processed(w2), 20 + 13 + 4)

    def test_worker_role_refuses_an_older_schema(self):
        url, dbname = pg_ledger()
        pgq(dbname, PG_V1)
        pgq(dbname, "ALTER TABLE executions OWNER TO openexec; ALTER TABLE rejections OWNER TO "
                    "openexec; ALTER TABLE schema_migrations OWNER TO openexec")
        h = request_hash("echo", {"old": 1})
        eid = execution_id("", "old-1", h)
        pgq(dbname, "INSERT INTO executions VALUES (%s, 'old-1', 'echo', %s, '', NULL, true,"
                    " %s, %s, 1.5)", (eid, h, result_json({"echo": {"old": 1}}),
                                      receipt_hash(eid, {"echo": {"old": 1}})))
        pgq(dbname, "INSERT INTO rejections (nonce, action, request_hash, error_code, detail,"
                    " created_at) VALUES ('old-2', 'echo', NULL, 'malformed', 'x', 2.5)")
        wurl = grant_documented(dbname, version_1=True)
        r = cli(["run", "--db-url", wurl, "--http-port", "0", "--execute", "local"],
                timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("ledger schema version 1 is older than this binary's", r.stderr)
        self.assertIn("run `openexec ledger migrate` with the role that owns the ledger",
                      r.stderr)
        self.assertNotIn(WORKER_PASSWORD, r.stderr)
        # Nothing was attempted: still version 1.
        self.assertEqual(pgq(dbname, "SELECT max(version) FROM schema_migrations"), [(1,)])
        # The worker role may not migrate either; the owner may.
        r = cli(["ledger", "migrate", "--db-url", wurl])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("ledger migrate:", r.stderr)
        # A migration that would wait for a table another transaction holds
        # (every worker statement would queue behind its ALTER) gives up
        # after its 5 s lock timeout instead, changing nothing.
        holder = pgcluster.shared_cluster()._connect(dbname)
        try:
            holder.autocommit = False
            with holder.cursor() as cur:
                cur.execute("SELECT count(*) FROM executions")
            t0 = time.monotonic()
            r = cli(["ledger", "migrate", "--db-url", url], timeout=25)
            waited = time.monotonic() - t0
        finally:
            holder.rollback()
            holder.close()
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("lock timeout", r.stderr)
        self.assertTrue(4 <= waited < 20, waited)
        self.assertEqual(pgq(dbname, "SELECT max(version) FROM schema_migrations"), [(1,)])
        r = cli(["ledger", "migrate", "--db-url", url])
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.fullmatch(r"ledger at version (\d+) \(was 1\)\n", r.stdout)
        self.assertTrue(m and int(m.group(1)) > 1, r.stdout)
        self.assertEqual(pgq(dbname, "SELECT max(version) FROM schema_migrations"),
                         [(int(m.group(1)),)])
        self.assertEqual(pgq(dbname, "SELECT id, nonce, request_hash, payload FROM executions"),
                         [(eid, "old-1", h, None)])
        self.assertEqual(pgq(dbname, "SELECT nonce, error_code, payload FROM rejections"),
                         [("old-2", "malformed", None)])
        # Now current, and the documented grants run again (the upgrade
        # added tables: docs/operations.md): the worker role starts and answers from
        # the old rows.
        grant_documented(dbname)
        w = self.server(args=["--db-url", wurl, "--execute", "local"])
        self.assertExecuted(w.execute("echo", {"old": 1}, "old-1"), "echo", {"old": 1}, "old-1",
                            result={"echo": {"old": 1}}, status="replayed")
        self.assertExecuted(w.execute("echo", {"new": 1}, "new-1"), "echo", {"new": 1}, "new-1",
                            result={"echo": {"new": 1}})
        self.assertNoFatal(w)
        # A role short of one documented grant is refused at start, naming
        # them, instead of stopping at its first rejection.
        pgq(dbname, "REVOKE USAGE ON SEQUENCE rejections_seq_seq FROM %s" % WORKER_ROLE)
        r = cli(["run", "--db-url", wurl, "--http-port", "0", "--execute", "local"],
                timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("this role lacks a privilege workers use", r.stderr)
        self.assertIn("USAGE on sequences rejections_seq_seq", r.stderr)
        self.assertNotIn(WORKER_PASSWORD, r.stderr)

if __name__ == "__main__":
    run_tests()
