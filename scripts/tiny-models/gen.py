#!/usr/bin/env python3
"""Tiny random checkpoints of the newer architectures, with references from transformers and
from llama.cpp, for hearth's engine tests (crates/engine/tests/fixtures/<arch>/).

Run through gen.sh (it sets up the venv, llama.cpp's converter and the llama-logits tool):

    scripts/tiny-models/gen.sh qwen3moe [qwen2moe smollm3 phi3 ...]

For each architecture:
1. transformers builds the model from its config class with random weights (initializer_range
   0.3, so logits are peaked); every weight is rounded to f16 first, so the f16 GGUF holds
   exactly the weights transformers computes with, and the token embedding and LM head
   (which dominate the file size) are sparse, on a grid of 1/16, so the files compress to
   ~1-2 MB.
2. The checkpoint is saved with a real tokenizer (SmolLM2's, 49152 tokens) and transformers'
   logits are recorded for each prompt: the top 10 at every position, and the last position's
   full logits.
3. llama.cpp's own convert_hf_to_gguf.py makes f16 and q8_0 GGUFs; llama-logits records
   llama.cpp's logits at every position (one batch, flash attention off, 1 thread): per
   position an FNV-1a hash of the f32 bytes and the top 20, and the last position's full
   logits; plus llama.cpp's greedy continuation (each step recomputed over the whole sequence).
4. The GGUFs are gzipped into the fixture folder with reference.json.
"""

import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

PROMPTS = [
    "The quick brown fox jumps over the lazy dog, and then it runs",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
]
GREEDY_N = 10
# LongRoPE (phi3): the training context; a context longer than this uses the long factors, so
# the references are made twice: at llama.cpp's smallest context (256, short factors, as
# transformers uses for these short prompts) and at LONG_CTX.
LONG_ROPE_ORIG = 256
LONG_CTX = 512


def configs():
    import transformers as tf

    common = dict(
        vocab_size=49152,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.3,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    return {
        "qwen3moe": lambda: tf.Qwen3MoeConfig(
            **common,
            head_dim=16,
            intermediate_size=96,
            moe_intermediate_size=32,
            num_experts=8,
            num_experts_per_tok=3,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
        ),
        # Qwen1.5-MoE / Qwen2-57B-A14B: experts weighed by their softmax probabilities as they
        # are, and a shared expert gated by sigmoid(shared_expert_gate · x); biases on q/k/v.
        "qwen2moe": lambda: tf.Qwen2MoeConfig(
            **{**common, "tie_word_embeddings": False},
            intermediate_size=96,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=64,
            num_experts=8,
            num_experts_per_tok=3,
            norm_topk_prob=False,
            decoder_sparse_step=1,
            qkv_bias=True,
            rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
        ),
        "smollm3": lambda: tf.SmolLM3Config(
            **{**common, "num_hidden_layers": 4},
            intermediate_size=96,
            pad_token_id=None,
            no_rope_layer_interval=4,
            rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
        ),
        "mistral3": lambda: tf.Ministral3Config(
            **common,
            head_dim=16,
            intermediate_size=96,
            pad_token_id=None,
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 10000.0,
                "factor": 4.0,
                "original_max_position_embeddings": 8,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "mscale": 1.0,
                "mscale_all_dim": 1.0,
                "llama_4_scaling_beta": 0.1,
            },
        ),
        # Phi-4-mini's shape of Phi-3: fused projections, partial rotary (0.75), LongRoPE with
        # short and long factors (the long ones past 256 positions of context).
        "phi3": lambda: tf.Phi3Config(
            **{**common, "max_position_embeddings": 1024},
            intermediate_size=96,
            pad_token_id=None,
            original_max_position_embeddings=LONG_ROPE_ORIG,
            rope_parameters={
                "rope_type": "longrope",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.75,
                "original_max_position_embeddings": LONG_ROPE_ORIG,
                "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5],
                "long_factor": [1.5, 2.0, 3.0, 5.0, 8.0, 12.0],
            },
        ),
        # llama.cpp requires gpt-oss's output matrix (no tied embedding).
        "gpt-oss": lambda: tf.GptOssConfig(
            **{**common, "num_hidden_layers": 2, "tie_word_embeddings": False},
            head_dim=16,
            intermediate_size=32,
            num_local_experts=8,
            num_experts_per_tok=3,
            sliding_window=8,
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 150000.0,
                "factor": 32.0,
                "original_max_position_embeddings": 64,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                # llama.cpp's YaRN always rounds the correction range to whole dimensions
                # (transformers' truncate); gpt-oss's own config says false, which llama.cpp
                # does not follow.
                "truncate": True,
            },
        ),
    }


def fnv1a64(b: bytes) -> str:
    h = 0xCBF29CE484222325
    for x in b:
        h ^= x
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def fnv_rows(logits: np.ndarray) -> list:
    # numpy-vectorised FNV over rows would be faster; the rows are few.
    return [fnv1a64(row.astype("<f4").tobytes()) for row in logits]


def top(row: np.ndarray, k: int) -> list:
    idx = np.argsort(-row.astype(np.float64), kind="stable")[:k]
    return [[int(i), float(row[i])] for i in idx]


def llama_logits(tool: str, gguf: Path, ids: list, out: Path, n_ctx: int = 0) -> np.ndarray:
    subprocess.run(
        [tool, str(gguf), "ids:" + ",".join(map(str, ids)), str(out), "1", str(n_ctx)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    a = np.fromfile(out, dtype="<f4")
    return a.reshape(len(ids), -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("arch")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--convert", required=True)
    ap.add_argument("--llama-logits", required=True)
    args = ap.parse_args()

    import transformers as tf

    arch = args.arch
    work = Path(args.work) / arch
    out = Path(args.out)
    shutil.rmtree(work, ignore_errors=True)
    (work / "hf").mkdir(parents=True)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(1234)
    cfg = configs()[arch]()
    model = tf.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_tokens" in name or "lm_head" in name:
                grid = torch.clamp(torch.round(p * 16), -12, 12) / 16
                p.copy_(grid * (torch.rand_like(p) < 0.25))
            elif p.dim() == 1 and "norm" in name:
                # norm weights near 1, as trained models have
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            p.copy_(p.half().float())
    model.save_pretrained(work / "hf", safe_serialization=True)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(Path(args.tokenizer) / f, work / "hf" / f)
    if arch == "phi3":
        # llama.cpp's Phi-3 converter reads a GPT-2 style vocabulary only when the tokenizer
        # class says so (Phi-4-mini's does); otherwise it wants a sentencepiece model.
        tc = work / "hf" / "tokenizer_config.json"
        j = json.loads(tc.read_text())
        j["tokenizer_class"] = "GPT2Tokenizer"
        tc.write_text(json.dumps(j, indent=1))
    tok = tf.AutoTokenizer.from_pretrained(work / "hf")

    cases = []
    for n, prompt in enumerate(PROMPTS):
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
        last = f"hf-last-{n}.f32"
        logits[-1].astype("<f4").tofile(out / last)
        cases.append(
            {
                "prompt": prompt,
                "ids": ids,
                "hf": {
                    "top10_per_position": [top(r, 10) for r in logits],
                    "last_logits_file": last,
                },
            }
        )

    env = dict(os.environ)
    llama = {}
    for outtype in ["f16", "q8_0"]:
        gguf = work / f"model-{outtype}.gguf"
        subprocess.run(
            [sys.executable, args.convert, str(work / "hf"), "--outtype", outtype, "--outfile", str(gguf)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        with open(gguf, "rb") as f, gzip.open(out / f"model-{outtype}.gguf.gz", "wb", 9) as g:
            shutil.copyfileobj(f, g)
        per_case = []
        for n, case in enumerate(cases):
            ids = case["ids"]
            lg = llama_logits(args.llama_logits, gguf, ids, work / "l.f32")
            last = f"llama-{outtype}-last-{n}.f32"
            if outtype == "q8_0":
                lg[-1].astype("<f4").tofile(out / last)
            greedy = []
            seq = list(ids)
            margins = []
            for _ in range(GREEDY_N):
                g = llama_logits(args.llama_logits, gguf, seq, work / "g.f32")[-1]
                t = top(g, 2)
                greedy.append(t[0][0])
                margins.append(t[0][1] - t[1][1])
                seq.append(t[0][0])
            full = llama_logits(args.llama_logits, gguf, seq, work / "f.f32")
            per_case.append(
                {
                    "fnv1a64_per_position": fnv_rows(lg),
                    "top20_per_position": [top(r, 20) for r in lg],
                    **({"last_logits_file": last} if outtype == "q8_0" else {}),
                    "greedy": greedy,
                    "greedy_margins": margins,
                    # prompt + greedy in one batch (teacher-forced)
                    "full_fnv1a64_per_position": fnv_rows(full),
                    "full_top20_per_position": [top(r, 20) for r in full],
                }
            )
        llama[outtype] = per_case

    long_context = None
    if arch == "phi3":
        # transformers switches to the long factors by sequence length, llama.cpp by context
        # size: for the long reference, transformers' rotary embedding gets the long
        # frequencies as its base ones.
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        rot = model.model.rotary_emb
        long_inv, _ = ROPE_INIT_FUNCTIONS["longrope"](cfg, None, seq_len=LONG_ROPE_ORIG + 1)
        short_inv = rot.original_inv_freq.clone()
        rot.original_inv_freq = long_inv
        rot.inv_freq = long_inv.clone()
        hf_long = []
        for case in cases:
            with torch.no_grad():
                lg = model(torch.tensor([case["ids"]])).logits[0].float().numpy()
            hf_long.append({"top10_per_position": [top(r, 10) for r in lg]})
        rot.original_inv_freq = short_inv
        rot.inv_freq = short_inv.clone()
        llama_long = []
        gguf = work / "model-q8_0.gguf"
        for n, case in enumerate(cases):
            lg = llama_logits(args.llama_logits, gguf, case["ids"], work / "l.f32", LONG_CTX)
            llama_long.append(
                {
                    "fnv1a64_per_position": fnv_rows(lg),
                    "top20_per_position": [top(r, 20) for r in lg],
                }
            )
        long_context = {"n_ctx": LONG_CTX, "hf": hf_long, "llama_cpp": {"q8_0": llama_long}}

    ref = {
        "arch": arch,
        "generator": "scripts/tiny-models/gen.sh",
        "transformers": tf.__version__,
        "config": json.loads(cfg.to_json_string()),
        "cases": cases,
        "llama_cpp": llama,
        **({"long_context": long_context} if long_context else {}),
    }
    (out / "reference.json").write_text(json.dumps(ref, indent=1))
    print(f"{arch}: wrote {out}")


if __name__ == "__main__":
    main()
