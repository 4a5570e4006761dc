/* Kafka clients for every part of the binary (kafka.h): one function makes
 * producers and consumers from our settings, defaults, forced properties
 * and hooks, and routes librdkafka's log to stderr. The settings belong to
 * the caller; the client returned belongs to the caller too. */
#include "kafka.h"

#include <stdio.h>
#include <stdlib.h>

/* librdkafka's log: warnings and worse (syslog levels 0-4) always, and its
 * debug lines (7), which it sends only when the user set the `debug`
 * property (-X debug=... or OPENEXEC_KAFKA_DEBUG); its routine notices and
 * informational lines (5-6) are left out. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 4 || level == 7)
        fprintf(stderr, "openexec: kafka: %s: %s\n", fac, buf);
}

void oe_kafka_conf_logging(rd_kafka_conf_t *conf)
{
    rd_kafka_conf_set_log_cb(conf, log_cb);
}

/* Sets name/value pairs; returns -1 with errstr filled on refusal. */
static int set_pairs(rd_kafka_conf_t *conf, const char *const *pairs, char *errstr, size_t n)
{
    for (size_t i = 0; pairs && pairs[i]; i += 2)
        if (rd_kafka_conf_set(conf, pairs[i], pairs[i + 1], errstr, n) != RD_KAFKA_CONF_OK)
            return -1;
    return 0;
}

rd_kafka_conf_t *oe_kafka_conf(const oe_kafka_settings *s, const char *const *defaults,
                               const char *const *forced, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    if (s->brokers && rd_kafka_conf_set(conf, "bootstrap.servers", s->brokers, errstr,
                                        sizeof errstr) != RD_KAFKA_CONF_OK)
        goto refused;
    /* Small requests and acknowledgements must not wait for Nagle's
     * algorithm to meet the peer's delayed ACK (about 40 ms a round). */
    static const char *const common[] = {"socket.nagle.disable", "true", NULL};
    if (set_pairs(conf, common, errstr, sizeof errstr) != 0 ||
        set_pairs(conf, defaults, errstr, sizeof errstr) != 0)
        goto refused;
    for (size_t i = 0; i < s->nprops; i++)
        if (rd_kafka_conf_set(conf, s->prop_names[i], s->prop_values[i], errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK)
            goto refused;
    if (set_pairs(conf, forced, errstr, sizeof errstr) != 0)
        goto refused;
    oe_kafka_conf_logging(conf);
    return conf;
refused:
    snprintf(err, errlen, "kafka configuration: %s", errstr);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

rd_kafka_t *oe_kafka_new(rd_kafka_type_t type, const oe_kafka_settings *s,
                         const char *const *defaults, const char *const *forced,
                         const oe_kafka_hooks *hooks, const char *what, char *err, size_t errlen)
{
    char reason[512];
    rd_kafka_conf_t *conf = oe_kafka_conf(s, defaults, forced, reason, sizeof reason);
    if (!conf) {
        snprintf(err, errlen, "%s: %s", what, reason);
        return NULL;
    }
    if (hooks) {
        rd_kafka_conf_set_opaque(conf, hooks->opaque);
        if (hooks->on_delivery)
            rd_kafka_conf_set_dr_msg_cb(conf, hooks->on_delivery);
        if (hooks->on_rebalance)
            rd_kafka_conf_set_rebalance_cb(conf, hooks->on_rebalance);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, reason, sizeof reason);
    if (!rk) {
        rd_kafka_conf_destroy(conf); /* rd_kafka_new keeps it only on success */
        snprintf(err, errlen, "%s: %s", what, reason);
        return NULL;
    }
    if (type == RD_KAFKA_CONSUMER)
        rd_kafka_poll_set_consumer(rk);
    return rk;
}

int oe_kafka_assign_all(rd_kafka_t *consumer, const char *topic, int64_t offset, int timeout_ms,
                        char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(consumer, topic, NULL);
    rd_kafka_resp_err_t e =
        t ? rd_kafka_metadata(consumer, 0, t, &md, timeout_ms) : RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (t)
        rd_kafka_topic_destroy(t);
    if (!e && (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0))
        e = md->topic_cnt == 1 && md->topics[0].err ? md->topics[0].err
                                                    : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    if (e) {
        snprintf(err, errlen, "topic %s not available: %s", topic, rd_kafka_err2str(e));
        if (md)
            rd_kafka_metadata_destroy(md);
        return -1;
    }
    int n = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n && !e; i++) {
        int32_t part = md->topics[0].partitions[i].id;
        int64_t at = offset, lo, hi;
        if (offset == OE_KAFKA_OFFSET_HIGH_NOW) {
            e = rd_kafka_query_watermark_offsets(consumer, topic, part, &lo, &hi, timeout_ms);
            at = hi;
        }
        rd_kafka_topic_partition_list_add(list, topic, part)->offset = at;
    }
    rd_kafka_metadata_destroy(md);
    if (!e)
        e = rd_kafka_assign(consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (e) {
        snprintf(err, errlen, "topic %s: cannot assign: %s", topic, rd_kafka_err2str(e));
        return -1;
    }
    return n;
}

int oe_correlation_valid(const void *val, size_t size)
{
    if (!val || size != OE_CORRELATION_LEN)
        return 0;
    const unsigned char *p = val;
    for (size_t i = 0; i < size; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return 0;
    return 1;
}
