//! Delivering one email, and what the provider's answer means.
//!
//! This is the only code that knows the protocols. Each transport sorts a
//! provider's answer into a [`Failure`] class the dispatcher acts on:
//! delivered, throttled (pause all sending, not an attempt), transient
//! (retry with backoff) or permanent (dead at once, the reason kept).
//!
//! - HTTP, the contract of the service this one replaces: `POST
//!   EMAIL_API_URL` with `{"from","to","subject","body","html"}` and
//!   `Idempotency-Key: <message id>`, so a provider that supports it drops a
//!   repeat after a crash. Connections are kept alive and pooled, as many
//!   per host as the dispatcher's window, and every answer is read to the end
//!   so its connection can be reused.
//! - SMTP (`SMTP_URL`), through lettre over rustls: a multipart/alternative
//!   message (text and HTML) with `From`, `To`, `Subject`, `Date` and a
//!   `Message-ID` that stays the same across retries. Connections are
//!   pooled, as many idle ones kept as the dispatcher's window. Replies sort
//!   as HTTP answers do: 2xx delivered; 421, 451 and 452 (the server is
//!   closing, failing for now, or out of room) throttle like a 429 (docs/EMAIL.md,
//!   "Provider answers"); other 4xx are transient; 5xx permanent, the reply
//!   kept. A send that outlives `SEND_TIMEOUT` is
//!   cancelled and the pool rebuilt, since a cancelled send leaves its
//!   connection mid-conversation.
//! - The log, in development only: the message, code included, is logged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Serialize;

use crate::settings::SmtpUrl;
use crate::traces::context::Carrier;

/// How long connecting to the email API may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one whole send may take, answer included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an answer is read; the rest (rare) costs the connection.
const ANSWER_LIMIT: u64 = 64 * 1024;
/// How much of an answer is kept as the reason of a failure.
const REASON_CHARS: usize = 200;

/// One message, ready to go.
#[derive(Serialize)]
pub struct Outgoing<'a> {
    /// The outbox row's id: the idempotency key.
    #[serde(skip)]
    pub id: i64,
    /// When the message was queued: with `id`, a `Message-ID` unique even
    /// across databases, and the same on every attempt.
    #[serde(skip)]
    pub queued_at: DateTime<Utc>,
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    /// The text body.
    pub body: &'a str,
    pub html: &'a str,
    /// The delivery's trace context, sent as `traceparent` (and
    /// `tracestate`) to an email API; SMTP carries none.
    #[serde(skip)]
    pub trace: Option<&'a Carrier>,
}

/// Why a message was not delivered, sorted by what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The provider asks to slow down (HTTP 429): pause all sending for
    /// `retry_after` (or the dispatcher's own backoff) and try this message
    /// again then; not counted as an attempt.
    Throttled { retry_after: Option<Duration> },
    /// Worth another attempt later: a 5xx, a 408, a timeout, a lost
    /// connection.
    Transient { status: Option<u16>, reason: String },
    /// Another attempt would get the same answer: any other 4xx, or a
    /// message that cannot be written.
    Permanent { status: Option<u16>, reason: String },
}

impl Failure {
    /// The provider's status, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Throttled { .. } => Some(429),
            Self::Transient { status, .. } => *status,
            Self::Permanent { status, .. } => *status,
        }
    }
}

impl Failure {
    /// The failure with every occurrence of `secret` (the message's code,
    /// which a provider may echo back) masked in its reason, so that it is
    /// neither logged nor kept.
    pub fn redacted(self, secret: &str) -> Self {
        let mask = |reason: String| match secret.is_empty() || !reason.contains(secret) {
            true => reason,
            false => reason.replace(secret, &"*".repeat(secret.chars().count())),
        };
        match self {
            Self::Transient { status, reason } => Self::Transient {
                status,
                reason: mask(reason),
            },
            Self::Permanent { status, reason } => Self::Permanent {
                status,
                reason: mask(reason),
            },
            throttled @ Self::Throttled { .. } => throttled,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Throttled { .. } => f.write_str("throttled by the provider"),
            Self::Transient { status, reason } | Self::Permanent { status, reason } => match status
            {
                Some(status) => write!(f, "{status}: {reason}"),
                None => f.write_str(reason),
            },
        }
    }
}

/// Where messages go.
#[derive(Clone)]
pub enum Transport {
    Http(HttpTransport),
    Smtp(SmtpTransport),
    /// Development only: the message, code included, is written to the log.
    Log,
}

impl Transport {
    /// Delivers one message; `Ok` holds the provider's status (HTTP, or
    /// the SMTP reply's code), `None` for the log.
    pub async fn send(&self, message: &Outgoing<'_>) -> Result<Option<u16>, Failure> {
        match self {
            Self::Http(http) => http.send(message).await.map(Some),
            Self::Smtp(smtp) => smtp.send(message).await.map(Some),
            Self::Log => {
                tracing::warn!(
                    to = message.to,
                    subject = message.subject,
                    body = message.body,
                    "email not sent (EMAIL_API_URL is unset); its text follows"
                );
                Ok(None)
            }
        }
    }
}

/// POSTs to the email API. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct HttpTransport {
    url: std::sync::Arc<str>,
    agent: ureq::Agent,
}

impl HttpTransport {
    /// A transport to `url` keeping up to `connections` idle connections
    /// (the dispatcher's window) alive.
    pub fn new(url: &str, connections: usize) -> Self {
        Self {
            url: url.into(),
            agent: http_agent(connections),
        }
    }

    /// Posts on the blocking pool (ureq is blocking), so the dispatcher's
    /// other sends and its bookkeeping carry on meanwhile.
    async fn send(&self, message: &Outgoing<'_>) -> Result<u16, Failure> {
        let body = serde_json::to_vec(message).map_err(|err| Failure::Permanent {
            status: None,
            reason: format!("cannot encode the message: {err}"),
        })?;
        let (url, agent, key) = (self.url.clone(), self.agent.clone(), message.id);
        let trace = message.trace.cloned();
        let posted = tokio::task::spawn_blocking(move || {
            let request = agent
                .post(&*url)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", key.to_string());
            let response = with_trace(request, trace.as_ref()).send(&body[..]);
            classify_response(response)
        })
        .await;
        match posted {
            Ok(result) => result,
            Err(err) => Err(Failure::Transient {
                status: None,
                reason: format!("the send failed: {err}"),
            }),
        }
    }
}

/// `request` carrying the trace context `trace` (W3C Trace Context), if
/// there is one.
pub(super) fn with_trace<B>(
    request: ureq::RequestBuilder<B>,
    trace: Option<&Carrier>,
) -> ureq::RequestBuilder<B> {
    let Some(trace) = trace else {
        return request;
    };
    let request = request.header("traceparent", &trace.traceparent);
    match &trace.tracestate {
        Some(state) => request.header("tracestate", state),
        None => request,
    }
}

/// An HTTP client for posts: the send's timeouts, answers of every status
/// returned (not errors), and up to `connections` idle connections kept
/// alive (the dispatcher's window). A redirect means a wrong URL: it is an
/// answer, not followed elsewhere.
pub(super) fn http_agent(connections: usize) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(SEND_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(connections)
        .max_idle_connections_per_host(connections)
        .user_agent(concat!("activator/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Sends over SMTP. Cheap to clone; clones share the pool.
///
/// lettre's pool starts a task when it is built and another when it is
/// dropped, so it must live inside a tokio runtime: it is built on the first
/// send (in the dispatcher's runtime), not with the transport.
#[derive(Clone)]
pub struct SmtpTransport(Arc<Smtp>);

struct Smtp {
    builder: AsyncSmtpTransportBuilder,
    /// The pool, once built, and how many times it was built (so that two
    /// sends timing out together rebuild it once).
    client: Mutex<(u64, Option<AsyncSmtpTransport<Tokio1Executor>>)>,
}

/// The SMTP server's security, for the start-up log (the URL's query is
/// redacted there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
    /// `?tls=required`: STARTTLS or no delivery.
    StartTls,
    /// `?tls=opportunistic`: STARTTLS when offered.
    Opportunistic,
    /// Neither: plain text, for a relay on the same host or the mailbox.
    Plain,
}

impl SmtpTransport {
    /// A transport to `url` keeping up to `connections` idle connections
    /// (the dispatcher's window); messages come from `from`
    /// (`SYSTEM_EMAIL`), which must be an address SMTP can carry.
    pub fn new(url: &SmtpUrl, connections: usize, from: &str) -> anyhow::Result<Self> {
        // lettre's error would not echo the URL, but may not be clear either.
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url.0).map_err(|_| {
            anyhow::anyhow!("invalid setting SMTP_URL: not an SMTP URL this build can use")
        })?;
        from.parse::<Mailbox>().map_err(|err| {
            anyhow::anyhow!("invalid setting SYSTEM_EMAIL: not an address SMTP can carry ({err})")
        })?;
        let max_size = u32::try_from(connections).unwrap_or(u32::MAX).max(1);
        let builder = builder.timeout(Some(CONNECT_TIMEOUT)).pool_config(
            PoolConfig::new()
                .max_size(max_size)
                .idle_timeout(Duration::from_secs(60)),
        );
        Ok(Self(Arc::new(Smtp {
            builder,
            client: Mutex::new((0, None)),
        })))
    }

    /// How the connection to the server is protected, as the URL says.
    pub fn security(url: &SmtpUrl) -> SmtpSecurity {
        let parsed = url::Url::parse(&url.0).ok();
        let tls = parsed.as_ref().and_then(|parsed| {
            parsed
                .query_pairs()
                .find(|(name, _)| name == "tls")
                .map(|(_, value)| value.into_owned())
        });
        match (parsed.as_ref().map(url::Url::scheme), tls.as_deref()) {
            (Some("smtps"), _) => SmtpSecurity::ImplicitTls,
            (_, Some("required")) => SmtpSecurity::StartTls,
            (_, Some("opportunistic")) => SmtpSecurity::Opportunistic,
            _ => SmtpSecurity::Plain,
        }
    }

    /// The pool (built now if it is not yet) and its generation.
    fn client(&self) -> (u64, AsyncSmtpTransport<Tokio1Executor>) {
        let mut client = self.0.client.lock().unwrap_or_else(|e| e.into_inner());
        let (generation, pool) = &mut *client;
        let pool = pool.get_or_insert_with(|| {
            *generation += 1;
            self.0.builder.clone().build()
        });
        (*generation, pool.clone())
    }

    /// Drops the pool of `generation`, unless it was rebuilt since; the
    /// next send builds a fresh one.
    fn discard(&self, generation: u64) {
        let mut client = self.0.client.lock().unwrap_or_else(|e| e.into_inner());
        if client.0 == generation {
            client.1 = None;
        }
    }

    async fn send(&self, message: &Outgoing<'_>) -> Result<u16, Failure> {
        let email = write_email(message).map_err(|reason| Failure::Permanent {
            status: None,
            reason,
        })?;
        let (generation, client) = self.client();
        match tokio::time::timeout(SEND_TIMEOUT, client.send(email)).await {
            Ok(Ok(reply)) => Ok(u16::from(reply.code())),
            Ok(Err(err)) => Err(classify_smtp(&err)),
            Err(_) => {
                self.discard(generation);
                Err(Failure::Transient {
                    status: None,
                    reason: format!(
                        "the SMTP server did not finish within {}s",
                        SEND_TIMEOUT.as_secs()
                    ),
                })
            }
        }
    }
}

/// The message as SMTP carries it: multipart/alternative, text then HTML.
fn write_email(message: &Outgoing<'_>) -> Result<lettre::Message, String> {
    let from: Mailbox = message
        .from
        .parse()
        .map_err(|err| format!("cannot write the message: the sender: {err}"))?;
    let to: Mailbox = message
        .to
        .parse()
        .map_err(|err| format!("cannot write the message: the recipient: {err}"))?;
    let message_id = format!(
        "<{}.{}@{}>",
        message.id,
        message.queued_at.timestamp_micros(),
        from.email.domain()
    );
    lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(message.subject)
        .message_id(Some(message_id))
        .date_now()
        .multipart(MultiPart::alternative_plain_html(
            message.body.to_owned(),
            message.html.to_owned(),
        ))
        .map_err(|err| format!("cannot write the message: {err}"))
}

/// What an SMTP error means for a message.
fn classify_smtp(err: &lettre::transport::smtp::Error) -> Failure {
    use std::error::Error as _;
    let Some(code) = err.status().map(u16::from) else {
        // No reply: the connection, TLS or a timeout.
        return Failure::Transient {
            status: None,
            reason: reason(format!("SMTP server unreachable: {err}").as_bytes()),
        };
    };
    // The server's own text, without lettre's "permanent error (550)".
    let text = err
        .source()
        .map(ToString::to_string)
        .unwrap_or_else(|| err.to_string());
    classify_reply(code, &text)
}

/// What an SMTP reply code means for a message: 421 (closing), 451 (local
/// error, try later) and 452 (out of room) ask to slow down, like a 429;
/// other 4xx are worth another try; 5xx will not change.
pub fn classify_reply(code: u16, text: &str) -> Failure {
    let reason = reason(text.as_bytes());
    match code {
        421 | 451 | 452 => Failure::Throttled { retry_after: None },
        500..=599 => Failure::Permanent {
            status: Some(code),
            reason,
        },
        _ => Failure::Transient {
            status: Some(code),
            reason,
        },
    }
}

/// Sorts an answer (or the lack of one) into delivered (its status) or a
/// failure class.
pub(super) fn classify_response(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<u16, Failure> {
    let mut response = match response {
        Ok(response) => response,
        Err(err) => {
            return Err(Failure::Transient {
                status: None,
                reason: format!("unreachable: {err}"),
            });
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    // Read the whole answer, so the connection goes back to the pool.
    let answer = response
        .body_mut()
        .with_config()
        .limit(ANSWER_LIMIT)
        .read_to_vec()
        .unwrap_or_default();
    classify(status, retry_after, &answer).map(|()| status)
}

/// What an HTTP status means for a message.
pub fn classify(status: u16, retry_after: Option<Duration>, answer: &[u8]) -> Result<(), Failure> {
    match status {
        200..=299 => Ok(()),
        429 => Err(Failure::Throttled { retry_after }),
        408 | 500..=599 => Err(Failure::Transient {
            status: Some(status),
            reason: reason(answer),
        }),
        _ => Err(Failure::Permanent {
            status: Some(status),
            reason: reason(answer),
        }),
    }
}

/// The start of a provider's answer, on one line, for whoever reads
/// `last_error`.
fn reason(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(REASON_CHARS)
        .collect();
    match text.split_whitespace().collect::<Vec<_>>().join(" ") {
        empty if empty.is_empty() => "(no reason given)".to_owned(),
        text => text,
    }
}

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_delivered_throttled_transient_and_permanent() {
        assert_eq!(classify(200, None, b""), Ok(()));
        assert_eq!(classify(202, None, b"queued"), Ok(()));
        assert_eq!(
            classify(429, Some(Duration::from_secs(3)), b""),
            Err(Failure::Throttled {
                retry_after: Some(Duration::from_secs(3))
            })
        );
        for status in [408, 500, 502, 503, 504] {
            assert!(
                matches!(classify(status, None, b"down"), Err(Failure::Transient { status: Some(s), .. }) if s == status),
                "{status}"
            );
        }
        for status in [301, 400, 401, 403, 404, 413, 422] {
            assert!(
                matches!(classify(status, None, b"no"), Err(Failure::Permanent { status: Some(s), .. }) if s == status),
                "{status}"
            );
        }
    }

    #[test]
    fn smtp_replies_sort_like_http_answers() {
        for code in [421, 451, 452] {
            assert_eq!(
                classify_reply(code, "4.3.2 busy"),
                Failure::Throttled { retry_after: None },
                "{code}"
            );
        }
        for code in [450, 454, 471] {
            assert_eq!(
                classify_reply(code, "4.3.0 try\r\nagain"),
                Failure::Transient {
                    status: Some(code),
                    reason: "4.3.0 try again".into(),
                },
                "{code}"
            );
        }
        for code in [550, 552, 553, 554] {
            assert!(
                matches!(classify_reply(code, "5.1.1 no such user"), Failure::Permanent { status: Some(s), ref reason } if s == code && reason == "5.1.1 no such user"),
                "{code}"
            );
        }
    }

    #[test]
    fn smtp_urls_say_how_the_connection_is_protected() {
        for (url, security) in [
            ("smtps://u:p@h:465", SmtpSecurity::ImplicitTls),
            ("smtp://u:p@h:587?tls=required", SmtpSecurity::StartTls),
            (
                "smtp://h:587?tls=opportunistic",
                SmtpSecurity::Opportunistic,
            ),
            ("smtp://h:25", SmtpSecurity::Plain),
        ] {
            assert_eq!(
                SmtpTransport::security(&SmtpUrl(url.into())),
                security,
                "{url}"
            );
        }
    }

    #[test]
    fn the_smtp_message_is_text_and_html_with_every_header() {
        let queued_at = DateTime::parse_from_rfc3339("2026-11-25T08:00:00Z")
            .unwrap()
            .to_utc();
        let message = Outgoing {
            id: 42,
            queued_at,
            from: "no-reply@example.org",
            to: "ana@example.com",
            subject: "Votre code d’activation",
            body: "Votre code d’activation est\u{a0}: 1234\n",
            html: "<p>1234</p>",
            trace: None,
        };
        let email = write_email(&message).unwrap();
        let raw = String::from_utf8(email.formatted()).unwrap();
        for header in [
            "From: no-reply@example.org\r\n",
            "To: ana@example.com\r\n",
            "Subject: Votre code =?utf-8?b?",
            "Date: ",
            "Message-ID: <42.1795593600000000@example.org>\r\n",
            "Content-Type: multipart/alternative;",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Type: text/html; charset=utf-8",
        ] {
            assert!(raw.contains(header), "no {header:?} in {raw}");
        }
        let refused = Outgoing {
            to: "not an address",
            ..message
        };
        assert!(write_email(&refused).is_err());
    }

    #[test]
    fn a_code_echoed_by_the_provider_is_masked() {
        let failure = Failure::Permanent {
            status: Some(400),
            reason: "code 4821 in body 4821x rejected".into(),
        };
        assert_eq!(
            failure.redacted("4821").to_string(),
            "400: code **** in body ****x rejected"
        );
    }

    #[test]
    fn a_reason_is_one_short_line() {
        let Err(Failure::Permanent { reason, .. }) =
            classify(422, None, "bad\n\taddress\r\n".repeat(100).as_bytes())
        else {
            panic!("not permanent");
        };
        assert!(reason.starts_with("bad address bad address"), "{reason}");
        assert!(reason.chars().count() <= REASON_CHARS && !reason.contains('\n'));
        let Err(failure) = classify(400, None, b"") else {
            panic!("delivered");
        };
        assert_eq!(failure.to_string(), "400: (no reason given)");
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 25 Nov 2026 08:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 08:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
