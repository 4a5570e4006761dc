/* What every subcommand of openexec shares: the list of commands, the
 * one-line failure message, the stop signals, and the parsing of a command's options and Kafka
 * properties. All of it runs on the main thread, apart from the signal
 * thread of the long-running commands (oe_signals_start). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/commands.h"
#include "devbroker/broker.h"
#include "engine/clock.h"
#include "engine/json.h"
#include "engine/log.h"
#include "engine/lua_actions.h"
#include "engine/note.h"
#include "engine/status.h"
#include "ledger/ledger.h"

const oe_command_entry oe_command_list[] = {
    {"run", OE_CMD_RUN, 1},
    {"broker", OE_CMD_BROKER, 0},
    {"produce", OE_CMD_PRODUCE, 1},
    {"receipts", OE_CMD_RECEIPTS, 1},
    {"exec", OE_CMD_EXEC, 1},
    {"status", OE_CMD_STATUS, 1},
    {"actions", OE_CMD_ACTIONS, 0},
    {"topics", OE_CMD_TOPICS, 1},
    {"ledger show", OE_CMD_LEDGER_SHOW, 0},
    {"ledger export", OE_CMD_LEDGER_EXPORT, 0},
    {"ledger audit", OE_CMD_LEDGER_AUDIT, 0},
    {"ledger logs", OE_CMD_LEDGER_LOGS, 0},
    {"ledger migrate", OE_CMD_LEDGER_MIGRATE, 0},
    {"dlq replay", OE_CMD_DLQ_REPLAY, 1},
    {"mint", OE_CMD_MINT, 0},
    {"verify-receipt", OE_CMD_VERIFY, 0},
    {"keygen", OE_CMD_KEYGEN, 0},
    {"version", OE_CMD_VERSION, 0},
    {"completion", OE_CMD_COMPLETION, 0},
    {"docs config", OE_CMD_DOCS_CONFIG, 0},
    {"docs metrics", OE_CMD_DOCS_METRICS, 0},
};
const size_t oe_command_count = sizeof oe_command_list / sizeof oe_command_list[0];

static atomic_int stop_flag;
static atomic_int reload_flag;
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cond;
static pthread_t signal_thread;
static int signal_thread_running;
static atomic_int signal_thread_quit;
static sigset_t stop_signals;

int oe_stop_requested(void)
{
    return atomic_load(&stop_flag);
}

void oe_stop_clear(void)
{
    atomic_store(&stop_flag, 0);
}

/* The handler of the short commands: only the flag (lock-free, so safe in
 * a handler); the signal also interrupts a blocking read. */
static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, 1);
}

void oe_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* The one thread that takes SIGINT and SIGTERM. */
static void *signal_main(void *arg)
{
    (void)arg;
    for (;;) {
        int sig;
        if (sigwait(&stop_signals, &sig) != 0)
            continue;
        if (atomic_load(&signal_thread_quit))
            return NULL;
        pthread_mutex_lock(&stop_lock);
        atomic_store(sig == SIGHUP ? &reload_flag : &stop_flag, 1);
        pthread_cond_broadcast(&stop_cond);
        pthread_mutex_unlock(&stop_lock);
    }
}

int oe_reload_requested(void)
{
    return atomic_exchange(&reload_flag, 0);
}

int oe_signals_start(int reload)
{
    signal(SIGPIPE, SIG_IGN);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&stop_cond, &attr);
    pthread_condattr_destroy(&attr);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (reload)
        sigaddset(&stop_signals, SIGHUP);
    /* Blocked here, and so in every thread made from here on. */
    if (pthread_sigmask(SIG_BLOCK, &stop_signals, NULL) != 0 ||
        pthread_create(&signal_thread, NULL, signal_main, NULL) != 0) {
        pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
        oe_install_signals();
        return OE_EIO;
    }
    signal_thread_running = 1;
    return OE_OK;
}

int oe_stop_wait(long ms)
{
    if (!signal_thread_running) {
        if (!oe_stop_requested())
            oe_sleep_ms(ms);
        return oe_stop_requested();
    }
    struct timespec until = oe_monotonic_after_ms(ms);
    pthread_mutex_lock(&stop_lock);
    while (!oe_stop_requested() && !atomic_load(&reload_flag) &&
           pthread_cond_timedwait(&stop_cond, &stop_lock, &until) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&stop_lock);
    return oe_stop_requested();
}

void oe_signals_stop(void)
{
    if (!signal_thread_running)
        return;
    atomic_store(&signal_thread_quit, 1);
    pthread_kill(signal_thread, SIGTERM); /* taken by its sigwait */
    pthread_join(signal_thread, NULL);
    signal_thread_running = 0;
}

int oe_die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("openexec: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}

/* Help wins over everything else on the line, even a bad -X property. */
static int wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

int oe_command_parse(const oe_command *command, oe_config *cfg, oe_kafka_settings *ks, int argc,
                     char **argv)
{
    char err[512];
    if (wants_help(argc, argv)) {
        oe_config_usage(command);
        return 0;
    }
    if (command->kafka_props && oe_kafka_props_from_args(ks, &argc, argv, err, sizeof err) != 0)
        return oe_die(2, "%s", err);
    if (oe_config_parse(cfg, command, argc, argv, err, sizeof err) != 0) {
        if (command->kafka_props)
            oe_kafka_settings_clear(ks);
        return oe_die(2, "%s (see openexec %s --help)", err, command->name);
    }
    /* After the configuration file, whose OPENEXEC_KAFKA_ lines are now
     * in the environment. */
    if (command->kafka_props && oe_kafka_props_from_env(ks, err, sizeof err) != 0) {
        oe_kafka_settings_clear(ks);
        return oe_die(2, "%s", err);
    }
    oe_log_setup((oe_log_level)cfg->log_level, (oe_log_format)cfg->log_format);
    if (command->kafka_props)
        oe_kafka_settings_fill(ks, cfg);
    if (command->needs_brokers && !ks->brokers) {
        oe_kafka_settings_clear(ks);
        return oe_die(2, "%s needs --brokers or OPENEXEC_KAFKA_BROKERS", command->name);
    }
    return OE_GO_ON;
}

/* The ledger: --db / OPENEXEC_DB_PATH name a SQLite file, --db-url /
 * OPENEXEC_DB_URL a URL (docs/operations.md); oe_config_parse has refused the two
 * together, from any sources. A sqlite:/// URL becomes db_path; a
 * PostgreSQL one stays in db_url. Returns OE_OK, or OE_EINVAL with a
 * reason. */
int oe_apply_db_url(oe_config *cfg, const oe_command *command, char *err, size_t errlen)
{
    (void)command;
    if (!cfg->db_url) {
        cfg->db_url = NULL;
        return OE_OK;
    }
    const char *file = NULL;
    switch (oe_ledger_parse_url(cfg->db_url, &file, err, errlen)) {
    case OE_LEDGER_SQLITE:
        cfg->db_path = file;
        cfg->db_url = NULL;
        return OE_OK;
    case OE_LEDGER_POSTGRESQL: /* always shared: OPENEXEC_LEDGER_SHARED changes nothing */
        return OE_OK;
    case OE_LEDGER_INVALID:
        break;
    }
    return OE_EINVAL;
}

void oe_put_json_text(oe_buf *b, const void *text, size_t len)
{
    if (!text || oe_json_dump_string(b, text, len) != 0)
        oe_buf_puts(b, "null");
}

/* The value of message m's header name (the last one), or NULL. */
static const char *header_value(const rd_kafka_message_t *m, const char *name, size_t *len)
{
    rd_kafka_headers_t *h;
    const void *v = NULL;
    *len = 0;
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, len)) {
        *len = 0;
        return NULL;
    }
    return v;
}

void oe_put_json_header(oe_buf *b, const rd_kafka_message_t *m, const char *name)
{
    size_t n;
    const char *v = header_value(m, name, &n);
    oe_put_json_text(b, v, n);
}

void oe_put_json_header_int(oe_buf *b, const rd_kafka_message_t *m, const char *name)
{
    size_t n;
    const char *v = header_value(m, name, &n);
    size_t digits = n > 0 && v[0] == '-' ? 1 : 0;
    int ok = v && n > digits && n - digits <= 19;
    for (size_t i = digits; ok && i < n; i++)
        ok = v[i] >= '0' && v[i] <= '9';
    if (ok)
        oe_buf_append(b, v, n);
    else
        oe_buf_puts(b, "null");
}

int oe_start_embedded_broker(const oe_config *cfg, oe_broker **out)
{
    const char *topics[] = {cfg->requests_topic, cfg->receipts_topic, cfg->dlq_topic,
                            cfg->checkpoints_topic};
    char err[512];
    if (oe_broker_new((int)cfg->partitions, topics, 4, out, err, sizeof err) != 0)
        return oe_die(1, "%s", err);
    if (cfg->broker_port && oe_broker_listen(*out, (int)cfg->broker_port, err, sizeof err) != 0) {
        oe_broker_free(*out);
        *out = NULL;
        return oe_die(1, "%s (choose another with --broker-port)", err);
    }
    if (oe_broker_start(*out, err, sizeof err) != 0) {
        oe_broker_free(*out);
        *out = NULL;
        return oe_die(1, "%s", err);
    }
    return 0;
}

int oe_read_text_file(const char *path, size_t max, char **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return OE_EIO;
    char *buf = malloc(max + 2);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int failed = ferror(f);
    int saved = errno;
    fclose(f);
    if (!buf)
        return OE_ENOMEM;
    buf[n] = '\0';
    if (failed || n > max || strlen(buf) != n) {
        free(buf);
        errno = saved;
        return failed ? OE_EIO : OE_ELIMIT;
    }
    *out = buf;
    return OE_OK;
}

const char *oe_read_failure(int rc, size_t max, char *buf, size_t len)
{
    if (rc == OE_ELIMIT)
        snprintf(buf, len, "larger than %zu bytes, or not text", max);
    else
        snprintf(buf, len, "%s", rc == OE_EIO ? strerror(errno) : oe_strerror(rc));
    return buf;
}

int oe_load_trusted_keys(const char *path, const char *prefix, const char *flag,
                         unsigned char (**keys)[32], size_t *n)
{
    char *pem, why[300];
    int rc = oe_read_text_file(path, OE_KEY_FILE_MAX, &pem);
    if (rc != OE_OK)
        return oe_die(2, "%s%s %s: cannot read it (%s)", prefix, flag, path,
                      oe_read_failure(rc, OE_KEY_FILE_MAX, why, sizeof why));
    rc = oe_trusted_keys_parse(pem, strlen(pem), keys, n, why, sizeof why);
    free(pem);
    return rc == OE_OK ? 0 : oe_die(2, "%s%s %s: %s", prefix, flag, path, why);
}

int oe_load_actions(const oe_config *cfg, oe_lua_actions **out, char *err, size_t errlen)
{
    oe_lua_limits limits = {.max_steps = (uint64_t)cfg->action_max_steps,
                            .max_memory = (size_t)cfg->action_max_memory};
    return oe_lua_actions_load(cfg->actions_dir, &limits, out, err, errlen);
}
