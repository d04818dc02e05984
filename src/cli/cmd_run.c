/* q3moe run: one prompt in, streamed text out. The prompt is raw text (a completion), or with
 * --chat a user message put through the Qwen3 chat template. Prompt and generation rates go to
 * stderr at the end, so stdout holds only the text. */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "base/clock.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/config.h"
#include "cli/dataset.h"
#include "cli/gen_options.h"
#include "engine/engine.h"
#include "text/chat.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q3moe run [-m MODEL] (-p PROMPT | -f FILE | --dataset FILE [--input-truncated-len N])\n"
            "                 [-n MAX_NEW_TOKENS] [--chat [--no-think] [--system TEXT]] [--no-escape] [--raw]\n"
            "                 [--config FILE.yaml] %s\n"
            "Without -m, the bundled demo model. -p understands \\n, \\t, \\\\ escapes unless --no-escape.\n"
            "--chat applies the Qwen3 chat template; --raw with --chat shows the <think> block as is.\n"
            "--dataset runs every prompt of a .json list or a LongBench .jsonl file, cut to N tokens\n"
            "(the middle of the context goes), and prints a table of per-prompt speeds to stderr.\n"
            "--config reads options from a YAML file; the command line overrides them.\n",
            Q3_GEN_OPTIONS_USAGE);
}

typedef struct printer {
    q3_chat_stream chat;
    bool chat_mode, raw;
    int tokens;
    double t_first, t_last;
} printer;

/* Reasoning goes to stderr, dimmed on a terminal, so stdout is the answer alone. */
static void print_part(void *user, q3_chat_part part, const char *text, size_t len) {
    (void)user;
    if (part == Q3_CHAT_REASONING) fwrite(text, 1, len, stderr);
    else fwrite(text, 1, len, stdout);
}

static void on_event(void *ctx, const q3_event *ev) {
    printer *p = ctx;
    if (ev->token >= 0) {
        p->tokens++;
        double t = q3_now_s();
        if (p->tokens == 1) p->t_first = t;
        p->t_last = t;
    }
    if (ev->text_len) {
        if (p->chat_mode && !p->raw) q3_chat_stream_feed(&p->chat, ev->text, ev->text_len);
        else fwrite(ev->text, 1, ev->text_len, stdout);
    }
    if (ev->finish != Q3_FINISH_NONE && p->chat_mode && !p->raw) q3_chat_stream_finish(&p->chat);
    fflush(stdout);
}

/* The user's text as a one-turn (or system + user) conversation, rendered by the model's template. */
static char *chat_prompt(const q3_tokenizer *tok, const char *user, const char *system, bool think) {
    json_t *msgs = json_array();
    if (system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", user));
    q3_chat_options o = {.add_generation_prompt = true, .enable_thinking = think, .template = q3_tok_chat_template(tok)};
    char *out = NULL;
    q3_error e = {0};
    if (q3_chat_render(msgs, NULL, &o, &out, &e)) fprintf(stderr, "q3moe run: %s\n", e.msg);
    json_decref(msgs);
    return out;
}


/* --dataset: every prompt of the file in turn, through one engine (dataset.c). */
static int run_dataset(const char *dataset, const char *model, const q3_prompt_style *style, int n_predict,
                       q3_gen_options *g) {
    const char *path = q3_cli_model_path(model);
    q3_model *m = NULL;
    q3_tokenizer *tok = NULL;
    q3_sampling defaults;
    if (!path || !q3_cli_open_model(path, &g->load, &m, &tok, &defaults)) return 1;
    int rc = q3_dataset_run(dataset, style, n_predict, g, m, tok, &defaults);
    q3_tok_free(tok);
    q3_model_free(m);
    return rc;
}

int cmd_run(int argc, char **argv) {
    if (!q3_cli_apply_config(&argc, &argv, "run")) return 1;
    enum { O_CHAT = 300, O_NO_THINK, O_SYSTEM, O_NO_ESCAPE, O_RAW, O_DATASET, O_TRUNCATE };
    struct option opts[64] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"file", required_argument, 0, 'f'},  {"n-predict", required_argument, 0, 'n'},
        {"chat", no_argument, 0, O_CHAT},     {"no-think", no_argument, 0, O_NO_THINK},
        {"system", required_argument, 0, O_SYSTEM}, {"no-escape", no_argument, 0, O_NO_ESCAPE},
        {"raw", no_argument, 0, O_RAW},       {"help", no_argument, 0, 'h'},
        {"dataset", required_argument, 0, O_DATASET}, {"input-truncated-len", required_argument, 0, O_TRUNCATE}};
    q3_gen_options_add_long(opts, 64);
    const char *model = NULL, *prompt_arg = NULL, *file = NULL, *system = NULL, *dataset = NULL;
    long truncate_to = 0;
    bool chat = false, think = true, escape = true, raw = false;
    q3_gen_options g;
    q3_gen_options_init(&g);
    long n_predict = 256;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:p:f:n:t:s:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model = optarg; break;
        case 'p': prompt_arg = optarg; break;
        case 'f': file = optarg; break;
        case 'n': if (!q3_cli_parse_int(optarg, "-n", 1, 1 << 24, &n_predict)) return 2; break;
        case O_CHAT: chat = true; break;
        case O_NO_THINK: think = false; break;
        case O_SYSTEM: system = optarg; break;
        case O_NO_ESCAPE: escape = false; break;
        case O_RAW: raw = true; break;
        case O_DATASET: dataset = optarg; break;
        case O_TRUNCATE: if (!q3_cli_parse_int(optarg, "--input-truncated-len", 1, 1 << 24, &truncate_to)) return 2; break;
        case 'h': usage(stdout); return 0;
        default:
            if (q3_gen_options_parse(&g, ch, optarg) == 0) break;
            usage(stderr);
            return 2;
        }
    }
    if ((!prompt_arg + !file + !dataset) != 2 || optind < argc) {
        usage(stderr);
        return 2;
    }
    if (dataset) {
        q3_prompt_style style = {.chat = chat, .think = think, .system = system, .max_tokens = (int)truncate_to};
        return run_dataset(dataset, model, &style, (int)n_predict, &g);
    }
    char *text = file ? q3_cli_read_file(file, NULL) : strdup(prompt_arg);
    if (!text) return 1;
    if (escape && !file) q3_cli_unescape(text);
    const char *path = q3_cli_model_path(model);
    q3_model *m = NULL;
    q3_tokenizer *tok = NULL;
    q3_sampling defaults;
    int rc = 1;
    if (!path || !q3_cli_open_model(path, &g.load, &m, &tok, &defaults)) goto done;
    if (chat) {
        char *rendered = chat_prompt(tok, text, system, think);
        if (!rendered) goto done;
        free(text);
        text = rendered;
    }
    printer p = {.chat_mode = chat, .raw = raw};
    if (!chat) fputs(text, stdout); /* a completion reads on from its prompt */
    q3_chat_stream_init(&p.chat, chat && q3_chat_opens_reasoning(text), print_part, &p);
    rc = q3_gen_run_one(&g, m, tok, &defaults, text, chat, (int)n_predict, on_event, &p);
    if (rc == 0) {
        putchar('\n');
        fflush(stdout);
        q3_gen_report(&g, p.tokens, p.t_first, p.t_last);
    }
done:
    free(text);
    q3_tok_free(tok);
    q3_model_free(m);
    return rc;
}
