/* Approval artifacts (docs/protocol.md §4): signature checks (HMAC-SHA256 and Ed25519),
 * time checks, and minting for tests and demos.
 *
 * The ordering of checks and the store lookups (single use) live in the
 * engine; this module holds the pure parts.
 */
#ifndef OE_APPROVAL_H
#define OE_APPROVAL_H

#include <stddef.h>

/* The fields of an artifact, as strings. approval_id, action_hash,
 * signature, issued_at and tenant_id are required; issued_by (HMAC
 * artifacts need it, Ed25519 ones do not), expires_at and key_id are NULL
 * when absent. Pointers are borrowed from the request that carries them. */
typedef struct oe_artifact {
    const char *approval_id;
    const char *action_hash;
    const char *signature;
    const char *issued_by; /* NULL when absent */
    const char *issued_at;
    const char *tenant_id;
    const char *expires_at; /* NULL when absent */
    const char *key_id;     /* NULL when absent: picks one Ed25519 key */
    /* NULL when absent; else the approved version of a Lua action's code
     * (lowercase hex SHA-256 of its file), covered by the signature. */
    const char *action_code_hash;
} oe_artifact;

/* Most HMAC secrets, and most Ed25519 public keys, of one key set. */
#define OE_APPROVAL_KEYS_MAX 8

/* Verification keys: HMAC secrets, Ed25519 public keys, or both, each up
 * to OE_APPROVAL_KEYS_MAX (several for rotation without downtime). */
typedef struct oe_approval_keys oe_approval_keys;

/* Creates the key set. secret is NULL, empty, or up to 8 secrets separated
 * by "," (none empty; bytes kept as given). public_pem is NULL, blank, or
 * up to 8 PEM blocks, each an Ed25519 public key ("PUBLIC KEY"), none
 * twice. Returns OE_OK, or with a reason in err that names the offending
 * secret or block by position and never shows a secret: OE_EINVAL (an
 * empty secret, a block that is no Ed25519 public key, a key twice),
 * OE_ELIMIT (more than OE_APPROVAL_KEYS_MAX of either) or OE_ENOMEM
 * (status.h). */
int oe_approval_keys_new(const char *secret, const char *public_pem, oe_approval_keys **out,
                         char *err, size_t errlen);
void oe_approval_keys_free(oe_approval_keys *keys);

/* 1 when at least one verification key is configured. */
int oe_approval_keys_present(const oe_approval_keys *keys);

/* The Ed25519 keys, in configured order: how many, and the id of the i-th
 * (lowercase hex SHA-256 of the raw 32-byte public key; NULL past the end). */
size_t oe_approval_keys_ed25519_count(const oe_approval_keys *keys);
const char *oe_approval_keys_ed25519_id(const oe_approval_keys *keys, size_t i);

/* The HMAC secrets: how many, and the length in bytes of the i-th (for the
 * start-up warning on short secrets; the secrets themselves never leave). */
size_t oe_approval_keys_hmac_count(const oe_approval_keys *keys);
size_t oe_approval_keys_hmac_length(const oe_approval_keys *keys, size_t i);

/* Checks the signature. With a secret configured and a 64-hex-digit
 * signature, HMAC-SHA256 over approval_id:action_hash:tenant_id:issued_at
 * with every secret (constant-time compares, all of them made); otherwise,
 * with public keys, Ed25519 over approval_id + tenant_id + action_hash +
 * issued_at + expires_at (base64; a missing expires_at counts as "", and
 * oe_approval_check_time refuses it), with the key whose id is key_id when
 * the artifact names one (unknown: not authentic), else with each key.
 * Returns 0 when authentic, 1 when not (with a detail containing
 * "Invalid signature"), or OE_ENOMEM (status.h) when it could not be
 * checked for lack of memory: no verdict. *used_ed25519 tells which scheme
 * was checked. */
int oe_approval_check_signature(const oe_approval_keys *keys, const oe_artifact *a,
                                int *used_ed25519, char *detail, size_t detlen);

/* Time window: issued_at at most max_skew seconds in the future and, for
 * HMAC artifacts (ed25519 0), at most max_age seconds old; expires_at not
 * passed when present. Ed25519 artifacts (ed25519 1) require expires_at
 * and have no age rule beyond it (any TTL the issuer chose). Returns OE_OK,
 * or OE_EINVAL (status.h; a verdict on the artifact) with a detail
 * containing "expired". */
int oe_approval_check_time(const oe_artifact *a, int ed25519, double now, double max_age,
                           double max_skew, char *detail, size_t detlen);

/* Parses an ISO 8601 date-time ("2026-11-25T13:00:00", optional fraction,
 * optional "Z" or +HH:MM / -HH:MM; no zone means UTC; 'T' or ' ' between
 * date and time) into seconds since the epoch. Returns OE_OK, or OE_EINVAL
 * (status.h) when s is not such a time. */
int oe_time_parse_iso8601(const char *s, double *epoch);

/* Formats epoch seconds as "YYYY-MM-DDTHH:MM:SS.ffffff+00:00" (UTC) into out
 * (at least 40 bytes), as Python's datetime.now(timezone.utc).isoformat(). */
void oe_time_format_iso8601(double epoch, char *out, size_t outlen);

/* Hex HMAC-SHA256 signature of an artifact (the minting side). */
void oe_approval_sign_hmac(const char *secret, const oe_artifact *a, char out[65]);

/* The same with the first secret of a key set (rotation: the newest secret
 * is listed first). Returns OE_OK, or OE_EINVAL (status.h) when the set
 * holds no secret. */
int oe_approval_keys_sign_hmac(const oe_approval_keys *keys, const oe_artifact *a, char out[65]);

/* Base64 Ed25519 signature of an artifact with the private key in
 * private_pem (PEM text). Returns OE_OK, or with a reason in err OE_EINVAL
 * (not an Ed25519 private key), OE_ELIMIT (outlen too small for the base64
 * signature) or OE_ENOMEM (status.h). */
int oe_approval_sign_ed25519(const char *private_pem, const oe_artifact *a, char *out,
                             size_t outlen, char *err, size_t errlen);

#endif
