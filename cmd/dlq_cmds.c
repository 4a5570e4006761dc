/* `openexec dlq replay`: dead letters back to the requests topic after a
 * fix (a new schema, a new version of the worker), with their key and
 * headers. The dead-letter topic is read from where the last replay of the
 * replay group stopped (partitions assigned directly: no group join) up to
 * its end as it was at the start, so that a dead letter a replay produces
 * again is not replayed by the same run. Offsets are committed to the
 * replay group only once every republished message is acknowledged: a
 * replay cut short republishes again next time, and the ledger answers
 * requests already executed as replays. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "engine/buf.h"
#include "engine/json.h"
#include "engine/status.h"

/* The header that says where a replayed request came from. */
#define REPLAY_HEADER "openexec.replay.of"

static const oe_command replay_command = {
    "dlq replay",
    OE_CMD_DLQ_REPLAY,
    "Republishes the dead letters of the dead-letter topic to the requests topic, each with\n"
    "its key and headers and openexec.replay.of = TOPIC/PARTITION/OFFSET. Starts after the\n"
    "last replay of --replay-group (at the first dead letter the first time, or with\n"
    "--from-beginning) and stops at the end of the topic as it was at the start. Prints each\n"
    "dead letter as a JSON line. --dry-run lists them and publishes nothing. Requests already\n"
    "executed are answered from the ledger (a replay), never executed twice.",
    1,
    1,
};

typedef struct replay {
    const oe_config *cfg;
    rd_kafka_t *consumer, *producer;
    int nparts;
    int64_t *end;  /* by partition: the end at the start of the run */
    int64_t *next; /* by partition: the offset after the last dead letter handled */
    int done;      /* partitions whose end is reached */
    long listed, published, failed;
    oe_buf line;
} replay;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    if (m->err) {
        ((replay *)opaque)->failed++;
        fprintf(stderr, "openexec: dlq replay: delivery failed: %s\n", rd_kafka_err2str(m->err));
    }
}

/* {"partition", "offset", "key", "error", "bytes", "published"} */
static void print_letter(replay *r, const rd_kafka_message_t *m, int published)
{
    oe_buf *b = &r->line;
    oe_buf_reset(b);
    oe_buf_printf(b, "{\"partition\": %d, \"offset\": %lld, \"key\": ", (int)m->partition,
                  (long long)m->offset);
    oe_put_json_text(b, m->key, m->key_len);
    oe_buf_puts(b, ", \"error\": ");
    oe_put_json_header(b, m, "openexec.error");
    oe_buf_printf(b, ", \"bytes\": %zu, \"published\": %s}", m->len, published ? "true" : "false");
    if (!oe_buf_failed(b))
        puts(b->data);
}

/* Republishes one dead letter: its key, value and headers, and where it
 * came from. Returns OE_OK, or OE_EIO when librdkafka refused it. */
static int republish(replay *r, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *src = NULL, *h;
    h = rd_kafka_message_headers(m, &src) == RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_headers_copy(src)
                                                                        : rd_kafka_headers_new(1);
    char of[400];
    int n = snprintf(of, sizeof of, "%s/%d/%lld", r->cfg->dlq_topic, (int)m->partition,
                     (long long)m->offset);
    rd_kafka_header_add(h, REPLAY_HEADER, -1, of, n);
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            r->producer, RD_KAFKA_V_TOPIC(r->cfg->requests_topic),
            RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(r->producer, 50);
            continue;
        }
        if (e) {
            rd_kafka_headers_destroy(h);
            fprintf(stderr, "openexec: dlq replay: partition %d offset %lld: %s\n",
                    (int)m->partition, (long long)m->offset, rd_kafka_err2str(e));
            return OE_EIO;
        }
        return OE_OK;
    }
}

/* Assigns every partition of the dead-letter topic at the replay group's
 * committed offset (or the beginning), and notes each end. Returns OE_OK,
 * or with a reason OE_EIO (the brokers) or OE_ENOMEM. */
static int assign(replay *r, char *err, size_t errlen)
{
    const char *topic = r->cfg->dlq_topic;
    int n = oe_kafka_partition_count(r->consumer, topic, 10000, err, errlen);
    if (n < 0)
        return n;
    r->nparts = n;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    r->end = calloc((size_t)r->nparts, sizeof *r->end);
    r->next = calloc((size_t)r->nparts, sizeof *r->next);
    if (!r->end || !r->next) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(r->nparts);
    for (int p = 0; p < r->nparts; p++)
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = RD_KAFKA_OFFSET_INVALID;
    if (!r->cfg->from_beginning)
        e = rd_kafka_committed(r->consumer, list, 10000);
    for (int p = 0; p < r->nparts && !e; p++) {
        int64_t lo, hi;
        e = rd_kafka_query_watermark_offsets(r->consumer, topic, p, &lo, &hi, 10000);
        rd_kafka_topic_partition_t *tp = &list->elems[p];
        if (tp->offset < lo) /* no commit yet, or its messages are gone */
            tp->offset = lo;
        r->end[p] = hi;
        r->next[p] = tp->offset;
        if (tp->offset >= hi)
            r->done++;
    }
    if (!e)
        e = rd_kafka_assign(r->consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (e) {
        snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(e));
        return OE_EIO;
    }
    return OE_OK;
}

/* Reads up to the ends; returns 0, or 1 when the time ran out. */
static int run_replay(replay *r)
{
    long long deadline = oe_monotonic_ms() + r->cfg->timeout_ms;
    while (r->done < r->nparts && !oe_stop_requested()) {
        if (oe_monotonic_ms() > deadline) {
            fprintf(stderr, "openexec: dlq replay: the end of %s not reached after %ld ms\n",
                    r->cfg->dlq_topic, r->cfg->timeout_ms);
            return 1;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->consumer, 100);
        if (r->producer)
            rd_kafka_poll(r->producer, 0);
        if (!m)
            continue;
        int p = m->partition;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            oe_kafka_consumer_error("dlq replay", m);
        } else if (p >= 0 && p < r->nparts && r->next[p] < r->end[p]) {
            if (!m->err) {
                int sent = 0;
                if (r->producer) {
                    sent = republish(r, m) == 0;
                    r->published += sent;
                    r->failed += !sent;
                }
                print_letter(r, m, sent);
                r->listed++;
                r->next[p] = m->offset + 1;
            }
            /* The end of a partition before its noted end: the rest are
             * transaction markers (or gone), not dead letters. */
            if (r->next[p] >= r->end[p] || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                r->end[p] = r->next[p];
                r->done++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    return 0;
}

/* The replay group's new position: the offset after each partition's last
 * dead letter handled. Returns OE_OK, or OE_EIO with a reason. */
static int commit_progress(replay *r, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(r->nparts);
    for (int p = 0; p < r->nparts; p++)
        rd_kafka_topic_partition_list_add(list, r->cfg->dlq_topic, p)->offset = r->next[p];
    rd_kafka_resp_err_t e = rd_kafka_commit(r->consumer, list, 0);
    rd_kafka_topic_partition_list_destroy(list);
    if (e)
        snprintf(err, errlen, "committing the replay group's position: %s", rd_kafka_err2str(e));
    return e ? OE_EIO : OE_OK;
}

static int dlq_replay(int argc, char **argv)
{
    oe_config cfg;
    oe_kafka_settings ks;
    int status = oe_command_parse(&replay_command, &cfg, &ks, argc, argv);
    if (status >= 0)
        return status;
    if (strcmp(cfg.dlq_topic, cfg.requests_topic) == 0) {
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "dlq replay: the dead-letter topic and the requests topic are both %s",
                      cfg.dlq_topic);
    }
    replay r = {.cfg = &cfg};
    oe_buf_init(&r.line, 0);
    char err[512];
    const char *consumer_forced[] = {"group.id", cfg.replay_group,       "enable.auto.commit",
                                     "false",    "enable.partition.eof", "true",
                                     NULL};
    const char *producer_forced[] = {"enable.idempotence", "true", "acks", "all", NULL};
    oe_kafka_hooks hooks = {.opaque = &r, .on_delivery = on_delivery};
    status = 1;
    r.consumer = oe_kafka_new(RD_KAFKA_CONSUMER, &ks, NULL, consumer_forced, NULL, "consumer", err,
                              sizeof err);
    if (r.consumer && !cfg.dry_run)
        r.producer = oe_kafka_new(RD_KAFKA_PRODUCER, &ks, NULL, producer_forced, &hooks, "producer",
                                  err, sizeof err);
    if (!r.consumer || (!cfg.dry_run && !r.producer)) {
        status = oe_die(2, "%s", err);
        goto out;
    }
    const char *topics[] = {cfg.dlq_topic, cfg.requests_topic};
    rd_kafka_t *admin =
        oe_kafka_new(RD_KAFKA_PRODUCER, &ks, NULL, NULL, NULL, "admin", err, sizeof err);
    int cluster_ok = admin && oe_kafka_check_cluster(admin, topics, 2, 15000, NULL, NULL, err,
                                                     sizeof err) == OE_OK;
    if (admin)
        rd_kafka_destroy(admin);
    if (!cluster_ok || assign(&r, err, sizeof err) != OE_OK) {
        oe_die(1, "dlq replay: %s", err);
        goto out;
    }
    oe_install_signals();
    int timed_out = run_replay(&r);
    if (r.producer) {
        rd_kafka_flush(r.producer, 30000);
        long unsent = (long)rd_kafka_outq_len(r.producer);
        r.failed += unsent;
        r.published -= unsent;
    }
    fflush(stdout);
    if (r.failed > 0) {
        oe_die(1,
               "dlq replay: %ld of %ld dead letters not republished; the replay group's "
               "position is unchanged (run again: executed requests are answered from the "
               "ledger)",
               r.failed, r.listed);
    } else if (!cfg.dry_run && r.listed > 0 && commit_progress(&r, err, sizeof err) != 0) {
        oe_die(1, "dlq replay: %s (run again: executed requests are answered from the ledger)",
               err);
    } else {
        fprintf(stderr, "dlq replay: %ld dead letters %s%s\n", r.listed,
                cfg.dry_run ? "listed (dry run, nothing published)" : "republished to ",
                cfg.dry_run ? "" : cfg.requests_topic);
        status = timed_out || oe_stop_requested() ? 1 : 0;
    }
out:
    if (r.consumer) {
        rd_kafka_consumer_close(r.consumer);
        rd_kafka_destroy(r.consumer);
    }
    if (r.producer)
        rd_kafka_destroy(r.producer);
    free(r.end);
    free(r.next);
    oe_buf_free(&r.line);
    oe_kafka_settings_clear(&ks);
    return status;
}

int oe_cmd_dlq(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "replay") == 0)
        return dlq_replay(argc - 1, argv + 1);
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        printf("usage: openexec dlq replay [options]\n\n"
               "Dead letters back to the requests topic after a fix.\n"
               "openexec dlq replay --help lists the options.\n");
        return 0;
    }
    return oe_die(2, "dlq: %s%s (use replay; see openexec dlq --help)",
                  argc >= 1 ? "unknown action " : "an action is needed", argc >= 1 ? argv[0] : "");
}
