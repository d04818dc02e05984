"""Builds tests/fixtures/yarn-qwen3moe: the tiny checkpoint (tests/fixtures/tiny-qwen3moe, whose
shards it links to) with YaRN declared in its config.json the way Qwen's model cards ask for it
(rope_scaling {"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 256}), and
the float32 logits Hugging Face transformers computes for a 700-token prompt: positions past the
original 256-token context, where YaRN's interpolated frequencies and its attention factor
decide the result.

Made with transformers 5.25.0 and torch 2.15.0+cu132 (run on the CPU); not needed by the test suite:
    python tests/gen/make_yarn_fixture.py tests/fixtures
"""
import json, os, shutil, sys
import torch
import transformers
from transformers import Qwen3MoeForCausalLM
from safetensors.torch import save_file

fixtures = sys.argv[1]
src, out = os.path.join(fixtures, "tiny-qwen3moe"), os.path.join(fixtures, "yarn-qwen3moe")
os.makedirs(out, exist_ok=True)
cfg = json.load(open(os.path.join(src, "config.json")))
cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256}
cfg["max_position_embeddings"] = 1024
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
shutil.copy(os.path.join(src, "model.safetensors.index.json"), out)
for shard in sorted(set(json.load(open(os.path.join(src, "model.safetensors.index.json")))["weight_map"].values())):
    link = os.path.join(out, shard)
    if not os.path.lexists(link):
        os.symlink(os.path.join("..", "tiny-qwen3moe", shard), link)

model = Qwen3MoeForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
rope = model.config.rope_parameters
assert rope["rope_type"] == "yarn" and rope["factor"] == 4.0, rope
print("rope parameters as transformers read them:", rope,
      "attention scaling", model.model.rotary_emb.attention_scaling)

gen = torch.Generator().manual_seed(11)
n, tail = 700, 160
ids = torch.randint(3, cfg["vocab_size"], (1, n), generator=gen)
with torch.no_grad():
    o = model(ids, output_router_logits=True, use_cache=False)
gap = torch.full((n,), float("inf"))
for rl in o.router_logits:
    p = torch.softmax(rl.float(), dim=-1).sort(dim=-1, descending=True).values
    gap = torch.minimum(gap, p[:, cfg["num_experts_per_tok"] - 1] - p[:, cfg["num_experts_per_tok"]])
ref = {
    "p700.input_ids": ids[0].to(torch.int32),
    # the last `tail` positions only (all past the original context), to keep the file small
    "p700.logits_tail": o.logits[0, n - tail:].float().contiguous(),
    "p700.route_gap": gap.contiguous(),
}
save_file(ref, os.path.join(out, "reference.safetensors"),
          metadata={"producer": f"transformers {transformers.__version__} torch {torch.__version__}",
                    "compute_dtype": "float32", "logits_tail_from": str(n - tail)})
