//! Email addresses: validation and the normalized form used as the account key.

use std::fmt;

/// A normalized (trimmed, lower-cased) email address, the account key.
/// [`normalize`] also checks it is plausible; [`Email::canonical`] does not,
/// for looking up addresses stored under older validation rules.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why an address was refused; the text is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value is not a valid email address: {0}")]
pub struct InvalidEmail(&'static str);

/// RFC 5321 limits.
const MAX_LENGTH: usize = 254;
const MAX_LOCAL_LENGTH: usize = 64;

impl Email {
    /// The normalized form of `raw` without validation: what a lookup by a
    /// client-supplied address (HTTP Basic) compares against, and, for an
    /// address read back from `users`, the address as stored.
    pub fn canonical(raw: &str) -> Self {
        Self(raw.trim().to_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({:?})", self.0)
    }
}

/// Trims and lower-cases `raw` and checks it is a plausible address:
/// `local@domain`, the domain made of dot-separated labels with at least one
/// dot. Addresses are compared case-insensitively, as the service always did.
pub fn normalize(raw: &str) -> Result<Email, InvalidEmail> {
    let Email(email) = Email::canonical(raw);
    if email.is_empty() {
        return Err(InvalidEmail("an email address must not be empty"));
    }
    if email.len() > MAX_LENGTH {
        return Err(InvalidEmail("the address is too long"));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(InvalidEmail("an email address must have an @-sign"));
    };
    if local.is_empty() {
        return Err(InvalidEmail("there must be something before the @-sign"));
    }
    if local.len() > MAX_LOCAL_LENGTH {
        return Err(InvalidEmail("the part before the @-sign is too long"));
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !local_ok {
        return Err(InvalidEmail(
            "the part before the @-sign contains invalid characters",
        ));
    }
    if domain.is_empty() {
        return Err(InvalidEmail("there must be something after the @-sign"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(InvalidEmail("the part after the @-sign is not valid"));
    }
    let labels_ok = labels.iter().all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    if !labels_ok {
        return Err(InvalidEmail("the part after the @-sign is not valid"));
    }
    Ok(Email(email))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        let email = normalize("  Alice.Smith+tag@Example.COM \n").unwrap();
        assert_eq!(email.as_str(), "alice.smith+tag@example.com");
    }

    #[test]
    fn plausible_addresses_are_accepted() {
        for raw in [
            "a@b.co",
            "x_y-z@sub.domain.org",
            "o'neil@example.ie",
            "δοκιμή@παράδειγμα.δοκιμή",
        ] {
            assert!(normalize(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for raw in [
            "",
            "   ",
            "plainaddress",
            "@example.com",
            "user@",
            "user@localhost",
            "user@exa mple.com",
            "us er@example.com",
            "user@.example.com",
            "user@example..com",
            "user@-example.com",
            ".user@example.com",
            "us..er@example.com",
            "user\"@example.com",
        ] {
            assert!(normalize(raw).is_err(), "{raw:?} was accepted");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(normalize(&long_local).is_err());
        let long = format!("a@{}.com", "b".repeat(260));
        assert!(normalize(&long).is_err());
    }
}
