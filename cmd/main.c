/* openexec: the binary. Parses the command line and environment into the
 * one typed configuration (config.c), starts and stops the modules in
 * order, and alone decides what is fatal (exit 1 runtime, exit 2 usage or
 * configuration). Everything here runs on the main thread; `run` owns every
 * module it starts (the service struct) and stops them in reverse order
 * before it returns. */
#include <arpa/inet.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin-http/http.h"
#include "bridge/bridge.h"
#include "cmd/commands.h"
#include "cmd/config.h"
#include "devbroker/broker.h"
#include "engine/approval.h"
#include "engine/clock.h"
#include "engine/digest.h"
#include "engine/engine.h"
#include "engine/executor.h"
#include "engine/ids.h"
#include "engine/json.h"
#include "engine/log.h"
#include "engine/lua_actions.h"
#include "engine/metrics.h"
#include "engine/note.h"
#include "engine/request.h"
#include "engine/signer.h"
#include "engine/status.h"
#include "engine/store.h"
#include "engine/tlog.h"
#include "ledger/ledger.h"
#include "worker/worker.h"

static const oe_command run_command = {
    "run",
    OE_CMD_RUN,
    "Runs the service: Kafka worker, SQLite store and admin HTTP. With no\n"
    "brokers configured it starts an embedded broker in this process.",
    1,
    0,
};

/* What /ready checks: the worker (if this process runs one) has
 * partitions and the bridge is positioned on the receipts topic; the store
 * is open before either starts. Without a worker (--execute local,
 * --worker 0), the ledger answers (ledger_ready). Reasons are our words: the backends' own texts
 * (host names, addresses, server messages) go to the log only (docs/protocol.md §7). */
typedef struct readiness {
    oe_worker *worker; /* NULL with --worker 0 */
    oe_bridge *bridge;
    oe_store *reader;         /* probed by ledger_ready */
    oe_engine *engine;        /* its receipts log may have been taken (OE_EDUP_LOG) */
    _Atomic double probed_at; /* oe_monotonic() of the last probe's end */
    atomic_int probing;       /* a /ready call is probing now */
    atomic_int ledger_down;   /* the last probe failed */
} readiness;

/* --execute local and a bridge-only node have no worker to learn from its
 * batches that the ledger is gone (oe_worker_ready), and a quiet service
 * has no batches:
 * /ready looks the ledger up itself, one cheap indexed read of an id that
 * never exists, at most once per LEDGER_PROBE_INTERVAL_S whatever the
 * number of callers (the others take the last answer; nothing is added to
 * /execute or /receipts). A probe of an unreachable host takes up to
 * libpq's connect timeout (5 s, ledger/postgres.c). */
#define LEDGER_PROBE_INTERVAL_S 1.0
#define LEDGER_PROBE_ID "00000000-0000-0000-0000-000000000000"

static int ledger_ready(void *ctx, char *reason, size_t len)
{
    readiness *r = ctx;
    int idle = 0;
    char why[512];
    if (r->engine && oe_engine_log_taken(r->engine, why, sizeof why)) {
        snprintf(reason, len, "receipts log taken: another process signs with this node's key");
        return 0;
    }
    if (oe_monotonic() - atomic_load(&r->probed_at) >= LEDGER_PROBE_INTERVAL_S &&
        atomic_compare_exchange_strong(&r->probing, &idle, 1)) {
        oe_execution e;
        char err[512];
        int rc = oe_store_find_by_id(r->reader, LEDGER_PROBE_ID, &e, err, sizeof err);
        if (rc == 1)
            oe_execution_clear(&e);
        if (rc < 0 && !atomic_exchange(&r->ledger_down, 1))
            oe_log(OE_LOG_ERROR, "main", NULL, "ledger unavailable: %s", err);
        else if (rc >= 0 && atomic_exchange(&r->ledger_down, 0))
            oe_log(OE_LOG_INFO, "main", NULL, "ledger available again");
        atomic_store(&r->probed_at, oe_monotonic());
        atomic_store(&r->probing, 0);
    }
    if (!atomic_load(&r->ledger_down))
        return 1;
    snprintf(reason, len, "ledger unavailable");
    return 0;
}

static int service_ready(void *ctx, char *reason, size_t len)
{
    readiness *r = ctx;
    if (!r->bridge) {
        snprintf(reason, len, "starting");
        return 0;
    }
    char why[400]; /* librdkafka's text, logged by worker/kafka.c, not shown */
    switch (oe_kafka_health(why, sizeof why)) {
    case OE_KAFKA_DOWN:
        snprintf(reason, len, "brokers unreachable");
        return 0;
    case OE_KAFKA_REFUSED:
        snprintf(reason, len, "brokers refused the connection");
        return 0;
    case OE_KAFKA_UP:
        break;
    }
    if (r->worker && !oe_worker_ready(r->worker, reason, len))
        return 0;
    /* A bridge-only node (--worker 0) runs no batches to learn it from. */
    if (!r->worker && !ledger_ready(r, reason, len))
        return 0;
    return oe_bridge_ready(r->bridge, reason, len);
}

/* Everything `run` starts, in start order; run_stop stops what was started,
 * in reverse. */
typedef struct service {
    oe_config cfg;
    oe_kafka_settings ks;
    char txn_id[128];
    char *public_key;    /* read from CLAWSHIELD_PUBLIC_KEY_FILE, or NULL */
    oe_lua_actions *lua; /* the Lua actions of --actions-dir, or NULL */
    int local;           /* --execute local: no Kafka at all */
    oe_engine_config ecfg;
    oe_metrics metrics;             /* the engine's counters */
    oe_kafka_metrics kafka_metrics; /* the worker's and bridge's */
    oe_store *writer, *reader;
    oe_signer *signer; /* signed receipts, or NULL */
    oe_tlog *tlog;
    unsigned char (*trusted)[32]; /* keys whose receipts this node accepts */
    size_t ntrusted;
    oe_engine *engine;
    oe_executor *executor; /* every batch goes through it */
    oe_http *http;
    oe_broker *broker;
    oe_worker *worker;
    oe_bridge *bridge;
    readiness ready;
    char err[512];
} service;

/* A transactional.id that stays the same for the same worker (group, host,
 * ledger and admin port: two workers on one host sharing a ledger differ
 * by their port), so that a restarted worker fences its predecessor. */
static void derive_transactional_id(const char *group, const char *ledger, long port, char *out,
                                    size_t n)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char abs[PATH_MAX];
    const char *path = realpath(ledger, abs) ? abs : ledger;
    char seed[PATH_MAX + 300], hash[65];
    int len = snprintf(seed, sizeof seed, "%s:%s:%ld", host, path, port);
    oe_sha256_hex(seed, (size_t)len, hash);
    snprintf(out, n, "openexec-%s-%.12s", group, hash);
}

/* The first max bytes of a file, NUL-terminated (caller frees), or NULL. */
/* The effective configuration, once (docs/operations.md), with the Kafka properties
 * as kafka.<prop> fields; secrets masked. */
static void run_log_config(const service *s)
{
    const char *extra[2 * OE_CONFIG_EXTRA_MAX + 1];
    char names[OE_CONFIG_EXTRA_MAX][160];
    size_t n = 0;
    for (size_t i = 0; i < s->ks.nprops && i < OE_CONFIG_EXTRA_MAX; i++) {
        snprintf(names[i], sizeof names[i], "kafka.%.150s", s->ks.prop_names[i]);
        extra[n++] = names[i];
        extra[n++] = oe_config_secret_name(s->ks.prop_names[i]) ? "***" : s->ks.prop_values[i];
    }
    extra[n] = NULL;
    oe_config_log(&s->cfg, &run_command, extra);
}

/* 1 when host names this machine only: localhost, 127.0.0.0/8, ::1 (or
 * ::ffff:127.x.x.x). */
static int is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0)
        return 1;
    unsigned char a[16];
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) != 1)
        return 0;
    static const unsigned char one[16] = {[15] = 1};
    static const unsigned char v4[12] = {[10] = 0xff, [11] = 0xff};
    return memcmp(a, one, 16) == 0 || (memcmp(a, v4, 12) == 0 && a[12] == 127);
}

/* The checks that span settings (exit 2), before anything touches the disk
 * or the network. Returns OE_GO_ON to go on, or an exit status. */
static int run_configure(service *s, int argc, char **argv)
{
    int rc = oe_command_parse(&run_command, &s->cfg, &s->ks, argc, argv);
    if (rc >= 0)
        return rc;
    const oe_config *cfg = &s->cfg;
    s->local = cfg->execute == OE_EXECUTE_LOCAL;
    s->ecfg = (oe_engine_config){
        .clawshield = cfg->mode == OE_MODE_CLAWSHIELD,
        .secret = cfg->secret,
        .public_key_pem = cfg->public_key,
        .tenant = cfg->tenant,
        .allowed_actions = cfg->allowed_actions,
        .metrics = &s->metrics,
        .payload_hash_only = cfg->ledger_payloads == OE_PAYLOADS_HASH,
    };
    if (cfg->public_key_file) { /* not with public_key: oe_config_parse refuses the two */
        int rrc = oe_read_text_file(cfg->public_key_file, OE_KEY_FILE_MAX, &s->public_key);
        if (rrc != OE_OK) {
            char why[128];
            oe_kafka_settings_clear(&s->ks);
            return oe_die(2, "--public-key-file %s: cannot read it (%s)", cfg->public_key_file,
                          oe_read_failure(rrc, OE_KEY_FILE_MAX, why, sizeof why));
        }
        s->cfg.public_key = s->ecfg.public_key_pem = s->public_key;
    }
    oe_approval_keys *keys;
    if (oe_apply_db_url(&s->cfg, &run_command, s->err, sizeof s->err) != 0 ||
        oe_approval_keys_new(cfg->secret, cfg->public_key, &keys, s->err, sizeof s->err) != 0) {
        oe_kafka_settings_clear(&s->ks);
        return oe_die(2, "%s", s->err);
    }
    int present = oe_approval_keys_present(keys);
    oe_approval_keys_free(keys);
    if (s->ecfg.clawshield && !present) {
        oe_kafka_settings_clear(&s->ks);
        return oe_die(2, "clawshield mode needs CLAWSHIELD_SECRET_KEY or CLAWSHIELD_PUBLIC_KEY");
    }
    /* Demo mode runs every request unapproved: only this host may ask,
     * unless the operator says otherwise. */
    if (!s->ecfg.clawshield && cfg->http_port != 0 && !is_loopback(cfg->http_host)) {
        if (!cfg->allow_demo_remote) {
            oe_kafka_settings_clear(&s->ks);
            return oe_die(2,
                          "demo mode executes every request unapproved, so it listens on "
                          "loopback only: --http-host (OPENEXEC_HTTP_HOST) %s refused; use "
                          "--mode clawshield with approval keys, a loopback address, or "
                          "OPENEXEC_ALLOW_DEMO_REMOTE=1 to accept that anyone who reaches the "
                          "port executes anything",
                          cfg->http_host);
        }
        oe_log(OE_LOG_WARN, "main", NULL,
               "demo mode on %s (OPENEXEC_ALLOW_DEMO_REMOTE=1): anyone who reaches port %ld "
               "executes any request, unapproved",
               cfg->http_host, cfg->http_port);
    }
    if (cfg->broker_port && (cfg->brokers || s->local)) {
        oe_kafka_settings_clear(&s->ks);
        return oe_die(2, "--broker-port is the embedded broker's; it has none with %s",
                      s->local ? "--execute local" : "--brokers");
    }
    /* Operators' Lua actions: every script compiled and its chunk run once
     * now, so that a broken one stops the start (exit 2, naming it). */
    if (cfg->actions_dir) {
        int lrc = oe_load_actions(cfg, &s->lua, s->err, sizeof s->err);
        if (lrc != OE_OK) {
            oe_kafka_settings_clear(&s->ks);
            return oe_die(lrc == OE_ENOMEM ? 1 : 2, "--actions-dir: %s", s->err);
        }
        s->ecfg.lua_actions = s->lua;
    }
    if (s->ks.transactions && !s->ks.transactional_id) {
        derive_transactional_id(s->ks.group_id, cfg->db_url ? cfg->db_url : cfg->db_path,
                                cfg->http_port, s->txn_id, sizeof s->txn_id);
        s->ks.transactional_id = s->txn_id;
    }
    /* The -X properties are checked now, so that a refused one is the one
     * line of an exit 2, before anything is logged or opened. */
    if (!s->local) {
        rd_kafka_conf_t *conf = oe_kafka_conf(&s->ks, NULL, NULL, s->err, sizeof s->err);
        if (!conf) {
            oe_kafka_settings_clear(&s->ks);
            return oe_die(2, "%s", s->err);
        }
        rd_kafka_conf_destroy(conf);
    }
    run_log_config(s);
    for (size_t i = 0; i < oe_lua_actions_count(s->lua); i++)
        oe_log(OE_LOG_INFO, "main",
               OE_LOG_FIELDS("action", oe_lua_action_name(s->lua, i), "code_hash",
                             oe_lua_action_code_hash(s->lua, i)),
               "Lua action loaded");
    return OE_GO_ON;
}

/* HMAC secrets shorter than the hash's output are accepted (the original's
 * clients may hold such) but named once at start, by position, never by
 * value. */
#define OE_SECRET_MIN_BYTES 32
static void warn_short_secrets(const oe_approval_keys *keys)
{
    size_t n = oe_approval_keys_hmac_count(keys);
    for (size_t i = 0; i < n; i++) {
        size_t len = oe_approval_keys_hmac_length(keys, i);
        if (len < OE_SECRET_MIN_BYTES)
            oe_log(OE_LOG_WARN, "main", NULL,
                   "CLAWSHIELD_SECRET_KEY secret %zu of %zu is %zu bytes; at least %d are "
                   "recommended (RFC 2104)",
                   i + 1, n, len, OE_SECRET_MIN_BYTES);
    }
}

/* Signed receipts (docs/protocol.md §8): the writer's key (given, or LEDGER.key
 * beside a SQLite ledger, made at first start) and its log in the ledger.
 * Returns 0 or an exit status. */
static int run_open_log(service *s)
{
    const oe_config *cfg = &s->cfg;
    if (cfg->signing == OE_SIGNING_OFF)
        return 0;
    /* A shared ledger's writers each need a key of their own: none is
     * made for them (one LEDGER.key for all would be one log for all,
     * which the second writer would be refused). */
    if (!cfg->signing_key_file && (cfg->db_url || cfg->ledger_shared)) {
        if (cfg->signing == OE_SIGNING_AUTO)
            return 0;
        return oe_die(2, "signed receipts on a shared ledger need a key per worker: set "
                         "OPENEXEC_SIGNING_KEY_FILE (openexec keygen --out FILE)");
    }
    if (!oe_store_has_logs(s->writer))
        return oe_die(2, "signed receipts: a %s ledger does not keep receipts logs",
                      oe_store_backend(s->writer));
    /* Every leaf names the tenant, as JSON text. */
    if (cfg->tenant && !oe_utf8_valid(cfg->tenant, strlen(cfg->tenant)))
        return oe_die(2, "CLAWSHIELD_TENANT_ID is not UTF-8 text: signed receipts name it in "
                         "their log's leaves (fix it, or set OPENEXEC_SIGNING=off)");
    oe_rc rc;
    if (cfg->signing_key_file) {
        rc = oe_signer_load_file(cfg->signing_key_file, &s->signer, s->err, sizeof s->err);
    } else {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s.key", cfg->db_path) >= (int)sizeof path)
            return oe_die(2, "signed receipts: the ledger's path is too long");
        struct stat st;
        if (stat(path, &st) == 0) {
            rc = oe_signer_load_file(path, &s->signer, s->err, sizeof s->err);
        } else {
            rc = oe_signer_generate_file(path, &s->signer, s->err, sizeof s->err);
            if (rc == OE_OK)
                oe_log(OE_LOG_INFO, "main", NULL, "made the receipts signing key %s", path);
        }
    }
    if (rc != OE_OK)
        return oe_die(2, "signing key: %s", s->err);
    rc = oe_tlog_open(s->writer, s->signer, cfg->log_origin, oe_wall_clock(), &s->tlog, s->err,
                      sizeof s->err);
    if (rc != OE_OK)
        return oe_die(rc == OE_EINVAL ? 2 : 1, "receipts log: %s", s->err);
    char key_id[65];
    oe_signer_key_id(s->signer, key_id);
    oe_log(OE_LOG_INFO, "main", NULL, "receipts log %s (key id %s) at size %llu",
           oe_tlog_origin(s->tlog), key_id, (unsigned long long)oe_tlog_size(s->tlog));
    return 0;
}

/* The keys whose signed receipts this node accepts (/receipts/verify, the
 * bridge): OPENEXEC_TRUSTED_KEYS_FILE, else its own signing key's; none
 * when it signs nothing. Returns 0 or an exit status. */
static int run_trusted_keys(service *s)
{
    const char *path = s->cfg.trusted_keys_file;
    if (!path) {
        if (!s->signer)
            return 0;
        if (!(s->trusted = malloc(sizeof *s->trusted)))
            return oe_die(1, "out of memory");
        oe_signer_public(s->signer, s->trusted[0]);
        s->ntrusted = 1;
        return 0;
    }
    return oe_load_trusted_keys(path, "", "--trusted-keys-file", &s->trusted, &s->ntrusted);
}

/* The ledger (a writer and a reader connection) and the engine on it.
 * Returns 0 or an exit status. */
static int run_open_store(service *s)
{
    oe_store_sync sync =
        s->cfg.db_sync == OE_SYNC_NORMAL ? OE_STORE_SYNC_NORMAL : OE_STORE_SYNC_FULL;
    const char *url = s->cfg.db_url;
    if (url) {
        if (oe_pg_store_new(url, 0, &s->writer, s->err, sizeof s->err) != 0)
            return oe_die(1, "ledger: %s", s->err);
        if (oe_pg_store_new(url, 1, &s->reader, s->err, sizeof s->err) != 0)
            return oe_die(1, "ledger (read-only): %s", s->err);
    } else {
        if (oe_sqlite_store_new(s->cfg.db_path, 0, sync, &s->writer, s->err, sizeof s->err) != 0)
            return oe_die(1, "database: %s", s->err);
        if (oe_sqlite_store_new(s->cfg.db_path, 1, sync, &s->reader, s->err, sizeof s->err) != 0)
            return oe_die(1, "database (read-only): %s", s->err);
    }
    int rc = run_open_log(s);
    if (rc == 0)
        rc = run_trusted_keys(s);
    if (rc != 0)
        return rc;
    s->ecfg.tlog = s->tlog;
    if (oe_engine_new(&s->ecfg, s->writer, &s->engine, s->err, sizeof s->err) != 0)
        return oe_die(2, "%s", s->err);
    warn_short_secrets(oe_engine_approval_keys(s->engine));
    oe_engine_start(s->engine); /* its helper threads, made once */
    if (oe_executor_new(s->engine, &s->metrics, &s->executor) != OE_OK)
        return oe_die(1, "out of memory");
    if (s->local && oe_executor_start(s->executor, s->err, sizeof s->err) != OE_OK)
        return oe_die(1, "%s", s->err); /* local /execute's group commit */
    return 0;
}

/* Before the clients of a configured cluster start: an authentication or
 * TLS refusal, or one of our topics missing (production clusters do not
 * create them on first use), fails at once. Brokers that do not answer
 * within RUN_CLUSTER_WAIT_MS are not an error: the service starts, /ready
 * says why it is not ready, and the worker checks again once they answer.
 * Returns 0, or an exit status after printing the reason. */
#define RUN_CLUSTER_WAIT_MS 3000
static int run_check_cluster(service *s)
{
    const oe_kafka_settings *ks = &s->ks;
    rd_kafka_t *rk =
        oe_kafka_new(RD_KAFKA_PRODUCER, ks, NULL, NULL, NULL, "admin", s->err, sizeof s->err);
    if (!rk)
        return oe_die(2, "%s", s->err);
    const char *topics[] = {ks->requests_topic, ks->receipts_topic, ks->dlq_topic,
                            ks->checkpoints_topic};
    int rc = oe_kafka_check_cluster(rk, topics, ks->checkpoints_topic ? 4 : 3, RUN_CLUSTER_WAIT_MS,
                                    NULL, NULL, s->err, sizeof s->err);
    rd_kafka_destroy(rk);
    if (rc == OE_EUNAVAIL) {
        oe_log(OE_LOG_WARN, "main", NULL, "%s; starting anyway (not ready until they answer)",
               s->err);
        return 0;
    }
    return rc == OE_OK ? 0 : oe_die(1, "%s", s->err);
}

/* The embedded broker when no brokers are configured, then the worker
 * (unless --worker 0), then the /execute bridge (when HTTP is on).
 * Returns 0 or an exit status. */
static int run_start_kafka(service *s)
{
    oe_kafka_settings *ks = &s->ks;
    /* Signed checkpoints are published when this node signs. */
    ks->checkpoints_topic = s->tlog ? s->cfg.checkpoints_topic : NULL;
    if (!ks->brokers) {
        int rc = oe_start_embedded_broker(&s->cfg, &s->broker);
        if (rc != 0)
            return rc;
        ks->brokers = oe_broker_bootstraps(s->broker);
        oe_log(OE_LOG_INFO, "broker", OE_LOG_FIELDS("bootstrap.servers", ks->brokers),
               "embedded broker");
    } else {
        int rc = run_check_cluster(s);
        if (rc != 0)
            return rc;
    }
    oe_worker_config wcfg = {
        .kafka = ks,
        .executor = s->executor,
        .kafka_metrics = &s->kafka_metrics,
        .receipt_json = s->cfg.receipt_format == OE_FORMAT_JSON,
        .confluent_schema_id = s->cfg.confluent_schema_id,
        .batch_max = (size_t)s->cfg.batch_max,
        .ledger_shared = oe_store_shared(s->writer) || s->cfg.ledger_shared,
        .own_broker = s->broker != NULL,
        .log_origin = s->tlog ? oe_tlog_origin(s->tlog) : NULL,
    };
    if (s->cfg.worker) {
        oe_rc wrc = oe_worker_new(&wcfg, &s->worker, s->err, sizeof s->err);
        if (wrc == OE_OK)
            wrc = oe_worker_start(s->worker, s->err, sizeof s->err);
        if (wrc != OE_OK)
            return oe_die(wrc == OE_EINVAL ? 2 : 1, "worker: %s", s->err);
    }
    if (s->cfg.http_port == 0)
        return 0;
    if (oe_bridge_new(ks, &s->kafka_metrics, s->cfg.bridge_timeout_ms, &s->bridge, s->err,
                      sizeof s->err) != 0)
        return oe_die(2, "bridge: %s", s->err);
    oe_bridge_set_trusted(s->bridge, (const unsigned char(*)[32])s->trusted, s->ntrusted);
    int brc = oe_bridge_start(s->bridge, s->err, sizeof s->err);
    if (brc != OE_OK)
        return oe_die(brc == OE_EINVAL ? 2 : 1, "bridge: %s", s->err);
    return 0;
}

/* Binds the admin HTTP port (port 0: none), before the broker and worker
 * start, so that a port in use fails fast. Returns 0 or an exit status. */
static int run_bind_http(service *s)
{
    const oe_config *cfg = &s->cfg;
    if (cfg->http_port == 0)
        return 0;
    oe_http_config hcfg = {
        .host = cfg->http_host,
        .port = (int)cfg->http_port,
        .threads = (unsigned)cfg->http_threads,
        .engine = s->engine,
        .reader = s->reader,
        .metrics = &s->metrics,
        .kafka_metrics = s->local ? NULL : &s->kafka_metrics,
        .bridge = NULL, /* set by run_start_http, once it exists */
        .executor = s->executor,
        .ready = s->local ? ledger_ready : service_ready,
        .ready_ctx = &s->ready,
        .trusted = (const unsigned char(*)[32])s->trusted,
        .ntrusted = s->ntrusted,
    };
    oe_rc rc = oe_http_new(&hcfg, &s->http, s->err, sizeof s->err);
    if (rc != OE_OK)
        return oe_die(rc == OE_EINVAL ? 2 : 1, "%s", s->err);
    return 0;
}

/* Serves the bound admin HTTP port. Returns 0 or an exit status. */
static int run_start_http(service *s)
{
    if (!s->http)
        return 0;
    s->ready.bridge = s->bridge;
    s->ready.worker = s->worker;
    s->ready.reader = s->reader;
    s->ready.engine = s->engine;
    oe_http_set_bridge(s->http, s->bridge);
    if (oe_http_start(s->http, s->err, sizeof s->err) != OE_OK)
        return oe_die(1, "%s", s->err);
    return 0;
}

/* One line of what runs where (a ledger URL with its password masked). */
static void run_announce(const service *s)
{
    const char *mode = s->cfg.mode == OE_MODE_CLAWSHIELD ? "clawshield" : "demo";
    char ledger[600];
    if (s->cfg.db_url) {
        char masked[512];
        oe_ledger_mask_url(s->cfg.db_url, masked, sizeof masked);
        snprintf(ledger, sizeof ledger, "ledger %s (shared)", masked);
    } else {
        snprintf(ledger, sizeof ledger, "database %s%s", s->cfg.db_path,
                 s->cfg.ledger_shared ? " (shared on this host)" : "");
    }
    char where[1400];
    int n = s->local ? snprintf(where, sizeof where, "%s mode, %s, local execution (no Kafka), ",
                                mode, ledger)
                     : snprintf(where, sizeof where, "%s mode, %s, requests %s, receipts %s (%s), ",
                                mode, ledger, s->ks.requests_topic, s->ks.receipts_topic,
                                s->cfg.receipt_format == OE_FORMAT_JSON ? "json" : "avro");
    size_t used = n < 0 ? 0 : (size_t)n < sizeof where ? (size_t)n : sizeof where - 1;
    if (s->http)
        snprintf(where + used, sizeof where - used, "admin http://%s:%d", s->cfg.http_host,
                 oe_http_port(s->http));
    else
        snprintf(where + used, sizeof where - used, "admin HTTP off");
    oe_log(OE_LOG_INFO, "main", NULL, "%s", where);
}

/* SIGHUP: the actions folder read again, all or nothing. A folder that
 * does not load (or whose actions the allow-list no longer matches)
 * leaves every action as it was, with an error in the log; otherwise the
 * engine takes the new set after its batch in hand, and each action that
 * came, went or changed is logged with its old and new code hashes. */
static void run_reload(service *s)
{
    if (!s->cfg.actions_dir) {
        oe_log(OE_LOG_INFO, "main", NULL,
               "SIGHUP: no actions folder (--actions-dir) configured, nothing to reload");
        return;
    }
    char err[700];
    oe_lua_actions *next = NULL;
    int rc = oe_load_actions(&s->cfg, &next, err, sizeof err);
    if (rc == OE_OK)
        rc = oe_engine_reload_actions(s->engine, next, err, sizeof err);
    if (rc != OE_OK) {
        oe_lua_actions_free(next);
        oe_log(OE_LOG_ERROR, "main", NULL,
               "Lua actions not reloaded, the %zu loaded before stay: %s",
               oe_lua_actions_count(s->lua), err);
        return;
    }
    size_t changed = 0;
    for (size_t i = 0; i < oe_lua_actions_count(next); i++) {
        const char *name = oe_lua_action_name(next, i), *hash = oe_lua_action_code_hash(next, i);
        long was = oe_lua_actions_find(s->lua, name);
        const char *old = was >= 0 ? oe_lua_action_code_hash(s->lua, (size_t)was) : NULL;
        if (old && strcmp(old, hash) == 0)
            continue;
        changed++;
        oe_log(
            OE_LOG_INFO, "main",
            OE_LOG_FIELDS("action", name, "old_code_hash", old ? old : "none", "code_hash", hash),
            was >= 0 ? "Lua action changed" : "Lua action added");
    }
    for (size_t i = 0; i < oe_lua_actions_count(s->lua); i++) {
        const char *name = oe_lua_action_name(s->lua, i);
        if (oe_lua_actions_find(next, name) >= 0)
            continue;
        changed++;
        oe_log(OE_LOG_INFO, "main",
               OE_LOG_FIELDS("action", name, "old_code_hash", oe_lua_action_code_hash(s->lua, i),
                             "code_hash", "none"),
               "Lua action removed");
    }
    oe_lua_actions_free(s->lua); /* the engine no longer uses it */
    s->lua = next;
    oe_log(OE_LOG_INFO, "main", NULL, "Lua actions reloaded: %zu actions, %zu changed",
           oe_lua_actions_count(next), changed);
}

/* Waits for SIGINT/SIGTERM or a failed worker, reloading the actions on
 * SIGHUP; returns the exit status. */
static int run_wait(service *s)
{
    int status = 0;
    /* A signal ends the wait at once; a failed worker is seen within 100 ms. */
    while (!oe_stop_wait(100)) {
        if (oe_reload_requested())
            run_reload(s);
        if (s->worker && oe_worker_failed(s->worker, s->err, sizeof s->err)) {
            status = oe_die(1, "%s", s->err);
            break;
        }
    }
    oe_log(OE_LOG_INFO, "main", NULL, "stopping");
    return status;
}

static void run_stop(service *s)
{
    oe_http *http = s->http;
    /* Waiting HTTP requests are answered 503 first (a suspended connection
     * would hold up the server's stop), then the worker drains its batch. */
    if (s->bridge)
        oe_bridge_stop(s->bridge);
    oe_http_stop(http); /* lets the 503 answers go out */
    oe_http_free(http);
    oe_worker_free(s->worker);
    oe_bridge_free(s->bridge);
    oe_executor_free(s->executor); /* after every user of it */
    oe_engine_free(s->engine);
    oe_tlog_free(s->tlog);
    oe_signer_free(s->signer);
    free(s->trusted);
    oe_store_free(s->reader);
    oe_store_free(s->writer);
    oe_broker_free(s->broker);
    oe_kafka_settings_clear(&s->ks);
}

/* Start order: configuration (exit 2 before the disk is touched), the
 * ledger, the admin HTTP port (bound: a port in use fails fast), the broker,
 * the worker, the bridge, then the admin HTTP server serves. */
static int cmd_run(int argc, char **argv)
{
    service *s = calloc(1, sizeof *s);
    if (!s)
        return oe_die(1, "out of memory");
    int status = run_configure(s, argc, argv);
    if (status >= 0) {
        oe_lua_actions_free(s->lua);
        free(s->public_key);
        free(s);
        return status;
    }
    oe_metrics_init(&s->metrics);
    oe_kafka_metrics_init(&s->kafka_metrics);
    oe_signals_start(1); /* before any thread is made */
    status = run_open_store(s);
    if (status == 0)
        status = run_bind_http(s);
    if (status == 0 && !s->local)
        status = run_start_kafka(s);
    if (status == 0)
        status = run_start_http(s);
    if (status == 0) {
        run_announce(s);
        status = run_wait(s);
    }
    run_stop(s);
    oe_signals_stop();
    oe_lua_actions_free(s->lua); /* after the engine, which borrowed it */
    free(s->public_key);
    free(s);
    return status;
}
/* A random (version 4) UUID for approval ids. Returns OE_OK, or OE_EIO
 * when the system has no randomness to give (an id that could repeat is
 * worse than no artifact). */
static int random_uuid(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return OE_EIO;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char hex[33];
    oe_hex_encode(b, 16, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
    return OE_OK;
}

static const oe_command mint_command = {
    "mint", OE_CMD_MINT, "Prints a signed approval artifact (JSON) for an action and payload.",
    0,      0,
};

/* The texts an artifact is made of; the strings of oe_artifact point here
 * or into the configuration. */
typedef struct minted {
    oe_artifact a;
    char hash[65], approval_id[OE_APPROVAL_ID_MAX_BYTES + 1], issued_at[64], expires_at[64],
        signature[128];
} minted;

/* Fills m for the action and payload of cfg: hash, id, times, signature.
 * Returns 0 or an exit status (2: bad input, 1: no randomness). */
static int mint_artifact(const oe_config *cfg, const oe_json *payload, minted *m)
{
    char err[256];
    oe_request_hash(cfg->action, strlen(cfg->action), payload, m->hash);
    if (cfg->approval_id && strlen(cfg->approval_id) > OE_APPROVAL_ID_MAX_BYTES)
        return oe_die(2, "--approval-id: longer than %d bytes", OE_APPROVAL_ID_MAX_BYTES);
    if (cfg->approval_id)
        snprintf(m->approval_id, sizeof m->approval_id, "%s", cfg->approval_id);
    else if (random_uuid(m->approval_id) != 0)
        return oe_die(1, "no randomness for an approval id");
    double issued;
    if (cfg->issued_at) {
        if (oe_time_parse_iso8601(cfg->issued_at, &issued) != 0)
            return oe_die(2, "--issued-at %s: not an ISO 8601 time", cfg->issued_at);
        snprintf(m->issued_at, sizeof m->issued_at, "%s", cfg->issued_at);
    } else {
        issued = oe_wall_clock();
        oe_time_format_iso8601(issued, m->issued_at, sizeof m->issued_at);
    }
    oe_time_format_iso8601(issued + (double)cfg->ttl, m->expires_at, sizeof m->expires_at);
    const char *code = cfg->action_code_hash;
    size_t hex = code ? strspn(code, "0123456789abcdef") : 0;
    if (code && (hex != 64 || code[hex]))
        return oe_die(2, "--action-code-hash %.80s: not 64 lowercase hex digits (a SHA-256)", code);
    m->a = (oe_artifact){
        .approval_id = m->approval_id,
        .action_hash = m->hash,
        .issued_by = "clawshield",
        .issued_at = m->issued_at,
        .tenant_id = cfg->tenant,
        .expires_at = m->expires_at,
        .action_code_hash = code,
    };
    if (cfg->ed25519_key) {
        char *pem, why[128];
        int rrc = oe_read_text_file(cfg->ed25519_key, OE_KEY_FILE_MAX, &pem);
        if (rrc != OE_OK)
            return oe_die(2, "--ed25519-key %s: cannot read it (%s)", cfg->ed25519_key,
                          oe_read_failure(rrc, OE_KEY_FILE_MAX, why, sizeof why));
        int rc = oe_approval_sign_ed25519(pem, &m->a, m->signature, sizeof m->signature, err,
                                          sizeof err);
        free(pem);
        if (rc != 0)
            return oe_die(2, "%s", err);
    } else {
        /* Several secrets (rotation, "," between), read as run reads them:
         * the first one signs. */
        oe_approval_keys *keys;
        if (oe_approval_keys_new(cfg->secret, NULL, &keys, err, sizeof err) != 0)
            return oe_die(2, "%s", err);
        int rc = oe_approval_keys_sign_hmac(keys, &m->a, m->signature);
        oe_approval_keys_free(keys);
        if (rc != 0)
            return oe_die(2, "mint: no HMAC secret given");
    }
    m->a.signature = m->signature;
    return 0;
}

/* Prints the artifact, or with --nonce a whole request carrying it, as one
 * JSON line. The appends are checked once, at the end (the buffer's sticky
 * failure policy): nothing is printed unless all of it is there. */
static int print_artifact(const oe_config *cfg, const oe_json *payload, const oe_artifact *a)
{
    oe_buf out;
    oe_buf_init(&out, 0);
    if (cfg->nonce) {
        oe_buf_puts(&out, "{\"action\": ");
        oe_json_dump_string(&out, cfg->action, strlen(cfg->action));
        oe_buf_puts(&out, ", \"payload\": ");
        oe_json_dump(&out, payload, OE_JSON_DEFAULT);
        oe_buf_puts(&out, ", \"nonce\": ");
        oe_json_dump_string(&out, cfg->nonce, strlen(cfg->nonce));
        oe_buf_puts(&out, ", \"approval_artifact\": ");
    }
    const char *names[] = {"approval_id", "action_hash", "signature",  "issued_by",
                           "issued_at",   "tenant_id",   "expires_at", "action_code_hash"};
    const char *values[] = {a->approval_id, a->action_hash, a->signature,  a->issued_by,
                            a->issued_at,   a->tenant_id,   a->expires_at, a->action_code_hash};
    oe_buf_putc(&out, '{');
    for (int i = 0; i < 8 && values[i]; i++) {
        if (i)
            oe_buf_puts(&out, ", ");
        oe_json_dump_string(&out, names[i], strlen(names[i]));
        oe_buf_puts(&out, ": ");
        oe_json_dump_string(&out, values[i], strlen(values[i]));
    }
    oe_buf_putc(&out, '}');
    if (cfg->nonce)
        oe_buf_putc(&out, '}');
    int failed = oe_buf_failed(&out);
    if (!failed)
        puts(out.data);
    oe_buf_free(&out);
    return failed ? oe_die(1, "mint: cannot build the artifact: %s", oe_strerror(failed)) : 0;
}

static int cmd_mint(int argc, char **argv)
{
    oe_config cfg;
    int rc = oe_command_parse(&mint_command, &cfg, NULL, argc, argv);
    if (rc >= 0)
        return rc;
    if (!cfg.action)
        return oe_die(2, "mint needs --action");
    if (!cfg.ed25519_key && !(cfg.secret && cfg.secret[0]))
        return oe_die(2, "mint needs --secret or --ed25519-key");
    char err[256];
    oe_json_doc *doc;
    int prc = oe_json_parse(cfg.payload, strlen(cfg.payload), 0, &doc, err, sizeof err);
    if (prc != OE_OK)
        return oe_die(prc == OE_ENOMEM ? 1 : 2, "--payload: %s", err);
    const oe_json *payload = oe_json_root(doc);
    minted m;
    if (payload->type != OE_JSON_OBJECT)
        rc = oe_die(2, "--payload must be a JSON object");
    else if ((rc = mint_artifact(&cfg, payload, &m)) == 0)
        rc = print_artifact(&cfg, payload, &m.a);
    oe_json_doc_free(doc);
    return rc;
}

static const oe_command verify_command = {
    "verify-receipt",
    OE_CMD_VERIFY,
    "Checks signed receipts (README, \"Verifying receipts\"): with --trusted-keys,\n"
    "reads whole receipts as JSON (one per line, or one document) from the file\n"
    "argument or stdin, as `openexec receipts` prints them or /execute answers, and\n"
    "checks each one's proof: its checkpoint signed by a trusted key, its leaf on the\n"
    "inclusion path to the checkpoint's root, the leaf's fields equal to the\n"
    "receipt's, and the receipt hash. Prints `valid` or `invalid: REASON` per\n"
    "receipt; exit 0 when all are valid, 1 otherwise.\n"
    "The seed's form, --id --result --receipt, checks only the hash\n"
    "sha256(id + \":\" + json.dumps(result, sort_keys=True)): anyone can compute it.",
    0,
    0,
};

/* The seed's check: the receipt hash of --id and --result. */
static int verify_seed(const oe_config *cfg)
{
    char err[256];
    oe_json_doc *doc;
    int prc = oe_json_parse(cfg->result, strlen(cfg->result), 0, &doc, err, sizeof err);
    if (prc != OE_OK)
        return oe_die(prc == OE_ENOMEM ? 1 : 2, "--result: %s", err);
    oe_buf text;
    oe_buf_init(&text, 0);
    char hash[65] = "";
    oe_json_dump(&text, oe_json_root(doc), OE_JSON_DEFAULT);
    int failed = oe_buf_failed(&text);
    if (!failed)
        oe_receipt_hash(cfg->id, text.data, text.len, hash);
    oe_buf_free(&text);
    oe_json_doc_free(doc);
    if (failed)
        return oe_die(1, "verify-receipt: cannot serialize the result: %s", oe_strerror(failed));
    int valid = strcmp(hash, cfg->receipt) == 0;
    puts(valid ? "valid" : "invalid");
    return valid ? 0 : 1;
}

/* Largest receipts input verify-receipt reads (a receipt is at most a few
 * MiB; this is a stream of them). */
#define OE_VERIFY_INPUT_MAX ((size_t)1 << 30)

/* Reads all of f (at most max bytes) into out. OE_OK, OE_ELIMIT or
 * OE_EIO/OE_ENOMEM. */
static int read_all(FILE *f, size_t max, oe_buf *out)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > max)
            return OE_ELIMIT;
        int rc = oe_buf_append(out, chunk, n);
        if (rc != OE_OK)
            return rc;
    }
    return ferror(f) ? OE_EIO : OE_OK;
}

/* Checks one receipt's text; prints its verdict. Returns 1 when valid. */
static int verify_one(const char *text, size_t len, const unsigned char (*keys)[32], size_t nkeys,
                      size_t line)
{
    char err[300];
    oe_json_doc *doc;
    int prc = oe_json_parse(text, len, 0, &doc, err, sizeof err);
    char where[32] = "";
    if (line)
        snprintf(where, sizeof where, "line %zu: ", line);
    if (prc != OE_OK) {
        printf("%sinvalid: not JSON: %s\n", where, err);
        return 0;
    }
    oe_rc rc = oe_tlog_verify_json(oe_json_root(doc), keys, nkeys, err, sizeof err);
    oe_json_doc_free(doc);
    if (rc == OE_OK)
        printf("%svalid\n", where);
    else
        printf("%sinvalid: %s\n", where, err);
    return rc == OE_OK;
}

static int cmd_verify_receipt(int argc, char **argv)
{
    /* The one argument that is not an option (or an option's value): the
     * receipts file; "-" or none is stdin. */
    const char *input = NULL;
    char **args = calloc((size_t)argc + 1, sizeof *args);
    int nargs = 0;
    if (!args)
        return oe_die(1, "out of memory");
    for (int i = 0; i < argc; i++) {
        const char *prev = i > 0 ? argv[i - 1] : NULL;
        int is_value = prev && strncmp(prev, "--", 2) == 0 && !strchr(prev, '=') &&
                       strcmp(prev, "--help") != 0;
        if (!is_value && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0) && !input)
            input = argv[i];
        else
            args[nargs++] = argv[i];
    }
    oe_config cfg;
    int rc = oe_command_parse(&verify_command, &cfg, NULL, nargs, args);
    free(args);
    if (rc >= 0)
        return rc;
    if (!cfg.trusted_keys_file) {
        if (!cfg.id || !cfg.result || !cfg.receipt || input)
            return oe_die(2, "verify-receipt needs --trusted-keys FILE [RECEIPTS|-], or the "
                             "seed's --id, --result and --receipt");
        return verify_seed(&cfg);
    }
    if (cfg.id || cfg.result || cfg.receipt)
        return oe_die(2, "verify-receipt: --trusted-keys checks whole receipts; --id, --result "
                         "and --receipt are the seed's form");
    char err[300];
    unsigned char(*keys)[32] = NULL;
    size_t nkeys = 0;
    if ((rc = oe_load_trusted_keys(cfg.trusted_keys_file, "", "--trusted-keys", &keys, &nkeys)) !=
        0)
        return rc;
    FILE *f = !input || strcmp(input, "-") == 0 ? stdin : fopen(input, "rb");
    if (!f) {
        free(keys);
        return oe_die(2, "verify-receipt: cannot read %s", input);
    }
    oe_buf in;
    oe_buf_init(&in, OE_VERIFY_INPUT_MAX);
    rc = read_all(f, OE_VERIFY_INPUT_MAX, &in);
    if (f != stdin)
        fclose(f);
    if (rc != OE_OK) {
        oe_buf_free(&in);
        free(keys);
        return oe_die(1, "verify-receipt: reading %s: %s", input ? input : "stdin",
                      oe_strerror(rc));
    }
    /* One document, or one receipt per line. */
    size_t total = 0, valid = 0;
    const char *text = in.data ? in.data : "";
    oe_json_doc *whole;
    if (oe_json_parse(text, in.len, 0, &whole, err, sizeof err) == OE_OK) {
        oe_json_doc_free(whole);
        total = 1;
        valid = (size_t)verify_one(text, in.len, (const unsigned char(*)[32])keys, nkeys, 0);
    } else {
        size_t line = 0;
        for (const char *p = text, *end = text + in.len; p < end;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
            line++;
            size_t k = 0;
            while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
                k++;
            if (k < n) {
                total++;
                valid += (size_t)verify_one(p, n, (const unsigned char(*)[32])keys, nkeys, line);
            }
            p += n + (nl ? 1 : 0);
        }
    }
    oe_buf_free(&in);
    free(keys);
    if (total == 0)
        return oe_die(2, "verify-receipt: no receipt in %s", input ? input : "stdin");
    return valid == total ? 0 : 1;
}

static const oe_command keygen_command = {
    "keygen",
    OE_CMD_KEYGEN,
    "Makes an Ed25519 key for signing receipt-log checkpoints and writes it to\n"
    "--out (PKCS#8 PEM, mode 0600; an existing file is never overwritten). Prints\n"
    "the public key (PEM), its key_id and its signed-note verifier key (vkey,\n"
    "for Go's golang.org/x/mod/sumdb/note) under the name openexec/<key_id[:16]>.\n"
    "--public-of FILE prints only the public key (PEM) of an existing key, for a\n"
    "trusted keys file.",
    0,
    0,
};

static int cmd_keygen(int argc, char **argv)
{
    oe_config cfg;
    int rc = oe_command_parse(&keygen_command, &cfg, NULL, argc, argv);
    if (rc >= 0)
        return rc;
    if (!cfg.key_out == !cfg.public_of)
        return oe_die(2, "keygen needs --out FILE (a new key) or --public-of FILE (one of them)");
    char err[512];
    oe_signer *signer;
    if (cfg.public_of) {
        if (oe_signer_load_file(cfg.public_of, &signer, err, sizeof err) != OE_OK)
            return oe_die(1, "keygen: %s", err);
        oe_buf pem;
        oe_buf_init(&pem, 0);
        int failed = oe_signer_public_pem(signer, &pem);
        oe_signer_free(signer);
        if (!failed && (fwrite(pem.data, 1, pem.len, stdout) != pem.len || fflush(stdout) != 0))
            failed = OE_EIO;
        oe_buf_free(&pem);
        return failed ? oe_die(1, "keygen: %s", oe_strerror(failed)) : 0;
    }
    if (oe_signer_generate_file(cfg.key_out, &signer, err, sizeof err) != OE_OK)
        return oe_die(1, "keygen: %s", err);
    char id[65], name[32];
    unsigned char pub[32];
    oe_signer_key_id(signer, id);
    oe_signer_public(signer, pub);
    snprintf(name, sizeof name, "openexec/%.16s", id);
    /* Checked once, at the end (the buffer's sticky failure policy). */
    oe_buf out;
    oe_buf_init(&out, 0);
    oe_signer_public_pem(signer, &out);
    oe_buf_printf(&out, "key_id: %s\nvkey: ", id);
    oe_note_vkey(name, pub, &out);
    oe_buf_putc(&out, '\n');
    oe_signer_free(signer);
    int failed = oe_buf_failed(&out);
    if (!failed && (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0))
        failed = OE_EIO;
    oe_buf_free(&out);
    if (failed)
        return oe_die(1, "keygen: wrote %s but cannot print its public key: %s", cfg.key_out,
                      oe_strerror(failed));
    return 0;
}

static const oe_command version_command = {
    "version",
    OE_CMD_VERSION,
    "Prints the version of openexec, then of the libraries it runs with\n"
    "(librdkafka, OpenSSL, SQLite, libpq, libmicrohttpd, avro-c).",
    0,
    0,
};

static int cmd_version(int argc, char **argv)
{
    oe_config cfg;
    int rc = oe_command_parse(&version_command, &cfg, NULL, argc, argv);
    if (rc >= 0)
        return rc;
    /* The first line is the program's; then the libraries', as linked. */
    char ledger[128];
    oe_ledger_library_versions(ledger, sizeof ledger);
    printf("%s (commit %s, %s)\nlibrdkafka %s\n%s\n%slibmicrohttpd %s\navro-c %s (built against)\n",
           OE_VERSION, oe_build_commit, oe_build_date, rd_kafka_version_str(),
           OpenSSL_version(OPENSSL_VERSION), ledger, oe_http_library_version(), oe_build_avro);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: openexec COMMAND [options]\n\n"
               "commands:\n"
               "  run              the service: Kafka worker, ledger, admin HTTP\n"
               "  broker           an embedded Kafka-protocol broker for development and tests\n"
               "  produce          publish JSON-lines requests (Avro by default)\n"
               "  receipts         print receipts as JSON lines\n"
               "  exec             send one request through Kafka and wait for its receipt\n"
               "  status           a worker group's partitions, lag, members and ledger\n"
               "  actions          the actions run would run, with the Lua ones' code hashes\n"
               "  topics           create our topics on a cluster (Admin API)\n"
               "  ledger           show, export or audit a ledger's records; migrate its schema\n"
               "  dlq replay       republish dead letters after a fix\n"
               "  mint             print a signed approval artifact\n"
               "  verify-receipt   check receipts' proofs (or the seed's receipt hash)\n"
               "  keygen           make an Ed25519 key for signing receipt-log checkpoints\n"
               "  version          print the version\n"
               "  completion       print a bash or zsh completion script\n"
               "  docs             print the configuration or metrics reference (Markdown)\n\n"
               "openexec COMMAND --help shows a command's options.\n");
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } commands[] = {
        {"run", cmd_run},
        {"mint", cmd_mint},
        {"broker", oe_cmd_broker},
        {"produce", oe_cmd_produce},
        {"receipts", oe_cmd_receipts},
        {"exec", oe_cmd_exec},
        {"completion", oe_cmd_completion},
        {"status", oe_cmd_status},
        {"actions", oe_cmd_actions},
        {"topics", oe_cmd_topics},
        {"ledger", oe_cmd_ledger},
        {"dlq", oe_cmd_dlq},
        {"verify-receipt", cmd_verify_receipt},
        {"keygen", cmd_keygen},
        {"version", cmd_version},
        {"docs", oe_cmd_docs},
        {"--version", cmd_version},
    };
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *command = argv[1];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(command, commands[i].name) == 0)
            return commands[i].run(argc - 2, argv + 2);
    if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0 ||
        strcmp(command, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    const char *names[sizeof commands / sizeof commands[0]];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        names[i] = commands[i].name;
    const char *hint = oe_did_you_mean(command, names, sizeof names / sizeof names[0]);
    if (hint)
        return oe_die(2, "unknown command: %s; did you mean %s? (see openexec --help)", command,
                      hint);
    return oe_die(2, "unknown command: %s (see openexec --help)", command);
}
