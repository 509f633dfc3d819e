//! activator: user registration and activation.
//!
//! People register with an email and a password, receive a 4-digit code by
//! email, and activate their account with it. One binary serves the HTTP API
//! and the email dispatcher (`serve`) and is the operator's CLI. See
//! `docs/ARCHITECTURE.md` for how the pieces fit.

// Errors are answered or reported, never unwrapped, outside tests.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::dbg_macro,
    clippy::todo
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod api;
pub mod cli;
pub mod codes;
pub mod db;
pub mod email;
pub mod limits;
pub mod logging;
pub mod mail;
pub mod password;
pub mod schema;
pub mod settings;

use std::sync::Arc;

use rocket::figment::Figment;
use rocket::{Build, Rocket};

use crate::accounts::Accounts;
use crate::codes::CodeHasher;
use crate::db::Pool;
use crate::limits::{Limiter, RedisConnection};
use crate::mail::Templates;
use crate::password::Hasher;
use crate::settings::Settings;

/// What the API serves from: the database pool and the account workflows.
#[derive(Clone)]
pub struct App {
    pub pool: Pool,
    pub accounts: Accounts,
}

impl App {
    /// Builds the pool, the Redis connection and the workflows' parts from
    /// `settings`. Connections are opened lazily (a single Redis) or now (a
    /// Redis Cluster).
    pub async fn build(settings: &Settings, templates: Templates) -> anyhow::Result<Self> {
        use anyhow::Context;
        let pool = db::pool(&settings.database).context("cannot set up the database pool")?;
        let redis = RedisConnection::connect(&settings.redis_url)
            .await
            .context("cannot connect to Redis (REDIS_URL)")?;
        let hasher = Hasher::new(settings.bcrypt_cost).context("invalid BCRYPT_COST")?;
        Ok(Self {
            pool,
            accounts: Accounts {
                hasher,
                codes: CodeHasher::new(settings.secret_key.clone()),
                limiter: Limiter::new(redis, settings.limits),
                templates: Arc::new(templates),
                code_ttl: settings.code_ttl,
            },
        })
    }
}

/// Rocket's configuration, layered as `rocket::Config::figment()` layers it
/// (defaults, then `Rocket.toml` or `ROCKET_CONFIG`, then `ROCKET_*`, for the
/// `ROCKET_PROFILE`), with activator's own defaults between Rocket's and the
/// file: a 16 KiB JSON body limit, its name as `Server`, plain log text. So
/// the binary behaves the same with or without a `Rocket.toml` beside it.
pub fn figment() -> Figment {
    use rocket::figment::Profile;
    use rocket::figment::providers::{Env, Format, Toml};
    Figment::from(rocket::Config::default())
        .merge(("limits.json", "16 KiB"))
        .merge(("ident", "activator"))
        .merge(("cli_colors", false))
        .merge(Toml::file(Env::var_or("ROCKET_CONFIG", "Rocket.toml")).nested())
        .merge(Env::prefixed("ROCKET_").ignore(&["PROFILE"]).global())
        .select(Profile::from_env_or(
            "ROCKET_PROFILE",
            rocket::Config::DEFAULT_PROFILE,
        ))
}

/// The API as a Rocket application, configured by `figment` (usually
/// [`figment()`]).
pub fn rocket(figment: Figment, app: App) -> Rocket<Build> {
    rocket::custom(figment)
        .manage(app.pool)
        .manage(app.accounts)
        .mount("/", api::routes())
        .register("/", api::catchers())
}
