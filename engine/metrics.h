/* The engine's counters for /metrics: lock-free, updated from any thread,
 * rendered in the Prometheus text format. Every name is prefixed
 * openexec_. The Kafka side's counters are kafka/kafka_metrics.h's, the
 * HTTP server's its own (admin-http/http.h).
 *
 * Each module that renders metrics declares them once, in a registry: a
 * constant table of oe_metric_def rows (name, type, labels, help). Its
 * renderer takes every # HELP and # TYPE line and every sample's name from
 * those rows, and `openexec docs metrics` prints the reference of
 * docs/operations.md from the same rows, so the reference cannot differ
 * from what /metrics serves. */
#ifndef OE_METRICS_H
#define OE_METRICS_H

#include <stdatomic.h>

#include "buf.h"
#include "engine.h"

/* The kind of a metric, as its # TYPE line names it. */
typedef enum oe_metric_type {
    OE_METRIC_COUNTER,
    OE_METRIC_GAUGE,
    OE_METRIC_HISTOGRAM
} oe_metric_type;

/* One metric (a family of samples) of a registry. */
typedef struct oe_metric_def {
    const char *name;    /* "openexec_requests_total" */
    oe_metric_type type; /* a histogram's samples are NAME_bucket{le}, NAME_sum, NAME_count */
    const char *labels;  /* its label names, "," between (a histogram's le aside); "" for none */
    const char *help;    /* one sentence, the text of its # HELP line */
} oe_metric_def;

/* The engine's registry, in the order rendered. */
extern const oe_metric_def oe_metrics_registry[];
extern const size_t oe_metrics_registry_count;

/* "counter", "gauge" or "histogram". */
const char *oe_metric_type_name(oe_metric_type type);

/* Appends the # HELP and # TYPE lines of d. A failed append marks out
 * failed (buf.h), as in the helpers below: the caller checks it once. */
void oe_metric_header(oe_buf *out, const oe_metric_def *d);

/* Appends the whole of a metric of one sample without labels: its header
 * and "NAME VALUE". */
void oe_metric_single(oe_buf *out, const oe_metric_def *d, long long value);

/* Upper bounds (seconds) of the latency histogram buckets. */
#define OE_METRICS_LATENCY_BUCKETS 12

typedef struct oe_metrics {
    atomic_ullong requests[3];                                /* by oe_status */
    atomic_ullong rejections[OE_ERR_LAST + 1];                /* by oe_error_code */
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
