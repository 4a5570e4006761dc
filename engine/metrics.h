/* The engine's counters for /metrics: lock-free, updated from any thread,
 * rendered in the Prometheus text format. Every name is prefixed
 * openexec_. The Kafka side's counters are worker/kafka_metrics.h's, the
 * HTTP server's its own. */
#ifndef OE_METRICS_H
#define OE_METRICS_H

#include <stdatomic.h>

#include "buf.h"
#include "engine.h"

/* Upper bounds (seconds) of the latency histogram buckets. */
#define OE_METRICS_LATENCY_BUCKETS 12

typedef struct oe_metrics {
    atomic_ullong requests[3];                                /* by oe_status */
    atomic_ullong rejections[8];                              /* by oe_error_code */
    atomic_ullong latency_bucket[OE_METRICS_LATENCY_BUCKETS]; /* cumulative on render */
    atomic_ullong latency_count;
    atomic_ullong latency_sum_ns;
    atomic_ullong batch_count;  /* engine batches */
    atomic_ullong batch_items;  /* requests in them */
    atomic_ullong store_errors; /* batches the store failed */
    /* Ledger commits (one per batch): the time of the COMMIT alone. */
    atomic_ullong commit_bucket[OE_METRICS_LATENCY_BUCKETS]; /* cumulative on render */
    atomic_ullong commit_count;
    atomic_ullong commit_sum_ns;
} oe_metrics;

void oe_metrics_init(oe_metrics *m);

/* Counts a processed batch: its outcomes and how long it took. */
void oe_metrics_batch(oe_metrics *m, oe_batch_item *const *items, size_t n, double seconds);

/* Counts a ledger commit that took seconds. */
void oe_metrics_commit(oe_metrics *m, double seconds);

/* Appends the Prometheus text exposition. ready is exported as a gauge.
 * Returns OE_OK, or why out is failed (OE_ELIMIT at its cap, OE_ENOMEM;
 * status.h), an earlier failure of out included: its text is then not to
 * be used. */
int oe_metrics_render(const oe_metrics *m, int ready, const char *version, oe_buf *out);

#endif
