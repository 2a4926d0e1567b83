//! Code-point classes as llama.cpp's tokenizer sees them, and GPT-2's byte ↔ character map.
//!
//! llama.cpp does not use a regex engine's Unicode tables: it classifies every code point with
//! its own (Unicode 15.1 general categories folded to one flag per code point, 25 white-space
//! code points, simple lowercase, first code point of NFD). Pre-tokenizers and BERT's
//! normalizer built on other tables split some rare text differently, so [`flags`],
//! [`to_lower`] and [`nfd_first`] read tables generated from the same data
//! (`unicode_data.rs`, see `scripts/gen_unicode_tables.py`).

use super::unicode_data::{FLAG_RANGES, LOWERCASE, NFD_RANGES};

/// Category bits (one per code point) plus the white-space bit, as llama.cpp's
/// `unicode_cpt_flags` packs them.
pub(crate) mod flag {
    pub const UNDEFINED: u16 = 0x0001;
    pub const NUMBER: u16 = 0x0002;
    pub const LETTER: u16 = 0x0004;
    pub const SEPARATOR: u16 = 0x0008;
    pub const MARK: u16 = 0x0010;
    pub const PUNCTUATION: u16 = 0x0020;
    pub const SYMBOL: u16 = 0x0040;
    pub const CONTROL: u16 = 0x0080;
    pub const CATEGORIES: u16 = 0x00FF;
    pub const WHITESPACE: u16 = 0x0100;
}

/// A code point's flags: its category bit, plus [`flag::WHITESPACE`] for white space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flags(pub u16);

impl Flags {
    pub fn is_letter(self) -> bool {
        self.0 & flag::LETTER != 0
    }
    pub fn is_number(self) -> bool {
        self.0 & flag::NUMBER != 0
    }
    pub fn is_whitespace(self) -> bool {
        self.0 & flag::WHITESPACE != 0
    }
    pub fn is_punctuation(self) -> bool {
        self.0 & flag::PUNCTUATION != 0
    }
    pub fn is_symbol(self) -> bool {
        self.0 & flag::SYMBOL != 0
    }
    pub fn is_control(self) -> bool {
        self.0 & flag::CONTROL != 0
    }
    pub fn is_mark(self) -> bool {
        self.0 & flag::MARK != 0
    }
    /// The category bit alone.
    pub fn category(self) -> u16 {
        self.0 & flag::CATEGORIES
    }
}

/// Flags of the 128 ASCII code points, the common case, without a table search.
static ASCII_FLAGS: [u16; 128] = {
    let mut t = [0u16; 128];
    let mut c = 0;
    while c < 128 {
        t[c] = ascii_category(c as u8)
            | if is_ascii_space(c as u8) {
                flag::WHITESPACE
            } else {
                0
            };
        c += 1;
    }
    t
};

const fn is_ascii_space(c: u8) -> bool {
    matches!(c, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ')
}

const fn ascii_category(c: u8) -> u16 {
    match c {
        0..=0x1F | 0x7F => flag::CONTROL,
        b' ' => flag::SEPARATOR,
        b'0'..=b'9' => flag::NUMBER,
        b'A'..=b'Z' | b'a'..=b'z' => flag::LETTER,
        b'$' | b'+' | b'<' | b'=' | b'>' | b'^' | b'`' | b'|' | b'~' => flag::SYMBOL,
        _ => flag::PUNCTUATION,
    }
}

/// The white-space code points above ASCII (Unicode's White_Space property).
fn is_unicode_space(cp: u32) -> bool {
    matches!(
        cp,
        0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
    )
}

/// The flags of `cp` (out-of-range values are UNDEFINED).
pub(crate) fn flags(cp: u32) -> Flags {
    if cp < 128 {
        return Flags(ASCII_FLAGS[cp as usize]);
    }
    let i = FLAG_RANGES.partition_point(|&(start, _)| start <= cp);
    let category = match i.checked_sub(1) {
        Some(i) if cp < 0x110000 => u16::from(FLAG_RANGES[i].1),
        _ => flag::UNDEFINED,
    };
    let space = if is_unicode_space(cp) {
        flag::WHITESPACE
    } else {
        0
    };
    Flags(category | space)
}

/// Simple lowercase mapping (the code point itself when it has none).
pub(crate) fn to_lower(cp: u32) -> u32 {
    if cp < 128 {
        return (cp as u8).to_ascii_lowercase().into();
    }
    match LOWERCASE.binary_search_by_key(&cp, |&(c, _)| c) {
        Ok(i) => LOWERCASE[i].1,
        Err(_) => cp,
    }
}

/// The first code point of `cp`'s NFD decomposition (how llama.cpp strips accents for BERT).
pub(crate) fn nfd_first(cp: u32) -> u32 {
    let i = NFD_RANGES.partition_point(|&(first, _, _)| first <= cp);
    match i.checked_sub(1).map(|i| NFD_RANGES[i]) {
        Some((first, last, nfd)) if first <= cp && cp <= last => nfd,
        _ => cp,
    }
}

/// GPT-2's reversible map from bytes to printable characters: bytes that are printable
/// Latin-1 map to themselves, the other 68 to U+0100.. in byte order.
pub(crate) fn byte_to_char(b: u8) -> char {
    BYTE_CHARS[usize::from(b)]
}

/// The byte a GPT-2 byte character stands for, if `c` is one.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 256 && is_self_mapped(cp as u8) {
        return Some(cp as u8);
    }
    let k = cp.checked_sub(256)?;
    (k < 68).then(|| UNMAPPED_BYTES[k as usize])
}

const fn is_self_mapped(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The 68 bytes that are not self-mapped, in order.
static UNMAPPED_BYTES: [u8; 68] = {
    let mut t = [0u8; 68];
    let mut n = 0;
    let mut b = 0usize;
    while b < 256 {
        if !is_self_mapped(b as u8) {
            t[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    t
};

static BYTE_CHARS: [char; 256] = {
    let mut t = ['\0'; 256];
    let mut n = 0u32;
    let mut b = 0usize;
    while b < 256 {
        let cp = if is_self_mapped(b as u8) {
            b as u32
        } else {
            n += 1;
            255 + n
        };
        t[b] = match char::from_u32(cp) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    t
};

/// Length of the UTF-8 sequence a lead byte starts (1 for continuation bytes), as
/// llama.cpp's `unicode_len_utf8`.
pub(crate) fn utf8_len(lead: u8) -> usize {
    const LOOKUP: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[usize::from(lead >> 4)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_match_llama_cpp_table() {
        // Spot checks against llama.cpp's src/unicode-data.cpp.
        assert_eq!(flags(0x00A0).0, flag::SEPARATOR | flag::WHITESPACE);
        assert_eq!(flags(0x00B5).category(), flag::LETTER);
        assert_eq!(flags(0x0378).category(), flag::UNDEFINED);
        assert_eq!(flags(0x0300).category(), flag::MARK);
        assert_eq!(flags(0x31EF).category(), flag::SYMBOL); // new in Unicode 15.1
        assert_eq!(flags(0xD7FC).category(), flag::UNDEFINED);
        assert_eq!(flags(0xE000).category(), flag::CONTROL);
        assert_eq!(flags(0x1F999).category(), flag::SYMBOL);
        assert_eq!(flags(u32::from('~')).category(), flag::SYMBOL);
        for cp in 0..128u32 {
            let slow = FLAG_RANGES[FLAG_RANGES.partition_point(|&(s, _)| s <= cp) - 1].1;
            assert_eq!(flags(cp).category(), u16::from(slow), "U+{cp:04X}");
        }
    }

    #[test]
    fn case_and_nfd() {
        assert_eq!(to_lower('Ä' as u32), 'ä' as u32);
        assert_eq!(to_lower('Б' as u32), 'б' as u32);
        assert_eq!(to_lower(0x130), 'i' as u32);
        assert_eq!(nfd_first('é' as u32), 'e' as u32);
        assert_eq!(nfd_first('ệ' as u32), 'e' as u32);
        assert_eq!(nfd_first('a' as u32), 'a' as u32);
        assert_eq!(nfd_first(0), 0);
    }

    #[test]
    fn byte_chars_round_trip() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('中'), None);
    }
}
