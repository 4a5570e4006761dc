/* The embedded broker: librdkafka's mock cluster, a real Kafka-protocol
 * server on loopback, for development, tests and `make run`. It keeps at
 * most 100,000 messages or 5 MiB per partition and persists nothing. */
#ifndef OE_BROKER_H
#define OE_BROKER_H

#include <stddef.h>

typedef struct oe_broker oe_broker;

/* A one-broker cluster with the given topics and number of partitions
 * (other topics auto-create with 4), not started: nothing listens yet.
 * Returns OE_OK, or OE_ENOMEM (status.h) with a reason in err. */
int oe_broker_new(int partitions, const char *const *topics, size_t ntopics, oe_broker **out,
                  char *err, size_t errlen);

/* Starts the cluster (librdkafka's threads) with its topics, and the
 * relay of oe_broker_listen. Once only. Returns OE_OK, or an oe_rc with a
 * reason in err: OE_EINVAL (a topic the mock refuses), OE_EIO (the client,
 * mock cluster or relay cannot start). */
int oe_broker_start(oe_broker *b, char *err, size_t errlen);

/* Before oe_broker_start: also takes connections on 127.0.0.1:port
 * (1-65535, bound now), a fixed bootstrap address, through a relay
 * (relay.h) to the broker's own port: a client bootstrapping there learns
 * the broker's own address from its metadata. Returns OE_OK, or with a
 * reason in err OE_EINVAL (port out of range, a fixed port set already,
 * or the broker started) or what oe_relay_new returned (OE_EIO: the port
 * is taken, ...). */
int oe_broker_listen(oe_broker *b, int port, char *err, size_t errlen);

/* "127.0.0.1:PORT" (owned by the broker), once started: the fixed port
 * when oe_broker_listen succeeded, else the broker's own. */
const char *oe_broker_bootstraps(const oe_broker *b);

/* The mock cluster itself (an rd_kafka_mock_cluster_t *), for tests that
 * inject errors or take the broker down. */
void *oe_broker_mock(oe_broker *b);

void oe_broker_free(oe_broker *b);

#endif
