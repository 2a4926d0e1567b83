#!/usr/bin/env python3
"""Runs llama.cpp on the MoE layouts the engine's tests make by editing the tiny q8_0 fixtures
(crates/engine/tests/it/tiny_reference.rs, "MoE layouts"), and checks what those tests assume:

- qwen2moe without `expert_feed_forward_length` loads (llama.cpp's fallback
  `feed_forward_length / expert_used_count`) and its logits equal the original file's
  reference hashes at every position;
- qwen3moe with `expert_feed_forward_length` as a per-layer array `[32, 32]` likewise;
- llama.cpp refuses qwen3moe with the array `[32, 64]` and layer 1's experts padded to 64 (its
  loaders give every layer layer 0's width), and gpt-oss with fused `ffn_gate_up_exps` + bias
  (its gpt-oss loader takes only separate gate and up experts) — these the tests check
  against the unedited files instead.

    scripts/tiny-models/moe_layouts.py [WORK_DIR]

Uses gguf-py and numpy (the torch venv), scripts/llama-logits.sh's tool (1 thread). Not run by
CI; prints one line per case and exits non-zero if an expectation fails.
"""
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType

ROOT = Path(__file__).resolve().parent.parent.parent
FIX = ROOT / "crates/engine/tests/fixtures"


def fnv1a64(row):
    h = 0xcbf29ce484222325
    for b in row.astype("<f4").tobytes():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def rewrite(src, dst, arch, edit_kv, edit_tensors):
    """Copies src to dst with metadata edited by edit_kv(name, field) -> None (keep), "drop" or
    (value, type), and tensors by edit_tensors(list of (name, np array raw, type, shape)) ->
    list."""
    r = GGUFReader(src)
    w = GGUFWriter(dst, arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        e = edit_kv(name, field)
        if e == "drop":
            continue
        if e is not None:
            w.add_key_value(name, e[0], e[1], e[2] if len(e) > 2 else None)
            continue
        vtype = field.types[0]
        sub = field.types[-1] if len(field.types) > 1 else None
        w.add_key_value(name, field.contents(), vtype, sub)
    tensors = [(t.name, np.asarray(t.data), t.tensor_type, [int(x) for x in t.shape])
               for t in r.tensors]
    from gguf.constants import GGML_QUANT_SIZES
    for name, data, ty, shape in edit_tensors(tensors):
        block, size = GGML_QUANT_SIZES[ty]
        # The byte shape, outermost first: gguf-py derives the element shape from it.
        byte_shape = list(reversed(shape[1:])) + [shape[0] // block * size]
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(byte_shape)
        w.add_tensor(name, raw, raw_dtype=ty)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def run_llama(tool, gguf, ids, out):
    p = subprocess.run([tool, str(gguf), "ids:" + ",".join(map(str, ids)), str(out), "1"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        return None, [line for line in p.stderr.splitlines() if "error loading" in line][:1]
    return np.fromfile(out, dtype="<f4").reshape(len(ids), -1), None


def main():
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    tool = subprocess.run([str(ROOT / "scripts/llama-logits.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()
    ok = True
    from gguf import GGUFValueType as VT

    def case(arch, tag, edit_kv, edit_tensors, expect_load):
        nonlocal ok
        src = work / f"{arch}-q8_0.gguf"
        src.write_bytes(gzip.decompress((FIX / arch / "model-q8_0.gguf.gz").read_bytes()))
        dst = work / f"{arch}-{tag}.gguf"
        rewrite(src, dst, arch, edit_kv, edit_tensors)
        ref = json.loads((FIX / arch / "reference.json").read_text())
        ids = ref["cases"][0]["ids"]
        want = ref["llama_cpp"]["q8_0"][0]["fnv1a64_per_position"]
        logits, err = run_llama(tool, dst, ids, work / f"{arch}-{tag}.f32")
        if logits is None:
            print(f"{arch} {tag}: llama.cpp refuses it ({' '.join(err)})")
            ok &= not expect_load
            return
        same = sum(fnv1a64(r) == h for r, h in zip(logits, want))
        print(f"{arch} {tag}: llama.cpp loads it; {same}/{len(ids)} positions equal the "
              f"original's reference")
        ok &= expect_load and same == len(ids)

    keep = lambda ts: ts  # noqa: E731
    case("qwen2moe", "no-expert-ff",
         lambda n, f: "drop" if n == "qwen2moe.expert_feed_forward_length" else None, keep, True)
    case("qwen3moe", "ff-array",
         lambda n, f: ([32, 32], VT.ARRAY, VT.UINT32)
         if n == "qwen3moe.expert_feed_forward_length" else None, keep, True)

    def pad(ts):
        out = []
        for name, data, ty, shape in ts:
            if name in ("blk.1.ffn_gate_exps.weight", "blk.1.ffn_up_exps.weight"):
                row = 64 // 32 * 34
                e = data.reshape(8, 32 * row)
                data = np.concatenate([e, np.zeros((8, 32 * row), np.uint8)], axis=1)
                shape = [64, 64, 8]
            elif name == "blk.1.ffn_down_exps.weight":
                r = data.reshape(-1, 34)
                data = np.concatenate([r, np.zeros_like(r)], axis=1)
                shape = [64, 64, 8]
            out.append((name, data, ty, shape))
        return out
    case("qwen3moe", "ff-array-padded",
         lambda n, f: ([32, 64], VT.ARRAY, VT.UINT32)
         if n == "qwen3moe.expert_feed_forward_length" else None, pad, False)

    def fuse(ts):
        by = {n: (d, t, s) for n, d, t, s in ts}
        out = [x for x in ts if "ffn_gate_exps" not in x[0] and "ffn_up_exps" not in x[0]]
        for il in range(2):
            g, u = by[f"blk.{il}.ffn_gate_exps.weight"][0], by[f"blk.{il}.ffn_up_exps.weight"][0]
            row = 64 // 32 * 34
            w = np.concatenate([g.reshape(8, -1), u.reshape(8, -1)], axis=1)
            out.append((f"blk.{il}.ffn_gate_up_exps.weight", w, GGMLQuantizationType.Q8_0,
                        [64, 64, 8]))
            gb, ub = by[f"blk.{il}.ffn_gate_exps.bias"][0], by[f"blk.{il}.ffn_up_exps.bias"][0]
            b = np.concatenate([gb.reshape(8, -1), ub.reshape(8, -1)], axis=1).astype(np.float32)
            out.append((f"blk.{il}.ffn_gate_up_exps.bias", b, GGMLQuantizationType.F32, [64, 8]))
            assert row
        return out
    case("gpt-oss", "fused-gate-up", lambda n, f: None, fuse, False)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
