//! Hostile files: every case of llama.cpp's `tests/test-gguf.cpp` hand-crafted files, the
//! published GGUF parser CVE patterns, deep nesting and truncation. Each test spells out its
//! bytes with [`Fixture`] and asserts the exact [`ErrorKind`] and the byte offset it names.
//!
//! The CVE tests reproduce the *shape* of each published bug (a count whose product with an
//! entry size wraps, a length of all ones, a running size sum that overflows, a range past the
//! end) so that a reader repeating the mistake would allocate, wrap or read out of bounds.

use gguf::{Builder, Error, ErrorKind, GgmlType, Gguf, Value, ValueType};

/// A GGUF file spelled out field by field, little-endian.
#[derive(Default)]
struct Fixture(Vec<u8>);

impl Fixture {
    /// Magic, version and the two counts: the 24-byte header.
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Fixture {
        let mut f = Fixture::default();
        f.raw(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        f
    }

    /// Where the next byte goes.
    fn pos(&self) -> u64 {
        self.0.len() as u64
    }

    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.raw(&[v])
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    /// A GGUF string: its length as u64, then its bytes.
    fn str(&mut self, s: impl AsRef<[u8]>) -> &mut Self {
        let s = s.as_ref();
        self.u64(s.len() as u64).raw(s)
    }

    /// A metadata key and its value type; the value itself follows.
    fn kv(&mut self, key: &str, ty: ValueType) -> &mut Self {
        self.str(key).u32(ty.id())
    }

    /// A tensor info: name, n_dims (the length of `shape`), shape, type id, data offset.
    fn tensor(&mut self, name: &str, shape: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(shape.len() as u32);
        for &d in shape {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }

    /// Zero bytes up to the next multiple of `align`.
    fn pad(&mut self, align: u64) -> &mut Self {
        while !self.pos().is_multiple_of(align) {
            self.u8(0);
        }
        self
    }

    /// `n` bytes counting up from 0, as test-gguf fills tensor data.
    fn data(&mut self, n: usize) -> &mut Self {
        let bytes: Vec<u8> = (0..n).map(|i| i as u8).collect();
        self.raw(&bytes)
    }
}

const F32: u32 = 0;
const F16: u32 = 1;
const Q8_0: u32 = 8;
const I8: u32 = 24;
const I64: u32 = 27;
/// `GGML_TYPE_COUNT` at the time of writing: the first id past the table.
const GGML_TYPE_COUNT: u32 = 43;
/// `GGUF_TYPE_COUNT`: the first metadata value type id past the table.
const GGUF_TYPE_COUNT: u32 = 13;

/// Parses a file that must be rejected and returns the error, checking that it names an offset
/// inside the file and that its message carries that offset.
fn parse_err(f: &Fixture) -> Error {
    let e = Gguf::parse(&f.0).expect_err("a hostile file was accepted");
    assert!(
        e.offset <= f.pos(),
        "error offset {} lies past the {}-byte file: {e}",
        e.offset,
        f.pos()
    );
    assert!(
        e.to_string()
            .ends_with(&format!("(at byte offset {})", e.offset)),
        "{e}"
    );
    e
}

fn parse_ok(f: &Fixture) -> Gguf<'_> {
    Gguf::parse(&f.0).unwrap_or_else(|e| panic!("a valid file was rejected: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Header (test-gguf HANDCRAFTED_HEADER_*)

#[test]
fn bad_magic_is_rejected() {
    let mut f = Fixture::default();
    f.raw(b"FUGG").u32(3).u64(0).u64(0);
    let e = parse_err(&f);
    assert_eq!((e.kind, e.offset), (ErrorKind::BadMagic(*b"FUGG"), 0));
}

#[test]
fn versions_0_1_and_future_are_rejected() {
    for version in [0, 1, 4, u32::MAX] {
        let e = parse_err(&Fixture::header(version, 0, 0));
        assert_eq!(
            (e.kind, e.offset),
            (ErrorKind::UnsupportedVersion(version), 4)
        );
    }
}

#[test]
fn versions_2_and_3_are_accepted() {
    for version in [2, 3] {
        assert_eq!(parse_ok(&Fixture::header(version, 0, 0)).version, version);
    }
}

#[test]
fn tensor_count_minus_one_is_rejected() {
    let e = parse_err(&Fixture::header(3, u64::MAX, 0));
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::CountTooLarge {
                what: "tensor",
                count: u64::MAX
            },
            8
        )
    );
}

#[test]
fn kv_count_minus_one_is_rejected() {
    let e = parse_err(&Fixture::header(3, 0, u64::MAX));
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::CountTooLarge {
                what: "metadata key-value",
                count: u64::MAX
            },
            16
        )
    );
}

#[test]
fn empty_header_is_accepted_with_or_without_padding() {
    let mut f = Fixture::header(3, 0, 0);
    let bare = parse_ok(&f);
    assert!(bare.metadata().is_empty() && bare.tensors().is_empty());
    // ggml pads even a file without tensors; there is no data section to find after it.
    f.pad(32);
    let padded = parse_ok(&f);
    assert_eq!(padded.data_offset(), 24);
}

// ---------------------------------------------------------------------------------------------
// Metadata (test-gguf HANDCRAFTED_KV_*)

#[test]
fn key_length_minus_one_is_rejected() {
    let mut f = Fixture::header(3, 0, 1);
    f.u64(u64::MAX)
        .raw(b"my_key_0")
        .u32(ValueType::U8.id())
        .u8(1);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::Truncated {
                what: "metadata key",
                needed: u64::MAX,
                available: 13
            },
            24
        )
    );
}

#[test]
fn key_one_byte_longer_than_the_file_is_rejected() {
    let mut f = Fixture::header(3, 0, 1);
    f.u64(9).raw(b"my_key_0");
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::Truncated {
                what: "metadata key",
                needed: 9,
                available: 8
            },
            24
        )
    );
}

#[test]
fn empty_key_is_rejected() {
    let mut f = Fixture::header(3, 0, 1);
    f.kv("", ValueType::U8).u8(1);
    let e = parse_err(&f);
    assert_eq!((e.kind, e.offset), (ErrorKind::KeyEmpty, 24));
}

#[test]
fn key_that_is_not_utf8_is_rejected() {
    let mut f = Fixture::header(3, 0, 1);
    f.str([b'k', 0xff, 0xfe]).u32(ValueType::U8.id()).u8(1);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::InvalidUtf8 {
                what: "metadata key"
            },
            24
        )
    );
}

#[test]
fn unknown_value_type_is_rejected_with_its_number() {
    let mut f = Fixture::header(3, 0, 1);
    f.str("my_key_0");
    let at = f.pos();
    f.u32(GGUF_TYPE_COUNT).u8(0);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (ErrorKind::UnknownValueType(GGUF_TYPE_COUNT), at)
    );
}

#[test]
fn unknown_array_element_type_is_rejected_with_its_number() {
    let mut f = Fixture::header(3, 0, 1);
    f.kv("my_key_0", ValueType::Array);
    let at = f.pos();
    f.u32(0xdead_beef).u64(0);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (ErrorKind::UnknownValueType(0xdead_beef), at)
    );
}

#[test]
fn duplicate_key_is_rejected() {
    let mut f = Fixture::header(3, 0, 2);
    f.kv("my_key_0", ValueType::U8).u8(1);
    let at = f.pos();
    f.kv("my_key_0", ValueType::U32).u32(2);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (ErrorKind::DuplicateKey("my_key_0".into()), at)
    );
}

#[test]
fn bool_other_than_0_or_1_is_rejected() {
    let mut f = Fixture::header(3, 0, 1);
    f.kv("flag", ValueType::Bool);
    let at = f.pos();
    f.u8(2);
    let e = parse_err(&f);
    assert_eq!((e.kind, e.offset), (ErrorKind::InvalidBool(2), at));
}

#[test]
fn bool_array_element_other_than_0_or_1_is_rejected() {
    let mut f = Fixture::header(3, 0, 1);
    f.kv("flags", ValueType::Array)
        .u32(ValueType::Bool.id())
        .u64(3);
    let at = f.pos();
    f.raw(&[0, 1, 0xff]);
    let e = parse_err(&f);
    assert_eq!((e.kind, e.offset), (ErrorKind::InvalidBool(0xff), at));
}

fn alignment_error(ty: ValueType, value: &[u8]) -> (String, u64) {
    let mut f = Fixture::header(3, 0, 2);
    f.kv("my_key_0", ValueType::U8).u8(1);
    let at = f.pos();
    f.kv("general.alignment", ty).raw(value);
    let e = parse_err(&f);
    match e.kind {
        ErrorKind::BadAlignment(why) => {
            assert_eq!(e.offset, at, "the error points at the alignment key");
            (why, e.offset)
        }
        kind => panic!("expected BadAlignment, got {kind:?}"),
    }
}

#[test]
fn alignment_that_is_not_a_power_of_two_is_rejected() {
    for a in [13u32, 0, 3, 96, u32::MAX] {
        let (why, _) = alignment_error(ValueType::U32, &a.to_le_bytes());
        assert_eq!(why, format!("{a} is not a power of two"));
    }
}

#[test]
fn alignment_of_the_wrong_type_is_rejected() {
    let (why, _) = alignment_error(ValueType::I32, &32i32.to_le_bytes());
    assert_eq!(why, "has type i32, expected u32");
    let (why, _) = alignment_error(ValueType::U64, &32u64.to_le_bytes());
    assert_eq!(why, "has type u64, expected u32");
    let mut s = Fixture::default();
    s.str("32");
    let (why, _) = alignment_error(ValueType::String, &s.0);
    assert_eq!(why, "has type str, expected u32");
}

#[test]
fn metadata_of_every_type_is_read() {
    let mut f = Fixture::header(3, 0, 14);
    f.kv("u8", ValueType::U8).u8(200);
    f.kv("i8", ValueType::I8).u8(0x80);
    f.kv("u16", ValueType::U16).raw(&0xbeefu16.to_le_bytes());
    f.kv("i16", ValueType::I16).raw(&(-2i16).to_le_bytes());
    f.kv("u32", ValueType::U32).u32(4_000_000_000);
    f.kv("i32", ValueType::I32).raw(&(-5i32).to_le_bytes());
    f.kv("f32", ValueType::F32).raw(&1.5f32.to_le_bytes());
    f.kv("bool", ValueType::Bool).u8(1);
    f.kv("str", ValueType::String).str("héllo");
    f.kv("u64", ValueType::U64).u64(u64::MAX);
    f.kv("i64", ValueType::I64).raw(&i64::MIN.to_le_bytes());
    f.kv("f64", ValueType::F64).raw(&(-0.25f64).to_le_bytes());
    f.kv("strs", ValueType::Array)
        .u32(ValueType::String.id())
        .u64(2)
        .str("a")
        .str("");
    f.kv("i16s", ValueType::Array)
        .u32(ValueType::I16.id())
        .u64(2)
        .raw(&(-1i16).to_le_bytes())
        .raw(&7i16.to_le_bytes());
    let g = parse_ok(&f);
    assert_eq!(g.get("u8"), Some(&Value::U8(200)));
    assert_eq!(g.get("i8"), Some(&Value::I8(-128)));
    assert_eq!(g.get("u16"), Some(&Value::U16(0xbeef)));
    assert_eq!(g.get("i16"), Some(&Value::I16(-2)));
    assert_eq!(g.get_u32("u32").unwrap(), 4_000_000_000);
    assert_eq!(g.get("i32"), Some(&Value::I32(-5)));
    assert_eq!(g.get_f32("f32").unwrap(), 1.5);
    assert!(g.get_bool("bool").unwrap());
    assert_eq!(g.get_str("str").unwrap(), "héllo");
    assert_eq!(g.get_u64("u64").unwrap(), u64::MAX);
    assert_eq!(g.get("i64"), Some(&Value::I64(i64::MIN)));
    assert_eq!(g.get("f64"), Some(&Value::F64(-0.25)));
    assert_eq!(g.get_str_array("strs").unwrap(), ["a", ""]);
    let i16s = g.get_array("i16s").unwrap();
    assert_eq!((i16s.i128_at(0), i16s.i128_at(1)), (Some(-1), Some(7)));
    assert_eq!(i16s.i128_at(2), None);
}

// ---------------------------------------------------------------------------------------------
// Tensor infos (test-gguf HANDCRAFTED_TENSORS_*)

/// A file holding one tensor info, its header padded to 32, and `data` bytes of data.
fn one_tensor(name: &str, shape: &[u64], ty: u32, offset: u64, data: usize) -> Fixture {
    let mut f = Fixture::header(3, 1, 0);
    f.tensor(name, shape, ty, offset).pad(32).data(data);
    f
}

#[test]
fn tensor_name_of_64_bytes_is_rejected_and_63_accepted() {
    let long = "t".repeat(64);
    let e = parse_err(&one_tensor(&long, &[8], F32, 0, 32));
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::TensorNameTooLong {
                name: long.clone(),
                len: 64
            },
            24
        )
    );
    let f = one_tensor(&long[..63], &[8], F32, 0, 32);
    assert_eq!(parse_ok(&f).tensors()[0].name, long[..63]);
}

#[test]
fn tensor_name_that_is_not_utf8_is_rejected() {
    let mut f = Fixture::header(3, 1, 0);
    f.str([0xc3, 0x28])
        .u32(1)
        .u64(8)
        .u32(F32)
        .u64(0)
        .pad(32)
        .data(32);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::InvalidUtf8 {
                what: "tensor name"
            },
            24
        )
    );
}

#[test]
fn n_dims_5_is_rejected() {
    let f = one_tensor("my_tensor_0", &[1, 1, 1, 1, 1], F32, 0, 32);
    let e = parse_err(&f);
    let n_dims_at = 24 + 8 + "my_tensor_0".len() as u64;
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::TooManyDims {
                name: "my_tensor_0".into(),
                n_dims: 5
            },
            n_dims_at
        )
    );
}

#[test]
fn n_dims_u32_max_is_rejected_before_reading_dimensions() {
    let mut f = Fixture::header(3, 1, 0);
    f.str("t").u32(u32::MAX).raw(&[0; 32]);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::TooManyDims {
                name: "t".into(),
                n_dims: u32::MAX
            },
            33
        )
    );
}

/// The reason of a `BadShape` error for a file with one tensor of `shape` and `ty`, checking
/// that it points at the tensor's n_dims field.
fn bad_shape(shape: &[u64], ty: u32) -> String {
    let e = parse_err(&one_tensor("t", shape, ty, 0, 64));
    match e.kind {
        ErrorKind::BadShape { name, reason } => {
            assert_eq!((name.as_str(), e.offset), ("t", 33));
            reason
        }
        kind => panic!("expected BadShape, got {kind:?}"),
    }
}

#[test]
fn negative_dimensions_are_rejected() {
    assert_eq!(bad_shape(&[u64::MAX], F32), "dimension 0 is -1 (negative)");
    assert_eq!(
        bad_shape(&[32, 1 << 63], F32),
        format!("dimension 1 is {} (negative)", i64::MIN)
    );
}

#[test]
fn element_count_past_i64_is_rejected() {
    // test-gguf's NE_TOO_BIG: two dimensions of 4 * INT32_MAX.
    let big = 4 * i32::MAX as u64;
    let reason = bad_shape(&[big, big], F32);
    assert!(reason.starts_with("element count of"), "{reason}");
}

#[test]
fn byte_size_past_i64_is_rejected() {
    // test-gguf's NBYTES_TOO_BIG: 2.35e18 i64 elements fit in i64, their 1.9e19 bytes do not.
    let reason = bad_shape(&[1_533_000_000, 1_533_000_000], I64);
    assert!(reason.starts_with("byte size of"), "{reason}");
}

#[test]
fn row_that_is_not_whole_blocks_is_rejected() {
    assert_eq!(
        bad_shape(&[33, 2], Q8_0),
        "row of 33 elements is not a multiple of q8_0's block size 32"
    );
}

#[test]
fn zero_dimension_is_accepted_as_an_empty_tensor() {
    let f = one_tensor("t", &[4, 0], F32, 0, 0);
    let g = parse_ok(&f);
    let t = &g.tensors()[0];
    assert_eq!((t.n_elements(), t.n_bytes()), (0, 0));
    assert!(g.tensor_data(t).is_empty());
}

#[test]
fn unknown_tensor_type_is_rejected_with_its_number() {
    for id in [GGML_TYPE_COUNT, 4, 31, 36, u32::MAX] {
        let e = parse_err(&one_tensor("t", &[32], id, 0, 128));
        let type_at = 24 + 8 + 1 + 4 + 8;
        assert_eq!(
            (e.kind, e.offset),
            (
                ErrorKind::UnknownTensorType {
                    name: "t".into(),
                    id
                },
                type_at
            )
        );
    }
}

#[test]
fn tensor_offset_minus_one_is_rejected_as_misaligned() {
    let e = parse_err(&one_tensor("t", &[8], F32, u64::MAX, 32));
    let offset_at = 24 + 8 + 1 + 4 + 8 + 4;
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::MisalignedTensor {
                name: "t".into(),
                offset: u64::MAX,
                alignment: 32
            },
            offset_at
        )
    );
}

#[test]
fn duplicate_tensor_name_is_rejected() {
    let mut f = Fixture::header(3, 2, 0);
    f.tensor("my_tensor", &[8], F32, 0);
    let at = f.pos();
    f.tensor("my_tensor", &[8], F32, 32).pad(32).data(64);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (ErrorKind::DuplicateTensor("my_tensor".into()), at)
    );
}

#[test]
fn offsets_packed_to_1_in_a_file_aligned_to_32_are_rejected() {
    // test-gguf's INCONSISTENT_ALIGN: the writer padded to 1 but the file says 32.
    let mut f = Fixture::header(3, 2, 0);
    f.tensor("a", &[3], F32, 0);
    let offset_at = f.pos() + 8 + 1 + 4 + 8 + 4;
    f.tensor("b", &[1], F32, 12).pad(32).data(16);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::MisalignedTensor {
                name: "b".into(),
                offset: 12,
                alignment: 32
            },
            offset_at
        )
    );
}

#[test]
fn offset_aligned_to_32_in_a_file_aligned_to_64_is_rejected() {
    let mut f = Fixture::header(3, 1, 1);
    f.kv("general.alignment", ValueType::U32).u32(64);
    f.tensor("t", &[8], F32, 32).pad(64).data(64);
    let e = parse_err(&f);
    assert!(
        matches!(
            e.kind,
            ErrorKind::MisalignedTensor {
                offset: 32,
                alignment: 64,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn custom_alignment_1_places_data_right_after_the_header() {
    // test-gguf's TENSORS_CUSTOM_ALIGN and DATA_CUSTOM_ALIGN.
    let mut f = Fixture::header(3, 2, 1);
    f.kv("general.alignment", ValueType::U32).u32(1);
    f.tensor("a", &[3], F32, 0).tensor("b", &[1], F16, 12);
    let header_end = f.pos();
    f.data(14);
    let g = parse_ok(&f);
    assert_eq!((g.alignment(), g.data_offset()), (1, header_end));
    assert_eq!(
        g.tensor_data(&g.tensors()[0]),
        &f.0[header_end as usize..][..12]
    );
    assert_eq!(g.tensor_data(&g.tensors()[1]), [12, 13]);
}

// ---------------------------------------------------------------------------------------------
// Tensor data (test-gguf HANDCRAFTED_DATA_*)

#[test]
fn tensor_data_one_byte_short_is_rejected() {
    let f = one_tensor("t", &[8], F32, 0, 31);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::TensorOutOfBounds {
                name: "t".into(),
                offset: 0,
                size: 32,
                data_len: 31
            },
            24 + 8 + 1 + 4 + 8 + 4
        )
    );
    let whole = one_tensor("t", &[8], F32, 0, 32);
    let g = parse_ok(&whole);
    let expected: Vec<u8> = (0..32).collect();
    assert_eq!(g.tensor_data(&g.tensors()[0]), expected);
}

#[test]
fn file_ending_inside_the_padding_before_data_is_rejected() {
    let mut f = Fixture::header(3, 1, 0);
    f.tensor("t", &[0], F32, 0);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::Truncated {
                what: "padding before tensor data",
                needed: 7,
                available: 0
            },
            57
        )
    );
}

#[test]
fn tensor_starting_at_the_end_of_the_file_is_rejected() {
    let e = parse_err(&one_tensor("t", &[8], F32, 32, 32));
    assert_eq!(
        e.kind,
        ErrorKind::TensorOutOfBounds {
            name: "t".into(),
            offset: 32,
            size: 32,
            data_len: 32
        }
    );
}

#[test]
fn tensor_whose_offset_plus_size_wraps_u64_is_rejected() {
    let offset = u64::MAX - 31; // a multiple of 32
    let e = parse_err(&one_tensor("t", &[16], F32, offset, 64));
    assert_eq!(
        e.kind,
        ErrorKind::TensorOutOfBounds {
            name: "t".into(),
            offset,
            size: 64,
            data_len: 64
        }
    );
}

#[test]
fn alignment_2_pow_31_cannot_push_data_past_the_file() {
    // The "alignment overflow" PoC: a huge power-of-two alignment is legal, but with tensors
    // the padding it asks for must be in the file.
    let mut f = Fixture::header(3, 1, 1);
    f.kv("general.alignment", ValueType::U32).u32(1 << 31);
    f.tensor("t", &[0], F32, 0);
    let header_end = f.pos();
    f.data(64);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::Truncated {
                what: "padding before tensor data",
                needed: (1 << 31) - header_end,
                available: 64
            },
            header_end
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Published CVE patterns

/// A count that times 16 (and any larger power of two) wraps to a small number.
const WRAPS_TIMES_16: u64 = (1 << 60) + 1;

#[test]
fn cve_2024_25664_kv_count_times_entry_size_wrapping_is_rejected() {
    // n_kv * sizeof(gguf_kv) wrapped to a small allocation that the key-values then overran.
    let mut f = Fixture::header(3, 0, WRAPS_TIMES_16);
    f.kv("my_key_0", ValueType::U32).u32(1);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::CountTooLarge {
                what: "metadata key-value",
                count: WRAPS_TIMES_16
            },
            16
        )
    );
}

#[test]
fn cve_2024_25665_string_length_all_ones_is_rejected() {
    // gguf_fread_str allocated length + 1 bytes: 0 for a length of 0xFFFF_FFFF_FFFF_FFFF.
    let mut f = Fixture::header(3, 0, 1);
    f.kv("general.name", ValueType::String);
    let at = f.pos();
    f.u64(u64::MAX).raw(b"overflow");
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::Truncated {
                what: "string",
                needed: u64::MAX,
                available: 8
            },
            at
        )
    );
}

#[test]
fn cve_2024_25666_tensor_count_times_info_size_wrapping_is_rejected() {
    let mut f = Fixture::header(3, WRAPS_TIMES_16, 0);
    f.tensor("t", &[8], F32, 0).pad(32).data(32);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::CountTooLarge {
                what: "tensor",
                count: WRAPS_TIMES_16
            },
            8
        )
    );
}

#[test]
fn cve_2024_25667_array_count_times_element_size_wrapping_is_rejected() {
    // (2^62 + 1) u32 elements are 4 bytes after wrapping: exactly what follows.
    let count = (1 << 62) + 1;
    let mut f = Fixture::header(3, 0, 1);
    f.kv("tokenizer.ggml.token_type", ValueType::Array)
        .u32(ValueType::U32.id());
    let at = f.pos();
    f.u64(count).u32(7);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::CountTooLarge {
                what: "array",
                count
            },
            at
        )
    );
}

#[test]
fn cve_2024_25668_string_array_count_times_entry_size_wrapping_is_rejected() {
    let mut f = Fixture::header(3, 0, 1);
    f.kv("tokenizer.ggml.tokens", ValueType::Array)
        .u32(ValueType::String.id());
    let at = f.pos();
    f.u64(WRAPS_TIMES_16).str("a");
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::CountTooLarge {
                what: "string array",
                count: WRAPS_TIMES_16
            },
            at
        )
    );
}

#[test]
fn nested_array_count_past_the_file_is_rejected() {
    let mut f = Fixture::header(3, 0, 1);
    f.kv("nested", ValueType::Array).u32(ValueType::Array.id());
    let at = f.pos();
    f.u64(u64::MAX).u32(ValueType::U8.id()).u64(0);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::CountTooLarge {
                what: "nested array",
                count: u64::MAX
            },
            at
        )
    );
}

/// The offset of tensor info `i`'s offset field in a file of one-dimensional tensors named
/// `t0`, `t1`, … written right after a header without metadata.
fn offset_field(i: u64) -> u64 {
    let info = 8 + 2 + 4 + 8 + 4 + 8;
    24 + i * info + info - 8
}

#[test]
fn cve_2025_53630_running_data_size_sum_overflow_is_rejected() {
    // test-gguf's DATA_MEM_SIZE_OVERFLOW: two i8 tensors of 0x7FFF_FFFF_FFFF_FFC0 bytes whose
    // sum wrapped ggml's ctx->size.
    let size = 0x7FFF_FFFF_FFFF_FFC0;
    let mut f = Fixture::header(3, 2, 0);
    f.tensor("t0", &[size], I8, 0)
        .tensor("t1", &[size], I8, size)
        .pad(32)
        .data(32);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::TensorOutOfBounds {
                name: "t0".into(),
                offset: 0,
                size,
                data_len: 32
            },
            offset_field(0)
        )
    );
}

#[test]
fn cve_2026_27940_sum_of_sizes_that_each_fit_is_rejected() {
    // Eight tensors of 2^61 bytes: each size passes a per-tensor check, their sum wraps to 0.
    let size = 1 << 61;
    let mut f = Fixture::header(3, 8, 0);
    for i in 0..8 {
        f.tensor(&format!("t{i}"), &[size], I8, i * size);
    }
    f.pad(32).data(32);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::TensorOutOfBounds {
                name: "t0".into(),
                offset: 0,
                size,
                data_len: 32
            },
            offset_field(0)
        )
    );
}

#[test]
fn cve_2026_27940_padded_size_wrapping_to_zero_is_rejected() {
    // The GGML_PAD bypass: 4 * (2^63 - 3) f32 bytes wrap, padded, to almost nothing.
    let reason = bad_shape(&[(1 << 63) - 3], F32);
    assert!(reason.starts_with("byte size of"), "{reason}");
}

#[test]
fn cve_2026_33298_quantized_byte_size_is_computed_without_wrapping() {
    // ggml computed type_size * ne[0] before dividing by the block size: 34 * 2^62 wraps.
    // The true size, 2^62 / 32 * 34 bytes, fits in i64 and is far past the file.
    let e = parse_err(&one_tensor("t", &[1 << 62], Q8_0, 0, 64));
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::TensorOutOfBounds {
                name: "t".into(),
                offset: 0,
                size: 34 << 57,
                data_len: 64
            },
            24 + 8 + 1 + 4 + 8 + 4
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Nesting

/// A file with one key whose value is `levels` arrays nested in one another around an empty
/// u8 array, and the offset of the value.
fn nested(levels: usize) -> (Fixture, u64) {
    let mut f = Fixture::header(3, 0, 1);
    f.kv("deep", ValueType::Array);
    let value_at = f.pos();
    for _ in 1..levels {
        f.u32(ValueType::Array.id()).u64(1);
    }
    f.u32(ValueType::U8.id()).u64(0);
    (f, value_at)
}

#[test]
fn arrays_nested_200000_deep_are_rejected_without_overflowing_the_stack() {
    let (f, value_at) = nested(200_000);
    let e = parse_err(&f);
    // Four levels of (type, count) are read; the fifth is refused before its type.
    assert_eq!(
        (e.kind, e.offset),
        (ErrorKind::NestingTooDeep { depth: 4 }, value_at + 4 * 12)
    );
}

#[test]
fn arrays_nested_4_deep_are_accepted_and_5_rejected() {
    let (f, _) = nested(4);
    let g = parse_ok(&f);
    let mut a = g.get_array("deep").unwrap();
    for _ in 1..4 {
        a = match a {
            gguf::Array::Arrays(v) => &v[0],
            other => panic!("expected a nested array, got {other:?}"),
        };
    }
    assert_eq!(a.element_type(), ValueType::U8);
    let (f, value_at) = nested(5);
    let e = parse_err(&f);
    assert_eq!(
        (e.kind, e.offset),
        (ErrorKind::NestingTooDeep { depth: 4 }, value_at + 48)
    );
}

// ---------------------------------------------------------------------------------------------
// Truncation

/// A file with a value of every type and three tensors, the last ending exactly at the end of
/// the file, so that no byte of it can be dropped.
fn rich_file() -> Vec<u8> {
    let mut b = Builder::new();
    let values = [
        ("general.architecture", Value::string("llama")),
        ("u8", Value::U8(1)),
        ("i8", Value::I8(-1)),
        ("u16", Value::U16(2)),
        ("i16", Value::I16(-2)),
        ("u32", Value::U32(3)),
        ("i32", Value::I32(-3)),
        ("f32", Value::F32(0.5)),
        ("bool", Value::Bool(true)),
        ("u64", Value::U64(4)),
        ("i64", Value::I64(-4)),
        ("f64", Value::F64(0.25)),
        (
            "strs",
            Value::Array(gguf::Array::from_strs(&["<s>", "</s>", ""])),
        ),
        (
            "nested",
            Value::Array(gguf::Array::Arrays(vec![
                gguf::Array::from_u32s(&[1, 2]),
                gguf::Array::from_f32s(&[]),
            ])),
        ),
    ];
    for (k, v) in values {
        b.set(k, v).unwrap();
    }
    b.add_tensor("a", GgmlType::F32, &[8], vec![1u8; 32])
        .unwrap();
    b.add_tensor("b", GgmlType::Q8_0, &[32], vec![2u8; 34])
        .unwrap();
    b.add_tensor("c", GgmlType::F16, &[4, 4], vec![3u8; 32])
        .unwrap();
    b.to_bytes()
}

#[test]
fn every_prefix_of_a_valid_file_is_rejected() {
    let full = rich_file();
    let g = Gguf::parse(&full).unwrap();
    let c = g.tensor("c").unwrap();
    assert_eq!(
        g.data_offset() + c.offset + c.n_bytes(),
        full.len() as u64,
        "the last tensor ends the file"
    );
    for len in 0..full.len() {
        match Gguf::parse(&full[..len]) {
            Ok(_) => panic!("the first {len} of {} bytes were accepted", full.len()),
            Err(e) => assert!(e.offset <= len as u64, "{len}: {e}"),
        }
    }
}

#[test]
fn every_truncation_of_the_header_names_the_field_it_cut() {
    let full = rich_file();
    let expect = |len: usize, what: &str| {
        let e = Gguf::parse(&full[..len]).unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::Truncated { what: w, .. } if w == what),
            "{len}: {e}"
        );
    };
    for len in 0..4 {
        expect(len, "magic");
    }
    for len in 4..8 {
        expect(len, "version");
    }
    // The counts are read in full and then found not to fit the few bytes that follow.
    for len in 8..16 {
        expect(len, "tensor");
    }
}

// ---------------------------------------------------------------------------------------------
// The writer refuses what the reader would reject, and hand-made infos cannot index out of range

#[test]
fn writer_refuses_shapes_the_reader_rejects() {
    let mut b = Builder::new();
    // Zero bytes of data match [0, 2^64 - 1], but the reader calls that dimension negative.
    let e = b
        .add_tensor("t", GgmlType::F32, &[0, u64::MAX], Vec::new())
        .unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::BadShape { reason, .. } if reason.contains("negative")),
        "{e}"
    );
    let e = b
        .add_tensor("t", GgmlType::F32, &[1, 1, 1, 1, 1], vec![0; 4])
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::TooManyDims { n_dims: 5, .. }));
    let e = b
        .add_tensor("t".repeat(64), GgmlType::F32, &[1], vec![0; 4])
        .unwrap_err();
    assert!(matches!(
        e.kind,
        ErrorKind::TensorNameTooLong { len: 64, .. }
    ));
    b.add_tensor("t", GgmlType::F32, &[1], vec![0; 4]).unwrap();
    let e = b
        .add_tensor("t", GgmlType::F32, &[1], vec![0; 4])
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::DuplicateTensor("t".into()));
}

#[test]
fn writer_refuses_bad_alignment_and_deep_nesting() {
    let mut b = Builder::new();
    for bad in [Value::U32(0), Value::U32(24), Value::I32(32)] {
        let e = b.set("general.alignment", bad).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::BadAlignment(_)), "{e}");
    }
    let e = b.set("", Value::U8(0)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::KeyEmpty);
    let mut deep = gguf::Array::from_u32s(&[1]);
    for _ in 1..4 {
        deep = gguf::Array::Arrays(vec![deep]);
    }
    b.set("four", Value::Array(deep.clone())).unwrap();
    let e = b
        .set("five", Value::Array(gguf::Array::Arrays(vec![deep])))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NestingTooDeep { depth: 4 });
}

#[test]
fn tensor_data_of_a_hand_made_info_outside_the_data_is_empty() {
    let f = one_tensor("t", &[8], F32, 0, 32);
    let g = parse_ok(&f);
    let mut t = g.tensors()[0].clone();
    for offset in [32, u64::MAX - 3, 1 << 63] {
        t.offset = offset;
        assert!(g.tensor_data(&t).is_empty());
    }
    t.offset = 0;
    t.shape = vec![u64::MAX, u64::MAX];
    assert_eq!(t.n_elements(), u64::MAX);
    assert!(g.tensor_data(&t).is_empty());
}
