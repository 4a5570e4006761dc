/* Tests engine/ids.c and engine/digest.c: request hashes, execution ids and
 * receipts against values computed independently with Python's hashlib and
 * json.dumps. */
#include "engine/digest.h"
#include "engine/ids.h"
#include "engine/status.h"
#include "tests/test.h"

typedef struct {
    const char *action;
    const char *payload; /* JSON text, NULL = missing */
    const char *hash;
} hash_case;

static const hash_case hash_cases[] = {
    {"echo", "{\"msg\": \"hi\"}",
     "7291f2ca88baf3bbf1169d4a0705b285f4d0bd7877d768bf1c3a29aab9403592"},
    {"add", "{\"b\": 3, \"a\": 2}",
     "8264f143d219f1fbc6364c523434b214fcd0c6c7f9ec1e2f8692a40d29f27a50"},
    {"echo", "{}", "4d9b97d6e60f36b9c5d3107933b358b55c858aa5814c742b4783ce871e2ca981"},
    {"echo", NULL, "4d9b97d6e60f36b9c5d3107933b358b55c858aa5814c742b4783ce871e2ca981"},
    {"echo", "{\"z\": 1, \"a\": [1.5, \"\\u00e9\\ud83d\\ude00\", null, true]}",
     "67bea53dc298e63830b9cc446a10ca7a1252b05f2efd453cd779d5951b5fea03"},
};

static void test_request_hash(void)
{
    for (size_t i = 0; i < sizeof hash_cases / sizeof hash_cases[0]; i++) {
        const hash_case *c = &hash_cases[i];
        char err[200], out[65];
        oe_json_doc *doc = NULL;
        const oe_json *payload = NULL;
        if (c->payload) {
            doc = test_json_parse(c->payload, strlen(c->payload), 0, err, sizeof err);
            ASSERT_TRUE(doc != NULL);
            if (!doc)
                continue;
            payload = oe_json_root(doc);
        }
        ASSERT_EQ(oe_request_hash(c->action, strlen(c->action), payload, out), 0);
        ASSERT_STREQ(out, c->hash);
        oe_json_doc_free(doc);
    }
}

static void test_execution_id(void)
{
    char id[37];
    const char *h = "7291f2ca88baf3bbf1169d4a0705b285f4d0bd7877d768bf1c3a29aab9403592";
    oe_execution_id("", "n-1", h, id);
    ASSERT_STREQ(id, "6f3e5109-03e2-87b5-85d1-a9c98360dc73");
    oe_execution_id("tenant-a", "n-1", h, id);
    ASSERT_STREQ(id, "16a3bf01-d583-80cf-85c1-e2c6ffb617bf");
    /* The separators matter: ("ab","c") and ("a","bc") differ. */
    char id2[37];
    oe_execution_id("ab", "c", h, id);
    oe_execution_id("a", "bc", h, id2);
    ASSERT_TRUE(strcmp(id, id2) != 0);
    ASSERT_EQ(id[14], '8');
    ASSERT_TRUE(strchr("89ab", id[19]) != NULL);
}

static void test_receipt_hash(void)
{
    char out[65];
    const char *result = "{\"echo\": {\"msg\": \"hi\"}}";
    oe_receipt_hash("6f3e5109-03e2-87b5-85d1-a9c98360dc73", result, strlen(result), out);
    ASSERT_STREQ(out, "cbbd2992eef15b2d3b33eeef7e1451a3785f2437028b3c851943a4745eb28d6e");
}

static void test_hmac_and_base64(void)
{
    char out[65];
    const char *msg = "ap-1:7291f2ca88baf3bbf1169d4a0705b285f4d0bd7877d768bf1c3a29aab9403592:t1:"
                      "2026-11-25T13:00:00+00:00";
    oe_hmac_sha256_hex("s3cret", 6, msg, strlen(msg), out);
    ASSERT_STREQ(out, "8dda986282d5b48f7b56a7bed663755bf34f6df69a961ddf28c4fefb6891e800");
    /* RFC 4231 test cases 1 and 6 (a key longer than the block is hashed). */
    unsigned char key[131];
    memset(key, 0x0b, 20);
    oe_hmac_sha256_hex(key, 20, "Hi There", 8, out);
    ASSERT_STREQ(out, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    memset(key, 0xaa, sizeof key);
    const char *long_key = "Test Using Larger Than Block-Size Key - Hash Key First";
    oe_hmac_sha256_hex(key, sizeof key, long_key, strlen(long_key), out);
    ASSERT_STREQ(out, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    static const struct {
        const char *raw, *b64;
    } b[] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        char enc[16];
        unsigned char dec[16];
        ASSERT_EQ(
            oe_base64_encode((const unsigned char *)b[i].raw, strlen(b[i].raw), enc, sizeof enc),
            (long long)strlen(b[i].b64));
        ASSERT_STREQ(enc, b[i].b64);
        int n = oe_base64_decode(b[i].b64, strlen(b[i].b64), dec, sizeof dec);
        ASSERT_EQ(n, (long long)strlen(b[i].raw));
        ASSERT_TRUE(n >= 0 && memcmp(dec, b[i].raw, (size_t)n) == 0);
    }
    unsigned char dec[16];
    ASSERT_EQ(oe_base64_decode("Zm9", 3, dec, sizeof dec), OE_EINVAL);  /* not a multiple of 4 */
    ASSERT_EQ(oe_base64_decode("Zm=v", 4, dec, sizeof dec), OE_EINVAL); /* data after padding */
    ASSERT_EQ(oe_base64_decode("Zm9v!!!!", 8, dec, sizeof dec), OE_EINVAL); /* bad characters */
    ASSERT_EQ(oe_base64_decode("Zm9vYmFy", 8, dec, 5), OE_ELIMIT);          /* too small a buffer */
    char enc[8];
    ASSERT_EQ(oe_base64_encode((const unsigned char *)"foobar", 6, enc, sizeof enc), OE_ELIMIT);
}

int main(void)
{
    RUN_TEST(test_request_hash);
    RUN_TEST(test_execution_id);
    RUN_TEST(test_receipt_hash);
    RUN_TEST(test_hmac_and_base64);
    return TEST_REPORT();
}
