/* The worker's publish stage (internal.h): receipts and dead letters
 * produced, their delivery reports, failed ones produced again, and the
 * batch in flight finished. Worker thread. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/codec.h"
#include "engine/clock.h"
#include "engine/ids.h"
#include "engine/log.h"
#include "engine/status.h"
#include "worker/internal.h"

/* Fatal errors a new producer cannot cure: the cluster refuses us. */
int worker_renewable(rd_kafka_resp_err_t code)
{
    switch (code) {
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
        return 0;
    default:
        return 1;
    }
}

/* The delivery state of slot (SLOT_CHECKPOINT: the batch's checkpoint):
 * state, and err when it failed. */
static int *delivery_of(batch *b, size_t slot, rd_kafka_resp_err_t **err)
{
    if (slot == SLOT_CHECKPOINT) {
        *err = &b->checkpoint_error;
        return &b->checkpoint_delivery;
    }
    *err = &b->slots[slot].error;
    return &b->slots[slot].delivery;
}

static void set_delivery(batch *b, size_t slot, int state, rd_kafka_resp_err_t err)
{
    rd_kafka_resp_err_t *e;
    *delivery_of(b, slot, &e) = state;
    if (state != DELIVERY_FAILED)
        return;
    *e = err;
    /* The first failure of the batch is its cause; in a transaction the
     * rest are often "purged" after it. */
    if (!b->delivery_error)
        b->delivery_error = err;
}

/* Delivery reports arrive on the worker thread, inside rd_kafka_flush. */
void worker_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    oe_worker *w = opaque;
    uintptr_t tag = (uintptr_t)m->_private;
    size_t slot = (size_t)(tag & SLOT_MASK);
    uintptr_t gen = tag >> GENERATION_SHIFT;
    /* Its slot's receipt buffer is given back, whatever batch it was of. */
    if (tag & TAG_LENT) {
        batch *owner = w->b.set == ((tag & TAG_SET) != 0) ? &w->b : &w->in;
        if (slot < w->cfg.batch_max && owner->slots[slot].lent)
            owner->slots[slot].lent--;
    }
    /* The batch being published, or the one before it still on its way. */
    const uintptr_t gens = UINTPTR_MAX >> GENERATION_SHIFT;
    batch *b = gen == (w->b.generation & gens)                    ? &w->b
               : w->in.active && gen == (w->in.generation & gens) ? &w->in
                                                                  : NULL;
    if (!b || gen == 0 || (slot >= b->n && slot != SLOT_CHECKPOINT))
        return;
    set_delivery(b, slot, m->err ? DELIVERY_FAILED : DELIVERY_OK, m->err);
}

/* Produces one message of the batch in hand, tracked as its slot's
 * delivery, waiting while the local queue is full. lent: value is the
 * slot's receipt buffer, produced without a copy (librdkafka reads it
 * until the delivery report); otherwise value is copied. */
static int produce_value(oe_worker *w, const char *topic, const void *key, size_t keylen,
                         const void *value, size_t len, int lent, rd_kafka_headers_t *headers,
                         size_t slot)
{
    uintptr_t tag = (w->b.generation << GENERATION_SHIFT) | (w->b.set ? TAG_SET : 0) |
                    (lent ? TAG_LENT : 0) | (uintptr_t)slot;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            w->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
            RD_KAFKA_V_VALUE((void *)value, len),
            RD_KAFKA_V_MSGFLAGS(lent ? 0 : RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
            RD_KAFKA_V_OPAQUE((void *)tag), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (lent)
                w->b.slots[slot].lent++;
            return 0;
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(w->producer, 50);
            continue;
        }
        if (headers)
            rd_kafka_headers_destroy(headers);
        set_delivery(&w->b, slot, DELIVERY_FAILED, err);
        return OE_EIO;
    }
}

static int produce(oe_worker *w, const char *topic, const void *key, size_t keylen,
                   const void *value, size_t len, rd_kafka_headers_t *headers, size_t slot)
{
    return produce_value(w, topic, key, keylen, value, len, 0, headers, slot);
}

/* Where a receipt's or dead letter's request was read: topic, partition
 * and offset, as headers (a receipt of an unreadable request has no nonce:
 * these say which message it answers). */
static void add_source_headers(rd_kafka_headers_t *h, const rd_kafka_message_t *m)
{
    char num[32];
    rd_kafka_header_add(h, "openexec.source.topic", -1, rd_kafka_topic_name(m->rkt), -1);
    snprintf(num, sizeof num, "%d", (int)m->partition);
    rd_kafka_header_add(h, "openexec.source.partition", -1, num, -1);
    snprintf(num, sizeof num, "%lld", (long long)m->offset);
    rd_kafka_header_add(h, "openexec.source.offset", -1, num, -1);
}

/* Copies the request's correlation header (set by the HTTP bridge) so that
 * the receipt finds its waiter; only a well-formed one, so that the
 * receipt's size stays bounded (oe_correlation_valid). */
static rd_kafka_headers_t *receipt_headers(const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *in = NULL;
    const void *val;
    size_t size;
    rd_kafka_headers_t *out = rd_kafka_headers_new(4);
    add_source_headers(out, m);
    if (rd_kafka_message_headers(m, &in) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(in, OE_HEADER_CORRELATION, &val, &size) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        oe_correlation_valid(val, size))
        rd_kafka_header_add(out, OE_HEADER_CORRELATION, -1, val, (ssize_t)size);
    return out;
}

/* Produces the receipt (or dead letter) of slot i. Every field either is
 * bounded by validation or is cut here (oe_echo_cut), so that a receipt of
 * any request fits one Kafka message: a hostile 1 MB nonce must not make
 * the receipt unpublishable and stop every worker that owns its partition. */
/* Appends the receipt of a slot's outcome, in the worker's receipt format.
 * Returns OE_OK, or the codec's failure with its reason in err. */
static int encode_receipt(const oe_worker *w, const batch_slot *sl, oe_buf *out, char *err,
                          size_t errlen)
{
    const oe_request *r = &sl->item.req;
    const oe_outcome *o = &sl->item.out;
    int rejected = o->status == OE_STATUS_REJECTED;
    char nonce[OE_ECHO_MAX_BYTES + 1], action[OE_ECHO_MAX_BYTES + 1];
    oe_echo_cut(r->nonce ? r->nonce : "", r->nonce ? strlen(r->nonce) : 0, nonce);
    oe_echo_cut(r->action ? r->action : "", r->action ? strlen(r->action) : 0, action);
    oe_receipt_fields f = {
        .id = rejected ? NULL : o->id,
        .nonce = nonce,
        .action = action,
        .request_hash = o->request_hash,
        .status = o->status,
        .approved = o->approved,
        .result = rejected ? NULL : o->result_json.data,
        .receipt = rejected ? NULL : o->receipt,
        .error = o->error,
        .detail = rejected ? o->detail : NULL,
        .approval_id = o->approval_id,
        .action_code_hash = o->action_code_hash[0] ? o->action_code_hash : NULL,
        .proof = o->proof.len ? o->proof.data : NULL,
        .proof_len = o->proof.len,
    };
    return oe_codec_encode_receipt(w->codec, &f, w->cfg.receipt_json, out, err, errlen);
}

static int produce_slot(oe_worker *w, size_t i)
{
    batch_slot *sl = &w->b.slots[i];
    const rd_kafka_message_t *m = sl->msg;
    const oe_kafka_settings *k = w->cfg.kafka;
    char key[OE_ECHO_MAX_BYTES + 1];
    if (sl->dead) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(5);
        char num[32];
        rd_kafka_header_add(h, "openexec.error", -1, sl->detail, -1);
        add_source_headers(h, m);
        size_t keylen = m->key ? oe_echo_cut(m->key, m->key_len, key) : 0;
        if (sl->truncate) {
            /* Too large to publish again: the headers say where the
             * original still is. */
            snprintf(num, sizeof num, "%zu", m->len);
            rd_kafka_header_add(h, "openexec.truncated.size", -1, num, -1);
            return produce(w, k->dlq_topic, m->key ? key : NULL, keylen, NULL, 0, h, i);
        }
        return produce(w, k->dlq_topic, m->key ? key : NULL, keylen, m->payload, m->len, h, i);
    }
    const char *nonce = sl->item.req.nonce;
    key[0] = '\0';
    size_t keylen = nonce ? oe_echo_cut(nonce, strlen(nonce), key) : 0;
    char err[256];
    /* Encoded ahead (worker_receipt_ahead), or now: a large batch's, or
     * its encoding failed ahead (it fails again here, and says why). A
     * receipt produced again is the same bytes, still in its buffer. */
    if (sl->receipt.len == 0) {
        if (encode_receipt(w, sl, &sl->receipt, err, sizeof err) != OE_OK) {
            /* Cannot get better by retrying: stop rather than spin or drop. */
            worker_receipt_release(w, sl);
            worker_fail(w, "cannot encode a receipt",
                        "cannot encode the receipt of nonce %.64s: %s", key, err);
            return OE_EIO;
        }
        /* The receipt holds all of the outcome that is read again (a
         * delivery retried produces the receipt): a large result's text,
         * leaf and proof need not stay while the batch is published. */
        oe_outcome_shed(&sl->item.out);
    }
    /* Keyed by nonce, so that every receipt of a nonce lands on one
     * partition; a request without a readable nonce keeps its own key. */
    const void *kp = key;
    if (!keylen) {
        keylen = m->key ? oe_echo_cut(m->key, m->key_len, key) : 0;
        kp = m->key ? key : NULL;
    }
    /* Lent, not copied: no allocation per receipt (a signed one is about
     * 1.7 KB, made on the engine's helpers and freed on this thread). */
    return produce_value(w, k->receipts_topic, kp, keylen, sl->receipt.data, sl->receipt.len, 1,
                         receipt_headers(m), i);
}

/* A slot's receipt buffers above this size are freed rather than kept for
 * its next receipt: a receipt with a proof is about 1.7 KB (a buffer of
 * 2 KiB); one with a large result can be over 1 MB. Kept, two batches of
 * slots hold at most 2 * batch_max * 4 KiB (40 MiB at the default 5,000). */
#define RECEIPT_KEEP_MAX_BYTES (4 << 10)

/* Empties a slot's receipt buffer for its next receipt. A buffer that a
 * message librdkafka holds still points into is not touched: the slot
 * gets a new one, and the old one is freed once that producer is gone. */
void worker_receipt_release(oe_worker *w, batch_slot *sl)
{
    if (sl->lent) {
        if (w->norphans == w->orphans_cap) {
            size_t cap = w->orphans_cap ? 2 * w->orphans_cap : 64;
            oe_buf *o = realloc(w->orphans, cap * sizeof *o);
            if (o) {
                w->orphans = o;
                w->orphans_cap = cap;
            }
        }
        /* Without room (out of memory, rare) it is lost rather than freed
         * under librdkafka. */
        if (w->norphans < w->orphans_cap)
            w->orphans[w->norphans++] = sl->receipt;
        oe_buf_init(&sl->receipt, 0);
        sl->lent = 0;
    } else {
        oe_buf_shed(&sl->receipt, RECEIPT_KEEP_MAX_BYTES);
        oe_buf_empty(&sl->receipt); /* read by length; last written on a helper */
    }
}

/* The producer was destroyed: no message points into a receipt buffer. */
void worker_receipts_returned(oe_worker *w)
{
    for (int k = 0; k < 2; k++) {
        batch *b = k ? &w->in : &w->b;
        for (size_t i = 0; b->slots && i < w->cfg.batch_max; i++)
            b->slots[i].lent = 0;
    }
    for (size_t i = 0; i < w->norphans; i++)
        oe_buf_free(&w->orphans[i]);
    w->norphans = 0;
}

/* The engine's complete hook of every request it answers (decode_batch
 * sets it): the slot's receipt is encoded while the batch commits, on the
 * engine's helpers as much as on this thread (a signed receipt is mostly
 * its proof's 1.4 KB, copied in), into the slot's buffer (decode_batch
 * released it: no message points into it). The codec keeps no state
 * between receipts. A failure leaves the slot empty: produce_slot encodes
 * it again and reports why. Receipts of a batch that then fails are
 * dropped with its requests (worker_clear_requests). */
int worker_receipt_ahead(void *ctx, oe_batch_item *it)
{
    const oe_worker *w = ctx;
    batch_slot *sl = (batch_slot *)((char *)it - offsetof(batch_slot, item));
    char err[256];
    oe_buf_reset(&sl->receipt);
    if (encode_receipt(w, sl, &sl->receipt, err, sizeof err) == OE_OK) {
        /* The receipt holds the proof, and all else of out that is read
         * again: a large result's buffers go now (produce_slot). */
        oe_outcome_shed(&it->out);
        return 1;
    }
    oe_buf_free(&sl->receipt);
    return 0; /* produce_slot encodes it again, from out */
}

/* Produces the batch's signed checkpoint (if it made one) to the
 * checkpoints topic, keyed by the log's origin, so that a log's
 * checkpoints stay in order on one partition. */
static int produce_checkpoint(oe_worker *w)
{
    const oe_buf *cp = &w->b.checkpoint;
    const char *origin = w->cfg.log_origin;
    if (cp->len == 0 || !origin || !w->cfg.kafka->checkpoints_topic) {
        w->b.checkpoint_delivery = DELIVERY_OK; /* nothing to publish */
        return OE_OK;
    }
    w->b.checkpoint_delivery = DELIVERY_PENDING;
    return produce(w, w->cfg.kafka->checkpoints_topic, origin, strlen(origin), cp->data, cp->len,
                   NULL, SLOT_CHECKPOINT);
}

/* Errors that producing the same message again cannot cure. */
static int permanent_error(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        return 1;
    default:
        return 0;
    }
}

/* Marks the worker not ready once a batch's receipts have waited
 * STALL_SECONDS (the batch keeps being retried), and ready again when they
 * are acknowledged (stalled = 0). */
static void note_stall(oe_worker *w, int stalled)
{
    if (!stalled) {
        if (atomic_exchange(&w->stalled, 0))
            oe_log(OE_LOG_INFO, "worker", NULL, "receipts acknowledged again");
        return;
    }
    double waited = oe_monotonic() - w->b.publish_started;
    if (atomic_load(&w->stalled) || waited < STALL_SECONDS)
        return;
    pthread_mutex_lock(&w->reason_lock);
    snprintf(w->stall_reason, sizeof w->stall_reason,
             "receipts not acknowledged by the brokers for %.0f s", waited);
    pthread_mutex_unlock(&w->reason_lock);
    atomic_store(&w->stalled, 1);
    oe_log(OE_LOG_WARN, "worker", NULL,
           "receipts not acknowledged by the brokers for %.0f s (%s); still trying", waited,
           w->b.delivery_error ? rd_kafka_err2str(w->b.delivery_error) : "no answer");
}

/* Waits until every slot has its delivery report, serving reports in short
 * slices so that a stop is noticed. Returns when all are in, or when the
 * worker stops and the grace period is over, or after max seconds. */
static void wait_deliveries(oe_worker *w, double max, double *give_up, int once)
{
    double end = oe_monotonic() + max;
    for (;;) {
        size_t pending = w->b.checkpoint_delivery == DELIVERY_PENDING;
        for (size_t i = 0; i < w->b.n; i++)
            pending += w->b.slots[i].delivery == DELIVERY_PENDING;
        if (pending == 0 || oe_monotonic() > end)
            return;
        /* In a transaction one failure ends the round: it must be aborted,
         * and only the abort reports (purges) what is still queued. */
        if (once && w->b.delivery_error != RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        if (!atomic_load(&w->running)) {
            if (*give_up == 0)
                *give_up = oe_monotonic() + STOP_GRACE_SECONDS;
            else if (oe_monotonic() > *give_up)
                return;
        }
        note_stall(w, 1);
        rd_kafka_flush(w->producer, 200);
    }
}

/* Produces every receipt and dead letter of the batch in hand once, without
 * waiting for the broker (publish_finish waits). Returns OE_OK, or OE_EIO when the
 * worker stopped on an error (w->failed). */
int worker_publish_start(oe_worker *w)
{
    w->b.generation = ++w->generations;
    for (size_t i = 0; i < w->b.n; i++) {
        w->b.slots[i].delivery = DELIVERY_PENDING;
        w->b.slots[i].error = RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    w->b.publish_started = oe_monotonic();
    w->b.delivery_error = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (size_t i = 0; i < w->b.n; i++) {
        if (produce_slot(w, i) != 0)
            w->b.slots[i].delivery = DELIVERY_FAILED;
        if (atomic_load(&w->failed))
            return OE_EIO;
    }
    w->b.checkpoint_error = RD_KAFKA_RESP_ERR_NO_ERROR;
    produce_checkpoint(w); /* a failure is in its delivery state */
    return 0;
}

/* Waits until the broker acknowledged every receipt and dead letter of the
 * batch in hand (worker_publish_start produced them), producing failed ones again
 * with backoff. In a transaction (once = 1) a failed round ends the
 * attempt: the transaction must be aborted before anything can be produced
 * again. Returns OE_OK, or OE_EIO when the batch must not be committed (fatal or
 * permanent error, shutdown while the broker stays unreachable, or a failed
 * transactional round). */
static int publish_finish(oe_worker *w, int once)
{
    long backoff = 100;
    double give_up = 0;
    for (;;) {
        wait_deliveries(w, 60, &give_up, once);
        size_t ok = 0, permanent = 0;
        for (size_t i = 0; i < w->b.n; i++) {
            batch_slot *sl = &w->b.slots[i];
            ok += sl->delivery == DELIVERY_OK;
            rd_kafka_resp_err_t e = sl->error;
            if (sl->delivery == DELIVERY_FAILED && permanent_error(e)) {
                if (sl->dead && !sl->truncate &&
                    (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
                     e == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE))
                    sl->truncate = 1;
                else
                    permanent++;
            }
        }
        int cp = w->b.checkpoint_delivery;
        if (cp == DELIVERY_FAILED && permanent_error(w->b.checkpoint_error)) {
            worker_fail(w, "checkpoints cannot be published",
                        "the batch's checkpoint cannot be published to %s: %s",
                        w->cfg.kafka->checkpoints_topic, rd_kafka_err2str(w->b.checkpoint_error));
            return OE_EIO;
        }
        if (ok == w->b.n && cp == DELIVERY_OK) {
            note_stall(w, 0);
            return 0;
        }
        size_t failed = w->b.n - ok + (cp != DELIVERY_OK);
        /* A fatal error: in a transaction, the abort finds it and the
         * batch is published by a new producer; otherwise replace the
         * producer here and produce what is not acknowledged again. */
        char fatal[512];
        rd_kafka_resp_err_t code = rd_kafka_fatal_error(w->producer, fatal, sizeof fatal);
        if (code && !worker_renewable(code)) {
            worker_fail(w, "fatal producer error", "fatal producer error: %s", fatal);
            return OE_EIO;
        }
        if (code) {
            if (once || worker_renew_producer(w) != 0)
                return OE_EIO;
        } else {
            if (permanent) {
                worker_fail(w, "receipts cannot be published",
                            "%zu receipts cannot be published: %s", permanent,
                            rd_kafka_err2str(w->b.delivery_error));
                return OE_EIO;
            }
            if (once)
                return OE_EIO;
            /* While stopping, keep trying for a while, then leave the
             * batch uncommitted: it is re-delivered and answered from the
             * store. */
            if (!atomic_load(&w->running)) {
                if (give_up == 0)
                    give_up = oe_monotonic() + STOP_GRACE_SECONDS;
                else if (oe_monotonic() > give_up)
                    return OE_EIO;
            }
            oe_log(OE_LOG_WARN, "worker", NULL,
                   "%zu of %zu deliveries failed (%s); retrying in %ld ms", failed,
                   w->b.n + (w->b.checkpoint.len > 0), rd_kafka_err2str(w->b.delivery_error),
                   backoff);
            note_stall(w, 1);
            oe_sleep_ms(backoff);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
        }
        /* Again, what is not acknowledged (a new producer: everything). */
        w->b.delivery_error = RD_KAFKA_RESP_ERR_NO_ERROR; /* the first failure of this round */
        for (size_t i = 0; i < w->b.n; i++) {
            if (w->b.slots[i].delivery == DELIVERY_OK)
                continue;
            atomic_fetch_add(&w->cfg.kafka_metrics->delivery_retries, 1);
            w->b.slots[i].delivery = DELIVERY_PENDING;
            if (produce_slot(w, i) != 0)
                w->b.slots[i].delivery = DELIVERY_FAILED;
            if (atomic_load(&w->failed))
                return OE_EIO;
        }
        if (w->b.checkpoint_delivery != DELIVERY_OK) {
            atomic_fetch_add(&w->cfg.kafka_metrics->delivery_retries, 1);
            produce_checkpoint(w);
        }
    }
}

/* Publishes every receipt and dead letter of the batch in hand and waits
 * until the broker acknowledged all of them (worker_publish_start, then
 * publish_finish). */
int worker_publish_batch(oe_worker *w, int once)
{
    if (worker_publish_start(w) != 0)
        return OE_EIO;
    return publish_finish(w, once);
}

/* Finishes the batch in flight (w->in), if any: waits until its receipts
 * are acknowledged (producing failed ones again), commits its offsets,
 * and releases it. Called before the next batch is published, when no
 * message is waiting, before partitions are revoked and when stopping.
 * Returns OE_OK, or OE_EIO when it could not be published (the worker is stopping
 * or failed): it stays uncommitted and is re-delivered. */
int worker_finish_inflight(oe_worker *w)
{
    if (!w->in.active || w->finishing)
        return 0;
    w->finishing = 1;
    /* The publishing code works on the batch in hand: swap them. */
    worker_swap_batches(w);
    int rc = publish_finish(w, 0);
    if (rc == 0) {
        worker_commit_offsets(w);
        worker_batch_published(w, (size_t)w->b.ne, oe_monotonic() - w->b.started);
    }
    worker_clear_requests(w);
    for (size_t i = 0; i < w->b.n; i++) {
        rd_kafka_message_destroy(w->b.slots[i].msg);
        w->b.slots[i].msg = NULL;
    }
    w->b.n = 0;
    w->b.bytes = 0;
    w->b.active = 0;
    worker_swap_batches(w);
    w->finishing = 0;
    return rc;
}
