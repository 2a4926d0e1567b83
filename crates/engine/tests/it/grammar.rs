//! Constrained output on SmolLM2, against llama.cpp: greedy generation under each of
//! llama.cpp's own GBNF grammars (`fixtures/grammars/*.gbnf`, copied from its `grammars/`) and
//! under a JSON schema gives exactly the bytes llama-completion generates with the same
//! constraint (`fixtures/grammars/llama_cpp.json`, from `scripts/gen_grammar_fixtures.sh`);
//! sampled generations under a schema are JSON that validates; bad grammars are clear errors.

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use engine::grammar::{GrammarError, GrammarSource, GrammarVocab};
use engine::{Context, ContextParams, GenerateParams, Model, SamplerParams, StopReason};
use serde_json::{Value, json};

fn smollm2() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Model::load(&test_models::path(test_models::SMOLLM2)).unwrap()))
        .clone()
}

fn vocab() -> &'static GrammarVocab {
    static V: OnceLock<GrammarVocab> = OnceLock::new();
    V.get_or_init(|| {
        let t = Instant::now();
        let v = GrammarVocab::new(&smollm2().tokenizer).unwrap();
        eprintln!("GrammarVocab::new (49k tokens): {:?}", t.elapsed());
        v
    })
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grammars");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Run {
    bytes: Vec<u8>,
    text: String,
    stop: StopReason,
    n_tokens: usize,
}

fn run(src: &GrammarSource, prompt: &str, n: usize, sampler: SamplerParams) -> Run {
    let model = smollm2();
    let tok = &model.tokenizer;
    let grammar = vocab().compile(src, tok).unwrap();
    let mut ctx = Context::new(
        model.clone(),
        ContextParams {
            n_ctx: 512,
            ..ContextParams::default()
        },
    )
    .unwrap();
    let params = GenerateParams {
        max_tokens: Some(n),
        sampler: SamplerParams {
            grammar: Some(grammar),
            ..sampler
        },
        ..GenerateParams::default()
    };
    let g = engine::generate(&mut ctx, &tok.encode(prompt, true, true), &params, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let mut bytes = Vec::new();
    for &t in &g.tokens {
        bytes.extend_from_slice(&tok.token_to_piece(t, false).unwrap());
    }
    Run {
        bytes,
        text: g.text,
        stop: g.stop_reason,
        n_tokens: g.tokens.len(),
    }
}

#[test]
fn greedy_under_llama_cpp_grammars_matches_llama_cpp() {
    let cases: Vec<Value> = serde_json::from_str(&read("llama_cpp.json")).unwrap();
    assert!(cases.len() >= 9);
    let mut failed = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let src = match case.get("gbnf") {
            Some(file) => GrammarSource::Gbnf(read(file.as_str().unwrap())),
            None => GrammarSource::JsonSchema(case["json_schema"].clone()),
        };
        let n = case["n_predict"].as_u64().unwrap() as usize;
        let t0 = Instant::now();
        let r = run(
            &src,
            case["prompt"].as_str().unwrap(),
            n,
            SamplerParams::greedy(),
        );
        eprintln!("{name}: {} tokens in {:?}", r.n_tokens, t0.elapsed());
        let eog = case["eog"].as_bool().unwrap();
        if hex(&r.bytes) != case["hex"].as_str().unwrap()
            || (r.stop == StopReason::EndOfGeneration) != eog
        {
            failed.push(format!(
                "{name}: hearth gave {:?} ({:?}), llama.cpp {} (eog {eog})",
                r.text, r.stop, case["text"]
            ));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// The "person" schema's rules, checked by hand.
fn check_person(v: &Value) -> Result<(), String> {
    let o = v.as_object().ok_or("not an object")?;
    let keys: Vec<&str> = o.keys().map(String::as_str).collect();
    if keys != ["name", "age", "pet", "hobbies"] {
        return Err(format!("keys {keys:?}"));
    }
    let name = o["name"].as_str().ok_or("name is not a string")?;
    if name.chars().count() > 20 {
        return Err("name too long".into());
    }
    let age = o["age"].as_i64().ok_or("age is not an integer")?;
    if !(18..=99).contains(&age) {
        return Err(format!("age {age} out of bounds"));
    }
    if !["cat", "dog", "fish"].contains(&o["pet"].as_str().ok_or("pet is not a string")?) {
        return Err(format!("pet {} not in the enum", o["pet"]));
    }
    let h = o["hobbies"].as_array().ok_or("hobbies is not an array")?;
    if h.is_empty() || h.len() > 3 {
        return Err(format!("{} hobbies", h.len()));
    }
    for x in h {
        if x.as_str().is_none_or(|s| s.chars().count() > 16) {
            return Err(format!("hobby {x}"));
        }
    }
    Ok(())
}

#[test]
fn sampled_json_validates_against_the_schema() {
    let cases: Vec<Value> = serde_json::from_str(&read("llama_cpp.json")).unwrap();
    let person = cases.iter().find(|c| c["name"] == "person").unwrap();
    let src = GrammarSource::JsonSchema(person["json_schema"].clone());
    for seed in 1..=4 {
        let r = run(
            &src,
            "A person, as JSON:",
            200,
            SamplerParams {
                seed,
                temperature: 1.0,
                ..SamplerParams::default()
            },
        );
        assert_eq!(
            r.stop,
            StopReason::EndOfGeneration,
            "seed {seed}: {:?}",
            r.text
        );
        let v: Value = serde_json::from_str(&r.text)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {:?}", r.text));
        check_person(&v).unwrap_or_else(|e| panic!("seed {seed}: {e}: {}", r.text));
    }
}

#[test]
fn a_grammar_that_reaches_its_end_stops_generation() {
    let r = run(
        &GrammarSource::Gbnf(r#"root ::= "a"{5,5}"#.into()),
        "Does not matter what I say, does it?",
        50,
        SamplerParams::greedy(),
    );
    assert_eq!(r.text, "aaaaa");
    assert_eq!(r.stop, StopReason::EndOfGeneration);
    assert!(r.n_tokens <= 5);
    // The same through a JSON schema's `const`, and an enum.
    let r = run(
        &GrammarSource::JsonSchema(json!({"enum": ["yes", "no"]})),
        "Is the sky blue? Answer:",
        50,
        SamplerParams::greedy(),
    );
    assert!(r.text == "\"yes\"" || r.text == "\"no\"", "{:?}", r.text);
    assert_eq!(r.stop, StopReason::EndOfGeneration);
}

#[test]
fn invalid_grammars_and_schemas_are_clear_errors() {
    let tok = &smollm2().tokenizer;
    let err = |src: GrammarSource| vocab().compile(&src, tok).unwrap_err();
    let e = err(GrammarSource::Gbnf(
        "root ::= this is (not valid GBNF".into(),
    ));
    assert!(
        matches!(&e, GrammarError::Gbnf(m) if m.contains("expected ')'")),
        "{e}"
    );
    let e = err(GrammarSource::Gbnf("root ::= missing".into()));
    assert!(e.to_string().contains("`missing`"), "{e}");
    for (schema, says) in [
        (json!({"type": "hiccup"}), "hiccup"),
        (json!({"type": 123}), "type"),
        (json!(123), "123"),
        (json!({"type": "integer", "minimum": 5, "maximum": 1}), ""),
    ] {
        let e = err(GrammarSource::JsonSchema(schema.clone()));
        assert!(
            matches!(&e, GrammarError::JsonSchema(m) if m.contains(says)),
            "{schema}: {e}"
        );
    }
    // Nested repetitions are not expanded (llama.cpp refuses these; llguidance keeps them
    // compact): compiling stays quick.
    let t = Instant::now();
    let g = vocab().compile(
        &GrammarSource::Gbnf(r#"root ::= ((("ab"{2000}){2000}){2000}){2000}"#.into()),
        tok,
    );
    assert!(g.is_ok() && t.elapsed().as_secs() < 10, "{:?}", t.elapsed());
    let e = err(GrammarSource::Lark("start: foo".into()));
    assert!(
        matches!(&e, GrammarError::Lark(m) if m.contains("foo")),
        "{e}"
    );
}

/// Each of llama.cpp's grammars converts and compiles (the ones above only run some).
#[test]
fn every_llama_cpp_grammar_compiles() {
    let tok = &smollm2().tokenizer;
    for f in std::fs::read_dir(FIXTURES).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_some_and(|e| e == "gbnf") {
            let text = std::fs::read_to_string(&path).unwrap();
            vocab()
                .compile(&GrammarSource::Gbnf(text), tok)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

/// The two ways a grammar constrains a pick agree: the token the chain picks (unconstrained
/// first, masked again only on rejection, as llama.cpp) is the most likely token the mask
/// allows. Prints what a mask costs on the 49k vocabulary.
#[test]
fn rejection_and_mask_agree() {
    let model = smollm2();
    let tok = &model.tokenizer;
    let cases: Vec<Value> = serde_json::from_str(&read("llama_cpp.json")).unwrap();
    for (name, src) in [
        ("json.gbnf", GrammarSource::Gbnf(read("json.gbnf"))),
        ("c.gbnf", GrammarSource::Gbnf(read("c.gbnf"))),
        (
            "person schema",
            GrammarSource::JsonSchema(
                cases.iter().find(|c| c["name"] == "person").unwrap()["json_schema"].clone(),
            ),
        ),
    ] {
        let grammar = vocab().compile(&src, tok).unwrap();
        let mut probe = grammar.clone();
        let mut chain = SamplerParams {
            grammar: Some(grammar),
            ..SamplerParams::greedy()
        }
        .build_for(tok);
        let mut ctx = Context::new(
            model.clone(),
            ContextParams {
                n_ctx: 256,
                ..ContextParams::default()
            },
        )
        .unwrap();
        ctx.decode(&tok.encode("Some data:", true, true)).unwrap();
        let mut cands = engine::sampler::Candidates::default();
        let (mut mask_time, mut sample_time, mut n) =
            (std::time::Duration::ZERO, std::time::Duration::ZERO, 0u32);
        for _ in 0..30 {
            let logits = ctx.logits().to_vec();
            cands.fill(&logits);
            let t = Instant::now();
            probe.apply(&mut cands);
            mask_time += t.elapsed();
            n += 1;
            let best = cands
                .items
                .iter()
                .filter(|c| c.logit > f32::NEG_INFINITY)
                .max_by(|a, b| a.logit.total_cmp(&b.logit).then(b.id.cmp(&a.id)))
                .map(|c| c.id)
                .unwrap();
            let t = Instant::now();
            let id = chain.sample(&logits);
            sample_time += t.elapsed();
            assert_eq!(id, best, "{name}");
            if tok.is_eog(id) {
                break;
            }
            probe.accept(id);
            ctx.decode(&[id]).unwrap();
        }
        eprintln!(
            "{name}: mask {:?}, whole constrained pick {:?} per token over {n} tokens",
            mask_time / n,
            sample_time / n
        );
    }
}
