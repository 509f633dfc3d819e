//! The policy of delivering one message, shared by the dispatcher's window:
//! claiming due messages (and finishing the expired ones), writing and
//! sending one, and recording its outcome as the provider's answer class
//! says (docs/EMAIL.md, "Provider answers").
//!
//! - Delivered: finished, its body cleared.
//! - Throttled (HTTP 429, SMTP 421 or 452): all claiming pauses for
//!   `Retry-After` (1 s when absent, doubling while throttling goes on); not
//!   an attempt.
//! - Transient: retried after 1 s, 2 s, 4 s, … (±20 % jitter) up to
//!   `EMAIL_MAX_ATTEMPTS`; a retry that would come after the code's expiry
//!   expires the message instead.
//! - Permanent: dead at once, the provider's status and reason kept.
//! - A send that panics is caught, logged and counted as a failed attempt.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use rand::Rng;

use crate::db::outbox::{self, LastError, Message, MessageState};
use crate::mail::templates::Templates;
use crate::mail::transport::{
    Failure, HttpTransport, Outgoing, SEND_TIMEOUT, SmtpSecurity, SmtpTransport, Transport,
};
use crate::mail::webhook::Webhook;
use crate::seal::{Notice, Payload, Sealer};
use crate::settings::Settings;

/// A claim's lease. A send starts right after its claim and gives up after
/// `SEND_TIMEOUT`, and its outcome is recorded right after, so the lease
/// does not run out while this instance may still send; if the instance
/// dies, the message is due again after this long.
const LEASE: Duration = Duration::from_secs(SEND_TIMEOUT.as_secs() + 10);
const _: () = assert!(LEASE.as_secs() > SEND_TIMEOUT.as_secs());
/// First retry delay; it doubles with every failed attempt.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// The pause after a 429 without `Retry-After`; it doubles while 429s go on.
const FIRST_THROTTLE: Duration = Duration::from_secs(1);
/// No pause is longer: a code lives a minute, and a provider that asks for
/// hours is better asked again.
const MAX_THROTTLE: Duration = Duration::from_secs(300);

/// Writes messages, sends them and records their outcomes. Built once from
/// the settings ([`Courier::from_settings`]) by `serve`, the tests and the
/// benchmarks alike. Cheap to clone.
#[derive(Clone)]
pub struct Courier {
    transport: Transport,
    templates: Arc<Templates>,
    /// Opens the messages' sealed payloads.
    sealer: Sealer,
    /// The `from` of every message (`SYSTEM_EMAIL`).
    from: Arc<str>,
    max_attempts: u32,
    /// Where events go (`WEBHOOK_URL`); `None`: this instance claims no
    /// events and leaves them to those that have one.
    webhook: Option<Webhook>,
}

/// What became of one message's send (or of its claim, for an expired one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Delivered,
    Retried,
    Throttled,
    Dead,
    Expired,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retried => "retried",
            Self::Throttled => "throttled",
            Self::Dead => "dead",
            Self::Expired => "expired",
        }
    }
}

/// A send that finished, waiting to be recorded.
pub(super) struct Sent {
    pub(super) message: Message,
    pub(super) result: Result<(), Failure>,
    /// With traces on, its attempt's spans, ended once its outcome is
    /// recorded.
    spans: Option<Attempt>,
}

/// One delivery attempt's span, in the trace of the request that queued
/// the message (its outbox row's context: after any wait or restart), and
/// the span the log shows inside it, which carries only the trace id.
#[derive(Clone)]
struct Attempt {
    delivery: tracing::Span,
    log: tracing::Span,
}

impl Attempt {
    fn of(message: &Message) -> Self {
        let kind = if message.is_event() { "event" } else { "email" };
        let delivery = tracing::info_span!(
            "deliver",
            otel.name = %format_args!("{kind} deliver"),
            otel.kind = "client",
            activator.outbox.kind = kind,
            activator.event.type = message.event_type.as_deref(),
            activator.outbox.message_id = message.id,
            activator.delivery.attempt = message.attempts,
            activator.delivery.status = tracing::field::Empty,
            activator.delivery.outcome = tracing::field::Empty,
            activator.delivery.retry_in_s = tracing::field::Empty,
            activator.delivery.retry_after_s = tracing::field::Empty,
        );
        crate::traces::context::continue_trace(
            &delivery,
            message.traceparent.as_deref(),
            message.tracestate.as_deref(),
        );
        let log = match crate::traces::context::trace_id(&delivery) {
            Some(trace_id) => {
                tracing::info_span!(parent: &delivery, "delivery", trace_id = %trace_id)
            }
            None => tracing::Span::none(),
        };
        Self { delivery, log }
    }

    /// Records what became of the attempt, failed with the provider's
    /// `status` if it was not delivered. No reason text: a provider's may
    /// quote the address.
    fn outcome(&self, outcome: Outcome, status: Option<u16>) {
        let span = &self.delivery;
        span.record("activator.delivery.outcome", outcome.as_str());
        if outcome != Outcome::Delivered {
            let what = match status {
                Some(status) => format!("{}: {status}", outcome.as_str()),
                None => outcome.as_str().to_owned(),
            };
            crate::traces::set_error(span, what);
        }
    }
}

impl Sent {
    /// Records on the attempt's span (if traced) what became of it, and
    /// for a retry or a throttle how long it waits (`wait`: until the next
    /// attempt, or the pause all sends take, from the provider's
    /// `Retry-After` when it gave one).
    fn traced(&self, outcome: Outcome, wait: Option<Duration>) {
        let Some(spans) = &self.spans else {
            return;
        };
        let status = self.result.as_ref().err().and_then(Failure::status);
        spans.outcome(outcome, status);
        if let Some(wait) = wait {
            let field = match outcome {
                Outcome::Throttled => "activator.delivery.retry_after_s",
                _ => "activator.delivery.retry_in_s",
            };
            spans.delivery.record(field, wait.as_secs_f64());
        }
    }

    /// Whether this outcome pauses its lane: a provider's 429 pauses every
    /// email; a webhook receiver that fails or hangs is backed off as a
    /// whole (its lane pauses, and probes one event at a time until one
    /// goes through), not event by event.
    pub(super) fn pauses_lane(&self) -> bool {
        match &self.result {
            Err(Failure::Throttled { .. }) => true,
            Err(Failure::Transient { .. }) => self.message.is_event(),
            _ => false,
        }
    }
}

/// Outcomes counted by result.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub delivered: usize,
    pub retried: usize,
    pub throttled: usize,
    pub dead: usize,
    pub expired: usize,
    /// Outcomes of events (the webhook's), whatever they were.
    pub events: usize,
}

impl Tally {
    /// Counts what became of `message`, in the metrics too: an email's in
    /// the emails', an event's in the events' by type.
    fn count_one(&mut self, message: &Message, result: Outcome) {
        if let Some(kind) = message.event_type.as_deref() {
            crate::metrics::get().event(kind, result.as_str());
            self.events += 1;
            return;
        }
        crate::metrics::get().emails(result.as_str(), 1);
        match result {
            Outcome::Delivered => self.delivered += 1,
            Outcome::Retried => self.retried += 1,
            Outcome::Throttled => self.throttled += 1,
            Outcome::Dead => self.dead += 1,
            Outcome::Expired => self.expired += 1,
        }
    }
}

impl Courier {
    /// Whether this courier posts events (has a `WEBHOOK_URL`).
    pub(super) fn posts_events(&self) -> bool {
        self.webhook.is_some()
    }

    /// Sends one claimed message. Never panics: see [`caught`]. With
    /// traces on, the attempt is a span of the trace that queued the
    /// message, and the provider is sent its context.
    pub(super) async fn send(self, message: Message) -> Sent {
        use tracing::Instrument;
        let Some(spans) = crate::traces::enabled().then(|| Attempt::of(&message)) else {
            let result = caught(message.id, self.try_send(&message, None)).await;
            return Sent {
                result: result.map(drop),
                message,
                spans: None,
            };
        };
        let trace = crate::traces::context::Carrier::of(&spans.delivery);
        let result = caught(message.id, self.try_send(&message, trace.as_ref()))
            .instrument(spans.log.clone())
            .instrument(spans.delivery.clone())
            .await;
        let status = match &result {
            Ok(status) => *status,
            Err(failure) => failure.status(),
        };
        if let Some(status) = status {
            spans
                .delivery
                .record("activator.delivery.status", i64::from(status));
        }
        Sent {
            result: result.map(drop),
            message,
            spans: Some(spans),
        }
    }

    /// Opens the message's payload, writes the email and sends it; or posts
    /// an event to the webhook. `Ok` holds the provider's status, if any.
    async fn try_send(
        &self,
        message: &Message,
        trace: Option<&crate::traces::context::Carrier>,
    ) -> Result<Option<u16>, Failure> {
        let permanent = |reason: String| Failure::Permanent {
            status: None,
            reason,
        };
        let sealed = message
            .payload
            .as_deref()
            .ok_or_else(|| permanent("the message has no payload left to send".into()))?;
        if message.is_event() {
            let webhook = self.webhook.as_ref().ok_or_else(|| {
                permanent("WEBHOOK_URL is unset: nowhere to send the event".into())
            })?;
            return webhook
                .send(message.id, sealed.to_vec(), trace)
                .await
                .map(Some);
        }
        let user = message
            .user_id
            .ok_or_else(|| permanent("the email names no account".into()))?;
        let payload = match Payload::open(&self.sealer, user, sealed) {
            Ok(payload) => payload,
            Err(unreadable) => {
                // Not a code: the notice to an active account's owner, or
                // nothing this key opens.
                let notice = Notice::open(&self.sealer, user, sealed)
                    .map_err(|_| permanent(unreadable.to_string()))?;
                let mail = self
                    .templates
                    .account_exists(&notice.locale, &message.recipient)
                    .map_err(|err| permanent(err.to_string()))?;
                return self.deliver(message, &mail, trace).await;
            }
        };
        // The code's whole life, as the email states it.
        let valid_for = (message.expires_at - message.created_at)
            .to_std()
            .unwrap_or_default();
        let valid_for = Duration::from_secs(valid_for.as_secs_f64().round() as u64);
        let mail = self
            .templates
            .activation(
                &payload.locale,
                &message.recipient,
                &payload.code,
                valid_for,
            )
            .map_err(|err| permanent(err.to_string()))?;
        self.deliver(message, &mail, trace)
            .await
            .map_err(|failure| failure.redacted(payload.code.as_str()))
    }

    /// Sends a written email, timing the send; `Ok` holds the provider's
    /// status, if any.
    async fn deliver(
        &self,
        message: &Message,
        mail: &crate::mail::templates::Rendered,
        trace: Option<&crate::traces::context::Carrier>,
    ) -> Result<Option<u16>, Failure> {
        let started = Instant::now();
        let sent = self
            .transport
            .send(&Outgoing {
                id: message.id,
                queued_at: message.created_at,
                from: &self.from,
                to: &message.recipient,
                subject: &mail.subject,
                body: &mail.text,
                html: &mail.html,
                trace,
            })
            .await;
        crate::metrics::get().email_sent_in(started.elapsed());
        sent
    }

    /// Records what became of a sent message; a throttled one moves the
    /// pause of `throttle`.
    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        sent: &Sent,
        throttle: &mut Throttle,
    ) -> QueryResult<Outcome> {
        let message = &sent.message;
        let now = Utc::now();
        let attempts = u32::try_from(message.attempts).unwrap_or(u32::MAX);
        let failure = match &sent.result {
            Ok(()) => {
                throttle.relax();
                outbox::finish(conn, &[message.id], MessageState::Sent, now, None).await?;
                tracing::info!(email_id = message.id, attempts, "{} sent", noun(message));
                sent.traced(Outcome::Delivered, None);
                return Ok(Outcome::Delivered);
            }
            Err(Failure::Throttled { retry_after }) => {
                let pause = throttle.pause(*retry_after);
                sent.traced(Outcome::Throttled, Some(pause));
                outbox::throttled(conn, message.id, now + crate::duration::to_delta(pause)).await?;
                tracing::warn!(
                    email_id = message.id,
                    ?pause,
                    "email provider throttles; pausing all sends"
                );
                return Ok(Outcome::Throttled);
            }
            Err(failure) => failure,
        };
        let reason = failure.to_string();
        let error = LastError {
            status: failure.status(),
            reason: &reason,
        };
        // The posts in flight together fail together: one pause for them.
        if sent.pauses_lane() && throttle.paused_until().is_none() {
            let pause = throttle.pause(None);
            tracing::warn!(?pause, "the webhook receiver failed; pausing events");
        }
        let retry_at = now + retry_delay(attempts);
        let max_attempts = if message.is_event() {
            EVENT_MAX_ATTEMPTS
        } else {
            self.max_attempts
        };
        let end = if matches!(failure, Failure::Permanent { .. }) || attempts >= max_attempts {
            Some((MessageState::Dead, Outcome::Dead, "is dead"))
        } else if retry_at >= message.expires_at {
            let what = "expired while retrying";
            Some((MessageState::Expired, Outcome::Expired, what))
        } else {
            None
        };
        if let Some((state, outcome, what)) = end {
            sent.traced(outcome, None);
            tracing::warn!(
                email_id = message.id,
                attempts,
                error = reason,
                "{} {what}",
                noun(message)
            );
            outbox::finish(conn, &[message.id], state, now, Some(error)).await?;
            return Ok(outcome);
        }
        sent.traced(Outcome::Retried, (retry_at - now).to_std().ok());
        tracing::warn!(email_id = message.id, attempts, error = reason, %retry_at, "{} failed; will retry", noun(message));
        outbox::retry_at(conn, message.id, retry_at, error).await?;
        Ok(Outcome::Retried)
    }
}

/// Runs a send, turning a panic in it into a logged transient failure, so
/// the message counts a failed attempt instead of vanishing.
async fn caught<T>(
    email_id: i64,
    send: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    AssertUnwindSafe(send)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(email_id, panic = what, "sending an email panicked");
            Err(Failure::Transient {
                status: None,
                reason: "the send panicked".into(),
            })
        })
}

/// Records `sent`, counting it in `tally`. A lost connection is returned
/// (the caller reconnects and records it then); any other error loses only
/// this outcome, logged: the message's lease brings it back.
pub(super) async fn record_one(
    courier: &Courier,
    conn: &mut AsyncPgConnection,
    sent: &Sent,
    throttle: &mut Throttle,
    tally: &mut Tally,
) -> QueryResult<()> {
    let recorded = match &sent.spans {
        Some(spans) => {
            use tracing::Instrument;
            courier
                .record(conn, sent, throttle)
                .instrument(spans.log.clone())
                .instrument(spans.delivery.clone())
                .await
        }
        None => courier.record(conn, sent, throttle).await,
    };
    match recorded {
        Ok(outcome) => tally.count_one(&sent.message, outcome),
        Err(err) if crate::db::is_connection_error(&err) => return Err(err),
        Err(err) => tracing::error!(
            email_id = sent.message.id,
            error = %err,
            "cannot record an email's outcome; it is sent again when its lease runs out"
        ),
    }
    Ok(())
}

/// Claims up to `slots` due messages of `lane`: emails, or events if this
/// courier has a webhook (an instance without one leaves them to those that
/// have, and only finishes the expired). Expired ones are finished at once
/// (and counted in `tally`); the others are returned to be sent.
pub(super) async fn claim(
    courier: &Courier,
    conn: &mut AsyncPgConnection,
    slots: usize,
    tally: &mut Tally,
    lane: outbox::Lane,
) -> QueryResult<(Vec<Message>, bool)> {
    let asked = i64::try_from(slots).unwrap_or(i64::MAX);
    let now = Utc::now();
    let claimed = outbox::claim_due(conn, now, LEASE, asked, lane, courier.posts_events()).await?;
    let drained = claimed.len() < slots;
    if !claimed.is_empty() {
        tracing::debug!(claimed = claimed.len(), asked = slots, "claimed emails");
    }
    let (expired, sendable): (Vec<Message>, Vec<Message>) = claimed
        .into_iter()
        .partition(|message| message.expires_at <= now);
    if !expired.is_empty() {
        let ids: Vec<i64> = expired.iter().map(|message| message.id).collect();
        tracing::info!(messages = ?ids, "messages expired before they could be sent");
        outbox::finish(conn, &ids, MessageState::Expired, now, None).await?;
        for message in &expired {
            tally.count_one(message, Outcome::Expired);
        }
    }
    Ok((sendable, drained))
}

impl Courier {
    /// The courier `settings` describe: the transport (the email API, an
    /// SMTP server or, with neither, the log), the templates
    /// (`TEMPLATES_DIR`, `DEFAULT_LOCALE`), the outbox's key, `SYSTEM_EMAIL`
    /// and `EMAIL_MAX_ATTEMPTS`. A setting that cannot be used is named.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        if crate::address::normalize(&settings.system_email).is_err() {
            anyhow::bail!(
                "invalid setting SYSTEM_EMAIL: expected an email address, got {:?}",
                settings.system_email
            );
        }
        let templates =
            Templates::load(settings.templates_dir.as_deref(), &settings.default_locale)?;
        Ok(Self {
            transport: transport(settings)?,
            templates: Arc::new(templates),
            sealer: Sealer::new(&settings.secret_key)
                .with_fallbacks(&settings.secret_key_fallbacks),
            from: settings.system_email.as_str().into(),
            max_attempts: settings.email_max_attempts,
            webhook: settings
                .webhook
                .as_ref()
                .map(|webhook| Webhook::new(webhook, settings.email_concurrency)),
        })
    }

    /// The templates emails are written with.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }
}

/// Where emails go: the email API, an SMTP server or (neither set) the log.
fn transport(settings: &Settings) -> anyhow::Result<Transport> {
    if let Some(url) = &settings.email_api_url {
        tracing::info!(
            url = crate::settings::redact_url(url),
            "emails are posted to the email API"
        );
        return Ok(Transport::Http(HttpTransport::new(
            url,
            settings.email_concurrency,
        )));
    }
    if let Some(url) = &settings.smtp_url {
        let security = SmtpTransport::security(url);
        tracing::info!(
            url = crate::settings::redact_url(&url.0),
            ?security,
            "emails are sent over SMTP"
        );
        let host = url::Url::parse(&url.0)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default();
        let local = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if security == SmtpSecurity::Plain && !local {
            tracing::warn!(
                "SMTP_URL asks for no TLS to a server on another host: codes (and any credentials) cross the network in clear; use smtps:// or ?tls=required"
            );
        }
        return Ok(Transport::Smtp(SmtpTransport::new(
            url,
            settings.email_concurrency,
            &settings.system_email,
        )?));
    }
    tracing::warn!(
        "EMAIL_API_URL is unset and so is SMTP_URL: emails, activation codes included, go to the log (development only)"
    );
    Ok(Transport::Log)
}

/// Attempts at one event before it is dead: with the retries' doubling
/// delays, a receiver may be away for about half an hour and miss nothing.
const EVENT_MAX_ATTEMPTS: u32 = 12;

/// What `message` is, for the log.
fn noun(message: &Message) -> &'static str {
    if message.is_event() {
        "event"
    } else {
        "activation email"
    }
}

/// The pause that 429 answers impose on all sending.
#[derive(Debug)]
pub(super) struct Throttle {
    until: Option<Instant>,
    /// The next pause when the provider gives no `Retry-After`.
    backoff: Duration,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            until: None,
            backoff: FIRST_THROTTLE,
        }
    }
}

impl Throttle {
    /// Starts (or extends) a pause: `retry_after` if the provider said, else
    /// the backoff, which doubles while throttling goes on. Returns it.
    fn pause(&mut self, retry_after: Option<Duration>) -> Duration {
        let pause = retry_after.unwrap_or(self.backoff).min(MAX_THROTTLE);
        self.backoff = (self.backoff * 2).min(MAX_THROTTLE);
        let until = Instant::now() + pause;
        self.until = Some(self.until.map_or(until, |current| current.max(until)));
        pause
    }

    /// A delivery went through: the next 429 starts from the first pause.
    pub(super) fn relax(&mut self) {
        self.backoff = FIRST_THROTTLE;
    }

    /// Whether a pause was needed since the last delivery: the lane then
    /// sends one message at a time until one goes through.
    pub(super) fn tripped(&self) -> bool {
        self.backoff > FIRST_THROTTLE
    }

    /// When claiming may resume, if paused now.
    pub(super) fn paused_until(&mut self) -> Option<Instant> {
        match self.until {
            Some(until) if until > Instant::now() => Some(until),
            _ => {
                self.until = None;
                None
            }
        }
    }
}

/// The delay before attempt `failed + 1`: 1 s doubled per failed attempt,
/// with ±20 % jitter so instances that failed together do not retry together.
fn retry_delay(failed: u32) -> chrono::TimeDelta {
    let base = FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(failed.saturating_sub(1)))
        .min(MAX_RETRY);
    let jitter = rand::rng().random_range(0.8..1.2);
    crate::duration::to_delta(base.mul_f64(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_near_a_second_and_double() {
        for (failed, expected) in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)] {
            for _ in 0..50 {
                let delay = retry_delay(failed).as_seconds_f64();
                assert!(
                    (expected * 0.8..=expected * 1.2).contains(&delay),
                    "after {failed} failures: {delay}s"
                );
            }
        }
    }

    #[test]
    fn retries_are_capped_at_an_hour() {
        let delay = retry_delay(40).as_seconds_f64();
        assert!(delay <= 3600.0 * 1.2, "{delay}");
    }

    #[tokio::test]
    async fn a_panicking_send_is_a_failed_attempt_not_a_lost_message() {
        let result = caught::<()>(7, async { panic!("transport bug") }).await;
        assert!(
            matches!(&result, Err(Failure::Transient { status: None, reason }) if reason == "the send panicked"),
            "{result:?}"
        );
        assert_eq!(caught(7, async { Ok(()) }).await, Ok(()));
    }

    #[test]
    fn a_throttle_pause_follows_retry_after_or_doubles_from_a_second() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.pause(None), Duration::from_secs(1));
        assert_eq!(throttle.pause(None), Duration::from_secs(2));
        assert_eq!(
            throttle.pause(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(throttle.pause(None), Duration::from_secs(8));
        assert!(throttle.paused_until().is_some());
        throttle.relax();
        assert_eq!(throttle.pause(None), Duration::from_secs(1));
        assert_eq!(
            throttle.pause(Some(Duration::from_secs(86_400))),
            MAX_THROTTLE
        );
    }
}
