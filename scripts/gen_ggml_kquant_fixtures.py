#!/usr/bin/env python3
"""Writes what llama.cpp's CPU backend computes for Q4_K and Q6_K matmuls
(crates/kernels/tests/fixtures/ggml-kquant), for the `MatrixOptions::ggml_order` kernels that
must match it bit for bit.

It drives the ggml library bundled with llama-cpp-python (0.3.36: llama.cpp of 2026-10, built
for AVX-512 + VNNI; the build reproduces the project's Gemma 3 logit fixtures exactly) through
ctypes and its backend API, so that weights can live in the CPU_REPACK extra buffer type as
llama.cpp's model loader puts them by default. The paths taken there, per matmul of n tokens:

  Q4_K, rows a multiple of 8, CPU_REPACK (llama.cpp's default for these): the weights repacked
        as q4_K_8x8; the first n - n % 4 tokens through ggml_gemm_q4_K_8x8_q8_K, the last
        n % 4 through ggml_gemv_q4_K_8x8_q8_K -- so a token's result depends on where it falls
        in its batch.
  Q4_K in a plain buffer (rows not a multiple of 8, or extra buffers off), and Q6_K (never
        repacked on x86): n < 8 through ggml_vec_dot_*_q8_K per row, n >= 8 through the tiled
        K-quant mat-mul (ggml-cpu/tiled, GGML_CPU_TILED_MM on by default).

Files:
    x.f32              activations, N_TOKENS x K f32
    acts-Q8_K.bin      those rows quantized by ggml's run-time Q8_K quantizer (block_q8_K)
    matmul-<case>.bin  M x K weights of the case's type (random, ggml_quantize_chunk), then for
                       each n in N_LIST ggml_mul_mat(W, x[:n]) as f32 (n x M), concatenated
    with <case> = Q4_K-repack (CPU_REPACK), Q4_K-plain, Q6_K-plain.

Every product runs with 1 and 2 threads and must give the same bits. The shapes are repeated
as constants in crates/kernels/tests/it/matmul_ggml_kquant.rs. Run from the repository root:
    python3 scripts/gen_ggml_kquant_fixtures.py
"""
import ctypes as C
import os
from pathlib import Path

import llama_cpp
import numpy as np

OUT = Path(__file__).resolve().parent.parent / "crates/kernels/tests/fixtures/ggml-kquant"
rng = np.random.default_rng(20261129)

LIB = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
base = C.CDLL(os.path.join(LIB, "libggml-base.so"), mode=C.RTLD_GLOBAL)
cpu = C.CDLL(os.path.join(LIB, "libggml-cpu.so"), mode=C.RTLD_GLOBAL)

F32, Q4_K, Q6_K, Q8_K = 0, 12, 14, 15
P = C.c_void_p

K, M, N_TOKENS = 1024, 40, 33
N_LIST = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33]
CASES = {"Q4_K-repack": (Q4_K, True), "Q4_K-plain": (Q4_K, False), "Q6_K-plain": (Q6_K, False)}


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
nbytes = fn(base, "ggml_nbytes", C.c_size_t, P)
row_size = fn(base, "ggml_row_size", C.c_size_t, C.c_int, C.c_int64)
quantize_chunk = fn(base, "ggml_quantize_chunk", C.c_size_t, C.c_int, P, P, C.c_int64,
                    C.c_int64, C.c_int64, P)
mul_mat = fn(base, "ggml_mul_mat", P, P, P, P)
new_graph = fn(base, "ggml_new_graph", P, P)
build_forward = fn(base, "ggml_build_forward_expand", None, P, P)
traits_cpu = fn(cpu, "ggml_get_type_traits_cpu", C.POINTER(TypeTraitsCpu), C.c_int)
backend_cpu_init = fn(cpu, "ggml_backend_cpu_init", P)
backend_set_threads = fn(cpu, "ggml_backend_cpu_set_n_threads", None, P, C.c_int)
cpu_buft = fn(base, "ggml_backend_cpu_buffer_type", P)
# ggml_backend_cpu_repack_buffer_type() is C++ (not extern "C") in this build.
repack_buft = fn(cpu, "_Z35ggml_backend_cpu_repack_buffer_typev", P)
alloc_ctx = fn(base, "ggml_backend_alloc_ctx_tensors_from_buft", P, P, P)
tensor_set = fn(base, "ggml_backend_tensor_set", None, P, P, C.c_size_t, C.c_size_t)
tensor_get = fn(base, "ggml_backend_tensor_get", None, P, P, C.c_size_t, C.c_size_t)
graph_compute = fn(base, "ggml_backend_graph_compute", C.c_int, P, P)
buffer_free = fn(base, "ggml_backend_buffer_free", None, P)
for flag in ["avx512", "avx512_vnni", "f16c", "fma"]:
    assert fn(cpu, f"ggml_cpu_has_{flag}", C.c_int)(), f"this ggml build lacks {flag}"
fn(cpu, "ggml_cpu_init", None)()
assert "GGML_CPU_TILED_MM" not in os.environ, "run with llama.cpp's default (tiled mat-mul on)"
# offsetof(struct ggml_tensor, extra): the repack traits the buffer type chose, NULL for none.
EXTRA_OFFSET = 4 + 4 + 8 + 4 * 8 + 4 * 8 + 4 + 64 + 4 + 10 * 8 + 8 + 8 + 8 + 64
BACKEND = backend_cpu_init()


def activations():
    x = rng.normal(0, 1, (N_TOKENS, K)).astype(np.float32)
    # Super-block scales spread over six decades.
    x[1] *= np.repeat(10.0 ** rng.uniform(-3, 3, K // 256), 256).astype(np.float32)
    # A zero super-block, a constant one, both signs of the largest magnitude.
    x[4, :256] = 0.0
    x[4, 256:512] = 0.7
    x[4, 600], x[4, 700] = -5.0, 5.0
    # Offset rows: large block sums (the Q4_K min term, Q6_K's -32).
    x[5] += 2.0
    x[6] = np.abs(x[6]) * 3
    # Large values: integer sums well past 2^24 before the float conversion.
    x[9] *= 1e4
    return x


def weights(ty, m):
    w = rng.normal(0, 1, (m, K)).astype(np.float32)
    w[::3] += 0.7
    w[1::5] *= 20.0
    w[2::7] = np.abs(w[2::7])
    out = np.zeros(m * row_size(ty, K), np.uint8)
    quantize_chunk(ty, w.ctypes.data, out.ctypes.data, 0, m, K, None)
    return out


def mul_mat_ggml(ty, wq, x, n_threads, repack):
    """ggml_mul_mat(W, x) on the CPU backend, W in CPU_REPACK or in a plain CPU buffer."""
    backend_set_threads(BACKEND, n_threads)
    n = x.shape[0]
    cw = ggml_init(InitParams(1 << 20, None, True))
    cx = ggml_init(InitParams(1 << 20, None, True))
    try:
        w = new_2d(cw, ty, K, M)
        bw = alloc_ctx(cw, repack_buft() if repack else cpu_buft())
        extra = C.c_void_p.from_address(w + EXTRA_OFFSET).value
        assert (extra is not None) == repack, "repacked exactly when asked"
        assert nbytes(w) == wq.nbytes
        tensor_set(w, wq.ctypes.data, 0, wq.nbytes)
        xt = new_2d(cx, F32, K, n)
        out = mul_mat(cx, w, xt)
        bx = alloc_ctx(cx, cpu_buft())
        xc = np.ascontiguousarray(x, np.float32)
        tensor_set(xt, xc.ctypes.data, 0, xc.nbytes)
        graph = new_graph(cx)
        build_forward(graph, out)
        assert graph_compute(BACKEND, graph) == 0
        res = np.empty((n, M), np.float32)
        tensor_get(out, res.ctypes.data, 0, res.nbytes)
        buffer_free(bx)
        buffer_free(bw)
        return res
    finally:
        ggml_free(cx)
        ggml_free(cw)


def no_repack_for_q6_k():
    """llama.cpp has no repacked layout for Q6_K on x86: the buffer type picks none."""
    cw = ggml_init(InitParams(1 << 20, None, True))
    try:
        w = new_2d(cw, Q6_K, K, M)
        bw = alloc_ctx(cw, repack_buft())
        assert C.c_void_p.from_address(w + EXTRA_OFFSET).value is None
        buffer_free(bw)
    finally:
        ggml_free(cw)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    no_repack_for_q6_k()
    x = activations()
    (OUT / "x.f32").write_bytes(x.astype("<f4").tobytes())
    rs = row_size(Q8_K, K)
    acts = np.zeros(N_TOKENS * rs, np.uint8)
    from_float = traits_cpu(Q8_K).contents.from_float
    for t in range(N_TOKENS):
        row = np.ascontiguousarray(x[t])
        from_float(row.ctypes.data_as(C.POINTER(C.c_float)), acts.ctypes.data + t * rs, K)
    (OUT / "acts-Q8_K.bin").write_bytes(acts.tobytes())
    wq = {Q4_K: weights(Q4_K, M), Q6_K: weights(Q6_K, M)}
    for name, (ty, repack) in CASES.items():
        outs = []
        for n in N_LIST:
            y = mul_mat_ggml(ty, wq[ty], x[:n], 1, repack)
            assert y.tobytes() == mul_mat_ggml(ty, wq[ty], x[:n], 2, repack).tobytes(), name
            outs.append(y.astype("<f4").tobytes())
        (OUT / f"matmul-{name}.bin").write_bytes(wq[ty].tobytes() + b"".join(outs))
    for f in sorted(OUT.iterdir()):
        print(f.name, f.stat().st_size)


if __name__ == "__main__":
    main()
