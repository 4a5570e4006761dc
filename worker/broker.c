#include "broker.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>

#include "kafka.h"

struct oe_broker {
    rd_kafka_t *owner;             /* the mock cluster lives in this handle */
    rd_kafka_mock_cluster_t *mock;
};

int oe_broker_start(int partitions, const char *const *topics, size_t ntopics, oe_broker **out,
                    char *err, size_t errlen)
{
    oe_broker *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    oe_kafka_conf_logging(conf);
    char errstr[512];
    b->owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!b->owner) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "embedded broker: %s", errstr);
        free(b);
        return -1;
    }
    b->mock = rd_kafka_mock_cluster_new(b->owner, 1);
    if (!b->mock) {
        snprintf(err, errlen, "embedded broker: cannot create the mock cluster");
        oe_broker_stop(b);
        return -1;
    }
    for (size_t i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(b->mock, topics[i], partitions, 1);
        if (e) {
            snprintf(err, errlen, "embedded broker: topic %s: %s", topics[i], rd_kafka_err2str(e));
            oe_broker_stop(b);
            return -1;
        }
    }
    *out = b;
    return 0;
}

const char *oe_broker_bootstraps(const oe_broker *b)
{
    return rd_kafka_mock_cluster_bootstraps(b->mock);
}

void *oe_broker_mock(oe_broker *b)
{
    return b->mock;
}

void oe_broker_stop(oe_broker *b)
{
    if (!b)
        return;
    if (b->mock)
        rd_kafka_mock_cluster_destroy(b->mock);
    if (b->owner)
        rd_kafka_destroy(b->owner);
    free(b);
}
