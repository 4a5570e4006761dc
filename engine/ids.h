/* Derived identifiers: the request hash that approvals bind to (docs/protocol.md §3),
 * the execution id (docs/protocol.md §5) and the seed-compatible receipt hash. */
#ifndef OE_IDS_H
#define OE_IDS_H

#include <stddef.h>

#include "json.h"

/* SHA-256 (hex) of the canonical JSON {"action": action, "payload": payload}
 * (compact, sorted keys, ensure_ascii). payload NULL means {}. Returns OE_OK,
 * or (status.h) OE_EINVAL when action is not valid UTF-8 (or a hand-built
 * payload cannot be serialized), OE_ELIMIT when the text passes the
 * buffer's 16 MiB cap, OE_ENOMEM when memory runs out. */
int oe_request_hash(const char *action, size_t action_len, const oe_json *payload, char out[65]);

/* oe_request_hash that also leaves the hashed text in text (reset first)
 * and the offset of the payload in it (the payload's canonical form runs
 * from there to the text's last byte, exclusive): for callers that keep
 * the payload too (the ledger's rows), so that it is printed once. Returns
 * as oe_request_hash, OE_ELIMIT and OE_ENOMEM being text's failure (its cap
 * is the caller's). */
int oe_request_hash_text(const char *action, size_t action_len, const oe_json *payload,
                         oe_buf *text, size_t *payload_off, char out[65]);

/* The execution id: SHA-256 of "openexec.exec.v1\0" tenant "\0" nonce "\0"
 * request_hash, first 16 bytes, version 8 and RFC 4122 variant, printed as a
 * lowercase 8-4-4-4-12 UUID into out (37 bytes). tenant may be "". */
void oe_execution_id(const char *tenant, const char *nonce, const char *request_hash, char out[37]);

/* Receipt hash: SHA-256 (hex) of id ":" result_json. */
void oe_receipt_hash(const char *id, const char *result_json, size_t result_len, char out[65]);

/* Longest nonce, action or message key that a receipt or dead letter repeats
 * as it came. Valid requests stay within it (docs/protocol.md §2: nonce <= 256 bytes);
 * a rejected request's fields may be of any size, and are cut. */
#define OE_ECHO_MAX_BYTES 256

/* Copies s[0..len) into out when it is at most max bytes; else writes a
 * cut of it, max bytes long at most: its first bytes (whole UTF-8
 * characters), then "...sha256=" and the SHA-256 (hex) of all of s, so
 * that different long values stay different and the same value always
 * gives the same cut. out has room for max + 1 bytes (or len + 1 when
 * shorter) and may be s itself (cut in place). max is at least
 * OE_CUT_MIN_BYTES. Returns the length written; out is NUL-terminated. */
#define OE_CUT_MIN_BYTES 80
size_t oe_cut(const char *s, size_t len, size_t max, char *out);

/* oe_cut at OE_ECHO_MAX_BYTES, the convention of receipts and dead
 * letters. */
size_t oe_echo_cut(const char *s, size_t len, char out[OE_ECHO_MAX_BYTES + 1]);

#endif
