//! A SentencePiece `tokenizer.model`: the pieces of its `ModelProto` (protobuf), read by hand.
//!
//! Only `ModelProto.pieces` (field 1) is read: each `SentencePiece` holds `piece` (1, text),
//! `score` (2, float) and `type` (3, enum: 1 normal, 2 unknown, 3 control, 4 user-defined (a
//! normal token to llama.cpp),
//! 5 unused, 6 byte; 1 when absent). Every other field is skipped by its wire type. A
//! malformed file (a length past the end, an unknown wire type, a piece that is not UTF-8) is
//! an error, never a panic.

use crate::error::Error;

pub const NORMAL: i32 = 1;
pub const UNKNOWN: i32 = 2;
pub const CONTROL: i32 = 3;
pub const UNUSED: i32 = 5;
pub const BYTE: i32 = 6;

#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub score: f32,
    pub kind: i32,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad(what: &str) -> Error {
    Error::Tokenizer(format!(
        "tokenizer.model is not a SentencePiece model: {what}"
    ))
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("a number runs past the end"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("a number is longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Error> {
        let n = usize::try_from(n).map_err(|_| bad("a length is too large"))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| bad("a field runs past the end"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next field's number and wire type.
    fn key(&mut self) -> Result<(u64, u64), Error> {
        let k = self.varint()?;
        Ok((k >> 3, k & 7))
    }

    /// The value of a field of `wire` type, as bytes (varints as their value's 8 bytes).
    fn value(&mut self, wire: u64) -> Result<Value<'a>, Error> {
        Ok(match wire {
            0 => Value::Varint(self.varint()?),
            1 => Value::Bytes(self.take(8)?),
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            5 => Value::Bytes(self.take(4)?),
            w => return Err(bad(&format!("wire type {w} (groups are not used by it)"))),
        })
    }
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The pieces of a `tokenizer.model` file, in id order.
pub fn pieces(bytes: &[u8]) -> Result<Vec<Piece>, Error> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let mut out = Vec::new();
    while !r.done() {
        let (field, wire) = r.key()?;
        let v = r.value(wire)?;
        if field != 1 {
            continue;
        }
        let Value::Bytes(p) = v else {
            return Err(bad("a piece is not a message"));
        };
        out.push(piece(p)?);
    }
    if out.is_empty() {
        return Err(bad("it has no pieces"));
    }
    Ok(out)
}

fn piece(bytes: &[u8]) -> Result<Piece, Error> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let mut p = Piece {
        text: String::new(),
        score: 0.0,
        kind: NORMAL,
    };
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, r.value(wire)?) {
            (1, Value::Bytes(b)) => {
                p.text = std::str::from_utf8(b)
                    .map_err(|_| bad("a piece is not UTF-8"))?
                    .to_owned();
            }
            (2, Value::Bytes(b)) if b.len() == 4 => {
                p.score = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            (3, Value::Varint(v)) => {
                p.kind = i32::try_from(v)
                    .ok()
                    .filter(|k| (NORMAL..=BYTE).contains(k))
                    .ok_or_else(|| bad(&format!("piece type {v}")))?;
            }
            (1..=3, _) => return Err(bad("a piece field has the wrong wire type")),
            _ => {}
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, wire: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | wire) as u8];
        if wire == 2 {
            out.push(payload.len() as u8);
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn reads_pieces_and_skips_other_fields() {
        let mut a = field(1, 2, b"<unk>");
        a.extend(field(2, 5, &0.0f32.to_le_bytes()));
        a.extend(field(3, 0, &[2]));
        let mut b = field(1, 2, "\u{2581}the".as_bytes());
        b.extend(field(2, 5, &(-3.5f32).to_le_bytes()));
        let mut model = field(1, 2, &a);
        model.extend(field(2, 2, b"trainer spec")); // skipped
        model.extend(field(1, 2, &b));
        model.extend(field(9, 0, &[0x96, 0x01])); // a varint field, skipped
        let got = pieces(&model).unwrap();
        assert_eq!(
            got,
            vec![
                Piece {
                    text: "<unk>".into(),
                    score: 0.0,
                    kind: UNKNOWN
                },
                Piece {
                    text: "\u{2581}the".into(),
                    score: -3.5,
                    kind: NORMAL
                },
            ]
        );
    }

    #[test]
    fn malformed_models_are_errors() {
        for bytes in [
            &[0x0a, 0x05, b'a'][..],             // piece longer than the file
            &[0x0b][..],                         // wire type 3
            &[0x08, 0x80][..],                   // unfinished varint
            &[0x12, 0x01, 0x00][..],             // no pieces at all
            &[0x0a, 0x03, 0x18, 0x09, 0x00][..], // piece type 9
        ] {
            assert!(pieces(bytes).is_err(), "{bytes:?}");
        }
    }
}
