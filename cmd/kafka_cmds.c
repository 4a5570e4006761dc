/* openexec broker | produce | receipts: the Kafka path without writing
 * code. Each command runs on the main thread (librdkafka keeps its own
 * threads); each owns the clients, codec and buffers it creates and frees
 * them before it returns. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge/bridge.h"
#include "cmd/commands.h"
#include "codec/codec.h"
#include "devbroker/broker.h"
#include "engine/clock.h"
#include "engine/note.h"
#include "engine/request.h"
#include "engine/status.h"

/* How long produce and receipts wait for unreachable brokers at start. */
#define CLI_CLUSTER_WAIT_MS 15000

static const oe_command broker_command = {
    "broker",
    OE_CMD_BROKER,
    "Runs an embedded Kafka-protocol broker (librdkafka's mock cluster) until\n"
    "SIGINT/SIGTERM. Prints bootstrap.servers=HOST:PORT on stdout.",
    0,
    0,
};

/* Writes the bootstrap address to path through a temporary file, so that a
 * reader never sees half of it. Returns OE_OK, OE_ELIMIT (a path too long)
 * or OE_EIO. */
static int write_bootstrap_file(const char *path, const char *bootstraps)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return OE_ELIMIT;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return OE_EIO;
    int bad = fprintf(f, "%s\n", bootstraps) < 0;
    bad |= fclose(f) != 0;
    return bad || rename(tmp, path) != 0 ? OE_EIO : OE_OK;
}

int oe_cmd_broker(int argc, char **argv)
{
    oe_config cfg;
    int rc = oe_command_parse(&broker_command, &cfg, NULL, argc, argv);
    if (rc >= 0)
        return rc;
    oe_broker *b;
    oe_signals_start(0);
    /* A file left by an earlier broker names a dead address: gone before
     * this one's is written (atomically), and gone again at exit. */
    if (cfg.bootstrap_file)
        unlink(cfg.bootstrap_file);
    if ((rc = oe_start_embedded_broker(&cfg, &b)) != 0)
        return rc;
    /* The file first: whoever reads the stdout line may read the file
     * right after it. */
    if (cfg.bootstrap_file && write_bootstrap_file(cfg.bootstrap_file, oe_broker_bootstraps(b))) {
        oe_broker_free(b);
        return oe_die(1, "cannot write %s", cfg.bootstrap_file);
    }
    printf("bootstrap.servers=%s\n", oe_broker_bootstraps(b));
    fflush(stdout);
    while (!oe_stop_wait(60000)) {
    }
    if (cfg.bootstrap_file)
        unlink(cfg.bootstrap_file);
    oe_broker_free(b);
    oe_signals_stop();
    return 0;
}

static const oe_command produce_command = {
    "produce",
    OE_CMD_PRODUCE,
    "Reads execution requests as JSON lines on stdin, encodes them (Avro\n"
    "single-object encoding, or the JSON line untouched with --format json)\n"
    "and publishes them to the requests topic, keyed by nonce.",
    1,
    1,
};

/* The state of one `produce` run. */
typedef struct producer {
    rd_kafka_t *rk;
    oe_codec *codec;
    const char *topic;
    int avro;
    oe_buf out;      /* the encoded value of the line in hand */
    long sent;       /* accepted by librdkafka */
    long failed;     /* refused, or failed delivery (counted by the callback) */
    long bad_lines;  /* not valid requests, not sent */
    int key_id_told; /* the Avro form's dropped key_id was reported */
} producer;

/* Counts delivery failures of `produce`. */
static void produce_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    if (m->err) {
        ((producer *)opaque)->failed++;
        fprintf(stderr, "openexec: produce: delivery failed: %s\n", rd_kafka_err2str(m->err));
    }
}

/* Hands one message to librdkafka, waiting while its queue is full. */
static void publish(producer *p, const char *key, const void *value, size_t vlen, long lineno)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(p->topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
            RD_KAFKA_V_VALUE((void *)value, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(p->rk, 50);
            continue;
        }
        if (e) {
            fprintf(stderr, "openexec: produce: line %ld: %s\n", lineno, rd_kafka_err2str(e));
            p->failed++;
        } else {
            p->sent++;
        }
        return;
    }
}

/* Checks, encodes and publishes one line of stdin (without its newline). */
static void produce_line(producer *p, const char *line, size_t len, long lineno)
{
    oe_request req;
    char reason[512];
    oe_error_code code;
    if (len > OE_REQUEST_MAX_BYTES) {
        /* Workers would only dead-letter it, and on the embedded broker one
         * such message pushes earlier ones out of the partition. */
        fprintf(stderr, "openexec: produce: line %ld not sent: %zu bytes, larger than %zu\n",
                lineno, len, OE_REQUEST_MAX_BYTES);
        p->bad_lines++;
        return;
    }
    if (oe_request_from_json(line, len, &req, &code, reason, sizeof reason) != OE_OK) {
        /* Out of memory: no verdict on the line; count it as not sent. */
        oe_request_clear(&req);
        fprintf(stderr, "openexec: produce: line %ld not sent: %s\n", lineno, reason);
        p->failed++;
        return;
    }
    const void *value = line;
    size_t vlen = len;
    if (p->avro && code != OE_ERR_NONE)
        goto bad;
    if (p->avro) {
        oe_buf_reset(&p->out);
        if (oe_codec_encode_request(p->codec, &req, &p->out, reason, sizeof reason) != 0)
            goto bad;
        value = p->out.data;
        vlen = p->out.len;
        if (req.has_artifact && req.artifact.key_id && !p->key_id_told) {
            /* The Avro schema has no key_id (its fingerprint is a wire
             * contract): the request still goes, and every key is tried. */
            fprintf(stderr,
                    "openexec: produce: line %ld: key_id is not carried by the Avro form; "
                    "workers try each key (--format json carries it)\n",
                    lineno);
            p->key_id_told = 1;
        }
    }
    publish(p, req.nonce, value, vlen, lineno);
    rd_kafka_poll(p->rk, 0);
    oe_request_clear(&req);
    return;
bad:
    fprintf(stderr, "openexec: produce: line %ld not sent: %s\n", lineno, reason);
    p->bad_lines++;
    oe_request_clear(&req);
}

int oe_cmd_produce(int argc, char **argv)
{
    oe_config cfg;
    oe_kafka_settings ks;
    int rc = oe_command_parse(&produce_command, &cfg, &ks, argc, argv);
    if (rc >= 0)
        return rc;
    producer p = {.topic = cfg.requests_topic, .avro = cfg.request_format == OE_FORMAT_AVRO};
    char err[512];
    if (oe_codec_new(-1, &p.codec, err, sizeof err) != 0) {
        oe_kafka_settings_clear(&ks);
        return oe_die(1, "%s", err);
    }
    const char *defaults[] = {"linger.ms", "5", NULL};
    const char *forced[] = {"enable.idempotence", "true", "acks", "all", NULL};
    oe_kafka_hooks hooks = {.opaque = &p, .on_delivery = produce_delivery};
    p.rk =
        oe_kafka_new(RD_KAFKA_PRODUCER, &ks, defaults, forced, &hooks, "producer", err, sizeof err);
    if (!p.rk) {
        oe_codec_free(p.codec);
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "%s", err);
    }
    /* The brokers answer and the topic exists, before stdin is read:
     * checked in short rounds, so that Ctrl-C (SIGINT) or SIGTERM stops the
     * wait at once. */
    oe_install_signals();
    long long started = oe_monotonic_ms(), deadline = started + CLI_CLUSTER_WAIT_MS;
    int check;
    do
        check = oe_kafka_check_cluster(p.rk, &p.topic, 1, 500, NULL, NULL, err, sizeof err);
    while (check == OE_EUNAVAIL && !oe_stop_requested() && oe_monotonic_ms() < deadline);
    if (check == OE_EUNAVAIL) {
        /* Each round says its own half second: say the whole wait. */
        const char *why = strstr(err, " s: ");
        char whole[sizeof err + 64];
        int n = snprintf(whole, sizeof whole, "brokers unreachable after %.1f s: %s",
                         (double)(oe_monotonic_ms() - started) / 1000.0, why ? why + 4 : err);
        size_t len = n < 0 ? 0 : (size_t)n < sizeof err ? (size_t)n : sizeof err - 1;
        memcpy(err, whole, len);
        err[len] = '\0';
    }
    if (check != OE_OK || oe_stop_requested()) {
        rd_kafka_destroy(p.rk);
        oe_codec_free(p.codec);
        oe_kafka_settings_clear(&ks);
        return oe_die(1, "produce: %s", oe_stop_requested() ? "interrupted; nothing sent" : err);
    }
    oe_buf_init(&p.out, 0);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    /* A signal ends the reading (getline returns on EINTR: the handlers
     * do not restart calls), then what was sent is delivered. */
    while (!oe_stop_requested() && (len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len > 0)
            produce_line(&p, line, (size_t)len, lineno);
    }
    free(line);
    oe_buf_free(&p.out);
    int interrupted = oe_stop_requested();
    if (interrupted)
        fprintf(stderr,
                "openexec: produce: interrupted after %ld lines; delivering what was "
                "sent (interrupt again to give up)\n",
                lineno);
    oe_stop_clear();
    /* Delivered within the time librdkafka allows, or given up on a second
     * signal: messages still queued then count as failed. */
    deadline = oe_monotonic_ms() + 60000;
    while (rd_kafka_outq_len(p.rk) > 0 && !oe_stop_requested() && oe_monotonic_ms() < deadline)
        rd_kafka_flush(p.rk, 100);
    if (rd_kafka_outq_len(p.rk) > 0) {
        long left = (long)rd_kafka_outq_len(p.rk);
        fprintf(stderr, "openexec: produce: %ld messages not delivered%s\n", left,
                oe_stop_requested() ? " (interrupted)" : " in time");
        rd_kafka_purge(p.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p.rk, 0); /* the purged messages' reports count them as failed */
    }
    rd_kafka_destroy(p.rk);
    oe_codec_free(p.codec);
    oe_kafka_settings_clear(&ks);
    /* The summary: on stdout when all went well, else as the reason of
     * the failure (exit 1). */
    int failed = p.failed || p.bad_lines || interrupted;
    fprintf(failed ? stderr : stdout, "%sproduce: %ld sent, %ld failed, %ld invalid lines\n",
            failed ? "openexec: " : "", p.sent - p.failed, p.failed, p.bad_lines);
    return failed ? 1 : 0;
}

static const oe_command receipts_command = {
    "receipts",
    OE_CMD_RECEIPTS,
    "Prints receipts from the receipts topic as JSON lines. With --from-beginning\n"
    "it prints those on the topic and stops at its end (or after --max receipts;\n"
    "--follow: keeps waiting); without it, it waits for new receipts until\n"
    "SIGINT/SIGTERM (or --max).",
    1,
    1,
};

/* The state of one `receipts` run. */
typedef struct receipts_reader {
    const oe_config *cfg;
    rd_kafka_t *rk;
    oe_codec *codec;
    int nparts;
    char *eof_seen; /* by partition: its end was reached */
    int eofs;
    int follow; /* --follow, or no --from-beginning and no --max */
    long printed;
    oe_buf line;
} receipts_reader;

/* --meta: the receipt's line gets "kafka": {partition, offset, key,
 * timestamp (ms), source: the request's topic, partition and offset}. */
static void put_meta(oe_buf *b, const rd_kafka_message_t *m)
{
    if (b->len == 0 || b->data[b->len - 1] != '}')
        return;
    b->len--;
    rd_kafka_timestamp_type_t tstype;
    long long ts = (long long)rd_kafka_message_timestamp(m, &tstype);
    oe_buf_printf(b,
                  ", \"kafka\": {\"partition\": %d, \"offset\": %lld, \"key\": ", (int)m->partition,
                  (long long)m->offset);
    oe_put_json_text(b, m->key, m->key_len);
    oe_buf_printf(b, ", \"timestamp\": %lld, \"source\": {\"topic\": ", ts);
    oe_put_json_header(b, m, "openexec.source.topic");
    oe_buf_puts(b, ", \"partition\": ");
    oe_put_json_header_int(b, m, "openexec.source.partition");
    oe_buf_puts(b, ", \"offset\": ");
    oe_put_json_header_int(b, m, "openexec.source.offset");
    oe_buf_puts(b, "}}}");
}

/* Prints one receipt message as a JSON line. Returns OE_OK, or why it
 * cannot be printed whole (OE_EINVAL: a bad status; a failed append of
 * the capped buffer: OE_ELIMIT, OE_ENOMEM). */
static int print_receipt(receipts_reader *r, const rd_kafka_message_t *m)
{
    oe_receipt rec;
    char err[512];
    if (oe_codec_decode_receipt(r->codec, m->payload, m->len, &rec, err, sizeof err) != 0) {
        fprintf(stderr, "openexec: receipts: partition %d offset %lld: %s\n", (int)m->partition,
                (long long)m->offset, err);
        return 0;
    }
    oe_buf_reset(&r->line);
    int rc = oe_receipt_to_json(&rec, &r->line);
    oe_receipt_clear(&rec);
    if (rc == 0 && r->cfg->meta)
        put_meta(&r->line, m);
    if (rc != 0 || oe_buf_failed(&r->line)) {
        oe_die(1, "receipts: partition %d offset %lld: cannot print the receipt: %s",
               (int)m->partition, (long long)m->offset,
               oe_buf_failed(&r->line) ? oe_strerror(oe_buf_failed(&r->line)) : "bad status");
        return rc != OE_OK ? rc : oe_buf_failed(&r->line);
    }
    puts(r->line.data);
    r->printed++;
    return 0;
}

/* Notes the end of a partition; returns 1 when every partition has ended
 * and the command should stop there. */
static int at_end(receipts_reader *r, int32_t partition)
{
    if (partition >= 0 && partition < r->nparts && !r->eof_seen[partition]) {
        r->eof_seen[partition] = 1;
        r->eofs++;
    }
    return r->eofs >= r->nparts && !r->follow && r->cfg->max_count == 0;
}

/* Reads until the end, --max, the deadline or a signal; returns the exit
 * status. */
static int read_receipts(receipts_reader *r)
{
    long max = r->cfg->max_count, timeout_ms = r->cfg->timeout_ms;
    long long deadline = oe_monotonic_ms() + timeout_ms;
    while (!oe_stop_requested() && (max == 0 || r->printed < max)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 100);
        if (max > 0 && oe_monotonic_ms() > deadline) {
            fprintf(stderr, "openexec: receipts: %ld of %ld after %ld ms\n", r->printed, max,
                    timeout_ms);
            if (m)
                rd_kafka_message_destroy(m);
            return 1;
        }
        if (!m)
            continue;
        int stop = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            stop = at_end(r, m->partition);
        else if (m->err)
            oe_kafka_consumer_error("receipts", m);
        else if (print_receipt(r, m) != 0)
            stop = -1;
        rd_kafka_message_destroy(m);
        if (stop)
            return stop < 0 ? 1 : 0;
    }
    return 0;
}

/* The brokers of ks reached and the n topics there (an admin client, made
 * and freed here, waiting up to CLI_CLUSTER_WAIT_MS). Returns OE_OK, or
 * with a reason in err OE_EINVAL (the client cannot be made from the
 * settings) or the check's failure. */
static int check_topics(const oe_kafka_settings *ks, const char *const *topics, size_t n, char *err,
                        size_t errlen)
{
    rd_kafka_t *admin = oe_kafka_new(RD_KAFKA_PRODUCER, ks, NULL, NULL, NULL, "admin", err, errlen);
    if (!admin)
        return OE_EINVAL;
    int rc = oe_kafka_check_cluster(admin, topics, n, CLI_CLUSTER_WAIT_MS, NULL, NULL, err, errlen);
    rd_kafka_destroy(admin);
    return rc;
}

int oe_cmd_receipts(int argc, char **argv)
{
    oe_config cfg;
    oe_kafka_settings ks;
    int rc = oe_command_parse(&receipts_command, &cfg, &ks, argc, argv);
    if (rc >= 0)
        return rc;
    receipts_reader r = {.cfg = &cfg};
    char err[512];
    if (oe_codec_new(-1, &r.codec, err, sizeof err) != 0) {
        oe_kafka_settings_clear(&ks);
        return oe_die(1, "%s", err);
    }
    const char *forced[] = {"group.id", "openexec-receipts-cli", "enable.auto.commit",
                            "false",    "enable.partition.eof",  "true",
                            NULL};
    r.rk = oe_kafka_new(RD_KAFKA_CONSUMER, &ks, NULL, forced, NULL, "consumer", err, sizeof err);
    if (!r.rk) {
        oe_codec_free(r.codec);
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "%s", err);
    }
    int status = 1;
    /* Checked through a producer handle: a consumer's errors (a refused
     * password, say) wait in its queue until it is polled. */
    if (check_topics(&ks, &ks.receipts_topic, 1, err, sizeof err) != OE_OK) {
        oe_die(1, "receipts: %s", err);
        goto out;
    }
    r.nparts =
        oe_kafka_assign_all(r.rk, ks.receipts_topic,
                            cfg.from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END,
                            10000, err, sizeof err);
    if (r.nparts < 0) {
        oe_die(1, "%s", err);
    } else if (!(r.eof_seen = calloc((size_t)r.nparts, 1))) {
        oe_die(1, "out of memory");
    } else {
        oe_install_signals();
        oe_buf_init(&r.line, 0);
        r.follow = cfg.follow || (!cfg.from_beginning && cfg.max_count == 0);
        if (r.follow) /* each receipt as it comes, also into a pipe */
            setvbuf(stdout, NULL, _IOLBF, 0);
        if (r.follow && !cfg.follow)
            fprintf(stderr,
                    "openexec: receipts: waiting for new receipts on %s (--from-beginning "
                    "for those already there; Ctrl-C to stop)\n",
                    ks.receipts_topic);
        status = read_receipts(&r);
        fflush(stdout);
        oe_buf_free(&r.line);
        free(r.eof_seen);
    }
out:
    rd_kafka_consumer_close(r.rk);
    rd_kafka_destroy(r.rk);
    oe_codec_free(r.codec);
    oe_kafka_settings_clear(&ks);
    return status;
}

static const oe_command exec_command = {
    "exec",
    OE_CMD_EXEC,
    "Sends one execution request (a JSON object on stdin, at most 1 MiB)\n"
    "through Kafka and waits for its receipt, as POST /execute does: prints\n"
    "the receipt as a JSON line (the form of openexec receipts). Exit 0:\n"
    "executed or replayed; 3: rejected (the receipt says why); 1: no\n"
    "verdict (brokers unreachable, no receipt within --timeout-ms: try\n"
    "again); 2: a usage error or input that is not a JSON object. With\n"
    "--trusted-keys only a receipt whose proof verifies answers.",
    1,
    1,
};

/* The one request's answer, written by the bridge's thread. */
typedef struct exec_wait {
    pthread_mutex_t lock;
    pthread_cond_t done_cv;
    int done;
    int status; /* 0: a receipt (line); else the bridge's HTTP status */
    int rejected;
    oe_buf line;
    char reason[256];
} exec_wait;

static void exec_reply(void *ctx, const oe_receipt *r, int status, const char *reason)
{
    exec_wait *x = ctx;
    pthread_mutex_lock(&x->lock);
    if (r) {
        x->status = oe_receipt_to_json(r, &x->line) == OE_OK && !oe_buf_failed(&x->line) ? 0 : 500;
        x->rejected = r->status == OE_STATUS_REJECTED;
        if (x->status)
            snprintf(x->reason, sizeof x->reason, "the receipt cannot be printed");
    } else {
        x->status = status;
        snprintf(x->reason, sizeof x->reason, "%s", reason ? reason : "no receipt");
    }
    x->done = 1;
    pthread_cond_signal(&x->done_cv);
    pthread_mutex_unlock(&x->lock);
}

/* Reads stdin whole, at most max bytes: into *out (NUL-terminated).
 * Returns OE_OK, OE_ELIMIT (longer) or OE_ENOMEM / OE_EIO. */
static int read_stdin(size_t max, oe_buf *out)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        if (out->len + n > max)
            return OE_ELIMIT;
        if (oe_buf_append(out, chunk, n) != OE_OK)
            return oe_buf_failed(out);
    }
    return ferror(stdin) ? OE_EIO : OE_OK;
}

int oe_cmd_exec(int argc, char **argv)
{
    oe_config cfg;
    oe_kafka_settings ks;
    int rc = oe_command_parse(&exec_command, &cfg, &ks, argc, argv);
    if (rc >= 0)
        return rc;
    char err[600];
    int status = 1;
    oe_bridge *b = NULL;
    unsigned char(*keys)[32] = NULL;
    size_t nkeys = 0;
    oe_request req = {0};
    oe_kafka_metrics metrics;
    oe_kafka_metrics_init(&metrics);
    exec_wait x = {.lock = PTHREAD_MUTEX_INITIALIZER, .done_cv = PTHREAD_COND_INITIALIZER};
    oe_buf body;
    oe_buf_init(&body, 0);
    oe_buf_init(&x.line, 0);
    if (cfg.trusted_keys_file &&
        (status = oe_load_trusted_keys(cfg.trusted_keys_file, "exec: ", "--trusted-keys", &keys,
                                       &nkeys)) != 0)
        goto out;
    /* The request, decoded once as the workers will decode it. */
    int rrc = read_stdin(OE_REQUEST_MAX_BYTES, &body);
    if (rrc != OE_OK) {
        status = rrc == OE_ELIMIT
                     ? oe_die(2, "exec: the request is larger than %zu bytes", OE_REQUEST_MAX_BYTES)
                     : oe_die(1, "exec: cannot read the request: %s", oe_strerror(rrc));
        goto out;
    }
    oe_decode_verdict verdict;
    oe_error_code code;
    char detail[200] = "";
    const char *text = body.data ? body.data : "";
    rrc =
        oe_codec_decode_json_request(text, body.len, &req, &verdict, &code, detail, sizeof detail);
    if (rrc != OE_OK) {
        status = oe_die(1, "exec: %s", oe_strerror(rrc));
        goto out;
    }
    if (!req.doc || oe_json_root(req.doc)->type != OE_JSON_OBJECT) {
        status = oe_die(2, "exec: %s", detail[0] ? detail : "the request must be a JSON object");
        goto out;
    }
    size_t skip = 0; /* workers recognise JSON by its first byte, '{' */
    while (skip < body.len && text[skip] != '{')
        skip++;
    /* The brokers answer and both topics exist; then the bridge, its
     * receipts consumer positioned at the end before anything is sent. */
    const char *topics[] = {ks.requests_topic, ks.receipts_topic};
    int check = check_topics(&ks, topics, 2, err, sizeof err);
    if (check != OE_OK) {
        status = oe_die(check == OE_EINVAL ? 2 : 1, "exec: %s", err);
        goto out;
    }
    if ((rrc = oe_bridge_new(&ks, &metrics, cfg.timeout_ms, &b, err, sizeof err)) != OE_OK) {
        status = oe_die(rrc == OE_EINVAL ? 2 : 1, "exec: %s", err);
        goto out;
    }
    oe_bridge_set_trusted(b, (const unsigned char(*)[32])keys, nkeys);
    if ((rrc = oe_bridge_start(b, err, sizeof err)) != OE_OK) {
        status = oe_die(rrc == OE_EINVAL ? 2 : 1, "exec: %s", err);
        goto out;
    }
    oe_install_signals();
    long long deadline = oe_monotonic_ms() + CLI_CLUSTER_WAIT_MS;
    char why[256];
    while (!oe_bridge_ready(b, why, sizeof why)) {
        if (oe_stop_requested() || oe_monotonic_ms() > deadline) {
            status = oe_die(1, "exec: %s", oe_stop_requested() ? "interrupted; nothing sent" : why);
            goto out;
        }
        oe_sleep_ms(20);
    }
    oe_bridge_submit(b, text + skip, body.len - skip, &req, verdict == OE_DECODE_VALID, exec_reply,
                     &x);
    /* The bridge answers within its timeout (504 then); a signal gives up. */
    pthread_mutex_lock(&x.lock);
    while (!x.done && !oe_stop_requested()) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&x.done_cv, &x.lock, &ts);
    }
    int done = x.done;
    pthread_mutex_unlock(&x.lock);
    if (!done) {
        status = oe_die(1, "exec: interrupted while waiting for the receipt");
    } else if (x.status != 0) {
        status = oe_die(1, "exec: %s", x.reason);
    } else {
        puts(x.line.data);
        fflush(stdout);
        status = x.rejected ? 3 : 0;
    }
out:
    if (b) {
        oe_bridge_stop(b); /* answers a waiter still there: x outlives it */
        oe_bridge_free(b);
    }
    free(keys);
    oe_request_clear(&req);
    oe_buf_free(&body);
    oe_buf_free(&x.line);
    oe_kafka_settings_clear(&ks);
    return status;
}
