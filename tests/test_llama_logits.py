#!/usr/bin/env python3
"""`q3moe perplexity --kl-base FILE` where FILE holds llama-perplexity's saved log-probabilities
(its --kl-divergence-base format: "_logits_", n_ctx, n_vocab, n_chunk, the tokens, then each
chunk's second-half rows as two floats and a 16-bit level per vocabulary entry). The files here are
written with numpy, as llama-perplexity writes them, from transformers' logits of the tiny
fixture (tests/fixtures/tiny-qwen3moe/reference.safetensors), so:
  - q3moe's distributions must be within rounding of them (tiny KL, same argmax everywhere), and
    its perplexity that of transformers' logits on the same scored tokens;
  - the KL it prints must be the one computed here from `q3moe logits` and the saved levels as
    llama-perplexity --kl-divergence computes it (terms below -16 nats left out);
  - a file whose rows belong to other tokens gives a large KL, a text that tokenizes differently
    or a truncated file is refused naming the file."""
import os
import re
import struct
import subprocess
import tempfile
import unittest

import numpy as np
from safetensors.numpy import load_file

BIN = os.environ["Q3_BIN"]
FIX = os.environ["Q3_FIXTURES"]
TMP = tempfile.mkdtemp(dir=os.environ.get("Q3_TMP"))
TINY = os.path.join(FIX, "tiny-qwen3moe")
REF = load_file(os.path.join(TINY, "reference.safetensors"))
CTX = 64
# Two chunks of 64 tokens whose every logit transformers computed from position 0 on.
CHUNKS = [(REF["p64.input_ids"], REF["p64.logits"]), (REF["p300.input_ids"][:CTX], REF["p300.logits"][:CTX])]


def levels(logits):
    """One saved row: llama-perplexity's log_softmax into (scale, min_log_prob, u16 levels)."""
    x = logits.astype(np.float32)
    hi, lo = x.max(), max(x.min(), x.max() - 16)
    lse = np.float32(np.log(np.exp((x - hi).astype(np.float64)).sum()))
    scale = np.float32((hi - lo) / 65535.0)
    q = np.where(x > lo, np.rint((x - lo) / scale), 0).astype(np.uint16)
    return struct.pack("<ff", scale, lo - hi - lse) + q.tobytes()


def write_saved(path, chunks):
    vocab = chunks[0][1].shape[1]
    body = b"".join(np.asarray(ids, dtype=np.int32).tobytes() for ids, _ in chunks)
    rows = b"".join(levels(l[t]) for _, l in chunks for t in range(CTX // 2, CTX - 1))
    with open(path, "wb") as f:
        f.write(b"_logits_" + struct.pack("<Iii", CTX, vocab, len(chunks)) + body + rows)


def decoded(path, vocab, n_rows):
    """The saved log-probabilities back, [rows, vocab], as llama-perplexity reads them."""
    data = open(path, "rb").read()
    start = 20 + 4 * CTX * len(CHUNKS)
    out = []
    for r in range(n_rows):
        row = data[start + r * (vocab + 4) * 2:start + (r + 1) * (vocab + 4) * 2]
        scale, low = struct.unpack("<ff", row[:8])
        out.append(scale * np.frombuffer(row[8:], dtype=np.uint16).astype(np.float32) + low)
    return np.array(out)


def q3(*args):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=600)


def log_softmax(l):
    l = l.astype(np.float64)
    return l - l.max(axis=-1, keepdims=True) - np.log(np.exp(l - l.max(axis=-1, keepdims=True)).sum(axis=-1, keepdims=True))


def write_swapped(path):
    """Rows saved for the other chunk's tokens: large, varied KL values."""
    write_saved(path, [(CHUNKS[0][0], CHUNKS[1][1]), (CHUNKS[1][0], CHUNKS[0][1])])


class LlamaLogits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.saved = os.path.join(TMP, "tiny.kld")
        write_saved(cls.saved, CHUNKS)

    def evaluate(self, saved, *extra):
        r = q3("perplexity", "-m", TINY, "--kl-base", saved, "-t", "1", *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        ppl = float(re.search(r"perplexity: ([0-9.]+) over 2 windows of 64 tokens \(62 scored", r.stdout).group(1))
        kl, top1 = re.search(r"KL divergence from \S+: (-?[0-9.]+) \(largest [0-9.]+\), top-1 agreement ([0-9.]+)%",
                             r.stdout).groups()
        return ppl, float(kl), float(top1)

    def scored_log_probs(self):
        """q3moe's own log-probabilities (`q3moe logits`) at the scored positions of both chunks."""
        got = []
        for ids, _ in CHUNKS:
            out = os.path.join(TMP, "l.bin")
            r = q3("logits", "-m", TINY, "--tokens", ",".join(map(str, ids)), "--out", out, "-t", "1")
            self.assertEqual(r.returncode, 0, r.stderr)
            got.append(np.fromfile(out, dtype=np.float32).reshape(CTX, -1)[CTX // 2:CTX - 1])
        return log_softmax(np.concatenate(got))

    def test_agrees_with_transformers_logits(self):
        ppl, kl, top1 = self.evaluate(self.saved)
        nll = [-log_softmax(l[t])[ids[t + 1]] for ids, l in CHUNKS for t in range(CTX // 2, CTX - 1)]
        self.assertAlmostEqual(ppl, float(np.exp(np.mean(nll))), delta=1e-3 * ppl)
        self.assertLess(abs(kl), 1e-5)
        self.assertEqual(top1, 100.0)

    def test_kl_is_llama_perplexitys(self):
        """The printed KL against one computed here from q3moe's own logits and the saved levels."""
        lp = self.scored_log_probs()
        base = decoded(self.saved, lp.shape[1], len(lp)).astype(np.float64)
        want = np.where(base > -16, np.exp(base) * (base - lp), 0).sum(axis=1).mean()
        _, kl, _ = self.evaluate(self.saved)
        self.assertAlmostEqual(kl, want, delta=2e-6)
        # rows saved for the other chunk's tokens: far off, and counted so
        other = os.path.join(TMP, "swapped.kld")
        write_swapped(other)
        _, kl, top1 = self.evaluate(other)
        self.assertGreater(kl, 0.1)
        self.assertLess(top1, 50)

    def test_kl_spread(self):
        """The printed median, 90/95/99/99.9% points and the largest KL's place, against the per-row
        KL computed here, on rows saved for the other chunk's tokens (large, varied KL values)."""
        lp = self.scored_log_probs()
        other = os.path.join(TMP, "swapped2.kld")
        write_swapped(other)
        base = decoded(other, lp.shape[1], len(lp)).astype(np.float64)
        kls = np.where(base > -16, np.exp(base) * (base - lp), 0).sum(axis=1)
        r = q3("perplexity", "-m", TINY, "--kl-base", other, "-t", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"KL median ([0-9.]+), 90% ([0-9.]+), 95% ([0-9.]+), 99% ([0-9.]+), 99.9% ([0-9.]+); "
                      r"largest at window (\d+), position (\d+)", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        ranked = np.sort(kls)
        for q, printed in zip([0.5, 0.9, 0.95, 0.99, 0.999], m.groups()[:5]):
            self.assertAlmostEqual(float(printed), ranked[int(np.floor(q * (len(kls) - 1) + 0.5))], delta=2e-5)
        per = CTX - 1 - CTX // 2
        worst = int(np.argmax(kls))
        self.assertEqual((int(m.group(6)), int(m.group(7))), (worst // per, CTX // 2 + worst % per))

    def test_fewer_windows_and_kv_types(self):
        r = q3("perplexity", "-m", TINY, "--kl-base", self.saved, "--windows", "1", "--kv-type", "f16", "-t", "1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("over 1 windows of 64 tokens (31 scored", r.stdout)
        self.assertLess(float(re.search(r"KL divergence from \S+: (-?[0-9.]+)", r.stdout).group(1)), 1e-4)

    def test_refusals_name_the_file(self):
        ids = os.path.join(TMP, "ids.safetensors")
        from safetensors.numpy import save_file
        other = np.concatenate([c[0] for c in CHUNKS]).astype(np.int32)
        other[70] += 1
        save_file({"ids": other}, ids)
        r = q3("perplexity", "-m", TINY, "--kl-base", self.saved, "--ids", ids + ":ids")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{self.saved}: token 70 is", r.stderr)
        cut = os.path.join(TMP, "cut.kld")
        with open(self.saved, "rb") as f, open(cut, "wb") as g:
            g.write(f.read()[:-10])
        r = q3("perplexity", "-m", TINY, "--kl-base", cut)
        self.assertEqual(r.returncode, 1)
        self.assertIn(cut, r.stderr)
        self.assertIn("but its header", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
