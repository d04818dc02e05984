"""The checkpoint formats people download, end to end through the command line: Qwen's FP8 and
GPTQ-Int4 checkpoints and YaRN rope scaling (the fixtures tests/gen/make_quantized_fixtures.py
and make_yarn_fixture.py made with transformers), against independent references: transformers'
logits, the `gguf` package's reading and dequantization of what `convert` writes, and GPTQ's
packing unpacked here with numpy. Settings that cannot run are refused naming the field."""
import json, os, shutil, struct, subprocess, tempfile, unittest
import numpy as np
import gguf
from safetensors.numpy import load_file

BIN = os.environ["Q3_BIN"]
FIX = os.environ["Q3_FIXTURES"]
TMP = tempfile.mkdtemp(dir=os.environ.get("Q3_TMP"))
FP8, GPTQ, YARN, TINY = (os.path.join(FIX, d) for d in ("fp8-qwen3moe", "gptq-qwen3moe", "yarn-qwen3moe", "tiny-qwen3moe"))


def q3(*args, launcher=()):
    return subprocess.run([*launcher, BIN, *args], capture_output=True, text=True, timeout=600)


def logits(model, ids, *extra, launcher=()):
    out = os.path.join(TMP, "logits.bin")
    r = q3("logits", "-m", model, "--tokens", ",".join(map(str, ids)), "--out", out, "-t", "1", *extra,
           launcher=launcher)
    assert r.returncode == 0, r.stderr
    return np.fromfile(out, dtype=np.float32).reshape(len(ids), -1)


def reference(model, prompt):
    return load_file(os.path.join(model, "reference.safetensors"))[prompt]


def variant(src, name, edit):
    """A copy of checkpoint src (weights linked) whose config.json edit() changes."""
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(src):
        if f.endswith(".safetensors") or f.endswith(".index.json"):
            if not os.path.lexists(os.path.join(d, f)):
                os.symlink(os.path.realpath(os.path.join(src, f)), os.path.join(d, f))
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    edit(cfg)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    return d


def raw_tensors(path):
    """Every tensor of a safetensors file as raw numpy arrays (F8_E4M3 as uint8, numpy has none)."""
    dtypes = {"I32": np.int32, "F16": np.float16, "F32": np.float32, "BF16": np.uint16, "F8_E4M3": np.uint8}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return {k: np.frombuffer(data[h["data_offsets"][0]:h["data_offsets"][1]], dtype=dtypes[h["dtype"]]).reshape(h["shape"])
            for k, h in header.items() if k != "__metadata__"}


class CheckpointFormats(unittest.TestCase):
    def expect_refusal(self, model, *words):
        r = q3("logits", "-m", model, "--tokens", "1,2", "--out", os.path.join(TMP, "x.bin"))
        self.assertEqual(r.returncode, 1, r.stderr)
        for w in words:
            self.assertIn(w, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_quantized_checkpoints_match_transformers(self):
        for model in (FP8, GPTQ):
            ref = reference(model, "p64.logits")
            got = logits(model, reference(model, "p64.input_ids"))
            self.assertLess(np.abs(got - ref).max(), 2e-3, model)

    def test_fp8_tensor_parallel_split_off_the_128_blocks(self):
        """--tp 4 gives each rank 32 of an expert's 128 columns: inside one of the checkpoint's
        128-wide scale blocks, on a boundary of the 32-wide repacked ones."""
        if not shutil.which("mpirun") or q3("logits", "--tp", "1", "--help").returncode != 0:
            self.skipTest("mpirun missing or built without MPI")
        env = dict(os.environ, OMPI_MCA_btl="self,vader", OMPI_MCA_btl_vader_single_copy_mechanism="none",
                   OMPI_MCA_rmaps_base_oversubscribe="1",
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        ids = reference(FP8, "p64.input_ids")[:16]
        out = os.path.join(TMP, "tp.bin")
        r = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-q", "-np", "4", BIN, "logits", "-m", FP8,
                            "--tokens", ",".join(map(str, ids)), "--out", out, "-t", "1", "--tp", "4"],
                           capture_output=True, text=True, timeout=300, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        got = np.fromfile(out, dtype=np.float32).reshape(len(ids), -1)
        self.assertLess(np.abs(got - reference(FP8, "p64.logits")[:16]).max(), 2e-3)

    def test_info_shows_quantization_and_rope_scaling(self):
        fp8 = q3("info", FP8).stdout
        self.assertIn("fp8 e4m3, one weight_scale_inv per 128x128 block", fp8)
        self.assertIn("156 tensors repacked", fp8)
        self.assertRegex(fp8, r"F8_E4M3 +156 tensors")
        gptq = q3("info", GPTQ).stdout
        self.assertIn("gptq 4-bit, group_size 128, symmetric, desc_act false", gptq)
        self.assertRegex(gptq, r"I32 +468 tensors")
        yarn = q3("info", YARN).stdout
        self.assertIn("yarn, factor 4 over an original context of 256", yarn)
        self.assertIn("attention factor 1.13863", yarn)
        self.assertIn("max context           1024", yarn)
        self.assertIn("rope scaling          none", q3("info", TINY).stdout)

    def test_convert_fp8_to_gguf(self):
        out = os.path.join(TMP, "fp8-f32.gguf")
        self.assertEqual(q3("convert", FP8, "-o", out, "--type", "f32").returncode, 0)
        got = logits(out, reference(FP8, "p64.input_ids"))
        self.assertLess(np.abs(got - reference(FP8, "p64.logits")).max(), 2e-3)
        # the dequantized weights: e4m3 times its 128x128 block's scale_inv, via the gguf package
        raw = raw_tensors(os.path.join(FP8, "model.safetensors"))
        q = raw["model.layers.1.mlp.experts.3.down_proj.weight"]
        e, m, s = (q >> 3) & 15, q & 7, np.where(q & 0x80, -1.0, 1.0)
        val = s * np.where(e > 0, (1 + m / 8) * 2.0 ** (e.astype(np.int32) - 7), m / 8 * 2.0 ** -6)
        want = val * np.repeat(np.repeat(raw["model.layers.1.mlp.experts.3.down_proj.weight_scale_inv"], 128, 0), 128, 1)
        t = {t.name: t for t in gguf.GGUFReader(out).tensors}["blk.1.ffn_down_exps.weight"]
        self.assertTrue(np.array_equal(np.asarray(t.data)[3], want.astype(np.float32)))

    def test_convert_gptq_to_q4_0_keeps_the_weights(self):
        out = os.path.join(TMP, "gptq-q4_0.gguf")
        self.assertEqual(q3("convert", GPTQ, "-o", out, "--type", "q4_0").returncode, 0)
        raw = raw_tensors(os.path.join(GPTQ, "model.safetensors"))
        p = "model.layers.2.self_attn.q_proj."
        qw, qz, sc = raw[p + "qweight"].view(np.uint32), raw[p + "qzeros"].view(np.uint32), raw[p + "scales"]
        q = np.stack([(qw >> (4 * k)) & 15 for k in range(8)], axis=1).reshape(-1, qw.shape[1])  # [in, out]
        z = np.stack([(qz >> (4 * k)) & 15 for k in range(8)], axis=2).reshape(qz.shape[0], -1) + 1  # v1: +1
        g = np.arange(q.shape[0]) // 128
        want = ((q.astype(np.float32) - z[g]) * sc[g].astype(np.float32)).T
        r = gguf.GGUFReader(out)
        t = {t.name: t for t in r.tensors}["blk.2.attn_q.weight"]
        self.assertEqual(t.tensor_type, gguf.GGMLQuantizationType.Q4_0)
        got = gguf.dequantize(t.data, t.tensor_type).reshape(want.shape)
        self.assertTrue(np.array_equal(got, want))

    def test_yarn_through_gguf_and_the_command_line(self):
        ids, tail = reference(YARN, "p700.input_ids"), reference(YARN, "p700.logits_tail")
        out = os.path.join(TMP, "yarn.gguf")
        self.assertEqual(q3("convert", YARN, "-o", out, "--type", "f32").returncode, 0)
        kv = gguf.GGUFReader(out).fields
        self.assertEqual(bytes(kv["qwen3moe.rope.scaling.type"].parts[-1]).decode(), "yarn")
        self.assertEqual(kv["qwen3moe.rope.scaling.factor"].parts[-1][0], 4.0)
        self.assertEqual(kv["qwen3moe.rope.scaling.original_context_length"].parts[-1][0], 256)
        info = q3("info", out).stdout
        self.assertIn("yarn, factor 4 over an original context of 256", info)
        self.assertIn("quantization          GGUF file type F32", info)
        # the checkpoint itself, its GGUF, and the plain checkpoint with the command-line options:
        # every tail position is past the original 256
        for model, extra in ((YARN, ()), (out, ()),
                             (TINY, ("--rope-scaling", "yarn", "--rope-scale", "4", "--yarn-orig-ctx", "256"))):
            got = logits(model, ids, *extra)[-len(tail):]
            self.assertLess(np.abs(got - tail).max(), 2e-3, model)
        plain = logits(TINY, ids)[-len(tail):]
        self.assertGreater(np.abs(plain - tail).max(), 0.1)  # the scaling is what makes them agree

    def test_refusals_name_the_field(self):
        def gptq(**kw):
            return lambda c: c["quantization_config"].update(kw)
        self.expect_refusal(variant(GPTQ, "act-order", gptq(desc_act=True)), "desc_act")
        self.expect_refusal(variant(GPTQ, "gptq8", gptq(bits=8)), "quantization_config.bits 8")
        self.expect_refusal(variant(GPTQ, "asym", gptq(sym=False)), "quantization_config.sym")
        self.expect_refusal(variant(GPTQ, "group", gptq(group_size=-1)), "group_size -1")
        self.expect_refusal(variant(GPTQ, "marlin", gptq(checkpoint_format="marlin")), "checkpoint_format marlin")
        self.expect_refusal(variant(FP8, "e5m2", lambda c: c["quantization_config"].update(fmt="e5m2")), "fmt e5m2")
        self.expect_refusal(variant(FP8, "awq", lambda c: c["quantization_config"].update(quant_method="awq")),
                            "quant_method awq")
        self.expect_refusal(variant(FP8, "undeclared", lambda c: c.pop("quantization_config")),
                            "F8_E4M3", "declares no fp8")
        for kind in ("linear", "dynamic", "longrope"):
            self.expect_refusal(variant(TINY, kind, lambda c: c.update(rope_scaling={"rope_type": kind, "factor": 2.0})),
                                f"rope_scaling.rope_type {kind} is not supported")
        self.expect_refusal(variant(TINY, "old-type-key", lambda c: c.update(rope_scaling={"type": "su", "factor": 2.0})),
                            "rope_type su")
        r = q3("logits", "-m", TINY, "--tokens", "1", "--out", os.path.join(TMP, "x.bin"), "--rope-scaling", "linear")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--rope-scaling: 'linear' is not supported", r.stderr)

    def test_yarn_in_rope_parameters(self):
        """transformers 5 writes the scaling under rope_parameters next to rope_theta."""
        def nest(c):
            c["rope_parameters"] = dict(c.pop("rope_scaling"), rope_theta=c.pop("rope_theta"))
        d = variant(YARN, "rope-parameters", nest)
        self.assertIn("yarn, factor 4 over an original context of 256", q3("info", d).stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
