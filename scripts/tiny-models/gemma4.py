"""A tiny random Gemma 4 checkpoint and its references, for hearth's gemma4 tests.

Run through scripts/tiny-models/gemma4.sh (it sets up the venv and paths):

  gemma4.py OUT_DIR [dense|moe]

Writes into OUT_DIR:

  checkpoint/          transformers checkpoint (config, safetensors, tokenizer, chat template)
  gemma4-{f32,f16,q8_0}.gguf   converted by llama.cpp's own convert_hf_to_gguf.py (moe: f32,
                               q8_0, q8_0-split — the q8_0 file with gate and up as separate
                               tensors — and q4_k_m, llama-quantize's Q4_K_M of the f32 file)
  llama-TYPE.f32               llama.cpp's logits at every position of PROMPT, per file
  transformers.f32             transformers' logits (f32 weights, eager attention) for the same ids
  reference.json               prompt, ids, shapes, config summary (moe: llama-completion's
                               greedy text per file, as hex)

The dense model (see make_moe_checkpoint for the other) is E-model-like with every Gemma 4
text feature: sliding and full layers with
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
# "dense" (the E-model-like fixture) or "moe" (26B-A4B-like: experts beside the dense MLP)
VARIANT = sys.argv[2] if len(sys.argv) > 2 else "dense"
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
    if VARIANT == "moe":
        return make_moe_checkpoint(ckpt)
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


def make_moe_checkpoint(ckpt: Path):
    """The 26B-A4B's layer: every layer has a dense GeGLU MLP and, beside it, a mixture of
    experts (8 experts, top 3, GeGLU, fused gate_up) whose router reads the attention output's
    weightless RMS norm times 1/sqrt(hidden) times router.scale, with per-expert output scales;
    the extra norms around both branches. Sliding and full layers with their own head sizes,
    V = K on full layers, no per-layer embeddings and no shared-KV layers (as the 26B-A4B).
    The LM head is untied: with the token embedding as head, a random model's residual stream
    stays closest to its own input token, and greedy text only repeats the last token.
    The router scale and per-expert scales (ones at init) are randomised so a missing multiply
    shows."""
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    torch.manual_seed(SEED + 1)
    cfg = Gemma4TextConfig(
        vocab_size=N_VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=4,
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
        ],
        sliding_window=5,
        num_kv_shared_layers=0,
        hidden_size_per_layer_input=0,
        vocab_size_per_layer_input=N_VOCAB,
        enable_moe_block=True,
        num_experts=8,
        top_k_experts=3,
        moe_intermediate_size=32,
        final_logit_softcapping=30.0,
        initializer_range=0.3,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    model = Gemma4ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
        for layer in model.model.layers:
            layer.layer_scalar.copy_(0.6 + 0.8 * torch.rand(1))
            layer.router.scale.copy_(1.0 + 0.3 * torch.randn_like(layer.router.scale))
            layer.router.per_expert_scale.copy_(
                0.5 + torch.rand_like(layer.router.per_expert_scale)
            )
    model.save_pretrained(ckpt, safe_serialization=True)
    return model, cfg


def llama_completion(gguf_path: Path, prompt: str, n: int) -> str:
    """llama-completion's greedy text (temperature 0, one thread, `n` tokens) after `prompt`,
    as hex: its raw bytes (byte tokens may leave invalid UTF-8)."""
    exe = Path(os.environ["LLAMA_LOGITS"]).parent / "llama-completion"
    r = subprocess.run(
        [str(exe), "-m", str(gguf_path), "-p", prompt, "-n", str(n), "--temp", "0", "-t", "1",
         "-no-cnv", "--no-warmup", "-c", "256", "-fa", "off", "--ignore-eos"],
        capture_output=True, check=True,
    )
    raw = r.stdout
    # it echoes the prompt (after the BOS it adds), then the pieces, then "\n\n"
    assert raw.startswith(prompt.encode()), raw
    raw = raw[len(prompt.encode()):]
    assert raw.endswith(b"\n\n"), raw
    return raw[:-2].hex()


def split_gate_up(src: Path, dst: Path):
    """A copy of `src` with each fused `ffn_gate_up_exps` written as separate `ffn_gate_exps`
    (its first half of rows) and `ffn_up_exps` (the second): the other layout llama.cpp loads.
    """
    sys.path.insert(0, str(LLAMA / "gguf-py"))
    import gguf

    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), arch="gemma4")
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vt = field.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            sub = field.types[1]
            if sub == gguf.GGUFValueType.STRING:
                val = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                val = [field.parts[i].tolist()[0] for i in field.data]
            w.add_key_value(name, val, vt, sub_type=sub)
        elif vt == gguf.GGUFValueType.STRING:
            w.add_key_value(name, bytes(field.parts[-1]).decode("utf-8"), vt)
        else:
            w.add_key_value(name, field.parts[-1].tolist()[0], vt)
    for t in r.tensors:
        data = np.asarray(t.data)
        if t.name.endswith("ffn_gate_up_exps.weight"):
            # [n_expert, 2·n_ff rows, row bytes]
            half = data.shape[1] // 2
            for part, rows in [("ffn_gate_exps", data[:, :half]), ("ffn_up_exps", data[:, half:])]:
                w.add_tensor(
                    t.name.replace("ffn_gate_up_exps", part),
                    np.ascontiguousarray(rows),
                    raw_dtype=t.tensor_type,
                )
        else:
            w.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    ckpt = OUT / "checkpoint"
    ckpt.mkdir(exist_ok=True)
    n_merges = subset_tokenizer(ckpt)
    model, cfg = make_checkpoint(ckpt)

    env = dict(os.environ, PYTHONPATH=str(LLAMA / "gguf-py"))
    logits_bin = os.environ["LLAMA_LOGITS"]
    summary = {"variant": VARIANT, "prompt": PROMPT, "n_vocab": N_VOCAB, "n_merges": n_merges, "files": {}}
    ids = None
    types = ["f32", "q8_0", "q8_0-split", "q4_k_m"] if VARIANT == "moe" else ["f32", "f16", "q8_0"]
    for ty in types:
        gguf_path = OUT / f"gemma4-{ty}.gguf"
        if ty == "q8_0-split":
            split_gate_up(OUT / "gemma4-q8_0.gguf", gguf_path)
        elif ty == "q4_k_m":
            # llama-quantize from the f32 file (types that do not fit a 64-wide row fall back
            # as llama-quantize decides)
            quantize = Path(logits_bin).parent / "llama-quantize"
            subprocess.run(
                [str(quantize), str(OUT / "gemma4-f32.gguf"), str(gguf_path), "Q4_K_M"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        else:
            subprocess.run(
                [sys.executable, str(LLAMA / "convert_hf_to_gguf.py"), str(ckpt), "--outtype",
                 ty, "--outfile", str(gguf_path)],
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
        if VARIANT == "moe":
            summary.setdefault("completion_hex", {})[ty] = llama_completion(gguf_path, PROMPT, 24)
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
