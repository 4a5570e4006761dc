/* openexec status: what a worker group is doing, asked of the brokers
 * (and of the ledger when one is named): the requests topic's partitions,
 * each with its end offset, the group's committed offset and the lag; the
 * group's members and the partitions each holds (where the brokers
 * describe groups); the ledger's executions, rejected attempts and
 * receipts logs. Read-only; runs on the main thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "engine/approval.h"
#include "engine/buf.h"
#include "engine/json.h"
#include "engine/status.h"
#include "engine/store.h"

#define STATUS_TIMEOUT_MS 10000

static const oe_command status_command = {
    "status",
    OE_CMD_STATUS,
    "Prints the state of a worker group: each partition of the requests\n"
    "topic with its end offset, the group's committed offset and the lag;\n"
    "the group's members and their partitions (when the brokers describe\n"
    "groups); with --db or --db-url, the ledger's executions, rejected\n"
    "attempts and receipts logs. A table, or one JSON object with --output\n"
    "json. Exit 1 when the brokers cannot be asked.",
    1,
    1,
};

/* Reads a big-endian integer of n bytes at *p (within end). */
static int read_be(const unsigned char **p, const unsigned char *end, int n, long long *v)
{
    if (end - *p < n)
        return -1;
    *v = 0;
    for (int i = 0; i < n; i++)
        *v = (*v << 8) | (*p)[i];
    *p += n;
    return 0;
}

/* A member's assignment (the consumer protocol's bytes: version, then
 * each topic with its partitions) as JSON into out and words into
 * table. Returns 0, or -1 when the bytes are not such an assignment. */
static int put_assignment(const void *bytes, size_t len, oe_buf *out, oe_buf *table)
{
    const unsigned char *p = bytes, *end = p + len;
    long long version, ntopics;
    if (!bytes || read_be(&p, end, 2, &version) || read_be(&p, end, 4, &ntopics) || ntopics < 0 ||
        ntopics > 100000)
        return -1;
    int first = 1;
    for (long long t = 0; t < ntopics; t++) {
        long long tlen, nparts;
        if (read_be(&p, end, 2, &tlen) || tlen < 0 || end - p < tlen)
            return -1;
        const char *topic = (const char *)p;
        p += tlen;
        if (read_be(&p, end, 4, &nparts) || nparts < 0 || nparts > 1000000)
            return -1;
        for (long long k = 0; k < nparts; k++) {
            long long part;
            if (read_be(&p, end, 4, &part))
                return -1;
            oe_buf_puts(out, first ? "{\"topic\": " : ", {\"topic\": ");
            oe_put_json_text(out, topic, (size_t)tlen);
            oe_buf_printf(out, ", \"partition\": %d}", (int)part);
            oe_buf_printf(table, " %.*s/%d", (int)tlen, topic, (int)part);
            first = 0;
        }
    }
    return 0;
}

/* The group's members as JSON (", \"members\": [...]") into out, or why
 * the brokers did not say (", \"members\": null, \"members_error\": ...";
 * librdkafka's mock cluster does not describe groups). */
static void put_members(rd_kafka_t *rk, const char *group, oe_buf *out, oe_buf *table)
{
    const struct rd_kafka_group_list *list = NULL;
    rd_kafka_resp_err_t e = rd_kafka_list_groups(rk, group, &list, STATUS_TIMEOUT_MS);
    const struct rd_kafka_group_info *g =
        !e && list && list->group_cnt == 1 ? &list->groups[0] : NULL;
    if (g && g->err)
        e = g->err;
    if (e || !g) {
        const char *why = e ? rd_kafka_err2str(e) : "the group is not known";
        oe_buf_puts(out, ", \"members\": null, \"members_error\": ");
        oe_put_json_text(out, why, strlen(why));
        oe_buf_printf(table, "members: unknown (%s)\n", why);
    } else {
        oe_buf_puts(out, ", \"state\": ");
        oe_put_json_text(out, g->state, g->state ? strlen(g->state) : 0);
        oe_buf_printf(table, "members: %d (group state %s)\n", g->member_cnt,
                      g->state ? g->state : "?");
        oe_buf_puts(out, ", \"members\": [");
        for (int i = 0; i < g->member_cnt; i++) {
            const struct rd_kafka_group_member_info *m = &g->members[i];
            oe_buf_puts(out, i ? ", {\"member_id\": " : "{\"member_id\": ");
            oe_put_json_text(out, m->member_id, m->member_id ? strlen(m->member_id) : 0);
            oe_buf_puts(out, ", \"client_id\": ");
            oe_put_json_text(out, m->client_id, m->client_id ? strlen(m->client_id) : 0);
            oe_buf_puts(out, ", \"host\": ");
            oe_put_json_text(out, m->client_host, m->client_host ? strlen(m->client_host) : 0);
            oe_buf_puts(out, ", \"partitions\": [");
            oe_buf_printf(table, "  %s (%s): partitions", m->member_id ? m->member_id : "?",
                          m->client_host ? m->client_host : "?");
            if (put_assignment(m->member_assignment, (size_t)m->member_assignment_size, out,
                               table) != 0)
                oe_buf_printf(table, " (unreadable)");
            oe_buf_puts(out, "]}");
            oe_buf_putc(table, '\n');
        }
        oe_buf_putc(out, ']');
    }
    if (list)
        rd_kafka_group_list_destroy(list);
}

/* Counts the receipts logs of a ledger: its checkpoints come log by log. */
typedef struct {
    int64_t log_id;
    int logs;
} log_count;

static int count_log(void *ctx, const oe_checkpoint_view *c)
{
    log_count *l = ctx;
    if (l->log_id != c->log_id) {
        l->log_id = c->log_id;
        l->logs++;
    }
    return 0;
}

int oe_cmd_status(int argc, char **argv)
{
    oe_config cfg;
    oe_kafka_settings ks;
    int rc = oe_command_parse(&status_command, &cfg, &ks, argc, argv);
    if (rc >= 0)
        return rc;
    char err[600];
    int status = 0;
    oe_buf out, table;
    oe_buf_init(&out, 0);
    oe_buf_init(&table, 0);
    rd_kafka_t *admin = NULL, *consumer = NULL;
    rd_kafka_topic_partition_list_t *list = NULL;
    const char *topic = cfg.requests_topic;
    int parts = 0;
    if (!(admin =
              oe_kafka_new(RD_KAFKA_PRODUCER, &ks, NULL, NULL, NULL, "admin", err, sizeof err))) {
        status = oe_die(2, "status: %s", err);
        goto out;
    }
    if (oe_kafka_check_cluster(admin, &topic, 1, STATUS_TIMEOUT_MS, &parts, NULL, err,
                               sizeof err) != OE_OK) {
        status = oe_die(1, "status: %s", err);
        goto out;
    }
    const char *forced[] = {"group.id", cfg.group_id, "enable.auto.commit", "false", NULL};
    if (!(consumer = oe_kafka_new(RD_KAFKA_CONSUMER, &ks, NULL, forced, NULL, "consumer", err,
                                  sizeof err))) {
        status = oe_die(2, "status: %s", err);
        goto out;
    }
    list = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(list, topic, p);
    rd_kafka_resp_err_t e = rd_kafka_committed(consumer, list, STATUS_TIMEOUT_MS);
    if (e) {
        status = oe_die(1, "status: the group's committed offsets: %s", rd_kafka_err2str(e));
        goto out;
    }
    oe_buf_puts(&out, "{\"group\": ");
    oe_put_json_text(&out, cfg.group_id, strlen(cfg.group_id));
    oe_buf_puts(&out, ", \"requests_topic\": ");
    oe_put_json_text(&out, topic, strlen(topic));
    oe_buf_puts(&out, ", \"partitions\": [");
    oe_buf_printf(&table, "group %s on %s (%d partitions)\npartition  end        committed  lag\n",
                  cfg.group_id, topic, parts);
    long long total = 0;
    for (int p = 0; p < parts; p++) {
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(admin, topic, p, &lo, &hi, STATUS_TIMEOUT_MS);
        if (e) {
            status = oe_die(1, "status: the end of partition %d: %s", p, rd_kafka_err2str(e));
            goto out;
        }
        int64_t committed = list->elems[p].offset; /* negative: none */
        long long lag = committed >= 0 ? (long long)(hi - committed) : (long long)(hi - lo);
        total += lag;
        oe_buf_printf(&out, "%s{\"partition\": %d, \"end\": %lld, \"committed\": ", p ? ", " : "",
                      p, (long long)hi);
        if (committed >= 0)
            oe_buf_printf(&out, "%lld", (long long)committed);
        else
            oe_buf_puts(&out, "null");
        oe_buf_printf(&out, ", \"lag\": %lld}", lag);
        char c[32] = "-";
        if (committed >= 0)
            snprintf(c, sizeof c, "%lld", (long long)committed);
        oe_buf_printf(&table, "%-10d %-10lld %-10s %lld\n", p, (long long)hi, c, lag);
    }
    oe_buf_printf(&out, "], \"lag\": %lld", total);
    oe_buf_printf(&table, "lag: %lld messages\n", total);
    put_members(admin, cfg.group_id, &out, &table);
    if (cfg.db_path || cfg.db_url) {
        oe_store *store = oe_open_ledger_readonly(&cfg, &status_command, &status);
        if (!store)
            goto out;
        long long x = oe_store_count_executions(store), r = oe_store_count_rejections(store);
        log_count l = {.log_id = 0};
        char lerr[512] = "";
        int lrc = oe_store_each_checkpoint(store, NULL, count_log, &l, lerr, sizeof lerr);
        oe_store_free(store);
        if (x < 0 || r < 0 || lrc < 0) {
            status = oe_die(1, "status: ledger: %s", lrc < 0 ? lerr : "cannot count its rows");
            goto out;
        }
        oe_buf_printf(&out,
                      ", \"ledger\": {\"kind\": \"%s\", \"executions\": %lld, \"rejections\": "
                      "%lld, \"logs\": %d}",
                      cfg.db_url ? "postgresql" : "sqlite", x, r, l.logs);
        oe_buf_printf(&table,
                      "ledger (%s): %lld executions, %lld rejected attempts, %d receipts "
                      "logs\n",
                      cfg.db_url ? "postgresql" : "sqlite", x, r, l.logs);
    }
    oe_buf_puts(&out, "}\n");
    if (oe_buf_failed(&out) || oe_buf_failed(&table)) {
        status = oe_die(1, "status: out of memory");
        goto out;
    }
    const oe_buf *show = cfg.output_json ? &out : &table;
    if (fwrite(show->data, 1, show->len, stdout) != show->len || fflush(stdout) != 0)
        status = oe_die(1, "status: cannot write to stdout");
out:
    if (list)
        rd_kafka_topic_partition_list_destroy(list);
    if (consumer) /* it never joined the group: nothing to leave */
        rd_kafka_destroy_flags(consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    if (admin)
        rd_kafka_destroy(admin);
    oe_buf_free(&out);
    oe_buf_free(&table);
    oe_kafka_settings_clear(&ks);
    return status;
}
