//! Delivering the activation email over SMTP (`SMTP_URL`, docs/EMAIL.md
//! "SMTP", "Provider answers") against a real SMTP server (aiosmtpd): the
//! multipart message, refusals, retries and throttling by reply code,
//! STARTTLS and its certificate, and the one transport `serve` takes.

use std::time::Duration;

use serde_json::json;

use crate::common::Api;
use crate::common::email::{parts, serve_with_smtp, settled};
use crate::common::server::run;
use crate::common::smtp_sink::{SmtpSink, cert_file};
use crate::common::{PASSWORD, TestDb, code_in, unique_email};

#[tokio::test(flavor = "multi_thread")]
async fn serve_sends_a_multipart_email_over_smtp_whose_code_activates() {
    let sink = SmtpSink::start();
    let db = TestDb::new().await;
    let server = serve_with_smtp(&db, &sink.url(), &[]);
    let email = unique_email("smtp");

    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let messages = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message["mail_from"], "accounts@example.org");
    assert_eq!(message["rcpt_tos"], json!([email]));
    let raw = message["data"].as_str().unwrap();
    assert!(raw.contains("Subject: Your activation code\r\n"), "{raw}");
    let (text, html) = parts(raw, &email);
    let code = code_in(&text);
    assert!(text.contains("valid for 1 minute"), "{text}");
    assert!(html.contains(&code) && html.contains("<html lang=\"en\">"));

    let (status, _) = server
        .post_json(
            "/auth/activate",
            &json!({"code": code}),
            Some((&email, PASSWORD)),
        )
        .await
        .pair();
    assert_eq!(status, 200);
    let rows = settled(&db, Duration::from_secs(20)).await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recipient_refused_with_550_is_dead_after_one_try_and_user_show_says_why() {
    let sink = SmtpSink::start();
    let db = TestDb::new().await;
    let _server = serve_with_smtp(&db, &sink.url(), &[]);
    let email = unique_email("reject");

    assert_eq!(_server.register(&email, PASSWORD).await.code(), 201);
    let rows = settled(&db, Duration::from_secs(20)).await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("dead", 1));
    assert_eq!(rows[0].last_status, Some(550));
    let error = rows[0].last_error.as_deref().unwrap();
    assert_eq!(error, "550: 5.1.1 No such user here");
    assert_eq!(sink.replies_to(&email, 1), ["550 5.1.1 No such user here"]);

    let output = run(&db.url, &[], &["user", "show", &email]);
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    assert!(
        shown.contains("dead after 1 attempt(s)")
            && shown.contains("last error: 550: 5.1.1 No such user here"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_450_is_retried_and_the_second_attempt_delivers() {
    let sink = SmtpSink::start();
    let db = TestDb::new().await;
    let server = serve_with_smtp(&db, &sink.url(), &[]);
    let email = unique_email("flaky");

    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let messages = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(messages.len(), 1);
    assert_eq!(
        sink.replies_to(&email, 2),
        ["450 4.2.1 Mailbox busy, try again", "250 OK"]
    );
    let rows = settled(&db, Duration::from_secs(20)).await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_451_pauses_sending_and_is_retried_without_counting_an_attempt() {
    let sink = SmtpSink::start();
    let db = TestDb::new().await;
    let server = serve_with_smtp(&db, &sink.url(), &[]);
    let email = unique_email("later");

    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let messages = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(messages.len(), 1);
    assert_eq!(
        sink.replies_to(&email, 2),
        ["451 4.3.0 Try again later", "250 OK"]
    );
    let rows = settled(&db, Duration::from_secs(20)).await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 1));
    let (_, log) = server.stop_with("TERM");
    assert!(log.contains("email provider throttles"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_452_pauses_sending_like_a_429_and_is_not_an_attempt() {
    let sink = SmtpSink::start();
    let db = TestDb::new().await;
    let server = serve_with_smtp(&db, &sink.url(), &[]);
    let email = unique_email("busy");

    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let messages = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(messages.len(), 1);
    assert_eq!(sink.replies_to(&email, 2).len(), 2);
    let rows = settled(&db, Duration::from_secs(20)).await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 1));
    let (_, log) = server.stop_with("TERM");
    assert!(log.contains("email provider throttles"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_to_a_server_whose_certificate_is_trusted_delivers_and_hides_the_password() {
    let sink = SmtpSink::start();
    let db = TestDb::new().await;
    let url = format!(
        "smtp://mailer:Sm7p-s3cret@localhost:{}?tls=required",
        sink.tls_port
    );
    let cert = cert_file();
    let server = serve_with_smtp(
        &db,
        &url,
        &[("SSL_CERT_FILE", &cert), ("RUST_LOG", "debug")],
    );
    let email = unique_email("tls");

    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let messages = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(messages.len(), 1, "{}", server.stderr());
    assert_eq!(messages[0]["tls"], true);
    assert_eq!(messages[0]["auth"], "mailer");
    let (_, log) = server.stop_with("TERM");
    assert!(log.contains("emails are sent over SMTP"), "{log}");
    assert!(log.contains("smtp://***@localhost"), "{log}");
    assert!(
        !log.contains("Sm7p-s3cret"),
        "the SMTP password is in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_a_failed_attempt_not_a_delivery() {
    let sink = SmtpSink::start();
    let db = TestDb::new().await;
    let url = format!("smtp://localhost:{}?tls=required", sink.tls_port);
    let _server = serve_with_smtp(&db, &url, &[("EMAIL_MAX_ATTEMPTS", "1")]);

    assert_eq!(
        _server
            .register(&unique_email("untrusted"), PASSWORD)
            .await
            .code(),
        201
    );
    let rows = settled(&db, Duration::from_secs(20)).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].last_status),
        ("dead", None)
    );
    let error = rows[0].last_error.as_deref().unwrap();
    assert!(error.starts_with("SMTP server unreachable"), "{error}");
    assert!(sink.wait_for(1, Duration::from_millis(200)).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_api_and_an_smtp_server_together_stop_start_up_naming_both() {
    let db = TestDb::new().await;
    let output = run(
        &db.url,
        &[
            ("EMAIL_API_URL", "http://127.0.0.1:8025/v1/send"),
            ("SMTP_URL", "smtp://mailer:Sm7p-s3cret@127.0.0.1:2525"),
        ],
        &["serve"],
    );
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("EMAIL_API_URL") && err.contains("SMTP_URL") && !err.contains("Sm7p-s3cret"),
        "{err}"
    );
}
