//! Structured logs with `tracing`: human-readable text by default, one JSON
//! object per line with `LOG_FORMAT=json`. `RUST_LOG` overrides the filter.
//! Rocket's and other dependencies' `log` records are bridged into the same
//! output.
//!
//! No secret reaches the log at any level. Our own events never carry one
//! (types holding secrets redact themselves; URLs go through
//! `settings::redact_url`). Some dependencies do at debug and trace: Rocket dumps
//! every request with its `Authorization` header, ureq the email API's URL
//! and hex dumps of what it posts (the code), tokio-postgres statement
//! parameters, lettre the SMTP conversation. Those targets are capped at
//! [`CAPPED_AT`] whatever `RUST_LOG` asks; Rocket's request lines, which
//! carry the query string, are off at every level.
//!
//! With traces on (`crate::traces`), the lines written inside a request or
//! an email's delivery carry its `trace_id`: the span that carries it is
//! the only one the log shows (text: `request{trace_id=…}:` before the
//! line; JSON: `"span":{"trace_id":…}`); the other spans are the traces'
//! alone.

use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::quieted::{QUIET_FOR, Quieted};
use crate::settings::LogFormat;
use crate::traces::{TRACE_ID, Traces};

/// The most these targets may log.
pub const CAPPED_AT: LevelFilter = LevelFilter::INFO;

/// Dependencies whose debug and trace output can hold a password, an
/// `Authorization` value, a code, a hash or a credential.
const CAPPED: &[&str] = &[
    "ureq",
    "ureq_proto",
    "hyper",
    "hyper_util",
    "h2",
    "tokio_postgres",
    "postgres_protocol",
    "diesel",
    "diesel_async",
    "redis",
    "lettre",
    "rustls",
    "handlebars",
];

/// Dependencies silenced at every level: Rocket's request lines
/// (`POST /auth/activate?email=…&password=…` at info, `No matching routes
/// for …` at error) carry the request target with its query, which a
/// client may fill with credentials. The access line (`api::access`) says
/// what happened to each request, by route template, without its query.
const SILENCED: &[&str] = &["rocket::server", ROCKET_HEADER_WARNING];

/// Installs the global subscriber, writing to stderr, and exporting this
/// crate's spans with `traces` when given. `default_filter` applies when
/// `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_filter: &str, traces: Option<&Traces>) {
    let asked =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let caps = CAPPED.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |caps, target| caps.with_target(*target, CAPPED_AT),
    );
    let caps = SILENCED.iter().fold(caps, |caps, target| {
        caps.with_target(*target, LevelFilter::OFF)
    });
    // Events as asked; of the spans only those that carry a trace id (made
    // only with traces on), whatever the level asked, so that every line
    // of a request has it.
    let events = filter_fn(|meta| meta.is_event()).with_max_level_hint(LevelFilter::TRACE);
    let with_trace_id = filter_fn(|meta| meta.is_span() && meta.fields().field(TRACE_ID).is_some())
        .with_max_level_hint(LevelFilter::INFO);
    let filter = with_trace_id.or(asked.and(caps).and(events));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    let layer = match format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    // A second initialisation (tests) keeps the first subscriber.
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(traces.map(|traces| traces.layer()));
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        // Rocket and other dependencies log through `log`.
        if log::set_boxed_logger(Box::new(Bridge(tracing_log::LogTracer::new()))).is_ok() {
            log::set_max_level(filter_max_level());
        }
    }
}

/// The most verbose level the subscriber lets through, for `log`.
fn filter_max_level() -> log::LevelFilter {
    match LevelFilter::current().into_level() {
        None => log::LevelFilter::Off,
        Some(tracing::Level::ERROR) => log::LevelFilter::Error,
        Some(tracing::Level::WARN) => log::LevelFilter::Warn,
        Some(tracing::Level::INFO) => log::LevelFilter::Info,
        Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
        Some(tracing::Level::TRACE) => log::LevelFilter::Trace,
    }
}

/// Where Rocket says it dropped a header that is not UTF-8 (its second line
/// goes to this target's `::_`).
const ROCKET_HEADER_WARNING: &str = "rocket::request::request";

/// `log` records into tracing, counting on the way Rocket's warnings about
/// headers that are not UTF-8: any client can send thousands of those, so
/// the log says them once in a while (`api::access`), and the subscriber
/// drops Rocket's own lines.
struct Bridge(tracing_log::LogTracer);

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.target() == ROCKET_HEADER_WARNING && record.level() == log::Level::Warn {
            NOT_UTF8_HEADERS.add();
        }
        self.0.log(record);
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Request headers Rocket dropped because they were not UTF-8.
pub static NOT_UTF8_HEADERS: Quieted = Quieted::new(QUIET_FOR);
