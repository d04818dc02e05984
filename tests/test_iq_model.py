#!/usr/bin/env python3
"""The i-quants on a real model. The bundled demo's rows are 128 wide, where the 256-weight block
types fall back to others, so tests/gen/make_padded_demo.py pads it to 256-wide rows (a BF16 GGUF
that computes the same logits). This test checks that padding against the unpadded checkpoint,
makes an importance matrix with `q3moe imatrix` (over this repository's own Python tests: code,
like the demo's training text) and checks it as llama.cpp's tools read it (the gguf package),
then converts the padded model to every i-quant with it (the tied embedding / head at Q8_0, as
llama.cpp's recipes keep the output matrix at higher precision) and checks each file:
  - `q3moe info` names its file type and the type of its matrices;
  - prefill (all tokens in one batch) and decode (one token at a time) give the same logits to
    the bit: the kernels' results do not depend on the batch;
  - the logits stay close to the float model's: mean KL divergence of the next-token
    distributions within a per-type bound (about 1.5x what each type measures; the fewer the
    bits, the larger), and the types order by their bits.
Tokens: the first 96 of the demo's held-out text."""
import glob
import os
import re
import subprocess
import sys

import gguf
import numpy as np
from safetensors.numpy import load_file

BIN = os.environ["Q3_BIN"]
ROOT = os.environ["Q3_ROOT"]
TMP = os.environ.get("Q3_TMP", "/tmp")
DEMO_HF = os.environ.get("Q3_DEMO_HF", "/work/shared/models/qwen3-moe-demo-py")
N_TOKENS = 96

# Mean KL(float || quantized) bounds, nats per token.
KL_BOUNDS = {"IQ4_NL": 0.06, "IQ4_XS": 0.066, "IQ3_S": 0.17, "IQ3_XXS": 0.42, "IQ2_S": 0.7, "IQ2_XS": 1.3,
             "IQ2_XXS": 2.8, "IQ1_M": 2.9, "IQ1_S": 4.6}


def run(*args):
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def logits(model, ids, *extra):
    out = os.path.join(TMP, "iq_model_logits.bin")
    run(BIN, "logits", "-m", model, "--tokens", ",".join(map(str, ids)), "--out", out, *extra)
    return np.fromfile(out, dtype=np.float32).reshape(len(ids), -1)


def log_softmax(l):
    l = l.astype(np.float64) - l.max(axis=1, keepdims=True)
    return l - np.log(np.exp(l).sum(axis=1, keepdims=True))


def padded_model():
    path = os.path.join(TMP, "demo-padded-256.gguf")
    run(sys.executable, os.path.join(ROOT, "tests", "gen", "make_padded_demo.py"), path, "--model", DEMO_HF)
    return path


def importance_matrix(padded):
    """q3moe imatrix over the repository's Python tests; its file as llama.cpp's reader sees it."""
    text = os.path.join(TMP, "iq_model_calibration.py")
    with open(text, "w") as out:
        for path in sorted(glob.glob(os.path.join(ROOT, "tests", "*.py"))):
            with open(path) as f:
                out.write(f.read())
    path = os.path.join(TMP, "demo-padded.imatrix.gguf")
    run(BIN, "imatrix", "-m", padded, "-f", text, "-o", path, "--ctx", "256", "--chunks", "16")
    r = gguf.GGUFReader(path)
    fields = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    tensors = {t.name: np.array(t.data).reshape(-1) for t in r.tensors}
    if fields.get("general.type") != "imatrix" or fields.get("imatrix.chunk_size") != 256:
        sys.exit(f"imatrix metadata: {fields}")
    for l in range(4):
        for m in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps",
                  "ffn_down_exps"):
            sums, counts = tensors.get(f"blk.{l}.{m}.weight.in_sum2"), tensors.get(f"blk.{l}.{m}.weight.counts")
            experts = 16 if m.endswith("_exps") else 1
            if sums is None or counts is None or sums.size != 256 * experts or counts.size != experts:
                sys.exit(f"imatrix: blk.{l}.{m}.weight is missing or misshapen")
            if counts.sum() != (16 * 256 * (4 if experts > 1 else 1)):  # every token reaches top-4 experts
                sys.exit(f"imatrix: blk.{l}.{m}.weight counts {counts.sum()} tokens")
            seen = sums.reshape(experts, 256)[counts.reshape(-1) > 0]
            if ((seen > 0).sum(axis=1) != 128).any():  # half the columns are padding: exactly zero
                sys.exit(f"imatrix: blk.{l}.{m}.weight sums do not show the padding's zero columns")
    print(f"imatrix: {len(tensors) // 2} matrices, read back by the gguf package")
    return path


def main():
    if not os.path.isdir(DEMO_HF):
        print(f"SKIP: {DEMO_HF} (the demo checkpoint) is not here")
        return
    ids = load_file(os.path.join(DEMO_HF, "reference.safetensors"))["heldout.ids"].astype(np.int64)[:N_TOKENS]
    padded = padded_model()
    base = logits(padded, ids)
    unpadded = logits(DEMO_HF, ids)
    err = np.abs(base - unpadded).max()
    print(f"padded vs unpadded demo: max |logit difference| {err:.2e} (logits up to {np.abs(unpadded).max():.1f})")
    if err > 1e-4:
        sys.exit("the padded demo does not compute the demo's logits")
    ref = log_softmax(base)
    imatrix = importance_matrix(padded)
    refused = subprocess.run([BIN, "convert", padded, "-o", os.path.join(TMP, "never.gguf"), "--type", "iq2_xxs"],
                             capture_output=True, text=True)
    if refused.returncode == 0 or "--imatrix" not in refused.stderr:
        sys.exit("convert --type iq2_xxs without an importance matrix should be refused, naming --imatrix")
    previous = 0.0
    for name, bound in KL_BOUNDS.items():
        path = os.path.join(TMP, f"demo-padded-{name.lower()}.gguf")
        run(BIN, "convert", padded, "-o", path, "--type", name.lower(), "--embed-type", "q8_0", "--imatrix", imatrix)
        info = run(BIN, "info", path).stdout
        if f"GGUF file type {name} " not in info or not re.search(rf"^ +{name} +28 tensors", info, re.M):
            sys.exit(f"{name}: q3moe info does not name the file type and its 28 {name} matrices:\n{info}")
        prefill, decode = logits(path, ids), logits(path, ids, "--decode")
        if not np.array_equal(prefill, decode):
            sys.exit(f"{name}: prefill and decode logits differ (max {np.abs(prefill - decode).max():.3g})")
        q = log_softmax(prefill)
        kl = float((np.exp(ref) * (ref - q)).sum(axis=1).mean())
        top1 = float((prefill.argmax(1) == base.argmax(1)).mean())
        print(f"{name:8s} prefill == decode; KL {kl:.4f} (bound {bound}), top-1 agreement {top1:.3f}")
        if kl > bound:
            sys.exit(f"{name}: KL {kl} above {bound}")
        if kl < 0.4 * previous:
            sys.exit(f"{name}: KL {kl} far below the type with more bits before it ({previous})")
        previous = kl
        os.remove(path)
    os.remove(padded)
    os.remove(imatrix)
    print("ok")


if __name__ == "__main__":
    main()
