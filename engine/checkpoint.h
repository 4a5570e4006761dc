/* Checkpoints of a transparency log as C2SP specifies them
 * (https://c2sp.org/tlog-checkpoint): the text a log signs, as a signed
 * note (note.h), to commit to the tree of its first SIZE leaves:
 *
 *     ORIGIN "\n"                 the log's name, non-empty
 *     SIZE "\n"                   decimal, no leading zero (the empty tree: "0")
 *     base64(ROOT) "\n"           the RFC 6962 root of that tree (merkle.h)
 *     [EXTENSION "\n"]...         optional lines, each non-empty
 *
 * Nothing here keeps state or allocates but through the caller's buffer.
 */
#ifndef OE_CHECKPOINT_H
#define OE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "status.h"

/* Appends the checkpoint text of the tree of size leaves with root root to
 * out. origin must be non-empty, valid UTF-8 and without control
 * characters (a note holds none; the spec recommends a schema-less URL
 * such as "example.com/log"). Returns OE_OK, OE_EINVAL (status.h) for a
 * bad origin (nothing appended), or out's failure (buf.h). */
oe_rc oe_checkpoint_text(const char *origin, uint64_t size, const unsigned char root[32],
                         oe_buf *out);

/* Parses the checkpoint text text[0..len) (the signed text of a note that
 * oe_note_verify accepted): the origin into origin (NUL-terminated, at
 * most origin_cap bytes with the NUL), the tree size into *size and the
 * root into root. Strict: every line ends in "\n"; the origin is non-empty
 * valid UTF-8 without control characters; the size is decimal digits
 * without a leading zero (but "0") that fit in 64 bits; the root is
 * canonical standard base64 with padding of exactly 32 bytes. Extension
 * lines after the third are accepted and ignored, but not empty ones.
 * Returns OE_OK, or with a reason naming the line OE_EINVAL (malformed) or
 * OE_ELIMIT (the origin does not fit in origin_cap) (status.h). The
 * outputs are written only on OE_OK. */
oe_rc oe_checkpoint_parse(const char *text, size_t len, char *origin, size_t origin_cap,
                          uint64_t *size, unsigned char root[32], char *err, size_t errlen);

#endif
