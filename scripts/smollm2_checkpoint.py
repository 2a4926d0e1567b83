#!/usr/bin/env python3
"""Builds a transformers checkpoint of SmolLM2-135M-Instruct's size and shape from the test
model (SmolLM2-135M-Instruct.Q4_1.gguf): every tensor dequantized to bf16, llama.cpp's Q/K row
permutation undone, names mapped back to transformers', with SmolLM2's tokenizer files taken
from a fixture folder. For timing `hearth convert` against llama.cpp's convert_hf_to_gguf.py
on a realistic size (README), and for comparing the two outputs byte for byte.

usage: smollm2_checkpoint.py MODEL.gguf FIXTURE_HF_DIR OUT_DIR   (needs numpy, torch, safetensors, gguf-py)
"""
import json, shutil, sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
import gguf

src, fixture, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
r = gguf.GGUFReader(src)
kv = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
n_head, n_kv = kv["llama.attention.head_count"], kv["llama.attention.head_count_kv"]
n_embd, n_layer = kv["llama.embedding_length"], kv["llama.block_count"]


def unpermute(w, heads):
    # inverse of LlamaModel.permute: reshape(h, half, 2, ...) -> swap back
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


names = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
tensors = {}
for t in r.tensors:
    w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
    w = w.reshape(list(reversed([int(d) for d in t.shape])))
    if t.name == "token_embd.weight":
        name = "model.embed_tokens.weight"
    elif t.name == "output_norm.weight":
        name = "model.norm.weight"
    elif t.name == "output.weight":
        name = "lm_head.weight"
    else:
        _, bid, what, _ = t.name.split(".")
        name = f"model.layers.{bid}.{names[what]}.weight"
        if what == "attn_q":
            w = unpermute(w, n_head)
        elif what == "attn_k":
            w = unpermute(w, n_kv)
    tensors[name] = torch.from_numpy(np.ascontiguousarray(w)).to(torch.bfloat16)
save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
config = json.loads((fixture / "config.json").read_text())
config.update({
    "hidden_size": n_embd, "num_hidden_layers": n_layer, "num_attention_heads": n_head,
    "num_key_value_heads": n_kv, "intermediate_size": kv["llama.feed_forward_length"],
    "max_position_embeddings": kv["llama.context_length"], "head_dim": n_embd // n_head,
    "rms_norm_eps": float(kv["llama.attention.layer_norm_rms_epsilon"]),
    "rope_parameters": {"rope_theta": float(kv["llama.rope.freq_base"]), "rope_type": "default"},
    "tie_word_embeddings": "lm_head.weight" not in tensors,
})
(out / "config.json").write_text(json.dumps(config, indent=2))
for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"]:
    shutil.copyfile(fixture / f, out / f)
print("wrote", out, sum(v.numel() for v in tensors.values()), "parameters")
