/* The signing key of a receipt log: an Ed25519 private key (RFC 8032),
 * kept in a file as unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----")
 * that only its owner may read or write.
 *
 * Lifecycle: oe_signer_load_file, oe_signer_generate_file or
 * oe_signer_from_seed makes a signer; oe_signer_free releases it. The
 * signer is never changed after it is made, so every other function may be
 * called from any number of threads at once: each signature is made with
 * its own OpenSSL context over the shared, read-only key (openssl-threads(7):
 * two threads may sign with one EVP_PKEY through two contexts).
 */
#ifndef OE_SIGNER_H
#define OE_SIGNER_H

#include <stddef.h>

#include "buf.h"
#include "status.h"

typedef struct oe_signer oe_signer;

/* Largest key file read: a PEM Ed25519 key is 119 bytes, so anything
 * larger than this is not one. */
#define OE_SIGNER_FILE_MAX ((size_t)64 << 10)

/* Reads the private key in the file at path: its first PEM block must be an
 * unencrypted PKCS#8 Ed25519 private key ("PRIVATE KEY"). The file must be
 * a regular file that neither group nor others may read, write or execute
 * (mode & 077 == 0), of at most OE_SIGNER_FILE_MAX bytes. On OE_OK *out is
 * a new signer for the caller to free with oe_signer_free; else *out is
 * NULL. Returns OE_OK, or with a reason that names path in err: OE_EIO
 * (the file cannot be opened or read: missing, no permission),
 * OE_EINVAL (open to others, not a regular file, not an Ed25519 private
 * key), OE_ELIMIT (larger than OE_SIGNER_FILE_MAX) or OE_ENOMEM
 * (status.h). Copies of the key read from the file are wiped before their
 * memory is released. */
oe_rc oe_signer_load_file(const char *path, oe_signer **out, char *err, size_t errlen);

/* Makes a new key with the system's randomness and writes it to a new file
 * at path, created with mode 0600 (O_CREAT | O_EXCL: an existing file, even
 * an empty one, is an error and is left alone), then fsyncs the file and
 * its directory and reads the key back with oe_signer_load_file. On any
 * failure after the file was created, the file is removed again. Returns
 * as oe_signer_load_file, OE_EIO also when path exists or cannot be
 * created, written or synced. */
oe_rc oe_signer_generate_file(const char *path, oe_signer **out, char *err, size_t errlen);

/* A signer for the key whose RFC 8032 private key (the 32-byte seed) is
 * seed: for keys kept elsewhere as a raw seed (the Go note library's
 * "PRIVATE+KEY+NAME+HASH+base64(0x01 || seed)" strings) and for tests with
 * fixed keys. The seed is not kept beyond the OpenSSL key; the caller
 * wipes its own copy. Returns OE_OK with *out to be freed with
 * oe_signer_free, or OE_ENOMEM (status.h) with a reason. */
oe_rc oe_signer_from_seed(const unsigned char seed[32], oe_signer **out, char *err, size_t errlen);

/* The raw 32-byte public key into pub. */
void oe_signer_public(const oe_signer *s, unsigned char pub[32]);

/* The key id into hex (65 bytes with the NUL): lowercase hex SHA-256 of the
 * raw public key, the id that approval keys print (approval.h). */
void oe_signer_key_id(const oe_signer *s, char hex[65]);

/* Appends the public key as PEM SubjectPublicKeyInfo ("-----BEGIN PUBLIC
 * KEY-----", lines ending in "\n") to out. Returns OE_OK, or out's failure
 * (OE_ENOMEM, OE_ELIMIT) by the buffer's policy (buf.h). */
oe_rc oe_signer_public_pem(const oe_signer *s, oe_buf *out);

/* The Ed25519 signature of msg[0..len) into sig (deterministic: one
 * signature per key and message). msg may be NULL when len is 0. Returns
 * OE_OK, or OE_ENOMEM (status.h) when OpenSSL fails, which with a valid key
 * only lack of memory makes it do. */
oe_rc oe_signer_sign(const oe_signer *s, const void *msg, size_t len, unsigned char sig[64]);

/* Releases the signer and the key in it (OpenSSL wipes the private key).
 * s may be NULL. */
void oe_signer_free(oe_signer *s);

#endif
