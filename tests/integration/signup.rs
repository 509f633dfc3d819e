//! A signup costs one password hash (README, "API"; docs/OPERATIONS.md,
//! `activator_password_hashes_total`): registration keeps a proof of its
//! credentials for the code's lifetime, the activation that follows skips
//! bcrypt, and the proof ends with the code. Against the real binary.

use std::time::Duration;

use serde_json::json;

use crate::common::server::{Server, free_port, run};
use crate::common::{MailSink, PASSWORD, TestDb, code_in, unique_email};

/// `serve` with a metrics listener and the sink as its email API.
fn serve(db: &TestDb, sink: &MailSink, extra: &[(&str, &str)]) -> (Server, String) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut env = vec![
        ("EMAIL_API_URL", sink.url.as_str()),
        ("METRICS_ADDRESS", metrics.as_str()),
    ];
    env.extend_from_slice(extra);
    (
        Server::start(&db.url, &env),
        format!("http://{metrics}/metrics"),
    )
}

/// bcrypt computations of `work` so far.
fn hashes(metrics: &str, work: &str) -> f64 {
    let text = Server::agent()
        .get(metrics)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let series = format!("activator_password_hashes_total{{work=\"{work}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {series}"))
}

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

fn activate(server: &Server, email: &str, password: &str, code: &str) -> u16 {
    let body = json!({ "code": code });
    server
        .post("/auth/activate", &body, Some((email, password)))
        .0
}

/// The proof kept in Redis for `email`, if any.
fn proof(email: &str) -> Option<Vec<u8>> {
    let mut redis = redis::Client::open(crate::common::redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("GET")
        .arg(format!("activator:{{{email}}}:credential:proof"))
        .query(&mut redis)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_activation_right_after_registration_runs_no_bcrypt() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve(&db, &sink, &[]);
    let email = unique_email("onehash");
    let before = (hashes(&metrics, "hash"), hashes(&metrics, "verify"));
    assert_eq!(server.register(&email).0, 201);
    let code = code_for(&sink, &email);
    assert_eq!(activate(&server, &email, PASSWORD, &code), 200);
    let after = (hashes(&metrics, "hash"), hashes(&metrics, "verify"));
    assert_eq!(after.0 - before.0, 1.0, "one hash: the registration's");
    assert_eq!(after.1 - before.1, 0.0, "no verification");

    // A wrong password still costs a full verification and answers 401.
    let other = unique_email("wrong");
    assert_eq!(server.register(&other).0, 201);
    let code = code_for(&sink, &other);
    let verified = hashes(&metrics, "verify");
    assert_eq!(activate(&server, &other, "Wr0ng!pass", &code), 401);
    assert_eq!(hashes(&metrics, "verify") - verified, 1.0);
    // And the right one, after it, none.
    assert_eq!(activate(&server, &other, PASSWORD, &code), 200);
    assert_eq!(hashes(&metrics, "verify") - verified, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proof_ends_with_activation_a_new_code_unlock_delete_expiry_and_a_new_key() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve(&db, &sink, &[("ACTIVATION_CODE_TTL_SECONDS", "2")]);

    // Activation.
    let email = unique_email("ends-activated");
    assert_eq!(server.register(&email).0, 201);
    assert!(proof(&email).is_some(), "kept after registration");
    let code = code_for(&sink, &email);
    assert_eq!(activate(&server, &email, PASSWORD, &code), 200);
    assert_eq!(proof(&email), None, "ended by the activation");

    // A new code (the support action) and an unlock.
    for (label, command) in [("ends-resent", "resend"), ("ends-unlocked", "unlock")] {
        let email = unique_email(label);
        assert_eq!(server.register(&email).0, 201);
        assert!(proof(&email).is_some());
        let output = run(&db.url, &[], &["user", command, &email]);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(proof(&email), None, "ended by user {command}");
    }

    // Erasure.
    let email = unique_email("ends-deleted");
    assert_eq!(server.register(&email).0, 201);
    assert!(proof(&email).is_some());
    let output = run(&db.url, &[], &["user", "delete", &email]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(proof(&email), None, "ended by user delete");

    // Expiry, with the code's.
    let email = unique_email("ends-expired");
    assert_eq!(server.register(&email).0, 201);
    assert!(proof(&email).is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(proof(&email), None, "expired with the code");

    // A new SECRET_KEY: the proof made under the old one proves nothing,
    // so the activation is verified by bcrypt.
    let email = unique_email("ends-rotated");
    assert_eq!(server.register(&email).0, 201);
    let code = code_for(&sink, &email);
    drop(server);
    let rotated = "another-integration-test-secret-key-0123456789";
    let (server, metrics_rotated) = serve(
        &db,
        &sink,
        &[
            ("ACTIVATION_CODE_TTL_SECONDS", "2"),
            ("SECRET_KEY", rotated),
        ],
    );
    let verified = hashes(&metrics_rotated, "verify");
    // The code's HMAC was made under the old key too: 400, after bcrypt.
    assert_eq!(activate(&server, &email, PASSWORD, &code), 400);
    assert_eq!(hashes(&metrics_rotated, "verify") - verified, 1.0);
    drop(metrics);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_credential_proof_off_every_sign_in_runs_bcrypt() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve(&db, &sink, &[("CREDENTIAL_PROOF", "off")]);
    let email = unique_email("proofoff");
    assert_eq!(server.register(&email).0, 201);
    assert_eq!(proof(&email), None, "nothing kept");
    let code = code_for(&sink, &email);
    let verified = hashes(&metrics, "verify");
    assert_eq!(activate(&server, &email, PASSWORD, &code), 200);
    assert_eq!(hashes(&metrics, "verify") - verified, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn neither_dump_holds_anything_a_password_can_be_recovered_from_without_the_key() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, _metrics) = serve(&db, &sink, &[]);
    let email = unique_email("dumps");
    assert_eq!(server.register(&email).0, 201);
    let kept = proof(&email).expect("a proof");
    assert_eq!(kept.len(), 32, "an HMAC-SHA256");
    assert!(
        !kept
            .windows(4)
            .any(|w| PASSWORD.as_bytes().windows(4).any(|p| p == w))
    );
    let mut redis = redis::Client::open(crate::common::redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("activator:{{{email}}}:*"))
        .query(&mut redis)
        .unwrap();
    for key in keys {
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
async fn user_delete_erases_the_account_its_codes_emails_and_counters() {
    let db = TestDb::new().await;
    // No email API reachable: the email stays queued, and must never go.
    let (server, _metrics) = {
        let sink = MailSink::start();
        sink.stall(true);
        let metrics = format!("127.0.0.1:{}", free_port());
        let env = [
            ("EMAIL_API_URL", "http://127.0.0.1:9/unreachable"),
            ("METRICS_ADDRESS", metrics.as_str()),
        ];
        (Server::start(&db.url, &env), metrics)
    };
    let email = unique_email("erase");
    assert_eq!(server.register(&email).0, 201);
    // A failed sign-in leaves a counter in Redis.
    let (status, _) = server.post("/auth/resend", &json!({}), Some((&email, "Wr0ng!pass")));
    assert_eq!(status, 401);
    let count = |table: &str| {
        format!(
            "SELECT count(*) AS n FROM {table} t JOIN users u ON u.id = t.user_id WHERE u.email = '{email}'"
        )
    };
    assert_eq!(db.count(&count("activation_codes")).await, 1);
    assert_eq!(db.count(&count("email_outbox")).await, 1);

    let output = run(&db.url, &[], &["user", "delete", &email]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("1 code(s), 1 email(s)"), "{stdout}");
    let accounts = db
        .count(&format!(
            "SELECT count(*) AS n FROM users WHERE email = '{email}'"
        ))
        .await;
    assert_eq!(accounts, 0);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM activation_codes").await,
        0
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM email_outbox").await, 0);
    let mut redis = redis::Client::open(crate::common::redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("activator:{{{email}}}:*"))
        .query(&mut redis)
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    // The address can be registered afresh.
    assert_eq!(server.register(&email).0, 201);

    // An unknown address: one line, exit 1.
    let output = run(&db.url, &[], &["user", "delete", "nobody@example.com"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no account for nobody@example.com"),
        "{stderr}"
    );
}
