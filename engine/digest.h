/* Hashes and encodings used for request hashes, receipts and signatures. */
#ifndef OE_DIGEST_H
#define OE_DIGEST_H

#include <stddef.h>

/* SHA-256 of data[0..len) into md (32 bytes). */
void oe_sha256(const void *data, size_t len, unsigned char md[32]);

/* SHA-256 of the concatenation of n parts into md (32 bytes). */
void oe_sha256_parts(const void *const *parts, const size_t *lens, size_t n, unsigned char md[32]);

/* Lowercase hex SHA-256 of data[0..len) into out (65 bytes with NUL). */
void oe_sha256_hex(const void *data, size_t len, char out[65]);

/* Lowercase hex HMAC-SHA256 of msg under key into out (65 bytes). */
void oe_hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t msglen,
                        char out[65]);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void oe_hex_encode(const unsigned char *in, size_t n, char *out);

/* Standard base64 (with padding) of in[0..n) into out; returns the length
 * written, or OE_ELIMIT (status.h) when outlen is too small (needs
 * 4*ceil(n/3)+1). */
int oe_base64_encode(const unsigned char *in, size_t n, char *out, size_t outlen);

/* Decodes standard base64 (padding required, no whitespace). Returns the
 * decoded length, or OE_EINVAL (status.h) for invalid input or OE_ELIMIT
 * for a too small buffer. */
int oe_base64_decode(const char *in, size_t n, unsigned char *out, size_t outlen);

#endif
