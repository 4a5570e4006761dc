/* openexec actions: the actions a worker with this configuration runs,
 * each with its code hash. The folder of --actions-dir is loaded as `run`
 * loads it (oe_lua_actions_load, the same budgets: every script compiled
 * and its chunk run once), so that a folder this command accepts is one
 * `run` starts with, and one it refuses stops `run` with the same line.
 * Reads nothing else; runs on the main thread. */
#include <stdio.h>
#include <string.h>

#include "cmd/commands.h"
#include "engine/actions.h"
#include "engine/buf.h"
#include "engine/lua_actions.h"
#include "engine/status.h"

static const oe_command actions_command = {
    "actions",
    OE_CMD_ACTIONS,
    "Lists the actions a worker with this configuration runs: the built-in\n"
    "ones, then each Lua action of --actions-dir with its code hash (the\n"
    "SHA-256 of its file, as receipts carry it). The folder is loaded as\n"
    "`openexec run` loads it, with the same budgets: a script that does not\n"
    "load is exit 2 with the line run would stop with. A table, or one JSON\n"
    "object with --output json.",
    0,
    0,
};

/* The longest action name listed, for the table's first column. */
static size_t name_width(const oe_action *builtins, size_t nbuiltins, const oe_lua_actions *set)
{
    size_t width = strlen("ACTION");
    for (size_t i = 0; i < nbuiltins; i++)
        if (strlen(builtins[i].name) > width)
            width = strlen(builtins[i].name);
    for (size_t i = 0; i < oe_lua_actions_count(set); i++)
        if (strlen(oe_lua_action_name(set, i)) > width)
            width = strlen(oe_lua_action_name(set, i));
    return width;
}

int oe_cmd_actions(int argc, char **argv)
{
    oe_config cfg;
    int rc = oe_command_parse(&actions_command, &cfg, NULL, argc, argv);
    if (rc >= 0)
        return rc;
    oe_lua_actions *set = NULL;
    if (cfg.actions_dir) {
        char err[1024];
        int lrc = oe_load_actions(&cfg, &set, err, sizeof err);
        if (lrc != OE_OK)
            return oe_die(lrc == OE_ENOMEM ? 1 : 2, "actions: --actions-dir: %s", err);
    }
    size_t nbuiltins;
    const oe_action *builtins = oe_actions(&nbuiltins);
    oe_buf out;
    oe_buf_init(&out, 0);
    if (cfg.output_json) {
        oe_buf_puts(&out, "{\"actions_dir\": ");
        if (cfg.actions_dir)
            oe_put_json_text(&out, cfg.actions_dir, strlen(cfg.actions_dir));
        else
            oe_buf_puts(&out, "null");
        oe_buf_printf(&out, ", \"action_max_steps\": %ld, \"action_max_memory\": %ld",
                      cfg.action_max_steps, cfg.action_max_memory);
        oe_buf_puts(&out, ", \"actions\": [");
        for (size_t i = 0; i < nbuiltins; i++) {
            oe_buf_puts(&out, i ? ", {\"name\": " : "{\"name\": ");
            oe_put_json_text(&out, builtins[i].name, strlen(builtins[i].name));
            oe_buf_puts(&out, ", \"builtin\": true, \"code_hash\": null}");
        }
        for (size_t i = 0; i < oe_lua_actions_count(set); i++) {
            const char *name = oe_lua_action_name(set, i);
            oe_buf_puts(&out, nbuiltins + i ? ", {\"name\": " : "{\"name\": ");
            oe_put_json_text(&out, name, strlen(name));
            oe_buf_printf(&out, ", \"builtin\": false, \"code_hash\": \"%s\"}",
                          oe_lua_action_code_hash(set, i));
        }
        oe_buf_puts(&out, "]}\n");
    } else {
        int w = (int)name_width(builtins, nbuiltins, set);
        oe_buf_printf(&out, "%-*s  %-8s  %s\n", w, "ACTION", "KIND", "CODE HASH");
        for (size_t i = 0; i < nbuiltins; i++)
            oe_buf_printf(&out, "%-*s  %-8s  %s\n", w, builtins[i].name, "built-in", "-");
        for (size_t i = 0; i < oe_lua_actions_count(set); i++)
            oe_buf_printf(&out, "%-*s  %-8s  %s\n", w, oe_lua_action_name(set, i), "lua",
                          oe_lua_action_code_hash(set, i));
    }
    oe_lua_actions_free(set);
    int status = 0;
    if (oe_buf_failed(&out))
        status = oe_die(1, "actions: out of memory");
    else if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0)
        status = oe_die(1, "actions: cannot write to stdout");
    oe_buf_free(&out);
    return status;
}
