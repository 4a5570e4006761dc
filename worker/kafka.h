/* Kafka settings shared by the worker, the bridge and the CLI tools, and
 * the one place that turns them into librdkafka configurations. */
#ifndef OE_KAFKA_H
#define OE_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* Most librdkafka properties passed through (-X / OPENEXEC_KAFKA_*). */
#define OE_KAFKA_MAX_PROPS 64

typedef struct oe_kafka_settings {
    const char *brokers; /* bootstrap.servers */
    const char *requests_topic;
    const char *receipts_topic;
    const char *dlq_topic;
    const char *group_id;
    int transactions;             /* 1: transactional receipts + offsets */
    const char *transactional_id; /* used when transactions is set */
    /* Properties passed to every client untouched, as name/value pairs. */
    const char *prop_names[OE_KAFKA_MAX_PROPS];
    const char *prop_values[OE_KAFKA_MAX_PROPS];
    size_t nprops;
} oe_kafka_settings;

/* The header that ties a receipt to the request message it answers: the
 * worker copies it from a request to its receipt. Its value is
 * OE_CORRELATION_LEN lowercase hex digits (128 random bits drawn by the
 * bridge); anything else is not copied, so that no producer can make a
 * receipt carry an arbitrary (e.g. megabyte-sized) header. */
#define OE_HEADER_CORRELATION "openexec.correlation"
#define OE_CORRELATION_LEN 32

/* 1 when val[0..size) is a correlation id of that form. */
int oe_correlation_valid(const void *val, size_t size);

/* A new configuration: bootstrap.servers, then the defaults (name/value
 * pairs, NULL-terminated; tunables the user may override), then the
 * pass-through properties, then the forced pairs (what correctness depends
 * on, e.g. enable.auto.commit=false). Either list may be NULL. Returns NULL
 * with a reason in err when a property is refused. */
rd_kafka_conf_t *oe_kafka_conf(const oe_kafka_settings *s, const char *const *defaults,
                               const char *const *forced, char *err, size_t errlen);

/* Callbacks and context for oe_kafka_new; any may be NULL. */
typedef struct oe_kafka_hooks {
    void *opaque;
    void (*on_delivery)(rd_kafka_t *, const rd_kafka_message_t *, void *);
    void (*on_rebalance)(rd_kafka_t *, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t *,
                         void *);
} oe_kafka_hooks;

/* Creates a client from oe_kafka_conf(s, defaults, forced) and the hooks.
 * A consumer's messages are redirected to its consumer queue. Returns NULL
 * with a reason (prefixed with what) in err. */
rd_kafka_t *oe_kafka_new(rd_kafka_type_t type, const oe_kafka_settings *s,
                         const char *const *defaults, const char *const *forced,
                         const oe_kafka_hooks *hooks, const char *what, char *err, size_t errlen);

/* For oe_kafka_assign_all: each partition's high watermark, queried now. */
#define OE_KAFKA_OFFSET_HIGH_NOW ((int64_t)-100)

/* Assigns every partition of topic to consumer (no group), each at offset:
 * a logical offset such as RD_KAFKA_OFFSET_BEGINNING, or
 * OE_KAFKA_OFFSET_HIGH_NOW, which pins the current end so that nothing
 * published after this call is missed. Returns the number of partitions,
 * or -1 with a reason in err. */
int oe_kafka_assign_all(rd_kafka_t *consumer, const char *topic, int64_t offset, int timeout_ms,
                        char *err, size_t errlen);

/* Sets a librdkafka log callback that writes "openexec: kafka: ..." lines to
 * stderr (errors and warnings only, unless OPENEXEC_KAFKA_DEBUG is set). */
void oe_kafka_conf_logging(rd_kafka_conf_t *conf);

#endif
