//! `hearth inspect FILE [--json]`: what gguf-dump prints — version, metadata (long arrays and
//! strings summarised), a table of tensors and totals per type.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use gguf::{Array, GgmlType, Gguf, Value};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file
    file: PathBuf,
    /// Print JSON instead of tables
    #[arg(long)]
    json: bool,
}

/// Array elements and string characters shown before a value is summarised.
const SHOWN_ITEMS: usize = 5;
const SHOWN_CHARS: usize = 120;

pub fn run(args: Args) -> anyhow::Result<()> {
    let map = kernels::mmap::Mmap::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let file = Gguf::parse(&map)
        .with_context(|| format!("{} is not a valid GGUF file", args.file.display()))?;
    let out = if args.json {
        render_json(&file)?
    } else {
        render_text(&file)
    };
    print!("{out}");
    Ok(())
}

struct Totals {
    tensors: usize,
    params: u64,
    bytes: u64,
}

fn totals(file: &Gguf<'_>) -> BTreeMap<GgmlType, Totals> {
    let mut by_type = BTreeMap::new();
    for t in file.tensors() {
        let e = by_type.entry(t.ty).or_insert(Totals {
            tensors: 0,
            params: 0,
            bytes: 0,
        });
        e.tensors += 1;
        // Tensors may overlap in a hostile file, so totals can exceed the file size.
        e.params = e.params.saturating_add(t.n_elements());
        e.bytes = e.bytes.saturating_add(t.n_bytes());
    }
    by_type
}

fn type_label(v: &Value<'_>) -> String {
    match v {
        Value::Array(a) => format!("[{}]", a.element_type().name()),
        v => v.value_type().name().to_owned(),
    }
}

fn short_str(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let n = s.chars().count();
    if n <= SHOWN_CHARS {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(SHOWN_CHARS).collect();
        format!("{head:?}... ({n} chars)")
    }
}

fn short_value(v: &Value<'_>) -> String {
    match v {
        Value::String(s) => short_str(s),
        Value::Array(a) => short_array(a),
        v => v.to_string(),
    }
}

fn short_array(a: &Array<'_>) -> String {
    let mut out = String::from("[");
    for i in 0..a.len().min(SHOWN_ITEMS) {
        if i > 0 {
            out.push_str(", ");
        }
        match a {
            Array::Numbers { .. } => {
                out.push_str(&a.number_at(i).map(|v| v.to_string()).unwrap_or_default())
            }
            Array::Strings(v) => out.push_str(&short_str(&v[i])),
            Array::Arrays(v) => out.push_str(&short_array(&v[i])),
        }
    }
    if a.len() > SHOWN_ITEMS {
        let _ = write!(out, ", ... ({} items)", a.len());
    }
    out.push(']');
    out
}

fn shape_text(shape: &[u64]) -> String {
    shape
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" x ")
}

fn render_text(file: &Gguf<'_>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "GGUF version {}, {} metadata keys, {} tensors, alignment {}, data at byte {}",
        file.version,
        file.metadata().len(),
        file.tensors().len(),
        file.alignment(),
        file.data_offset()
    );
    let _ = writeln!(o, "\nMetadata:");
    for (i, (k, v)) in file.metadata().iter().enumerate() {
        let _ = writeln!(
            o,
            "{:>6}: {:<6} | {k} = {}",
            i + 1,
            type_label(v),
            short_value(v)
        );
    }
    if file.tensors().is_empty() {
        let _ = writeln!(o, "\nNo tensors (a vocabulary-only file).");
        return o;
    }
    let name_w = file
        .tensors()
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(o, "\nTensors:");
    let _ = writeln!(
        o,
        "{:>6}  {:<name_w$}  {:<7} {:<20} {:>12} {:>12} {:>12}",
        "#", "name", "type", "shape", "elements", "bytes", "offset"
    );
    for (i, t) in file.tensors().iter().enumerate() {
        let _ = writeln!(
            o,
            "{:>6}  {:<name_w$}  {:<7} {:<20} {:>12} {:>12} {:>12}",
            i + 1,
            t.name,
            t.ty.to_string(),
            shape_text(&t.shape),
            t.n_elements(),
            t.n_bytes(),
            t.offset
        );
    }
    let _ = writeln!(o, "\nTotals:");
    let _ = writeln!(
        o,
        "  {:<8} {:>8} {:>14} {:>14}",
        "type", "tensors", "parameters", "bytes"
    );
    let by_type = totals(file);
    for (ty, t) in &by_type {
        let _ = writeln!(
            o,
            "  {:<8} {:>8} {:>14} {:>14}",
            ty.to_string(),
            t.tensors,
            t.params,
            t.bytes
        );
    }
    let params = by_type
        .values()
        .fold(0u64, |a, t| a.saturating_add(t.params));
    let bytes = by_type
        .values()
        .fold(0u64, |a, t| a.saturating_add(t.bytes));
    let _ = writeln!(
        o,
        "  {:<8} {:>8} {:>14} {:>14}",
        "total",
        file.tensors().len(),
        params,
        bytes
    );
    o
}

fn json_value(v: &Value<'_>) -> serde_json::Value {
    match v {
        Value::String(s) => json!(String::from_utf8_lossy(s)),
        Value::Array(a) => json_array(a),
        Value::Bool(b) => json!(b),
        Value::F32(f) => json!(f),
        Value::F64(f) => json!(f),
        v => match v.as_i128() {
            Some(i) if i >= 0 => json!(i as u64),
            Some(i) => json!(i as i64),
            None => serde_json::Value::Null,
        },
    }
}

fn json_array(a: &Array<'_>) -> serde_json::Value {
    let head: Vec<serde_json::Value> = (0..a.len().min(SHOWN_ITEMS))
        .map(|i| match a {
            Array::Numbers { .. } => a.number_at(i).map(|v| json_value(&v)).unwrap_or_default(),
            Array::Strings(v) => json!(String::from_utf8_lossy(&v[i])),
            Array::Arrays(v) => json_array(&v[i]),
        })
        .collect();
    json!({ "element_type": a.element_type().name(), "len": a.len(), "head": head })
}

fn render_json(file: &Gguf<'_>) -> anyhow::Result<String> {
    let metadata: serde_json::Map<String, serde_json::Value> = file
        .metadata()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                json!({ "type": v.value_type().name(), "value": json_value(v) }),
            )
        })
        .collect();
    let tensors: Vec<serde_json::Value> = file
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ty.name(),
                "shape": t.shape,
                "n_elements": t.n_elements(),
                "n_bytes": t.n_bytes(),
                "offset": t.offset,
            })
        })
        .collect();
    let totals: serde_json::Map<String, serde_json::Value> = totals(file)
        .into_iter()
        .map(|(ty, t)| {
            (
                ty.name().to_owned(),
                json!({ "tensors": t.tensors, "parameters": t.params, "bytes": t.bytes }),
            )
        })
        .collect();
    let doc = json!({
        "version": file.version,
        "alignment": file.alignment(),
        "data_offset": file.data_offset(),
        "metadata": metadata,
        "tensors": tensors,
        "totals": totals,
    });
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}
