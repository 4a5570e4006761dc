/* The worker's transactions (internal.h): a batch's receipts and
 * offsets committed atomically, with librdkafka's error classes handled
 * as it documents them. Worker thread. */
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

/* What to do after a transactional call, as librdkafka documents it:
 * retriable errors call the same function again (with backoff), abortable
 * ones abort the transaction and publish the batch again in a new one,
 * fatal ones leave the producer unusable: a new producer with the same
 * transactional.id (its init fences the old epoch and aborts what it left
 * open) publishes the batch again (worker_renew_producer). Errors that are neither
 * stop the worker (the batch stays uncommitted). */
typedef enum { TXN_OK, TXN_RETRY, TXN_ABORT, TXN_RENEW, TXN_STOP } txn_action;

/* Classifies e (NULL: success) and takes ownership of it; on TXN_RETRY it
 * has already waited *delay ms. A stopping worker does not retry. */
static txn_action txn_outcome(oe_worker *w, const char *call, rd_kafka_error_t *e, long *delay)
{
    if (!e)
        return TXN_OK;
    txn_action a = rd_kafka_error_is_fatal(e)
                       ? (worker_renewable(rd_kafka_error_code(e)) ? TXN_RENEW : TXN_STOP)
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
 * that honour transactions. Returns OE_OK, or OE_EIO when the transaction was
 * aborted (the caller publishes the batch again in a new one: its outcomes
 * are stored, and the aborted receipts are invisible to read_committed
 * consumers) or the worker must stop (w->failed). */
int worker_publish_transactional(oe_worker *w)
{
    txn_action a;
    long delay = 100;
    while ((a = txn_outcome(w, "begin transaction", rd_kafka_begin_transaction(w->producer),
                            &delay)) == TXN_RETRY)
        ;
    if (a == TXN_RENEW)
        worker_renew_producer(w);
    if (a != TXN_OK)
        return OE_EIO; /* nothing begun: stopping, or a begin that cannot succeed */
    if (worker_publish_batch(w, 1) != 0) {
        if (atomic_load(&w->failed))
            return OE_EIO;
        goto abort;
    }
    /* Not below offsets sent before (worker_advance_sent): a batch of
     * messages handed over again commits nothing. */
    rd_kafka_topic_partition_list_t *offsets = worker_batch_offsets(w);
    worker_advance_sent(w, &offsets);
    a = TXN_OK;
    if (offsets) {
        rd_kafka_consumer_group_metadata_t *meta = rd_kafka_consumer_group_metadata(w->consumer);
        delay = 100;
        while ((a = txn_outcome(w, "send offsets to transaction",
                                rd_kafka_send_offsets_to_transaction(w->producer, offsets, meta,
                                                                     w->cfg.txn_timeout_ms),
                                &delay)) == TXN_RETRY)
            ;
        rd_kafka_consumer_group_metadata_destroy(meta);
        rd_kafka_topic_partition_list_destroy(offsets);
    }
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
        worker_renew_producer(w);
        return OE_EIO;
    }
    if (a == TXN_STOP)
        return OE_EIO;
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
        worker_renew_producer(w);
    return OE_EIO;
}
