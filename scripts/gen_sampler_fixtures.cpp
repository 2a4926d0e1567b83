// Reference fixtures for hearth's sampler chain, made by llama.cpp's own `llama_sampler_*` API
// (and `common_sampler_init` for whole chains): for fixed logit vectors, seeds and histories,
// the candidates each sampler leaves and the tokens it picks.
//
// Built and run by scripts/gen_sampler_fixtures.sh against a scripts/build-llama-cpp.sh build:
//   gen_sampler_fixtures MODEL.gguf > crates/engine/tests/fixtures/samplers/llama_cpp.json
// MODEL.gguf is SmolLM2-135M-Instruct (its vocabulary only: DRY's sequence breakers, EOG tokens).
#include "llama.h"
#include "sampling.h"
#include "common.h"

#include <cmath>
#include <cstdint>
#include <array>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

static std::string num(double v) {
    if (std::isinf(v)) {
        return v < 0 ? "\"-inf\"" : "\"inf\"";
    }
    if (std::isnan(v)) {
        return "\"nan\"";
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

static std::string jstr(const std::string & s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') { o += '\\'; o += (char) c; }
        else if (c == '\n') { o += "\\n"; }
        else if (c < 0x20) { char b[8]; snprintf(b, sizeof b, "\\u%04x", c); o += b; }
        else { o += (char) c; }
    }
    return o + "\"";
}

// --- logit vectors ---------------------------------------------------------------------------

static std::vector<float> v64() {
    std::vector<float> l(64);
    for (int i = 0; i < 64; i++) l[i] = 3.0f * sinf(0.7f * i + 0.3f) + 0.02f * i;
    return l;
}

static std::vector<float> flat64() {
    std::vector<float> l(64);
    for (int i = 0; i < 64; i++) l[i] = 0.05f * sinf(1.3f * i) + (i % 5) * 0.001f + i * 1e-5f;
    return l;
}

// Zipf-like: a few likely tokens and a long tail, ranks shuffled over the ids.
static std::vector<float> zipf1500() {
    const int n = 1500;
    std::vector<int> rank(n);
    for (int i = 0; i < n; i++) rank[i] = i;
    uint32_t s = 12345;
    for (int i = n - 1; i > 0; i--) {
        s = s * 1664525u + 1013904223u;
        int j = (int) ((s >> 8) % (uint32_t) (i + 1));
        std::swap(rank[i], rank[j]);
    }
    std::vector<float> l(n);
    for (int i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        float noise = (float) (s >> 8) / 16777216.0f;
        l[i] = 12.0f - 1.1f * logf(1.0f + rank[i]) + 0.3f * noise;
    }
    return l;
}

// The full SmolLM2 vocabulary's worth, from integer arithmetic only (the Rust test makes the
// same vector): uniform in [-3, 3) plus 7 on about one id in 1024.
static std::vector<float> lcg(int n) {
    std::vector<float> l(n);
    uint32_t s = 2024;
    for (int i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        float x = (float) (s >> 8) / 16777216.0f;
        l[i] = x * 6.0f - 3.0f;
        if ((s & 0x3ff) == 0) l[i] += 7.0f;
    }
    return l;
}

// --- recording -------------------------------------------------------------------------------

struct Case {
    std::string name;
    std::string logits;            // name of the logit vector
    std::string chain_json;        // the spec, as the Rust test reads it
    std::vector<llama_token> history;
    int steps = 1;
    bool changed = false;          // record changed logits (id order) instead of candidates
    std::function<llama_sampler *()> make;
};

static std::string run_case(const Case & c, const std::vector<float> & logits) {
    llama_sampler * chain = c.make();
    for (llama_token t : c.history) llama_sampler_accept(chain, t);
    std::string out = "[";
    std::vector<llama_token_data> cur(logits.size());
    for (int step = 0; step < c.steps; step++) {
        for (size_t i = 0; i < logits.size(); i++) cur[i] = { (llama_token) i, logits[i], 0.0f };
        llama_token_data_array arr = { cur.data(), cur.size(), -1, false };
        llama_sampler_apply(chain, &arr);
        if (step) out += ",";
        out += "{\"selected\":";
        out += arr.selected >= 0 ? std::to_string(arr.data[arr.selected].id) : "null";
        out += ",\"n\":" + std::to_string(arr.size);
        if (step == 0) {
            if (c.changed) {
                out += ",\"changed\":[";
                bool first = true;
                for (size_t i = 0; i < arr.size; i++) {
                    if (arr.data[i].id != (llama_token) i) { fprintf(stderr, "%s: reordered\n", c.name.c_str()); exit(1); }
                    if (arr.data[i].logit != logits[i]) {
                        if (!first) out += ",";
                        first = false;
                        out += "[" + std::to_string(arr.data[i].id) + "," + num(arr.data[i].logit) + "]";
                    }
                }
                out += "]";
            } else {
                out += ",\"cands\":[";
                for (size_t i = 0; i < arr.size && i < 100; i++) {
                    if (i) out += ",";
                    out += "[" + std::to_string(arr.data[i].id) + "," + num(arr.data[i].logit) + "," + num(arr.data[i].p) + "]";
                }
                out += "]";
            }
        }
        out += "}";
        if (arr.selected >= 0) llama_sampler_accept(chain, arr.data[arr.selected].id);
    }
    llama_sampler_free(chain);
    return out + "]";
}

static llama_sampler * chain_of(std::vector<llama_sampler *> v) {
    llama_sampler * c = llama_sampler_chain_init(llama_sampler_chain_default_params());
    for (auto * s : v) llama_sampler_chain_add(c, s);
    return c;
}

int main(int argc, char ** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SmolLM2.gguf\n", argv[0]);
        return 1;
    }
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    auto tok = [&](const std::string & text) {
        std::vector<llama_token> ids(text.size() + 8);
        int n = llama_tokenize(vocab, text.c_str(), (int) text.size(), ids.data(), (int) ids.size(), false, false);
        ids.resize(n);
        return ids;
    };

    std::vector<std::pair<std::string, std::vector<float>>> vectors = {
        { "v64", v64() }, { "flat64", flat64() }, { "zipf1500", zipf1500() }, { "lcg", lcg(n_vocab) },
    };
    auto vec = [&](const std::string & name) -> const std::vector<float> & {
        for (auto & v : vectors) if (v.first == name) return v.second;
        fprintf(stderr, "no vector %s\n", name.c_str());
        exit(1);
    };

    std::vector<Case> cases;
    auto add = [&](std::string name, std::string logits, std::string spec, std::function<llama_sampler *()> make,
                   int steps = 1, std::vector<llama_token> history = {}, bool changed = false) {
        Case c;
        c.name = name; c.logits = logits; c.chain_json = spec; c.make = make; c.steps = steps;
        c.history = history; c.changed = changed;
        cases.push_back(c);
    };

    // One sampler at a time, applied once.
    for (const char * v : { "v64", "zipf1500" }) {
        std::string V = v;
        for (int k : { 1, 5, 40, 0 }) {
            add("top_k " + std::to_string(k) + " " + V, V, "[{\"type\":\"top_k\",\"k\":" + std::to_string(k) + "}]",
                [=] { return chain_of({ llama_sampler_init_top_k(k) }); });
        }
        for (auto pk : std::vector<std::pair<float, int>>{ { 0.5f, 0 }, { 0.9f, 0 }, { 0.95f, 3 }, { 0.2f, 7 } }) {
            add("top_p " + num(pk.first) + " min_keep " + std::to_string(pk.second) + " " + V, V,
                "[{\"type\":\"top_p\",\"p\":" + num(pk.first) + ",\"min_keep\":" + std::to_string(pk.second) + "}]",
                [=] { return chain_of({ llama_sampler_init_top_p(pk.first, pk.second) }); });
        }
        for (auto pk : std::vector<std::pair<float, int>>{ { 0.05f, 0 }, { 0.2f, 1 }, { 0.5f, 10 } }) {
            add("min_p " + num(pk.first) + " min_keep " + std::to_string(pk.second) + " " + V, V,
                "[{\"type\":\"min_p\",\"p\":" + num(pk.first) + ",\"min_keep\":" + std::to_string(pk.second) + "}]",
                [=] { return chain_of({ llama_sampler_init_min_p(pk.first, pk.second) }); });
        }
        for (auto pk : std::vector<std::pair<float, int>>{ { 0.5f, 0 }, { 0.9f, 1 }, { 0.2f, 5 } }) {
            add("typical " + num(pk.first) + " min_keep " + std::to_string(pk.second) + " " + V, V,
                "[{\"type\":\"typical\",\"p\":" + num(pk.first) + ",\"min_keep\":" + std::to_string(pk.second) + "}]",
                [=] { return chain_of({ llama_sampler_init_typical(pk.first, pk.second) }); });
        }
        for (float t : { 0.7f, 0.0f, 1.5f }) {
            add("temp " + num(t) + " " + V, V, "[{\"type\":\"temp\",\"t\":" + num(t) + "}]",
                [=] { return chain_of({ llama_sampler_init_temp(t) }); });
        }
        for (auto te : std::vector<std::array<float, 3>>{ { 0.8f, 0.5f, 1.0f }, { 1.0f, 0.9f, 2.0f }, { 0.3f, 0.6f, 0.5f } }) {
            add("temp_ext " + num(te[0]) + " " + num(te[1]) + " " + num(te[2]) + " " + V, V,
                "[{\"type\":\"temp_ext\",\"t\":" + num(te[0]) + ",\"delta\":" + num(te[1]) + ",\"exponent\":" + num(te[2]) + "}]",
                [=] { return chain_of({ llama_sampler_init_temp_ext(te[0], te[1], te[2]) }); });
        }
        for (float n : { 0.5f, 1.0f, 2.0f }) {
            add("top_n_sigma " + num(n) + " " + V, V, "[{\"type\":\"top_n_sigma\",\"n\":" + num(n) + "}]",
                [=] { return chain_of({ llama_sampler_init_top_n_sigma(n) }); });
        }
        // XTC fires with probability p: several steps show the generator's draws (a dist picks).
        for (auto x : std::vector<std::array<float, 3>>{ { 1.0f, 0.1f, 0 }, { 0.5f, 0.02f, 0 }, { 1.0f, 0.01f, 20 } }) {
            std::string spec = "[{\"type\":\"xtc\",\"p\":" + num(x[0]) + ",\"t\":" + num(x[1]) + ",\"min_keep\":" +
                               std::to_string((int) x[2]) + ",\"seed\":7},{\"type\":\"dist\",\"seed\":11}]";
            add("xtc " + num(x[0]) + " " + num(x[1]) + " min_keep " + std::to_string((int) x[2]) + " " + V, V, spec,
                [=] { return chain_of({ llama_sampler_init_xtc(x[0], x[1], (size_t) x[2], 7), llama_sampler_init_dist(11) }); },
                24);
        }
    }
    add("top_n_sigma flat64", "flat64", "[{\"type\":\"top_n_sigma\",\"n\":1}]",
        [] { return chain_of({ llama_sampler_init_top_n_sigma(1.0f) }); });
    add("temp_ext flat64", "flat64", "[{\"type\":\"temp_ext\",\"t\":0.8,\"delta\":0.5,\"exponent\":1}]",
        [] { return chain_of({ llama_sampler_init_temp_ext(0.8f, 0.5f, 1.0f) }); });
    add("typical flat64", "flat64", "[{\"type\":\"typical\",\"p\":0.5,\"min_keep\":0}]",
        [] { return chain_of({ llama_sampler_init_typical(0.5f, 0) }); });

    // The random pick, in whatever order the candidates are: sorted (after top-k) or not.
    for (uint32_t seed : { 0u, 1u, 42u, 4294967294u }) {
        add("dist seed " + std::to_string(seed) + " v64", "v64",
            "[{\"type\":\"dist\",\"seed\":" + std::to_string(seed) + "}]",
            [=] { return chain_of({ llama_sampler_init_dist(seed) }); }, 64);
    }
    add("dist flat64", "flat64", "[{\"type\":\"dist\",\"seed\":3}]",
        [] { return chain_of({ llama_sampler_init_dist(3) }); }, 64);
    add("min_p unsorted then dist zipf1500", "zipf1500",
        "[{\"type\":\"min_p\",\"p\":0.02,\"min_keep\":0},{\"type\":\"temp\",\"t\":1.3},{\"type\":\"dist\",\"seed\":5}]",
        [] { return chain_of({ llama_sampler_init_min_p(0.02f, 0), llama_sampler_init_temp(1.3f), llama_sampler_init_dist(5) }); }, 48);
    add("llama.cpp default chain zipf1500", "zipf1500",
        "[{\"type\":\"top_k\",\"k\":40},{\"type\":\"typical\",\"p\":1,\"min_keep\":0},{\"type\":\"top_p\",\"p\":0.95,\"min_keep\":0},"
        "{\"type\":\"min_p\",\"p\":0.05,\"min_keep\":0},{\"type\":\"temp_ext\",\"t\":0.8,\"delta\":0,\"exponent\":1},{\"type\":\"dist\",\"seed\":42}]",
        [] { return chain_of({ llama_sampler_init_top_k(40), llama_sampler_init_typical(1.0f, 0), llama_sampler_init_top_p(0.95f, 0),
                               llama_sampler_init_min_p(0.05f, 0), llama_sampler_init_temp_ext(0.8f, 0.0f, 1.0f), llama_sampler_init_dist(42) }); }, 64);
    add("temp 0 then dist v64", "v64", "[{\"type\":\"temp\",\"t\":0},{\"type\":\"dist\",\"seed\":9}]",
        [] { return chain_of({ llama_sampler_init_temp(0.0f), llama_sampler_init_dist(9) }); }, 8);
    add("greedy v64", "v64", "[{\"type\":\"greedy\"}]", [] { return chain_of({ llama_sampler_init_greedy() }); });

    // Mirostat 1 and 2: mu adapts step by step.
    for (auto v : { "v64", "zipf1500" }) {
        std::string V = v;
        int nv = (int) vec(V).size();
        add("mirostat " + V, V,
            "[{\"type\":\"temp\",\"t\":0.8},{\"type\":\"mirostat\",\"n_vocab\":" + std::to_string(nv) + ",\"seed\":3,\"tau\":5,\"eta\":0.1,\"m\":100}]",
            [=] { return chain_of({ llama_sampler_init_temp(0.8f), llama_sampler_init_mirostat(nv, 3, 5.0f, 0.1f, 100) }); }, 40);
        add("mirostat tau 2 " + V, V,
            "[{\"type\":\"mirostat\",\"n_vocab\":" + std::to_string(nv) + ",\"seed\":8,\"tau\":2,\"eta\":0.3,\"m\":100}]",
            [=] { return chain_of({ llama_sampler_init_mirostat(nv, 8, 2.0f, 0.3f, 100) }); }, 40);
        add("mirostat_v2 " + V, V,
            "[{\"type\":\"temp\",\"t\":0.8},{\"type\":\"mirostat_v2\",\"seed\":3,\"tau\":5,\"eta\":0.1}]",
            [=] { return chain_of({ llama_sampler_init_temp(0.8f), llama_sampler_init_mirostat_v2(3, 5.0f, 0.1f) }); }, 40);
        add("mirostat_v2 tau 1.5 " + V, V,
            "[{\"type\":\"mirostat_v2\",\"seed\":12,\"tau\":1.5,\"eta\":0.5}]",
            [=] { return chain_of({ llama_sampler_init_mirostat_v2(12, 1.5f, 0.5f) }); }, 40);
    }

    // Penalties over a history.
    {
        std::vector<llama_token> hist = { 3, 5, 5, 9, 3, 5, 60, 61, 3, 12 };
        add("penalties v64", "v64",
            "[{\"type\":\"penalties\",\"last_n\":64,\"repeat\":1.3,\"freq\":0.2,\"present\":0.5}]",
            [] { return chain_of({ llama_sampler_init_penalties(64, 64, 1.3f, 0.2f, 0.5f) }); }, 1, hist);
        add("penalties last_n 4 v64", "v64",
            "[{\"type\":\"penalties\",\"last_n\":4,\"repeat\":2,\"freq\":0,\"present\":0}]",
            [] { return chain_of({ llama_sampler_init_penalties(64, 4, 2.0f, 0.0f, 0.0f) }); }, 1, hist);
    }

    // DRY with SmolLM2's vocabulary: histories with repeats, cut by breakers.
    {
        auto h1 = tok("The cat sat on the mat. The cat sat on the mat. The cat sat on the");
        auto h2 = tok("Name: Alice\nName: Bob\nName: Alice\nName:");
        auto h3 = tok("one two three four one two three four one two three four one two");
        auto h4 = tok("a \"quoted\" a \"quoted\" a *bold* a *bold* a");
        struct D { std::string name; std::vector<llama_token> hist; float mult, base; int allowed, last_n; std::vector<std::string> br; };
        std::vector<D> ds = {
            { "dry cats", h1, 0.8f, 1.75f, 2, 64, { "\n", ":", "\"", "*" } },
            { "dry names default breakers", h2, 0.8f, 1.75f, 2, 64, { "\n", ":", "\"", "*" } },
            { "dry names no breakers", h2, 0.8f, 1.75f, 2, 64, {} },
            { "dry counting base 2 allowed 3", h3, 1.5f, 2.0f, 3, 64, { "\n" } },
            { "dry counting last_n 10", h3, 0.8f, 1.75f, 2, 10, { "\n" } },
            { "dry counting multi-token breaker", h3, 0.8f, 1.75f, 2, 64, { " three four" } },
            { "dry quotes", h4, 0.8f, 1.75f, 1, 64, { "\"", "*" } },
            { "dry quotes word breaker", h4, 1.0f, 1.1f, 2, 64, { "quoted", "bo" } },
            { "dry huge base", h3, 1.0f, 50.0f, 0, 64, { "\n" } },
        };
        for (auto & d : ds) {
            std::string spec = "[{\"type\":\"dry\",\"multiplier\":" + num(d.mult) + ",\"base\":" + num(d.base) +
                               ",\"allowed_length\":" + std::to_string(d.allowed) + ",\"penalty_last_n\":" +
                               std::to_string(d.last_n) + ",\"breakers\":[";
            for (size_t i = 0; i < d.br.size(); i++) spec += (i ? "," : "") + jstr(d.br[i]);
            spec += "]}]";
            add(d.name, "lcg", spec, [=] {
                std::vector<const char *> c;
                for (auto & s : d.br) c.push_back(s.c_str());
                return chain_of({ llama_sampler_init_dry(vocab, d.mult, d.base, d.allowed, d.last_n, c.data(), c.size()) });
            }, 1, d.hist, true);
        }
    }

    // Whole chains as llama.cpp's common_sampler_init builds them (the settings llama-server
    // and llama-cli take), on the full vocabulary, over several steps.
    struct P { std::string name; std::string json; std::vector<llama_token> hist; std::function<void(common_params_sampling &)> set; };
    auto h_cats = tok("The cat sat on the mat. The cat sat on the mat. The cat sat on the");
    std::vector<P> ps = {
        { "common defaults", "{}", {}, [](common_params_sampling &) {} },
        { "common greedy", "{\"temperature\":0}", {}, [](common_params_sampling & p) { p.temp = 0.0f; } },
        { "common penalties and dry", "{\"repeat_penalty\":1.2,\"frequency_penalty\":0.1,\"presence_penalty\":0.3,\"dry_multiplier\":0.8}", h_cats,
          [](common_params_sampling & p) { p.penalty_repeat = 1.2f; p.penalty_freq = 0.1f; p.penalty_present = 0.3f; p.dry_multiplier = 0.8f; } },
        { "common xtc dynatemp top_n_sigma", "{\"xtc_probability\":0.6,\"xtc_threshold\":0.05,\"dynatemp_range\":0.4,\"top_n_sigma\":2,\"top_k\":0,\"min_keep\":2}", {},
          [](common_params_sampling & p) { p.xtc_probability = 0.6f; p.xtc_threshold = 0.05f; p.dynatemp_range = 0.4f; p.top_n_sigma = 2.0f; p.top_k = 0; p.min_keep = 2; } },
        { "common samplers order", "{\"samplers\":\"temperature;top_p;top_k\",\"top_p\":0.8,\"temperature\":1.2}", {},
          [](common_params_sampling & p) { p.samplers = common_sampler_types_from_names({ "temperature", "top_p", "top_k" }); p.top_p = 0.8f; p.temp = 1.2f; } },
        { "common typical", "{\"typical_p\":0.7,\"min_p\":0}", {}, [](common_params_sampling & p) { p.typ_p = 0.7f; p.min_p = 0.0f; } },
        { "common mirostat 1", "{\"mirostat\":1}", {}, [](common_params_sampling & p) { p.mirostat = 1; } },
        { "common mirostat 2", "{\"mirostat\":2,\"mirostat_tau\":3,\"mirostat_eta\":0.2}", {},
          [](common_params_sampling & p) { p.mirostat = 2; p.mirostat_tau = 3.0f; p.mirostat_eta = 0.2f; } },
        { "common ignore_eos", "{\"ignore_eos\":true,\"logit_bias\":[[2,30]]}", {},
          [&](common_params_sampling & p) {
              p.logit_bias.push_back({ 2, 30.0f });
              for (llama_token i = 0; i < n_vocab; i++) if (llama_vocab_is_eog(vocab, i)) p.logit_bias.push_back({ i, -INFINITY });
          } },
        { "common logit_bias", "{\"logit_bias\":[[2,30],[100,-5]],\"temperature\":0.5}", {},
          [](common_params_sampling & p) { p.logit_bias.push_back({ 2, 30.0f }); p.logit_bias.push_back({ 100, -5.0f }); p.temp = 0.5f; } },
    };
    std::string common_out;
    for (auto & p : ps) {
        common_params_sampling sp;
        sp.seed = 1234;
        p.set(sp);
        common_sampler * gs = common_sampler_init(model, sp);
        llama_sampler * chain = common_sampler_get(gs);
        for (llama_token t : p.hist) common_sampler_accept(gs, t, false);
        const auto & logits = vec("lcg");
        std::vector<llama_token_data> cur(logits.size());
        std::string out = "[";
        for (int step = 0; step < 48; step++) {
            for (size_t i = 0; i < logits.size(); i++) cur[i] = { (llama_token) i, logits[i], 0.0f };
            llama_token_data_array arr = { cur.data(), cur.size(), -1, false };
            llama_sampler_apply(chain, &arr);
            llama_token id = arr.data[arr.selected].id;
            if (step) out += ",";
            out += "{\"selected\":" + std::to_string(id) + ",\"n\":" + std::to_string(arr.size);
            if (step == 0) {
                out += ",\"cands\":[";
                for (size_t i = 0; i < arr.size && i < 100; i++) {
                    if (i) out += ",";
                    out += "[" + std::to_string(arr.data[i].id) + "," + num(arr.data[i].logit) + "," + num(arr.data[i].p) + "]";
                }
                out += "]";
            }
            out += "}";
            common_sampler_accept(gs, id, true);
        }
        out += "]";
        common_sampler_free(gs);
        if (!common_out.empty()) common_out += ",\n";
        common_out += "{\"name\":" + jstr(p.name) + ",\"params\":" + p.json + ",\"seed\":1234,\"history\":[";
        for (size_t i = 0; i < p.hist.size(); i++) common_out += (i ? "," : "") + std::to_string(p.hist[i]);
        common_out += "],\"out\":" + out + "}";
    }

    // --- write -------------------------------------------------------------------------------
    printf("{\n\"generator\":\"scripts/gen_sampler_fixtures.cpp (llama.cpp from llama-cpp-python 0.3.36)\",\n");
    printf("\"n_vocab\":%d,\n\"logits\":{", n_vocab);
    bool first = true;
    for (auto & v : vectors) {
        if (v.first == "lcg") continue;
        printf("%s\n\"%s\":[", first ? "" : ",", v.first.c_str());
        first = false;
        for (size_t i = 0; i < v.second.size(); i++) printf("%s%s", i ? "," : "", num(v.second[i]).c_str());
        printf("]");
    }
    {
        const auto & l = vec("lcg");
        double sum = 0;
        for (float x : l) sum += x;
        printf("},\n\"lcg_check\":{\"sum\":%.17g,\"l7\":%s,\"l1000\":%s},\n\"cases\":[\n", sum, num(l[7]).c_str(), num(l[1000]).c_str());
    }
    for (size_t i = 0; i < cases.size(); i++) {
        const auto & c = cases[i];
        std::string h = "[";
        for (size_t j = 0; j < c.history.size(); j++) h += (j ? "," : "") + std::to_string(c.history[j]);
        h += "]";
        printf("%s{\"name\":%s,\"logits\":\"%s\",\"history\":%s,\"chain\":%s,\"out\":%s}", i ? ",\n" : "",
               jstr(c.name).c_str(), c.logits.c_str(), h.c_str(), c.chain_json.c_str(), run_case(c, vec(c.logits)).c_str());
    }
    printf("\n],\n\"common\":[\n%s\n]\n}\n", common_out.c_str());

    llama_model_free(model);
    return 0;
}
