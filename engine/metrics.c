/* The engine's counters for /metrics (metrics.h). No state of its own:
 * the caller owns the oe_metrics; updates are atomic, from any thread. */
#include "metrics.h"

#include <string.h>

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

/* One histogram of latency_bounds buckets. A failed append marks out
 * failed (buf.h): the caller checks it once. */
static void render_histogram(oe_buf *out, const char *name, const char *help,
                             const atomic_ullong *buckets, unsigned long long count,
                             unsigned long long sum_ns)
{
    oe_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long cumulative = 0;
    for (int b = 0; b < OE_METRICS_LATENCY_BUCKETS; b++) {
        cumulative += atomic_load(&buckets[b]);
        oe_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, latency_bounds[b], cumulative);
    }
    oe_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n", name, count,
                  name, (double)sum_ns / 1e9, name, count);
}

int oe_metrics_render(const oe_metrics *m, int ready, const char *version, oe_buf *out)
{
    /* The appends' results are not checked one by one: a failed append
     * marks out failed and every later one is refused (buf.h), so the
     * buffer's state at the end says whether the text is whole. */
    oe_buf_printf(out,
                  "# HELP openexec_build_info Build information.\n"
                  "# TYPE openexec_build_info gauge\n"
                  "openexec_build_info{version=\"%s\"} 1\n"
                  "# HELP openexec_ready 1 when the service is ready.\n"
                  "# TYPE openexec_ready gauge\n"
                  "openexec_ready %d\n",
                  version, ready ? 1 : 0);
    oe_buf_puts(out, "# HELP openexec_requests_total Requests answered, by status.\n"
                     "# TYPE openexec_requests_total counter\n");
    for (int s = 0; s < 3; s++)
        oe_buf_printf(out, "openexec_requests_total{status=\"%s\"} %llu\n",
                      oe_status_name((oe_status)s), atomic_load(&m->requests[s]));
    oe_buf_puts(out, "# HELP openexec_rejections_total Rejected requests, by error code.\n"
                     "# TYPE openexec_rejections_total counter\n");
    for (int c = OE_ERR_MALFORMED; c <= OE_ERR_NONCE_CONFLICT; c++)
        oe_buf_printf(out, "openexec_rejections_total{error_code=\"%s\"} %llu\n",
                      oe_error_code_name((oe_error_code)c), atomic_load(&m->rejections[c]));
    render_histogram(out, "openexec_batch_duration_seconds",
                     "Time to validate, execute and persist one batch.", m->latency_bucket,
                     atomic_load(&m->latency_count), atomic_load(&m->latency_sum_ns));
    render_histogram(out, "openexec_ledger_commit_seconds",
                     "Time of the ledger's COMMIT of one batch (its fsync included).",
                     m->commit_bucket, atomic_load(&m->commit_count),
                     atomic_load(&m->commit_sum_ns));
    oe_buf_printf(out,
                  "# HELP openexec_batches_total Batches processed.\n"
                  "# TYPE openexec_batches_total counter\n"
                  "openexec_batches_total %llu\n"
                  "# HELP openexec_batch_requests_total Requests in those batches.\n"
                  "# TYPE openexec_batch_requests_total counter\n"
                  "openexec_batch_requests_total %llu\n"
                  "# HELP openexec_store_errors_total Batches the store failed to persist.\n"
                  "# TYPE openexec_store_errors_total counter\n"
                  "openexec_store_errors_total %llu\n",
                  atomic_load(&m->batch_count), atomic_load(&m->batch_items),
                  atomic_load(&m->store_errors));
    return oe_buf_failed(out);
}
