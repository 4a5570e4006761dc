/* string.find, string.match, string.gmatch and string.gsub for the
 * sandbox (lua_sandbox.h): Lua 5.4's patterns, as its manual defines them
 * (section 6.4.1), matched by a backtracking matcher of our own that
 * charges a step for every position it tries.
 *
 * Why not Lua's own functions: a pattern such as "(.-)(.-)(.-)x" on a
 * long subject backtracks for hours inside one C call, where the
 * instruction hook never fires. Here every attempt is counted
 * (oe_lua_charge), so a pattern costs what it does and the step budget
 * stops it like any loop. Results, captures and error messages are those
 * of Lua's functions (tests/engine/test_lua.c compares them).
 */
#include <ctype.h>
#include <lauxlib.h>
#include <string.h>

#include "lua_sandbox.h"

/* Lua's limits: captures per pattern, nested matching calls. */
#define PATTERN_CAPTURES 32
#define PATTERN_DEPTH 200
/* Steps are handed to oe_lua_charge in batches of this many. */
#define PATTERN_STEP_BATCH 256

/* A capture still open, or one that records a position. */
#define CAPTURE_OPEN (-1)
#define CAPTURE_POSITION (-2)

typedef struct matcher {
    lua_State *L;
    const char *subject, *subject_end;
    const char *pattern_end;
    int depth; /* nested calls of match left */
    int ncaptures;
    struct {
        const char *start;
        ptrdiff_t len; /* or CAPTURE_OPEN, CAPTURE_POSITION */
    } captures[PATTERN_CAPTURES];
    unsigned pending; /* steps not charged yet */
} matcher;

/* One step of work; charged in batches. */
static void step(matcher *m)
{
    if (++m->pending >= PATTERN_STEP_BATCH) {
        m->pending = 0;
        oe_lua_charge(m->L, PATTERN_STEP_BATCH);
    }
}

static void flush_steps(matcher *m)
{
    if (m->pending) {
        unsigned n = m->pending;
        m->pending = 0;
        oe_lua_charge(m->L, n);
    }
}

/* 1 when byte c is in class cl (%a, %d...; upper case: the complement);
 * a class letter Lua does not define, or any other byte, stands for
 * itself. The C locale's classes: ASCII only. */
static int in_class(int c, int cl)
{
    int yes;
    switch (tolower(cl)) {
    case 'a':
        yes = isalpha(c);
        break;
    case 'c':
        yes = iscntrl(c);
        break;
    case 'd':
        yes = isdigit(c);
        break;
    case 'g':
        yes = isgraph(c);
        break;
    case 'l':
        yes = islower(c);
        break;
    case 'p':
        yes = ispunct(c);
        break;
    case 's':
        yes = isspace(c);
        break;
    case 'u':
        yes = isupper(c);
        break;
    case 'w':
        yes = isalnum(c);
        break;
    case 'x':
        yes = isxdigit(c);
        break;
    default:
        return cl == c;
    }
    if (isupper(cl))
        return !yes;
    return yes != 0;
}

/* 1 when c is in the set [...] from open (its '[') to close (its ']'). */
static int in_set(int c, const char *open, const char *close)
{
    const char *p = open + 1;
    int want = 1;
    if (*p == '^') {
        want = 0;
        p++;
    }
    for (; p < close; p++) {
        if (*p == '%' && p + 1 < close) {
            p++;
            if (in_class(c, (unsigned char)*p))
                return want;
        } else if (p[1] == '-' && p + 2 < close) {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
                return want;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return want;
        }
    }
    return !want;
}

/* Where the single-character class starting at p ends. */
static const char *class_end(matcher *m, const char *p)
{
    char c = *p++;
    if (c == '%') {
        if (p >= m->pattern_end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c != '[')
        return p;
    if (p < m->pattern_end && *p == '^')
        p++;
    /* The first character is taken as it is, even ']'. */
    do {
        if (p >= m->pattern_end)
            luaL_error(m->L, "malformed pattern (missing ']')");
        if (*p++ == '%' && p < m->pattern_end)
            p++;
    } while (p >= m->pattern_end || *p != ']');
    return p + 1;
}

/* 1 when the subject byte at s is in the class p..end (end past it). */
static int single(matcher *m, const char *s, const char *p, const char *end)
{
    if (s >= m->subject_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.':
        return 1;
    case '%':
        return in_class(c, (unsigned char)p[1]);
    case '[':
        return in_set(c, p, end - 1);
    default:
        return (unsigned char)*p == c;
    }
}

static const char *match(matcher *m, const char *s, const char *p);

/* x*: as many as match, then fewer until the rest matches. */
static const char *longest_first(matcher *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t n = 0;
    while (single(m, s + n, p, ep)) {
        step(m);
        n++;
    }
    for (; n >= 0; n--) {
        const char *r = match(m, s + n, ep + 1);
        if (r)
            return r;
    }
    return NULL;
}

/* x-: as few as possible, one more each time the rest does not match. */
static const char *shortest_first(matcher *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = match(m, s, ep + 1);
        if (r)
            return r;
        if (!single(m, s, p, ep))
            return NULL;
        step(m);
        s++;
    }
}

static const char *open_capture(matcher *m, const char *s, const char *p, ptrdiff_t what)
{
    if (m->ncaptures >= PATTERN_CAPTURES)
        luaL_error(m->L, "too many captures");
    m->captures[m->ncaptures].start = s;
    m->captures[m->ncaptures].len = what;
    m->ncaptures++;
    const char *r = match(m, s, p);
    if (!r)
        m->ncaptures--;
    return r;
}

static const char *close_capture(matcher *m, const char *s, const char *p)
{
    int k = m->ncaptures - 1;
    while (k >= 0 && m->captures[k].len != CAPTURE_OPEN)
        k--;
    if (k < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->captures[k].len = s - m->captures[k].start;
    const char *r = match(m, s, p);
    if (!r)
        m->captures[k].len = CAPTURE_OPEN;
    return r;
}

/* %bxy at p (past "%b"): the subject from s on must be balanced. Returns
 * where it ends, or NULL. */
static const char *balanced(matcher *m, const char *s, const char *p)
{
    if (p + 1 >= m->pattern_end)
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->subject_end || *s != p[0])
        return NULL;
    int open = 1;
    for (const char *t = s + 1; t < m->subject_end; t++) {
        step(m);
        if (*t == p[1]) {
            if (--open == 0)
                return t + 1;
        } else if (*t == p[0]) {
            open++;
        }
    }
    return NULL;
}

/* The capture that %1..%9 names (c is the digit). */
static int capture_index(matcher *m, int c)
{
    int k = c - '1';
    if (k < 0 || k >= m->ncaptures || m->captures[k].len == CAPTURE_OPEN)
        luaL_error(m->L, "invalid capture index %%%d", k + 1);
    return k;
}

/* Matches the pattern from p against the subject from s. Returns the end
 * of the match, or NULL. */
static const char *match(matcher *m, const char *s, const char *p)
{
    if (m->depth-- == 0)
        luaL_error(m->L, "pattern too complex");
    const char *r = NULL;
    for (;;) {
        step(m);
        if (p >= m->pattern_end) {
            r = s;
            break;
        }
        if (*p == '(') {
            r = p + 1 < m->pattern_end && p[1] == ')' ? open_capture(m, s, p + 2, CAPTURE_POSITION)
                                                      : open_capture(m, s, p + 1, CAPTURE_OPEN);
            break;
        }
        if (*p == ')') {
            r = close_capture(m, s, p + 1);
            break;
        }
        if (*p == '$' && p + 1 == m->pattern_end) {
            r = s == m->subject_end ? s : NULL;
            break;
        }
        if (*p == '%' && p + 1 < m->pattern_end && p[1] == 'b') {
            s = balanced(m, s, p + 2);
            if (!s)
                break;
            p += 4;
            continue;
        }
        if (*p == '%' && p + 1 < m->pattern_end && p[1] == 'f') {
            p += 2;
            if (p >= m->pattern_end || *p != '[')
                luaL_error(m->L, "missing '[' after '%%f' in pattern");
            const char *ep = class_end(m, p);
            int before = s == m->subject ? 0 : (unsigned char)s[-1];
            int here = s < m->subject_end ? (unsigned char)*s : 0;
            if (in_set(before, p, ep - 1) || !in_set(here, p, ep - 1))
                break;
            p = ep;
            continue;
        }
        if (*p == '%' && p + 1 < m->pattern_end && isdigit((unsigned char)p[1])) {
            int k = capture_index(m, (unsigned char)p[1]);
            ptrdiff_t len = m->captures[k].len;
            if (len < 0 || m->subject_end - s < len || memcmp(m->captures[k].start, s, len) != 0)
                break;
            s += len;
            p += 2;
            continue;
        }
        const char *ep = class_end(m, p);
        char q = ep < m->pattern_end ? *ep : '\0';
        if (!single(m, s, p, ep)) {
            if (q == '*' || q == '?' || q == '-') {
                p = ep + 1; /* none of it is allowed */
                continue;
            }
            break;
        }
        if (q == '?') {
            r = match(m, s + 1, ep + 1);
            if (r)
                break;
            p = ep + 1;
            continue;
        }
        if (q == '+') {
            r = longest_first(m, s + 1, p, ep);
            break;
        }
        if (q == '*') {
            r = longest_first(m, s, p, ep);
            break;
        }
        if (q == '-') {
            r = shortest_first(m, s, p, ep);
            break;
        }
        s++;
        p = ep;
    }
    m->depth++;
    return r;
}

static void matcher_init(matcher *m, lua_State *L, const char *s, size_t ls, const char *p,
                         size_t lp)
{
    m->L = L;
    m->subject = s;
    m->subject_end = s + ls;
    m->pattern_end = p + lp;
    m->depth = PATTERN_DEPTH;
    m->ncaptures = 0;
    m->pending = 0;
}

/* Pushes capture k of the match s..e (k 0 with no captures: the match). */
static void push_capture(matcher *m, int k, const char *s, const char *e)
{
    if (k >= m->ncaptures) {
        if (k != 0)
            luaL_error(m->L, "invalid capture index %%%d", k + 1);
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = m->captures[k].len;
    if (len == CAPTURE_OPEN)
        luaL_error(m->L, "unfinished capture");
    if (len == CAPTURE_POSITION)
        lua_pushinteger(m->L, (m->captures[k].start - m->subject) + 1);
    else
        lua_pushlstring(m->L, m->captures[k].start, (size_t)len);
}

/* Pushes every capture (or, with none and s given, the match); returns how
 * many. */
static int push_captures(matcher *m, const char *s, const char *e)
{
    int n = m->ncaptures == 0 && s ? 1 : m->ncaptures;
    luaL_checkstack(m->L, n, "too many captures");
    for (int k = 0; k < n; k++)
        push_capture(m, k, s, e);
    return n;
}

/* A start position as Lua's string functions take it: negative from the
 * end, 0 as 1; returned 0-based, possibly past the end. */
static size_t start_offset(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos - 1;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 0;
    return (size_t)((lua_Integer)len + pos);
}

/* 1 when p holds none of the magic characters (a plain search). */
static int is_plain(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (strchr("^$*+?.([%-", p[i]) && p[i])
            return 0;
    return 1;
}

static int find_or_match(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    if (init > ls) {
        lua_pushnil(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || is_plain(p, lp))) {
        oe_lua_charge(L, 1 + (ls - init) / OE_LUA_STEP_BYTES);
        const char *at = memmem(s + init, ls - init, p, lp);
        if (!at) {
            lua_pushnil(L);
            return 1;
        }
        lua_pushinteger(L, (lua_Integer)(at - s) + 1);
        lua_pushinteger(L, (lua_Integer)(at - s + (ptrdiff_t)lp));
        return 2;
    }
    matcher m;
    int anchored = lp > 0 && *p == '^';
    if (anchored) {
        p++;
        lp--;
    }
    matcher_init(&m, L, s, ls, p, lp);
    const char *from = s + init;
    for (;;) {
        m.ncaptures = 0;
        m.depth = PATTERN_DEPTH;
        const char *e = match(&m, from, p);
        if (e) {
            flush_steps(&m);
            if (!find)
                return push_captures(&m, from, e);
            lua_pushinteger(L, (lua_Integer)(from - s) + 1);
            lua_pushinteger(L, (lua_Integer)(e - s));
            return push_captures(&m, NULL, NULL) + 2;
        }
        if (anchored || from >= m.subject_end)
            break;
        from++;
    }
    flush_steps(&m);
    lua_pushnil(L);
    return 1;
}

static int pattern_find(lua_State *L)
{
    return find_or_match(L, 1);
}

static int pattern_match(lua_State *L)
{
    return find_or_match(L, 0);
}

/* The iterator of gmatch: upvalues 1 the subject, 2 the pattern, 3 where
 * the next search starts, 4 where the last match ended (-1: none). A match
 * that is empty where the last one ended is skipped, so that the loop
 * always moves on. */
static int gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    lua_Integer from = lua_tointeger(L, lua_upvalueindex(3));
    lua_Integer last = lua_tointeger(L, lua_upvalueindex(4));
    matcher m;
    matcher_init(&m, L, s, ls, p, lp);
    for (const char *src = s + from; src <= m.subject_end; src++) {
        m.ncaptures = 0;
        m.depth = PATTERN_DEPTH;
        const char *e = match(&m, src, p);
        if (e && e - s != last) {
            flush_steps(&m);
            lua_pushinteger(L, e - s);
            lua_replace(L, lua_upvalueindex(3));
            lua_pushinteger(L, e - s);
            lua_replace(L, lua_upvalueindex(4));
            return push_captures(&m, src, e);
        }
    }
    flush_steps(&m);
    lua_pushinteger(L, (lua_Integer)ls + 1);
    lua_replace(L, lua_upvalueindex(3));
    return 0;
}

static int pattern_gmatch(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    if (init > ls)
        init = ls + 1;
    lua_settop(L, 2);
    lua_pushinteger(L, (lua_Integer)init);
    lua_pushinteger(L, -1);
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

/* Appends the replacement string (argument 3) for the match s..e, with
 * %0..%9 and %%. */
static void add_replacement(matcher *m, luaL_Buffer *b, const char *s, const char *e)
{
    size_t l;
    const char *r = lua_tolstring(m->L, 3, &l);
    for (size_t i = 0; i < l; i++) {
        if (r[i] != '%') {
            luaL_addchar(b, r[i]);
            continue;
        }
        i++;
        char c = i < l ? r[i] : '\0';
        if (c == '%') {
            luaL_addchar(b, '%');
        } else if (c == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (isdigit((unsigned char)c)) {
            push_capture(m, c - '1', s, e);
            luaL_tolstring(m->L, -1, NULL);
            lua_remove(m->L, -2);
            luaL_addvalue(b);
        } else {
            luaL_error(m->L, "invalid use of '%%' in replacement string");
        }
    }
}

/* Appends the replacement of the match s..e: the string's, the table's
 * value for the first capture, or the function's result for the captures;
 * false or nil keeps the match. */
static void add_value(matcher *m, luaL_Buffer *b, const char *s, const char *e, int type)
{
    lua_State *L = m->L;
    if (type == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else if (type == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_replacement(m, b, s, e);
        return;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    } else {
        luaL_addvalue(b);
    }
}

static int pattern_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int type = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L,
                     type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION ||
                         type == LUA_TTABLE,
                     3, "string/function/table");
    int anchored = lp > 0 && *p == '^';
    if (anchored) {
        p++;
        lp--;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    matcher m;
    matcher_init(&m, L, s, ls, p, lp);
    const char *src = s, *last = NULL;
    lua_Integer n = 0;
    while (n < max) {
        m.ncaptures = 0;
        m.depth = PATTERN_DEPTH;
        const char *e = match(&m, src, p);
        if (e && e != last) {
            n++;
            add_value(&m, &b, src, e, type);
            src = last = e;
        } else if (src < m.subject_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchored)
            break;
    }
    flush_steps(&m);
    luaL_addlstring(&b, src, (size_t)(m.subject_end - src));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

void oe_lua_open_patterns(lua_State *L, int table)
{
    static const luaL_Reg functions[] = {{"find", pattern_find},
                                         {"match", pattern_match},
                                         {"gmatch", pattern_gmatch},
                                         {"gsub", pattern_gsub},
                                         {NULL, NULL}};
    table = lua_absindex(L, table);
    for (const luaL_Reg *f = functions; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, table, f->name);
    }
}
