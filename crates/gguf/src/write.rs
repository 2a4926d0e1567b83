//! The writer: [`Builder`] collects metadata and tensors and writes a GGUF file the way ggml
//! lays it out (header, key-value pairs, tensor infos, zero padding to the alignment, then each
//! tensor's data padded to the alignment), so a file read by [`Gguf`] re-writes byte for byte.
//! A file without tensors ends right after its metadata, as llama.cpp's vocabulary-only files
//! do (ggml's own writer would pad it; such a file re-writes without those trailing zeros).

use std::borrow::Cow;
use std::io::{self, Write};

use crate::error::{Error, ErrorKind, Result};
use crate::read::{DEFAULT_ALIGNMENT, Gguf, MAGIC, MAX_DIMS, MAX_NAME, check_shape, tensor_bytes};
use crate::types::GgmlType;
use crate::value::{Array, Value};

/// A tensor to be written: its info and its data bytes.
#[derive(Debug, Clone)]
pub struct TensorEntry<'a> {
    pub name: String,
    pub ty: GgmlType,
    /// Elements per dimension, innermost first.
    pub shape: Vec<u64>,
    pub data: Cow<'a, [u8]>,
}

/// The contents of a GGUF file to be written.
#[derive(Debug, Clone)]
pub struct Builder<'a> {
    pub version: u32,
    metadata: Vec<(String, Value<'a>)>,
    tensors: Vec<TensorEntry<'a>>,
}

impl Default for Builder<'_> {
    fn default() -> Self {
        Builder {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl<'a> Builder<'a> {
    /// An empty version-3 file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything in `file`, borrowing its strings and tensor data.
    pub fn from_gguf(file: &Gguf<'a>) -> Self {
        Builder {
            version: file.version,
            metadata: file
                .metadata()
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            tensors: file
                .tensors()
                .iter()
                .map(|t| TensorEntry {
                    name: t.name.to_string(),
                    ty: t.ty,
                    shape: t.shape.clone(),
                    data: Cow::Borrowed(file.tensor_data(t)),
                })
                .collect(),
        }
    }

    /// Sets `key` to `value`, replacing an earlier value of the same key in place.
    pub fn set(&mut self, key: impl Into<String>, value: Value<'a>) -> Result<()> {
        let key = key.into();
        if key.is_empty() {
            return Err(Error::at(0, ErrorKind::KeyEmpty));
        }
        if key == crate::KEY_ALIGNMENT && !matches!(value, Value::U32(a) if a.is_power_of_two()) {
            return Err(Error::at(
                0,
                ErrorKind::BadAlignment(format!("{value:?} is not a u32 power of two")),
            ));
        }
        check_depth(&value)?;
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key, value)),
        }
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value<'a>> {
        let i = self.metadata.iter().position(|(k, _)| k == key)?;
        Some(self.metadata.remove(i).1)
    }

    /// The metadata in the order it will be written.
    pub fn metadata(&self) -> &[(String, Value<'a>)] {
        &self.metadata
    }

    /// The tensors in the order they will be written.
    pub fn tensors(&self) -> &[TensorEntry<'a>] {
        &self.tensors
    }

    /// Adds a tensor, checking its name, shape and that `data` has exactly the right size.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ty: GgmlType,
        shape: &[u64],
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<()> {
        let name = name.into();
        let data = data.into();
        let bad = |kind| Err(Error::at(0, kind));
        if name.len() >= MAX_NAME {
            let len = name.len();
            return bad(ErrorKind::TensorNameTooLong { name, len });
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return bad(ErrorKind::DuplicateTensor(name));
        }
        if shape.len() > MAX_DIMS as usize {
            let n_dims = shape.len() as u32;
            return bad(ErrorKind::TooManyDims { name, n_dims });
        }
        // The reader's shape rules, so that no file written here is one it rejects.
        if let Err(kind) = check_shape(&name, ty, shape) {
            return bad(kind);
        }
        match tensor_bytes(ty, shape) {
            Some(n) if n == data.len() as u64 => {}
            expected => {
                let reason = format!(
                    "{} bytes of data given, {shape:?} of {} needs {expected:?}",
                    data.len(),
                    ty.name()
                );
                return bad(ErrorKind::BadShape { name, reason });
            }
        }
        self.tensors.push(TensorEntry {
            name,
            ty,
            shape: shape.to_vec(),
            data,
        });
        Ok(())
    }

    fn alignment(&self) -> u64 {
        match self
            .metadata
            .iter()
            .find(|(k, _)| k == crate::KEY_ALIGNMENT)
        {
            Some((_, Value::U32(a))) => u64::from(*a),
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// Writes the file; returns the number of bytes written.
    pub fn write_to(&self, w: impl Write) -> io::Result<u64> {
        let mut w = Counting {
            inner: w,
            written: 0,
        };
        let align = self.alignment();
        w.write_all(&MAGIC)?;
        w.write_all(&self.version.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (k, v) in &self.metadata {
            write_bytes(&mut w, k.as_bytes())?;
            w.write_all(&v.value_type().id().to_le_bytes())?;
            write_value(&mut w, v)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_bytes(&mut w, t.name.as_bytes())?;
            w.write_all(&(t.shape.len() as u32).to_le_bytes())?;
            for d in &t.shape {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&t.ty.id().to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
            offset += (t.data.len() as u64).div_ceil(align) * align;
        }
        // No tensors, no data section: nothing to pad to (as llama.cpp's vocabulary-only files).
        if !self.tensors.is_empty() {
            pad(&mut w, align)?;
        }
        for t in &self.tensors {
            w.write_all(&t.data)?;
            pad(&mut w, align)?;
        }
        w.flush()?;
        Ok(w.written)
    }

    /// Writes the file into a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }
}

fn check_depth(v: &Value<'_>) -> Result<()> {
    fn depth(a: &Array<'_>) -> usize {
        match a {
            Array::Arrays(v) => 1 + v.iter().map(depth).max().unwrap_or(0),
            _ => 1,
        }
    }
    match v {
        Value::Array(a) if depth(a) > crate::read::MAX_ARRAY_DEPTH => Err(Error::at(
            0,
            ErrorKind::NestingTooDeep {
                depth: crate::read::MAX_ARRAY_DEPTH,
            },
        )),
        _ => Ok(()),
    }
}

struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(w: &mut Counting<W>, align: u64) -> io::Result<()> {
    const ZEROS: [u8; 64] = [0; 64];
    let mut n = w.written.next_multiple_of(align) - w.written;
    while n > 0 {
        let k = n.min(ZEROS.len() as u64);
        w.write_all(&ZEROS[..k as usize])?;
        n -= k;
    }
    Ok(())
}

fn write_bytes(w: &mut impl Write, b: &[u8]) -> io::Result<()> {
    w.write_all(&(b.len() as u64).to_le_bytes())?;
    w.write_all(b)
}

fn write_value(w: &mut impl Write, v: &Value<'_>) -> io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&x.to_le_bytes()),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::String(s) => write_bytes(w, s),
        Value::Array(a) => write_array(w, a),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
    }
}

fn write_array(w: &mut impl Write, a: &Array<'_>) -> io::Result<()> {
    w.write_all(&a.element_type().id().to_le_bytes())?;
    w.write_all(&(a.len() as u64).to_le_bytes())?;
    match a {
        Array::Numbers { bytes, .. } => w.write_all(bytes),
        Array::Strings(v) => v.iter().try_for_each(|s| write_bytes(w, s)),
        Array::Arrays(v) => v.iter().try_for_each(|a| write_array(w, a)),
    }
}
