/* Ed25519 public keys in PEM, key ids and verification (ed25519.h). */
#include "ed25519.h"

#include <ctype.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"

static int only_blanks(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)s[i]))
            return 0;
    return 1;
}

/* The raw key of one PEM block, or a reason (into err) why the block holds
 * no Ed25519 public key. label is the block's PEM name, shown in the
 * reason: it is the text of a BEGIN line, never key material. */
static oe_rc block_key(const char *where, size_t block, const char *label,
                       const unsigned char *data, long len, unsigned char out[32], char *err,
                       size_t errlen)
{
    if (strcmp(label, "PUBLIC KEY") != 0) {
        snprintf(err, errlen,
                 "%s: PEM block %zu is not an Ed25519 public key (it is a \"%.40s\" block; "
                 "expected \"PUBLIC KEY\")",
                 where, block, label);
        return OE_EINVAL;
    }
    const unsigned char *p = data;
    EVP_PKEY *key = d2i_PUBKEY(NULL, &p, len);
    if (!key || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519 || p != data + len) {
        const char *type = key ? EVP_PKEY_get0_type_name(key) : NULL;
        if (key && type && p == data + len)
            snprintf(err, errlen, "%s: PEM block %zu is not an Ed25519 public key (it is %.40s)",
                     where, block, type);
        else
            snprintf(err, errlen, "%s: PEM block %zu is not an Ed25519 public key", where, block);
        EVP_PKEY_free(key);
        return OE_EINVAL;
    }
    size_t n = 32;
    int ok = EVP_PKEY_get_raw_public_key(key, out, &n) == 1 && n == 32;
    EVP_PKEY_free(key);
    if (!ok) {
        snprintf(err, errlen, "%s: PEM block %zu: cannot read its raw key", where, block);
        return OE_EINVAL;
    }
    return OE_OK;
}

oe_rc oe_ed25519_public_keys_from_pem(const char *where, const char *pem, size_t len, size_t max,
                                      unsigned char (**keys)[32], size_t *n, char *err,
                                      size_t errlen)
{
    *keys = NULL;
    *n = 0;
    if (len > INT_MAX) {
        snprintf(err, errlen, "%s: %zu bytes of PEM text; at most %d are read", where, len,
                 INT_MAX);
        return OE_ELIMIT;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    unsigned char(*list)[32] = NULL;
    size_t count = 0, cap = 0, block = 0;
    /* Every way out of the loop but the end of the blocks is a key (or
     * text) that cannot be taken: the configuration is wrong. */
    oe_rc rc = OE_EINVAL;
    for (;;) {
        char *label = NULL, *header = NULL;
        unsigned char *data = NULL;
        long dlen = 0;
        ERR_clear_error();
        if (PEM_read_bio(bio, &label, &header, &data, &dlen) != 1) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                rc = OE_OK; /* no further block */
                if (block == 0 && !only_blanks(pem, len)) {
                    snprintf(err, errlen, "%s holds no PEM block", where);
                    rc = OE_EINVAL;
                }
            } else {
                snprintf(err, errlen,
                         "%s: PEM block %zu cannot be read (broken PEM; expected an Ed25519 "
                         "public key)",
                         where, block + 1);
            }
            break;
        }
        block++;
        unsigned char raw[32];
        oe_rc brc = OE_OK;
        if (max && block > max) {
            snprintf(err, errlen, "%s holds more than %zu PEM blocks; at most %zu keys", where, max,
                     max);
            brc = OE_ELIMIT;
        } else {
            brc = block_key(where, block, label, data, dlen, raw, err, errlen);
        }
        OPENSSL_free(label);
        OPENSSL_free(header);
        OPENSSL_clear_free(data, (size_t)dlen); /* a private key pasted here by mistake */
        if (brc != OE_OK) {
            rc = brc;
            break;
        }
        size_t dup = 0;
        while (dup < count && memcmp(list[dup], raw, 32) != 0)
            dup++;
        if (dup < count) {
            snprintf(err, errlen, "%s: PEM block %zu repeats the key of block %zu", where, block,
                     dup + 1);
            break;
        }
        if (count == cap) {
            size_t ncap = cap ? 2 * cap : 4;
            void *grown = realloc(list, ncap * sizeof *list);
            if (!grown) {
                snprintf(err, errlen, "out of memory");
                rc = OE_ENOMEM;
                break;
            }
            list = grown;
            cap = ncap;
        }
        memcpy(list[count++], raw, 32);
    }
    ERR_clear_error();
    BIO_free(bio);
    if (rc != OE_OK || count == 0) {
        free(list);
        return rc;
    }
    *keys = list;
    *n = count;
    return OE_OK;
}

void oe_ed25519_key_id(const unsigned char pub[32], char hex[65])
{
    oe_sha256_hex(pub, 32, hex);
}

oe_rc oe_ed25519_verify(const unsigned char pub[32], const void *msg, size_t len,
                        const unsigned char sig[64])
{
    /* Making the key only copies 32 bytes, so its failure is memory. */
    EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
    EVP_MD_CTX *ctx = key ? EVP_MD_CTX_new() : NULL;
    oe_rc rc;
    if (!ctx || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) != 1)
        rc = OE_ENOMEM;
    else
        rc = EVP_DigestVerify(ctx, sig, 64, msg, len) == 1 ? OE_OK : OE_EINVAL;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}
