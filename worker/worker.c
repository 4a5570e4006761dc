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

#include "worker/codec.h"

/* What a message of the batch became after decoding. */
enum { SLOT_REQUEST, SLOT_DEAD };

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

struct oe_worker {
    oe_worker_config cfg;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    oe_codec *codec;
    pthread_t thread;
    int thread_started;
    atomic_int running;       /* cleared by oe_worker_stop */
    atomic_int failed;        /* set when the worker stopped on a fatal error */
    char fail_reason[512];
    atomic_int assigned;      /* partitions currently assigned */

    /* The batch in hand. Arrays of batch_max entries, reused. */
    rd_kafka_message_t **msgs;
    size_t n;
    int *kind;                /* SLOT_REQUEST or SLOT_DEAD */
    size_t *engine_index;     /* SLOT_REQUEST: index into the engine arrays */
    int *delivery;            /* DELIVERY_* */
    oe_request *reqs;         /* engine arrays: requests in batch order */
    oe_error_code *codes;
    char (*details)[512];
    const char **detail_ptrs;
    oe_outcome *outs;
    oe_buf encoded;           /* scratch for one encoded receipt */
    rd_kafka_resp_err_t delivery_error; /* the last failed delivery's error */
    uintptr_t generation;     /* of the batch being published */
    int *truncate;            /* dead letter too large: send headers only */
    rd_kafka_resp_err_t *slot_error; /* why a slot's last delivery failed */
    rd_kafka_topic_t *out_topics[2]; /* receipts and DLQ, held so their metadata stays known */
    double last_lag_update;
};

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

__attribute__((format(printf, 2, 3))) static void fail(oe_worker *w, const char *fmt, ...)
{
    if (atomic_load(&w->failed))
        return;
    /* Only the worker thread calls this: write the reason, then publish. */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->fail_reason, sizeof w->fail_reason, fmt, ap);
    va_end(ap);
    atomic_store(&w->failed, 1);
    fprintf(stderr, "openexec: worker stopped: %s\n", w->fail_reason);
    atomic_store(&w->running, 0);
}

/* Delivery reports arrive on the worker thread, inside rd_kafka_flush. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    oe_worker *w = opaque;
    uintptr_t tag = (uintptr_t)m->_private;
    size_t slot = (size_t)(tag & SLOT_MASK);
    if ((tag >> SLOT_BITS) != (w->generation & (UINTPTR_MAX >> SLOT_BITS)) || slot >= w->n)
        return;
    if (m->err) {
        w->delivery[slot] = DELIVERY_FAILED;
        w->slot_error[slot] = w->delivery_error = m->err;
    } else {
        w->delivery[slot] = DELIVERY_OK;
    }
}

/* Drops messages of revoked partitions from the batch being gathered: they
 * have not been processed, and their new owner starts from the committed
 * offset. */
static void drop_revoked(oe_worker *w, const rd_kafka_topic_partition_list_t *parts)
{
    size_t keep = 0;
    for (size_t i = 0; i < w->n; i++) {
        rd_kafka_message_t *m = w->msgs[i];
        int revoked = 0;
        for (int k = 0; k < parts->cnt && !revoked; k++)
            revoked = parts->elems[k].partition == m->partition &&
                      strcmp(parts->elems[k].topic, rd_kafka_topic_name(m->rkt)) == 0;
        if (revoked)
            rd_kafka_message_destroy(m);
        else
            w->msgs[keep++] = m;
    }
    w->n = keep;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    oe_worker *w = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (cooperative) {
            error = rd_kafka_incremental_assign(rk, parts);
            if (!error)
                atomic_fetch_add(&w->assigned, parts->cnt);
        } else {
            rerr = rd_kafka_assign(rk, parts);
            if (!rerr)
                atomic_store(&w->assigned, parts->cnt);
        }
        fprintf(stderr, "openexec: worker: assigned %d partition(s)\n", parts->cnt);
    } else {
        drop_revoked(w, parts);
        if (cooperative) {
            error = rd_kafka_incremental_unassign(rk, parts);
            atomic_fetch_sub(&w->assigned, parts->cnt);
        } else {
            rerr = rd_kafka_assign(rk, NULL);
            atomic_store(&w->assigned, 0);
        }
        fprintf(stderr, "openexec: worker: revoked %d partition(s)%s\n", parts->cnt,
                rd_kafka_assignment_lost(rk) ? " (lost)" : "");
    }
    if (error) {
        fprintf(stderr, "openexec: worker: rebalance: %s\n", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (rerr) {
        fprintf(stderr, "openexec: worker: rebalance: %s\n", rd_kafka_err2str(rerr));
    }
    atomic_store(&w->cfg.metrics->assigned_partitions, atomic_load(&w->assigned));
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
            RD_KAFKA_V_OPAQUE((void *)((w->generation << SLOT_BITS) | (uintptr_t)slot)),
            RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(w->producer, 50);
            continue;
        }
        rd_kafka_headers_destroy(headers);
        w->slot_error[slot] = w->delivery_error = err;
        return -1;
    }
}

/* Copies the request's correlation header (set by the HTTP bridge) so that
 * the receipt finds its waiter. */
static rd_kafka_headers_t *receipt_headers(const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *in = NULL;
    const void *val;
    size_t size;
    rd_kafka_headers_t *out = rd_kafka_headers_new(1);
    if (rd_kafka_message_headers(m, &in) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(in, OE_HEADER_CORRELATION, &val, &size) ==
            RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_header_add(out, OE_HEADER_CORRELATION, -1, val, (ssize_t)size);
    return out;
}

/* Produces the receipt (or dead letter) of slot i. */
static int produce_slot(oe_worker *w, size_t i)
{
    const rd_kafka_message_t *m = w->msgs[i];
    const oe_kafka_settings *k = w->cfg.kafka;
    if (w->kind[i] == SLOT_DEAD) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(4);
        char num[32];
        const char *reason = w->details[i];
        rd_kafka_header_add(h, "openexec.error", -1, reason, -1);
        rd_kafka_header_add(h, "openexec.source.topic", -1, rd_kafka_topic_name(m->rkt), -1);
        snprintf(num, sizeof num, "%d", (int)m->partition);
        rd_kafka_header_add(h, "openexec.source.partition", -1, num, -1);
        snprintf(num, sizeof num, "%lld", (long long)m->offset);
        rd_kafka_header_add(h, "openexec.source.offset", -1, num, -1);
        if (w->truncate[i]) {
            /* Too large to publish again: the headers say where the
             * original still is. */
            snprintf(num, sizeof num, "%zu", m->len);
            rd_kafka_header_add(h, "openexec.truncated.size", -1, num, -1);
            return produce(w, k->dlq_topic, m->key, m->key_len, NULL, 0, h, i);
        }
        return produce(w, k->dlq_topic, m->key, m->key_len, m->payload, m->len, h, i);
    }
    size_t j = w->engine_index[i];
    const oe_request *r = &w->reqs[j];
    const oe_outcome *o = &w->outs[j];
    int rejected = o->status == OE_STATUS_REJECTED;
    oe_receipt_fields f = {
        .id = rejected ? NULL : o->id,
        .nonce = r->nonce ? r->nonce : "",
        .action = r->action ? r->action : "",
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
    if (oe_codec_encode_receipt(w->codec, &f, w->cfg.receipt_json, &w->encoded, err, sizeof err) != 0) {
        /* Cannot get better by retrying: stop rather than spin or drop. */
        fail(w, "cannot encode the receipt of nonce %.64s: %s", f.nonce, err);
        return -1;
    }
    /* Keyed by nonce, so that every receipt of a nonce lands on one
     * partition; a request without a readable nonce keeps its own key. */
    const void *key = f.nonce[0] ? f.nonce : m->key;
    size_t keylen = f.nonce[0] ? strlen(f.nonce) : m->key_len;
    return produce(w, k->receipts_topic, key, keylen, w->encoded.data, w->encoded.len,
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

/* Waits until every slot has its delivery report, serving reports in short
 * slices so that a stop is noticed. Returns when all are in, or when the
 * worker stops and the grace period is over, or after max seconds. */
static void wait_deliveries(oe_worker *w, double max, double *give_up)
{
    double end = monotonic() + max;
    for (;;) {
        size_t pending = 0;
        for (size_t i = 0; i < w->n; i++)
            pending += w->delivery[i] == DELIVERY_PENDING;
        if (pending == 0 || monotonic() > end)
            return;
        if (!atomic_load(&w->running)) {
            if (*give_up == 0)
                *give_up = monotonic() + STOP_GRACE_SECONDS;
            else if (monotonic() > *give_up)
                return;
        }
        rd_kafka_flush(w->producer, 200);
    }
}

/* Publishes every receipt and dead letter of the batch and waits until the
 * broker acknowledged all of them, producing failed ones again with
 * backoff. In a transaction (once = 1) a failed round ends the attempt: the
 * transaction must be aborted before anything can be produced again.
 * Returns 0, or -1 when the batch must not be committed (fatal or
 * permanent error, shutdown while the broker stays unreachable, or a failed
 * transactional round). */
static int publish_batch(oe_worker *w, int once)
{
    w->generation++;
    for (size_t i = 0; i < w->n; i++) {
        w->delivery[i] = DELIVERY_PENDING;
        w->truncate[i] = 0;
        w->slot_error[i] = RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    long backoff = 100;
    double give_up = 0;
    for (int attempt = 0;; attempt++) {
        for (size_t i = 0; i < w->n; i++) {
            if (w->delivery[i] == DELIVERY_OK)
                continue;
            if (attempt > 0)
                atomic_fetch_add(&w->cfg.metrics->delivery_retries, 1);
            w->delivery[i] = DELIVERY_PENDING;
            if (produce_slot(w, i) != 0)
                w->delivery[i] = DELIVERY_FAILED;
            if (atomic_load(&w->failed))
                return -1;
        }
        wait_deliveries(w, 60, &give_up);
        size_t ok = 0, permanent = 0;
        for (size_t i = 0; i < w->n; i++) {
            ok += w->delivery[i] == DELIVERY_OK;
            rd_kafka_resp_err_t e = w->slot_error[i];
            if (w->delivery[i] == DELIVERY_FAILED && permanent_error(e)) {
                if (w->kind[i] == SLOT_DEAD && !w->truncate[i] &&
                    (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
                     e == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE))
                    w->truncate[i] = 1;
                else
                    permanent++;
            }
        }
        if (ok == w->n)
            return 0;
        char errstr[512];
        if (rd_kafka_fatal_error(w->producer, errstr, sizeof errstr)) {
            fail(w, "fatal producer error: %s", errstr);
            return -1;
        }
        if (permanent) {
            fail(w, "%zu receipts cannot be published: %s", permanent,
                 rd_kafka_err2str(w->delivery_error));
            return -1;
        }
        if (once)
            return -1;
        /* While stopping, keep trying for a while, then leave the batch
         * uncommitted: it is re-delivered and answered from the store. */
        if (!atomic_load(&w->running)) {
            if (give_up == 0)
                give_up = monotonic() + STOP_GRACE_SECONDS;
            else if (monotonic() > give_up)
                return -1;
        }
        fprintf(stderr, "openexec: worker: %zu of %zu deliveries failed (%s); retrying in %ld ms\n",
                w->n - ok, w->n, rd_kafka_err2str(w->delivery_error), backoff);
        sleep_ms(backoff);
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
}

/* The offsets to commit: one past the last message of each partition. */
static rd_kafka_topic_partition_list_t *batch_offsets(oe_worker *w)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    for (size_t i = 0; i < w->n; i++) {
        const rd_kafka_message_t *m = w->msgs[i];
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(list, rd_kafka_topic_name(m->rkt), m->partition);
        if (!p)
            p = rd_kafka_topic_partition_list_add(list, rd_kafka_topic_name(m->rkt), m->partition);
        if (m->offset + 1 > p->offset)
            p->offset = m->offset + 1;
    }
    return list;
}

static void commit_offsets(oe_worker *w)
{
    rd_kafka_topic_partition_list_t *list = batch_offsets(w);
    for (int attempt = 0; attempt < 5; attempt++) {
        rd_kafka_resp_err_t err = rd_kafka_commit(w->consumer, list, 0);
        if (!err)
            break;
        /* After a rebalance the partitions belong to another member, which
         * re-processes from the last commit: its receipts are replays. */
        fprintf(stderr, "openexec: worker: offset commit: %s%s\n", rd_kafka_err2str(err),
                attempt < 4 ? " (retrying)" : " (giving up: the batch will be re-delivered)");
        if (err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
            err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
            err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || err == RD_KAFKA_RESP_ERR__STATE)
            break;
        sleep_ms(100L << attempt);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* Transactional publish: receipts and offsets commit atomically on brokers
 * that honour transactions. Returns 0, or -1 when the transaction was
 * aborted (the caller publishes the batch again in a new one: its outcomes
 * are stored, and the aborted receipts are invisible to read_committed
 * consumers) or the worker must stop (w->failed). */
static int publish_transactional(oe_worker *w)
{
    rd_kafka_error_t *e = rd_kafka_begin_transaction(w->producer);
    if (e)
        goto error;
    if (publish_batch(w, 1) != 0)
        goto abort;
    rd_kafka_topic_partition_list_t *offsets = batch_offsets(w);
    rd_kafka_consumer_group_metadata_t *meta = rd_kafka_consumer_group_metadata(w->consumer);
    e = rd_kafka_send_offsets_to_transaction(w->producer, offsets, meta, 30000);
    rd_kafka_consumer_group_metadata_destroy(meta);
    rd_kafka_topic_partition_list_destroy(offsets);
    if (e)
        goto error;
    e = rd_kafka_commit_transaction(w->producer, 60000);
    if (e)
        goto error;
    return 0;
error:
    fprintf(stderr, "openexec: worker: transaction: %s\n", rd_kafka_error_string(e));
    if (rd_kafka_error_is_fatal(e)) {
        fail(w, "fatal transaction error: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    rd_kafka_error_destroy(e);
abort:
    fprintf(stderr, "openexec: worker: aborting the transaction of a batch of %zu (%s); "
                    "publishing it again\n",
            w->n, rd_kafka_err2str(w->delivery_error));
    e = rd_kafka_abort_transaction(w->producer, 30000);
    if (e) {
        fail(w, "cannot abort a transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    return -1;
}

/* Decodes the batch, runs the engine (one SQLite transaction), publishes,
 * commits. */
static void process_batch(oe_worker *w)
{
    size_t ne = 0;
    for (size_t i = 0; i < w->n; i++) {
        rd_kafka_message_t *m = w->msgs[i];
        oe_error_code code = OE_ERR_NONE;
        char *detail = w->details[i];
        detail[0] = '\0';
        oe_request *r = &w->reqs[ne];
        oe_decode_result res =
            oe_codec_decode_request(w->codec, m->payload, m->len, r, &code, detail, 512);
        if (res == OE_DECODE_DEAD) {
            oe_request_clear(r);
            w->kind[i] = SLOT_DEAD;
            atomic_fetch_add(&w->cfg.metrics->dead_letters, 1);
            continue;
        }
        w->kind[i] = SLOT_REQUEST;
        w->engine_index[i] = ne;
        w->codes[ne] = res == OE_DECODE_OK ? OE_ERR_NONE : code;
        w->detail_ptrs[ne] = detail;
        ne++;
    }
    char err[512];
    double t0 = monotonic();
    long backoff = 100;
    for (int attempt = 0;; attempt++) {
        if (oe_engine_process(w->cfg.engine, w->reqs, w->codes, w->detail_ptrs, ne, wall_clock(),
                              w->outs, err, sizeof err) == 0)
            break;
        atomic_fetch_add(&w->cfg.metrics->store_errors, 1);
        fprintf(stderr, "openexec: worker: store: %s\n", err);
        if (attempt == 5) {
            fail(w, "the store keeps failing: %s", err);
            goto done;
        }
        sleep_ms(backoff);
        backoff *= 2;
    }
    oe_metrics_batch(w->cfg.metrics, w->outs, ne, monotonic() - t0);
    atomic_store(&w->cfg.metrics->last_batch_size, (long long)w->n);

    if (w->cfg.kafka->transactions) {
        long delay = 100;
        while (publish_transactional(w) != 0) {
            /* Stopping or failed: leave the batch uncommitted. */
            if (atomic_load(&w->failed) || !atomic_load(&w->running))
                goto done;
            sleep_ms(delay);
            delay = delay * 2 > 5000 ? 5000 : delay * 2;
        }
    } else {
        if (publish_batch(w, 0) != 0)
            goto done; /* not committed: re-delivered later */
        commit_offsets(w);
    }
    atomic_fetch_add(&w->cfg.metrics->receipts_produced, w->n);
done:
    for (size_t j = 0; j < ne; j++)
        oe_request_clear(&w->reqs[j]);
}

/* Sums (high watermark - position) over the assignment, about once a
 * second. */
static void update_lag(oe_worker *w)
{
    double now = monotonic();
    if (now - w->last_lag_update < 1.0)
        return;
    w->last_lag_update = now;
    rd_kafka_topic_partition_list_t *list = NULL;
    if (rd_kafka_assignment(w->consumer, &list) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    rd_kafka_position(w->consumer, list);
    long long lag = 0;
    for (int i = 0; i < list->cnt; i++) {
        int64_t lo, hi;
        if (rd_kafka_get_watermark_offsets(w->consumer, list->elems[i].topic,
                                           list->elems[i].partition, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0) {
            int64_t pos = list->elems[i].offset >= 0 ? list->elems[i].offset : lo;
            if (hi > pos)
                lag += hi - pos;
        }
    }
    atomic_store(&w->cfg.metrics->consumer_lag, lag);
    rd_kafka_topic_partition_list_destroy(list);
}

/* Gathers a batch: waits up to 100 ms for a first message, then takes
 * whatever is already fetched, up to batch_max. */
static void gather(oe_worker *w)
{
    w->n = 0;
    int timeout = 100;
    while (w->n < w->cfg.batch_max) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, timeout);
        if (!m)
            break;
        timeout = 0;
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                char errstr[512];
                rd_kafka_fatal_error(w->consumer, errstr, sizeof errstr);
                fail(w, "fatal consumer error: %s", errstr);
            } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                fprintf(stderr, "openexec: worker: consumer: %s\n", rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        w->msgs[w->n++] = m;
    }
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

static void *worker_main(void *arg)
{
    oe_worker *w = arg;
    warm_up_metadata(w);
    while (atomic_load(&w->running)) {
        gather(w);
        if (w->n > 0)
            process_batch(w);
        for (size_t i = 0; i < w->n; i++)
            rd_kafka_message_destroy(w->msgs[i]);
        w->n = 0;
        update_lag(w);
    }
    return NULL;
}

static void free_arrays(oe_worker *w)
{
    if (w->outs)
        for (size_t i = 0; i < w->cfg.batch_max; i++)
            oe_outcome_clear(&w->outs[i]);
    free(w->msgs);
    free(w->kind);
    free(w->engine_index);
    free(w->delivery);
    free(w->truncate);
    free(w->slot_error);
    free(w->reqs);
    free(w->codes);
    free(w->details);
    free(w->detail_ptrs);
    free(w->outs);
    oe_buf_free(&w->encoded);
}

int oe_worker_start(const oe_worker_config *cfg, oe_worker **out, char *err, size_t errlen)
{
    int rc = -1;
    oe_worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->cfg = *cfg;
    if (!w->cfg.batch_max)
        w->cfg.batch_max = 5000;
    size_t n = w->cfg.batch_max;
    oe_buf_init(&w->encoded, 0);
    w->msgs = calloc(n, sizeof *w->msgs);
    w->kind = calloc(n, sizeof *w->kind);
    w->engine_index = calloc(n, sizeof *w->engine_index);
    w->delivery = calloc(n, sizeof *w->delivery);
    w->truncate = calloc(n, sizeof *w->truncate);
    w->slot_error = calloc(n, sizeof *w->slot_error);
    w->reqs = calloc(n, sizeof *w->reqs);
    w->codes = calloc(n, sizeof *w->codes);
    w->details = calloc(n, sizeof *w->details);
    w->detail_ptrs = calloc(n, sizeof *w->detail_ptrs);
    w->outs = calloc(n, sizeof *w->outs);
    if (!w->msgs || !w->kind || !w->engine_index || !w->delivery || !w->truncate ||
        !w->slot_error || !w->reqs || !w->codes || !w->details || !w->detail_ptrs || !w->outs) {
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    for (size_t i = 0; i < n; i++)
        oe_outcome_init(&w->outs[i]);
    if (oe_codec_new(cfg->confluent_schema_id, &w->codec, err, errlen) != 0)
        goto error;

    const oe_kafka_settings *k = cfg->kafka;
    const char *consumer_defaults[] = {
        "auto.offset.reset", "earliest",
        "partition.assignment.strategy", "cooperative-sticky",
        "fetch.wait.max.ms", "5", /* low latency for the HTTP bridge */
        "session.timeout.ms", "10000",
        NULL,
    };
    const char *consumer_forced[] = {
        "group.id", k->group_id,
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof", "false",
        NULL,
    };
    oe_kafka_hooks consumer_hooks = {.opaque = w, .on_rebalance = on_rebalance};
    rc = OE_WORKER_CONFIG_ERROR; /* a refused property or client set-up */
    w->consumer = oe_kafka_new(RD_KAFKA_CONSUMER, k, consumer_defaults, consumer_forced,
                               &consumer_hooks, "consumer", err, errlen);
    if (!w->consumer)
        goto error;

    /* message.max.bytes: a dead letter is as large as the request it
     * carries, up to what the broker accepted on the requests topic. */
    const char *producer_defaults[] = {"linger.ms", "1", "message.timeout.ms", "30000",
                                       "message.max.bytes", "4194304", NULL};
    const char *producer_forced[] = {
        "enable.idempotence", "true",
        "acks", "all",
        k->transactions ? "transactional.id" : NULL, k->transactional_id,
        NULL,
    };
    oe_kafka_hooks producer_hooks = {.opaque = w, .on_delivery = on_delivery};
    w->producer = oe_kafka_new(RD_KAFKA_PRODUCER, k, producer_defaults, producer_forced,
                               &producer_hooks, "producer", err, errlen);
    if (!w->producer)
        goto error;
    rc = -1; /* from here on, failures are of the run time */
    w->out_topics[0] = rd_kafka_topic_new(w->producer, k->receipts_topic, NULL);
    w->out_topics[1] = rd_kafka_topic_new(w->producer, k->dlq_topic, NULL);
    if (k->transactions) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(w->producer, 30000);
        if (e) {
            snprintf(err, errlen, "init transactions: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            goto error;
        }
    }
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, k->requests_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rerr = rd_kafka_subscribe(w->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (rerr) {
        snprintf(err, errlen, "subscribe to %s: %s", k->requests_topic, rd_kafka_err2str(rerr));
        goto error;
    }
    atomic_store(&w->running, 1);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        snprintf(err, errlen, "cannot start the worker thread");
        goto error;
    }
    w->thread_started = 1;
    *out = w;
    return 0;
error:
    atomic_store(&w->running, 0);
    oe_worker_stop(w);
    return rc;
}

int oe_worker_ready(oe_worker *w, char *reason, size_t len)
{
    if (atomic_load(&w->failed)) {
        snprintf(reason, len, "worker stopped: %s", w->fail_reason);
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

void oe_worker_stop(oe_worker *w)
{
    if (!w)
        return;
    atomic_store(&w->running, 0);
    if (w->thread_started)
        pthread_join(w->thread, NULL);
    if (w->consumer) {
        rd_kafka_consumer_close(w->consumer); /* leaves the group */
        rd_kafka_destroy(w->consumer);
    }
    for (size_t i = 0; i < 2; i++)
        if (w->out_topics[i])
            rd_kafka_topic_destroy(w->out_topics[i]);
    if (w->producer) {
        rd_kafka_flush(w->producer, 10000);
        rd_kafka_destroy(w->producer);
    }
    oe_codec_free(w->codec);
    free_arrays(w);
    free(w);
}
