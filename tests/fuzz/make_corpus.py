#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ from the unit-test
tables (tests/engine/test_*.c, tests/codec/test_codec.c), schemas/ and, for
signed notes, the vectors of Go's golang.org/x/mod/sumdb/note tests.

The seeds are committed; run this again after the tables change:
    python3 tests/fuzz/make_corpus.py
It needs only Python's standard library and the `openssl` command (for the
one Ed25519 signature of the approval seeds). Each seed is in the format its
harness reads (see the first comment of tests/fuzz/fuzz_<target>.c): the
Avro and approval harnesses take a first byte that picks the framing or the
keys. Seeds whose names start with "regress-" are inputs that once crashed
a harness; they are kept by hand and never removed here.
"""
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")

# The fingerprints the codec computes (tests/worker/test_codec.c checks them
# against python3-avro), little-endian in the single-object header.
REQUEST_FP = 0xBB8686793197E1C8
RECEIPT_FP = 0xF21F99C9480DEC97
SCHEMA_ID = 7  # fuzz_avro_request.c's configured Confluent schema id

HMAC_SECRET = b"fuzz-secret"  # fuzz_approval.c's keys
ED_PRIVATE = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIBbfS0H9IojZeAK1RckBHksZtpIutT81S9zjDyxVz6UF
-----END PRIVATE KEY-----
"""


# ---- C string literals out of the test tables ----

def c_unescape(body):
    """The bytes of one C string literal's body (between the quotes)."""
    out = bytearray()
    i = 0
    simple = {"n": 10, "t": 9, "r": 13, "0": 0, "a": 7, "b": 8, "f": 12, "v": 11,
              "\\": 92, '"': 34, "'": 39, "?": 63}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        e = body[i + 1]
        if e == "x":
            m = re.match(r"[0-9a-fA-F]+", body[i + 2:])
            out.append(int(m.group(0), 16))
            i += 2 + len(m.group(0))
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(int(m.group(0), 8))
            i += 1 + len(m.group(0))
        else:
            out.append(simple[e])
            i += 2
    return bytes(out)


LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def table_rows(path, marker):
    """The rows of the C array initialiser that starts at the line holding
    marker: for each row (a top-level {...} entry, or a bare literal), the
    list of its string literals with adjacent literals joined."""
    text = open(path, encoding="utf-8").read()
    start = text.index(marker)
    start = text.index("{", start + len(marker) - 1) + 1
    rows, row, depth, i = [], None, 0, start
    pending = None  # literal being joined with adjacent ones
    while True:
        c = text[i]
        if c == '"':
            m = LITERAL.match(text, i)
            lit = c_unescape(m.group(1))
            pending = lit if pending is None else pending + lit
            i = m.end()
            continue
        if text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        if c.isspace():
            i += 1
            continue
        if pending is not None:
            (row if row is not None else rows).append(pending if row is not None else [pending])
            pending = None
        if c == "{":
            depth += 1
            if depth == 1:
                row = []
        elif c == "}":
            if depth == 0:
                return rows
            depth -= 1
            if depth == 0:
                rows.append(row)
                row = None
        i += 1


def first_literals(path, marker):
    return [r[0] for r in table_rows(path, marker) if r]


# ---- Avro binary encoding (the schemas' few types) ----

def zigzag(n):
    v = (n << 1) ^ (n >> 63)
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def a_str(b):
    if isinstance(b, str):
        b = b.encode("utf-8")
    return zigzag(len(b)) + b


def a_opt(b):
    return zigzag(0) if b is None else zigzag(1) + a_str(b)


ART_FIELDS = ["approval_id", "action_hash", "signature", "issued_by", "issued_at", "tenant_id"]


def avro_request(action, payload, nonce, art=None):
    body = a_str(action) + a_str(payload) + a_str(nonce)
    if art is None:
        return body + zigzag(0)
    body += zigzag(1)
    for f in ART_FIELDS:
        body += a_str(art[f])
    return body + a_opt(art.get("expires_at"))


def avro_receipt(id_, nonce, action, request_hash, status, approved, result, receipt, error,
                 detail, approval_id):
    # schemas/receipt.avsc: result_json (the same text) after result;
    # action_code_hash and proof null
    return (a_opt(id_) + a_str(nonce) + a_str(action) + a_str(request_hash) + zigzag(status) +
            bytes([1 if approved else 0]) + a_opt(result) + a_opt(result) + a_opt(receipt) +
            a_opt(error) + a_opt(detail) + a_opt(approval_id) + a_opt(None) + a_opt(None))


def so_header(fp):
    return bytes([0xC3, 0x01]) + fp.to_bytes(8, "little")


def compact(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


# ---- the corpora ----

def write(target, seeds):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        if not name.startswith("regress-"):
            os.remove(os.path.join(d, name))
    seen = set()
    n = 0
    for name, data in seeds:
        if data in seen:
            continue
        seen.add(data)
        with open(os.path.join(d, "%s-%03d" % (name, n)), "wb") as f:
            f.write(data)
        n += 1
    print("%-13s %3d seeds" % (target, n))


def engine(name):
    return os.path.join(ROOT, "tests", "engine", name)


CODEC = os.path.join(ROOT, "tests", "codec", "test_codec.c")


def json_seeds():
    seeds = [("canon", s) for s in first_literals(engine("test_json.c"), "canon_cases[] = {")]
    seeds += [("reject", s) for s in first_literals(engine("test_json.c"), "reject_cases[] = {")]
    seeds += [("int", s) for s in first_literals(engine("test_json.c"), "} cases[] = {")]
    return seeds


def request_bodies():
    bodies = first_literals(engine("test_request.c"), "request_case cases[] = {")
    bodies += first_literals(CODEC, "json_cases[] = {")
    bodies += [r[0] for r in table_rows(CODEC, "roundtrip_json[] = {")]
    return bodies


def parsed_requests():
    """The well-formed requests of the tables, as Python values."""
    out = []
    for b in request_bodies():
        try:
            v = json.loads(b)
        except ValueError:
            continue
        if isinstance(v, dict) and isinstance(v.get("action"), str) and \
                isinstance(v.get("nonce"), str):
            out.append(v)
    return out


def artifact_of(v):
    a = v.get("approval_artifact")
    if isinstance(a, dict) and all(isinstance(a.get(f), str) for f in ART_FIELDS):
        return a
    return None


def request_seeds():
    seeds = [("json", b) for b in request_bodies()]
    # The fields form: action, nonce, payload text, artifact fields, split
    # at NUL bytes.
    for v in parsed_requests():
        fields = [v["action"], v["nonce"], compact(v.get("payload") or {})]
        a = artifact_of(v)
        if a:
            fields += [a[f] for f in ART_FIELDS]
            if isinstance(a.get("expires_at"), str):
                fields.append(a["expires_at"])
        seeds.append(("fields", "\0".join(fields).encode("utf-8")))
    seeds.append(("fields", b"echo\0n\0"))
    seeds.append(("fields", b"echo\0n\0null"))
    seeds.append(("fields", b"echo\0n\0[1]"))
    seeds.append(("fields", b"\0n\0{}"))
    seeds.append(("fields", b"echo\0\0{}"))
    seeds.append(("fields", b"e\xffcho\0n\0{}"))
    seeds.append(("fields", b"echo\0" + b"n" * 257 + b"\0{}"))
    return seeds


def approval_seeds():
    base = {
        "approval_id": "ap-1",
        "action_hash": "7291f2ca88baf3bbf1169d4a0705b285f4d0bd7877d768bf1c3a29aab9403592",
        "signature": "8dda986282d5b48f7b56a7bed663755bf34f6df69a961ddf28c4fefb6891e800",
        "issued_by": "clawshield",
        "issued_at": "2026-11-25T13:00:00+00:00",
        "tenant_id": "t1",
    }

    def lines(mode, a):
        fields = [a[f] for f in ART_FIELDS]
        if a.get("expires_at") is not None:
            fields.append(a["expires_at"])
        return bytes([mode]) + "\n".join(fields).encode("utf-8")

    seeds = []
    # Every time text of test_time_parse, as issued_at and as expires_at,
    # for each key set; first bytes 0-2 also run the sign-and-verify check.
    times = first_literals(engine("test_approval.c"), "} cases[] = {")
    for i, t in enumerate(times):
        t = t.decode("utf-8")
        seeds.append(("issued", lines(i % 3 + (3 if i % 2 else 0), dict(base, issued_at=t))))
        seeds.append(("expires", lines((i + 1) % 3, dict(base, expires_at=t))))
    # An artifact whose HMAC is right for the harness's secret.
    ok = dict(base)
    msg = ":".join([ok["approval_id"], ok["action_hash"], ok["tenant_id"], ok["issued_at"]])
    ok["signature"] = hmac.new(HMAC_SECRET, msg.encode(), hashlib.sha256).hexdigest()
    seeds.append(("hmac-valid", lines(0, ok)))
    seeds.append(("hmac-valid", lines(5, dict(ok, signature=ok["signature"].upper()))))
    # One whose Ed25519 signature is right for the harness's key.
    ed = dict(base, expires_at="2026-11-25T13:05:00Z")
    msg = "".join([ed["approval_id"], ed["tenant_id"], ed["action_hash"], ed["issued_at"],
                   ed["expires_at"]]).encode()
    sig = ed25519_sign(msg)
    if sig:
        seeds.append(("ed25519-valid", lines(1, dict(ed, signature=sig))))
        seeds.append(("ed25519-valid", lines(2, dict(ed, signature=sig))))
        bad = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
        seeds.append(("ed25519-tampered", lines(4, dict(ed, signature=bad))))
    # Request bodies that carry an artifact (the path a real one takes).
    for b in request_bodies():
        if b"approval_artifact" in b:
            seeds.append(("request", bytes([0]) + b))
            seeds.append(("request", bytes([4]) + b))
    seeds.append(("short", bytes([1]) + b"ap\nhash\nc2ln"))
    seeds.append(("empty", bytes([2])))
    return seeds


def ed25519_sign(msg):
    """Base64 Ed25519 signature of msg with the harness's key, via the
    openssl command; None when it is not available."""
    with tempfile.TemporaryDirectory() as d:
        key, data = os.path.join(d, "k.pem"), os.path.join(d, "m")
        open(key, "wb").write(ED_PRIVATE)
        open(data, "wb").write(msg)
        try:
            raw = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", key, "-rawin",
                                  "-in", data], check=True, capture_output=True).stdout
        except (OSError, subprocess.CalledProcessError):
            print("openssl could not sign: no Ed25519-valid approval seed", file=sys.stderr)
            return None
    import base64
    return base64.b64encode(raw).decode()


def avro_request_seeds():
    seeds = []
    bodies = []
    for v in parsed_requests():
        bodies.append(avro_request(v["action"], compact(v.get("payload") or {}), v["nonce"],
                                   artifact_of(v)))
    art = {"approval_id": "ap-1", "action_hash": "hash-1", "signature": "sig",
           "issued_by": "clawshield", "issued_at": "2026-01-01T00:00:00Z", "tenant_id": "tenant-1"}
    # The avro_cases table of test_codec.c.
    bodies += [
        avro_request("echo", '{"msg":"hi"}', "n-1"),
        avro_request("echo", "{}", "n-2", dict(art, expires_at="2026-01-02T00:00:00Z")),
        avro_request("add", '{"a":1}', "n-3", art),
        avro_request("echo", "", "n-4"),
        avro_request("echo", "null", "n-4b"),
        avro_request("echo", "{nope", "n-5"),
        avro_request("echo", "[1,2]", "n-6"),
        avro_request("echo", '{"a":1,"a":2}', "n-7"),
        avro_request("", "{}", "n-8"),
        avro_request("echo", "{}", ""),
        avro_request("echo", "{}", b"a\0b"),
        avro_request(b"ec\0ho", "{}", "n-9"),
        avro_request(b"ec\xffho", "{}", "n-10"),
        avro_request("echo", b"{}\0", "n-11"),
        avro_request("echo", "{}", "n-12", dict(art, signature=b"s\0g")),
        avro_request(b"\xc3\xa9\xf0\x9f\x98\x80", '{"k":"\\u00e9"}', b"n\xc3\xa9"),
    ]
    for i, b in enumerate(bodies):
        seeds.append(("single-object", bytes([1]) + b))
        if i % 2 == 0:
            seeds.append(("confluent", bytes([2]) + b))
    # Whole messages: JSON, complete headers, wrong headers.
    plain = avro_request("echo", '{"msg":"hi"}', "n-1")
    seeds += [("message", bytes([0]) + b) for b in request_bodies()[:8]]
    seeds.append(("message", bytes([0]) + so_header(REQUEST_FP) + plain))
    seeds.append(("message", bytes([0]) + bytes([0, 0, 0, 0, SCHEMA_ID]) + plain))
    seeds.append(("message", bytes([0]) + so_header(RECEIPT_FP) + plain))
    seeds.append(("message", bytes([0]) + bytes([0, 0, 0, 1, 0]) + plain))
    seeds.append(("message", bytes([0, 0xC3, 0x02])))
    # Hostile bodies (test_hostile_avro): huge and negative lengths, bad
    # union indexes, overlong varints, truncations, trailing bytes.
    for n in ((1 << 62), (1 << 31), 5, (1 << 63) - 1, -1):
        seeds.append(("hostile", bytes([1]) + zigzag(n) + b"echo"))
    for idx in (2, -1, 3, 1000000):
        seeds.append(("hostile", bytes([1]) + a_str("echo") + a_str("{}") + a_str("n") +
                      zigzag(idx)))
    seeds.append(("hostile", bytes([1]) + b"\xff" * 11))
    seeds.append(("hostile", bytes([1]) + plain[:-3]))
    seeds.append(("hostile", bytes([1]) + plain[:5]))
    seeds.append(("hostile", bytes([1]) + plain + b"\0"))
    return seeds


RECEIPTS = [
    ("1b4e28ba-2fa1-8a2b-883f-0016d3cca427", "n-1", "echo", "0123abcd", 0, True,
     '{"echo": {"msg": "h\\u00e9 \\"q\\""}}', "feedbeef", None, None, "ap-1"),
    ("1b4e28ba-2fa1-8a2b-883f-0016d3cca427", "n-1", "echo", "0123abcd", 1, False, "{}",
     "feedbeef", None, None, None),
    (None, "n-2", "add", "", 2, False, None, None, "nonce_conflict", "Nonce conflict: n-2 \u00e9",
     None),
    (None, "", "", "", 2, False, None, None, "malformed", "", None),
    (None, "n-3", "echo", "", 2, False, None, None, "some_future_code", "d", None),
]


def avro_receipt_seeds():
    seeds = []
    for r in RECEIPTS:
        body = avro_receipt(*r)
        seeds.append(("avro", bytes([1]) + body))
        seeds.append(("message", bytes([0]) + so_header(RECEIPT_FP) + body))
    seeds += [("json", bytes([0]) + j) for j in
              [r[0] for r in table_rows(CODEC, "receipt_json[] = {")]]
    seeds += [("bad-json", bytes([0]) + j) for j in
              [r[0] for r in table_rows(CODEC, "bad_json[] = {")]]
    # test_receipts's bad enum index, a boolean byte of 2, truncations, a
    # request where a receipt belongs.
    seeds.append(("hostile", bytes([1, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0])))
    seeds.append(("hostile", bytes([1, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0])))
    full = avro_receipt(*RECEIPTS[0])
    seeds.append(("hostile", bytes([1]) + full[:-4]))
    seeds.append(("hostile", bytes([1]) + full[:3]))
    seeds.append(("hostile", bytes([1]) + full + b"\0"))
    seeds.append(("hostile", bytes([0]) + so_header(REQUEST_FP) +
                  avro_request("echo", "{}", "n")))
    return seeds


def canonical_seeds():
    seeds = [("vector", s) for s in first_literals(CODEC, "canon_cases[] = {")]
    seeds += [("bad", s) for s in first_literals(CODEC, "bad[] = {")]
    for name in sorted(os.listdir(os.path.join(ROOT, "schemas"))):
        if name.endswith(".avsc"):
            seeds.append(("schema", open(os.path.join(ROOT, "schemas", name), "rb").read()))
    return seeds


def note_seeds():
    """fuzz_note.c: signed notes and key of Go's golang.org/x/mod
    sumdb/note/note_test.go (byte 0), checkpoint texts (byte 1), texts to
    sign, optionally after a key name and a space (byte 2)."""
    text = (b"If you think cryptography is the answer to your problem,\n"
            b"then you don't know what your problem is.\n")
    dash = "\u2014 ".encode()
    peter = dash + (b"PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvq"
                    b"fqdngotpRZb6KE6RyyBwJnAM=\n")
    enoch = dash + (b"EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01o"
                    b"OTGwnWLox33WWd1RvMc+QQ=\n")
    notes = [text + b"\n" + peter, text + b"\n" + peter + enoch, text + b"\n" + enoch,
             text + b"\n" + peter[:60] + b"ABCD" + peter[60:], text, text + b"\n",
             text + b"\n" + peter[:-1], b"\x01" + text + b"\n" + peter,
             text + b"\n" + peter + b"Unexpected line.\n",
             text + b"\n" + peter.replace(b"PeterNeumann", b"CarmenSandiego")]
    root = b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    checkpoints = [b"example.com/behind-the-sofa\n20852163\n" + root + b"\n",
                   b"o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
                   b"o\n1\n" + root + b"\next one\next two\n",
                   b"o\n18446744073709551615\n" + root + b"\n",
                   b"o\n012\n" + root + b"\n", b"o\n1\n" + root + b"\n\n",
                   b"o\n1\n" + root[:-2] + b"J=\n"]
    signs = [b"PeterNeumann " + text, b"example.com/log a\n\nb\n", b"x \n", b"a+b c\n",
             "salvat\u00f2re t\u2014\n".encode(), b"abc"]
    return ([("note", b"\x00" + n) for n in notes] +
            [("checkpoint", b"\x01" + c) for c in checkpoints] +
            [("sign", b"\x02" + t) for t in signs])


# fuzz_lua.c's actions, in the order its first byte picks them; bit 7 of
# that byte asks for the small budgets.
LUA_ACTIONS = ["refund", "tool-router", "key-rotation", "identity", "walk"]
SMALL_BUDGETS = 0x80


def lua_seeds():
    """fuzz_lua.c: a byte that picks the action (and the budgets), then the
    payload: the example cases of examples/actions/cases.json for their
    action, every JSON seed that parses for identity and walk, and payloads
    that steer walk (patterns, string.rep, sort, utf8.char)."""
    def seed(name, action, payload, small=False):
        sel = LUA_ACTIONS.index(action) | (SMALL_BUDGETS if small else 0)
        if not isinstance(payload, bytes):
            payload = json.dumps(payload, sort_keys=True).encode()
        return (name, bytes([sel]) + payload)

    seeds = []
    cases = json.load(open(os.path.join(ROOT, "examples", "actions", "cases.json")))
    for action in LUA_ACTIONS[:3]:
        for case in cases[action]:
            seeds.append(seed(action, action, case["payload"]))
            seeds.append(seed(action + "-small", action, case["payload"], small=True))
    generic = [s for _, s in json_seeds()]
    generic += [b'{"n": 9007199254740993, "f": -0.0, "big": 1e308, "tiny": 5e-324}',
                b'{"max": 9223372036854775807, "min": -9223372036854775808}',
                b'{"over": 9223372036854775808}', b'[-0, 1.0, 1e16, 0.1, 123456789012345678901234]',
                b'{"": {"": []}, "\u00e9": "\ud83d\ude00", "nul": "a\u0000b"}',
                b"[" * 63 + b"]" * 63, b"[" * 64 + b"]" * 64, b'{"a":' * 63 + b"1" + b"}" * 63]
    for g in generic:
        try:
            json.loads(g)
        except ValueError:
            continue
        seeds.append(seed("identity", "identity", g))
        seeds.append(seed("walk", "walk", g))
    steer = [{"p": "~%b()"}, {"p": "~(%w+)=(%w+)"}, {"p": "~%f[%a]%a+"}, {"p": "~[%d"},
             {"p": "~(()"}, {"p": "~%"}, {"p": "~" + "a?" * 30 + "a" * 30},
             {"p": "~(.-)%1"}, {"p": "~[^%s]*$"},
             {"rep": 3, "s": "ab"}, {"rep": 100000, "s": "abcdefgh"},
             {"rep": 9223372036854775807, "s": "x"}, {"rep": -1, "s": ""},
             {"sort": [3, 1, 2.5, -7]}, {"sort": [3, "a", 1]}, {"sort": ["b", "a"], "desc": True},
             {"sort": [{"a": 1}, {"b": 2}]}, {"char": 233}, {"char": 2147483647},
             {"char": -1}, {"char": 1.5},
             {"s": "1e999"}, {"s": "0x10"}, {"s": "  12  "}, {"x": "\u00e9t\u00e9"},
             {"f": 1e308, "g": -1e-308, "h": 2.5, "i": -9223372036854775808}]
    for j, v in enumerate(steer):
        seeds.append(seed("walk", "walk", v))
        seeds.append(seed("walk-small", "walk", v, small=True))
    return seeds


def main():
    write("json", json_seeds())
    write("request", request_seeds())
    write("approval", approval_seeds())
    write("avro_request", avro_request_seeds())
    write("avro_receipt", avro_receipt_seeds())
    write("canonical", canonical_seeds())
    write("note", note_seeds())
    write("lua", lua_seeds())


if __name__ == "__main__":
    main()
