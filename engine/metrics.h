/* Counters for /metrics: lock-free, updated from any thread, rendered in
 * the Prometheus text format. Every name is prefixed openexec_. */
#ifndef OE_METRICS_H
#define OE_METRICS_H

#include <stdatomic.h>

#include "buf.h"
#include "engine.h"

/* Upper bounds (seconds) of the latency histogram buckets. */
#define OE_METRICS_LATENCY_BUCKETS 12

typedef struct oe_metrics {
    atomic_ullong requests[3];      /* by oe_status */
    atomic_ullong rejections[8];    /* by oe_error_code */
    atomic_ullong latency_bucket[OE_METRICS_LATENCY_BUCKETS]; /* cumulative on render */
    atomic_ullong latency_count;
    atomic_ullong latency_sum_ns;
    atomic_ullong batch_count;      /* engine batches */
    atomic_ullong batch_items;      /* requests in them */
    atomic_ullong store_errors;     /* batches the store failed */
    atomic_ullong http_responses[6]; /* by status class: 1xx..5xx, index 1..5 */
    atomic_ullong receipts_produced; /* receipts acknowledged by the broker */
    atomic_ullong dead_letters;      /* undecodable messages sent to the DLQ */
    atomic_ullong delivery_retries;  /* receipts produced again after a failure */
    atomic_llong consumer_lag;       /* messages behind the high watermark */
    atomic_llong assigned_partitions;
    atomic_llong last_batch_size;
    atomic_ullong bridge_timeouts;   /* /execute answered 504 */
    atomic_ullong data_loss_events;  /* committed offsets no longer on the broker */
    atomic_ullong bridge_mismatches; /* receipts with a pending correlation id
                                        but another nonce or request hash */
} oe_metrics;

void oe_metrics_init(oe_metrics *m);

/* Counts a processed batch: its outcomes and how long it took. */
void oe_metrics_batch(oe_metrics *m, oe_batch_item *const *items, size_t n, double seconds);

/* Appends the Prometheus text exposition. ready is exported as a gauge. */
int oe_metrics_render(const oe_metrics *m, int ready, const char *version, oe_buf *out);

#endif
