/* The action registry and the built-in actions (actions.h): pure functions
 * of the payload, no state, safe from any thread. An action appends its
 * result to the caller's capped buffer; the caller owns everything. */
#include "actions.h"

#include <stdio.h>
#include <string.h>

#include "status.h"

/* echo: {"echo": PAYLOAD}. */
static int action_echo(const oe_json *payload, oe_buf *out, char *err, size_t errlen)
{
    int rc = oe_buf_puts(out, "{\"echo\": ");
    if (rc == OE_OK)
        rc = oe_json_dump(out, payload, OE_JSON_DEFAULT);
    if (rc == OE_OK)
        rc = oe_buf_putc(out, '}');
    if (rc != OE_OK)
        snprintf(err, errlen, "result too large");
    return rc;
}

/* One operand of add: a number (integer or float), default 0. Booleans are
 * rejected even though Python treats them as integers: a governed action
 * should not add true to 2. */
typedef struct {
    int is_float;
    int64_t i;
    double f;
} add_operand;

static int add_operand_get(const oe_json *payload, const char *name, add_operand *op, char *err,
                           size_t errlen)
{
    const oe_json *v = oe_json_get(payload, name);
    op->is_float = 0;
    op->i = 0;
    op->f = 0;
    if (!v)
        return 0;
    switch (v->type) {
    case OE_JSON_INT:
        if (!v->fits_int64) {
            snprintf(err, errlen, "add: '%s' is outside the 64-bit integer range", name);
            return OE_EINVAL;
        }
        op->i = v->i64;
        return 0;
    case OE_JSON_FLOAT:
        op->is_float = 1;
        op->f = v->num;
        return 0;
    default:
        snprintf(err, errlen, "add: '%s' must be a number", name);
        return OE_EINVAL;
    }
}

/* add: {"sum": a + b}; integers stay integers, any float makes a float. */
static int action_add(const oe_json *payload, oe_buf *out, char *err, size_t errlen)
{
    add_operand a, b;
    int rc = add_operand_get(payload, "a", &a, err, errlen);
    if (rc == OE_OK)
        rc = add_operand_get(payload, "b", &b, err, errlen);
    if (rc != OE_OK)
        return rc;
    char num[40];
    if (!a.is_float && !b.is_float) {
        int64_t sum;
        if (__builtin_add_overflow(a.i, b.i, &sum)) {
            snprintf(err, errlen, "add: integer overflow");
            return OE_EINVAL;
        }
        snprintf(num, sizeof num, "%lld", (long long)sum);
    } else {
        double x = a.is_float ? a.f : (double)a.i;
        double y = b.is_float ? b.f : (double)b.i;
        if (oe_json_format_double(x + y, num, sizeof num) < 0) {
            snprintf(err, errlen, "add: result is not a finite number");
            return OE_EINVAL;
        }
    }
    rc = oe_buf_printf(out, "{\"sum\": %s}", num);
    if (rc != OE_OK)
        snprintf(err, errlen, "result too large");
    return rc;
}

/* The registry. Keep it sorted by name for readability; lookups are linear
 * because the table is tiny. */
static const oe_action registry[] = {
    {"add", action_add},
    {"echo", action_echo},
};

const oe_action *oe_action_find(const char *name)
{
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (strcmp(registry[i].name, name) == 0)
            return &registry[i];
    return NULL;
}

const oe_action *oe_actions(size_t *count)
{
    *count = sizeof registry / sizeof registry[0];
    return registry;
}
