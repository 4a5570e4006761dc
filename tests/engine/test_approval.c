/* Tests engine/approval.c: HMAC and Ed25519 signatures, ISO 8601 times and
 * the time window. Keys are made here with OpenSSL; interop with an
 * independent implementation is in tests/http/test_interop.py. */
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "engine/approval.h"
#include "engine/digest.h"
#include "engine/status.h"
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
    ASSERT_EQ(oe_approval_check_time(&a, 1, 1795611601, 300, 30, detail, sizeof detail), OE_EINVAL);
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
              OE_EINVAL);
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
            if (rc != OE_EINVAL)
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
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued + 301, 300, 30, detail, sizeof detail),
              OE_EINVAL);
    ASSERT_CONTAINS(detail, "expired");
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued - 30, 300, 30, detail, sizeof detail), 0);
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued - 31, 300, 30, detail, sizeof detail),
              OE_EINVAL);
    ASSERT_CONTAINS(detail, "expired");
    /* expires_at ends validity earlier than the age limit. */
    a.expires_at = "2026-11-25T13:01:00Z";
    ASSERT_EQ(oe_approval_check_time(&a, 1, issued + 59, 300, 30, detail, sizeof detail), 0);
    ASSERT_EQ(oe_approval_check_time(&a, 1, issued + 60, 300, 30, detail, sizeof detail),
              OE_EINVAL);
    ASSERT_CONTAINS(detail, "expired");
    /* Ed25519 requires expires_at. */
    a.expires_at = NULL;
    ASSERT_EQ(oe_approval_check_time(&a, 1, issued + 1, 300, 30, detail, sizeof detail), OE_EINVAL);
    ASSERT_CONTAINS(detail, "expires_at");
    a.issued_at = "not a time";
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued, 300, 30, detail, sizeof detail), OE_EINVAL);
}

/* Several Ed25519 keys (rotation): an artifact signed by any configured key
 * passes, one signed by another key does not; key_id picks one key. */
static void test_ed25519_key_set(void)
{
    char *priv[4], *pub[4], err[300], detail[200], sig[128];
    for (int i = 0; i < 4; i++)
        test_make_ed25519(&priv[i], &pub[i]);
    /* Keys 0, 1 and 2 configured, with text between the blocks. */
    char pems[4096];
    snprintf(pems, sizeof pems, "# old\n%s\n# current\n%s%s", pub[0], pub[1], pub[2]);
    oe_approval_keys *k;
    ASSERT_EQ(oe_approval_keys_new(NULL, pems, &k, err, sizeof err), 0);
    ASSERT_EQ(oe_approval_keys_ed25519_count(k), 3);
    ASSERT_EQ(oe_approval_keys_hmac_count(k), 0);
    /* Key id = hex SHA-256 of the raw public key, in configured order. */
    char ids[4][65];
    for (int i = 0; i < 4; i++) {
        BIO *b = BIO_new_mem_buf(pub[i], -1);
        EVP_PKEY *key = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
        unsigned char raw[32];
        size_t n = sizeof raw;
        ASSERT_EQ(EVP_PKEY_get_raw_public_key(key, raw, &n), 1);
        oe_sha256_hex(raw, n, ids[i]);
        EVP_PKEY_free(key);
        BIO_free(b);
    }
    for (int i = 0; i < 3; i++)
        ASSERT_STREQ(oe_approval_keys_ed25519_id(k, (size_t)i), ids[i]);
    ASSERT_TRUE(oe_approval_keys_ed25519_id(k, 3) == NULL);

    oe_artifact a = base;
    a.issued_by = NULL; /* the newer clients send none; it is not signed */
    a.expires_at = "2026-11-25T14:00:00";
    int ed = 0;
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(oe_approval_sign_ed25519(priv[i], &a, sig, sizeof sig, err, sizeof err), 0);
        a.signature = sig;
        a.key_id = NULL;
        /* Each key tried: keys 0-2 pass, the unconfigured key 3 fails. */
        ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), i < 3 ? 0 : 1);
        ASSERT_EQ(ed, 1);
        if (i == 3)
            ASSERT_CONTAINS(detail, "Invalid signature");
        /* key_id of the signing key: passes when configured. */
        a.key_id = ids[i];
        int rc = oe_approval_check_signature(k, &a, &ed, detail, sizeof detail);
        ASSERT_EQ(rc, i < 3 ? 0 : 1);
        if (i == 3) {
            ASSERT_CONTAINS(detail, "Invalid signature");
            ASSERT_CONTAINS(detail, "key_id is unknown");
        }
        /* key_id of another configured key: that key alone is tried. */
        a.key_id = ids[(i + 1) % 3];
        ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 1);
        ASSERT_CONTAINS(detail, "Ed25519 verification failed");
    }
    oe_approval_keys_free(k);

    /* Refused sets: the reason names the block, never shows a key. */
    /* Nine distinct keys; the first eight are accepted below. */
    char many[8192] = "", eight[8192] = "";
    for (int i = 0; i < 9; i++) {
        char *p9, *k9;
        test_make_ed25519(&p9, &k9);
        strcat(many, k9);
        if (i == 7)
            strcpy(eight, many);
        free(p9);
        free(k9);
    }
    const struct {
        const char *pem, *reason;
        int rc;
    } bad[] = {
        {many, "more than 8 PEM blocks", OE_ELIMIT},
        {"not PEM at all", "holds no PEM block", OE_EINVAL},
        {NULL, "PEM block 2 is not an Ed25519 public key", OE_EINVAL}, /* a private key */
        {NULL, "PEM block 2 repeats the key of block 1", OE_EINVAL},   /* twice the same */
        {"-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n", "PEM block 1", OE_EINVAL},
    };
    char with_priv[4096], twice[4096];
    snprintf(with_priv, sizeof with_priv, "%s%s", pub[0], priv[1]);
    snprintf(twice, sizeof twice, "%s%s", pub[2], pub[2]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *pem = bad[i].pem ? bad[i].pem : i == 2 ? with_priv : twice;
        err[0] = '\0';
        k = NULL;
        ASSERT_EQ(oe_approval_keys_new(NULL, pem, &k, err, sizeof err), bad[i].rc);
        ASSERT_TRUE(k == NULL);
        ASSERT_CONTAINS(err, bad[i].reason);
        ASSERT_CONTAINS(err, "CLAWSHIELD_PUBLIC_KEY");
        ASSERT_TRUE(strstr(err, "MC4C") == NULL && strstr(err, "MCow") == NULL);
    }
    /* Eight keys are accepted; blank text is no key. */
    ASSERT_EQ(oe_approval_keys_new(NULL, eight, &k, err, sizeof err), 0);
    ASSERT_EQ(oe_approval_keys_ed25519_count(k), 8);
    oe_approval_keys_free(k);
    ASSERT_EQ(oe_approval_keys_new(NULL, " \n", &k, err, sizeof err), 0);
    ASSERT_EQ(oe_approval_keys_present(k), 0);
    oe_approval_keys_free(k);
    for (int i = 0; i < 4; i++) {
        free(priv[i]);
        free(pub[i]);
    }
}

/* Several HMAC secrets (rotation): each is tried; empty entries and more
 * than 8 are refused without showing a secret. */
static void test_hmac_secret_list(void)
{
    char err[300], detail[200];
    oe_approval_keys *k;
    /* base is signed with "s3cret": second of three. */
    ASSERT_EQ(oe_approval_keys_new("old-secret-value,s3cret,next", NULL, &k, err, sizeof err), 0);
    ASSERT_EQ(oe_approval_keys_hmac_count(k), 3);
    ASSERT_EQ(oe_approval_keys_hmac_length(k, 0), 16);
    ASSERT_EQ(oe_approval_keys_hmac_length(k, 1), 6);
    ASSERT_EQ(oe_approval_keys_hmac_length(k, 2), 4);
    ASSERT_EQ(oe_approval_keys_ed25519_count(k), 0);
    int ed = -1;
    oe_artifact a = base;
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 0);
    ASSERT_EQ(ed, 0);
    oe_approval_keys_free(k);
    /* Without "s3cret" in the list: refused. Blanks are part of a secret. */
    ASSERT_EQ(oe_approval_keys_new("old,next, s3cret", NULL, &k, err, sizeof err), 0);
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 1);
    ASSERT_CONTAINS(detail, "Invalid signature");
    oe_approval_keys_free(k);
    /* Eight are accepted. */
    ASSERT_EQ(oe_approval_keys_new("a,b,c,d,e,f,g,s3cret", NULL, &k, err, sizeof err), 0);
    ASSERT_EQ(oe_approval_check_signature(k, &a, &ed, detail, sizeof detail), 0);
    oe_approval_keys_free(k);
    const struct {
        const char *list, *reason;
        int rc;
    } bad[] = {
        {"a,b,c,d,e,f,g,h,topsecret", "holds 9 secrets; at most 8", OE_ELIMIT},
        {"topsecret,,other", "secret 2 of 3 is empty", OE_EINVAL},
        {",topsecret", "secret 1 of 2 is empty", OE_EINVAL},
        {"topsecret,", "secret 2 of 2 is empty", OE_EINVAL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        k = NULL;
        ASSERT_EQ(oe_approval_keys_new(bad[i].list, NULL, &k, err, sizeof err), bad[i].rc);
        ASSERT_TRUE(k == NULL);
        ASSERT_CONTAINS(err, bad[i].reason);
        ASSERT_CONTAINS(err, "CLAWSHIELD_SECRET_KEY");
        ASSERT_TRUE(strstr(err, "topsecret") == NULL);
    }
}

/* The time rules of each scheme (docs/protocol.md §4 step 7): Ed25519 is bounded by
 * expires_at alone (any TTL); HMAC keeps the 300 s age rule; both refuse
 * an issued_at more than 30 s ahead. */
static void test_time_rules_by_scheme(void)
{
    const double issued = 1795611600; /* 2026-11-25T13:00:00 */
    char detail[200];
    oe_artifact a = base;
    a.issued_at = "2026-11-25T13:00:00.123456";  /* utcnow().isoformat() */
    a.expires_at = "2026-11-25T14:00:00.123456"; /* a one-hour TTL */
    /* 50 minutes after issue: Ed25519 passes, HMAC (same times) does not. */
    ASSERT_EQ(oe_approval_check_time(&a, 1, issued + 3000, 300, 30, detail, sizeof detail), 0);
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued + 3000, 300, 30, detail, sizeof detail),
              OE_EINVAL);
    ASSERT_CONTAINS(detail, "expired");
    /* Past expires_at: Ed25519 refused. */
    ASSERT_EQ(oe_approval_check_time(&a, 1, issued + 3600.2, 300, 30, detail, sizeof detail),
              OE_EINVAL);
    ASSERT_CONTAINS(detail, "expired");
    /* issued_at 60 s in the future: both refused. */
    ASSERT_EQ(oe_approval_check_time(&a, 1, issued - 60, 300, 30, detail, sizeof detail),
              OE_EINVAL);
    ASSERT_CONTAINS(detail, "future");
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued - 60, 300, 30, detail, sizeof detail),
              OE_EINVAL);
    /* HMAC: 301 s old refused, 299 s accepted. */
    a.expires_at = NULL;
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued + 301, 300, 30, detail, sizeof detail),
              OE_EINVAL);
    ASSERT_CONTAINS(detail, "expired");
    ASSERT_EQ(oe_approval_check_time(&a, 0, issued + 299, 300, 30, detail, sizeof detail), 0);
}

int main(void)
{
    RUN_TEST(test_hmac);
    RUN_TEST(test_ed25519);
    RUN_TEST(test_time_parse);
    RUN_TEST(test_time_window);
    RUN_TEST(test_ed25519_key_set);
    RUN_TEST(test_hmac_secret_list);
    RUN_TEST(test_time_rules_by_scheme);
    return TEST_REPORT();
}
