/* Operators' own actions, written in Lua 5.4 (docs/actions.md).
 *
 * Two objects, each with one owner:
 *
 * - oe_lua_actions, the set: every NAME.lua of a folder, read and checked
 *   once at start (name, no clash with a built-in, compiles, its chunk
 *   returns a function), with the SHA-256 of each file's bytes and the
 *   budgets every call gets. Read-only once loaded: any thread may read it.
 *
 * - oe_lua_vm, an interpreter: one Lua state with the set compiled into it
 *   and the sandboxed libraries. It is not thread-safe: its owner uses it
 *   from one thread at a time (the engine, under its batch lock). Calls
 *   reuse the state; each call gets a fresh global environment and runs
 *   the script's chunk again, so that nothing one call leaves behind
 *   reaches the next, and between calls the state is collected back to
 *   exactly its idle size, so that a call's memory count does not depend
 *   on the calls before it.
 *
 * A call is a pure function of the payload: the sandbox offers no I/O, no
 * clock, no randomness, no way to load code, and iteration order (pairs)
 * is sorted. It is bounded by a step budget (Lua instructions, plus the
 * work of library functions by the bytes they handle) and a memory budget
 * (bytes the call holds; its garbage is collected once it holds half).
 * Passing either, an error raised by the script, or a result that
 * JSON cannot carry is a verdict (the action failed), the same on every
 * run; only the machine running out of memory is not.
 */
#ifndef OE_LUA_ACTIONS_H
#define OE_LUA_ACTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "json.h"

/* Defaults of OPENEXEC_ACTION_MAX_STEPS and OPENEXEC_ACTION_MAX_MEMORY. */
#define OE_LUA_DEFAULT_MAX_STEPS 10000000
#define OE_LUA_DEFAULT_MAX_MEMORY ((size_t)16 << 20)
/* The step budget is checked every this many instructions, so that it is
 * at least this. */
#define OE_LUA_STEP_CHECK 1000
/* Largest script file, longest action name, most scripts in a folder. */
#define OE_LUA_SCRIPT_MAX_BYTES ((size_t)1 << 20)
#define OE_LUA_NAME_MAX 64
#define OE_LUA_ACTIONS_MAX 1000
/* Longest failure message handed back, in bytes (cut at a character). */
#define OE_LUA_MESSAGE_MAX 256
/* Deepest result: tables inside tables, as for parsed JSON. */
#define OE_LUA_RESULT_MAX_DEPTH 64

/* The budgets of one call. */
typedef struct oe_lua_limits {
    uint64_t max_steps; /* 0: OE_LUA_DEFAULT_MAX_STEPS */
    size_t max_memory;  /* bytes; 0: OE_LUA_DEFAULT_MAX_MEMORY */
} oe_lua_limits;

typedef struct oe_lua_actions oe_lua_actions;

/* Loads every NAME.lua file of dir, in name order (files whose name starts
 * with '.' and files not ending in ".lua" are left alone), with the budgets
 * of limits (copied; NULL: the defaults). Each must have a name matching
 * [a-z][a-z0-9_.-]* of at most OE_LUA_NAME_MAX bytes that no built-in
 * action has, be a regular file of at most OE_LUA_SCRIPT_MAX_BYTES, compile
 * as Lua 5.4 text and, run once in the sandbox, return one function. On
 * success *out is a new set the caller frees with oe_lua_actions_free.
 * Returns OE_OK, or with a one-line reason in err naming the file (and the
 * line, for a script that does not compile or fails when its chunk runs):
 * OE_EINVAL for a refused script or folder entry, OE_ELIMIT for more than
 * OE_LUA_ACTIONS_MAX scripts, OE_EIO when the folder or a file cannot be
 * read, OE_ENOMEM. */
int oe_lua_actions_load(const char *dir, const oe_lua_limits *limits, oe_lua_actions **out,
                        char *err, size_t errlen);

/* Frees a set (NULL is allowed). No interpreter made from it may remain. */
void oe_lua_actions_free(oe_lua_actions *set);

/* The number of actions of the set (0 for NULL). */
size_t oe_lua_actions_count(const oe_lua_actions *set);

/* Action i's name, and the lowercase hex SHA-256 of its file's bytes (64
 * digits); both belong to the set. */
const char *oe_lua_action_name(const oe_lua_actions *set, size_t i);
const char *oe_lua_action_code_hash(const oe_lua_actions *set, size_t i);

/* The index of the action with this name, or -1 (also for a NULL set). */
long oe_lua_actions_find(const oe_lua_actions *set, const char *name);

/* The budgets of every call (as given, defaults filled in). */
oe_lua_limits oe_lua_actions_limits(const oe_lua_actions *set);

typedef struct oe_lua_vm oe_lua_vm;

/* Makes an interpreter with every action of set compiled in (the set is
 * borrowed and must outlive it). Returns OE_OK, or with a reason in err
 * OE_EINVAL (a script that no longer compiles or whose chunk fails: only
 * when the set was not loaded by oe_lua_actions_load) or OE_ENOMEM. */
int oe_lua_vm_new(const oe_lua_actions *set, oe_lua_vm **out, char *err, size_t errlen);

/* Frees an interpreter (NULL is allowed). */
void oe_lua_vm_free(oe_lua_vm *vm);

/* Runs action index on payload (never NULL) and appends its result to
 * result as Python's json.dumps(result, sort_keys=True) prints it.
 * Returns OE_OK; or OE_EINVAL when the action failed, a verdict the same
 * on every run, with its message in msg (at most OE_LUA_MESSAGE_MAX bytes
 * of UTF-8: the script's error, "step budget exceeded ...", "memory budget
 * exceeded ...", or why the payload or result cannot cross); or OE_ENOMEM
 * when the machine ran out of memory (no verdict; msg says so). result is
 * left as it was on failure (its cap reached is the verdict "result is
 * larger than ..."). */
int oe_lua_vm_run(oe_lua_vm *vm, size_t index, const oe_json *payload, oe_buf *result, char *msg,
                  size_t msglen);

/* What the last call used, and the state between calls, for tests and
 * diagnostics. */
typedef struct oe_lua_usage {
    uint64_t steps;        /* steps the last call used */
    size_t memory_peak;    /* most bytes the last call held at once */
    size_t heap;           /* bytes the state holds now */
    size_t heap_idle;      /* bytes it holds between calls */
    unsigned long rebuilt; /* times the state was made again (it did not
                              come back to its idle size) */
} oe_lua_usage;

void oe_lua_vm_usage(const oe_lua_vm *vm, oe_lua_usage *out);

#endif
