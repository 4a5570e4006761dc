/* Fuzzes the approval artifact checks (engine/approval.c): HMAC-SHA256 and
 * Ed25519 signature checks over arbitrary field texts, the ISO 8601 time
 * parser and the time window.
 *
 * The first input byte picks the keys the engine is configured with (HMAC
 * secret, Ed25519 public key, or both; fixed test keys below). The rest is
 * either a JSON request body whose approval_artifact is checked (the path
 * a real artifact takes), or the artifact's fields one per line:
 * approval_id, action_hash, signature, issued_by, issued_at, tenant_id and
 * an optional expires_at.
 *
 * Besides memory safety, it checks that every refusal names its reason
 * ("Invalid signature", "expired"), that an artifact signed here with the
 * test keys verifies whatever its fields hold (so no field text can break
 * the signed message), and that parsed times print and parse back to the
 * same instant.
 */
#include <math.h>
#include <string.h>

#include "engine/approval.h"
#include "engine/request.h"
#include "tests/fuzz/fuzz.h"

static const char hmac_secret[] = "fuzz-secret";
static const char ed_private[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIBbfS0H9IojZeAK1RckBHksZtpIutT81S9zjDyxVz6UF\n"
    "-----END PRIVATE KEY-----\n";
static const char ed_public[] = "-----BEGIN PUBLIC KEY-----\n"
                                "MCowBQYDK2VwAyEAhgrivlDq5DW8T5IzcJeK4RQX6C8Pd7oDm8OByKTKulM=\n"
                                "-----END PUBLIC KEY-----\n";

/* The wall clock of every check: 10 s after the unit tests' issued_at
 * 2026-11-25T13:00:00Z, so that their artifacts are inside the window. */
#define NOW 1795611610.0
#define MAX_AGE 300.0
#define MAX_SKEW 30.0

enum { KEYS_HMAC, KEYS_ED25519, KEYS_BOTH, KEYS_N };
static oe_approval_keys *keys[KEYS_N];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[200];
    if (oe_approval_keys_new(hmac_secret, NULL, &keys[KEYS_HMAC], err, sizeof err) != 0 ||
        oe_approval_keys_new(NULL, ed_public, &keys[KEYS_ED25519], err, sizeof err) != 0 ||
        oe_approval_keys_new(hmac_secret, ed_public, &keys[KEYS_BOTH], err, sizeof err) != 0) {
        fprintf(stderr, "test keys: %s\n", err);
        abort();
    }
    return 0;
}

/* Parses a time; when it parses, it must print (UTC, microseconds) and
 * parse back to the same instant, for years the printed form can hold. */
static void check_time_text(const char *s)
{
    if (!s)
        return;
    double t;
    if (oe_time_parse_iso8601(s, &t) != 0)
        return;
    FUZZ_CHECK(isfinite(t));
    /* 0001-01-01 up to 9998-12-31: a zone offset cannot push these out of
     * four-digit years. */
    if (t < -62135596800.0 + 86400 || t >= 253370764800.0)
        return;
    char out[64];
    oe_time_format_iso8601(t, out, sizeof out);
    double back;
    FUZZ_CHECK(oe_time_parse_iso8601(out, &back) == 0);
    FUZZ_CHECK(fabs(back - t) < 1e-3);
}

static void check_artifact(int mode, int sign_check, const oe_artifact *a)
{
    const oe_approval_keys *k = keys[mode];
    char detail[256];
    int ed = -1;
    detail[0] = '\0';
    int rc = oe_approval_check_signature(k, a, &ed, detail, sizeof detail);
    FUZZ_CHECK(rc == 0 || rc == 1);
    FUZZ_CHECK(ed == 0 || ed == 1);
    FUZZ_CHECK(mode != KEYS_HMAC || ed == 0);
    FUZZ_CHECK(mode != KEYS_ED25519 || ed == 1);
    if (rc != 0)
        FUZZ_CHECK(strstr(detail, "Invalid signature") != NULL);

    for (int scheme = 0; scheme <= 1; scheme++) {
        detail[0] = '\0';
        rc = oe_approval_check_time(a, scheme, NOW, MAX_AGE, MAX_SKEW, detail, sizeof detail);
        FUZZ_CHECK(rc == 0 || (rc == OE_EINVAL && strstr(detail, "expired") != NULL));
    }
    check_time_text(a->issued_at);
    check_time_text(a->expires_at);

    /* Signed here with the test keys, the same fields must verify. */
    oe_artifact s = *a;
    if (mode != KEYS_ED25519 && sign_check) {
        char sig[65];
        oe_approval_sign_hmac(hmac_secret, a, sig);
        FUZZ_CHECK(strlen(sig) == 64);
        s.signature = sig;
        FUZZ_CHECK(oe_approval_check_signature(k, &s, &ed, detail, sizeof detail) == 0);
        FUZZ_CHECK(ed == 0);
    }
    if (mode != KEYS_HMAC && sign_check) {
        char sig[128], err[200];
        FUZZ_CHECK(oe_approval_sign_ed25519(ed_private, a, sig, sizeof sig, err, sizeof err) == 0);
        s.signature = sig;
        FUZZ_CHECK(oe_approval_check_signature(k, &s, &ed, detail, sizeof detail) == 0);
        FUZZ_CHECK(ed == 1);
    }
}

/* The artifact of a JSON request body, when the body has a complete one. */
static void from_request(int mode, int sign_check, const char *body, size_t len)
{
    oe_request r;
    char err[300];
    if (fuzz_request_from_json(body, len, &r, err, sizeof err) == OE_ERR_NONE && r.has_artifact)
        check_artifact(mode, sign_check, &r.artifact);
    oe_request_clear(&r);
}

/* The artifact's fields, one per line; missing lines are empty fields
 * (expires_at absent). */
static void from_lines(int mode, int sign_check, char *text)
{
    const char *f[7] = {"", "", "", "", "", "", NULL};
    char *p = text;
    for (int i = 0; i < 7 && p; i++) {
        f[i] = p;
        char *nl = strchr(p, '\n');
        if (nl)
            *nl++ = '\0';
        p = nl;
    }
    oe_artifact a = {.approval_id = f[0],
                     .action_hash = f[1],
                     .signature = f[2],
                     .issued_by = f[3],
                     .issued_at = f[4],
                     .tenant_id = f[5],
                     .expires_at = f[6]};
    check_artifact(mode, sign_check, &a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % KEYS_N;
    /* Signing and verifying cost far more than the parsers (OpenSSL 3
     * fetches the algorithm on every one-shot call; Ed25519 takes about
     * 100 us): the sign-and-verify property runs for one first byte in
     * eight, which leaves the fuzzer its speed on the parsers. */
    int sign_check = (data[0] / KEYS_N) % 8 == 0;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (size > 1 && text[0] == '{')
        from_request(mode, sign_check, text, size - 1);
    else
        from_lines(mode, sign_check, text);
    free(text);
    return 0;
}
