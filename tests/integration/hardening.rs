//! Hardening, against the real binary where the behaviour is the binary's:
//! hostile credentials, what the logs may hold, and the defended edges.

use std::time::Duration;

use serde_json::json;

use crate::common::{MailSink, PASSWORD, Server, TestDb, basic_value, unique_email};

#[tokio::test(flavor = "multi_thread")]
async fn every_control_byte_in_basic_credentials_is_a_quiet_401() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let email = unique_email("ctl");
    assert_eq!(server.register(&email).0, 201);
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

/// Runs register, resend, a wrong and a right activation against `serve`
/// with `RUST_LOG=trace` and every secret distinctive, then returns the log
/// and the secrets it must not hold.
async fn a_session_at_trace(log_format: &str) -> (String, Vec<String>) {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    // Trust authentication ignores the password, and the sink the
    // credentials and key: they are there to be looked for in the log.
    let database_url = db.url.replacen("postgres@", "postgres:db-pass-7c1f@", 1);
    let email_api = sink
        .url
        .replacen("http://", "http://mailer:api-pass-93ad@", 1)
        + "?key=query-key-5b2e";
    let secret_key = "secret-key-5d0c9e2a41";
    let server = Server::start(
        &database_url,
        &[
            ("RUST_LOG", "trace"),
            ("LOG_FORMAT", log_format),
            ("EMAIL_API_URL", &email_api),
            ("SECRET_KEY", secret_key),
        ],
    );
    let email = unique_email("trace");
    assert_eq!(server.register(&email).0, 201);
    let first = sink.wait_for(1, Duration::from_secs(5));
    let auth = Some((email.as_str(), PASSWORD));
    let (status, _) = server.post("/auth/activate", &json!({"code": "0000"}), auth);
    assert_eq!(status, 400);
    assert_eq!(server.post("/auth/resend", &json!({}), auth).0, 202);
    let second = sink.wait_for(2, Duration::from_secs(5));
    let code = crate::common::code_in(second[1]["body"].as_str().unwrap());
    assert_eq!(
        server
            .post("/auth/activate", &json!({"code": code}), auth)
            .0,
        200
    );
    let (_, log) = server.stop_with("TERM");
    assert!(
        log.contains("activation email sent"),
        "the log was captured"
    );
    assert!(
        log.lines().any(|line| line.contains("DEBUG")),
        "RUST_LOG=trace took effect: {log}"
    );

    let mut hash = None;
    let hashes = db
        .count("SELECT count(*) AS n FROM users WHERE password_hash LIKE '$2b$%'")
        .await;
    assert_eq!(hashes, 1);
    {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Hash {
            #[diesel(sql_type = diesel::sql_types::Text)]
            password_hash: String,
        }
        let mut conn = db.connect().await;
        let row: Hash = diesel::sql_query("SELECT password_hash FROM users")
            .get_result(&mut conn)
            .await
            .unwrap();
        hash.replace(row.password_hash);
    }
    use base64::Engine;
    let authorization =
        base64::engine::general_purpose::STANDARD.encode(format!("{email}:{PASSWORD}"));
    let first_code = crate::common::code_in(first[0]["body"].as_str().unwrap());
    let mut secrets = vec![
        PASSWORD.to_owned(),
        authorization,
        secret_key.to_owned(),
        "db-pass-7c1f".to_owned(),
        "api-pass-93ad".to_owned(),
        "query-key-5b2e".to_owned(),
        hash.unwrap()[7..].to_owned(),
    ];
    for code in [first_code, code] {
        secrets.extend([
            format!("code is: {code}"),
            format!("\"{code}\""),
            format!(": {code}"),
            format!(">{code}<"),
        ]);
    }
    (log, secrets)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_the_log_even_at_trace() {
    for format in ["text", "json"] {
        let (log, secrets) = a_session_at_trace(format).await;
        let leaks: Vec<String> = secrets
            .iter()
            .flat_map(|secret| {
                log.lines()
                    .filter(|line| line.contains(secret.as_str()))
                    .map(move |line| format!("{secret:?} in: {}", &line[..line.len().min(300)]))
            })
            .collect();
        assert!(leaks.is_empty(), "{format} log:\n{}", leaks.join("\n"));
    }
}

#[test]
fn an_invalid_url_setting_is_named_but_not_echoed() {
    for (name, value) in [
        ("DATABASE_URL", "postgres://app:hunter2@db host/activator"),
        ("REDIS_URL", "redis://:hunter2@[::1"),
        ("EMAIL_API_URL", "http://user:hunter2@exa mple.com/send"),
    ] {
        let output = crate::common::server::run(
            "postgres://postgres@127.0.0.1:1/activator",
            &[(name, value)],
            &["serve"],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(name) && !stderr.contains("hunter2"),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_hashed_at_another_cost_is_rehashed_on_its_next_sign_in() {
    use diesel_async::RunQueryDsl;
    let app = crate::common::TestApp::with(&[("BCRYPT_COST", "5")]).await;
    let email = unique_email("rehash");
    let old = bcrypt::hash(PASSWORD, 4).unwrap();
    let mut conn = app.db.connect().await;
    diesel::sql_query("INSERT INTO users (email, password_hash) VALUES ($1, $2)")
        .bind::<diesel::sql_types::Text, _>(&email)
        .bind::<diesel::sql_types::Text, _>(&old)
        .execute(&mut conn)
        .await
        .unwrap();
    let stored = async || {
        #[derive(diesel::QueryableByName)]
        struct Hash {
            #[diesel(sql_type = diesel::sql_types::Text)]
            password_hash: String,
        }
        let mut conn = app.db.connect().await;
        diesel::sql_query("SELECT password_hash FROM users")
            .get_result::<Hash>(&mut conn)
            .await
            .unwrap()
            .password_hash
    };

    app.resend(&email, "Wr0ng!pass")
        .await
        .assert_detail(401, "Invalid authentication credentials");
    assert_eq!(stored().await, old, "a wrong password changes nothing");

    app.resend(&email, PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    let new = stored().await;
    assert!(new.starts_with("$2b$05$"), "{new}");
    assert!(bcrypt::verify(PASSWORD, &new).unwrap());
    // Signing in again at the same cost keeps the hash.
    app.resend(&email, PASSWORD).await;
    assert_eq!(stored().await, new);
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_raises_its_open_files_limit_to_the_hard_limit() {
    let db = TestDb::new().await;
    let server = Server::start_wrapped(&["prlimit", "--nofile=256:4096"], &db.url, &[], &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{open_files}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mailbox_takes_only_json_posts() {
    use rocket::http::ContentType;
    let figment = rocket::Config::figment().merge(("log_level", "off"));
    let client =
        rocket::local::asynchronous::Client::tracked(activator::devmail::rocket(figment, 10))
            .await
            .unwrap();
    let message = r#"{"from":"a@example.com","to":"b@example.com","subject":"s","body":"1234"}"#;
    for content_type in [
        Some(ContentType::Plain),
        Some(ContentType::Form),
        Some(ContentType::new("multipart", "form-data")),
        None,
    ] {
        let mut request = client.post("/v1/send").body(message);
        if let Some(content_type) = content_type.clone() {
            request = request.header(content_type);
        }
        let response = request.dispatch().await;
        assert_eq!(response.status().code, 415, "{content_type:?}");
    }
    let accepted = client
        .post("/v1/send")
        .header(ContentType::JSON)
        .body(message)
        .dispatch()
        .await;
    assert_eq!(accepted.status().code, 200);
    let listed = client.get("/v1/messages").dispatch().await;
    let listed: serde_json::Value =
        serde_json::from_str(&listed.into_string().await.unwrap()).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "only the JSON post got in"
    );
}
