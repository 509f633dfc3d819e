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
    /// The normal form of a client-supplied address (HTTP Basic, the CLI):
    /// what registration stores, through the very same [`normalize`], so
    /// every spelling that registered signs in as it registered. An address
    /// that does not validate (now; it may have under older rules) is only
    /// trimmed, lower-cased and its domain mapped by IDNA where it can be:
    /// it matches an account stored under those rules, or none.
    pub fn canonical(raw: &str) -> Self {
        if let Ok(email) = normalize(raw) {
            return email;
        }
        let lowered = raw.trim().to_lowercase();
        match lowered.rsplit_once('@') {
            Some((local, domain)) => match idna::domain_to_ascii(domain) {
                Ok(ascii) if !ascii.is_empty() => Self(format!("{local}@{}", ascii.to_lowercase())),
                _ => Self(lowered),
            },
            None => Self(lowered),
        }
    }

    /// An address as the database stores it: already in the normal form
    /// (the table's CHECK constraint refuses any other).
    pub fn stored(normalized: String) -> Self {
        Self(normalized)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How addresses that reach one inbox fold into one mailbox key: a `+tag`
/// never matters; a domain may be another's alias (`googlemail.com` is
/// `gmail.com`), and some providers ignore dots in the local part (Gmail:
/// `a.da@` is `ada@`). The email limit counts per folded mailbox, so the
/// spellings of one inbox share its emails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inboxes {
    /// Alias domain → the domain whose inboxes it reaches.
    aliases: Vec<(String, String)>,
    /// Domains (after aliasing) whose local parts ignore dots.
    dotless: Vec<String>,
}

impl Inboxes {
    pub fn new(aliases: Vec<(String, String)>, dotless: Vec<String>) -> Self {
        Self { aliases, dotless }
    }

    /// The mailbox `email` delivers to.
    pub fn of(&self, email: &Email) -> String {
        let Some((local, domain)) = email.as_str().rsplit_once('@') else {
            return email.as_str().to_owned();
        };
        let untagged = local.split_once('+').map_or(local, |(base, _)| base);
        let domain = self
            .aliases
            .iter()
            .find(|(alias, _)| alias == domain)
            .map_or(domain, |(_, canonical)| canonical.as_str());
        if self.dotless.iter().any(|dotless| dotless == domain) {
            format!("{}@{domain}", untagged.replace('.', ""))
        } else {
            format!("{untagged}@{domain}")
        }
    }

    /// The inbox a code emailed to `email` proves (docs/LIMITS.md, "The
    /// owner of an address"): the folded mailbox ([`Inboxes::of`]) where the
    /// operator declared the provider's rules (its domain is in
    /// `MAILBOX_DOTLESS_DOMAINS`, or on either side of
    /// `MAILBOX_ALIAS_DOMAINS`), else the address itself. A code is an
    /// authorization, so only addresses known to reach one mailbox share
    /// codes: counting may fold more (a `+tag` everywhere only makes a
    /// limit stricter), proving may not (where `+` is a letter, `ada+x@`
    /// is somebody else's).
    pub fn proving(&self, email: &Email) -> String {
        let Some((_, domain)) = email.as_str().rsplit_once('@') else {
            return email.as_str().to_owned();
        };
        let declared = self.dotless.iter().any(|dotless| dotless == domain)
            || self
                .aliases
                .iter()
                .any(|(alias, canonical)| alias == domain || canonical == domain);
        if declared {
            self.of(email)
        } else {
            email.as_str().to_owned()
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

/// Why an address that held lone UTF-16 surrogates is refused, as the
/// original refused it. `raw` is the address with each of `surrogates`
/// stored as U+FFFD (a Rust string cannot hold one; Python's could):
/// email-validator names them unsafe characters, unless one of its earlier
/// checks refuses the address first.
pub fn refuse_surrogates(raw: &str, surrogates: &[u16]) -> InvalidEmail {
    if let Err(err) = normalize(raw)
        && !err.reason.contains("U+FFFD")
        && !err.reason.contains("REPLACEMENT CHARACTER")
    {
        return err;
    }
    let sorted: std::collections::BTreeSet<u16> = surrogates.iter().copied().collect();
    let names: Vec<String> = sorted.iter().map(|s| format!("U+{s:04X}")).collect();
    InvalidEmail {
        reason: format!(
            "The email address contains unsafe characters: {}.",
            names.join(", ")
        ),
    }
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
        let mailbox = |raw| Inboxes::default().of(&normalize(raw).unwrap());
        assert_eq!(mailbox("Victim+1@Example.com"), "victim@example.com");
        assert_eq!(mailbox("victim+a+b@example.com"), "victim@example.com");
        assert_eq!(mailbox("victim@example.com"), "victim@example.com");
    }

    /// Generated spellings of addresses: every one that registers signs in
    /// with the very same spelling (and with any other that registers as the
    /// same account).
    #[test]
    fn every_spelling_that_registers_signs_in_as_it_registered() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        // Pieces whose case folding, width or IDNA mapping differ between
        // naive lower-casing and the normal form.
        const LOCALS: [&str; 10] = [
            "K",
            "ΣΣ",
            "Ünal",
            "ǅemal",
            "İpek",
            "ẞtraße",
            "ﬁle",
            "Ａｄａ",
            "ΌΣΟΣ",
            "e\u{301}lan",
        ];
        const DOMAINS: [&str; 10] = [
            "ΣΣ。com",
            "Bücher.DE",
            "ｅｘａｍｐｌｅ.com",
            "ΌΣΟΣ.gr",
            "faß.de",
            "İstanbul.tr",
            "xn--bcher-kva.de",
            "straße.de",
            "例え．テスト.jp",
            "EXAMPLE.com",
        ];
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let mut registered = 0;
        for _ in 0..2_000 {
            let local = LOCALS[rng.random_range(0..LOCALS.len())];
            let domain = DOMAINS[rng.random_range(0..DOMAINS.len())];
            let mut spelling = String::new();
            for c in format!("{local}@{domain}").chars() {
                match rng.random_range(0..3) {
                    0 => spelling.extend(c.to_uppercase()),
                    1 => spelling.extend(c.to_lowercase()),
                    _ => spelling.push(c),
                }
            }
            let Ok(stored) = normalize(&spelling) else {
                continue;
            };
            registered += 1;
            assert_eq!(Email::canonical(&spelling), stored, "{spelling}");
            assert_eq!(normalize(stored.as_str()).unwrap(), stored, "{spelling}");
        }
        assert!(registered > 500, "only {registered} spellings registered");
    }

    #[test]
    fn the_spellings_of_one_gmail_inbox_fold_into_one_mailbox() {
        let inboxes = Inboxes::new(
            vec![("googlemail.com".into(), "gmail.com".into())],
            vec!["gmail.com".into()],
        );
        let spellings = [
            "victim@gmail.com",
            "v.ictim@gmail.com",
            "vi.ctim@gmail.com",
            "V.I.C.T.I.M@Gmail.com",
            "victim+1@gmail.com",
            "vic.tim+news@gmail.com",
            "victim@googlemail.com",
            "v.i.ctim@googlemail.com",
            "victim+x@googlemail.com",
            "victim.@gmail.com",
            "v..ictim@gmail.com",
            "vict.im+a.b@googlemail.com",
        ];
        for spelling in spellings {
            let email = Email::canonical(spelling);
            assert_eq!(inboxes.of(&email), "victim@gmail.com", "{spelling}");
        }
        // Elsewhere dots matter; tags never do.
        let other = normalize("v.ictim+x@example.com").unwrap();
        assert_eq!(inboxes.of(&other), "v.ictim@example.com");
        assert_eq!(Inboxes::default().of(&other), "v.ictim@example.com");
    }

    #[test]
    fn only_declared_providers_fold_the_inbox_a_code_proves() {
        let inboxes = Inboxes::new(
            vec![("googlemail.com".into(), "gmail.com".into())],
            vec!["gmail.com".into()],
        );
        let proving = |raw| inboxes.proving(&normalize(raw).unwrap());
        for gmail in ["a.da+x@gmail.com", "ada@googlemail.com", "A.D.A@gmail.com"] {
            assert_eq!(proving(gmail), "ada@gmail.com", "{gmail}");
        }
        // Elsewhere `+x` may be a letter of another mailbox: not folded.
        assert_eq!(proving("ada+x@example.com"), "ada+x@example.com");
        assert_eq!(proving("a.da@example.com"), "a.da@example.com");
        // Counting still folds the tag.
        assert_eq!(
            inboxes.of(&normalize("ada+x@example.com").unwrap()),
            "ada@example.com"
        );
    }
}
