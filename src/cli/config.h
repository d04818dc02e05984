/* YAML run configs: `q3moe run|chat|bench|serve --config FILE.yaml`.
 *
 * A run config is a flat YAML mapping whose keys are the command's long options, spelled with
 * underscores or hyphens (`top_k: 20`, `batch-size: 8`), plus the names the seed deployments'
 * configs use (`model_path`, `max_new_tokens`, `temperature`, `input_truncated_len`, ...). A
 * boolean key is a bare flag when true and left out when false; a list value (`stop: [a, b]`)
 * repeats its option. The file turns into ordinary options placed before the command line's own,
 * so getopt parses both the same way and the command line wins when both set one option. Keys
 * that only other commands take are passed over, so one file can describe a whole deployment
 * (serve's port, run's dataset); a key that no command takes is an error.
 *
 *   int cmd_x(int argc, char **argv) {
 *       if (!q3_cli_apply_config(&argc, &argv, "x")) return 1;
 *       ... getopt_long as before ...
 */
#ifndef Q3_CLI_CONFIG_H
#define Q3_CLI_CONFIG_H

#include <stdbool.h>

/* Finds `--config FILE` (or `--config=FILE`) in argv and replaces *argc / *argv with a new argv:
 * argv[0], the file's options, then the original arguments without the --config pair. Without
 * --config, argc and argv are left as they are. command ("run", "chat", "bench", "serve") picks
 * the keys accepted. The new argv lives until the process exits (getopt keeps pointers into it).
 * On failure prints one line naming the file and, where there is one, the line, column and key
 * at fault (malformed YAML, an unknown key, a value of the wrong shape), and returns false: the
 * caller exits 1. */
bool q3_cli_apply_config(int *argc, char ***argv, const char *command);

#endif
