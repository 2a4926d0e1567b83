#!/usr/bin/env python3
"""Writes the reference fixtures for hearth's quantization tests (crates/kernels/tests/fixtures/quant).

For every type the Python `gguf` package can dequantize and hearth supports, random blocks
(random bytes; f16/f32 scale fields replaced by random *finite* values, subnormals included)
and the package's dequantized f32 values:
    dequant-<type>.raw   the blocks, as stored in GGUF
    dequant-<type>.f32   the expected values, little-endian f32
For every type the package can quantize, one shared input and the expected bytes:
    quant-input.f32      2048 little-endian f32 (random normals at several scales, plus edge blocks)
    quant-<type>.raw     gguf.quants.quantize(input, type)
Q8_1 and Q8_K (activation formats the package lacks) use the straightforward numpy versions of
ggml's reference code below. Run from the repository root: python3 scripts/gen_quant_fixtures.py
"""
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

OUT = Path(__file__).resolve().parent.parent / "crates/kernels/tests/fixtures/quant"
rng = np.random.default_rng(20260726)

# (type, number of blocks, byte offsets of f16 fields, byte offsets of f32 fields)
DEQUANT = [
    (T.F32, 64, [], None),
    (T.F16, 64, None, []),
    (T.BF16, 64, [], []),
    (T.Q4_0, 33, [0], []),
    (T.Q4_1, 33, [0, 2], []),
    (T.Q5_0, 33, [0], []),
    (T.Q5_1, 33, [0, 2], []),
    (T.Q8_0, 33, [0], []),
    (T.Q8_1, 33, [0, 2], []),
    (T.Q2_K, 9, [80, 82], []),
    (T.Q3_K, 9, [108], []),
    (T.Q4_K, 9, [0, 2], []),
    (T.Q5_K, 9, [0, 2], []),
    (T.Q6_K, 9, [208], []),
    (T.Q8_K, 9, [], [0]),
    (T.IQ4_NL, 33, [0], []),
    (T.IQ4_XS, 9, [0], []),
]


def finite_f16(n):
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    bad = (bits & 0x7C00) == 0x7C00
    bits[bad] &= 0xBBFF  # clear an exponent bit: finite
    return bits


def finite_f32(n):
    return (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 4, size=n)).astype(np.float32)


def dequant_ref(ty, raw):
    if ty == T.F32:
        return raw.view(np.float32)
    if ty == T.Q8_1:  # d (f16), s (f16), 32 x i8:  y = q * d
        b = raw.reshape(-1, 36)
        d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
        return (b[:, 4:].view(np.int8).astype(np.float32) * d).reshape(-1)
    if ty == T.Q8_K:  # d (f32), 256 x i8, 16 x i16 sums:  y = d * q
        b = raw.reshape(-1, 292)
        d = b[:, 0:4].copy().view(np.float32)
        return (d * b[:, 4:260].view(np.int8).astype(np.float32)).reshape(-1)
    return quants.dequantize(raw, ty).reshape(-1)


def write_dequant():
    for ty, nblocks, f16s, f32s in DEQUANT:
        # The package still lists Q8_1 with its old 40-byte layout (f32 d and s); ggml's is 36.
        type_size = 36 if ty == T.Q8_1 else GGML_QUANT_SIZES[ty][1]
        raw = rng.integers(0, 256, size=(nblocks, type_size), dtype=np.uint8)
        if ty == T.F16:
            raw = finite_f16(nblocks).view(np.uint8).reshape(nblocks, 2)
        if ty == T.BF16:
            bits = rng.integers(0, 1 << 16, size=nblocks, dtype=np.uint32).astype(np.uint16)
            bits[(bits & 0x7F80) == 0x7F80] &= 0xBFFF
            raw = bits.view(np.uint8).reshape(nblocks, 2)
        if ty == T.F32:
            raw = finite_f32(nblocks).view(np.uint8).reshape(nblocks, 4)
        for off in f16s or []:
            raw[:, off:off + 2] = finite_f16(nblocks).view(np.uint8).reshape(nblocks, 2)
        for off in f32s or []:
            raw[:, off:off + 4] = finite_f32(nblocks).view(np.uint8).reshape(nblocks, 4)
        raw = np.ascontiguousarray(raw).reshape(-1)
        vals = np.asarray(dequant_ref(ty, raw), dtype=np.float32)
        (OUT / f"dequant-{ty.name}.raw").write_bytes(raw.tobytes())
        (OUT / f"dequant-{ty.name}.f32").write_bytes(vals.astype("<f4").tobytes())


def quant_input():
    blocks = []
    for i in range(8):  # 8 x 256 values = 2048, whole super-blocks
        scale = 10.0 ** (i - 4)
        blocks.append(rng.standard_normal(256).astype(np.float32) * np.float32(scale))
    x = np.concatenate(blocks)
    x[0:32] = 0.0  # an all-zero block
    x[32:64] = 1.25  # a constant block
    x[64:96] = np.linspace(-1, 1, 32, dtype=np.float32)  # ties and a symmetric range
    x[96:128] = -np.abs(x[96:128])  # all negative: the signed max is negative
    x[128:160] = np.arange(32, dtype=np.float32) - 16.0  # exact grid values
    return x.astype(np.float32)


def np_roundf(v):
    a = np.abs(v)
    f = np.floor(a)
    return np.sign(v) * (f + np.floor(2 * (a - f)))


def quant_q8_1(x):
    b = x.reshape(-1, 32)
    d = np.abs(b).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = np_roundf(b * idv).astype(np.int8)
    s = (q.astype(np.int32).sum(axis=1, keepdims=True).astype(np.float32) * d).astype(np.float16)
    return np.concatenate([d.astype(np.float16).view(np.uint8), s.view(np.uint8), q.view(np.uint8)], axis=1).reshape(-1)


def quant_q8_k(x):
    out = []
    for b in x.reshape(-1, 256):
        i = int(np.argmax(np.abs(b)))
        mx = b[i]
        if mx == 0:
            d, q = np.float32(0), np.zeros(256, np.int8)
        else:
            iscale = np.float32(-127.0) / mx
            q = np.minimum(127, np.rint(iscale * b)).astype(np.int8)
            d = np.float32(1) / iscale
        sums = q.astype(np.int16).reshape(16, 16).sum(axis=1).astype("<i2")
        out.append(np.concatenate([np.array([d], "<f4").view(np.uint8), q.view(np.uint8), sums.view(np.uint8)]))
    return np.concatenate(out)


def write_quant():
    x = quant_input()
    (OUT / "quant-input.f32").write_bytes(x.astype("<f4").tobytes())
    for ty in [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]:
        q = np.asarray(quants.quantize(x.reshape(8, 256), ty))
        (OUT / f"quant-{ty.name}.raw").write_bytes(q.view(np.uint8).tobytes())
    (OUT / "quant-Q8_1.raw").write_bytes(quant_q8_1(x).tobytes())
    (OUT / "quant-Q8_K.raw").write_bytes(quant_q8_k(x).tobytes())


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write_dequant()
    write_quant()
    print(f"wrote {len(list(OUT.iterdir()))} files to {OUT}")
