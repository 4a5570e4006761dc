/* The table of settings and the one parser of flags and environment.
 *
 * Each setting is declared once below (like redis's src/config.c): flag,
 * environment variable, the commands that take it, type, bounds or words,
 * default and help. Parsing, checking and --help all come from the table, so
 * a command accepts exactly the options its help lists, and a number is
 * parsed once, as a number. Defaults go through the same checks as user
 * values. Everything here runs on the main thread before any other starts;
 * the table is constant. A configuration file (--config) is read into the
 * environment, below the variables already set there, and then parsed
 * with them: one parser, and the precedence flag > environment > file >
 * default by construction.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/log.h"
#include "engine/status.h"
#include "ledger/ledger.h"

/* Longest variable name a configuration file may set. */
#define OE_CONFIG_NAME_MAX 100

typedef enum setting_type {
    T_TEXT, /* any text (a const char * field) */
    T_NAME, /* non-empty text */
    T_FLAG, /* present or not, takes no value (an int field) */
    T_BOOL, /* 0 or 1 (an int field) */
    T_INT,  /* a whole number in [lo, hi] (a long field) */
    T_WORD, /* one of words[] (an int field: its index) */
    T_HOST, /* a host name or an IP literal (a const char * field) */
    T_PORT, /* 0..65535 (a long field) */
    T_LIST, /* non-empty text, a flag that may be repeated (an oe_config_list field) */
} setting_type;

typedef struct setting {
    const char *flag;
    const char *env;   /* NULL: flag only */
    unsigned commands; /* OE_CMD_* bits of the commands that take it */
    setting_type type;
    size_t offset;            /* of the field in oe_config */
    long lo, hi;              /* T_INT */
    const char *const *words; /* T_WORD, NULL-terminated */
    const char *def;          /* default as text, checked like a user value; NULL: none */
    const char *help;
} setting;

/* offsetof(oe_config, field), refused by the compiler unless the field has
 * the C type that the setting's type stores. */
#define FIELD(field, ctype)                                                                        \
    (offsetof(oe_config, field) + 0 * sizeof(&((oe_config *)0)->field - (ctype *)0))

#define TEXT(flag, env, cmds, field, def, help)                                                    \
    {                                                                                              \
        flag, env, cmds, T_TEXT, FIELD(field, const char *), 0, 0, NULL, def, help                 \
    }
#define NAME(flag, env, cmds, field, def, help)                                                    \
    {                                                                                              \
        flag, env, cmds, T_NAME, FIELD(field, const char *), 0, 0, NULL, def, help                 \
    }
#define HOST(flag, env, cmds, field, def, help)                                                    \
    {                                                                                              \
        flag, env, cmds, T_HOST, FIELD(field, const char *), 0, 0, NULL, def, help                 \
    }
#define FLAG(flag, cmds, field, help)                                                              \
    {                                                                                              \
        flag, NULL, cmds, T_FLAG, FIELD(field, int), 0, 0, NULL, NULL, help                        \
    }
#define BOOL(flag, env, cmds, field, def, help)                                                    \
    {                                                                                              \
        flag, env, cmds, T_BOOL, FIELD(field, int), 0, 1, NULL, def, help                          \
    }
#define INT(flag, env, cmds, field, lo, hi, def, help)                                             \
    {                                                                                              \
        flag, env, cmds, T_INT, FIELD(field, long), lo, hi, NULL, def, help                        \
    }
#define PORT(flag, env, cmds, field, def, help)                                                    \
    {                                                                                              \
        flag, env, cmds, T_PORT, FIELD(field, long), 0, 65535, NULL, def, help                     \
    }
#define LIST(flag, cmds, field, help)                                                              \
    {                                                                                              \
        flag, NULL, cmds, T_LIST, FIELD(field, oe_config_list), 0, 0, NULL, NULL, help             \
    }
#define WORD(flag, env, cmds, field, words, def, help)                                             \
    {                                                                                              \
        flag, env, cmds, T_WORD, FIELD(field, int), 0, 0, words, def, help                         \
    }

/* Word lists, in the order of the OE_* values of config.h. */
static const char *const modes[] = {"demo", "clawshield", NULL};
static const char *const syncs[] = {"full", "normal", NULL};
static const char *const executes[] = {"kafka", "local", NULL};
static const char *const formats[] = {"avro", "json", NULL};
static const char *const payloads[] = {"full", "hash", NULL};
static const char *const signings[] = {"off", "on", "auto", NULL};
static const char *const record_statuses[] = {"any", "executed", "rejected", NULL};
static const char *const outputs[] = {"table", "json", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL}; /* oe_log_level */
static const char *const log_formats[] = {"text", "json", NULL}; /* oe_log_format */

#define RUN OE_CMD_RUN
#define BROKER OE_CMD_BROKER
#define EXEC OE_CMD_EXEC
#define PRODUCE OE_CMD_PRODUCE
#define RECEIPTS OE_CMD_RECEIPTS
#define MINT OE_CMD_MINT
#define VERIFY OE_CMD_VERIFY
#define TOPICS OE_CMD_TOPICS
#define LEDGER                                                                                     \
    (OE_CMD_LEDGER_SHOW | OE_CMD_LEDGER_EXPORT | OE_CMD_LEDGER_MIGRATE | OE_CMD_LEDGER_AUDIT |     \
     OE_CMD_LEDGER_LOGS)
#define REPLAY OE_CMD_DLQ_REPLAY
#define ACTIONS OE_CMD_ACTIONS

/* A flag may appear twice only for disjoint sets of commands, where its
 * meaning or default differs (mint signs with the secret that run checks). */
static const setting settings[] = {
    /* governance */
    WORD("--mode", "OPENEXEC_MODE", RUN, mode, modes, "demo",
         "demo: every request runs, unapproved; clawshield: only with a valid approval artifact"),
    TEXT("--secret", "CLAWSHIELD_SECRET_KEY", RUN, secret, NULL,
         "HMAC-SHA256 shared secret(s) of approval artifacts (up to 8, \",\" between)"),
    TEXT("--secret", "CLAWSHIELD_SECRET_KEY", MINT, secret, NULL,
         "sign with HMAC-SHA256 and this secret (the first of a list)"),
    TEXT("--public-key", "CLAWSHIELD_PUBLIC_KEY", RUN, public_key, NULL,
         "Ed25519 public key(s) of approval artifacts (PEM text, up to 8 blocks)"),
    NAME("--public-key-file", "CLAWSHIELD_PUBLIC_KEY_FILE", RUN, public_key_file, NULL,
         "Ed25519 public key(s) of approval artifacts (a PEM file; instead of --public-key)"),
    TEXT("--tenant", "CLAWSHIELD_TENANT_ID", RUN, tenant, "", "tenant artifacts must name"),
    TEXT("--tenant", "CLAWSHIELD_TENANT_ID", MINT, tenant, "default", "tenant id"),
    TEXT("--allowed-actions", "OPENEXEC_ALLOWED_ACTIONS", RUN, allowed_actions, "",
         "comma-separated allow-list (empty = all)"),
    /* operators' Lua actions */
    NAME("--actions-dir", "OPENEXEC_ACTIONS_DIR", RUN | ACTIONS, actions_dir, NULL,
         "folder of Lua actions: each NAME.lua is action NAME (unset = built-in actions only)"),
    INT("--action-max-steps", "OPENEXEC_ACTION_MAX_STEPS", RUN | ACTIONS, action_max_steps, 1000,
        1000000000000L, "10000000",
        "a Lua action's step budget per call (instructions, and library work by the bytes it "
        "handles)"),
    INT("--action-max-memory", "OPENEXEC_ACTION_MAX_MEMORY", RUN | ACTIONS, action_max_memory,
        65536, 1L << 30, "16777216", "a Lua action's memory budget per call, in bytes"),
    /* Kafka */
    TEXT("--brokers", "OPENEXEC_KAFKA_BROKERS", RUN, brokers, NULL,
         "bootstrap servers (empty = embedded broker)"),
    TEXT("--brokers", "OPENEXEC_KAFKA_BROKERS", PRODUCE | RECEIPTS | TOPICS | REPLAY | EXEC,
         brokers, NULL, "bootstrap servers (required)"),
    NAME("--requests-topic", "OPENEXEC_REQUESTS_TOPIC",
         RUN | BROKER | PRODUCE | TOPICS | REPLAY | EXEC, requests_topic, "openexec.requests",
         "requests topic"),
    NAME("--receipts-topic", "OPENEXEC_RECEIPTS_TOPIC", RUN | BROKER | RECEIPTS | TOPICS | EXEC,
         receipts_topic, "openexec.receipts", "receipts topic"),
    NAME("--dlq-topic", "OPENEXEC_DLQ_TOPIC", RUN | BROKER | TOPICS | REPLAY, dlq_topic,
         "openexec.requests.dlq", "dead-letter topic"),
    NAME("--checkpoints-topic", "OPENEXEC_CHECKPOINTS_TOPIC", RUN | BROKER | TOPICS,
         checkpoints_topic, NULL,
         "signed checkpoints topic (default: the receipts topic + .checkpoints)"),
    NAME("--group-id", "OPENEXEC_GROUP_ID", RUN, group_id, "openexec-workers", "consumer group"),
    TEXT("--group-instance-id", "OPENEXEC_GROUP_INSTANCE_ID", RUN, group_instance_id, NULL,
         "static group membership: a stable name per worker (e.g. the pod name)"),
    /* run */
    WORD("--execute", "OPENEXEC_EXECUTE", RUN, execute, executes, "kafka",
         "kafka: worker + /execute bridge; local: HTTP only, no Kafka"),
    BOOL("--worker", "OPENEXEC_WORKER", RUN, worker, "1",
         "1: consume requests here; 0: HTTP bridge only (workers run elsewhere)"),
    WORD("--receipt-format", "OPENEXEC_RECEIPT_FORMAT", RUN, receipt_format, formats, "avro",
         "receipts as Avro single-object messages, or as JSON"),
    BOOL("--transactions", "OPENEXEC_KAFKA_TRANSACTIONS", RUN, transactions, "0",
         "1 = transactional receipts and offsets"),
    TEXT("--transactional-id", "OPENEXEC_TRANSACTIONAL_ID", RUN, transactional_id, NULL,
         "transactional.id (default: derived from group, host and database)"),
    /* 16 partitions hold a backlog of 80 MiB / 1.6 million requests on the
     * embedded broker, which keeps at most 5 MiB or 100,000 messages each. */
    INT("--partitions", "OPENEXEC_PARTITIONS", RUN, partitions, 1, 1000, "16",
        "embedded broker: partitions of our topics"),
    INT("--partitions", "OPENEXEC_PARTITIONS", BROKER, partitions, 1, 1000, "4",
        "partitions of our topics"),
    INT("--partitions", "OPENEXEC_PARTITIONS", TOPICS, partitions, 1, 10000, "16",
        "partitions of each topic (requests and receipts alike)"),
    PORT("--broker-port", "OPENEXEC_BROKER_PORT", RUN | BROKER, broker_port, "0",
         "embedded broker: also take clients on this fixed loopback port (0 = only the "
         "port the system picks)"),
    INT("--replication-factor", "OPENEXEC_REPLICATION_FACTOR", TOPICS, replication_factor, -1,
        32767, "-1", "replicas of each partition (-1 = the cluster's default.replication.factor)"),
    INT("--batch-max", "OPENEXEC_BATCH_MAX", RUN, batch_max, 1, 100000, "5000",
        "most requests per batch"),
    INT("--bridge-timeout-ms", "OPENEXEC_BRIDGE_TIMEOUT_MS", RUN, bridge_timeout_ms, 1, 3600000,
        "10000", "/execute: wait this long for the receipt"),
    INT("--confluent-schema-id", "OPENEXEC_CONFLUENT_SCHEMA_ID", RUN, confluent_schema_id, -1,
        2147483647L, "-1", "read Confluent-framed Avro with this schema id (-1 = off)"),
    NAME("--db", "OPENEXEC_DB_PATH", RUN | LEDGER, db_path, "openexec.db", "SQLite file"),
    TEXT("--db-url", "OPENEXEC_DB_URL", RUN | LEDGER, db_url, NULL,
         "the ledger as a URL: sqlite:///FILE or postgresql://user:pass@host:port/db"),
    BOOL("--ledger-shared", "OPENEXEC_LEDGER_SHARED", RUN, ledger_shared, "0",
         "1: every worker of the group opens this same SQLite file (one host)"),
    WORD("--db-sync", "OPENEXEC_DB_SYNC", RUN, db_sync, syncs, "full",
         "SQLite: full: a commit survives power loss; normal: survives a crash of the process, "
         "may lose the last commits on power loss"),
    WORD("--ledger-payloads", "OPENEXEC_LEDGER_PAYLOADS", RUN, ledger_payloads, payloads, "full",
         "full: rows keep each request's payload; hash: only its hash (request_hash)"),
    WORD("--signing", "OPENEXEC_SIGNING", RUN, signing, signings, "auto",
         "on: every receipt carries a proof of its entry in the writer's signed log; auto: on "
         "with a signing key file given or a private SQLite ledger (its key made beside it), "
         "off on a shared ledger without one; off: receipts unsigned"),
    NAME("--signing-key-file", "OPENEXEC_SIGNING_KEY_FILE", RUN, signing_key_file, NULL,
         "Ed25519 private key (PKCS#8 PEM, mode 0600) that signs the receipts log (default "
         "with a SQLite ledger: LEDGER.key beside it, made at first start)"),
    NAME("--log-origin", "OPENEXEC_LOG_ORIGIN", RUN, log_origin, NULL,
         "name of the receipts log (default: openexec/ and the first 16 hex digits of the "
         "key id)"),
    HOST("--http-host", "OPENEXEC_HTTP_HOST", RUN, http_host, "127.0.0.1",
         "admin HTTP address or host name"),
    BOOL("--allow-demo-remote", "OPENEXEC_ALLOW_DEMO_REMOTE", RUN, allow_demo_remote, "0",
         "1: demo mode (every request runs, unapproved) may listen on an address other than "
         "loopback"),
    PORT("--http-port", "OPENEXEC_HTTP_PORT", RUN, http_port, "5000", "admin HTTP port, 0 = off"),
    INT("--http-threads", "OPENEXEC_HTTP_THREADS", RUN, http_threads, 1, 256, "4",
        "HTTP thread pool"),
    /* logs and the configuration file */
    WORD("--log-level", "OPENEXEC_LOG_LEVEL", RUN | BROKER, log_level, log_levels, "info",
         "error, warn, info or debug"),
    WORD("--log-format", "OPENEXEC_LOG_FORMAT", RUN | BROKER, log_format, log_formats, "text",
         "text (key=value) or json (one object per line)"),
    NAME("--config", "OPENEXEC_CONFIG",
         RUN | BROKER | PRODUCE | RECEIPTS | MINT | TOPICS | LEDGER | REPLAY | EXEC |
             OE_CMD_STATUS | ACTIONS,
         config_file, NULL,
         "read NAME = value lines (the environment's names) from this file; flags and the "
         "environment win over it"),
    /* broker */
    NAME("--bootstrap-file", NULL, BROKER, bootstrap_file, NULL,
         "also write the address to this file"),
    /* produce */
    WORD("--format", "OPENEXEC_REQUEST_FORMAT", PRODUCE, request_format, formats, "avro",
         "avro, or json: publish each line untouched"),
    /* receipts */
    FLAG("--from-beginning", RECEIPTS, from_beginning,
         "start at the oldest receipt (default: newest)"),
    FLAG("--follow", RECEIPTS, follow,
         "keep waiting for new receipts until SIGINT/SIGTERM (the default without "
         "--from-beginning)"),
    FLAG("--meta", RECEIPTS, meta,
         "add \"kafka\": the receipt's partition, offset, key and time, and the topic, "
         "partition and offset of the request it answers"),
    INT("--max", NULL, RECEIPTS, max_count, 1, 1L << 40, NULL, "stop after this many receipts"),
    INT("--timeout-ms", NULL, RECEIPTS, timeout_ms, 1, 1L << 40, "30000",
        "with --max: give up after this long"),
    /* status */
    TEXT("--brokers", "OPENEXEC_KAFKA_BROKERS", OE_CMD_STATUS, brokers, NULL,
         "bootstrap servers (required)"),
    NAME("--requests-topic", "OPENEXEC_REQUESTS_TOPIC", OE_CMD_STATUS, requests_topic,
         "openexec.requests", "requests topic"),
    NAME("--group-id", "OPENEXEC_GROUP_ID", OE_CMD_STATUS, group_id, "openexec-workers",
         "the workers' consumer group"),
    NAME("--db", "OPENEXEC_DB_PATH", OE_CMD_STATUS, db_path, NULL,
         "also the ledger's state: this SQLite file (read-only)"),
    TEXT("--db-url", "OPENEXEC_DB_URL", OE_CMD_STATUS, db_url, NULL,
         "also the ledger's state: sqlite:///PATH or postgresql://... (read-only)"),
    WORD("--output", NULL, OE_CMD_STATUS | ACTIONS, output_json, outputs, "table", "table or json"),
    /* exec */
    INT("--timeout-ms", NULL, EXEC, timeout_ms, 1, 1L << 40, "30000",
        "give up when no receipt answers within this long"),
    NAME("--trusted-keys", "OPENEXEC_TRUSTED_KEYS_FILE", EXEC, trusted_keys_file, NULL,
         "accept only a receipt whose proof verifies against these Ed25519 public keys (PEM)"),
    /* mint */
    NAME("--action", NULL, MINT, action, NULL, "action to approve (required)"),
    TEXT("--payload", NULL, MINT, payload, "{}", "payload as a JSON object"),
    NAME("--ed25519-key", "CLAWSHIELD_PRIVATE_KEY_FILE", MINT, ed25519_key, NULL,
         "sign with Ed25519: private key PEM file"),
    TEXT("--approval-id", NULL, MINT, approval_id, NULL, "approval id (default: random UUID)"),
    TEXT("--issued-at", NULL, MINT, issued_at, NULL, "ISO 8601 issue time (default: now)"),
    TEXT("--action-code-hash", NULL, MINT, action_code_hash, NULL,
         "approve only this version of a Lua action's code (its file's SHA-256, hex; see "
         "`openexec actions`)"),
    INT("--ttl", NULL, MINT, ttl, 1, 10L * 365 * 86400, "300", "seconds until expires_at"),
    TEXT("--nonce", NULL, MINT, nonce, NULL, "print a whole request with this nonce"),
    /* dlq replay */
    FLAG("--dry-run", REPLAY, dry_run, "list the dead letters that would go; publish nothing"),
    NAME("--replay-group", "OPENEXEC_REPLAY_GROUP", REPLAY, replay_group, "openexec-dlq-replay",
         "consumer group that keeps where the last replay stopped"),
    FLAG("--from-beginning", REPLAY, from_beginning,
         "every dead letter, not only those after the last replay"),
    INT("--timeout-ms", NULL, REPLAY, timeout_ms, 1, 1L << 40, "30000",
        "give up when the end is not reached after this long"),
    /* ledger show */
    TEXT("--nonce", NULL, OE_CMD_LEDGER_SHOW, nonce, NULL,
         "the execution and rejected attempts of this nonce"),
    TEXT("--id", NULL, OE_CMD_LEDGER_SHOW, id, NULL, "the execution with this id"),
    /* ledger show / export filters */
    TEXT("--since", NULL, OE_CMD_LEDGER_SHOW | OE_CMD_LEDGER_EXPORT, since, NULL,
         "only records made at or after this time (ISO 8601, e.g. 2026-12-06T10:00:00Z)"),
    TEXT("--until", NULL, OE_CMD_LEDGER_SHOW | OE_CMD_LEDGER_EXPORT, until, NULL,
         "only records made before this time (ISO 8601)"),
    NAME("--action", NULL, OE_CMD_LEDGER_SHOW | OE_CMD_LEDGER_EXPORT, action, NULL,
         "only records of this action"),
    WORD("--status", NULL, OE_CMD_LEDGER_SHOW | OE_CMD_LEDGER_EXPORT, record_status,
         record_statuses, "any", "any, executed (executions) or rejected (rejected attempts)"),
    /* verify-receipt */
    TEXT("--id", NULL, VERIFY, id, NULL, "execution id"),
    TEXT("--result", NULL, VERIFY, result, NULL, "result as JSON"),
    TEXT("--receipt", NULL, VERIFY, receipt, NULL, "receipt hash (hex)"),
    /* keygen */
    NAME("--out", NULL, OE_CMD_KEYGEN, key_out, NULL,
         "write the new private key here (required; mode 0600, never overwritten)"),
    NAME("--public-of", NULL, OE_CMD_KEYGEN, public_of, NULL,
         "print only the public key (PEM) of this existing private key file"),
    NAME("--trusted-keys", "OPENEXEC_TRUSTED_KEYS_FILE", VERIFY, trusted_keys_file, NULL,
         "check whole receipts (JSON, one per line, from the file argument or stdin) "
         "against the Ed25519 public keys (PEM) in this file"),
    /* ledger audit */
    NAME("--trusted-keys", "OPENEXEC_TRUSTED_KEYS_FILE", OE_CMD_LEDGER_AUDIT, trusted_keys_file,
         NULL,
         "the Ed25519 public keys (PEM) every checkpoint must be signed by (default: each "
         "log's own key, as the ledger lists it)"),
    LIST("--checkpoint", OE_CMD_LEDGER_AUDIT, checkpoint_files,
         "a signed checkpoint published earlier (a file holding the note, e.g. GET "
         "/log/ORIGIN/checkpoint): the ledger's log must still hold it; repeatable"),
    NAME("--trusted-keys-file", "OPENEXEC_TRUSTED_KEYS_FILE", RUN, trusted_keys_file, NULL,
         "public keys (PEM) whose signed receipts this node accepts: /receipts/verify and "
         "the /execute bridge (default: its own signing key's)"),
};

#define NSETTINGS (sizeof settings / sizeof settings[0])
_Static_assert(NSETTINGS <= OE_CONFIG_MAX_SETTINGS, "raise OE_CONFIG_MAX_SETTINGS");

static void *field(oe_config *cfg, const setting *s)
{
    return (char *)cfg + s->offset;
}

/* The index in words of a word equal to value, or -1 (an index, not an
 * oe_rc). */
static int word_index(const char *const *words, const char *value)
{
    for (int i = 0; words[i]; i++)
        if (strcmp(words[i], value) == 0)
            return i;
    return -1;
}

/* The words of a list as text, "a, b or c", into buf (cut to len). */
static void words_text(const char *const *words, char *buf, size_t len)
{
    int n = 0;
    buf[0] = '\0';
    for (int i = 0; words[i] && n >= 0 && (size_t)n < len; i++)
        n += snprintf(buf + n, len - (size_t)n, "%s%s",
                      i == 0         ? ""
                      : words[i + 1] ? ", "
                                     : " or ",
                      words[i]);
}

/* A whole number with nothing around it, in [lo, hi]. Leading zeros are
 * just zeros: "00" is 0, as a number should be. */
static int parse_long(const char *text, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || isspace((unsigned char)text[0]) || v < lo || v > hi)
        return OE_EINVAL;
    *out = v;
    return OE_OK;
}

/* A host name (RFC 1123: labels of letters, digits and '-', not starting or
 * ending with '-', at most 63 bytes each and 253 in all, the last one not
 * all digits) or an IPv4 or IPv6 literal. Only the syntax: the admin HTTP
 * server resolves and binds it. */
int oe_config_check_host(const char *host)
{
    unsigned char addr[16];
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1)
        return OE_OK;
    size_t n = strlen(host);
    if (n == 0 || n > 253)
        return OE_EINVAL;
    const char *label = host;
    for (;;) {
        size_t len = strcspn(label, ".");
        if (len == 0 || len > 63 || label[0] == '-' || label[len - 1] == '-')
            return OE_EINVAL;
        int digits = 1;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)label[i];
            if (!isalnum(c) && c != '-')
                return OE_EINVAL;
            if (!isdigit(c))
                digits = 0;
        }
        if (!label[len])
            return digits ? OE_EINVAL : OE_OK; /* "1.2.3.400" is no name and no address */
        label += len + 1;
    }
}

/* Stores value into the setting's field, or says why it cannot, naming
 * the value as the user gave it (source: "--http-port 70000" or
 * "OPENEXEC_HTTP_PORT=70000"). */
static int set_value(oe_config *cfg, const setting *s, const char *value, const char *source,
                     char *err, size_t errlen)
{
    long number;
    int index;
    switch (s->type) {
    case T_TEXT:
        *(const char **)field(cfg, s) = value;
        return 0;
    case T_NAME:
        if (!value[0]) {
            snprintf(err, errlen, "%s: must not be empty", source);
            return OE_EINVAL;
        }
        *(const char **)field(cfg, s) = value;
        return 0;
    case T_LIST: {
        oe_config_list *list = field(cfg, s);
        if (!value[0]) {
            snprintf(err, errlen, "%s: must not be empty", source);
            return OE_EINVAL;
        }
        if (list->n == OE_CONFIG_LIST_MAX) {
            snprintf(err, errlen, "%s: given more than %d times", s->flag, OE_CONFIG_LIST_MAX);
            return OE_ELIMIT;
        }
        list->items[list->n++] = value;
        return 0;
    }
    case T_HOST:
        if (oe_config_check_host(value) != 0) {
            snprintf(err, errlen, "%s: not a host name or an IP address", source);
            return OE_EINVAL;
        }
        *(const char **)field(cfg, s) = value;
        return 0;
    case T_FLAG:
        *(int *)field(cfg, s) = 1;
        return 0;
    case T_BOOL:
        if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0) {
            snprintf(err, errlen, "%s: must be 0 or 1", source);
            return OE_EINVAL;
        }
        *(int *)field(cfg, s) = value[0] == '1';
        return 0;
    case T_INT:
        if (parse_long(value, s->lo, s->hi, &number) != 0) {
            snprintf(err, errlen, "%s: not a whole number from %ld to %ld", source, s->lo, s->hi);
            return OE_EINVAL;
        }
        *(long *)field(cfg, s) = number;
        return 0;
    case T_PORT:
        if (parse_long(value, 0, 65535, &number) != 0) {
            snprintf(err, errlen, "%s: not a port (0-65535)", source);
            return OE_EINVAL;
        }
        *(long *)field(cfg, s) = number;
        return 0;
    case T_WORD:
        index = word_index(s->words, value);
        if (index < 0) {
            int len = snprintf(err, errlen, "%s: must be ", source);
            if (len >= 0 && (size_t)len < errlen)
                words_text(s->words, err + len, errlen - (size_t)len);
            return OE_EINVAL;
        }
        *(int *)field(cfg, s) = index;
        return 0;
    }
    return OE_EINVAL;
}

/* The setting of command whose flag is the first namelen bytes of name. */
static const setting *find(const oe_command *command, const char *name, size_t namelen)
{
    for (size_t k = 0; k < NSETTINGS; k++)
        if ((settings[k].commands & command->bit) && strlen(settings[k].flag) == namelen &&
            strncmp(settings[k].flag, name, namelen) == 0)
            return &settings[k];
    return NULL;
}

/* Edit distance (optimal string alignment) of a[0..la) and b[0..lb), or
 * more than max when it is more than max. */
static size_t edits(const char *a, size_t la, const char *b, size_t lb, size_t max)
{
    enum { LONGEST = 64 };
    if (la > LONGEST || lb > LONGEST)
        return max + 1;
    size_t d[LONGEST + 1][LONGEST + 1];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

const char *oe_did_you_mean(const char *word, const char *const *candidates, size_t n)
{
    size_t lw = strlen(word), max = lw / 4 ? lw / 4 : 1, best = max + 1;
    const char *pick = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t e = edits(word, lw, candidates[i], strlen(candidates[i]), max);
        if (e < best) {
            best = e;
            pick = candidates[i];
        }
    }
    return pick;
}

/* "unknown option: NAME", with the option of command it is a typo of. */
static void unknown_option(const oe_command *command, const char *arg, size_t namelen, char *err,
                           size_t errlen)
{
    const char *flags[NSETTINGS];
    size_t n = 0;
    for (size_t k = 0; k < NSETTINGS; k++)
        if (settings[k].commands & command->bit)
            flags[n++] = settings[k].flag;
    char name[201];
    snprintf(name, sizeof name, "%.*s", (int)(namelen > 200 ? 200 : namelen), arg);
    const char *hint = oe_did_you_mean(name, flags, n);
    if (hint)
        snprintf(err, errlen, "unknown option: %s; did you mean %s?", name, hint);
    else
        snprintf(err, errlen, "unknown option: %s", name);
}

/* One pass over argv: sets the flags given. */
static int parse_flags(oe_config *cfg, const oe_command *command, int argc, char **argv, char *err,
                       size_t errlen)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-') {
            snprintf(err, errlen, "unexpected argument: %.200s", arg);
            return OE_EINVAL;
        }
        const char *eq = strchr(arg, '=');
        size_t namelen = eq ? (size_t)(eq - arg) : strlen(arg);
        const setting *s = find(command, arg, namelen);
        if (!s || strncmp(arg, "--", 2) != 0) {
            unknown_option(command, arg, namelen, err, errlen);
            return OE_EINVAL;
        }
        const char *value;
        if (s->type == T_FLAG) {
            if (eq) {
                snprintf(err, errlen, "option %s takes no value", s->flag);
                return OE_EINVAL;
            }
            value = "1";
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(err, errlen, "option %s needs a value", s->flag);
            return OE_EINVAL;
        }
        char source[160];
        snprintf(source, sizeof source, "%s %.100s%s", s->flag, value[0] ? value : "''",
                 strlen(value) > 100 ? "..." : "");
        int rc = set_value(cfg, s, value, source, err, errlen);
        if (rc != OE_OK)
            return rc;
        cfg->origin[s - settings] = OE_FROM_FLAG;
    }
    return 0;
}

/* The names the configuration file gives, with their lines; applied: the
 * file's value is the one in the environment (the environment did not have
 * the variable already). For error messages, oe_config_origin and the
 * groups of alternatives below. */
#define FILE_VARS_MAX 256
static struct {
    char name[OE_CONFIG_NAME_MAX + 1];
    int line;
    int applied;
} file_vars[FILE_VARS_MAX];
static int nfile_vars;
static char file_path[256];

/* The line of the configuration file that gives name, or 0; with
 * applied_only, only when the file's value is the one used. */
static int file_line(const char *name, int applied_only)
{
    for (int i = 0; i < nfile_vars; i++)
        if (strcmp(file_vars[i].name, name) == 0)
            return applied_only && !file_vars[i].applied ? 0 : file_vars[i].line;
    return 0;
}

int oe_config_file_line(const char *name, const char **path)
{
    *path = file_path;
    return file_line(name, 1);
}

/* 1 when name is a variable some command reads: a setting's, or a Kafka
 * property's (OPENEXEC_KAFKA_<PROP>). */
static int known_name(const char *name)
{
    static const char kafka[] = "OPENEXEC_KAFKA_";
    if (strncmp(name, kafka, sizeof kafka - 1) == 0 && name[sizeof kafka - 1])
        return 1;
    for (size_t k = 0; k < NSETTINGS; k++)
        if (settings[k].env && strcmp(settings[k].env, name) == 0)
            return 1;
    return 0;
}

/* 1 when a name may be repeated in an error: it has the shape of our
 * variables (OPENEXEC_ or CLAWSHIELD_, then capitals, digits and '_'; a
 * Kafka property's part of OPENEXEC_KAFKA_<PROP> in small letters too, as
 * the environment takes it). Anything else may be a value on a line that
 * lost its '=' or its name ("CLAWSHIELD_SECRET_KEY: c2VjcmV0=="), and is
 * not repeated. */
static int name_shaped(const char *name)
{
    if (strncmp(name, "OPENEXEC_", 9) != 0 && strncmp(name, "CLAWSHIELD_", 11) != 0)
        return 0;
    int lower = strncmp(name, "OPENEXEC_KAFKA_", 15) == 0;
    for (const char *c = name; *c; c++)
        if (!isupper((unsigned char)*c) && !isdigit((unsigned char)*c) && *c != '_' &&
            !(lower && islower((unsigned char)*c)))
            return 0;
    return strlen(name) <= OE_CONFIG_NAME_MAX;
}

/* 1 when the line NAME = value puts a secret in the file: a secret's name
 * (oe_config_secret_name; a *_FILE names a file, not its text), or a
 * ledger URL with a password (one that masking changes). */
static int holds_secret(const char *name, const char *value)
{
    if (!value[0])
        return 0;
    if (strcmp(name, "OPENEXEC_DB_URL") == 0) {
        char masked[2048];
        oe_ledger_mask_url(value, masked, sizeof masked);
        return strcmp(masked, value) != 0;
    }
    size_t n = strlen(name);
    return oe_config_secret_name(name) && !(n > 5 && strcmp(name + n - 5, "_FILE") == 0);
}

static char *trim(char *a, char *b)
{
    while (a < b && isspace((unsigned char)*a))
        a++;
    while (b > a && isspace((unsigned char)b[-1]))
        b--;
    *b = '\0';
    return a;
}

/* One "NAME = value" line (text is the line without its newline). Errors
 * name the file, the line and at most the setting, never the value: the
 * line may hold a secret. *secret_line is set to the line when it holds a
 * secret (and was 0). */
static int file_line_parse(char *text, int lineno, int *secret_line, char *err, size_t errlen)
{
    char *end = text + strlen(text);
    char *t = trim(text, end);
    if (!*t || *t == '#')
        return 0;
    char *eq = strchr(t, '=');
    if (!eq) {
        snprintf(err, errlen, "%s:%d: not NAME = value", file_path, lineno);
        return OE_EINVAL;
    }
    char *name = trim(t, eq);
    char *value = trim(eq + 1, eq + 1 + strlen(eq + 1));
    size_t vlen = strlen(value);
    if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0]) {
        value[vlen - 1] = '\0';
        value++;
    }
    if (strcmp(name, "OPENEXEC_CONFIG") == 0) {
        snprintf(err, errlen, "%s:%d: unknown setting OPENEXEC_CONFIG (a file names no other file)",
                 file_path, lineno);
        return OE_EINVAL;
    }
    if (!name_shaped(name) || !known_name(name)) {
        if (name_shaped(name))
            snprintf(err, errlen, "%s:%d: unknown setting %s", file_path, lineno, name);
        else
            snprintf(err, errlen,
                     "%s:%d: unknown setting (not a variable's name; the text is not repeated "
                     "here, it may hold a value)",
                     file_path, lineno);
        return OE_EINVAL;
    }
    for (int i = 0; i < nfile_vars; i++)
        if (strcmp(file_vars[i].name, name) == 0) {
            snprintf(err, errlen, "%s:%d: %s is set twice (first on line %d)", file_path, lineno,
                     name, file_vars[i].line);
            return OE_EINVAL;
        }
    if (nfile_vars == FILE_VARS_MAX) {
        snprintf(err, errlen, "%s:%d: more than %d settings", file_path, lineno, FILE_VARS_MAX);
        return OE_ELIMIT;
    }
    if (!*secret_line && holds_secret(name, value))
        *secret_line = lineno;
    int applied = !getenv(name); /* the environment wins; the file's value is not used */
    if (applied && setenv(name, value, 0) != 0) {
        int e = errno; /* ENOMEM (the name, one of ours, is valid) */
        snprintf(err, errlen, "%s:%d: cannot set %s: %s", file_path, lineno, name, strerror(e));
        return e == ENOMEM ? OE_ENOMEM : OE_EINVAL;
    }
    snprintf(file_vars[nfile_vars].name, sizeof file_vars[0].name, "%s", name);
    file_vars[nfile_vars].line = lineno;
    file_vars[nfile_vars++].applied = applied;
    return 0;
}

/* The lines of text[0..n): each checked (length, no NUL byte) and parsed. */
static int file_lines_parse(char *text, size_t n, int *secret_line, char *err, size_t errlen)
{
    char line[OE_CONFIG_LINE_MAX + 1];
    int lineno = 1, rc = 0;
    for (size_t at = 0; at < n && rc == 0; lineno++) {
        const char *nl = memchr(text + at, '\n', n - at);
        size_t len = nl ? (size_t)(nl - (text + at)) : n - at;
        if (len > OE_CONFIG_LINE_MAX) {
            snprintf(err, errlen, "%s:%d: line longer than %d bytes", file_path, lineno,
                     OE_CONFIG_LINE_MAX);
            rc = OE_ELIMIT;
        } else if (memchr(text + at, '\0', len)) {
            snprintf(err, errlen, "%s:%d: a NUL byte (not a text file)", file_path, lineno);
            rc = OE_EINVAL;
        } else {
            memcpy(line, text + at, len);
            line[len] = '\0';
            rc = file_line_parse(line, lineno, secret_line, err, errlen);
        }
        at += len + (nl != NULL);
    }
    OPENSSL_cleanse(line, sizeof line); /* the last line may have held a secret */
    return rc;
}

/* Reads the configuration file into the environment (see oe_config_parse).
 * A file that holds a secret must not be readable by its group or others
 * (as ssh treats private keys). */
static int load_file(const char *path, char *err, size_t errlen)
{
    snprintf(file_path, sizeof file_path, "%s", path);
    nfile_vars = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "--config %.200s: cannot read it: %s", path, strerror(errno));
        return OE_EIO;
    }
    struct stat st;
    char *text = malloc(OE_CONFIG_FILE_MAX + 1);
    size_t n = text ? fread(text, 1, OE_CONFIG_FILE_MAX + 1, f) : 0;
    int rc, secret_line = 0;
    if (!text) {
        snprintf(err, errlen, "--config %.200s: out of memory", path);
        rc = OE_ENOMEM;
    } else if (ferror(f) || fstat(fileno(f), &st) != 0) {
        snprintf(err, errlen, "--config %.200s: cannot read it: %s", path, strerror(errno));
        rc = OE_EIO;
    } else if (n > OE_CONFIG_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %zu bytes", file_path, OE_CONFIG_FILE_MAX);
        rc = OE_ELIMIT;
    } else {
        rc = file_lines_parse(text, n, &secret_line, err, errlen);
    }
    if (rc == OE_OK && secret_line && (st.st_mode & (S_IRGRP | S_IROTH))) {
        snprintf(err, errlen,
                 "%s:%d: holds a secret and the file is readable by others (mode %04o); "
                 "chmod 600 %s",
                 file_path, secret_line, (unsigned)(st.st_mode & 07777), file_path);
        rc = OE_EINVAL;
    }
    if (text) /* it may hold secrets (a plain memset before free may be left out) */
        OPENSSL_cleanse(text, n < OE_CONFIG_FILE_MAX + 1 ? n : OE_CONFIG_FILE_MAX + 1);
    free(text);
    fclose(f);
    return rc;
}

/* Settings that are alternatives to each other: giving two of a group,
 * from any sources (flag, environment, file; the same one or two), is an
 * error naming both, where otherwise one would silently win. The same
 * setting at two levels is ordinary precedence. By environment name. */
static const struct group {
    const char *what;
    const char *names[3];
} groups[] = {
    {"a ledger location", {"OPENEXEC_DB_PATH", "OPENEXEC_DB_URL", NULL}},
    {"an Ed25519 public key", {"CLAWSHIELD_PUBLIC_KEY", "CLAWSHIELD_PUBLIC_KEY_FILE", NULL}},
    {"a signing key (mint)", {"CLAWSHIELD_SECRET_KEY", "CLAWSHIELD_PRIVATE_KEY_FILE", NULL}},
};

/* Where the setting s of the table (index k) is given, the strongest
 * source first, into buf; 0 when it is given nowhere. */
static int given_at(const oe_config *cfg, size_t k, char *buf, size_t len)
{
    const setting *s = &settings[k];
    int line = file_line(s->env, 0);
    if (cfg->origin[k] == OE_FROM_FLAG)
        snprintf(buf, len, "%s (flag)", s->flag);
    else if (getenv(s->env) && !file_line(s->env, 1))
        snprintf(buf, len, "%s (environment)", s->env);
    else if (line)
        snprintf(buf, len, "%s (config file %.200s line %d)", s->env, file_path, line);
    else
        return 0;
    return 1;
}

static int check_groups(const oe_config *cfg, const oe_command *command, char *err, size_t errlen)
{
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        char first[300], second[300];
        int count = 0;
        for (size_t k = 0; k < NSETTINGS; k++) {
            const setting *s = &settings[k];
            int member = 0;
            for (size_t i = 0; s->env && groups[g].names[i]; i++)
                member |= strcmp(s->env, groups[g].names[i]) == 0;
            if (!member || !(s->commands & command->bit) ||
                !given_at(cfg, k, count ? second : first, sizeof first))
                continue;
            if (++count == 2) {
                snprintf(err, errlen, "%s and %s are both given, each %s; give one", first, second,
                         groups[g].what);
                return OE_EINVAL;
            }
        }
    }
    return 0;
}

int oe_config_parse(oe_config *cfg, const oe_command *command, int argc, char **argv, char *err,
                    size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->log_level = OE_LOG_INFO; /* of the commands without --log-level */
    int rc = parse_flags(cfg, command, argc, argv, err, errlen);
    if (rc != OE_OK)
        return rc;
    if (find(command, "--config", 8)) {
        const char *path = cfg->config_file ? cfg->config_file : getenv("OPENEXEC_CONFIG");
        if (path && path[0] && (rc = load_file(path, err, errlen)) != OE_OK)
            return rc;
    }
    if ((rc = check_groups(cfg, command, err, errlen)) != OE_OK)
        return rc;
    for (size_t k = 0; k < NSETTINGS; k++) {
        const setting *s = &settings[k];
        if (!(s->commands & command->bit) || cfg->origin[k] == OE_FROM_FLAG)
            continue;
        const char *env = s->env ? getenv(s->env) : NULL;
        char source[400];
        int line = env ? file_line(s->env, 1) : 0;
        if (env && line) { /* the value is not repeated: the line may hold a secret */
            snprintf(source, sizeof source, "%.200s:%d: %s", file_path, line, s->env);
            cfg->origin[k] = OE_FROM_FILE;
        } else if (env) {
            snprintf(source, sizeof source, "%s=%.100s%s", s->env, env,
                     strlen(env) > 100 ? "..." : "");
            cfg->origin[k] = OE_FROM_ENV;
        } else if (s->def) {
            snprintf(source, sizeof source, "default %s %s", s->flag, s->def);
        } else {
            continue;
        }
        if ((rc = set_value(cfg, s, env ? env : s->def, source, err, errlen)) != OE_OK)
            return rc;
    }
    if (find(command, "--checkpoints-topic", 19) && !cfg->checkpoints_topic) {
        int n = snprintf(cfg->checkpoints_default, sizeof cfg->checkpoints_default,
                         "%s.checkpoints", cfg->receipts_topic);
        if (n < 0 || (size_t)n >= sizeof cfg->checkpoints_default) {
            snprintf(err, errlen,
                     "the receipts topic's name is too long to name the checkpoints topic after "
                     "it (at most %d bytes in all); give --checkpoints-topic",
                     OE_CONFIG_TOPIC_MAX);
            return OE_ELIMIT;
        }
        cfg->checkpoints_topic = cfg->checkpoints_default;
    }
    return OE_OK;
}

oe_origin oe_config_origin(const oe_config *cfg, const oe_command *command, const char *flag)
{
    const setting *s = find(command, flag, strlen(flag));
    return s ? (oe_origin)cfg->origin[s - settings] : OE_FROM_DEFAULT;
}

void oe_config_usage(const oe_command *command)
{
    printf("usage: openexec %s [options]\n\n%s\n\noptions:\n", command->name, command->summary);
    for (size_t k = 0; k < NSETTINGS; k++) {
        const setting *s = &settings[k];
        if (!(s->commands & command->bit))
            continue;
        char name[40];
        snprintf(name, sizeof name, "%s%s", s->flag,
                 s->type == T_FLAG                       ? ""
                 : s->type == T_INT || s->type == T_PORT ? " N"
                                                         : " V");
        printf("  %-24s %s", name, s->help);
        if (s->def && s->def[0])
            printf(" [%s]", s->def);
        if (s->env)
            printf(" (env %s)", s->env);
        putchar('\n');
    }
    if (command->kafka_props)
        printf("  %-24s any librdkafka property (env OPENEXEC_KAFKA_<PROP>)\n", "-X prop=value");
    printf("  %-24s this text\n", "--help");
}

/* What a value of s may be, in words, into buf. */
static void takes_text(const setting *s, char *buf, size_t len)
{
    switch (s->type) {
    case T_TEXT:
        snprintf(buf, len, "text");
        return;
    case T_NAME:
        snprintf(buf, len, "text, not empty");
        return;
    case T_FLAG:
        snprintf(buf, len, "no value: given or not");
        return;
    case T_BOOL:
        snprintf(buf, len, "0 or 1");
        return;
    case T_INT:
        snprintf(buf, len, "a whole number from %ld to %ld", s->lo, s->hi);
        return;
    case T_WORD:
        words_text(s->words, buf, len);
        return;
    case T_HOST:
        snprintf(buf, len, "a host name or an IP address");
        return;
    case T_PORT:
        snprintf(buf, len, "a port, 0 to 65535");
        return;
    case T_LIST:
        snprintf(buf, len, "text, not empty; repeatable (at most %d)", OE_CONFIG_LIST_MAX);
        return;
    }
    buf[0] = '\0';
}

void oe_config_each_setting(unsigned bits, void (*fn)(void *ctx, const oe_setting_info *setting),
                            void *ctx)
{
    static const char *const bools[] = {"0", "1", NULL};
    /* The file is read by the commands that take --config, and names no
     * other file (file_line_parse). */
    unsigned file_commands = 0;
    for (size_t k = 0; k < NSETTINGS; k++)
        if (settings[k].offset == offsetof(oe_config, config_file))
            file_commands |= settings[k].commands;
    for (size_t k = 0; k < NSETTINGS; k++) {
        const setting *s = &settings[k];
        if (!(s->commands & bits))
            continue;
        char takes[160];
        takes_text(s, takes, sizeof takes);
        oe_setting_info info = {
            .flag = s->flag,
            .env = s->env,
            .in_file = s->env && (s->commands & file_commands) &&
                       s->offset != offsetof(oe_config, config_file),
            .commands = s->commands,
            .values = s->type == T_WORD   ? s->words
                      : s->type == T_BOOL ? bools
                                          : NULL,
            .takes = takes,
            .def = s->def,
            .help = s->help,
        };
        fn(ctx, &info);
    }
}

int oe_config_secret_name(const char *name)
{
    static const char *const secret_parts[] = {"SECRET",  "PASSWORD",           "PRIVATE",
                                               "KEY_PEM", "OAUTHBEARER_CONFIG", "JAAS"};
    char upper[OE_CONFIG_NAME_MAX + 1];
    size_t n = 0;
    for (; name[n] && n < OE_CONFIG_NAME_MAX; n++)
        upper[n] = name[n] == '.' ? '_' : (char)toupper((unsigned char)name[n]);
    upper[n] = '\0';
    for (size_t i = 0; i < sizeof secret_parts / sizeof secret_parts[0]; i++)
        if (strstr(upper, secret_parts[i]))
            return 1;
    return 0;
}

/* The effective value of a setting as text (buf holds numbers). */
static const char *value_text(const oe_config *cfg, const setting *s, char *buf, size_t len)
{
    const void *f = (const char *)cfg + s->offset;
    switch (s->type) {
    case T_TEXT:
    case T_NAME:
    case T_HOST:
        return *(const char *const *)f;
    case T_FLAG:
    case T_BOOL:
        return *(const int *)f ? "1" : "0";
    case T_INT:
    case T_PORT:
        snprintf(buf, len, "%ld", *(const long *)f);
        return buf;
    case T_WORD:
        return s->words[*(const int *)f];
    case T_LIST: /* how many values were given */
        if (((const oe_config_list *)f)->n == 0)
            return NULL;
        snprintf(buf, len, "%d values", ((const oe_config_list *)f)->n);
        return buf;
    }
    return NULL;
}

void oe_config_log(const oe_config *cfg, const oe_command *command, const char *const *extra)
{
    static const char *const origins[] = {"default", "file", "env", "flag"};
    const char *fields[4 * NSETTINGS + 2 * OE_CONFIG_EXTRA_MAX + 1];
    char numbers[NSETTINGS][24];
    char masked_url[512];
    char sources[NSETTINGS][48];
    size_t nf = 0;
    for (size_t k = 0; k < NSETTINGS; k++) {
        const setting *s = &settings[k];
        if (!(s->commands & command->bit))
            continue;
        const char *name = s->env ? s->env : s->flag;
        const char *v = value_text(cfg, s, numbers[k], sizeof numbers[k]);
        if (!v)
            continue; /* not set, no default */
        if (oe_config_secret_name(name))
            v = v[0] ? "***" : "";
        else if (s->offset == offsetof(oe_config, db_url)) {
            oe_ledger_mask_url(v, masked_url, sizeof masked_url);
            v = masked_url;
        } else if (s->offset == offsetof(oe_config, public_key) && v[0]) {
            v = "(PEM)";
        }
        fields[nf++] = name;
        fields[nf++] = v;
        if (cfg->origin[k] != OE_FROM_DEFAULT) {
            snprintf(sources[k], sizeof sources[k], "%s.from", name);
            fields[nf++] = sources[k];
            fields[nf++] = origins[cfg->origin[k]];
        }
    }
    for (size_t i = 0; extra && extra[i] && extra[i + 1] && i < 2 * OE_CONFIG_EXTRA_MAX; i += 2) {
        fields[nf++] = extra[i];
        fields[nf++] = extra[i + 1];
    }
    fields[nf] = NULL;
    oe_log(OE_LOG_INFO, "config", fields, "effective configuration of %s", command->name);
}
