//! Which type each tensor gets: llama.cpp's `llama_tensor_get_type` (src/llama-quant.cpp) —
//! which tensors are never quantized, the `_S/_M/_L` mixes (`attn_v`, `ffn_down`, `output`,
//! first and last layers, `use_more_bits`), the overrides, and the fallbacks when a row is not
//! a whole number of blocks. The tensors are visited in llama.cpp's order (see
//! [`llama_order`]), since the layer counters depend on it.

use gguf::GgmlType;

use crate::Ftype;

/// The hyper-parameters the rules read.
#[derive(Clone, Debug, Default)]
pub struct Hparams {
    /// `general.architecture`.
    pub arch: String,
    /// `{arch}.block_count`.
    pub n_layer: u32,
    /// `{arch}.attention.head_count` (of the first layer).
    pub n_head: u32,
    /// `{arch}.attention.head_count_kv` (of the first layer; `n_head` when absent).
    pub n_head_kv: u32,
    /// `{arch}.expert_count` (0 when absent).
    pub n_expert: u32,
}

impl Hparams {
    fn n_gqa(&self) -> u32 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }

    /// llama.cpp's `LLM_TYPE_70B` (the only model size the rules look at).
    fn is_70b(&self) -> bool {
        self.arch == "llama" && self.n_layer == 80 && self.n_head != self.n_head_kv
    }
}

/// The per-tensor options of a quantization.
#[derive(Clone, Debug)]
pub struct Rules {
    pub ftype: Ftype,
    pub output_tensor_type: Option<GgmlType>,
    pub token_embedding_type: Option<GgmlType>,
    /// `--leave-output-tensor`: `output.weight` keeps its type.
    pub leave_output_tensor: bool,
    /// `--pure`: no mixes, every quantized tensor gets the default type (fallbacks still apply).
    pub pure: bool,
    /// Whether an importance matrix is given (some mixes differ with one).
    pub has_imatrix: bool,
}

/// One tensor as the rules see it.
#[derive(Clone, Debug)]
pub struct TensorDesc<'a> {
    pub name: &'a str,
    pub ty: GgmlType,
    /// `ne`, innermost first.
    pub shape: &'a [u64],
}

/// The decision for one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub ty: GgmlType,
    /// Whether the mix's type did not fit the row length and a fallback was taken.
    pub fallback: bool,
    /// Whether this tensor needs an importance matrix (`tensor_requires_imatrix`).
    pub requires_imatrix: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttentionQ,
    AttentionV,
    AttentionK,
    AttentionQkv,
    AttentionKvB,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn is_token_embd(name: &str) -> bool {
    name == "token_embd.weight" || name == "per_layer_token_embd.weight"
}

fn category(name: &str) -> Category {
    use Category as C;
    if name == "output.weight" {
        return C::Output;
    }
    if is_token_embd(name) {
        return C::TokenEmbd;
    }
    let table = [
        ("attn_qkv.weight", C::AttentionQkv),
        ("attn_kv_b.weight", C::AttentionKvB),
        ("attn_v.weight", C::AttentionV),
        ("attn_k.weight", C::AttentionK),
        ("attn_q.weight", C::AttentionQ),
        ("attn_output.weight", C::AttentionOutput),
        ("ffn_up", C::FfnUp),
        ("ffn_gate", C::FfnGate),
        ("ffn_down", C::FfnDown),
    ];
    table
        .iter()
        .find(|(pat, _)| name.contains(pat))
        .map_or(C::Other, |&(_, c)| c)
}

fn is_attn_v(c: Category) -> bool {
    matches!(
        c,
        Category::AttentionV | Category::AttentionQkv | Category::AttentionKvB
    )
}

/// ggml's `ggml_n_dims`: 1 + the index of the last dimension larger than 1.
fn n_dims(shape: &[u64]) -> usize {
    shape.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1)
}

/// `shape` as ggml writes it: its first [`n_dims`] dimensions.
pub(crate) fn ggml_shape(shape: &[u64]) -> &[u64] {
    &shape[..n_dims(shape).min(shape.len())]
}

/// The layer number of a `blk.N.` name as `sscanf("blk.%d.")` reads it, or -1.
pub(crate) fn layer_of(name: &str) -> i64 {
    let Some(rest) = name.strip_prefix("blk.") else {
        return -1;
    };
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'-') => (-1, &rest[1..]),
        Some(b'+') => (1, &rest[1..]),
        _ => (1, rest),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    match digits[..end].parse::<i64>() {
        Ok(n) => sign * n,
        Err(_) => -1,
    }
}

/// The order llama.cpp's model loader keeps tensors in (`weight_name_comparer`): by layer
/// number (non-layer tensors first), then by name. llama-quantize writes them in this order.
pub fn llama_order<T>(items: &mut [T], name: impl Fn(&T) -> &str) {
    items.sort_by(|a, b| {
        let (na, nb) = (name(a), name(b));
        layer_of(na).cmp(&layer_of(nb)).then_with(|| na.cmp(nb))
    });
}

/// `tensor_allows_quantization`: 2-D and 3-D weights, not norms, gates of experts, positional
/// embeddings and the other small tensors llama.cpp leaves alone.
fn allows_quantization(rules: &Rules, arch: &str, t: &TensorDesc<'_>) -> bool {
    if n_dims(t.shape) < 2 {
        return false;
    }
    let name = t.name;
    let mut q = name.ends_with("weight");
    q &= !name.contains("_norm.weight");
    q &= !rules.leave_output_tensor || name != "output.weight";
    const NEVER: [&str; 33] = [
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
    ];
    q &= !NEVER.iter().any(|p| name.contains(p));
    q &= !name.contains("mm.a.code_embd");
    q &= name != "position_embd.weight" && name != "token_types.weight";
    if arch == "glm5-next" {
        const GLM5: [&str; 14] = [
            "hc_",
            "indexer.attn_q_b",
            "indexer.attn_k",
            "indexer.proj",
            "indexer_compressor_gate",
            "indexer_compressor_ape",
            "ssm_f_a.weight",
            "ssm_f_b.weight",
            "ssm_g_a.weight",
            "ssm_g_b.weight",
            "ssm_beta.weight",
            "attn_kv_a_mqa.weight",
            "attn_k_b.weight",
            "attn_v_b.weight",
        ];
        q &= !GLM5.iter().any(|p| name.contains(p));
    }
    q
}

/// `tensor_requires_imatrix`.
fn requires_imatrix(name: &str, ty: GgmlType, ftype: Ftype) -> bool {
    use GgmlType as T;
    if is_token_embd(name) || name == "output.weight" {
        return false;
    }
    match ty {
        T::IQ3_XXS | T::IQ2_XXS | T::IQ2_XS | T::IQ2_S | T::IQ1_M | T::IQ1_S => true,
        T::Q2_K => ftype == Ftype::Q2_K_S,
        _ => false,
    }
}

/// The counters llama.cpp's `quantize_state_impl` keeps across tensors.
struct State<'h> {
    hp: &'h Hparams,
    n_attention_wv: i64,
    i_attention_wv: i64,
    n_layer: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
    has_tied_embeddings: bool,
}

/// Decides the type of every tensor of `tensors` (given in [`llama_order`]).
pub fn choose_types(
    hp: &Hparams,
    rules: &Rules,
    tensors: &[TensorDesc<'_>],
) -> Result<Vec<Choice>, String> {
    let cats: Vec<Category> = tensors.iter().map(|t| category(t.name)).collect();
    let mut st = State {
        hp,
        n_attention_wv: cats.iter().filter(|c| is_attn_v(**c)).count() as i64,
        i_attention_wv: 0,
        n_layer: i64::from(hp.n_layer),
        i_ffn_down: 0,
        i_ffn_gate: 0,
        i_ffn_up: 0,
        has_tied_embeddings: !cats.contains(&Category::Output),
    };
    let default = rules.ftype.default_type();
    let mut out = Vec::with_capacity(tensors.len());
    for (t, &cat) in tensors.iter().zip(&cats) {
        let (ty, fallback) = if allows_quantization(rules, &hp.arch, t) {
            tensor_type(&mut st, rules, t, default, cat)?
        } else {
            (t.ty, false)
        };
        out.push(Choice {
            ty,
            fallback,
            requires_imatrix: requires_imatrix(t.name, ty, rules.ftype),
        });
    }
    Ok(out)
}

/// `llama_tensor_get_type` for a tensor that may be quantized.
fn tensor_type(
    st: &mut State<'_>,
    rules: &Rules,
    t: &TensorDesc<'_>,
    default: GgmlType,
    cat: Category,
) -> Result<(GgmlType, bool), String> {
    if let (Some(ty), Category::TokenEmbd) = (rules.token_embedding_type, cat) {
        return Ok((ty, false));
    }
    if let (Some(ty), Category::Output) = (rules.output_tensor_type, cat) {
        return Ok((ty, false));
    }
    if !default.is_quantized() {
        return Ok((default, false));
    }
    let mut ty = default;
    if !rules.pure {
        ty = mix_type(st, rules, t, ty, cat)?;
    }
    Ok(fallback(t, ty))
}

/// `tensor_type_fallback`: a type whose block does not divide the row length is replaced.
fn fallback(t: &TensorDesc<'_>, ty: GgmlType) -> (GgmlType, bool) {
    use GgmlType as T;
    let ncols = t.shape.first().copied().unwrap_or(1);
    if ncols.is_multiple_of(ty.block_size()) {
        return (ty, false);
    }
    let mut ret = match ty {
        T::IQ1_S | T::IQ1_M | T::IQ2_XXS | T::IQ2_XS | T::IQ2_S | T::IQ3_XXS | T::IQ3_S => {
            T::IQ4_NL
        }
        T::IQ4_XS => T::IQ4_NL,
        T::Q2_0 | T::Q2_K | T::Q3_K | T::TQ1_0 | T::TQ2_0 => T::Q4_0,
        T::Q4_K => T::Q5_0,
        T::Q5_K => T::Q5_1,
        T::Q6_K => T::Q8_0,
        other => other,
    };
    if !ncols.is_multiple_of(ret.block_size()) {
        ret = T::F16;
    }
    (ret, true)
}

/// `llama_tensor_get_type_impl`: the mix rules of every file type hearth writes.
fn mix_type(
    st: &mut State<'_>,
    rules: &Rules,
    t: &TensorDesc<'_>,
    mut ty: GgmlType,
    cat: Category,
) -> Result<GgmlType, String> {
    use Category as C;
    use Ftype as F;
    use GgmlType as T;
    let hp = st.hp;
    let ftype = rules.ftype;
    let falcon = hp.arch == "falcon";
    let use_more_bits = |i: i64, n: i64| i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
    let layer_info = |i: i64, n: i64| -> Result<(i64, i64), String> {
        if hp.n_expert > 1 {
            let l = layer_of(t.name);
            if !t.name.starts_with("blk.") || l < 0 || l >= n {
                return Err(format!(
                    "cannot determine the layer of tensor {} (must be blk.N. with N < {n})",
                    t.name
                ));
            }
            return Ok((l, n));
        }
        Ok((i, n))
    };
    if hp.arch == "glm5-next"
        && (t.name.contains("attn_q_a")
            || t.name.contains("attn_q_b")
            || t.name.contains("nextn.eh_proj"))
        && !matches!(ty, T::F32 | T::BF16 | T::F16)
    {
        return Ok(T::Q8_0);
    }
    let gqa = hp.n_gqa();
    if cat == C::Output || (st.has_tied_embeddings && cat == C::TokenEmbd) {
        if let Some(o) = rules.output_tensor_type {
            ty = o;
        } else {
            let nx = t.shape.first().copied().unwrap_or(1);
            if ftype == F::MXFP4_MOE || falcon || !nx.is_multiple_of(ty.block_size()) {
                ty = T::Q8_0;
            } else if matches!(
                ftype,
                F::IQ2_XXS | F::IQ2_XS | F::IQ3_XXS | F::IQ1_S | F::IQ2_S | F::IQ2_M | F::IQ1_M
            ) {
                ty = T::Q5_K;
            } else if ty != T::Q8_0 {
                ty = T::Q6_K;
            }
        }
    } else if ftype == F::MXFP4_MOE {
        // Expert tensors (3-D, several experts) → MXFP4, every other → Q8_0.
        ty = if t.shape.get(2).is_some_and(|&n| n > 1) {
            T::MXFP4
        } else {
            T::Q8_0
        };
    } else if cat == C::TokenEmbd {
        if let Some(e) = rules.token_embedding_type {
            ty = e;
        } else if matches!(ftype, F::IQ2_XXS | F::IQ2_XS | F::IQ1_S | F::IQ1_M) {
            ty = T::Q2_K;
        } else if matches!(ftype, F::IQ2_S | F::IQ2_M | F::IQ3_XXS) {
            ty = T::IQ3_S;
        }
    } else if matches!(
        ftype,
        F::IQ2_XXS | F::IQ2_XS | F::IQ1_S | F::IQ2_S | F::IQ2_M | F::IQ1_M
    ) {
        // The 1- and 2-bit mixes.
        let iq2_sm = matches!(ftype, F::IQ2_S | F::IQ2_M);
        if is_attn_v(cat) {
            ty = if gqa >= 4 || hp.n_expert >= 4 {
                T::Q4_K
            } else if iq2_sm {
                T::IQ3_S
            } else {
                T::Q2_K
            };
            st.i_attention_wv += 1;
        } else if hp.n_expert == 8 && cat == C::AttentionK {
            ty = T::Q4_K;
        } else if cat == C::FfnDown {
            if st.i_ffn_down < st.n_layer / 8 {
                ty = if iq2_sm { T::IQ3_S } else { T::Q2_K };
            }
            st.i_ffn_down += 1;
        } else if cat == C::AttentionOutput {
            if hp.n_expert == 8 {
                ty = T::Q5_K;
            } else if matches!(ftype, F::IQ1_S | F::IQ1_M) {
                ty = T::IQ2_XXS;
            } else if iq2_sm {
                ty = T::IQ3_S;
            }
        }
    } else if is_attn_v(cat) {
        if ftype == F::Q2_K {
            ty = if gqa >= 4 { T::Q4_K } else { T::Q3_K };
        } else if ftype == F::Q2_K_S && gqa >= 4 {
            ty = T::Q4_K;
        } else if ftype == F::IQ3_XXS {
            ty = if gqa >= 4 {
                T::Q4_K
            } else if !rules.has_imatrix {
                T::IQ3_S
            } else {
                T::IQ3_XXS
            };
        } else if (matches!(ftype, F::IQ3_XS | F::IQ3_S) && gqa >= 4) || ftype == F::IQ3_M {
            ty = T::Q4_K;
        } else if ftype == F::Q3_K_M {
            ty = if st.i_attention_wv < 2 {
                T::Q5_K
            } else {
                T::Q4_K
            };
        } else if ftype == F::Q3_K_L || (matches!(ftype, F::IQ4_NL | F::IQ4_XS) && gqa >= 4) {
            ty = T::Q5_K;
        } else if matches!(ftype, F::Q4_K_M | F::Q5_K_M)
            && use_more_bits(st.i_attention_wv, st.n_attention_wv)
        {
            ty = T::Q6_K;
        } else if ftype == F::Q4_K_S && st.i_attention_wv < 4 {
            ty = T::Q5_K;
        }
        if hp.is_70b() && matches!(ty, T::Q3_K | T::Q4_K) {
            ty = T::Q5_K;
        }
        if hp.n_expert == 8 {
            ty = T::Q8_0;
        }
        st.i_attention_wv += 1;
    } else if cat == C::AttentionK {
        if hp.n_expert == 8 {
            ty = T::Q8_0;
        } else if ftype == F::IQ3_XS {
            ty = T::IQ3_XXS;
        } else if ftype == F::IQ3_XXS {
            ty = T::IQ2_S;
        }
    } else if cat == C::AttentionQ {
        if ftype == F::IQ3_XS {
            ty = T::IQ3_XXS;
        } else if ftype == F::IQ3_XXS {
            ty = T::IQ2_S;
        }
    } else if cat == C::FfnDown {
        let (i, n) = layer_info(st.i_ffn_down, st.n_layer)?;
        if ftype == F::Q2_K {
            ty = T::Q3_K;
        } else if ftype == F::Q2_K_S {
            if i < n / 8 {
                ty = T::Q4_K;
            }
        } else if ftype == F::IQ3_XXS && !rules.has_imatrix {
            ty = if i < n / 8 { T::Q4_K } else { T::Q3_K };
        } else if ftype == F::Q3_K_M {
            ty = if i < n / 16 {
                T::Q5_K
            } else if !falcon || use_more_bits(i, n) {
                T::Q4_K
            } else {
                T::Q3_K
            };
        } else if ftype == F::IQ3_M && (i < n / 8 || (hp.n_expert == 8 && use_more_bits(i, n))) {
            ty = T::Q4_K;
        } else if ftype == F::Q3_K_L {
            ty = if falcon { T::Q4_K } else { T::Q5_K };
        } else if ftype == F::Q4_K_M {
            if falcon {
                ty = if i < n / 16 {
                    T::Q6_K
                } else if use_more_bits(i, n) {
                    T::Q5_K
                } else {
                    T::Q4_K
                };
            } else if use_more_bits(i, n) {
                ty = T::Q6_K;
            }
        } else if i < n / 8 && matches!(ftype, F::IQ4_NL | F::IQ4_XS) && !rules.has_imatrix {
            ty = T::Q5_K;
        } else if ftype == F::Q5_K_M && use_more_bits(i, n) {
            ty = T::Q6_K;
        } else if ftype == F::Q4_K_S && !falcon && i < n / 8 {
            ty = T::Q5_K;
        } else if matches!(ftype, F::Q4_0 | F::Q5_0) && rules.has_imatrix && i < n / 8 {
            ty = if ftype == F::Q4_0 { T::Q4_1 } else { T::Q5_1 };
        }
        st.i_ffn_down += 1;
    } else if cat == C::AttentionOutput {
        if !falcon {
            if hp.n_expert == 8 {
                if matches!(
                    ftype,
                    F::Q2_K
                        | F::IQ3_XS
                        | F::IQ3_XXS
                        | F::Q3_K_S
                        | F::Q3_K_M
                        | F::IQ4_NL
                        | F::Q4_K_S
                        | F::Q4_K_M
                        | F::IQ3_S
                        | F::IQ3_M
                        | F::IQ4_XS
                ) {
                    ty = T::Q5_K;
                }
            } else if ftype == F::Q2_K {
                ty = T::Q3_K;
            } else if ftype == F::IQ3_XXS {
                ty = T::IQ3_S;
            } else if ftype == F::Q3_K_M {
                ty = T::Q4_K;
            } else if ftype == F::Q3_K_L {
                ty = T::Q5_K;
            } else if ftype == F::IQ3_M {
                ty = T::Q4_K;
            }
        } else if ftype == F::Q3_K_L {
            ty = T::Q4_K;
        }
    } else if cat == C::AttentionQkv {
        // Unreachable in llama.cpp too (attn_qkv is handled as attn_v above); kept as there.
        if matches!(ftype, F::Q3_K_M | F::Q3_K_L | F::IQ3_M) {
            ty = T::Q4_K;
        } else if ftype == F::Q4_K_M {
            ty = T::Q5_K;
        } else if ftype == F::Q5_K_M {
            ty = T::Q6_K;
        }
    } else if cat == C::FfnGate {
        let (i, n) = layer_info(st.i_ffn_gate, st.n_layer)?;
        if ftype == F::IQ3_XS && i >= n / 8 && i < 7 * n / 8 {
            ty = T::IQ3_XXS;
        }
        st.i_ffn_gate += 1;
    } else if cat == C::FfnUp {
        let (i, n) = layer_info(st.i_ffn_up, st.n_layer)?;
        if ftype == F::IQ3_XS && i >= n / 8 && i < 7 * n / 8 {
            ty = T::IQ3_XXS;
        }
        st.i_ffn_up += 1;
    }
    Ok(ty)
}
