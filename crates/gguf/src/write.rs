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

/// A tensor whose data [`Builder::write_streaming`] asks for when it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorPlan {
    pub name: String,
    pub ty: GgmlType,
    /// Elements per dimension, innermost first.
    pub shape: Vec<u64>,
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
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(Error::at(0, ErrorKind::DuplicateTensor(name)));
        }
        let n = check_tensor(&name, ty, shape)?;
        if n != data.len() as u64 {
            let reason = format!(
                "{} bytes of data given, {shape:?} of {} needs {n}",
                data.len(),
                ty.name()
            );
            return Err(Error::at(0, ErrorKind::BadShape { name, reason }));
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
        self.write_streaming(&[], w, |_| Ok(Vec::new()))
    }

    /// Writes the file with the tensors of `plans` after the builder's own, asking `data(i)` for
    /// the bytes of `plans[i]` only when they are due: a file far larger than memory is written
    /// one tensor at a time (`hearth convert`). Each plan is checked as [`Builder::add_tensor`]
    /// checks a tensor (`InvalidInput`), and each data buffer must have exactly the plan's size
    /// (`InvalidData`). Returns the number of bytes written.
    pub fn write_streaming(
        &self,
        plans: &[TensorPlan],
        w: impl Write,
        mut data: impl FnMut(usize) -> io::Result<Vec<u8>>,
    ) -> io::Result<u64> {
        let invalid = |e: Error| io::Error::new(io::ErrorKind::InvalidInput, e);
        let mut sizes = Vec::with_capacity(plans.len());
        for (i, p) in plans.iter().enumerate() {
            let duplicate = self.tensors.iter().any(|t| t.name == p.name)
                || plans[..i].iter().any(|q| q.name == p.name);
            if duplicate {
                return Err(invalid(Error::at(
                    0,
                    ErrorKind::DuplicateTensor(p.name.clone()),
                )));
            }
            sizes.push(check_tensor(&p.name, p.ty, &p.shape).map_err(invalid)?);
        }
        let mut w = Counting {
            inner: w,
            written: 0,
        };
        let align = self.alignment();
        w.write_all(&MAGIC)?;
        w.write_all(&self.version.to_le_bytes())?;
        w.write_all(&((self.tensors.len() + plans.len()) as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (k, v) in &self.metadata {
            write_bytes(&mut w, k.as_bytes())?;
            w.write_all(&v.value_type().id().to_le_bytes())?;
            write_value(&mut w, v)?;
        }
        let infos = self
            .tensors
            .iter()
            .map(|t| (&t.name, t.ty, &t.shape, t.data.len() as u64))
            .chain(
                plans
                    .iter()
                    .zip(&sizes)
                    .map(|(p, &n)| (&p.name, p.ty, &p.shape, n)),
            );
        let mut offset = 0u64;
        for (name, ty, shape, n_bytes) in infos {
            write_bytes(&mut w, name.as_bytes())?;
            w.write_all(&(shape.len() as u32).to_le_bytes())?;
            for d in shape {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&ty.id().to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
            offset += n_bytes.div_ceil(align) * align;
        }
        // No tensors, no data section: nothing to pad to (as llama.cpp's vocabulary-only files).
        if !self.tensors.is_empty() || !plans.is_empty() {
            pad(&mut w, align)?;
        }
        for t in &self.tensors {
            w.write_all(&t.data)?;
            pad(&mut w, align)?;
        }
        for (i, (p, &n)) in plans.iter().zip(&sizes).enumerate() {
            let bytes = data(i)?;
            if bytes.len() as u64 != n {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "tensor {}: {} bytes of data given, its plan needs {n}",
                        p.name,
                        bytes.len()
                    ),
                ));
            }
            w.write_all(&bytes)?;
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

/// The checks every tensor to be written passes (its name's length, its number of dimensions,
/// the reader's shape rules, so that no file written here is one the reader rejects); returns
/// its size in bytes.
fn check_tensor(name: &str, ty: GgmlType, shape: &[u64]) -> Result<u64> {
    let bad = |kind| Err(Error::at(0, kind));
    if name.len() >= MAX_NAME {
        let len = name.len();
        return bad(ErrorKind::TensorNameTooLong {
            name: name.to_owned(),
            len,
        });
    }
    if shape.len() > MAX_DIMS as usize {
        let n_dims = shape.len() as u32;
        return bad(ErrorKind::TooManyDims {
            name: name.to_owned(),
            n_dims,
        });
    }
    if let Err(kind) = check_shape(name, ty, shape) {
        return bad(kind);
    }
    match tensor_bytes(ty, shape) {
        Some(n) => Ok(n),
        None => bad(ErrorKind::BadShape {
            name: name.to_owned(),
            reason: format!("{shape:?} of {} is too large", ty.name()),
        }),
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
