//! Prometheus metrics (docs/OPERATIONS.md): what the service counts. The
//! listener that serves them, `GET /metrics` on `METRICS_ADDRESS`, never on
//! the API's port, is `api::metrics`.
//!
//! One process-wide set ([`get`]), recorded where things happen: the access
//! fairing (requests by route template), the auth handlers (one outcome per
//! request), the error responder (429s by limit), the password hasher (its
//! queue), the dispatcher (emails by result, send time). No label carries an
//! address, a code or an IP. Every listed label value is there from the
//! start, at 0, so a rate over a fresh process is not missing a series.
//!
//! This module names nothing else of the crate: everything records into it.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// What became of one auth request, as its counter labels it: each request
/// counts once, in exactly one outcome.
pub trait Outcome: Copy + 'static {
    /// Every value, so each series is there from the start.
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
}

/// `activator_registrations_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Created,
    Conflict,
    Invalid,
    RateLimited,
    Unavailable,
}

impl Outcome for Registration {
    const ALL: &'static [Self] = &[
        Self::Created,
        Self::Conflict,
        Self::Invalid,
        Self::RateLimited,
        Self::Unavailable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Conflict => "conflict",
            Self::Invalid => "invalid",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
        }
    }
}

/// `activator_activations_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Activated,
    InvalidCode,
    Locked,
    Unauthorized,
    Invalid,
    Unavailable,
}

impl Outcome for Activation {
    const ALL: &'static [Self] = &[
        Self::Activated,
        Self::InvalidCode,
        Self::Locked,
        Self::Unauthorized,
        Self::Invalid,
        Self::Unavailable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Activated => "activated",
            Self::InvalidCode => "invalid_code",
            Self::Locked => "locked",
            Self::Unauthorized => "unauthorized",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
        }
    }
}

/// `activator_resends_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    Sent,
    RateLimited,
    AlreadyActive,
    Unauthorized,
    Unavailable,
}

impl Outcome for Resend {
    const ALL: &'static [Self] = &[
        Self::Sent,
        Self::RateLimited,
        Self::AlreadyActive,
        Self::Unauthorized,
        Self::Unavailable,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::RateLimited => "rate_limited",
            Self::AlreadyActive => "already_active",
            Self::Unauthorized => "unauthorized",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Every label value of an outcome.
fn labels<O: Outcome>() -> Vec<&'static str> {
    O::ALL.iter().map(|outcome| outcome.as_str()).collect()
}

/// `activator_emails_total{result}` values (the dispatcher's outcomes).
pub const EMAIL_RESULTS: [&str; 5] = ["delivered", "retried", "throttled", "dead", "expired"];
/// `activator_events_total{type}` values.
pub const EVENT_TYPES: [&str; 3] = ["user.activated", "user.registered", "user.deleted"];
/// `activator_events_total{result}` values.
pub const EVENT_RESULTS: [&str; 5] = ["queued", "delivered", "retried", "dead", "expired"];
/// `activator_password_hashes_total{work}` values.
pub const HASH_WORK: [&str; 2] = ["hash", "verify"];
/// `activator_rate_limited_total{limit}` values: every limit that answers
/// 429 (`limits::Limit::as_str`).
pub const LIMITS: [&str; 14] = [
    "activation_attempts",
    "activation_budget",
    "activation_failures_per_ip",
    "resend_per_minute",
    "resend_daily",
    "auth_failures",
    "auth_failures_ceiling",
    "auth_failures_per_ip",
    "sign_ins",
    "sign_ins_per_ip",
    "register_per_ip",
    "hash_queue_per_ip",
    "mailbox_daily",
    "mailbox_daily_total",
];
/// `activator_password_refusals_total{rule}` values: every rule a new
/// password can break (`policy::Refusal::label`).
pub const PASSWORD_RULES: [&str; 10] = [
    "too_short",
    "too_long",
    "too_many_bytes",
    "whitespace",
    "control_characters",
    "character_classes",
    "breached",
    "common",
    "resembles_address",
    "guessable",
];
/// `activator_trace_spans_dropped_total{reason}` values: the export queue
/// was full, or the collector did not take a batch.
pub const SPAN_DROP_REASONS: [&str; 2] = ["queue_full", "export_failed"];
/// `activator_outbox_messages{state}` values (the outbox's states).
pub const OUTBOX_STATES: [&str; 4] = ["queued", "sent", "dead", "expired"];

/// Every metric of the service, in its own registry.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    registrations: IntCounterVec,
    activations: IntCounterVec,
    resends: IntCounterVec,
    rate_limited: IntCounterVec,
    emails: IntCounterVec,
    email_send_duration: Histogram,
    outbox_messages: IntGaugeVec,
    outbox_oldest_pending_age: Gauge,
    hash_waiting: IntGauge,
    hash_rejected: IntCounter,
    hashes: IntCounterVec,
    events: IntCounterVec,
    wrong_codes: IntCounterVec,
    secret_key_uses: IntCounterVec,
    /// When each key last verified or opened something, since the last
    /// [`Metrics::take_secret_key_uses`]: `None` is `SECRET_KEY`, `Some(i)`
    /// the fallback at position `i`.
    secret_key_last_uses: std::sync::Mutex<BTreeMap<Option<usize>, DateTime<Utc>>>,
    password_refusals: IntCounterVec,
    spans_dropped: IntCounterVec,
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Send times of an email API or an SMTP relay: from a few milliseconds to
/// the send timeout.
const SEND_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    // The names and labels are constants, checked by the tests: a failure
    // here is a bug in this file, found before any release.
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        let registry = Registry::new();
        fn add<C: prometheus::core::Collector + Clone + 'static>(
            registry: &Registry,
            collector: prometheus::Result<C>,
        ) -> C {
            let collector = collector.expect("a well-formed metric");
            registry
                .register(Box::new(collector.clone()))
                .expect("a metric registered once");
            collector
        }
        let counter = |name: &str, help: &str, label: &str| {
            add(
                &registry,
                IntCounterVec::new(Opts::new(name, help), &[label]),
            )
        };
        let metrics = Self {
            http_requests: add(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "activator_http_requests_total",
                        "HTTP requests answered, by method, route template and status.",
                    ),
                    &["method", "route", "status"],
                ),
            ),
            http_duration: add(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "activator_http_request_duration_seconds",
                        "Time from a request's arrival to its answer, by method and route template.",
                    ),
                    &["method", "route"],
                ),
            ),
            registrations: counter(
                "activator_registrations_total",
                "Registration requests, by outcome.",
                "outcome",
            ),
            activations: counter(
                "activator_activations_total",
                "Activation requests, by outcome.",
                "outcome",
            ),
            resends: counter(
                "activator_resends_total",
                "Resend requests, by outcome.",
                "outcome",
            ),
            rate_limited: counter(
                "activator_rate_limited_total",
                "Requests answered 429, by the limit they reached.",
                "limit",
            ),
            emails: counter(
                "activator_emails_total",
                "Activation emails by what became of a send: delivered, retried, throttled, dead, expired.",
                "result",
            ),
            email_send_duration: add(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "activator_email_send_duration_seconds",
                        "Time one send to the email provider took, whatever its answer.",
                    )
                    .buckets(SEND_BUCKETS.to_vec()),
                ),
            ),
            outbox_messages: add(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "activator_outbox_messages",
                        "Messages in the email outbox, by state.",
                    ),
                    &["state"],
                ),
            ),
            outbox_oldest_pending_age: add(
                &registry,
                Gauge::new(
                    "activator_outbox_oldest_pending_age_seconds",
                    "Age of the oldest queued email (0 when none is queued).",
                ),
            ),
            hash_waiting: add(
                &registry,
                IntGauge::new(
                    "activator_password_hash_waiting",
                    "Password hashes waiting for a core.",
                ),
            ),
            hash_rejected: add(
                &registry,
                IntCounter::new(
                    "activator_password_hash_rejected_total",
                    "Password hashes refused: the queue was full, or the client held its share of it.",
                ),
            ),
            events: add(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "activator_events_total",
                        "Webhook events, by type and what became of them: queued, delivered, retried, dead, expired.",
                    ),
                    &["type", "result"],
                ),
            ),
            hashes: add(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "activator_password_hashes_total",
                        "bcrypt computations done: hash (a new password) or verify (a sign-in).",
                    ),
                    &["work"],
                ),
            ),
            wrong_codes: add(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "activator_wrong_codes_total",
                        "Wrong activation codes checked against a stored code, by the typed code's length: the guesses an attacker had (each one in 10^length).",
                    ),
                    &["length"],
                ),
            ),
            secret_key_uses: counter(
                "activator_secret_key_uses_total",
                "Codes verified and sealed values opened, by the key that did it: current (SECRET_KEY) or fallback_N (the Nth of SECRET_KEY_FALLBACKS). A fallback at 0 for a code's life and an email's retries can be dropped.",
                "key",
            ),
            secret_key_last_uses: std::sync::Mutex::default(),
            password_refusals: counter(
                "activator_password_refusals_total",
                "New passwords refused (422), by the rule they broke: the length and character rules, the deny list (breached), the strength estimate (common, resembles_address, guessable).",
                "rule",
            ),
            spans_dropped: counter(
                "activator_trace_spans_dropped_total",
                "Trace spans not exported: the export queue was full (queue_full), or the collector did not take them (export_failed).",
                "reason",
            ),
            registry,
        };
        metrics.secret_key_uses.with_label_values(&["current"]);
        for (counter, values) in [
            (&metrics.registrations, labels::<Registration>()),
            (&metrics.activations, labels::<Activation>()),
            (&metrics.resends, labels::<Resend>()),
            (&metrics.emails, EMAIL_RESULTS.to_vec()),
            (&metrics.hashes, HASH_WORK.to_vec()),
            (&metrics.password_refusals, PASSWORD_RULES.to_vec()),
            (&metrics.spans_dropped, SPAN_DROP_REASONS.to_vec()),
        ] {
            for value in values {
                counter.with_label_values(&[value]);
            }
        }
        for limit in LIMITS {
            metrics.rate_limited.with_label_values(&[limit]);
        }
        for kind in EVENT_TYPES {
            for result in EVENT_RESULTS {
                metrics.events.with_label_values(&[kind, result]);
            }
        }
        for state in OUTBOX_STATES {
            metrics.outbox_messages.with_label_values(&[state]);
        }
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process collector registered once");
        metrics
    }

    /// Counts an answered request. `route` is the matched route's template
    /// (or a fixed word for a request no route took), never the raw path.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http_requests
            .with_label_values(&[method, route, status_label(status)])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }

    /// Counts a registration request's outcome.
    pub fn registration(&self, outcome: Registration) {
        self.registrations
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// Counts an activation request's outcome.
    pub fn activation(&self, outcome: Activation) {
        self.activations
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// Counts a resend request's outcome.
    pub fn resend(&self, outcome: Resend) {
        self.resends.with_label_values(&[outcome.as_str()]).inc();
    }

    /// Counts a 429 answer of `limit`.
    pub fn rate_limited(&self, limit: &str) {
        debug_assert!(LIMITS.contains(&limit));
        self.rate_limited.with_label_values(&[limit]).inc();
    }

    /// Counts `n` emails that came to `result` (one of [`EMAIL_RESULTS`]).
    pub fn emails(&self, result: &str, n: usize) {
        debug_assert!(EMAIL_RESULTS.contains(&result));
        self.emails
            .with_label_values(&[result])
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Records how long one send took.
    pub fn email_sent_in(&self, took: Duration) {
        self.email_send_duration.observe(took.as_secs_f64());
    }

    /// The gauge of password hashes waiting, moved by the hasher's queue.
    pub fn hash_waiting(&self) -> &IntGauge {
        &self.hash_waiting
    }

    /// Counts a password hash refused.
    /// Counts an event of type `kind` (one of [`EVENT_TYPES`]) that came to
    /// `result` (one of [`EVENT_RESULTS`]).
    pub fn event(&self, kind: &str, result: &str) {
        debug_assert!(EVENT_TYPES.contains(&kind) && EVENT_RESULTS.contains(&result));
        self.events.with_label_values(&[kind, result]).inc();
    }

    /// Counts one bcrypt computation of `work` (one of [`HASH_WORK`]).
    pub fn hashed(&self, work: &str) {
        debug_assert!(HASH_WORK.contains(&work));
        self.hashes.with_label_values(&[work]).inc();
    }

    /// Counts a wrong code of `length` digits checked against a stored one.
    pub fn wrong_code(&self, length: usize) {
        self.wrong_codes
            .with_label_values(&[length.to_string().as_str()])
            .inc();
    }

    /// Counts a code verified or a value opened by `SECRET_KEY` (`None`)
    /// or by the fallback at that position of `SECRET_KEY_FALLBACKS`.
    pub fn secret_key_used(&self, fallback: Option<usize>) {
        let label = match fallback {
            None => "current".to_owned(),
            Some(i) => format!("fallback_{}", i + 1),
        };
        self.secret_key_uses.with_label_values(&[&label]).inc();
        if let Ok(mut last) = self.secret_key_last_uses.lock() {
            last.insert(fallback, Utc::now());
        }
    }

    /// The keys used since the last call, with when each was last used
    /// (`serve` records them in `secret_key_uses` for `config check`).
    pub fn take_secret_key_uses(&self) -> BTreeMap<Option<usize>, DateTime<Utc>> {
        self.secret_key_last_uses
            .lock()
            .map(|mut last| std::mem::take(&mut *last))
            .unwrap_or_default()
    }

    /// Counts a new password refused for breaking `rule` (one of
    /// [`PASSWORD_RULES`]).
    pub fn password_refused(&self, rule: &str) {
        debug_assert!(PASSWORD_RULES.contains(&rule));
        self.password_refusals.with_label_values(&[rule]).inc();
    }

    /// Counts `n` trace spans dropped for `reason` (one of
    /// [`SPAN_DROP_REASONS`]).
    pub fn spans_dropped(&self, reason: &str, n: usize) {
        debug_assert!(SPAN_DROP_REASONS.contains(&reason));
        self.spans_dropped
            .with_label_values(&[reason])
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub fn hash_rejected(&self) {
        self.hash_rejected.inc();
    }

    /// Sets the outbox gauges: messages by state (one of
    /// [`OUTBOX_STATES`]), and the age of the oldest queued one.
    pub fn set_outbox(&self, counts: &[(&str, i64)], oldest_queued: Duration) {
        for (state, count) in counts {
            debug_assert!(OUTBOX_STATES.contains(state));
            self.outbox_messages
                .with_label_values(&[*state])
                .set(*count);
        }
        self.outbox_oldest_pending_age
            .set(oldest_queued.as_secs_f64());
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, "cannot encode the metrics");
                String::new()
            })
    }
}

/// A status code as a label value, without an allocation for the usual
/// ones.
fn status_label(status: u16) -> &'static str {
    const KNOWN: [(u16, &str); 20] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (304, "304"),
        (307, "307"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    KNOWN
        .iter()
        .find(|(code, _)| *code == status)
        .map_or_else(|| other_status(status), |(_, label)| label)
}

/// The class of a status outside [`status_label`]'s list (`4xx`, …): the
/// label set stays bounded.
fn other_status(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_series_is_exposed_from_the_start() {
        let text = get().render();
        for (name, label, values) in [
            (
                "activator_registrations_total",
                "outcome",
                labels::<Registration>(),
            ),
            (
                "activator_activations_total",
                "outcome",
                labels::<Activation>(),
            ),
            ("activator_resends_total", "outcome", labels::<Resend>()),
            ("activator_emails_total", "result", EMAIL_RESULTS.to_vec()),
            (
                "activator_password_refusals_total",
                "rule",
                PASSWORD_RULES.to_vec(),
            ),
            (
                "activator_trace_spans_dropped_total",
                "reason",
                SPAN_DROP_REASONS.to_vec(),
            ),
        ] {
            for value in values {
                let series = format!("{name}{{{label}=\"{value}\"}}");
                assert!(text.contains(&series), "{series} missing");
            }
        }
        for limit in LIMITS {
            let series = format!("activator_rate_limited_total{{limit=\"{limit}\"}}");
            assert!(text.contains(&series), "{series} missing");
        }
        for name in [
            "activator_email_send_duration_seconds_count",
            "activator_outbox_oldest_pending_age_seconds",
            "activator_password_hash_waiting",
            "activator_password_hash_rejected_total",
            "activator_outbox_messages{state=\"queued\"}",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }

    #[test]
    fn statuses_are_a_bounded_label() {
        assert_eq!(status_label(201), "201");
        assert_eq!(status_label(418), "4xx");
        assert_eq!(status_label(599), "5xx");
        assert_eq!(status_label(101), "1xx");
    }
}
