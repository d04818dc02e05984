#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets that start from the repository's own fixtures
(tests/fuzz/corpus/<target>/seed-*), in each target's input layout (see its fuzz_*.c):

  chat_render  each render_cases.json case: template name, messages, tools, kwargs
  tokenizer    tokenizer_cases.json texts (mode byte: text, special tokens on and off) and ids
  stop         a few stop-string sets over texts that hit them, miss them and overlap them
  config       configs/*.yaml, for each command
  dataset      datasets/*.json(l) with and without chat and truncation
  server       request bodies for each endpoint, as the OpenAI clients send them
  chat_stream  the JSON-format replies of tool_parse_cases.json, in pieces of a few sizes

Regression inputs (found-*) live beside the seeds and are not touched. Run from anywhere:
  python3 tests/fuzz/make_seeds.py
"""
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
CORPUS = ROOT / "tests" / "fuzz" / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob(f"seed-{name}"):
        old.unlink()
    (d / f"seed-{name}").write_bytes(data)


def chat_render():
    cases = json.loads((FIXTURES / "chat-templates" / "render_cases.json").read_text())["cases"]
    for c in cases:
        case = {k: c[k] for k in ("template", "messages", "tools", "kwargs", "add_generation_prompt")}
        write("chat_render", f"{c['template']}-{c['case']}", json.dumps(case, ensure_ascii=False).encode())
    tokenizer_case = dict(case, template="tokenizer")
    write("chat_render", "tokenizer-template", json.dumps(tokenizer_case, ensure_ascii=False).encode())


def tokenizer():
    cases = json.loads((FIXTURES / "qwen3-tokenizer" / "tokenizer_cases.json").read_text())["cases"]
    for i, c in enumerate(cases):
        text = c["text"].encode()
        write("tokenizer", f"text-{i}", bytes([2 | (i & 1)]) + text)
        write("tokenizer", f"ids-{i}", bytes([0]) + b"".join(struct.pack("<I", x + 32) for x in c["ids"]))


def stop():
    sets = {
        "simple": ([b"END"], b"some text END more"),
        "overlap": ([b"abcd", b"bc"], b"xxabcdyy"),
        "prefix_held": ([b"</s>", b"<|im_end|>"], b"answer <|im_en"),
        "none": ([b"STOP"], b"no stop here, ST, STO"),
        "utf8": (["。".encode(), "\n\n".encode()], "第一句。第二句".encode()),
        "same_end": ([b"cd", b"abcd", b"bcd"], b"__abcd__"),
    }
    for name, (stops, text) in sets.items():
        write("stop", name, bytes([len(name)]) + b"".join(s + b"\0" for s in stops) + text)


def config():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        for i, command in enumerate(("run", "chat", "bench", "serve")):
            write("config", f"{path.stem}-{command}", bytes([i]) + path.read_bytes())


def dataset():
    for path in sorted((ROOT / "datasets").glob("*.json*")):
        jsonl = path.suffix == ".jsonl"
        text = path.read_bytes()
        if jsonl:
            text = b"\n".join(text.splitlines()[:2]) + b"\n"  # two records are enough to start from
        for style, limit in ((0, 0), (2 | 8, 0), (2 | 4, 40), (0, 12)):
            write("dataset", f"{path.stem}-{style}-{limit}", bytes([style | jsonl, limit]) + text)


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string"}, "days": {"type": "integer"}},
                                               "required": ["city"]}}}]


def server():
    chat = {"model": "qwen3-fuzz", "messages": [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Hi there"}],
            "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "stop": ["\n\n", "END"],
            "seed": 3, "presence_penalty": 0.5}
    tools = {"messages": [{"role": "user", "content": "Weather in Paris?"},
                          {"role": "assistant", "content": None, "tool_calls": [
                              {"id": "c1", "type": "function",
                               "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                          {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
             "tools": TOOLS, "tool_choice": "auto", "stream": True, "stream_options": {"include_usage": True},
             "logprobs": True, "top_logprobs": 2, "chat_template_kwargs": {"enable_thinking": False}}
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "part one"},
                                                       {"type": "text", "text": "part two"}]}],
             "max_completion_tokens": 8, "n": 1, "response_format": {"type": "text"}}
    bodies = [
        (0, "chat", chat), (0, "chat_tools", tools), (0, "chat_parts", parts),
        (1, "completion_text", {"prompt": "def fib(n):", "max_tokens": 32, "logprobs": 2, "stop": "\n"}),
        (1, "completion_ids", {"prompt": [[9707, 1879, 11]], "max_tokens": 4, "ignore_eos": True}),
        (2, "tokenize_text", {"content": "Hello <|im_end|> world"}),
        (2, "tokenize_chat", {"messages": tools["messages"], "tools": TOOLS, "enable_thinking": False}),
        (3, "detokenize", {"tokens": [9707, 1879, 151645]}),
    ]
    for endpoint, name, body in bodies:
        write("server", name, bytes([endpoint]) + json.dumps(body, ensure_ascii=False).encode())
    write("server", "models", bytes([4]) + b"qwen3-fuzz")


def chat_stream():
    cases = json.loads((FIXTURES / "chat-templates" / "tool_parse_cases.json").read_text())["cases"]
    for i, c in enumerate(cases):
        if c["format"] != "qwen3":
            continue
        write("chat_stream", c["case"], bytes([(i * 3) % 16]) + c["model_output"].encode())


if __name__ == "__main__":
    for make in (chat_render, tokenizer, stop, config, dataset, server, chat_stream):
        make()
