//! Activation codes: `CODE_LENGTH` digits (4 by default, as the original
//! service's; up to 8) from a CSPRNG, stored only as HMAC-SHA256 keyed with
//! `SECRET_KEY`.
//!
//! Four digits are only 10,000 possibilities, so a plain hash would be
//! reversed at a glance; the key is what keeps a leaked table from revealing
//! codes. The user id is part of the MAC input, so equal codes of two users do
//! not have equal hashes.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use crate::ids::UserId;
use crate::settings::SecretKey;

type HmacSha256 = Hmac<Sha256>;

/// A plaintext code. Never printed; it leaves the process only in the email.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

/// The lengths a code may have.
pub const LENGTHS: std::ops::RangeInclusive<usize> = 4..=8;

/// The length of the codes mailed to an inbox that has spent its guessing
/// budget for short codes (docs/LIMITS.md "Guessing odds per inbox").
pub const LONG_LENGTH: usize = 8;

/// Why a submitted code is not one, in the order the original service
/// checked: its length in characters, then the pattern `^\d{N}$`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    TooShort,
    TooLong,
    NotDigits,
}

impl Code {
    /// A fresh random code of `length` digits.
    pub fn generate(length: usize) -> Self {
        // ThreadRng is a CSPRNG (ChaCha) seeded from, and reseeded from, the OS.
        let mut rng = rand::rng();
        Self(
            (0..length)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect(),
        )
    }

    /// Parses a code as a client sends it: `length` decimal digits. Digits of
    /// other scripts (`١٢٣٤`, `１２３４`, what some phone keyboards type) are
    /// read as their ASCII digits.
    pub fn parse(raw: &str, length: usize) -> Result<Self, Malformed> {
        match raw.chars().count() {
            n if n < length => Err(Malformed::TooShort),
            n if n > length => Err(Malformed::TooLong),
            _ => raw
                .chars()
                .map(decimal_digit)
                .collect::<Option<String>>()
                .map(Self)
                .ok_or(Malformed::NotDigits),
        }
    }

    /// A code as the service wrote it (say, into a sealed payload): 4 to 8
    /// ASCII digits.
    pub fn from_digits(digits: &str) -> Option<Self> {
        (LENGTHS.contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(digits.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The ASCII digit of a decimal digit of any script (general category Nd,
/// what the original's `\d` matched), or `None`.
fn decimal_digit(c: char) -> Option<char> {
    use icu_properties::CodePointMapData;
    use icu_properties::props::GeneralCategory;
    let category = CodePointMapData::<GeneralCategory>::new();
    if category.get(c) != GeneralCategory::DecimalNumber {
        return None;
    }
    // Unicode encodes decimal digits in runs of ten, zero to nine, so a
    // digit's value is its distance from the start of its run of Nd code
    // points (adjacent runs are whole runs), modulo ten.
    let mut start = u32::from(c);
    while let Some(previous) = start.checked_sub(1).and_then(char::from_u32) {
        if category.get(previous) != GeneralCategory::DecimalNumber {
            break;
        }
        start -= 1;
    }
    let value = u8::try_from((u32::from(c) - start) % 10).ok()?;
    Some(char::from(b'0' + value))
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code(****)")
    }
}

/// Computes and checks the keyed hashes of codes.
#[derive(Clone)]
pub struct CodeHasher {
    key: SecretKey,
    /// Older keys (`SECRET_KEY_FALLBACKS`): codes hashed under them still
    /// verify; none is hashed under them any more.
    fallbacks: Vec<SecretKey>,
}

impl CodeHasher {
    pub fn new(key: SecretKey) -> Self {
        Self {
            key,
            fallbacks: Vec::new(),
        }
    }

    /// The same hasher, also verifying codes hashed under `fallbacks`.
    pub fn with_fallbacks(self, fallbacks: Vec<SecretKey>) -> Self {
        Self { fallbacks, ..self }
    }

    fn mac(&self, user: UserId, code: &Code) -> HmacSha256 {
        Self::mac_under(&self.key, user, code)
    }

    fn mac_under(key: &SecretKey, user: UserId, code: &Code) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(&user.0.to_be_bytes());
        mac.update(b":");
        mac.update(code.0.as_bytes());
        mac
    }

    pub fn hash(&self, user: UserId, code: &Code) -> Vec<u8> {
        self.mac(user, code).finalize().into_bytes().to_vec()
    }

    /// Compares in constant time, under the key and then each fallback
    /// (the one that matched is counted in `activator_secret_key_uses_total`).
    pub fn verify(&self, user: UserId, code: &Code, stored: &[u8]) -> bool {
        let matched = std::iter::once(&self.key)
            .chain(&self.fallbacks)
            .position(|key| {
                Self::mac_under(key, user, code)
                    .verify_slice(stored)
                    .is_ok()
            });
        if let Some(i) = matched {
            crate::metrics::get().secret_key_used(i.checked_sub(1));
        }
        matched.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> CodeHasher {
        CodeHasher::new(SecretKey::new("a test key of some length"))
    }

    #[test]
    fn generated_codes_have_their_length_and_vary() {
        for length in LENGTHS {
            let codes: std::collections::HashSet<String> =
                (0..200).map(|_| Code::generate(length).0).collect();
            assert!(
                codes
                    .iter()
                    .all(|c| c.len() == length && c.bytes().all(|b| b.is_ascii_digit()))
            );
            // 200 draws from 10,000 values or more: a handful of repeats at most.
            assert!(codes.len() > 150, "only {} distinct codes", codes.len());
        }
    }

    #[test]
    fn codes_parse_length_first_then_digits_of_any_script() {
        let parsed = |raw: &str| Code::parse(raw, 4).map(|code| code.0);
        assert_eq!(parsed("0123"), Ok("0123".into()));
        assert_eq!(parsed("١٢٣٤"), Ok("1234".into()));
        assert_eq!(parsed("１２３４"), Ok("1234".into()));
        assert_eq!(parsed("۰۹۸۷"), Ok("0987".into()));
        assert_eq!(parsed("𝟏𝟐𝟑𝟒"), Ok("1234".into()));
        assert_eq!(
            parsed("𝟗𝟬𝟭𝟵"),
            Ok("9019".into()),
            "adjacent runs of math digits"
        );
        assert_eq!(parsed("123"), Err(Malformed::TooShort));
        assert_eq!(parsed(""), Err(Malformed::TooShort));
        assert_eq!(parsed("12345"), Err(Malformed::TooLong));
        assert_eq!(
            parsed(" 123 "),
            Err(Malformed::TooLong),
            "length before the pattern"
        );
        for raw in ["12a4", " 123", "①②③④", "12.4"] {
            assert_eq!(parsed(raw), Err(Malformed::NotDigits), "{raw:?}");
        }
        assert_eq!(
            Code::parse("01234567", 8).map(|code| code.0),
            Ok("01234567".into())
        );
    }

    #[test]
    fn a_hash_verifies_only_its_code_user_and_key() {
        let code = Code::parse("4821", 4).unwrap();
        let stored = hasher().hash(UserId(7), &code);
        assert!(hasher().verify(UserId(7), &code, &stored));
        assert!(!hasher().verify(UserId(8), &code, &stored));
        assert!(!hasher().verify(UserId(7), &Code::parse("4822", 4).unwrap(), &stored));
        let other_key = CodeHasher::new(SecretKey::new("another key entirely"));
        assert!(!other_key.verify(UserId(7), &code, &stored));
    }

    #[test]
    fn a_code_is_not_printed() {
        assert_eq!(
            format!("{:?}", Code::parse("4821", 4).unwrap()),
            "Code(****)"
        );
    }

    #[test]
    fn a_code_hashed_under_a_fallback_key_still_verifies() {
        let old = SecretKey::new("the old key of at least thirty-two bytes");
        let new = SecretKey::new("the new key of at least thirty-two bytes");
        let code = Code::from_digits("1234").unwrap();
        let stored = CodeHasher::new(old.clone()).hash(UserId(7), &code);
        assert!(!CodeHasher::new(new.clone()).verify(UserId(7), &code, &stored));
        let rotated = CodeHasher::new(new.clone()).with_fallbacks(vec![old]);
        assert!(rotated.verify(UserId(7), &code, &stored));
        assert!(!rotated.verify(UserId(8), &code, &stored));
        assert_eq!(
            rotated.hash(UserId(7), &code),
            CodeHasher::new(new).hash(UserId(7), &code),
            "new codes use the new key"
        );
    }
}
