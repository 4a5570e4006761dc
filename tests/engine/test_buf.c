/* Tests engine/buf.c: the cap, and the sticky failure that keeps a capped
 * document from coming out truncated. */
#include "engine/buf.h"
#include "engine/status.h"
#include "tests/test.h"

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

static void test_printf_over_cap(void)
{
    oe_buf b;
    oe_buf_init(&b, 4);
    ASSERT_EQ(oe_buf_printf(&b, "%d", 123456), OE_ELIMIT);
    ASSERT_EQ(oe_buf_failed(&b), OE_ELIMIT);
    ASSERT_EQ(b.len, 0);
    oe_buf_free(&b);
}

int main(void)
{
    RUN_TEST(test_append_within_cap);
    RUN_TEST(test_failure_is_sticky);
    RUN_TEST(test_printf_over_cap);
    return TEST_REPORT();
}
