/* The Kafka worker (worker.h): one consumer-group member.
 *
 * Threads: everything here runs on the worker thread (worker_main), apart
 * from oe_worker_new/start/stop/free (the caller's thread, before and after
 * it runs), the rebalance and delivery callbacks (librdkafka calls them on
 * the worker thread, inside poll and flush) and oe_worker_ready/failed
 * (any thread; they read atomics and, once failed is set, fail_reason and
 * fail_public).
 *
 * Memory: the batch in hand is an array of slots, one per message, reused
 * from batch to batch. A slot owns its librdkafka message until the batch
 * ends and its decoded request; the request's JSON document (the bulk of a
 * request's memory) is freed as soon as the engine has answered, and a
 * batch stops growing at OE_WORKER_BATCH_BYTES of messages, so a batch's
 * memory is bounded whatever its producers send.
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
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

/* Delivery state of a slot's receipt or dead letter. */
enum { DELIVERY_PENDING, DELIVERY_OK, DELIVERY_FAILED };

/* A delivery report's opaque value: the batch generation in the high bits
 * and the slot in the low ones, so that a late report of an earlier batch
 * (a copy still in flight when that batch moved on) is never credited to a
 * slot of the current one. */
#define SLOT_BITS 24
#define SLOT_MASK (((uintptr_t)1 << SLOT_BITS) - 1)

/* Seconds a batch may spend failing to publish while the worker stops,
 * before it is left uncommitted (it is re-delivered later). */
#define STOP_GRACE_SECONDS 10
#define STALL_SECONDS 10

/* One message of the batch in hand, from poll to commit. */
typedef struct batch_slot {
    rd_kafka_message_t *msg;   /* owned until the batch ends */
    int dead;                  /* undecodable: published to the DLQ as it came */
    oe_batch_item item;        /* !dead: the request and the engine's outcome */
    char detail[512];          /* why decoding failed (dead letter or rejection) */
    int delivery;              /* DELIVERY_* of its receipt or dead letter */
    int truncate;              /* dead letter too large: send headers only */
    rd_kafka_resp_err_t error; /* why its last delivery failed */
} batch_slot;

/* A batch: its slots (batch_max of them, reused) and how it is doing. */
typedef struct batch {
    batch_slot *slots;
    size_t n;                           /* slots in use */
    size_t bytes;                       /* message bytes in the batch */
    oe_batch_item **engine_items;       /* the engine's view: items of the slots not dead */
    uintptr_t generation;               /* of its publishing (delivery reports carry it) */
    rd_kafka_resp_err_t delivery_error; /* the first failed delivery's error of this round */
    double publish_started;
    double started; /* oe_monotonic() when it was decoded */
    long ne;        /* requests for the engine (the rest are dead letters) */
    int active;     /* (in) published, not yet finished */
} batch;

struct oe_worker {
    oe_worker_config cfg;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    oe_codec *codec;
    pthread_t thread;
    int thread_started;
    atomic_int running;         /* cleared by oe_worker_stop */
    atomic_int failed;          /* set when the worker stopped on a fatal error */
    char fail_reason[512];      /* the detail: logged, and the exit line */
    char fail_public[160];      /* what /ready shows: our own words only */
    atomic_int data_lost;       /* set once a committed offset was found gone */
    char data_loss_reason[512]; /* written by the worker thread before data_lost */
    atomic_int assigned;        /* partitions currently assigned */

    /* Consumption stops (the assignment is paused) while the ledger cannot
     * be reached (the batch in hand is retried) or while the group has
     * other members and the ledger is private (fail closed). */
    atomic_int ledger_down;
    atomic_int unshared;
    pthread_mutex_t reason_lock; /* guards the reasons below */
    char unshared_reason[512];
    /* Set while a batch's receipts have waited over STALL_SECONDS for the
     * brokers' acknowledgement (e.g. too few in-sync replicas). */
    atomic_int stalled;
    char stall_reason[512];
    int paused;     /* worker thread: the assignment is paused */
    int cluster_ok; /* worker thread: the cluster answered and our topics exist */
    double next_cluster_check;
    /* Offsets of published batches whose commit a rebalance refused
     * (worker thread: commit_offsets, retry_pending_commit, on_rebalance). */
    rd_kafka_topic_partition_list_t *pending_commit;
    double pending_since, next_pending_try;
    int sharing_dirty; /* worker thread: the assignment changed */
    double last_sharing_check;
    oe_log_limit ledger_log; /* "ledger unavailable": at its start, then every 30 s */

    /* The batch in hand (b) and, without transactions, the batch before it
     * whose receipts are still on their way (in): two sets of batch_max
     * slots, swapped, so that a batch is gathered and executed while the
     * one before it is acknowledged (finish_inflight). */
    batch b;
    batch in;
    uintptr_t generations;           /* the last generation given to a publishing batch */
    int finishing;                   /* finish_inflight runs (it is not re-entered) */
    oe_buf encoded;                  /* scratch for one encoded receipt */
    rd_kafka_topic_t *out_topics[2]; /* receipts and DLQ, held so their metadata stays known */
    double last_lag_update;
    long long part_lag[OE_KAFKA_METRICS_LAG_PARTITIONS]; /* update_lag's scratch */
    int stopped;                                         /* oe_worker_stop ran */
    int consumer_abandoned; /* it did not close in time: never destroyed */
    /* Producers replaced after fatal errors (renew_producer), per window. */
    double renew_window;
    int renewals, fenced_renewals;
};

/* Stops the worker. public is the reason /ready shows: our own short
 * words, never a broker's or librdkafka's text (addresses, principals);
 * the detail (fmt), with that text, goes to the log and the exit line. */
__attribute__((format(printf, 3, 4))) static void worker_fail(oe_worker *w, const char *public,
                                                              const char *fmt, ...)
{
    if (atomic_load(&w->failed))
        return;
    /* Only the worker thread calls this: write the reasons, then publish. */
    snprintf(w->fail_public, sizeof w->fail_public, "%s", public);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->fail_reason, sizeof w->fail_reason, fmt, ap);
    va_end(ap);
    atomic_store(&w->failed, 1);
    oe_log(OE_LOG_ERROR, "worker", NULL, "worker stopped: %s", w->fail_reason);
    atomic_store(&w->running, 0);
}

static int renew_producer(oe_worker *w);
static int finish_inflight(oe_worker *w);

/* Fatal errors a new producer cannot cure: the cluster refuses us. */
static int renewable(rd_kafka_resp_err_t code)
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

/* Delivery reports arrive on the worker thread, inside rd_kafka_flush. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    oe_worker *w = opaque;
    uintptr_t tag = (uintptr_t)m->_private;
    size_t slot = (size_t)(tag & SLOT_MASK);
    uintptr_t gen = tag >> SLOT_BITS;
    /* The batch being published, or the one before it still on its way. */
    batch *b = gen == (w->b.generation & (UINTPTR_MAX >> SLOT_BITS))                    ? &w->b
               : w->in.active && gen == (w->in.generation & (UINTPTR_MAX >> SLOT_BITS)) ? &w->in
                                                                                        : NULL;
    if (!b || gen == 0 || slot >= b->n)
        return;
    if (m->err) {
        b->slots[slot].delivery = DELIVERY_FAILED;
        b->slots[slot].error = m->err;
        /* The first failure of the batch is its cause; in a transaction
         * the rest are often "purged" after it. */
        if (!b->delivery_error)
            b->delivery_error = m->err;
    } else {
        b->slots[slot].delivery = DELIVERY_OK;
    }
}

/* Drops messages of revoked partitions from the batch being gathered: they
 * have not been processed, and their new owner starts from the committed
 * offset. */
static void drop_revoked(oe_worker *w, const rd_kafka_topic_partition_list_t *parts)
{
    size_t keep = 0;
    for (size_t i = 0; i < w->b.n; i++) {
        rd_kafka_message_t *m = w->b.slots[i].msg;
        int revoked = 0;
        for (int k = 0; k < parts->cnt && !revoked; k++)
            revoked = parts->elems[k].partition == m->partition &&
                      strcmp(parts->elems[k].topic, rd_kafka_topic_name(m->rkt)) == 0;
        if (revoked) {
            w->b.bytes -= m->len;
            rd_kafka_message_destroy(m);
        } else {
            w->b.slots[keep++].msg = m;
        }
    }
    w->b.n = keep;
}

/* Rebalances are cooperative (partition.assignment.strategy is forced to
 * cooperative-sticky): partitions come and go incrementally. */
static void filter_offsets(oe_worker *w, rd_kafka_topic_partition_list_t **list,
                           const rd_kafka_topic_partition_list_t *parts, int keep);

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    oe_worker *w = opaque;
    rd_kafka_error_t *error;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* Start where the group committed; a partition without a commit
         * starts at its beginning (auto.offset.reset is "error", so that
         * only a lost committed position is reported, handle_offset_reset).
         * A partition whose commit cannot be read is left to that check. */
        if (rd_kafka_committed(rk, parts, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
            for (int k = 0; k < parts->cnt; k++)
                if (parts->elems[k].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                    parts->elems[k].offset == RD_KAFKA_OFFSET_INVALID)
                    parts->elems[k].offset = RD_KAFKA_OFFSET_BEGINNING;
        /* librdkafka keeps a partition's pause across an unassign: one
         * paused here before, revoked and now back would stay paused for
         * ever. Its state is ours. A resume is done before the assign: a
         * resume after it outdates the partition's first offset lookup
         * (BEGINNING, or a committed offset to validate), which librdkafka
         * then repeats only after 500 ms, so the partition would fetch
         * nothing for half a second after every assignment. A partition
         * not known yet has no pause to clear (the resume skips it). */
        if (!w->paused)
            rd_kafka_resume_partitions(rk, parts);
        error = rd_kafka_incremental_assign(rk, parts);
        if (!error)
            atomic_fetch_add(&w->assigned, parts->cnt);
        if (!error && w->paused)
            rd_kafka_pause_partitions(rk, parts);
        oe_log(OE_LOG_INFO, "worker", NULL, "assigned %d partition(s)", parts->cnt);
    } else {
        /* What this worker finished is committed before the partitions
         * go: the batch in flight first (its offsets are the group's
         * now, so the new owner starts after it, with no replays). */
        finish_inflight(w);
        drop_revoked(w, parts);
        /* Offsets a rebalance refused, of partitions leaving us: committed
         * now if the group still takes them (a lost assignment cannot). */
        if (w->pending_commit && !rd_kafka_assignment_lost(rk)) {
            rd_kafka_topic_partition_list_t *leaving =
                rd_kafka_topic_partition_list_copy(w->pending_commit);
            filter_offsets(w, &leaving, parts, 1);
            if (leaving) {
                rd_kafka_resp_err_t e = rd_kafka_commit(rk, leaving, 0);
                oe_log(OE_LOG_INFO, "worker", NULL, "offsets of %d revoked partition(s): %s",
                       leaving->cnt, e ? rd_kafka_err2str(e) : "committed");
                rd_kafka_topic_partition_list_destroy(leaving);
            }
        }
        filter_offsets(w, &w->pending_commit, parts, 0);
        error = rd_kafka_incremental_unassign(rk, parts);
        atomic_fetch_sub(&w->assigned, parts->cnt);
        oe_log(OE_LOG_INFO, "worker", NULL, "revoked %d partition(s)%s", parts->cnt,
               rd_kafka_assignment_lost(rk) ? " (lost)" : "");
    }
    if (error) {
        oe_log(OE_LOG_WARN, "worker", NULL, "rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    atomic_store(&w->cfg.kafka_metrics->assigned_partitions, atomic_load(&w->assigned));
    w->sharing_dirty = 1;
}

/* Produces one message, waiting while the local queue is full. */
static int produce(oe_worker *w, const char *topic, const void *key, size_t keylen,
                   const void *value, size_t len, rd_kafka_headers_t *headers, size_t slot)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            w->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
            RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(headers),
            RD_KAFKA_V_OPAQUE((void *)((w->b.generation << SLOT_BITS) | (uintptr_t)slot)),
            RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(w->producer, 50);
            continue;
        }
        rd_kafka_headers_destroy(headers);
        w->b.slots[slot].error = err;
        if (!w->b.delivery_error)
            w->b.delivery_error = err;
        return -1;
    }
}

/* Copies the request's correlation header (set by the HTTP bridge) so that
 * the receipt finds its waiter; only a well-formed one, so that the
 * receipt's size stays bounded (oe_correlation_valid). */
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
    };
    char err[256];
    oe_buf_reset(&w->encoded);
    if (oe_codec_encode_receipt(w->codec, &f, w->cfg.receipt_json, &w->encoded, err, sizeof err) !=
        0) {
        /* Cannot get better by retrying: stop rather than spin or drop. */
        worker_fail(w, "cannot encode a receipt", "cannot encode the receipt of nonce %.64s: %s",
                    f.nonce, err);
        return -1;
    }
    /* Keyed by nonce, so that every receipt of a nonce lands on one
     * partition; a request without a readable nonce keeps its own key. */
    size_t keylen;
    const void *kp = nonce;
    if (nonce[0]) {
        keylen = strlen(nonce);
    } else {
        keylen = m->key ? oe_echo_cut(m->key, m->key_len, key) : 0;
        kp = m->key ? key : NULL;
    }
    return produce(w, k->receipts_topic, kp, keylen, w->encoded.data, w->encoded.len,
                   receipt_headers(m), i);
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
static void wait_deliveries(oe_worker *w, double max, double *give_up)
{
    double end = oe_monotonic() + max;
    for (;;) {
        size_t pending = 0;
        for (size_t i = 0; i < w->b.n; i++)
            pending += w->b.slots[i].delivery == DELIVERY_PENDING;
        if (pending == 0 || oe_monotonic() > end)
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
 * waiting for the broker (publish_finish waits). Returns 0, or -1 when the
 * worker stopped on an error (w->failed). */
static int publish_start(oe_worker *w)
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
            return -1;
    }
    return 0;
}

/* Waits until the broker acknowledged every receipt and dead letter of the
 * batch in hand (publish_start produced them), producing failed ones again
 * with backoff. In a transaction (once = 1) a failed round ends the
 * attempt: the transaction must be aborted before anything can be produced
 * again. Returns 0, or -1 when the batch must not be committed (fatal or
 * permanent error, shutdown while the broker stays unreachable, or a failed
 * transactional round). */
static int publish_finish(oe_worker *w, int once)
{
    long backoff = 100;
    double give_up = 0;
    for (;;) {
        wait_deliveries(w, 60, &give_up);
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
        if (ok == w->b.n) {
            note_stall(w, 0);
            return 0;
        }
        /* A fatal error: in a transaction, the abort finds it and the
         * batch is published by a new producer; otherwise replace the
         * producer here and produce what is not acknowledged again. */
        char fatal[512];
        rd_kafka_resp_err_t code = rd_kafka_fatal_error(w->producer, fatal, sizeof fatal);
        if (code && !renewable(code)) {
            worker_fail(w, "fatal producer error", "fatal producer error: %s", fatal);
            return -1;
        }
        if (code) {
            if (once || renew_producer(w) != 0)
                return -1;
        } else {
            if (permanent) {
                worker_fail(w, "receipts cannot be published",
                            "%zu receipts cannot be published: %s", permanent,
                            rd_kafka_err2str(w->b.delivery_error));
                return -1;
            }
            if (once)
                return -1;
            /* While stopping, keep trying for a while, then leave the
             * batch uncommitted: it is re-delivered and answered from the
             * store. */
            if (!atomic_load(&w->running)) {
                if (give_up == 0)
                    give_up = oe_monotonic() + STOP_GRACE_SECONDS;
                else if (oe_monotonic() > give_up)
                    return -1;
            }
            oe_log(OE_LOG_WARN, "worker", NULL,
                   "%zu of %zu deliveries failed (%s); retrying in %ld ms", w->b.n - ok, w->b.n,
                   rd_kafka_err2str(w->b.delivery_error), backoff);
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
                return -1;
        }
    }
}

/* Publishes every receipt and dead letter of the batch in hand and waits
 * until the broker acknowledged all of them (publish_start, then
 * publish_finish). */
static int publish_batch(oe_worker *w, int once)
{
    if (publish_start(w) != 0)
        return -1;
    return publish_finish(w, once);
}

/* The offsets to commit: one past the last message of each partition. */
static rd_kafka_topic_partition_list_t *batch_offsets(oe_worker *w)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    for (size_t i = 0; i < w->b.n; i++) {
        const rd_kafka_message_t *m = w->b.slots[i].msg;
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(list, rd_kafka_topic_name(m->rkt), m->partition);
        if (!p)
            p = rd_kafka_topic_partition_list_add(list, rd_kafka_topic_name(m->rkt), m->partition);
        if (m->offset + 1 > p->offset)
            p->offset = m->offset + 1;
    }
    return list;
}

/* Errors of a commit refused because the group is rebalancing or has
 * moved on to a new generation: the same offsets may be committed once the
 * rebalance is over, for the partitions still ours. */
static int rebalance_error(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
           err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
           err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || err == RD_KAFKA_RESP_ERR__STATE;
}

/* Adds src's offsets to *dst (created when NULL), keeping the larger
 * offset of a partition in both. */
static void merge_offsets(rd_kafka_topic_partition_list_t **dst,
                          const rd_kafka_topic_partition_list_t *src)
{
    if (!*dst)
        *dst = rd_kafka_topic_partition_list_new(src->cnt > 0 ? src->cnt : 1);
    for (int i = 0; i < src->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &src->elems[i];
        rd_kafka_topic_partition_t *d =
            rd_kafka_topic_partition_list_find(*dst, e->topic, e->partition);
        if (!d)
            rd_kafka_topic_partition_list_add(*dst, e->topic, e->partition)->offset = e->offset;
        else if (e->offset > d->offset)
            d->offset = e->offset;
    }
}

/* Keeps in *list the partitions of parts (keep = 1) or all but those
 * (keep = 0); parts NULL is the current assignment (nothing changes when it
 * cannot be read). Frees *list when it ends up empty. */
static void filter_offsets(oe_worker *w, rd_kafka_topic_partition_list_t **list,
                           const rd_kafka_topic_partition_list_t *parts, int keep)
{
    if (!*list)
        return;
    rd_kafka_topic_partition_list_t *owned = NULL;
    if (!parts) {
        if (rd_kafka_assignment(w->consumer, &owned) != RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        parts = owned;
    }
    rd_kafka_topic_partition_list_t *out = rd_kafka_topic_partition_list_new((*list)->cnt);
    for (int i = 0; i < (*list)->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &(*list)->elems[i];
        if ((rd_kafka_topic_partition_list_find(parts, e->topic, e->partition) != NULL) == keep)
            rd_kafka_topic_partition_list_add(out, e->topic, e->partition)->offset = e->offset;
    }
    if (owned)
        rd_kafka_topic_partition_list_destroy(owned);
    rd_kafka_topic_partition_list_destroy(*list);
    *list = out;
    if (out->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(out);
        *list = NULL;
    }
}

/* Commits list synchronously: 0, or the error of the last attempt (a
 * rebalance error at once, other errors after 5 attempts with backoff). */
static rd_kafka_resp_err_t commit_list(oe_worker *w, const rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int attempt = 0; attempt < 5; attempt++) {
        err = rd_kafka_commit(w->consumer, list, 0);
        if (!err || rebalance_error(err))
            return err;
        oe_log(OE_LOG_WARN, "worker", NULL, "offset commit: %s%s", rd_kafka_err2str(err),
               attempt < 4 ? " (retrying)" : "");
        if (attempt < 4)
            oe_sleep_ms(100L << attempt);
    }
    return err;
}

static void not_committed(rd_kafka_resp_err_t err)
{
    oe_log(OE_LOG_WARN, "worker", NULL,
           "offset commit: %s (not committed: re-delivered and answered from the ledger)",
           rd_kafka_err2str(err));
}

/* Commits the batch's offsets, with any left over from a commit that a
 * rebalance refused. Refused again by a rebalance, they wait in
 * pending_commit for retry_pending_commit (after the rebalance, for the
 * partitions still ours; the others are re-processed by their new owner
 * and answered from the ledger). */
static void commit_offsets(oe_worker *w)
{
    rd_kafka_topic_partition_list_t *list = batch_offsets(w);
    if (w->pending_commit) {
        merge_offsets(&w->pending_commit, list);
        rd_kafka_topic_partition_list_destroy(list);
        list = w->pending_commit;
        w->pending_commit = NULL;
        filter_offsets(w, &list, NULL, 1);
        if (!list)
            return;
    }
    rd_kafka_resp_err_t err = commit_list(w, list);
    if (err && rebalance_error(err) && w->cfg.own_broker) {
        /* This worker is no member of the group: its broker refuses its
         * offsets only once another consumer has joined the group there,
         * and that consumer is taking the same partitions. */
        worker_fail(w,
                    "offset commit refused: another consumer joined the group on this worker's "
                    "own embedded broker",
                    "offset commit refused (%s): another consumer joined group %s on this "
                    "worker's own embedded broker and reads the same partitions; workers that "
                    "form a group need `openexec broker` or Apache Kafka",
                    rd_kafka_err2str(err), w->cfg.kafka->group_id);
        rd_kafka_topic_partition_list_destroy(list);
        return;
    }
    if (err && rebalance_error(err)) {
        oe_log(OE_LOG_INFO, "worker", NULL, "offset commit: %s (committed after the rebalance)",
               rd_kafka_err2str(err));
        w->pending_commit = list;
        w->pending_since = oe_monotonic();
        w->next_pending_try = oe_monotonic() + 0.2;
        return;
    }
    if (err)
        not_committed(err);
    rd_kafka_topic_partition_list_destroy(list);
}

/* Commits offsets a rebalance refused, for the partitions still ours, every
 * 200 ms for up to PENDING_COMMIT_SECONDS (force: now, when stopping; what
 * is still refused is tried by the revoke of consumer_close). */
#define PENDING_COMMIT_SECONDS 30.0
static void retry_pending_commit(oe_worker *w, int force)
{
    if (!w->pending_commit || (!force && oe_monotonic() < w->next_pending_try))
        return;
    filter_offsets(w, &w->pending_commit, NULL, 1);
    if (!w->pending_commit)
        return;
    rd_kafka_resp_err_t err = commit_list(w, w->pending_commit);
    /* When stopping, the revoke of consumer_close tries once more. */
    if (err && rebalance_error(err) &&
        (force || oe_monotonic() - w->pending_since < PENDING_COMMIT_SECONDS)) {
        w->next_pending_try = oe_monotonic() + 0.2;
        return;
    }
    if (err)
        not_committed(err);
    else
        oe_log(OE_LOG_INFO, "worker", NULL, "offsets committed after the rebalance");
    rd_kafka_topic_partition_list_destroy(w->pending_commit);
    w->pending_commit = NULL;
}

/* What to do after a transactional call, as librdkafka documents it:
 * retriable errors call the same function again (with backoff), abortable
 * ones abort the transaction and publish the batch again in a new one,
 * fatal ones leave the producer unusable: a new producer with the same
 * transactional.id (its init fences the old epoch and aborts what it left
 * open) publishes the batch again (renew_producer). Errors that are neither
 * stop the worker (the batch stays uncommitted). */
typedef enum { TXN_OK, TXN_RETRY, TXN_ABORT, TXN_RENEW, TXN_STOP } txn_action;

/* Classifies e (NULL: success) and takes ownership of it; on TXN_RETRY it
 * has already waited *delay ms. A stopping worker does not retry. */
static txn_action txn_outcome(oe_worker *w, const char *call, rd_kafka_error_t *e, long *delay)
{
    if (!e)
        return TXN_OK;
    txn_action a = rd_kafka_error_is_fatal(e)
                       ? (renewable(rd_kafka_error_code(e)) ? TXN_RENEW : TXN_STOP)
                   : rd_kafka_error_is_retriable(e)       ? TXN_RETRY
                   : rd_kafka_error_txn_requires_abort(e) ? TXN_ABORT
                                                          : TXN_STOP;
    if (a == TXN_RETRY && !atomic_load(&w->running))
        a = TXN_ABORT;
    oe_log(OE_LOG_WARN, "worker", NULL, "%s: %s (%s)", call, rd_kafka_error_string(e),
           a == TXN_RETRY   ? "retrying"
           : a == TXN_ABORT ? "aborting"
           : a == TXN_RENEW ? "fatal: replacing the producer"
                            : "stopping");
    if (a == TXN_STOP) {
        char public[96];
        snprintf(public, sizeof public, "%s failed%s", call,
                 rd_kafka_error_is_fatal(e) ? " (fatal)" : "");
        worker_fail(w, public, "%s: %s%s", call, rd_kafka_error_string(e),
                    rd_kafka_error_is_fatal(e) ? " (fatal)" : "");
    }
    rd_kafka_error_destroy(e);
    if (a == TXN_RETRY) {
        oe_sleep_ms(*delay);
        *delay = *delay * 2 > 5000 ? 5000 : *delay * 2;
    }
    return a;
}

/* Transactional publish: receipts and offsets commit atomically on brokers
 * that honour transactions. Returns 0, or -1 when the transaction was
 * aborted (the caller publishes the batch again in a new one: its outcomes
 * are stored, and the aborted receipts are invisible to read_committed
 * consumers) or the worker must stop (w->failed). */
static int publish_transactional(oe_worker *w)
{
    txn_action a;
    long delay = 100;
    while ((a = txn_outcome(w, "begin transaction", rd_kafka_begin_transaction(w->producer),
                            &delay)) == TXN_RETRY)
        ;
    if (a == TXN_RENEW)
        renew_producer(w);
    if (a != TXN_OK)
        return -1; /* nothing begun: stopping, or a begin that cannot succeed */
    if (publish_batch(w, 1) != 0) {
        if (atomic_load(&w->failed))
            return -1;
        goto abort;
    }
    rd_kafka_topic_partition_list_t *offsets = batch_offsets(w);
    rd_kafka_consumer_group_metadata_t *meta = rd_kafka_consumer_group_metadata(w->consumer);
    delay = 100;
    while ((a = txn_outcome(w, "send offsets to transaction",
                            rd_kafka_send_offsets_to_transaction(w->producer, offsets, meta,
                                                                 w->cfg.txn_timeout_ms),
                            &delay)) == TXN_RETRY)
        ;
    rd_kafka_consumer_group_metadata_destroy(meta);
    rd_kafka_topic_partition_list_destroy(offsets);
    if (a == TXN_OK) {
        delay = 100;
        while ((a = txn_outcome(w, "commit transaction",
                                rd_kafka_commit_transaction(w->producer, w->cfg.txn_timeout_ms),
                                &delay)) == TXN_RETRY)
            ;
        if (a == TXN_OK)
            return 0;
    }
    if (a == TXN_RENEW) {
        renew_producer(w);
        return -1;
    }
    if (a == TXN_STOP)
        return -1;
abort:
    oe_log(OE_LOG_WARN, "worker", NULL,
           "aborting the transaction of a batch of %zu (%s); publishing it again", w->b.n,
           w->b.delivery_error ? rd_kafka_err2str(w->b.delivery_error) : "see the line above");
    delay = 100;
    while ((a = txn_outcome(w, "abort transaction",
                            rd_kafka_abort_transaction(w->producer, w->cfg.txn_timeout_ms),
                            &delay)) == TXN_RETRY)
        ;
    /* Abortable while aborting cannot go on; while stopping, the broker
     * aborts the open transaction when the producer is gone. */
    if (a == TXN_ABORT && atomic_load(&w->running))
        worker_fail(w, "cannot abort a transaction", "cannot abort a transaction");
    if (a == TXN_RENEW)
        renew_producer(w);
    return -1;
}

/* Decodes every message of the batch into its slot. Returns OE_OK, or
 * OE_ENOMEM when a decoder ran out of memory: there is then no verdict on
 * that message, and none may be recorded or published. */
static int decode_batch(oe_worker *w, size_t *ne)
{
    *ne = 0;
    for (size_t i = 0; i < w->b.n; i++) {
        batch_slot *sl = &w->b.slots[i];
        rd_kafka_message_t *m = sl->msg;
        oe_batch_item *it = &sl->item;
        sl->detail[0] = '\0';
        sl->dead = 0;
        sl->truncate = 0; /* kept across publishing attempts of this batch */
        it->decode_error = OE_ERR_NONE;
        it->decode_detail = sl->detail;
        oe_decode_result res =
            oe_codec_decode_request(w->codec, m->payload, m->len, &it->req, &it->decode_error,
                                    sl->detail, sizeof sl->detail);
        if (res == OE_DECODE_NOMEM)
            return OE_ENOMEM;
        if (res == OE_DECODE_DEAD) {
            oe_request_clear(&it->req);
            sl->dead = 1;
            continue;
        }
        w->b.engine_items[(*ne)++] = it;
    }
    return OE_OK;
}

static void clear_requests(oe_worker *w)
{
    for (size_t i = 0; i < w->b.n; i++)
        if (!w->b.slots[i].dead)
            oe_request_clear(&w->b.slots[i].item.req);
}

static void ledger_unavailable(oe_worker *w, const char *why);
static void ledger_available(oe_worker *w);
static int wait_polling(oe_worker *w, long ms);
static void update_pause(oe_worker *w);

/* Decodes the batch and runs the engine (one store transaction), retrying
 * resource failures with backoff: they are no verdict, so nothing of the
 * batch is recorded until they pass. A ledger that cannot be reached is
 * waited for as long as it takes, consumption paused (the group is served
 * meanwhile); memory and other ledger failures are tried a few times, then
 * the worker stops. Returns the number of requests for the engine, or -1
 * when the batch is given up (the worker stops, or it was rewound). */
static long execute_batch(oe_worker *w)
{
    char err[512];
    long backoff = 100;
    for (int attempt = 0;; attempt++) {
        size_t ne = 0;
        int rc = decode_batch(w, &ne);
        if (rc == OE_ENOMEM)
            snprintf(err, sizeof err, "out of memory while decoding");
        else
            rc = oe_executor_run(w->cfg.executor, w->b.engine_items, ne, err, sizeof err);
        if (rc == OE_OK) {
            ledger_available(w);
            return (long)ne;
        }
        clear_requests(w);
        if (rc == OE_EUNAVAIL) {
            ledger_unavailable(w, err);
            if (wait_polling(w, backoff) != 0 || !atomic_load(&w->running) || w->b.n == 0) {
                /* The batch was given up (rewound, or its partitions
                 * revoked), and only a batch tries the ledger again:
                 * consume again, so that the next batch (these messages
                 * again, from where they were rewound or committed) does;
                 * it pauses once more if the ledger is still unavailable. */
                atomic_store(&w->ledger_down, 0);
                atomic_store(&w->cfg.kafka_metrics->ledger_unavailable, 0);
                update_pause(w);
                return -1;
            }
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
            attempt = -1;
            continue;
        }
        oe_log(OE_LOG_WARN, "worker", NULL, "batch of %zu not executed (%s): %s", w->b.n,
               oe_strerror(rc), err);
        if (attempt == 5 || !atomic_load(&w->running)) {
            if (atomic_load(&w->running))
                worker_fail(w,
                            rc == OE_ESTORE ? "the ledger keeps failing" : "memory keeps failing",
                            "%s keeps failing (reasons in the log)",
                            rc == OE_ESTORE ? "the ledger" : "memory");
            return -1;
        }
        oe_sleep_ms(backoff);
        backoff *= 2;
    }
}

/* The info line of a published batch (SPEC §11): its messages by outcome
 * and its time from decoding to the commit. */
static void log_batch(oe_worker *w, size_t ne, double seconds)
{
    if (!oe_log_enabled(OE_LOG_INFO))
        return;
    size_t count[3] = {0, 0, 0};
    for (size_t i = 0; i < ne; i++)
        count[w->b.engine_items[i]->out.status]++;
    oe_log(OE_LOG_INFO, "worker",
           OE_LOG_FIELDS("messages", OE_LOG_INT(w->b.n), "executed",
                         OE_LOG_INT(count[OE_STATUS_EXECUTED]), "replayed",
                         OE_LOG_INT(count[OE_STATUS_REPLAYED]), "rejected",
                         OE_LOG_INT(count[OE_STATUS_REJECTED]), "dead_lettered",
                         OE_LOG_INT(w->b.n - ne), "ms", OE_LOG_INT((long long)(seconds * 1000))),
           "batch");
}

/* Counts and logs the batch in hand once its receipts are acknowledged and
 * its offsets committed. */
static void batch_published(oe_worker *w, size_t ne, double seconds)
{
    atomic_fetch_add(&w->cfg.kafka_metrics->receipts_produced, (unsigned long long)ne);
    atomic_fetch_add(&w->cfg.kafka_metrics->dead_letters, w->b.n - ne);
    log_batch(w, ne, seconds);
}

/* Finishes the batch in flight (w->in), if any: waits until its receipts
 * are acknowledged (producing failed ones again), commits its offsets,
 * and releases it. Called before the next batch is published, when no
 * message is waiting, before partitions are revoked and when stopping.
 * Returns 0, or -1 when it could not be published (the worker is stopping
 * or failed): it stays uncommitted and is re-delivered. */
static int finish_inflight(oe_worker *w)
{
    if (!w->in.active || w->finishing)
        return 0;
    w->finishing = 1;
    /* The publishing code works on the batch in hand: swap them. */
    batch t = w->b;
    w->b = w->in;
    w->in = t;
    int rc = publish_finish(w, 0);
    if (rc == 0) {
        commit_offsets(w);
        batch_published(w, (size_t)w->b.ne, oe_monotonic() - w->b.started);
    }
    clear_requests(w);
    for (size_t i = 0; i < w->b.n; i++) {
        rd_kafka_message_destroy(w->b.slots[i].msg);
        w->b.slots[i].msg = NULL;
    }
    w->b.n = 0;
    w->b.bytes = 0;
    w->b.active = 0;
    t = w->b;
    w->b = w->in;
    w->in = t;
    w->finishing = 0;
    return rc;
}

/* Decodes the batch, runs the engine, publishes, commits. */
static void process_batch(oe_worker *w)
{
    double t0 = oe_monotonic();
    long ne = execute_batch(w);
    if (ne < 0)
        return;
    /* The documents are the bulk of a request's memory; receipts need only
     * the names, the outcome and the message. Free them now. */
    for (size_t i = 0; i < w->b.n; i++)
        if (!w->b.slots[i].dead)
            oe_request_drop_payload(&w->b.slots[i].item.req);
    atomic_store(&w->cfg.kafka_metrics->last_batch_size, (long long)w->b.n);
    oe_kafka_metrics_batch(w->cfg.kafka_metrics, w->b.n);

    if (w->cfg.kafka->transactions) {
        /* One batch at a time: its receipts and offsets commit in its
         * transaction, which must end before the next batch's begins. */
        for (long delay = 100;;) {
            if (publish_transactional(w) == 0) {
                batch_published(w, (size_t)ne, oe_monotonic() - t0);
                break;
            }
            /* Stopping or failed: leave the batch uncommitted. */
            if (atomic_load(&w->failed) || !atomic_load(&w->running))
                break;
            oe_sleep_ms(delay);
            delay = delay * 2 > 5000 ? 5000 : delay * 2;
        }
        clear_requests(w);
        return;
    }
    /* The batch before this one is finished first (its receipts
     * acknowledged, its offsets committed), so offsets are committed in
     * order; this one's receipts are then produced, and acknowledged while
     * the next batch is gathered and executed. A batch before that could
     * not be finished leaves this one unpublished and uncommitted too (the
     * worker is stopping or failed: both are re-delivered and answered
     * from the ledger). */
    if (finish_inflight(w) != 0 || publish_start(w) != 0) {
        clear_requests(w);
        return;
    }
    w->b.started = t0;
    w->b.ne = ne;
    batch t = w->in;
    w->in = w->b;
    w->b = t;
    w->in.active = 1;
}

/* Sums (high watermark - position) over the assignment, about once a
 * second. */
static void update_lag(oe_worker *w)
{
    double now = oe_monotonic();
    if (now - w->last_lag_update < 1.0)
        return;
    w->last_lag_update = now;
    rd_kafka_topic_partition_list_t *list = NULL;
    if (rd_kafka_assignment(w->consumer, &list) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_position(w->consumer, list);
    long long lag = 0;
    long long *part_lag = w->part_lag;
    for (int p = 0; p < OE_KAFKA_METRICS_LAG_PARTITIONS; p++)
        part_lag[p] = -1;
    for (int i = 0; i < list->cnt; i++) {
        int64_t lo, hi;
        int32_t part = list->elems[i].partition;
        if (rd_kafka_get_watermark_offsets(w->consumer, list->elems[i].topic, part, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0) {
            int64_t pos = list->elems[i].offset >= 0 ? list->elems[i].offset : lo;
            long long behind = hi > pos ? hi - pos : 0;
            lag += behind;
            if (part >= 0 && part < OE_KAFKA_METRICS_LAG_PARTITIONS)
                part_lag[part] = behind;
        }
    }
    atomic_store(&w->cfg.kafka_metrics->consumer_lag, lag);
    for (int p = 0; p < OE_KAFKA_METRICS_LAG_PARTITIONS; p++)
        atomic_store(&w->cfg.kafka_metrics->partition_lag[p], part_lag[p]);
    rd_kafka_topic_partition_list_destroy(list);
}

/* The consumer reads with auto.offset.reset=error, so that a partition
 * whose position is no longer on the broker is reported instead of being
 * silently moved. Without a committed offset (a new group or partition)
 * that is the normal start: read from the beginning. With one, requests
 * between the committed offset and the broker's log start are gone unread
 * (retention, or the embedded broker's per-partition cap): that is data
 * loss, logged as an error, counted, and kept as a /ready reason. */
static void handle_offset_reset(oe_worker *w, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, m->partition);
    rd_kafka_resp_err_t err = rd_kafka_committed(w->consumer, list, 5000);
    if (!err)
        err = list->elems[0].err;
    int64_t committed = list->elems[0].offset;
    if (err) {
        /* Cannot tell a new partition from a lost position: fail closed. */
        char reason[512];
        snprintf(reason, sizeof reason,
                 "possible data loss on %s [%d]: its position is no longer on the broker and "
                 "the committed offset cannot be read",
                 topic, (int)m->partition);
        oe_log(OE_LOG_ERROR, "worker", NULL, "%s (%s)", reason, rd_kafka_err2str(err));
        atomic_fetch_add(&w->cfg.kafka_metrics->data_loss_events, 1);
        if (!atomic_load(&w->data_lost)) {
            memcpy(w->data_loss_reason, reason, sizeof reason);
            atomic_store(&w->data_lost, 1);
        }
    } else if (committed >= 0) {
        int64_t lo = -1, hi = -1;
        rd_kafka_query_watermark_offsets(w->consumer, topic, m->partition, &lo, &hi, 5000);
        char reason[512];
        snprintf(reason, sizeof reason,
                 "data loss on %s [%d]: committed offset %lld is no longer on the broker "
                 "(log now %lld..%lld): %lld requests were dropped unread",
                 topic, (int)m->partition, (long long)committed, (long long)lo, (long long)hi,
                 (long long)(lo > committed ? lo - committed : 0));
        oe_log(OE_LOG_ERROR, "worker", NULL, "%s", reason);
        atomic_fetch_add(&w->cfg.kafka_metrics->data_loss_events, 1);
        if (!atomic_load(&w->data_lost)) {
            memcpy(w->data_loss_reason, reason, sizeof reason);
            atomic_store(&w->data_lost, 1);
        }
    }
    /* A partition stopped by the reset error does not fetch again after a
     * seek (librdkafka 2.0): assign it anew, from its log start. */
    list->elems[0].offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *e = rd_kafka_incremental_unassign(w->consumer, list);
    if (!e)
        e = rd_kafka_incremental_assign(w->consumer, list);
    if (e) {
        oe_log(OE_LOG_WARN, "worker", NULL, "restart %s [%d]: %s", topic, (int)m->partition,
               rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* Handles a consumer event that is not a message (an error, an offset
 * reset). Returns 1 when m was such an event (and is destroyed), 0 when it
 * is a message. */
static int consumer_event(oe_worker *w, rd_kafka_message_t *m)
{
    if (!m->err)
        return 0;
    if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        char errstr[512];
        rd_kafka_fatal_error(w->consumer, errstr, sizeof errstr);
        worker_fail(w, "fatal consumer error", "fatal consumer error: %s", errstr);
    } else if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && m->rkt) {
        handle_offset_reset(w, m);
    } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        oe_kafka_consumer_error("worker", m);
    }
    rd_kafka_message_destroy(m);
    return 1;
}

/* Gathers a batch: waits up to timeout ms for a first message, then takes
 * whatever is already fetched, up to batch_max messages or
 * OE_WORKER_BATCH_BYTES of them (the message that passes the budget is the
 * last one taken). */
static void gather(oe_worker *w, int timeout)
{
    w->b.n = 0;
    w->b.bytes = 0;
    while (w->b.n < w->cfg.batch_max && w->b.bytes < OE_WORKER_BATCH_BYTES) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, timeout);
        if (!m)
            break;
        timeout = 0;
        if (consumer_event(w, m))
            continue;
        w->b.bytes += m->len;
        w->b.slots[w->b.n++].msg = m;
    }
}

/* Pauses the whole assignment while the ledger is down or not shared by
 * the group, and resumes it when neither holds. Paused partitions fetch
 * nothing; on resume they go on from the last message handed to us. */
static void update_pause(oe_worker *w)
{
    int want = atomic_load(&w->ledger_down) || atomic_load(&w->unshared);
    if (want == w->paused)
        return;
    rd_kafka_topic_partition_list_t *list = NULL;
    if (rd_kafka_assignment(w->consumer, &list) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_resp_err_t err = want ? rd_kafka_pause_partitions(w->consumer, list)
                                   : rd_kafka_resume_partitions(w->consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        w->paused = want;
}

/* Sets the consumer of each partition in the batch back to its first
 * message there and drops the batch: nothing of it was processed, and it
 * is fetched again once consumption resumes. */
static void rewind_batch(oe_worker *w)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)w->b.n);
    for (size_t i = 0; i < w->b.n; i++) {
        rd_kafka_message_t *m = w->b.slots[i].msg;
        const char *topic = rd_kafka_topic_name(m->rkt);
        if (!rd_kafka_topic_partition_list_find(list, topic, m->partition))
            rd_kafka_topic_partition_list_add(list, topic, m->partition)->offset = m->offset;
        rd_kafka_message_destroy(m);
        w->b.slots[i].msg = NULL;
    }
    w->b.n = 0;
    w->b.bytes = 0;
    if (list->cnt > 0) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(w->consumer, list, 5000);
        if (e) {
            /* The position cannot be set back: stop rather than skip. */
            worker_fail(w, "cannot rewind the consumer", "cannot rewind the consumer: %s",
                        rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* Serves the group (rebalances, errors) for ms while consumption is
 * paused. A message that still arrives joins the batch in hand when there
 * is room (it is the next of its partition); otherwise the batch in hand
 * is given up and rewound with it. Returns 0, or -1 when the batch in hand
 * was given up. */
static int wait_polling(oe_worker *w, long ms)
{
    double end = oe_monotonic() + (double)ms / 1000.0;
    while (atomic_load(&w->running) && oe_monotonic() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 100);
        if (!m || consumer_event(w, m))
            continue;
        w->b.slots[w->b.n++].msg = m;
        w->b.bytes += m->len;
        if (w->b.n == w->cfg.batch_max) {
            rewind_batch(w);
            return -1;
        }
    }
    return 0;
}

/* The ledger could not be reached: pause, and say so (/ready's "ledger
 * unavailable", a metric) and why (a log line at the start and every 30 s). */
static void ledger_unavailable(oe_worker *w, const char *why)
{
    if (!atomic_exchange(&w->ledger_down, 1))
        oe_log_limit_reset(&w->ledger_log);
    oe_log_limited(&w->ledger_log, 0, OE_LOG_ERROR, "worker",
                   "ledger unavailable, consumption paused, retrying: %s", why);
    atomic_store(&w->cfg.kafka_metrics->ledger_unavailable, 1);
    update_pause(w);
}

static void ledger_available(oe_worker *w)
{
    if (!atomic_exchange(&w->ledger_down, 0))
        return;
    oe_log(OE_LOG_INFO, "worker", NULL, "ledger available again, consumption resumed");
    atomic_store(&w->cfg.kafka_metrics->ledger_unavailable, 0);
    update_pause(w);
}

/* Partitions of the requests topic, from the brokers; -1 when unknown. */
static int requests_partitions(oe_worker *w)
{
    char err[256];
    return oe_kafka_partition_count(w->consumer, w->cfg.kafka->requests_topic, 5000, err,
                                    sizeof err);
}

/* Fails closed on a private ledger: nonce and approval single use hold
 * across the workers that share a ledger, and only there. A worker whose
 * ledger is not shared (a SQLite file, OPENEXEC_LEDGER_SHARED unset) that
 * owns fewer than all partitions of the requests topic has other members
 * in its group, which would answer from other ledgers: it stops consuming
 * until it is alone again. Checked after every assignment change and every
 * few seconds (a topic may grow). */
static void check_sharing(oe_worker *w)
{
    if (w->cfg.ledger_shared)
        return;
    double now = oe_monotonic();
    if (!w->sharing_dirty && now - w->last_sharing_check < 5.0)
        return;
    w->sharing_dirty = 0;
    w->last_sharing_check = now;
    int assigned = atomic_load(&w->assigned);
    int total = assigned > 0 ? requests_partitions(w) : 0;
    char reason[512] = "";
    if (assigned > 0 && total < 0)
        snprintf(reason, sizeof reason,
                 "cannot read the partition count of %s to tell whether this worker is alone in "
                 "group %s; its ledger is a private SQLite file",
                 w->cfg.kafka->requests_topic, w->cfg.kafka->group_id);
    else if (assigned > 0 && assigned < total)
        snprintf(reason, sizeof reason,
                 "group %s has other members (this worker owns %d of %d partitions of %s) but "
                 "its ledger is a private SQLite file: nonces and approvals would not be single "
                 "use across them; consumption stopped (use a PostgreSQL ledger, or set "
                 "OPENEXEC_LEDGER_SHARED=1 if every member opens this same file)",
                 w->cfg.kafka->group_id, assigned, total, w->cfg.kafka->requests_topic);
    if (reason[0]) {
        pthread_mutex_lock(&w->reason_lock);
        snprintf(w->unshared_reason, sizeof w->unshared_reason, "%s", reason);
        pthread_mutex_unlock(&w->reason_lock);
        if (!atomic_exchange(&w->unshared, 1)) {
            oe_log(OE_LOG_ERROR, "worker", NULL, "%s", reason);
            atomic_fetch_add(&w->cfg.kafka_metrics->ledger_unshared_events, 1);
        }
        atomic_store(&w->cfg.kafka_metrics->ledger_unshared, 1);
    } else if (atomic_exchange(&w->unshared, 0)) {
        oe_log(OE_LOG_INFO, "worker", NULL, "alone in group %s again, consumption resumed",
               w->cfg.kafka->group_id);
        atomic_store(&w->cfg.kafka_metrics->ledger_unshared, 0);
    }
    update_pause(w);
}

/* Learns where receipts and dead letters go before the first batch, not at
 * its first produce: an unknown topic's first message otherwise waits for a
 * metadata round (about a second). Runs on the worker thread, so that an
 * unreachable broker does not hold up start-up. */
static void warm_up_metadata(oe_worker *w)
{
    for (size_t i = 0; i < 2 && atomic_load(&w->running); i++) {
        const struct rd_kafka_metadata *md = NULL;
        if (w->out_topics[i] && rd_kafka_metadata(w->producer, 0, w->out_topics[i], &md, 2000) ==
                                    RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_metadata_destroy(md);
    }
}

/* Until the cluster has answered once (start-up found it unreachable): a
 * refusal of our credentials or certificate, or a topic of ours missing,
 * stops the worker with the reason; unreachable brokers are tried again
 * each second. */
static void check_cluster(oe_worker *w)
{
    if (w->cluster_ok || oe_monotonic() < w->next_cluster_check)
        return;
    w->next_cluster_check = oe_monotonic() + 1.0;
    const oe_kafka_settings *k = w->cfg.kafka;
    const char *topics[] = {k->requests_topic, k->receipts_topic, k->dlq_topic};
    char why[512];
    int rc = oe_kafka_check_cluster(w->consumer, topics, 3, 1, NULL, NULL, why, sizeof why);
    if (rc == OE_KAFKA_CHECK_OK)
        w->cluster_ok = 1;
    else if (rc != OE_KAFKA_CHECK_UNREACHABLE)
        worker_fail(w,
                    rc == OE_KAFKA_CHECK_REFUSED ? "brokers refused the connection"
                                                 : "a topic is missing or unavailable",
                    "%s", why);
}

static void *worker_main(void *arg)
{
    oe_worker *w = arg;
    warm_up_metadata(w);
    while (atomic_load(&w->running)) {
        check_cluster(w);
        check_sharing(w);
        /* With a batch in flight, only what is already fetched: when
         * nothing is, that batch is finished now rather than after the
         * next one (its offsets, counters and log line wait for it). */
        gather(w, w->in.active ? 0 : 100);
        if (w->b.n == 0 && w->in.active)
            finish_inflight(w);
        retry_pending_commit(w, 0);
        /* The assignment may have changed while gathering. */
        check_sharing(w);
        if (w->b.n > 0 && atomic_load(&w->unshared))
            rewind_batch(w);
        if (w->b.n > 0)
            process_batch(w);
        for (size_t i = 0; i < w->b.n; i++) {
            rd_kafka_message_destroy(w->b.slots[i].msg);
            w->b.slots[i].msg = NULL;
        }
        w->b.n = 0;
        update_lag(w);
        oe_kafka_probe(w->consumer);
    }
    finish_inflight(w);
    retry_pending_commit(w, 1); /* stopping: before the group is left */
    return NULL;
}

static void free_batch(oe_worker *w, batch *b)
{
    if (b->slots)
        for (size_t i = 0; i < w->cfg.batch_max; i++) {
            if (i < b->n) {
                rd_kafka_message_destroy(b->slots[i].msg);
                if (!b->slots[i].dead)
                    oe_request_clear(&b->slots[i].item.req);
            }
            oe_outcome_clear(&b->slots[i].item.out);
        }
    free(b->slots);
    free(b->engine_items);
    memset(b, 0, sizeof *b);
}

static void free_slots(oe_worker *w)
{
    free_batch(w, &w->b);
    free_batch(w, &w->in);
    oe_buf_free(&w->encoded);
}

/* The consumer. Its prefetch is bounded too: at most
 * OE_WORKER_PREFETCH_KBYTES queued, fetched OE_WORKER_FETCH_BYTES at a time,
 * so that with the batch budget a worker's memory has a ceiling whatever
 * the size of the messages on the topic. */
static rd_kafka_t *new_consumer(oe_worker *w, char *err, size_t errlen)
{
    const oe_kafka_settings *k = w->cfg.kafka;
    char prefetch[32], fetch[32];
    snprintf(prefetch, sizeof prefetch, "%d", OE_WORKER_PREFETCH_KBYTES);
    snprintf(fetch, sizeof fetch, "%d", OE_WORKER_FETCH_BYTES);
    /* clang-format off */
    const char *defaults[] = {
        "fetch.wait.max.ms",             "5", /* low latency for the HTTP bridge */
        "session.timeout.ms",            "10000",
        "queued.max.messages.kbytes",    prefetch,
        "fetch.max.bytes",               fetch,
        NULL,
    };
    const char *forced[] = {
        "group.id",                 k->group_id,
        "enable.auto.commit",       "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof",     "false",
        "auto.offset.reset",        "error", /* see handle_offset_reset */
        "partition.assignment.strategy", "cooperative-sticky", /* handle_offset_reset */
        k->group_instance_id ? "group.instance.id" : NULL, k->group_instance_id,
        NULL,
    };
    /* clang-format on */
    oe_kafka_hooks hooks = {.opaque = w, .on_rebalance = on_rebalance};
    return oe_kafka_new(RD_KAFKA_CONSUMER, k, defaults, forced, &hooks, "consumer", err, errlen);
}

/* The producer of receipts and dead letters: idempotent, acks=all, and
 * transactional when configured. message.max.bytes: a dead letter is as
 * large as the request it carries, up to what the broker accepted on the
 * requests topic. */
static rd_kafka_t *new_producer(oe_worker *w, char *err, size_t errlen)
{
    const oe_kafka_settings *k = w->cfg.kafka;
    /* clang-format off */
    const char *defaults[] = {
        "linger.ms",          "1",
        "message.timeout.ms", "30000",
        "message.max.bytes",  "4194304",
        NULL,
    };
    const char *forced[] = {
        "enable.idempotence", "true",
        "acks",               "all",
        k->transactions ? "transactional.id" : NULL, k->transactional_id,
        NULL,
    };
    /* clang-format on */
    oe_kafka_hooks hooks = {.opaque = w, .on_delivery = on_delivery};
    return oe_kafka_new(RD_KAFKA_PRODUCER, k, defaults, forced, &hooks, "producer", err, errlen);
}

/* Creates the producer's topic handles and, with transactions, its
 * transactional state. Returns 0, or -1 with err. */
static int producer_ready(oe_worker *w, char *err, size_t errlen)
{
    const oe_kafka_settings *k = w->cfg.kafka;
    w->out_topics[0] = rd_kafka_topic_new(w->producer, k->receipts_topic, NULL);
    w->out_topics[1] = rd_kafka_topic_new(w->producer, k->dlq_topic, NULL);
    if (!w->out_topics[0] || !w->out_topics[1]) {
        snprintf(err, errlen, "cannot create the producer's topic handles");
        return -1;
    }
    if (!k->transactions)
        return 0;
    for (long delay = 100;;) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(w->producer, w->cfg.txn_timeout_ms);
        if (!e)
            return 0;
        int retry = rd_kafka_error_is_retriable(e) && atomic_load(&w->running);
        snprintf(err, errlen, "init transactions: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        if (!retry)
            return -1;
        oe_log(OE_LOG_WARN, "worker", NULL, "%s (retrying)", err);
        oe_sleep_ms(delay);
        delay = delay * 2 > 5000 ? 5000 : delay * 2;
    }
}

static void producer_free(oe_worker *w)
{
    for (size_t i = 0; i < 2; i++)
        if (w->out_topics[i]) {
            rd_kafka_topic_destroy(w->out_topics[i]);
            w->out_topics[i] = NULL;
        }
    if (w->producer) {
        rd_kafka_destroy(w->producer);
        w->producer = NULL;
    }
}

/* librdkafka: after a fatal error the producer can do nothing more and
 * must be replaced. The new one has the same transactional.id, so its
 * init fences the old epoch and aborts the transaction left open; the
 * caller publishes the batch again (its outcomes are in the ledger). A
 * producer fenced by another instance of the same transactional.id is
 * replaced once a minute at most: fenced again within the minute, this
 * worker stops and leaves the partitions to the other. Other fatal errors
 * are answered up to RENEWALS_PER_MINUTE times a minute. Returns 0, or -1
 * once the worker stopped (w->failed). */
#define RENEWALS_PER_MINUTE 5
static int renew_producer(oe_worker *w)
{
    char why[512];
    rd_kafka_resp_err_t code = rd_kafka_fatal_error(w->producer, why, sizeof why);
    if (!code)
        snprintf(why, sizeof why, "%s", "fatal error");
    int fenced = code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED;
    double now = oe_monotonic();
    if (w->renew_window == 0 || now - w->renew_window > 60) {
        w->renew_window = now;
        w->renewals = w->fenced_renewals = 0;
    }
    if (fenced && ++w->fenced_renewals > 1) {
        worker_fail(w,
                    "fenced twice within a minute: another worker uses the same "
                    "transactional.id",
                    "fenced twice within a minute: another worker uses transactional.id %s "
                    "(%s)",
                    w->cfg.kafka->transactional_id, why);
        return -1;
    }
    if (++w->renewals > RENEWALS_PER_MINUTE) {
        worker_fail(w, "fatal producer error (the producer was replaced too often)",
                    "fatal producer error: %s (the producer was replaced %d times within a "
                    "minute)",
                    why, RENEWALS_PER_MINUTE);
        return -1;
    }
    oe_log(OE_LOG_WARN, "worker", NULL, "fatal producer error: %s; replacing the producer", why);
    atomic_fetch_add(&w->cfg.kafka_metrics->producer_renewals, 1);
    w->b.generation = ++w->generations; /* the old producer's delivery reports are ignored */
    rd_kafka_purge(w->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(w->producer, 0);
    producer_free(w);
    char err[512];
    if (!(w->producer = new_producer(w, err, sizeof err)) || producer_ready(w, err, sizeof err)) {
        worker_fail(w, "cannot replace the producer", "cannot replace the producer: %s", err);
        return -1;
    }
    return 0;
}

oe_rc oe_worker_new(const oe_worker_config *cfg, oe_worker **out, char *err, size_t errlen)
{
    oe_rc rc = OE_ENOMEM;
    oe_worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    w->ledger_log.interval = 30.0;
    w->cfg = *cfg;
    pthread_mutex_init(&w->reason_lock, NULL);
    if (!w->cfg.batch_max)
        w->cfg.batch_max = 5000;
    if (w->cfg.txn_timeout_ms <= 0)
        w->cfg.txn_timeout_ms = 60000;
    size_t n = w->cfg.batch_max;
    oe_buf_init(&w->encoded, 0);
    for (int k = 0; k < 2; k++) {
        batch *b = k ? &w->in : &w->b;
        b->slots = calloc(n, sizeof *b->slots);
        b->engine_items = calloc(n, sizeof *b->engine_items);
        if (!b->slots || !b->engine_items) {
            snprintf(err, errlen, "out of memory");
            goto error;
        }
        for (size_t i = 0; i < n; i++)
            oe_outcome_init(&b->slots[i].item.out);
    }
    rc = OE_EIO;
    if (oe_codec_new(cfg->confluent_schema_id, &w->codec, err, errlen) != 0)
        goto error;
    rc = OE_EINVAL; /* a refused property or client set-up */
    if (!(w->consumer = new_consumer(w, err, errlen)) ||
        !(w->producer = new_producer(w, err, errlen)))
        goto error;
    rc = OE_EIO; /* from here on, failures are of the run time */
    if (producer_ready(w, err, errlen) != 0)
        goto error;
    *out = w;
    return OE_OK;
error:
    oe_worker_free(w);
    return rc;
}

/* The embedded broker of this process: every partition of the requests
 * topic is this worker's, taken at once with the group's committed offsets
 * (as a rebalance would give them) instead of waiting out the broker's
 * first join. Offsets are still committed to the group. */
static int assign_all(oe_worker *w, char *err, size_t errlen)
{
    int n = requests_partitions(w);
    if (n <= 0) {
        snprintf(err, errlen, "cannot read the partitions of %s on the embedded broker",
                 w->cfg.kafka->requests_topic);
        return -1;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(parts, w->cfg.kafka->requests_topic, i);
    on_rebalance(w->consumer, RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, parts, w);
    rd_kafka_topic_partition_list_destroy(parts);
    if (atomic_load(&w->assigned) != n) {
        snprintf(err, errlen, "cannot assign the partitions of %s on the embedded broker",
                 w->cfg.kafka->requests_topic);
        return -1;
    }
    return 0;
}

int oe_worker_start(oe_worker *w, char *err, size_t errlen)
{
    const oe_kafka_settings *k = w->cfg.kafka;
    if (w->cfg.own_broker && assign_all(w, err, errlen) != 0)
        return -1;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, k->requests_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rerr =
        w->cfg.own_broker ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_subscribe(w->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (rerr) {
        snprintf(err, errlen, "subscribe to %s: %s", k->requests_topic, rd_kafka_err2str(rerr));
        return -1;
    }
    atomic_store(&w->running, 1);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        atomic_store(&w->running, 0);
        snprintf(err, errlen, "cannot start the worker thread");
        return -1;
    }
    w->thread_started = 1;
    return 0;
}

int oe_worker_ready(oe_worker *w, char *reason, size_t len)
{
    if (atomic_load(&w->failed)) {
        snprintf(reason, len, "worker stopped: %s", w->fail_public);
        return 0;
    }
    if (atomic_load(&w->data_lost)) {
        snprintf(reason, len, "%s (restart the worker to acknowledge)", w->data_loss_reason);
        return 0;
    }
    /* The ledger's own reason (host, server message) is in the log only. */
    if (atomic_load(&w->ledger_down)) {
        snprintf(reason, len, "ledger unavailable");
        return 0;
    }
    if (atomic_load(&w->unshared)) {
        pthread_mutex_lock(&w->reason_lock);
        snprintf(reason, len, "%s", w->unshared_reason);
        pthread_mutex_unlock(&w->reason_lock);
        return 0;
    }
    if (atomic_load(&w->stalled)) {
        pthread_mutex_lock(&w->reason_lock);
        snprintf(reason, len, "%s", w->stall_reason);
        pthread_mutex_unlock(&w->reason_lock);
        return 0;
    }
    if (atomic_load(&w->assigned) <= 0) {
        snprintf(reason, len, "waiting for a partition assignment of %s",
                 w->cfg.kafka->requests_topic);
        return 0;
    }
    return 1;
}

int oe_worker_failed(oe_worker *w, char *err, size_t errlen)
{
    if (!atomic_load(&w->failed))
        return 0;
    snprintf(err, errlen, "%s", w->fail_reason);
    return 1;
}

/* Seconds for each step of leaving the group at stop. */
#define LEAVE_SECONDS 4.0

typedef struct closing {
    rd_kafka_t *consumer;
    atomic_int done;
} closing;

static void *close_thread(void *arg)
{
    closing *c = arg;
    rd_kafka_consumer_close(c->consumer);
    atomic_store(&c->done, 1);
    return NULL;
}

/* Leaves the group, bounded in time. librdkafka 2.0 can hang in
 * rd_kafka_consumer_close when an assignment arrives while it closes
 * during a cooperative rebalance (librdkafka#4527, fixed upstream in 2.4;
 * seen here when a worker is stopped as another joins). So: give the
 * partitions back first (unsubscribe, serving the rebalance until nothing
 * is assigned; polled messages are dropped, uncommitted, for their next
 * owner), then close in a thread of its own, waited for at most
 * LEAVE_SECONDS. A consumer that still does not close is left as it is
 * (never destroyed) and the stop goes on: the group sees the member's
 * session expire, as after a crash; every outcome is already committed.
 * A static member keeps its partitions instead (no unsubscribe: that
 * would rejoin with an empty subscription and rebalance the group), so
 * that its restart within the session timeout moves nothing. */
static void leave_group(oe_worker *w)
{
    double deadline = oe_monotonic() + LEAVE_SECONDS;
    if (w->cfg.own_broker)
        rd_kafka_assign(w->consumer, NULL);
    else if (!w->cfg.kafka->group_instance_id)
        rd_kafka_unsubscribe(w->consumer);
    else
        deadline = 0; /* straight to the close */
    for (;;) {
        rd_kafka_topic_partition_list_t *owned = NULL;
        int left = rd_kafka_assignment(w->consumer, &owned) == RD_KAFKA_RESP_ERR_NO_ERROR && owned
                       ? owned->cnt
                       : 0;
        if (owned)
            rd_kafka_topic_partition_list_destroy(owned);
        if (left == 0 || oe_monotonic() > deadline)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 100);
        if (m)
            rd_kafka_message_destroy(m);
    }
    closing *c = calloc(1, sizeof *c);
    pthread_t t;
    if (!c || (c->consumer = w->consumer, pthread_create(&t, NULL, close_thread, c) != 0)) {
        free(c);
        rd_kafka_consumer_close(w->consumer);
        return;
    }
    deadline = oe_monotonic() + LEAVE_SECONDS;
    while (!atomic_load(&c->done) && oe_monotonic() < deadline)
        oe_sleep_ms(10);
    if (atomic_load(&c->done)) {
        pthread_join(t, NULL);
        free(c);
        return;
    }
    pthread_detach(t); /* c is the thread's now, and leaks with the consumer */
    oe_log(OE_LOG_WARN, "worker", NULL,
           "the consumer did not leave the group within %.0f s (a rebalance in progress?); "
           "stopping without it: the group sees its session expire",
           LEAVE_SECONDS);
    w->consumer_abandoned = 1;
}

void oe_worker_stop(oe_worker *w)
{
    if (!w || w->stopped)
        return;
    w->stopped = 1;
    atomic_store(&w->running, 0);
    if (w->thread_started) {
        pthread_join(w->thread, NULL);
        w->thread_started = 0;
    }
    if (w->consumer)
        leave_group(w);
    if (w->producer)
        rd_kafka_flush(w->producer, 5000);
}

void oe_worker_free(oe_worker *w)
{
    if (!w)
        return;
    oe_worker_stop(w);
    if (w->consumer && !w->consumer_abandoned)
        rd_kafka_destroy(w->consumer);
    producer_free(w);
    if (w->pending_commit)
        rd_kafka_topic_partition_list_destroy(w->pending_commit);
    oe_codec_free(w->codec);
    free_slots(w);
    pthread_mutex_destroy(&w->reason_lock);
    free(w);
}
