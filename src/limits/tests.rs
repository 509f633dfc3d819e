//! The limiter's keys and arithmetic (its scripts run against a real
//! Redis in the integration tests).

use super::shared::mailbox_keys;
use super::*;

#[test]
fn keys_of_one_email_ip_or_mailbox_share_a_hash_tag() {
    let keys = EmailKeys::of(&crate::address::normalize("Someone@Example.com").unwrap());
    for key in [
        &keys.attempts,
        &keys.lock,
        &keys.resend_minute,
        &keys.resend_day,
        &keys.auth_failures,
        &keys.auth_failures_by_network,
        &keys.proof,
    ] {
        assert!(key.starts_with("activator:{someone@example.com}:"), "{key}");
    }
    let ip = "2001:db8::1".parse().unwrap();
    assert_eq!(
        ip_key(ip, "register"),
        "activator:{ip:2001:db8::1}:register"
    );
    assert_eq!(
        mailbox_keys("someone@example.com").total,
        "activator:{mailbox:someone@example.com}:emails"
    );
    assert_eq!(
        mailbox_keys("someone@example.com").by_network,
        "activator:{mailbox:someone@example.com}:emails:by-network"
    );
}

#[test]
fn a_claim_has_its_own_window_lockout_and_resend_limits_under_the_email_tag() {
    let email = crate::address::normalize("someone@example.com").unwrap();
    let (first, claim) = (EmailKeys::of(&email), EmailKeys::of_claim(&email, Some(7)));
    assert_eq!(
        claim.attempts,
        "activator:{someone@example.com}:activation:attempts:claim:7"
    );
    assert_eq!(
        claim.lock,
        "activator:{someone@example.com}:activation:lock:claim:7"
    );
    assert_ne!(claim.resend_minute, first.resend_minute);
    assert_ne!(claim.resend_day, first.resend_day);
    // Failed sign-ins and the proof are the address's.
    assert_eq!(claim.auth_failures, first.auth_failures);
    assert_eq!(claim.proof, first.proof);
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
    assert_eq!(retry_after_seconds(Duration::from_millis(1000)), 1);
    assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
    assert_eq!(retry_after_seconds(Duration::from_secs(900)), 900);
}

#[test]
fn an_address_with_a_closing_brace_keeps_one_hash_tag_for_all_its_keys() {
    let keys = EmailKeys::of(&crate::address::normalize("}weird%{@example.com").unwrap());
    // Redis Cluster hashes what lies between the first `{` and the next `}`.
    let tag = |key: &str| {
        let open = key.find('{').unwrap();
        let close = open + key[open..].find('}').unwrap();
        key[open + 1..close].to_owned()
    };
    assert_eq!(tag(&keys.attempts), "%7Dweird%25{@example.com");
    for key in [
        &keys.lock,
        &keys.auth_failures,
        &keys.auth_failures_by_network,
        &keys.proof,
    ] {
        assert_eq!(tag(key), tag(&keys.attempts), "{key}");
    }
    // Two addresses that differ only there do not share keys.
    let other = EmailKeys::of(&crate::address::normalize("%7Dweird%25{@example.com").unwrap());
    assert_ne!(other.attempts, keys.attempts);
}
