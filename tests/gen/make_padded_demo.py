#!/usr/bin/env python3
"""Writes the bundled demo model (/work/shared/models/qwen3-moe-demo-py, hidden 128, head_dim 32,
expert width 128) padded to 256-wide rows as a BF16 GGUF that computes the same logits, so the
256-weight block types (K-quants, i-quants) can be tested on a real model: the demo's own rows
are 128 wide, where those types fall back to 32-wide ones.

Zero padding keeps every product and sum; what changes is fixed up exactly:
  - hidden 128 -> 256, expert width 128 -> 256, head_dim 32 -> 64, all with zeros;
  - RMSNorm over twice the width: mean(x^2) halves, so eps halves and the weights are divided by
    sqrt(2) (norm(x') = sqrt(2) * norm(x) before the weights);
  - RoPE pairs dimension i with i + head_dim / 2: each half of a head is padded on its own
    (dims 0-15 -> 0-15, 16-31 -> 32-47), and rope_theta is squared, so that frequency
    theta'^(-2i/64) equals the original theta^(-2i/32) for the dims that carry data;
  - the attention scale 1/sqrt(head_dim) shrinks by 1/sqrt(2): q_norm keeps its weights
    (undivided), which scales q by sqrt(2) to make up for it.
Matrices stay BF16 (the checkpoint's own values; padding adds only zeros), norms F32.

usage: make_padded_demo.py OUT.gguf [--model DIR] [--like DEMO.gguf]
  --model: the checkpoint (default /work/shared/models/qwen3-moe-demo-py, or $Q3_DEMO_HF)
  --like:  a GGUF of the same model whose tokenizer and metadata are copied
           (default models/qwen3-moe-demo-py.gguf of this repository)
"""
import argparse
import json
import os
import struct

import numpy as np
import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SQRT2 = np.float32(np.sqrt(2.0))


def read_bf16_safetensors(path):
    """Every tensor as raw bf16 bits (uint16), shaped."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        if h["dtype"] != "BF16":
            raise SystemExit(f"{path}: tensor {name} is {h['dtype']}, expected BF16")
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=np.uint16).reshape(h["shape"])
    return out


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def pad_matrix(w, rows, cols, row_map=None, col_map=None):
    """w [r, c] placed into zeros [rows, cols]: row i at row_map[i] (default i), likewise cols."""
    out = np.zeros((rows, cols), dtype=w.dtype)
    r = np.arange(w.shape[0]) if row_map is None else row_map
    c = np.arange(w.shape[1]) if col_map is None else col_map
    out[np.ix_(r, c)] = w
    return out


def head_map(n_heads, d, d_new):
    """Where dim j of head h goes: each half of a head padded on its own (RoPE's pairs)."""
    j = np.arange(d)
    within = np.where(j < d // 2, j, j - d // 2 + d_new // 2)
    return (np.arange(n_heads)[:, None] * d_new + within[None, :]).reshape(-1)


def padded_norm(w, n_new, index=None):
    """An RMSNorm weight for twice the width: the original weights over sqrt(2), zeros elsewhere."""
    out = np.zeros(n_new, dtype=np.float32)
    out[np.arange(len(w)) if index is None else index] = w / SQRT2
    return out


def copy_metadata(writer, like, overrides):
    for key, field in like.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key in overrides:
            value, vtype = overrides[key]
            writer.add_key_value(key, value, vtype)
            continue
        sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--model", default=os.environ.get("Q3_DEMO_HF", "/work/shared/models/qwen3-moe-demo-py"))
    ap.add_argument("--like", default=os.path.join(ROOT, "models", "qwen3-moe-demo-py.gguf"))
    args = ap.parse_args()

    cfg = json.load(open(os.path.join(args.model, "config.json")))
    H, d, I = cfg["hidden_size"], cfg["head_dim"], cfg["moe_intermediate_size"]
    nh, nkv, E, L = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_experts"], cfg["num_hidden_layers"]
    if not cfg.get("tie_word_embeddings") or cfg.get("mlp_only_layers") or cfg.get("decoder_sparse_step", 1) != 1:
        raise SystemExit("this padding is written for the demo's shape: tied embeddings, every layer MoE")
    H2, d2, I2 = 2 * H, 2 * d, 2 * I
    w = read_bf16_safetensors(os.path.join(args.model, "model.safetensors"))
    q_rows, kv_rows = head_map(nh, d, d2), head_map(nkv, d, d2)
    head_dims = head_map(1, d, d2)

    V = gguf.GGUFValueType
    overrides = {
        "general.name": ("qwen3-moe-demo-py padded to 256", V.STRING),
        "general.file_type": (32, V.UINT32),  # MOSTLY_BF16
        "qwen3moe.embedding_length": (H2, V.UINT32),
        "qwen3moe.attention.key_length": (d2, V.UINT32),
        "qwen3moe.attention.value_length": (d2, V.UINT32),
        "qwen3moe.expert_feed_forward_length": (I2, V.UINT32),
        "qwen3moe.rope.freq_base": (float(cfg["rope_theta"]) ** 2, V.FLOAT32),
        "qwen3moe.attention.layer_norm_rms_epsilon": (float(cfg["rms_norm_eps"]) / 2, V.FLOAT32),
    }
    writer = gguf.GGUFWriter(args.out, "qwen3moe")
    copy_metadata(writer, gguf.GGUFReader(args.like), overrides)

    def mat(name, a):
        writer.add_tensor(name, np.ascontiguousarray(a), raw_dtype=gguf.GGMLQuantizationType.BF16)

    def vec(name, a):
        writer.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))

    mat("token_embd.weight", pad_matrix(w["model.embed_tokens.weight"], cfg["vocab_size"], H2))
    for l in range(L):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        vec(b + "attn_norm.weight", padded_norm(bf16_to_f32(w[p + "input_layernorm.weight"]), H2))
        mat(b + "attn_q.weight", pad_matrix(w[p + "self_attn.q_proj.weight"], nh * d2, H2, row_map=q_rows))
        mat(b + "attn_k.weight", pad_matrix(w[p + "self_attn.k_proj.weight"], nkv * d2, H2, row_map=kv_rows))
        mat(b + "attn_v.weight", pad_matrix(w[p + "self_attn.v_proj.weight"], nkv * d2, H2, row_map=kv_rows))
        mat(b + "attn_output.weight", pad_matrix(w[p + "self_attn.o_proj.weight"], H2, nh * d2, col_map=q_rows))
        q_norm = np.zeros(d2, dtype=np.float32)  # undivided: makes up for the attention scale
        q_norm[head_dims] = bf16_to_f32(w[p + "self_attn.q_norm.weight"])
        vec(b + "attn_q_norm.weight", q_norm)
        vec(b + "attn_k_norm.weight", padded_norm(bf16_to_f32(w[p + "self_attn.k_norm.weight"]), d2, head_dims))
        vec(b + "ffn_norm.weight", padded_norm(bf16_to_f32(w[p + "post_attention_layernorm.weight"]), H2))
        vec(b + "ffn_gate_inp.weight", pad_matrix(bf16_to_f32(w[p + "mlp.gate.weight"]), E, H2))
        for part, shape in (("gate", (I2, H2)), ("up", (I2, H2)), ("down", (H2, I2))):
            mats = [pad_matrix(w[f"{p}mlp.experts.{e}.{part}_proj.weight"], *shape) for e in range(E)]
            mat(f"{b}ffn_{part}_exps.weight", np.stack(mats))
    vec("output_norm.weight", padded_norm(bf16_to_f32(w["model.norm.weight"]), H2))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
