/* What the files of the worker share (the .c files of worker/), and nothing else
 * includes: the batch and its slots, the worker's state, and the functions
 * one stage calls in another. Everything here runs on the worker thread
 * unless worker.c says otherwise. */
#ifndef OE_WORKER_INTERNAL_H
#define OE_WORKER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "codec/codec.h"
#include "engine/log.h"
#include "worker/worker.h"

/* Delivery state of a slot's receipt or dead letter. */
enum { DELIVERY_PENDING, DELIVERY_OK, DELIVERY_FAILED };

/* A delivery report's opaque value: the batch generation in the high bits
 * and the slot in the low ones, so that a late report of an earlier batch
 * (a copy still in flight when that batch moved on) is never credited to a
 * slot of the current one. Between them, which of the two slot arrays the
 * slot is in (batch.set), and whether the message's value is the slot's
 * receipt buffer (TAG_LENT): a late report still gives that buffer back. */
#define SLOT_BITS 24
#define SLOT_MASK (((uintptr_t)1 << SLOT_BITS) - 1)
#define TAG_SET ((uintptr_t)1 << SLOT_BITS)
#define TAG_LENT ((uintptr_t)1 << (SLOT_BITS + 1))
#define GENERATION_SHIFT (SLOT_BITS + 2)
/* The slot number of a batch's signed checkpoint (no message slot has it:
 * batch_max is far smaller). */
#define SLOT_CHECKPOINT SLOT_MASK

/* Seconds a batch may spend failing to publish while the worker stops,
 * before it is left uncommitted (it is re-delivered later). */
#define STOP_GRACE_SECONDS 10
#define STALL_SECONDS 10

/* How long a revoke, a stop or a retry of refused offsets waits for the
 * asynchronous commits on their way. */
#define COMMIT_WAIT_MS 10000

/* A batch's receipts are encoded while it commits (worker_receipt_ahead)
 * when its messages are at most this many bytes; a larger batch's are
 * encoded when published, once its documents are freed. A batch of half
 * the bytes has at most half a full batch's documents (worker.h), and its
 * receipts (each about 2.5 KB with a proof, plus its result four times:
 * under 25 MiB for results no larger than their requests, as echo's) fit
 * in the other half: encoding ahead keeps within a full batch's peak.
 * The wide-documents test (tests/http/test_kafka_hardening.py) peaked 15
 * MiB higher when every batch encoded ahead. */
#define RECEIPTS_AHEAD_MAX_BYTES (OE_WORKER_BATCH_BYTES / 2)

/* One message of the batch in hand, from poll to commit. */
typedef struct batch_slot {
    rd_kafka_message_t *msg;   /* owned until the batch ends */
    int dead;                  /* undecodable: published to the DLQ as it came */
    oe_batch_item item;        /* !dead: the request and the engine's outcome */
    char detail[512];          /* why decoding failed (dead letter or rejection) */
    int delivery;              /* DELIVERY_* of its receipt or dead letter */
    int truncate;              /* dead letter too large: send headers only */
    rd_kafka_resp_err_t error; /* why its last delivery failed */
    /* Its receipt, encoded ahead (worker_receipt_ahead, on the engine's
     * helpers during the commit) or when produced. The buffer is kept for
     * the slot's next receipts, and produced without a copy: librdkafka
     * reads it until the message's delivery report (lent counts those not
     * in yet), so it is written again only when none is out
     * (worker_receipt_release). */
    oe_buf receipt;
    unsigned lent;
} batch_slot;

/* A batch: its slots (batch_max of them, reused) and how it is doing. */
typedef struct batch {
    batch_slot *slots;
    int set;                      /* which of the two slot arrays (0 or 1): it moves with them */
    size_t n;                     /* slots in use */
    size_t bytes;                 /* message bytes in the batch */
    oe_batch_item **engine_items; /* the engine's view: items of the slots not dead */
    uintptr_t generation;         /* of its publishing (delivery reports carry it) */
    rd_kafka_resp_err_t delivery_error; /* the first failed delivery's error of this round */
    double publish_started;
    double started; /* oe_monotonic() when it was decoded */
    long ne;        /* requests for the engine (the rest are dead letters) */
    int active;     /* (in) published, not yet finished */
    /* The signed checkpoint the batch's commit made (empty: none, or not
     * published), produced with its receipts and tracked as they are. */
    oe_buf checkpoint;
    int checkpoint_delivery;              /* DELIVERY_* */
    rd_kafka_resp_err_t checkpoint_error; /* why its last delivery failed */
} batch;

struct oe_worker {
    oe_worker_config cfg;
    oe_kafka_pair confs; /* checked by oe_worker_new, taken by oe_worker_start */
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    oe_codec *codec;
    pthread_t thread;
    int thread_started;
    atomic_int running;         /* cleared by oe_worker_stop */
    atomic_int failed;          /* set when the worker stopped on a fatal error */
    char fail_reason[512];      /* the detail: logged, and the exit line */
    char fail_public[160];      /* what /ready shows: our own words only */
    atomic_int data_lost;       /* set once a committed offset was found gone */
    char data_loss_reason[512]; /* written by the worker thread before data_lost */
    atomic_int assigned;        /* partitions currently assigned */

    /* Consumption stops (the assignment is paused) while the ledger cannot
     * be reached (the batch in hand is retried) or while the group has
     * other members and the ledger is private (fail closed). */
    atomic_int ledger_down;
    atomic_int unshared;
    pthread_mutex_t reason_lock; /* guards the reasons below */
    char unshared_reason[512];
    /* Set while a batch's receipts have waited over STALL_SECONDS for the
     * brokers' acknowledgement (e.g. too few in-sync replicas). */
    atomic_int stalled;
    char stall_reason[512];
    int paused;     /* worker thread: the assignment is paused */
    int cluster_ok; /* worker thread: the cluster answered and our topics exist */
    double next_cluster_check;
    /* Offsets of published batches whose commit a rebalance refused
     * (worker thread: commit_offsets, retry_pending_commit, on_rebalance). */
    rd_kafka_topic_partition_list_t *pending_commit;
    double pending_since, next_pending_try;
    /* Asynchronous commits, one at a time and in order (offsets.c): the
     * queue their results come back on, whether one is on its way, and
     * the offsets of batches finished since it was sent (sent when it
     * comes back). */
    rd_kafka_queue_t *commit_q;
    int commit_inflight;
    rd_kafka_topic_partition_list_t *commit_next;
    /* Partitions revoked or assigned while that commit was on its way: if
     * it is refused, their offsets are not kept for later (they are of an
     * ownership that has ended). */
    rd_kafka_topic_partition_list_t *moved;
    /* The highest offset sent in a commit for each partition owned (the
     * ownership's; forgotten when the partition goes or comes back). */
    rd_kafka_topic_partition_list_t *sent;
    int sharing_dirty; /* worker thread: the assignment changed */
    double last_sharing_check;
    oe_log_limit ledger_log; /* "ledger unavailable": at its start, then every 30 s */

    /* The batch in hand (b) and, without transactions, the batch before it
     * whose receipts are still on their way (in): two sets of batch_max
     * slots, swapped, so that a batch is gathered and executed while the
     * one before it is acknowledged (finish_inflight). */
    batch b;
    batch in;
    uintptr_t generations;           /* the last generation given to a publishing batch */
    int finishing;                   /* finish_inflight runs (it is not re-entered) */
    rd_kafka_topic_t *out_topics[3]; /* receipts, DLQ and checkpoints, held so that their
                                        metadata stays known */
    double last_lag_update;
    long long part_lag[OE_KAFKA_METRICS_LAG_PARTITIONS]; /* update_lag's scratch */
    int stopped;                                         /* oe_worker_stop ran */
    int consumer_abandoned; /* it did not close in time: never destroyed */
    /* Producers replaced after fatal errors (renew_producer), per window. */
    double renew_window;
    int renewals, fenced_renewals;
    /* Receipt buffers let go of while a message still pointed into them
     * (a batch left on a stop or failure): freed once the producer that
     * holds those messages is destroyed (worker_receipts_returned). */
    oe_buf *orphans;
    size_t norphans, orphans_cap;
};

/* Exchanges the batch in hand and the batch in flight (their slots move
 * with them). */
static inline void worker_swap_batches(oe_worker *w)
{
    batch t = w->b;
    w->b = w->in;
    w->in = t;
}

/* worker.c */
__attribute__((format(printf, 3, 4))) void worker_fail(oe_worker *w, const char *public,
                                                       const char *fmt, ...);
int worker_renew_producer(oe_worker *w);

/* batch.c */
void worker_clear_requests(oe_worker *w);
void worker_batch_published(oe_worker *w, size_t ne, double seconds);
void worker_process_batch(oe_worker *w);
void worker_gather(oe_worker *w, int timeout);
void worker_update_pause(oe_worker *w);
void worker_rewind_batch(oe_worker *w);

/* publish.c */
int worker_renewable(rd_kafka_resp_err_t code);
void worker_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
int worker_receipt_ahead(void *ctx, oe_batch_item *it);
void worker_receipt_release(oe_worker *w, batch_slot *sl);
void worker_receipts_returned(oe_worker *w);
int worker_publish_start(oe_worker *w);
int worker_publish_batch(oe_worker *w, int once);
int worker_finish_inflight(oe_worker *w);

/* offsets.c */
void worker_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);
rd_kafka_topic_partition_list_t *worker_batch_offsets(oe_worker *w);
void worker_commit_offsets(oe_worker *w);
void worker_poll_commits(oe_worker *w, int wait_ms);
void worker_retry_pending_commit(oe_worker *w, int force);
void worker_forget_offsets(oe_worker *w, const rd_kafka_topic_partition_list_t *parts);
void worker_advance_sent(oe_worker *w, rd_kafka_topic_partition_list_t **list);

/* txn.c */
int worker_publish_transactional(oe_worker *w);

#endif
