#!/usr/bin/env python3
"""A tiny random Gemma 4 mixture-of-experts checkpoint (the 26B-A4B layout: a dense MLP beside
a routed expert block per layer, fused gate/up experts, a router with its own scale and
per-expert scales), for hearth's conversion tests: the checkpoint only, written to OUT_DIR with
the cut-down Gemma 4 tokenizer of scripts/tiny-models/gemma4.py (TOKENIZER_DIR); then
crates/convert/tests/fixtures/make_reference.py packs it with llama.cpp's conversions.

    gemma4_moe.py TOKENIZER_DIR OUT_DIR

Weights are bf16 (as released) with random norms, router scales and layer scalars so that a
dropped multiply shows. Run with the torch venv's python; not run by CI.
"""
import shutil
import sys
from pathlib import Path

import torch
from transformers import Gemma4ForCausalLM, Gemma4TextConfig


def main():
    tok, out = Path(sys.argv[1]), Path(sys.argv[2])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    torch.manual_seed(7)
    cfg = Gemma4TextConfig(
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        global_head_dim=32,
        num_global_key_value_heads=1,
        attention_k_eq_v=True,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=5,
        num_kv_shared_layers=0,
        hidden_size_per_layer_input=0,
        enable_moe_block=True,
        num_experts=4,
        top_k_experts=2,
        moe_intermediate_size=32,
        final_logit_softcapping=30.0,
        initializer_range=0.3,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )
    model = Gemma4ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("norm" in name or name.endswith("scale")) and p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
        for layer in model.model.layers:
            layer.layer_scalar.copy_(0.6 + 0.8 * torch.rand(1))
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
        shutil.copyfile(tok / f, out / f)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
