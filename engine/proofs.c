/* Proofs of receipts log entries from the ledger alone: see proofs.h. */
#include "proofs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "json.h"
#include "tlog.h"

/* Writes "t0","t1",... of the n hashes given as their base64 text (44
 * characters each, no terminator) to d, which has room for 47 * n bytes;
 * returns the end. */
static char *write_texts(char *d, const char *const *texts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            *d++ = ',';
        *d++ = '"';
        memcpy(d, texts[i], 44);
        d += 44;
        *d++ = '"';
    }
    return d;
}

/* Appends [...] of write_texts, n <= OE_MERKLE_MAX_CONSISTENCY. */
static int put_texts(oe_buf *out, const char *const *texts, size_t n)
{
    char text[OE_MERKLE_MAX_CONSISTENCY * 47 + 2], *d = text;
    if (n > OE_MERKLE_MAX_CONSISTENCY)
        return 1;
    *d++ = '[';
    d = write_texts(d, texts, n);
    *d++ = ']';
    return oe_buf_append(out, text, (size_t)(d - text)) != OE_OK;
}

/* The base64 text of each of hashes[0..n) into text, and where each is
 * into at. */
static void texts_of(const unsigned char (*hashes)[32], size_t n, char (*text)[45], const char **at)
{
    for (size_t i = 0; i < n; i++) {
        oe_base64_encode(hashes[i], 32, text[i], 45);
        at[i] = text[i];
    }
}

/* Ends an append: OE_OK, or the failure with out as it was at start. */
static oe_rc finish(oe_buf *out, size_t start, int failed)
{
    if (!failed)
        return OE_OK;
    oe_rc rc = oe_buf_failed(out) ? oe_buf_failed(out) : OE_EINVAL;
    if (out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

oe_rc oe_proof_render(const char *origin, const char *note_json, size_t note_json_len,
                      uint64_t index, const char *const *path, size_t n, const char *leaf,
                      size_t len, oe_buf *out)
{
    /* Room for all of it, made once (oe_json_string_room); then written in place. */
    static const char pre[] = "{\"checkpoint\":", incl[] = ",\"inclusion\":[",
                      leaf_key[] = "],\"leaf\":", index_key[] = ",\"log_index\":",
                      origin_key[] = ",\"log_origin\":";
    size_t origin_len = strlen(origin);
    if (n > OE_MERKLE_MAX_INCLUSION || (!leaf && len))
        return OE_EINVAL;
    size_t need = sizeof pre + note_json_len + sizeof incl + 47 * n + sizeof leaf_key +
                  oe_json_string_room(leaf, len) + sizeof index_key + 20 + sizeof origin_key +
                  oe_json_string_room(origin, origin_len) + 1;
    oe_rc rc = oe_buf_room(out, need);
    if (rc != OE_OK)
        return rc;
    char *p = out->data + out->len;
#define PUT(s, k) (memcpy(p, s, k), p += (k))
    PUT(pre, sizeof pre - 1);
    PUT(note_json, note_json_len);
    PUT(incl, sizeof incl - 1);
    p = write_texts(p, path, n);
    PUT(leaf_key, sizeof leaf_key - 1);
    if (!(p = oe_json_put_string(p, leaf ? leaf : "", len)))
        goto not_text;
    PUT(index_key, sizeof index_key - 1);
    char digits[21];
    size_t ndigits = oe_u64_text(index, digits);
    PUT(digits, ndigits);
    PUT(origin_key, sizeof origin_key - 1);
    if (!(p = oe_json_put_string(p, origin, origin_len)))
        goto not_text;
    *p++ = '}';
#undef PUT
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
    return OE_OK;
not_text:
    out->data[out->len] = '\0'; /* out as it was */
    return OE_EINVAL;
}

/* oe_proof_render with the note as its text. */
static oe_rc render_with_note(const char *origin, const char *note, uint64_t index,
                              const char *const *path, size_t n, const oe_buf *leaf, oe_buf *out)
{
    oe_buf lit;
    oe_buf_init(&lit, 0);
    oe_rc rc = oe_json_dump_string(&lit, note, strlen(note));
    if (rc == OE_OK)
        rc = oe_proof_render(origin, lit.data, lit.len, index, path, n, leaf->data, leaf->len, out);
    oe_buf_free(&lit);
    return rc;
}

void oe_proof_cache_clear(oe_proof_cache *c)
{
    oe_log_batch_clear(&c->batch);
    oe_merkle_batch_free(&c->tree);
    c->log_id = 0;
}

/* The leaf of rec and its hash; the caller frees leaf. */
static oe_rc leaf_of(const oe_execution *rec, oe_buf *leaf, unsigned char hash[32], char *err,
                     size_t errlen)
{
    oe_buf_init(leaf, 0);
    oe_rc rc = oe_tlog_leaf_of_execution(rec, leaf);
    if (rc != OE_OK) {
        snprintf(err, errlen, "%s while writing an entry's leaf", oe_strerror(rc));
        return rc == OE_ENOMEM ? rc : OE_ESTORE;
    }
    oe_merkle_leaf_hash(leaf->data, leaf->len, hash);
    return OE_OK;
}

static void row_changed(const oe_execution *rec, const char *origin, char *err, size_t errlen)
{
    snprintf(err, errlen,
             "the ledger's execution of nonce %.64s is not entry %lld of log %s as signed: the "
             "row was changed",
             rec->nonce, (long long)rec->log_index, origin);
}

oe_rc oe_proof_of_entry(oe_proof_cache *c, oe_store *store, const oe_execution *rec, oe_buf *out,
                        char *err, size_t errlen)
{
    if (rec->log_id <= 0 || rec->log_index < 0)
        return OE_OK; /* written unsigned: nothing proves it */
    uint64_t index = (uint64_t)rec->log_index;
    if (!(c->log_id == rec->log_id && index >= c->batch.base.size && index < c->batch.size)) {
        oe_proof_cache_clear(c);
        int found = oe_store_log_batch(store, rec->log_id, index, &c->batch, err, errlen);
        if (found == 0) {
            snprintf(err, errlen, "entry %llu of log %lld has no checkpoint",
                     (unsigned long long)index, (long long)rec->log_id);
            return OE_ESTORE;
        }
        if (found < 0)
            return found;
        oe_rc rc = oe_merkle_batch_build(&c->tree, &c->batch.base,
                                         (const unsigned char(*)[32])c->batch.leaves,
                                         c->batch.size - c->batch.base.size);
        if (rc != OE_OK) {
            oe_log_batch_clear(&c->batch);
            snprintf(err, errlen, "%s while proving an entry", oe_strerror(rc));
            return rc;
        }
        c->log_id = rec->log_id;
    }
    oe_buf leaf;
    unsigned char h[32];
    oe_rc rc = leaf_of(rec, &leaf, h, err, errlen);
    if (rc == OE_OK && memcmp(h, c->batch.leaves[index - c->batch.base.size], 32) != 0) {
        row_changed(rec, c->batch.origin, err, errlen);
        rc = OE_ESTORE;
    }
    size_t path[OE_MERKLE_MAX_INCLUSION], n = 0;
    const char *texts[OE_MERKLE_MAX_INCLUSION];
    if (rc == OE_OK)
        rc = oe_merkle_batch_path(&c->tree, index, path, &n);
    for (size_t i = 0; rc == OE_OK && i < n; i++)
        texts[i] = c->tree.text[path[i]];
    if (rc == OE_OK)
        rc = render_with_note(c->batch.origin, c->batch.note, index, texts, n, &leaf, out);
    oe_buf_free(&leaf);
    return rc;
}

/* The subtrees a proof needs, found by running its generator once with a
 * source that only records what it is asked (plan_record), then filled
 * from one pass over the log's leaf hashes, then read back by a second run
 * (plan_lookup). They are disjoint, and asked in order of position. */
#define PLAN_MAX (OE_MERKLE_MAX_CONSISTENCY + 1)
typedef struct span {
    uint64_t begin, end;
    oe_merkle_compact acc;
} span;
typedef struct plan {
    span s[PLAN_MAX];
    size_t n;
} plan;

static oe_rc plan_record(void *ctx, uint64_t begin, uint64_t end, unsigned char out[32])
{
    plan *p = ctx;
    if (p->n == PLAN_MAX)
        return OE_ELIMIT;
    p->s[p->n].begin = begin;
    p->s[p->n].end = end;
    oe_merkle_compact_init(&p->s[p->n].acc);
    p->n++;
    memset(out, 0, 32);
    return OE_OK;
}

static oe_rc plan_lookup(void *ctx, uint64_t begin, uint64_t end, unsigned char out[32])
{
    const plan *p = ctx;
    for (size_t i = 0; i < p->n; i++)
        if (p->s[i].begin == begin && p->s[i].end == end && p->s[i].acc.size == end - begin)
            return oe_merkle_compact_root(&p->s[i].acc, out);
    return OE_EINVAL;
}

static int by_begin(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* One pass over a log's checkpoints (oe_store_each_checkpoint), feeding
 * its leaf hashes [0, target) to the plan's subtrees, checking that the
 * checkpoints follow one another and that the leaves give each one's
 * root, and keeping the notes of the sizes wanted. */
typedef struct walk {
    plan *p;
    size_t cur;
    uint64_t target, next;
    uint64_t want[2];
    char *note[2];
    int check_leaf; /* 1: the leaf at index must hash to leaf_hash */
    uint64_t index;
    unsigned char leaf_hash[32];
    int leaf_seen; /* 1 same, -1 different */
    oe_merkle_compact whole;
    char origin[256];
    char *err;
    size_t errlen;
} walk;

static int walk_checkpoint(void *ctx, const oe_checkpoint_view *c)
{
    walk *w = ctx;
    snprintf(w->origin, sizeof w->origin, "%s", c->origin);
    if (c->from_size != w->next) {
        snprintf(w->err, w->errlen,
                 "the checkpoints of log %s do not follow one another at size %llu", c->origin,
                 (unsigned long long)w->next);
        return OE_ESTORE;
    }
    for (uint64_t i = c->from_size; i < c->size && i < w->target; i++) {
        const unsigned char *h = c->leaves[i - c->from_size];
        if (w->check_leaf && i == w->index)
            w->leaf_seen = memcmp(h, w->leaf_hash, 32) == 0 ? 1 : -1;
        while (w->cur < w->p->n && w->p->s[w->cur].end <= i)
            w->cur++;
        if (w->cur < w->p->n && w->p->s[w->cur].begin <= i)
            oe_merkle_compact_append(&w->p->s[w->cur].acc, h);
        oe_merkle_compact_append(&w->whole, h);
    }
    w->next = c->size;
    if (c->size <= w->target) {
        unsigned char root[32];
        oe_merkle_compact_root(&w->whole, root);
        if (memcmp(root, c->root, 32) != 0) {
            snprintf(w->err, w->errlen,
                     "the leaves of log %s do not give the root of its checkpoint of size %llu",
                     c->origin, (unsigned long long)c->size);
            return OE_ESTORE;
        }
    }
    for (int k = 0; k < 2; k++)
        if (c->size == w->want[k] && !w->note[k] && !(w->note[k] = strdup(c->note))) {
            snprintf(w->err, w->errlen, "out of memory");
            return OE_ENOMEM;
        }
    return w->next >= w->target && w->note[0] && w->note[1] ? 1 : 0;
}

/* Runs the walk of origin for sizes a and b (target b); OE_OK with both
 * notes, or a failure with its reason. */
static oe_rc run_walk(oe_store *store, const char *origin, walk *w, uint64_t a, uint64_t b,
                      char *err, size_t errlen)
{
    qsort(w->p->s, w->p->n, sizeof w->p->s[0], by_begin);
    w->target = b;
    w->want[0] = a;
    w->want[1] = b;
    w->err = err;
    w->errlen = errlen;
    oe_merkle_compact_init(&w->whole);
    int rc = oe_store_each_checkpoint(store, origin, walk_checkpoint, w, err, errlen);
    if (rc < 0)
        return rc;
    if (!w->note[0] || !w->note[1]) {
        snprintf(err, errlen, "log %.200s has no checkpoint of size %llu", origin,
                 (unsigned long long)(w->note[0] ? b : a));
        return OE_EINVAL;
    }
    return OE_OK;
}

oe_rc oe_proof_in_tree(oe_store *store, const oe_execution *rec, uint64_t size, oe_buf *out,
                       char *err, size_t errlen)
{
    if (rec->log_id <= 0 || rec->log_index < 0) {
        snprintf(err, errlen, "this execution was recorded unsigned: nothing proves it");
        return OE_EINVAL;
    }
    uint64_t index = (uint64_t)rec->log_index;
    if (size <= index) {
        snprintf(err, errlen, "entry %llu is not in a tree of size %llu", (unsigned long long)index,
                 (unsigned long long)size);
        return OE_EINVAL;
    }
    /* The entry's own batch names its log. */
    oe_log_batch b;
    int found = oe_store_log_batch(store, rec->log_id, index, &b, err, errlen);
    if (found <= 0) {
        if (found == 0)
            snprintf(err, errlen, "entry %llu of log %lld has no checkpoint",
                     (unsigned long long)index, (long long)rec->log_id);
        return found == 0 ? OE_ESTORE : found;
    }
    char origin[256];
    snprintf(origin, sizeof origin, "%s", b.origin);
    oe_log_batch_clear(&b);
    plan p = {.n = 0};
    walk w = {.p = &p, .check_leaf = 1, .index = index};
    oe_buf leaf;
    unsigned char path[OE_MERKLE_MAX_INCLUSION][32];
    size_t n = 0;
    oe_rc rc = leaf_of(rec, &leaf, w.leaf_hash, err, errlen);
    if (rc == OE_OK)
        rc = oe_merkle_inclusion_proof_from(plan_record, &p, size, index, path, &n);
    if (rc == OE_OK)
        rc = run_walk(store, origin, &w, size, size, err, errlen);
    if (rc == OE_OK && w.leaf_seen != 1) {
        row_changed(rec, origin, err, errlen);
        rc = OE_ESTORE;
    }
    if (rc == OE_OK)
        rc = oe_merkle_inclusion_proof_from(plan_lookup, &p, size, index, path, &n);
    char text[OE_MERKLE_MAX_INCLUSION][45];
    const char *texts[OE_MERKLE_MAX_INCLUSION];
    if (rc == OE_OK) {
        texts_of((const unsigned char(*)[32])path, n, text, texts);
        rc = render_with_note(origin, w.note[1], index, texts, n, &leaf, out);
    }
    oe_buf_free(&leaf);
    free(w.note[0]);
    free(w.note[1]);
    return rc;
}

oe_rc oe_proof_consistency(oe_store *store, const char *origin, uint64_t from, uint64_t to,
                           oe_buf *out, char *err, size_t errlen)
{
    if (from == 0 || from > to) {
        snprintf(err, errlen, "a consistency proof needs 0 < from <= to");
        return OE_EINVAL;
    }
    plan p = {.n = 0};
    walk w = {.p = &p};
    unsigned char path[OE_MERKLE_MAX_CONSISTENCY][32];
    size_t n = 0;
    oe_rc rc = oe_merkle_consistency_proof_from(plan_record, &p, to, from, path, &n);
    if (rc == OE_OK)
        rc = run_walk(store, origin, &w, from, to, err, errlen);
    if (rc == OE_OK)
        rc = oe_merkle_consistency_proof_from(plan_lookup, &p, to, from, path, &n);
    if (rc == OE_OK) {
        size_t start = out->len;
        char num[2][32], text[OE_MERKLE_MAX_CONSISTENCY][45];
        const char *texts[OE_MERKLE_MAX_CONSISTENCY];
        texts_of((const unsigned char(*)[32])path, n, text, texts);
        snprintf(num[0], sizeof num[0], "%llu", (unsigned long long)from);
        snprintf(num[1], sizeof num[1], "%llu", (unsigned long long)to);
        int failed = oe_buf_puts(out, "{\"consistency\":") || put_texts(out, texts, n) ||
                     oe_buf_puts(out, ",\"from\":{\"checkpoint\":") ||
                     oe_json_dump_string(out, w.note[0], strlen(w.note[0])) ||
                     oe_buf_puts(out, ",\"size\":") || oe_buf_puts(out, num[0]) ||
                     oe_buf_puts(out, "},\"log_origin\":") ||
                     oe_json_dump_string(out, origin, strlen(origin)) ||
                     oe_buf_puts(out, ",\"to\":{\"checkpoint\":") ||
                     oe_json_dump_string(out, w.note[1], strlen(w.note[1])) ||
                     oe_buf_puts(out, ",\"size\":") || oe_buf_puts(out, num[1]) ||
                     oe_buf_puts(out, "}}");
        rc = finish(out, start, failed);
    }
    free(w.note[0]);
    free(w.note[1]);
    return rc;
}
