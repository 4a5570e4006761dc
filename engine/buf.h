/* Capped growable byte buffer.
 *
 * Every buffer has a hard limit (max); growing past it fails instead of
 * allocating without bound. The data is always NUL-terminated so that it can
 * be handed to C string functions, but it may contain NUL bytes itself.
 */
#ifndef OE_BUF_H
#define OE_BUF_H

#include <stddef.h>

typedef struct oe_buf {
    char *data;  /* owned; NULL until the first append */
    size_t len;  /* bytes in use, not counting the terminating NUL */
    size_t cap;  /* bytes allocated */
    size_t max;  /* hard limit on len; 0 means the default (16 MiB) */
} oe_buf;

/* Initialises an empty buffer with the given limit (0 = default). */
void oe_buf_init(oe_buf *b, size_t max);

/* Releases the buffer's memory and empties it; the limit is kept. */
void oe_buf_free(oe_buf *b);

/* Empties the buffer but keeps its memory for reuse. */
void oe_buf_reset(oe_buf *b);

/* Appends n bytes. Returns 0, or -1 when the limit would be passed or memory
 * runs out; on failure the buffer is left as it was. */
int oe_buf_append(oe_buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string. Same result as oe_buf_append. */
int oe_buf_puts(oe_buf *b, const char *s);

/* Appends one byte. */
int oe_buf_putc(oe_buf *b, char c);

/* Appends printf-style formatted text. */
int oe_buf_printf(oe_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands the data over to the caller (who must free() it) and empties the
 * buffer. Returns an empty allocated string for an empty buffer, NULL only
 * when memory runs out. */
char *oe_buf_detach(oe_buf *b);

#endif
