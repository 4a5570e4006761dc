/* The wire codec (see codec.h).
 *
 * Avro bodies are decoded with avro-c's value API, but never before our
 * own bounds walk over the body has accepted it: avro-c 1.11.1 allocates a
 * string's declared length before checking that the bytes are there, leaks
 * the buffer when the input ends inside a string, does not check varint
 * overflow, and cannot tell trailing bytes from the end of the input. The
 * walk checks every length against the bytes left, every union index and
 * enum index against the schema, every varint for length and overflow, and
 * that the body ends exactly at the end of the message.
 */
#include "codec/codec.h"

#include "codec/avro_canonical.h"

#include <assert.h>
#include <avro.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json.h"
#include "engine/status.h"

/* The text of the schemas/ files, generated into build/gen/schemas.c. */
extern const char oe_schema_execution_request[];
extern const char oe_schema_receipt[];
extern const char oe_schema_receipt_v1[];
extern const char oe_schema_receipt_v2[];

/* Field positions, checked against the schemas by name in oe_codec_new. */
enum { REQ_ACTION, REQ_PAYLOAD, REQ_NONCE, REQ_ARTIFACT, REQ_NFIELDS };
static const char *const req_fields[REQ_NFIELDS] = {"action", "payload", "nonce",
                                                    "approval_artifact"};
enum { ART_NFIELDS = 7, ART_EXPIRES_AT = 6 };
static const char *const art_fields[ART_NFIELDS] = {
    "approval_id", "action_hash", "signature", "issued_by", "issued_at", "tenant_id", "expires_at"};
enum {
    REC_ID,
    REC_NONCE,
    REC_ACTION,
    REC_REQUEST_HASH,
    REC_STATUS,
    REC_APPROVED,
    REC_RESULT,
    REC_RESULT_JSON,
    REC_RECEIPT,
    REC_ERROR_CODE,
    REC_DETAIL,
    REC_APPROVAL_ID,
    REC_ACTION_CODE_HASH,
    REC_PROOF,
    REC_NFIELDS
};
static const char *const rec_fields[REC_NFIELDS] = {
    "id",       "nonce",       "action",           "request_hash", "status",
    "approved", "result",      "result_json",      "receipt",      "error_code",
    "detail",   "approval_id", "action_code_hash", "proof"};

/* The versions of the receipt schema: 3 (schemas/receipt.avsc), written
 * and read; 2 (receipt.v2.avsc, without action_code_hash) and 1
 * (receipt.v1.avsc, without result_json either), still read. */
enum { REC_VERSIONS = 3 };

/* Whether field i (of the current schema) is in version v. */
static int rec_in(int v, size_t i)
{
    return !(i == REC_ACTION_CODE_HASH && v < 3) && !(i == REC_RESULT_JSON && v < 2);
}

/* The number of fields of version v. */
static size_t rec_count(int v)
{
    size_t n = 0;
    for (size_t i = 0; i < REC_NFIELDS; i++)
        n += (size_t)rec_in(v, i);
    return n;
}

/* The field of the current schema at position k of version v. */
static size_t rec_of(int v, size_t k)
{
    size_t i = 0;
    for (;; i++)
        if (rec_in(v, i) && k-- == 0)
            return i;
}
/* Which receipt fields are unions of null and string (checked against
 * the schemas in oe_codec_new): every string but nonce, action and
 * request_hash ("" when unknown, as the signed log's leaf has them). */
static int rec_nullable(size_t i)
{
    return i != REC_STATUS && i != REC_APPROVED && i != REC_NONCE && i != REC_ACTION &&
           i != REC_REQUEST_HASH;
}

/* Single-object encoding header: C3 01 + 8-byte little-endian fingerprint. */
#define SO_HEADER 10
/* Nesting limit of the bounds walk (records, unions, arrays, links). */
#define WALK_MAX_DEPTH 32

typedef struct avro_part {
    oe_buf canonical;
    uint64_t fingerprint;
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
    int has_value;
} avro_part;

struct oe_codec {
    long confluent_schema_id;
    avro_part req;
    avro_part rec[REC_VERSIONS]; /* rec[v - 1]: receipt schema version v; the last is written */
    avro_reader_t reader;
    avro_writer_t writer;
    char *wbuf; /* scratch for encoded bodies */
    size_t wcap;
    oe_buf tmp; /* scratch for payload text */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* An avro-c result (0, or an errno value such as ENOMEM or EINVAL) as an
 * oe_rc. */
static int avro_rc(int e)
{
    return e == 0 ? OE_OK : e == ENOMEM ? OE_ENOMEM : OE_EINVAL;
}

/* avro-c's last error text (a global buffer: not thread-safe). */
static const char *avro_err(void)
{
    const char *s = avro_strerror();
    return s && s[0] ? s : "unknown avro-c error";
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Avro's long: zigzag, then 7 bits a byte, low first. */
static unsigned char *put_zigzag(unsigned char *p, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        *p++ = (unsigned char)(z | 0x80);
        z >>= 7;
    }
    *p++ = (unsigned char)z;
    return p;
}

static size_t zigzag_size(int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 1;
    for (; z >= 0x80; z >>= 7)
        n++;
    return n;
}

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* ---- creation ---- */

static int check_record_fields(avro_schema_t s, const char *const *names, size_t n,
                               const char *what, char *err, size_t errlen)
{
    if (!is_avro_record(s) || avro_schema_record_size(s) != n) {
        set_err(err, errlen, "%s schema: expected a record with %zu fields", what, n);
        return OE_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = avro_schema_record_field_name(s, (int)i);
        if (!name || strcmp(name, names[i]) != 0) {
            set_err(err, errlen, "%s schema: field %zu is %s, expected %s", what, i,
                    name ? name : "(none)", names[i]);
            return OE_EINVAL;
        }
    }
    return OE_OK;
}

static int part_init(avro_part *p, const char *text, const char *what, char *err, size_t errlen)
{
    oe_buf_init(&p->canonical, 0);
    char cerr[200];
    int rc = oe_avro_canonical_form(text, strlen(text), &p->canonical, cerr, sizeof cerr);
    if (rc != OE_OK) {
        set_err(err, errlen, "%s schema: %s", what, cerr);
        return rc;
    }
    p->fingerprint = oe_avro_crc64(p->canonical.data, p->canonical.len);
    if ((rc = avro_schema_from_json_length(text, strlen(text), &p->schema)) != 0) {
        p->schema = NULL;
        set_err(err, errlen, "%s schema: avro-c: %s", what, avro_err());
        return avro_rc(rc);
    }
    /* NULL for a schema avro-c has no value class for (or no memory). */
    if (!(p->iface = avro_generic_class_from_schema(p->schema))) {
        set_err(err, errlen, "%s schema: avro-c: %s", what, avro_err());
        return OE_EINVAL;
    }
    if ((rc = avro_generic_value_new(p->iface, &p->value)) != 0) {
        set_err(err, errlen, "%s schema: avro-c: %s", what, avro_err());
        return avro_rc(rc);
    }
    p->has_value = 1;
    return OE_OK;
}

static void part_free(avro_part *p)
{
    if (p->has_value)
        avro_value_decref(&p->value);
    if (p->iface)
        avro_value_iface_decref(p->iface);
    if (p->schema)
        avro_schema_decref(p->schema);
    oe_buf_free(&p->canonical);
    memset(p, 0, sizeof *p);
}

/* Each field of a receipt schema has the type the encoder writes and the
 * decoder reads: status an enum of the three statuses, approved a boolean,
 * the strings as rec_nullable says. */
static int check_receipt_types(avro_schema_t rs, int v, const char *what, char *err, size_t errlen)
{
    size_t n = rec_count(v);
    for (size_t k = 0; k < n; k++) {
        size_t i = rec_of(v, k);
        avro_schema_t ft = avro_schema_record_field_get_by_index(rs, (int)k);
        if (i == REC_APPROVED) {
            if (!ft || !is_avro_boolean(ft)) {
                set_err(err, errlen, "%s: approved must be a boolean", what);
                return OE_EINVAL;
            }
            continue;
        }
        if (i == REC_STATUS) {
            if (!ft || !is_avro_enum(ft) ||
                avro_schema_enum_number_of_symbols(ft) != OE_STATUS_COUNT) {
                set_err(err, errlen, "%s: status must be an enum of 3 symbols", what);
                return OE_EINVAL;
            }
            for (int j = 0; j < OE_STATUS_COUNT; j++) {
                const char *sym = avro_schema_enum_get(ft, j);
                if (!sym || strcmp(sym, oe_status_name((oe_status)j)) != 0) {
                    set_err(err, errlen, "%s: status symbol %d must be %s", what, j,
                            oe_status_name((oe_status)j));
                    return OE_EINVAL;
                }
            }
            continue;
        }
        int ok = rec_nullable(i) ? ft && is_avro_union(ft) && avro_schema_union_size(ft) == 2 &&
                                       is_avro_null(avro_schema_union_branch(ft, 0)) &&
                                       is_avro_string(avro_schema_union_branch(ft, 1))
                                 : ft && is_avro_string(ft);
        if (!ok) {
            set_err(err, errlen, "%s: %s must be %s", what, rec_fields[i],
                    rec_nullable(i) ? "[null, string]" : "a string");
            return OE_EINVAL;
        }
    }
    return OE_OK;
}

static int check_schemas(oe_codec *c, char *err, size_t errlen)
{
    int rc = check_record_fields(c->req.schema, req_fields, REQ_NFIELDS, "request", err, errlen);
    if (rc != OE_OK)
        return rc;
    avro_schema_t u = avro_schema_record_field_get_by_index(c->req.schema, REQ_ARTIFACT);
    avro_schema_t art = u && is_avro_union(u) && avro_schema_union_size(u) == 2
                            ? avro_schema_union_branch(u, 1)
                            : NULL;
    if (!art || !is_avro_null(avro_schema_union_branch(u, 0))) {
        set_err(err, errlen, "request schema: approval_artifact must be [null, record]");
        return OE_EINVAL;
    }
    if ((rc = check_record_fields(art, art_fields, ART_NFIELDS, "approval artifact", err,
                                  errlen)) != OE_OK)
        return rc;
    for (int v = 1; v <= REC_VERSIONS; v++) {
        const char *names[REC_NFIELDS];
        size_t n = rec_count(v);
        for (size_t k = 0; k < n; k++)
            names[k] = rec_fields[rec_of(v, k)];
        char what[48];
        snprintf(what, sizeof what, "receipt (version %d)", v);
        if ((rc = check_record_fields(c->rec[v - 1].schema, names, n, what, err, errlen)) !=
                OE_OK ||
            (rc = check_receipt_types(c->rec[v - 1].schema, v, what, err, errlen)) != OE_OK)
            return rc;
    }
    return OE_OK;
}

int oe_codec_new(long confluent_schema_id, oe_codec **out, char *err, size_t errlen)
{
    *out = NULL;
    oe_codec *c = calloc(1, sizeof *c);
    if (!c) {
        set_err(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    c->confluent_schema_id = confluent_schema_id;
    oe_buf_init(&c->tmp, 0);
    int rc;
    if ((rc = part_init(&c->req, oe_schema_execution_request, "request", err, errlen)) != OE_OK ||
        (rc = part_init(&c->rec[0], oe_schema_receipt_v1, "receipt (version 1)", err, errlen)) !=
            OE_OK ||
        (rc = part_init(&c->rec[1], oe_schema_receipt_v2, "receipt (version 2)", err, errlen)) !=
            OE_OK ||
        (rc = part_init(&c->rec[2], oe_schema_receipt, "receipt", err, errlen)) != OE_OK ||
        (rc = check_schemas(c, err, errlen)) != OE_OK)
        goto fail;
    static const char empty[1];
    c->reader = avro_reader_memory(empty, 0);
    c->wcap = 256;
    c->wbuf = malloc(c->wcap);
    if (!c->reader || !c->wbuf || !(c->writer = avro_writer_memory(c->wbuf, (int64_t)c->wcap))) {
        set_err(err, errlen, "out of memory");
        rc = OE_ENOMEM;
        goto fail;
    }
    *out = c;
    return OE_OK;
fail:
    oe_codec_free(c);
    return rc;
}

void oe_codec_free(oe_codec *c)
{
    if (!c)
        return;
    part_free(&c->req);
    for (int v = 0; v < REC_VERSIONS; v++)
        part_free(&c->rec[v]);
    if (c->reader)
        avro_reader_free(c->reader);
    if (c->writer)
        avro_writer_free(c->writer);
    free(c->wbuf);
    oe_buf_free(&c->tmp);
    free(c);
}

uint64_t oe_codec_request_fingerprint(const oe_codec *c)
{
    return c->req.fingerprint;
}

uint64_t oe_codec_receipt_fingerprint(const oe_codec *c)
{
    return c->rec[REC_VERSIONS - 1].fingerprint;
}

const char *oe_codec_request_canonical(const oe_codec *c)
{
    return c->req.canonical.data;
}

const char *oe_codec_receipt_canonical(const oe_codec *c)
{
    return c->rec[REC_VERSIONS - 1].canonical.data;
}

/* ---- the bounds walk ---- */

typedef struct walk {
    const unsigned char *p;
    size_t pos, end; /* offsets into the whole message */
    char *err;
    size_t errlen;
} walk;

static int walk_fail(walk *w, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int walk_fail(walk *w, const char *field, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    set_err(w->err, w->errlen, "Avro body: %s (field %s, offset %zu)", what, field, w->pos);
    return OE_EINVAL;
}

/* A zigzag varint of at most maxlen bytes whose value fits 64 bits. */
static int walk_varint(walk *w, const char *field, const char *what, int maxlen, int64_t *out)
{
    uint64_t v = 0;
    size_t start = w->pos;
    for (int i = 0;; i++) {
        if (i == maxlen) {
            w->pos = start;
            return walk_fail(w, field, "%s: varint longer than %d bytes", what, maxlen);
        }
        if (w->pos >= w->end) {
            w->pos = start;
            return walk_fail(w, field, "%s: message ends inside a varint", what);
        }
        unsigned b = w->p[w->pos++];
        if (i == 9 && (b & 0x80)) {
            w->pos = start;
            return walk_fail(w, field, "%s: varint longer than %d bytes", what, maxlen);
        }
        if (i == 9 && b > 1) {
            w->pos = start;
            return walk_fail(w, field, "%s: varint overflows 64 bits", what);
        }
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80))
            break;
    }
    *out = (int64_t)((v >> 1) ^ (0 - (v & 1)));
    return OE_OK;
}

static int walk_bytes(walk *w, const char *field, const char *what, int64_t n)
{
    size_t left = w->end - w->pos;
    if (n < 0)
        return walk_fail(w, field, "negative %s length %" PRId64, what, n);
    if ((uint64_t)n > left)
        return walk_fail(w, field, "%s length %" PRId64 " exceeds the %zu bytes left", what, n,
                         left);
    w->pos += (size_t)n;
    return OE_OK;
}

static int walk_value(walk *w, avro_schema_t s, const char *field, int depth);

/* Array or map blocks: count, optional byte size, items. */
static int walk_blocks(walk *w, avro_schema_t item, int is_map, const char *field, int depth)
{
    size_t total = 0;
    int rc;
    for (;;) {
        int64_t count, size;
        if ((rc = walk_varint(w, field, "block count", 10, &count)) != OE_OK)
            return rc;
        if (count == 0)
            return OE_OK;
        if (count < 0) {
            if (count == INT64_MIN)
                return walk_fail(w, field, "invalid block count");
            count = -count;
            if ((rc = walk_varint(w, field, "block size", 10, &size)) != OE_OK)
                return rc;
            if (size < 0 || (uint64_t)size > w->end - w->pos)
                return walk_fail(w, field, "block size %" PRId64 " out of range", size);
        }
        /* Every block costs at least one byte, and no block may claim more
         * items than there are bytes left (even of zero-size items). */
        if ((uint64_t)count > w->end - w->pos + 1 || total + (size_t)count > OE_REQUEST_MAX_BYTES)
            return walk_fail(w, field, "block count %" PRId64 " out of range", count);
        total += (size_t)count;
        for (int64_t i = 0; i < count; i++) {
            if (is_map) {
                int64_t klen;
                if ((rc = walk_varint(w, field, "map key length", 10, &klen)) != OE_OK ||
                    (rc = walk_bytes(w, field, "map key", klen)) != OE_OK)
                    return rc;
            }
            if ((rc = walk_value(w, item, field, depth + 1)) != OE_OK)
                return rc;
        }
    }
}

static int walk_value(walk *w, avro_schema_t s, const char *field, int depth)
{
    int64_t n;
    int rc;
    if (depth > WALK_MAX_DEPTH)
        return walk_fail(w, field, "nested deeper than %d levels", WALK_MAX_DEPTH);
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return 0;
    case AVRO_BOOLEAN:
        if (w->pos >= w->end)
            return walk_fail(w, field, "message ends before a boolean");
        if (w->p[w->pos] > 1)
            return walk_fail(w, field, "boolean byte 0x%02x is neither 0 nor 1", w->p[w->pos]);
        w->pos++;
        return 0;
    case AVRO_INT32:
        if ((rc = walk_varint(w, field, "int", 5, &n)) != OE_OK)
            return rc;
        if (n < INT32_MIN || n > INT32_MAX)
            return walk_fail(w, field, "int out of range");
        return 0;
    case AVRO_INT64:
        return walk_varint(w, field, "long", 10, &n);
    case AVRO_FLOAT:
        return walk_bytes(w, field, "float", 4);
    case AVRO_DOUBLE:
        return walk_bytes(w, field, "double", 8);
    case AVRO_STRING:
    case AVRO_BYTES: {
        const char *what = avro_typeof(s) == AVRO_STRING ? "string" : "bytes";
        if ((rc = walk_varint(w, field, what, 10, &n)) != OE_OK)
            return rc;
        return walk_bytes(w, field, what, n);
    }
    case AVRO_FIXED:
        return walk_bytes(w, field, "fixed", avro_schema_fixed_size(s));
    case AVRO_ENUM: {
        size_t at = w->pos;
        if ((rc = walk_varint(w, field, "enum index", 10, &n)) != OE_OK)
            return rc;
        int nsym = avro_schema_enum_number_of_symbols(s);
        if (n < 0 || n >= nsym) {
            w->pos = at;
            return walk_fail(w, field, "enum index %" PRId64 " out of range (%d symbols)", n, nsym);
        }
        return 0;
    }
    case AVRO_UNION: {
        size_t at = w->pos;
        if ((rc = walk_varint(w, field, "union index", 10, &n)) != OE_OK)
            return rc;
        size_t nb = avro_schema_union_size(s);
        if (n < 0 || (uint64_t)n >= nb) {
            w->pos = at;
            return walk_fail(w, field, "union index %" PRId64 " out of range (%zu branches)", n,
                             nb);
        }
        return walk_value(w, avro_schema_union_branch(s, (int)n), field, depth + 1);
    }
    case AVRO_RECORD: {
        size_t nf = avro_schema_record_size(s);
        for (size_t i = 0; i < nf; i++) {
            const char *name = avro_schema_record_field_name(s, (int)i);
            if ((rc = walk_value(w, avro_schema_record_field_get_by_index(s, (int)i),
                                 name ? name : "?", depth + 1)) != OE_OK)
                return rc;
        }
        return 0;
    }
    case AVRO_ARRAY:
        return walk_blocks(w, avro_schema_array_items(s), 0, field, depth);
    case AVRO_MAP:
        return walk_blocks(w, avro_schema_map_values(s), 1, field, depth);
    case AVRO_LINK:
        return walk_value(w, avro_schema_link_target(s), field, depth + 1);
    default:
        return walk_fail(w, field, "unsupported schema type");
    }
}

/* Walks the body msg[start..len) against schema, then has avro-c read it
 * into p->value. Returns OE_OK, OE_EINVAL with a reason in err (the bytes
 * are not a valid body), or OE_ENOMEM (avro-c failed on bytes the walk
 * accepted). */
static int read_body(oe_codec *c, avro_part *p, const unsigned char *msg, size_t start, size_t len,
                     const char *root, char *err, size_t errlen)
{
    walk w = {.p = msg, .pos = start, .end = len, .err = err, .errlen = errlen};
    int rc = walk_value(&w, p->schema, root, 0);
    if (rc != OE_OK)
        return rc;
    if (w.pos != len) {
        set_err(err, errlen, "Avro body: %zu trailing bytes after the record (offset %zu)",
                len - w.pos, w.pos);
        return OE_EINVAL;
    }
    avro_reader_memory_set_source(c->reader, (const char *)msg + start, (int64_t)(len - start));
    if (avro_value_read(c->reader, &p->value) != 0) {
        /* The walk above accepted every byte, so avro-c can only have run
         * out of memory: no verdict on the message. */
        set_err(err, errlen, "Avro body: avro-c: %s", avro_err());
        return OE_ENOMEM;
    }
    return OE_OK;
}

/* ---- reading fields from a decoded value ---- */

/* The string value v (size from avro-c includes the NUL). */
static int get_str(avro_value_t *v, const char **s, size_t *len)
{
    size_t size = 0;
    const char *p = NULL;
    int rc = avro_rc(avro_value_get_string(v, &p, &size));
    if (rc != OE_OK)
        return rc;
    *s = p ? p : "";
    *len = size ? size - 1 : 0;
    return OE_OK;
}

/* Field i of record rec: a string, or a [null, string] union (then *s is
 * NULL for null). */
static int field_str(avro_value_t *rec, size_t i, const char **s, size_t *len)
{
    avro_value_t f, b;
    int rc = avro_rc(avro_value_get_by_index(rec, i, &f, NULL));
    if (rc != OE_OK)
        return rc;
    if (avro_value_get_type(&f) == AVRO_UNION) {
        int disc;
        if ((rc = avro_rc(avro_value_get_discriminant(&f, &disc))) != OE_OK)
            return rc;
        if (disc == 0) {
            *s = NULL;
            *len = 0;
            return OE_OK;
        }
        if ((rc = avro_rc(avro_value_get_current_branch(&f, &b))) != OE_OK)
            return rc;
        return get_str(&b, s, len);
    }
    return get_str(&f, s, len);
}

/* NULL when s[0..len) is usable as a C string of UTF-8 text, else why not. */
static const char *text_problem(const char *s, size_t len)
{
    if (memchr(s, '\0', len))
        return "contains a NUL character";
    if (!oe_utf8_valid(s, len))
        return "is not valid UTF-8";
    return NULL;
}

/* ---- requests ---- */

/* The verdict DEAD: req keeps nothing. */
static oe_rc dead(oe_request *req, oe_decode_verdict *verdict, oe_error_code *code)
{
    oe_request_clear(req);
    *code = OE_ERR_MALFORMED;
    *verdict = OE_DECODE_DEAD;
    return OE_OK;
}

/* The verdict REJECTED for reason (detail already says why). */
static oe_rc rejected(oe_decode_verdict *verdict, oe_error_code *code, oe_error_code reason)
{
    *code = reason;
    *verdict = OE_DECODE_REJECTED;
    return OE_OK;
}

/* A string member of a JSON object usable as a C string, copied; NULL when
 * absent or unusable. */
static char *json_text(const oe_json *obj, const char *key)
{
    const oe_json *v = oe_json_get(obj, key);
    errno = 0;
    if (!v || v->type != OE_JSON_STRING || memchr(v->str, '\0', v->len))
        return NULL;
    return strndup(v->str, v->len); /* NULL with errno ENOMEM */
}

oe_rc oe_codec_decode_json_request(const char *buf, size_t len, oe_request *req,
                                   oe_decode_verdict *verdict, oe_error_code *code, char *detail,
                                   size_t detlen)
{
    oe_error_code reason;
    int rc = oe_request_from_json(buf, len, req, &reason, detail, detlen);
    if (rc != OE_OK)
        return rc; /* OE_ENOMEM: no verdict */
    if (reason == OE_ERR_NONE) {
        *verdict = OE_DECODE_VALID;
        return OE_OK;
    }
    /* A message in our JSON format whose text is not strict JSON
     * (duplicate keys, NaN, invalid UTF-8, broken syntax) is a request we
     * can answer: a `malformed` receipt, keyed by the message key (docs/protocol.md §2
     * rejects these as malformed). Only unknown formats are dead letters. */
    if (!req->doc || oe_json_root(req->doc)->type != OE_JSON_OBJECT)
        return rejected(verdict, code, OE_ERR_MALFORMED);
    /* oe_request_from_json stops at the first bad field: name what it did
     * not get to, for the rejection receipt. */
    const oe_json *root = oe_json_root(req->doc);
    if ((!req->action && !(req->action = json_text(root, "action")) && errno == ENOMEM) ||
        (!req->nonce && !(req->nonce = json_text(root, "nonce")) && errno == ENOMEM))
        return OE_ENOMEM;
    return rejected(verdict, code, reason);
}

/* The string fields of a decoded ExecutionRequest, borrowed from the
 * codec's value (valid until the next decode). */
typedef struct avro_fields {
    const char *s[REQ_NFIELDS];
    size_t n[REQ_NFIELDS];
    const char *as[ART_NFIELDS]; /* artifact fields; expires_at may be NULL */
    size_t an[ART_NFIELDS];
    int has_art;
} avro_fields;

/* Reads every string of the record into f. Returns OE_OK, or OE_EINVAL
 * with a reason in detail when the record lacks one (a dead letter). */
static int read_avro_fields(avro_value_t *rec, avro_fields *f, char *detail, size_t detlen)
{
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < REQ_NFIELDS; i++) {
        if (i == REQ_ARTIFACT)
            continue;
        if (field_str(rec, i, &f->s[i], &f->n[i]) != 0 || !f->s[i]) {
            set_err(detail, detlen, "Avro body: cannot read field %s", req_fields[i]);
            return OE_EINVAL;
        }
    }
    avro_value_t u, art;
    int disc;
    if (avro_value_get_by_index(rec, REQ_ARTIFACT, &u, NULL) != 0 ||
        avro_value_get_discriminant(&u, &disc) != 0 ||
        (disc == 1 && avro_value_get_current_branch(&u, &art) != 0)) {
        set_err(detail, detlen, "Avro body: cannot read field approval_artifact");
        return OE_EINVAL;
    }
    if (disc != 1)
        return OE_OK;
    f->has_art = 1;
    for (size_t i = 0; i < ART_NFIELDS; i++) {
        if (field_str(&art, i, &f->as[i], &f->an[i]) != 0 || (!f->as[i] && i != ART_EXPIRES_AT)) {
            set_err(detail, detlen, "Avro body: cannot read field approval_artifact.%s",
                    art_fields[i]);
            return OE_EINVAL;
        }
    }
    return OE_OK;
}

/* Every string must become a C string of UTF-8 text. Returns the first
 * field that cannot (with why and its prefix), or NULL. */
static const char *unclean_field(const avro_fields *f, const char **why, const char **prefix)
{
    *prefix = "";
    for (size_t i = 0; i < REQ_NFIELDS; i++)
        if (i != REQ_ARTIFACT && (*why = text_problem(f->s[i], f->n[i])))
            return req_fields[i];
    *prefix = "approval_artifact.";
    for (size_t i = 0; i < ART_NFIELDS && f->has_art; i++)
        if (f->as[i] && (*why = text_problem(f->as[i], f->an[i])))
            return art_fields[i];
    return NULL;
}

static oe_rc decode_avro_request(oe_codec *c, const unsigned char *msg, size_t start, size_t len,
                                 oe_request *req, oe_decode_verdict *verdict, oe_error_code *code,
                                 char *detail, size_t detlen)
{
    avro_fields f;
    int rc = read_body(c, &c->req, msg, start, len, "ExecutionRequest", detail, detlen);
    if (rc == OE_ENOMEM)
        return rc; /* no verdict */
    if (rc != OE_OK || read_avro_fields(&c->req.value, &f, detail, detlen) != OE_OK)
        return dead(req, verdict, code);
    const char *why, *prefix, *bad = unclean_field(&f, &why, &prefix);
    if (bad) {
        /* Malformed, keeping action and nonce when they are clean; the
         * others are NULL, as oe_request_from_json leaves them. */
        int action_ok = !text_problem(f.s[REQ_ACTION], f.n[REQ_ACTION]);
        int nonce_ok = !text_problem(f.s[REQ_NONCE], f.n[REQ_NONCE]);
        oe_error_code ignored;
        if ((rc = oe_request_from_fields(action_ok ? f.s[REQ_ACTION] : "",
                                         nonce_ok ? f.s[REQ_NONCE] : "", NULL, 0, NULL, req,
                                         &ignored, detail, detlen)) != OE_OK)
            return rc; /* OE_ENOMEM: no verdict */
        if (!action_ok) {
            free(req->action);
            req->action = NULL;
        }
        if (!nonce_ok) {
            free(req->nonce);
            req->nonce = NULL;
        }
        set_err(detail, detlen, "%s%s: %s", prefix, bad, why);
        return rejected(verdict, code, OE_ERR_MALFORMED);
    }
    oe_artifact a = {
        .approval_id = f.as[0],
        .action_hash = f.as[1],
        .signature = f.as[2],
        /* The schema's issued_by is a plain string: "" says absent. */
        .issued_by = f.as[3] && f.as[3][0] ? f.as[3] : NULL,
        .issued_at = f.as[4],
        .tenant_id = f.as[5],
        .expires_at = f.as[6],
    };
    oe_error_code reason;
    if ((rc = oe_request_from_fields(f.s[REQ_ACTION], f.s[REQ_NONCE], f.s[REQ_PAYLOAD],
                                     f.n[REQ_PAYLOAD], f.has_art ? &a : NULL, req, &reason, detail,
                                     detlen)) != OE_OK)
        return rc; /* OE_ENOMEM: no verdict */
    if (reason == OE_ERR_NONE) {
        *verdict = OE_DECODE_VALID;
        return OE_OK;
    }
    return rejected(verdict, code, reason);
}

oe_rc oe_codec_decode_request(oe_codec *c, const void *buf, size_t len, oe_request *req,
                              oe_decode_verdict *verdict, oe_error_code *code, char *detail,
                              size_t detlen)
{
    oe_error_code code_local;
    char detail_local[256];
    if (!code)
        code = &code_local;
    if (!detail || !detlen) {
        detail = detail_local;
        detlen = sizeof detail_local;
    }
    memset(req, 0, sizeof *req);
    *code = OE_ERR_NONE;
    detail[0] = '\0';
    const unsigned char *p = buf;

    if (len == 0) {
        set_err(detail, detlen, "empty message");
        return dead(req, verdict, code);
    }
    if (len > OE_REQUEST_MAX_BYTES) {
        set_err(detail, detlen, "message of %zu bytes exceeds the limit of %zu bytes", len,
                OE_REQUEST_MAX_BYTES);
        return dead(req, verdict, code);
    }
    if (p[0] == '{')
        return oe_codec_decode_json_request(buf, len, req, verdict, code, detail, detlen);
    if (p[0] == 0xC3) {
        if (len < 2 || p[1] != 0x01) {
            set_err(detail, detlen,
                    "not Avro single-object encoding: marker C3 is not followed "
                    "by 01");
            return dead(req, verdict, code);
        }
        if (len < SO_HEADER) {
            set_err(detail, detlen, "truncated Avro single-object header (%zu of %d bytes)", len,
                    SO_HEADER);
            return dead(req, verdict, code);
        }
        uint64_t fp = get_le64(p + 2);
        if (fp != c->req.fingerprint) {
            set_err(detail, detlen,
                    "unknown schema fingerprint 0x%016" PRIx64 " (expected 0x%016" PRIx64 ")", fp,
                    c->req.fingerprint);
            return dead(req, verdict, code);
        }
        return decode_avro_request(c, p, SO_HEADER, len, req, verdict, code, detail, detlen);
    }
    if (p[0] == 0x00) {
        if (len < 5) {
            set_err(detail, detlen, "truncated Confluent framing header (%zu of 5 bytes)", len);
            return dead(req, verdict, code);
        }
        unsigned long id = ((unsigned long)p[1] << 24) | ((unsigned long)p[2] << 16) |
                           ((unsigned long)p[3] << 8) | p[4];
        if (c->confluent_schema_id < 0) {
            set_err(detail, detlen,
                    "Confluent framing (schema id %lu) but Confluent framing is not configured "
                    "(no schema id set)",
                    id);
            return dead(req, verdict, code);
        }
        if (id != (unsigned long)c->confluent_schema_id) {
            set_err(detail, detlen, "unknown schema id %lu in Confluent framing (configured: %ld)",
                    id, c->confluent_schema_id);
            return dead(req, verdict, code);
        }
        return decode_avro_request(c, p, 5, len, req, verdict, code, detail, detlen);
    }
    set_err(detail, detlen,
            "unrecognised message format (first byte 0x%02x): neither JSON, Avro single-object "
            "nor Confluent framing",
            p[0]);
    return dead(req, verdict, code);
}

/* ---- encoding ---- */

static int set_str(avro_value_t *v, const char *s, size_t len)
{
    return avro_rc(avro_value_set_string_len(v, s, len + 1));
}

/* Field i of rec: a string, or a [null, string] union set from s (NULL ->
 * null). Returns an oe_rc: OE_EINVAL for NULL in a field that is not
 * nullable. */
static int set_field_str_len(avro_value_t *rec, size_t i, const char *s, size_t len)
{
    avro_value_t f, b;
    int rc = avro_rc(avro_value_get_by_index(rec, i, &f, NULL));
    if (rc != OE_OK)
        return rc;
    if (avro_value_get_type(&f) == AVRO_UNION) {
        if ((rc = avro_rc(avro_value_set_branch(&f, s ? 1 : 0, &b))) != OE_OK)
            return rc;
        return s ? set_str(&b, s, len) : avro_rc(avro_value_set_null(&b));
    }
    return s ? set_str(&f, s, len) : OE_EINVAL;
}

static int set_field_str(avro_value_t *rec, size_t i, const char *s)
{
    return set_field_str_len(rec, i, s, s ? strlen(s) : 0);
}

/* Appends C3 01, the fingerprint and the binary encoding of p->value. */
static int write_single_object(oe_codec *c, avro_part *p, oe_buf *out, char *err, size_t errlen)
{
    size_t size = 0;
    int rc = avro_rc(avro_value_sizeof(&p->value, &size));
    if (rc != OE_OK) {
        set_err(err, errlen, "avro-c: %s", avro_err());
        return rc;
    }
    if (size > c->wcap) {
        char *nb = realloc(c->wbuf, size);
        if (!nb) {
            set_err(err, errlen, "out of memory");
            return OE_ENOMEM;
        }
        c->wbuf = nb;
        c->wcap = size;
    }
    avro_writer_memory_set_dest(c->writer, c->wbuf, (int64_t)size);
    if ((rc = avro_rc(avro_value_write(c->writer, &p->value))) != OE_OK) {
        set_err(err, errlen, "avro-c: %s", avro_err());
        return rc;
    }
    unsigned char hdr[SO_HEADER] = {0xC3, 0x01};
    put_le64(hdr + 2, p->fingerprint);
    size_t start = out->len;
    if ((rc = oe_buf_append(out, hdr, sizeof hdr)) != OE_OK ||
        (rc = oe_buf_append(out, c->wbuf, size)) != OE_OK) {
        if (out->data) {
            out->len = start;
            out->data[start] = '\0';
        }
        set_err(err, errlen, "output buffer limit reached");
        return rc;
    }
    return OE_OK;
}

static int utf8_ok(const char *s)
{
    return !s || oe_utf8_valid(s, strlen(s));
}

int oe_codec_encode_request(oe_codec *c, const oe_request *req, oe_buf *out, char *err,
                            size_t errlen)
{
    static const oe_json empty = {.type = OE_JSON_OBJECT};
    const char *action = req->action ? req->action : "";
    const char *nonce = req->nonce ? req->nonce : "";
    oe_buf_reset(&c->tmp);
    int rc = oe_json_dump(&c->tmp, req->payload ? req->payload : &empty, OE_JSON_COMPACT);
    if (rc != OE_OK) {
        set_err(err, errlen, "payload too large to encode");
        return rc;
    }
    const char *payload = c->tmp.data ? c->tmp.data : "{}";
    if (!utf8_ok(action) || !utf8_ok(nonce)) {
        set_err(err, errlen, "action and nonce must be UTF-8 text");
        return OE_EINVAL;
    }
    avro_value_t *rec = &c->req.value;
    avro_value_t u, art;
    if ((rc = avro_rc(avro_value_reset(rec))) != OE_OK ||
        (rc = set_field_str(rec, REQ_ACTION, action)) != OE_OK ||
        (rc = set_field_str(rec, REQ_PAYLOAD, payload)) != OE_OK ||
        (rc = set_field_str(rec, REQ_NONCE, nonce)) != OE_OK ||
        (rc = avro_rc(avro_value_get_by_index(rec, REQ_ARTIFACT, &u, NULL))) != OE_OK)
        goto avro_fail;
    if (req->has_artifact) {
        const oe_artifact *a = &req->artifact;
        /* The schema's issued_by is a plain string: an artifact without one
         * (the newer clients' Ed25519 artifacts) travels with "". key_id
         * has no field: Avro artifacts are checked with each key. */
        const char *f[ART_NFIELDS] = {
            a->approval_id, a->action_hash, a->signature, a->issued_by ? a->issued_by : "",
            a->issued_at,   a->tenant_id,   a->expires_at};
        /* Signed, so it cannot be dropped: such an approval travels in
         * JSON. */
        if (a->action_code_hash) {
            set_err(err, errlen,
                    "approval_artifact.action_code_hash: the Avro request schema has no such "
                    "field; send this request as JSON");
            return OE_EINVAL;
        }
        if ((rc = avro_rc(avro_value_set_branch(&u, 1, &art))) != OE_OK)
            goto avro_fail;
        for (size_t i = 0; i < ART_NFIELDS; i++) {
            if ((!f[i] && i != ART_EXPIRES_AT) || !utf8_ok(f[i])) {
                set_err(err, errlen, "approval_artifact.%s: missing or not UTF-8 text",
                        art_fields[i]);
                return OE_EINVAL;
            }
            if ((rc = set_field_str(&art, i, f[i])) != OE_OK)
                goto avro_fail;
        }
    } else {
        avro_value_t nb;
        if ((rc = avro_rc(avro_value_set_branch(&u, 0, &nb))) != OE_OK ||
            (rc = avro_rc(avro_value_set_null(&nb))) != OE_OK)
            goto avro_fail;
    }
    return write_single_object(c, &c->req, out, err, errlen);
avro_fail:
    set_err(err, errlen, "avro-c: %s", avro_err());
    return rc;
}

/* ---- receipts ---- */

static const char *status_name(oe_status s)
{
    return (unsigned)s < OE_STATUS_COUNT ? oe_status_name(s) : NULL;
}

/* One string or null, after a key, in the DEFAULT style. */
static int put_json_field(oe_buf *out, const char *key, const char *s, size_t len, int last)
{
    int rc = oe_buf_putc(out, '"');
    if (rc == OE_OK)
        rc = oe_buf_puts(out, key);
    if (rc == OE_OK)
        rc = oe_buf_append(out, "\": ", 3);
    if (rc == OE_OK)
        rc = s ? oe_json_dump_string(out, s, len) : oe_buf_append(out, "null", 4);
    if (rc == OE_OK)
        rc = oe_buf_puts(out, last ? "}" : ", ");
    return rc;
}

/* The JSON form of a receipt, fields in the schema's order. Returns OE_OK,
 * or (out left as it was) OE_EINVAL when a string is not UTF-8 text, or
 * the failure of an append (OE_ELIMIT, OE_ENOMEM). */
static int render_receipt(oe_buf *out, const char *id, const char *nonce, const char *action,
                          const char *request_hash, const char *status, int approved,
                          const char *result, const char *receipt, const char *error_code,
                          const char *detail, const char *approval_id, const char *action_code_hash,
                          const char *proof, size_t proof_len)
{
    /* The fields in order; "approved", a literal, goes before result. */
    enum { NFIELDS = 12, APPROVED_BEFORE = 5 };
    static const char *const key[NFIELDS] = {
        "id",          "nonce",   "action",     "request_hash", "status",      "result",
        "result_json", "receipt", "error_code", "detail",       "approval_id", "action_code_hash"};
    const char *v[NFIELDS] = {id,
                              nonce ? nonce : "",
                              action ? action : "",
                              request_hash ? request_hash : "",
                              status,
                              result,
                              result,
                              receipt,
                              error_code,
                              detail,
                              approval_id,
                              action_code_hash};
    size_t len[NFIELDS];
    /* The room of the whole receipt reserved at once, for text that needs
     * no escapes (more is taken if some does): one allocation for most. */
    size_t room = 300 + proof_len;
    for (size_t i = 0; i < NFIELDS; i++) {
        len[i] = v[i] ? strlen(v[i]) : 0;
        room += len[i] + 2;
    }
    size_t start = out->len;
    oe_buf_room(out, room); /* a failure here is met again below */
    int failed = oe_buf_putc(out, '{');
    for (size_t i = 0; !failed && i < NFIELDS; i++) {
        if (i == APPROVED_BEFORE)
            failed = oe_buf_puts(out, approved ? "\"approved\": true, " : "\"approved\": false, ");
        if (!failed)
            failed = put_json_field(out, key[i], v[i], len[i], i == NFIELDS - 1 && !proof);
    }
    /* The proof is a JSON object made by the engine (or checked by the
     * decoder): pasted as it is. */
    if (!failed && proof)
        failed = oe_buf_puts(out, "\"proof\": ") || oe_buf_append(out, proof, proof_len) ||
                 oe_buf_putc(out, '}');
    if (!failed)
        return OE_OK;
    /* An append failed (the buffer keeps why), or else oe_json_dump_string
     * refused a string that is not UTF-8 text. */
    int rc = oe_buf_failed(out) ? oe_buf_failed(out) : OE_EINVAL;
    if (out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

int oe_codec_encode_receipt(oe_codec *c, const oe_receipt_fields *r, int json, oe_buf *out,
                            char *err, size_t errlen)
{
    const char *status = status_name(r->status);
    if (!status) {
        set_err(err, errlen, "invalid status %d", (int)r->status);
        return OE_EINVAL;
    }
    const char *error_code = oe_error_code_name(r->error);
    int rc;
    if (json) {
        rc = render_receipt(out, r->id, r->nonce, r->action, r->request_hash, status, r->approved,
                            r->result, r->receipt, error_code, r->detail, r->approval_id,
                            r->action_code_hash, r->proof,
                            r->proof_len || !r->proof ? r->proof_len : strlen(r->proof));
        if (rc != OE_OK)
            set_err(err, errlen, "receipt strings must be UTF-8 text (or the buffer is full)");
        return rc;
    }
    const char *f[REC_NFIELDS] = {
        [REC_ID] = r->id,
        [REC_NONCE] = r->nonce ? r->nonce : "",
        [REC_ACTION] = r->action ? r->action : "",
        [REC_REQUEST_HASH] = r->request_hash ? r->request_hash : "",
        [REC_RESULT] = r->result,
        [REC_RESULT_JSON] = r->result,
        [REC_RECEIPT] = r->receipt,
        [REC_ERROR_CODE] = error_code,
        [REC_DETAIL] = r->detail,
        [REC_APPROVAL_ID] = r->approval_id,
        [REC_ACTION_CODE_HASH] = r->action_code_hash,
        [REC_PROOF] = r->proof,
    };
    /* Exactly what is written below: the header, status (one byte: a
     * zigzag of 0..2), approved, then each string with its length and, in
     * a union, its branch. */
    size_t len[REC_NFIELDS] = {0};
    size_t need = SO_HEADER + 1 + 1;
    for (size_t i = 0; i < REC_NFIELDS; i++) {
        if (i == REC_STATUS || i == REC_APPROVED)
            continue;
        need += rec_nullable(i) ? 1 : 0;
        if (!f[i])
            continue;
        len[i] = i == REC_PROOF && r->proof_len ? r->proof_len : strlen(f[i]);
        /* The proof is our JSON printer's output, which escapes every
         * byte outside printable ASCII: text by construction. */
        if (i != REC_PROOF && !oe_utf8_valid(f[i], len[i])) {
            set_err(err, errlen, "receipt field %s is not UTF-8 text", rec_fields[i]);
            return OE_EINVAL;
        }
        need += zigzag_size((int64_t)len[i]) + len[i];
    }
    size_t start = out->len;
    if ((rc = oe_buf_failed(out)) != OE_OK || (rc = oe_buf_room(out, need)) != OE_OK) {
        set_err(err, errlen, rc == OE_ENOMEM ? "out of memory" : "output buffer limit reached");
        return rc;
    }
    /* The binary encoding written directly, in the schema's field order
     * (oe_codec_new checked each field's type against this layout):
     * strings as a zigzag length and the bytes, unions of null and string
     * as the branch (0 or 1, zigzagged) and then the string. */
    unsigned char *p = (unsigned char *)out->data + start;
    *p++ = 0xC3;
    *p++ = 0x01;
    put_le64(p, c->rec[REC_VERSIONS - 1].fingerprint);
    p += 8;
    for (size_t i = 0; i < REC_NFIELDS; i++) {
        if (i == REC_STATUS) {
            p = put_zigzag(p, (int64_t)r->status);
            continue;
        }
        if (i == REC_APPROVED) {
            *p++ = r->approved ? 1 : 0;
            continue;
        }
        if (rec_nullable(i))
            *p++ = f[i] ? 2 : 0;
        if (!f[i])
            continue;
        p = put_zigzag(p, (int64_t)len[i]);
        memcpy(p, f[i], len[i]);
        p += len[i];
    }
    out->len = (size_t)(p - (unsigned char *)out->data);
    assert(out->len == start + need);
    out->data[out->len] = '\0';
    return OE_OK;
}

void oe_receipt_clear(oe_receipt *r)
{
    free(r->id);
    free(r->nonce);
    free(r->action);
    free(r->request_hash);
    free(r->result);
    free(r->result_json);
    free(r->receipt);
    free(r->detail);
    free(r->approval_id);
    free(r->action_code_hash);
    free(r->error_code);
    free(r->proof);
    memset(r, 0, sizeof *r);
}

/* The receipt's string slots in the schema's field order (NULL for status
 * and approved). */
static char **receipt_slot(oe_receipt *r, size_t i)
{
    switch (i) {
    case REC_ID:
        return &r->id;
    case REC_NONCE:
        return &r->nonce;
    case REC_ACTION:
        return &r->action;
    case REC_REQUEST_HASH:
        return &r->request_hash;
    case REC_RESULT:
        return &r->result;
    case REC_RESULT_JSON:
        return &r->result_json;
    case REC_RECEIPT:
        return &r->receipt;
    case REC_ERROR_CODE:
        return &r->error_code;
    case REC_DETAIL:
        return &r->detail;
    case REC_APPROVAL_ID:
        return &r->approval_id;
    case REC_ACTION_CODE_HASH:
        return &r->action_code_hash;
    case REC_PROOF:
        return &r->proof;
    }
    return NULL;
}

/* A receipt's proof as the decoders keep it: an object, re-serialised
 * compactly into *out (owned), so that what is passed on (into an HTTP
 * answer, a printed line) is always one well-formed JSON object, whatever
 * the topic carried. Returns OE_OK, OE_EINVAL (not an object, or not
 * serialisable) or OE_ENOMEM. */
static int proof_text(const oe_json *proof, char **out, char *err, size_t errlen)
{
    if (proof->type != OE_JSON_OBJECT) {
        set_err(err, errlen, "receipt field proof: must be an object or null");
        return OE_EINVAL;
    }
    oe_buf b;
    oe_buf_init(&b, 0);
    int rc = oe_json_dump(&b, proof, OE_JSON_COMPACT);
    if (rc != OE_OK) {
        oe_buf_free(&b);
        set_err(err, errlen, "receipt field proof: %s", oe_strerror(rc));
        return rc == OE_ENOMEM ? OE_ENOMEM : OE_EINVAL;
    }
    *out = b.data;
    return OE_OK;
}

/* result and result_json are one text under two names: a receipt that
 * carries one has it under both; one that carries two different texts is
 * refused (which would a reader believe?). */
static int same_result(oe_receipt *out, char *err, size_t errlen)
{
    if (out->result && out->result_json) {
        if (strcmp(out->result, out->result_json) == 0)
            return OE_OK;
        set_err(err, errlen, "receipt fields result and result_json differ");
        return OE_EINVAL;
    }
    char **missing = out->result ? &out->result_json : out->result_json ? &out->result : NULL;
    if (missing && !(*missing = strdup(out->result ? out->result : out->result_json))) {
        set_err(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    return OE_OK;
}

static int decode_avro_receipt(oe_codec *c, const unsigned char *p, size_t len, oe_receipt *out,
                               char *err, size_t errlen)
{
    if (len < SO_HEADER || p[1] != 0x01) {
        set_err(err, errlen, "not an Avro single-object message (%zu bytes)", len);
        return OE_EINVAL;
    }
    uint64_t fp = get_le64(p + 2);
    int version = REC_VERSIONS;
    while (version > 0 && fp != c->rec[version - 1].fingerprint)
        version--;
    if (version == 0) {
        set_err(err, errlen,
                "unknown schema fingerprint 0x%016" PRIx64 " (receipt schema: 0x%016" PRIx64
                ", its earlier versions: 0x%016" PRIx64 ", 0x%016" PRIx64 ")",
                fp, c->rec[2].fingerprint, c->rec[1].fingerprint, c->rec[0].fingerprint);
        return OE_EINVAL;
    }
    avro_part *part = &c->rec[version - 1];
    int rc = read_body(c, part, p, SO_HEADER, len, "Receipt", err, errlen);
    if (rc != OE_OK)
        return rc;
    avro_value_t *rec = &part->value;
    size_t n = rec_count(version);
    for (size_t k = 0; k < n; k++) {
        size_t i = rec_of(version, k);
        avro_value_t v;
        if (i == REC_STATUS || i == REC_APPROVED) {
            int x;
            if (avro_value_get_by_index(rec, k, &v, NULL) != 0 ||
                (i == REC_STATUS ? avro_value_get_enum(&v, &x) : avro_value_get_boolean(&v, &x)))
                goto unreadable;
            if (i == REC_STATUS) {
                if (x < 0 || x > 2)
                    goto unreadable;
                out->status = (oe_status)x;
            } else {
                out->approved = x ? 1 : 0;
            }
            continue;
        }
        const char *s;
        size_t sn;
        if (field_str(rec, k, &s, &sn) != 0)
            goto unreadable;
        if (!s)
            continue;
        const char *why = text_problem(s, sn);
        if (why) {
            set_err(err, errlen, "receipt field %s %s", rec_fields[i], why);
            return OE_EINVAL;
        }
        char **slot = receipt_slot(out, i);
        if (!(*slot = strndup(s, sn))) {
            set_err(err, errlen, "out of memory");
            return OE_ENOMEM;
        }
    }
    if ((rc = same_result(out, err, errlen)) != OE_OK)
        return rc;
    if (out->proof) {
        /* JSON text inside Avro: parsed, and kept only as an object. */
        char perr[200];
        oe_json_doc *doc;
        char *text = out->proof;
        out->proof = NULL;
        int prc = oe_json_parse(text, strlen(text), 0, &doc, perr, sizeof perr);
        free(text);
        if (prc != OE_OK) {
            set_err(err, errlen, "receipt field proof is not JSON: %s", perr);
            return prc == OE_ENOMEM ? OE_ENOMEM : OE_EINVAL;
        }
        prc = proof_text(oe_json_root(doc), &out->proof, err, errlen);
        oe_json_doc_free(doc);
        if (prc != OE_OK)
            return prc;
    }
    return OE_OK;
unreadable:
    set_err(err, errlen, "Avro body: cannot read the receipt's fields");
    return OE_EINVAL;
}

static int decode_json_receipt(const char *buf, size_t len, oe_receipt *out, char *err,
                               size_t errlen)
{
    char perr[200];
    oe_json_doc *doc;
    int rc = oe_json_parse(buf, len, 0, &doc, perr, sizeof perr);
    if (rc != OE_OK) {
        set_err(err, errlen, "receipt is not valid JSON: %s", perr);
        return rc;
    }
    rc = OE_EINVAL; /* each `goto out` below but the out-of-memory one: a verdict */
    const oe_json *root = oe_json_root(doc);
    if (root->type != OE_JSON_OBJECT) {
        set_err(err, errlen, "receipt is not a JSON object");
        goto out;
    }
    /* The proof is an object in JSON (below), a JSON text in Avro. */
    for (size_t i = 0; i < REC_PROOF; i++) {
        const oe_json *v = oe_json_get(root, rec_fields[i]);
        if (i == REC_STATUS) {
            oe_status found;
            if (!v || v->type != OE_JSON_STRING ||
                oe_status_from_name(v->str, v->len, &found) != 0) {
                set_err(err, errlen,
                        "receipt field status: must be executed, replayed or "
                        "rejected");
                goto out;
            }
            out->status = (oe_status)found;
            continue;
        }
        if (i == REC_APPROVED) {
            if (!v || (v->type != OE_JSON_TRUE && v->type != OE_JSON_FALSE)) {
                set_err(err, errlen, "receipt field approved: must be a boolean");
                goto out;
            }
            out->approved = v->type == OE_JSON_TRUE;
            continue;
        }
        if (!v || v->type == OE_JSON_NULL) {
            if (rec_nullable(i))
                continue;
            set_err(err, errlen, "receipt field %s: missing", rec_fields[i]);
            goto out;
        }
        if (v->type != OE_JSON_STRING) {
            set_err(err, errlen, "receipt field %s: must be a string%s", rec_fields[i],
                    rec_nullable(i) ? " or null" : "");
            goto out;
        }
        if (memchr(v->str, '\0', v->len)) {
            set_err(err, errlen, "receipt field %s contains a NUL character", rec_fields[i]);
            goto out;
        }
        char **slot = receipt_slot(out, i);
        if (!(*slot = strndup(v->str, v->len))) {
            set_err(err, errlen, "out of memory");
            rc = OE_ENOMEM;
            goto out;
        }
    }
    if ((rc = same_result(out, err, errlen)) != OE_OK) {
        if (rc != OE_ENOMEM)
            rc = OE_EINVAL;
        goto out;
    }
    rc = OE_EINVAL;
    /* A signed receipt's proof (docs/protocol.md §8): kept as its compact JSON text,
     * checked by whoever verifies it. */
    const oe_json *proof = oe_json_get(root, "proof");
    if (proof && proof->type != OE_JSON_NULL &&
        (rc = proof_text(proof, &out->proof, err, errlen)) != OE_OK)
        goto out;
    rc = OE_OK;
out:
    oe_json_doc_free(doc);
    return rc;
}

int oe_codec_decode_receipt(oe_codec *c, const void *buf, size_t len, oe_receipt *out, char *err,
                            size_t errlen)
{
    const unsigned char *p = buf;
    memset(out, 0, sizeof *out);
    int rc;
    if (len > OE_REQUEST_MAX_BYTES * 4) {
        set_err(err, errlen, "receipt of %zu bytes is too large", len);
        rc = OE_ELIMIT;
    } else if (len > 0 && p[0] == 0xC3) {
        rc = decode_avro_receipt(c, p, len, out, err, errlen);
    } else if (len > 0 && p[0] == '{') {
        rc = decode_json_receipt(buf, len, out, err, errlen);
    } else {
        set_err(err, errlen, "unrecognised receipt format (%s)",
                len ? "neither Avro single-object nor JSON" : "empty message");
        rc = OE_EINVAL;
    }
    if (rc != 0)
        oe_receipt_clear(out);
    return rc;
}

int oe_receipt_to_json(const oe_receipt *r, oe_buf *out)
{
    const char *status = status_name(r->status);
    if (!status)
        return OE_EINVAL;
    return render_receipt(out, r->id, r->nonce, r->action, r->request_hash, status, r->approved,
                          r->result, r->receipt, r->error_code, r->detail, r->approval_id,
                          r->action_code_hash, r->proof, r->proof ? strlen(r->proof) : 0);
}
