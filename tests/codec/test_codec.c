/* Tests codec/codec.c: Parsing Canonical Form and CRC-64-AVRO against the
 * Avro specification's vectors and python3-avro, request decoding (JSON,
 * Avro single-object, Confluent framing), hostile Avro input, receipts in
 * both formats.
 *
 * Interop modes for tests/worker/avro_interop.py (length-prefixed files:
 * 4-byte big-endian length, then the message):
 *   --decode-requests FILE   one JSON line per request message
 *   --encode-requests FILE   writes Avro requests, prints what they hold
 *   --encode-receipts FILE   writes Avro receipts, prints their JSON form
 *   --decode-receipts FILE   one line per receipt (oe_receipt_to_json)
 *   --fingerprints           the schemas' canonical forms and fingerprints
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/avro_canonical.h"
#include "codec/codec.h"
#include "engine/digest.h"
#include "engine/ids.h"
#include "engine/json.h"
#include "engine/request.h"
#include "engine/status.h"
#include "tests/test.h"

/* What python3-avro 1.11.1 computes (canonical_form, then CRC-64-AVRO). */
#define REQUEST_FP 0xbb8686793197e1c8ULL
#define RECEIPT_FP 0xf21f99c9480dec97ULL
#define RECEIPT_V1_FP 0xb71db64b1190a825ULL /* schemas/receipt.v1.avsc */
#define RECEIPT_V2_FP 0x8cdb5f38c012568aULL /* schemas/receipt.v2.avsc */
static const char request_canonical[] =
    "{\"name\":\"openexec.ExecutionRequest\",\"type\":\"record\",\"fields\":[{\"name\":"
    "\"action\",\"type\":\"string\"},{\"name\":\"payload\",\"type\":\"string\"},{\"name\":"
    "\"nonce\",\"type\":\"string\"},{\"name\":\"approval_artifact\",\"type\":[\"null\",{"
    "\"name\":\"openexec.ApprovalArtifact\",\"type\":\"record\",\"fields\":[{\"name\":"
    "\"approval_id\",\"type\":\"string\"},{\"name\":\"action_hash\",\"type\":\"string\"},{"
    "\"name\":\"signature\",\"type\":\"string\"},{\"name\":\"issued_by\",\"type\":\"string\"},"
    "{\"name\":\"issued_at\",\"type\":\"string\"},{\"name\":\"tenant_id\",\"type\":\"string\"}"
    ",{\"name\":\"expires_at\",\"type\":[\"null\",\"string\"]}]}]}]}";
static const char receipt_canonical[] =
    "{\"name\":\"openexec.Receipt\",\"type\":\"record\",\"fields\":[{\"name\":\"id\",\"type\""
    ":[\"null\",\"string\"]},{\"name\":\"nonce\",\"type\":\"string\"},{\"name\":\"action\",\""
    "type\":\"string\"},{\"name\":\"request_hash\",\"type\":\"string\"},{\"name\":\"status\","
    "\"type\":{\"name\":\"openexec.Status\",\"type\":\"enum\",\"symbols\":[\"executed\",\"rep"
    "layed\",\"rejected\"]}},{\"name\":\"approved\",\"type\":\"boolean\"},{\"name\":\"result\""
    ",\"type\":[\"null\",\"string\"]},{\"name\":\"result_json\",\"type\":[\"null\",\"string\""
    "]},{\"name\":\"receipt\",\"type\":[\"null\",\"string\"]},{\"name\":\"error_code\",\"type"
    "\":[\"null\",\"string\"]},{\"name\":\"detail\",\"type\":[\"null\",\"string\"]},{\"name\""
    ":\"approval_id\",\"type\":[\"null\",\"string\"]},{\"name\":\"action_code_hash\",\"type\":"
    "[\"null\",\"string\"]},{\"name\":\"proof\",\"type\":[\"null\",\"string\"]}]}";

/* ---- canonical form and fingerprints ---- */

typedef struct {
    const char *schema;
    const char *canonical;
    int has_fp;
    int64_t fp; /* as the specification prints it: a signed long */
} canon_case;

/* share/test/data/schema-tests.txt of the Avro sources, then our own. */
static const canon_case canon_cases[] = {
    {"\"null\"", "\"null\"", 1, 7195948357588979594LL},
    {"{\"type\":\"null\"}", "\"null\"", 0, 0},
    {"\"boolean\"", "\"boolean\"", 1, -6970731678124411036LL},
    {"{\"type\":\"boolean\"}", "\"boolean\"", 0, 0},
    {"\"int\"", "\"int\"", 1, 8247732601305521295LL},
    {"{\"type\":\"int\"}", "\"int\"", 0, 0},
    {"\"long\"", "\"long\"", 1, -3434872931120570953LL},
    {"{\"type\":\"long\"}", "\"long\"", 0, 0},
    {"\"float\"", "\"float\"", 1, 5583340709985441680LL},
    {"{\"type\":\"float\"}", "\"float\"", 0, 0},
    {"\"double\"", "\"double\"", 1, -8181574048448539266LL},
    {"{\"type\":\"double\"}", "\"double\"", 0, 0},
    {"\"bytes\"", "\"bytes\"", 1, 5746618253357095269LL},
    {"{\"type\":\"bytes\"}", "\"bytes\"", 0, 0},
    {"\"string\"", "\"string\"", 1, -8142146995180207161LL},
    {"{\"type\":\"string\"}", "\"string\"", 0, 0},
    {"[  ]", "[]", 1, -1241056759729112623LL},
    {"[ \"int\"  ]", "[\"int\"]", 1, -5232228896498058493LL},
    {"[ \"int\" , {\"type\":\"boolean\"} ]", "[\"int\",\"boolean\"]", 1, 5392556393470105090LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", 1, -4824392279771201922LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"x.y.foo\",\"type\":\"record\",\"fields\":[]}", 1, 5916914534497305771LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"a.b.foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"a.b.foo\",\"type\":\"record\",\"fields\":[]}", 1, -4616218487480524110LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"Useful info\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", 1, -4824392279771201922LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"aliases\":[\"foo\",\"bar\"]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", 1, -4824392279771201922LL},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"foo\", "
     "\"aliases\":[\"foo\",\"bar\"]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}", 1, -4824392279771201922LL},
    {"{\"fields\":[{\"type\":{\"type\":\"boolean\"}, \"name\":\"f1\"}], \"type\":\"record\", "
     "\"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"}]}",
     1, 7843277075252814651LL},
    {"{ \"fields\":[{\"type\":\"boolean\", \"aliases\":[], \"name\":\"f1\", "
     "\"default\":\"true\"},\n            {\"order\":\"descending\",\"name\":\"f2\","
     "\"doc\":\"Hello\",\"type\":\"int\"}],\n  \"type\":\"record\", \"name\":\"foo\"\n}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":\"boolean\"},"
     "{\"name\":\"f2\",\"type\":\"int\"}]}",
     1, -4860222112080293046LL},
    {"{\"type\":\"enum\", \"name\":\"foo\", \"symbols\":[\"A1\"]}",
     "{\"name\":\"foo\",\"type\":\"enum\",\"symbols\":[\"A1\"]}", 1, -6342190197741309591LL},
    {"{\"namespace\":\"x.y.z\", \"type\":\"enum\", \"name\":\"foo\", \"doc\":\"foo bar\", "
     "\"symbols\":[\"A1\", \"A2\"]}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"enum\",\"symbols\":[\"A1\",\"A2\"]}", 1,
     -4448647247586288245LL},
    {"{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}",
     "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}", 1, 1756455273707447556LL},
    {"{\"namespace\":\"x.y.z\", \"type\":\"fixed\", \"name\":\"foo\", \"doc\":\"foo bar\", "
     "\"size\":32}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"fixed\",\"size\":32}", 1, -3064184465700546786LL},
    {"{ \"items\":{\"type\":\"null\"}, \"type\":\"array\"}",
     "{\"type\":\"array\",\"items\":\"null\"}", 1, -589620603366471059LL},
    {"{ \"values\":\"string\", \"type\":\"map\"}", "{\"type\":\"map\",\"values\":\"string\"}", 1,
     -8732877298790414990LL},
    {"  {\"name\":\"PigValue\",\"type\":\"record\",\n   \"fields\":[{\"name\":\"value\", "
     "\"type\":[\"null\", \"int\", \"long\", \"PigValue\"]}]}",
     "{\"name\":\"PigValue\",\"type\":\"record\",\"fields\":[{\"name\":\"value\",\"type\":"
     "[\"null\",\"int\",\"long\",\"PigValue\"]}]}",
     1, -1759257747318642341LL},
    /* Namespaces inherited, references by full name, later occurrences of
     * a named type written as its name (as Java's SchemaNormalization). */
    {"{\"type\":\"record\",\"name\":\"a\",\"namespace\":\"x\",\"doc\":\"d\",\"fields\":["
     "{\"name\":\"f\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"],"
     "\"default\":\"A\"}},{\"name\":\"g\",\"type\":\"E\"},{\"name\":\"h\",\"type\":{\"type\":"
     "\"fixed\",\"name\":\"y.F\",\"size\":2}},{\"name\":\"i\",\"type\":{\"type\":\"record\","
     "\"name\":\"R\",\"fields\":[{\"name\":\"j\",\"type\":\"y.F\",\"doc\":\"x\"}]}},{\"name\":"
     "\"k\",\"type\":{\"type\":\"y.F\"}}]}",
     "{\"name\":\"x.a\",\"type\":\"record\",\"fields\":[{\"name\":\"f\",\"type\":{\"name\":"
     "\"x.E\",\"type\":\"enum\",\"symbols\":[\"A\",\"B\"]}},{\"name\":\"g\",\"type\":\"x.E\"},"
     "{\"name\":\"h\",\"type\":{\"name\":\"y.F\",\"type\":\"fixed\",\"size\":2}},{\"name\":"
     "\"i\",\"type\":{\"name\":\"x.R\",\"type\":\"record\",\"fields\":[{\"name\":\"j\","
     "\"type\":\"y.F\"}]}},{\"name\":\"k\",\"type\":\"y.F\"}]}",
     0, 0},
    /* Escapes become characters; logical types are stripped. */
    {"{\"type\":\"record\",\"name\":\"\\u0066oo\",\"fields\":[{\"name\":\"b\",\"type\":{"
     "\"type\":\"array\",\"items\":{\"type\":\"map\",\"values\":[\"null\",{\"type\":\"long\","
     "\"logicalType\":\"timestamp-millis\"}]}}}]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"b\",\"type\":{\"type\":"
     "\"array\",\"items\":{\"type\":\"map\",\"values\":[\"null\",\"long\"]}}}]}",
     0, 0},
    /* An empty namespace is the null namespace, for what is nested too. */
    {"{\"type\":\"record\",\"name\":\"r\",\"namespace\":\"n1\",\"fields\":[{\"name\":\"x\","
     "\"type\":{\"type\":\"record\",\"name\":\"s\",\"namespace\":\"\",\"fields\":[{\"name\":"
     "\"y\",\"type\":{\"type\":\"enum\",\"name\":\"e\",\"symbols\":[\"Z\"]}}]}}]}",
     "{\"name\":\"n1.r\",\"type\":\"record\",\"fields\":[{\"name\":\"x\",\"type\":{\"name\":"
     "\"s\",\"type\":\"record\",\"fields\":[{\"name\":\"y\",\"type\":{\"name\":\"e\",\"type\":"
     "\"enum\",\"symbols\":[\"Z\"]}}]}}]}",
     0, 0},
    /* Non-ASCII stays UTF-8 (the specification's [STRINGS]). */
    {"{\"type\":\"enum\",\"name\":\"e\",\"symbols\":[\"\\u00e9\"]}",
     "{\"name\":\"e\",\"type\":\"enum\",\"symbols\":[\"\xc3\xa9\"]}", 0, 0},
};

static void test_canonical_vectors(void)
{
    for (size_t i = 0; i < sizeof canon_cases / sizeof canon_cases[0]; i++) {
        const canon_case *k = &canon_cases[i];
        oe_buf out;
        oe_buf_init(&out, 0);
        char err[200] = "";
        int rc = oe_avro_canonical_form(k->schema, strlen(k->schema), &out, err, sizeof err);
        if (rc != 0)
            fprintf(stderr, "case %zu: %s\n", i, err);
        ASSERT_EQ(rc, 0);
        ASSERT_STREQ(out.data, k->canonical);
        if (k->has_fp && out.data)
            ASSERT_EQ(oe_avro_crc64(out.data, out.len), (uint64_t)k->fp);
        oe_buf_free(&out);
    }
}

static void test_crc64(void)
{
    ASSERT_EQ(oe_avro_crc64("\"null\"", 6), 0x63dd24e7cc258f8aULL);
    ASSERT_EQ(oe_avro_crc64("", 0), 0xc15d213aa4d7a795ULL);
}

static void test_canonical_errors(void)
{
    static const char *const bad[] = {
        "",
        "not json",
        "5",
        "null",
        "{}",
        "{\"type\":5}",
        "{\"type\":\"record\",\"fields\":[]}",
        "{\"type\":\"record\",\"name\":\"r\"}",
        "{\"type\":\"record\",\"name\":\"r\",\"fields\":[{\"name\":\"a\"}]}",
        "{\"type\":\"enum\",\"name\":\"e\",\"symbols\":[1]}",
        "{\"type\":\"fixed\",\"name\":\"f\",\"size\":-1}",
        "{\"type\":\"fixed\",\"name\":\"f\",\"size\":\"2\"}",
        "{\"type\":\"array\"}",
        "[\"int\", 3]",
        "{\"type\":\"record\",\"name\":\"r\",\"namespace\":5,\"fields\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        oe_buf out;
        oe_buf_init(&out, 0);
        oe_buf_puts(&out, "keep");
        char err[200] = "";
        ASSERT_EQ(oe_avro_canonical_form(bad[i], strlen(bad[i]), &out, err, sizeof err), OE_EINVAL);
        ASSERT_TRUE(err[0] != '\0');
        ASSERT_STREQ(out.data, "keep");
        oe_buf_free(&out);
    }
}

static oe_codec *new_codec(long confluent)
{
    oe_codec *c = NULL;
    char err[200] = "";
    if (oe_codec_new(confluent, &c, err, sizeof err) != 0)
        fprintf(stderr, "oe_codec_new: %s\n", err);
    return c;
}

static void test_schema_fingerprints(void)
{
    oe_codec *c = new_codec(-1);
    ASSERT_TRUE(c != NULL);
    if (!c)
        return;
    ASSERT_STREQ(oe_codec_request_canonical(c), request_canonical);
    ASSERT_STREQ(oe_codec_receipt_canonical(c), receipt_canonical);
    ASSERT_EQ(oe_codec_request_fingerprint(c), REQUEST_FP);
    ASSERT_EQ(oe_codec_receipt_fingerprint(c), RECEIPT_FP);
    oe_codec_free(c);
}

/* ---- building messages by hand ---- */

typedef struct msg {
    unsigned char b[8192];
    size_t n;
} msg;

typedef struct str {
    const char *s;
    size_t n;
} str;
#define S(lit) ((str){lit, sizeof(lit) - 1})

static void m_raw(msg *m, const void *p, size_t n)
{
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void m_byte(msg *m, unsigned b)
{
    m->b[m->n++] = (unsigned char)b;
}

static void m_varint(msg *m, uint64_t v)
{
    while (v >= 0x80) {
        m_byte(m, (unsigned)(v & 0x7f) | 0x80);
        v >>= 7;
    }
    m_byte(m, (unsigned)v);
}

static void m_long(msg *m, int64_t v)
{
    m_varint(m, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static void m_str(msg *m, str s)
{
    m_long(m, (int64_t)s.n);
    m_raw(m, s.s, s.n);
}

static void m_header(msg *m, uint64_t fp)
{
    m->n = 0;
    m_byte(m, 0xC3);
    m_byte(m, 0x01);
    for (int i = 0; i < 8; i++)
        m_byte(m, (unsigned)(fp >> (8 * i)) & 0xff);
}

/* art: 0 none, 1 artifact with expires_at, 2 without. */
static void m_request(msg *m, str action, str payload, str nonce, int art, str sig)
{
    m_str(m, action);
    m_str(m, payload);
    m_str(m, nonce);
    if (!art) {
        m_long(m, 0);
        return;
    }
    m_long(m, 1);
    m_str(m, S("ap-1"));
    m_str(m, S("hash-1"));
    m_str(m, sig);
    m_str(m, S("clawshield"));
    m_str(m, S("2026-01-01T00:00:00Z"));
    m_str(m, S("tenant-1"));
    if (art == 1) {
        m_long(m, 1);
        m_str(m, S("2026-01-02T00:00:00Z"));
    } else {
        m_long(m, 0);
    }
}

/* ---- requests ---- */

typedef struct {
    const char *name;
    str action, payload, nonce;
    int art;
    str sig;
    oe_decode_verdict result;
    oe_error_code code;
    const char *want_action; /* in req after decoding (NULL: unreadable) */
    const char *want_nonce;
    const char *words; /* the detail must contain these */
} avro_case;

static const avro_case avro_cases[] = {
    {"plain", S("echo"), S("{\"msg\":\"hi\"}"), S("n-1"), 0, S(""), OE_DECODE_VALID, OE_ERR_NONE,
     "echo", "n-1", NULL},
    {"artifact", S("echo"), S("{}"), S("n-2"), 1, S("sig"), OE_DECODE_VALID, OE_ERR_NONE, "echo",
     "n-2", NULL},
    {"artifact no expiry", S("add"), S("{\"a\":1}"), S("n-3"), 2, S("sig"), OE_DECODE_VALID,
     OE_ERR_NONE, "add", "n-3", NULL},
    {"empty payload is {}", S("echo"), S(""), S("n-4"), 0, S(""), OE_DECODE_VALID, OE_ERR_NONE,
     "echo", "n-4", NULL},
    {"null payload is {}", S("echo"), S("null"), S("n-4b"), 0, S(""), OE_DECODE_VALID, OE_ERR_NONE,
     "echo", "n-4b", NULL},
    {"payload not JSON", S("echo"), S("{nope"), S("n-5"), 0, S(""), OE_DECODE_REJECTED,
     OE_ERR_MALFORMED, "echo", "n-5", "payload"},
    {"payload not an object", S("echo"), S("[1,2]"), S("n-6"), 0, S(""), OE_DECODE_REJECTED,
     OE_ERR_MALFORMED, "echo", "n-6", "payload: must be an object"},
    {"payload duplicate key", S("echo"), S("{\"a\":1,\"a\":2}"), S("n-7"), 0, S(""),
     OE_DECODE_REJECTED, OE_ERR_MALFORMED, "echo", "n-7", "payload"},
    {"empty action", S(""), S("{}"), S("n-8"), 0, S(""), OE_DECODE_REJECTED, OE_ERR_INVALID_REQUEST,
     "", "n-8", "action"},
    {"empty nonce", S("echo"), S("{}"), S(""), 0, S(""), OE_DECODE_REJECTED, OE_ERR_INVALID_REQUEST,
     "echo", "", "nonce"},
    {"nonce with NUL", S("echo"), S("{}"), S("a\0b"), 0, S(""), OE_DECODE_REJECTED,
     OE_ERR_MALFORMED, "echo", NULL, "nonce: contains a NUL"},
    {"action with NUL", S("ec\0ho"), S("{}"), S("n-9"), 0, S(""), OE_DECODE_REJECTED,
     OE_ERR_MALFORMED, NULL, "n-9", "action: contains a NUL"},
    {"action not UTF-8", S("ec\xffho"), S("{}"), S("n-10"), 0, S(""), OE_DECODE_REJECTED,
     OE_ERR_MALFORMED, NULL, "n-10", "action: is not valid UTF-8"},
    {"payload with NUL", S("echo"), S("{}\0"), S("n-11"), 0, S(""), OE_DECODE_REJECTED,
     OE_ERR_MALFORMED, "echo", "n-11", "payload"},
    {"signature with NUL", S("echo"), S("{}"), S("n-12"), 1, S("s\0g"), OE_DECODE_REJECTED,
     OE_ERR_MALFORMED, "echo", "n-12", "approval_artifact.signature: contains a NUL"},
    {"unicode", S("\xc3\xa9\xf0\x9f\x98\x80"), S("{\"k\":\"\\u00e9\"}"), S("n\xc3\xa9"), 0, S(""),
     OE_DECODE_VALID, OE_ERR_NONE, "\xc3\xa9\xf0\x9f\x98\x80", "n\xc3\xa9", NULL},
};

/* oe_codec_decode_request's verdict; when it reaches none (an oe_rc: never
 * expected of these messages) the test fails and -1 is returned. */
static int decode(oe_codec *c, const void *buf, size_t len, oe_request *req, oe_error_code *code,
                  char *detail, size_t detlen)
{
    oe_decode_verdict verdict;
    int rc = oe_codec_decode_request(c, buf, len, req, &verdict, code, detail, detlen);
    if (rc != OE_OK) {
        OE_FAIL_("oe_codec_decode_request: %s", oe_strerror(rc));
        return -1;
    }
    return (int)verdict;
}

static void check_decode(oe_codec *c, const unsigned char *buf, size_t len, const avro_case *k)
{
    oe_request req;
    oe_error_code code = OE_ERR_NONE;
    char detail[300] = "";
    int r = decode(c, buf, len, &req, &code, detail, sizeof detail);
    if ((int)r != (int)k->result)
        fprintf(stderr, "case %s: result %d, detail %s\n", k->name, (int)r, detail);
    ASSERT_EQ(r, k->result);
    ASSERT_EQ(code, k->code);
    if (k->words)
        ASSERT_CONTAINS(detail, k->words);
    if (k->want_action)
        ASSERT_STREQ(req.action, k->want_action);
    else
        ASSERT_TRUE(req.action == NULL);
    if (k->want_nonce)
        ASSERT_STREQ(req.nonce, k->want_nonce);
    else
        ASSERT_TRUE(req.nonce == NULL);
    ASSERT_TRUE(req.payload != NULL);
    if (r == OE_DECODE_VALID) {
        ASSERT_EQ(req.has_artifact, k->art != 0);
        if (k->art) {
            ASSERT_STREQ(req.artifact.approval_id, "ap-1");
            ASSERT_STREQ(req.artifact.signature, "sig");
            ASSERT_STREQ(req.artifact.tenant_id, "tenant-1");
            if (k->art == 1)
                ASSERT_STREQ(req.artifact.expires_at, "2026-01-02T00:00:00Z");
            else
                ASSERT_TRUE(req.artifact.expires_at == NULL);
        }
    }
    oe_request_clear(&req);
}

static void test_avro_request_table(void)
{
    oe_codec *c = new_codec(7);
    if (!c) {
        ASSERT_TRUE(0);
        return;
    }
    static msg m;
    /* Twice, so that reused avro-c values switch union branches. */
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof avro_cases / sizeof avro_cases[0]; i++) {
            const avro_case *k = &avro_cases[i];
            m_header(&m, REQUEST_FP);
            m_request(&m, k->action, k->payload, k->nonce, k->art, k->sig);
            check_decode(c, m.b, m.n, k);
            /* The same body in Confluent framing with the configured id. */
            msg cf;
            cf.n = 0;
            m_byte(&cf, 0);
            m_raw(&cf, "\0\0\0\x07", 4);
            m_raw(&cf, m.b + 10, m.n - 10);
            check_decode(c, cf.b, cf.n, k);
        }
    }
    oe_codec_free(c);
}

/* Decodes and expects DEAD with a detail containing words. */
static void expect_dead(oe_codec *c, const void *buf, size_t len, const char *words)
{
    oe_request req;
    oe_error_code code = OE_ERR_NONE;
    char detail[300] = "";
    int r = decode(c, buf, len, &req, &code, detail, sizeof detail);
    if (r != OE_DECODE_DEAD)
        fprintf(stderr, "expected DEAD for [%s], got %d (%s)\n", words, (int)r, detail);
    ASSERT_EQ(r, OE_DECODE_DEAD);
    if (words)
        ASSERT_CONTAINS(detail, words);
    ASSERT_TRUE(req.action == NULL && req.nonce == NULL && req.doc == NULL);
    oe_request_clear(&req);
}

static void test_hostile_avro(void)
{
    oe_codec *c = new_codec(-1);
    if (!c) {
        ASSERT_TRUE(0);
        return;
    }
    static msg m;

    /* Huge declared string lengths: 2^62, 2^31, one past the end. */
    const uint64_t huge[] = {(uint64_t)1 << 62, (uint64_t)1 << 31, 5, INT64_MAX};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        m_header(&m, REQUEST_FP);
        m_long(&m, (int64_t)huge[i]);
        m_raw(&m, "echo", 4);
        expect_dead(c, m.b, m.n, "exceeds");
    }
    /* A huge length in a later field and in the artifact. */
    m_header(&m, REQUEST_FP);
    m_str(&m, S("echo"));
    m_str(&m, S("{}"));
    m_long(&m, (int64_t)1 << 62);
    expect_dead(c, m.b, m.n, "field nonce");
    m_header(&m, REQUEST_FP);
    m_str(&m, S("echo"));
    m_str(&m, S("{}"));
    m_str(&m, S("n"));
    m_long(&m, 1);
    m_str(&m, S("ap"));
    m_long(&m, (int64_t)1 << 40);
    expect_dead(c, m.b, m.n, "field action_hash");
    /* Negative length. */
    m_header(&m, REQUEST_FP);
    m_long(&m, -3);
    m_raw(&m, "echo", 4);
    expect_dead(c, m.b, m.n, "negative");
    /* Bad union indexes. */
    const int64_t idx[] = {2, -1, 3, 1000000};
    for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
        m_header(&m, REQUEST_FP);
        m_str(&m, S("echo"));
        m_str(&m, S("{}"));
        m_str(&m, S("n"));
        m_long(&m, idx[i]);
        expect_dead(c, m.b, m.n, "union index");
    }
    /* expires_at union index 2. */
    m_header(&m, REQUEST_FP);
    m_request(&m, S("echo"), S("{}"), S("n"), 2, S("sig"));
    m.b[m.n - 1] = 4; /* zigzag 2 */
    expect_dead(c, m.b, m.n, "expires_at");
    /* Trailing bytes. */
    for (size_t extra = 1; extra <= 3; extra++) {
        m_header(&m, REQUEST_FP);
        m_request(&m, S("echo"), S("{}"), S("n"), 0, S(""));
        for (size_t i = 0; i < extra; i++)
            m_byte(&m, 0);
        expect_dead(c, m.b, m.n, "trailing");
    }
    /* Varints: 11 bytes, 10 bytes overflowing, 10 bytes unterminated. */
    m_header(&m, REQUEST_FP);
    for (int i = 0; i < 10; i++)
        m_byte(&m, 0x80);
    m_byte(&m, 0);
    expect_dead(c, m.b, m.n, "longer than 10 bytes");
    m_header(&m, REQUEST_FP);
    for (int i = 0; i < 9; i++)
        m_byte(&m, 0xff);
    m_byte(&m, 0x02);
    expect_dead(c, m.b, m.n, "overflows");
    m_header(&m, REQUEST_FP);
    for (int i = 0; i < 20; i++)
        m_byte(&m, 0x81);
    expect_dead(c, m.b, m.n, "varint");
    m_header(&m, REQUEST_FP);
    m_byte(&m, 0x80);
    expect_dead(c, m.b, m.n, "ends inside a varint");
    /* A non-minimal but valid varint (0x84 0x00 = 4 = length 2) is fine. */
    m_header(&m, REQUEST_FP);
    m_byte(&m, 0x88);
    m_byte(&m, 0x00);
    m_raw(&m, "echo", 4);
    m_str(&m, S("{}"));
    m_str(&m, S("n"));
    m_long(&m, 0);
    {
        oe_request req;
        oe_error_code code;
        char detail[200];
        ASSERT_EQ(decode(c, m.b, m.n, &req, &code, detail, sizeof detail), OE_DECODE_VALID);
        ASSERT_STREQ(req.action, "echo");
        oe_request_clear(&req);
    }
    /* Headers. */
    m_header(&m, REQUEST_FP ^ 1);
    m_request(&m, S("echo"), S("{}"), S("n"), 0, S(""));
    expect_dead(c, m.b, m.n, "unknown schema fingerprint 0xbb8686793197e1c9");
    m_header(&m, RECEIPT_FP);
    expect_dead(c, m.b, m.n, "unknown schema fingerprint");
    expect_dead(c, "\xC3\x02", 2, "C3");
    expect_dead(c, "\xC3", 1, "C3");
    expect_dead(c, "\xC3\x01\xc8\xe1\x97", 5, "truncated");
    expect_dead(c, "", 0, "empty");
    expect_dead(c, "x", 1, "first byte 0x78");
    expect_dead(c, " {\"action\":\"echo\",\"nonce\":\"n\"}", 30, "first byte 0x20");
    expect_dead(c, "\x01\x02", 2, "unrecognised");
    /* Only the header: the body is missing. */
    m_header(&m, REQUEST_FP);
    expect_dead(c, m.b, m.n, "Avro body");
    oe_codec_free(c);
}

static void test_confluent(void)
{
    static msg body, m;
    m_header(&body, REQUEST_FP);
    m_request(&body, S("echo"), S("{\"x\":1}"), S("conf-1"), 0, S(""));
    /* schema id 258 = 00 00 01 02 */
    m.n = 0;
    m_raw(&m, "\0\0\0\x01\x02", 5);
    m_raw(&m, body.b + 10, body.n - 10);

    oe_codec *on = new_codec(258), *other = new_codec(259), *off = new_codec(-1);
    if (!on || !other || !off) {
        ASSERT_TRUE(0);
    } else {
        oe_request req;
        oe_error_code code;
        char detail[300] = "";
        ASSERT_EQ(decode(on, m.b, m.n, &req, &code, detail, sizeof detail), OE_DECODE_VALID);
        ASSERT_STREQ(req.nonce, "conf-1");
        oe_request_clear(&req);
        expect_dead(other, m.b, m.n, "unknown schema id 258");
        expect_dead(off, m.b, m.n, "not configured");
        expect_dead(on, m.b, 4, "truncated Confluent");
        /* Single-object encoding still works when Confluent is configured. */
        ASSERT_EQ(decode(on, body.b, body.n, &req, &code, detail, sizeof detail), OE_DECODE_VALID);
        oe_request_clear(&req);
        /* Trailing bytes after a Confluent body. */
        m_byte(&m, 0);
        expect_dead(on, m.b, m.n, "trailing");
    }
    oe_codec_free(on);
    oe_codec_free(other);
    oe_codec_free(off);
}

typedef struct {
    const char *body;
    oe_decode_verdict result;
    oe_error_code code;
    const char *action, *nonce; /* expected in req (NULL = NULL) */
    const char *words;
} json_case;

static const json_case json_cases[] = {
    {"{\"action\":\"echo\",\"nonce\":\"j-1\",\"payload\":{\"m\":1}}", OE_DECODE_VALID, OE_ERR_NONE,
     "echo", "j-1", NULL},
    {"{\"nonce\":\"keep-me\"}", OE_DECODE_REJECTED, OE_ERR_MALFORMED, NULL, "keep-me", "action"},
    {"{\"action\":7,\"nonce\":\"keep-2\"}", OE_DECODE_REJECTED, OE_ERR_MALFORMED, NULL, "keep-2",
     "action: must be a string"},
    {"{\"action\":\"echo\"}", OE_DECODE_REJECTED, OE_ERR_MALFORMED, "echo", NULL, "nonce"},
    {"{\"action\":\"echo\",\"nonce\":\"j-3\",\"payload\":[1]}", OE_DECODE_REJECTED,
     OE_ERR_MALFORMED, "echo", "j-3", "payload"},
    {"{\"action\":\"\",\"nonce\":\"j-4\"}", OE_DECODE_REJECTED, OE_ERR_INVALID_REQUEST, "", "j-4",
     "action"},
    {"{\"action\":\"echo\",\"nonce\":\"j-5\",\"approval_artifact\":{\"approval_id\":\"a\"}}",
     OE_DECODE_REJECTED, OE_ERR_MALFORMED, "echo", "j-5", "approval_artifact.action_hash"},
    {"{\"action\":{},\"nonce\":\"n\\u0000\"}", OE_DECODE_REJECTED, OE_ERR_MALFORMED, NULL, NULL,
     "action"},
    /* Our JSON format, but not strict JSON: a malformed receipt, not a
     * dead letter (the nonce cannot be trusted, so none is read). */
    {"{\"action\":\"echo\",\"nonce\":\"j-6\",\"nonce\":\"j-7\"}", OE_DECODE_REJECTED,
     OE_ERR_MALFORMED, NULL, NULL, "duplicate key"},
    {"{\"action\":\"echo\"", OE_DECODE_REJECTED, OE_ERR_MALFORMED, NULL, NULL, "invalid JSON"},
    {"{", OE_DECODE_REJECTED, OE_ERR_MALFORMED, NULL, NULL, "invalid JSON"},
    {"{} {}", OE_DECODE_REJECTED, OE_ERR_MALFORMED, NULL, NULL, "invalid JSON"},
    {"{\"a\":\"\xff\"}", OE_DECODE_REJECTED, OE_ERR_MALFORMED, NULL, NULL, "invalid JSON"},
    {"{\"a\":NaN}", OE_DECODE_REJECTED, OE_ERR_MALFORMED, NULL, NULL, "invalid JSON"},
};

static void test_json_requests(void)
{
    oe_codec *c = new_codec(-1);
    if (!c) {
        ASSERT_TRUE(0);
        return;
    }
    for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
        const json_case *k = &json_cases[i];
        oe_request req;
        oe_error_code code = OE_ERR_NONE;
        char detail[300] = "";
        int r = decode(c, k->body, strlen(k->body), &req, &code, detail, sizeof detail);
        if ((int)r != (int)k->result)
            fprintf(stderr, "json case %zu: result %d (%s)\n", i, (int)r, detail);
        ASSERT_EQ(r, k->result);
        ASSERT_EQ(code, k->code);
        if (k->words)
            ASSERT_CONTAINS(detail, k->words);
        if (k->action)
            ASSERT_STREQ(req.action, k->action);
        else
            ASSERT_TRUE(req.action == NULL);
        if (k->nonce)
            ASSERT_STREQ(req.nonce, k->nonce);
        else
            ASSERT_TRUE(req.nonce == NULL);
        if (r != OE_DECODE_DEAD)
            ASSERT_TRUE(req.payload != NULL);
        oe_request_clear(&req);
    }
    /* Larger than OE_REQUEST_MAX_BYTES. */
    size_t big = OE_REQUEST_MAX_BYTES + 1;
    char *buf = malloc(big);
    if (buf) {
        memset(buf, ' ', big);
        buf[0] = '{';
        buf[big - 1] = '}';
        expect_dead(c, buf, big, "exceeds the limit");
        /* Exactly at the limit it is decoded (and rejected: no fields). */
        oe_request req;
        oe_error_code code;
        char detail[300];
        buf[big - 2] = '}';
        ASSERT_EQ(decode(c, buf, big - 1, &req, &code, detail, sizeof detail), OE_DECODE_REJECTED);
        oe_request_clear(&req);
        free(buf);
    }
    oe_codec_free(c);
}

/* ---- round trips through the encoder ---- */

static const char *const roundtrip_json[] = {
    "{\"action\":\"echo\",\"nonce\":\"rt-1\"}",
    "{\"action\":\"echo\",\"nonce\":\"rt-2\",\"payload\":{\"msg\":\"hi\",\"n\":[1,2.5,-0.0,1e300,"
    "123456789012345678901234567890],\"u\":\"\\u00e9\\ud83d\\ude00\\u0000\\\"\",\"z\":null,"
    "\"t\":true,\"o\":{\"b\":{},\"a\":[]}}}",
    "{\"action\":\"add\",\"nonce\":\"rt-3\",\"payload\":{\"a\":1,\"b\":2},\"approval_artifact\":{"
    "\"approval_id\":\"ap-9\",\"action_hash\":\"abc\",\"signature\":\"s\",\"issued_by\":"
    "\"clawshield\",\"issued_at\":\"2026-01-01T00:00:00Z\",\"tenant_id\":\"t\","
    "\"expires_at\":\"2026-01-01T01:00:00Z\"}}",
    "{\"action\":\"add\",\"nonce\":\"rt-4\",\"approval_artifact\":{\"approval_id\":\"ap-10\","
    "\"action_hash\":\"abc\",\"signature\":\"s\",\"issued_by\":\"c\",\"issued_at\":\"x\","
    "\"tenant_id\":\"\"}}",
    "{\"action\":\"\\u00e9\\u4e2d\",\"nonce\":\"rt-5 \\ud83d\\ude00\",\"payload\":{}}",
};

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void test_request_roundtrip(void)
{
    oe_codec *c = new_codec(-1);
    if (!c) {
        ASSERT_TRUE(0);
        return;
    }
    oe_buf enc, p1, p2;
    oe_buf_init(&enc, 0);
    oe_buf_init(&p1, 0);
    oe_buf_init(&p2, 0);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof roundtrip_json / sizeof roundtrip_json[0]; i++) {
            oe_request a, b;
            char err[300] = "";
            ASSERT_EQ(test_request_from_json(roundtrip_json[i], strlen(roundtrip_json[i]), &a, err,
                                             sizeof err),
                      OE_ERR_NONE);
            oe_buf_reset(&enc);
            ASSERT_EQ(oe_codec_encode_request(c, &a, &enc, err, sizeof err), 0);
            ASSERT_TRUE(enc.len > 10);
            ASSERT_TRUE((unsigned char)enc.data[0] == 0xC3 && enc.data[1] == 0x01);
            uint64_t fp = 0;
            for (int k = 7; k >= 0; k--)
                fp = (fp << 8) | (unsigned char)enc.data[2 + k];
            ASSERT_EQ(fp, REQUEST_FP);
            oe_error_code code;
            ASSERT_EQ(decode(c, enc.data, enc.len, &b, &code, err, sizeof err), OE_DECODE_VALID);
            ASSERT_STREQ(b.action, a.action);
            ASSERT_STREQ(b.nonce, a.nonce);
            oe_buf_reset(&p1);
            oe_buf_reset(&p2);
            oe_json_dump(&p1, a.payload, OE_JSON_COMPACT);
            oe_json_dump(&p2, b.payload, OE_JSON_COMPACT);
            ASSERT_STREQ(p2.data ? p2.data : "", p1.data ? p1.data : "");
            char h1[65], h2[65];
            ASSERT_EQ(oe_request_hash(a.action, strlen(a.action), a.payload, h1), 0);
            ASSERT_EQ(oe_request_hash(b.action, strlen(b.action), b.payload, h2), 0);
            ASSERT_STREQ(h2, h1);
            ASSERT_EQ(b.has_artifact, a.has_artifact);
            if (a.has_artifact && b.has_artifact) {
                ASSERT_STREQ(b.artifact.approval_id, a.artifact.approval_id);
                ASSERT_STREQ(b.artifact.action_hash, a.artifact.action_hash);
                ASSERT_STREQ(b.artifact.signature, a.artifact.signature);
                ASSERT_STREQ(b.artifact.issued_by, a.artifact.issued_by);
                ASSERT_STREQ(b.artifact.issued_at, a.artifact.issued_at);
                ASSERT_STREQ(b.artifact.tenant_id, a.artifact.tenant_id);
                ASSERT_TRUE(same_str(b.artifact.expires_at, a.artifact.expires_at));
            }
            oe_request_clear(&a);
            oe_request_clear(&b);
        }
    }
    oe_buf_free(&enc);
    oe_buf_free(&p1);
    oe_buf_free(&p2);
    oe_codec_free(c);
}

/* Every truncation and single-byte corruption of valid messages: DEAD for
 * truncations; anything for corruptions, but a consistent req, no crash
 * and no leak (the sanitizer and valgrind runs check the last two). */
static void test_truncations_and_corruptions(void)
{
    oe_codec *c = new_codec(5);
    if (!c) {
        ASSERT_TRUE(0);
        return;
    }
    static msg msgs[4];
    m_header(&msgs[0], REQUEST_FP);
    m_request(&msgs[0], S("echo"), S("{\"msg\":\"hello\",\"n\":[1,2]}"), S("nonce-abc"), 0, S(""));
    m_header(&msgs[1], REQUEST_FP);
    m_request(&msgs[1], S("add"), S("{\"a\":1}"), S("nonce-def"), 1, S("signature-xyz"));
    m_header(&msgs[2], REQUEST_FP);
    m_request(&msgs[2], S("add"), S("{}"), S("nonce-ghi"), 2, S("s"));
    msgs[3].n = 0;
    m_raw(&msgs[3], "\0\0\0\0\x05", 5);
    m_raw(&msgs[3], msgs[1].b + 10, msgs[1].n - 10);
    static const unsigned char vals[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff};
    size_t counts[3] = {0, 0, 0};
    for (size_t k = 0; k < 4; k++) {
        const msg *m = &msgs[k];
        for (size_t cut = 0; cut < m->n; cut++)
            expect_dead(c, m->b, cut, NULL);
        static unsigned char buf[8192];
        for (size_t pos = 0; pos < m->n; pos++) {
            for (size_t v = 0; v < sizeof vals + 1; v++) {
                memcpy(buf, m->b, m->n);
                buf[pos] = v < sizeof vals ? vals[v] : (unsigned char)(m->b[pos] ^ 0x01);
                if (buf[pos] == m->b[pos])
                    continue;
                oe_request req;
                oe_error_code code;
                char detail[300] = "";
                int r = decode(c, buf, m->n, &req, &code, detail, sizeof detail);
                ASSERT_TRUE(r == OE_DECODE_VALID || r == OE_DECODE_REJECTED || r == OE_DECODE_DEAD);
                if ((unsigned)r < 3)
                    counts[r]++;
                ASSERT_TRUE(detail[0] != '\0' || r == OE_DECODE_VALID);
                if (r == OE_DECODE_VALID)
                    ASSERT_TRUE(req.action && req.nonce && req.payload && req.action[0]);
                if (r == OE_DECODE_REJECTED)
                    ASSERT_TRUE(req.payload != NULL && code != OE_ERR_NONE);
                oe_request_clear(&req);
            }
        }
    }
    /* Corruptions hit every kind of outcome. */
    ASSERT_TRUE(counts[OE_DECODE_VALID] > 0);
    ASSERT_TRUE(counts[OE_DECODE_REJECTED] > 0);
    ASSERT_TRUE(counts[OE_DECODE_DEAD] > 0);
    oe_codec_free(c);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random bodies behind a valid header, biased towards small varints. */
static void test_random_bodies(void)
{
    oe_codec *c = new_codec(-1);
    if (!c) {
        ASSERT_TRUE(0);
        return;
    }
    static msg m;
    for (int iter = 0; iter < 20000; iter++) {
        m_header(&m, REQUEST_FP);
        size_t n = rng() % 64;
        for (size_t i = 0; i < n; i++) {
            uint64_t x = rng();
            m_byte(&m, (x & 3) ? (unsigned)(x >> 8) % 16 : (unsigned)(x >> 8) & 0xff);
        }
        oe_request req;
        oe_error_code code;
        char detail[300];
        detail[0] = '\0';
        code = OE_ERR_NONE;
        int r = decode(c, m.b, m.n, &req, &code, detail, sizeof detail);
        /* The decoder's promises, whatever the bytes: */
        switch (r) {
        case OE_DECODE_VALID:
            /* a valid request, with text fields and an object payload; */
            ASSERT_EQ(code, OE_ERR_NONE);
            ASSERT_TRUE(req.action && req.action[0] && req.nonce && req.nonce[0]);
            ASSERT_TRUE(strlen(req.nonce) <= OE_NONCE_MAX_BYTES);
            ASSERT_TRUE(oe_utf8_valid(req.action, strlen(req.action)));
            ASSERT_TRUE(req.payload && req.payload->type == OE_JSON_OBJECT);
            break;
        case OE_DECODE_REJECTED:
            /* a verdict with its reason, and only text to repeat; */
            ASSERT_TRUE(code != OE_ERR_NONE && detail[0]);
            ASSERT_TRUE(!req.action || oe_utf8_valid(req.action, strlen(req.action)));
            ASSERT_TRUE(!req.nonce || oe_utf8_valid(req.nonce, strlen(req.nonce)));
            break;
        case OE_DECODE_DEAD:
            /* a dead letter keeps nothing and says why; */
            ASSERT_TRUE(detail[0]);
            ASSERT_TRUE(!req.action && !req.nonce && !req.doc);
            break;
        default:
            /* and 64 bytes never run out of memory. */
            ASSERT_TRUE(0);
        }
        oe_request_clear(&req);
    }
    oe_codec_free(c);
}

/* Decodes buf with the address space capped just above what is in use,
 * expecting no verdict (OE_ENOMEM, *verdict left alone), then again with
 * memory back, expecting a valid request (kept in req). */
static void decode_short_of_memory(oe_codec *c, const void *buf, size_t len, oe_request *req)
{
    struct rlimit old;
    ASSERT_EQ(test_cap_address_space(&old), 0);
    oe_decode_verdict verdict = (oe_decode_verdict)42;
    oe_error_code code = OE_ERR_NONE;
    char detail[300] = "";
    int rc = oe_codec_decode_request(c, buf, len, req, &verdict, &code, detail, sizeof detail);
    setrlimit(RLIMIT_AS, &old);
    ASSERT_EQ(rc, OE_ENOMEM);
    ASSERT_EQ(verdict, 42);
    oe_request_clear(req);
    ASSERT_EQ(oe_codec_decode_request(c, buf, len, req, &verdict, &code, detail, sizeof detail),
              OE_OK);
    ASSERT_EQ(verdict, OE_DECODE_VALID);
    ASSERT_STREQ(req->nonce, "n");
}

/* Running out of memory is no verdict: a large request (JSON, then the same
 * in Avro) cannot be decoded with the address space capped, and the
 * decoder says so instead of giving a verdict; with memory back, the same
 * bytes decode. (Skipped under AddressSanitizer, which reserves terabytes
 * of address space up front.) The JSON message is decoded first, before
 * this test frees a large block that the capped decoding could reuse. */
static void test_out_of_memory_is_no_verdict(void)
{
    if (!test_memory_can_run_out())
        return;
    oe_codec *c = new_codec(-1);
    size_t len = 900000;
    char *body = malloc(len + 64);
    oe_buf avro;
    oe_buf_init(&avro, 0);
    if (!c || !body) {
        ASSERT_TRUE(0);
        goto out;
    }
    size_t n = (size_t)sprintf(body, "{\"action\":\"echo\",\"nonce\":\"n\",\"payload\":{\"s\":\"");
    memset(body + n, 'a', len - n - 3);
    memcpy(body + len - 3, "\"}}", 4);
    oe_request r;
    char err[300] = "";
    decode_short_of_memory(c, body, len, &r);
    ASSERT_EQ(oe_codec_encode_request(c, &r, &avro, err, sizeof err), OE_OK);
    oe_request_clear(&r);
    decode_short_of_memory(c, avro.data, avro.len, &r);
    oe_request_clear(&r);
out:
    oe_buf_free(&avro);
    free(body);
    oe_codec_free(c);
}

/* ---- receipts ---- */

static const oe_receipt_fields receipt_cases[] = {
    {"1b4e28ba-2fa1-8a2b-883f-0016d3cca427", "n-1", "echo", "0123abcd", OE_STATUS_EXECUTED, 1,
     "{\"echo\": {\"msg\": \"h\\u00e9 \\\"q\\\"\"}}", "feedbeef", OE_ERR_NONE, NULL, "ap-1",
     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
     "{\"checkpoint\":\"o\\n1\\n\",\"inclusion\":[],\"leaf\":\"{}\",\"log_index\":0,"
     "\"log_origin\":\"o\"}",
     0},
    {"1b4e28ba-2fa1-8a2b-883f-0016d3cca427", "n-1", "echo", "0123abcd", OE_STATUS_REPLAYED, 0, "{}",
     "feedbeef", OE_ERR_NONE, NULL, NULL, NULL, NULL, 0},
    {NULL, "n-2", "add", "", OE_STATUS_REJECTED, 0, NULL, NULL, OE_ERR_NONCE_CONFLICT,
     "Nonce conflict: n-2 \xc3\xa9", NULL, NULL, NULL, 0},
    {NULL, "", "", "", OE_STATUS_REJECTED, 0, NULL, NULL, OE_ERR_MALFORMED, "", NULL, NULL, NULL,
     0},
};

static const char *const receipt_json[] = {
    "{\"id\": \"1b4e28ba-2fa1-8a2b-883f-0016d3cca427\", \"nonce\": \"n-1\", \"action\": \"echo\", "
    "\"request_hash\": \"0123abcd\", \"status\": \"executed\", \"approved\": true, \"result\": "
    "\"{\\\"echo\\\": {\\\"msg\\\": \\\"h\\\\u00e9 \\\\\\\"q\\\\\\\"\\\"}}\", \"result_json\": "
    "\"{\\\"echo\\\": {\\\"msg\\\": \\\"h\\\\u00e9 \\\\\\\"q\\\\\\\"\\\"}}\", \"receipt\": "
    "\"feedbeef\", \"error_code\": null, \"detail\": null, \"approval_id\": \"ap-1\", "
    "\"action_code_hash\": \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\", "
    "\"proof\": "
    "{\"checkpoint\":\"o\\n1\\n\",\"inclusion\":[],\"leaf\":\"{}\",\"log_index\":0,"
    "\"log_origin\":\"o\"}}",
    "{\"id\": \"1b4e28ba-2fa1-8a2b-883f-0016d3cca427\", \"nonce\": \"n-1\", \"action\": \"echo\", "
    "\"request_hash\": \"0123abcd\", \"status\": \"replayed\", \"approved\": false, \"result\": "
    "\"{}\", \"result_json\": \"{}\", \"receipt\": \"feedbeef\", \"error_code\": null, \"detail\": "
    "null, \"approval_id\": "
    "null, \"action_code_hash\": null}",
    "{\"id\": null, \"nonce\": \"n-2\", \"action\": \"add\", \"request_hash\": \"\", \"status\": "
    "\"rejected\", \"approved\": false, \"result\": null, \"result_json\": null, \"receipt\": "
    "null, \"error_code\": \"nonce_conflict\", \"detail\": \"Nonce conflict: n-2 \\u00e9\", "
    "\"approval_id\": null, \"action_code_hash\": null}",
    "{\"id\": null, \"nonce\": \"\", \"action\": \"\", \"request_hash\": \"\", \"status\": "
    "\"rejected\", \"approved\": false, \"result\": null, \"result_json\": null, \"receipt\": "
    "null, \"error_code\": \"malformed\", \"detail\": \"\", \"approval_id\": null, "
    "\"action_code_hash\": null}",
};

static void check_receipt(const oe_receipt *d, const oe_receipt_fields *f)
{
    ASSERT_TRUE(same_str(d->id, f->id));
    ASSERT_TRUE(same_str(d->nonce, f->nonce));
    ASSERT_TRUE(same_str(d->action, f->action));
    ASSERT_TRUE(same_str(d->request_hash, f->request_hash));
    ASSERT_EQ(d->status, f->status);
    ASSERT_EQ(d->approved, f->approved);
    ASSERT_TRUE(same_str(d->result, f->result));
    ASSERT_TRUE(same_str(d->result_json, f->result));
    ASSERT_TRUE(same_str(d->receipt, f->receipt));
    ASSERT_TRUE(same_str(d->error_code, oe_error_code_name(f->error)));
    ASSERT_TRUE(same_str(d->detail, f->detail));
    ASSERT_TRUE(same_str(d->approval_id, f->approval_id));
    ASSERT_TRUE(same_str(d->action_code_hash, f->action_code_hash));
    ASSERT_TRUE(same_str(d->proof, f->proof));
}

/* A signed receipt's proof travels as a JSON object in JSON receipts and as
 * its JSON text in Avro; either way the decoder keeps it only as one
 * compact, well-formed object (it is pasted into HTTP answers and printed
 * lines), and refuses anything else. */
static void test_receipt_proofs(void)
{
    oe_codec *c = new_codec(-1);
    if (!c) {
        ASSERT_TRUE(0);
        return;
    }
    char err[300];
    oe_buf enc;
    oe_buf_init(&enc, 0);
    oe_receipt_fields f = receipt_cases[0];
    static const struct {
        const char *proof, *kept; /* kept NULL: refused */
    } cases[] = {
        {"{\"log_index\": 3, \"a\": [1, 2]}", "{\"a\":[1,2],\"log_index\":3}"},
        {"{}", "{}"},
        {"[1]", NULL},
        {"\"text\"", NULL},
        {"{\"a\": 1", NULL},
        {"{\"a\": 1} x", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f.proof = cases[i].proof;
        oe_buf_reset(&enc);
        ASSERT_EQ(oe_codec_encode_receipt(c, &f, 0, &enc, err, sizeof err), OE_OK);
        oe_receipt d;
        int rc = oe_codec_decode_receipt(c, enc.data, enc.len, &d, err, sizeof err);
        if (cases[i].kept) {
            ASSERT_EQ(rc, OE_OK);
            ASSERT_STREQ(d.proof, cases[i].kept);
        } else {
            ASSERT_EQ(rc, OE_EINVAL);
            ASSERT_CONTAINS(err, "proof");
        }
        oe_receipt_clear(&d);
    }
    /* In JSON: an object, or null; anything else is refused. */
    static const char *const bad[] = {
        "{\"id\": null, \"nonce\": \"n\", \"action\": \"a\", \"request_hash\": \"\", "
        "\"status\": \"rejected\", \"approved\": false, \"proof\": \"{}\"}",
        "{\"id\": null, \"nonce\": \"n\", \"action\": \"a\", \"request_hash\": \"\", "
        "\"status\": \"rejected\", \"approved\": false, \"proof\": [1]}",
    };
    for (size_t i = 0; i < 2; i++) {
        oe_receipt d;
        ASSERT_EQ(oe_codec_decode_receipt(c, bad[i], strlen(bad[i]), &d, err, sizeof err),
                  OE_EINVAL);
        ASSERT_CONTAINS(err, "proof: must be an object or null");
        oe_receipt_clear(&d);
    }
    const char *null_proof = "{\"id\": null, \"nonce\": \"n\", \"action\": \"a\", "
                             "\"request_hash\": \"\", \"status\": \"rejected\", "
                             "\"approved\": false, \"proof\": null}";
    oe_receipt d;
    ASSERT_EQ(oe_codec_decode_receipt(c, null_proof, strlen(null_proof), &d, err, sizeof err),
              OE_OK);
    ASSERT_TRUE(d.proof == NULL);
    oe_receipt_clear(&d);
    oe_buf_free(&enc);
    oe_codec_free(c);
}

static void test_receipts(void)
{
    oe_codec *c = new_codec(-1);
    if (!c) {
        ASSERT_TRUE(0);
        return;
    }
    oe_buf enc, js;
    oe_buf_init(&enc, 0);
    oe_buf_init(&js, 0);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof receipt_cases / sizeof receipt_cases[0]; i++) {
            const oe_receipt_fields *f = &receipt_cases[i];
            char err[300] = "";
            for (int json = 0; json <= 1; json++) {
                oe_buf_reset(&enc);
                ASSERT_EQ(oe_codec_encode_receipt(c, f, json, &enc, err, sizeof err), 0);
                if (json)
                    ASSERT_STREQ(enc.data, receipt_json[i]);
                else
                    ASSERT_TRUE(enc.len > 10 && (unsigned char)enc.data[0] == 0xC3 &&
                                enc.data[1] == 0x01 &&
                                (unsigned char)enc.data[2] == (RECEIPT_FP & 0xff));
                oe_receipt d;
                ASSERT_EQ(oe_codec_decode_receipt(c, enc.data, enc.len, &d, err, sizeof err), 0);
                check_receipt(&d, f);
                oe_buf_reset(&js);
                ASSERT_EQ(oe_receipt_to_json(&d, &js), 0);
                ASSERT_STREQ(js.data, receipt_json[i]);
                oe_receipt_clear(&d);
                ASSERT_TRUE(d.id == NULL && d.nonce == NULL);
            }
        }
    }
    /* Hostile receipts: truncations, corruptions, bad enum index. */
    oe_buf_reset(&enc);
    char err[300];
    ASSERT_EQ(oe_codec_encode_receipt(c, &receipt_cases[0], 0, &enc, err, sizeof err), 0);
    for (size_t cut = 0; cut < enc.len; cut++) {
        oe_receipt d;
        ASSERT_EQ(oe_codec_decode_receipt(c, enc.data, cut, &d, err, sizeof err), OE_EINVAL);
        ASSERT_TRUE(d.id == NULL && d.nonce == NULL);
    }
    static unsigned char buf[4096];
    for (size_t pos = 0; pos < enc.len; pos++) {
        for (unsigned v = 0; v < 256; v += 51) {
            memcpy(buf, enc.data, enc.len);
            buf[pos] = (unsigned char)v;
            oe_receipt d;
            if (oe_codec_decode_receipt(c, buf, enc.len, &d, err, sizeof err) == 0)
                ASSERT_TRUE(d.nonce && d.action && d.request_hash &&
                            same_str(d.result, d.result_json));
            oe_receipt_clear(&d);
        }
    }
    /* status enum index 3 (zigzag 6): id null, 3 empty strings, then 6;
     * the fields after it null (approved false). */
    static const unsigned char bad_enum[] = {0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(buf, enc.data, 10);
    memcpy(buf + 10, bad_enum, sizeof bad_enum);
    {
        oe_receipt d;
        ASSERT_EQ(oe_codec_decode_receipt(c, buf, 10 + sizeof bad_enum, &d, err, sizeof err),
                  OE_EINVAL);
        ASSERT_CONTAINS(err, "enum index 3");
        /* with index 2 it is a valid rejected receipt */
        buf[14] = 4;
        ASSERT_EQ(oe_codec_decode_receipt(c, buf, 10 + sizeof bad_enum, &d, err, sizeof err), 0);
        ASSERT_EQ(d.status, OE_STATUS_REJECTED);
        ASSERT_STREQ(d.nonce, "");
        ASSERT_TRUE(d.id == NULL && d.detail == NULL);
        oe_receipt_clear(&d);
        buf[15] = 2; /* boolean byte 2 */
        ASSERT_EQ(oe_codec_decode_receipt(c, buf, 10 + sizeof bad_enum, &d, err, sizeof err),
                  OE_EINVAL);
        ASSERT_CONTAINS(err, "boolean");
    }
    /* Receipts of the first schema version are still read: nonce, action
     * and request_hash plain strings, no result_json (taken from result). */
    {
        static msg m;
        m_header(&m, RECEIPT_V1_FP);
        static const unsigned char v1[] = {2, 2, 'i', 2,   'n', 2,   'a', 2, 'h', 0, 1,
                                           2, 8, '{', '}', ' ', ' ', 0,   0, 0,   0, 0};
        /* id "i", nonce "n", action "a", request_hash "h", executed, approved,
         * result "{}  " (4 bytes), receipt/error/detail/approval/proof null */
        memcpy(m.b + m.n, v1, sizeof v1);
        m.n += sizeof v1;
        oe_receipt d;
        ASSERT_EQ(oe_codec_decode_receipt(c, m.b, m.n, &d, err, sizeof err), 0);
        ASSERT_STREQ(d.nonce, "n");
        ASSERT_STREQ(d.request_hash, "h");
        ASSERT_EQ(d.status, OE_STATUS_EXECUTED);
        ASSERT_STREQ(d.result, "{}  ");
        ASSERT_STREQ(d.result_json, "{}  ");
        oe_receipt_clear(&d);
        /* one byte short: refused */
        m.n -= 1;
        ASSERT_EQ(oe_codec_decode_receipt(c, m.b, m.n, &d, err, sizeof err), OE_EINVAL);
    }
    /* And of the second: result_json, no action_code_hash (read as null). */
    {
        static msg m;
        m_header(&m, RECEIPT_V2_FP);
        static const unsigned char v2[] = {2, 2,   'i', 2, 'n', 2,   'a', 2, 'h', 0, 1, 2,
                                           4, '{', '}', 2, 4,   '{', '}', 0, 0,   0, 0, 0};
        /* id "i", nonce "n", action "a", request_hash "h", executed, approved,
         * result "{}", result_json "{}", receipt/error/detail/approval/proof
         * null */
        memcpy(m.b + m.n, v2, sizeof v2);
        m.n += sizeof v2;
        oe_receipt d;
        ASSERT_EQ(oe_codec_decode_receipt(c, m.b, m.n, &d, err, sizeof err), 0);
        ASSERT_STREQ(d.result_json, "{}");
        ASSERT_TRUE(d.action_code_hash == NULL && d.proof == NULL);
        oe_receipt_clear(&d);
        m.n -= 1;
        ASSERT_EQ(oe_codec_decode_receipt(c, m.b, m.n, &d, err, sizeof err), OE_EINVAL);
        /* Read as the current version, the same bytes are short. */
        m.n += 1;
        for (int i = 0; i < 8; i++)
            m.b[2 + i] = (unsigned char)(RECEIPT_FP >> (8 * i));
        ASSERT_EQ(oe_codec_decode_receipt(c, m.b, m.n, &d, err, sizeof err), OE_EINVAL);
    }
    /* A request is not a receipt. */
    {
        static msg m;
        m_header(&m, REQUEST_FP);
        m_request(&m, S("echo"), S("{}"), S("n"), 0, S(""));
        oe_receipt d;
        ASSERT_EQ(oe_codec_decode_receipt(c, m.b, m.n, &d, err, sizeof err), OE_EINVAL);
        ASSERT_CONTAINS(err, "fingerprint");
    }
    /* JSON receipts that are wrong. */
    static const char *const bad_json[] = {
        "",
        "{",
        "[]",
        "{\"nonce\": \"n\", \"action\": \"a\", \"request_hash\": \"h\", \"approved\": true}",
        "{\"nonce\": \"n\", \"action\": \"a\", \"request_hash\": \"h\", \"status\": \"done\", "
        "\"approved\": true}",
        "{\"nonce\": \"n\", \"action\": \"a\", \"request_hash\": \"h\", \"status\": \"executed\", "
        "\"approved\": 1}",
        "{\"nonce\": null, \"action\": \"a\", \"request_hash\": \"h\", \"status\": \"executed\", "
        "\"approved\": true}",
        "{\"nonce\": \"n\", \"action\": \"a\", \"request_hash\": \"h\", \"status\": \"executed\", "
        "\"approved\": true, \"result\": \"{}\", \"result_json\": \"[]\"}",
        "{\"nonce\": \"n\", \"action\": \"a\", \"request_hash\": \"h\", \"status\": \"executed\", "
        "\"approved\": true, \"id\": 5}",
        "{\"nonce\": \"n\\u0000\", \"action\": \"a\", \"request_hash\": \"h\", \"status\": "
        "\"executed\", \"approved\": true}",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        oe_receipt d;
        err[0] = '\0';
        ASSERT_EQ(oe_codec_decode_receipt(c, bad_json[i], strlen(bad_json[i]), &d, err, sizeof err),
                  OE_EINVAL);
        ASSERT_TRUE(err[0] != '\0');
    }
    /* Optional fields may be absent in JSON. */
    {
        const char *j =
            "{\"nonce\": \"n\", \"action\": \"a\", \"request_hash\": \"h\", \"status\": "
            "\"replayed\", \"approved\": false}";
        oe_receipt d;
        ASSERT_EQ(oe_codec_decode_receipt(c, j, strlen(j), &d, err, sizeof err), 0);
        ASSERT_EQ(d.status, OE_STATUS_REPLAYED);
        ASSERT_TRUE(d.id == NULL && d.result == NULL);
        oe_receipt_clear(&d);
    }
    /* Strings that are not UTF-8 cannot be encoded in either format. */
    {
        oe_receipt_fields f = receipt_cases[0];
        f.detail = "bad \xff";
        size_t before = enc.len;
        ASSERT_EQ(oe_codec_encode_receipt(c, &f, 1, &enc, err, sizeof err), OE_EINVAL);
        ASSERT_EQ(oe_codec_encode_receipt(c, &f, 0, &enc, err, sizeof err), OE_EINVAL);
        ASSERT_EQ(enc.len, before);
    }
    /* Each receipt fits a buffer whose limit is exactly its size, and one
     * byte less is OE_ELIMIT with the buffer left as it was. */
    for (size_t i = 0; i < sizeof receipt_cases / sizeof receipt_cases[0]; i++) {
        for (int json = 0; json < 2; json++) {
            oe_buf whole, small;
            oe_buf_init(&whole, 0);
            ASSERT_EQ(oe_codec_encode_receipt(c, &receipt_cases[i], json, &whole, err, sizeof err),
                      0);
            oe_buf_init(&small, whole.len + 1);
            ASSERT_EQ(oe_buf_puts(&small, "ab"), 0);
            ASSERT_EQ(oe_codec_encode_receipt(c, &receipt_cases[i], json, &small, err, sizeof err),
                      OE_ELIMIT);
            ASSERT_EQ(small.len, 2);
            ASSERT_STREQ(small.data, "ab");
            oe_buf_free(&small);
            oe_buf_init(&small, whole.len);
            ASSERT_EQ(oe_codec_encode_receipt(c, &receipt_cases[i], json, &small, err, sizeof err),
                      0);
            ASSERT_EQ(small.len, whole.len);
            ASSERT_TRUE(memcmp(small.data, whole.data, whole.len) == 0);
            oe_buf_free(&small);
            oe_buf_free(&whole);
        }
    }
    oe_buf_free(&enc);
    oe_buf_free(&js);
    oe_codec_free(c);
}

/* ---- interop modes ---- */

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    size_t got;
    while (b && (got = fread(b + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
            }
            b = nb;
        }
    }
    fclose(f);
    *len = n;
    return b;
}

static int write_framed(FILE *f, const void *p, size_t n)
{
    unsigned char hdr[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    return fwrite(hdr, 1, 4, f) == 4 && fwrite(p, 1, n, f) == n ? 0 : -1;
}

static void json_str_or_null(oe_buf *out, const char *s)
{
    if (s)
        oe_json_dump_string(out, s, strlen(s));
    else
        oe_buf_puts(out, "null");
}

/* One JSON line describing a decoded request. */
static void print_request(oe_buf *out, oe_decode_verdict r, const oe_request *req,
                          oe_error_code code, const char *detail)
{
    static const char *const names[] = {"ok", "rejected", "dead"};
    oe_buf_reset(out);
    oe_buf_printf(out, "{\"decode\": \"%s\"", names[r]);
    if (r == OE_DECODE_VALID) {
        oe_buf_puts(out, ", \"action\": ");
        json_str_or_null(out, req->action);
        oe_buf_puts(out, ", \"nonce\": ");
        json_str_or_null(out, req->nonce);
        oe_buf_puts(out, ", \"payload\": ");
        oe_buf p;
        oe_buf_init(&p, 0);
        oe_json_dump(&p, req->payload, OE_JSON_COMPACT);
        oe_json_dump_string(out, p.data ? p.data : "", p.len);
        oe_buf_free(&p);
        char h[65];
        oe_request_hash(req->action, strlen(req->action), req->payload, h);
        oe_buf_printf(out, ", \"request_hash\": \"%s\", \"approval_id\": ", h);
        json_str_or_null(out, req->has_artifact ? req->artifact.approval_id : NULL);
        oe_buf_puts(out, ", \"artifact\": ");
        if (req->has_artifact) {
            const oe_artifact *a = &req->artifact;
            oe_buf_puts(out, "{\"approval_id\": ");
            json_str_or_null(out, a->approval_id);
            oe_buf_puts(out, ", \"action_hash\": ");
            json_str_or_null(out, a->action_hash);
            oe_buf_puts(out, ", \"signature\": ");
            json_str_or_null(out, a->signature);
            oe_buf_puts(out, ", \"issued_by\": ");
            json_str_or_null(out, a->issued_by);
            oe_buf_puts(out, ", \"issued_at\": ");
            json_str_or_null(out, a->issued_at);
            oe_buf_puts(out, ", \"tenant_id\": ");
            json_str_or_null(out, a->tenant_id);
            oe_buf_puts(out, ", \"expires_at\": ");
            json_str_or_null(out, a->expires_at);
            oe_buf_puts(out, "}");
        } else {
            oe_buf_puts(out, "null");
        }
    } else {
        if (r == OE_DECODE_REJECTED) {
            oe_buf_printf(out, ", \"error_code\": \"%s\", \"action\": ", oe_error_code_name(code));
            json_str_or_null(out, req->action);
            oe_buf_puts(out, ", \"nonce\": ");
            json_str_or_null(out, req->nonce);
        }
        oe_buf_puts(out, ", \"detail\": ");
        /* details may quote bytes that are not UTF-8 */
        if (oe_json_dump_string(out, detail, strlen(detail)) != 0)
            oe_buf_puts(out, "\"(not UTF-8)\"");
    }
    oe_buf_puts(out, "}");
}

static int mode_decode_requests(const char *path)
{
    size_t len;
    unsigned char *data = read_file(path, &len);
    if (!data) {
        fprintf(stderr, "cannot read %s\n", path);
        return 2;
    }
    oe_codec *c = new_codec(-1);
    if (!c) {
        free(data);
        return 2;
    }
    oe_buf line;
    oe_buf_init(&line, 0);
    int rc = 0;
    for (size_t off = 0; off < len;) {
        if (len - off < 4) {
            fprintf(stderr, "truncated frame at %zu\n", off);
            rc = 2;
            break;
        }
        size_t n = ((size_t)data[off] << 24) | ((size_t)data[off + 1] << 16) |
                   ((size_t)data[off + 2] << 8) | data[off + 3];
        off += 4;
        if (n > len - off) {
            fprintf(stderr, "truncated frame at %zu\n", off);
            rc = 2;
            break;
        }
        oe_request req;
        oe_error_code code;
        char detail[512] = "";
        oe_decode_verdict verdict;
        int drc =
            oe_codec_decode_request(c, data + off, n, &req, &verdict, &code, detail, sizeof detail);
        if (drc != OE_OK) {
            fprintf(stderr, "frame at %zu: no verdict: %s\n", off - 4, oe_strerror(drc));
            oe_request_clear(&req);
            rc = 2;
            break;
        }
        print_request(&line, verdict, &req, code, detail);
        printf("%s\n", line.data);
        oe_request_clear(&req);
        off += n;
    }
    oe_buf_free(&line);
    oe_codec_free(c);
    free(data);
    return rc;
}

/* Requests encoded by us, for python3-avro to read: those of the
 * round-trip table. Prints what each holds (the decode-requests format). */
static int mode_encode_requests(const char *path)
{
    FILE *f = fopen(path, "wb");
    oe_codec *c = new_codec(-1);
    if (!f || !c) {
        if (f)
            fclose(f);
        oe_codec_free(c);
        return 2;
    }
    oe_buf enc, line;
    oe_buf_init(&enc, 0);
    oe_buf_init(&line, 0);
    int rc = 0;
    for (size_t i = 0; i < sizeof roundtrip_json / sizeof roundtrip_json[0] && !rc; i++) {
        oe_request req;
        char err[300];
        if (test_request_from_json(roundtrip_json[i], strlen(roundtrip_json[i]), &req, err,
                                   sizeof err) != OE_ERR_NONE) {
            fprintf(stderr, "%s\n", err);
            rc = 2;
        } else {
            oe_buf_reset(&enc);
            if (oe_codec_encode_request(c, &req, &enc, err, sizeof err) != 0 ||
                write_framed(f, enc.data, enc.len) != 0) {
                fprintf(stderr, "encode: %s\n", err);
                rc = 2;
            }
            print_request(&line, OE_DECODE_VALID, &req, OE_ERR_NONE, "");
            printf("%s\n", line.data);
        }
        oe_request_clear(&req);
    }
    oe_buf_free(&enc);
    oe_buf_free(&line);
    oe_codec_free(c);
    if (fclose(f) != 0)
        rc = 2;
    return rc;
}

static int mode_encode_receipts(const char *path)
{
    FILE *f = fopen(path, "wb");
    oe_codec *c = new_codec(-1);
    if (!f || !c) {
        if (f)
            fclose(f);
        oe_codec_free(c);
        return 2;
    }
    oe_buf enc;
    oe_buf_init(&enc, 0);
    int rc = 0;
    for (size_t i = 0; i < sizeof receipt_cases / sizeof receipt_cases[0] && !rc; i++) {
        char err[300];
        oe_buf_reset(&enc);
        if (oe_codec_encode_receipt(c, &receipt_cases[i], 0, &enc, err, sizeof err) != 0 ||
            write_framed(f, enc.data, enc.len) != 0) {
            fprintf(stderr, "encode: %s\n", err);
            rc = 2;
            break;
        }
        oe_buf_reset(&enc);
        if (oe_codec_encode_receipt(c, &receipt_cases[i], 1, &enc, err, sizeof err) != 0) {
            fprintf(stderr, "encode: %s\n", err);
            rc = 2;
            break;
        }
        printf("%s\n", enc.data);
    }
    oe_buf_free(&enc);
    oe_codec_free(c);
    if (fclose(f) != 0)
        rc = 2;
    return rc;
}

/* Receipts in either format, printed as oe_receipt_to_json renders them. */
static int mode_decode_receipts(const char *path)
{
    size_t len;
    unsigned char *data = read_file(path, &len);
    oe_codec *c = new_codec(-1);
    if (!data || !c) {
        free(data);
        oe_codec_free(c);
        return 2;
    }
    oe_buf line;
    oe_buf_init(&line, 0);
    int rc = 0;
    for (size_t off = 0; off < len;) {
        size_t n = len - off < 4 ? SIZE_MAX
                                 : ((size_t)data[off] << 24) | ((size_t)data[off + 1] << 16) |
                                       ((size_t)data[off + 2] << 8) | data[off + 3];
        if (n == SIZE_MAX || n > len - off - 4) {
            fprintf(stderr, "truncated frame at %zu\n", off);
            rc = 2;
            break;
        }
        off += 4;
        oe_receipt r;
        char err[300];
        oe_buf_reset(&line);
        if (oe_codec_decode_receipt(c, data + off, n, &r, err, sizeof err) == 0) {
            oe_receipt_to_json(&r, &line);
            oe_receipt_clear(&r);
        } else {
            oe_buf_puts(&line, "{\"error\": ");
            json_str_or_null(&line, err);
            oe_buf_puts(&line, "}");
        }
        printf("%s\n", line.data);
        off += n;
    }
    oe_buf_free(&line);
    oe_codec_free(c);
    free(data);
    return rc;
}

static int mode_fingerprints(void)
{
    oe_codec *c = new_codec(-1);
    if (!c)
        return 2;
    oe_buf out;
    oe_buf_init(&out, 0);
    oe_buf_printf(&out, "{\"request_fingerprint\": \"%016" PRIx64 "\", \"request_canonical\": ",
                  oe_codec_request_fingerprint(c));
    json_str_or_null(&out, oe_codec_request_canonical(c));
    oe_buf_printf(&out, ", \"receipt_fingerprint\": \"%016" PRIx64 "\", \"receipt_canonical\": ",
                  oe_codec_receipt_fingerprint(c));
    json_str_or_null(&out, oe_codec_receipt_canonical(c));
    oe_buf_puts(&out, "}");
    printf("%s\n", out.data);
    oe_buf_free(&out);
    oe_codec_free(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--decode-requests") == 0)
        return mode_decode_requests(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--encode-requests") == 0)
        return mode_encode_requests(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--encode-receipts") == 0)
        return mode_encode_receipts(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--decode-receipts") == 0)
        return mode_decode_receipts(argv[2]);
    if (argc == 2 && strcmp(argv[1], "--fingerprints") == 0)
        return mode_fingerprints();
    if (argc != 1) {
        fprintf(stderr,
                "usage: %s [--decode-requests FILE | --encode-requests FILE | "
                "--encode-receipts FILE | --decode-receipts FILE | --fingerprints]\n",
                argv[0]);
        return 2;
    }
    RUN_TEST(test_crc64);
    RUN_TEST(test_canonical_vectors);
    RUN_TEST(test_canonical_errors);
    RUN_TEST(test_schema_fingerprints);
    RUN_TEST(test_avro_request_table);
    RUN_TEST(test_hostile_avro);
    RUN_TEST(test_confluent);
    RUN_TEST(test_json_requests);
    RUN_TEST(test_request_roundtrip);
    RUN_TEST(test_truncations_and_corruptions);
    RUN_TEST(test_random_bodies);
    RUN_TEST(test_out_of_memory_is_no_verdict);
    RUN_TEST(test_receipts);
    RUN_TEST(test_receipt_proofs);
    return TEST_REPORT();
}
