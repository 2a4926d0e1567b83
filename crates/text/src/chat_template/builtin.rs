//! Templates for files that carry none (the Gemma 3 270M file here has no
//! `tokenizer.chat_template`), chosen by `general.architecture`: Gemma's `<start_of_turn>` format
//! for the gemma family, ChatML otherwise, the format most instruction-tuned models without a
//! template of their own were trained on (and llama.cpp's last resort too).

/// Gemma 2/3's turn format, written to render exactly as Google's Gemma 3 template does: the BOS
/// text first, a system message folded into the first user turn followed by a blank line,
/// `assistant` called `model`, message text trimmed, strict user/model alternation.
pub(crate) const GEMMA: &str = r#"{{- bos_token -}}
{%- set ns = namespace(prefix='') -%}
{%- set turns = messages -%}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set system = messages[0]['content'] -%}
    {%- set ns.prefix = (system if system is string else system[0]['text']) + '\n\n' -%}
    {%- set turns = messages[1:] -%}
{%- endif -%}
{%- for message in turns -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}
    {%- endif -%}
    {{- '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' -}}
    {%- if loop.first -%}{{- ns.prefix -}}{%- endif -%}
    {%- if message['content'] is string -%}
        {{- message['content'] | trim -}}
    {%- elif message['content'] is iterable -%}
        {%- for part in message['content'] -%}
            {%- if part['type'] == 'image' -%}
                {{- '<start_of_image>' -}}
            {%- elif part['type'] == 'text' -%}
                {{- part['text'] | trim -}}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{- raise_exception('Invalid content type') -}}
    {%- endif -%}
    {{- '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<start_of_turn>model\n' -}}
{%- endif -%}
"#;

/// ChatML (`<|im_start|>role\ncontent<|im_end|>\n`, then `<|im_start|>assistant\n`).
pub(crate) const CHATML: &str = r#"{%- for message in messages -%}
    {{- '<|im_start|>' + message['role'] + '\n' -}}
    {%- if message['content'] is string -%}
        {{- message['content'] -}}
    {%- elif message['content'] is iterable -%}
        {%- for part in message['content'] if part['type'] == 'text' -%}
            {{- part['text'] -}}
        {%- endfor -%}
    {%- endif -%}
    {{- '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"#;

/// The built-in template for an architecture, and its name for the log.
pub(crate) fn for_arch(arch: &str) -> (&'static str, &'static str) {
    if arch.starts_with("gemma") {
        (GEMMA, "gemma")
    } else {
        (CHATML, "chatml")
    }
}
