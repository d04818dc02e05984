"""The text-facing commands end to end with the demo model: `q3moe chat` driven through a pipe
and through a pseudo-terminal (Ctrl-C stops an answer, not the program), YAML run configs
(`--config`) against the same options given as flags, and prompt datasets (`run --dataset`)
with LongBench-style truncation and bad files rejected with one line and exit code 1."""
import json, os, pty, re, select, signal, subprocess, tempfile, time, unittest

BIN = os.environ["Q3_BIN"]
ROOT = os.environ["Q3_ROOT"]
TMP = tempfile.mkdtemp(dir=os.environ.get("Q3_TMP"))
DATASETS = os.path.join(ROOT, "datasets")
THREADS = ["-t", "2"]


MODEL = os.path.join(ROOT, "models", "qwen3-moe-demo-py.gguf")  # the bundled demo, as shipped


def q3(*args, stdin=None, timeout=120):
    return subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, timeout=timeout)


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def reports(stderr):
    """(prompt tokens, generated tokens) of each q3_gen_report line."""
    return [(int(a), int(b)) for a, b in
            re.findall(r"^prompt: (\d+) tokens, .* generation: (\d+) tokens", stderr, re.M)]


def chat(lines, *args):
    return q3("chat", "-m", MODEL, *THREADS, "--temp", "0", *args, stdin="".join(l + "\n" for l in lines))


class ChatThroughAPipe(unittest.TestCase):
    QUESTION = "def fibonacci(n):"

    def test_one_answer_per_turn(self):
        r = chat([self.QUESTION, "Now write it as a class."], "-n", "24")
        self.assertEqual(r.returncode, 0, r.stderr)
        turns = reports(r.stderr)
        self.assertEqual(len(turns), 2, r.stderr)
        self.assertTrue(all(generated > 0 for _, generated in turns))
        first = chat([self.QUESTION], "-n", "24").stdout
        self.assertTrue(first.strip())
        self.assertTrue(r.stdout.startswith(first))
        self.assertTrue(r.stdout[len(first):].strip(), "no second answer")
        # One engine for the session: the second turn reuses the first turn's KV pages.
        self.assertRegex(r.stderr, r"prefix cache: \d+ of \d+ prompt tokens reused")

    def test_greedy_answers_repeat_and_reset_forgets(self):
        once = chat([self.QUESTION], "-n", "16")
        again = chat([self.QUESTION], "-n", "16")
        self.assertEqual(once.returncode, 0, once.stderr)
        self.assertTrue(once.stdout.strip())
        self.assertEqual(once.stdout, again.stdout)
        reset = chat([self.QUESTION, "/reset", self.QUESTION], "-n", "16")
        self.assertEqual(reset.returncode, 0, reset.stderr)
        self.assertEqual(reset.stdout, once.stdout * 2)
        self.assertIn("conversation forgotten", reset.stderr)
        # Without the reset the second prompt holds the first exchange.
        kept = chat([self.QUESTION, self.QUESTION], "-n", "16")
        (p1, _), (p2, _) = reports(reset.stderr)
        self.assertEqual(p1, p2)
        self.assertEqual(len(reports(kept.stderr)), 2)

    def test_commands(self):
        r = chat(["/help", "/think off", "/think maybe", "/system You write terse Python.", "/nonsense",
                  "", "   ", self.QUESTION, "/quit", "never read"], "-n", "8")
        self.assertEqual(r.returncode, 0, r.stderr)
        for expected in ("/reset", "thinking off", "usage: /think on|off", "system prompt set",
                         "unknown command /nonsense"):
            self.assertIn(expected, r.stderr)
        self.assertEqual(len(reports(r.stderr)), 1, "blank lines and commands are not turns; /quit ends")
        self.assertNotIn("\033[", r.stdout + r.stderr, "no ANSI codes without a terminal")

    def test_system_prompt_and_no_think_reach_the_template(self):
        plain = reports(chat([self.QUESTION], "-n", "4").stderr)[0][0]
        system = reports(chat([self.QUESTION], "-n", "4", "--system", "Answer in Python.").stderr)[0][0]
        no_think = reports(chat([self.QUESTION], "-n", "4", "--no-think").stderr)[0][0]
        self.assertGreater(system, plain)
        self.assertGreater(no_think, plain)  # the closed empty think block

    def test_bad_usage(self):
        self.assertEqual(q3("chat", "-m", MODEL, "--temp", "hot").returncode, 2)
        self.assertEqual(q3("chat", "-m", MODEL, "stray").returncode, 2)
        r = q3("chat", "-m", os.path.join(TMP, "missing.gguf"), stdin="hi\n")
        self.assertEqual(r.returncode, 1)


class ChatInATerminal(unittest.TestCase):
    """Ctrl-C through a pseudo-terminal, as a user presses it: the line discipline turns \\x03
    into SIGINT for the foreground process."""

    def setUp(self):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(BIN, [BIN, "chat", "-m", MODEL, *THREADS, "--temp", "0", "--ignore-eos", "-n", "100000"])
        self.seen = ""

    def tearDown(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)

    def read_until(self, pattern, timeout=90):  # generous: the sanitizer builds are slow
        """Reads the terminal until pattern matches what arrived since the last match."""
        end = time.time() + timeout
        while time.time() < end:
            m = re.search(pattern, self.seen)
            if m:
                self.seen = self.seen[m.end():]
                return m
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.fd, 65536).decode("utf-8", "replace")
                except OSError:
                    break
        self.fail(f"waited {timeout} s for {pattern!r}; got {self.seen[-500:]!r}")

    def alive(self):
        return os.waitpid(self.pid, os.WNOHANG) == (0, 0)

    def test_ctrl_c_stops_the_answer_not_the_program(self):
        self.read_until(r"> ")
        os.write(self.fd, b"def main():\r")
        self.read_until(r"def main\(\):")  # our line's echo: what follows is the answer
        self.read_until(r"\S+\s+\S+\s+\S+\s+\S+")  # the answer is streaming
        os.write(self.fd, b"\x03")
        self.read_until(r"\(stopped\)")
        first = self.read_until(r"generation: (\d+) tokens")
        self.assertLess(int(first.group(1)), 8000, "the answer ran to the context limit")
        self.read_until(r"> ")
        self.assertTrue(self.alive())
        # The next turn is answered (and stopped the same way).
        os.write(self.fd, b"import os\r")
        self.read_until(r"import os")
        self.read_until(r"\S+\s+\S+\s+\S+\s+\S+")
        os.write(self.fd, b"\x03")
        self.read_until(r"\(stopped\)")
        self.read_until(r"> ")
        self.assertTrue(self.alive())
        os.write(self.fd, b"/quit\r")
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)

    def test_ctrl_c_at_the_prompt_clears_the_line(self):
        self.read_until(r"> ")
        os.write(self.fd, b"this line is dropped")
        time.sleep(0.3)
        os.write(self.fd, b"\x03")
        self.read_until(r"> ")
        os.write(self.fd, b"def f():\r")
        time.sleep(0.5)
        os.write(self.fd, b"\x03")
        got = self.read_until(r"prompt: (\d+) tokens")
        piped = reports(chat(["def f():"], "-n", "1").stderr)[0][0]
        self.assertEqual(int(got.group(1)), piped, "the cleared text reached the prompt")
        os.write(self.fd, b"\x04")  # Ctrl-D at an empty prompt ends the session
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)


class Configs(unittest.TestCase):
    PROMPT = "def is_prime(n):"

    def run_text(self, *args):
        r = q3("run", *THREADS, "-p", self.PROMPT, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_file_gives_the_same_output_as_flags(self):
        cfg = write("greedy.yaml", f"# greedy\nmodel_path: {MODEL}\ntemperature: 0\nmax_new_tokens: 12\n")
        by_flags = self.run_text("-m", MODEL, "--temp", "0", "-n", "12")
        by_file = self.run_text("--config", cfg)
        self.assertEqual(by_file.stdout, by_flags.stdout)
        self.assertEqual(reports(by_file.stderr)[0][1], 12)
        self.assertEqual(self.run_text(f"--config={cfg}").stdout, by_flags.stdout)

    def test_command_line_overrides_the_file(self):
        cfg = write("override.yaml", f"model: {MODEL}\ntemp: 0\nn-predict: 12\n")
        r = self.run_text("--config", cfg, "-n", "5")
        self.assertEqual(reports(r.stderr)[0][1], 5)
        self.assertEqual(r.stdout, self.run_text("-m", MODEL, "--temp", "0", "-n", "5").stdout)

    def test_lists_booleans_and_chat(self):
        cfg = write("chat.yaml", f"model_path: {MODEL}\ntemperature: 0\nmax_new_tokens: 8\n"
                                 "stop: [\"\\n\\n\", '<never>']\nignore_eos: false\nthink: false\n"
                                 "port: 8080  # serve's, passed over\n")
        by_file = chat([Configs.PROMPT], "--config", cfg)
        by_flags = chat([Configs.PROMPT], "-n", "8", "--stop", "\n\n", "--stop", "<never>", "--no-think")
        self.assertEqual(by_file.returncode, 0, by_file.stderr)
        self.assertEqual(by_file.stdout, by_flags.stdout)
        self.assertEqual(reports(by_file.stderr), reports(by_flags.stderr))

    def test_example_configs_parse(self):
        for name in ("demo.yaml", "qwen3-30b-a3b.yaml", "qwen3-235b-a22b.yaml"):
            for command in ("run", "chat", "serve"):
                r = q3(command, "--config", os.path.join(ROOT, "configs", name), "--help")
                self.assertEqual(r.returncode, 0, f"{command} {name}: {r.stderr}")

    def test_demo_config_runs(self):
        r = q3("run", "--config", os.path.join(ROOT, "configs", "demo.yaml"), "-m", MODEL, *THREADS,
               "-p", self.PROMPT, "-n", "4")
        self.assertEqual(r.returncode, 0, r.stderr)

    def assert_config_error(self, text, *expected, command="run"):
        path = write("bad.yaml", text)
        r = q3(command, "--config", path, "-m", MODEL, "-p", "x")
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(path, lines[0])
        for e in expected:
            self.assertIn(e, lines[0])

    def test_unknown_key(self):
        self.assert_config_error("temperature: 0\ntemprature: 0.5\n", "unknown key 'temprature'", ":2:1:")

    def test_malformed_yaml_names_the_line(self):
        self.assert_config_error("temperature: 0\nstop: [a, b\nseed: 1\n", "malformed YAML")
        path = os.path.join(TMP, "bad.yaml")
        r = q3("run", "--config", path, "-p", "x")
        self.assertRegex(r.stderr, re.escape(path) + r":[34]:\d+: malformed YAML")
        self.assert_config_error("temperature: 0\n  seed: 1\n", "malformed YAML", ":2:")

    def test_values_of_the_wrong_shape(self):
        self.assert_config_error("ignore_eos: maybe\n", "'ignore_eos' must be true or false", ":1:13:")
        self.assert_config_error("temperature: [0, 1]\n", "'temperature' takes one value")
        self.assert_config_error("top_k:\n", "'top_k' has no value")
        self.assert_config_error("sampling:\n  top_k: 1\n", "unknown key 'sampling'")
        self.assert_config_error("seed: {a: 1}\n", "'seed' must be a plain value")
        self.assert_config_error("temp: 0\ntemperature: 1\n", "'temperature' sets --temp")
        self.assert_config_error("- temp\n- 0\n", "expected a mapping")
        self.assert_config_error("a: 1\n---\nb: 2\n", "unknown key 'a'")
        self.assert_config_error("temp: 0\n---\ntop_k: 2\n", "one YAML document")

    def test_missing_file_and_missing_value(self):
        r = q3("run", "--config", os.path.join(TMP, "nope.yaml"), "-p", "x")
        self.assertEqual(r.returncode, 1)
        self.assertIn("nope.yaml", r.stderr)
        self.assertEqual(q3("run", "-p", "x", "--config").returncode, 1)
        empty = write("empty.yaml", "# nothing set\n")
        self.run_text("--config", empty, "-m", MODEL, "-n", "2")


def table_rows(stderr):
    """(index, prompt tokens, generated) for each row of run --dataset's table."""
    return [(int(i), int(p), int(g)) for i, p, g in
            re.findall(r"^\s+(\d+)\s+\d+\s+(\d+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+$", stderr, re.M)]


class Datasets(unittest.TestCase):
    def run_dataset(self, path, *args):
        r = q3("run", "-m", MODEL, *THREADS, "--temp", "0", "--dataset", path, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_default_prompts(self):
        path = os.path.join(DATASETS, "default_prompt.json")
        with open(path) as f:
            n = len(json.load(f))
        self.assertGreaterEqual(n, 8)
        r = self.run_dataset(path, "-n", "4")
        self.assertEqual(re.findall(r"^=== prompt (\d+)/(\d+) ===$", r.stdout, re.M),
                         [(str(i), str(n)) for i in range(1, n + 1)])
        rows = table_rows(r.stderr)
        self.assertEqual([i for i, _, _ in rows], list(range(1, n + 1)))
        self.assertTrue(all(p > 0 and g == 4 for _, p, g in rows), r.stderr)
        self.assertRegex(r.stderr, rf"summary: {n}/{n} prompts, \d+ prompt tokens, {4 * n} generated tokens")
        # Each output is what `run` alone prints for that prompt.
        with open(path) as f:
            first = json.load(f)[0]
        alone = q3("run", "-m", MODEL, *THREADS, "--temp", "0", "-n", "4", "--no-escape", "-p", first)
        outputs = re.split(r"^=== prompt \d+/\d+ ===\n", r.stdout, flags=re.M)[1:]
        self.assertEqual(first + outputs[0], alone.stdout)

    def test_longbench_records(self):
        path = os.path.join(DATASETS, "longbench_sample.jsonl")
        with open(path) as f:
            records = [json.loads(line) for line in f]
        self.assertEqual(len(records), 3)
        for rec in records:
            self.assertTrue({"context", "input", "answers", "length", "dataset", "_id"} <= rec.keys())
        r = self.run_dataset(path, "-n", "3")
        self.assertEqual(len(re.findall(r"^=== prompt \d+/3 ===$", r.stdout, re.M)), 3)
        full = table_rows(r.stderr)
        self.assertEqual(len(full), 3)
        # Cut to 120 tokens, chat template and system prompt included; the middle goes.
        limit = 120
        self.assertTrue(all(p > limit for _, p, _ in full), full)
        for extra in ([], ["--chat", "--system", "You answer questions about documents.", "--no-think"]):
            cut = table_rows(self.run_dataset(path, "-n", "3", "--input-truncated-len", str(limit), *extra).stderr)
            self.assertEqual(len(cut), 3)
            self.assertTrue(all(limit - 4 <= p <= limit for _, p, _ in cut), cut)
        # A limit that leaves no room for the question is an error, not a silent cut.
        r = q3("run", "-m", MODEL, "--dataset", path, "--input-truncated-len", "8")
        self.assertEqual(r.returncode, 1)
        self.assertIn("longbench_sample.jsonl:1", r.stderr)

    def test_short_prompts_are_not_cut(self):
        path = write("short.jsonl", json.dumps({"context": "x = 1", "input": "y = x + 1"}) + "\n\n")
        rows = table_rows(self.run_dataset(path, "-n", "2", "--input-truncated-len", "4096").stderr)
        plain = table_rows(self.run_dataset(path, "-n", "2").stderr)
        self.assertEqual(rows, plain)

    def assert_bad_dataset(self, name, text, *expected):
        path = write(name, text) if text is not None else os.path.join(TMP, name)
        r = q3("run", "-m", MODEL, "--dataset", path)
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(path, lines[0])
        for e in expected:
            self.assertIn(e, lines[0])
        self.assertEqual(r.stdout, "")

    def test_bad_files(self):
        self.assert_bad_dataset("missing.json", None, "No such file")
        self.assert_bad_dataset("broken.json", '[\n  "a",\n  "b"\n  "c"\n]\n', ":4:", "malformed JSON")
        self.assert_bad_dataset("object.json", '{"prompts": []}', "expected a JSON list")
        self.assert_bad_dataset("numbers.json", '["a", 3]', "item 2")
        self.assert_bad_dataset("empty.json", "[]", "no prompts")
        good = json.dumps({"context": "c", "input": "i"})
        self.assert_bad_dataset("broken.jsonl", good + "\n{\"context\": \"c\",\n", ":2:", "malformed JSON")
        self.assert_bad_dataset("noinput.jsonl", good + "\n" + good + "\n" + json.dumps({"context": "c"}) + "\n",
                                ":3:", "\"input\"")
        self.assert_bad_dataset("nocontext.jsonl", json.dumps({"input": "q"}) + "\n", ":1:", "\"context\"")
        self.assert_bad_dataset("prompts.txt", "hello\n", ".json")

    def test_bad_usage(self):
        path = os.path.join(DATASETS, "default_prompt.json")
        self.assertEqual(q3("run", "-m", MODEL, "--dataset", path, "-p", "x").returncode, 2)
        self.assertEqual(q3("run", "-m", MODEL, "--dataset", path, "--input-truncated-len", "0").returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
