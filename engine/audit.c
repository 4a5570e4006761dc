/* The offline audit of a ledger against its receipts logs: see audit.h. */
#include "audit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "approval.h"
#include "buf.h"
#include "checkpoint.h"
#include "digest.h"
#include "merkle.h"
#include "note.h"
#include "tlog.h"

/* Positive returns that stop the streams (failures are negative): a
 * verdict is in the report, or on_log asked to stop. */
#define VERDICT 1
#define STOPPED 2

/* A checkpoint published earlier, given to the audit. */
typedef struct given_note {
    const char *text;
    size_t len;
    char name[300]; /* for messages */
    /* Its log: the first line of its text until it is checked (verified
     * and parsed), its parsed origin after. */
    char origin[OE_TLOG_ORIGIN_MAX + 1];
    int checked;
    uint64_t size;
    unsigned char root[32];
    int matched; /* the ledger holds a checkpoint of its log, size and root */
} given_note;

typedef struct audit {
    oe_store *rows; /* the second store, for the rows */
    const oe_audit_options *opt;
    oe_audit_log_fn on_log;
    void *ctx;
    int on_log_rc; /* on_log's non-zero return, after STOPPED */
    oe_audit_report *report;
    char *err;
    size_t errlen;
    given_note *notes;
    oe_buf leaf; /* a rebuilt leaf, reused */
    /* The log being audited: open from its first checkpoint to its last. */
    int open;
    int64_t log_id;
    char origin[OE_TLOG_ORIGIN_MAX + 1];
    unsigned char public_key[32]; /* as the ledger lists it */
    oe_merkle_compact tree;       /* the log up to the last checkpoint checked */
    uint64_t checkpoints;         /* checked so far */
    int rows_open;                /* a read of its rows is open on rows */
    int have_row;                 /* row is the next row of the log */
    oe_log_row row;
    /* The earliest first checkpoint of any log: a row in no log recorded
     * after it was inserted. */
    int began;
    double began_at;
    char began_origin[OE_TLOG_ORIGIN_MAX + 1];
} audit;

/* Puts the first problem into the report; returns VERDICT. */
static int verdict(audit *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int verdict(audit *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->report->reason, sizeof a->report->reason, fmt, ap);
    va_end(ap);
    a->report->intact = 0;
    return VERDICT;
}

static int out_of_memory(audit *a)
{
    snprintf(a->err, a->errlen, "out of memory");
    return OE_ENOMEM;
}

static int64_t row_index(const oe_log_row *r)
{
    return r->rejected ? r->rejection.log_index : r->execution.log_index;
}

/* "execution nonce N", "rejection nonce N", "rejection without a nonce". */
static void describe(const oe_log_row *r, char *out, size_t len)
{
    const char *nonce = r->rejected ? r->rejection.nonce : r->execution.nonce;
    const char *kind = r->rejected ? "rejection" : "execution";
    if (nonce)
        snprintf(out, len, "%s nonce %.200s", kind, nonce);
    else
        snprintf(out, len, "%s without a nonce", kind);
}

/* The hash of the leaf row r would have as entry index, into out (the
 * engine's leaf: oe_tlog_leaf_of_*). Returns 1, 0 when the row cannot be
 * any signed leaf (a text that is not UTF-8, a leaf past the engine's
 * limit, a column no engine writes), or OE_ENOMEM. */
static int leaf_hash(audit *a, const oe_log_row *r, uint64_t index, unsigned char out[32])
{
    if (r->unreadable)
        return 0;
    oe_buf_reset(&a->leaf);
    int rc;
    if (r->rejected) {
        oe_rejection j = r->rejection;
        j.log_index = (int64_t)index;
        rc = oe_tlog_leaf_of_rejection(&j, &a->leaf);
    } else {
        oe_execution e = r->execution;
        e.log_index = (int64_t)index;
        rc = oe_tlog_leaf_of_execution(&e, &a->leaf);
    }
    if (rc == OE_ENOMEM)
        return out_of_memory(a);
    if (rc != OE_OK)
        return 0;
    oe_merkle_leaf_hash(a->leaf.data, a->leaf.len, out);
    return 1;
}

/* The next row of the open read into a->row (a->have_row: 1, or 0 at its
 * end). Returns 0 or a failure. */
static int next_row(audit *a)
{
    int rc = oe_store_log_rows_next(a->rows, &a->row, a->err, a->errlen);
    a->have_row = rc == 1;
    return rc < 0 ? rc : 0;
}

static void close_rows(audit *a)
{
    if (a->rows_open)
        oe_store_log_rows_close(a->rows);
    a->rows_open = 0;
    a->have_row = 0;
}

/* Verifies given note n with keys and parses it. Returns 0, VERDICT or
 * OE_ENOMEM. */
static int check_note(audit *a, given_note *n, const unsigned char (*keys)[32], size_t nkeys)
{
    char why[300];
    size_t text_len = 0;
    int rc = oe_note_verify(n->text, n->len, keys, nkeys, &text_len, why, sizeof why);
    if (rc == OE_ENOMEM)
        return out_of_memory(a);
    if (rc != OE_OK)
        return verdict(a, "the checkpoint given (%s) does not verify%s%s: %s", n->name,
                       a->opt->ntrusted ? "" : " with the key of log ",
                       a->opt->ntrusted ? "" : n->origin, why);
    if (oe_checkpoint_parse(n->text, text_len, n->origin, sizeof n->origin, &n->size, n->root, why,
                            sizeof why) != OE_OK)
        return verdict(a, "the checkpoint given (%s) is not a checkpoint: %s", n->name, why);
    n->checked = 1;
    if (n->size == 0) { /* the empty tree: every log reaches it */
        unsigned char empty[32];
        oe_merkle_root(NULL, 0, empty);
        n->matched = memcmp(empty, n->root, 32) == 0;
    }
    return 0;
}

/* The given notes: named, their logs claimed by their first lines, and,
 * with trusted keys, checked at once. */
static int setup_notes(audit *a)
{
    for (size_t k = 0; k < a->opt->nnotes; k++) {
        given_note *n = &a->notes[k];
        n->text = a->opt->notes[k];
        n->len = strlen(n->text);
        if (a->opt->note_names && a->opt->note_names[k])
            snprintf(n->name, sizeof n->name, "%.250s", a->opt->note_names[k]);
        else
            snprintf(n->name, sizeof n->name, "#%zu", k + 1);
        size_t line = strcspn(n->text, "\n");
        snprintf(n->origin, sizeof n->origin, "%.*s",
                 (int)(line < OE_TLOG_ORIGIN_MAX ? line : OE_TLOG_ORIGIN_MAX), n->text);
        int rc = a->opt->ntrusted ? check_note(a, n, a->opt->trusted, a->opt->ntrusted) : 0;
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The first checkpoint of a log: its key, the notes it signs, its rows. */
static int begin_log(audit *a, const oe_checkpoint_view *v)
{
    a->open = 1;
    a->log_id = v->log_id;
    snprintf(a->origin, sizeof a->origin, "%.*s", OE_TLOG_ORIGIN_MAX, v->origin);
    memcpy(a->public_key, v->public_key, 32);
    oe_merkle_compact_init(&a->tree);
    a->checkpoints = 0;
    if (!a->began || v->created_at < a->began_at) {
        a->began = 1;
        a->began_at = v->created_at;
        snprintf(a->began_origin, sizeof a->began_origin, "%s", a->origin);
    }
    int trusted = a->opt->ntrusted == 0;
    for (size_t i = 0; i < a->opt->ntrusted && !trusted; i++)
        trusted = memcmp(a->opt->trusted[i], v->public_key, 32) == 0;
    if (!trusted) {
        char key_id[65];
        oe_sha256_hex(v->public_key, 32, key_id);
        return verdict(a, "log %s is signed by key %s, which is not among the trusted keys",
                       a->origin, key_id);
    }
    for (size_t k = 0; k < a->opt->nnotes && a->opt->ntrusted == 0; k++) {
        given_note *n = &a->notes[k];
        int rc = !n->checked && strcmp(n->origin, v->origin) == 0
                     ? check_note(a, n, (const unsigned char(*)[32])a->public_key, 1)
                     : 0;
        if (rc != 0)
            return rc;
    }
    int rc = oe_store_log_rows_open(a->rows, a->log_id, a->err, a->errlen);
    if (rc != 0)
        return rc;
    a->rows_open = 1;
    return next_row(a);
}

/* A row whose index is below the entry expected: it has none, or a row
 * of its index was checked already. */
static int misplaced(audit *a)
{
    char who[300];
    describe(&a->row, who, sizeof who);
    int64_t at = row_index(&a->row);
    if (at < 0)
        return verdict(a, "%s was inserted: it names log %s without an entry index", who,
                       a->origin);
    return verdict(a, "%s was inserted: a second row at entry %lld of log %s", who, (long long)at,
                   a->origin);
}

/* The row at entry i (of the batch of v) is not the entry as signed:
 * reordered (it is another entry of the batch as signed), inserted (the
 * entry as signed is the next row, at the same index) or changed. */
static int mismatch(audit *a, const oe_checkpoint_view *v, uint64_t i)
{
    char who[300];
    unsigned char h[32];
    describe(&a->row, who, sizeof who);
    uint64_t moved = i;
    for (uint64_t j = v->from_size; j < v->size && moved == i; j++) {
        int rc = j == i ? 0 : leaf_hash(a, &a->row, j, h);
        if (rc < 0)
            return rc;
        if (rc == 1 && memcmp(h, v->leaves[j - v->from_size], 32) == 0)
            moved = j;
    }
    int rc = next_row(a);
    if (rc != 0)
        return rc;
    if (a->have_row && row_index(&a->row) == (int64_t)i) {
        if ((rc = leaf_hash(a, &a->row, i, h)) < 0)
            return rc;
        if (rc == 1 && memcmp(h, v->leaves[i - v->from_size], 32) == 0)
            return verdict(a, "%s was inserted: a second row at entry %llu of log %s", who,
                           (unsigned long long)i, a->origin);
        char other[300];
        describe(&a->row, other, sizeof other);
        return verdict(a,
                       "%s and %s are both at entry %llu of log %s, and neither is the entry "
                       "as signed: rows were inserted or changed after they were signed",
                       who, other, (unsigned long long)i, a->origin);
    }
    if (moved != i)
        return verdict(a,
                       "%s, entry %llu of log %s as signed, is at entry %llu: rows were "
                       "reordered after they were signed",
                       who, (unsigned long long)moved, a->origin, (unsigned long long)i);
    return verdict(a, "%s, entry %llu of log %s was changed after it was signed", who,
                   (unsigned long long)i, a->origin);
}

/* The rows of the batch of v, entries from_size to size - 1, against its
 * leaf hashes. */
static int check_rows(audit *a, const oe_checkpoint_view *v)
{
    for (uint64_t i = v->from_size; i < v->size; i++) {
        if (!a->have_row || row_index(&a->row) > (int64_t)i)
            return verdict(a, "entry %llu of log %s has no row: it was removed after it was signed",
                           (unsigned long long)i, a->origin);
        if (row_index(&a->row) < (int64_t)i)
            return misplaced(a);
        unsigned char h[32];
        int rc = leaf_hash(a, &a->row, i, h);
        if (rc < 0)
            return rc;
        if (rc == 0 || memcmp(h, v->leaves[i - v->from_size], 32) != 0)
            return mismatch(a, v, i);
        if ((rc = next_row(a)) != 0)
            return rc;
    }
    return 0;
}

/* What is left of the rows after the last checkpoint of the log: none,
 * or a second row of an entry, or rows past the log's end: a writer's
 * batch committed since the checkpoints were read (a checkpoint covers
 * them now), or inserted. */
static int leftover_rows(audit *a)
{
    int64_t at = row_index(&a->row);
    char who[300];
    if (at < (int64_t)a->tree.size)
        return misplaced(a);
    describe(&a->row, who, sizeof who);
    close_rows(a); /* the store serves one read at a time */
    oe_log_batch b;
    int found = oe_store_log_batch(a->rows, a->log_id, (uint64_t)at, &b, a->err, a->errlen);
    if (found < 0)
        return found;
    if (found == 1) {
        oe_log_batch_clear(&b);
        return 0;
    }
    return verdict(a,
                   "%s was inserted: entry %lld of log %s is past its last checkpoint (size %llu)",
                   who, (long long)at, a->origin, (unsigned long long)a->tree.size);
}

/* After the last checkpoint of the open log. */
static int end_log(audit *a)
{
    int rc = a->have_row ? leftover_rows(a) : 0;
    close_rows(a);
    a->open = 0;
    if (rc != 0)
        return rc;
    for (size_t k = 0; k < a->opt->nnotes; k++) {
        given_note *n = &a->notes[k];
        if (n->checked && !n->matched && strcmp(n->origin, a->origin) == 0)
            return verdict(a,
                           "log %s truncated or rewritten: the ledger's log has size %llu, the "
                           "checkpoint given (%s) has size %llu",
                           a->origin, (unsigned long long)a->tree.size, n->name,
                           (unsigned long long)n->size);
    }
    a->report->logs++;
    oe_audit_log log = {
        .origin = a->origin, .entries = a->tree.size, .checkpoints = a->checkpoints};
    if (a->on_log && (a->on_log_rc = a->on_log(a->ctx, &log)) != 0)
        return STOPPED;
    return 0;
}

/* One stored checkpoint (oe_store_checkpoint_fn), of the open log or the
 * first of the next. */
static int on_checkpoint(void *ctx, const oe_checkpoint_view *v)
{
    audit *a = ctx;
    int rc;
    if (a->open && v->log_id != a->log_id && (rc = end_log(a)) != 0)
        return rc;
    if (!a->open && (rc = begin_log(a, v)) != 0)
        return rc;
    a->checkpoints++;
    const char *o = a->origin;
    unsigned long long size = v->size, from = v->from_size;
    if (v->from_size != a->tree.size) {
        if (a->tree.size == 0)
            return verdict(a,
                           "log %s: its first checkpoint starts at entry %llu, not 0: the "
                           "checkpoints before it were removed",
                           o, from);
        return verdict(a,
                       "log %s: the checkpoint of size %llu starts at entry %llu, but the one "
                       "before it ends at %llu: a checkpoint was removed or inserted",
                       o, size, from, (unsigned long long)a->tree.size);
    }
    if (v->size <= v->from_size)
        return verdict(a, "log %s: the checkpoint of size %llu adds no entry", o, size);
    /* The signed note, by the log's key (found trusted by begin_log). */
    size_t text_len = 0;
    char why[300], origin[OE_TLOG_ORIGIN_MAX + 1];
    uint64_t signed_size;
    unsigned char root[32];
    rc = oe_note_verify(v->note, strlen(v->note), (const unsigned char(*)[32])a->public_key, 1,
                        &text_len, why, sizeof why);
    if (rc == OE_ENOMEM)
        return out_of_memory(a);
    if (rc != OE_OK)
        return verdict(a,
                       "log %s: the checkpoint of size %llu does not verify with the log's key: %s",
                       o, size, why);
    if (oe_checkpoint_parse(v->note, text_len, origin, sizeof origin, &signed_size, root, why,
                            sizeof why) != OE_OK)
        return verdict(a, "log %s: the checkpoint of size %llu is not a checkpoint: %s", o, size,
                       why);
    if (strcmp(origin, v->origin) != 0)
        return verdict(a, "log %s: the checkpoint of size %llu is signed for log %s", o, size,
                       origin);
    if (signed_size != v->size)
        return verdict(a, "log %s: the checkpoint stored as size %llu signs size %llu", o, size,
                       (unsigned long long)signed_size);
    if (memcmp(root, v->root, 32) != 0)
        return verdict(a,
                       "log %s: the root stored with the checkpoint of size %llu is not the "
                       "one its note signs",
                       o, size);
    /* The batch's leaf hashes extend the tree to the signed root. */
    for (uint64_t i = 0; i < v->size - v->from_size; i++)
        if (oe_merkle_compact_append(&a->tree, v->leaves[i]) != OE_OK)
            return verdict(a, "log %s: the checkpoint of size %llu is too large", o, size);
    oe_merkle_compact_root(&a->tree, root);
    if (memcmp(root, v->root, 32) != 0)
        return verdict(a,
                       "log %s: the leaf hashes stored with the checkpoint of size %llu do not "
                       "lead to its signed root: they were changed",
                       o, size);
    if (memcmp(a->tree.hashes, v->frontier, 32 * (size_t)__builtin_popcountll(v->size)) != 0)
        return verdict(a,
                       "log %s: the tree stored with the checkpoint of size %llu is not the "
                       "tree of its entries: it was changed",
                       o, size);
    /* Checkpoints published earlier of this size. */
    for (size_t k = 0; k < a->opt->nnotes; k++) {
        given_note *n = &a->notes[k];
        if (!n->checked || n->size != v->size || strcmp(n->origin, v->origin) != 0)
            continue;
        if (memcmp(n->root, v->root, 32) != 0)
            return verdict(a,
                           "log %s rewritten: its checkpoint of size %llu has another root "
                           "than the checkpoint given (%s)",
                           o, size, n->name);
        n->matched = 1;
    }
    return check_rows(a, v);
}

/* The rows in no log with a checkpoint: unsigned before the first log
 * began, inserted after it or when they name a log. */
static int unsigned_rows(audit *a)
{
    int rc = oe_store_log_rows_open(a->rows, 0, a->err, a->errlen);
    if (rc != 0)
        return rc;
    a->rows_open = 1;
    while ((rc = next_row(a)) == 0 && a->have_row) {
        const oe_log_row *r = &a->row;
        int64_t log_id = r->rejected ? r->rejection.log_id : r->execution.log_id;
        double at = r->rejected ? r->rejection.created_at : r->execution.created_at;
        char who[300], when[64], began[64];
        describe(r, who, sizeof who);
        if (log_id != 0) {
            rc = verdict(a, "%s was inserted: it names log %lld, which has no checkpoint", who,
                         (long long)log_id);
            break;
        }
        if (a->began && at > a->began_at) {
            oe_time_format_iso8601(at, when, sizeof when);
            oe_time_format_iso8601(a->began_at, began, sizeof began);
            rc = verdict(a,
                         "%s was inserted: it is in no receipts log, but was recorded at %s, "
                         "after log %s began (its first checkpoint, at %s)",
                         who, when, a->began_origin, began);
            break;
        }
        a->report->unsigned_rows++;
    }
    close_rows(a);
    return rc;
}

/* The checkpoints given whose log the ledger does not have. */
static int unmatched_notes(audit *a)
{
    for (size_t k = 0; k < a->opt->nnotes; k++) {
        given_note *n = &a->notes[k];
        if (n->matched)
            continue;
        if (!n->checked)
            return verdict(a,
                           "log %s truncated or rewritten: the ledger has no checkpoint of it, "
                           "and the checkpoint given (%s) names it (its signature is not "
                           "checked: no trusted keys, and the ledger has no key of that log)",
                           n->origin, n->name);
        return verdict(a,
                       "log %s truncated or rewritten: the ledger has no checkpoint of it, the "
                       "checkpoint given (%s) has size %llu",
                       n->origin, n->name, (unsigned long long)n->size);
    }
    return 0;
}

int oe_audit_ledger(oe_store *checkpoints, oe_store *rows, const oe_audit_options *opt,
                    oe_audit_log_fn on_log, void *ctx, oe_audit_report *report, char *err,
                    size_t errlen)
{
    memset(report, 0, sizeof *report);
    report->intact = 1;
    if (checkpoints == rows) {
        snprintf(err, errlen, "an audit reads the ledger through two stores");
        return OE_EINVAL;
    }
    audit a = {.rows = rows,
               .opt = opt,
               .on_log = on_log,
               .ctx = ctx,
               .report = report,
               .err = err,
               .errlen = errlen};
    oe_buf_init(&a.leaf, 0);
    a.notes = calloc(opt->nnotes ? opt->nnotes : 1, sizeof *a.notes);
    int rc = a.notes ? setup_notes(&a) : out_of_memory(&a);
    if (rc == 0)
        rc = oe_store_each_checkpoint(checkpoints, NULL, on_checkpoint, &a, err, errlen);
    if (rc == 0 && a.open)
        rc = end_log(&a);
    close_rows(&a);
    if (rc == 0)
        rc = unsigned_rows(&a);
    if (rc == 0)
        rc = unmatched_notes(&a);
    oe_buf_free(&a.leaf);
    free(a.notes);
    if (rc == STOPPED)
        return a.on_log_rc;
    return rc == VERDICT ? OE_OK : rc;
}
