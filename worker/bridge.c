#include "bridge.h"

#include <inttypes.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUCKETS 4096

/* One request waiting for its receipt. */
typedef struct waiter {
    uint64_t seq;              /* correlation number */
    double deadline;           /* monotonic seconds */
    oe_bridge_reply_fn reply;
    void *ctx;
    struct waiter *bucket_next;     /* hash chain */
    struct waiter *prev, *next;     /* in deadline (= submission) order */
} waiter;

struct oe_bridge {
    const oe_kafka_settings *kafka;
    oe_metrics *metrics;
    double timeout;            /* seconds */
    rd_kafka_t *producer;
    rd_kafka_t *consumer;
    oe_codec *codec;           /* decodes receipts, bridge thread only */
    char instance[17];         /* random hex: this bridge's correlation prefix */
    pthread_t thread;
    int thread_started;
    atomic_int running;
    atomic_int positioned;     /* receipts consumer assigned at the end */
    char not_ready[320];

    pthread_mutex_t lock;      /* guards everything below */
    int closed;
    uint64_t next_seq;
    waiter *buckets[BUCKETS];
    waiter *oldest, *newest;
};

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Unlinks a waiter; the lock is held. */
static void unlink_waiter(oe_bridge *b, waiter *w)
{
    waiter **p = &b->buckets[w->seq % BUCKETS];
    while (*p && *p != w)
        p = &(*p)->bucket_next;
    if (*p)
        *p = w->bucket_next;
    if (w->prev)
        w->prev->next = w->next;
    else
        b->oldest = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        b->newest = w->prev;
}

/* Finds and unlinks the waiter with this number; the lock is held. */
static waiter *take_waiter(oe_bridge *b, uint64_t seq)
{
    for (waiter *w = b->buckets[seq % BUCKETS]; w; w = w->bucket_next)
        if (w->seq == seq) {
            unlink_waiter(b, w);
            return w;
        }
    return NULL;
}

/* Delivery reports of request messages: a failed one is answered 503. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    oe_bridge *b = opaque;
    if (!m->err)
        return;
    uint64_t seq = (uint64_t)(uintptr_t)m->_private;
    pthread_mutex_lock(&b->lock);
    waiter *w = take_waiter(b, seq);
    pthread_mutex_unlock(&b->lock);
    if (w) {
        char reason[256];
        snprintf(reason, sizeof reason, "could not publish the request: %s",
                 rd_kafka_err2str(m->err));
        w->reply(w->ctx, NULL, 503, reason);
        free(w);
    }
}

/* Assigns every partition of the receipts topic at its current end, so
 * that only receipts of requests published from now on are read. */
static int position_consumer(oe_bridge *b)
{
    char err[256];
    if (oe_kafka_assign_all(b->consumer, b->kafka->receipts_topic, OE_KAFKA_OFFSET_HIGH_NOW, 5000,
                            err, sizeof err) < 0) {
        pthread_mutex_lock(&b->lock);
        snprintf(b->not_ready, sizeof b->not_ready, "receipts consumer: %s", err);
        pthread_mutex_unlock(&b->lock);
        return -1;
    }
    atomic_store(&b->positioned, 1);
    return 0;
}

/* Reads the correlation number of a receipt addressed to this bridge. */
static int correlation_of(oe_bridge *b, const rd_kafka_message_t *m, uint64_t *seq)
{
    rd_kafka_headers_t *h;
    const void *val;
    size_t size;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, OE_HEADER_CORRELATION, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    char text[64];
    if (size < 18 || size >= sizeof text)
        return -1;
    memcpy(text, val, size);
    text[size] = '\0';
    if (memcmp(text, b->instance, 16) != 0 || text[16] != '-')
        return -1;
    char *end;
    *seq = strtoull(text + 17, &end, 10);
    return *end == '\0' ? 0 : -1;
}

static void handle_receipt(oe_bridge *b, const rd_kafka_message_t *m)
{
    uint64_t seq;
    if (correlation_of(b, m, &seq) != 0)
        return;
    pthread_mutex_lock(&b->lock);
    waiter *w = take_waiter(b, seq);
    pthread_mutex_unlock(&b->lock);
    if (!w)
        return; /* answered already (timeout), or a duplicate receipt */
    oe_receipt r;
    char err[256];
    if (oe_codec_decode_receipt(b->codec, m->payload, m->len, &r, err, sizeof err) == 0) {
        w->reply(w->ctx, &r, 200, NULL);
        oe_receipt_clear(&r);
    } else {
        char reason[320];
        snprintf(reason, sizeof reason, "undecodable receipt: %s", err);
        w->reply(w->ctx, NULL, 502, reason);
    }
    free(w);
}

/* Answers the waiters whose time is up with 504. */
static void expire(oe_bridge *b)
{
    double now = monotonic();
    for (;;) {
        pthread_mutex_lock(&b->lock);
        waiter *w = b->oldest;
        if (w && w->deadline <= now)
            unlink_waiter(b, w);
        else
            w = NULL;
        pthread_mutex_unlock(&b->lock);
        if (!w)
            return;
        atomic_fetch_add(&b->metrics->bridge_timeouts, 1);
        w->reply(w->ctx, NULL, 504, "no receipt in time");
        free(w);
    }
}

static void *bridge_main(void *arg)
{
    oe_bridge *b = arg;
    double next_try = 0;
    while (atomic_load(&b->running)) {
        if (!atomic_load(&b->positioned) && monotonic() >= next_try) {
            if (position_consumer(b) != 0)
                next_try = monotonic() + 0.5;
        }
        rd_kafka_poll(b->producer, 0);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(b->consumer, 20);
        while (m) {
            if (!m->err)
                handle_receipt(b, m);
            rd_kafka_message_destroy(m);
            m = rd_kafka_consumer_poll(b->consumer, 0);
        }
        expire(b);
    }
    return NULL;
}

int oe_bridge_start(const oe_kafka_settings *k, oe_metrics *metrics, long timeout_ms,
                    oe_bridge **out, char *err, size_t errlen)
{
    oe_bridge *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&b->lock, NULL);
    b->kafka = k;
    b->metrics = metrics;
    b->timeout = (double)timeout_ms / 1000.0;
    snprintf(b->not_ready, sizeof b->not_ready, "receipts consumer not positioned yet");
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        snprintf(err, errlen, "no randomness for correlation ids");
        goto error;
    }
    for (int i = 0; i < 8; i++)
        snprintf(b->instance + 2 * i, 3, "%02x", rnd[i]);
    if (oe_codec_new(-1, &b->codec, err, errlen) != 0)
        goto error;

    /* message.max.bytes: a 1 MiB body plus headers must fit. */
    const char *producer_defaults[] = {"linger.ms", "0", "message.timeout.ms", "10000",
                                       "message.max.bytes", "2097152", NULL};
    const char *producer_forced[] = {"enable.idempotence", "true", "acks", "all", NULL};
    oe_kafka_hooks hooks = {.opaque = b, .on_delivery = on_delivery};
    b->producer = oe_kafka_new(RD_KAFKA_PRODUCER, k, producer_defaults, producer_forced, &hooks,
                               "bridge producer", err, errlen);
    if (!b->producer)
        goto error;
    char group[64];
    snprintf(group, sizeof group, "openexec-bridge-%s", b->instance);
    const char *consumer_defaults[] = {"fetch.wait.max.ms", "5", NULL};
    const char *consumer_forced[] = {"group.id", group, "enable.auto.commit", "false",
                                     "enable.partition.eof", "false", NULL};
    b->consumer = oe_kafka_new(RD_KAFKA_CONSUMER, k, consumer_defaults, consumer_forced, NULL,
                               "bridge consumer", err, errlen);
    if (!b->consumer)
        goto error;
    atomic_store(&b->running, 1);
    if (pthread_create(&b->thread, NULL, bridge_main, b) != 0) {
        snprintf(err, errlen, "cannot start the bridge thread");
        goto error;
    }
    b->thread_started = 1;
    *out = b;
    return 0;
error:
    oe_bridge_free(b);
    return -1;
}

int oe_bridge_ready(oe_bridge *b, char *reason, size_t len)
{
    if (atomic_load(&b->positioned))
        return 1;
    pthread_mutex_lock(&b->lock);
    snprintf(reason, len, "%s", b->not_ready);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

void oe_bridge_submit(oe_bridge *b, const char *body, size_t len, const char *key,
                      oe_bridge_reply_fn reply, void *ctx)
{
    waiter *w = calloc(1, sizeof *w);
    if (!w) {
        reply(ctx, NULL, 503, "out of memory");
        return;
    }
    w->reply = reply;
    w->ctx = ctx;
    w->deadline = monotonic() + b->timeout;
    pthread_mutex_lock(&b->lock);
    if (b->closed) {
        pthread_mutex_unlock(&b->lock);
        free(w);
        reply(ctx, NULL, 503, "shutting down");
        return;
    }
    w->seq = ++b->next_seq;
    w->bucket_next = b->buckets[w->seq % BUCKETS];
    b->buckets[w->seq % BUCKETS] = w;
    w->prev = b->newest;
    if (b->newest)
        b->newest->next = w;
    else
        b->oldest = w;
    b->newest = w;
    uint64_t seq = w->seq;
    pthread_mutex_unlock(&b->lock);

    char corr[64];
    snprintf(corr, sizeof corr, "%s-%" PRIu64, b->instance, seq);
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, OE_HEADER_CORRELATION, -1, corr, -1);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        b->producer, RD_KAFKA_V_TOPIC(b->kafka->requests_topic),
        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE((void *)body, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        pthread_mutex_lock(&b->lock);
        waiter *mine = take_waiter(b, seq);
        pthread_mutex_unlock(&b->lock);
        if (mine) {
            char reason[256];
            snprintf(reason, sizeof reason, "could not publish the request: %s",
                     rd_kafka_err2str(err));
            mine->reply(mine->ctx, NULL, 503, reason);
            free(mine);
        }
    }
}

void oe_bridge_close(oe_bridge *b)
{
    /* Stop the thread first: no reply may be on its way once this returns,
     * because the HTTP server is stopped next and must find no suspended
     * connection. */
    atomic_store(&b->running, 0);
    if (b->thread_started) {
        pthread_join(b->thread, NULL);
        b->thread_started = 0;
    }
    pthread_mutex_lock(&b->lock);
    b->closed = 1;
    waiter *w = b->oldest;
    b->oldest = b->newest = NULL;
    memset(b->buckets, 0, sizeof b->buckets);
    pthread_mutex_unlock(&b->lock);
    while (w) {
        waiter *next = w->next;
        w->reply(w->ctx, NULL, 503, "shutting down");
        free(w);
        w = next;
    }
}

void oe_bridge_free(oe_bridge *b)
{
    if (!b)
        return;
    oe_bridge_close(b);
    atomic_store(&b->running, 0);
    if (b->thread_started)
        pthread_join(b->thread, NULL);
    if (b->consumer) {
        rd_kafka_consumer_close(b->consumer);
        rd_kafka_destroy(b->consumer);
    }
    if (b->producer) {
        rd_kafka_flush(b->producer, 2000);
        rd_kafka_destroy(b->producer);
    }
    oe_codec_free(b->codec);
    pthread_mutex_destroy(&b->lock);
    free(b);
}
