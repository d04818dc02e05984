/* libFuzzer: YAML run configs (`--config FILE.yaml`, src/cli/config.c). Any file must become
 * options or be refused with one line naming where, never crash or hang; an accepted file's
 * options all have the "--option[=value]" shape getopt will read, and the command line's own
 * arguments follow them unchanged. The options then go through getopt and the shared option
 * parser (gen_options.c) as the commands read them, their values checked there.
 *
 * Input: the first byte picks the command (run, chat, bench, serve); the rest is the file, handed
 * over through a memfd so nothing touches the disk. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli/config.h"
#include "cli/gen_options.h"

/* The shared options' values, parsed as run, chat and serve parse them (others are passed over). */
static void parse_options(int argc, char **argv) {
    struct option opts[64] = {{0}};
    q3_gen_options_add_long(opts, 64);
    q3_gen_options g;
    q3_gen_options_init(&g);
    optind = 0; /* getopt starts afresh */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "t:s:c:", opts, NULL)) != -1) (void)q3_gen_options_parse(&g, ch, optarg);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static const char *const COMMANDS[] = {"run", "chat", "bench", "serve"};
    if (size < 1) return 0;
    int fd = memfd_create("fuzz-config", 0);
    if (fd < 0 || write(fd, data + 1, size - 1) != (ssize_t)(size - 1)) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    char *args[] = {"q3moe", "--config", path, "--last", NULL};
    int argc = 4;
    char **argv = args;
    if (q3_cli_apply_config(&argc, &argv, COMMANDS[data[0] % 4])) {
        if (argc < 2 || strcmp(argv[0], "q3moe") || strcmp(argv[argc - 1], "--last") || argv[argc]) abort();
        for (int i = 1; i < argc - 1; i++)
            if (strncmp(argv[i], "--", 2) || !argv[i][2] || argv[i][2] == '=') abort();
        parse_options(argc, argv);
        for (int i = 0; i < argc; i++) free(argv[i]);
        free(argv);
    }
    close(fd);
    return 0;
}
