//! Templates of the real test models: SmolLM2's ChatML template read from its GGUF file, and
//! the built-in Gemma template the Gemma 3 file (which has none) falls back to.

use std::path::PathBuf;

use serde_json::Value as Json;
use text::chat_template::{
    ChatTemplate, DateTime, Message, RenderRequest, TemplateError, TemplateOrigin, special_tokens,
};

fn request<'a>(messages: &'a [Message], bos: &'a str, eos: &'a str) -> RenderRequest<'a> {
    RenderRequest {
        messages,
        add_generation_prompt: true,
        bos_token: bos,
        eos_token: eos,
        now: Some(DateTime::from_unix_seconds(0)),
        ..RenderRequest::default()
    }
}

#[test]
fn smollm2_template_from_the_model_file_is_chatml() {
    let bytes = test_models::read(test_models::SMOLLM2);
    let file = gguf::Gguf::parse(&bytes).unwrap();
    let (template, origin) = ChatTemplate::from_gguf(&file, false).unwrap();
    assert_eq!(origin, TemplateOrigin::File);
    let tokens = special_tokens(&file);
    assert_eq!(tokens.bos.as_deref(), Some("<|im_start|>"));
    assert_eq!(tokens.eos.as_deref(), Some("<|im_end|>"));
    let (bos, eos) = (tokens.bos.unwrap(), tokens.eos.unwrap());

    // The prompt of llama.cpp's `chat-capital` case in shared/fixtures/smollm2/generate.json.
    let messages = [Message::new("user", "What is the capital of France?")];
    assert_eq!(
        template.render(&request(&messages, &bos, &eos)).unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    // A system message of one's own replaces the default; no generation prompt after a reply.
    let messages = [
        Message::new("system", "Be brief."),
        Message::new("user", "Hi"),
        Message::new("assistant", "Hello."),
    ];
    let mut req = request(&messages, &bos, &eos);
    req.add_generation_prompt = false;
    assert_eq!(
        template.render(&req).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nHello.<|im_end|>\n"
    );
}

#[test]
fn gemma3_file_without_template_gets_the_gemma_builtin() {
    let bytes = test_models::read(test_models::GEMMA3);
    let file = gguf::Gguf::parse(&bytes).unwrap();
    let (template, origin) = ChatTemplate::from_gguf(&file, false).unwrap();
    assert_eq!(origin, TemplateOrigin::Builtin("gemma"));
    let tokens = special_tokens(&file);
    assert_eq!(tokens.bos.as_deref(), Some("<bos>"));
    assert_eq!(tokens.eos.as_deref(), Some("<eos>"));

    let messages = [Message::new("user", "What is the capital of France?")];
    let prompt = template
        .render(&request(&messages, "<bos>", "<eos>"))
        .unwrap();
    // Gemma 3's official template prints the BOS text first; llama.cpp's `chat-capital` prompt
    // (shared/fixtures/gemma3/generate.json) is the rest, its BOS being added as a token.
    assert_eq!(
        prompt,
        "<bos><start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n\
         <start_of_turn>model\n"
    );
}

#[test]
fn builtin_for_arch_picks_gemma_or_chatml() {
    assert_eq!(ChatTemplate::builtin_for_arch("gemma3").1, "gemma");
    assert_eq!(ChatTemplate::builtin_for_arch("gemma2").1, "gemma");
    assert_eq!(ChatTemplate::builtin_for_arch("qwen2").1, "chatml");
    let (chatml, _) = ChatTemplate::builtin_for_arch("mystery");
    let messages = [Message::new("system", "S"), Message::new("user", "U")];
    assert_eq!(
        chatml.render(&request(&messages, "", "")).unwrap(),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    );
}

/// The built-in Gemma template renders every reference conversation exactly as Google's Gemma 3
/// template does in jinja2 (`google-gemma-3-it.jinja` in extra_expected.json), errors included.
#[test]
fn gemma_builtin_matches_the_official_gemma3_template() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/templates/extra_expected.json");
    let exp: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (template, _) = ChatTemplate::builtin_for_arch("gemma3");
    let ctx = &exp["context"];
    let reference = &exp["templates"]["google-gemma-3-it.jinja"];
    let mut compared = 0;
    for (name, conv) in exp["conversations"].as_object().unwrap() {
        let messages: Vec<Message> = conv["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message::from_json(m).unwrap())
            .collect();
        let tools = conv.get("tools");
        let req = RenderRequest {
            messages: &messages,
            tools,
            add_generation_prompt: conv["add_generation_prompt"].as_bool().unwrap(),
            bos_token: ctx["bos_token"].as_str().unwrap(),
            eos_token: ctx["eos_token"].as_str().unwrap(),
            now: None,
            extra: None,
            llama_cpp_concat: false,
        };
        let got = template.render(&req);
        match reference[name].get("output") {
            Some(want) => assert_eq!(got.as_deref(), Ok(want.as_str().unwrap()), "{name}"),
            None => assert!(
                matches!(got, Err(TemplateError::Raised(_))),
                "{name}: {got:?}"
            ),
        }
        compared += 1;
    }
    assert_eq!(compared, 8);
}
