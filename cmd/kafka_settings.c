/* Kafka settings from flags, -X properties and the environment. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"

extern char **environ;

volatile int oe_stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    oe_stop_requested = 1;
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

int oe_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

void oe_config_kafka_defaults(oe_config *cfg)
{
    cfg->brokers = "";
    cfg->requests_topic = "openexec.requests";
    cfg->receipts_topic = "openexec.receipts";
    cfg->dlq_topic = "openexec.requests.dlq";
    cfg->group_id = "openexec-workers";
}

/* Adds or replaces a property; the strings are copied. */
static int add_prop(oe_kafka_settings *s, const char *name, size_t namelen, const char *value,
                    char *err, size_t errlen)
{
    char *n = strndup(name, namelen);
    char *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < s->nprops; i++)
        if (strcmp(s->prop_names[i], n) == 0) {
            free((char *)s->prop_values[i]);
            free(n);
            s->prop_values[i] = v;
            return 0;
        }
    if (s->nprops == OE_KAFKA_MAX_PROPS) {
        free(n);
        free(v);
        snprintf(err, errlen, "more than %d Kafka properties", OE_KAFKA_MAX_PROPS);
        return -1;
    }
    s->prop_names[s->nprops] = n;
    s->prop_values[s->nprops] = v;
    s->nprops++;
    return 0;
}

void oe_kafka_settings_fill(oe_kafka_settings *s, const oe_config *cfg)
{
    s->brokers = cfg->brokers && cfg->brokers[0] ? cfg->brokers : NULL;
    s->requests_topic = cfg->requests_topic;
    s->receipts_topic = cfg->receipts_topic;
    s->dlq_topic = cfg->dlq_topic;
    s->group_id = cfg->group_id;
    s->transactions = cfg->transactions && strcmp(cfg->transactions, "1") == 0;
    s->transactional_id = cfg->transactional_id;
}

int oe_kafka_props_from(oe_kafka_settings *s, int *argc, char **argv, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);

    /* OPENEXEC_KAFKA_SECURITY_PROTOCOL=ssl -> security.protocol=ssl. BROKERS,
     * TRANSACTIONS and DEBUG are ours. */
    static const char prefix[] = "OPENEXEC_KAFKA_";
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, prefix, sizeof prefix - 1) != 0)
            continue;
        const char *name = *e + sizeof prefix - 1;
        const char *eq = strchr(name, '=');
        if (!eq || eq == name)
            continue;
        size_t n = (size_t)(eq - name);
        if ((n == 7 && strncmp(name, "BROKERS", 7) == 0) ||
            (n == 12 && strncmp(name, "TRANSACTIONS", 12) == 0) ||
            (n == 5 && strncmp(name, "DEBUG", 5) == 0))
            continue;
        char prop[128];
        if (n >= sizeof prop) {
            snprintf(err, errlen, "environment variable name too long: %.40s...", *e);
            goto error;
        }
        for (size_t i = 0; i < n; i++)
            prop[i] = name[i] == '_' ? '.' : (char)tolower((unsigned char)name[i]);
        if (add_prop(s, prop, n, eq + 1, err, errlen) != 0)
            goto error;
    }
    /* -X prop=value, removed from argv. */
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        const char *arg = argv[i];
        const char *pv = NULL;
        if (strcmp(arg, "-X") == 0) {
            if (i + 1 >= *argc) {
                snprintf(err, errlen, "-X needs prop=value");
                goto error;
            }
            pv = argv[++i];
        } else if (strncmp(arg, "-X", 2) == 0) {
            pv = arg + 2;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        const char *eq = strchr(pv, '=');
        if (!eq || eq == pv) {
            snprintf(err, errlen, "-X needs prop=value, not %s", pv);
            goto error;
        }
        if (add_prop(s, pv, (size_t)(eq - pv), eq + 1, err, errlen) != 0)
            goto error;
    }
    *argc = out;
    return 0;
error:
    oe_kafka_settings_clear(s);
    return -1;
}

void oe_kafka_settings_clear(oe_kafka_settings *s)
{
    for (size_t i = 0; i < s->nprops; i++) {
        free((char *)s->prop_names[i]);
        free((char *)s->prop_values[i]);
    }
    s->nprops = 0;
}
