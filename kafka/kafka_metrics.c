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

/* The per-partition lag and the batch size histogram. */
static void render_more(const oe_kafka_metrics *m, oe_buf *out)
{
    oe_buf_puts(out, "# HELP openexec_consumer_partition_lag Messages between the consumer "
                     "position and the high watermark, by assigned partition of the requests "
                     "topic.\n"
                     "# TYPE openexec_consumer_partition_lag gauge\n");
    for (int p = 0; p < OE_KAFKA_METRICS_LAG_PARTITIONS; p++) {
        long long lag = atomic_load(&m->partition_lag[p]);
        if (lag >= 0)
            oe_buf_printf(out, "openexec_consumer_partition_lag{partition=\"%d\"} %lld\n", p, lag);
    }
    oe_buf_puts(out, "# HELP openexec_batch_size Messages per batch of the worker.\n"
                     "# TYPE openexec_batch_size histogram\n");
    unsigned long long cum = 0;
    for (int b = 0; b < OE_KAFKA_METRICS_BATCH_BUCKETS; b++) {
        cum += atomic_load(&m->batch_size_bucket[b]);
        oe_buf_printf(out, "openexec_batch_size_bucket{le=\"%lu\"} %llu\n", batch_bounds[b], cum);
    }
    oe_buf_printf(out,
                  "openexec_batch_size_bucket{le=\"+Inf\"} %llu\n"
                  "openexec_batch_size_sum %llu\n"
                  "openexec_batch_size_count %llu\n",
                  atomic_load(&m->batch_size_count), atomic_load(&m->batch_size_sum),
                  atomic_load(&m->batch_size_count));
}

void oe_kafka_metrics_render(const oe_kafka_metrics *m, oe_buf *out)
{
    oe_buf_printf(
        out,
        "# HELP openexec_receipts_produced_total Receipts acknowledged by the broker.\n"
        "# TYPE openexec_receipts_produced_total counter\n"
        "openexec_receipts_produced_total %llu\n"
        "# HELP openexec_dead_letters_total Undecodable messages sent to the dead-letter topic.\n"
        "# TYPE openexec_dead_letters_total counter\n"
        "openexec_dead_letters_total %llu\n"
        "# HELP openexec_delivery_retries_total Messages produced again after a failed delivery.\n"
        "# TYPE openexec_delivery_retries_total counter\n"
        "openexec_delivery_retries_total %llu\n"
        "# HELP openexec_producer_renewals_total Receipt producers replaced after a fatal "
        "error (the batch is published again by the new one).\n"
        "# TYPE openexec_producer_renewals_total counter\n"
        "openexec_producer_renewals_total %llu\n"
        "# HELP openexec_consumer_lag Messages between the consumer position and the high "
        "watermark, summed over assigned partitions.\n"
        "# TYPE openexec_consumer_lag gauge\n"
        "openexec_consumer_lag %lld\n"
        "# HELP openexec_assigned_partitions Partitions assigned to this worker.\n"
        "# TYPE openexec_assigned_partitions gauge\n"
        "openexec_assigned_partitions %lld\n"
        "# HELP openexec_last_batch_size Messages in the most recent batch.\n"
        "# TYPE openexec_last_batch_size gauge\n"
        "openexec_last_batch_size %lld\n"
        "# HELP openexec_bridge_timeouts_total /execute requests answered 504.\n"
        "# TYPE openexec_bridge_timeouts_total counter\n"
        "openexec_bridge_timeouts_total %llu\n"
        "# HELP openexec_data_loss_events_total Partitions whose committed offset "
        "was no longer on the broker (requests lost before they were read).\n"
        "# TYPE openexec_data_loss_events_total counter\n"
        "openexec_data_loss_events_total %llu\n"
        "# HELP openexec_bridge_mismatched_receipts_total Receipts carrying a "
        "pending correlation id but another request's nonce or hash (ignored).\n"
        "# TYPE openexec_bridge_mismatched_receipts_total counter\n"
        "openexec_bridge_mismatched_receipts_total %llu\n"
        "# HELP openexec_bridge_refused_receipts_total Receipts answering a pending "
        "/execute whose proof does not verify against the trusted keys (ignored).\n"
        "# TYPE openexec_bridge_refused_receipts_total counter\n"
        "openexec_bridge_refused_receipts_total %llu\n"
        "# HELP openexec_ledger_unavailable 1 while the ledger cannot be reached "
        "(consumption paused, batch retried).\n"
        "# TYPE openexec_ledger_unavailable gauge\n"
        "openexec_ledger_unavailable %lld\n"
        "# HELP openexec_ledger_unshared 1 while this worker has stopped consuming: "
        "other members in its group and a private SQLite ledger.\n"
        "# TYPE openexec_ledger_unshared gauge\n"
        "openexec_ledger_unshared %lld\n"
        "# HELP openexec_ledger_unshared_events_total Times this worker stopped consuming "
        "because its group has other members and its ledger is private.\n"
        "# TYPE openexec_ledger_unshared_events_total counter\n"
        "openexec_ledger_unshared_events_total %llu\n",
        atomic_load(&m->receipts_produced), atomic_load(&m->dead_letters),
        atomic_load(&m->delivery_retries), atomic_load(&m->producer_renewals),
        atomic_load(&m->consumer_lag), atomic_load(&m->assigned_partitions),
        atomic_load(&m->last_batch_size), atomic_load(&m->bridge_timeouts),
        atomic_load(&m->data_loss_events), atomic_load(&m->bridge_mismatches),
        atomic_load(&m->bridge_refused), atomic_load(&m->ledger_unavailable),
        atomic_load(&m->ledger_unshared), atomic_load(&m->ledger_unshared_events));
    render_more(m, out);
}
