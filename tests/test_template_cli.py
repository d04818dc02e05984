"""`q3moe template` renders any chat template the way transformers does: every case of
fixtures/chat-templates/render_cases.json (five Qwen-family templates x 9 conversations, rendered
by transformers' apply_chat_template) through `--template FILE.jinja`, byte for byte; the model's
own template found in its files (tokenizer_config.json as a string or as named templates, where
tools pick "tool_use"; chat_template.jinja; a GGUF's tokenizer.chat_template, written here with the
`gguf` package); and a broken template refused with its file, line and column."""
import json, os, shutil, subprocess, tempfile, unittest

import gguf

BIN = os.environ["Q3_BIN"]
FIX = os.path.join(os.environ["Q3_FIXTURES"], "chat-templates")
HELLO = [{"role": "user", "content": "Hello"}]


def q3(*args):
    return subprocess.run([BIN, "template", *args], capture_output=True, timeout=60)


class TemplateCli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(dir=os.environ.get("Q3_TMP"))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def write(self, name, value):
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        return path

    def render(self, *args, messages=HELLO, tools=None):
        extra = ["--tools", self.write("tools.json", tools)] if tools is not None else []
        r = q3(*args, "--messages", self.write("messages.json", messages), *extra)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r.stdout.decode()

    def test_every_render_case(self):
        with open(os.path.join(FIX, "render_cases.json"), encoding="utf-8") as f:
            cases = json.load(f)["cases"]
        self.assertEqual(len(cases), 45)
        for c in cases:
            template = os.path.join(FIX, c["template"] + ".jinja")
            flags = ["--no-think"] if c["kwargs"].get("enable_thinking") is False else []
            got = self.render("--template", template, *flags, messages=c["messages"], tools=c["tools"])
            self.assertEqual(got, c["rendered"], f"{c['template']} / {c['case']}")
            if flags:  # the same through --kwargs, as apply_chat_template's keyword arguments
                got = self.render("--template", template, "--kwargs", json.dumps(c["kwargs"]), messages=c["messages"])
                self.assertEqual(got, c["rendered"], f"{c['template']} / {c['case']} (--kwargs)")

    def test_model_files(self):
        with open(os.path.join(FIX, "Qwen3-Coder.jinja"), encoding="utf-8") as f:
            coder = f.read()
        with open(os.path.join(FIX, "Qwen-Qwen2.5-7B-Instruct.jinja"), encoding="utf-8") as f:
            qwen25 = f.read()
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
        want_coder = self.render("--template", os.path.join(FIX, "Qwen3-Coder.jinja"), tools=tools)
        want_plain = self.render("--template", os.path.join(FIX, "Qwen-Qwen2.5-7B-Instruct.jinja"))
        # tokenizer_config.json with named templates: tools choose tool_use, else default
        model = os.path.join(self.tmp, "named")
        self.write("named/tokenizer_config.json", {"eos_token": "<|im_end|>", "chat_template": [
            {"name": "default", "template": qwen25}, {"name": "tool_use", "template": coder}]})
        self.assertEqual(self.render("-m", model), want_plain)
        self.assertEqual(self.render("-m", model, tools=tools), want_coder)
        # chat_template.jinja beside the tokenizer wins over tokenizer_config.json
        self.write("named/chat_template.jinja", "{{ eos_token }}|{{ messages[0].content }}")
        self.assertEqual(self.render("-m", model), "<|im_end|>|Hello")
        # a GGUF's tokenizer.chat_template
        path = os.path.join(self.tmp, "t.gguf")
        w = gguf.GGUFWriter(path, "qwen3moe")
        w.add_chat_template(coder)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        self.assertEqual(self.render("-m", path, tools=tools), want_coder)

    def test_errors_name_the_place(self):
        bad = self.write("bad.jinja", "line one\n{% for m in messages %}{{ m.role | nosuchfilter }}{% endfor %}")
        r = q3("--template", bad, "--messages", self.write("m.json", HELLO))
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{bad}:2:36: no filter named 'nosuchfilter'", r.stderr.decode())
        refuse = self.write("refuse.jinja", "{% if messages|length < 2 %}\n  {{ raise_exception('need two') }}\n{% endif %}")
        r = q3("--template", refuse, "--messages", self.write("m.json", HELLO))
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{refuse}:2:6: raise_exception: need two", r.stderr.decode())
        r = q3("--template", bad, "-m", FIX, "--messages", self.write("m.json", HELLO))
        self.assertEqual(r.returncode, 2)
        good = os.path.join(FIX, "Qwen-Qwen3-0.6B.jinja")
        r = q3("--template", good, "--messages", self.write("m.json", HELLO), "--kwargs", "[1]")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--kwargs: expected a JSON object", r.stderr.decode())


if __name__ == "__main__":
    unittest.main()
