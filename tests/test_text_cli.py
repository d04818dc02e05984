"""The text commands end to end against Hugging Face's outputs: `tokenize` / `detokenize` on
every tokenizer case (through the bundled demo model's GGUF tokenizer and through tokenizer.json),
`template` piped into `tokenize` on every chat case (rendered text and ids), `run` with invalid
UTF-8 or a model without a tokenizer failing cleanly."""
import json, os, subprocess, tempfile, unittest

BIN = os.environ["Q3_BIN"]
FIX = os.environ["Q3_FIXTURES"]
ROOT = os.environ["Q3_ROOT"]
TOK_DIR = os.path.join(FIX, "qwen3-tokenizer")
DEMO = os.path.join(ROOT, "models", "qwen3-moe-demo-py.gguf")


def q3(*args, stdin=None):
    return subprocess.run([BIN, *args], input=stdin, capture_output=True, timeout=120)


def load(name):
    with open(os.path.join(TOK_DIR, name), encoding="utf-8") as f:
        return json.load(f)


class Tokenize(unittest.TestCase):
    def test_cases_both_tokenizer_sources(self):
        cases = load("tokenizer_cases.json")["cases"]
        # every case through the GGUF; a few through tokenizer.json (test_tokenizer.c covers the rest)
        for model, subset in ((DEMO, cases), (TOK_DIR, cases[:3]), (os.path.join(TOK_DIR, "tokenizer.json"), cases[3:5])):
            for c in subset:
                r = q3("tokenize", "-m", model, "-", stdin=c["text"].encode())
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(json.loads(r.stdout), c["ids"], f"{model}: {c['text']!r}")
                if not c["ids"]:
                    continue
                r = q3("detokenize", "-m", model, ",".join(map(str, c["ids"])))
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.decode().rstrip("\n"), c["decoded"].rstrip("\n"))

    def test_bad_input(self):
        self.assertEqual(q3("tokenize", "-m", "/nonexistent/tokenizer.json", "hi").returncode, 1)
        r = q3("detokenize", "-m", DEMO, "1,2,99999999")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"99999999", r.stderr)
        r = q3("tokenize", "-m", DEMO, "-", stdin=b"caf\xe9 \xff")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"UTF-8", r.stderr)


class Template(unittest.TestCase):
    def test_chat_cases_render_and_tokenize(self):
        for c in load("chat_cases.json")["cases"]:
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
                json.dump({"messages": c["messages"], **({"tools": c["kwargs"]["tools"]} if "tools" in c["kwargs"] else {})}, f)
            args = ["template", "-m", DEMO, "--messages", f.name]
            if c["kwargs"].get("enable_thinking") is False:
                args.append("--no-think")
            if c["kwargs"].get("add_generation_prompt") is False:
                args.append("--no-generation-prompt")
            r = q3(*args)
            os.unlink(f.name)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.decode(), c["rendered"], c["name"])
            t = q3("tokenize", "-m", DEMO, "-", stdin=r.stdout)
            self.assertEqual(json.loads(t.stdout), c["ids"], c["name"])

    def test_malformed_messages(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write('[{"role": "user"')
        r = q3("template", "-m", DEMO, "--messages", f.name)
        os.unlink(f.name)
        self.assertEqual(r.returncode, 1)
        self.assertIn(os.path.basename(f.name).encode(), r.stderr)


class Run(unittest.TestCase):
    def test_invalid_utf8_prompt(self):
        r = q3("run", "-m", DEMO, "-n", "4", "-p", b"def f(\xc3\x28):".decode("latin-1").encode("latin-1"))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(b"UTF-8", r.stderr)

    def test_model_without_tokenizer(self):
        r = q3("run", "-m", os.path.join(FIX, "tiny-qwen3moe"), "-n", "4", "-p", "hi")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"tokenizer.json", r.stderr)

    def test_greedy_is_reproducible_and_looks_like_python(self):
        outs = [q3("run", "-m", DEMO, "-n", "40", "--temp", "0", "-p", "import os\\n\\n\\ndef read_lines(path):\\n") for _ in range(2)]
        for o in outs:
            self.assertEqual(o.returncode, 0, o.stderr)
        self.assertEqual(outs[0].stdout, outs[1].stdout)
        text = outs[0].stdout.decode()
        self.assertIn('"""', text)  # the demo model's reference continuation opens a docstring
        self.assertIn(b"tok/s", outs[0].stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
