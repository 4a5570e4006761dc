/* Approval artifacts (SPEC §7): signature checks (HMAC-SHA256 and Ed25519),
 * time checks, and minting for tests and demos.
 *
 * The ordering of checks and the store lookups (single use) live in the
 * engine; this module holds the pure parts.
 */
#ifndef OE_APPROVAL_H
#define OE_APPROVAL_H

#include <stddef.h>

/* The fields of an artifact, as strings. All but expires_at are required;
 * pointers are borrowed from the request that carries them. */
typedef struct oe_artifact {
    const char *approval_id;
    const char *action_hash;
    const char *signature;
    const char *issued_by;
    const char *issued_at;
    const char *tenant_id;
    const char *expires_at; /* NULL when absent */
} oe_artifact;

/* Verification keys: a shared HMAC secret, an Ed25519 public key, or both. */
typedef struct oe_approval_keys oe_approval_keys;

/* Creates the key set. secret and public_pem may be NULL or empty; a
 * public_pem that is not an Ed25519 public key is an error. Returns 0 or -1
 * with a reason in err. */
int oe_approval_keys_new(const char *secret, const char *public_pem, oe_approval_keys **out,
                         char *err, size_t errlen);
void oe_approval_keys_free(oe_approval_keys *keys);

/* 1 when at least one verification key is configured. */
int oe_approval_keys_present(const oe_approval_keys *keys);

/* Checks the signature. With a secret configured and a 64-hex-digit
 * signature, HMAC-SHA256 over approval_id:action_hash:tenant_id:issued_at
 * (constant-time compare); otherwise, with a public key, Ed25519 over
 * approval_id + tenant_id + action_hash + issued_at + expires_at (base64;
 * a missing expires_at counts as "", and oe_approval_check_time refuses it).
 * Returns 0 when authentic, 1 when not (with a detail containing
 * "Invalid signature"), or OE_ENOMEM (status.h) when it could not be
 * checked for lack of memory: no verdict. *used_ed25519 tells which scheme
 * was checked. */
int oe_approval_check_signature(const oe_approval_keys *keys, const oe_artifact *a,
                                int *used_ed25519, char *detail, size_t detlen);

/* Time window: issued_at at most max_age seconds old and at most max_skew
 * seconds in the future; expires_at (required when ed25519) not passed.
 * Returns 0, or -1 with a detail containing "expired". */
int oe_approval_check_time(const oe_artifact *a, int ed25519, double now, double max_age,
                           double max_skew, char *detail, size_t detlen);

/* Parses an ISO 8601 date-time ("2026-11-25T13:00:00", optional fraction,
 * optional "Z" or +HH:MM / -HH:MM; no zone means UTC; 'T' or ' ' between
 * date and time) into seconds since the epoch. Returns 0 or -1. */
int oe_time_parse_iso8601(const char *s, double *epoch);

/* Formats epoch seconds as "YYYY-MM-DDTHH:MM:SS.ffffff+00:00" (UTC) into out
 * (at least 40 bytes), as Python's datetime.now(timezone.utc).isoformat(). */
void oe_time_format_iso8601(double epoch, char *out, size_t outlen);

/* Hex HMAC-SHA256 signature of an artifact (the minting side). */
void oe_approval_sign_hmac(const char *secret, const oe_artifact *a, char out[65]);

/* Base64 Ed25519 signature of an artifact with the private key in
 * private_pem (PEM text). Returns 0 or -1 with a reason in err. */
int oe_approval_sign_ed25519(const char *private_pem, const oe_artifact *a, char *out,
                             size_t outlen, char *err, size_t errlen);

#endif
