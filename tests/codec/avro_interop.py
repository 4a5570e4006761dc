#!/usr/bin/python3
"""Avro interop between codec/codec.c and python3-avro (Debian's package).

Run with an interpreter that can `import avro` (Debian's /usr/bin/python3).
Files hold length-prefixed messages: a 4-byte big-endian length, then the
message bytes.

  avro_interop.py encode-requests N FILE   N Avro single-object requests
                                           written by python3-avro's
                                           DatumWriter; prints, one JSON line
                                           each, what the C decoder must
                                           report (test_codec --decode-requests)
  avro_interop.py decode-requests FILE     reads Avro requests (C3 01 header,
                                           fingerprint checked), prints JSON
                                           lines in the same format
  avro_interop.py decode-receipts FILE     reads Avro receipts, checks the
                                           header and the fingerprint computed
                                           here from the canonical form,
                                           decodes with DatumReader, prints one
                                           JSON line each (json.dumps, the
                                           format of the C JSON receipts)
  avro_interop.py fingerprints             canonical forms and fingerprints
  avro_interop.py selftest [TEST_CODEC]    cross-checks build/tests/test_codec
                                           (or TEST_CODEC, or $OE_TEST_CODEC)
                                           with python3-avro: fingerprints,
                                           requests and receipts in both
                                           directions; prints
                                           "avro_interop: N passed, N failed"
                                           and exits 1 on any failure
"""

import hashlib
import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

import avro.io
import avro.schema

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REQUEST_AVSC = os.path.join(ROOT, "schemas", "execution_request.avsc")
RECEIPT_AVSC = os.path.join(ROOT, "schemas", "receipt.avsc")
RECEIPT_V1_AVSC = os.path.join(ROOT, "schemas", "receipt.v1.avsc")
RECEIPT_V2_AVSC = os.path.join(ROOT, "schemas", "receipt.v2.avsc")

# ---- CRC-64-AVRO, computed here from the canonical form ----

EMPTY = 0xC15D213AA4D7A795
_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data):
    fp = EMPTY
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ b) & 0xFF]
    return fp


def load_schema(path):
    with open(path, encoding="utf-8") as f:
        schema = avro.schema.parse(f.read())
    canonical = schema.canonical_form
    return schema, canonical, crc64_avro(canonical.encode("utf-8"))


REQ_SCHEMA, REQ_CANONICAL, REQ_FP = load_schema(REQUEST_AVSC)
REC_SCHEMA, REC_CANONICAL, REC_FP = load_schema(RECEIPT_AVSC)
REC1_SCHEMA, REC1_CANONICAL, REC1_FP = load_schema(RECEIPT_V1_AVSC)
REC2_SCHEMA, REC2_CANONICAL, REC2_FP = load_schema(RECEIPT_V2_AVSC)

# ---- framing ----


def write_frames(path, messages):
    with open(path, "wb") as f:
        for m in messages:
            f.write(struct.pack(">I", len(m)))
            f.write(m)


def read_frames(path):
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], 0
    while off < len(data):
        if len(data) - off < 4:
            raise ValueError("truncated frame header at %d" % off)
        (n,) = struct.unpack(">I", data[off : off + 4])
        off += 4
        if n > len(data) - off:
            raise ValueError("truncated frame at %d" % off)
        out.append(data[off : off + n])
        off += n
    return out


def single_object(fp, schema, datum):
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(buf))
    return b"\xc3\x01" + struct.pack("<Q", fp) + buf.getvalue()


def read_single_object(message, fp, schema):
    if len(message) < 10 or message[:2] != b"\xc3\x01":
        raise ValueError("no C3 01 single-object header")
    (got,) = struct.unpack("<Q", message[2:10])
    if got != fp:
        raise ValueError("fingerprint %016x, expected %016x" % (got, fp))
    body = io.BytesIO(message[10:])
    datum = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(body))
    if body.tell() != len(message) - 10:
        raise ValueError("%d trailing bytes" % (len(message) - 10 - body.tell()))
    return datum


# ---- requests ----


def compact(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def request_hash(action, payload):
    return hashlib.sha256(compact({"action": action, "payload": payload}).encode()).hexdigest()


ALPHABET = (
    "abcxyzABC019 _-.:/\\\"'\n\t\x01\x7f"
    "\u00e9\u00fc\u4e2d\u6587\u0416\u2603\U0001f600\U0001d11e\ufeff\u2028"
)


def rand_text(rng, lo=0, hi=12):
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(lo, hi)))


def rand_value(rng, depth):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 7, 2**31, -(2**63), 2**63, 10**30, -(10**40) + 3])
    if kind == 3:
        return rng.randint(-(10**6), 10**6)
    if kind == 4:
        return rng.choice(
            [0.0, -0.0, 0.1, 1.5, 1e16, 1e-07, 1e300, -2.5e-300, 5e-324, rng.uniform(-1e9, 1e9)]
        )
    if kind == 5:
        return rand_text(rng)
    if kind in (6, 7):
        return {rand_text(rng, 0, 6): rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def payload_text(rng, obj):
    """The payload as some producer might write it: any key order,
    separators and escaping; the decoder must normalise it."""
    return json.dumps(
        obj,
        sort_keys=rng.random() < 0.5,
        ensure_ascii=rng.random() < 0.5,
        separators=rng.choice([(",", ":"), (", ", ": "), (" ,", " :  ")]),
    )


def make_requests(n, seed=1234):
    """(datum, expected line) pairs: mostly valid, some that must be
    rejected, every tenth with an approval artifact."""
    rng = random.Random(seed)
    special = [
        # (action, payload text, nonce, expected error code or None)
        ("echo", "", "empty-payload", None),
        ("echo", "null", "null-payload", None),
        ("echo", "[1, 2]", "list-payload", "malformed"),
        ("echo", "{nope", "bad-json", "malformed"),
        ("echo", '{"a": 1, "a": 2}', "dup-key", "malformed"),
        ("echo", "[" * 70 + "]" * 70, "deep", "malformed"),
        ("echo", '{"x": NaN}', "nan", "malformed"),
        ("", "{}", "empty-action", "invalid_request"),
        ("echo", "{}", "", "invalid_request"),
        ("echo", "{}", "n" * 256, None),
        ("echo", "{}", "n" * 257, "invalid_request"),
        ("echo", "{}", "nul\x00nonce", "malformed"),
        ("ec\x00ho", "{}", "nul-action", "malformed"),
    ]
    out = []
    for i in range(n):
        art = None
        if i < len(special):
            action, ptext, nonce, error = special[i]
            payload = json.loads(ptext) if error is None and ptext else {}
            if payload is None:
                payload = {}
        else:
            error = None
            action = rng.choice(["echo", "add", rand_text(rng, 1, 20)])
            nonce = "nonce-%d-%s" % (i, rand_text(rng, 0, 30))
            payload = {
                rand_text(rng, 0, 8): rand_value(rng, 1) for _ in range(rng.randint(0, 6))
            }
            ptext = payload_text(rng, payload)
            if i % 10 == 0:
                art = {
                    "approval_id": "ap-%d" % i,
                    "action_hash": request_hash(action, payload),
                    "signature": rand_text(rng, 0, 88),
                    "issued_by": "clawshield",
                    "issued_at": "2026-01-01T00:00:00Z",
                    "tenant_id": rand_text(rng, 0, 10),
                    "expires_at": rng.choice([None, "2026-01-01T01:00:00Z"]),
                }
        datum = {"action": action, "payload": ptext, "nonce": nonce, "approval_artifact": art}
        if error is None:
            expected = {
                "decode": "ok",
                "action": action,
                "nonce": nonce,
                "payload": compact(payload),
                "request_hash": request_hash(action, payload),
                "approval_id": art["approval_id"] if art else None,
                "artifact": art,
            }
        else:
            expected = {
                "decode": "rejected",
                "error_code": error,
                # fields with NUL cannot be read: null
                "action": None if "\x00" in action else action,
                "nonce": None if "\x00" in nonce else nonce,
            }
        out.append((datum, expected))
    return out


def line_of_request(datum):
    """The decode-requests line for a request read by python3-avro."""
    payload = json.loads(datum["payload"]) if datum["payload"] else {}
    if payload is None:
        payload = {}
    art = datum["approval_artifact"]
    return {
        "decode": "ok",
        "action": datum["action"],
        "nonce": datum["nonce"],
        "payload": compact(payload),
        "request_hash": request_hash(datum["action"], payload),
        "approval_id": art["approval_id"] if art else None,
        "artifact": art,
    }


def same_decode(got, expected):
    """Compares a C decode line with the expectation (detail is free text)."""
    keys = set(expected) - {"detail"}
    return {k: got.get(k) for k in keys} == {k: expected[k] for k in keys} and got.get(
        "decode"
    ) == expected["decode"]


# ---- receipts ----


def receipt_line(datum):
    # DatumReader returns the record's fields in schema order, the order of
    # the C JSON receipts; json.dumps' defaults are their style. A signed
    # receipt's proof is a JSON text in Avro, which the C JSON receipt
    # carries as the object itself (that text, pasted), and leaves out when
    # null.
    d = dict(datum)
    proof = d.pop("proof", None)
    line = json.dumps(d)
    if proof is not None:
        line = line[:-1] + ', "proof": ' + proof + "}"
    return line


def make_receipts(n, seed=99, version=3):
    """Receipts of the current schema (result_json the same text as
    result), or of its second version (no action_code_hash) or first (no
    result_json either)."""
    rng = random.Random(seed)

    def opt():
        return None if rng.random() < 0.3 else rand_text(rng, 0, 40)

    out = []
    for _ in range(n):
        result = (None if rng.random() < 0.3
                  else json.dumps(rand_value(rng, 0), sort_keys=True))
        d = {
            "id": opt(),
            "nonce": rand_text(rng, 0, 30),
            "action": rand_text(rng, 0, 10),
            "request_hash": rng.choice(["", hashlib.sha256(rand_text(rng).encode()).hexdigest()]),
            "status": rng.choice(["executed", "replayed", "rejected"]),
            "approved": rng.random() < 0.5,
            "result": result,
            "result_json": result,
            "receipt": opt(),
            "error_code": rng.choice([None, "malformed", "nonce_conflict", "not_allowed"]),
            "detail": opt(),
            "approval_id": opt(),
            "action_code_hash": rng.choice(
                [None, hashlib.sha256(rand_text(rng).encode()).hexdigest()]),
            # A signed receipt's proof: its JSON text, compact and sorted
            # as the C decoder keeps it.
            "proof": (None if rng.random() < 0.3 else json.dumps(
                {"checkpoint": rand_text(rng, 0, 40), "inclusion": [rand_text(rng, 0, 8)],
                 "leaf": rand_text(rng, 0, 40), "log_index": rng.randrange(1 << 40),
                 "log_origin": "openexec/" + rand_text(rng, 1, 8)},
                sort_keys=True, separators=(",", ":"))),
        }
        if version < 3:
            del d["action_code_hash"]
        if version < 2:
            del d["result_json"]
        out.append(d)
    return out


def as_current(d):
    """A receipt of an earlier version as the C decoder reports it: with
    result_json (the same text as result) and action_code_hash (null), in
    the current schema's order."""
    out = {}
    for k, v in d.items():
        out[k] = v
        if k == "result" and "result_json" not in d:
            out["result_json"] = v
        if k == "approval_id":
            out["action_code_hash"] = d.get("action_code_hash")
    return out


# ---- modes ----


def mode_encode_requests(n, path):
    pairs = make_requests(n)
    write_frames(path, [single_object(REQ_FP, REQ_SCHEMA, d) for d, _ in pairs])
    for _, expected in pairs:
        print(json.dumps(expected))
    return 0


def mode_decode_requests(path):
    for m in read_frames(path):
        print(json.dumps(line_of_request(read_single_object(m, REQ_FP, REQ_SCHEMA))))
    return 0


def mode_decode_receipts(path):
    for m in read_frames(path):
        print(receipt_line(read_single_object(m, REC_FP, REC_SCHEMA)))
    return 0


def fingerprints():
    return {
        "request_fingerprint": "%016x" % REQ_FP,
        "request_canonical": REQ_CANONICAL,
        "receipt_fingerprint": "%016x" % REC_FP,
        "receipt_canonical": REC_CANONICAL,
    }


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL %s" % what)


def run(binary, *args):
    p = subprocess.run([binary, *args], capture_output=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(
            "%s %s exited %d: %s" % (binary, " ".join(args), p.returncode, p.stderr.decode())
        )
    return p.stdout.decode("utf-8").splitlines()


def selftest(binary):
    t = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        # 1. Canonical forms and fingerprints: ours against python3-avro's.
        try:
            got = json.loads(run(binary, "--fingerprints")[0])
            t.check(got == fingerprints(),
                    "fingerprints: C %s != python %s" % (got, fingerprints()))
        except Exception as e:  # noqa: BLE001
            t.check(False, "fingerprints: %s" % e)

        # 2. Requests written by python3-avro, read by the C codec.
        try:
            pairs = make_requests(400)
            path = os.path.join(tmp, "requests.bin")
            write_frames(path, [single_object(REQ_FP, REQ_SCHEMA, d) for d, _ in pairs])
            lines = run(binary, "--decode-requests", path)
            t.check(len(lines) == len(pairs), "decode-requests: %d lines for %d messages"
                    % (len(lines), len(pairs)))
            for i, ((datum, expected), line) in enumerate(zip(pairs, lines)):
                got = json.loads(line)
                t.check(same_decode(got, expected),
                        "python->C request %d: %r\n    got      %s\n    expected %s"
                        % (i, datum, line, json.dumps(expected)))
        except Exception as e:  # noqa: BLE001
            t.check(False, "python->C requests: %s" % e)

        # 3. Requests written by the C codec, read by python3-avro.
        try:
            path = os.path.join(tmp, "c_requests.bin")
            lines = run(binary, "--encode-requests", path)
            messages = read_frames(path)
            t.check(len(lines) == len(messages) and messages,
                    "encode-requests: %d lines, %d messages" % (len(lines), len(messages)))
            for i, (m, line) in enumerate(zip(messages, lines)):
                got = line_of_request(read_single_object(m, REQ_FP, REQ_SCHEMA))
                t.check(got == json.loads(line),
                        "C->python request %d:\n    python %s\n    C      %s"
                        % (i, json.dumps(got), line))
        except Exception as e:  # noqa: BLE001
            t.check(False, "C->python requests: %s" % e)

        # 4. Receipts written by the C codec, read by python3-avro: the
        # decoded record printed by json.dumps is byte for byte the C JSON
        # receipt.
        try:
            path = os.path.join(tmp, "receipts.bin")
            lines = run(binary, "--encode-receipts", path)
            messages = read_frames(path)
            t.check(len(lines) == len(messages) and messages,
                    "encode-receipts: %d lines, %d messages" % (len(lines), len(messages)))
            for i, (m, line) in enumerate(zip(messages, lines)):
                got = receipt_line(read_single_object(m, REC_FP, REC_SCHEMA))
                t.check(got == line, "C->python receipt %d:\n    python %s\n    C      %s"
                        % (i, got, line))
        except Exception as e:  # noqa: BLE001
            t.check(False, "C->python receipts: %s" % e)

        # 5. Receipts written by python3-avro, read by the C codec and
        # rendered by oe_receipt_to_json: again byte for byte json.dumps;
        # those of the schema's earlier versions too (still read, reported
        # with result_json and action_code_hash).
        for label, receipts, fp, schema in (
                ("", make_receipts(200), REC_FP, REC_SCHEMA),
                (" v2", make_receipts(100, seed=5, version=2), REC2_FP, REC2_SCHEMA),
                (" v1", make_receipts(100, seed=7, version=1), REC1_FP, REC1_SCHEMA)):
            try:
                path = os.path.join(tmp, "py_receipts%s.bin" % label.strip())
                write_frames(path, [single_object(fp, schema, d) for d in receipts])
                lines = run(binary, "--decode-receipts", path)
                t.check(len(lines) == len(receipts), "decode-receipts%s: %d lines for %d messages"
                        % (label, len(lines), len(receipts)))
                for i, (d, line) in enumerate(zip(receipts, lines)):
                    want = receipt_line(as_current(d) if label else d)
                    t.check(line == want, "python->C receipt%s %d:\n    C        %s\n"
                            "    expected %s" % (label, i, line, want))
            except Exception as e:  # noqa: BLE001
                t.check(False, "python->C receipts%s: %s" % (label, e))

    print("avro_interop: %d passed, %d failed" % (t.passed, t.failed))
    return 1 if t.failed else 0


def main(argv):
    if len(argv) == 4 and argv[1] == "encode-requests":
        return mode_encode_requests(int(argv[2]), argv[3])
    if len(argv) == 3 and argv[1] == "decode-requests":
        return mode_decode_requests(argv[2])
    if len(argv) == 3 and argv[1] == "decode-receipts":
        return mode_decode_receipts(argv[2])
    if len(argv) == 2 and argv[1] == "fingerprints":
        print(json.dumps(fingerprints()))
        return 0
    if len(argv) in (2, 3) and argv[1] == "selftest":
        binary = argv[2] if len(argv) == 3 else os.environ.get(
            "OE_TEST_CODEC", os.path.join(ROOT, "build", "tests", "test_codec"))
        return selftest(binary)
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
