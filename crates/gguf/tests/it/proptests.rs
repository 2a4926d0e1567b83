//! Property tests: random metadata and tensors round-trip through the writer and the reader
//! (and re-write byte for byte), and no byte string — random, or a valid file mutated — makes
//! the reader panic. Whatever the reader accepts, the writer re-writes into a file the reader
//! accepts with the same content.

use std::borrow::Cow;

use gguf::{Array, Builder, GgmlType, Gguf, KEY_ALIGNMENT, Value, ValueType};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// Metadata string bytes: usually text, sometimes bytes that are not UTF-8 (GGUF strings are
/// kept as bytes, so those must survive too).
fn string_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "\\PC{0,10}".prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..10),
    ]
}

fn scalar() -> impl Strategy<Value = Value<'static>> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        // From bits, so NaNs and infinities are covered too.
        any::<u32>().prop_map(|b| Value::F32(f32::from_bits(b))),
        any::<bool>().prop_map(Value::Bool),
        string_bytes().prop_map(|s| Value::String(Cow::Owned(s))),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(|b| Value::F64(f64::from_bits(b))),
    ]
}

const FIXED_TYPES: [ValueType; 11] = [
    ValueType::U8,
    ValueType::I8,
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::F32,
    ValueType::Bool,
    ValueType::U64,
    ValueType::I64,
    ValueType::F64,
];

fn number_array() -> impl Strategy<Value = Array<'static>> {
    (select(&FIXED_TYPES[..]), 0usize..6).prop_flat_map(|(ty, n)| {
        let size = ty.fixed_size().unwrap_or(1);
        vec(any::<u8>(), n * size).prop_map(move |mut bytes| {
            if ty == ValueType::Bool {
                bytes.iter_mut().for_each(|b| *b &= 1);
            }
            Array::Numbers {
                ty,
                bytes: Cow::Owned(bytes),
            }
        })
    })
}

/// Arrays of numbers, of strings, or of arrays, nested at most as deep as the reader allows.
fn array() -> impl Strategy<Value = Array<'static>> {
    let leaf = prop_oneof![
        number_array(),
        vec(string_bytes(), 0..4)
            .prop_map(|v| Array::Strings(v.into_iter().map(Cow::Owned).collect())),
    ];
    let levels = gguf::read::MAX_ARRAY_DEPTH as u32 - 1;
    leaf.prop_recursive(levels, 24, 3, |inner| {
        vec(inner, 0..3).prop_map(Array::Arrays)
    })
}

fn value() -> impl Strategy<Value = Value<'static>> {
    prop_oneof![
        3 => scalar(),
        1 => array().prop_map(Value::Array),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z][a-z0-9_.]{0,20}",
        1 => "\\PC{1,8}",
    ]
    .prop_filter("alignment is set on its own", |k| k != KEY_ALIGNMENT)
}

/// A tensor type and a shape of whole blocks; small dimensions keep the data small.
fn tensor_shape() -> impl Strategy<Value = (GgmlType, Vec<u64>)> {
    (select(GgmlType::ALL), 0usize..=4).prop_flat_map(|(ty, n_dims)| {
        let first = (0u64..=3).prop_map(move |blocks| blocks * ty.block_size());
        let rest = vec(0u64..=2, n_dims.saturating_sub(1));
        (Just(ty), first, rest, Just(n_dims)).prop_map(|(ty, first, rest, n_dims)| {
            // No dimensions means one element: only possible for types of one-element blocks.
            if n_dims == 0 && ty.block_size() == 1 {
                return (ty, vec![]);
            }
            let mut shape = vec![first];
            shape.extend(rest);
            (ty, shape)
        })
    })
}

fn tensor() -> impl Strategy<Value = (GgmlType, Vec<u64>, String, Vec<u8>)> {
    (tensor_shape(), "[a-z_.]{0,40}").prop_flat_map(|((ty, shape), name)| {
        let n = gguf::tensor_bytes(ty, &shape).unwrap_or(0) as usize;
        (Just(ty), Just(shape), Just(name), vec(any::<u8>(), n))
    })
}

/// A random file: version 2 or 3, perhaps a custom alignment, metadata and tensors.
fn file() -> impl Strategy<Value = Builder<'static>> {
    let alignment = prop_oneof![Just(None), (0u32..=8).prop_map(|p| Some(1u32 << p))];
    (
        select(&[2u32, 3][..]),
        alignment,
        vec((key(), value()), 0..8),
        vec(tensor(), 0..5),
    )
        .prop_map(|(version, alignment, metadata, tensors)| {
            let mut b = Builder::new();
            b.version = version;
            if let Some(a) = alignment {
                b.set(KEY_ALIGNMENT, Value::U32(a)).unwrap();
            }
            for (k, v) in metadata {
                b.set(k, v).unwrap();
            }
            for (i, (ty, shape, name, data)) in tensors.into_iter().enumerate() {
                // The index makes names unique and keeps them under 64 bytes.
                b.add_tensor(format!("{i}{name}"), ty, &shape, data)
                    .unwrap();
            }
            b
        })
}

/// Values equal bit for bit (so that a NaN equals itself).
fn same_value(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// Everything a caller may touch in a parsed file, and the re-write property: the writer turns
/// anything the reader accepted into a file the reader accepts with the same content, and
/// writing that again changes no byte.
fn walk_and_rewrite(g: &Gguf<'_>) {
    for (k, v) in g.metadata() {
        let _ = format!("{k} = {v}");
        if let Value::Array(a) = v {
            for i in 0..a.len().min(4) {
                let _ = (a.f64_at(i), a.i128_at(i), a.str_bytes_at(i));
            }
        }
    }
    for t in g.tensors() {
        assert_eq!(g.tensor_data(t).len() as u64, t.n_bytes());
        let _ = t.n_elements();
    }
    let bytes = Builder::from_gguf(g).to_bytes();
    let again =
        Gguf::parse(&bytes).unwrap_or_else(|e| panic!("the re-written file is rejected: {e}"));
    assert_eq!(again.metadata().len(), g.metadata().len());
    for ((k1, v1), (k2, v2)) in g.metadata().iter().zip(again.metadata()) {
        assert_eq!(k1, k2);
        assert!(same_value(v1, v2), "{k1}: {v1:?} != {v2:?}");
    }
    assert_eq!(again.tensors().len(), g.tensors().len());
    for (t1, t2) in g.tensors().iter().zip(again.tensors()) {
        assert_eq!((&t1.name, t1.ty, &t1.shape), (&t2.name, t2.ty, &t2.shape));
        assert_eq!(g.tensor_data(t1), again.tensor_data(t2));
    }
    assert_eq!(Builder::from_gguf(&again).to_bytes(), bytes);
}

/// A header with small counts followed by `rest`, so that random bytes reach the key-values
/// and tensor infos instead of failing at the magic.
fn header_then(n_tensors: u64, n_kv: u64, rest: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b.extend_from_slice(rest);
    b
}

/// One change to a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    /// Overwrite 8 bytes with a little-endian u64 (counts, lengths, dimensions, offsets).
    SetU64(usize, u64),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let big = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(1 << 63),
        Just((1 << 60) + 1),
        any::<u64>(),
    ];
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<usize>(), big).prop_map(|(i, v)| Mutation::SetU64(i, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match *m {
        Mutation::Set(i, b) => bytes[i % len] = b,
        Mutation::SetU64(i, v) => {
            let at = i % len;
            let end = (at + 8).min(len);
            bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
        }
        Mutation::Truncate(i) => bytes.truncate(i % len),
        Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
        Mutation::Remove(i) => {
            bytes.remove(i % len);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_files_round_trip_through_writer_and_reader(b in file()) {
        let bytes = b.to_bytes();
        let g = Gguf::parse(&bytes).unwrap_or_else(|e| panic!("written file rejected: {e}"));
        prop_assert_eq!(g.version, b.version);
        let alignment = match b.metadata().iter().find(|(k, _)| k == KEY_ALIGNMENT) {
            Some((_, Value::U32(a))) => u64::from(*a),
            _ => 32,
        };
        prop_assert_eq!(g.alignment(), alignment);
        if b.tensors().is_empty() {
            prop_assert_eq!(g.data_offset(), bytes.len() as u64);
        } else {
            prop_assert_eq!(g.data_offset() % alignment, 0);
        }

        prop_assert_eq!(g.metadata().len(), b.metadata().len());
        for ((k1, v1), (k2, v2)) in b.metadata().iter().zip(g.metadata()) {
            prop_assert_eq!(k1, k2);
            prop_assert!(same_value(v1, v2), "{}: {:?} != {:?}", k1, v1, v2);
        }

        prop_assert_eq!(g.tensors().len(), b.tensors().len());
        for (want, got) in b.tensors().iter().zip(g.tensors()) {
            prop_assert_eq!(&want.name, &got.name);
            prop_assert_eq!(want.ty, got.ty);
            prop_assert_eq!(&want.shape, &got.shape);
            prop_assert_eq!(got.offset % alignment, 0);
            prop_assert_eq!(g.tensor_data(got), &want.data[..]);
        }

        prop_assert_eq!(Builder::from_gguf(&g).to_bytes(), bytes);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        b in file(),
        mutations in vec(mutation(), 1..6),
    ) {
        let mut bytes = b.to_bytes();
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        if let Ok(g) = Gguf::parse(&bytes) {
            walk_and_rewrite(&g);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
        if let Ok(g) = Gguf::parse(&bytes) {
            walk_and_rewrite(&g);
        }
    }

    #[test]
    fn arbitrary_bytes_after_a_header_never_panic(
        n_tensors in 0u64..4,
        n_kv in 0u64..4,
        rest in vec(any::<u8>(), 0..300),
    ) {
        if let Ok(g) = Gguf::parse(&header_then(n_tensors, n_kv, &rest)) {
            walk_and_rewrite(&g);
        }
    }
}
