/* openexec broker | produce | receipts: the Kafka path without writing
 * code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/commands.h"
#include "engine/request.h"
#include "worker/broker.h"
#include "worker/codec.h"

int oe_parse_kafka_command(oe_config *cfg, oe_kafka_settings *ks, const char *command,
                           const char *summary, const oe_option *opts, size_t n, int argc,
                           char **argv)
{
    char err[256];
    if (oe_kafka_props_from(ks, &argc, argv, err, sizeof err) != 0)
        return oe_die(2, "%s", err);
    int help;
    if (oe_config_parse(cfg, opts, n, argc, argv, &help, err, sizeof err) != 0) {
        oe_kafka_settings_clear(ks);
        return oe_die(2, "%s (see --help)", err);
    }
    if (help) {
        oe_config_usage(command, summary, opts, n);
        printf("  %-22s any librdkafka property, also as OPENEXEC_KAFKA_<PROP>\n",
               "-X prop=value");
        oe_kafka_settings_clear(ks);
        return 0;
    }
    oe_kafka_settings_fill(ks, cfg);
    return -1;
}

static const oe_option broker_options[] = {
    OPT("--partitions", "OPENEXEC_PARTITIONS", partitions, "partitions of our topics [4]"),
    OPT("--bootstrap-file", NULL, bootstrap_file, "also write the address to this file"),
    KAFKA_OPTIONS,
};

int oe_cmd_broker(int argc, char **argv)
{
    oe_config cfg = {.partitions = "4"};
    oe_config_kafka_defaults(&cfg);
    oe_kafka_settings ks;
    int rc = oe_parse_kafka_command(&cfg, &ks, "broker",
                   "Runs an embedded Kafka-protocol broker (librdkafka's mock cluster) until\n"
                   "SIGINT/SIGTERM. Prints bootstrap.servers=HOST:PORT on stdout.",
                   broker_options, COUNT(broker_options), argc, argv);
    if (rc >= 0)
        return rc;
    long partitions;
    if (oe_parse_long(cfg.partitions, 1, 1000, &partitions) != 0) {
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "--partitions must be 1..1000, not %s", cfg.partitions);
    }
    const char *topics[] = {cfg.requests_topic, cfg.receipts_topic, cfg.dlq_topic};
    oe_broker *b;
    char err[512];
    oe_install_signals();
    if (oe_broker_start((int)partitions, topics, 3, &b, err, sizeof err) != 0) {
        oe_kafka_settings_clear(&ks);
        return oe_die(1, "%s", err);
    }
    /* The file first: whoever reads the stdout line may read the file
     * right after it. */
    if (cfg.bootstrap_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", cfg.bootstrap_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%s\n", oe_broker_bootstraps(b)) < 0 || fclose(f) != 0 ||
            rename(tmp, cfg.bootstrap_file) != 0) {
            oe_broker_stop(b);
            oe_kafka_settings_clear(&ks);
            return oe_die(1, "cannot write %s", cfg.bootstrap_file);
        }
    }
    printf("bootstrap.servers=%s\n", oe_broker_bootstraps(b));
    fflush(stdout);
    while (!oe_stop_requested) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    oe_broker_stop(b);
    oe_kafka_settings_clear(&ks);
    return 0;
}

static const oe_option produce_options[] = {
    KAFKA_OPTIONS,
    OPT("--format", "OPENEXEC_REQUEST_FORMAT", format, "avro or json [avro]"),
};

/* Counts delivery failures of `produce`. */
static void produce_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    if (m->err) {
        (*(long *)opaque)++;
        fprintf(stderr, "openexec: produce: delivery failed: %s\n", rd_kafka_err2str(m->err));
    }
}

int oe_cmd_produce(int argc, char **argv)
{
    oe_config cfg = {.format = "avro"};
    oe_config_kafka_defaults(&cfg);
    oe_kafka_settings ks;
    int rc = oe_parse_kafka_command(&cfg, &ks, "produce",
                   "Reads execution requests as JSON lines on stdin, encodes them (Avro\n"
                   "single-object encoding, or the JSON line untouched with --format json)\n"
                   "and publishes them to the requests topic, keyed by nonce.",
                   produce_options, COUNT(produce_options), argc, argv);
    if (rc >= 0)
        return rc;
    int avro = strcmp(cfg.format, "avro") == 0;
    char err[512];
    if (!avro && strcmp(cfg.format, "json") != 0) {
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "--format must be avro or json, not %s", cfg.format);
    }
    if (!ks.brokers) {
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "produce needs --brokers or OPENEXEC_KAFKA_BROKERS");
    }
    oe_codec *codec = NULL;
    if (oe_codec_new(-1, &codec, err, sizeof err) != 0) {
        oe_kafka_settings_clear(&ks);
        return oe_die(1, "%s", err);
    }
    long failed = 0, bad_lines = 0, sent = 0;
    const char *defaults[] = {"linger.ms", "5", NULL};
    const char *forced[] = {"enable.idempotence", "true", "acks", "all", NULL};
    oe_kafka_hooks hooks = {.opaque = &failed, .on_delivery = produce_delivery};
    rd_kafka_t *rk =
        oe_kafka_new(RD_KAFKA_PRODUCER, &ks, defaults, forced, &hooks, "producer", err, sizeof err);
    if (!rk) {
        oe_codec_free(codec);
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "%s", err);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    oe_buf out;
    oe_buf_init(&out, 0);
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        oe_request req;
        char reason[512];
        oe_error_code code;
        if (oe_request_from_json(line, (size_t)len, &req, &code, reason, sizeof reason) != 0) {
            oe_request_clear(&req);
            fprintf(stderr, "openexec: produce: line %ld: %s\n", lineno, reason);
            break; /* out of memory: stop rather than skip lines */
        }
        if (avro && code != OE_ERR_NONE) {
            fprintf(stderr, "openexec: produce: line %ld not sent: %s\n", lineno, reason);
            bad_lines++;
            oe_request_clear(&req);
            continue;
        }
        const void *value = line;
        size_t vlen = (size_t)len;
        if (avro) {
            oe_buf_reset(&out);
            if (oe_codec_encode_request(codec, &req, &out, reason, sizeof reason) != 0) {
                fprintf(stderr, "openexec: produce: line %ld not sent: %s\n", lineno, reason);
                bad_lines++;
                oe_request_clear(&req);
                continue;
            }
            value = out.data;
            vlen = out.len;
        }
        const char *key = req.nonce;
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(ks.requests_topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                RD_KAFKA_V_VALUE((void *)value, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(rk, 50);
                continue;
            }
            if (e) {
                fprintf(stderr, "openexec: produce: line %ld: %s\n", lineno, rd_kafka_err2str(e));
                failed++;
            } else {
                sent++;
            }
            break;
        }
        rd_kafka_poll(rk, 0);
        oe_request_clear(&req);
    }
    free(line);
    oe_buf_free(&out);
    if (rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "openexec: produce: some messages were not delivered in time\n");
        failed++;
    }
    rd_kafka_destroy(rk);
    oe_codec_free(codec);
    oe_kafka_settings_clear(&ks);
    fprintf(stderr, "openexec: produce: %ld sent, %ld failed, %ld invalid lines\n", sent - failed,
            failed, bad_lines);
    return failed || bad_lines ? 1 : 0;
}

static const oe_option receipts_options[] = {
    KAFKA_OPTIONS,
    FLAG("--from-beginning", from_beginning, "start at the oldest receipt (default: newest)"),
    FLAG("--follow", follow, "keep waiting for new receipts until SIGINT/SIGTERM"),
    OPT("--max", NULL, max_count, "stop after this many receipts"),
    OPT("--timeout-ms", NULL, timeout_ms, "with --max: give up after this long [30000]"),
};

int oe_cmd_receipts(int argc, char **argv)
{
    oe_config cfg = {.timeout_ms = "30000"};
    oe_config_kafka_defaults(&cfg);
    oe_kafka_settings ks;
    int rc = oe_parse_kafka_command(&cfg, &ks, "receipts",
                   "Prints receipts from the receipts topic as JSON lines. Without --follow\n"
                   "it stops at the end of the topic (or after --max receipts).",
                   receipts_options, COUNT(receipts_options), argc, argv);
    if (rc >= 0)
        return rc;
    long max = -1, timeout_ms;
    if (cfg.max_count && oe_parse_long(cfg.max_count, 1, 1L << 40, &max) != 0) {
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "--max must be a positive number, not %s", cfg.max_count);
    }
    if (oe_parse_long(cfg.timeout_ms, 1, 1L << 40, &timeout_ms) != 0) {
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "--timeout-ms must be a positive number, not %s", cfg.timeout_ms);
    }
    if (!ks.brokers) {
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "receipts needs --brokers or OPENEXEC_KAFKA_BROKERS");
    }
    char err[512];
    oe_codec *codec = NULL;
    if (oe_codec_new(-1, &codec, err, sizeof err) != 0) {
        oe_kafka_settings_clear(&ks);
        return oe_die(1, "%s", err);
    }
    const char *forced[] = {"group.id", "openexec-receipts-cli", "enable.auto.commit", "false",
                            "enable.partition.eof", "true", NULL};
    rd_kafka_t *rk =
        oe_kafka_new(RD_KAFKA_CONSUMER, &ks, NULL, forced, NULL, "consumer", err, sizeof err);
    if (!rk) {
        oe_codec_free(codec);
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "%s", err);
    }
    int status = 1;
    int nparts = oe_kafka_assign_all(rk, ks.receipts_topic,
                                     cfg.from_beginning ? RD_KAFKA_OFFSET_BEGINNING
                                                        : RD_KAFKA_OFFSET_END,
                                     10000, err, sizeof err);
    if (nparts < 0) {
        oe_die(1, "%s", err);
        goto done;
    }
    oe_install_signals();
    int eofs = 0;
    char *eof_seen = calloc((size_t)nparts, 1);
    long printed = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    oe_buf line;
    oe_buf_init(&line, 0);
    status = 0;
    while (!oe_stop_requested && (max < 0 || printed < max)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (max > 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >
                timeout_ms) {
                fprintf(stderr, "openexec: receipts: %ld of %ld after %ld ms\n", printed, max,
                        timeout_ms);
                status = 1;
                if (m)
                    rd_kafka_message_destroy(m);
                break;
            }
        }
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < nparts && eof_seen && !eof_seen[m->partition]) {
                eof_seen[m->partition] = 1;
                eofs++;
            }
            if (eofs >= nparts && !cfg.follow && max < 0) {
                rd_kafka_message_destroy(m);
                break;
            }
        } else if (m->err) {
            fprintf(stderr, "openexec: receipts: %s\n", rd_kafka_message_errstr(m));
        } else {
            oe_receipt r;
            if (oe_codec_decode_receipt(codec, m->payload, m->len, &r, err, sizeof err) == 0) {
                oe_buf_reset(&line);
                oe_receipt_to_json(&r, &line);
                puts(line.data);
                printed++;
                oe_receipt_clear(&r);
            } else {
                fprintf(stderr, "openexec: receipts: partition %d offset %lld: %s\n",
                        (int)m->partition, (long long)m->offset, err);
            }
        }
        rd_kafka_message_destroy(m);
    }
    fflush(stdout);
    oe_buf_free(&line);
    free(eof_seen);
done:
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    oe_codec_free(codec);
    oe_kafka_settings_clear(&ks);
    return status;
}
