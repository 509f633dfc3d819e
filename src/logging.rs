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
//! [`CAPPED_AT`] whatever `RUST_LOG` asks.

use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::LogFormat;

/// The most these targets may log.
pub const CAPPED_AT: LevelFilter = LevelFilter::INFO;

/// Dependencies whose debug and trace output can hold a password, an
/// `Authorization` value, a code, a hash or a credential.
const CAPPED: &[&str] = &[
    "rocket::server",
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

/// Installs the global subscriber, writing to stderr. `default_filter`
/// applies when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_filter: &str) {
    let asked =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let caps = CAPPED.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |caps, target| caps.with_target(*target, CAPPED_AT),
    );
    let filter = asked.and(caps);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    let layer = match format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer.json().flatten_event(true).with_filter(filter).boxed(),
    };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}
