/* Signed notes as C2SP specifies them (https://c2sp.org/signed-note), the
 * format of golang.org/x/mod/sumdb/note: the envelope of a receipt log's
 * checkpoints (checkpoint.h).
 *
 * A note is a text, a blank line and one or more signature lines:
 *
 *     TEXT                  UTF-8, ending in "\n"; it may hold empty lines
 *     "\n"                  the last empty line of the note separates the two
 *     "— " NAME " " base64(KEYHASH || SIGNATURE) "\n"    (one per signature)
 *
 * The dash is U+2014 EM DASH. NAME is the key's name (non-empty, valid
 * UTF-8, no Unicode space, no '+', no control character). For Ed25519, the
 * only algorithm here (signature type 0x01), KEYHASH is the first four
 * bytes, big-endian, of SHA-256(NAME || "\n" || 0x01 || public key), and
 * SIGNATURE is the 64-byte Ed25519 signature of TEXT, final newline
 * included. The whole note is valid UTF-8 without control characters other
 * than "\n".
 *
 * Verifiers here trust raw public keys without names: a signature line is
 * by a trusted key when the key hash of its NAME and that key equals its
 * KEYHASH. Lines by other keys are ignored, as the spec requires.
 *
 * Nothing here keeps state; every function may be called from any thread.
 */
#ifndef OE_NOTE_H
#define OE_NOTE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "signer.h"
#include "status.h"

/* Largest note verified, and most signature lines in one (the spec asks
 * verifiers to bound both and to accept at least 16 signatures; Go's
 * library stops at 100). Notes that oe_note_sign makes stay within the
 * size. */
#define OE_NOTE_MAX ((size_t)1 << 20)
#define OE_NOTE_MAX_SIGNATURES 100

/* The signature type byte of Ed25519 in key hashes and verifier keys. */
#define OE_NOTE_ED25519 0x01

/* The key hash of an Ed25519 key named name: the first four bytes of
 * SHA-256(name || "\n" || 0x01 || pub), read big-endian. */
uint32_t oe_note_key_hash(const char *name, const unsigned char pub[32]);

/* Appends the verifier key that Go's note.NewVerifier reads,
 * name "+" 8 lowercase hex digits of the key hash "+" base64(0x01 || pub),
 * to out. Returns OE_OK, OE_EINVAL (status.h) when name is not a valid,
 * printable key name (as for oe_note_sign; nothing appended), or out's
 * failure (buf.h). */
oe_rc oe_note_vkey(const char *name, const unsigned char pub[32], oe_buf *out);

/* Appends to out the note of text[0..len) signed by signer under the key
 * name name: the text, "\n" and one signature line. The text must be
 * non-empty, end in "\n", be valid UTF-8 without control characters other
 * than "\n", and leave the note within OE_NOTE_MAX; name must be a valid
 * key name, printable too (no DEL, which a note read may hold in a
 * name). text must not point into out. Returns OE_OK, or with a reason
 * OE_EINVAL (bad name or text; nothing appended), OE_ENOMEM (signing) or
 * out's failure (OE_ENOMEM, OE_ELIMIT; buf.h). */
oe_rc oe_note_sign(const oe_signer *signer, const char *name, const char *text, size_t len,
                   oe_buf *out, char *err, size_t errlen);

/* Checks the signed note note[0..len) against the ntrusted raw Ed25519
 * public keys trusted[0..ntrusted). The note is parsed strictly: at most
 * OE_NOTE_MAX bytes, valid UTF-8, no control character but "\n", a blank
 * line before the signatures, at most OE_NOTE_MAX_SIGNATURES signature
 * lines, each "— NAME BASE64\n" with a valid name and base64 (with
 * padding) of at least 5 bytes. Each line whose NAME and KEYHASH match a
 * trusted key must verify (a repeated line of the same NAME and KEYHASH is
 * checked once, as Go does); lines by other keys are ignored. Returns
 * OE_OK when at least one line verifies with a trusted key, *text_len then
 * being the length of the signed text (note[0..*text_len), its final
 * newline included); else OE_EINVAL with a reason ("malformed signature
 * line N: ...", "signature line N by trusted key NAME+HASH does not
 * verify", "no signature by a trusted key", ...), or OE_ENOMEM when
 * OpenSSL could not check a signature (status.h): no verdict. */
oe_rc oe_note_verify(const char *note, size_t len, const unsigned char (*trusted)[32],
                     size_t ntrusted, size_t *text_len, char *err, size_t errlen);

/* Reads the trusted keys of notes from PEM text: one or more blocks, each
 * an Ed25519 public key ("PUBLIC KEY"), none twice (ed25519.h). On OE_OK
 * *keys is a malloc'ed array of the *n >= 1 raw keys for the caller to
 * free with free(). Returns OE_OK, or with a reason starting "trusted
 * keys" and naming the block by its position, OE_EINVAL (a block that is
 * no Ed25519 public key, a key twice, no block at all), OE_ELIMIT or
 * OE_ENOMEM (status.h). */
oe_rc oe_trusted_keys_parse(const char *pem_text, size_t len, unsigned char (**keys)[32], size_t *n,
                            char *err, size_t errlen);

#endif
