/* Tests engine/request.c: which bodies are malformed (422), which are
 * invalid (400), and what a valid one decodes to. */
#include <stdlib.h>

#include "engine/request.h"
#include "engine/status.h"
#include "tests/test.h"

typedef struct {
    const char *body;
    oe_error_code code;
    const char *words; /* the reason must contain these */
} request_case;

static const request_case cases[] = {
    {"{\"action\":\"echo\",\"nonce\":\"n\"}", OE_ERR_NONE, NULL},
    {"{\"action\":\"echo\",\"nonce\":\"n\",\"payload\":null,\"extra\":[1]}", OE_ERR_NONE, NULL},
    {"", OE_ERR_MALFORMED, "invalid JSON"},
    {"not json", OE_ERR_MALFORMED, "byte"},
    {"[1]", OE_ERR_MALFORMED, "object"},
    {"{\"nonce\":\"n\"}", OE_ERR_MALFORMED, "action"},
    {"{\"action\":\"echo\"}", OE_ERR_MALFORMED, "nonce"},
    {"{\"action\":1,\"nonce\":\"n\"}", OE_ERR_MALFORMED, "action: must be a string"},
    {"{\"action\":\"echo\",\"nonce\":null}", OE_ERR_MALFORMED, "nonce"},
    {"{\"action\":\"echo\",\"nonce\":\"n\",\"payload\":[]}", OE_ERR_MALFORMED, "payload"},
    {"{\"action\":\"echo\",\"nonce\":\"n\",\"payload\":\"{}\"}", OE_ERR_MALFORMED, "payload"},
    {"{\"action\":\"echo\",\"nonce\":\"n\",\"nonce\":\"m\"}", OE_ERR_MALFORMED, "nonce"},
    {"{\"action\":\"echo\",\"nonce\":\"n\",\"payload\":{\"x\":NaN}}", OE_ERR_MALFORMED, "byte"},
    {"{\"action\":\"echo\",\"nonce\":\"n\",\"approval_artifact\":\"x\"}", OE_ERR_MALFORMED,
     "approval_artifact"},
    {"{\"action\":\"echo\",\"nonce\":\"n\",\"approval_artifact\":{\"approval_id\":\"a\"}}",
     OE_ERR_MALFORMED, "approval_artifact.action_hash"},
    {"{\"action\":\"\",\"nonce\":\"n\"}", OE_ERR_INVALID_REQUEST, "action"},
    {"{\"action\":\"echo\",\"nonce\":\"\"}", OE_ERR_INVALID_REQUEST, "nonce"},
    {"{\"action\":\"ec\\u0000ho\",\"nonce\":\"n\"}", OE_ERR_INVALID_REQUEST, "NUL"},
};

static void test_request_table(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        oe_request r;
        char err[300] = "";
        oe_error_code code =
            test_request_from_json(cases[i].body, strlen(cases[i].body), &r, err, sizeof err);
        if (code != cases[i].code)
            OE_FAIL_("%s: code %d, expected %d (%s)", cases[i].body, code, cases[i].code, err);
        if (cases[i].words)
            ASSERT_CONTAINS(err, cases[i].words);
        oe_request_clear(&r);
    }
}

static void test_nonce_length(void)
{
    char body[600], nonce[300];
    memset(nonce, 'n', 256);
    nonce[256] = '\0';
    snprintf(body, sizeof body, "{\"action\":\"echo\",\"nonce\":\"%s\"}", nonce);
    oe_request r;
    char err[200];
    ASSERT_EQ(test_request_from_json(body, strlen(body), &r, err, sizeof err), OE_ERR_NONE);
    oe_request_clear(&r);
    nonce[256] = 'n';
    nonce[257] = '\0';
    snprintf(body, sizeof body, "{\"action\":\"echo\",\"nonce\":\"%s\"}", nonce);
    ASSERT_EQ(test_request_from_json(body, strlen(body), &r, err, sizeof err),
              OE_ERR_INVALID_REQUEST);
    ASSERT_CONTAINS(err, "256");
    oe_request_clear(&r);
}

static void test_decoded_fields(void)
{
    const char *body = "{\"action\":\"echo\",\"payload\":{\"m\":1},\"nonce\":\"n-1\","
                       "\"approval_artifact\":{\"approval_id\":\"a\",\"action_hash\":\"h\","
                       "\"signature\":\"s\",\"issued_by\":\"clawshield\",\"issued_at\":\"t\","
                       "\"tenant_id\":\"x\",\"expires_at\":null}}";
    oe_request r;
    char err[200];
    ASSERT_EQ(test_request_from_json(body, strlen(body), &r, err, sizeof err), OE_ERR_NONE);
    ASSERT_STREQ(r.action, "echo");
    ASSERT_STREQ(r.nonce, "n-1");
    ASSERT_EQ(r.payload->type, OE_JSON_OBJECT);
    ASSERT_EQ(r.payload->len, 1);
    ASSERT_EQ(r.has_artifact, 1);
    ASSERT_STREQ(r.artifact.approval_id, "a");
    ASSERT_STREQ(r.artifact.tenant_id, "x");
    ASSERT_TRUE(r.artifact.expires_at == NULL);
    oe_request_clear(&r);

    /* The Avro path: fields given separately, payload as JSON text. */
    ASSERT_EQ(test_request_from_fields("add", "n-2", "{\"a\":1}", 7, NULL, &r, err, sizeof err),
              OE_ERR_NONE);
    ASSERT_STREQ(r.action, "add");
    ASSERT_EQ(r.payload->len, 1);
    oe_request_clear(&r);
    ASSERT_EQ(test_request_from_fields("add", "n-2", "[1]", 3, NULL, &r, err, sizeof err),
              OE_ERR_MALFORMED);
    oe_request_clear(&r);
    ASSERT_EQ(test_request_from_fields("add", "", "", 0, NULL, &r, err, sizeof err),
              OE_ERR_INVALID_REQUEST);
    oe_request_clear(&r);
}

static void test_http_status(void)
{
    ASSERT_EQ(oe_error_code_http_status(OE_ERR_MALFORMED), 422);
    ASSERT_EQ(oe_error_code_http_status(OE_ERR_INVALID_REQUEST), 400);
    ASSERT_EQ(oe_error_code_http_status(OE_ERR_UNKNOWN_ACTION), 400);
    ASSERT_EQ(oe_error_code_http_status(OE_ERR_APPROVAL_INVALID), 403);
    ASSERT_EQ(oe_error_code_http_status(OE_ERR_NOT_ALLOWED), 403);
    ASSERT_EQ(oe_error_code_http_status(OE_ERR_NONCE_CONFLICT), 409);
    ASSERT_STREQ(oe_error_code_name(OE_ERR_NONCE_CONFLICT), "nonce_conflict");
    ASSERT_STREQ(oe_error_code_name(OE_ERR_APPROVAL_INVALID), "approval_invalid");
}

/* The original service's newer clients send Ed25519 artifacts without
 * issued_by: the decoder accepts that (the engine refuses it for HMAC
 * artifacts), and reads the optional key_id; the Avro path likewise. */
static void test_artifact_optional_fields(void)
{
    const char *body = "{\"action\":\"echo\",\"nonce\":\"n-1\",\"approval_artifact\":{"
                       "\"approval_id\":\"a\",\"action_hash\":\"h\",\"signature\":\"s\","
                       "\"issued_at\":\"t\",\"tenant_id\":\"x\",\"expires_at\":\"e\","
                       "\"key_id\":\"k1\"}}";
    oe_request r;
    char err[200];
    ASSERT_EQ(test_request_from_json(body, strlen(body), &r, err, sizeof err), OE_ERR_NONE);
    ASSERT_TRUE(r.artifact.issued_by == NULL);
    ASSERT_STREQ(r.artifact.key_id, "k1");
    ASSERT_STREQ(r.artifact.expires_at, "e");
    oe_request_clear(&r);
    /* key_id, when present, must be a string. */
    const char *bad = "{\"action\":\"echo\",\"nonce\":\"n-1\",\"approval_artifact\":{"
                      "\"approval_id\":\"a\",\"action_hash\":\"h\",\"signature\":\"s\","
                      "\"issued_at\":\"t\",\"tenant_id\":\"x\",\"key_id\":7}}";
    ASSERT_EQ(test_request_from_json(bad, strlen(bad), &r, err, sizeof err), OE_ERR_MALFORMED);
    ASSERT_CONTAINS(err, "approval_artifact.key_id: must be a string");
    oe_request_clear(&r);
    /* A required field is still required. */
    const char *missing = "{\"action\":\"echo\",\"nonce\":\"n-1\",\"approval_artifact\":{"
                          "\"approval_id\":\"a\",\"action_hash\":\"h\",\"signature\":\"s\","
                          "\"tenant_id\":\"x\"}}";
    ASSERT_EQ(test_request_from_json(missing, strlen(missing), &r, err, sizeof err),
              OE_ERR_MALFORMED);
    ASSERT_CONTAINS(err, "approval_artifact.issued_at: field required");
    oe_request_clear(&r);

    oe_artifact a = {.approval_id = "a",
                     .action_hash = "h",
                     .signature = "s",
                     .issued_at = "t",
                     .tenant_id = "x",
                     .expires_at = "e"};
    ASSERT_EQ(test_request_from_fields("echo", "n-2", NULL, 0, &a, &r, err, sizeof err),
              OE_ERR_NONE);
    ASSERT_TRUE(r.artifact.issued_by == NULL);
    oe_request_clear(&r);
    a.tenant_id = NULL;
    ASSERT_EQ(test_request_from_fields("echo", "n-3", NULL, 0, &a, &r, err, sizeof err),
              OE_ERR_MALFORMED);
    oe_request_clear(&r);
}

/* Artifact fields are bounded: approval_id like the nonce (receipts repeat
 * it), the others at 1,024 bytes. */
static void test_artifact_field_limits(void)
{
    const char *names[] = {"approval_id", "action_hash", "signature",  "issued_by",
                           "issued_at",   "tenant_id",   "expires_at", "key_id"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        size_t limit = k == 0 ? OE_APPROVAL_ID_MAX_BYTES : OE_ARTIFACT_FIELD_MAX_BYTES;
        for (size_t extra = 0; extra < 2; extra++) {
            char *big = malloc(limit + extra + 1);
            memset(big, 'x', limit + extra);
            big[limit + extra] = '\0';
            char body[4096];
            int n = snprintf(body, sizeof body,
                             "{\"action\":\"echo\",\"nonce\":\"n\","
                             "\"approval_artifact\":{");
            for (size_t f = 0; f < sizeof names / sizeof names[0]; f++)
                n += snprintf(body + n, sizeof body - (size_t)n, "%s\"%s\":\"%s\"", f ? "," : "",
                              names[f], f == k ? big : "v");
            snprintf(body + n, sizeof body - (size_t)n, "}}");
            oe_request r;
            char err[300] = "";
            int code = test_request_from_json(body, strlen(body), &r, err, sizeof err);
            if (extra == 0) {
                ASSERT_EQ(code, OE_ERR_NONE);
            } else {
                ASSERT_EQ(code, OE_ERR_INVALID_REQUEST);
                ASSERT_CONTAINS(err, names[k]);
                ASSERT_CONTAINS(err, "longer than");
            }
            oe_request_clear(&r);
            free(big);
        }
    }
}

/* Regression: running out of memory while decoding was reported as a
 * malformed request, and so stored and published as a permanent answer.
 * With the address space capped just above what is in use, a large body
 * cannot be parsed: the decoder must say OE_ENOMEM, not give a verdict.
 * (Skipped under AddressSanitizer, which reserves terabytes of address
 * space up front.) */
static void test_out_of_memory_is_no_verdict(void)
{
    if (!test_memory_can_run_out())
        return;
    size_t len = 900000;
    char *body = malloc(len + 64);
    size_t n = (size_t)sprintf(body, "{\"action\":\"echo\",\"nonce\":\"n\",\"payload\":{\"s\":\"");
    memset(body + n, 'a', len - n - 3);
    memcpy(body + len - 3, "\"}}", 4);
    struct rlimit old;
    ASSERT_EQ(test_cap_address_space(&old), 0);
    oe_request r;
    oe_error_code verdict = OE_ERR_NONE;
    char err[300] = "";
    int rc = oe_request_from_json(body, len, &r, &verdict, err, sizeof err);
    setrlimit(RLIMIT_AS, &old);
    ASSERT_EQ(rc, OE_ENOMEM);
    ASSERT_CONTAINS(err, "out of memory");
    oe_request_clear(&r);
    /* With memory back, the same bytes decode. */
    ASSERT_EQ(oe_request_from_json(body, len, &r, &verdict, err, sizeof err), OE_OK);
    ASSERT_EQ(verdict, OE_ERR_NONE);
    oe_request_clear(&r);
    free(body);
}

int main(void)
{
    RUN_TEST(test_request_table);
    RUN_TEST(test_nonce_length);
    RUN_TEST(test_decoded_fields);
    RUN_TEST(test_http_status);
    RUN_TEST(test_artifact_optional_fields);
    RUN_TEST(test_artifact_field_limits);
    RUN_TEST(test_out_of_memory_is_no_verdict);
    return TEST_REPORT();
}
