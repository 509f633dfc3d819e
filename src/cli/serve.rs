//! `activator serve`: the HTTP API and the email dispatcher.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use rocket::fairing::AdHoc;
use rocket::{Ignite, Rocket};

use crate::db::migrations;
use crate::mail::courier::Courier;
use crate::mail::dispatcher::{self, Dispatcher};
use crate::settings::{Environment, Settings};
use crate::traces::Traces;

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Apply pending migrations before serving (otherwise pending migrations
    /// stop start-up).
    #[arg(long)]
    migrate: bool,
}

/// Serves until stopped; then exports the last spans of `traces`, if on.
pub fn run(opts: Opts, env: &Environment, traces: Option<Traces>) -> anyhow::Result<()> {
    let served = serve(opts, env);
    if let Some(traces) = traces {
        traces.shutdown();
    }
    served
}

fn serve(opts: Opts, env: &Environment) -> anyhow::Result<()> {
    let settings = Settings::from_source(env)?;
    if settings.bcrypt_cost < 10 {
        tracing::warn!(
            cost = settings.bcrypt_cost,
            "BCRYPT_COST is below 10: fine for tests and benchmarks, too weak for production"
        );
    }
    raise_open_files_limit();
    // Before anything connects: a broken template or email setting stops
    // start-up at once.
    let courier = Courier::from_settings(&settings)?;
    let locales = courier.templates().locales();
    check_migrations(&settings, opts.migrate)?;
    let figment = crate::figment();
    let shutdown: rocket::config::Shutdown = figment
        .extract_inner("shutdown")
        .context("invalid Rocket shutdown settings")?;

    rocket::execute(async move {
        let accounts = crate::accounts::Accounts::build(&settings).await?;
        let dispatcher = Dispatcher::start(dispatcher::Config {
            database_url: settings.database.url.clone(),
            courier,
            concurrency: settings.email_concurrency,
            // In-flight sends get as long as in-flight requests.
            grace: Duration::from_secs(u64::from(shutdown.grace) + u64::from(shutdown.mercy)),
        })
        .context("cannot start the email dispatcher")?;

        let metrics = match settings.metrics_address {
            Some(address) => Some(MetricsListener::start(address, &settings).await?),
            None => None,
        };
        // Stop claiming as soon as shutdown starts, while requests finish.
        let stop = dispatcher.stop_handle();
        let api = crate::rocket(figment, accounts, locales, settings.network.clone())
            .attach(AdHoc::on_shutdown("email dispatcher", move |_| {
                Box::pin(async move { stop.request() })
            }))
            .ignite()
            .await
            .map_err(|err| anyhow::anyhow!("server failed: {err}"))?;
        let key_uses = KeyUses::new(&settings)?;
        let recording = tokio::spawn(key_uses.clone().every_minute());
        let served = match metrics {
            Some(metrics) => metrics.beside(api).await,
            None => api.launch().await.map_err(anyhow::Error::from),
        };
        recording.abort();
        key_uses.record().await;

        // The server has stopped taking requests; wait for the dispatcher to
        // record its last sends before the process exits.
        tokio::task::spawn_blocking(move || dispatcher.stop())
            .await
            .context("email dispatcher did not stop cleanly")?;
        served.map(drop).context("server failed")
    })
}

/// Records in `secret_key_uses` when each key last verified a code or
/// opened a sealed value (once a minute, and at the end), so that `config
/// check` can say when a fallback was last needed.
#[derive(Clone)]
struct KeyUses {
    pool: crate::db::Pool,
    /// `SECRET_KEY`'s fingerprint, then each fallback's.
    fingerprints: Vec<String>,
}

impl KeyUses {
    fn new(settings: &Settings) -> anyhow::Result<Self> {
        let pool = crate::db::pool(&crate::settings::DatabaseSettings {
            url: settings.database.url.clone(),
            pool_size: 1,
        })
        .context("cannot set up the key uses' database connection")?;
        let fingerprints = std::iter::once(&settings.secret_key)
            .chain(&settings.secret_key_fallbacks)
            .map(crate::settings::SecretKey::fingerprint)
            .collect();
        Ok(Self { pool, fingerprints })
    }

    async fn every_minute(self) {
        let mut ticks = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticks.tick().await;
            self.record().await;
        }
    }

    /// Writes the uses since the last time. A failure is logged: the next
    /// use of the key is recorded again.
    async fn record(&self) {
        let uses = crate::metrics::get().take_secret_key_uses();
        if uses.is_empty() {
            return;
        }
        let recorded = async {
            let mut conn = self.pool.get().await?;
            for (key, at) in uses {
                let position = key.map_or(0, |fallback| fallback + 1);
                if let Some(fingerprint) = self.fingerprints.get(position) {
                    crate::db::secret_key_uses::record(&mut conn, fingerprint, at).await?;
                }
            }
            anyhow::Ok(())
        };
        if let Err(err) = recorded.await {
            tracing::warn!(error = %err, "could not record the secret keys' last uses");
        }
    }
}

/// The metrics listener (`METRICS_ADDRESS`), running beside the API.
struct MetricsListener {
    shutdown: rocket::Shutdown,
    running: tokio::task::JoinHandle<Result<Rocket<Ignite>, rocket::Error>>,
}

impl MetricsListener {
    async fn start(address: SocketAddr, settings: &Settings) -> anyhow::Result<Self> {
        // A connection of its own: a scrape never waits for the API's pool.
        let pool = crate::db::pool(&crate::settings::DatabaseSettings {
            url: settings.database.url.clone(),
            pool_size: 1,
        })
        .context("cannot set up the metrics' database connection")?;
        let ignited = crate::api::metrics::rocket(address, crate::api::metrics::Sampler::new(pool))
            .ignite()
            .await
            .context("cannot start the metrics listener (METRICS_ADDRESS)")?;
        tracing::info!(%address, "metrics at http://{address}/metrics");
        Ok(Self {
            shutdown: ignited.shutdown(),
            running: tokio::spawn(ignited.launch()),
        })
    }

    /// Serves `api` until it stops, then stops the listener. A listener
    /// that fails (its address taken) stops the API too: an operator
    /// expecting metrics learns at once.
    async fn beside(mut self, api: Rocket<Ignite>) -> anyhow::Result<Rocket<Ignite>> {
        let api_shutdown = api.shutdown();
        let serving = api.launch();
        tokio::pin!(serving);
        tokio::select! {
            served = &mut serving => {
                self.shutdown.notify();
                let _ = self.running.await;
                Ok(served?)
            }
            ended = &mut self.running => {
                let failure = match ended {
                    Ok(Ok(_)) => None,
                    Ok(Err(err)) => Some(anyhow::anyhow!("metrics listener (METRICS_ADDRESS) failed: {err}")),
                    Err(err) => Some(anyhow::anyhow!("metrics listener (METRICS_ADDRESS) failed: {err}")),
                };
                if failure.is_some() {
                    api_shutdown.notify();
                }
                let served = serving.await;
                match failure {
                    Some(failure) => Err(failure),
                    None => Ok(served?),
                }
            }
        }
    }
}

/// Raises the open-files soft limit to the hard limit: every connection is a
/// file, and the usual soft limit (1024) would cap the server far below what
/// it can hold.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open files limit"),
    }
}

/// Applies pending migrations with `migrate`, else refuses to serve a schema
/// older than this binary.
fn check_migrations(settings: &Settings, migrate: bool) -> anyhow::Result<()> {
    let mut conn = migrations::connect(&settings.database.url)
        .context("cannot connect to the database (DATABASE_URL)")?;
    if migrate {
        let applied = migrations::run_pending(&mut conn).map_err(anyhow::Error::from_boxed)?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "applied migrations");
        }
        return Ok(());
    }
    let pending = migrations::pending(&mut conn).map_err(anyhow::Error::from_boxed)?;
    if !pending.is_empty() {
        bail!(
            "the database has {} pending migration(s) ({}); run `activator migrate` or start with `activator serve --migrate`",
            pending.len(),
            pending.join(", ")
        );
    }
    Ok(())
}
