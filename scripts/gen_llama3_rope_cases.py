#!/usr/bin/env python3
"""Writes crates/convert/src/llama3_rope_cases.rs: llama.cpp's rope_freqs.weight for Llama 3 rope
settings, computed with its own code (LlamaModel.generate_extra_tensors, torch float32)."""
import math, torch, json
def gen(rope_params, hparams):
    base = rope_params.get("rope_theta", 10000.0)
    if (dim := hparams.get("head_dim")) is None:
        dim = hparams["hidden_size"] // hparams["num_attention_heads"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor = rope_params.get("factor", 8.0)
    low_freq_factor = rope_params.get("low_freq_factor", 1.0)
    high_freq_factor = rope_params.get("high_freq_factor", 4.0)
    old_context_len = rope_params.get("original_max_position_embeddings", 8192)
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    rope_factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            rope_factors.append(1)
        elif wavelen > low_freq_wavelen:
            rope_factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            rope_factors.append(1 / ((1 - smooth) / factor + smooth))
    t = torch.tensor(rope_factors, dtype=torch.float32)
    return [int(x) for x in t.view(torch.int32).tolist()]
cases = [
  {"architectures":["LlamaForCausalLM"],"hidden_size":2048,"num_attention_heads":32,"head_dim":64,"rope_theta":500000.0,"rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192,"rope_type":"llama3"}},
  {"architectures":["LlamaForCausalLM"],"hidden_size":4096,"num_attention_heads":32,"rope_theta":500000.0,"rope_scaling":{"factor":8.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192,"rope_type":"llama3"}},
]
out = "/// (config.json, f32 bits of llama.cpp's rope_freqs.weight), from torch.\nconst LLAMA3_CASES: &[(&str, &[u32])] = &[\n"
for c in cases:
    rp = dict(c["rope_scaling"]); rp["rope_theta"] = c["rope_theta"]
    bits = gen(rp, c)
    out += "    (\n        r#\"" + json.dumps(c) + "\"#,\n        &[" + ", ".join(str(b & 0xffffffff) for b in bits) + "],\n    ),\n"
out += "];\n"
open("/work/wt-convert/crates/convert/src/llama3_rope_cases.rs","w").write(out)
