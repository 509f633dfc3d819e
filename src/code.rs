//! Activation codes: four digits from a CSPRNG, stored
//! only as HMAC-SHA256 keyed with `SECRET_KEY`.
//!
//! Four digits are only 10,000 possibilities, so a plain hash would be
//! reversed at a glance; the key is what keeps a leaked table from revealing
//! codes. The user id is part of the MAC input, so equal codes of two users do
//! not have equal hashes.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use crate::db::users::UserId;
use crate::settings::SecretKey;

type HmacSha256 = Hmac<Sha256>;

/// A plaintext code. Never printed; it leaves the process only in the email.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl Code {
    /// A fresh random code.
    pub fn generate() -> Self {
        // ThreadRng is a CSPRNG (ChaCha) seeded from, and reseeded from, the OS.
        let n: u16 = rand::rng().random_range(0..10_000);
        Self(format!("{n:04}"))
    }

    /// Parses a code as a client sends it: exactly four ASCII digits.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 4 && raw.bytes().all(|b| b.is_ascii_digit())).then(|| Self(raw.to_owned()))
    }

    /// A code as the service wrote it (say, into a sealed payload): 4 to 8
    /// ASCII digits.
    pub fn from_digits(digits: &str) -> Option<Self> {
        ((4..=8).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(digits.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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
}

impl CodeHasher {
    pub fn new(key: SecretKey) -> Self {
        Self { key }
    }

    fn mac(&self, user: UserId, code: &Code) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(self.key.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(&user.0.to_be_bytes());
        mac.update(b":");
        mac.update(code.0.as_bytes());
        mac
    }

    pub fn hash(&self, user: UserId, code: &Code) -> Vec<u8> {
        self.mac(user, code).finalize().into_bytes().to_vec()
    }

    /// Compares in constant time.
    pub fn verify(&self, user: UserId, code: &Code, stored: &[u8]) -> bool {
        self.mac(user, code).verify_slice(stored).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> CodeHasher {
        CodeHasher::new(SecretKey::new("a test key of some length"))
    }

    #[test]
    fn generated_codes_are_four_digits_and_vary() {
        let codes: std::collections::HashSet<String> =
            (0..200).map(|_| Code::generate().0).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 4 && c.bytes().all(|b| b.is_ascii_digit()))
        );
        // 200 draws from 10,000 values: a handful of repeats at most.
        assert!(codes.len() > 150, "only {} distinct codes", codes.len());
    }

    #[test]
    fn only_four_ascii_digits_parse() {
        assert!(Code::parse("0123").is_some());
        for raw in ["123", "12345", "12a4", " 123", "١٢٣٤", ""] {
            assert!(Code::parse(raw).is_none(), "{raw:?}");
        }
    }

    #[test]
    fn a_hash_verifies_only_its_code_user_and_key() {
        let code = Code::parse("4821").unwrap();
        let stored = hasher().hash(UserId(7), &code);
        assert!(hasher().verify(UserId(7), &code, &stored));
        assert!(!hasher().verify(UserId(8), &code, &stored));
        assert!(!hasher().verify(UserId(7), &Code::parse("4822").unwrap(), &stored));
        let other_key = CodeHasher::new(SecretKey::new("another key entirely"));
        assert!(!other_key.verify(UserId(7), &code, &stored));
    }

    #[test]
    fn a_code_is_not_printed() {
        assert_eq!(format!("{:?}", Code::parse("4821").unwrap()), "Code(****)");
    }
}
