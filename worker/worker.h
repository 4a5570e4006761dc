/* The Kafka worker: one consumer-group member that drives
 *
 *   poll a batch -> decode -> executor (one engine batch, one ledger transaction)
 *     -> produce one receipt per request message (key = nonce)
 *     -> wait for every delivery -> commit offsets
 *
 * in that order, so that a crash at any instant loses no request and never
 * executes a nonce twice on the same store: whatever was not committed is
 * re-delivered and answered from the store (status `replayed`).
 */
#ifndef OE_WORKER_H
#define OE_WORKER_H

#include <stddef.h>

#include "engine/executor.h"
#include "engine/status.h"
#include "kafka/kafka.h"
#include "kafka/kafka_metrics.h"

typedef struct oe_worker_config {
    const oe_kafka_settings *kafka;  /* borrowed */
    oe_executor *executor;           /* borrowed: runs each batch (oe_executor_run) */
    oe_kafka_metrics *kafka_metrics; /* borrowed: the Kafka side's */
    int receipt_json;                /* 1: JSON receipts, 0: Avro */
    long confluent_schema_id;        /* -1: Confluent framing not configured */
    size_t batch_max;                /* most messages per batch [5000] */
    int txn_timeout_ms;              /* each transactional call waits at most
                                        this long before it is retried [60000] */
    int ledger_shared;               /* 1: every member of the group shares this
                                        ledger (PostgreSQL, or a SQLite file the
                                        operator says is shared); 0: the worker
                                        stops consuming while it is not alone */
    const char *log_origin;          /* the receipts log whose checkpoints are
                                        published to kafka->checkpoints_topic (the
                                        key of each), NULL: signing off */
    int own_broker;                  /* 1: the brokers are the embedded broker of
                                        this process, which no other worker joins:
                                        the worker takes every partition of the
                                        requests topic with assign() instead of
                                        joining the group (the embedded broker's
                                        first group join waits 3 s) */
} oe_worker_config;

typedef struct oe_worker oe_worker;

/* Memory bounds of a worker (besides batch_max): a batch stops growing once
 * its messages reach OE_WORKER_BATCH_BYTES, and librdkafka prefetches at
 * most OE_WORKER_PREFETCH_KBYTES, OE_WORKER_FETCH_BYTES per fetch. Every
 * document of a batch is alive while the engine runs, and a document costs
 * up to about 14 times its text (24-byte nodes for 2-byte values such as
 * "0,"), so 4 MiB of messages are at most ~60 MiB of documents; their
 * results, leaves, proofs and receipts take about as much again, for the
 * batch in hand and the one being published. With the JSON node cap
 * (engine/json.h) a worker's peak RSS under batches of such documents is
 * about 230 MiB (tests/http/test_kafka_hardening.py holds it under 288).
 * Batches of ordinary requests (a few hundred bytes) reach batch_max long
 * before this. */
#define OE_WORKER_BATCH_BYTES ((size_t)4 << 20)
#define OE_WORKER_PREFETCH_KBYTES 16384
#define OE_WORKER_FETCH_BYTES (8 << 20)

/* Allocates a worker and checks the configuration of its consumer and
 * producer; starts nothing. Returns OE_OK; OE_EINVAL when librdkafka
 * refused a property; OE_EIO, OE_ENOMEM; each with a reason in err. */
oe_rc oe_worker_new(const oe_worker_config *cfg, oe_worker **out, char *err, size_t errlen);

/* Creates the consumer and producer (librdkafka's threads; with
 * transactions, initialises them), subscribes (or, with own_broker,
 * assigns every partition of the requests topic) and starts the worker
 * thread. Once only. Returns OE_OK; OE_EINVAL when librdkafka refused the
 * configuration; OE_EIO for a run-time failure (e.g. the transaction
 * coordinator did not answer, no thread); OE_ENOMEM; each with a reason
 * in err. On failure, stop and free release what was made. */
oe_rc oe_worker_start(oe_worker *w, char *err, size_t errlen);

/* 1 once the consumer has partitions assigned and consumes; else 0 with a
 * reason (also while the ledger cannot be reached, or while other members
 * share the group but not the ledger). The reason is for HTTP answers: our
 * own words, never librdkafka's or a backend's text (that is logged). */
int oe_worker_ready(oe_worker *w, char *reason, size_t len);

/* 1 when the worker stopped on its own because of a fatal error (the
 * detailed reason, librdkafka's text included, in err: for the log and the
 * exit line, not for HTTP answers); the service should then exit 1. */
int oe_worker_failed(oe_worker *w, char *err, size_t errlen);

/* Drains: finishes the batch in hand (or leaves it uncommitted), joins the
 * thread, leaves the group and flushes the producer. NULL is allowed. */
void oe_worker_stop(oe_worker *w);

/* Stops if needed and frees everything. NULL is allowed. */
void oe_worker_free(oe_worker *w);

#endif
