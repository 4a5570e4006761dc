/* The writer's receipts log: see tlog.h. */
#include "tlog.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "digest.h"
#include "json.h"

struct oe_tlog {
    const oe_signer *signer;
    char origin[OE_TLOG_ORIGIN_MAX + 1];
    int64_t log_id;
    oe_merkle_compact committed; /* the tree at the last checkpoint */
    oe_merkle_compact pending;   /* ... with this batch's leaves */
    unsigned char (*leaves)[32]; /* this batch's leaf hashes */
    size_t n, cap;
    oe_merkle_batch batch; /* after the seal: this batch's nodes */
    int sealed;
    oe_buf note; /* after the seal: the signed checkpoint */
};

/* A C2SP note name: printable ASCII, no space or '+'. */
static int valid_origin(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > OE_TLOG_ORIGIN_MAX)
        return 0;
    for (; *s; s++)
        if (*s <= ' ' || *s > '~' || *s == '+')
            return 0;
    return 1;
}

oe_rc oe_tlog_open(oe_store *store, const oe_signer *signer, const char *origin, double now,
                   oe_tlog **out, char *err, size_t errlen)
{
    *out = NULL;
    oe_tlog *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    t->signer = signer;
    oe_log_key key;
    oe_signer_public(signer, key.public_key);
    oe_signer_key_id(signer, key.key_id);
    if (origin)
        snprintf(t->origin, sizeof t->origin, "%s", origin);
    else
        snprintf(t->origin, sizeof t->origin, "openexec/%.16s", key.key_id);
    if (!valid_origin(t->origin) || (origin && strlen(origin) > OE_TLOG_ORIGIN_MAX)) {
        snprintf(err, errlen,
                 "the log origin must be 1 to %d printable ASCII characters without space or "
                 "'+'",
                 OE_TLOG_ORIGIN_MAX);
        free(t);
        return OE_EINVAL;
    }
    key.origin = t->origin;
    int rc = oe_store_log_open(store, &key, now, &t->log_id, &t->committed, err, errlen);
    if (rc != 0) {
        free(t);
        return rc;
    }
    t->pending = t->committed;
    oe_buf_init(&t->note, 0);
    *out = t;
    return OE_OK;
}

void oe_tlog_free(oe_tlog *t)
{
    if (!t)
        return;
    oe_merkle_batch_free(&t->batch);
    oe_buf_free(&t->note);
    free(t->leaves);
    free(t);
}

const char *oe_tlog_origin(const oe_tlog *t)
{
    return t->origin;
}

int64_t oe_tlog_id(const oe_tlog *t)
{
    return t->log_id;
}

uint64_t oe_tlog_size(const oe_tlog *t)
{
    return t->committed.size;
}

/* "key": string or null, */
static int put_str(oe_buf *out, const char *key, const char *v)
{
    if (oe_buf_putc(out, '"') || oe_buf_puts(out, key) || oe_buf_puts(out, "\":"))
        return 1;
    if (!v)
        return oe_buf_puts(out, "null") != OE_OK;
    return oe_json_dump_string(out, v, strlen(v)) != OE_OK;
}

/* RFC 3339 UTC with microseconds: 2026-12-06T07:30:00.123456Z. */
static void rfc3339(double t, char out[40])
{
    long long us = llround(t * 1e6);
    long long s = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    long frac = (long)(us - s * 1000000);
    time_t tt = (time_t)s;
    struct tm tm;
    gmtime_r(&tt, &tm);
    snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

oe_rc oe_tlog_leaf(const oe_tlog_entry *e, oe_buf *out)
{
    size_t start = out->len;
    char when[40], num[32];
    rfc3339(e->recorded_at, when);
    snprintf(num, sizeof num, "%llu", (unsigned long long)e->log_index);
    int failed = oe_buf_putc(out, '{') || put_str(out, "action", e->action) ||
                 oe_buf_putc(out, ',') || put_str(out, "approval_id", e->approval_id) ||
                 oe_buf_puts(out, e->approved ? ",\"approved\":true," : ",\"approved\":false,") ||
                 put_str(out, "detail", e->detail) || oe_buf_putc(out, ',') ||
                 put_str(out, "error_code", e->error_code) || oe_buf_putc(out, ',') ||
                 put_str(out, "id", e->id) || oe_buf_puts(out, ",\"log_index\":") ||
                 oe_buf_puts(out, num) || oe_buf_putc(out, ',') ||
                 put_str(out, "nonce", e->nonce) || oe_buf_putc(out, ',') ||
                 put_str(out, "receipt", e->receipt) || oe_buf_putc(out, ',') ||
                 put_str(out, "recorded_at", when) || oe_buf_putc(out, ',') ||
                 put_str(out, "request_hash", e->request_hash) || oe_buf_putc(out, ',') ||
                 put_str(out, "result", e->result) || oe_buf_putc(out, ',') ||
                 put_str(out, "status", e->rejected ? "rejected" : "executed") ||
                 oe_buf_putc(out, ',') || put_str(out, "tenant", e->tenant ? e->tenant : "") ||
                 oe_buf_putc(out, '}');
    if (!failed)
        return OE_OK;
    int rc = oe_buf_failed(out) ? oe_buf_failed(out) : OE_EINVAL;
    if (out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

void oe_tlog_begin(oe_tlog *t)
{
    oe_tlog_abort(t);
}

uint64_t oe_tlog_next(const oe_tlog *t)
{
    return t->pending.size;
}

oe_rc oe_tlog_append(oe_tlog *t, const char *leaf, size_t len)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        void *grown = realloc(t->leaves, cap * sizeof *t->leaves);
        if (!grown)
            return OE_ENOMEM;
        t->leaves = grown;
        t->cap = cap;
    }
    oe_merkle_leaf_hash(leaf, len, t->leaves[t->n]);
    oe_rc rc = oe_merkle_compact_append(&t->pending, t->leaves[t->n]);
    if (rc == OE_OK)
        t->n++;
    return rc;
}

oe_rc oe_tlog_seal(oe_tlog *t, oe_store *store, double now, char *err, size_t errlen)
{
    if (t->n == 0)
        return OE_OK;
    oe_merkle_batch_free(&t->batch);
    oe_rc rc = oe_merkle_batch_build(&t->batch, &t->committed,
                                      (const unsigned char(*)[32])t->leaves, t->n);
    oe_checkpoint_row row = {.log_id = t->log_id,
                             .from_size = t->committed.size,
                             .state = &t->pending,
                             .created_at = now};
    if (rc == OE_OK)
        rc = oe_merkle_compact_root(&t->pending, row.root);
    if (rc != OE_OK) {
        snprintf(err, errlen, "%s while sealing a batch of the receipts log", oe_strerror(rc));
        return rc;
    }
    oe_buf text;
    oe_buf_init(&text, 0);
    rc = oe_checkpoint_text(t->origin, t->pending.size, row.root, &text);
    oe_buf_reset(&t->note);
    if (rc == OE_OK)
        rc = oe_note_sign(t->signer, t->origin, text.data, text.len, &t->note, err, errlen);
    else
        snprintf(err, errlen, "%s while writing a checkpoint", oe_strerror(rc));
    oe_buf_free(&text);
    if (rc != OE_OK)
        return rc;
    row.note = t->note.data;
    rc = oe_store_insert_checkpoint(store, &row, err, errlen);
    if (rc == OE_EDUP_LOG)
        snprintf(err, errlen,
                 "the receipts log %s already has a checkpoint from size %llu: another process "
                 "signs with this key; give each writer a key of its own",
                 t->origin, (unsigned long long)row.from_size);
    if (rc == OE_OK)
        t->sealed = 1;
    return rc;
}

void oe_tlog_commit(oe_tlog *t)
{
    t->committed = t->pending;
    t->n = 0;
}

void oe_tlog_abort(oe_tlog *t)
{
    t->pending = t->committed;
    t->n = 0;
    t->sealed = 0;
}

oe_rc oe_tlog_proof(oe_tlog *t, uint64_t index, const char *leaf, size_t len, oe_buf *out)
{
    if (!t->sealed || index < t->batch.base.size || index >= t->batch.size)
        return OE_EINVAL;
    unsigned char path[OE_MERKLE_MAX_INCLUSION][32];
    size_t n = 0;
    oe_rc rc = oe_merkle_inclusion_proof_from(oe_merkle_batch_subtree, &t->batch, t->batch.size,
                                              index, path, &n);
    if (rc != OE_OK)
        return rc;
    size_t start = out->len;
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)index);
    int failed = oe_buf_puts(out, "{\"checkpoint\":") ||
                 oe_json_dump_string(out, t->note.data, t->note.len) ||
                 oe_buf_puts(out, ",\"inclusion\":[");
    for (size_t i = 0; i < n && !failed; i++) {
        char b64[48];
        oe_base64_encode(path[i], 32, b64, sizeof b64);
        failed = (i && oe_buf_putc(out, ',')) || oe_buf_putc(out, '"') || oe_buf_puts(out, b64) ||
                 oe_buf_putc(out, '"');
    }
    failed = failed || oe_buf_puts(out, "],\"leaf\":") || oe_json_dump_string(out, leaf, len) ||
             oe_buf_puts(out, ",\"log_index\":") || oe_buf_puts(out, num) ||
             oe_buf_puts(out, ",\"log_origin\":") ||
             oe_json_dump_string(out, t->origin, strlen(t->origin)) || oe_buf_putc(out, '}');
    if (!failed)
        return OE_OK;
    rc = oe_buf_failed(out) ? oe_buf_failed(out) : OE_EINVAL;
    if (out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}
