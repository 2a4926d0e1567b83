#!/usr/bin/env python3
"""Writes what ggml's CPU backend itself computes for quantized matmuls and their activation
quantization (crates/kernels/tests/fixtures/ggml-matmul), for the kernels that must match it
bit for bit.

It drives the ggml library bundled with llama-cpp-python (0.3.36: llama.cpp of 2026-10, built
with AVX-512 — the build the project's logit fixtures come from) through ctypes:

    x.f32             activations, N_TOKENS x K f32 (random rows, rows whose scaled values
                      fall on .5, zero and constant blocks, an offset row)
    acts-<T>.bin      those rows quantized by ggml's run-time quantizer for T = Q8_0, Q8_1,
                      Q8_K (`ggml_get_type_traits_cpu(T)->from_float`, i.e. the x86
                      `quantize_row_q8_0`/`_q8_1`/`_q8_K` matmul uses), ggml's block layout
    matmul-<T>.bin    M x K weights of type T (random, quantized by `ggml_quantize_chunk`), then
                      ggml_mul_mat(W, x) as f32 (N_TOKENS x M): for Q4_1/Q5_1 through
                      `ggml_vec_dot_*_q8_1`, for Q5_0/Q8_0 through llamafile's sgemm — the paths
                      llama.cpp takes for these types in the models (no repacked layout exists
                      for them on x86)

Every product runs with 1 and 2 threads, and token by token, and must give the same bits. The
shapes are repeated as constants in crates/kernels/tests/it/matmul_ggml.rs. Run from the
repository root:
    python3 scripts/gen_ggml_matmul_fixtures.py
"""
import ctypes as C
import os
from pathlib import Path

import llama_cpp
import numpy as np

OUT = Path(__file__).resolve().parent.parent / "crates/kernels/tests/fixtures/ggml-matmul"
rng = np.random.default_rng(20261128)

LIB = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
base = C.CDLL(os.path.join(LIB, "libggml-base.so"), mode=C.RTLD_GLOBAL)
cpu = C.CDLL(os.path.join(LIB, "libggml-cpu.so"), mode=C.RTLD_GLOBAL)

F32 = 0
TYPES = {"Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8}
ACT_TYPES = {"Q8_0": 8, "Q8_1": 9, "Q8_K": 15}
P = C.c_void_p

K, M, N_TOKENS = 1024, 40, 6


class InitParams(C.Structure):
    _fields_ = [("mem_size", C.c_size_t), ("mem_buffer", C.c_void_p), ("no_alloc", C.c_bool)]


FROM_FLOAT = C.CFUNCTYPE(None, C.POINTER(C.c_float), C.c_void_p, C.c_int64)


class TypeTraitsCpu(C.Structure):
    _fields_ = [("from_float", FROM_FLOAT), ("vec_dot", C.c_void_p),
                ("vec_dot_type", C.c_int), ("nrows", C.c_int64)]


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
traits_cpu = fn(cpu, "ggml_get_type_traits_cpu", C.POINTER(TypeTraitsCpu), C.c_int)
for flag in ["avx512", "avx512_vnni", "f16c", "fma", "llamafile"]:
    assert fn(cpu, f"ggml_cpu_has_{flag}", C.c_int)(), f"this ggml build lacks {flag}"
fn(cpu, "ggml_cpu_init", None)()


def activations():
    x = rng.normal(0, 1, (N_TOKENS, K)).astype(np.float32)
    # Block scales spread over six decades.
    x[1] *= np.repeat(10.0 ** rng.uniform(-3, 3, K // 32), 32).astype(np.float32)
    # amax 127 (127/amax = 1) and half-integer values: every scaled value is a tie.
    for b in range(K // 32):
        x[2, 32 * b:32 * b + 32] = (np.arange(32) * 7 + 3 * b) % 101 - 50.5
        x[2, 32 * b] = 127.0
    # amax 254 (127/amax = 0.5) and odd integers; the largest magnitude negative.
    for b in range(K // 32):
        x[3, 32 * b:32 * b + 32] = (np.arange(32) * 13 + b) % 199 - 99.0
        x[3, 32 * b] = -254.0
    # A zero block, a zero super-block, a constant block, both signs of the largest magnitude.
    x[4, :32] = 0.0
    x[4, 256:512] = 0.0
    x[4, 512:544] = 0.7
    x[4, 600], x[4, 700] = -5.0, 5.0
    # An offset row: large block sums (the Q4_1/Q5_1 min term).
    x[5] += 2.0
    return x


def weights(ty):
    w = rng.normal(0, 1, (M, K)).astype(np.float32)
    w[::3] += 0.7
    w[1::5] *= 20.0
    out = np.zeros(M * row_size(ty, K), np.uint8)
    quantize_chunk(ty, w.ctypes.data, out.ctypes.data, 0, M, K, None)
    return out


def mul_mat_ggml(ty, wq, x, n_threads):
    ctx = ggml_init(InitParams(64 << 20, None, False))
    try:
        w = new_2d(ctx, ty, K, M)
        assert nbytes(w) == wq.nbytes
        C.memmove(get_data(w), wq.ctypes.data, wq.nbytes)
        xt = new_2d(ctx, F32, K, x.shape[0])
        xc = np.ascontiguousarray(x, np.float32)
        C.memmove(get_data(xt), xc.ctypes.data, xc.nbytes)
        out = mul_mat(ctx, w, xt)
        graph = new_graph(ctx)
        build_forward(graph, out)
        assert compute(ctx, graph, n_threads) == 0
        res = np.empty((x.shape[0], M), np.float32)
        assert res.nbytes == nbytes(out)
        C.memmove(res.ctypes.data, get_data(out), res.nbytes)
        return res
    finally:
        ggml_free(ctx)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    x = activations()
    (OUT / "x.f32").write_bytes(x.astype("<f4").tobytes())
    for name, ty in ACT_TYPES.items():
        rs = row_size(ty, K)
        buf = np.zeros(N_TOKENS * rs, np.uint8)
        from_float = traits_cpu(ty).contents.from_float
        for t in range(N_TOKENS):
            row = np.ascontiguousarray(x[t])
            from_float(row.ctypes.data_as(C.POINTER(C.c_float)),
                       buf.ctypes.data + t * rs, K)
        (OUT / f"acts-{name}.bin").write_bytes(buf.tobytes())
    for name, ty in TYPES.items():
        wq = weights(ty)
        y = mul_mat_ggml(ty, wq, x, 1)
        assert y.tobytes() == mul_mat_ggml(ty, wq, x, 2).tobytes(), f"{name}: threads"
        for t in range(N_TOKENS):
            one = mul_mat_ggml(ty, wq, x[t:t + 1], 1)
            assert one.tobytes() == y[t:t + 1].tobytes(), f"{name}: token {t} alone"
        (OUT / f"matmul-{name}.bin").write_bytes(wq.tobytes() + y.astype("<f4").tobytes())
    for f in sorted(OUT.iterdir()):
        print(f.name, f.stat().st_size)


if __name__ == "__main__":
    main()
