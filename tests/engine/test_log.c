/* Tests engine/log.c: the text (logfmt) and JSON line formats, escaping
 * (one event is one line whatever its text), levels, and the cut of long
 * values. stderr is redirected into a file of this test's directory. */
#include <fcntl.h>
#include <stdlib.h>
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
    unlink(path);
    rmdir(dir);
    return TEST_REPORT();
}
