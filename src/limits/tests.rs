//! The limiter's arithmetic (its scripts run against a real Redis in the
//! integration tests; its key names are `redis::KeyNames`').

use super::inbox::cost_of;
use super::*;

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
    assert_eq!(retry_after_seconds(Duration::from_millis(1000)), 1);
    assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
    assert_eq!(retry_after_seconds(Duration::from_secs(900)), 900);
}

#[test]
fn comparing_with_a_code_costs_its_odds_in_units_of_ten_to_the_minus_eight() {
    assert_eq!(cost_of(4), 10_000);
    assert_eq!(cost_of(6), 100);
    assert_eq!(cost_of(8), 1);
}

#[test]
fn a_registration_and_its_claims_have_keys_of_their_own_under_one_tag() {
    let names = KeyNames::new(&[3; 32]);
    let email = crate::address::normalize("someone@example.com").unwrap();
    let (first, claim) = (
        AddressKeys::of(&names, &email, None),
        AddressKeys::of(&names, &email, Some(7)),
    );
    assert_ne!(claim.attempts, first.attempts);
    assert_ne!(claim.lock, first.lock);
    assert_ne!(claim.resend_day, first.resend_day);
    assert!(claim.attempts.ends_with(":activation:attempts:claim:7"));
    // Failed and successful sign-ins are the address's.
    assert_eq!(claim.auth_failures.total, first.auth_failures.total);
    assert_eq!(claim.sign_ins, first.sign_ins);
    let tag = |key: &str| key.split('}').next().unwrap().to_owned();
    assert_eq!(tag(&claim.attempts), tag(&first.sign_ins));
}
