/* Tests engine/log.c: the text (logfmt) and JSON line formats, escaping
 * (one event is one line whatever its text), levels, and the cut of long
 * values. stderr is redirected into a file of this test's directory. */
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "engine/json.h"
#include "engine/log.h"
#include "tests/test.h"

static char path[64];
static int saved_stderr = -1;

static void capture(void)
{
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

/* Restores stderr; returns what was written (caller frees). */
static char *captured(void)
{
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    FILE *f = fopen(path, "rb");
    static char empty[] = "";
    if (!f)
        return strdup(empty);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The text of a JSON string value, or NULL. */
static const char *jstr(const oe_json *v)
{
    return v && v->type == OE_JSON_STRING ? v->str : NULL;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_text_format(void)
{
    oe_log_setup(OE_LOG_INFO, OE_LOG_TEXT);
    capture();
    oe_log(OE_LOG_INFO, "worker",
           OE_LOG_FIELDS("partition", OE_LOG_INT(3), "nonce", "a b=\"c\"\n", "empty", ""),
           "assigned %d partition(s)", 16);
    oe_log(OE_LOG_WARN, "kafka", NULL, "plain");
    char *out = captured();
    ASSERT_EQ(count_lines(out), 2);
    ASSERT_TRUE(strncmp(out, "ts=20", 5) == 0);
    ASSERT_CONTAINS(out, "Z level=info component=worker msg=\"assigned 16 partition(s)\" "
                         "partition=3 nonce=\"a b=\\\"c\\\"\\n\" empty=\"\"\n");
    ASSERT_CONTAINS(out, " level=warn component=kafka msg=plain\n");
    /* The time: ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
    ASSERT_EQ(strcspn(out, " "), strlen("ts=2026-11-30T01:02:03.456Z"));
    ASSERT_EQ(out[26], 'Z');
    free(out);
}

static void test_levels(void)
{
    oe_log_setup(OE_LOG_WARN, OE_LOG_TEXT);
    ASSERT_TRUE(oe_log_enabled(OE_LOG_ERROR));
    ASSERT_TRUE(!oe_log_enabled(OE_LOG_INFO));
    capture();
    oe_log(OE_LOG_DEBUG, "x", NULL, "debug line");
    oe_log(OE_LOG_INFO, "x", NULL, "info line");
    oe_log(OE_LOG_WARN, "x", NULL, "warn line");
    oe_log(OE_LOG_ERROR, "x", NULL, "error line");
    char *out = captured();
    ASSERT_EQ(count_lines(out), 2);
    ASSERT_TRUE(!strstr(out, "info line") && !strstr(out, "debug line"));
    ASSERT_CONTAINS(out, "level=warn component=x msg=\"warn line\"");
    ASSERT_CONTAINS(out, "level=error component=x msg=\"error line\"");
    free(out);
    oe_log_setup(OE_LOG_DEBUG, OE_LOG_TEXT);
    capture();
    oe_log(OE_LOG_DEBUG, "x", NULL, "debug line");
    out = captured();
    ASSERT_CONTAINS(out, "level=debug");
    free(out);
}

/* Each JSON line parses, with every field a string, control characters
 * and quotes escaped. */
static void test_json_format(void)
{
    oe_log_setup(OE_LOG_INFO, OE_LOG_JSON);
    capture();
    oe_log(OE_LOG_ERROR, "worker", OE_LOG_FIELDS("nonce", "q\"\\\t\x01", "offset", "12"),
           "data loss: %s", "gone\r\n");
    char *out = captured();
    oe_log_setup(OE_LOG_INFO, OE_LOG_TEXT);
    ASSERT_EQ(count_lines(out), 1);
    char err[200];
    size_t len = strlen(out) - 1; /* without the newline */
    oe_json_doc *d = test_json_parse(out, len, 0, err, sizeof err);
    ASSERT_TRUE(d != NULL);
    if (!d) {
        fprintf(stderr, "%s: %s\n", err, out);
        free(out);
        return;
    }
    const oe_json *root = oe_json_root(d);
    const oe_json *v = oe_json_get(root, "level");
    ASSERT_STREQ(jstr(v), "error");
    v = oe_json_get(root, "component");
    ASSERT_STREQ(jstr(v), "worker");
    v = oe_json_get(root, "msg");
    ASSERT_STREQ(jstr(v), "data loss: gone\r\n");
    v = oe_json_get(root, "nonce");
    ASSERT_STREQ(jstr(v), "q\"\\\t\x01");
    v = oe_json_get(root, "offset");
    ASSERT_STREQ(jstr(v), "12");
    v = oe_json_get(root, "ts");
    ASSERT_EQ(jstr(v) ? strlen(jstr(v)) : 0, strlen("2026-11-30T01:02:03.456Z"));
    oe_json_doc_free(d);
    free(out);
}

/* A value longer than OE_LOG_VALUE_MAX is cut (on a character boundary)
 * and marked; the line stays one line. */
static void test_long_values_cut(void)
{
    oe_log_setup(OE_LOG_INFO, OE_LOG_TEXT);
    size_t n = OE_LOG_VALUE_MAX + 100;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i += 2) {
        big[i] = (char)0xc3; /* é, two bytes */
        big[i + 1] = (char)0xa9;
    }
    big[n] = '\0';
    capture();
    oe_log(OE_LOG_INFO, "x", OE_LOG_FIELDS("v", big), "%s", big);
    char *out = captured();
    ASSERT_EQ(count_lines(out), 1);
    char *v = strstr(out, " v=\"");
    ASSERT_TRUE(v != NULL);
    if (v) {
        char *end = strstr(v + 4, "...\"");
        ASSERT_TRUE(end != NULL);
        ASSERT_TRUE(end && (size_t)(end - (v + 4)) <= OE_LOG_VALUE_MAX);
        ASSERT_TRUE(end && ((end - (v + 4)) % 2) == 0); /* whole characters */
    }
    free(out);
    free(big);
}

/* A message cut in the middle of a character loses the whole character,
 * not its last byte to a U+FFFD: 2047 bytes, then a 3-byte character that
 * crosses the limit, then more. */
static void test_message_cut_before_a_split_character(void)
{
    oe_log_setup(OE_LOG_INFO, OE_LOG_JSON);
    char msg[OE_LOG_VALUE_MAX + 16];
    memset(msg, 'a', OE_LOG_VALUE_MAX - 1);
    strcpy(msg + OE_LOG_VALUE_MAX - 1, "\xe2\x82\xac"
                                       "bbb"); /* U+20AC */
    capture();
    oe_log(OE_LOG_INFO, "x", NULL, "%s", msg);
    char *out = captured();
    oe_log_setup(OE_LOG_INFO, OE_LOG_TEXT);
    char err[200];
    oe_json_doc *d = test_json_parse(out, strlen(out) - 1, 0, err, sizeof err);
    ASSERT_TRUE(d != NULL);
    const char *m = d ? jstr(oe_json_get(oe_json_root(d), "msg")) : NULL;
    ASSERT_TRUE(m != NULL);
    if (m) {
        ASSERT_EQ(strlen(m), OE_LOG_VALUE_MAX - 1 + 3);
        ASSERT_TRUE(strspn(m, "a") == OE_LOG_VALUE_MAX - 1);
        ASSERT_STREQ(m + OE_LOG_VALUE_MAX - 1, "...");
    }
    oe_json_doc_free(d);
    free(out);
}

/* The whole captured output (caller frees); *len its length. */
static char *captured_all(size_t *len)
{
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    return buf;
}

/* xorshift64*: the same strings on every run (the seed is printed on a
 * failure). */
static unsigned long long rng_state;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (unsigned)((rng_state * 2685821657736338717ULL) >> 33) % n;
}

/* A random NUL-terminated byte string of about len bytes: random bytes,
 * and pieces chosen to be awkward (quotes, backslashes, controls, C1 and
 * U+2028, valid multi-byte characters, overlong forms, surrogates, code
 * points above U+10FFFF, characters cut short). */
static size_t random_text(char *out, size_t len)
{
    static const char *const pieces[] = {
        "\"",
        "\\",
        "\n",
        "\r\n",
        "\t",
        "\x01",
        "\x1b[31m",
        "\x7f",
        "\xc2\x85",
        "\xe2\x80\xa8",
        "\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9f\x98\x80",
        "\xc0\xaf",
        "\xe0\x80\xaf",
        "\xed\xa0\x80",
        "\xf4\x90\x80\x80",
        "\xc3",
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\x80",
        "\xbf",
        "\xfe\xff",
        "= ",
        "}",
        "{\"a\":",
        "...",
    };
    size_t n = 0;
    while (n < len) {
        if (rnd(3) == 0) {
            const char *p = pieces[rnd(sizeof pieces / sizeof pieces[0])];
            size_t k = strlen(p);
            if (n + k > len)
                break;
            memcpy(out + n, p, k);
            n += k;
        } else {
            out[n++] = (char)(1 + rnd(255));
        }
    }
    out[n] = '\0';
    return n;
}

/* A length: mostly short, sometimes around and past OE_LOG_VALUE_MAX. */
static size_t random_len(void)
{
    switch (rnd(8)) {
    case 0:
        return OE_LOG_VALUE_MAX - 8 + rnd(16);
    case 1:
        return 500 + rnd(6000);
    case 2:
        return 0;
    default:
        return rnd(40);
    }
}

#define PROP_EVENTS 4000
#define PROP_FIELDS 40

/* Property: whatever the bytes of the message and of the fields (keys
 * too), long or short, many or few, every event is one line of at most
 * OE_LOG_LINE_MAX bytes; in JSON every line parses with the strict parser
 * (which refuses invalid UTF-8 and raw control characters), every value is
 * a string, a message that is valid UTF-8 and not too long comes back
 * whole, a longer one is cut and ends in "..."; in text every line is valid
 * UTF-8 without control bytes. */
static void test_random_bytes_always_one_valid_line(void)
{
    static char texts[2 * PROP_FIELDS + 1][8000];
    static const char *fields[2 * PROP_FIELDS + 1];
    static size_t msg_len[PROP_EVENTS];
    static unsigned char msg_valid[PROP_EVENTS];
    for (int json = 0; json <= 1; json++) {
        rng_state = 0x9e3779b97f4a7c15ULL + (unsigned long long)json;
        oe_log_setup(OE_LOG_DEBUG, json ? OE_LOG_JSON : OE_LOG_TEXT);
        capture();
        for (int e = 0; e < PROP_EVENTS; e++) {
            /* Mostly a few fields; sometimes so many long ones that they
             * cannot all fit in a line. */
            int nf = rnd(10) == 0 ? PROP_FIELDS : (int)rnd(6);
            size_t m = random_text(texts[0], rnd(10) == 0 ? 3000 + rnd(3000) : random_len());
            msg_len[e] = m;
            msg_valid[e] = (unsigned char)oe_utf8_valid(texts[0], m);
            for (int i = 0; i < nf; i++) {
                /* Keys start with their index: never two alike. */
                int k = snprintf(texts[1 + 2 * i], 16, "k%d", i);
                random_text(texts[1 + 2 * i] + k, rnd(4) == 0 ? 10 + rnd(300) : rnd(8));
                random_text(texts[2 + 2 * i], nf == PROP_FIELDS ? 1000 + rnd(2000) : random_len());
                fields[2 * i] = texts[1 + 2 * i];
                fields[2 * i + 1] = texts[2 + 2 * i];
            }
            fields[2 * nf] = NULL;
            oe_log(OE_LOG_INFO, "prop", fields, "%s", texts[0]);
        }
        size_t total = 0;
        char *out = captured_all(&total);
        oe_log_setup(OE_LOG_INFO, OE_LOG_TEXT);
        ASSERT_TRUE(out != NULL);
        if (!out)
            return;
        /* Recompute each event's message to compare (same seed). */
        int lines = 0, bad = 0;
        for (size_t at = 0; at < total && bad < 5; lines++) {
            char *nl = memchr(out + at, '\n', total - at);
            ASSERT_TRUE(nl != NULL);
            if (!nl)
                break;
            size_t len = (size_t)(nl - (out + at));
            const char *l = out + at;
            at += len + 1;
            ASSERT_TRUE(len + 1 <= OE_LOG_LINE_MAX);
            ASSERT_TRUE(oe_utf8_valid(l, len));
            for (size_t i = 0; i < len; i++)
                if ((unsigned char)l[i] < 0x20 || l[i] == 0x7f) {
                    OE_FAIL_("line %d: control byte 0x%02x at %zu", lines + 1, (unsigned char)l[i],
                             i);
                    bad++;
                    break;
                }
            if (!json || lines >= PROP_EVENTS)
                continue;
            char err[200];
            oe_json_doc *d = test_json_parse(l, len, 0, err, sizeof err);
            if (!d) {
                OE_FAIL_("line %d does not parse: %s: %.300s", lines + 1, err, l);
                bad++;
                continue;
            }
            const oe_json *root = oe_json_root(d);
            ASSERT_TRUE(root->type == OE_JSON_OBJECT);
            for (uint32_t i = 0; root->type == OE_JSON_OBJECT && i < root->len; i++)
                ASSERT_TRUE(root->members[i].value.type == OE_JSON_STRING);
            const char *msg = jstr(oe_json_get(root, "msg"));
            ASSERT_TRUE(msg != NULL);
            if (msg && msg_len[lines] > OE_LOG_VALUE_MAX) {
                size_t ml = strlen(msg);
                ASSERT_TRUE(ml >= 3 && strcmp(msg + ml - 3, "...") == 0);
            } else if (msg && msg_valid[lines]) {
                ASSERT_EQ(strlen(msg), msg_len[lines]);
            }
            oe_json_doc_free(d);
        }
        ASSERT_EQ(lines, PROP_EVENTS);
        free(out);
    }
}

/* A value cut for want of room ends in "..." and the line keeps its end;
 * fields with no room at all are counted in dropped_fields. */
static void test_full_line_cuts_values_not_the_line(void)
{
    enum { N = 30 };
    static char value[N][OE_LOG_VALUE_MAX + 1];
    const char *fields[2 * N + 1];
    static char keys[N][16];
    for (int i = 0; i < N; i++) {
        memset(value[i], '\x01', OE_LOG_VALUE_MAX); /* 6 bytes each when escaped */
        value[i][OE_LOG_VALUE_MAX] = '\0';
        snprintf(keys[i], sizeof keys[i], "f%d", i);
        fields[2 * i] = keys[i];
        fields[2 * i + 1] = value[i];
    }
    fields[2 * N] = NULL;
    for (int json = 0; json <= 1; json++) {
        oe_log_setup(OE_LOG_INFO, json ? OE_LOG_JSON : OE_LOG_TEXT);
        capture();
        oe_log(OE_LOG_INFO, "x", fields, "full");
        size_t len = 0;
        char *out = captured_all(&len);
        oe_log_setup(OE_LOG_INFO, OE_LOG_TEXT);
        ASSERT_TRUE(out != NULL);
        if (!out)
            return;
        ASSERT_EQ(count_lines(out), 1);
        ASSERT_TRUE(len <= OE_LOG_LINE_MAX);
        ASSERT_CONTAINS(out, "...\"");
        ASSERT_CONTAINS(out, json ? ",\"dropped_fields\":\"" : " dropped_fields=");
        ASSERT_TRUE(len >= 2 && out[len - 1] == '\n' && (!json || out[len - 2] == '}'));
        if (json) {
            char err[200];
            oe_json_doc *d = test_json_parse(out, len - 1, 0, err, sizeof err);
            ASSERT_TRUE(d != NULL);
            if (d) {
                const oe_json *root = oe_json_root(d);
                ASSERT_STREQ(jstr(oe_json_get(root, "msg")), "full");
                ASSERT_TRUE(oe_json_get(root, "f0") != NULL);
                oe_json_doc_free(d);
            }
        }
        free(out);
    }
}

/* Bytes that are not UTF-8 become U+FFFD, one for each byte; C1 controls
 * and U+2028 are escaped; valid characters are kept. In text too. */
static void test_invalid_utf8_replaced(void)
{
    oe_log_setup(OE_LOG_INFO, OE_LOG_JSON);
    capture();
    oe_log(OE_LOG_INFO, "x", OE_LOG_FIELDS("v", "a\xff\xc3\xa9\xed\xa0\x80\xc2\x85\xe2\x80\xa8z"),
           "m\xc0\xaf");
    oe_log_setup(OE_LOG_INFO, OE_LOG_TEXT);
    oe_log(OE_LOG_INFO, "x", OE_LOG_FIELDS("v", "a\xffz", "w", "\xc3\xa9"), "m");
    char *out = captured();
    ASSERT_CONTAINS(out, "\"msg\":\"m\\ufffd\\ufffd\"");
    ASSERT_CONTAINS(out, "\"v\":\"a\\ufffd\xc3\xa9\\ufffd\\ufffd\\ufffd\\u0085\\u2028z\"");
    ASSERT_CONTAINS(out, " v=\"a\\ufffdz\" w=\"\xc3\xa9\"\n");
    free(out);
}

/* oe_log_limited: the first line, a line of another key, and the first
 * after the interval or a reset are written, each with the count of lines
 * left out before it; the rest are counted out. */
static void test_rate_limited_lines(void)
{
    oe_log_setup(OE_LOG_INFO, OE_LOG_TEXT);
    oe_log_limit limit = OE_LOG_LIMIT(0.3);
    capture();
    ASSERT_EQ(oe_log_limited(&limit, 1, OE_LOG_WARN, "t", "first %d", 1), 1);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(oe_log_limited(&limit, 1, OE_LOG_WARN, "t", "again"), 0);
    ASSERT_EQ(oe_log_limited(&limit, 2, OE_LOG_WARN, "t", "other key"), 1);
    ASSERT_EQ(oe_log_limited(&limit, 2, OE_LOG_WARN, "t", "again"), 0);
    oe_log_limit_reset(&limit);
    ASSERT_EQ(oe_log_limited(&limit, 2, OE_LOG_WARN, "t", "after reset"), 1);
    ASSERT_EQ(oe_log_limited(&limit, 2, OE_LOG_WARN, "t", "again"), 0);
    ASSERT_EQ(oe_log_limited(&limit, 2, OE_LOG_WARN, "t", "again"), 0);
    struct timespec ts = {0, 350 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ASSERT_EQ(oe_log_limited(&limit, 2, OE_LOG_WARN, "t", "after the interval"), 1);
    char *out = captured();
    ASSERT_EQ(count_lines(out), 4);
    ASSERT_CONTAINS(out, "msg=\"first 1\" similar_not_logged=0\n");
    ASSERT_CONTAINS(out, "msg=\"other key\" similar_not_logged=5\n");
    ASSERT_CONTAINS(out, "msg=\"after reset\" similar_not_logged=1\n");
    ASSERT_CONTAINS(out, "msg=\"after the interval\" similar_not_logged=2\n");
    free(out);
}

int main(void)
{
    char dir[] = "/tmp/oe-test-log-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/stderr", dir);
    RUN_TEST(test_text_format);
    RUN_TEST(test_levels);
    RUN_TEST(test_json_format);
    RUN_TEST(test_long_values_cut);
    RUN_TEST(test_message_cut_before_a_split_character);
    RUN_TEST(test_random_bytes_always_one_valid_line);
    RUN_TEST(test_full_line_cuts_values_not_the_line);
    RUN_TEST(test_invalid_utf8_replaced);
    RUN_TEST(test_rate_limited_lines);
    unlink(path);
    rmdir(dir);
    return TEST_REPORT();
}
