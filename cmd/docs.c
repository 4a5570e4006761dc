/* openexec docs config | docs metrics: the configuration and the metrics
 * references in Markdown, generated from the settings table (config.c) and
 * from the registries of metrics (engine/metrics.h, kafka/kafka_metrics.h,
 * admin-http/http.h), which are also what --help and /metrics are made of.
 * docs/operations.md embeds both (`make docs` writes them there; the tests
 * fail while the document differs). Runs on the main thread. */
#include <stdio.h>
#include <string.h>

#include "admin-http/http.h"
#include "cmd/commands.h"
#include "engine/metrics.h"
#include "kafka/kafka_metrics.h"

static const oe_command docs_config_command = {
    "docs config",
    OE_CMD_DOCS_CONFIG,
    "Prints the configuration reference in Markdown: every setting of every\n"
    "command with its flag, environment variable, whether the configuration\n"
    "file may set it, its default, the values it takes, the commands that take\n"
    "it and what it means (the text of docs/operations.md).",
    0,
    0,
};

static const oe_command docs_metrics_command = {
    "docs metrics",
    OE_CMD_DOCS_METRICS,
    "Prints the metrics reference in Markdown: every metric of /metrics with\n"
    "its type, labels and meaning (the text of docs/operations.md).",
    0,
    0,
};

/* Writes text for a Markdown table cell: '|' escaped, '<', '>' and '*'
 * shown as they are rather than read as HTML or emphasis. */
static void put_cell(const char *text)
{
    for (const char *c = text; *c; c++) {
        if (*c == '|' || *c == '*' || *c == '`')
            printf("\\%c", *c);
        else if (*c == '<')
            fputs("&lt;", stdout);
        else if (*c == '>')
            fputs("&gt;", stdout);
        else
            putchar(*c);
    }
}

/* The commands of bits, by name, ", " between. */
static void put_commands(unsigned bits)
{
    const char *sep = "";
    for (size_t i = 0; i < oe_command_count; i++)
        if (bits & oe_command_list[i].bit) {
            printf("%s%s", sep, oe_command_list[i].name);
            sep = ", ";
        }
}

static void put_setting(void *ctx, const oe_setting_info *s)
{
    (void)ctx;
    printf("| `%s` | ", s->flag);
    if (s->env)
        printf("`%s`", s->env);
    else
        printf("—");
    printf(" | %s | ", s->in_file ? "yes" : "no");
    put_commands(s->commands);
    printf(" | ");
    if (!s->def)
        printf("—");
    else if (!s->def[0])
        printf("empty");
    else
        printf("`%s`", s->def);
    printf(" | ");
    if (s->values)
        for (size_t i = 0; s->values[i]; i++)
            printf("%s`%s`", i ? ", " : "", s->values[i]);
    else
        put_cell(s->takes);
    printf(" | ");
    put_cell(s->help);
    printf(" |\n");
}

/* Sets *taken when a setting with the flag of ctx is given. */
typedef struct {
    const char *flag;
    int taken;
} flag_probe;

static void probe_flag(void *ctx, const oe_setting_info *s)
{
    flag_probe *p = ctx;
    p->taken |= strcmp(s->flag, p->flag) == 0;
}

static void docs_config(void)
{
    unsigned all = 0, kafka = 0, kafka_file = 0;
    for (size_t i = 0; i < oe_command_count; i++) {
        all |= oe_command_list[i].bit;
        if (!oe_command_list[i].kafka_props)
            continue;
        kafka |= oe_command_list[i].bit;
        flag_probe p = {"--config", 0};
        oe_config_each_setting(oe_command_list[i].bit, probe_flag, &p);
        kafka_file |= p.taken ? oe_command_list[i].bit : 0;
    }
    printf("| Flag | Environment variable | In the file | Commands | Default | Values | "
           "Meaning |\n"
           "|---|---|---|---|---|---|---|\n");
    oe_config_each_setting(all, put_setting, NULL);
    printf("| `-X prop=value` | `OPENEXEC_KAFKA_<PROP>` | %s | ",
           kafka_file == kafka ? "yes" : "where the command takes `--config`");
    put_commands(kafka);
    printf(" | librdkafka's | a librdkafka property and its value | any librdkafka property, "
           "passed through (upper case and `_` for `.` in the variable's name); `-X` wins "
           "over the variable |\n");
}

static void put_registry(const char *title, const char *where, const oe_metric_def *defs, size_t n)
{
    printf("### %s\n\n%s\n\n| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n", title,
           where);
    for (size_t i = 0; i < n; i++) {
        const oe_metric_def *d = &defs[i];
        printf("| `%s` | %s | ", d->name, oe_metric_type_name(d->type));
        const char *labels = d->labels;
        const char *sep = "";
        while (*labels) {
            size_t len = strcspn(labels, ",");
            printf("%s`%.*s`", sep, (int)len, labels);
            sep = ", ";
            labels += len + (labels[len] == ',');
        }
        if (d->type == OE_METRIC_HISTOGRAM)
            printf("%s`le` (`_bucket`; also `_sum`, `_count`)", sep);
        else if (!*sep)
            printf("none");
        printf(" | ");
        put_cell(d->help);
        printf(" |\n");
    }
}

static void docs_metrics(void)
{
    put_registry("Engine and ledger", "Served by every `run`.", oe_metrics_registry,
                 oe_metrics_registry_count);
    printf("\n");
    put_registry("Kafka worker and `/execute` bridge",
                 "Served by every `run` except `--execute local`.", oe_kafka_metrics_registry,
                 oe_kafka_metrics_registry_count);
    printf("\n");
    put_registry("Admin HTTP server", "Served by every `run`.", oe_http_metrics_registry,
                 oe_http_metrics_registry_count);
}

int oe_cmd_docs(int argc, char **argv)
{
    static const char *const actions[] = {"config", "metrics"};
    const oe_command *command = NULL;
    if (argc >= 1 && strcmp(argv[0], "config") == 0)
        command = &docs_config_command;
    else if (argc >= 1 && strcmp(argv[0], "metrics") == 0)
        command = &docs_metrics_command;
    else if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        printf("usage: openexec docs config\n"
               "       openexec docs metrics\n\n"
               "The configuration and metrics references in Markdown, as docs/operations.md\n"
               "holds them. openexec docs ACTION --help says more.\n");
        return 0;
    }
    if (!command) {
        const char *hint = argc >= 1 ? oe_did_you_mean(argv[0], actions, 2) : NULL;
        if (hint)
            return oe_die(2, "docs: unknown action %s; did you mean %s? (see openexec docs --help)",
                          argv[0], hint);
        return oe_die(2, "docs: %s%s (use config or metrics; see openexec docs --help)",
                      argc >= 1 ? "unknown action " : "an action is needed",
                      argc >= 1 ? argv[0] : "");
    }
    oe_config cfg;
    int rc = oe_command_parse(command, &cfg, NULL, argc - 1, argv + 1);
    if (rc >= 0)
        return rc;
    if (command == &docs_config_command)
        docs_config();
    else
        docs_metrics();
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : oe_die(1, "docs: cannot write to stdout");
}
