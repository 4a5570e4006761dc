/* Operators' Lua actions (lua_actions.h): the set loaded from a folder,
 * and the interpreter that runs them within their budgets.
 *
 * Budgets. Steps are counted by a count hook every OE_LUA_STEP_CHECK
 * instructions, plus what library functions charge for their work
 * (oe_lua_charge) and one step per OE_LUA_STEP_BYTES of every long string
 * made. Memory is counted by the state's allocator. The collector never
 * runs on its own (it is stopped): during a call it runs at the hook's
 * checks and the charges, once the call holds half its budget and again
 * after each further quarter (collect_if_due), points that are the same
 * on every run. An allocation that would pass the budget is refused. Both
 * failures are sticky for the call: a script that catches the error with
 * pcall is stopped at its next instruction (the hook then fires on every
 * one), and the call fails.
 *
 * Sameness across runs. Between calls the state is collected until it is
 * back to its idle size (the size measured when it was made): no garbage,
 * no interned string, no grown stack of an earlier call remains, so every
 * call starts from the same state and allocates the same bytes in the same
 * order. If it does not come back (something the collector keeps), the
 * state is made again.
 */
#include "lua_actions.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actions.h"
#include "digest.h"
#include "lua_sandbox.h"
#include "status.h"

/* ---- The set ---- */

typedef struct lua_script {
    char *name;   /* the action's name (the file's, without ".lua") */
    char *source; /* the file's bytes, NUL-terminated */
    size_t len;
    char code_hash[65]; /* SHA-256 of the bytes, lowercase hex */
} lua_script;

struct oe_lua_actions {
    char *dir; /* as given, for messages */
    lua_script *scripts;
    size_t n;
    oe_lua_limits limits;
};

size_t oe_lua_actions_count(const oe_lua_actions *set)
{
    return set ? set->n : 0;
}

const char *oe_lua_action_name(const oe_lua_actions *set, size_t i)
{
    return set->scripts[i].name;
}

const char *oe_lua_action_code_hash(const oe_lua_actions *set, size_t i)
{
    return set->scripts[i].code_hash;
}

long oe_lua_actions_find(const oe_lua_actions *set, const char *name)
{
    for (size_t i = 0; set && i < set->n; i++)
        if (strcmp(set->scripts[i].name, name) == 0)
            return (long)i;
    return -1;
}

oe_lua_limits oe_lua_actions_limits(const oe_lua_actions *set)
{
    return set->limits;
}

void oe_lua_actions_free(oe_lua_actions *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++) {
        free(set->scripts[i].name);
        free(set->scripts[i].source);
    }
    free(set->scripts);
    free(set->dir);
    free(set);
}

/* 1 when name matches [a-z][a-z0-9_.-]*. */
static int valid_name(const char *name)
{
    if (!(name[0] >= 'a' && name[0] <= 'z'))
        return 0;
    for (const char *p = name + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' ||
              *p == '-'))
            return 0;
    return 1;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(((const lua_script *)a)->name, ((const lua_script *)b)->name);
}

/* "DIR/" (the folder as given, with one '/' after it) into out, cut when
 * it is longer (then only in messages: the folder is opened first). */
static void script_dir(const oe_lua_actions *set, char *out, size_t len)
{
    size_t d = strlen(set->dir);
    if (snprintf(out, len, "%s%s", set->dir, d > 0 && set->dir[d - 1] == '/' ? "" : "/") >=
        (int)len)
        out[len - 1] = '\0';
}

/* DIR/NAME.lua into path. Returns 0, or -1 when it does not fit. */
static int script_path(const oe_lua_actions *set, const char *name, char *path, size_t len)
{
    char dir[PATH_MAX];
    script_dir(set, dir, sizeof dir);
    return snprintf(path, len, "%s%s.lua", dir, name) < (int)len ? 0 : -1;
}

/* Reads s's file into s->source. Returns OE_OK, or with a reason in err
 * OE_EINVAL (not a regular file, too large), OE_EIO or OE_ENOMEM. */
static int read_script(const oe_lua_actions *set, lua_script *s, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (script_path(set, s->name, path, sizeof path) != 0) {
        snprintf(err, errlen, "%s: the path of %s.lua is too long", set->dir, s->name);
        return OE_EINVAL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open it (%s)", path, strerror(errno));
        return OE_EIO;
    }
    struct stat st;
    int rc = OE_OK;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot read it (%s)", path, strerror(errno));
        rc = OE_EIO;
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        rc = OE_EINVAL;
    } else if ((size_t)st.st_size > OE_LUA_SCRIPT_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than %zu bytes", path, OE_LUA_SCRIPT_MAX_BYTES);
        rc = OE_EINVAL;
    } else if (!(s->source = malloc((size_t)st.st_size + 1))) {
        snprintf(err, errlen, "out of memory");
        rc = OE_ENOMEM;
    }
    size_t len = 0;
    while (rc == OE_OK) {
        ssize_t got = read(fd, s->source + len, (size_t)st.st_size + 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(err, errlen, "%s: cannot read it (%s)", path, strerror(errno));
            rc = OE_EIO;
        } else if (got == 0) {
            break;
        } else if ((len += (size_t)got) > (size_t)st.st_size) {
            snprintf(err, errlen, "%s: changed while it was read", path);
            rc = OE_EIO;
        }
    }
    close(fd);
    if (rc != OE_OK)
        return rc;
    s->source[len] = '\0';
    s->len = len;
    oe_sha256_hex(s->source, len, s->code_hash);
    return OE_OK;
}

/* Lists dir's NAME.lua entries into set->scripts, sorted by name. */
static int list_scripts(oe_lua_actions *set, char *err, size_t errlen)
{
    DIR *d = opendir(set->dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot open the folder (%s)", set->dir, strerror(errno));
        return OE_EIO;
    }
    size_t cap = 0;
    int rc = OE_OK;
    for (struct dirent *e; rc == OE_OK && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len <= 4 || strcmp(e->d_name + len - 4, ".lua") != 0)
            continue;
        if (set->n == OE_LUA_ACTIONS_MAX) {
            snprintf(err, errlen, "%s: more than %d actions", set->dir, OE_LUA_ACTIONS_MAX);
            rc = OE_ELIMIT;
            break;
        }
        if (set->n == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            lua_script *grown = realloc(set->scripts, ncap * sizeof *grown);
            if (!grown) {
                snprintf(err, errlen, "out of memory");
                rc = OE_ENOMEM;
                break;
            }
            set->scripts = grown;
            cap = ncap;
        }
        lua_script *s = &set->scripts[set->n];
        memset(s, 0, sizeof *s);
        if (!(s->name = strndup(e->d_name, len - 4))) {
            snprintf(err, errlen, "out of memory");
            rc = OE_ENOMEM;
            break;
        }
        set->n++;
    }
    closedir(d);
    if (rc == OE_OK && set->n > 1)
        qsort(set->scripts, set->n, sizeof *set->scripts, compare_names);
    return rc;
}

int oe_lua_actions_load(const char *dir, const oe_lua_limits *limits, oe_lua_actions **out,
                        char *err, size_t errlen)
{
    *out = NULL;
    oe_lua_actions *set = calloc(1, sizeof *set);
    if (!set || !(set->dir = strdup(dir))) {
        free(set);
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    if (limits)
        set->limits = *limits;
    if (set->limits.max_steps == 0)
        set->limits.max_steps = OE_LUA_DEFAULT_MAX_STEPS;
    if (set->limits.max_memory == 0)
        set->limits.max_memory = OE_LUA_DEFAULT_MAX_MEMORY;
    int rc = list_scripts(set, err, errlen);
    char path[PATH_MAX];
    for (size_t i = 0; rc == OE_OK && i < set->n; i++) {
        lua_script *s = &set->scripts[i];
        if (script_path(set, s->name, path, sizeof path) != 0)
            snprintf(path, sizeof path, "%.200s/%.100s.lua", set->dir, s->name);
        if (strlen(s->name) > OE_LUA_NAME_MAX || !valid_name(s->name)) {
            snprintf(err, errlen,
                     "%s: \"%.80s\" is not an action name (a lowercase letter, then lowercase "
                     "letters, digits, '_', '.' or '-'; at most %d bytes)",
                     path, s->name, OE_LUA_NAME_MAX);
            rc = OE_EINVAL;
        } else if (oe_action_find(s->name)) {
            snprintf(err, errlen, "%s: action %s is built in; name the script otherwise", path,
                     s->name);
            rc = OE_EINVAL;
        } else {
            rc = read_script(set, s, err, errlen);
        }
    }
    /* Compiles every script and runs every chunk once: what does not
     * compile, or returns no function, is refused now. */
    oe_lua_vm *vm = NULL;
    if (rc == OE_OK)
        rc = oe_lua_vm_new(set, &vm, err, errlen);
    oe_lua_vm_free(vm);
    if (rc != OE_OK) {
        oe_lua_actions_free(set);
        return rc;
    }
    *out = set;
    return OE_OK;
}

/* ---- The interpreter ---- */

/* Why a call failed, sticky for the call. */
enum { FAIL_NONE, FAIL_STEPS, FAIL_MEMORY, FAIL_OOM };

/* Allocations of strings larger than this are long strings (Lua interns
 * strings of at most 40 bytes): never shared, so made by each call that
 * needs one, and charged a step per OE_LUA_STEP_BYTES. */
#define LONG_STRING_MIN_ALLOC 128

/* Most collections run to bring the state back to its idle size. */
#define SETTLE_ROUNDS 64

/* Distinct strings interned once when a state is made, so that its string
 * table grows and the collections after shrink it to the size it comes
 * back to after any call (see settle). */
#define WARM_STRINGS 16384

struct oe_lua_vm {
    const oe_lua_actions *set; /* borrowed */
    lua_State *L;              /* NULL after a failed remake */
    uint64_t max_steps;
    size_t max_memory;
    /* The allocator's count. */
    size_t heap;      /* bytes the state holds */
    size_t heap_idle; /* bytes it holds between calls */
    size_t limit;     /* the heap may not grow past this (SIZE_MAX between calls) */
    int in_call;      /* 1 while a chunk or an action runs */
    size_t collected; /* the heap after the call's last collection */
    int failure;      /* FAIL_*: why the current call failed */
    uint64_t steps;   /* the current (or last) call's */
    size_t peak;      /* most bytes above idle during the current (or last) call */
    unsigned long rebuilt;
    oe_buf scratch; /* a result as it is printed */
};

static oe_lua_vm *vm_of(lua_State *L)
{
    return *(oe_lua_vm **)lua_getextraspace(L);
}

static const char *failure_text(const oe_lua_vm *vm, char *buf, size_t len)
{
    switch (vm->failure) {
    case FAIL_STEPS:
        snprintf(buf, len, "step budget exceeded (%llu steps)", (unsigned long long)vm->max_steps);
        break;
    case FAIL_MEMORY:
        snprintf(buf, len, "memory budget exceeded (%zu bytes)", vm->max_memory);
        break;
    default:
        snprintf(buf, len, "out of memory");
        break;
    }
    return buf;
}

static void vm_hook(lua_State *L, lua_Debug *ar);

/* Stops the running call at its next instruction (a failure is set). */
static void stop_call(oe_lua_vm *vm)
{
    lua_sethook(vm->L, vm_hook, LUA_MASKCOUNT, 1);
}

/* Collects the call's garbage at points that are the same on every run
 * (a hook check or a library function's charge): once the call holds half
 * its budget, and again each time it has grown by another quarter since.
 * The collection's work is charged as steps. */
static void collect_if_due(lua_State *L, oe_lua_vm *vm)
{
    size_t held = vm->heap - vm->heap_idle;
    if (held > vm->max_memory / 2 && vm->heap - vm->collected > vm->max_memory / 4) {
        lua_gc(L, LUA_GCCOLLECT);
        vm->steps += held / OE_LUA_STEP_BYTES;
        vm->collected = vm->heap;
    }
}

void oe_lua_charge(lua_State *L, uint64_t steps)
{
    oe_lua_vm *vm = vm_of(L);
    if (!vm->in_call)
        return;
    if (vm->failure == FAIL_NONE) {
        vm->steps = steps > UINT64_MAX - vm->steps ? UINT64_MAX : vm->steps + steps;
        collect_if_due(L, vm);
        if (vm->steps <= vm->max_steps)
            return;
        vm->failure = FAIL_STEPS;
        stop_call(vm);
    }
    char text[80];
    luaL_error(L, "%s", failure_text(vm, text, sizeof text));
}

/* The count hook: every OE_LUA_STEP_CHECK instructions of a call. */
static void vm_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    oe_lua_charge(L, OE_LUA_STEP_CHECK);
}

/* The state's allocator: counts every byte and holds a call to its
 * budget (see the top of the file). It never raises errors (Lua turns a
 * NULL into a memory error) and never fails to shrink a block. */
static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    oe_lua_vm *vm = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        vm->heap -= old;
        return NULL;
    }
    if (nsize > old && vm->in_call) {
        if (vm->failure != FAIL_NONE)
            return NULL;
        if (vm->heap > vm->limit || nsize - old > vm->limit - vm->heap) {
            vm->failure = FAIL_MEMORY;
            stop_call(vm);
            return NULL;
        }
    }
    void *p = realloc(ptr, nsize);
    if (!p) {
        if (nsize <= old)
            return ptr; /* Lua counts on shrinking never failing */
        if (vm->in_call) {
            vm->failure = FAIL_OOM;
            stop_call(vm);
        }
        return NULL;
    }
    vm->heap = vm->heap - old + nsize;
    if (vm->in_call) {
        if (vm->heap - vm->heap_idle > vm->peak)
            vm->peak = vm->heap - vm->heap_idle;
        if (!ptr && osize == LUA_TSTRING && nsize > LONG_STRING_MIN_ALLOC)
            vm->steps += nsize / OE_LUA_STEP_BYTES;
    }
    return p;
}

/* A call starts: budgets armed. */
static void begin_call(oe_lua_vm *vm)
{
    vm->in_call = 1;
    vm->collected = vm->heap_idle;
    vm->failure = FAIL_NONE;
    vm->steps = 0;
    vm->peak = 0;
    vm->limit = vm->heap_idle + vm->max_memory;
    lua_sethook(vm->L, vm_hook, LUA_MASKCOUNT, OE_LUA_STEP_CHECK);
}

static void end_call(oe_lua_vm *vm)
{
    lua_sethook(vm->L, NULL, 0, 0);
    vm->in_call = 0;
    vm->limit = SIZE_MAX;
}

/* Collects until the state is back to its idle size (or stops shrinking).
 * Returns 1 when it is back. */
static int settle(oe_lua_vm *vm)
{
    size_t last = SIZE_MAX;
    for (int i = 0; i < SETTLE_ROUNDS && vm->heap != vm->heap_idle; i++) {
        lua_gc(vm->L, LUA_GCCOLLECT);
        if (vm->heap == last && vm->heap != vm->heap_idle && i > 2)
            break;
        last = vm->heap;
    }
    return vm->heap == vm->heap_idle;
}

/* What a protected call does. */
typedef struct call_args {
    oe_lua_vm *vm;
    size_t index;
    const oe_json *payload; /* NULL: only check that the chunk returns a function */
    oe_buf *out;
} call_args;

/* Pushes v as Lua values: integers as integers (beyond 64 bits: an error,
 * never a rounded float), floats as floats, null as json.null, arrays and
 * objects as tables marked with the metatables at array_mt and object_mt. */
static void push_json(lua_State *L, const oe_json *v, int array_mt, int object_mt)
{
    luaL_checkstack(L, 4, "payload nested too deeply");
    switch ((oe_json_type)v->type) {
    case OE_JSON_NULL:
        lua_pushlightuserdata(L, (void *)&oe_lua_null);
        break;
    case OE_JSON_FALSE:
    case OE_JSON_TRUE:
        lua_pushboolean(L, v->type == OE_JSON_TRUE);
        break;
    case OE_JSON_INT:
        if (!v->fits_int64) {
            char text[80]; /* lua_pushfstring has no %.24s */
            snprintf(text, sizeof text, "payload: the integer %.24s... is outside the 64-bit range",
                     v->str);
            luaL_error(L, "%s", text);
        }
        lua_pushinteger(L, (lua_Integer)v->i64);
        break;
    case OE_JSON_FLOAT:
        lua_pushnumber(L, v->num);
        break;
    case OE_JSON_STRING:
        lua_pushlstring(L, v->str, v->len);
        break;
    case OE_JSON_ARRAY:
        lua_createtable(L, (int)v->len, 0);
        for (uint32_t i = 0; i < v->len; i++) {
            push_json(L, &v->items[i], array_mt, object_mt);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_pushvalue(L, array_mt);
        lua_setmetatable(L, -2);
        break;
    case OE_JSON_OBJECT:
        lua_createtable(L, 0, (int)v->len);
        for (uint32_t i = 0; i < v->len; i++) {
            lua_pushlstring(L, v->members[i].key, v->members[i].key_len);
            push_json(L, &v->members[i].value, array_mt, object_mt);
            lua_rawset(L, -3);
        }
        lua_pushvalue(L, object_mt);
        lua_setmetatable(L, -2);
        break;
    }
}

/* Raises the error of a failed append to the result. */
static void append_failed(lua_State *L, oe_lua_vm *vm, int rc)
{
    if (rc == OE_ELIMIT) {
        char text[80]; /* lua_pushfstring has no %zu */
        snprintf(text, sizeof text, "result is larger than %zu bytes", vm->scratch.max);
        luaL_error(L, "%s", text);
    }
    if (rc == OE_EINVAL)
        luaL_error(L, "result: a string is not UTF-8 text");
    vm->failure = FAIL_OOM;
    luaL_error(L, "out of memory");
}

/* A key of an object being printed. */
typedef struct object_key {
    const char *s; /* owned by the table */
    size_t len;
    lua_Integer slot; /* where its value waits */
} object_key;

static int compare_object_keys(const void *pa, const void *pb)
{
    const object_key *a = pa, *b = pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return a->len < b->len ? -1 : a->len > b->len;
}

static void dump_value(lua_State *L, oe_lua_vm *vm, int idx, int depth);

/* Prints the table at idx (raw access: no metamethod runs). */
static void dump_table(lua_State *L, oe_lua_vm *vm, int idx, int depth)
{
    oe_buf *out = &vm->scratch;
    if (depth >= OE_LUA_RESULT_MAX_DEPTH)
        luaL_error(L, "result: tables nested deeper than %d (a table inside itself?)",
                   OE_LUA_RESULT_MAX_DEPTH);
    luaL_checkstack(L, 6, "result nested too deeply");
    size_t n;
    const char *why;
    int rc = OE_OK;
    switch (oe_lua_table_shape(L, idx, &n, &why)) {
    case OE_LUA_NEITHER:
        luaL_error(L, "result: %s", why);
        break;
    case OE_LUA_ARRAY:
        rc = oe_buf_putc(out, '[');
        for (size_t i = 1; rc == OE_OK && i <= n; i++) {
            if (i > 1)
                rc = oe_buf_puts(out, ", ");
            lua_rawgeti(L, idx, (lua_Integer)i);
            dump_value(L, vm, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        if (rc == OE_OK)
            rc = oe_buf_putc(out, ']');
        break;
    case OE_LUA_OBJECT: {
        object_key *keys = lua_newuserdatauv(L, (n ? n : 1) * sizeof *keys, 0);
        lua_createtable(L, (int)n, 0);
        int values = lua_gettop(L);
        size_t k = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            keys[k].slot = (lua_Integer)k + 1;
            lua_rawseti(L, values, keys[k].slot);
            keys[k].s = lua_tolstring(L, -1, &keys[k].len);
            k++;
        }
        /* Python sorts keys by code point; UTF-8's byte order is the same
         * (and a key that is not UTF-8 is refused when printed). */
        qsort(keys, n, sizeof *keys, compare_object_keys);
        rc = oe_buf_putc(out, '{');
        for (size_t i = 0; rc == OE_OK && i < n; i++) {
            if (i > 0)
                rc = oe_buf_puts(out, ", ");
            if (rc == OE_OK)
                rc = oe_json_dump_string(out, keys[i].s, keys[i].len);
            if (rc == OE_OK)
                rc = oe_buf_puts(out, ": ");
            if (rc != OE_OK)
                break;
            lua_rawgeti(L, values, keys[i].slot);
            dump_value(L, vm, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        if (rc == OE_OK)
            rc = oe_buf_putc(out, '}');
        lua_pop(L, 2);
        break;
    }
    }
    if (rc != OE_OK)
        append_failed(L, vm, rc);
}

/* Prints the value at idx as Python's json.dumps(v, sort_keys=True). */
static void dump_value(lua_State *L, oe_lua_vm *vm, int idx, int depth)
{
    oe_buf *out = &vm->scratch;
    int rc = OE_OK;
    char num[40];
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        rc = oe_buf_puts(out, "null");
        break;
    case LUA_TBOOLEAN:
        rc = oe_buf_puts(out, lua_toboolean(L, idx) ? "true" : "false");
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
        } else if (oe_json_format_double(lua_tonumber(L, idx), num, sizeof num) < 0) {
            luaL_error(L, "result: NaN and infinities cannot be JSON");
        }
        rc = oe_buf_puts(out, num);
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        oe_lua_charge(L, 1 + len / OE_LUA_STEP_BYTES);
        rc = oe_json_dump_string(out, s, len);
        break;
    }
    case LUA_TTABLE:
        dump_table(L, vm, idx, depth);
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == (void *)&oe_lua_null) {
            rc = oe_buf_puts(out, "null");
            break;
        }
        /* fall through */
    default:
        luaL_error(L, "result: a %s cannot be JSON", luaL_typename(L, idx));
        break;
    }
    if (rc != OE_OK)
        append_failed(L, vm, rc);
}

/* Runs the chunk of action args->index in a fresh global table and, with
 * a payload, calls the function it returns and prints its result into
 * vm->scratch. Raises errors; run protected. */
static int protected_call(lua_State *L)
{
    call_args *a = lua_touserdata(L, 1);
    oe_lua_vm *vm = a->vm;
    lua_settop(L, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_array_mt);  /* 1 */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_object_mt); /* 2 */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_chunks);    /* 3 */
    lua_rawgeti(L, 3, (lua_Integer)a->index + 1);             /* 4: the chunk */
    lua_createtable(L, 0, 1);                                 /* 5: its globals */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_env_mt);
    lua_setmetatable(L, 5);
    lua_pushliteral(L, "_G");
    lua_pushvalue(L, 5);
    lua_rawset(L, 5);
    lua_pushvalue(L, 5);
    lua_setupvalue(L, 4, 1); /* the chunk's _ENV */
    lua_pushvalue(L, 4);
    lua_call(L, 0, LUA_MULTRET);
    if (lua_gettop(L) != 6 || lua_type(L, 6) != LUA_TFUNCTION)
        return luaL_error(L,
                          "the chunk must return one function (it returned %d value%s, the "
                          "first %s)",
                          lua_gettop(L) - 5, lua_gettop(L) - 5 == 1 ? "" : "s",
                          lua_gettop(L) > 5 ? luaL_typename(L, 6) : "nil");
    if (!a->payload)
        return 0;
    push_json(L, a->payload, 1, 2);
    lua_call(L, 1, 1);
    dump_value(L, vm, 6, 0);
    return 0;
}

/* Copies a failure message into msg: invalid UTF-8 and NUL bytes become
 * U+FFFD, and it is cut after at most OE_LUA_MESSAGE_MAX bytes (and msglen
 * - 1) at a character's end. */
static void copy_message(const char *s, size_t len, char *msg, size_t msglen)
{
    static const char replacement[] = "\xEF\xBF\xBD";
    size_t max = msglen - 1 < OE_LUA_MESSAGE_MAX ? msglen - 1 : OE_LUA_MESSAGE_MAX;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = 0;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x01 && c < 0x80)
            n = 1;
        else if (c >= 0xC2 && c <= 0xF4) {
            size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (i + want <= len && oe_utf8_valid(s + i, want))
                n = want;
        }
        const char *piece = n ? s + i : replacement;
        size_t plen = n ? n : 3;
        if (o + plen > max)
            break;
        memcpy(msg + o, piece, plen);
        o += plen;
        i += n ? n : 1;
    }
    msg[o] = '\0';
}

/* The message of the error object at the top of the stack (a number is
 * printed here: converting it in place would allocate, unprotected). */
static void error_message(lua_State *L, char *msg, size_t msglen)
{
    size_t len;
    const char *s;
    char text[80];
    if (lua_type(L, -1) == LUA_TSTRING) {
        s = lua_tolstring(L, -1, &len);
    } else {
        if (lua_isinteger(L, -1))
            snprintf(text, sizeof text, "%lld", (long long)lua_tointeger(L, -1));
        else if (lua_type(L, -1) == LUA_TNUMBER)
            snprintf(text, sizeof text, LUA_NUMBER_FMT, lua_tonumber(L, -1));
        else
            snprintf(text, sizeof text, "(error object is a %s value)",
                     lua_touserdata(L, -1) == (void *)&oe_lua_null ? "json.null"
                                                                   : luaL_typename(L, -1));
        s = text;
        len = strlen(text);
    }
    copy_message(s, len, msg, msglen);
}

/* Runs one call (or, payload NULL, one chunk check) and reports as
 * oe_lua_vm_run does. Leaves the state settled (or remade). */
static int run_call(oe_lua_vm *vm, size_t index, const oe_json *payload, oe_buf *out, char *msg,
                    size_t msglen, int may_rebuild);

static void vm_close(oe_lua_vm *vm)
{
    if (vm->L) {
        lua_close(vm->L);
        vm->L = NULL;
    }
}

/* What oe_lua_vm_build does protected: the sandbox, then every chunk. */
typedef struct build_args {
    oe_lua_vm *vm;
    size_t failed; /* the script being compiled */
    int status;    /* luaL_loadbufferx's, when it failed */
} build_args;

static int protected_build(lua_State *L)
{
    build_args *b = lua_touserdata(L, 1);
    const oe_lua_actions *set = b->vm->set;
    lua_pushcfunction(L, oe_lua_sandbox_open);
    lua_call(L, 0, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_chunks);
    int chunks = lua_gettop(L);
    char chunkname[OE_LUA_NAME_MAX + 8];
    for (size_t i = 0; i < set->n; i++) {
        const lua_script *s = &set->scripts[i];
        snprintf(chunkname, sizeof chunkname, "=%s.lua", s->name);
        b->failed = i;
        /* Text only: Lua does not check precompiled chunks. */
        if ((b->status = luaL_loadbufferx(L, s->source, s->len, chunkname, "t")) != LUA_OK)
            return lua_error(L);
        lua_pushnil(L);
        lua_setupvalue(L, -2, 1); /* Lua's own globals: never a script's */
        lua_rawseti(L, chunks, (lua_Integer)i + 1);
    }
    b->failed = set->n;
    /* Grow the stack and the string table once, so that collections bring
     * them to the size they come back to after any call; and make the
     * metatable that large string buffers register on their first use. */
    luaL_checkstack(L, 200, NULL);
    luaL_Buffer buffer;
    luaL_buffinitsize(L, &buffer, 4 * LUAL_BUFFERSIZE);
    luaL_pushresultsize(&buffer, 0);
    for (int i = 0; i < WARM_STRINGS; i++) {
        lua_pushfstring(L, "%d", i);
        lua_pop(L, 1);
    }
    lua_settop(L, 0);
    return 0;
}

/* Collects until the state stops shrinking, and takes that as its idle
 * size. */
static void settle_idle(oe_lua_vm *vm)
{
    vm->heap_idle = 0;
    settle(vm);
    vm->heap_idle = vm->heap;
}

/* "DIR/NAME.lua:LINE: message" when msg starts with "NAME.lua:" (Lua
 * names the chunk so), else "DIR/NAME.lua: message". */
static void script_message(const oe_lua_vm *vm, size_t i, const char *msg, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    script_dir(vm->set, dir, sizeof dir);
    const char *name = vm->set->scripts[i].name;
    size_t nl = strlen(name);
    if (strncmp(msg, name, nl) == 0 && strncmp(msg + nl, ".lua:", 5) == 0)
        snprintf(err, errlen, "%s%s", dir, msg);
    else
        snprintf(err, errlen, "%s%s.lua: %s", dir, name, msg);
}

/* Makes vm's state: the sandbox and the compiled chunks, each chunk run
 * once, then collected to its idle size. Returns OE_OK, or with a reason
 * in err naming the script OE_EINVAL (it does not compile, its chunk
 * fails or returns no function) or OE_ENOMEM; vm->L is then NULL. */
static int vm_build(oe_lua_vm *vm, char *err, size_t errlen)
{
    vm->heap = 0;
    vm->limit = SIZE_MAX;
    vm->in_call = 0;
    lua_State *L = lua_newstate(vm_alloc, vm);
    if (!L) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    vm->L = L;
    *(oe_lua_vm **)lua_getextraspace(L) = vm;
    build_args b = {.vm = vm, .failed = vm->set->n, .status = LUA_OK};
    lua_pushcfunction(L, protected_build);
    lua_pushlightuserdata(L, &b);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        int syntax = b.status == LUA_ERRSYNTAX;
        if (syntax)
            script_message(vm, b.failed, lua_tostring(L, -1), err, errlen);
        else
            snprintf(err, errlen, "out of memory");
        vm_close(vm);
        return syntax ? OE_EINVAL : OE_ENOMEM;
    }
    settle_idle(vm);
    char msg[OE_LUA_MESSAGE_MAX + 1];
    for (size_t i = 0; i < vm->set->n; i++) {
        int rc = run_call(vm, i, NULL, NULL, msg, sizeof msg, 0);
        if (rc != OE_OK) {
            script_message(vm, i, msg, err, errlen);
            vm_close(vm);
            return rc;
        }
    }
    settle_idle(vm);
    return OE_OK;
}

int oe_lua_vm_new(const oe_lua_actions *set, oe_lua_vm **out, char *err, size_t errlen)
{
    *out = NULL;
    oe_lua_vm *vm = calloc(1, sizeof *vm);
    if (!vm) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    vm->set = set;
    vm->max_steps = set->limits.max_steps ? set->limits.max_steps : OE_LUA_DEFAULT_MAX_STEPS;
    vm->max_memory = set->limits.max_memory ? set->limits.max_memory : OE_LUA_DEFAULT_MAX_MEMORY;
    oe_buf_init(&vm->scratch, 0);
    int rc = vm_build(vm, err, errlen);
    if (rc != OE_OK) {
        oe_lua_vm_free(vm);
        return rc;
    }
    *out = vm;
    return OE_OK;
}

void oe_lua_vm_free(oe_lua_vm *vm)
{
    if (!vm)
        return;
    vm_close(vm);
    oe_buf_free(&vm->scratch);
    free(vm);
}

void oe_lua_vm_usage(const oe_lua_vm *vm, oe_lua_usage *out)
{
    out->steps = vm->steps;
    out->memory_peak = vm->peak;
    out->heap = vm->heap;
    out->heap_idle = vm->heap_idle;
    out->rebuilt = vm->rebuilt;
}

/* The largest result a call may print into out. */
static size_t result_room(const oe_buf *out)
{
    size_t cap = out->max ? out->max : (size_t)16 << 20;
    return cap > out->len ? cap - out->len : 1;
}

static int run_call(oe_lua_vm *vm, size_t index, const oe_json *payload, oe_buf *out, char *msg,
                    size_t msglen, int may_rebuild)
{
    lua_State *L = vm->L;
    call_args a = {.vm = vm, .index = index, .payload = payload, .out = out};
    oe_buf_reset(&vm->scratch);
    if (vm->scratch.cap > ((size_t)1 << 20))
        oe_buf_free(&vm->scratch); /* a rare large result's memory is not kept */
    vm->scratch.max = out ? result_room(out) : 1;
    msg[0] = '\0';
    begin_call(vm);
    lua_pushcfunction(L, protected_call);
    lua_pushlightuserdata(L, &a);
    int status = lua_pcall(L, 1, 0, 0);
    end_call(vm);
    int rc = OE_OK;
    if (vm->failure != FAIL_NONE) {
        char text[80];
        failure_text(vm, text, sizeof text);
        copy_message(text, strlen(text), msg, msglen);
        rc = vm->failure == FAIL_OOM ? OE_ENOMEM : OE_EINVAL;
    } else if (status != LUA_OK) {
        error_message(L, msg, msglen);
        rc = OE_EINVAL;
    } else if (out && oe_buf_append(out, vm->scratch.data, vm->scratch.len) != OE_OK) {
        copy_message("out of memory", 13, msg, msglen);
        rc = OE_ENOMEM;
    }
    /* Back to the idle state: the chunk forgets the call's globals, and
     * everything the call made is collected. */
    lua_settop(L, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &oe_lua_key_chunks);
    lua_rawgeti(L, -1, (lua_Integer)index + 1);
    lua_pushnil(L);
    lua_setupvalue(L, -2, 1);
    lua_settop(L, 0);
    if (!settle(vm) && may_rebuild) {
        char err[200];
        vm->rebuilt++;
        vm_close(vm);
        if (vm_build(vm, err, sizeof err) != OE_OK && rc == OE_OK) {
            copy_message("out of memory", 13, msg, msglen);
            rc = OE_ENOMEM;
        }
    }
    return rc;
}

int oe_lua_vm_run(oe_lua_vm *vm, size_t index, const oe_json *payload, oe_buf *result, char *msg,
                  size_t msglen)
{
    char err[200];
    if (!vm->L && vm_build(vm, err, sizeof err) != OE_OK) {
        copy_message("out of memory", 13, msg, msglen);
        return OE_ENOMEM;
    }
    if (index >= vm->set->n) {
        copy_message("no such action", 14, msg, msglen);
        return OE_EINVAL;
    }
    return run_call(vm, index, payload, result, msg, msglen, 1);
}
