"""Black-box tests of the client examples (examples/) as docs/integrate.md
shows them: the Python producers (JSON, Avro single-object, Avro with
Confluent framing), the receipt consumer that de-duplicates by nonce, and
the Java producer.

Every ```sh block of docs/integrate.md carries a marker on the line before
it: `<!-- test: examples NAME -->` (run here, by the test RUN_BY names) or
`<!-- test: skip, REASON -->` (`make run` and `make kafka` blocks, which
test_readme.py runs in the README and docs/guide.md, and `make
deps-examples`, run by `make deps-test`). A block is run as it is
written, in bash with `set -euo pipefail` from the repository's root, with the doc's broker address
127.0.0.1:9092 replaced by the test's and B set to it; `python3` is this
interpreter. What the blocks print is checked against what the doc says
and against the receipts on the topic, decoded here independently
(harness.decode_receipt) and compared with the ids and hashes computed in
Python.

The worker is `openexec run` with its embedded broker and a fixed broker
port, as `make run` starts it, or (OPENEXEC_TEST_BROKER=kafka) a worker on
fresh topics of the shared Apache Kafka node. The Java example runs on
Apache Kafka only: kafka-clients does not get past its version handshake
with the embedded broker (librdkafka's mock cluster). Its jar is built once
by `make deps-test` (`make java-example`); the block's `make java-example`
does nothing then."""

import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (ROOT, KafkaTest, clean_env, decode_receipt, execution_id,  # noqa: E402
                     free_port, mint, receipt_hash, request_hash, result_json, run_tests)
import harness as h  # noqa: E402  (topic names are per test on Apache Kafka)

DOC = os.path.join(ROOT, "docs", "integrate.md")
MARKER = re.compile(r"^<!-- test: (examples ([a-z0-9-]+)|skip, .+) -->$")
DOC_BROKERS = "127.0.0.1:9092"
SCHEMA_ID = "1"           # the doc's OPENEXEC_CONFLUENT_SCHEMA_ID
BLOCK_TIMEOUT = 120       # seconds for one block (the Java one may build its jar)

# The doc's blocks, and the test that runs each.
RUN_BY = {
    "python-json": "test_python_producers_and_consumer",
    "python-rejected": "test_python_producers_and_consumer",
    "python-avro": "test_python_producers_and_consumer",
    "python-resend": "test_python_producers_and_consumer",
    "python-dedup": "test_python_producers_and_consumer",
    "java": "test_java_producer",
}


def doc_blocks():
    """({name: (line, text)} of the blocks to run, [line of each ```sh
    block without a marker], number of skipped blocks)."""
    with open(DOC, encoding="utf-8") as f:
        lines = f.read().split("\n")
    run, unmarked, skipped = {}, [], 0
    for i, line in enumerate(lines):
        if line != "```sh":
            continue
        end = lines.index("```", i + 1)
        m = MARKER.match(lines[i - 1]) if i > 0 else None
        if m is None:
            unmarked.append(i + 1)
        elif m.group(2):
            if m.group(2) in run:
                raise AssertionError("docs/integrate.md: two blocks named %s" % m.group(2))
            run[m.group(2)] = (i + 1, "\n".join(lines[i + 1:end]))
        else:
            skipped += 1
    return run, unmarked, skipped


def json_lines(text):
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


class Examples(KafkaTest):
    def pipeline(self, env=None):
        """A ready worker and the address its clients use: the embedded
        broker's fixed port (as `make run`'s 9092), or Apache Kafka."""
        if h.BROKER == "kafka":
            b = self.broker(partitions=4)
            return self.worker(b.bootstrap, env=env), b.bootstrap
        port = free_port()
        w = self.worker(None, env=env, args=["--broker-port", str(port)])
        return w, "127.0.0.1:%d" % port

    def sh(self, script, bootstrap, expect_status=0, timeout=BLOCK_TIMEOUT):
        """Runs script in bash from the repository's root; returns (stdout,
        stderr). A script still running after timeout is killed with its
        children and fails the test."""
        env = clean_env({"B": bootstrap,
                         "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
                         # An outer make's variables (make test) are not the reader's.
                         "MAKEFLAGS": None, "MAKELEVEL": None, "MFLAGS": None})
        p = subprocess.Popen(["bash", "-c", "set -euo pipefail\n" + script], cwd=ROOT, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            raise AssertionError("still running after %d s:\n%s\nstdout:\n%s\nstderr:\n%s"
                                 % (timeout, script, out[-3000:], err[-3000:]))
        if p.returncode != expect_status:
            raise AssertionError("exit status %d, not %d:\n%s\nstdout:\n%s\nstderr:\n%s"
                                 % (p.returncode, expect_status, script, out[-3000:],
                                    err[-3000:]))
        return out, err

    def block(self, name, bootstrap):
        """Runs the doc's block NAME with the test's broker address."""
        self.assertIn(name, RUN_BY)
        blocks, _, _ = doc_blocks()
        self.assertIn(name, blocks, "docs/integrate.md has no block `examples %s`" % name)
        return self.sh(blocks[name][1].replace(DOC_BROKERS, bootstrap), bootstrap)

    def receipts(self, reader, nonce, count):
        """The receipts of nonce on the topic, read and decoded here, once
        there are count of them."""
        reader.wait_for(lambda r: len(r.by_key().get(nonce, ())) >= count, what=nonce)
        return [decode_receipt(m.value) for m in reader.by_key()[nonce]]

    def assertExecutedLine(self, rec, nonce, action, payload, result):
        """A receipt line of consume_receipts.py: executed, with the id and
        receipt hash computed here."""
        self.assertEqual(rec["nonce"], nonce, rec)
        self.assertEqual(rec["status"], "executed", rec)
        self.assertEqual(rec["action"], action, rec)
        self.assertEqual(rec["result"], result, rec)
        self.assertEqual(rec["id"], execution_id("", nonce, request_hash(action, payload)), rec)
        self.assertEqual(rec["receipt"], receipt_hash(rec["id"], result), rec)
        self.assertIsNone(rec["error_code"], rec)

    def test_python_producers_and_consumer(self):
        w, bootstrap = self.pipeline({"OPENEXEC_CONFLUENT_SCHEMA_ID": SCHEMA_ID})
        reader = self.reader(bootstrap)
        blocks, _, _ = doc_blocks()

        # A JSON request and its receipt; the doc shows its id and hash.
        out, _ = self.block("python-json", bootstrap)
        sent, rec = json_lines(out)
        self.assertEqual((sent["sent"], sent["nonce"], sent["topic"]),
                         ("json", "order-1001", h.REQUESTS_TOPIC), out)
        self.assertExecutedLine(rec, "order-1001", "add", {"a": 2, "b": 3}, {"sum": 5})
        self.assertIn(rec["id"], blocks["python-json"][1])
        self.assertIn(rec["receipt"], blocks["python-json"][1])
        topic = self.receipts(reader, "order-1001", 1)
        self.assertEqual([(r["status"], r["id"], r["result"]) for r in topic],
                         [("executed", rec["id"], result_json({"sum": 5}))])

        # A rejection: passed on, and the consumer's exit status says so.
        out, err = self.block("python-rejected", bootstrap)
        lines = json_lines(out)
        self.assertEqual([(r["nonce"], r["status"], r["error_code"]) for r in lines[1:]],
                         [("order-1002", "rejected", "unknown_action")], out)
        self.assertIn("\nexit status 1\n", out)
        self.assertIn("rejected: order-1002 (unknown_action: Unknown action: no-such-action)",
                      err)

        # Avro, single-object and Confluent framing.
        out, _ = self.block("python-avro", bootstrap)
        lines = json_lines(out)
        self.assertEqual([(r["sent"], r["nonce"]) for r in lines[:2]],
                         [("avro-single-object", "avro-1"), ("avro-confluent", "avro-2")], out)
        got = {r["nonce"]: r for r in lines[2:]}
        self.assertEqual(sorted(got), ["avro-1", "avro-2"], out)
        self.assertExecutedLine(got["avro-1"], "avro-1", "echo", {"msg": "single-object"},
                                {"echo": {"msg": "single-object"}})
        self.assertExecutedLine(got["avro-2"], "avro-2", "echo", {"msg": "confluent"},
                                {"echo": {"msg": "confluent"}})

        # The same request again: two receipts on the topic, one handed on.
        self.block("python-resend", bootstrap)
        topic = self.receipts(reader, "order-1001", 2)
        self.assertEqual([r["status"] for r in topic], ["executed", "replayed"])
        self.assertEqual(topic[0]["id"], topic[1]["id"])
        out, err = self.block("python-dedup", bootstrap)
        lines = json_lines(out)
        self.assertEqual(len(lines), 1, out)
        self.assertExecutedLine(lines[0], "order-1001", "add", {"a": 2, "b": 3}, {"sum": 5})
        self.assertRegex(err, r"duplicate receipt for nonce order-1001 \(replayed, partition "
                              r"\d+, offset 1\): dropped")
        self.assertIn("consume_receipts: 1 receipt(s) handed on, 1 duplicate(s) dropped", err)

        # Everything was read as a request: nothing dead-lettered.
        self.assertEqual(w.metrics()["openexec_dead_letters_total"], 0)

    def test_approval_and_failures(self):
        # produce_json.py --approval: a worker in clawshield mode executes
        # the request with the artifact `openexec mint` made, and rejects it
        # without one. Its receipts are JSON, which the consumer reads too.
        secret, tenant = "examples-secret-0123456789abcdef", "acme"
        w, bootstrap = self.pipeline({"OPENEXEC_MODE": "clawshield",
                                      "CLAWSHIELD_SECRET_KEY": secret,
                                      "CLAWSHIELD_TENANT_ID": tenant,
                                      "OPENEXEC_RECEIPT_FORMAT": "json"})
        reader = self.reader(bootstrap)
        art = mint("add", {"a": 1, "b": 2}, secret=secret, tenant=tenant)
        with open(self.path("approval.json"), "w") as f:
            json.dump(art, f)
        produce = "python3 examples/python/produce_json.py --brokers %s --action add " \
                  "--payload '{\"a\": 1, \"b\": 2}' --nonce %s"
        consume = "python3 examples/python/consume_receipts.py --brokers %s --nonce %s " \
                  "--timeout %d"
        self.sh(produce % (bootstrap, "gov-1") + " --approval %s\n" % self.path("approval.json")
                + produce % (bootstrap, "gov-2") + "\n", bootstrap)
        out, _ = self.sh(consume % (bootstrap, "gov-1", 30), bootstrap)
        (rec,) = json_lines(out)
        self.assertEqual((rec["status"], rec["result"], rec["approval_id"]),
                         ("executed", {"sum": 3}, art["approval_id"]), rec)
        self.assertEqual(rec["id"], execution_id(tenant, "gov-1", request_hash(
            "add", {"a": 1, "b": 2})))
        out, err = self.sh(consume % (bootstrap, "gov-2", 30), bootstrap, expect_status=1)
        (rec,) = json_lines(out)
        self.assertEqual((rec["status"], rec["error_code"]), ("rejected", "approval_invalid"))
        self.assertIn("rejected: gov-2 (approval_invalid: Approval artifact required", err)
        reader.wait_count(2)
        self.assertEqual([m.value[:1] for m in reader.messages], [b"{", b"{"])

        # Every wait has its end: a receipt that never comes, a broker that
        # is not there (both at once), a bad argument.
        closed = free_port()
        t0 = time.monotonic()
        script = ("{ %s || echo \"consumer $?\"; } &\n"
                  "python3 examples/python/produce_json.py --brokers 127.0.0.1:%d "
                  "--timeout 2 || echo \"producer $?\"\n"
                  "python3 examples/python/produce_json.py --brokers %s --payload '[1]' "
                  "|| echo \"payload $?\"\n"
                  "wait\n" % (consume % (bootstrap, "never-sent", 2), closed, bootstrap))
        out, err = self.sh(script, bootstrap, timeout=30)
        self.assertLess(time.monotonic() - t0, 15, (out, err))
        self.assertIn("consumer 1\n", out)
        self.assertIn("after 2 s, no receipt for never-sent", err)
        self.assertIn("producer 1\n", out)
        self.assertRegex(err, r"produce_json: not delivered to \S+ within 2 s")
        self.assertIn("payload 1\n", out)
        self.assertIn("--payload must be a JSON object", err)

    @h.kafka_only("kafka-clients does not get past its version handshake with the "
                  "embedded broker (librdkafka's mock cluster)")
    def test_java_producer(self):
        w, bootstrap = self.pipeline()
        reader = self.reader(bootstrap)
        out, _ = self.block("java", bootstrap)
        lines = json_lines(out)
        self.assertEqual([(r["sent"], r["nonce"], r["topic"]) for r in lines[:2]],
                         [("json", "java-1-json", h.REQUESTS_TOPIC),
                          ("avro-single-object", "java-1-avro", h.REQUESTS_TOPIC)], out)
        got = {r["nonce"]: r for r in lines[2:]}
        self.assertEqual(sorted(got), ["java-1-avro", "java-1-json"], out)
        for nonce in got:
            self.assertExecutedLine(got[nonce], nonce, "add", {"a": 2, "b": 3}, {"sum": 5})
            (rec,) = self.receipts(reader, nonce, 1)
            self.assertEqual((rec["status"], rec["id"]), ("executed", got[nonce]["id"]))
        self.assertEqual(w.metrics()["openexec_dead_letters_total"], 0)

    def test_doc_blocks_are_all_run(self):
        # Every shell block of the doc is marked, each `examples` block is
        # run by a test of this file, and each name here is in the doc.
        blocks, unmarked, skipped = doc_blocks()
        self.assertEqual(unmarked, [], "docs/integrate.md lines with a ```sh block and no "
                                       "test marker")
        self.assertEqual(sorted(blocks), sorted(RUN_BY))
        for name, test in RUN_BY.items():
            self.assertTrue(callable(getattr(self, test, None)), (name, test))
        self.assertGreaterEqual(skipped, 1)
        print("    %d blocks run by the tests, %d skipped with their reason"
              % (len(blocks), skipped))


if __name__ == "__main__":
    run_tests()
