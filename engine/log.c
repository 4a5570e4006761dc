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

/* A line under construction: text is cut (never overrun) at the end. */
typedef struct line {
    char data[4 * OE_LOG_VALUE_MAX + 1024];
    size_t len;
} line;

static void put(line *l, const char *s, size_t n)
{
    size_t room = sizeof l->data - 1 - l->len; /* one byte kept for '\n' */
    if (n > room)
        n = room;
    memcpy(l->data + l->len, s, n);
    l->len += n;
}

static void puts_(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Whether a text value needs quotes. */
static int needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '=' || c == '"' || c == 0x7f)
            return 1;
    }
    return 0;
}

/* Appends s (n bytes, cut at OE_LOG_VALUE_MAX) escaped for a JSON string
 * or a quoted logfmt value: the same escapes serve both. */
static void put_escaped(line *l, const char *s, size_t n)
{
    int cut = n > OE_LOG_VALUE_MAX;
    if (cut) {
        n = OE_LOG_VALUE_MAX;
        /* Never end inside a UTF-8 character. */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
            continue;
        put(l, s + start, i - start);
        char esc[8];
        switch (c) {
        case '"':
            puts_(l, "\\\"");
            break;
        case '\\':
            puts_(l, "\\\\");
            break;
        case '\n':
            puts_(l, "\\n");
            break;
        case '\r':
            puts_(l, "\\r");
            break;
        case '\t':
            puts_(l, "\\t");
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            puts_(l, esc);
        }
        start = i + 1;
    }
    put(l, s + start, n - start);
    if (cut)
        puts_(l, "...");
}

static void put_field(line *l, int json, const char *key, const char *value, size_t vlen)
{
    if (json) {
        puts_(l, ",\"");
        put_escaped(l, key, strlen(key));
        puts_(l, "\":\"");
        put_escaped(l, value, vlen);
        puts_(l, "\"");
        return;
    }
    puts_(l, " ");
    puts_(l, key);
    puts_(l, "=");
    if (vlen <= OE_LOG_VALUE_MAX && !needs_quotes(value, vlen)) {
        put(l, value, vlen);
        return;
    }
    puts_(l, "\"");
    put_escaped(l, value, vlen);
    puts_(l, "\"");
}

void oe_logv(oe_log_level level, const char *component, const char *const *fields, const char *fmt,
             va_list ap)
{
    if (!oe_log_enabled(level))
        return;
    int saved = errno;
    int json = atomic_load(&log_format) == OE_LOG_JSON;
    char msg[OE_LOG_VALUE_MAX + 1];
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
