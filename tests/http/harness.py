"""Shared helpers for the black-box tests of build/openexec.

Everything here talks to the real binary: it is started as a subprocess on a
free 127.0.0.1 port with its own SQLite file in a temporary directory, and
spoken to with http.client over real sockets. Only the Python standard
library is used, plus `cryptography` (Debian's python3-cryptography) for
Ed25519, imported lazily by the tests that need it.

The reference formulas of docs/protocol.md §3, §5 are written here once, in plain
Python, independently of the C code:

    canonical(obj)        json.dumps(obj, sort_keys=True, separators=(",", ":"))
    request_hash(a, p)    sha256(canonical({"action": a, "payload": p}))
    execution_id(t, n, h) UUIDv8 from sha256("openexec.exec.v1\\0" t "\\0" n "\\0" h)
    receipt_hash(i, r)    sha256(i + ":" + json.dumps(r, sort_keys=True))

run_tests() is a tiny runner: it runs every test_* method of every TestCase
subclass of the calling module (optionally only those whose name contains
one of the command-line arguments), prints each failure with its traceback,
and ends with exactly one line "NAME: N passed, N failed". It exits 1 if
anything failed.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import unittest
import uuid
from datetime import datetime, timedelta, timezone

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.environ.get("OPENEXEC_TEST_BIN", os.path.join(ROOT, "build", "openexec"))

STARTUP_TIMEOUT = 10.0  # seconds until GET /health must answer
STOP_TIMEOUT = 10.0     # seconds a SIGTERM may take
HTTP_TIMEOUT = 15.0     # seconds for one HTTP exchange
CLI_TIMEOUT = 10.0      # seconds for one CLI command

ONE_MIB = 1 << 20

# Variables that would make a test depend on the caller's environment.
_ENV_PREFIXES = ("OPENEXEC_", "CLAWSHIELD_")

# The ledger backend the services under test use: "sqlite" (a file per
# Server) or "postgresql" (a database per Server on one throw-away cluster,
# tests/http/pgcluster.py). tests/run.sh runs the suites with both.
LEDGER = os.environ.get("OPENEXEC_TEST_LEDGER", "sqlite")
if LEDGER not in ("sqlite", "postgresql"):
    raise SystemExit("OPENEXEC_TEST_LEDGER=%s: sqlite or postgresql" % LEDGER)


# ---------------------------------------------------------------------------
# Reference formulas (docs/protocol.md §3, §4, §5), independent of the implementation.

def canonical(obj):
    """docs/protocol.md §3: the canonical JSON text that the request hash is taken of."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def sha256_hex(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def request_hash(action, payload):
    """docs/protocol.md §3."""
    return sha256_hex(canonical({"action": action, "payload": payload}))


def execution_id(tenant, nonce, req_hash):
    """docs/protocol.md §5: the derived UUID (version 8, RFC 4122 variant)."""
    material = (b"openexec.exec.v1\0" + tenant.encode("utf-8") + b"\0" +
                nonce.encode("utf-8") + b"\0" + req_hash.encode("ascii"))
    b = bytearray(hashlib.sha256(material).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x80
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def result_json(result):
    """docs/protocol.md §5: result_json is json.dumps(result, sort_keys=True)."""
    return json.dumps(result, sort_keys=True)


def receipt_hash(exec_id, result):
    """docs/protocol.md §5 (seed-compatible receipt)."""
    return sha256_hex("%s:%s" % (exec_id, result_json(result)))


def iso(dt):
    """An aware datetime as Python's isoformat (e.g. ...+00:00)."""
    return dt.isoformat()


def utc_now():
    return datetime.now(timezone.utc)


def iso_in(seconds):
    """Now + seconds as an aware ISO 8601 time."""
    return iso(utc_now() + timedelta(seconds=seconds))


def hmac_signature(secret, approval_id, action_hash, tenant_id, issued_at):
    """docs/protocol.md §4 (HMAC): hex HMAC-SHA256 over approval_id:action_hash:tenant_id:issued_at."""
    msg = "%s:%s:%s:%s" % (approval_id, action_hash, tenant_id, issued_at)
    return hmac.new(secret.encode("utf-8"), msg.encode("utf-8"), hashlib.sha256).hexdigest()


def hmac_artifact(secret, tenant, action, payload, approval_id=None, issued_at=None,
                  issued_by="clawshield", expires_at=None, action_hash=None):
    """An HMAC approval artifact built entirely in Python."""
    approval_id = approval_id or str(uuid.uuid4())
    issued_at = issued_at if issued_at is not None else iso(utc_now())
    action_hash = action_hash or request_hash(action, payload)
    art = {
        "approval_id": approval_id,
        "action_hash": action_hash,
        "signature": hmac_signature(secret, approval_id, action_hash, tenant, issued_at),
        "issued_by": issued_by,
        "issued_at": issued_at,
        "tenant_id": tenant,
    }
    if expires_at is not None:
        art["expires_at"] = expires_at
    return art


def ed25519_keypair():
    """(private key object, private PEM bytes, public PEM text)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, priv, pub.decode("ascii")


def ed25519_artifact(key, tenant, action, payload, approval_id=None, issued_at=None,
                     expires_at=None, issued_by="clawshield", with_expiry=True):
    """An Ed25519 approval artifact built entirely in Python (docs/protocol.md §4):
    base64 signature over approval_id + tenant_id + action_hash + issued_at
    + expires_at."""
    approval_id = approval_id or str(uuid.uuid4())
    issued_at = issued_at if issued_at is not None else iso(utc_now())
    if expires_at is None and with_expiry:
        expires_at = iso_in(300)
    action_hash = request_hash(action, payload)
    msg = approval_id + tenant + action_hash + issued_at + (expires_at or "")
    art = {
        "approval_id": approval_id,
        "action_hash": action_hash,
        "signature": base64.b64encode(key.sign(msg.encode("utf-8"))).decode("ascii"),
        "issued_by": issued_by,
        "issued_at": issued_at,
        "tenant_id": tenant,
    }
    if with_expiry:
        art["expires_at"] = expires_at
    return art


def is_uuid_v8(s):
    try:
        u = uuid.UUID(s)
    except (ValueError, TypeError, AttributeError):
        return False
    return (str(u) == s and (u.int >> 76) & 0xF == 8 and u.bytes[8] & 0xC0 == 0x80)


# ---------------------------------------------------------------------------
# Processes.

def clean_env(extra=None):
    """The caller's environment without OPENEXEC_* / CLAWSHIELD_*, plus the
    current test's topic and group names on Apache Kafka (names_env()),
    plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
    env.update(names_env())
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def cli(args, env=None, timeout=CLI_TIMEOUT, cwd=None):
    """Runs build/openexec ARGS; returns CompletedProcess (text). A command
    that does not finish in time is killed and reported as a failure."""
    try:
        return subprocess.run([BIN] + list(args), env=clean_env(env), capture_output=True,
                              text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("openexec %s did not finish within %.0f s (stderr: %r)"
                             % (" ".join(args), timeout, e.stderr))


def mint(action, payload, secret=None, tenant=None, ed25519_key=None, approval_id=None,
         issued_at=None, ttl=None, env=None, action_code_hash=None):
    """`openexec mint ...` -> the artifact as a dict."""
    args = ["mint", "--action", action, "--payload", json.dumps(payload)]
    if action_code_hash is not None:
        args += ["--action-code-hash", action_code_hash]
    if secret is not None:
        args += ["--secret", secret]
    if ed25519_key is not None:
        args += ["--ed25519-key", ed25519_key]
    if tenant is not None:
        args += ["--tenant", tenant]
    if approval_id is not None:
        args += ["--approval-id", approval_id]
    if issued_at is not None:
        args += ["--issued-at", issued_at]
    if ttl is not None:
        args += ["--ttl", str(ttl)]
    p = cli(args, env=env)
    if p.returncode != 0:
        raise AssertionError("openexec mint failed (%d): %s" % (p.returncode, p.stderr.strip()))
    try:
        art = json.loads(p.stdout)
    except ValueError:
        raise AssertionError("openexec mint printed no JSON: %r" % p.stdout)
    if not isinstance(art, dict):
        raise AssertionError("openexec mint printed %r, not an object" % p.stdout)
    return art


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.body = body        # bytes
        self._json = None
        self._parsed = False

    @property
    def json(self):
        if not self._parsed:
            self._json = json.loads(self.body.decode("utf-8"))
            self._parsed = True
        return self._json

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        text = self.body[:300].decode("utf-8", "replace")
        return "<HTTP %d %s>" % (self.status, text)


class Server:
    """One `openexec run` process on a free port with its own database."""

    def __init__(self, workdir, env=None, db=None, args=None, flags=True):
        """flags=False passes the port and database in the environment
        (OPENEXEC_HTTP_PORT, OPENEXEC_DB_PATH) instead of as flags."""
        self.workdir = workdir
        self.env = dict(env or {})
        self.db = db or os.path.join(workdir, "x.db")
        self.args = list(args or [])
        self.flags = flags
        self.proc = None
        self.port = None
        self.log_path = None
        self._log = None

    # -- life cycle

    def start(self, wait_ready=True):
        """wait_ready=False (Kafka path only): return once /health answers,
        without waiting for /ready (for tests of the not-ready state)."""
        last = ""
        for attempt in range(5):
            self.port = free_port()
            self.log_path = os.path.join(self.workdir, "server-%d-%d.log"
                                         % (self.port, attempt))
            self._log = open(self.log_path, "wb")
            env = dict(self.env)
            # The HTTP behaviour is tested with in-process execution (fast
            # start); tests of the Kafka path pass OPENEXEC_EXECUTE=kafka.
            env.setdefault("OPENEXEC_EXECUTE", "local")
            # With LEDGER=postgresql the ledger that stands for self.db, unless
            # the test names its own ledger.
            own = ("OPENEXEC_DB_PATH" in env or "OPENEXEC_DB_URL" in env or
                   "--db" in self.args or "--db-url" in self.args)
            pg = LEDGER == "postgresql" and not own
            named = "--db" in self.args or "--db-url" in self.args
            if self.flags:
                argv = [BIN, "run", "--http-port", str(self.port)]
                if not named:
                    argv += ["--db-url", ledger_url(self.db)] if pg else ["--db", self.db]
            else:
                argv = [BIN, "run"]
                env["OPENEXEC_HTTP_PORT"] = str(self.port)
                if pg:
                    env["OPENEXEC_DB_URL"] = ledger_url(self.db)
                elif not named:
                    env.setdefault("OPENEXEC_DB_PATH", self.db)
            self.proc = subprocess.Popen(
                argv + self.args,
                env=clean_env(env), stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    r = self.request("GET", "/health", timeout=1.0)
                    if r.status == 200:
                        if env["OPENEXEC_EXECUTE"] == "kafka" and wait_ready:
                            return self.wait_ready(deadline + 20)
                        return self
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.02)
            last = self.log()
            if self.proc.poll() is None:
                self._kill()
                raise AssertionError("openexec run: /health did not answer within %.0f s; "
                                     "log: %s" % (STARTUP_TIMEOUT, last))
            self._log.close()
            if "in use" not in last and "listen" not in last:
                break  # a real start-up failure, not a port race
        raise AssertionError("openexec run exited with status %s during start-up; log: %s"
                             % (self.proc.returncode, last))

    def wait_ready(self, deadline):
        """Waits for /ready (the worker has its partitions: a group join on
        an embedded `openexec broker` takes about 3 s)."""
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/ready", timeout=1.0).status == 200:
                    return self
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise AssertionError("openexec run: /ready did not answer 200; log: %s" % self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._log:
            self._log.close()

    def stop(self, sig=signal.SIGTERM):
        """SIGTERM (or sig), wait; the service must exit 0."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self._log.close()
                raise AssertionError("openexec run did not stop within %.0f s of SIGTERM; "
                                     "the end of its log:\n%s"
                                     % (STOP_TIMEOUT, self.log()[-3000:]))
        self._log.close()
        if proc.returncode != 0:
            raise AssertionError("openexec run exited with status %d after SIGTERM; log: %s"
                                 % (proc.returncode, self.log()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL: a crash at whatever instant the process is in. Afterwards
        the server counts as stopped (stop() does nothing). Returns the
        exit status (-9)."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if self._log:
            self._log.close()
        return proc.returncode

    # -- HTTP

    def request(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT):
        """One request on a fresh connection. body: bytes, str, or a JSON
        value (dict/list) that is serialised with json.dumps."""
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        hdrs = {}
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def execute(self, action=None, payload=None, nonce=None, artifact=None, raw=None,
                timeout=HTTP_TIMEOUT, **extra):
        """POST /execute. raw: the exact body; else built from the fields
        (fields left None are omitted; extra keyword arguments are added as
        top-level fields)."""
        if raw is not None:
            return self.post("/execute", raw, timeout=timeout)
        req = {}
        if action is not None:
            req["action"] = action
        if payload is not None:
            req["payload"] = payload
        if nonce is not None:
            req["nonce"] = nonce
        if artifact is not None:
            req["approval_artifact"] = artifact
        req.update(extra)
        return self.post("/execute", req, timeout=timeout)

    def metrics(self):
        """GET /metrics parsed into {"name{labels}": float}."""
        r = self.get("/metrics")
        if r.status != 200:
            raise AssertionError("GET /metrics: %r" % r)
        out = {}
        for line in r.body.decode("utf-8").splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
        return out

    def wait_metric(self, name, predicate, timeout=30.0):
        """Polls /metrics until predicate(value of name) holds and returns
        the value; AssertionError with the last value after timeout. For
        counters a worker updates after the effect a test can see (e.g.
        after the receipts are published and the offsets committed)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.metrics().get(name)
            if value is not None and predicate(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError("%s: still %r after %.0f s" % (name, value, timeout))
            time.sleep(0.05)


def raw_http(port, data_chunks, timeout=HTTP_TIMEOUT, full=False):
    """Sends raw bytes (an iterable of chunks) on one connection and reads
    the answer until the server closes or a full response has arrived.
    Returns (status, body bytes), or with full a Response (headers too).
    Errors while sending (the server may answer and close early, e.g. 413)
    are tolerated."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        for chunk in data_chunks:
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        buf = b""
        while True:
            try:
                part = s.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            buf += part
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep:
                m = [l for l in head.split(b"\r\n")[1:] if l.lower().startswith(b"content-length:")]
                if m and len(rest) >= int(m[0].split(b":", 1)[1]):
                    break
    finally:
        s.close()
    if not buf.startswith(b"HTTP/1."):
        raise AssertionError("no HTTP response (got %r)" % buf[:200])
    status = int(buf.split(b" ", 2)[1])
    head, _, body = buf.partition(b"\r\n\r\n")
    if full:
        lines = head.decode("latin-1").split("\r\n")[1:]
        return Response(status, {k.strip().lower(): v.strip()
                                 for k, _, v in (x.partition(":") for x in lines)}, body)
    return status, body


# ---------------------------------------------------------------------------
# Test base class and runner.

class ServiceTest(unittest.TestCase):
    """Gives each test a temporary directory and stops every server it
    started (asserting exit status 0) when the test ends."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="openexec-test-")
        self._servers = []

    def tearDown(self):
        errors = []
        for s in self._servers:
            try:
                s.stop()
            except AssertionError as e:
                errors.append(str(e))
            except Exception as e:  # pragma: no cover - defensive
                errors.append(repr(e))
                s._kill()
        self._servers = []
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise AssertionError("; ".join(errors))

    def server(self, env=None, db=None, args=None, start=True, flags=True):
        s = Server(self.tmp, env=env, db=db, args=args, flags=flags)
        self._servers.append(s)
        if start:
            s.start()
        return s

    def path(self, name):
        return os.path.join(self.tmp, name)

    # -- assertions shared by the files

    def assertStatus(self, r, status, msg=None):
        if r.status != status:
            self.fail("expected HTTP %d, got %r%s" % (status, r, (": " + msg) if msg else ""))

    def assertJSONType(self, r):
        ct = r.header("Content-Type") or ""
        self.assertTrue(ct.startswith("application/json"),
                        "Content-Type %r is not application/json" % ct)

    def assertDetail(self, r, status, contains=None, equals=None):
        self.assertStatus(r, status)
        self.assertJSONType(r)
        body = r.json
        self.assertIsInstance(body, dict, r)
        self.assertIn("detail", body, r)
        self.assertIsInstance(body["detail"], str, r)
        if contains is not None:
            self.assertIn(contains, body["detail"], r)
        if equals is not None:
            self.assertEqual(body["detail"], equals, r)
        return body["detail"]

    def assertExecuted(self, r, action, payload, nonce, tenant="", result=None,
                       status="executed"):
        """200 with the docs/protocol.md §7 shape; id and receipt follow docs/protocol.md §5 as
        computed in Python. Returns the body."""
        self.assertStatus(r, 200)
        self.assertJSONType(r)
        body = r.json
        for k in ("id", "action", "result", "approved", "receipt"):
            self.assertIn(k, body, r)
        self.assertEqual(body["action"], action)
        self.assertIs(body["approved"], True)
        self.assertTrue(is_uuid_v8(body["id"]), "id %r is not a version 8 UUID" % body["id"])
        self.assertEqual(body["id"], execution_id(tenant, nonce, request_hash(action, payload)),
                         "execution id differs from the docs/protocol.md §5 derivation")
        if result is not None:
            self.assertEqual(canonical(body["result"]), canonical(result))
        self.assertEqual(body["receipt"], receipt_hash(body["id"], body["result"]),
                         "receipt is not sha256(id:json.dumps(result, sort_keys=True))")
        if status is not None and "status" in body:
            self.assertEqual(body["status"], status, r)
        return body


def _log_tails(test, lines=20, width=400):
    """The last lines of the log of every process the failed test started
    (servers, workers, brokers): what CI output keeps of them."""
    out = []
    for proc in getattr(test, "_servers", []) + getattr(test, "_brokers", []):
        log = getattr(proc, "log", None)
        if not callable(log):
            continue
        try:
            text = log()
        except Exception as e:  # pragma: no cover - defensive
            text = "(log unreadable: %r)" % e
        tail = [x[:width] for x in text.splitlines()[-lines:]]
        out.append("log of %s %s, last %d lines:\n  %s"
                   % (type(proc).__name__, getattr(getattr(proc, "proc", None), "pid", "?"),
                      len(tail), "\n  ".join(tail) or "(empty)"))
    return "\n".join(out) + "\n" if out else ""


def run_tests(module_name=None):
    """Runs the test methods of the calling module's TestCase classes."""
    mod = sys.modules[module_name or "__main__"]
    name = os.path.splitext(os.path.basename(mod.__file__))[0]
    filters = sys.argv[1:]
    cases = []
    for obj in vars(mod).values():
        if isinstance(obj, type) and issubclass(obj, unittest.TestCase) and obj.__module__ == mod.__name__:
            for m in sorted(dir(obj)):
                if m.startswith("test_") and callable(getattr(obj, m)):
                    full = "%s.%s" % (obj.__name__, m)
                    if not filters or any(f in full for f in filters):
                        cases.append((obj, m, full))
    passed = failed = 0
    t_all = time.monotonic()
    for cls, m, full in cases:
        why = getattr(getattr(cls, m), "embedded_only", None)
        if why and BROKER == "kafka":
            # Named, not counted: what the test needs exists only in the
            # embedded broker; the same file runs it there.
            print("n/a  %s (embedded broker only: %s)" % (full, why))
            continue
        why = getattr(getattr(cls, m), "kafka_only", None)
        if why and BROKER != "kafka":
            # Likewise, the other way round: run with OPENEXEC_TEST_BROKER=kafka.
            print("n/a  %s (Apache Kafka only: %s)" % (full, why))
            continue
        t0 = time.monotonic()
        errors = []
        test = cls(m)
        try:
            test.setUp()
        except Exception:
            errors.append(traceback.format_exc())
        else:
            try:
                getattr(test, m)()
            except unittest.SkipTest as e:
                errors.append("skipped: %s (a skip counts as a failure)\n" % e)
            except Exception:
                errors.append(traceback.format_exc())
                errors.append(_log_tails(test))  # before tearDown removes them
            try:
                test.tearDown()
            except Exception:
                errors.append(traceback.format_exc())
        dt = time.monotonic() - t0
        if errors:
            failed += 1
            print("FAIL %s (%.2fs)" % (full, dt))
            for e in errors:
                if e:
                    print("    " + e.rstrip().replace("\n", "\n    "))
        else:
            passed += 1
            print("ok   %s (%.2fs)" % (full, dt))
        sys.stdout.flush()
    if not cases:
        failed += 1
        print("no tests selected")
    print("(%.1f s)" % (time.monotonic() - t_all))
    print("%s: %d passed, %d failed" % (name, passed, failed))
    sys.stdout.flush()
    sys.exit(1 if failed else 0)


# ---------------------------------------------------------------------------
# The Kafka path: a standalone broker, producers, topic readers, receipt
# decoding. confluent_kafka (python3-confluent-kafka) and avro (python3-avro,
# through tests/codec/avro_interop.py) are imported lazily, so the HTTP-only
# tests need neither.

REQUESTS_TOPIC = "openexec.requests"
RECEIPTS_TOPIC = "openexec.receipts"
DLQ_TOPIC = "openexec.requests.dlq"
GROUP_ID = "openexec-workers"
KAFKA_TIMEOUT = 30.0  # seconds for one Kafka round trip in a test

# The broker the Kafka suites run against: "embedded" (a fresh `openexec
# broker`, librdkafka's mock cluster, per KafkaTest.broker()) or "kafka"
# (Apache Kafka: one KRaft node shared by the whole run, started by
# tests/run.sh or on first use, tests/http/kafkacluster.py). On Kafka each
# KafkaTest.broker() creates topics of its own with `openexec topics`, and
# the names above (and the group) are switched to them for that test: read
# them as harness.REQUESTS_TOPIC etc. at call time. tests/run.sh runs the
# Kafka suites with both.
BROKER = os.environ.get("OPENEXEC_TEST_BROKER", "embedded")
if BROKER not in ("embedded", "kafka"):
    raise SystemExit("OPENEXEC_TEST_BROKER=%s: embedded or kafka" % BROKER)
_DEFAULT_NAMES = (REQUESTS_TOPIC, RECEIPTS_TOPIC, DLQ_TOPIC, GROUP_ID)


def embedded_only(why):
    """Marks a Kafka test that needs the embedded broker (e.g. its silent
    retention drop, or `run` without --brokers): with
    OPENEXEC_TEST_BROKER=kafka, run_tests lists it with the reason and does
    not run it."""
    def mark(f):
        f.embedded_only = why
        return f
    return mark


def kafka_only(why):
    """Marks a Kafka test that needs Apache Kafka (e.g. a client that the
    embedded broker cannot serve): on the embedded broker, run_tests lists
    it with the reason and does not run it."""
    def mark(f):
        f.kafka_only = why
        return f
    return mark


def _set_names(requests, receipts, dlq, group):
    global REQUESTS_TOPIC, RECEIPTS_TOPIC, DLQ_TOPIC, GROUP_ID
    REQUESTS_TOPIC, RECEIPTS_TOPIC, DLQ_TOPIC, GROUP_ID = requests, receipts, dlq, group


def names_env():
    """The topic and group variables of the current test's names (empty
    while they are the defaults)."""
    if (REQUESTS_TOPIC, RECEIPTS_TOPIC, DLQ_TOPIC, GROUP_ID) == _DEFAULT_NAMES:
        return {}
    return {"OPENEXEC_REQUESTS_TOPIC": REQUESTS_TOPIC, "OPENEXEC_RECEIPTS_TOPIC": RECEIPTS_TOPIC,
            "OPENEXEC_DLQ_TOPIC": DLQ_TOPIC, "OPENEXEC_GROUP_ID": GROUP_ID}


class RealKafkaTopics:
    """KafkaTest.broker() on Apache Kafka: fresh topics (`openexec topics
    --partitions N`) on the shared cluster, named after a random prefix, and
    a group of the same prefix; bootstrap is the cluster's."""

    def __init__(self, partitions):
        from kafkacluster import shared_cluster
        self.bootstrap = shared_cluster().bootstrap
        self.partitions = partitions
        prefix = "t%s" % uuid.uuid4().hex[:10]
        self.names = (prefix + ".requests", prefix + ".receipts", prefix + ".requests.dlq",
                      prefix + "-workers")

    def start(self):
        p = subprocess.run([BIN, "topics", "--brokers", self.bootstrap, "--partitions",
                            str(self.partitions), "--replication-factor", "1",
                            "--requests-topic", self.names[0], "--receipts-topic", self.names[1],
                            "--dlq-topic", self.names[2]], env=clean_env(),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError("openexec topics failed (%d): %s"
                                 % (p.returncode, p.stderr.decode("utf-8", "replace")))
        _set_names(*self.names)
        return self

    def stop(self):
        pass

    def kill(self):
        pass

_CODEC_TESTS = os.path.join(ROOT, "tests", "codec")


def avro_interop():
    """tests/codec/avro_interop.py: python3-avro with the schemas of
    schemas/, their canonical forms and CRC-64-AVRO fingerprints computed
    in Python."""
    if _CODEC_TESTS not in sys.path:
        sys.path.insert(0, _CODEC_TESTS)
    import avro_interop as ai  # noqa: E402
    return ai


class Broker:
    """One `openexec broker --partitions N` process (librdkafka's mock
    cluster). start() waits for the `bootstrap.servers=HOST:PORT` line on
    stdout and checks that --bootstrap-file holds the same address."""

    def __init__(self, workdir, partitions=4, args=None, env=None):
        self.workdir = workdir
        self.partitions = partitions
        self.args = list(args or [])
        self.env = dict(env or {})
        self.proc = None
        self.bootstrap = None
        self.file = os.path.join(workdir, "bootstrap-%d.txt" % id(self))
        self.log_path = os.path.join(workdir, "broker-%d.log" % id(self))
        self._log = None

    def start(self, timeout=STARTUP_TIMEOUT):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [BIN, "broker", "--partitions", str(self.partitions), "--bootstrap-file", self.file]
            + self.args, env=clean_env(self.env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self._log, cwd=self.workdir)
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        import select
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                raise AssertionError("openexec broker printed no bootstrap line within %.0f s "
                                     "(stdout %r, stderr %s)" % (timeout, buf, self.log()))
            r, _, _ = select.select([fd], [], [], min(left, 0.2))
            if r:
                part = os.read(fd, 4096)
                if not part:
                    continue
                buf += part
        line = buf.split(b"\n", 1)[0].decode("utf-8")
        if not line.startswith("bootstrap.servers="):
            self.kill()
            raise AssertionError("openexec broker printed %r, not bootstrap.servers=..." % line)
        self.bootstrap = line[len("bootstrap.servers="):]
        if not self.bootstrap or not self.bootstrap.startswith("127.0.0.1:"):
            self.kill()
            raise AssertionError("unexpected bootstrap address %r" % self.bootstrap)
        # The file may be written just after the line is printed.
        while not os.path.exists(self.file) and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            with open(self.file, encoding="utf-8") as f:
                written = f.read().strip()
        except OSError as e:
            self.kill()
            raise AssertionError("--bootstrap-file %s: %s" % (self.file, e))
        if written != self.bootstrap:
            self.kill()
            raise AssertionError("--bootstrap-file holds %r, stdout said %r"
                                 % (written, self.bootstrap))
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self):
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if self._log:
            self._log.close()
            self._log = None

    def stop(self):
        """SIGTERM; the broker must exit 0."""
        if self.proc is None:
            return
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc = None
                raise AssertionError("openexec broker did not stop within %.0f s of SIGTERM"
                                     % STOP_TIMEOUT)
        self._close()
        self.proc = None
        if proc.returncode != 0:
            raise AssertionError("openexec broker exited with status %d; log: %s"
                                 % (proc.returncode, self.log()))


def embedded_bootstrap(server, timeout=STARTUP_TIMEOUT):
    """The address `openexec run` without --brokers prints on stderr."""
    import re
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(r"embedded broker\"? bootstrap\.servers=(\S+)", server.log())
        if m:
            return m.group(1)
        if time.monotonic() > deadline:
            raise AssertionError("no 'embedded broker ... bootstrap.servers=' line in the log: %s"
                                 % server.log())
        time.sleep(0.05)


class KMsg:
    """One consumed Kafka message."""
    __slots__ = ("topic", "partition", "offset", "key", "value", "headers", "timestamp")

    def __init__(self, m):
        self.topic = m.topic()
        self.partition = m.partition()
        self.offset = m.offset()
        self.key = m.key()
        self.value = m.value()
        self.headers = {k: v for k, v in (m.headers() or [])}
        self.timestamp = m.timestamp()[1]  # ms

    @property
    def skey(self):
        return None if self.key is None else self.key.decode("utf-8")

    def header(self, name):
        v = self.headers.get(name)
        return None if v is None else v.decode("utf-8")

    def __repr__(self):
        return "<%s[%d]@%d key=%r value=%r headers=%r>" % (
            self.topic, self.partition, self.offset, self.key, self.value[:80] if self.value else
            self.value, self.headers)


def kafka_producer(bootstrap, **conf):
    import confluent_kafka
    c = {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True,
         "acks": "all"}
    c.update(conf)
    return confluent_kafka.Producer(c)


def produce(bootstrap, messages, topic=None, timeout=KAFKA_TIMEOUT, producer=None):
    """Publishes (key, value[, headers]) tuples with confluent_kafka and
    waits until the broker acknowledged all of them. Returns their
    (partition, offset) in order; a failed delivery is an AssertionError."""
    topic = topic or REQUESTS_TOPIC
    p = producer or kafka_producer(bootstrap)
    results = []
    errors = []

    def report(i):
        def cb(err, msg):
            if err is not None:
                errors.append("message %d: %s" % (i, err))
            else:
                results[i] = (msg.partition(), msg.offset())
        return cb

    for i, m in enumerate(messages):
        key, value = m[0], m[1]
        headers = m[2] if len(m) > 2 else None
        if isinstance(key, str):
            key = key.encode("utf-8")
        if isinstance(value, str):
            value = value.encode("utf-8")
        results.append(None)
        while True:
            try:
                if headers:
                    p.produce(topic, value, key, on_delivery=report(i), headers=headers)
                else:
                    p.produce(topic, value, key, on_delivery=report(i))
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(timeout)
    if left or errors:
        raise AssertionError("produce to %s: %d not delivered, errors %s"
                             % (topic, left, errors[:5]))
    return results


def kcat_produce(bootstrap, key, value, topic=None, tmpdir=None):
    """Publishes one message with kcat (`kcat -P -b B -t T -k KEY FILE`;
    a file argument is sent as one message, bytes unchanged)."""
    topic = topic or REQUESTS_TOPIC
    if isinstance(value, str):
        value = value.encode("utf-8")
    fd, path = tempfile.mkstemp(dir=tmpdir, prefix="kcat-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        args = ["kcat", "-P", "-b", bootstrap, "-t", topic]
        if key is not None:
            args += ["-k", key]
        p = subprocess.run(args + [path], capture_output=True, timeout=KAFKA_TIMEOUT)
        if p.returncode != 0:
            raise AssertionError("kcat -P failed (%d): %s" % (p.returncode, p.stderr.decode()))
    finally:
        os.unlink(path)


class TopicReader:
    """Reads every partition of a topic from the beginning (no consumer
    group, nothing committed) and keeps every message, in arrival order."""

    def __init__(self, bootstrap, topic, **conf):
        import confluent_kafka
        self.topic = topic
        c = {"bootstrap.servers": bootstrap, "group.id": "openexec-test-reader-%d" % id(self),
             "enable.auto.commit": False, "enable.partition.eof": False,
             "fetch.wait.max.ms": 10, "isolation.level": "read_uncommitted"}
        c.update(conf)
        self.consumer = confluent_kafka.Consumer(c)
        md = self.consumer.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            self.consumer.close()
            raise AssertionError("topic %s: %s" % (topic, t.error if t else "missing"))
        self.partitions = sorted(t.partitions)
        self.consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                              for p in self.partitions])
        self.messages = []

    def poll(self, timeout=0.1, max_messages=10000):
        """Reads what is there (waiting up to timeout for the first);
        returns the new messages."""
        new = []
        batch = self.consumer.consume(max_messages, timeout)
        while batch:
            for m in batch:
                if m.error():
                    continue
                new.append(KMsg(m))
            if len(batch) < max_messages:
                break
            batch = self.consumer.consume(max_messages, 0)
        self.messages.extend(new)
        return new

    def wait_for(self, predicate, timeout=KAFKA_TIMEOUT, what="messages"):
        """Polls until predicate(self) is true; AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError("%s: not there after %.0f s (%d messages on %s)"
                                     % (what, timeout, len(self.messages), self.topic))
            self.poll(0.1)
        return self

    def wait_count(self, n, timeout=KAFKA_TIMEOUT):
        return self.wait_for(lambda r: len(r.messages) >= n, timeout,
                             "%d messages on %s" % (n, self.topic))

    def by_key(self):
        out = {}
        for m in self.messages:
            out.setdefault(m.skey, []).append(m)
        return out

    def close(self):
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None


_REC_READER = None


def decode_receipt(value):
    """A receipt message's bytes -> dict. JSON (first byte '{') or Avro
    single-object encoding: the C3 01 header and the 8-byte little-endian
    CRC-64-AVRO fingerprint of schemas/receipt.avsc's Parsing Canonical
    Form, both computed in Python, then a body python3-avro reads to its
    last byte."""
    if value[:1] == b"{":
        obj = json.loads(value.decode("utf-8"))
        if not isinstance(obj, dict):
            raise AssertionError("JSON receipt is not an object: %r" % value[:200])
        return obj
    global _REC_READER
    ai = avro_interop()
    import io
    import struct
    import avro.io
    if len(value) < 10 or value[:2] != b"\xc3\x01":
        raise AssertionError("receipt is neither JSON nor Avro single-object: %r" % value[:40])
    (fp,) = struct.unpack("<Q", value[2:10])
    if fp != ai.REC_FP:
        raise AssertionError("receipt fingerprint %016x, expected %016x (CRC-64-AVRO of %s)"
                             % (fp, ai.REC_FP, ai.REC_CANONICAL))
    if _REC_READER is None:
        _REC_READER = avro.io.DatumReader(ai.REC_SCHEMA)
    body = io.BytesIO(value[10:])
    datum = _REC_READER.read(avro.io.BinaryDecoder(body))
    if body.tell() != len(value) - 10:
        raise AssertionError("receipt has %d trailing bytes" % (len(value) - 10 - body.tell()))
    return datum


def avro_request(action, payload, nonce, artifact=None, payload_text=None):
    """An execution request in Avro single-object encoding, written by
    python3-avro from schemas/execution_request.avsc (payload as JSON
    text)."""
    ai = avro_interop()
    if payload_text is None:
        payload_text = json.dumps(payload)
    datum = {"action": action, "payload": payload_text, "nonce": nonce,
             "approval_artifact": artifact}
    if artifact is not None:
        datum["approval_artifact"] = dict(artifact)
        datum["approval_artifact"].setdefault("expires_at", None)
    return ai.single_object(ai.REQ_FP, ai.REQ_SCHEMA, datum)


def committed_offsets(bootstrap, group=None, topic=None):
    """{partition: committed offset} of a consumer group (OffsetFetch, no
    group join); partitions without a commit are left out."""
    import confluent_kafka
    group = group or GROUP_ID
    topic = topic or REQUESTS_TOPIC
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        res = c.committed([confluent_kafka.TopicPartition(topic, p) for p in parts], timeout=10)
    finally:
        c.close()
    out = {}
    for tp in res:
        if tp.error is not None:
            raise AssertionError("committed offset of %s[%d]: %s" % (topic, tp.partition, tp.error))
        if tp.offset >= 0:
            out[tp.partition] = tp.offset
    return out


def sqlite_query(db, sql, args=()):
    """Rows of a read-only query on a service's SQLite file."""
    import sqlite3
    conn = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def pg_database_for(db):
    """The PostgreSQL database that stands for the SQLite path db when
    LEDGER is postgresql: named after the path, so that a Server restarted
    on the same path finds its ledger again. Created on first use."""
    import pgcluster
    name = "l" + sha256_hex(os.path.abspath(db))[:20]
    pgcluster.shared_cluster().create_database(name)
    return name


def ledger_url(db):
    """The URL of the ledger that stands for path db in this run."""
    import pgcluster
    return pgcluster.shared_cluster().url(pg_database_for(db))


def ledger_query(db, sql, args=()):
    """Rows of a query on the ledger of the Server whose database path is
    db, whatever the backend (write ? for parameters)."""
    if LEDGER == "sqlite":
        return sqlite_query(db, sql, args)
    import pgcluster
    rows = pgcluster.shared_cluster().query(pg_database_for(db), sql.replace("?", "%s"),
                                            tuple(args))
    return [tuple(r) for r in rows]


class KafkaTest(ServiceTest):
    """ServiceTest plus standalone brokers, stopped after the servers."""

    def setUp(self):
        super().setUp()
        self._brokers = []
        self._readers = []
        _set_names(*_DEFAULT_NAMES)


    def tearDown(self):
        errors = []
        for r in self._readers:
            try:
                r.close()
            except Exception as e:  # pragma: no cover - defensive
                errors.append(repr(e))
        self._readers = []
        # Servers first (a worker drains against a live broker), then the
        # brokers, then the directory.
        for s in self._servers:
            try:
                s.stop()
            except AssertionError as e:
                errors.append(str(e))
            except Exception as e:  # pragma: no cover - defensive
                errors.append(repr(e))
                s._kill()
        self._servers = []
        for b in self._brokers:
            try:
                b.stop()
            except AssertionError as e:
                errors.append(str(e))
                b.kill()
        self._brokers = []
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise AssertionError("; ".join(errors))

    def broker(self, partitions=4, args=None):
        """A fresh `openexec broker` (embedded), or fresh topics on the
        shared Apache Kafka node (OPENEXEC_TEST_BROKER=kafka)."""
        if BROKER == "kafka" and not args:
            b = RealKafkaTopics(partitions)
        else:
            b = Broker(self.tmp, partitions=partitions, args=args)
        self._brokers.append(b)
        return b.start()

    def start_together(self, servers, timeout=30.0):
        """Starts servers made with start=False all at once, then waits
        until each is ready. Workers that join an empty group together get
        their partitions in its first rebalance (the embedded broker waits
        3 s for more members then); one by one, each later join is a
        rebalance of its own, which the embedded broker holds open for
        session.timeout.ms - 1 s (5 s with the tests' 6 s sessions) and
        which takes 10-15 s in all. Returns servers."""
        for s in servers:
            s.start(wait_ready=False)
        deadline = time.monotonic() + timeout
        for s in servers:
            s.wait_ready(deadline)
        return servers

    def reader(self, bootstrap, topic=None):
        r = TopicReader(bootstrap, topic or RECEIPTS_TOPIC)
        self._readers.append(r)
        return r

    def worker(self, bootstrap, env=None, db=None, args=None, start=True):
        """`openexec run --brokers B` (worker + bridge), ready."""
        e = {"OPENEXEC_EXECUTE": "kafka"}
        e.update(env or {})
        a = (["--brokers", bootstrap] if bootstrap else []) + list(args or [])
        return self.server(env=e, db=db, args=a, start=start)
