//! The parts of the `idna` 3.x Python package (IDNA 2008), as
//! email-validator calls it, and of Python's `punycode` codec, whose error
//! texts leak into email-validator's messages. Messages follow idna 3.20.

use icu_normalizer::properties::CanonicalCombiningClassMapBorrowed;
use icu_normalizer::uts46::Uts46MapperBorrowed;
use icu_properties::props::{
    BidiClass, ChangesWhenNfkcCasefolded, DefaultIgnorableCodePoint, GeneralCategory,
    HangulSyllableType, JoiningType, NoncharacterCodePoint, Script, WhiteSpace,
};
use icu_properties::{CodePointMapData, CodePointSetData};

use super::chars::{Res, chars_to_string, general_category, major_category, nfc, py_repr};

/// The idna package's defensive `_max_input_length`.
pub(super) const IDNA_MAX_INPUT_LENGTH: usize = 1024;
/// The idna package's `_max_domain_length`.
pub(super) const IDNA_MAX_DOMAIN_LENGTH: usize = 253;

/// `idna.uts46_remap(domain, std3_rules=False, transitional=False)`:
/// UTS #46 mapping then NFC; a disallowed code point is reported with its
/// 1-based position in the input.
pub(super) fn uts46_remap(domain: &[char]) -> Res<String> {
    if domain.len() > IDNA_MAX_INPUT_LENGTH {
        return Err("Domain too long".into());
    }
    if domain.iter().all(char::is_ascii) {
        // The only ASCII mapping is lower-casing (no STD3 rules here).
        return Ok(domain.iter().map(char::to_ascii_lowercase).collect());
    }
    let mapper = Uts46MapperBorrowed::new();
    for (pos, &c) in domain.iter().enumerate() {
        // ICU replaces disallowed characters with U+FFFD (itself disallowed).
        if mapper
            .map_normalize(std::iter::once(c))
            .any(|m| m == '\u{FFFD}')
        {
            return Err(format!(
                "Codepoint {} not allowed at position {} in {}",
                unot(c),
                pos + 1,
                py_repr(&chars_to_string(domain))
            ));
        }
    }
    Ok(mapper.map_normalize(domain.iter().copied()).collect())
}

/// An idna error message (`str(IDNAError)`).
pub(super) type IdnaResult<T> = Result<T, String>;

/// `idna.alabel`: U-label to A-label (ASCII labels are validated as such).
pub(super) fn idna_alabel(label: &str) -> IdnaResult<String> {
    let len = label.chars().count();
    if len > IDNA_MAX_INPUT_LENGTH {
        return Err("Label too long".into());
    }
    if label.is_ascii() {
        idna_ulabel(label)?;
        if label.len() > 63 {
            return Err("Label too long".into());
        }
        return Ok(label.to_owned());
    }
    let chars: Vec<char> = label.chars().collect();
    check_label(&chars)?;
    let encoded = format!("xn--{}", punycode_encode(label)?);
    if encoded.len() > 63 {
        return Err("Label too long".into());
    }
    Ok(encoded)
}

/// `idna.ulabel`: A-label (or plain label) to U-label.
pub(super) fn idna_ulabel(label: &str) -> IdnaResult<String> {
    if label.chars().count() > IDNA_MAX_INPUT_LENGTH {
        return Err("Label too long".into());
    }
    if !label.is_ascii() {
        let chars: Vec<char> = label.chars().collect();
        check_label(&chars)?;
        return Ok(label.to_owned());
    }
    let lower = label.to_ascii_lowercase();
    let Some(puny) = lower.strip_prefix("xn--") else {
        let chars: Vec<char> = lower.chars().collect();
        check_label(&chars)?;
        return Ok(lower);
    };
    if puny.is_empty() {
        return Err("Malformed A-label, no Punycode eligible content found".into());
    }
    if puny.ends_with('-') {
        return Err("A-label must not end with a hyphen".into());
    }
    let decoded = punycode_decode(puny).ok_or_else(|| "Invalid A-label".to_owned())?;
    let decoded_str = chars_to_string(&decoded);
    if punycode_encode(&decoded_str)? != puny {
        return Err("A-label is not the canonical Punycode encoding of its U-label".into());
    }
    check_label(&decoded)?;
    Ok(decoded_str)
}

/// Python's `str.encode("punycode")` for a valid Unicode string.
pub(super) fn punycode_encode(label: &str) -> IdnaResult<String> {
    // Overflow is impossible for labels of at most 1024 characters.
    idna::punycode::encode_str(label).ok_or_else(|| "Label too long".to_owned())
}

/// Python's `bytes.decode("punycode")` (strict). Python splits at the last
/// `-` even when it is the first character (`idna::punycode` would treat a
/// leading `-` as a digit), so the algorithm is reimplemented here. `None`
/// stands for the `UnicodeError` that idna turns into "Invalid A-label".
/// (Python could also produce surrogate code points; Rust strings cannot,
/// so those inputs end up as "Invalid A-label" here.)
pub(super) fn punycode_decode(text: &str) -> Option<Vec<char>> {
    const BASE: u64 = 36;
    let (base, extended) = match text.rfind('-') {
        Some(pos) => (&text[..pos], &text[pos + 1..]),
        None => ("", text),
    };
    let mut output: Vec<char> = base.chars().collect();
    let ext = extended.as_bytes();
    let mut code: u64 = 0x80;
    let mut pos: i64 = -1;
    let mut bias: u64 = 72;
    let mut extpos = 0usize;
    while extpos < ext.len() {
        let start = extpos;
        // decode_generalized_number
        let mut result: u64 = 0;
        let mut w: u64 = 1;
        let mut j: u64 = 0;
        let delta = loop {
            let byte = *ext.get(extpos)?;
            extpos += 1;
            let digit = match byte {
                b'A'..=b'Z' => u64::from(byte - b'A'),
                b'a'..=b'z' => u64::from(byte - b'a'),
                b'0'..=b'9' => u64::from(byte - b'0') + 26,
                _ => return None,
            };
            let t = (BASE * (j + 1)).saturating_sub(bias).clamp(1, 26);
            result = result.checked_add(digit.checked_mul(w)?)?;
            if digit < t {
                break result;
            }
            w = w.checked_mul(BASE - t)?;
            j += 1;
        };
        pos = pos
            .checked_add(i64::try_from(delta).ok()?)?
            .checked_add(1)?;
        let slots = i64::try_from(output.len()).ok()? + 1;
        code = code.checked_add(u64::try_from(pos / slots).ok()?)?;
        if code > 0x10FFFF {
            return None;
        }
        pos %= slots;
        let c = char::from_u32(u32::try_from(code).ok()?)?;
        output.insert(usize::try_from(pos).ok()?, c);
        bias = punycode_adapt(delta, start == 0, output.len() as u64);
    }
    Some(output)
}

/// RFC 3492 bias adaptation, as in Python's `encodings.punycode.adapt`.
pub(super) fn punycode_adapt(delta: u64, first: bool, numchars: u64) -> u64 {
    let mut delta = if first { delta / 700 } else { delta / 2 };
    delta += delta / numchars.max(1);
    let mut divisions = 0;
    while delta > 455 {
        delta /= 35;
        divisions += 36;
    }
    divisions + (36 * delta / (delta + 38))
}

/// Python idna's label separators (`_unicode_dots_re`).
pub(super) fn is_idna_dot(c: char) -> bool {
    matches!(c, '.' | '\u{3002}' | '\u{FF0E}' | '\u{FF61}')
}

/// What `idna.decode` and `idna.encode` share: `s` split at Python idna's
/// dots, each label mapped by `label` (an empty result is an error), joined
/// again with a trailing dot kept; with whether there was one.
pub(super) fn idna_labels(
    s: &str,
    label: impl Fn(&str) -> IdnaResult<String>,
) -> IdnaResult<(String, bool)> {
    let len = s.chars().count();
    if len > IDNA_MAX_INPUT_LENGTH || len > IDNA_MAX_DOMAIN_LENGTH + 1 {
        return Err("Domain too long".into());
    }
    let mut labels: Vec<&str> = s.split(is_idna_dot).collect();
    if labels.is_empty() || labels == [""] {
        return Err("Empty domain".into());
    }
    let trailing_dot = labels.last().is_some_and(|l| l.is_empty());
    if trailing_dot {
        labels.pop();
    }
    let mut result = Vec::with_capacity(labels.len() + 1);
    for one in labels {
        let mapped = label(one)?;
        if mapped.is_empty() {
            return Err("Empty label".into());
        }
        result.push(mapped);
    }
    if trailing_dot {
        result.push(String::new());
    }
    Ok((result.join("."), trailing_dot))
}

/// `idna.decode(s)` (not strict, no UTS #46, not display mode).
pub(super) fn idna_decode(s: &str) -> IdnaResult<String> {
    idna_labels(s, idna_ulabel).map(|(out, _)| out)
}

/// `idna.encode(s)` (not strict, no UTS #46).
pub(super) fn idna_encode(s: &str) -> IdnaResult<String> {
    let (out, trailing_dot) = idna_labels(s, idna_alabel)?;
    if out.len() > IDNA_MAX_DOMAIN_LENGTH + usize::from(trailing_dot) {
        return Err("Domain too long".into());
    }
    Ok(out)
}

/// `idna.check_label`: NFC, hyphens, leading mark, IDNA 2008 code point
/// classes with CONTEXTJ/CONTEXTO rules, then the RFC 5893 Bidi rule.
pub(super) fn check_label(label: &[char]) -> IdnaResult<()> {
    if label.len() > IDNA_MAX_INPUT_LENGTH {
        return Err("Label too long".into());
    }
    if label.is_empty() {
        return Err("Empty Label".into());
    }
    if label.len() > IDNA_MAX_DOMAIN_LENGTH + 1 {
        return Err("Label too long".into());
    }
    let s = chars_to_string(label);
    if nfc(&s) != s {
        return Err("Label must be in Normalization Form C".into());
    }
    if label.len() >= 4 && label[2] == '-' && label[3] == '-' {
        return Err("Label has disallowed hyphens in 3rd and 4th position".into());
    }
    if label.first() == Some(&'-') || label.last() == Some(&'-') {
        return Err("Label must not start or end with a hyphen".into());
    }
    if major_category(label[0]) == 'M' {
        return Err("Label begins with an illegal combining character".into());
    }
    for (pos, &c) in label.iter().enumerate() {
        match idna2008_class(c) {
            IdnaClass::Pvalid => {}
            IdnaClass::ContextJ => match valid_contextj(label, pos) {
                Some(true) => {}
                Some(false) => {
                    return Err(format!(
                        "Joiner {} not allowed at position {} in {}",
                        unot(c),
                        pos + 1,
                        py_repr(&s)
                    ));
                }
                None => {
                    return Err(format!(
                        "Unknown codepoint adjacent to joiner {} at position {} in {}",
                        unot(c),
                        pos + 1,
                        py_repr(&s)
                    ));
                }
            },
            IdnaClass::ContextO => {
                if !valid_contexto(label, pos) {
                    return Err(format!(
                        "Codepoint {} not allowed at position {} in {}",
                        unot(c),
                        pos + 1,
                        py_repr(&s)
                    ));
                }
            }
            IdnaClass::Disallowed => {
                return Err(format!(
                    "Codepoint {} at position {} of {} not allowed",
                    unot(c),
                    pos + 1,
                    py_repr(&s)
                ));
            }
        }
    }
    check_bidi(label)
}

/// RFC 5892 derived property value of a code point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdnaClass {
    Pvalid,
    ContextJ,
    ContextO,
    /// DISALLOWED or UNASSIGNED (the idna package treats both alike).
    Disallowed,
}

/// Derives the IDNA 2008 class (RFC 5892 section 3) from Unicode properties.
/// The Python package ships the same derivation as precomputed tables; this
/// computes it from ICU's data instead of embedding a 1,266-range table.
pub(super) fn idna2008_class(c: char) -> IdnaClass {
    let cp = c as u32;
    // F: Exceptions (RFC 5892 2.6).
    match cp {
        0x00DF | 0x03C2 | 0x06FD | 0x06FE | 0x0F0B | 0x3007 => return IdnaClass::Pvalid,
        0x00B7 | 0x0375 | 0x05F3 | 0x05F4 | 0x30FB | 0x0660..=0x0669 | 0x06F0..=0x06F9 => {
            return IdnaClass::ContextO;
        }
        0x0640 | 0x07FA | 0x302E | 0x302F | 0x3031..=0x3035 | 0x303B => {
            return IdnaClass::Disallowed;
        }
        _ => {}
    }
    // G: BackwardCompatible is empty.
    let gc = general_category(c);
    let noncharacter = CodePointSetData::new::<NoncharacterCodePoint>().contains(c);
    // J: Unassigned.
    if gc == GeneralCategory::Unassigned && !noncharacter {
        return IdnaClass::Disallowed;
    }
    // K: LDH.
    if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
        return IdnaClass::Pvalid;
    }
    // H: JoinControl.
    if cp == 0x200C || cp == 0x200D {
        return IdnaClass::ContextJ;
    }
    // B: Unstable, i.e. NFKC(casefold(NFKC(cp))) != cp. The NFKC_Casefold
    // based property differs only for default ignorables, which C rejects.
    if CodePointSetData::new::<ChangesWhenNfkcCasefolded>().contains(c) {
        return IdnaClass::Disallowed;
    }
    // C: IgnorableProperties.
    if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || CodePointSetData::new::<WhiteSpace>().contains(c)
        || noncharacter
    {
        return IdnaClass::Disallowed;
    }
    // D: IgnorableBlocks.
    if matches!(cp, 0x20D0..=0x20FF | 0x1D100..=0x1D1FF | 0x1D200..=0x1D24F) {
        return IdnaClass::Disallowed;
    }
    // I: OldHangulJamo.
    let hst = CodePointMapData::<HangulSyllableType>::new().get(c);
    if hst == HangulSyllableType::LeadingJamo
        || hst == HangulSyllableType::VowelJamo
        || hst == HangulSyllableType::TrailingJamo
    {
        return IdnaClass::Disallowed;
    }
    // A: LetterDigits.
    use GeneralCategory as G;
    if matches!(
        gc,
        G::LowercaseLetter
            | G::UppercaseLetter
            | G::OtherLetter
            | G::DecimalNumber
            | G::ModifierLetter
            | G::NonspacingMark
            | G::SpacingMark
    ) {
        return IdnaClass::Pvalid;
    }
    IdnaClass::Disallowed
}

/// `idna.valid_contextj` (RFC 5892 A.1, A.2). `None` is the `ValueError`
/// raised for an adjacent code point with combining class 0 and no name.
pub(super) fn valid_contextj(label: &[char], pos: usize) -> Option<bool> {
    let c = label[pos];
    let virama_before = || -> Option<bool> {
        if pos == 0 {
            return Some(false);
        }
        let prev = label[pos - 1];
        let ccc = CanonicalCombiningClassMapBorrowed::new().get_u8(prev);
        if ccc == 0 && unicode_names2::name(prev).is_none() {
            return None;
        }
        Some(ccc == 9)
    };
    if c == '\u{200C}' {
        if virama_before()? {
            return Some(true);
        }
        let jt = CodePointMapData::<JoiningType>::new();
        let mut ok = false;
        for &p in label[..pos].iter().rev() {
            let t = jt.get(p);
            if t == JoiningType::Transparent {
                continue;
            }
            ok = t == JoiningType::LeftJoining || t == JoiningType::DualJoining;
            break;
        }
        if !ok {
            return Some(false);
        }
        for &n in &label[pos + 1..] {
            let t = jt.get(n);
            if t == JoiningType::Transparent {
                continue;
            }
            return Some(t == JoiningType::RightJoining || t == JoiningType::DualJoining);
        }
        return Some(false);
    }
    if c == '\u{200D}' {
        return virama_before();
    }
    Some(false)
}

/// `idna.valid_contexto` (RFC 5892 A.3-A.9).
pub(super) fn valid_contexto(label: &[char], pos: usize) -> bool {
    let cp = label[pos] as u32;
    let script = CodePointMapData::<Script>::new();
    match cp {
        0x00B7 => {
            pos > 0 && pos + 1 < label.len() && label[pos - 1] == 'l' && label[pos + 1] == 'l'
        }
        0x0375 => pos + 1 < label.len() && script.get(label[pos + 1]) == Script::Greek,
        0x05F3 | 0x05F4 => pos > 0 && script.get(label[pos - 1]) == Script::Hebrew,
        0x30FB => label.iter().any(|&c| {
            c != '\u{30FB}'
                && matches!(
                    script.get(c),
                    Script::Hiragana | Script::Katakana | Script::Han
                )
        }),
        0x0660..=0x0669 => !label.iter().any(|&c| ('\u{6F0}'..='\u{6F9}').contains(&c)),
        0x06F0..=0x06F9 => !label.iter().any(|&c| ('\u{660}'..='\u{669}').contains(&c)),
        _ => false,
    }
}

/// `unicodedata.bidirectional` short names ("" for unassigned code points,
/// as Python reports them).
pub(super) fn bidi_class(c: char) -> &'static str {
    if general_category(c) == GeneralCategory::Unassigned {
        return "";
    }
    let b = CodePointMapData::<BidiClass>::new().get(c);
    match b {
        BidiClass::LeftToRight => "L",
        BidiClass::RightToLeft => "R",
        BidiClass::EuropeanNumber => "EN",
        BidiClass::EuropeanSeparator => "ES",
        BidiClass::EuropeanTerminator => "ET",
        BidiClass::ArabicNumber => "AN",
        BidiClass::CommonSeparator => "CS",
        BidiClass::ParagraphSeparator => "B",
        BidiClass::SegmentSeparator => "S",
        BidiClass::WhiteSpace => "WS",
        BidiClass::OtherNeutral => "ON",
        BidiClass::ArabicLetter => "AL",
        BidiClass::NonspacingMark => "NSM",
        BidiClass::BoundaryNeutral => "BN",
        BidiClass::LeftToRightEmbedding => "LRE",
        BidiClass::LeftToRightOverride => "LRO",
        BidiClass::RightToLeftEmbedding => "RLE",
        BidiClass::RightToLeftOverride => "RLO",
        BidiClass::PopDirectionalFormat => "PDF",
        BidiClass::LeftToRightIsolate => "LRI",
        BidiClass::RightToLeftIsolate => "RLI",
        BidiClass::FirstStrongIsolate => "FSI",
        BidiClass::PopDirectionalIsolate => "PDI",
        // BidiClass is an open set of constants; nothing else exists today.
        _ => "ON",
    }
}

/// `idna.check_bidi` (RFC 5893), only for labels with an RTL character.
pub(super) fn check_bidi(label: &[char]) -> IdnaResult<()> {
    if label.len() > IDNA_MAX_INPUT_LENGTH {
        return Err("Label too long".into());
    }
    let mut bidi_label = false;
    for (idx, &c) in label.iter().enumerate() {
        let d = bidi_class(c);
        if d.is_empty() {
            return Err(format!(
                "Unknown directionality in label {} at position {}",
                py_repr(&chars_to_string(label)),
                idx + 1
            ));
        }
        if matches!(d, "R" | "AL" | "AN") {
            bidi_label = true;
        }
    }
    if !bidi_label {
        return Ok(());
    }
    let rtl = match bidi_class(label[0]) {
        "R" | "AL" => true,
        "L" => false,
        _ => {
            return Err(format!(
                "First codepoint in label {} must be directionality L, R or AL",
                py_repr(&chars_to_string(label))
            ));
        }
    };
    let mut valid_ending = false;
    let mut number_type: Option<&str> = None;
    for (idx, &c) in label.iter().enumerate() {
        let d = bidi_class(c);
        if rtl {
            if !matches!(
                d,
                "R" | "AL" | "AN" | "EN" | "ES" | "CS" | "ET" | "ON" | "BN" | "NSM"
            ) {
                return Err(format!(
                    "Invalid direction for codepoint at position {} in a right-to-left label",
                    idx + 1
                ));
            }
            if matches!(d, "R" | "AL" | "EN" | "AN") {
                valid_ending = true;
            } else if d != "NSM" {
                valid_ending = false;
            }
            if matches!(d, "AN" | "EN") {
                match number_type {
                    None => number_type = Some(d),
                    Some(t) if t != d => {
                        return Err("Can not mix numeral types in a right-to-left label".into());
                    }
                    Some(_) => {}
                }
            }
        } else {
            if !matches!(d, "L" | "EN" | "ES" | "CS" | "ET" | "ON" | "BN" | "NSM") {
                return Err(format!(
                    "Invalid direction for codepoint at position {} in a left-to-right label",
                    idx + 1
                ));
            }
            if matches!(d, "L" | "EN") {
                valid_ending = true;
            } else if d != "NSM" {
                valid_ending = false;
            }
        }
    }
    if !valid_ending {
        return Err("Label ends with illegal codepoint directionality".into());
    }
    Ok(())
}

/// idna's `_unot`: `U+XXXX` (at least four upper-case hex digits).
pub(super) fn unot(c: char) -> String {
    format!("U+{:04X}", c as u32)
}
