/* The action registry: deterministic functions of the payload (docs/protocol.md §5).
 *
 * Adding an action is one function and one line in the table in actions.c:
 *
 *     static int action_upper(const oe_json *payload, oe_buf *result, ...);
 *     { "upper", action_upper },
 *
 * An action writes its result as Python's json.dumps(result, sort_keys=True)
 * prints it (OE_JSON_DEFAULT style), or fails with a reason that becomes an
 * HTTP 400 / `invalid_request` receipt. It must not do I/O, read the clock or
 * draw random numbers: replays and other workers rely on it being pure.
 *
 * Operators' own actions, Lua scripts (lua_actions.h), are registered by
 * the engine after these (oe_engine_new): they may not take a built-in's
 * name, and the allow-list names them alike.
 */
#ifndef OE_ACTIONS_H
#define OE_ACTIONS_H

#include <stddef.h>

#include "buf.h"
#include "json.h"

/* payload is never NULL (a missing payload is passed as an empty object).
 * Returns OE_OK with the result appended to result_json, or an oe_rc
 * (status.h) with a one-line reason in err: OE_EINVAL when the payload is
 * not acceptable (a verdict on the request), or the failure of an append to
 * result_json (OE_ELIMIT at its cap, OE_ENOMEM). */
typedef int (*oe_action_fn)(const oe_json *payload, oe_buf *result_json, char *err, size_t errlen);

typedef struct oe_action {
    const char *name; /* as requests name it */
    oe_action_fn run;
} oe_action;

/* The registered action with this name, or NULL. */
const oe_action *oe_action_find(const char *name);

/* The registered actions, for listing; *count gets their number. */
const oe_action *oe_actions(size_t *count);

#endif
