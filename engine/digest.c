/* SHA-256, HMAC and hex helpers over OpenSSL (digest.h). No state; the
 * caller owns every buffer. */
#include "digest.h"

#include <openssl/sha.h>
#include <string.h>

#include "status.h"

void oe_hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* SHA-256 is on every request's path several times (request hash,
 * execution id, receipt hash, ledger keys). OpenSSL 3's one-shot SHA256()
 * and EVP_Digest* look the algorithm up in the provider store on each call
 * (a read lock and allocations); the direct SHA256_* functions, deprecated
 * in favour of EVP but computing the same digest, take neither. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
void oe_sha256_parts(const void *const *parts, const size_t *lens, size_t n, unsigned char md[32])
{
    SHA256_CTX c;
    SHA256_Init(&c);
    for (size_t i = 0; i < n; i++)
        SHA256_Update(&c, parts[i], lens[i]);
    SHA256_Final(md, &c);
}
#pragma GCC diagnostic pop

void oe_sha256(const void *data, size_t len, unsigned char md[32])
{
    oe_sha256_parts(&data, &len, 1, md);
}

void oe_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    oe_sha256(data, len, md);
    oe_hex_encode(md, sizeof md, out);
}

/* HMAC (RFC 2104) over the SHA-256 above, for the same reason: OpenSSL's
 * HMAC() fetches the digest on each call. Checked against Python's hmac by
 * the test suite. */
void oe_hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t msglen,
                        char out[65])
{
    unsigned char k[64] = {0}, pad[64], inner[32], md[32];
    if (keylen > sizeof k)
        oe_sha256(key, keylen, k);
    else if (keylen)
        memcpy(k, key, keylen);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x36;
    const void *in_parts[] = {pad, msg};
    size_t in_lens[] = {sizeof pad, msglen};
    oe_sha256_parts(in_parts, in_lens, 2, inner);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x5c;
    const void *out_parts[] = {pad, inner};
    size_t out_lens[] = {sizeof pad, sizeof inner};
    oe_sha256_parts(out_parts, out_lens, 2, md);
    oe_hex_encode(md, sizeof md, out);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int oe_base64_encode(const unsigned char *in, size_t n, char *out, size_t outlen)
{
    size_t need = 4 * ((n + 2) / 3) + 1;
    if (outlen < need)
        return OE_ELIMIT;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    return (int)o;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1; /* not a base64 digit (a value, not an oe_rc) */
}

int oe_base64_decode(const char *in, size_t n, unsigned char *out, size_t outlen)
{
    if (n % 4 != 0)
        return OE_EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = in[i + k];
            if (c == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad)
                    return OE_EINVAL; /* data after padding */
                v[k] = b64_value(c);
                if (v[k] < 0)
                    return OE_EINVAL;
            }
        }
        unsigned w =
            (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        size_t bytes = 3 - (size_t)pad;
        if (o + bytes > outlen)
            return OE_ELIMIT;
        out[o++] = (unsigned char)(w >> 16);
        if (bytes > 1)
            out[o++] = (unsigned char)(w >> 8);
        if (bytes > 2)
            out[o++] = (unsigned char)w;
    }
    return (int)o;
}
