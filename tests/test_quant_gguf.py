#!/usr/bin/env python3
"""Our block formats against the gguf Python package (llama.cpp's own reference in numpy).

Random raw blocks of every format (random bits, with sane fp16 scales so nothing overflows)
must dequantize to the same floats in both (the i-quants bit for bit); float rows must quantize
to the same bytes where the package can quantize (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, BF16, F16),
under every instruction set this CPU runs. Our own K-quant and i-quant output must dequantize
the same in both too, and the i-quant grid tables must be the generator's output. The kernels are
reached through bench/quant_dump, built next to $Q3_BIN.
"""
import os
import subprocess
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

QUANT_DUMP = os.path.join(os.path.dirname(os.environ["Q3_BIN"]), "quant_dump")

# Byte offsets of each format's fp16 scale fields, and a typical magnitude for each.
SCALE_FIELDS = {
    T.Q4_0: [(0, 1e-2)],
    T.Q4_1: [(0, 1e-2), (2, 1e-1)],
    T.Q5_0: [(0, 1e-2)],
    T.Q5_1: [(0, 1e-2), (2, 1e-1)],
    T.Q8_0: [(0, 1e-3)],
    T.Q2_K: [(80, 1e-2), (82, 1e-2)],
    T.Q3_K: [(108, 1e-3)],
    T.Q4_K: [(0, 1e-3), (2, 1e-3)],
    T.Q5_K: [(0, 1e-3), (2, 1e-3)],
    T.Q6_K: [(208, 1e-4)],
    T.IQ4_NL: [(0, 1e-3)],
    T.IQ4_XS: [(0, 1e-3)],
    T.IQ3_XXS: [(0, 1e-3)],
    T.IQ3_S: [(0, 1e-3)],
    T.IQ2_XXS: [(0, 1e-3)],
    T.IQ2_XS: [(0, 1e-3)],
    T.IQ2_S: [(0, 1e-3)],
    T.IQ1_S: [(0, 1e-3)],
    T.IQ1_M: [],  # its fp16 d is spread over four nibbles: see random_blocks
}
I_QUANTS = [T.IQ4_NL, T.IQ4_XS, T.IQ3_XXS, T.IQ3_S, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ1_S, T.IQ1_M]
QUANTIZABLE = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.BF16, T.F16]
K_QUANTS = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]


def quant_dump(args, data, isa=None):
    env = dict(os.environ)
    if isa:
        env["Q3_ISA"] = isa
    done = subprocess.run([QUANT_DUMP, *args], input=data, capture_output=True, env=env)
    if done.returncode != 0:
        sys.exit(f"quant_dump {' '.join(args)} failed: {done.stderr.decode()}")
    return done.stdout


def ours_dequantize(qtype, raw):
    return np.frombuffer(quant_dump(["dequantize", qtype.name], raw.tobytes()), dtype="<f4")


def ours_quantize(qtype, values, isa=None):
    out = quant_dump(["quantize", qtype.name], values.astype("<f4").tobytes(), isa)
    return np.frombuffer(out, dtype=np.uint8)


def random_blocks(rng, qtype, n_blocks):
    """Random bits with every fp16 scale field set to +-[s, 2s)."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset, magnitude in SCALE_FIELDS[qtype]:
        sign = rng.choice([-1.0, 1.0], size=n_blocks)
        scale = (sign * magnitude * (1 + rng.random(n_blocks))).astype(np.float16)
        raw[:, offset:offset + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    if qtype == T.IQ1_M:  # d's nibbles are the top nibbles of the four scale words (bytes 48-55)
        d = (1e-3 * (1 + rng.random(n_blocks))).astype(np.float16).view(np.uint16)
        words = raw[:, 48:56].copy().view(np.uint16) & np.uint16(0x0FFF)
        for j in range(4):
            words[:, j] |= ((d >> np.uint16(4 * j)) & np.uint16(0xF)) << np.uint16(12)
        raw[:, 48:56] = words.view(np.uint8)
    return raw


def test_values(rng, n):
    """Gaussian rows with outliers, plus the corner cases of rounding: a zero block, exact
    halves (ties), equal magnitudes of both signs, integers."""
    x = rng.standard_normal(n).astype(np.float32) * 0.05
    x[rng.random(n) < 1 / 64] *= 8
    x[:256] = 0
    x[256:512] = ((np.arange(256) % 9) - 4) * 0.5
    x[512:768] = np.where(np.arange(256) % 2, 1.0, -1.0) * (np.arange(256) % 5)
    x[768:1024] = (np.arange(256) % 255) - 127
    return x


def check_equal(what, ours, theirs, rtol=0.0):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.shape != theirs.shape:
        sys.exit(f"{what}: shape {ours.shape} != {theirs.shape}")
    if rtol == 0.0:
        bad = np.flatnonzero(ours != theirs)
    else:
        scale = np.max(np.abs(theirs)) if theirs.size else 0.0
        bad = np.flatnonzero(np.abs(ours.astype(np.float64) - theirs) > rtol * scale)
    if bad.size:
        i = bad[0]
        sys.exit(f"{what}: {bad.size} of {ours.size} differ; first at {i}: ours {ours[i]!r}, gguf {theirs[i]!r}")


def test_dequantize_random_blocks(rng):
    for qtype in SCALE_FIELDS:
        # Enough blocks that every entry of the largest grid (IQ1_S's 2048) occurs.
        raw = random_blocks(rng, qtype, 4096 if qtype in I_QUANTS else 512)
        theirs = dequantize(raw.reshape(-1), qtype).reshape(-1)
        # Products of the same float32 factors: equal, or one rounding apart where the order of
        # a multiply-add differs (FMA contraction in some builds). The i-quants' dequantization
        # has no multiply-add to contract: bit for bit.
        rtol = 0.0 if qtype in I_QUANTS else 1e-6
        check_equal(f"dequantize {qtype.name}", ours_dequantize(qtype, raw), theirs, rtol=rtol)
        print(f"dequantize {qtype.name}: {theirs.size} values agree")


def test_quantize_matches(rng, isas):
    x = test_values(rng, 256 * 64)
    for qtype in QUANTIZABLE:
        theirs = quantize(x, qtype).view(np.uint8).reshape(-1)
        for isa in isas:
            check_equal(f"quantize {qtype.name} ({isa})", ours_quantize(qtype, x, isa), theirs)
        print(f"quantize {qtype.name}: {x.size} values agree byte for byte ({', '.join(isas)})")


def test_k_quants_round_trip(rng):
    x = test_values(rng, 256 * 64)
    for qtype in K_QUANTS + [T.Q8_0]:
        raw = ours_quantize(qtype, x)
        theirs = dequantize(raw, qtype).reshape(-1)
        check_equal(f"dequantize our {qtype.name}", ours_dequantize(qtype, raw), theirs, rtol=1e-6)
        err = np.sqrt(np.mean((theirs - x) ** 2) / np.mean(x ** 2))
        print(f"{qtype.name}: our quantization dequantized by gguf, relative RMS error {err:.4f}")
        if err > 0.4:
            sys.exit(f"{qtype.name}: relative RMS error {err} is not a quantization of the input")


# Relative RMS error of our quantizers on the Gaussian part of test_values (heavy outliers), about
# 1.2x what they measure.
I_QUANT_ERROR_BOUNDS = {T.IQ4_NL: 0.13, T.IQ4_XS: 0.13, T.IQ3_S: 0.22, T.IQ3_XXS: 0.28, T.IQ2_S: 0.46,
                        T.IQ2_XS: 0.48, T.IQ2_XXS: 0.6, T.IQ1_M: 0.55, T.IQ1_S: 0.7}


def test_i_quants_round_trip(rng, isas):
    """Our i-quant files read the same in gguf, and are a quantization of their input. The
    quantizers are scalar code: every ISA writes the same bytes."""
    x = test_values(rng, 256 * 64)
    for qtype in I_QUANTS:
        raw = ours_quantize(qtype, x)
        for isa in isas[1:]:
            check_equal(f"quantize {qtype.name} ({isa})", ours_quantize(qtype, x, isa), raw)
        theirs = dequantize(raw, qtype).reshape(-1)
        check_equal(f"dequantize our {qtype.name}", ours_dequantize(qtype, raw), theirs)
        gauss = slice(1024, None)  # the corner cases before it would dominate the RMS
        err = np.sqrt(np.mean((theirs[gauss] - x[gauss]) ** 2) / np.mean(x[gauss] ** 2))
        print(f"{qtype.name}: our quantization dequantized by gguf, relative RMS error {err:.4f} (Gaussian part)")
        if err > I_QUANT_ERROR_BOUNDS[qtype]:
            sys.exit(f"{qtype.name}: relative RMS error {err} above {I_QUANT_ERROR_BOUNDS[qtype]}")


def test_grid_tables_generated():
    """src/quant/iq_grids.c is what scripts/gen_iq_grids.py makes of gguf's tables."""
    root = os.environ["Q3_ROOT"]
    done = subprocess.run([sys.executable, os.path.join(root, "scripts", "gen_iq_grids.py")], capture_output=True,
                          check=True)
    with open(os.path.join(root, "src", "quant", "iq_grids.c"), "rb") as f:
        if f.read() != done.stdout:
            sys.exit("src/quant/iq_grids.c differs from what scripts/gen_iq_grids.py prints")
    print("iq_grids.c is the generator's output")


def supported_isas():
    best = quant_dump(["isa"], b"").decode().strip()
    order = ["scalar", "avx2", "avx512"]
    isas = order[: order.index(best) + 1] if best in order else ["scalar"]
    for isa in isas:
        got = quant_dump(["isa"], b"", isa).decode().strip()
        if got != isa:
            sys.exit(f"Q3_ISA={isa} ran {got}")
    return isas


def main():
    rng = np.random.default_rng(20240611)
    isas = supported_isas()
    test_dequantize_random_blocks(rng)
    test_quantize_matches(rng, isas)
    test_k_quants_round_trip(rng)
    test_i_quants_round_trip(rng, isas)
    test_grid_tables_generated()
    print("ok")


if __name__ == "__main__":
    main()
