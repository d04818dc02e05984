"""Tool calls and the reasoning / content split, end to end through q3moe serve, with a scripted
model.

The demo model writes Python and never opens a <think> block or calls a tool, so these paths need
a model whose reply is known in advance. write_scripted_model builds one, a real Qwen3-MoE
checkpoint (config.json + safetensors + the Qwen3 tokenizer) in which:
  - every attention output projection and expert down projection is zero, so each layer adds
    nothing and the final hidden state of a position is its token's embedding;
  - the embeddings are zero except for the few tokens of the script, each a distinct one-hot
    vector; after the final RMSNorm that is 8 times the one-hot (hidden size 64);
  - the untied output head gives the one-hot of token t a logit of 160 on t's successor and 0
    on everything else, so any prompt that ends in a script's first token is continued with the
    script, token by token, under any sampling settings, until <|im_end|> ends it.
Scripts chain distinct tokens (each token has one successor), so the text of a script is spelled
with pieces that are never used twice (spell()).

Script "think" starts at "\n", where Qwen3's generation prompt ends with thinking on: it reasons,
answers and calls get_weather. Script "plain" starts at "\n\n", where the prompt ends with
thinking off (after the empty think block): it answers and stops."""
import json
import os
import sys
import tempfile
import unittest

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as harness  # noqa: E402

ROOT = harness.ROOT
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "qwen3-tokenizer", "tokenizer.json")
HIDDEN = 64

REASONING = "I should call the weather tool"
ANSWER = "Let me check."
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
CALL_TEXT = json.dumps(CALL, separators=(",", ":"))  # compact: its pieces must not repeat
PLAIN = "Sunny in Paris today!"


def gpt2_byte_alphabet():
    """GPT-2's printable stand-in for each byte, as byte-level BPE vocabularies spell tokens."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def load_vocab():
    """({token bytes: id} for the BPE pieces, {added token text: id})."""
    with open(TOKENIZER, encoding="utf-8") as f:
        tok = json.load(f)
    to_byte = gpt2_byte_alphabet()
    pieces = {}
    for text, i in tok["model"]["vocab"].items():
        pieces.setdefault(bytes(to_byte[c] for c in text), i)
    return pieces, {t["content"]: t["id"] for t in tok["added_tokens"]}


def spell(text, pieces, used):
    """Token ids whose bytes make text, none of them in used (which they join): longest pieces
    first, backing off where a piece was taken."""
    data = text.encode()

    def from_(pos):
        if pos == len(data):
            return []
        for n in range(min(16, len(data) - pos), 0, -1):
            i = pieces.get(data[pos:pos + n])
            if i is None or i in used:
                continue
            used.add(i)
            rest = from_(pos + n)
            if rest is not None:
                return [i] + rest
            used.discard(i)
        return None

    ids = from_(0)
    assert ids is not None, f"cannot spell {text!r} with unused tokens"
    return ids


def scripts():
    """{name: [start token, t1, ..., <|im_end|>]}."""
    pieces, added = load_vocab()
    nl, nlnl = pieces[b"\n"], pieces[b"\n\n"]
    used = {nl, nlnl}
    think = [nl, added["<think>"]] + spell(REASONING, pieces, used) + [added["</think>"]]
    think += spell(ANSWER, pieces, used) + [added["<tool_call>"]]
    think += spell(CALL_TEXT, pieces, used) + [added["</tool_call>"], added["<|im_end|>"]]
    plain = [nlnl] + spell(PLAIN, pieces, used) + [added["<|im_end|>"]]
    return {"think": think, "plain": plain}


def write_scripted_model(out_dir):
    """Writes the scripted checkpoint into out_dir; returns {script name: token ids}."""
    chains = scripts()
    vocab = 151936
    members = sorted({t for chain in chains.values() for t in chain[:-1]})
    assert len(members) <= HIDDEN, "scripts too long for the hidden size"
    slot = {t: i for i, t in enumerate(members)}
    embed = np.zeros((vocab, HIDDEN), np.float16)
    head = np.zeros((vocab, HIDDEN), np.float16)
    for chain in chains.values():
        for t, nxt in zip(chain, chain[1:]):
            embed[t, slot[t]] = 1
            head[nxt, slot[t]] = 20
    heads, kv_heads, head_dim, experts, ffn = 2, 1, 32, 2, 16
    zeros = lambda *shape: np.zeros(shape, np.float16)  # noqa: E731
    ones = lambda n: np.ones(n, np.float16)  # noqa: E731
    p = "model.layers.0."
    tensors = {
        "model.embed_tokens.weight": embed, "lm_head.weight": head, "model.norm.weight": ones(HIDDEN),
        p + "input_layernorm.weight": ones(HIDDEN), p + "post_attention_layernorm.weight": ones(HIDDEN),
        p + "self_attn.q_proj.weight": zeros(heads * head_dim, HIDDEN),
        p + "self_attn.k_proj.weight": zeros(kv_heads * head_dim, HIDDEN),
        p + "self_attn.v_proj.weight": zeros(kv_heads * head_dim, HIDDEN),
        p + "self_attn.o_proj.weight": zeros(HIDDEN, heads * head_dim),
        p + "self_attn.q_norm.weight": ones(head_dim), p + "self_attn.k_norm.weight": ones(head_dim),
        p + "mlp.gate.weight": zeros(experts, HIDDEN),
    }
    for x in range(experts):
        e = f"{p}mlp.experts.{x}."
        tensors[e + "gate_proj.weight"] = zeros(ffn, HIDDEN)
        tensors[e + "up_proj.weight"] = zeros(ffn, HIDDEN)
        tensors[e + "down_proj.weight"] = zeros(HIDDEN, ffn)
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"))
    config = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": vocab,
              "hidden_size": HIDDEN, "num_hidden_layers": 1, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "head_dim": head_dim, "num_experts": experts,
              "num_experts_per_tok": 1, "moe_intermediate_size": ffn, "intermediate_size": ffn,
              "max_position_embeddings": 2048, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
              "norm_topk_prob": True, "tie_word_embeddings": False, "decoder_sparse_step": 1,
              "mlp_only_layers": [], "bos_token_id": 151643, "eos_token_id": 151645}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f)
    link = os.path.join(out_dir, "tokenizer.json")
    if not os.path.exists(link):
        os.symlink(os.path.abspath(TOKENIZER), link)
    return chains


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


class ScriptedModelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = os.path.join(tempfile.mkdtemp(dir=harness.TMP), "scripted-qwen3moe")
        cls.chains = write_scripted_model(cls.dir)
        cls.srv = harness.Server(cls.dir, "--batch-size", "4")
        cls.client = cls.srv.client()

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    def chat(self, **kw):
        return self.client.chat.completions.create(**{"model": "scripted-qwen3moe", "messages": QUESTION, **kw})

    def test_prompts_end_where_the_scripts_start(self):
        for name, body in (("think", {"messages": QUESTION}),
                           ("plain", {"messages": QUESTION, "chat_template_kwargs": {"enable_thinking": False}})):
            status, _, r = self.srv.post("/tokenize", body)
            self.assertEqual(r["tokens"][-1], self.chains[name][0], name)

    def test_tool_call_whole(self):
        r = self.chat(tools=TOOLS, temperature=1.0, seed=3)
        choice = r.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertEqual(choice.message.content, ANSWER)
        self.assertEqual(getattr(choice.message, "reasoning_content", None), REASONING)
        calls = choice.message.tool_calls
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0].type, "function")
        self.assertEqual(calls[0].function.name, "get_weather")
        self.assertEqual(json.loads(calls[0].function.arguments), CALL["arguments"])
        self.assertTrue(calls[0].id)
        self.assertEqual(r.usage.completion_tokens, len(self.chains["think"]) - 1)

    def test_tool_call_streamed(self):
        stream = self.chat(tools=TOOLS, stream=True, stream_options={"include_usage": True})
        reasoning, content, calls, finish, usage = "", "", [], None, None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
            calls += delta.tool_calls or []
            finish = chunk.choices[0].finish_reason or finish
        self.assertEqual((reasoning, content, finish), (REASONING, ANSWER, "tool_calls"))
        self.assertEqual([(c.index, c.function.name, json.loads(c.function.arguments)) for c in calls],
                         [(0, "get_weather", CALL["arguments"])])
        self.assertEqual(usage.completion_tokens, len(self.chains["think"]) - 1)

    def test_tool_text_is_content_without_tools(self):
        """Offered no tools, the model's <tool_call> block is plain content (nothing to call)."""
        r = self.chat()
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertIsNone(r.choices[0].message.tool_calls)
        self.assertEqual(r.choices[0].message.content, ANSWER + "<tool_call>" + CALL_TEXT + "</tool_call>")

    def test_thinking_off(self):
        for extra in ({"chat_template_kwargs": {"enable_thinking": False}}, {"enable_thinking": False}):
            r = self.chat(extra_body=extra)
            self.assertEqual(r.choices[0].message.content, PLAIN)
            self.assertIsNone(getattr(r.choices[0].message, "reasoning_content", None))
            self.assertEqual(r.choices[0].finish_reason, "stop")

    def test_answer_to_tool_result(self):
        """The call goes back into the conversation with its result; the reply is rendered from it."""
        first = self.chat(tools=TOOLS).choices[0].message
        messages = QUESTION + [first.model_dump(exclude_none=True),
                               {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "sunny, 21 C"}]
        status, _, r = self.srv.post("/detokenize", {"tokens": self.srv.post(
            "/tokenize", {"messages": messages, "tools": TOOLS})[2]["tokens"]})
        self.assertIn("<tool_response>\nsunny, 21 C\n</tool_response>", r["content"])
        self.assertIn('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
                      r["content"])
        r = self.chat(messages=messages, tools=TOOLS)
        self.assertEqual(r.choices[0].finish_reason, "tool_calls")


if __name__ == "__main__":
    harness.start_watchdog()
    unittest.main(verbosity=2)
