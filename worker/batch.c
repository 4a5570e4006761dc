/* The worker's batch stage (internal.h): gathering messages, decoding
 * them, running them through the executor, with the ledger's outages and
 * the consumer's position problems handled on the way. Worker thread. */
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
#include "worker/internal.h"

static void ledger_unavailable(oe_worker *w, const char *why);
static void ledger_available(oe_worker *w);
static int wait_polling(oe_worker *w, long ms);

/* Decodes every message of the batch into its slot. Returns OE_OK, or
 * OE_ENOMEM when a decoder ran out of memory: there is then no verdict on
 * that message, and none may be recorded or published. */
static int decode_batch(oe_worker *w, size_t *ne)
{
    *ne = 0;
    int ahead = w->b.bytes <= RECEIPTS_AHEAD_MAX_BYTES;
    for (size_t i = 0; i < w->b.n; i++) {
        batch_slot *sl = &w->b.slots[i];
        rd_kafka_message_t *m = sl->msg;
        oe_batch_item *it = &sl->item;
        sl->detail[0] = '\0';
        sl->dead = 0;
        sl->truncate = 0;              /* kept across publishing attempts of this batch */
        worker_receipt_release(w, sl); /* never one made for an earlier batch */
        it->decode_error = OE_ERR_NONE;
        it->decode_detail = sl->detail;
        oe_decode_verdict verdict;
        oe_rc rc = oe_codec_decode_request(w->codec, m->payload, m->len, &it->req, &verdict,
                                           &it->decode_error, sl->detail, sizeof sl->detail);
        if (rc != OE_OK)
            return rc;
        if (verdict == OE_DECODE_DEAD) {
            oe_request_clear(&it->req);
            sl->dead = 1;
            continue;
        }
        it->complete = ahead ? worker_receipt_ahead : NULL;
        it->complete_ctx = w;
        w->b.engine_items[(*ne)++] = it;
    }
    return OE_OK;
}

void worker_clear_requests(oe_worker *w)
{
    for (size_t i = 0; i < w->b.n; i++) {
        if (!w->b.slots[i].dead)
            oe_request_clear(&w->b.slots[i].item.req);
        worker_receipt_release(w, &w->b.slots[i]); /* made ahead, or still lent */
    }
}

/* Decodes the batch and runs the engine (one store transaction), retrying
 * resource failures with backoff: they are no verdict, so nothing of the
 * batch is recorded until they pass. A ledger that cannot be reached is
 * waited for as long as it takes, consumption paused (the group is served
 * meanwhile); memory and other ledger failures are tried a few times, then
 * the worker stops. Returns the number of requests for the engine, or
 * GIVEN_UP when the batch is given up (the worker stops, or it was
 * rewound). */
#define GIVEN_UP (-1L)
static long execute_batch(oe_worker *w)
{
    char err[512];
    long backoff = 100;
    for (int attempt = 0;; attempt++) {
        size_t ne = 0;
        int rc = decode_batch(w, &ne);
        if (rc != OE_OK)
            snprintf(err, sizeof err, "%s while decoding", oe_strerror(rc));
        else
            rc = oe_executor_run(w->cfg.executor, w->b.engine_items, ne,
                                 w->cfg.log_origin ? &w->b.checkpoint : NULL, err, sizeof err);
        if (rc == OE_OK) {
            ledger_available(w);
            return (long)ne;
        }
        worker_clear_requests(w);
        if (rc == OE_EDUP_LOG) {
            /* Not ours to append to any more: fail closed at once. */
            worker_fail(w, "another process signs with this worker's key", "%s", err);
            return GIVEN_UP;
        }
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
                worker_update_pause(w);
                return GIVEN_UP;
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
            return GIVEN_UP;
        }
        oe_sleep_ms(backoff);
        backoff *= 2;
    }
}

/* The info line of a published batch (docs/operations.md): its messages by outcome
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
void worker_batch_published(oe_worker *w, size_t ne, double seconds)
{
    atomic_fetch_add(&w->cfg.kafka_metrics->receipts_produced, (unsigned long long)ne);
    atomic_fetch_add(&w->cfg.kafka_metrics->dead_letters, w->b.n - ne);
    log_batch(w, ne, seconds);
}

/* Decodes the batch, runs the engine, publishes, commits. */
void worker_process_batch(oe_worker *w)
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
            if (worker_publish_transactional(w) == 0) {
                worker_batch_published(w, (size_t)ne, oe_monotonic() - t0);
                break;
            }
            /* Stopping or failed: leave the batch uncommitted. */
            if (atomic_load(&w->failed) || !atomic_load(&w->running))
                break;
            oe_sleep_ms(delay);
            delay = delay * 2 > 5000 ? 5000 : delay * 2;
        }
        worker_clear_requests(w);
        return;
    }
    /* The batch before this one is finished first (its receipts
     * acknowledged, its offsets committed), so offsets are committed in
     * order; this one's receipts are then produced, and acknowledged while
     * the next batch is gathered and executed. A batch before that could
     * not be finished leaves this one unpublished and uncommitted too (the
     * worker is stopping or failed: both are re-delivered and answered
     * from the ledger). */
    if (worker_finish_inflight(w) != 0 || worker_publish_start(w) != 0) {
        worker_clear_requests(w);
        return;
    }
    w->b.started = t0;
    w->b.ne = ne;
    worker_swap_batches(w);
    w->in.active = 1;
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
    worker_forget_offsets(w, list); /* its offsets start again */
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
void worker_gather(oe_worker *w, int timeout)
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
void worker_update_pause(oe_worker *w)
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
void worker_rewind_batch(oe_worker *w)
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
 * is given up and rewound with it. Returns 1 when the batch in hand was
 * given up, else 0. */
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
            worker_rewind_batch(w);
            return 1;
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
    worker_update_pause(w);
}

static void ledger_available(oe_worker *w)
{
    if (!atomic_exchange(&w->ledger_down, 0))
        return;
    oe_log(OE_LOG_INFO, "worker", NULL, "ledger available again, consumption resumed");
    atomic_store(&w->cfg.kafka_metrics->ledger_unavailable, 0);
    worker_update_pause(w);
}
