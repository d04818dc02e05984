#!/usr/bin/env python3
"""The i-quants on a real model. The bundled demo's rows are 128 wide, where the 256-weight block
types fall back to others, so tests/gen/make_padded_demo.py pads it to 256-wide rows (a BF16 GGUF
that computes the same logits). This test checks that padding against the unpadded checkpoint,
then converts the padded model to every i-quant (the tied embedding / head at Q8_0, as
llama.cpp's recipes keep the output matrix at higher precision) and checks each file:
  - prefill (all tokens in one batch) and decode (one token at a time) give the same logits to
    the bit: the kernels' results do not depend on the batch;
  - the logits stay close to the float model's: mean KL divergence of the next-token
    distributions within a per-type bound (about 1.5x what each type measures; the fewer the
    bits, the larger), and the types order by their bits.
Tokens: the first 96 of the demo's held-out text."""
import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file

BIN = os.environ["Q3_BIN"]
ROOT = os.environ["Q3_ROOT"]
TMP = os.environ.get("Q3_TMP", "/tmp")
DEMO_HF = os.environ.get("Q3_DEMO_HF", "/work/shared/models/qwen3-moe-demo-py")
N_TOKENS = 96

# Mean KL(float || quantized) bounds, nats per token.
KL_BOUNDS = {"IQ4_NL": 0.06, "IQ4_XS": 0.06, "IQ3_S": 0.15, "IQ3_XXS": 0.4, "IQ2_S": 0.75, "IQ2_XS": 1.0,
             "IQ2_XXS": 1.9, "IQ1_M": 3.2, "IQ1_S": 4.9}


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
    previous = 0.0
    for name, bound in KL_BOUNDS.items():
        path = os.path.join(TMP, f"demo-padded-{name.lower()}.gguf")
        run(BIN, "convert", padded, "-o", path, "--type", name.lower(), "--embed-type", "q8_0")
        prefill, decode = logits(path, ids), logits(path, ids, "--decode")
        if not np.array_equal(prefill, decode):
            sys.exit(f"{name}: prefill and decode logits differ (max {np.abs(prefill - decode).max():.3g})")
        q = log_softmax(prefill)
        kl = float((np.exp(ref) * (ref - q)).sum(axis=1).mean())
        top1 = float((prefill.argmax(1) == base.argmax(1)).mean())
        print(f"{name:8s} prefill == decode; KL {kl:.4f} (bound {bound}), top-1 agreement {top1:.3f}")
        if kl > bound:
            sys.exit(f"{name}: KL {kl} above {bound}")
        if kl < 0.5 * previous:
            sys.exit(f"{name}: KL {kl} far below the type with more bits before it ({previous})")
        previous = kl
        os.remove(path)
    os.remove(padded)
    print("ok")


if __name__ == "__main__":
    main()
