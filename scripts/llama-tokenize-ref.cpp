// llama.cpp's tokenizer and detokenizer on the texts of a conformance `.inp` file, as JSON, for
// the tokenizer fixtures of vocabularies whose `.out` files cover only plain encoding.
//
// Built and run by scripts/llama-tokenize-ref.sh against a scripts/build-llama-cpp.sh build:
//   llama-tokenize-ref VOCAB.gguf TEXTS.inp > OUT.json
// For each text (split as test-tokenizer-0 splits `.inp` files): its ids with add_special and
// parse_special on, and llama_detokenize of those ids (remove_special off) with unparse_special
// on and off.
#include "llama.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static void json_str(const std::string & s) {
    putchar('"');
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

static std::string detok(const llama_vocab * vocab, const std::vector<llama_token> & ids, bool special) {
    std::string out(ids.size() * 16 + 16, '\0');
    int n = llama_detokenize(vocab, ids.data(), (int) ids.size(), out.data(), (int) out.size(), false, special);
    if (n < 0) {
        out.resize(-n);
        n = llama_detokenize(vocab, ids.data(), (int) ids.size(), out.data(), (int) out.size(), false, special);
    }
    out.resize(n);
    return out;
}

int main(int argc, char ** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s VOCAB.gguf TEXTS.inp\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);

    std::ifstream f(argv[2], std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string raw = ss.str();
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    size_t pos = 0;
    while (pos < raw.size()) {
        const size_t next = raw.find(sep, pos);
        if (next == std::string::npos) { texts.push_back(raw.substr(pos)); break; }
        texts.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
    }

    printf("{\"vocab\": ");
    json_str(argv[1]);
    printf(", \"reference\": \"llama.cpp\", \"cases\": [\n");
    for (size_t i = 0; i < texts.size(); i++) {
        const std::string & t = texts[i];
        std::vector<llama_token> ids(t.size() + 16);
        int n = llama_tokenize(vocab, t.c_str(), (int) t.size(), ids.data(), (int) ids.size(), true, true);
        if (n < 0) { ids.resize(-n); n = llama_tokenize(vocab, t.c_str(), (int) t.size(), ids.data(), (int) ids.size(), true, true); }
        ids.resize(n);
        printf("{\"text\": ");
        json_str(t);
        printf(", \"ids\": [");
        for (int j = 0; j < n; j++) printf(j ? ",%d" : "%d", ids[j]);
        printf("], \"detok_special\": ");
        json_str(detok(vocab, ids, true));
        printf(", \"detok\": ");
        json_str(detok(vocab, ids, false));
        printf("}%s\n", i + 1 < texts.size() ? "," : "");
    }
    printf("]}\n");
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
