/* Fuzzes operators' Lua actions (engine/lua_actions.c, lua_sandbox.c,
 * lua_pattern.c) with random payloads.
 *
 * Input: one byte that picks the action (its low seven bits, modulo the
 * number of actions below) and the budgets (bit 7: small ones, so that
 * running out of steps or memory is reached often; else the default memory
 * budget and a tenth of the default steps), then the payload as JSON text. Text our parser refuses
 * is no input. The actions are the examples of examples/actions/ and two of the harness,
 * tests/fuzz/actions/: identity (returns the payload) and walk (goes through any payload with the
 * sandbox's libraries, and takes patterns from it).
 *
 * Properties, for every payload:
 * - the call ends with OE_OK or a verdict (OE_EINVAL with a message of at
 *   most OE_LUA_MESSAGE_MAX bytes of UTF-8, not empty), never anything
 *   else, and a verdict leaves the result buffer as it was;
 * - a result is JSON our parser reads back, and that prints back to the
 *   same bytes (it is Python's json.dumps(sort_keys=True) already);
 * - the same payload gives byte-identical output (result or message) and
 *   the same steps and peak memory twice on one interpreter, and on a
 *   second interpreter with a different history;
 * - after every call the interpreter is back to its idle heap size, and
 *   never had to be made again;
 * - identity's result is the payload as our printer prints it, unless an
 *   integer of the payload is beyond 64 bits (then that verdict).
 *
 * FUZZ_LUA_SHOW=1 in the environment prints each input's outcome.
 *
 * The folders are found from the working directory (tests/fuzz/run.sh
 * runs from the repository's root) or, failing that, from the binary's
 * path (build/fuzz/fuzz_lua).
 */
#include <libgen.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/engine.h"
#include "engine/json.h"
#include "engine/lua_actions.h"
#include "tests/fuzz/fuzz.h"

/* The actions an input picks from, in this order (make_corpus.py's
 * lua_seeds writes the picking byte from the same list). */
static const char *const action_names[] = {"refund", "tool-router", "key-rotation", "identity",
                                           "walk"};
#define NACTIONS (sizeof action_names / sizeof action_names[0])
#define IDENTITY 3

/* The budgets: the default memory with a tenth of the default steps (a
 * pattern of the payload that backtracks runs until its budget is spent:
 * ten times fewer such steps, ten times more inputs a second), and small
 * ones: enough for every chunk to load, too little for a large payload or
 * a long loop. */
static const oe_lua_limits budgets[2] = {{.max_steps = OE_LUA_DEFAULT_MAX_STEPS / 10},
                                         {.max_steps = 20000, .max_memory = 96 << 10}};

enum { FOLDER_EXAMPLES, FOLDER_HARNESS, NFOLDERS };

/* One set per folder and budget, each with two interpreters. */
typedef struct flavour {
    oe_lua_actions *set[NFOLDERS];
    oe_lua_vm *vm[NFOLDERS][2];
} flavour;

static flavour flavours[2]; /* the budgets above */
static const char *folders[NFOLDERS] = {"examples/actions", "tests/fuzz/actions"};
static char folder_paths[NFOLDERS][PATH_MAX];

/* Where each action is: folder and index. */
static int action_folder[NACTIONS];
static size_t action_index[NACTIONS];

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The folder rel of the repository, from the working directory or from
 * the binary at argv0 (ROOT/build/fuzz/fuzz_lua). */
static void find_folder(const char *argv0, const char *rel, char *out, size_t len)
{
    snprintf(out, len, "%s", rel);
    if (is_dir(out))
        return;
    char bin[PATH_MAX];
    if (argv0 && realpath(argv0, bin)) {
        snprintf(out, len, "%s/../../%s", dirname(bin), rel);
        if (is_dir(out))
            return;
    }
    fprintf(stderr, "fuzz_lua: cannot find %s (run from the repository's root)\n", rel);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *argv0 = argc && *argc > 0 ? (*argv)[0] : NULL;
    char err[600];
    for (int d = 0; d < NFOLDERS; d++)
        find_folder(argv0, folders[d], folder_paths[d], sizeof folder_paths[d]);
    for (int f = 0; f < 2; f++) {
        for (int d = 0; d < NFOLDERS; d++) {
            if (oe_lua_actions_load(folder_paths[d], &budgets[f], &flavours[f].set[d], err,
                                    sizeof err) != OE_OK) {
                fprintf(stderr, "fuzz_lua: loading %s: %s\n", folder_paths[d], err);
                abort();
            }
            for (int k = 0; k < 2; k++)
                if (oe_lua_vm_new(flavours[f].set[d], &flavours[f].vm[d][k], err, sizeof err) !=
                    OE_OK) {
                    fprintf(stderr, "fuzz_lua: interpreter: %s\n", err);
                    abort();
                }
        }
    }
    for (size_t a = 0; a < NACTIONS; a++) {
        int found = 0;
        for (int d = 0; d < NFOLDERS && !found; d++) {
            long i = oe_lua_actions_find(flavours[0].set[d], action_names[a]);
            if (i >= 0) {
                action_folder[a] = d;
                action_index[a] = (size_t)i;
                found = 1;
            }
        }
        if (!found) {
            fprintf(stderr, "fuzz_lua: no action %s in %s or %s\n", action_names[a],
                    folder_paths[0], folder_paths[1]);
            abort();
        }
    }
    return 0;
}

/* What one call gave. */
typedef struct outcome {
    int rc;
    oe_buf out; /* the result (after the marker) or the message */
    uint64_t steps;
    size_t peak;
} outcome;

/* Text a result buffer holds before a call: a call appends after it, and
 * a failed call leaves it as it was. */
static const char marker[] = "<before>";
#define MARKER_LEN (sizeof marker - 1)

static void call(oe_lua_vm *vm, size_t index, const oe_json *payload, outcome *o)
{
    oe_buf result;
    oe_buf_init(&result, MARKER_LEN + OE_RESULT_MAX_BYTES); /* the engine's cap */
    FUZZ_CHECK(oe_buf_append(&result, marker, MARKER_LEN) == OE_OK);
    char msg[OE_LUA_MESSAGE_MAX + 64];
    memset(msg, 'x', sizeof msg);
    oe_lua_usage before, after;
    oe_lua_vm_usage(vm, &before);
    o->rc = oe_lua_vm_run(vm, index, payload, &result, msg, sizeof msg);
    oe_lua_vm_usage(vm, &after);
    o->steps = after.steps;
    o->peak = after.memory_peak;
    /* Running out of memory is no verdict; under the fuzzer's limits it
     * is a finding. */
    if (o->rc == OE_ENOMEM)
        fprintf(stderr, "out of memory: %s\n", msg);
    FUZZ_CHECK(o->rc == OE_OK || o->rc == OE_EINVAL);
    /* Back to idle, without being made again. */
    FUZZ_CHECK(after.heap == after.heap_idle);
    FUZZ_CHECK(after.heap_idle == before.heap_idle);
    FUZZ_CHECK(after.rebuilt == before.rebuilt);

    FUZZ_CHECK(result.len >= MARKER_LEN && memcmp(result.data, marker, MARKER_LEN) == 0);
    oe_buf_init(&o->out, 0);
    if (o->rc == OE_OK) {
        FUZZ_CHECK(result.len > MARKER_LEN);
        FUZZ_CHECK(oe_buf_append(&o->out, result.data + MARKER_LEN, result.len - MARKER_LEN) ==
                   OE_OK);
    } else {
        /* A verdict: the buffer untouched, a message that says why. */
        FUZZ_CHECK(result.len == MARKER_LEN);
        size_t len = strnlen(msg, sizeof msg);
        FUZZ_CHECK(len < sizeof msg);
        FUZZ_CHECK(len > 0 && len <= OE_LUA_MESSAGE_MAX);
        FUZZ_CHECK(oe_utf8_valid(msg, len));
        FUZZ_CHECK(oe_buf_append(&o->out, msg, len) == OE_OK);
    }
    oe_buf_free(&result);
}

static int same(const outcome *a, const outcome *b)
{
    return a->rc == b->rc && a->out.len == b->out.len &&
           memcmp(a->out.data, b->out.data, a->out.len) == 0 && a->steps == b->steps &&
           a->peak == b->peak;
}

static void report_difference(const char *what, const outcome *a, const outcome *b)
{
    if (same(a, b))
        return;
    fprintf(stderr, "%s: %d %.300s (%llu steps, %zu bytes) / %d %.300s (%llu steps, %zu bytes)\n",
            what, a->rc, a->out.data, (unsigned long long)a->steps, a->peak, b->rc, b->out.data,
            (unsigned long long)b->steps, b->peak);
    FUZZ_CHECK(same(a, b));
}

/* 1 when an integer of v is beyond the 64-bit range. */
static int has_big_int(const oe_json *v)
{
    switch (v->type) {
    case OE_JSON_INT:
        return !v->fits_int64;
    case OE_JSON_ARRAY:
        for (uint32_t i = 0; i < v->len; i++)
            if (has_big_int(&v->items[i]))
                return 1;
        return 0;
    case OE_JSON_OBJECT:
        for (uint32_t i = 0; i < v->len; i++)
            if (has_big_int(&v->members[i].value))
                return 1;
        return 0;
    default:
        return 0;
    }
}

static void check_result(const outcome *o)
{
    char err[200];
    oe_json_doc *doc = fuzz_json_parse(o->out.data, o->out.len, 0, err, sizeof err);
    if (!doc)
        fprintf(stderr, "result %.300s: %s\n", o->out.data, err);
    FUZZ_CHECK(doc != NULL);
    oe_buf again;
    oe_buf_init(&again, 0);
    FUZZ_CHECK(oe_json_dump(&again, oe_json_root(doc), OE_JSON_DEFAULT) == OE_OK);
    if (again.len != o->out.len || memcmp(again.data, o->out.data, again.len) != 0)
        fprintf(stderr, "result %.300s\nprints back as %.300s\n", o->out.data, again.data);
    FUZZ_CHECK(again.len == o->out.len && memcmp(again.data, o->out.data, again.len) == 0);
    oe_buf_free(&again);
    oe_json_doc_free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t action = (data[0] & 0x7f) % NACTIONS;
    const flavour *f = &flavours[data[0] >> 7];
    /* An exact-size copy, so that ASan sees any read past the end. */
    char *in = malloc(size);
    if (!in)
        return 0;
    memcpy(in, data + 1, size - 1);
    char err[200];
    oe_json_doc *doc = fuzz_json_parse(in, size - 1, 0, err, sizeof err);
    free(in);
    if (!doc)
        return 0;
    const oe_json *payload = oe_json_root(doc);

    int d = action_folder[action];
    size_t index = action_index[action];
    outcome first, again, other;
    call(f->vm[d][0], index, payload, &first);
    call(f->vm[d][0], index, payload, &again);
    call(f->vm[d][1], index, payload, &other);
    if (getenv("FUZZ_LUA_SHOW")) /* to see what an input does */
        fprintf(stderr, "%s%s: %s %s (%llu steps, %zu bytes)\n", action_names[action],
                data[0] >> 7 ? " (small budgets)" : "", first.rc == OE_OK ? "result" : "failed",
                first.out.data, (unsigned long long)first.steps, first.peak);
    report_difference("twice on one interpreter", &first, &again);
    report_difference("on another interpreter", &first, &other);

    if (first.rc == OE_OK)
        check_result(&first);
    if (action == IDENTITY && f == &flavours[0]) {
        if (has_big_int(payload)) {
            FUZZ_CHECK(first.rc == OE_EINVAL &&
                       strncmp(first.out.data, "payload: the integer ", 21) == 0);
        } else {
            oe_buf want;
            oe_buf_init(&want, 0);
            FUZZ_CHECK(oe_json_dump(&want, payload, OE_JSON_DEFAULT) == OE_OK);
            if (first.rc != OE_OK || want.len != first.out.len ||
                memcmp(want.data, first.out.data, want.len) != 0)
                fprintf(stderr, "identity: %d %.300s\nwanted %.300s\n", first.rc, first.out.data,
                        want.data);
            FUZZ_CHECK(first.rc == OE_OK && want.len == first.out.len &&
                       memcmp(want.data, first.out.data, want.len) == 0);
            oe_buf_free(&want);
        }
    }
    oe_buf_free(&first.out);
    oe_buf_free(&again.out);
    oe_buf_free(&other.out);
    oe_json_doc_free(doc);
    return 0;
}
