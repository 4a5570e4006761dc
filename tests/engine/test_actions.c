/* Tests engine/actions.c: echo and add as docs/protocol.md §5 defines them, with the
 * exact result text Python's json.dumps(result, sort_keys=True) prints. */
#include "engine/actions.h"
#include "tests/test.h"

typedef struct {
    const char *action;
    const char *payload;
    const char *result; /* NULL: must be rejected */
    const char *error;  /* words the rejection must contain */
} action_case;

static const action_case cases[] = {
    {"echo", "{\"msg\":\"hi\"}", "{\"echo\": {\"msg\": \"hi\"}}", NULL},
    {"echo", "{}", "{\"echo\": {}}", NULL},
    {"echo", "{\"b\":[1,2.5,null],\"a\":{\"y\":true,\"x\":\"\\u00e9\"}}",
     "{\"echo\": {\"a\": {\"x\": \"\\u00e9\", \"y\": true}, \"b\": [1, 2.5, null]}}", NULL},
    {"add", "{\"a\":2,\"b\":3}", "{\"sum\": 5}", NULL},
    {"add", "{\"a\":2}", "{\"sum\": 2}", NULL},
    {"add", "{}", "{\"sum\": 0}", NULL},
    {"add", "{\"a\":2,\"b\":0.5}", "{\"sum\": 2.5}", NULL},
    {"add", "{\"a\":0.1,\"b\":0.2}", "{\"sum\": 0.30000000000000004}", NULL},
    {"add", "{\"a\":1e16,\"b\":1}", "{\"sum\": 1e+16}", NULL},
    {"add", "{\"a\":-5,\"b\":5}", "{\"sum\": 0}", NULL},
    {"add", "{\"a\":2.0,\"b\":3}", "{\"sum\": 5.0}", NULL},
    {"add", "{\"a\":9223372036854775807,\"b\":-1}", "{\"sum\": 9223372036854775806}", NULL},
    {"add", "{\"a\":9223372036854775807,\"b\":1}", NULL, "overflow"},
    {"add", "{\"a\":-9223372036854775808,\"b\":-1}", NULL, "overflow"},
    {"add", "{\"a\":123456789012345678901234567890}", NULL, "64-bit"},
    {"add", "{\"a\":\"2\",\"b\":3}", NULL, "must be a number"},
    {"add", "{\"a\":true,\"b\":3}", NULL, "must be a number"},
    {"add", "{\"a\":[1],\"b\":3}", NULL, "must be a number"},
    {"add", "{\"a\":null}", NULL, "must be a number"},
    {"add", "{\"a\":1.7976931348623157e308,\"b\":1.7976931348623157e308}", NULL, "finite"},
};

static void test_actions_table(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const action_case *c = &cases[i];
        char err[200] = "";
        oe_json_doc *doc = test_json_parse(c->payload, strlen(c->payload), 0, err, sizeof err);
        ASSERT_TRUE(doc != NULL);
        if (!doc)
            continue;
        const oe_action *a = oe_action_find(c->action);
        ASSERT_TRUE(a != NULL);
        oe_buf out;
        oe_buf_init(&out, 0);
        int rc = a->run(oe_json_root(doc), &out, err, sizeof err);
        if (c->result) {
            ASSERT_EQ(rc, 0);
            ASSERT_STREQ(out.data, c->result);
        } else {
            ASSERT_EQ(rc, OE_EINVAL);
            ASSERT_CONTAINS(err, c->error);
        }
        oe_buf_free(&out);
        oe_json_doc_free(doc);
    }
}

static void test_registry(void)
{
    ASSERT_TRUE(oe_action_find("echo") != NULL);
    ASSERT_TRUE(oe_action_find("add") != NULL);
    ASSERT_TRUE(oe_action_find("Echo") == NULL);
    ASSERT_TRUE(oe_action_find("") == NULL);
    size_t n;
    const oe_action *all = oe_actions(&n);
    ASSERT_EQ(n, 2);
    ASSERT_STREQ(all[0].name, "add");
}

int main(void)
{
    RUN_TEST(test_actions_table);
    RUN_TEST(test_registry);
    return TEST_REPORT();
}
