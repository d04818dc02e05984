#!/usr/bin/env python3
"""The i-quants against llama.cpp on the same files: perplexity by llama-perplexity and by
`q3moe perplexity --llama-chunks` (the same chunks, the same scored tokens) on each file, and
their relative difference. The model is the demo padded to 256-wide rows (tests/gen/
make_padded_demo.py), converted to each type by `q3moe convert --imatrix` and, with --their-files,
by llama-quantize --imatrix from the same BF16 file, so each tool also runs the other's files.

usage: iq_vs_llama.py --q3 build/q3moe --llama DIR --imatrix FILE --text EVAL.txt [--ctx 512]
                      [--types iq4_xs,iq2_xxs] [--their-files] [--work DIR]
Prints a markdown table; the figures go to bench/RESULTS.md."""
import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_TYPES = ["iq4_nl", "iq4_xs", "iq3_s", "iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s"]
# llama-quantize's file type whose tensors are all of the type under --pure: its IQ2_S recipe is
# built on IQ2_XS tensors, and IQ2_M on IQ2_S ones.
LLAMA_FTYPE = {"iq2_s": "IQ2_M"}


def run(*args):
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed: {done.stderr[-3000:]}")
    return done.stdout + done.stderr


def llama_ppl(a, model):
    out = run(os.path.join(a.llama, "llama-perplexity"), "-m", model, "-f", a.text, "-c", a.ctx, "-t", a.threads)
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", out)
    if not m:
        sys.exit(f"llama-perplexity printed no estimate for {model}")
    return float(m.group(1))


def q3_ppl(a, model):
    out = run(a.q3, "perplexity", "-m", model, "-f", a.text, "--ctx", a.ctx, "--llama-chunks", "-t", a.threads)
    return float(re.search(r"perplexity: ([0-9.]+) over", out).group(1))


def row(a, label, model):
    t0 = time.time()
    theirs, ours = llama_ppl(a, model), q3_ppl(a, model)
    diff = 100 * (ours - theirs) / theirs
    mib = os.path.getsize(model) / 2**20
    print(f"| {label} | {mib:.1f} | {theirs:.4f} | {ours:.4f} | {diff:+.3f}% |", flush=True)
    return time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--q3", required=True)
    ap.add_argument("--llama", required=True, help="directory of llama-perplexity and llama-quantize")
    ap.add_argument("--imatrix", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--ctx", default="512")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--types", default=",".join(ALL_TYPES))
    ap.add_argument("--their-files", action="store_true")
    ap.add_argument("--work", default="/tmp/iq_vs_llama")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    padded = os.path.join(a.work, "demo-padded-bf16.gguf")
    if not os.path.exists(padded):
        run(sys.executable, os.path.join(ROOT, "tests", "gen", "make_padded_demo.py"), padded)
    print("| file | MiB | llama-perplexity | q3moe perplexity | difference |")
    print("|---|---:|---:|---:|---:|")
    row(a, "BF16 (padded demo)", padded)
    for t in a.types.split(","):
        ours = os.path.join(a.work, f"q3moe-{t}.gguf")
        run(a.q3, "convert", padded, "-o", ours, "--type", t, "--embed-type", "q8_0", "--imatrix", a.imatrix)
        row(a, f"{t.upper()}, made by q3moe convert", ours)
        if a.their_files:
            theirs = os.path.join(a.work, f"llama-{t}.gguf")
            run(os.path.join(a.llama, "llama-quantize"), "--pure", "--imatrix", a.imatrix, "--token-embedding-type",
                "q8_0", "--output-tensor-type", "q8_0", padded, theirs, LLAMA_FTYPE.get(t, t.upper()), a.threads)
            row(a, f"{t.upper()}, made by llama-quantize", theirs)


if __name__ == "__main__":
    main()
