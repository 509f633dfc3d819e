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
pub mod address;
pub mod api;
pub mod cli;
pub mod client_ip;
pub mod code;
pub mod compat;
pub mod credential;
pub mod db;
pub mod devmail;
pub mod duration;
pub mod ids;
pub mod limits;
pub mod locale;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod password;
pub mod policy;
pub mod quieted;
pub mod redis;
pub mod schema;
pub mod seal;
pub mod settings;
pub mod traces;
pub mod turns;

use rocket::figment::Figment;
use rocket::{Build, Rocket};

use crate::accounts::Accounts;
use crate::locale::Locales;
use crate::settings::NetworkSettings;

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
        // The client IP comes from `api::client`: the peer, or a trusted
        // proxy's X-Forwarded-For; never a header anyone can send.
        .merge(("ip_header", false))
        .merge(Toml::file(Env::var_or("ROCKET_CONFIG", "Rocket.toml")).nested())
        .merge(Env::prefixed("ROCKET_").ignore(&["PROFILE"]).global())
        .select(Profile::from_env_or(
            "ROCKET_PROFILE",
            rocket::Config::DEFAULT_PROFILE,
        ))
}

/// The API as a Rocket application over `accounts`, with emails in one of
/// `locales` and clients located by `network`, configured by `figment`
/// (usually [`figment()`]).
pub fn rocket(
    figment: Figment,
    accounts: Accounts,
    locales: Locales,
    network: NetworkSettings,
) -> Rocket<Build> {
    let document = api::docs::Document::new(accounts.code_length(), accounts.password_policy());
    rocket::custom(figment)
        .manage(accounts)
        .manage(locales)
        .manage(api::client::Network::new(network))
        .manage(document)
        .attach(api::access::Access)
        .attach(api::error::mark_parsed())
        .mount("/", api::routes())
        .register("/", api::catchers())
}
