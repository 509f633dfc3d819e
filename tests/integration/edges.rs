//! Edges found by a second look (docs/API.md, docs/LIMITS.md,
//! docs/OPERATIONS.md), each against the real binary: races that must not
//! deadlock, the log that must not carry a query, keys that must not start
//! the service, forwarded addresses that must not be exempt, spellings that
//! must sign in as they registered, lone surrogates, an active account's
//! failed activations, and floods that must not flood the log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::server::{Server, run};
use crate::common::{MailSink, PASSWORD, TestDb, code_in, unique_email};

/// The code of the newest email `sink` received for `email`.
fn code_for(sink: &MailSink, email: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = sink
            .delivered()
            .into_iter()
            .rev()
            .find(|message| message["to"] == email);
        if let Some(message) = found {
            return code_in(message["body"].as_str().unwrap());
        }
        assert!(std::time::Instant::now() < deadline, "no email to {email}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// POSTs `body` with `headers` to the server; returns status and body.
fn post_with(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
    auth: Option<(&str, &str)>,
) -> (u16, String, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.post(format!("{}{path}", server.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some((user, password)) = auth {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header("Authorization", format!("Basic {token}"));
    }
    let mut response = request.send_json(body).unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, text, retry_after)
}

/// Sends `request` (raw bytes) and returns the answer's status line.
fn raw(server: &Server, request: &[u8]) -> String {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn activate(server: &Server, email: &str, password: &str, code: &str) -> u16 {
    server
        .post(
            "/auth/activate",
            &json!({ "code": code }),
            Some((email, password)),
        )
        .0
}

fn resend(server: &Server, email: &str, password: &str) -> u16 {
    server
        .post("/auth/resend", &json!({}), Some((email, password)))
        .0
}

// ---- 1. one lock order: no deadlock answers 500 ------------------------

#[tokio::test(flavor = "multi_thread")]
async fn activation_racing_a_resend_never_answers_500() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = Server::start(
        &db.url,
        &[
            ("RESEND_PER_MINUTE_LIMIT", "100"),
            ("EMAIL_API_URL", sink.url.as_str()),
        ],
    );
    for round in 0..20 {
        let email = unique_email(&format!("race{round}"));
        assert_eq!(server.register(&email).0, 201);
        let code = code_for(&sink, &email);
        let (activated, resent) = std::thread::scope(|scope| {
            let a = scope.spawn(|| activate(&server, &email, PASSWORD, &code));
            let r = scope.spawn(|| resend(&server, &email, PASSWORD));
            (a.join().unwrap(), r.join().unwrap())
        });
        assert!(
            matches!(activated, 200 | 400),
            "round {round}: activate {activated}"
        );
        assert!(
            matches!(resent, 202 | 409),
            "round {round}: resend {resent}"
        );
    }
    let log = server.stderr();
    assert!(!log.contains("deadlock detected"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_racing_a_fresh_registration_at_expiry_never_answers_500() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = Server::start(
        &db.url,
        &[
            ("PENDING_ACCOUNT_TTL_SECONDS", "1"),
            ("EMAIL_API_URL", sink.url.as_str()),
        ],
    );
    let mut pending = Vec::new();
    for round in 0..10 {
        let email = unique_email(&format!("expiry{round}"));
        assert_eq!(server.register(&email).0, 201);
        pending.push(email);
    }
    let pending: Vec<(String, String)> = pending
        .into_iter()
        .map(|email| {
            let code = code_for(&sink, &email);
            (email, code)
        })
        .collect();
    {}
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::thread::scope(|scope| {
        let server = &server;
        for (email, code) in &pending {
            scope.spawn(move || {
                let activated = activate(server, email, PASSWORD, code);
                assert!(matches!(activated, 200 | 400 | 401), "activate {activated}");
            });
            scope.spawn(move || {
                let (registered, body) = server.post(
                    "/auth/register",
                    &json!({"email": email, "password": "An0ther!pass"}),
                    None,
                );
                assert!(
                    matches!(registered, 201 | 409),
                    "register {registered}: {body}"
                );
            });
        }
    });
    let log = server.stderr();
    assert!(!log.contains("deadlock detected"), "{log}");
}

// ---- 2. no query string in the log --------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn no_query_string_reaches_the_log_at_any_level() {
    let db = TestDb::new().await;
    for (level, format) in [("info", "text"), ("debug", "json"), ("trace", "text")] {
        let server = Server::start(&db.url, &[("RUST_LOG", level), ("LOG_FORMAT", format)]);
        let query = "?email=query-owner%40example.com&password=Qu3ry!secret&code=4321";
        let (status, _, _) = post_with(
            &server,
            &format!("/auth/activate{query}"),
            &[],
            &json!({"code": "1234"}),
            None,
        );
        assert_eq!(status, 401);
        assert_eq!(server.get(&format!("/no/such/path{query}")).0, 404);
        let log = server.stderr();
        assert!(log.contains("activator::access"), "{level}: no access line");
        for secret in ["Qu3ry!secret", "password=", "code=4321", "query-owner"] {
            assert!(
                !log.contains(secret),
                "{level}/{format}: {secret} in the log"
            );
        }
    }
}

// ---- 3. the placeholder key ---------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_the_placeholder_key_and_short_keys_naming_the_setting() {
    let db = TestDb::new().await;
    for key in [
        "change-me-to-a-long-random-string",
        "thirty-one-bytes-is-not-enough!",
    ] {
        let output = run(&db.url, &[("SECRET_KEY", key)], &["serve"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{key}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("SECRET_KEY") && !stderr.contains(key),
            "{stderr}"
        );
    }
}

// ---- 4. an unreadable forwarded address ---------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_address_that_does_not_read_or_is_loopback_is_never_exempt() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[("TRUSTED_PROXIES", "127.0.0.1/32")]);
    // Counted against the proxy (that no other test trusts), or against the
    // forwarded loopback address: never exempt, so at most 30 of 40.
    let unreadable = ["junk", "unknown", "", "[::1]", "fe80::1%eth0"];
    let cases: [Vec<&str>; 2] = [
        unreadable.iter().cycle().take(40).copied().collect(),
        vec!["127.0.0.5"; 40],
    ];
    for (case, forwarded) in cases.iter().enumerate() {
        let mut created = 0;
        let mut limited = 0;
        for (i, hop) in forwarded.iter().enumerate() {
            let email = unique_email(&format!("fwd{case}-{i}"));
            let (status, body, _) = post_with(
                &server,
                "/auth/register",
                &[("X-Forwarded-For", hop)],
                &json!({"email": email, "password": PASSWORD}),
                None,
            );
            match status {
                201 => created += 1,
                429 => limited += 1,
                other => panic!("{hop:?}: {other} {body}"),
            }
        }
        assert!(created <= 30, "case {case}: {created} of 40 created");
        assert!(limited >= 10, "case {case}: {limited} limited");
    }
}

// ---- 5. one address, one spelling ---------------------------------------

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
        let (status, body) = server.register(spelling);
        if status == 422 {
            continue;
        }
        assert_eq!(status, 201, "{spelling}: {body}");
        registered += 1;
        assert_eq!(resend(&server, spelling, PASSWORD), 202, "{spelling}");
    }
    assert!(registered >= 5, "only {registered} spellings registered");
}

// ---- 6. lone surrogates -------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn lone_surrogates_are_refused_as_the_original_refused_them() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let base = server.base.trim_start_matches("http://").to_owned();
    let send = |body: &str| {
        let request = format!(
            "POST /auth/register HTTP/1.1\r\nHost: {base}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let address = server.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str::<Value>(body).unwrap())
    };
    let (status, body) = send(r#"{"email":"\ud800@example.com","password":"Secr3t!pass"}"#);
    assert_eq!(status, 422, "{body}");
    let item = &body["detail"][0];
    assert_eq!(item["type"], "value_error");
    assert_eq!(item["loc"], json!(["body", "email"]));
    assert_eq!(
        item["msg"],
        "value is not a valid email address: The email address contains unsafe characters: U+D800."
    );
    let (status, body) = send(r#"{"email":"ada@example.com","password":"Secr3t!p\udc00ss"}"#);
    assert_eq!(status, 422, "{body}");
    let item = &body["detail"][0];
    assert_eq!(item["type"], "string_unicode");
    assert_eq!(item["loc"], json!(["body", "password"]));
    assert_eq!(
        item["msg"],
        "Input should be a valid string, unable to parse raw data as a unicode string"
    );
    assert!(item.get("input").is_none(), "a password is never echoed");
}

// ---- 7. an active account's failed activations --------------------------

#[tokio::test(flavor = "multi_thread")]
async fn failed_activations_of_an_active_account_lock_it_like_any_other() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = Server::start(&db.url, &[("EMAIL_API_URL", sink.url.as_str())]);
    let email = unique_email("active");
    assert_eq!(server.register(&email).0, 201);
    let code = code_for(&sink, &email);
    assert_eq!(activate(&server, &email, PASSWORD, &code), 200);
    for _ in 0..5 {
        let (status, body) = server.post(
            "/auth/activate",
            &json!({"code": code}),
            Some((&email, PASSWORD)),
        );
        assert_eq!(
            (status, body.as_str()),
            (400, r#"{"detail":"Invalid or expired activation code"}"#)
        );
    }
    let (status, body, retry_after) = post_with(
        &server,
        "/auth/activate",
        &[],
        &json!({"code": code}),
        Some((&email, PASSWORD)),
    );
    assert_eq!(
        (status, body.as_str()),
        (
            429,
            r#"{"detail":"Too many activation attempts. Please try again later."}"#
        )
    );
    let wait: u64 = retry_after.unwrap().parse().unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
}

// ---- 8. floods say themselves once in a while ---------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_bad_headers_or_busy_answers_is_said_once_in_a_while() {
    let db = TestDb::new().await;
    let server = Server::start(
        &db.url,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("BCRYPT_COST", "10"),
            ("REGISTER_PER_IP_LIMIT", "1000"),
        ],
    );
    let base = server.base.trim_start_matches("http://").to_owned();
    for _ in 0..200 {
        let request = format!(
            "GET /health/live HTTP/1.1\r\nHost: {base}\r\nX-Note: caf\u{e9}\r\nConnection: close\r\n\r\n"
        );
        let mut bytes = request.into_bytes();
        // The header value as Latin-1: 0xE9, not UTF-8.
        let at = bytes.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
        bytes.splice(at..at + 2, [0xe9]);
        assert!(raw(&server, &bytes).contains(" 200 "));
    }
    // More registrations at once than the hash queue holds (32 per core),
    // from many clients (each holds at most 4 places).
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..240)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    let email = unique_email(&format!("flood{i}"));
                    let client = format!("198.51.100.{}", i % 200 + 1);
                    post_with(
                        server,
                        "/auth/register",
                        &[("X-Forwarded-For", &client)],
                        &json!({"email": email, "password": PASSWORD}),
                        None,
                    )
                    .0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy = statuses.iter().filter(|&&s| s == 503).count();
    assert!(busy >= 10, "only {busy} busy answers: {statuses:?}");
    let log = server.stderr();
    let said = |needle: &str| log.lines().filter(|line| line.contains(needle)).count();
    let header_lines = said("not UTF-8") + said("invalid UTF-8");
    assert!(
        (1..=2).contains(&header_lines),
        "{header_lines} lines for 200 bad headers"
    );
    let busy_lines = said("password hashing queue is full");
    assert!(
        (1..=2).contains(&busy_lines),
        "{busy_lines} lines for {busy} busy answers"
    );
}
