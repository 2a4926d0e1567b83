//! llama.cpp's built-in chat formats that `--chat-template NAME` selects (its
//! `llm_chat_apply_template`), written as Jinja that renders the same text.

/// The Jinja source of llama.cpp's built-in format `name`, if hearth has it. (`chatml` and
/// `gemma` are hearth's own built-ins, chosen by architecture; see the CLI.)
pub fn named_template(name: &str) -> Option<&'static str> {
    match name {
        "llama3" => Some(LLAMA3),
        "command-r" => Some(COMMAND_R),
        _ => None,
    }
}

/// The names [`named_template`] knows.
pub const NAMED_TEMPLATES: &[&str] = &["llama3", "command-r"];

/// `LLM_CHAT_TEMPLATE_LLAMA_3`: every message as `<|start_header_id|>ROLE<|end_header_id|>\n\n`,
/// its trimmed content and `<|eot_id|>`.
const LLAMA3: &str = "{%- for message in messages -%}\
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}";

/// `LLM_CHAT_TEMPLATE_COMMAND_R`: system, user and assistant turns with Cohere's tokens, the
/// content trimmed; other roles are left out.
const COMMAND_R: &str = "{%- for message in messages -%}\
{%- if message['role'] == 'system' -%}{{- '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + message['content'] | trim + '<|END_OF_TURN_TOKEN|>' -}}\
{%- elif message['role'] == 'user' -%}{{- '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + message['content'] | trim + '<|END_OF_TURN_TOKEN|>' -}}\
{%- elif message['role'] == 'assistant' -%}{{- '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' + message['content'] | trim + '<|END_OF_TURN_TOKEN|>' -}}\
{%- endif -%}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' -}}{%- endif -%}";
