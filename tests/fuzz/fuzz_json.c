/* Fuzzes the strict JSON parser and the canonical serializer (engine/json.c).
 *
 * Every input is parsed; what parses must serialize, and the serialization
 * must parse back to the same tree and serialize to the same bytes again
 * (in both the COMPACT and the DEFAULT style). Request hashes and approvals
 * are computed over this text, so a document whose canonical text changes
 * after one round trip would let two parties disagree on a hash.
 */
#include <string.h>

#include "engine/json.h"
#include "tests/fuzz/fuzz.h"

/* Structural equality: same types, same strings and integer texts, floats
 * with the same bits, members in the same order (the parser sorts them). */
static int same_tree(const oe_json *a, const oe_json *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case OE_JSON_NULL:
    case OE_JSON_FALSE:
    case OE_JSON_TRUE:
        return 1;
    case OE_JSON_INT:
        return a->len == b->len && memcmp(a->str, b->str, a->len) == 0 &&
               a->fits_int64 == b->fits_int64 && (!a->fits_int64 || a->i64 == b->i64);
    case OE_JSON_FLOAT:
        return memcmp(&a->num, &b->num, sizeof a->num) == 0;
    case OE_JSON_STRING:
        return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
    case OE_JSON_ARRAY:
        if (a->len != b->len)
            return 0;
        for (size_t i = 0; i < a->len; i++)
            if (!same_tree(&a->items[i], &b->items[i]))
                return 0;
        return 1;
    case OE_JSON_OBJECT:
        if (a->len != b->len)
            return 0;
        for (size_t i = 0; i < a->len; i++) {
            const oe_json_member *x = &a->members[i], *y = &b->members[i];
            if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len) != 0 ||
                !same_tree(&x->value, &y->value))
                return 0;
        }
        return 1;
    }
    return 0;
}

/* Serializes root in style into out (reset first); the dump must succeed,
 * since the default 16 MiB cap is far above what a fuzz input expands to. */
static void dump(oe_buf *out, const oe_json *root, oe_json_style style)
{
    oe_buf_reset(out);
    FUZZ_CHECK(oe_json_dump(out, root, style) == 0);
    FUZZ_CHECK(!oe_buf_failed(out) && out->data != NULL);
}

/* Parses text that the serializer produced; it must be accepted. */
static oe_json_doc *reparse(const oe_buf *text)
{
    char err[200];
    oe_json_doc *doc = fuzz_json_parse(text->data, text->len, 0, err, sizeof err);
    if (!doc)
        fprintf(stderr, "serializer output rejected: %s\n", err);
    FUZZ_CHECK(doc != NULL);
    return doc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so that ASan sees any read past the end. */
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);

    char err[200];
    err[0] = '\0';
    oe_json_doc *d1 = fuzz_json_parse(in, size, 0, err, sizeof err);
    /* A shallow depth limit may refuse what the default accepts, never the
     * other way round. */
    char err2[200];
    oe_json_doc *shallow = fuzz_json_parse(in, size, 2, err2, sizeof err2);
    free(in);
    FUZZ_CHECK(!shallow || d1);
    if (!d1) {
        /* Every refusal says why, in a terminated string. */
        FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
        return 0;
    }
    const oe_json *r1 = oe_json_root(d1);
    if (shallow) {
        FUZZ_CHECK(same_tree(r1, oe_json_root(shallow)));
        oe_json_doc_free(shallow);
    }

    oe_buf compact, compact2, deflt, deflt2;
    oe_buf_init(&compact, 0);
    oe_buf_init(&compact2, 0);
    oe_buf_init(&deflt, 0);
    oe_buf_init(&deflt2, 0);

    /* parse -> COMPACT -> parse: the same tree, and the same bytes again. */
    dump(&compact, r1, OE_JSON_COMPACT);
    oe_json_doc *d2 = reparse(&compact);
    FUZZ_CHECK(same_tree(r1, oe_json_root(d2)));
    dump(&compact2, oe_json_root(d2), OE_JSON_COMPACT);
    FUZZ_CHECK(compact2.len == compact.len &&
               memcmp(compact2.data, compact.data, compact.len) == 0);

    /* parse -> DEFAULT -> parse: the same tree and the same texts in both
     * styles. */
    dump(&deflt, r1, OE_JSON_DEFAULT);
    oe_json_doc *d3 = reparse(&deflt);
    FUZZ_CHECK(same_tree(r1, oe_json_root(d3)));
    dump(&deflt2, oe_json_root(d3), OE_JSON_DEFAULT);
    FUZZ_CHECK(deflt2.len == deflt.len && memcmp(deflt2.data, deflt.data, deflt.len) == 0);
    dump(&compact2, oe_json_root(d3), OE_JSON_COMPACT);
    FUZZ_CHECK(compact2.len == compact.len &&
               memcmp(compact2.data, compact.data, compact.len) == 0);

    /* The canonical text is printable ASCII: ensure_ascii escapes all
     * else, DEL and control characters included, as Python does. */
    for (size_t i = 0; i < compact.len; i++)
        FUZZ_CHECK(compact.data[i] >= 0x20 && compact.data[i] < 0x7f);

    oe_json_doc_free(d3);
    oe_json_doc_free(d2);
    oe_json_doc_free(d1);
    oe_buf_free(&compact);
    oe_buf_free(&compact2);
    oe_buf_free(&deflt);
    oe_buf_free(&deflt2);
    return 0;
}
