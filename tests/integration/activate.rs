//! Activating: `POST /auth/activate` with the emailed code (docs/API.md
//! "POST /auth/activate", "Activation codes"). The right, a wrong, an
//! expired and a superseded code, and an account already active; malformed
//! codes with the original's 422 bodies; codes typed in other scripts'
//! digits; longer codes (`CODE_LENGTH`). Then guessing (docs/LIMITS.md):
//! the lockout ("Activation lockout"), the registration's failure budget
//! ("Activation failure budget"), failures per client across accounts
//! ("Failed activations per client"), and what a success clears ("What
//! clears the counters"), and races with a resend or a fresh registration
//! that must never answer 500.

use std::time::Duration;

use activator::address::normalize;
use futures_util::future::join_all;
use serde_json::json;

use crate::common::Api;
use crate::common::Server;
use crate::common::TestDb;
use crate::common::email::code_for;
use crate::common::{
    MailSink, PASSWORD, TestApp, assert_limited, exactly, exactly_limited, failed_activations,
    pending, retry_after, unique_email, unique_ip, users_named, wrong_code,
};

const ATTEMPTS: &str = "Too many activation attempts. Please try again later.";

// ---- the code ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_right_code_activates_in_one_transaction() {
    let app = TestApp::new().await;
    let email = unique_email("activate");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
    assert!(users_named(&app, &email).await[0].is_active);
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM activation_codes WHERE used_at IS NOT NULL")
            .await,
        1
    );
    // Single use: the account is active now, and, as with the original, an
    // active account has no valid code.
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(400, "Invalid or expired activation code");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_code_is_400() {
    let app = TestApp::new().await;
    let email = unique_email("wrong");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    app.activate(&email, PASSWORD, wrong_code(&code))
        .await
        .assert_detail(400, "Invalid or expired activation code");
    assert!(!users_named(&app, &email).await[0].is_active);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_code_is_400() {
    let app = TestApp::with(&[("ACTIVATION_CODE_TTL_SECONDS", "1")]).await;
    let email = unique_email("expired");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(400, "Invalid or expired activation code");
}

#[tokio::test(flavor = "multi_thread")]
async fn activating_an_active_account_is_400_with_any_code() {
    let app = TestApp::new().await;
    let (email, code) = pending(&app).await;
    exactly(
        &app.activate(&email, PASSWORD, &code).await,
        200,
        r#"{"detail":"Account activated"}"#,
    );
    for code in [code.as_str(), wrong_code(&code)] {
        exactly(
            &app.activate(&email, PASSWORD, code).await,
            400,
            r#"{"detail":"Invalid or expired activation code"}"#,
        );
    }
}

// ---- the code's form --------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_code_is_422() {
    let app = TestApp::new().await;
    let email = unique_email("badcode");
    app.register(&email, PASSWORD).await;
    for body in [
        json!({"code": "12a4"}),
        json!({"code": "12345"}),
        json!({"code": 1234}),
        json!({}),
    ] {
        let reply = app
            .post_json("/auth/activate", &body, Some((&email, PASSWORD)))
            .await;
        assert_eq!(reply.status.code, 422, "{body}: {}", reply.body);
        assert_eq!(reply.json()["detail"][0]["loc"], json!(["body", "code"]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_of_the_wrong_length_is_checked_before_the_pattern() {
    let app = TestApp::new().await;
    let (email, _) = pending(&app).await;
    for (code, body) in [
        (
            "123",
            r#"{"detail":[{"type":"string_too_short","loc":["body","code"],"msg":"String should have at least 4 characters","input":"123","ctx":{"min_length":4}}]}"#,
        ),
        (
            "12345",
            r#"{"detail":[{"type":"string_too_long","loc":["body","code"],"msg":"String should have at most 4 characters","input":"12345","ctx":{"max_length":4}}]}"#,
        ),
        (
            " 123 ",
            r#"{"detail":[{"type":"string_too_long","loc":["body","code"],"msg":"String should have at most 4 characters","input":" 123 ","ctx":{"max_length":4}}]}"#,
        ),
    ] {
        exactly(&app.activate(&email, PASSWORD, code).await, 422, body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_that_is_not_digits_is_a_pattern_mismatch() {
    let app = TestApp::new().await;
    let (email, _) = pending(&app).await;
    exactly(
        &app.activate(&email, PASSWORD, "abcd").await,
        422,
        r#"{"detail":[{"type":"string_pattern_mismatch","loc":["body","code"],"msg":"String should match pattern '^\\d{4}$'","input":"abcd","ctx":{"pattern":"^\\d{4}$"}}]}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn codes_in_other_unicode_digits_pass_validation() {
    let app = TestApp::new().await;
    let (email, code) = pending(&app).await;
    for other in ["１２３４", "١٢٣٤", "𝟏𝟐𝟑𝟒"] {
        // A wrong code, unless it is by chance the right one.
        let reply = app.activate(&email, PASSWORD, other).await;
        if code != "1234" {
            exactly(
                &reply,
                400,
                r#"{"detail":"Invalid or expired activation code"}"#,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_typed_in_other_digits_activates() {
    let app = TestApp::new().await;
    let (email, code) = pending(&app).await;
    let arabic_indic: String = code
        .chars()
        .map(|c| char::from_u32(0x0660 + c.to_digit(10).unwrap()).unwrap())
        .collect();
    exactly(
        &app.activate(&email, PASSWORD, &arabic_indic).await,
        200,
        r#"{"detail":"Account activated"}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn code_length_shapes_codes_validation_and_the_openapi_pattern() {
    let app = TestApp::with(&[("CODE_LENGTH", "6")]).await;
    let email = unique_email("six");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    assert_eq!(code.len(), 6);
    let reply = app.activate(&email, PASSWORD, &code[..4]).await;
    reply.assert_validation(json!(["body", "code"]), "string_too_short");
    assert!(
        reply.body.contains("at least 6 characters"),
        "{}",
        reply.body
    );
    let reply = app.activate(&email, PASSWORD, "12345a").await;
    assert!(reply.body.contains(r"'^\\d{6}$'"), "{}", reply.body);
    let doc = app.get("/openapi.json").await.json();
    let schema = &doc["components"]["schemas"]["ActivateRequest"]["properties"]["code"];
    // Or the 8-digit codes of an inbox past its guessing budget.
    assert_eq!(schema["pattern"], r"^(\d{6}|\d{8})$");
    assert_eq!(
        (schema["minLength"].as_u64(), schema["maxLength"].as_u64()),
        (Some(6), Some(8))
    );

    let sink = MailSink::start();
    app.deliver(&sink).await;
    assert!(
        sink.delivered()[0]["body"]
            .as_str()
            .unwrap()
            .contains(&code)
    );
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

// ---- lockout ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn five_failures_lock_the_account_and_the_next_attempt_is_429() {
    let app = TestApp::new().await;
    let email = unique_email("lock");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    for _ in 0..5 {
        app.activate(&email, PASSWORD, wrong_code(&code))
            .await
            .assert_detail(400, "Invalid or expired activation code");
    }
    // Even the right code is refused during the lockout.
    let locked = app.activate(&email, PASSWORD, &code).await;
    assert_eq!(locked.status.code, 429, "{}", locked.body);
    assert!(locked.json()["detail"].is_string());
    let wait = retry_after(&locked);
    assert!((890..=900).contains(&wait), "Retry-After {wait}");
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_during_a_lockout_is_the_originals_429() {
    let app = TestApp::new().await;
    let (email, code) = pending(&app).await;
    for _ in 0..5 {
        app.activate(&email, PASSWORD, wrong_code(&code)).await;
    }
    exactly_limited(
        &app.activate(&email, PASSWORD, &code).await,
        "Too many activation attempts. Please try again later.",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lockout_expires_and_then_the_right_code_works() {
    let app = TestApp::with(&[
        ("ACTIVATION_ATTEMPT_LIMIT", "2"),
        ("ACTIVATION_LOCK_SECONDS", "1"),
    ])
    .await;
    let email = unique_email("lock-expiry");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    for _ in 0..2 {
        app.activate(&email, PASSWORD, wrong_code(&code))
            .await
            .assert_detail(400, "Invalid or expired activation code");
    }
    assert_eq!(app.activate(&email, PASSWORD, &code).await.status.code, 429);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_outside_the_window_do_not_count() {
    let app = TestApp::with(&[
        ("ACTIVATION_ATTEMPT_LIMIT", "2"),
        ("ACTIVATION_ATTEMPT_WINDOW_SECONDS", "1"),
    ])
    .await;
    let email = unique_email("window");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    app.activate(&email, PASSWORD, wrong_code(&code))
        .await
        .assert_detail(400, "Invalid or expired activation code");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.activate(&email, PASSWORD, wrong_code(&code))
        .await
        .assert_detail(400, "Invalid or expired activation code");
    // Two failures in all, but only one in the current window: not locked.
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_guesses_cannot_exceed_the_attempt_limit() {
    let app = TestApp::new().await;
    let email = unique_email("burst");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    let wrong = wrong_code(&code);
    let replies = join_all((0..12).map(|_| app.activate(&email, PASSWORD, wrong))).await;
    let checked = replies.iter().filter(|r| r.status.code == 400).count();
    let refused = replies.iter().filter(|r| r.status.code == 429).count();
    assert_eq!((checked, refused), (5, 7), "{replies:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successful_activation_clears_the_counters() {
    let app = TestApp::new().await;
    let email = unique_email("reset");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    for _ in 0..3 {
        app.activate(&email, PASSWORD, wrong_code(&code)).await;
    }
    let limiter = app.accounts.limiter();
    let email = normalize(&email).unwrap();
    assert_eq!(limiter.lock_state(&email).await.unwrap().attempts, 3);
    app.activate(email.as_str(), PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
    let state = limiter.lock_state(&email).await.unwrap();
    assert_eq!((state.attempts, state.locked_for), (0, None));
}

// ---- the failure budget and guessing per client -----------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_failure_budget_outlives_lockouts_and_new_codes_until_unlock() {
    let app = TestApp::with(&[
        ("ACTIVATION_MAX_FAILURES", "3"),
        ("ACTIVATION_ATTEMPT_LIMIT", "2"),
        ("ACTIVATION_LOCK_SECONDS", "1"),
        ("RESEND_PER_MINUTE_LIMIT", "100"),
    ])
    .await;
    let email = unique_email("budget");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    for _ in 0..2 {
        app.activate(&email, PASSWORD, wrong_code(&code))
            .await
            .assert_detail(400, "Invalid or expired activation code");
    }
    // The window's lockout...
    assert_limited(&app.activate(&email, PASSWORD, &code).await, ATTEMPTS);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // ...ends, and a new code does not renew the budget.
    app.resend(&email, PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    let code = app.latest_code(&email).await;
    app.activate(&email, PASSWORD, wrong_code(&code))
        .await
        .assert_detail(400, "Invalid or expired activation code");
    assert_eq!(failed_activations(&app).await, 3);
    // Spent: even the right code is refused, for the registration's life.
    let wait = assert_limited(&app.activate(&email, PASSWORD, &code).await, ATTEMPTS);
    assert!(wait > 86_000, "until the registration expires: {wait}");

    let shown = crate::common::server::run(
        &app.db.url,
        &[("ACTIVATION_MAX_FAILURES", "3")],
        &["user", "show", &email],
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("0 failed activation(s) left: spent"),
        "{shown}"
    );

    let unlocked = crate::common::server::run(&app.db.url, &[], &["user", "unlock", &email]);
    assert!(unlocked.status.success());
    assert_eq!(failed_activations(&app).await, 0);
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_guesses_cannot_overspend_the_budget() {
    // The account's budget alone (the inbox's is tested in `owner`).
    let app = TestApp::with(&[
        ("ACTIVATION_MAX_FAILURES", "3"),
        ("ACTIVATION_ATTEMPT_LIMIT", "1000"),
        ("INBOX_SHORT_CODE_GUESSES_DAILY", "1000"),
    ])
    .await;
    let email = unique_email("budget-race");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    let replies =
        join_all((0..20).map(|_| app.activate(&email, PASSWORD, wrong_code(&code)))).await;
    let statuses: Vec<u16> = replies.iter().map(|reply| reply.status.code).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 400).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        17,
        "{statuses:?}"
    );
    assert_eq!(failed_activations(&app).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_guessing_across_many_accounts_is_limited_by_its_ip() {
    let app = TestApp::with(&[
        ("ACTIVATION_FAILURE_PER_IP_LIMIT", "4"),
        ("ACTIVATION_FAILURE_PER_IP_WINDOW_SECONDS", "60"),
    ])
    .await;
    let (guesser, neighbour) = (unique_ip(), unique_ip());
    let mut accounts = Vec::new();
    for i in 0..3 {
        let email = unique_email(&format!("spread{i}"));
        app.register(&email, PASSWORD).await;
        let code = app.latest_code(&email).await;
        accounts.push((email, code));
    }
    // Two wrong guesses on each of two accounts: each far from its own
    // budget, but the client's share is spent.
    for (email, code) in &accounts[..2] {
        for _ in 0..2 {
            app.activate_from(&guesser, email, PASSWORD, wrong_code(code))
                .await
                .assert_detail(400, "Invalid or expired activation code");
        }
    }
    let (email, code) = &accounts[2];
    assert_limited(
        &app.activate_from(&guesser, email, PASSWORD, wrong_code(code))
            .await,
        ATTEMPTS,
    );
    // Refused before the code is looked at: even the right one waits.
    assert_limited(
        &app.activate_from(&guesser, email, PASSWORD, code).await,
        ATTEMPTS,
    );
    let spent = app
        .db
        .count("SELECT sum(failed_activations)::bigint AS n FROM users")
        .await;
    assert_eq!(spent, 4);
    // Another client is not held back, and a success costs nothing.
    app.activate_from(&neighbour, email, PASSWORD, code)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_racing_a_resend_never_answers_500() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = Server::start(
        &db.url,
        &[
            ("RESEND_PER_MINUTE_LIMIT", "100"),
            ("EMAIL_API_URL", sink.url.as_str()),
            // Races of one client: its own limits are not what is tested.
            ("RATE_LIMIT_EXEMPT", "127.0.0.1/32"),
        ],
    );
    // Either wins, and the other answers as it would after it: the
    // activation first (200, then the resend finds the account active:
    // 409), or the resend first (202: the code typed was replaced, 400).
    // Rounds until each order has won once, so the race did happen.
    let mut seen = std::collections::BTreeMap::new();
    for round in 0..80 {
        let email = unique_email(&format!("race{round}"));
        assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
        let code = code_for(&sink, &email);
        let (activated, resent) = tokio::join!(
            server.activate(&email, PASSWORD, &code),
            server.resend(&email, PASSWORD)
        );
        let pair = (activated.code(), resent.code());
        assert!(
            matches!(pair, (200, 409) | (400, 202)),
            "round {round}: activate, resend {pair:?}"
        );
        *seen.entry(pair).or_insert(0) += 1;
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "one order only: {seen:?}");
    let log = server.stderr();
    assert!(!log.contains("deadlock detected"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_racing_a_fresh_registration_at_expiry_never_answers_500() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    // One client races itself: it is exempt, so its own limits (the hash
    // queue's places) do not decide what the race does.
    let server = Server::start(
        &db.url,
        &[
            ("PENDING_ACCOUNT_TTL_SECONDS", "1"),
            ("EMAIL_API_URL", sink.url.as_str()),
            ("RATE_LIMIT_EXEMPT", "127.0.0.1/32"),
        ],
    );
    let mut pending = Vec::new();
    for round in 0..10 {
        let email = unique_email(&format!("expiry{round}"));
        assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
        pending.push(email);
    }
    let pending: Vec<(String, String)> = pending
        .into_iter()
        .map(|email| {
            let code = code_for(&sink, &email);
            (email, code)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let races = pending.iter().map(|(email, code)| async {
        let (activated, registered) = tokio::join!(
            server.activate(email, PASSWORD, code),
            server.register(email, "An0ther!pass")
        );
        // The expired registration signs in no more, before or after the
        // new one replaces it; the new one starts afresh.
        assert_eq!(activated.code(), 401, "activate {activated:?}");
        assert_eq!(registered.code(), 201, "register {registered:?}");
    });
    join_all(races).await;
    let log = server.stderr();
    assert!(!log.contains("deadlock detected"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_activations_of_an_active_account_lock_it_like_any_other() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = Server::start(&db.url, &[("EMAIL_API_URL", sink.url.as_str())]);
    let email = unique_email("active");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let code = code_for(&sink, &email);
    assert_eq!(server.activate(&email, PASSWORD, &code).await.code(), 200);
    for _ in 0..5 {
        let (status, body) = server
            .post_json(
                "/auth/activate",
                &json!({"code": code}),
                Some((&email, PASSWORD)),
            )
            .await
            .pair();
        assert_eq!(
            (status, body.as_str()),
            (400, r#"{"detail":"Invalid or expired activation code"}"#)
        );
    }
    let reply = server.activate(&email, PASSWORD, &code).await;
    exactly_limited(
        &reply,
        "Too many activation attempts. Please try again later.",
    );
    assert!((1..=900).contains(&retry_after(&reply)), "{reply:?}");
}
