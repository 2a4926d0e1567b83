#!/usr/bin/env python3
"""Writes crates/cli/tests/fixtures/inspect-reference.json: what the Python `gguf` package
(llama.cpp's gguf-py, the reference reader) sees in the two test models and in llama.cpp's
vocabulary files under tests/fixtures/vocab: every metadata key in order with its type, its
value (scalars) or element type, length and first five elements (arrays), and every tensor's
name, type, shape, element count, byte size and data offset. `hearth inspect --json` prints
the same fields; crates/cli/tests/it/inspect.rs compares the two.

Usage: scripts/gen_inspect_reference.py MODELS_DIR   (the folder scripts/fetch-models.sh fills)
"""
import gzip
import json
import pathlib
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, GGUFValueType

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]
SHORT = {
    GGUFValueType.UINT8: "u8", GGUFValueType.INT8: "i8", GGUFValueType.UINT16: "u16",
    GGUFValueType.INT16: "i16", GGUFValueType.UINT32: "u32", GGUFValueType.INT32: "i32",
    GGUFValueType.FLOAT32: "f32", GGUFValueType.BOOL: "bool", GGUFValueType.STRING: "str",
    GGUFValueType.ARRAY: "arr", GGUFValueType.UINT64: "u64", GGUFValueType.INT64: "i64",
    GGUFValueType.FLOAT64: "f64",
}
SHOWN = 5


def scalar(v):
    if isinstance(v, (bytes, bytearray, np.ndarray)) and not isinstance(v, str):
        v = bytes(v).decode("utf-8", errors="replace")
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    return v


def field_json(f):
    ty = f.types[0]
    if ty != GGUFValueType.ARRAY:
        return {"type": SHORT[ty], "value": scalar(f.contents())}
    elem = f.types[1] if len(f.types) > 1 else GGUFValueType.UINT8
    n = len(f.data)
    if elem == GGUFValueType.ARRAY:
        raise SystemExit(f"{f.name}: nested arrays are not expected in these files")
    head = [scalar(f.parts[i]) if elem == GGUFValueType.STRING else scalar(f.parts[i][0])
            for i in f.data[:SHOWN]]
    return {"type": "arr", "element_type": SHORT[elem], "len": n, "head": head}


def describe(path, name):
    r = GGUFReader(path)
    metadata = [dict(key=k, **field_json(f)) for k, f in r.fields.items()
                if not k.startswith("GGUF.")]
    tensors = [{
        "name": t.name,
        "type": t.tensor_type.name,
        "shape": [int(d) for d in t.shape],
        "n_elements": int(t.n_elements),
        "n_bytes": int(t.n_bytes),
        "offset": int(t.data_offset - r.data_offset),
    } for t in r.tensors]
    version = int(r.fields["GGUF.version"].parts[-1][0])
    return {"file": name, "version": version, "metadata": metadata, "tensors": tensors}


def main():
    models = pathlib.Path(sys.argv[1])
    files = [describe(models / m, m) for m in MODELS]
    for p in sorted((ROOT / "tests/fixtures/vocab").iterdir()):
        if p.suffix == ".gguf":
            files.append(describe(p, p.name))
        elif p.name.endswith(".gguf.gz"):
            with tempfile.NamedTemporaryFile(suffix=".gguf") as tmp:
                tmp.write(gzip.decompress(p.read_bytes()))
                tmp.flush()
                files.append(describe(tmp.name, p.name[:-3]))
    out = ROOT / "crates/cli/tests/fixtures/inspect-reference.json"
    out.write_text(json.dumps({"generator": "scripts/gen_inspect_reference.py, gguf-py "
                               + __import__("importlib.metadata").metadata.version("gguf"),
                               "files": files}, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
