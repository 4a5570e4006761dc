/* The one configuration struct: filled once at start-up from flags, the
 * environment and defaults (in that order of precedence), then read-only. */
#ifndef OE_CONFIG_H
#define OE_CONFIG_H

#include <stddef.h>

typedef struct oe_config {
    /* governance */
    const char *mode;            /* "demo" or "clawshield" */
    const char *secret;          /* CLAWSHIELD_SECRET_KEY */
    const char *public_key;      /* CLAWSHIELD_PUBLIC_KEY (PEM text) */
    const char *tenant;          /* CLAWSHIELD_TENANT_ID */
    const char *allowed_actions; /* OPENEXEC_ALLOWED_ACTIONS */
    /* storage */
    const char *db_path;         /* OPENEXEC_DB_PATH (or OPENEXEC_DB_URL) */
    const char *db_sync;         /* "full" or "normal" */
    /* admin HTTP */
    const char *http_host;
    const char *http_port;       /* kept as text until validated */
    const char *http_threads;
    const char *execute;         /* "kafka" or "local" */
    const char *worker;          /* "1": consume requests here; "0": bridge only */
    /* Kafka */
    const char *brokers;
    const char *requests_topic;
    const char *receipts_topic;
    const char *dlq_topic;
    const char *group_id;
    const char *receipt_format;  /* "avro" or "json" */
    const char *transactions;    /* "1" to enable */
    const char *transactional_id;
    const char *partitions;      /* embedded broker */
    const char *batch_max;
    const char *bridge_timeout_ms;
    const char *confluent_schema_id;
    const char *bootstrap_file;  /* broker */
    const char *format;          /* produce: avro or json */
    const char *from_beginning;  /* receipts: flag */
    const char *follow;          /* receipts: flag */
    const char *max_count;       /* receipts: stop after this many */
    const char *timeout_ms;      /* receipts: give up after this long */
    /* mint */
    const char *action;
    const char *payload;
    const char *ed25519_key;     /* path of a private key PEM file */
    const char *approval_id;
    const char *issued_at;
    const char *ttl;
    const char *nonce;
    /* verify-receipt */
    const char *id;
    const char *result;
    const char *receipt;
} oe_config;

/* One option: its flag, its environment variable (or NULL), the field it
 * fills, and a line of help. */
typedef struct oe_option {
    const char *flag;
    const char *env;
    size_t offset; /* offsetof(oe_config, field) */
    const char *help;
    int boolean;   /* a flag without a value: sets the field to "1" */
} oe_option;

/* Fills cfg from argv (flags "--name value" or "--name=value"), then from
 * the environment for the options not given as flags. Returns 0, or -1 with
 * a one-line reason in err (unknown flag, missing value). "--help" sets
 * *help. */
int oe_config_parse(oe_config *cfg, const oe_option *opts, size_t nopts, int argc, char **argv,
                    int *help, char *err, size_t errlen);

/* Prints the options of a command as help text. */
void oe_config_usage(const char *command, const char *summary, const oe_option *opts,
                     size_t nopts);

#endif
