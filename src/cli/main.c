/* q3moe: one binary, one subcommand per job. Each command lives in its own cmd_*.c. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "cli/commands.h"
#include "dist/dist.h"
#include "dist/replica.h"

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
    bool distributed; /* runs the model, so it can run across processes under mpirun */
} COMMANDS[] = {
    {"run", cmd_run, "generate text from a prompt (streamed)", true},
    {"chat", cmd_chat, "interactive multi-turn chat (line editing, history, Ctrl-C stops an answer)", true},
    {"perplexity", cmd_perplexity, "perplexity (and KL divergence) over a text", true},
    {"bench", cmd_bench, "prefill and decode speed, with the machine's bandwidth roofline", true},
    {"info", cmd_info, "print a model's architecture, tensors and sizes", false},
    {"logits", cmd_logits, "write the logits of a token sequence as raw float32", true},
    {"convert", cmd_convert, "convert a checkpoint or GGUF into a GGUF of another type", false},
    {"imatrix", cmd_imatrix, "importance matrix of a model over a text, for convert --imatrix", false},
    {"template", cmd_template, "print the chat prompt the Qwen3 template makes from messages", false},
    {"tokenize", cmd_tokenize, "print the token ids of a text (JSON array)", false},
    {"detokenize", cmd_detokenize, "print the text of comma-separated token ids", false},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with a chat page", true},
};

static void usage(FILE *f) {
    fprintf(f, "usage: q3moe COMMAND [options]   (q3moe COMMAND --help for a command's options)\n\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(f, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].help);
}

/* Under mpirun, ranks other than 0 only follow rank 0 (src/dist/dist.h). */
static int run_command(const struct command *c, int argc, char **argv) {
    q3_error err = {0};
    if (q3_dist_init(&argc, &argv, &err)) {
        fprintf(stderr, "q3moe: %s\n", err.msg);
        return 2;
    }
    if (q3_dist_is_follower()) {
        int rc = q3_dist_follow();
        q3_dist_finalize();
        return rc;
    }
    if (q3_dist_world() && !c->distributed) {
        fprintf(stderr, "q3moe %s: runs in one process; start it without mpirun\n", c->name);
        q3_dist_finalize();
        return 2;
    }
    int rc = c->run(argc, argv);
    q3_dist_finalize();
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return run_command(&COMMANDS[i], argc - 1, argv + 1);
    fprintf(stderr, "q3moe: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 1;
}
