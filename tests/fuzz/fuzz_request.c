/* Fuzzes the request validator (engine/request.c) through both of its
 * doors: oe_request_from_json (HTTP bodies and JSON Kafka messages) and
 * oe_request_from_fields (the Avro codec's path).
 *
 * An input without NUL bytes is a JSON body. An input with NUL bytes is
 * split at them into fields, as the Avro codec hands them over: action,
 * nonce, payload text, then (when all six are there) the artifact's
 * approval_id, action_hash, signature, issued_by, issued_at, tenant_id and
 * an optional expires_at.
 *
 * Both doors promise the same verdicts, so an accepted request is sent
 * through the other door too: it must be accepted there with the same
 * fields and the same request hash, since an approval minted for one
 * encoding must hold for the other.
 */
#include <string.h>

#include "engine/ids.h"
#include "engine/request.h"
#include "tests/fuzz/fuzz.h"

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* What every accepted request holds, whichever door it came through. */
static void check_accepted(const oe_request *r)
{
    FUZZ_CHECK(r->action && r->action[0]);
    FUZZ_CHECK(r->nonce && r->nonce[0] && strlen(r->nonce) <= OE_NONCE_MAX_BYTES);
    FUZZ_CHECK(r->payload && r->payload->type == OE_JSON_OBJECT);
    if (r->has_artifact) {
        const oe_artifact *a = &r->artifact;
        /* issued_by, expires_at and key_id are optional. */
        FUZZ_CHECK(a->approval_id && a->action_hash && a->signature && a->issued_at &&
                   a->tenant_id);
    }
}

/* The two requests carry the same action, nonce, artifact and payload. */
static void check_same(const oe_request *x, const oe_request *y)
{
    FUZZ_CHECK(strcmp(x->action, y->action) == 0 && strcmp(x->nonce, y->nonce) == 0);
    FUZZ_CHECK(x->has_artifact == y->has_artifact);
    if (x->has_artifact) {
        const oe_artifact *a = &x->artifact, *b = &y->artifact;
        FUZZ_CHECK(same_str(a->approval_id, b->approval_id) &&
                   same_str(a->action_hash, b->action_hash) &&
                   same_str(a->signature, b->signature) && same_str(a->issued_by, b->issued_by) &&
                   same_str(a->issued_at, b->issued_at) && same_str(a->tenant_id, b->tenant_id) &&
                   same_str(a->expires_at, b->expires_at) && same_str(a->key_id, b->key_id));
    }
    char hx[65], hy[65];
    int rx = oe_request_hash(x->action, strlen(x->action), x->payload, hx);
    int ry = oe_request_hash(y->action, strlen(y->action), y->payload, hy);
    FUZZ_CHECK(rx == ry);
    FUZZ_CHECK(rx != 0 || strcmp(hx, hy) == 0);
}

static int utf8(const char *s)
{
    return !s || oe_utf8_valid(s, strlen(s));
}

/* Appends "key":"value" (value as a JSON string) after a comma unless first. */
static int put_member(oe_buf *b, const char *key, const char *value, int first)
{
    if (!first && oe_buf_putc(b, ',') != 0)
        return -1;
    if (oe_json_dump_string(b, key, strlen(key)) != 0 || oe_buf_putc(b, ':') != 0)
        return -1;
    return oe_json_dump_string(b, value, strlen(value));
}

/* An accepted request from the fields door, written as a JSON body and sent
 * through the JSON door. JSON strings are Unicode text, so fields that are
 * not UTF-8 have no JSON body (the codec refuses them before this point). */
static void cross_check_json(const oe_request *r)
{
    const oe_artifact *a = &r->artifact;
    if (!utf8(r->action) || !utf8(r->nonce) ||
        (r->has_artifact && (!utf8(a->approval_id) || !utf8(a->action_hash) ||
                             !utf8(a->signature) || !utf8(a->issued_by) || !utf8(a->issued_at) ||
                             !utf8(a->tenant_id) || !utf8(a->expires_at) || !utf8(a->key_id))))
        return;
    oe_buf b;
    oe_buf_init(&b, 0);
    oe_buf_putc(&b, '{');
    put_member(&b, "action", r->action, 1);
    put_member(&b, "nonce", r->nonce, 0);
    oe_buf_puts(&b, ",\"payload\":");
    oe_json_dump(&b, r->payload, OE_JSON_COMPACT);
    if (r->has_artifact) {
        oe_buf_puts(&b, ",\"approval_artifact\":{");
        put_member(&b, "approval_id", a->approval_id, 1);
        put_member(&b, "action_hash", a->action_hash, 0);
        put_member(&b, "signature", a->signature, 0);
        if (a->issued_by)
            put_member(&b, "issued_by", a->issued_by, 0);
        put_member(&b, "issued_at", a->issued_at, 0);
        put_member(&b, "tenant_id", a->tenant_id, 0);
        if (a->expires_at)
            put_member(&b, "expires_at", a->expires_at, 0);
        if (a->key_id)
            put_member(&b, "key_id", a->key_id, 0);
        oe_buf_putc(&b, '}');
    }
    oe_buf_putc(&b, '}');
    FUZZ_CHECK(!oe_buf_failed(&b));
    oe_request j;
    char err[300] = "";
    oe_error_code rc = fuzz_request_from_json(b.data, b.len, &j, err, sizeof err);
    if (rc != OE_ERR_NONE)
        fprintf(stderr, "JSON door refused %s: %s\n", b.data, err);
    FUZZ_CHECK(rc == OE_ERR_NONE);
    check_accepted(&j);
    check_same(r, &j);
    oe_request_clear(&j);
    oe_buf_free(&b);
}

/* An accepted request from the JSON door, sent through the fields door with
 * its payload as compact JSON text. */
static void cross_check_fields(const oe_request *r)
{
    oe_buf payload;
    oe_buf_init(&payload, 0);
    FUZZ_CHECK(oe_json_dump(&payload, r->payload, OE_JSON_COMPACT) == 0);
    oe_request f;
    char err[300] = "";
    oe_error_code rc =
        fuzz_request_from_fields(r->action, r->nonce, payload.data, payload.len,
                                 r->has_artifact ? &r->artifact : NULL, &f, err, sizeof err);
    if (rc != OE_ERR_NONE)
        fprintf(stderr, "fields door refused: %s\n", err);
    FUZZ_CHECK(rc == OE_ERR_NONE);
    check_accepted(&f);
    check_same(r, &f);
    oe_request_clear(&f);
    oe_buf_free(&payload);
}

static void from_json(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in)
        return;
    memcpy(in, data, size);
    oe_request r;
    char err[300];
    err[0] = '\0';
    oe_error_code rc = fuzz_request_from_json(in, size, &r, err, sizeof err);
    free(in);
    /* Every rejection is one of the two decoding codes, with a reason. */
    FUZZ_CHECK(rc == OE_ERR_NONE || rc == OE_ERR_MALFORMED || rc == OE_ERR_INVALID_REQUEST);
    FUZZ_CHECK(r.payload != NULL);
    if (rc == OE_ERR_NONE) {
        check_accepted(&r);
        cross_check_fields(&r);
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    oe_request_clear(&r);
}

enum { F_ACTION, F_NONCE, F_PAYLOAD, F_ART, F_MAX = F_ART + 7 };

static void from_fields(const uint8_t *data, size_t size)
{
    /* Split at NUL bytes into at most F_MAX NUL-terminated fields. */
    char *copy = malloc(size + 1);
    if (!copy)
        return;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *f[F_MAX] = {0};
    size_t flen[F_MAX] = {0};
    size_t nf = 0;
    for (size_t start = 0; nf < F_MAX && start <= size;) {
        size_t n = strlen(copy + start);
        f[nf] = copy + start;
        flen[nf] = n;
        nf++;
        start += n + 1;
    }
    oe_artifact art = {0};
    int has_art = nf >= F_ART + 6;
    if (has_art) {
        art.approval_id = f[F_ART];
        art.action_hash = f[F_ART + 1];
        art.signature = f[F_ART + 2];
        art.issued_by = f[F_ART + 3];
        art.issued_at = f[F_ART + 4];
        art.tenant_id = f[F_ART + 5];
        art.expires_at = f[F_ART + 6];
    }
    oe_request r;
    char err[300];
    err[0] = '\0';
    /* The payload text gets an exact-size copy (it need not be terminated),
     * so that ASan sees any read past its end. */
    char *payload = NULL;
    if (f[F_PAYLOAD] && (payload = malloc(flen[F_PAYLOAD] ? flen[F_PAYLOAD] : 1)))
        memcpy(payload, f[F_PAYLOAD], flen[F_PAYLOAD]);
    oe_error_code rc =
        fuzz_request_from_fields(f[F_ACTION], f[F_NONCE], payload, payload ? flen[F_PAYLOAD] : 0,
                                 has_art ? &art : NULL, &r, err, sizeof err);
    free(payload);
    FUZZ_CHECK(rc == OE_ERR_NONE || rc == OE_ERR_MALFORMED || rc == OE_ERR_INVALID_REQUEST);
    FUZZ_CHECK(r.payload != NULL);
    if (rc == OE_ERR_NONE) {
        check_accepted(&r);
        cross_check_json(&r);
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    oe_request_clear(&r);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memchr(data, '\0', size))
        from_fields(data, size);
    else
        from_json(data, size);
    return 0;
}
