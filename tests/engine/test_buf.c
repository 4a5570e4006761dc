/* Tests engine/buf.c: the cap, and the sticky failure that keeps a capped
 * document from coming out truncated. */
#include "engine/buf.h"
#include "engine/status.h"
#include "tests/test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_append_within_cap(void)
{
    oe_buf b;
    oe_buf_init(&b, 8);
    ASSERT_EQ(oe_buf_puts(&b, "abcd"), 0);
    ASSERT_EQ(oe_buf_printf(&b, "%d", 123), 0);
    ASSERT_STREQ(b.data, "abcd123");
    ASSERT_EQ(oe_buf_failed(&b), 0);
    oe_buf_free(&b);
}

/* After one append passes the cap, later appends that would fit are refused
 * too: the text stays what it was before the first failure. */
static void test_failure_is_sticky(void)
{
    oe_buf b;
    oe_buf_init(&b, 8);
    ASSERT_EQ(oe_buf_puts(&b, "{\"a\":"), 0);
    ASSERT_EQ(oe_buf_puts(&b, "123456"), OE_ELIMIT);
    ASSERT_EQ(oe_buf_failed(&b), OE_ELIMIT);
    ASSERT_EQ(oe_buf_putc(&b, '}'), OE_ELIMIT);
    ASSERT_EQ(oe_buf_printf(&b, "%s", "x"), OE_ELIMIT);
    ASSERT_STREQ(b.data, "{\"a\":");
    ASSERT_EQ(b.len, 5);
    ASSERT_TRUE(oe_buf_detach(&b) == NULL);
    ASSERT_TRUE(b.data == NULL);
    /* A reset buffer is usable again. */
    oe_buf_init(&b, 8);
    ASSERT_EQ(oe_buf_puts(&b, "123456789"), OE_ELIMIT);
    oe_buf_reset(&b);
    ASSERT_EQ(oe_buf_failed(&b), 0);
    ASSERT_EQ(oe_buf_puts(&b, "ok"), 0);
    char *s = oe_buf_detach(&b);
    ASSERT_STREQ(s, "ok");
    free(s);
}

/* oe_buf_empty: empty and usable again, like a reset (a failure is
 * forgotten), but nothing is written into the memory, which is kept. */
static void test_empty_writes_nothing(void)
{
    oe_buf b;
    oe_buf_init(&b, 8);
    ASSERT_EQ(oe_buf_puts(&b, "abcdef"), 0);
    ASSERT_EQ(oe_buf_puts(&b, "ghi"), OE_ELIMIT);
    char *mem = b.data;
    oe_buf_empty(&b);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(oe_buf_failed(&b), 0);
    ASSERT_TRUE(b.data == mem);
    ASSERT_EQ(memcmp(mem, "abcdef", 7), 0); /* the old bytes, untouched */
    ASSERT_EQ(oe_buf_puts(&b, "xy"), 0);
    ASSERT_TRUE(b.data == mem);
    ASSERT_STREQ(b.data, "xy");
    oe_buf_free(&b);
}

static void test_printf_over_cap(void)
{
    oe_buf b;
    oe_buf_init(&b, 4);
    ASSERT_EQ(oe_buf_printf(&b, "%d", 123456), OE_ELIMIT);
    ASSERT_EQ(oe_buf_failed(&b), OE_ELIMIT);
    ASSERT_EQ(b.len, 0);
    oe_buf_free(&b);
}

static void test_put_u64(void)
{
    const uint64_t cases[] = {0, 7, 10, 99, 1000000, UINT64_C(18446744073709551615)};
    oe_buf b;
    oe_buf_init(&b, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char want[32];
        snprintf(want, sizeof want, "%llu", (unsigned long long)cases[i]);
        oe_buf_reset(&b);
        ASSERT_EQ(oe_buf_put_u64(&b, cases[i]), OE_OK);
        ASSERT_STREQ(b.data, want);
    }
    oe_buf_free(&b);
    /* Over the cap: refused like any append. */
    oe_buf_init(&b, 4);
    ASSERT_EQ(oe_buf_put_u64(&b, 12345), OE_ELIMIT);
    ASSERT_EQ(oe_buf_failed(&b), OE_ELIMIT);
    oe_buf_free(&b);
}

/* oe_buf_room makes room or says why not, and a refusal leaves the buffer
 * usable (not failed). */
static void test_room(void)
{
    oe_buf b;
    oe_buf_init(&b, 16);
    ASSERT_EQ(oe_buf_puts(&b, "abc"), OE_OK);
    ASSERT_EQ(oe_buf_room(&b, 100), OE_ELIMIT);
    ASSERT_EQ(oe_buf_failed(&b), 0);
    ASSERT_EQ(oe_buf_room(&b, 13), OE_OK);
    ASSERT_TRUE(b.cap >= b.len + 13 + 1);
    ASSERT_EQ(oe_buf_puts(&b, "defg"), OE_OK);
    ASSERT_STREQ(b.data, "abcdefg");
    oe_buf_free(&b);
}

/* oe_buf_shed frees a buffer over its keep size, with its limit kept, and
 * leaves a smaller one (and its text) alone. */
static void test_shed(void)
{
    oe_buf b;
    oe_buf_init(&b, 100000);
    ASSERT_EQ(oe_buf_puts(&b, "kept"), 0);
    size_t cap = b.cap;
    oe_buf_shed(&b, cap);
    ASSERT_TRUE(b.data != NULL && b.cap == cap);
    ASSERT_STREQ(b.data, "kept");
    char big[5000];
    memset(big, 'x', sizeof big);
    ASSERT_EQ(oe_buf_append(&b, big, sizeof big), 0);
    oe_buf_shed(&b, 4096);
    ASSERT_TRUE(b.data == NULL && b.cap == 0 && b.len == 0);
    ASSERT_EQ(b.max, 100000);
    ASSERT_EQ(oe_buf_puts(&b, "again"), 0);
    ASSERT_STREQ(b.data, "again");
    oe_buf_free(&b);
}

int main(void)
{
    RUN_TEST(test_append_within_cap);
    RUN_TEST(test_failure_is_sticky);
    RUN_TEST(test_empty_writes_nothing);
    RUN_TEST(test_printf_over_cap);
    RUN_TEST(test_put_u64);
    RUN_TEST(test_room);
    RUN_TEST(test_shed);
    return TEST_REPORT();
}
