//! Reading request bodies: [`Body`], a JSON object read field by field (`null` is absent,
//! unknown fields are ignored, a wrong type is a 400 naming the field), and the sampling fields
//! every API shares ([`gen_params`]).

use std::sync::atomic::{AtomicU64, Ordering};

use engine::SamplerParams;
use engine::sampler::{MirostatMode, SamplerType};
use engine::tokenizer::Tokenizer;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::scheduler::GenParams;

/// A JSON request object.
pub struct Body(pub Map<String, Value>);

impl Body {
    /// Parses a request body; anything but a JSON object is a 400.
    pub fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}")))?;
        Body::from_value(v)
    }

    pub fn from_value(v: Value) -> Result<Body, ApiError> {
        match v {
            Value::Object(m) => Ok(Body(m)),
            _ => Err(ApiError::invalid("the request body must be a JSON object")),
        }
    }

    /// The field, `None` when absent or `null`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    pub fn f32(&self, key: &str) -> Result<Option<f32>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x as f32)),
                _ => Err(type_error(key, "a number")),
            },
        }
    }

    pub fn i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match (v.as_i64(), v.as_f64()) {
                (Some(x), _) => Ok(Some(x)),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(type_error(key, "an integer")),
            },
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(type_error(key, "true or false")),
        }
    }

    pub fn str(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(type_error(key, "a string")),
        }
    }
}

pub fn type_error(key: &str, what: &str) -> ApiError {
    ApiError::invalid(format!("`{key}` must be {what}"))
}

/// Server-wide defaults for what a request leaves out (from the command line).
#[derive(Clone, Debug)]
pub struct Defaults {
    pub sampler: SamplerParams,
    /// `None`: a fresh random seed per request.
    pub seed: Option<u64>,
    /// The server's `-n`: the limit of requests that give none or -1 (`None`: no limit).
    pub n_predict: Option<usize>,
}

/// A seed that differs between requests when none is given (32 bits, as llama.cpp's).
pub fn random_seed() -> u64 {
    random_u64() & 0xFFFF_FFFF
}

/// 64 bits that differ between calls.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ COUNTER
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Field names of the token limit, first found wins.
pub const MAX_TOKENS_OPENAI: &[&str] = &["max_completion_tokens", "max_tokens", "n_predict"];

/// The sampling and stopping fields of a request (`fields` holds them: the body, or Ollama's
/// `options`). `max_keys` names the token-limit fields in order of precedence.
pub fn gen_params(
    fields: &Body,
    max_keys: &[&str],
    defaults: &Defaults,
    tok: &Tokenizer,
) -> Result<GenParams, ApiError> {
    let mut s = defaults.sampler.clone();
    if let Some(t) = fields.f32("temperature")? {
        if t < 0.0 {
            return Err(ApiError::invalid("`temperature` must be at least 0"));
        }
        s.temperature = t;
    }
    for (key, slot) in [
        ("top_p", &mut s.top_p),
        ("min_p", &mut s.min_p),
        ("typical_p", &mut s.typical_p),
    ] {
        if let Some(v) = fields.f32(key)? {
            if !(0.0..=1.0).contains(&v) {
                return Err(ApiError::invalid(format!(
                    "`{key}` must be between 0 and 1, got {v}"
                )));
            }
            *slot = v;
        }
    }
    if let Some(k) = fields.i64("top_k")? {
        s.top_k = usize::try_from(k).unwrap_or(0);
    }
    for (key, slot) in [
        ("presence_penalty", &mut s.presence_penalty),
        ("frequency_penalty", &mut s.frequency_penalty),
    ] {
        if let Some(v) = fields.f32(key)? {
            if !(-2.0..=2.0).contains(&v) {
                return Err(ApiError::invalid(format!(
                    "`{key}` must be between -2 and 2, got {v}"
                )));
            }
            *slot = v;
        }
    }
    if let Some(v) = fields.f32("repeat_penalty")? {
        if v <= 0.0 {
            return Err(ApiError::invalid("`repeat_penalty` must be positive"));
        }
        s.repeat_penalty = v;
    }
    if let Some(n) = fields.i64("repeat_last_n")? {
        s.repeat_last_n = match n {
            -1 => usize::MAX / 2,
            n if n >= 0 => n as usize,
            n => {
                return Err(ApiError::invalid(format!(
                    "`repeat_last_n` must be -1 or at least 0, got {n}"
                )));
            }
        };
    }
    s.seed = match fields.i64("seed")? {
        None | Some(-1) => defaults.seed.unwrap_or_else(random_seed),
        Some(n) if n >= 0 => n as u64,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "`seed` must be -1 (random) or at least 0, got {n}"
            )));
        }
    };
    more_samplers(fields, &mut s)?;
    s.logit_bias = logit_bias(fields, tok)?;
    let ignore_eos = fields.bool("ignore_eos")?.unwrap_or(false);
    if ignore_eos {
        s.ignore_eos = true;
        // As llama-server: end-of-generation tokens are banned rather than passed over (the
        // biases also show in `generation_settings`).
        for &id in tok.eog_tokens() {
            s.logit_bias.push((id, f32::NEG_INFINITY));
        }
    }
    let mut max_tokens = defaults.n_predict;
    if let Some(key) = max_keys.iter().find(|k| fields.get(k).is_some()) {
        let n = fields.i64(key)?.unwrap_or(-1);
        let asked = match n {
            -1 => None,
            n if n >= 0 => Some(n as usize),
            n => {
                return Err(ApiError::invalid(format!(
                    "`{key}` must be -1 (no limit) or at least 0, got {n}"
                )));
            }
        };
        // As llama-server: a request's own limit wins; -1 means the server's `-n`.
        max_tokens = asked.or(defaults.n_predict);
    }
    Ok(GenParams {
        max_tokens,
        stop: stop_strings(fields)?,
        sampler: s,
        ignore_eos,
        n_probs: None,
        post_sampling_probs: false,
        special: false,
    })
}

fn check(n: i64) -> Result<(), ApiError> {
    if (0..=MAX_N_PROBS as i64).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "the number of token probabilities must be between 0 and {MAX_N_PROBS}, got {n}"
        )))
    }
}

/// Most probabilities one token may report (llama-server caps nothing; this bounds the work).
pub const MAX_N_PROBS: usize = 100;

/// Which token probabilities a request asks for, into `p`: OpenAI chat's `logprobs` (true)
/// with `top_logprobs` (default 20, as llama-server), or llama-server's `n_probs` (alias
/// `logprobs`, an integer as in OpenAI's completions API) and `post_sampling_probs`.
pub fn probs_request(body: &Body, chat: bool, p: &mut GenParams) -> Result<(), ApiError> {
    let n = if chat {
        match body.get("logprobs") {
            None | Some(Value::Bool(false)) => {
                if body.get("top_logprobs").is_some() {
                    return Err(ApiError::invalid(
                        "`top_logprobs` requires `logprobs` to be set to true",
                    ));
                }
                0
            }
            // Asked for: the chosen token's probability even with `top_logprobs` 0.
            Some(Value::Bool(true)) => {
                let n = body.i64("top_logprobs")?.unwrap_or(20);
                check(n)?;
                p.n_probs = Some(n as usize);
                p.post_sampling_probs = body.bool("post_sampling_probs")?.unwrap_or(false);
                return Ok(());
            }
            Some(_) => return Err(type_error("logprobs", "true or false")),
        }
    } else {
        match (body.get("n_probs"), body.get("logprobs")) {
            (Some(_), _) => body.i64("n_probs")?.unwrap_or(0),
            (None, Some(Value::Bool(b))) => i64::from(*b) * 20,
            (None, Some(_)) => body.i64("logprobs")?.unwrap_or(0),
            (None, None) => 0,
        }
    };
    check(n)?;
    p.n_probs = (n > 0).then_some(n as usize);
    p.post_sampling_probs = body.bool("post_sampling_probs")?.unwrap_or(false);
    Ok(())
}

/// llama.cpp's other samplers, with its field names: DRY, XTC, Mirostat, dynamic temperature,
/// top-nσ, `min_keep` and the `samplers` order.
fn more_samplers(fields: &Body, s: &mut SamplerParams) -> Result<(), ApiError> {
    for (key, slot) in [
        ("top_n_sigma", &mut s.top_n_sigma),
        ("xtc_probability", &mut s.xtc_probability),
        ("xtc_threshold", &mut s.xtc_threshold),
        ("dynatemp_range", &mut s.dynatemp_range),
        ("dynatemp_exponent", &mut s.dynatemp_exponent),
        ("dry_multiplier", &mut s.dry_multiplier),
        ("dry_base", &mut s.dry_base),
        ("mirostat_tau", &mut s.mirostat_tau),
        ("mirostat_eta", &mut s.mirostat_eta),
    ] {
        if let Some(v) = fields.f32(key)? {
            *slot = v;
        }
    }
    for (key, slot) in [
        ("min_keep", &mut s.min_keep),
        ("dry_allowed_length", &mut s.dry_allowed_length),
    ] {
        if let Some(v) = fields.i64(key)? {
            *slot = usize::try_from(v)
                .map_err(|_| ApiError::invalid(format!("`{key}` must be at least 0")))?;
        }
    }
    if let Some(n) = fields.i64("dry_penalty_last_n")? {
        s.dry_penalty_last_n = match n {
            -1 => usize::MAX / 2,
            n if n >= 0 => n as usize,
            n => {
                return Err(ApiError::invalid(format!(
                    "`dry_penalty_last_n` must be -1 or at least 0, got {n}"
                )));
            }
        };
    }
    if let Some(v) = fields.get("dry_sequence_breakers") {
        s.dry_sequence_breakers = v
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| type_error("dry_sequence_breakers", "a list of strings"))?;
    }
    if let Some(m) = fields.i64("mirostat")? {
        s.mirostat = match m {
            0 => MirostatMode::Off,
            1 => MirostatMode::V1,
            2 => MirostatMode::V2,
            m => {
                return Err(ApiError::invalid(format!(
                    "`mirostat` must be 0, 1 or 2, got {m}"
                )));
            }
        };
    }
    match fields.get("samplers") {
        None => {}
        Some(Value::Array(a)) => {
            let mut order = Vec::with_capacity(a.len());
            for x in a {
                let name = x
                    .as_str()
                    .ok_or_else(|| type_error("samplers", "a list of sampler names"))?;
                order.push(
                    SamplerType::from_name(name)
                        .map_err(|e| ApiError::invalid(format!("`samplers`: {e}")))?,
                );
            }
            s.samplers = order;
        }
        // A string of one-letter codes, as llama-server also accepts.
        Some(Value::String(codes)) => {
            s.samplers = SamplerType::parse_codes(codes)
                .map_err(|e| ApiError::invalid(format!("`samplers`: {e}")))?;
        }
        Some(_) => return Err(type_error("samplers", "a list of sampler names")),
    }
    Ok(())
}

/// `stop`: a string or a list of strings.
fn stop_strings(fields: &Body) -> Result<Vec<String>, ApiError> {
    const MAX_STOPS: usize = 64;
    let out: Vec<String> = match fields.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| type_error("stop", "a string or a list of strings"))?,
        Some(_) => return Err(type_error("stop", "a string or a list of strings")),
    };
    if out.len() > MAX_STOPS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_STOPS} stop strings are accepted"
        )));
    }
    Ok(out.into_iter().filter(|s| !s.is_empty()).collect())
}

/// `logit_bias`: OpenAI's `{"token id": bias}`, or llama-server's `[[id or text, bias]]`
/// (`false` bans the token; a text biases each of its tokens).
fn logit_bias(fields: &Body, tok: &Tokenizer) -> Result<Vec<(u32, f32)>, ApiError> {
    let n_vocab = tok.n_vocab();
    let bias_of = |v: &Value| -> Result<f32, ApiError> {
        match v {
            Value::Bool(false) => Ok(f32::NEG_INFINITY),
            v => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(|x| x as f32)
                .ok_or_else(|| type_error("logit_bias", "a map of token ids to numbers")),
        }
    };
    let mut out = Vec::new();
    let mut add = |key: &Value, bias: f32| -> Result<(), ApiError> {
        let ids: Vec<u32> = match key {
            Value::Number(n) => vec![
                n.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| {
                        ApiError::invalid(format!("invalid token id {n} in logit_bias"))
                    })?,
            ],
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(id) => vec![u32::try_from(id).map_err(|_| {
                    ApiError::invalid(format!("invalid token id {id} in logit_bias"))
                })?],
                Err(_) => tok.encode(s, false, false),
            },
            _ => return Err(type_error("logit_bias", "a map of token ids to numbers")),
        };
        for id in ids {
            if id as usize >= n_vocab {
                return Err(ApiError::invalid(format!(
                    "token id {id} in logit_bias is outside the vocabulary of {n_vocab} tokens"
                )));
            }
            out.push((id, bias));
        }
        Ok(())
    };
    match fields.get("logit_bias") {
        None => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                add(&Value::String(k.clone()), bias_of(v)?)?;
            }
        }
        Some(Value::Array(a)) => {
            for pair in a {
                match pair.as_array().map(Vec::as_slice) {
                    Some([k, v]) => add(k, bias_of(v)?)?,
                    _ => return Err(type_error("logit_bias", "a list of [token, bias] pairs")),
                }
            }
        }
        Some(_) => return Err(type_error("logit_bias", "a map of token ids to numbers")),
    }
    Ok(out)
}
