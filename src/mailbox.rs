//! `activator mailbox`: a local stand-in for the email API, for development.
//! It accepts the email contract at `POST /v1/send`, keeps the newest
//! messages in memory, and shows them as JSON (`GET /v1/messages?to=...`)
//! and as an HTML inbox at `/`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use rocket::figment::Figment;
use rocket::http::{ContentType, Status};
use rocket::response::content::RawHtml;
use rocket::serde::json::Json;
use rocket::{Build, Rocket, State, catch, catchers, delete, get, post, routes};
use serde::{Deserialize, Serialize};

/// A message as posted by the service (the email API contract).
#[derive(Debug, Deserialize)]
pub struct Incoming {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    #[serde(default)]
    pub html: String,
}

/// A message as the mailbox keeps and shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    pub id: u64,
    pub received_at: DateTime<Utc>,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub html: String,
    /// The first four-digit number in the subject or body, for convenience.
    pub code: Option<String>,
}

/// The in-memory store: the newest `capacity` messages.
pub struct Mailbox {
    messages: Mutex<VecDeque<Received>>,
    capacity: usize,
    next_id: AtomicU64,
}

impl Mailbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            messages: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity: capacity.max(1),
            next_id: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Received>> {
        // A panic while holding the lock cannot leave the queue inconsistent.
        self.messages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn push(&self, incoming: Incoming) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let code = find_code(&incoming.subject).or_else(|| find_code(&incoming.body));
        let received = Received {
            id,
            received_at: Utc::now(),
            from: incoming.from,
            to: incoming.to,
            subject: incoming.subject,
            body: incoming.body,
            html: incoming.html,
            code,
        };
        let mut messages = self.lock();
        if messages.len() == self.capacity {
            messages.pop_front();
        }
        messages.push_back(received);
        id
    }

    /// Newest first, optionally only those to `to` (case-insensitive).
    pub fn list(&self, to: Option<&str>, limit: usize) -> Vec<Received> {
        let to = to.map(|to| to.trim().to_lowercase());
        self.lock()
            .iter()
            .rev()
            .filter(|message| {
                to.as_deref()
                    .is_none_or(|to| message.to.to_lowercase() == to)
            })
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn clear(&self) -> usize {
        let mut messages = self.lock();
        let count = messages.len();
        messages.clear();
        count
    }
}

/// The first run of exactly four ASCII digits.
fn find_code(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut start = None;
    for (i, byte) in bytes.iter().chain(std::iter::once(&b' ')).enumerate() {
        match (byte.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s == 4 {
                    return Some(text[s..i].to_owned());
                }
                start = None;
            }
            _ => {}
        }
    }
    None
}

/// Takes a message. Only `application/json`: a web page may post a form or
/// `text/plain` anywhere without asking, but not JSON, so any page a
/// developer visits cannot drop mail into this inbox.
#[post("/v1/send", data = "<message>")]
fn send(
    mailbox: &State<Mailbox>,
    content_type: Option<&ContentType>,
    message: Result<Json<Incoming>, rocket::serde::json::Error<'_>>,
) -> (Status, Json<serde_json::Value>) {
    if !content_type.is_some_and(|content_type| content_type.is_json()) {
        return (
            Status::UnsupportedMediaType,
            Json(serde_json::json!({ "detail": "Send application/json" })),
        );
    }
    match message {
        Ok(Json(message)) => {
            tracing::info!(
                to = message.to,
                subject = message.subject,
                "mailbox received a message"
            );
            let id = mailbox.push(message);
            (
                Status::Ok,
                Json(serde_json::json!({ "detail": "Message accepted", "id": id })),
            )
        }
        Err(err) => (
            Status::UnprocessableEntity,
            Json(serde_json::json!({ "detail": format!("Invalid message: {err}") })),
        ),
    }
}

#[get("/v1/messages?<to>&<limit>")]
fn messages(
    mailbox: &State<Mailbox>,
    to: Option<&str>,
    limit: Option<usize>,
) -> Json<Vec<Received>> {
    Json(mailbox.list(to, limit.unwrap_or(100)))
}

#[delete("/v1/messages")]
fn clear(mailbox: &State<Mailbox>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "deleted": mailbox.clear() }))
}

#[get("/?<to>")]
fn inbox(mailbox: &State<Mailbox>, to: Option<&str>) -> RawHtml<String> {
    RawHtml(render_inbox(&mailbox.list(to, 100)))
}

#[catch(default)]
fn default_catcher(status: Status, _request: &rocket::Request<'_>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "detail": status.reason().unwrap_or("Error") }))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn render_inbox(messages: &[Received]) -> String {
    let mut rows = String::new();
    for message in messages {
        rows.push_str(&format!(
            r#"<article>
  <header><span class="to">{to}</span><time>{at}</time></header>
  <div class="code">{code}</div>
  <h2>{subject}</h2>
  <pre>{body}</pre>
  <footer>from {from} · message {id}</footer>
</article>
"#,
            to = escape(&message.to),
            at = message.received_at.format("%Y-%m-%d %H:%M:%S UTC"),
            code = message.code.as_deref().map(escape).unwrap_or_default(),
            subject = escape(&message.subject),
            body = escape(&message.body),
            from = escape(&message.from),
            id = message.id,
        ));
    }
    if messages.is_empty() {
        rows.push_str("<p class=\"empty\">No messages yet. Register at the API and the email shows up here.</p>");
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="3">
<title>activator mailbox ({count})</title>
<style>
  body {{ font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 48rem; margin: 2rem auto; color: #1f2328; }}
  article {{ border: 1px solid #d0d7de; border-radius: 6px; padding: 1rem; margin-bottom: 1rem; }}
  header {{ display: flex; justify-content: space-between; color: #656d76; }}
  .to {{ font-weight: 600; color: #1f2328; }}
  .code {{ font: bold 2.5rem ui-monospace, Menlo, monospace; letter-spacing: 0.3em; margin: 0.5rem 0; }}
  h2 {{ font-size: 1rem; margin: 0.5rem 0; }}
  pre {{ white-space: pre-wrap; background: #f6f8fa; padding: 0.5rem; border-radius: 4px; }}
  footer, .empty {{ color: #656d76; font-size: 0.85rem; }}
</style>
</head>
<body>
<h1>Mailbox</h1>
<p>Newest first. JSON at <a href="/v1/messages">/v1/messages</a>. Refreshes every 3 seconds.</p>
{rows}
</body>
</html>
"#,
        count = messages.len(),
    )
}

/// The mailbox server, configured by `figment` (address, port).
pub fn rocket(figment: Figment, capacity: usize) -> Rocket<Build> {
    rocket::custom(figment)
        .manage(Mailbox::new(capacity))
        .mount("/", routes![send, messages, clear, inbox])
        .register("/", catchers![default_catcher])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(to: &str, body: &str) -> Incoming {
        Incoming {
            from: "no-reply@example.com".into(),
            to: to.into(),
            subject: "Your activation code".into(),
            body: body.into(),
            html: String::new(),
        }
    }

    #[test]
    fn the_code_is_the_first_run_of_exactly_four_digits() {
        assert_eq!(
            find_code("code: 0427, valid 60 seconds").as_deref(),
            Some("0427")
        );
        assert_eq!(find_code("year 20261 then 1234").as_deref(), Some("1234"));
        assert_eq!(find_code("ends with 9876").as_deref(), Some("9876"));
        assert_eq!(find_code("none 123 here"), None);
    }

    #[test]
    fn the_mailbox_keeps_the_newest_messages_first() {
        let mailbox = Mailbox::new(2);
        mailbox.push(incoming("a@example.com", "1111"));
        mailbox.push(incoming("B@example.com", "2222"));
        mailbox.push(incoming("b@example.com", "3333"));
        let all = mailbox.list(None, 10);
        let codes: Vec<_> = all.iter().map(|m| m.code.clone().unwrap()).collect();
        assert_eq!(codes, ["3333", "2222"]);
        assert_eq!(mailbox.list(Some("b@EXAMPLE.com"), 10).len(), 2);
        assert_eq!(mailbox.list(Some("a@example.com"), 10).len(), 0);
    }

    #[test]
    fn the_inbox_escapes_what_it_shows() {
        let mailbox = Mailbox::new(5);
        mailbox.push(incoming("<script>@example.com", "code 1234 <b>"));
        let html = render_inbox(&mailbox.list(None, 10));
        assert!(html.contains("&lt;script&gt;@example.com"));
        assert!(!html.contains("<b>"));
        assert!(html.contains(">1234<"));
    }
}
