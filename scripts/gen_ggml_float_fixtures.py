#!/usr/bin/env python3
"""Writes what ggml's CPU backend computes for float-weight matmuls (F16, BF16, F32 weights ×
f32 activations) into crates/kernels/tests/fixtures/ggml-float, for the kernels that follow
its order and rounding bit for bit (`MatrixOptions::ggml_order`).

ggml converts the activations to the weight type's `vec_dot_type` first (F16 → f16, BF16 →
bf16, F32 stays), then takes llamafile's sgemm for products of 2+ tokens whose row count is a
multiple of 4 and whose width is a multiple of its step (16 for F16 and F32, 32 for BF16 with
AVX512-BF16), otherwise `ggml_vec_dot_{f16,bf16,f32}` one row at a time. The shapes below hit
every branch: widths that are and are not multiples of 16, 32 and 64, row counts that are and
are not multiples of 4.

It drives llama.cpp's own ggml build (the one the project's logit fixtures come from, built
with AVX-512 and AVX512-BF16) through ctypes; GGML_LIB_DIR overrides /work/llama-build/bin.
For each type and shape, `matmul-<T>-<K>x<M>.bin` holds the M x K weights (random, converted
by `ggml_quantize_chunk`), then the product of all N_TOKENS tokens together (N_TOKENS x M f32),
then each token's product alone (N_TOKENS x M f32). `x-<K>.f32` holds the activations.
Run from the repository root with numpy:
    ~/.cache/hearth/venv-torch/bin/python scripts/gen_ggml_float_fixtures.py
"""
import ctypes as C
import os
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "crates/kernels/tests/fixtures/ggml-float"
LIB = os.environ.get("GGML_LIB_DIR", "/work/llama-build/bin")
rng = np.random.default_rng(20261204)

base = C.CDLL(os.path.join(LIB, "libggml-base.so"), mode=C.RTLD_GLOBAL)
cpu = C.CDLL(os.path.join(LIB, "libggml-cpu.so"), mode=C.RTLD_GLOBAL)

TYPES = {"F32": 0, "F16": 1, "BF16": 30}
F32 = 0
P = C.c_void_p
N_TOKENS = 6
# (K, M): widths of 64s, of 32s but not 64s, of 16s but not 32s, of none; row counts of 4s
# and not.
SHAPES = [(1024, 40), (1056, 40), (1040, 36), (1000, 42), (72, 8)]


class InitParams(C.Structure):
    _fields_ = [("mem_size", C.c_size_t), ("mem_buffer", C.c_void_p), ("no_alloc", C.c_bool)]


def fn(lib, name, res, *args):
    f = getattr(lib, name)
    f.restype = res
    f.argtypes = list(args)
    return f


ggml_init = fn(base, "ggml_init", P, InitParams)
ggml_free = fn(base, "ggml_free", None, P)
new_2d = fn(base, "ggml_new_tensor_2d", P, P, C.c_int, C.c_int64, C.c_int64)
get_data = fn(base, "ggml_get_data", P, P)
nbytes = fn(base, "ggml_nbytes", C.c_size_t, P)
row_size = fn(base, "ggml_row_size", C.c_size_t, C.c_int, C.c_int64)
quantize_chunk = fn(base, "ggml_quantize_chunk", C.c_size_t, C.c_int, P, P, C.c_int64,
                    C.c_int64, C.c_int64, P)
mul_mat = fn(base, "ggml_mul_mat", P, P, P, P)
new_graph = fn(base, "ggml_new_graph", P, P)
build_forward = fn(base, "ggml_build_forward_expand", None, P, P)
compute = fn(cpu, "ggml_graph_compute_with_ctx", C.c_int, P, P, C.c_int)
for flag in ["avx512", "avx512_bf16", "f16c", "fma", "llamafile"]:
    assert fn(cpu, f"ggml_cpu_has_{flag}", C.c_int)(), f"this ggml build lacks {flag}"
fn(cpu, "ggml_cpu_init", None)()


def activations(k):
    x = rng.normal(0, 1, (N_TOKENS, k)).astype(np.float32)
    # Magnitudes over six decades.
    x[1] *= (10.0 ** rng.uniform(-3, 3, k)).astype(np.float32)
    # Values halfway between two f16 / two bf16 values (ties of the rounding), both signs.
    h = np.float32(1.0) + np.float32(2.0 ** -11) * (1 + 2 * (np.arange(k) % 7))
    x[2] = np.where(np.arange(k) % 2 == 0, h, -h).astype(np.float32)
    b = np.float32(1.0) + np.float32(2.0 ** -8) * (1 + 2 * (np.arange(k) % 5))
    x[3] = (b * np.float32(3.0) ** (np.arange(k) % 4)).astype(np.float32)
    # Zeros, large values and tiny ones (f16 subnormals, and f32 subnormals).
    x[4, : k // 4] = 0.0
    x[4, k // 4: k // 2] *= 2e3
    x[4, k // 2: k // 2 + 8] = np.float32(3e-6)
    x[4, k // 2 + 8: k // 2 + 12] = np.float32(1e-39)
    x[5] += 2.0
    return x


def weights(ty, k, m):
    w = rng.normal(0, 1, (m, k)).astype(np.float32)
    w[::3] += 0.7
    w[1::5] *= 20.0
    out = np.zeros(m * row_size(ty, k), np.uint8)
    quantize_chunk(ty, w.ctypes.data, out.ctypes.data, 0, m, k, None)
    return out


def mul_mat_ggml(ty, wq, x, m, n_threads):
    k = x.shape[1]
    ctx = ggml_init(InitParams(64 << 20, None, False))
    try:
        w = new_2d(ctx, ty, k, m)
        assert nbytes(w) == wq.nbytes
        C.memmove(get_data(w), wq.ctypes.data, wq.nbytes)
        xt = new_2d(ctx, F32, k, x.shape[0])
        xc = np.ascontiguousarray(x, np.float32)
        C.memmove(get_data(xt), xc.ctypes.data, xc.nbytes)
        out = mul_mat(ctx, w, xt)
        graph = new_graph(ctx)
        build_forward(graph, out)
        assert compute(ctx, graph, n_threads) == 0
        res = np.empty((x.shape[0], m), np.float32)
        assert res.nbytes == nbytes(out)
        C.memmove(res.ctypes.data, get_data(out), res.nbytes)
        return res
    finally:
        ggml_free(ctx)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    xs = {}
    for k, _ in SHAPES:
        if k not in xs:
            xs[k] = activations(k)
            (OUT / f"x-{k}.f32").write_bytes(xs[k].astype("<f4").tobytes())
    for name, ty in TYPES.items():
        for k, m in SHAPES:
            x = xs[k]
            wq = weights(ty, k, m)
            y = mul_mat_ggml(ty, wq, x, m, 1)
            assert y.tobytes() == mul_mat_ggml(ty, wq, x, m, 2).tobytes(), f"{name}: threads"
            single = np.concatenate([mul_mat_ggml(ty, wq, x[t:t + 1], m, 1)
                                     for t in range(N_TOKENS)])
            (OUT / f"matmul-{name}-{k}x{m}.bin").write_bytes(
                wq.tobytes() + y.astype("<f4").tobytes() + single.astype("<f4").tobytes())
            print(name, k, m, "batch differs from single:", int((y != single).sum()))
    for f in sorted(OUT.iterdir()):
        print(f.name, f.stat().st_size)


if __name__ == "__main__":
    main()
