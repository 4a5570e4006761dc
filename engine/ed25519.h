/* Ed25519 public keys as operators hand them to us: PEM blocks of
 * SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----"), read into raw
 * 32-byte keys (RFC 8032). The approval keys (approval.c) and the trusted
 * keys of signed notes (note.c) are both read here, so that the two accept
 * and refuse the same texts with the same reasons.
 *
 * Nothing here keeps state; every function may be called from any thread.
 */
#ifndef OE_ED25519_H
#define OE_ED25519_H

#include <stddef.h>

#include "status.h"

/* Reads every PEM block of pem[0..len): each must be an Ed25519 public key
 * ("PUBLIC KEY"), none twice, and there may be at most max of them (0: no
 * limit). Text outside the blocks is ignored, as OpenSSL does, but a text
 * that is not blank and holds no block at all is refused; a blank text
 * gives no key. On OE_OK, *keys is a malloc'ed array of the *n raw keys in
 * the order of their blocks (NULL when *n is 0), which the caller frees
 * with free(); on failure *keys is NULL and *n is 0. Reasons begin with
 * where ("CLAWSHIELD_PUBLIC_KEY", "trusted keys"), name the block by its
 * position from 1 and never show key material. Returns OE_OK, or OE_EINVAL
 * (a block that cannot be read or is no Ed25519 public key, a key twice,
 * text without a block), OE_ELIMIT (more than max blocks, or len past
 * INT_MAX) or OE_ENOMEM (status.h). */
oe_rc oe_ed25519_public_keys_from_pem(const char *where, const char *pem, size_t len, size_t max,
                                      unsigned char (**keys)[32], size_t *n, char *err,
                                      size_t errlen);

/* The key id that openexec prints and approval artifacts name: lowercase
 * hex SHA-256 of the raw 32-byte public key, into hex (65 bytes). */
void oe_ed25519_key_id(const unsigned char pub[32], char hex[65]);

/* Checks the Ed25519 signature sig of msg[0..len) under the raw public key
 * pub. Returns OE_OK when it verifies, OE_EINVAL when it does not (or pub
 * is not a valid point), or OE_ENOMEM when OpenSSL could not even start
 * (status.h). */
oe_rc oe_ed25519_verify(const unsigned char pub[32], const void *msg, size_t len,
                        const unsigned char sig[64]);

#endif
