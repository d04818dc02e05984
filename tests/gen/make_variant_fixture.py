"""Builds tests/fixtures/variant-qwen3moe: a random Qwen3-MoE checkpoint of unusual shapes, with
the logits Hugging Face transformers computes for it, as the second reference the parity tests
check against (one key/value head, head_dim decoupled from hidden_size, a dense layer through
mlp_only_layers, norm_topk_prob false, rope_theta 10000, a prompt of 1100 tokens).

Run once with torch + transformers installed (not needed by the test suite):
    python tests/gen/make_variant_fixture.py tests/fixtures/variant-qwen3moe
"""
import sys, os, json
import torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(1234)
cfg = Qwen3MoeConfig(
    vocab_size=300, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1,
    head_dim=32, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64, intermediate_size=96,
    mlp_only_layers=[1], decoder_sparse_step=1, norm_topk_prob=False, rope_theta=10000.0,
    max_position_embeddings=2048, rms_norm_eps=1e-6, tie_word_embeddings=False, initializer_range=0.1,
    bos_token_id=1, eos_token_id=2)
model = Qwen3MoeForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained(out, safe_serialization=True)

# The reference: float32 compute from the very bf16 weights that were saved.
model = Qwen3MoeForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
gen = torch.Generator().manual_seed(7)
ref = {}
for name, n in (("p5", 5), ("p1100", 1100)):
    ids = torch.randint(3, cfg.vocab_size, (1, n), generator=gen)
    with torch.no_grad():
        o = model(ids, output_router_logits=True, use_cache=False)
    ref[f"{name}.input_ids"] = ids[0].to(torch.int32)
    ref[f"{name}.logits"] = o.logits[0].float().contiguous()
    # smallest gap between the k-th and (k+1)-th routing probability over the MoE layers
    gap = torch.full((n,), float("inf"))
    for rl in o.router_logits:
        if rl is None:
            continue
        p = torch.softmax(rl.float(), dim=-1).sort(dim=-1, descending=True).values
        gap = torch.minimum(gap, p[:, cfg.num_experts_per_tok - 1] - p[:, cfg.num_experts_per_tok])
    ref[f"{name}.route_gap"] = gap.contiguous()
save_file(ref, os.path.join(out, "reference.safetensors"),
          metadata={"producer": f"transformers {__import__('transformers').__version__} torch {torch.__version__}",
                    "compute_dtype": "float32"})
print(json.load(open(os.path.join(out, "config.json"))))
