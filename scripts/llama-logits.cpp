// llama.cpp's logits at every position of a prompt, for reference fixtures of models we cannot
// download (tiny random checkpoints converted by llama.cpp's own convert_hf_to_gguf.py).
//
// Built by scripts/llama-logits.sh against a scripts/build-llama-cpp.sh build:
//   llama-logits MODEL.gguf PROMPT OUT.f32 [N_THREADS [N_CTX]]
// PROMPT is text (tokenized by llama.cpp with its special-token rules, BOS per the model) or,
// when it starts with "ids:", comma-separated token ids. Writes the logits of every position,
// f32 little-endian, row-major [n_tokens, n_vocab], and prints the token ids on stdout.
// llama.cpp's exact attention path (flash attention off), one sequence, one batch, as the
// reference tests of hearth expect. N_CTX (default: the prompt's length, at least 64; llama.cpp
// pads it to 256) only matters where the context size changes the arithmetic (LongRoPE).
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT|ids:1,2,3 OUT.f32 [N_THREADS [N_CTX]]\n", argv[0]);
        return 2;
    }
    const int n_threads = argc > 4 ? atoi(argv[4]) : 1;
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    std::vector<llama_token> toks;
    std::string prompt = argv[2];
    if (prompt.rfind("ids:", 0) == 0) {
        const char * p = prompt.c_str() + 4;
        while (*p) {
            char * end;
            long v = strtol(p, &end, 10);
            if (end == p) { fprintf(stderr, "bad id list\n"); return 2; }
            toks.push_back((llama_token) v);
            p = *end == ',' ? end + 1 : end;
        }
    } else {
        toks.resize(prompt.size() + 16);
        int n = llama_tokenize(vocab, prompt.c_str(), (int) prompt.size(), toks.data(), (int) toks.size(), true, true);
        if (n < 0) { fprintf(stderr, "tokenize failed\n"); return 1; }
        toks.resize(n);
    }
    const int n = (int) toks.size();

    llama_context_params cp = llama_context_default_params();
    cp.n_batch = n < 64 ? 64 : n;
    cp.n_ubatch = cp.n_batch;
    cp.n_ctx = argc > 5 && atoi(argv[5]) > (int) cp.n_batch ? atoi(argv[5]) : cp.n_batch;
    cp.n_seq_max = 1;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot create context\n"); return 1; }

    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = toks[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "decode failed\n"); return 1; }

    FILE * f = fopen(argv[3], "wb");
    if (!f) { fprintf(stderr, "cannot write %s\n", argv[3]); return 1; }
    for (int i = 0; i < n; i++) {
        const float * l = llama_get_logits_ith(ctx, i);
        fwrite(l, sizeof(float), n_vocab, f);
    }
    fclose(f);
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", toks[i]);
    printf("\n");
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
