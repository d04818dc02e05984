"""Structured outputs and the sampling fields of OpenAI's API through q3moe serve, driven by the
`openai` package on the bundled demo model (a model of Python source, which left alone would never
write JSON: every JSON reply here is the grammar's doing):

  - response_format json_schema: each reply parses and validates against its schema (the
    `jsonschema` package, with format checking); json_object: a JSON object;
  - tool_choice "required" and a named function: the reply is tool calls whose arguments validate
    against the tool's parameters;
  - n choices, logit_bias, echo with prompt log-probabilities (as lm-eval asks: echo, max_tokens 0,
    logprobs), compared with Hugging Face's log-softmax of the same prompt
    (tests/fixtures/demo/reference.safetensors), and the developer role;
  - bad input: a broken schema (400 naming the keyword), an unknown tool in tool_choice, a
    tool_choice without tools; the server keeps serving;
  - a model whose chat template is Qwen3-Coder's (tests/fixtures/chat-templates): forced tool
    calls come out in its XML format and are read back, values typed by the tool's schema."""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import jsonschema
import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as harness  # noqa: E402
import test_server_tools as scripted  # noqa: E402

NO_THINK = {"chat_template_kwargs": {"enable_thinking": False}}

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "born": {"type": "string", "format": "date"},
        "languages": {"type": "array", "items": {"enum": ["python", "c", "rust"]}, "minItems": 1, "maxItems": 3},
        "contact": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}},
                    "required": ["email"], "additionalProperties": False},
        "nickname": {"anyOf": [{"type": "string", "maxLength": 12}, {"type": "null"}]},
    },
    "required": ["name", "age", "born", "languages", "contact", "nickname"],
    "additionalProperties": False,
}

TREE = {
    "$ref": "#/$defs/node",
    "$defs": {"node": {"type": "object", "properties": {
        "label": {"type": "string", "pattern": "^[a-z]{1,8}$"},
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
        "required": ["label", "children"], "additionalProperties": False}},
}

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                         "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"], "additionalProperties": False}}},
]


def validate(instance, schema):
    jsonschema.validate(instance, schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


class StructuredOutputsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = harness.Server(harness.DEMO_MODEL, "--batch-size", "4")
        cls.client = cls.srv.client()
        cls.name = os.path.basename(harness.DEMO_MODEL).removesuffix(".gguf")

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0, "".join(cls.srv.log)

    def chat(self, **kw):
        kw.setdefault("messages", [{"role": "user", "content": "Describe a programmer as JSON."}])
        kw.setdefault("extra_body", NO_THINK)
        return self.client.chat.completions.create(model=self.name, **kw)

    # ---- response_format ----

    def test_json_schema_replies_validate(self):
        for schema, seed in ((PERSON, 1), (TREE, 3)):
            r = self.chat(max_tokens=700, seed=seed, temperature=1.0, response_format={
                "type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}})
            choice = r.choices[0]
            self.assertEqual(choice.finish_reason, "stop", choice.message.content)
            validate(json.loads(choice.message.content), schema)

    def test_json_schema_streamed(self):
        stream = self.chat(max_tokens=700, seed=5, stream=True, response_format={
            "type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
        text, finish = "", None
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
        self.assertEqual(finish, "stop")
        validate(json.loads(text), PERSON)

    def test_json_object(self):
        for seed in (1, 2):
            r = self.chat(max_tokens=120, seed=seed, temperature=0.7, response_format={"type": "json_object"})
            if r.choices[0].finish_reason == "stop":  # a free object may run past max_tokens
                self.assertIsInstance(json.loads(r.choices[0].message.content), dict)
            else:
                self.assertTrue(r.choices[0].message.content.lstrip().startswith("{"))

    # ---- tool calls ----

    def test_tool_choice_required(self):
        r = self.chat(messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=TOOLS,
                      tool_choice="required", max_tokens=300, seed=1)
        choice = r.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertTrue(choice.message.tool_calls)
        by_name = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
        for call in choice.message.tool_calls:
            self.assertIn(call.function.name, by_name)
            validate(json.loads(call.function.arguments), by_name[call.function.name])

    def test_tool_choice_named(self):
        for stream in (False, True):
            kw = dict(messages=[{"role": "user", "content": "Add 2 and 3."}], tools=TOOLS, max_tokens=300, seed=2,
                      tool_choice={"type": "function", "function": {"name": "add"}})
            if stream:
                calls, finish = [], None
                for chunk in self.chat(stream=True, **kw):
                    if chunk.choices:
                        calls += chunk.choices[0].delta.tool_calls or []
                        finish = chunk.choices[0].finish_reason or finish
            else:
                r = self.chat(**kw)
                calls, finish = r.choices[0].message.tool_calls, r.choices[0].finish_reason
            self.assertEqual(finish, "tool_calls")
            self.assertEqual([c.function.name for c in calls], ["add"])
            validate(json.loads(calls[0].function.arguments), TOOLS[1]["function"]["parameters"])

    # ---- sampling fields ----

    def test_n_choices(self):
        r = self.chat(n=3, max_tokens=8, seed=7, temperature=1.0, extra_body={**NO_THINK, "ignore_eos": True})
        self.assertEqual([c.index for c in r.choices], [0, 1, 2])
        self.assertEqual(r.usage.completion_tokens, 24)
        self.assertGreater(len({c.message.content for c in r.choices}), 1)  # seeds 7, 8, 9
        texts = {}
        for chunk in self.client.completions.create(model=self.name, prompt="def main():\n", n=2, max_tokens=6,
                                                    seed=3, stream=True, extra_body={"ignore_eos": True}):
            for c in chunk.choices:
                texts[c.index] = texts.get(c.index, "") + c.text
        self.assertEqual(sorted(texts), [0, 1])

    def test_logit_bias(self):
        kw = dict(prompt="import os\n\n\ndef read_lines(path):\n", max_tokens=1, temperature=0, logprobs=1)
        first = self.client.completions.create(model=self.name, **kw).choices[0].logprobs.tokens[0]
        status, _, ids = self.srv.post("/tokenize", {"content": first})
        banned = self.client.completions.create(model=self.name, logit_bias={str(ids["tokens"][0]): -100}, **kw)
        self.assertNotEqual(banned.choices[0].logprobs.tokens[0], first)
        forced = self.client.completions.create(model=self.name, logit_bias={"13": 100}, **kw)  # "."
        self.assertEqual(forced.choices[0].text, ".")

    def test_echo_prompt_logprobs(self):
        """lm-eval's loglikelihood request: the prompt's own tokens scored, against the log-softmax of
        `q3moe logits` for the same model and tokens, and of transformers for the float32 weights
        (as far as the demo file's Q8_0 weights allow)."""
        ref = load_file(os.path.join(harness.ROOT, "tests", "fixtures", "demo", "reference.safetensors"))
        ids, hf_logits = ref["prompt.ids"].tolist(), ref["prompt.logits"].astype(np.float64)
        out = os.path.join(harness.TMP, "echo_logits.bin")
        subprocess.run([harness.BIN, "logits", "-m", harness.DEMO_MODEL, "--tokens", ",".join(map(str, ids)),
                        "--kv-type", "f16", "--out", out], check=True, capture_output=True, timeout=120)
        ours = np.fromfile(out, np.float32).reshape(len(ids), -1).astype(np.float64)
        r = self.client.completions.create(model=self.name, prompt=ids, max_tokens=0, echo=True, logprobs=2)
        lp = r.choices[0].logprobs
        status, _, text = self.srv.post("/detokenize", {"tokens": ids})
        self.assertEqual(r.choices[0].text, text["content"])
        self.assertEqual(len(lp.tokens), len(ids))
        self.assertIsNone(lp.token_logprobs[0])
        self.assertIsNone(lp.top_logprobs[0])
        self.assertEqual(r.usage.completion_tokens, 0)
        def log_softmax(row, token):
            return row[token] - (row.max() + math.log(np.exp(row - row.max()).sum()))

        for i in range(1, len(ids)):
            self.assertAlmostEqual(lp.token_logprobs[i], log_softmax(ours[i - 1], ids[i]), delta=1e-3)
            self.assertAlmostEqual(lp.token_logprobs[i], log_softmax(hf_logits[i - 1], ids[i]), delta=0.25)
            self.assertEqual(len(lp.top_logprobs[i]), 2)
            best = int(np.argmax(ours[i - 1]))
            status, _, piece = self.srv.post("/detokenize", {"tokens": [best]})
            self.assertAlmostEqual(lp.top_logprobs[i][piece["content"]], log_softmax(ours[i - 1], best), delta=1e-3)
        self.assertEqual(lp.text_offset[0], 0)
        # echo with a completion: the prompt, then the generated text, its tokens after the prompt's
        r = self.client.completions.create(model=self.name, prompt=ids, max_tokens=4, echo=True, logprobs=0,
                                           temperature=0, extra_body={"ignore_eos": True})
        self.assertTrue(r.choices[0].text.startswith(text["content"]))
        self.assertEqual(len(r.choices[0].logprobs.tokens), len(ids) + 4)

    def test_developer_role(self):
        messages = [{"role": "developer", "content": "Answer briefly."}, {"role": "user", "content": "Hi"}]
        r = self.chat(messages=messages, max_tokens=4)
        status, _, as_system = self.srv.post("/tokenize", {"messages": [{**messages[0], "role": "system"}, messages[1]],
                                                           **NO_THINK})
        self.assertEqual(r.usage.prompt_tokens, as_system["count"])

    # ---- bad input ----

    def test_bad_structured_input(self):
        from openai import BadRequestError

        post, chat = self.srv.post, "/v1/chat/completions"
        body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 4}
        status, _, r = post(chat, {**body, "response_format": {"type": "json_schema", "json_schema": {
            "name": "bad", "schema": {"type": "objekt"}}}})
        self.assertEqual((status, r["error"]["param"]), (400, "response_format"))
        self.assertIn("'type'", r["error"]["message"])
        status, _, r = post(chat, {**body, "response_format": {"type": "json_schema", "json_schema": {
            "name": "bad", "schema": {"type": "integer", "minimum": 3}}}})
        self.assertEqual(status, 400)
        self.assertIn("'minimum'", r["error"]["message"])
        status, _, r = post(chat, {**body, "response_format": {"type": "xml"}})
        self.assertEqual((status, r["error"]["param"]), (400, "response_format"))
        status, _, r = post(chat, {**body, "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}})
        self.assertEqual((status, r["error"]["param"]), (400, "tool_choice"))
        self.assertIn("nope", r["error"]["message"])
        status, _, r = post(chat, {**body, "tool_choice": "required"})
        self.assertEqual((status, r["error"]["param"]), (400, "tool_choice"))
        status, _, r = post(chat, {**body, "logit_bias": {"abc": 1}})
        self.assertEqual((status, r["error"]["param"]), (400, "logit_bias"))
        status, _, r = post("/v1/completions", {"prompt": "x", "echo": True, "stream": True})
        self.assertEqual((status, r["error"]["param"]), (400, "echo"))
        with self.assertRaises(BadRequestError):
            self.chat(max_tokens=4, response_format={"type": "json_schema", "json_schema": {
                "name": "x", "schema": {"$ref": "#/$defs/missing"}}})
        self.assertEqual(self.chat(max_tokens=2).choices[0].message.role, "assistant")


class CoderTemplateTest(unittest.TestCase):
    """The scripted checkpoint of test_server_tools.py with Qwen3-Coder's template beside it: its
    logits make every allowed token as likely as the next, so what it writes under a forced tool
    call is the grammar's doing alone."""

    ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"},
                                         "op": {"enum": ["plus", "minus"]}},
        "required": ["a", "b", "op"]}}}

    @classmethod
    def setUpClass(cls):
        cls.dir = os.path.join(tempfile.mkdtemp(dir=harness.TMP), "coder-scripted")
        scripted.write_scripted_model(cls.dir)
        shutil.copy(os.path.join(harness.ROOT, "tests", "fixtures", "chat-templates", "Qwen3-Coder.jinja"),
                    os.path.join(cls.dir, "chat_template.jinja"))
        cls.srv = harness.Server(cls.dir, "--batch-size", "2")
        cls.client = cls.srv.client()

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    def test_forced_calls_in_xml(self):
        messages = [{"role": "user", "content": "Add 2 and 3."}]
        status, _, tok = self.srv.post("/tokenize", {"messages": messages, "tools": [self.ADD]})
        status, _, prompt = self.srv.post("/detokenize", {"tokens": tok["tokens"]})
        self.assertIn("<function=example_function_name>", prompt["content"])  # the Coder template's instructions
        for seed in (1, 2):
            r = self.client.chat.completions.create(model="coder-scripted", messages=messages, tools=[self.ADD],
                                                    tool_choice="required", max_tokens=200, seed=seed)
            choice = r.choices[0]
            self.assertEqual(choice.finish_reason, "tool_calls")
            calls = choice.message.tool_calls
            self.assertEqual([c.function.name for c in calls], ["add"] * len(calls))
            for c in calls:
                args = json.loads(c.function.arguments)
                validate(args, self.ADD["function"]["parameters"])  # integers typed back from the XML text
        stream = self.client.chat.completions.create(model="coder-scripted", messages=messages, tools=[self.ADD],
                                                     tool_choice={"type": "function", "function": {"name": "add"}},
                                                     max_tokens=200, seed=3, stream=True)
        calls = [tc for chunk in stream if chunk.choices for tc in chunk.choices[0].delta.tool_calls or []]
        self.assertEqual([c.function.name for c in calls], ["add"])
        validate(json.loads(calls[0].function.arguments), self.ADD["function"]["parameters"])


if __name__ == "__main__":
    harness.start_watchdog()
    unittest.main(verbosity=2)
