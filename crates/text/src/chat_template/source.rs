//! Rewrites applied to a template's source before MiniJinja compiles it, for syntax that
//! transformers accepts but plain Jinja does not.
//!
//! transformers registers a `{% generation %}…{% endgeneration %}` tag (its `AssistantTracker`)
//! that marks the assistant's part of a training example and renders its body unchanged. We turn
//! it into `{% with %}…{% endwith %}`: a block tag too, so `trim_blocks`, `lstrip_blocks` and the
//! `-` markers strip the same whitespace, and one that opens a scope as transformers' call block
//! does, so a `set` inside it stays inside.

/// The source with every `generation`/`endgeneration` block tag replaced; text in comments,
/// `{{ }}` expressions and `{% raw %}` sections is left alone.
pub(crate) fn rewrite(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find('{') {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let close = if from.starts_with("{#") {
            "#}"
        } else if from.starts_with("{{") {
            "}}"
        } else if from.starts_with("{%") {
            "%}"
        } else {
            out.push('{');
            rest = &from[1..];
            continue;
        };
        let Some(end) = from[2..].find(close).map(|e| e + 2 + close.len()) else {
            // Unclosed: the compiler reports it.
            out.push_str(from);
            return out;
        };
        let tag = &from[..end];
        rest = &from[end..];
        if close != "%}" {
            out.push_str(tag);
            continue;
        }
        match tag_keyword(tag) {
            Some("generation") => out.push_str(&tag.replacen("generation", "with", 1)),
            Some("endgeneration") => out.push_str(&tag.replacen("endgeneration", "endwith", 1)),
            Some("raw") => {
                out.push_str(tag);
                // Copy up to and including the matching endraw tag untouched.
                let mut scan = 0;
                loop {
                    let Some(open) = rest[scan..].find("{%").map(|o| o + scan) else {
                        out.push_str(rest);
                        return out;
                    };
                    let Some(end) = rest[open..].find("%}").map(|e| e + open + 2) else {
                        out.push_str(rest);
                        return out;
                    };
                    if tag_keyword(&rest[open..end]) == Some("endraw") {
                        out.push_str(&rest[..end]);
                        rest = &rest[end..];
                        break;
                    }
                    scan = end;
                }
            }
            _ => out.push_str(tag),
        }
    }
    out.push_str(rest);
    out
}

/// The first word of a `{% … %}` tag, past the whitespace-control markers.
fn tag_keyword(tag: &str) -> Option<&str> {
    let inner = tag.strip_prefix("{%")?.strip_suffix("%}")?;
    let inner = inner.trim_start_matches(['-', '+']).trim_start();
    let word_end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let word = &inner[..word_end];
    (!word.is_empty()).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn generation_tags_become_with_blocks() {
        assert_eq!(
            rewrite("a{%- generation -%}b{% endgeneration %}c"),
            "a{%- with -%}b{% endwith %}c"
        );
        assert_eq!(
            rewrite("{%generation%}{%-endgeneration+%}"),
            "{%with%}{%-endwith+%}"
        );
    }

    #[test]
    fn leaves_other_text_alone() {
        let src = "{# {% generation %} #}{{ 'generation' }}{% if generation %}{% endif %}\
                   {% raw %}{% generation %}{% endraw %}{% set x = '{' %}";
        assert_eq!(rewrite(src), src);
        assert_eq!(rewrite("{% generation"), "{% generation");
    }
}
