/* The engine's counters for /metrics (metrics.h). No state of its own:
 * the caller owns the oe_metrics; updates are atomic, from any thread. */
#include "metrics.h"

#include <string.h>

/* The engine's registry (metrics.h), by the index its renderer uses. */
enum {
    M_BUILD_INFO,
    M_READY,
    M_REQUESTS,
    M_REJECTIONS,
    M_BATCH_DURATION,
    M_COMMIT,
    M_BATCHES,
    M_BATCH_REQUESTS,
    M_STORE_ERRORS,
    M_COUNT
};

const oe_metric_def oe_metrics_registry[M_COUNT] = {
    [M_BUILD_INFO] = {"openexec_build_info", OE_METRIC_GAUGE, "version", "Build information."},
    [M_READY] = {"openexec_ready", OE_METRIC_GAUGE, "", "1 when the service is ready."},
    [M_REQUESTS] = {"openexec_requests_total", OE_METRIC_COUNTER, "status",
                    "Requests answered, by status."},
    [M_REJECTIONS] = {"openexec_rejections_total", OE_METRIC_COUNTER, "error_code",
                      "Rejected requests, by error code."},
    [M_BATCH_DURATION] = {"openexec_batch_duration_seconds", OE_METRIC_HISTOGRAM, "",
                          "Time to validate, execute and persist one batch."},
    [M_COMMIT] = {"openexec_ledger_commit_seconds", OE_METRIC_HISTOGRAM, "",
                  "Time of the ledger's COMMIT of one batch (its fsync included)."},
    [M_BATCHES] = {"openexec_batches_total", OE_METRIC_COUNTER, "", "Batches processed."},
    [M_BATCH_REQUESTS] = {"openexec_batch_requests_total", OE_METRIC_COUNTER, "",
                          "Requests in those batches."},
    [M_STORE_ERRORS] = {"openexec_store_errors_total", OE_METRIC_COUNTER, "",
                        "Batches the store failed to persist."},
};
const size_t oe_metrics_registry_count = M_COUNT;

const char *oe_metric_type_name(oe_metric_type type)
{
    switch (type) {
    case OE_METRIC_COUNTER:
        return "counter";
    case OE_METRIC_GAUGE:
        return "gauge";
    case OE_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

void oe_metric_header(oe_buf *out, const oe_metric_def *d)
{
    oe_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name,
                  oe_metric_type_name(d->type));
}

/* Counters are unsigned 64-bit; no counter comes near 2^63. */
void oe_metric_single(oe_buf *out, const oe_metric_def *d, long long value)
{
    oe_metric_header(out, d);
    oe_buf_printf(out, "%s %lld\n", d->name, value);
}

static const double latency_bounds[OE_METRICS_LATENCY_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0};

/* One observation of a latency histogram (bucket counts not cumulative;
 * render_histogram sums them). */
static void observe(atomic_ullong *buckets, atomic_ullong *count, atomic_ullong *sum_ns,
                    double seconds)
{
    for (int b = 0; b < OE_METRICS_LATENCY_BUCKETS; b++)
        if (seconds <= latency_bounds[b]) {
            atomic_fetch_add(&buckets[b], 1);
            break;
        }
    atomic_fetch_add(count, 1);
    atomic_fetch_add(sum_ns, (unsigned long long)(seconds * 1e9));
}

void oe_metrics_init(oe_metrics *m)
{
    memset(m, 0, sizeof *m);
}

void oe_metrics_batch(oe_metrics *m, oe_batch_item *const *items, size_t n, double seconds)
{
    for (size_t i = 0; i < n; i++) {
        const oe_outcome *o = &items[i]->out;
        atomic_fetch_add(&m->requests[o->status], 1);
        if (o->status == OE_STATUS_REJECTED && o->error < 8)
            atomic_fetch_add(&m->rejections[o->error], 1);
    }
    atomic_fetch_add(&m->batch_count, 1);
    atomic_fetch_add(&m->batch_items, n);
    observe(m->latency_bucket, &m->latency_count, &m->latency_sum_ns, seconds);
}

void oe_metrics_commit(oe_metrics *m, double seconds)
{
    observe(m->commit_bucket, &m->commit_count, &m->commit_sum_ns, seconds);
}

/* One histogram of latency_bounds buckets. */
static void render_histogram(oe_buf *out, const oe_metric_def *d, const atomic_ullong *buckets,
                             unsigned long long count, unsigned long long sum_ns)
{
    oe_metric_header(out, d);
    unsigned long long cumulative = 0;
    for (int b = 0; b < OE_METRICS_LATENCY_BUCKETS; b++) {
        cumulative += atomic_load(&buckets[b]);
        oe_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", d->name, latency_bounds[b], cumulative);
    }
    oe_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n", d->name, count,
                  d->name, (double)sum_ns / 1e9, d->name, count);
}

int oe_metrics_render(const oe_metrics *m, int ready, const char *version, oe_buf *out)
{
    /* The appends' results are not checked one by one: a failed append
     * marks out failed and every later one is refused (buf.h), so the
     * buffer's state at the end says whether the text is whole. */
    const oe_metric_def *d = oe_metrics_registry;
    oe_metric_header(out, &d[M_BUILD_INFO]);
    oe_buf_printf(out, "%s{version=\"%s\"} 1\n", d[M_BUILD_INFO].name, version);
    oe_metric_single(out, &d[M_READY], ready ? 1 : 0);
    oe_metric_header(out, &d[M_REQUESTS]);
    for (int s = 0; s < 3; s++)
        oe_buf_printf(out, "%s{status=\"%s\"} %llu\n", d[M_REQUESTS].name,
                      oe_status_name((oe_status)s), atomic_load(&m->requests[s]));
    oe_metric_header(out, &d[M_REJECTIONS]);
    for (int c = OE_ERR_MALFORMED; c <= OE_ERR_LAST; c++)
        oe_buf_printf(out, "%s{error_code=\"%s\"} %llu\n", d[M_REJECTIONS].name,
                      oe_error_code_name((oe_error_code)c), atomic_load(&m->rejections[c]));
    render_histogram(out, &d[M_BATCH_DURATION], m->latency_bucket, atomic_load(&m->latency_count),
                     atomic_load(&m->latency_sum_ns));
    render_histogram(out, &d[M_COMMIT], m->commit_bucket, atomic_load(&m->commit_count),
                     atomic_load(&m->commit_sum_ns));
    oe_metric_single(out, &d[M_BATCHES], (long long)atomic_load(&m->batch_count));
    oe_metric_single(out, &d[M_BATCH_REQUESTS], (long long)atomic_load(&m->batch_items));
    oe_metric_single(out, &d[M_STORE_ERRORS], (long long)atomic_load(&m->store_errors));
    return oe_buf_failed(out);
}
