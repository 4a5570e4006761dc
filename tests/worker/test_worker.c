/* Tests the worker (worker/) against the embedded broker over TCP: requests in,
 * one receipt per request out, dead letters, and produce errors injected
 * into the broker (the worker must produce the failed receipts again and
 * lose none). */
#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bridge/bridge.h"
#include "codec/codec.h"
#include "devbroker/broker.h"
#include "engine/engine.h"
#include "ledger/ledger.h"
#include "tests/test.h"
#include "worker/internal.h"
#include "worker/worker.h"

static char dir[64];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static rd_kafka_t *test_producer(const char *brokers)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr);
    return rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
}

/* Queues JSON requests first..first+n-1 keyed by nonce, to partition (or
 * RD_KAFKA_PARTITION_UA: by key). */
static void queue_requests(rd_kafka_t *p, const char *topic, int32_t partition, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char key[32], body[128];
        snprintf(key, sizeof key, "w-%d", i);
        int len = snprintf(body, sizeof body,
                           "{\"action\":\"add\",\"payload\":{\"a\":%d,\"b\":1},\"nonce\":\"%s\"}",
                           i, key);
        rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                          RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(body, (size_t)len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    }
}

/* Produces JSON requests (and one undecodable message) keyed by nonce. */
static void produce_requests(const char *brokers, const char *topic, int first, int n, int garbage)
{
    rd_kafka_t *p = test_producer(brokers);
    queue_requests(p, topic, RD_KAFKA_PARTITION_UA, first, n);
    if (garbage)
        rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE("garbage", 7),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    ASSERT_EQ(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
}

/* Reads a topic from the beginning until the timeout or until it has want
 * messages (or, with a codec, receipts for want distinct nonces, counted in
 * *answered); returns the number of messages read. */
static int read_topic(const char *brokers, const char *topic, int want, double timeout,
                      oe_codec *codec, int *answered, char *seen, int seen_size, int *header_ok)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "group.id", "test-reader", errstr, sizeof errstr);
    /* Commits only by the worker (a test may answer its commits). */
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(4);
    for (int p = 0; p < 4; p++)
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, list);
    rd_kafka_topic_partition_list_destroy(list);
    int total = 0;
    double end = now_s() + timeout;
    while ((codec ? *answered : total) < want && now_s() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m)
            continue;
        if (!m->err) {
            total++;
            if (codec) {
                oe_receipt r;
                char err[256];
                if (oe_codec_decode_receipt(codec, m->payload, m->len, &r, err, sizeof err) == 0) {
                    int i = atoi(r.nonce + 2);
                    if (r.status != OE_STATUS_REJECTED && i >= 0 && i < seen_size && !seen[i]) {
                        seen[i] = 1;
                        (*answered)++;
                    }
                    oe_receipt_clear(&r);
                } else {
                    OE_FAIL_("undecodable receipt: %s", err);
                }
            }
            if (header_ok) {
                rd_kafka_headers_t *h;
                const void *v;
                size_t sz;
                *header_ok = rd_kafka_message_headers(m, &h) == 0 &&
                             rd_kafka_header_get_last(h, "openexec.error", &v, &sz) == 0 &&
                             rd_kafka_header_get_last(h, "openexec.source.offset", &v, &sz) == 0 &&
                             m->len == 7 && memcmp(m->payload, "garbage", 7) == 0;
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return total;
}

/* A worker on the broker b with its own store at path. */
typedef struct {
    oe_store *store;
    oe_engine *engine;
    oe_executor *executor;
    oe_metrics metrics;
    oe_kafka_metrics kafka_metrics;
    oe_kafka_settings ks;
    oe_worker *w;
} worker_fixture;

/* txn_id: transactional.id, or NULL for a plain idempotent producer. */
static int start_worker_txn(worker_fixture *f, const char *brokers, const char *path,
                            const char *txn_id)
{
    char err[512];
    memset(f, 0, sizeof *f);
    if (oe_sqlite_store_new(path, 0, OE_STORE_SYNC_NORMAL, &f->store, err, sizeof err) != 0) {
        OE_FAIL_("store: %s", err);
        return -1;
    }
    oe_engine_config ecfg = {.tenant = "", .allowed_actions = ""};
    if (oe_engine_new(&ecfg, f->store, &f->engine, err, sizeof err) != 0) {
        OE_FAIL_("engine: %s", err);
        return -1;
    }
    oe_metrics_init(&f->metrics);
    if (oe_executor_new(f->engine, &f->metrics, &f->executor) != OE_OK) {
        OE_FAIL_("executor: out of memory");
        return -1;
    }
    oe_kafka_metrics_init(&f->kafka_metrics);
    f->ks = (oe_kafka_settings){.brokers = brokers,
                                .requests_topic = "req",
                                .receipts_topic = "rcp",
                                .dlq_topic = "dlq",
                                .group_id = "test-workers",
                                .transactions = txn_id != NULL,
                                .transactional_id = txn_id};
    oe_worker_config wcfg = {.kafka = &f->ks,
                             .executor = f->executor,
                             .kafka_metrics = &f->kafka_metrics,
                             .confluent_schema_id = -1,
                             .batch_max = 100,
                             .txn_timeout_ms = txn_id ? 2000 : 0,
                             /* The test's broker is the worker's own: every
                              * partition at once, no 3 s group join. */
                             .own_broker = 1};
    if (oe_worker_new(&wcfg, &f->w, err, sizeof err) != 0 ||
        oe_worker_start(f->w, err, sizeof err) != 0) {
        OE_FAIL_("worker: %s", err);
        return -1;
    }
    /* Ready, or already stopped on an error a test injected (which can
     * happen between two looks). */
    char reason[256];
    double end = now_s() + 20;
    while (!oe_worker_ready(f->w, reason, sizeof reason) &&
           !oe_worker_failed(f->w, reason, sizeof reason) && now_s() < end)
        sleep_ms(50);
    ASSERT_TRUE(oe_worker_ready(f->w, reason, sizeof reason) ||
                oe_worker_failed(f->w, reason, sizeof reason));
    return 0;
}

static int start_worker(worker_fixture *f, const char *brokers, const char *path)
{
    return start_worker_txn(f, brokers, path, NULL);
}

static void stop_worker(worker_fixture *f)
{
    oe_worker_free(f->w);
    oe_executor_free(f->executor);
    oe_engine_free(f->engine);
    oe_store_free(f->store);
}

/* An embedded broker with the topics the worker tests use, or NULL (the
 * test has failed). */
static oe_broker *test_broker(void)
{
    const char *topics[] = {"req", "rcp", "dlq"};
    oe_broker *b;
    char err[512];
    if (oe_broker_new(4, topics, 3, &b, err, sizeof err) != 0) {
        OE_FAIL_("broker: %s", err);
        return NULL;
    }
    if (oe_broker_start(b, err, sizeof err) != 0) {
        OE_FAIL_("broker: %s", err);
        oe_broker_free(b);
        return NULL;
    }
    return b;
}

/* A stopped worker's /ready reason is our own words (docs/protocol.md §7: no
 * backend's text); the detail, with librdkafka's text, is for the log and
 * the exit line. */
static void assert_public_reason(worker_fixture *f, const char *detail, const char *expected)
{
    ASSERT_CONTAINS(detail, "Broker:");
    char reason[256];
    ASSERT_EQ(oe_worker_ready(f->w, reason, sizeof reason), 0);
    ASSERT_STREQ(reason, expected);
}

/* Waits up to timeout seconds for the worker to stop on an error; returns
 * oe_worker_failed (1 with the reason in err). */
static int wait_failed(worker_fixture *f, double timeout, char *err, size_t errlen)
{
    double end = now_s() + timeout;
    while (!oe_worker_failed(f->w, err, errlen) && now_s() < end)
        sleep_ms(50);
    return oe_worker_failed(f->w, err, errlen);
}

/* Reads up to want receipts of requests 0..n-1 from "rcp" (read
 * uncommitted), for at most timeout seconds; *answered counts the distinct
 * requests answered. Returns the receipts read. */
static int read_receipts(const char *brokers, int want, double timeout, int n, int *answered)
{
    char err[256];
    oe_codec *codec;
    if (oe_codec_new(-1, &codec, err, sizeof err) != 0) {
        OE_FAIL_("codec: %s", err);
        return -1;
    }
    char *seen = calloc((size_t)n, 1);
    int got = read_topic(brokers, "rcp", want, timeout, codec, answered, seen, n, NULL);
    free(seen);
    oe_codec_free(codec);
    return got;
}

/* Transient produce errors: the worker produces the failed receipts again
 * (with backoff) and every request gets its receipt; the undecodable
 * message becomes a dead letter with its headers. */
static void test_transient_produce_errors(void)
{
    oe_broker *b = test_broker();
    if (!b)
        return;
    const char *brokers = oe_broker_bootstraps(b);
    char err[512];
    enum { N = 300 };
    produce_requests(brokers, "req", 0, N, 1);

    /* The worker's first Produce requests fail (an error librdkafka does
     * not retry by itself and we do not count as permanent). */
    rd_kafka_mock_push_request_errors(
        oe_broker_mock(b), 0 /* Produce */, 3, RD_KAFKA_RESP_ERR_POLICY_VIOLATION,
        RD_KAFKA_RESP_ERR_POLICY_VIOLATION, RD_KAFKA_RESP_ERR_POLICY_VIOLATION);
    char db[128];
    snprintf(db, sizeof db, "%s/transient.db", dir);
    worker_fixture f;
    if (start_worker(&f, brokers, db) == 0) {
        int executed = 0;
        ASSERT_EQ(read_receipts(brokers, N, 30, N, &executed), N);
        ASSERT_EQ(executed, N);
        int header_ok = 0;
        ASSERT_EQ(read_topic(brokers, "dlq", 1, 10, NULL, NULL, NULL, 0, &header_ok), 1);
        ASSERT_EQ(header_ok, 1);
        ASSERT_TRUE(atomic_load(&f.kafka_metrics.delivery_retries) > 0);
        ASSERT_EQ(atomic_load(&f.kafka_metrics.dead_letters), 1);
        /* Receipts count requests only, not dead letters. */
        ASSERT_EQ(atomic_load(&f.kafka_metrics.receipts_produced), N);
        ASSERT_EQ(oe_store_count_executions(f.store), N);
        ASSERT_EQ(oe_worker_failed(f.w, err, sizeof err), 0);
    }
    stop_worker(&f);
    oe_broker_free(b);
}

/* A permanent produce error: the worker stops with a reason instead of
 * spinning or dropping, commits nothing, and a new worker on the same store
 * answers every request (the stored ones as replays). */
static void test_permanent_produce_error_stops_the_worker(void)
{
    oe_broker *b = test_broker();
    if (!b)
        return;
    const char *brokers = oe_broker_bootstraps(b);
    char err[512];
    enum { N = 50 };
    produce_requests(brokers, "req", 0, N, 0);
    rd_kafka_mock_push_request_errors(oe_broker_mock(b), 0 /* Produce */, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    char db[128];
    snprintf(db, sizeof db, "%s/permanent.db", dir);
    worker_fixture f;
    if (start_worker(&f, brokers, db) == 0) {
        ASSERT_EQ(wait_failed(&f, 20, err, sizeof err), 1);
        ASSERT_CONTAINS(err, "cannot be published");
        assert_public_reason(&f, err, "worker stopped: receipts cannot be published");
    }
    stop_worker(&f);

    /* The error is gone: a new worker on the same store finishes the job. */
    if (start_worker(&f, brokers, db) == 0) {
        int executed = 0;
        int got = read_receipts(brokers, N, 20, N, &executed);
        ASSERT_TRUE(got >= N);
        ASSERT_EQ(executed, N); /* every nonce answered, executed or replayed */
        ASSERT_EQ(oe_store_count_executions(f.store), N);
        ASSERT_EQ(oe_worker_failed(f.w, err, sizeof err), 0);
    }
    stop_worker(&f);
    oe_broker_free(b);
}

/* librdkafka's classes of transactional errors (worker/txn.c txn_outcome). The
 * embedded broker ignores what transactions mean, but it answers their
 * requests, and errors can be injected into them. */

/* A fatal error (the transactional id is refused at commit) stops the
 * worker with the reason; nothing is committed. */
static void test_transaction_fatal_error_stops_the_worker(void)
{
    oe_broker *b = test_broker();
    if (!b)
        return;
    const char *brokers = oe_broker_bootstraps(b);
    char err[512];
    produce_requests(brokers, "req", 0, 20, 0);
    rd_kafka_mock_push_request_errors(oe_broker_mock(b), 26 /* EndTxn */, 1,
                                      RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    char db[128];
    snprintf(db, sizeof db, "%s/txn-fatal.db", dir);
    worker_fixture f;
    if (start_worker_txn(&f, brokers, db, "txn-fatal") == 0) {
        ASSERT_EQ(wait_failed(&f, 30, err, sizeof err), 1);
        ASSERT_CONTAINS(err, "commit transaction");
        assert_public_reason(&f, err, "worker stopped: commit transaction failed (fatal)");
    }
    stop_worker(&f);
    oe_broker_free(b);
}

/* Runs a transactional worker on n requests with `error` answered once to
 * the request api_key, and checks that the worker recovered: every request
 * answered (read_uncommitted: aborted copies may be there too), executed
 * once, the producer replaced `renewals` times, the worker still running. */
static void transaction_error_recovers(int api_key, rd_kafka_resp_err_t error, int n,
                                       const char *name, unsigned long long renewals)
{
    oe_broker *b = test_broker();
    if (!b)
        return;
    const char *brokers = oe_broker_bootstraps(b);
    char err[512];
    produce_requests(brokers, "req", 0, n, 0);
    rd_kafka_mock_push_request_errors(oe_broker_mock(b), api_key, 1, error);
    char db[128];
    snprintf(db, sizeof db, "%s/%s.db", dir, name);
    worker_fixture f;
    if (start_worker_txn(&f, brokers, db, name) == 0) {
        int executed = 0;
        int got = read_receipts(brokers, n, 30, n, &executed);
        ASSERT_TRUE(got >= n);
        ASSERT_EQ(executed, n);
        ASSERT_EQ(oe_store_count_executions(f.store), n);
        /* The mock broker shows a transaction's receipts before its end:
         * the replacement may come just after they were read. */
        for (int waited = 0;
             waited < 10000 && atomic_load(&f.kafka_metrics.producer_renewals) < renewals;
             waited += 50)
            sleep_ms(50);
        ASSERT_EQ(atomic_load(&f.kafka_metrics.producer_renewals), renewals);
        ASSERT_EQ(oe_worker_failed(f.w, err, sizeof err), 0);
    }
    stop_worker(&f);
    oe_broker_free(b);
}

/* A fatal error a new producer can cure (fenced once, e.g. after the
 * coordinator bumped the epoch) replaces the producer: the batch is
 * published again by the new one. */
static void test_transaction_fatal_error_replaces_the_producer(void)
{
    transaction_error_recovers(26 /* EndTxn */, RD_KAFKA_RESP_ERR_PRODUCER_FENCED, 20, "txn-renew",
                               1);
}

/* An abortable error (a partition cannot join the transaction) aborts the
 * transaction and publishes the batch again in a new one, with the same
 * producer. */
static void test_transaction_abortable_error_republishes(void)
{
    transaction_error_recovers(24 /* AddPartitionsToTxn */,
                               RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, 30, "txn-abort", 0);
}

/* Regression: a retriable commit error (the commit timed out but goes on
 * in the background) made the worker abort and publish the batch again.
 * Now the commit is called again: every receipt is published once. */
static void test_transaction_retriable_commit_is_retried(void)
{
    oe_broker *b = test_broker();
    if (!b)
        return;
    const char *brokers = oe_broker_bootstraps(b);
    char err[512];
    enum { N = 20 };
    produce_requests(brokers, "req", 0, N, 0);
    /* The first EndTxn answers after 5 s; the worker waits 2 s per call. */
    rd_kafka_mock_broker_push_request_error_rtts(oe_broker_mock(b), 1, 26 /* EndTxn */, 1,
                                                 RD_KAFKA_RESP_ERR_NO_ERROR, 5000);
    char db[128];
    snprintf(db, sizeof db, "%s/txn-retry.db", dir);
    worker_fixture f;
    if (start_worker_txn(&f, brokers, db, "txn-retry") == 0) {
        int executed = 0;
        /* read_uncommitted: republished copies would show. */
        int got = read_receipts(brokers, N + 1, 15, N, &executed);
        ASSERT_EQ(got, N);
        ASSERT_EQ(executed, N);
        ASSERT_EQ(oe_worker_failed(f.w, err, sizeof err), 0);
    }
    stop_worker(&f);
    oe_broker_free(b);
}

/* The committed offset of the workers' group on partition of "req" (-1:
 * none, or it could not be read). */
static int64_t committed_offset(const char *brokers, int32_t partition)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "group.id", "test-workers", errstr, sizeof errstr);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, "req", partition);
    int64_t offset = -1;
    if (rd_kafka_committed(c, list, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR && !list->elems[0].err)
        offset = list->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_destroy(c);
    return offset;
}

/* Waits up to timeout seconds for partition's committed offset to be
 * want; returns the last one read. */
static int64_t wait_committed(const char *brokers, int32_t partition, int64_t want, double timeout)
{
    double end = now_s() + timeout;
    int64_t got;
    while ((got = committed_offset(brokers, partition)) != want && now_s() < end)
        sleep_ms(100);
    return got;
}

/* Regression (seen on Apache Kafka during rebalances): a commit was
 * refused while the next one, with a later offset of the same partition,
 * waited behind it. The refused offset was kept for later and joined to
 * the commit of a batch that finished while that later commit was on its
 * way, so it was committed after it: the partition's committed offset went
 * back, for good when no more requests came, and a restart would have
 * answered those requests again. A worker never commits a partition's
 * offset below one it has already sent. */
static void test_refused_commit_never_moves_an_offset_back(void)
{
    oe_broker *b = test_broker();
    if (!b)
        return;
    const char *brokers = oe_broker_bootstraps(b);
    char db[128];
    snprintf(db, sizeof db, "%s/commit-order.db", dir);
    rd_kafka_t *p = test_producer(brokers);
    worker_fixture f;
    if (start_worker(&f, brokers, db) == 0) {
        int answered;
        queue_requests(p, "req", 0, 0, 10);
        rd_kafka_flush(p, 5000);
        answered = 0;
        read_receipts(brokers, 10, 15, 100, &answered);
        ASSERT_EQ(answered, 10);
        ASSERT_EQ(wait_committed(brokers, 0, 10, 5), 10);
        /* The next commit (of requests 10..19) is refused after 1.5 s, and
         * the one after it (20..29, sent once the refusal is in) is taken
         * after 1.5 s more. */
        rd_kafka_mock_broker_push_request_error_rtts(oe_broker_mock(b), 1, 8 /* OffsetCommit */, 2,
                                                     RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE,
                                                     1500, RD_KAFKA_RESP_ERR_NO_ERROR, 1500);
        queue_requests(p, "req", 0, 10, 10);
        rd_kafka_flush(p, 5000);
        answered = 0;
        read_receipts(brokers, 20, 15, 100, &answered);
        ASSERT_EQ(answered, 20);
        queue_requests(p, "req", 0, 20, 10);
        rd_kafka_flush(p, 5000);
        answered = 0;
        read_receipts(brokers, 30, 15, 100, &answered);
        ASSERT_EQ(answered, 30);
        /* Batches of another partition finish all through the refusal
         * and the later commit's wait. */
        for (int i = 0; i < 60; i++) {
            queue_requests(p, "req", 1, 30 + i, 1);
            rd_kafka_flush(p, 1000);
            sleep_ms(50);
        }
        answered = 0;
        read_receipts(brokers, 90, 15, 100, &answered);
        ASSERT_EQ(answered, 90);
        ASSERT_EQ(wait_committed(brokers, 1, 60, 10), 60);
        /* Partition 0 stays at its end, 30 (it went back to 20). */
        ASSERT_EQ(wait_committed(brokers, 0, 30, 2), 30);
    }
    rd_kafka_destroy(p);
    stop_worker(&f);
    oe_broker_free(b);
}

/* TCP_NODELAY of a socket: 1, 0, or -1 when it cannot be read. */
static int nodelay(int fd)
{
    int v = 0;
    socklen_t len = sizeof v;
    return getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 ? v != 0 : -1;
}

/* Regression: a background thread set TCP_NODELAY on every TCP socket of
 * the process every 20 ms (the admin server's client sockets, descriptors
 * being reused). Only the embedded broker's own sockets may have it (set
 * once on its listener, inherited by what it accepts). */
static void test_nodelay_only_on_broker_sockets(void)
{
    oe_broker *b = NULL;
    const char *topics[] = {"t"};
    char err[256];
    if (oe_broker_new(1, topics, 1, &b, err, sizeof err) != 0 ||
        oe_broker_start(b, err, sizeof err) != 0) {
        OE_FAIL_("broker: %s", err);
        oe_broker_free(b);
        return;
    }
    /* A connection of our own on loopback, unrelated to the broker. */
    int srv = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    ASSERT_EQ(bind(srv, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(srv, 1), 0);
    ASSERT_EQ(getsockname(srv, (struct sockaddr *)&a, &alen), 0);
    int cli = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(connect(cli, (struct sockaddr *)&a, sizeof a), 0);
    int acc = accept(srv, NULL, NULL);
    ASSERT_TRUE(acc >= 0);
    /* A client of the broker, so that the broker has an accepted socket. */
    const char *bs = oe_broker_bootstraps(b);
    int port = atoi(strrchr(bs, ':') + 1);
    int bcli = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in ba = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(connect(bcli, (struct sockaddr *)&ba, sizeof ba), 0);
    sleep_ms(200); /* the old sweeper ran every 20 ms */
    ASSERT_EQ(nodelay(acc), 0);
    ASSERT_EQ(nodelay(cli), 0);
    ASSERT_EQ(nodelay(bcli), 0);
    /* The broker's accepted end of bcli does get it (looked for until the
     * broker's thread has accepted it, for up to 5 s on a loaded machine). */
    int found = 0, without = 0;
    for (int tries = 0; tries < 100 && (found == 0 || without > 0); tries++) {
        if (tries)
            sleep_ms(50);
        found = without = 0;
        for (int fd = 3; fd < 1024; fd++) {
            struct sockaddr_in l;
            socklen_t ll = sizeof l;
            if (fd == srv || fd == cli || fd == acc || fd == bcli ||
                getsockname(fd, (struct sockaddr *)&l, &ll) != 0 || l.sin_family != AF_INET ||
                ntohs(l.sin_port) != port)
                continue;
            struct sockaddr_in peer;
            socklen_t pl = sizeof peer;
            if (getpeername(fd, (struct sockaddr *)&peer, &pl) != 0)
                continue; /* the listening socket */
            found++;
            without += nodelay(fd) != 1;
        }
    }
    ASSERT_TRUE(found >= 1);
    ASSERT_EQ(without, 0);
    close(bcli);
    close(acc);
    close(cli);
    close(srv);
    oe_broker_free(b);
}

/* A worker's configuration for a broker nobody listens on (a worker made
 * and not started); c.wcfg points into c, which must outlive the worker. */
typedef struct idle_config {
    oe_kafka_metrics km;
    oe_kafka_settings ks;
    oe_worker_config wcfg;
} idle_config;

static void idle_config_init(idle_config *c, const char *group)
{
    oe_kafka_metrics_init(&c->km);
    c->ks = (oe_kafka_settings){.brokers = "127.0.0.1:9",
                                .requests_topic = "req",
                                .receipts_topic = "rcp",
                                .dlq_topic = "dlq",
                                .group_id = group};
    c->wcfg =
        (oe_worker_config){.kafka = &c->ks, .kafka_metrics = &c->km, .confluent_schema_id = -1};
}

/* One lifecycle: new allocates and checks the configuration, start makes
 * the threads (librdkafka's clients included), free releases. A worker, a
 * bridge and an embedded broker made and freed without a start never run
 * a thread. */
static void test_new_starts_no_thread(void)
{
    int before = test_thread_count();
    ASSERT_TRUE(before > 0);
    char err[512];
    const char *topics[] = {"req", "rcp", "dlq"};
    oe_broker *b = NULL;
    ASSERT_EQ(oe_broker_new(4, topics, 3, &b, err, sizeof err), OE_OK);
    idle_config c;
    idle_config_init(&c, "test-lifecycle");
    oe_worker *w = NULL;
    ASSERT_EQ(oe_worker_new(&c.wcfg, &w, err, sizeof err), OE_OK);
    oe_bridge *br = NULL;
    ASSERT_EQ(oe_bridge_new(&c.ks, &c.km, 1000, &br, err, sizeof err), OE_OK);
    ASSERT_EQ(test_thread_count(), before);
    /* A property librdkafka refuses is still found by new. */
    c.ks.prop_names[0] = "no.such.property";
    c.ks.prop_values[0] = "1";
    c.ks.nprops = 1;
    oe_worker *refused = NULL;
    ASSERT_EQ(oe_worker_new(&c.wcfg, &refused, err, sizeof err), OE_EINVAL);
    ASSERT_CONTAINS(err, "no.such.property");
    ASSERT_TRUE(refused == NULL);
    oe_worker_free(w);
    oe_bridge_free(br);
    ASSERT_EQ(test_thread_count(), before);
    /* start does make them. */
    if (b) {
        ASSERT_EQ(oe_broker_start(b, err, sizeof err), OE_OK);
        ASSERT_TRUE(test_thread_count() > before);
        ASSERT_EQ(oe_broker_start(b, err, sizeof err), OE_EINVAL);
    }
    oe_broker_free(b);
}

/* A slot's receipt is produced without a copy: librdkafka reads its buffer
 * until the delivery report of every message made from it is in (lent).
 * Until then the buffer is neither written again nor freed: a batch left
 * with reports outstanding (a stop) gives it to the orphans, freed once
 * the producer is destroyed. Otherwise it is kept for the slot's next
 * receipt, unless it grew large. */
static void test_receipt_buffer_lent_until_reported(void)
{
    char err[512];
    idle_config c;
    idle_config_init(&c, "test-lent");
    oe_worker *w = NULL;
    ASSERT_EQ(oe_worker_new(&c.wcfg, &w, err, sizeof err), OE_OK);
    if (!w)
        return;
    batch_slot *sl = &w->in.slots[3];
    ASSERT_EQ(oe_buf_append(&sl->receipt, "receipt of slot 3", 17), OE_OK);
    const char *held = sl->receipt.data;
    sl->lent = 2; /* produced, then produced again */
    /* A report of a message made from it, of any generation: one fewer. */
    rd_kafka_message_t m = {0};
    uintptr_t gen = (uintptr_t)7 << GENERATION_SHIFT;
    m._private = (void *)(gen | TAG_SET | TAG_LENT | 3);
    worker_on_delivery(NULL, &m, w);
    ASSERT_EQ(sl->lent, 1);
    /* A copied message of that slot (a dead letter), or a lent one of the
     * other slot array: not this buffer. */
    m._private = (void *)(gen | TAG_SET | 3);
    worker_on_delivery(NULL, &m, w);
    w->b.slots[3].lent = 1;
    m._private = (void *)(gen | TAG_LENT | 3);
    worker_on_delivery(NULL, &m, w);
    ASSERT_EQ(sl->lent, 1);
    ASSERT_EQ(w->b.slots[3].lent, 0);
    /* Let go of while a message still points into it: left as it is. */
    worker_receipt_release(w, sl);
    ASSERT_TRUE(sl->receipt.data != held);
    ASSERT_EQ(sl->receipt.len, 0);
    ASSERT_EQ(sl->lent, 0);
    ASSERT_EQ(w->norphans, 1);
    ASSERT_TRUE(w->orphans[0].data == held);
    ASSERT_STREQ(w->orphans[0].data, "receipt of slot 3");
    /* The set moves with the slots when the batches are swapped. */
    worker_swap_batches(w);
    ASSERT_TRUE(&w->b.slots[3] == sl);
    sl->lent = 1;
    m._private = (void *)(gen | TAG_SET | TAG_LENT | 3);
    worker_on_delivery(NULL, &m, w);
    ASSERT_EQ(sl->lent, 0);
    /* Not lent: kept for the next receipt, emptied. */
    ASSERT_EQ(oe_buf_append(&sl->receipt, "next", 4), OE_OK);
    const char *kept = sl->receipt.data;
    worker_receipt_release(w, sl);
    ASSERT_TRUE(sl->receipt.data == kept);
    ASSERT_EQ(sl->receipt.len, 0);
    /* A large one is not kept. */
    char big[20 << 10];
    memset(big, 'r', sizeof big);
    ASSERT_EQ(oe_buf_append(&sl->receipt, big, sizeof big), OE_OK);
    worker_receipt_release(w, sl);
    ASSERT_TRUE(sl->receipt.data == NULL);
    /* The producer is gone: nothing is lent any more, the orphans are freed. */
    w->b.slots[0].lent = 4;
    worker_receipts_returned(w);
    ASSERT_EQ(w->norphans, 0);
    ASSERT_EQ(w->b.slots[0].lent, 0);
    oe_worker_free(w);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/oe-worker-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN_TEST(test_new_starts_no_thread);
    RUN_TEST(test_receipt_buffer_lent_until_reported);
    RUN_TEST(test_nodelay_only_on_broker_sockets);
    RUN_TEST(test_transaction_fatal_error_stops_the_worker);
    RUN_TEST(test_transaction_fatal_error_replaces_the_producer);
    RUN_TEST(test_transaction_abortable_error_republishes);
    RUN_TEST(test_transaction_retriable_commit_is_retried);
    RUN_TEST(test_transient_produce_errors);
    RUN_TEST(test_permanent_produce_error_stops_the_worker);
    RUN_TEST(test_refused_commit_never_moves_an_offset_back);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return TEST_REPORT();
}
