//! email-validator 2.3.0's `validate_email(email, check_deliverability=False)`
//! with every other option at its default: `allow_smtputf8=True`,
//! `allow_empty_local=False`, `allow_quoted_local=False`,
//! `allow_domain_literal=False`, `allow_display_name=False`,
//! `strict=False`, `globally_deliverable=True`, `test_environment=False`.
//! Error strings are the library's sentence, the `reason` that pydantic puts
//! after `value is not a valid email address: `.

use std::collections::BTreeSet;

use icu_properties::props::GeneralCategory;

use super::chars::{
    Res, chars_to_string, general_category, is_ascii_hostname, is_atext, is_atext_intl,
    is_atext_or_dot, is_dot_atom, is_hostname_intl_char, major_category, nfc, nfc_first_char,
    refuse_chars, rstrip_py_space, safe_character_display,
};
use super::idna::{idna_alabel, idna_decode, idna_encode, uts46_remap};
use super::literals::validate_domain_literal;

/// The sentence for a character the part after the `@` cannot hold.
const INVALID_AFTER_AT: &str = "The part after the @-sign contains invalid characters";

/// email-validator's `EMAIL_MAX_LENGTH`, counted in UTF-8 bytes.
pub(super) const EMAIL_MAX_LENGTH: usize = 254;
/// email-validator's `DOMAIN_MAX_LENGTH` (octets of the ASCII form).
pub(super) const DOMAIN_MAX_LENGTH: usize = 253;
/// email-validator's `DNS_LABEL_LENGTH_LIMIT`.
pub(super) const DNS_LABEL_LENGTH_LIMIT: usize = 63;
/// RFC 2142 mailbox names that email-validator lower-cases.
pub(super) const CASE_INSENSITIVE_MAILBOX_NAMES: [&str; 15] = [
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
pub(super) const SPECIAL_USE_DOMAIN_NAMES: [&str; 6] =
    ["arpa", "invalid", "local", "localhost", "onion", "test"];

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

/// email-validator's `validate_email` with pydantic's options.
pub(super) fn validate_email(email: &str) -> Res<Address> {
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
pub(super) struct Split {
    display_name: Option<Vec<char>>,
    local_part: Vec<char>,
    domain_part: Vec<char>,
    is_quoted: bool,
}

/// email-validator's `split_email`: display name, unescaped local part,
/// domain part and whether the local part was quoted.
pub(super) fn split_email(email: &[char]) -> Res<Split> {
    let (left, right) = split_at_unquoted_special(email, &['@', '<'])?;

    let (display_name, local_part, domain_part) = if right.first() == Some(&'<') {
        let left = rstrip_py_space(left);
        let (display_name, quoted) = unquote_quoted_string(left)?;
        if !quoted {
            // Note `.` is in ATEXT_RE but is rejected here explicitly.
            refuse_chars(
                &display_name,
                |c| (!is_atext_or_dot(c) && c != ' ') || c == '.',
                "The display name contains invalid characters when not quoted",
            )?;
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
pub(super) fn split_at_unquoted_special<'a>(
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
pub(super) fn unquote_quoted_string(text: &[char]) -> Res<(Vec<char>, bool)> {
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
pub(super) struct LocalPart {
    local_part: String,
    ascii_local_part: Option<String>,
}

/// email-validator's `validate_email_local_part` (smtputf8 allowed, empty
/// local part not allowed, not strict: no 64-character limit).
pub(super) fn validate_local_part(local: &[char], quoted: bool) -> Res<LocalPart> {
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
        refuse_chars(
            local,
            |c| !(matches!(c, ' '..='~') || c >= '\u{80}'),
            "The email address contains invalid characters in quotes before the @-sign",
        )?;
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
    refuse_chars(
        local,
        |c| !(is_atext_intl(c) || c == '.'),
        "The email address contains invalid characters before the @-sign",
    )?;
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
pub(super) fn check_unsafe_chars(s: &[char], allow_space: bool) -> Res<()> {
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
pub(super) fn check_dot_atom(
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
pub(super) fn uts46_valid_char(c: char) -> bool {
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
pub(super) fn validate_domain_name(domain: &[char]) -> Res<(String, String)> {
    refuse_chars(domain, |c| !is_hostname_intl_char(c), INVALID_AFTER_AT)?;
    check_unsafe_chars(domain, false)?;
    refuse_chars(domain, |c| !uts46_valid_char(c), INVALID_AFTER_AT)?;

    let original_domain = chars_to_string(domain);
    let domain = uts46_remap(domain)
        .map_err(|e| format!("The part after the @-sign contains invalid characters ({e})."))?;
    let domain_chars: Vec<char> = domain.chars().collect();

    refuse_chars(
        &domain_chars,
        |c| !is_hostname_intl_char(c),
        "The part after the @-sign contains invalid characters after Unicode normalization",
    )?;

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
    refuse_chars(&i18n_chars, |c| !is_hostname_intl_char(c), INVALID_AFTER_AT)?;
    check_unsafe_chars(&i18n_chars, false)?;
    idna_encode(&domain_i18n).map_err(|e| {
        format!("The part after the @-sign became invalid after normalizing to international characters ({e}).")
    })?;

    Ok((domain_i18n, ascii_domain))
}

/// email-validator's `validate_email_length`: each form must fit in 254
/// UTF-8 bytes; the message depends on which form failed.
pub(super) fn validate_email_length(original: &str, normalized: &str, ascii_form: &str) -> Res<()> {
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
pub(super) fn length_reason(len: usize, limit: usize) -> String {
    let diff = len.saturating_sub(limit);
    let s = if diff > 1 { "s" } else { "" };
    format!("({diff} character{s} too many)")
}
