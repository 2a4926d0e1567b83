//! llama.cpp's importance-matrix files, as `llama-imatrix` writes them and `llama-quantize`
//! reads them (common/imatrix-loader.cpp): [`Imatrix::parse`] takes either format, and
//! [`Imatrix::weights`] turns the sums into the per-column weights the quantizers take.
//!
//! - **GGUF** (current): for each weight matrix `W` two f32 tensors, `W.in_sum2` (the sum of
//!   squared activations per input column, `ne0 × n_expert`) and `W.counts` (how many tokens
//!   each expert saw, `1 × n_expert`), plus metadata `imatrix.datasets` (array of strings),
//!   `imatrix.chunk_count` and `imatrix.chunk_size` (u32).
//! - **Legacy `.dat`**: `i32 n_entries`, then per entry `i32 len, name, i32 ncall, i32 nval,
//!   nval × f32` (sums already divided by the count, times `ncall`), then optionally
//!   `i32 chunk_count, i32 len, dataset`.
//!
//! Both are read from untrusted bytes: every length is checked against the input.

use std::collections::BTreeMap;
use std::path::Path;

use gguf::{GgmlType, Gguf};

use crate::Error;

/// `imatrix.datasets`: the texts the matrix was collected on.
pub const KEY_DATASETS: &str = "imatrix.datasets";
/// `imatrix.chunk_count`: how many chunks of text were evaluated.
pub const KEY_CHUNK_COUNT: &str = "imatrix.chunk_count";
/// `imatrix.chunk_size`: tokens per chunk.
pub const KEY_CHUNK_SIZE: &str = "imatrix.chunk_size";
/// Suffix of the tensor holding a matrix's sums of squared activations.
pub const SUFFIX_SUMS: &str = ".in_sum2";
/// Suffix of the tensor holding a matrix's token counts (one per expert).
pub const SUFFIX_COUNTS: &str = ".counts";

/// The collected statistics of one weight matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Per input column (and per expert, expert-major): the sum of squared activations.
    pub sums: Vec<f32>,
    /// Per expert: how many activations were summed (legacy: one value, the call count).
    pub counts: Vec<i64>,
}

/// An importance matrix file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    /// By weight-matrix name (`blk.0.attn_q.weight`).
    pub entries: BTreeMap<String, Entry>,
    pub datasets: Vec<String>,
    pub chunk_count: u32,
    pub chunk_size: u32,
    /// Read from the legacy `.dat` format.
    pub is_legacy: bool,
    /// The GGUF file had all three `imatrix.*` keys (llama-quantize refuses one without).
    pub has_metadata: bool,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Imatrix(msg.into())
}

impl Imatrix {
    /// Reads an importance matrix file of either format.
    pub fn read(path: &Path) -> Result<Imatrix, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::Io(path.display().to_string(), e))?;
        Imatrix::parse(&bytes)
    }

    /// Parses an importance matrix: GGUF when the bytes start with `GGUF`, else legacy.
    pub fn parse(bytes: &[u8]) -> Result<Imatrix, Error> {
        if bytes.starts_with(b"GGUF") {
            Imatrix::parse_gguf(bytes)
        } else {
            Imatrix::parse_legacy(bytes)
        }
    }

    fn parse_gguf(bytes: &[u8]) -> Result<Imatrix, Error> {
        let file = Gguf::parse(bytes).map_err(|e| bad(format!("not a valid GGUF file: {e}")))?;
        if file.tensors().is_empty() {
            return Err(bad("no data (no tensors)"));
        }
        let mut m = Imatrix::default();
        if let Some(a) = file.get(KEY_DATASETS).and_then(|v| v.as_array())
            && let Some(s) = a.strs()
        {
            m.datasets = s.into_iter().map(str::to_string).collect();
        }
        let u32_key = |k: &str| -> Result<Option<u32>, Error> {
            file.get_opt::<u32>(k).map_err(|e| bad(format!("{k}: {e}")))
        };
        let chunk_count = u32_key(KEY_CHUNK_COUNT)?;
        let chunk_size = u32_key(KEY_CHUNK_SIZE)?;
        m.has_metadata =
            file.get(KEY_DATASETS).is_some() && chunk_count.is_some() && chunk_size.is_some();
        m.chunk_count = chunk_count.unwrap_or(0);
        m.chunk_size = chunk_size.unwrap_or(0);

        let mut pairs: BTreeMap<&str, (Option<&gguf::TensorInfo>, Option<&gguf::TensorInfo>)> =
            BTreeMap::new();
        for t in file.tensors() {
            if let Some(n) = t.name.strip_suffix(SUFFIX_SUMS) {
                pairs.entry(n).or_default().0 = Some(t);
            } else if let Some(n) = t.name.strip_suffix(SUFFIX_COUNTS) {
                pairs.entry(n).or_default().1 = Some(t);
            }
        }
        let floats = |t: &gguf::TensorInfo| -> Vec<f32> {
            file.tensor_data(t)
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        for (name, pair) in pairs {
            let (Some(sums), Some(counts)) = pair else {
                return Err(bad(format!("mismatched sums and counts for {name}")));
            };
            if sums.ty != GgmlType::F32 || counts.ty != GgmlType::F32 {
                return Err(bad(format!("sums and counts for {name} must be F32")));
            }
            let sums = floats(sums);
            // llama.cpp rounds the stored counts with lround.
            let counts: Vec<i64> = floats(counts).iter().map(|&c| c.round() as i64).collect();
            if counts.is_empty() || !sums.len().is_multiple_of(counts.len()) {
                return Err(bad(format!(
                    "{name}: {} sums do not split into {} experts",
                    sums.len(),
                    counts.len()
                )));
            }
            m.entries.insert(name.to_string(), Entry { sums, counts });
        }
        Ok(m)
    }

    fn parse_legacy(bytes: &[u8]) -> Result<Imatrix, Error> {
        let n_entries = match bytes.get(0..4) {
            Some(b) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        };
        if n_entries < 1 {
            return Err(bad(
                "not an imatrix file: no GGUF magic, and no legacy entries",
            ));
        }
        let mut m = Imatrix {
            is_legacy: true,
            ..Imatrix::default()
        };
        // Every entry takes at least 16 bytes: more entries than that is not a real file.
        if n_entries as usize > bytes.len() / 16 {
            return Err(bad(format!(
                "{n_entries} entries cannot fit in {} bytes",
                bytes.len()
            )));
        }
        let mut pos = 4usize;
        let take = |pos: &mut usize, n: usize, what: &str| -> Result<&[u8], Error> {
            let end = pos
                .checked_add(n)
                .filter(|&e| e <= bytes.len())
                .ok_or_else(|| bad(format!("truncated legacy imatrix file (reading {what})")))?;
            let s = &bytes[*pos..end];
            *pos = end;
            Ok(s)
        };
        let int = |pos: &mut usize, what: &str| -> Result<i32, Error> {
            let b = take(pos, 4, what)?;
            Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        for i in 0..n_entries {
            let len = int(&mut pos, "a name length")?;
            let len =
                usize::try_from(len).map_err(|_| bad(format!("entry {i}: bad name length")))?;
            let name = String::from_utf8_lossy(take(&mut pos, len, "a name")?).into_owned();
            let ncall = int(&mut pos, "a call count")?;
            let nval = int(&mut pos, "a value count")?;
            if nval < 1 {
                return Err(bad(format!("entry {name}: {nval} values")));
            }
            let data = take(&mut pos, nval as usize * 4, "values")?;
            let sums = data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            m.entries.insert(
                name,
                Entry {
                    sums,
                    counts: vec![i64::from(ncall)],
                },
            );
        }
        if pos < bytes.len()
            && let Ok(n_calls) = int(&mut pos, "the chunk count")
        {
            m.chunk_count = n_calls.max(0) as u32;
            if let Ok(len) = int(&mut pos, "the dataset length")
                && len > 0
                && let Ok(s) = take(&mut pos, len as usize, "the dataset")
            {
                m.datasets.push(String::from_utf8_lossy(s).into_owned());
            }
        }
        Ok(m)
    }

    /// The per-column importance weights by matrix name, as llama-quantize derives them: GGUF
    /// sums divided by each expert's count (1 where an expert saw no tokens); legacy sums
    /// divided by their call count. Non-finite weights are an error (llama.cpp refuses them).
    pub fn weights(&self) -> Result<BTreeMap<String, Vec<f32>>, Error> {
        let mut out = BTreeMap::new();
        for (name, e) in &self.entries {
            let w: Vec<f32> = if self.is_legacy {
                let ncall = e.counts.first().copied().unwrap_or(0);
                if ncall > 0 {
                    e.sums.iter().map(|&s| s / ncall as f32).collect()
                } else {
                    e.sums.clone()
                }
            } else {
                let ne0 = e.sums.len() / e.counts.len();
                let mut w = vec![0.0f32; e.sums.len()];
                for (j, &c) in e.counts.iter().enumerate() {
                    let count = c as f32;
                    for i in 0..ne0 {
                        w[j * ne0 + i] = if count > 0.0 {
                            e.sums[j * ne0 + i] / count
                        } else {
                            1.0
                        };
                    }
                }
                w
            };
            if let Some(v) = w.iter().find(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "imatrix contains non-finite value {v} (for {name})"
                )));
            }
            out.insert(name.clone(), w);
        }
        Ok(out)
    }
}
