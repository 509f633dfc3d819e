//! Asking for a new code: `POST /auth/resend` (docs/API.md). The 202 and the
//! code it supersedes, the 409 for an active account, the per-minute and
//! daily limits with the original's 429 bodies (docs/LIMITS.md "Resends",
//! "Retry-After"), and simultaneous resends.

use futures_util::future::join_all;

use crate::common::Api;
use crate::common::{
    PASSWORD, TestApp, active_user, exactly, exactly_limited, pending, retry_after, unique_email,
};

#[tokio::test(flavor = "multi_thread")]
async fn resend_issues_a_new_code_that_supersedes_the_old_one() {
    let app = TestApp::new().await;
    let email = unique_email("resend");
    app.register(&email, PASSWORD).await;
    let first = app.latest_code(&email).await;
    app.resend(&email, PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    let second = app.latest_code(&email).await;
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM email_outbox").await,
        2
    );
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM activation_codes WHERE used_at IS NULL AND superseded_at IS NULL").await,
        1
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM activation_codes WHERE superseded_at IS NOT NULL")
            .await,
        1
    );
    // Codes are random: on the 1-in-10,000 draw of the same code twice the
    // old one cannot be told apart by trying it.
    if first != second {
        app.activate(&email, PASSWORD, &first)
            .await
            .assert_detail(400, "Invalid or expired activation code");
    }
    app.activate(&email, PASSWORD, &second)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_for_an_active_account_is_409() {
    let app = TestApp::new().await;
    let email = unique_email("resend-active");
    active_user(&app, &email).await;
    app.resend(&email, PASSWORD)
        .await
        .assert_detail(409, "Account already active");
}

// ---- limits -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn resend_twice_within_a_minute_is_rate_limited() {
    let app = TestApp::new().await;
    let email = unique_email("resend-minute");
    app.register(&email, PASSWORD).await;
    app.resend(&email, PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    let limited = app.resend(&email, PASSWORD).await;
    assert_eq!(limited.status.code, 429, "{}", limited.body);
    assert!(limited.json()["detail"].is_string());
    assert!((1..=60).contains(&retry_after(&limited)), "{limited:?}");
    // A refused resend issues nothing.
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM email_outbox").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_within_the_minute_is_the_originals_429() {
    let app = TestApp::new().await;
    let (email, _) = pending(&app).await;
    exactly(
        &app.resend(&email, PASSWORD).await,
        202,
        r#"{"detail":"Activation email resent"}"#,
    );
    exactly_limited(
        &app.resend(&email, PASSWORD).await,
        "Too many resend requests. Please wait before trying again.",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_resend_limit_holds_when_the_minute_limit_does_not() {
    let app = TestApp::with(&[
        ("RESEND_PER_MINUTE_LIMIT", "100"),
        ("RESEND_DAILY_LIMIT", "2"),
    ])
    .await;
    let email = unique_email("resend-daily");
    app.register(&email, PASSWORD).await;
    app.resend(&email, PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    app.resend(&email, PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    let limited = app.resend(&email, PASSWORD).await;
    assert_eq!(limited.status.code, 429);
    assert!(retry_after(&limited) > 86_000, "{limited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_past_the_daily_cap_is_the_originals_429() {
    let app = TestApp::with(&[
        ("RESEND_PER_MINUTE_LIMIT", "100"),
        ("RESEND_DAILY_LIMIT", "2"),
    ])
    .await;
    let (email, _) = pending(&app).await;
    for _ in 0..2 {
        app.resend(&email, PASSWORD)
            .await
            .assert_detail(202, "Activation email resent");
    }
    exactly_limited(
        &app.resend(&email, PASSWORD).await,
        "Daily resend limit reached. Please try again later.",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_simultaneous_resends_give_exactly_one_202() {
    let app = TestApp::new().await;
    let email = unique_email("resend-race");
    app.register(&email, PASSWORD).await;
    let replies = join_all((0..10).map(|_| app.resend(&email, PASSWORD))).await;
    let accepted = replies.iter().filter(|r| r.status.code == 202).count();
    let limited = replies
        .iter()
        .filter(|r| r.status.code == 429 && r.header("retry-after").is_some())
        .count();
    assert_eq!((accepted, limited), (1, 9), "{replies:?}");
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM email_outbox").await,
        2
    );
}
