/* Capped growable buffer (buf.h). A buffer is owned by one thread at a time;
 * nothing here is shared. */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define OE_BUF_DEFAULT_MAX ((size_t)16 << 20)

void oe_buf_init(oe_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : OE_BUF_DEFAULT_MAX;
    b->failed = 0;
}

void oe_buf_free(oe_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = 0;
}

void oe_buf_reset(oe_buf *b)
{
    b->len = 0;
    b->failed = 0;
    if (b->data)
        b->data[0] = '\0';
}

void oe_buf_shed(oe_buf *b, size_t keep)
{
    if (b->cap > keep)
        oe_buf_free(b);
}

void oe_buf_empty(oe_buf *b)
{
    b->len = 0;
    b->failed = 0;
}

int oe_buf_failed(const oe_buf *b)
{
    return b->failed;
}

/* Makes room for n more bytes plus the NUL; a failure marks the buffer
 * failed when mark is set. */
static int grow(oe_buf *b, size_t n, int mark)
{
    if (b->failed)
        return b->failed;
    size_t max = b->max ? b->max : OE_BUF_DEFAULT_MAX;
    int rc = OE_OK;
    if (n > max || b->len > max - n) {
        rc = OE_ELIMIT;
    } else if (b->len + n + 1 > b->cap) {
        size_t need = b->len + n + 1, cap = b->cap ? b->cap : 64;
        while (cap < need)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p) {
            b->data = p;
            b->cap = cap;
        } else {
            rc = OE_ENOMEM;
        }
    }
    if (rc != OE_OK && mark)
        b->failed = rc;
    return rc;
}

static int oe_buf_reserve(oe_buf *b, size_t n)
{
    return grow(b, n, 1);
}

int oe_buf_room(oe_buf *b, size_t n)
{
    return grow(b, n, 0);
}

int oe_buf_append(oe_buf *b, const void *p, size_t n)
{
    int rc = oe_buf_reserve(b, n);
    if (rc != OE_OK)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return OE_OK;
}

int oe_buf_puts(oe_buf *b, const char *s)
{
    return oe_buf_append(b, s, strlen(s));
}

int oe_buf_putc(oe_buf *b, char c)
{
    return oe_buf_append(b, &c, 1);
}

size_t oe_u64_text(uint64_t v, char out[21])
{
    char text[20];
    size_t k = sizeof text;
    do {
        text[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(out, text + k, sizeof text - k);
    out[sizeof text - k] = '\0';
    return sizeof text - k;
}

int oe_buf_put_u64(oe_buf *b, uint64_t v)
{
    char text[21];
    return oe_buf_append(b, text, oe_u64_text(v, text));
}

int oe_buf_printf(oe_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (!b->failed)
            b->failed = OE_ELIMIT;
        return b->failed;
    }
    int rc = oe_buf_reserve(b, (size_t)n);
    if (rc != OE_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return OE_OK;
}

char *oe_buf_detach(oe_buf *b)
{
    char *p = b->data;
    if (b->failed) {
        free(p);
        p = NULL;
    } else if (!p) {
        p = calloc(1, 1);
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = 0;
    return p;
}
