"""Interop: an independent producer and consumer written in plain Python
(hmac, hashlib, json) must agree with the service byte for byte: the
canonical request hash of docs/protocol.md §3, the HMAC artifacts of docs/protocol.md §4, the ids
and receipts of docs/protocol.md §5."""

import hashlib
import hmac
import json
import math
import os
import random
import struct
import sys
import uuid
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (ServiceTest, canonical, cli, execution_id, mint, receipt_hash,  # noqa: E402
                     request_hash, run_tests)

SECRET = "interop-secret \u00e9"  # non-ASCII: the key is the UTF-8 bytes
TENANT = "tenant-\u00fc"

# Payloads whose canonical JSON exercises every rule of docs/protocol.md §3.
TRICKY = [
    {"s": "plain ascii"},
    {"unicode": "caf\u00e9 \u65e5\u672c \u0416"},
    {"astral": "\U0001F600 \U00010348 \U0010FFFF"},
    {"control": "\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x1f \x7f \x80 \u2028\u2029"},
    {"quotes": "\"\\/ '<>&"},
    {"floats": [1e16, 1e-07, 0.1, -0.0, 0.0, 1.0, -1.5, 1e15, 1e22, 1e-05, 0.0001,
                123456789.123, 5e-324, 1.7976931348623157e308, 2.5e-10, 0.30000000000000004,
                1.0000000000000002, 9007199254740993.0, 100.0, 1e100]},
    {"ints": [0, -1, 9223372036854775807, -9223372036854775808, 9223372036854775808,
              123456789012345678901234567890, -123456789012345678901234567890]},
    {"z": {"b": 1, "a": {"d": [3, {"y": 1, "x": 2}], "c": None}}, "a": [True, False, None],
     "m": {}},
    {"B": 1, "a": 2, "_": 3, "": 4, "\u00e9": 5, "\U0001F600": 6, "\uffff": 7, "a\u0000": 8,
     "A": 9, "aa": 10, "\x7f": 11},
    {"deep": [[[[[[[[[[{"k": [[[["v"]]]]}]]]]]]]]]]},
    {"mixed": ["", [], {}, [{}], 0, -0.0, "\\u0041"]},
]

# The same values written unusually; Python's json.loads gives the value the
# hash is taken of.
RAW_PAYLOADS = [
    '{"f": 1E16, "g": 1.0e-7, "h": 0.10, "i": 100.0e0, "j": -0, "k": 1e2, "l": 12.50}',
    '{"s": "\\u00e9\\/\\ud83d\\ude00\\u0041\\t", "t": "\u00e9\U0001F600"}',
    '{ "b" : [ 1 , 2 ] ,\n\t"a" : { } }',
    '{"big": 1234567890123456789012345678901234567890, "neg": -0.0, "e": 5E-324}',
]


def hmac_artifact_py(action_hash, issued_at, tenant=TENANT, secret=SECRET):
    """The producer side in plain hmac/hashlib (no shared helper)."""
    approval_id = str(uuid.uuid4())
    msg = f"{approval_id}:{action_hash}:{tenant}:{issued_at}"
    sig = hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()
    return {"approval_id": approval_id, "action_hash": action_hash, "signature": sig,
            "issued_by": "clawshield", "issued_at": issued_at, "tenant_id": tenant}


def py_hash(action, payload):
    text = json.dumps({"action": action, "payload": payload}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Interop(ServiceTest):
    def claw(self):
        return self.server(env={"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_SECRET_KEY": SECRET,
                                "CLAWSHIELD_TENANT_ID": TENANT})

    def test_reference_formulas(self):
        # The harness's formulas are the protocol's, on the original service's own example.
        self.assertEqual(canonical({"a": "\x7f/\u00e9\U0001F600"}),
                         '{"a":"\\u007f/\\u00e9\\ud83d\\ude00"}')
        self.assertEqual(canonical([1.0, 0.1, 1e16, 1e-07, -0.0]),
                         "[1.0,0.1,1e+16,1e-07,-0.0]")
        self.assertEqual(py_hash("echo", {"x": 1}), request_hash("echo", {"x": 1}))

    def test_hmac_issued_at_formats(self):
        s = self.claw()
        now = datetime.now(timezone.utc)
        formats = [
            now.isoformat(),                                         # ...+00:00
            now.replace(tzinfo=None).isoformat(),                    # naive utcnow(): UTC
            now.replace(microsecond=0).isoformat(),                  # no fraction
            now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000),  # JS
            now.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
            now.astimezone(timezone(timedelta(hours=-8))).isoformat(),
        ]
        for n, issued_at in enumerate(formats):
            payload = {"fmt": n}
            art = hmac_artifact_py(py_hash("echo", payload), issued_at)
            r = s.execute("echo", payload, "fmt-%d" % n, art)
            self.assertStatus(r, 200, "issued_at %r" % issued_at)
            self.assertExecuted(r, "echo", payload, "fmt-%d" % n, tenant=TENANT)
        # A naive time is UTC, not local time: 10 minutes old naive -> expired.
        old = (now - timedelta(minutes=10)).replace(tzinfo=None).isoformat()
        art = hmac_artifact_py(py_hash("echo", {}), old)
        self.assertDetail(s.execute("echo", {}, "fmt-old", art), 403, contains="expired")
        # An aware time 10 minutes old written in another zone -> expired.
        old = (now - timedelta(minutes=10)).astimezone(timezone(timedelta(hours=9))).isoformat()
        art = hmac_artifact_py(py_hash("echo", {}), old)
        self.assertDetail(s.execute("echo", {}, "fmt-old2", art), 403, contains="expired")

    def check_payload(self, s, payload, nonce, body=None):
        """payload: the Python value; body: the raw request text (default:
        json.dumps of the request). The server must accept an artifact
        bound with Python's hash, and echo a result whose receipt verifies
        with Python's formula."""
        h = py_hash("echo", payload)
        art = hmac_artifact_py(h, datetime.now(timezone.utc).isoformat())
        if body is None:
            r = s.execute("echo", payload, nonce, art)
        else:
            r = s.post("/execute", body.replace("ARTIFACT", json.dumps(art)))
        self.assertEqual(r.status, 200, "payload %r: %r (the server's hash differs from "
                         "Python's %s)" % (payload, r, h))
        b = r.json
        self.assertEqual(b["id"], execution_id(TENANT, nonce, h), payload)
        # The result is the payload, value for value (canonical text compares
        # -0.0 and 0.0, 1 and 1.0 apart).
        self.assertEqual(canonical(b["result"]), canonical({"echo": payload}), payload)
        self.assertEqual(b["receipt"], receipt_hash(b["id"], b["result"]), payload)
        expect = hashlib.sha256(("%s:%s" % (b["id"], json.dumps({"echo": payload},
                                                                 sort_keys=True))).encode())
        self.assertEqual(b["receipt"], expect.hexdigest(), payload)
        # The stored record carries the same hash and result text.
        rec = s.get("/receipts/" + b["id"]).json
        self.assertEqual(rec["request_hash"], h)
        self.assertEqual(rec["result_json"], json.dumps({"echo": payload}, sort_keys=True))
        v = s.post("/receipts/verify", {"exec_id": b["id"], "result": b["result"],
                                        "receipt": b["receipt"]})
        self.assertEqual(v.json, {"valid": True}, payload)

    def test_tricky_payloads(self):
        s = self.claw()
        for n, payload in enumerate(TRICKY):
            self.check_payload(s, payload, "tricky-%d" % n)

    def test_raw_spellings(self):
        s = self.claw()
        for n, text in enumerate(RAW_PAYLOADS):
            payload = json.loads(text)
            nonce = "raw-%d" % n
            body = ('{"action": "echo", "nonce": "%s", "payload": %s, '
                    '"approval_artifact": ARTIFACT}' % (nonce, text))
            self.check_payload(s, payload, nonce, body=body)

    def test_random_values(self):
        # Seeded random floats (any bit pattern), integers of every size and
        # strings over the whole of Unicode: one request per kind, each
        # accepted only if the server's canonical hash equals Python's.
        rng = random.Random(20240611)
        floats = []
        while len(floats) < 3000:
            f = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
            if math.isfinite(f):
                floats.append(f)
        floats += [rng.uniform(-1e6, 1e6) for _ in range(500)]
        floats += [round(rng.uniform(-1000, 1000), rng.randint(0, 6)) for _ in range(500)]
        ints = [rng.randint(-10 ** d, 10 ** d) for d in range(1, 60) for _ in range(10)]

        def text(k):
            out = []
            for _ in range(k):
                c = rng.choice((rng.randint(0, 0x7f), rng.randint(0x80, 0x7ff),
                                rng.randint(0x800, 0xffff), rng.randint(0x10000, 0x10ffff)))
                if 0xD800 <= c <= 0xDFFF:
                    c = 0xFFFD
                out.append(chr(c))
            return "".join(out)

        strings = {text(rng.randint(0, 8)): text(rng.randint(0, 30)) for _ in range(400)}
        s = self.claw()
        self.check_payload(s, {"floats": floats}, "rand-floats")
        self.check_payload(s, {"ints": ints}, "rand-ints")
        self.check_payload(s, strings, "rand-strings")

    def test_non_ascii_nonce_and_action_hash(self):
        s = self.claw()
        payload = {"x": "\U0001F600"}
        nonce = "n\u00f6nce-\U0001F600"
        self.check_payload(s, payload, nonce)

    def test_mint_agrees_with_python(self):
        for payload in TRICKY + [json.loads(t) for t in RAW_PAYLOADS]:
            art = mint("echo", payload, secret=SECRET, tenant=TENANT)
            self.assertEqual(art["action_hash"], py_hash("echo", payload), payload)
            msg = "%s:%s:%s:%s" % (art["approval_id"], art["action_hash"], art["tenant_id"],
                                   art["issued_at"])
            self.assertEqual(art["signature"], hmac.new(SECRET.encode(), msg.encode(),
                                                        hashlib.sha256).hexdigest())

    def test_demo_ids_match_python(self):
        s = self.server()
        for n, payload in enumerate(TRICKY):
            nonce = "demo-%d" % n
            r = s.execute("echo", payload, nonce)
            self.assertStatus(r, 200, repr(payload))
            b = r.json
            self.assertEqual(b["id"], execution_id("", nonce, py_hash("echo", payload)), payload)
            self.assertEqual(b["receipt"], receipt_hash(b["id"], {"echo": payload}), payload)
            p = cli(["verify-receipt", "--id", b["id"], "--result",
                     json.dumps({"echo": payload}), "--receipt", b["receipt"]])
            self.assertEqual((p.returncode, p.stdout.strip()), (0, "valid"), payload)


if __name__ == "__main__":
    run_tests()
