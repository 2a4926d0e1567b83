#!/usr/bin/env python3
"""Writes what ggml's CPU backend itself computes for the ops hearth reproduces bit for bit
(crates/kernels/tests/fixtures/ggml).

It drives the ggml library bundled with llama-cpp-python (0.3.36: llama.cpp of 2026-10, built
with AVX-512 — the build the project's logit fixtures come from) through ctypes, building the
same graphs llama.cpp builds, on random inputs:

    gelu-table.f16   ggml_table_gelu_f16 as the library filled it (65536 little-endian f16)
    act.f32          gate | up | gelu(gate) | geglu_split(gate, up) | silu(gate)
                     | swiglu_split(gate, up), each ACT_ROWS x ACT_COLS
    rms_norm.f32     x (RMS_ROWS x RMS_COLS) | w (RMS_COLS) | mul(rms_norm(x, 1e-5), w)
    rope-<mode>.f32  x (ROPE_TOKENS x ROPE_HEADS x ROPE_HD) | ggml_rope_ext(x, ROPE_POS, ...)
    attn-<case>.bin  q (f32, n_tokens x n_head x hd) | K (f16, n_kv x n_head_kv x hd)
                     | V (f16, same layout) | out (f32, n_tokens x n_head x hd): llama.cpp's
                     non-flash attention (mul_mat(K, q), soft_max_ext with a -inf mask,
                     mul_mat(V^T, kq)) where token t at position pos0 + t sees cells
                     max(0, pos + 1 - window) .. pos (window 0 = unlimited)

Every graph runs with 1 and 2 threads and must give the same bits. The shapes and parameters
are repeated as constants in crates/kernels/tests/it/ops_ggml.rs. Run from the repository root:
    python3 scripts/gen_ggml_ops_fixtures.py
"""
import ctypes as C
import os
from pathlib import Path

import llama_cpp
import numpy as np

OUT = Path(__file__).resolve().parent.parent / "crates/kernels/tests/fixtures/ggml"
rng = np.random.default_rng(20261127)

LIB = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
base = C.CDLL(os.path.join(LIB, "libggml-base.so"), mode=C.RTLD_GLOBAL)
cpu = C.CDLL(os.path.join(LIB, "libggml-cpu.so"), mode=C.RTLD_GLOBAL)

F32, F16, I32 = 0, 1, 26
GGML_PREC_F32 = 10
P = C.c_void_p


class InitParams(C.Structure):
    _fields_ = [("mem_size", C.c_size_t), ("mem_buffer", C.c_void_p), ("no_alloc", C.c_bool)]


def fn(lib, name, res, *args):
    f = getattr(lib, name)
    f.restype = res
    f.argtypes = list(args)
    return f


ggml_init = fn(base, "ggml_init", P, InitParams)
ggml_free = fn(base, "ggml_free", None, P)
new_1d = fn(base, "ggml_new_tensor_1d", P, P, C.c_int, C.c_int64)
new_2d = fn(base, "ggml_new_tensor_2d", P, P, C.c_int, C.c_int64, C.c_int64)
new_3d = fn(base, "ggml_new_tensor_3d", P, P, C.c_int, C.c_int64, C.c_int64, C.c_int64)
get_data = fn(base, "ggml_get_data", P, P)
nbytes = fn(base, "ggml_nbytes", C.c_size_t, P)
view_3d = fn(base, "ggml_view_3d", P, P, P, C.c_int64, C.c_int64, C.c_int64,
             C.c_size_t, C.c_size_t, C.c_size_t)
permute = fn(base, "ggml_permute", P, P, P, C.c_int, C.c_int, C.c_int, C.c_int)
mul_mat = fn(base, "ggml_mul_mat", P, P, P, P)
mul_mat_set_prec = fn(base, "ggml_mul_mat_set_prec", None, P, C.c_int)
soft_max_ext = fn(base, "ggml_soft_max_ext", P, P, P, P, C.c_float, C.c_float)
cont_2d = fn(base, "ggml_cont_2d", P, P, P, C.c_int64, C.c_int64)
scale = fn(base, "ggml_scale", P, P, P, C.c_float)
tanh = fn(base, "ggml_tanh", P, P, P)
gelu = fn(base, "ggml_gelu", P, P, P)
silu = fn(base, "ggml_silu", P, P, P)
geglu_split = fn(base, "ggml_geglu_split", P, P, P, P)
swiglu_split = fn(base, "ggml_swiglu_split", P, P, P, P)
rms_norm = fn(base, "ggml_rms_norm", P, P, P, C.c_float)
mul = fn(base, "ggml_mul", P, P, P, P)
rope_ext = fn(base, "ggml_rope_ext", P, P, P, P, P, C.c_int, C.c_int, C.c_int,
              C.c_float, C.c_float, C.c_float, C.c_float, C.c_float, C.c_float)
new_graph = fn(base, "ggml_new_graph", P, P)
build_forward = fn(base, "ggml_build_forward_expand", None, P, P)
compute = fn(cpu, "ggml_graph_compute_with_ctx", C.c_int, P, P, C.c_int)
for flag in ["avx512", "f16c", "fma", "llamafile"]:
    assert fn(cpu, f"ggml_cpu_has_{flag}", C.c_int)(), f"this ggml build lacks {flag}"
fn(cpu, "ggml_cpu_init", None)()

NP_TYPE = {F32: np.float32, F16: np.float16, I32: np.int32}


def run(build, out_shape):
    """Builds the graph with `build(tensor)` on a fresh context and runs it on 1 and 2 threads."""
    results = []
    for n_threads in (1, 2):
        ctx = ggml_init(InitParams(512 << 20, None, False))
        try:
            def tensor(arr, typ):
                a = np.ascontiguousarray(arr, dtype=NP_TYPE[typ])
                ne = a.shape[::-1]
                t = [new_1d, new_2d, new_3d][len(ne) - 1](ctx, typ, *ne)
                assert a.nbytes == nbytes(t)
                C.memmove(get_data(t), a.ctypes.data, a.nbytes)
                return t

            out = build(ctx, tensor)
            graph = new_graph(ctx)
            build_forward(graph, out)
            assert compute(ctx, graph, n_threads) == 0
            res = np.empty(out_shape, np.float32)
            assert res.nbytes == nbytes(out)
            C.memmove(res.ctypes.data, get_data(out), res.nbytes)
            results.append(res)
        finally:
            ggml_free(ctx)
    assert results[0].tobytes() == results[1].tobytes(), "thread count changed the result"
    return results[0]


def f32(a):
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def write_gelu_table():
    table = (C.c_uint16 * 65536).in_dll(cpu, "ggml_table_gelu_f16")
    (OUT / "gelu-table.f16").write_bytes(np.frombuffer(bytes(table), dtype="<u2").tobytes())


ACT_ROWS, ACT_COLS = 3, 1000  # 1000 = 62 blocks of 16 + a tail of 8, as ggml splits rows


def act_gate():
    edges = [-10.0, 10.0, np.nextafter(np.float32(-10), 0), np.nextafter(np.float32(10), 0),
             np.nextafter(np.float32(-10), -20), np.nextafter(np.float32(10), 20),
             0.0, -0.0, 1e-8, -1e-8, 65504.0, 70000.0, -70000.0, 100.0, -100.0,
             -87.0, -88.5, -89.0, -95.0, -103.0, -104.5, -110.0, 87.0, 88.5, 89.0, 104.5]
    n = ACT_ROWS * ACT_COLS
    g = np.concatenate([
        rng.normal(0, 3, n // 2),
        rng.uniform(-12, 12, n - n // 2 - 2 * len(edges)),
        edges,
        edges,
    ]).astype(np.float32)
    rng.shuffle(g[: n - len(edges)])  # the last copy of the edges lands in the tail
    return g.reshape(ACT_ROWS, ACT_COLS)


def write_act():
    gate = act_gate()
    up = rng.normal(0, 2, gate.shape).astype(np.float32)
    shape = gate.shape
    outs = [
        run(lambda ctx, t: gelu(ctx, t(gate, F32)), shape),
        run(lambda ctx, t: geglu_split(ctx, t(gate, F32), t(up, F32)), shape),
        run(lambda ctx, t: silu(ctx, t(gate, F32)), shape),
        run(lambda ctx, t: swiglu_split(ctx, t(gate, F32), t(up, F32)), shape),
    ]
    (OUT / "act.f32").write_bytes(b"".join(f32(a) for a in [gate, up, *outs]))


RMS_ROWS, RMS_COLS, RMS_EPS = 4, 576, 1e-5


def write_rms_norm():
    x = rng.normal(0, 1, (RMS_ROWS, RMS_COLS)).astype(np.float32)
    x[1] *= 1000.0
    x[2] *= rng.uniform(0, 30, RMS_COLS).astype(np.float32) ** 3
    w = rng.normal(1, 0.5, RMS_COLS).astype(np.float32)
    y = run(lambda ctx, t: mul(ctx, rms_norm(ctx, t(x, F32), RMS_EPS), t(w, F32)), x.shape)
    (OUT / "rms_norm.f32").write_bytes(f32(x) + f32(w) + f32(y))


ROPE_TOKENS, ROPE_HEADS, ROPE_HD = 5, 3, 64
ROPE_POS = [0, 1, 7, 100, 4000]
# name: (ggml mode, n_rot, freq_base)
ROPE = {"normal": (0, 64, 100000.0), "neox": (2, 32, 10000.0)}


def write_rope():
    for name, (mode, n_rot, freq_base) in ROPE.items():
        x = rng.normal(0, 2, (ROPE_TOKENS, ROPE_HEADS, ROPE_HD)).astype(np.float32)
        pos = np.array(ROPE_POS, np.int32)
        y = run(lambda ctx, t: rope_ext(ctx, t(x, F32), t(pos, I32), None, n_rot, mode, 0,
                                        freq_base, 1.0, 0.0, 1.0, 32.0, 1.0), x.shape)
        (OUT / f"rope-{name}.f32").write_bytes(f32(x) + f32(y))


# name: (n_head, n_head_kv, head_dim, n_kv, n_tokens, pos0, window, scale, softcap)
ATTN = {
    "prefill-gqa": (9, 3, 64, 256, 7, 40, 0, 0.125, 0.0),
    "decode-gqa": (9, 3, 64, 256, 1, 200, 0, 0.125, 0.0),
    "prefill-swa": (4, 1, 256, 320, 5, 290, 100, 0.0625, 0.0),
    "decode-swa": (4, 1, 256, 320, 1, 301, 100, 0.0625, 0.0),
    "prefill-hd40-softcap": (2, 2, 40, 128, 6, 60, 0, 0.158, 20.0),
    "decode-hd40": (2, 1, 40, 128, 1, 90, 0, 0.158, 0.0),
}


def attention_graph(ctx, t, q, k_cache, v_cache, mask, n_head_kv, hd, n_kv, scale_, softcap):
    """llama.cpp's build_attn_mha without flash attention, on a cache of exactly n_kv cells."""
    n_embd_kv = n_head_kv * hd
    k = t(k_cache.reshape(n_kv, n_embd_kv), F16)
    # llama.cpp keeps V transposed when flash attention is off: one row per channel.
    vt = t(np.ascontiguousarray(v_cache.reshape(n_kv, n_embd_kv).T), F16)
    qt = permute(ctx, t(q, F32), 0, 2, 1, 3)
    kv = permute(ctx, view_3d(ctx, k, hd, n_head_kv, n_kv, hd * 2, n_embd_kv * 2, 0), 0, 2, 1, 3)
    vv = permute(ctx, view_3d(ctx, vt, n_kv, n_head_kv, hd, n_kv * hd * 2, n_kv * 2, 0),
                 0, 2, 1, 3)
    kq = mul_mat(ctx, kv, qt)
    mul_mat_set_prec(kq, GGML_PREC_F32)
    if softcap != 0.0:
        kq = scale(ctx, kq, 1.0 / softcap)
        kq = tanh(ctx, kq)
        kq = scale(ctx, kq, softcap)
    kq = soft_max_ext(ctx, kq, t(mask, F32), scale_, 0.0)
    kqv = mul_mat(ctx, vv, kq)
    cur = permute(ctx, kqv, 0, 2, 1, 3)
    n_tokens, n_head = q.shape[0], q.shape[1]
    return cont_2d(ctx, cur, hd * n_head, n_tokens)


def write_attention():
    for name, (n_head, n_head_kv, hd, n_kv, n_tokens, pos0, window, scale_, softcap) in ATTN.items():
        q = rng.normal(0, 1.5, (n_tokens, n_head, hd)).astype(np.float32)
        q[:, 0] *= 4.0  # one head with sharp attention
        k = rng.normal(0, 1, (n_kv, n_head_kv, hd)).astype(np.float16)
        v = rng.normal(0, 1, (n_kv, n_head_kv, hd)).astype(np.float16)
        mask = np.full((n_tokens, n_kv), -np.inf, np.float32)
        for i in range(n_tokens):
            pos = pos0 + i
            lo = max(0, pos + 1 - window) if window else 0
            mask[i, lo:pos + 1] = 0.0
        out = run(lambda ctx, t: attention_graph(ctx, t, q, k, v, mask, n_head_kv, hd, n_kv,
                                                 scale_, softcap),
                  (n_tokens, n_head, hd))
        data = f32(q) + k.astype("<f2").tobytes() + v.astype("<f2").tobytes() + f32(out)
        (OUT / f"attn-{name}.bin").write_bytes(data)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write_gelu_table()
    write_act()
    write_rms_norm()
    write_rope()
    write_attention()


if __name__ == "__main__":
    main()
