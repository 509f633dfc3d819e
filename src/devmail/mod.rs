//! `activator mailbox`: a local stand-in for the email API and for an SMTP
//! server, for development. It accepts the email contract at `POST
//! /v1/send` and mail over SMTP (`smtp`), keeps the newest messages in
//! memory, and shows them as JSON (`GET /v1/messages?to=...`) and as an
//! HTML inbox at `/`, each message's HTML part beside its text.

pub mod smtp;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    /// The activation code, for convenience: see [`find_code`].
    pub code: Option<String>,
}

/// The in-memory store: the newest `capacity` messages, and the newest
/// `capacity` webhook events.
pub struct Inbox {
    messages: Mutex<VecDeque<Received>>,
    events: Mutex<VecDeque<Event>>,
    capacity: usize,
    next_id: AtomicU64,
}

/// A webhook event as posted (`WEBHOOK_URL` pointing here), with its
/// Standard Webhooks id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub received_at: DateTime<Utc>,
    pub webhook_id: Option<String>,
    pub signed: bool,
    pub body: serde_json::Value,
}

impl Inbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            messages: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            events: Mutex::new(VecDeque::new()),
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
        let code = find_code(&incoming.subject, &incoming.body);
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

    /// Keeps a posted event, dropping the oldest beyond capacity.
    pub fn push_event(&self, event: Event) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == self.capacity {
            events.pop_back();
        }
        events.push_front(event);
    }

    /// The events kept, newest first.
    pub fn events(&self) -> Vec<Event> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.iter().cloned().collect()
    }

    pub fn clear(&self) -> usize {
        let mut messages = self.lock();
        let count = messages.len();
        messages.clear();
        count
    }
}

/// The activation code in an email: 4 to 8 digits right after a colon
/// ("is: 123456", French "est : 1234"), else the first run of 4 to 8
/// digits; the subject first, then the body.
fn find_code(subject: &str, body: &str) -> Option<String> {
    [subject, body]
        .into_iter()
        .find_map(|text| digit_runs(text).find(|&(start, _)| after_colon(text, start)))
        .or_else(|| {
            [subject, body]
                .into_iter()
                .find_map(|text| digit_runs(text).next())
        })
        .map(|(_, digits)| digits.to_owned())
}

/// Whether `text[..start]` ends in a colon and spaces.
fn after_colon(text: &str, start: usize) -> bool {
    let before = text[..start].trim_end_matches([' ', '\u{a0}', '\t']);
    before.len() < start && before.ends_with(':')
}

/// Runs of 4 to 8 ASCII digits not touching other digits, with where they
/// start.
fn digit_runs(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            if !bytes[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if (4..=8).contains(&(i - start)) {
                return Some((start, &text[start..i]));
            }
        }
        None
    })
}

/// Takes a message. Only `application/json`: a web page may post a form or
/// `text/plain` anywhere without asking, but not JSON, so any page a
/// developer visits cannot drop mail into this inbox.
#[post("/v1/send", data = "<message>")]
fn send(
    inbox: &State<Arc<Inbox>>,
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
            let id = inbox.push(message);
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

/// The headers of a Standard Webhooks post that the inbox shows.
struct WebhookHeaders {
    id: Option<String>,
    signed: bool,
}

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for WebhookHeaders {
    type Error = std::convert::Infallible;

    async fn from_request(
        request: &'r rocket::Request<'_>,
    ) -> rocket::request::Outcome<Self, Self::Error> {
        let headers = request.headers();
        rocket::request::Outcome::Success(Self {
            id: headers.get_one("webhook-id").map(str::to_owned),
            signed: headers
                .get_one("webhook-signature")
                .is_some_and(|signature| signature.starts_with("v1,")),
        })
    }
}

/// Takes a webhook event (`WEBHOOK_URL=http://127.0.0.1:8025/v1/events`),
/// JSON only, as `send`.
#[post("/v1/events", data = "<event>")]
fn event(
    inbox: &State<Arc<Inbox>>,
    headers: WebhookHeaders,
    content_type: Option<&ContentType>,
    event: Result<Json<serde_json::Value>, rocket::serde::json::Error<'_>>,
) -> Status {
    match (content_type.is_some_and(|c| c.is_json()), event) {
        (true, Ok(Json(body))) => {
            tracing::info!(kind = %body["type"], "mailbox received an event");
            inbox.push_event(Event {
                received_at: Utc::now(),
                webhook_id: headers.id,
                signed: headers.signed,
                body,
            });
            Status::NoContent
        }
        (false, _) => Status::UnsupportedMediaType,
        (true, Err(_)) => Status::UnprocessableEntity,
    }
}

#[get("/v1/events")]
fn events(inbox: &State<Arc<Inbox>>) -> Json<Vec<Event>> {
    Json(inbox.events())
}

#[get("/v1/messages?<to>&<limit>")]
fn messages(
    inbox: &State<Arc<Inbox>>,
    to: Option<&str>,
    limit: Option<usize>,
) -> Json<Vec<Received>> {
    Json(inbox.list(to, limit.unwrap_or(100)))
}

#[delete("/v1/messages")]
fn clear(inbox: &State<Arc<Inbox>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "deleted": inbox.clear() }))
}

#[get("/?<to>")]
fn inbox(inbox: &State<Arc<Inbox>>, to: Option<&str>) -> RawHtml<String> {
    RawHtml(render_inbox(&inbox.list(to, 100), &inbox.events()))
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

fn render_inbox(messages: &[Received], events: &[Event]) -> String {
    let mut rows = String::new();
    for event in events {
        rows.push_str(&format!(
            "<article>\n  <header><span class=\"to\">event {kind}</span><time>{at}</time></header>\n  <div class=\"parts\"><pre>{body}</pre></div>\n  <footer>{id} · {signed}</footer>\n</article>\n",
            kind = escape(event.body["type"].as_str().unwrap_or("?")),
            at = event.received_at.format("%H:%M:%S"),
            body = escape(&serde_json::to_string_pretty(&event.body).unwrap_or_default()),
            id = escape(event.webhook_id.as_deref().unwrap_or("no webhook-id")),
            signed = if event.signed { "signed (v1)" } else { "not signed" },
        ));
    }
    for message in messages {
        rows.push_str(&format!(
            r#"<article>
  <header><span class="to">{to}</span><time>{at}</time></header>
  <div class="code">{code}</div>
  <h2>{subject}</h2>
  <div class="parts"><pre>{body}</pre>{html}</div>
  <footer>from {from} · message {id}</footer>
</article>
"#,
            to = escape(&message.to),
            at = message.received_at.format("%Y-%m-%d %H:%M:%S UTC"),
            code = message.code.as_deref().map(escape).unwrap_or_default(),
            subject = escape(&message.subject),
            body = escape(&message.body),
            // The HTML part in a sandbox: no scripts, no forms, an origin of
            // its own; escaped once to sit in the attribute.
            html = if message.html.is_empty() {
                String::new()
            } else {
                format!(
                    r#"<iframe sandbox="" referrerpolicy="no-referrer" title="HTML part" srcdoc="{}"></iframe>"#,
                    escape(&message.html)
                )
            },
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
  body {{ font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 72rem; margin: 2rem auto; color: #1f2328; }}
  .parts {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(20rem, 1fr)); gap: 0.75rem; align-items: stretch; }}
  iframe {{ width: 100%; min-height: 18rem; border: 1px solid #d0d7de; border-radius: 4px; background: #fff; }}
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

/// The mailbox's web server, configured by `figment` (address, port), with
/// an inbox of its own.
pub fn rocket(figment: Figment, capacity: usize) -> Rocket<Build> {
    serve_inbox(figment, Arc::new(Inbox::new(capacity)))
}

/// The web server over `mailbox`, which the SMTP side may fill too.
pub fn serve_inbox(figment: Figment, mailbox: Arc<Inbox>) -> Rocket<Build> {
    rocket::custom(figment)
        .manage(mailbox)
        .mount("/", routes![send, event, events, messages, clear, inbox])
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
    fn the_code_is_the_digits_after_a_colon_or_else_the_first_run_of_four_to_eight() {
        let code = |body| find_code("Your activation code", body);
        assert_eq!(
            code("code: 0427, valid 60 seconds").as_deref(),
            Some("0427")
        );
        assert_eq!(
            code("Order 2026\nYour code is: 12345678\n").as_deref(),
            Some("12345678")
        );
        assert_eq!(
            code("Votre code est\u{a0}: 731905\n").as_deref(),
            Some("731905")
        );
        assert_eq!(code("ref 123 then 98765").as_deref(), Some("98765"));
        assert_eq!(code("ends with 9876").as_deref(), Some("9876"));
        assert_eq!(code("too long: 123456789, none 123 here"), None);
        assert_eq!(find_code("Code 5555", "is: 1234").as_deref(), Some("1234"));
    }

    #[test]
    fn the_mailbox_keeps_the_newest_messages_first() {
        let inbox = Inbox::new(2);
        inbox.push(incoming("a@example.com", "1111"));
        inbox.push(incoming("B@example.com", "2222"));
        inbox.push(incoming("b@example.com", "3333"));
        let all = inbox.list(None, 10);
        let codes: Vec<_> = all.iter().map(|m| m.code.clone().unwrap()).collect();
        assert_eq!(codes, ["3333", "2222"]);
        assert_eq!(inbox.list(Some("b@EXAMPLE.com"), 10).len(), 2);
        assert_eq!(inbox.list(Some("a@example.com"), 10).len(), 0);
    }

    #[test]
    fn the_inbox_escapes_what_it_shows() {
        let inbox = Inbox::new(5);
        inbox.push(incoming("<script>@example.com", "code 1234 <b>"));
        let html = render_inbox(&inbox.list(None, 10), &[]);
        assert!(html.contains("&lt;script&gt;@example.com"));
        assert!(!html.contains("<b>"));
        assert!(html.contains(">1234<"));
    }

    #[test]
    fn the_inbox_shows_the_html_part_in_a_sandbox_beside_the_text() {
        let inbox = Inbox::new(5);
        let mut message = incoming("a@example.com", "code 1234");
        message.html = r#"<p onclick="x()">code <b>1234</b> &amp; "more"</p>"#.into();
        inbox.push(message);
        let html = render_inbox(&inbox.list(None, 10), &[]);
        assert!(
            html.contains(r#"<iframe sandbox="" referrerpolicy="no-referrer" title="HTML part" srcdoc="&lt;p onclick=&quot;x()&quot;&gt;code &lt;b&gt;1234&lt;/b&gt; &amp;amp; &quot;more&quot;&lt;/p&gt;"></iframe>"#),
            "{html}"
        );
        assert!(html.contains("<pre>code 1234</pre>"));
    }
}
