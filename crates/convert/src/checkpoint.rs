//! A transformers checkpoint folder: `config.json` and the safetensors shards, each mapped and
//! its header validated by the `safetensors` crate (header at most 100 MB, tensors packed
//! back to back without overlap or gap, the last ending at the end of the file).

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use kernels::mmap::Mmap;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde_json::Value;

use crate::Outtype;
use crate::error::Error;

/// The safetensors crate's limit on a header (and ours).
const MAX_HEADER: u64 = 100_000_000;

/// One tensor of the checkpoint.
#[derive(Debug)]
pub struct SourceTensor {
    pub name: String,
    pub dtype: Dtype,
    /// Outermost first, as in transformers.
    pub shape: Vec<usize>,
    shard: usize,
    /// Byte range in the shard's file.
    range: Range<usize>,
}

pub struct Checkpoint {
    pub config: Value,
    /// Every tensor in llama.cpp's order: shards by file name, tensors by name within one.
    pub tensors: Vec<SourceTensor>,
    shards: Vec<Mmap>,
}

pub fn read_json(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::Missing(path.to_owned()),
        _ => Error::Io {
            path: path.to_owned(),
            source,
        },
    })?;
    serde_json::from_slice(&text).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Checkpoint, Error> {
        if !dir.is_dir() {
            return Err(Error::Io {
                path: dir.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a folder (give a transformers checkpoint folder)",
                ),
            });
        }
        let config = read_json(&dir.join("config.json"))?;
        if !config.is_object() {
            return Err(Error::Config("is not a JSON object".into()));
        }
        let (parts, index_names) = part_names(dir)?;
        let mut shards = Vec::new();
        let mut tensors = Vec::new();
        for (shard, part) in parts.iter().enumerate() {
            let path = dir.join(part);
            let map = Mmap::open(&path).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => Error::Missing(path.clone()),
                _ => Error::Io {
                    path: path.clone(),
                    source,
                },
            })?;
            let mut found = read_header(&path, &map, shard)?;
            found.sort_by(|a, b| a.name.cmp(&b.name));
            tensors.extend(found);
            shards.push(map);
        }
        if let Some(index_names) = index_names {
            let found: BTreeSet<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
            let listed: BTreeSet<&str> = index_names.iter().map(String::as_str).collect();
            if found != listed {
                let missing: Vec<_> = listed.difference(&found).take(5).collect();
                let extra: Vec<_> = found.difference(&listed).take(5).collect();
                return Err(Error::Safetensors {
                    path: dir.join("model.safetensors.index.json"),
                    reason: format!(
                        "the weight map and the shards disagree: listed but not found {missing:?}, \
                         found but not listed {extra:?}"
                    ),
                });
            }
        }
        let mut names = BTreeSet::new();
        for t in &tensors {
            if !names.insert(t.name.as_str()) {
                return Err(Error::tensor(&t.name, "appears in two shards"));
            }
        }
        Ok(Checkpoint {
            config,
            tensors,
            shards,
        })
    }

    /// The bytes of `t`.
    pub fn data(&self, t: &SourceTensor) -> &[u8] {
        &self.shards[t.shard][t.range.clone()]
    }

    /// Drops `t`'s mapped pages from this process's memory once it has been converted, so
    /// that resident memory stays near one tensor's size however large the checkpoint.
    pub fn release(&self, t: &SourceTensor) {
        self.shards[t.shard].release(t.range.clone());
    }

    /// llama.cpp's `auto`: the first tensor of two or more dimensions stored as bf16 or f16
    /// decides; f16 when there is none.
    pub fn auto_outtype(&self) -> Outtype {
        for t in &self.tensors {
            if t.shape.len() < 2 {
                continue;
            }
            match t.dtype {
                Dtype::BF16 => return Outtype::Bf16,
                Dtype::F16 => return Outtype::F16,
                _ => {}
            }
        }
        Outtype::F16
    }
}

/// The safetensors files to read, sorted, and the tensor names of the index if there is one.
fn part_names(dir: &Path) -> Result<(Vec<String>, Option<Vec<String>>), Error> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let json = read_json(&index)?;
        let bad = |reason: &str| Error::Safetensors {
            path: index.clone(),
            reason: reason.to_owned(),
        };
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("has no weight_map object"))?;
        let mut parts = BTreeSet::new();
        for file in map.values() {
            let file = file
                .as_str()
                .ok_or_else(|| bad("a weight_map value is not a file name"))?;
            if file.contains(['/', '\\']) || file == ".." || !file.ends_with(".safetensors") {
                return Err(bad(&format!(
                    "names the file {file:?}, not a .safetensors file in the folder"
                )));
            }
            parts.insert(file.to_owned());
        }
        return Ok((
            parts.into_iter().collect(),
            Some(map.keys().cloned().collect()),
        ));
    }
    if dir.join("model.safetensors").is_file() {
        return Ok((vec!["model.safetensors".to_owned()], None));
    }
    let read = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut parts: Vec<String> = read
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("model") && n.ends_with(".safetensors"))
        .collect();
    parts.sort();
    if parts.is_empty() {
        return Err(Error::Missing(dir.join("model.safetensors")));
    }
    Ok((parts, None))
}

fn read_header(path: &Path, bytes: &[u8], shard: usize) -> Result<Vec<SourceTensor>, Error> {
    let bad = |reason: String| Error::Safetensors {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() < 8 {
        return Err(bad(format!(
            "{} bytes: too short for a safetensors file",
            bytes.len()
        )));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER {
        return Err(bad(format!(
            "header of {n} bytes is over the 100 MB limit (not a safetensors file, or a hostile one)"
        )));
    }
    let (n, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| bad(describe(e)))?;
    let base = 8 + n;
    let mut out = Vec::new();
    for (name, info) in metadata.tensors() {
        let (start, end) = info.data_offsets;
        out.push(SourceTensor {
            name,
            dtype: info.dtype,
            shape: info.shape.clone(),
            shard,
            range: base + start..base + end,
        });
    }
    Ok(out)
}

fn describe(e: SafeTensorError) -> String {
    match e {
        SafeTensorError::InvalidOffset(name) => format!(
            "the data offsets of tensor {name} overlap another tensor's or leave a gap before it"
        ),
        SafeTensorError::MetadataIncompleteBuffer => {
            "the tensors' data offsets do not end at the end of the file (truncated, or offsets \
             outside the file)"
                .to_owned()
        }
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's data offsets do not match its shape and dtype".to_owned()
        }
        SafeTensorError::HeaderTooLarge => "header over the 100 MB limit".to_owned(),
        other => other.to_string(),
    }
}
