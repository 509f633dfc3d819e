//! `activator config check`: the configuration, checked before a deploy
//! without starting the server. It reads the settings as `serve` would,
//! builds the email courier (templates that render, `SYSTEM_EMAIL`, the
//! transport's settings), reaches PostgreSQL and checks that its migrations
//! are current, reaches Redis, and prints the effective settings with every
//! secret redacted. Exit 0, or 1 with one line per problem.

use crate::db::migrations;
use crate::mail::courier::Courier;
use crate::policy::PasswordPolicy;
use crate::redis::RedisConnection;
use crate::settings::{
    DefaultValue, Environment, Settings, Source, TraceSettings, VARIABLES, redact_url,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check the settings, PostgreSQL, Redis, the migrations and the
    /// templates as `serve` would use them; print the effective settings
    /// (secrets redacted).
    Check,
}

/// Settings that hold a key: never printed.
const SECRETS: [&str; 3] = ["SECRET_KEY", "SECRET_KEY_FALLBACKS", "WEBHOOK_SECRET"];
/// Settings that are URLs, or lists of them, which may carry credentials.
const URLS: [&str; 7] = [
    "DATABASE_URL",
    "REDIS_URL",
    "EMAIL_API_URL",
    "SMTP_URL",
    "WEBHOOK_URL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

pub fn run(command: Command, env: &Environment) -> anyhow::Result<()> {
    match command {
        Command::Check => check(env),
    }
}

fn check(env: &Environment) -> anyhow::Result<()> {
    // Nothing else can be checked without readable settings.
    let settings = Settings::from_source(env)?;
    TraceSettings::from_source(env)?;
    for variable in VARIABLES {
        println!(
            "{}={}",
            variable.name,
            effective(env, variable.name, variable.default)
        );
    }
    let mut problems = Vec::new();
    match PasswordPolicy::from_settings(&settings.passwords) {
        Ok(policy) => {
            println!("password policy: {}", policy.rules.describe());
            match policy.min_strength {
                0 => println!("password strength: not estimated"),
                score => println!("password strength: a zxcvbn score of at least {score} of 4"),
            }
            match &policy.denylist {
                Some(list) => println!(
                    "password deny list: {}: {} passwords, made {}",
                    list.path().display(),
                    list.entries(),
                    list.created().format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => println!("password deny list: none"),
            }
        }
        Err(err) => problems.push(err.to_string()),
    }
    println!("registration disclosure: {}", settings.disclosure.as_str());
    if let Err(err) = Courier::from_settings(&settings) {
        problems.push(format!("{err:#}"));
    }
    match migrations::connect(&settings.database.url) {
        Ok(mut conn) => {
            match migrations::pending(&mut conn) {
                Ok(pending) if pending.is_empty() => {}
                Ok(pending) => problems.push(format!(
                    "the database has {} pending migration(s) ({}); run `activator migrate`",
                    pending.len(),
                    pending.join(", ")
                )),
                Err(err) => problems.push(format!("cannot read the migrations: {err}")),
            }
            problems.extend(crate::db::replication_problems(
                &mut conn,
                &settings.database.url,
            ));
        }
        Err(err) => problems.push(format!(
            "cannot connect to the database (DATABASE_URL): {err}"
        )),
    }
    let redis = super::block_on(async {
        // What is wrong, when it can be told, before the bare failure.
        if let Some(problem) = crate::redis::diagnose(&settings.redis_url).await {
            anyhow::bail!(problem);
        }
        let redis = RedisConnection::connect(&settings.redis_url).await?;
        redis.ping().await?;
        anyhow::Ok(())
    })?;
    if let Err(err) = redis {
        problems.push(format!("cannot reach Redis (REDIS_URL): {err:#}"));
    }
    if !settings.secret_key_fallbacks.is_empty() {
        match super::block_on(fallback_uses(&settings))? {
            Ok(lines) => lines.iter().for_each(|line| println!("{line}")),
            Err(err) => problems.push(format!(
                "cannot read the secret keys' last uses from the database: {err}"
            )),
        }
    }
    let Some(last) = problems.pop() else {
        println!("configuration ok");
        return Ok(());
    };
    for problem in &problems {
        eprintln!("activator: {}", one_line(problem));
    }
    Err(anyhow::anyhow!(last))
}

/// One line per fallback key: when `serve` last needed it (a code
/// verified, a sealed value opened), by the key's fingerprint, never the
/// key.
async fn fallback_uses(settings: &Settings) -> anyhow::Result<Vec<String>> {
    use diesel_async::AsyncConnection;
    let mut conn = diesel_async::AsyncPgConnection::establish(&settings.database.url).await?;
    let mut lines = Vec::new();
    for (i, key) in settings.secret_key_fallbacks.iter().enumerate() {
        let fingerprint = key.fingerprint();
        let used = crate::db::secret_key_uses::last_used(&mut conn, &fingerprint).await?;
        let when = match used {
            Some(at) => format!(
                "last used {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => "never used by serve".to_owned(),
        };
        lines.push(format!(
            "SECRET_KEY_FALLBACKS: fallback {} (fingerprint {fingerprint}) {when}",
            i + 1
        ));
    }
    Ok(lines)
}

/// The value `serve` uses for `name`, fit to print.
fn effective(env: &Environment, name: &str, default: DefaultValue) -> String {
    let set = env.get(name).filter(|value| !value.trim().is_empty());
    match (set, default) {
        (Some(_), _) if SECRETS.contains(&name) => "(set, redacted)".to_owned(),
        // REDIS_URL alone lists URLs; a comma elsewhere may be a password's.
        // Its Sentinel form is one URL naming several hosts.
        (Some(value), _) if name == "REDIS_URL" && value.contains("+sentinel://") => {
            redact_url(value.trim())
        }
        (Some(value), _) if name == "REDIS_URL" => value
            .split(',')
            .map(|url| redact_url(url.trim()))
            .collect::<Vec<_>>()
            .join(","),
        (Some(value), _) if URLS.contains(&name) => redact_url(value.trim()),
        (Some(value), _) => value,
        (None, DefaultValue::Value(value)) => format!("{value} (default)"),
        (None, DefaultValue::Unset | DefaultValue::Required) => "(unset)".to_owned(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
