// Writes what ggml_quantize_chunk (llama-quantize's quantizer) makes of a few rows for each IQ
// lattice type: crates/kernels/tests/fixtures/ggml-iq-quant/<TYPE>[-imatrix].bin. Built and run
// by scripts/gen_ggml_iq_quant_fixtures.sh.
//
// Each file: u32 rows, u32 n_per_row, u32 has_imatrix, rows x n_per_row f32 values,
// n_per_row f32 importance weights when has_imatrix, then the quantized rows.
// The rows: 0 smooth random values; 1 values on a coarse grid (many ties, as in requantized
// weights); 2 random with all-zero groups and scattered zeros; 3 heavy-tailed with outliers.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"

enum { ROWS = 4, K = 512 };

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

int main(int argc, char ** argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]); return 1; }
    static float x[ROWS * K], qw[K];
    for (int i = 0; i < K; i++) {
        x[0 * K + i] = 0.02f * (uniform() + uniform() + uniform());
        x[1 * K + i] = 0.01f * (float) ((int) (next() % 16) - 8);
        x[2 * K + i] = (i < 48 || i % 7 == 0) ? 0.0f : 0.03f * uniform();
        float v = 0.01f * uniform();
        x[3 * K + i] = i % 37 == 0 ? 25.0f * v : v;
        qw[i] = 0.1f + 1.9f * (0.5f * uniform() + 0.5f);
    }
    const enum ggml_type types[] = {GGML_TYPE_IQ2_XXS, GGML_TYPE_IQ2_XS, GGML_TYPE_IQ2_S, GGML_TYPE_IQ3_XXS,
                                    GGML_TYPE_IQ3_S,   GGML_TYPE_IQ1_S,  GGML_TYPE_IQ1_M};
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        const enum ggml_type ty = types[t];
        for (int with = 0; with < 2; with++) {
            if (!with && ggml_quantize_requires_imatrix(ty)) continue;
            const size_t rb = ggml_row_size(ty, K);
            uint8_t * out = calloc(ROWS, rb);
            ggml_quantize_chunk(ty, x, out, 0, ROWS, K, with ? qw : NULL);
            char path[1024];
            snprintf(path, sizeof path, "%s/%s%s.bin", argv[1], ggml_type_name(ty), with ? "-imatrix" : "");
            FILE * f = fopen(path, "wb");
            if (!f) { perror(path); return 1; }
            const uint32_t hdr[3] = {ROWS, K, (uint32_t) with};
            put(f, hdr, sizeof hdr);
            put(f, x, sizeof x);
            if (with) put(f, qw, sizeof qw);
            put(f, out, ROWS * rb);
            fclose(f);
            free(out);
        }
    }
    ggml_quantize_free();
    return 0;
}
