"""Black-box tests of the ledger itself: URLs, schema upgrades, the offline
`ledger show` / `ledger export` commands, and a PostgreSQL ledger shared by
several HTTP-only nodes (`--execute local`).

The nodes here run no Kafka: they are the stateless replicas of README.md
behind a load balancer, racing on one database. The Kafka groups on a
shared ledger are in test_shared_ledger.py.
"""

import hashlib
import os
import re
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pgcluster  # noqa: E402
from harness import (Server, ServiceTest, cli, execution_id, free_port,  # noqa: E402
                     hmac_artifact, receipt_hash, request_hash, result_json, run_tests)

SECRET = "ledger-test-secret"
TENANT = "acme"

# The schema of version 1 exactly as the first release wrote it (SQLite).
SQLITE_V1 = """
CREATE TABLE executions (
  id TEXT PRIMARY KEY, nonce TEXT NOT NULL UNIQUE, action TEXT NOT NULL,
  request_hash TEXT NOT NULL, tenant_id TEXT NOT NULL, approval_id TEXT UNIQUE,
  approved INTEGER NOT NULL, result_json TEXT NOT NULL, receipt TEXT NOT NULL,
  created_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE rejections (
  seq INTEGER PRIMARY KEY, nonce TEXT, action TEXT, request_hash TEXT,
  error_code TEXT NOT NULL, detail TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX rejections_nonce ON rejections(nonce);
PRAGMA user_version = 1;
"""

# Version 1 on PostgreSQL: the same tables, and the version table.
PG_V1 = """
CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at double precision);
INSERT INTO schema_migrations VALUES (1, 0);
CREATE TABLE executions (
  id text PRIMARY KEY, nonce text NOT NULL UNIQUE, action text NOT NULL,
  request_hash text NOT NULL, tenant_id text NOT NULL, approval_id text UNIQUE,
  approved boolean NOT NULL, result_json text NOT NULL, receipt text NOT NULL,
  created_at double precision NOT NULL);
CREATE TABLE rejections (
  seq bigserial PRIMARY KEY, nonce text, action text, request_hash text,
  error_code text NOT NULL, detail text NOT NULL, created_at double precision NOT NULL);
CREATE INDEX rejections_nonce ON rejections(nonce);
"""


def stored_row(nonce, payload):
    """An execution of echo(payload) under nonce, as version 1 stored it."""
    h = request_hash("echo", payload)
    i = execution_id("", nonce, h)
    result = {"echo": payload}
    return (i, nonce, "echo", h, "", None, 1, result_json(result), receipt_hash(i, result),
            1700000000.0)


class Urls(ServiceTest):
    def test_sqlite_url_forms(self):
        # sqlite:///relative.db is relative to the working directory,
        # sqlite:////absolute/path.db absolute (SQLAlchemy's convention).
        cwd = self.path("cwd")
        os.mkdir(cwd)
        s = Server(cwd, env={"OPENEXEC_DB_PATH": None, "OPENEXEC_DB_URL": "sqlite:///rel.db"},
                   flags=False)
        self._servers.append(s)
        s.start()
        self.assertEqual(s.execute("echo", {}, "u-1").status, 200)
        s.stop()
        with sqlite3.connect(os.path.join(cwd, "rel.db")) as c:
            self.assertEqual(c.execute("SELECT nonce FROM executions").fetchall(), [("u-1",)])
        absolute = self.path("abs.db")
        self.assertTrue(absolute.startswith("/"))
        s = self.server(flags=False, env={"OPENEXEC_DB_PATH": None,
                                          "OPENEXEC_DB_URL": "sqlite:///" + absolute})
        self.assertEqual(s.execute("echo", {}, "u-2").status, 200)
        s.stop()
        with sqlite3.connect(absolute) as c:
            self.assertEqual(c.execute("SELECT nonce FROM executions").fetchall(), [("u-2",)])

    def test_postgres_scheme_and_masked_password(self):
        url = pgcluster.fresh_database()
        short = url.replace("postgresql://", "postgres://", 1)
        s = self.server(args=["--db-url", short])
        self.assertEqual(s.execute("echo", {}, "pg-1").status, 200)
        s.stop()
        self.assertIn("postgres://openexec:***@", s.log())
        self.assertNotIn("openexec-pw", s.log())
        # --db and --db-url together: which one is meant is unclear.
        p = cli(["run", "--http-port", "0", "--db", self.path("x.db"), "--db-url", url])
        self.assertEqual(p.returncode, 2, p.stderr)
        # A wrong password is refused at start-up, without showing it.
        bad = url.replace("openexec-pw", "wrong-pw")
        p = cli(["run", "--execute", "local", "--http-port", str(free_port()), "--db-url", bad])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("password authentication failed", p.stderr)
        self.assertNotIn("wrong-pw", p.stderr)


class Migrations(ServiceTest):
    def test_sqlite_version_1_upgraded_in_place(self):
        db = self.path("v1.db")
        with sqlite3.connect(db) as c:
            c.executescript(SQLITE_V1)
            c.execute("INSERT INTO executions (id, nonce, action, request_hash, tenant_id,"
                      " approval_id, approved, result_json, receipt, created_at)"
                      " VALUES (?,?,?,?,?,?,?,?,?,?)", stored_row("old-1", {"v": 1}))
        s = self.server(args=["--db", db])
        r = s.execute("echo", {"v": 1}, "old-1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json.get("status"), "replayed")
        self.assertEqual(r.json["receipt"], stored_row("old-1", {"v": 1})[8])
        # Written before receipts were signed: nothing proves it.
        self.assertNotIn("proof", r.json)
        self.assertEqual(s.execute("echo", {"v": 2}, "old-1").status, 409)
        r = s.execute("echo", {"v": 2}, "new-1")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json["proof"]["log_index"], 1)  # after the 409's rejection
        s.stop()
        with sqlite3.connect(db) as c:
            self.assertEqual(c.execute("PRAGMA user_version").fetchone()[0], 8)
            self.assertEqual([v for (v,) in c.execute(
                "SELECT version FROM schema_migrations ORDER BY version")],
                [1, 2, 3, 4, 5, 6, 7, 8])
            # Version 7: each row's place in the writer's log; the migrated
            # row has none.
            self.assertEqual(c.execute("SELECT nonce, log_index FROM executions ORDER BY seq")
                             .fetchall(), [("old-1", None), ("new-1", 1)])
            self.assertEqual(c.execute("SELECT log_index, error_code FROM rejections")
                             .fetchall(), [(0, "nonce_conflict")])
            self.assertEqual(c.execute("SELECT from_size, size FROM checkpoints ORDER BY size")
                             .fetchall(), [(0, 1), (1, 2)])
            # Version 5: ids indexed by bucket; the migrated row has none.
            self.assertEqual(c.execute("SELECT nonce, id_bucket FROM executions ORDER BY seq")
                             .fetchall(), [("old-1", None), ("new-1", 0)])
            # Version 4: the payload column; the migrated row has none.
            self.assertEqual(c.execute("SELECT nonce, payload FROM executions ORDER BY seq")
                             .fetchall(), [("old-1", None), ("new-1", '{"v":2}')])
            # Version 3: in the order recorded (the migrated row first),
            # with keys the program found them by.
            self.assertEqual([n for (n,) in c.execute(
                "SELECT nonce FROM executions ORDER BY seq")], ["old-1", "new-1"])
            names = {n for (n,) in c.execute("SELECT name FROM sqlite_master")}
            # Version 6: unique indexes on (key, text) in place of the
            # trigger.
            self.assertTrue({"executions_nonce", "executions_id_bucket_key",
                             "executions_approval"} <= names, names)
            for gone in ("executions_unique", "executions_nonce_key", "executions_approval_key"):
                self.assertNotIn(gone, names)
            self.assertNotIn("executions_id_key", names)
            self.assertNotIn("executions_created", names)
            # The keys: the first 8 bytes of SHA-256, big-endian, signed.
            def key(t):
                if t is None:
                    return None
                return int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "big",
                                      signed=True)
            for nonce, nk, i, ik in c.execute("SELECT nonce, nonce_key, id, id_key"
                                              " FROM executions"):
                self.assertEqual((nk, ik), (key(nonce), key(i)), nonce)
            # Nonces and approval ids stay unique in the file itself: a
            # second row with the same key and text is refused by the
            # database (no function of ours is needed for it).
            with self.assertRaisesRegex(sqlite3.DatabaseError,
                                        "UNIQUE constraint failed: executions.nonce"):
                c.execute("INSERT INTO executions (id, nonce, action, request_hash, tenant_id,"
                          " approved, result_json, receipt, created_at, nonce_key, id_key)"
                          " SELECT id || 'x', nonce, action, request_hash, tenant_id, approved,"
                          " result_json, receipt, created_at, nonce_key, id_key"
                          " FROM executions WHERE nonce = 'old-1'")
            c.execute("UPDATE executions SET approval_id = 'a-1', approval_key = ?"
                      " WHERE nonce = 'old-1'", (key("a-1"),))
            with self.assertRaisesRegex(sqlite3.DatabaseError,
                                        "UNIQUE constraint failed: executions.approval_key,"
                                        " executions.approval_id"):
                c.execute("INSERT INTO executions (id, nonce, action, request_hash, tenant_id,"
                          " approved, result_json, receipt, created_at, nonce_key, id_key,"
                          " approval_id, approval_key)"
                          " SELECT id || 'x', 'other', action, request_hash, tenant_id, approved,"
                          " result_json, receipt, created_at, ?, id_key, approval_id,"
                          " approval_key FROM executions WHERE nonce = 'old-1'", (key("other"),))
            c.rollback()
        # Opening it again changes nothing.
        s = self.server(args=["--db", db])
        self.assertEqual(s.execute("echo", {"v": 2}, "new-1").json.get("status"), "replayed")

    def test_sqlite_newer_schema_refused(self):
        db = self.path("v99.db")
        with sqlite3.connect(db) as c:
            c.executescript(SQLITE_V1.replace("user_version = 1", "user_version = 99"))
        p = cli(["run", "--execute", "local", "--http-port", "0", "--db", db])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("newer than this binary", p.stderr)

    def test_postgresql_version_1_upgraded_in_place(self):
        url = pgcluster.fresh_database("v1")
        name = url.rsplit("/", 1)[1].split("?")[0]
        cluster = pgcluster.shared_cluster()
        for stmt in PG_V1.split(";"):
            if stmt.strip():
                cluster.query(name, stmt)
        cluster.query(name, "ALTER TABLE executions OWNER TO openexec")
        cluster.query(name, "ALTER TABLE rejections OWNER TO openexec")
        cluster.query(name, "ALTER TABLE schema_migrations OWNER TO openexec")
        row = list(stored_row("old-1", {"v": 1}))
        row[6] = True
        cluster.query(name, "INSERT INTO executions (id, nonce, action, request_hash, tenant_id,"
                      " approval_id, approved, result_json, receipt, created_at)"
                      " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", tuple(row))
        s = self.server(args=["--db-url", url])
        r = s.execute("echo", {"v": 1}, "old-1")
        self.assertEqual(r.json.get("status"), "replayed", r)
        self.assertEqual(r.json["receipt"], row[8])
        self.assertEqual(s.execute("echo", {"v": 2}, "new-1").status, 200)
        self.assertEqual([v for (v,) in cluster.query(
            name, "SELECT version FROM schema_migrations ORDER BY version")], [1, 2, 3, 4, 5])
        self.assertEqual(sorted(cluster.query(name, "SELECT nonce, payload FROM executions")),
                         [("new-1", '{"v":2}'), ("old-1", None)])
        # Version 4: the receipts logs (no key given: this PostgreSQL
        # writer signs nothing, its rows have no place in a log).
        self.assertEqual(sorted(cluster.query(name, "SELECT nonce, log_index FROM executions")),
                         [("new-1", None), ("old-1", None)])
        self.assertEqual(cluster.query(name, "SELECT count(*) FROM checkpoints"), [(0,)])
        self.assertEqual(cluster.query(
            name, "SELECT count(*) FROM pg_indexes WHERE indexname = 'executions_created'"),
            [(1,)])

    def test_postgresql_newer_schema_refused(self):
        url = pgcluster.fresh_database("v99")
        name = url.rsplit("/", 1)[1].split("?")[0]
        cluster = pgcluster.shared_cluster()
        cluster.query(name, "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                      " applied_at double precision)")
        cluster.query(name, "ALTER TABLE schema_migrations OWNER TO openexec")
        cluster.query(name, "INSERT INTO schema_migrations VALUES (99, 0)")
        p = cli(["run", "--execute", "local", "--http-port", "0", "--db-url", url])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("newer than this binary", p.stderr)

    def test_postgresql_writers_starting_together(self):
        # Four nodes created on one empty database at once: the schema is
        # created once (the advisory lock), every node starts.
        url = pgcluster.fresh_database("race")
        nodes = [self.server(args=["--db-url", url], start=False) for _ in range(4)]
        threads = [threading.Thread(target=n.start) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, n in enumerate(nodes):
            self.assertEqual(n.execute("echo", {}, "start-%d" % i).status, 200, n.log())
        name = url.rsplit("/", 1)[1].split("?")[0]
        self.assertEqual(pgcluster.shared_cluster().query(
            name, "SELECT version FROM schema_migrations ORDER BY version"),
            [(1,), (2,), (3,), (4,), (5,)])


class Inspect(ServiceTest):
    """`openexec ledger show` and `ledger export` (docs/operations.md): offline, read-only,
    JSON lines that an auditor can check (each receipt is the SHA-256 of
    id ":" result_json), on both backends, beside a running node."""

    def fill(self, args):
        """Executions, a replay, a conflict and a malformed body, through a
        running node (left running: the commands read beside it)."""
        s = self.server(args=args)
        bodies = {}
        for i in range(3):
            r = s.execute("add", {"a": i, "b": 10}, "in-%d" % i)
            self.assertEqual(r.status, 200, r)
            bodies["in-%d" % i] = r.json
        self.assertEqual(s.execute("add", {"a": 0, "b": 10}, "in-0").json["status"], "replayed")
        self.assertEqual(s.execute("add", {"a": 5, "b": 10}, "in-0").status, 409)
        self.assertEqual(s.execute("add", {"a": "x"}, "in-bad").status, 400)
        return s, bodies

    def check(self, args):
        import json
        s, bodies = self.fill(args)
        # export: the executions in the order recorded, then the rejections.
        p = cli(["ledger", "export"] + args)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = [json.loads(x) for x in p.stdout.splitlines()]
        execs = [x for x in lines if x["record"] == "execution"]
        rejs = [x for x in lines if x["record"] == "rejection"]
        self.assertEqual([x["record"] for x in lines], ["execution"] * 3 + ["rejection"] * 2)
        self.assertEqual([x["nonce"] for x in execs], ["in-0", "in-1", "in-2"])
        for x in execs:
            body = bodies[x["nonce"]]
            self.assertEqual((x["id"], x["receipt"]), (body["id"], body["receipt"]))
            self.assertEqual(json.loads(x["result_json"]), body["result"])
            # The receipt, checked from the exported line alone.
            self.assertEqual(x["receipt"], hashlib.sha256(
                (x["id"] + ":" + x["result_json"]).encode()).hexdigest())
            self.assertEqual(x["request_hash"], request_hash("add", {"a": int(x["nonce"][3:]),
                                                                     "b": 10}))
            self.assertIs(x["approved"], True)
            self.assertIsNone(x["approval_id"])
            self.assertRegex(x["created_at"], r"^\d{4}-\d\d-\d\dT")
            # The payload, and the request hash checked from the line alone.
            self.assertEqual(x["payload"], {"a": int(x["nonce"][3:]), "b": 10})
            self.assertEqual(x["request_hash"], request_hash(x["action"], x["payload"]))
        self.assertEqual([(x["nonce"], x["error_code"], x["payload"]) for x in rejs],
                         [("in-0", "nonce_conflict", {"a": 5, "b": 10}),
                          ("in-bad", "invalid_request", {"a": "x"})])
        for x in rejs:
            self.assertEqual(x["request_hash"], request_hash(x["action"], x["payload"]))
        self.assertIn("3 executions, 2 rejected attempts", p.stderr)
        # show --nonce: the execution and the rejected attempts of the nonce.
        p = cli(["ledger", "show", "--nonce", "in-0"] + args)
        self.assertEqual(p.returncode, 0, p.stderr)
        shown = [json.loads(x) for x in p.stdout.splitlines()]
        self.assertEqual([(x["record"], x["nonce"]) for x in shown],
                         [("execution", "in-0"), ("rejection", "in-0")])
        self.assertEqual(shown[0], execs[0])
        # show --id: the same execution.
        p = cli(["ledger", "show", "--id", bodies["in-1"]["id"]] + args)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([json.loads(x) for x in p.stdout.splitlines()], [execs[1]])
        # Only rejected attempts: shown, exit 0.
        p = cli(["ledger", "show", "--nonce", "in-bad"] + args)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([json.loads(x)["record"] for x in p.stdout.splitlines()], ["rejection"])
        # Nothing: exit 1 with the reason.
        p = cli(["ledger", "show", "--nonce", "never"] + args)
        self.assertEqual((p.returncode, p.stdout), (1, ""), p.stderr)
        self.assertIn("no execution or rejected attempt with nonce never", p.stderr)
        # Filters: by status, action and time (the records' created_at).
        def exported(*flags):
            p = cli(["ledger", "export"] + list(flags) + args)
            self.assertEqual(p.returncode, 0, p.stderr)
            return [(x["record"], x["nonce"]) for x in map(json.loads, p.stdout.splitlines())]

        self.assertEqual(exported("--status", "executed"),
                         [("execution", n) for n in ("in-0", "in-1", "in-2")])
        self.assertEqual(exported("--status", "rejected"),
                         [("rejection", "in-0"), ("rejection", "in-bad")])
        self.assertEqual(exported("--action", "echo"), [])
        self.assertEqual(len(exported("--action", "add")), 5)
        times = sorted(x["created_at"] for x in lines)
        self.assertEqual(exported("--since", times[0]), exported())
        self.assertEqual(exported("--until", times[0]), [])
        self.assertEqual(exported("--since", "2999-01-01T00:00:00Z"), [])
        later = [x for x in lines if x["created_at"] >= times[-1]]
        self.assertEqual(exported("--since", times[-1]),
                         [(x["record"], x["nonce"]) for x in later])
        p = cli(["ledger", "show", "--nonce", "in-0", "--status", "rejected"] + args)
        self.assertEqual([json.loads(x)["record"] for x in p.stdout.splitlines()], ["rejection"])
        p = cli(["ledger", "show", "--nonce", "in-0", "--action", "echo"] + args)
        self.assertEqual((p.returncode, p.stdout), (1, ""), p.stderr)
        self.assertIn("matching the filters", p.stderr)
        for bad in (["--since", "yesterday"], ["--until", "2026-13-01"], ["--status", "all"]):
            p = cli(["ledger", "export"] + bad + args)
            self.assertEqual(p.returncode, 2, (bad, p.stderr))
            self.assertIn(bad[0], p.stderr)
        # Usage errors: exit 2.
        for bad in (["show"], ["show", "--nonce", "a", "--id", "b"], ["nope"], []):
            p = cli(["ledger"] + bad + args)
            self.assertEqual(p.returncode, 2, (bad, p.stderr))
        self.assertTrue(s.alive())
        return s

    def test_sqlite(self):
        db = self.path("audit.db")
        self.check(["--db", db])
        # Read-only: a missing file is an error, not a new ledger.
        p = cli(["ledger", "export", "--db", self.path("missing.db")])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertFalse(os.path.exists(self.path("missing.db")))

    def test_postgresql(self):
        self.check(["--db-url", pgcluster.fresh_database("audit")])

    def payloads(self, args):
        """OPENEXEC_LEDGER_PAYLOADS: full (the default) keeps each payload,
        canonical, and cuts one longer than 1 MiB keeping the hash of the
        whole; hash keeps none, request_hash only. Exported lines check on
        their own."""
        import json
        full = self.server(args=args)
        # 100,000 emoji: a 400 kB body, 1.2 MB of canonical payload (each
        # escaped as \ud83d\ude00): add ignores it and executes (the row
        # keeps 1 MiB of it); echo's result is too large: rejected (the
        # row keeps 4 KiB: anyone may send rejected requests).
        big = {"s": "\U0001F600" * 100000}
        canon = json.dumps(big, sort_keys=True, separators=(",", ":"))
        self.assertGreater(len(canon), 1 << 20)
        self.assertEqual(full.execute("echo", {"k": "é", "n": [1, 2.5]}, "pl-1").status, 200)
        self.assertEqual(full.execute("echo", {"k": 2}, "pl-1").status, 409)
        for action, nonce, status in (("add", "pl-big-ok", 200), ("echo", "pl-big", 400)):
            body = json.dumps({"action": action, "payload": big, "nonce": nonce},
                              ensure_ascii=False).encode()
            self.assertLess(len(body), 1 << 20)
            self.assertEqual(full.execute(raw=body).status, status)
        self.assertEqual(full.execute(raw=b'{"action": "echo", "payload": {"a": 1}}').status, 422)
        full.stop()
        p = cli(["ledger", "export"] + args)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = [json.loads(x) for x in p.stdout.splitlines()]
        self.assertEqual([(x["record"], x["nonce"]) for x in lines],
                         [("execution", "pl-1"), ("execution", "pl-big-ok"),
                          ("rejection", "pl-1"), ("rejection", "pl-big"), ("rejection", "")])
        ex, cut_ex, conflict, cut, unread = lines
        # One shape: every line has a receipt's fields, the hashed text as
        # result_json and the result as its value; what a rejection has
        # not is null, what the request did not give "".
        fields = {"id", "nonce", "action", "request_hash", "status", "approved", "result",
                  "result_json", "receipt", "error_code", "detail", "approval_id"}
        for x in lines:
            self.assertLessEqual(fields, set(x), x)
        self.assertEqual((ex["status"], json.loads(ex["result_json"]), ex["error_code"]),
                         ("executed", ex["result"], None))
        self.assertEqual((unread["status"], unread["id"], unread["result"], unread["result_json"],
                          unread["receipt"], unread["nonce"], unread["request_hash"]),
                         ("rejected", None, None, None, None, "", ""))
        self.assertEqual(ex["payload"], {"k": "é", "n": [1, 2.5]})
        self.assertEqual(conflict["payload"], {"k": 2})
        for x in (ex, conflict):
            self.assertEqual(x["request_hash"], request_hash("echo", x["payload"]))
        whole = hashlib.sha256(canon.encode()).hexdigest()
        for row, limit, action in ((cut_ex, 1 << 20, "add"), (cut, 4096, "echo")):
            keep = limit - len("...sha256=") - 64
            self.assertEqual(row["payload"], canon[:keep] + "...sha256=" + whole)
            self.assertEqual(row["request_hash"], request_hash(action, big))
        self.assertIsNone(unread["payload"])
        # show prints the same.
        p = cli(["ledger", "show", "--nonce", "pl-1"] + args)
        self.assertEqual([json.loads(x) for x in p.stdout.splitlines()], [ex, conflict])

    def test_payloads_sqlite(self):
        self.payloads(["--db", self.path("payloads.db")])
        self.payloads_hash_only(["--db", self.path("hashed.db")])

    def test_payloads_postgresql(self):
        self.payloads(["--db-url", pgcluster.fresh_database("pl")])
        self.payloads_hash_only(["--db-url", pgcluster.fresh_database("plh")])

    def payloads_hash_only(self, args):
        import json
        for how in (["--ledger-payloads", "hash"], None):
            extra = how or []
            env = {"OPENEXEC_LEDGER_PAYLOADS": "hash"} if how is None else None
            s = self.server(args=args + extra, env=env)
            n = "ph-%d" % (how is None)
            self.assertEqual(s.execute("echo", {"secret": "s3"}, n).status, 200)
            self.assertEqual(s.execute("echo", {"secret": "s4"}, n).status, 409)
            s.stop()
        p = cli(["ledger", "export"] + args)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = [json.loads(x) for x in p.stdout.splitlines()]
        self.assertEqual(len(lines), 4)
        for x in lines:
            self.assertIsNone(x["payload"], x)
            self.assertEqual(x["request_hash"], request_hash(
                "echo", {"secret": "s3" if x["record"] == "execution" else "s4"}))
        # A bad value: exit 2, naming the setting.
        p = cli(["run", "--http-port", "0", "--ledger-payloads", "some"] + args)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--ledger-payloads", p.stderr)

class Replicas(ServiceTest):
    """HTTP-only nodes on one PostgreSQL ledger answer as one node would."""

    def nodes(self, n, clawshield=False):
        url = pgcluster.fresh_database("rep")
        env = {}
        if clawshield:
            env = {"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_SECRET_KEY": SECRET,
                   "CLAWSHIELD_TENANT_ID": TENANT}
        return url, [self.server(env=env, args=["--db-url", url, "--http-threads", "8"])
                     for _ in range(n)]

    def race(self, calls):
        """Runs the calls (functions) at once; their results in order."""
        results = [None] * len(calls)
        barrier = threading.Barrier(len(calls))

        def run(i):
            barrier.wait()
            results[i] = calls[i]()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def test_one_approval_one_execution_across_nodes(self):
        # One artifact presented under 4 nonces on 2 nodes at once, 60
        # times: every time exactly one execution, three "already used".
        url, (a, b) = self.nodes(2, clawshield=True)
        for round_ in range(60):
            art = hmac_artifact(SECRET, TENANT, "echo", {"r": round_})
            calls = [lambda n=n, node=node: node.execute("echo", {"r": round_},
                                                         "ap-%d-%d" % (round_, n), art)
                     for n, node in enumerate([a, b, a, b])]
            got = self.race(calls)
            ok = [r for r in got if r.status == 200]
            self.assertEqual(len(ok), 1, [(r.status, r.body[:100]) for r in got])
            for r in got:
                if r.status != 200:
                    self.assertEqual(r.status, 403, r)
                    self.assertIn("already used", r.json["detail"])
        name = url.rsplit("/", 1)[1].split("?")[0]
        self.assertEqual(pgcluster.shared_cluster().query(
            name, "SELECT count(*), count(DISTINCT approval_id) FROM executions"), [(60, 60)])

    def test_one_nonce_one_execution_across_nodes(self):
        # One nonce sent at once by 4 clients on 2 nodes, two of them with
        # another payload: one execution; the same request is a replay of
        # it, the other a conflict (409), whichever won.
        url, (a, b) = self.nodes(2)
        for round_ in range(60):
            nonce = "n-%d" % round_
            calls = [lambda p=p, node=node: node.execute("add", {"a": p, "b": 0}, nonce)
                     for p, node in ((1, a), (2, b), (1, b), (2, a))]
            got = self.race(calls)
            executed = [r for r in got if r.status == 200 and r.json.get("status") != "replayed"]
            self.assertEqual(len(executed), 1, [(r.status, r.body[:120]) for r in got])
            winner = executed[0].json["result"]["sum"]
            for p, r in zip((1, 2, 1, 2), got):
                if p == winner:
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.json["receipt"], executed[0].json["receipt"])
                else:
                    self.assertEqual(r.status, 409, r)
        name = url.rsplit("/", 1)[1].split("?")[0]
        self.assertEqual(pgcluster.shared_cluster().query(
            name, "SELECT count(*), count(DISTINCT nonce) FROM executions"), [(60, 60)])

    def test_receipts_on_every_node(self):
        url, (a, b) = self.nodes(2)
        r = a.execute("echo", {"x": 1}, "rc-1")
        self.assertEqual(r.status, 200)
        for node in (a, b):
            by_id = node.get("/receipts/" + r.json["id"])
            by_nonce = node.get("/receipts?nonce=rc-1")
            self.assertEqual(by_id.status, 200, by_id)
            self.assertEqual(by_id.json, by_nonce.json)
            self.assertEqual(by_id.json["receipt"], r.json["receipt"])
            self.assertEqual(by_id.json["nonce"], "rc-1")
            self.assertEqual(node.get("/receipts?nonce=none-such").status, 404)

    def test_ledger_restart_is_a_pause_not_an_answer(self):
        # PostgreSQL goes away: requests are answered 503 (no verdict, no
        # record), look-ups 503; when it is back the same node carries on
        # (it reconnects) and nothing was recorded meanwhile.
        url, (a, idle) = self.nodes(2)
        name = url.rsplit("/", 1)[1].split("?")[0]
        cluster = pgcluster.shared_cluster()
        self.assertEqual(a.execute("echo", {}, "before").status, 200)
        self.assertEqual(idle.get("/receipts?nonce=before").status, 200)
        cluster.stop()
        try:
            r = a.execute("echo", {}, "during")
            self.assertEqual(r.status, 503, r)
            self.assertIn("ledger unavailable", r.json["detail"])
            self.assertEqual(a.get("/receipts?nonce=before").status, 503)
        finally:
            cluster.restart()
        deadline = time.monotonic() + 30
        while True:
            r = a.execute("echo", {}, "during")
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json.get("status"), "executed")
        self.assertEqual(a.get("/receipts?nonce=before").status, 200)
        # A node whose connections sat idle through the restart: its first
        # look-up finds the connection dead, reconnects and answers.
        r = idle.get("/receipts?nonce=during")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["receipt"], a.get("/receipts?nonce=during").json["receipt"])
        self.assertEqual(cluster.query(name, "SELECT count(*) FROM executions"), [(2,)])


class Audit(ServiceTest):
    """`openexec ledger audit` (docs/protocol.md §8) on a ledger written over HTTP, on
    both backends: untouched it is intact; each tampering by hand (raw SQL
    on a copy of the ledger) is named, exit 1."""

    WAVES, PER_WAVE = 5, 10  # concurrent requests: some batches of several entries

    def fill(self, args, env=None):
        """About 50 entries through a node: executions sent concurrently,
        and rejections (unknown action, nonce conflict, no nonce). Returns
        (origin, the latest checkpoint as /log/{origin}/checkpoint answers
        it, a receipt's checkpoint from the middle of the log)."""
        s = self.server(args=args, env=env)
        answers = []

        def send(i):
            answers.append(s.execute("add", {"a": i, "b": 1}, "au-%d" % i))

        for wave in range(self.WAVES):
            threads = [threading.Thread(target=send, args=(wave * self.PER_WAVE + k,))
                       for k in range(self.PER_WAVE)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if wave == 1:
                middle = answers[-1].json["proof"]["checkpoint"]
        self.assertEqual(sorted(r.status for r in answers), [200] * len(answers))
        self.assertEqual(s.execute("nope", {}, "au-nope").status, 400)
        self.assertEqual(s.execute("add", {"a": 7, "b": 7}, "au-0").status, 409)
        self.assertEqual(s.execute(raw=b'{"action": "echo", "payload": {}}').status, 422)
        self.assertEqual(s.execute("add", {"a": 0, "b": 1}, "au-0").json["status"], "replayed")
        origin = answers[0].json["proof"]["log_origin"]
        r = s.get("/log/%s/checkpoint" % origin)
        self.assertEqual(r.status, 200, r)
        s.stop()
        return origin, r.body.decode(), middle

    def audit(self, args, *extra):
        p = cli(["ledger", "audit"] + list(extra) + args)
        self.assertNotIn("Sanitizer", p.stderr)
        return p

    def assertProblem(self, p, *words):
        self.assertEqual((p.returncode, p.stdout), (1, ""), p.stderr)
        self.assertTrue(p.stderr.startswith("openexec: ledger audit: "), p.stderr)
        self.assertEqual(p.stderr.count("\n"), 1, p.stderr)
        for w in words:
            self.assertIn(w, p.stderr)

    def check(self, args, query, fresh, copy_sql, env=None):
        """args: the untouched ledger's; query(sql): rows of it; fresh(sql):
        the args of a new copy of it with sql applied; copy_sql(nonce, log_id,
        log_index, created_at, where): the INSERT of a copy of an execution;
        env: the writer's."""
        origin, note, middle = self.fill(args, env)
        size = int(note.split("\n")[1])
        notes = {}
        for name, text in (("latest", note), ("middle", middle)):
            notes[name] = self.path(name + ".note")
            with open(notes[name], "w") as f:
                f.write(text)
        # Untouched: intact, and it holds the checkpoints published.
        t0 = time.monotonic()
        p = self.audit(args)
        took = time.monotonic() - t0
        self.assertEqual(p.returncode, 0, p.stderr)
        m = re.fullmatch(r"log (\S+): (\d+) entries, (\d+) checkpoints, intact\n", p.stdout)
        self.assertTrue(m, p.stdout)
        self.assertEqual((m.group(1), int(m.group(2))), (origin, size))
        self.assertEqual(size, self.WAVES * self.PER_WAVE + 3)
        checkpoints = int(m.group(3))
        print("    audit of %d entries in %d checkpoints (%s): %.0f ms"
              % (size, checkpoints, "SQLite" if args[0] == "--db" else "PostgreSQL", took * 1000))
        p = self.audit(args, "--checkpoint", notes["latest"], "--checkpoint", notes["middle"])
        self.assertEqual((p.returncode, p.stdout), (0, m.group(0)), p.stderr)
        # Batches of two entries or more, for a reordering inside one.
        batches = query("SELECT from_size, size FROM checkpoints ORDER BY size")
        self.assertEqual(len(batches), checkpoints)
        wide = [(f, t) for f, t in batches if t - f >= 2 and len(query(
            "SELECT nonce FROM executions WHERE log_index >= %d AND log_index < %d" % (f, t))) >= 2]
        self.assertTrue(wide, "no batch of two executions among %r" % batches)
        f, t = wide[0]
        (a, ia), (b, ib) = sorted(query("SELECT nonce, log_index FROM executions WHERE log_index"
                                        " >= %d AND log_index < %d" % (f, t)), key=lambda x: x[1])[:2]
        (c, ic), = query("SELECT nonce, log_index FROM executions WHERE nonce = 'au-7'")
        # A row changed.
        self.assertProblem(self.audit(fresh(
            "UPDATE executions SET result_json = '{\"sum\": 99}' WHERE nonce = 'au-7'")),
            "execution nonce au-7, entry %d of log %s was changed after it was signed" % (ic, origin))
        self.assertProblem(self.audit(fresh(
            "UPDATE rejections SET detail = 'fine' WHERE nonce = 'au-nope'")),
            "rejection nonce au-nope, entry", "was changed after it was signed")
        # A row removed.
        self.assertProblem(self.audit(fresh("DELETE FROM executions WHERE nonce = 'au-7'")),
                           "entry %d of log %s has no row: it was removed after it was signed"
                           % (ic, origin))
        # A row inserted: a copy with a new nonce at the same index; one
        # with no log entry recorded after the log began; one before it
        # (written unsigned: counted).
        self.assertProblem(self.audit(fresh(copy_sql("'au-evil'", "log_id", "log_index",
                                                     "created_at", "nonce = 'au-7'"))),
                           "execution nonce au-evil was inserted: a second row at entry %d of "
                           "log %s" % (ic, origin))
        self.assertProblem(self.audit(fresh(copy_sql("'au-late'", "NULL", "NULL",
                                                     "created_at + 10", "nonce = 'au-7'"))),
                           "execution nonce au-late was inserted: it is in no receipts log",
                           "after log %s began" % origin)
        p = self.audit(fresh(copy_sql("'au-old'", "NULL", "NULL", "1000000000",
                                      "nonce = 'au-7'")))
        self.assertEqual((p.returncode, p.stdout), (0, m.group(0) + "unsigned rows: 1\n"),
                         p.stderr)
        # Two rows of one batch swap places; rows of two batches.
        self.assertProblem(self.audit(fresh(
            "UPDATE executions SET log_index = CASE WHEN nonce = '%s' THEN %d ELSE %d END"
            " WHERE nonce IN ('%s', '%s')" % (a, ib, ia, a, b))),
            "execution nonce %s, entry %d of log %s as signed, is at entry %d: rows were "
            "reordered after they were signed" % (b, ib, origin, ia))
        far = [(n, i) for n, i in query("SELECT nonce, log_index FROM executions")
               if not f <= i < t][0]
        lo, hi = sorted([(a, ia), far], key=lambda x: x[1])
        self.assertProblem(self.audit(fresh(
            "UPDATE executions SET log_index = CASE WHEN nonce = '%s' THEN %d ELSE %d END"
            " WHERE nonce IN ('%s', '%s')" % (lo[0], hi[1], lo[1], lo[0], hi[0]))),
            "execution nonce %s, entry %d of log %s was changed" % (hi[0], lo[1], origin))
        # The tail cut off: the last batch's rows and checkpoint deleted. The
        # rest is consistent; the checkpoint published before is not there.
        (last_from,), = query("SELECT from_size FROM checkpoints WHERE size = %d" % size)
        cut = fresh("DELETE FROM executions WHERE log_index >= %d;"
                    " DELETE FROM rejections WHERE log_index >= %d;"
                    " DELETE FROM checkpoints WHERE size = %d" % (last_from, last_from, size))
        p = self.audit(cut)
        self.assertEqual((p.returncode, p.stdout),
                         (0, "log %s: %d entries, %d checkpoints, intact\n"
                          % (origin, last_from, checkpoints - 1)), p.stderr)
        self.assertProblem(self.audit(cut, "--checkpoint", notes["latest"]),
                           "log %s truncated or rewritten: the ledger's log has size %d, the "
                           "checkpoint given (%s) has size %d"
                           % (origin, last_from, notes["latest"], size))
        p = self.audit(cut, "--checkpoint", notes["middle"])
        self.assertEqual(p.returncode, 0, p.stderr)
        # A byte of a checkpoint's signature.
        self.assertProblem(self.audit(fresh(
            "UPDATE checkpoints SET note = substr(note, 1, length(note) - 6) ||"
            " CASE substr(note, length(note) - 5, 1) WHEN 'A' THEN 'B' ELSE 'A' END ||"
            " substr(note, length(note) - 4) WHERE size = %d" % t)),
            "log %s: the checkpoint of size %d does not verify" % (origin, t))
        return origin

    def trusted(self, args, own_key):
        """--trusted-keys: the writer's key passes, another fails naming the
        log."""
        mine, other = self.path("mine.pem"), self.path("other.pem")
        for key, pem in ((own_key, mine), (self.path("other.key"), other)):
            if key != own_key:
                self.assertEqual(cli(["keygen", "--out", key]).returncode, 0)
            p = cli(["keygen", "--public-of", key])
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(pem, "w") as f:
                f.write(p.stdout)
        p = self.audit(args, "--trusted-keys", mine)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertProblem(self.audit(args, "--trusted-keys", other),
                           "which is not among the trusted keys")
        # Usage errors: exit 2.
        for bad in (["--trusted-keys", self.path("missing.pem")],
                    ["--checkpoint", self.path("missing.note")], ["stray"]):
            p = self.audit(args, *bad)
            self.assertEqual(p.returncode, 2, (bad, p.stderr))

    def test_sqlite(self):
        db = self.path("audit.db")
        copies = []

        def query(sql):
            with sqlite3.connect(db) as c:
                return c.execute(sql).fetchall()

        def fresh(sql):
            path = self.path("copy-%d.db" % len(copies))
            copies.append(path)
            src, dst = sqlite3.connect(db), sqlite3.connect(path)
            with dst:
                src.backup(dst)
                dst.executescript(sql)
            src.close()
            dst.close()
            return ["--db", path]

        def copy_sql(nonce, log_id, log_index, created_at, where):
            return ("INSERT INTO executions (id, request_hash, receipt, nonce, action, tenant_id,"
                    " approval_id, result_json, approved, created_at, payload, log_id, log_index,"
                    " nonce_key, id_key, approval_key, id_bucket) SELECT 'f' || substr(id, 2),"
                    " request_hash, receipt, %s, action, tenant_id, approval_id, result_json,"
                    " approved, %s, payload, %s, %s, 42, id_key, approval_key, id_bucket"
                    " FROM executions WHERE %s" % (nonce, created_at, log_id, log_index, where))

        self.check(["--db", db], query, fresh, copy_sql)
        self.trusted(["--db", db], db + ".key")
        # A ledger that never signed: its rows are unsigned, nothing else.
        plain = self.path("plain.db")
        s = self.server(args=["--db", plain, "--signing", "off"])
        self.assertEqual(s.execute("echo", {}, "plain-1").status, 200)
        s.stop()
        p = self.audit(["--db", plain])
        self.assertEqual((p.returncode, p.stdout),
                         (0, "no receipts log in the ledger\nunsigned rows: 1\n"), p.stderr)

    def test_postgresql(self):
        url = pgcluster.fresh_database("aud")
        name = url.rsplit("/", 1)[1].split("?")[0]
        cluster = pgcluster.shared_cluster()
        key = self.path("pg-signing.key")
        self.assertEqual(cli(["keygen", "--out", key]).returncode, 0)
        copies = []

        def query(sql):
            return cluster.query(name, sql)

        def fresh(sql):
            from psycopg2 import sql as q
            copy = "%s_c%d" % (name, len(copies))
            copies.append(copy)
            cluster.query("postgres", q.SQL("CREATE DATABASE {} TEMPLATE {} OWNER openexec")
                          .format(q.Identifier(copy), q.Identifier(name)))
            for stmt in sql.split(";"):
                if stmt.strip():
                    cluster.query(copy, stmt)
            return ["--db-url", cluster.url(copy)]

        def copy_sql(nonce, log_id, log_index, created_at, where):
            return ("INSERT INTO executions (id, request_hash, receipt, nonce, action, tenant_id,"
                    " approval_id, result_json, approved, created_at, payload, log_id, log_index)"
                    " SELECT 'f' || substr(id, 2), request_hash, receipt, %s, action, tenant_id,"
                    " approval_id, result_json, approved, %s, payload, %s, %s FROM executions"
                    " WHERE %s" % (nonce, created_at, log_id, log_index, where))

        self.check(["--db-url", url], query, fresh, copy_sql,
                   env={"OPENEXEC_SIGNING_KEY_FILE": key})
        self.trusted(["--db-url", url], key)


if __name__ == "__main__":
    run_tests()
