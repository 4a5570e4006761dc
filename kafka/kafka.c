/* Kafka clients for every part of the binary (kafka.h): one function makes
 * producers and consumers from our settings, defaults, forced properties
 * and hooks, and routes librdkafka's log to stderr. The settings belong to
 * the caller; the client returned belongs to the caller too. */
#include "kafka/kafka.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/clock.h"
#include "engine/log.h"
#include "engine/status.h"

/* Lines logged lately, to drop repeats: every client of the process (the
 * worker's consumer and producer, the bridge's) reports the same broker
 * failure, each about once a second. A line is compared without its
 * "(after N ms in state ...)" tail and printed again after
 * LOG_REPEAT_SECONDS at the earliest. */
#define LOG_RECENT 16
#define LOG_REPEAT_SECONDS 30.0
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char text[160];
    double at;
} log_recent[LOG_RECENT];
static unsigned log_next;

/* 1 when the line was printed within LOG_REPEAT_SECONDS (else records it). */
static int log_repeated(const char *buf)
{
    char key[160];
    /* The same failure comes as a log line "[thrd:NAME]: TEXT" and as an
     * error event "TEXT": compared without the thread's name. */
    if (strncmp(buf, "[thrd:", 6) == 0) {
        const char *end = strstr(buf, "]: ");
        if (end)
            buf = end + 3;
    }
    const char *tail = strstr(buf, " (after ");
    int n = tail ? (int)(tail - buf) : (int)strlen(buf);
    snprintf(key, sizeof key, "%.*s", n, buf);
    double now = oe_monotonic();
    int seen = 0;
    pthread_mutex_lock(&log_lock);
    for (unsigned i = 0; i < LOG_RECENT && !seen; i++)
        if (log_recent[i].at > 0 && now - log_recent[i].at < LOG_REPEAT_SECONDS &&
            strcmp(log_recent[i].text, key) == 0)
            seen = 1;
    if (!seen) {
        snprintf(log_recent[log_next].text, sizeof log_recent[0].text, "%s", key);
        log_recent[log_next].at = now;
        log_next = (log_next + 1) % LOG_RECENT;
    }
    pthread_mutex_unlock(&log_lock);
    return seen;
}

/* librdkafka's log, through ours (component "kafka", its facility as a
 * field): warnings and worse (syslog levels 0-4) always, each distinct line
 * at most once per LOG_REPEAT_SECONDS, and its debug lines (7), which it
 * sends only when the user set the `debug` property (-X debug=... or
 * OPENEXEC_KAFKA_DEBUG), at info: asked for, so shown; its routine notices
 * and informational lines (5-6) are left out. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* A client being destroyed by us reports its connections failing
     * ("Local: Broker handle destroyed"): noise after the last word, e.g.
     * after a command's one-line reason. */
    if (level != 7 && strstr(buf, "Broker handle destroyed"))
        return;
    if (level == 7 || (level <= 4 && !log_repeated(buf)))
        oe_log(level <= 3   ? OE_LOG_ERROR
               : level == 4 ? OE_LOG_WARN
                            : OE_LOG_INFO,
               "kafka", OE_LOG_FIELDS("facility", fac), "%s", buf);
}

/* The process-wide broker state (oe_kafka_health). */
static pthread_mutex_t health_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int health_state;
static char health_reason[400];

/* Errors that retrying cannot cure: the brokers refused our credentials or
 * we refused their certificate. */
static int refused_error(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
           err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED || err == RD_KAFKA_RESP_ERR__SSL;
}

/* Copies reason into health_reason as one line (no tabs or newlines). */
static void set_reason(const char *reason)
{
    size_t i = 0;
    for (; reason[i] && i + 1 < sizeof health_reason; i++)
        health_reason[i] = reason[i] == '\n' || reason[i] == '\t' ? ' ' : reason[i];
    health_reason[i] = '\0';
}

/* Feeds a refusal or "all brokers down" to the state; returns 0 for any
 * other error (left to the caller). */
static int note_error(rd_kafka_resp_err_t err, const char *reason)
{
    int state;
    if (refused_error(err))
        state = OE_KAFKA_REFUSED;
    else if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        state = OE_KAFKA_DOWN;
    else
        return 0;
    pthread_mutex_lock(&health_lock);
    /* A refusal says more than "all brokers down", which follows it. */
    int was = atomic_load(&health_state);
    if (!(was == OE_KAFKA_REFUSED && state == OE_KAFKA_DOWN)) {
        set_reason(reason);
        atomic_store(&health_state, state);
        if (was != state && !log_repeated(health_reason))
            oe_log(state == OE_KAFKA_REFUSED ? OE_LOG_ERROR : OE_LOG_WARN, "kafka", NULL, "%s: %s",
                   state == OE_KAFKA_REFUSED ? "brokers refused the connection"
                                             : "brokers unreachable",
                   health_reason);
    }
    pthread_mutex_unlock(&health_lock);
    return 1;
}

static void note_up(void)
{
    if (atomic_load(&health_state) == OE_KAFKA_UP)
        return;
    pthread_mutex_lock(&health_lock);
    if (atomic_exchange(&health_state, OE_KAFKA_UP) != OE_KAFKA_UP)
        oe_log(OE_LOG_INFO, "kafka", NULL, "brokers reachable again");
    pthread_mutex_unlock(&health_lock);
}

oe_kafka_state oe_kafka_health(char *reason, size_t len)
{
    if (atomic_load(&health_state) == OE_KAFKA_UP)
        return OE_KAFKA_UP;
    pthread_mutex_lock(&health_lock);
    int state = atomic_load(&health_state);
    snprintf(reason, len, "%s", health_reason);
    pthread_mutex_unlock(&health_lock);
    return (oe_kafka_state)state;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    rd_kafka_resp_err_t e = (rd_kafka_resp_err_t)err;
    if (e == RD_KAFKA_RESP_ERR__DESTROY || strstr(reason, "Broker handle destroyed"))
        return; /* our own teardown (see log_cb) */
    if (!note_error(e, reason) && !log_repeated(reason))
        oe_log(OE_LOG_WARN, "kafka", OE_LOG_FIELDS("error", rd_kafka_err2name(e)), "%s", reason);
}

void oe_kafka_consumer_error(const char *who, const rd_kafka_message_t *m)
{
    const char *text = rd_kafka_message_errstr(m);
    if (!note_error(m->err, text) && !log_repeated(text))
        oe_log(OE_LOG_WARN, who, NULL, "consumer: %s", text);
}

static _Atomic double last_probe;

void oe_kafka_probe(rd_kafka_t *rk)
{
    if (atomic_load(&health_state) == OE_KAFKA_UP)
        return;
    double now = oe_monotonic();
    if (now - atomic_load(&last_probe) < 1.0)
        return;
    atomic_store(&last_probe, now);
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 0, NULL, &md, 500) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        note_up();
    }
}

oe_rc oe_kafka_check_cluster(rd_kafka_t *rk, const char *const *topics, size_t n, int timeout_ms,
                             int *parts, int *rf, char *err, size_t errlen)
{
    double end = oe_monotonic() + timeout_ms / 1000.0;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    char why[400];
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        double t0 = oe_monotonic();
        e = rd_kafka_metadata(rk, 1, NULL, &md, 500);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            note_up();
            int rc = OE_OK;
            for (size_t i = 0; i < n && rc == OE_OK; i++) {
                const struct rd_kafka_metadata_topic *t = NULL;
                for (int j = 0; j < md->topic_cnt && !t; j++)
                    if (strcmp(md->topics[j].topic, topics[i]) == 0)
                        t = &md->topics[j];
                if (!t || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                    snprintf(err, errlen,
                             "topic %s does not exist on the cluster (create it with "
                             "`openexec topics`)",
                             topics[i]);
                    rc = OE_EINVAL;
                } else if (t->err) {
                    snprintf(err, errlen, "topic %s: %s", topics[i], rd_kafka_err2str(t->err));
                    rc = OE_EINVAL;
                } else {
                    if (parts)
                        parts[i] = t->partition_cnt;
                    if (rf)
                        rf[i] = t->partition_cnt > 0 ? t->partitions[0].replica_cnt : 0;
                }
            }
            rd_kafka_metadata_destroy(md);
            return rc;
        }
        if (rd_kafka_type(rk) == RD_KAFKA_PRODUCER)
            rd_kafka_poll(rk, 0); /* serves error_cb: a refusal is known now */
        if (oe_kafka_health(why, sizeof why) == OE_KAFKA_REFUSED) {
            snprintf(err, errlen, "brokers refused the connection: %s", why);
            return OE_EREFUSED;
        }
        if (oe_monotonic() > end)
            break;
        if (oe_monotonic() - t0 < 0.1) /* failed at once: no busy loop */
            nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
    }
    if (oe_kafka_health(why, sizeof why) == OE_KAFKA_UP)
        snprintf(why, sizeof why, "%s", rd_kafka_err2str(e));
    snprintf(err, errlen, "brokers unreachable after %.1f s: %s", timeout_ms / 1000.0, why);
    return OE_EUNAVAIL;
}

void oe_kafka_conf_logging(rd_kafka_conf_t *conf)
{
    rd_kafka_conf_set_log_cb(conf, log_cb);
}

/* Sets name/value pairs; returns OE_OK, or OE_EINVAL with errstr filled on
 * refusal. */
static int set_pairs(rd_kafka_conf_t *conf, const char *const *pairs, char *errstr, size_t n)
{
    for (size_t i = 0; pairs && pairs[i]; i += 2)
        if (rd_kafka_conf_set(conf, pairs[i], pairs[i + 1], errstr, n) != RD_KAFKA_CONF_OK)
            return OE_EINVAL;
    return OE_OK;
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

rd_kafka_conf_t *oe_kafka_client_conf(const oe_kafka_settings *s, const char *const *defaults,
                                      const char *const *forced, const oe_kafka_hooks *hooks,
                                      const char *what, char *err, size_t errlen)
{
    char reason[512];
    rd_kafka_conf_t *conf = oe_kafka_conf(s, defaults, forced, reason, sizeof reason);
    if (!conf) {
        snprintf(err, errlen, "%s: %s", what, reason);
        return NULL;
    }
    rd_kafka_conf_set_error_cb(conf, error_cb);
    if (hooks) {
        rd_kafka_conf_set_opaque(conf, hooks->opaque);
        if (hooks->on_delivery)
            rd_kafka_conf_set_dr_msg_cb(conf, hooks->on_delivery);
        if (hooks->on_rebalance)
            rd_kafka_conf_set_rebalance_cb(conf, hooks->on_rebalance);
    }
    return conf;
}

rd_kafka_t *oe_kafka_create(rd_kafka_type_t type, rd_kafka_conf_t *conf, const char *what,
                            char *err, size_t errlen)
{
    char reason[512];
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

oe_rc oe_kafka_create_pair(oe_kafka_pair *p, const char *what, char *err, size_t errlen)
{
    char consumer[64], producer[64];
    snprintf(consumer, sizeof consumer, "%s%sconsumer", what, *what ? " " : "");
    snprintf(producer, sizeof producer, "%s%sproducer", what, *what ? " " : "");
    rd_kafka_conf_t *cc = p->consumer_conf, *pc = p->producer_conf;
    p->consumer_conf = p->producer_conf = NULL; /* taken by oe_kafka_create */
    if (!(p->consumer = oe_kafka_create(RD_KAFKA_CONSUMER, cc, consumer, err, errlen))) {
        rd_kafka_conf_destroy(pc);
        return OE_EINVAL;
    }
    if (!(p->producer = oe_kafka_create(RD_KAFKA_PRODUCER, pc, producer, err, errlen)))
        return OE_EINVAL;
    return OE_OK;
}

void oe_kafka_pair_drop_confs(oe_kafka_pair *p)
{
    if (p->consumer_conf)
        rd_kafka_conf_destroy(p->consumer_conf);
    if (p->producer_conf)
        rd_kafka_conf_destroy(p->producer_conf);
    p->consumer_conf = p->producer_conf = NULL;
}

rd_kafka_t *oe_kafka_new(rd_kafka_type_t type, const oe_kafka_settings *s,
                         const char *const *defaults, const char *const *forced,
                         const oe_kafka_hooks *hooks, const char *what, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = oe_kafka_client_conf(s, defaults, forced, hooks, what, err, errlen);
    return conf ? oe_kafka_create(type, conf, what, err, errlen) : NULL;
}

int oe_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err,
                             size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e =
        t ? rd_kafka_metadata(rk, 0, t, &md, timeout_ms) : RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (t)
        rd_kafka_topic_destroy(t);
    if (!e && (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0))
        e = md->topic_cnt == 1 && md->topics[0].err ? md->topics[0].err
                                                    : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    int n = e ? OE_EIO : md->topics[0].partition_cnt;
    if (e)
        snprintf(err, errlen, "topic %s not available: %s", topic, rd_kafka_err2str(e));
    if (md)
        rd_kafka_metadata_destroy(md);
    return n;
}

int oe_kafka_assign_all(rd_kafka_t *consumer, const char *topic, int64_t offset, int timeout_ms,
                        char *err, size_t errlen)
{
    int n = oe_kafka_partition_count(consumer, topic, timeout_ms, err, errlen);
    if (n < 0)
        return n;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n && !e; i++) {
        int32_t part = i;
        int64_t at = offset, lo, hi;
        if (offset == OE_KAFKA_OFFSET_HIGH_NOW) {
            e = rd_kafka_query_watermark_offsets(consumer, topic, part, &lo, &hi, timeout_ms);
            at = hi;
        }
        rd_kafka_topic_partition_list_add(list, topic, part)->offset = at;
    }
    if (!e)
        e = rd_kafka_assign(consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (e) {
        snprintf(err, errlen, "topic %s: cannot assign: %s", topic, rd_kafka_err2str(e));
        return OE_EIO;
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
