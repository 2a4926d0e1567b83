#!/usr/bin/env python3
"""llama.cpp's logits for gpt-oss as released converted to BF16 (MXFP4 experts, BF16
elsewhere — what `convert_hf_to_gguf.py --outtype bf16` makes of openai/gpt-oss-*), for the
convert crate's test that runs hearth's own BF16 conversion of the same checkpoint.

    gpt_oss_bf16.py OUT_DIR

Rebuilds the tiny MXFP4 checkpoint of crates/convert/tests/fixtures/hf/gpt-oss-mxfp4 as the
convert tests do (model.safetensors.sans-embd.gz plus the tensors cut from it, taken back from
the engine's gpt-oss fixture; its sha256 is checked), converts it with llama.cpp's
convert_hf_to_gguf.py (LLAMA_SRC, default the llama-cpp-python 0.3.36 sdist under /work) to
bf16, and runs scripts/llama-logits.sh's tool (1 thread, the prompt in one batch) on the ids of
logits.json. Writes into crates/convert/tests/fixtures/hf/gpt-oss-mxfp4: llama-bf16-last-0.f32.gz
(the last position's logits) and `llama_cpp_bf16` in logits.json (the FNV-1a 64 hash of every
position's logits, and their top 10). Run from the repository root with the torch venv's
python (numpy, gguf-py); not run by CI.
"""
import gzip
import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader

ROOT = Path(__file__).resolve().parent.parent.parent
FIX = ROOT / "crates/convert/tests/fixtures/hf"
SRC = FIX / "gpt-oss-mxfp4"
LLAMA_SRC = Path(os.environ.get(
    "LLAMA_SRC", "/work/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp"))


def fnv1a64(row):
    h = 0xcbf29ce484222325
    for b in row.astype("<f4").tobytes():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def rebuild(dst):
    dst.mkdir(parents=True, exist_ok=True)
    ref = json.loads((SRC / "reference.json").read_text())
    for f in SRC.iterdir():
        if (f.suffix == ".json" and f.name not in ("reference.json", "logits.json")) \
                or f.suffix == ".jinja":
            (dst / f.name).write_bytes(f.read_bytes())
    tok = ref["tokenizer"]
    (dst / "tokenizer.json").write_bytes(
        gzip.decompress((FIX / f"tokenizers/{tok}.json.gz").read_bytes()))
    stripped = gzip.decompress((SRC / "model.safetensors.sans-embd.gz").read_bytes())
    n = struct.unpack("<Q", stripped[:8])[0]
    header = json.loads(stripped[8:8 + n])
    gguf_gz = ROOT / "crates/engine/tests/fixtures" / ref["restored_from"] / ref["restored_file"]
    raw = dst.parent / "restored.gguf"
    raw.write_bytes(gzip.decompress(gguf_gz.read_bytes()))
    tensors = {t.name: t for t in GGUFReader(raw).tensors}
    cuts = sorted((header[hf]["data_offsets"][0], header[hf]["data_offsets"][1], gg)
                  for hf, gg in ref["restored"].items())
    whole = bytearray(stripped[:8 + n])
    data = stripped[8 + n:]
    pos = at = 0
    for start, end, gg in cuts:
        whole += data[pos:pos + (start - at)]
        pos += start - at
        t = tensors[gg]
        whole += np.asarray(t.data).astype("<f4").tobytes()
        at = end
    whole += data[pos:]
    assert hashlib.sha256(whole).hexdigest() == ref["sha256"], "rebuilt checkpoint differs"
    (dst / "model.safetensors").write_bytes(bytes(whole))
    raw.unlink()


def main():
    out = Path(sys.argv[1])
    hf = out / "hf"
    rebuild(hf)
    gguf = out / "model-bf16.gguf"
    subprocess.run([sys.executable, str(LLAMA_SRC / "convert_hf_to_gguf.py"), str(hf),
                    "--outtype", "bf16", "--outfile", str(gguf)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tool = subprocess.run([str(ROOT / "scripts/llama-logits.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()
    logits_json = SRC / "logits.json"
    ref = json.loads(logits_json.read_text())
    ids = ref["ids"]
    raw = out / "llama.f32"
    subprocess.run([tool, str(gguf), "ids:" + ",".join(map(str, ids)), str(raw), "1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    llama = np.fromfile(raw, dtype="<f4").reshape(len(ids), -1)
    (SRC / "llama-bf16-last-0.f32.gz").write_bytes(
        gzip.compress(llama[-1].astype("<f4").tobytes(), mtime=0))

    def top(row, k):
        idx = np.argsort(-row.astype(np.float64), kind="stable")[:k]
        return [[int(i), float(row[i])] for i in idx]

    ref["llama_cpp_bf16"] = {
        "fnv1a64_per_position": [fnv1a64(r) for r in llama],
        "top10_per_position": [top(r, 10) for r in llama],
    }
    logits_json.write_text(json.dumps(ref, indent=1) + "\n")
    types = {}
    for t in GGUFReader(gguf).tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    print(f"tensor types: {types}")


if __name__ == "__main__":
    main()
