//! The descriptive `general.*` keys as gguf-py's `Metadata` derives them without a model card:
//! from config.json's `_name_or_path` (when it is a Hub id) and the folder's name, split into
//! name, organization, basename, size label, fine-tune and version
//! (`Metadata.get_model_id_components`), and the sampling defaults of `generation_config.json`.
//! A model card (README.md front matter) is not read: llama.cpp takes more keys from it.

use gguf::{Builder, Value};
use serde_json::Value as Json;

use crate::error::Error;

/// What the name heuristics found.
#[derive(Debug, Default, PartialEq)]
pub struct Names {
    pub name: Option<String>,
    pub organization: Option<String>,
    pub basename: Option<String>,
    pub finetune: Option<String>,
    pub version: Option<String>,
    pub size_label: Option<String>,
}

fn is_version(p: &str) -> bool {
    let l = p.to_ascii_lowercase();
    let rest = l
        .strip_prefix("iter")
        .or_else(|| l.strip_prefix('v'))
        .unwrap_or(&l);
    !rest.is_empty()
        && rest
            .split('.')
            .all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// `i?q\d(_\w)*|b?fp?(16|32)`, case-insensitive.
fn is_quant_type(p: &str) -> bool {
    let l = p.to_ascii_lowercase();
    let q = l.strip_prefix('i').unwrap_or(&l);
    if let Some(rest) = q.strip_prefix('q') {
        let mut chars = rest.chars();
        if chars.next().is_some_and(|c| c.is_ascii_digit()) {
            let tail: String = chars.collect();
            // (_\w)*: an underscore first, then word characters.
            if tail.is_empty()
                || (tail.starts_with('_')
                    && tail.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                return true;
            }
        }
    }
    let f = l.strip_prefix('b').unwrap_or(&l);
    let f = f.strip_prefix('f').unwrap_or("");
    let f = f.strip_prefix('p').unwrap_or(f);
    f == "16" || f == "32"
}

/// `(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)`, case-insensitive.
fn is_size(p: &str) -> bool {
    let l = p.to_ascii_lowercase();
    if matches!(
        l.as_str(),
        "small" | "mini" | "medium" | "large" | "xl" | "xxl"
    ) {
        return true;
    }
    let b = l.as_bytes();
    let digits = |i: usize| b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    // Optional prefix: "a" or \d+x.
    let mut starts = vec![0];
    if b.first() == Some(&b'a') {
        starts.push(1);
    }
    let n = digits(0);
    if n > 0 && b.get(n) == Some(&b'x') {
        starts.push(n + 1);
    }
    starts.into_iter().any(|mut i| {
        let n = digits(i);
        if n == 0 {
            return false;
        }
        i += n;
        if matches!(b.get(i), Some(b'.' | b'_')) && digits(i + 1) > 0 {
            i += 1 + digits(i + 1);
        }
        if !matches!(b.get(i), Some(b'k' | b'm' | b'b' | b't')) {
            return false;
        }
        i += 1;
        i == b.len() || (i + 1 == b.len() && b[i].is_ascii_digit())
    })
}

/// Python's `str.title()` for the words hearth meets.
fn title(w: &str) -> String {
    let mut out = String::new();
    let mut prev_letter = false;
    for c in w.chars() {
        if c.is_alphabetic() {
            if prev_letter {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            prev_letter = true;
        } else {
            out.push(c);
            prev_letter = false;
        }
    }
    out
}

fn is_lower(w: &str) -> bool {
    w.chars().any(char::is_alphabetic) && !w.chars().any(char::is_uppercase)
}

/// gguf-py's `Metadata.id_to_title`.
pub fn id_to_title(s: &str) -> String {
    s.trim()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let version_like = w.starts_with(|c: char| c.is_ascii_digit()) || is_version_v(w);
            if is_lower(w) && !version_like {
                title(w)
            } else {
                w.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `^v\d+(\.\d+)*$` (a match at the start that must reach the end).
fn is_version_v(w: &str) -> bool {
    w.strip_prefix('v').is_some_and(|r| {
        !r.is_empty()
            && r.split('.')
                .all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// gguf-py's `Metadata.get_model_id_components`.
pub fn components(model_id: &str, total_params: u64) -> Names {
    if model_id.contains(' ') {
        return Names {
            name: Some(model_id.to_owned()),
            ..Names::default()
        };
    }
    let (mut org, full) = match model_id.split_once('/') {
        Some((o, n)) => (Some(o.to_owned()), n.to_owned()),
        None => (None, model_id.to_owned()),
    };
    if org.as_deref().is_some_and(|o| o.starts_with('.')) {
        org = None;
    }
    let mut parts: Vec<String> = full
        .split('-')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    #[derive(Default, Clone)]
    struct T {
        basename: bool,
        size: bool,
        finetune: bool,
        version: bool,
        ty: bool,
    }
    impl T {
        fn empty(&self) -> bool {
            !(self.basename || self.size || self.finetune || self.version || self.ty)
        }
        fn count(&self) -> usize {
            [
                self.basename,
                self.size,
                self.finetune,
                self.version,
                self.ty,
            ]
            .iter()
            .filter(|b| **b)
            .count()
        }
    }
    let mut types = vec![T::default(); parts.len()];
    for i in 0..parts.len() {
        let part = parts[i].clone();
        if is_version(&part) {
            types[i].version = true;
        } else if is_quant_type(&part) {
            types[i].ty = true;
            parts[i] = part.to_uppercase();
        } else if i > 0 && is_size(&part) {
            let mut p = part.replace('_', ".");
            let cs: Vec<char> = p.chars().collect();
            if cs.last().is_some_and(|c| c.is_ascii_digit()) && cs.len() >= 2 {
                // bloom-7b1 → 7.1b
                let n = cs.len();
                p = format!(
                    "{}.{}{}",
                    cs[..n - 2].iter().collect::<String>(),
                    cs[n - 1],
                    cs[n - 2]
                );
            }
            let cs: Vec<char> = p.chars().collect();
            if cs.len() > 1
                && cs[cs.len() - 2].is_ascii_digit()
                && "kmbt".contains(cs[cs.len() - 1])
            {
                p = format!(
                    "{}{}",
                    cs[..cs.len() - 1].iter().collect::<String>(),
                    cs[cs.len() - 1].to_ascii_uppercase()
                );
            }
            if total_params != 0 {
                let cs: Vec<char> = p.chars().collect();
                let head: String = cs[..cs.len() - 1].iter().collect();
                let scale = " KMBT"
                    .find(cs[cs.len() - 1])
                    .map(|e| 1000f64.powi(e as i32));
                if let (Ok(v), Some(scale)) = (head.parse::<f64>(), scale) {
                    let label = v * scale;
                    let total = total_params as f64;
                    if (label - total).abs() > (7 * total_params / 8) as f64 {
                        types[i].finetune = true;
                        p = format!("{head}{}", cs[cs.len() - 1].to_ascii_lowercase());
                    }
                }
            }
            if types[i].empty() {
                types[i].size = true;
            }
            parts[i] = p;
        } else if i > 0
            && matches!(
                part.to_ascii_lowercase().as_str(),
                "chat" | "instruct" | "vision" | "lora"
            )
        {
            types[i].finetune = true;
        }
    }
    let numeric_size = parts
        .iter()
        .zip(&types)
        .any(|(p, t)| t.size && p.chars().any(|c| c.is_ascii_digit()));
    if numeric_size {
        for (p, t) in parts.iter().zip(types.iter_mut()) {
            if t.size && p.chars().all(char::is_alphabetic) {
                t.size = false;
            }
        }
    }
    let mut at_start = true;
    for (p, t) in parts.iter().zip(types.iter_mut()) {
        let alpha_first = p.chars().next().is_some_and(char::is_alphabetic);
        if at_start && ((t.empty() && alpha_first) || t.version) {
            t.basename = true;
        } else {
            at_start = false;
            if t.empty() {
                t.finetune = true;
            }
        }
    }
    for t in types.iter_mut().rev() {
        if t.basename && t.count() > 1 {
            t.basename = false;
        } else {
            break;
        }
    }
    let join = |f: &dyn Fn(&T) -> bool| {
        let mut seen: Vec<&str> = Vec::new();
        for (p, t) in parts.iter().zip(&types) {
            if f(t) {
                seen.push(p);
            }
        }
        (!seen.is_empty()).then(|| seen.join("-"))
    };
    let mut basename = join(&|t| t.basename);
    let size_label = {
        let mut seen: Vec<&str> = Vec::new();
        for (p, t) in parts.iter().zip(&types) {
            if t.size && !seen.contains(&p.as_str()) {
                seen.push(p);
            }
        }
        (!seen.is_empty()).then(|| seen.join("-"))
    };
    let finetune = join(&|t| t.finetune);
    let version = join(&|t| t.version && !t.basename);
    if size_label.is_none() && finetune.is_none() && version.is_none() {
        basename = None;
    }
    Names {
        name: Some(full),
        organization: org,
        basename,
        finetune,
        version,
        size_label,
    }
}

/// The names llama.cpp derives for a checkpoint in folder `dir_name` with `config`.
pub fn derive(dir_name: &str, config: &Json, total_params: u64) -> Names {
    let mut out = Names::default();
    let mut merge = |n: Names| {
        if out.name.is_none() {
            out.name = n.name.as_deref().map(id_to_title);
        }
        if out.organization.is_none() {
            out.organization = n.organization.as_deref().map(id_to_title);
        }
        out.basename = out.basename.take().or(n.basename);
        out.finetune = out.finetune.take().or(n.finetune);
        out.version = out.version.take().or(n.version);
        out.size_label = out.size_label.take().or(n.size_label);
    };
    if let Some(id) = config.get("_name_or_path").and_then(Json::as_str)
        && id.matches('/').count() <= 1
    {
        merge(components(id, total_params));
    }
    merge(components(dir_name, total_params));
    out
}

/// gguf-py's `general.sampling.*` keys from `generation_config.json`.
pub fn write_sampling(b: &mut Builder<'static>, config: &Json) -> Result<(), Error> {
    let get = |k: &str| config.get(k).filter(|v| !v.is_null());
    if let Some(s) = get("sequence").and_then(Json::as_str) {
        b.set("general.sampling.sequence", Value::string(s))?;
    }
    let int = |k: &str| {
        get(k)
            .and_then(Json::as_i64)
            .and_then(|v| i32::try_from(v).ok())
    };
    let float = |k: &str| get(k).and_then(Json::as_f64).map(|v| v as f32);
    let keys: [(&str, &str, bool); 11] = [
        ("top_k", "top_k", true),
        ("top_p", "top_p", false),
        ("min_p", "min_p", false),
        ("xtc_probability", "xtc_probability", false),
        ("xtc_threshold", "xtc_threshold", false),
        ("temperature", "temp", false),
        ("penalty_last_n", "penalty_last_n", true),
        ("penalty_repeat", "penalty_repeat", false),
        ("mirostat", "mirostat", true),
        ("mirostat_tau", "mirostat_tau", false),
        ("mirostat_eta", "mirostat_eta", false),
    ];
    for (hf, key, is_int) in keys {
        let key = format!("general.sampling.{key}");
        let hf = if hf == "penalty_repeat" && get(hf).is_none() {
            "repetition_penalty"
        } else {
            hf
        };
        if is_int {
            if let Some(v) = int(hf) {
                b.set(key, Value::I32(v))?;
            }
        } else if let Some(v) = float(hf) {
            b.set(key, Value::F32(v))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (id, parameters, llama.cpp's name, organization, basename, finetune, version, size
    /// label, title), printed by gguf-py's `Metadata.get_model_id_components` and `id_to_title`.
    #[allow(clippy::type_complexity)]
    const CASES: &[(&str, u64, [Option<&str>; 6], &str)] = &[
        (
            "SmolLM2-135M",
            134515008,
            [
                Some("SmolLM2-135M"),
                None,
                Some("SmolLM2"),
                None,
                None,
                Some("135M"),
            ],
            "SmolLM2 135M",
        ),
        (
            "hf",
            1600000,
            [Some("hf"), None, None, None, None, None],
            "Hf",
        ),
        (
            "meta-llama/Llama-3.2-1B-Instruct",
            1235814400,
            [
                Some("Llama-3.2-1B-Instruct"),
                Some("meta-llama"),
                Some("Llama-3.2"),
                Some("Instruct"),
                None,
                Some("1B"),
            ],
            "Llama 3.2 1B Instruct",
        ),
        (
            "Qwen2.5-0.5b-instruct",
            494032768,
            [
                Some("Qwen2.5-0.5b-instruct"),
                None,
                Some("Qwen2.5"),
                Some("instruct"),
                None,
                Some("0.5B"),
            ],
            "Qwen2.5 0.5b Instruct",
        ),
        (
            "bloom-7b1",
            7000000000,
            [
                Some("bloom-7b1"),
                None,
                Some("bloom"),
                None,
                None,
                Some("7.1B"),
            ],
            "Bloom 7b1",
        ),
        (
            "Mistral-7B-v0.3",
            7200000000,
            [
                Some("Mistral-7B-v0.3"),
                None,
                Some("Mistral"),
                None,
                Some("v0.3"),
                Some("7B"),
            ],
            "Mistral 7B v0.3",
        ),
        (
            "gemma-3-270m-it",
            268000000,
            [
                Some("gemma-3-270m-it"),
                None,
                Some("gemma-3"),
                Some("it"),
                None,
                Some("270M"),
            ],
            "Gemma 3 270m It",
        ),
        (
            "TinyLlama-1.1B-Chat-v1.0",
            1100000000,
            [
                Some("TinyLlama-1.1B-Chat-v1.0"),
                None,
                Some("TinyLlama"),
                Some("Chat"),
                Some("v1.0"),
                Some("1.1B"),
            ],
            "TinyLlama 1.1B Chat v1.0",
        ),
        (
            "phi-2-q4_0",
            2700000000,
            [Some("phi-2-q4_0"), None, None, None, None, None],
            "Phi 2 Q4_0",
        ),
        (
            "Llama-2-7b-hf",
            6700000000,
            [
                Some("Llama-2-7b-hf"),
                None,
                Some("Llama-2"),
                Some("hf"),
                None,
                Some("7B"),
            ],
            "Llama 2 7b Hf",
        ),
        (
            "model-8k-32B",
            7000000000,
            [
                Some("model-8k-32B"),
                None,
                Some("model"),
                Some("8k-32b"),
                None,
                None,
            ],
            "Model 8k 32B",
        ),
    ];

    #[test]
    fn names_split_as_gguf_py_splits_them() {
        for (id, params, want, title) in CASES {
            let n = components(id, *params);
            let got = [
                n.name.as_deref(),
                n.organization.as_deref(),
                n.basename.as_deref(),
                n.finetune.as_deref(),
                n.version.as_deref(),
                n.size_label.as_deref(),
            ];
            assert_eq!(&got, want, "{id}");
            assert_eq!(id_to_title(id.rsplit('/').next().unwrap()), *title, "{id}");
        }
    }
}
