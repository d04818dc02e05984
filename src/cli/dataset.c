/* Prompt datasets: loading the two file forms, building (and truncating) each prompt, and
 * running them all with a per-prompt report (see dataset.h). */
#include "base/clock.h"
#include "cli/dataset.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "text/chat.h"

/* ---- loading ---- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static bool push_item(q3_dataset *d, const char *context, const char *input, int where) {
    q3_dataset_item *more = realloc(d->items, (size_t)(d->n + 1) * sizeof *more);
    if (!more) return false;
    d->items = more;
    q3_dataset_item *it = &d->items[d->n];
    *it = (q3_dataset_item){context ? strdup(context) : NULL, strdup(input), where};
    d->n++;
    return it->input && (!context || it->context);
}

/* A LongBench record: an object with string "context" and "input". Returns NULL when it is one,
 * else what is wrong with it. */
static const char *record_problem(const json_t *rec) {
    if (!json_is_object(rec)) return "expected a JSON object with \"context\" and \"input\"";
    if (!json_is_string(json_object_get(rec, "context"))) return "no \"context\" string";
    if (!json_is_string(json_object_get(rec, "input"))) return "no \"input\" string";
    return NULL;
}

static bool add_record(q3_dataset *d, const json_t *rec, int where) {
    return push_item(d, json_string_value(json_object_get(rec, "context")),
                     json_string_value(json_object_get(rec, "input")), where);
}

static bool load_json_list(const char *path, q3_dataset *d) {
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        if (err.line < 0) fprintf(stderr, "q3moe: %s: %s\n", path, err.text);
        else fprintf(stderr, "q3moe: %s:%d:%d: malformed JSON: %s\n", path, err.line, err.column, err.text);
        return false;
    }
    bool ok = json_is_array(root);
    if (!ok) fprintf(stderr, "q3moe: %s: expected a JSON list of prompts\n", path);
    for (size_t i = 0; ok && i < json_array_size(root); i++) {
        const json_t *item = json_array_get(root, i);
        const char *problem = json_is_string(item) ? NULL : record_problem(item);
        if (problem) {
            fprintf(stderr, "q3moe: %s: item %zu: expected a prompt string or a record (%s)\n", path, i + 1, problem);
            ok = false;
        } else {
            ok = json_is_string(item) ? push_item(d, NULL, json_string_value(item), (int)i + 1)
                                      : add_record(d, item, (int)i + 1);
            if (!ok) fprintf(stderr, "q3moe: %s: out of memory\n", path);
        }
    }
    json_decref(root);
    return ok;
}

static bool load_jsonl(const char *path, q3_dataset *d) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "q3moe: %s: %s\n", path, strerror(errno));
        return false;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    bool ok = true;
    for (int lineno = 1; ok && (len = getline(&line, &cap, f)) >= 0; lineno++) {
        if (strspn(line, " \t\r\n") == (size_t)len) continue; /* blank lines, as at the end of a file */
        json_error_t err;
        json_t *rec = json_loadb(line, (size_t)len, 0, &err);
        const char *problem = rec ? record_problem(rec) : err.text;
        if (problem) {
            fprintf(stderr, "q3moe: %s:%d: %s%s\n", path, lineno, rec ? "" : "malformed JSON: ", problem);
            ok = false;
        } else if (!(ok = add_record(d, rec, lineno))) {
            fprintf(stderr, "q3moe: %s: out of memory\n", path);
        }
        json_decref(rec);
    }
    if (ok && ferror(f)) {
        fprintf(stderr, "q3moe: %s: %s\n", path, strerror(errno));
        ok = false;
    }
    free(line);
    fclose(f);
    return ok;
}

bool q3_dataset_load(const char *path, q3_dataset *out) {
    *out = (q3_dataset){0};
    bool ok;
    if (ends_with(path, ".jsonl")) {
        ok = load_jsonl(path, out);
    } else if (ends_with(path, ".json")) {
        ok = load_json_list(path, out);
    } else {
        fprintf(stderr, "q3moe: %s: a dataset is a .json list of prompts or a .jsonl file of LongBench records\n",
                path);
        return false;
    }
    out->by_line = ends_with(path, ".jsonl");
    if (ok && out->n == 0) {
        fprintf(stderr, "q3moe: %s: no prompts\n", path);
        ok = false;
    }
    if (!ok) q3_dataset_free(out);
    return ok;
}

void q3_dataset_free(q3_dataset *d) {
    for (int i = 0; i < d->n; i++) {
        free(d->items[i].context);
        free(d->items[i].input);
    }
    free(d->items);
    *d = (q3_dataset){0};
}

/* ---- building a prompt ---- */

/* a, b and c joined, malloc'd (a and b by length: they may be cut from a longer text). */
static char *concat3(const char *a, size_t na, const char *b, size_t nb, const char *c) {
    size_t nc = strlen(c);
    char *s = malloc(na + nb + nc + 1);
    if (!s) return NULL;
    if (na) memcpy(s, a, na);
    if (nb) memcpy(s + na, b, nb);
    memcpy(s + na + nb, c, nc + 1);
    return s;
}

/* Bytes of s[0..n) that end on a whole UTF-8 character: a cut between tokens can split one. */
static size_t whole_prefix(const char *s, size_t n) {
    size_t lead = n;
    while (lead > 0 && n - lead < 4 && ((unsigned char)s[lead - 1] & 0xC0) == 0x80) lead--;
    if (lead == 0) return n;
    unsigned char c = (unsigned char)s[lead - 1];
    size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return n - (lead - 1) < want ? lead - 1 : n;
}

/* Where the whole characters of s[0..n) start, skipping the tail of one cut at the front. */
static size_t whole_start(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && i < 3 && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
    return i;
}

/* The text of ids with the middle cut out so that keep tokens remain: the first half and the
 * last half, joined directly as LongBench joins them. NULL after printing why. */
static char *cut_middle(const q3_tokenizer *tok, const int32_t *ids, int n, int keep) {
    int head = keep / 2, tail = keep - head;
    char *a = NULL, *b = NULL, *out = NULL;
    size_t na = 0, nb = 0;
    q3_error e = {0};
    if (q3_tok_decode(tok, ids, head, &a, &na, &e) == Q3_OK &&
        q3_tok_decode(tok, ids + n - tail, tail, &b, &nb, &e) == Q3_OK) {
        size_t skip = whole_start(b, nb);
        out = concat3(a, whole_prefix(a, na), b + skip, nb - skip, "");
    } else {
        fprintf(stderr, "q3moe: the prompt: %s\n", e.msg);
    }
    free(a);
    free(b);
    return out;
}

/* The prompt as the model will see it: body then question, raw or rendered by the chat
 * template; NULL after printing why. */
static char *render(const char *body, const char *question, const q3_tokenizer *tok, const q3_prompt_style *st) {
    char *user = concat3(body, strlen(body), "", 0, question);
    if (!user || !st->chat) return user;
    json_t *msgs = json_array();
    if (st->system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", st->system));
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", user));
    q3_chat_options o = {.add_generation_prompt = true, .enable_thinking = st->think,
                         .template = q3_tok_chat_template(tok)};
    char *out = NULL;
    q3_error e = {0};
    if (q3_chat_render(msgs, NULL, &o, &out, &e)) fprintf(stderr, "q3moe: the prompt: %s\n", e.msg);
    json_decref(msgs);
    free(user);
    return out;
}

/* Tokens in text (the ids too, when ids is not NULL), or -1 after printing why. */
static int count_tokens(const q3_tokenizer *tok, const char *text, bool special, int32_t **ids) {
    int32_t *got = NULL;
    int n = 0;
    q3_error e = {0};
    if (q3_tok_encode(tok, text, strlen(text), special, &got, &n, &e)) {
        fprintf(stderr, "q3moe: the prompt: %s\n", e.msg);
        return -1;
    }
    if (ids) *ids = got;
    else free(got);
    return n;
}

/* The prompt with the middle of body cut out until the whole fits in st->max_tokens, given
 * that it has *n tokens uncut; *n becomes the new count. Cutting tokens out and encoding the
 * joined text again can merge or split a token at the seam, so the count is checked and the
 * cut made deeper until the prompt fits. */
static char *fit(const char *body, const char *question, const q3_tokenizer *tok, const q3_prompt_style *st,
                 const char *label, int *n) {
    int32_t *ids = NULL;
    int n_body = count_tokens(tok, body, false, &ids), keep = n_body;
    char *prompt = NULL;
    while (n_body >= 0 && *n > st->max_tokens) {
        free(prompt);
        prompt = NULL;
        keep -= *n - st->max_tokens;
        if (keep < 0) {
            fprintf(stderr, "q3moe: %s: input_truncated_len %d leaves no room for the question and template\n",
                    label, st->max_tokens);
            break;
        }
        char *cut = cut_middle(tok, ids, n_body, keep);
        prompt = cut ? render(cut, question, tok, st) : NULL;
        free(cut);
        if (!prompt || (*n = count_tokens(tok, prompt, st->chat, NULL)) < 0) break;
    }
    free(ids);
    if (prompt && (*n < 0 || *n > st->max_tokens)) {
        free(prompt);
        prompt = NULL;
    }
    return prompt;
}

char *q3_dataset_prompt(const q3_dataset_item *item, const q3_tokenizer *tok, const q3_prompt_style *st,
                        const char *label, int *n_tokens) {
    /* The context may lose its middle; the question after it is kept whole. A plain prompt is
     * all context. */
    const char *body = item->context ? item->context : item->input;
    const char *question = item->context ? item->input : "";
    char *after = concat3("\n\n", *question ? 2 : 0, question, strlen(question), "");
    char *prompt = after ? render(body, after, tok, st) : NULL;
    int n = prompt ? count_tokens(tok, prompt, st->chat, NULL) : -1;
    if (n < 0) {
        free(prompt);
        prompt = NULL;
    } else if (n > st->max_tokens && st->max_tokens > 0) {
        free(prompt);
        prompt = fit(body, after, tok, st, label, &n);
    }
    free(after);
    if (prompt) *n_tokens = n;
    return prompt;
}

/* ---- running ---- */

/* What one prompt's generation printed and measured. */
typedef struct answer {
    q3_chat_stream chat;
    bool chat_mode;
    int tokens;
    double t_first, t_last;
} answer;

/* Reasoning goes to stderr, as in `q3moe run --chat`, so stdout holds the answers. */
static void print_part(void *user, q3_chat_part part, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, part == Q3_CHAT_REASONING ? stderr : stdout);
}

static void on_event(void *ctx, const q3_event *ev) {
    answer *a = ctx;
    if (ev->token >= 0) {
        double t = q3_now_s();
        if (a->tokens++ == 0) a->t_first = t;
        a->t_last = t;
    }
    if (ev->text_len) {
        if (a->chat_mode) q3_chat_stream_feed(&a->chat, ev->text, ev->text_len);
        else fwrite(ev->text, 1, ev->text_len, stdout);
    }
    if (ev->finish != Q3_FINISH_NONE && a->chat_mode) q3_chat_stream_finish(&a->chat);
    fflush(stdout);
}

typedef struct row {
    bool ok;
    int prompt_tokens, generated;
    double ttft_s, decode_s;
} row;

static double rate(double tokens, double seconds) { return seconds > 0 ? tokens / seconds : 0; }

static void print_table(const q3_dataset *d, const row *rows) {
    fprintf(stderr, "\n%6s %6s %12s %10s %10s %14s %13s\n", "#", d->by_line ? "line" : "item", "prompt tok", "generated", "TTFT ms",
            "prefill tok/s", "decode tok/s");
    int done = 0;
    long prompt = 0, generated = 0, decoded = 0;
    double ttft = 0, decode = 0;
    for (int i = 0; i < d->n; i++) {
        const row *r = &rows[i];
        if (!r->ok) {
            fprintf(stderr, "%6d %6d %12s\n", i + 1, d->items[i].where, "failed");
            continue;
        }
        int decode_tokens = r->generated > 1 ? r->generated - 1 : 0; /* the first comes with the prefill */
        fprintf(stderr, "%6d %6d %12d %10d %10.1f %14.1f %13.1f\n", i + 1, d->items[i].where, r->prompt_tokens,
                r->generated, r->ttft_s * 1e3, rate(r->prompt_tokens, r->ttft_s), rate(decode_tokens, r->decode_s));
        done++;
        prompt += r->prompt_tokens;
        generated += r->generated;
        decoded += decode_tokens;
        ttft += r->ttft_s;
        decode += r->decode_s;
    }
    fprintf(stderr,
            "summary: %d/%d prompts, %ld prompt tokens, %ld generated tokens, mean TTFT %.1f ms, "
            "prefill %.1f tok/s, decode %.1f tok/s\n",
            done, d->n, prompt, generated, done ? ttft * 1e3 / done : 0.0, rate((double)prompt, ttft),
            rate((double)decoded, decode));
}

/* Runs the prompts in order, one at a time, as the seed deployments measure batch-1 latency. */
static int run_prompts(const q3_dataset *d, char **prompts, const q3_prompt_style *st, int max_new,
                       q3_gen_options *g, q3_engine *en, const q3_tokenizer *tok, const q3_sampling *defaults,
                       row *rows) {
    int rc = 0;
    for (int i = 0; i < d->n; i++) {
        printf("=== prompt %d/%d ===\n", i + 1, d->n);
        fflush(stdout);
        answer a = {.chat_mode = st->chat};
        q3_chat_stream_init(&a.chat, st->chat && q3_chat_opens_reasoning(prompts[i]), print_part, &a);
        if (q3_gen_generate(g, en, tok, defaults, prompts[i], st->chat, max_new, on_event, &a)) {
            rc = 1;
            continue;
        }
        putchar('\n');
        rows[i] = (row){true, g->prompt_tokens, a.tokens, g->ttft_s, a.t_last - a.t_first};
    }
    fflush(stdout);
    return rc;
}

int q3_dataset_run(const char *path, const q3_prompt_style *st, int max_new, q3_gen_options *g,
                   const q3_model *m, const q3_tokenizer *tok, const q3_sampling *defaults) {
    q3_dataset d;
    if (!q3_dataset_load(path, &d)) return 1;
    char **prompts = calloc((size_t)d.n, sizeof *prompts);
    row *rows = calloc((size_t)d.n, sizeof *rows);
    int rc = prompts && rows ? 0 : 1, longest = 0;
    for (int i = 0; rc == 0 && i < d.n; i++) {
        int n = 0;
        char label[PATH_MAX + 32];
        snprintf(label, sizeof label, d.by_line ? "%s:%d" : "%s: item %d", path, d.items[i].where);
        if (!(prompts[i] = q3_dataset_prompt(&d.items[i], tok, st, label, &n))) rc = 1;
        if (n > longest) longest = n;
    }
    /* Every prompt's prefill is measured in full: a prefix cached from an earlier prompt (a shared
     * system prompt) would flatter the figures. The context grows to fit the longest prompt. */
    g->engine.prefix_cache = false;
    int model_ctx = q3_model_config(m)->max_context;
    if (g->engine.max_context <= 0 && longest + max_new > 8192)
        g->engine.max_context = longest + max_new < model_ctx ? longest + max_new : model_ctx;
    q3_engine *en = rc == 0 ? q3_gen_engine_new(g, m, tok) : NULL;
    if (en) {
        rc = run_prompts(&d, prompts, st, max_new, g, en, tok, defaults, rows);
        q3_engine_free(en);
        print_table(&d, rows);
    } else {
        rc = 1;
    }
    for (int i = 0; prompts && i < d.n; i++) free(prompts[i]);
    free(prompts);
    free(rows);
    q3_dataset_free(&d);
    return rc;
}
