//! pydantic 2.11's `pydantic.networks.validate_email` (behind `EmailStr`):
//! the 2048-character limit, the "pretty email" `Name <addr>` regex and
//! `str.strip()`, then email-validator (see `super::email_validator`).

use super::chars::{is_py_space, major_category};
use super::email_validator::{Address, validate_email};

/// pydantic's `MAX_EMAIL_LENGTH`, counted in characters (code points).
const MAX_EMAIL_LENGTH: usize = 2048;

/// A character of pydantic's `name_chars` class: `[\w!#$%&'*+\-/=?^_`{|}~]`.
/// Python's Unicode `\w` is exactly "general category L* or N*, or `_`".
pub(super) fn is_name_char(c: char) -> bool {
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
pub(super) fn pretty_email_address(text: &str) -> Option<&str> {
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::compat::chars::py_repr;
    use crate::compat::idna::punycode_decode;

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
