"""Black-box tests: no secret and no backend text leaves through logs or HTTP
answers (docs/operations.md; docs/protocol.md §7).

A PostgreSQL role whose password libpq reads in unusual spellings (holding
'#' and '?' in the URI's user info, given as a %-encoded `pass%77ord=` key
or as a `password=` query parameter) serves a `--execute local` node; the
database is then stopped. The password appears in no log line, no /ready
body and no /receipts or /execute answer, and the answers name no host,
port, user or database and carry no PostgreSQL text. Receipt keys that
cannot exist (invalid UTF-8, over the limits, not an id) are 404 on both
backends without asking the ledger. /ready follows the ledger in
`--execute local` mode.
"""

import os
import sys
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pgcluster  # noqa: E402
from harness import ServiceTest, cli, execution_id, free_port, run_tests  # noqa: E402

PASSWORD = "Pa#ss?wd"
# What an answer may never carry, besides the names of the test's role,
# database, host and port.
BACKEND_TEXT = ("connection to server", "FATAL", "ERROR:", "postgresql://", "postgres://",
                "sslmode", "Is the server running", "Connection refused", "libpq")


def secret_forms(password):
    """The password as it may appear when printed: raw, %-encoded, and the
    %-encoded query key that names it."""
    return (password, urllib.parse.quote(password, safe=""), "pass%77ord=", "password=P")


def ensure_running(cluster):
    if not cluster.running():
        cluster.restart()


class Secrets(ServiceTest):
    """A password in every spelling libpq accepts stays out of logs and
    answers while the database is up, down and back."""

    def setUp(self):
        super().setUp()
        self.cluster = pgcluster.shared_cluster()
        ensure_running(self.cluster)
        suffix = uuid.uuid4().hex[:10]
        self.role, self.db = "leak_role_" + suffix, "leak_db_" + suffix
        from psycopg2 import sql
        self.cluster.query("postgres", sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(self.role), sql.Literal(PASSWORD)))
        self.cluster.query("postgres", sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(self.db), sql.Identifier(self.role)))

    def tearDown(self):
        try:
            ensure_running(self.cluster)
        finally:
            super().tearDown()

    def names(self):
        """What identifies the backend: host, port, user, database."""
        return ("127.0.0.1", str(self.cluster.port), self.role, self.db)

    def assertClean(self, what, text, answer=False):
        """No form of the password in text; an answer (answer=True) also
        names nothing of the backend and carries none of its text."""
        for s in secret_forms(PASSWORD):
            self.assertNotIn(s, text, "%s shows the password (%r): %r" % (what, s, text[:3000]))
        if answer:
            for s in self.names() + BACKEND_TEXT:
                self.assertNotIn(s, text, "%s carries %r: %r" % (what, s, text))

    def wait_ready(self, s, status, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            r = s.get("/ready")
            if r.status == status or time.monotonic() > deadline:
                return r
            time.sleep(0.2)

    def check_url(self, url):
        """A node on url; the database stops and starts again. Everything
        is collected first and checked at the end: the leaks first, then the
        statuses."""
        s = self.server(args=["--db-url", url])
        self.assertEqual(s.execute("echo", {"n": 1}, "leak-1").status, 200)
        self.assertEqual(s.get("/receipts?nonce=leak-1").status, 200)
        self.assertEqual(self.wait_ready(s, 200).status, 200)
        answers = []
        self.cluster.stop()
        try:
            answers.append(("GET /ready", 503, self.wait_ready(s, 503)))
            for path in ("/receipts?nonce=x", "/receipts?nonce=leak-1",
                         "/receipts/" + execution_id("", "x", "0" * 64)):
                answers.append(("GET " + path, 503, s.get(path)))
            answers.append(("POST /execute", 503, s.execute("echo", {}, "leak-2")))
            answers.append(("GET /metrics", 200, s.get("/metrics")))
            # Clients asking during an outage do not flood the log.
            for _ in range(50):
                s.get("/receipts?nonce=flood")
            # A start while the database is down: exit 1, "cannot connect",
            # the address for the operator, the password nowhere.
            p = cli(["run", "--execute", "local", "--http-port", str(free_port()),
                     "--db-url", url])
        finally:
            self.cluster.restart()
        up = self.wait_ready(s, 200)
        # The writer finds its connection dead on its next batch and
        # reconnects on the one after (test_ledger.py's restart test).
        deadline = time.monotonic() + 30
        while s.execute("echo", {}, "leak-2").status != 200:
            self.assertLess(time.monotonic(), deadline, "no execution after the restart")
            time.sleep(0.2)
        again = s.get("/receipts?nonce=leak-1")
        s.stop()
        log = s.log()
        self.assertClean("the server's log", log)
        self.assertClean("stderr of a start with the database down", p.stdout + p.stderr)
        for what, status, r in answers:
            self.assertClean(what, r.body.decode("utf-8", "replace"), answer=True)
        for what, status, r in answers:
            self.assertEqual(r.status, status, (what, r))
        self.assertEqual(answers[0][2].json, {"ready": False, "reason": "ledger unavailable"})
        for what, status, r in answers[1:4]:
            self.assertEqual(r.json, {"detail": "ledger unavailable"}, what)
        self.assertTrue(answers[4][2].json["detail"].startswith("ledger unavailable"))
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("cannot connect", p.stderr)
        self.assertEqual(up.status, 200, up)
        self.assertEqual(again.status, 200, again)
        # The operator reads what happened, masked: the start-up line and
        # the outage.
        self.assertIn(":***@127.0.0.1:%d/%s" % (self.cluster.port, self.db), log)
        self.assertIn("ledger unavailable", log)
        self.assertIn("ledger available again", log)
        lines = [x for x in log.splitlines()
                 if "component=http" in x and "ledger unavailable" in x]
        self.assertEqual(len(lines), 1, "one line per 30 s: %r" % lines)
        self.assertIn("similar_not_logged=0", lines[0])

    def base(self):
        return "127.0.0.1:%d/%s" % (self.cluster.port, self.db)

    def test_password_with_hash_and_question_mark_in_the_uri(self):
        # libpq's URI parser ends the user info at '@' only: '#' and '?'
        # belong to the password.
        self.check_url("postgresql://%s:%s@%s?sslmode=disable" % (self.role, PASSWORD,
                                                                    self.base()))

    def test_password_as_percent_encoded_query_key(self):
        # pass%77ord is "password" once libpq decodes the key.
        self.check_url("postgresql://%s@%s?sslmode=disable&pass%%77ord=%s" % (
            self.role, self.base(), urllib.parse.quote(PASSWORD, safe="")))

    def test_password_as_query_parameter(self):
        self.check_url("postgres://%s@%s?password=%s&sslmode=disable" % (
            self.role, self.base(), urllib.parse.quote(PASSWORD, safe="")))

    def test_unparsable_url_is_not_quoted(self):
        # libpq's own reason for a bad %-escape quotes the whole password.
        bad = "postgresql://%s:%s%%zz@%s" % (self.role, "Hunter2", self.base())
        for args in (["run", "--execute", "local", "--http-port", str(free_port())],
                     ["ledger", "migrate"], ["ledger", "export"]):
            p = cli(args + ["--db-url", bad])
            self.assertEqual(p.returncode, 1, (args, p.stderr))
            self.assertNotIn("Hunter2", p.stdout + p.stderr)
            self.assertIn("not a connection string libpq can read", p.stderr)


class HostileKeys(ServiceTest):
    """Receipt keys that cannot exist are 404, without the ledger's text."""

    def check(self, s):
        r = s.execute("echo", {}, "caf\u00e9")
        self.assertEqual(r.status, 200, r)
        exec_id = r.json["id"]
        # What exists is found, by nonce (UTF-8, %-encoded) and by id (in
        # either case, below).
        self.assertEqual(s.get("/receipts?nonce=caf%C3%A9").status, 200)
        self.assertEqual(s.get("/receipts/" + exec_id).status, 200)
        for path in ("/receipts?nonce=%ff", "/receipts/%ff", "/receipts?nonce=caf%C3",
                     "/receipts?nonce=%C3%28", "/receipts?nonce=%ED%A0%80",
                     "/receipts?nonce=", "/receipts?nonce=" + "a" * 257,
                     "/receipts/" + "%ff" * 36, "/receipts/not-an-id",
                     "/receipts/" + exec_id[:-1] + "g", "/receipts/" + exec_id + "0",
                     "/receipts/" + exec_id.replace("-", "_")):
            r = s.get(path)
            self.assertDetail(r, 404, equals="Receipt not found")
            body = r.body.decode("utf-8", "replace")
            for t in BACKEND_TEXT + ("UTF8", "encoding", "invalid byte"):
                self.assertNotIn(t, body, path)
        self.assertEqual(s.get("/receipts/" + exec_id.upper()).status, 200)
        # A nonce of exactly 256 bytes is a nonce: looked up, not found.
        self.assertDetail(s.get("/receipts?nonce=" + "a" * 256), 404)

    def test_sqlite(self):
        self.check(self.server())

    def test_postgresql(self):
        cluster = pgcluster.shared_cluster()
        ensure_running(cluster)
        self.check(self.server(args=["--db-url", pgcluster.fresh_database("keys")]))


if __name__ == "__main__":
    run_tests()
