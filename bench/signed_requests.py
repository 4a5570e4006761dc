"""Signed benchmark requests for bench/modes.sh: N JSON lines (`add`,
nonce bench-I) each with an approval artifact, HMAC-SHA256 under SECRET or
Ed25519 under a fresh key whose public PEM is written to PUBFILE; valid for
an hour. Built with the test suite's own artifact helpers.

usage: signed_requests.py N hmac SECRET | N ed25519 PUBFILE"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "http"))

from harness import ed25519_artifact, ed25519_keypair, hmac_artifact, iso_in  # noqa: E402


def main():
    n, kind, arg = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    out = sys.stdout
    if kind == "ed25519":
        key, _, pub = ed25519_keypair()
        with open(arg, "w") as f:
            f.write(pub)
    expires = iso_in(3600)
    for i in range(n):
        payload = {"a": i, "b": 2}
        if kind == "hmac":
            art = hmac_artifact(arg, "bench", "add", payload, expires_at=expires)
        else:
            art = ed25519_artifact(key, "bench", "add", payload, expires_at=expires)
        out.write(json.dumps({"action": "add", "payload": payload, "nonce": "bench-%d" % i,
                              "approval_artifact": art}, separators=(",", ":")) + "\n")


main()
