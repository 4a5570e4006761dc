/* openexec topics: creates the requests, receipts, dead-letter and
 * checkpoints topics on a cluster through the Admin API (production
 * clusters do not auto-create topics). Idempotent: a topic that exists with
 * the partitions and replication factor asked is left alone; one that
 * exists with other settings is an error (exit 1), never altered. Runs on
 * the main thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "engine/status.h"

#define TOPICS_TIMEOUT_MS 30000
#define NTOPICS 4

static const oe_command topics_command = {
    "topics",
    OE_CMD_TOPICS,
    "Creates the requests, receipts, dead-letter and (signed) checkpoints\n"
    "topics on a cluster (Admin API), each with --partitions partitions and\n"
    "--replication-factor replicas. Exit 0 when they exist as asked (created\n"
    "now or before); exit 1 with the reason when one exists with other\n"
    "settings.",
    1,
    1,
};

/* Creates the topics named in names[0..n); returns OE_OK, or with a reason
 * OE_EINVAL (librdkafka refused a topic's settings) or OE_EIO (the brokers
 * did not create them). */
static int create_topics(rd_kafka_t *rk, const char *const *names, size_t n, int partitions, int rf,
                         char *err, size_t errlen)
{
    rd_kafka_NewTopic_t *nt[NTOPICS] = {0};
    char errstr[256];
    int rc = OE_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!(nt[i] = rd_kafka_NewTopic_new(names[i], partitions, rf, errstr, sizeof errstr))) {
            snprintf(err, errlen, "topic %s: %s", names[i], errstr);
            goto out;
        }
    rc = OE_EIO; /* from here on, failures are the brokers' */
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, TOPICS_TIMEOUT_MS, errstr, sizeof errstr);
    rd_kafka_AdminOptions_set_request_timeout(opts, TOPICS_TIMEOUT_MS, errstr, sizeof errstr);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nt, n, opts, q);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TOPICS_TIMEOUT_MS + 5000);
    rd_kafka_queue_destroy(q);
    if (!ev) {
        snprintf(err, errlen, "no answer to CreateTopics within %d s", TOPICS_TIMEOUT_MS / 1000);
        goto out;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "CreateTopics: %s", rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        goto out;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    rc = OE_OK;
    for (size_t i = 0; i < cnt && rc == OE_OK; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        /* Created meanwhile by someone else: checked again by the caller. */
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            const char *why = rd_kafka_topic_result_error_string(res[i]);
            snprintf(err, errlen, "cannot create topic %s: %s", rd_kafka_topic_result_name(res[i]),
                     why && why[0] ? why : rd_kafka_err2str(e));
            rc = OE_EIO;
        }
    }
    rd_kafka_event_destroy(ev);
out:
    for (size_t i = 0; i < n; i++)
        if (nt[i])
            rd_kafka_NewTopic_destroy(nt[i]);
    return rc;
}

/* Looks up which of the topics exist (and have their partitions'
 * leaders); sets exists[i], parts[i] and rf[i]. Returns OE_OK, or OE_EIO with a reason (brokers
 * unreachable or refused). */
static int look_up(rd_kafka_t *rk, const char *const *names, int *exists, int *parts, int *rf,
                   char *err, size_t errlen)
{
    for (size_t i = 0; i < NTOPICS; i++) {
        char why[512];
        int rc =
            oe_kafka_check_cluster(rk, &names[i], 1, 15000, &parts[i], &rf[i], why, sizeof why);
        exists[i] = rc == OE_OK;
        /* A topic in error (e.g. no leader yet, just after its creation)
         * counts as missing for now. */
        if (rc == OE_EUNAVAIL || rc == OE_EREFUSED) {
            snprintf(err, errlen, "%s", why);
            return OE_EIO;
        }
    }
    return OE_OK;
}

int oe_cmd_topics(int argc, char **argv)
{
    oe_config cfg;
    oe_kafka_settings ks;
    int rc = oe_command_parse(&topics_command, &cfg, &ks, argc, argv);
    if (rc >= 0)
        return rc;
    char err[600];
    rd_kafka_t *rk =
        oe_kafka_new(RD_KAFKA_PRODUCER, &ks, NULL, NULL, NULL, "admin", err, sizeof err);
    if (!rk) {
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "%s", err);
    }
    const char *names[NTOPICS] = {cfg.requests_topic, cfg.receipts_topic, cfg.dlq_topic,
                                  cfg.checkpoints_topic};
    int want_p = (int)cfg.partitions, want_rf = (int)cfg.replication_factor;
    int exists[NTOPICS], parts[NTOPICS], rf[NTOPICS], created[NTOPICS] = {0};
    int status = 0;
    if (look_up(rk, names, exists, parts, rf, err, sizeof err) != 0) {
        status = oe_die(1, "topics: %s", err);
        goto done;
    }
    const char *missing[NTOPICS];
    size_t nmissing = 0;
    for (size_t i = 0; i < NTOPICS; i++)
        if (!exists[i]) {
            missing[nmissing++] = names[i];
            created[i] = 1;
        }
    if (nmissing > 0 && create_topics(rk, missing, nmissing, want_p, want_rf, err, sizeof err)) {
        status = oe_die(1, "topics: %s", err);
        goto done;
    }
    /* The brokers' metadata lists a new topic a moment after CreateTopics
     * returned. */
    for (long long end = oe_monotonic_ms() + TOPICS_TIMEOUT_MS; nmissing > 0;) {
        if (look_up(rk, names, exists, parts, rf, err, sizeof err) != 0) {
            status = oe_die(1, "topics: %s", err);
            goto done;
        }
        size_t have = 0;
        for (size_t i = 0; i < NTOPICS; i++)
            have += exists[i] != 0;
        if (have == NTOPICS || oe_monotonic_ms() > end)
            break;
        oe_sleep_ms(100);
    }
    for (size_t i = 0; i < NTOPICS; i++) {
        if (!exists[i]) {
            status =
                oe_die(1, "topics: %s was created but the cluster does not list it yet", names[i]);
            continue;
        }
        if (parts[i] != want_p || (want_rf > 0 && rf[i] != want_rf)) {
            char asked[64] = "";
            if (want_rf > 0)
                snprintf(asked, sizeof asked, ", replication factor %d", want_rf);
            status = oe_die(1,
                            "topics: %s exists with %d partitions, replication factor %d; asked "
                            "for %d partitions%s (not changed: fix the topic or the flags)",
                            names[i], parts[i], rf[i], want_p, asked);
            continue;
        }
        printf("%s: %s, %d partitions, replication factor %d\n", names[i],
               created[i] ? "created" : "exists", parts[i], rf[i]);
    }
done:
    fflush(stdout);
    rd_kafka_destroy(rk);
    oe_kafka_settings_clear(&ks);
    return status;
}
