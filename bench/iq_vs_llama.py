#!/usr/bin/env python3
"""The i-quants against llama.cpp on the same files. The model is the demo padded to 256-wide rows
(tests/gen/make_padded_demo.py), converted to each type by `q3moe convert --imatrix` and, with
--their-files, by llama-quantize --imatrix from the same BF16 file, so each tool also runs the
other's files. For each file:

  - perplexity: llama-perplexity over the text's chunks of --ctx tokens, saving its log-probabilities
    (--kl-divergence-base), and `q3moe perplexity --kl-base` on that file: the same tokens, chunks
    and scored positions (each chunk's second half), so the two figures compare directly;
  - KL divergence from llama.cpp's prefill (that saved file), over its first --kl-chunks chunks,
    of q3moe (`--kl-base ... --windows K`, KV cache --kv-type as llama.cpp's default f16) and of
    llama.cpp itself run one token at a time (`llama-perplexity --kl-divergence -b 1 -ub 1` on the
    first K chunks of the saved file): llama.cpp's own prefill-vs-token-by-token difference,
    measured on the same positions against the same saved distribution (whose 16-bit levels add
    the same small noise to both).

usage: iq_vs_llama.py --q3 build/q3moe --llama DIR --imatrix FILE --text EVAL.txt [--ctx 512]
                      [--types iq4_xs,iq2_xxs] [--their-files] [--only-theirs] [--kl-chunks 3]
                      [--reuse] [--work DIR]
Prints a markdown table; the figures go to bench/RESULTS.md."""
import argparse
import os
import re
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_TYPES = ["iq4_nl", "iq4_xs", "iq3_s", "iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s"]
# llama-quantize's file type whose tensors are all of the type under --pure: its IQ2_S recipe is
# built on IQ2_XS tensors, and IQ2_M on IQ2_S ones.
LLAMA_FTYPE = {"iq2_s": "IQ2_M"}


def run(*args):
    done = subprocess.run(["nice", "-n", "19", *[str(a) for a in args]], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed: {done.stderr[-3000:]}")
    return done.stdout + done.stderr


def first_chunks(src, dst, k):
    """The first k chunks of a llama-perplexity log-probability file, in the same format."""
    with open(src, "rb") as f:
        magic, n_ctx, n_vocab, n_chunk = struct.unpack("<8sIii", f.read(20))
        k = min(k, n_chunk)
        tokens = f.read(4 * n_ctx * n_chunk)[:4 * n_ctx * k]
        row = 2 * (2 * ((n_vocab + 1) // 2) + 4)
        rows = f.read(k * (n_ctx - 1 - n_ctx // 2) * row)
    with open(dst, "wb") as f:
        f.write(struct.pack("<8sIii", magic, n_ctx, n_vocab, k) + tokens + rows)


def measure(a, model):
    """(llama PPL, q3moe PPL, llama token-by-token KL, q3moe KL) on one file."""
    base, head = os.path.join(a.work, "base.kld"), os.path.join(a.work, "base-head.kld")
    llama = os.path.join(a.llama, "llama-perplexity")
    out = run(llama, "-m", model, "-f", a.text, "-c", a.ctx, "-t", a.threads, "--kl-divergence-base", base)
    theirs = float(re.search(r"Final estimate: PPL = ([0-9.]+)", out).group(1))
    out = run(a.q3, "perplexity", "-m", model, "--kl-base", base, "--kv-type", "f16", "-t", a.threads)
    ours = float(re.search(r"perplexity: ([0-9.]+) over", out).group(1))
    kl_theirs = kl_ours = float("nan")
    if a.kl_chunks > 0:
        first_chunks(base, head, a.kl_chunks)
        out = run(llama, "-m", model, "-c", a.ctx, "-t", a.threads, "-b", "1", "-ub", "1", "--kl-divergence",
                  "--kl-divergence-base", head)
        kl_theirs = float(re.search(r"Mean +KLD: +(-?[0-9.]+)", out).group(1))
        out = run(a.q3, "perplexity", "-m", model, "--kl-base", head, "--kv-type", "f16", "-t", a.threads)
        kl_ours = float(re.search(r"KL divergence from \S+: (-?[0-9.]+)", out).group(1))
        os.remove(head)
    os.remove(base)
    return theirs, ours, kl_theirs, kl_ours


def row(a, label, model):
    theirs, ours, kl_theirs, kl_ours = measure(a, model)
    diff = 100 * (ours - theirs) / theirs
    mib = os.path.getsize(model) / 2**20
    print(f"| {label} | {mib:.1f} | {theirs:.4f} | {ours:.4f} | {diff:+.3f}% | {kl_theirs:.6f} | {kl_ours:.6f} |",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--q3", required=True)
    ap.add_argument("--llama", required=True, help="directory of llama-perplexity and llama-quantize")
    ap.add_argument("--imatrix", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--ctx", default="512")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--types", default=",".join(ALL_TYPES))
    ap.add_argument("--their-files", action="store_true", help="also llama-quantize's file of each type")
    ap.add_argument("--only-theirs", action="store_true", help="only llama-quantize's files (and BF16)")
    ap.add_argument("--kl-chunks", type=int, default=3, help="chunks for the KL columns (0: none)")
    ap.add_argument("--reuse", action="store_true", help="keep files already in --work")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--work", default="/tmp/iq_vs_llama")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    padded = os.path.join(a.work, "demo-padded-bf16.gguf")
    if not os.path.exists(padded):
        run(sys.executable, os.path.join(ROOT, "tests", "gen", "make_padded_demo.py"), padded)
    print("| file | MiB | llama-perplexity | q3moe perplexity | difference | KL llama.cpp token by token | KL q3moe |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    if not a.no_bf16:
        row(a, "BF16 (padded demo)", padded)
    for t in a.types.split(","):
        ours = os.path.join(a.work, f"q3moe-{t}.gguf")
        if not a.only_theirs:
            if not (a.reuse and os.path.exists(ours)):
                run(a.q3, "convert", padded, "-o", ours, "--type", t, "--embed-type", "q8_0", "--imatrix", a.imatrix)
            row(a, f"{t.upper()}, made by q3moe convert", ours)
        if a.their_files or a.only_theirs:
            theirs = os.path.join(a.work, f"llama-{t}.gguf")
            if not (a.reuse and os.path.exists(theirs)):
                run(os.path.join(a.llama, "llama-quantize"), "--pure", "--imatrix", a.imatrix, "--token-embedding-type",
                    "q8_0", "--output-tensor-type", "q8_0", padded, theirs, LLAMA_FTYPE.get(t, t.upper()), a.threads)
            row(a, f"{t.upper()}, made by llama-quantize", theirs)


if __name__ == "__main__":
    main()
