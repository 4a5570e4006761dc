/* A small test framework: assertions print both values with file:line and
 * count failures; main() returns non-zero when anything failed. Each test
 * binary prints one closing line "N passed, N failed". */
#ifndef OE_TEST_H
#define OE_TEST_H

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/request.h"

static int oe_test_failed;  /* assertions that failed in the current test */
static int oe_tests_passed; /* tests with no failed assertion */
static int oe_tests_failed; /* tests with at least one failed assertion */

#define OE_FAIL_(...)                                                                              \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        oe_test_failed++;                                                                          \
    } while (0)

#define ASSERT_TRUE(c)                                                                             \
    do {                                                                                           \
        if (!(c))                                                                                  \
            OE_FAIL_("expected true: %s", #c);                                                     \
    } while (0)

#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            OE_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                                    \
    } while (0)

#define ASSERT_STREQ(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            OE_FAIL_("%s == %s:\n    got      [%s]\n    expected [%s]", #a, #b,                    \
                     a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                      \
    } while (0)

/* Substring check, for error details that must contain given words. */
#define ASSERT_CONTAINS(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            OE_FAIL_("[%s] does not contain [%s]", h_ ? h_ : "(null)", n_);                        \
    } while (0)

#define RUN_TEST(fn)                                                                               \
    do {                                                                                           \
        oe_test_failed = 0;                                                                        \
        fn();                                                                                      \
        if (oe_test_failed) {                                                                      \
            oe_tests_failed++;                                                                     \
            fprintf(stderr, "FAIL %s\n", #fn);                                                     \
        } else {                                                                                   \
            oe_tests_passed++;                                                                     \
        }                                                                                          \
    } while (0)

#define TEST_REPORT()                                                                              \
    (printf("%s: %d passed, %d failed\n", __FILE__, oe_tests_passed, oe_tests_failed),             \
     oe_tests_failed ? 1 : 0)

/* Threads of this process, from /proc (-1 when it cannot be read). */
static inline int test_thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* 1 when the process runs under valgrind, whose allocator does not fail
 * at an address-space cap (tests of running out of memory skip). */
static inline int test_under_valgrind(void)
{
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload") != NULL;
}

/* 0 when running out of memory cannot be provoked with an address-space
 * cap (the tests of it skip): under AddressSanitizer, which reserves
 * terabytes of address space up front, or valgrind. */
static inline int test_memory_can_run_out(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 0;
#else
    return !test_under_valgrind();
#endif
}

/* Caps this process's address space at what it uses now plus 256 KiB, so
 * that the next large allocation fails; *old receives the limit to put
 * back with setrlimit(RLIMIT_AS, old). Returns 0, or -1 when the usage
 * (/proc/self/statm, in pages) cannot be read or the limit cannot be set. */
static inline int test_cap_address_space(struct rlimit *old)
{
    if (getrlimit(RLIMIT_AS, old) != 0)
        return -1;
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%lu", &pages) != 1)
        pages = 0;
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (pages == 0 || page <= 0)
        return -1;
    struct rlimit tight = {(rlim_t)pages * (rlim_t)page + ((rlim_t)256 << 10), old->rlim_max};
    return setrlimit(RLIMIT_AS, &tight) == 0 ? 0 : -1;
}

/* Decodes hex (an even number of digits) into out; returns the number of
 * bytes. */
static inline size_t test_unhex(const char *hex, unsigned char *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return i;
        out[i] = (unsigned char)v;
    }
    return n;
}

/* Decoders in the shape most tests want. A resource failure (OE_ENOMEM)
 * inside a test is a failed test, not a verdict on the input. */

static inline oe_json_doc *test_json_parse(const char *buf, size_t len, int max_depth, char *err,
                                           size_t errlen)
{
    oe_json_doc *doc;
    oe_json_parse(buf, len, max_depth, &doc, err, errlen);
    return doc;
}

/* The verdict, or -1 when the decoder ran out of memory. */
static inline int test_request_from_json(const char *buf, size_t len, oe_request *r, char *err,
                                         size_t errlen)
{
    oe_error_code verdict;
    if (oe_request_from_json(buf, len, r, &verdict, err, errlen) != 0)
        return -1;
    return (int)verdict;
}

/* Runs one JSON body through the engine as a batch of one at time now. o is
 * the caller's outcome (oe_outcome_init'ed), filled and handed back.
 * Returns oe_engine_process's result (a failure is also reported). */
static inline int test_run_body(oe_engine *engine, const char *body, double now, oe_outcome *o)
{
    oe_batch_item item;
    memset(&item, 0, sizeof item);
    oe_batch_item *items[1] = {&item};
    char reason[300], err[300];
    item.decode_error =
        (oe_error_code)test_request_from_json(body, strlen(body), &item.req, reason, sizeof reason);
    item.decode_detail = reason;
    item.out = *o;
    int rc = oe_engine_process(engine, items, 1, now, NULL, err, sizeof err);
    if (rc != 0)
        OE_FAIL_("process: %s", err);
    *o = item.out;
    oe_request_clear(&item.req);
    return rc;
}

static inline int test_request_from_fields(const char *action, const char *nonce,
                                           const char *payload, size_t payload_len,
                                           const oe_artifact *artifact, oe_request *r, char *err,
                                           size_t errlen)
{
    oe_error_code verdict;
    if (oe_request_from_fields(action, nonce, payload, payload_len, artifact, r, &verdict, err,
                               errlen) != 0)
        return -1;
    return (int)verdict;
}

#endif
