//! Structured logs with `tracing`: human-readable text by default, one JSON
//! object per line with `LOG_FORMAT=json`. `RUST_LOG` overrides the filter.
//! Rocket's own `log` records are bridged into the same output.

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber, writing to stderr. `default_filter`
/// applies when `RUST_LOG` is unset. Per-request lines of Rocket are left
/// out by default: they cost throughput and say little that metrics don't.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
