"""Black-box tests of what a real cluster asks of the program (docs/operations.md
`openexec topics`, §10 readiness), on Apache Kafka (tests/kafka/kafka.sh):
topics are created through the Admin API, idempotently, and never changed
when they exist with other settings; `run` refuses to start without its
topics; /ready follows the brokers going away and coming back.

The topic tests use the node tests/run.sh shares (OPENEXEC_TEST_KAFKA_BOOTSTRAP)
or one of their own; the outage test starts a node of its own, since it
kills it."""

import json
import os
import re
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import KafkaTest, cli, produce, run_tests  # noqa: E402
import harness as h  # noqa: E402
from kafkacluster import KafkaCluster, shared_cluster  # noqa: E402


def names():
    p = "c%s" % uuid.uuid4().hex[:10]
    # The checkpoints topic is named after the receipts topic by default.
    return p + ".requests", p + ".receipts", p + ".requests.dlq", p + ".receipts.checkpoints"


def topic_args(n):
    return ["--requests-topic", n[0], "--receipts-topic", n[1], "--dlq-topic", n[2]]


class Topics(KafkaTest):
    def test_created_once_then_left_alone(self):
        b = shared_cluster().bootstrap
        n = names()
        p = cli(["topics", "--brokers", b, "--partitions", "6", "--replication-factor", "1"]
                + topic_args(n), timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(),
                         ["%s: created, 6 partitions, replication factor 1" % t for t in n])
        from confluent_kafka.admin import AdminClient
        md = AdminClient({"bootstrap.servers": b}).list_topics(timeout=10)
        for t in n:
            self.assertEqual(len(md.topics[t].partitions), 6, t)
        # Again, as asked: exit 0, nothing created.
        p = cli(["topics", "--brokers", b, "--partitions", "6"] + topic_args(n), timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(),
                         ["%s: exists, 6 partitions, replication factor 1" % t for t in n])
        # Other settings: exit 1, each topic named, nothing changed.
        p = cli(["topics", "--brokers", b, "--partitions", "8"] + topic_args(n), timeout=60)
        self.assertEqual(p.returncode, 1, p)
        for t in n:
            self.assertIn("topics: %s exists with 6 partitions, replication factor 1; asked for 8 "
                          "partitions" % t, p.stderr)
        md = AdminClient({"bootstrap.servers": b}).list_topics(timeout=10)
        self.assertEqual(len(md.topics[n[0]].partitions), 6)

    def test_impossible_request_is_refused_with_the_brokers_reason(self):
        b = shared_cluster().bootstrap
        n = names()
        p = cli(["topics", "--brokers", b, "--partitions", "2", "--replication-factor", "3"]
                + topic_args(n), timeout=60)
        self.assertEqual(p.returncode, 1, p)
        self.assertRegex(p.stderr, r"cannot create topic c\w+\.\S+: .*replication factor")
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)

    def test_bad_usage(self):
        p = cli(["topics"])
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("topics needs --brokers", p.stderr)
        p = cli(["topics", "--brokers", "127.0.0.1:1", "--partitions", "0"])
        self.assertEqual(p.returncode, 2, p)

    def test_run_refuses_a_missing_topic(self):
        b = shared_cluster().bootstrap
        n = names()
        t0 = time.monotonic()
        p = cli(["run", "--brokers", b, "--http-port", "0", "--db", self.path("x.db")]
                + topic_args(n), timeout=30)
        self.assertEqual(p.returncode, 1, p)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertIn("topic %s does not exist on the cluster (create it with `openexec topics`)"
                      % n[0], p.stderr)


    def test_run_refuses_a_missing_checkpoints_topic_when_signing(self):
        # A cluster set up before checkpoints were published: the three
        # other topics exist; a signing worker (a private SQLite ledger
        # signs by default) refuses to start, naming the topic and the fix.
        b = shared_cluster().bootstrap
        n = names()
        p = cli(["topics", "--brokers", b, "--partitions", "2", "--replication-factor", "1",
                 "--checkpoints-topic", n[3] + ".elsewhere"] + topic_args(n), timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("%s.elsewhere: created" % n[3], p.stdout)
        p = cli(["run", "--brokers", b, "--http-port", "0", "--db", self.path("cp.db")]
                + topic_args(n), timeout=30)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("topic %s does not exist on the cluster (create it with `openexec topics`)"
                      % n[3], p.stderr)
        # Given its name, the worker starts and publishes there: the
        # checkpoint of a request's batch, keyed by the log's origin.
        w = self.server(env={"OPENEXEC_EXECUTE": "kafka",
                             "OPENEXEC_CHECKPOINTS_TOPIC": n[3] + ".elsewhere"},
                        args=["--brokers", b, "--db", self.path("cp2.db")] + topic_args(n))
        self.assertEqual(w.get("/ready").status, 200)
        produce(b, [("cp-1", json.dumps({"action": "add", "payload": {"a": 1, "b": 2},
                                         "nonce": "cp-1"}))], topic=n[0])
        r = h.TopicReader(b, n[3] + ".elsewhere")
        try:
            r.wait_count(1)
            m = r.messages[0]
            self.assertEqual(m.value.decode().split("\n")[:2], [m.skey, "1"], m.value)
            # The node's latest signed checkpoint of that log: this one.
            got = w.get("/log/%s/checkpoint" % m.skey)
            self.assertEqual((got.status, got.body), (200, m.value))
        finally:
            r.consumer.close()
        w.stop()


class ComposeTopology(KafkaTest):
    """deploy/docker-compose.yml without containers: its `topics` service and
    its three workers run with the compose file's own commands and
    environment, the container addresses replaced by loopback ones (this
    Kafka node, a PostgreSQL database of the test cluster, a port per
    worker) and the names shared on this node (topics, group) made the
    test's own. They form one group on one shared ledger, as deployed."""

    def test_compose_processes_on_loopback(self):
        import yaml
        import pgcluster
        with open(os.path.join(h.ROOT, "deploy", "docker-compose.yml")) as f:
            services = yaml.safe_load(f)["services"]  # anchors and merges resolved
        b = shared_cluster().bootstrap
        url = pgcluster.fresh_database("compose")
        n = names()
        own = {"OPENEXEC_REQUESTS_TOPIC": n[0], "OPENEXEC_RECEIPTS_TOPIC": n[1],
               "OPENEXEC_DLQ_TOPIC": n[2], "OPENEXEC_GROUP_ID": "compose-%s" % n[0][:11]}

        def env_of(service):
            env = {}
            for k, v in (service.get("environment") or {}).items():
                v = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), str(v))
                env[k] = url if k == "OPENEXEC_DB_URL" else v.replace("kafka:9092", b)
            env.update(own)
            return env

        t = services["topics"]
        self.assertEqual(t["entrypoint"][0], "openexec")
        p = cli(t["entrypoint"][1:] + t["command"], env=env_of(t), timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(p.stdout.splitlines()), 4, p.stdout)
        workers = {}
        for name in ("worker-1", "worker-2", "worker-3"):
            env = env_of(services[name])
            self.assertEqual(env["OPENEXEC_GROUP_INSTANCE_ID"], name)
            self.assertEqual(env["OPENEXEC_HTTP_HOST"], "0.0.0.0")
            env["OPENEXEC_EXECUTE"] = "kafka"  # the image's default (the harness's is local)
            # The port is the harness's (--http-port wins over the file's
            # 5000, as a container's port is its own); the ledger the URL.
            workers[name] = self.server(env=env, args=["--db-url", url], start=False)
        for w in workers.values():
            w.start(wait_ready=False)
        deadline = time.monotonic() + 60
        while True:
            shares = [w.metrics()["openexec_assigned_partitions"] for w in workers.values()]
            if sum(shares) == 12 and all(shares):
                break
            self.assertLess(time.monotonic(), deadline, "partitions never shared: %s" % shares)
            time.sleep(0.2)
        for w in workers.values():
            w.wait_ready(time.monotonic() + 30)
        print("    three workers of the compose file, one group: partitions %s" % shares)
        # One shared ledger: executed through one worker, looked up on another.
        w1, w3 = workers["worker-1"], workers["worker-3"]
        r = w1.execute("add", {"a": 20, "b": 22}, "compose-1")
        self.assertEqual((r.status, r.json.get("result")), (200, {"sum": 42}), r)
        got = w3.get("/receipts/%s" % r.json["id"])
        self.assertEqual((got.status, got.json.get("receipt")), (200, r.json["receipt"]))
        # What Prometheus scrapes there (deploy/prometheus/prometheus.yml).
        with open(os.path.join(h.ROOT, "deploy", "prometheus", "prometheus.yml")) as f:
            scrape = yaml.safe_load(f)["scrape_configs"][0]
        self.assertEqual(len(scrape["static_configs"][0]["targets"]), len(workers))
        for w in workers.values():
            m = w.metrics()
            self.assertEqual(m["openexec_ready"], 1)
            self.assertEqual(m["openexec_ledger_unshared"], 0)
        for w in workers.values():
            w.stop()


class Outage(KafkaTest):
    def test_ready_follows_the_brokers(self):
        c = KafkaCluster(nodes=1).up()
        try:
            cli(["topics", "--brokers", c.bootstrap, "--partitions", "4"], timeout=60)
            w = self.worker(c.bootstrap)
            reader = self.reader(c.bootstrap, h.RECEIPTS_TOPIC)
            produce(c.bootstrap, [("o-1", b'{"action": "echo", "payload": {}, "nonce": "o-1"}')])
            reader.wait_count(1)
            self.assertEqual(w.get("/ready").status, 200)
            c.kill(1)
            t_kill = t0 = time.monotonic()
            reason = ""
            while time.monotonic() - t0 < 30:
                r = w.get("/ready")
                if r.status == 503:
                    reason = r.json.get("reason", "")
                    break
                time.sleep(0.2)
            print("    /ready 503 %.1f s after kill -9 of the only broker: %r"
                  % (time.monotonic() - t0, reason))
            # Our words only: librdkafka's text (broker addresses) is logged.
            self.assertEqual(reason, "brokers unreachable")
            self.assertEqual(w.get("/health").status, 200)
            self.assertEqual(w.metrics()["openexec_ready"], 0)
            c.start(1)
            c.wait()
            outage = time.monotonic() - t_kill
            t0 = time.monotonic()
            while time.monotonic() - t0 < 60 and w.get("/ready").status != 200:
                time.sleep(0.2)
            print("    /ready 200 again %.1f s after the broker answered"
                  % (time.monotonic() - t0))
            self.assertEqual(w.get("/ready").status, 200, w.get("/ready").json)
            produce(c.bootstrap, [("o-2", b'{"action": "echo", "payload": {}, "nonce": "o-2"}')])
            reader.wait_for(lambda r: any(m.skey == "o-2" for m in r.messages), 60, "o-2")
            # A line when the state changes, not one per client per second
            # (a client's late report after the probe succeeded may make a
            # second).
            self.assertIn(w.log().count("component=kafka msg=\"brokers unreachable"), (1, 2), w.log())
            # librdkafka's lines: each text at most once per 30 s (a longer
            # outage on a loaded machine may repeat them).
            self.assertLess(w.log().count("Connection refused"), 8 * (1 + int(outage // 30)),
                            "%.0f s outage: %s" % (outage, w.log()))
            self.assertIn("component=kafka msg=\"brokers reachable again", w.log())
            w.stop()
        finally:
            for r in self._readers:
                r.close()
            self._readers = []
            c.down()


class Fencing(KafkaTest):
    def test_a_transactional_id_taken_over_stops_one_worker(self):
        """Two workers (two groups, two ledgers) given one transactional.id:
        each start fences the other's producer. A fenced producer is
        replaced once a minute (a fatal error may be our own epoch bump);
        fenced again within the minute, the worker stops with exit 1 and
        the reason, and the other carries on answering."""
        b = shared_cluster().bootstrap
        n = names()
        p = cli(["topics", "--brokers", b, "--partitions", "2"] + topic_args(n), timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        txn = "fence-%s" % uuid.uuid4().hex[:8]
        common = topic_args(n) + ["--transactions", "1", "--transactional-id", txn]
        a = self.worker(b, db=self.path("a.db"), args=common + ["--group-id", txn + "-a"])
        reader = h.TopicReader(b, n[1], **{"isolation.level": "read_committed"})
        self._readers.append(reader)
        seq = iter(range(1_000_000))

        def send(k=5):
            msgs = []
            for _ in range(k):
                i = next(seq)
                msgs.append(("f-%d" % i, b'{"action": "echo", "payload": {}, "nonce": "f-%d"}' % i))
            produce(b, msgs, topic=n[0])

        send()
        reader.wait_count(5)
        bw = self.worker(b, db=self.path("b.db"), args=common + ["--group-id", txn + "-b"])
        # Requests keep coming: every transaction of a fenced producer
        # fails, its replacement fences the other, until one is fenced a
        # second time within the minute.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 90 and a.alive() and bw.alive():
            send()
            time.sleep(0.3)
        stopped = [w for w in (a, bw) if not w.alive()]
        self.assertEqual(len(stopped), 1, (a.log()[-3000:], bw.log()[-3000:]))
        gone = stopped[0]
        left = bw if gone is a else a
        print("    one worker stopped %.1f s after the second start" % (time.monotonic() - t0))
        self.assertEqual(gone.proc.returncode, 1, gone.log()[-2000:])
        self.assertIn("worker stopped: fenced twice within a minute: another worker uses "
                      "transactional.id %s" % txn, gone.log())
        self.assertEqual(gone.log().count("; replacing the producer"), 1, gone.log()[-3000:])
        gone.proc = None
        # The other answers what comes next, read_committed.
        before = {m.skey for m in reader.messages}
        send(3)
        last = "f-%d" % (next(seq) - 1)
        reader.wait_for(lambda r: any(m.skey == last for m in r.messages), 60, last)
        self.assertGreaterEqual(left.metrics()["openexec_producer_renewals_total"], 1)
        self.assertEqual(left.get("/ready").status, 200, left.get("/ready").json)
        self.assertNotIn(last, before)


if __name__ == "__main__":
    run_tests()
