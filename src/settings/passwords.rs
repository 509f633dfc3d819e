//! The password policy's settings and registration's disclosure
//! (docs/API.md "Password policy", "Registration that discloses nothing").
//!
//! `PASSWORD_POLICY` chooses a preset: `original` (the original service's
//! rules, the default) or `nist` (NIST SP 800-63B: a minimum length, no
//! composition rules, spaces allowed, NFKC). Each rule's own variable,
//! when set, overrides the preset's value for that rule alone.

use std::path::PathBuf;

use super::{SettingsError, Source, integer, optional, value};

/// bcrypt reads no more than this many bytes of a password: the longest
/// password any policy accepts, in UTF-8 bytes (and so in characters).
pub const BCRYPT_MAX_BYTES: usize = 72;

/// The presets of `PASSWORD_POLICY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The original service's rules: 8–72 characters, no whitespace, four
    /// character classes, no normalization.
    Original,
    /// NIST SP 800-63B: at least 15 characters, any printable character
    /// and spaces, no composition rules, NFKC.
    Nist,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Original => "original",
            Self::Nist => "nist",
        }
    }
}

/// How a password is normalized before it is checked and hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// As received (the original's).
    None,
    /// Unicode canonical composition.
    Nfc,
    /// Unicode compatibility composition (NIST SP 800-63B 5.1.1.2).
    Nfkc,
}

impl Normalization {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Nfc => "nfc",
            Self::Nfkc => "nfkc",
        }
    }
}

/// Whether registration tells whether an address has an account
/// (`REGISTRATION_DISCLOSURE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// As the original: 409 for a pending or an active address.
    Original,
    /// 201 for unknown, pending and active addresses alike, in the same
    /// time; an active account's owner is emailed instead.
    Hidden,
}

impl Disclosure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Original => "original",
            Self::Hidden => "hidden",
        }
    }
}

/// The password rules in force, the strength a password needs, and the
/// deny list to look passwords up in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSettings {
    pub preset: Preset,
    /// Fewest characters (`PASSWORD_MIN_LENGTH`).
    pub min_length: usize,
    /// Most characters (`PASSWORD_MAX_LENGTH`); never more than
    /// [`BCRYPT_MAX_BYTES`], which also bounds the bytes.
    pub max_length: usize,
    /// A lowercase and an uppercase letter, a digit and a special
    /// character required (`PASSWORD_CHARACTER_CLASSES`).
    pub character_classes: bool,
    /// Spaces allowed anywhere (`PASSWORD_SPACES`).
    pub spaces: bool,
    pub normalization: Normalization,
    /// The lowest zxcvbn score accepted, 0–4; 0: no estimate
    /// (`PASSWORD_MIN_STRENGTH`).
    pub min_strength: u8,
    /// The deny list's filter file (`PASSWORD_DENYLIST_FILE`).
    pub denylist_file: Option<PathBuf>,
}

impl PasswordSettings {
    pub fn from_source(source: &impl Source) -> Result<Self, SettingsError> {
        let preset = match value(source, "PASSWORD_POLICY").as_deref() {
            None | Some("original") => Preset::Original,
            Some("nist") => Preset::Nist,
            Some(other) => {
                return Err(SettingsError::Invalid {
                    name: "PASSWORD_POLICY",
                    problem: format!("expected original or nist, got {other:?}"),
                });
            }
        };
        let nist = preset == Preset::Nist;
        let min_length = match optional(source, "PASSWORD_MIN_LENGTH") {
            Some(_) => integer(source, "PASSWORD_MIN_LENGTH", 1..=BCRYPT_MAX_BYTES)?,
            None if nist => 15,
            None => 8,
        };
        let max_length = match optional(source, "PASSWORD_MAX_LENGTH") {
            Some(_) => integer(source, "PASSWORD_MAX_LENGTH", 1..=BCRYPT_MAX_BYTES)?,
            None => BCRYPT_MAX_BYTES,
        };
        if max_length < min_length {
            return Err(SettingsError::Invalid {
                name: "PASSWORD_MAX_LENGTH",
                problem: format!("{max_length} is below PASSWORD_MIN_LENGTH ({min_length})"),
            });
        }
        let on_off = |name: &'static str, preset: bool| match optional(source, name).as_deref() {
            None => Ok(preset),
            Some("on") => Ok(true),
            Some("off") => Ok(false),
            Some(other) => Err(SettingsError::Invalid {
                name,
                problem: format!("expected on or off, got {other:?}"),
            }),
        };
        let normalization = match optional(source, "PASSWORD_NORMALIZATION").as_deref() {
            None if nist => Normalization::Nfkc,
            None => Normalization::None,
            Some("none") => Normalization::None,
            Some("nfc") => Normalization::Nfc,
            Some("nfkc") => Normalization::Nfkc,
            Some(other) => {
                return Err(SettingsError::Invalid {
                    name: "PASSWORD_NORMALIZATION",
                    problem: format!("expected none, nfc or nfkc, got {other:?}"),
                });
            }
        };
        Ok(Self {
            preset,
            min_length,
            max_length,
            character_classes: on_off("PASSWORD_CHARACTER_CLASSES", !nist)?,
            spaces: on_off("PASSWORD_SPACES", nist)?,
            normalization,
            min_strength: integer(source, "PASSWORD_MIN_STRENGTH", 0..=4)?,
            denylist_file: optional(source, "PASSWORD_DENYLIST_FILE").map(PathBuf::from),
        })
    }
}

impl Disclosure {
    pub fn from_source(source: &impl Source) -> Result<Self, SettingsError> {
        match value(source, "REGISTRATION_DISCLOSURE").as_deref() {
            None | Some("original") => Ok(Self::Original),
            Some("hidden") => Ok(Self::Hidden),
            Some(other) => Err(SettingsError::Invalid {
                name: "REGISTRATION_DISCLOSURE",
                problem: format!("expected original or hidden, got {other:?}"),
            }),
        }
    }
}
