/* q3moe bench: the field's single-concurrency table (prompt tokens, generated tokens, prefill
 * and decode tokens per second, as llama-bench and KTransformers report them) next to the
 * machine's measured streaming-read bandwidth and the decode rate as a fraction of the bandwidth
 * roofline. With --synthetic it first writes a random-weight GGUF of any published architecture
 * (removed afterwards unless --keep), so the real shapes can be measured without downloads;
 * with --layers it builds only the first layers and projects the full depth.
 *
 *   q3moe bench -m MODEL -p 512,1024 -n 128 [--threads N] [--json] [--repeat N] [--plot F.svg]
 *   q3moe bench --synthetic configs/qwen3-30b-a3b.config.json --type q4_k_m [--layers N] ...
 *
 * Tables go to stdout (markdown, ready for bench/RESULTS.md), progress to stderr. */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include "base/clock.h"
#include "bench/bandwidth.h"
#include "bench/machine.h"
#include "bench/plot.h"
#include "bench/roofline.h"
#include "bench/serving.h"
#include "bench/speed.h"
#include "bench/synth.h"
#include "cli/commands.h"
#include "cli/config.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "cli/rope_options.h"
#include "dist/dist.h"
#include "model/model.h"
#include "cpu/kernel_table.h"

#define MAX_PROMPTS 64
#define BANDWIDTH_RUNS 5
#define GIB (1024.0 * 1024.0 * 1024.0)

static void usage(FILE *f) {
    fprintf(f,
            "usage: q3moe bench [-m MODEL | --synthetic CONFIG.json [--type TYPE] [--layers N] [--keep FILE.gguf]]\n"
            "                   [-p N[,N...]] [-n N] [-t|--threads N] [--repeat N] [--json] [--plot FILE.svg]\n"
            "                   [--kv-type f16|bf16|f32|q8_0] [-c|--ctx-size N] [--chunk-size N]\n"
            "                   [--serving N [--ttft-prompt N]] [--config FILE.yaml] " Q3_LOAD_OPTIONS_USAGE "\n"
            "  -p          prompt lengths to measure (default 512)\n"
            "  -n          tokens decoded after each prompt (default 128)\n"
            "  --repeat    runs per prompt length; the best is reported (default 1)\n"
            "  --synthetic random weights of this config.json's architecture, in a temporary GGUF\n"
            "              ($TMPDIR, /tmp or the current directory, whichever has room)\n"
            "  --type      of the synthetic weights: %s (default q4_k_m)\n"
            "  --layers    build only the first N layers and also report the projected full model\n"
            "  --serving   also run N streams through the engine (prompt: the first -p, -n tokens each):\n"
            "              their aggregate decode rate against the bandwidth bound of the experts they\n"
            "              touch, and the time to first token of a --ttft-prompt (1024) token prompt\n"
            "              idle and while N - 1 streams decode\n"
            "Under mpirun it also prints every rank's memory and communication time.\n",
            q3_synth_type_names());
}

typedef struct bench_args {
    const char *model, *synthetic, *keep, *plot;
    q3_synth_type type;
    int prompts[MAX_PROMPTS], n_prompts;
    long gen, threads, repeat, layers, ctx_size, chunk;
    long serving, ttft_prompt; /* --serving N streams; the long prompt whose TTFT it measures */
    q3_type kv_type;
    bool json;
    q3_load_options load; /* --rope-scaling, --device, --cpu-experts, --gpu-experts */
} bench_args;

/* One measured prompt length, with its projection to the full depth when there is one. */
typedef struct bench_row {
    int prompt, gen;
    q3_speed_times t;
    q3_decode_bytes bytes;
    double prefill_tok_s, decode_tok_s, roofline_tok_s;
    double weights_roofline_tok_s; /* against the bandwidth of reading the mapped weights */
    bool projected;
    q3_decode_bytes full_bytes;
    double full_prefill_tok_s, full_decode_tok_s, full_roofline_tok_s, full_weights_roofline_tok_s;
} bench_row;

/* ---- options ---- */

static bool parse_prompts(const char *s, bench_args *a) {
    a->n_prompts = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > (1 << 20) || (*end && *end != ',') || a->n_prompts == MAX_PROMPTS) {
            fprintf(stderr, "q3moe bench: -p: '%s' is not a comma-separated list of prompt lengths (1..%d, at most %d)\n",
                    s, 1 << 20, MAX_PROMPTS);
            return false;
        }
        a->prompts[a->n_prompts++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (a->n_prompts == 0) fprintf(stderr, "q3moe bench: -p: no prompt lengths given\n");
    return a->n_prompts > 0;
}

/* 0 to go on, else the exit code (0 after --help, 2 on bad usage). */
static int parse_args(int argc, char **argv, bench_args *a, bool *done) {
    enum { O_JSON = 600, O_REPEAT, O_PLOT, O_KV, O_CHUNK, O_SYNTH, O_TYPE, O_LAYERS, O_KEEP, O_SERVING, O_TTFT };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"n-prompt", required_argument, 0, 'p'},
        {"n-gen", required_argument, 0, 'n'}, {"threads", required_argument, 0, 't'},
        {"ctx-size", required_argument, 0, 'c'}, {"json", no_argument, 0, O_JSON},
        {"repeat", required_argument, 0, O_REPEAT}, {"plot", required_argument, 0, O_PLOT},
        {"kv-type", required_argument, 0, O_KV}, {"chunk-size", required_argument, 0, O_CHUNK},
        {"synthetic", required_argument, 0, O_SYNTH}, {"type", required_argument, 0, O_TYPE},
        {"layers", required_argument, 0, O_LAYERS}, {"keep", required_argument, 0, O_KEEP},
        {"serving", required_argument, 0, O_SERVING}, {"ttft-prompt", required_argument, 0, O_TTFT},
        {"help", no_argument, 0, 'h'}, Q3_LOAD_LONG_OPTIONS, {0, 0, 0, 0}};
    *a = (bench_args){.prompts = {512}, .n_prompts = 1, .gen = 128, .repeat = 1, .chunk = 512, .kv_type = Q3_TYPE_F16,
                      .ttft_prompt = 1024, .load = {.repack = true}};
    q3_synth_type_from_name("q4_k_m", &a->type);
    bool ok = true;
    int ch;
    optind = 1;
    while (ok && (ch = getopt_long(argc, argv, "m:p:n:t:c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': a->model = optarg; break;
        case 'p': ok = parse_prompts(optarg, a); break;
        case 'n': ok = q3_cli_parse_int(optarg, "-n", 1, 1 << 20, &a->gen); break;
        case 't': ok = q3_cli_parse_int(optarg, "--threads", 1, 1024, &a->threads); break;
        case 'c': ok = q3_cli_parse_int(optarg, "--ctx-size", 2, 1 << 24, &a->ctx_size); break;
        case O_JSON: a->json = true; break;
        case O_REPEAT: ok = q3_cli_parse_int(optarg, "--repeat", 1, 1000, &a->repeat); break;
        case O_PLOT: a->plot = optarg; break;
        case O_KV: ok = q3_cli_parse_kv_type(optarg, "--kv-type", &a->kv_type); break;
        case O_CHUNK: ok = q3_cli_parse_int(optarg, "--chunk-size", 1, 1 << 20, &a->chunk); break;
        case O_SYNTH: a->synthetic = optarg; break;
        case O_TYPE:
            if (!(ok = q3_synth_type_from_name(optarg, &a->type)))
                fprintf(stderr, "q3moe bench: --type: '%s' is not one of %s\n", optarg, q3_synth_type_names());
            break;
        case O_LAYERS: ok = q3_cli_parse_int(optarg, "--layers", 1, Q3_MAX_LAYERS, &a->layers); break;
        case O_KEEP: a->keep = optarg; break;
        case O_SERVING: ok = q3_cli_parse_int(optarg, "--serving", 2, 256, &a->serving); break;
        case O_TTFT: ok = q3_cli_parse_int(optarg, "--ttft-prompt", 1, 1 << 20, &a->ttft_prompt); break;
        case 'h': usage(stdout); *done = true; return 0;
        default: ok = q3_cli_parse_load_option(&a->load, ch, optarg) == 0; break;
        }
    }
    if (ok && optind < argc) fprintf(stderr, "q3moe bench: unexpected argument '%s'\n", argv[optind]), ok = false;
    if (ok && a->model && a->synthetic) fprintf(stderr, "q3moe bench: give -m or --synthetic, not both\n"), ok = false;
    if (ok && !a->synthetic && (a->layers || a->keep))
        fprintf(stderr, "q3moe bench: --layers and --keep go with --synthetic\n"), ok = false;
    int longest = 0;
    for (int i = 0; i < a->n_prompts; i++) longest = a->prompts[i] > longest ? a->prompts[i] : longest;
    if (ok && a->ctx_size && a->ctx_size < longest + a->gen)
        fprintf(stderr, "q3moe bench: --ctx-size %ld is smaller than the longest prompt plus the generated tokens (%d + %ld)\n",
                a->ctx_size, longest, a->gen), ok = false;
    if (!a->ctx_size) a->ctx_size = longest + a->gen;
    if (a->ctx_size < a->ttft_prompt + 1 && a->serving) a->ctx_size = a->ttft_prompt + 1;
    if (ok) return 0;
    usage(stderr);
    return 2;
}

/* ---- the synthetic model's file ---- */

/* The paths a signal must not leave behind: the file and the writer's .tmp beside it. */
static char cleanup_path[PATH_MAX], cleanup_tmp[PATH_MAX + 8];

static void remove_on_signal(int sig) {
    if (cleanup_path[0]) unlink(cleanup_path);
    if (cleanup_tmp[0]) unlink(cleanup_tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Removes path.tmp, and path itself unless it is to be kept, if a signal ends the process. */
static void guard_file(const char *path, bool keep) {
    snprintf(cleanup_path, sizeof cleanup_path, "%s", keep ? "" : path);
    snprintf(cleanup_tmp, sizeof cleanup_tmp, "%s.tmp", path);
    struct sigaction sa = {0};
    sa.sa_handler = remove_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static void remove_guarded_file(void) {
    if (cleanup_path[0]) unlink(cleanup_path);
    if (cleanup_tmp[0]) unlink(cleanup_tmp);
    cleanup_path[0] = cleanup_tmp[0] = 0;
}

static double free_bytes(const char *dir) {
    struct statvfs v;
    return statvfs(dir, &v) == 0 ? (double)v.f_bavail * (double)v.f_frsize : 0;
}

/* The directory of path ("." when it has none) into dir. */
static void dir_of(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, cap, ".");
    else if (slash == path) snprintf(dir, cap, "/");
    else snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

/* A new file for the model in the first directory with room: --keep's, else $TMPDIR (or /tmp),
 * else the current directory. Prints why and returns false when none has room. */
static bool make_synth_path(const char *keep, double need, char *path, size_t cap) {
    char dir[PATH_MAX];
    if (keep) {
        dir_of(keep, dir, sizeof dir);
        if (free_bytes(dir) >= need) {
            snprintf(path, cap, "%s", keep);
            return true;
        }
        fprintf(stderr, "q3moe bench: %s: the synthetic model needs %.2f GiB, %s has %.2f GiB free\n", keep,
                need / GIB, dir, free_bytes(dir) / GIB);
        return false;
    }
    const char *tmpdir = getenv("TMPDIR");
    const char *dirs[] = {tmpdir && *tmpdir ? tmpdir : "/tmp", "."};
    for (int i = 0; i < 2; i++) {
        if (free_bytes(dirs[i]) < need) continue;
        snprintf(path, cap, "%s/q3moe-synth-XXXXXX.gguf", dirs[i]);
        int fd = mkstemps(path, 5);
        if (fd >= 0) {
            close(fd);
            return true;
        }
    }
    fprintf(stderr, "q3moe bench: the synthetic model needs %.2f GiB of disk; %s has %.2f GiB free and . has %.2f GiB "
                    "(set TMPDIR to a larger disk, or --keep PATH, or fewer --layers)\n",
            need / GIB, dirs[0], free_bytes(dirs[0]) / GIB, free_bytes(".") / GIB);
    return false;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Writes the synthetic model of a->synthetic into path; *full gets the whole architecture. */
static int write_synthetic(const bench_args *a, q3_config *full, char *path, size_t cap) {
    q3_error e = {0};
    if (q3_config_from_json_file(full, a->synthetic, &e)) {
        fprintf(stderr, "q3moe bench: %s\n", e.msg);
        return 1;
    }
    q3_config c = *full;
    if (a->layers > c.n_layers) {
        fprintf(stderr, "q3moe bench: --layers %ld: %s has only %d layers\n", a->layers, a->synthetic, c.n_layers);
        return 2;
    }
    if (a->layers) c.n_layers = (int)a->layers;
    double file = (double)q3_synth_file_bytes(&c, &a->type), need = file + (double)(256 << 20);
    if (!make_synth_path(a->keep, need, path, cap)) return 1;
    guard_file(path, a->keep != NULL);
    q3_machine mach;
    q3_machine_describe(&mach);
    if (mach.available_bytes && file > (double)mach.available_bytes)
        fprintf(stderr, "q3moe bench: warning: the model (%.2f GiB) exceeds the available memory (%.2f GiB): "
                        "decode will read weights from disk\n", file / GIB, mach.available_bytes / GIB);
    char name[256], label[PATH_MAX + 32];
    snprintf(name, sizeof name, "synthetic %s L%d %s", base_name(a->synthetic), c.n_layers, a->type.name);
    snprintf(label, sizeof label, "writing %s (%.2f GiB)", path, file / GIB);
    q3_progress prog = {label, -1};
    if (q3_synth_write(path, &c, &a->type, name, q3_progress_update, &prog, &e)) {
        fprintf(stderr, "q3moe bench: %s\n", e.msg);
        return 1;
    }
    return 0;
}

/* ---- measuring ---- */

static double decode_context(int prompt, int gen) { return prompt + (gen + 1) / 2.0; }

/* Scales the measured layers to the full depth: the head (final norm + lm_head, the difference
 * between steps with and without logits) runs once, everything else once per layer. */
static void project(bench_row *r, int model_layers, int full_layers, double bandwidth, double weights_bandwidth) {
    double f = (double)full_layers / model_layers;
    double step = r->t.decode_s / r->gen, body = r->t.decode_body_s / r->gen;
    double head = step > body ? step - body : 0;
    r->projected = true;
    r->full_decode_tok_s = 1 / (head + body * f);
    r->full_prefill_tok_s = r->prompt / (head + (r->t.prefill_s - head) * f);
    r->full_roofline_tok_s = bandwidth / q3_roofline_total(r->full_bytes);
    r->full_weights_roofline_tok_s = weights_bandwidth / q3_roofline_total(r->full_bytes);
}

/* bandwidth and weights_bandwidth in bytes per second: a fresh buffer's and the mapped weights'. */
static int measure_all(const bench_args *a, const q3_model *m, q3_speed *s, const q3_config *full, double bandwidth,
                       double weights_bandwidth, bench_row *rows) {
    const q3_config *c = q3_model_config(m);
    bool project_depth = full && full->n_layers > c->n_layers;
    for (int i = 0; i < a->n_prompts; i++) {
        bench_row *r = &rows[i];
        q3_error e = {0};
        *r = (bench_row){.prompt = a->prompts[i], .gen = (int)a->gen};
        fprintf(stderr, "q3moe bench: prompt %d, %d generated tokens...\n", r->prompt, r->gen);
        if (q3_speed_measure(s, r->prompt, r->gen, (int)a->repeat, project_depth, &r->t, &e)) {
            fprintf(stderr, "q3moe bench: %s\n", e.msg);
            return 1;
        }
        if (!r->t.finite) fprintf(stderr, "q3moe bench: warning: non-finite logits at prompt %d\n", r->prompt);
        r->bytes = q3_roofline_decode_bytes(m, a->kv_type, decode_context(r->prompt, r->gen));
        r->prefill_tok_s = r->prompt / r->t.prefill_s;
        r->decode_tok_s = r->gen / r->t.decode_s;
        r->roofline_tok_s = bandwidth / q3_roofline_total(r->bytes);
        r->weights_roofline_tok_s = weights_bandwidth / q3_roofline_total(r->bytes);
        if (!project_depth) continue;
        r->full_bytes = q3_roofline_scale_layers(r->bytes, c->n_layers, full->n_layers);
        project(r, c->n_layers, full->n_layers, bandwidth, weights_bandwidth);
    }
    return 0;
}

/* ---- reporting ---- */

typedef struct bench_report {
    const bench_args *a;
    const char *path;
    const q3_model *m;
    const q3_config *full; /* the synthetic model's whole architecture, or NULL */
    q3_machine mach;
    q3_bandwidth bw;         /* a fresh buffer */
    q3_bandwidth weights_bw; /* the model's mapped weights */
    int threads;
    const bench_row *rows;
    char date[32];
} bench_report;

/* The types of the expert (or dense FFN) matrices and of the head. */
static void weight_types(const q3_model *m, const char **ffn, const char **head) {
    const q3_layer *L = &m->layers[0];
    *ffn = q3_type_name(L->is_moe ? L->experts[0].gate.type : L->dense.gate.type);
    *head = q3_type_name(m->lm_head.type);
}

static void print_table(const bench_row *rows, int n, bool full) {
    printf("| prompt | gen | prefill tok/s | decode tok/s | MB read/token | roofline tok/s | of roofline | of weights-read roofline |\n"
           "|-------:|----:|--------------:|-------------:|--------------:|---------------:|------------:|-------------------------:|\n");
    for (int i = 0; i < n; i++) {
        const bench_row *r = &rows[i];
        double pre = full ? r->full_prefill_tok_s : r->prefill_tok_s, dec = full ? r->full_decode_tok_s : r->decode_tok_s;
        double roof = full ? r->full_roofline_tok_s : r->roofline_tok_s;
        double weights_roof = full ? r->full_weights_roofline_tok_s : r->weights_roofline_tok_s;
        double mb = q3_roofline_total(full ? r->full_bytes : r->bytes) / 1e6;
        printf("| %6d | %3d | %13.2f | %12.2f | %13.1f | %14.2f | %10.1f%% | %23.1f%% |\n", r->prompt, r->gen, pre, dec, mb,
               roof, 100 * dec / roof, 100 * dec / weights_roof);
    }
}

/* "30.53B", "957.8K": parameter counts of any size. */
static const char *count_text(double n, char *buf, size_t cap) {
    if (n >= 1e9) snprintf(buf, cap, "%.2fB", n / 1e9);
    else if (n >= 1e6) snprintf(buf, cap, "%.1fM", n / 1e6);
    else snprintf(buf, cap, "%.1fK", n / 1e3);
    return buf;
}

/* Where the forward pass ran: "cpu", "cuda", or the hybrid modes (the roofline columns are
 * the CPU's memory either way). */
static const char *device_name(const q3_load_options *o) {
    if (o->device == Q3_DEVICE_CPU) return "cpu";
    if (!o->cpu_experts) return "cuda";
    return o->gpu_experts ? "cuda, experts on the CPU but the most-routed" : "cuda, experts on the CPU";
}

static void print_text(const bench_report *rep) {
    const q3_config *c = q3_model_config(rep->m);
    const char *ffn, *head;
    weight_types(rep->m, &ffn, &head);
    int64_t total, active;
    q3_model_param_counts(rep->m, &total, &active);
    int moe = 0;
    for (int l = 0; l < c->n_layers; l++) moe += c->is_moe[l];
    printf("model: %s\n  %d layers (%d MoE), hidden %d, %d q / %d kv heads x %d, %d experts top-%d of width %d, vocab %d\n",
           rep->path, c->n_layers, moe, c->hidden_size, c->n_heads, c->n_kv_heads, c->head_dim, c->n_experts,
           c->n_experts_used, c->moe_intermediate, c->vocab_size);
    char t[32], u[32];
    printf("  weights: %s FFN, %s head; %.2f GiB; %s parameters, %s active per token\n", ffn, head,
           rep->m->file_bytes / GIB, count_text((double)total, t, sizeof t), count_text((double)active, u, sizeof u));
    printf("machine: %s, %d cores, %.1f GiB RAM, kernels %s, load average %.2f before the run\n", rep->mach.cpu,
           rep->mach.cores, rep->mach.ram_bytes / GIB, q3_isa_name(q3_isa_active()), rep->mach.load_average);
    printf("  streaming read: %.1f GB/s (%zu MiB buffer, %d threads, best of %d)", rep->bw.gbs, rep->bw.buffer_bytes >> 20,
           rep->bw.threads, rep->bw.runs);
    if (rep->weights_bw.buffer_bytes)
        printf("; %.1f GB/s over %zu MiB of the mapped weights\n", rep->weights_bw.gbs, rep->weights_bw.buffer_bytes >> 20);
    else
        printf("; the weights are too small to measure apart (counted at the buffer's rate)\n");
    printf("run: %s, %d threads, KV cache %s, prefill chunk %ld, best of %ld, %s\n\n", device_name(&rep->a->load),
           rep->threads, q3_type_name(rep->a->kv_type), rep->a->chunk, rep->a->repeat, rep->date);
    print_table(rep->rows, rep->a->n_prompts, false);
    if (!rep->rows[0].projected) return;
    printf("\nprojected full model: %d layers from %d measured (final norm + lm_head once, the rest x %.2f)\n",
           rep->full->n_layers, c->n_layers, (double)rep->full->n_layers / c->n_layers);
    print_table(rep->rows, rep->a->n_prompts, true);
}

static json_t *json_machine(const bench_report *rep) {
    return json_pack("{s:s, s:i, s:i, s:I, s:I, s:s, s:f, s:I, s:i, s:f, s:I, s:f}", "cpu", rep->mach.cpu, "cores",
                     rep->mach.cores, "threads", rep->threads, "ram_bytes", (json_int_t)rep->mach.ram_bytes, "llc_bytes",
                     (json_int_t)rep->mach.llc_bytes, "isa", q3_isa_name(q3_isa_active()), "bandwidth_gbs", rep->bw.gbs,
                     "bandwidth_buffer_bytes", (json_int_t)rep->bw.buffer_bytes, "bandwidth_runs", rep->bw.runs,
                     "weights_read_gbs", rep->weights_bw.gbs, "weights_read_bytes",
                     (json_int_t)rep->weights_bw.buffer_bytes, "load_average", rep->mach.load_average);
}

static json_t *json_model(const bench_report *rep) {
    const q3_config *c = q3_model_config(rep->m);
    const char *ffn, *head;
    weight_types(rep->m, &ffn, &head);
    int64_t total, active;
    q3_model_param_counts(rep->m, &total, &active);
    json_t *o = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:I, s:I, s:I, s:s}", "path", rep->path,
                          "layers", c->n_layers, "hidden_size", c->hidden_size, "heads", c->n_heads, "kv_heads",
                          c->n_kv_heads, "experts", c->n_experts, "experts_used", c->n_experts_used, "vocab_size",
                          c->vocab_size, "ffn_type", ffn, "head_type", head, "file_bytes", (json_int_t)rep->m->file_bytes,
                          "params_total", (json_int_t)total, "params_active", (json_int_t)active, "kv_type",
                          q3_type_name(rep->a->kv_type));
    if (rep->a->synthetic)
        json_object_set_new(o, "synthetic", json_pack("{s:s, s:s, s:i, s:i, s:b}", "config", rep->a->synthetic, "type",
                                                      rep->a->type.name, "layers", c->n_layers, "full_layers",
                                                      rep->full->n_layers, "kept", rep->a->keep != NULL));
    return o;
}

static json_t *json_rates(double prefill, double decode, q3_decode_bytes b, double roofline, double weights_roofline) {
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "prefill_tok_s", prefill, "decode_tok_s", decode,
                     "bytes_per_token", q3_roofline_total(b), "kv_bytes_per_token", b.kv, "roofline_tok_s", roofline,
                     "roofline_fraction", decode / roofline, "weights_roofline_tok_s", weights_roofline,
                     "weights_roofline_fraction", decode / weights_roofline);
}

static json_t *json_row(const bench_row *r) {
    json_t *o = json_rates(r->prefill_tok_s, r->decode_tok_s, r->bytes, r->roofline_tok_s, r->weights_roofline_tok_s);
    json_object_set_new(o, "prompt_tokens", json_integer(r->prompt));
    json_object_set_new(o, "gen_tokens", json_integer(r->gen));
    json_object_set_new(o, "prefill_s", json_real(r->t.prefill_s));
    json_object_set_new(o, "decode_s", json_real(r->t.decode_s));
    json_object_set_new(o, "weight_bytes_per_token", json_real(r->bytes.head + r->bytes.layers));
    json_object_set_new(o, "logits_finite", json_boolean(r->t.finite));
    if (r->projected)
        json_object_set_new(o, "projected_full_model",
                            json_rates(r->full_prefill_tok_s, r->full_decode_tok_s, r->full_bytes, r->full_roofline_tok_s,
                                       r->full_weights_roofline_tok_s));
    return o;
}

static int print_json(const bench_report *rep) {
    json_t *results = json_array();
    for (int i = 0; i < rep->a->n_prompts; i++) json_array_append_new(results, json_row(&rep->rows[i]));
    json_t *root = json_pack("{s:s, s:o, s:o, s:{s:i, s:s, s:i, s:s}, s:o}", "date", rep->date, "machine", json_machine(rep),
                             "model", json_model(rep), "run", "repeat", (int)rep->a->repeat, "kv_type",
                             q3_type_name(rep->a->kv_type), "chunk", (int)rep->a->chunk, "device", device_name(&rep->a->load),
                             "results", results);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(root);
    if (!text) {
        fprintf(stderr, "q3moe bench: out of memory\n");
        return 1;
    }
    puts(text);
    free(text);
    return 0;
}

static int write_plot(const bench_report *rep) {
    q3_plot_point pts[MAX_PROMPTS];
    bool full = rep->rows[0].projected;
    for (int i = 0; i < rep->a->n_prompts; i++) {
        const bench_row *r = &rep->rows[i];
        pts[i] = (q3_plot_point){r->prompt, full ? r->full_prefill_tok_s : r->prefill_tok_s,
                                 full ? r->full_decode_tok_s : r->decode_tok_s,
                                 full ? r->full_roofline_tok_s : r->roofline_tok_s};
    }
    char title[512];
    snprintf(title, sizeof title, "%s%s, %d threads, %.0f GB/s", base_name(rep->path),
             full ? " (projected full model)" : "", rep->threads, rep->bw.gbs);
    q3_error e = {0};
    if (q3_plot_svg(rep->a->plot, title, pts, rep->a->n_prompts, &e)) {
        fprintf(stderr, "q3moe bench: %s\n", e.msg);
        return 1;
    }
    return 0;
}

/* ---- serving and distributed reports ---- */

/* --serving N: N streams through the engine, and a long prompt's time to first token. */
static int report_serving(const bench_args *a, const q3_model *m, double bandwidth_gbs) {
    q3_bench_serving_options o = {(int)a->serving, a->prompts[0], (int)a->gen, (int)a->ttft_prompt, (int)a->chunk,
                                  (int)a->threads, bandwidth_gbs};
    q3_bench_serving_result r;
    q3_error e = {0};
    fprintf(stderr, "q3moe bench: serving %d streams...\n", o.streams);
    if (q3_bench_serving(m, &o, &r, &e)) {
        fprintf(stderr, "q3moe bench: %s\n", e.msg);
        return 1;
    }
    printf("\nserving (engine, continuous batching, chunk %d):\n", o.chunk_size);
    printf("  %d streams of %d-token prompts decoding together: %.2f tok/s aggregate, %.1f MB read per token\n",
           o.streams, o.prompt, r.aggregate_tok_s, r.bytes_per_token / 1e6);
    printf("  bandwidth bound for the experts those steps touched: %.2f tok/s; reached %.1f%%\n", r.bound_tok_s,
           r.bound_tok_s > 0 ? 100 * r.aggregate_tok_s / r.bound_tok_s : 0);
    printf("  time to first token of a %d-token prompt: %.3f s idle, %.3f s while %d streams decode (%.2fx)\n",
           o.long_prompt, r.ttft_idle_s, r.ttft_loaded_s, r.loaded_streams,
           r.ttft_idle_s > 0 ? r.ttft_loaded_s / r.ttft_idle_s : 0);
    return 0;
}

/* Under mpirun: every rank's resident memory and the time it spent communicating. */
static void report_ranks(double wall_s) {
    q3_dist *d = q3_dist_world();
    int n = q3_dist_size(d);
    q3_dist_rank_stats *s = calloc((size_t)n, sizeof *s);
    if (!s) return;
    q3_dist_collect(d, s);
    printf("\nranks: %d (tp %d x ep %d); rank 0's peak includes the bandwidth probe's buffer\n", n, q3_dist_tp(d),
           q3_dist_ep(d));
    printf("| rank | resident MiB | peak MiB | allreduces | of them overlapped | MB reduced | comm s | comm %% of run |\n");
    printf("|-----:|-------------:|---------:|-----------:|-------------------:|-----------:|-------:|--------------:|\n");
    for (int i = 0; i < n; i++)
        printf("| %4d | %12.1f | %8.1f | %10llu | %18llu | %10.1f | %6.2f | %12.1f%% |\n", i, s[i].rss_bytes / 1048576.0,
               s[i].rss_peak_bytes / 1048576.0, (unsigned long long)s[i].comm.allreduces,
               (unsigned long long)s[i].comm.overlapped, s[i].comm.bytes / 1e6, s[i].comm.seconds,
               wall_s > 0 ? 100 * s[i].comm.seconds / wall_s : 0);
    free(s);
}

/* ---- the command ---- */

/* The largest mapped file of the model: the GGUF file, or the largest safetensors shard. */
static void weights_mapping(const q3_model *m, const void **data, size_t *bytes) {
    *data = m->gguf.map.data;
    *bytes = m->kind == Q3_SOURCE_GGUF ? m->gguf.map.size : 0;
    for (int i = 0; m->kind == Q3_SOURCE_HF && i < m->hf.n_files; i++) {
        if (m->hf.files[i].map.size <= *bytes) continue;
        *data = m->hf.files[i].map.data;
        *bytes = m->hf.files[i].map.size;
    }
}

/* The same streaming read over the weights, once they are in memory. A model too small for a
 * whole slice reads as fast as a fresh buffer: it sits in cache, whatever the pages. */
static q3_status measure_weights_read(bench_report *rep, int threads, q3_error *e) {
    const void *data;
    size_t bytes;
    weights_mapping(rep->m, &data, &bytes);
    if (bytes > rep->bw.buffer_bytes) bytes = rep->bw.buffer_bytes;
    if (bytes < ((size_t)32 << 20)) {
        rep->weights_bw = (q3_bandwidth){rep->bw.gbs, 0, rep->bw.threads, 0};
        return Q3_OK;
    }
    return q3_bandwidth_measure_region(&rep->weights_bw, data, bytes, threads, BANDWIDTH_RUNS, e);
}

static int bench_model(const bench_args *a, const char *path, const q3_config *full) {
    q3_error e = {0};
    q3_model *m = NULL;
    q3_speed *s = NULL;
    bench_row rows[MAX_PROMPTS];
    bench_report rep = {.a = a, .path = path, .full = full, .rows = rows};
    int rc = 1;
    if (q3_model_load(&m, path, &a->load, &e)) goto fail;
    double t0 = q3_now_s(); /* the ranks' communication counters start here too */
    rep.m = m;
    q3_machine_describe(&rep.mach);
    fprintf(stderr, "q3moe bench: measuring streaming-read bandwidth...\n");
    if (q3_bandwidth_measure(&rep.bw, q3_bandwidth_buffer_size(rep.mach.llc_bytes, rep.mach.ram_bytes), (int)a->threads, BANDWIDTH_RUNS, &e))
        goto fail;
    q3_speed_options so = {(int)a->ctx_size, (int)a->chunk, (int)a->threads, a->kv_type};
    fprintf(stderr, "q3moe bench: loading the weights into memory...\n");
    if (q3_speed_new(&s, m, &so, &e) || q3_speed_warm_up(s, &e) || measure_weights_read(&rep, (int)a->threads, &e))
        goto fail;
    rep.threads = q3_speed_threads(s);
    time_t now = time(NULL);
    strftime(rep.date, sizeof rep.date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if ((rc = measure_all(a, m, s, full, rep.bw.gbs * 1e9, rep.weights_bw.gbs * 1e9, rows))) goto done;
    rc = a->json ? print_json(&rep) : (print_text(&rep), 0);
    if (!rc && a->plot) rc = write_plot(&rep);
    if (!rc && a->serving) rc = report_serving(a, m, rep.bw.gbs);
    if (!rc && q3_dist_world()) report_ranks(q3_now_s() - t0);
    goto done;
fail:
    fprintf(stderr, "q3moe bench: %s\n", e.msg);
    rc = 1;
done:
    q3_speed_free(s);
    q3_model_free(m);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    if (!q3_cli_apply_config(&argc, &argv, "bench")) return 1;
    bench_args a;
    bool help = false;
    int rc = parse_args(argc, argv, &a, &help);
    if (rc || help) return rc;
    if (!a.synthetic) {
        const char *path = q3_cli_model_path(a.model);
        return path ? bench_model(&a, path, NULL) : 1;
    }
    q3_config full;
    char path[PATH_MAX];
    if ((rc = write_synthetic(&a, &full, path, sizeof path))) {
        remove_guarded_file();
        return rc;
    }
    rc = bench_model(&a, path, &full);
    if (a.keep) fprintf(stderr, "q3moe bench: kept %s\n", path);
    remove_guarded_file();
    return rc;
}
