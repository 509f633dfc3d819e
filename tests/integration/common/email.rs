//! The outbox as the email tests read it, `serve` started with an email
//! transport, and the MIME message it sends over SMTP.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::{MailSink, Server, TestDb, eventually};

/// One outbox message, as the tests look at it.
#[derive(diesel::QueryableByName, Debug, Clone)]
pub struct OutboxRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bytea>)]
    pub payload: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    pub last_status: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub last_error: Option<String>,
}

/// Every outbox message, oldest first.
pub async fn outbox(db: &TestDb) -> Vec<OutboxRow> {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "SELECT status, attempts, payload, last_status, last_error \
         FROM email_outbox ORDER BY id",
    )
    .load(&mut conn)
    .await
    .unwrap()
}

/// Waits until every outbox message has left `queued`.
pub async fn settled(db: &TestDb, timeout: Duration) -> Vec<OutboxRow> {
    eventually(timeout, async || {
        let rows = outbox(db).await;
        rows.iter()
            .all(|row| row.status != "queued")
            .then_some(rows)
    })
    .await
    .unwrap_or_else(|| panic!("outbox still queued after {timeout:?}"))
}

/// `serve` posting its emails to the HTTP endpoint `sink`, from
/// accounts@example.org.
pub fn serve_with_email_api(db: &TestDb, sink: &MailSink, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("EMAIL_API_URL", sink.url.as_str()),
        ("SYSTEM_EMAIL", "accounts@example.org"),
    ];
    env.extend_from_slice(extra);
    Server::start(&db.url, &env)
}

/// `serve` sending its emails over SMTP to `smtp_url`, from
/// accounts@example.org.
pub fn serve_with_smtp(db: &TestDb, smtp_url: &str, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("SMTP_URL", smtp_url),
        ("SYSTEM_EMAIL", "accounts@example.org"),
    ];
    env.extend_from_slice(extra);
    Server::start(&db.url, &env)
}

/// The text and HTML parts of a raw message, checking its headers.
pub fn parts(raw: &str, to: &str) -> (String, String) {
    let message = MessageParser::default()
        .parse(raw.as_bytes())
        .expect("a MIME message");
    let from = message.from().and_then(|from| from.first()).unwrap();
    assert_eq!(from.address(), Some("accounts@example.org"));
    let recipient = message.to().and_then(|to| to.first()).unwrap();
    assert_eq!(recipient.address(), Some(to));
    assert!(message.date().is_some(), "no Date: {raw}");
    let id = message.message_id().expect("a Message-ID");
    assert!(id.ends_with("@example.org"), "{id}");
    let content_type = message.content_type().unwrap();
    assert_eq!(
        (content_type.ctype(), content_type.subtype()),
        ("multipart", Some("alternative"))
    );
    assert_eq!(
        (message.text_body_count(), message.html_body_count()),
        (1, 1)
    );
    let html = message.html_part(0).unwrap();
    assert!(matches!(html.body, PartType::Html(_)), "no real HTML part");
    (
        message.body_text(0).unwrap().into_owned(),
        message.body_html(0).unwrap().into_owned(),
    )
}

/// The code of the newest email `sink` received for `email`.
pub fn code_for(sink: &MailSink, email: &str) -> String {
    codes_for(sink, email, 1).pop().unwrap()
}

/// The codes of the emails `sink` received for `email`, oldest first, once
/// there are at least `n` (within 20 s).
pub fn codes_for(sink: &MailSink, email: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let codes: Vec<String> = sink
            .delivered()
            .into_iter()
            .filter(|message| message["to"] == email)
            .map(|message| super::code_in(message["body"].as_str().unwrap()))
            .collect();
        if codes.len() >= n {
            return codes;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} emails to {email}",
            codes.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `serve` with its metrics listener on a port of its own, mailing `sink`;
/// returns the server and its `/metrics` URL.
pub fn serve_with_metrics(
    db: &TestDb,
    sink: &MailSink,
    extra: &[(&str, &str)],
) -> (Server, String) {
    let metrics = format!("127.0.0.1:{}", super::server::free_port());
    let mut env = vec![
        ("EMAIL_API_URL", sink.url.as_str()),
        ("METRICS_ADDRESS", metrics.as_str()),
    ];
    env.extend_from_slice(extra);
    let server = Server::start(&db.url, &env);
    (server, format!("http://{metrics}/metrics"))
}

/// `GET /metrics` at `url`, in Prometheus' text format.
pub fn scrape(url: &str) -> String {
    let mut response = Server::agent().get(url).call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.body_mut().read_to_string().unwrap()
}

/// The value of `series` (name and labels as exposed), if exposed.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}
