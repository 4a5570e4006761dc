/* The logger (docs/operations.md): one line per event on stderr, with the time (ISO
 * 8601, UTC, milliseconds), the level, the component, the message and
 * key=value fields. Two formats:
 *
 *   text (default, logfmt):
 *     ts=2026-11-30T01:02:03.456Z level=info component=worker msg="batch" messages=12
 *   json (one object per line, every value a string):
 *     {"ts":"2026-11-30T01:02:03.456Z","level":"info","component":"worker",
 *      "msg":"batch","messages":"12"}
 *
 * A text value is quoted unless it is non-empty printable ASCII without
 * space, '=' or '"'. In both formats quotes and backslashes are escaped,
 * control characters (U+0000-U+001F, U+007F-U+009F) and U+2028/U+2029
 * written as \uXXXX (\n, \r, \t for those three), and each byte that is
 * not part of valid UTF-8 written as \ufffd (the replacement character;
 * the byte itself is not kept), so that every line is valid UTF-8, one
 * event is one line and every JSON line parses. Values are cut, never
 * lines: a message or value longer than OE_LOG_VALUE_MAX bytes, or one that
 * would take the line past OE_LOG_LINE_MAX bytes, ends in "..." after its
 * last whole character; a field that finds no room at all is left out and
 * counted in a last field dropped_fields=N. Text keys are cut at 128 bytes
 * and bytes that would break key=value become '_'. Lines below the level
 * set by oe_log_setup are not written. Thread-safe: each line is written
 * with one write(2).
 *
 * Callers never pass secrets: keys, secrets, signatures and passwords are
 * not logged (the effective configuration masks them, cmd/config.c).
 */
#ifndef OE_LOG_H
#define OE_LOG_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>

typedef enum oe_log_level { OE_LOG_ERROR, OE_LOG_WARN, OE_LOG_INFO, OE_LOG_DEBUG } oe_log_level;
typedef enum oe_log_format { OE_LOG_TEXT, OE_LOG_JSON } oe_log_format;

/* Longest message or field value written, in bytes of the value; longer
 * ones end in "...". */
#define OE_LOG_VALUE_MAX 2048
/* Longest line written, its newline included. */
#define OE_LOG_LINE_MAX 16384

/* Sets the level and format (before other threads log; default info, text). */
void oe_log_setup(oe_log_level level, oe_log_format format);

/* 1 when lines of this level are written. */
int oe_log_enabled(oe_log_level level);

/* "error", "warn", "info", "debug". */
const char *oe_log_level_name(oe_log_level level);

/* Writes one event. fields is NULL or a NULL-terminated list of key,
 * value, key, value ... (a NULL value ends it: pass OE_LOG_STR(s) for a
 * string that may be NULL); fmt is the
 * message, printf-style. Build fields with OE_LOG_FIELDS and numbers with
 * OE_LOG_INT: oe_log(OE_LOG_INFO, "worker", OE_LOG_FIELDS("partition",
 * OE_LOG_INT(p)), "assigned"). */
__attribute__((format(printf, 4, 5))) void oe_log(oe_log_level level, const char *component,
                                                  const char *const *fields, const char *fmt, ...);
__attribute__((format(printf, 4, 0))) void oe_logv(oe_log_level level, const char *component,
                                                   const char *const *fields, const char *fmt,
                                                   va_list ap);

/* A rate limit for one kind of log line, shared by every thread that may
 * write it: the first line, a line about another key than the last one
 * written (e.g. another error code), or the first one LIMIT's interval
 * after the last one written; each line written carries
 * "similar_not_logged" with how many were left out since. Static or zeroed
 * storage with the interval set: OE_LOG_LIMIT(30.0). */
typedef struct oe_log_limit {
    double interval;     /* seconds */
    _Atomic double next; /* oe_monotonic() from which a line is written again */
    atomic_int key;      /* the key of the last line written */
    atomic_ullong unlogged;
} oe_log_limit;
#define OE_LOG_LIMIT(seconds)                                                                      \
    {                                                                                              \
        .interval = (seconds)                                                                      \
    }

/* oe_log through limit; key tells kinds apart (0 when there is one).
 * Returns 1 when the line was written. */
__attribute__((format(printf, 5, 6))) int oe_log_limited(oe_log_limit *limit, int key,
                                                         oe_log_level level, const char *component,
                                                         const char *fmt, ...);

/* The next line through limit is written whatever its key (e.g. once the
 * condition it reports has ended). */
void oe_log_limit_reset(oe_log_limit *limit);

#define OE_LOG_FIELDS(...) ((const char *const[]){__VA_ARGS__, NULL})
/* A whole number as text, in a buffer that lives until the end of the
 * enclosing block. */
#define OE_LOG_INT(v) oe_log_int((long long)(v), (char[24]){0})
const char *oe_log_int(long long v, char buf[24]);
#define OE_LOG_STR(s) ((s) ? (s) : "")

#endif
