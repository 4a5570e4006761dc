/* Kafka settings shared by the worker, the bridge and the CLI tools, and
 * the one place that turns them into librdkafka configurations. */
#ifndef OE_KAFKA_H
#define OE_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "engine/status.h"

/* Most librdkafka properties passed through (-X / OPENEXEC_KAFKA_*). */
#define OE_KAFKA_MAX_PROPS 64

typedef struct oe_kafka_settings {
    const char *brokers; /* bootstrap.servers */
    const char *requests_topic;
    const char *receipts_topic;
    const char *dlq_topic;
    const char *checkpoints_topic; /* signed checkpoints; NULL: none published */
    const char *group_id;
    const char *group_instance_id; /* the worker consumer's group.instance.id; NULL: none */
    int transactions;              /* 1: transactional receipts + offsets */
    const char *transactional_id;  /* used when transactions is set */
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

/* A client's configuration, checked: oe_kafka_conf(s, defaults, forced),
 * the hooks and the error callback. Returns NULL with a reason (prefixed
 * with what) in err when a property is refused. Starts nothing: objects
 * check their configuration in their `new` and create their clients
 * (threads) in their `start`. */
rd_kafka_conf_t *oe_kafka_client_conf(const oe_kafka_settings *s, const char *const *defaults,
                                      const char *const *forced, const oe_kafka_hooks *hooks,
                                      const char *what, char *err, size_t errlen);

/* Creates a client (and its threads) from conf, which it takes (freed on
 * failure too). A consumer's messages are redirected to its consumer
 * queue. Returns NULL with a reason (prefixed with what) in err: librdkafka
 * refuses some combinations of properties only here. */
rd_kafka_t *oe_kafka_create(rd_kafka_type_t type, rd_kafka_conf_t *conf, const char *what,
                            char *err, size_t errlen);

/* A consumer and a producer whose configurations are checked by an
 * object's `new` (oe_kafka_client_conf) and made into clients by its
 * `start` (oe_kafka_create_pair). The object destroys the clients its own
 * way (closing, flushing). */
typedef struct oe_kafka_pair {
    rd_kafka_conf_t *consumer_conf, *producer_conf; /* NULL once taken */
    rd_kafka_t *consumer, *producer;
} oe_kafka_pair;

/* Creates both clients from the pair's configurations (both taken, also
 * on failure); what prefixes their names in messages ("bridge" gives
 * "bridge consumer"). Returns OE_OK, or OE_EINVAL with a reason in err: a
 * combination of properties librdkafka refuses only here. A client made
 * before a failure stays in the pair. */
oe_rc oe_kafka_create_pair(oe_kafka_pair *p, const char *what, char *err, size_t errlen);

/* Destroys configurations not taken (an object freed without a start). */
void oe_kafka_pair_drop_confs(oe_kafka_pair *p);

/* oe_kafka_client_conf then oe_kafka_create, for the commands' short-lived
 * clients. */
rd_kafka_t *oe_kafka_new(rd_kafka_type_t type, const oe_kafka_settings *s,
                         const char *const *defaults, const char *const *forced,
                         const oe_kafka_hooks *hooks, const char *what, char *err, size_t errlen);

/* The number of partitions of topic (partitions are numbered 0..n-1), or
 * OE_EIO (status.h; negative) with a reason in err when the brokers do not
 * give it (the topic is not available, or no broker answered). */
int oe_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err,
                             size_t errlen);

/* For oe_kafka_assign_all: each partition's high watermark, queried now. */
#define OE_KAFKA_OFFSET_HIGH_NOW ((int64_t)-100)

/* Assigns every partition of topic to consumer (no group), each at offset:
 * a logical offset such as RD_KAFKA_OFFSET_BEGINNING, or
 * OE_KAFKA_OFFSET_HIGH_NOW, which pins the current end so that nothing
 * published after this call is missed. Returns the number of partitions,
 * or OE_EIO (status.h; negative) with a reason in err. */
int oe_kafka_assign_all(rd_kafka_t *consumer, const char *topic, int64_t offset, int timeout_ms,
                        char *err, size_t errlen);

/* The brokers as this process sees them, fed by every client's errors
 * (oe_kafka_new installs an error callback; consumers pass the errors they
 * poll to oe_kafka_consumer_error) and by metadata requests that succeed
 * (oe_kafka_check_cluster, oe_kafka_probe). Thread-safe. */
typedef enum oe_kafka_state {
    OE_KAFKA_UP = 0,      /* nothing wrong known */
    OE_KAFKA_DOWN = 1,    /* no broker reachable (all brokers down) */
    OE_KAFKA_REFUSED = 2, /* authentication or TLS verification failed */
} oe_kafka_state;

/* The state, with its one-line reason in reason (when not UP). */
oe_kafka_state oe_kafka_health(char *reason, size_t len);

/* An error a consumer polled (a message with err set, other than the end
 * of a partition): fed to the health state, or logged as "openexec: WHO:
 * TEXT" at most once per 30 s for the same text. */
void oe_kafka_consumer_error(const char *who, const rd_kafka_message_t *m);

/* While the state is not UP: at most once a second, a metadata request
 * through rk (up to 500 ms); its success sets the state UP again. */
void oe_kafka_probe(rd_kafka_t *rk);

/* Checks that the brokers answer and that each of the n topics exists,
 * trying a metadata request of all topics (500 ms each) until timeout_ms.
 * Returns OE_OK, or (status.h) with a one-line reason in err:
 * OE_EREFUSED (authentication or TLS, at once), OE_EINVAL (a topic missing
 * or in error) or OE_EUNAVAIL (no answer until the deadline). Serves rk's
 * events meanwhile. If parts is not NULL, parts[i] receives topic i's
 * partition count and rf[i] (if not NULL) its replication factor. */
oe_rc oe_kafka_check_cluster(rd_kafka_t *rk, const char *const *topics, size_t n, int timeout_ms,
                             int *parts, int *rf, char *err, size_t errlen);

/* Sets a librdkafka log callback that writes "openexec: kafka: ..." lines to
 * stderr (errors and warnings only, unless OPENEXEC_KAFKA_DEBUG is set). */
void oe_kafka_conf_logging(rd_kafka_conf_t *conf);

#endif
