//! How guessable a password is: zxcvbn's estimate (Dropbox's, in the
//! `zxcvbn` crate, its word lists compiled in), with the address's own
//! words as the words an attacker tries first for it, so that
//! `ada.lovelace@example.com` cannot choose `AdaLovelace1!`.

use zxcvbn::feedback::Warning;
use zxcvbn::matching::patterns::MatchPattern;
use zxcvbn::{Score, zxcvbn};

use super::Rule;
use crate::password::decimal_digit;

/// The words of `email` an attacker would try: the local part, its pieces
/// (split at `.`, `_`, `-`, `+` and digits) and their concatenation, and
/// the domain's labels but its last. Lowercase.
pub fn address_words(email: &str) -> Vec<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.rsplit_once('@').unwrap_or((&email, ""));
    let mut words = vec![local.to_owned()];
    let pieces: Vec<&str> = local
        .split(|c: char| matches!(c, '.' | '_' | '-' | '+') || decimal_digit(c))
        .filter(|piece| !piece.is_empty())
        .collect();
    if pieces.len() > 1 {
        words.push(pieces.concat());
    }
    words.extend(pieces.iter().map(|piece| (*piece).to_owned()));
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    if let Some((_, named)) = labels.split_last() {
        words.extend(named.iter().map(|label| (*label).to_owned()));
    }
    if !domain.is_empty() {
        words.push(domain.to_owned());
    }
    // Single letters match everywhere and say nothing of the address.
    words.retain(|word| word.chars().count() > 1);
    words.dedup();
    words
}

/// Why `password` is weaker than `min_score` (1–4) for `email`, if it is.
pub fn weakness(password: &str, email: &str, min_score: u8) -> Option<Rule> {
    let words = address_words(email);
    let inputs: Vec<&str> = words.iter().map(String::as_str).collect();
    let estimate = zxcvbn(password, &inputs);
    if u8::from(estimate.score()) >= min_score {
        return None;
    }
    // A part matched as one of the address's words (from whichever list
    // zxcvbn ranked it in).
    let uses_address = estimate.sequence().iter().any(|part| {
        matches!(&part.pattern, MatchPattern::Dictionary(word)
            if words.contains(&word.matched_word))
    });
    if uses_address {
        return Some(Rule::ResemblesAddress);
    }
    let warning = estimate.feedback().and_then(|feedback| feedback.warning());
    Some(match warning {
        Some(
            Warning::ThisIsATop10Password
            | Warning::ThisIsATop100Password
            | Warning::ThisIsACommonPassword
            | Warning::ThisIsSimilarToACommonlyUsedPassword,
        ) => Rule::Common,
        other => Rule::Guessable(other.map(sentence)),
    })
}

/// zxcvbn's warning, as the end of a sentence.
fn sentence(warning: Warning) -> &'static str {
    match warning {
        Warning::StraightRowsOfKeysAreEasyToGuess => "straight rows of keys are easy to guess",
        Warning::ShortKeyboardPatternsAreEasyToGuess => "short keyboard patterns are easy to guess",
        Warning::RepeatsLikeAaaAreEasyToGuess => "repeats like \"aaa\" are easy to guess",
        Warning::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess => {
            "repeats like \"abcabcabc\" are only slightly harder to guess than \"abc\""
        }
        Warning::SequencesLikeAbcAreEasyToGuess => "sequences like abc or 6543 are easy to guess",
        Warning::RecentYearsAreEasyToGuess => "recent years are easy to guess",
        Warning::AWordByItselfIsEasyToGuess => "a word by itself is easy to guess",
        Warning::DatesAreOftenEasyToGuess => "dates are often easy to guess",
        Warning::NamesAndSurnamesByThemselvesAreEasyToGuess => {
            "names and surnames by themselves are easy to guess"
        }
        Warning::CommonNamesAndSurnamesAreEasyToGuess => {
            "common names and surnames are easy to guess"
        }
        // The common ones are `Rule::Common`; any warning a later zxcvbn
        // adds reads as a plain "too easy to guess".
        _ => "it is a common pattern",
    }
}

/// The score zxcvbn gives, for `config check` and tests.
pub fn score(password: &str, email: &str) -> u8 {
    let words = address_words(email);
    let inputs: Vec<&str> = words.iter().map(String::as_str).collect();
    let score: Score = zxcvbn(password, &inputs).score();
    u8::from(score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gives_its_words() {
        assert_eq!(
            address_words("Ada.Lovelace@Analytical-Engine.example.org"),
            [
                "ada.lovelace",
                "adalovelace",
                "ada",
                "lovelace",
                "analytical-engine",
                "example",
                "analytical-engine.example.org"
            ]
        );
        assert_eq!(address_words("x@b.co"), ["b.co"]);
    }

    #[test]
    fn the_address_own_words_are_refused_as_resembling_it() {
        assert_eq!(
            weakness("AdaLovelace1!", "ada.lovelace@example.com", 3),
            Some(Rule::ResemblesAddress)
        );
        // The same password for someone else is another matter.
        assert_eq!(
            weakness("AdaLovelace1!", "grace@example.com", 2),
            None,
            "score {}",
            score("AdaLovelace1!", "grace@example.com")
        );
    }

    #[test]
    fn common_and_patterned_passwords_say_why() {
        assert_eq!(
            weakness("Password1!", "grace@example.com", 3),
            Some(Rule::Common)
        );
        assert!(matches!(
            weakness("qwertyuiop", "grace@example.com", 3),
            Some(Rule::Guessable(Some(_)) | Rule::Common)
        ));
        assert_eq!(
            weakness("correct horse battery staple", "grace@example.com", 4),
            None
        );
    }
}
