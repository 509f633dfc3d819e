//! The command line: one module per subcommand, each with its options and
//! `run`. Errors come back as `anyhow::Error`; `main` prints them as one line
//! and exits 1. Usage errors exit 2 (clap).

pub mod config;
pub mod healthcheck;
pub mod mailbox;
pub mod migrate;
pub mod passwords;
pub mod purge;
pub mod serve;
pub mod user;

use clap::{Parser, Subcommand};

use anyhow::Context;

use crate::settings::{Environment, LogFormat, TraceSettings};
use crate::traces::Traces;

/// User registration and activation service, and its admin tool.
#[derive(Debug, Parser)]
#[command(name = "activator", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API and deliver queued emails.
    Serve(serve::Opts),
    /// Apply the database migrations embedded in this binary.
    Migrate(migrate::Opts),
    /// Support actions on one account.
    #[command(subcommand)]
    User(user::Command),
    /// Check the configuration before a deploy.
    #[command(subcommand)]
    Config(config::Command),
    /// The password deny list.
    #[command(subcommand)]
    Passwords(passwords::Command),
    /// Delete spent codes and old delivered emails (for cron).
    Purge(purge::Opts),
    /// Run a local email API that shows received mail (development).
    Mailbox(mailbox::Opts),
    /// Exit 0 if a running server answers its liveness probe (for container
    /// healthchecks).
    Healthcheck(healthcheck::Opts),
}

/// The log filter of commands that run as services. Rocket reports every
/// unmatched request at error level under `rocket::server::_`; a 404 is not
/// an operator's problem.
const SERVICE_LOG_FILTER: &str =
    "info,rocket=warn,rocket::launch=info,rocket::server::_=off,_=warn";
/// The log filter of one-shot commands, whose output is on stdout.
const COMMAND_LOG_FILTER: &str = "warn";

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let env = Environment::load()?;
    let service = matches!(cli.command, Command::Serve(_) | Command::Mailbox(_));
    // Only `serve` is traced; its exporter is part of the log's subscriber.
    let mut traces = match cli.command {
        Command::Serve(_) => TraceSettings::from_source(&env)?
            .map(|settings| Traces::start(&settings))
            .transpose()
            .context("cannot set up the traces' exporter (OTEL_*)")?,
        _ => None,
    };
    crate::logging::init(
        LogFormat::from_source(&env)?,
        if service {
            SERVICE_LOG_FILTER
        } else {
            COMMAND_LOG_FILTER
        },
        traces.as_ref(),
    );
    if let Some(traces) = &mut traces {
        traces.probe();
    }
    match cli.command {
        Command::Serve(opts) => serve::run(opts, &env, traces),
        Command::Mailbox(opts) => mailbox::run(opts),
        Command::Migrate(opts) => migrate::run(opts, &env),
        Command::User(command) => user::run(command, &env),
        Command::Config(command) => config::run(command, &env),
        Command::Passwords(command) => passwords::run(command, &env),
        Command::Purge(opts) => purge::run(opts, &env),
        Command::Healthcheck(opts) => healthcheck::run(opts),
    }
}

/// Runs a one-shot command's async part.
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}

/// Parses an email argument: normalized but not validated, so accounts
/// stored under older validation rules stay reachable. Only something that
/// cannot be an address at all is a usage error.
fn email_arg(raw: &str) -> Result<crate::address::Email, String> {
    let email = crate::address::Email::canonical(raw);
    if email.as_str().contains('@') {
        Ok(email)
    } else {
        Err("an email address must have an @-sign".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
