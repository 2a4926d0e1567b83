//! The reader: [`Gguf::parse`] checks a whole file held in memory and borrows from it.
//!
//! Every count, length and offset read from the file is checked against the bytes that remain
//! before anything is allocated for it, with checked arithmetic throughout, so a hostile file
//! gets an [`Error`] naming the problem and its offset, never a panic or a huge allocation.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::error::{Error, ErrorKind, Result};
use crate::types::GgmlType;
use crate::value::{Array, Value, ValueType, decode_scalar};

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of each tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Longest tensor name, in bytes, including ggml's terminating NUL (`GGML_MAX_NAME`).
pub const MAX_NAME: usize = 64;
/// Deepest nesting of arrays inside arrays that the reader accepts.
pub const MAX_ARRAY_DEPTH: usize = 4;

/// A parsed GGUF file borrowing its strings, arrays and tensor data from the input bytes.
#[derive(Debug, Clone)]
pub struct Gguf<'a> {
    pub version: u32,
    metadata: Vec<(Cow<'a, str>, Value<'a>)>,
    tensors: Vec<TensorInfo<'a>>,
    alignment: u64,
    data_offset: u64,
    data: &'a [u8],
}

/// Where a tensor's data lies and how to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo<'a> {
    pub name: Cow<'a, str>,
    pub ty: GgmlType,
    /// Elements per dimension, innermost (contiguous) first, as ggml's `ne`.
    pub shape: Vec<u64>,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo<'_> {
    /// Total number of elements.
    pub fn n_elements(&self) -> u64 {
        // Checked at parse time to fit in i64; saturating for infos made by hand.
        self.shape.iter().fold(1u64, |n, &d| n.saturating_mul(d))
    }

    /// Bytes of data (checked at parse time not to overflow).
    pub fn n_bytes(&self) -> u64 {
        tensor_bytes(self.ty, &self.shape).unwrap_or(0)
    }
}

/// Bytes of a tensor of `ty` and `shape`, or `None` when the row is not whole blocks or the
/// size overflows.
pub fn tensor_bytes(ty: GgmlType, shape: &[u64]) -> Option<u64> {
    let row = ty.row_bytes(*shape.first().unwrap_or(&1))?;
    shape
        .iter()
        .skip(1)
        .try_fold(row, |acc, &d| acc.checked_mul(d))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn err(&self, kind: ErrorKind) -> Error {
        Error::at(self.pos as u64, kind)
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(ErrorKind::Truncated {
                what,
                needed: n,
                available: self.remaining(),
            }));
        }
        let n = n as usize; // fits: n <= remaining
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that must fit: `count` items of at least `min_item_bytes` each.
    fn count(&mut self, what: &'static str, min_item_bytes: u64) -> Result<usize> {
        let start = self.pos as u64;
        let count = self.u64(what)?;
        let fits = count
            .checked_mul(min_item_bytes)
            .is_some_and(|b| b <= self.remaining());
        if !fits || usize::try_from(count).is_err() {
            return Err(Error::at(start, ErrorKind::CountTooLarge { what, count }));
        }
        Ok(count as usize)
    }

    fn string_bytes(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let start = self.pos as u64;
        let len = self.u64(what)?;
        if len > self.remaining() {
            return Err(Error::at(
                start,
                ErrorKind::Truncated {
                    what,
                    needed: len,
                    available: self.remaining(),
                },
            ));
        }
        self.take(len, what)
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str> {
        let start = self.pos as u64;
        let b = self.string_bytes(what)?;
        std::str::from_utf8(b).map_err(|_| Error::at(start, ErrorKind::InvalidUtf8 { what }))
    }

    fn value_type(&mut self) -> Result<ValueType> {
        let start = self.pos as u64;
        let id = self.u32("value type")?;
        ValueType::from_id(id).ok_or(Error::at(start, ErrorKind::UnknownValueType(id)))
    }

    fn value(&mut self, ty: ValueType) -> Result<Value<'a>> {
        match ty {
            ValueType::String => Ok(Value::String(Cow::Borrowed(self.string_bytes("string")?))),
            ValueType::Array => Ok(Value::Array(self.array_value(0)?)),
            _ => self.scalar(ty),
        }
    }

    fn scalar(&mut self, ty: ValueType) -> Result<Value<'a>> {
        let start = self.pos as u64;
        let size = ty.fixed_size().unwrap_or(0) as u64;
        let b = self.take(size, "value")?;
        decode_scalar(ty, b).ok_or_else(|| {
            Error::at(
                start,
                ErrorKind::InvalidBool(b.first().copied().unwrap_or(0)),
            )
        })
    }

    fn array_value(&mut self, depth: usize) -> Result<Array<'a>> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.err(ErrorKind::NestingTooDeep {
                depth: MAX_ARRAY_DEPTH,
            }));
        }
        let ty = self.value_type()?;
        match ty {
            ValueType::String => {
                let n = self.count("string array", 8)?;
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(Cow::Borrowed(self.string_bytes("array string")?));
                }
                Ok(Array::Strings(out))
            }
            ValueType::Array => {
                let n = self.count("nested array", 12)?;
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(self.array_value(depth + 1)?);
                }
                Ok(Array::Arrays(out))
            }
            _ => {
                let size = ty.fixed_size().unwrap_or(1) as u64;
                let n = self.count("array", size)?;
                let start = self.pos as u64;
                let bytes = self.take(n as u64 * size, "array elements")?;
                if ty == ValueType::Bool
                    && let Some(&b) = bytes.iter().find(|&&b| b > 1)
                {
                    return Err(Error::at(start, ErrorKind::InvalidBool(b)));
                }
                Ok(Array::Numbers {
                    ty,
                    bytes: Cow::Borrowed(bytes),
                })
            }
        }
    }
}

impl<'a> Gguf<'a> {
    /// Parses and checks a whole GGUF file.
    pub fn parse(bytes: &'a [u8]) -> Result<Gguf<'a>> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c.array::<4>("magic")?;
        if magic != MAGIC {
            return Err(Error::at(0, ErrorKind::BadMagic(magic)));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::at(4, ErrorKind::UnsupportedVersion(version)));
        }
        // A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset)
        // bytes; a key-value pair at least 8 (key length) + 4 (type) + 1.
        let n_tensors = c.count("tensor", 24)?;
        let n_kv = c.count("metadata key-value", 13)?;

        let mut metadata: Vec<(Cow<'a, str>, Value<'a>)> = Vec::with_capacity(n_kv);
        let mut keys = HashSet::with_capacity(n_kv);
        // Where `general.alignment` was found, so that a bad value is reported there.
        let mut alignment_at = 0;
        for _ in 0..n_kv {
            let at = c.pos as u64;
            let key = c.str("metadata key")?;
            if key.is_empty() {
                return Err(Error::at(at, ErrorKind::KeyEmpty));
            }
            if !keys.insert(key) {
                return Err(Error::at(at, ErrorKind::DuplicateKey(key.to_owned())));
            }
            if key == crate::KEY_ALIGNMENT {
                alignment_at = at;
            }
            let ty = c.value_type()?;
            let value = c.value(ty)?;
            metadata.push((Cow::Borrowed(key), value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == crate::KEY_ALIGNMENT) {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some((_, Value::U32(a))) => {
                return Err(Error::at(
                    alignment_at,
                    ErrorKind::BadAlignment(format!("{a} is not a power of two")),
                ));
            }
            Some((_, v)) => {
                return Err(Error::at(
                    alignment_at,
                    ErrorKind::BadAlignment(format!(
                        "has type {}, expected u32",
                        v.value_type().name()
                    )),
                ));
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors);
        // Where each tensor's offset field lies, for reporting a range outside the data.
        let mut offset_fields = Vec::with_capacity(n_tensors);
        let mut names = HashSet::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let at = c.pos as u64;
            let name = c.str("tensor name")?;
            if name.len() >= MAX_NAME {
                return Err(Error::at(
                    at,
                    ErrorKind::TensorNameTooLong {
                        name: name.to_owned(),
                        len: name.len(),
                    },
                ));
            }
            if !names.insert(name) {
                return Err(Error::at(at, ErrorKind::DuplicateTensor(name.to_owned())));
            }
            let dims_at = c.pos as u64;
            let n_dims = c.u32("tensor n_dims")?;
            if n_dims > MAX_DIMS {
                return Err(Error::at(
                    dims_at,
                    ErrorKind::TooManyDims {
                        name: name.to_owned(),
                        n_dims,
                    },
                ));
            }
            let mut shape = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                shape.push(c.u64("tensor dimension")?);
            }
            let type_at = c.pos as u64;
            let type_id = c.u32("tensor type")?;
            let ty = GgmlType::from_id(type_id).ok_or_else(|| {
                Error::at(
                    type_at,
                    ErrorKind::UnknownTensorType {
                        name: name.to_owned(),
                        id: type_id,
                    },
                )
            })?;
            check_shape(name, ty, &shape).map_err(|kind| Error::at(dims_at, kind))?;
            let offset_at = c.pos as u64;
            let offset = c.u64("tensor offset")?;
            if offset % alignment != 0 {
                return Err(Error::at(
                    offset_at,
                    ErrorKind::MisalignedTensor {
                        name: name.to_owned(),
                        offset,
                        alignment,
                    },
                ));
            }
            tensors.push(TensorInfo {
                name: Cow::Borrowed(name),
                ty,
                shape,
                offset,
            });
            offset_fields.push(offset_at);
        }

        let header_end = c.pos as u64;
        // Like ggml, a file without tensors has no data section and so no padding before it
        // (llama.cpp's vocabulary-only files end right after their metadata).
        let data_offset = if tensors.is_empty() {
            header_end
        } else {
            header_end.div_ceil(alignment) * alignment
        };
        let data: &[u8] = match usize::try_from(data_offset) {
            Ok(o) if o <= bytes.len() => &bytes[o..],
            _ => {
                return Err(Error::at(
                    header_end,
                    ErrorKind::Truncated {
                        what: "padding before tensor data",
                        needed: data_offset - header_end,
                        available: bytes.len() as u64 - header_end,
                    },
                ));
            }
        };
        for (t, &offset_at) in tensors.iter().zip(&offset_fields) {
            let size = t.n_bytes();
            let fits = t
                .offset
                .checked_add(size)
                .is_some_and(|end| end <= data.len() as u64);
            if !fits {
                return Err(Error::at(
                    offset_at,
                    ErrorKind::TensorOutOfBounds {
                        name: t.name.to_string(),
                        offset: t.offset,
                        size,
                        data_len: data.len() as u64,
                    },
                ));
            }
        }
        Ok(Gguf {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            data,
        })
    }

    /// Metadata key-value pairs in file order.
    pub fn metadata(&self) -> &[(Cow<'a, str>, Value<'a>)] {
        &self.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo<'a>> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The data bytes of a tensor of this file (bounds were checked by `parse`); empty for a
    /// hand-made info whose range lies outside the data.
    pub fn tensor_data(&self, t: &TensorInfo<'_>) -> &'a [u8] {
        let range = usize::try_from(t.offset).ok().and_then(|start| {
            let len = usize::try_from(t.n_bytes()).ok()?;
            Some(start..start.checked_add(len)?)
        });
        range.and_then(|r| self.data.get(r)).unwrap_or(&[])
    }

    /// Alignment of the data section and of every tensor.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset of the data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key` converted to `T`; an error when absent or of an unfitting type.
    pub fn get_as<'s, T: FromValue<'s>>(&'s self, key: &str) -> Result<T> {
        self.get_opt(key)?
            .ok_or_else(|| Error::at(0, ErrorKind::Missing(key.to_owned())))
    }

    /// The value of `key` converted to `T`, `None` when absent; an error for an unfitting type.
    pub fn get_opt<'s, T: FromValue<'s>>(&'s self, key: &str) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => T::from_value(v).map(Some).ok_or_else(|| {
                Error::at(
                    0,
                    ErrorKind::WrongType {
                        key: key.to_owned(),
                        expected: T::EXPECTED,
                        found: v.value_type().name(),
                    },
                )
            }),
        }
    }

    /// `key` as a `u32` (any integer type whose value fits is accepted).
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.get_as(key)
    }

    /// `key` as a `u64` (any non-negative integer type is accepted).
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get_as(key)
    }

    /// `key` as an `f32` (floats and integers are accepted).
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.get_as(key)
    }

    /// `key` as a bool.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.get_as(key)
    }

    /// `key` as UTF-8 text.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get_as(key)
    }

    /// `key` as an array of any element type.
    pub fn get_array(&self, key: &str) -> Result<&Array<'_>> {
        self.get_as(key)
    }

    /// `key` as an array of UTF-8 strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let a = self.get_array(key)?;
        a.strs().ok_or_else(|| {
            Error::at(
                0,
                ErrorKind::WrongType {
                    key: key.to_owned(),
                    expected: "array of UTF-8 strings",
                    found: a.element_type().name(),
                },
            )
        })
    }

    /// The architecture named by `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str(crate::KEY_ARCHITECTURE)
    }
}

pub(crate) fn check_shape(name: &str, ty: GgmlType, shape: &[u64]) -> Result<(), ErrorKind> {
    let bad = |reason: String| ErrorKind::BadShape {
        name: name.to_owned(),
        reason,
    };
    let mut n: u64 = 1;
    for (i, &d) in shape.iter().enumerate() {
        if d > i64::MAX as u64 {
            return Err(bad(format!("dimension {i} is {} (negative)", d as i64)));
        }
        n = n
            .checked_mul(d)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| bad(format!("element count of {shape:?} overflows")))?;
    }
    let ne0 = shape.first().copied().unwrap_or(1);
    if ne0 % ty.block_size() != 0 {
        return Err(bad(format!(
            "row of {ne0} elements is not a multiple of {}'s block size {}",
            ty.name(),
            ty.block_size()
        )));
    }
    if tensor_bytes(ty, shape).is_none_or(|b| b > i64::MAX as u64) {
        return Err(bad(format!("byte size of {shape:?} overflows")));
    }
    Ok(())
}

/// Conversion of a metadata value to a Rust type, for the typed getters.
pub trait FromValue<'v>: Sized {
    /// What the conversion accepts, for error messages.
    const EXPECTED: &'static str;
    fn from_value(v: &'v Value<'_>) -> Option<Self>;
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl FromValue<'_> for $t {
            const EXPECTED: &'static str = stringify!($t);
            fn from_value(v: &Value<'_>) -> Option<Self> {
                match v {
                    Value::Bool(_) => None,
                    v => v.as_i128().and_then(|i| <$t>::try_from(i).ok()),
                }
            }
        }
    )*};
}
from_int!(u8, u16, u32, u64, i8, i16, i32, i64, usize);

impl FromValue<'_> for f32 {
    const EXPECTED: &'static str = "f32";
    fn from_value(v: &Value<'_>) -> Option<Self> {
        match v {
            Value::Bool(_) => None,
            v => v.as_f64().map(|f| f as f32),
        }
    }
}

impl FromValue<'_> for f64 {
    const EXPECTED: &'static str = "f64";
    fn from_value(v: &Value<'_>) -> Option<Self> {
        match v {
            Value::Bool(_) => None,
            v => v.as_f64(),
        }
    }
}

impl FromValue<'_> for bool {
    const EXPECTED: &'static str = "bool";
    fn from_value(v: &Value<'_>) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl<'v> FromValue<'v> for &'v str {
    const EXPECTED: &'static str = "UTF-8 string";
    fn from_value(v: &'v Value<'_>) -> Option<Self> {
        v.as_str()
    }
}

impl<'v> FromValue<'v> for &'v Array<'v> {
    const EXPECTED: &'static str = "array";
    fn from_value(v: &'v Value<'_>) -> Option<Self> {
        v.as_array()
    }
}
