"""GET /openapi.json: the OpenAPI 3.1 description of the admin HTTP server
(admin-http/openapi.json, compiled into the binary).

- the served document is the source file byte for byte, and a valid
  OpenAPI 3.1 document (openapi-spec-validator);
- every documented (path, method, status) is produced against real
  servers (local execution in demo and clawshield mode, a ledger edited or
  deleted behind the service, stalled bodies that fill this address's
  budget, a Kafka bridge without a worker, a forged receipt, brokers that
  cannot be reached), and each answer's Content-Type and body match what
  the document says (JSON Schema 2020-12, formats checked, jsonschema); the
  few answers no test can bring about are exempted below, with the reason;
- conversely every path and method the server answers is documented:
  other methods on a documented path are 405 with Allow, other paths 404.

The validator is not in Debian: `make test` (or `make check`) installs it, pinned, into
build/venv (tests/http/requirements.txt); this file runs under Debian's
Python and imports it from there. Without build/venv every test fails and
says so.
"""

import json
import os
import re
import socket
import sys
import threading
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (HTTP_TIMEOUT, LEDGER, ONE_MIB, ROOT, KafkaTest, cli,  # noqa: E402
                     ed25519_artifact, ed25519_keypair, free_port, hmac_artifact,
                     kafka_producer, pg_database_for, raw_http, request_hash, run_tests)
import harness as h  # noqa: E402  (topic names are per test on Apache Kafka)

SOURCE = os.path.join(ROOT, "admin-http", "openapi.json")
HTTP_SOURCE = os.path.join(ROOT, "admin-http", "http.c")
VENV_SITE = os.path.join(ROOT, "build", "venv", "lib", "python%d.%d" % sys.version_info[:2],
                         "site-packages")

# The validator and jsonschema from build/venv, ahead of Debian's own
# (older) jsonschema.
VENV_ERROR = None
try:
    if not os.path.isdir(VENV_SITE):
        raise ImportError("%s is missing" % VENV_SITE)
    sys.path.insert(0, VENV_SITE)
    import jsonschema  # noqa: E402
    import openapi_spec_validator  # noqa: E402
    if not os.path.abspath(jsonschema.__file__).startswith(VENV_SITE):
        raise ImportError("jsonschema was imported from %s, not build/venv" % jsonschema.__file__)
except ImportError as e:
    VENV_ERROR = ("the OpenAPI validator is not installed (%s): run `make check` (or `make test`), which puts "
                  "tests/http/requirements.txt into build/venv" % e)

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

# Documented answers that no test here can bring about, by (path, method,
# status), with the reason. Everything else documented must be produced.
EXEMPT = {
    ("/metrics", "GET", 500): "needs the metrics text over the 16 MiB answer cap",
}
if LEDGER == "postgresql":
    EXEMPT[("/execute", "POST", 500)] = (
        "needs a PostgreSQL ledger that fails other than by being unreachable (on SQLite the "
        "file is deleted under the service)")


def load_source():
    with open(SOURCE, "rb") as f:
        return f.read()


DOC = json.loads(load_source().decode("utf-8"))


def resolve(obj):
    """Follows a local $ref (#/a/b) of the document."""
    while isinstance(obj, dict) and "$ref" in obj:
        node = DOC
        for part in obj["$ref"][2:].split("/"):
            node = node[part]
        obj = node
    return obj


def documented():
    """Every documented (path, METHOD, status)."""
    out = set()
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "delete", "patch", "options", "head"):
                for status in op["responses"]:
                    out.add((path, method.upper(), int(status)))
    return out


def concrete(path):
    """A request path for a documented path template."""
    return {"/receipts/{id}": "/receipts/no-such-id", "/receipts": "/receipts?nonce=no-such",
            "/log/{origin}/checkpoint": "/log/openexec/no-such-log/checkpoint",
            "/log/{origin}/consistency": "/log/openexec/no-such-log/consistency?from=1&to=1",
            "/receipts/{id}/proof": "/receipts/no-such-id/proof"}.get(path, path)


def raw(port, data):
    """The answer to raw bytes, headers and all."""
    return raw_http(port, [data], full=True)


class OpenAPI(KafkaTest):

    def setUp(self):
        if VENV_ERROR:
            self.fail(VENV_ERROR)
        super().setUp()
        self.seen = set()
        self.problems = []

    # -- checking one answer against the document

    def schema_errors(self, instance, schema):
        """Messages of jsonschema (2020-12, formats checked) for instance
        against a schema of the document, its $refs resolved in it."""
        root = dict(schema)
        root["components"] = DOC["components"]
        cls = jsonschema.Draft202012Validator
        v = cls(root, format_checker=cls.FORMAT_CHECKER)
        return ["%s at %s" % (e.message, "/".join(map(str, e.absolute_path)) or "the top")
                for e in v.iter_errors(instance)]

    def check(self, r, path, method, expect=None):
        """Records (path, method, status) as produced and the answer's
        disagreements with the document (reported together at the end).
        expect: the status the test meant to bring about."""
        what = "%s %s -> %d" % (method, path, r.status)
        if expect is not None and r.status != expect:
            self.problems.append("%s %s: expected %d, got %r" % (method, path, expect, r))
            return
        op = DOC["paths"].get(path, {}).get(method.lower())
        if op is None or str(r.status) not in op["responses"]:
            self.problems.append("%s is not documented: %r" % (what, r))
            return
        self.seen.add((path, method, r.status))
        self.problems += ["%s: %s" % (what, p) for p in self.answer_problems(
            r, resolve(op["responses"][str(r.status)]), method)]

    def answer_problems(self, r, spec, method="GET"):
        out = []
        ct = r.header("Content-Type")
        content = spec.get("content")
        if not content:
            if ct is not None:
                out.append("Content-Type %r, the document says none" % ct)
            return out
        if ct not in content:
            return out + ["Content-Type %r, the document says %s" % (ct, sorted(content))]
        for name, hdr in spec.get("headers", {}).items():
            value = r.header(name)
            if value is None:
                out.append("no %s header" % name)
            else:
                out += ["header %s: %s" % (name, e)
                        for e in self.schema_errors(value, resolve(hdr)["schema"])]
        if method == "HEAD":
            return out
        try:
            text = r.body.decode("utf-8")
            body = json.loads(text) if ct.startswith("application/json") else text
        except ValueError as e:
            return out + ["body is not %s: %s (%r)" % (ct, e, r.body[:200])]
        return out + self.schema_errors(body, content[ct]["schema"])

    def assertNoProblems(self):
        if self.problems:
            self.fail("%d disagreement(s) with admin-http/openapi.json:\n  %s"
                      % (len(self.problems), "\n  ".join(self.problems)))

    # -- (a), (b): the document itself

    def test_document_is_the_source_and_valid_openapi_3_1(self):
        s = self.server()
        r = s.get("/openapi.json")
        self.assertStatus(r, 200)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(r.body, load_source(), "the served document differs from the source")
        from openapi_spec_validator import OpenAPIV31SpecValidator, validate
        doc = json.loads(r.body)
        self.assertEqual(doc["openapi"], "3.1.0")
        validate(doc, cls=OpenAPIV31SpecValidator)
        # The validator is not vacuous: a response without its description
        # is refused.
        from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
        del doc["paths"]["/health"]["get"]["responses"]["200"]["description"]
        with self.assertRaises(OpenAPIValidationError):
            validate(doc, cls=OpenAPIV31SpecValidator)
        # info.version is the binary's version.
        self.assertEqual(doc["info"]["version"], s.get("/version").json["version"])
        self.assertEqual(doc["info"]["version"], s.get("/").json["version"])
        # HEAD answers like GET, without the body.
        r = s.request("HEAD", "/openapi.json")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"")
        # Counted under its own route, as the other routes are.
        s.get("/openapi.json")
        self.assertEqual(s.metrics().get(
            'openexec_http_requests_total{route="/openapi.json",code="200"}'), 3)

    # -- (c): every documented answer, live

    def test_every_documented_answer_is_produced_and_matches(self):
        self.local_answers()
        self.generic_answers()
        self.bridge_answers()
        self.unreachable_answers()
        missing = sorted(documented() - self.seen - set(EXEMPT))
        self.assertEqual(missing, [], "documented but not produced (produce them, or exempt "
                                      "them in EXEMPT with the reason)")
        stale = sorted(set(EXEMPT) - documented())
        self.assertEqual(stale, [], "exempted but not documented")
        self.assertNoProblems()

    def local_answers(self):
        """A server with local execution, the ledger on SQLite (or
        PostgreSQL), open, its receipts signed; another with an allow-list."""
        key = self.path("signing.key")
        self.assertEqual(cli(["keygen", "--out", key]).returncode, 0)
        s = self.server(env={"OPENEXEC_SIGNING_KEY_FILE": key})
        for path in ("/", "/health", "/ready", "/version", "/metrics", "/openapi.json"):
            self.check(s.get(path), path, "GET", 200)
        n = "oa-%s" % uuid.uuid4().hex[:12]
        r = s.execute("echo", {"v": 1}, n)
        self.check(r, "/execute", "POST", 200)
        body = r.json
        self.check(s.execute("echo", {"v": 1}, n), "/execute", "POST", 200)  # replayed
        self.check(s.execute("echo", {"v": 2}, n), "/execute", "POST", 409)
        self.check(s.execute("no-such-action", {}, n + "-u"), "/execute", "POST", 400)
        self.check(s.execute(raw='{"action": "echo", "nonce": '), "/execute", "POST", 422)
        self.check(s.execute(raw='{"action": "echo"}'), "/execute", "POST", 422)
        self.check(s.execute(raw="[1]"), "/execute", "POST", 422)
        self.check(s.post("/receipts/verify", {"exec_id": body["id"], "result": body["result"],
                                               "receipt": body["receipt"]}),
                   "/receipts/verify", "POST", 200)
        self.check(s.post("/receipts/verify", {"exec_id": body["id"]}),
                   "/receipts/verify", "POST", 422)
        # A whole receipt with its proof, and the same with another result.
        r = s.post("/receipts/verify", body)
        self.check(r, "/receipts/verify", "POST", 200)
        self.assertEqual(r.json, {"valid": True})
        r = s.post("/receipts/verify", dict(body, result={"echo": {"v": 9}},
                                             result_json='{"echo": {"v": 9}}'))
        self.check(r, "/receipts/verify", "POST", 200)
        self.assertEqual(r.json, {"valid": False, "reason": "result is not the leaf's"})
        # The answer carries its result twice (result, result_json): one
        # changed alone is refused too.
        r = s.post("/receipts/verify", dict(body, result={"echo": {"v": 9}}))
        self.assertEqual(r.json, {"valid": False,
                                  "reason": "result and result_json differ: not one result"})
        origin = body["proof"]["log_origin"]
        r = s.get("/log/%s/checkpoint" % origin)
        self.check(r, "/log/{origin}/checkpoint", "GET", 200)
        self.assertTrue(r.body.decode().startswith(origin + "\n"), r.body[:200])
        self.check(s.get("/log/openexec/nobody/checkpoint"), "/log/{origin}/checkpoint", "GET",
                   404)
        # Proofs made later from the ledger: in the entry's own checkpoint,
        # in a later tree, and two checkpoints consistent.
        later = s.execute("echo", {"v": 10}, n + "-later").json["proof"]["log_index"] + 1
        proof_path = "/receipts/%s/proof" % body["id"]
        r = s.get(proof_path)
        self.check(r, "/receipts/{id}/proof", "GET", 200)
        self.assertEqual(r.json, body["proof"])
        r = s.get(proof_path + "?size=%d" % later)
        self.check(r, "/receipts/{id}/proof", "GET", 200)
        self.assertIn("\n%d\n" % later, r.json["checkpoint"])
        self.check(s.get(proof_path + "?size=x"), "/receipts/{id}/proof", "GET", 422)
        self.check(s.get(proof_path + "?size=%d" % (later + 1000)), "/receipts/{id}/proof", "GET",
                   404)
        self.check(s.get("/receipts/%s/proof" % ("f" * 36)), "/receipts/{id}/proof", "GET", 404)
        cons = "/log/%s/consistency?from=%d&to=%d" % (origin, body["proof"]["log_index"] + 1,
                                                    later)
        r = s.get(cons)
        self.check(r, "/log/{origin}/consistency", "GET", 200)
        self.assertEqual(r.json["to"]["size"], later)
        self.check(s.get("/log/%s/consistency?from=2" % origin), "/log/{origin}/consistency",
                   "GET", 422)
        self.check(s.get("/log/%s/consistency?from=1&to=%d" % (origin, later + 1000)),
                   "/log/{origin}/consistency", "GET", 404)
        self.check(s.get("/receipts/" + body["id"]), "/receipts/{id}", "GET", 200)
        self.check(s.get("/receipts/" + "f" * 80), "/receipts/{id}", "GET", 404)
        self.check(s.get("/receipts?nonce=" + n), "/receipts", "GET", 200)
        self.check(s.get("/receipts?nonce=nobody"), "/receipts", "GET", 404)
        self.check(s.get("/receipts"), "/receipts", "GET", 400)
        # A stored receipt whose result is not JSON (the ledger edited
        # behind the service's back): 500, not a broken answer.
        bad = "oa-bad-%s" % uuid.uuid4().hex[:12]
        bad_answer = s.execute("echo", {"v": 3}, bad).json
        bad_id, bad_size = bad_answer["id"], bad_answer["proof"]["log_index"] + 1
        self.ledger_update(s, "UPDATE executions SET result_json = '{' WHERE nonce = ?", (bad,))
        self.check(s.get("/receipts/" + bad_id), "/receipts/{id}", "GET", 500)
        self.check(s.get("/receipts?nonce=" + bad), "/receipts", "GET", 500)
        # The row is no longer what was signed: no proof of it.
        self.check(s.get("/receipts/%s/proof" % bad_id), "/receipts/{id}/proof", "GET", 500)
        # A checkpoint deleted from the middle of the log: the others no
        # longer follow one another.
        self.ledger_update(s, "DELETE FROM checkpoints WHERE size = ?", (later,))
        self.check(s.get("/log/%s/consistency?from=1&to=%d" % (origin, bad_size)),
                   "/log/{origin}/consistency", "GET", 500)
        # An allow-list: /health restricted, and 403 for an action not on it.
        a = self.server(env={"OPENEXEC_ALLOWED_ACTIONS": "echo"}, db=self.path("allow.db"))
        self.check(a.get("/health"), "/health", "GET", 200)
        self.check(a.execute("add", {"a": 1}, "oa-not-allowed"), "/execute", "POST", 403)
        # clawshield mode with an HMAC secret and an Ed25519 key: /health
        # with its key id and secret count; executions with an approval id,
        # artifacts refused.
        key, _, pem = ed25519_keypair()
        c = self.server(env={"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_SECRET_KEY": "k" * 32,
                             "CLAWSHIELD_PUBLIC_KEY": pem, "CLAWSHIELD_TENANT_ID": "t1"},
                        db=self.path("clawshield.db"))
        self.check(c.get("/health"), "/health", "GET", 200)
        for art in (hmac_artifact("k" * 32, "t1", "echo", {"c": 1}),
                    ed25519_artifact(key, "t1", "echo", {"c": 1})):
            n = "oa-cs-%s" % uuid.uuid4().hex[:12]
            r = c.execute("echo", {"c": 1}, n, art)
            self.check(r, "/execute", "POST", 200)
            self.check(c.get("/receipts?nonce=" + n), "/receipts", "GET", 200)
        self.check(c.execute("echo", {"c": 1}, "oa-cs-none"), "/execute", "POST", 403)
        self.check(c.execute("echo", {"c": 1}, "oa-cs-bad", dict(art, signature="00")),
                   "/execute", "POST", 403)
        if LEDGER == "sqlite":
            # A ledger deleted under the running service: nothing can be
            # recorded, 500 (and the process still stops cleanly).
            os.remove(c.db)
            self.check(c.execute("echo", {"c": 2}, "oa-cs-gone",
                                 hmac_artifact("k" * 32, "t1", "echo", {"c": 2})),
                       "/execute", "POST", 500)

    def ledger_update(self, s, sql, args):
        if LEDGER == "sqlite":
            import sqlite3
            conn = sqlite3.connect(s.db, timeout=10)
            try:
                with conn:
                    conn.execute(sql, args)
            finally:
                conn.close()
        else:
            import pgcluster
            pgcluster.shared_cluster().query(pg_database_for(s.db), sql.replace("?", "%s"),
                                             tuple(args))

    def generic_answers(self):
        """Answers any documented operation can get before it is routed:
        ambiguous framing (400), an announced body over 1 MiB (413),
        headers too large (431), and a body that does not fit the budget
        of buffered bodies (503: this client address holds 8 MiB less 8
        bytes in eight stalled bodies)."""
        s = self.server(db=self.path("generic.db"))
        ops = [(path, method.upper()) for path, item in DOC["paths"].items() for method in item]
        for path, m in ops:
            target = concrete(path).encode()
            head = b"%s %s HTTP/1.1\r\nHost: x\r\n" % (m.encode(), target)
            self.check(raw(s.port, head + b"Content-Length: 5\r\n"
                                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                       path, m, 400)
            self.check(raw(s.port, head + b"Content-Length: %d\r\n\r\n" % (2 << 20)),
                       path, m, 413)
            self.check(raw(s.port, head + b"X-Big: %s\r\n\r\n" % (b"x" * 40000)), path, m, 431)
        stalled = []
        try:
            for _ in range(8):
                c = socket.create_connection(("127.0.0.1", s.port), timeout=HTTP_TIMEOUT)
                stalled.append(c)
                c.sendall(b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                          % (ONE_MIB, b"x" * (ONE_MIB - 1)))
            s.wait_metric("openexec_http_body_bytes", lambda v: v == 8 * (ONE_MIB - 1))
            for path, m in ops:
                self.check(raw(s.port, b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n"
                                       b"{\"a\": 1}" % (m.encode(), concrete(path).encode())),
                           path, m, 503)
        finally:
            for c in stalled:
                c.close()

    def bridge_answers(self):
        """A bridge without a worker: /execute times out (504); a receipt
        that answers a waiting request with an invalid result is 502 (a
        bridge that checks no proofs: with signed receipts such a receipt
        is refused, test_signed_receipts.py)."""
        b = self.broker()
        w = self.worker(b.bootstrap, args=["--worker", "0", "--bridge-timeout-ms", "1500"])
        self.check(w.execute("echo", {"a": 1}, "oa-nobody"), "/execute", "POST", 504)
        requests = self.reader(b.bootstrap, topic=h.REQUESTS_TOPIC)
        w2 = self.worker(b.bootstrap, args=["--worker", "0", "--bridge-timeout-ms", "30000",
                                            "--signing", "off"])
        answer = {}
        t = threading.Thread(target=lambda: answer.update(
            r=w2.execute("echo", {"v": "x"}, "oa-forged", timeout=60)))
        t.start()
        try:
            requests.wait_for(lambda r: "oa-forged" in r.by_key())
            corr = requests.by_key()["oa-forged"][0].header("openexec.correlation")
            self.assertRegex(corr or "", r"^[0-9a-f]{32}$")
            receipt = {"id": "6f3e5109-03e2-87b5-85d1-a9c98360dc73", "nonce": "oa-forged",
                       "action": "echo", "request_hash": request_hash("echo", {"v": "x"}),
                       "status": "executed", "approved": True, "result": "{not json",
                       "receipt": "0" * 64, "error_code": None, "detail": None,
                       "approval_id": None}
            p = kafka_producer(b.bootstrap)
            p.produce(h.RECEIPTS_TOPIC, json.dumps(receipt).encode(), b"oa-forged",
                      headers=[("openexec.correlation", corr.encode())])
            self.assertEqual(p.flush(10), 0)
        finally:
            t.join(60)
        self.check(answer["r"], "/execute", "POST", 502)

    def unreachable_answers(self):
        """A bridge whose brokers nobody answers: not ready (503)."""
        w = self.worker("127.0.0.1:%d" % free_port(), start=False,
                        args=["-X", "socket.connection.setup.timeout.ms=1000",
                              "-X", "reconnect.backoff.max.ms=200"])
        w.start(wait_ready=False)
        self.check(w.get("/ready"), "/ready", "GET", 503)
        self.check(w.execute("echo", {"a": 1}, "oa-not-ready"), "/execute", "POST", 503)

    # -- (d): nothing answered that is not documented

    def test_every_route_answered_is_documented(self):
        s = self.server()
        # The server's route table, read from its source: a route added
        # there without the document fails here.
        with open(HTTP_SOURCE) as f:
            source = f.read()
        table = set(re.findall(r'\{"(/[^"]*)", "([A-Z]+)", R_\w+\}', source))
        self.assertGreater(len(table), 5, "route table not found in admin-http/http.c")
        for path, method in sorted(table):
            self.assertIn(method.lower(), DOC["paths"].get(path, {}),
                          "%s %s is routed but not documented" % (method, path))
        not_found = resolve(DOC["components"]["responses"]["NotFound"])
        not_allowed = resolve(DOC["components"]["responses"]["MethodNotAllowed"])
        for path, item in DOC["paths"].items():
            target = concrete(path)
            allowed = [m for m in METHODS if m.lower() in item]
            self.assertEqual(len(allowed), 1, path)
            for m in METHODS:
                r = s.request(m, target, body=b"{}" if m != "GET" else None)
                if m in allowed:
                    self.check(r, path, m)
                    continue
                self.assertEqual(r.status, 405, "%s %s: %r" % (m, target, r))
                self.assertEqual(r.header("Allow"), allowed[0])
                self.problems += ["%s %s -> 405: %s" % (m, target, p)
                                  for p in self.answer_problems(r, not_allowed, m)]
            if "GET" in allowed:
                r = s.request("HEAD", target)
                self.assertEqual(r.status, s.get(target).status, "HEAD %s" % target)
                self.assertEqual(r.body, b"")
        # Paths that are not routes (near misses of real ones, and what
        # other services serve) are 404 for every method.
        for target in ("/nope", "/execute/", "/health/", "/healthz", "/openapi", "/openapi.yaml",
                       "/docs", "/redoc", "/receipts/", "/receipts/a/b", "/receipts/verify/x",
                       "/Health", "/v1/execute", "//health", "/metrics/x"):
            for m in METHODS:
                r = s.request(m, target)
                self.assertEqual(r.status, 404, "%s %s: %r" % (m, target, r))
                self.problems += ["%s %s -> 404: %s" % (m, target, p)
                                  for p in self.answer_problems(r, not_found, m)]
        self.assertNoProblems()


if __name__ == "__main__":
    run_tests()
