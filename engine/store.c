/* The ledger interface (store.h): dispatch to the backend's operations. */
#include "store.h"

#include "digest.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void oe_execution_clear(oe_execution *e)
{
    free(e->nonce);
    free(e->action);
    free(e->tenant_id);
    free(e->approval_id);
    free(e->result_json);
    free(e->payload);
    memset(e, 0, sizeof *e);
}

int oe_execution_copy(oe_execution *dst, const oe_execution *src)
{
    *dst = *src;
    char **fields[] = {&dst->nonce,       &dst->action,      &dst->tenant_id,
                       &dst->approval_id, &dst->result_json, &dst->payload};
    int failed = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *v = *fields[i];
        *fields[i] = v ? strdup(v) : NULL;
        failed |= v && !*fields[i];
    }
    if (failed)
        oe_execution_clear(dst);
    return failed ? OE_ENOMEM : OE_OK;
}

void oe_store_free(oe_store *s)
{
    if (s)
        s->ops->free(s);
}

const char *oe_store_backend(const oe_store *s)
{
    return s->ops->name;
}

int oe_store_shared(const oe_store *s)
{
    return s->shared;
}

int oe_store_begin(oe_store *s, char *err, size_t errlen)
{
    return s->ops->begin(s, err, errlen);
}

int oe_store_commit(oe_store *s, char *err, size_t errlen)
{
    return s->ops->commit(s, err, errlen);
}

void oe_store_rollback(oe_store *s)
{
    s->ops->rollback(s);
}

oe_ledger_key oe_ledger_key_of(const char *text, size_t len)
{
    unsigned char md[32];
    oe_sha256(text, len, md);
    uint64_t k = 0;
    for (int i = 0; i < 8; i++)
        k = k << 8 | md[i];
    return (oe_ledger_key)k;
}

void oe_execution_set_keys(oe_execution *e)
{
    e->nonce_key = oe_ledger_key_of(e->nonce, strlen(e->nonce));
    e->id_key = oe_ledger_key_of(e->id, strlen(e->id));
    e->approval_key = e->approval_id ? oe_ledger_key_of(e->approval_id, strlen(e->approval_id)) : 0;
}

int oe_store_find_by_nonce(oe_store *s, const char *nonce, oe_ledger_key nonce_key, oe_execution *e,
                           char *err, size_t errlen)
{
    return s->ops->find(s, 0, nonce, nonce_key, e, err, errlen);
}

int oe_store_find_by_id(oe_store *s, const char *id, oe_execution *e, char *err, size_t errlen)
{
    return s->ops->find(s, 1, id, oe_ledger_key_of(id, strlen(id)), e, err, errlen);
}

int oe_store_approval_used(oe_store *s, const char *approval_id, oe_ledger_key approval_key,
                           char *err, size_t errlen)
{
    return s->ops->approval_used(s, approval_id, approval_key, err, errlen);
}

int oe_store_insert_execution(oe_store *s, const oe_execution *e, char *err, size_t errlen)
{
    return s->ops->insert_execution(s, e, err, errlen);
}

int oe_store_insert_rejection(oe_store *s, const oe_rejection *r, char *err, size_t errlen)
{
    return s->ops->insert_rejection(s, r, err, errlen);
}

long long oe_store_count_executions(oe_store *s)
{
    return s->ops->count(s, 0);
}

long long oe_store_count_rejections(oe_store *s)
{
    return s->ops->count(s, 1);
}

int oe_store_prefetch(oe_store *s, const char *const *nonces, size_t n_nonces,
                      const char *const *approvals, size_t n_approvals, char *err, size_t errlen)
{
    if (!s->ops->prefetch)
        return 0;
    return s->ops->prefetch(s, nonces, n_nonces, approvals, n_approvals, err, errlen);
}

int oe_store_each_execution(oe_store *s, oe_store_execution_fn fn, void *ctx, char *err,
                            size_t errlen)
{
    return s->ops->each_execution(s, fn, ctx, err, errlen);
}

int oe_store_each_rejection(oe_store *s, const char *nonce, oe_store_rejection_fn fn, void *ctx,
                            char *err, size_t errlen)
{
    return s->ops->each_rejection(s, nonce, fn, ctx, err, errlen);
}

int oe_store_has_logs(const oe_store *s)
{
    return s->ops->log_open && s->ops->insert_checkpoint && s->ops->log_batch &&
           s->ops->log_checkpoint && s->ops->each_checkpoint && s->ops->log_rows_open &&
           s->ops->log_rows_next && s->ops->log_rows_close;
}

void oe_log_batch_clear(oe_log_batch *b)
{
    free(b->note);
    free(b->leaves);
    memset(b, 0, sizeof *b);
}

int oe_store_log_batch(oe_store *s, int64_t log_id, uint64_t index, oe_log_batch *out, char *err,
                       size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!oe_store_has_logs(s)) {
        snprintf(err, errlen, "a %s ledger does not keep signed receipts yet", s->ops->name);
        return OE_EINVAL;
    }
    return s->ops->log_batch(s, log_id, index, out, err, errlen);
}

int oe_store_log_open(oe_store *s, const oe_log_key *key, double now, int64_t *log_id,
                      oe_merkle_compact *state, char *err, size_t errlen)
{
    if (!oe_store_has_logs(s)) {
        snprintf(err, errlen, "a %s ledger does not keep signed receipts yet", s->ops->name);
        return OE_EINVAL;
    }
    return s->ops->log_open(s, key, now, log_id, state, err, errlen);
}

int oe_store_insert_checkpoint(oe_store *s, const oe_checkpoint_row *c, char *err, size_t errlen)
{
    if (!oe_store_has_logs(s)) {
        snprintf(err, errlen, "a %s ledger does not keep signed receipts yet", s->ops->name);
        return OE_EINVAL;
    }
    return s->ops->insert_checkpoint(s, c, err, errlen);
}

int oe_store_log_checkpoint(oe_store *s, const char *origin, char **note, char *err, size_t errlen)
{
    *note = NULL;
    if (!oe_store_has_logs(s))
        return 0;
    return s->ops->log_checkpoint(s, origin, note, err, errlen);
}

int oe_store_each_checkpoint(oe_store *s, const char *origin, oe_store_checkpoint_fn fn, void *ctx,
                             char *err, size_t errlen)
{
    if (!oe_store_has_logs(s))
        return 0;
    return s->ops->each_checkpoint(s, origin, fn, ctx, err, errlen);
}

int oe_store_log_rows_open(oe_store *s, int64_t log_id, char *err, size_t errlen)
{
    if (!oe_store_has_logs(s)) {
        snprintf(err, errlen, "a %s ledger does not keep signed receipts yet", s->ops->name);
        return OE_EINVAL;
    }
    return s->ops->log_rows_open(s, log_id, err, errlen);
}

int oe_store_log_rows_next(oe_store *s, oe_log_row *row, char *err, size_t errlen)
{
    return s->ops->log_rows_next(s, row, err, errlen);
}

void oe_store_log_rows_close(oe_store *s)
{
    s->ops->log_rows_close(s);
}
