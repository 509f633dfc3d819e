//! Settings: one typed struct built once at start-up from environment
//! variables (a `.env` file in the working directory is read first, without
//! overriding variables already set).
//!
//! Every variable, with its default and meaning, is in [`VARIABLES`]: the
//! one place defaults are written. `.env.example` and the README's tables
//! repeat them for people, and a test holds them to this table.
//!
//! This module names nothing else of the crate: each module checks what only
//! it can judge (an address, a language with templates, a bcrypt cost) when
//! it is built from these settings.
//!
//! Rocket's own settings (`ROCKET_ADDRESS`, `ROCKET_PORT`, limits, workers)
//! come from `Rocket.toml` and `ROCKET_*` as Rocket reads them.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

mod limits;
mod passwords;
mod traces;
mod variables;

pub use limits::LimitSettings;
pub use passwords::{BCRYPT_MAX_BYTES, Disclosure, Normalization, PasswordSettings, Preset};
pub use traces::{RootSampler, Sampler, TraceSettings};
pub use variables::{DefaultValue, VARIABLES, Variable};

/// The default value of `name`, if it has one.
fn default_of(name: &str) -> Option<&'static str> {
    VARIABLES
        .iter()
        .find(|variable| variable.name == name)
        .and_then(|variable| match variable.default {
            DefaultValue::Value(value) => Some(value),
            DefaultValue::Required | DefaultValue::Unset => None,
        })
}

/// bcrypt's whole range of costs.
pub const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

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
    /// Older keys that still verify codes and open queued emails
    /// (`SECRET_KEY_FALLBACKS`).
    pub secret_key_fallbacks: Vec<SecretKey>,
    pub system_email: String,
    pub email_api_url: Option<String>,
    pub smtp_url: Option<SmtpUrl>,
    pub email_max_attempts: u32,
    /// Where events go, and how they are signed; `None`: no events.
    pub webhook: Option<WebhookSettings>,
    pub email_concurrency: usize,
    pub templates_dir: Option<PathBuf>,
    /// Lowercase; checked against the templates when they are loaded.
    pub default_locale: String,
    pub code_ttl: Duration,
    pub code_length: usize,
    /// `None`: a pending registration never expires.
    pub pending_ttl: Option<Duration>,
    pub bcrypt_cost: u32,
    /// Keep a proof of a registration's credentials (`CREDENTIAL_PROOF`).
    pub credential_proof: bool,
    pub limits: LimitSettings,
    /// The password policy, its strength estimate and its deny list.
    pub passwords: PasswordSettings,
    /// Whether registration tells who has an account.
    pub disclosure: Disclosure,
    /// How addresses that reach one inbox fold into one mailbox.
    pub inboxes: InboxSettings,
    pub network: NetworkSettings,
    /// Where the metrics listener binds; `None`: no metrics listener.
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// Which domains are aliases of others (`MAILBOX_ALIAS_DOMAINS`) and which
/// ignore dots in the local part (`MAILBOX_DOTLESS_DOMAINS`), lowercase
/// ASCII (IDNA) forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxSettings {
    pub aliases: Vec<(String, String)>,
    pub dotless: Vec<String>,
}

impl InboxSettings {
    pub fn from_source(source: &impl Source) -> Result<Self, SettingsError> {
        // Set but empty means none, as for RATE_LIMIT_EXEMPT.
        let list = |name: &'static str| {
            source
                .get(name)
                .or_else(|| default_of(name).map(str::to_owned))
                .unwrap_or_default()
        };
        let domain = |name: &'static str, raw: &str| {
            let domain = raw.trim().to_ascii_lowercase();
            let valid = !domain.is_empty()
                && domain.contains('.')
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            valid
                .then_some(domain)
                .ok_or_else(|| SettingsError::Invalid {
                    name,
                    problem: format!("expected domains in their ASCII form, got {raw:?}"),
                })
        };
        let aliases = list("MAILBOX_ALIAS_DOMAINS")
            .split(',')
            .filter(|pair| !pair.trim().is_empty())
            .map(|pair| {
                let (alias, canonical) = pair.split_once('=').ok_or(SettingsError::Invalid {
                    name: "MAILBOX_ALIAS_DOMAINS",
                    problem: format!("expected alias=domain pairs, got {pair:?}"),
                })?;
                Ok((
                    domain("MAILBOX_ALIAS_DOMAINS", alias)?,
                    domain("MAILBOX_ALIAS_DOMAINS", canonical)?,
                ))
            })
            .collect::<Result<Vec<_>, SettingsError>>()?;
        let dotless = list("MAILBOX_DOTLESS_DOMAINS")
            .split(',')
            .filter(|d| !d.trim().is_empty())
            .map(|d| domain("MAILBOX_DOTLESS_DOMAINS", d))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { aliases, dotless })
    }
}

/// The webhook events are posted to (`WEBHOOK_URL`, `WEBHOOK_SECRET`,
/// `WEBHOOK_EVENTS`).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub url: String,
    /// The secrets' bytes (after `whsec_`, base64-decoded); each signs.
    pub secrets: Vec<Vec<u8>>,
    /// `user.activated` is sent.
    pub activated: bool,
    /// `user.registered` is sent.
    pub registered: bool,
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &redact_url(&self.url))
            .field("secrets", &self.secrets.len())
            .field("activated", &self.activated)
            .field("registered", &self.registered)
            .finish()
    }
}

impl WebhookSettings {
    fn from_source(source: &impl Source) -> Result<Option<Self>, SettingsError> {
        let Some(url) = optional(source, "WEBHOOK_URL") else {
            return Ok(None);
        };
        let url = self::url("WEBHOOK_URL", url)?;
        let secrets = optional(source, "WEBHOOK_SECRET")
            .ok_or(SettingsError::Missing("WEBHOOK_SECRET"))?
            .split_whitespace()
            .map(|secret| {
                use base64::Engine;
                secret
                    .strip_prefix("whsec_")
                    .and_then(|key| base64::engine::general_purpose::STANDARD.decode(key).ok())
                    .filter(|key| key.len() >= 16)
                    .ok_or(SettingsError::Invalid {
                        name: "WEBHOOK_SECRET",
                        problem: "expected whsec_ and the base64 of at least 16 random bytes"
                            .into(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let events = value(source, "WEBHOOK_EVENTS").unwrap_or_default();
        let mut settings = Self {
            url,
            secrets,
            activated: false,
            registered: false,
        };
        for event in events.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match event {
                "user.activated" => settings.activated = true,
                "user.registered" => settings.registered = true,
                other => {
                    return Err(SettingsError::Invalid {
                        name: "WEBHOOK_EVENTS",
                        problem: format!(
                            "expected user.activated or user.registered, got {other:?}"
                        ),
                    });
                }
            }
        }
        Ok(Some(settings))
    }
}

/// What the commands that only touch PostgreSQL need.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: usize,
}

/// Where clients are: which peers' `X-Forwarded-For` to believe, and which
/// client addresses the per-IP limits skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSettings {
    pub trusted_proxies: Vec<IpNet>,
    pub rate_limit_exempt: Vec<IpNet>,
}

impl NetworkSettings {
    pub fn from_source(source: &impl Source) -> Result<Self, SettingsError> {
        // Set but empty means none, unlike the other settings.
        let list = |name: &'static str| {
            let raw = source
                .get(name)
                .or_else(|| default_of(name).map(str::to_owned))
                .unwrap_or_default();
            cidrs(name, &raw)
        };
        Ok(Self {
            trusted_proxies: list("TRUSTED_PROXIES")?,
            rate_limit_exempt: list("RATE_LIMIT_EXEMPT")?,
        })
    }
}

/// The defaults of [`VARIABLES`].
impl Default for NetworkSettings {
    fn default() -> Self {
        Self::from_source(&NONE)
            .unwrap_or_else(|err| panic!("a default of VARIABLES does not parse: {err}"))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The key behind the activation codes' HMAC. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Vec<u8>);

/// One Redis URL, several for a cluster, or one `redis+sentinel://` URL
/// naming the Sentinels of a primary ([`SentinelUrl`]). May carry a
/// password: redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(pub Vec<String>);

impl RedisUrl {
    /// The Sentinel form, when that is what the URL is (checked when the
    /// settings were read).
    pub fn sentinel(&self) -> Option<SentinelUrl> {
        match self.0.as_slice() {
            [one] if is_sentinel_url(one) => SentinelUrl::parse(one).ok(),
            _ => None,
        }
    }
}

fn is_sentinel_url(value: &str) -> bool {
    value
        .split_once("://")
        .is_some_and(|(scheme, _)| scheme.to_ascii_lowercase().ends_with("+sentinel"))
}

/// `redis+sentinel://[user:password@]host:port[,host:port...]/<primary
/// name>[/<db>][?sentinel_username=..&sentinel_password=..]`: the Sentinels
/// to ask which server is the primary named `primary`. The user and
/// password are the data nodes' (primary and replicas); Sentinels that
/// require a password of their own take it from the query, since a
/// Sentinel without one refuses an `AUTH`. A port left out is Sentinel's
/// 26379. TLS (`rediss+sentinel`) is not offered: the build has no TLS for
/// Redis at all.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    pub sentinels: Vec<(String, u16)>,
    pub primary: String,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
}

impl fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("sentinels", &self.sentinels)
            .field("primary", &self.primary)
            .field("db", &self.db)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "***"),
            )
            .finish_non_exhaustive()
    }
}

impl SentinelUrl {
    /// Sentinel's own port, for a host given without one.
    pub const DEFAULT_PORT: u16 = 26379;

    /// Reads the form above; the problem never quotes the value, which may
    /// hold a password.
    pub fn parse(value: &str) -> Result<Self, String> {
        let (scheme, user, hosts, rest) =
            authority(value).ok_or("expected redis+sentinel://host:port,.../<primary name>")?;
        match scheme.to_ascii_lowercase().as_str() {
            "redis+sentinel" => {}
            "rediss+sentinel" => {
                return Err("TLS to Redis (rediss+sentinel) is not supported; use redis+sentinel over a private network or a TLS tunnel".into());
            }
            _ => return Err("expected the scheme redis+sentinel".into()),
        }
        let sentinels = hosts
            .split(',')
            .map(|host| {
                let host = host.trim();
                let bad = "each Sentinel is host, host:port or [IPv6]:port, comma-separated";
                let (name, port) = match host.strip_prefix('[') {
                    Some(bracketed) => {
                        let (name, after) = bracketed.split_once(']').ok_or(bad)?;
                        (name, after.strip_prefix(':'))
                    }
                    None => match host.split_once(':') {
                        Some((name, port)) => (name, Some(port)),
                        None => (host, None),
                    },
                };
                let port = match port {
                    Some(port) => port
                        .parse::<u16>()
                        .ok()
                        .filter(|port| *port > 0)
                        .ok_or("each Sentinel's port is from 1 to 65535")?,
                    None => Self::DEFAULT_PORT,
                };
                if name.is_empty() || name.contains(['@', '/', ' ', '[', ']']) {
                    return Err(bad);
                }
                Ok((name.to_owned(), port))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut parts = path.trim_start_matches('/').split('/');
        let primary = parts
            .next()
            .filter(|name| !name.is_empty())
            .ok_or("the path names the primary: redis+sentinel://host:port/<primary name>")?;
        let primary = decode(primary)?;
        let db =
            match parts.next().filter(|db| !db.is_empty()) {
                Some(db) => db.parse::<i64>().ok().filter(|db| *db >= 0).ok_or(
                    "the database after the primary's name is a number: /<primary name>/<db>",
                )?,
                None => 0,
            };
        if parts.next().is_some() {
            return Err("the path is /<primary name>[/<db>]".into());
        }
        let (username, password) = match user {
            None => (None, None),
            Some(user) => match user.split_once(':') {
                Some((name, password)) => (
                    Some(decode(name)?).filter(|name| !name.is_empty()),
                    Some(decode(password)?),
                ),
                None => (Some(decode(user)?), None),
            },
        };
        let (mut sentinel_username, mut sentinel_password) = (None, None);
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "sentinel_username" => sentinel_username = Some(value.into_owned()),
                "sentinel_password" => sentinel_password = Some(value.into_owned()),
                _ => {
                    return Err(
                        "the only parameters are sentinel_username and sentinel_password".into(),
                    );
                }
            }
        }
        Ok(Self {
            sentinels,
            primary,
            db,
            username,
            password,
            sentinel_username,
            sentinel_password,
        })
    }
}

/// A percent-encoded part of a URL, decoded.
fn decode(part: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| "a percent-encoded part is not UTF-8".to_owned())
}

/// The SMTP server's URL, which may carry a password: redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl(pub String);

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
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

    /// A 32-byte key for `purpose`, derived from this one with HKDF-SHA256:
    /// keys of different purposes are independent of each other.
    pub fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 × 32.
        hkdf::Hkdf::<sha2::Sha256>::new(None, &self.0)
            .expand(purpose, &mut key)
            .unwrap_or_else(|_| unreachable!("HKDF-SHA256 yields 32 bytes"));
        key
    }

    /// A name for this key that reveals nothing of it (16 hex digits of a
    /// key derived for the purpose): what `config check` and the records
    /// of a fallback's last use show.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.derive(b"activator key fingerprint v1")[..8])
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
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|url| redact_url(url)))
            .finish()
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

/// No variable set: every setting at its default.
struct NoVariables;

const NONE: NoVariables = NoVariables;

impl Source for NoVariables {
    fn get(&self, _name: &str) -> Option<String> {
        None
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

/// The value of `name`, or its default; `None` when neither is set.
fn value(source: &impl Source, name: &'static str) -> Option<String> {
    optional(source, name).or_else(|| {
        default_of(name)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    })
}

/// An integer in `range`, or the default when unset.
fn integer<T>(
    source: &impl Source,
    name: &'static str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, SettingsError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = value(source, name) else {
        return Err(SettingsError::Missing(name));
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

/// The shortest key accepted: 32 bytes, a SHA-256 block's worth of
/// entropy at best, as HMAC-SHA256 and HKDF want.
pub const MIN_SECRET_KEY_BYTES: usize = 32;

/// The value `.env.example` ships: a key everyone can read.
pub const PLACEHOLDER_SECRET_KEY: &str = "change-me-to-a-long-random-string";

/// A key: long enough, and not the placeholder. Neither the value nor its
/// length is echoed.
fn secret_key(source: &impl Source, name: &'static str) -> Result<SecretKey, SettingsError> {
    checked_key(name, required(source, name)?)
}

/// `key` as a key of setting `name`, if long enough and not the placeholder.
fn checked_key(name: &'static str, key: String) -> Result<SecretKey, SettingsError> {
    let problem = if key == PLACEHOLDER_SECRET_KEY {
        "is the placeholder of .env.example; generate a key, e.g. openssl rand -base64 48"
    } else if key.len() < MIN_SECRET_KEY_BYTES {
        "must be at least 32 bytes long; generate a key, e.g. openssl rand -base64 48"
    } else {
        return Ok(SecretKey::new(key));
    };
    Err(SettingsError::Invalid {
        name,
        problem: problem.into(),
    })
}

/// `scheme://[user@]hosts` and the rest of `url` (from its path on).
fn authority(url: &str) -> Option<(&str, Option<&str>, &str, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (Some(user), hosts),
        None => (None, authority),
    };
    Some((scheme, user, hosts, rest))
}

/// For a URL naming several hosts (`h1:5432,h2:5432`), the same URL for
/// each host alone; `None` for a URL of one host.
fn multi_host(url: &str) -> Option<Vec<String>> {
    let (scheme, user, hosts, rest) = authority(url)?;
    if !hosts.contains(',') {
        return None;
    }
    let user = user.map(|user| format!("{user}@")).unwrap_or_default();
    Some(
        hosts
            .split(',')
            .map(|host| format!("{scheme}://{user}{host}{rest}"))
            .collect(),
    )
}

/// The longest duration a setting takes: a year.
const MAX_SECONDS: u64 = 31_536_000;

/// `on` or `off`.
fn switch(source: &impl Source, name: &'static str) -> Result<bool, SettingsError> {
    match value(source, name).as_deref() {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        other => Err(SettingsError::Invalid {
            name,
            problem: format!("expected on or off, got {:?}", other.unwrap_or_default()),
        }),
    }
}

/// A limit's count: at least one.
fn count(source: &impl Source, name: &'static str) -> Result<u32, SettingsError> {
    integer(source, name, 1..=1_000_000)
}

fn seconds(source: &impl Source, name: &'static str) -> Result<Duration, SettingsError> {
    integer(source, name, 1..=MAX_SECONDS).map(Duration::from_secs)
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
    /// `DATABASE_URL`: one host, or several, libpq style
    /// (`postgresql://user@h1:5432,h2:5432/db?target_session_attrs=read-write`):
    /// each connection goes to the first host that takes it (with that
    /// parameter, the first that accepts writes), so after a failover the
    /// pool, the dispatcher and its listener reconnect to the new primary.
    pub fn from_source(source: &impl Source) -> Result<Self, SettingsError> {
        let raw = required(source, "DATABASE_URL")?;
        // Each host must make a URL of its own; the value is not echoed.
        let url = match multi_host(&raw) {
            Some(singles) => {
                for single in singles {
                    url("DATABASE_URL", single)?;
                }
                raw
            }
            None => url("DATABASE_URL", raw)?,
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(SettingsError::Invalid {
                name: "DATABASE_URL",
                problem: "expected a postgres:// or postgresql:// URL".into(),
            });
        }
        Ok(Self {
            url,
            pool_size: integer(source, "DATABASE_POOL_SIZE", 1..=1000)?,
        })
    }
}

impl Settings {
    pub fn from_source(source: &impl Source) -> Result<Self, SettingsError> {
        let database = DatabaseSettings::from_source(source)?;

        let redis_url = required(source, "REDIS_URL")?;
        let redis_urls = if is_sentinel_url(&redis_url) {
            // One URL naming several Sentinels, not a list.
            let redis_url = redis_url.trim().to_owned();
            SentinelUrl::parse(&redis_url).map_err(|problem| SettingsError::Invalid {
                name: "REDIS_URL",
                problem,
            })?;
            vec![redis_url]
        } else {
            redis_url
                .split(',')
                .map(|part| url("REDIS_URL", part.trim().to_owned()))
                .collect::<Result<Vec<_>, _>>()?
        };

        let secret_key = secret_key(source, "SECRET_KEY")?;
        let secret_key_fallbacks = optional(source, "SECRET_KEY_FALLBACKS")
            .map(|keys| {
                keys.split(',')
                    .map(|key| checked_key("SECRET_KEY_FALLBACKS", key.trim().to_owned()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        if secret_key_fallbacks.contains(&secret_key) {
            // A fallback that is the key itself would keep nothing old
            // working and hide a rotation that was never made.
            return Err(SettingsError::Invalid {
                name: "SECRET_KEY_FALLBACKS",
                problem: "holds SECRET_KEY itself; list only the keys SECRET_KEY replaced".into(),
            });
        }

        let system_email =
            value(source, "SYSTEM_EMAIL").ok_or(SettingsError::Missing("SYSTEM_EMAIL"))?;

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
        // Checked against the templates when they are loaded.
        let default_locale = value(source, "DEFAULT_LOCALE")
            .ok_or(SettingsError::Missing("DEFAULT_LOCALE"))?
            .to_ascii_lowercase();

        Ok(Self {
            database,
            redis_url: RedisUrl(redis_urls),
            secret_key,
            secret_key_fallbacks,
            system_email,
            email_api_url,
            smtp_url,
            email_max_attempts: integer(source, "EMAIL_MAX_ATTEMPTS", 1..=100)?,
            email_concurrency: integer(source, "EMAIL_CONCURRENCY", 1..=1024)?,
            templates_dir: optional(source, "TEMPLATES_DIR").map(PathBuf::from),
            default_locale,
            code_ttl: seconds(source, "ACTIVATION_CODE_TTL_SECONDS")?,
            code_length: integer(source, "CODE_LENGTH", 4..=8)?,
            pending_ttl: match integer(source, "PENDING_ACCOUNT_TTL_SECONDS", 0..=MAX_SECONDS)? {
                0 => None,
                seconds => Some(Duration::from_secs(seconds)),
            },
            bcrypt_cost: integer(source, "BCRYPT_COST", BCRYPT_COSTS)?,
            credential_proof: switch(source, "CREDENTIAL_PROOF")?,
            webhook: WebhookSettings::from_source(source)?,
            limits: LimitSettings::from_source(source)?,
            passwords: PasswordSettings::from_source(source)?,
            disclosure: Disclosure::from_source(source)?,
            inboxes: InboxSettings::from_source(source)?,
            network: NetworkSettings::from_source(source)?,
            metrics_address: metrics_address(source)?,
        })
    }
}

/// `METRICS_ADDRESS`: the default when unset, none when set but empty.
fn metrics_address(source: &impl Source) -> Result<Option<std::net::SocketAddr>, SettingsError> {
    let value = source
        .get("METRICS_ADDRESS")
        .or_else(|| default_of("METRICS_ADDRESS").map(str::to_owned))
        .unwrap_or_default();
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| SettingsError::Invalid {
        name: "METRICS_ADDRESS",
        problem: format!("expected an IP address and port such as 127.0.0.1:9464, got {value:?}"),
    })
}

impl LogFormat {
    pub fn from_source(source: &impl Source) -> Result<Self, SettingsError> {
        match value(source, "LOG_FORMAT").as_deref() {
            None | Some("text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(SettingsError::Invalid {
                name: "LOG_FORMAT",
                problem: format!("expected \"text\" or \"json\", got {other:?}"),
            }),
        }
    }
}

/// `url` fit for a log line or an error message: user info and query
/// replaced by `***`, so `scheme://user:secret@host/path?key=k` reads
/// `scheme://***@host/path?***`. Something that is not a URL becomes
/// `(not a URL)`: it could be a secret pasted into the wrong variable.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, user, hosts, rest)) = authority(url)
        && hosts.contains(',')
    {
        // Several hosts (libpq style), which `url` cannot parse.
        let path = rest.split(['?', '#']).next().unwrap_or_default();
        let query = if rest.contains('?') { "?***" } else { "" };
        let user = if user.is_some() { "***@" } else { "" };
        return format!("{scheme}://{user}{hosts}{path}{query}");
    }
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(not a URL)".to_owned();
    };
    let had_user = !parsed.username().is_empty() || parsed.password().is_some();
    let had_query = parsed.query().is_some();
    // Both fail only for URLs that cannot have them, which then have none.
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    parsed.set_query(None);
    parsed.set_fragment(None);
    let mut text = parsed.to_string();
    if had_user && let Some(at) = text.find("://").map(|i| i + 3) {
        text.insert_str(at, "***@");
    }
    if had_query {
        text.push_str("?***");
    }
    text
}

#[cfg(test)]
mod tests;
