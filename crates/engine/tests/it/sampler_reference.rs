//! hearth's samplers against llama.cpp's on the same logits, seeds and histories
//! (`tests/fixtures/samplers/llama_cpp.json`, made by `scripts/gen_sampler_fixtures.sh` through
//! llama.cpp's `llama_sampler_*` API and its `common_sampler_init`): every case compares the
//! candidates left after the first step (order, logits, probabilities to 1e-6) and the token
//! picked at every step. DRY and whole chains use SmolLM2's vocabulary.

use std::path::PathBuf;
use std::sync::OnceLock;

use engine::sampler::{
    Candidates, Chain, Dist, Dry, DynamicTemperature, Greedy, LogitBias, MinP, Mirostat,
    MirostatMode, MirostatV2, Penalties, Sampler, SamplerParams, SamplerType, Temperature, TopK,
    TopNSigma, TopP, TypicalP, Xtc,
};
use serde_json::Value;

fn fixture() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/samplers/llama_cpp.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    })
}

/// The full-vocabulary vector the generator makes from integer arithmetic.
fn lcg(n: usize) -> Vec<f32> {
    let mut s: u32 = 2024;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let x = (s >> 8) as f32 / 16_777_216.0;
            let mut l = x * 6.0 - 3.0;
            if s & 0x3ff == 0 {
                l += 7.0;
            }
            l
        })
        .collect()
}

fn f(v: &Value) -> f32 {
    match v {
        Value::String(s) if s == "-inf" => f32::NEG_INFINITY,
        Value::String(s) if s == "inf" => f32::INFINITY,
        Value::String(s) if s == "nan" => f32::NAN,
        v => v.as_f64().unwrap() as f32,
    }
}

fn u(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

fn logits(name: &str) -> Vec<f32> {
    let fx = fixture();
    if name == "lcg" {
        return lcg(u(&fx["n_vocab"]));
    }
    fx["logits"][name]
        .as_array()
        .unwrap()
        .iter()
        .map(f)
        .collect()
}

fn history(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

fn chain_from_spec(spec: &Value) -> Chain {
    let mut chain = Chain::new();
    for s in spec.as_array().unwrap() {
        let seed = || s["seed"].as_u64().unwrap() as u32;
        match s["type"].as_str().unwrap() {
            "top_k" => chain.push(TopK(u(&s["k"]))),
            "top_p" => chain.push(TopP {
                p: f(&s["p"]),
                min_keep: u(&s["min_keep"]),
            }),
            "min_p" => chain.push(MinP {
                p: f(&s["p"]),
                min_keep: u(&s["min_keep"]),
            }),
            "typical" => chain.push(TypicalP::new(f(&s["p"]), u(&s["min_keep"]))),
            "temp" => chain.push(Temperature(f(&s["t"]))),
            "temp_ext" => chain.push(DynamicTemperature {
                temp: f(&s["t"]),
                delta: f(&s["delta"]),
                exponent: f(&s["exponent"]),
            }),
            "top_n_sigma" => chain.push(TopNSigma(f(&s["n"]))),
            "xtc" => chain.push(Xtc::new(f(&s["p"]), f(&s["t"]), u(&s["min_keep"]), seed())),
            "dist" => chain.push(Dist::new(seed())),
            "greedy" => chain.push(Greedy),
            "mirostat" => chain.push(Mirostat::new(
                Some(u(&s["n_vocab"])),
                seed(),
                f(&s["tau"]),
                f(&s["eta"]),
                u(&s["m"]),
            )),
            "mirostat_v2" => chain.push(MirostatV2::new(seed(), f(&s["tau"]), f(&s["eta"]))),
            "penalties" => chain.push(Penalties::new(
                u(&s["last_n"]),
                f(&s["repeat"]),
                f(&s["freq"]),
                f(&s["present"]),
            )),
            "dry" => {
                let breakers: Vec<String> = s["breakers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b.as_str().unwrap().to_owned())
                    .collect();
                chain.push(Dry::new(
                    smollm2_vocab(),
                    f(&s["multiplier"]),
                    f(&s["base"]),
                    u(&s["allowed_length"]),
                    u(&s["penalty_last_n"]),
                    &breakers,
                ))
            }
            "logit_bias" => chain.push(LogitBias(
                s["biases"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| (b[0].as_u64().unwrap() as u32, f(&b[1])))
                    .collect(),
            )),
            t => panic!("fixture names an unknown sampler {t}"),
        };
    }
    chain
}

fn close(a: f32, b: f32) -> bool {
    a == b || (a - b).abs() <= 1e-6 * a.abs().max(1.0) || (a.is_nan() && b.is_nan())
}

/// Compares the candidates with llama.cpp's (its first 100 and its count). Tokens with equal
/// logits may come in another order (llama.cpp's sorts leave ties unspecified).
fn check_candidates(case: &str, got: &Candidates, want: &Value) {
    let n = u(&want["n"]);
    assert_eq!(got.items.len(), n, "{case}: number of candidates");
    let want: Vec<(u32, f32, f32)> = want["cands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_u64().unwrap() as u32, f(&c[1]), f(&c[2])))
        .collect();
    let mut i = 0;
    while i < want.len() {
        // A run of equal logits.
        let mut j = i + 1;
        while j < want.len() && want[j].1 == want[i].1 {
            j += 1;
        }
        let truncated = j == want.len() && want.len() < n;
        for k in i..j {
            let g = got.items[k];
            let w = if truncated || j - i == 1 {
                want[k]
            } else {
                *want[i..j]
                    .iter()
                    .find(|w| w.0 == g.id)
                    .unwrap_or_else(|| panic!("{case}: token {} at {k} is not llama.cpp's", g.id))
            };
            if !truncated {
                assert_eq!(g.id, w.0, "{case}: token at {k}");
            }
            assert!(
                close(g.logit, w.1),
                "{case}: logit of token {} at {k}: {} vs llama.cpp {}",
                g.id,
                g.logit,
                w.1
            );
            assert!(
                (g.p - w.2).abs() <= 1e-6 || (g.p.is_nan() && w.2.is_nan()),
                "{case}: p of token {} at {k}: {} vs llama.cpp {}",
                g.id,
                g.p,
                w.2
            );
        }
        i = j;
    }
}

fn check_changed(case: &str, input: &[f32], got: &Candidates, want: &Value) {
    let got: Vec<(u32, f32)> = got
        .items
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            assert_eq!(c.id as usize, *i, "{case}: candidates reordered");
            c.logit != input[*i]
        })
        .map(|(_, c)| (c.id, c.logit))
        .collect();
    let want: Vec<(u32, f32)> = want["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_u64().unwrap() as u32, f(&c[1])))
        .collect();
    assert_eq!(
        got.iter().map(|c| c.0).collect::<Vec<_>>(),
        want.iter().map(|c| c.0).collect::<Vec<_>>(),
        "{case}: penalized tokens"
    );
    for (g, w) in got.iter().zip(&want) {
        assert!(close(g.1, w.1), "{case}: token {}: {} vs {}", g.0, g.1, w.1);
    }
}

#[test]
fn the_full_vocabulary_vector_is_the_generators() {
    let fx = fixture();
    let l = logits("lcg");
    assert_eq!(l.len(), smollm2_vocab().n_vocab());
    let sum: f64 = l.iter().map(|&x| f64::from(x)).sum();
    let want = fx["lcg_check"]["sum"].as_f64().unwrap();
    assert!((sum - want).abs() <= 1e-9 * want.abs(), "{sum} vs {want}");
    assert_eq!(l[7], f(&fx["lcg_check"]["l7"]));
    assert_eq!(l[1000], f(&fx["lcg_check"]["l1000"]));
}

#[test]
fn each_sampler_matches_llama_cpp() {
    let cases = fixture()["cases"].as_array().unwrap();
    assert!(cases.len() > 80, "only {} cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let input = logits(case["logits"].as_str().unwrap());
        let mut chain = chain_from_spec(&case["chain"]);
        for t in history(&case["history"]) {
            chain.accept(t);
        }
        let mut cands = Candidates::default();
        for (step, want) in case["out"].as_array().unwrap().iter().enumerate() {
            cands.fill(&input);
            chain.apply(&mut cands);
            let got = cands.selected_id();
            let want_sel = want["selected"].as_u64().map(|s| s as u32);
            assert_eq!(got, want_sel, "{name}: pick at step {step}");
            if step == 0 {
                if want.get("changed").is_some() {
                    check_changed(name, &input, &cands, want);
                } else {
                    check_candidates(name, &cands, want);
                }
            }
            if let Some(id) = got {
                chain.accept(id);
            }
        }
    }
}

fn params_from(json: &Value, seed: u64) -> SamplerParams {
    let mut p = SamplerParams {
        seed,
        ..SamplerParams::default()
    };
    for (k, v) in json.as_object().unwrap() {
        match k.as_str() {
            "temperature" => p.temperature = f(v),
            "top_k" => p.top_k = u(v),
            "top_p" => p.top_p = f(v),
            "min_p" => p.min_p = f(v),
            "typical_p" => p.typical_p = f(v),
            "min_keep" => p.min_keep = u(v),
            "top_n_sigma" => p.top_n_sigma = f(v),
            "xtc_probability" => p.xtc_probability = f(v),
            "xtc_threshold" => p.xtc_threshold = f(v),
            "dynatemp_range" => p.dynatemp_range = f(v),
            "repeat_penalty" => p.repeat_penalty = f(v),
            "frequency_penalty" => p.frequency_penalty = f(v),
            "presence_penalty" => p.presence_penalty = f(v),
            "dry_multiplier" => p.dry_multiplier = f(v),
            "mirostat" => p.mirostat = MirostatMode::from_number(v.as_i64().unwrap()).unwrap(),
            "mirostat_tau" => p.mirostat_tau = f(v),
            "mirostat_eta" => p.mirostat_eta = f(v),
            "ignore_eos" => p.ignore_eos = v.as_bool().unwrap(),
            "samplers" => p.samplers = SamplerType::parse_list(v.as_str().unwrap()).unwrap(),
            "logit_bias" => {
                p.logit_bias = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| (b[0].as_u64().unwrap() as u32, f(&b[1])))
                    .collect()
            }
            k => panic!("fixture sets an unknown parameter {k}"),
        }
    }
    p
}

#[test]
fn whole_chains_match_llama_cpps_common_sampler() {
    let vocab = smollm2_vocab();
    let input = logits("lcg");
    let cases = fixture()["common"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let params = params_from(&case["params"], case["seed"].as_u64().unwrap());
        let mut chain = params.build_for(vocab);
        for t in history(&case["history"]) {
            chain.accept(t);
        }
        for (step, want) in case["out"].as_array().unwrap().iter().enumerate() {
            let got = chain.sample(&input);
            assert_eq!(
                Some(got),
                want["selected"].as_u64().map(|s| s as u32),
                "{name}: pick at step {step}"
            );
            if step == 0 {
                check_candidates(name, chain.last_candidates(), want);
            }
        }
    }
}

/// SmolLM2's vocabulary, loaded once.
fn smollm2_vocab() -> &'static engine::tokenizer::Tokenizer {
    static T: OnceLock<engine::tokenizer::Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let bytes = test_models::read(test_models::SMOLLM2);
        let g = gguf::Gguf::parse(&bytes).unwrap();
        engine::tokenizer::Tokenizer::from_gguf(&g).unwrap()
    })
}
