/* The wire codec: bytes of a Kafka message <-> requests and receipts.
 * Nothing past this module sees wire formats.
 *
 * Requests arrive as
 *   - JSON (first byte '{'), decoded by the engine's strict JSON decoder;
 *   - Avro single-object encoding: C3 01, the 8-byte little-endian
 *     CRC-64-AVRO fingerprint of schemas/execution_request.avsc's Parsing
 *     Canonical Form, then the Avro binary body;
 *   - Confluent Schema Registry framing (byte 0, 4-byte big-endian schema
 *     id, Avro body) when a schema id is configured for our request schema.
 * Receipts leave as Avro single-object encoding or JSON.
 */
#ifndef OE_CODEC_H
#define OE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "engine/buf.h"
#include "engine/engine.h"
#include "engine/request.h"
#include "engine/status.h"

typedef struct oe_codec oe_codec;

/* Creates a codec from the schemas compiled into the binary (the text of
 * schemas/ .avsc files). confluent_schema_id < 0 means Confluent framing is not
 * configured (such messages are then undecodable). Returns OE_OK, or an
 * oe_rc (status.h) with a reason in err: OE_EINVAL when a schema is not
 * what the codec expects, OE_ENOMEM. Not thread-safe: one codec per thread (avro-c keeps error
 * text in a global buffer, so also never run two codecs' failing calls at
 * once; the worker thread owns the only decoding codec). */
int oe_codec_new(long confluent_schema_id, oe_codec **out, char *err, size_t errlen);
void oe_codec_free(oe_codec *c);

/* Fingerprints (CRC-64-AVRO of the Parsing Canonical Form) of the two
 * schemas, and the canonical forms themselves (owned by the codec). */
uint64_t oe_codec_request_fingerprint(const oe_codec *c);
uint64_t oe_codec_receipt_fingerprint(const oe_codec *c);
const char *oe_codec_request_canonical(const oe_codec *c);
const char *oe_codec_receipt_canonical(const oe_codec *c);

/* The verdict on a request message. */
typedef enum oe_decode_verdict {
    OE_DECODE_VALID,    /* req is a valid request */
    OE_DECODE_REJECTED, /* the envelope was read but the request is invalid:
                           *code and detail say why; req holds what could be
                           read (action, nonce) for the rejection receipt */
    OE_DECODE_DEAD,     /* cannot be decoded at all: dead-letter it */
} oe_decode_verdict;

/* Decodes one request message of len bytes (at most OE_REQUEST_MAX_BYTES).
 * Returns OE_OK when a verdict was reached: it is in *verdict, and *code
 * and detail say why a message was rejected or dead (code and detail may
 * be NULL). Returns OE_ENOMEM when memory ran out: then there is no
 * verdict at all (*verdict is left as it was), nothing may be recorded,
 * and the message must be decoded again later. req must be released with
 * oe_request_clear whatever the result. */
oe_rc oe_codec_decode_request(oe_codec *c, const void *buf, size_t len, oe_request *req,
                              oe_decode_verdict *verdict, oe_error_code *code, char *detail,
                              size_t detlen);

/* The JSON part of oe_codec_decode_request (a message whose first byte is
 * '{'): needs no codec, so any thread may call it. Same results, but the
 * verdict is never OE_DECODE_DEAD; code and detail must not be NULL, and
 * *code is set only for OE_DECODE_REJECTED. */
oe_rc oe_codec_decode_json_request(const char *buf, size_t len, oe_request *req,
                                   oe_decode_verdict *verdict, oe_error_code *code, char *detail,
                                   size_t detlen);

/* Encodes a request in Avro single-object encoding (for `openexec produce`
 * and tests). payload is serialised compactly as its JSON text. Returns
 * OE_OK, or with a reason in err OE_EINVAL (a string that is not UTF-8
 * text, an artifact field missing), OE_ELIMIT (a buffer's limit) or
 * OE_ENOMEM. */
int oe_codec_encode_request(oe_codec *c, const oe_request *req, oe_buf *out, char *err,
                            size_t errlen);

/* A receipt message's fields (docs/protocol.md §6). Pointers are borrowed; NULL where
 * the schema allows null; nonce, action and request_hash NULL or "" when
 * unknown (written ""). result is the result_json text, written under
 * both names. */
typedef struct oe_receipt_fields {
    const char *id;
    const char *nonce;
    const char *action;
    const char *request_hash;
    oe_status status;
    int approved;
    const char *result; /* result_json text */
    const char *receipt;
    oe_error_code error; /* OE_ERR_NONE -> error_code null */
    const char *detail;
    const char *approval_id;
    const char *action_code_hash; /* the Lua action's code hash, or NULL */
    const char *proof;            /* the proof object's JSON text (docs/protocol.md §8), or NULL */
    size_t proof_len;             /* its length (0: strlen(proof)) */
} oe_receipt_fields;

/* Appends an encoded receipt: Avro single-object (json = 0) or a JSON
 * object (json = 1) with the same field names, in the DEFAULT style of
 * engine/json.h, result as a string. Returns OE_OK, or with a reason in err
 * (out left as it was) OE_EINVAL (an invalid status, a string that is not
 * UTF-8 text), OE_ELIMIT (out's limit) or OE_ENOMEM. It reads nothing of
 * c but the receipt schema's fingerprint, so several threads may encode
 * with one codec at once. */
int oe_codec_encode_receipt(oe_codec *c, const oe_receipt_fields *r, int json, oe_buf *out,
                            char *err, size_t errlen);

/* A decoded receipt; strings are owned by it. */
typedef struct oe_receipt {
    char *id, *nonce, *action, *request_hash, *result, *receipt, *detail, *approval_id;
    char *result_json;      /* the same text as result (either field read, both must agree) */
    char *action_code_hash; /* NULL for built-ins, and in receipts of schema versions 1-2 */
    char *error_code;       /* NULL or the code's name */
    char *proof;            /* JSON receipts: the proof object, compact JSON; or NULL */
    oe_status status;
    int approved;
} oe_receipt;

/* Decodes a receipt in either format (detected from the first bytes).
 * Returns OE_OK, or with a reason in err OE_EINVAL (not a receipt),
 * OE_ELIMIT (larger than 4 * OE_REQUEST_MAX_BYTES) or OE_ENOMEM. */
int oe_codec_decode_receipt(oe_codec *c, const void *buf, size_t len, oe_receipt *out, char *err,
                            size_t errlen);
void oe_receipt_clear(oe_receipt *r);

/* Renders a decoded receipt as one JSON line (the `openexec receipts`
 * output), same field names, DEFAULT style, result as a string. Returns
 * OE_OK, or (out left as it was) OE_EINVAL (an invalid status, a string
 * that is not UTF-8 text), OE_ELIMIT or OE_ENOMEM. */
int oe_receipt_to_json(const oe_receipt *r, oe_buf *out);

#endif
