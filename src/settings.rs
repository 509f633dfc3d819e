//! Settings: one typed struct built once at start-up from environment
//! variables (a `.env` file in the working directory is read first, without
//! overriding variables already set).
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `DATABASE_URL` | required | PostgreSQL URL |
//! | `DATABASE_POOL_SIZE` | 16 | connections in the pool |
//! | `REDIS_URL` | required | Redis URL; a comma-separated list of node URLs means a Redis Cluster |
//! | `SECRET_KEY` | required | key for the codes' HMAC, at least 16 characters |
//! | `SYSTEM_EMAIL` | `no-reply@example.com` | the `from` of every email |
//! | `EMAIL_API_URL` | unset | where emails are POSTed; unset writes them to the log (development only) |
//! | `EMAIL_MAX_ATTEMPTS` | 5 | attempts at one email before it is marked dead |
//! | `EMAIL_CONCURRENCY` | 16 | sends in flight per instance |
//! | `TEMPLATES_DIR` | unset | directory overriding the built-in email templates |
//! | `ACTIVATION_CODE_TTL_SECONDS` | 60 | how long a code is valid |
//! | `BCRYPT_COST` | 12 | bcrypt cost, 4–31 |
//! | `ACTIVATION_ATTEMPT_LIMIT` | 5 | failed activations before lockout |
//! | `ACTIVATION_ATTEMPT_WINDOW_SECONDS` | 300 | window in which those failures count |
//! | `ACTIVATION_LOCK_SECONDS` | 900 | how long a lockout lasts |
//! | `RESEND_PER_MINUTE_LIMIT` | 1 | resends per minute |
//! | `RESEND_DAILY_LIMIT` | 5 | resends per day |
//! | `LOG_FORMAT` | `text` | `text` or `json` |
//!
//! Rocket's own settings (`ROCKET_ADDRESS`, `ROCKET_PORT`, limits, workers)
//! come from `Rocket.toml` and `ROCKET_*` as Rocket reads them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A setting that is missing or cannot be used; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("missing setting {0}: set it in the environment or in .env")]
    Missing(&'static str),
    #[error("invalid setting {name}: {problem}")]
    Invalid { name: &'static str, problem: String },
}

/// Everything `serve` and the user commands need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub redis_url: RedisUrl,
    pub secret_key: SecretKey,
    pub system_email: String,
    pub email_api_url: Option<String>,
    pub email_max_attempts: u32,
    pub email_concurrency: usize,
    pub templates_dir: Option<PathBuf>,
    pub code_ttl: Duration,
    pub bcrypt_cost: u32,
    pub limits: LimitSettings,
}

/// What the commands that only touch PostgreSQL need.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: usize,
}

/// Rate-limit policy (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub attempt_limit: u32,
    pub attempt_window: Duration,
    pub lock: Duration,
    pub resend_per_minute: u32,
    pub resend_daily: u32,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The key behind the activation codes' HMAC. Never printed.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

/// One Redis URL, or several for a cluster. May carry a password: redacted in
/// `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(pub Vec<String>);

impl SecretKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &crate::logging::redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|url| crate::logging::redact_url(url)))
            .finish()
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            attempt_limit: 5,
            attempt_window: Duration::from_secs(300),
            lock: Duration::from_secs(900),
            resend_per_minute: 1,
            resend_daily: 5,
        }
    }
}

/// Reads variables by name; the process environment in production, a map in
/// tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment, after loading `.env` if there is one.
pub struct Environment;

impl Environment {
    /// Loads `.env` (if present) into the process environment, once.
    pub fn load() -> Result<Self, SettingsError> {
        match dotenvy::dotenv() {
            Ok(_) => Ok(Self),
            Err(err) if err.not_found() => Ok(Self),
            Err(err) => Err(SettingsError::Invalid {
                name: ".env",
                problem: err.to_string(),
            }),
        }
    }
}

impl Source for Environment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Source for std::collections::HashMap<&str, &str, S> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).map(|value| value.to_string())
    }
}

/// Variables set to the empty string count as unset, as in most `.env` files.
fn optional(source: &impl Source, name: &'static str) -> Option<String> {
    source
        .get(name)
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

fn required(source: &impl Source, name: &'static str) -> Result<String, SettingsError> {
    optional(source, name).ok_or(SettingsError::Missing(name))
}

/// An integer in `range`, or `default` when unset.
fn integer<T>(
    source: &impl Source,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, SettingsError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = optional(source, name) else {
        return Ok(default);
    };
    let invalid = || SettingsError::Invalid {
        name,
        problem: format!(
            "expected an integer from {} to {}, got {raw:?}",
            range.start(),
            range.end()
        ),
    };
    let value: T = raw.parse().map_err(|_| invalid())?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid())
    }
}

fn seconds(
    source: &impl Source,
    name: &'static str,
    default: u64,
) -> Result<Duration, SettingsError> {
    integer(source, name, default, 1..=31_536_000).map(Duration::from_secs)
}

/// A URL. The value is not echoed when it is not one: it may hold a
/// password, or be a secret pasted into the wrong variable.
fn url(name: &'static str, value: String) -> Result<String, SettingsError> {
    if value.contains("://")
        && !value.contains(char::is_whitespace)
        && url::Url::parse(&value).is_ok()
    {
        Ok(value)
    } else {
        Err(SettingsError::Invalid {
            name,
            problem: "expected a URL such as scheme://host:port/...".into(),
        })
    }
}

impl DatabaseSettings {
    pub fn from_source(source: &impl Source) -> Result<Self, SettingsError> {
        let url = url("DATABASE_URL", required(source, "DATABASE_URL")?)?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(SettingsError::Invalid {
                name: "DATABASE_URL",
                problem: "expected a postgres:// or postgresql:// URL".into(),
            });
        }
        Ok(Self {
            url,
            pool_size: integer(source, "DATABASE_POOL_SIZE", 16, 1..=1000)?,
        })
    }
}

impl Settings {
    pub fn from_source(source: &impl Source) -> Result<Self, SettingsError> {
        let database = DatabaseSettings::from_source(source)?;

        let redis_urls = required(source, "REDIS_URL")?
            .split(',')
            .map(|part| url("REDIS_URL", part.trim().to_owned()))
            .collect::<Result<Vec<_>, _>>()?;

        let secret_key = required(source, "SECRET_KEY")?;
        if secret_key.len() < 16 {
            return Err(SettingsError::Invalid {
                name: "SECRET_KEY",
                problem: "must be at least 16 characters long".into(),
            });
        }

        let system_email =
            optional(source, "SYSTEM_EMAIL").unwrap_or_else(|| "no-reply@example.com".to_owned());
        if crate::address::normalize(&system_email).is_err() {
            return Err(SettingsError::Invalid {
                name: "SYSTEM_EMAIL",
                problem: format!("expected an email address, got {system_email:?}"),
            });
        }

        let email_api_url = optional(source, "EMAIL_API_URL")
            .map(|value| url("EMAIL_API_URL", value))
            .transpose()?;

        Ok(Self {
            database,
            redis_url: RedisUrl(redis_urls),
            secret_key: SecretKey::new(secret_key),
            system_email,
            email_api_url,
            email_max_attempts: integer(source, "EMAIL_MAX_ATTEMPTS", 5, 1..=100)?,
            email_concurrency: integer(source, "EMAIL_CONCURRENCY", 16, 1..=1024)?,
            templates_dir: optional(source, "TEMPLATES_DIR").map(PathBuf::from),
            code_ttl: seconds(source, "ACTIVATION_CODE_TTL_SECONDS", 60)?,
            bcrypt_cost: integer(
                source,
                "BCRYPT_COST",
                bcrypt::DEFAULT_COST,
                crate::password::COSTS,
            )?,
            limits: LimitSettings {
                attempt_limit: integer(source, "ACTIVATION_ATTEMPT_LIMIT", 5, 1..=1_000_000)?,
                attempt_window: seconds(source, "ACTIVATION_ATTEMPT_WINDOW_SECONDS", 300)?,
                lock: seconds(source, "ACTIVATION_LOCK_SECONDS", 900)?,
                resend_per_minute: integer(source, "RESEND_PER_MINUTE_LIMIT", 1, 1..=1_000_000)?,
                resend_daily: integer(source, "RESEND_DAILY_LIMIT", 5, 1..=1_000_000)?,
            },
        })
    }
}

impl LogFormat {
    pub fn from_source(source: &impl Source) -> Result<Self, SettingsError> {
        match optional(source, "LOG_FORMAT").as_deref() {
            None | Some("text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(SettingsError::Invalid {
                name: "LOG_FORMAT",
                problem: format!("expected \"text\" or \"json\", got {other:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("DATABASE_URL", "postgres://app:hunter2@localhost/activator"),
            ("REDIS_URL", "redis://localhost:6379/"),
            ("SECRET_KEY", "0123456789abcdef0123"),
        ])
    }

    #[test]
    fn defaults_follow_the_spec() {
        let settings = Settings::from_source(&base()).unwrap();
        assert_eq!(settings.code_ttl, Duration::from_secs(60));
        assert_eq!(settings.bcrypt_cost, 12);
        assert_eq!(settings.limits, LimitSettings::default());
        assert_eq!(settings.email_max_attempts, 5);
        assert_eq!(settings.email_concurrency, 16);
        assert_eq!(settings.email_api_url, None);
        assert_eq!(settings.system_email, "no-reply@example.com");
    }

    #[test]
    fn a_missing_required_setting_is_named() {
        for name in ["DATABASE_URL", "REDIS_URL", "SECRET_KEY"] {
            let mut source = base();
            source.remove(name);
            let err = Settings::from_source(&source).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn an_empty_value_counts_as_missing() {
        let mut source = base();
        source.insert("SECRET_KEY", "  ");
        let err = Settings::from_source(&source).unwrap_err();
        assert!(matches!(err, SettingsError::Missing("SECRET_KEY")), "{err}");
    }

    #[test]
    fn bcrypt_cost_takes_the_whole_bcrypt_range_and_nothing_else() {
        for (raw, ok) in [
            ("4", true),
            ("31", true),
            ("3", false),
            ("32", false),
            ("ten", false),
        ] {
            let mut source = base();
            source.insert("BCRYPT_COST", raw);
            let result = Settings::from_source(&source);
            assert_eq!(result.is_ok(), ok, "BCRYPT_COST={raw}");
            if let Err(err) = result {
                assert!(err.to_string().contains("BCRYPT_COST"), "{err}");
            }
        }
    }

    #[test]
    fn a_non_postgres_database_url_is_rejected() {
        let mut source = base();
        source.insert("DATABASE_URL", "mysql://localhost/x");
        let err = Settings::from_source(&source).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn a_comma_separated_redis_url_lists_cluster_nodes() {
        let mut source = base();
        source.insert("REDIS_URL", "redis://a:7000, redis://b:7001");
        let settings = Settings::from_source(&source).unwrap();
        assert_eq!(
            settings.redis_url.0,
            vec!["redis://a:7000", "redis://b:7001"]
        );
    }

    #[test]
    fn an_invalid_url_is_refused_without_echoing_it() {
        for (name, value) in [
            ("DATABASE_URL", "postgres://app:hunter2@db host/x"),
            ("REDIS_URL", "redis://:hunter2@[::1/"),
            ("EMAIL_API_URL", "hunter2"),
        ] {
            let mut source = base();
            source.insert(name, value);
            let err = Settings::from_source(&source).unwrap_err().to_string();
            assert!(err.contains(name) && !err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let settings = Settings::from_source(&base()).unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("0123456789abcdef0123"), "{printed}");
    }

    #[test]
    fn log_format_accepts_text_and_json_only() {
        let mut source = HashMap::new();
        assert_eq!(LogFormat::from_source(&source).unwrap(), LogFormat::Text);
        source.insert("LOG_FORMAT", "json");
        assert_eq!(LogFormat::from_source(&source).unwrap(), LogFormat::Json);
        source.insert("LOG_FORMAT", "xml");
        assert!(LogFormat::from_source(&source).is_err());
    }
}
