/* openexec: the binary. Parses the command line and environment into the
 * one config struct, starts and stops the modules in order, and alone
 * decides what is fatal (exit 1 runtime, exit 2 usage or configuration). */
#include <errno.h>
#include <limits.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin-http/http.h"
#include "cmd/commands.h"
#include "cmd/config.h"
#include "engine/approval.h"
#include "engine/digest.h"
#include "engine/engine.h"
#include "engine/ids.h"
#include "engine/json.h"
#include "engine/metrics.h"
#include "engine/store.h"
#include "worker/bridge.h"
#include "worker/broker.h"
#include "worker/worker.h"

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Options shared by every command that runs the engine. */
#define ENGINE_OPTIONS                                                                        \
    OPT("--mode", "OPENEXEC_MODE", mode, "demo or clawshield"),                                \
        OPT("--secret", "CLAWSHIELD_SECRET_KEY", secret, "HMAC-SHA256 shared secret"),         \
        OPT("--public-key", "CLAWSHIELD_PUBLIC_KEY", public_key, "Ed25519 public key (PEM text)"), \
        OPT("--tenant", "CLAWSHIELD_TENANT_ID", tenant, "tenant artifacts must name"),         \
        OPT("--allowed-actions", "OPENEXEC_ALLOWED_ACTIONS", allowed_actions,                  \
            "comma-separated allow-list (empty = all)")

static const oe_option run_options[] = {
    ENGINE_OPTIONS,
    KAFKA_OPTIONS,
    OPT("--execute", "OPENEXEC_EXECUTE", execute,
        "kafka [default]: worker + /execute bridge; local: HTTP only, no Kafka"),
    OPT("--worker", "OPENEXEC_WORKER", worker,
        "1 [default]: consume requests here; 0: HTTP bridge only (workers run elsewhere)"),
    OPT("--group-id", "OPENEXEC_GROUP_ID", group_id, "consumer group [openexec-workers]"),
    OPT("--receipt-format", "OPENEXEC_RECEIPT_FORMAT", receipt_format, "avro or json [avro]"),
    OPT("--transactions", "OPENEXEC_KAFKA_TRANSACTIONS", transactions,
        "1 = transactional receipts and offsets [0]"),
    OPT("--transactional-id", "OPENEXEC_TRANSACTIONAL_ID", transactional_id,
        "transactional.id [derived from group, host and database]"),
    OPT("--partitions", "OPENEXEC_PARTITIONS", partitions, "embedded broker: partitions [4]"),
    OPT("--batch-max", "OPENEXEC_BATCH_MAX", batch_max, "most requests per batch [5000]"),
    OPT("--bridge-timeout-ms", "OPENEXEC_BRIDGE_TIMEOUT_MS", bridge_timeout_ms,
        "/execute: wait this long for the receipt [10000]"),
    OPT("--confluent-schema-id", "OPENEXEC_CONFLUENT_SCHEMA_ID", confluent_schema_id,
        "read Confluent-framed Avro with this schema id [off]"),
    OPT("--db", "OPENEXEC_DB_PATH", db_path, "SQLite file [openexec.db]"),
    OPT("--db-sync", "OPENEXEC_DB_SYNC", db_sync, "full or normal [full]"),
    OPT("--http-host", "OPENEXEC_HTTP_HOST", http_host, "admin HTTP address [127.0.0.1]"),
    OPT("--http-port", "OPENEXEC_HTTP_PORT", http_port, "admin HTTP port, 0 = off [5000]"),
    OPT("--http-threads", "OPENEXEC_HTTP_THREADS", http_threads, "HTTP thread pool [4]"),
};

static const oe_option mint_options[] = {
    OPT("--action", NULL, action, "action to approve"),
    OPT("--payload", NULL, payload, "payload as a JSON object [{}]"),
    OPT("--secret", "CLAWSHIELD_SECRET_KEY", secret, "sign with HMAC-SHA256 and this secret"),
    OPT("--ed25519-key", "CLAWSHIELD_PRIVATE_KEY_FILE", ed25519_key,
        "sign with Ed25519: private key PEM file"),
    OPT("--tenant", "CLAWSHIELD_TENANT_ID", tenant, "tenant id [default]"),
    OPT("--approval-id", NULL, approval_id, "approval id [random UUID]"),
    OPT("--issued-at", NULL, issued_at, "ISO 8601 issue time [now]"),
    OPT("--ttl", NULL, ttl, "seconds until expires_at [300]"),
    OPT("--nonce", NULL, nonce, "print a whole request with this nonce"),
};

static const oe_option verify_options[] = {
    OPT("--id", NULL, id, "execution id"),
    OPT("--result", NULL, result, "result as JSON"),
    OPT("--receipt", NULL, receipt, "receipt hash (hex)"),
};


/* Parses a command's options; returns -1 to continue, or an exit status. */
static int parse_options(oe_config *cfg, const char *command, const char *summary,
                         const oe_option *opts, size_t n, int argc, char **argv)
{
    char err[256];
    int help;
    if (oe_config_parse(cfg, opts, n, argc, argv, &help, err, sizeof err) != 0)
        return oe_die(2, "%s (see --help)", err);
    if (help) {
        oe_config_usage(command, summary, opts, n);
        return 0;
    }
    return -1;
}

/* What /ready checks: the worker (if this process runs one) has
 * partitions and the bridge is positioned on the receipts topic; the store
 * is open before either starts. */
typedef struct readiness {
    oe_worker *worker; /* NULL with --worker 0 */
    oe_bridge *bridge;
} readiness;

static int service_ready(void *ctx, char *reason, size_t len)
{
    readiness *r = ctx;
    if (!r->bridge) {
        snprintf(reason, len, "starting");
        return 0;
    }
    if (r->worker && !oe_worker_ready(r->worker, reason, len))
        return 0;
    return oe_bridge_ready(r->bridge, reason, len);
}

/* A transactional.id that stays the same for the same worker (group, host
 * and database file), so that a restarted worker fences its predecessor. */
static void derive_transactional_id(const char *group, const char *db_path, char *out, size_t n)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char abs[PATH_MAX];
    const char *path = realpath(db_path, abs) ? abs : db_path;
    char seed[PATH_MAX + 300], hash[65];
    int len = snprintf(seed, sizeof seed, "%s:%s", host, path);
    oe_sha256_hex(seed, (size_t)len, hash);
    snprintf(out, n, "openexec-%s-%.12s", group, hash);
}

static int cmd_run(int argc, char **argv)
{
    oe_config cfg = {.mode = "demo", .db_path = "openexec.db", .db_sync = "full",
                     .http_host = "127.0.0.1", .http_port = "5000", .http_threads = "4",
                     .receipt_format = "avro", .transactions = "0", .partitions = "4",
                     .batch_max = "5000", .bridge_timeout_ms = "10000", .confluent_schema_id = "-1",
                     .execute = "kafka", .worker = "1"};
    oe_config_kafka_defaults(&cfg);
    const char *db_url = getenv("OPENEXEC_DB_URL");
    if (db_url && !getenv("OPENEXEC_DB_PATH")) {
        if (strncmp(db_url, "sqlite:///", 10) != 0 || !db_url[10])
            return oe_die(2, "OPENEXEC_DB_URL must look like sqlite:///PATH, not %s", db_url);
        cfg.db_path = db_url + 10;
    }
    char err[512];
    oe_kafka_settings ks;
    int rc = oe_parse_kafka_command(
        &cfg, &ks, "run",
        "Runs the service: Kafka worker, SQLite store and admin HTTP. With no\n"
        "brokers configured it starts an embedded broker in this process.",
        run_options, COUNT(run_options), argc, argv);
    if (rc >= 0)
        return rc;
    long port, threads, partitions, batch_max, timeout_ms, schema_id;
    oe_store_sync sync = OE_STORE_SYNC_FULL;
    const char *bad = NULL;
    if (strcmp(cfg.mode, "demo") != 0 && strcmp(cfg.mode, "clawshield") != 0)
        bad = "mode must be demo or clawshield";
    else if (strcmp(cfg.execute, "kafka") != 0 && strcmp(cfg.execute, "local") != 0)
        bad = "execute must be kafka or local";
    else if (strcmp(cfg.worker, "0") != 0 && strcmp(cfg.worker, "1") != 0)
        bad = "worker must be 0 or 1";
    else if (oe_parse_long(cfg.http_port, 0, 65535, &port) != 0)
        bad = "HTTP port must be 0..65535";
    else if (oe_parse_long(cfg.http_threads, 1, 256, &threads) != 0)
        bad = "HTTP threads must be 1..256";
    else if (strcmp(cfg.db_sync, "full") != 0 && strcmp(cfg.db_sync, "normal") != 0)
        bad = "db sync must be full or normal";
    else if (!cfg.db_path[0])
        bad = "database path is empty";
    else if (strcmp(cfg.receipt_format, "avro") != 0 && strcmp(cfg.receipt_format, "json") != 0)
        bad = "receipt format must be avro or json";
    else if (strcmp(cfg.transactions, "0") != 0 && strcmp(cfg.transactions, "1") != 0)
        bad = "transactions must be 0 or 1";
    else if (oe_parse_long(cfg.partitions, 1, 1000, &partitions) != 0)
        bad = "partitions must be 1..1000";
    else if (oe_parse_long(cfg.batch_max, 1, 100000, &batch_max) != 0)
        bad = "batch max must be 1..100000";
    else if (oe_parse_long(cfg.bridge_timeout_ms, 1, 3600000, &timeout_ms) != 0)
        bad = "bridge timeout must be 1..3600000 ms";
    else if (oe_parse_long(cfg.confluent_schema_id, -1, 2147483647L, &schema_id) != 0)
        bad = "Confluent schema id must be -1..2147483647";
    if (bad) {
        oe_kafka_settings_clear(&ks);
        return oe_die(2, "%s", bad);
    }
    if (strcmp(cfg.db_sync, "normal") == 0)
        sync = OE_STORE_SYNC_NORMAL;
    char txn_id[128];
    if (ks.transactions && !ks.transactional_id) {
        derive_transactional_id(ks.group_id, cfg.db_path, txn_id, sizeof txn_id);
        ks.transactional_id = txn_id;
    }

    int status = 1;
    oe_store *writer = NULL, *reader = NULL;
    oe_engine *engine = NULL;
    oe_http *http = NULL;
    oe_broker *broker = NULL;
    oe_worker *worker = NULL;
    oe_bridge *bridge = NULL;
    oe_metrics metrics;
    oe_metrics_init(&metrics);
    readiness ready = {0};
    oe_engine_config ecfg = {
        .clawshield = strcmp(cfg.mode, "clawshield") == 0,
        .secret = cfg.secret,
        .public_key_pem = cfg.public_key,
        .tenant = cfg.tenant ? cfg.tenant : "",
        .allowed_actions = cfg.allowed_actions ? cfg.allowed_actions : "",
    };
    /* Configuration errors first (exit 2), before touching the disk. */
    {
        oe_approval_keys *keys;
        if (oe_approval_keys_new(cfg.secret, cfg.public_key, &keys, err, sizeof err) != 0) {
            oe_kafka_settings_clear(&ks);
            return oe_die(2, "%s", err);
        }
        int present = oe_approval_keys_present(keys);
        oe_approval_keys_free(keys);
        if (ecfg.clawshield && !present) {
            oe_kafka_settings_clear(&ks);
            return oe_die(2, "clawshield mode needs CLAWSHIELD_SECRET_KEY or CLAWSHIELD_PUBLIC_KEY");
        }
    }
    oe_install_signals();
    if (oe_store_open(cfg.db_path, 0, sync, &writer, err, sizeof err) != 0) {
        oe_die(1, "database: %s", err);
        goto done;
    }
    if (oe_store_open(cfg.db_path, 1, sync, &reader, err, sizeof err) != 0) {
        oe_die(1, "database (read-only): %s", err);
        goto done;
    }
    if (oe_engine_new(&ecfg, writer, &engine, err, sizeof err) != 0) {
        status = oe_die(2, "%s", err);
        goto done;
    }
    int local = strcmp(cfg.execute, "local") == 0;
    oe_local_executor in_process = {.engine = engine, .metrics = &metrics};
    if (local) {
        /* No Kafka at all: /execute runs the engine in this process. */
    } else if (!ks.brokers) {
        const char *topics[] = {ks.requests_topic, ks.receipts_topic, ks.dlq_topic};
        if (oe_broker_start((int)partitions, topics, 3, &broker, err, sizeof err) != 0) {
            oe_die(1, "%s", err);
            goto done;
        }
        ks.brokers = oe_broker_bootstraps(broker);
        fprintf(stderr, "openexec: embedded broker bootstrap.servers=%s\n", ks.brokers);
    }
    oe_worker_config wcfg = {
        .kafka = &ks,
        .engine = engine,
        .metrics = &metrics,
        .receipt_json = strcmp(cfg.receipt_format, "json") == 0,
        .confluent_schema_id = schema_id,
        .batch_max = (size_t)batch_max,
    };
    int run_worker = !local && strcmp(cfg.worker, "1") == 0;
    if (run_worker) {
        int wrc = oe_worker_start(&wcfg, &worker, err, sizeof err);
        if (wrc != 0) {
            status = oe_die(wrc == OE_WORKER_CONFIG_ERROR ? 2 : 1, "worker: %s", err);
            goto done;
        }
    }
    if (port > 0 || strcmp(cfg.http_port, "0") != 0) {
        if (!local && oe_bridge_start(&ks, &metrics, timeout_ms, &bridge, err, sizeof err) != 0) {
            status = oe_die(2, "bridge: %s", err);
            goto done;
        }
        ready.bridge = bridge;
        ready.worker = worker;
        oe_http_config hcfg = {
            .host = cfg.http_host,
            .port = (int)port,
            .threads = (unsigned)threads,
            .engine = engine,
            .reader = reader,
            .metrics = &metrics,
            .bridge = bridge,
            .execute = oe_http_execute_in_process,
            .execute_ctx = &in_process,
            .ready = local ? NULL : service_ready,
            .ready_ctx = &ready,
        };
        oe_rc hrc = oe_http_new(&hcfg, &http, err, sizeof err);
        if (hrc == OE_OK)
            hrc = oe_http_start(http, err, sizeof err);
        if (hrc != OE_OK) {
            status = oe_die(hrc == OE_EINVAL ? 2 : 1, "%s", err);
            goto done;
        }
    }
    if (local)
        fprintf(stderr, "openexec: %s mode, database %s, local execution (no Kafka), ", cfg.mode,
                cfg.db_path);
    else
        fprintf(stderr, "openexec: %s mode, database %s, requests %s, receipts %s (%s), ",
                cfg.mode, cfg.db_path, ks.requests_topic, ks.receipts_topic, cfg.receipt_format);
    if (http)
        fprintf(stderr, "admin http://%s:%d\n", cfg.http_host, oe_http_port(http));
    else
        fprintf(stderr, "admin HTTP off\n");
    status = 0;
    while (!oe_stop_requested) {
        if (worker && oe_worker_failed(worker, err, sizeof err)) {
            status = oe_die(1, "%s", err);
            break;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "openexec: stopping\n");
done:
    /* Waiting HTTP requests are answered 503 first (a suspended connection
     * would hold up the server's stop), then the worker drains its batch. */
    if (bridge)
        oe_bridge_close(bridge);
    oe_http_stop(http); /* lets the 503 answers go out */
    oe_http_free(http);
    oe_worker_stop(worker);
    oe_bridge_free(bridge);
    oe_engine_free(engine);
    oe_store_close(reader);
    oe_store_close(writer);
    oe_broker_stop(broker);
    oe_kafka_settings_clear(&ks);
    return status;
}

/* A random (version 4) UUID for approval ids. */
static void random_uuid(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) {
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)rand();
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char hex[33];
    oe_hex_encode(b, 16, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

static char *read_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

static int cmd_mint(int argc, char **argv)
{
    oe_config cfg = {.payload = "{}", .tenant = "default", .ttl = "300"};
    int rc = parse_options(&cfg, "mint",
                           "Prints a signed approval artifact (JSON) for an action and payload.",
                           mint_options, COUNT(mint_options), argc, argv);
    if (rc >= 0)
        return rc;
    if (!cfg.action || !cfg.action[0])
        return oe_die(2, "%s", "mint needs --action");
    int use_ed = cfg.ed25519_key && cfg.ed25519_key[0];
    if (!use_ed && !(cfg.secret && cfg.secret[0]))
        return oe_die(2, "%s", "mint needs --secret or --ed25519-key");
    long ttl;
    if (oe_parse_long(cfg.ttl, 1, 10L * 365 * 86400, &ttl) != 0)
        return oe_die(2, "--ttl must be a positive number of seconds, not %s", cfg.ttl);
    char err[256];
    oe_json_doc *doc = oe_json_parse(cfg.payload, strlen(cfg.payload), 0, err, sizeof err);
    if (!doc)
        return oe_die(2, "--payload: %s", err);
    const oe_json *payload = oe_json_root(doc);
    if (payload->type != OE_JSON_OBJECT) {
        oe_json_doc_free(doc);
        return oe_die(2, "%s", "--payload must be a JSON object");
    }
    char hash[65], approval_id[37], issued_at[64], expires_at[64];
    oe_request_hash(cfg.action, strlen(cfg.action), payload, hash);
    if (cfg.approval_id)
        snprintf(approval_id, sizeof approval_id, "%s", cfg.approval_id);
    else
        random_uuid(approval_id);
    double issued;
    if (cfg.issued_at) {
        if (oe_time_parse_iso8601(cfg.issued_at, &issued) != 0) {
            oe_json_doc_free(doc);
            return oe_die(2, "--issued-at is not an ISO 8601 time: %s", cfg.issued_at);
        }
        snprintf(issued_at, sizeof issued_at, "%s", cfg.issued_at);
    } else {
        issued = wall_clock();
        oe_time_format_iso8601(issued, issued_at, sizeof issued_at);
    }
    oe_time_format_iso8601(issued + (double)ttl, expires_at, sizeof expires_at);
    oe_artifact a = {
        .approval_id = approval_id,
        .action_hash = hash,
        .issued_by = "clawshield",
        .issued_at = issued_at,
        .tenant_id = cfg.tenant,
        .expires_at = expires_at,
    };
    char signature[128];
    if (use_ed) {
        char *pem = read_file(cfg.ed25519_key, 64 * 1024);
        if (!pem) {
            oe_json_doc_free(doc);
            return oe_die(2, "cannot read %s", cfg.ed25519_key);
        }
        rc = oe_approval_sign_ed25519(pem, &a, signature, sizeof signature, err, sizeof err);
        free(pem);
        if (rc != 0) {
            oe_json_doc_free(doc);
            return oe_die(2, "%s", err);
        }
    } else {
        oe_approval_sign_hmac(cfg.secret, &a, signature);
    }
    a.signature = signature;

    oe_buf out;
    oe_buf_init(&out, 0);
    if (cfg.nonce) {
        oe_buf_puts(&out, "{\"action\": ");
        oe_json_dump_string(&out, cfg.action, strlen(cfg.action));
        oe_buf_puts(&out, ", \"payload\": ");
        oe_json_dump(&out, payload, OE_JSON_DEFAULT);
        oe_buf_puts(&out, ", \"nonce\": ");
        oe_json_dump_string(&out, cfg.nonce, strlen(cfg.nonce));
        oe_buf_puts(&out, ", \"approval_artifact\": ");
    }
    const char *names[] = {"approval_id", "action_hash", "signature", "issued_by",
                           "issued_at",   "tenant_id",   "expires_at"};
    const char *values[] = {a.approval_id, a.action_hash, a.signature, a.issued_by,
                            a.issued_at,   a.tenant_id,   a.expires_at};
    oe_buf_putc(&out, '{');
    for (int i = 0; i < 7; i++) {
        if (i)
            oe_buf_puts(&out, ", ");
        oe_json_dump_string(&out, names[i], strlen(names[i]));
        oe_buf_puts(&out, ": ");
        oe_json_dump_string(&out, values[i], strlen(values[i]));
    }
    oe_buf_putc(&out, '}');
    if (cfg.nonce)
        oe_buf_putc(&out, '}');
    puts(out.data);
    oe_buf_free(&out);
    oe_json_doc_free(doc);
    return 0;
}

static int cmd_verify_receipt(int argc, char **argv)
{
    oe_config cfg = {0};
    int rc = parse_options(&cfg, "verify-receipt",
                           "Checks a receipt: sha256(id + \":\" + json.dumps(result, "
                           "sort_keys=True)).\nExit 0 and 'valid', or exit 1 and 'invalid'.",
                           verify_options, COUNT(verify_options), argc, argv);
    if (rc >= 0)
        return rc;
    if (!cfg.id || !cfg.result || !cfg.receipt)
        return oe_die(2, "%s", "verify-receipt needs --id, --result and --receipt");
    char err[256];
    oe_json_doc *doc = oe_json_parse(cfg.result, strlen(cfg.result), 0, err, sizeof err);
    if (!doc)
        return oe_die(2, "--result: %s", err);
    oe_buf text;
    oe_buf_init(&text, 0);
    char hash[65] = "";
    if (oe_json_dump(&text, oe_json_root(doc), OE_JSON_DEFAULT) == 0)
        oe_receipt_hash(cfg.id, text.data, text.len, hash);
    oe_buf_free(&text);
    oe_json_doc_free(doc);
    int valid = hash[0] && strcmp(hash, cfg.receipt) == 0;
    puts(valid ? "valid" : "invalid");
    return valid ? 0 : 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: openexec COMMAND [options]\n\n"
               "commands:\n"
               "  run              the service: Kafka worker, SQLite store, admin HTTP\n"
               "  broker           an embedded Kafka-protocol broker for development and tests\n"
               "  produce          publish JSON-lines requests (Avro by default)\n"
               "  receipts         print receipts as JSON lines\n"
               "  mint             print a signed approval artifact\n"
               "  verify-receipt   check a receipt hash\n"
               "  version          print the version\n\n"
               "openexec COMMAND --help shows a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *command = argv[1];
    if (strcmp(command, "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    if (strcmp(command, "mint") == 0)
        return cmd_mint(argc - 2, argv + 2);
    if (strcmp(command, "broker") == 0)
        return oe_cmd_broker(argc - 2, argv + 2);
    if (strcmp(command, "produce") == 0)
        return oe_cmd_produce(argc - 2, argv + 2);
    if (strcmp(command, "receipts") == 0)
        return oe_cmd_receipts(argc - 2, argv + 2);
    if (strcmp(command, "verify-receipt") == 0)
        return cmd_verify_receipt(argc - 2, argv + 2);
    if (strcmp(command, "version") == 0 || strcmp(command, "--version") == 0) {
        puts(OE_VERSION);
        return 0;
    }
    if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    return oe_die(2, "unknown command: %s (see openexec --help)", command);
}
