/* q3moe chat: an interactive, multi-turn conversation with a model.
 *
 * The conversation is a jansson array of OpenAI-style messages. Each turn appends the user's
 * line, renders the whole conversation with the Qwen3 chat template and generates through one
 * engine kept for the session. Because every turn's prompt repeats the conversation so far, the
 * engine's prefix cache finds the earlier turns' KV pages and only the new tail is prefilled.
 *
 * Threads: the engine thread only appends the reply's text to a buffer and writes a byte to a
 * wake pipe; the main thread waits on that pipe, prints, and is the only one to call into the
 * engine. Ctrl-C's handler sets a flag and writes the same pipe, so one poll() sees both: while
 * an answer streams, Ctrl-C cancels it (q3_engine_cancel) and the session goes on; at the prompt
 * it clears the line.
 *
 * On a terminal, lines are read with libedit (editing, history) and reasoning is shown dimmed on
 * stderr before the answer. With stdin not a terminal each line is one user turn and stdout
 * holds only the answers, one after another, each ending with a newline: that is how scripts
 * and tests drive it. Commands and notes go to stderr. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <histedit.h>
#include <jansson.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>
#include "base/clock.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/config.h"
#include "cli/gen_options.h"
#include "engine/engine.h"
#include "text/chat.h"

static const char COMMANDS_HELP[] = "  /reset          forget the conversation\n"
                                    "  /think on|off   let the model think before answering, or not\n"
                                    "  /system TEXT    set the system prompt (/system alone removes it)\n"
                                    "  /help           this list\n"
                                    "  /quit           leave (also Ctrl-D)\n";

static void usage(FILE *f) {
    fprintf(f,
            "usage: q3moe chat [-m MODEL] [--config FILE.yaml] [--system TEXT] [--no-think] [-n MAX_NEW_TOKENS]\n"
            "                 %s\n"
            "An interactive conversation; without -m, the bundled demo model. Commands at the prompt:\n%s"
            "Ctrl-C stops an answer (or clears the line); Ctrl-D quits. With stdin not a terminal, each\n"
            "line is a user turn and stdout holds only the answers.\n",
            Q3_GEN_OPTIONS_USAGE, COMMANDS_HELP);
}

/* ---- waking the main thread: Ctrl-C and engine events ---- */

/* Only what the signal handler needs is global. */
static volatile sig_atomic_t interrupted;
static int wake_write_fd = -1;

static void wake(void) {
    ssize_t n = write(wake_write_fd, "", 1); /* a full pipe already holds a wake-up */
    (void)n;
}

static void on_sigint(int sig) {
    (void)sig;
    int saved = errno;
    interrupted = 1;
    wake();
    errno = saved;
}

typedef struct waker {
    int read_fd;
    struct sigaction old_sigint;
} waker;

static bool waker_start(waker *w) {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC)) {
        fprintf(stderr, "q3moe chat: pipe: %s\n", strerror(errno));
        return false;
    }
    w->read_fd = fds[0];
    wake_write_fd = fds[1];
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &w->old_sigint);
    return true;
}

static void waker_stop(waker *w) {
    sigaction(SIGINT, &w->old_sigint, NULL);
    close(w->read_fd);
    close(wake_write_fd);
    wake_write_fd = -1;
}

static void drain(const waker *w) {
    char buf[256];
    while (read(w->read_fd, buf, sizeof buf) > 0) {}
}

/* Blocks until a wake-up arrives (true) or fd, when it is not -1, is readable (false). */
static bool wait_wake_or(const waker *w, int fd) {
    struct pollfd p[2] = {{.fd = w->read_fd, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, fd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno != EINTR) return fd < 0; /* cannot wait: let the caller read */
        if (n > 0 && p[0].revents) {
            drain(w);
            return true;
        }
        if (n > 0 && p[1].revents) return false;
    }
}

/* ---- reading the user's lines ---- */

typedef struct line_reader {
    const waker *waker;
    EditLine *el; /* NULL when stdin is not a terminal */
    History *hist;
    mbstate_t mb;
    bool cleared; /* the line being read was cleared by Ctrl-C */
    char *plain;  /* getline's buffer, without libedit */
    size_t plain_cap;
} line_reader;

/* libedit's character source: stdin, unless Ctrl-C comes first, which ends the line early with
 * cleared set so that the caller drops it. Multibyte input is decoded here as libedit would. */
static int read_char(EditLine *el, wchar_t *wc) {
    line_reader *r;
    el_get(el, EL_CLIENTDATA, &r);
    for (;;) {
        if (wait_wake_or(r->waker, STDIN_FILENO)) {
            if (!interrupted) continue;
            interrupted = 0;
            r->cleared = true;
            *wc = L'\n';
            return 1;
        }
        char c;
        ssize_t n = read(STDIN_FILENO, &c, 1);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return -1;
        }
        size_t got = mbrtowc(wc, &c, 1, &r->mb);
        if (got == (size_t)-2) continue; /* more bytes of this character to come */
        if (got == (size_t)-1) {
            memset(&r->mb, 0, sizeof r->mb);
            *wc = 0xFFFD;
        }
        return 1;
    }
}

static char *prompt_text(EditLine *el) {
    (void)el;
    return "> ";
}

/* The model reads and writes UTF-8; line editing must decode it whatever the locale says. */
static void use_utf8_ctype(void) {
    setlocale(LC_CTYPE, "");
    if (strcmp(nl_langinfo(CODESET), "UTF-8")) setlocale(LC_CTYPE, "C.UTF-8");
}

static bool reader_open(line_reader *r, const waker *w) {
    *r = (line_reader){.waker = w};
    if (!isatty(STDIN_FILENO)) {
        /* Unbuffered, so that what poll() sees on the descriptor is all that is left to read. */
        setvbuf(stdin, NULL, _IONBF, 0);
        return true;
    }
    use_utf8_ctype();
    r->el = el_init("q3moe", stdin, stdout, stderr);
    r->hist = history_init();
    if (!r->el || !r->hist) {
        fprintf(stderr, "q3moe chat: cannot start line editing\n");
        return false;
    }
    HistEvent ev;
    history(r->hist, &ev, H_SETSIZE, 1000);
    el_set(r->el, EL_EDITOR, "emacs");
    el_set(r->el, EL_PROMPT, prompt_text);
    el_set(r->el, EL_HIST, history, r->hist);
    el_set(r->el, EL_CLIENTDATA, r);
    el_set(r->el, EL_GETCFN, read_char);
    el_source(r->el, NULL); /* the user's ~/.editrc */
    return true;
}

static void reader_close(line_reader *r) {
    if (r->el) el_end(r->el);
    if (r->hist) history_end(r->hist);
    free(r->plain);
}

typedef enum { LINE_OK, LINE_CLEARED, LINE_END } line_status;

/* The next line without its newline, in a buffer the reader owns. LINE_END at end of input, or
 * at Ctrl-C when there is no line to clear (stdin not a terminal). */
static line_status reader_next(line_reader *r, const char **line) {
    if (r->el) {
        int n = 0;
        r->cleared = false;
        const char *got = el_gets(r->el, &n);
        if (r->cleared) return LINE_CLEARED;
        if (!got || n <= 0) return LINE_END;
        *line = got;
    } else {
        while (wait_wake_or(r->waker, STDIN_FILENO))
            if (interrupted) return LINE_END;
        if (getline(&r->plain, &r->plain_cap, stdin) < 0) return LINE_END;
        *line = r->plain;
    }
    return LINE_OK;
}

static void reader_remember(line_reader *r, const char *line) {
    HistEvent ev;
    if (r->hist) history(r->hist, &ev, H_ENTER, line);
}

/* ---- one answer, as the engine streams it ---- */

/* Filled by the engine thread, read by the main thread, under lock. */
typedef struct reply {
    pthread_mutex_t lock;
    char *text; /* the raw reply so far: reasoning, tags and all */
    size_t len, cap;
    bool out_of_memory;
    int tokens, cached_tokens;
    double t_first, t_last, ttft_s;
    q3_finish finish; /* Q3_FINISH_NONE until the last event */
    char error[256];
} reply;

static void reply_append(reply *r, const char *text, size_t n) {
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + n + 1) cap *= 2;
        char *more = realloc(r->text, cap);
        if (!more) {
            r->out_of_memory = true;
            return;
        }
        r->text = more;
        r->cap = cap;
    }
    memcpy(r->text + r->len, text, n);
    r->len += n;
    r->text[r->len] = 0;
}

/* The engine thread's callback: record and wake the main thread, nothing slower. */
static void on_event(void *ctx, const q3_event *ev) {
    reply *r = ctx;
    pthread_mutex_lock(&r->lock);
    if (ev->token >= 0) {
        double t = q3_now_s();
        if (r->tokens++ == 0) r->t_first = t;
        r->t_last = t;
    }
    if (ev->text_len) reply_append(r, ev->text, ev->text_len);
    if (ev->finish != Q3_FINISH_NONE) {
        r->ttft_s = ev->ttft_s;
        r->cached_tokens = ev->cached_tokens;
        if (ev->error) snprintf(r->error, sizeof r->error, "%s", ev->error);
        r->finish = ev->finish;
    }
    pthread_mutex_unlock(&r->lock);
    wake();
}

/* Where the parts of the answer go: reasoning dimmed on stderr, the answer on stdout. */
typedef struct printer {
    bool color;          /* stderr is a terminal */
    bool reasoning_open; /* reasoning printed and not yet ended with a newline */
} printer;

static void print_part(void *user, q3_chat_part part, const char *text, size_t len) {
    printer *p = user;
    if (part == Q3_CHAT_REASONING) {
        fputs(p->color ? "\033[2m" : "", stderr);
        fwrite(text, 1, len, stderr);
        fputs(p->color ? "\033[0m" : "", stderr);
        p->reasoning_open = true;
        return;
    }
    if (p->reasoning_open) {
        fputc('\n', stderr);
        p->reasoning_open = false;
    }
    fwrite(text, 1, len, stdout);
}

/* Prints the reply as it grows until its last event; Ctrl-C on the way cancels it. */
static void stream_reply(reply *r, q3_engine *en, uint64_t id, const waker *w, bool in_reasoning) {
    printer p = {.color = isatty(STDERR_FILENO)};
    q3_chat_stream stream;
    q3_chat_stream_init(&stream, in_reasoning, print_part, &p);
    size_t shown = 0;
    bool cancelled = false, done = false;
    while (!done) {
        wait_wake_or(w, -1);
        if (interrupted && !cancelled) {
            q3_engine_cancel(en, id);
            cancelled = true;
        }
        for (bool more = true; more;) {
            char chunk[4096];
            pthread_mutex_lock(&r->lock);
            size_t n = r->len - shown < sizeof chunk ? r->len - shown : sizeof chunk;
            if (n) memcpy(chunk, r->text + shown, n);
            more = shown + n < r->len;
            done = !more && r->finish != Q3_FINISH_NONE;
            pthread_mutex_unlock(&r->lock);
            q3_chat_stream_feed(&stream, chunk, n);
            shown += n;
        }
        fflush(stdout);
    }
    q3_chat_stream_finish(&stream);
    if (p.reasoning_open) fputc('\n', stderr);
    fputc('\n', stdout);
    fflush(stdout);
    interrupted = 0;
}

/* ---- the session ---- */

typedef struct session {
    q3_engine *en;
    const q3_tokenizer *tok;
    q3_gen_options *g;
    q3_sampling sampling;
    int max_new;
    json_t *messages; /* user and assistant turns; the system prompt is kept apart */
    char *system;     /* NULL: none */
    bool think;
    const waker *waker;
} session;

/* The conversation so far as a prompt ending with the assistant's turn opened. */
static char *render_conversation(const session *s) {
    json_t *all = json_array();
    if (s->system) json_array_append_new(all, json_pack("{s:s, s:s}", "role", "system", "content", s->system));
    json_array_extend(all, s->messages);
    q3_chat_options o = {.add_generation_prompt = true, .enable_thinking = s->think,
                         .template = q3_tok_chat_template(s->tok)};
    char *out = NULL;
    q3_error e = {0};
    if (q3_chat_render(all, NULL, &o, &out, &e)) fprintf(stderr, "q3moe chat: %s\n", e.msg);
    json_decref(all);
    return out;
}

/* Keeps the answer in the conversation. Its reasoning goes along too: the template drops the
 * reasoning of every turn before the latest user message, as Qwen3's own does, so the model never
 * sees it again. Parsing also copes with an answer cut short inside its reasoning. */
static void remember_answer(session *s, const char *text, size_t len) {
    q3_chat_reply parsed;
    q3_error e = {0};
    if (q3_chat_parse_reply(text, len, &parsed, &e)) {
        fprintf(stderr, "q3moe chat: %s\n", e.msg);
        return;
    }
    json_t *msg = json_pack("{s:s, s:s}", "role", "assistant", "content", parsed.content);
    if (*parsed.reasoning) json_object_set_new(msg, "reasoning_content", json_string(parsed.reasoning));
    json_array_append_new(s->messages, msg);
    q3_chat_reply_free(&parsed);
}

/* Submits the conversation and streams the answer. False (after printing why) when there is no
 * answer to keep. */
static bool generate_answer(session *s, reply *r) {
    char *prompt = render_conversation(s);
    if (!prompt) return false;
    q3_error e = {0};
    int32_t *ids = NULL;
    int n = 0;
    q3_status st = q3_tok_encode(s->tok, prompt, strlen(prompt), true, &ids, &n, &e);
    bool in_reasoning = q3_chat_opens_reasoning(prompt);
    free(prompt);
    if (st) {
        fprintf(stderr, "q3moe chat: %s\n", e.msg);
        return false;
    }
    q3_request req = {.prompt = ids, .n_prompt = n, .sampling = s->sampling, .max_tokens = s->max_new,
                      .stop = s->g->stops, .n_stop = s->g->n_stops, .ignore_eos = s->g->ignore_eos,
                      .top_logprobs = -1, .on_event = on_event, .ctx = r};
    uint64_t id = 0;
    interrupted = 0;
    st = q3_engine_submit(s->en, &req, &id, &e);
    free(ids);
    if (st) {
        fprintf(stderr, "q3moe chat: %s (/reset starts a new conversation)\n", e.msg);
        return false;
    }
    stream_reply(r, s->en, id, s->waker, in_reasoning);
    s->g->prompt_tokens = n - r->cached_tokens; /* the rate is of the tokens actually prefilled */
    s->g->ttft_s = r->ttft_s;
    if (r->finish == Q3_FINISH_ERROR || r->out_of_memory) {
        fprintf(stderr, "q3moe chat: %s\n", r->out_of_memory ? "out of memory" : r->error);
        return false;
    }
    if (r->finish == Q3_FINISH_CANCELLED) fprintf(stderr, "(stopped)\n");
    if (r->cached_tokens) fprintf(stderr, "prefix cache: %d of %d prompt tokens reused\n", r->cached_tokens, n);
    q3_gen_report(s->g, r->tokens, r->t_first, r->t_last);
    return true;
}

/* One user turn: the message goes in, the answer comes out and stays. A turn that fails leaves
 * the conversation as it was. */
static void chat_turn(session *s, const char *text) {
    json_array_append_new(s->messages, json_pack("{s:s, s:s}", "role", "user", "content", text));
    reply r = {0};
    pthread_mutex_init(&r.lock, NULL);
    if (generate_answer(s, &r)) remember_answer(s, r.text ? r.text : "", r.len);
    else json_array_remove(s->messages, json_array_size(s->messages) - 1);
    pthread_mutex_destroy(&r.lock);
    free(r.text);
}

/* Handles a /command; false for /quit. */
static bool chat_command(session *s, char *line) {
    for (size_t n = strlen(line); n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'); n--) line[n - 1] = 0;
    const char *arg = line + strcspn(line, " \t");
    size_t name_len = (size_t)(arg - line);
    arg += strspn(arg, " \t");
#define IS(name) (name_len == strlen(name) && !strncmp(line, name, name_len))
    if (IS("/quit") || IS("/exit")) return false;
    if (IS("/help")) {
        fputs(COMMANDS_HELP, stderr);
    } else if (IS("/reset")) {
        json_array_clear(s->messages);
        fprintf(stderr, "(conversation forgotten)\n");
    } else if (IS("/think") && (!strcmp(arg, "on") || !strcmp(arg, "off"))) {
        s->think = !strcmp(arg, "on");
        fprintf(stderr, "(thinking %s)\n", s->think ? "on" : "off");
    } else if (IS("/think")) {
        fprintf(stderr, "usage: /think on|off (thinking is %s)\n", s->think ? "on" : "off");
    } else if (IS("/system")) {
        free(s->system);
        s->system = *arg ? strdup(arg) : NULL;
        fputs(*arg ? "(system prompt set)\n" : "(system prompt removed)\n", stderr);
    } else {
        fprintf(stderr, "unknown command %.*s (/help lists them)\n", (int)name_len, line);
    }
#undef IS
    return true;
}

static void chat_loop(session *s, line_reader *in) {
    for (;;) {
        const char *got = NULL;
        line_status st = reader_next(in, &got);
        if (st == LINE_END) break;
        if (st == LINE_CLEARED) continue;
        char *line = strdup(got);
        if (!line) break;
        line[strcspn(line, "\r\n")] = 0;
        if (*line) reader_remember(in, line);
        bool go_on = true;
        if (line[0] == '/') go_on = chat_command(s, line);
        else if (line[strspn(line, " \t")]) chat_turn(s, line);
        free(line);
        if (!go_on) break;
    }
    if (in->el) fputc('\n', stdout);
}

typedef struct chat_args {
    const char *model, *system;
    bool think;
    long max_new;
    q3_gen_options g;
} chat_args;

/* Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, chat_args *a) {
    enum { O_NO_THINK = 300, O_SYSTEM };
    struct option opts[64] = {{"model", required_argument, 0, 'm'},
                              {"n-predict", required_argument, 0, 'n'},
                              {"no-think", no_argument, 0, O_NO_THINK},
                              {"system", required_argument, 0, O_SYSTEM},
                              {"help", no_argument, 0, 'h'}};
    q3_gen_options_add_long(opts, 64);
    *a = (chat_args){.think = true, .max_new = 1024};
    q3_gen_options_init(&a->g);
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:n:t:s:c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': a->model = optarg; break;
        case 'n': if (!q3_cli_parse_int(optarg, "-n", 1, 1 << 24, &a->max_new)) return 2; break;
        case O_NO_THINK: a->think = false; break;
        case O_SYSTEM: a->system = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            if (q3_gen_options_parse(&a->g, ch, optarg) == 0) break;
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    return -1;
}

int cmd_chat(int argc, char **argv) {
    if (!q3_cli_apply_config(&argc, &argv, "chat")) return 1;
    chat_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    const char *path = q3_cli_model_path(a.model);
    q3_model *m = NULL;
    q3_tokenizer *tok = NULL;
    q3_sampling defaults;
    if (!path || !q3_cli_open_model(path, &a.g.load, &m, &tok, &defaults)) return 1;
    session s = {.tok = tok, .g = &a.g, .sampling = q3_gen_sampling(&a.g, &defaults), .max_new = (int)a.max_new,
                 .messages = json_array(), .system = a.system ? strdup(a.system) : NULL, .think = a.think};
    waker w;
    rc = 1;
    if ((s.en = q3_gen_engine_new(&a.g, m, tok)) && waker_start(&w)) {
        line_reader in;
        s.waker = &w;
        if (reader_open(&in, &w)) {
            if (in.el) fprintf(stderr, "q3moe chat: %s (/help for commands, Ctrl-D to quit)\n", path);
            chat_loop(&s, &in);
            rc = 0;
        }
        reader_close(&in);
        waker_stop(&w);
    }
    q3_engine_free(s.en);
    json_decref(s.messages);
    free(s.system);
    q3_tok_free(tok);
    q3_model_free(m);
    return rc;
}
