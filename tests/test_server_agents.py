"""The APIs coding agents speak, through q3moe serve with the real clients: Anthropic's Messages
(the `anthropic` package: messages.create, streaming, tools, count_tokens) and OpenAI's Responses
(the `openai` package: responses.create, streamed and not, function tools).

Two models: the bundled demo model (free text, and tool calls forced by tool_choice, whose
arguments must validate against the tool's schema), and the scripted model of
test_server_tools.py, whose reply is known in advance (it reasons, answers "Let me check." and
calls get_weather for Paris), so that thinking blocks / reasoning items, text and tool calls can
be checked exactly. Bad input gets a 400 in each API's own error shape, and the server keeps
serving."""
import json
import os
import sys
import tempfile
import unittest

import jsonschema

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as harness  # noqa: E402
import test_server_tools as scripted  # noqa: E402

WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
           "required": ["city"], "additionalProperties": False}
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Current weather in a city", "input_schema": WEATHER}]
RESPONSES_TOOLS = [{"type": "function", "name": "get_weather", "description": "Current weather in a city",
                    "parameters": WEATHER}]


def anthropic_client(srv):
    import anthropic

    return anthropic.Anthropic(base_url=srv.base_url, api_key="none", max_retries=0, timeout=harness.REQUEST_TIMEOUT_S)


def openai_client(srv):
    return srv.client()


class DemoModelTest(unittest.TestCase):
    """Shapes, streaming, forced tool calls and bad input on the demo model."""

    @classmethod
    def setUpClass(cls):
        cls.srv = harness.Server(harness.DEMO_MODEL, "--batch-size", "4")
        cls.anthropic = anthropic_client(cls.srv)
        cls.openai = openai_client(cls.srv)

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0, "".join(cls.srv.log)

    # ---- Anthropic ----

    def test_messages_create(self):
        messages = [{"role": "user", "content": "Write a function that adds two numbers."}]
        m = self.anthropic.messages.create(model="any-name", max_tokens=12, system="You write Python.",
                                           messages=messages, extra_body={"temperature": 0})
        self.assertEqual((m.type, m.role), ("message", "assistant"))
        self.assertEqual([b.type for b in m.content], ["text"])
        self.assertIn(m.stop_reason, ("end_turn", "max_tokens"))
        count = self.anthropic.messages.count_tokens(model="any-name", system="You write Python.", messages=messages)
        self.assertEqual(m.usage.input_tokens, count.input_tokens)
        self.assertLessEqual(m.usage.output_tokens, 12)
        # system as blocks is the same prompt
        blocks = self.anthropic.messages.count_tokens(model="x", system=[{"type": "text", "text": "You write Python."}],
                                                      messages=messages)
        self.assertEqual(blocks.input_tokens, count.input_tokens)

    def test_messages_stream(self):
        with self.anthropic.messages.stream(model="x", max_tokens=16, extra_body={"temperature": 0},
                                            messages=[{"role": "user", "content": "def add(a, b):"}]) as stream:
            events = [e.type for e in stream]
            final = stream.get_final_message()
        self.assertEqual(events[0], "message_start")
        self.assertEqual(events[-1], "message_stop")
        self.assertIn("message_delta", events)
        self.assertEqual(events.count("content_block_start"), events.count("content_block_stop"))
        # on the wire (the package drops pings): the event names, and each data's type the same
        status, headers, data = self.srv.request("POST", "/v1/messages", {
            "model": "x", "max_tokens": 16, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": "def add(a, b):"}]})
        self.assertEqual((status, headers["Content-Type"].split(";")[0]), (200, "text/event-stream"))
        wire = []
        for block in data.decode().strip().split("\n\n"):
            name, payload = block.split("\n", 1)
            self.assertEqual(json.loads(payload.removeprefix("data: "))["type"], name.removeprefix("event: "))
            wire.append(name.removeprefix("event: "))
        self.assertEqual(wire[:3], ["message_start", "ping", "content_block_start"])
        self.assertEqual(wire[-3:], ["content_block_stop", "message_delta", "message_stop"])
        whole = self.anthropic.messages.create(model="x", max_tokens=16, extra_body={"temperature": 0},
                                               messages=[{"role": "user", "content": "def add(a, b):"}])
        self.assertEqual(final.content[0].text, whole.content[0].text)
        self.assertEqual(final.usage.output_tokens, whole.usage.output_tokens)

    def test_messages_stop_sequence(self):
        whole = self.anthropic.messages.create(model="x", max_tokens=30, extra_body={"temperature": 0},
                                               messages=[{"role": "user", "content": "import os"}])
        text = whole.content[0].text
        if len(text) < 8:
            self.skipTest("the reply is too short to cut")
        cut = text[4:7]
        m = self.anthropic.messages.create(model="x", max_tokens=30, extra_body={"temperature": 0}, stop_sequences=[cut, "@@never@@"],
                                           messages=[{"role": "user", "content": "import os"}])
        self.assertEqual((m.stop_reason, m.stop_sequence), ("stop_sequence", cut))
        self.assertEqual(m.content[0].text, text[:text.index(cut)])

    def test_messages_forced_tool(self):
        m = self.anthropic.messages.create(model="x", max_tokens=200, tools=ANTHROPIC_TOOLS, extra_body={"temperature": 0.7},
                                           tool_choice={"type": "tool", "name": "get_weather"},
                                           messages=[{"role": "user", "content": "Weather in Paris?"}])
        self.assertEqual(m.stop_reason, "tool_use")
        uses = [b for b in m.content if b.type == "tool_use"]
        self.assertEqual([u.name for u in uses], ["get_weather"])
        jsonschema.validate(uses[0].input, WEATHER)
        # the call and its result go back in; the conversation renders
        follow = [{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": [{"type": "tool_use", "id": uses[0].id, "name": "get_weather",
                                                     "input": uses[0].input}]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                                "content": [{"type": "text", "text": "sunny"}]},
                                               {"type": "text", "text": "Thanks"}]}]
        m = self.anthropic.messages.create(model="x", max_tokens=4, tools=ANTHROPIC_TOOLS, messages=follow)
        self.assertEqual(m.type, "message")

    def test_messages_bad_input(self):
        import anthropic

        def expect_400(**kw):
            with self.assertRaises(anthropic.BadRequestError) as ctx:
                self.anthropic.messages.create(model="x", **kw)
            body = ctx.exception.body
            self.assertEqual((body["type"], body["error"]["type"]), ("error", "invalid_request_error"))
            return body["error"]["message"]

        user = [{"role": "user", "content": "hi"}]
        self.assertIn("image", expect_400(max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]))
        self.assertIn("nope", expect_400(max_tokens=4, messages=user, tools=ANTHROPIC_TOOLS,
                                         tool_choice={"type": "tool", "name": "nope"}))
        expect_400(max_tokens=4, messages=[{"role": "system", "content": "x"}])
        expect_400(max_tokens=4, messages=[{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "a"}]}])
        expect_400(max_tokens=4, messages=user, tools=[{"name": "t", "input_schema": {"type": "strnig"}}],
                   tool_choice={"type": "any"})
        status, _, r = self.srv.post("/v1/messages", {"messages": user})  # no max_tokens
        self.assertEqual((status, r["type"]), (400, "error"))
        status, _, r = self.srv.post("/v1/messages", b"{not json")
        self.assertEqual((status, r["error"]["type"]), (400, "invalid_request_error"))
        self.assertEqual(self.anthropic.messages.create(model="x", max_tokens=2, messages=user).type, "message")

    # ---- Responses ----

    def test_responses_create(self):
        r = self.openai.responses.create(model="qwen3-moe-demo-py", input="def add(a, b):", max_output_tokens=12,
                                         instructions="You write Python.", extra_body={"temperature": 0})
        self.assertEqual(r.object, "response")
        self.assertIn(r.status, ("completed", "incomplete"))
        self.assertTrue(r.output_text)
        self.assertEqual(r.output[-1].type, "message")
        self.assertEqual(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens)
        if r.status == "incomplete":
            self.assertEqual(r.incomplete_details.reason, "max_output_tokens")

    def test_responses_stream(self):
        kw = dict(model="qwen3-moe-demo-py", input=[{"role": "user", "content": [{"type": "input_text",
                                                                                    "text": "def add(a, b):"}]}],
                  max_output_tokens=12, extra_body={"temperature": 0})
        types, deltas, final = [], "", None
        for event in self.openai.responses.create(stream=True, **kw):
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas += event.delta
            if event.type in ("response.completed", "response.incomplete"):
                final = event.response
        self.assertEqual(types[:2], ["response.created", "response.in_progress"])
        self.assertIn(types[-1], ("response.completed", "response.incomplete"))
        for t in ("response.output_item.added", "response.content_part.added", "response.output_text.done",
                  "response.content_part.done", "response.output_item.done"):
            self.assertIn(t, types)
        self.assertEqual(final.output_text, deltas)
        self.assertEqual(self.openai.responses.create(**kw).output_text, deltas)

    def test_responses_structured_and_tools(self):
        schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
                  "additionalProperties": False}
        r = self.openai.responses.create(model="qwen3-moe-demo-py", input="Is Python fun?", max_output_tokens=60,
                                         text={"format": {"type": "json_schema", "name": "a", "schema": schema}},
                                         reasoning={"effort": "none"})
        jsonschema.validate(json.loads(r.output_text), schema)
        r = self.openai.responses.create(model="qwen3-moe-demo-py", input="Weather in Paris?", tools=RESPONSES_TOOLS,
                                         tool_choice="required", max_output_tokens=200, reasoning={"effort": "none"},
                                         temperature=0)  # greedy: the demo's sampling defaults made 1-4 calls
        calls = [o for o in r.output if o.type == "function_call"]
        self.assertEqual([c.name for c in calls], ["get_weather"])
        jsonschema.validate(json.loads(calls[0].arguments), WEATHER)
        # the call and its output back in as items
        items = [{"role": "user", "content": "Weather in Paris?"},
                 {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
                  "arguments": calls[0].arguments},
                 {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}]
        r = self.openai.responses.create(model="qwen3-moe-demo-py", input=items, tools=RESPONSES_TOOLS,
                                         max_output_tokens=4)
        self.assertEqual(r.object, "response")

    def test_responses_bad_input(self):
        from openai import BadRequestError

        def expect_400(param, **kw):
            with self.assertRaises(BadRequestError) as ctx:
                self.openai.responses.create(model="qwen3-moe-demo-py", max_output_tokens=4, **kw)
            self.assertEqual(ctx.exception.body["param"], param)

        expect_400("previous_response_id", input="hi", previous_response_id="resp_1")
        expect_400("input[0].content", input=[{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}])
        expect_400("input[0]", input=[{"type": "item_reference", "id": "x"}])
        expect_400("tools", input="hi", tools=[{"type": "web_search"}])
        expect_400("tool_choice", input="hi", tools=RESPONSES_TOOLS, tool_choice={"type": "function", "name": "nope"})
        expect_400("text.format", input="hi", text={"format": {"type": "json_schema", "name": "a",
                                                               "schema": {"type": "objekt"}}})
        self.assertEqual(self.openai.responses.create(model="qwen3-moe-demo-py", input="hi",
                                                      max_output_tokens=2).object, "response")


class ScriptedModelTest(unittest.TestCase):
    """Thinking, text and tool calls in each API's shape, from a reply known in advance."""

    @classmethod
    def setUpClass(cls):
        cls.dir = os.path.join(tempfile.mkdtemp(dir=harness.TMP), "scripted-qwen3moe")
        scripted.write_scripted_model(cls.dir)
        cls.srv = harness.Server(cls.dir, "--batch-size", "2")
        cls.anthropic = anthropic_client(cls.srv)
        cls.openai = openai_client(cls.srv)

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    def test_messages_thinking_and_tool_use(self):
        m = self.anthropic.messages.create(model="x", max_tokens=200, tools=ANTHROPIC_TOOLS,
                                           thinking={"type": "enabled", "budget_tokens": 1024},
                                           messages=[{"role": "user", "content": scripted.QUESTION[0]["content"]}])
        self.assertEqual([b.type for b in m.content], ["thinking", "text", "tool_use"])
        self.assertEqual(m.content[0].thinking, scripted.REASONING)
        self.assertEqual(m.content[1].text, scripted.ANSWER)
        self.assertEqual((m.content[2].name, m.content[2].input), ("get_weather", scripted.CALL["arguments"]))
        self.assertEqual(m.stop_reason, "tool_use")

    def test_messages_stream_tool_use(self):
        with self.anthropic.messages.stream(model="x", max_tokens=200, tools=ANTHROPIC_TOOLS,
                                            thinking={"type": "enabled", "budget_tokens": 1024},
                                            messages=[{"role": "user", "content": scripted.QUESTION[0]["content"]}]) as s:
            deltas = [e.delta.type for e in s if e.type == "content_block_delta"]
            final = s.get_final_message()
        self.assertIn("thinking_delta", deltas)
        self.assertIn("text_delta", deltas)
        self.assertIn("input_json_delta", deltas)
        self.assertEqual([b.type for b in final.content], ["thinking", "text", "tool_use"])
        self.assertEqual(final.content[0].thinking, scripted.REASONING)
        self.assertEqual(final.content[2].input, scripted.CALL["arguments"])
        self.assertEqual(final.stop_reason, "tool_use")

    def test_responses_reasoning_and_function_call(self):
        r = self.openai.responses.create(model="scripted-qwen3moe", input=scripted.QUESTION[0]["content"],
                                         tools=RESPONSES_TOOLS, max_output_tokens=200)
        self.assertEqual([o.type for o in r.output], ["reasoning", "message", "function_call"])
        self.assertEqual(r.output[0].content[0].text, scripted.REASONING)
        self.assertEqual(r.output_text, scripted.ANSWER)
        self.assertEqual((r.output[2].name, json.loads(r.output[2].arguments)), ("get_weather", scripted.CALL["arguments"]))
        types, args = [], None
        for e in self.openai.responses.create(model="scripted-qwen3moe", input=scripted.QUESTION[0]["content"],
                                              tools=RESPONSES_TOOLS, max_output_tokens=200, stream=True):
            types.append(e.type)
            if e.type == "response.function_call_arguments.done":
                args = json.loads(e.arguments)
            if e.type == "response.completed":
                self.assertEqual([o.type for o in e.response.output], ["reasoning", "message", "function_call"])
        self.assertIn("response.reasoning_text.delta", types)
        self.assertIn("response.function_call_arguments.delta", types)
        self.assertEqual(args, scripted.CALL["arguments"])


if __name__ == "__main__":
    harness.start_watchdog()
    unittest.main(verbosity=2)
