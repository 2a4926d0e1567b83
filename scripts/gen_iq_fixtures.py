#!/usr/bin/env python3
"""Writes the reference fixtures of MXFP4 and the IQ lattice types (crates/kernels/tests/fixtures/quant).

For each type, random blocks (random bytes; the f16 scale replaced by a random finite value,
subnormals included; IQ1_M's scale, spread over the top nibbles of its scale words, likewise made
finite) and the Python `gguf` package's dequantized values:
    dequant-<type>.raw   the blocks, as stored in GGUF
    dequant-<type>.f32   the expected values, little-endian f32
and MXFP4's reference quantization of the shared quant-input.f32 (written by
gen_quant_fixtures.py): quant-MXFP4.raw. Every byte pattern is a valid block of these types,
so random bytes cover every grid index, sign pattern and scale.
Run from the repository root: python3 scripts/gen_iq_fixtures.py
"""
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

OUT = Path(__file__).resolve().parent.parent / "crates/kernels/tests/fixtures/quant"
rng = np.random.default_rng(20261204)

# (type, number of blocks, byte offset of the f16 scale or None)
TYPES = [
    (T.MXFP4, 33, None),
    (T.IQ2_XXS, 9, 0),
    (T.IQ2_XS, 9, 0),
    (T.IQ2_S, 9, 0),
    (T.IQ3_XXS, 9, 0),
    (T.IQ3_S, 9, 0),
    (T.IQ1_S, 9, 0),
    (T.IQ1_M, 9, None),
]


def finite_f16(n):
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    bits[(bits & 0x7C00) == 0x7C00] &= 0xBBFF  # clear an exponent bit: finite
    return bits


def main():
    for ty, nblocks, f16 in TYPES:
        raw = rng.integers(0, 256, size=(nblocks, GGML_QUANT_SIZES[ty][1]), dtype=np.uint8)
        if f16 is not None:
            raw[:, f16:f16 + 2] = finite_f16(nblocks).view(np.uint8).reshape(nblocks, 2)
        if ty == T.IQ1_M:
            # d's exponent bits 10–14 sit in bits 14–15 of scale word 2 and 12–14 of word 3.
            sc = raw[:, 48:56].copy().view("<u2")
            d = (sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0xF0) | ((sc[:, 2] >> 4) & 0xF00) | (sc[:, 3] & 0xF000)
            inf = (d & 0x7C00) == 0x7C00
            sc[inf, 3] &= 0xBFFF
            raw[:, 48:56] = sc.view(np.uint8)
        if ty == T.MXFP4:
            raw[0, 0] = 0  # the two subnormal scales and the largest
            raw[1, 0] = 1
            raw[2, 0] = 254
        raw = np.ascontiguousarray(raw).reshape(-1)
        with np.errstate(over="ignore"):
            vals = np.asarray(quants.dequantize(raw, ty), dtype=np.float32).reshape(-1)
        (OUT / f"dequant-{ty.name}.raw").write_bytes(raw.tobytes())
        (OUT / f"dequant-{ty.name}.f32").write_bytes(vals.astype("<f4").tobytes())
    x = np.frombuffer((OUT / "quant-input.f32").read_bytes(), dtype="<f4").astype(np.float32)
    q = np.asarray(quants.quantize(x.reshape(-1, 256), T.MXFP4))
    (OUT / "quant-MXFP4.raw").write_bytes(q.view(np.uint8).tobytes())


if __name__ == "__main__":
    main()
    print(f"wrote the MXFP4 and IQ fixtures to {OUT}")
