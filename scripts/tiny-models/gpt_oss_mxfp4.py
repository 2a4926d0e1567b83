#!/usr/bin/env python3
"""A tiny gpt-oss checkpoint with its experts in MXFP4, as openai/gpt-oss-* are released
(`*_blocks` / `*_scales` uint8 tensors, `quantization_config.quant_method = "mxfp4"`), made from
the tiny unquantized gpt-oss checkpoint of gen.sh, and transformers' logits for it:

    gpt_oss_mxfp4.py SRC_CHECKPOINT OUT_DIR CONVERT_PY LLAMA_LOGITS

The experts are rounded to MXFP4 (one E8M0 exponent per 32 values, 4-bit E2M1 codes); the
model is then run by transformers with exactly those (dequantized) expert weights on the first
prompt of the engine's gpt-oss fixture, recording the top 10 logits at every position and the
last position's full logits (OUT_DIR/hf-last-0.f32 and OUT_DIR/logits.json); and the same from
llama.cpp (scripts/llama-logits.sh's tool, 1 thread) on llama.cpp's own f16 conversion, whose
experts stay MXFP4 (OUT_DIR/llama-last-0.f32, `llama_cpp` in logits.json). Then
crates/convert/tests/fixtures/make_reference.py packs OUT_DIR/hf with llama.cpp's conversion.
Run with the torch venv's python; not run by CI.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

FP4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32)


def quantize(w):
    """w: [..., cols] float32 → (blocks [..., cols/32, 16] u8, scales [..., cols/32] u8, dequant)."""
    *lead, cols = w.shape
    g = w.reshape(*lead, cols // 32, 32)
    amax = np.abs(g).max(axis=-1)
    # the largest code is 6 = 1.5 · 2²: pick the exponent so that amax / 2^e ≤ 6
    e = np.ceil(np.log2(np.maximum(amax, 1e-30) / 6.0))
    e = np.clip(e, -127, 127)
    scale = np.exp2(e)[..., None]
    x = g / scale
    codes = np.abs(x[..., None] - FP4).argmin(axis=-1).astype(np.uint8)
    deq = (FP4[codes] * scale).reshape(w.shape).astype(np.float32)
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    scales = (e + 127).astype(np.uint8)
    return blocks, scales, deq


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    hf = out / "hf"
    shutil.rmtree(out, ignore_errors=True)
    hf.mkdir(parents=True)
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, hf / f.name)
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                   "model.embed_tokens", "lm_head"],
    }
    (hf / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    t = load_file(src / "model.safetensors")
    deq_state = dict(t)
    packed = {}
    for name, w in t.items():
        if name.endswith("mlp.experts.gate_up_proj"):
            # stored [E, in, out]; MXFP4 blocks are [E, out, in/32, 16]
            b, s, d = quantize(np.ascontiguousarray(w.transpose(0, 2, 1)))
            packed[name + "_blocks"], packed[name + "_scales"] = b, s
            deq_state[name] = np.ascontiguousarray(d.transpose(0, 2, 1))
        elif name.endswith("mlp.experts.down_proj"):
            b, s, d = quantize(np.ascontiguousarray(w.transpose(0, 2, 1)))
            packed[name + "_blocks"], packed[name + "_scales"] = b, s
            deq_state[name] = np.ascontiguousarray(d.transpose(0, 2, 1))
        else:
            packed[name] = w
    save_file(packed, hf / "model.safetensors", metadata={"format": "pt"})

    import transformers as tf

    ref = json.loads(Path("crates/engine/tests/fixtures/gpt-oss/reference.json").read_text())
    config = tf.GptOssConfig.from_pretrained(src)
    model = tf.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in deq_state.items()}, strict=True)
    model.eval()
    ids = ref["cases"][0]["ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float().numpy()
    logits[-1].astype("<f4").tofile(out / "hf-last-0.f32")

    def top(row, k):
        idx = np.argsort(-row.astype(np.float64), kind="stable")[:k]
        return [[int(i), float(row[i])] for i in idx]

    gguf = out / "model-f16.gguf"
    subprocess.run([sys.executable, sys.argv[3], str(hf), "--outtype", "f16", "--outfile", str(gguf)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    raw = out / "llama.f32"
    subprocess.run([sys.argv[4], str(gguf), "ids:" + ",".join(map(str, ids)), str(raw), "1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    llama = np.fromfile(raw, dtype="<f4").reshape(len(ids), -1)
    llama[-1].astype("<f4").tofile(out / "llama-last-0.f32")

    (out / "logits.json").write_text(json.dumps({
        "generator": "scripts/tiny-models/gpt_oss_mxfp4.py",
        "transformers": tf.__version__,
        "ids": ids,
        "top10_per_position": [top(r, 10) for r in logits],
        "llama_cpp": {"top10_per_position": [top(r, 10) for r in llama]},
    }, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
