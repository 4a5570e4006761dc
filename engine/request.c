#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    }
    return "invalid_request";
}

oe_error_code oe_error_code_from_name(const char *name)
{
    for (int c = OE_ERR_MALFORMED; name && c <= OE_ERR_NONCE_CONFLICT; c++)
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
        return 400;
    case OE_ERR_APPROVAL_INVALID:
    case OE_ERR_NOT_ALLOWED:
        return 403;
    case OE_ERR_NONCE_CONFLICT:
        return 409;
    }
    return 400;
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
    }
    oe_json_doc_free(r->doc);
    memset(r, 0, sizeof *r);
}

/* Copies a JSON string that must not contain NUL (names, nonces, artifact
 * fields end up in C strings and SQL text). */
static char *copy_text(const oe_json *v)
{
    if (memchr(v->str, '\0', v->len))
        return NULL;
    return strndup(v->str, v->len);
}

/* Reads a required (or optional) string field into *out. Returns
 * OE_ERR_NONE, or an error with the reason in err. */
static oe_error_code string_field(const oe_json *obj, const char *where, const char *name,
                                  int required, char **out, char *err, size_t errlen)
{
    const oe_json *v = oe_json_get(obj, name);
    *out = NULL;
    if (!v || (!required && v->type == OE_JSON_NULL)) {
        if (!required)
            return OE_ERR_NONE;
        snprintf(err, errlen, "%s%s: field required", where, name);
        return OE_ERR_MALFORMED;
    }
    if (v->type != OE_JSON_STRING) {
        snprintf(err, errlen, "%s%s: must be a string", where, name);
        return OE_ERR_MALFORMED;
    }
    if (!(*out = copy_text(v))) {
        snprintf(err, errlen, "%s%s: must not contain NUL characters", where, name);
        return OE_ERR_INVALID_REQUEST;
    }
    return OE_ERR_NONE;
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
    return OE_ERR_NONE;
}

/* The artifact's fields, in the order SPEC §5 lists them. */
static oe_error_code artifact_fields(const oe_json *obj, oe_artifact *a, char *err, size_t errlen)
{
    static const char *where = "approval_artifact.";
    struct {
        const char *name;
        const char **slot;
        int required;
    } fields[] = {
        {"approval_id", &a->approval_id, 1}, {"action_hash", &a->action_hash, 1},
        {"signature", &a->signature, 1},     {"issued_by", &a->issued_by, 1},
        {"issued_at", &a->issued_at, 1},     {"tenant_id", &a->tenant_id, 1},
        {"expires_at", &a->expires_at, 0},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        char *s;
        oe_error_code rc = string_field(obj, where, fields[i].name, fields[i].required, &s, err,
                                        errlen);
        *fields[i].slot = s;
        if (rc != OE_ERR_NONE)
            return rc;
    }
    return OE_ERR_NONE;
}

oe_error_code oe_request_from_json(const char *buf, size_t len, oe_request *r, char *err,
                                   size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->payload = &empty_object;
    if (len > OE_REQUEST_MAX_BYTES) {
        snprintf(err, errlen, "request larger than %zu bytes", OE_REQUEST_MAX_BYTES);
        return OE_ERR_MALFORMED;
    }
    r->doc = oe_json_parse(buf, len, 0, err, errlen);
    if (!r->doc)
        return OE_ERR_MALFORMED;
    const oe_json *root = oe_json_root(r->doc);
    if (root->type != OE_JSON_OBJECT) {
        snprintf(err, errlen, "request body must be a JSON object");
        return OE_ERR_MALFORMED;
    }
    oe_error_code rc;
    if ((rc = string_field(root, "", "action", 1, &r->action, err, errlen)) != OE_ERR_NONE ||
        (rc = string_field(root, "", "nonce", 1, &r->nonce, err, errlen)) != OE_ERR_NONE)
        return rc;
    const oe_json *payload = oe_json_get(root, "payload");
    if (payload && payload->type != OE_JSON_NULL) {
        if (payload->type != OE_JSON_OBJECT) {
            snprintf(err, errlen, "payload: must be an object");
            return OE_ERR_MALFORMED;
        }
        r->payload = payload;
    }
    const oe_json *art = oe_json_get(root, "approval_artifact");
    if (art && art->type != OE_JSON_NULL) {
        if (art->type != OE_JSON_OBJECT) {
            snprintf(err, errlen, "approval_artifact: must be an object");
            return OE_ERR_MALFORMED;
        }
        r->has_artifact = 1;
        if ((rc = artifact_fields(art, &r->artifact, err, errlen)) != OE_ERR_NONE)
            return rc;
    }
    return check_values(r, err, errlen);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

oe_error_code oe_request_from_fields(const char *action, const char *nonce,
                                     const char *payload_json, size_t payload_len,
                                     const oe_artifact *artifact, oe_request *r, char *err,
                                     size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->payload = &empty_object;
    r->action = strdup(action ? action : "");
    r->nonce = strdup(nonce ? nonce : "");
    if (artifact) {
        r->has_artifact = 1;
        r->artifact.approval_id = dup_or_null(artifact->approval_id);
        r->artifact.action_hash = dup_or_null(artifact->action_hash);
        r->artifact.signature = dup_or_null(artifact->signature);
        r->artifact.issued_by = dup_or_null(artifact->issued_by);
        r->artifact.issued_at = dup_or_null(artifact->issued_at);
        r->artifact.tenant_id = dup_or_null(artifact->tenant_id);
        r->artifact.expires_at = dup_or_null(artifact->expires_at);
        if (!r->artifact.approval_id || !r->artifact.action_hash || !r->artifact.signature ||
            !r->artifact.issued_by || !r->artifact.issued_at || !r->artifact.tenant_id) {
            snprintf(err, errlen, "approval_artifact: field missing");
            return OE_ERR_MALFORMED;
        }
    }
    if (!r->action || !r->nonce) {
        snprintf(err, errlen, "out of memory");
        return OE_ERR_MALFORMED;
    }
    if (payload_json && payload_len) {
        char perr[200];
        r->doc = oe_json_parse(payload_json, payload_len, 0, perr, sizeof perr);
        if (!r->doc) {
            snprintf(err, errlen, "payload: %s", perr);
            return OE_ERR_MALFORMED;
        }
        const oe_json *p = oe_json_root(r->doc);
        if (p->type == OE_JSON_OBJECT)
            r->payload = p;
        else if (p->type != OE_JSON_NULL) {
            snprintf(err, errlen, "payload: must be an object");
            return OE_ERR_MALFORMED;
        }
    }
    return check_values(r, err, errlen);
}
