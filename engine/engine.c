/* The engine: one batch of requests -> outcomes inside one store
 * transaction (engine.h). An oe_engine is created once by main and shared:
 * oe_engine_process serialises batches with a mutex (one writer), the rest
 * of its state is read-only after oe_engine_new. The caller owns the batch
 * items and their requests; the engine fills their outcomes. A resource
 * failure (memory, the store) fails the whole batch: nothing of it is
 * committed and no outcome may be reported. */
#include "engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actions.h"
#include "approval.h"
#include "clock.h"
#include "ids.h"
#include "lua_actions.h"
#include "metrics.h"
#include "pool.h"
#include "proofs.h"
#include "status.h"
#include "tlog.h"

/* The registered actions, with the allow-list resolved against them:
 * replaced whole when the Lua actions are reloaded (oe_engine_reload_actions). */
typedef struct registry {
    /* The names: the built-ins' (oe_actions order), then the Lua actions'
     * (their set's order). */
    const char **names;
    size_t nnames;
    const oe_lua_actions *lua; /* borrowed; NULL: no Lua actions */
    /* The interpreter of the Lua actions. Actions run only in process_one,
     * under lock, on whichever thread runs the batch (the Kafka worker's,
     * or the executor's group-commit thread for local /execute): one
     * thread at a time uses it, so one state serves them all. */
    oe_lua_vm *vm;
    int restricted;           /* an allow-list is configured */
    unsigned char *allowed;   /* restricted: allowed[i] for names[i] */
    const char **allow_order; /* restricted: the names as configured, no repeats */
    size_t nallow;
} registry;

struct oe_engine {
    int clawshield;
    char *tenant;
    char *allow_text; /* OPENEXEC_ALLOWED_ACTIONS as configured ("" when open) */
    registry reg;     /* written under lock and reg_lock; read under either */
    pthread_rwlock_t reg_lock;
    double max_age, max_skew;
    oe_approval_keys *keys;
    oe_store *store;         /* borrowed */
    pthread_mutex_t lock;    /* one batch at a time on the writer */
    oe_pool *pool;           /* helpers for the checks before a batch: cores - 1, at most
                                OE_ENGINE_THREADS - 1 (oe_engine_start) */
    oe_metrics *metrics;     /* borrowed; NULL: commit times not counted */
    int keep_payloads;       /* rows keep the payload (OPENEXEC_LEDGER_PAYLOADS=full) */
    oe_buf payload;          /* the row being recorded's payload (under lock) */
    oe_tlog *tlog;           /* borrowed; NULL: receipts unsigned */
    oe_proof_cache replays;  /* where a replay's proof came from last (under lock) */
    double batch_now;        /* the batch's time, for its leaves (under lock) */
    atomic_int leaf_failure; /* the first failure making a batch's leaves */
    /* Another process appended to the log (OE_EDUP_LOG): every later batch
     * is refused with this reason (fail closed; the log is not ours). */
    atomic_int log_taken;
    char log_taken_reason[512];
};

static const char *const status_names[OE_STATUS_COUNT] = {"executed", "replayed", "rejected"};

const char *oe_status_name(oe_status s)
{
    return (unsigned)s < OE_STATUS_COUNT ? status_names[s] : "rejected";
}

int oe_status_from_name(const char *name, size_t len, oe_status *out)
{
    for (int k = 0; k < OE_STATUS_COUNT; k++)
        if (strlen(status_names[k]) == len && memcmp(name, status_names[k], len) == 0) {
            *out = (oe_status)k;
            return OE_OK;
        }
    return OE_EINVAL;
}

void oe_outcome_init(oe_outcome *o)
{
    memset(o, 0, sizeof *o);
    oe_buf_init(&o->result_json, OE_RESULT_MAX_BYTES);
    oe_buf_init(&o->leaf, 0);
    oe_buf_init(&o->proof, 0);
}

void oe_outcome_clear(oe_outcome *o)
{
    free(o->approval_id);
    oe_buf_free(&o->result_json);
    oe_buf_free(&o->leaf);
    oe_buf_free(&o->proof);
    oe_outcome_init(o);
}

/* An outcome's buffers over this are freed rather than kept for the next
 * request in its place. A batch of ordinary requests fits: a leaf of a few
 * hundred bytes, a proof of 1.4 KB. One with a large result has a result,
 * leaf and proof of up to OE_RESULT_MAX_BYTES and more each: kept, every
 * place of the caller's batches that ever held one would hold them for
 * good (two batches of 5,000 places: gigabytes). */
#define OUTCOME_KEEP_MAX_BYTES (4 << 10)

void oe_outcome_shed(oe_outcome *o)
{
    oe_buf_shed(&o->result_json, OUTCOME_KEEP_MAX_BYTES);
    oe_buf_shed(&o->leaf, OUTCOME_KEEP_MAX_BYTES);
    oe_buf_shed(&o->proof, OUTCOME_KEEP_MAX_BYTES);
}

/* Empties an outcome for reuse, keeping its buffers unless they are large. */
static void outcome_reset(oe_outcome *o)
{
    free(o->approval_id);
    o->approval_id = NULL;
    oe_outcome_shed(o);
    oe_buf_reset(&o->result_json);
    /* The helpers wrote these last, on another CPU; read by length. */
    oe_buf_empty(&o->leaf);
    oe_buf_empty(&o->proof);
    o->logged = o->proof_pending = 0;
    o->status = OE_STATUS_REJECTED;
    o->error = OE_ERR_NONE;
    o->detail[0] = o->id[0] = o->request_hash[0] = o->receipt[0] = o->action_code_hash[0] = '\0';
    o->approved = 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Parses "add, echo" once into a set of registry entries. Items are
 * separated by commas, with optional blanks around them; every item must be
 * the exact name of a registered action (no inner blanks, nothing else), so
 * that a typo fails at start-up instead of silently allowing less or more.
 * Returns OE_OK, or with a reason in err OE_EINVAL (an item that names no
 * registered action, or no item) or OE_ENOMEM. */
static int allow_list_parse(registry *e, const char *list, char *err, size_t errlen)
{
    size_t count = e->nnames;
    const char **names = e->names;
    if (!(e->allowed = calloc(count, 1)) || !(e->allow_order = calloc(count, sizeof(char *)))) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    size_t items = 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *start = p, *end = comma ? comma : p + strlen(p);
        while (start < end && is_space(*start))
            start++;
        while (end > start && is_space(end[-1]))
            end--;
        size_t n = (size_t)(end - start);
        if (n > 0) {
            size_t k = 0;
            while (k < count && !(strlen(names[k]) == n && memcmp(names[k], start, n) == 0))
                k++;
            if (k == count) {
                char known[256] = "";
                for (size_t m = 0; m < count; m++)
                    snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                             m ? ", " : "", names[m]);
                snprintf(err, errlen,
                         "OPENEXEC_ALLOWED_ACTIONS: \"%.*s\" is not a registered action "
                         "(known: %s)",
                         (int)(n > 64 ? 64 : n), start, known);
                return OE_EINVAL;
            }
            if (!e->allowed[k])
                e->allow_order[e->nallow++] = names[k];
            e->allowed[k] = 1;
            items++;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    if (items == 0) {
        snprintf(err, errlen,
                 "OPENEXEC_ALLOWED_ACTIONS: \"%s\" names no action (leave it empty "
                 "to allow every registered action)",
                 list);
        return OE_EINVAL;
    }
    e->restricted = 1;
    return OE_OK;
}

/* Exact membership: the name must be a registered action in the set. */
static int registry_allows(const registry *r, const char *action)
{
    if (!r->restricted)
        return 1;
    for (size_t k = 0; k < r->nnames; k++)
        if (r->allowed[k] && strcmp(r->names[k], action) == 0)
            return 1;
    return 0;
}

int oe_engine_action_allowed(const oe_engine *e, const char *action)
{
    pthread_rwlock_rdlock((pthread_rwlock_t *)&e->reg_lock);
    int allowed = registry_allows(&e->reg, action);
    pthread_rwlock_unlock((pthread_rwlock_t *)&e->reg_lock);
    return allowed;
}

static void registry_free(registry *r)
{
    oe_lua_vm_free(r->vm);
    free(r->names);
    free(r->allowed);
    free(r->allow_order);
    memset(r, 0, sizeof *r);
}

/* Makes the registry of the built-ins and set's actions (set borrowed, may
 * be NULL), with its interpreter and the allow-list allow (NULL or "":
 * open). Returns OE_OK, or with a reason in err OE_EINVAL (the allow-list
 * names an action the registry has not), OE_ENOMEM, or the interpreter's
 * failure. */
static int registry_build(registry *r, const oe_lua_actions *set, const char *allow, char *err,
                          size_t errlen)
{
    memset(r, 0, sizeof *r);
    size_t builtins;
    const oe_action *actions = oe_actions(&builtins);
    r->lua = set;
    r->nnames = builtins + oe_lua_actions_count(set);
    if (!(r->names = calloc(r->nnames, sizeof *r->names))) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    for (size_t k = 0; k < r->nnames; k++)
        r->names[k] = k < builtins ? actions[k].name : oe_lua_action_name(set, k - builtins);
    int rc = OE_OK;
    if (oe_lua_actions_count(set) > 0)
        rc = oe_lua_vm_new(set, &r->vm, err, errlen);
    if (rc == OE_OK && allow && allow[0])
        rc = allow_list_parse(r, allow, err, errlen);
    if (rc != OE_OK)
        registry_free(r);
    return rc;
}

int oe_engine_reload_actions(oe_engine *e, const oe_lua_actions *set, char *err, size_t errlen)
{
    registry next;
    int rc = registry_build(&next, set, e->allow_text, err, errlen);
    if (rc != OE_OK)
        return rc;
    /* After the batch in hand (lock), and while no thread reads the names
     * (reg_lock): every later request sees the new set, none a mix. */
    pthread_mutex_lock(&e->lock);
    pthread_rwlock_wrlock(&e->reg_lock);
    registry old = e->reg;
    e->reg = next;
    pthread_rwlock_unlock(&e->reg_lock);
    pthread_mutex_unlock(&e->lock);
    registry_free(&old);
    return OE_OK;
}

void oe_engine_actions_read(const oe_engine *e, int lock)
{
    if (lock)
        pthread_rwlock_rdlock((pthread_rwlock_t *)&e->reg_lock);
    else
        pthread_rwlock_unlock((pthread_rwlock_t *)&e->reg_lock);
}

size_t oe_engine_actions(const oe_engine *e, const char *const **names,
                         const struct oe_lua_actions **lua)
{
    *names = e->reg.names;
    *lua = e->reg.lua;
    return e->reg.nnames;
}

int oe_engine_new(const oe_engine_config *cfg, oe_store *store, oe_engine **out, char *err,
                  size_t errlen)
{
    oe_engine *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    int rc = OE_OK;
    pthread_mutex_init(&e->lock, NULL);
    pthread_rwlock_init(&e->reg_lock, NULL);
    /* The CPUs this process may use, else those online. */
    long cores = oe_pool_cpus();
    if (cores < 1)
        cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cores < 1 ? 1 : cores > OE_ENGINE_THREADS ? OE_ENGINE_THREADS : (int)cores;
    if (!(e->pool = oe_pool_new(threads - 1)))
        goto oom;
    e->clawshield = cfg->clawshield;
    e->store = store;
    e->metrics = cfg->metrics;
    e->tlog = cfg->tlog;
    e->keep_payloads = !cfg->payload_hash_only;
    oe_buf_init(&e->payload, 0);
    e->max_age = cfg->max_age > 0 ? cfg->max_age : 300;
    e->max_skew = cfg->max_skew > 0 ? cfg->max_skew : 30;
    e->tenant = strdup(cfg->tenant ? cfg->tenant : "");
    e->allow_text = strdup(cfg->allowed_actions ? cfg->allowed_actions : "");
    if (!e->tenant || !e->allow_text)
        goto oom;
    rc = registry_build(&e->reg, cfg->lua_actions, e->allow_text, err, errlen);
    if (rc == OE_OK)
        rc = oe_approval_keys_new(cfg->secret, cfg->public_key_pem, &e->keys, err, errlen);
    if (rc != OE_OK)
        goto error;
    if (e->clawshield && !oe_approval_keys_present(e->keys)) {
        snprintf(err, errlen,
                 "clawshield mode needs CLAWSHIELD_SECRET_KEY or CLAWSHIELD_PUBLIC_KEY");
        rc = OE_EINVAL;
        goto error;
    }
    *out = e;
    return OE_OK;
oom:
    snprintf(err, errlen, "out of memory");
    rc = OE_ENOMEM;
error:
    oe_engine_free(e);
    return rc;
}

int oe_engine_start(oe_engine *e)
{
    return oe_pool_start(e->pool);
}

int oe_engine_keep_caller(oe_engine *e)
{
    return oe_pool_keep_caller(e->pool);
}

void oe_engine_stop(oe_engine *e)
{
    if (e)
        oe_pool_stop(e->pool);
}

void oe_engine_free(oe_engine *e)
{
    if (!e)
        return;
    oe_pool_free(e->pool);
    oe_approval_keys_free(e->keys);
    registry_free(&e->reg);
    free(e->tenant);
    free(e->allow_text);
    oe_buf_free(&e->payload);
    oe_proof_cache_clear(&e->replays);
    pthread_rwlock_destroy(&e->reg_lock);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

int oe_engine_log_taken(oe_engine *e, char *reason, size_t len)
{
    if (!atomic_load(&e->log_taken))
        return 0;
    pthread_mutex_lock(&e->lock);
    snprintf(reason, len, "%s", e->log_taken_reason);
    pthread_mutex_unlock(&e->lock);
    return 1;
}

int oe_engine_clawshield(const oe_engine *e)
{
    return e->clawshield;
}

int oe_engine_signature_verification(const oe_engine *e)
{
    return e->clawshield && oe_approval_keys_present(e->keys);
}

size_t oe_engine_allow_list(const oe_engine *e, const char *const **names)
{
    *names = e->reg.allow_order;
    return e->reg.restricted ? e->reg.nallow : 0;
}

const oe_approval_keys *oe_engine_approval_keys(const oe_engine *e)
{
    return e->keys;
}

/* The length of the longest prefix of s of at most max bytes that does not
 * split a UTF-8 character, so that a shortened name in a detail stays valid
 * UTF-8 (receipts and JSON answers refuse anything else). */
static int utf8_prefix(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return (int)n;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return (int)max;
}

static void reject(oe_outcome *o, oe_error_code code, const char *detail)
{
    o->status = OE_STATUS_REJECTED;
    o->error = code;
    snprintf(o->detail, sizeof o->detail, "%s", detail);
    o->id[0] = o->receipt[0] = o->action_code_hash[0] = '\0';
    oe_buf_reset(&o->result_json);
    free(o->approval_id);
    o->approval_id = NULL;
    o->approved = 0;
}

/* A store failure as the engine reports it. OE_ERETRY stays apart
 * (oe_engine_process runs the batch again); a ledger that cannot be reached
 * is OE_EUNAVAIL; anything else is OE_ESTORE. */
static int store_failure(int rc)
{
    if (rc == OE_ERETRY || rc == OE_EUNAVAIL || rc == OE_EDUP_LOG)
        return rc;
    return OE_ESTORE;
}

/* Fills o from a stored execution (a replay). Returns OE_OK, or the
 * failure of the copy: the result buffer's (OE_ELIMIT past
 * OE_RESULT_MAX_BYTES, OE_ENOMEM) or OE_ENOMEM. */
static int outcome_from_record(oe_outcome *o, const oe_execution *rec)
{
    o->status = OE_STATUS_REPLAYED;
    memcpy(o->id, rec->id, sizeof o->id);
    memcpy(o->receipt, rec->receipt, sizeof o->receipt);
    memcpy(o->action_code_hash, rec->action_code_hash, sizeof o->action_code_hash);
    o->approved = rec->approved;
    oe_buf_reset(&o->result_json);
    int rc = oe_buf_puts(&o->result_json, rec->result_json);
    if (rc != OE_OK)
        return rc;
    if (rec->approval_id && !(o->approval_id = strdup(rec->approval_id)))
        return OE_ENOMEM;
    return OE_OK;
}

/* check_approval's verdicts; its failures are negative oe_rc codes. */
enum { APPROVAL_ACCEPTED = 0, APPROVAL_REJECTED = 1 };

/* The checks of docs/protocol.md §4 from 3 on (artifact present and allowed are done by
 * the caller). Returns APPROVAL_ACCEPTED, APPROVAL_REJECTED with o
 * rejected, or a failure when there is no verdict (OE_ENOMEM, or a store
 * failure as store_failure reports it; reason in err). */
static int check_approval(oe_engine *e, const oe_batch_item *it, oe_outcome *o, double now,
                          char *err, size_t errlen)
{
    const oe_artifact *a = &it->req.artifact;
    char detail[256];
    if (strcmp(a->action_hash, o->request_hash) != 0) {
        reject(o, OE_ERR_APPROVAL_INVALID,
               "Action hash mismatch: the artifact approves another request");
        return APPROVAL_REJECTED;
    }
    int ed25519 = it->pre.ed25519;
    int sig = it->pre.sig;
    if (sig >= 0)
        snprintf(detail, sizeof detail, "%s", it->pre.detail);
    else
        sig = oe_approval_check_signature(e->keys, a, &ed25519, detail, sizeof detail);
    if (sig == OE_ENOMEM) {
        snprintf(err, errlen, "%s", detail);
        return OE_ENOMEM;
    }
    if (sig != 0) {
        reject(o, OE_ERR_APPROVAL_INVALID, detail);
        return APPROVAL_REJECTED;
    }
    if (e->tenant[0] && strcmp(a->tenant_id, e->tenant) != 0) {
        reject(o, OE_ERR_APPROVAL_INVALID, "Tenant mismatch");
        return APPROVAL_REJECTED;
    }
    /* HMAC artifacts only: the newer clients' Ed25519 artifacts carry no
     * issued_by, and it is not signed, so checking it would prove nothing. */
    if (!ed25519 && (!a->issued_by || strcmp(a->issued_by, "clawshield") != 0)) {
        if (a->issued_by)
            snprintf(detail, sizeof detail, "Unknown issuer: %.*s", utf8_prefix(a->issued_by, 100),
                     a->issued_by);
        else
            snprintf(detail, sizeof detail, "Unknown issuer: issued_by is missing");
        reject(o, OE_ERR_APPROVAL_INVALID, detail);
        return APPROVAL_REJECTED;
    }
    if (oe_approval_check_time(a, ed25519, now, e->max_age, e->max_skew, detail, sizeof detail) !=
        0) {
        reject(o, OE_ERR_APPROVAL_INVALID, detail);
        return APPROVAL_REJECTED;
    }
    int used = oe_store_approval_used(e->store, a->approval_id, it->pre.approval_key, err, errlen);
    if (used < 0)
        return store_failure(used);
    if (used) {
        reject(o, OE_ERR_APPROVAL_INVALID, "Approval already used");
        return APPROVAL_REJECTED;
    }
    return APPROVAL_ACCEPTED;
}

/* Answers from the ledger when the nonce is recorded there: the original
 * outcome (a replay) for the same request, a nonce_conflict for another.
 * Returns 1 when answered, 0 when the nonce is unused, or a failure. */
static int answer_from_ledger(oe_engine *e, const oe_batch_item *it, oe_outcome *o, char *err,
                              size_t errlen)
{
    oe_execution rec;
    int found =
        oe_store_find_by_nonce(e->store, it->req.nonce, it->pre.nonce_key, &rec, err, errlen);
    if (found < 0)
        return store_failure(found);
    if (found == 0)
        return 0;
    int same = strcmp(rec.request_hash, o->request_hash) == 0;
    int rc = same ? outcome_from_record(o, &rec) : OE_OK;
    if (rc != OE_OK) {
        oe_execution_clear(&rec);
        /* "out of memory while reading a replay" for OE_ENOMEM. */
        snprintf(err, errlen, "%s while reading a replay", oe_strerror(rc));
        return rc;
    }
    if (same && e->tlog && rec.log_id > 0) {
        /* A replay carries the original entry's proof: from its batch's
         * checkpoint, or (an entry of this very batch) after the seal. */
        if (oe_tlog_pending(e->tlog, &rec)) {
            rc = oe_tlog_leaf_of_execution(&rec, &o->leaf);
            o->log_index = (uint64_t)rec.log_index;
            o->proof_pending = rc == OE_OK;
            if (rc != OE_OK)
                snprintf(err, errlen, "%s while reading a replay", oe_strerror(rc));
        } else {
            /* The original's proof, in the checkpoint of the batch that
             * appended it (checking the row is still what was signed). */
            rc = oe_proof_of_entry(&e->replays, e->store, &rec, &o->proof, err, errlen);
        }
        if (rc != OE_OK) {
            oe_execution_clear(&rec);
            return rc == OE_ENOMEM ? rc : store_failure(rc);
        }
    }
    oe_execution_clear(&rec);
    if (!same)
        reject(o, OE_ERR_NONCE_CONFLICT, "Nonce already used by a different request");
    return 1;
}

/* The hashed text of a request is kept for its row's payload up to this
 * size (a batch's requests are all alive at once; a longer one is printed
 * again when its row is written). */
#define OE_ENGINE_KEEP_TEXT_MAX ((size_t)16 << 10)

static void keep_text(struct oe_batch_pre *p)
{
    if (p->text.len > OE_ENGINE_KEEP_TEXT_MAX)
        oe_buf_free(&p->text);
}

/* The payload a row keeps: the item's canonical payload (the part of the
 * text its request hash covers, printed once, when hashing), cut past max
 * bytes (oe_cut), in e->payload; NULL when rows keep none. Returns OE_OK,
 * or the failure of printing it with a reason in err: OE_ENOMEM, or
 * OE_ELIMIT or OE_EINVAL as oe_json_dump reports them (the request's
 * hashing, which printed the same payload, has ruled both out). */
static int row_payload(oe_engine *e, const oe_batch_item *it, size_t max, const char **out,
                       char *err, size_t errlen)
{
    *out = NULL;
    if (!e->keep_payloads)
        return OE_OK;
    oe_buf *b = &e->payload;
    if (b->cap > 4 * OE_LEDGER_PAYLOAD_MAX_BYTES)
        oe_buf_free(b); /* the memory of a rare huge payload is not kept */
    oe_buf_reset(b);
    const oe_buf *t = &it->pre.text;
    const oe_request *r = &it->req;
    int rc = t->len > it->pre.payload_off
                 ? oe_buf_append(b, t->data + it->pre.payload_off, t->len - it->pre.payload_off - 1)
             : r->payload ? oe_json_dump(b, r->payload, OE_JSON_COMPACT)
                          : oe_buf_puts(b, "{}");
    if (rc == OE_OK)
        rc = oe_buf_failed(b);
    if (rc != OE_OK) {
        /* "out of memory while keeping a payload" for OE_ENOMEM. */
        snprintf(err, errlen, "%s while keeping a payload", oe_strerror(rc));
        return rc;
    }
    b->len = oe_cut(b->data, b->len, max, b->data);
    *out = b->data;
    return OE_OK;
}

/* The row of o's entry is in: the entry takes its index in the log (the
 * one its row holds); its leaf is made by the helpers meanwhile, or after
 * the batch's rows (the leaf feed). */
static int log_entry(oe_engine *e, oe_outcome *o, char *err, size_t errlen)
{
    int rc = oe_tlog_reserve(e->tlog, &o->log_index);
    if (rc != OE_OK) {
        snprintf(err, errlen, "%s while appending to the receipts log", oe_strerror(rc));
        return rc;
    }
    o->logged = 1;
    return OE_OK;
}

/* The leaf of the entry o records (docs/protocol.md §8): the receipt's fields as its
 * receipt shows them (a rejected request's nonce and action cut as the
 * row keeps them, "" when the request had none), its index and time. */
static oe_rc entry_leaf(const oe_engine *e, const oe_batch_item *it, const oe_outcome *o,
                        double now, oe_buf *out)
{
    const oe_request *r = &it->req;
    int rejected = o->status == OE_STATUS_REJECTED;
    char nonce[OE_ECHO_MAX_BYTES + 1], action[OE_ECHO_MAX_BYTES + 1];
    nonce[0] = action[0] = '\0';
    if (rejected && r->nonce)
        oe_echo_cut(r->nonce, strlen(r->nonce), nonce);
    if (rejected && r->action)
        oe_echo_cut(r->action, strlen(r->action), action);
    oe_tlog_entry le = {
        .id = rejected ? NULL : o->id,
        .nonce = rejected ? nonce : r->nonce,
        .action = rejected ? action : r->action,
        .request_hash = o->request_hash,
        .rejected = rejected,
        .approved = o->approved,
        .result = rejected ? NULL : o->result_json.data,
        .receipt = rejected ? NULL : o->receipt,
        .error_code = rejected ? oe_error_code_name(o->error) : NULL,
        .detail = rejected ? o->detail : NULL,
        .approval_id = o->approval_id,
        .action_code_hash = o->action_code_hash[0] ? o->action_code_hash : NULL,
        .tenant = e->tenant,
        .recorded_at = now,
        .log_index = o->log_index,
    };
    return oe_tlog_leaf(&le, out);
}

/* Completes an executed outcome (id, receipt hash) and records it.
 * Returns OE_OK (the approval may turn out used: then o is rejected), or a
 * resource failure with a reason in err. */
static int record_execution(oe_engine *e, const oe_batch_item *it, oe_outcome *o, double now,
                            char *err, size_t errlen)
{
    const oe_request *r = &it->req;
    oe_execution_id(e->tenant, r->nonce, o->request_hash, o->id);
    oe_receipt_hash(o->id, o->result_json.data, o->result_json.len, o->receipt);
    o->status = OE_STATUS_EXECUTED;
    o->approved = 1;
    if (e->clawshield && !(o->approval_id = strdup(r->artifact.approval_id))) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    const char *payload;
    int rc = row_payload(e, it, OE_LEDGER_PAYLOAD_MAX_BYTES, &payload, err, errlen);
    if (rc != OE_OK)
        return rc;
    oe_execution ex = {
        .payload = (char *)payload,
        .nonce = r->nonce,
        .action = r->action,
        .tenant_id = e->tenant,
        .approval_id = o->approval_id,
        .result_json = o->result_json.data,
        .approved = 1,
        .created_at = now,
        .nonce_key = it->pre.nonce_key,
        .id_key = oe_ledger_key_of(o->id, strlen(o->id)),
        .approval_key = o->approval_id ? it->pre.approval_key : 0,
    };
    memcpy(ex.id, o->id, sizeof ex.id);
    memcpy(ex.request_hash, o->request_hash, sizeof ex.request_hash);
    memcpy(ex.receipt, o->receipt, sizeof ex.receipt);
    memcpy(ex.action_code_hash, o->action_code_hash, sizeof ex.action_code_hash);
    if (e->tlog) {
        ex.log_id = oe_tlog_id(e->tlog);
        ex.log_index = (int64_t)oe_tlog_next(e->tlog);
    }
    rc = oe_store_insert_execution(e->store, &ex, err, errlen);
    if (rc == 0 && e->tlog && (rc = log_entry(e, o, err, errlen)) != OE_OK)
        return rc;
    if (rc == OE_EDUP_APPROVAL) {
        reject(o, OE_ERR_APPROVAL_INVALID, "Approval already used");
        return OE_OK;
    }
    if (rc == OE_EDUP_NONCE) {
        /* On a shared ledger another worker recorded this nonce after our
         * look-up and committed first: its record is the answer. */
        oe_buf_reset(&o->result_json);
        free(o->approval_id);
        o->approval_id = NULL;
        int answered = answer_from_ledger(e, it, o, err, errlen);
        if (answered == 0) {
            snprintf(err, errlen, "nonce %.100s conflicts with a record that cannot be read",
                     r->nonce);
            return OE_ESTORE;
        }
        return answered == 1 ? OE_OK : answered;
    }
    return rc == 0 ? OE_OK : store_failure(rc);
}

/* Answers one request inside the open transaction. Returns OE_OK with the
 * verdict in o, or a resource failure (OE_ENOMEM, OE_ESTORE) with a reason
 * in err. */
static int process_one(oe_engine *e, oe_batch_item *it, double now, char *err, size_t errlen)
{
    oe_request *r = &it->req;
    oe_outcome *o = &it->out;
    char detail[256];
    /* Hashing dumps the payload into a buffer far larger than any request
     * (16 MiB for at most 1 MiB of text), so failing here is memory; a
     * limit or text that is not UTF-8 (which the decoders refuse) would be
     * passed on as oe_request_hash_text reports it. */
    if (!it->pre.hashed) {
        int rc = oe_request_hash_text(r->action, strlen(r->action), r->payload, &it->pre.text,
                                      &it->pre.payload_off, it->pre.hash);
        if (rc != OE_OK) {
            /* "out of memory while hashing a request" for OE_ENOMEM. */
            snprintf(err, errlen, "%s while hashing a request", oe_strerror(rc));
            return rc;
        }
        it->pre.hashed = 1;
        keep_text(&it->pre);
    }
    memcpy(o->request_hash, it->pre.hash, sizeof o->request_hash);

    /* Replay or conflict: answered from the store before any other check,
     * so that a re-delivered request gets its original receipt. */
    int found = answer_from_ledger(e, it, o, err, errlen);
    if (found != 0)
        return found == 1 ? OE_OK : found;

    if (e->clawshield && !r->has_artifact) {
        reject(o, OE_ERR_APPROVAL_INVALID, "Approval artifact required in clawshield mode");
        return OE_OK;
    }
    if (!registry_allows(&e->reg, r->action)) {
        snprintf(detail, sizeof detail, "Action not allowed: %.*s", utf8_prefix(r->action, 200),
                 r->action);
        reject(o, OE_ERR_NOT_ALLOWED, detail);
        return OE_OK;
    }
    if (e->clawshield) {
        int verdict = check_approval(e, it, o, now, err, errlen);
        if (verdict != APPROVAL_ACCEPTED)
            return verdict == APPROVAL_REJECTED ? OE_OK : verdict;
    }

    const oe_action *action = oe_action_find(r->action);
    long script = action ? -1 : oe_lua_actions_find(e->reg.lua, r->action);
    if (!action && script < 0) {
        snprintf(detail, sizeof detail, "Unknown action: %.*s", utf8_prefix(r->action, 200),
                 r->action);
        reject(o, OE_ERR_UNKNOWN_ACTION, detail);
        return OE_OK;
    }
    /* An approval of one version of a Lua action's code: the running code
     * must be that version (the hash is covered by the signature). */
    const char *code_hash = action ? NULL : oe_lua_action_code_hash(e->reg.lua, (size_t)script);
    if (e->clawshield && r->artifact.action_code_hash &&
        (!code_hash || strcmp(code_hash, r->artifact.action_code_hash) != 0)) {
        if (code_hash)
            snprintf(detail, sizeof detail,
                     "Approval invalid: code hash mismatch: approved code %.64s, running %s",
                     r->artifact.action_code_hash, code_hash);
        else
            snprintf(detail, sizeof detail,
                     "Approval invalid: code hash mismatch: %.*s is a built-in action, it has "
                     "no code hash",
                     utf8_prefix(r->action, 200), r->action);
        reject(o, OE_ERR_APPROVAL_INVALID, detail);
        return OE_OK;
    }
    oe_buf_reset(&o->result_json);
    if (!action) {
        /* A Lua action: its failures (an error, a budget, a result JSON
         * cannot carry) are verdicts, the same on every worker; only the
         * machine's memory is not. */
        char message[OE_LUA_MESSAGE_MAX + 1];
        int rc = oe_lua_vm_run(e->reg.vm, (size_t)script, r->payload, &o->result_json, message,
                               sizeof message);
        if (rc == OE_ENOMEM) {
            snprintf(err, errlen, "out of memory while running %s", r->action);
            return OE_ENOMEM;
        }
        if (rc != OE_OK) {
            reject(o, OE_ERR_ACTION_FAILED, message);
            memcpy(o->action_code_hash, code_hash, sizeof o->action_code_hash);
            return OE_OK;
        }
        memcpy(o->action_code_hash, code_hash, sizeof o->action_code_hash);
        return record_execution(e, it, o, now, err, errlen);
    }
    /* The result buffer is capped at OE_RESULT_MAX_BYTES: a result too
     * large to travel in a receipt is refused here, before anything is
     * stored, rather than stored and then unpublishable. Running out of
     * memory on the way is no verdict on the request. */
    if (action->run(r->payload, &o->result_json, detail, sizeof detail) != 0) {
        if (oe_buf_failed(&o->result_json) == OE_ENOMEM) {
            snprintf(err, errlen, "out of memory while running %s", action->name);
            return OE_ENOMEM;
        }
        reject(o, OE_ERR_INVALID_REQUEST, detail);
        return OE_OK;
    }
    return record_execution(e, it, o, now, err, errlen);
}

/* Tells the store the batch's nonces and approval ids (oe_store_prefetch).
 * keys has room for 2 * n strings. */
static int prefetch(oe_engine *e, oe_batch_item *const *items, size_t n, const char **keys,
                    char *err, size_t errlen)
{
    size_t nn = 0, na = 0;
    for (size_t i = 0; i < n; i++) {
        const oe_request *r = &items[i]->req;
        if (items[i]->decode_error != OE_ERR_NONE || !r->nonce)
            continue;
        keys[nn++] = r->nonce;
    }
    for (size_t i = 0; e->clawshield && i < n; i++) {
        const oe_request *r = &items[i]->req;
        if (items[i]->decode_error == OE_ERR_NONE && r->has_artifact && r->artifact.approval_id)
            keys[n + na++] = r->artifact.approval_id;
    }
    int rc = oe_store_prefetch(e->store, keys, nn, keys + n, na, err, errlen);
    return rc == 0 ? OE_OK : store_failure(rc);
}

/* Work on each item of a batch, shared out in chunks between the caller
 * and the engine's helpers (a small batch, or a pool busy with another
 * caller's batch: the caller alone). In a feed (item_job_init with wake),
 * the helpers take only the items made ready (items_ready). */
typedef struct item_job {
    void (*one)(oe_engine *e, oe_batch_item *it, oe_buf *scratch);
    void (*ahead)(const oe_batch_item *it); /* or NULL: see warm_item */
    oe_engine *e;
    oe_batch_item *const *items;
    oe_pool_loop loop;
    int posted;
} item_job;

#define ITEM_CHUNK 8

/* The items of one chunk, each with the next one's memory asked for
 * ahead (within the chunk: the next chunk may be another thread's). The
 * items of a chunk share a scratch buffer, still in this thread's cache
 * from one item to the next (complete_item). */
static void item_job_range(void *ctx, size_t begin, size_t end)
{
    item_job *j = ctx;
    oe_buf scratch;
    oe_buf_init(&scratch, 0);
    for (size_t i = begin; i < end; i++) {
        if (j->ahead && i + 1 < end)
            j->ahead(j->items[i + 1]);
        j->one(j->e, j->items[i], &scratch);
    }
    oe_buf_free(&scratch);
}

/* A job over items[0..n); a feed when wake > 0 (a helper that waits is
 * woken once that many more items are ready; oe_pool_feed_init). */
static void item_job_init(item_job *j, oe_engine *e, oe_batch_item *const *items, size_t n,
                          size_t wake,
                          void (*one)(oe_engine *e, oe_batch_item *it, oe_buf *scratch))
{
    j->one = one;
    j->ahead = NULL;
    j->e = e;
    j->items = items;
    j->posted = 0;
    if (wake)
        oe_pool_feed_init(&j->loop, n, ITEM_CHUNK, wake, item_job_range, j);
    else
        oe_pool_loop_init(&j->loop, n, ITEM_CHUNK, item_job_range, j);
}

/* Starts the job on the helpers (they take the items in turn) unless the
 * batch is small or the pool busy (posted says whether they took it). The
 * caller may do other work, then items_join. */
static void items_post(item_job *j)
{
    j->posted = oe_pool_loop_post(j->e->pool, &j->loop, OE_ENGINE_PARALLEL_MIN);
}

/* Items [0, ready) of a feed may be taken. */
static void items_ready(item_job *j, size_t ready)
{
    oe_pool_feed_ready(&j->loop, ready);
}

/* Takes the items nobody has taken yet (of a feed: below its bound now),
 * then waits for the helpers. */
static void items_join(item_job *j)
{
    oe_pool_loop_join(j->e->pool, &j->loop, j->posted);
}

static void for_each_item(oe_engine *e, oe_batch_item *const *items, size_t n,
                          void (*one)(oe_engine *e, oe_batch_item *it, oe_buf *scratch))
{
    item_job j;
    item_job_init(&j, e, items, n, 0, one);
    items_post(&j);
    items_join(&j);
}

/* Completes each outcome: the proof of each entry the batch appended (and
 * of each replay of one), from the sealed batch's tree, which every thread
 * may read; then the caller's complete hook. Run on the engine's helpers
 * while the commit runs (items_post, items_join). Nothing of them is told
 * before the commit, and a failed one makes them again. Out of memory
 * leaves a durable entry without its proof in this answer; the ledger and
 * its checkpoint hold it (GET /receipts/{id}/proof). */
static void complete_item(oe_engine *e, oe_batch_item *it, oe_buf *scratch)
{
    oe_outcome *o = &it->out;
    int prove = e->tlog && (o->logged || o->proof_pending);
    /* With a hook, the proof is made in the chunk's scratch, lent to out
     * while the hook reads it: a hook that took what it needs gives it
     * back for the next item, so that a batch's proofs (1.4 KB each, 7 MB
     * a batch of 5,000) are not each written to memory of their own and
     * read again from it. One that did not keeps it in out. */
    int lend = prove && it->complete;
    oe_buf own = o->proof; /* empty (outcome_reset) */
    if (lend) {
        oe_buf_reset(scratch);
        o->proof = *scratch;
    }
    if (prove)
        oe_tlog_proof(e->tlog, o->log_index, o->leaf.data, o->leaf.len, &o->proof);
    int took = it->complete ? it->complete(it->complete_ctx, it) : 0;
    if (lend && took) {
        *scratch = o->proof;
        o->proof = own;
    } else if (lend) {
        *scratch = own;
    }
}

/* Asks the memory an item's leaf or completion reads (the leaf, the
 * result, the nonce and action) into the cache ahead of its turn. The
 * helpers come to each item cold: its fields were written on the batch
 * thread's CPU, and a batch's rows and leaves since then are megabytes.
 * Measured: 9-12% less of the helper's CPU in signed runs. */
static void warm_item(const oe_batch_item *it)
{
    const oe_outcome *o = &it->out;
    const oe_request *r = &it->req;
    __builtin_prefetch(o);
    for (size_t k = 0; k < o->leaf.len; k += 64)
        __builtin_prefetch(o->leaf.data + k);
    if (o->result_json.data)
        __builtin_prefetch(o->result_json.data);
    if (r->nonce)
        __builtin_prefetch(r->nonce);
    if (r->action)
        __builtin_prefetch(r->action);
}

static int any_hook(oe_batch_item *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items[i]->complete)
            return 1;
    return 0;
}

/* The leaf of an entry the batch recorded, made (and hashed into the log)
 * by a helper once its row is in, or by the caller at the end. */
static void leaf_item(oe_engine *e, oe_batch_item *it, oe_buf *scratch)
{
    (void)scratch;
    oe_outcome *o = &it->out;
    if (!o->logged)
        return;
    oe_buf_reset(&o->leaf);
    oe_rc rc = entry_leaf(e, it, o, e->batch_now, &o->leaf);
    if (rc == OE_OK) {
        oe_tlog_set_leaf(e->tlog, o->log_index, o->leaf.data, o->leaf.len);
    } else {
        int none = OE_OK;
        atomic_compare_exchange_strong(&e->leaf_failure, &none, (int)rc);
    }
}

/* The leaves made while the rows go in: a feed of the batch's items that
 * the helpers take once each row is in (items_ready), ended by the caller
 * once the rows are all in (leaves_close). A batch too small to share out
 * has its leaves made then, by the caller. */

/* A helper that waits for rows (a ledger slower than its polling, pool.c)
 * is woken once this many more are in. */
#define LEAF_FEED_WAKE 32

static void leaves_open(item_job *feed, oe_engine *e, oe_batch_item *const *items, size_t n,
                        double now)
{
    e->batch_now = now;
    atomic_store(&e->leaf_failure, OE_OK);
    /* Unsigned: an empty loop, not a feed (no lock to make and unmake). */
    item_job_init(feed, e, items, e->tlog ? n : 0, e->tlog ? LEAF_FEED_WAKE : 0, leaf_item);
    feed->ahead = warm_item;
    items_post(feed);
}

/* The rows are in (make), or the batch failed: the leaves of the rows in
 * are made, and the feed ended. Returns OE_OK, or why a leaf could not be
 * made with a reason in err. */
static int leaves_close(item_job *feed, size_t n, int make, char *err, size_t errlen)
{
    oe_engine *e = feed->e;
    if (make) {
        items_ready(feed, n);
        if (!feed->posted)
            items_post(feed); /* the pool was busy at the start: it may help now */
    }
    items_join(feed);
    if (!make)
        return OE_OK;
    int rc = atomic_load(&e->leaf_failure);
    if (rc == OE_OK)
        return OE_OK;
    /* A string that is not UTF-8 text cannot be a leaf: no transient
     * failure, but no entry can be signed either (the ledger's failure). */
    snprintf(err, errlen, "%s while writing a log leaf", oe_strerror(rc));
    return rc == OE_EINVAL ? OE_ESTORE : rc;
}

/* One attempt at a batch: one transaction. */
static int process_batch(oe_engine *e, oe_batch_item *const *items, size_t n, double now,
                         oe_buf *checkpoint, char *err, size_t errlen)
{
    int rc = oe_store_begin(e->store, err, errlen);
    rc = rc == 0 ? OE_OK : store_failure(rc);
    if (e->tlog && oe_tlog_begin(e->tlog, n) != OE_OK && rc == OE_OK) {
        snprintf(err, errlen, "out of memory");
        rc = OE_ENOMEM;
    }
    /* A store without prefetch (SQLite) looks up locally: no key list. */
    if (rc == OE_OK && n > 1 && e->store->ops->prefetch) {
        const char **keys = malloc(2 * n * sizeof *keys);
        if (!keys) {
            snprintf(err, errlen, "out of memory");
            rc = OE_ENOMEM;
        } else {
            rc = prefetch(e, items, n, keys, err, errlen);
            free(keys);
        }
    }
    /* Each entry's leaf is made by the helpers once its row is in. */
    item_job feed;
    leaves_open(&feed, e, items, n, now);
    for (size_t i = 0; rc == OE_OK && i < n; i++) {
        oe_batch_item *it = items[i];
        oe_outcome *o = &it->out;
        oe_request *r = &it->req;
        outcome_reset(o);
        if (it->decode_error != OE_ERR_NONE) {
            reject(o, it->decode_error,
                   it->decode_detail ? it->decode_detail : "malformed request");
        } else if ((rc = process_one(e, it, now, err, errlen)) != OE_OK) {
            break;
        }
        if (o->status == OE_STATUS_REJECTED) {
            /* A rejected request's nonce and action may be as long as the
             * request (1 MiB): the record keeps them cut as receipts do
             * (ids.h), so that indexes and rows stay bounded. */
            char nonce[OE_ECHO_MAX_BYTES + 1], action[OE_ECHO_MAX_BYTES + 1];
            if (r->nonce)
                oe_echo_cut(r->nonce, strlen(r->nonce), nonce);
            if (r->action)
                oe_echo_cut(r->action, strlen(r->action), action);
            /* The payload of a request decoded whole (the one its hash
             * covers; a decoder's rejection may hold a default in its
             * place), cut small. None when the action was cut: the row
             * could not be checked against its request hash. */
            const char *payload = NULL;
            if (it->decode_error == OE_ERR_NONE && o->request_hash[0] && r->action &&
                strlen(r->action) <= OE_ECHO_MAX_BYTES)
                rc =
                    row_payload(e, it, OE_LEDGER_REJECTED_PAYLOAD_MAX_BYTES, &payload, err, errlen);
            oe_rejection rej = {
                .nonce = r->nonce ? nonce : NULL,
                .action = r->action ? action : NULL,
                .request_hash = o->request_hash[0] ? o->request_hash : NULL,
                .error_code = oe_error_code_name(o->error),
                .detail = o->detail,
                .payload = payload,
                .created_at = now,
                .action_code_hash = o->action_code_hash[0] ? o->action_code_hash : NULL,
            };
            if (rc == OE_OK && e->tlog) {
                rej.tenant_id = e->tenant;
                rej.log_id = oe_tlog_id(e->tlog);
                rej.log_index = (int64_t)oe_tlog_next(e->tlog);
            }
            int src = rc == OE_OK ? oe_store_insert_rejection(e->store, &rej, err, errlen) : 0;
            if (src != 0)
                rc = store_failure(src);
            else if (rc == OE_OK && e->tlog)
                rc = log_entry(e, o, err, errlen);
        }
        if (rc == OE_OK)
            items_ready(&feed, i + 1); /* nothing to take without a log: a whole loop */
    }
    int lrc = leaves_close(&feed, n,
                           rc == OE_OK && e->tlog && oe_tlog_next(e->tlog) > oe_tlog_size(e->tlog),
                           err, errlen);
    if (rc == OE_OK)
        rc = lrc;
    if (rc == OE_OK && e->tlog) {
        /* One signature for the batch, in its transaction. Another process
         * signing with this key is no transient failure: fail closed. */
        int src = oe_tlog_seal(e->tlog, e->store, now, err, errlen);
        if (src != OE_OK)
            rc = src == OE_ENOMEM ? OE_ENOMEM : store_failure(src);
    }
    if (rc == OE_OK) {
        /* Every verdict is in: the outcomes are completed (proofs, the
         * caller's hook) on the helpers while this thread commits; no job
         * when there is neither. */
        item_job done;
        item_job_init(&done, e, items, e->tlog || any_hook(items, n) ? n : 0, 0, complete_item);
        done.ahead = warm_item;
        items_post(&done);
        double t0 = oe_monotonic();
        int src = oe_store_commit(e->store, err, errlen);
        if (src == 0 && e->metrics)
            oe_metrics_commit(e->metrics, oe_monotonic() - t0);
        if (src != 0)
            rc = store_failure(src);
        items_join(&done);
    }
    if (rc != OE_OK) {
        oe_store_rollback(e->store);
        if (e->tlog && rc == OE_EDUP_LOG)
            oe_tlog_taken(e->tlog, err, errlen); /* found at the commit, on PostgreSQL */
        if (e->tlog)
            oe_tlog_abort(e->tlog);
        return rc;
    }
    if (e->tlog) {
        int signed_now = oe_tlog_next(e->tlog) > oe_tlog_size(e->tlog);
        oe_tlog_commit(e->tlog);
        size_t len = 0;
        const char *note = oe_tlog_note(e->tlog, &len);
        if (checkpoint && signed_now && note && oe_buf_append(checkpoint, note, len) != OE_OK)
            oe_buf_reset(checkpoint);
    }
    return rc;
}

/* The pure part of a request's checks, ahead of the transaction: its hash
 * and, for an allowed action whose artifact names that hash, the signature's
 * verdict. Anything not done here (no verdict for lack of memory included)
 * is done again in order inside the transaction. */
static void precheck_one(const oe_engine *e, oe_batch_item *it)
{
    struct oe_batch_pre *p = &it->pre;
    p->hashed = 0;
    p->sig = -1;
    p->ed25519 = 0;
    p->detail[0] = '\0';
    const oe_request *r = &it->req;
    oe_buf_init(&p->text, 0);
    p->nonce_key = it->decode_error == OE_ERR_NONE && r->nonce
                       ? oe_ledger_key_of(r->nonce, strlen(r->nonce))
                       : 0;
    p->approval_key =
        it->decode_error == OE_ERR_NONE && r->has_artifact && r->artifact.approval_id
            ? oe_ledger_key_of(r->artifact.approval_id, strlen(r->artifact.approval_id))
            : 0;
    if (it->decode_error != OE_ERR_NONE ||
        oe_request_hash_text(r->action, strlen(r->action), r->payload, &p->text, &p->payload_off,
                             p->hash) != 0) {
        oe_buf_free(&p->text);
        return;
    }
    keep_text(p);
    p->hashed = 1;
    if (!e->clawshield || !r->has_artifact || strcmp(r->artifact.action_hash, p->hash) != 0 ||
        !oe_engine_action_allowed(e, r->action))
        return;
    p->sig = oe_approval_check_signature(e->keys, &r->artifact, &p->ed25519, p->detail,
                                         sizeof p->detail);
    if (p->sig != 0 && p->sig != 1)
        p->sig = -1;
}

static void precheck_item(oe_engine *e, oe_batch_item *it, oe_buf *scratch)
{
    (void)scratch;
    precheck_one(e, it);
}

/* Times a batch the ledger aborted (deadlock, serialization failure) is run
 * again at once before the failure is reported as the ledger's. */
#define OE_ENGINE_RETRIES 20

int oe_engine_process(oe_engine *e, oe_batch_item *const *items, size_t n, double now,
                      oe_buf *checkpoint, char *err, size_t errlen)
{
    for_each_item(e, items, n, precheck_item);
    pthread_mutex_lock(&e->lock);
    int rc = OE_ERETRY;
    if (atomic_load(&e->log_taken)) {
        snprintf(err, errlen, "%s", e->log_taken_reason);
        rc = OE_EDUP_LOG;
    }
    for (int attempt = 0; rc == OE_ERETRY && attempt < OE_ENGINE_RETRIES; attempt++) {
        if (checkpoint)
            oe_buf_reset(checkpoint);
        rc = process_batch(e, items, n, now, checkpoint, err, errlen);
    }
    if (rc == OE_ERETRY)
        rc = OE_EUNAVAIL;
    if (rc == OE_EDUP_LOG && !atomic_load(&e->log_taken)) {
        snprintf(e->log_taken_reason, sizeof e->log_taken_reason, "%s", err);
        atomic_store(&e->log_taken, 1);
    }
    pthread_mutex_unlock(&e->lock);
    for (size_t i = 0; i < n; i++)
        oe_buf_free(&items[i]->pre.text);
    return rc;
}
