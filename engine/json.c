/* Strict JSON parser and Python-compatible serializer (see json.h).
 *
 * The parser is iterative (an explicit stack of open containers), so the
 * depth limit is the only bound on nesting and no input can overflow the C
 * stack. Nodes and strings come from an arena owned by the document: a few
 * growing blocks, freed together.
 */
#include "json.h"

#include "status.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Arena                                                                    */

typedef struct arena_block {
    struct arena_block *next;
    size_t cap;
    size_t used;
    max_align_t data[];
} arena_block;

typedef struct arena {
    arena_block *head; /* block that serves small allocations */
    size_t next_size;  /* capacity of the next block */
    arena_block *last; /* block of the most recent allocation */
    size_t last_off;   /* its offset there, for arena_shrink */
} arena;

#define ARENA_MIN_BLOCK ((size_t)4096)
#define ARENA_MAX_GROWTH ((size_t)64 << 20)

static void arena_init(arena *a, size_t first)
{
    a->head = NULL;
    a->next_size = first < ARENA_MIN_BLOCK ? ARENA_MIN_BLOCK : first;
    a->last = NULL;
    a->last_off = 0;
}

static void arena_release(arena_block *b)
{
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
}

static void *arena_alloc(arena *a, size_t n, size_t align)
{
    arena_block *b = a->head;
    if (b) {
        size_t off = (b->used + align - 1) & ~(align - 1);
        if (off <= b->cap && n <= b->cap - off) {
            b->used = off + n;
            a->last = b;
            a->last_off = off;
            return (char *)b->data + off;
        }
    }
    if (n > SIZE_MAX / 2 - sizeof(arena_block))
        return NULL;
    /* A large request gets a block of its own behind the head, so that the
     * head keeps serving small allocations. */
    int dedicated = b && n > a->next_size / 4;
    size_t cap = dedicated ? n : (n > a->next_size ? n : a->next_size);
    arena_block *nb = malloc(sizeof *nb + cap);
    if (!nb)
        return NULL;
    nb->cap = cap;
    nb->used = n;
    if (dedicated) {
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        a->head = nb;
        if (a->next_size < ARENA_MAX_GROWTH)
            a->next_size *= 2;
    }
    a->last = nb;
    a->last_off = 0;
    return nb->data;
}

/* Gives back the tail of the most recent allocation p (old_n -> new_n). */
static void arena_shrink(arena *a, void *p, size_t old_n, size_t new_n)
{
    arena_block *b = a->last;
    if (b && (char *)b->data + a->last_off == (char *)p && b->used == a->last_off + old_n)
        b->used = a->last_off + new_n;
}

/* The node size json.h promises (and OE_JSON_MAX_NODES's memory bound). */
_Static_assert(sizeof(oe_json) == 24, "oe_json is 24 bytes");

struct oe_json_doc {
    oe_json root;
    arena mem;
};

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                    */

/* Length of the valid UTF-8 sequence at s (s[0] >= 0x80, n bytes
 * available), or 0 when it is invalid or truncated. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0xC2)
        return 0; /* continuation byte, or overlong 2-byte lead */
    if (c < 0xE0)
        return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3)
            return 0;
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80; /* overlong */
        unsigned hi = c == 0xED ? 0x9F : 0xBF; /* surrogates */
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4)
            return 0;
        unsigned lo = c == 0xF0 ? 0x90 : 0x80; /* overlong */
        unsigned hi = c == 0xF4 ? 0x8F : 0xBF; /* above U+10FFFF */
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

static uint32_t utf8_decode(const unsigned char *s, size_t n)
{
    switch (n) {
    case 2:
        return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3:
        return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int oe_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        /* ASCII, eight bytes at a time (receipts and proofs are mostly
         * ASCII: the JSON printer escapes the rest). */
        while (len - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & UINT64_C(0x8080808080808080))
                break;
            i += 8;
        }
        if (i == len)
            break;
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_seq(p + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

const oe_json *oe_json_get(const oe_json *v, const char *key)
{
    if (!v || v->type != OE_JSON_OBJECT || !key || !v->members)
        return NULL;
    size_t klen = strlen(key);
    size_t lo = 0, hi = v->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const oe_json_member *m = &v->members[mid];
        int c = key_cmp(m->key, m->key_len, key, klen);
        if (c == 0)
            return &m->value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Parser                                                                   */

/* A value waiting on the stack of open containers (object members carry
 * their key and the key's byte offset, for the duplicate-key error). */
typedef struct pending {
    oe_json_member m;
    size_t off;
} pending;

typedef struct frame {
    size_t start; /* first pending entry of this container */
    int is_object;
} frame;

typedef struct parser {
    const char *s;
    size_t len;
    size_t pos;
    size_t max_depth;
    size_t nodes; /* values created so far, against OE_JSON_MAX_NODES */
    arena *mem;
    pending *pv;
    size_t pn, pcap;
    frame *fv;
    size_t fn, fcap;
    char *err;
    size_t errlen;
} parser;

static int parse_error(parser *p, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int parse_error(parser *p, size_t off, const char *fmt, ...)
{
    if (p->err && p->errlen) {
        int n = snprintf(p->err, p->errlen, "invalid JSON at byte %zu: ", off);
        if (n >= 0 && (size_t)n < p->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return OE_EINVAL;
}

/* The failures of the parser: parse_error (OE_EINVAL, a verdict on the
 * text) and fail_oom (OE_ENOMEM, none). Every step returns OE_OK or passes
 * the first failure on unchanged. */
static int fail_oom(parser *p)
{
    parse_error(p, p->pos, "out of memory");
    return OE_ENOMEM;
}

/* Counts one more value against the document's node cap. */
static int count_node(parser *p)
{
    if (++p->nodes > OE_JSON_MAX_NODES)
        return parse_error(p, p->pos, "more than %d values in one document", OE_JSON_MAX_NODES);
    return 0;
}

static void skip_ws(parser *p)
{
    const char *s = p->s;
    size_t i = p->pos, n = p->len;
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t'))
        i++;
    p->pos = i;
}

static int fail_unexpected(parser *p, const char *what)
{
    if (p->pos >= p->len)
        return parse_error(p, p->pos, "unexpected end of input, %s", what);
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c > 0x20 && c < 0x7f && c != '\'')
        return parse_error(p, p->pos, "unexpected character '%c', %s", c, what);
    return parse_error(p, p->pos, "unexpected byte 0x%02x, %s", c, what);
}

static int hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return OE_EINVAL;
        v = v << 4 | d;
    }
    *out = v;
    return OE_OK;
}

/* Parses the string starting at the '"' at p->pos into arena memory. */
static int parse_string(parser *p, const char **out, size_t *out_len)
{
    const char *s = p->s;
    size_t open = p->pos, start = open + 1, end = start;
    /* Find the closing quote first; it bounds every escape and UTF-8
     * sequence below (neither can contain a raw '"'). */
    while (end < p->len) {
        char c = s[end];
        if (c == '"')
            break;
        end += c == '\\' ? 2 : 1;
    }
    if (end >= p->len)
        return parse_error(p, open, "unterminated string");
    size_t cap = end - start + 1;
    char *dst = arena_alloc(p->mem, cap, 1);
    if (!dst)
        return fail_oom(p);
    size_t o = 0, i = start;
    while (i < end) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            size_t j = i + 1;
            while (j < end) {
                unsigned char d = (unsigned char)s[j];
                if (d < 0x20 || d >= 0x80 || d == '\\')
                    break;
                j++;
            }
            memcpy(dst + o, s + i, j - i);
            o += j - i;
            i = j;
            continue;
        }
        if (c < 0x20)
            return parse_error(p, i, "control character 0x%02x in string must be escaped", c);
        if (c >= 0x80) {
            size_t n = utf8_seq((const unsigned char *)s + i, end - i);
            if (!n)
                return parse_error(p, i, "invalid UTF-8 in string");
            memcpy(dst + o, s + i, n);
            o += n;
            i += n;
            continue;
        }
        /* Backslash: the scan above guarantees i + 1 < end. */
        char e = s[i + 1];
        switch (e) {
        case '"':
        case '\\':
        case '/':
            dst[o++] = e;
            i += 2;
            continue;
        case 'b':
            dst[o++] = '\b';
            i += 2;
            continue;
        case 'f':
            dst[o++] = '\f';
            i += 2;
            continue;
        case 'n':
            dst[o++] = '\n';
            i += 2;
            continue;
        case 'r':
            dst[o++] = '\r';
            i += 2;
            continue;
        case 't':
            dst[o++] = '\t';
            i += 2;
            continue;
        case 'u':
            break;
        default:
            return parse_error(p, i, "invalid escape in string");
        }
        uint32_t cp;
        if (end - i < 6 || hex4(s + i + 2, &cp) != 0)
            return parse_error(p, i, "invalid \\u escape in string");
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return parse_error(p, i, "lone surrogate \\u%04x in string", (unsigned)cp);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (end - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u' || hex4(s + i + 8, &lo) != 0 ||
                lo < 0xDC00 || lo > 0xDFFF)
                return parse_error(p, i, "lone surrogate \\u%04x in string", (unsigned)cp);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 12;
        } else {
            i += 6;
        }
        /* A \u escape takes 6 input bytes and at most 3 output bytes; a
         * pair takes 12 for 4, so dst never overflows. */
        o += utf8_encode(cp, dst + o);
    }
    dst[o] = '\0';
    arena_shrink(p->mem, dst, cap, o + 1);
    *out = dst;
    *out_len = o;
    p->pos = end + 1;
    return 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int parse_number(parser *p, oe_json *v)
{
    const char *s = p->s;
    size_t n = p->len, start = p->pos, i = start;
    int neg = 0;
    if (s[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= n || !is_digit(s[i])) {
        p->pos = i;
        return fail_unexpected(p, "expected a digit");
    }
    if (s[i] == '0') {
        i++;
        if (i < n && is_digit(s[i]))
            return parse_error(p, i - 1, "leading zeros are not allowed");
    } else {
        while (i < n && is_digit(s[i]))
            i++;
    }
    size_t int_end = i;
    int is_float = 0;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i])) {
            p->pos = i;
            return fail_unexpected(p, "expected a digit after '.'");
        }
        while (i < n && is_digit(s[i]))
            i++;
        is_float = 1;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit(s[i])) {
            p->pos = i;
            return fail_unexpected(p, "expected a digit in the exponent");
        }
        while (i < n && is_digit(s[i]))
            i++;
        is_float = 1;
    }
    memset(v, 0, sizeof *v);
    size_t tlen = i - start;
    if (is_float) {
        /* strtod needs a NUL-terminated copy of exactly this token. */
        char local[64];
        char *tmp = tlen < sizeof local ? local : arena_alloc(p->mem, tlen + 1, 1);
        if (!tmp)
            return fail_oom(p);
        memcpy(tmp, s + start, tlen);
        tmp[tlen] = '\0';
        double d = strtod(tmp, NULL);
        if (tmp != local)
            arena_shrink(p->mem, tmp, tlen + 1, 0);
        if (isinf(d))
            return parse_error(p, start, "number out of range");
        v->type = OE_JSON_FLOAT;
        v->num = d;
        p->pos = i;
        return 0;
    }
    size_t ndigits = int_end - start - (size_t)neg;
    if (ndigits > OE_JSON_MAX_INT_DIGITS)
        return parse_error(p, start, "integer has more than %d digits", OE_JSON_MAX_INT_DIGITS);
    int zero = ndigits == 1 && s[int_end - 1] == '0';
    if (zero) {
        neg = 0; /* "-0" is the integer 0 */
        start = int_end - 1;
        tlen = 1;
    }
    char *txt = arena_alloc(p->mem, tlen + 1, 1);
    if (!txt)
        return fail_oom(p);
    memcpy(txt, s + start, tlen);
    txt[tlen] = '\0';
    v->type = OE_JSON_INT;
    v->str = txt;
    v->len = (uint32_t)tlen;
    if (ndigits <= 19) {
        uint64_t mag = 0;
        for (size_t k = (size_t)neg; k < tlen; k++)
            mag = mag * 10 + (uint64_t)(txt[k] - '0'); /* < 10^19 < 2^64 */
        if (!neg && mag <= (uint64_t)INT64_MAX) {
            v->fits_int64 = 1;
            v->i64 = (int64_t)mag;
        } else if (neg && mag <= (uint64_t)INT64_MAX + 1) {
            v->fits_int64 = 1;
            v->i64 = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
        }
    }
    p->pos = i;
    return 0;
}

static int parse_scalar(parser *p, oe_json *v)
{
    const char *s = p->s;
    char c = s[p->pos];
    int rc = count_node(p);
    if (rc != OE_OK)
        return rc;
    if (c == '"') {
        memset(v, 0, sizeof *v);
        v->type = OE_JSON_STRING;
        const char *str;
        size_t len;
        if ((rc = parse_string(p, &str, &len)) != OE_OK)
            return rc;
        v->str = str;
        v->len = (uint32_t)len;
        return 0;
    }
    if (c == '-' || is_digit(c))
        return parse_number(p, v);
    static const struct {
        const char *word;
        size_t len;
        oe_json_type type;
    } lits[] = {{"true", 4, OE_JSON_TRUE}, {"false", 5, OE_JSON_FALSE}, {"null", 4, OE_JSON_NULL}};
    for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++) {
        if (c != lits[k].word[0])
            continue;
        if (p->len - p->pos < lits[k].len || memcmp(s + p->pos, lits[k].word, lits[k].len) != 0)
            return parse_error(p, p->pos, "invalid literal (expected '%s')", lits[k].word);
        memset(v, 0, sizeof *v);
        v->type = lits[k].type;
        p->pos += lits[k].len;
        return 0;
    }
    return fail_unexpected(p, "expected a value");
}

static int push_pending(parser *p)
{
    if (p->pn == p->pcap) {
        size_t cap = p->pcap ? p->pcap * 2 : 64;
        pending *nv = realloc(p->pv, cap * sizeof *nv);
        if (!nv)
            return fail_oom(p);
        p->pv = nv;
        p->pcap = cap;
    }
    memset(&p->pv[p->pn], 0, sizeof p->pv[p->pn]);
    p->pn++;
    return 0;
}

/* Parses `"key" :` (whitespace already skipped) and pushes a pending
 * member for the value that follows. */
static int parse_key(parser *p)
{
    if (p->pos >= p->len || p->s[p->pos] != '"')
        return fail_unexpected(p, "expected a string key");
    size_t off = p->pos;
    const char *key;
    size_t klen;
    int rc = parse_string(p, &key, &klen);
    if (rc != OE_OK)
        return rc;
    skip_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != ':')
        return fail_unexpected(p, "expected ':'");
    p->pos++;
    if ((rc = push_pending(p)) != OE_OK)
        return rc;
    pending *e = &p->pv[p->pn - 1];
    e->m.key = key;
    e->m.key_len = (uint32_t)klen;
    e->off = off;
    return 0;
}

static int pending_cmp(const void *a, const void *b)
{
    const pending *x = a, *y = b;
    int c = key_cmp(x->m.key, x->m.key_len, y->m.key, y->m.key_len);
    if (c)
        return c;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void sort_pending(pending *v, size_t n)
{
    if (n > 16) {
        qsort(v, n, sizeof *v, pending_cmp);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        pending t = v[i];
        size_t j = i;
        while (j > 0 && pending_cmp(&v[j - 1], &t) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = t;
    }
}

static int fail_duplicate(parser *p, const pending *e)
{
    oe_buf b;
    oe_buf_init(&b, 0);
    const char *shown = "(key)";
    if (oe_json_dump_string(&b, e->m.key, e->m.key_len) == 0) {
        if (b.len > 80) {
            b.len = 76;
            memcpy(b.data + 76, "...", 4);
        }
        shown = b.data;
    }
    int rc = parse_error(p, e->off, "duplicate key %s", shown);
    oe_buf_free(&b);
    return rc;
}

/* Closes the innermost container into *v. */
static int close_container(parser *p, oe_json *v)
{
    frame *f = &p->fv[p->fn - 1];
    size_t n = p->pn - f->start;
    /* No member was pushed yet when the first container to close is empty:
     * pv is still NULL, and even NULL + 0 is undefined behaviour. */
    pending *e = n ? p->pv + f->start : NULL;
    memset(v, 0, sizeof *v);
    v->len = (uint32_t)n;
    if (f->is_object) {
        v->type = OE_JSON_OBJECT;
        sort_pending(e, n);
        for (size_t k = 1; k < n; k++)
            if (key_cmp(e[k - 1].m.key, e[k - 1].m.key_len, e[k].m.key, e[k].m.key_len) == 0)
                return fail_duplicate(p, &e[k]);
        if (n) {
            oe_json_member *m = arena_alloc(p->mem, n * sizeof *m, _Alignof(oe_json_member));
            if (!m)
                return fail_oom(p);
            for (size_t k = 0; k < n; k++)
                m[k] = e[k].m;
            v->members = m;
        }
    } else {
        v->type = OE_JSON_ARRAY;
        if (n) {
            oe_json *items = arena_alloc(p->mem, n * sizeof *items, _Alignof(oe_json));
            if (!items)
                return fail_oom(p);
            for (size_t k = 0; k < n; k++)
                items[k] = e[k].m.value;
            v->items = items;
        }
    }
    p->pn = f->start;
    p->fn--;
    return 0;
}

static int open_container(parser *p, int is_object)
{
    if (p->fn >= p->max_depth)
        return parse_error(p, p->pos, "nesting deeper than %zu levels", p->max_depth);
    int rc = count_node(p);
    if (rc != OE_OK)
        return rc;
    if (p->fn == p->fcap) {
        size_t cap = p->fcap ? p->fcap * 2 : 16;
        frame *nv = realloc(p->fv, cap * sizeof *nv);
        if (!nv)
            return fail_oom(p);
        p->fv = nv;
        p->fcap = cap;
    }
    p->fv[p->fn].start = p->pn;
    p->fv[p->fn].is_object = is_object;
    p->fn++;
    p->pos++;
    return 0;
}

static int parse_value(parser *p, oe_json *root)
{
    oe_json v;
    int rc;
    for (;;) {
        /* Expecting a value. */
        skip_ws(p);
        if (p->pos >= p->len)
            return fail_unexpected(p, "expected a value");
        char c = p->s[p->pos];
        if (c == '[' || c == '{') {
            int obj = c == '{';
            if ((rc = open_container(p, obj)) != OE_OK)
                return rc;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == (obj ? '}' : ']')) {
                p->pos++;
                if ((rc = close_container(p, &v)) != OE_OK)
                    return rc;
            } else {
                if (obj && (rc = parse_key(p)) != OE_OK)
                    return rc;
                continue;
            }
        } else if ((rc = parse_scalar(p, &v)) != OE_OK) {
            return rc;
        }
        /* Have a complete value v: hand it to the enclosing containers. */
        for (;;) {
            if (p->fn == 0) {
                *root = v;
                return 0;
            }
            frame *f = &p->fv[p->fn - 1];
            if (!f->is_object && (rc = push_pending(p)) != OE_OK)
                return rc;
            p->pv[p->pn - 1].m.value = v;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                if (f->is_object) {
                    skip_ws(p);
                    if ((rc = parse_key(p)) != OE_OK)
                        return rc;
                }
                break; /* next value */
            }
            if (p->pos < p->len && p->s[p->pos] == (f->is_object ? '}' : ']')) {
                p->pos++;
                if ((rc = close_container(p, &v)) != OE_OK)
                    return rc;
                continue;
            }
            return fail_unexpected(p, f->is_object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
}

int oe_json_parse(const char *buf, size_t len, int max_depth, oe_json_doc **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (buf && len > OE_JSON_MAX_TEXT) {
        if (err && errlen)
            snprintf(err, errlen, "invalid JSON: text longer than %zu bytes", OE_JSON_MAX_TEXT);
        return OE_EINVAL;
    }
    arena mem;
    /* Room for the text plus a node per few bytes covers typical inputs in
     * one block; larger ones add doubling blocks. */
    size_t first = len < ((size_t)1 << 20) ? 2 * len + 1024 : (size_t)4 << 20;
    arena_init(&mem, first);
    parser p = {
        .s = buf ? buf : "",
        .len = buf ? len : 0,
        .max_depth = max_depth > 0 ? (size_t)max_depth : OE_JSON_MAX_DEPTH,
        .mem = &mem,
        .err = err,
        .errlen = errlen,
    };
    oe_json_doc *doc = arena_alloc(&mem, sizeof *doc, _Alignof(oe_json_doc));
    int rc = doc ? parse_value(&p, &doc->root) : fail_oom(&p);
    if (rc == 0) {
        skip_ws(&p);
        if (p.pos < p.len)
            rc = parse_error(&p, p.pos, "unexpected data after the JSON value");
    }
    free(p.pv);
    free(p.fv);
    if (rc != OE_OK) {
        arena_release(mem.head);
        return rc;
    }
    doc->mem = mem;
    *out = doc;
    return OE_OK;
}

double oe_json_number(const oe_json *v)
{
    if (v->type == OE_JSON_FLOAT)
        return v->num;
    if (v->type != OE_JSON_INT)
        return 0;
    /* Beyond the double range strtod gives +-HUGE_VAL, as documented. */
    return v->fits_int64 ? (double)v->i64 : strtod(v->str, NULL);
}

void oe_json_doc_free(oe_json_doc *doc)
{
    if (doc)
        arena_release(doc->mem.head);
}

const oe_json *oe_json_root(const oe_json_doc *doc)
{
    return doc ? &doc->root : NULL;
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */

/* Output staged in a small local buffer, flushed to the oe_buf in chunks. */
typedef struct writer {
    oe_buf *out;
    size_t n;
    int failed; /* OE_OK, or why an append to out failed (OE_ELIMIT, OE_ENOMEM) */
    char t[512];
} writer;

static void w_flush(writer *w)
{
    if (w->n && !w->failed)
        w->failed = oe_buf_append(w->out, w->t, w->n);
    w->n = 0;
}

static void w_put(writer *w, const char *s, size_t n)
{
    if (n > sizeof w->t - w->n) {
        w_flush(w);
        if (n > sizeof w->t) {
            if (!w->failed)
                w->failed = oe_buf_append(w->out, s, n);
            return;
        }
    }
    memcpy(w->t + w->n, s, n);
    w->n += n;
}

static void w_putc(writer *w, char c)
{
    if (w->n == sizeof w->t)
        w_flush(w);
    w->t[w->n++] = c;
}

static const char hexdig[] = "0123456789abcdef";

/* The 8 bytes at p, word-at-a-time: 8 when none needs escaping (each is
 * printable ASCII, 0x20 to 0x7e, other than '"' and '\\'), or when every
 * byte is printable ASCII and only quotes and backslashes need a backslash
 * before them (*quoted: the high bit of each such byte, exact); else how
 * many from the first need none. A flag of the borrowing tests may be set
 * wrongly only in a byte after one rightly flagged (a borrow runs upwards,
 * to later bytes), so "no flag" and the first flag are exact. */
static size_t plain_run8(const unsigned char *p, uint64_t *quoted)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080),
                   lows = UINT64_C(0x7f7f7f7f7f7f7f7f);
    uint64_t x;
    memcpy(&x, p, 8);
#define HAS_ZERO(v) (((v)-ones) & ~(v)&highs)
/* Exact: no carry leaves a byte. */
#define ZERO_BYTES(v) (~((((v)&lows) + lows) | (v) | lows))
    uint64_t other = (x & highs) | ((x - ones * 0x20) & ~x & highs) | HAS_ZERO(x ^ (ones * 0x7f));
    uint64_t quote = ZERO_BYTES(x ^ (ones * '"')) | ZERO_BYTES(x ^ (ones * '\\'));
#undef ZERO_BYTES
#undef HAS_ZERO
    *quoted = 0;
    if (!(other | quote))
        return 8;
    if (!other) {
        *quoted = quote;
        return 8;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The first byte is the lowest. */
    return (size_t)__builtin_ctzll(other | quote) >> 3;
#else
    return 0; /* the caller goes on a byte at a time */
#endif
}

/* Writes the 8 printable bytes at s with a backslash before each byte
 * whose high bit is set in quoted (plain_run8) to d, which has room for 24
 * bytes; returns the end. */
static char *put_quoted8(char *d, const unsigned char *s, uint64_t quoted)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The word shifted down to each run, stored whole (the bytes past the
     * run are written over next). */
    uint64_t x;
    memcpy(&x, s, 8);
    unsigned pos = 0;
    while (quoted) {
        unsigned j = (unsigned)__builtin_ctzll(quoted) >> 3;
        uint64_t w = x >> (8 * pos);
        memcpy(d, &w, 8);
        d += j - pos;
        *d++ = '\\';
        pos = j;
        quoted &= quoted - 1;
    }
    uint64_t w = x >> (8 * pos);
    memcpy(d, &w, 8);
    return d + (8 - pos);
#else
    (void)quoted;
    for (int j = 0; j < 8; j++) {
        if (s[j] == '"' || s[j] == '\\')
            *d++ = '\\';
        *d++ = (char)s[j];
    }
    return d;
#endif
}

/* The most bytes one byte of a string takes escaped ("\u001f"; a UTF-8
 * sequence of n bytes takes at most 6 per byte too). */
#define ESCAPED_MAX OE_JSON_ESCAPED_MAX
_Static_assert(ESCAPED_MAX == 6, "json.h's room is the escaper's");

/* What one byte takes escaped at most, when it is not in a run of plain
 * ones: a quote or backslash 2; a control or DEL 6 ("\u007f"; \n and the
 * like take 2); a byte of a valid UTF-8 sequence 3 (a sequence of 2 or 3
 * bytes takes 6, one of 4 takes 12: a surrogate pair); a plain byte 1. */
static size_t escaped_room1(unsigned char c)
{
    return c >= 0x80 ? 3 : c == '"' || c == '\\' ? 2 : c < 0x20 || c == 0x7f ? 6 : 1;
}

/* The escaper's whole-word stores (plain_run8's runs, put_quoted8) write
 * up to 7 bytes past the end of what it has written (never past its
 * room): counted room has these over. */
#define ESCAPE_OVERRUN 8

size_t oe_json_string_room_counted(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = 2 + ESCAPE_OVERRUN, i = 0;
    while (len - i >= 8) {
        uint64_t quoted;
        size_t k = plain_run8(s + i, &quoted);
        if (k == 8) {
            n += 8 + (size_t)__builtin_popcountll(quoted);
            i += 8;
        } else {
            n += k + escaped_room1(s[i + k]);
            i += k + 1;
        }
    }
    for (; i < len; i++)
        n += escaped_room1(s[i]);
    return n;
}

static char *put_u16(char *d, uint32_t u)
{
    d[0] = '\\';
    d[1] = 'u';
    d[2] = hexdig[(u >> 12) & 15];
    d[3] = hexdig[(u >> 8) & 15];
    d[4] = hexdig[(u >> 4) & 15];
    d[5] = hexdig[u & 15];
    return d + 6;
}

/* The one escaper of strings (Python's json.dumps with ensure_ascii):
 * writes s[0..len) escaped, without quotes, to d, which has room for
 * ESCAPED_MAX * len bytes; *written gets how many. Returns OE_OK, or
 * OE_EINVAL when s is not valid UTF-8 (d then holds a part). */
static int escape_into(char *d, const unsigned char *s, size_t len, size_t *written)
{
    char *d0 = d;
    size_t i = 0;
    while (i < len) {
        /* 8 bytes at a time while they are printable ASCII (d has room
         * for 24 more: at least 6 per byte left): copied, or with a
         * backslash before each quote and backslash (a JSON text inside a
         * string has many), up to the first byte that needs a look. */
        while (len - i >= 8) {
            uint64_t quoted;
            size_t k = plain_run8(s + i, &quoted);
            if (quoted) {
                d = put_quoted8(d, s + i, quoted);
                i += 8;
                continue;
            }
            memcpy(d, s + i, 8);
            d += k;
            i += k;
            if (k < 8)
                break;
        }
        if (i == len)
            break;
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            *d++ = (char)c;
            i++;
            continue;
        }
        if (c < 0x80) {
            char e = c == '"'    ? '"'
                     : c == '\\' ? '\\'
                     : c == '\n' ? 'n'
                     : c == '\r' ? 'r'
                     : c == '\t' ? 't'
                     : c == '\b' ? 'b'
                     : c == '\f' ? 'f'
                                 : 0;
            if (e) {
                *d++ = '\\';
                *d++ = e;
            } else {
                d = put_u16(d, c); /* other controls and DEL */
            }
            i++;
            continue;
        }
        size_t n = utf8_seq(s + i, len - i);
        if (!n) {
            *written = (size_t)(d - d0);
            return OE_EINVAL;
        }
        uint32_t cp = utf8_decode(s + i, n);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            d = put_u16(d, 0xD800 + (cp >> 10));
            d = put_u16(d, 0xDC00 + (cp & 0x3FF));
        } else {
            d = put_u16(d, cp);
        }
        i += n;
    }
    *written = (size_t)(d - d0);
    return OE_OK;
}

/* Returns OE_OK, or OE_EINVAL when s is not valid UTF-8. */
static int w_string(writer *w, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    w_putc(w, '"');
    /* Escaped straight into the staging buffer, a piece at a time that
     * surely fits, never cutting a UTF-8 sequence. */
    const size_t piece = sizeof w->t / ESCAPED_MAX;
    for (size_t i = 0; i < len;) {
        size_t n = len - i < piece ? len - i : piece;
        while (i + n < len && n > 1 && (s[i + n] & 0xC0) == 0x80)
            n--;
        if (sizeof w->t - w->n < ESCAPED_MAX * n)
            w_flush(w);
        size_t k;
        int rc = escape_into(w->t + w->n, s + i, n, &k);
        if (rc != OE_OK)
            return rc;
        w->n += k;
        i += n;
    }
    w_putc(w, '"');
    return OE_OK;
}

static void buf_truncate(oe_buf *b, size_t len)
{
    if (b->data && b->len > len) {
        b->len = len;
        b->data[len] = '\0';
    }
}

char *oe_json_put_string(char *d, const char *s, size_t len)
{
    size_t k;
    d[0] = '"';
    if (escape_into(d + 1, (const unsigned char *)s, len, &k) != OE_OK)
        return NULL;
    d[1 + k] = '"';
    return d + k + 2;
}

int oe_json_dump_string(oe_buf *out, const char *s, size_t len)
{
    if (!s && len)
        return OE_EINVAL;
    /* Straight into out when the most it can take fits (every string a
     * receipt or a leaf has); else through a writer, which stops at out's
     * limit exactly. */
    if (s && len <= ((size_t)1 << 20) && oe_buf_room(out, oe_json_string_room(s, len)) == OE_OK) {
        char *end = oe_json_put_string(out->data + out->len, s, len);
        if (!end) {
            out->data[out->len] = '\0';
            return OE_EINVAL;
        }
        out->len = (size_t)(end - out->data);
        out->data[out->len] = '\0';
        return OE_OK;
    }
    writer w; /* not zeroed: its staging buffer is written before it is read */
    w.out = out;
    w.n = 0;
    w.failed = 0;
    size_t start = out->len;
    int rc = w_string(&w, s ? s : "", len);
    w_flush(&w);
    if (rc == OE_OK)
        rc = w.failed;
    if (rc != OE_OK)
        buf_truncate(out, start);
    return rc;
}

static int member_ptr_cmp(const void *a, const void *b)
{
    const oe_json_member *x = *(const oe_json_member *const *)a;
    const oe_json_member *y = *(const oe_json_member *const *)b;
    return key_cmp(x->key, x->key_len, y->key, y->key_len);
}

typedef struct dump_frame {
    const oe_json *v;
    size_t i;
    const oe_json_member **order; /* NULL when the members are sorted */
} dump_frame;

typedef struct dumper {
    writer w;
    dump_frame local[32];
    dump_frame *st;
    size_t n, cap;
} dumper;

/* Writes a value; containers with content are pushed to be continued. */
static int dump_open(dumper *d, const oe_json *v)
{
    writer *w = &d->w;
    char num[40];
    switch (v->type) {
    case OE_JSON_NULL:
        w_put(w, "null", 4);
        return 0;
    case OE_JSON_FALSE:
        w_put(w, "false", 5);
        return 0;
    case OE_JSON_TRUE:
        w_put(w, "true", 4);
        return 0;
    case OE_JSON_INT:
        if (!v->str || !v->len)
            return OE_EINVAL;
        w_put(w, v->str, v->len);
        return 0;
    case OE_JSON_FLOAT: {
        int n = oe_json_format_double(v->num, num, sizeof num);
        if (n < 0)
            return n;
        w_put(w, num, (size_t)n);
        return 0;
    }
    case OE_JSON_STRING:
        if (!v->str && v->len)
            return OE_EINVAL;
        return w_string(w, v->str ? v->str : "", v->len);
    case OE_JSON_ARRAY:
    case OE_JSON_OBJECT:
        break;
    default:
        return OE_EINVAL;
    }
    int obj = v->type == OE_JSON_OBJECT;
    if (v->len == 0) {
        w_put(w, obj ? "{}" : "[]", 2);
        return 0;
    }
    if (obj ? !v->members : !v->items)
        return OE_EINVAL;
    const oe_json_member **order = NULL;
    if (obj) {
        for (size_t k = 1; k < v->len; k++) {
            const oe_json_member *a = &v->members[k - 1], *b = &v->members[k];
            if (key_cmp(a->key, a->key_len, b->key, b->key_len) > 0) {
                /* Built by hand, not sorted: sort a view of it. */
                order = malloc(v->len * sizeof *order);
                if (!order)
                    return OE_ENOMEM;
                for (size_t j = 0; j < v->len; j++)
                    order[j] = &v->members[j];
                qsort(order, v->len, sizeof *order, member_ptr_cmp);
                break;
            }
        }
    }
    if (d->n == d->cap) {
        size_t cap = d->cap * 2;
        dump_frame *ns =
            d->st == d->local ? malloc(cap * sizeof *ns) : realloc(d->st, cap * sizeof *ns);
        if (!ns) {
            free(order);
            return OE_ENOMEM;
        }
        if (d->st == d->local)
            memcpy(ns, d->local, d->n * sizeof *ns);
        d->st = ns;
        d->cap = cap;
    }
    d->st[d->n++] = (dump_frame){v, 0, order};
    w_putc(w, obj ? '{' : '[');
    return 0;
}

int oe_json_dump(oe_buf *out, const oe_json *v, oe_json_style style)
{
    if (!v)
        return OE_EINVAL;
    dumper d;
    d.w.out = out;
    d.w.n = 0;
    d.w.failed = 0;
    d.st = d.local;
    d.n = 0;
    d.cap = sizeof d.local / sizeof d.local[0];
    size_t start = out->len;
    const char *item_sep = style == OE_JSON_COMPACT ? "," : ", ";
    const char *key_sep = style == OE_JSON_COMPACT ? ":" : ": ";
    size_t sep_len = style == OE_JSON_COMPACT ? 1 : 2;

    int rc = dump_open(&d, v);
    while (rc == 0 && d.n > 0 && !d.w.failed) {
        dump_frame *f = &d.st[d.n - 1];
        int obj = f->v->type == OE_JSON_OBJECT;
        if (f->i == f->v->len) {
            w_putc(&d.w, obj ? '}' : ']');
            free(f->order);
            d.n--;
            continue;
        }
        if (f->i > 0)
            w_put(&d.w, item_sep, sep_len);
        const oe_json *child;
        if (obj) {
            const oe_json_member *m = f->order ? f->order[f->i] : &f->v->members[f->i];
            if (!m->key && m->key_len) {
                rc = OE_EINVAL;
                break;
            }
            rc = w_string(&d.w, m->key ? m->key : "", m->key_len);
            w_put(&d.w, key_sep, sep_len);
            child = &m->value;
        } else {
            child = &f->v->items[f->i];
        }
        f->i++;
        if (rc == 0)
            rc = dump_open(&d, child);
    }
    for (size_t k = 0; k < d.n; k++)
        free(d.st[k].order);
    if (d.st != d.local)
        free(d.st);
    w_flush(&d.w);
    if (rc == OE_OK)
        rc = d.w.failed;
    if (rc != OE_OK)
        buf_truncate(out, start);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Python's repr(float)                                                     */

/* The 17 significant digits of x (x > 0, finite), correctly rounded; 17
 * digits always read back as x. */
typedef struct digits17 {
    char d[18];
    int e; /* decimal exponent of the first digit */
} digits17;

/* Parses "%.*e" output into digits (NUL-terminated); returns the count. */
static int split_e(const char *buf, char *digits, int *exp10)
{
    int k = 0, j = 0;
    digits[k++] = buf[j++];
    if (buf[j] == '.') {
        j++;
        while (is_digit(buf[j]))
            digits[k++] = buf[j++];
    }
    digits[k] = '\0';
    *exp10 = atoi(buf + j + 1); /* buf[j] == 'e' */
    return k;
}

static double read_digits(const char *digits, int k, int e)
{
    char buf[48], *o = buf;
    *o++ = digits[0];
    if (k > 1) {
        *o++ = '.';
        memcpy(o, digits + 1, (size_t)k - 1);
        o += k - 1;
    }
    snprintf(o, sizeof buf - (size_t)(o - buf), "e%d", e);
    return strtod(buf, NULL);
}

/* Adds one unit in the last of the k digits. */
static void digits_increment(char *digits, int k, int *e)
{
    int q = k - 1;
    while (q >= 0 && digits[q] == '9')
        digits[q--] = '0';
    if (q < 0) {
        digits[0] = '1';
        (*e)++;
    } else {
        digits[q]++;
    }
}

/* Finds a p-significant-digit decimal that reads back as x (x > 0, finite):
 * the correctly rounded one, or else its neighbour above. Stores the digits
 * (p of them, NUL-terminated) and the decimal exponent of the first digit.
 * Returns 1 on success.
 *
 * The correctly rounded p-digit decimal comes from the 17-digit one without
 * another printf: rounding that again to p digits gives the same result
 * unless its dropped digits are exactly 5000... (the only spot where the
 * first rounding can move a value onto a p-digit midpoint); that case asks
 * printf.
 *
 * The neighbour matters for exact powers of two, whose rounding interval is
 * half as wide below as above: the nearest p-digit decimal can lie just
 * outside the narrow lower half while the next one up lies inside the wide
 * upper half, and then that one is the shortest repr. The opposite case
 * cannot occur (the lower half-interval is never the wider one). */
static int shortest_try(double x, const digits17 *r, int p, char *digits, int *exp10)
{
    int e = r->e;
    memcpy(digits, r->d, (size_t)p);
    digits[p] = '\0';
    if (p == 17) {
        *exp10 = e;
        return 1;
    }
    int tie = r->d[p] == '5';
    for (int q = p + 1; tie && q < 17; q++)
        tie = r->d[q] == '0';
    if (tie) {
        char buf[48];
        snprintf(buf, sizeof buf, "%.*e", p - 1, x);
        split_e(buf, digits, &e);
    } else if (r->d[p] >= '5') {
        digits_increment(digits, p, &e);
    }
    double y = read_digits(digits, p, e);
    if (y == x) {
        *exp10 = e;
        return 1;
    }
    if (y > x)
        return 0;
    digits_increment(digits, p, &e);
    if (read_digits(digits, p, e) != x)
        return 0;
    *exp10 = e;
    return 1;
}

int oe_json_format_double(double d, char *out, size_t outlen)
{
    if (!isfinite(d))
        return OE_EINVAL;
    char res[40];
    size_t n = 0;
    if (signbit(d))
        res[n++] = '-';
    double x = fabs(d);
    if (x == 0) {
        memcpy(res + n, "0.0", 3);
        n += 3;
    } else {
        /* Smallest p in 1..17 that has a round-tripping p-digit decimal
         * (17 always does; having one is monotonic in p). */
        digits17 r;
        char buf[48];
        snprintf(buf, sizeof buf, "%.16e", x);
        split_e(buf, r.d, &r.e);
        char digits[20], best[20];
        int e, best_e = 0, best_p = 0;
        int lo = 1, hi = 17;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (shortest_try(x, &r, mid, digits, &e)) {
                hi = mid;
                memcpy(best, digits, sizeof best);
                best_e = e;
                best_p = mid;
            } else {
                lo = mid + 1;
            }
        }
        if (best_p != lo) {
            shortest_try(x, &r, lo, best, &best_e);
            best_p = lo;
        }
        int nd = best_p;
        while (nd > 1 && best[nd - 1] == '0')
            nd--;
        int decpt = best_e + 1; /* x = 0.DIGITS * 10^decpt */
        if (decpt > -4 && decpt <= 16) {
            if (decpt <= 0) {
                res[n++] = '0';
                res[n++] = '.';
                for (int z = 0; z < -decpt; z++)
                    res[n++] = '0';
                memcpy(res + n, best, (size_t)nd);
                n += (size_t)nd;
            } else if (decpt >= nd) {
                memcpy(res + n, best, (size_t)nd);
                n += (size_t)nd;
                for (int z = 0; z < decpt - nd; z++)
                    res[n++] = '0';
                res[n++] = '.';
                res[n++] = '0';
            } else {
                memcpy(res + n, best, (size_t)decpt);
                n += (size_t)decpt;
                res[n++] = '.';
                memcpy(res + n, best + decpt, (size_t)(nd - decpt));
                n += (size_t)(nd - decpt);
            }
        } else {
            res[n++] = best[0];
            if (nd > 1) {
                res[n++] = '.';
                memcpy(res + n, best + 1, (size_t)nd - 1);
                n += (size_t)nd - 1;
            }
            int ex = decpt - 1;
            n += (size_t)snprintf(res + n, sizeof res - n, "e%c%02d", ex < 0 ? '-' : '+',
                                  ex < 0 ? -ex : ex);
        }
    }
    if (!out)
        return OE_EINVAL;
    if (outlen <= n)
        return OE_ELIMIT;
    memcpy(out, res, n);
    out[n] = '\0';
    return (int)n;
}
