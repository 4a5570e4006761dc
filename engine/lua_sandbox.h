/* The sandbox's libraries (lua_sandbox.c), for lua_actions.c alone.
 *
 * What a script sees: the base functions that cannot reach outside or
 * depend on the machine (assert, error, getmetatable, ipairs, pairs,
 * pcall, rawequal, rawget, rawlen, select, setmetatable, tonumber,
 * tostring, type, xpcall, _VERSION, _G), and read-only string, table,
 * math, utf8 and json tables. Everything else of Lua's standard libraries
 * is absent: io, os, debug, package, coroutine, load, loadstring, dofile,
 * loadfile, require, collectgarbage, print, next, rawset, string.dump,
 * string.pack/unpack/packsize, math.random and math.randomseed.
 *
 * Where standard Lua is not deterministic the sandbox's own functions take
 * over: pairs visits keys in sorted order; tostring and string.format's %s
 * never print an address (%p is refused); table.sort is a stable merge
 * sort; setmetatable refuses __gc. string.find, match, gmatch and gsub are
 * a matcher of our own (lua_pattern.c) that counts its backtracking, and
 * every library function whose work grows with its input charges steps
 * for it (oe_lua_charge).
 */
#ifndef OE_LUA_SANDBOX_H
#define OE_LUA_SANDBOX_H

#include <lua.h>
#include <stdint.h>

/* Registry keys (by address, with lua_rawgetp): the metatable of every
 * call's fresh global table, the marks of JSON arrays and objects, the
 * compiled chunks. */
extern const char oe_lua_key_env_mt;
extern const char oe_lua_key_array_mt;
extern const char oe_lua_key_object_mt;
extern const char oe_lua_key_chunks;

/* json.null is the light userdata with this address. */
extern const char oe_lua_null;

/* One step is charged for this many bytes a library function handles. */
#define OE_LUA_STEP_BYTES 16

/* A lua_CFunction that builds the sandbox in a new state (stopping its
 * collector: collections happen between calls and when an allocation
 * would pass the memory budget). Raises a Lua error when memory runs out:
 * call it protected. Pushes nothing. */
int oe_lua_sandbox_open(lua_State *L);

/* How a table prints as JSON, from its mark (json.array, json.object, a
 * decoded payload's) or, unmarked, from its keys. */
typedef enum oe_lua_shape {
    OE_LUA_ARRAY,  /* keys exactly 1..n (marked: possibly n = 0) */
    OE_LUA_OBJECT, /* string keys only; unmarked and empty is an object */
    OE_LUA_NEITHER /* a mark its keys break, or keys JSON cannot carry */
} oe_lua_shape;

/* The shape of the table at idx, with its number of keys in *count and,
 * for OE_LUA_NEITHER, a reason in why (a literal). Raw access only; charges
 * a step per key. */
oe_lua_shape oe_lua_table_shape(lua_State *L, int idx, size_t *count, const char **why);

/* Sets find, match, gmatch and gsub in the table at idx: Lua 5.4's
 * pattern functions, every step of their matching charged (lua_pattern.c). */
void oe_lua_open_patterns(lua_State *L, int idx);

/* Adds steps to the running call's count; raises the budget's error once
 * the count passes it (lua_actions.c). Outside a call it does nothing. */
void oe_lua_charge(lua_State *L, uint64_t steps);

#endif
