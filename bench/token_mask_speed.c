/* The cost of constrained decoding per generated token: the token mask over the Qwen3
 * vocabulary (151,936 ids) at every step of replies that follow a grammar, on one core.
 *
 * Each case compiles its grammar (a JSON schema, any JSON object, or tool calls in both
 * formats), tokenizes a reply the grammar accepts, and then, token by token as decoding would,
 * computes the mask and commits the token to the matcher. It prints the mean, median and worst
 * mask time per token, and the share of steps the free-text tables answered. The vocabulary trie
 * is built once, as the engine does, and its build time is printed apart; the free-text tables
 * are filled on first use, which the best of several runs leaves out.
 *
 * Each case runs REPEAT times and the run with the lowest mean is printed (best of REPEAT, as
 * bench/RESULTS.md's tables are: on a shared machine the noise only ever adds time).
 *
 * usage: token_mask_speed [TOKENIZER [REPEAT]]   (defaults tests/fixtures/qwen3-tokenizer/tokenizer.json,
 *                                                relative to the repository root or $Q3_FIXTURES, and 5) */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "text/json_schema.h"
#include "text/token_mask.h"

#define VOCAB 151936

static const char *const SCHEMA =
    "{\"type\": \"object\", \"properties\": {"
    "\"title\": {\"type\": \"string\"}, \"summary\": {\"type\": \"string\"},"
    "\"published\": {\"type\": \"string\", \"format\": \"date\"},"
    "\"rating\": {\"type\": \"number\"}, \"language\": {\"enum\": [\"en\", \"fr\", \"de\"]},"
    "\"authors\": {\"type\": \"array\", \"items\": {\"type\": \"object\", \"properties\": {"
    "\"name\": {\"type\": \"string\"}, \"email\": {\"type\": \"string\", \"format\": \"email\"}},"
    "\"required\": [\"name\", \"email\"], \"additionalProperties\": false}, \"minItems\": 1}},"
    "\"required\": [\"title\", \"summary\", \"published\", \"rating\", \"language\", \"authors\"],"
    "\"additionalProperties\": false}";

static const char *const SCHEMA_REPLY =
    "{\n  \"title\": \"Mixture-of-experts inference on commodity CPUs\",\n"
    "  \"summary\": \"The paper measures how routing eight of one hundred and twenty-eight experts per token "
    "turns decoding into a memory-bandwidth problem, and shows that streaming quantized expert weights at "
    "close to the machine's read bandwidth matters more than arithmetic. It compares three kernels and two "
    "cache layouts, and reports that long prompts shift the cost to attention.\",\n"
    "  \"published\": \"2025-04-17\",\n  \"rating\": 4.5,\n  \"language\": \"en\",\n"
    "  \"authors\": [\n    {\"name\": \"Ada Lovelace\", \"email\": \"ada@example.org\"},\n"
    "    {\"name\": \"Charles Babbage\", \"email\": \"charles.babbage@example.co.uk\"}\n  ]\n}";

static const char *const OBJECT_REPLY =
    "{\"city\": \"Paris\", \"forecast\": [{\"day\": \"Monday\", \"high\": 21, \"low\": 12, \"sky\": \"sunny\"},"
    " {\"day\": \"Tuesday\", \"high\": 18, \"low\": 11, \"sky\": \"light rain in the afternoon\"}], \"units\": \"C\"}";

static const char *const TOOLS =
    "[{\"type\": \"function\", \"function\": {\"name\": \"write_file\", \"parameters\": {\"type\": \"object\","
    " \"properties\": {\"path\": {\"type\": \"string\"}, \"content\": {\"type\": \"string\"},"
    " \"overwrite\": {\"type\": \"boolean\"}}, \"required\": [\"path\", \"content\"]}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\","
    " \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}]";

static const char *const CODE =
    "import os\\n\\n\\ndef read_lines(path):\\n    \\\"\\\"\\\"Return the lines of a text file.\\\"\\\"\\\"\\n"
    "    with open(path, encoding=\\\"utf-8\\\") as f:\\n        return [line.rstrip(\\\"\\\\n\\\") for line in f]\\n";

static const char *const XML_CODE =
    "import os\n\n\ndef read_lines(path):\n    \"\"\"Return the lines of a text file.\"\"\"\n"
    "    with open(path, encoding=\"utf-8\") as f:\n        return [line.rstrip(\"\\n\") for line in f]\n";

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int repeat = 5;

/* Follows reply token by token, timing the mask before each, repeat times; prints one line. */
static void run_case(const char *name, q3_grammar *g, const char *reply, q3_token_trie *trie, const q3_tokenizer *tok) {
    int32_t *ids = NULL;
    int n = 0;
    q3_error e;
    q3_matcher *m = NULL;
    if (q3_tok_encode(tok, reply, strlen(reply), false, &ids, &n, &e) || q3_matcher_new(&m, g, &e)) {
        fprintf(stderr, "%s: %s\n", name, e.msg);
        exit(1);
    }
    uint64_t *mask = malloc(q3_token_mask_words(trie) * sizeof *mask);
    double *ms = malloc((size_t)n * sizeof *ms), *best = malloc((size_t)n * sizeof *best), best_total = 1e300;
    int free_steps = 0;
    for (int run = 0; run < repeat; run++) {
    double total = 0;
    free_steps = 0;
    q3_matcher_free(m);
    if (q3_matcher_new(&m, g, &e)) fprintf(stderr, "%s: %s\n", name, e.msg), exit(1);
    for (int i = 0; i < n; i++) {
        unsigned char stop, next;
        int room;
        free_steps += q3_matcher_free_text(m, &stop, &next, &room) != Q3_FREE_NONE;
        double t0 = q3_now_s();
        q3_token_mask(trie, m, mask);
        total += ms[i] = (q3_now_s() - t0) * 1e3;
        size_t len;
        const char *piece = q3_tok_piece(tok, ids[i], &len);
        if (getenv("SLOW") && ms[i] > 3) fprintf(stderr, "slow %.1f ms at token %d before [%.*s]\n", ms[i], i, (int)len, piece);
        if (!(mask[ids[i] >> 6] >> (ids[i] & 63) & 1) || !q3_matcher_push(m, piece, len)) {
            fprintf(stderr, "%s: token %d of the reply (%.*s) is not allowed\n", name, i, (int)len, piece);
            exit(1);
        }
        q3_matcher_commit(m);
    }
    if (!q3_matcher_accepting(m)) fprintf(stderr, "%s: the reply does not end the grammar\n", name), exit(1);
    if (total < best_total) best_total = total, memcpy(best, ms, (size_t)n * sizeof *ms);
    }
    qsort(best, (size_t)n, sizeof *best, compare_double);
    printf("| %-28s | %6d | %8.3f | %8.3f | %8.3f | %5.0f%% |\n", name, n, best_total / n, best[n / 2], best[n - 1],
           100.0 * free_steps / n);
    free(ms);
    free(best);
    free(mask);
    free(ids);
    q3_matcher_free(m);
}

static q3_grammar *tools_grammar(q3_tool_format format) {
    json_t *tools = json_loads(TOOLS, 0, NULL);
    q3_grammar *g = NULL;
    q3_error e;
    if (!tools || q3_tool_call_grammar(tools, NULL, format, &g, &e)) fprintf(stderr, "tools: %s\n", e.msg), exit(1);
    json_decref(tools);
    return g;
}

int main(int argc, char **argv) {
    char path[4096];
    const char *fixtures = getenv("Q3_FIXTURES");
    snprintf(path, sizeof path, "%s/qwen3-tokenizer/tokenizer.json", fixtures ? fixtures : "tests/fixtures");
    q3_tokenizer *tok;
    q3_token_trie *trie;
    q3_error e;
    if (q3_tok_load(&tok, argc > 1 ? argv[1] : path, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    if (argc > 2 && (repeat = atoi(argv[2])) < 1) return fprintf(stderr, "usage: token_mask_speed [TOKENIZER [REPEAT]]\n"), 2;
    double t0 = q3_now_s();
    if (q3_token_trie_new(&trie, tok, VOCAB, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    printf("vocabulary trie: %.1f ms to build\n\n", (q3_now_s() - t0) * 1e3);
    printf("| case                         | tokens | mean ms  | median   | worst ms | free  |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");

    json_t *schema = json_loads(SCHEMA, 0, NULL);
    q3_grammar *g;
    if (!schema || q3_json_schema_grammar(schema, &g, &e)) return fprintf(stderr, "schema: %s\n", e.msg), 1;
    run_case("json_schema (article)", g, SCHEMA_REPLY, trie, tok);
    q3_grammar_release(g);
    json_decref(schema);

    if (q3_json_object_grammar(&g, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    run_case("json_object", g, OBJECT_REPLY, trie, tok);
    q3_grammar_release(g);

    char reply[2048];
    g = tools_grammar(Q3_TOOL_FORMAT_JSON);
    snprintf(reply, sizeof reply,
             "<tool_call>\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"lines.py\", \"content\": \"%s\"}}\n"
             "</tool_call>", CODE);
    run_case("tool call, JSON format", g, reply, trie, tok);
    q3_grammar_release(g);
    g = tools_grammar(Q3_TOOL_FORMAT_XML);
    snprintf(reply, sizeof reply,
             "<tool_call>\n<function=write_file>\n<parameter=path>\nlines.py\n</parameter>\n<parameter=content>\n%s\n"
             "</parameter>\n</function>\n</tool_call>", XML_CODE);
    run_case("tool call, XML format", g, reply, trie, tok);
    q3_grammar_release(g);

    q3_token_trie_free(trie);
    q3_tok_free(tok);
    return 0;
}
