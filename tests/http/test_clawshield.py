"""Black-box tests of `openexec run` in clawshield mode: HMAC and Ed25519
approval artifacts, the order of the checks of docs/protocol.md §4, and replay."""

import json
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (ServiceTest, cli, ed25519_artifact, ed25519_keypair, execution_id,  # noqa: E402
                     free_port, hmac_artifact, iso_in, ledger_query, mint, request_hash,
                     run_tests)

SECRET = "test-shared-secret"
TENANT = "tenant-a"


def claw_env(**extra):
    env = {"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_SECRET_KEY": SECRET,
           "CLAWSHIELD_TENANT_ID": TENANT}
    env.update(extra)
    return env


class Hmac(ServiceTest):
    def claw(self, **extra):
        return self.server(env=claw_env(**extra))

    def test_health(self):
        s = self.claw()
        h = s.get("/health").json
        self.assertEqual(h["mode"], "clawshield")
        self.assertEqual(h["signature_verification"], "enabled")

    def test_minted_artifact_accepted(self):
        s = self.claw()
        payload = {"msg": "governed", "n": 2}
        art = mint("echo", payload, secret=SECRET, tenant=TENANT)
        self.assertEqual(art["action_hash"], request_hash("echo", payload))
        self.assertEqual(art["issued_by"], "clawshield")
        self.assertEqual(art["tenant_id"], TENANT)
        r = s.execute("echo", payload, "cs-1", art)
        b = self.assertExecuted(r, "echo", payload, "cs-1", tenant=TENANT,
                                result={"echo": payload})
        # The id includes the tenant: it differs from the demo-mode id.
        self.assertNotEqual(b["id"], execution_id("", "cs-1", request_hash("echo", payload)))
        rec = s.get("/receipts/" + b["id"])
        self.assertStatus(rec, 200)
        self.assertEqual(rec.json["approval_id"], art["approval_id"])
        self.assertEqual(rec.json["receipt"], b["receipt"])
        # add works the same way.
        art = mint("add", {"a": 2, "b": 3}, secret=SECRET, tenant=TENANT)
        self.assertExecuted(s.execute("add", {"a": 2, "b": 3}, "cs-2", art), "add",
                            {"a": 2, "b": 3}, "cs-2", tenant=TENANT, result={"sum": 5})

    def test_mint_whole_request(self):
        # `mint --nonce` prints a whole request the service accepts as is.
        s = self.claw()
        p = cli(["mint", "--action", "echo", "--payload", '{"q": [1, 2]}', "--secret", SECRET,
                 "--tenant", TENANT, "--nonce", "whole-1"])
        self.assertEqual(p.returncode, 0, p.stderr)
        req = json.loads(p.stdout)
        self.assertEqual(req["nonce"], "whole-1")
        self.assertExecuted(s.post("/execute", p.stdout), "echo", {"q": [1, 2]}, "whole-1",
                            tenant=TENANT)

    def test_missing_artifact(self):
        s = self.claw()
        self.assertDetail(s.execute("echo", {"m": 1}, "miss-1"), 403)
        self.assertDetail(s.execute("echo", {"m": 1}, "miss-2", approval_artifact=None), 403)
        # A rejection does not use up the nonce.
        art = mint("echo", {"m": 1}, secret=SECRET, tenant=TENANT)
        self.assertExecuted(s.execute("echo", {"m": 1}, "miss-1", art), "echo", {"m": 1},
                            "miss-1", tenant=TENANT)

    def test_artifact_missing_field_is_malformed(self):
        s = self.claw()
        art = mint("echo", {}, secret=SECRET, tenant=TENANT)
        for field in ("approval_id", "action_hash", "signature", "issued_by", "issued_at",
                      "tenant_id"):
            a = dict(art)
            del a[field]
            # issued_by is optional (the newer clients' Ed25519 artifacts
            # have none); an HMAC artifact without it is refused at step 6.
            if field == "issued_by":
                self.assertDetail(s.execute("echo", {}, "mf-" + field, a), 403,
                                  contains="Unknown issuer")
            else:
                self.assertDetail(s.execute("echo", {}, "mf-" + field, a), 422)
            a = dict(art)
            a[field] = 5
            self.assertDetail(s.execute("echo", {}, "mt-" + field, a), 422)

    def test_hash_mismatch(self):
        s = self.claw()
        art = mint("echo", {"amount": 1}, secret=SECRET, tenant=TENANT)
        self.assertDetail(s.execute("echo", {"amount": 1000}, "hm-1", art), 403,
                          contains="hash mismatch")
        self.assertDetail(s.execute("add", {"amount": 1}, "hm-2", art), 403,
                          contains="hash mismatch")
        # The same artifact on its own request still works (not used up).
        self.assertExecuted(s.execute("echo", {"amount": 1}, "hm-3", art), "echo",
                            {"amount": 1}, "hm-3", tenant=TENANT)

    def test_wrong_secret(self):
        s = self.claw()
        art = mint("echo", {}, secret="another-secret", tenant=TENANT)
        self.assertDetail(s.execute("echo", {}, "ws-1", art), 403, contains="Invalid signature")
        # Any edit to a signed field breaks the signature.
        good = mint("echo", {}, secret=SECRET, tenant=TENANT)
        for field, value in (("approval_id", str(uuid.uuid4())),
                             ("issued_at", iso_in(-1)),
                             ("signature", good["signature"][:-1] +
                              ("0" if good["signature"][-1] != "0" else "1")),
                             ("signature", "")):
            a = dict(good, **{field: value})
            self.assertDetail(s.execute("echo", {}, "ws-" + field + value[:3], a), 403,
                              contains="Invalid signature")

    def test_wrong_tenant(self):
        s = self.claw()
        art = mint("echo", {}, secret=SECRET, tenant="tenant-b")
        self.assertDetail(s.execute("echo", {}, "wt-1", art), 403, contains="Tenant mismatch")
        art = hmac_artifact(SECRET, "", "echo", {})
        self.assertDetail(s.execute("echo", {}, "wt-2", art), 403, contains="Tenant mismatch")

    def test_unknown_issuer(self):
        s = self.claw()
        for issuer in ("someone-else", "ClawShield", ""):
            art = hmac_artifact(SECRET, TENANT, "echo", {}, issued_by=issuer)
            self.assertDetail(s.execute("echo", {}, "ui-" + issuer, art), 403,
                              contains="Unknown issuer")

    def test_expired(self):
        s = self.claw()
        # 310 s old (expires_at would be in the future: only issued_at counts).
        art = mint("echo", {}, secret=SECRET, tenant=TENANT, issued_at=iso_in(-310), ttl=1000)
        self.assertDetail(s.execute("echo", {}, "ex-1", art), 403, contains="expired")
        art = hmac_artifact(SECRET, TENANT, "echo", {}, issued_at=iso_in(-302))
        self.assertDetail(s.execute("echo", {}, "ex-2", art), 403, contains="expired")
        # 60 s in the future.
        art = mint("echo", {}, secret=SECRET, tenant=TENANT, issued_at=iso_in(60))
        self.assertDetail(s.execute("echo", {}, "ex-3", art), 403, contains="expired")
        art = hmac_artifact(SECRET, TENANT, "echo", {}, issued_at=iso_in(40))
        self.assertDetail(s.execute("echo", {}, "ex-3b", art), 403, contains="expired")
        # expires_at passed although issued_at is recent.
        art = hmac_artifact(SECRET, TENANT, "echo", {}, issued_at=iso_in(-5),
                            expires_at=iso_in(-1))
        self.assertDetail(s.execute("echo", {}, "ex-4", art), 403, contains="expired")
        # Not a time at all.
        art = hmac_artifact(SECRET, TENANT, "echo", {}, issued_at="yesterday")
        self.assertDetail(s.execute("echo", {}, "ex-5", art), 403)
        # Inside the limits: 280 s old, 20 s ahead.
        art = mint("echo", {}, secret=SECRET, tenant=TENANT, issued_at=iso_in(-280))
        self.assertExecuted(s.execute("echo", {}, "ex-6", art), "echo", {}, "ex-6",
                            tenant=TENANT)
        art = mint("echo", {}, secret=SECRET, tenant=TENANT, issued_at=iso_in(20))
        self.assertExecuted(s.execute("echo", {}, "ex-7", art), "echo", {}, "ex-7",
                            tenant=TENANT)

    def test_approval_reuse(self):
        s = self.claw()
        art = mint("echo", {"once": 1}, secret=SECRET, tenant=TENANT)
        first = self.assertExecuted(s.execute("echo", {"once": 1}, "re-1", art), "echo",
                                    {"once": 1}, "re-1", tenant=TENANT)
        self.assertDetail(s.execute("echo", {"once": 1}, "re-2", art), 403,
                          contains="already used")
        # Same nonce, same request: a replay with the original receipt.
        again = s.execute("echo", {"once": 1}, "re-1", art)
        self.assertStatus(again, 200)
        self.assertEqual((again.json["id"], again.json["receipt"]),
                         (first["id"], first["receipt"]))
        self.assertEqual(again.json.get("status"), "replayed")
        n = ledger_query(s.db, "SELECT count(*) FROM executions WHERE approval_id = ?",
                         (art["approval_id"],))[0][0]
        codes = [r[0] for r in ledger_query(
            s.db, "SELECT error_code FROM rejections WHERE nonce = 're-2'")]
        self.assertEqual(n, 1)
        self.assertEqual(codes, ["approval_invalid"])

    def test_replay_after_expiry(self):
        # docs/protocol.md §4: a replay is answered from the store before the checks, so
        # a re-sent request whose artifact has expired still gets its receipt.
        s = self.claw()
        art = mint("echo", {"r": 1}, secret=SECRET, tenant=TENANT, ttl=2)
        first = self.assertExecuted(s.execute("echo", {"r": 1}, "rx-1", art), "echo", {"r": 1},
                                    "rx-1", tenant=TENANT)
        again = self.assertExecuted(s.execute("echo", {"r": 1}, "rx-1", art), "echo", {"r": 1},
                                    "rx-1", tenant=TENANT, status="replayed")
        self.assertEqual(again["receipt"], first["receipt"])
        time.sleep(2.2)
        late = self.assertExecuted(s.execute("echo", {"r": 1}, "rx-1", art), "echo", {"r": 1},
                                   "rx-1", tenant=TENANT, status="replayed")
        self.assertEqual((late["id"], late["receipt"]), (first["id"], first["receipt"]))
        # ...also with no artifact at all.
        bare = self.assertExecuted(s.execute("echo", {"r": 1}, "rx-1"), "echo", {"r": 1},
                                   "rx-1", tenant=TENANT, status="replayed")
        self.assertEqual(bare["receipt"], first["receipt"])
        # Under a new nonce the expired artifact is refused for its time.
        self.assertDetail(s.execute("echo", {"r": 1}, "rx-2", art), 403, contains="expired")

    def test_check_order(self):
        s = self.server(env=claw_env(OPENEXEC_ALLOWED_ACTIONS="add"))
        # 1 before 2: no artifact on a not-allowed action.
        d = self.assertDetail(s.execute("echo", {}, "o-1"), 403)
        # 2 before 3: not allowed beats a hash mismatch.
        art = mint("add", {}, secret=SECRET, tenant=TENANT)
        d = self.assertDetail(s.execute("echo", {}, "o-2", art), 403)
        self.assertNotIn("hash mismatch", d)
        # 3 before 4: mismatch and a bad signature.
        art = mint("add", {"a": 1}, secret="wrong", tenant="other")
        self.assertDetail(s.execute("add", {"a": 2}, "o-3", art), 403, contains="hash mismatch")
        # 4 before 5: bad signature and wrong tenant.
        art = mint("add", {}, secret="wrong", tenant="other")
        self.assertDetail(s.execute("add", {}, "o-4", art), 403, contains="Invalid signature")
        # 5 before 6: wrong tenant and wrong issuer.
        art = hmac_artifact(SECRET, "other", "add", {}, issued_by="mallory")
        self.assertDetail(s.execute("add", {}, "o-5", art), 403, contains="Tenant mismatch")
        # 6 before 7: wrong issuer and expired.
        art = hmac_artifact(SECRET, TENANT, "add", {}, issued_by="mallory",
                            issued_at=iso_in(-1000))
        self.assertDetail(s.execute("add", {}, "o-6", art), 403, contains="Unknown issuer")
        # 7 before 8: an used approval that has also expired.
        # (It expires 3 s from now: time for mint and the first use on a
        # loaded machine; then the wait passes its expiry.)
        t0 = time.monotonic()
        art = mint("add", {}, secret=SECRET, tenant=TENANT, issued_at=iso_in(-1), ttl=4)
        self.assertStatus(s.execute("add", {}, "o-7", art), 200)
        time.sleep(max(0.0, t0 + 3.3 - time.monotonic()))
        self.assertDetail(s.execute("add", {}, "o-8", art), 403, contains="expired")
        # 8: used, not expired.
        art = mint("add", {}, secret=SECRET, tenant=TENANT)
        self.assertStatus(s.execute("add", {}, "o-9", art), 200)
        self.assertDetail(s.execute("add", {}, "o-10", art), 403, contains="already used")

    def test_conflict_before_checks(self):
        # A nonce that executed answers 409 to another request before any
        # artifact check, and the replay needs no artifact.
        s = self.claw()
        art = mint("echo", {"v": 1}, secret=SECRET, tenant=TENANT)
        self.assertStatus(s.execute("echo", {"v": 1}, "cf-1", art), 200)
        self.assertDetail(s.execute("echo", {"v": 2}, "cf-1"), 409)
        art2 = mint("echo", {"v": 2}, secret=SECRET, tenant=TENANT)
        self.assertDetail(s.execute("echo", {"v": 2}, "cf-1", art2), 409)
        # The second artifact was not used up by the conflict.
        self.assertExecuted(s.execute("echo", {"v": 2}, "cf-2", art2), "echo", {"v": 2},
                            "cf-2", tenant=TENANT)

    def test_parallel_approval_reuse(self):
        s = self.claw()
        art = mint("echo", {"p": 1}, secret=SECRET, tenant=TENANT)
        n = 16
        barrier = threading.Barrier(n)
        results = [None] * n

        def worker(i):
            try:
                barrier.wait(timeout=10)
                results[i] = s.execute("echo", {"p": 1}, "par-%d" % i, art)
            except Exception as e:
                results[i] = e

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        statuses = sorted(getattr(r, "status", repr(r)) for r in results)
        self.assertEqual(statuses, [200] + [403] * (n - 1))
        for r in results:
            if r.status == 403:
                self.assertIn("already used", r.json["detail"])
        self.assertEqual(ledger_query(s.db, "SELECT count(*) FROM executions")[0][0], 1)

    def test_no_tenant_configured(self):
        # Without CLAWSHIELD_TENANT_ID any tenant is accepted and the id uses "".
        s = self.server(env={"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_SECRET_KEY": SECRET})
        art = mint("echo", {}, secret=SECRET, tenant="whoever")
        self.assertExecuted(s.execute("echo", {}, "nt-1", art), "echo", {}, "nt-1", tenant="")


class Ed25519(ServiceTest):
    def setUp(self):
        super().setUp()
        self.key, priv, self.pub = ed25519_keypair()
        self.key_file = self.path("ed25519.pem")
        with open(self.key_file, "wb") as f:
            f.write(priv)

    def ed_server(self, **extra):
        env = {"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_PUBLIC_KEY": self.pub,
               "CLAWSHIELD_TENANT_ID": TENANT}
        env.update(extra)
        return self.server(env=env)

    def test_health(self):
        s = self.ed_server()
        h = s.get("/health").json
        self.assertEqual(h["mode"], "clawshield")
        self.assertEqual(h["signature_verification"], "enabled")

    def test_minted_accepted(self):
        s = self.ed_server()
        payload = {"ed": "25519"}
        art = mint("echo", payload, ed25519_key=self.key_file, tenant=TENANT)
        self.assertTrue(art.get("expires_at"))
        b = self.assertExecuted(s.execute("echo", payload, "ed-1", art), "echo", payload, "ed-1",
                                tenant=TENANT, result={"echo": payload})
        self.assertEqual(s.get("/receipts/" + b["id"]).json["approval_id"], art["approval_id"])
        self.assertDetail(s.execute("echo", payload, "ed-2", art), 403, contains="already used")

    def test_public_key_from_a_file(self):
        # CLAWSHIELD_PUBLIC_KEY_FILE (--public-key-file): the PEM in a file,
        # as mint takes the private key; with the text as well: exit 2.
        pub_file = self.path("ed25519.pub.pem")
        with open(pub_file, "w" if isinstance(self.pub, str) else "wb") as f:
            f.write(self.pub)
        s = self.server(env={"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_TENANT_ID": TENANT,
                             "CLAWSHIELD_PUBLIC_KEY_FILE": pub_file})
        self.assertEqual(s.get("/health").json["signature_verification"], "enabled")
        art = mint("echo", {"f": 1}, ed25519_key=self.key_file, tenant=TENANT)
        self.assertExecuted(s.execute("echo", {"f": 1}, "edf-1", art), "echo", {"f": 1}, "edf-1",
                            tenant=TENANT, result={"echo": {"f": 1}})
        forged = ed25519_artifact(ed25519_keypair()[0], TENANT, "echo", {"f": 2})
        self.assertDetail(s.execute("echo", {"f": 2}, "edf-2", forged), 403,
                          contains="Invalid signature")
        for extra, words in (({"CLAWSHIELD_PUBLIC_KEY": self.pub}, "both given"),
                             ({"CLAWSHIELD_PUBLIC_KEY_FILE": self.path("none.pem")},
                              "cannot read it")):
            env = {"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_PUBLIC_KEY_FILE": pub_file}
            env.update(extra)
            p = cli(["run", "--execute", "local", "--http-port", "0", "--db", self.path("k.db")],
                    env=env)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(words, p.stderr)

    def test_python_artifact_accepted(self):
        s = self.ed_server()
        payload = {"from": "python", "x": [1, 2.5]}
        art = ed25519_artifact(self.key, TENANT, "echo", payload)
        self.assertExecuted(s.execute("echo", payload, "edp-1", art), "echo", payload, "edp-1",
                            tenant=TENANT, result={"echo": payload})

    def test_missing_expires_at(self):
        s = self.ed_server()
        art = ed25519_artifact(self.key, TENANT, "echo", {}, with_expiry=False)
        self.assertNotIn("expires_at", art)
        self.assertDetail(s.execute("echo", {}, "edm-1", art), 403, contains="expired")
        art = ed25519_artifact(self.key, TENANT, "echo", {}, with_expiry=False)
        art["expires_at"] = None
        self.assertDetail(s.execute("echo", {}, "edm-2", art), 403, contains="expired")

    def test_expired(self):
        s = self.ed_server()
        art = ed25519_artifact(self.key, TENANT, "echo", {}, issued_at=iso_in(-10),
                               expires_at=iso_in(-1))
        self.assertDetail(s.execute("echo", {}, "ede-1", art), 403, contains="expired")
        # No age rule beyond expires_at (docs/protocol.md §4): 400 s old, valid 600 s more.
        art = ed25519_artifact(self.key, TENANT, "echo", {}, issued_at=iso_in(-400),
                               expires_at=iso_in(600))
        self.assertExecuted(s.execute("echo", {}, "ede-2", art), "echo", {}, "ede-2",
                            tenant=TENANT)
        art = ed25519_artifact(self.key, TENANT, "echo", {}, issued_at=iso_in(60),
                               expires_at=iso_in(600))
        self.assertDetail(s.execute("echo", {}, "ede-3", art), 403, contains="expired")

    def test_bad_signature(self):
        s = self.ed_server()
        good = ed25519_artifact(self.key, TENANT, "echo", {})
        # A signature by another key.
        other, _, _ = ed25519_keypair()
        art = ed25519_artifact(other, TENANT, "echo", {})
        self.assertDetail(s.execute("echo", {}, "edb-1", art), 403, contains="Invalid signature")
        # Signed fields edited after signing.
        for n, (field, value) in enumerate((("expires_at", iso_in(200)),
                                            ("approval_id", str(uuid.uuid4())),
                                            ("tenant_id", TENANT + "x"))):
            a = dict(good, **{field: value})
            self.assertDetail(s.execute("echo", {}, "edb-f%d" % n, a), 403,
                              contains="Invalid signature")
        # Garbage and an HMAC-style signature.
        for n, sig in enumerate(("not base64!", "", "QUJD", "0" * 64)):
            a = dict(good, signature=sig)
            self.assertDetail(s.execute("echo", {}, "edb-s%d" % n, a), 403,
                              contains="Invalid signature")
        # The untouched artifact is still good.
        self.assertExecuted(s.execute("echo", {}, "edb-ok", good), "echo", {}, "edb-ok",
                            tenant=TENANT)

    def test_wrong_tenant(self):
        s = self.ed_server()
        art = ed25519_artifact(self.key, "tenant-b", "echo", {})
        self.assertDetail(s.execute("echo", {}, "edt-1", art), 403, contains="Tenant mismatch")

    def test_both_keys(self):
        # With a secret and a public key both kinds of artifact are accepted.
        s = self.ed_server(CLAWSHIELD_SECRET_KEY=SECRET)
        a1 = mint("echo", {"k": "hmac"}, secret=SECRET, tenant=TENANT)
        self.assertExecuted(s.execute("echo", {"k": "hmac"}, "bk-1", a1), "echo", {"k": "hmac"},
                            "bk-1", tenant=TENANT)
        a2 = ed25519_artifact(self.key, TENANT, "echo", {"k": "ed"})
        self.assertExecuted(s.execute("echo", {"k": "ed"}, "bk-2", a2), "echo", {"k": "ed"},
                            "bk-2", tenant=TENANT)
        a3 = mint("echo", {"k": "bad"}, secret="wrong", tenant=TENANT)
        self.assertDetail(s.execute("echo", {"k": "bad"}, "bk-3", a3), 403,
                          contains="Invalid signature")

    def test_bad_public_key_is_config_error(self):
        from harness import ed25519_keypair as _  # noqa: F401  (cryptography present)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        ec_pub = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        for pem in ("garbage", ec_pub):
            p = cli(["run", "--http-port", str(free_port()), "--db", self.path("k.db")],
                    env={"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_PUBLIC_KEY": pem})
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertNotIn("\n", p.stderr.strip())


if __name__ == "__main__":
    run_tests()
