//! Behaviour llama.cpp's own server suite checks (`scripts/llama-server-tests.sh`), each case
//! compared with what llama-server answers on the same request and model.

use serde_json::{Value, json};

use crate::client::{TestServer, config};

/// `(index, content, tokens_evaluated, prompt)` of one native answer.
fn answer(v: &Value) -> (Value, String, u64, String) {
    (
        v["index"].clone(),
        v["content"].as_str().unwrap().to_owned(),
        v["tokens_evaluated"].as_u64().unwrap(),
        v["prompt"].as_str().unwrap().to_owned(),
    )
}

/// The prompt shapes of llama-server's `tokenize_input_prompts`: a list without integers is
/// several prompts (strings, token lists, mixes, `{"prompt_string": …}` objects) answered as a
/// list, a list of one is answered as one object, and a list with an integer is one prompt whose
/// strings get the BOS only when they lead. Texts and errors are llama-server's (0.3.36 sdist,
/// SmolLM2, greedy) for the same requests.
#[test]
fn native_prompt_shapes_are_llama_servers() {
    let s = TestServer::start(config());
    let complete = |prompt: Value| {
        s.post(
            "/completion",
            &json!({ "prompt": prompt, "n_predict": 3, "temperature": 0 }),
        )
    };
    let one = complete(json!([[1, 2, 3]])).json();
    assert!(one.is_object(), "{one}");
    assert_eq!(one["content"], "_tutorial");
    assert_eq!(one["prompt"], "<|im_start|><|im_end|><repo_name>");

    let many = complete(json!([{ "prompt_string": "Hello" }, "Hello", [19556]])).json();
    let many: Vec<_> = many.as_array().unwrap().iter().map(answer).collect();
    assert_eq!(many.len(), 3);
    for (i, a) in many.iter().enumerate() {
        assert_eq!(a.0, i, "{many:?}");
        assert_eq!((a.1.as_str(), a.2, a.3.as_str()), ("-by-", 1, "Hello"));
    }

    // One sequence: a string after a token id gets no BOS (SmolLM2 has none anyway), and the
    // object's prompt may itself be a mix.
    let (_, text, n, prompt) = answer(&complete(json!([12, "Hello"])).json());
    assert_eq!(
        (text.as_str(), n, prompt.as_str()),
        (", and the", 2, "<jupyter_text>Hello")
    );
    let (_, text, n, prompt) =
        answer(&complete(json!({ "prompt_string": ["Hi", 12, "x"] })).json());
    assert_eq!(
        (text.as_str(), n, prompt.as_str()),
        ("\n", 3, "Hi<jupyter_text>x")
    );

    // llama-server without a multimodal projector refuses media; bad shapes name the shapes.
    let e = complete(json!({ "prompt_string": "Hi <__media__>", "multimodal_data": ["iVBO"] }))
        .expect_error(400, "invalid_request_error");
    assert_eq!(
        e["message"],
        "Multimodal data provided, but model does not support multimodal requests."
    );
    let shapes = "\"prompt\" elements must be a string, a list of tokens, a JSON object \
                  containing a prompt string, or a list of mixed strings & tokens.";
    for bad in [json!({ "foo": 1 }), json!([1.5]), json!([[1], {}])] {
        let e = complete(bad).expect_error(400, "invalid_request_error");
        assert_eq!(e["message"], shapes);
    }
    let e = complete(json!([])).expect_error(400, "invalid_request_error");
    assert_eq!(e["message"], "\"prompt\" must not be empty");
}
