"""Black-box tests of approvals from the original service's clients (docs/operations.md; docs/protocol.md §4, §7): artifacts minted by newest_client.py (the newest release's
Ed25519 helper, without issued_by and with any TTL, and the seed's HMAC
minting) run through the whole clawshield flow, over POST /execute and
over Kafka (the embedded broker); several Ed25519 keys and HMAC secrets
(rotation), key_id, the short-secret warning, the start-up refusals, and
the fields /health reports."""

import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from harness import (BIN, ServiceTest, avro_request, clean_env, cli,  # noqa: E402
                     embedded_bootstrap, free_port, ledger_query, produce, run_tests)
from newest_client import (_utcnow, mint_approval_artifact, mint_hmac_artifact)  # noqa: E402
from test_kafka import KafkaCase  # noqa: E402

TENANT = "tenant-n"
# The seed's clients hold the second secret; the first is being retired.
OLD_SECRET = "retired-secret-0123456789abcdef0123"
SECRET = "current-secret-0123456789abcdef0123"
SHORT = "twelve-bytes"  # the original's own tests use a 12-byte secret


def new_key():
    return Ed25519PrivateKey.generate()


def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(key):
    """docs/operations.md: lowercase hex SHA-256 of the raw 32-byte public key."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def req(action, payload, nonce, artifact=None):
    r = {"action": action, "payload": payload, "nonce": nonce}
    if artifact is not None:
        r["approval_artifact"] = artifact
    return r


def uniq(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def the_flow(key):
    """Two phases of (request, expectation) for both schemes: what each
    client mints executed; then replays and reused approvals. Expectation:
    ("executed" | "replayed", approval_id) or ("rejected", detail words).
    The second phase is sent once the first is answered: on Kafka,
    different nonces may land on different partitions."""
    first, second = [], []
    seed = {"action": "echo", "payload": {"client": "seed", "n": 1}}
    newest = {"action": "echo", "payload": {"client": "newest", "ttl": 300}}
    hour = {"action": "add", "payload": {"a": 2, "b": 40}}
    now = _utcnow()

    # The seed's HMAC artifacts (signed with the second secret).
    h_ok = mint_hmac_artifact(seed, SECRET, TENANT)
    n = uniq("hmac-ok")
    first.append((req("echo", seed["payload"], n, h_ok), ("executed", h_ok["approval_id"])))
    second.append((req("echo", seed["payload"], n, h_ok), ("replayed", h_ok["approval_id"])))
    second.append((req("echo", seed["payload"], uniq("hmac-reuse"), h_ok),
                   ("rejected", "already used")))
    first.append((req("echo", {"client": "seed", "n": 2}, uniq("hmac-tampered"),
                      mint_hmac_artifact(seed, SECRET, TENANT)), ("rejected", "hash mismatch")))
    first.append((req("echo", seed["payload"], uniq("hmac-tenant"),
                      mint_hmac_artifact(seed, SECRET, "tenant-b")),
                  ("rejected", "Tenant mismatch")))
    old = mint_hmac_artifact(seed, SECRET, TENANT, now=now - timedelta(seconds=301))
    first.append((req("echo", seed["payload"], uniq("hmac-301s"), old), ("rejected", "expired")))
    # An HMAC artifact without issued_by: step 6 refuses it.
    no_issuer = dict(mint_hmac_artifact(seed, SECRET, TENANT))
    del no_issuer["issued_by"]
    first.append((req("echo", seed["payload"], uniq("hmac-noissuer"), no_issuer),
                  ("rejected", "Unknown issuer")))

    # The newest client's Ed25519 artifacts: no issued_by, TTL 300 and 3600.
    e_ok = mint_approval_artifact(newest, key, TENANT)
    assert "issued_by" not in e_ok and "key_id" not in e_ok
    n = uniq("ed-300")
    first.append((req("echo", newest["payload"], n, e_ok), ("executed", e_ok["approval_id"])))
    second.append((req("echo", newest["payload"], n, e_ok), ("replayed", e_ok["approval_id"])))
    second.append((req("echo", newest["payload"], uniq("ed-reuse"), e_ok),
                   ("rejected", "already used")))
    # One-hour TTL, minted 20 minutes ago: still valid (no age rule).
    e_hour = mint_approval_artifact(hour, key, TENANT, ttl_seconds=3600,
                                    now=now - timedelta(seconds=1200))
    n = uniq("ed-3600")
    first.append((req("add", hour["payload"], n, e_hour), ("executed", e_hour["approval_id"])))
    second.append((req("add", hour["payload"], n, e_hour), ("replayed", e_hour["approval_id"])))
    first.append((req("echo", {"client": "newest", "ttl": 301}, uniq("ed-tampered"),
                      mint_approval_artifact(newest, key, TENANT)),
                  ("rejected", "hash mismatch")))
    first.append((req("echo", newest["payload"], uniq("ed-tenant"),
                      mint_approval_artifact(newest, key, "tenant-b")),
                  ("rejected", "Tenant mismatch")))
    first.append((req("echo", newest["payload"], uniq("ed-expired"),
                      mint_approval_artifact(newest, key, TENANT, ttl_seconds=300,
                                             now=now - timedelta(seconds=301))),
                  ("rejected", "expired")))
    first.append((req("echo", newest["payload"], uniq("ed-future"),
                      mint_approval_artifact(newest, key, TENANT, ttl_seconds=300,
                                             now=now + timedelta(seconds=60))),
                  ("rejected", "expired")))
    return first, second


class FlowChecks:
    """The expectations of the_flow, on HTTP answers and on receipts."""

    def check_answer(self, r, request, expect):
        what, arg = expect
        if what == "rejected":
            self.assertDetail(r, 403, contains=arg)
            return
        b = self.assertExecuted(r, request["action"], request["payload"], request["nonce"],
                                tenant=TENANT, status=what)
        self.assertEqual(b.get("status"), what, r)

    def check_receipt(self, rec, request, expect):
        what, arg = expect
        if what == "rejected":
            self.assertRejectedReceipt(rec, "approval_invalid", nonce=request["nonce"],
                                       detail_contains=arg)
            return
        result = ({"echo": request["payload"]} if request["action"] == "echo"
                  else {"sum": request["payload"]["a"] + request["payload"]["b"]})
        self.assertExecutedReceipt(rec, request["action"], request["payload"], request["nonce"],
                                   result, tenant=TENANT, status=what, approval_id=arg)


def write_keys(path, keys):
    with open(path, "w") as f:
        f.write("".join("# key %d\n%s" % (i + 1, public_pem(k)) for i, k in enumerate(keys)))
    return path


class OverHttp(ServiceTest, FlowChecks):
    def setUp(self):
        super().setUp()
        self.keys = [new_key(), new_key()]
        self.key_file = write_keys(self.path("approval-keys.pem"), self.keys)

    def claw(self, **extra):
        env = {"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_SECRET_KEY": OLD_SECRET + "," + SECRET,
               "CLAWSHIELD_PUBLIC_KEY_FILE": self.key_file, "CLAWSHIELD_TENANT_ID": TENANT}
        env.update(extra)
        return self.server(env=env)

    def test_flow(self):
        s = self.claw()
        first, second = the_flow(self.keys[1])
        for phase in (first, second):
            for request, expect in phase:
                with self.subTest(nonce=request["nonce"]):
                    self.check_answer(s.post("/execute", request), request, expect)
        executed = ledger_query(s.db, "SELECT count(*) FROM executions")[0][0]
        self.assertEqual(executed, 3)

    def test_key_rotation(self):
        a, b = self.keys
        c = new_key()
        s = self.claw()
        payload = {"rotate": 1}
        action = {"action": "echo", "payload": payload}
        cases = [
            ("a", mint_approval_artifact(action, a, TENANT), None, None),
            ("b", mint_approval_artifact(action, b, TENANT), None, None),
            ("b-id", mint_approval_artifact(action, b, TENANT), key_id(b), None),
            # key_id picks key a: b's signature does not verify with it.
            ("b-as-a", mint_approval_artifact(action, b, TENANT), key_id(a),
             "Invalid signature"),
            ("c", mint_approval_artifact(action, c, TENANT), None, "Invalid signature"),
            ("c-id", mint_approval_artifact(action, c, TENANT), key_id(c), "key_id is unknown"),
        ]
        for name, art, kid, refused in cases:
            if kid is not None:
                art["key_id"] = kid
            r = s.execute("echo", payload, "rot-" + name, art)
            if refused:
                d = self.assertDetail(r, 403, contains="Invalid signature")
                self.assertIn(refused, d)
            else:
                self.assertExecuted(r, "echo", payload, "rot-" + name, tenant=TENANT)
        # key_id must be a string.
        art = mint_approval_artifact(action, a, TENANT)
        art["key_id"] = 5
        self.assertDetail(s.execute("echo", payload, "rot-num", art), 422, contains="key_id")
        # The next rotation step: a retired, c added, same ledger.
        s.stop()
        write_keys(self.key_file, [b, c])
        s2 = self.server(env=s.env, db=s.db)
        self.assertDetail(s2.execute("echo", payload, "rot2-a", mint_approval_artifact(
            action, a, TENANT)), 403, contains="Invalid signature")
        self.assertExecuted(s2.execute("echo", payload, "rot2-c", mint_approval_artifact(
            action, c, TENANT)), "echo", payload, "rot2-c", tenant=TENANT)
        self.assertEqual(s2.get("/health").json["approval_keys"]["ed25519"],
                         [key_id(b), key_id(c)])

    def test_health_fields(self):
        s = self.claw(OPENEXEC_ALLOWED_ACTIONS="echo, add,echo ,add")
        r = s.get("/health")
        self.assertStatus(r, 200)
        h = r.json
        self.assertEqual(h["status"], "healthy")
        self.assertEqual(h["mode"], "clawshield")
        self.assertEqual(h["exec_mode"], "clawshield")
        self.assertEqual(h["signature_verification"], "enabled")
        self.assertEqual(h["restriction"], "restricted")
        self.assertEqual(h["allow_list"], ["echo", "add"])  # as configured, no repeats
        self.assertNotIn("warning", h)
        self.assertEqual(h["approval_keys"], {"ed25519": [key_id(k) for k in self.keys],
                                              "hmac_secrets": 2})
        self.assertTrue(h["version"])
        text = r.body.decode()
        for secret in (OLD_SECRET, SECRET):
            self.assertNotIn(secret, text)
            self.assertNotIn(hashlib.sha256(secret.encode()).hexdigest(), text)
        self.assertNotIn("BEGIN", text)
        # Open, demo mode, no keys: the warning, exactly, and empty key lists.
        h = self.server().get("/health").json
        self.assertEqual((h["mode"], h["exec_mode"], h["restriction"]), ("demo", "demo", "open"))
        self.assertEqual(h["warning"], "No execution allow-list configured")
        self.assertNotIn("allow_list", h)
        self.assertEqual(h["approval_keys"], {"ed25519": [], "hmac_secrets": 0})

    def test_short_secret_warning(self):
        s = self.claw(CLAWSHIELD_SECRET_KEY=SECRET + "," + SHORT)
        art = mint_hmac_artifact({"action": "echo", "payload": {}}, SHORT, TENANT)
        self.assertExecuted(s.execute("echo", {}, "short-1", art), "echo", {}, "short-1",
                            tenant=TENANT)
        log = s.log()
        lines = [ln for ln in log.splitlines() if "recommended" in ln]
        self.assertEqual(len(lines), 1, log)
        self.assertIn("CLAWSHIELD_SECRET_KEY secret 2 of 2 is 12 bytes; at least 32 are "
                      "recommended (RFC 2104)", lines[0])
        self.assertIn("level=warn", lines[0])
        self.assertNotIn(SHORT, log)
        self.assertNotIn(SECRET, log)

    def test_mint_signs_with_the_first_secret(self):
        # `mint` given the list the workers hold signs with its first entry.
        p = cli(["mint", "--action", "echo", "--payload", "{}", "--tenant", TENANT,
                 "--nonce", "mint-first"], env={"CLAWSHIELD_SECRET_KEY": SECRET + "," + OLD_SECRET})
        self.assertEqual(p.returncode, 0, p.stderr)
        only_old = self.claw(CLAWSHIELD_SECRET_KEY=OLD_SECRET)
        self.assertDetail(only_old.post("/execute", p.stdout), 403, contains="Invalid signature")
        only_new = self.claw(CLAWSHIELD_SECRET_KEY=SECRET)
        self.assertExecuted(only_new.post("/execute", p.stdout), "echo", {}, "mint-first",
                            tenant=TENANT)
        # The list is read as run reads it: an empty first entry or a ninth
        # secret is refused (exit 2, no value echoed), never a signature
        # made with an empty key.
        for secrets, words in ((",abc", "secret 1 of 2 is empty"),
                               (",".join(["s3cret-x"] * 9), "holds 9 secrets; at most 8")):
            p = cli(["mint", "--action", "echo", "--payload", "{}", "--tenant", TENANT],
                    env={"CLAWSHIELD_SECRET_KEY": secrets})
            self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
            self.assertIn(words, p.stderr)
            self.assertEqual(p.stdout, "")
            self.assertNotIn("abc", p.stderr)
            self.assertNotIn("s3cret-x", p.stderr)

    def test_refused_at_start(self):
        many = write_keys(self.path("nine.pem"), [new_key() for _ in range(9)])
        eight = write_keys(self.path("eight.pem"), [new_key() for _ in range(8)])
        priv = self.keys[0].private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode()
        with_priv = self.path("with-private.pem")
        with open(with_priv, "w") as f:
            f.write(public_pem(self.keys[1]) + priv)
        hidden = "do-not-echo-this-secret"
        cases = [
            ({"CLAWSHIELD_PUBLIC_KEY_FILE": many}, "more than 8 PEM blocks"),
            ({"CLAWSHIELD_PUBLIC_KEY_FILE": with_priv},
             "PEM block 2 is not an Ed25519 public key"),
            ({"CLAWSHIELD_PUBLIC_KEY": public_pem(self.keys[0]) * 2},
             "PEM block 2 repeats the key of block 1"),
            ({"CLAWSHIELD_SECRET_KEY": ",".join([hidden] * 9)}, "holds 9 secrets; at most 8"),
            ({"CLAWSHIELD_SECRET_KEY": hidden + ",," + hidden}, "secret 2 of 3 is empty"),
        ]
        for env, words in cases:
            e = {"OPENEXEC_MODE": "clawshield"}
            e.update(env)
            p = cli(["run", "--execute", "local", "--http-port", str(free_port()),
                     "--db", self.path("refused.db")], env=e)
            self.assertEqual(p.returncode, 2, (words, p.stderr))
            self.assertIn(words, p.stderr)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
            self.assertNotIn(hidden, p.stderr + p.stdout)
            self.assertNotIn("MC4CAQAwBQYDK2Vw", p.stderr)  # no private key text
        # Eight keys and eight secrets start.
        s = self.server(env={"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_PUBLIC_KEY_FILE": eight,
                             "CLAWSHIELD_SECRET_KEY": ",".join("s%d" % i for i in range(8))})
        keys = s.get("/health").json["approval_keys"]
        self.assertEqual((len(keys["ed25519"]), keys["hmac_secrets"]), (8, 8))


class OverKafka(KafkaCase, FlowChecks):
    """The same flow as JSON requests on the requests topic of the embedded
    broker, receipts read back from the receipts topic; and the newest
    client's artifact in Avro, whose schema has no key_id (each key is
    tried) and a plain-string issued_by ("" for none)."""

    def test_flow(self):
        keys = [new_key(), new_key()]
        key_file = write_keys(self.path("approval-keys.pem"), keys)
        w = self.worker(None, env={"OPENEXEC_MODE": "clawshield",
                                   "CLAWSHIELD_SECRET_KEY": OLD_SECRET + "," + SECRET,
                                   "CLAWSHIELD_PUBLIC_KEY_FILE": key_file,
                                   "CLAWSHIELD_TENANT_ID": TENANT})
        bootstrap = embedded_bootstrap(w)
        reader = self.reader(bootstrap)
        first, second = the_flow(keys[1])
        payload = {"client": "newest", "over": "avro"}
        art = mint_approval_artifact({"action": "echo", "payload": payload}, keys[0], TENANT,
                                     ttl_seconds=3600)
        avro_nonce = uniq("ed-avro")
        avro_req = req("echo", payload, avro_nonce, art)
        # Phase one, with the Avro request; then phase two (replays: a
        # second receipt for the same nonce; reused approvals).
        produce(bootstrap, [(r["nonce"], json.dumps(r)) for r, _ in first] +
                [(avro_nonce, avro_request("echo", payload, avro_nonce,
                                           artifact=dict(art, issued_by="")))])
        got = self.receipts_for(reader, [r["nonce"] for r, _ in first] + [avro_nonce])
        for r, expect in first:
            with self.subTest(nonce=r["nonce"]):
                self.check_receipt(self.only(got, r["nonce"]), r, expect)
        self.check_receipt(self.only(got, avro_nonce), avro_req,
                           ("executed", art["approval_id"]))
        produce(bootstrap, [(r["nonce"], json.dumps(r)) for r, _ in second])
        replayed = [r["nonce"] for r, e in second if e[0] == "replayed"]
        reused = [r["nonce"] for r, e in second if e[0] != "replayed"]
        got = self.receipts_for(reader, replayed, count=2)
        got.update(self.receipts_for(reader, reused))
        for r, expect in second:
            with self.subTest(nonce=r["nonce"]):
                recs = got[r["nonce"]]
                self.assertEqual(len(recs), 2 if r["nonce"] in replayed else 1, recs)
                self.check_receipt(recs[-1][1], r, expect)
        self.assertNoFatal(w)
        # The bridge (POST /execute through Kafka) gives the same verdicts.
        r = w.execute("echo", payload, uniq("bridge-reuse"), art)
        self.assertDetail(r, 403, contains="already used")
        fresh = mint_approval_artifact({"action": "echo", "payload": payload}, keys[1], TENANT)
        n = uniq("bridge-ok")
        self.assertExecuted(w.execute("echo", payload, n, fresh), "echo", payload, n,
                            tenant=TENANT)
        # key_id travels with a JSON request through the bridge and Kafka.
        picked = dict(mint_approval_artifact({"action": "echo", "payload": payload}, keys[1],
                                             TENANT), key_id=key_id(keys[1]))
        n = uniq("bridge-keyid")
        self.assertExecuted(w.execute("echo", payload, n, picked), "echo", payload, n,
                            tenant=TENANT)
        wrong = dict(mint_approval_artifact({"action": "echo", "payload": payload}, keys[1],
                                            TENANT), key_id=key_id(keys[0]))
        self.assertDetail(w.execute("echo", payload, uniq("bridge-wrongid"), wrong), 403,
                          contains="Invalid signature")
        # `openexec produce` (Avro by default) says once that the Avro form
        # drops key_id; the requests still go and execute, each key tried.
        arts = [dict(mint_approval_artifact({"action": "echo", "payload": payload}, keys[1],
                                            TENANT), key_id=key_id(keys[1])) for _ in range(2)]
        nonces = [uniq("cli-avro-keyid") for _ in arts]
        lines = "".join(json.dumps(req("echo", payload, n, a)) + "\n" for n, a in zip(nonces, arts))
        p = subprocess.run([BIN, "produce", "--brokers", bootstrap], input=lines, text=True,
                           capture_output=True, env=clean_env(), timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        told = [ln for ln in p.stderr.splitlines() if "key_id is not carried" in ln]
        self.assertEqual(len(told), 1, p.stderr)
        got = self.receipts_for(reader, nonces)
        for n, a in zip(nonces, arts):
            self.check_receipt(self.only(got, n), req("echo", payload, n, a),
                               ("executed", a["approval_id"]))


if __name__ == "__main__":
    run_tests()
