/* Approval artifacts (approval.h): HMAC-SHA256 and Ed25519 signature
 * checks (constant-time compares), ISO 8601 times and the age window. The
 * keys (oe_approval_keys) are created once at start-up, read-only after,
 * shared by every thread, and freed by their creator. */
#include "approval.h"

#include "status.h"

#include <ctype.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "digest.h"
#include "ed25519.h"

struct oe_approval_keys {
    char *secrets[OE_APPROVAL_KEYS_MAX]; /* HMAC secrets, in configured order */
    size_t nsecrets;
    EVP_PKEY *ed[OE_APPROVAL_KEYS_MAX]; /* Ed25519 public keys, in configured order */
    char ed_id[OE_APPROVAL_KEYS_MAX][65];
    size_t ned;
};

/* Splits the comma-separated secrets. Empty entries and more than
 * OE_APPROVAL_KEYS_MAX are refused; bytes are kept as given (no blanks are
 * removed: a secret is compared byte for byte). */
static int secrets_parse(oe_approval_keys *k, const char *list, char *err, size_t errlen)
{
    size_t total = 1;
    for (const char *p = list; *p; p++)
        total += *p == ',';
    if (total > OE_APPROVAL_KEYS_MAX) {
        snprintf(err, errlen,
                 "CLAWSHIELD_SECRET_KEY holds %zu secrets; at most %d are accepted (separated "
                 "by \",\")",
                 total, OE_APPROVAL_KEYS_MAX);
        return OE_ELIMIT;
    }
    const char *p = list;
    for (size_t i = 0; i < total; i++) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 0) {
            snprintf(err, errlen, "CLAWSHIELD_SECRET_KEY: secret %zu of %zu is empty", i + 1,
                     total);
            return OE_EINVAL;
        }
        if (!(k->secrets[i] = strndup(p, n))) {
            snprintf(err, errlen, "out of memory");
            return OE_ENOMEM;
        }
        k->nsecrets++;
        p = comma ? comma + 1 : p + n;
    }
    return OE_OK;
}

#define PEM_WHERE "CLAWSHIELD_PUBLIC_KEY(_FILE)"

/* Reads the Ed25519 public keys of the PEM text (ed25519.h: at most
 * OE_APPROVAL_KEYS_MAX blocks, each an Ed25519 public key, none twice) and
 * makes an OpenSSL key of each, once, for the checks of every request. */
static int public_keys_parse(oe_approval_keys *k, const char *pem, char *err, size_t errlen)
{
    unsigned char(*raw)[32];
    size_t n;
    oe_rc rc = oe_ed25519_public_keys_from_pem(PEM_WHERE, pem, strlen(pem), OE_APPROVAL_KEYS_MAX,
                                               &raw, &n, err, errlen);
    for (size_t i = 0; rc == OE_OK && i < n; i++) {
        k->ed[i] = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw[i], 32);
        if (!k->ed[i]) {
            snprintf(err, errlen, "out of memory");
            rc = OE_ENOMEM;
            break;
        }
        oe_ed25519_key_id(raw[i], k->ed_id[i]);
        k->ned++;
    }
    free(raw);
    return rc;
}

int oe_approval_keys_new(const char *secret, const char *public_pem, oe_approval_keys **out,
                         char *err, size_t errlen)
{
    oe_approval_keys *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    int rc = OE_OK;
    if (secret && *secret)
        rc = secrets_parse(k, secret, err, errlen);
    if (rc == OE_OK && public_pem)
        rc = public_keys_parse(k, public_pem, err, errlen);
    if (rc != OE_OK) {
        oe_approval_keys_free(k);
        return rc;
    }
    *out = k;
    return OE_OK;
}

void oe_approval_keys_free(oe_approval_keys *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->nsecrets; i++) {
        OPENSSL_cleanse(k->secrets[i], strlen(k->secrets[i]));
        free(k->secrets[i]);
    }
    for (size_t i = 0; i < k->ned; i++)
        EVP_PKEY_free(k->ed[i]);
    free(k);
}

int oe_approval_keys_present(const oe_approval_keys *k)
{
    return k && (k->nsecrets || k->ned);
}

size_t oe_approval_keys_ed25519_count(const oe_approval_keys *k)
{
    return k ? k->ned : 0;
}

const char *oe_approval_keys_ed25519_id(const oe_approval_keys *k, size_t i)
{
    return k && i < k->ned ? k->ed_id[i] : NULL;
}

size_t oe_approval_keys_hmac_count(const oe_approval_keys *k)
{
    return k ? k->nsecrets : 0;
}

size_t oe_approval_keys_hmac_length(const oe_approval_keys *k, size_t i)
{
    return k && i < k->nsecrets ? strlen(k->secrets[i]) : 0;
}

/* The HMAC message of the seed: approval_id:action_hash:tenant_id:issued_at,
 * then ":" + action_code_hash when the artifact approves one version of a
 * Lua action's code (docs/protocol.md §4). */
static int hmac_message(const oe_artifact *a, oe_buf *m)
{
    return oe_buf_printf(m, "%s:%s:%s:%s%s%s", a->approval_id, a->action_hash, a->tenant_id,
                         a->issued_at, a->action_code_hash ? ":" : "",
                         a->action_code_hash ? a->action_code_hash : "");
}

void oe_approval_sign_hmac(const char *secret, const oe_artifact *a, char out[65])
{
    oe_buf m;
    oe_buf_init(&m, 0);
    if (hmac_message(a, &m) == 0)
        oe_hmac_sha256_hex(secret, strlen(secret), m.data, m.len, out);
    else
        out[0] = '\0';
    oe_buf_free(&m);
}

int oe_approval_keys_sign_hmac(const oe_approval_keys *k, const oe_artifact *a, char out[65])
{
    if (!k || k->nsecrets == 0)
        return OE_EINVAL;
    oe_approval_sign_hmac(k->secrets[0], a, out);
    return OE_OK;
}

/* The Ed25519 message: approval_id + tenant_id + action_hash + issued_at +
 * expires_at, concatenated without separators, then action_code_hash when
 * present. */
static int ed25519_message(const oe_artifact *a, oe_buf *m)
{
    return oe_buf_printf(m, "%s%s%s%s%s%s", a->approval_id, a->tenant_id, a->action_hash,
                         a->issued_at, a->expires_at ? a->expires_at : "",
                         a->action_code_hash ? a->action_code_hash : "");
}

static int is_hex64(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isxdigit((unsigned char)s[n]))
            return 0;
    return n == 64;
}

/* HMAC-SHA256: every secret is tried, each compare in constant time, and
 * the loop does not stop at a match, so the time taken does not tell which
 * secret (or whether any) matched. */
static int check_hmac(const oe_approval_keys *k, const oe_artifact *a, oe_buf *m, char *detail,
                      size_t detlen)
{
    /* Fields are at most a few KiB (request.h): failing is memory. */
    if (hmac_message(a, m) != 0) {
        snprintf(detail, detlen, "out of memory while checking a signature");
        return OE_ENOMEM;
    }
    /* Compare case-insensitively but in constant time: lower-case a copy. */
    char got[65] = {0};
    size_t n = strlen(a->signature);
    if (n == 64)
        for (size_t i = 0; i < 64; i++)
            got[i] = (char)tolower((unsigned char)a->signature[i]);
    int match = 0;
    for (size_t i = 0; i < k->nsecrets; i++) {
        char expect[65];
        oe_hmac_sha256_hex(k->secrets[i], strlen(k->secrets[i]), m->data, m->len, expect);
        match |= CRYPTO_memcmp(got, expect, 64) == 0;
        OPENSSL_cleanse(expect, sizeof expect);
    }
    if (n == 64 && match)
        return 0;
    snprintf(detail, detlen, "Invalid signature: HMAC-SHA256 does not match");
    return 1;
}

/* 1 when the signature verifies with key, 0 when not, OE_ENOMEM when
 * OpenSSL could not even start. */
static int ed25519_verify(EVP_PKEY *key, const unsigned char sig[64], const oe_buf *m)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc;
    if (!ctx || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) != 1)
        rc = OE_ENOMEM;
    else
        rc = EVP_DigestVerify(ctx, sig, 64, (const unsigned char *)m->data, m->len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

/* Ed25519: the key named by key_id, or each configured key in turn. */
static int check_ed25519(const oe_approval_keys *k, const oe_artifact *a, oe_buf *m, char *detail,
                         size_t detlen)
{
    /* A missing expires_at is signed as "" here and refused by the time
     * check (step 7 of docs/protocol.md §4), which requires it for Ed25519. */
    size_t first = 0, end = k->ned;
    if (a->key_id) {
        while (first < k->ned && strcasecmp(k->ed_id[first], a->key_id) != 0)
            first++;
        if (first == k->ned) {
            snprintf(detail, detlen,
                     "Invalid signature: key_id is unknown (no configured Ed25519 key has it)");
            return 1;
        }
        end = first + 1;
    }
    unsigned char sig[96];
    size_t siglen = strlen(a->signature);
    int n = siglen <= 128 ? oe_base64_decode(a->signature, siglen, sig, sizeof sig) : OE_EINVAL;
    if (n != 64) {
        snprintf(detail, detlen, "Invalid signature: not a base64 Ed25519 signature");
        return 1;
    }
    if (ed25519_message(a, m) != 0) {
        snprintf(detail, detlen, "out of memory while checking a signature");
        return OE_ENOMEM;
    }
    for (size_t i = first; i < end; i++) {
        int v = ed25519_verify(k->ed[i], sig, m);
        if (v == OE_ENOMEM) {
            snprintf(detail, detlen, "out of memory while checking a signature");
            return OE_ENOMEM;
        }
        if (v == 1)
            return 0;
    }
    snprintf(detail, detlen, "Invalid signature: Ed25519 verification failed");
    return 1;
}

int oe_approval_check_signature(const oe_approval_keys *k, const oe_artifact *a, int *used_ed25519,
                                char *detail, size_t detlen)
{
    *used_ed25519 = 0;
    oe_buf m;
    oe_buf_init(&m, 0);
    int rc;
    if (k->nsecrets && (is_hex64(a->signature) || !k->ned)) {
        rc = check_hmac(k, a, &m, detail, detlen);
    } else if (k->ned) {
        *used_ed25519 = 1;
        rc = check_ed25519(k, a, &m, detail, detlen);
    } else {
        snprintf(detail, detlen, "Invalid signature: no verification key configured");
        rc = 1;
    }
    oe_buf_free(&m);
    return rc;
}

int oe_approval_sign_ed25519(const char *private_pem, const oe_artifact *a, char *out,
                             size_t outlen, char *err, size_t errlen)
{
    int rc;
    oe_buf m;
    oe_buf_init(&m, 0);
    EVP_MD_CTX *ctx = NULL;
    BIO *bio = BIO_new_mem_buf(private_pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    if (!bio) {
        snprintf(err, errlen, "not an Ed25519 private key in PEM form");
        rc = OE_ENOMEM;
        goto done;
    }
    if (!key || EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
        snprintf(err, errlen, "not an Ed25519 private key in PEM form");
        rc = OE_EINVAL;
        goto done;
    }
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    ctx = EVP_MD_CTX_new();
    rc = ed25519_message(a, &m);
    if (rc == OE_OK && !ctx)
        rc = OE_ENOMEM;
    /* As in ed25519_verify: OpenSSL failing with a valid Ed25519 key is
     * taken as lack of memory. */
    if (rc == OE_OK &&
        (EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
         EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)m.data, m.len) != 1))
        rc = OE_ENOMEM;
    if (rc != OE_OK) {
        snprintf(err, errlen, "Ed25519 signing failed");
        goto done;
    }
    rc = oe_base64_encode(sig, siglen, out, outlen);
    if (rc < 0) {
        snprintf(err, errlen, "signature buffer too small");
        goto done;
    }
    rc = OE_OK;
done:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    BIO_free(bio);
    oe_buf_free(&m);
    return rc;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil), so that no time zone or libc state is involved. */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

/* Reads exactly n digits. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return OE_EINVAL;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return OE_OK;
}

int oe_time_parse_iso8601(const char *s, double *epoch)
{
    const char *p = s;
    int y, mo, d, h, mi, sec;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
        return OE_EINVAL;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return OE_EINVAL;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
        digits(&p, 2, &sec))
        return OE_EINVAL;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59 || sec > 59)
        return OE_EINVAL;
    double frac = 0;
    if (*p == '.' || *p == ',') {
        p++;
        double scale = 0.1;
        if (!isdigit((unsigned char)*p))
            return OE_EINVAL;
        while (isdigit((unsigned char)*p)) {
            frac += (*p - '0') * scale;
            scale /= 10;
            p++;
        }
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (digits(&p, 2, &oh))
            return OE_EINVAL;
        if (*p == ':')
            p++;
        if (digits(&p, 2, &om) || oh > 23 || om > 59)
            return OE_EINVAL;
        offset = sign * (oh * 3600L + om * 60L);
    }
    if (*p != '\0')
        return OE_EINVAL;
    long long days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *epoch = (double)(days * 86400LL + h * 3600LL + mi * 60LL + sec - offset) + frac;
    return OE_OK;
}

void oe_time_format_iso8601(double epoch, char *out, size_t outlen)
{
    time_t t = (time_t)floor(epoch);
    long usec = (long)((epoch - (double)t) * 1e6);
    if (usec > 999999)
        usec = 999999;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld+00:00", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
}

int oe_approval_check_time(const oe_artifact *a, int ed25519, double now, double max_age,
                           double max_skew, char *detail, size_t detlen)
{
    double issued;
    if (oe_time_parse_iso8601(a->issued_at, &issued) != 0) {
        snprintf(detail, detlen, "Approval expired or invalid: issued_at is not an ISO 8601 time");
        return OE_EINVAL;
    }
    if (!ed25519 && now - issued > max_age) {
        snprintf(detail, detlen, "Approval expired: issued %.0f s ago (limit %.0f s)", now - issued,
                 max_age);
        return OE_EINVAL;
    }
    if (issued - now > max_skew) {
        snprintf(detail, detlen,
                 "Approval expired or not yet valid: issued_at is %.0f s in the future "
                 "(limit %.0f s)",
                 issued - now, max_skew);
        return OE_EINVAL;
    }
    if (a->expires_at) {
        double expires;
        if (oe_time_parse_iso8601(a->expires_at, &expires) != 0) {
            snprintf(detail, detlen,
                     "Approval expired or invalid: expires_at is not an ISO 8601 time");
            return OE_EINVAL;
        }
        if (now >= expires) {
            snprintf(detail, detlen, "Approval expired: expires_at has passed");
            return OE_EINVAL;
        }
    } else if (ed25519) {
        snprintf(detail, detlen,
                 "Approval expired or invalid: Ed25519 artifacts require expires_at");
        return OE_EINVAL;
    }
    return OE_OK;
}
