//! The bytes of a JSON body as Python's `json.loads` reads them:
//! `json.detect_encoding` (UTF-8, UTF-16 or UTF-32 by the first bytes) and
//! the strict decoding of each, for [`super::pyjson`].

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// The body's bytes are not text in the encoding Python detected
/// (`UnicodeDecodeError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotText;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Utf8,
    Utf8Sig,
    Utf16Bom,
    Utf16Le,
    Utf16Be,
    Utf32Bom,
    Utf32Le,
    Utf32Be,
}

/// `json.detect_encoding`.
pub(super) fn detect_encoding(b: &[u8]) -> Encoding {
    if b.starts_with(&[0x00, 0x00, 0xfe, 0xff]) || b.starts_with(&[0xff, 0xfe, 0x00, 0x00]) {
        return Encoding::Utf32Bom;
    }
    if b.starts_with(&[0xfe, 0xff]) || b.starts_with(&[0xff, 0xfe]) {
        return Encoding::Utf16Bom;
    }
    if b.starts_with(&[0xef, 0xbb, 0xbf]) {
        return Encoding::Utf8Sig;
    }
    match *b {
        [b0, b1, b2, b3, ..] => {
            if b0 == 0 {
                return if b1 != 0 {
                    Encoding::Utf16Be
                } else {
                    Encoding::Utf32Be
                };
            }
            if b1 == 0 {
                return if b2 != 0 || b3 != 0 {
                    Encoding::Utf16Le
                } else {
                    Encoding::Utf32Le
                };
            }
        }
        [b0, b1] => {
            if b0 == 0 {
                return Encoding::Utf16Be;
            }
            if b1 == 0 {
                return Encoding::Utf16Le;
            }
        }
        _ => {}
    }
    Encoding::Utf8
}

pub(super) fn decode_code_points(b: &[u8]) -> Result<Vec<u32>, NotText> {
    match detect_encoding(b) {
        Encoding::Utf8 => decode_utf8(b),
        Encoding::Utf8Sig => decode_utf8(b.get(3..).unwrap_or(&[])),
        Encoding::Utf16Bom => {
            let le = b.starts_with(&[0xff, 0xfe]);
            decode_utf16(b.get(2..).unwrap_or(&[]), le)
        }
        Encoding::Utf16Le => decode_utf16(b, true),
        Encoding::Utf16Be => decode_utf16(b, false),
        Encoding::Utf32Bom => {
            let le = b.starts_with(&[0xff, 0xfe]);
            decode_utf32(b.get(4..).unwrap_or(&[]), le)
        }
        Encoding::Utf32Le => decode_utf32(b, true),
        Encoding::Utf32Be => decode_utf32(b, false),
    }
}

pub(super) fn is_cont(b: Option<&u8>) -> Option<u32> {
    match b {
        Some(&x) if (0x80..=0xbf).contains(&x) => Some(u32::from(x & 0x3f)),
        _ => None,
    }
}

/// Strict UTF-8 (no overlongs, nothing above U+10FFFF), except that encoded
/// surrogates `ED A0..BF 80..BF` are accepted (`surrogatepass`).
pub(super) fn decode_utf8(b: &[u8]) -> Result<Vec<u32>, NotText> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0usize;
    while let Some(&b0) = b.get(i) {
        if b0 < 0x80 {
            out.push(u32::from(b0));
            i += 1;
            continue;
        }
        let (len, lo, hi) = match b0 {
            0xc2..=0xdf => (2usize, 0x80u8, 0xbfu8),
            0xe0 => (3, 0xa0, 0xbf),
            0xe1..=0xef => (3, 0x80, 0xbf),
            0xf0 => (4, 0x90, 0xbf),
            0xf1..=0xf3 => (4, 0x80, 0xbf),
            0xf4 => (4, 0x80, 0x8f),
            _ => return Err(NotText),
        };
        let b1 = match b.get(i + 1) {
            Some(&x) if (lo..=hi).contains(&x) => u32::from(x & 0x3f),
            _ => return Err(NotText),
        };
        let cp = match len {
            2 => (u32::from(b0 & 0x1f) << 6) | b1,
            3 => {
                let b2 = is_cont(b.get(i + 2)).ok_or(NotText)?;
                (u32::from(b0 & 0x0f) << 12) | (b1 << 6) | b2
            }
            _ => {
                let b2 = is_cont(b.get(i + 2)).ok_or(NotText)?;
                let b3 = is_cont(b.get(i + 3)).ok_or(NotText)?;
                (u32::from(b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3
            }
        };
        out.push(cp);
        i += len;
    }
    Ok(out)
}

/// UTF-16 with `surrogatepass`: unpaired surrogates are kept; an odd trailing
/// byte is an error.
pub(super) fn decode_utf16(b: &[u8], le: bool) -> Result<Vec<u32>, NotText> {
    if !b.len().is_multiple_of(2) {
        return Err(NotText);
    }
    let units: Vec<u32> = b
        .chunks_exact(2)
        .map(|p| match *p {
            [x, y] => u32::from(if le {
                u16::from_le_bytes([x, y])
            } else {
                u16::from_be_bytes([x, y])
            }),
            _ => 0,
        })
        .collect();
    let mut out = Vec::with_capacity(units.len());
    let mut i = 0usize;
    while let Some(&u) = units.get(i) {
        if (0xd800..=0xdbff).contains(&u)
            && let Some(&u2) = units.get(i + 1)
            && (0xdc00..=0xdfff).contains(&u2)
        {
            out.push(0x10000 + (((u - 0xd800) << 10) | (u2 - 0xdc00)));
            i += 2;
            continue;
        }
        out.push(u);
        i += 1;
    }
    Ok(out)
}

/// UTF-32 with `surrogatepass`: surrogate values are kept; values above
/// U+10FFFF and a length that is not a multiple of 4 are errors.
pub(super) fn decode_utf32(b: &[u8], le: bool) -> Result<Vec<u32>, NotText> {
    if !b.len().is_multiple_of(4) {
        return Err(NotText);
    }
    let mut out = Vec::with_capacity(b.len() / 4);
    for q in b.chunks_exact(4) {
        let arr = match *q {
            [a, b1, c, d] => [a, b1, c, d],
            _ => return Err(NotText),
        };
        let cp = if le {
            u32::from_le_bytes(arr)
        } else {
            u32::from_be_bytes(arr)
        };
        if cp > 0x10ffff {
            return Err(NotText);
        }
        out.push(cp);
    }
    Ok(out)
}
