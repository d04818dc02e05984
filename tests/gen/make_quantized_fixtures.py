"""Builds tests/fixtures/fp8-qwen3moe and tests/fixtures/gptq-qwen3moe: the tiny checkpoint
(tests/fixtures/tiny-qwen3moe) quantized into the two formats Qwen publishes its models in, each
with the float32 logits Hugging Face transformers computes from the dequantized weights (what
an engine that runs the checkpoint directly must reproduce).

- FP8 (Qwen3-*-FP8): quantization_config {"quant_method": "fp8", "fmt": "e4m3",
  "weight_block_size": [128, 128]}; every linear layer but the routers (mlp.gate) and lm_head
  stored as torch.float8_e4m3fn with `weight_scale_inv`, one float32 per 128x128 block,
  computed as transformers' fine-grained FP8 quantizer does: scale = 448 / amax(block),
  q = clamp(w * scale, -448, 448).to(float8_e4m3fn), weight_scale_inv = 1 / scale.
- GPTQ-Int4 (Qwen3-*-GPTQ-Int4): quantization_config {"quant_method": "gptq", "bits": 4,
  "group_size": 128, "sym": true, "desc_act": false}; the same layers packed with numpy in
  AutoGPTQ's format: qweight int32 [in/8, out] (input i in bits 4(i%8) of row i/8), scales f16
  [in/128, out], zero point 8 stored minus one (7) in qzeros int32 [in/128, out/8], g_idx = i/128.
  q = clamp(round(w / scale) + 8, 0, 15) with scale = 2 amax / 15 per group (GPTQ's symmetric
  grid, round-to-nearest instead of its Hessian-guided order: the format is what is tested).

Made with transformers 5.25.0, torch 2.15.0+cu132 (run on the CPU) and numpy 2.4.6; not needed by the test suite:
    python tests/gen/make_quantized_fixtures.py tests/fixtures
"""
import json, os, shutil, sys, tempfile
import numpy as np
import torch
import transformers
from transformers import Qwen3MoeForCausalLM
from safetensors.torch import load_file, save_file

fixtures = sys.argv[1]
src = os.path.join(fixtures, "tiny-qwen3moe")
weights = {}
for shard in sorted(set(json.load(open(os.path.join(src, "model.safetensors.index.json")))["weight_map"].values())):
    weights.update(load_file(os.path.join(src, shard)))
config = json.load(open(os.path.join(src, "config.json")))
not_converted = ["lm_head"] + [f"model.layers.{l}.mlp.gate" for l in range(config["num_hidden_layers"])]


def quantized(name, t):
    """Whether a tensor is a linear layer's weight that the published checkpoints quantize."""
    return name.endswith("_proj.weight") and t.dim() == 2


def fp8(w):
    """transformers' fine-grained FP8 quantization of one weight, 128x128 blocks."""
    rows, cols = w.shape
    w = w.float().reshape(rows // 128, 128, cols // 128, 128).permute(0, 2, 1, 3)
    scale = 448.0 / w.abs().amax(dim=(-1, -2))
    q = torch.clamp(w * scale[..., None, None], -448, 448).to(torch.float8_e4m3fn)
    q = q.permute(0, 2, 1, 3).reshape(rows, cols)
    scale_inv = scale.reciprocal()
    deq = (q.float().reshape(rows // 128, 128, cols // 128, 128) * scale_inv[:, None, :, None]).reshape(rows, cols)
    return q, scale_inv.contiguous(), deq


def gptq(w, group=128):
    """Symmetric 4-bit GPTQ of one weight [out, in] in AutoGPTQ's packing (numpy)."""
    w = w.float().numpy()
    out, inp = w.shape
    g = w.reshape(out, inp // group, group)
    scale = (2 * np.abs(g).max(axis=2) / 15).astype(np.float16)  # [out, groups], as stored
    s = scale.astype(np.float32)[:, :, None]
    q = np.clip(np.round(g / np.where(s == 0, 1, s)) + 8, 0, 15).astype(np.uint32).reshape(out, inp)
    qweight = np.zeros((inp // 8, out), dtype=np.uint32)
    for k in range(8):
        qweight |= q.T[k::8, :] << (4 * k)
    zeros = np.full((inp // group, out), 8 - 1, dtype=np.uint32)  # v1 format: zero - 1
    qzeros = np.zeros((inp // group, out // 8), dtype=np.uint32)
    for k in range(8):
        qzeros |= zeros[:, k::8] << (4 * k)
    deq = (q.reshape(out, inp // group, group).astype(np.float32) - 8) * s
    return {
        "qweight": torch.from_numpy(qweight.view(np.int32)),
        "qzeros": torch.from_numpy(qzeros.view(np.int32)),
        "scales": torch.from_numpy(scale.T.copy()),
        "g_idx": torch.arange(inp, dtype=torch.int32) // group,
    }, torch.from_numpy(deq.reshape(out, inp))


def reference(out, float_weights):
    """transformers' float32 logits of the dequantized model for the tiny fixture's p64 prompt."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dict(config)
        cfg.pop("quantization_config", None)
        json.dump(cfg, open(os.path.join(tmp, "config.json"), "w"))
        save_file({k: v.contiguous() for k, v in float_weights.items()}, os.path.join(tmp, "model.safetensors"))
        model = Qwen3MoeForCausalLM.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager").eval()
    ids = load_file(os.path.join(src, "reference.safetensors"))["p64.input_ids"].long()[None]
    with torch.no_grad():
        o = model(ids, output_router_logits=True, use_cache=False)
    gap = torch.full((ids.shape[1],), float("inf"))
    for rl in o.router_logits:
        p = torch.softmax(rl.float(), dim=-1).sort(dim=-1, descending=True).values
        gap = torch.minimum(gap, p[:, config["num_experts_per_tok"] - 1] - p[:, config["num_experts_per_tok"]])
    save_file({"p64.input_ids": ids[0].to(torch.int32), "p64.logits": o.logits[0].contiguous(), "p64.route_gap": gap},
              os.path.join(out, "reference.safetensors"),
              metadata={"producer": f"transformers {transformers.__version__} torch {torch.__version__}",
                        "compute_dtype": "float32", "weights": "dequantized"})


def write(name, quant_config, convert):
    out = os.path.join(fixtures, name)
    os.makedirs(out, exist_ok=True)
    stored, floats = {}, {}
    for k, t in weights.items():
        if quantized(k, t):
            parts, deq = convert(t)  # keyed by what replaces "weight" in the name
            stored.update({k.removesuffix("weight") + suffix: v for suffix, v in parts.items()})
            floats[k] = deq
        else:
            stored[k] = t
            floats[k] = t.float()
    cfg = dict(config, quantization_config=quant_config)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    save_file(stored, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    reference(out, floats)


def fp8_parts(t):
    q, s, deq = fp8(t)
    return {"weight": q, "weight_scale_inv": s}, deq


write("fp8-qwen3moe", {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                       "weight_block_size": [128, 128], "modules_to_not_convert": not_converted}, fp8_parts)
write("gptq-qwen3moe", {"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": True, "desc_act": False,
                        "damp_percent": 0.01, "true_sequential": True, "static_groups": False}, gptq)
