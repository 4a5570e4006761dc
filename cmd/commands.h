/* Pieces of the openexec binary shared by its subcommands. */
#ifndef OE_COMMANDS_H
#define OE_COMMANDS_H

#include <stddef.h>

#include "engine/buf.h"
#include "engine/clock.h"

#include "cmd/config.h"
#include "kafka/kafka.h"

/* Every command a user types (a group's actions as "ledger show"), in the
 * order of `openexec --help`, with the bit of its settings and whether it
 * takes -X (as its oe_command says; the tests hold each against the
 * command's --help): for shell completion and the configuration
 * reference. */
typedef struct oe_command_entry {
    const char *name;
    unsigned bit;
    int kafka_props;
} oe_command_entry;
extern const oe_command_entry oe_command_list[];
extern const size_t oe_command_count;

/* Prints "openexec: reason" on stderr and returns status. */
int oe_die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Stop signals (SIGINT, SIGTERM). The long-running commands (run, broker)
 * call oe_signals_start before they make any thread: the signals are
 * blocked in every thread and taken by one thread (sigwait), which sets
 * the stop flag and wakes oe_stop_wait. The short commands, which may
 * block reading stdin, call oe_install_signals: a handler sets the flag
 * and interrupts the read. Either way oe_stop_requested() reads the flag;
 * SIGPIPE is ignored. With reload (run), SIGHUP is taken too: it sets the
 * reload flag, which oe_reload_requested() reads and clears, and wakes
 * oe_stop_wait. */
int oe_signals_start(int reload); /* OE_OK, or OE_EIO: fell back to the handler */
int oe_reload_requested(void);
void oe_install_signals(void);
int oe_stop_requested(void);
void oe_stop_clear(void);
/* Waits up to ms for a stop signal; returns 1 when one came. */
int oe_stop_wait(long ms);
/* Ends the signal thread (at exit). */
void oe_signals_stop(void);

/* Zeroes s, then collects the pass-through librdkafka properties of argv
 * ("-X prop=value"), removing those from argv and updating *argc. Call
 * before parsing the other options. oe_kafka_props_from_env then adds the
 * OPENEXEC_KAFKA_<PROP> environment (a configuration file's lines
 * included) for the properties -X did not give. Properties that openexec
 * sets itself because a guarantee depends on them are refused, as are
 * malformed ones. Each returns OE_OK, or with a one-line reason in err
 * naming the -X argument or variable OE_EINVAL (refused or malformed),
 * OE_ELIMIT (more than OE_KAFKA_MAX_PROPS, or a variable name too long) or
 * OE_ENOMEM (status.h). */
int oe_kafka_props_from_args(oe_kafka_settings *s, int *argc, char **argv, char *err,
                             size_t errlen);
int oe_kafka_props_from_env(oe_kafka_settings *s, char *err, size_t errlen);

/* Sets the brokers, topics, group and transaction fields of s from cfg. */
void oe_kafka_settings_fill(oe_kafka_settings *s, const oe_config *cfg);

/* Frees the property strings oe_kafka_props_from_* allocated. */
void oe_kafka_settings_clear(oe_kafka_settings *s);

/* Parses a command's options into cfg (with its configuration file), and
 * for a command that takes Kafka properties the -X properties and the
 * environment into ks (ks may be NULL otherwise), then fills ks from cfg.
 * Returns OE_GO_ON to go on, or an exit status (help printed: 0; bad
 * usage or configuration: 2, with a one-line reason on stderr), having
 * released ks. Exit statuses are never negative, so `if (rc >= 0) return
 * rc;` reads right. */
#define OE_GO_ON (-1) /* no exit status: the command goes on (not an oe_rc) */
int oe_command_parse(const oe_command *command, oe_config *cfg, oe_kafka_settings *ks, int argc,
                     char **argv);

/* The ledger of cfg for command (run, ledger): --db / OPENEXEC_DB_PATH name
 * a SQLite file, --db-url / OPENEXEC_DB_URL a URL (docs/operations.md). A flag wins
 * over the environment; two flags, or the two variables together, are an
 * error rather than one silently winning. A sqlite:/// URL becomes
 * db_path; a PostgreSQL one stays in db_url. Returns OE_OK, or OE_EINVAL
 * (status.h) with a reason. */
int oe_apply_db_url(oe_config *cfg, const oe_command *command, char *err, size_t errlen);

/* Loads cfg's --actions-dir with cfg's budgets, as `run` runs it (at start
 * and on SIGHUP) and `openexec actions` lists it. Returns oe_lua_actions_load's
 * code, with *out the new set on OE_OK. */
struct oe_lua_actions;
int oe_load_actions(const oe_config *cfg, struct oe_lua_actions **out, char *err, size_t errlen);

/* Appends text[0..len) as a JSON string, or null when text is NULL or not
 * valid UTF-8 (oe_json_dump_string leaves nothing behind when it fails). */
void oe_put_json_text(oe_buf *b, const void *text, size_t len);

/* Appends the value of message m's header name as a JSON string, or null
 * when it has none (or it is not text). */
void oe_put_json_header(oe_buf *b, const rd_kafka_message_t *m, const char *name);
/* The same for a header that holds a decimal integer (a partition, an
 * offset): the number, or null when it has none or another text. */
void oe_put_json_header_int(oe_buf *b, const rd_kafka_message_t *m, const char *name);

/* The embedded broker of cfg (`broker`, or `run` without brokers): its
 * three topics with cfg's partitions, and the fixed port when cfg asks for
 * one. Returns 0, or an exit status after printing the reason. */
struct oe_broker;
int oe_start_embedded_broker(const oe_config *cfg, struct oe_broker **out);

/* The most bytes of a file of keys (PEM public keys, or a private key). */
#define OE_KEY_FILE_MAX ((size_t)64 * 1024)

/* Reads the whole text file at path, at most max bytes, into *out
 * (malloc'ed, NUL-terminated). Returns OE_OK; OE_EIO (errno says why),
 * OE_ELIMIT (longer than max, or a NUL byte in it: not text) or
 * OE_ENOMEM. */
int oe_read_text_file(const char *path, size_t max, char **out);

/* Reads the trusted keys file at path (PEM Ed25519 public keys,
 * oe_trusted_keys_parse) into *keys (malloc'ed) and *n. Returns 0, or exit
 * status 2 after printing "PREFIXFLAG PATH: why" (prefix: e.g. "exec: ",
 * or ""). */
int oe_load_trusted_keys(const char *path, const char *prefix, const char *flag,
                         unsigned char (**keys)[32], size_t *n);

/* Why oe_read_text_file failed with rc, in words, into buf: what follows
 * "cannot read PATH: ". Returns buf. */
const char *oe_read_failure(int rc, size_t max, char *buf, size_t len);

int oe_cmd_broker(int argc, char **argv);
int oe_cmd_ledger(int argc, char **argv);
int oe_cmd_dlq(int argc, char **argv);
int oe_cmd_produce(int argc, char **argv);
int oe_cmd_receipts(int argc, char **argv);
int oe_cmd_exec(int argc, char **argv);
int oe_cmd_completion(int argc, char **argv);
int oe_cmd_status(int argc, char **argv);
int oe_cmd_actions(int argc, char **argv);
int oe_cmd_docs(int argc, char **argv);

/* Opens the ledger of cfg (--db / --db-url) read-only. Returns the store,
 * or NULL after printing the reason (*status: the exit status). */
struct oe_store;
struct oe_store *oe_open_ledger_readonly(oe_config *cfg, const oe_command *command, int *status);
int oe_cmd_topics(int argc, char **argv);

#endif
