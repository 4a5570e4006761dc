/* The sandbox's libraries (lua_sandbox.h): what a Lua action may call.
 *
 * Built once per state by oe_lua_sandbox_open and shared by every call of
 * that state: the library tables are read-only proxies (writes refused,
 * their metatables protected, rawset absent), so a call cannot leave
 * anything in them for the next. The real tables of Lua's libraries stay
 * in the registry, out of a script's reach, where luaL_argerror finds the
 * names it prints ("bad argument #1 to 'string.rep'").
 */
#include "lua_sandbox.h"

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char oe_lua_key_env_mt;
const char oe_lua_key_array_mt;
const char oe_lua_key_object_mt;
const char oe_lua_key_chunks;
const char oe_lua_null;

/* Marks the metatable of a read-only proxy: pairs iterates its target. */
static const char key_readonly;

/* ---- Small helpers ---- */

/* Steps for handling n bytes. */
static uint64_t byte_steps(size_t n)
{
    return 1 + n / OE_LUA_STEP_BYTES;
}

/* Steps for sorting n items (n log2 n comparisons). */
static uint64_t sort_steps(size_t n)
{
    uint64_t steps = n;
    for (size_t k = n; k > 1; k >>= 1)
        steps += n;
    return steps;
}

static int is_null(lua_State *L, int idx)
{
    return lua_touserdata(L, idx) == (void *)&oe_lua_null;
}

/* ---- Read-only proxies ---- */

static int readonly_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only library table");
}

/* Pushes a proxy of the table at idx: reads reach it, writes are refused,
 * getmetatable gives false. */
static void push_readonly(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pushboolean(L, 1);
    lua_rawsetp(L, -2, &key_readonly);
    lua_setmetatable(L, -2);
}

/* ---- Charged calls of Lua's own functions ---- */

/* Calls upvalue 1 (a library function) with this call's arguments, after
 * charging a step and one per OE_LUA_STEP_BYTES of its string arguments:
 * functions that scan their strings (find, utf8.len, tonumber...). */
static int charged_call(lua_State *L)
{
    int n = lua_gettop(L);
    size_t bytes = 0;
    for (int i = 1; i <= n; i++)
        if (lua_type(L, i) == LUA_TSTRING)
            bytes += lua_rawlen(L, i);
    oe_lua_charge(L, byte_steps(bytes));
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

/* The number of items in [lo, hi] (0 when empty), saturating. */
static uint64_t span(lua_Integer lo, lua_Integer hi)
{
    if (hi < lo)
        return 0;
    return (uint64_t)((lua_Unsigned)hi - (lua_Unsigned)lo) + 1;
}

/* table.insert, table.remove, table.concat, table.unpack and table.move
 * loop in C over a range that a script chooses (a __len may claim 2^62):
 * each is charged a step per item of its range before it runs. Upvalue 1
 * is the function, upvalue 2 which one (the enum below). */
enum { RANGE_LENGTH, RANGE_CONCAT, RANGE_UNPACK, RANGE_MOVE };

static int range_call(lua_State *L)
{
    int kind = (int)lua_tointeger(L, lua_upvalueindex(2));
    int n = lua_gettop(L);
    uint64_t steps = 1;
    int ok_lo = 0, ok_hi = 0;
    lua_Integer lo, hi;
    switch (kind) {
    case RANGE_LENGTH:
        if (lua_type(L, 1) == LUA_TTABLE)
            steps += span(1, luaL_len(L, 1));
        break;
    case RANGE_CONCAT:
    case RANGE_UNPACK: {
        int first = kind == RANGE_CONCAT ? 3 : 2;
        if (lua_type(L, 1) != LUA_TTABLE)
            break;
        lo = lua_isnoneornil(L, first) ? 1 : lua_tointegerx(L, first, &ok_lo);
        ok_lo = lua_isnoneornil(L, first) || ok_lo;
        hi = lua_isnoneornil(L, first + 1) ? luaL_len(L, 1) : lua_tointegerx(L, first + 1, &ok_hi);
        ok_hi = lua_isnoneornil(L, first + 1) || ok_hi;
        if (ok_lo && ok_hi)
            steps += span(lo, hi);
        break;
    }
    case RANGE_MOVE:
        lo = lua_tointegerx(L, 2, &ok_lo);
        hi = lua_tointegerx(L, 3, &ok_hi);
        if (ok_lo && ok_hi)
            steps += span(lo, hi);
        break;
    }
    oe_lua_charge(L, steps);
    lua_settop(L, n);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

/* string.rep: Lua's loops once per copy even when the copies are empty
 * (string.rep("", 2^60) would never end); the rest is Lua's, charged. */
static int sandbox_rep(lua_State *L)
{
    size_t len, seplen;
    luaL_checklstring(L, 1, &len);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &seplen);
    if (n <= 0 || len + seplen == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    return charged_call(L);
}

/* ---- pairs, in sorted order ---- */

/* A key as the sort sees it. */
typedef struct sort_key {
    int rank;       /* 0 number, 1 string, 2 boolean */
    int is_integer; /* numbers */
    lua_Integer i;
    lua_Number d;
    const char *s; /* strings, owned by the table */
    size_t len;
    int b;            /* booleans */
    lua_Integer slot; /* where the key waits in the scratch table */
} sort_key;

/* -1, 0 or 1 as the integer i is below, equal to or above the float d
 * (neither NaN: NaN cannot be a key). */
static int compare_int_float(lua_Integer i, lua_Number d)
{
    if (d >= 9223372036854775808.0)
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    lua_Number f = floor(d);
    lua_Integer fi = (lua_Integer)f;
    if (i < fi)
        return -1;
    if (i > fi)
        return 1;
    return f == d ? 0 : -1;
}

static int compare_keys(const void *pa, const void *pb)
{
    const sort_key *a = pa, *b = pb;
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    switch (a->rank) {
    case 0:
        if (a->is_integer && b->is_integer)
            return a->i < b->i ? -1 : a->i > b->i;
        if (!a->is_integer && !b->is_integer)
            return a->d < b->d ? -1 : a->d > b->d;
        return a->is_integer ? compare_int_float(a->i, b->d) : -compare_int_float(b->i, a->d);
    case 1: {
        size_t n = a->len < b->len ? a->len : b->len;
        int c = memcmp(a->s, b->s, n);
        if (c != 0)
            return c < 0 ? -1 : 1;
        return a->len < b->len ? -1 : a->len > b->len;
    }
    default:
        return a->b - b->b;
    }
}

/* The iterator of pairs: upvalue 1 the sorted keys, 2 the table, 3 the
 * position reached. Values are read raw when visited: keys removed during
 * the loop are skipped, keys added are not visited. */
static int sorted_next(lua_State *L)
{
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(3));
    lua_Integer n = (lua_Integer)lua_rawlen(L, lua_upvalueindex(1));
    while (pos < n) {
        pos++;
        lua_rawgeti(L, lua_upvalueindex(1), pos);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) {
            lua_pushinteger(L, pos);
            lua_replace(L, lua_upvalueindex(3));
            return 2;
        }
        lua_pop(L, 2);
    }
    lua_pushinteger(L, pos);
    lua_replace(L, lua_upvalueindex(3));
    lua_pushnil(L);
    return 1;
}

/* pairs(t) and json.sorted_pairs(t): the keys in a fixed order, numbers
 * (ascending), then strings (byte order), then false and true, so that no
 * result depends on where a hash table put its keys. A key of another type
 * (a table, a function, json.null) has no order: an error. A library table
 * lists its functions. */
static int sandbox_pairs(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1)) {
        if (lua_rawgetp(L, -1, &key_readonly) == LUA_TBOOLEAN) {
            lua_getfield(L, -2, "__index");
            lua_replace(L, 1);
        }
        lua_settop(L, 1);
    }
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        n++;
        lua_pop(L, 1);
    }
    oe_lua_charge(L, sort_steps(n));
    if (n > (size_t)INT32_MAX)
        return luaL_error(L, "pairs: too many keys");
    sort_key *keys = lua_newuserdatauv(L, (n ? n : 1) * sizeof *keys, 0); /* 2 */
    lua_createtable(L, (int)n, 0);                                        /* 3: by slot */
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        sort_key *e = &keys[k];
        memset(e, 0, sizeof *e);
        e->slot = (lua_Integer)++k;
        switch (lua_type(L, -1)) {
        case LUA_TNUMBER:
            e->rank = 0;
            e->is_integer = lua_isinteger(L, -1);
            if (e->is_integer)
                e->i = lua_tointeger(L, -1);
            else
                e->d = lua_tonumber(L, -1);
            break;
        case LUA_TSTRING:
            e->rank = 1;
            e->s = lua_tolstring(L, -1, &e->len);
            break;
        case LUA_TBOOLEAN:
            e->rank = 2;
            e->b = lua_toboolean(L, -1);
            break;
        default:
            return luaL_error(L,
                              "pairs: a key of type %s has no order (keys must be numbers, "
                              "strings or booleans)",
                              is_null(L, -1) ? "json.null" : luaL_typename(L, -1));
        }
        lua_pushvalue(L, -1);
        lua_rawseti(L, 3, e->slot);
    }
    qsort(keys, n, sizeof *keys, compare_keys);
    lua_createtable(L, (int)n, 0); /* 4: the keys in order */
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 3, keys[i].slot);
        lua_rawseti(L, 4, (lua_Integer)i + 1);
    }
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, sorted_next, 3);
    return 1;
}

/* ---- tostring and string.format ---- */

/* Pushes the text of the value at idx: a __tostring metamethod's string,
 * or for the rest what Lua prints, except that tables, functions and
 * userdata print their type without an address, json.null prints "null"
 * and NaN prints "nan" (the C library may print "-nan"). */
static const char *push_text(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (luaL_callmeta(L, idx, "__tostring")) {
        if (!lua_isstring(L, -1))
            luaL_error(L, "'__tostring' must return a string");
        return lua_tostring(L, -1);
    }
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        if (!lua_isinteger(L, idx) && isnan(lua_tonumber(L, idx))) {
            lua_pushliteral(L, "nan");
            break;
        }
        lua_pushvalue(L, idx);
        lua_tostring(L, -1);
        break;
    case LUA_TSTRING:
        lua_pushvalue(L, idx);
        break;
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
        break;
    case LUA_TNIL:
        lua_pushliteral(L, "nil");
        break;
    default:
        if (is_null(L, idx))
            lua_pushliteral(L, "null");
        else
            lua_pushstring(L, luaL_typename(L, idx));
        break;
    }
    return lua_tostring(L, -1);
}

static int sandbox_tostring(lua_State *L)
{
    luaL_checkany(L, 1);
    push_text(L, 1);
    return 1;
}

/* string.format (upvalue 1 is Lua's): every %s argument goes through
 * push_text first, %p (an address) is refused; charged by its format's and
 * arguments' bytes. */
static int sandbox_format(lua_State *L)
{
    size_t flen;
    const char *f = luaL_checklstring(L, 1, &flen);
    int top = lua_gettop(L), arg = 1;
    for (size_t i = 0; i < flen; i++) {
        if (f[i] != '%')
            continue;
        if (++i < flen && f[i] == '%')
            continue;
        while (i < flen && f[i] && strchr("-+ #0", f[i]))
            i++;
        while (i < flen && f[i] >= '0' && f[i] <= '9')
            i++;
        if (i < flen && f[i] == '.') {
            i++;
            while (i < flen && f[i] >= '0' && f[i] <= '9')
                i++;
        }
        if (i >= flen)
            break; /* Lua's format names the error */
        arg++;
        if (f[i] == 'p')
            return luaL_error(L, "string.format: %%p (an address) is not available");
        if (f[i] == 's' && arg <= top) {
            push_text(L, arg);
            lua_replace(L, arg);
        }
    }
    return charged_call(L);
}

/* ---- setmetatable ---- */

/* setmetatable (upvalue 1 is Lua's), refusing __gc: a finalizer would run
 * at a time that depends on the collector, possibly after its call. */
static int sandbox_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc is not available");
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

/* ---- table.sort: stable, the same comparisons on every run ---- */

/* 1 when the value at a sorts before the one at b: the comparator at 2, or
 * Lua's < (with __lt). One step a comparison. */
static int sort_less(lua_State *L, int a, int b, int has_cmp)
{
    oe_lua_charge(L, 1);
    if (!has_cmp)
        return lua_compare(L, a, b, LUA_OPLT);
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, a);
    lua_pushvalue(L, b);
    lua_call(L, 2, 1);
    int less = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return less;
}

/* table.sort(t [, less]): a bottom-up merge sort through two scratch
 * tables. Lua's own quicksort picks pivots from the clock when a part is
 * unbalanced, so its order of equal items, and its count of comparisons,
 * could differ between runs; this sort is stable (equal items keep their
 * order) and the same on every run. Reads and writes t as Lua's does
 * (lua_geti/lua_seti, metamethods included). */
static int sandbox_sort(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    int has_cmp = !lua_isnoneornil(L, 2);
    if (has_cmp)
        luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    if (n < 2)
        return 0;
    luaL_argcheck(L, n < INT32_MAX, 1, "array too big");
    oe_lua_charge(L, (uint64_t)n);
    lua_createtable(L, (int)n, 0); /* 3 */
    lua_createtable(L, (int)n, 0); /* 4 */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        lua_rawseti(L, 3, i);
    }
    int src = 3, dst = 4;
    for (lua_Integer width = 1; width < n; width *= 2) {
        for (lua_Integer lo = 1; lo <= n; lo += 2 * width) {
            lua_Integer mid = lo + width <= n + 1 ? lo + width : n + 1;
            lua_Integer hi = lo + 2 * width <= n + 1 ? lo + 2 * width : n + 1;
            lua_Integer i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                lua_rawgeti(L, src, i);
                lua_rawgeti(L, src, j);
                /* The right item goes first only when strictly less. */
                if (sort_less(L, -1, -2, has_cmp)) {
                    lua_rawseti(L, dst, k++);
                    lua_pop(L, 1);
                    j++;
                } else {
                    lua_pop(L, 1);
                    lua_rawseti(L, dst, k++);
                    i++;
                }
            }
            for (; i < mid; i++) {
                lua_rawgeti(L, src, i);
                lua_rawseti(L, dst, k++);
            }
            for (; j < hi; j++) {
                lua_rawgeti(L, src, j);
                lua_rawseti(L, dst, k++);
            }
        }
        int t = src;
        src = dst;
        dst = t;
    }
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, src, i);
        lua_seti(L, 1, i);
    }
    return 0;
}

/* ---- json ---- */

oe_lua_shape oe_lua_table_shape(lua_State *L, int idx, size_t *count, const char **why)
{
    idx = lua_absindex(L, idx);
    int marked = -1;
    if (lua_getmetatable(L, idx)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_array_mt);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_object_mt);
        marked = lua_rawequal(L, -3, -2)   ? OE_LUA_ARRAY
                 : lua_rawequal(L, -3, -1) ? OE_LUA_OBJECT
                                           : -1;
        lua_pop(L, 3);
    }
    size_t n = 0, strings = 0, indexes = 0, others = 0;
    lua_Integer max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        n++;
        if (lua_type(L, -1) == LUA_TSTRING) {
            strings++;
        } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
            indexes++;
            if (lua_tointeger(L, -1) > max)
                max = lua_tointeger(L, -1);
        } else {
            others++;
        }
    }
    oe_lua_charge(L, 1 + n);
    *count = n;
    *why = NULL;
    int sequence = indexes == n && (size_t)max == n;
    if (marked == OE_LUA_ARRAY) {
        if (sequence)
            return OE_LUA_ARRAY;
        *why = "a json.array has keys other than 1..n";
        return OE_LUA_NEITHER;
    }
    if (marked == OE_LUA_OBJECT) {
        if (strings == n)
            return OE_LUA_OBJECT;
        *why = "a json.object has a key that is not a string";
        return OE_LUA_NEITHER;
    }
    if (strings == n)
        return OE_LUA_OBJECT; /* {} included: use json.array() for [] */
    if (sequence)
        return OE_LUA_ARRAY;
    if (others)
        *why = "a table has a key that is neither a string nor a positive integer";
    else if (strings)
        *why = "a table mixes string keys and integer keys";
    else
        *why = "a table's integer keys are not 1..n (an array with a hole?)";
    return OE_LUA_NEITHER;
}

/* json.array([t]) and json.object([t]): marks t (a new table when absent)
 * so that it prints as a JSON array or object, and returns it. Upvalue 1
 * is the mark. A table with a metatable of its own cannot be marked. */
static int json_mark(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
        if (lua_getmetatable(L, 1)) {
            lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_array_mt);
            lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_object_mt);
            if (!lua_rawequal(L, 2, 3) && !lua_rawequal(L, 2, 4))
                return luaL_error(L, "json: the table has a metatable of its own");
            lua_settop(L, 1);
        }
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, 1);
    return 1;
}

/* json.type(v): "null", "boolean", "integer", "number" (a float),
 * "string", "array", "object", or nil for a value that cannot be JSON
 * (nil, a function, a table whose keys fit neither). */
static int json_type(lua_State *L)
{
    const char *name = NULL;
    size_t count;
    const char *why;
    switch (lua_type(L, 1)) {
    case LUA_TBOOLEAN:
        name = "boolean";
        break;
    case LUA_TNUMBER:
        name = lua_isinteger(L, 1) ? "integer" : "number";
        break;
    case LUA_TSTRING:
        name = "string";
        break;
    case LUA_TLIGHTUSERDATA:
        name = is_null(L, 1) ? "null" : NULL;
        break;
    case LUA_TTABLE:
        switch (oe_lua_table_shape(L, 1, &count, &why)) {
        case OE_LUA_ARRAY:
            name = "array";
            break;
        case OE_LUA_OBJECT:
            name = "object";
            break;
        case OE_LUA_NEITHER:
            break;
        }
        break;
    }
    if (name)
        lua_pushstring(L, name);
    else
        lua_pushnil(L);
    return 1;
}

/* ---- Building the sandbox ---- */

/* Copies the named fields of the table at from into the table at to;
 * charged ones through charged_call. */
static void copy_fields(lua_State *L, int from, int to, const char *const *names, int charged)
{
    from = lua_absindex(L, from);
    to = lua_absindex(L, to);
    for (; *names; names++) {
        lua_getfield(L, from, *names);
        if (charged && lua_type(L, -1) == LUA_TFUNCTION)
            lua_pushcclosure(L, charged_call, 1);
        lua_setfield(L, to, *names);
    }
}

/* Sets to[name] = a closure of fn over from[real]. */
static void wrap_field(lua_State *L, int from, int to, const char *real, const char *name,
                       lua_CFunction fn)
{
    from = lua_absindex(L, from);
    to = lua_absindex(L, to);
    lua_getfield(L, from, real);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, to, name);
}

static void range_field(lua_State *L, int from, int to, const char *name, int kind)
{
    from = lua_absindex(L, from);
    to = lua_absindex(L, to);
    lua_getfield(L, from, name);
    lua_pushinteger(L, kind);
    lua_pushcclosure(L, range_call, 2);
    lua_setfield(L, to, name);
}

/* Opens one of Lua's libraries and leaves its table on the stack, also
 * keeping it in the registry's loaded table (where error messages find the
 * names of its functions). */
static void open_library(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_requiref(L, name, open, 0);
}

static void make_marker(lua_State *L, const void *key, const char *what)
{
    lua_createtable(L, 0, 1);
    lua_pushstring(L, what);
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

int oe_lua_sandbox_open(lua_State *L)
{
    static const char *const base_plain[] = {
        "assert", "error",  "getmetatable", "ipairs", "pcall",    "rawequal", "rawget",
        "rawlen", "select", "type",         "xpcall", "_VERSION", NULL};
    static const char *const base_charged[] = {"tonumber", NULL};
    static const char *const string_plain[] = {"len", NULL};
    static const char *const string_charged[] = {"byte", "char",  "lower", "reverse",
                                                 "sub",  "upper", NULL};
    static const char *const table_plain[] = {"pack", NULL};
    static const char *const math_plain[] = {
        "abs",  "acos", "asin", "atan", "ceil",       "cos",  "deg",        "exp",  "floor",
        "fmod", "huge", "log",  "max",  "maxinteger", "min",  "mininteger", "modf", "pi",
        "rad",  "sin",  "sqrt", "tan",  "tointeger",  "type", "ult",        NULL};
    static const char *const utf8_plain[] = {"charpattern", "codes", NULL};
    static const char *const utf8_charged[] = {"char", "codepoint", "len", "offset", NULL};

    lua_gc(L, LUA_GCSTOP);
    lua_settop(L, 0);
    open_library(L, LUA_GNAME, luaopen_base);        /* 1 */
    open_library(L, LUA_STRLIBNAME, luaopen_string); /* 2 */
    open_library(L, LUA_TABLIBNAME, luaopen_table);  /* 3 */
    open_library(L, LUA_MATHLIBNAME, luaopen_math);  /* 4 */
    open_library(L, LUA_UTF8LIBNAME, luaopen_utf8);  /* 5 */

    lua_newtable(L); /* 6: the sandbox's globals */
    copy_fields(L, 1, 6, base_plain, 0);
    copy_fields(L, 1, 6, base_charged, 1);
    wrap_field(L, 1, 6, "setmetatable", "setmetatable", sandbox_setmetatable);
    lua_pushcfunction(L, sandbox_pairs);
    lua_setfield(L, 6, "pairs");
    lua_pushcfunction(L, sandbox_tostring);
    lua_setfield(L, 6, "tostring");

    lua_newtable(L); /* 7: string */
    copy_fields(L, 2, 7, string_plain, 0);
    copy_fields(L, 2, 7, string_charged, 1);
    wrap_field(L, 2, 7, "rep", "rep", sandbox_rep);
    wrap_field(L, 2, 7, "format", "format", sandbox_format);
    oe_lua_open_patterns(L, 7);
    push_readonly(L, 7); /* 8 */
    lua_pushvalue(L, 8);
    lua_setfield(L, 6, "string");

    lua_newtable(L); /* 9: table */
    copy_fields(L, 3, 9, table_plain, 0);
    range_field(L, 3, 9, "insert", RANGE_LENGTH);
    range_field(L, 3, 9, "remove", RANGE_LENGTH);
    range_field(L, 3, 9, "concat", RANGE_CONCAT);
    range_field(L, 3, 9, "unpack", RANGE_UNPACK);
    range_field(L, 3, 9, "move", RANGE_MOVE);
    lua_pushcfunction(L, sandbox_sort);
    lua_setfield(L, 9, "sort");
    push_readonly(L, 9);
    lua_setfield(L, 6, "table");

    lua_newtable(L); /* 10: math */
    copy_fields(L, 4, 10, math_plain, 0);
    push_readonly(L, 10);
    lua_setfield(L, 6, "math");

    lua_newtable(L); /* 11: utf8 */
    copy_fields(L, 5, 11, utf8_plain, 0);
    copy_fields(L, 5, 11, utf8_charged, 1);
    push_readonly(L, 11);
    lua_setfield(L, 6, "utf8");

    make_marker(L, &oe_lua_key_array_mt, "json.array");
    make_marker(L, &oe_lua_key_object_mt, "json.object");
    lua_newtable(L); /* 12: json */
    lua_pushlightuserdata(L, (void *)&oe_lua_null);
    lua_setfield(L, 12, "null");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_array_mt);
    lua_pushcclosure(L, json_mark, 1);
    lua_setfield(L, 12, "array");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_object_mt);
    lua_pushcclosure(L, json_mark, 1);
    lua_setfield(L, 12, "object");
    lua_pushcfunction(L, sandbox_pairs);
    lua_setfield(L, 12, "sorted_pairs");
    lua_pushcfunction(L, json_type);
    lua_setfield(L, 12, "type");
    push_readonly(L, 12);
    lua_setfield(L, 6, "json");

    /* Every call's globals: a fresh table whose misses read the sandbox's
     * globals, its metatable out of reach. */
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, 6);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &oe_lua_key_env_mt);

    /* The metatable of strings ("s:upper()") indexes the sandbox's string
     * table; getmetatable("") gives a read-only view of it, whose __index
     * is that same table. */
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, 8);
    lua_setfield(L, -2, "__index");
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 8);
    lua_setfield(L, -2, "__index");
    push_readonly(L, -1);
    lua_remove(L, -2);
    lua_setfield(L, -2, "__metatable");
    lua_pushliteral(L, "");
    lua_insert(L, -2);
    lua_setmetatable(L, -2);
    lua_pop(L, 1);

    /* Nothing reaches Lua's own globals (with load, dofile...) any more:
     * chunks get a call's table instead. */
    lua_newtable(L);
    lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &oe_lua_key_chunks);
    lua_settop(L, 0);
    return 0;
}
