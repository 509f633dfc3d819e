//! Email addresses: validated exactly as the original service validated them
//! (pydantic's `EmailStr` over email-validator, ported in `compat`), and
//! normalized for comparison, storage and delivery.
//!
//! The normal form is the local part lower-cased, `@`, and the domain in
//! its ASCII form (IDNA, UTS #46: `ｅｘａｍｐｌｅ.com` is `example.com`,
//! `bücher.de` is `xn--bcher-kva.de`), lower-cased. One person's address is
//! then one account, one rate-limit key and one recipient, however it was
//! typed.

use std::fmt;

/// An address in the normal form (see the module doc).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why an address was refused: the original's sentence, which the client
/// sees after `value is not a valid email address: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value is not a valid email address: {reason}")]
pub struct InvalidEmail {
    pub reason: String,
}

/// RFC 5321's limit on the part before the `@`, in characters. The original
/// accepted longer ones (email-validator checks it only when `strict`);
/// such mail is not deliverable, so this service refuses them, with the
/// library's own strict-mode sentence.
const MAX_LOCAL_CHARS: usize = 64;

impl Email {
    /// The normal form of `raw` without validation: what a lookup by a
    /// client-supplied address (HTTP Basic, the CLI) compares against. A
    /// domain that IDNA cannot map is kept as typed (lower-cased); such an
    /// address matches no account registered here.
    pub fn canonical(raw: &str) -> Self {
        let lowered = raw.trim().to_lowercase();
        match lowered.rsplit_once('@') {
            Some((local, domain)) => match idna::domain_to_ascii(domain) {
                Ok(ascii) if !ascii.is_empty() => Self(format!("{local}@{}", ascii.to_lowercase())),
                _ => Self(lowered),
            },
            None => Self(lowered),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The mailbox the address delivers to, for counting emails to one
    /// person: the address without a `+tag` on its local part
    /// (`ada+news@example.com` and `ada+1@example.com` are `ada@example.com`).
    pub fn mailbox(&self) -> String {
        match self.0.rsplit_once('@') {
            Some((local, domain)) => {
                let untagged = local.split_once('+').map_or(local, |(base, _)| base);
                format!("{untagged}@{domain}")
            }
            None => self.0.clone(),
        }
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

/// Validates `raw` as the original did (surrounding spaces ignored) and
/// returns its normal form.
pub fn normalize(raw: &str) -> Result<Email, InvalidEmail> {
    let address =
        crate::compat::pydantic::validate(raw.trim()).map_err(|reason| InvalidEmail { reason })?;
    let local_chars = address.local_part.chars().count();
    if local_chars > MAX_LOCAL_CHARS {
        let over = local_chars - MAX_LOCAL_CHARS;
        let plural = if over > 1 { "s" } else { "" };
        return Err(InvalidEmail {
            reason: format!(
                "The email address is too long before the @-sign ({over} character{plural} too many)."
            ),
        });
    }
    Ok(Email(format!(
        "{}@{}",
        address.local_part.to_lowercase(),
        address.ascii_domain.to_lowercase()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_lower_cased_and_their_domains_made_ascii() {
        let cases = [
            (
                "  Alice.Smith+tag@Example.COM \n",
                "alice.smith+tag@example.com",
            ),
            ("victim@ｅｘａｍｐｌｅ.com", "victim@example.com"),
            ("Ünal@Bücher.DE", "ünal@xn--bcher-kva.de"),
            (
                "δοκιμή@παράδειγμα.δοκιμή",
                "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp",
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalize(raw).unwrap().as_str(), expected, "{raw}");
            assert_eq!(Email::canonical(raw).as_str(), expected, "{raw}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_libraries_sentences() {
        let cases = [
            ("plainaddress", "An email address must have an @-sign."),
            (
                "user@localhost",
                "The part after the @-sign is not valid. It should have a period.",
            ),
            (
                "us er@example.com",
                "The email address contains invalid characters before the @-sign: SPACE.",
            ),
            (
                ".user@example.com",
                "An email address cannot start with a period.",
            ),
        ];
        for (raw, reason) in cases {
            assert_eq!(normalize(raw).unwrap_err().reason, reason, "{raw}");
        }
        let long_local = format!("{}@example.com", "a".repeat(66));
        assert_eq!(
            normalize(&long_local).unwrap_err().reason,
            "The email address is too long before the @-sign (2 characters too many)."
        );
        assert!(normalize(&format!("{}@example.com", "a".repeat(64))).is_ok());
    }

    #[test]
    fn the_mailbox_is_the_address_without_its_tag() {
        let mailbox = |raw| normalize(raw).unwrap().mailbox();
        assert_eq!(mailbox("Victim+1@Example.com"), "victim@example.com");
        assert_eq!(mailbox("victim+a+b@example.com"), "victim@example.com");
        assert_eq!(mailbox("victim@example.com"), "victim@example.com");
    }
}
