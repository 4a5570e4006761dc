/* Tests for engine/json.c: strict parsing and Python-identical output.
 *
 * Extra modes for the test runner (reference data from
 * tests/engine/gen_json_vectors.py):
 *   test_json --float-vectors FILE   lines "<16 hex bits> <python repr>"
 *   test_json --canon FILE           one JSON document per line; prints the
 *                                    COMPACT and DEFAULT dumps (or
 *                                    "ERROR <message>") for each
 */
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json.h"
#include "engine/status.h"
#include "tests/test.h"

/* Parses in[0..len) and dumps it; returns a malloc'd string, or NULL with
 * the parse error in err. */
/* An exact-size copy without a terminating NUL, so that ASan and valgrind
 * catch any read past len. */
static char *dup_exact(const char *in, size_t len)
{
    char *p = malloc(len ? len : 1);
    memcpy(p, in, len);
    return p;
}

static char *canon_n(const char *in, size_t len, oe_json_style style, char *err, size_t errlen)
{
    char *copy = dup_exact(in, len);
    oe_json_doc *doc = test_json_parse(copy, len, 0, err, errlen);
    free(copy);
    if (!doc)
        return NULL;
    oe_buf b;
    oe_buf_init(&b, 0);
    char *out = NULL;
    if (oe_json_dump(&b, oe_json_root(doc), style) == 0)
        out = oe_buf_detach(&b);
    else
        snprintf(err, errlen, "dump failed");
    oe_buf_free(&b);
    oe_json_doc_free(doc);
    return out;
}

static char *canon(const char *in, oe_json_style style, char *err, size_t errlen)
{
    return canon_n(in, strlen(in), style, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* Accepted documents: exact output in both styles (from Python).           */

typedef struct {
    const char *in;
    const char *compact;
    const char *deflt;
} canon_case;

static const canon_case canon_cases[] = {
    /* docs/protocol.md §3 example, escaped input and raw UTF-8 input. */
    {"{\"a\":\"\\u007f/\\u00e9\\ud83d\\ude00\"}", "{\"a\":\"\\u007f/\\u00e9\\ud83d\\ude00\"}",
     "{\"a\": \"\\u007f/\\u00e9\\ud83d\\ude00\"}"},
    {"{\"a\":\"\x7f/\xc3\xa9\xf0\x9f\x98\x80\"}", "{\"a\":\"\\u007f/\\u00e9\\ud83d\\ude00\"}",
     "{\"a\": \"\\u007f/\\u00e9\\ud83d\\ude00\"}"},
    /* Control characters: short forms, others as lowercase \u. */
    {"\"\\u0001\\u001f\\n\\t\\b\\f\\r\\u000B\\u0000x\"",
     "\"\\u0001\\u001f\\n\\t\\b\\f\\r\\u000b\\u0000x\"",
     "\"\\u0001\\u001f\\n\\t\\b\\f\\r\\u000b\\u0000x\""},
    {"\"\\u0008\\u000c\\u000A\\u000D\\u0009\"", "\"\\b\\f\\n\\r\\t\"", "\"\\b\\f\\n\\r\\t\""},
    /* Quote, backslash, slash (never escaped on output). */
    {"\"\\\"\\\\\\/\"", "\"\\\"\\\\/\"", "\"\\\"\\\\/\""},
    {"\"a/b\"", "\"a/b\"", "\"a/b\""},
    /* Surrogate pairs in (any hex case) and out; BMP edges. */
    {"\"\\uD83D\\uDE00\"", "\"\\ud83d\\ude00\"", "\"\\ud83d\\ude00\""},
    {"\"\\udbff\\udfff\\ud800\\udc00\"", "\"\\udbff\\udfff\\ud800\\udc00\"",
     "\"\\udbff\\udfff\\ud800\\udc00\""},
    {"\"\xf4\x8f\xbf\xbf\xf0\x90\x80\x80\xef\xbf\xbf\xc2\x80\"",
     "\"\\udbff\\udfff\\ud800\\udc00\\uffff\\u0080\"",
     "\"\\udbff\\udfff\\ud800\\udc00\\uffff\\u0080\""},
    {"\"\\u20ac\xe2\x82\xac\"", "\"\\u20ac\\u20ac\"", "\"\\u20ac\\u20ac\""},
    /* Key order by code point: common prefixes, NUL, non-ASCII, U+FFFF
     * before astral (UTF-16 order would differ). */
    {"{\"b\":1,\"a\":2,\"ab\":3,\"a\\u0000\":4,\"\xc3\xa9\":5,\"z\":6,\"\\ud83d\\ude00\":7,"
     "\"\\uffff\":8,\"A\":9,\"\":10,\"\\u00e9t\\u00e9\":11}",
     "{\"\":10,\"A\":9,\"a\":2,\"a\\u0000\":4,\"ab\":3,\"b\":1,\"z\":6,\"\\u00e9\":5,"
     "\"\\u00e9t\\u00e9\":11,\"\\uffff\":8,\"\\ud83d\\ude00\":7}",
     "{\"\": 10, \"A\": 9, \"a\": 2, \"a\\u0000\": 4, \"ab\": 3, \"b\": 1, \"z\": 6, "
     "\"\\u00e9\": 5, \"\\u00e9t\\u00e9\": 11, \"\\uffff\": 8, \"\\ud83d\\ude00\": 7}"},
    {"{\"key2\":1,\"key\":2,\"ke\":3,\"k\":4}", "{\"k\":4,\"ke\":3,\"key\":2,\"key2\":1}",
     "{\"k\": 4, \"ke\": 3, \"key\": 2, \"key2\": 1}"},
    /* Nesting, empty containers, whitespace. */
    {"{\"x\":[1,{\"b\":[],\"a\":{}},[[]],\"s\",-0,1.5e3],\"y\":{\"k\":null,\"j\":true,\"i\":false}"
     "}",
     "{\"x\":[1,{\"a\":{},\"b\":[]},[[]],\"s\",0,1500.0],\"y\":{\"i\":false,\"j\":true,\"k\":null}"
     "}",
     "{\"x\": [1, {\"a\": {}, \"b\": []}, [[]], \"s\", 0, 1500.0], \"y\": {\"i\": false, \"j\": "
     "true, \"k\": null}}"},
    {" \t\r\n[ 1 ,\t2.0 , \"a\" ,{ \"c\" : { \"b\" :{\"a\":[ ]} } } ]\r\n ",
     "[1,2.0,\"a\",{\"c\":{\"b\":{\"a\":[]}}}]", "[1, 2.0, \"a\", {\"c\": {\"b\": {\"a\": []}}}]"},
    {"{}", "{}", "{}"},
    {"[]", "[]", "[]"},
    {"{ }", "{}", "{}"},
    {"[\n]", "[]", "[]"},
    {"[{}]", "[{}]", "[{}]"},
    {"[[],[]]", "[[],[]]", "[[], []]"},
    /* Scalars at the top level. */
    {"true", "true", "true"},
    {"false", "false", "false"},
    {" null ", "null", "null"},
    {"\"\"", "\"\"", "\"\""},
    /* Integers: kept exactly, "-0" is 0. */
    {"123456789012345678", "123456789012345678", "123456789012345678"},
    {"123456789012345678901234567890", "123456789012345678901234567890",
     "123456789012345678901234567890"},
    {"-123456789012345678901234567890", "-123456789012345678901234567890",
     "-123456789012345678901234567890"},
    {"-0", "0", "0"},
    {"[0,-0,-1,10]", "[0,0,-1,10]", "[0, 0, -1, 10]"},
    /* Floats: Python repr. */
    {"1e16", "1e+16", "1e+16"},
    {"1E16", "1e+16", "1e+16"},
    {"10000000000000000.0", "1e+16", "1e+16"},
    {"1e15", "1000000000000000.0", "1000000000000000.0"},
    {"1e-7", "1e-07", "1e-07"},
    {"0.1", "0.1", "0.1"},
    {"0.10000000000000000555", "0.1", "0.1"},
    {"-0.0", "-0.0", "-0.0"},
    {"-0e5", "-0.0", "-0.0"},
    {"0e0", "0.0", "0.0"},
    {"1.0", "1.0", "1.0"},
    {"1e0", "1.0", "1.0"},
    {"100.0", "100.0", "100.0"},
    {"1e2", "100.0", "100.0"},
    {"1e22", "1e+22", "1e+22"},
    {"5e-324", "5e-324", "5e-324"},
    {"4.9406564584124654e-324", "5e-324", "5e-324"},
    {"1.7976931348623157e+308", "1.7976931348623157e+308", "1.7976931348623157e+308"},
    {"0.0001", "0.0001", "0.0001"},
    {"0.00001", "1e-05", "1e-05"},
    {"123.456", "123.456", "123.456"},
    {"1E+2", "100.0", "100.0"},
    {"1e-400", "0.0", "0.0"}, /* underflow to zero, as in Python */
    {"-1e-400", "-0.0", "-0.0"},
    {"1.5e-323", "1.5e-323", "1.5e-323"},
    {"9007199254740993.0", "9007199254740992.0", "9007199254740992.0"},
    {"0.1000000000000000055511151231257827021181583404541015625", "0.1", "0.1"},
    {"[0.1,-2.5E-5,1e23]", "[0.1,-2.5e-05,1e+23]", "[0.1, -2.5e-05, 1e+23]"},
};

static void test_canon_table(void)
{
    char err[256];
    for (size_t i = 0; i < sizeof canon_cases / sizeof canon_cases[0]; i++) {
        const canon_case *c = &canon_cases[i];
        err[0] = '\0';
        char *a = canon(c->in, OE_JSON_COMPACT, err, sizeof err);
        char *b = canon(c->in, OE_JSON_DEFAULT, err, sizeof err);
        if (!a || !b)
            fprintf(stderr, "case %zu [%s]: %s\n", i, c->in, err);
        ASSERT_STREQ(a, c->compact);
        ASSERT_STREQ(b, c->deflt);
        free(a);
        free(b);
    }
}

/* Every proper prefix of every accepted case parses or fails cleanly (most
 * fail; "1e16" has the prefix "1"), never reading past its end. */
static void test_prefixes(void)
{
    char err[256];
    for (size_t i = 0; i < sizeof canon_cases / sizeof canon_cases[0]; i++) {
        const char *in = canon_cases[i].in;
        size_t len = strlen(in);
        for (size_t k = 0; k < len; k++) {
            char *copy = dup_exact(in, k);
            err[0] = '\0';
            oe_json_doc *doc = test_json_parse(copy, k, 0, err, sizeof err);
            if (doc) {
                oe_buf b;
                oe_buf_init(&b, 0);
                ASSERT_EQ(oe_json_dump(&b, oe_json_root(doc), OE_JSON_DEFAULT), 0);
                oe_buf_free(&b);
            } else {
                ASSERT_CONTAINS(err, "invalid JSON at byte ");
            }
            oe_json_doc_free(doc);
            free(copy);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Rejected documents.                                                      */

typedef struct {
    const char *in;
    size_t len;      /* 0: strlen(in) */
    const char *msg; /* expected substring of the error */
} reject_case;

static const reject_case reject_cases[] = {
    {"", 0, "at byte 0: unexpected end of input"},
    {"   ", 0, "at byte 3: unexpected end of input"},
    {"1E400", 0, "at byte 0: number out of range"},
    {"-1e400", 0, "number out of range"},
    {"[1, 1e309]", 0, "at byte 4: number out of range"},
    {"NaN", 0, "at byte 0"},
    {"Infinity", 0, "at byte 0"},
    {"-Infinity", 0, "at byte 1"},
    {"[nan]", 0, "at byte 1"},
    {"{\"a\":1,\"a\":2}", 0, "at byte 7: duplicate key \"a\""},
    {"{\"x\":{\"b\":1,\"a\":2,\"b\":3}}", 0, "at byte 18: duplicate key \"b\""},
    {"[{\"k\\u00e9\":1,\"k\xc3\xa9\":2}]", 0, "duplicate key \"k\\u00e9\""},
    {"{\"a\\u0000\":1,\"a\\u0000\":2}", 0, "duplicate key \"a\\u0000\""},
    /* Invalid UTF-8. */
    {"\"\xc0\xaf\"", 0, "at byte 1: invalid UTF-8"}, /* overlong '/' */
    {"\"\xe0\x80\xaf\"", 0, "invalid UTF-8"},        /* overlong 3-byte */
    {"\"\xf0\x80\x80\xaf\"", 0, "invalid UTF-8"},    /* overlong 4-byte */
    {"\"\xed\xa0\x80\"", 0, "invalid UTF-8"},        /* U+D800 encoded */
    {"\"\xed\xbf\xbf\"", 0, "invalid UTF-8"},        /* U+DFFF encoded */
    {"\"\xf4\x90\x80\x80\"", 0, "invalid UTF-8"},    /* U+110000 */
    {"\"\xf5\x80\x80\x80\"", 0, "invalid UTF-8"},
    {"\"\xff\"", 0, "invalid UTF-8"},
    {"\"\x80\"", 0, "invalid UTF-8"},              /* lone continuation */
    {"\"ab\xc3\"", 0, "at byte 3: invalid UTF-8"}, /* truncated */
    {"\"\xe2\x82\"", 0, "invalid UTF-8"},          /* truncated */
    {"\"\xf0\x9f\x98\"", 0, "invalid UTF-8"},      /* truncated */
    {"{\"\xc3\x28\":1}", 0, "invalid UTF-8"},      /* in a key */
    /* Lone surrogates. */
    {"\"\\ud83d\"", 0, "at byte 1: lone surrogate"},
    {"\"\\ude00\"", 0, "lone surrogate"},
    {"\"\\ud83dx\"", 0, "lone surrogate"},
    {"\"\\ud83d\\u0041\"", 0, "lone surrogate"},
    {"\"\\ud83d\\ud83d\"", 0, "lone surrogate"},
    {"\"\\ude00\\ud83d\"", 0, "lone surrogate"},
    /* Raw control characters and bad escapes. */
    {"\"a\nb\"", 0, "at byte 2: control character 0x0a"},
    {"\"\t\"", 0, "control character 0x09"},
    {"\"\x01\"", 0, "control character 0x01"},
    {"\"\x1f\"", 0, "control character 0x1f"},
    {"\"a\\x\"", 0, "at byte 2: invalid escape"},
    {"\"\\u12\"", 0, "invalid \\u escape"},
    {"\"\\u12g4\"", 0, "invalid \\u escape"},
    {"\"\\U0041\"", 0, "invalid escape"},
    {"\"\\'\"", 0, "invalid escape"},
    {"\"abc", 0, "at byte 0: unterminated string"},
    {"\"abc\\\"", 0, "unterminated string"},
    {"\"\\", 0, "unterminated string"},
    /* Trailing garbage, separators. */
    {"{} x", 0, "at byte 3: unexpected data"},
    {"[1] [2]", 0, "unexpected data"},
    {"truex", 0, "at byte 4: unexpected data"},
    {"1 2", 0, "unexpected data"},
    {"[1,]", 0, "at byte 3"},
    {"[,1]", 0, "at byte 1"},
    {"{\"a\":1,}", 0, "at byte 7: unexpected character '}', expected a string key"},
    {"{\"a\" 1}", 0, "at byte 5: unexpected character '1', expected ':'"},
    {"{\"a\":1 \"b\":2}", 0, "expected ',' or '}'"},
    {"[1 2]", 0, "expected ',' or ']'"},
    {"[1}", 0, "at byte 2"},
    {"{\"a\":1]", 0, "at byte 6"},
    {"{1:2}", 0, "expected a string key"},
    {"{'a':2}", 0, "at byte 1: unexpected byte 0x27"},
    {"[", 0, "at byte 1: unexpected end of input"},
    {"[1", 0, "at byte 2: unexpected end of input"},
    {"{\"a\":", 0, "unexpected end of input"},
    {"{\"a\"", 0, "unexpected end of input"},
    /* Numbers. */
    {"01", 0, "at byte 0: leading zeros"},
    {"-01", 0, "at byte 1: leading zeros"},
    {"[00]", 0, "leading zeros"},
    {"1.", 0, "at byte 2: unexpected end of input, expected a digit after '.'"},
    {"1.e5", 0, "expected a digit after '.'"},
    {".5", 0, "at byte 0"},
    {"+1", 0, "at byte 0"},
    {"-", 0, "expected a digit"},
    {"- 1", 0, "expected a digit"},
    {"1e", 0, "expected a digit in the exponent"},
    {"1e+", 0, "expected a digit in the exponent"},
    {"0x10", 0, "unexpected data"},
    {"1_000", 0, "unexpected data"},
    /* Literals and whitespace. */
    {"tru", 0, "invalid literal"},
    {"True", 0, "at byte 0"},
    {"nul", 0, "invalid literal"},
    {"\f[]", 0, "at byte 0: unexpected byte 0x0c"},
    {"[1,\v2]", 0, "unexpected byte 0x0b"},
    {"\xc2\xa0[]", 0, "unexpected byte 0xc2"},
    {"\xef\xbb\xbf{}", 0, "unexpected byte 0xef"}, /* BOM */
    {"[1]\0", 4, "at byte 3: unexpected data"},
    {"\0", 1, "unexpected byte 0x00"},
    /* Found by tests/fuzz/fuzz_json.c: the innermost container closed before
     * any member existed, and the parser computed NULL + 0. Only clang's
     * UBSan reports that (the fuzz build; the gcc builds cannot), so the
     * same input is also the seed regress-empty-container-null-offset, which
     * the fuzz smoke run of `make test` replays. */
    {"[[[[[]\xab\0", 8, "at byte 6: unexpected byte 0xab, expected ',' or ']'"},
};

static void test_reject_table(void)
{
    for (size_t i = 0; i < sizeof reject_cases / sizeof reject_cases[0]; i++) {
        const reject_case *c = &reject_cases[i];
        char err[256] = "";
        size_t len = c->len ? c->len : strlen(c->in);
        char *copy = dup_exact(c->in, len);
        oe_json_doc *doc = test_json_parse(copy, len, 0, err, sizeof err);
        free(copy);
        if (doc)
            fprintf(stderr, "case %zu [%s] accepted\n", i, c->in);
        ASSERT_TRUE(doc == NULL);
        oe_json_doc_free(doc);
        ASSERT_CONTAINS(err, "invalid JSON at byte ");
        ASSERT_CONTAINS(err, c->msg);
        ASSERT_TRUE(strchr(err, '\n') == NULL);
    }
}

static void test_errors_never_overflow(void)
{
    char err[8];
    memset(err, 'x', sizeof err);
    ASSERT_TRUE(test_json_parse("[1,", 3, 0, err, sizeof err) == NULL);
    ASSERT_EQ(strlen(err), 7);
    ASSERT_TRUE(test_json_parse("[1,", 3, 0, NULL, 0) == NULL);
    ASSERT_TRUE(test_json_parse("{\"a\":1,\"a\":1}", 13, 0, NULL, 0) == NULL);
    /* A long duplicate key is shown shortened, on one line. */
    char big[600], msg[512];
    int n = snprintf(big, sizeof big, "{\"%0200d\":1,\"%0200d\":2}", 0, 0);
    ASSERT_TRUE(test_json_parse(big, (size_t)n, 0, msg, sizeof msg) == NULL);
    ASSERT_CONTAINS(msg, "duplicate key \"0000");
    ASSERT_CONTAINS(msg, "...");
    ASSERT_TRUE(strlen(msg) < 150);
    /* The input need not be NUL-terminated: parse a prefix only. */
    oe_json_doc *doc = test_json_parse("[12]xyz", 4, 0, msg, sizeof msg);
    ASSERT_TRUE(doc != NULL);
    oe_json_doc_free(doc);
    doc = test_json_parse("1.5e3", 3, 0, msg, sizeof msg); /* "1.5" */
    ASSERT_TRUE(doc != NULL);
    if (doc)
        ASSERT_TRUE(oe_json_root(doc)->num == 1.5);
    oe_json_doc_free(doc);
    doc = test_json_parse("12345", 2, 0, msg, sizeof msg); /* "12" */
    ASSERT_TRUE(doc != NULL);
    if (doc)
        ASSERT_STREQ(oe_json_root(doc)->str, "12");
    oe_json_doc_free(doc);
}

/* ------------------------------------------------------------------------ */
/* Depth limit.                                                             */

static char *nested(size_t depth, const char *open, const char *close)
{
    size_t lo = strlen(open), lc = strlen(close);
    char *s = malloc(depth * (lo + lc) + 2);
    size_t n = 0;
    for (size_t i = 0; i < depth; i++, n += lo)
        memcpy(s + n, open, lo);
    for (size_t i = 0; i < depth; i++, n += lc)
        memcpy(s + n, close, lc);
    s[n] = '\0';
    return s;
}

/* depth - 1 levels of {"a": around an empty object. */
static char *nested_objects(size_t depth)
{
    char *outer = nested(depth - 1, "{\"a\":", "}");
    size_t len = strlen(outer), half = (depth - 1) * 5;
    char *s = malloc(len + 3);
    memcpy(s, outer, half);
    memcpy(s + half, "{}", 2);
    memcpy(s + half + 2, outer + half, len - half + 1);
    free(outer);
    return s;
}

static void test_depth(void)
{
    char err[256];
    char *s = nested(OE_JSON_MAX_DEPTH, "[", "]");
    oe_json_doc *doc = test_json_parse(s, strlen(s), 0, err, sizeof err);
    ASSERT_TRUE(doc != NULL);
    oe_buf b;
    oe_buf_init(&b, 0);
    ASSERT_EQ(oe_json_dump(&b, oe_json_root(doc), OE_JSON_DEFAULT), 0);
    ASSERT_STREQ(b.data, s);
    oe_buf_free(&b);
    oe_json_doc_free(doc);
    free(s);

    s = nested(OE_JSON_MAX_DEPTH + 1, "[", "]");
    ASSERT_TRUE(test_json_parse(s, strlen(s), 0, err, sizeof err) == NULL);
    ASSERT_CONTAINS(err, "at byte 64: nesting deeper than 64 levels");
    free(s);

    /* Objects: {"a":{"a":...{}...}} with the empty object at depth 64. */
    s = nested_objects(OE_JSON_MAX_DEPTH);
    doc = test_json_parse(s, strlen(s), 0, err, sizeof err);
    ASSERT_TRUE(doc != NULL);
    oe_json_doc_free(doc);
    ASSERT_TRUE(test_json_parse(s, strlen(s) - 1, 0, err, sizeof err) == NULL); /* one '}' short */
    ASSERT_CONTAINS(err, "unexpected end of input");
    free(s);
    s = nested_objects(OE_JSON_MAX_DEPTH + 1);
    ASSERT_TRUE(test_json_parse(s, strlen(s), 0, err, sizeof err) == NULL);
    ASSERT_CONTAINS(err, "at byte 320: nesting deeper than 64 levels");
    free(s);

    /* Custom limits: exactly max accepted, max+1 rejected. */
    ASSERT_TRUE((doc = test_json_parse("[[[]]]", 6, 3, err, sizeof err)) != NULL);
    oe_json_doc_free(doc);
    ASSERT_TRUE(test_json_parse("[[[[]]]]", 8, 3, err, sizeof err) == NULL);
    ASSERT_CONTAINS(err, "at byte 3: nesting deeper than 3 levels");
    ASSERT_TRUE(test_json_parse("[{\"a\":[]}]", 10, 2, err, sizeof err) == NULL);
    ASSERT_TRUE((doc = test_json_parse("[1]", 3, 1, err, sizeof err)) != NULL);
    oe_json_doc_free(doc);
    ASSERT_TRUE((doc = test_json_parse("1", 1, 1, err, sizeof err)) != NULL);
    oe_json_doc_free(doc);

    /* Pathological inputs: no crash, early rejection. */
    size_t big = 1000000;
    char *p = malloc(big);
    memset(p, '[', big);
    ASSERT_TRUE(test_json_parse(p, 100000, 0, err, sizeof err) == NULL);
    ASSERT_CONTAINS(err, "nesting deeper");
    ASSERT_TRUE(test_json_parse(p, big, 0, err, sizeof err) == NULL);
    /* Even a caller-chosen huge limit cannot overflow the stack: the parser
     * and the serializer are iterative. */
    ASSERT_TRUE(test_json_parse(p, big, 2000000, err, sizeof err) == NULL);
    ASSERT_CONTAINS(err, "more than 100000 values");
    free(p);
    s = nested(OE_JSON_MAX_NODES - 10, "[", "]");
    doc = test_json_parse(s, strlen(s), 1000000, err, sizeof err);
    ASSERT_TRUE(doc != NULL);
    oe_buf_init(&b, 0);
    ASSERT_EQ(oe_json_dump(&b, oe_json_root(doc), OE_JSON_COMPACT), 0);
    ASSERT_TRUE(b.data && strcmp(b.data, s) == 0);
    oe_buf_free(&b);
    oe_json_doc_free(doc);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Values.                                                                  */

static const oe_json *parse_root(oe_json_doc **doc, const char *in)
{
    char err[256];
    *doc = test_json_parse(in, strlen(in), 0, err, sizeof err);
    if (!*doc) {
        fprintf(stderr, "parse [%s]: %s\n", in, err);
        return NULL;
    }
    return oe_json_root(*doc);
}

static void test_integers(void)
{
    static const struct {
        const char *in;
        const char *text;
        int fits;
        int64_t i64;
        double num;
    } cases[] = {
        {"0", "0", 1, 0, 0.0},
        {"-0", "0", 1, 0, 0.0},
        {"7", "7", 1, 7, 7.0},
        {"-42", "-42", 1, -42, -42.0},
        {"9223372036854775807", "9223372036854775807", 1, INT64_MAX, 9223372036854775807.0},
        {"9223372036854775808", "9223372036854775808", 0, 0, 9223372036854775808.0},
        {"-9223372036854775808", "-9223372036854775808", 1, INT64_MIN, -9223372036854775808.0},
        {"-9223372036854775809", "-9223372036854775809", 0, 0, -9223372036854775808.0},
        {"18446744073709551616", "18446744073709551616", 0, 0, 18446744073709551616.0},
        {"99999999999999999999", "99999999999999999999", 0, 0, 1e20},
        {"123456789012345678", "123456789012345678", 1, 123456789012345678LL, 123456789012345678.0},
        {"9007199254740993", "9007199254740993", 1, 9007199254740993LL, 9007199254740992.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        oe_json_doc *doc;
        const oe_json *v = parse_root(&doc, cases[i].in);
        ASSERT_TRUE(v != NULL);
        if (!v)
            continue;
        ASSERT_EQ(v->type, OE_JSON_INT);
        ASSERT_STREQ(v->str, cases[i].text);
        ASSERT_EQ(v->len, strlen(cases[i].text));
        ASSERT_EQ(v->fits_int64, cases[i].fits);
        if (cases[i].fits)
            ASSERT_EQ(v->i64, cases[i].i64);
        ASSERT_TRUE(oe_json_number(v) == cases[i].num);
        oe_json_doc_free(doc);
    }

    /* Up to OE_JSON_MAX_INT_DIGITS digits, signs aside. */
    char *s = malloc(OE_JSON_MAX_INT_DIGITS + 3);
    s[0] = '-';
    memset(s + 1, '7', OE_JSON_MAX_INT_DIGITS);
    s[OE_JSON_MAX_INT_DIGITS + 1] = '\0';
    oe_json_doc *doc;
    const oe_json *v = parse_root(&doc, s);
    ASSERT_TRUE(v && v->type == OE_JSON_INT && v->len == OE_JSON_MAX_INT_DIGITS + 1);
    if (v) {
        ASSERT_STREQ(v->str, s);
        ASSERT_EQ(v->fits_int64, 0);
        ASSERT_TRUE(isinf(oe_json_number(v)) && oe_json_number(v) < 0);
        oe_buf b;
        oe_buf_init(&b, 0);
        ASSERT_EQ(oe_json_dump(&b, v, OE_JSON_COMPACT), 0);
        ASSERT_STREQ(b.data, s);
        oe_buf_free(&b);
    }
    oe_json_doc_free(doc);
    s[OE_JSON_MAX_INT_DIGITS + 1] = '7';
    s[OE_JSON_MAX_INT_DIGITS + 2] = '\0';
    char err[256];
    ASSERT_TRUE(test_json_parse(s, strlen(s), 0, err, sizeof err) == NULL);
    ASSERT_CONTAINS(err, "at byte 0: integer has more than 4300 digits");
    free(s);
}

static void test_strings_and_types(void)
{
    oe_json_doc *doc;
    const oe_json *v = parse_root(&doc, "\"a\\u0000b\"");
    ASSERT_TRUE(v && v->type == OE_JSON_STRING);
    if (v) {
        ASSERT_EQ(v->len, 3);
        ASSERT_TRUE(memcmp(v->str, "a\0b", 4) == 0);
        oe_buf b;
        oe_buf_init(&b, 0);
        ASSERT_EQ(oe_json_dump(&b, v, OE_JSON_COMPACT), 0);
        ASSERT_STREQ(b.data, "\"a\\u0000b\"");
        oe_buf_free(&b);
    }
    oe_json_doc_free(doc);

    v = parse_root(&doc, "[null,false,true,1,1.5,\"\\u00e9\",[],{}]");
    ASSERT_TRUE(v && v->type == OE_JSON_ARRAY && v->len == 8);
    if (v && v->len == 8) {
        static const oe_json_type types[] = {OE_JSON_NULL,  OE_JSON_FALSE, OE_JSON_TRUE,
                                             OE_JSON_INT,   OE_JSON_FLOAT, OE_JSON_STRING,
                                             OE_JSON_ARRAY, OE_JSON_OBJECT};
        for (size_t i = 0; i < 8; i++)
            ASSERT_EQ(v->items[i].type, types[i]);
        ASSERT_TRUE(v->items[4].num == 1.5);
        ASSERT_EQ(v->items[5].len, 2);
        ASSERT_STREQ(v->items[5].str, "\xc3\xa9");
        ASSERT_EQ(v->items[6].len, 0);
        ASSERT_EQ(v->items[7].len, 0);
    }
    oe_json_doc_free(doc);

    /* A long string (exercises the arena's large blocks and the writer's
     * direct path) round-trips. */
    size_t n = 100000;
    char *s = malloc(n + 3);
    s[0] = '"';
    for (size_t i = 1; i <= n; i++)
        s[i] = (char)('a' + i % 26);
    s[n + 1] = '"';
    s[n + 2] = '\0';
    char err[64];
    char *out = canon(s, OE_JSON_COMPACT, err, sizeof err);
    ASSERT_STREQ(out, s);
    free(out);
    free(s);
}

static void test_get(void)
{
    oe_json_doc *doc;
    const oe_json *v =
        parse_root(&doc, "{\"b\":1,\"a\":{\"x\":\"y\"},\"ab\":[],\"\":null,\"\xc3\xa9\":2,"
                         "\"k\\u0000z\":3}");
    ASSERT_TRUE(v != NULL);
    if (v) {
        const oe_json *a = oe_json_get(v, "a");
        ASSERT_TRUE(a && a->type == OE_JSON_OBJECT);
        ASSERT_STREQ(oe_json_get(a, "x")->str, "y");
        ASSERT_EQ(oe_json_get(v, "b")->i64, 1);
        ASSERT_EQ(oe_json_get(v, "ab")->type, OE_JSON_ARRAY);
        ASSERT_EQ(oe_json_get(v, "")->type, OE_JSON_NULL);
        ASSERT_EQ(oe_json_get(v, "\xc3\xa9")->i64, 2);
        ASSERT_TRUE(oe_json_get(v, "k") == NULL); /* "k\0z" is not "k" */
        ASSERT_TRUE(oe_json_get(v, "c") == NULL);
        ASSERT_TRUE(oe_json_get(v, "A") == NULL);
        ASSERT_TRUE(oe_json_get(v, "abc") == NULL);
        ASSERT_TRUE(oe_json_get(a, "a") == NULL);
        ASSERT_TRUE(oe_json_get(oe_json_get(v, "b"), "a") == NULL);
        ASSERT_TRUE(oe_json_get(NULL, "a") == NULL);
        ASSERT_EQ(v->len, 6);
        ASSERT_STREQ(v->members[0].key, "");
        ASSERT_EQ(v->members[4].key_len, 3);
    }
    oe_json_doc_free(doc);
    ASSERT_TRUE(oe_json_root(NULL) == NULL);
    oe_json_doc_free(NULL);

    /* Values built by hand: an unsorted object is still dumped sorted; an
     * object's members must be sorted for look-ups (json.h), as the
     * parser leaves them; an empty static object dumps as {}. */
    oe_json one = {.type = OE_JSON_INT, .str = "1", .len = 1};
    oe_json str = {.type = OE_JSON_STRING, .str = "hi", .len = 2};
    oe_json_member sorted[3] = {{"action", 6, one}, {"b", 1, one}, {"payload", 7, str}};
    oe_json sobj = {.type = OE_JSON_OBJECT, .len = 3, .members = sorted};
    ASSERT_TRUE(oe_json_get(&sobj, "action") && oe_json_get(&sobj, "action")->type == OE_JSON_INT);
    ASSERT_TRUE(oe_json_get(&sobj, "payload") != NULL);
    ASSERT_TRUE(oe_json_get(&sobj, "zzz") == NULL);
    oe_json_member ms[3] = {{"payload", 7, str}, {"action", 6, one}, {"b", 1, one}};
    oe_json obj = {.type = OE_JSON_OBJECT, .len = 3, .members = ms};
    oe_buf b;
    oe_buf_init(&b, 0);
    ASSERT_EQ(oe_json_dump(&b, &obj, OE_JSON_DEFAULT), 0);
    ASSERT_STREQ(b.data, "{\"action\": 1, \"b\": 1, \"payload\": \"hi\"}");
    oe_buf_reset(&b);
    static const oe_json empty = {.type = OE_JSON_OBJECT};
    ASSERT_EQ(oe_json_dump(&b, &empty, OE_JSON_COMPACT), 0);
    ASSERT_STREQ(b.data, "{}");
    ASSERT_TRUE(oe_json_get(&empty, "a") == NULL);
    oe_buf_reset(&b);
    oe_json bad = {.type = OE_JSON_FLOAT, .num = INFINITY};
    ASSERT_EQ(oe_buf_puts(&b, "x"), 0);
    ASSERT_EQ(oe_json_dump(&b, &bad, OE_JSON_COMPACT), OE_EINVAL);
    oe_json arr = {.type = OE_JSON_ARRAY, .len = 1, .items = &bad};
    ASSERT_EQ(oe_json_dump(&b, &arr, OE_JSON_COMPACT), OE_EINVAL);
    ASSERT_STREQ(b.data, "x"); /* failed dumps leave the buffer as it was */
    oe_buf_free(&b);
}

static void test_dump_string(void)
{
    oe_buf b;
    oe_buf_init(&b, 0);
    ASSERT_EQ(oe_json_dump_string(&b, "a\"b\\c/\x7f\xc3\xa9\xf0\x9f\x98\x80\x01", 14), 0);
    ASSERT_STREQ(b.data, "\"a\\\"b\\\\c/\\u007f\\u00e9\\ud83d\\ude00\\u0001\"");
    oe_buf_reset(&b);
    ASSERT_EQ(oe_json_dump_string(&b, "", 0), 0);
    ASSERT_STREQ(b.data, "\"\"");
    ASSERT_EQ(oe_json_dump_string(&b, "\xc3", 1), OE_EINVAL);
    ASSERT_EQ(oe_json_dump_string(&b, "ok\xed\xa0\x80", 5), OE_EINVAL);
    ASSERT_STREQ(b.data, "\"\"");
    ASSERT_EQ(b.len, 2);
    oe_buf_free(&b);

    /* The buffer's limit is honoured, and a failed dump adds nothing. */
    oe_buf_init(&b, 16);
    ASSERT_EQ(oe_buf_puts(&b, "ab"), 0);
    ASSERT_EQ(oe_json_dump_string(&b, "0123456789abcdef", 16), OE_ELIMIT);
    ASSERT_STREQ(b.data, "ab");
    oe_json_doc *doc;
    const oe_json *v = parse_root(&doc, "[1,2,3,4,5,6,7,8,9,10]");
    ASSERT_EQ(oe_json_dump(&b, v, OE_JSON_COMPACT), OE_ELIMIT);
    ASSERT_STREQ(b.data, "ab");
    ASSERT_EQ(b.len, 2);
    oe_buf_reset(&b);
    ASSERT_EQ(oe_json_dump(&b, v, OE_JSON_COMPACT), OE_ELIMIT); /* 22 bytes > 16 */
    oe_json_doc_free(doc);
    /* The failure is sticky until the buffer is reset (buf.h). */
    ASSERT_EQ(oe_buf_failed(&b), OE_ELIMIT);
    oe_buf_reset(&b);
    v = parse_root(&doc, "[1,2,3,4,5,6,7]");
    ASSERT_EQ(oe_json_dump(&b, v, OE_JSON_COMPACT), 0); /* exactly 15 */
    ASSERT_STREQ(b.data, "[1,2,3,4,5,6,7]");
    oe_json_doc_free(doc);
    oe_buf_free(&b);
}

static void test_utf8_valid(void)
{
    static const struct {
        const char *s;
        size_t len;
        int ok;
    } cases[] = {
        {"", 0, 1},
        {"abc", 3, 1},
        {"a\0b", 3, 1},
        {"\x7f", 1, 1},
        {"\xc2\x80", 2, 1},
        {"\xdf\xbf", 2, 1},
        {"\xe0\xa0\x80", 3, 1},
        {"\xed\x9f\xbf", 3, 1},     /* U+D7FF */
        {"\xee\x80\x80", 3, 1},     /* U+E000 */
        {"\xef\xbf\xbf", 3, 1},     /* U+FFFF */
        {"\xf0\x90\x80\x80", 4, 1}, /* U+10000 */
        {"\xf4\x8f\xbf\xbf", 4, 1}, /* U+10FFFF */
        {"\x80", 1, 0},
        {"\xbf", 1, 0},
        {"\xc0\x80", 2, 0}, /* overlong NUL */
        {"\xc1\xbf", 2, 0},
        {"\xe0\x9f\xbf", 3, 0},     /* overlong */
        {"\xed\xa0\x80", 3, 0},     /* U+D800 */
        {"\xed\xbf\xbf", 3, 0},     /* U+DFFF */
        {"\xf0\x8f\xbf\xbf", 4, 0}, /* overlong */
        {"\xf4\x90\x80\x80", 4, 0}, /* U+110000 */
        {"\xf5\x80\x80\x80", 4, 0},
        {"\xf8\x88\x80\x80\x80", 5, 0},
        {"\xfe", 1, 0},
        {"\xff", 1, 0},
        {"\xc3", 1, 0}, /* truncated */
        {"\xe2\x82", 2, 0},
        {"\xf0\x9f\x98", 3, 0},
        {"\xc3\x28", 2, 0},
        {"\xe2\x28\xa1", 3, 0},
        {"\xf0\x9f\x98\x80", 3, 0}, /* length cuts the sequence */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (oe_utf8_valid(cases[i].s, cases[i].len) != cases[i].ok)
            fprintf(stderr, "utf8 case %zu\n", i);
        ASSERT_EQ(oe_utf8_valid(cases[i].s, cases[i].len), cases[i].ok);
    }
}

/* ------------------------------------------------------------------------ */
/* Floats.                                                                  */

static void test_float_repr_table(void)
{
    static const struct {
        double d;
        const char *repr;
    } cases[] = {
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {1.0, "1.0"},
        {-1.0, "-1.0"},
        {100.0, "100.0"},
        {0.1, "0.1"},
        {0.5, "0.5"},
        {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},
        {9999999999999998.0, "9999999999999998.0"},
        {1e-7, "1e-07"},
        {1e22, "1e+22"},
        {1e23, "1e+23"},
        {5e-324, "5e-324"},
        {1.5e-323, "1.5e-323"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {2.2250738585072014e-308, "2.2250738585072014e-308"},
        {0.0001, "0.0001"},
        {0.00001, "1e-05"},
        {0.000123, "0.000123"},
        {2.5e-5, "2.5e-05"},
        {123.456, "123.456"},
        {1.0 / 3.0, "0.3333333333333333"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.5000000000000002e-05, "1.5000000000000002e-05"},
        {9007199254740993.0, "9007199254740992.0"},
        {1234567890123456.7, "1234567890123456.8"},
        {12345678901234567890.0, "1.2345678901234567e+19"},
        {1.5e300, "1.5e+300"},
        {-1.5e-300, "-1.5e-300"},
        {1e100, "1e+100"},
        /* Powers of two where the nearest 16-digit decimal falls outside
         * the narrow lower half of the rounding interval (from Python). */
        {0x1p-1017, "7.120236347223045e-307"},
        {0x1p-1007, "7.291122019556398e-304"},
        {0x1p-957, "8.209073602596753e-289"},
        {0x1p-808, "5.858190679279809e-244"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = oe_json_format_double(cases[i].d, out, sizeof out);
        ASSERT_STREQ(out, cases[i].repr);
        ASSERT_EQ(n, (long long)strlen(cases[i].repr));
    }
    ASSERT_EQ(oe_json_format_double(NAN, out, sizeof out), OE_EINVAL);
    ASSERT_EQ(oe_json_format_double(INFINITY, out, sizeof out), OE_EINVAL);
    ASSERT_EQ(oe_json_format_double(-INFINITY, out, sizeof out), OE_EINVAL);
    /* Too small an output buffer is refused, not overrun. */
    ASSERT_EQ(oe_json_format_double(0.1, out, 3), OE_ELIMIT);
    ASSERT_EQ(oe_json_format_double(0.1, out, 4), 3);
    ASSERT_STREQ(out, "0.1");
}

static int roundtrips(double x)
{
    char out[64];
    if (oe_json_format_double(x, out, sizeof out) < 0)
        return 0;
    return strtod(out, NULL) == x;
}

static void test_float_roundtrip(void)
{
    int bad = 0;
    for (int k = -1074; k <= 1023; k++) {
        double x = ldexp(1.0, k);
        double xs[] = {x, -x, nextafter(x, 0), nextafter(x, INFINITY)};
        for (size_t i = 0; i < 4; i++)
            if (isfinite(xs[i]) && !roundtrips(xs[i]) && bad++ < 10)
                fprintf(stderr, "no round trip: %a\n", xs[i]);
    }
    for (int k = -323; k <= 308; k++) {
        char s[16];
        snprintf(s, sizeof s, "1e%d", k);
        double x = strtod(s, NULL);
        double xs[] = {x, -x, nextafter(x, 0), nextafter(x, INFINITY)};
        for (size_t i = 0; i < 4; i++)
            if (isfinite(xs[i]) && !roundtrips(xs[i]) && bad++ < 10)
                fprintf(stderr, "no round trip: %a\n", xs[i]);
    }
    /* Pseudo-random bit patterns (xorshift). */
    uint64_t r = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        double x;
        memcpy(&x, &r, sizeof x);
        if (!isfinite(x))
            continue;
        if (!roundtrips(x) && bad++ < 10)
            fprintf(stderr, "no round trip: %a\n", x);
    }
    ASSERT_EQ(bad, 0);
}

/* ------------------------------------------------------------------------ */
/* Runner modes.                                                            */

static void chomp(char *line, ssize_t *n)
{
    while (*n > 0 && (line[*n - 1] == '\n' || line[*n - 1] == '\r'))
        line[--*n] = '\0';
}

static int float_vectors(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int shown = 0;
    unsigned long lineno = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        chomp(line, &n);
        if (n == 0)
            continue;
        char *end;
        uint64_t bits = strtoull(line, &end, 16);
        char out[64] = "";
        int ok = end == line + 16 && *end == ' ';
        if (ok) {
            double d;
            memcpy(&d, &bits, sizeof d);
            ok = oe_json_format_double(d, out, sizeof out) >= 0 && strcmp(out, end + 1) == 0;
        }
        if (ok) {
            oe_tests_passed++;
        } else {
            oe_tests_failed++;
            if (shown++ < 20)
                fprintf(stderr, "%s:%lu: [%s]: got [%s]\n", path, lineno, line, out);
        }
    }
    free(line);
    fclose(f);
    return TEST_REPORT();
}

static int canon_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    oe_buf b;
    oe_buf_init(&b, (size_t)256 << 20);
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        char err[512];
        oe_json_doc *doc = test_json_parse(line, (size_t)n, 0, err, sizeof err);
        if (!doc) {
            printf("ERROR %s\n", err);
            continue;
        }
        for (int style = 0; style < 2; style++) {
            oe_buf_reset(&b);
            if (oe_json_dump(&b, oe_json_root(doc), style ? OE_JSON_DEFAULT : OE_JSON_COMPACT) !=
                0) {
                printf("ERROR dump failed\n");
                continue;
            }
            fwrite(b.data, 1, b.len, stdout);
            putchar('\n');
        }
        oe_json_doc_free(doc);
    }
    oe_buf_free(&b);
    free(line);
    fclose(f);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Bytes the allocator hands out now (glibc). */
static size_t heap_in_use(void)
{
    return mallinfo2().uordblks;
}

/* Regression: a 1 MiB body of [0,0,0,...] took ~79 MiB to parse (64-byte
 * nodes, no cap). Now a document holds at most OE_JSON_MAX_NODES values in
 * 24-byte nodes, and the widest accepted document stays a few MiB. */
static void test_node_budget(void)
{
    ASSERT_EQ(sizeof(oe_json), 24);
    size_t len = (size_t)1 << 20;
    char *s = malloc(len);
    char err[200];
    /* 1 MiB of [0,0,...]: about 524,000 values, over the cap. */
    s[0] = '[';
    size_t n = 1;
    while (n + 3 < len) {
        s[n++] = '0';
        s[n++] = ',';
    }
    s[n++] = '0';
    s[n++] = ']';
    size_t before = heap_in_use();
    oe_json_doc *doc;
    ASSERT_EQ(oe_json_parse(s, n, 0, &doc, err, sizeof err), OE_EINVAL);
    ASSERT_TRUE(doc == NULL);
    ASSERT_CONTAINS(err, "more than 100000 values");
    ASSERT_TRUE(heap_in_use() <= before + 4096); /* nothing kept */

    /* Just under the cap, wide and nested: [[0,...],[0,...],...]. */
    n = 0;
    s[n++] = '[';
    for (int row = 0; row < 99; row++) {
        s[n++] = '[';
        for (int k = 0; k < 1000; k++) {
            memcpy(s + n, "1234567,", 8);
            n += 8;
        }
        s[n - 1] = ']';
        s[n++] = ',';
    }
    s[n - 1] = ']';
    before = heap_in_use();
    ASSERT_EQ(oe_json_parse(s, n, 0, &doc, err, sizeof err), OE_OK);
    size_t kept = heap_in_use() - before;
    /* 99,100 values of 24 bytes plus their text: about 3.3 MiB. */
    ASSERT_TRUE(kept < ((size_t)6 << 20));
    if (kept >= ((size_t)6 << 20))
        fprintf(stderr, "document of %zu bytes kept %zu bytes\n", n, kept);
    ASSERT_EQ(oe_json_root(doc)->len, 99);
    oe_json_doc_free(doc);
    free(s);
}

/* The string printer and the UTF-8 check read 8 bytes at a time where
 * they can: every byte class at every position of a run must come out as
 * the byte-at-a-time rules say. */
static void ref_escape(oe_buf *b, const unsigned char *s, size_t n)
{
    oe_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x80) { /* valid UTF-8 of 2 to 4 bytes (the callers') */
            size_t k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            uint32_t cp = c & (0x7f >> k);
            for (size_t j = 1; j < k; j++)
                cp = cp << 6 | (s[i + j] & 0x3f);
            if (cp >= 0x10000)
                oe_buf_printf(b, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10),
                              0xdc00 + ((cp - 0x10000) & 0x3ff));
            else
                oe_buf_printf(b, "\\u%04x", cp);
            i += k - 1;
        } else if (c == '"' || c == '\\') {
            oe_buf_putc(b, '\\');
            oe_buf_putc(b, (char)c);
        } else if (c == '\n') {
            oe_buf_puts(b, "\\n");
        } else if (c == '\r') {
            oe_buf_puts(b, "\\r");
        } else if (c == '\t') {
            oe_buf_puts(b, "\\t");
        } else if (c == '\b') {
            oe_buf_puts(b, "\\b");
        } else if (c == '\f') {
            oe_buf_puts(b, "\\f");
        } else if (c < 0x20 || c == 0x7f) {
            oe_buf_printf(b, "\\u%04x", c);
        } else {
            oe_buf_putc(b, (char)c);
        }
    }
    oe_buf_putc(b, '"');
}

static void test_string_escapes_at_every_position(void)
{
    unsigned char s[40];
    oe_buf got, want;
    oe_buf_init(&got, 0);
    oe_buf_init(&want, 0);
    int failures = 0;
    for (int c = 1; c < 0x80 + 1 && failures < 5; c++) {
        for (size_t len = 1; len <= 33; len += 8) {
            for (size_t at = 0; at + (c == 0x80 ? 2 : 1) <= len; at++) {
                memset(s, 'a' + (int)(at % 26), sizeof s);
                if (c == 0x80) { /* é */
                    s[at] = 0xc3;
                    s[at + 1] = 0xa9;
                } else {
                    s[at] = (unsigned char)c;
                }
                oe_buf_reset(&got);
                oe_buf_reset(&want);
                ref_escape(&want, s, len);
                if (oe_json_dump_string(&got, (const char *)s, len) != OE_OK ||
                    got.len != want.len || memcmp(got.data, want.data, got.len) != 0) {
                    OE_FAIL_("byte 0x%02x at %zu of %zu: %s, not %s", c, at, len,
                             got.data ? got.data : "", want.data);
                    failures++;
                }
                if (!oe_utf8_valid((const char *)s, len)) {
                    OE_FAIL_("byte 0x%02x at %zu of %zu: UTF-8 refused", c, at, len);
                    failures++;
                }
                if (c == 0x80) { /* a lone continuation byte, or a cut sequence */
                    s[at] = 0xa9;
                    ASSERT_EQ(oe_utf8_valid((const char *)s, len), 0);
                    s[at] = 0xc3;
                    ASSERT_EQ(oe_utf8_valid((const char *)s, at + 1), 0);
                }
            }
        }
    }
    /* Two bytes to escape at every pair of positions (the printer copies
     * the plain run up to the first, then looks again from the byte
     * after it). */
    static const unsigned char pair[] = {'"', '\\', '\n', 0x01, 0x7f};
    for (size_t a = 0; a < sizeof pair && failures < 5; a++)
        for (size_t b = 0; b < sizeof pair; b++)
            for (size_t len = 2; len <= 20; len += 3)
                for (size_t at = 0; at < len; at++)
                    for (size_t at2 = at + 1; at2 < len; at2++) {
                        memset(s, 'k', sizeof s);
                        s[at] = pair[a];
                        s[at2] = pair[b];
                        oe_buf_reset(&got);
                        oe_buf_reset(&want);
                        ref_escape(&want, s, len);
                        if (oe_json_dump_string(&got, (const char *)s, len) != OE_OK ||
                            got.len != want.len || memcmp(got.data, want.data, got.len) != 0) {
                            OE_FAIL_("bytes 0x%02x at %zu and 0x%02x at %zu of %zu: %s, not %s",
                                     pair[a], at, pair[b], at2, len, got.data ? got.data : "",
                                     want.data);
                            failures++;
                        }
                    }
    /* Through a document's printer too (it escapes in pieces that fit its
     * staging buffer): long strings with a two- and a four-byte character
     * at every position, so that pieces end everywhere near them. */
    for (size_t len = 80; len <= 300 && failures < 5; len += 37) {
        for (size_t at = 0; at + 6 <= len; at++) {
            memset(s, 'x', sizeof s);
            unsigned char big[320];
            memset(big, 'q', len);
            memcpy(big + at, "\xc3\xa9\xf0\x9f\x98\x80", 6); /* é, U+1F600 */
            oe_buf_reset(&want);
            oe_buf_reset(&got);
            oe_buf_puts(&want, "[");
            ASSERT_EQ(oe_json_dump_string(&want, (const char *)big, len), OE_OK);
            oe_buf_puts(&want, "]");
            oe_json_doc *doc = NULL;
            char err[128];
            ASSERT_EQ(oe_json_parse(want.data, want.len, 8, &doc, err, sizeof err), OE_OK);
            ASSERT_EQ(oe_json_dump(&got, oe_json_root(doc), OE_JSON_COMPACT), OE_OK);
            oe_json_doc_free(doc);
            if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0) {
                OE_FAIL_("document printer, %zu bytes, characters at %zu: %s", len, at, got.data);
                failures++;
            }
        }
    }
    oe_buf_free(&got);
    oe_buf_free(&want);
}

/* The room oe_json_put_string is given is enough for every text, and for
 * a long one no more than that text takes (so that a 3 KB result in a
 * leaf does not ask for 18 KB): random texts over the short limit, of plain
 * bytes, quotes, backslashes, controls, DEL and UTF-8 of 2 to 4 bytes in
 * every mix, each written into exactly its room followed by a guard. */
static void test_string_room(void)
{
    enum { GUARD = 32 };
    static const char *const pieces[] = {
        "a", "\"", "\\", "\n", "\x01", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    const size_t npieces = sizeof pieces / sizeof pieces[0];
    unsigned char s[OE_JSON_ROOM_SHORT + 400];
    oe_buf want;
    oe_buf_init(&want, 0);
    uint64_t r = 88172645463325252ULL;
    int failures = 0;
    for (int round = 0; round < 4000 && failures < 5; round++) {
        /* A target length over the short limit, ending at every place of
         * the escaper's 8-byte groups; one piece (round % npieces) alone,
         * in a third of the rounds (a text of quotes alone is written to
         * the last byte of its room), else a mix weighted towards it so
         * that runs of it are long. */
        size_t target = OE_JSON_ROOM_SHORT + 1 + (size_t)round % 300, len = 0;
        int alone = (round / (int)npieces) % 3 == 0;
        while (len < target) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            size_t k =
                alone || (r >> 8) % 4 ? (size_t)round % npieces : (size_t)(r >> 16) % npieces;
            size_t n = strlen(pieces[k]);
            if (len + n > sizeof s)
                break;
            memcpy(s + len, pieces[k], n);
            len += n;
        }
        size_t room = oe_json_string_room((const char *)s, len);
        oe_buf_reset(&want);
        ref_escape(&want, s, len);
        char *d = malloc(room + GUARD);
        ASSERT_TRUE(d != NULL);
        memset(d, 0xA5, room + GUARD);
        char *end = oe_json_put_string(d, (const char *)s, len);
        int guard_ok = 1;
        for (size_t i = room; i < room + GUARD; i++)
            guard_ok &= (unsigned char)d[i] == 0xA5;
        if (!end || !guard_ok || (size_t)(end - d) != want.len ||
            memcmp(d, want.data, want.len) != 0) {
            OE_FAIL_("round %d, %zu bytes, room %zu: %s, written %zd bytes of %zu", round, len,
                     room, guard_ok ? "guard kept" : "written past its room", end ? end - d : -1,
                     want.len);
            failures++;
        }
        free(d);
    }
    oe_buf_free(&want);
    /* As tight as stated: 1 a plain byte, 2 a quote, 3 a byte of UTF-8,
     * and the quotes and the escaper's 8 bytes over. */
    const size_t n = OE_JSON_ROOM_SHORT + 2;
    memset(s, 'p', n);
    ASSERT_EQ(oe_json_string_room((const char *)s, n), n + 2 + 8);
    memset(s, '"', n);
    ASSERT_EQ(oe_json_string_room((const char *)s, n), 2 * n + 2 + 8);
    for (size_t i = 0; i < n; i += 2)
        memcpy(s + i, "\xc3\xa9", 2);
    ASSERT_EQ(oe_json_string_room((const char *)s, n), 3 * n + 2 + 8);
    /* A short text is not read: the most any of its length takes. */
    ASSERT_EQ(oe_json_string_room(NULL, 0), 2);
    ASSERT_EQ(oe_json_string_room("abc", 3), 6 * 3 + 2);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--float-vectors") == 0)
        return float_vectors(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "--canon") == 0)
        return canon_file(argv[2]);
    if (argc >= 2) {
        fprintf(stderr, "usage: %s [--float-vectors FILE | --canon FILE]\n", argv[0]);
        return 2;
    }

    RUN_TEST(test_canon_table);
    RUN_TEST(test_prefixes);
    RUN_TEST(test_reject_table);
    RUN_TEST(test_errors_never_overflow);
    RUN_TEST(test_depth);
    RUN_TEST(test_node_budget);
    RUN_TEST(test_integers);
    RUN_TEST(test_strings_and_types);
    RUN_TEST(test_get);
    RUN_TEST(test_dump_string);
    RUN_TEST(test_utf8_valid);
    RUN_TEST(test_string_escapes_at_every_position);
    RUN_TEST(test_string_room);
    RUN_TEST(test_float_repr_table);
    RUN_TEST(test_float_roundtrip);
    return TEST_REPORT();
}
