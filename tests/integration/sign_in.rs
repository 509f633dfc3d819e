//! Signing in: the HTTP Basic credentials `POST /auth/resend` and
//! `POST /auth/activate` take (docs/API.md "401 Invalid credentials"). Every
//! bad credential, however malformed, is the same quiet 401; failed sign-ins
//! are limited per address and per client before any hashing
//! (docs/LIMITS.md "Failed sign-ins"); a password hashed at another bcrypt
//! cost is rehashed on its next sign-in; an account stored under older
//! address rules can still sign in (docs/API.md "Email addresses").

use activator::address::normalize;
use diesel_async::RunQueryDsl;
use rocket::http::{ContentType, Header};
use serde_json::json;

use crate::common::Api;
use crate::common::{
    PASSWORD, Reply, Server, TestApp, TestDb, assert_limited, basic, basic_value, exactly, pending,
    unique_email, unique_ip,
};

const AUTH: &str = "Too many failed authentication attempts. Please try again later.";

// ---- 401 --------------------------------------------------------------------

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

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_authorization_is_the_same_401() {
    let app = TestApp::new().await;
    let (email, code) = pending(&app).await;
    let wrong_password = basic(&email, "Wr0ng!pass");
    let headers: Vec<Option<Header<'static>>> = vec![
        None,
        Some(Header::new("Authorization", "Bearer token")),
        Some(Header::new("Authorization", "Basic")),
        Some(Header::new("Authorization", "Basic ")),
        Some(Header::new("Authorization", "Basic !!!")),
        Some(Header::new("Authorization", "Basic bm9jb2xvbg==")),
        Some(wrong_password),
        Some(basic(&unique_email("nobody"), PASSWORD)),
    ];
    for header in headers {
        for path in ["/auth/activate", "/auth/resend"] {
            let mut request = app
                .client
                .post(path)
                .header(ContentType::JSON)
                .body(json!({"code": code}).to_string());
            if let Some(header) = header.clone() {
                request = request.header(header);
            }
            let reply = Reply::from(request.dispatch().await).await;
            exactly(
                &reply,
                401,
                r#"{"detail":"Invalid authentication credentials"}"#,
            );
            assert_eq!(reply.header("www-authenticate"), Some("Basic"), "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_control_byte_in_basic_credentials_is_a_quiet_401() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let email = unique_email("ctl");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let agent = Server::agent();
    for byte in 0u8..0x20 {
        let (user, domain) = email.split_once('@').unwrap();
        let in_email = [
            user.as_bytes(),
            &[byte],
            b"@",
            domain.as_bytes(),
            b":",
            PASSWORD.as_bytes(),
        ]
        .concat();
        let in_password = [email.as_bytes(), b":", PASSWORD.as_bytes(), &[byte]].concat();
        for (path, raw) in [
            ("/auth/activate", &in_email),
            ("/auth/resend", &in_password),
        ] {
            let mut response = agent
                .post(format!("{}{path}", server.base))
                .header("Authorization", basic_value(raw))
                .send_json(json!({"code": "1234"}))
                .unwrap();
            let body = response.body_mut().read_to_string().unwrap();
            assert_eq!(
                (response.status().as_u16(), body.as_str()),
                (401, r#"{"detail":"Invalid authentication credentials"}"#),
                "byte {byte:#04x} on {path}"
            );
        }
    }
    let (_, log) = server.stop_with("TERM");
    assert!(
        !log.lines().any(|line| line.contains("ERROR")),
        "an error was logged: {log}"
    );
}

// ---- failed sign-ins --------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_are_limited_per_address_and_network_before_any_hashing() {
    let app = TestApp::with(&[
        ("AUTH_FAILURE_LIMIT", "3"),
        ("AUTH_FAILURE_WINDOW_SECONDS", "60"),
    ])
    .await;
    let email = unique_email("guess");
    app.register(&email, PASSWORD).await;
    for _ in 0..3 {
        app.resend(&email, "Wr0ng!pass")
            .await
            .assert_detail(401, "Invalid authentication credentials");
    }
    let wait = assert_limited(&app.resend(&email, "Wr0ng!pass").await, AUTH);
    assert!((1..=60).contains(&wait), "{wait}");
    // The right password, proven at registration moments ago, is no
    // failure: no failure limit refuses it.
    app.resend(&email, PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");

    // Without a proof, the client's failures refuse before any bcrypt, the
    // right password too: seen by an instance whose password hasher
    // refuses all work (any bcrypt call would be a 503), a 429.
    let settings = crate::common::settings_for(
        &app.db,
        &[("AUTH_FAILURE_LIMIT", "3"), ("CREDENTIAL_PROOF", "off")],
    );
    let accounts = activator::accounts::Accounts::build(&settings)
        .await
        .unwrap()
        .with_hasher(activator::password::Hasher::with_concurrency(4, 1, 0, 4).unwrap());
    let busy = rocket::local::asynchronous::Client::tracked(activator::rocket(
        activator::figment().merge(("log_level", "off")),
        accounts,
        crate::common::locales(&settings),
        settings.network.clone(),
    ))
    .await
    .unwrap();
    let reply = Reply::from(
        busy.post("/auth/resend")
            .header(basic(&email, PASSWORD))
            .dispatch()
            .await,
    )
    .await;
    assert_limited(&reply, AUTH);
    // Another network is not refused for this one's failures.
    app.resend_from(&unique_ip(), &email, "Wr0ng!pass")
        .await
        .assert_detail(401, "Invalid authentication credentials");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_are_limited_per_client_ip_and_exempt_clients_are_not() {
    let app = TestApp::with(&[
        ("AUTH_FAILURE_PER_IP_LIMIT", "3"),
        ("RATE_LIMIT_EXEMPT", "192.0.2.0/24"),
    ])
    .await;
    let attacker = unique_ip();
    let attacker = attacker.as_str();
    for i in 0..3 {
        let email = unique_email(&format!("spray{i}"));
        app.resend_from(attacker, &email, "Wr0ng!pass")
            .await
            .assert_detail(401, "Invalid authentication credentials");
    }
    assert_limited(
        &app.resend_from(attacker, &unique_email("spray3"), "Wr0ng!pass")
            .await,
        AUTH,
    );
    // Other clients are not affected, and an exempt one is never limited;
    // loopback is limited like any other.
    for (ip, tries) in [
        (unique_ip(), 3),
        ("192.0.2.9".into(), 6),
        ("127.0.0.1".into(), 3),
    ] {
        for _ in 0..tries {
            app.resend_from(&ip, &unique_email("other"), "Wr0ng!pass")
                .await
                .assert_detail(401, "Invalid authentication credentials");
        }
    }
    assert_limited(
        &app.resend_from("127.0.0.1", &unique_email("local"), "Wr0ng!pass")
            .await,
        AUTH,
    );
}

// ---- stored accounts --------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_active_accounts_password_hashed_at_another_cost_is_rehashed_on_its_next_sign_in() {
    use diesel_async::RunQueryDsl;
    let app = crate::common::TestApp::with(&[("BCRYPT_COST", "5")]).await;
    let (active, pending) = (unique_email("rehash"), unique_email("rehash-pending"));
    let old = bcrypt::hash(PASSWORD, 4).unwrap();
    let mut conn = app.db.connect().await;
    diesel::sql_query(
        "INSERT INTO users (email, password_hash, is_active, activated_at) \
         VALUES ($1, $3, true, now()), ($2, $3, false, NULL)",
    )
    .bind::<diesel::sql_types::Text, _>(&active)
    .bind::<diesel::sql_types::Text, _>(&pending)
    .bind::<diesel::sql_types::Text, _>(&old)
    .execute(&mut conn)
    .await
    .unwrap();
    let stored = async |email: &str| {
        #[derive(diesel::QueryableByName)]
        struct Hash {
            #[diesel(sql_type = diesel::sql_types::Text)]
            password_hash: String,
        }
        let mut conn = app.db.connect().await;
        diesel::sql_query("SELECT password_hash FROM users WHERE email = $1")
            .bind::<diesel::sql_types::Text, _>(email)
            .get_result::<Hash>(&mut conn)
            .await
            .unwrap()
            .password_hash
    };

    app.resend(&active, "Wr0ng!pass")
        .await
        .assert_detail(401, "Invalid authentication credentials");
    assert_eq!(
        stored(&active).await,
        old,
        "a wrong password changes nothing"
    );

    app.resend(&active, PASSWORD)
        .await
        .assert_detail(409, "Account already active");
    let new = stored(&active).await;
    assert!(new.starts_with("$2b$05$"), "{new}");
    assert!(bcrypt::verify(PASSWORD, &new).unwrap());
    // Signing in again at the same cost keeps the hash.
    app.resend(&active, PASSWORD).await;
    assert_eq!(stored(&active).await, new);

    // A pending registration keeps its cost and salt: its claims share
    // them, so its passwords compare with one computation.
    app.resend(&pending, PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    assert_eq!(stored(&pending).await, old);
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

#[tokio::test(flavor = "multi_thread")]
async fn every_spelling_that_registered_signs_in_with_that_spelling() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let tag = unique_email("s").replace(['@', '.'], "");
    let spellings = [
        format!("K{tag}@ΣΣ。com"),
        format!("ΣΣ{tag}@Example.COM"),
        format!("Ünal{tag}@Bücher.DE"),
        format!("İpek{tag}@İstanbul.tr"),
        format!("Ａｄａ{tag}@ｅｘａｍｐｌｅ.com"),
        format!("e\u{301}lan{tag}@faß.de"),
        format!("ΌΣΟΣ{tag}@ΌΣΟΣ.gr"),
    ];
    let mut registered = 0;
    for spelling in &spellings {
        let (status, body) = server.register(spelling, PASSWORD).await.pair();
        if status == 422 {
            continue;
        }
        assert_eq!(status, 201, "{spelling}: {body}");
        registered += 1;
        assert_eq!(
            server.resend(spelling, PASSWORD).await.code(),
            202,
            "{spelling}"
        );
    }
    assert!(registered >= 5, "only {registered} spellings registered");
}
