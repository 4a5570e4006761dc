"""Approval artifacts minted as the original Python service's clients mint
them, written from their description, with python `cryptography` and the
standard library only (nothing from this repository):

- the newest release's helper mint_approval_artifact(action_request,
  private_key, tenant_id, ttl_seconds=300): Ed25519, fields approval_id,
  tenant_id, action_hash, issued_at, expires_at, signature and no
  issued_by; times are datetime.utcnow().isoformat() (naive UTC with
  microseconds); the signature is base64 Ed25519 over approval_id +
  tenant_id + action_hash + issued_at + expires_at, concatenated;
- the seed's HMAC minting: hex HMAC-SHA256 with the shared secret over
  approval_id:action_hash:tenant_id:issued_at, issued_by "clawshield".

action_hash is the lowercase hex SHA-256 of json.dumps({"action": ...,
"payload": ...}, sort_keys=True, separators=(",", ":")).

The `now` keyword (not in the originals) lets a test mint an artifact as
it would have been minted at another moment (expired, from the future).
"""

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime, timedelta, timezone


def compute_action_hash(action_request):
    canonical = json.dumps({"action": action_request["action"],
                            "payload": action_request.get("payload", {})},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _utcnow():
    # datetime.utcnow() without its deprecation warning: the same naive
    # UTC value.
    return datetime.now(timezone.utc).replace(tzinfo=None)


def mint_approval_artifact(action_request, private_key, tenant_id, ttl_seconds=300, now=None):
    """The newest release's Ed25519 artifact (private_key: a
    cryptography Ed25519PrivateKey)."""
    issued = now if now is not None else _utcnow()
    expires = issued + timedelta(seconds=ttl_seconds)
    approval_id = str(uuid.uuid4())
    action_hash = compute_action_hash(action_request)
    issued_at = issued.isoformat()
    expires_at = expires.isoformat()
    message = approval_id + tenant_id + action_hash + issued_at + expires_at
    signature = base64.b64encode(private_key.sign(message.encode("utf-8"))).decode("ascii")
    return {
        "approval_id": approval_id,
        "tenant_id": tenant_id,
        "action_hash": action_hash,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "signature": signature,
    }


def mint_hmac_artifact(action_request, secret, tenant_id, now=None):
    """The seed's HMAC-SHA256 artifact."""
    issued = now if now is not None else datetime.now(timezone.utc)
    approval_id = str(uuid.uuid4())
    action_hash = compute_action_hash(action_request)
    issued_at = issued.isoformat()
    message = "%s:%s:%s:%s" % (approval_id, action_hash, tenant_id, issued_at)
    signature = hmac.new(secret.encode("utf-8"), message.encode("utf-8"),
                         hashlib.sha256).hexdigest()
    return {
        "approval_id": approval_id,
        "action_hash": action_hash,
        "signature": signature,
        "issued_by": "clawshield",
        "issued_at": issued_at,
        "tenant_id": tenant_id,
    }
