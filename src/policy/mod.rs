//! The password policy an operator sets (docs/API.md "Password policy"):
//! the rules a new password must meet, in the original service's order
//! and words, then the deny list ([`denylist`]) and the strength estimate
//! ([`strength`]). With no setting, every answer is the original's
//! (`crate::password::check_policy` is the original's validator, ported;
//! a property test holds the two together).
//!
//! A password is checked, hashed and signed in with in one Unicode form
//! ([`Rules::normalize`]): the form the operator chose, none by default.

pub mod denylist;
pub mod strength;

use std::borrow::Cow;
use std::sync::Arc;

use crate::password::{decimal_digit, python_space};
use crate::settings::{BCRYPT_MAX_BYTES, Normalization, PasswordSettings, Preset};

pub use denylist::DenyList;

/// The rules of length and characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub preset: Preset,
    /// Fewest characters.
    pub min_length: usize,
    /// Most characters; the bytes are bounded by [`BCRYPT_MAX_BYTES`].
    pub max_length: usize,
    /// A lowercase and an uppercase letter, a digit and a special
    /// character required.
    pub character_classes: bool,
    /// Spaces allowed anywhere; otherwise no whitespace at all.
    pub spaces: bool,
    pub normalization: Normalization,
}

impl Default for Rules {
    /// The original's.
    fn default() -> Self {
        Self {
            preset: Preset::Original,
            min_length: 8,
            max_length: BCRYPT_MAX_BYTES,
            character_classes: true,
            spaces: false,
            normalization: Normalization::None,
        }
    }
}

/// A rule a password broke; its sentence is the 422's (after `Value
/// error, `), its name the metric's label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    LeadingOrTrailingSpace,
    Whitespace,
    ControlCharacters,
    CharacterClasses,
    /// Found in the deny list.
    Breached,
    /// Among the passwords everyone tries first.
    Common,
    /// Made of the address's own words.
    ResemblesAddress,
    /// Below the minimum strength for another reason; zxcvbn's warning,
    /// if it had one.
    Guessable(Option<&'static str>),
}

impl Rule {
    /// The sentence of the 422 item.
    pub fn sentence(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::LeadingOrTrailingSpace => "Password cannot contain leading or trailing spaces",
            Self::Whitespace => "Password cannot contain whitespace characters",
            Self::ControlCharacters => "Password cannot contain control characters",
            Self::CharacterClasses => {
                "Password must include at least one lowercase letter, one uppercase letter, one digit, and one special character"
            }
            Self::Breached => "Password appears in a list of breached passwords",
            Self::Common => "Password is too common",
            Self::ResemblesAddress => "Password resembles the email address",
            Self::Guessable(None) => "Password is too easy to guess",
            Self::Guessable(Some(why)) => {
                return Cow::Owned(format!("Password is too easy to guess: {why}"));
            }
        })
    }
}

/// Why a password is refused, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Fewer characters than this.
    TooShort(usize),
    /// More characters than this.
    TooLong(usize),
    /// More UTF-8 bytes than this: bcrypt would read no more.
    TooManyBytes(usize),
    Rule(Rule),
}

impl Refusal {
    /// The label of `activator_password_refusals_total{rule}`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooShort(_) => "too_short",
            Self::TooLong(_) => "too_long",
            Self::TooManyBytes(_) => "too_many_bytes",
            Self::Rule(rule) => match rule {
                Rule::LeadingOrTrailingSpace | Rule::Whitespace => "whitespace",
                Rule::ControlCharacters => "control_characters",
                Rule::CharacterClasses => "character_classes",
                Rule::Breached => "breached",
                Rule::Common => "common",
                Rule::ResemblesAddress => "resembles_address",
                Rule::Guessable(_) => "guessable",
            },
        }
    }
}

impl Rules {
    /// The rules `settings` set.
    pub fn from_settings(settings: &PasswordSettings) -> Self {
        Self {
            preset: settings.preset,
            min_length: settings.min_length,
            max_length: settings.max_length,
            character_classes: settings.character_classes,
            spaces: settings.spaces,
            normalization: settings.normalization,
        }
    }

    /// `password` in the form it is checked, hashed and compared in.
    pub fn normalize<'a>(&self, password: &'a str) -> Cow<'a, str> {
        use icu_normalizer::ComposingNormalizerBorrowed;
        match self.normalization {
            Normalization::None => Cow::Borrowed(password),
            Normalization::Nfc => ComposingNormalizerBorrowed::new_nfc().normalize(password),
            Normalization::Nfkc => ComposingNormalizerBorrowed::new_nfkc().normalize(password),
        }
    }

    /// Checks an already normalized password against the rules, in the
    /// original's order: its length in characters (pydantic's
    /// constraints), its bytes, then the validator's rules.
    pub fn check(&self, password: &str) -> Result<(), Refusal> {
        let characters = password.chars().count();
        if characters < self.min_length {
            return Err(Refusal::TooShort(self.min_length));
        }
        if characters > self.max_length {
            return Err(Refusal::TooLong(self.max_length));
        }
        if password.len() > BCRYPT_MAX_BYTES {
            return Err(Refusal::TooManyBytes(BCRYPT_MAX_BYTES));
        }
        if !self.spaces {
            let at_an_end = password.chars().next().is_some_and(python_space)
                || password.chars().next_back().is_some_and(python_space);
            if at_an_end {
                return Err(Refusal::Rule(Rule::LeadingOrTrailingSpace));
            }
            if password.chars().any(python_space) {
                return Err(Refusal::Rule(Rule::Whitespace));
            }
        }
        // Such a password could never be sent back as Basic credentials.
        if password.chars().any(char::is_control) {
            return Err(Refusal::Rule(Rule::ControlCharacters));
        }
        if self.character_classes {
            // The original's classes, as its regular expressions read them.
            let complex = password.chars().any(|c| c.is_ascii_lowercase())
                && password.chars().any(|c| c.is_ascii_uppercase())
                && password.chars().any(decimal_digit)
                && password.chars().any(|c| !c.is_ascii_alphanumeric());
            if !complex {
                return Err(Refusal::Rule(Rule::CharacterClasses));
            }
        }
        Ok(())
    }

    /// The rules in words, for the API's documentation and `config check`.
    pub fn describe(&self) -> String {
        let mut words = vec![format!(
            "{}–{} characters and at most {BCRYPT_MAX_BYTES} bytes (bcrypt reads no more; a longer password is refused, never truncated)",
            self.min_length, self.max_length
        )];
        words.push(if self.spaces {
            "spaces and any printable character allowed".to_owned()
        } else {
            "no whitespace".to_owned()
        });
        words.push("no control characters".to_owned());
        if self.character_classes {
            words.push(
                "a lowercase and an uppercase letter (A–Z, a–z), a digit and a special character"
                    .to_owned(),
            );
        } else {
            words.push("no composition rules".to_owned());
        }
        match self.normalization {
            Normalization::None => {}
            form => words.push(format!(
                "Unicode normalized to {} before it is checked and hashed",
                form.as_str().to_uppercase()
            )),
        }
        words.join(", ")
    }

    /// The rules as a regular expression, for the API's schema, where one
    /// can say them: the original's classes and whitespace; `None` where
    /// only the length bounds apply.
    pub fn pattern(&self) -> Option<&'static str> {
        match (self.character_classes, self.spaces) {
            (true, false) => Some(crate::password::PATTERN),
            (true, true) => {
                Some(r"^(?=.*[a-z])(?=.*[A-Z])(?=.*\d)(?=.*[^A-Za-z0-9])[^\x00-\x1f\x7f-\x9f]*$")
            }
            (false, false) => Some(r"^[^\s\x00-\x1f\x7f-\x9f]*$"),
            (false, true) => Some(r"^[^\x00-\x1f\x7f-\x9f]*$"),
        }
    }
}

/// The whole policy: the rules, then the deny list, then the strength
/// estimate. Cheap to clone.
#[derive(Clone, Default)]
pub struct PasswordPolicy {
    pub rules: Rules,
    /// The lowest zxcvbn score accepted; 0: no estimate.
    pub min_strength: u8,
    pub denylist: Option<Arc<DenyList>>,
}

impl std::fmt::Debug for PasswordPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordPolicy")
            .field("rules", &self.rules)
            .field("min_strength", &self.min_strength)
            .field(
                "denylist",
                &self.denylist.as_ref().map(|list| list.entries()),
            )
            .finish()
    }
}

impl PasswordPolicy {
    /// The policy `settings` set, its deny list mapped from its file: an
    /// error (naming `PASSWORD_DENYLIST_FILE` and the file) if the file is
    /// missing, truncated or not a deny list.
    pub fn from_settings(settings: &PasswordSettings) -> Result<Self, denylist::FileError> {
        let denylist = settings
            .denylist_file
            .as_deref()
            .map(DenyList::open)
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            rules: Rules::from_settings(settings),
            min_strength: settings.min_strength,
            denylist,
        })
    }

    /// `password` in the form it is checked, hashed and compared in.
    pub fn normalize<'a>(&self, password: &'a str) -> Cow<'a, str> {
        self.rules.normalize(password)
    }

    /// Checks a new password for `email` (as typed: it may not be a valid
    /// address); `Ok` is the password in the form to hash. A refusal is
    /// counted in `activator_password_refusals_total`.
    pub fn check(&self, password: &str, email: &str) -> Result<String, Refusal> {
        let checked = self.check_quietly(password, email);
        if let Err(refusal) = &checked {
            crate::metrics::get().password_refused(refusal.label());
        }
        checked
    }

    fn check_quietly(&self, password: &str, email: &str) -> Result<String, Refusal> {
        let normalized = self.normalize(password);
        self.rules.check(&normalized)?;
        if let Some(list) = &self.denylist
            && (list.contains(&normalized) || (normalized != password && list.contains(password)))
        {
            return Err(Refusal::Rule(Rule::Breached));
        }
        if self.min_strength > 0
            && let Some(rule) = strength::weakness(&normalized, email, self.min_strength)
        {
            return Err(Refusal::Rule(rule));
        }
        Ok(normalized.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::{Refusal as Original, check_policy};

    fn nist() -> Rules {
        Rules::from_settings(
            &PasswordSettings::from_source(&std::collections::HashMap::from([(
                "PASSWORD_POLICY",
                "nist",
            )]))
            .unwrap(),
        )
    }

    /// What the original's validator (ported) says, in this module's terms.
    fn original(password: &str) -> Result<(), Refusal> {
        check_policy(password).map_err(|refusal| match refusal {
            Original::TooShort => Refusal::TooShort(8),
            Original::TooLong => Refusal::TooLong(72),
            Original::TooManyBytes => Refusal::TooManyBytes(72),
            Original::Rule(sentence) => {
                let rule = [
                    Rule::LeadingOrTrailingSpace,
                    Rule::Whitespace,
                    Rule::ControlCharacters,
                    Rule::CharacterClasses,
                ]
                .into_iter()
                .find(|rule| rule.sentence() == sentence)
                .unwrap_or_else(|| panic!("no rule says {sentence:?}"));
                Refusal::Rule(rule)
            }
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Any string at all, and strings from the characters each rule
        /// looks at (so that passwords passing some rules are common).
        #[test]
        fn the_default_rules_answer_as_the_original_for_any_password(
            password in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "[a-zA-Z0-9!é١ \t\u{1c}\u{85}\u{a0}\u{2003}\u{200b}𝄞Ä_\u{0}-]{0,80}",
            ]
        ) {
            let default = PasswordPolicy::default();
            let new = default.check_quietly(&password, "ada@example.com").map(drop);
            proptest::prop_assert_eq!(new, original(&password));
        }
    }

    #[test]
    fn the_nist_preset_takes_spaces_and_any_class_but_not_short_or_control() {
        let rules = nist();
        assert_eq!(rules.min_length, 15);
        assert_eq!(rules.check("correct horse battery"), Ok(()));
        assert_eq!(rules.check(" leading and trailing "), Ok(()));
        assert_eq!(rules.check("onlylowercaseletters"), Ok(()));
        assert_eq!(rules.check("short one"), Err(Refusal::TooShort(15)));
        assert_eq!(
            rules.check("tab\tinside this password"),
            Err(Refusal::Rule(Rule::ControlCharacters))
        );
        // 72 bytes at most, whatever the characters.
        let wide = "é".repeat(40);
        assert_eq!(rules.check(&wide), Err(Refusal::TooManyBytes(72)));
    }

    #[test]
    fn nfkc_folds_the_forms_a_keyboard_may_type_into_one() {
        let rules = nist();
        // Full-width letters, a ligature, a no-break space, a decomposed é.
        assert_eq!(rules.normalize("ＡＢＣ"), "ABC");
        assert_eq!(rules.normalize("ﬁne"), "fine");
        assert_eq!(rules.normalize("a\u{a0}b"), "a b");
        assert_eq!(rules.normalize("e\u{301}"), "é");
        // The original's: as received.
        assert_eq!(Rules::default().normalize("ＡＢＣ"), "ＡＢＣ");
    }

    #[test]
    fn each_rule_can_be_set_alone() {
        let settings = PasswordSettings::from_source(&std::collections::HashMap::from([
            ("PASSWORD_MIN_LENGTH", "12"),
            ("PASSWORD_CHARACTER_CLASSES", "off"),
        ]))
        .unwrap();
        let rules = Rules::from_settings(&settings);
        assert_eq!(rules.check("Sh0rt!pass"), Err(Refusal::TooShort(12)));
        assert_eq!(rules.check("alllowercaseletters"), Ok(()));
        assert_eq!(
            rules.check("no spaces allowed"),
            Err(Refusal::Rule(Rule::Whitespace))
        );
        assert_eq!(rules.normalization, Normalization::None);
    }

    #[test]
    fn the_schema_pattern_agrees_with_the_rules() {
        let samples = [
            "Secr3t!pass",
            "correct horse battery",
            "NoDigits!! here",
            "tab\there",
            "ÄÖÜäöü1!xx",
            " lead",
        ];
        for character_classes in [true, false] {
            for spaces in [true, false] {
                let rules = Rules {
                    character_classes,
                    spaces,
                    min_length: 1,
                    ..Rules::default()
                };
                let pattern = fancy_regex::Regex::new(rules.pattern().unwrap()).unwrap();
                for sample in samples {
                    assert_eq!(
                        pattern.is_match(sample).unwrap(),
                        rules.check(sample).is_ok(),
                        "{sample:?} {rules:?}"
                    );
                }
            }
        }
    }
}
