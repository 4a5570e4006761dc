"""Black-box tests of `openexec run` in demo mode over real HTTP, and of the
command line (docs/operations.md; docs/protocol.md §2, §5, §7)."""

import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (ONE_MIB, ServiceTest, canonical, cli, execution_id, free_port,  # noqa: E402
                     is_uuid_v8, raw_http, receipt_hash, request_hash, result_json,
                     ledger_query, run_tests, sha256_hex)


def sized_body(size, nonce, action="echo"):
    """A valid request of exactly `size` bytes."""
    prefix = '{"action":"%s","nonce":"%s","payload":{"pad":"' % (action, nonce)
    suffix = '"}}'
    pad = size - len(prefix) - len(suffix)
    assert pad >= 0
    body = (prefix + "a" * pad + suffix).encode("ascii")
    assert len(body) == size
    return body


def http_head(path, extra):
    return ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "%sConnection: close\r\n\r\n" % (path, extra)).encode("ascii")


def with_length(body):
    """Raw request chunks with Content-Length."""
    head = http_head("/execute", "Content-Length: %d\r\n" % len(body))
    return [head] + [body[i:i + 65536] for i in range(0, len(body), 65536)]


def chunked(body, size=65536):
    """Raw request chunks with Transfer-Encoding: chunked."""
    out = [http_head("/execute", "Transfer-Encoding: chunked\r\n")]
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out.append(b"%x\r\n" % len(part) + part + b"\r\n")
    out.append(b"0\r\n\r\n")
    return out


class Endpoints(ServiceTest):
    def test_root(self):
        s = self.server()
        r = s.get("/")
        self.assertStatus(r, 200)
        self.assertJSONType(r)
        body = r.json
        self.assertEqual(body["service"], "OpenExec")
        self.assertEqual(body["status"], "running")
        self.assertIsInstance(body["version"], str)
        self.assertTrue(body["version"])

    def test_health_demo(self):
        s = self.server()
        r = s.get("/health")
        self.assertStatus(r, 200)
        self.assertJSONType(r)
        h = r.json
        self.assertEqual(h["status"], "healthy")
        self.assertEqual(h["mode"], "demo")
        self.assertEqual(h["signature_verification"], "disabled")
        self.assertEqual(h["restriction"], "open")
        self.assertEqual(h["exec_mode"], "demo")
        self.assertEqual(h["warning"], "No execution allow-list configured")

    def test_health_allow_list_and_403(self):
        s = self.server(env={"OPENEXEC_ALLOWED_ACTIONS": "echo"})
        h = s.get("/health").json
        self.assertEqual(h["mode"], "demo")
        self.assertEqual(h["restriction"], "restricted")
        self.assertEqual(h["allow_list"], ["echo"])
        self.assertExecuted(s.execute("echo", {"m": 1}, "al-1"), "echo", {"m": 1}, "al-1",
                            result={"echo": {"m": 1}})
        r = s.execute("add", {"a": 1, "b": 2}, "al-2")
        self.assertDetail(r, 403)
        # A rejection does not use up the nonce.
        self.assertExecuted(s.execute("echo", {}, "al-2"), "echo", {}, "al-2")

    def test_allow_list_exact_names(self):
        # Regression: the allow-list was matched with strstr on ",a,b,": with
        # "add,echo", action ",add" read before a heap block and "add,echo"
        # passed it. Names are compared exactly; blanks around items trimmed.
        s = self.server(env={"OPENEXEC_ALLOWED_ACTIONS": " add , echo"})
        self.assertEqual(s.get("/health").json["allow_list"], ["add", "echo"])
        for i, name in enumerate([",add", "add,echo", "add,", ",", "echo ", "ech", "echo2"]):
            r = s.execute(name, {}, "ex-bad-%d" % i)
            self.assertDetail(r, 403)
            self.assertIn("not allowed", r.json["detail"])
        self.assertExecuted(s.execute("add", {"a": 1}, "ex-2"), "add", {"a": 1}, "ex-2",
                            result={"sum": 1})

    def test_allow_list_refused_at_start(self):
        # Names that are not registered actions, or hold separators or
        # blanks, stop start-up with exit 2 naming the item.
        for value, item in [(" ech , echo2,add ", '"ech"'), ("add;echo", '"add;echo"'),
                            ("a d d", '"a d d"'), (",", "names no action")]:
            p = cli(["run", "--http-port", str(free_port()), "--execute", "local",
                     "--db", self.path("al.db")],
                    env={"OPENEXEC_ALLOWED_ACTIONS": value})
            self.assertEqual(p.returncode, 2, (value, p.stderr))
            self.assertIn("OPENEXEC_ALLOWED_ACTIONS", p.stderr)
            self.assertIn(item, p.stderr)

    def test_ready(self):
        s = self.server()
        r = s.get("/ready")
        self.assertStatus(r, 200)
        self.assertJSONType(r)
        self.assertEqual(r.json, {"ready": True})

    def test_version(self):
        s = self.server()
        r = s.get("/version")
        self.assertStatus(r, 200)
        self.assertJSONType(r)
        v = r.json
        self.assertIsInstance(v["version"], str)
        self.assertTrue(v["version"])
        self.assertEqual(v["version"], s.get("/").json["version"])
        # The build: the commit of this checkout (as `git` says) and its date.
        import subprocess
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
        if head.returncode == 0:
            self.assertTrue(v["commit"].startswith(head.stdout.strip()), v)
        self.assertRegex(v["commit_date"], r"^\d{4}-\d{2}-\d{2}T|^unknown$")
        ts = v["timestamp"]
        self.assertRegex(ts, r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
        t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        self.assertLess(abs((datetime.now(timezone.utc) - t).total_seconds()), 60,
                        "timestamp %s is not now" % ts)

    def test_metrics(self):
        s = self.server()
        r = s.get("/metrics")
        self.assertStatus(r, 200)
        self.assertTrue((r.header("Content-Type") or "").startswith("text/plain"))
        text = r.body.decode("utf-8")
        sample = re.compile(r'^(openexec_[a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"'
                            r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? '
                            r'(-?[0-9.eE+-]+|\+Inf|NaN)$')
        typed = set()
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                parts = line.split()
                self.assertTrue(parts[2].startswith("openexec_"), line)
                self.assertIn(parts[3], ("counter", "gauge", "histogram", "summary", "untyped"))
                typed.add(parts[2])
            elif line.startswith("#") or not line:
                continue
            else:
                m = sample.match(line)
                self.assertTrue(m, "not a Prometheus sample: %r" % line)
                base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
                self.assertTrue(m.group(1) in typed or base in typed,
                                "sample without # TYPE: %r" % line)
        self.assertIn("openexec_requests_total", typed)
        self.assertTrue(any(t.endswith("_seconds") for t in typed) and 'le="+Inf"' in text,
                        "no latency histogram")
        m0 = s.metrics()
        ex = 'openexec_requests_total{status="executed"}'
        rp = 'openexec_requests_total{status="replayed"}'
        rj = 'openexec_requests_total{status="rejected"}'
        for k in (ex, rp, rj):
            self.assertIn(k, m0)
        self.assertStatus(s.execute("echo", {}, "m-1"), 200)
        m1 = s.metrics()
        self.assertEqual(m1[ex], m0[ex] + 1)
        self.assertStatus(s.execute("echo", {}, "m-1"), 200)
        self.assertStatus(s.execute("nope", {}, "m-2"), 400)
        m2 = s.metrics()
        self.assertEqual(m2[ex], m1[ex])
        self.assertEqual(m2[rp], m1[rp] + 1)
        self.assertEqual(m2[rj], m1[rj] + 1)

    def test_keep_alive(self):
        # Several requests on one persistent connection, including answers
        # given before the request body was read (404, 405).
        import http.client
        s = self.server()
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        try:
            seq = [("POST", "/execute", {"action": "echo", "nonce": "ka-1"}, 200),
                   ("POST", "/nope", {"action": "echo", "nonce": "ka-2"}, 404),
                   ("GET", "/health", None, 200),
                   ("POST", "/health", {"x": 1}, 405),
                   ("POST", "/execute", {"action": "echo", "nonce": "ka-1"}, 200),
                   ("POST", "/execute", "{bad", 422),
                   ("GET", "/ready", None, 200)]
            for method, path, body, status in seq:
                if body is not None and not isinstance(body, str):
                    body = json.dumps(body)
                c.request(method, path, body=body,
                          headers={"Content-Type": "application/json"} if body else {})
                r = c.getresponse()
                data = r.read()
                self.assertEqual(r.status, status, "%s %s -> %d %r" % (method, path, r.status,
                                                                     data[:200]))
        finally:
            c.close()

    def test_404(self):
        s = self.server()
        for method, path in (("GET", "/nope"), ("POST", "/nope"), ("GET", "/execute/x"),
                             ("GET", "/healthz"), ("GET", "/receipts/a/b")):
            r = s.request(method, path)
            self.assertDetail(r, 404)
        # /receipts is the look-up by nonce: without one it is a bad request.
        self.assertDetail(s.request("GET", "/receipts"), 400, contains="nonce")

    def test_405(self):
        s = self.server()
        for method, path in (("GET", "/execute"), ("POST", "/health"), ("PUT", "/execute"),
                             ("DELETE", "/"), ("POST", "/ready"), ("POST", "/metrics"),
                             ("GET", "/receipts/verify")):
            body = b"{}" if method in ("POST", "PUT") else None
            r = s.request(method, path, body=body)
            self.assertStatus(r, 405, "%s %s" % (method, path))
            self.assertTrue(r.header("Allow"), "405 without an Allow header: %s %s"
                            % (method, path))
        # Nothing was executed by those.
        self.assertEqual(s.metrics()['openexec_requests_total{status="executed"}'], 0)


class Execute(ServiceTest):
    def test_echo(self):
        s = self.server()
        payload = {"msg": "hello", "n": [1, 2.5, None, True], "z": {"b": 1, "a": 2}}
        r = s.execute("echo", payload, "unique-1")
        body = self.assertExecuted(r, "echo", payload, "unique-1", tenant="",
                                   result={"echo": payload})
        # Independent checks of the id: UUID version 8, variant 10xx.
        i = body["id"]
        self.assertRegex(i, r"^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertEqual(body["receipt"], sha256_hex(
            "%s:%s" % (i, json.dumps({"echo": payload}, sort_keys=True))))
        self.assertEqual(body.get("status"), "executed")

    def test_payload_missing_or_null_is_empty_object(self):
        s = self.server()
        r = s.execute(raw='{"action": "echo", "nonce": "p-1"}')
        self.assertExecuted(r, "echo", {}, "p-1", result={"echo": {}})
        # null is the same request: a replay, not a conflict.
        r = s.execute(raw='{"action": "echo", "nonce": "p-1", "payload": null}')
        b = self.assertExecuted(r, "echo", {}, "p-1", status="replayed")
        self.assertEqual(b["id"], execution_id("", "p-1", request_hash("echo", {})))

    def test_unknown_fields_ignored(self):
        s = self.server()
        r = s.execute("echo", {"x": 1}, "u-1", extra_field={"any": 1}, another=5)
        self.assertExecuted(r, "echo", {"x": 1}, "u-1", result={"echo": {"x": 1}})

    def test_add_ints_and_floats(self):
        s = self.server()
        cases = [
            ({"a": 2, "b": 3}, 5),
            ({"a": 2, "b": 0.5}, 2.5),
            ({"a": 1.0, "b": 1}, 2.0),
            ({"a": 0.1, "b": 0.2}, 0.1 + 0.2),
            ({}, 0),
            ({"a": 7}, 7),
            ({"b": -4.25}, -4.25),
            ({"a": -5, "b": 3}, -2),
            ({"a": 9223372036854775806, "b": 1}, 9223372036854775807),
            ({"a": -9223372036854775808, "b": 0}, -9223372036854775808),
            ({"a": 9007199254740993, "b": 0.5}, 9007199254740993 + 0.5),
            ({"a": 1e300, "b": 1}, 1e300 + 1),
            ({"a": 3, "b": 4, "c": "ignored"}, 7),
        ]
        for n, (payload, expect) in enumerate(cases):
            nonce = "add-%d" % n
            r = s.execute("add", payload, nonce)
            b = self.assertExecuted(r, "add", payload, nonce, result={"sum": expect})
            got = b["result"]["sum"]
            self.assertIs(type(got), type(expect), "%r -> %r: type %s, want %s"
                          % (payload, got, type(got).__name__, type(expect).__name__))
            self.assertEqual(got, expect, payload)
            # The stored result_json is exactly Python's json.dumps.
            rec = s.get("/receipts/" + b["id"]).json
            self.assertEqual(rec["result_json"], result_json({"sum": expect}), payload)

    def test_add_rejections(self):
        s = self.server()
        bad = [
            {"a": "1", "b": 2},
            {"a": 1, "b": "2"},
            {"a": True, "b": 1},
            {"a": 1, "b": False},
            {"a": [1], "b": 2},
            {"a": {"x": 1}},
            {"a": 9223372036854775807, "b": 1},
            {"a": -9223372036854775808, "b": -1},
            {"a": 123456789012345678901234567890, "b": 1},
            {"a": 9223372036854775808},
        ]
        for n, payload in enumerate(bad):
            r = s.execute("add", payload, "bad-add-%d" % n)
            self.assertDetail(r, 400)
        # None of them used up its nonce.
        r = s.execute("add", {"a": 1, "b": 1}, "bad-add-0")
        self.assertExecuted(r, "add", {"a": 1, "b": 1}, "bad-add-0", result={"sum": 2})

    def test_unknown_action(self):
        s = self.server()
        r = s.execute("nope", {"a": 1}, "ua-1")
        self.assertDetail(r, 400, equals="Unknown action: nope")
        r = s.execute("Echo", {}, "ua-2")
        self.assertDetail(r, 400, equals="Unknown action: Echo")
        self.assertExecuted(s.execute("echo", {}, "ua-1"), "echo", {}, "ua-1")

    def test_replay_and_conflict(self):
        s = self.server()
        payload = {"b": [1, {"y": 2, "x": 1}], "a": "z"}
        first = self.assertExecuted(s.execute("echo", payload, "n-1"), "echo", payload, "n-1",
                                    result={"echo": payload}, status="executed")
        self.assertEqual(first.get("status"), "executed")
        again = self.assertExecuted(s.execute("echo", payload, "n-1"), "echo", payload, "n-1",
                                    status="replayed")
        self.assertEqual(again.get("status"), "replayed")
        for k in ("id", "result", "receipt", "action", "approved"):
            self.assertEqual(again[k], first[k], k)
        # Same request written differently (key order, spaces): still a replay.
        raw = ('{ "nonce" : "n-1" , "payload" : {"a":"z","b":[1,{"x":1,"y":2}]},'
               ' "action":"echo"}')
        third = self.assertExecuted(s.execute(raw=raw), "echo", payload, "n-1",
                                    status="replayed")
        self.assertEqual(third["receipt"], first["receipt"])
        # Same nonce, another request: 409, and the original stays.
        self.assertDetail(s.execute("echo", {"a": "other"}, "n-1"), 409)
        self.assertDetail(s.execute("add", payload, "n-1"), 409)
        self.assertDetail(s.execute("echo", {}, "n-1"), 409)
        last = s.execute("echo", payload, "n-1")
        self.assertEqual(last.json["receipt"], first["receipt"])
        self.assertEqual(s.metrics()['openexec_requests_total{status="executed"}'], 1)

    def test_422_malformed(self):
        s = self.server()
        bodies = [
            b'{"action": "echo", "nonce": "m-1"',          # truncated
            b"not json",
            b"",
            b'{"action": "echo", "nonce": "m-1"} x',       # trailing garbage
            b"[1, 2]",
            b'"a string"',
            b"42",
            b"null",
            b'{"nonce": "m-1"}',                           # missing action
            b'{"action": "echo"}',                         # missing nonce
            b'{"action": 5, "nonce": "m-1"}',
            b'{"action": null, "nonce": "m-1"}',
            b'{"action": ["echo"], "nonce": "m-1"}',
            b'{"action": "echo", "nonce": 5}',
            b'{"action": "echo", "nonce": "m-1", "payload": []}',
            b'{"action": "echo", "nonce": "m-1", "payload": "x"}',
            b'{"action": "echo", "nonce": "m-1", "payload": 1}',
            b'{"action": "echo", "nonce": "m-1", "payload": true}',
            b'{"action": "echo", "nonce": "m-1", "approval_artifact": "x"}',
            b'{"action": "echo", "action": "add", "nonce": "m-1"}',
            b'{"action": "echo", "nonce": "m-1", "payload": {"a": 1, "a": 2}}',
            b'{"action": "echo", "nonce": "m-1", "payload": {"x": {"k": 1, "k": 1}}}',
            b'{"action": "add", "nonce": "m-1", "payload": {"a": NaN}}',
            b'{"action": "add", "nonce": "m-1", "payload": {"a": Infinity}}',
            b'{"action": "add", "nonce": "m-1", "payload": {"a": -Infinity}}',
            b'{"action": "add", "nonce": "m-1", "payload": {"a": 1e999}}',
            b'{"action": "echo", "nonce": "m-1", "payload": {"m": "\xff\xfe"}}',
            b'{"action": "echo", "nonce": "m-1", "payload": {"m": "\xc3"}}',
            b"{'action': 'echo', 'nonce': 'm-1'}",
        ]
        for body in bodies:
            r = s.post("/execute", body)
            self.assertEqual(r.status, 422, "body %r -> %r" % (body, r))
            self.assertDetail(r, 422)
        # None of them used up the nonce.
        self.assertExecuted(s.execute("echo", {}, "m-1"), "echo", {}, "m-1")

    def test_400_invalid_values(self):
        s = self.server()
        self.assertDetail(s.execute("", {}, "v-1"), 400)
        self.assertDetail(s.execute("echo", {}, ""), 400)
        self.assertDetail(s.execute("echo", {}, "n" * 257), 400)
        self.assertDetail(s.execute("echo", {}, "\u00e9" * 129), 400)  # 258 bytes
        self.assertExecuted(s.execute("echo", {}, "n" * 256), "echo", {}, "n" * 256)
        self.assertExecuted(s.execute("echo", {}, "\u00e9" * 128), "echo", {}, "\u00e9" * 128)
        self.assertExecuted(s.execute("echo", {}, "v-1"), "echo", {}, "v-1")

    def test_413_content_length(self):
        s = self.server()
        status, body = raw_http(s.port, with_length(sized_body(ONE_MIB + 1, "big-1")))
        self.assertEqual(status, 413, body[:200])
        self.assertIn("detail", json.loads(body))
        status, body = raw_http(s.port, with_length(sized_body(4 * ONE_MIB, "big-2")))
        self.assertEqual(status, 413, body[:200])
        # An announced oversized body is refused without being sent.
        status, _ = raw_http(s.port, [http_head("/execute", "Content-Length: %d\r\n"
                                                % (ONE_MIB + 1))])
        self.assertEqual(status, 413)
        self.assertTrue(s.alive())
        # Nothing was executed; the nonces are still free.
        self.assertExecuted(s.execute("echo", {}, "big-1"), "echo", {}, "big-1")

    def test_413_chunked(self):
        s = self.server()
        status, body = raw_http(s.port, chunked(sized_body(ONE_MIB + 1, "bigc-1")))
        self.assertEqual(status, 413, body[:200])
        self.assertIn("detail", json.loads(body))
        status, body = raw_http(s.port, chunked(sized_body(3 * ONE_MIB, "bigc-2"), 100000))
        self.assertEqual(status, 413, body[:200])
        self.assertTrue(s.alive())
        self.assertExecuted(s.execute("echo", {}, "bigc-1"), "echo", {}, "bigc-1")

    def test_one_mib_is_accepted(self):
        s = self.server()
        for n, (size, framing) in enumerate(((ONE_MIB, with_length), (ONE_MIB - 1, with_length),
                                             (ONE_MIB, chunked), (ONE_MIB - 100, chunked))):
            # add ignores the padding: the body is at the limit, the result
            # small (echo results are capped at 256 KiB, see below).
            nonce = "edge-%d" % n
            body = sized_body(size, nonce, "add")
            status, answer = raw_http(s.port, framing(body))
            self.assertEqual(status, 200, "%d bytes (%s): %r"
                             % (size, framing.__name__, answer[:200]))
            payload = json.loads(body)["payload"]
            got = json.loads(answer)
            self.assertEqual(got["id"], execution_id("", nonce, request_hash("add", payload)))
            self.assertEqual(got["receipt"], receipt_hash(got["id"], {"sum": 0}))

    def test_result_over_256_kib_is_refused(self):
        s = self.server()
        status, answer = raw_http(s.port, with_length(sized_body(300 * 1024, "huge-echo")))
        self.assertEqual(status, 400, answer[:200])
        self.assertIn("too large", json.loads(answer)["detail"])
        # Refused before anything was stored: the nonce is still free.
        self.assertExecuted(s.execute("echo", {}, "huge-echo"), "echo", {}, "huge-echo")


class Receipts(ServiceTest):
    def test_get_receipt(self):
        s = self.server()
        payload = {"k": "v", "n": 1}
        b = s.execute("echo", payload, "rc-1").json
        r = s.get("/receipts/" + b["id"])
        self.assertStatus(r, 200)
        self.assertJSONType(r)
        rec = r.json
        self.assertEqual(rec["id"], b["id"])
        self.assertEqual(rec["receipt"], b["receipt"])
        self.assertEqual(rec["result"], {"echo": payload})
        self.assertEqual(rec["nonce"], "rc-1")
        self.assertEqual(rec["action"], "echo")
        self.assertEqual(rec["request_hash"], request_hash("echo", payload))
        self.assertIsNone(rec.get("approval_id"))
        # Unknown ids.
        unknown = execution_id("", "never", request_hash("echo", {}))
        self.assertDetail(s.get("/receipts/" + unknown), 404)
        self.assertDetail(s.get("/receipts/not-an-id"), 404)
        self.assertDetail(s.get("/receipts/" + "f" * 300), 404)

    def test_verify(self):
        s = self.server()
        payload = {"z": 1, "a": [1.5, "x"]}
        b = s.execute("echo", payload, "rv-1").json
        ok = {"exec_id": b["id"], "result": b["result"], "receipt": b["receipt"]}
        r = s.post("/receipts/verify", ok)
        self.assertStatus(r, 200)
        self.assertJSONType(r)
        self.assertEqual(r.json, {"valid": True})
        # Key order of the result does not matter (it is canonicalised).
        reordered = ('{"receipt": "%s", "result": {"echo": {"a": [1.5, "x"], "z": 1}},'
                     ' "exec_id": "%s"}' % (b["receipt"], b["id"]))
        self.assertEqual(s.post("/receipts/verify", reordered).json, {"valid": True})
        tampered = [
            dict(ok, result={"echo": {"z": 2, "a": [1.5, "x"]}}),
            dict(ok, result={"echo": {"z": 1.0, "a": [1.5, "x"]}}),
            dict(ok, receipt=("0" if b["receipt"][0] != "0" else "1") + b["receipt"][1:]),
            dict(ok, receipt=b["receipt"].upper()),
            dict(ok, receipt=b["receipt"][:-1]),
            dict(ok, exec_id=execution_id("", "other", request_hash("echo", payload))),
        ]
        for t in tampered:
            r = s.post("/receipts/verify", t)
            self.assertStatus(r, 200)
            self.assertEqual(r.json, {"valid": False}, t)
        # "id", the name every other answer gives it, works as exec_id does.
        by_id = {"id": b["id"], "result": b["result"], "receipt": b["receipt"]}
        self.assertEqual(s.post("/receipts/verify", by_id).json, {"valid": True})
        for t in tampered:
            t = {("id" if k == "exec_id" else k): v for k, v in t.items()}
            self.assertEqual(s.post("/receipts/verify", t).json, {"valid": False}, t)
        for bad in (b"not json", b"[]", b'{"exec_id": "x", "result": 1}',
                    b'{"result": 1, "receipt": "ab"}', b'{"exec_id": 1, "result": 1, "receipt": "ab"}',
                    b'{"exec_id": "x", "result": 1, "receipt": 5}',
                    b'{"id": 1, "result": 1, "receipt": "ab"}', b'{"id": "x", "result": 1}'):
            r = s.post("/receipts/verify", bad)
            self.assertDetail(r, 422)


class Durability(ServiceTest):
    def test_restart_persistence(self):
        db = self.path("shared.db")
        s1 = self.server(db=db)
        payload = {"keep": "me"}
        first = self.assertExecuted(s1.execute("echo", payload, "persist-1"), "echo", payload,
                                    "persist-1")
        self.assertDetail(s1.execute("nope", {}, "persist-2"), 400)
        s1.stop()
        s2 = self.server(db=db)
        again = self.assertExecuted(s2.execute("echo", payload, "persist-1"), "echo", payload,
                                    "persist-1", status="replayed")
        self.assertEqual(again.get("status"), "replayed")
        self.assertEqual((again["id"], again["receipt"], again["result"]),
                         (first["id"], first["receipt"], first["result"]))
        self.assertDetail(s2.execute("echo", {"keep": "other"}, "persist-1"), 409)
        self.assertStatus(s2.get("/receipts/" + first["id"]), 200)
        self.assertEqual(s2.metrics()['openexec_requests_total{status="executed"}'], 0)
        # The rejected attempt before the restart did not use up its nonce.
        self.assertExecuted(s2.execute("echo", {}, "persist-2"), "echo", {}, "persist-2",
                            status="executed")

    def test_two_instances_same_ids(self):
        s1 = self.server(db=self.path("a.db"))
        s2 = self.server(db=self.path("b.db"))
        for n, (action, payload) in enumerate((("echo", {"m": "same"}),
                                               ("add", {"a": 2, "b": 0.25}))):
            nonce = "twin-%d" % n
            a = self.assertExecuted(s1.execute(action, payload, nonce), action, payload, nonce)
            b = self.assertExecuted(s2.execute(action, payload, nonce), action, payload, nonce)
            self.assertEqual(a["id"], b["id"])
            self.assertEqual(a["receipt"], b["receipt"])
            self.assertEqual(a["result"], b["result"])

    def test_parallel_same_nonce(self):
        s = self.server(args=["--http-threads", "8"])
        payload = {"parallel": True}
        n = 64
        barrier = threading.Barrier(n)
        results = [None] * n

        def worker(i):
            try:
                barrier.wait(timeout=10)
                results[i] = s.execute("echo", payload, "race-1")
            except Exception as e:  # recorded and asserted below
                results[i] = e

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        self.assertFalse(any(t.is_alive() for t in threads), "requests hung")
        errors = [r for r in results if not hasattr(r, "status")]
        self.assertEqual(errors, [])
        for r in results:
            self.assertStatus(r, 200)
        bodies = [r.json for r in results]
        statuses = sorted(b.get("status") for b in bodies)
        self.assertEqual(statuses.count("executed"), 1, statuses)
        self.assertEqual(statuses.count("replayed"), n - 1, statuses)
        self.assertEqual(len({(b["id"], b["receipt"], canonical(b["result"])) for b in bodies}), 1)
        self.assertExecuted(results[0], "echo", payload, "race-1", status=None)
        rows = ledger_query(s.db, "SELECT count(*) FROM executions WHERE nonce = ?",
                            ("race-1",))[0][0]
        total = ledger_query(s.db, "SELECT count(*) FROM executions")[0][0]
        self.assertEqual(rows, 1)
        self.assertEqual(total, 1)

    def test_rejections_recorded(self):
        s = self.server()
        self.assertDetail(s.execute("nope", {}, "rej-1"), 400)                    # unknown_action
        self.assertDetail(s.execute("add", {"a": "x"}, "rej-2"), 400)             # invalid_request
        self.assertStatus(s.execute("echo", {}, "rej-3"), 200)
        self.assertDetail(s.execute("echo", {"x": 1}, "rej-3"), 409)              # nonce_conflict
        self.assertDetail(s.post("/execute", b'{"action": "echo"'), 422)         # malformed
        self.assertDetail(s.execute("echo", {}, ""), 400)                         # invalid_request
        rows = ledger_query(s.db, "SELECT nonce, error_code, detail FROM rejections")
        execs = ledger_query(s.db, "SELECT nonce FROM executions")
        self.assertEqual(execs, [("rej-3",)])
        codes = [r[1] for r in rows]
        self.assertEqual(len(rows), 5, rows)
        by_nonce = {r[0]: r[1] for r in rows if r[0]}
        self.assertEqual(by_nonce.get("rej-1"), "unknown_action", rows)
        self.assertEqual(by_nonce.get("rej-2"), "invalid_request", rows)
        self.assertEqual(by_nonce.get("rej-3"), "nonce_conflict", rows)
        self.assertIn("malformed", codes)
        self.assertEqual(codes.count("invalid_request"), 2, rows)
        for r in rows:
            self.assertTrue(r[2], "rejection without a reason: %r" % (r,))


    def test_parallel_distinct_nonces(self):
        s = self.server()
        n = 64
        barrier = threading.Barrier(n)
        results = [None] * n

        def worker(i):
            try:
                barrier.wait(timeout=10)
                results[i] = s.execute("add", {"a": i, "b": 1}, "many-%d" % i)
            except Exception as e:
                results[i] = e

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        self.assertFalse(any(t.is_alive() for t in threads), "requests hung")
        for i, r in enumerate(results):
            self.assertTrue(hasattr(r, "status"), r)
            self.assertExecuted(r, "add", {"a": i, "b": 1}, "many-%d" % i, result={"sum": i + 1})
        self.assertEqual(ledger_query(s.db, "SELECT count(*) FROM executions")[0][0], n)

    def test_group_commit(self):
        # Requests that arrive together share ledger transactions (one
        # batch each, db-sync full), and each answer is its own: all 200
        # requests are on the wire before any answer is read.
        s = self.server(args=["--db-sync", "full"])
        n = 200
        # Connected first, then every request written in one tight loop (a
        # few ms for all 200): the requests arrive together whatever the
        # speed of the client, so that the groups do not depend on it.
        socks = [socket.create_connection(("127.0.0.1", s.port), timeout=30) for _ in range(n)]
        try:
            raw = []
            for i in range(n):
                body = json.dumps({"action": "add", "payload": {"a": i, "b": 1},
                                   "nonce": "group-%d" % (i % 150)}).encode()
                raw.append(b"POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                           % (len(body), body))
            for sock, data in zip(socks, raw):
                sock.sendall(data)
            answers = []
            for sock in socks:
                r = http.client.HTTPResponse(sock)
                r.begin()
                answers.append((r.status, json.loads(r.read())))
        finally:
            for sock in socks:
                sock.close()
        # Requests k and k + 150 (k < 50) share a nonce with different
        # payloads. They come on different connections, so either may reach
        # the ledger first (the server reads its connections on several
        # threads): exactly one is executed with its own payload, the other is
        # a conflict, never a second execution.
        executed = {}
        for k in range(150):
            same = [i for i in (k, k + 150) if i < n]
            won = [i for i in same if answers[i][0] == 200]
            self.assertEqual(len(won), 1, [answers[i] for i in same])
            for i in same:
                if i != won[0]:
                    self.assertEqual(answers[i][0], 409, answers[i])
            self.assertEqual(answers[won[0]][1].get("result"), {"sum": won[0] + 1})
            executed["group-%d" % k] = answers[won[0]][1]["receipt"]
        rows = ledger_query(s.db, "SELECT nonce, receipt FROM executions")
        self.assertEqual(dict(rows), executed)
        m = s.metrics()
        print("    %d requests in %d ledger transactions"
              % (n, m["openexec_batch_duration_seconds_count"]))
        self.assertLess(m["openexec_batch_duration_seconds_count"], n / 2)

    def test_shutdown_under_load(self):
        # SIGTERM while requests are in flight: exit 0, and every request
        # that was answered 200 is durable with the receipt it was given.
        s = self.server()
        stop = threading.Event()
        answered = {}
        lock = threading.Lock()

        def worker(t):
            for i in range(400):
                if stop.is_set():
                    return
                nonce = "load-%d-%d" % (t, i)
                try:
                    r = s.execute("echo", {"t": t, "i": i}, nonce, timeout=5)
                except Exception:
                    continue
                if r.status == 200:
                    with lock:
                        answered[nonce] = (r.json["id"], r.json["receipt"])

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while len(answered) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        db_path = s.db
        try:
            s.stop()
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        self.assertGreaterEqual(len(answered), 50)
        rows = {n: (i, r) for n, i, r in
                ledger_query(db_path, "SELECT nonce, id, receipt FROM executions")}
        for nonce, got in answered.items():
            self.assertEqual(rows.get(nonce), got, "answered %s but stored %r"
                             % (nonce, rows.get(nonce)))
        for nonce in rows:
            self.assertTrue(nonce.startswith("load-"), nonce)


class CommandLine(ServiceTest):
    def run_args(self):
        return ["--http-port", str(free_port()), "--db", self.path("cli.db")]

    def assertUsageError(self, p, what):
        self.assertEqual(p.returncode, 2, "%s: exit %d, stderr %r" % (what, p.returncode, p.stderr))
        err = p.stderr.strip()
        self.assertTrue(err, "%s: no reason on stderr" % what)
        self.assertNotIn("\n", err, "%s: stderr is not one line: %r" % (what, p.stderr))

    def test_run_bad_usage(self):
        self.assertUsageError(cli(["run", "--bogus"] + self.run_args()), "run --bogus")
        self.assertUsageError(cli(["run", "--bogus=1"] + self.run_args()), "run --bogus=1")
        self.assertUsageError(cli(["run", "extra"] + self.run_args()), "run extra")
        self.assertUsageError(cli(["run", "--http-port"]), "run --http-port (no value)")
        self.assertUsageError(cli(["run", "--http-port", "70000", "--db", self.path("p.db")]),
                              "--http-port 70000")
        self.assertUsageError(cli(["run", "--http-port", "abc", "--db", self.path("p.db")]),
                              "--http-port abc")
        self.assertUsageError(cli(["run"] + self.run_args(), env={"OPENEXEC_MODE": "weird"}),
                              "OPENEXEC_MODE=weird")
        self.assertUsageError(cli(["run", "--mode", "weird"] + self.run_args()), "--mode weird")
        self.assertUsageError(cli(["run"] + self.run_args(), env={"OPENEXEC_MODE": "clawshield"}),
                              "clawshield without a key")
        self.assertUsageError(cli(["run"] + self.run_args(),
                                  env={"OPENEXEC_MODE": "clawshield",
                                       "CLAWSHIELD_TENANT_ID": "t"}),
                              "clawshield with a tenant but no key")
        self.assertUsageError(cli(["run"] + self.run_args(),
                                  env={"OPENEXEC_MODE": "clawshield",
                                       "CLAWSHIELD_PUBLIC_KEY": "not a pem"}),
                              "clawshield with a bad public key")
        # Configuration errors are found before the database is created.
        self.assertFalse(os.path.exists(self.path("cli.db")))

    def test_unusable_database_exit_1(self):
        p = cli(["run", "--http-port", str(free_port()), "--db",
                 self.path("no/such/dir/x.db")])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertTrue(p.stderr.strip())
        # A malformed OPENEXEC_DB_URL is a configuration error.
        p = cli(["run", "--http-port", str(free_port())],
                env={"OPENEXEC_DB_URL": "mysql://x/y"})
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("postgresql://", p.stderr)
        # A PostgreSQL ledger that cannot be reached at start-up: exit 1,
        # with the password masked in the reason.
        p = cli(["run", "--http-port", str(free_port())],
                env={"OPENEXEC_DB_URL": "postgresql://u:s3cret@127.0.0.1:%d/db" % free_port()})
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("cannot connect", p.stderr)
        self.assertNotIn("s3cret", p.stderr)

    def test_port_in_use_exit_1(self):
        # The second instance must not start: with SO_REUSEPORT both would
        # listen on the port and share its connections between two databases.
        s = self.server()
        p = cli(["run", "--http-port", str(s.port), "--db", self.path("other.db")], timeout=10)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertTrue(p.stderr.strip())
        self.assertTrue(s.alive())

    def test_environment_configuration(self):
        db = self.path("env.db")
        s = self.server(flags=False, env={"OPENEXEC_DB_PATH": db})
        self.assertExecuted(s.execute("echo", {}, "env-1"), "echo", {}, "env-1")
        s.stop()
        with sqlite3.connect(db) as c:
            self.assertEqual(c.execute("SELECT nonce FROM executions").fetchall(), [("env-1",)])
        # OPENEXEC_DB_URL=sqlite:///PATH names the same file.
        s = self.server(flags=False, env={"OPENEXEC_DB_PATH": None,
                                          "OPENEXEC_DB_URL": "sqlite:///" + db})
        self.assertEqual(s.execute("echo", {}, "env-1").json.get("status"), "replayed")

    def test_sigint_stops_gracefully(self):
        s = self.server()
        self.assertStatus(s.execute("echo", {}, "int-1"), 200)
        s.stop(signal.SIGINT)

    def test_flag_wins_over_environment(self):
        s = self.server(env={"OPENEXEC_MODE": "clawshield", "OPENEXEC_ALLOWED_ACTIONS": "add"},
                        args=["--mode", "demo", "--allowed-actions", "echo"])
        h = s.get("/health").json
        self.assertEqual(h["mode"], "demo")
        self.assertEqual(h["allow_list"], ["echo"])

    def test_commands_and_help(self):
        for args in (["--help"], ["run", "--help"], ["mint", "--help"],
                     ["verify-receipt", "--help"]):
            p = cli(args)
            self.assertEqual(p.returncode, 0, "%s: %r" % (args, p.stderr))
            self.assertIn("usage", p.stdout.lower(), args)
        p = cli(["run", "--help"])
        self.assertIn("--http-port", p.stdout)
        self.assertIn("--db", p.stdout)
        self.assertUsageError(cli(["frobnicate"]), "unknown command")
        self.assertUsageError(cli(["mint", "--action", "echo"]), "mint without a key")
        self.assertUsageError(cli(["mint", "--secret", "s", "--action", "echo",
                                   "--payload", "[1]"]), "mint with a non-object payload")
        self.assertUsageError(cli(["verify-receipt", "--id", "x"]), "verify-receipt incomplete")
        p = cli([])
        self.assertEqual(p.returncode, 2)

    def test_verify_receipt(self):
        i = execution_id("", "cli-1", request_hash("echo", {"a": 1}))
        result = {"echo": {"b": [1, 2.5, "\u00e9"], "a": 1}}
        good = receipt_hash(i, result)
        p = cli(["verify-receipt", "--id", i, "--result", json.dumps(result), "--receipt", good])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "valid")
        # Another spelling of the same JSON value is still valid.
        p = cli(["verify-receipt", "--id", i, "--result",
                 '{"echo":{"a":1,"b":[1,2.5,"\u00e9"]}}', "--receipt", good])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "valid")
        for rid, res, rec in ((i, json.dumps({"echo": {"a": 2}}), good),
                              (i, json.dumps(result), "0" * 64),
                              ("other", json.dumps(result), good)):
            p = cli(["verify-receipt", "--id", rid, "--result", res, "--receipt", rec])
            self.assertEqual(p.returncode, 1, (rid, res, rec, p.stderr))
            self.assertEqual(p.stdout.strip(), "invalid")
        # The service's own receipts verify with the CLI.
        s = self.server()
        b = s.execute("add", {"a": 1, "b": 0.5}, "cli-2").json
        p = cli(["verify-receipt", "--id", b["id"], "--result", json.dumps(b["result"]),
                 "--receipt", b["receipt"]])
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "valid"))


if __name__ == "__main__":
    run_tests()
