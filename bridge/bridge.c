/* The /execute bridge (bridge.h). Threads: oe_bridge_submit runs on HTTP
 * threads, everything else on the bridge thread; the waiters table is
 * guarded by lock. A waiter is allocated by submit and freed by whoever
 * answers it (receipt, delivery failure, timeout or close), exactly once.
 *
 * A receipt reaches a waiter only when it carries the waiter's correlation
 * id (128 random bits, drawn per request, so that no producer can guess the
 * id of a pending request) and its nonce and request hash are those of the
 * request that was sent: a forged receipt cannot answer another client. */
#include "bridge/bridge.h"

#include <inttypes.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/clock.h"
#include "engine/digest.h"
#include "engine/ids.h"
#include "engine/log.h"
#include "engine/request.h"
#include "engine/status.h"
#include "engine/tlog.h"

#define BUCKETS 4096

/* Length of a correlation id: 16 random bytes in hex (kafka.h). */
#define CORR_LEN OE_CORRELATION_LEN

/* One request waiting for its receipt. */
typedef struct waiter {
    uint64_t tag;                      /* the id's first 8 bytes: bucket and delivery opaque */
    char corr[CORR_LEN + 1];           /* correlation id */
    char nonce[OE_ECHO_MAX_BYTES + 1]; /* as the receipt repeats it ("" if unreadable) */
    char request_hash[65];             /* "" when the request cannot be hashed */
    double deadline;                   /* monotonic seconds */
    oe_bridge_reply_fn reply;
    void *ctx;
    struct waiter *bucket_next; /* hash chain */
    struct waiter *prev, *next; /* in deadline (= submission) order */
} waiter;

struct oe_bridge {
    const oe_kafka_settings *kafka;
    oe_kafka_metrics *metrics;
    double timeout;      /* seconds */
    oe_kafka_pair confs; /* checked by oe_bridge_new, taken by oe_bridge_start */
    rd_kafka_t *producer;
    rd_kafka_topic_t *requests; /* the producer's handle of the requests topic */
    rd_kafka_t *consumer;
    oe_codec *codec;   /* decodes receipts, bridge thread only */
    char instance[17]; /* random hex: names this bridge's consumer group */
    pthread_t thread;
    int thread_started;
    atomic_int running;
    atomic_int positioned;              /* receipts consumer assigned at the end */
    int position_failed;                /* the last attempt failed (logged once), bridge thread */
    oe_log_limit publish_log;           /* publish failures: a line per error code per interval */
    const unsigned char (*trusted)[32]; /* signed receipts: the keys; NULL: unchecked */
    size_t ntrusted;
    oe_tlog_note_cache notes; /* checkpoints verified (bridge thread) */
    oe_log_limit refused_log; /* refused receipts: a line per interval */

    pthread_mutex_t lock; /* guards everything below */
    int closed;
    waiter *buckets[BUCKETS];
    waiter *oldest, *newest;
};

/* Unlinks a waiter; the lock is held. */
static void unlink_waiter(oe_bridge *b, waiter *w)
{
    waiter **p = &b->buckets[w->tag % BUCKETS];
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

/* Finds the waiter with this tag (and, when corr is not NULL, this id);
 * the lock is held. */
static waiter *find_waiter(oe_bridge *b, uint64_t tag, const char *corr)
{
    for (waiter *w = b->buckets[tag % BUCKETS]; w; w = w->bucket_next)
        if (w->tag == tag && (!corr || memcmp(w->corr, corr, CORR_LEN) == 0))
            return w;
    return NULL;
}

static waiter *take_waiter(oe_bridge *b, uint64_t tag, const char *corr)
{
    waiter *w = find_waiter(b, tag, corr);
    if (w)
        unlink_waiter(b, w);
    return w;
}

/* The tag of a correlation id: its first 16 hex digits. */
static uint64_t corr_tag(const char *corr)
{
    uint64_t t = 0;
    for (int i = 0; i < 16; i++) {
        char c = corr[i];
        t = t << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return t;
}

/* Seconds between two log lines of one publish error. */
#define PUBLISH_ERROR_LOG_INTERVAL 10.0

/* Answers a request that could not be published: 503 with our own words;
 * librdkafka's text (it may name brokers) goes to the log, once per error
 * per PUBLISH_ERROR_LOG_INTERVAL. Frees w. */
static void publish_failed(oe_bridge *b, waiter *w, rd_kafka_resp_err_t err)
{
    oe_log_limited(&b->publish_log, (int)err, OE_LOG_WARN, "bridge",
                   "could not publish a request: %s", rd_kafka_err2str(err));
    w->reply(w->ctx, NULL, 503, "could not publish the request");
    free(w);
}

/* Delivery reports of request messages: a failed one is answered 503. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    oe_bridge *b = opaque;
    if (!m->err)
        return;
    uint64_t tag = (uint64_t)(uintptr_t)m->_private;
    pthread_mutex_lock(&b->lock);
    waiter *w = take_waiter(b, tag, NULL);
    pthread_mutex_unlock(&b->lock);
    if (w)
        publish_failed(b, w, m->err);
}

/* Assigns every partition of the receipts topic at its current end, so
 * that only receipts of requests published from now on are read. Until
 * then /ready says "receipts consumer not positioned yet"; why (librdkafka's
 * text) is logged at the first failure of a run of them.
 *
 * First the producer learns the requests topic's partitions and leaders:
 * otherwise the first requests after /ready wait in the producer for a
 * metadata round of its own (about 0.5 s measured on the embedded broker,
 * for every request of the first moment). Returns OE_OK, or OE_EIO while
 * the brokers cannot tell the partitions or take the assignment. */
static int position_consumer(oe_bridge *b)
{
    char err[256];
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(b->producer, 0, b->requests, &md, 5000);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (e || oe_kafka_assign_all(b->consumer, b->kafka->receipts_topic, OE_KAFKA_OFFSET_HIGH_NOW,
                                 5000, err, sizeof err) < 0) {
        if (e)
            snprintf(err, sizeof err, "topic %s: %s", b->kafka->requests_topic,
                     rd_kafka_err2str(e));
        if (!b->position_failed)
            oe_log(OE_LOG_WARN, "bridge", NULL, "receipts consumer not positioned: %s; retrying",
                   err);
        b->position_failed = 1;
        return OE_EIO;
    }
    if (b->position_failed)
        oe_log(OE_LOG_INFO, "bridge", NULL, "receipts consumer positioned");
    atomic_store(&b->positioned, 1);
    return OE_OK;
}

/* Reads a receipt's correlation id: CORR_LEN lowercase hex digits into
 * corr. Returns OE_OK, or OE_EINVAL when it has none of that form. */
static int correlation_of(const rd_kafka_message_t *m, char corr[CORR_LEN + 1])
{
    rd_kafka_headers_t *h;
    const void *val;
    size_t size;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, OE_HEADER_CORRELATION, &val, &size) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        !oe_correlation_valid(val, size))
        return OE_EINVAL;
    memcpy(corr, val, CORR_LEN);
    corr[CORR_LEN] = '\0';
    return 0;
}

void oe_bridge_set_trusted(oe_bridge *b, const unsigned char (*keys)[32], size_t n)
{
    b->trusted = n ? keys : NULL;
    b->ntrusted = n;
}

/* With trusted keys: OE_OK when r's proof verifies (oe_tlog_verify), else
 * the verdict with its reason. */
static oe_rc receipt_proven(oe_bridge *b, const oe_receipt *r, char *reason, size_t rlen)
{
    if (!b->trusted)
        return OE_OK;
    oe_tlog_claim c = {
        .id = r->id,
        .nonce = r->nonce,
        .action = r->action,
        .request_hash = r->request_hash,
        .status = oe_status_name(r->status),
        .result = r->result,
        .receipt = r->receipt,
        .error_code = r->error_code,
        .detail = r->detail,
        .approval_id = r->approval_id,
        .action_code_hash = r->action_code_hash,
        .approved = r->approved,
    };
    return oe_tlog_verify_cached(&b->notes, &c, r->proof, r->proof ? strlen(r->proof) : 0,
                                 b->trusted, b->ntrusted, reason, rlen);
}

/* 1 when the receipt answers the request the waiter sent. */
static int receipt_matches(const waiter *w, const oe_receipt *r)
{
    if (strcmp(r->nonce ? r->nonce : "", w->nonce) != 0)
        return 0;
    if (w->request_hash[0])
        return r->request_hash && strcmp(r->request_hash, w->request_hash) == 0;
    /* A request that cannot be hashed can only have been rejected. */
    return r->status == OE_STATUS_REJECTED && (!r->request_hash || !r->request_hash[0]);
}

static void handle_receipt(oe_bridge *b, const rd_kafka_message_t *m)
{
    char corr[CORR_LEN + 1];
    if (correlation_of(m, corr) != 0)
        return;
    uint64_t tag = corr_tag(corr);
    pthread_mutex_lock(&b->lock);
    int pending = find_waiter(b, tag, corr) != NULL;
    pthread_mutex_unlock(&b->lock);
    if (!pending)
        return; /* not ours, answered already (timeout), or a duplicate */
    oe_receipt r;
    char err[256];
    if (oe_codec_decode_receipt(b->codec, m->payload, m->len, &r, err, sizeof err) != 0)
        return; /* not a receipt: the genuine one may still come */
    /* Anyone who can write to the receipts topic can publish a receipt:
     * with trusted keys, only a proven one answers. */
    oe_rc proven = receipt_proven(b, &r, err, sizeof err);
    if (proven != OE_OK) {
        atomic_fetch_add(&b->metrics->bridge_refused, 1);
        oe_log_limited(&b->refused_log, proven, OE_LOG_WARN, "bridge",
                       "receipt of nonce %.64s refused: %s", r.nonce ? r.nonce : "", err);
        oe_receipt_clear(&r);
        return; /* the genuine one may still come */
    }
    pthread_mutex_lock(&b->lock);
    waiter *w = find_waiter(b, tag, corr);
    if (w && receipt_matches(w, &r))
        unlink_waiter(b, w);
    else
        w = NULL;
    pthread_mutex_unlock(&b->lock);
    if (w) {
        w->reply(w->ctx, &r, 200, NULL);
        free(w);
    } else {
        atomic_fetch_add(&b->metrics->bridge_mismatches, 1);
    }
    oe_receipt_clear(&r);
}

/* Answers the waiters whose time is up with 504. */
static void expire(oe_bridge *b)
{
    double now = oe_monotonic();
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
        if (!atomic_load(&b->positioned) && oe_monotonic() >= next_try) {
            if (position_consumer(b) != 0)
                next_try = oe_monotonic() + 0.5;
        }
        rd_kafka_poll(b->producer, 0);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(b->consumer, 20);
        while (m) {
            if (!m->err)
                handle_receipt(b, m);
            else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                oe_kafka_consumer_error("bridge", m);
            rd_kafka_message_destroy(m);
            m = rd_kafka_consumer_poll(b->consumer, 0);
        }
        expire(b);
        oe_kafka_probe(b->consumer);
    }
    return NULL;
}

int oe_bridge_new(const oe_kafka_settings *k, oe_kafka_metrics *metrics, long timeout_ms,
                  oe_bridge **out, char *err, size_t errlen)
{
    oe_bridge *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    b->publish_log.interval = PUBLISH_ERROR_LOG_INTERVAL;
    b->refused_log.interval = PUBLISH_ERROR_LOG_INTERVAL;
    pthread_mutex_init(&b->lock, NULL);
    b->kafka = k;
    b->metrics = metrics;
    b->timeout = (double)timeout_ms / 1000.0;
    unsigned char rnd[8];
    int rc = OE_EIO;
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        snprintf(err, errlen, "no randomness for correlation ids");
        goto error;
    }
    for (int i = 0; i < 8; i++)
        snprintf(b->instance + 2 * i, 3, "%02x", rnd[i]);
    if ((rc = oe_codec_new(-1, &b->codec, err, errlen)) != OE_OK)
        goto error;

    /* message.max.bytes: a 1 MiB body plus headers must fit. */
    const char *producer_defaults[] = {
        "linger.ms", "0", "message.timeout.ms", "10000", "message.max.bytes", "2097152", NULL};
    const char *producer_forced[] = {"enable.idempotence", "true", "acks", "all", NULL};
    oe_kafka_hooks hooks = {.opaque = b, .on_delivery = on_delivery};
    rc = OE_EINVAL; /* a refused property: checked here, the clients made by start */
    b->confs.producer_conf = oe_kafka_client_conf(k, producer_defaults, producer_forced, &hooks,
                                                  "bridge producer", err, errlen);
    if (!b->confs.producer_conf)
        goto error;
    char group[64];
    snprintf(group, sizeof group, "openexec-bridge-%s", b->instance);
    const char *consumer_defaults[] = {"fetch.wait.max.ms", "5", NULL};
    const char *consumer_forced[] = {
        "group.id", group, "enable.auto.commit", "false", "enable.partition.eof", "false", NULL};
    b->confs.consumer_conf = oe_kafka_client_conf(k, consumer_defaults, consumer_forced, NULL,
                                                  "bridge consumer", err, errlen);
    if (!b->confs.consumer_conf)
        goto error;
    *out = b;
    return OE_OK;
error:
    oe_bridge_free(b);
    return rc;
}

/* Creates the clients from the configurations checked by oe_bridge_new
 * (librdkafka starts their threads) and the producer's handle of the
 * requests topic. */
static int create_clients(oe_bridge *b, char *err, size_t errlen)
{
    int rc = oe_kafka_create_pair(&b->confs, "bridge", err, errlen);
    b->consumer = b->confs.consumer;
    b->producer = b->confs.producer;
    if (rc != OE_OK)
        return rc;
    b->requests = rd_kafka_topic_new(b->producer, b->kafka->requests_topic, NULL);
    if (!b->requests) {
        snprintf(err, errlen, "bridge producer: topic %s: %s", b->kafka->requests_topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return OE_EIO;
    }
    return OE_OK;
}

int oe_bridge_ready(oe_bridge *b, char *reason, size_t len)
{
    if (atomic_load(&b->positioned))
        return 1;
    snprintf(reason, len, "receipts consumer not positioned yet");
    return 0;
}

/* Fills what the receipt of this request must repeat: its nonce (as a
 * receipt repeats it) and, for a valid request, its request hash. Returns
 * OE_OK, or what oe_request_hash failed with (OE_ENOMEM: memory ran out). */
static int expect_receipt(waiter *w, const oe_request *req, int valid)
{
    oe_echo_cut(req->nonce ? req->nonce : "", req->nonce ? strlen(req->nonce) : 0, w->nonce);
    w->request_hash[0] = '\0';
    if (!valid)
        return OE_OK;
    return oe_request_hash(req->action, strlen(req->action), req->payload, w->request_hash);
}

void oe_bridge_submit(oe_bridge *b, const char *body, size_t len, const oe_request *req, int valid,
                      oe_bridge_reply_fn reply, void *ctx)
{
    waiter *w = calloc(1, sizeof *w);
    if (!w) {
        reply(ctx, NULL, 503, "out of memory");
        return;
    }
    w->reply = reply;
    w->ctx = ctx;
    w->deadline = oe_monotonic() + b->timeout;
    if (expect_receipt(w, req, valid) != 0) {
        free(w);
        reply(ctx, NULL, 503, "out of memory");
        return;
    }
    unsigned char rnd[CORR_LEN / 2];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        free(w);
        reply(ctx, NULL, 503, "no randomness for a correlation id");
        return;
    }
    oe_hex_encode(rnd, sizeof rnd, w->corr);
    w->tag = corr_tag(w->corr);
    pthread_mutex_lock(&b->lock);
    if (b->closed || !b->producer) {
        pthread_mutex_unlock(&b->lock);
        free(w);
        reply(ctx, NULL, 503, b->closed ? "shutting down" : "not started");
        return;
    }
    w->bucket_next = b->buckets[w->tag % BUCKETS];
    b->buckets[w->tag % BUCKETS] = w;
    w->prev = b->newest;
    if (b->newest)
        b->newest->next = w;
    else
        b->oldest = w;
    b->newest = w;
    /* Once unlocked, w may be answered and freed by the bridge thread. */
    uint64_t tag = w->tag;
    char corr[CORR_LEN + 1], key[OE_ECHO_MAX_BYTES + 1];
    memcpy(corr, w->corr, sizeof corr);
    memcpy(key, w->nonce, sizeof key);
    pthread_mutex_unlock(&b->lock);

    /* Keyed by the nonce as receipts repeat it (at most 256 bytes). */
    const char *kp = key[0] ? key : NULL;
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, OE_HEADER_CORRELATION, -1, corr, -1);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        b->producer, RD_KAFKA_V_TOPIC(b->kafka->requests_topic), RD_KAFKA_V_KEY(kp, strlen(key)),
        RD_KAFKA_V_VALUE((void *)body, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tag), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        pthread_mutex_lock(&b->lock);
        waiter *mine = take_waiter(b, tag, corr);
        pthread_mutex_unlock(&b->lock);
        if (mine)
            publish_failed(b, mine, err);
    }
}

int oe_bridge_start(oe_bridge *b, char *err, size_t errlen)
{
    if (b->producer || b->closed) {
        snprintf(err, errlen, "the bridge was started before");
        return OE_EINVAL;
    }
    int rc = create_clients(b, err, errlen);
    if (rc != OE_OK)
        return rc;
    atomic_store(&b->running, 1);
    if (pthread_create(&b->thread, NULL, bridge_main, b) != 0) {
        atomic_store(&b->running, 0);
        snprintf(err, errlen, "cannot start the bridge thread");
        return OE_EIO;
    }
    b->thread_started = 1;
    return OE_OK;
}

void oe_bridge_stop(oe_bridge *b)
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
    oe_bridge_stop(b); /* joins the thread */
    if (b->consumer) {
        rd_kafka_consumer_close(b->consumer);
        rd_kafka_destroy(b->consumer);
    }
    if (b->requests)
        rd_kafka_topic_destroy(b->requests);
    if (b->producer) {
        rd_kafka_flush(b->producer, 2000);
        rd_kafka_destroy(b->producer);
    }
    oe_kafka_pair_drop_confs(&b->confs);
    oe_codec_free(b->codec);
    pthread_mutex_destroy(&b->lock);
    free(b);
}
