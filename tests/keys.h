/* Test keys made with OpenSSL, shared by the unit tests that sign. */
#ifndef OE_TEST_KEYS_H
#define OE_TEST_KEYS_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <string.h>

/* Makes an Ed25519 key pair as PEM texts (caller frees both). */
static inline void test_make_ed25519(char **priv, char **pub)
{
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    EVP_PKEY_keygen_init(ctx);
    EVP_PKEY_keygen(ctx, &key);
    EVP_PKEY_CTX_free(ctx);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    *priv = strndup(data, (size_t)n);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, key);
    n = BIO_get_mem_data(b, &data);
    *pub = strndup(data, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(key);
}

#endif
