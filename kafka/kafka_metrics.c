/* Renders the Kafka side's counters (kafka_metrics.h). No state of its
 * own: the caller owns the oe_kafka_metrics. */
#include "kafka/kafka_metrics.h"

#include <string.h>

static const unsigned long batch_bounds[OE_KAFKA_METRICS_BATCH_BUCKETS] = {1,    10,   100,  500,
                                                                           1000, 2500, 5000, 10000};

void oe_kafka_metrics_init(oe_kafka_metrics *m)
{
    memset(m, 0, sizeof *m);
    for (int p = 0; p < OE_KAFKA_METRICS_LAG_PARTITIONS; p++)
        atomic_init(&m->partition_lag[p], -1);
}

void oe_kafka_metrics_batch(oe_kafka_metrics *m, size_t n)
{
    for (int b = 0; b < OE_KAFKA_METRICS_BATCH_BUCKETS; b++)
        if (n <= batch_bounds[b]) {
            atomic_fetch_add(&m->batch_size_bucket[b], 1);
            break;
        }
    atomic_fetch_add(&m->batch_size_count, 1);
    atomic_fetch_add(&m->batch_size_sum, n);
}

/* The registry, by the index the renderer uses. */
enum {
    K_RECEIPTS_PRODUCED,
    K_DEAD_LETTERS,
    K_DELIVERY_RETRIES,
    K_PRODUCER_RENEWALS,
    K_CONSUMER_LAG,
    K_ASSIGNED_PARTITIONS,
    K_LAST_BATCH_SIZE,
    K_BRIDGE_TIMEOUTS,
    K_DATA_LOSS_EVENTS,
    K_BRIDGE_MISMATCHES,
    K_BRIDGE_REFUSED,
    K_LEDGER_UNAVAILABLE,
    K_LEDGER_UNSHARED,
    K_LEDGER_UNSHARED_EVENTS,
    K_PARTITION_LAG,
    K_BATCH_SIZE,
    K_COUNT
};

const oe_metric_def oe_kafka_metrics_registry[K_COUNT] = {
    [K_RECEIPTS_PRODUCED] = {"openexec_receipts_produced_total", OE_METRIC_COUNTER, "",
                             "Receipts acknowledged by the broker."},
    [K_DEAD_LETTERS] = {"openexec_dead_letters_total", OE_METRIC_COUNTER, "",
                        "Undecodable messages sent to the dead-letter topic."},
    [K_DELIVERY_RETRIES] = {"openexec_delivery_retries_total", OE_METRIC_COUNTER, "",
                            "Messages produced again after a failed delivery."},
    [K_PRODUCER_RENEWALS] = {"openexec_producer_renewals_total", OE_METRIC_COUNTER, "",
                             "Receipt producers replaced after a fatal error (the batch is "
                             "published again by the new one)."},
    [K_CONSUMER_LAG] = {"openexec_consumer_lag", OE_METRIC_GAUGE, "",
                        "Messages between the consumer position and the high watermark, summed "
                        "over assigned partitions."},
    [K_ASSIGNED_PARTITIONS] = {"openexec_assigned_partitions", OE_METRIC_GAUGE, "",
                               "Partitions assigned to this worker."},
    [K_LAST_BATCH_SIZE] = {"openexec_last_batch_size", OE_METRIC_GAUGE, "",
                           "Messages in the most recent batch."},
    [K_BRIDGE_TIMEOUTS] = {"openexec_bridge_timeouts_total", OE_METRIC_COUNTER, "",
                           "/execute requests answered 504."},
    [K_DATA_LOSS_EVENTS] = {"openexec_data_loss_events_total", OE_METRIC_COUNTER, "",
                            "Partitions whose committed offset was no longer on the broker "
                            "(requests lost before they were read)."},
    [K_BRIDGE_MISMATCHES] = {"openexec_bridge_mismatched_receipts_total", OE_METRIC_COUNTER, "",
                             "Receipts carrying a pending correlation id but another request's "
                             "nonce or hash (ignored)."},
    [K_BRIDGE_REFUSED] = {"openexec_bridge_refused_receipts_total", OE_METRIC_COUNTER, "",
                          "Receipts answering a pending /execute whose proof does not verify "
                          "against the trusted keys (ignored)."},
    [K_LEDGER_UNAVAILABLE] = {"openexec_ledger_unavailable", OE_METRIC_GAUGE, "",
                              "1 while the ledger cannot be reached (consumption paused, batch "
                              "retried)."},
    [K_LEDGER_UNSHARED] = {"openexec_ledger_unshared", OE_METRIC_GAUGE, "",
                           "1 while this worker has stopped consuming: other members in its "
                           "group and a private SQLite ledger."},
    [K_LEDGER_UNSHARED_EVENTS] = {"openexec_ledger_unshared_events_total", OE_METRIC_COUNTER, "",
                                  "Times this worker stopped consuming because its group has "
                                  "other members and its ledger is private."},
    [K_PARTITION_LAG] = {"openexec_consumer_partition_lag", OE_METRIC_GAUGE, "partition",
                         "Messages between the consumer position and the high watermark, by "
                         "assigned partition of the requests topic."},
    [K_BATCH_SIZE] = {"openexec_batch_size", OE_METRIC_HISTOGRAM, "",
                      "Messages per batch of the worker."},
};
const size_t oe_kafka_metrics_registry_count = K_COUNT;

void oe_kafka_metrics_render(const oe_kafka_metrics *m, oe_buf *out)
{
    const oe_metric_def *d = oe_kafka_metrics_registry;
    oe_metric_single(out, &d[K_RECEIPTS_PRODUCED], (long long)atomic_load(&m->receipts_produced));
    oe_metric_single(out, &d[K_DEAD_LETTERS], (long long)atomic_load(&m->dead_letters));
    oe_metric_single(out, &d[K_DELIVERY_RETRIES], (long long)atomic_load(&m->delivery_retries));
    oe_metric_single(out, &d[K_PRODUCER_RENEWALS], (long long)atomic_load(&m->producer_renewals));
    oe_metric_single(out, &d[K_CONSUMER_LAG], atomic_load(&m->consumer_lag));
    oe_metric_single(out, &d[K_ASSIGNED_PARTITIONS], atomic_load(&m->assigned_partitions));
    oe_metric_single(out, &d[K_LAST_BATCH_SIZE], atomic_load(&m->last_batch_size));
    oe_metric_single(out, &d[K_BRIDGE_TIMEOUTS], (long long)atomic_load(&m->bridge_timeouts));
    oe_metric_single(out, &d[K_DATA_LOSS_EVENTS], (long long)atomic_load(&m->data_loss_events));
    oe_metric_single(out, &d[K_BRIDGE_MISMATCHES], (long long)atomic_load(&m->bridge_mismatches));
    oe_metric_single(out, &d[K_BRIDGE_REFUSED], (long long)atomic_load(&m->bridge_refused));
    oe_metric_single(out, &d[K_LEDGER_UNAVAILABLE], atomic_load(&m->ledger_unavailable));
    oe_metric_single(out, &d[K_LEDGER_UNSHARED], atomic_load(&m->ledger_unshared));
    oe_metric_single(out, &d[K_LEDGER_UNSHARED_EVENTS],
                     (long long)atomic_load(&m->ledger_unshared_events));
    /* The lag of each assigned partition, and the batch size histogram. */
    oe_metric_header(out, &d[K_PARTITION_LAG]);
    for (int p = 0; p < OE_KAFKA_METRICS_LAG_PARTITIONS; p++) {
        long long lag = atomic_load(&m->partition_lag[p]);
        if (lag >= 0)
            oe_buf_printf(out, "%s{partition=\"%d\"} %lld\n", d[K_PARTITION_LAG].name, p, lag);
    }
    const char *name = d[K_BATCH_SIZE].name;
    oe_metric_header(out, &d[K_BATCH_SIZE]);
    unsigned long long cum = 0;
    for (int b = 0; b < OE_KAFKA_METRICS_BATCH_BUCKETS; b++) {
        cum += atomic_load(&m->batch_size_bucket[b]);
        oe_buf_printf(out, "%s_bucket{le=\"%lu\"} %llu\n", name, batch_bounds[b], cum);
    }
    oe_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %llu\n%s_count %llu\n", name,
                  atomic_load(&m->batch_size_count), name, atomic_load(&m->batch_size_sum), name,
                  atomic_load(&m->batch_size_count));
}
