//! docs/API.md and docs/LIMITS.md through the HTTP API: every status of the table, the limits,
//! codes, and bad input.

use std::time::Duration;

use activator::address::normalize;
use diesel_async::RunQueryDsl;
use futures_util::future::join_all;
use rocket::http::{ContentType, Header};
use serde_json::json;

use crate::common::{
    PASSWORD, Reply, TestApp, TestDb, active_user, retry_after, settings_for, unique_email,
    users_named, wrong_code,
};
use crate::foundation::PrivateRedis;

// ---- register -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn register_creates_a_pending_account_and_queues_its_email() {
    let app = TestApp::new().await;
    let email = unique_email("register");
    let reply = app.register(&email, PASSWORD).await;
    reply.assert_detail(201, "Activation email sent");
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));

    let users = users_named(&app, &email).await;
    assert_eq!(users.len(), 1);
    assert!(!users[0].is_active);
    let code = app.latest_code(&email).await;
    assert_eq!(code.len(), 4);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM email_outbox").await,
        1
    );

    // The code is stored only as its HMAC under SECRET_KEY.
    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        user_id: i64,
        #[diesel(sql_type = diesel::sql_types::Binary)]
        code_hash: Vec<u8>,
    }
    let mut conn = app.db.connect().await;
    let stored: Stored = diesel::sql_query("SELECT user_id, code_hash FROM activation_codes")
        .get_result(&mut conn)
        .await
        .unwrap();
    let parsed = activator::code::Code::parse(&code, 4).unwrap();
    let user = activator::ids::UserId(stored.user_id);
    let keyed = activator::code::CodeHasher::new(activator::settings::SecretKey::new(
        crate::common::SECRET_KEY,
    ));
    assert!(keyed.verify(user, &parsed, &stored.code_hash));
    let other_key = activator::code::CodeHasher::new(activator::settings::SecretKey::new(
        "some other secret key",
    ));
    assert!(!other_key.verify(user, &parsed, &stored.code_hash));
    assert!(!stored.code_hash.windows(4).any(|w| w == code.as_bytes()));
}

#[tokio::test(flavor = "multi_thread")]
async fn emails_are_trimmed_and_case_insensitive() {
    let app = TestApp::new().await;
    let email = unique_email("Case");
    let shouted = format!("  {}  ", email.to_uppercase());
    app.register(&shouted, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    let normalized = email.to_lowercase();
    assert_eq!(users_named(&app, &normalized).await.len(), 1);
    app.register(&normalized, PASSWORD)
        .await
        .assert_detail(409, "Activation code already issued");
    // Basic auth finds the account whatever the case.
    let code = app.latest_code(&normalized).await;
    app.activate(&email.to_uppercase(), PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_an_active_account_is_409_already_active() {
    let app = TestApp::new().await;
    let email = unique_email("active");
    active_user(&app, &email).await;
    app.register(&email, PASSWORD)
        .await
        .assert_detail(409, "Account already active");
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_simultaneous_registrations_of_one_address_give_one_201() {
    let app = TestApp::new().await;
    let email = unique_email("race");
    let replies = join_all((0..10).map(|_| app.register(&email, PASSWORD))).await;
    let created = replies.iter().filter(|r| r.status.code == 201).count();
    let conflicts = replies
        .iter()
        .filter(|r| {
            r.status.code == 409 && r.json() == json!({"detail": "Activation code already issued"})
        })
        .count();
    assert_eq!((created, conflicts), (1, 9), "{replies:?}");
    assert_eq!(users_named(&app, &email).await.len(), 1);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM email_outbox").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_emails_are_422_at_body_email() {
    let app = TestApp::new().await;
    for email in ["", "plain", "a@b", "a b@example.com", "@example.com"] {
        app.register(email, PASSWORD)
            .await
            .assert_validation(json!(["body", "email"]), "value_error");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_password_rule_is_enforced_with_a_422() {
    let app = TestApp::new().await;
    let long = format!("Aa1!{}", "x".repeat(69));
    for (password, kind) in [
        ("Sh0rt!", "string_too_short"),
        (long.as_str(), "string_too_long"),
        ("With space1!", "value_error"),
        ("nouppercase1!", "value_error"),
        ("NOLOWERCASE1!", "value_error"),
        ("NoDigits!!", "value_error"),
        ("NoSpecial123", "value_error"),
    ] {
        let reply = app.register(&unique_email("pw"), password).await;
        reply.assert_validation(json!(["body", "password"]), kind);
        assert!(!reply.body.contains(password), "a password is never echoed");
    }
    assert_eq!(app.db.count("SELECT count(*) AS n FROM users").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_field_is_reported_at_once() {
    let app = TestApp::new().await;
    let reply = app
        .post_json("/auth/register", &json!({"email": 42}), None)
        .await;
    reply.assert_validation(json!(["body", "email"]), "string_type");
    reply.assert_validation(json!(["body", "password"]), "missing");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_4xx_json_never_5xx() {
    let app = TestApp::new().await;
    let send = async |content_type: Option<ContentType>, body: Vec<u8>| {
        let mut request = app.client.post("/auth/register").body(body);
        if let Some(content_type) = content_type {
            request = request.header(content_type);
        }
        Reply::from(request.dispatch().await).await
    };
    send(Some(ContentType::JSON), b"{\"email\": ".to_vec())
        .await
        .assert_validation(json!(["body", 10]), "json_invalid");
    send(Some(ContentType::JSON), Vec::new())
        .await
        .assert_validation(json!(["body"]), "missing");
    send(Some(ContentType::JSON), b"[1, 2]".to_vec())
        .await
        .assert_validation(json!(["body"]), "model_attributes_type");
    send(Some(ContentType::Plain), b"email=a@b.c".to_vec())
        .await
        .assert_validation(json!(["body"]), "model_attributes_type");
    // Not text in any encoding JSON allows: the original's 400.
    send(Some(ContentType::JSON), vec![0xff, 0xfe, 0x00])
        .await
        .assert_detail(400, "There was an error parsing the body");
    // No Content-Type at all is read as JSON, as FastAPI does.
    let body = json!({"email": unique_email("noct"), "password": PASSWORD}).to_string();
    send(None, body.into_bytes())
        .await
        .assert_detail(201, "Activation email sent");

    let huge = format!("{{\"email\": \"{}\"}}", "a".repeat(40 * 1024));
    send(Some(ContentType::JSON), huge.into_bytes())
        .await
        .assert_detail(413, "Request body too large");
}

// ---- authentication -------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let app = TestApp::new().await;
    let email = unique_email("auth");
    app.register(&email, PASSWORD).await;
    let wrong = app.resend(&email, "Wr0ng!pass").await;
    let unknown = app.resend(&unique_email("nobody"), PASSWORD).await;
    let malformed = app.resend("not-an-email", PASSWORD).await;
    for reply in [&wrong, &unknown, &malformed] {
        reply.assert_detail(401, "Invalid authentication credentials");
        assert_eq!(reply.header("www-authenticate"), Some("Basic"));
    }
    let activate = app.activate(&email, "Wr0ng!pass", "1234").await;
    activate.assert_detail(401, "Invalid authentication credentials");
    assert_eq!(activate.header("www-authenticate"), Some("Basic"));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_garbage_authorization_is_401_json() {
    let app = TestApp::new().await;
    // No header is the same 401 as any other bad credential, as with the
    // original.
    let reply = Reply::from(app.client.post("/auth/resend").dispatch().await).await;
    reply.assert_detail(401, "Invalid authentication credentials");
    assert_eq!(reply.header("www-authenticate"), Some("Basic"));
    for header in [
        "Basic !!!notbase64",
        "Basic bm9jb2xvbg==",
        "Basic /w==",
        "Bearer token",
        "Basic",
    ] {
        let request = app
            .client
            .post("/auth/activate")
            .header(Header::new("Authorization", header));
        let reply = Reply::from(
            request
                .header(ContentType::JSON)
                .body(r#"{"code":"1234"}"#)
                .dispatch()
                .await,
        )
        .await;
        reply.assert_detail(401, "Invalid authentication credentials");
        assert_eq!(reply.header("www-authenticate"), Some("Basic"), "{header}");
    }
}

// ---- resend ---------------------------------------------------------------

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

// ---- activate -------------------------------------------------------------

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
async fn a_successful_activation_clears_the_counters() {
    let app = TestApp::new().await;
    let email = unique_email("reset");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    for _ in 0..3 {
        app.activate(&email, PASSWORD, wrong_code(&code)).await;
    }
    let limiter = activator::limits::Limiter::new(
        activator::redis::RedisConnection::connect(&app.settings.redis_url)
            .await
            .unwrap(),
        app.settings.limits,
    );
    let email = normalize(&email).unwrap();
    assert_eq!(limiter.lock_state(&email).await.unwrap().attempts, 3);
    app.activate(email.as_str(), PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
    let state = limiter.lock_state(&email).await.unwrap();
    assert_eq!((state.attempts, state.locked_for), (0, None));
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

// ---- Redis down: fail closed --------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_down_limited_endpoints_answer_503_json() {
    let mut redis = PrivateRedis::start();
    let db = TestDb::new().await;
    let settings = settings_for(&db, &[("REDIS_URL", &redis.url)]);
    let app = TestApp::on(db, settings).await;
    let email = unique_email("noredis");
    app.register(&email, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    let code = app.latest_code(&email).await;
    redis.stop();

    let resend = app.resend(&email, PASSWORD).await;
    assert_eq!(resend.status.code, 503, "{}", resend.body);
    assert!(resend.json()["detail"].is_string());
    let activate = app.activate(&email, PASSWORD, &code).await;
    assert_eq!(activate.status.code, 503, "{}", activate.body);
    assert!(activate.json()["detail"].is_string());
    // Fail closed: nothing was activated or issued.
    assert!(!users_named(&app, &email.to_lowercase()).await[0].is_active);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM email_outbox").await,
        1
    );
}

// ---- saturation -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_full_hashing_queue_answers_503_instead_of_queueing() {
    let db = TestDb::new().await;
    let settings = settings_for(&db, &[("BCRYPT_COST", "10")]);
    let accounts = activator::accounts::Accounts::build(&settings)
        .await
        .unwrap()
        // One hash at a time and room for one waiter.
        .with_hasher(activator::password::Hasher::with_concurrency(10, 1, 2, 100).unwrap());
    let client = rocket::local::asynchronous::Client::tracked(activator::rocket(
        activator::figment().merge(("log_level", "off")),
        accounts,
        crate::common::locales(&settings),
        settings.network.clone(),
    ))
    .await
    .unwrap();
    let replies = join_all((0..8).map(|i| {
        let body =
            json!({"email": unique_email(&format!("busy{i}")), "password": PASSWORD}).to_string();
        let client = &client;
        async move {
            Reply::from(
                client
                    .post("/auth/register")
                    .header(ContentType::JSON)
                    .body(body)
                    .dispatch()
                    .await,
            )
            .await
        }
    }))
    .await;
    let busy: Vec<_> = replies.iter().filter(|r| r.status.code == 503).collect();
    assert!(!busy.is_empty(), "{replies:?}");
    for reply in &busy {
        assert!(reply.json()["detail"].is_string());
        assert!(reply.header("retry-after").is_some());
    }
    assert!(
        replies
            .iter()
            .all(|r| r.status.code == 201 || r.status.code == 503),
        "{replies:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_stored_under_older_validation_rules_can_still_sign_in() {
    let app = TestApp::new().await;
    // `localhost` has no dot: today's rules refuse it at registration.
    let unique = unique_email("legacy");
    let email = &format!("{}@localhost", unique.split_once('@').unwrap().0);
    assert!(normalize(email).is_err());
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let mut conn = app.db.connect().await;
    diesel::sql_query("INSERT INTO users (email, password_hash) VALUES ($1, $2)")
        .bind::<diesel::sql_types::Text, _>(email)
        .bind::<diesel::sql_types::Text, _>(hash)
        .execute(&mut conn)
        .await
        .unwrap();
    app.resend(&email.to_uppercase(), PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    let code = app.latest_code(email).await;
    app.activate(email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}
