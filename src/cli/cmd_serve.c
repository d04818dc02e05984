/* q3moe serve: the OpenAI- and Anthropic-compatible HTTP server (src/server) over one model.
 *
 * Loads the model and its tokenizer, starts the engine (continuous batching over a paged KV
 * cache shared by all requests), starts the server, and runs until SIGINT or SIGTERM, then stops
 * the server (cancelling what still runs) before the engine. Options come from the command line
 * and from --config FILE.yaml (keys are the long options with underscores). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/config.h"
#include "cli/gen_options.h"
#include "server/server.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q3moe serve [-m MODEL] [--host ADDR] [--port N] [--api-key KEY] [--served-model-name NAME]\n"
            "                   [--max-body BYTES] [--max-connections N] [--header-timeout SECONDS] [--timeout SECONDS]\n"
            "                   [--cors-origin ORIGIN] [--config FILE.yaml]\n"
            "                   %s\n"
            "Without -m, the bundled demo model. Endpoints: POST /v1/chat/completions, POST /v1/completions,\n"
            "POST /v1/responses, POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models,\n"
            "POST /tokenize, POST /detokenize, GET /health, GET /metrics, and a chat page at /.\n"
            "--port 0 picks a free port. --api-key guards everything but /, /health and /metrics.\n"
            "--timeout ends a request after SECONDS (finish_reason \"length\"); --header-timeout (default 10) is\n"
            "how long a connection may take to send its request head (then 408). --cors-origin lets browser pages\n"
            "of ORIGIN (or * for any) call the API. The sampling options set the\n"
            "defaults that requests override; --stop and --ignore-eos are per request (stop, ignore_eos).\n"
            "--batch-size (alias --max-batch-size) is how many sequences run at once (default 8).\n",
            Q3_GEN_OPTIONS_USAGE);
}

/* The name clients use: the model file's or directory's base name, without ".gguf". */
static char *model_name_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return NULL;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = 0;
    const char *base = strrchr(copy, '/') ? strrchr(copy, '/') + 1 : copy;
    char *name = strdup(base);
    free(copy);
    if (name && strlen(name) > 5 && !strcmp(name + strlen(name) - 5, ".gguf")) name[strlen(name) - 5] = 0;
    return name;
}

typedef struct serve_args {
    const char *model, *model_name;
    q3_server_options server;
    q3_gen_options gen;
} serve_args;

/* Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv, serve_args *a) {
    enum { O_HOST = 300, O_PORT, O_KEY, O_BODY, O_CONNS, O_TIMEOUT, O_NAME, O_HEADER_TIMEOUT, O_CORS };
    struct option opts[64] = {
        {"model", required_argument, 0, 'm'},         {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT},       {"api-key", required_argument, 0, O_KEY},
        {"max-body", required_argument, 0, O_BODY},   {"max-connections", required_argument, 0, O_CONNS},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"served-model-name", required_argument, 0, O_NAME},
        {"header-timeout", required_argument, 0, O_HEADER_TIMEOUT}, {"cors-origin", required_argument, 0, O_CORS},
        {"help", no_argument, 0, 'h'}};
    q3_gen_options_add_long(opts, 64);
    q3_gen_options_init(&a->gen);
    a->gen.engine.max_batch_size = q3_engine_defaults().max_batch_size; /* a server serves many */
    a->server = q3_server_defaults();
    long v;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:t:s:c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': a->model = optarg; break;
        case O_HOST: a->server.host = optarg; break;
        case O_PORT: if (!q3_cli_parse_int(optarg, "--port", 0, 65535, &v)) return 2; a->server.port = (int)v; break;
        case O_KEY: a->server.api_key = optarg; break;
        case O_NAME: a->model_name = optarg; break;
        case O_BODY: if (!q3_cli_parse_int(optarg, "--max-body", 1024, 1L << 32, &v)) return 2; a->server.max_body = (size_t)v; break;
        case O_CONNS: if (!q3_cli_parse_int(optarg, "--max-connections", 1, 100000, &v)) return 2; a->server.max_connections = (int)v; break;
        case O_TIMEOUT: if (!q3_cli_parse_int(optarg, "--timeout", 0, 1L << 30, &v)) return 2; a->server.timeout_s = (double)v; break;
        case O_HEADER_TIMEOUT:
            if (!q3_cli_parse_int(optarg, "--header-timeout", 1, 3600, &v)) return 2;
            a->server.header_timeout_s = (double)v;
            break;
        case O_CORS: a->server.cors_origin = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            if (q3_gen_options_parse(&a->gen, ch, optarg) == 0) break;
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "q3moe serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (a->gen.n_stops || a->gen.ignore_eos) {
        fprintf(stderr, "q3moe serve: --stop and --ignore-eos are set per request (the stop and ignore_eos fields)\n");
        return 2;
    }
    return -1;
}

/* Blocks until SIGINT or SIGTERM. The signals are blocked in every thread (the mask is set before
 * any starts), so they arrive here. */
static void wait_for_signal(const sigset_t *set) {
    int sig;
    sigwait(set, &sig);
    fprintf(stderr, "q3moe serve: %s, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
}

int cmd_serve(int argc, char **argv) {
    if (!q3_cli_apply_config(&argc, &argv, "serve")) return 1;
    serve_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *path = q3_cli_model_path(a.model);
    q3_model *m = NULL;
    q3_tokenizer *tok = NULL;
    q3_engine *en = NULL;
    q3_server *srv = NULL;
    char *name = NULL;
    q3_sampling defaults;
    q3_error e = {0};
    rc = 1;
    if (!path || !q3_cli_open_model(path, &a.gen.load, &m, &tok, &defaults)) goto done;
    if (!(name = a.model_name ? strdup(a.model_name) : model_name_of(path))) goto done;
    q3_engine_options eo = a.gen.engine;
    int model_context = q3_model_config(m)->max_context;
    if (eo.max_context <= 0 || eo.max_context > model_context) eo.max_context = model_context;
    q3_gen_report_kv(m, &eo);
    if (q3_engine_new(&en, m, tok, &eo, &e)) {
        fprintf(stderr, "q3moe serve: %s\n", e.msg);
        goto done;
    }
    a.server.model_name = name;
    a.server.max_context = eo.max_context;
    a.server.cache_tokens = eo.cache_tokens;
    a.server.sampling = q3_gen_sampling(&a.gen, &defaults);
    if (q3_server_start(&srv, en, tok, &a.server, &e)) {
        fprintf(stderr, "q3moe serve: %s\n", e.msg);
        goto done;
    }
    const char *host = a.server.host;
    bool v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "q3moe serve: %s on http://%s%s%s:%d (context %d, batch %d, KV cache %d tokens)\n", name,
            v6 ? "[" : "", host, v6 ? "]" : "", q3_server_port(srv), eo.max_context, eo.max_batch_size,
            eo.cache_tokens);
    wait_for_signal(&stop_signals);
    rc = 0;
done:
    q3_server_stop(srv);
    q3_engine_free(en);
    q3_tok_free(tok);
    q3_model_free(m);
    free(name);
    return rc;
}
