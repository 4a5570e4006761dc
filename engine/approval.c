/* Approval artifacts (approval.h): HMAC-SHA256 and Ed25519 signature
 * checks (constant-time compares), ISO 8601 times and the age window. The
 * keys (oe_approval_keys) are created once at start-up, read-only after,
 * shared by every thread, and freed by their creator. */
#include "approval.h"

#include "status.h"

#include <ctype.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "digest.h"

struct oe_approval_keys {
    char *secret;     /* HMAC secret, or NULL */
    EVP_PKEY *ed_pub; /* Ed25519 public key, or NULL */
};

int oe_approval_keys_new(const char *secret, const char *public_pem, oe_approval_keys **out,
                         char *err, size_t errlen)
{
    oe_approval_keys *k = calloc(1, sizeof *k);
    if (!k)
        goto oom;
    if (secret && *secret && !(k->secret = strdup(secret)))
        goto oom;
    if (public_pem && *public_pem) {
        BIO *bio = BIO_new_mem_buf(public_pem, -1);
        if (!bio)
            goto oom;
        k->ed_pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
        if (!k->ed_pub || EVP_PKEY_id(k->ed_pub) != EVP_PKEY_ED25519) {
            snprintf(err, errlen, "CLAWSHIELD_PUBLIC_KEY is not an Ed25519 public key in PEM form");
            oe_approval_keys_free(k);
            return -1;
        }
    }
    *out = k;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    oe_approval_keys_free(k);
    return -1;
}

void oe_approval_keys_free(oe_approval_keys *k)
{
    if (!k)
        return;
    if (k->secret) {
        OPENSSL_cleanse(k->secret, strlen(k->secret));
        free(k->secret);
    }
    EVP_PKEY_free(k->ed_pub);
    free(k);
}

int oe_approval_keys_present(const oe_approval_keys *k)
{
    return k && (k->secret || k->ed_pub);
}

/* The HMAC message of the seed: approval_id:action_hash:tenant_id:issued_at. */
static int hmac_message(const oe_artifact *a, oe_buf *m)
{
    return oe_buf_printf(m, "%s:%s:%s:%s", a->approval_id, a->action_hash, a->tenant_id,
                         a->issued_at);
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

/* The Ed25519 message: approval_id + tenant_id + action_hash + issued_at +
 * expires_at, concatenated without separators. */
static int ed25519_message(const oe_artifact *a, oe_buf *m)
{
    return oe_buf_printf(m, "%s%s%s%s%s", a->approval_id, a->tenant_id, a->action_hash,
                         a->issued_at, a->expires_at ? a->expires_at : "");
}

static int is_hex64(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isxdigit((unsigned char)s[n]))
            return 0;
    return n == 64;
}

int oe_approval_check_signature(const oe_approval_keys *k, const oe_artifact *a, int *used_ed25519,
                                char *detail, size_t detlen)
{
    *used_ed25519 = 0;
    oe_buf m;
    oe_buf_init(&m, 0);
    int rc = 1;
    if (k->secret && (is_hex64(a->signature) || !k->ed_pub)) {
        char expect[65];
        /* Fields are at most a few KiB (request.h): failing is memory. */
        if (hmac_message(a, &m) != 0) {
            snprintf(detail, detlen, "out of memory while checking a signature");
            rc = OE_ENOMEM;
            goto done;
        }
        oe_hmac_sha256_hex(k->secret, strlen(k->secret), m.data, m.len, expect);
        /* Compare case-insensitively but in constant time: lower-case a copy. */
        char got[65] = {0};
        size_t n = strlen(a->signature);
        if (n == 64)
            for (size_t i = 0; i < 64; i++)
                got[i] = (char)tolower((unsigned char)a->signature[i]);
        if (n == 64 && CRYPTO_memcmp(got, expect, 64) == 0)
            rc = 0;
        else
            snprintf(detail, detlen, "Invalid signature: HMAC-SHA256 does not match");
        goto done;
    }
    if (k->ed_pub) {
        /* A missing expires_at is signed as "" here and refused by the time
         * check (step 7 of SPEC §7), which requires it for Ed25519. */
        *used_ed25519 = 1;
        unsigned char sig[96];
        size_t siglen = strlen(a->signature);
        int n = siglen <= 128 ? oe_base64_decode(a->signature, siglen, sig, sizeof sig) : -1;
        if (n != 64) {
            snprintf(detail, detlen, "Invalid signature: not a base64 Ed25519 signature");
            goto done;
        }
        EVP_MD_CTX *ctx = NULL;
        if (ed25519_message(a, &m) != 0 || !(ctx = EVP_MD_CTX_new()) ||
            EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->ed_pub) != 1) {
            /* No verdict: OpenSSL could not even start (memory). */
            snprintf(detail, detlen, "out of memory while checking a signature");
            rc = OE_ENOMEM;
        } else if (EVP_DigestVerify(ctx, sig, 64, (const unsigned char *)m.data, m.len) == 1) {
            rc = 0;
        } else {
            snprintf(detail, detlen, "Invalid signature: Ed25519 verification failed");
        }
        EVP_MD_CTX_free(ctx);
        goto done;
    }
    snprintf(detail, detlen, "Invalid signature: no verification key configured");
done:
    oe_buf_free(&m);
    return rc;
}

int oe_approval_sign_ed25519(const char *private_pem, const oe_artifact *a, char *out,
                             size_t outlen, char *err, size_t errlen)
{
    int rc = -1;
    oe_buf m;
    oe_buf_init(&m, 0);
    EVP_MD_CTX *ctx = NULL;
    BIO *bio = BIO_new_mem_buf(private_pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    if (!key || EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
        snprintf(err, errlen, "not an Ed25519 private key in PEM form");
        goto done;
    }
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    ctx = EVP_MD_CTX_new();
    if (ed25519_message(a, &m) != 0 || !ctx ||
        EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)m.data, m.len) != 1) {
        snprintf(err, errlen, "Ed25519 signing failed");
        goto done;
    }
    if (oe_base64_encode(sig, siglen, out, outlen) < 0) {
        snprintf(err, errlen, "signature buffer too small");
        goto done;
    }
    rc = 0;
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
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int oe_time_parse_iso8601(const char *s, double *epoch)
{
    const char *p = s;
    int y, mo, d, h, mi, sec;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
        digits(&p, 2, &sec))
        return -1;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59 || sec > 59)
        return -1;
    double frac = 0;
    if (*p == '.' || *p == ',') {
        p++;
        double scale = 0.1;
        if (!isdigit((unsigned char)*p))
            return -1;
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
            return -1;
        if (*p == ':')
            p++;
        if (digits(&p, 2, &om) || oh > 23 || om > 59)
            return -1;
        offset = sign * (oh * 3600L + om * 60L);
    }
    if (*p != '\0')
        return -1;
    long long days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *epoch = (double)(days * 86400LL + h * 3600LL + mi * 60LL + sec - offset) + frac;
    return 0;
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
        return -1;
    }
    if (now - issued > max_age) {
        snprintf(detail, detlen, "Approval expired: issued %.0f s ago (limit %.0f s)", now - issued,
                 max_age);
        return -1;
    }
    if (issued - now > max_skew) {
        snprintf(detail, detlen,
                 "Approval expired or not yet valid: issued_at is %.0f s in the future "
                 "(limit %.0f s)",
                 issued - now, max_skew);
        return -1;
    }
    if (a->expires_at) {
        double expires;
        if (oe_time_parse_iso8601(a->expires_at, &expires) != 0) {
            snprintf(detail, detlen,
                     "Approval expired or invalid: expires_at is not an ISO 8601 time");
            return -1;
        }
        if (now >= expires) {
            snprintf(detail, detlen, "Approval expired: expires_at has passed");
            return -1;
        }
    } else if (ed25519) {
        snprintf(detail, detlen,
                 "Approval expired or invalid: Ed25519 artifacts require expires_at");
        return -1;
    }
    return 0;
}
