/* Kafka settings of the command line: the pass-through librdkafka properties
 * (-X prop=value and OPENEXEC_KAFKA_<PROP>) and the fields that come from
 * the typed configuration. Runs on the main thread at start-up; the
 * property strings are copied into the oe_kafka_settings and freed by
 * oe_kafka_settings_clear. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "engine/status.h"

extern char **environ;

/* Properties that the worker, the bridge and the command-line clients set
 * themselves (the "forced" lists given to oe_kafka_new), because a
 * guarantee depends on them. A user value would be replaced without a word,
 * so it is refused instead, with the reason. Aliases librdkafka accepts for
 * the same property are listed too. */
static const struct reserved {
    const char *name;
    const char *why;
} reserved[] = {
    {"bootstrap.servers", "set by --brokers or OPENEXEC_KAFKA_BROKERS"},
    {"metadata.broker.list", "set by --brokers or OPENEXEC_KAFKA_BROKERS"},
    {"group.id", "set by --group-id or OPENEXEC_GROUP_ID"},
    {"group.instance.id",
     "set by --group-instance-id or OPENEXEC_GROUP_INSTANCE_ID (the worker's consumer only)"},
    {"enable.auto.commit",
     "offsets are committed only after the ledger write is durable; auto commit would break that"},
    {"auto.commit.enable",
     "offsets are committed only after the ledger write is durable; auto commit would break that"},
    {"enable.auto.offset.store",
     "offsets are stored only after the ledger write is durable; auto store would break that"},
    {"enable.partition.eof", "set by openexec for each client"},
    {"enable.idempotence",
     "receipts and dead letters are published idempotently (no duplicates, in order)"},
    {"acks", "receipts and dead letters wait for all in-sync replicas (acks=all)"},
    {"request.required.acks", "receipts and dead letters wait for all in-sync replicas (acks=all)"},
    {"transactional.id", "set by --transactional-id or OPENEXEC_TRANSACTIONAL_ID"},
    {"auto.offset.reset",
     "a committed offset no longer on the broker is reported as data loss, never skipped"},
    {"partition.assignment.strategy",
     "the worker relies on cooperative rebalancing (cooperative-sticky)"},
    /* Properties that load or run code: a configuration value must never
     * become code running as openexec (librdkafka 2.0.2 CONFIGURATION.md;
     * interceptors come only through plugins). */
    {"plugin.library.paths", "it loads shared libraries (plugins, interceptors) into openexec"},
    {"ssl.engine.location", "it loads an OpenSSL engine library into openexec"},
    {"ssl.providers", "it loads OpenSSL provider modules into openexec"},
    {"sasl.kerberos.kinit.cmd",
     "it is a shell command openexec would run; librdkafka's default kinit command is kept"},
};

/* Properties librdkafka pastes into the default kinit command, which it
 * runs with system() (`kinit ... -t "%{sasl.kerberos.keytab}" -k
 * %{sasl.kerberos.principal}`): a value may hold only characters no shell
 * interprets, or it would be code running as openexec. */
static const char *const shell_pasted[] = {"sasl.kerberos.principal", "sasl.kerberos.keytab"};
static const char shell_safe[] = "@._/+-:=,";

/* Why name may not be set by the user (or not to value), or NULL.
 * librdkafka also takes topic properties with a "topic." prefix. */
static const char *reserved_why(const char *name, const char *value)
{
    if (strncmp(name, "topic.", 6) == 0)
        name += 6;
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(reserved[i].name, name) == 0)
            return reserved[i].why;
    for (size_t i = 0; i < sizeof shell_pasted / sizeof shell_pasted[0]; i++)
        if (strcmp(shell_pasted[i], name) == 0)
            for (const char *c = value; *c; c++)
                if (!isalnum((unsigned char)*c) && !strchr(shell_safe, *c))
                    return "librdkafka pastes it into a shell command (kinit); only letters, "
                           "digits and @._/+-:=, are taken";
    return NULL;
}

/* Adds or replaces a property; the strings are copied. source names the
 * argument or variable it came from, for the refusal (never the value: it
 * may be a secret). */
static int add_prop(oe_kafka_settings *s, const char *name, size_t namelen, const char *value,
                    const char *source, int replace, char *err, size_t errlen)
{
    char *n = strndup(name, namelen);
    char *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    const char *why = reserved_why(n, v);
    if (why) {
        snprintf(err, errlen, "%.200s: property %.100s refused: %s", source, n, why);
        free(n);
        free(v);
        return OE_EINVAL;
    }
    for (size_t i = 0; i < s->nprops; i++)
        if (strcmp(s->prop_names[i], n) == 0) {
            free(n);
            if (!replace) {
                free(v);
                return OE_OK;
            }
            free((char *)s->prop_values[i]);
            s->prop_values[i] = v;
            return OE_OK;
        }
    if (s->nprops == OE_KAFKA_MAX_PROPS) {
        free(n);
        free(v);
        snprintf(err, errlen, "more than %d Kafka properties", OE_KAFKA_MAX_PROPS);
        return OE_ELIMIT;
    }
    s->prop_names[s->nprops] = n;
    s->prop_values[s->nprops] = v;
    s->nprops++;
    return OE_OK;
}

void oe_kafka_settings_fill(oe_kafka_settings *s, const oe_config *cfg)
{
    s->brokers = cfg->brokers && cfg->brokers[0] ? cfg->brokers : NULL;
    s->requests_topic = cfg->requests_topic;
    s->receipts_topic = cfg->receipts_topic;
    s->dlq_topic = cfg->dlq_topic;
    s->group_id = cfg->group_id;
    s->group_instance_id =
        cfg->group_instance_id && cfg->group_instance_id[0] ? cfg->group_instance_id : NULL;
    s->transactions = cfg->transactions;
    s->transactional_id = cfg->transactional_id;
}

/* OPENEXEC_KAFKA_SECURITY_PROTOCOL=ssl -> security.protocol=ssl. BROKERS
 * and TRANSACTIONS are settings of ours (config.c). A property given with
 * -X already is kept. */
int oe_kafka_props_from_env(oe_kafka_settings *s, char *err, size_t errlen)
{
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
            (n == 12 && strncmp(name, "TRANSACTIONS", 12) == 0))
            continue;
        char prop[128];
        if (n >= sizeof prop) {
            snprintf(err, errlen, "environment variable name too long: %.40s...", *e);
            return OE_ELIMIT;
        }
        for (size_t i = 0; i < n; i++)
            prop[i] = name[i] == '_' ? '.' : (char)tolower((unsigned char)name[i]);
        /* A line of the configuration file is named as such. */
        char var[160], source[512];
        snprintf(var, sizeof var, "%.*s", (int)(eq - *e), *e);
        const char *file;
        int line = oe_config_file_line(var, &file);
        if (line)
            snprintf(source, sizeof source, "%.200s:%d: %.150s", file, line, var);
        else
            snprintf(source, sizeof source, "%.150s (environment)", var);
        int rc = add_prop(s, prop, n, eq + 1, source, 0, err, errlen);
        if (rc != OE_OK)
            return rc;
    }
    return OE_OK;
}

/* -X prop=value and -Xprop=value, removed from argv. */
static int props_from_arguments(oe_kafka_settings *s, int *argc, char **argv, char *err,
                                size_t errlen)
{
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        const char *arg = argv[i];
        const char *pv = NULL;
        if (strcmp(arg, "-X") == 0) {
            if (i + 1 >= *argc) {
                snprintf(err, errlen, "-X needs prop=value");
                return OE_EINVAL;
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
            /* Not echoed: it may be a secret with its '=' missing. */
            snprintf(err, errlen, "-X needs prop=value (an argument of -X has no '=')");
            return OE_EINVAL;
        }
        char source[256];
        snprintf(source, sizeof source, "-X %.*s", (int)((eq - pv) > 200 ? 200 : eq - pv), pv);
        int rc = add_prop(s, pv, (size_t)(eq - pv), eq + 1, source, 1, err, errlen);
        if (rc != OE_OK)
            return rc;
    }
    *argc = out;
    return OE_OK;
}

int oe_kafka_props_from_args(oe_kafka_settings *s, int *argc, char **argv, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    int rc = props_from_arguments(s, argc, argv, err, errlen);
    if (rc != OE_OK)
        oe_kafka_settings_clear(s);
    return rc;
}

void oe_kafka_settings_clear(oe_kafka_settings *s)
{
    for (size_t i = 0; i < s->nprops; i++) {
        free((char *)s->prop_names[i]);
        free((char *)s->prop_values[i]);
    }
    s->nprops = 0;
}
