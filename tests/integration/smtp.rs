//! SMTP delivery (`SMTP_URL`) against a real SMTP server (aiosmtpd), and the
//! email's language: chosen from `Accept-Language`, kept with the account.

use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use mail_parser::MessageParser;
use rocket::http::{ContentType, Header};
use serde_json::{Value, json};

use crate::common::email::{parts, serve_with_smtp, settled};
use crate::common::server::{free_port, run};
use crate::common::smtp_sink::{SmtpSink, cert_file};
use crate::common::{
    MailSink, PASSWORD, Reply, Server, TestApp, TestDb, code_in, eventually, peer, unique_email,
    unique_ip,
};

#[tokio::test(flavor = "multi_thread")]
async fn serve_sends_a_multipart_email_over_smtp_whose_code_activates() {
    let sink = SmtpSink::start();
    let db = TestDb::new().await;
    let server = serve_with_smtp(&db, &sink.url(), &[]);
    let email = unique_email("smtp");

    assert_eq!(server.register(&email).0, 201);
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

    let (status, _) = server.post(
        "/auth/activate",
        &json!({"code": code}),
        Some((&email, PASSWORD)),
    );
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

    assert_eq!(_server.register(&email).0, 201);
    let rows = settled(&db, Duration::from_secs(20)).await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("dead", 1));
    assert_eq!(rows[0].last_status, Some(550));
    let error = rows[0].last_error.as_deref().unwrap();
    assert_eq!(error, "550: 5.1.1 No such user here");
    assert_eq!(sink.replies_to(&email), ["550 5.1.1 No such user here"]);

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

    assert_eq!(server.register(&email).0, 201);
    let messages = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(messages.len(), 1);
    assert_eq!(
        sink.replies_to(&email),
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

    assert_eq!(server.register(&email).0, 201);
    let messages = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(messages.len(), 1);
    assert_eq!(
        sink.replies_to(&email),
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

    assert_eq!(server.register(&email).0, 201);
    let messages = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(messages.len(), 1);
    assert_eq!(sink.replies_to(&email).len(), 2);
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

    assert_eq!(server.register(&email).0, 201);
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

    assert_eq!(_server.register(&unique_email("untrusted")).0, 201);
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

// ---- the email's language ------------------------------------------------

/// Registers `email` from a fresh client address, with `Accept-Language`
/// lines `languages`.
async fn register_in(app: &TestApp, email: &str, languages: &[&str]) -> Reply {
    let mut request = app
        .client
        .post("/auth/register")
        .remote(peer(&unique_ip()))
        .header(ContentType::JSON)
        .body(json!({"email": email, "password": PASSWORD}).to_string());
    for language in languages {
        request = request.header(Header::new("Accept-Language", language.to_string()));
    }
    Reply::from(request.dispatch().await).await
}

async fn locale_of(app: &TestApp, email: &str) -> Option<String> {
    #[derive(diesel::QueryableByName)]
    struct Locale {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        locale: Option<String>,
    }
    let mut conn = app.db.connect().await;
    let row: Locale = diesel::sql_query("SELECT locale FROM users WHERE email = $1")
        .bind::<diesel::sql_types::Text, _>(email)
        .get_result(&mut conn)
        .await
        .unwrap();
    row.locale
}

/// The newest email delivered to `to`.
fn last_to<'a>(delivered: &'a [Value], to: &str) -> &'a Value {
    delivered
        .iter()
        .rev()
        .find(|message| message["to"] == to)
        .expect("an email to this address")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_accounts_language_is_the_best_accept_language_we_have() {
    let app = TestApp::new().await;
    let cases: [(&[&str], &str); 10] = [
        (&[], "en"),
        (&["fr"], "fr"),
        (&["fr-CH"], "fr"),
        (&["de;q=0.5, es;q=0.9"], "es"),
        (&["it, pt-BR;q=0.9, de-AT;q=0.2"], "de"),
        (&["it, pt"], "en"),
        (&["*"], "en"),
        (&["es;q=0, de"], "de"),
        (&["@@@ not a header ;;; q=x"], "en"),
        (&["it", "es;q=0.8"], "es"),
    ];
    for (languages, expected) in cases {
        let email = unique_email("lang");
        register_in(&app, &email, languages)
            .await
            .assert_detail(201, "Activation email sent");
        assert_eq!(
            locale_of(&app, &email).await.as_deref(),
            Some(expected),
            "{languages:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_language_we_have_the_default_locale_is_used() {
    let app = TestApp::with(&[("DEFAULT_LOCALE", "es")]).await;
    let sink = MailSink::start();
    let email = unique_email("default");
    register_in(&app, &email, &["it"]).await;
    assert_eq!(locale_of(&app, &email).await.as_deref(), Some("es"));
    app.deliver(&sink).await;
    let delivered = sink.delivered();
    let message = last_to(&delivered, &email);
    assert_eq!(message["subject"], "Su código de activación");
    assert!(
        message["body"]
            .as_str()
            .unwrap()
            .contains("Este código es válido durante 1 minuto.")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resend_and_a_support_resend_keep_the_accounts_language() {
    let app = TestApp::with(&[("ACTIVATION_CODE_TTL_SECONDS", "120")]).await;
    let sink = MailSink::start();
    let email = unique_email("keeps");
    register_in(&app, &email, &["de-AT, en;q=0.5"]).await;
    app.deliver(&sink).await;

    // Asking in another language later changes nothing: the account's
    // language was chosen at registration.
    let request = app
        .client
        .post("/auth/resend")
        .remote(peer(&unique_ip()))
        .header(Header::new("Accept-Language", "fr"))
        .header(crate::common::basic(&email, PASSWORD));
    Reply::from(request.dispatch().await)
        .await
        .assert_detail(202, "Activation email resent");
    app.deliver(&sink).await;

    let output = run(
        &app.db.url,
        &[("ACTIVATION_CODE_TTL_SECONDS", "120")],
        &["user", "resend", &email],
    );
    assert!(output.status.success(), "{output:?}");
    app.deliver(&sink).await;

    let shown = run(&app.db.url, &[], &["user", "show", &email]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("language    de\n"), "{shown}");

    let delivered = sink.delivered();
    let mine: Vec<&Value> = delivered.iter().filter(|m| m["to"] == email).collect();
    assert_eq!(mine.len(), 3);
    for message in mine {
        assert_eq!(message["subject"], "Ihr Aktivierungscode");
        let body = message["body"].as_str().unwrap();
        assert!(body.contains("Ihr Aktivierungscode lautet: "), "{body}");
        assert!(body.contains("Der Code ist 2 Minuten gültig."), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_writes_the_smtp_email_in_the_accounts_language() {
    let sink = SmtpSink::start();
    let db = TestDb::new().await;
    let server = serve_with_smtp(&db, &sink.url(), &[]);
    let email = unique_email("fr");
    let mut response = Server::agent()
        .post(format!("{}/auth/register", server.base))
        .header("Accept-Language", "fr-CH, fr;q=0.9, en;q=0.8")
        .send_json(json!({"email": email, "password": PASSWORD}))
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let _ = response.body_mut().read_to_string();

    let messages = sink.wait_for(1, Duration::from_secs(10));
    let raw = messages[0]["data"].as_str().unwrap();
    let message = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(message.subject(), Some("Votre code d’activation"));
    let (text, html) = parts(raw, &email);
    assert!(
        text.contains("Votre code d’activation est\u{a0}: ")
            && text.contains("Ce code est valable 1 minute."),
        "{text}"
    );
    assert!(html.contains("<html lang=\"fr\">"), "{html}");
}

// ---- the mailbox's SMTP side -----------------------------------------------

/// A running `activator mailbox`, killed on drop.
struct Mailbox {
    child: std::process::Child,
    base: String,
    smtp_port: u16,
}

impl Mailbox {
    fn start() -> Self {
        let (port, smtp_port) = (free_port(), free_port());
        let child = crate::common::server::command("postgres://unused@127.0.0.1:1/x", &[])
            .args(["mailbox", "--port", &port.to_string()])
            .args(["--smtp-port", &smtp_port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mailbox = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            smtp_port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Server::agent()
            .get(format!("{}/v1/messages", mailbox.base))
            .call()
            .is_err()
            || std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_err()
        {
            assert!(Instant::now() < deadline, "mailbox did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        mailbox
    }

    fn messages(&self, to: &str) -> Vec<Value> {
        let mut response = Server::agent()
            .get(format!("{}/v1/messages?to={to}", self.base))
            .call()
            .unwrap();
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_sends_over_smtp_to_the_mailbox_which_shows_text_html_and_an_eight_digit_code() {
    let mailbox = Mailbox::start();
    let db = TestDb::new().await;
    let url = format!("smtp://127.0.0.1:{}", mailbox.smtp_port);
    let server = serve_with_smtp(&db, &url, &[("CODE_LENGTH", "8")]);
    let email = unique_email("mailbox-smtp");
    assert_eq!(server.register(&email).0, 201);

    let messages = eventually(Duration::from_secs(10), async || {
        let list = mailbox.messages(&email);
        (!list.is_empty()).then_some(list)
    })
    .await
    .expect("the mailbox received the email over SMTP");
    let message = &messages[0];
    assert_eq!(message["from"], "accounts@example.org");
    assert_eq!(message["subject"], "Your activation code");
    let code = message["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 8);
    let body = message["body"].as_str().unwrap();
    assert!(
        body.contains(&format!("Your activation code is: {code}\n")),
        "{body}"
    );
    assert!(message["html"].as_str().unwrap().contains(&code));

    let mut inbox = Server::agent()
        .get(format!("{}/", mailbox.base))
        .call()
        .unwrap();
    let page = inbox.body_mut().read_to_string().unwrap();
    assert!(page.contains("<iframe sandbox=\"\""), "{page}");

    let (status, _) = server.post(
        "/auth/activate",
        &json!({"code": code}),
        Some((&email, PASSWORD)),
    );
    assert_eq!(status, 200);
}

/// Speaks SMTP by hand: each line sent, each reply read.
struct Client {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Client {
    fn connect(port: u16) -> Self {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = Self {
            reader: std::io::BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(client.reply().starts_with("220 "));
        client
    }

    /// One reply, its lines joined by `|`.
    fn reply(&mut self) -> String {
        use std::io::BufRead;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("|");
            }
        }
    }

    fn send(&mut self, line: &str) -> String {
        use std::io::Write;
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mailbox_speaks_enough_smtp_and_bounds_what_it_takes() {
    let mailbox = Mailbox::start();
    let to = unique_email("raw");
    let mut client = Client::connect(mailbox.smtp_port);

    assert!(client.send("MAIL FROM:<a@example.org>").starts_with("503 "));
    let ehlo = client.send("EHLO test.example");
    assert!(
        ehlo.contains("250-8BITMIME") && ehlo.contains("SMTPUTF8"),
        "{ehlo}"
    );
    assert!(client.send("DATA").starts_with("503 "));
    assert!(client.send("NOOP").starts_with("250 "));
    assert!(
        client
            .send(&format!("NOOP {}", "x".repeat(5000)))
            .starts_with("500 ")
    );
    // A transaction dropped by RSET leaves nothing behind.
    assert!(
        client
            .send("MAIL FROM:<dropped@example.org>")
            .starts_with("250 ")
    );
    assert!(
        client
            .send("RCPT TO:<dropped@example.com>")
            .starts_with("250 ")
    );
    assert!(client.send("RSET").starts_with("250 "));
    assert!(client.send("RCPT TO:<x@example.com>").starts_with("503 "));
    assert!(
        client
            .send("MAIL FROM:<a@example.org> BODY=8BITMIME SMTPUTF8")
            .starts_with("250 ")
    );
    assert!(client.send(&format!("RCPT TO:<{to}>")).starts_with("250 "));
    assert!(client.send("DATA").starts_with("354 "));
    let data = [
        "From: Sender <a@example.org>",
        &format!("To: {to}"),
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Ihr Aktivierungscode lautet: 04271993",
        "..a line that began with a dot",
        ".",
    ]
    .join("\r\n");
    let queued = client.send(&data);
    assert!(queued.starts_with("250 "), "{queued}");
    // Too big: refused, and the session stays in step.
    assert!(
        client
            .send("MAIL FROM:<a@example.org> SIZE=99999999")
            .starts_with("552 ")
    );
    assert!(client.send("MAIL FROM:<a@example.org>").starts_with("250 "));
    assert!(client.send(&format!("RCPT TO:<{to}>")).starts_with("250 "));
    assert!(client.send("DATA").starts_with("354 "));
    let mut big = vec!["Subject: big".to_owned(), String::new()];
    big.extend(std::iter::repeat_n("y".repeat(998), 1100));
    big.push(".".to_owned());
    let big = big.join("\r\n");
    assert!(
        client.send(&big).starts_with("552 "),
        "an oversized message"
    );
    assert!(client.send("QUIT").starts_with("221 "));

    let messages = mailbox.messages(&to);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["from"], "a@example.org");
    assert_eq!(messages[0]["subject"], "Grüße");
    assert_eq!(messages[0]["code"], "04271993");
    assert_eq!(
        messages[0]["body"],
        "Ihr Aktivierungscode lautet: 04271993\n.a line that began with a dot\n"
    );
    assert_eq!(messages[0]["html"], "");
    assert!(mailbox.messages("dropped@example.com").is_empty());
}
