"""Black-box tests of signed receipts: every ledger entry (execution or
rejection) is a leaf of the writer's append-only RFC 6962 Merkle log, each
committed batch ends with a signed C2SP checkpoint, and every receipt
carries the proof of its entry.

Each receipt is checked by three verifiers that share no code with each
other's checks: build/verifier (Go, golang.org/x/mod/sumdb/note and
transparency-dev/merkle), `openexec verify-receipt --trusted-keys` (the
product's own C), and PyCheck below (hashlib + cryptography, written from
RFC 6962/9162 and the C2SP signed-note spec alone). POST /receipts/verify
is the fourth, for what the node itself says. Whole runs are checked with
`verifier log` and, in Python, by rebuilding the tree from every leaf the
receipts carry and comparing each checkpoint's root with the ledger's
checkpoints table.

Forgeries (a changed result or status, another receipt's proof, a
checkpoint signed by an untrusted key, no proof, a tampered inclusion hash)
must be refused by every verifier, each with its reason."""

import base64
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import time
import types
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (BIN, ServiceTest, cli, decode_receipt, free_port,  # noqa: E402
                     produce, receipt_hash, request_hash, result_json, run_tests, sqlite_query)
import harness as h  # noqa: E402  (topic names are per test on Apache Kafka)
from test_kafka import KafkaCase, jreq  # noqa: E402
from test_kafka_faults import FAST_FAILOVER, QUICK_REBALANCE  # noqa: E402

VERIFIER = os.environ.get("OPENEXEC_TEST_VERIFIER",
                          os.path.join(os.path.dirname(BIN), "verifier"))
EM_DASH = "\u2014"
LEAF_FIELDS = ("action", "approval_id", "approved", "detail", "error_code", "id", "log_index",
               "nonce", "receipt", "recorded_at", "request_hash", "result", "status", "tenant")
PROOF_FIELDS = ("checkpoint", "inclusion", "leaf", "log_index", "log_origin")
RECEIPT_FIELDS = ("id", "nonce", "action", "request_hash", "status", "approved", "result",
                  "receipt", "error_code", "detail", "approval_id")
RECORDED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n")
SAME_KEY = "another process signs with this key"


# ---------------------------------------------------------------------------
# RFC 6962 / RFC 9162 and C2SP signed notes, in Python.

def sha256(data):
    return hashlib.sha256(data).digest()


def leaf_hash(leaf):
    if isinstance(leaf, str):
        leaf = leaf.encode("utf-8")
    return sha256(b"\x00" + leaf)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def mth(hashes):
    """RFC 6962 §2.1: the Merkle Tree Hash of a list of leaf hashes."""
    n = len(hashes)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def verify_inclusion(index, size, lh, path, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, lh
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def note_key_hash(name, raw_pub):
    """C2SP signed-note key hash of an Ed25519 key (algorithm byte 0x01)."""
    return sha256(name.encode("utf-8") + b"\n" + b"\x01" + raw_pub)[:4]


def raw_public(pem):
    from cryptography.hazmat.primitives import serialization as s
    if isinstance(pem, str):
        pem = pem.encode("ascii")
    return s.load_pem_public_key(pem).public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)


def private_key_of(path):
    from cryptography.hazmat.primitives import serialization as s
    with open(path, "rb") as f:
        return s.load_pem_private_key(f.read(), None)


def public_pem_of(key):
    from cryptography.hazmat.primitives import serialization as s
    return key.public_key().public_bytes(s.Encoding.PEM,
                                         s.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def raw_of_private(key):
    from cryptography.hazmat.primitives import serialization as s
    return key.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)


def split_note(note):
    """(text, [(name, keyhash, sig)]) of a signed note; ValueError if
    malformed."""
    i = note.find("\n\n")
    if i < 0:
        raise ValueError("no blank line before the signatures")
    text, rest = note[:i + 1], note[i + 2:]
    if not rest.endswith("\n"):
        raise ValueError("signature block does not end with a newline")
    sigs = []
    for line in rest[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise ValueError("signature line %r does not start with an em dash" % line[:40])
        name, _, b64 = line[2:].rpartition(" ")
        raw = base64.b64decode(b64, validate=True)
        if len(raw) != 68:
            raise ValueError("signature of %d bytes" % len(raw))
        sigs.append((name, raw[:4], raw[4:]))
    return text, sigs


def sign_note(text, name, key, claimed_raw_pub=None):
    """A signed note of text by key (cryptography Ed25519PrivateKey); the
    signature line names the key hash of claimed_raw_pub (default: key's)."""
    raw = claimed_raw_pub or raw_of_private(key)
    sig = key.sign(text.encode("utf-8"))
    return text + "\n" + "%s %s %s\n" % (
        EM_DASH, name, base64.b64encode(note_key_hash(name, raw) + sig).decode("ascii"))


def checkpoint_text(origin, size, root):
    return "%s\n%d\n%s\n" % (origin, size, base64.b64encode(root).decode("ascii"))


class PyCheck:
    """An independent verifier of receipts: proof present, checkpoint signed
    by a trusted key under the log's name, leaf included in its tree, leaf in
    canonical form and equal to what the receipt says, receipt hash."""

    def __init__(self, raw_pubs):
        self.keys = list(raw_pubs)
        self._notes = {}

    def open_note(self, note):
        """(origin, size, root) of a checkpoint a trusted key signed; raises
        ValueError with the reason."""
        if note in self._notes:
            return self._notes[note]
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        text, sigs = split_note(note)
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise ValueError("checkpoint text has %d lines" % len(lines))
        origin, size_text, root_b64 = lines[:3]
        if not re.match(r"^(0|[1-9][0-9]*)$", size_text):
            raise ValueError("checkpoint size %r" % size_text)
        root = base64.b64decode(root_b64, validate=True)
        if len(root) != 32:
            raise ValueError("checkpoint root of %d bytes" % len(root))
        trusted = False
        for name, kh, sig in sigs:
            for raw in self.keys:
                if kh != note_key_hash(name, raw):
                    continue
                try:
                    Ed25519PublicKey.from_public_bytes(raw).verify(sig, text.encode("utf-8"))
                except InvalidSignature:
                    raise ValueError("checkpoint: bad signature by trusted key %s" % name)
                if name != origin:
                    raise ValueError("checkpoint: signed as %r, not as its origin %r"
                                     % (name, origin))
                trusted = True
        if not trusted:
            raise ValueError("checkpoint: no signature by a trusted key")
        out = (origin, int(size_text), root)
        self._notes[note] = out
        return out

    def check(self, rec):
        """None if rec verifies, else the reason."""
        try:
            self._check(rec)
            return None
        except (ValueError, KeyError, TypeError) as e:
            return str(e) or repr(e)

    def _check(self, rec):
        proof = rec.get("proof")
        if proof is None:
            raise ValueError("no proof")
        if isinstance(proof, str):  # Avro receipts: the proof as JSON text
            proof = json.loads(proof)
        if sorted(proof) != sorted(PROOF_FIELDS):
            raise ValueError("proof fields %s" % sorted(proof))
        origin, size, root = self.open_note(proof["checkpoint"])
        if origin != proof["log_origin"]:
            raise ValueError("checkpoint origin %r, proof says %r" % (origin, proof["log_origin"]))
        index = proof["log_index"]
        path = [base64.b64decode(x, validate=True) for x in proof["inclusion"]]
        if any(len(p) != 32 for p in path):
            raise ValueError("inclusion: a hash is not 32 bytes")
        if not verify_inclusion(index, size, leaf_hash(proof["leaf"]), path, root):
            raise ValueError("inclusion: leaf %d not in the tree of size %d" % (index, size))
        leaf = json.loads(proof["leaf"])
        if proof["leaf"] != json.dumps(leaf, sort_keys=True, separators=(",", ":")):
            raise ValueError("leaf: not canonical JSON")
        # action_code_hash only when a Lua action ran (never null).
        if sorted(set(leaf) - {"action_code_hash"}) != sorted(LEAF_FIELDS) or \
                leaf.get("action_code_hash", "") is None:
            raise ValueError("leaf: fields %s" % sorted(leaf))
        if leaf["log_index"] != index:
            raise ValueError("leaf: log_index %r, proof says %r" % (leaf["log_index"], index))
        if not RECORDED_AT.match(leaf["recorded_at"]):
            raise ValueError("leaf: recorded_at %r" % leaf["recorded_at"])
        status = rec.get("status")
        if leaf["status"] != {"replayed": "executed"}.get(status, status):
            raise ValueError("leaf: status %r, receipt says %r" % (leaf["status"], status))
        for f in ("id", "nonce", "action", "request_hash", "receipt", "error_code", "detail",
                  "approval_id", "approved", "action_code_hash"):
            if f in rec and rec[f] != leaf.get(f):
                raise ValueError("leaf: %s %r, receipt says %r" % (f, leaf.get(f), rec[f]))
        # The result text, claimed as result_json and as result (the text,
        # or in an /execute answer the value itself): each must be the
        # leaf's.
        if "result_json" in rec and rec["result_json"] != leaf["result"]:
            raise ValueError("leaf: result %r, receipt's result_json says %r"
                             % (leaf["result"], rec["result_json"]))
        if "result" in rec:
            claimed = rec["result"]
            if claimed is not None and not isinstance(claimed, str):
                claimed = result_json(claimed)  # an /execute answer: the value itself
            elif isinstance(claimed, str) and claimed != leaf["result"]:
                claimed = result_json(claimed)  # perhaps the value, a string result
            if claimed != leaf["result"]:
                raise ValueError("leaf: result %r, receipt says %r" % (leaf["result"], claimed))
        if leaf["status"] == "executed":
            want = hashlib.sha256(("%s:%s" % (leaf["id"], leaf["result"])).encode()).hexdigest()
            if rec.get("receipt") != want:
                raise ValueError("receipt hash %r is not sha256(id:result)" % rec.get("receipt"))


# ---------------------------------------------------------------------------
# The tools.

def keygen(path):
    """`openexec keygen --out PATH`: (public PEM text, key_id, vkey), with
    its printout checked against the key file (read with cryptography)."""
    p = cli(["keygen", "--out", path])
    if p.returncode != 0:
        raise AssertionError("openexec keygen: exit %d: %s" % (p.returncode, p.stderr))
    m = PEM_BLOCK.search(p.stdout)
    kid = re.search(r"^key_id: ([0-9a-f]{64})$", p.stdout, re.M)
    vkey = re.search(r"^vkey: (\S+)$", p.stdout, re.M)
    if not (m and kid and vkey):
        raise AssertionError("openexec keygen printed %r" % p.stdout)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode != 0o600:
        raise AssertionError("keygen wrote %s with mode %o" % (path, mode))
    key = private_key_of(path)
    raw = raw_of_private(key)
    if raw_public(m.group(0)) != raw:
        raise AssertionError("keygen printed a public key that is not the key file's")
    if kid.group(1) != hashlib.sha256(raw).hexdigest():
        raise AssertionError("key_id %s is not sha256 of the raw public key" % kid.group(1))
    name = "openexec/" + kid.group(1)[:16]
    want_vkey = "%s+%s+%s" % (name, note_key_hash(name, raw).hex(),
                              base64.b64encode(b"\x01" + raw).decode("ascii"))
    if vkey.group(1) != want_vkey:
        raise AssertionError("vkey %s, expected %s" % (vkey.group(1), want_vkey))
    return m.group(0), kid.group(1), vkey.group(1)


def write_lines(path, docs):
    """JSON lines: bytes are written as they are, objects as json.dumps."""
    with open(path, "wb") as f:
        for d in docs:
            if not isinstance(d, (bytes, bytearray)):
                d = json.dumps(d).encode("utf-8")
            assert b"\n" not in d, d[:200]
            f.write(d + b"\n")
    return path


def run_tool(argv, stdin=None, timeout=60):
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              timeout=timeout, env=h.clean_env())
    except subprocess.TimeoutExpired as e:
        raise AssertionError("%s did not finish within %d s (stderr %r)"
                             % (" ".join(argv), timeout, e.stderr))


def key_set(path_of, name="node.key"):
    """A writer's key made with `openexec keygen` (path_of(name)) and its
    public key in a trusted keys file beside it: .key, .pem_file, .pem,
    .raw (the raw public key), .key_id, .vkey and .origin (the default
    log origin)."""
    key = path_of(name)
    pem, key_id, vkey = keygen(key)
    pem_file = path_of(name + ".pem")
    with open(pem_file, "w") as f:
        f.write(pem)
    return types.SimpleNamespace(key=key, pem_file=pem_file, pem=pem, raw=raw_public(pem),
                                 key_id=key_id, vkey=vkey, origin="openexec/" + key_id[:16])


def go_verifier(mode, pem_file, receipts_file, checkpoints_file=None):
    extra = ["--checkpoints", checkpoints_file] if checkpoints_file else []
    return run_tool([VERIFIER, mode, "--trusted-keys", pem_file] + extra + [receipts_file])


def cli_verify(pem_file, receipts_file, stdin=None):
    argv = [BIN, "verify-receipt", "--trusted-keys", pem_file]
    argv.append(receipts_file if stdin is None else "-")
    return run_tool(argv, stdin=stdin)


def cli_verdicts(stdout):
    """The lines of `verify-receipt --trusted-keys`: one per receipt,
    `valid` or `invalid: REASON`, prefixed `line N: ` when the input holds
    several. Returns [verdict]; AssertionError on any other line, or on
    line numbers out of order."""
    out = []
    for k, line in enumerate(stdout.splitlines(), 1):
        m = re.match(r"^(?:line (\d+): )?(valid|invalid: .+)$", line)
        if not m or (m.group(1) is not None and int(m.group(1)) != k):
            raise AssertionError("verify-receipt printed %r as line %d" % (line, k))
        out.append(m.group(2))
    return out


def as_json_receipt(rec):
    """An Avro receipt's proof is a string holding the JSON text: the same
    receipt with the proof as an object, as the JSON format carries it."""
    out = dict(rec)
    if isinstance(out.get("proof"), str):
        out["proof"] = json.loads(out["proof"])
    return out


def check_log(tc, receipts, cp_rows, what):
    """Rebuilds the tree from the leaves the receipts carry, in Python:
    every index 0..L-1 carried (duplicates byte-identical), and each
    checkpoint of the ledger (from_size, size, root, note) the root of its
    first SIZE leaves, chained from 0 with no hole. Returns (leaves by
    index, {note: number of receipts carrying it})."""
    by_index, carriers = {}, {}
    for rec in receipts:
        p = rec["proof"]
        by_index.setdefault(p["log_index"], set()).add(p["leaf"])
        carriers[p["checkpoint"]] = carriers.get(p["checkpoint"], 0) + 1
    forks = {i: v for i, v in by_index.items() if len(v) > 1}
    tc.assertEqual(forks, {}, "%s: indexes with different leaves (a fork)" % what)
    total = cp_rows[-1][1] if cp_rows else 0
    gaps = [i for i in range(total) if i not in by_index]
    hashes = [leaf_hash(next(iter(by_index[i]))) for i in range(total) if i in by_index]
    prev = 0
    for from_size, size, root, note in cp_rows:
        tc.assertEqual(from_size, prev, "%s: checkpoints not chained: %r" % (what, cp_rows[:5]))
        tc.assertGreater(size, from_size)
        prev = size
        body, _ = split_note(note)
        lines = body.split("\n")
        tc.assertEqual((int(lines[1]), base64.b64decode(lines[2])), (size, bytes(root)),
                       "%s: the note of checkpoint %d differs from its row" % (what, size))
        if size <= len(hashes) and not gaps:
            tc.assertEqual(mth(hashes[:size]), bytes(root),
                           "%s: checkpoint of size %d is not the root of its leaves"
                           % (what, size))
    return by_index, carriers, gaps


def mixed_request(i, tag):
    """(action, payload, nonce, result) of a varied request."""
    n = "sr-%s-%d" % (tag, i)
    k = i % 5
    if k == 0:
        return "add", {"a": i, "b": -3}, n, {"sum": i - 3}
    if k == 1:
        return "add", {"a": i + 0.25, "b": 1.5}, n, {"sum": i + 1.75}
    if k == 2:
        p = {"s": "\u00e9\u4e2d\U0001f600 \"q\"\n\t\\", "n": [1, 2.5, None, True, False]}
        return "echo", p, n, {"echo": p}
    if k == 3:
        p = {"z": {"b": 1, "a": [{"y": 2, "x": 1}]}, "big": 10 ** 15 + i}
        return "echo", p, n, {"echo": p}
    return "echo", {"i": i}, n, {"echo": {"i": i}}


# ---------------------------------------------------------------------------
# 1, 2, 4: local execution.

class SignedLocal(ServiceTest):
    def signed_server(self, key_file, db=None, env=None):
        db = db or self.path("ledger.db")
        e = {"OPENEXEC_SIGNING": "on", "OPENEXEC_SIGNING_KEY_FILE": key_file}
        e.update(env or {})
        return self.server(env=e, db=db, args=["--db", db])

    def test_1_local_answers_verify_three_ways(self):
        k = key_set(self.path)
        key, pem_file, pem, raw, key_id, vkey, origin = (k.key, k.pem_file, k.pem, k.raw,
                                                         k.key_id, k.vkey, k.origin)
        db = self.path("ledger.db")
        s = self.signed_server(key, db=db)
        tag = uuid.uuid4().hex[:8]
        reqs = [mixed_request(i, tag) for i in range(200)]
        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda r: s.execute(r[0], r[1], r[2]), reqs[:-1]))
        # A few rejections (unknown actions) and replays, then the last
        # execution alone, so that its checkpoint covers the whole log.
        unknown = [s.execute("nope-%d" % i, {"i": i}, "sr-%s-u%d" % (tag, i)) for i in range(10)]
        replays = [s.execute(*reqs[i][:3]) for i in range(0, 50, 5)]
        answers.append(s.execute(*reqs[-1][:3]))
        dt = time.monotonic() - t0
        bodies = []
        for (action, payload, nonce, result), r in zip(reqs, answers):
            b = self.assertExecuted(r, action, payload, nonce, result=result)
            self.assertIn("proof", b, "an execution answer without a proof: %r" % r)
            bodies.append(b)
        # A rejection's answer: the reason and the proof of its entry.
        rejected = []
        for i, r in enumerate(unknown):
            self.assertEqual(r.status, 400, r)
            self.assertEqual(set(r.json), {"detail", "proof"}, r)
            leaf = json.loads(r.json["proof"]["leaf"])
            self.assertEqual((leaf["status"], leaf["error_code"], leaf["detail"], leaf["nonce"]),
                             ("rejected", "unknown_action", r.json["detail"],
                              "sr-%s-u%d" % (tag, i)), leaf)
            # The receipt it proves, as Kafka carries it: the leaf's fields.
            rejected.append(dict({k: leaf[k] for k in RECEIPT_FIELDS}, proof=r.json["proof"]))
        for r, i in zip(replays, range(0, 50, 5)):
            self.assertExecuted(r, *reqs[i][:3], result=reqs[i][3], status="replayed")
        leaves = 210
        py = PyCheck([raw])
        # Replays: noted, not asserted on.
        replay_proofs = [r.json for r in replays if "proof" in r.json]
        print("    %d executions, 10 unknown actions, 10 replays over HTTP in %.2f s; "
              "replays with a proof: %d of 10, of which %d verify in Python"
              % (len(bodies), dt, len(replay_proofs),
                 sum(1 for b in replay_proofs if py.check(b) is None)))
        # What a proof costs: the answer's bytes, and the same answer without
        # its "proof" member in the answers' own layout (json.dumps defaults).
        with_p = [len(r.body) for r in answers]
        without = [len(json.dumps({k: v for k, v in b.items() if k != "proof"}).encode())
                   for b in bodies]
        print("    answer size: %.0f bytes with proof, %.0f without (mean of 200); "
              "proof of the last answer: %d inclusion hashes"
              % (sum(with_p) / 200, sum(without) / 200, len(bodies[-1]["proof"]["inclusion"])))

        # (c) Python, and what the leaf says against the request.
        t_start = datetime.now(timezone.utc).timestamp() - dt - 60
        indexes = set()
        for (action, payload, nonce, result), b in zip(reqs, bodies):
            self.assertEqual(py.check(b), None, b)
            p = b["proof"]
            leaf = json.loads(p["leaf"])
            self.assertEqual(p["log_origin"], origin)
            want = {"action": action, "approval_id": None, "approved": True, "detail": None,
                    "error_code": None, "id": b["id"], "log_index": p["log_index"],
                    "nonce": nonce, "receipt": receipt_hash(b["id"], result),
                    "request_hash": request_hash(action, payload),
                    "result": result_json(result), "status": "executed", "tenant": ""}
            self.assertEqual({k: leaf[k] for k in want}, want)
            self.assertEqual(p["leaf"], json.dumps(leaf, sort_keys=True, separators=(",", ":"),
                                                   ensure_ascii=True))
            ts = datetime.strptime(leaf["recorded_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=timezone.utc).timestamp()
            self.assertTrue(t_start <= ts <= time.time() + 1, leaf["recorded_at"])
            indexes.add(p["log_index"])
        self.assertEqual(len(indexes), 200)
        self.assertTrue(indexes <= set(range(leaves)), sorted(indexes)[-5:])
        last = py.open_note(bodies[-1]["proof"]["checkpoint"])
        self.assertEqual(last[:2], (origin, leaves))
        # The note is signed under the log's name with the key of keygen's vkey.
        _, sigs = split_note(bodies[-1]["proof"]["checkpoint"])
        self.assertEqual([(n, kh.hex()) for n, kh, _ in sigs],
                         [(origin, vkey.split("+")[1])])

        # (a) The Go verifier.
        f = write_lines(self.path("answers.jsonl"), [r.body for r in answers])
        g = go_verifier("receipts", pem_file, f)
        print("    verifier receipts: exit %d: %s" % (g.returncode, g.stdout.strip()))
        self.assertEqual((g.returncode, g.stderr), (0, ""))
        self.assertEqual(g.stdout.strip(), "200 receipts valid, 1 logs, largest checkpoint size %d"
                         % leaves)
        # The rejections' receipts built from their answers: valid to the Go
        # verifier, the CLI and /receipts/verify.
        fr = write_lines(self.path("rejections.jsonl"), rejected)
        g = go_verifier("receipts", pem_file, fr)
        self.assertEqual((g.returncode, g.stderr), (0, ""))
        self.assertTrue(g.stdout.startswith("10 receipts valid, 1 logs"), g.stdout)
        c = cli_verify(pem_file, fr)
        self.assertEqual((c.returncode, cli_verdicts(c.stdout)), (0, ["valid"] * 10), c.stderr)
        for rec in rejected[:3]:
            v = s.post("/receipts/verify", rec)
            self.assertEqual((v.status, v.json), (200, {"valid": True}), rec)
        forged = dict(rejected[0], detail="something else")
        v = s.post("/receipts/verify", forged)
        self.assertEqual((v.status, v.json.get("valid")), (200, False), v.json)
        # The answer as it came ({"detail", "proof"}) verifies as it is too,
        # by /receipts/verify and verify-receipt; another detail does not.
        for r in unknown[:3]:
            v = s.post("/receipts/verify", r.json)
            self.assertEqual((v.status, v.json), (200, {"valid": True}), r.json)
        c = cli_verify(pem_file, write_lines(self.path("answers-rej.jsonl"),
                                             [r.body for r in unknown]))
        self.assertEqual((c.returncode, cli_verdicts(c.stdout)), (0, ["valid"] * 10), c.stderr)
        v = s.post("/receipts/verify", dict(unknown[0].json, detail="Unknown action: other"))
        self.assertEqual((v.status, v.json.get("valid")), (200, False), v.json)
        print("    10 rejections answered with their proofs: valid to the Go verifier, the CLI "
              "and /receipts/verify; one with another detail refused: %r" % v.json.get("reason"))

        # The ledger: each execution and rejection at its index, checkpoints
        # chained, the answers' checkpoints among them.
        rows = sqlite_query(db, "SELECT nonce, log_index FROM executions")
        self.assertEqual(dict(rows), {r[2]: b["proof"]["log_index"]
                                      for r, b in zip(reqs, bodies)})
        rej = sqlite_query(db, "SELECT log_index FROM rejections")
        self.assertEqual(sorted([i for (i,) in rej] + [i for _, i in rows]), list(range(leaves)))
        cps = sqlite_query(db, "SELECT from_size, size, root, note FROM checkpoints "
                               "ORDER BY size")
        notes = {n for _, _, _, n in cps}
        self.assertEqual({b["proof"]["checkpoint"] for b in bodies} - notes, set())
        self.assertEqual(cps[-1][1], leaves)
        prev = 0
        for from_size, size, root, note in cps:
            self.assertEqual(from_size, prev)
            self.assertEqual(py.open_note(note), (origin, size, bytes(root)))
            prev = size
        logs = sqlite_query(db, "SELECT origin, key_id, public_key FROM logs")
        self.assertEqual(len(logs), 1, logs)
        self.assertEqual(logs[0][:2], (origin, key_id))
        self.assertIn(bytes(logs[0][2]), (raw, base64.b64decode(pem.split("\n")[1])), logs)
        print("    ledger: %d checkpoints for %d leaves (%.1f leaves per checkpoint)"
              % (len(cps), leaves, leaves / len(cps)))

        # (b) openexec verify-receipt --trusted-keys, from the file and stdin.
        c = cli_verify(pem_file, f)
        print("    openexec verify-receipt --trusted-keys: exit %d, %d lines; stderr %r"
              % (c.returncode, len(c.stdout.splitlines()), c.stderr.strip()[:200]))
        self.assertEqual((c.returncode, cli_verdicts(c.stdout)), (0, ["valid"] * 200), c.stderr)
        with open(f) as fh:
            c2 = cli_verify(pem_file, None, stdin=fh.read())
        self.assertEqual((c2.returncode, cli_verdicts(c2.stdout)), (0, ["valid"] * 200),
                         c2.stderr)
        # One bad receipt among them: exit 1, its line says why, the others
        # stay valid.
        bad = json.loads(answers[7].body)
        bad["result"] = {"forged": True}
        lines = [r.body for r in answers[:7]] + [json.dumps(bad).encode()] + \
            [r.body for r in answers[8:]]
        c3 = cli_verify(pem_file, write_lines(self.path("one-bad.jsonl"), lines))
        got = cli_verdicts(c3.stdout)
        print("    one forged receipt among 200: exit %d, its line: %r" % (c3.returncode, got[7]))
        self.assertEqual((c3.returncode, got[:7] + got[8:]), (1, ["valid"] * 199))
        self.assertRegex(got[7], r"^invalid: .*result")

    # -- 2

    def test_2_forgeries_refused_everywhere(self):
        k = key_set(self.path)
        key, pem_file, pem, raw = k.key, k.pem_file, k.pem, k.raw
        origin = "example.test/openexec-%s" % uuid.uuid4().hex[:6]
        s = self.signed_server(key, env={"OPENEXEC_LOG_ORIGIN": origin})
        tag = uuid.uuid4().hex[:8]
        answers = []
        for i in range(6):
            r = s.execute("add", {"a": i, "b": 10}, "fg-%s-%d" % (tag, i))
            answers.append(self.assertExecuted(r, "add", {"a": i, "b": 10}, "fg-%s-%d" % (tag, i),
                                               result={"sum": i + 10}))
        A, B = answers[5], answers[2]
        self.assertEqual(A["proof"]["log_origin"], origin)
        self.assertTrue(A["proof"]["inclusion"], "index 5 of 6 has an inclusion path")
        note_text, sigs = split_note(A["proof"]["checkpoint"])
        self.assertEqual([n for n, _, _ in sigs], [origin])

        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        rogue = Ed25519PrivateKey.generate()

        def forged(**changes):
            """A with changes; a changed result also changes result_json
            (the forger keeps the two names of the text in step), unless
            result_json is given."""
            f = json.loads(json.dumps(A))
            proof = changes.pop("proof", None)
            if "result" in changes and "result_json" not in changes:
                changes["result_json"] = result_json(changes["result"])
            f.update(changes)
            if proof is not None:
                f["proof"] = proof
            return f

        def with_proof(**pchanges):
            p = dict(A["proof"])
            p.update(pchanges)
            return p

        bad_result = {"sum": 999}
        flipped = bytearray(base64.b64decode(A["proof"]["inclusion"][0]))
        flipped[0] ^= 1
        # An entire one-leaf log made by the forger: a leaf that says what
        # the forger wants, its own root, the log's name, its own key.
        fake_leaf = json.loads(A["proof"]["leaf"])
        fake_leaf.update(result=result_json(bad_result), log_index=0,
                         receipt=receipt_hash(A["id"], bad_result))
        fake_leaf = json.dumps(fake_leaf, sort_keys=True, separators=(",", ":"))
        fake_note = sign_note(checkpoint_text(origin, 1, leaf_hash(fake_leaf)), origin, rogue)
        fake_log = forged(result=bad_result, receipt=receipt_hash(A["id"], bad_result),
                          proof={"checkpoint": fake_note, "inclusion": [], "leaf": fake_leaf,
                                 "log_index": 0, "log_origin": origin})
        no_proof = forged()
        del no_proof["proof"]
        # (name, receipt, {verifier: reason substring})
        cases = [
            ("changed result", forged(result=bad_result),
             {"go": "result", "cli": "result", "http": "result", "py": "result"}),
            ("changed result, result_json left as it was",
             forged(result=bad_result, result_json=A["result_json"],
                    receipt=receipt_hash(A["id"], bad_result)),
             {"go": "in the leaf but", "cli": "differ", "http": "differ", "py": "leaf:"}),
            ("changed result, receipt hash recomputed",
             forged(result=bad_result, receipt=receipt_hash(A["id"], bad_result)),
             {"go": "leaf", "cli": "leaf", "http": "leaf", "py": "leaf"}),
            ("status executed -> rejected", forged(status="rejected"),
             {"go": "status", "cli": "status", "http": "status", "py": "status"}),
            ("proof of another receipt", forged(proof=B["proof"]),
             {"go": "in the leaf but", "cli": "is not the leaf's", "http": "is not the leaf's",
              "py": "leaf:"}),
            ("checkpoint re-signed by an untrusted key",
             forged(proof=with_proof(checkpoint=sign_note(note_text, origin, rogue))),
             {"go": "no signature by a trusted key", "cli": "no signature by a trusted key",
              "http": "no signature by a trusted key", "py": "no signature by a trusted key"}),
            ("untrusted signature under the trusted key's hash",
             forged(proof=with_proof(checkpoint=sign_note(note_text, origin, rogue, raw))),
             {"go": "bad signature", "cli": "does not verify", "http": "does not verify",
              "py": "bad signature"}),
            ("a whole log of the forger's own", fake_log,
             {"go": "no signature by a trusted key", "cli": "no signature by a trusted key",
              "http": "no signature by a trusted key", "py": "no signature by a trusted key"}),
            ("seed-valid receipt with no proof", no_proof,
             {"go": "no proof", "cli": "no proof", "http": "no proof", "py": "no proof"}),
            ("tampered inclusion hash",
             forged(proof=with_proof(inclusion=[base64.b64encode(bytes(flipped)).decode()]
                                     + A["proof"]["inclusion"][1:])),
             {"go": "inclusion", "cli": "inclusion", "http": "inclusion", "py": "inclusion"}),
        ]
        # The seed's hash check alone passes every forgery but the first:
        # only the proof tells them apart.
        for name, rec, _ in cases[1:]:
            self.assertEqual(rec["receipt"], receipt_hash(rec["id"], rec["result"]), name)

        py = PyCheck([raw])
        problems = []
        table = []

        def verdicts(rec):
            """{verifier: (valid, reason)} for one receipt."""
            f = write_lines(self.path("one.jsonl"), [rec])
            out = {}
            g = go_verifier("receipts", pem_file, f)
            out["go"] = (g.returncode == 0, g.stderr.strip() if g.returncode == 1 else
                         "exit %d %s%s" % (g.returncode, g.stdout.strip(), g.stderr.strip()))
            c = cli_verify(pem_file, f)
            line = c.stdout.strip()
            try:
                v = cli_verdicts(c.stdout)
            except AssertionError:
                v = None
            if c.returncode == 0 and v == ["valid"]:
                out["cli"] = (True, "")
            elif c.returncode == 1 and v and len(v) == 1 and v[0].startswith("invalid: "):
                out["cli"] = (False, v[0][len("invalid: "):])
            else:
                out["cli"] = (None, "exit %d, stdout %r, stderr %r"
                              % (c.returncode, line[:200], c.stderr.strip()[:200]))
            r = s.post("/receipts/verify", rec)
            try:
                body = r.json
            except ValueError:
                body = None
            if r.status == 200 and body == {"valid": True}:
                out["http"] = (True, "")
            elif (r.status == 200 and isinstance(body, dict) and body.get("valid") is False
                  and isinstance(body.get("reason"), str)):
                out["http"] = (False, body["reason"])
            else:
                out["http"] = (None, "HTTP %d %s" % (r.status, r.body[:200]))
            reason = py.check(rec)
            out["py"] = (reason is None, reason or "")
            return out

        good = verdicts(A)
        table.append(("the genuine receipt", good))
        for tool, (ok, why) in good.items():
            if ok is not True:
                problems.append("%s refuses the genuine receipt: %s" % (tool, why))
        for name, rec, want in cases:
            v = verdicts(rec)
            table.append((name, v))
            for tool, sub in want.items():
                ok, why = v[tool]
                if ok is not False:
                    problems.append("%s: %s %s (%s)" % (name, tool, "ACCEPTS it" if ok else
                                                        "gives no verdict", why))
                elif sub not in why:
                    problems.append("%s: %s refuses it, but its reason %r does not say %r"
                                    % (name, tool, why, sub))
        for name, v in table:
            print("    %-52s %s" % (name, "; ".join(
                "%s %s" % (t, "valid" if ok else ("refused" if ok is False else "n/a"))
                for t, (ok, _) in sorted(v.items()))))
            for t, (ok, why) in sorted(v.items()):
                if ok is not True:
                    print("        %-4s %s" % (t, why[:160]))

        # The seed's form of /receipts/verify answers as before.
        seed = {"exec_id": A["id"], "result": A["result"], "receipt": A["receipt"]}
        r = s.post("/receipts/verify", seed)
        if (r.status, r.body and r.json) != (200, {"valid": True}):
            problems.append("seed form %r answered %r" % (seed, r))
        r = s.post("/receipts/verify", dict(seed, result=bad_result))
        if (r.status, r.body and r.json) != (200, {"valid": False}):
            problems.append("seed form with another result answered %r" % r)

        # A node that trusts only another key refuses the genuine receipt;
        # one that trusts both accepts it.
        other_pem, _, _ = keygen(self.path("other.key"))
        only_other = self.path("only-other.pem")
        both = self.path("both.pem")
        with open(only_other, "w") as f:
            f.write(other_pem)
        with open(both, "w") as f:
            f.write(other_pem + pem)
        for trusted, want_valid in ((only_other, False), (both, True)):
            n = self.server(env={"OPENEXEC_SIGNING": "on",
                                 "OPENEXEC_SIGNING_KEY_FILE": self.path("other.key"),
                                 "OPENEXEC_TRUSTED_KEYS_FILE": trusted},
                            args=["--db", self.path("n-%s.db" % want_valid)])
            r = n.post("/receipts/verify", A)
            got = r.json if r.status == 200 else r
            print("    a node trusting %s: %r" % (os.path.basename(trusted), got))
            if not (r.status == 200 and r.json.get("valid") is want_valid):
                problems.append("node trusting %s answered %r for the genuine receipt"
                                % (os.path.basename(trusted), r))
            n.stop()
        self.assertEqual(problems, [], "\n".join(problems))

    # -- 4

    def test_7_proofs_later_and_consistency(self):
        # Proofs made later from the ledger alone: an early entry in the
        # log's latest tree, and two checkpoints consistent, checked by the
        # independent verifier (transparency-dev's proof package) and by
        # the Python check; a changed hash in either is refused.
        k = key_set(self.path)
        key, pem_file, raw, origin = k.key, k.pem_file, k.raw, k.origin
        s = self.signed_server(key)
        tag = uuid.uuid4().hex[:8]
        # One at a time: a checkpoint per entry, sizes 1 to 30.
        answers = [s.execute("add", {"a": i, "b": 1}, "later-%s-%d" % (tag, i)).json
                   for i in range(30)]
        self.assertEqual([a["proof"]["log_index"] for a in answers], list(range(30)))
        t0 = time.monotonic()
        later = []
        for i in (0, 7, 29):
            r = s.get("/receipts/%s/proof?size=30" % answers[i]["id"])
            self.assertEqual(r.status, 200, r.body)
            self.assertIn("\n30\n", r.json["checkpoint"])
            self.assertEqual(r.json["leaf"], answers[i]["proof"]["leaf"])
            later.append(dict(answers[i], proof=r.json))
        r = s.get("/receipts/%s/proof" % answers[7]["id"])
        self.assertEqual(r.json, answers[7]["proof"])
        f = write_lines(self.path("later.jsonl"), later)
        g = go_verifier("receipts", pem_file, f)
        self.assertEqual((g.returncode, g.stdout.strip()),
                         (0, "3 receipts valid, 1 logs, largest checkpoint size 30"), g.stderr)
        py = PyCheck([raw])
        self.assertEqual([py.check(x) for x in later], [None, None, None])
        bad = dict(later[0], proof=dict(later[0]["proof"]))
        path = list(bad["proof"]["inclusion"])
        path[0] = base64.b64encode(b"\x00" * 32).decode()
        bad["proof"]["inclusion"] = path
        g = go_verifier("receipts", pem_file, write_lines(self.path("bad.jsonl"), [bad]))
        self.assertEqual(g.returncode, 1, g.stdout)
        self.assertIsNotNone(py.check(bad))
        # Consistency of the checkpoints of sizes 5 and 30.
        r = s.get("/log/%s/consistency?from=5&to=30" % origin)
        self.assertEqual(r.status, 200, r.body)
        c = r.json
        self.assertEqual((c["from"]["size"], c["to"]["size"], c["log_origin"]), (5, 30, origin))
        old, new = self.path("old.note"), self.path("new.note")
        for name, note in ((old, c["from"]["checkpoint"]), (new, c["to"]["checkpoint"])):
            with open(name, "w") as fh:
                fh.write(note)
        proof_file = self.path("cons.json")
        with open(proof_file, "w") as fh:
            json.dump({"proof": c["consistency"]}, fh)
        g = run_tool([VERIFIER, "consistency", "--trusted-keys", pem_file, "--old", old, "--new",
                      new, "--proof", proof_file])
        self.assertEqual(g.returncode, 0, g.stdout + g.stderr)
        tampered = list(c["consistency"])
        tampered[-1] = base64.b64encode(b"\x01" * 32).decode()
        with open(proof_file, "w") as fh:
            json.dump({"proof": tampered}, fh)
        g = run_tool([VERIFIER, "consistency", "--trusted-keys", pem_file, "--old", old, "--new",
                      new, "--proof", proof_file])
        self.assertEqual(g.returncode, 1, g.stdout + g.stderr)
        # What does not exist is 404; a size that is not a number, 422.
        self.assertEqual(s.get("/receipts/%s/proof?size=31" % answers[0]["id"]).status, 404)
        self.assertEqual(s.get("/receipts/%s/proof?size=-1" % answers[0]["id"]).status, 422)
        self.assertEqual(s.get("/log/%s/consistency?from=5&to=31" % origin).status, 404)
        self.assertEqual(s.get("/log/openexec/other/consistency?from=1&to=2").status, 404)
        print("    3 entries proved in the tree of 30 and checkpoints 5 and 30 consistent, in "
              "%.2f s; checked by the Go verifier and in Python" % (time.monotonic() - t0))

    def test_8_key_rotation(self):
        # A new key starts a new log in the same ledger; the old log stops
        # growing and its receipts stay verifiable; `ledger logs` lists both
        # with their keys and first/last use; a trusted keys file with both
        # keys verifies every receipt.
        db = self.path("rotated.db")
        keys, pems, answers = [], [], []
        for k in range(2):
            key = self.path("key-%d.key" % k)
            pem, key_id, _ = keygen(key)
            keys.append((key, key_id))
            pems.append(pem)
            s = self.signed_server(key, db=db)
            answers += [s.execute("add", {"a": i, "b": k}, "rot-%d-%d" % (k, i)).json
                        for i in range(3 + k)]
            s.stop()
        both = self.path("both.pem")
        with open(both, "w") as f:
            f.write("".join(pems))
        p = run_tool([BIN, "ledger", "logs", "--db", db])
        self.assertEqual(p.returncode, 0, p.stderr)
        logs = [json.loads(x) for x in p.stdout.splitlines()]
        self.assertEqual([(x["origin"], x["key_id"], x["entries"], x["checkpoints"])
                          for x in logs],
                         [("openexec/" + kid[:16], kid, 3 + k, 3 + k)
                          for k, (_, kid) in enumerate(keys)])
        for x, pem in zip(logs, pems):
            self.assertEqual(base64.b64decode(x["public_key"]), raw_public(pem))
            self.assertLessEqual(x["first_used"], x["last_used"])
        self.assertLessEqual(logs[0]["last_used"], logs[1]["first_used"])
        f = write_lines(self.path("rot.jsonl"), answers)
        g = go_verifier("receipts", both, f)
        self.assertEqual((g.returncode, g.stdout.strip()),
                         (0, "7 receipts valid, 2 logs, largest checkpoint size 4"), g.stderr)
        self.assertEqual(cli_verdicts(cli_verify(both, f).stdout), ["valid"] * 7)
        # With only the new key trusted, the old log's receipts are not.
        only_new = self.path("new.pem")
        with open(only_new, "w") as fh:
            fh.write(pems[1])
        verdicts = cli_verdicts(cli_verify(only_new, f).stdout)
        self.assertEqual(verdicts[3:], ["valid"] * 4)
        for v in verdicts[:3]:
            self.assertTrue(v.startswith("invalid: checkpoint: no signature by a trusted key"), v)
        a = run_tool([BIN, "ledger", "audit", "--db", db, "--trusted-keys", both])
        self.assertEqual(a.returncode, 0, a.stderr)
        print("    two keys, two logs in one ledger: %s" % a.stdout.strip().replace("\n", "; "))

    def test_4_ledger_key_made_beside_the_ledger(self):
        # The default, as `run --help` states it, is what a run without any
        # signing setting does on a SQLite ledger.
        p = cli(["run", "--help"])
        m = re.search(r"^\s*--signing V .*\[(\w+)\] \(env OPENEXEC_SIGNING\)$", p.stdout, re.M)
        self.assertTrue(m, "no default of --signing in `run --help`: %r" % p.stdout[:2000])
        default = m.group(1)
        d0 = self.path("default.db")
        s0 = self.server(db=d0, args=["--db", d0])
        a0 = s0.execute("echo", {"d": 0}, "lk-0").json
        s0.stop()
        signed = default in ("on", "auto")
        print("    default --signing %s: a run with no signing setting %s a proof, %s %s"
              % (default, "gives" if "proof" in a0 else "gives no", "made" if
                 os.path.exists(d0 + ".key") else "did not make", os.path.basename(d0 + ".key")))
        self.assertIn(default, ("on", "off", "auto"))
        self.assertEqual(("proof" in a0, os.path.exists(d0 + ".key")), (signed, signed))

        db = self.path("openexec.db")
        key = db + ".key"
        env = {"OPENEXEC_SIGNING": "on"}
        s = self.server(env=env, db=db, args=["--db", db])
        self.assertTrue(os.path.exists(key), "no %s after a start with signing on; files: %s"
                        % (key, os.listdir(self.tmp)))
        mode = stat.S_IMODE(os.stat(key).st_mode)
        with open(key, "rb") as f:
            key_bytes = f.read()
        priv = private_key_of(key)
        raw = raw_of_private(priv)
        origin = "openexec/" + hashlib.sha256(raw).hexdigest()[:16]
        print("    %s made at first start: mode %o, origin %s"
              % (os.path.basename(key), mode, origin))
        self.assertEqual(mode, 0o600)
        pem_file = self.path("trusted.pem")
        with open(pem_file, "w") as f:
            f.write(public_pem_of(priv))
        answers = []
        for i in range(5):
            r = s.execute("echo", {"run": 1, "i": i}, "lk-1-%d" % i)
            answers.append(self.assertExecuted(r, "echo", {"run": 1, "i": i}, "lk-1-%d" % i))
        s.stop()
        s2 = self.server(env=env, db=db, args=["--db", db])
        for i in range(5):
            r = s2.execute("echo", {"run": 2, "i": i}, "lk-2-%d" % i)
            answers.append(self.assertExecuted(r, "echo", {"run": 2, "i": i}, "lk-2-%d" % i))
        s2.stop()
        with open(key, "rb") as f:
            self.assertEqual(f.read(), key_bytes, "the key file changed on restart")
        origins = [a["proof"]["log_origin"] for a in answers]
        print("    origins before / after the restart: %s / %s" % (origins[0], origins[-1]))
        self.assertEqual(origins, [origin] * 10)
        self.assertEqual([a["proof"]["log_index"] for a in answers], list(range(10)))
        f = write_lines(self.path("both.jsonl"), answers)
        g = go_verifier("log", pem_file, f)
        print("    verifier log over both incarnations: %s" % g.stdout.strip())
        self.assertEqual((g.returncode, g.stderr, g.stdout.strip()),
                         (0, "", "origin %s: 10 leaves, 10 checkpoints, consistent" % origin))
        py = PyCheck([raw])
        for a in answers:
            self.assertIsNone(py.check(a), a)
        self.assertEqual(sqlite_query(db, "SELECT origin FROM logs"), [(origin,)])

        # keygen --public-of prints the public key of an existing key file.
        p = cli(["keygen", "--public-of", key])
        print("    openexec keygen --public-of: exit %d, %d lines, %s"
              % (p.returncode, len(p.stdout.splitlines()),
                 "the key's public key" if p.stdout == public_pem_of(priv) else
                 repr((p.stdout + p.stderr)[:200])))
        self.assertEqual((p.returncode, p.stdout), (0, public_pem_of(priv)), p.stderr)

        # A key file others can read: run refuses to start (exit 2), naming it.
        os.chmod(key, 0o644)
        p = cli(["run", "--http-port", str(free_port()), "--db", db],
                env={"OPENEXEC_EXECUTE": "local", "OPENEXEC_SIGNING": "on"})
        print("    beside-the-ledger key at 0644: exit %d: %s"
              % (p.returncode, p.stderr.strip().splitlines()[-1:]))
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(key, p.stderr)
        kf = self.path("loose.key")
        keygen(kf)
        os.chmod(kf, 0o644)
        p = cli(["run", "--http-port", str(free_port()), "--db", self.path("other.db")],
                env={"OPENEXEC_EXECUTE": "local", "OPENEXEC_SIGNING": "on",
                     "OPENEXEC_SIGNING_KEY_FILE": kf})
        print("    OPENEXEC_SIGNING_KEY_FILE at 0644: exit %d: %s"
              % (p.returncode, p.stderr.strip().splitlines()[-1:]))
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(kf, p.stderr)
        self.assertFalse(os.path.exists(self.path("other.db.key")))


# ---------------------------------------------------------------------------
# 3, 5, 6: the Kafka path.

class SignedKafka(KafkaCase):
    def key_files(self, name="node.key"):
        k = key_set(self.path, name)
        return k.key, k.pem_file, k.raw, k.origin

    def published(self, bootstrap, origin, last_note, timeout=30):
        """The checkpoints topic (the receipts topic + ".checkpoints") read
        until it holds last_note: [note text], in the order published,
        each keyed by the log's origin, sizes growing."""
        r = self.reader(bootstrap, h.RECEIPTS_TOPIC + ".checkpoints")
        r.wait_for(lambda rr: any(m.value == last_note.encode() for m in rr.messages), timeout,
                   "the last checkpoint on the checkpoints topic")
        r.poll(0.5)
        self.assertEqual({m.skey for m in r.messages}, {origin})
        notes = [m.value.decode("utf-8") for m in r.messages]
        sizes = [int(n.split("\n")[1]) for n in notes]
        self.assertEqual(sizes, sorted(set(sizes)), "published sizes not growing: %s" % sizes)
        return notes

    def collect(self, reader, dlq, keys, timeout=60):
        """Waits until every key has a receipt or a dead letter."""
        keys = list(keys)

        def answered(_):
            if dlq is not None:
                dlq.poll(0.02)
            by = reader.by_key()
            dl = dlq.by_key() if dlq is not None else {}
            return all(k in by or k in dl for k in keys)

        try:
            reader.wait_for(answered, timeout, "receipts for %d keys" % len(keys))
        except AssertionError:
            by = reader.by_key()
            dl = dlq.by_key() if dlq is not None else {}
            missing = [k for k in keys if k not in by and k not in dl]
            raise AssertionError("%d of %d keys unanswered after %d s, e.g. %s; logs:\n%s"
                                 % (len(missing), len(keys), timeout, missing[:5],
                                    "\n----\n".join(s.log()[-3000:] for s in self._servers)))
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            reader.poll(0.05)
            if dlq is not None:
                dlq.poll(0.02)

    # -- 3

    def test_3_kafka_run_is_one_consistent_log(self):
        key, pem_file, raw, origin = self.key_files()
        b = self.broker(partitions=4)
        db = self.path("k.db")
        w = self.worker(b.bootstrap, db=db, args=["--db", db, "--batch-max", "200"],
                        env={"OPENEXEC_SIGNING": "on", "OPENEXEC_SIGNING_KEY_FILE": key,
                             "OPENEXEC_RECEIPT_FORMAT": "json"})
        reader = self.reader(b.bootstrap)
        dlq = self.reader(b.bootstrap, h.DLQ_TOPIC)
        tag = uuid.uuid4().hex[:8]
        msgs, kinds = [], {}
        for i in range(2000):
            n = "kf-%s-%d" % (tag, i)
            if i % 40 == 7:
                msgs.append((n, jreq("nope", {"i": i}, n)))
                kinds[n] = "unknown"
            elif i % 80 == 13:
                msgs.append((n, ('{"action": "echo", "payload": {}, "nonce": "%s"' % n).encode()))
                kinds[n] = "unparsable"
            elif i % 80 == 53:
                msgs.append((n, b"\xff\xfe not a request " + n.encode()))
                kinds[n] = "garbage"
            else:
                a, p, _, _ = mixed_request(i, tag)
                msgs.append((n, jreq(a, p, n)))
                kinds[n] = (a, p, mixed_request(i, tag)[3])
        t0 = time.monotonic()
        produce(b.bootstrap, msgs)
        self.collect(reader, dlq, kinds)
        print("    %d requests produced and answered in %.2f s" % (len(msgs),
                                                                   time.monotonic() - t0))
        by, dl = reader.by_key(), dlq.by_key()
        recs = []
        outcome = {}
        for n, kind in kinds.items():
            rs, ds = by.get(n, []), dl.get(n, [])
            self.assertEqual(len(rs) + len(ds), 1, "%s (%s): %d receipts, %d dead letters"
                             % (n, kind, len(rs), len(ds)))
            if ds:
                outcome.setdefault(kind if isinstance(kind, str) else "valid", []).append("dlq")
                continue
            m = rs[0]
            self.assertEqual(m.value[:1], b"{", m)
            rec = decode_receipt(m.value)
            recs.append((m, rec))
            if isinstance(kind, tuple):
                self.assertExecutedReceipt(rec, kind[0], kind[1], n, kind[2])
                outcome.setdefault("valid", []).append("executed")
            else:
                self.assertEqual(rec["status"], "rejected", rec)
                outcome.setdefault(kind, []).append("rejected " + rec["error_code"])
        summary = {k: {x: v.count(x) for x in set(v)} for k, v in sorted(outcome.items())}
        print("    outcomes: %s" % summary)
        self.assertEqual(summary["unknown"], {"rejected unknown_action": 50})
        self.assertEqual(summary["garbage"], {"dlq": 25})
        self.assertEqual(len(summary["unparsable"]), 1, summary)  # one way for all of them
        self.assertEqual(len(reader.messages), len(recs), "receipts for other keys")
        no_proof = [rec for _, rec in recs if not rec.get("proof")]
        self.assertEqual(no_proof[:3], [], "%d receipts without a proof" % len(no_proof))
        sizes = [len(m.value) for m, _ in recs]
        bare = [len(json.dumps({k: v for k, v in rec.items() if k != "proof"},
                               separators=(",", ":"))) for _, rec in recs]
        print("    JSON receipts: %.0f bytes on average with proof, %.0f without it "
              "(re-serialized compactly)" % (sum(sizes) / len(sizes), sum(bare) / len(bare)))

        rows_x = sqlite_query(db, "SELECT nonce, log_index FROM executions")
        rows_r = sqlite_query(db, "SELECT nonce, log_index FROM rejections")
        total = len(rows_x) + len(rows_r)
        self.assertEqual(total, len(recs))
        cps = sqlite_query(db, "SELECT from_size, size, root, note FROM checkpoints ORDER BY size")
        batches = w.metrics()["openexec_batches_total"]
        self.assertEqual(cps[-1][1], total, "last checkpoint size vs executions+rejections")
        # Every receipt is valid to the Go verifier and to Python; the run
        # shows one log with no gap and no fork.
        f = write_lines(self.path("receipts.jsonl"), [m.value for m, _ in recs])
        g = go_verifier("receipts", pem_file, f)
        print("    verifier receipts: exit %d: %s %s" % (g.returncode, g.stdout.strip(),
                                                       g.stderr.strip()[:300]))
        self.assertEqual((g.returncode, g.stdout.strip()),
                         (0, "%d receipts valid, 1 logs, largest checkpoint size %d"
                          % (total, total)), g.stderr)
        g = go_verifier("log", pem_file, f)
        print("    verifier log: exit %d: %s %s" % (g.returncode, g.stdout.strip(),
                                                  g.stderr.strip()[:300]))
        self.assertEqual((g.returncode, g.stdout.strip()),
                         (0, "origin %s: %d leaves, %d checkpoints, consistent"
                          % (origin, total, len(cps))), g.stderr)
        # Each batch's checkpoint is published once, in order, and is the
        # one the ledger holds; the Go verifier checks them with the run.
        notes = self.published(b.bootstrap, origin, cps[-1][3])
        self.assertEqual(notes, [n for _, _, _, n in cps])
        g = go_verifier("log", pem_file, f,
                        write_lines(self.path("published.jsonl"),
                                    [json.dumps(n).encode() for n in notes]))
        print("    checkpoints topic: %d signed checkpoints, one per committed batch; verifier "
              "log with them: exit %d: %s %s" % (len(notes), g.returncode, g.stdout.strip(),
                                                  g.stderr.strip()[:300]))
        self.assertEqual((g.returncode, g.stdout.strip()),
                         (0, "origin %s: %d leaves, %d checkpoints, consistent"
                          % (origin, total, len(cps))), g.stderr)
        py = PyCheck([raw])
        bad = [(rec["nonce"], py.check(rec)) for _, rec in recs if py.check(rec)]
        self.assertEqual(bad[:5], [], "%d receipts refused by the Python check" % len(bad))
        by_index, carriers, gaps = check_log(self, [rec for _, rec in recs], cps, "kafka run")
        self.assertEqual(gaps, [])
        # One checkpoint per committed batch: each checkpoint is carried by
        # exactly the receipts of its batch's leaves.
        self.assertEqual(set(carriers), {n for _, _, _, n in cps},
                         "checkpoints carried by receipts vs the checkpoints table")
        self.assertEqual({n: s - f for f, s, _, n in cps}, carriers)
        self.assertLessEqual(len(cps), batches)
        nonce_index = {rec["nonce"]: rec["proof"]["log_index"] for _, rec in recs
                       if rec["nonce"]}
        for n, i in rows_x + rows_r:
            if n in nonce_index:
                self.assertEqual(nonce_index[n], i, n)
        print("    ledger: %d executions + %d rejections = %d leaves; %d checkpoints, %d "
              "batches counted; largest batch %d leaves"
              % (len(rows_x), len(rows_r), total, len(cps), batches,
                 max(s - f for f, s, _, _ in cps)))
        self.assertNoFatal(w)

    # -- 5

    def test_5_kill9_and_restart_no_gap_no_fork(self):
        key, pem_file, raw, origin = self.key_files()
        b = self.broker(partitions=4)
        db = self.path("k9.db")
        env = {"OPENEXEC_SIGNING": "on", "OPENEXEC_SIGNING_KEY_FILE": key}  # Avro receipts
        # One live worker at a time: quick sessions (the restarted one waits
        # for the killed one's to expire).
        args = ["--db", db, "--batch-max", "100"] + QUICK_REBALANCE
        tag = uuid.uuid4().hex[:8]
        reqs = [mixed_request(i, tag) for i in range(3000)]
        produce(b.bootstrap, [(n, jreq(a, p, n)) for a, p, n, _ in reqs])
        reader = self.reader(b.bootstrap)
        w1 = self.worker(b.bootstrap, db=db, args=args, env=env, start=False)
        w1.start(wait_ready=False)
        deadline = time.monotonic() + 60
        while len(reader.messages) < 600:
            self.assertLess(time.monotonic(), deadline, "600 receipts within 60 s; log: %s"
                            % w1.log()[-3000:])
            self.assertTrue(w1.alive(), w1.log()[-3000:])
            reader.poll(0.005)
        self.assertEqual(w1.kill9(), -9)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            reader.poll(0.05)
        before = len(reader.messages)
        answered = len(reader.by_key())
        stored = sqlite_query(db, "SELECT count(*) FROM executions")[0][0]
        committed = sum(h.committed_offsets(b.bootstrap, h.GROUP_ID).values())
        if stored > answered:
            where = "after a ledger commit, before all its receipts were published"
        elif answered > committed:
            where = "after the receipts were published, before the offset commit"
        else:
            where = "between batches, or inside one not yet committed to the ledger"
        print("    kill -9 after %d receipts on the topic, %d executions stored, %d offsets "
              "committed: the kill landed %s" % (before, stored, committed, where))
        self.assertLess(before, len(reqs), "the worker finished before the kill")
        t0 = time.monotonic()
        w2 = self.worker(b.bootstrap, db=db, args=args, env=env)
        self.collect(reader, None, [r[2] for r in reqs], timeout=90)
        print("    restarted; every request answered %.1f s after the restart"
              % (time.monotonic() - t0))
        avro = [decode_receipt(m.value) for m in reader.messages]
        self.assertEqual([r for r in avro if not isinstance(r.get("proof"), (str, type(None)))],
                         [], "an Avro receipt's proof is the JSON text")
        recs = [as_json_receipt(r) for r in avro]
        statuses = {}
        for r in recs:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        replays = [r for r in recs if r["status"] == "replayed"]
        with_proof = [r for r in recs if r.get("proof")]
        print("    %d receipts: %s; replays carrying a proof: %d of %d"
              % (len(recs), statuses, sum(1 for r in replays if r.get("proof")), len(replays)))
        self.assertEqual([r for r in recs if r["status"] == "executed" and not r.get("proof")],
                         [], "executions without a proof")
        per_nonce = {}
        for r in recs:
            per_nonce.setdefault(r["nonce"], []).append(r["status"])
        # A request stored before the kill but not answered is replayed
        # after the restart, not executed again.
        self.assertEqual([n for n, st in per_nonce.items() if st.count("executed") > 1][:5], [],
                         "a nonce executed twice")
        self.assertEqual(set(per_nonce), {r[2] for r in reqs})
        origins = {r["proof"]["log_origin"] for r in with_proof}
        self.assertEqual(origins, {origin})
        rows = sqlite_query(db, "SELECT nonce, log_index FROM executions")
        total = len(rows) + sqlite_query(db, "SELECT count(*) FROM rejections")[0][0]
        self.assertEqual(len(rows), len(reqs))
        cps = sqlite_query(db, "SELECT from_size, size, root, note FROM checkpoints ORDER BY size")
        self.assertEqual(cps[-1][1], total)
        by_index, carriers, gaps = check_log(self, with_proof, cps, "both incarnations")
        dups = sum(1 for r in with_proof) - len(by_index)
        nonce_at = {i: n for n, i in rows}
        gap_info = ["index %d: nonce %s, receipts %s" % (i, nonce_at.get(i), per_nonce.get(
            nonce_at.get(i))) for i in gaps[:5]]
        print("    %d leaves in the ledger, %d carried by receipts (%d duplicate receipts, "
              "byte-identical leaves); indexes carried by no receipt: %d %s"
              % (total, len(by_index), dups, len(gaps), gap_info))
        f = write_lines(self.path("run.jsonl"), with_proof)
        g = go_verifier("log", pem_file, f)
        print("    verifier log: exit %d: %s %s" % (g.returncode, g.stdout.strip(),
                                                  g.stderr.strip()[:300]))
        g2 = go_verifier("receipts", pem_file, f)
        self.assertEqual((g2.returncode, g2.stderr), (0, ""))
        self.assertEqual(gaps, [], "leaves no receipt carries: %s" % gap_info)
        self.assertEqual((g.returncode, g.stdout.strip()),
                         (0, "origin %s: %d leaves, %d checkpoints, consistent"
                          % (origin, total, len(set(carriers)))), g.stderr)
        # The checkpoints topic: what both incarnations published, in
        # order, each a checkpoint of the ledger (a batch committed just
        # before the kill may have none there), every one consistent with
        # the next and with the receipts (the Go verifier).
        notes = self.published(b.bootstrap, origin, cps[-1][3])
        ledger_notes = [n for _, _, _, n in cps]
        self.assertEqual([n for n in notes if n not in ledger_notes], [])
        g = go_verifier("log", pem_file, f,
                        write_lines(self.path("published.jsonl"),
                                    [json.dumps(n).encode() for n in notes]))
        print("    checkpoints topic: %d of the ledger's %d checkpoints published; verifier log "
              "with them: exit %d: %s %s" % (len(notes), len(cps), g.returncode,
                                             g.stdout.strip(), g.stderr.strip()[:300]))
        self.assertEqual((g.returncode, g.stdout.strip()),
                         (0, "origin %s: %d leaves, %d checkpoints, consistent"
                          % (origin, total, len(set(carriers) | set(notes)))), g.stderr)
        self.assertNoFatal(w2)

    # -- 6

    def test_6_postgresql_ledger_and_one_key_twice(self):
        import pgcluster
        import urllib.parse
        url = pgcluster.fresh_database("sr")
        dbname = urllib.parse.unquote(urllib.parse.urlparse(url).path[1:])

        def pgq(sql):
            return [tuple(r) for r in pgcluster.shared_cluster().query(dbname, sql)]

        key, pem_file, raw, origin = self.key_files()
        b = self.broker(partitions=8)
        reader = self.reader(b.bootstrap)
        env = {"OPENEXEC_SIGNING": "on", "OPENEXEC_SIGNING_KEY_FILE": key,
               "OPENEXEC_RECEIPT_FORMAT": "json"}
        args = ["--db-url", url] + FAST_FAILOVER
        wa = self.worker(b.bootstrap, env=env, args=args)
        tag = uuid.uuid4().hex[:8]
        first = [mixed_request(i, tag) for i in range(200)]
        produce(b.bootstrap, [(n, jreq(a, p, n)) for a, p, n, _ in first])
        self.collect(reader, None, [r[2] for r in first])
        recs = [decode_receipt(m.value) for m in reader.messages]
        by = reader.by_key()
        for a, p, n, res in first:
            self.assertExecutedReceipt(self.only({n: [(m, decode_receipt(m.value))
                                                      for m in by[n]]}, n), a, p, n, res)
        f = write_lines(self.path("pg1.jsonl"), [m.value for m in reader.messages])
        g = go_verifier("receipts", pem_file, f)
        print("    one worker on PostgreSQL: verifier receipts: %s" % g.stdout.strip())
        self.assertEqual((g.returncode, g.stdout.strip()),
                         (0, "200 receipts valid, 1 logs, largest checkpoint size 200"), g.stderr)
        py = PyCheck([raw])
        self.assertEqual([py.check(r) for r in recs if py.check(r)][:3], [])
        self.assertEqual(pgq("SELECT origin, key_id FROM logs"),
                         [(origin, hashlib.sha256(raw).hexdigest())])
        cps = pgq("SELECT from_size, size, root, note FROM checkpoints ORDER BY size")
        self.assertEqual(cps[-1][1], 200)
        check_log(self, recs, cps, "PostgreSQL, one worker")
        self.assertEqual(sorted(i for (i,) in pgq("SELECT log_index FROM executions")),
                         list(range(200)))

        # A second worker with the same key, same ledger, same group.
        wb = self.worker(b.bootstrap, env=env, args=args, start=False)
        wb.start(wait_ready=False)
        deadline = time.monotonic() + 40
        while True:
            a_n = wa.metrics().get("openexec_assigned_partitions", 0)
            b_n = wb.metrics().get("openexec_assigned_partitions", 0)
            if a_n > 0 and b_n > 0:
                break
            self.assertLess(time.monotonic(), deadline, "the two workers never shared the "
                            "partitions (%s, %s); log B: %s" % (a_n, b_n, wb.log()[-2000:]))
            time.sleep(0.1)
        print("    partitions: A %d, B %d" % (a_n, b_n))
        t0 = time.monotonic()
        sent = 0
        failed = None
        deadline = time.monotonic() + 40
        while failed is None:
            batch = [mixed_request(200 + sent + i, tag) for i in range(100)]
            produce(b.bootstrap, [(n, jreq(a, p, n)) for a, p, n, _ in batch])
            sent += len(batch)
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                reader.poll(0.05)
            for name, w in (("A", wa), ("B", wb)):
                st = ready_state(w)
                if SAME_KEY in w.log() or SAME_KEY in str(st[1]):
                    failed = (name, w)
            if time.monotonic() > deadline:
                self.fail("neither worker refused a batch after %d requests in 40 s; "
                          "logs:\nA: %s\nB: %s" % (sent, wa.log()[-2000:], wb.log()[-2000:]))
        name, w = failed
        other = wb if w is wa else wa
        t_seen = time.monotonic()
        print("    worker %s refused a batch (%s) %.1f s after B joined, %d more requests sent"
              % (name, SAME_KEY, t_seen - t0, sent))
        # Fail closed: the worker stops at once (no retries), and the
        # process exits 1 naming the reason (a supervisor sees it; after a
        # restart the log continues from its last checkpoint, no fork).
        deadline = time.monotonic() + 10
        while True:
            st = ready_state(w)
            if st[0] != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        while st[0] != "exited" and time.monotonic() < deadline:
            time.sleep(0.1)
            st = ready_state(w)
        log = w.log()
        lines = [x for x in log.splitlines() if SAME_KEY in x]
        levels = sorted({m.group(1) for m in (re.search(r"level=(\w+)", x) for x in lines) if m})
        last_error = [x for x in log.splitlines() if "level=error" in x][-1:]
        retried = [x for x in log.splitlines() if "not executed" in x and SAME_KEY in x]
        print("    worker %s %.1f s later: /ready %r; %d log lines name the reason (levels %s); "
              "last error line: %s" % (name, time.monotonic() - t_seen, st, len(lines), levels,
                                       last_error))
        if st[0] == "exited":
            w.kill9()  # reaped here; reported below, not again by tearDown
        # Whatever was published, once the survivor is quiet: one log, no
        # fork, every leaf of the ledger carried, every checkpoint the root
        # of its leaves.
        self.quiet(reader, 2.0)
        recs = [decode_receipt(m.value) for m in reader.messages]
        f = write_lines(self.path("pg2.jsonl"), [m.value for m in reader.messages])
        g = go_verifier("log", pem_file, f)
        print("    %d receipts published in all (%d requests sent); verifier log: exit %d: %s %s"
              % (len(recs), 200 + sent, g.returncode, g.stdout.strip(), g.stderr.strip()[:300]))
        cps = pgq("SELECT from_size, size, root, note FROM checkpoints ORDER BY size")
        total = (pgq("SELECT count(*) FROM executions")[0][0] +
                 pgq("SELECT count(*) FROM rejections")[0][0])
        self.assertEqual(cps[-1][1], total)
        by_index, carriers, gaps = check_log(self, recs, cps, "PostgreSQL, two workers")
        self.assertEqual(gaps, [], "leaves of the ledger no receipt carries")
        self.assertEqual((g.returncode, g.stdout.strip()),
                         (0, "origin %s: %d leaves, %d checkpoints, consistent"
                          % (origin, total, len(cps))), g.stderr)
        self.assertEqual(len(by_index), total)
        # The other worker serves on: ready once the rebalance that the
        # failed worker's leave starts has given it the partitions.
        until = time.monotonic() + 30
        other_st = ready_state(other)
        while other_st != (200, None) and other_st[0] != "exited" and time.monotonic() < until:
            time.sleep(0.2)
            other_st = ready_state(other)
        self.assertEqual(other_st, (200, None), "the other worker")
        self.assertTrue(lines, "the log does not say %r" % SAME_KEY)
        self.assertEqual(st, ("exited", 1), "worker %s did not fail closed: %r; last error "
                         "line %s" % (name, st, last_error))
        self.assertTrue(last_error and SAME_KEY in last_error[0], last_error)
        self.assertEqual(retried, [], "the batch was retried instead of failing closed")

    def quiet(self, reader, quiet, timeout=60):
        """Reads until no receipt has come for `quiet` s."""
        deadline = time.monotonic() + timeout
        last, last_t = len(reader.messages), time.monotonic()
        while time.monotonic() - last_t < quiet:
            self.assertLess(time.monotonic(), deadline, "receipts kept coming")
            reader.poll(0.1)
            if len(reader.messages) != last:
                last, last_t = len(reader.messages), time.monotonic()


def ready_state(server):
    """(HTTP status of GET /ready, its reason or None), or ("exited", exit
    status) when the process is gone."""
    if server.proc is not None and server.proc.poll() is not None:
        return "exited", server.proc.returncode
    try:
        r = server.get("/ready", timeout=5)
    except OSError as e:
        if server.proc is not None and server.proc.poll() is not None:
            return "exited", server.proc.returncode
        return "no answer", str(e)
    try:
        return r.status, r.json.get("reason")
    except (ValueError, AttributeError):
        return r.status, None

if __name__ == "__main__":
    run_tests()
