/* Counters of the Kafka side (worker and /execute bridge) for /metrics:
 * lock-free, updated from any thread, rendered in the Prometheus text
 * format after the engine's own (engine/metrics.h). */
#ifndef OE_KAFKA_METRICS_H
#define OE_KAFKA_METRICS_H

#include <stdatomic.h>

#include "engine/buf.h"
#include "engine/metrics.h"

/* Partitions whose lag is exported one by one (the first ones; the sum
 * covers all), and the upper bounds of the batch size histogram. */
#define OE_KAFKA_METRICS_LAG_PARTITIONS 1024
#define OE_KAFKA_METRICS_BATCH_BUCKETS 8

typedef struct oe_kafka_metrics {
    atomic_ullong receipts_produced; /* receipts acknowledged by the broker */
    atomic_ullong dead_letters;      /* undecodable messages acknowledged on the DLQ */
    atomic_ullong delivery_retries;  /* receipts produced again after a failure */
    atomic_ullong producer_renewals; /* producers replaced after a fatal error */
    atomic_llong consumer_lag;       /* messages behind the high watermark */
    atomic_llong assigned_partitions;
    atomic_llong last_batch_size;
    atomic_ullong data_loss_events;       /* committed offsets no longer on the broker */
    atomic_ullong bridge_timeouts;        /* /execute answered 504 */
    atomic_ullong bridge_mismatches;      /* receipts with a pending correlation id
                                             but another nonce or request hash */
    atomic_ullong bridge_refused;         /* matching receipts whose proof does not
                                             verify against the trusted keys */
    atomic_llong ledger_unavailable;      /* 1 while the ledger cannot be reached */
    atomic_llong ledger_unshared;         /* 1 while consumption is stopped: other
                                             group members, a private ledger */
    atomic_ullong ledger_unshared_events; /* times that stop began */
    /* Lag of each assigned partition of the requests topic; -1: not ours. */
    atomic_llong partition_lag[OE_KAFKA_METRICS_LAG_PARTITIONS];
    atomic_ullong batch_size_bucket[OE_KAFKA_METRICS_BATCH_BUCKETS]; /* cumulative on render */
    atomic_ullong batch_size_count;
    atomic_ullong batch_size_sum;
} oe_kafka_metrics;

/* The Kafka side's registry (engine/metrics.h), in the order rendered. */
extern const oe_metric_def oe_kafka_metrics_registry[];
extern const size_t oe_kafka_metrics_registry_count;

/* Counts a batch of n messages in the size histogram. */
void oe_kafka_metrics_batch(oe_kafka_metrics *m, size_t n);

void oe_kafka_metrics_init(oe_kafka_metrics *m);

/* Appends the Prometheus text exposition (a failure shows in oe_buf_failed). */
void oe_kafka_metrics_render(const oe_kafka_metrics *m, oe_buf *out);

#endif
