"""Model files against independent references: our GGUF files read by the `gguf` package (PyPI,
llama.cpp's own Python reader), its GGUF files read by us, and bad files of every kind rejected
with one clear line naming the file, tensor or field, exit code 1, never a crash."""
import json, os, shutil, struct, subprocess, sys, tempfile, unittest
import numpy as np
import gguf
from safetensors.numpy import load_file

BIN = os.environ["Q3_BIN"]
FIX = os.environ["Q3_FIXTURES"]
TINY = os.path.join(FIX, "tiny-qwen3moe")
TMP = tempfile.mkdtemp(dir=os.environ.get("Q3_TMP"))


def open_text(path):
    with open(path) as f:
        return f.read()


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def q3(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def hf_tensors():
    out = {}
    for f in sorted(os.listdir(TINY)):
        if f.startswith("model-") and f.endswith(".safetensors"):
            out.update(read_raw_safetensors(os.path.join(TINY, f)))
    return out


def read_raw_safetensors(path):
    """bf16 tensors as float32 arrays (numpy has no bfloat16)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        assert h["dtype"] == "BF16"
        out[name] = bf16_to_f32(np.frombuffer(data[a:b], dtype=np.uint16)).reshape(h["shape"])
    return out


def gguf_name(hf):
    """llama.cpp's name for a per-expert-free HF tensor (experts are stacked separately)."""
    m = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
         "lm_head.weight": "output.weight"}
    if hf in m:
        return m[hf]
    parts = hf.split(".")
    layer, rest = parts[2], ".".join(parts[3:])
    table = {"input_layernorm.weight": "attn_norm", "post_attention_layernorm.weight": "ffn_norm",
             "self_attn.q_proj.weight": "attn_q", "self_attn.k_proj.weight": "attn_k",
             "self_attn.v_proj.weight": "attn_v", "self_attn.o_proj.weight": "attn_output",
             "self_attn.q_norm.weight": "attn_q_norm", "self_attn.k_norm.weight": "attn_k_norm",
             "mlp.gate.weight": "ffn_gate_inp"}
    return f"blk.{layer}.{table[rest]}.weight" if rest in table else None


class OurFilesReadByGguf(unittest.TestCase):
    def test_bf16_file(self):
        out = os.path.join(TMP, "ours-bf16.gguf")
        r = q3("convert", TINY, "-o", out, "--type", "bf16")
        self.assertEqual(r.returncode, 0, r.stderr)
        reader = gguf.GGUFReader(out)
        arch = reader.fields["general.architecture"]
        self.assertEqual(bytes(arch.parts[arch.data[0]]).decode(), "qwen3moe")
        cfg = json.loads(open_text(os.path.join(TINY, "config.json")))
        bc = reader.fields["qwen3moe.block_count"]
        self.assertEqual(int(bc.parts[bc.data[0]][0]), cfg["num_hidden_layers"])
        ec = reader.fields["qwen3moe.expert_count"]
        self.assertEqual(int(ec.parts[ec.data[0]][0]), cfg["num_experts"])
        tensors = {t.name: t for t in reader.tensors}
        hf = hf_tensors()
        checked = 0
        for name, value in hf.items():
            g = gguf_name(name)
            if g is None:
                continue
            t = tensors[g]
            if t.tensor_type == gguf.GGMLQuantizationType.BF16:
                got = bf16_to_f32(np.asarray(t.data).view(np.uint16)).reshape(value.shape)
            else:
                got = np.asarray(t.data, dtype=np.float32).reshape(value.shape)
            np.testing.assert_array_equal(got, value, err_msg=g)
            checked += 1
        # stacked experts: expert e of blk.L.ffn_gate_exps is experts.e.gate_proj
        exps = tensors["blk.1.ffn_down_exps.weight"]
        stack = bf16_to_f32(np.asarray(exps.data).view(np.uint16)).reshape(cfg["num_experts"], cfg["hidden_size"], -1)
        np.testing.assert_array_equal(stack[5], hf["model.layers.1.mlp.experts.5.down_proj.weight"])
        self.assertGreater(checked, 20)


class GgufFilesReadByUs(unittest.TestCase):
    """A file written by the gguf package's own writer, in llama.cpp's layout, runs in q3moe and
    gives transformers' logits."""

    def write_with_gguf_package(self, path, as_bf16):
        cfg = json.loads(open_text(os.path.join(TINY, "config.json")))
        hf = hf_tensors()
        w = gguf.GGUFWriter(path, "qwen3moe")
        w.add_block_count(cfg["num_hidden_layers"])
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(cfg["hidden_size"])
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(cfg["num_attention_heads"])
        w.add_head_count_kv(cfg["num_key_value_heads"])
        w.add_rope_freq_base(cfg["rope_theta"])
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        w.add_expert_count(cfg["num_experts"])
        w.add_expert_used_count(cfg["num_experts_per_tok"])
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
        w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])

        def add(name, arr):
            if as_bf16 and arr.ndim >= 2:
                raw = (arr.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
                w.add_tensor(name, raw.view(np.uint8).reshape(*arr.shape[:-1], arr.shape[-1] * 2),
                             raw_dtype=gguf.GGMLQuantizationType.BF16)
            else:
                w.add_tensor(name, arr.astype(np.float32))

        for name, value in hf.items():
            g = gguf_name(name)
            if g:
                add(g, value)
        for l in range(cfg["num_hidden_layers"]):
            for proj, short in (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")):
                stack = np.stack([hf[f"model.layers.{l}.mlp.experts.{e}.{proj}.weight"] for e in range(cfg["num_experts"])])
                add(f"blk.{l}.ffn_{short}_exps.weight", stack)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    def test_logits(self):
        ref = load_file(os.path.join(TINY, "reference.safetensors"))
        ids = ref["p64.input_ids"]
        for as_bf16 in (False, True):
            path = os.path.join(TMP, f"theirs-{'bf16' if as_bf16 else 'f32'}.gguf")
            self.write_with_gguf_package(path, as_bf16)
            out = os.path.join(TMP, "logits.bin")
            r = q3("logits", "-m", path, "--tokens", ",".join(map(str, ids)), "--out", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            ours = np.fromfile(out, dtype=np.float32).reshape(len(ids), -1)
            rel = np.abs(ours - ref["p64.logits"]).max() / np.abs(ref["p64.logits"]).max()
            print(f"gguf-package file ({'bf16' if as_bf16 else 'f32'}): relative logits error {rel:.2e}")
            self.assertLess(rel, 2e-3)


def write_safetensors(path, header, data, pad=True):
    """As the safetensors library writes: the header padded with spaces to a multiple of 8 bytes,
    so that every tensor's data stays aligned (pad=False leaves it as it comes)."""
    h = json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


class BadFiles(unittest.TestCase):
    """Each broken checkpoint or file: exit 1, one line on stderr naming what is wrong."""

    def broken_copy(self, name):
        d = os.path.join(TMP, name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(TINY, d)
        os.remove(os.path.join(d, "reference.safetensors"))
        return d

    def expect_error(self, path, *words):
        r = q3("info", path)
        self.assertEqual(r.returncode, 1, f"{path}: rc {r.returncode}\n{r.stdout}{r.stderr}")
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, r.stderr)
        for w in words:
            self.assertIn(w, lines[0])
        return lines[0]

    def shard(self, d):
        return os.path.join(d, "model-00001-of-00002.safetensors")

    def test_truncated_file(self):
        d = self.broken_copy("truncated")
        with open(self.shard(d), "r+b") as f:
            f.truncate(4)
        self.expect_error(d, "model-00001-of-00002.safetensors", "truncated")

    def test_header_beyond_file(self):
        d = self.broken_copy("longheader")
        with open(self.shard(d), "r+b") as f:
            f.write(struct.pack("<Q", 1 << 40))
        self.expect_error(d, "header length")

    def test_offsets_out_of_bounds(self):
        d = self.broken_copy("offsets")
        write_safetensors(self.shard(d), {"model.norm.weight": {"dtype": "BF16", "shape": [128], "data_offsets": [0, 256]},
                                          "lm_head.weight": {"dtype": "BF16", "shape": [4], "data_offsets": [256, 9999]}}, bytes(300))
        self.expect_error(d, "lm_head.weight", "outside")

    def test_overlapping_tensors(self):
        d = self.broken_copy("overlap")
        write_safetensors(self.shard(d), {"a": {"dtype": "BF16", "shape": [8], "data_offsets": [0, 16]},
                                          "b": {"dtype": "BF16", "shape": [8], "data_offsets": [8, 24]}}, bytes(32))
        self.expect_error(d, "overlap")

    def test_misaligned_tensor(self):
        """A header of odd length leaves 2-byte elements at odd addresses: refused, not read."""
        d = self.broken_copy("misaligned")
        h = json.dumps({"model.norm.weight": {"dtype": "BF16", "shape": [128], "data_offsets": [0, 256]}}).encode()
        h += b" " * (1 - len(h) % 2)  # white space after the JSON is allowed; it makes the length odd
        with open(self.shard(d), "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + bytes(256))
        self.expect_error(d, "model.norm.weight", "not aligned")

    def test_unknown_dtype(self):
        d = self.broken_copy("dtype")
        write_safetensors(self.shard(d), {"model.norm.weight": {"dtype": "F8_E5M2", "shape": [128], "data_offsets": [0, 128]}}, bytes(128))
        self.expect_error(d, "model.norm.weight", "F8_E5M2")

    def test_shape_that_wraps_around(self):
        """[2^32, 2^32] elements multiply to 2^64, which wraps to 0 in 64 bits: still refused."""
        d = self.broken_copy("wrap")
        write_safetensors(self.shard(d), {"model.norm.weight": {"dtype": "BF16", "shape": [1 << 32, 1 << 32],
                                                                "data_offsets": [0, 0]}}, bytes(0))
        self.expect_error(d, "model.norm.weight", "shape too large")

    def test_shape_disagrees_with_config(self):
        d = self.broken_copy("shape")
        cfg = json.loads(open_text(os.path.join(d, "config.json")))
        cfg["hidden_size"] = 256
        write_text(os.path.join(d, "config.json"), json.dumps(cfg))
        self.expect_error(d, "model.embed_tokens.weight", "shape")

    def test_missing_tensor(self):
        d = self.broken_copy("missing")
        idx = json.loads(open_text(os.path.join(d, "model.safetensors.index.json")))
        del idx["weight_map"]["model.layers.2.self_attn.k_norm.weight"]
        shard = os.path.join(d, "model-00002-of-00002.safetensors")
        with open(shard, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        header.pop("model.layers.2.self_attn.k_norm.weight", None)
        write_safetensors(shard, header, data)
        write_text(os.path.join(d, "model.safetensors.index.json"), json.dumps(idx))
        self.expect_error(d, "model.layers.2.self_attn.k_norm.weight", "missing")

    def test_config_not_json(self):
        d = self.broken_copy("notjson")
        write_text(os.path.join(d, "config.json"), "{ not json")
        self.expect_error(d, "config.json", "not JSON")

    def test_config_lacks_field(self):
        d = self.broken_copy("nofield")
        cfg = json.loads(open_text(os.path.join(d, "config.json")))
        del cfg["num_experts_per_tok"]
        write_text(os.path.join(d, "config.json"), json.dumps(cfg))
        self.expect_error(d, "config.json", "num_experts_per_tok")

    def test_path_too_long_for_its_files(self):
        """A checkpoint directory whose files' paths would not fit: refused, not cut short."""
        d = TMP
        while len(d) < 4090:  # a legal directory (under PATH_MAX, 4096), but not with /config.json on it
            d = os.path.join(d, "d" * min(200, 4089 - len(d)))
        os.makedirs(d, exist_ok=True)
        self.expect_error(d, "path too long")

    def test_missing_directory(self):
        self.expect_error(os.path.join(TMP, "no-such-model"), "no-such-model")

    def gguf_copy(self):
        path = os.path.join(TMP, "good.gguf")
        if not os.path.exists(path):
            self.assertEqual(q3("convert", TINY, "-o", path, "--type", "f32").returncode, 0)
        with open(path, "rb") as f:
            return bytearray(f.read())

    def test_gguf_truncated(self):
        data = self.gguf_copy()
        path = os.path.join(TMP, "trunc.gguf")
        for cut in (3, 20, 200, len(data) // 2):
            write_bytes(path, data[:cut])
            self.expect_error(path, "trunc.gguf")

    def test_gguf_counts_beyond_file(self):
        """A header promising 2^23 keys in a file of 100 bytes is refused before memory is taken
        for them (fuzz_imatrix found the reader allocating hundreds of MiB for such files)."""
        path = os.path.join(TMP, "counts.gguf")
        write_bytes(path, b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 23) + bytes(76))
        self.expect_error(path, "implausible counts")

    def test_gguf_bad_magic(self):
        data = self.gguf_copy()
        data[0:4] = b"GGML"
        path = os.path.join(TMP, "magic.gguf")
        write_bytes(path, data)
        self.expect_error(path, "magic")

    def test_gguf_quantized_type_not_supported(self):
        """A real llama.cpp type we do not compute with gets 'not supported yet' naming the tensor."""
        data = self.gguf_copy()
        reader = gguf.GGUFReader(os.path.join(TMP, "good.gguf"))
        t = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
        # the tensor info's type field: right after the dims of its name entry
        name = b"blk.0.attn_q.weight"
        at = data.find(struct.pack("<Q", len(name)) + name)
        type_at = at + 8 + len(name) + 4 + 8 * len(t.shape)
        data[type_at:type_at + 4] = struct.pack("<I", 16)  # IQ2_XXS
        path = os.path.join(TMP, "iq2.gguf")
        write_bytes(path, data)
        r = q3("info", path)
        self.assertEqual(r.returncode, 1)
        self.assertTrue("blk.0.attn_q.weight" in r.stderr or "beyond" in r.stderr or "overlap" in r.stderr, r.stderr)

    def test_gguf_dimensions_that_wrap_around(self):
        data = self.gguf_copy()
        name = b"blk.0.attn_q.weight"
        at = data.find(struct.pack("<Q", len(name)) + name)
        dims_at = at + 8 + len(name) + 4
        data[dims_at:dims_at + 16] = struct.pack("<QQ", 1 << 32, 1 << 32)
        path = os.path.join(TMP, "wrap.gguf")
        write_bytes(path, data)
        self.expect_error(path, "blk.0.attn_q.weight", "dimension too large")

    def test_gguf_offset_out_of_bounds(self):
        data = self.gguf_copy()
        name = b"output_norm.weight"
        at = data.find(struct.pack("<Q", len(name)) + name)
        off_at = at + 8 + len(name) + 4 + 8 * 1 + 4
        data[off_at:off_at + 8] = struct.pack("<Q", 1 << 40)
        path = os.path.join(TMP, "offset.gguf")
        write_bytes(path, data)
        self.expect_error(path, "output_norm.weight")


if __name__ == "__main__":
    unittest.main(verbosity=2)
