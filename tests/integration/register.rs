//! Registering: `POST /auth/register` (docs/API.md). The 201 and the email it
//! queues, the 409s, one account per address whatever its letter case,
//! Unicode form or the number of simultaneous attempts; passwords, addresses
//! and malformed bodies refused with the 422 (or 400) the original answered,
//! body for body (docs/API.md "422 validation errors", "Password policy",
//! "Email addresses", "Request bodies"); pending registrations that expire
//! so a squatted address is freed (docs/API.md "Pending registrations",
//! docs/LIMITS.md "Pending registration expiry"); and the limits on
//! registering (docs/LIMITS.md "Registrations per client", "Password-hash
//! queue", "Emails per mailbox").

use std::time::Duration;

use diesel_async::RunQueryDsl;
use futures_util::future::join_all;
use rocket::http::ContentType;
use serde_json::json;

use crate::common::Api;
use crate::common::{
    MailSink, PASSWORD, Reply, TestApp, TestDb, active_user, assert_limited, exactly,
    failed_activations, settings_for, unique_email, unique_ip, users_named, wrong_code,
};

/// Posts `body` as JSON to `/auth/register`, as it is.
async fn register_raw(app: &TestApp, body: &str) -> Reply {
    Reply::from(
        app.client
            .post("/auth/register")
            .header(ContentType::JSON)
            .body(body)
            .dispatch()
            .await,
    )
    .await
}

// ---- a new account ----------------------------------------------------------

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
async fn the_same_address_in_other_letter_case_is_the_same_account() {
    let app = TestApp::new().await;
    let email = unique_email("Case");
    app.register(&email, PASSWORD).await;
    exactly(
        &app.register(&email.to_uppercase(), PASSWORD).await,
        409,
        r#"{"detail":"Activation code already issued"}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fullwidth_and_unicode_domains_are_one_account_and_mailed_in_ascii() {
    let app = TestApp::new().await;
    let user = unique_email("idna").split_once('@').unwrap().0.to_owned();
    app.register(&format!("{user}@ｅｘａｍｐｌｅ.com"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    app.register(&format!("{user}@example.com"), PASSWORD)
        .await
        .assert_detail(409, "Activation code already issued");
    app.register(&format!("{user}@EXAMPLE.com"), PASSWORD)
        .await
        .assert_detail(409, "Activation code already issued");
    app.register(&format!("{user}@bücher.de"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    app.resend(&format!("{user}@xn--bcher-kva.de"), PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");

    let sink = MailSink::start();
    app.deliver(&sink).await;
    let mut recipients: Vec<String> = sink
        .delivered()
        .iter()
        .map(|message| message["to"].as_str().unwrap().to_owned())
        .collect();
    recipients.sort();
    assert_eq!(
        recipients,
        [
            format!("{user}@example.com"),
            format!("{user}@xn--bcher-kva.de")
        ],
        "each message once (the resend superseded the first code's)"
    );
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
    // Ten clients at once (one client's places in the hash queue are few).
    let clients: Vec<String> = (0..10).map(crate::common::ipv4).collect();
    let replies = join_all(
        clients
            .iter()
            .map(|client| app.register_from(client, &email, PASSWORD)),
    )
    .await;
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

// ---- pending registrations: squatting and expiry ----------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_pending_registration_starts_afresh_for_its_new_owner() {
    let app = TestApp::with(&[("PENDING_ACCOUNT_TTL_SECONDS", "1")]).await;
    let email = unique_email("squat");
    let squatter = "Squ4tter!pass";
    app.register(&email, squatter)
        .await
        .assert_detail(201, "Activation email sent");
    let old_code = app.latest_code(&email).await;
    app.activate(&email, squatter, wrong_code(&old_code)).await;
    app.register(&email, PASSWORD)
        .await
        .assert_detail(409, "Activation code already issued");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.register(&email, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM users").await, 1);
    assert_eq!(failed_activations(&app).await, 0, "a new budget");
    // The new password, the new code; the old ones are void.
    app.activate(&email, squatter, &old_code)
        .await
        .assert_detail(401, "Invalid authentication credentials");
    let code = app.latest_code(&email).await;
    if code != old_code {
        app.activate(&email, PASSWORD, &old_code)
            .await
            .assert_detail(400, "Invalid or expired activation code");
    }
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
    // An active account never expires.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.register(&email, squatter)
        .await
        .assert_detail(409, "Account already active");
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_registrations_of_an_expired_address_have_exactly_one_winner() {
    let app = TestApp::with(&[
        ("PENDING_ACCOUNT_TTL_SECONDS", "1"),
        // Each of the racers counts an email before one wins.
        ("EMAIL_PER_MAILBOX_DAILY_LIMIT", "100"),
    ])
    .await;
    let email = unique_email("squat-race");
    app.register(&email, "Squ4tter!pass").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let clients: Vec<String> = (0..10).map(crate::common::ipv4).collect();
    let replies = join_all(
        clients
            .iter()
            .map(|client| app.register_from(client, &email, PASSWORD)),
    )
    .await;
    let created = replies
        .iter()
        .filter(|reply| reply.status.code == 201)
        .count();
    let refused = replies
        .iter()
        .filter(|reply| reply.status.code == 409)
        .count();
    assert_eq!((created, refused), (1, 9), "{replies:?}");
    // One live code, for the winner.
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM activation_codes WHERE used_at IS NULL AND superseded_at IS NULL")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_pending_ttl_of_zero_a_registration_never_expires() {
    let app = TestApp::with(&[("PENDING_ACCOUNT_TTL_SECONDS", "0")]).await;
    let email = unique_email("forever");
    app.register(&email, PASSWORD).await;
    let mut conn = app.db.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE users SET created_at = now() - interval '400 days'"),
        &mut conn,
    )
    .await
    .unwrap();
    app.register(&email, PASSWORD)
        .await
        .assert_detail(409, "Activation code already issued");
}

// ---- passwords --------------------------------------------------------------

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
async fn a_password_of_0_to_7_characters_is_string_too_short() {
    let app = TestApp::new().await;
    for password in ["", "Ab1!", "Ab1!xyz"] {
        exactly(
            &app.register(&unique_email("short"), password).await,
            422,
            r#"{"detail":[{"type":"string_too_short","loc":["body","password"],"msg":"String should have at least 8 characters","ctx":{"min_length":8}}]}"#,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_over_72_characters_is_string_too_long() {
    let app = TestApp::new().await;
    exactly(
        &app.register(&unique_email("long"), &format!("Aa1!{}", "x".repeat(69)))
            .await,
        422,
        r#"{"detail":[{"type":"string_too_long","loc":["body","password"],"msg":"String should have at most 72 characters","ctx":{"max_length":72}}]}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_over_72_bytes_is_refused_not_truncated() {
    let app = TestApp::new().await;
    let password = format!("Aa1!{}", "é".repeat(68));
    assert_eq!((password.chars().count(), password.len()), (72, 140));
    exactly(
        &app.register(&unique_email("bytes"), &password).await,
        422,
        r#"{"detail":[{"type":"string_too_long","loc":["body","password"],"msg":"String should have at most 72 bytes","ctx":{"max_length":72}}]}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_lacking_a_class_is_the_validators_value_error() {
    let app = TestApp::new().await;
    for password in [
        "nouppercase1!",
        "NOLOWERCASE1!",
        "NoDigits!!",
        "NoSpecial123",
    ] {
        exactly(
            &app.register(&unique_email("classes"), password).await,
            422,
            r#"{"detail":[{"type":"value_error","loc":["body","password"],"msg":"Value error, Password must include at least one lowercase letter, one uppercase letter, one digit, and one special character","ctx":{"error":{}}}]}"#,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_with_a_leading_or_trailing_space_says_so() {
    let app = TestApp::new().await;
    for password in [" Secr3t!pass", "Secr3t!pass ", "\tsecretpass"] {
        exactly(
            &app.register(&unique_email("ends"), password).await,
            422,
            r#"{"detail":[{"type":"value_error","loc":["body","password"],"msg":"Value error, Password cannot contain leading or trailing spaces","ctx":{"error":{}}}]}"#,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_with_whitespace_inside_says_so() {
    let app = TestApp::new().await;
    for password in [
        "Secr3t! pass",
        "Secr3t!\tpass",
        "Secr3t!\u{2003}pass",
        "no digits here",
    ] {
        exactly(
            &app.register(&unique_email("inside"), password).await,
            422,
            r#"{"detail":[{"type":"value_error","loc":["body","password"],"msg":"Value error, Password cannot contain whitespace characters","ctx":{"error":{}}}]}"#,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_is_never_echoed() {
    let app = TestApp::new().await;
    let password = "Secr3t!pass".repeat(7);
    let reply = app.register(&unique_email("echo"), &password).await;
    assert_eq!(reply.status.code, 422);
    assert!(!reply.body.contains("Secr3t"), "{}", reply.body);
    // Not inside an echoed body either.
    let reply = register_raw(&app, r#"{"password":"Secr3t!pass"}"#).await;
    exactly(
        &reply,
        422,
        r#"{"detail":[{"type":"missing","loc":["body","email"],"msg":"Field required","input":{}}]}"#,
    );
}

// ---- addresses --------------------------------------------------------------

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
async fn invalid_addresses_carry_email_validators_sentence_as_reason() {
    let app = TestApp::new().await;
    let long = format!("{}@example.com", "x".repeat(300));
    for (email, reason) in [
        (
            "no-at-sign.example.com",
            "An email address must have an @-sign.",
        ),
        (
            "a@localhost",
            "The part after the @-sign is not valid. It should have a period.",
        ),
        (
            "a b@example.com",
            "The email address contains invalid characters before the @-sign: SPACE.",
        ),
        (
            "a@example.com.",
            "An email address cannot end with a period.",
        ),
        (
            ".a@example.com",
            "An email address cannot start with a period.",
        ),
        (
            long.as_str(),
            "The email address is too long (58 characters too many).",
        ),
        (
            "a@example.test",
            "The part after the @-sign is a special-use or reserved name that cannot be used with email.",
        ),
    ] {
        let expected = json!({"detail": [{
            "type": "value_error",
            "loc": ["body", "email"],
            "msg": format!("value is not a valid email address: {reason}"),
            "input": email,
            "ctx": {"reason": reason},
        }]});
        exactly(
            &app.register(email, PASSWORD).await,
            422,
            &expected.to_string(),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_part_over_64_characters_is_refused() {
    let app = TestApp::new().await;
    let email = format!("{}@example.com", "a".repeat(65));
    let reason = "The email address is too long before the @-sign (1 character too many).";
    let expected = json!({"detail": [{
        "type": "value_error",
        "loc": ["body", "email"],
        "msg": format!("value is not a valid email address: {reason}"),
        "input": email,
        "ctx": {"reason": reason},
    }]});
    exactly(
        &app.register(&email, PASSWORD).await,
        422,
        &expected.to_string(),
    );
}

// ---- bodies -----------------------------------------------------------------

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
async fn every_bad_field_is_listed_in_the_models_order() {
    let app = TestApp::new().await;
    exactly(
        &register_raw(&app, r#"{"password":"short","email":42}"#).await,
        422,
        r#"{"detail":[{"type":"string_type","loc":["body","email"],"msg":"Input should be a valid string","input":42},{"type":"string_too_short","loc":["body","password"],"msg":"String should have at least 8 characters","ctx":{"min_length":8}}]}"#,
    );
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

#[tokio::test(flavor = "multi_thread")]
async fn a_null_body_is_missing_at_body_with_input_null() {
    let app = TestApp::new().await;
    let missing =
        r#"{"detail":[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]}"#;
    exactly(&register_raw(&app, "null").await, 422, missing);
    // No body at all is the same.
    exactly(&register_raw(&app, "").await, 422, missing);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_field_echoes_the_whole_body() {
    let app = TestApp::new().await;
    exactly(
        &register_raw(&app, r#"{"email":"a@example.com","extra":[1,2.5]}"#).await,
        422,
        r#"{"detail":[{"type":"missing","loc":["body","password"],"msg":"Field required","input":{"email":"a@example.com","extra":[1,2.5]}}]}"#,
    );
    // Keys keep the order they were sent in, as Python's dicts do.
    exactly(
        &register_raw(&app, r#"{"zeta":1,"email":"a@example.com","alpha":2}"#).await,
        422,
        r#"{"detail":[{"type":"missing","loc":["body","password"],"msg":"Field required","input":{"zeta":1,"email":"a@example.com","alpha":2}}]}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_json_is_json_invalid_at_its_character_offset() {
    let app = TestApp::new().await;
    exactly(
        &register_raw(&app, "{\"email\":\"a@example.com\",\n \"password\":\"x\",}").await,
        422,
        r#"{"detail":[{"type":"json_invalid","loc":["body",42],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting property name enclosed in double quotes"}}]}"#,
    );
    // Characters, not bytes: "ä😀" is 2 characters and 6 bytes.
    exactly(
        &register_raw(&app, r#"["ä😀",x]"#).await,
        422,
        r#"{"detail":[{"type":"json_invalid","loc":["body",6],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting value"}}]}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_utf8_is_a_400() {
    let app = TestApp::new().await;
    for body in [&b"\xff\xfe\x00"[..], b"{\"email\":\"\xe9\"}", b"\xc3"] {
        let reply = Reply::from(
            app.client
                .post("/auth/register")
                .header(ContentType::JSON)
                .body(body)
                .dispatch()
                .await,
        )
        .await;
        exactly(
            &reply,
            400,
            r#"{"detail":"There was an error parsing the body"}"#,
        );
    }
}

// ---- limits -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn registrations_are_limited_per_client_ip() {
    let app = TestApp::with(&[
        ("REGISTER_PER_IP_LIMIT", "3"),
        ("REGISTER_PER_IP_WINDOW_SECONDS", "60"),
    ])
    .await;
    // An IPv6 client is its /64: other addresses in it are the same client.
    let same_64 = |ip: &str, host: u16| {
        let prefix: Vec<&str> = ip.split(':').take(4).collect();
        format!("{}::{host:x}", prefix.join(":"))
    };
    let (flooder, neighbour) = (unique_ip(), unique_ip());
    for i in 0..3u16 {
        // Each from another address of the flooder's /64.
        app.register_from(
            &same_64(&flooder, i + 2),
            &unique_email(&format!("flood{i}")),
            PASSWORD,
        )
        .await
        .assert_detail(201, "Activation email sent");
    }
    let reply = app
        .register_from(&same_64(&flooder, 9), &unique_email("flood3"), PASSWORD)
        .await;
    let wait = assert_limited(
        &reply,
        "Too many registration attempts. Please try again later.",
    );
    assert!(wait <= 60);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM users").await, 3);
    app.register_from(&neighbour, &unique_email("neighbour"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    // Loopback is a client like any other, unless the operator exempts it.
    for i in 0..4 {
        let reply = app
            .register_from("127.0.0.1", &unique_email(&format!("local{i}")), PASSWORD)
            .await;
        assert_eq!(
            reply.status.code,
            if i < 3 { 201 } else { 429 },
            "{reply:?}"
        );
    }
    let exempting = TestApp::with(&[
        ("REGISTER_PER_IP_LIMIT", "3"),
        ("RATE_LIMIT_EXEMPT", "127.0.0.0/8"),
    ])
    .await;
    for i in 0..5 {
        exempting
            .register_from("127.0.0.1", &unique_email(&format!("exempt{i}")), PASSWORD)
            .await
            .assert_detail(201, "Activation email sent");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_cannot_take_the_whole_hash_queue() {
    let app = TestApp::with(&[
        ("BCRYPT_COST", "8"),
        ("HASH_QUEUE_PER_IP", "2"),
        ("REGISTER_PER_IP_LIMIT", "1000"),
    ])
    .await;
    let (flooder, other_client) = (unique_ip(), unique_ip());
    // Each request from another /64 of the flooder's /48: one client to the
    // queue.
    let site: Vec<&str> = flooder.split(':').take(3).collect();
    let site = site.join(":");
    let flood = join_all((0..20).map(|i| {
        let (app, flooder) = (&app, format!("{site}:{:x}::1", 0x100 + i));
        async move {
            app.register_from(&flooder, &unique_email(&format!("flood{i}")), PASSWORD)
                .await
        }
    }));
    let other = async {
        // Arrives while the flood holds its places.
        tokio::time::sleep(Duration::from_millis(20)).await;
        app.register_from(&other_client, &unique_email("fair"), PASSWORD)
            .await
    };
    let (flood, other) = tokio::join!(flood, other);
    other.assert_detail(201, "Activation email sent");
    let refused = flood
        .iter()
        .filter(|reply| reply.status.code == 429)
        .count();
    let created = flood
        .iter()
        .filter(|reply| reply.status.code == 201)
        .count();
    assert_eq!(refused + created, 20, "no 503: {flood:?}");
    assert!(refused >= 10, "{refused} refused of 20");
    for reply in flood.iter().filter(|reply| reply.status.code == 429) {
        assert_limited(
            reply,
            "Too many requests in progress. Please try again later.",
        );
    }
}

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
async fn one_mailbox_gets_a_limited_number_of_emails_a_day_whatever_the_tags() {
    let app = TestApp::with(&[
        ("EMAIL_PER_MAILBOX_DAILY_LIMIT", "3"),
        ("RESEND_PER_MINUTE_LIMIT", "100"),
    ])
    .await;
    let victim = unique_email("victim");
    let (user, domain) = victim.split_once('@').unwrap();
    let tagged = |tag: &str| format!("{user}+{tag}@{domain}");
    app.register(&tagged("1"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    app.register(&tagged("2"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    app.resend(&tagged("1"), PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    const MAILBOX: &str =
        "Too many activation emails to this address today. Please try again later.";
    let wait = assert_limited(&app.register(&tagged("3"), PASSWORD).await, MAILBOX);
    // The inbox's day is the calendar's: the wait runs to UTC midnight.
    let to_midnight = 86_400
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 86_400;
    assert!(wait.abs_diff(to_midnight) <= 2, "{wait} {to_midnight}");
    assert_limited(&app.register(&victim, PASSWORD).await, MAILBOX);
    assert_limited(&app.resend(&tagged("2"), PASSWORD).await, MAILBOX);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM email_outbox").await,
        3
    );
    app.register(&unique_email("someone-else"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
}
