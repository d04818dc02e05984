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
  tokenizer_files  a small tokenizer.json cut from the Qwen3 one (its first 400 tokens and the
               merges among them, the added tokens renumbered after them) and its
               tokenizer_config.json
  gguf         that tokenizer and chat template as GGUF metadata, and a small model config with
               the one tensor it reads (needs the gguf package: run with .venv/bin/python)
  json_schema  schemas of each kind the compiler understands (and tools lists in both call
               formats), each with a JSON text valid under it and a few mask steps
  hf_quant     the FP8 and GPTQ fixtures' quantization_config and safetensors header as they are
  imatrix      a llama.cpp GGUF imatrix (needs the gguf package) and a legacy .dat

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
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
                                               "when": {"type": "string", "format": "date"},
                                               "code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]+$"}},
              "required": ["name"]}
    anthropic_tools = [{"name": "get_weather", "description": "Weather in a city",
                        "input_schema": TOOLS[0]["function"]["parameters"]}]
    messages = {"model": "claude-x", "max_tokens": 32, "system": [{"type": "text", "text": "Be brief."}],
                "messages": [{"role": "user", "content": "Weather in Paris?"},
                             {"role": "assistant", "content": [
                                 {"type": "thinking", "thinking": "Look it up."},
                                 {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}]},
                             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                           "content": [{"type": "text", "text": "sunny"}]}]}],
                "tools": anthropic_tools, "tool_choice": {"type": "any"}, "stop_sequences": ["END"],
                "thinking": {"type": "enabled", "budget_tokens": 1024}, "stream": True}
    responses = {"model": "qwen3-fuzz", "instructions": "Be brief.",
                 "input": [{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                           {"type": "function_call", "call_id": "c1", "name": "get_weather",
                            "arguments": "{\"city\": \"Paris\"}"},
                           {"type": "function_call_output", "call_id": "c1", "output": "sunny"}],
                 "tools": [dict(TOOLS[0]["function"], type="function")], "tool_choice": "required",
                 "reasoning": {"effort": "low"}, "max_output_tokens": 16}
    bodies += [
        (0, "chat_schema", dict(chat, response_format={"type": "json_schema",
                                                       "json_schema": {"name": "x", "schema": schema}})),
        (0, "chat_tool_required", dict(tools, tool_choice={"type": "function", "function": {"name": "get_weather"}})),
        (5, "messages", messages),
        (5, "messages_text", {"max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}),
        (6, "count_tokens", {"messages": messages["messages"], "tools": anthropic_tools, "system": "Be brief."}),
        (7, "responses", responses),
        (7, "responses_text", {"input": "Hello", "text": {"format": {"type": "json_schema", "name": "x",
                                                                    "schema": schema}}}),
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


def small_tokenizer():
    """The Qwen3 tokenizer cut down to its first N_SMALL tokens and the merges among them."""
    n_small = 400
    full = json.loads((FIXTURES / "qwen3-tokenizer" / "tokenizer.json").read_text())
    vocab = {k: v for k, v in full["model"]["vocab"].items() if v < n_small}
    merges = [m for m in full["model"]["merges"] if m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab]
    added = [dict(a, id=n_small + i) for i, a in enumerate(full["added_tokens"])]
    small = dict(full, added_tokens=added, model=dict(full["model"], vocab=vocab, merges=merges))
    return small


def tokenizer_files():
    small = small_tokenizer()
    write("tokenizer_files", "small-tokenizer.json", bytes([0]) + json.dumps(small, ensure_ascii=False).encode())
    config = json.loads((FIXTURES / "qwen3-tokenizer" / "tokenizer_config.json").read_text())
    write("tokenizer_files", "tokenizer_config.json", bytes([1]) + json.dumps(config, ensure_ascii=False).encode())


def gguf_metadata():
    import gguf  # from .venv

    small = small_tokenizer()
    tokens = [None] * (len(small["model"]["vocab"]) + len(small["added_tokens"]))
    types = [1] * len(tokens)
    for text, i in small["model"]["vocab"].items():
        tokens[i] = text
    for a in small["added_tokens"]:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = 3 if a["special"] else 4
    path = CORPUS / "gguf" / "seed-tokenizer-metadata.gguf"
    w = gguf.GGUFWriter(str(path), "qwen3moe")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([" ".join(m) for m in small["model"]["merges"]])
    w.add_eos_token_id(len(small["model"]["vocab"]) + 2)
    w.add_chat_template((FIXTURES / "chat-templates" / "Qwen-Qwen3-0.6B.jinja").read_text())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # A model config as GGUF metadata, small enough to mutate: 32-wide, a vocabulary of 64 (the
    # embedding's shape says how many).
    import numpy as np

    w = gguf.GGUFWriter(str(CORPUS / "gguf" / "seed-config-metadata.gguf"), "qwen3moe")
    w.add_context_length(4096)
    w.add_embedding_length(32)
    w.add_block_count(2)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_key_length(8)
    w.add_value_length(8)
    w.add_expert_count(4)
    w.add_expert_used_count(2)
    w.add_expert_feed_forward_length(32)
    w.add_feed_forward_length(64)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tensor("token_embd.weight", np.zeros((64, 32), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def generation_steps(text, masks=2):
    """fuzz_json_schema's steps: text pushed in chunks of up to 8 bytes, then a few mask steps."""
    out = b""
    for i in range(0, len(text), 8):
        chunk = text[i:i + 8]
        out += bytes([(len(chunk) - 1) << 1]) + chunk
    for k in range(masks):
        out += bytes([1, k * 7, 0])
    return out


SCHEMAS = [
    ("object", {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name", "age"]}, {"name": "Bob", "age": 42}),
    ("optional", {"properties": {"a": {"type": "integer"}, "b": {"type": "number"}, "c": {"type": "boolean"}},
                  "required": ["b"], "additionalProperties": {"type": "null"}}, {"b": -1.5e3, "c": True, "z": None}),
    ("enum_const", {"anyOf": [{"enum": ["red", 7, None]}, {"const": {"k": [1, 2]}}]}, {"k": [1, 2]}),
    ("nullable", {"type": ["number", "string"], "nullable": True}, "x"),
    ("array", {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3}, [True, False]),
    ("strings", {"type": "object", "properties": {
        "d": {"type": "string", "format": "date"}, "t": {"type": "string", "format": "date-time"},
        "u": {"type": "string", "format": "uuid"}, "e": {"type": "string", "format": "email"},
        "i": {"type": "string", "format": "ipv4"}, "h": {"type": "string", "format": "hostname"},
        "r": {"type": "string", "format": "uri"}, "s": {"type": "string", "minLength": 2, "maxLength": 5},
        "p": {"type": "string", "pattern": "^(?:[a-f0-9]{2}|x+)-\\d{1,3}[^\\s]?$"}}},
     {"d": "2024-02-29", "t": "2024-02-29T12:00:00Z", "u": "123e4567-e89b-12d3-a456-426614174000",
      "e": "a@b.co", "i": "10.0.0.1", "h": "example.org", "r": "https://example.org/x?y=1", "s": "abc",
      "p": "ff-12"}),
    ("tree", {"$ref": "#/$defs/node", "$defs": {"node": {"type": "object", "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["v"]}}}, {"v": 1, "kids": [{"v": 2, "kids": []}]}),
    ("all_of", {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}},
                          {"required": ["a"]}]}, {"a": "q"}),
    ("one_of", {"oneOf": [{"type": "integer"}, {"type": "array", "items": True}], "title": "t"}, [1, "x", {}]),
    ("true", True, {"any": ["thing", 1.0, None]}),
]


def json_schema():
    for name, schema, instance in SCHEMAS:
        text = json.dumps(schema).encode()
        write("json_schema", name, b"\0" + text + b"\0" + generation_steps(json.dumps(instance).encode()))
        write("json_schema", name + "-masks", b"\0" + text + b"\0" + generation_steps(b"", masks=6))
    tools = json.dumps(TOOLS).encode()
    call = b'<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    xml = (b"<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n"
           b"</tool_call>")
    for flags, name, text in ((1, "tools-json", call), (5, "tools-json-named", call), (3, "tools-xml", xml),
                              (7, "tools-xml-named", xml)):
        write("json_schema", name, bytes([flags]) + tools + b"\0" + generation_steps(text))


def hf_quant():
    for bit, name in ((0, "fp8-qwen3moe"), (1, "gptq-qwen3moe")):
        config = json.loads((FIXTURES / name / "config.json").read_text())
        qc = json.dumps(config["quantization_config"]).encode()
        weights = (FIXTURES / name / "model.safetensors").read_bytes()
        (n,) = struct.unpack("<Q", weights[:8])
        write("hf_quant", name, bytes([bit]) + qc + b"\0" + weights[8:8 + n])


def imatrix():
    import gguf  # from .venv
    import numpy as np

    # llama.cpp's GGUF imatrix: sums [n_mats, n_per_row] (numpy order), counts [n_mats, 1]
    path = CORPUS / "imatrix" / "seed-llama.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch="")
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["wiki.train.raw"])
    w.add_uint32("imatrix.chunk_count", 3)
    w.add_uint32("imatrix.chunk_size", 512)
    w.add_tensor("blk.0.attn_q.weight.in_sum2", np.arange(8, dtype=np.float32).reshape(1, 8))
    w.add_tensor("blk.0.attn_q.weight.counts", np.array([[1536]], dtype=np.float32))
    w.add_tensor("blk.0.ffn_up_exps.weight.in_sum2", np.ones((3, 4), dtype=np.float32))
    w.add_tensor("blk.0.ffn_up_exps.weight.counts", np.array([[5], [0], [7]], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    # the legacy .dat: entries, then the chunk count and the dataset's name
    dat = struct.pack("<i", 2)
    for name, ncall, values in (("blk.0.attn_q.weight", 3, [0.5, 1.0, 2.0, 4.0]),
                                ("blk.0.ffn_down_exps.weight", 2, [1.0] * 8)):
        dat += struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", ncall, len(values))
        dat += struct.pack(f"<{len(values)}f", *values)
    dat += struct.pack("<i", 3) + struct.pack("<i", 14) + b"wiki.train.raw"
    write("imatrix", "legacy.dat", dat)


if __name__ == "__main__":
    for make in (chat_render, tokenizer, stop, config, dataset, server, chat_stream, tokenizer_files, gguf_metadata,
                 json_schema, hf_quant, imatrix):
        make()
