/* The logger (log.h): formats one event into a line on the stack and
 * writes it to stderr with one write(2), so that lines of several threads
 * never interleave. */
#include "log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "json.h"

static atomic_int log_level = OE_LOG_INFO;
static atomic_int log_format = OE_LOG_TEXT;

void oe_log_setup(oe_log_level level, oe_log_format format)
{
    atomic_store(&log_level, (int)level);
    atomic_store(&log_format, (int)format);
}

int oe_log_enabled(oe_log_level level)
{
    return (int)level <= atomic_load(&log_level);
}

const char *oe_log_level_name(oe_log_level level)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    return (unsigned)level < 4 ? names[level] : "info";
}

const char *oe_log_int(long long v, char buf[24])
{
    snprintf(buf, 24, "%lld", v);
    return buf;
}

/* A line under construction. Every append is checked against the room
 * left (OE_LOG_LINE_MAX, less what closes the line), so a line is never
 * cut: values are, and fields that find no room are dropped and counted. */
typedef struct line {
    char data[OE_LOG_LINE_MAX];
    size_t len;
    size_t dropped; /* fields left out for want of room */
} line;

/* Room kept for the end of the line: ,"dropped_fields":"N"} and '\n'. */
#define LINE_TAIL 48
/* Longest key written (keys of Kafka properties come from the user). */
#define KEY_MAX 128

static size_t room(const line *l)
{
    return sizeof l->data - LINE_TAIL - l->len;
}

static void put(line *l, const char *s, size_t n)
{
    memcpy(l->data + l->len, s, n); /* callers checked room() */
    l->len += n;
}

static void puts_(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* The length of the valid UTF-8 character at s[0..n) (oe_utf8_valid's
 * rules: no overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    size_t k = s[0] < 0x80 ? 1 : s[0] < 0xC2 ? 0 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    return k && k <= n && oe_utf8_valid((const char *)s, k) ? k : 0;
}

/* Whether a byte can stand unquoted in text (logfmt): printable ASCII
 * other than space, '=' and '"'. */
static int text_safe(unsigned char c)
{
    return c > ' ' && c != '=' && c != '"' && c < 0x7f;
}

/* Whether a text value can go without quotes: non-empty, all text_safe. */
static int plain(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!text_safe((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Appends s (n bytes) escaped for a JSON string or a quoted logfmt value
 * (the same escapes serve both): '"' and '\\' escaped, control characters
 * (C0, DEL, C1) and U+2028/U+2029 as \uXXXX, each byte that is not part
 * of valid UTF-8 as \ufffd; so the result is valid UTF-8 on one line.
 * Cut, with "..." after the last whole character, after OE_LOG_VALUE_MAX
 * bytes of s or where the room left (at least limit) would be passed. */
static void put_escaped(line *l, const char *s, size_t n, size_t limit)
{
    const unsigned char *u = (const unsigned char *)s;
    if (limit > room(l))
        limit = room(l);
    size_t end = l->len + limit;
    for (size_t i = 0; i < n;) {
        char esc[8];
        const char *out = esc;
        size_t k = utf8_char(u + i, n - i), outlen;
        unsigned cp = k == 1 ? u[i] : k == 2 ? ((u[i] & 0x1Fu) << 6 | (u[i + 1] & 0x3Fu)) : 0;
        if (k == 3)
            cp = (u[i] & 0x0Fu) << 12 | (u[i + 1] & 0x3Fu) << 6 | (u[i + 2] & 0x3Fu);
        if (k == 0) {
            out = "\\ufffd";
            k = 1;
        } else if (cp == '"' || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            esc[2] = '\0';
        } else if (cp == '\n' || cp == '\r' || cp == '\t') {
            out = cp == '\n' ? "\\n" : cp == '\r' ? "\\r" : "\\t";
        } else if (k <= 3 &&
                   (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029)) {
            snprintf(esc, sizeof esc, "\\u%04x", cp);
        } else {
            out = s + i;
        }
        outlen = out == s + i ? k : strlen(out);
        size_t tail = i + k < n ? 3 : 0; /* "..." if more follows */
        if (i + k > OE_LOG_VALUE_MAX || l->len + outlen + tail > end) {
            put(l, "...", 3); /* end - l->len >= 3: kept by the previous step */
            return;
        }
        put(l, out, outlen);
        i += k;
    }
}

/* Appends a key as given, or made safe: cut at KEY_MAX, and in text keys
 * any byte that is not printable ASCII, or is a space, '=' or '"', as
 * '_'; JSON keys are escaped like values. */
static void put_key(line *l, int json, const char *key)
{
    size_t n = strnlen(key, KEY_MAX);
    if (json) {
        put_escaped(l, key, n, KEY_MAX * 6 + 3);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = text_safe((unsigned char)key[i]) ? key[i] : '_';
        put(l, &ch, 1);
    }
}

/* Appends one field, its value cut to the room left; when not even the
 * key and a cut value fit, the field is dropped (and counted). */
static void put_field(line *l, int json, const char *key, const char *value, size_t vlen)
{
    /* " key=" or ,"key":" with a key escaped at most 6 bytes to a byte,
     * then at least "...". */
    if (room(l) < 6 * KEY_MAX + 16) {
        l->dropped++;
        return;
    }
    if (json) {
        puts_(l, ",\"");
        put_key(l, json, key);
        puts_(l, "\":\"");
        put_escaped(l, value, vlen, room(l) - 1);
        puts_(l, "\"");
        return;
    }
    puts_(l, " ");
    put_key(l, json, key);
    puts_(l, "=");
    if (vlen <= OE_LOG_VALUE_MAX && vlen <= room(l) && plain(value, vlen)) {
        put(l, value, vlen);
        return;
    }
    puts_(l, "\"");
    put_escaped(l, value, vlen, room(l) - 1);
    puts_(l, "\"");
}

void oe_logv(oe_log_level level, const char *component, const char *const *fields, const char *fmt,
             va_list ap)
{
    if (!oe_log_enabled(level))
        return;
    int saved = errno;
    int json = atomic_load(&log_format) == OE_LOG_JSON;
    /* Four bytes more than a value keeps: every character that starts
     * within the limit is whole, so the cut comes after the last of them. */
    char msg[OE_LOG_VALUE_MAX + 5];
    int mlen = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t msglen = mlen < 0 ? 0 : (size_t)mlen;
    if (msglen > sizeof msg - 1)
        msglen = sizeof msg - 1;

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[96];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));

    line l;
    l.len = 0;
    l.dropped = 0;
    if (json) {
        puts_(&l, "{\"ts\":\"");
        puts_(&l, ts);
        puts_(&l, "\"");
    } else {
        puts_(&l, "ts=");
        puts_(&l, ts);
    }
    const char *lv = oe_log_level_name(level);
    put_field(&l, json, "level", lv, strlen(lv));
    put_field(&l, json, "component", component, strlen(component));
    put_field(&l, json, "msg", msg, msglen);
    for (size_t i = 0; fields && fields[i] && fields[i + 1]; i += 2)
        put_field(&l, json, fields[i], fields[i + 1], strlen(fields[i + 1]));
    if (l.dropped) {
        char n[24];
        snprintf(n, sizeof n, "%zu", l.dropped);
        puts_(&l, json ? ",\"dropped_fields\":\"" : " dropped_fields=");
        puts_(&l, n);
        if (json)
            puts_(&l, "\"");
    }
    if (json)
        puts_(&l, "}");
    l.data[l.len++] = '\n';
    for (size_t off = 0; off < l.len;) {
        ssize_t w = write(STDERR_FILENO, l.data + off, l.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    errno = saved;
}

void oe_log(oe_log_level level, const char *component, const char *const *fields, const char *fmt,
            ...)
{
    va_list ap;
    va_start(ap, fmt);
    oe_logv(level, component, fields, fmt, ap);
    va_end(ap);
}

int oe_log_limited(oe_log_limit *limit, int key, oe_log_level level, const char *component,
                   const char *fmt, ...)
{
    double now = oe_monotonic(), next = atomic_load(&limit->next);
    int other = atomic_load(&limit->key) != key;
    /* One thread wins a due line; the others count themselves out. */
    if ((!other && now < next) ||
        !atomic_compare_exchange_strong(&limit->next, &next, now + limit->interval)) {
        atomic_fetch_add(&limit->unlogged, 1);
        return 0;
    }
    atomic_store(&limit->key, key);
    va_list ap;
    va_start(ap, fmt);
    oe_logv(level, component,
            OE_LOG_FIELDS("similar_not_logged", OE_LOG_INT(atomic_exchange(&limit->unlogged, 0))),
            fmt, ap);
    va_end(ap);
    return 1;
}

void oe_log_limit_reset(oe_log_limit *limit)
{
    atomic_store(&limit->next, 0.0);
}
