//! Sealing what must rest in the database for a while but that nobody may
//! read there: an outbox message's activation code, between the request that
//! queued it and the dispatcher that sends it ([`Payload`]).
//!
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`: an AEAD whose 192-bit
//! nonces are safe to draw at random) under a key derived from `SECRET_KEY`
//! with HKDF-SHA256, so this key is independent of the codes' HMAC key.
//! A sealed value is `version (1 byte) ‖ nonce (24) ‖ ciphertext ‖ tag (16)`;
//! the caller's associated data (the row's owner) is authenticated too, so a
//! sealed value moved to another row does not open.
//!
//! After a `SECRET_KEY` change, values sealed under the old key open only
//! while it is listed in `SECRET_KEY_FALLBACKS`; otherwise the dispatcher
//! marks such messages dead (their codes, keyed with the old key too, could
//! not activate anyway) and users ask for a new code.

use std::fmt;

use chacha20poly1305::aead::{self, Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::code::Code;
use crate::ids::UserId;
use crate::settings::SecretKey;

/// The format's version, the first byte of every sealed value.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
/// What tells this key apart from any other derived from `SECRET_KEY`.
const PURPOSE: &[u8] = b"activator outbox payload v1";

/// Seals and opens values under the key derived from `SECRET_KEY`. Cheap to
/// clone; never printed.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    /// Ciphers of older keys (`SECRET_KEY_FALLBACKS`): what they sealed
    /// still opens; nothing is sealed with them any more.
    fallbacks: Vec<XChaCha20Poly1305>,
}

/// A sealed value that does not open: sealed under another key, altered, or
/// not a sealed value at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sealed value does not open (sealed under another SECRET_KEY, or altered)")]
pub struct Unreadable;

impl Sealer {
    pub fn new(secret: &SecretKey) -> Self {
        Self {
            cipher: Self::cipher(secret),
            fallbacks: Vec::new(),
        }
    }

    /// The same sealer, also opening what `fallbacks` sealed.
    pub fn with_fallbacks(self, fallbacks: &[SecretKey]) -> Self {
        Self {
            fallbacks: fallbacks.iter().map(Self::cipher).collect(),
            ..self
        }
    }

    fn cipher(secret: &SecretKey) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&secret.derive(PURPOSE).into())
    }

    /// Seals `plaintext`, bound to `associated` (which is not stored).
    pub fn seal(&self, plaintext: &[u8], associated: &[u8]) -> Vec<u8> {
        // ThreadRng is a CSPRNG; 192-bit random nonces do not collide.
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                aead::Payload {
                    msg: plaintext,
                    aad: associated,
                },
            )
            .unwrap_or_else(|_| unreachable!("encryption fails only past 256 GiB"));
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`Sealer::seal`] sealed with the same key (or a fallback)
    /// and `associated`.
    pub fn open(&self, sealed: &[u8], associated: &[u8]) -> Result<Vec<u8>, Unreadable> {
        self.open_reporting(sealed, associated)
            .map(|opened| opened.plaintext)
    }

    /// [`Sealer::open`], saying which key opened it (and counting it in
    /// `activator_secret_key_uses_total`).
    pub fn open_reporting(&self, sealed: &[u8], associated: &[u8]) -> Result<Opened, Unreadable> {
        let Some((&VERSION, rest)) = sealed.split_first() else {
            return Err(Unreadable);
        };
        if rest.len() < NONCE_LEN {
            return Err(Unreadable);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let opened = std::iter::once(&self.cipher)
            .chain(&self.fallbacks)
            .enumerate()
            .find_map(|(i, cipher)| {
                let payload = aead::Payload {
                    msg: ciphertext,
                    aad: associated,
                };
                let plaintext = cipher.decrypt(XNonce::from_slice(nonce), payload).ok()?;
                Some(Opened {
                    plaintext,
                    fallback: i.checked_sub(1),
                })
            })
            .ok_or(Unreadable)?;
        crate::metrics::get().secret_key_used(opened.fallback);
        Ok(opened)
    }
}

/// What [`Sealer::open_reporting`] opened, and with which key.
pub struct Opened {
    pub plaintext: Vec<u8>,
    /// The position of the `SECRET_KEY_FALLBACKS` key that opened it;
    /// `None`: `SECRET_KEY` did.
    pub fallback: Option<usize>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// What a queued message needs to be written, sealed in its row: the code
/// and the language of the email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub code: Code,
    pub locale: String,
}

/// How a payload is sealed: `locale` and the code's digits, one line each.
impl Payload {
    /// Seals the payload to the row of `user`'s message.
    pub fn seal(&self, sealer: &Sealer, user: UserId) -> Vec<u8> {
        let plain = format!("{}\n{}", self.locale, self.code.as_str());
        sealer.seal(plain.as_bytes(), &user.0.to_be_bytes())
    }

    /// Opens the payload sealed to `user`'s message.
    pub fn open(sealer: &Sealer, user: UserId, sealed: &[u8]) -> Result<Self, Unreadable> {
        let plain = sealer.open(sealed, &user.0.to_be_bytes())?;
        let plain = String::from_utf8(plain).map_err(|_| Unreadable)?;
        let (locale, digits) = plain.split_once('\n').ok_or(Unreadable)?;
        Ok(Self {
            code: Code::from_digits(digits).ok_or(Unreadable)?,
            locale: locale.to_owned(),
        })
    }
}

/// What a queued notice to an active account's owner needs (someone
/// tried to register its address, `REGISTRATION_DISCLOSURE=hidden`): the
/// language of the email. Sealed as a [`Payload`] is, with a word where
/// the code's digits go, so neither opens as the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub locale: String,
}

/// The word in place of a code's digits.
const NOTICE: &str = "account-exists";

impl Notice {
    /// Seals the notice to the row of `user`'s message.
    pub fn seal(&self, sealer: &Sealer, user: UserId) -> Vec<u8> {
        let plain = format!("{}\n{NOTICE}", self.locale);
        sealer.seal(plain.as_bytes(), &user.0.to_be_bytes())
    }

    /// Opens the notice sealed to `user`'s message.
    pub fn open(sealer: &Sealer, user: UserId, sealed: &[u8]) -> Result<Self, Unreadable> {
        let plain = sealer.open(sealed, &user.0.to_be_bytes())?;
        let plain = String::from_utf8(plain).map_err(|_| Unreadable)?;
        match plain.split_once('\n') {
            Some((locale, NOTICE)) => Ok(Self {
                locale: locale.to_owned(),
            }),
            _ => Err(Unreadable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(key: &str) -> Sealer {
        Sealer::new(&SecretKey::new(key))
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_and_associated_data_only() {
        let sealed = sealer("the key of some length").seal(b"1234", b"user 7");
        assert_eq!(
            sealer("the key of some length").open(&sealed, b"user 7"),
            Ok(b"1234".to_vec())
        );
        assert_eq!(
            sealer("the key of some length").open(&sealed, b"user 8"),
            Err(Unreadable)
        );
        assert_eq!(
            sealer("another key entirely").open(&sealed, b"user 7"),
            Err(Unreadable)
        );
    }

    #[test]
    fn the_plaintext_does_not_appear_and_nonces_differ() {
        let sealer = sealer("the key of some length");
        let (a, b) = (
            sealer.seal(b"code 4821", b""),
            sealer.seal(b"code 4821", b""),
        );
        assert_ne!(a, b);
        assert!(!a.windows(4).any(|w| w == b"4821"));
        assert_eq!(a.len(), 1 + NONCE_LEN + 9 + 16);
    }

    #[test]
    fn a_notice_and_a_code_never_open_as_each_other() {
        let sealer = sealer("the key of some length");
        let user = UserId(7);
        let notice = Notice {
            locale: "fr".into(),
        }
        .seal(&sealer, user);
        assert_eq!(
            Notice::open(&sealer, user, &notice),
            Ok(Notice {
                locale: "fr".into()
            })
        );
        assert!(Payload::open(&sealer, user, &notice).is_err());
        let code = Payload {
            code: Code::from_digits("1234").unwrap(),
            locale: "fr".into(),
        }
        .seal(&sealer, user);
        assert_eq!(Notice::open(&sealer, user, &code), Err(Unreadable));
    }

    #[test]
    fn altered_or_truncated_values_do_not_open() {
        let sealer = sealer("the key of some length");
        let sealed = sealer.seal(b"1234", b"");
        for i in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 1;
            assert_eq!(sealer.open(&altered, b""), Err(Unreadable), "byte {i}");
        }
        for len in [0, 1, 10, NONCE_LEN + 1, sealed.len() - 1] {
            assert_eq!(sealer.open(&sealed[..len], b""), Err(Unreadable), "{len}");
        }
    }
}
