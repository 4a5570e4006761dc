/* Pieces of the openexec binary shared by its subcommands. */
#ifndef OE_COMMANDS_H
#define OE_COMMANDS_H

#include <stddef.h>

#include "cmd/config.h"
#include "worker/kafka.h"

#define OPT(flag, env, field, help) {flag, env, offsetof(oe_config, field), help, 0}
#define FLAG(flag, field, help) {flag, NULL, offsetof(oe_config, field), help, 1}
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Options of every command that talks to Kafka. */
#define KAFKA_OPTIONS                                                                          \
    OPT("--brokers", "OPENEXEC_KAFKA_BROKERS", brokers,                                        \
        "bootstrap servers (run: empty = embedded broker)"),                                   \
        OPT("--requests-topic", "OPENEXEC_REQUESTS_TOPIC", requests_topic,                     \
            "requests topic [openexec.requests]"),                                             \
        OPT("--receipts-topic", "OPENEXEC_RECEIPTS_TOPIC", receipts_topic,                     \
            "receipts topic [openexec.receipts]"),                                             \
        OPT("--dlq-topic", "OPENEXEC_DLQ_TOPIC", dlq_topic,                                    \
            "dead-letter topic [openexec.requests.dlq]")

/* Prints "openexec: reason" on stderr and returns status. */
int oe_die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Set by SIGINT/SIGTERM. */
extern volatile int oe_stop_requested;
void oe_install_signals(void);

/* Defaults for the Kafka fields of cfg (topic names, group). */
void oe_config_kafka_defaults(oe_config *cfg);

/* Zeroes s, then collects the pass-through librdkafka properties: the
 * OPENEXEC_KAFKA_<PROP> environment, then every "-X prop=value" of argv
 * (which wins), removing those from argv and updating *argc. Call before
 * parsing the other options. Returns 0, or -1 with a reason in err. */
int oe_kafka_props_from(oe_kafka_settings *s, int *argc, char **argv, char *err, size_t errlen);

/* Sets the brokers, topics, group and transaction fields of s from cfg. */
void oe_kafka_settings_fill(oe_kafka_settings *s, const oe_config *cfg);

/* Frees the property strings oe_kafka_props_from allocated. */
void oe_kafka_settings_clear(oe_kafka_settings *s);

/* Parses an integer in [lo, hi]; returns 0 or -1. */
int oe_parse_long(const char *s, long lo, long hi, long *out);

/* Parses a Kafka command's options: -X properties and the environment
 * (oe_kafka_props_from), then the flags, then fills ks from cfg. Returns -1
 * to go on, or an exit status (help printed: 0; bad usage: 2), having
 * released ks. */
int oe_parse_kafka_command(oe_config *cfg, oe_kafka_settings *ks, const char *command,
                           const char *summary, const oe_option *opts, size_t n, int argc,
                           char **argv);

int oe_cmd_broker(int argc, char **argv);
int oe_cmd_produce(int argc, char **argv);
int oe_cmd_receipts(int argc, char **argv);

#endif
