"""Black-box tests of the Kafka path on real Apache Kafka (KRaft, three
combined broker+controller nodes started by tests/kafka/kafka.sh through
tests/http/kafkacluster.py), not on the embedded mock broker: what the mock
cannot show (docs/guide.md "Delivery guarantee", docs/protocol.md §5, §6, §7).

1. Transactions end to end (OPENEXEC_KAFKA_TRANSACTIONS=1): 50,000 requests,
   the worker kill -9ed five times at random instants and restarted on the
   same ledger with the same transactional id; before the fifth kill the
   broker that leads most receipts partitions is kill -9ed mid-stream (the
   worker's deliveries to it fail, the transaction is aborted and the batch
   published again), the worker is killed while that broker is still down,
   and the broker comes back while the last worker finishes. A
   read_committed consumer of the receipts topic sees exactly one receipt
   per nonce, equal to the ledger and to docs/protocol.md §5 computed here; a
   read_uncommitted one sees more (aborted copies: transactions really were
   on); the group's committed offsets reach the end of the requests topic.
2. Broker failover: one worker (never restarted) through 50,000 requests
   while the broker leading most requests partitions is kill -9ed and
   restarted, then while two brokers and then all three are down. Every
   request answered, every nonce executed once (ledger and the worker's own
   counter), receipts identical per nonce; the failover time (kill ->
   receipts flowing again) is measured and printed; GET /ready must answer
   503 once receipts have waited 10 s for two brokers that are gone, and
   while no broker is reachable.
3. Rebalances: three workers of one group on one shared ledger joining and
   leaving (SIGTERM, restart, a late third) during 30,000 requests on 12
   partitions: every nonce executed once, answered, and all its receipts
   identical. Then static membership (OPENEXEC_GROUP_INSTANCE_ID): a member
   restarted within the session timeout gets its partitions back without
   the other members being revoked or assigned anything.

One three-node cluster serves the whole file (started on first use,
stopped at exit); each test has topics and a group of its own, created
with `openexec topics`, and starts by bringing every node back up.
Random instants come from a seed printed at the start
(OPENEXEC_TEST_SEED=N repeats a run)."""

import os
import random
import signal
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (cli, committed_offsets, decode_receipt, execution_id,  # noqa: E402
                     kafka_producer, ledger_query, produce, receipt_hash, request_hash,
                     result_json, run_tests, TopicReader)
from kafkacluster import KafkaCluster  # noqa: E402
from test_kafka import KafkaCase, jreq  # noqa: E402

SEED = int(os.environ.get("OPENEXEC_TEST_SEED", int(time.time() * 1000) % 1000000))

# A dead member's partitions move after session.timeout.ms; 6 s is the
# broker's group.min.session.timeout.ms.
FAST_FAILOVER = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"]

_cluster = None


def cluster():
    """The file's three-node cluster (KafkaCluster.up registers its down()
    at exit)."""
    global _cluster
    if _cluster is None:
        t0 = time.monotonic()
        _cluster = KafkaCluster(nodes=3).up()
        print("    (three-node KRaft cluster up in %.1f s: %s; seed %d)"
              % (time.monotonic() - t0, _cluster.bootstrap, SEED))
    return _cluster


def tag():
    return uuid.uuid4().hex[:8]


class Topics:
    def __init__(self, prefix):
        self.requests = prefix + ".requests"
        self.receipts = prefix + ".receipts"
        self.dlq = prefix + ".requests.dlq"

    def args(self):
        return ["--requests-topic", self.requests, "--receipts-topic", self.receipts,
                "--dlq-topic", self.dlq]


def java_hash(s):
    """Java's String.hashCode (ASCII), as a signed 32-bit int."""
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def txn_partition(txid, partitions=8):
    """The __transaction_state partition whose leader coordinates the
    transactional id txid (TransactionStateManager.partitionFor:
    Utils.abs(hashCode) % n, Utils.abs(MIN_VALUE) being 0), or the
    __consumer_offsets partition of the group txid (the group coordinator's
    formula is the same); kafka.sh makes both topics 8 partitions."""
    h = java_hash(txid)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def add_requests(prefix, total):
    """[(nonce, payload)] and the JSON messages keyed by nonce."""
    t = tag()
    reqs = [("%s-%s-%d" % (prefix, t, i), {"a": i, "b": 1}) for i in range(total)]
    msgs = [(n, jreq("add", p, n)) for n, p in reqs]
    return reqs, msgs


def expected_receipt(nonce, payload):
    h = request_hash("add", payload)
    eid = execution_id("", nonce, h)
    result = {"sum": payload["a"] + payload["b"]}
    return {"id": eid, "nonce": nonce, "action": "add", "request_hash": h,
            "result": result_json(result), "receipt": receipt_hash(eid, result),
            "approved": True, "error_code": None, "detail": None, "approval_id": None}


def probe_coordinator(bootstrap, txid):
    """Initialises transactions with txid in a throw-away producer;
    returns the node ids librdkafka named as its transaction coordinator."""
    import logging
    import confluent_kafka
    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    log = logging.getLogger("rk-probe-" + txid)
    log.propagate = False
    log.addHandler(Keep())
    log.setLevel(logging.DEBUG)
    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "transactional.id": txid,
                                  "debug": "eos", "logger": log})
    p.init_transactions(30)
    p.poll(0.1)
    del p
    return {int(line.split("TxnCoordinator/", 1)[1].split(":")[0].split()[0])
            for line in lines if "TxnCoordinator/" in line
            and line.split("TxnCoordinator/", 1)[1][:1].isdigit()}


def processed(w):
    """Requests the worker process has answered (executed or replayed)."""
    m = w.metrics()
    return sum(m.get('openexec_requests_total{status="%s"}' % s, 0)
               for s in ("executed", "replayed", "rejected"))


class Tracker:
    """A TopicReader that also keeps the distinct keys it has seen and when
    each poll brought something (monotonic time, messages)."""

    def __init__(self, bootstrap, topic, isolation="read_uncommitted"):
        # log_level 2: brokers killed on purpose are not news.
        self.reader = TopicReader(bootstrap, topic, **{"isolation.level": isolation,
                                                       "log_level": 2})
        self.keys = set()
        self.arrivals = []

    @property
    def messages(self):
        return self.reader.messages

    def poll(self, timeout=0.05):
        new = self.reader.poll(timeout)
        if new:
            self.arrivals.append((time.monotonic(), len(new)))
            for m in new:
                self.keys.add(m.skey)
        return new

    def close(self):
        self.reader.close()


def stall_after(arrivals, t0, t_end):
    """(start, end) of the longest stretch of [t0, t_end] without arrivals,
    relative to t0."""
    times = [t0] + [t for t, _ in arrivals if t0 < t <= t_end] + [t_end]
    gap, at = max((times[i + 1] - times[i], i) for i in range(len(times) - 1))
    return times[at] - t0, times[at + 1] - t0


class RealKafka(KafkaCase):
    """KafkaCase on the file's cluster: topics, workers, receipts checks."""

    def setUp(self):
        super().setUp()
        self.c = cluster()
        self.rng = random.Random("%d-%s" % (SEED, self._testMethodName))
        self.trackers = []
        self._decoded = {}  # (topic, partition, offset) -> receipt (decoded())
        self.deferred = []  # failures checked at the end, so that every figure is measured
        self.all_nodes_up()

    def tearDown(self):
        for t in self.trackers:
            t.close()
        self.trackers = []
        # Every node back before the workers drain on SIGTERM (a test that
        # failed during an outage), and for the next test.
        try:
            self.all_nodes_up(60)
        except Exception as e:  # reported, and the workers are still stopped
            print("    tearDown: the cluster did not come back: %s" % e)
        keep = os.environ.get("OPENEXEC_TEST_KEEP_LOGS")  # a directory for the workers' logs
        if keep:
            import shutil
            d = os.path.join(keep, self._testMethodName)
            os.makedirs(d, exist_ok=True)
            for s in self._servers:
                if s.log_path and os.path.exists(s.log_path):
                    shutil.copy(s.log_path, d)
        super().tearDown()

    def all_nodes_up(self, timeout=90):
        for n in (1, 2, 3):
            self.c.start(n)
        self.c.wait(timeout)

    # -- topics and workers

    def topics(self, prefix, partitions):
        """The test's requests, receipts and dead-letter topics, replication
        factor 3, created with `openexec topics`; returns once every
        partition has a leader."""
        t = Topics("%s-%s" % (prefix, tag()))
        args = ["topics", "--brokers", self.c.bootstrap, "--partitions", str(partitions),
                "--replication-factor", "3"] + t.args()
        p = cli(args, timeout=60)
        self.assertEqual(p.returncode, 0, "openexec %s: %s%s" % (" ".join(args), p.stdout,
                                                                  p.stderr))
        deadline = time.monotonic() + 30
        for name in (t.requests, t.receipts, t.dlq):
            while True:
                try:
                    leaders = self.c.leaders(name)
                except (RuntimeError, KeyError):
                    leaders = {}
                if len(leaders) == partitions and all(v >= 1 for v in leaders.values()):
                    break
                self.assertLess(time.monotonic(), deadline, "%s: partitions %s" % (name, leaders))
                time.sleep(0.2)
        return t

    def track(self, topic, isolation="read_uncommitted"):
        tr = Tracker(self.c.bootstrap, topic, isolation)
        self.trackers.append(tr)
        return tr

    def start_worker(self, topics, group, db, env=None, args=(), ready_timeout=60):
        """`openexec run` on the cluster, its own topics and group; returns
        once it owns partitions (/ready 200)."""
        a = topics.args() + ["--group-id", group] + list(args)
        w = self.worker(self.c.bootstrap, env=env, db=db, args=a, start=False)
        w.start(wait_ready=False)
        if ready_timeout:
            self.wait_ready(w, ready_timeout)
        return w

    def wait_ready(self, w, timeout):
        deadline = time.monotonic() + timeout
        r = None
        while True:
            self.assertTrue(w.alive(), "worker exited; log: %s" % w.log()[-3000:])
            try:
                r = w.get("/ready", timeout=2)
                if r.status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.fail("worker not ready within %.0f s (/ready %r); log: %s"
                          % (timeout, r, w.log()[-3000:]))
            time.sleep(0.1)

    def ready(self, w):
        try:
            r = w.get("/ready", timeout=3)
        except OSError as e:
            return None, "no answer: %s" % e
        try:
            return r.status, r.json.get("reason")
        except ValueError:
            return r.status, r.body[:200]

    def wait_answered(self, tracker, nonces, timeout, what, workers=()):
        """Polls until every nonce has a receipt on the tracker's topic."""
        want = set(nonces)
        deadline = time.monotonic() + timeout
        while not want <= tracker.keys:
            if time.monotonic() > deadline:
                missing = sorted(want - tracker.keys)
                self.fail("%s: %d of %d nonces unanswered after %.0f s (e.g. %s); logs:\n%s"
                          % (what, len(missing), len(want), timeout, missing[:5],
                             "\n----\n".join(w.log()[-3000:] for w in workers)))
            tracker.poll(0.1)

    def settle(self, tracker, quiet=2.0, timeout=60):
        """Reads until nothing has come for `quiet` s."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            self.assertLess(time.monotonic(), deadline, "receipts kept coming")
            if tracker.poll(0.1):
                last = time.monotonic()

    def decoded(self, m):
        """decode_receipt of a receipt message, once per message (Avro in
        Python is about 50 us a receipt, and the checks read 50,000-110,000
        of them, some twice)."""
        key = (m.topic, m.partition, m.offset)
        rec = self._decoded.get(key)
        if rec is None:
            rec = self._decoded[key] = decode_receipt(m.value)
        return rec

    def check_receipts(self, tracker, reqs):
        """Every nonce answered; every copy of its receipt equal to docs/protocol.md §5
        computed here (so all copies identical). Returns ({nonce: copies},
        {status: count})."""
        by = tracker.reader.by_key()
        want = dict(reqs)
        counts, statuses = {}, {}
        self.assertEqual(set(by) - set(want), set(), "receipts for nonces never requested")
        for n, payload in reqs:
            msgs = by.get(n)
            self.assertTrue(msgs, "no receipt for %s" % n)
            exp = expected_receipt(n, payload)
            for m in msgs:
                rec = self.decoded(m)
                got = {k: rec.get(k) for k in exp}
                if got != exp:
                    self.fail("receipt of %s differs from docs/protocol.md §5: %r, expected %r"
                              % (n, rec, exp))
                self.assertIn(rec["status"], ("executed", "replayed"), rec)
                statuses[rec["status"]] = statuses.get(rec["status"], 0) + 1
            counts[n] = len(msgs)
        return counts, statuses

    def check_ledger(self, db, reqs):
        """One execution per nonce, equal to docs/protocol.md §5."""
        rows = ledger_query(db, "SELECT nonce, id, receipt FROM executions")
        self.assertEqual(len(rows), len(reqs), "executions in the ledger")
        self.assertEqual(len({r[0] for r in rows}), len(reqs))
        exp = {n: expected_receipt(n, p) for n, p in reqs}
        bad = [(n, i, r) for n, i, r in rows
               if n not in exp or (exp[n]["id"], exp[n]["receipt"]) != (i, r)]
        self.assertEqual(bad[:5], [], "ledger rows that differ from docs/protocol.md §5")
        return rows

    def assertClean(self, w, allow=()):
        log = w.log()
        if "; replacing the producer" in log:
            # A fatal producer error answered by a new producer (docs/guide.md):
            # its lines are expected; "worker stopped" still is not.
            allow = tuple(allow) + ("Fatal transaction error", "Fatal error:",
                                    "fatal producer error", "fatal: replacing the producer")
        for word in ("fatal", "worker stopped", "sanitizer", "segmentation", "data loss"):
            hits = [line for line in log.splitlines() if word in line.lower()
                    and not any(a in line for a in allow)]
            self.assertEqual(hits[:5], [], "%r in the worker's log" % word)

    def lines(self, w, *words):
        return [line for line in w.log().splitlines() if any(x in line for x in words)]

    def end_offsets(self, topic):
        import confluent_kafka
        c = confluent_kafka.Consumer({"bootstrap.servers": self.c.bootstrap,
                                      "group.id": "rk-ends-%s" % tag()})
        try:
            md = c.list_topics(topic, timeout=10)
            return {p: c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p),
                                               timeout=10)[1]
                    for p in md.topics[topic].partitions}
        finally:
            c.close()

    def most_led(self, topic):
        """The node leading most partitions of topic, how many, and the
        count of every leader."""
        counts = {}
        for leader in self.c.leaders(topic).values():
            counts[leader] = counts.get(leader, 0) + 1
        node = max(sorted(counts), key=lambda n: counts[n])
        return node, counts[node], counts

    def watch_ready(self, w, tracker, seconds):
        """GET /ready every 0.25 s for `seconds` (reading receipts between);
        returns its changes: [(s since the start, status, reason)]."""
        t0 = time.monotonic()
        out = []
        while time.monotonic() - t0 < seconds:
            st, reason = self.ready(w)
            if not out or (out[-1][1], out[-1][2]) != (st, reason):
                out.append((round(time.monotonic() - t0, 1), st, reason))
            tracker.poll(0.25)
        return out

    def finish_deferred(self):
        if self.deferred:
            self.fail("\n".join(self.deferred))


class Transactions(RealKafka):
    def test_transactions_kill9_and_broker_kill(self):
        total, kills_wanted = 50000, 5
        t_test = time.monotonic()
        topics = self.topics("rk-txn", 16)
        # The broker to kill leads most receipts partitions. The worker's
        # transaction coordinator and group coordinator are other nodes (a
        # transactional id and a group id whose __transaction_state and
        # __consumer_offsets partitions other nodes lead): the kill is to
        # fail deliveries, not to hold up a transaction's offsets or commit
        # until a coordinator moves (a broker death during that phase only
        # delays the commit by the controller's ~9 s broker session, and
        # the next batch finds the leaders moved: no delivery fails). Throw-
        # away clients make sure both internal topics exist; another
        # producer with the chosen id confirms its coordinator.
        probe_coordinator(self.c.bootstrap, "rk-probe-%s" % tag())
        committed_offsets(self.c.bootstrap, "rk-probe-%s" % tag(), topics.requests)
        state = self.c.leaders("__transaction_state")
        offsets = self.c.leaders("__consumer_offsets")
        _, _, spread = self.most_led(topics.receipts)
        victim = next((n for n in sorted(spread, key=lambda n: -spread[n])
                       if set(state.values()) - {n} and set(offsets.values()) - {n}), None)
        self.assertIsNotNone(victim, "every internal partition led by one node: %s %s"
                             % (state, offsets))
        led = spread[victim]
        names = ["rk-txn-%s-%d" % (tag(), i) for i in range(100)]
        txid = next(x for x in names if state[txn_partition(x)] != victim)
        group = next(x for x in names if offsets[txn_partition(x)] != victim)
        coordinator = state[txn_partition(txid)]
        self.assertEqual(probe_coordinator(self.c.bootstrap, txid), {coordinator},
                         "transaction coordinator of %s" % txid)
        print("    receipts partitions by leader %s; node %d leads %d of them; node %d "
              "coordinates transactional id %s, node %d group %s"
              % (spread, victim, led, coordinator, txid, offsets[txn_partition(group)], group))
        env = {"OPENEXEC_KAFKA_TRANSACTIONS": "1", "OPENEXEC_TRANSACTIONAL_ID": txid}
        # message.timeout.ms lowered from 30 s: a receipt whose leader is
        # gone must fail its delivery before the controller (9 s broker
        # session) elects a new leader, so that the transaction is aborted
        # and the batch published again in a new one.
        args = FAST_FAILOVER + ["-X", "message.timeout.ms=5000"]
        db = self.path("txn.db")
        reqs, msgs = add_requests("txn", total)
        nonces = [n for n, _ in reqs]
        t0 = time.monotonic()
        produce(self.c.bootstrap, msgs, topic=topics.requests, timeout=120)
        print("    produced %d requests in %.1f s" % (total, time.monotonic() - t0))
        unc = self.track(topics.receipts)  # read_uncommitted: aborted copies too

        workers = []
        kills = 0
        failover = None
        while kills < kills_wanted:
            t_start = time.monotonic()
            w = self.start_worker(topics, group, db, env=env, args=args)
            workers.append(w)
            ready_s = time.monotonic() - t_start
            # Working: this incarnation has answered requests.
            deadline = time.monotonic() + 60
            while processed(w) == 0:
                self.assertTrue(w.alive(), w.log()[-3000:])
                self.assertLess(time.monotonic(), deadline, "incarnation %d answers nothing; "
                                "log: %s" % (len(workers), w.log()[-3000:]))
                unc.poll(0.02)
            n0 = len(unc.messages)
            if kills == kills_wanted - 1:
                # The last one killed lives through the broker kill first,
                # and is killed while that broker is still down.
                failover = self.kill_broker_mid_stream(w, unc, victim, total)
                limit_s, limit_n = self.rng.uniform(0.0, 0.5), 10 ** 9
            else:
                # A random instant while it works: after a random time or a
                # random number of receipts, whichever comes first.
                limit_s, limit_n = self.rng.uniform(0.05, 1.5), self.rng.randint(200, 5000)
            end = time.monotonic() + limit_s
            while time.monotonic() < end and len(unc.messages) < n0 + limit_n:
                unc.poll(0.005)
            self.assertTrue(w.alive(), "incarnation %d exited; log: %s"
                            % (len(workers), w.log()[-3000:]))
            self.assertLess(len(unc.keys), total, "the worker finished before kill %d"
                            % (kills + 1))
            answered = len(unc.keys)
            self.assertEqual(w.kill9(), -9)
            kills += 1
            stored = ledger_query(db, "SELECT count(*) FROM executions")[0][0]
            print("    kill -9 #%d of incarnation %d (ready %.1f s after its start): %d receipt "
                  "messages so far, %d nonces seen, %d executions stored"
                  % (kills, len(workers), ready_s, len(unc.messages), answered, stored))
            self.assertClean(w)

        # The last incarnation answers the rest; the broker comes back
        # meanwhile.
        t_last = time.monotonic()
        w = self.start_worker(topics, group, db, env=env, args=args)
        self.c.start(victim)
        workers.append(w)
        rc = self.track(topics.receipts, "read_committed")
        self.wait_answered(rc, nonces, 180, "read_committed receipts", [w])
        print("    last incarnation: all %d answered (read_committed) %.1f s after its start"
              % (total, time.monotonic() - t_last))
        self.c.wait(90)
        self.settle(rc, quiet=2.0)
        # The read_uncommitted reader sees every committed receipt too, but
        # may be behind (a partition whose leader moved): all of them first.
        self.wait_answered(unc, nonces, 60, "read_uncommitted receipts", [w])
        self.settle(unc, quiet=0.5)

        # Exactly one committed receipt per nonce, equal to docs/protocol.md §5 and to
        # the ledger.
        counts, statuses = self.check_receipts(rc, reqs)
        dups = {n: c for n, c in counts.items() if c != 1}
        self.assertEqual(len(rc.messages), total,
                         "read_committed: %d receipt messages for %d nonces; %d nonces with "
                         "more than one, e.g. %s" % (len(rc.messages), total, len(dups),
                                                     sorted(dups.items())[:5]))
        self.assertEqual(dups, {})
        rows = self.check_ledger(db, reqs)
        committed_by = {}
        for m in rc.messages:
            rec = self.decoded(m)
            committed_by[rec["nonce"]] = (rec["id"], rec["receipt"])
        self.assertEqual(committed_by, {n: (i, r) for n, i, r in rows})
        # Transactions were on: aborted copies are on the topic too.
        unc_counts, _ = self.check_receipts(unc, reqs)
        print("    read_committed: %d receipt messages for %d nonces (%s); read_uncommitted: %d "
              "(%d nonces with aborted copies); %d kill -9 of the worker, broker %d killed"
              % (len(rc.messages), total, statuses, len(unc.messages),
                 sum(1 for c in unc_counts.values() if c > 1), kills, victim))
        self.assertGreater(len(unc.messages), total, "read_uncommitted saw no aborted copy")
        # The group's offsets, committed in the transactions, reach the end.
        ends = self.end_offsets(topics.requests)
        committed = committed_offsets(self.c.bootstrap, group, topics.requests)
        self.assertEqual(committed, ends, "committed offsets vs end of the requests topic")
        # Abort and publish again after a failed delivery, in the incarnation
        # that lived through the broker kill.
        bw = workers[kills_wanted - 1]
        aborts = self.lines(bw, "aborting the transaction")
        print("    broker kill: receipts flowing again %.1f s after it; %d aborted "
              "transactions in that incarnation, e.g. %r"
              % (failover, len(aborts), aborts[:1]))
        self.assertTrue(aborts, "no transaction aborted after the broker kill; log: %s"
                        % bw.log()[-4000:])
        # A fatal error (e.g. the epoch bumped while the broker was gone)
        # replaces the producer instead of stopping the worker.
        print("    producers replaced after a fatal error: %d"
              % sum(len(self.lines(x, "; replacing the producer")) for x in workers))
        for x in workers:
            self.assertClean(x)
        print("    test body %.1f s" % (time.monotonic() - t_test))

    def kill_broker_mid_stream(self, w, unc, victim, total):
        """kill -9 of the broker `victim` while w works; waits until the
        worker has aborted a transaction (a delivery failed) and receipts
        flow again (the broker stays down). Returns the seconds from the
        kill until receipts flowed again."""
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            unc.poll(0.01)
        self.assertLess(len(unc.keys), total, "the worker finished before the broker kill")
        # The instant: a batch has just been executed (the worker's request
        # counter moved), so its receipts are being published. SIGKILL
        # straight to the node's process (kafka.sh keeps its pid in
        # DIR/nodeN/pid) for no delay, then kafka.sh kill records it.
        with open(os.path.join(self.c.dir, "node%d" % victim, "pid")) as f:
            broker_pid = int(f.read())
        base = processed(w)
        deadline = time.monotonic() + 30
        while processed(w) == base:
            self.assertLess(time.monotonic(), deadline, "no batch for 30 s")
        os.kill(broker_pid, signal.SIGKILL)
        t0 = time.monotonic()
        self.c.kill(victim)
        n_kill = len(unc.messages)
        deadline = t0 + 90
        # Flowing again: receipts produced after the abort.
        while not (self.lines(w, "aborting the transaction") and
                   len(unc.messages) > n_kill + 2000):
            self.assertTrue(w.alive(), "worker exited after the broker kill; log: %s"
                            % w.log()[-4000:])
            if time.monotonic() > deadline:
                self.fail("90 s after the broker kill: aborted %d times, %d receipt messages "
                          "since; log: %s" % (len(self.lines(w, "aborting the transaction")),
                                              len(unc.messages) - n_kill, w.log()[-4000:]))
            unc.poll(0.05)
        _, flowing = stall_after(unc.arrivals, t0, time.monotonic())
        print("    broker %d kill -9ed mid-stream; the worker aborted and published again; "
              "receipts flowing again %.1f s after the kill" % (victim, flowing))
        return flowing


class Failover(RealKafka):
    def test_broker_failover_same_worker(self):
        total_a, total_b = 30000, 20000
        total = total_a + total_b
        t_test = time.monotonic()
        topics = self.topics("rk-fo", 16)
        group = "rk-fo-%s" % tag()
        db = self.path("fo.db")
        # The worker's defaults (session.timeout.ms 10 s): it is never
        # restarted here.
        w = self.start_worker(topics, group, db)
        pid = w.proc.pid
        tr = self.track(topics.receipts)
        reqs_a, msgs_a = add_requests("fo-a", total_a)
        reqs_b, msgs_b = add_requests("fo-b", total_b)
        reqs = reqs_a + reqs_b

        # A. The leader of most requests partitions goes, mid-stream.
        produce(self.c.bootstrap, msgs_a, topic=topics.requests, timeout=120)
        victim, led, spread = self.most_led(topics.requests)
        deadline = time.monotonic() + 60
        while len(tr.keys) < 3000:
            self.assertLess(time.monotonic(), deadline, w.log()[-3000:])
            tr.poll(0.02)
        t0 = time.monotonic()
        self.c.kill(victim)
        at_kill = len(tr.keys)
        deadline = t0 + 120
        while len(tr.keys) < min(total_a, at_kill + 3000):
            self.assertTrue(w.alive(), w.log()[-3000:])
            if time.monotonic() > deadline:
                self.fail("receipts did not flow again within 120 s of the broker kill "
                          "(%d answered at the kill, %d now); /ready %r; log: %s"
                          % (at_kill, len(tr.keys), self.ready(w), w.log()[-4000:]))
            tr.poll(0.05)
        stall_from, flowing = stall_after(tr.arrivals, t0, time.monotonic())
        print("    requests partitions by leader %s; node %d (%d of them) kill -9ed after %d "
              "answered; receipts stalled from +%.1f s, flowing again %.1f s after the kill"
              % (spread, victim, led, at_kill, stall_from, flowing))
        self.c.start(victim)
        self.wait_answered(tr, [n for n, _ in reqs_a], 120, "first 30,000", [w])
        self.c.wait(90)
        print("    node %d back and the first %d answered %.1f s after the kill"
              % (victim, total_a, time.monotonic() - t0))

        # B. Two nodes down (no quorum, no min ISR), then all three, while
        # the worker has a backlog; then all back.
        produce(self.c.bootstrap, msgs_b, topic=topics.requests, timeout=120)
        deadline = time.monotonic() + 60
        while len(tr.keys) < total_a + 1000:
            self.assertLess(time.monotonic(), deadline, w.log()[-3000:])
            tr.poll(0.02)
        first, _, _ = self.most_led(topics.requests)
        second = next(n for n in (1, 2, 3) if n != first)
        last = next(n for n in (1, 2, 3) if n not in (first, second))
        t0 = time.monotonic()
        self.c.kill(first)
        self.c.kill(second)
        at = len(tr.keys)
        self.assertLess(at, total, "the worker had answered everything before two brokers "
                        "went down")
        # Watched for 15 s, the two nodes staying down all along: /ready
        # must say 503 at some point (receipts unacknowledged for 10 s, or
        # brokers unreachable).
        two_down = self.watch_ready(w, tr, 15)
        if not any(st == 503 for _, st, _ in two_down):
            self.deferred.append("GET /ready not 503 within 15 s of two of the three brokers "
                                 "going down, with a backlog: %s" % two_down)
        print("    nodes %d and %d down (node %d up) after %d answered: /ready %s; %d answered "
              "meanwhile" % (first, second, last, at, two_down, len(tr.keys) - at))
        self.c.kill(last)
        all_down = self.watch_ready(w, tr, 10)
        print("    all three nodes down: /ready %s" % all_down)
        # Every broker down: 503 within 5 s and 503 from then on, naming the
        # brokers within 5 s. The first answers may still carry an earlier
        # reason: with two nodes down for 15 s the group may already have
        # taken the partitions away ("waiting for a partition assignment"),
        # and librdkafka learns the last node is gone only when its
        # connection drops.
        first503 = next((i for i, (t, st, _) in enumerate(all_down) if st == 503), None)
        named = next((i for i, (t, st, why) in enumerate(all_down)
                      if st == 503 and "broker" in str(why).lower()), None)
        if first503 is None or all_down[first503][0] > 5:
            self.deferred.append("GET /ready not 503 within 5 s of every broker going down: %s"
                                 % all_down)
        else:
            if named is None or all_down[named][0] > 5:
                self.deferred.append("GET /ready 503 with every broker down, but no reason "
                                     "within 5 s names the brokers: %s" % all_down)
            if any(st != 503 for _, st, _ in all_down[first503:]):
                self.deferred.append("GET /ready flapped with every broker down: %s" % all_down)
        self.assertTrue(w.alive(), w.log()[-3000:])
        t_up = time.monotonic()
        for n in (first, second, last):
            self.c.start(n)
        self.c.wait(120)
        print("    cluster back %.1f s after the restart began" % (time.monotonic() - t_up))
        self.wait_answered(tr, [n for n, _ in reqs_b], 150, "last 20,000", [w])
        print("    all %d answered %.1f s after the restart began"
              % (total, time.monotonic() - t_up))
        self.settle(tr, quiet=1.5)

        self.assertTrue(w.alive())
        self.assertEqual(w.proc.pid, pid, "the worker was restarted")
        counts, statuses = self.check_receipts(tr, reqs)
        self.check_ledger(db, reqs)
        m = w.metrics()
        executed = m.get('openexec_requests_total{status="executed"}', 0)
        replayed = m.get('openexec_requests_total{status="replayed"}', 0)
        hist = {}
        for c in counts.values():
            hist[c] = hist.get(c, 0) + 1
        print("    %d receipts for %d nonces (copies per nonce: %s; statuses %s); the worker "
              "counted %d executed, %d replayed, %d delivery retries"
              % (len(tr.messages), total, sorted(hist.items()), statuses, executed, replayed,
                 m.get("openexec_delivery_retries_total", 0)))
        self.assertEqual(executed, total, "executions counted by the worker")
        self.wait_ready(w, 30)
        self.assertClean(w)
        print("    test body %.1f s" % (time.monotonic() - t_test))
        self.finish_deferred()


class Rebalances(RealKafka):
    def shares(self, workers):
        return [int(w.metrics().get("openexec_assigned_partitions", -1)) if w.alive() else 0
                for w in workers]

    def wait_sharing(self, workers, partitions, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            s = self.shares(workers)
            if all(x > 0 for x in s) and sum(s) == partitions:
                return s
            if time.monotonic() > deadline:
                self.fail("workers never shared the %d partitions: %s; logs:\n%s"
                          % (partitions, s, "\n----\n".join(w.log()[-2000:] for w in workers)))
            time.sleep(0.1)

    def test_rebalances_three_workers_shared_ledger(self):
        total, parts = 30000, 12
        t_test = time.monotonic()
        topics = self.topics("rk-rb", parts)
        group = "rk-rb-%s" % tag()
        db = self.path("rb.db")
        env = {"OPENEXEC_LEDGER_SHARED": "1"}
        # Batches of at most 1,000: more commits for the rebalances to fall
        # between, and a run long enough for all five membership changes.
        args = FAST_FAILOVER + ["--batch-max", "1000"]
        tr = self.track(topics.receipts)
        reqs, msgs = add_requests("rb", total)
        # The requests are fed as they are answered, a few thousand ahead:
        # the group stays busy through every membership change, however
        # long a worker takes to stop (all of them up front ran out before
        # the last change once, while one stop took seconds).
        feeder = kafka_producer(self.c.bootstrap)
        fed = [0]

        def feed(ahead):
            want = min(total, len(tr.keys) + ahead)
            if want > fed[0]:
                produce(self.c.bootstrap, msgs[fed[0]:want], topic=topics.requests,
                        timeout=120, producer=feeder)
                fed[0] = want

        feed(8000)
        # Two workers start on the backlog together.
        w1 = self.start_worker(topics, group, db, env=env, args=args, ready_timeout=0)
        w2 = self.start_worker(topics, group, db, env=env, args=args, ready_timeout=0)
        workers = [w1, w2]
        steps = []

        def after(n):
            deadline = time.monotonic() + 60
            while len(tr.keys) < n:
                self.assertLess(time.monotonic(), deadline, "%d answered, waiting for %d"
                                % (len(tr.keys), n))
                if fed[0] - len(tr.keys) < 3000:
                    feed(6000)
                tr.poll(0.02)
            # Work left for the membership change that follows.
            if fed[0] - len(tr.keys) < 4000:
                feed(6000)

        def mark(what):
            steps.append("%s at %d answered (partitions %s)"
                         % (what, len(tr.keys), self.shares([w for w in workers if w.alive()])))

        after(self.rng.randint(2000, 4000))
        mark("two workers working")
        w3 = self.start_worker(topics, group, db, env=env, args=args, ready_timeout=0)
        workers.append(w3)
        mark("third worker joined")
        after(len(tr.keys) + self.rng.randint(2000, 4000))
        w1.stop()
        mark("worker 1 left (SIGTERM)")
        after(len(tr.keys) + self.rng.randint(1500, 3000))
        w1b = self.start_worker(topics, group, db, env=env, args=args, ready_timeout=0)
        workers.append(w1b)
        mark("worker 1 back")
        after(len(tr.keys) + self.rng.randint(1500, 3000))
        w2.stop()
        mark("worker 2 left")
        after(len(tr.keys) + self.rng.randint(1000, 2000))
        w2b = self.start_worker(topics, group, db, env=env, args=args, ready_timeout=0)
        workers.append(w2b)
        mark("worker 2 back")
        self.assertLess(len(tr.keys), fed[0], "the run ended before the last rebalance")
        feed(total)
        live = [w3, w1b, w2b]
        self.wait_answered(tr, [n for n, _ in reqs], 120, "30,000 requests", live)
        self.settle(tr, quiet=2.0)
        print("    " + ";\n    ".join(steps))
        print("    final partitions %s" % self.wait_sharing(live, parts))
        counts, statuses = self.check_receipts(tr, reqs)
        self.check_ledger(db, reqs)
        # Every offset processed is committed while the workers run, also
        # those whose commit a rebalance refused (committed once it is
        # over), so that the next restart re-publishes nothing.
        import confluent_kafka
        c = confluent_kafka.Consumer({"bootstrap.servers": self.c.bootstrap,
                                      "group.id": "rk-ends-%s" % tag()})
        try:
            ends = {p: c.get_watermark_offsets(confluent_kafka.TopicPartition(topics.requests, p),
                                               timeout=10)[1] for p in range(parts)}
        finally:
            c.close()
        t0 = time.monotonic()
        while True:
            committed = committed_offsets(self.c.bootstrap, group, topics.requests)
            if committed == ends or time.monotonic() - t0 > 40:
                break
            time.sleep(0.5)
        if committed != ends:
            # What each worker said of its assignments, commits and pauses.
            for k, w in enumerate(workers):
                print("    worker %d log:\n      %s" % (k, "\n      ".join(self.lines(
                    w, "assigned ", "revoked ", "offset", "paused", "resumed", "unavailable"))))
        self.assertEqual(committed, ends, "committed offsets of the group vs the ends of %s"
                         % topics.requests)
        print("    committed offsets at the end of every partition %.1f s after the last answer"
              % (time.monotonic() - t0))
        hist = {}
        for c in counts.values():
            hist[c] = hist.get(c, 0) + 1
        print("    %d receipts for %d nonces (copies per nonce %s; statuses %s)"
              % (len(tr.messages), total, sorted(hist.items()), statuses))
        moves = sum(len(self.lines(w, "assigned ", "revoked ")) for w in workers)
        print("    %d assigned/revoked lines in the five worker logs" % moves)
        for w in workers:
            self.assertClean(w)
        print("    test body %.1f s" % (time.monotonic() - t_test))

    def group_members(self, group):
        """{member id: [partitions]} of the group's members (DescribeGroups
        through AdminClient.list_groups; the consumer protocol's assignment
        decoded here)."""
        import struct
        from confluent_kafka.admin import AdminClient
        a = AdminClient({"bootstrap.servers": self.c.bootstrap})
        gs = a.list_groups(group, timeout=10)
        self.assertEqual(len(gs), 1, gs)
        g = gs[0]
        out = {}
        for m in g.members:
            b = m.assignment
            parts = []
            if b:
                pos = 2  # version
                (nt,) = struct.unpack_from(">i", b, pos)
                pos += 4
                for _ in range(nt):
                    (ln,) = struct.unpack_from(">h", b, pos)
                    pos += 2 + ln
                    (np_,) = struct.unpack_from(">i", b, pos)
                    pos += 4
                    parts += list(struct.unpack_from(">%di" % np_, b, pos))
                    pos += 4 * np_
            out[m.id] = sorted(parts)
        return g.state, g.protocol, out

    def test_static_membership_quick_restart(self):
        parts = 12
        t_test = time.monotonic()
        p = cli(["run", "--help"])
        self.assertIn("OPENEXEC_GROUP_INSTANCE_ID", p.stdout + p.stderr,
                      "`openexec run --help` does not mention OPENEXEC_GROUP_INSTANCE_ID")
        topics = self.topics("rk-st", parts)
        group = "rk-st-%s" % tag()
        db = self.path("st.db")
        base = {"OPENEXEC_LEDGER_SHARED": "1"}
        tr = self.track(topics.receipts)

        def env(i):
            e = dict(base)
            e["OPENEXEC_GROUP_INSTANCE_ID"] = "w%d" % i
            return e

        ws = [self.start_worker(topics, group, db, env=env(i), ready_timeout=0)
              for i in (1, 2, 3)]
        split = self.wait_sharing(ws, parts)
        # Stable: nothing moves for 3 s.
        while True:
            before = [len(self.lines(w, "assigned ", "revoked ")) for w in ws]
            time.sleep(3)
            if [len(self.lines(w, "assigned ", "revoked ")) for w in ws] == before:
                break
        state, proto, members = self.group_members(group)
        by_instance = {mid.split("-", 1)[0]: (mid, ps) for mid, ps in members.items()}
        print("    three static members: partitions %s; group %s, %s; members %s"
              % (split, state, proto, {k: v[1] for k, v in sorted(by_instance.items())}))
        self.assertEqual(sorted(by_instance), ["w1", "w2", "w3"],
                         "member ids do not start with the instance ids: %s" % sorted(members))
        reqs1, msgs1 = add_requests("st1", 3000)
        produce(self.c.bootstrap, msgs1, topic=topics.requests, timeout=60)
        self.wait_answered(tr, [n for n, _ in reqs1], 60, "first 3,000", ws)

        # w1 restarts within the session timeout (10 s).
        others_before = [self.lines(w, "assigned ", "revoked ") for w in ws[1:]]
        reqs2, msgs2 = add_requests("st2", 3000)
        t0 = time.monotonic()
        ws[0].stop()
        w1b = self.start_worker(topics, group, db, env=env(1), ready_timeout=0)
        restart_s = time.monotonic() - t0
        produce(self.c.bootstrap, msgs2, topic=topics.requests, timeout=60)
        deadline = time.monotonic() + 20
        while self.shares([w1b])[0] <= 0:
            self.assertLess(time.monotonic(), deadline, "restarted w1 got no partitions; "
                            "log: %s" % w1b.log()[-3000:])
            time.sleep(0.05)
        back_s = time.monotonic() - t0
        self.wait_answered(tr, [n for n, _ in reqs2], 60, "second 3,000", [w1b] + ws[1:])
        time.sleep(2)
        others_after = [self.lines(w, "assigned ", "revoked ") for w in ws[1:]]
        state2, _, members2 = self.group_members(group)
        by_instance2 = {mid.split("-", 1)[0]: (mid, ps) for mid, ps in members2.items()}
        print("    w1 stopped and started again in %.1f s, partitions back %.1f s after the "
              "stop: %s; members now %s" % (restart_s, back_s, self.shares([w1b] + ws[1:]),
                                            {k: v[1] for k, v in sorted(by_instance2.items())}))
        print("    w1's log across the restart: %s / %s"
              % (self.lines(ws[0], "assigned ", "revoked "),
                 self.lines(w1b, "assigned ", "revoked ")))
        self.assertEqual(others_after, others_before,
                         "w2/w3 were revoked or assigned partitions while w1 restarted")
        self.assertEqual({k: v[1] for k, v in by_instance2.items()},
                         {k: v[1] for k, v in by_instance.items()},
                         "assignments changed across the restart")
        self.assertNotEqual(by_instance2["w1"][0], by_instance["w1"][0],
                            "w1 kept its member id: it did not join again")
        self.assertEqual(by_instance2["w2"][0], by_instance["w2"][0])
        self.assertEqual(by_instance2["w3"][0], by_instance["w3"][0])
        self.settle(tr, quiet=1.0)
        self.check_receipts(tr, reqs1 + reqs2)
        self.check_ledger(db, reqs1 + reqs2)
        for w in ws + [w1b]:
            self.assertClean(w)
        print("    test body %.1f s" % (time.monotonic() - t_test))


if __name__ == "__main__":
    run_tests()
