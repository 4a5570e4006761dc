/* The one configuration struct and the one table of settings.
 *
 * Every setting of every command is declared once in the table of config.c:
 * its flag, its environment variable, its type (text, on/off, whole number
 * with bounds, one of a list of words, host, port), its default and a line of
 * help. oe_config_parse fills the typed fields of oe_config from the flags,
 * then the environment, then the defaults, checking every value as it goes;
 * the rest of the program reads typed fields and never parses text again.
 * The struct is filled once on the main thread at start-up and read-only
 * afterwards; its strings point into argv, the environment or the table and
 * are never freed.
 */
#ifndef OE_CONFIG_H
#define OE_CONFIG_H

#include <stddef.h>

/* Values of the word-list settings: the index of the word in its list. */
enum { OE_MODE_DEMO, OE_MODE_CLAWSHIELD };
enum { OE_SYNC_FULL, OE_SYNC_NORMAL };
enum { OE_EXECUTE_KAFKA, OE_EXECUTE_LOCAL };
enum { OE_FORMAT_AVRO, OE_FORMAT_JSON };     /* receipt and request formats */
enum { OE_PAYLOADS_FULL, OE_PAYLOADS_HASH }; /* what ledger rows keep of a payload */

/* The commands, as bits: a setting names the commands that take it. */
enum {
    OE_CMD_RUN = 1 << 0,
    OE_CMD_BROKER = 1 << 1,
    OE_CMD_PRODUCE = 1 << 2,
    OE_CMD_RECEIPTS = 1 << 3,
    OE_CMD_MINT = 1 << 4,
    OE_CMD_VERIFY = 1 << 5,
    OE_CMD_VERSION = 1 << 6,
    OE_CMD_TOPICS = 1 << 7,
    OE_CMD_LEDGER_SHOW = 1 << 8,
    OE_CMD_LEDGER_EXPORT = 1 << 9,
    OE_CMD_DLQ_REPLAY = 1 << 10,
    OE_CMD_LEDGER_MIGRATE = 1 << 11,
    OE_CMD_KEYGEN = 1 << 12,
    OE_CMD_LEDGER_AUDIT = 1 << 13,
    OE_CMD_LEDGER_LOGS = 1 << 14,
    OE_CMD_EXEC = 1 << 15,
    OE_CMD_COMPLETION = 1 << 16,
    OE_CMD_STATUS = 1 << 17,
    OE_CMD_DOCS_CONFIG = 1 << 18,
    OE_CMD_DOCS_METRICS = 1 << 19,
    OE_CMD_ACTIONS = 1 << 20,
};

/* Where a setting's value came from; error messages name that source. */
typedef enum oe_origin { OE_FROM_DEFAULT, OE_FROM_FILE, OE_FROM_ENV, OE_FROM_FLAG } oe_origin;

/* Most settings the table may hold (the size of oe_config.origin). */
#define OE_CONFIG_MAX_SETTINGS 100
/* Kafka's longest topic name. */
#define OE_CONFIG_TOPIC_MAX 249

enum { OE_SIGNING_OFF, OE_SIGNING_ON, OE_SIGNING_AUTO }; /* OPENEXEC_SIGNING */

/* Most values of a flag that may be given more than once. */
#define OE_CONFIG_LIST_MAX 64

/* The values of a repeatable flag, in the order given. */
/* ledger show / export --status: which records. */
enum { OE_RECORDS_ANY, OE_RECORDS_EXECUTED, OE_RECORDS_REJECTED };

typedef struct oe_config_list {
    const char *items[OE_CONFIG_LIST_MAX];
    int n;
} oe_config_list;

typedef struct oe_config {
    /* governance */
    int mode;                    /* OE_MODE_* */
    const char *secret;          /* CLAWSHIELD_SECRET_KEY */
    const char *public_key;      /* CLAWSHIELD_PUBLIC_KEY (PEM text) */
    const char *public_key_file; /* CLAWSHIELD_PUBLIC_KEY_FILE (a PEM file) */
    const char *tenant;          /* CLAWSHIELD_TENANT_ID */
    const char *allowed_actions; /* OPENEXEC_ALLOWED_ACTIONS */
    /* operators' Lua actions */
    const char *actions_dir; /* OPENEXEC_ACTIONS_DIR; NULL: none */
    long action_max_steps;   /* OPENEXEC_ACTION_MAX_STEPS */
    long action_max_memory;  /* OPENEXEC_ACTION_MAX_MEMORY, bytes */
    /* storage */
    const char *db_path; /* OPENEXEC_DB_PATH (or a sqlite:/// OPENEXEC_DB_URL) */
    const char *db_url;  /* OPENEXEC_DB_URL; NULL: the SQLite file db_path */
    int db_sync;         /* OE_SYNC_* */
    int ledger_shared;   /* OPENEXEC_LEDGER_SHARED: the SQLite file is the group's */
    int ledger_payloads; /* OE_PAYLOADS_*: OPENEXEC_LEDGER_PAYLOADS */
    /* signed receipts (docs/protocol.md §8) */
    int signing;                  /* OPENEXEC_SIGNING: OE_SIGNING_* */
    const char *signing_key_file; /* OPENEXEC_SIGNING_KEY_FILE; NULL: LEDGER.key (SQLite) */
    const char *log_origin;       /* OPENEXEC_LOG_ORIGIN; NULL: openexec/<key id prefix> */
    /* admin HTTP */
    const char *http_host;
    int allow_demo_remote; /* 1: demo mode may listen beyond loopback */
    /* ledger show / export filters */
    const char *since, *until; /* ISO 8601 times; NULL: no bound */
    int record_status;         /* OE_RECORDS_* */
    int output_json;           /* status, actions --output: 0 table, 1 json */
    long http_port;            /* 0: no admin HTTP */
    long http_threads;
    int execute; /* OE_EXECUTE_* */
    int worker;  /* 1: consume requests here; 0: bridge only */
    /* Kafka */
    const char *brokers; /* NULL: none given (run: embedded broker) */
    const char *requests_topic;
    const char *receipts_topic;
    const char *dlq_topic;
    const char *checkpoints_topic; /* oe_config_parse: the receipts topic + ".checkpoints" by
                                      default */
    const char *group_id;
    int receipt_format; /* OE_FORMAT_* */
    int transactions;
    const char *transactional_id;
    const char *group_instance_id; /* static membership; NULL: none */
    long partitions;               /* embedded broker; topics */
    long broker_port;              /* embedded broker: a fixed port; 0: none */
    long replication_factor;       /* topics: -1 = the cluster's default */
    long batch_max;
    long bridge_timeout_ms;
    long confluent_schema_id;   /* -1: off */
    const char *bootstrap_file; /* broker */
    int request_format;         /* produce: OE_FORMAT_* */
    int from_beginning;         /* receipts */
    int follow;                 /* receipts */
    int meta;                   /* receipts: add where each receipt is and what it answers */
    long max_count;             /* receipts: stop after this many; 0: no limit */
    long timeout_ms;            /* receipts, dlq replay: give up after this long */
    int dry_run;                /* dlq replay: list, publish nothing */
    const char *replay_group;   /* dlq replay: where the last replay stopped */
    /* mint */
    const char *action;
    const char *payload;
    const char *ed25519_key; /* path of a private key PEM file */
    const char *approval_id;
    const char *issued_at;
    const char *action_code_hash; /* mint: approve this version of a Lua action's code */
    long ttl;
    const char *nonce;
    /* logs and the configuration file */
    int log_level;           /* oe_log_level (engine/log.h) */
    int log_format;          /* oe_log_format */
    const char *config_file; /* --config / OPENEXEC_CONFIG; NULL: none */
    /* verify-receipt */
    const char *id;
    const char *result;
    const char *receipt;
    /* keygen */
    const char *key_out;           /* path of the new private key file */
    const char *public_of;         /* keygen: print the public key of this private key file */
    const char *trusted_keys_file; /* OPENEXEC_TRUSTED_KEYS_FILE / verify-receipt --trusted-keys */
    /* ledger audit */
    oe_config_list checkpoint_files; /* --checkpoint: signed checkpoints published earlier */
    /* Where each setting of the table came from, by table index. */
    unsigned char origin[OE_CONFIG_MAX_SETTINGS];
    char checkpoints_default[OE_CONFIG_TOPIC_MAX + 1]; /* checkpoints_topic, derived */
} oe_config;

/* A command as the parser and the help text see it. */
typedef struct oe_command {
    const char *name;    /* "run" */
    unsigned bit;        /* OE_CMD_RUN */
    const char *summary; /* a paragraph for --help */
    int kafka_props;     /* 1: takes -X prop=value and OPENEXEC_KAFKA_<PROP> */
    int needs_brokers;   /* 1: --brokers (or OPENEXEC_KAFKA_BROKERS) is required */
} oe_command;

/* Fills cfg for command: the flags of argv ("--name value", "--name=value"),
 * then the environment for the settings not given as flags, then the
 * configuration file (--config FILE or OPENEXEC_CONFIG: "NAME = value"
 * lines with the environment's names, loaded into the environment where a
 * variable is not set, so that OPENEXEC_KAFKA_<PROP> lines reach
 * oe_kafka_props_from_env too), then the defaults, each value checked
 * against its type. Settings that are alternatives (two ledger locations,
 * the public key as text and as a file, mint's two signing keys) given
 * together from any sources are refused naming both and their sources. The
 * file must hold no NUL byte, and must not be readable by group or others
 * when it holds a secret. Returns OE_OK, or an oe_rc (status.h) with a
 * one-line reason in err (unknown option, missing value, bad value naming
 * the flag or variable it came from and, from a flag or the environment,
 * the value; from the file FILE:LINE and the name only, never the value):
 * OE_EINVAL for a bad argument or setting, OE_ELIMIT for a file past
 * OE_CONFIG_FILE_MAX, OE_CONFIG_LINE_MAX or its 256 settings, OE_EIO when
 * the file cannot be read, OE_ENOMEM. --help is the caller's
 * (oe_command_parse looks for it first). */
int oe_config_parse(oe_config *cfg, const oe_command *command, int argc, char **argv, char *err,
                    size_t errlen);

/* The line of the configuration file that set the environment variable
 * name (and the file's path in *path), or 0 when the file did not. */
int oe_config_file_line(const char *name, const char **path);

/* Largest configuration file read, and longest line in it. */
#define OE_CONFIG_FILE_MAX ((size_t)1 << 20)
#define OE_CONFIG_LINE_MAX 8192

/* Masks a secret for the start-up log: "***" when set, "" when not. 1 when
 * the environment name holds a secret (secrets, passwords, private keys). */
int oe_config_secret_name(const char *name);

/* Writes the effective configuration of command, one log line with a
 * field per setting it takes (by environment name, or by flag for those
 * without one) and NAME.from (file, env or flag) for those not defaulted,
 * secrets masked; then the fields of extra (NULL or a NULL-terminated
 * key, value list of at most OE_CONFIG_EXTRA_MAX pairs, masked by the
 * caller). */
#define OE_CONFIG_EXTRA_MAX 64
void oe_config_log(const oe_config *cfg, const oe_command *command, const char *const *extra);

/* Prints command's usage and exactly the options it takes, from the table. */
void oe_config_usage(const oe_command *command);

/* Where the setting with this flag came from, for command. */
oe_origin oe_config_origin(const oe_config *cfg, const oe_command *command, const char *flag);

/* Checks a host for the admin HTTP bind: an IPv4 or IPv6 literal, or a
 * host name (letters, digits, '-' and '.'). Returns OE_OK or OE_EINVAL
 * (status.h). */
int oe_config_check_host(const char *host);

/* The candidate closest to word (one of n) when it is close enough to be
 * what was meant (a typo: at most one edit in four, one at least, an edit
 * being a letter added, removed, changed or two swapped), else NULL; for
 * "did you mean" hints. */
const char *oe_did_you_mean(const char *word, const char *const *candidates, size_t n);

/* A setting of the table as the generated texts (shell completion, the
 * configuration reference of `openexec docs config`) see it. Its strings
 * are the table's, except takes, which is valid only during the call that
 * gives it. */
typedef struct oe_setting_info {
    const char *flag;          /* "--http-port" */
    const char *env;           /* its environment variable; NULL: a flag only */
    int in_file;               /* 1: the configuration file may set it, under env's name */
    unsigned commands;         /* OE_CMD_* bits of the commands that take it */
    const char *const *values; /* its fixed set of values (NULL-terminated), or NULL */
    const char *takes;         /* what a value may be, in words */
    const char *def;           /* its default as text; NULL: none */
    const char *help;          /* what it means, one line */
} oe_setting_info;

/* Calls fn for each setting that one of the commands of bits takes, in the
 * table's order. */
void oe_config_each_setting(unsigned bits, void (*fn)(void *ctx, const oe_setting_info *setting),
                            void *ctx);

#endif
