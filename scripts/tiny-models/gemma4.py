"""A tiny random Gemma 4 checkpoint and its references, for hearth's gemma4 tests.

Run through scripts/tiny-models/gemma4.sh (it sets up the venv and paths). Writes into OUT_DIR:

  checkpoint/          transformers checkpoint (config, safetensors, tokenizer, chat template)
  gemma4-{f32,f16,q8_0}.gguf   converted by llama.cpp's own convert_hf_to_gguf.py
  llama-{f32,f16,q8_0}.f32     llama.cpp's logits at every position of PROMPT
  transformers.f32             transformers' logits (f32 weights, eager attention) for the same ids
  reference.json               prompt, ids, shapes, config summary

The model is E-model-like with every Gemma 4 text feature: sliding and full layers with
different head sizes and KV-head counts, V = K on full layers (attention_k_eq_v), shared-KV
layers (the last two reuse the caches of layers 2 and 3), per-layer embeddings, double-wide
MLPs on the shared layers, proportional RoPE on full layers, layer output scales and the final
logit softcap. Norm weights and layer scalars are randomised too so that a missing multiply
shows.

The tokenizer is Gemma 4's own (llama.cpp's ggml-vocab-gemma-4.gguf) cut to N_VOCAB tokens:
its first 494 ids unchanged (control tokens, whitespace runs, byte tokens), the printable ASCII
characters and ▁, and the pieces its first merges build from them, with every merge whose parts
and result survive, in their original order. Same algorithm and pre-tokenization, fewer pieces
(other ids than the real model's past 493); the full 262,144-token table would make each
fixture tens of MB.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

LLAMA = Path(os.environ["LLAMA_VENDOR"])
OUT = Path(sys.argv[1])
N_VOCAB = 1024
PROMPT = "The quick brown fox jumps over the lazy dog.\nHello world, 123 times!"
SEED = 4


def subset_tokenizer(ckpt: Path):
    sys.path.insert(0, str(LLAMA / "gguf-py"))
    import gguf
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import AddedToken

    r = gguf.GGUFReader(str(LLAMA / "models/ggml-vocab-gemma-4.gguf"))

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    all_tokens = strings("tokenizer.ggml.tokens")
    tt = r.fields["tokenizer.ggml.token_type"]
    all_types = [int(tt.parts[i][0]) for i in tt.data]
    all_merges = []
    for m in strings("tokenizer.ggml.merges"):
        p = m.find(" ", 1)
        all_merges.append((m[:p], m[p + 1 :]))
    # ids 0..493 as they are (control and unused tokens, whitespace runs, byte tokens), then
    # the printable ASCII characters and ▁, then what the merges build from them in rank
    # order, until N_VOCAB; kept tokens stay in their original order
    n_base = 494
    assert all_tokens[n_base - 1] == "<0xFF>"
    index = {t: i for i, t in enumerate(all_tokens)}
    keep = set(range(n_base))
    for c in [chr(c) for c in range(33, 127)] + ["▁"]:
        keep.add(index[c])
    texts = {all_tokens[i] for i in keep}
    for a, b in all_merges:
        if len(keep) >= N_VOCAB:
            break
        if a in texts and b in texts and a + b in index and a + b not in texts:
            keep.add(index[a + b])
            texts.add(a + b)
    order = sorted(keep)
    tokens = [all_tokens[i] for i in order]
    types = [all_types[i] for i in order]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [(a, b) for a, b in all_merges if a in vocab and b in vocab and a + b in vocab]
    tk = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    tk.normalizer = normalizers.Replace(" ", "▁")
    tk.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    # control (3) and user-defined (4) tokens of the real vocabulary are added tokens
    added = [
        AddedToken(t, special=(ty == 3), normalized=False)
        for t, ty in zip(tokens, types)
        if ty in (3, 4)
    ]
    tk.add_tokens(added)
    tk.save(str(ckpt / "tokenizer.json"))
    template = bytes(r.fields["tokenizer.chat_template"].parts[-1]).decode("utf-8")
    (ckpt / "chat_template.jinja").write_text(template)
    (ckpt / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "GemmaTokenizer",
                "bos_token": "<bos>",
                "eos_token": "<eos>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
                "mask_token": "<mask>",
                "add_bos_token": True,
                "add_eos_token": False,
                "clean_up_tokenization_spaces": False,
            },
            indent=1,
        )
    )
    return len(merges)


def make_checkpoint(ckpt: Path):
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    torch.manual_seed(SEED)
    cfg = Gemma4TextConfig(
        vocab_size=N_VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        global_head_dim=32,
        num_global_key_value_heads=1,
        attention_k_eq_v=True,
        layer_types=[
            "sliding_attention",
            "full_attention",
            "sliding_attention",
            "full_attention",
            "sliding_attention",
            "full_attention",
        ],
        sliding_window=5,
        num_kv_shared_layers=2,
        use_double_wide_mlp=True,
        vocab_size_per_layer_input=N_VOCAB,
        hidden_size_per_layer_input=32,
        final_logit_softcapping=30.0,
        initializer_range=0.3,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )
    model = Gemma4ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
        for layer in model.model.layers:
            layer.layer_scalar.copy_(0.6 + 0.8 * torch.rand(1))
    model.save_pretrained(ckpt, safe_serialization=True)
    return model, cfg


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    ckpt = OUT / "checkpoint"
    ckpt.mkdir(exist_ok=True)
    n_merges = subset_tokenizer(ckpt)
    model, cfg = make_checkpoint(ckpt)

    env = dict(os.environ, PYTHONPATH=str(LLAMA / "gguf-py"))
    logits_bin = os.environ["LLAMA_LOGITS"]
    summary = {"prompt": PROMPT, "n_vocab": N_VOCAB, "n_merges": n_merges, "files": {}}
    ids = None
    for ty in ["f32", "f16", "q8_0"]:
        gguf_path = OUT / f"gemma4-{ty}.gguf"
        subprocess.run(
            [sys.executable, str(LLAMA / "convert_hf_to_gguf.py"), str(ckpt), "--outtype", ty,
             "--outfile", str(gguf_path)],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )
        out = subprocess.run(
            [logits_bin, str(gguf_path), PROMPT, str(OUT / f"llama-{ty}.f32"), "1"],
            check=True, capture_output=True, text=True,
        )
        got = [int(t) for t in out.stdout.strip().split(",")]
        assert ids is None or ids == got
        ids = got
        summary["files"][ty] = gguf_path.name
    summary["ids"] = ids

    # transformers' logits for llama.cpp's ids, and its own tokenization of the prompt
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ckpt)
    summary["transformers_ids"] = tok(PROMPT)["input_ids"]
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
    out.astype("<f4").tofile(OUT / "transformers.f32")
    summary["n_tokens"] = len(ids)
    (OUT / "reference.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
