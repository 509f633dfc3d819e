//! A signup costs one password hash (README, "API"; docs/OPERATIONS.md,
//! `activator_password_hashes_total`): registration keeps a proof of its
//! credentials for the code's lifetime, the activation that follows skips
//! bcrypt, and the proof ends with the code. Against the real binary.

use std::time::Duration;

use crate::common::Api;
use crate::common::email::{code_for, scrape, serve_with_metrics, value};
use crate::common::server::run;
use crate::common::{MailSink, PASSWORD, TestDb, unique_email};

/// bcrypt computations of `work` so far.
fn hashes(metrics: &str, work: &str) -> f64 {
    let series = format!("activator_password_hashes_total{{work=\"{work}\"}}");
    value(&scrape(metrics), &series).unwrap_or_else(|| panic!("no {series}"))
}

/// The proofs kept in Redis for `email` by the service on `db`: each
/// field a proof (an HMAC), each value the registrant it proves and until
/// when.
async fn proofs(db: &TestDb, email: &str) -> Vec<(Vec<u8>, String)> {
    let key = crate::common::key_names(db)
        .await
        .inbox(email, "credential:proofs");
    redis::cmd("HGETALL")
        .arg(key)
        .query(&mut crate::common::redis_connection())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_activation_right_after_registration_runs_no_bcrypt() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(&db, &sink, &[]);
    let email = unique_email("onehash");
    let before = (hashes(&metrics, "hash"), hashes(&metrics, "verify"));
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let code = code_for(&sink, &email);
    assert_eq!(server.activate(&email, PASSWORD, &code).await.code(), 200);
    let after = (hashes(&metrics, "hash"), hashes(&metrics, "verify"));
    assert_eq!(after.0 - before.0, 1.0, "one hash: the registration's");
    assert_eq!(after.1 - before.1, 0.0, "no verification");

    // A wrong password still costs a full verification and answers 401.
    let other = unique_email("wrong");
    assert_eq!(server.register(&other, PASSWORD).await.code(), 201);
    let code = code_for(&sink, &other);
    let verified = hashes(&metrics, "verify");
    assert_eq!(
        server.activate(&other, "Wr0ng!pass", &code).await.code(),
        401
    );
    assert_eq!(hashes(&metrics, "verify") - verified, 1.0);
    // And the right one, after it, none.
    assert_eq!(server.activate(&other, PASSWORD, &code).await.code(), 200);
    assert_eq!(hashes(&metrics, "verify") - verified, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proof_ends_with_activation_a_new_code_unlock_delete_expiry_and_a_new_key() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(&db, &sink, &[("ACTIVATION_CODE_TTL_SECONDS", "2")]);

    // Activation.
    let email = unique_email("ends-activated");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    assert_eq!(
        proofs(&db, &email).await.len(),
        1,
        "kept after registration"
    );
    let code = code_for(&sink, &email);
    assert_eq!(server.activate(&email, PASSWORD, &code).await.code(), 200);
    assert_eq!(proofs(&db, &email).await, [], "ended by the activation");

    // An unlock.
    let email = unique_email("ends-unlocked");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    assert_eq!(proofs(&db, &email).await.len(), 1);
    let output = run(&db.url, &[], &["user", "unlock", &email]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(proofs(&db, &email).await, [], "ended by user unlock");

    // Erasure.
    let email = unique_email("ends-deleted");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    assert_eq!(proofs(&db, &email).await.len(), 1);
    let output = run(&db.url, &[], &["user", "delete", &email]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(proofs(&db, &email).await, [], "ended by user delete");

    // Expiry, with the code's.
    let email = unique_email("ends-expired");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    assert_eq!(proofs(&db, &email).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(proofs(&db, &email).await, [], "expired with the code");

    // A new SECRET_KEY (the old one a fallback): the proof made under the
    // old one proves nothing, so the activation is verified by bcrypt; the
    // code, hashed under the old key, still verifies.
    let email = unique_email("ends-rotated");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let code = code_for(&sink, &email);
    drop(server);
    let rotated = "another-integration-test-secret-key-0123456789";
    let (server, metrics_rotated) = serve_with_metrics(
        &db,
        &sink,
        &[
            ("ACTIVATION_CODE_TTL_SECONDS", "2"),
            ("SECRET_KEY", rotated),
            ("SECRET_KEY_FALLBACKS", crate::common::SECRET_KEY),
        ],
    );
    let verified = hashes(&metrics_rotated, "verify");
    assert_eq!(server.activate(&email, PASSWORD, &code).await.code(), 200);
    assert_eq!(hashes(&metrics_rotated, "verify") - verified, 1.0);
    drop(metrics);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_credential_proof_off_every_sign_in_runs_bcrypt() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(&db, &sink, &[("CREDENTIAL_PROOF", "off")]);
    let email = unique_email("proofoff");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    assert_eq!(proofs(&db, &email).await, [], "nothing kept");
    let code = code_for(&sink, &email);
    let verified = hashes(&metrics, "verify");
    assert_eq!(server.activate(&email, PASSWORD, &code).await.code(), 200);
    assert_eq!(hashes(&metrics, "verify") - verified, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn neither_dump_holds_anything_a_password_can_be_recovered_from_without_the_key() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, _metrics) = serve_with_metrics(&db, &sink, &[]);
    let email = unique_email("dumps");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let kept = proofs(&db, &email).await;
    let (field, value) = &kept[0];
    assert_eq!(field.len(), 32, "an HMAC-SHA256");
    for held in [field.as_slice(), value.as_bytes()] {
        assert!(
            !held
                .windows(4)
                .any(|w| PASSWORD.as_bytes().windows(4).any(|p| p == w))
        );
    }
    let mut redis = crate::common::redis_connection();
    for key in crate::common::redis_keys_of(&db, &email).await {
        let value: Vec<u8> = redis::cmd("DUMP").arg(&key).query(&mut redis).unwrap();
        assert!(
            !value
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "{key}"
        );
    }
    let stored = db
        .count(&format!(
            "SELECT count(*) AS n FROM users WHERE email = '{email}' AND password_hash LIKE '$2%'"
        ))
        .await;
    assert_eq!(stored, 1, "a bcrypt hash, nothing else");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_verified_moments_ago_is_not_verified_again_in_this_process() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    // No proof in Redis: what remains is the in-memory memory of a
    // verification.
    let (server, metrics) = serve_with_metrics(&db, &sink, &[("CREDENTIAL_PROOF", "off")]);
    let email = unique_email("recent");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    code_for(&sink, &email);
    let verified = hashes(&metrics, "verify");
    assert_eq!(
        server.activate(&email, "Wr0ng!pass", "0000").await.code(),
        401
    );
    assert_eq!(hashes(&metrics, "verify") - verified, 1.0, "a wrong one");
    // The right password: one verification, then none for its resend and
    // activation within the minute.
    assert_eq!(server.resend(&email, PASSWORD).await.code(), 202);
    assert_eq!(hashes(&metrics, "verify") - verified, 2.0);
    let code = crate::common::email::codes_for(&sink, &email, 2)
        .pop()
        .unwrap();
    assert_eq!(server.activate(&email, PASSWORD, &code).await.code(), 200);
    assert_eq!(hashes(&metrics, "verify") - verified, 2.0, "remembered");
    // Another password is never taken for it.
    assert_eq!(server.resend(&email, "Wr0ng!pass").await.code(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn successful_sign_ins_are_limited_per_address_and_per_client_before_any_bcrypt() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(
        &db,
        &sink,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("SIGN_IN_LIMIT", "3"),
            ("SIGN_IN_PER_IP_LIMIT", "5"),
            ("RESEND_PER_MINUTE_LIMIT", "100"),
            ("RESEND_DAILY_LIMIT", "100"),
        ],
    );
    let resend_from =
        async |client: &str, email: &str| server.resend_from(client, email, PASSWORD).await.pair();
    // An active account: its sign-ins count for it.
    let active = unique_email("signins");
    assert_eq!(server.register(&active, PASSWORD).await.code(), 201);
    let code = code_for(&sink, &active);
    assert_eq!(server.activate(&active, PASSWORD, &code).await.code(), 200);
    let client = crate::common::unique_ip();
    for _ in 0..3 {
        assert_eq!(resend_from(&client, &active).await.0, 409);
    }
    let verified = hashes(&metrics, "verify");
    let (status, body) = resend_from(&crate::common::unique_ip(), &active).await;
    assert_eq!(
        (status, body.as_str()),
        (
            429,
            r#"{"detail":"Too many sign-ins. Please try again later."}"#
        )
    );
    assert_eq!(
        hashes(&metrics, "verify"),
        verified,
        "refused before bcrypt"
    );

    // A pending address's sign-ins count only for the client: one claimant
    // (or its first registrant) signing in again and again spends nothing
    // of the others'.
    let pending = unique_email("signins-pending");
    assert_eq!(server.register(&pending, PASSWORD).await.code(), 201);
    for _ in 0..2 {
        assert_eq!(resend_from(&client, &pending).await.0, 202);
    }
    // The client's own limit (5, three spent above) is reached...
    assert_eq!(resend_from(&client, &pending).await.0, 429);
    // ...and another client signs in to the same address.
    assert_eq!(
        resend_from(&crate::common::unique_ip(), &pending).await.0,
        202
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_401_before_any_limit_and_a_proven_one_is_refused_without_bcrypt() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(
        &db,
        &sink,
        &[
            ("RESEND_PER_MINUTE_LIMIT", "1"),
            // This account's lockout alone (the inbox's budget is `owner`'s).
            ("INBOX_SHORT_CODE_GUESSES_DAILY", "1000"),
        ],
    );
    let email = unique_email("locked-first");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let code = code_for(&sink, &email);
    let wrong = if code == "0000" { "1111" } else { "0000" };
    for _ in 0..5 {
        assert_eq!(server.activate(&email, PASSWORD, wrong).await.code(), 400);
    }
    let verified = hashes(&metrics, "verify");
    // Locked: a wrong password learns nothing of it (401, after bcrypt)...
    assert_eq!(
        server.activate(&email, "Wr0ng!pass", &code).await.code(),
        401
    );
    assert_eq!(hashes(&metrics, "verify") - verified, 1.0);
    // ...the right one, proven at registration, is refused with no bcrypt.
    assert_eq!(server.activate(&email, PASSWORD, &code).await.code(), 429);
    assert_eq!(hashes(&metrics, "verify") - verified, 1.0);

    let other = unique_email("resent-first");
    assert_eq!(server.register(&other, PASSWORD).await.code(), 201);
    code_for(&sink, &other);
    assert_eq!(server.resend(&other, PASSWORD).await.code(), 202);
    let verified = hashes(&metrics, "verify");
    assert_eq!(server.resend(&other, "Wr0ng!pass").await.code(), 401);
    assert_eq!(hashes(&metrics, "verify") - verified, 1.0);
    assert_eq!(server.resend(&other, PASSWORD).await.code(), 429);
    assert_eq!(hashes(&metrics, "verify") - verified, 1.0);
    // An unknown address: its (dummy) verification, the same 401.
    assert_eq!(
        server
            .resend(&unique_email("nobody"), "Wr0ng!pass")
            .await
            .code(),
        401
    );
    assert_eq!(hashes(&metrics, "verify") - verified, 2.0);
}
