// llama.cpp's mat-vec speed for one weight type, for comparison with hearth's kernel benchmark
// (`cargo bench -p kernels --bench matmul`): a ROWS x COLS matrix (the benchmark's synthetic
// shape, 16384 x 8192) times one f32 column through ggml_mul_mat on its CPU backend, 1 and 2
// threads, alternating; prints GB/s of weights streamed (median of the runs). Weights are
// random bytes with a small finite f16 scale (the kernels' work does not depend on the
// values), held in a plain CPU buffer: ggml's vec_dot path
// (its loader would repack Q4_K and MXFP4 rows into its 8x8 layouts, which this does not).
// Built and run by scripts/bench_ggml_matvec.sh TYPE...
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ggml.h"
#include "ggml-cpu.h"

enum { ROWS = 16384, COLS = 8192, RUNS = 41 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void * a, const void * b) {
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

int main(int argc, char ** argv) {
    ggml_cpu_init();
    for (int a = 1; a < argc; a++) {
        enum ggml_type ty = GGML_TYPE_COUNT;
        for (int t = 0; t < GGML_TYPE_COUNT; t++) {
            const char * name = ggml_type_name((enum ggml_type) t);
            if (name && strcasecmp(name, argv[a]) == 0) ty = (enum ggml_type) t;
        }
        if (ty == GGML_TYPE_COUNT) { fprintf(stderr, "unknown type %s\n", argv[a]); return 2; }
        const size_t wbytes = ggml_row_size(ty, COLS) * ROWS;
        struct ggml_init_params ip = { wbytes + 64u * 1024 * 1024, NULL, false };
        struct ggml_context * ctx = ggml_init(ip);
        struct ggml_tensor * w = ggml_new_tensor_2d(ctx, ty, COLS, ROWS);
        struct ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, COLS, 1);
        uint64_t s = 7;
        uint8_t * wd = (uint8_t *) w->data;
        for (size_t i = 0; i < wbytes; i++) { s = s * 6364136223846793005ull + 1442695040888963407ull; wd[i] = (uint8_t) (s >> 33); }
        const size_t bs = ggml_type_size(ty);
        const ggml_fp16_t d = ggml_fp32_to_fp16(0.01f);
        for (size_t off = 0; off < wbytes; off += bs) {
            uint8_t * b = wd + off;
            if (ty == GGML_TYPE_MXFP4) { b[0] = 120; continue; }
            if (ty == GGML_TYPE_IQ1_M) {
                for (int j = 0; j < 4; j++) b[49 + 2 * j] = (uint8_t) ((b[49 + 2 * j] & 0xf) | (((d >> (4 * j)) & 0xf) << 4));
                continue;
            }
            memcpy(b, &d, 2);  // the f16 scale comes first in every other type benchmarked
            if (ty == GGML_TYPE_Q4_K) memcpy(b + 2, &d, 2);  // and Q4_K's dmin next
        }
        float * xd = (float *) x->data;
        for (int i = 0; i < COLS; i++) xd[i] = (float) ((i * 37) % 101) / 50.0f - 1.0f;
        struct ggml_tensor * y = ggml_mul_mat(ctx, w, x);
        struct ggml_cgraph * gf = ggml_new_graph(ctx);
        ggml_build_forward_expand(gf, y);
        // A persistent thread pool per thread count, as llama.cpp keeps one: only the graph
        // computes are timed.
        struct ggml_threadpool * pools[2];
        struct ggml_cplan plans[2];
        for (int th = 1; th <= 2; th++) {
            struct ggml_threadpool_params tpp = ggml_threadpool_params_default(th);
            pools[th - 1] = ggml_threadpool_new(&tpp);
            plans[th - 1] = ggml_graph_plan(gf, th, pools[th - 1]);
            plans[th - 1].work_data = malloc(plans[th - 1].work_size + 1);
        }
        double times[3][RUNS];
        for (int th = 1; th <= 2; th++) ggml_graph_compute(gf, &plans[th - 1]);  // warm up
        // ggml's kernel alone: the activation quantizer once, then vec_dot row by row.
        const struct ggml_type_traits_cpu * tc = ggml_get_type_traits_cpu(ty);
        const struct ggml_type_traits_cpu * tq = ggml_get_type_traits_cpu(tc->vec_dot_type);
        void * qx = malloc(ggml_row_size(tc->vec_dot_type, COLS));
        float * yd = malloc(sizeof(float) * ROWS);
        const size_t rb = ggml_row_size(ty, COLS);
        for (int r = 0; r < RUNS; r++) {
            for (int th = 1; th <= 2; th++) {
                double t0 = now();
                ggml_graph_compute(gf, &plans[th - 1]);
                times[th - 1][r] = now() - t0;
            }
            double t0 = now();
            tq->from_float(xd, qx, COLS);
            for (int row = 0; row < ROWS; row++) tc->vec_dot(COLS, yd + row, 0, wd + row * rb, 0, qx, 0, 1);
            times[2][r] = now() - t0;
        }
        qsort(times[2], RUNS, sizeof(double), cmp);
        printf("ggml %-8s %dx%d vec_dot loop, 1 thread: %6.1f GB/s (%.2f ms)\n", ggml_type_name(ty), ROWS, COLS,
               wbytes / times[2][RUNS / 2] / 1e9, times[2][RUNS / 2] * 1e3);
        free(qx); free(yd);
        for (int th = 1; th <= 2; th++) { ggml_threadpool_free(pools[th - 1]); free(plans[th - 1].work_data); }
        for (int th = 1; th <= 2; th++) {
            qsort(times[th - 1], RUNS, sizeof(double), cmp);
            printf("ggml %-8s %dx%d %d thread(s): %6.1f GB/s (%.2f ms)\n", ggml_type_name(ty), ROWS, COLS, th,
                   wbytes / times[th - 1][RUNS / 2] / 1e9, times[th - 1][RUNS / 2] * 1e3);
        }
        ggml_free(ctx);
    }
    return 0;
}
