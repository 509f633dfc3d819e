//! The metrics listener: `GET /metrics` (docs/OPERATIONS.md) on
//! `METRICS_ADDRESS`, a Rocket of its own beside the API, never on the
//! API's port.
//!
//! The outbox gauges are read from the database when scraped, at most once a
//! second however often Prometheus comes, over a connection of their own.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use rocket::http::ContentType;
use rocket::{Build, Rocket, State, get, routes};
use tokio::sync::Mutex;

use crate::db::Pool;
use crate::db::outbox::{self, MessageState};
use crate::metrics;

/// How often the outbox gauges may query the database.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often the count of sent messages (as many as the retention keeps)
/// may be read.
const COUNT_SENT_EVERY: Duration = Duration::from_secs(60);

/// Reads the outbox gauges from the database, at most once per
/// [`SAMPLE_EVERY`] (the sent count once per [`COUNT_SENT_EVERY`]).
pub struct Sampler {
    pool: Pool,
    /// When the gauges, and the sent count, were last read; held while one
    /// scrape reads them, so scrapes arriving meanwhile wait and then share
    /// its figures.
    last: Mutex<Readings>,
}

#[derive(Default)]
struct Readings {
    any: Option<Instant>,
    sent: Option<Instant>,
}

impl Sampler {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            last: Mutex::new(Readings::default()),
        }
    }

    async fn sample(&self) {
        let mut last = self.last.lock().await;
        if last.any.is_some_and(|at| at.elapsed() < SAMPLE_EVERY) {
            return;
        }
        let with_sent = last.sent.is_none_or(|at| at.elapsed() >= COUNT_SENT_EVERY);
        let states: &[MessageState] = if with_sent {
            &MessageState::ALL
        } else {
            &[
                MessageState::Queued,
                MessageState::Dead,
                MessageState::Expired,
            ]
        };
        match self.query(states).await {
            Ok(summary) => {
                let counts: Vec<(&str, i64)> = summary
                    .counts
                    .iter()
                    .map(|(state, count)| (state.as_str(), *count))
                    .collect();
                let oldest = summary
                    .oldest_queued
                    .and_then(|queued| (Utc::now() - queued).to_std().ok())
                    .unwrap_or_default();
                metrics::get().set_outbox(&counts, oldest);
                if with_sent {
                    last.sent = Some(Instant::now());
                }
            }
            // The gauges keep their last figures; the log says why.
            Err(err) => tracing::warn!(error = %err, "cannot read the outbox gauges"),
        }
        last.any = Some(Instant::now());
    }

    async fn query(&self, states: &[MessageState]) -> anyhow::Result<outbox::Summary> {
        let mut conn = self.pool.get().await?;
        Ok(outbox::summary(&mut conn, states).await?)
    }
}

#[get("/metrics")]
async fn scrape(sampler: &State<Sampler>) -> (ContentType, String) {
    sampler.sample().await;
    let text_format =
        ContentType::new("text", "plain").with_params([("version", "0.0.4"), ("charset", "utf-8")]);
    (text_format, metrics::get().render())
}

/// The metrics listener: `GET /metrics` on `address`, the outbox gauges
/// read through `sampler`.
pub fn rocket(address: SocketAddr, sampler: Sampler) -> Rocket<Build> {
    let figment = rocket::figment::Figment::from(rocket::Config::default())
        .merge(("address", address.ip()))
        .merge(("port", address.port()))
        .merge(("ident", "activator"))
        .merge(("cli_colors", false))
        .merge(("log_level", "off"))
        .merge(("workers", 1));
    rocket::custom(figment)
        .manage(sampler)
        .mount("/", routes![scrape])
}
