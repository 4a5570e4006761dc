/* Tests engine/approval.c: HMAC and Ed25519 signatures, ISO 8601 times and
 * the time window. Keys are made here with OpenSSL; interop with an
 * independent implementation is in tests/http/test_interop.py. */
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "engine/approval.h"
#include "tests/keys.h"
#include "tests/test.h"

static const oe_artifact base = {
    .approval_id = "ap-1",
    .action_hash = "7291f2ca88baf3bbf1169d4a0705b285f4d0bd7877d768bf1c3a29aab9403592",
    .signature = "8dda986282d5b48f7b56a7bed663755bf34f6df69a961ddf28c4fefb6891e800",
    .issued_by = "clawshield",
    .issued_at = "2026-11-25T13:00:00+00:00",
    .tenant_id = "t1",
    .expires_at = NULL,
};

static void test_hmac(void)
{
    char err[200], detail[200];
    oe_approval_keys *k;
    ASSERT_EQ(oe_approval_keys_new("s3cret", NULL, &k, err, sizeof err), 0);
    ASSERT_TRUE(oe_approval_keys_present(k));
    int ed = -1;
    oe_artifact a = base;
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 0);
    ASSERT_EQ(ed, 0);

    char sig[65];
    oe_approval_sign_hmac("s3cret", &a, sig);
    ASSERT_STREQ(sig, base.signature);

    /* Any changed field breaks the signature. */
    const char **fields[] = {&a.approval_id, &a.action_hash, &a.tenant_id, &a.issued_at};
    for (size_t i = 0; i < 4; i++) {
        a = base;
        *fields[i] = "x";
        ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 1);
        ASSERT_CONTAINS(detail, "Invalid signature");
    }
    a = base;
    a.signature = "8dda986282d5b48f7b56a7bed663755bf34f6df69a961ddf28c4fefb6891e801";
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 1);
    a.signature = "short";
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 1);
    a.signature = "";
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 1);
    oe_approval_keys_free(k);

    ASSERT_EQ(oe_approval_keys_new("other", NULL, &k, err, sizeof err), 0);
    a = base;
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 1);
    ASSERT_CONTAINS(detail, "Invalid signature");
    oe_approval_keys_free(k);
}

static void test_ed25519(void)
{
    char *priv, *pub, err[200], detail[200], sig[128];
    test_make_ed25519(&priv, &pub);
    oe_approval_keys *k;
    ASSERT_EQ(oe_approval_keys_new(NULL, pub, &k, err, sizeof err), 0);
    oe_artifact a = base;
    a.expires_at = "2026-11-25T13:05:00+00:00";
    ASSERT_EQ(oe_approval_sign_ed25519(priv, &a, sig, sizeof sig, err, sizeof err), 0);
    a.signature = sig;
    int ed = 0;
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 0);
    ASSERT_EQ(ed, 1);

    /* expires_at is signed: changing it breaks the signature. */
    a.expires_at = "2026-11-25T14:05:00+00:00";
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 1);
    ASSERT_CONTAINS(detail, "Invalid signature");
    /* Signed with expires_at, sent without: not authentic. */
    a.expires_at = NULL;
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 1);
    ASSERT_CONTAINS(detail, "Invalid signature");
    /* Signed without expires_at: authentic; the time check refuses it. */
    ASSERT_EQ(oe_approval_sign_ed25519(priv, &a, sig, sizeof sig, err, sizeof err), 0);
    a.signature = sig;
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 0);
    ASSERT_EQ(oe_approval_check_time(&a, 1, 1795611601, 300, 30, detail, sizeof detail), -1);
    ASSERT_CONTAINS(detail, "expired");
    ASSERT_EQ(oe_approval_sign_ed25519(priv,
                                       &(oe_artifact){.approval_id = base.approval_id,
                                                      .action_hash = base.action_hash,
                                                      .issued_by = base.issued_by,
                                                      .issued_at = base.issued_at,
                                                      .tenant_id = base.tenant_id,
                                                      .expires_at = "2026-11-25T13:05:00+00:00"},
                                       sig, sizeof sig, err, sizeof err),
              0);
    a.expires_at = "2026-11-25T13:05:00+00:00";
    a.signature = "not base64";
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 1);
    ASSERT_CONTAINS(detail, "Invalid signature");

    /* With both keys, a hex signature is HMAC and a base64 one Ed25519. */
    oe_approval_keys *both;
    ASSERT_EQ(oe_approval_keys_new("s3cret", pub, &both, err, sizeof err), 0);
    a.signature = sig;
    ASSERT_EQ(oe_approval_check_signature(both, &a, &ed, detail, sizeof detail), 0);
    ASSERT_EQ(ed, 1);
    oe_artifact h = base;
    ASSERT_EQ(oe_approval_check_signature(both, &h, &ed, detail, sizeof detail), 0);
    ASSERT_EQ(ed, 0);
    oe_approval_keys_free(both);

    /* A private key or garbage is not accepted as the public key. */
    oe_approval_keys *bad;
    ASSERT_EQ(oe_approval_keys_new(NULL,
                                   "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n",
                                   &bad, err, sizeof err),
              -1);
    ASSERT_CONTAINS(err, "Ed25519");
    oe_approval_keys_free(k);
    free(priv);
    free(pub);
}

static void test_time_parse(void)
{
    static const struct {
        const char *text;
        double epoch; /* -1: invalid */
    } cases[] = {
        {"1970-01-01T00:00:00", 0},
        {"1970-01-01T00:00:00Z", 0},
        {"2026-11-25T13:00:00+00:00", 1795611600},
        {"2026-11-25T13:00:00", 1795611600},
        {"2026-11-25 13:00:00", 1795611600},
        {"2026-11-25T14:00:00+01:00", 1795611600},
        {"2026-11-25T12:30:00-0030", 1795611600},
        {"2026-11-25T13:00:00.5Z", 1795611600.5},
        {"2000-02-29T00:00:00", 951782400},
        {"2001-02-29T00:00:00", -1},
        {"2026-13-01T00:00:00", -1},
        {"2026-11-25T24:00:00", -1},
        {"2026-11-25", -1},
        {"2026-11-25T13:00:00+00:00x", -1},
        {"2026-11-25T13:00:00.", -1},
        {"", -1},
        {"yesterday", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double t = -1;
        int rc = oe_time_parse_iso8601(cases[i].text, &t);
        if (cases[i].epoch < 0) {
            if (rc != -1)
                OE_FAIL_("accepted %s", cases[i].text);
        } else if (rc != 0 || t != cases[i].epoch) {
            OE_FAIL_("%s -> rc %d, %.3f (expected %.3f)", cases[i].text, rc, t, cases[i].epoch);
        }
    }
    char out[64];
    oe_time_format_iso8601(1795611600.25, out, sizeof out);
    ASSERT_STREQ(out, "2026-11-25T13:00:00.250000+00:00");
    double back;
    ASSERT_EQ(oe_time_parse_iso8601(out, &back), 0);
    ASSERT_TRUE(back == 1795611600.25);
}

static void test_time_window(void)
{
    const double issued = 1795611600; /* base.issued_at */
    char detail[200];
    oe_artifact a = base;
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued + 10, 300, 30, detail, sizeof detail), 0);
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued + 300, 300, 30, detail, sizeof detail), 0);
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued + 301, 300, 30, detail, sizeof detail), -1);
    ASSERT_CONTAINS(detail, "expired");
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued - 30, 300, 30, detail, sizeof detail), 0);
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued - 31, 300, 30, detail, sizeof detail), -1);
    ASSERT_CONTAINS(detail, "expired");
    /* expires_at ends validity earlier than the age limit. */
    a.expires_at = "2026-11-25T13:01:00Z";
    ASSERT_EQ(oe_approval_check_time(&a, 1, issued + 59, 300, 30, detail, sizeof detail), 0);
    ASSERT_EQ(oe_approval_check_time(&a, 1, issued + 60, 300, 30, detail, sizeof detail), -1);
    ASSERT_CONTAINS(detail, "expired");
    /* Ed25519 requires expires_at. */
    a.expires_at = NULL;
    ASSERT_EQ(oe_approval_check_time(&a, 1, issued + 1, 300, 30, detail, sizeof detail), -1);
    ASSERT_CONTAINS(detail, "expires_at");
    a.issued_at = "not a time";
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued, 300, 30, detail, sizeof detail), -1);
}

int main(void)
{
    RUN_TEST(test_hmac);
    RUN_TEST(test_ed25519);
    RUN_TEST(test_time_parse);
    RUN_TEST(test_time_window);
    return TEST_REPORT();
}
