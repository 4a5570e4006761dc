/* Tests engine/lua_actions.c, lua_sandbox.c and lua_pattern.c: loading a
 * folder of actions (and refusing bad ones at start), the payload and
 * result crossing between JSON and Lua (exact text, as Python prints it),
 * the sandbox (nothing reaches outside, nothing leaks between calls),
 * hostile scripts (each a bounded action failure, the interpreter fine
 * after it), the same verdicts and costs on every run, our pattern
 * matcher against Lua's own, and the engine running Lua actions. */
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/approval.h"
#include "engine/digest.h"
#include "engine/engine.h"
#include "engine/ids.h"
#include "engine/lua_actions.h"
#include "engine/status.h"
#include "ledger/ledger.h"
#include "tests/test.h"

static char root[64];
static int folders;

/* A new folder holding scripts: NAME, TEXT pairs, NULL-terminated. */
static void make_folder(char *out, size_t n, const char *const *scripts)
{
    snprintf(out, n, "%s/f%d", root, folders++);
    if (mkdir(out, 0700) != 0) {
        OE_FAIL_("mkdir %s", out);
        return;
    }
    for (; scripts && scripts[0]; scripts += 2) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", out, scripts[0]);
        FILE *f = fopen(path, "w");
        if (!f) {
            OE_FAIL_("cannot write %s", path);
            continue;
        }
        fputs(scripts[1], f);
        fclose(f);
    }
}

typedef struct fixture {
    oe_lua_actions *set;
    oe_lua_vm *vm;
} fixture;

/* Loads the folder and makes an interpreter; fails the test otherwise. */
static int fixture_open(fixture *f, const char *folder, const oe_lua_limits *limits)
{
    char err[600];
    f->set = NULL;
    f->vm = NULL;
    if (oe_lua_actions_load(folder, limits, &f->set, err, sizeof err) != OE_OK) {
        OE_FAIL_("load %s: %s", folder, err);
        return -1;
    }
    if (oe_lua_vm_new(f->set, &f->vm, err, sizeof err) != OE_OK) {
        OE_FAIL_("vm: %s", err);
        return -1;
    }
    return 0;
}

static void fixture_close(fixture *f)
{
    oe_lua_vm_free(f->vm);
    oe_lua_actions_free(f->set);
}

/* Runs action name on payload (JSON text); the result's text in result
 * (up to rlen), the failure's message in msg. Returns oe_lua_vm_run's. */
static int run(fixture *f, const char *name, const char *payload, char *result, size_t rlen,
               char *msg, size_t mlen)
{
    char err[300];
    result[0] = msg[0] = '\0';
    long index = oe_lua_actions_find(f->set, name);
    if (index < 0) {
        OE_FAIL_("no action %s", name);
        return -100;
    }
    oe_json_doc *doc = test_json_parse(payload, strlen(payload), 0, err, sizeof err);
    if (!doc) {
        OE_FAIL_("payload %s: %s", payload, err);
        return -100;
    }
    oe_buf out;
    oe_buf_init(&out, OE_RESULT_MAX_BYTES);
    int rc = oe_lua_vm_run(f->vm, (size_t)index, oe_json_root(doc), &out, msg, mlen);
    if (rc == OE_OK)
        snprintf(result, rlen, "%s", out.data ? out.data : "");
    else if (out.len != 0)
        OE_FAIL_("%s: a failed call left %zu bytes of result", name, out.len);
    oe_buf_free(&out);
    oe_json_doc_free(doc);
    return rc;
}

/* The interpreter is back to its idle size, made once. */
static void assert_idle(fixture *f, const char *after)
{
    oe_lua_usage u;
    oe_lua_vm_usage(f->vm, &u);
    if (u.heap != u.heap_idle || u.rebuilt != 0)
        OE_FAIL_("after %s: heap %zu, idle %zu, remade %lu times", after, u.heap, u.heap_idle,
                 u.rebuilt);
}

/* ---- Payloads to Lua and back ---- */

/* payload -> the identity action -> result: json.dumps(payload,
 * sort_keys=True) exactly as Python 3 prints it. */
static const char *const round_trips[][2] = {
    {"{}", "{}"},
    {"[]", "[]"},
    {"{\"a\":[],\"b\":{},\"c\":[{}],\"d\":[[]],\"e\":{\"f\":[]}}",
     "{\"a\": [], \"b\": {}, \"c\": [{}], \"d\": [[]], \"e\": {\"f\": []}}"},
    {"{\"z\":1,\"a\":2,\"\\u00e9\":3,\"Z\":4,\"\\u00e9t\\u00e9\":5,\"\":6}",
     "{\"\": 6, \"Z\": 4, \"a\": 2, \"z\": 1, \"\\u00e9\": 3, \"\\u00e9t\\u00e9\": 5}"},
    {"[\"\\u00e9\",\"\\ud83d\\ude00\",\"\\u0000\",\"\\u007f\",\"\\n\\t\\\"\\\\\",\"\\u2028\","
     "\"\\u001f\"]",
     "[\"\\u00e9\", \"\\ud83d\\ude00\", \"\\u0000\", \"\\u007f\", \"\\n\\t\\\"\\\\\", "
     "\"\\u2028\", \"\\u001f\"]"},
    {"[9223372036854775807,-9223372036854775808,9007199254740993,0,-0]",
     "[9223372036854775807, -9223372036854775808, 9007199254740993, 0, 0]"},
    {"[0.1,-0.0,1e308,1e16,5e-324,1.0,2.5,1e-7,123456789.125,1.7976931348623157e308,"
     "9007199254740993.0]",
     "[0.1, -0.0, 1e+308, 1e+16, 5e-324, 1.0, 2.5, 1e-07, 123456789.125, "
     "1.7976931348623157e+308, 9007199254740992.0]"},
    {"[null,true,false]", "[null, true, false]"},
    {"[[[[[[[[[[1]]]]]]]]]]", "[[[[[[[[[[1]]]]]]]]]]"},
    {"{\"a\":{\"b\":{\"c\":{\"d\":{}}}},\"list\":[1,\"two\",3.0,null,{\"x\":[]}]}",
     "{\"a\": {\"b\": {\"c\": {\"d\": {}}}}, \"list\": [1, \"two\", 3.0, null, {\"x\": []}]}"},
};

static void test_round_trips(void)
{
    static const char *const scripts[] = {"same.lua", "return function(p) return p end", NULL};
    char folder[128], result[4096], msg[300];
    make_folder(folder, sizeof folder, scripts);
    fixture f;
    if (fixture_open(&f, folder, NULL) != 0)
        return;
    for (size_t i = 0; i < sizeof round_trips / sizeof round_trips[0]; i++) {
        int rc = run(&f, "same", round_trips[i][0], result, sizeof result, msg, sizeof msg);
        ASSERT_EQ(rc, OE_OK);
        ASSERT_STREQ(result, round_trips[i][1]);
    }
    /* An integer beyond 64 bits cannot become a Lua value exactly: the
     * call fails rather than round it. */
    ASSERT_EQ(
        run(&f, "same", "{\"n\":12345678901234567890}", result, sizeof result, msg, sizeof msg),
        OE_EINVAL);
    ASSERT_CONTAINS(msg, "outside the 64-bit range");
    assert_idle(&f, "round trips");
    fixture_close(&f);
}

/* ---- What scripts return, and the sandbox's functions ---- */

typedef struct lua_case {
    const char *body;    /* the action's function body */
    const char *payload; /* NULL: {} */
    const char *result;  /* NULL: must fail */
    const char *error;   /* words the failure's message contains */
} lua_case;

static const lua_case results[] = {
    /* Shapes */
    {"return {}", NULL, "{}", NULL},
    {"return json.array()", NULL, "[]", NULL},
    {"return json.object({})", NULL, "{}", NULL},
    {"return {1, 2, 3}", NULL, "[1, 2, 3]", NULL},
    {"return {b = 1, a = {true, false, json.null}}", NULL, "{\"a\": [true, false, null], \"b\": 1}",
     NULL},
    {"return nil", NULL, "null", NULL},
    {"return", NULL, "null", NULL},
    {"return json.null", NULL, "null", NULL},
    {"return 'x', 'ignored'", NULL, "\"x\"", NULL},
    {"return {['\\0'] = 1, ['\\u{e9}'] = 2}", NULL, "{\"\\u0000\": 1, \"\\u00e9\": 2}", NULL},
    {"return {[1] = 1, [3] = 3}", NULL, NULL, "not 1..n"},
    {"return {1, x = 2}", NULL, NULL, "mixes string keys and integer keys"},
    {"return {[true] = 1}", NULL, NULL, "neither a string nor a positive integer"},
    {"return {[1.5] = 1}", NULL, NULL, "neither a string nor a positive integer"},
    {"local t = {} t[1] = t return t", NULL, NULL, "nested deeper than 64"},
    {"return function() end", NULL, NULL, "a function cannot be JSON"},
    {"return json.array({a = 1})", NULL, NULL, "json.array has keys other than 1..n"},
    {"return json.object({1})", NULL, NULL, "json.object has a key that is not a string"},
    {"return '\\xff'", NULL, NULL, "not UTF-8 text"},
    {"return string.rep('x', 300000)", NULL, NULL, "result is larger than 262144 bytes"},
    /* Numbers: Lua's integers wrap around on overflow (two's complement),
     * floats are IEEE doubles printed as Python's repr, and NaN or
     * infinity cannot be JSON. */
    {"return math.maxinteger + 1", NULL, "-9223372036854775808", NULL},
    {"return math.mininteger - 1", NULL, "9223372036854775807", NULL},
    {"return math.maxinteger * 2", NULL, "-2", NULL},
    {"return p.n + 1", "{\"n\":9223372036854775807}", "-9223372036854775808", NULL},
    {"return 9007199254740993", NULL, "9007199254740993", NULL},
    {"return (1 << 53) + 1", NULL, "9007199254740993", NULL},
    {"return 2^53 + 1", NULL, "9007199254740992.0", NULL},
    {"return p.n + 0.0", "{\"n\":9007199254740993}", "9007199254740992.0", NULL},
    {"return -0.0", NULL, "-0.0", NULL},
    {"return p.z", "{\"z\":-0.0}", "-0.0", NULL},
    {"return 0 * -1.0", NULL, "-0.0", NULL},
    {"return 1e308", NULL, "1e+308", NULL},
    {"return p.x * 10", "{\"x\":1e308}", NULL, "NaN and infinities cannot be JSON"},
    {"return 0/0", NULL, NULL, "NaN and infinities cannot be JSON"},
    {"return {x = -1/0}", NULL, NULL, "NaN and infinities cannot be JSON"},
    {"return 3 // 0", NULL, NULL, "attempt to divide by zero"},
    {"return 7 // 2, 7 / 2", NULL, "3", NULL},
    {"return 7 / 2", NULL, "3.5", NULL},
    {"return 10 / 2", NULL, "5.0", NULL},
    {"return 0.1 + 0.2", NULL, "0.30000000000000004", NULL},
    {"return 2^63", NULL, "9.223372036854776e+18", NULL},
    {"return math.tointeger(2^53)", NULL, "9007199254740992", NULL},
    {"return 1e16", NULL, "1e+16", NULL},
    {"return {math.type(p.i), math.type(p.f)}", "{\"i\":1,\"f\":1.0}", "[\"integer\", \"float\"]",
     NULL},
    /* Text of values: no addresses */
    {"return {tostring({}), tostring(tostring), tostring(json.null), tostring(nil)}", NULL,
     "[\"table\", \"function\", \"null\", \"nil\"]", NULL},
    {"return {tostring(0/0), tostring(-(0/0)), tostring(1e15), tostring(2^63), tostring(3), "
     "tostring(3.0)}",
     NULL, "[\"nan\", \"nan\", \"1e+15\", \"9.2233720368548e+18\", \"3\", \"3.0\"]", NULL},
    {"return tostring(setmetatable({}, {__tostring = function() return 'T' end}))", NULL, "\"T\"",
     NULL},
    {"return string.format('%5.1f|%d|%s|%s|%x', 3.14159, 42, {}, json.null, 255)", NULL,
     "\"  3.1|42|table|null|ff\"", NULL},
    {"return string.format('%p', {})", NULL, NULL, "%p (an address) is not available"},
    /* pairs: sorted, numbers then strings then booleans */
    {"local t = {b = 1, a = 2, [3] = 0, [1] = 0, [2.5] = 0, c = 3, [false] = 0, [true] = 0} "
     "local ks = {} for k in pairs(t) do ks[#ks + 1] = tostring(k) end return ks",
     NULL, "[\"1\", \"2.5\", \"3\", \"a\", \"b\", \"c\", \"false\", \"true\"]", NULL},
    {"local ks = {} for k, v in json.sorted_pairs(p) do ks[#ks + 1] = k .. '=' .. v end "
     "return table.concat(ks, ',')",
     "{\"zeta\":1,\"alpha\":2,\"Mid\":3}", "\"Mid=3,alpha=2,zeta=1\"", NULL},
    {"for k in pairs({[{}] = 1}) do end", NULL, NULL, "a key of type table has no order"},
    {"local t = {a = 1, b = 2, c = 3} local n = 0 for k in pairs(t) do t.b = nil n = n + 1 end "
     "return n",
     NULL, "2", NULL},
    {"local ks = {} for k in pairs(string) do ks[#ks + 1] = k end return table.concat(ks, ',')",
     NULL, "\"byte,char,find,format,gmatch,gsub,len,lower,match,rep,reverse,sub,upper\"", NULL},
    /* table.sort: stable, any comparator ends */
    {"local t = {{k = 2, v = 'a'}, {k = 1, v = 'b'}, {k = 2, v = 'c'}, {k = 1, v = 'd'}} "
     "table.sort(t, function(a, b) return a.k < b.k end) local out = {} "
     "for _, r in ipairs(t) do out[#out + 1] = r.v end return table.concat(out)",
     NULL, "\"bdac\"", NULL},
    {"local t = {5, 3, 9, 1, 1, 0} table.sort(t) return t", NULL, "[0, 1, 1, 3, 5, 9]", NULL},
    {"local t = {'b', 'a', 'c'} table.sort(t, function(a, b) return a > b end) return t", NULL,
     "[\"c\", \"b\", \"a\"]", NULL},
    {"local t = {} for i = 1, 100 do t[i] = i end table.sort(t, function() return true end) "
     "return #t",
     NULL, "100", NULL},
    {"table.sort({1, 'x'})", NULL, NULL, "attempt to compare"},
    /* json and the payload's tables */
    {"return {json.type(p.o), json.type(p.a), json.type(p.n), json.type(p.i), json.type(p.f), "
     "json.type(p.s), json.type(p.b), json.type(p.missing) or 'absent', json.type({}), "
     "json.type({1}), json.type({1, x = 1}) or 'none'}",
     "{\"o\":{},\"a\":[],\"n\":null,\"i\":1,\"f\":1.5,\"s\":\"x\",\"b\":true}",
     "[\"object\", \"array\", \"null\", \"integer\", \"number\", \"string\", \"boolean\", "
     "\"absent\", \"object\", \"array\", \"none\"]",
     NULL},
    {"p.x = 1 p.a[#p.a + 1] = 'y' return p", "{\"a\":[]}", "{\"a\": [\"y\"], \"x\": 1}", NULL},
    {"return {getmetatable(p), getmetatable(p.a)}", "{\"a\":[]}",
     "[\"json.object\", \"json.array\"]", NULL},
    {"setmetatable(p, {})", NULL, NULL, "cannot change a protected metatable"},
    {"return json.array(p)", "{\"a\":1}", NULL, "json.array has keys other than 1..n"},
    {"return json.object(setmetatable({}, {}))", NULL, NULL, "metatable of its own"},
    {"return p.s == json.null and p.t == nil", "{\"s\":null}", "true", NULL},
    /* Libraries */
    {"return {utf8.len('h\\u{e9}llo'), utf8.char(233, 8364)}", NULL, "[5, \"\\u00e9\\u20ac\"]",
     NULL},
    {"return ('abc'):upper() .. string.lower('XY') .. ('x'):rep(3, '-')", NULL, "\"ABCxyx-x-x\"",
     NULL},
    {"return {select('#', 1, 2, 3), rawlen({1, 2}), rawequal(p, p), math.max(3, 7), "
     "math.floor(2.5), math.abs(math.mininteger)}",
     NULL, "[3, 2, true, 7, 2, -9223372036854775808]", NULL},
    {"return {string.find('hello world', 'o w'), ('key=value'):match('(%w+)=(%w+)')}", NULL,
     "[5, \"key\", \"value\"]", NULL},
    {"local w = {} for x in ('one two  three'):gmatch('%a+') do w[#w + 1] = x end return w", NULL,
     "[\"one\", \"two\", \"three\"]", NULL},
    {"return {('hello world'):gsub('o', '0')}", NULL, "[\"hell0 w0rld\", 2]", NULL},
    {"return table.concat(table.pack(table.unpack({1, 2, 3})), '+')", NULL, "\"1+2+3\"", NULL},
    {"local t = {1, 2, 3} table.insert(t, 1, 0) table.remove(t) "
     "return table.move(t, 1, 3, 2, {9})",
     NULL, "[9, 0, 1, 2]", NULL},
    {"x = 1 return {_G.x, _G == _ENV, rawget(_ENV, 'x')}", NULL, "[1, true, 1]", NULL},
    {"local ok, e = pcall(error, 'inner') return {ok, e}", NULL, "[false, \"inner\"]", NULL},
    {"error('boom')", NULL, NULL, "case.lua:1: boom"},
    {"error('plain', 0)", NULL, NULL, "plain"},
    {"error({})", NULL, NULL, "(error object is a table value)"},
    {"error()", NULL, NULL, "(error object is a nil value)"},
    {"error(42)", NULL, NULL, "42"},
    {"assert(false, 'assertion')", NULL, NULL, "assertion"},
    {"return undefined_function()", NULL, NULL,
     "attempt to call a nil value (global "
     "'undefined_function')"},
};

/* Writes case.lua with the body of c and runs it in a folder of its own;
 * checks its result or failure. */
static void run_case(const lua_case *c, const oe_lua_limits *limits, fixture *keep)
{
    char text[2048], folder[128], result[4096], msg[300];
    snprintf(text, sizeof text, "return function(p) %s end", c->body);
    const char *const scripts[] = {"case.lua", text, NULL};
    make_folder(folder, sizeof folder, scripts);
    fixture f;
    if (keep)
        memset(keep, 0, sizeof *keep);
    if (fixture_open(&f, folder, limits) != 0) {
        fixture_close(&f);
        OE_FAIL_("case: %s", c->body);
        return;
    }
    int rc =
        run(&f, "case", c->payload ? c->payload : "{}", result, sizeof result, msg, sizeof msg);
    if (c->result) {
        if (rc != OE_OK || strcmp(result, c->result) != 0)
            OE_FAIL_("%s\n    got      [%s] (%d %s)\n    expected [%s]", c->body, result, rc, msg,
                     c->result);
    } else {
        if (rc != OE_EINVAL || !strstr(msg, c->error))
            OE_FAIL_("%s\n    got      [%s] (%d %s)\n    expected a failure with [%s]", c->body,
                     result, rc, msg, c->error);
    }
    assert_idle(&f, c->body);
    if (keep)
        *keep = f;
    else
        fixture_close(&f);
}

static void test_results(void)
{
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++)
        run_case(&results[i], NULL, NULL);
}

/* ---- The sandbox ---- */

static const lua_case escapes[] = {
    {"return io == nil and os == nil and load == nil and loadstring == nil and dofile == nil "
     "and loadfile == nil and require == nil and debug == nil and collectgarbage == nil and "
     "coroutine == nil and print == nil and next == nil and rawset == nil and package == nil "
     "and string.dump == nil and string.pack == nil and string.unpack == nil and "
     "math.random == nil and math.randomseed == nil and _ENV.load == nil and _G.os == nil and "
     "warn == nil and module == nil and setfenv == nil and unpack == nil",
     NULL, "true", NULL},
    {"return getmetatable('').__index == string and ('').dump == nil and "
     "getmetatable('').__index.dump == nil and getmetatable('').__index.rep == string.rep",
     NULL, "true", NULL},
    {"getmetatable('').__index = {}", NULL, NULL, "read-only"},
    {"getmetatable('').__index.rep = nil", NULL, NULL, "read-only"},
    {"getmetatable('').__add = function() end", NULL, NULL, "read-only"},
    {"string.rep = nil", NULL, NULL, "read-only"},
    {"math.pi = 3", NULL, NULL, "read-only"},
    {"table.sort = print", NULL, NULL, "read-only"},
    {"json.null = 1", NULL, NULL, "read-only"},
    {"return {getmetatable(_ENV), getmetatable(string), getmetatable(json.null)}", NULL,
     "[false, false]", NULL},
    {"setmetatable(_ENV, nil)", NULL, NULL, "cannot change a protected metatable"},
    {"setmetatable(string, nil)", NULL, NULL, "cannot change a protected metatable"},
    {"setmetatable({}, {__gc = function() end})", NULL, NULL, "__gc is not available"},
    {"return rawget(getmetatable(''), '__index') == nil and rawget(string, 'rep') == nil", NULL,
     "true", NULL},
    {"return (function() local _ENV = {x = 1} return x end)()", NULL, "1", NULL},
    {"return string.dump(function() end)", NULL, NULL, "attempt to call a nil value"},
    {"return ('x').dump", NULL, "null", NULL},
    {"return pcall(load, 'return 1')", NULL, "false", NULL},
    {"local f = ('a'):gmatch('a') return tostring(f)", NULL, "\"function\"", NULL},
};

static void test_sandbox(void)
{
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++)
        run_case(&escapes[i], NULL, NULL);

    /* Nothing a call leaves reaches the next: globals, upvalues of the
     * chunk, attempts at the shared tables. */
    static const char *const scripts[] = {
        "count.lua",
        "local n = 0\n"
        "return function(p)\n"
        "  n = n + 1\n"
        "  g = (g or 0) + 1\n"
        "  pcall(function() string.extra = 1 end)\n"
        "  pcall(function() getmetatable('').__index.upper = nil end)\n"
        "  return {n = n, g = g, extra = string.extra or 'none', up = ('a'):upper()}\n"
        "end\n",
        NULL};
    char folder[128], result[512], msg[300];
    make_folder(folder, sizeof folder, scripts);
    fixture f;
    if (fixture_open(&f, folder, NULL) != 0)
        return;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(run(&f, "count", "{}", result, sizeof result, msg, sizeof msg), OE_OK);
        ASSERT_STREQ(result, "{\"extra\": \"none\", \"g\": 1, \"n\": 1, \"up\": \"A\"}");
    }
    assert_idle(&f, "count");
    fixture_close(&f);
}

/* ---- Hostile scripts ---- */

static const lua_case hostile[] = {
    {"while true do end", NULL, NULL, "step budget exceeded (10000000 steps)"},
    {"while true do pcall(function() while true do end end) end", NULL, NULL,
     "step budget exceeded"},
    {"pcall(function() while true do end end) return 'survived'", NULL, NULL,
     "step budget exceeded"},
    {"local function f(n) return 1 + f(n + 1) end return f(1)", NULL, NULL,
     "memory budget exceeded (16777216 bytes)"},
    {"local t = setmetatable({}, {__index = function(t, k) return t[k] end}) return t.x", NULL,
     NULL, "stack overflow"},
    {"local s = string.rep('x', 1 << 30) return #s", NULL, NULL, "memory budget exceeded"},
    {"local s = 'x' while true do s = s .. s end", NULL, NULL, "memory budget exceeded"},
    {"local t = {} for i = 1, 1e9 do t[i] = i end return #t", NULL, NULL, "memory budget exceeded"},
    {"local t = {} for i = 1, 1e9 do t['k' .. i] = i end", NULL, NULL, "memory budget exceeded"},
    {"pcall(string.rep, 'x', 1 << 30) return 'caught'", NULL, NULL, "memory budget exceeded"},
    {"while true do pcall(string.rep, 'x', 1 << 30) end", NULL, NULL, "memory budget exceeded"},
    {"return #string.rep('', 1 << 60) + #string.rep('x', 100, '')", NULL, "100", NULL},
    {"return table.move({}, 1, 1 << 60, 1)", NULL, NULL, "step budget exceeded"},
    {"return table.concat(setmetatable({}, {__len = function() return 1 << 60 end}))", NULL, NULL,
     "step budget exceeded"},
    {"return table.unpack({}, 1, 1e8)", NULL, NULL, "step budget exceeded"},
    {"table.insert(setmetatable({}, {__len = function() return math.maxinteger - 1 end}), 1)", NULL,
     NULL, "step budget exceeded"},
    {"return string.find(string.rep('a', 5000), '(.-)(.-)(.-)(.-)x')", NULL, NULL,
     "step budget exceeded"},
    {"return string.gsub(string.rep('a', 3000), '.-.-.-b', '')", NULL, NULL,
     "step budget exceeded"},
    {"local s = string.rep('a', 1 << 20) for i = 1, 1e6 do utf8.len(s) end", NULL, NULL,
     "step budget exceeded"},
    {"local s = string.rep('a', 1 << 20) for i = 1, 1e6 do s:find('b', 1, true) end", NULL, NULL,
     "step budget exceeded"},
    {"local s = string.rep('a', 1 << 20) for i = 1, 1e6 do local u = s:upper() end", NULL, NULL,
     "step budget exceeded"},
    {"local t = {} for i = 1, 200 do t = {t} end return t", NULL, NULL, "nested deeper than 64"},
    {"return string.format('%100d', 1)", NULL, NULL, "invalid conversion"},
    {"error(string.rep('\\u{e9}', 1000))", NULL, NULL, "case.lua:1: \xC3\xA9\xC3\xA9"},
    {"error('\\xff\\0x', 0)", NULL, NULL, "\xEF\xBF\xBD\xEF\xBF\xBDx"},
};

static void test_hostile(void)
{
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        fixture f;
        run_case(&hostile[i], NULL, &f);
        if (!f.vm)
            continue;
        oe_lua_usage u;
        oe_lua_vm_usage(f.vm, &u);
        ASSERT_TRUE(u.memory_peak <= OE_LUA_DEFAULT_MAX_MEMORY);
        /* The interpreter is fine after it. */
        char result[64], msg[300];
        ASSERT_EQ(run(&f, "case", "{}", result, sizeof result, msg, sizeof msg),
                  hostile[i].result ? OE_OK : OE_EINVAL);
        fixture_close(&f);
    }

    /* A long message is cut after 256 bytes, at a character's end. */
    const lua_case long_error = {"error(string.rep('\\u{e9}', 1000), 0)", NULL, NULL, "\xC3\xA9"};
    fixture f;
    run_case(&long_error, NULL, &f);
    if (!f.vm)
        return;
    char result[64], msg[600];
    ASSERT_EQ(run(&f, "case", "{}", result, sizeof result, msg, sizeof msg), OE_EINVAL);
    ASSERT_EQ(strlen(msg), 256);
    ASSERT_TRUE(oe_utf8_valid(msg, strlen(msg)));
    fixture_close(&f);
}

/* Budgets as configured: a few steps, a little memory. */
static void test_limits(void)
{
    oe_lua_limits small = {.max_steps = 1000, .max_memory = 65536};
    static const lua_case cases[] = {
        {"local n = 0 for i = 1, 100 do n = n + i end return n", NULL, "5050", NULL},
        {"local n = 0 for i = 1, 10000 do n = n + i end return n", NULL, NULL,
         "step budget exceeded (1000 steps)"},
        {"return #string.rep('x', 1000)", NULL, "1000", NULL},
        {"return #string.rep('x', 100000)", NULL, NULL, "memory budget exceeded (65536 bytes)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], &small, NULL);
    /* Garbage is collected as a call goes: far more than the budget may
     * be allocated in all, as long as little is alive at once. */
    const lua_case garbage = {"local n = 0 for i = 1, 20000 do local t = {i, tostring(i)} "
                              "n = n + #t[2] end return n",
                              NULL, "88894", NULL};
    oe_lua_limits roomy = {.max_steps = 100000000, .max_memory = 65536};
    run_case(&garbage, &roomy, NULL);
}

/* ---- Start-up ---- */

static void expect_refused(const char *const *scripts, int rc, const char *words)
{
    char folder[128], err[600];
    make_folder(folder, sizeof folder, scripts);
    oe_lua_actions *set = NULL;
    int got = oe_lua_actions_load(folder, NULL, &set, err, sizeof err);
    ASSERT_EQ(got, rc);
    ASSERT_TRUE(set == NULL);
    ASSERT_CONTAINS(err, folder);
    ASSERT_CONTAINS(err, words);
}

static void test_startup(void)
{
    static const char *const bad_name[] = {"Refund.lua", "return function() end", NULL};
    expect_refused(bad_name, OE_EINVAL, "/Refund.lua: \"Refund\" is not an action name");
    static const char *const digit[] = {"1x.lua", "return function() end", NULL};
    expect_refused(digit, OE_EINVAL, "is not an action name");
    static const char *const builtin[] = {"echo.lua", "return function() end", NULL};
    expect_refused(builtin, OE_EINVAL, "/echo.lua: action echo is built in");
    static const char *const syntax[] = {"ok.lua", "return function() end", "broken.lua",
                                         "local a = 1\nlocal b = 2\nreturn function(p) return "
                                         "p +* 1 end\n",
                                         NULL};
    expect_refused(syntax, OE_EINVAL, "/broken.lua:3: unexpected symbol near '*'");
    static const char *const not_function[] = {"num.lua", "return 42", NULL};
    expect_refused(not_function, OE_EINVAL,
                   "/num.lua: the chunk must return one function (it returned 1 value, the "
                   "first number)");
    static const char *const two[] = {"two.lua", "return function() end, 1", NULL};
    expect_refused(two, OE_EINVAL, "must return one function");
    static const char *const chunk_error[] = {"err.lua", "local x = 1\nerror('at load')\n", NULL};
    expect_refused(chunk_error, OE_EINVAL, "/err.lua:2: at load");
    static const char *const chunk_loop[] = {"spin.lua", "while true do end", NULL};
    expect_refused(chunk_loop, OE_EINVAL, "/spin.lua: step budget exceeded");
    static const char *const binary[] = {"bin.lua", "\x1bLua", NULL};
    expect_refused(binary, OE_EINVAL, "/bin.lua:");

    char folder[128], err[600];
    snprintf(folder, sizeof folder, "%s/missing", root);
    oe_lua_actions *set = NULL;
    ASSERT_EQ(oe_lua_actions_load(folder, NULL, &set, err, sizeof err), OE_EIO);
    ASSERT_CONTAINS(err, "cannot open the folder");

    /* A folder named like a script. */
    make_folder(folder, sizeof folder, NULL);
    char sub[160];
    snprintf(sub, sizeof sub, "%s/dir.lua", folder);
    ASSERT_EQ(mkdir(sub, 0700), 0);
    ASSERT_EQ(oe_lua_actions_load(folder, NULL, &set, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "dir.lua: not a regular file");

    /* Hidden files and other files are left alone; names are sorted; the
     * code hash is the SHA-256 of the file's bytes. */
    static const char *const good[] = {"zeta.lua",
                                       "return function() return 1 end",
                                       "alpha.v2-x_y.lua",
                                       "return function() return 2 end",
                                       ".hidden.lua",
                                       "this is not Lua",
                                       "notes.txt",
                                       "not Lua either",
                                       NULL};
    make_folder(folder, sizeof folder, good);
    ASSERT_EQ(oe_lua_actions_load(folder, NULL, &set, err, sizeof err), OE_OK);
    ASSERT_EQ(oe_lua_actions_count(set), 2);
    ASSERT_STREQ(oe_lua_action_name(set, 0), "alpha.v2-x_y");
    ASSERT_STREQ(oe_lua_action_name(set, 1), "zeta");
    char hash[65];
    oe_sha256_hex("return function() return 1 end", 30, hash);
    ASSERT_STREQ(oe_lua_action_code_hash(set, 1), hash);
    ASSERT_EQ(oe_lua_actions_find(set, "zeta"), 1);
    ASSERT_EQ(oe_lua_actions_find(set, "nope"), -1);
    oe_lua_limits limits = oe_lua_actions_limits(set);
    ASSERT_EQ(limits.max_steps, OE_LUA_DEFAULT_MAX_STEPS);
    ASSERT_EQ(limits.max_memory, OE_LUA_DEFAULT_MAX_MEMORY);
    oe_lua_actions_free(set);

    /* An empty folder: no actions. */
    make_folder(folder, sizeof folder, NULL);
    ASSERT_EQ(oe_lua_actions_load(folder, NULL, &set, err, sizeof err), OE_OK);
    ASSERT_EQ(oe_lua_actions_count(set), 0);
    oe_lua_actions_free(set);
}

/* ---- The same on every run ---- */

static const char *const determinism_scripts[] = {
    "probe.lua",
    "return function(p)\n"
    "  local keep, out = {}, {}\n"
    "  for i = 1, p.n do\n"
    "    local g = {i, tostring(i), {x = i}}\n"
    "    if i % 7 == 0 then keep[#keep + 1] = g end\n"
    "  end\n"
    "  local weak = setmetatable({}, {__mode = 'k'})\n"
    "  for i = 1, 100 do weak[{}] = i end\n"
    "  local left = 0\n"
    "  for _ in pairs(setmetatable({}, {})) do left = left + 1 end\n"
    "  return {kept = #keep, n = p.n}\n"
    "end\n",
    "fill.lua",
    "return function(p)\n"
    "  local t, i = {}, 0\n"
    "  while true do i = i + 1 t[i] = {i, 'v' .. i} end\n"
    "end\n",
    "bomb.lua",
    "return function(p) local s = 'x' while true do s = s .. s end end\n",
    NULL};

typedef struct run_record {
    int rc;
    char result[256];
    char msg[300];
    uint64_t steps;
    size_t peak;
} run_record;

static void record(fixture *f, const char *name, const char *payload, run_record *r)
{
    r->rc = run(f, name, payload, r->result, sizeof r->result, r->msg, sizeof r->msg);
    oe_lua_usage u;
    oe_lua_vm_usage(f->vm, &u);
    r->steps = u.steps;
    r->peak = u.memory_peak;
}

static void assert_same(const run_record *a, const run_record *b, const char *what)
{
    if (a->rc != b->rc || strcmp(a->result, b->result) != 0 || strcmp(a->msg, b->msg) != 0 ||
        a->steps != b->steps || a->peak != b->peak)
        OE_FAIL_("%s differs: %d [%s] [%s] %llu steps %zu bytes / %d [%s] [%s] %llu steps %zu "
                 "bytes",
                 what, a->rc, a->result, a->msg, (unsigned long long)a->steps, a->peak, b->rc,
                 b->result, b->msg, (unsigned long long)b->steps, b->peak);
}

/* Two interpreters, one of them used for other calls in between: the same
 * results, failures, steps and memory to the byte, including a call that
 * fills its memory budget and one whose garbage is collected as it goes. */
static void test_determinism(void)
{
    char folder[128];
    make_folder(folder, sizeof folder, determinism_scripts);
    fixture a, b;
    if (fixture_open(&a, folder, NULL) != 0 || fixture_open(&b, folder, NULL) != 0)
        return;
    const char *payloads[] = {"{\"n\":10}", "{\"n\":50000}", "{\"n\":150000}"};
    run_record ra, rb, first;
    for (size_t i = 0; i < 3; i++) {
        record(&a, "bomb", "{}", &ra);
        record(&a, "probe", payloads[i], &ra);
        record(&b, "probe", payloads[i], &rb);
        assert_same(&ra, &rb, payloads[i]);
        record(&b, "probe", payloads[i], &rb);
        assert_same(&ra, &rb, payloads[i]);
    }
    record(&a, "fill", "{}", &first);
    ASSERT_EQ(first.rc, OE_EINVAL);
    ASSERT_CONTAINS(first.msg, "memory budget exceeded");
    for (int i = 0; i < 3; i++) {
        record(&a, "probe", "{\"n\":1000}", &ra);
        record(&a, "fill", "{}", &ra);
        assert_same(&first, &ra, "fill again");
        record(&b, "fill", "{}", &rb);
        assert_same(&first, &rb, "fill elsewhere");
    }
    assert_idle(&a, "determinism");
    assert_idle(&b, "determinism");
    fixture_close(&a);
    fixture_close(&b);
}

/* ---- Patterns: ours against Lua's own ---- */

/* The same Lua code runs in the sandbox and in a plain Lua state: for
 * each (subject, pattern) case, every pattern function's results or error
 * message as text. */
static const char pattern_harness[] =
    "local function show(...)\n"
    "  local out = {}\n"
    "  for i = 1, select('#', ...) do\n"
    "    local v = select(i, ...)\n"
    "    out[#out + 1] = type(v) .. ':' .. tostring(v)\n"
    "  end\n"
    "  return table.concat(out, '|')\n"
    "end\n"
    "local function try(f, ...)\n"
    "  local r = table.pack(pcall(f, ...))\n"
    "  if r[1] then return 'ok ' .. show(table.unpack(r, 2, r.n)) end\n"
    "  return 'error ' .. tostring(r[2])\n"
    "end\n"
    "local function all(s, p, init)\n"
    "  local out = {}\n"
    "  for a, b in string.gmatch(s, p, init) do out[#out + 1] = show(a, b) end\n"
    "  return table.concat(out, ';')\n"
    "end\n"
    "local repl = {a = 'A', ['1'] = 'one', b = false}\n"
    "local function up(x) return #x > 1 and x:upper() end\n"
    "return function(cases)\n"
    "  local out = {}\n"
    "  for _, c in ipairs(cases) do\n"
    "    local s, p = c[1], c[2]\n"
    "    out[#out + 1] = table.concat({\n"
    "      try(string.find, s, p), try(string.find, s, p, 2), try(string.find, s, p, -3),\n"
    "      try(string.find, s, p, 1, true), try(string.match, s, p),\n"
    "      try(string.match, s, p, 3), try(all, s, p), try(all, s, p, 2),\n"
    "      try(string.gsub, s, p, '<%0>'), try(string.gsub, s, p, '%1-%%'),\n"
    "      try(string.gsub, s, p, up), try(string.gsub, s, p, repl, 2)}, '  ')\n"
    "  end\n"
    "  return out\n"
    "end\n";

static const char *const pattern_tokens[] = {
    "a",    "b",     "x",     ".",   "%a",   "%d", "%s",    "%w",   "%A",     "[ab]",
    "[^a]", "[a-c]", "[%d ]", "[]]", "[^]]", "(",  ")",     "()",   "%1",     "%2",
    "*",    "+",     "-",     "?",   "^",    "$",  "%b()",  "%bab", "%f[%w]", "%f[ ]",
    "%",    "[",     "%%",    "%.",  "]",    "%0", "[%a-]", "%z",   "(a*)",   "(.-)"};

static unsigned long long pattern_seed = 88172645463325252ULL;

static unsigned pattern_random(unsigned n)
{
    pattern_seed ^= pattern_seed << 13;
    pattern_seed ^= pattern_seed >> 7;
    pattern_seed ^= pattern_seed << 17;
    return (unsigned)(pattern_seed % n);
}

static void test_patterns(void)
{
    enum { CASES = 1500 };
    /* The cases, as the payload (JSON) and as the plain state's table. */
    oe_buf payload;
    oe_buf_init(&payload, 0);
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_loadbuffer(L, pattern_harness, strlen(pattern_harness), "=patterns.lua") != LUA_OK ||
        lua_pcall(L, 0, 1, 0) != LUA_OK) {
        OE_FAIL_("harness: %s", lua_tostring(L, -1));
        lua_close(L);
        return;
    }
    lua_createtable(L, CASES, 0);
    oe_buf_putc(&payload, '[');
    static const char subject_chars[] = "ab x1()";
    for (int i = 0; i < CASES; i++) {
        char subject[16], pattern[64] = "";
        unsigned ls = pattern_random(12);
        for (unsigned k = 0; k < ls; k++)
            subject[k] = subject_chars[pattern_random(sizeof subject_chars - 1)];
        subject[ls] = '\0';
        unsigned tokens = 1 + pattern_random(5);
        for (unsigned k = 0; k < tokens; k++)
            strcat(pattern,
                   pattern_tokens[pattern_random(sizeof pattern_tokens / sizeof *pattern_tokens)]);
        oe_buf_printf(&payload, "%s[", i ? "," : "");
        oe_json_dump_string(&payload, subject, strlen(subject));
        oe_buf_putc(&payload, ',');
        oe_json_dump_string(&payload, pattern, strlen(pattern));
        oe_buf_putc(&payload, ']');
        lua_createtable(L, 2, 0);
        lua_pushstring(L, subject);
        lua_rawseti(L, -2, 1);
        lua_pushstring(L, pattern);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, i + 1);
    }
    oe_buf_putc(&payload, ']');
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        OE_FAIL_("plain Lua: %s", lua_tostring(L, -1));
        lua_close(L);
        oe_buf_free(&payload);
        return;
    }

    char text[sizeof pattern_harness + 64];
    snprintf(text, sizeof text, "%s", pattern_harness);
    /* The sandbox's action takes the cases as its payload. */
    const char *const scripts[] = {"patterns.lua", text, NULL};
    char folder[128], msg[300], err[300];
    make_folder(folder, sizeof folder, scripts);
    oe_lua_limits roomy = {.max_steps = 1000000000, .max_memory = 256 << 20};
    fixture f;
    if (fixture_open(&f, folder, &roomy) == 0) {
        oe_json_doc *doc = test_json_parse(payload.data, payload.len, 0, err, sizeof err);
        oe_buf out;
        oe_buf_init(&out, 0);
        int rc = oe_lua_vm_run(f.vm, 0, oe_json_root(doc), &out, msg, sizeof msg);
        ASSERT_EQ(rc, OE_OK);
        oe_json_doc *got =
            rc == OE_OK ? test_json_parse(out.data, out.len, 0, err, sizeof err) : NULL;
        const oe_json *items = got ? oe_json_root(got) : NULL;
        int differences = 0;
        for (int i = 0; items && i < CASES; i++) {
            lua_rawgeti(L, -1, i + 1);
            const char *want = lua_tostring(L, -1);
            const char *have = items->items[i].str;
            if (!want || strcmp(want, have) != 0) {
                if (differences++ < 5)
                    OE_FAIL_("pattern case %d:\n    sandbox [%s]\n    Lua     [%s]", i, have,
                             want ? want : "(none)");
            }
            lua_pop(L, 1);
        }
        ASSERT_EQ(differences, 0);
        oe_json_doc_free(got);
        oe_json_doc_free(doc);
        oe_buf_free(&out);
        fixture_close(&f);
    }
    lua_close(L);
    oe_buf_free(&payload);
}

/* A SQLite ledger of its own in the test folder, or NULL (a failure). */
static oe_store *open_store(const char *name)
{
    char path[160], err[300];
    snprintf(path, sizeof path, "%s/%s", root, name);
    oe_store *store = NULL;
    if (oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &store, err, sizeof err) != 0)
        OE_FAIL_("store %s: %s", name, err);
    return store;
}

/* ---- The engine runs them ---- */

static void test_engine(void)
{
    static const char *const scripts[] = {
        "double.lua",
        "return function(p)\n"
        "  if math.type(p.n) ~= 'integer' then error('n must be an integer', 0) end\n"
        "  return {n = p.n * 2}\n"
        "end\n",
        NULL};
    char folder[128], err[600], path[160];
    make_folder(folder, sizeof folder, scripts);
    oe_lua_actions *set = NULL;
    if (oe_lua_actions_load(folder, NULL, &set, err, sizeof err) != OE_OK) {
        OE_FAIL_("load: %s", err);
        return;
    }
    snprintf(path, sizeof path, "%s/engine.db", root);
    oe_store *store = NULL;
    oe_engine *engine = NULL;
    if (oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &store, err, sizeof err) != 0) {
        OE_FAIL_("store: %s", err);
        oe_lua_actions_free(set);
        return;
    }
    oe_engine_config cfg = {.tenant = "", .allowed_actions = "", .lua_actions = set};
    ASSERT_EQ(oe_engine_new(&cfg, store, &engine, err, sizeof err), OE_OK);
    oe_outcome o;
    oe_outcome_init(&o);
    test_run_body(engine, "{\"action\":\"double\",\"nonce\":\"l-1\",\"payload\":{\"n\":21}}", 1000,
                  &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    ASSERT_STREQ(o.result_json.data, "{\"n\": 42}");
    test_run_body(engine, "{\"action\":\"double\",\"nonce\":\"l-2\",\"payload\":{\"n\":\"x\"}}",
                  1000, &o);
    ASSERT_EQ(o.status, OE_STATUS_REJECTED);
    ASSERT_EQ(o.error, OE_ERR_ACTION_FAILED);
    ASSERT_STREQ(o.detail, "n must be an integer");
    ASSERT_STREQ(oe_error_code_name(o.error), "action_failed");
    ASSERT_EQ(oe_error_code_http_status(o.error), 400);
    ASSERT_EQ(oe_error_code_from_name("action_failed"), OE_ERR_ACTION_FAILED);
    /* A rejection does not use up the nonce; a replay answers from the
     * ledger. */
    test_run_body(engine, "{\"action\":\"double\",\"nonce\":\"l-2\",\"payload\":{\"n\":1}}", 1000,
                  &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    test_run_body(engine, "{\"action\":\"double\",\"nonce\":\"l-2\",\"payload\":{\"n\":1}}", 1000,
                  &o);
    ASSERT_EQ(o.status, OE_STATUS_REPLAYED);
    ASSERT_STREQ(o.result_json.data, "{\"n\": 2}");
    oe_engine_free(engine);

    /* The allow-list applies to Lua actions as to built-ins. */
    cfg.allowed_actions = "echo";
    ASSERT_EQ(oe_engine_new(&cfg, store, &engine, err, sizeof err), OE_OK);
    test_run_body(engine, "{\"action\":\"double\",\"nonce\":\"l-3\",\"payload\":{\"n\":1}}", 1000,
                  &o);
    ASSERT_EQ(o.error, OE_ERR_NOT_ALLOWED);
    oe_engine_free(engine);
    cfg.allowed_actions = "double, echo";
    ASSERT_EQ(oe_engine_new(&cfg, store, &engine, err, sizeof err), OE_OK);
    test_run_body(engine, "{\"action\":\"double\",\"nonce\":\"l-4\",\"payload\":{\"n\":1}}", 1000,
                  &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    ASSERT_TRUE(oe_engine_action_allowed(engine, "double"));
    ASSERT_TRUE(!oe_engine_action_allowed(engine, "add"));
    oe_engine_free(engine);
    cfg.allowed_actions = "triple";
    ASSERT_EQ(oe_engine_new(&cfg, store, &engine, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "known: add, echo, double");
    /* Without the set, the name is unknown. */
    cfg.allowed_actions = "";
    cfg.lua_actions = NULL;
    ASSERT_EQ(oe_engine_new(&cfg, store, &engine, err, sizeof err), OE_OK);
    test_run_body(engine, "{\"action\":\"double\",\"nonce\":\"l-5\",\"payload\":{\"n\":1}}", 1000,
                  &o);
    ASSERT_EQ(o.error, OE_ERR_UNKNOWN_ACTION);
    oe_engine_free(engine);
    oe_outcome_clear(&o);
    oe_store_free(store);
    oe_lua_actions_free(set);
}

/* A body for action NAME with payload {"n":1} and an HMAC artifact signed
 * with secret "k"; code is the approved code hash (NULL: none), signed
 * is the one the signature covers (the same, unless a test forges). */
static void code_body(char *out, size_t n, const char *name, const char *nonce, const char *code,
                      const char *signed_code)
{
    char err[200], hash[65], sig[65];
    oe_json_doc *d = test_json_parse("{\"n\":1}", 7, 0, err, sizeof err);
    oe_request_hash(name, strlen(name), oe_json_root(d), hash);
    oe_json_doc_free(d);
    oe_artifact a = {.approval_id = nonce,
                     .action_hash = hash,
                     .issued_by = "clawshield",
                     .issued_at = "2026-11-25T13:00:00Z",
                     .tenant_id = "t1",
                     .action_code_hash = signed_code};
    oe_approval_sign_hmac("k", &a, sig);
    char extra[128] = "";
    if (code)
        snprintf(extra, sizeof extra, ",\"action_code_hash\":\"%s\"", code);
    snprintf(out, n,
             "{\"action\":\"%s\",\"payload\":{\"n\":1},\"nonce\":\"%s\",\"approval_artifact\":{"
             "\"approval_id\":\"%s\",\"action_hash\":\"%s\",\"signature\":\"%s\","
             "\"issued_by\":\"clawshield\",\"issued_at\":\"2026-11-25T13:00:00Z\","
             "\"tenant_id\":\"t1\"%s}}",
             name, nonce, nonce, hash, sig, extra);
}

/* Every outcome of a Lua action names the code that ran (its file's
 * SHA-256); a replay names the original's, even after the file changed;
 * an approval that names a code hash is good for that code only, and the
 * hash is covered by its signature. */
static void test_code_hash(void)
{
    static const char *const v1[] = {"double.lua",
                                     "return function(p)\n"
                                     "  if p.n == 0 then error('zero', 0) end\n"
                                     "  return {n = p.n * 2}\n"
                                     "end\n",
                                     NULL};
    static const char *const v2[] = {"double.lua", "return function(p) return {n = p.n * 3} end\n",
                                     NULL};
    char f1[128], f2[128], err[600], body[2048];
    make_folder(f1, sizeof f1, v1);
    make_folder(f2, sizeof f2, v2);
    oe_lua_actions *s1 = NULL, *s2 = NULL;
    if (oe_lua_actions_load(f1, NULL, &s1, err, sizeof err) != OE_OK ||
        oe_lua_actions_load(f2, NULL, &s2, err, sizeof err) != OE_OK) {
        OE_FAIL_("load: %s", err);
        oe_lua_actions_free(s1);
        return;
    }
    const char *h1 = oe_lua_action_code_hash(s1, 0), *h2 = oe_lua_action_code_hash(s2, 0);
    char want[65];
    oe_sha256_hex(v1[1], strlen(v1[1]), want);
    ASSERT_STREQ(h1, want);
    ASSERT_TRUE(strcmp(h1, h2) != 0);
    oe_store *store = open_store("code.db");
    if (!store) {
        oe_lua_actions_free(s1);
        oe_lua_actions_free(s2);
        return;
    }
    oe_engine_config cfg = {.tenant = "", .allowed_actions = "", .lua_actions = s1};
    oe_engine *engine = NULL;
    oe_outcome o;
    oe_outcome_init(&o);
    ASSERT_EQ(oe_engine_new(&cfg, store, &engine, err, sizeof err), OE_OK);
    test_run_body(engine, "{\"action\":\"double\",\"nonce\":\"c-1\",\"payload\":{\"n\":1}}", 1000,
                  &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    ASSERT_STREQ(o.action_code_hash, h1);
    test_run_body(engine, "{\"action\":\"double\",\"nonce\":\"c-2\",\"payload\":{\"n\":0}}", 1000,
                  &o);
    ASSERT_EQ(o.error, OE_ERR_ACTION_FAILED);
    ASSERT_STREQ(o.action_code_hash, h1);
    test_run_body(engine, "{\"action\":\"echo\",\"nonce\":\"c-3\",\"payload\":{}}", 1000, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    ASSERT_STREQ(o.action_code_hash, "");
    oe_engine_free(engine);
    /* The rows keep it: the failed attempt's too. */
    oe_execution rec;
    ASSERT_EQ(
        oe_store_find_by_nonce(store, "c-1", oe_ledger_key_of("c-1", 3), &rec, err, sizeof err), 1);
    ASSERT_STREQ(rec.action_code_hash, h1);
    oe_execution_clear(&rec);
    ASSERT_EQ(
        oe_store_find_by_nonce(store, "c-3", oe_ledger_key_of("c-3", 3), &rec, err, sizeof err), 1);
    ASSERT_STREQ(rec.action_code_hash, "");
    oe_execution_clear(&rec);

    /* The file changed: new requests run the new code, a replay answers
     * with the original result and the original code's hash. */
    cfg.lua_actions = s2;
    ASSERT_EQ(oe_engine_new(&cfg, store, &engine, err, sizeof err), OE_OK);
    test_run_body(engine, "{\"action\":\"double\",\"nonce\":\"c-1\",\"payload\":{\"n\":1}}", 1000,
                  &o);
    ASSERT_EQ(o.status, OE_STATUS_REPLAYED);
    ASSERT_STREQ(o.result_json.data, "{\"n\": 2}");
    ASSERT_STREQ(o.action_code_hash, h1);
    test_run_body(engine, "{\"action\":\"double\",\"nonce\":\"c-4\",\"payload\":{\"n\":1}}", 1000,
                  &o);
    ASSERT_STREQ(o.result_json.data, "{\"n\": 3}");
    ASSERT_STREQ(o.action_code_hash, h2);
    oe_engine_free(engine);

    /* Approvals bound to a version of the code. */
    oe_engine_config cs = {
        .clawshield = 1, .secret = "k", .tenant = "t1", .allowed_actions = "", .lua_actions = s2};
    ASSERT_EQ(oe_engine_new(&cs, store, &engine, err, sizeof err), OE_OK);
    const double now = 1795611600 + 10;
    code_body(body, sizeof body, "double", "a-1", h1, h1); /* approved the old code */
    test_run_body(engine, body, now, &o);
    ASSERT_EQ(o.error, OE_ERR_APPROVAL_INVALID);
    ASSERT_CONTAINS(o.detail, "code hash mismatch");
    ASSERT_CONTAINS(o.detail, h2);
    code_body(body, sizeof body, "double", "a-2", h2, NULL); /* hash added, not signed */
    test_run_body(engine, body, now, &o);
    ASSERT_CONTAINS(o.detail, "Invalid signature");
    code_body(body, sizeof body, "double", "a-3", NULL, h2); /* signed, then dropped */
    test_run_body(engine, body, now, &o);
    ASSERT_CONTAINS(o.detail, "Invalid signature");
    code_body(body, sizeof body, "echo", "a-4", h2, h2); /* a built-in has no code hash */
    test_run_body(engine, body, now, &o);
    ASSERT_CONTAINS(o.detail, "code hash mismatch");
    code_body(body, sizeof body, "double", "a-5", h2, h2);
    test_run_body(engine, body, now, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    ASSERT_STREQ(o.action_code_hash, h2);
    code_body(body, sizeof body, "double", "a-6", NULL, NULL); /* any version */
    test_run_body(engine, body, now, &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    oe_engine_free(engine);
    oe_outcome_clear(&o);
    oe_store_free(store);
    oe_lua_actions_free(s1);
    oe_lua_actions_free(s2);
}

/* Reloads while requests run (the SIGHUP path: oe_engine_reload_actions
 * from another thread): every outcome is wholly one version's, its result
 * and code hash agreeing, and the allow-list is read safely meanwhile. The
 * requests go on past 400 until a few reloads were made among them: a
 * thread running requests back to back may keep the engine's lock from the
 * reloading one for all 400. */
typedef struct reload_run {
    oe_engine *engine;
    const char *h1, *h2;
    int bad, done, reloads;
} reload_run;

static void *reload_requests(void *arg)
{
    reload_run *rr = arg;
    oe_outcome o;
    oe_outcome_init(&o);
    char body[200];
    for (int i = 0; i < 400 || (__atomic_load_n(&rr->reloads, __ATOMIC_ACQUIRE) < 4 && i < 100000);
         i++) {
        snprintf(body, sizeof body,
                 "{\"action\":\"mul\",\"nonce\":\"rl-%d\",\"payload\":{\"n\":%d}}", i, i + 1);
        test_run_body(rr->engine, body, 1000, &o);
        long n = i + 1;
        char two[64], three[64];
        snprintf(two, sizeof two, "{\"n\": %ld}", 2 * n);
        snprintf(three, sizeof three, "{\"n\": %ld}", 3 * n);
        int v1 = strcmp(o.action_code_hash, rr->h1) == 0 && strcmp(o.result_json.data, two) == 0;
        int v2 = strcmp(o.action_code_hash, rr->h2) == 0 && strcmp(o.result_json.data, three) == 0;
        if (o.status != OE_STATUS_EXECUTED || !(v1 || v2))
            rr->bad++;
        if (!oe_engine_action_allowed(rr->engine, "mul"))
            rr->bad++;
    }
    oe_outcome_clear(&o);
    __atomic_store_n(&rr->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_reload_while_running(void)
{
    static const char *const a[] = {"mul.lua", "return function(p) return {n = p.n * 2} end\n",
                                    NULL};
    static const char *const b[] = {"mul.lua", "return function(p) return {n = p.n * 3} end\n",
                                    NULL};
    char fa[128], fb[128], err[600];
    make_folder(fa, sizeof fa, a);
    make_folder(fb, sizeof fb, b);
    oe_lua_actions *sa = NULL, *sb = NULL;
    if (oe_lua_actions_load(fa, NULL, &sa, err, sizeof err) != OE_OK ||
        oe_lua_actions_load(fb, NULL, &sb, err, sizeof err) != OE_OK) {
        OE_FAIL_("load: %s", err);
        oe_lua_actions_free(sa);
        return;
    }
    oe_store *store = open_store("reload.db");
    if (!store) {
        oe_lua_actions_free(sa);
        oe_lua_actions_free(sb);
        return;
    }
    oe_engine_config cfg = {.tenant = "", .allowed_actions = "mul, echo", .lua_actions = sa};
    oe_engine *engine = NULL;
    ASSERT_EQ(oe_engine_new(&cfg, store, &engine, err, sizeof err), OE_OK);
    reload_run rr = {.engine = engine,
                     .h1 = oe_lua_action_code_hash(sa, 0),
                     .h2 = oe_lua_action_code_hash(sb, 0)};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, reload_requests, &rr), 0);
    int reloads = 0;
    while (!__atomic_load_n(&rr.done, __ATOMIC_ACQUIRE)) {
        ASSERT_EQ(oe_engine_reload_actions(engine, reloads % 2 ? sa : sb, err, sizeof err), OE_OK);
        reloads++;
        __atomic_store_n(&rr.reloads, reloads, __ATOMIC_RELEASE);
    }
    pthread_join(t, NULL);
    ASSERT_EQ(rr.bad, 0);
    ASSERT_TRUE(reloads > 1);
    /* A set the allow-list does not match is refused; the engine keeps
     * the one it has. */
    static const char *const c[] = {"other.lua", "return function(p) return p end\n", NULL};
    char fc[128];
    make_folder(fc, sizeof fc, c);
    oe_lua_actions *sc = NULL;
    ASSERT_EQ(oe_lua_actions_load(fc, NULL, &sc, err, sizeof err), OE_OK);
    ASSERT_EQ(oe_engine_reload_actions(engine, sc, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "\"mul\" is not a registered action");
    ASSERT_TRUE(oe_engine_action_allowed(engine, "mul"));
    oe_outcome o;
    oe_outcome_init(&o);
    test_run_body(engine, "{\"action\":\"mul\",\"nonce\":\"rl-x\",\"payload\":{\"n\":1}}", 1000,
                  &o);
    ASSERT_EQ(o.status, OE_STATUS_EXECUTED);
    oe_outcome_clear(&o);
    oe_engine_free(engine);
    oe_store_free(store);
    oe_lua_actions_free(sa);
    oe_lua_actions_free(sb);
    oe_lua_actions_free(sc);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/oe-lua-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN_TEST(test_round_trips);
    RUN_TEST(test_results);
    RUN_TEST(test_sandbox);
    RUN_TEST(test_hostile);
    RUN_TEST(test_limits);
    RUN_TEST(test_startup);
    RUN_TEST(test_determinism);
    RUN_TEST(test_patterns);
    RUN_TEST(test_engine);
    RUN_TEST(test_code_hash);
    RUN_TEST(test_reload_while_running);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return TEST_REPORT();
}
