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
//! | `EMAIL_API_URL` | unset | where emails are POSTed (the HTTP email API); at most one of it and `SMTP_URL` |
//! | `SMTP_URL` | unset | SMTP server in lettre's URL form: `smtps://user:pass@host:465` (implicit TLS), `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtp://host:25` (plain); with neither set, emails go to the log (development only) |
//! | `EMAIL_MAX_ATTEMPTS` | 5 | attempts at one email before it is marked dead |
//! | `EMAIL_CONCURRENCY` | 16 | sends in flight per instance |
//! | `TEMPLATES_DIR` | unset | directory of `<locale>/` folders overriding or adding email templates |
//! | `DEFAULT_LOCALE` | `en` | language of emails when `Accept-Language` names none we have |
//! | `ACTIVATION_CODE_TTL_SECONDS` | 60 | how long a code is valid |
//! | `CODE_LENGTH` | 4 | digits in a code, 4–8 |
//! | `PENDING_ACCOUNT_TTL_SECONDS` | 86400 | how long a registration stays pending before the address may be registered afresh; 0 = for ever |
//! | `BCRYPT_COST` | 12 | bcrypt cost, 4–31 |
//! | `ACTIVATION_ATTEMPT_LIMIT` | 5 | failed activations before lockout |
//! | `ACTIVATION_ATTEMPT_WINDOW_SECONDS` | 300 | window in which those failures count |
//! | `ACTIVATION_LOCK_SECONDS` | 900 | how long a lockout lasts |
//! | `RESEND_PER_MINUTE_LIMIT` | 1 | resends per minute |
//! | `RESEND_DAILY_LIMIT` | 5 | resends per day |
//! | `ACTIVATION_MAX_FAILURES` | 10 | failed activations a pending account may have in its whole life |
//! | `AUTH_FAILURE_LIMIT` | 10 | failed Basic authentications per email within the window |
//! | `AUTH_FAILURE_PER_IP_LIMIT` | 30 | failed Basic authentications per client IP within the window |
//! | `AUTH_FAILURE_WINDOW_SECONDS` | 900 | the window of both |
//! | `ACTIVATION_FAILURE_PER_IP_LIMIT` | 30 | failed activations (wrong codes) per client IP within the window |
//! | `ACTIVATION_FAILURE_PER_IP_WINDOW_SECONDS` | 3600 | that window |
//! | `REGISTER_PER_IP_LIMIT` | 30 | registrations per client IP within the window |
//! | `REGISTER_PER_IP_WINDOW_SECONDS` | 600 | that window |
//! | `HASH_QUEUE_PER_IP` | 4 | places one client IP may hold in the password-hash queue |
//! | `EMAIL_PER_MAILBOX_DAILY_LIMIT` | 10 | activation emails a day to one mailbox (the address without its `+tag`) |
//! | `TRUSTED_PROXIES` | none | CIDRs whose `X-Forwarded-For` is believed |
//! | `RATE_LIMIT_EXEMPT` | `127.0.0.0/8,::1` | CIDRs the per-IP limits skip; empty for none |
//! | `METRICS_ADDRESS` | `127.0.0.1:9464` | where `GET /metrics` listens (`host:port`); empty disables it |
//! | `LOG_FORMAT` | `text` | `text` or `json` |
//!
//! Rocket's own settings (`ROCKET_ADDRESS`, `ROCKET_PORT`, limits, workers)
//! come from `Rocket.toml` and `ROCKET_*` as Rocket reads them.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

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
    pub smtp_url: Option<SmtpUrl>,
    pub email_max_attempts: u32,
    pub email_concurrency: usize,
    pub templates_dir: Option<PathBuf>,
    /// Lowercase; checked against the templates when they are loaded.
    pub default_locale: String,
    pub code_ttl: Duration,
    pub code_length: usize,
    /// `None`: a pending registration never expires.
    pub pending_ttl: Option<Duration>,
    pub bcrypt_cost: u32,
    pub limits: LimitSettings,
    pub network: NetworkSettings,
    /// Where the metrics listener binds; `None`: no metrics listener.
    pub metrics_address: Option<std::net::SocketAddr>,
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
    pub activation_max_failures: u32,
    pub activation_failures_per_ip: u32,
    pub activation_failure_window: Duration,
    pub auth_failures_per_email: u32,
    pub auth_failures_per_ip: u32,
    pub auth_failure_window: Duration,
    pub register_per_ip: u32,
    pub register_window: Duration,
    pub hash_queue_per_ip: usize,
    pub emails_per_mailbox_daily: u32,
}

/// Where clients are: which peers' `X-Forwarded-For` to believe, and which
/// client addresses the per-IP limits skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSettings {
    pub trusted_proxies: Vec<IpNet>,
    pub rate_limit_exempt: Vec<IpNet>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            rate_limit_exempt: cidrs("RATE_LIMIT_EXEMPT", DEFAULT_EXEMPT).unwrap_or_default(),
        }
    }
}

/// Loopback: a reverse proxy on the same host not yet in `TRUSTED_PROXIES`
/// must not make every client one throttled address.
const DEFAULT_EXEMPT: &str = "127.0.0.0/8,::1";

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

/// The SMTP server's URL, which may carry a password: redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(pub String);

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::logging::redact_url(&self.0))
    }
}

impl SmtpUrl {
    /// Checks the form lettre reads (`smtp://` or `smtps://`, a host, at
    /// most a `tls` parameter of `required` or `opportunistic`), without
    /// echoing the value.
    fn parse(value: String) -> Result<Self, SettingsError> {
        let invalid = |problem: &str| SettingsError::Invalid {
            name: "SMTP_URL",
            problem: problem.to_owned(),
        };
        let form = "expected smtps://user:pass@host:465, smtp://user:pass@host:587?tls=required or smtp://host:25";
        let value = url("SMTP_URL", value).map_err(|_| invalid(form))?;
        let parsed = url::Url::parse(&value).map_err(|_| invalid(form))?;
        if !matches!(parsed.scheme(), "smtp" | "smtps") {
            return Err(invalid(form));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the URL has no host"));
        }
        for (name, tls) in parsed.query_pairs() {
            match (&*name, &*tls, parsed.scheme()) {
                ("tls", "required" | "opportunistic", "smtp") => {}
                ("tls", _, "smtps") => {
                    return Err(invalid(
                        "smtps:// is always TLS; tls=... is for smtp:// (STARTTLS)",
                    ));
                }
                _ => {
                    return Err(invalid(
                        "the only parameter is tls=required or tls=opportunistic (STARTTLS)",
                    ));
                }
            }
        }
        Ok(Self(value))
    }
}

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
            activation_max_failures: 10,
            activation_failures_per_ip: 30,
            activation_failure_window: Duration::from_secs(3600),
            auth_failures_per_email: 10,
            auth_failures_per_ip: 30,
            auth_failure_window: Duration::from_secs(900),
            register_per_ip: 30,
            register_window: Duration::from_secs(600),
            hash_queue_per_ip: 4,
            emails_per_mailbox_daily: 10,
        }
    }
}

/// A comma-separated list of CIDRs (`10.0.0.0/8`) or single addresses.
fn cidrs(name: &'static str, value: &str) -> Result<Vec<IpNet>, SettingsError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| SettingsError::Invalid {
                    name,
                    problem: format!("expected CIDRs such as 10.0.0.0/8,::1, got {part:?}"),
                })
        })
        .collect()
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
            // The line may hold a secret: its number is said, not its text.
            Err(dotenvy::Error::LineParse(line, at)) => Err(SettingsError::Invalid {
                name: ".env",
                problem: format!(
                    "cannot parse {} at character {at} (its text is not shown: it may hold a secret)",
                    line_number(".env", &line)
                        .map_or_else(|| "a line".to_owned(), |n| format!("line {n}"))
                ),
            }),
            Err(err) => Err(SettingsError::Invalid {
                name: ".env",
                problem: err.to_string(),
            }),
        }
    }
}

/// The number (from 1) of the first line of `path` that reads `text`.
fn line_number(path: &str, text: &str) -> Option<usize> {
    let content = std::fs::read_to_string(path).ok()?;
    content
        .lines()
        .position(|line| line.trim() == text.trim())
        .map(|index| index + 1)
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

/// The longest duration a setting takes: a year.
const MAX_SECONDS: u64 = 31_536_000;

fn seconds(
    source: &impl Source,
    name: &'static str,
    default: u64,
) -> Result<Duration, SettingsError> {
    integer(source, name, default, 1..=MAX_SECONDS).map(Duration::from_secs)
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
        let smtp_url = optional(source, "SMTP_URL")
            .map(SmtpUrl::parse)
            .transpose()?;
        if email_api_url.is_some() && smtp_url.is_some() {
            return Err(SettingsError::Invalid {
                name: "SMTP_URL",
                problem: "EMAIL_API_URL and SMTP_URL are both set; set only one of them".into(),
            });
        }
        let default_locale = optional(source, "DEFAULT_LOCALE")
            .unwrap_or_else(|| crate::mail::templates::DEFAULT_LOCALE.to_owned())
            .to_ascii_lowercase();
        if !crate::mail::locale::is_language_tag(&default_locale) {
            return Err(SettingsError::Invalid {
                name: "DEFAULT_LOCALE",
                problem: format!(
                    "expected a language tag such as en or pt-br, got {default_locale:?}"
                ),
            });
        }

        Ok(Self {
            database,
            redis_url: RedisUrl(redis_urls),
            secret_key: SecretKey::new(secret_key),
            system_email,
            email_api_url,
            smtp_url,
            email_max_attempts: integer(source, "EMAIL_MAX_ATTEMPTS", 5, 1..=100)?,
            email_concurrency: integer(source, "EMAIL_CONCURRENCY", 16, 1..=1024)?,
            templates_dir: optional(source, "TEMPLATES_DIR").map(PathBuf::from),
            default_locale,
            code_ttl: seconds(source, "ACTIVATION_CODE_TTL_SECONDS", 60)?,
            code_length: integer(source, "CODE_LENGTH", 4, 4..=8)?,
            pending_ttl: match integer(
                source,
                "PENDING_ACCOUNT_TTL_SECONDS",
                86_400,
                0..=MAX_SECONDS,
            )? {
                0 => None,
                seconds => Some(Duration::from_secs(seconds)),
            },
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
                activation_max_failures: integer(
                    source,
                    "ACTIVATION_MAX_FAILURES",
                    10,
                    1..=1_000_000,
                )?,
                activation_failures_per_ip: integer(
                    source,
                    "ACTIVATION_FAILURE_PER_IP_LIMIT",
                    30,
                    1..=1_000_000,
                )?,
                activation_failure_window: seconds(
                    source,
                    "ACTIVATION_FAILURE_PER_IP_WINDOW_SECONDS",
                    3600,
                )?,
                auth_failures_per_email: integer(source, "AUTH_FAILURE_LIMIT", 10, 1..=1_000_000)?,
                auth_failures_per_ip: integer(
                    source,
                    "AUTH_FAILURE_PER_IP_LIMIT",
                    30,
                    1..=1_000_000,
                )?,
                auth_failure_window: seconds(source, "AUTH_FAILURE_WINDOW_SECONDS", 900)?,
                register_per_ip: integer(source, "REGISTER_PER_IP_LIMIT", 30, 1..=1_000_000)?,
                register_window: seconds(source, "REGISTER_PER_IP_WINDOW_SECONDS", 600)?,
                hash_queue_per_ip: integer(source, "HASH_QUEUE_PER_IP", 4, 1..=10_000)?,
                emails_per_mailbox_daily: integer(
                    source,
                    "EMAIL_PER_MAILBOX_DAILY_LIMIT",
                    10,
                    1..=1_000_000,
                )?,
            },
            network: NetworkSettings {
                trusted_proxies: cidrs(
                    "TRUSTED_PROXIES",
                    &optional(source, "TRUSTED_PROXIES").unwrap_or_default(),
                )?,
                // Set but empty means none, unlike the other settings.
                rate_limit_exempt: cidrs(
                    "RATE_LIMIT_EXEMPT",
                    &source
                        .get("RATE_LIMIT_EXEMPT")
                        .unwrap_or_else(|| DEFAULT_EXEMPT.to_owned()),
                )?,
            },
            metrics_address: metrics_address(source)?,
        })
    }
}

/// `METRICS_ADDRESS`: the default when unset, none when set but empty.
fn metrics_address(source: &impl Source) -> Result<Option<std::net::SocketAddr>, SettingsError> {
    let value = source
        .get("METRICS_ADDRESS")
        .unwrap_or_else(|| DEFAULT_METRICS_ADDRESS.to_owned());
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| SettingsError::Invalid {
        name: "METRICS_ADDRESS",
        problem: format!("expected an IP address and port such as 127.0.0.1:9464, got {value:?}"),
    })
}

const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9464";

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
    fn network_lists_take_cidrs_and_addresses_and_empty_means_none() {
        let settings = Settings::from_source(&base()).unwrap();
        assert_eq!(settings.network, NetworkSettings::default());
        assert_eq!(settings.network.rate_limit_exempt.len(), 2);
        assert!(settings.network.trusted_proxies.is_empty());
        let mut source = base();
        source.insert("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,fd00::/8");
        source.insert("RATE_LIMIT_EXEMPT", "");
        let settings = Settings::from_source(&source).unwrap();
        assert_eq!(settings.network.trusted_proxies.len(), 3);
        assert!(settings.network.rate_limit_exempt.is_empty());
        source.insert("TRUSTED_PROXIES", "10.0.0.0/33");
        let err = Settings::from_source(&source).unwrap_err();
        assert!(err.to_string().contains("TRUSTED_PROXIES"), "{err}");
    }

    #[test]
    fn metrics_listen_on_loopback_unless_moved_or_emptied() {
        let mut source = base();
        let settings = Settings::from_source(&source).unwrap();
        assert_eq!(
            settings.metrics_address,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        source.insert("METRICS_ADDRESS", "[::1]:9500");
        let settings = Settings::from_source(&source).unwrap();
        assert_eq!(
            settings.metrics_address,
            Some("[::1]:9500".parse().unwrap())
        );
        source.insert("METRICS_ADDRESS", "");
        assert_eq!(
            Settings::from_source(&source).unwrap().metrics_address,
            None
        );
        source.insert("METRICS_ADDRESS", "localhost");
        let err = Settings::from_source(&source).unwrap_err().to_string();
        assert!(err.contains("METRICS_ADDRESS"), "{err}");
    }

    #[test]
    fn a_pending_ttl_of_zero_means_for_ever() {
        let mut source = base();
        assert_eq!(
            Settings::from_source(&source).unwrap().pending_ttl,
            Some(Duration::from_secs(86_400))
        );
        source.insert("PENDING_ACCOUNT_TTL_SECONDS", "0");
        assert_eq!(Settings::from_source(&source).unwrap().pending_ttl, None);
        source.insert("CODE_LENGTH", "9");
        assert!(Settings::from_source(&source).is_err());
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
    fn smtp_url_takes_lettres_forms_and_hides_its_password() {
        for value in [
            "smtps://mailer:hunter2@smtp.example.com:465",
            "smtp://mailer:hunter2@smtp.example.com:587?tls=required",
            "smtp://127.0.0.1:2525",
        ] {
            let mut source = base();
            source.insert("SMTP_URL", value);
            let settings = Settings::from_source(&source).unwrap();
            assert_eq!(
                settings.smtp_url.as_ref().map(|url| url.0.as_str()),
                Some(value)
            );
            let printed = format!("{settings:?}");
            assert!(!printed.contains("hunter2"), "{printed}");
        }
        for value in [
            "http://mailer:hunter2@smtp.example.com",
            "smtp://mailer:hunter2@smtp.example.com?tls=none",
            "smtps://mailer:hunter2@smtp.example.com?tls=required",
            "smtp://mailer:hunter2@:25",
            "hunter2",
        ] {
            let mut source = base();
            source.insert("SMTP_URL", value);
            let err = Settings::from_source(&source).unwrap_err().to_string();
            assert!(
                err.contains("SMTP_URL") && !err.contains("hunter2"),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn an_email_api_and_an_smtp_server_together_are_refused_naming_both() {
        let mut source = base();
        source.insert("EMAIL_API_URL", "http://127.0.0.1:8025/v1/send");
        source.insert("SMTP_URL", "smtp://user:hunter2@127.0.0.1:2525");
        let err = Settings::from_source(&source).unwrap_err().to_string();
        assert!(
            err.contains("EMAIL_API_URL") && err.contains("SMTP_URL"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn default_locale_is_a_language_tag() {
        assert_eq!(Settings::from_source(&base()).unwrap().default_locale, "en");
        let mut source = base();
        source.insert("DEFAULT_LOCALE", "pt-BR");
        assert_eq!(
            Settings::from_source(&source).unwrap().default_locale,
            "pt-br"
        );
        source.insert("DEFAULT_LOCALE", "../etc");
        let err = Settings::from_source(&source).unwrap_err().to_string();
        assert!(err.contains("DEFAULT_LOCALE"), "{err}");
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
