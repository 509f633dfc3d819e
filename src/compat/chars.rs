//! Character classes and Python string helpers the ports share: Python's
//! `str.isspace`, `str.isprintable`, `repr`, and the Unicode data they read
//! (ICU4X's, standing in for Python's `unicodedata`).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::CodePointMapData;
use icu_properties::props::GeneralCategory;

pub(super) type Res<T> = Result<T, String>;

/// RFC 5322 atext (ASCII): `a-zA-Z0-9_!#$%&'*+-/=?^`{|}~`.
pub(super) fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_!#$%&'*+-/=?^`{|}~".contains(c)
}

/// `ATEXT_RE`: atext plus `.`.
pub(super) fn is_atext_or_dot(c: char) -> bool {
    is_atext(c) || c == '.'
}

/// RFC 6531 atext: atext plus every code point from U+0080.
pub(super) fn is_atext_intl(c: char) -> bool {
    is_atext(c) || c >= '\u{80}'
}

/// `ATEXT_HOSTNAME_INTL`: `[a-zA-Z0-9\-\.]` plus every code point from U+0080.
pub(super) fn is_hostname_intl_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || c >= '\u{80}'
}

/// `DOT_ATOM_TEXT` / `DOT_ATOM_TEXT_INTL`: non-empty runs of `allowed`
/// separated by single dots.
pub(super) fn is_dot_atom(s: &[char], allowed: fn(char) -> bool) -> bool {
    !s.is_empty()
        && s.split(|&c| c == '.')
            .all(|atom| !atom.is_empty() && atom.iter().all(|&c| allowed(c)))
}

/// `DOT_ATOM_TEXT_HOSTNAME`: ASCII labels `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`
/// separated by single dots.
pub(super) fn is_ascii_hostname(s: &[char]) -> bool {
    !s.is_empty()
        && s.split(|&c| c == '.').all(|label| {
            !label.is_empty()
                && label.iter().all(|c| c.is_ascii_alphanumeric() || *c == '-')
                && label.first().is_some_and(char::is_ascii_alphanumeric)
                && label.last().is_some_and(char::is_ascii_alphanumeric)
        })
}

/// Python's `str.isspace()` (also `\s` in `re` patterns and what `strip()`
/// removes): a fixed set of 29 code points.
pub(super) fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{1C}'..='\u{1F}' | ' ' | '\u{85}' | '\u{A0}' | '\u{1680}'
            | '\u{2000}'..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// `str.rstrip()` on a char slice.
pub(super) fn rstrip_py_space(s: &[char]) -> &[char] {
    let mut end = s.len();
    while end > 0 && is_py_space(s[end - 1]) {
        end -= 1;
    }
    &s[..end]
}

pub(super) fn general_category(c: char) -> GeneralCategory {
    CodePointMapData::<GeneralCategory>::new().get(c)
}

/// The first letter of the two-letter general category.
pub(super) fn major_category(c: char) -> char {
    use GeneralCategory as G;
    match general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => 'L',
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark => 'M',
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => 'N',
        G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::ConnectorPunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation => 'P',
        G::MathSymbol | G::CurrencySymbol | G::ModifierSymbol | G::OtherSymbol => 'S',
        G::SpaceSeparator | G::LineSeparator | G::ParagraphSeparator => 'Z',
        G::Control | G::Format | G::PrivateUse | G::Surrogate | G::Unassigned => 'C',
    }
}

/// Python's `str.isprintable()` for one character.
pub(super) fn is_printable(c: char) -> bool {
    c == ' ' || !matches!(major_category(c), 'C' | 'Z')
}

/// Python's `repr(str)`.
pub(super) fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        let cp = c as u32;
        match c {
            _ if c == quote || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ if cp < 0x20 || cp == 0x7F => {
                let _ = write!(out, "\\x{cp:02x}");
            }
            _ if cp < 0x7F || is_printable(c) => out.push(c),
            _ if cp <= 0xFF => {
                let _ = write!(out, "\\x{cp:02x}");
            }
            _ if cp <= 0xFFFF => {
                let _ = write!(out, "\\u{cp:04x}");
            }
            _ => {
                let _ = write!(out, "\\U{cp:08x}");
            }
        }
    }
    out.push(quote);
    out
}

/// email-validator's `safe_character_display`: letters, numbers,
/// punctuation and symbols as Python `repr`, anything else by Unicode name,
/// or `U+XXXX` when it has none (eight digits from U+FFFF up, a quirk of the
/// original's `< 0xFFFF` test).
pub(super) fn safe_character_display(c: char) -> String {
    if c == '\\' {
        return "\"\\\"".into();
    }
    if matches!(major_category(c), 'L' | 'N' | 'P' | 'S') {
        return py_repr(c.encode_utf8(&mut [0; 4]));
    }
    if let Some(name) = unicode_names2::name(c) {
        return name.to_string();
    }
    let cp = c as u32;
    if cp < 0xFFFF {
        format!("U+{cp:04X}")
    } else {
        format!("U+{cp:08X}")
    }
}

/// Sorted, de-duplicated displays joined the way the original does.
pub(super) fn join(items: BTreeSet<String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

pub(super) fn chars_to_string(chars: &[char]) -> String {
    chars.iter().collect()
}

/// Unicode NFC.
pub(super) fn nfc(s: &str) -> String {
    ComposingNormalizerBorrowed::new_nfc()
        .normalize(s)
        .into_owned()
}

/// `unicodedata.normalize("NFC", text)[0]`, computed lazily.
pub(super) fn nfc_first_char(text: &[char]) -> Option<char> {
    ComposingNormalizerBorrowed::new_nfc()
        .normalize_iter(text.iter().copied())
        .next()
}

/// `Err` when any of `chars` is `bad`: email-validator's "contains invalid
/// characters" sentence, then each offending character named once, sorted,
/// joined with ", ", and a final period.
pub(super) fn refuse_chars(chars: &[char], bad: impl Fn(char) -> bool, sentence: &str) -> Res<()> {
    let found: BTreeSet<String> = chars
        .iter()
        .filter(|&&c| bad(c))
        .map(|&c| safe_character_display(c))
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("{sentence}: {}.", join(found)))
    }
}
