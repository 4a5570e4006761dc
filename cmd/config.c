#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char **slot(oe_config *cfg, const oe_option *o)
{
    return (const char **)((char *)cfg + o->offset);
}

int oe_config_parse(oe_config *cfg, const oe_option *opts, size_t nopts, int argc, char **argv,
                    int *help, char *err, size_t errlen)
{
    char given[64] = {0};
    *help = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = 1;
            return 0;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument: %s", arg);
            return -1;
        }
        const char *eq = strchr(arg, '=');
        size_t namelen = eq ? (size_t)(eq - arg) : strlen(arg);
        size_t k;
        for (k = 0; k < nopts; k++)
            if (strlen(opts[k].flag) == namelen && strncmp(opts[k].flag, arg, namelen) == 0)
                break;
        if (k == nopts) {
            snprintf(err, errlen, "unknown option: %.*s", (int)namelen, arg);
            return -1;
        }
        const char *value;
        if (opts[k].boolean) {
            if (eq) {
                snprintf(err, errlen, "option %s takes no value", opts[k].flag);
                return -1;
            }
            value = "1";
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(err, errlen, "option %s needs a value", opts[k].flag);
            return -1;
        }
        *slot(cfg, &opts[k]) = value;
        if (k < sizeof given)
            given[k] = 1;
    }
    for (size_t k = 0; k < nopts; k++) {
        if (k < sizeof given && given[k])
            continue;
        const char *v = opts[k].env ? getenv(opts[k].env) : NULL;
        if (v)
            *slot(cfg, &opts[k]) = v;
    }
    return 0;
}

void oe_config_usage(const char *command, const char *summary, const oe_option *opts,
                     size_t nopts)
{
    printf("usage: openexec %s [options]\n\n%s\n\noptions:\n", command, summary);
    for (size_t k = 0; k < nopts; k++)
        printf("  %-22s %s%s%s%s\n", opts[k].flag, opts[k].help, opts[k].env ? " [env " : "",
               opts[k].env ? opts[k].env : "", opts[k].env ? "]" : "");
    printf("  %-22s this text\n", "--help");
}
