/* The writer's receipts log: see tlog.h. */
#include "tlog.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "digest.h"
#include "ids.h"
#include "json.h"
#include "proofs.h"

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
    oe_buf note;      /* after the seal: the signed checkpoint */
    oe_buf note_json; /* ... as a JSON string literal, for every proof */
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
    oe_buf_init(&t->note_json, 0);
    *out = t;
    return OE_OK;
}

void oe_tlog_free(oe_tlog *t)
{
    if (!t)
        return;
    oe_merkle_batch_free(&t->batch);
    oe_buf_free(&t->note);
    oe_buf_free(&t->note_json);
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

/* The proleptic Gregorian date of day z (days since 1970-01-01), by
 * H. Hinnant's civil_from_days: arithmetic only (gmtime_r takes the C
 * library's time-zone lock, and every leaf has a date). */
static void civil_from_days(long long z, long long *y, int *m, int *d)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;                                      /* [0, 146096] */
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    long long mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* RFC 3339 UTC with microseconds: 2026-12-06T07:30:00.123456Z. A time no
 * clock gives (a changed row's, read back by ledger audit): not a number,
 * or so far off that its microseconds do not fit 64 bits, is written as
 * the number it is ("nan", "1e+300"), never as a date. */
static void rfc3339(double t, char out[64])
{
    if (!(t > -9e12 && t < 9e12)) {
        snprintf(out, 64, "%.17g", t);
        return;
    }
    long long us = llround(t * 1e6);
    long long s = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    long frac = (long)(us - s * 1000000);
    long long days = s >= 0 ? s / 86400 : -((-s + 86399) / 86400), sod = s - days * 86400;
    long long year;
    int mon, mday;
    civil_from_days(days, &year, &mon, &mday);
    int hour = (int)(sod / 3600), min = (int)(sod / 60 % 60), sec = (int)(sod % 60);
    if (year < 0 || year > 9999) { /* not a ledger's time; printed all the same */
        snprintf(out, 64, "%04lld-%02d-%02dT%02d:%02d:%02d.%06ldZ", year, mon, mday, hour, min, sec,
                 frac);
        return;
    }
    /* Every leaf has one: digits by hand, not snprintf. */
    const int parts[] = {(int)year, mon, mday, hour, min, sec};
    const int widths[] = {4, 2, 2, 2, 2, 2};
    const char seps[] = "--T::.";
    char *p = out;
    for (int i = 0; i < 6; i++) {
        for (int d = widths[i] - 1, v = parts[i]; d >= 0; d--, v /= 10)
            p[d] = (char)('0' + v % 10);
        p += widths[i];
        *p++ = seps[i];
    }
    for (int d = 5; d >= 0; d--, frac /= 10)
        p[d] = (char)('0' + frac % 10);
    p[6] = 'Z';
    p[7] = '\0';
}

#define TEXT(s) s, sizeof(s) - 1

oe_rc oe_tlog_leaf(const oe_tlog_entry *e, oe_buf *out)
{
    char when[64], index[24];
    rfc3339(e->recorded_at, when);
    oe_u64_text(e->log_index, index);
    /* The fields in key order, each with the text before its value: a
     * string (NULL: null), or a literal (approved, log_index) as it is.
     * action_code_hash only when a Lua action ran, so that every other
     * entry's leaf stays as it was before the field existed. */
    struct field {
        const char *pre;
        size_t pre_len;
        const char *v;
        int literal;
        size_t len;
    } f[] = {
        {TEXT("{\"action\":"), e->action, 0, 0},
        {TEXT(",\"action_code_hash\":"), e->action_code_hash, 0, 0},
        {TEXT(",\"approval_id\":"), e->approval_id, 0, 0},
        {TEXT(",\"approved\":"), e->approved ? "true" : "false", 1, 0},
        {TEXT(",\"detail\":"), e->detail, 0, 0},
        {TEXT(",\"error_code\":"), e->error_code, 0, 0},
        {TEXT(",\"id\":"), e->id, 0, 0},
        {TEXT(",\"log_index\":"), index, 1, 0},
        {TEXT(",\"nonce\":"), e->nonce, 0, 0},
        {TEXT(",\"receipt\":"), e->receipt, 0, 0},
        {TEXT(",\"recorded_at\":"), when, 0, 0},
        {TEXT(",\"request_hash\":"), e->request_hash, 0, 0},
        {TEXT(",\"result\":"), e->result, 0, 0},
        {TEXT(",\"status\":"), e->rejected ? "rejected" : "executed", 0, 0},
        {TEXT(",\"tenant\":"), e->tenant ? e->tenant : "", 0, 0},
    };
    enum { NFIELDS = sizeof f / sizeof f[0], CODE_HASH = 1 };
    /* Room for all of it, made once (oe_json_string_room); then written in place. */
    size_t need = 1;
    for (size_t i = 0; i < NFIELDS; i++) {
        if (i == CODE_HASH && !f[i].v)
            continue;
        f[i].len = f[i].v ? strlen(f[i].v) : 0;
        need += f[i].pre_len + (!f[i].v        ? 4
                                : f[i].literal ? f[i].len
                                               : oe_json_string_room(f[i].v, f[i].len));
    }
    oe_rc rc = oe_buf_room(out, need);
    if (rc != OE_OK)
        return rc;
    char *p = out->data + out->len;
    for (size_t i = 0; i < NFIELDS; i++) {
        if (i == CODE_HASH && !f[i].v)
            continue;
        memcpy(p, f[i].pre, f[i].pre_len);
        p += f[i].pre_len;
        if (!f[i].v) {
            memcpy(p, "null", 4);
            p += 4;
        } else if (f[i].literal) {
            memcpy(p, f[i].v, f[i].len);
            p += f[i].len;
        } else if (!(p = oe_json_put_string(p, f[i].v, f[i].len))) {
            out->data[out->len] = '\0'; /* a string that is not UTF-8: out as it was */
            return OE_EINVAL;
        }
    }
    *p++ = '}';
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
    return OE_OK;
}

oe_rc oe_tlog_begin(oe_tlog *t, size_t n)
{
    oe_tlog_abort(t);
    if (n > t->cap) {
        void *grown = realloc(t->leaves, n * sizeof *t->leaves);
        if (!grown)
            return OE_ENOMEM;
        t->leaves = grown;
        t->cap = n;
    }
    return OE_OK;
}

uint64_t oe_tlog_next(const oe_tlog *t)
{
    return t->committed.size + t->n;
}

oe_rc oe_tlog_reserve(oe_tlog *t, uint64_t *index)
{
    /* Never more than oe_tlog_begin made places for: the leaves may be
     * set on other threads meanwhile, so they do not move. */
    if (t->n == t->cap)
        return OE_ELIMIT;
    *index = t->committed.size + t->n++;
    return OE_OK;
}

void oe_tlog_set_leaf(oe_tlog *t, uint64_t index, const char *leaf, size_t len)
{
    oe_merkle_leaf_hash(leaf, len, t->leaves[index - t->committed.size]);
}

oe_rc oe_tlog_seal(oe_tlog *t, oe_store *store, double now, char *err, size_t errlen)
{
    if (t->n == 0)
        return OE_OK;
    /* The batch's leaves join the tree, in order: its nodes (every
     * proof's hashes), and from them the new compact range and root. */
    oe_merkle_batch_free(&t->batch);
    oe_rc rc = oe_merkle_batch_build(&t->batch, &t->committed,
                                     (const unsigned char(*)[32])t->leaves, t->n);
    oe_checkpoint_row row = {.log_id = t->log_id,
                             .from_size = t->committed.size,
                             .state = &t->pending,
                             .leaves = (const unsigned char(*)[32])t->leaves,
                             .created_at = now};
    if (rc == OE_OK) {
        oe_merkle_batch_compact(&t->batch, &t->pending);
        rc = oe_merkle_batch_root(&t->batch, row.root);
    }
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
    oe_buf_reset(&t->note_json);
    rc = oe_json_dump_string(&t->note_json, t->note.data, t->note.len);
    if (rc != OE_OK) {
        snprintf(err, errlen, "%s while writing a checkpoint", oe_strerror(rc));
        return rc;
    }
    row.note = t->note.data;
    rc = oe_store_insert_checkpoint(store, &row, err, errlen);
    if (rc == OE_EDUP_LOG)
        oe_tlog_taken(t, err, errlen);
    if (rc == OE_OK)
        t->sealed = 1;
    return rc;
}

void oe_tlog_taken(const oe_tlog *t, char *err, size_t errlen)
{
    snprintf(err, errlen,
             "the receipts log %s grew past size %llu in another process: another process "
             "signs with this key; give each writer a key of its own",
             t->origin, (unsigned long long)t->committed.size);
}

const char *oe_tlog_note(const oe_tlog *t, size_t *len)
{
    *len = t->sealed ? t->note.len : 0;
    return t->sealed ? t->note.data : NULL;
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
    size_t path[OE_MERKLE_MAX_INCLUSION], n = 0;
    oe_rc rc = oe_merkle_batch_path(&t->batch, index, path, &n);
    if (rc != OE_OK)
        return rc;
    const char *texts[OE_MERKLE_MAX_INCLUSION];
    for (size_t i = 0; i < n; i++)
        texts[i] = t->batch.text[path[i]];
    return oe_proof_render(t->origin, t->note_json.data, t->note_json.len, index, texts, n, leaf,
                           len, out);
}

oe_rc oe_tlog_leaf_of_execution(const oe_execution *rec, oe_buf *out)
{
    oe_tlog_entry le = {
        .id = rec->id,
        .nonce = rec->nonce,
        .action = rec->action,
        .request_hash = rec->request_hash,
        .approved = rec->approved,
        .result = rec->result_json,
        .receipt = rec->receipt,
        .approval_id = rec->approval_id,
        .action_code_hash = rec->action_code_hash[0] ? rec->action_code_hash : NULL,
        .tenant = rec->tenant_id,
        .recorded_at = rec->created_at,
        .log_index = (uint64_t)rec->log_index,
    };
    return oe_tlog_leaf(&le, out);
}

oe_rc oe_tlog_leaf_of_rejection(const oe_rejection *rec, oe_buf *out)
{
    oe_tlog_entry le = {
        .nonce = rec->nonce ? rec->nonce : "",
        .action = rec->action ? rec->action : "",
        .request_hash = rec->request_hash ? rec->request_hash : "",
        .rejected = 1,
        .error_code = rec->error_code,
        .detail = rec->detail,
        .action_code_hash = rec->action_code_hash,
        .tenant = rec->tenant_id,
        .recorded_at = rec->created_at,
        .log_index = (uint64_t)rec->log_index,
    };
    return oe_tlog_leaf(&le, out);
}

int oe_tlog_pending(const oe_tlog *t, const oe_execution *rec)
{
    return rec->log_id == t->log_id && (uint64_t)rec->log_index >= t->committed.size;
}

/* The string value of key in object o: 1 and *out (NULL for null), or 0
 * when absent or of another type. */
static int get_text(const oe_json *o, const char *key, const char **out, size_t *len)
{
    const oe_json *v = oe_json_get(o, key);
    if (!v)
        return 0;
    if (v->type == OE_JSON_NULL) {
        *out = NULL;
        *len = 0;
        return 1;
    }
    if (v->type != OE_JSON_STRING || memchr(v->str, '\0', v->len))
        return 0;
    *out = v->str;
    *len = v->len;
    return 1;
}

const char oe_tlog_absent[] = "";

/* The leaf's field key equals the receipt's claim (both null, or the same
 * text), or the receipt claims nothing of it. */
static int same(const oe_json *leaf, const char *key, const char *claim)
{
    const char *v;
    size_t n;
    if (!get_text(leaf, key, &v, &n))
        return 0;
    if (claim == OE_TLOG_ABSENT)
        return 1;
    if (!v || !claim)
        return !v && !claim;
    return strlen(claim) == n && memcmp(v, claim, n) == 0;
}

oe_rc oe_tlog_verify(const oe_tlog_claim *c, const char *proof, size_t len,
                     const unsigned char (*trusted)[32], size_t ntrusted, char *reason, size_t rlen)
{
    return oe_tlog_verify_cached(NULL, c, proof, len, trusted, ntrusted, reason, rlen);
}

/* 1 (and the text's length) when the note with this digest verified
 * before. */
static int note_seen(const oe_tlog_note_cache *cache, const unsigned char digest[32],
                     size_t *text_len)
{
    for (size_t i = 0; cache && i < OE_TLOG_NOTE_CACHE; i++)
        if (cache->used[i] && memcmp(cache->digest[i], digest, 32) == 0) {
            *text_len = cache->text_len[i];
            return 1;
        }
    return 0;
}

static void note_remember(oe_tlog_note_cache *cache, const unsigned char digest[32],
                          size_t text_len)
{
    if (!cache)
        return;
    size_t i = cache->next++ % OE_TLOG_NOTE_CACHE;
    memcpy(cache->digest[i], digest, 32);
    cache->text_len[i] = text_len;
    cache->used[i] = 1;
}

oe_rc oe_tlog_verify_cached(oe_tlog_note_cache *cache, const oe_tlog_claim *c, const char *proof,
                            size_t len, const unsigned char (*trusted)[32], size_t ntrusted,
                            char *reason, size_t rlen)
{
    char perr[200];
    oe_json_doc *doc = NULL, *leaf_doc = NULL;
    oe_rc rc = OE_EINVAL;
    if (!proof) {
        snprintf(reason, rlen, "no proof: the receipt is not signed");
        return OE_EINVAL;
    }
    int prc = oe_json_parse(proof, len, 0, &doc, perr, sizeof perr);
    if (prc != OE_OK) {
        snprintf(reason, rlen, "proof is not JSON: %s", perr);
        return prc == OE_ENOMEM ? OE_ENOMEM : OE_EINVAL;
    }
    const oe_json *p = oe_json_root(doc);
    const oe_json *incl = oe_json_get(p, "inclusion"), *idx = oe_json_get(p, "log_index");
    const char *note, *leaf, *origin;
    size_t note_len, leaf_len, origin_len;
    if (p->type != OE_JSON_OBJECT || !get_text(p, "checkpoint", &note, &note_len) || !note ||
        !get_text(p, "leaf", &leaf, &leaf_len) || !leaf ||
        !get_text(p, "log_origin", &origin, &origin_len) || !origin || !incl ||
        incl->type != OE_JSON_ARRAY || !idx || idx->type != OE_JSON_INT || !idx->fits_int64 ||
        idx->i64 < 0) {
        snprintf(reason, rlen,
                 "proof lacks a field: checkpoint, inclusion, leaf, log_index or log_origin");
        goto out;
    }
    uint64_t index = (uint64_t)idx->i64;
    size_t text_len = 0;
    unsigned char digest[32];
    if (cache)
        oe_sha256(note, note_len, digest);
    if (!note_seen(cache, digest, &text_len)) {
        if (oe_note_verify(note, note_len, trusted, ntrusted, &text_len, perr, sizeof perr) !=
            OE_OK) {
            snprintf(reason, rlen, "checkpoint: %s", perr);
            goto out;
        }
        note_remember(cache, digest, text_len);
    }
    char cp_origin[OE_TLOG_ORIGIN_MAX + 1];
    uint64_t size;
    unsigned char root[32];
    if (oe_checkpoint_parse(note, text_len, cp_origin, sizeof cp_origin, &size, root, perr,
                            sizeof perr) != OE_OK) {
        snprintf(reason, rlen, "checkpoint: %s", perr);
        goto out;
    }
    if (strlen(cp_origin) != origin_len || memcmp(cp_origin, origin, origin_len) != 0) {
        snprintf(reason, rlen, "the checkpoint is of log %s, not of the proof's log", cp_origin);
        goto out;
    }
    if (incl->len > OE_MERKLE_MAX_INCLUSION) {
        snprintf(reason, rlen, "inclusion path of %u hashes is too long", (unsigned)incl->len);
        goto out;
    }
    unsigned char path[OE_MERKLE_MAX_INCLUSION][32], lh[32];
    for (size_t i = 0; i < incl->len; i++) {
        const oe_json *h = &incl->items[i];
        if (h->type != OE_JSON_STRING || h->len != 44 ||
            oe_base64_decode(h->str, h->len, path[i], 32) != 32) {
            snprintf(reason, rlen, "inclusion hash %zu is not base64 of 32 bytes", i);
            goto out;
        }
    }
    oe_merkle_leaf_hash(leaf, leaf_len, lh);
    if (oe_merkle_verify_inclusion(lh, index, size, (const unsigned char(*)[32])path, incl->len,
                                   root) != OE_OK) {
        snprintf(reason, rlen,
                 "the leaf is not entry %llu of the checkpoint's tree of %llu (inclusion path "
                 "does not lead to its root)",
                 (unsigned long long)index, (unsigned long long)size);
        goto out;
    }
    prc = oe_json_parse(leaf, leaf_len, 0, &leaf_doc, perr, sizeof perr);
    if (prc != OE_OK) {
        rc = prc == OE_ENOMEM ? OE_ENOMEM : OE_EINVAL;
        snprintf(reason, rlen, "leaf is not JSON: %s", perr);
        goto out;
    }
    const oe_json *l = oe_json_root(leaf_doc);
    const oe_json *li = oe_json_get(l, "log_index"), *ap = oe_json_get(l, "approved");
    if (l->type != OE_JSON_OBJECT || !li || li->type != OE_JSON_INT || !li->fits_int64 ||
        (uint64_t)li->i64 != index) {
        snprintf(reason, rlen, "the leaf's log_index is not the proof's");
        goto out;
    }
    const char *status = c->status ? c->status : "";
    int executed = strcmp(status, "executed") == 0 || strcmp(status, "replayed") == 0;
    if (!same(l, "status", executed ? "executed" : status)) {
        snprintf(reason, rlen, "status %s is not the leaf's", status);
        goto out;
    }
    static const char *const names[] = {"id",      "nonce",      "action", "request_hash", "result",
                                        "receipt", "error_code", "detail", "approval_id"};
    const char *claims[] = {c->id,      c->nonce,      c->action, c->request_hash, c->result,
                            c->receipt, c->error_code, c->detail, c->approval_id};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!same(l, names[i], claims[i])) {
            snprintf(reason, rlen, "%s is not the leaf's", names[i]);
            goto out;
        }
    }
    /* action_code_hash: only a Lua action's leaf has it (absent is null). */
    const char *code = NULL;
    size_t code_len = 0;
    if (oe_json_get(l, "action_code_hash") && !get_text(l, "action_code_hash", &code, &code_len)) {
        snprintf(reason, rlen, "the leaf's action_code_hash is not a string");
        goto out;
    }
    if (c->action_code_hash != OE_TLOG_ABSENT &&
        (!code || !c->action_code_hash ? code || c->action_code_hash
                                       : strlen(c->action_code_hash) != code_len ||
                                             memcmp(code, c->action_code_hash, code_len) != 0)) {
        snprintf(reason, rlen, "action_code_hash is not the leaf's");
        goto out;
    }
    if (!ap || (ap->type != OE_JSON_TRUE && ap->type != OE_JSON_FALSE) ||
        (c->approved >= 0 && (ap->type == OE_JSON_TRUE) != (c->approved != 0))) {
        snprintf(reason, rlen, "approved is not the leaf's");
        goto out;
    }
    if (executed) {
        char want[65];
        if (!c->id || !c->result || !c->receipt || c->id == OE_TLOG_ABSENT ||
            c->result == OE_TLOG_ABSENT || c->receipt == OE_TLOG_ABSENT) {
            snprintf(reason, rlen, "an execution's receipt needs id, result and receipt");
            goto out;
        }
        oe_receipt_hash(c->id, c->result, strlen(c->result), want);
        if (strcmp(want, c->receipt) != 0) {
            snprintf(reason, rlen, "receipt hash does not match sha256(id:result)");
            goto out;
        }
    }
    rc = OE_OK;
out:
    oe_json_doc_free(leaf_doc);
    oe_json_doc_free(doc);
    return rc;
}

/* A claimed text field: OE_TLOG_ABSENT, NULL for null, the string, or
 * OE_TLOG_ABSENT... for a value of another type (*bad set). */
static const char *claim_text(const oe_json *o, const char *key, int *bad)
{
    const oe_json *v = oe_json_get(o, key);
    if (!v)
        return OE_TLOG_ABSENT;
    if (v->type == OE_JSON_NULL)
        return NULL;
    if (v->type != OE_JSON_STRING || memchr(v->str, '\0', v->len)) {
        *bad = 1;
        return OE_TLOG_ABSENT;
    }
    return v->str;
}

oe_rc oe_tlog_verify_json(const oe_json *r, const unsigned char (*trusted)[32], size_t ntrusted,
                          char *reason, size_t rlen)
{
    if (!r || r->type != OE_JSON_OBJECT) {
        snprintf(reason, rlen, "a receipt is a JSON object");
        return OE_EINVAL;
    }
    int bad = 0;
    oe_tlog_claim c = {
        .id = claim_text(r, "id", &bad),
        .nonce = claim_text(r, "nonce", &bad),
        .action = claim_text(r, "action", &bad),
        .request_hash = claim_text(r, "request_hash", &bad),
        .status = claim_text(r, "status", &bad),
        .receipt = claim_text(r, "receipt", &bad),
        .error_code = claim_text(r, "error_code", &bad),
        .detail = claim_text(r, "detail", &bad),
        .approval_id = claim_text(r, "approval_id", &bad),
        .action_code_hash = claim_text(r, "action_code_hash", &bad),
        .approved = -1,
    };
    const oe_json *ap = oe_json_get(r, "approved");
    if (ap && (ap->type == OE_JSON_TRUE || ap->type == OE_JSON_FALSE))
        c.approved = ap->type == OE_JSON_TRUE;
    else if (ap)
        bad = 1;
    /* The result text is claimed under two names: result_json (the text)
     * and result (the text, or in an /execute answer the value itself, as
     * json.dumps prints it). Each the receipt carries is a claim; two
     * that differ cannot both be the leaf's. */
    oe_buf text;
    oe_buf_init(&text, 0);
    const char *by_text = claim_text(r, "result_json", &bad);
    const oe_json *res = oe_json_get(r, "result");
    int value = res && res->type != OE_JSON_STRING && res->type != OE_JSON_NULL;
    const char *by_result = value ? OE_TLOG_ABSENT : claim_text(r, "result", &bad);
    /* result as the value itself (an /execute answer), printed as
     * json.dumps does: anything but a string, or a string that is not
     * result_json's text (then perhaps the value, when the result is a
     * string). */
    if (value || (by_text && by_text != OE_TLOG_ABSENT && by_result &&
                  by_result != OE_TLOG_ABSENT && strcmp(by_text, by_result) != 0)) {
        int drc = oe_json_dump(&text, res, OE_JSON_DEFAULT);
        if (drc != OE_OK) {
            oe_buf_free(&text);
            snprintf(reason, rlen, "result: %s", oe_strerror(drc));
            return drc == OE_ENOMEM ? OE_ENOMEM : OE_EINVAL;
        }
        by_result = text.data;
    }
    if (by_text != OE_TLOG_ABSENT && by_result != OE_TLOG_ABSENT &&
        (!by_text || !by_result ? by_text != by_result : strcmp(by_text, by_result) != 0)) {
        oe_buf_free(&text);
        snprintf(reason, rlen, "result and result_json differ: not one result");
        return OE_EINVAL;
    }
    c.result = by_text != OE_TLOG_ABSENT ? by_text : by_result;
    /* An /execute rejection's answer, {"detail", "proof"}, stands for the
     * rejected receipt its leaf holds. */
    if (c.status == OE_TLOG_ABSENT && c.detail && c.detail != OE_TLOG_ABSENT &&
        oe_json_get(r, "proof") && c.id == OE_TLOG_ABSENT && c.receipt == OE_TLOG_ABSENT)
        c.status = "rejected";
    oe_rc rc;
    if (bad || !c.status || c.status == OE_TLOG_ABSENT) {
        snprintf(reason, rlen,
                 "a receipt's fields are strings or null, approved a boolean, and "
                 "status is present");
        rc = OE_EINVAL;
    } else {
        const oe_json *proof = oe_json_get(r, "proof");
        oe_buf p;
        oe_buf_init(&p, 0);
        if (!proof || proof->type == OE_JSON_NULL) {
            rc = oe_tlog_verify(&c, NULL, 0, trusted, ntrusted, reason, rlen);
        } else if (proof->type != OE_JSON_OBJECT) {
            snprintf(reason, rlen, "proof: must be an object");
            rc = OE_EINVAL;
        } else if ((rc = oe_json_dump(&p, proof, OE_JSON_COMPACT)) != OE_OK) {
            snprintf(reason, rlen, "proof: %s", oe_strerror(rc));
            rc = rc == OE_ENOMEM ? OE_ENOMEM : OE_EINVAL;
        } else {
            rc = oe_tlog_verify(&c, p.data, p.len, trusted, ntrusted, reason, rlen);
        }
        oe_buf_free(&p);
    }
    oe_buf_free(&text);
    return rc;
}
