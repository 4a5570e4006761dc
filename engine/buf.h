/* Capped growable byte buffer.
 *
 * Every buffer has a hard limit (max); growing past it fails instead of
 * allocating without bound. The data is always NUL-terminated so that it can
 * be handed to C string functions, but it may contain NUL bytes itself.
 *
 * Error policy (the same everywhere in the project): a failed append (limit
 * or memory) marks the buffer failed, and every later append is refused, so
 * the text can never come out truncated in the middle. Callers that build a
 * document from many appends may ignore the individual results and check
 * oe_buf_failed once before using the text, like ferror() after stdio
 * writes; callers that can recover from one failed append check its result.
 * The buffer belongs to whoever declared it; oe_buf_free releases it.
 */
#ifndef OE_BUF_H
#define OE_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct oe_buf {
    char *data; /* owned; NULL until the first append */
    size_t len; /* bytes in use, not counting the terminating NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* hard limit on len; 0 means the default (16 MiB) */
    int failed; /* an append failed: OE_ENOMEM or OE_ELIMIT, else 0 */
} oe_buf;

/* Initialises an empty buffer with the given limit (0 = default). */
void oe_buf_init(oe_buf *b, size_t max);

/* Releases the buffer's memory and empties it; the limit is kept. */
void oe_buf_free(oe_buf *b);

/* Empties the buffer (and forgets an earlier failure) but keeps its memory
 * for reuse. */
void oe_buf_reset(oe_buf *b);

/* The same without writing into the memory: for a buffer that is read by
 * length only (its bytes past len are stale, not a "" string until the next
 * append), whose memory another CPU wrote last (a write there would cost a
 * cache miss). */
void oe_buf_empty(oe_buf *b);

/* Frees the memory of a buffer whose capacity is over keep bytes (it is
 * then empty); leaves a smaller one as it is. For a buffer reused for one
 * item after another, before oe_buf_reset or oe_buf_empty: one large item
 * does not hold its memory until the buffer is freed. */
void oe_buf_shed(oe_buf *b, size_t keep);

/* Appends n bytes. Returns OE_OK, OE_ELIMIT when the limit would be passed,
 * OE_ENOMEM when memory runs out, or the code of an earlier failed append
 * (status.h); on failure the buffer's text is left as it was and the buffer
 * is marked failed. */
int oe_buf_append(oe_buf *b, const void *p, size_t n);

/* Makes room for n more bytes (plus the NUL) for a writer that fills
 * data[len..] itself and then moves len on. Returns OE_OK, OE_ELIMIT or
 * OE_ENOMEM; unlike an append, a failure leaves the buffer as it was (not
 * marked failed), so that the writer may try a smaller way. */
int oe_buf_room(oe_buf *b, size_t n);

/* Appends a NUL-terminated string. Same result as oe_buf_append. */
int oe_buf_puts(oe_buf *b, const char *s);

/* Appends one byte. */
int oe_buf_putc(oe_buf *b, char c);

/* Appends v in decimal (what "%llu" prints, without printf's cost on
 * paths that print a number per entry). Same result as oe_buf_append. */
int oe_buf_put_u64(oe_buf *b, uint64_t v);
/* The decimal digits of v into out, NUL-terminated; returns how many. */
size_t oe_u64_text(uint64_t v, char out[21]);

/* Appends printf-style formatted text. */
int oe_buf_printf(oe_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 0 while every append succeeded; else why the first one failed (OE_ENOMEM
 * or OE_ELIMIT, status.h). */
int oe_buf_failed(const oe_buf *b);

/* Hands the data over to the caller (who must free() it) and empties the
 * buffer. Returns an empty allocated string for an empty buffer, NULL when
 * memory runs out or an append had failed (the text is then freed). */
char *oe_buf_detach(oe_buf *b);

#endif
