/* Execution requests (docs/protocol.md §2) and the error codes every rejection carries.
 *
 * A request reaches the engine only through oe_request_from_json (HTTP
 * bodies, JSON Kafka messages) or through a codec that fills the same
 * struct; either way it leaves as a validated struct or a precise error.
 */
#ifndef OE_REQUEST_H
#define OE_REQUEST_H

#include <stddef.h>

#include "approval.h"
#include "json.h"

/* Largest request body or message we decode (docs/protocol.md §7: 1 MiB). */
#define OE_REQUEST_MAX_BYTES ((size_t)1 << 20)
/* Longest nonce in bytes (docs/protocol.md §2). */
#define OE_NONCE_MAX_BYTES 256
/* Longest approval_id, and longest other artifact field, in bytes: receipts
 * repeat the approval id, so it is bounded like the nonce; genuine hashes,
 * signatures, names and timestamps are far shorter than the other bound.
 * Longer values are invalid_request (HTTP 400). */
#define OE_APPROVAL_ID_MAX_BYTES 256
#define OE_ARTIFACT_FIELD_MAX_BYTES 1024

/* Why a request was rejected. The names are the Kafka receipts' error_code
 * values (docs/protocol.md §6); the HTTP status follows docs/protocol.md §7. */
typedef enum oe_error_code {
    OE_ERR_NONE = 0,
    OE_ERR_MALFORMED,        /* 422: bad JSON, missing or mistyped field */
    OE_ERR_INVALID_REQUEST,  /* 400: well-formed but invalid values */
    OE_ERR_UNKNOWN_ACTION,   /* 400 */
    OE_ERR_APPROVAL_INVALID, /* 403 */
    OE_ERR_NOT_ALLOWED,      /* 403 */
    OE_ERR_NONCE_CONFLICT,   /* 409 */
    OE_ERR_ACTION_FAILED,    /* 400: a Lua action raised an error or passed a budget */
} oe_error_code;

/* The last code, for loops over them all. */
#define OE_ERR_LAST OE_ERR_ACTION_FAILED

/* "malformed", "invalid_request", ...; NULL for OE_ERR_NONE. */
const char *oe_error_code_name(oe_error_code code);

/* The code with this name, or OE_ERR_NONE for NULL or an unknown name. */
oe_error_code oe_error_code_from_name(const char *name);

/* The HTTP status for a rejection: 400, 403, 409 or 422; 200 for none. */
int oe_error_code_http_status(oe_error_code code);

/* A decoded request. Strings are owned by the request (NUL-terminated);
 * payload points into the request's own JSON document. */
typedef struct oe_request {
    char *action;
    char *nonce;
    const oe_json *payload; /* never NULL after decoding: {} when absent */
    int has_artifact;
    oe_artifact artifact; /* fields owned by the request when has_artifact */
    oe_json_doc *doc;     /* owns payload */
} oe_request;

/* Decodes a JSON request body into req and a verdict. *verdict is
 * OE_ERR_NONE for a well-formed request, else OE_ERR_MALFORMED or
 * OE_ERR_INVALID_REQUEST with a reason in err; req is filled with whatever
 * could be read (action, nonce) so that a rejection receipt can name them.
 * Returns OE_OK when a verdict was reached, or OE_ENOMEM (status.h) when
 * memory ran out: then there is no verdict, nothing may be recorded, and
 * the same bytes must be tried again later. Release req with
 * oe_request_clear either way. */
int oe_request_from_json(const char *buf, size_t len, oe_request *req, oe_error_code *verdict,
                         char *err, size_t errlen);

/* Builds a request from separate fields (the Avro codec's path): payload_json
 * is the payload object as JSON text (NULL or "" = {}). Copies everything.
 * Same results as oe_request_from_json. */
int oe_request_from_fields(const char *action, const char *nonce, const char *payload_json,
                           size_t payload_len, const oe_artifact *artifact, oe_request *req,
                           oe_error_code *verdict, char *err, size_t errlen);

/* Frees the request's JSON document (the bulk of its memory) once the
 * engine has answered; action, nonce and artifact stay. payload becomes
 * NULL. */
void oe_request_drop_payload(oe_request *req);

/* Releases everything the request owns and zeroes it. */
void oe_request_clear(oe_request *req);

#endif
