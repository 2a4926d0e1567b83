// Writes llama.cpp's own dot products for MXFP4, IQ4_NL and the IQ lattice types
// (crates/kernels/tests/fixtures/ggml-iq/dot-<TYPE>.bin), through ggml's CPU type traits: the
// run-time activation quantizer of the type's vec_dot_type (`from_float`) and `vec_dot` — the
// path llama.cpp takes for these weights in products of fewer than 8 tokens (and, for MXFP4,
// when its loader does not repack them). Built and run by scripts/gen_ggml_iq_fixtures.sh.
//
// Each file: N_TOK x K activations (f32), ROWS weight rows of K values of the type (random
// bytes, the f16 scale set to a random finite value of either sign; MXFP4 exponents in
// 100..140), then ROWS x N_TOK results (f32, row-major by token: y[t*ROWS + r]).
//
// matmul-<TYPE>.bin for the lattice types: what ggml_mul_mat computes for MM_ROWS x MM_K
// weights in a plain CPU buffer and the first n of MM_TOK activation rows, for each n of MM_N
// (3: its vec_dot path; 9: its tiled mat-mul, taken for 8 tokens or more): the activations,
// the weights, then each product's n x MM_ROWS results.
//
// And matmul-MXFP4-repack.bin, matmul-IQ4_NL-repack.bin: what ggml_mul_mat computes with
// MXFP4 / IQ4_NL weights in the CPU backend's CPU_REPACK buffer (where llama.cpp's loader puts
// them: repacked as mxfp4_8x8 / iq4_nl_8x8, the products through ggml_gemm/gemv_*_8x8_q8_0): RP_TOK x RP_K activations, RP_ROWS weight
// rows, then for each n of RP_N the n x RP_ROWS results of the product with the first n rows.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

enum { ROWS = 6, N_TOK = 3 };

static uint64_t state = 20261204;
static uint64_t next(void) {  // SplitMix64
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float uniform(void) { return (float) ((next() >> 40) / (double) (1 << 24)) * 2.0f - 1.0f; }

static void put(FILE * f, const void * p, size_t n) {
    if (fwrite(p, 1, n, f) != n) { perror("write"); exit(1); }
}

static void one(const char * dir, enum ggml_type ty, int k) {
    const struct ggml_type_traits * tt = ggml_get_type_traits(ty);
    const struct ggml_type_traits_cpu * tc = ggml_get_type_traits_cpu(ty);
    const enum ggml_type vt = tc->vec_dot_type;
    const size_t rb = ggml_row_size(ty, k), ab = ggml_row_size(vt, k);
    float * x = malloc(sizeof(float) * N_TOK * k);
    uint8_t * w = malloc(rb * ROWS);
    uint8_t * q = malloc(ab * N_TOK);
    float y[N_TOK * ROWS];
    for (int i = 0; i < N_TOK * k; i++) {
        x[i] = uniform() + uniform() + uniform();
        if (i % 97 == 0) x[i] *= 20.0f;  // outliers set the activation scales
    }
    for (size_t i = 0; i < rb * ROWS; i++) w[i] = (uint8_t) next();
    const size_t bs = tt->type_size;
    for (size_t off = 0; off < rb * ROWS; off += bs) {
        uint8_t * b = w + off;
        if (ty == GGML_TYPE_MXFP4) {
            b[0] = (uint8_t) (100 + next() % 41);
            continue;
        }
        const float d = (uniform() + 3.0f) / 128.0f * (uniform() < 0 ? -1.0f : 1.0f);
        const ggml_fp16_t h = ggml_fp32_to_fp16(d);
        if (ty == GGML_TYPE_IQ1_M) {  // d's nibbles at the top of the four scale words
            for (int j = 0; j < 4; j++) {
                b[48 + 2 * j + 1] = (uint8_t) ((b[48 + 2 * j + 1] & 0x0f) | (((h >> (4 * j)) & 0xf) << 4));
            }
        } else {
            memcpy(b, &h, 2);
        }
    }
    const struct ggml_type_traits_cpu * tq = ggml_get_type_traits_cpu(vt);
    for (int t = 0; t < N_TOK; t++) tq->from_float(x + (size_t) t * k, q + t * ab, k);
    for (int t = 0; t < N_TOK; t++) {
        for (int r = 0; r < ROWS; r++) {
            tc->vec_dot(k, &y[t * ROWS + r], 0, w + r * rb, 0, q + t * ab, 0, 1);
        }
    }
    char name[64], path[4096];
    snprintf(name, sizeof name, "%s", ggml_type_name(ty));
    for (char * c = name; *c; c++) if (*c >= 'a' && *c <= 'z') *c -= 32;
    snprintf(path, sizeof path, "%s/dot-%s.bin", dir, name);
    FILE * f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    put(f, x, sizeof(float) * N_TOK * k);
    put(f, w, rb * ROWS);
    put(f, y, sizeof y);
    fclose(f);
    free(x); free(w); free(q);
}

enum { MM_ROWS = 40, MM_K = 256 * 5, MM_TOK = 9 };
static const int MM_N[] = { 3, 9 };

static void fill_lattice(enum ggml_type ty, uint8_t * w, size_t bytes) {
    const size_t bs = ggml_type_size(ty);
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t) next();
    for (size_t off = 0; off < bytes; off += bs) {
        uint8_t * b = w + off;
        const float d = (uniform() + 3.0f) / 128.0f * (uniform() < 0 ? -1.0f : 1.0f);
        const ggml_fp16_t h = ggml_fp32_to_fp16(d);
        if (ty == GGML_TYPE_IQ1_M) {
            for (int j = 0; j < 4; j++) {
                b[48 + 2 * j + 1] = (uint8_t) ((b[48 + 2 * j + 1] & 0x0f) | (((h >> (4 * j)) & 0xf) << 4));
            }
        } else {
            memcpy(b, &h, 2);
        }
    }
}

static void plain_matmul(const char * dir, enum ggml_type ty) {
    const size_t rb = ggml_row_size(ty, MM_K);
    uint8_t * w = malloc(rb * MM_ROWS);
    float * x = malloc(sizeof(float) * MM_TOK * MM_K);
    fill_lattice(ty, w, rb * MM_ROWS);
    for (int i = 0; i < MM_TOK * MM_K; i++) x[i] = (uniform() + uniform() + uniform()) * (i % 89 == 0 ? 20.0f : 1.0f);
    char name[64], path[4096];
    snprintf(name, sizeof name, "%s", ggml_type_name(ty));
    for (char * c = name; *c; c++) if (*c >= 'a' && *c <= 'z') *c -= 32;
    snprintf(path, sizeof path, "%s/matmul-%s.bin", dir, name);
    FILE * f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    put(f, x, sizeof(float) * MM_TOK * MM_K);
    put(f, w, rb * MM_ROWS);
    for (size_t k = 0; k < sizeof MM_N / sizeof MM_N[0]; k++) {
        const int n = MM_N[k];
        float ys[2][MM_TOK * MM_ROWS];
        for (int th = 1; th <= 2; th++) {
            struct ggml_init_params ip = { rb * MM_ROWS + sizeof(float) * (MM_TOK * MM_K + MM_TOK * MM_ROWS) + (4 << 20), NULL, false };
            struct ggml_context * ctx = ggml_init(ip);
            struct ggml_tensor * wt = ggml_new_tensor_2d(ctx, ty, MM_K, MM_ROWS);
            struct ggml_tensor * xt = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, MM_K, n);
            memcpy(wt->data, w, rb * MM_ROWS);
            memcpy(xt->data, x, sizeof(float) * n * MM_K);
            struct ggml_tensor * out = ggml_mul_mat(ctx, wt, xt);
            struct ggml_cgraph * gf = ggml_new_graph(ctx);
            ggml_build_forward_expand(gf, out);
            if (ggml_graph_compute_with_ctx(ctx, gf, th) != GGML_STATUS_SUCCESS) { fprintf(stderr, "compute failed\n"); exit(1); }
            memcpy(ys[th - 1], out->data, sizeof(float) * n * MM_ROWS);
            ggml_free(ctx);
        }
        if (memcmp(ys[0], ys[1], sizeof(float) * n * MM_ROWS) != 0) { fprintf(stderr, "%s: 1 and 2 threads differ\n", name); exit(1); }
        put(f, ys[0], sizeof(float) * n * MM_ROWS);
    }
    fclose(f);
    free(w); free(x);
}

enum { RP_ROWS = 40, RP_K = 32 * 41, RP_TOK = 9 };
static const int RP_N[] = { 1, 3, 4, 5, 9 };

static void repacked(const char * dir, enum ggml_type ty) {
    ggml_backend_reg_t reg = ggml_backend_cpu_reg();
    ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, 0);
    ggml_backend_dev_get_extra_bufts_t get_extra =
        (ggml_backend_dev_get_extra_bufts_t) ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
    ggml_backend_buffer_type_t repack = NULL;
    for (ggml_backend_buffer_type_t * b = get_extra(dev); b && *b; b++) {
        if (strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) repack = *b;
    }
    if (!repack) { fprintf(stderr, "no CPU_REPACK buffer type\n"); exit(1); }
    ggml_backend_t backend = ggml_backend_cpu_init();
    const size_t rb = ggml_row_size(ty, RP_K);
    uint8_t * w = malloc(rb * RP_ROWS);
    float * x = malloc(sizeof(float) * RP_TOK * RP_K);
    for (size_t i = 0; i < rb * RP_ROWS; i++) w[i] = (uint8_t) next();
    const size_t bs = ggml_type_size(ty);
    for (size_t off = 0; off < rb * RP_ROWS; off += bs) {
        if (ty == GGML_TYPE_MXFP4) {
            w[off] = (uint8_t) (100 + next() % 41);
        } else {  // IQ4_NL: a finite f16 scale of either sign
            const float d = (uniform() + 3.0f) / 128.0f * (uniform() < 0 ? -1.0f : 1.0f);
            const ggml_fp16_t h = ggml_fp32_to_fp16(d);
            memcpy(w + off, &h, 2);
        }
    }
    for (int i = 0; i < RP_TOK * RP_K; i++) x[i] = (uniform() + uniform() + uniform()) * (i % 89 == 0 ? 20.0f : 1.0f);
    char name[64], path[4096];
    snprintf(name, sizeof name, "%s", ggml_type_name(ty));
    for (char * c = name; *c; c++) if (*c >= 'a' && *c <= 'z') *c -= 32;
    snprintf(path, sizeof path, "%s/matmul-%s-repack.bin", dir, name);
    FILE * f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    put(f, x, sizeof(float) * RP_TOK * RP_K);
    put(f, w, rb * RP_ROWS);
    for (size_t k = 0; k < sizeof RP_N / sizeof RP_N[0]; k++) {
        const int n = RP_N[k];
        float ys[2][RP_TOK * RP_ROWS];
        for (int th = 1; th <= 2; th++) {
            struct ggml_init_params ip = { 1 << 20, NULL, true };
            struct ggml_context * cw = ggml_init(ip), * cx = ggml_init(ip);
            struct ggml_tensor * wt = ggml_new_tensor_2d(cw, ty, RP_K, RP_ROWS);
            ggml_backend_buffer_t bw = ggml_backend_alloc_ctx_tensors_from_buft(cw, repack);
            if (!wt->extra) { fprintf(stderr, "%s not repacked\n", name); exit(1); }
            ggml_backend_tensor_set(wt, w, 0, rb * RP_ROWS);
            struct ggml_tensor * xt = ggml_new_tensor_2d(cx, GGML_TYPE_F32, RP_K, n);
            struct ggml_tensor * out = ggml_mul_mat(cx, wt, xt);
            ggml_backend_buffer_t bx = ggml_backend_alloc_ctx_tensors_from_buft(cx, ggml_backend_cpu_buffer_type());
            ggml_backend_tensor_set(xt, x, 0, sizeof(float) * n * RP_K);
            struct ggml_cgraph * gf = ggml_new_graph(cx);
            ggml_build_forward_expand(gf, out);
            ggml_backend_cpu_set_n_threads(backend, th);
            if (ggml_backend_graph_compute(backend, gf) != GGML_STATUS_SUCCESS) { fprintf(stderr, "compute failed\n"); exit(1); }
            ggml_backend_tensor_get(out, ys[th - 1], 0, sizeof(float) * n * RP_ROWS);
            ggml_backend_buffer_free(bx);
            ggml_backend_buffer_free(bw);
            ggml_free(cx);
            ggml_free(cw);
        }
        if (memcmp(ys[0], ys[1], sizeof(float) * n * RP_ROWS) != 0) { fprintf(stderr, "1 and 2 threads differ\n"); exit(1); }
        put(f, ys[0], sizeof(float) * n * RP_ROWS);
    }
    fclose(f);
    ggml_backend_free(backend);
    free(w); free(x);
}

int main(int argc, char ** argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]); return 2; }
    ggml_cpu_init();
    one(argv[1], GGML_TYPE_MXFP4, 32 * 41);  // an odd block count: ggml's scalar tail
    const enum ggml_type lattice[] = {
        GGML_TYPE_IQ2_XXS, GGML_TYPE_IQ2_XS, GGML_TYPE_IQ2_S, GGML_TYPE_IQ3_XXS,
        GGML_TYPE_IQ3_S,   GGML_TYPE_IQ1_S,  GGML_TYPE_IQ1_M,
    };
    for (size_t i = 0; i < sizeof lattice / sizeof lattice[0]; i++) one(argv[1], lattice[i], 256 * 5);
    repacked(argv[1], GGML_TYPE_MXFP4);
    for (size_t i = 0; i < sizeof lattice / sizeof lattice[0]; i++) plain_matmul(argv[1], lattice[i]);
    // IQ4_NL (added after the others, so their files stay as they were): vec_dot (matrices
    // llama.cpp leaves in ggml layout) and repacked as iq4_nl_8x8 (its loader's default).
    one(argv[1], GGML_TYPE_IQ4_NL, 32 * 41);
    repacked(argv[1], GGML_TYPE_IQ4_NL);
    return 0;
}
