/* `openexec ledger show` and `openexec ledger export`: offline look-ups and
 * audits on a ledger (SQLite file or PostgreSQL), opened read-only beside
 * any running worker; `openexec ledger audit`: the rows and checkpoints
 * checked against the receipts logs (engine/audit.h), read-only too;
 * `openexec ledger migrate`: the schema upgrade, run
 * with the role that owns the ledger (workers may hold only SELECT and
 * INSERT). Records are printed as JSON lines on stdout:
 *
 *   {"record": "execution" or "rejection", "id", "nonce", "action",
 *    "tenant_id", "approval_id", "request_hash", "status", "approved",
 *    "result", "result_json", "receipt", "error_code", "detail", "action_code_hash",
 *    "payload", "created_at"}
 *
 * The receipt's fields under the names and types every channel gives them
 * (null where a rejection has none, "" for what the request did not give;
 * result the JSON value, result_json its text), then what only the ledger
 * keeps.
 * result_json is the text the receipt hash covers (receipt = SHA-256 of
 * id ":" result_json), so that `openexec verify-receipt` or any SHA-256
 * tool checks an exported line. payload is the request's payload object,
 * the canonical text request_hash covers (SHA-256 of
 * {"action":A,"payload":P}, docs/protocol.md §3); a string when the ledger kept it cut
 * (oe_cut: its first bytes, "...sha256=" and the hash of the whole); null
 * when it kept none. created_at is ISO 8601 (UTC). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "engine/approval.h"
#include "engine/audit.h"
#include "engine/buf.h"
#include "engine/digest.h"
#include "engine/ed25519.h"
#include "engine/json.h"
#include "engine/note.h"
#include "engine/status.h"
#include "engine/store.h"
#include "ledger/ledger.h"

static const oe_command show_command = {
    "ledger show",
    OE_CMD_LEDGER_SHOW,
    "Prints the execution recorded for a nonce (--nonce) or an execution id (--id), and the\n"
    "rejected attempts of that nonce, as JSON lines. Exit 1 when the ledger holds neither.\n"
    "The ledger is opened read-only; a running worker may go on using it.",
    0,
    0,
};

static const oe_command export_command = {
    "ledger export",
    OE_CMD_LEDGER_EXPORT,
    "Prints every execution in the order recorded, then every rejected attempt, as JSON\n"
    "lines (an audit trail; each receipt can be checked with verify-receipt). The ledger\n"
    "is opened read-only; a running worker may go on using it.",
    0,
    0,
};

static const oe_command audit_command = {
    "ledger audit",
    OE_CMD_LEDGER_AUDIT,
    "Checks the ledger against its receipts logs and names the first problem: each stored\n"
    "checkpoint (chained from size 0, its signature, its root and tree those of its entries)\n"
    "and each row (its leaf as signed: a row changed, removed, inserted or reordered after it\n"
    "was signed). Prints \"log ORIGIN: N entries, C checkpoints, intact\" for each log, and\n"
    "\"unsigned rows: K\" for rows written before the first log began; exit 1 with the\n"
    "reason on the first problem. A log cut back (its last rows and checkpoints deleted) is\n"
    "found only against a checkpoint published earlier (--checkpoint). The ledger is opened\n"
    "read-only (twice); a running worker may go on using it.",
    0,
    0,
};

static const oe_command logs_command = {
    "ledger logs",
    OE_CMD_LEDGER_LOGS,
    "Lists the receipts logs of the ledger, one JSON line each: its origin, the key that\n"
    "signs it (key_id, and public_key: base64 of the raw Ed25519 key), its entries and\n"
    "checkpoints, and when its first and last checkpoints were made (a rotated key's log\n"
    "stops growing; its receipts stay verifiable with its public key). The ledger is\n"
    "opened read-only; a running worker may go on using it.",
    0,
    0,
};

static const oe_command migrate_command = {
    "ledger migrate",
    OE_CMD_LEDGER_MIGRATE,
    "Creates the ledger's schema, or upgrades it to this binary's version, and prints\n"
    "\"ledger at version N (was M)\". Run it with the role that owns the ledger: workers\n"
    "whose role may only read and insert (SECURITY.md) refuse to start on an older schema.\n"
    "Safe beside running workers of the current version, and to run again.",
    0,
    0,
};

/* Appends "key": "value" (a JSON string, or null), after a comma unless
 * first. Text that is not valid UTF-8 (none is recorded, but an audit tool
 * must not print broken JSON) is written as null. */
static void put_string(oe_buf *b, const char *key, const char *value, int first)
{
    oe_buf_printf(b, "%s\"%s\": ", first ? "" : ", ", key);
    oe_put_json_text(b, value, value ? strlen(value) : 0);
}

/* Appends "payload": the stored canonical text as the object it is when
 * it reads as one (kept whole; written compact, so one line whatever the
 * file holds), else as a string (a cut), or null. */
static void put_payload(oe_buf *b, const char *payload)
{
    oe_json_doc *doc = NULL;
    char err[64];
    if (payload && oe_json_parse(payload, strlen(payload), 0, &doc, err, sizeof err) == OE_OK &&
        oe_json_root(doc)->type == OE_JSON_OBJECT) {
        oe_buf_puts(b, ", \"payload\": ");
        oe_json_dump(b, oe_json_root(doc), OE_JSON_COMPACT);
    } else {
        put_string(b, "payload", payload, 0);
    }
    oe_json_doc_free(doc);
}

static void put_time(oe_buf *b, double epoch)
{
    char ts[64];
    oe_time_format_iso8601(epoch, ts, sizeof ts);
    put_string(b, "created_at", ts, 0);
}

/* Writes the line; OE_OK, the buffer's failure (OE_ELIMIT, OE_ENOMEM), or
 * OE_EIO when stdout failed (a closed pipe). */
static int emit(oe_buf *b)
{
    int rc = oe_buf_failed(b);
    if (rc == OE_OK && (fwrite(b->data, 1, b->len, stdout) != b->len || putchar('\n') == EOF))
        rc = OE_EIO;
    oe_buf_reset(b);
    return rc;
}

typedef struct printer {
    oe_buf line;
    long long executions, rejections;
    /* The filters (--since, --until, --action, --status): a record
     * outside them is not printed. */
    long long since, until; /* microseconds since the epoch, as records print */
    const char *action;
    int status;
} printer;

/* 1 when a record of this kind, action and time passes p's filters. */
static int wanted(const printer *p, int rejected, const char *action, double created_at)
{
    if (p->status == (rejected ? OE_RECORDS_EXECUTED : OE_RECORDS_REJECTED))
        return 0;
    if (p->action && (!action || strcmp(action, p->action) != 0))
        return 0;
    /* Compared in whole microseconds, the precision records print with,
     * so that a record's own printed time selects it. */
    long long us = llround(created_at * 1e6);
    return us >= p->since && us < p->until;
}

/* The filters of cfg into p. Returns 0, or the exit status after the
 * reason (a time that does not parse). */
static int set_filters(printer *p, const oe_config *cfg, const char *command)
{
    p->since = LLONG_MIN;
    p->until = LLONG_MAX;
    p->action = cfg->action;
    p->status = cfg->record_status;
    const char *given[2] = {cfg->since, cfg->until}, *flag[2] = {"--since", "--until"};
    long long *bound[2] = {&p->since, &p->until};
    for (int i = 0; i < 2; i++) {
        double t;
        if (!given[i])
            continue;
        if (oe_time_parse_iso8601(given[i], &t) != OE_OK || !(fabs(t) < 1e12))
            return oe_die(2, "%s: %s %s: not an ISO 8601 time (e.g. 2026-12-06T10:00:00Z)", command,
                          flag[i], given[i]);
        *bound[i] = llround(t * 1e6);
    }
    return 0;
}

/* Appends "result": the result_json text as the JSON value it is (null
 * when it is not JSON: a changed ledger, which `ledger audit` names). */
static void put_result(oe_buf *b, const char *text)
{
    oe_json_doc *doc = NULL;
    char err[64];
    if (text && oe_json_parse(text, strlen(text), 0, &doc, err, sizeof err) == OE_OK) {
        oe_buf_puts(b, ", \"result\": ");
        oe_buf_puts(b, text);
    } else {
        oe_buf_puts(b, ", \"result\": null");
    }
    oe_json_doc_free(doc);
}

static int print_execution(void *ctx, const oe_execution *e)
{
    printer *p = ctx;
    if (!wanted(p, 0, e->action, e->created_at))
        return 0;
    oe_buf *b = &p->line;
    oe_buf_puts(b, "{");
    put_string(b, "record", "execution", 1);
    put_string(b, "id", e->id, 0);
    put_string(b, "nonce", e->nonce, 0);
    put_string(b, "action", e->action, 0);
    put_string(b, "tenant_id", e->tenant_id, 0);
    put_string(b, "approval_id", e->approval_id, 0);
    put_string(b, "request_hash", e->request_hash, 0);
    oe_buf_printf(b, ", \"status\": \"executed\", \"approved\": %s",
                  e->approved ? "true" : "false");
    put_result(b, e->result_json);
    put_string(b, "result_json", e->result_json, 0);
    put_string(b, "receipt", e->receipt, 0);
    oe_buf_puts(b, ", \"error_code\": null, \"detail\": null");
    put_string(b, "action_code_hash", e->action_code_hash[0] ? e->action_code_hash : NULL, 0);
    put_payload(b, e->payload);
    put_time(b, e->created_at);
    oe_buf_puts(b, "}");
    p->executions++;
    return emit(b) == 0 ? 0 : 1;
}

static int print_rejection(void *ctx, const oe_rejection *r)
{
    printer *p = ctx;
    if (!wanted(p, 1, r->action, r->created_at))
        return 0;
    oe_buf *b = &p->line;
    oe_buf_puts(b, "{");
    put_string(b, "record", "rejection", 1);
    oe_buf_puts(b, ", \"id\": null");
    /* What the request did not give is "", as in receipts and the log. */
    put_string(b, "nonce", r->nonce ? r->nonce : "", 0);
    put_string(b, "action", r->action ? r->action : "", 0);
    put_string(b, "tenant_id", r->tenant_id, 0);
    oe_buf_puts(b, ", \"approval_id\": null");
    put_string(b, "request_hash", r->request_hash ? r->request_hash : "", 0);
    oe_buf_puts(b, ", \"status\": \"rejected\", \"approved\": false, \"result\": null, "
                   "\"result_json\": null, \"receipt\": null");
    put_string(b, "error_code", r->error_code, 0);
    put_string(b, "detail", r->detail, 0);
    put_string(b, "action_code_hash", r->action_code_hash, 0);
    put_payload(b, r->payload);
    put_time(b, r->created_at);
    oe_buf_puts(b, "}");
    p->rejections++;
    return emit(b) == 0 ? 0 : 1;
}

/* Opens the ledger of cfg read-only. Returns the store, or NULL after
 * printing the reason (*status: the exit status). */
oe_store *oe_open_ledger_readonly(oe_config *cfg, const oe_command *command, int *status)
{
    char err[512];
    oe_store *store = NULL;
    if (oe_apply_db_url(cfg, command, err, sizeof err) != 0) {
        *status = oe_die(2, "%s", err);
        return NULL;
    }
    int rc = cfg->db_url ? oe_pg_store_new(cfg->db_url, 1, &store, err, sizeof err)
                         : oe_sqlite_store_new(cfg->db_path, 1, OE_STORE_SYNC_NORMAL, &store, err,
                                               sizeof err);
    if (rc != 0) {
        *status = oe_die(1, "ledger: %s", err);
        return NULL;
    }
    return store;
}

/* The end of an iteration: 0, or the exit status after the reason. */
static int iteration_status(int rc, const char *err)
{
    if (rc == 0)
        return 0;
    if (rc > 0)
        return oe_die(1, "ledger: cannot write to stdout");
    return oe_die(1, "ledger: %s", err);
}

static int ledger_show(int argc, char **argv)
{
    oe_config cfg;
    int status = oe_command_parse(&show_command, &cfg, NULL, argc, argv);
    if (status >= 0)
        return status;
    if (!cfg.nonce == !cfg.id)
        return oe_die(2, "ledger show: give --nonce N or --id ID (one of them)");
    printer p = {.executions = 0};
    if ((status = set_filters(&p, &cfg, "ledger show")) != 0)
        return status;
    oe_store *store = oe_open_ledger_readonly(&cfg, &show_command, &status);
    if (!store)
        return status;
    char err[512] = "";
    oe_buf_init(&p.line, 0);
    oe_execution e;
    int found = cfg.nonce ? oe_store_find_by_nonce(store, cfg.nonce,
                                                   oe_ledger_key_of(cfg.nonce, strlen(cfg.nonce)),
                                                   &e, err, sizeof err)
                          : oe_store_find_by_id(store, cfg.id, &e, err, sizeof err);
    int rc = found < 0 ? found : 0;
    const char *nonce = cfg.nonce;
    if (found == 1) {
        rc = print_execution(&p, &e);
        nonce = e.nonce;
    }
    if (rc == 0 && nonce)
        rc = oe_store_each_rejection(store, nonce, print_rejection, &p, err, sizeof err);
    status = iteration_status(rc, err);
    if (status == 0 && p.executions + p.rejections == 0)
        status = oe_die(1, "ledger: no execution or rejected attempt with %s %s%s",
                        cfg.nonce ? "nonce" : "id", cfg.nonce ? cfg.nonce : cfg.id,
                        cfg.since || cfg.until || cfg.action || cfg.record_status
                            ? " matching the filters"
                            : "");
    if (found == 1)
        oe_execution_clear(&e);
    oe_buf_free(&p.line);
    oe_store_free(store);
    if (status == 0 && fflush(stdout) != 0)
        status = oe_die(1, "ledger: cannot write to stdout");
    return status;
}

static int ledger_export(int argc, char **argv)
{
    oe_config cfg;
    int status = oe_command_parse(&export_command, &cfg, NULL, argc, argv);
    if (status >= 0)
        return status;
    printer p = {.executions = 0};
    if ((status = set_filters(&p, &cfg, "ledger export")) != 0)
        return status;
    oe_store *store = oe_open_ledger_readonly(&cfg, &export_command, &status);
    if (!store)
        return status;
    char err[512] = "";
    oe_buf_init(&p.line, 0);
    int rc = oe_store_each_execution(store, print_execution, &p, err, sizeof err);
    if (rc == 0)
        rc = oe_store_each_rejection(store, NULL, print_rejection, &p, err, sizeof err);
    status = iteration_status(rc, err);
    if (status == 0 && fflush(stdout) != 0)
        status = oe_die(1, "ledger: cannot write to stdout");
    if (status == 0)
        fprintf(stderr, "ledger export: %lld executions, %lld rejected attempts\n", p.executions,
                p.rejections);
    oe_buf_free(&p.line);
    oe_store_free(store);
    return status;
}

/* The summary lines of the logs found intact, printed once the whole
 * ledger is (a later problem prints only its reason). */
static int audit_line(void *ctx, const oe_audit_log *log)
{
    oe_buf_printf(ctx, "log %s: %llu %s, %llu %s, intact\n", log->origin,
                  (unsigned long long)log->entries, log->entries == 1 ? "entry" : "entries",
                  (unsigned long long)log->checkpoints,
                  log->checkpoints == 1 ? "checkpoint" : "checkpoints");
    return 0;
}

static int ledger_audit(int argc, char **argv)
{
    oe_config cfg;
    int status = oe_command_parse(&audit_command, &cfg, NULL, argc, argv);
    if (status >= 0)
        return status;
    unsigned char(*keys)[32] = NULL;
    size_t nkeys = 0;
    char *notes[OE_CONFIG_LIST_MAX] = {NULL};
    int nnotes = 0, rc;
    char err[512] = "";
    oe_store *checkpoints = NULL, *rows = NULL;
    oe_buf lines;
    oe_buf_init(&lines, 0);
    if (cfg.trusted_keys_file &&
        (status = oe_load_trusted_keys(cfg.trusted_keys_file, "ledger audit: ", "--trusted-keys",
                                       &keys, &nkeys)) != 0)
        goto out;
    for (; nnotes < cfg.checkpoint_files.n; nnotes++) {
        const char *path = cfg.checkpoint_files.items[nnotes];
        if ((rc = oe_read_text_file(path, OE_NOTE_MAX, &notes[nnotes])) != OE_OK) {
            status = oe_die(2, "ledger audit: --checkpoint %s: cannot read it (%s)", path,
                            rc == OE_ELIMIT ? "not a signed note: too long or not text"
                            : rc == OE_EIO  ? strerror(errno)
                                            : oe_strerror(rc));
            goto out;
        }
    }
    /* Two connections: the checkpoints stream from one while the rows are
     * read from the other. */
    if (!(checkpoints = oe_open_ledger_readonly(&cfg, &audit_command, &status)) ||
        !(rows = oe_open_ledger_readonly(&cfg, &audit_command, &status)))
        goto out;
    oe_audit_options opt = {.trusted = (const unsigned char(*)[32])keys,
                            .ntrusted = nkeys,
                            .notes = (const char *const *)notes,
                            .note_names = cfg.checkpoint_files.items,
                            .nnotes = (size_t)nnotes};
    oe_audit_report report;
    rc = oe_audit_ledger(checkpoints, rows, &opt, audit_line, &lines, &report, err, sizeof err);
    if (rc != OE_OK) {
        status = oe_die(1, "ledger: %s", err);
    } else if (!report.intact) {
        status = oe_die(1, "ledger audit: %s", report.reason);
    } else {
        if (report.logs == 0)
            oe_buf_puts(&lines, "no receipts log in the ledger\n");
        if (report.unsigned_rows)
            oe_buf_printf(&lines, "unsigned rows: %llu\n",
                          (unsigned long long)report.unsigned_rows);
        status = 0;
        if (oe_buf_failed(&lines))
            status = oe_die(1, "ledger audit: %s", oe_strerror(oe_buf_failed(&lines)));
        else if (fwrite(lines.data, 1, lines.len, stdout) != lines.len || fflush(stdout) != 0)
            status = oe_die(1, "ledger: cannot write to stdout");
    }
out:
    oe_store_free(rows);
    oe_store_free(checkpoints);
    oe_buf_free(&lines);
    for (int i = 0; i < nnotes; i++)
        free(notes[i]);
    free(keys);
    return status;
}

static int ledger_migrate(int argc, char **argv)
{
    oe_config cfg;
    int status = oe_command_parse(&migrate_command, &cfg, NULL, argc, argv);
    if (status >= 0)
        return status;
    char err[512];
    if (oe_apply_db_url(&cfg, &migrate_command, err, sizeof err) != 0)
        return oe_die(2, "%s", err);
    int was = 0, now = 0;
    int rc = cfg.db_url ? oe_pg_migrate(cfg.db_url, &was, &now, err, sizeof err)
                        : oe_sqlite_migrate(cfg.db_path, &was, &now, err, sizeof err);
    if (rc != 0)
        return oe_die(1, "ledger migrate: %s", err);
    printf("ledger at version %d (was %d)\n", now, was);
    if (fflush(stdout) != 0)
        return oe_die(1, "ledger: cannot write to stdout");
    return 0;
}

/* One log's line of `ledger logs`, gathered over its checkpoints. */
typedef struct log_line {
    int64_t log_id; /* 0: none yet */
    char origin[256];
    unsigned char public_key[32];
    uint64_t size, checkpoints;
    double first, last;
    long long logs;
    oe_buf out;
} log_line;

static void put_log_line(log_line *l)
{
    char id[65], pub[48], first[64], last[64];
    oe_ed25519_key_id(l->public_key, id);
    oe_base64_encode(l->public_key, 32, pub, sizeof pub);
    oe_time_format_iso8601(l->first, first, sizeof first);
    oe_time_format_iso8601(l->last, last, sizeof last);
    oe_buf_puts(&l->out, "{\"origin\": ");
    oe_json_dump_string(&l->out, l->origin, strlen(l->origin));
    oe_buf_printf(&l->out,
                  ", \"key_id\": \"%s\", \"public_key\": \"%s\", \"entries\": %llu, "
                  "\"checkpoints\": %llu, \"first_used\": \"%s\", \"last_used\": \"%s\"}\n",
                  id, pub, (unsigned long long)l->size, (unsigned long long)l->checkpoints, first,
                  last);
    l->logs++;
}

static int log_checkpoint(void *ctx, const oe_checkpoint_view *c)
{
    log_line *l = ctx;
    if (l->log_id != c->log_id) {
        if (l->log_id)
            put_log_line(l);
        l->log_id = c->log_id;
        snprintf(l->origin, sizeof l->origin, "%s", c->origin);
        memcpy(l->public_key, c->public_key, 32);
        l->checkpoints = 0;
        l->first = c->created_at;
    }
    l->size = c->size;
    l->checkpoints++;
    l->last = c->created_at;
    return 0;
}

static int ledger_logs(int argc, char **argv)
{
    oe_config cfg;
    int status = oe_command_parse(&logs_command, &cfg, NULL, argc, argv);
    if (status >= 0)
        return status;
    oe_store *store = oe_open_ledger_readonly(&cfg, &logs_command, &status);
    if (!store)
        return status;
    char err[512] = "";
    log_line l = {.log_id = 0};
    oe_buf_init(&l.out, 0);
    int rc = oe_store_each_checkpoint(store, NULL, log_checkpoint, &l, err, sizeof err);
    if (rc == 0 && l.log_id)
        put_log_line(&l);
    status = iteration_status(rc, err);
    if (status == 0 && oe_buf_failed(&l.out))
        status = oe_die(1, "ledger logs: %s", oe_strerror(oe_buf_failed(&l.out)));
    if (status == 0 && l.out.len &&
        (fwrite(l.out.data, 1, l.out.len, stdout) != l.out.len || fflush(stdout) != 0))
        status = oe_die(1, "ledger: cannot write to stdout");
    if (status == 0 && l.logs == 0)
        fprintf(stderr, "openexec: ledger logs: no receipts log in the ledger\n");
    oe_buf_free(&l.out);
    oe_store_free(store);
    return status;
}

int oe_cmd_ledger(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "show") == 0)
        return ledger_show(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "export") == 0)
        return ledger_export(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "migrate") == 0)
        return ledger_migrate(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "audit") == 0)
        return ledger_audit(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "logs") == 0)
        return ledger_logs(argc - 1, argv + 1);
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        printf("usage: openexec ledger show (--nonce N | --id ID) [options]\n"
               "       openexec ledger export [options]\n"
               "       openexec ledger audit [--trusted-keys FILE] [--checkpoint NOTE]... "
               "[options]\n"
               "       openexec ledger logs [options]\n"
               "       openexec ledger migrate [options]\n\n"
               "Offline look-ups and audits on a ledger (read-only), and its schema upgrade\n"
               "(with the role that owns it). openexec ledger ACTION --help lists the "
               "options.\n");
        return 0;
    }
    static const char *const actions[] = {"show", "export", "audit", "logs", "migrate"};
    const char *hint = argc >= 1 ? oe_did_you_mean(argv[0], actions, 5) : NULL;
    if (hint)
        return oe_die(2, "ledger: unknown action %s; did you mean %s? (see openexec ledger --help)",
                      argv[0], hint);
    return oe_die(2,
                  "ledger: %s%s (use show, export, audit, logs or migrate; see openexec ledger "
                  "--help)",
                  argc >= 1 ? "unknown action " : "an action is needed", argc >= 1 ? argv[0] : "");
}
