/* The Kafka worker (worker.h): one consumer-group member. This file: its
 * life (new, start, stop, free), its clients and the loop; the stages are
 * batch.c (gather, decode, execute), publish.c (receipts and dead
 * letters, the batch in flight), offsets.c (commits and rebalances) and
 * txn.c (transactions), sharing internal.h.
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
#include "worker/internal.h"

/* Stops the worker. public is the reason /ready shows: our own short
 * words, never a broker's or librdkafka's text (addresses, principals);
 * the detail (fmt), with that text, goes to the log and the exit line. */
__attribute__((format(printf, 3, 4))) void worker_fail(oe_worker *w, const char *public,
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

/* Partitions of the requests topic, from the brokers; negative (OE_EIO)
 * when unknown. */
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
    worker_update_pause(w);
}

/* Learns where receipts and dead letters go before the first batch, not at
 * its first produce: an unknown topic's first message otherwise waits for a
 * metadata round (about a second). Runs on the worker thread, so that an
 * unreachable broker does not hold up start-up. */
static void warm_up_metadata(oe_worker *w)
{
    for (size_t i = 0; i < 3 && atomic_load(&w->running); i++) {
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
    const char *topics[] = {k->requests_topic, k->receipts_topic, k->dlq_topic,
                            k->checkpoints_topic};
    char why[512];
    int rc = oe_kafka_check_cluster(w->consumer, topics, k->checkpoints_topic ? 4 : 3, 1, NULL,
                                    NULL, why, sizeof why);
    if (rc == OE_OK)
        w->cluster_ok = 1;
    else if (rc != OE_EUNAVAIL)
        worker_fail(w,
                    rc == OE_EREFUSED ? "brokers refused the connection"
                                      : "a topic is missing or unavailable",
                    "%s", why);
}

static void *worker_main(void *arg)
{
    oe_worker *w = arg;
    /* This thread runs every batch: on the CPU the engine's helpers
     * leave free, so that they never queue behind it. */
    oe_executor_keep_caller(w->cfg.executor);
    warm_up_metadata(w);
    while (atomic_load(&w->running)) {
        check_cluster(w);
        check_sharing(w);
        /* With a batch in flight, only what is already fetched: when
         * nothing is, that batch is finished now rather than after the
         * next one (its offsets, counters and log line wait for it). */
        worker_gather(w, w->in.active ? 0 : 100);
        if (w->b.n == 0 && w->in.active)
            worker_finish_inflight(w);
        worker_poll_commits(w, 0);
        worker_retry_pending_commit(w, 0);
        /* The assignment may have changed while gathering. */
        check_sharing(w);
        if (w->b.n > 0 && atomic_load(&w->unshared))
            worker_rewind_batch(w);
        if (w->b.n > 0)
            worker_process_batch(w);
        for (size_t i = 0; i < w->b.n; i++) {
            rd_kafka_message_destroy(w->b.slots[i].msg);
            w->b.slots[i].msg = NULL;
        }
        w->b.n = 0;
        update_lag(w);
        oe_kafka_probe(w->consumer);
    }
    worker_finish_inflight(w);
    worker_poll_commits(w, COMMIT_WAIT_MS);
    worker_retry_pending_commit(w, 1); /* stopping: before the group is left */
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
            oe_buf_free(&b->slots[i].receipt);
        }
    free(b->slots);
    free(b->engine_items);
    oe_buf_free(&b->checkpoint);
    memset(b, 0, sizeof *b);
}

static void free_slots(oe_worker *w)
{
    free_batch(w, &w->b);
    free_batch(w, &w->in);
}

/* The consumer. Its prefetch is bounded too: at most
 * OE_WORKER_PREFETCH_KBYTES queued, fetched OE_WORKER_FETCH_BYTES at a time,
 * so that with the batch budget a worker's memory has a ceiling whatever
 * the size of the messages on the topic. */
static rd_kafka_conf_t *consumer_conf(oe_worker *w, char *err, size_t errlen)
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
    oe_kafka_hooks hooks = {.opaque = w, .on_rebalance = worker_on_rebalance};
    return oe_kafka_client_conf(k, defaults, forced, &hooks, "consumer", err, errlen);
}

/* The producer of receipts and dead letters: idempotent, acks=all, and
 * transactional when configured. message.max.bytes: a dead letter is as
 * large as the request it carries, up to what the broker accepted on the
 * requests topic. */
static rd_kafka_conf_t *producer_conf(oe_worker *w, char *err, size_t errlen)
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
    oe_kafka_hooks hooks = {.opaque = w, .on_delivery = worker_on_delivery};
    return oe_kafka_client_conf(k, defaults, forced, &hooks, "producer", err, errlen);
}

/* Creates the producer's topic handles and, with transactions, its
 * transactional state. Returns OE_OK, or OE_EIO with err. */
static int producer_ready(oe_worker *w, char *err, size_t errlen)
{
    const oe_kafka_settings *k = w->cfg.kafka;
    w->out_topics[0] = rd_kafka_topic_new(w->producer, k->receipts_topic, NULL);
    w->out_topics[1] = rd_kafka_topic_new(w->producer, k->dlq_topic, NULL);
    if (w->cfg.log_origin && k->checkpoints_topic)
        w->out_topics[2] = rd_kafka_topic_new(w->producer, k->checkpoints_topic, NULL);
    if (!w->out_topics[0] || !w->out_topics[1] ||
        (w->cfg.log_origin && k->checkpoints_topic && !w->out_topics[2])) {
        snprintf(err, errlen, "cannot create the producer's topic handles");
        return OE_EIO;
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
            return OE_EIO;
        oe_log(OE_LOG_WARN, "worker", NULL, "%s (retrying)", err);
        oe_sleep_ms(delay);
        delay = delay * 2 > 5000 ? 5000 : delay * 2;
    }
}

static void producer_free(oe_worker *w)
{
    for (size_t i = 0; i < 3; i++)
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
 * are answered up to RENEWALS_PER_MINUTE times a minute. Returns OE_OK, or
 * OE_EIO once the worker stopped (w->failed). */
#define RENEWALS_PER_MINUTE 5
int worker_renew_producer(oe_worker *w)
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
        return OE_EIO;
    }
    if (++w->renewals > RENEWALS_PER_MINUTE) {
        worker_fail(w, "fatal producer error (the producer was replaced too often)",
                    "fatal producer error: %s (the producer was replaced %d times within a "
                    "minute)",
                    why, RENEWALS_PER_MINUTE);
        return OE_EIO;
    }
    oe_log(OE_LOG_WARN, "worker", NULL, "fatal producer error: %s; replacing the producer", why);
    atomic_fetch_add(&w->cfg.kafka_metrics->producer_renewals, 1);
    w->b.generation = ++w->generations; /* the old producer's delivery reports are ignored */
    rd_kafka_purge(w->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(w->producer, 0);
    producer_free(w);
    worker_receipts_returned(w);
    char err[512];
    rd_kafka_conf_t *pc = producer_conf(w, err, sizeof err);
    if (!pc ||
        !(w->producer = oe_kafka_create(RD_KAFKA_PRODUCER, pc, "producer", err, sizeof err)) ||
        producer_ready(w, err, sizeof err) != OE_OK) {
        worker_fail(w, "cannot replace the producer", "cannot replace the producer: %s", err);
        return OE_EIO;
    }
    return OE_OK;
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
    for (int k = 0; k < 2; k++) {
        batch *b = k ? &w->in : &w->b;
        b->set = k;
        b->slots = calloc(n, sizeof *b->slots);
        b->engine_items = calloc(n, sizeof *b->engine_items);
        if (!b->slots || !b->engine_items) {
            snprintf(err, errlen, "out of memory");
            goto error;
        }
        for (size_t i = 0; i < n; i++) {
            oe_outcome_init(&b->slots[i].item.out);
            oe_buf_init(&b->slots[i].receipt, 0);
        }
        oe_buf_init(&b->checkpoint, 0);
    }
    rc = OE_EIO;
    if (oe_codec_new(cfg->confluent_schema_id, &w->codec, err, errlen) != 0)
        goto error;
    rc = OE_EINVAL; /* a refused property: checked here, the clients made by start */
    if (!(w->confs.consumer_conf = consumer_conf(w, err, errlen)) ||
        !(w->confs.producer_conf = producer_conf(w, err, errlen)))
        goto error;
    *out = w;
    return OE_OK;
error:
    oe_worker_free(w);
    return rc;
}

/* Creates the clients from the configurations checked by oe_worker_new
 * (librdkafka starts their threads), the queue of commit answers and the
 * producer's topics and transactional state. */
static oe_rc create_clients(oe_worker *w, char *err, size_t errlen)
{
    oe_rc rc = oe_kafka_create_pair(&w->confs, "", err, errlen);
    w->consumer = w->confs.consumer;
    w->producer = w->confs.producer;
    if (rc != OE_OK)
        return rc;
    if (!(w->commit_q = rd_kafka_queue_new(w->consumer))) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    return producer_ready(w, err, errlen) == 0 ? OE_OK : OE_EIO;
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
        return OE_EIO;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(parts, w->cfg.kafka->requests_topic, i);
    worker_on_rebalance(w->consumer, RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, parts, w);
    rd_kafka_topic_partition_list_destroy(parts);
    if (atomic_load(&w->assigned) != n) {
        snprintf(err, errlen, "cannot assign the partitions of %s on the embedded broker",
                 w->cfg.kafka->requests_topic);
        return OE_EIO;
    }
    return 0;
}

oe_rc oe_worker_start(oe_worker *w, char *err, size_t errlen)
{
    const oe_kafka_settings *k = w->cfg.kafka;
    if (w->consumer || w->stopped) {
        snprintf(err, errlen, "the worker was started before");
        return OE_EINVAL;
    }
    oe_rc rc = create_clients(w, err, errlen);
    if (rc != OE_OK)
        return rc;
    if (w->cfg.own_broker && assign_all(w, err, errlen) != 0)
        return OE_EIO;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, k->requests_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rerr =
        w->cfg.own_broker ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_subscribe(w->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (rerr) {
        snprintf(err, errlen, "subscribe to %s: %s", k->requests_topic, rd_kafka_err2str(rerr));
        return OE_EIO;
    }
    atomic_store(&w->running, 1);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        atomic_store(&w->running, 0);
        snprintf(err, errlen, "cannot start the worker thread");
        return OE_EIO;
    }
    w->thread_started = 1;
    return OE_OK;
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
    oe_kafka_pair_drop_confs(&w->confs);
    if (w->commit_q)
        rd_kafka_queue_destroy(w->commit_q);
    if (w->commit_next)
        rd_kafka_topic_partition_list_destroy(w->commit_next);
    if (w->moved)
        rd_kafka_topic_partition_list_destroy(w->moved);
    if (w->sent)
        rd_kafka_topic_partition_list_destroy(w->sent);
    if (w->consumer && !w->consumer_abandoned)
        rd_kafka_destroy(w->consumer);
    producer_free(w);
    worker_receipts_returned(w);
    free(w->orphans);
    if (w->pending_commit)
        rd_kafka_topic_partition_list_destroy(w->pending_commit);
    oe_codec_free(w->codec);
    free_slots(w);
    pthread_mutex_destroy(&w->reason_lock);
    free(w);
}
