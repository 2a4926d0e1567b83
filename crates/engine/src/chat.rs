//! Conversations to prompt tokens: the model's chat template (or a built-in one chosen by
//! architecture when the file has none), then tokenization that never lets text a user typed
//! become a control token.
//!
//! [`Chat`] is the entry point: it compiles the template once, when it is made, and renders any
//! number of conversations with it (compiling a real template costs far more than rendering
//! one; a chat session or a server renders on every turn).
//!
//! The rendered prompt is tokenized with special-token parsing on, as llama.cpp does, so the
//! template's own `<|im_start|>`-style markers become control tokens. A message whose text
//! itself contains special-token text is the exception: its span of the rendered prompt is
//! tokenized as plain text.

use std::ops::Range;
use std::sync::Arc;

use crate::chat_template::{ChatTemplate, RenderRequest, TemplateError};
use crate::model::Model;
use crate::tokenizer::Tokenizer;

pub use crate::chat_template::Message;

/// A rendered conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The prompt text as the template produced it.
    pub text: String,
    /// Its tokens, ready to decode.
    pub tokens: Vec<u32>,
}

/// A model with its chat template compiled: the file's own, or the built-in for its
/// architecture when the file has none.
#[derive(Debug)]
pub struct Chat {
    model: Arc<Model>,
    template: ChatTemplate,
    template_name: String,
    bos: String,
    eos: String,
}

impl Chat {
    /// Compiles `model`'s chat template (or picks the built-in for its architecture).
    pub fn new(model: Arc<Model>) -> Result<Chat, TemplateError> {
        let (template, template_name) = match &model.chat_template {
            Some(source) => (ChatTemplate::new(source)?, "model".to_owned()),
            None => {
                let (t, name) = ChatTemplate::builtin_for_arch(model.info.arch.name());
                (
                    t,
                    format!("built-in {name} (the file has no chat template)"),
                )
            }
        };
        Ok(Chat::with_template(model, template, template_name))
    }

    /// A chat with a template compiled elsewhere (a `--chat-template-file`), named
    /// `template_name` for the log.
    pub fn with_template(model: Arc<Model>, template: ChatTemplate, template_name: String) -> Chat {
        let tok = &model.tokenizer;
        let bos = token_text(tok, tok.bos());
        let eos = token_text(tok, tok.eos());
        Chat {
            model,
            template,
            template_name,
            bos,
            eos,
        }
    }

    /// The model the prompts are tokenized for.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The compiled template.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The text of the model's BOS token ("" without one).
    pub fn bos(&self) -> &str {
        &self.bos
    }

    /// `"model"` for the file's own template, else the built-in's name.
    pub fn template_name(&self) -> &str {
        &self.template_name
    }

    /// Renders `messages` and tokenizes the result.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<Rendered, TemplateError> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// [`Chat::render`] with tool definitions (a JSON list of `{"type": "function", ..}`).
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<Rendered, TemplateError> {
        self.render_request(RenderRequest {
            messages,
            tools,
            add_generation_prompt,
            ..RenderRequest::default()
        })
    }

    /// [`Chat::render_with_tools`] as llama-server renders: with more template variables
    /// (`enable_thinking`, `date_string`, a request's `chat_template_kwargs`…) and llama.cpp's
    /// Jinja leniency (a string `+` an undefined value is the string).
    pub fn render_with_context(
        &self,
        messages: &[Message],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
        extra: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<Rendered, TemplateError> {
        self.render_request(RenderRequest {
            messages,
            tools,
            add_generation_prompt,
            extra,
            llama_cpp_concat: true,
            ..RenderRequest::default()
        })
    }

    /// Renders `req` (its BOS and EOS texts filled in from the model) and tokenizes the result.
    fn render_request(&self, req: RenderRequest<'_>) -> Result<Rendered, TemplateError> {
        let messages = req.messages;
        let req = RenderRequest {
            bos_token: &self.bos,
            eos_token: &self.eos,
            ..req
        };
        let text = self.template.render(&req)?;
        let tokens = tokenize_prompt(&self.model.tokenizer, &text, messages, &self.bos);
        Ok(Rendered { text, tokens })
    }
}

fn token_text(tok: &Tokenizer, id: Option<u32>) -> String {
    id.and_then(|id| tok.token_text(id))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// Tokenizes a rendered prompt: BOS as the model asks (not twice when the template already
/// wrote it), special tokens parsed except inside message texts that contain special-token text.
pub fn tokenize_prompt(tok: &Tokenizer, text: &str, messages: &[Message], bos: &str) -> Vec<u32> {
    // The template may write BOS itself; the tokenizer adds it when the model asks for it.
    let text = match text.strip_prefix(bos) {
        Some(rest) if tok.add_bos() && !bos.is_empty() => rest,
        _ => text,
    };
    let plain = plain_spans(tok, text, messages);
    let mut out = Vec::new();
    if tok.add_bos()
        && let Some(b) = tok.bos()
    {
        out.push(b);
    }
    let mut at = 0;
    for span in plain {
        out.extend(tok.encode(&text[at..span.start], false, true));
        out.extend(tok.encode(&text[span.clone()], false, false));
        at = span.end;
    }
    out.extend(tok.encode(&text[at..], false, true));
    out
}

/// Spans of `text` holding message contents that would turn into control tokens if parsed.
fn plain_spans(tok: &Tokenizer, text: &str, messages: &[Message]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut from = 0;
    for content in messages.iter().filter_map(|m| m.content.as_deref()) {
        if content.is_empty() {
            continue;
        }
        let Some(i) = text[from..].find(content) else {
            continue;
        };
        let span = from + i..from + i + content.len();
        from = span.end;
        if tok.encode(content, false, true) != tok.encode(content, false, false) {
            spans.push(span);
        }
    }
    spans
}
