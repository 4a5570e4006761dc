/* The executor: the one place where decoded requests become durable
 * outcomes. Every source hands its requests here: the Kafka worker a
 * polled batch (oe_executor_run, on its own thread), local /execute one
 * request at a time (oe_executor_submit: requests that arrive together are
 * run as one batch by the executor's thread, group commit). Either way a
 * batch is one engine batch in one ledger transaction; when
 * oe_executor_run returns OE_OK (or a job's done is called with OE_OK) its
 * outcomes are durable, and only then may anything be told of them. The
 * batch's counters are kept here too, so every rule about a batch lives
 * once.
 *
 * Lifecycle: oe_executor_new allocates and starts nothing;
 * oe_executor_start makes the group-commit thread (only oe_executor_submit
 * needs it); oe_executor_stop answers what is queued and joins it;
 * oe_executor_free releases (stopping first). The engine is borrowed.
 */
#ifndef OE_EXECUTOR_H
#define OE_EXECUTOR_H

#include <stddef.h>

#include "engine.h"
#include "metrics.h"
#include "status.h"

typedef struct oe_executor oe_executor;

/* The most requests one group commit takes. */
#define OE_EXECUTOR_GROUP_MAX 1024

/* Allocates an executor over engine and metrics (both borrowed; metrics
 * may be NULL). Returns OE_OK or OE_ENOMEM. */
oe_rc oe_executor_new(oe_engine *engine, oe_metrics *metrics, oe_executor **out);

/* Starts the group-commit thread. Returns OE_OK, or OE_EIO with a reason. */
oe_rc oe_executor_start(oe_executor *x, char *err, size_t errlen);

/* Runs every job queued so far (each gets its done), then joins the
 * thread; later submissions are refused. Idempotent. */
void oe_executor_stop(oe_executor *x);
void oe_executor_free(oe_executor *x);

/* Keeps the calling thread, which will call oe_executor_run, to the CPU
 * the engine's helpers leave free (oe_engine_keep_caller); the
 * group-commit thread does the same at its start. */
void oe_executor_keep_caller(oe_executor *x);

/* Runs n requests now, on the calling thread, as one batch (one ledger
 * transaction); checkpoint (may be NULL) as oe_engine_process has it. Returns OE_OK: every item's
 * outcome is filled and durable; or a resource failure (OE_ENOMEM, OE_ESTORE, OE_EUNAVAIL) with a
 * reason in err: nothing of the batch is recorded and no outcome may be reported (the caller
 * retries, or answers "try again"). */
oe_rc oe_executor_run(oe_executor *x, oe_batch_item *const *items, size_t n, oe_buf *checkpoint,
                      char *err, size_t errlen);

/* One request queued for a group commit. The submitter decodes into
 * item (oe_outcome_init'ed) and sets done and ctx; the executor owns the
 * job from oe_executor_submit until it calls done. */
typedef struct oe_exec_job oe_exec_job;
struct oe_exec_job {
    oe_batch_item item;
    /* Called on the executor's thread once the job's batch is durable
     * (rc OE_OK, item.out filled) or failed (rc and its reason err). The
     * job is the submitter's again from this call on. */
    void (*done)(oe_exec_job *job, oe_rc rc, const char *err);
    void *ctx;
    oe_exec_job *next; /* the executor's */
};

/* Queues job for the next group commit. Returns OE_OK (done will be
 * called exactly once), or OE_EUNAVAIL when the executor is not running
 * (not started, or stopping): the job was not taken, done is not called. */
oe_rc oe_executor_submit(oe_executor *x, oe_exec_job *job);

#endif
