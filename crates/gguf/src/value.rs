//! Metadata values: the thirteen GGUF value types, scalars, strings and (nested) arrays.
//!
//! Strings are kept as bytes borrowed from the file: GGUF promises UTF-8 but a hostile file may
//! break that promise, and a re-written file must be byte-identical. Arrays of numbers stay as
//! their little-endian bytes and are decoded on access, so a 262,144-entry score array costs no
//! allocation at all.

use std::borrow::Cow;
use std::fmt;

/// The type tag of a metadata value (`gguf_type` in ggml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The type with this id, or `None`.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The id stored in the file.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Bytes of one value for the fixed-size types; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The short name gguf-dump prints (`u32`, `str`, `arr`, …).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "str",
            Array => "arr",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    /// UTF-8 by the format's promise, checked only when read as `&str`.
    String(Cow<'a, [u8]>),
    Array(Array<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> {
    /// A string value owning its text.
    pub fn string(s: impl Into<String>) -> Value<'static> {
        Value::String(Cow::Owned(s.into().into_bytes()))
    }

    /// The type tag of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as a signed integer when it is any integer type (or a bool).
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            Value::Bool(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as a float when it is any numeric type.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    /// The text of a string value, when it is one and is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The array, when this is one.
    pub fn as_array(&self) -> Option<&Array<'a>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A metadata array: numbers as their little-endian bytes, strings, or further arrays.
#[derive(Clone, Debug, PartialEq)]
pub enum Array<'a> {
    /// Fixed-size elements of `ty` (never `String` or `Array`), little-endian, packed.
    Numbers {
        ty: ValueType,
        bytes: Cow<'a, [u8]>,
    },
    Strings(Vec<Cow<'a, [u8]>>),
    Arrays(Vec<Array<'a>>),
}

impl<'a> Array<'a> {
    /// An array of `u32` values.
    pub fn from_u32s(values: &[u32]) -> Array<'static> {
        Array::Numbers {
            ty: ValueType::U32,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An array of `i32` values.
    pub fn from_i32s(values: &[i32]) -> Array<'static> {
        Array::Numbers {
            ty: ValueType::I32,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An array of `f32` values.
    pub fn from_f32s(values: &[f32]) -> Array<'static> {
        Array::Numbers {
            ty: ValueType::F32,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An array of strings, owning them.
    pub fn from_strs<S: AsRef<str>>(values: &[S]) -> Array<'static> {
        Array::Strings(
            values
                .iter()
                .map(|s| Cow::Owned(s.as_ref().as_bytes().to_vec()))
                .collect(),
        )
    }

    /// The element type tag.
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::Numbers { ty, .. } => *ty,
            Array::Strings(_) => ValueType::String,
            Array::Arrays(_) => ValueType::Array,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::Numbers { ty, bytes } => bytes.len() / ty.fixed_size().unwrap_or(1).max(1),
            Array::Strings(v) => v.len(),
            Array::Arrays(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` when it is a number of any type, as a float.
    pub fn f64_at(&self, i: usize) -> Option<f64> {
        self.number_at(i)?.as_f64()
    }

    /// Element `i` when it is an integer of any type.
    pub fn i128_at(&self, i: usize) -> Option<i128> {
        self.number_at(i)?.as_i128()
    }

    /// Element `i` as bytes, when this is an array of strings.
    pub fn str_bytes_at(&self, i: usize) -> Option<&[u8]> {
        match self {
            Array::Strings(v) => v.get(i).map(|s| s.as_ref()),
            _ => None,
        }
    }

    /// Element `i` of a number array as a scalar [`Value`].
    pub fn number_at(&self, i: usize) -> Option<Value<'static>> {
        let Array::Numbers { ty, bytes } = self else {
            return None;
        };
        let size = ty.fixed_size()?;
        let start = i.checked_mul(size)?;
        let b = bytes.get(start..start.checked_add(size)?)?;
        decode_scalar(*ty, b)
    }

    /// All elements of a string array, when it is one and every element is UTF-8.
    pub fn strs(&self) -> Option<Vec<&str>> {
        match self {
            Array::Strings(v) => v.iter().map(|s| std::str::from_utf8(s).ok()).collect(),
            _ => None,
        }
    }
}

/// Decodes one fixed-size little-endian scalar; `None` when `b` has the wrong length, `ty` is
/// not fixed-size, or a bool byte is neither 0 nor 1.
pub(crate) fn decode_scalar(ty: ValueType, b: &[u8]) -> Option<Value<'static>> {
    Some(match ty {
        ValueType::U8 => Value::U8(*b.first()?),
        ValueType::I8 => Value::I8(i8::from_le_bytes(b.try_into().ok()?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(b.try_into().ok()?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(b.try_into().ok()?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(b.try_into().ok()?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(b.try_into().ok()?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(b.try_into().ok()?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(b.try_into().ok()?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(b.try_into().ok()?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(b.try_into().ok()?)),
        ValueType::Bool => match b {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return None,
        },
        ValueType::String | ValueType::Array => return None,
    })
}

impl fmt::Display for Value<'_> {
    /// Scalars as gguf-dump shows them; strings quoted; arrays summarised after five elements.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => write!(f, "{:?}", String::from_utf8_lossy(s)),
            Value::Array(a) => fmt_array(a, f),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            v => match v.as_i128() {
                Some(i) => write!(f, "{i}"),
                None => Ok(()),
            },
        }
    }
}

fn fmt_array(a: &Array<'_>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    const SHOWN: usize = 5;
    f.write_str("[")?;
    let n = a.len();
    for i in 0..n.min(SHOWN) {
        if i > 0 {
            f.write_str(", ")?;
        }
        match a {
            Array::Numbers { .. } => match a.number_at(i) {
                Some(v) => write!(f, "{v}")?,
                None => f.write_str("?")?,
            },
            Array::Strings(v) => write!(f, "{:?}", String::from_utf8_lossy(&v[i]))?,
            Array::Arrays(v) => fmt_array(&v[i], f)?,
        }
    }
    if n > SHOWN {
        write!(f, ", ... ({n} items)")?;
    }
    f.write_str("]")
}
