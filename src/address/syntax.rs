//! Email address syntax validation, ported from the Python stack of the
//! original service so that clients keep seeing byte-identical 422 messages.
//!
//! What is ported, in the order it runs:
//!
//! 1. pydantic 2.11 `pydantic.networks.validate_email` (behind `EmailStr`):
//!    the 2048-character limit, the "pretty email" `Name <addr>` regex and
//!    `str.strip()`.
//! 2. email-validator 2.3.0 `validate_email(email, check_deliverability=False)`
//!    with every other option at its default: `allow_smtputf8=True`,
//!    `allow_empty_local=False`, `allow_quoted_local=False`,
//!    `allow_domain_literal=False`, `allow_display_name=False`,
//!    `strict=False`, `globally_deliverable=True`, `test_environment=False`.
//! 3. The parts of the `idna` 3.x Python package (IDNA 2008) and of
//!    Python's `ipaddress` and `punycode` codec whose error texts leak into
//!    email-validator's messages.
//!
//! Error strings are the library's sentence, i.e. the `reason` that pydantic
//! puts after `value is not a valid email address: `.
//!
//! Unicode data comes from ICU4X (`icu_properties`, `icu_normalizer`, the
//! back end that `idna` 1.x itself uses) and `unicode_names2`. The original
//! ran on Python's `unicodedata` (Unicode 14.0 on Python 3.11) plus the idna
//! package's own tables, so code points assigned after Unicode 14 can be
//! judged differently (Python sees them as unassigned, "unsafe"); this port
//! does not try to emulate the older Unicode version.
//!
//! Known differences (all found by exhaustive/differential comparison with
//! the real libraries; see section 9 of the research notes, RULES.md):
//! * code points assigned in Unicode 15-17 (Python: `Cn`, so "unsafe
//!   characters: U+XXXX", escaped in reprs, "Unknown directionality" in
//!   decoded `xn--` labels), and code points new in Unicode 18 (PVALID in
//!   idna 3.20's tables, unassigned in ICU 17);
//! * six code points whose bidi class changed since Unicode 14 (U+1171E and
//!   some mathematical nablas); they only matter inside right-to-left labels;
//! * `xn--` labels that decode to surrogate code points: Python names the
//!   surrogate ("Codepoint U+DD2E ... not allowed"), the port says
//!   "Invalid A-label" because a Rust string cannot hold a surrogate.
//!
//! Messages that come from the idna package follow idna 3.20; older idna
//! releases word or decide a few cases differently.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_normalizer::properties::CanonicalCombiningClassMapBorrowed;
use icu_normalizer::uts46::Uts46MapperBorrowed;
use icu_properties::props::{
    BidiClass, ChangesWhenNfkcCasefolded, DefaultIgnorableCodePoint, GeneralCategory,
    HangulSyllableType, JoiningType, NoncharacterCodePoint, Script, WhiteSpace,
};
use icu_properties::{CodePointMapData, CodePointSetData};

/// pydantic's `MAX_EMAIL_LENGTH`, counted in characters (code points).
const MAX_EMAIL_LENGTH: usize = 2048;
/// email-validator's `EMAIL_MAX_LENGTH`, counted in UTF-8 bytes.
const EMAIL_MAX_LENGTH: usize = 254;
/// email-validator's `DOMAIN_MAX_LENGTH` (octets of the ASCII form).
const DOMAIN_MAX_LENGTH: usize = 253;
/// email-validator's `DNS_LABEL_LENGTH_LIMIT`.
const DNS_LABEL_LENGTH_LIMIT: usize = 63;
/// The idna package's defensive `_max_input_length`.
const IDNA_MAX_INPUT_LENGTH: usize = 1024;
/// The idna package's `_max_domain_length`.
const IDNA_MAX_DOMAIN_LENGTH: usize = 253;

/// RFC 2142 mailbox names that email-validator lower-cases.
const CASE_INSENSITIVE_MAILBOX_NAMES: [&str; 15] = [
    "info",
    "marketing",
    "sales",
    "support",
    "abuse",
    "noc",
    "security",
    "postmaster",
    "hostmaster",
    "usenet",
    "news",
    "webmaster",
    "www",
    "uucp",
    "ftp",
];

/// email-validator's `SPECIAL_USE_DOMAIN_NAMES` (the `example` entries are
/// commented out in the original, so `example.com` is accepted).
const SPECIAL_USE_DOMAIN_NAMES: [&str; 6] =
    ["arpa", "invalid", "local", "localhost", "onion", "test"];

type Res<T> = Result<T, String>;

/// An address that passed validation, in the original library's normalized form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The local part (before the `@`): NFC-normalized with case kept, except
    /// that the RFC 2142 role names (`postmaster`, `info`, ...) are lower-cased.
    pub local_part: String,
    /// The domain in its internationalized form (UTS #46 mapped, lower-cased,
    /// NFC, and any `xn--` labels decoded back to Unicode).
    pub domain: String,
    /// The domain in IDNA 2008 ASCII form (`xn--` labels).
    pub ascii_domain: String,
}

impl Address {
    /// `local_part@domain`: what pydantic's `EmailStr` returns
    /// (email-validator's `normalized`).
    pub fn normalized(&self) -> String {
        format!("{}@{}", self.local_part, self.domain)
    }

    /// `local_part@ascii_domain`. For an ASCII local part this is
    /// email-validator's `ascii_email`; for an internationalized local part
    /// (where email-validator's `ascii_email` is `None`) it is the form that
    /// its last length check measures, and is not pure ASCII.
    pub fn ascii_email(&self) -> String {
        format!("{}@{}", self.local_part, self.ascii_domain)
    }
}

/// pydantic's `validate_email` + email-validator's syntax checks with pydantic's options.
/// Err holds the library's sentence exactly (the text after "value is not a valid email address: ").
pub fn validate(input: &str) -> Result<Address, String> {
    // pydantic counts Python `len()`, i.e. code points, before anything else.
    if input.chars().count() > MAX_EMAIL_LENGTH {
        return Err(format!(
            "Length must not exceed {MAX_EMAIL_LENGTH} characters"
        ));
    }
    // A `Name <addr>` value is reduced to `addr`; otherwise the value is kept
    // as is (email-validator then parses any angle brackets itself).
    let value = pretty_email_address(input).unwrap_or(input);
    let email = value.trim_matches(is_py_space);
    validate_email(email)
}

// ---------------------------------------------------------------------------
// pydantic: the "pretty email" regex
// ---------------------------------------------------------------------------

/// A character of pydantic's `name_chars` class: `[\w!#$%&'*+\-/=?^_`{|}~]`.
/// Python's Unicode `\w` is exactly "general category L* or N*, or `_`".
fn is_name_char(c: char) -> bool {
    matches!(major_category(c), 'L' | 'N') || "_!#$%&'*+-/=?^`{|}~".contains(c)
}

/// Emulates `pretty_email_regex.fullmatch(value)` and returns group 3 (the
/// address between the angle brackets) when it matches.
///
/// The regex is
/// `\s*(?:((?:N+\s+)*N+)|"((?:[^"]|\")+)")?\s*<(.+)>\s*` (N = name chars).
/// Rather than a backtracking engine, this reproduces the match Python's
/// engine finds:
/// * `(.+)>\s*` must end at the last non-space character, which must be `>`;
///   `.` excludes `\n`, so the address must not contain one.
/// * After leading spaces the input starts with a name char (unquoted name:
///   everything up to the first `<` must be name chars and spaces), with `"`
///   (quoted name: the greedy `+` tries the last possible closing quote
///   first, and the quotes may enclose anything, even `"` and newlines), or
///   with `<` (no name). Only one of the alternatives can apply to a given
///   first character.
fn pretty_email_address(text: &str) -> Option<&str> {
    let trimmed_end = text.trim_end_matches(is_py_space);
    let close = trimmed_end.strip_suffix('>')?;
    // Byte offset of the final `>`; the address is text[open+1..close_at].
    let close_at = close.len();
    let start = text.len() - text.trim_start_matches(is_py_space).len();
    let rest = &text[start..];
    let address_from = |open: usize| -> Option<&str> {
        // `(.+)`: at least one character, none of them a newline.
        let inner = text.get(open + 1..close_at)?;
        (!inner.is_empty() && !inner.contains('\n')).then_some(inner)
    };
    let first = rest.chars().next()?;
    if first == '<' {
        return address_from(start);
    }
    if is_name_char(first) {
        let open = start + rest.find('<')?;
        let name = &text[start..open];
        if name.chars().all(|c| is_name_char(c) || is_py_space(c)) {
            return address_from(open);
        }
        return None;
    }
    if first == '"' {
        // Candidate closing quotes, longest match first; at least one
        // character must sit between the quotes.
        let body_start = start + 1;
        let mut candidates: Vec<usize> = text[body_start..]
            .char_indices()
            .filter(|&(i, c)| c == '"' && i > 0)
            .map(|(i, _)| body_start + i)
            .collect();
        candidates.reverse();
        for quote in candidates {
            let after = &text[quote + 1..];
            let spaces = after.len() - after.trim_start_matches(is_py_space).len();
            let open = quote + 1 + spaces;
            if text[open..].starts_with('<')
                && open < close_at
                && let Some(address) = address_from(open)
            {
                return Some(address);
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// email-validator: validate_email()
// ---------------------------------------------------------------------------

/// email-validator's `validate_email` with pydantic's options.
fn validate_email(email: &str) -> Res<Address> {
    let email: Vec<char> = email.chars().collect();
    let split = split_email(&email)?;

    // `original`, used by the first length check: the display name dropped,
    // the local part unescaped (quoted local parts fail before that check).
    let original = format!(
        "{}@{}",
        chars_to_string(&split.local_part),
        chars_to_string(&split.domain_part)
    );

    let local = validate_local_part(&split.local_part, split.is_quoted)?;
    let mut local_part = local.local_part;
    let mut ascii_local_part = local.ascii_local_part;

    // RFC 6532 3.1: return the NFC form, which must itself be valid.
    let normalized_local = nfc(&local_part);
    if normalized_local != local_part {
        let chars: Vec<char> = normalized_local.chars().collect();
        if let Err(e) = validate_local_part(&chars, split.is_quoted) {
            return Err(format!("After Unicode normalization: {e}"));
        }
        local_part = normalized_local;
    }

    if split.is_quoted {
        return Err("Quoting the part before the @-sign is not allowed here.".into());
    }

    if let Some(ascii) = &ascii_local_part
        && CASE_INSENSITIVE_MAILBOX_NAMES.contains(&ascii.to_ascii_lowercase().as_str())
    {
        ascii_local_part = Some(ascii.to_ascii_lowercase());
        local_part = local_part.to_ascii_lowercase();
    }

    let domain_part = &split.domain_part;
    if domain_part.is_empty() {
        return Err("There must be something after the @-sign.".into());
    }
    if domain_part.first() == Some(&'[') && domain_part.last() == Some(&']') {
        // A domain literal. pydantic never allows one, but the literal is
        // parsed first, so its own syntax errors take precedence.
        let inner = domain_part.get(1..domain_part.len() - 1).unwrap_or(&[]);
        validate_domain_literal(inner)?;
        return Err("A bracketed IP address after the @-sign is not allowed here.".into());
    }
    let (domain, ascii_domain) = validate_domain_name(domain_part)?;

    let normalized = format!("{local_part}@{domain}");
    let ascii_form = format!(
        "{}@{}",
        ascii_local_part
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&local_part),
        ascii_domain
    );
    validate_email_length(&original, &normalized, &ascii_form)?;

    if split.display_name.is_some() {
        return Err(
            "A display name and angle brackets around the email address are not permitted here."
                .into(),
        );
    }

    Ok(Address {
        local_part,
        domain,
        ascii_domain,
    })
}

/// The result of `split_email`.
struct Split {
    display_name: Option<Vec<char>>,
    local_part: Vec<char>,
    domain_part: Vec<char>,
    is_quoted: bool,
}

/// email-validator's `split_email`: display name, unescaped local part,
/// domain part and whether the local part was quoted.
fn split_email(email: &[char]) -> Res<Split> {
    let (left, right) = split_at_unquoted_special(email, &['@', '<'])?;

    let (display_name, local_part, domain_part) = if right.first() == Some(&'<') {
        let left = rstrip_py_space(left);
        let (display_name, quoted) = unquote_quoted_string(left)?;
        if !quoted {
            // Note `.` is in ATEXT_RE but is rejected here explicitly.
            let bad: BTreeSet<String> = display_name
                .iter()
                .filter(|&&c| (!is_atext_or_dot(c) && c != ' ') || c == '.')
                .map(|&c| safe_character_display(c))
                .collect();
            if !bad.is_empty() {
                return Err(format!(
                    "The display name contains invalid characters when not quoted: {}.",
                    join(bad)
                ));
            }
        }
        check_unsafe_chars(&display_name, true)?;

        if !right.contains(&'>') {
            return Err("An open angle bracket at the start of the email address has to be followed by a close angle bracket at the end.".into());
        }
        let mut end = right.len();
        while end > 0 && right[end - 1] == ' ' {
            end -= 1;
        }
        let right = &right[..end];
        if right.last() != Some(&'>') {
            return Err("There can't be anything after the email address.".into());
        }
        // `right_part[1:].rstrip(">")` removes every trailing `>`.
        let mut addr_end = right.len();
        while addr_end > 1 && right[addr_end - 1] == '>' {
            addr_end -= 1;
        }
        let addr_spec = &right[1.min(addr_end)..addr_end];
        let (local, domain) = split_at_unquoted_special(addr_spec, &['@'])?;
        (Some(display_name), local, domain)
    } else {
        (None, left, right)
    };

    let domain_part = domain_part.strip_prefix(&['@'][..]).unwrap_or(domain_part);
    let (local_part, is_quoted) = unquote_quoted_string(local_part)?;
    Ok(Split {
        display_name,
        local_part,
        domain_part: domain_part.to_vec(),
        is_quoted,
    })
}

/// `split_string_at_unquoted_special`: split before the first special
/// character that is outside quotes and does not combine with what follows.
fn split_at_unquoted_special<'a>(
    text: &'a [char],
    specials: &[char],
) -> Res<(&'a [char], &'a [char])> {
    let mut inside_quote = false;
    let mut escaped = false;
    let mut split_at = text.len();
    for (i, &c) in text.iter().enumerate() {
        // Python tests `NFC(text[i:])[0] != c` on every character. The answer
        // only changes the outcome for quote/escape state and the specials,
        // so it is computed only there. A character that changes under NFC
        // (e.g. `<` + U+0338 -> U+226E) is taken literally, without touching
        // the escape state.
        let matters = inside_quote || c == '"' || specials.contains(&c);
        if matters && nfc_first_char(&text[i..]) != Some(c) {
            continue;
        }
        if inside_quote {
            if c == '\\' && !escaped {
                escaped = true;
            } else if c == '"' && !escaped {
                inside_quote = false;
                escaped = false;
            } else {
                escaped = false;
            }
        } else if c == '"' {
            inside_quote = true;
        } else if specials.contains(&c) {
            split_at = i;
            break;
        }
    }
    if split_at == text.len() {
        if text.contains(&'\u{FF20}') {
            return Err("The email address has the \"full-width\" at-sign (@) character instead of a regular at-sign.".into());
        }
        if text.contains(&'\u{FE6B}') {
            return Err("The email address has the \"small commercial at\" character instead of a regular at-sign.".into());
        }
        return Err("An email address must have an @-sign.".into());
    }
    Ok((&text[..split_at], &text[split_at..]))
}

/// `unquote_quoted_string`: strip surrounding quotes and backslash escapes.
/// Only a string that starts with `"` counts as quoted.
fn unquote_quoted_string(text: &[char]) -> Res<(Vec<char>, bool)> {
    let mut quoted = false;
    let mut escaped = false;
    let mut value = Vec::with_capacity(text.len());
    for (i, &c) in text.iter().enumerate() {
        if quoted {
            if escaped {
                value.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                if i != text.len() - 1 {
                    // Listed in order, repeats kept, no final period.
                    let extra: Vec<String> = text[i + 1..]
                        .iter()
                        .map(|&c| safe_character_display(c))
                        .collect();
                    return Err(format!(
                        "Extra character(s) found after close quote: {}",
                        extra.join(", ")
                    ));
                }
                break;
            } else {
                value.push(c);
            }
        } else if i == 0 && c == '"' {
            quoted = true;
        } else {
            value.push(c);
        }
    }
    Ok((value, quoted))
}

/// The result of `validate_email_local_part`. (Its `smtputf8` flag is
/// implied: `ascii_local_part` is `None` exactly when SMTPUTF8 is needed.)
struct LocalPart {
    local_part: String,
    ascii_local_part: Option<String>,
}

/// email-validator's `validate_email_local_part` (smtputf8 allowed, empty
/// local part not allowed, not strict: no 64-character limit).
fn validate_local_part(local: &[char], quoted: bool) -> Res<LocalPart> {
    if local.is_empty() {
        return Err("There must be something before the @-sign.".into());
    }
    let s = chars_to_string(local);
    if is_dot_atom(local, is_atext) {
        return Ok(LocalPart {
            local_part: s.clone(),
            ascii_local_part: Some(s),
        });
    }

    let mut valid_quoted = false;
    let mut requires_smtputf8 = false;
    let valid = if is_dot_atom(local, is_atext_intl) {
        requires_smtputf8 = true;
        true
    } else if quoted {
        // QTEXT_INTL: U+0020-U+007E and U+0080 and up.
        let bad: BTreeSet<String> = local
            .iter()
            .filter(|&&c| !(matches!(c, ' '..='~') || c >= '\u{80}'))
            .map(|&c| safe_character_display(c))
            .collect();
        if !bad.is_empty() {
            return Err(format!(
                "The email address contains invalid characters in quotes before the @-sign: {}.",
                join(bad)
            ));
        }
        if local.iter().any(|&c| !matches!(c, ' '..='~')) {
            requires_smtputf8 = true;
        }
        valid_quoted = true;
        true
    } else {
        false
    };

    if valid {
        check_unsafe_chars(local, valid_quoted)?;
        let local_part = if valid_quoted {
            // Re-quote with the minimum escaping (RFC 5321 4.1.2).
            let mut q = String::with_capacity(s.len() + 2);
            q.push('"');
            for c in s.chars() {
                if c == '"' || c == '\\' {
                    q.push('\\');
                }
                q.push(c);
            }
            q.push('"');
            q
        } else {
            s
        };
        let ascii_local_part = (!requires_smtputf8).then(|| local_part.clone());
        return Ok(LocalPart {
            local_part,
            ascii_local_part,
        });
    }

    // Not valid: find out why.
    let bad: BTreeSet<String> = local
        .iter()
        .filter(|&&c| !(is_atext_intl(c) || c == '.'))
        .map(|&c| safe_character_display(c))
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "The email address contains invalid characters before the @-sign: {}.",
            join(bad)
        ));
    }
    check_dot_atom(
        local,
        "An email address cannot start with a {}.",
        "An email address cannot have a {} immediately before the @-sign.",
        false,
    )?;
    Err("The email address contains invalid characters before the @-sign.".into())
}

/// email-validator's `check_unsafe_chars`: reject characters that are not
/// letters, numbers, punctuation or symbols (marks only at the start, spaces
/// only when `allow_space`). Listed sorted by code point.
fn check_unsafe_chars(s: &[char], allow_space: bool) -> Res<()> {
    let mut bad = BTreeSet::new();
    for (i, &c) in s.iter().enumerate() {
        let gc = general_category(c);
        match major_category(c) {
            'L' | 'N' | 'P' | 'S' => {}
            'M' => {
                // A leading mark would combine with whatever precedes the address.
                if i == 0 {
                    bad.insert(c);
                }
            }
            _ if gc == GeneralCategory::SpaceSeparator => {
                if !allow_space {
                    bad.insert(c);
                }
            }
            // Zl, Zp and every C* (control, format, private use, unassigned).
            _ => {
                bad.insert(c);
            }
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = bad.into_iter().map(safe_character_display).collect();
    Err(format!(
        "The email address contains unsafe characters: {}.",
        names.join(", ")
    ))
}

/// email-validator's `check_dot_atom`. The templates contain `{}` for
/// "period" or "hyphen".
fn check_dot_atom(
    label: &[char],
    start_descr: &str,
    end_descr: &str,
    is_hostname: bool,
) -> Res<()> {
    if label.last() == Some(&'.') {
        return Err(end_descr.replace("{}", "period"));
    }
    if label.first() == Some(&'.') {
        return Err(start_descr.replace("{}", "period"));
    }
    if label.windows(2).any(|w| w == ['.', '.']) {
        return Err("An email address cannot have two periods in a row.".into());
    }
    if is_hostname {
        if label.last() == Some(&'-') {
            return Err(end_descr.replace("{}", "hyphen"));
        }
        if label.first() == Some(&'-') {
            return Err(start_descr.replace("{}", "hyphen"));
        }
        if label.windows(2).any(|w| w == ['.', '-'] || w == ['-', '.']) {
            return Err(
                "An email address cannot have a period and a hyphen next to each other.".into(),
            );
        }
    }
    Ok(())
}

/// email-validator's `uts46_valid_char`: its approximation of what
/// `idna.uts46_remap` would reject, checked first to give its own message.
fn uts46_valid_char(c: char) -> bool {
    let cp = c as u32;
    if (0x80..=0x9F).contains(&cp) {
        return false;
    }
    if ((0x2010..=0x2060).contains(&cp)
        && !(0x2024..=0x2026).contains(&cp)
        && !(0x2028..=0x202E).contains(&cp))
        || cp == 0x00AD
        || cp == 0x2064
        || cp == 0xFF0E
        || (0x200B..=0x200D).contains(&cp)
        || (0x1BCA0..=0x1BCA3).contains(&cp)
    {
        return true;
    }
    use GeneralCategory as G;
    if matches!(
        general_category(c),
        G::Format
            | G::Unassigned
            | G::PrivateUse
            | G::Surrogate
            | G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
    ) {
        return false;
    }
    // Characters whose one-level decomposition (`unicodedata.decomposition`)
    // contains U+002E FULL STOP. Decompositions are stable, so this list,
    // taken from Python's table, does not age.
    !matches!(
        cp,
        0x2024..=0x2026 | 0x2488..=0x249B | 0x33C2 | 0x33C7 | 0x33D8 | 0xFE52 | 0xFF0E | 0x1F100
    )
}

/// email-validator's `validate_email_domain_name` with
/// `globally_deliverable=True, test_environment=False`.
/// Returns `(domain, ascii_domain)`.
fn validate_domain_name(domain: &[char]) -> Res<(String, String)> {
    let bad: BTreeSet<String> = domain
        .iter()
        .filter(|&&c| !is_hostname_intl_char(c))
        .map(|&c| safe_character_display(c))
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "The part after the @-sign contains invalid characters: {}.",
            join(bad)
        ));
    }
    check_unsafe_chars(domain, false)?;
    let bad: BTreeSet<String> = domain
        .iter()
        .filter(|&&c| !uts46_valid_char(c))
        .map(|&c| safe_character_display(c))
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "The part after the @-sign contains invalid characters: {}.",
            join(bad)
        ));
    }

    let original_domain = chars_to_string(domain);
    let domain = uts46_remap(domain)
        .map_err(|e| format!("The part after the @-sign contains invalid characters ({e})."))?;
    let domain_chars: Vec<char> = domain.chars().collect();

    let bad: BTreeSet<String> = domain_chars
        .iter()
        .filter(|&&c| !is_hostname_intl_char(c))
        .map(|&c| safe_character_display(c))
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "The part after the @-sign contains invalid characters after Unicode normalization: {}.",
            join(bad)
        ));
    }

    check_dot_atom(
        &domain_chars,
        "An email address cannot have a {} immediately after the @-sign.",
        "An email address cannot end with a {}.",
        true,
    )?;

    // RFC 5890 R-LDH labels: `re.match(r"(?!xn)..--", label, re.I)`.
    for label in domain_chars.split(|&c| c == '.') {
        if label.len() >= 4
            && label[2] == '-'
            && label[3] == '-'
            && label[0] != '\n'
            && label[1] != '\n'
            && !(label[0].eq_ignore_ascii_case(&'x') && label[1].eq_ignore_ascii_case(&'n'))
        {
            return Err("An email address cannot have two letters followed by two dashes immediately after the @-sign or after a period, except Punycode.".into());
        }
    }

    let ascii_domain = if is_ascii_hostname(&domain_chars) {
        domain.clone()
    } else {
        // idna.alabel on each label (it does not check the total length).
        let mut labels = Vec::new();
        for label in domain.split('.') {
            labels.push(
                idna_alabel(label)
                    .map_err(|e| format!("The part after the @-sign is invalid ({e})."))?,
            );
        }
        let ascii = labels.join(".");
        let ascii_chars: Vec<char> = ascii.chars().collect();
        if !is_ascii_hostname(&ascii_chars) {
            return Err("The email address contains invalid characters after the @-sign after IDNA encoding.".into());
        }
        ascii
    };

    if ascii_domain.len() > DOMAIN_MAX_LENGTH {
        let diff = ascii_domain.len() - DOMAIN_MAX_LENGTH;
        if ascii_domain == original_domain {
            return Err(format!(
                "The email address is too long after the @-sign {}.",
                length_reason(ascii_domain.len(), DOMAIN_MAX_LENGTH)
            ));
        }
        let s = if diff == 1 { "" } else { "s" };
        return Err(format!(
            "The email address is too long after the @-sign ({diff} byte{s} too many after IDNA encoding)."
        ));
    }

    for label in ascii_domain.split('.') {
        if label.len() > DNS_LABEL_LENGTH_LIMIT {
            return Err(format!(
                "After the @-sign, periods cannot be separated by so many characters {}.",
                length_reason(label.len(), DNS_LABEL_LENGTH_LIMIT)
            ));
        }
    }

    if !ascii_domain.contains('.') {
        return Err("The part after the @-sign is not valid. It should have a period.".into());
    }
    if !ascii_domain
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_alphabetic())
    {
        return Err(
            "The part after the @-sign is not valid. It is not within a valid top-level domain."
                .into(),
        );
    }

    for d in SPECIAL_USE_DOMAIN_NAMES {
        if ascii_domain == d || ascii_domain.ends_with(&format!(".{d}")) {
            return Err("The part after the @-sign is a special-use or reserved name that cannot be used with email.".into());
        }
    }

    // Round-trip through IDNA to get the canonical Unicode form (and to
    // validate any `xn--` labels that came in as ASCII).
    let domain_i18n = idna_decode(&ascii_domain)
        .map_err(|e| format!("The part after the @-sign is not valid IDNA ({e})."))?;
    let i18n_chars: Vec<char> = domain_i18n.chars().collect();
    let bad: BTreeSet<String> = i18n_chars
        .iter()
        .filter(|&&c| !is_hostname_intl_char(c))
        .map(|&c| safe_character_display(c))
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "The part after the @-sign contains invalid characters: {}.",
            join(bad)
        ));
    }
    check_unsafe_chars(&i18n_chars, false)?;
    idna_encode(&domain_i18n).map_err(|e| {
        format!("The part after the @-sign became invalid after normalizing to international characters ({e}).")
    })?;

    Ok((domain_i18n, ascii_domain))
}

/// email-validator's `validate_email_length`: each form must fit in 254
/// UTF-8 bytes; the message depends on which form failed.
fn validate_email_length(original: &str, normalized: &str, ascii_form: &str) -> Res<()> {
    let forms = [
        (original, None),
        (normalized, Some("after normalization")),
        (
            ascii_form,
            Some("when the part after the @-sign is converted to IDNA ASCII"),
        ),
    ];
    for (addr, label) in forms {
        let utf8_len = addr.len();
        if utf8_len <= EMAIL_MAX_LENGTH {
            continue;
        }
        let diff = utf8_len - EMAIL_MAX_LENGTH;
        let s = if diff > 1 { "s" } else { "" };
        let reason = match label {
            None if addr.is_ascii() => length_reason(utf8_len, EMAIL_MAX_LENGTH),
            None => {
                // Lower bound: bytes over the limit divided by the widest character.
                let mbpc = addr.chars().map(char::len_utf8).max().unwrap_or(1);
                let mchars = (diff / mbpc).max(1);
                if mchars == diff {
                    format!("({diff} character{s} too many)")
                } else {
                    format!("({mchars}-{diff} character{s} too many)")
                }
            }
            Some(label) => format!("{label} ({diff} byte{s} too many)"),
        };
        return Err(format!("The email address is too long {reason}."));
    }
    Ok(())
}

/// `get_length_reason`: "(N character(s) too many)".
fn length_reason(len: usize, limit: usize) -> String {
    let diff = len.saturating_sub(limit);
    let s = if diff > 1 { "s" } else { "" };
    format!("({diff} character{s} too many)")
}

// ---------------------------------------------------------------------------
// email-validator: domain literals (and Python's ipaddress messages)
// ---------------------------------------------------------------------------

/// email-validator's `validate_email_domain_literal`. On success the caller
/// still rejects the literal, since pydantic does not allow them.
fn validate_domain_literal(literal: &[char]) -> Res<()> {
    let s = chars_to_string(literal);
    // `re.match(r"^[0-9\.]+$", ...)`: `$` also matches before a final "\n".
    let body = s.strip_suffix('\n').unwrap_or(&s);
    if !body.is_empty() && body.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return parse_ipv4(&s).map(|_| ()).map_err(|e| {
            format!(
                "The address in brackets after the @-sign is not valid: It is not an IPv4 address ({e}) or is missing an address literal tag."
            )
        });
    }
    if let Some(v6) = s.strip_prefix("IPv6:") {
        return parse_ipv6_address(v6).map_err(|e| {
            format!("The IPv6 address in brackets after the @-sign is not valid ({e}).")
        });
    }
    if !s.contains(':') {
        return Err("The part after the @-sign in brackets is not an IPv4 address and has no address literal tag.".into());
    }
    // DOMAIN_LITERAL_CHARS is `[\u0021-\u00FA\u005E-\u007E]`, i.e. U+0021-U+00FA.
    let bad: BTreeSet<String> = literal
        .iter()
        .filter(|&&c| !('\u{21}'..='\u{FA}').contains(&c))
        .map(|&c| safe_character_display(c))
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "The part after the @-sign contains invalid characters in brackets: {}.",
            join(bad)
        ));
    }
    Err("The part after the @-sign contains an invalid address literal tag in brackets.".into())
}

/// `ipaddress.IPv4Address(str)` error messages (Python 3.11).
fn parse_ipv4(ip: &str) -> Res<u32> {
    if ip.contains('/') {
        return Err(format!("Unexpected '/' in {}", py_repr(ip)));
    }
    if ip.is_empty() {
        return Err("Address cannot be empty".into());
    }
    let octets: Vec<&str> = ip.split('.').collect();
    if octets.len() != 4 {
        return Err(format!("Expected 4 octets in {}", py_repr(ip)));
    }
    let mut value: u32 = 0;
    for octet in octets {
        let n = parse_octet(octet).map_err(|e| format!("{e} in {}", py_repr(ip)))?;
        value = (value << 8) | n;
    }
    Ok(value)
}

/// `IPv4Address._parse_octet`.
fn parse_octet(octet: &str) -> Res<u32> {
    if octet.is_empty() {
        return Err("Empty octet not permitted".into());
    }
    if !octet.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "Only decimal digits permitted in {}",
            py_repr(octet)
        ));
    }
    if octet.len() > 3 {
        return Err(format!(
            "At most 3 characters permitted in {}",
            py_repr(octet)
        ));
    }
    if octet != "0" && octet.starts_with('0') {
        return Err(format!(
            "Leading zeros are not permitted in {}",
            py_repr(octet)
        ));
    }
    let n: u32 = octet
        .parse()
        .map_err(|_| format!("Only decimal digits permitted in {}", py_repr(octet)))?;
    if n > 255 {
        return Err(format!("Octet {n} (> 255) not permitted"));
    }
    Ok(n)
}

/// `ipaddress.IPv6Address(str)`: the `/` check, scope id, then parsing.
fn parse_ipv6_address(address: &str) -> Res<()> {
    if address.contains('/') {
        return Err(format!("Unexpected '/' in {}", py_repr(address)));
    }
    let addr = match address.split_once('%') {
        Some((addr, scope)) => {
            if scope.is_empty() || scope.contains('%') {
                return Err(format!("Invalid IPv6 address: \"{}\"", py_repr(address)));
            }
            addr
        }
        None => address,
    };
    parse_ipv6(addr)
}

/// `IPv6Address._ip_int_from_string` (messages only; the value is unused).
fn parse_ipv6(ip: &str) -> Res<()> {
    const HEXTET_COUNT: usize = 8;
    if ip.is_empty() {
        return Err("Address cannot be empty".into());
    }
    let mut parts: Vec<String> = ip.split(':').map(str::to_owned).collect();
    if parts.len() < 3 {
        return Err(format!("At least 3 parts expected in {}", py_repr(ip)));
    }
    if parts.last().is_some_and(|p| p.contains('.')) {
        let last = parts.pop().unwrap_or_default();
        let v4 = parse_ipv4(&last).map_err(|e| format!("{e} in {}", py_repr(ip)))?;
        parts.push(format!("{:x}", (v4 >> 16) & 0xFFFF));
        parts.push(format!("{:x}", v4 & 0xFFFF));
    }
    if parts.len() > HEXTET_COUNT + 1 {
        return Err(format!(
            "At most {} colons permitted in {}",
            HEXTET_COUNT,
            py_repr(ip)
        ));
    }
    let mut skip_index = None;
    for (i, part) in parts.iter().enumerate().take(parts.len() - 1).skip(1) {
        if part.is_empty() {
            if skip_index.is_some() {
                return Err(format!("At most one '::' permitted in {}", py_repr(ip)));
            }
            skip_index = Some(i);
        }
    }
    let first_empty = parts.first().is_some_and(String::is_empty);
    let last_empty = parts.last().is_some_and(String::is_empty);
    let (parts_hi, parts_lo) = if let Some(skip) = skip_index {
        let mut hi = skip;
        let mut lo = parts.len() - skip - 1;
        if first_empty {
            hi -= 1;
            if hi != 0 {
                return Err(format!(
                    "Leading ':' only permitted as part of '::' in {}",
                    py_repr(ip)
                ));
            }
        }
        if last_empty {
            lo -= 1;
            if lo != 0 {
                return Err(format!(
                    "Trailing ':' only permitted as part of '::' in {}",
                    py_repr(ip)
                ));
            }
        }
        if HEXTET_COUNT < hi + lo + 1 {
            return Err(format!(
                "Expected at most {} other parts with '::' in {}",
                HEXTET_COUNT - 1,
                py_repr(ip)
            ));
        }
        (hi, lo)
    } else {
        if parts.len() != HEXTET_COUNT {
            return Err(format!(
                "Exactly {} parts expected without '::' in {}",
                HEXTET_COUNT,
                py_repr(ip)
            ));
        }
        if first_empty {
            return Err(format!(
                "Leading ':' only permitted as part of '::' in {}",
                py_repr(ip)
            ));
        }
        if last_empty {
            return Err(format!(
                "Trailing ':' only permitted as part of '::' in {}",
                py_repr(ip)
            ));
        }
        (parts.len(), 0)
    };
    let n = parts.len();
    for part in parts[..parts_hi].iter().chain(parts[n - parts_lo..].iter()) {
        if !part.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "Only hex digits permitted in {} in {}",
                py_repr(part),
                py_repr(ip)
            ));
        }
        if part.chars().count() > 4 {
            return Err(format!(
                "At most 4 characters permitted in {} in {}",
                py_repr(part),
                py_repr(ip)
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The Python `idna` package (3.x, IDNA 2008), as email-validator calls it
// ---------------------------------------------------------------------------

/// `idna.uts46_remap(domain, std3_rules=False, transitional=False)`:
/// UTS #46 mapping then NFC; a disallowed code point is reported with its
/// 1-based position in the input.
fn uts46_remap(domain: &[char]) -> Res<String> {
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
type IdnaResult<T> = Result<T, String>;

/// `idna.alabel`: U-label to A-label (ASCII labels are validated as such).
fn idna_alabel(label: &str) -> IdnaResult<String> {
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
fn idna_ulabel(label: &str) -> IdnaResult<String> {
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
fn punycode_encode(label: &str) -> IdnaResult<String> {
    // Overflow is impossible for labels of at most 1024 characters.
    idna::punycode::encode_str(label).ok_or_else(|| "Label too long".to_owned())
}

/// Python's `bytes.decode("punycode")` (strict). Python splits at the last
/// `-` even when it is the first character (`idna::punycode` would treat a
/// leading `-` as a digit), so the algorithm is reimplemented here. `None`
/// stands for the `UnicodeError` that idna turns into "Invalid A-label".
/// (Python could also produce surrogate code points; Rust strings cannot,
/// so those inputs end up as "Invalid A-label" here.)
fn punycode_decode(text: &str) -> Option<Vec<char>> {
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
fn punycode_adapt(delta: u64, first: bool, numchars: u64) -> u64 {
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
fn is_idna_dot(c: char) -> bool {
    matches!(c, '.' | '\u{3002}' | '\u{FF0E}' | '\u{FF61}')
}

/// What `idna.decode` and `idna.encode` share: `s` split at Python idna's
/// dots, each label mapped by `label` (an empty result is an error), joined
/// again with a trailing dot kept; with whether there was one.
fn idna_labels(s: &str, label: impl Fn(&str) -> IdnaResult<String>) -> IdnaResult<(String, bool)> {
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
fn idna_decode(s: &str) -> IdnaResult<String> {
    idna_labels(s, idna_ulabel).map(|(out, _)| out)
}

/// `idna.encode(s)` (not strict, no UTS #46).
fn idna_encode(s: &str) -> IdnaResult<String> {
    let (out, trailing_dot) = idna_labels(s, idna_alabel)?;
    if out.len() > IDNA_MAX_DOMAIN_LENGTH + usize::from(trailing_dot) {
        return Err("Domain too long".into());
    }
    Ok(out)
}

/// `idna.check_label`: NFC, hyphens, leading mark, IDNA 2008 code point
/// classes with CONTEXTJ/CONTEXTO rules, then the RFC 5893 Bidi rule.
fn check_label(label: &[char]) -> IdnaResult<()> {
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
enum IdnaClass {
    Pvalid,
    ContextJ,
    ContextO,
    /// DISALLOWED or UNASSIGNED (the idna package treats both alike).
    Disallowed,
}

/// Derives the IDNA 2008 class (RFC 5892 section 3) from Unicode properties.
/// The Python package ships the same derivation as precomputed tables; this
/// computes it from ICU's data instead of embedding a 1,266-range table.
fn idna2008_class(c: char) -> IdnaClass {
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
fn valid_contextj(label: &[char], pos: usize) -> Option<bool> {
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
fn valid_contexto(label: &[char], pos: usize) -> bool {
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
fn bidi_class(c: char) -> &'static str {
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
fn check_bidi(label: &[char]) -> IdnaResult<()> {
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
fn unot(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

// ---------------------------------------------------------------------------
// Character classes and Python string helpers
// ---------------------------------------------------------------------------

/// RFC 5322 atext (ASCII): `a-zA-Z0-9_!#$%&'*+-/=?^`{|}~`.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_!#$%&'*+-/=?^`{|}~".contains(c)
}

/// `ATEXT_RE`: atext plus `.`.
fn is_atext_or_dot(c: char) -> bool {
    is_atext(c) || c == '.'
}

/// RFC 6531 atext: atext plus every code point from U+0080.
fn is_atext_intl(c: char) -> bool {
    is_atext(c) || c >= '\u{80}'
}

/// `ATEXT_HOSTNAME_INTL`: `[a-zA-Z0-9\-\.]` plus every code point from U+0080.
fn is_hostname_intl_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || c >= '\u{80}'
}

/// `DOT_ATOM_TEXT` / `DOT_ATOM_TEXT_INTL`: non-empty runs of `allowed`
/// separated by single dots.
fn is_dot_atom(s: &[char], allowed: fn(char) -> bool) -> bool {
    !s.is_empty()
        && s.split(|&c| c == '.')
            .all(|atom| !atom.is_empty() && atom.iter().all(|&c| allowed(c)))
}

/// `DOT_ATOM_TEXT_HOSTNAME`: ASCII labels `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`
/// separated by single dots.
fn is_ascii_hostname(s: &[char]) -> bool {
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
fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{1C}'..='\u{1F}' | ' ' | '\u{85}' | '\u{A0}' | '\u{1680}'
            | '\u{2000}'..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// `str.rstrip()` on a char slice.
fn rstrip_py_space(s: &[char]) -> &[char] {
    let mut end = s.len();
    while end > 0 && is_py_space(s[end - 1]) {
        end -= 1;
    }
    &s[..end]
}

fn general_category(c: char) -> GeneralCategory {
    CodePointMapData::<GeneralCategory>::new().get(c)
}

/// The first letter of the two-letter general category.
fn major_category(c: char) -> char {
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
fn is_printable(c: char) -> bool {
    c == ' ' || !matches!(major_category(c), 'C' | 'Z')
}

/// Python's `repr(str)`.
fn py_repr(s: &str) -> String {
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
fn safe_character_display(c: char) -> String {
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
fn join(items: BTreeSet<String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

fn chars_to_string(chars: &[char]) -> String {
    chars.iter().collect()
}

/// Unicode NFC.
fn nfc(s: &str) -> String {
    ComposingNormalizerBorrowed::new_nfc()
        .normalize(s)
        .into_owned()
}

/// `unicodedata.normalize("NFC", text)[0]`, computed lazily.
fn nfc_first_char(text: &[char]) -> Option<char> {
    ComposingNormalizerBorrowed::new_nfc()
        .normalize_iter(text.iter().copied())
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &str) -> String {
        match validate(input) {
            Ok(a) => panic!("{input:?} unexpectedly valid: {a:?}"),
            Err(e) => e,
        }
    }

    fn ok(input: &str) -> Address {
        match validate(input) {
            Ok(a) => a,
            Err(e) => panic!("{input:?} unexpectedly invalid: {e}"),
        }
    }

    #[test]
    fn plain_addresses() {
        let a = ok("a+tag@Example.COM");
        assert_eq!(a.local_part, "a+tag");
        assert_eq!(a.domain, "example.com");
        assert_eq!(a.normalized(), "a+tag@example.com");
        assert_eq!(a.ascii_email(), "a+tag@example.com");
    }

    #[test]
    fn structure_messages() {
        assert_eq!(err(""), "An email address must have an @-sign.");
        assert_eq!(err("a@"), "There must be something after the @-sign.");
        assert_eq!(err("@b.com"), "There must be something before the @-sign.");
        assert_eq!(
            err("a..b@b.com"),
            "An email address cannot have two periods in a row."
        );
        assert_eq!(
            err("a@localhost"),
            "The part after the @-sign is not valid. It should have a period."
        );
        assert_eq!(
            err("a@foo.local"),
            "The part after the @-sign is a special-use or reserved name that cannot be used with email."
        );
        assert_eq!(
            err("\"a\"@b.com"),
            "Quoting the part before the @-sign is not allowed here."
        );
        assert_eq!(
            err("a@[1.2.3.4]"),
            "A bracketed IP address after the @-sign is not allowed here."
        );
    }

    #[test]
    fn character_listing() {
        assert_eq!(
            err("a b@c.com"),
            "The email address contains invalid characters before the @-sign: SPACE."
        );
        assert_eq!(
            err("a@b.com <c@d.com>"),
            "The part after the @-sign contains invalid characters: '<', '>', '@', SPACE."
        );
        assert_eq!(
            err("a\\b@c.com"),
            "The email address contains invalid characters before the @-sign: \"\\\"."
        );
        assert_eq!(
            err("a\u{200b}b@c.com"),
            "The email address contains unsafe characters: ZERO WIDTH SPACE."
        );
        assert_eq!(
            err("a\u{ffff}@c.com"),
            "The email address contains unsafe characters: U+0000FFFF."
        );
        assert_eq!(
            err("a\u{0}b@c.com"),
            "The email address contains invalid characters before the @-sign: U+0000."
        );
    }

    #[test]
    fn pretty_email() {
        assert_eq!(
            ok("Ada Lovelace <ada@example.com>").normalized(),
            "ada@example.com"
        );
        assert_eq!(
            ok("\"Ada, L\" <ada@example.com>").normalized(),
            "ada@example.com"
        );
        assert_eq!(
            err("Ada.L <a@example.com>"),
            "The display name contains invalid characters when not quoted: '.'."
        );
        assert_eq!(
            err("<<a@example.com>>"),
            "A display name and angle brackets around the email address are not permitted here."
        );
    }

    #[test]
    fn normalization() {
        let a = ok("Jose\u{301}@M\u{dc}NCHEN.de");
        assert_eq!(a.local_part, "Jos\u{e9}");
        assert_eq!(a.domain, "m\u{fc}nchen.de");
        assert_eq!(a.ascii_domain, "xn--mnchen-3ya.de");
        assert_eq!(ok("a@xn--mnchen-3ya.de").domain, "m\u{fc}nchen.de");
        assert_eq!(ok("Postmaster@example.com").local_part, "postmaster");
        assert_eq!(ok("a@\u{ff45}\u{ff58}.com").domain, "ex.com");
    }

    #[test]
    fn lengths() {
        assert_eq!(
            err(&"a".repeat(2049)),
            "Length must not exceed 2048 characters"
        );
        assert_eq!(
            err(&format!("{}@example.com", "\u{fc}".repeat(122))),
            "The email address is too long (1-2 characters too many)."
        );
        assert_eq!(
            err(&format!("a@{}.com", "b".repeat(64))),
            "After the @-sign, periods cannot be separated by so many characters (1 character too many)."
        );
    }

    #[test]
    fn punycode_round_trip() {
        assert_eq!(
            punycode_decode("mnchen-3ya"),
            Some("m\u{fc}nchen".chars().collect())
        );
        assert_eq!(punycode_decode("-bbk").map(|v| v.len()), Some(1));
        assert_eq!(punycode_decode("99999999999"), None);
        assert_eq!(py_repr("a'b"), "\"a'b\"");
        assert_eq!(py_repr("'\""), "'\\'\"'");
        assert_eq!(py_repr("\u{200b}\u{80}\u{e9}"), "'\\u200b\\x80\u{e9}'");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "[",
            "]",
            "@[",
            "\"",
            "\"\\",
            "<",
            ">",
            "<>",
            "\u{338}",
            "@\u{338}",
            "\"@\"",
            "a@xn--",
            "a@[IPv6:%]",
        ] {
            let _ = validate(s);
        }
    }
}
