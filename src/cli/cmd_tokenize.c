/* q3moe tokenize / detokenize: text to token ids and back with a model's tokenizer, to check a
 * prompt's tokens or read what a model produced. The model is whatever q3_tok_load takes: a
 * GGUF, a tokenizer.json or a Hugging Face model directory; without -m, the usual default
 * (q3_cli_model_path). tokenize prints a JSON array of ids; detokenize prints the text and a
 * newline. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include "cli/commands.h"
#include "cli/common.h"
#include "text/tokenizer.h"

/* The options both commands share. */
typedef struct tok_args {
    const char *model;
    const char *input; /* the one positional argument */
    bool no_special;
} tok_args;

/* Parses argv; returns -1 to go on, or the exit code (help: 0, bad usage: 2). */
static int parse_args(int argc, char **argv, bool allow_no_special, const char *usage, tok_args *a) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"no-special", no_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    *a = (tok_args){0};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
        if (ch == 'm') a->model = optarg;
        else if (ch == 'n' && allow_no_special) a->no_special = true;
        else if (ch == 'h') {
            fputs(usage, stdout);
            return 0;
        } else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fputs(usage, stderr);
        return 2;
    }
    a->input = argv[optind];
    return -1;
}

/* Reads all of stdin (for `tokenize -`): text too long or awkward for the command line. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, stdin);
        if (n < cap) break;
        char *more = realloc(buf, cap *= 2);
        if (!more) free(buf);
        buf = more;
    }
    *len = n;
    return buf;
}

static q3_tokenizer *load_tokenizer(const char *model, const char *command) {
    const char *path = q3_cli_model_path(model);
    if (!path) return NULL;
    q3_tokenizer *tok;
    q3_error err = {0};
    if (q3_tok_load(&tok, path, &err)) {
        fprintf(stderr, "q3moe %s: %s\n", command, err.msg);
        return NULL;
    }
    return tok;
}

int cmd_tokenize(int argc, char **argv) {
    static const char usage[] =
        "usage: q3moe tokenize [-m MODEL] [--no-special] TEXT   (TEXT - reads stdin)\n"
        "  prints the token ids as a JSON array; --no-special leaves <|im_end|> and the like as\n"
        "  plain text instead of special tokens\n";
    tok_args a;
    int rc = parse_args(argc, argv, true, usage, &a);
    if (rc >= 0) return rc;
    bool from_stdin = !strcmp(a.input, "-");
    size_t len = strlen(a.input);
    char *text = from_stdin ? read_stdin(&len) : NULL;
    if (from_stdin && !text) {
        fprintf(stderr, "q3moe tokenize: out of memory reading stdin\n");
        return 1;
    }
    q3_tokenizer *tok = load_tokenizer(a.model, "tokenize");
    int32_t *ids = NULL;
    int n = 0;
    q3_error err = {0};
    rc = 1;
    if (!tok) {
    } else if (q3_tok_encode(tok, from_stdin ? text : a.input, len, !a.no_special, &ids, &n, &err)) {
        fprintf(stderr, "q3moe tokenize: %s\n", err.msg);
    } else {
        putchar('[');
        for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
        printf("]\n");
        rc = 0;
    }
    free(ids);
    free(text);
    q3_tok_free(tok);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    static const char usage[] =
        "usage: q3moe detokenize [-m MODEL] IDS   (IDS: comma-separated, e.g. 9707,1879)\n"
        "  prints the text the tokens stand for, then a newline\n";
    tok_args a;
    int rc = parse_args(argc, argv, false, usage, &a);
    if (rc >= 0) return rc;
    int32_t *ids;
    int n;
    if (!q3_cli_parse_ids(a.input, "detokenize", &ids, &n)) return 1;
    q3_tokenizer *tok = load_tokenizer(a.model, "detokenize");
    char *text = NULL;
    size_t len;
    q3_error err = {0};
    rc = 1;
    if (tok && q3_tok_decode(tok, ids, n, &text, &len, &err))
        fprintf(stderr, "q3moe detokenize: %s\n", err.msg);
    else if (tok) {
        fwrite(text, 1, len, stdout);
        putchar('\n');
        rc = 0;
    }
    free(text);
    free(ids);
    q3_tok_free(tok);
    return rc;
}
