/* openexec completion bash|zsh: a shell completion script generated from
 * the settings table (config.c), so that it names every command's options
 * as --help does. zsh runs the bash function through bashcompinit. */
#include <stdio.h>
#include <string.h>

#include "cmd/commands.h"

/* Every command a user types, with the bit of its settings and whether it
 * takes -X (as its oe_command says; the tests hold each list against the
 * command's --help). */
static const struct {
    const char *name;
    unsigned bit;
    int kafka_props;
} commands[] = {
    {"run", OE_CMD_RUN, 1},
    {"broker", OE_CMD_BROKER, 0},
    {"produce", OE_CMD_PRODUCE, 1},
    {"receipts", OE_CMD_RECEIPTS, 1},
    {"exec", OE_CMD_EXEC, 1},
    {"status", OE_CMD_STATUS, 1},
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
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const oe_command completion_command = {
    "completion",
    OE_CMD_COMPLETION,
    "Prints a shell completion script for bash or zsh (the word after it):\n"
    "commands, each command's options, and the values of options that take\n"
    "one of a few words. E.g. source <(openexec completion bash), or in\n"
    "~/.zshrc: source <(openexec completion zsh).",
    0,
    0,
};

static void put_flag(void *ctx, const char *flag, const char *const *values)
{
    (void)values;
    printf(" %s", flag);
    (void)ctx;
}

/* The values of one option with a fixed set, once per flag. */
typedef struct {
    const char *seen[64];
    size_t n;
} value_flags;

static void put_values(void *ctx, const char *flag, const char *const *values)
{
    value_flags *v = ctx;
    if (!values)
        return;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->seen[i], flag) == 0)
            return;
    if (v->n < sizeof v->seen / sizeof v->seen[0])
        v->seen[v->n++] = flag;
    printf("    %s) COMPREPLY=($(compgen -W \"", flag);
    for (size_t i = 0; values[i]; i++)
        printf("%s%s", i ? " " : "", values[i]);
    printf("\" -- \"$cur\")); return ;;\n");
}

static void bash_function(void)
{
    printf("_openexec() {\n"
           "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
           "  local cmd=\"${COMP_WORDS[1]}\" at=2\n"
           "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
           "    COMPREPLY=($(compgen -W \"");
    const char *last_group = "";
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *sp = strchr(commands[i].name, ' ');
        size_t len = sp ? (size_t)(sp - commands[i].name) : strlen(commands[i].name);
        if (sp && strncmp(last_group, commands[i].name, len + 1) == 0)
            continue; /* a group already named */
        printf("%s%.*s", i ? " " : "", (int)len, commands[i].name);
        last_group = commands[i].name;
    }
    printf("\" -- \"$cur\")); return\n"
           "  fi\n"
           "  case \"$cmd\" in\n");
    /* The groups: their actions as the second word. */
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *sp = strchr(commands[i].name, ' ');
        if (!sp || (i > 0 && strncmp(commands[i - 1].name, commands[i].name,
                                     (size_t)(sp - commands[i].name) + 1) == 0))
            continue;
        size_t len = (size_t)(sp - commands[i].name);
        printf("    %.*s)\n      if [ \"$COMP_CWORD\" -eq 2 ]; then\n"
               "        COMPREPLY=($(compgen -W \"",
               (int)len, commands[i].name);
        for (size_t j = i;
             j < NCOMMANDS && strncmp(commands[j].name, commands[i].name, len + 1) == 0; j++)
            printf("%s%s", j > i ? " " : "", commands[j].name + len + 1);
        printf("\" -- \"$cur\")); return\n      fi\n"
               "      cmd=\"$cmd ${COMP_WORDS[2]}\"; at=3 ;;\n");
    }
    printf("  esac\n"
           "  case \"$prev\" in\n");
    value_flags v = {.n = 0};
    for (size_t i = 0; i < NCOMMANDS; i++)
        oe_config_each_flag(commands[i].bit, put_values, &v);
    printf("  esac\n"
           "  local opts=\n"
           "  case \"$cmd\" in\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        printf("    \"%s\") opts=\"", commands[i].name);
        oe_config_each_flag(commands[i].bit, put_flag, NULL);
        printf("%s --help\" ;;\n", commands[i].kafka_props ? " -X" : "");
    }
    printf("  esac\n"
           "  [ \"$COMP_CWORD\" -ge \"$at\" ] && COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
           "}\n"
           "complete -o default -F _openexec openexec\n");
}

int oe_cmd_completion(int argc, char **argv)
{
    const char *shell = argc >= 1 && argv[0][0] != '-' ? argv[0] : NULL;
    oe_config cfg;
    int rc = oe_command_parse(&completion_command, &cfg, NULL, shell ? argc - 1 : argc,
                              shell ? argv + 1 : argv);
    if (rc >= 0)
        return rc;
    if (!shell || (strcmp(shell, "bash") != 0 && strcmp(shell, "zsh") != 0))
        return oe_die(2, "completion: say which shell: bash or zsh (see openexec completion "
                         "--help)");
    printf("# openexec %s completion, generated by `openexec completion %s`.\n", shell, shell);
    if (strcmp(shell, "zsh") == 0)
        printf("autoload -U +X compinit && compinit\n"
               "autoload -U +X bashcompinit && bashcompinit\n");
    bash_function();
    return fflush(stdout) == 0 ? 0 : oe_die(1, "completion: cannot write to stdout");
}
