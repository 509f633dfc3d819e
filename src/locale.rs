//! The language of an account's emails: a [`Locale`], negotiated once at the
//! request's edge against the [`Locales`] there are templates for, then
//! carried as a value.
//!
//! Choosing it from `Accept-Language` (RFC 9110 §12.5.4,
//! lookup as in RFC 4647 §3.4): the client's languages by descending
//! q-value (ties keep their order), each tried as given and then with its
//! last subtags cut off (`fr-CH` → `fr`); `q=0` means "not this one"; `*`
//! and anything unreadable is skipped. No match leaves the choice to the
//! caller (`DEFAULT_LOCALE`). Bad headers are never an error: a client only
//! gets the default language.

/// The most languages of one header looked at.
const MAX_RANGES: usize = 32;

/// A language emails can be written in: a lowercase language tag (`en`,
/// `pt-br`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locale(String);

impl Locale {
    /// `tag` as a locale, if it reads as a language tag (any case).
    pub fn parse(tag: &str) -> Option<Self> {
        is_language_tag(tag).then(|| Self(tag.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Locale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The locales there are templates for, and the one used when a client
/// names none of them (`DEFAULT_LOCALE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locales {
    known: Vec<Locale>,
    default: Locale,
}

impl Locales {
    /// `known` (the default among them or not) and `default`.
    pub fn new(known: impl IntoIterator<Item = Locale>, default: Locale) -> Self {
        let mut known: Vec<Locale> = known.into_iter().collect();
        if !known.contains(&default) {
            known.push(default.clone());
        }
        known.sort();
        Self { known, default }
    }

    /// The best locale for an `Accept-Language` header (see [`negotiate`]),
    /// or the default.
    pub fn negotiate(&self, accept_language: Option<&str>) -> Locale {
        accept_language
            .and_then(|header| {
                negotiate(header, |tag| {
                    self.known.iter().find(|known| known.as_str() == tag)
                })
            })
            .unwrap_or(&self.default)
            .clone()
    }

    pub fn default_locale(&self) -> &Locale {
        &self.default
    }

    /// Every locale, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Locale> {
        self.known.iter()
    }
}

/// The first of the client's languages that `known` accepts (given a
/// lowercase tag), as `known` returns it.
pub fn negotiate<T>(header: &str, mut known: impl FnMut(&str) -> Option<T>) -> Option<T> {
    let (refused, mut ranges): (Vec<_>, Vec<_>) = header
        .split(',')
        .take(MAX_RANGES)
        .filter_map(range)
        .partition(|(_, q)| *q == 0);
    // Stable: equal q-values keep the client's order.
    ranges.sort_by_key(|(_, q)| std::cmp::Reverse(*q));
    let refused: Vec<String> = refused.into_iter().map(|(tag, _)| tag).collect();
    for (tag, _) in ranges {
        let mut candidate = tag.as_str();
        loop {
            if !refused.iter().any(|no| no == candidate)
                && let Some(found) = known(candidate)
            {
                return Some(found);
            }
            match candidate.rfind('-') {
                Some(cut) => candidate = &candidate[..cut],
                None => break,
            }
        }
    }
    None
}

/// Whether `tag` reads as a language tag: a primary language of 2–3
/// letters, then subtags of 1–8 letters or digits (`fr`, `pt-br`,
/// `zh-hant-tw`); at most 35 characters. Case does not matter.
pub fn is_language_tag(tag: &str) -> bool {
    let mut subtags = tag.split('-');
    let language = subtags.next().unwrap_or_default();
    tag.len() <= 35
        && (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && subtags.all(|sub| {
            (1..=8).contains(&sub.len()) && sub.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// One `language-range [; q=value]`, lowercase, with its q-value in
/// thousandths; `None` for `*` and anything malformed.
fn range(item: &str) -> Option<(String, u16)> {
    let mut parts = item.split(';');
    let tag = parts.next()?.trim().to_ascii_lowercase();
    if !is_language_tag(&tag) {
        return None;
    }
    let mut q = 1000;
    for parameter in parts {
        let (name, value) = parameter.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            q = qvalue(value.trim())?;
        }
    }
    Some((tag, q))
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths.
fn qvalue(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(header: &str) -> Option<&'static str> {
        const KNOWN: [&str; 4] = ["de", "en", "es", "fr"];
        negotiate(header, |tag| {
            KNOWN.iter().find(|known| **known == tag).copied()
        })
    }

    #[test]
    fn the_highest_q_value_that_we_have_wins() {
        assert_eq!(choose("fr"), Some("fr"));
        assert_eq!(choose("de;q=0.5, es;q=0.9"), Some("es"));
        assert_eq!(choose("it, pt;q=0.9, de;q=0.1"), Some("de"));
        assert_eq!(choose("es, fr"), Some("es"), "ties keep the client's order");
        assert_eq!(choose("en;q=0.8, fr;q=1.0"), Some("fr"));
        assert_eq!(choose("EN-gb"), Some("en"));
    }

    #[test]
    fn a_regional_variant_falls_back_to_its_language() {
        assert_eq!(choose("fr-CH"), Some("fr"));
        assert_eq!(choose("de-AT-1996, en;q=0.5"), Some("de"));
        assert_eq!(choose("zh-Hant-TW, es-419;q=0.8"), Some("es"));
    }

    #[test]
    fn unknown_refused_and_malformed_languages_give_no_choice() {
        assert_eq!(choose("it, pt-BR"), None);
        assert_eq!(choose("*"), None);
        assert_eq!(choose(""), None);
        assert_eq!(choose("fr;q=0"), None);
        assert_eq!(
            choose("fr-CH, fr;q=0, de;q=0.2"),
            Some("de"),
            "fr is refused"
        );
        assert_eq!(choose("@@@, fr;q=2, de;q=abc, es;q=0.1234"), None);
        assert_eq!(choose(&"x-y,".repeat(10_000)), None);
    }

    #[test]
    fn locales_negotiate_or_fall_back_to_the_default() {
        let tags = ["de", "en", "fr"].map(|tag| Locale::parse(tag).unwrap());
        let locales = Locales::new(tags, Locale::parse("EN").unwrap());
        assert_eq!(locales.negotiate(Some("fr-CH")).as_str(), "fr");
        assert_eq!(locales.negotiate(Some("it")).as_str(), "en");
        assert_eq!(locales.negotiate(None).as_str(), "en");
        assert_eq!(Locale::parse("../etc"), None);
    }
}
