/* Execution requests: the one decoder of docs/protocol.md §2 for JSON bodies and the
 * builder the Avro codec uses. Pure functions, no shared state: a request
 * belongs to the caller, who releases it with oe_request_clear. A failure to
 * allocate is reported as OE_ENOMEM, never as a verdict on the request. */
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

static const oe_json empty_object = {.type = OE_JSON_OBJECT};

const char *oe_error_code_name(oe_error_code code)
{
    switch (code) {
    case OE_ERR_NONE:
        return NULL;
    case OE_ERR_MALFORMED:
        return "malformed";
    case OE_ERR_INVALID_REQUEST:
        return "invalid_request";
    case OE_ERR_UNKNOWN_ACTION:
        return "unknown_action";
    case OE_ERR_APPROVAL_INVALID:
        return "approval_invalid";
    case OE_ERR_NOT_ALLOWED:
        return "not_allowed";
    case OE_ERR_NONCE_CONFLICT:
        return "nonce_conflict";
    case OE_ERR_ACTION_FAILED:
        return "action_failed";
    }
    return "invalid_request";
}

oe_error_code oe_error_code_from_name(const char *name)
{
    for (int c = OE_ERR_MALFORMED; name && c <= OE_ERR_LAST; c++)
        if (strcmp(name, oe_error_code_name((oe_error_code)c)) == 0)
            return (oe_error_code)c;
    return OE_ERR_NONE;
}

int oe_error_code_http_status(oe_error_code code)
{
    switch (code) {
    case OE_ERR_NONE:
        return 200;
    case OE_ERR_MALFORMED:
        return 422;
    case OE_ERR_INVALID_REQUEST:
    case OE_ERR_UNKNOWN_ACTION:
    case OE_ERR_ACTION_FAILED:
        return 400;
    case OE_ERR_APPROVAL_INVALID:
    case OE_ERR_NOT_ALLOWED:
        return 403;
    case OE_ERR_NONCE_CONFLICT:
        return 409;
    }
    return 400;
}

void oe_request_drop_payload(oe_request *r)
{
    oe_json_doc_free(r->doc);
    r->doc = NULL;
    r->payload = NULL;
}

void oe_request_clear(oe_request *r)
{
    free(r->action);
    free(r->nonce);
    if (r->has_artifact) {
        free((char *)r->artifact.approval_id);
        free((char *)r->artifact.action_hash);
        free((char *)r->artifact.signature);
        free((char *)r->artifact.issued_by);
        free((char *)r->artifact.issued_at);
        free((char *)r->artifact.tenant_id);
        free((char *)r->artifact.expires_at);
        free((char *)r->artifact.key_id);
        free((char *)r->artifact.action_code_hash);
    }
    oe_json_doc_free(r->doc);
    memset(r, 0, sizeof *r);
}

/* Reads a required (or optional) string field into *out. Such strings must
 * not contain NUL (names, nonces and artifact fields end up in C strings and
 * SQL text). Returns OE_OK with *verdict OE_ERR_NONE or an error code and
 * the reason in err, or OE_ENOMEM. */
static int string_field(const oe_json *obj, const char *where, const char *name, int required,
                        char **out, oe_error_code *verdict, char *err, size_t errlen)
{
    const oe_json *v = oe_json_get(obj, name);
    *out = NULL;
    *verdict = OE_ERR_NONE;
    if (!v || (!required && v->type == OE_JSON_NULL)) {
        if (!required)
            return OE_OK;
        snprintf(err, errlen, "%s%s: field required", where, name);
        *verdict = OE_ERR_MALFORMED;
        return OE_OK;
    }
    if (v->type != OE_JSON_STRING) {
        snprintf(err, errlen, "%s%s: must be a string", where, name);
        *verdict = OE_ERR_MALFORMED;
        return OE_OK;
    }
    if (memchr(v->str, '\0', v->len)) {
        snprintf(err, errlen, "%s%s: must not contain NUL characters", where, name);
        *verdict = OE_ERR_INVALID_REQUEST;
        return OE_OK;
    }
    if (!(*out = strndup(v->str, v->len))) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    return OE_OK;
}

static oe_error_code check_values(oe_request *r, char *err, size_t errlen)
{
    if (!r->action[0]) {
        snprintf(err, errlen, "action: must be a non-empty string");
        return OE_ERR_INVALID_REQUEST;
    }
    if (!r->nonce[0]) {
        snprintf(err, errlen, "nonce: must be a non-empty string");
        return OE_ERR_INVALID_REQUEST;
    }
    if (strlen(r->nonce) > OE_NONCE_MAX_BYTES) {
        snprintf(err, errlen, "nonce: longer than %d bytes", OE_NONCE_MAX_BYTES);
        return OE_ERR_INVALID_REQUEST;
    }
    if (!r->has_artifact)
        return OE_ERR_NONE;
    const oe_artifact *a = &r->artifact;
    const struct {
        const char *name, *value;
        size_t max;
    } fields[] = {
        {"approval_id", a->approval_id, OE_APPROVAL_ID_MAX_BYTES},
        {"action_hash", a->action_hash, OE_ARTIFACT_FIELD_MAX_BYTES},
        {"signature", a->signature, OE_ARTIFACT_FIELD_MAX_BYTES},
        {"issued_by", a->issued_by, OE_ARTIFACT_FIELD_MAX_BYTES},
        {"issued_at", a->issued_at, OE_ARTIFACT_FIELD_MAX_BYTES},
        {"tenant_id", a->tenant_id, OE_ARTIFACT_FIELD_MAX_BYTES},
        {"expires_at", a->expires_at, OE_ARTIFACT_FIELD_MAX_BYTES},
        {"key_id", a->key_id, OE_ARTIFACT_FIELD_MAX_BYTES},
        {"action_code_hash", a->action_code_hash, OE_ARTIFACT_FIELD_MAX_BYTES},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (fields[i].value && strlen(fields[i].value) > fields[i].max) {
            snprintf(err, errlen, "approval_artifact.%s: longer than %zu bytes", fields[i].name,
                     fields[i].max);
            return OE_ERR_INVALID_REQUEST;
        }
    }
    return OE_ERR_NONE;
}

/* The artifact's fields, in the order docs/protocol.md §2 lists them, then key_id.
 * issued_by is optional: the original service's newer clients sign Ed25519
 * artifacts without it, and an HMAC artifact without it is refused later
 * as "Unknown issuer" (docs/protocol.md §4 step 6). Returns as string_field. */
static int artifact_fields(const oe_json *obj, oe_artifact *a, oe_error_code *verdict, char *err,
                           size_t errlen)
{
    static const char *where = "approval_artifact.";
    struct {
        const char *name;
        const char **slot;
        int required;
    } fields[] = {
        {"approval_id", &a->approval_id, 1},
        {"action_hash", &a->action_hash, 1},
        {"signature", &a->signature, 1},
        {"issued_by", &a->issued_by, 0},
        {"issued_at", &a->issued_at, 1},
        {"tenant_id", &a->tenant_id, 1},
        {"expires_at", &a->expires_at, 0},
        {"key_id", &a->key_id, 0},
        {"action_code_hash", &a->action_code_hash, 0},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        char *s;
        int rc =
            string_field(obj, where, fields[i].name, fields[i].required, &s, verdict, err, errlen);
        *fields[i].slot = s;
        if (rc != OE_OK || *verdict != OE_ERR_NONE)
            return rc;
    }
    return OE_OK;
}

int oe_request_from_json(const char *buf, size_t len, oe_request *r, oe_error_code *verdict,
                         char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->payload = &empty_object;
    *verdict = OE_ERR_MALFORMED;
    if (len > OE_REQUEST_MAX_BYTES) {
        snprintf(err, errlen, "request larger than %zu bytes", OE_REQUEST_MAX_BYTES);
        return OE_OK;
    }
    int rc = oe_json_parse(buf, len, 0, &r->doc, err, errlen);
    if (rc != OE_OK)
        return rc == OE_ENOMEM ? OE_ENOMEM : OE_OK;
    const oe_json *root = oe_json_root(r->doc);
    if (root->type != OE_JSON_OBJECT) {
        snprintf(err, errlen, "request body must be a JSON object");
        return OE_OK;
    }
    if ((rc = string_field(root, "", "action", 1, &r->action, verdict, err, errlen)) != OE_OK ||
        *verdict != OE_ERR_NONE)
        return rc;
    if ((rc = string_field(root, "", "nonce", 1, &r->nonce, verdict, err, errlen)) != OE_OK ||
        *verdict != OE_ERR_NONE)
        return rc;
    const oe_json *payload = oe_json_get(root, "payload");
    if (payload && payload->type != OE_JSON_NULL) {
        if (payload->type != OE_JSON_OBJECT) {
            snprintf(err, errlen, "payload: must be an object");
            *verdict = OE_ERR_MALFORMED;
            return OE_OK;
        }
        r->payload = payload;
    }
    const oe_json *art = oe_json_get(root, "approval_artifact");
    if (art && art->type != OE_JSON_NULL) {
        if (art->type != OE_JSON_OBJECT) {
            snprintf(err, errlen, "approval_artifact: must be an object");
            *verdict = OE_ERR_MALFORMED;
            return OE_OK;
        }
        r->has_artifact = 1;
        if ((rc = artifact_fields(art, &r->artifact, verdict, err, errlen)) != OE_OK ||
            *verdict != OE_ERR_NONE)
            return rc;
    }
    *verdict = check_values(r, err, errlen);
    return OE_OK;
}

int oe_request_from_fields(const char *action, const char *nonce, const char *payload_json,
                           size_t payload_len, const oe_artifact *artifact, oe_request *r,
                           oe_error_code *verdict, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->payload = &empty_object;
    *verdict = OE_ERR_MALFORMED;
    r->action = strdup(action ? action : "");
    r->nonce = strdup(nonce ? nonce : "");
    if (!r->action || !r->nonce)
        goto oom;
    if (artifact) {
        r->has_artifact = 1;
        /* The required fields first, then the optional ones. */
        const char *const *src[] = {
            &artifact->approval_id, &artifact->action_hash, &artifact->signature,
            &artifact->issued_at,   &artifact->tenant_id,   &artifact->issued_by,
            &artifact->expires_at,  &artifact->key_id,      &artifact->action_code_hash};
        const char **dst[] = {
            &r->artifact.approval_id, &r->artifact.action_hash, &r->artifact.signature,
            &r->artifact.issued_at,   &r->artifact.tenant_id,   &r->artifact.issued_by,
            &r->artifact.expires_at,  &r->artifact.key_id,      &r->artifact.action_code_hash};
        const size_t required = 5;
        for (size_t k = 0; k < sizeof src / sizeof src[0]; k++) {
            if (*src[k] && !(*dst[k] = strdup(*src[k])))
                goto oom;
        }
        for (size_t k = 0; k < required; k++) {
            if (!*dst[k]) {
                snprintf(err, errlen, "approval_artifact: field missing");
                return OE_OK;
            }
        }
    }
    if (payload_json && payload_len) {
        char perr[200];
        int rc = oe_json_parse(payload_json, payload_len, 0, &r->doc, perr, sizeof perr);
        if (rc == OE_ENOMEM)
            goto oom;
        if (rc != OE_OK) {
            snprintf(err, errlen, "payload: %s", perr);
            return OE_OK;
        }
        const oe_json *p = oe_json_root(r->doc);
        if (p->type == OE_JSON_OBJECT)
            r->payload = p;
        else if (p->type != OE_JSON_NULL) {
            snprintf(err, errlen, "payload: must be an object");
            return OE_OK;
        }
    }
    *verdict = check_values(r, err, errlen);
    return OE_OK;
oom:
    snprintf(err, errlen, "out of memory");
    return OE_ENOMEM;
}
