/* Tests engine/request.c: which bodies are malformed (422), which are
 * invalid (400), and what a valid one decodes to. */
#include "engine/request.h"
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
        oe_error_code code = test_request_from_json(cases[i].body, strlen(cases[i].body), &r, err,
                                                  sizeof err);
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
    ASSERT_EQ(test_request_from_json(body, strlen(body), &r, err, sizeof err), OE_ERR_INVALID_REQUEST);
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

int main(void)
{
    RUN_TEST(test_request_table);
    RUN_TEST(test_nonce_length);
    RUN_TEST(test_decoded_fields);
    RUN_TEST(test_http_status);
    return TEST_REPORT();
}
