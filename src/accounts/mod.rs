//! The account workflows: register, authenticate, issue a code (resend and
//! its support variant), activate, unlock, delete. Plain async functions
//! shared by the HTTP handlers and the CLI; they know nothing of HTTP.
//!
//! The owner of an address always wins (docs/LIMITS.md "The owner of an
//! address"): a code proves the inbox, not a registration. Every password
//! registered for a pending address (its first registration, and each
//! claim a later registration records) may be activated with any live code
//! emailed to the address's inbox, so nobody who cannot read the inbox can
//! end, outrun or spend the owner's chances; what they can guess is bounded
//! per inbox. Abuse resistance is each workflow's first steps: the client's
//! limits before any hashing, failed sign-ins counted before the password
//! is checked (and the account's own limits only once it is known right),
//! emails counted per inbox.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::address::{Email, Inboxes};
use crate::code::CodeHasher;
use crate::credential::{Proofs, Prover, Recent};
use crate::db::users::User;
use crate::db::{self, Pool, users};
use crate::limits::{Decision, Limit, Limiter};
use crate::password::{HashError, Hasher};
use crate::policy::PasswordPolicy;
use crate::redis::KeyNames;
use crate::seal::Sealer;
use crate::settings::{Disclosure, Settings};

/// Runs the async closure `$work` in a transaction on `$conn` (a `&mut
/// AsyncPgConnection`), once more if PostgreSQL aborted it for a deadlock or
/// a serialization failure ([`run_again`]). Each run is a span of the
/// request's trace, named for the workflow's `$step`. A macro, so that each
/// run gets a closure of its own.
macro_rules! transaction {
    ($conn:expr, $step:expr, $work:expr) => {{
        let conn: &mut diesel_async::AsyncPgConnection = $conn;
        let mut attempt = 1;
        loop {
            let result = tracing::Instrument::instrument(
                diesel_async::AsyncConnection::transaction(&mut *conn, $work),
                crate::traces::spans::transaction($step),
            )
            .await;
            if !super::run_again(&result, attempt) {
                break result;
            }
            attempt += 1;
        }
    }};
}

mod activate;
mod codes;
mod disclosure;
mod events;
mod register;
mod sign_in;
mod support;

pub use disclosure::Paced;
pub use support::{Deleted, Unlocked};

use events::Events;

/// Why a workflow did not complete.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("account already active")]
    AlreadyActive,
    #[error("an activation code was already issued for this account")]
    CodeAlreadyIssued,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("invalid or expired activation code")]
    InvalidCode,
    #[error("rate limited ({limit:?}) for {retry_after:?}")]
    RateLimited { limit: Limit, retry_after: Duration },
    #[error("no account for {0}")]
    UnknownUser(Email),
    #[error("too many password hashes waiting")]
    Busy,
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("password hashing failed: {0}")]
    Hash(HashError),
}

impl AccountError {
    /// Whether a store (PostgreSQL or Redis) failed, rather than the
    /// request being answered: a 503 that the client may retry.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Pool(_) | Self::Database(_) | Self::Redis(_))
    }
}

impl From<HashError> for AccountError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => Self::Busy,
            // Another place opens within a hash's time.
            HashError::ClientBusy => Self::RateLimited {
                limit: Limit::HashQueuePerIp,
                retry_after: Duration::from_secs(1),
            },
            other => Self::Hash(other),
        }
    }
}

/// `Ok` when `decision` allows, else the refusal.
fn allowed(decision: Decision) -> Result<(), AccountError> {
    match decision {
        Decision::Allowed => Ok(()),
        Decision::Limited { limit, retry_after } => {
            Err(AccountError::RateLimited { limit, retry_after })
        }
    }
}

/// How long a verified credential is remembered in memory: a sign-in with
/// it within this costs no second bcrypt verification.
const RECENT_LIFE: Duration = Duration::from_secs(60);

/// What the workflows work with: the database, bcrypt, the code key, the
/// outbox's sealing key, the rate limiter and the credential proofs. Cheap
/// to clone.
#[derive(Clone)]
pub struct Accounts {
    pool: Pool,
    hasher: Hasher,
    code_hasher: CodeHasher,
    sealer: Sealer,
    limiter: Limiter,
    /// Proofs of credentials just verified (`CREDENTIAL_PROOF`); `None`:
    /// off.
    proofs: Option<Proofs>,
    /// Credentials verified moments ago, in memory.
    recent: Arc<Recent>,
    /// How addresses fold into the inboxes they reach.
    inboxes: Arc<Inboxes>,
    /// Which events are queued for the webhook (`WEBHOOK_EVENTS`, when
    /// `WEBHOOK_URL` is set).
    events: Events,
    code_ttl: Duration,
    code_length: usize,
    /// How long a registration stays pending; `None`: for ever.
    pending_ttl: Option<Duration>,
    /// What a new password must be, and the form passwords are compared in.
    policy: PasswordPolicy,
    /// Whether registration tells who has an account.
    disclosure: Disclosure,
    /// The paces answers are held to when it does not.
    paces: Arc<disclosure::Paces>,
}

impl Accounts {
    /// Builds the pool, the Redis connection and the workflows' other parts
    /// from `settings`. Connections are opened when first used (a single
    /// Redis) or now (a Redis Cluster, and PostgreSQL, which holds the key
    /// that names Redis keys).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        use anyhow::Context;
        // Before anything connects: a deny list that cannot be read stops
        // start-up at once, naming its file.
        let policy = PasswordPolicy::from_settings(&settings.passwords)?;
        let pool = db::pool(&settings.database).context("cannot set up the database pool")?;
        let sealer =
            Sealer::new(&settings.secret_key).with_fallbacks(&settings.secret_key_fallbacks);
        let names = key_names(&pool, &sealer).await?;
        let limiter = Limiter::connect(settings, names.clone()).await?;
        let proofs = settings.credential_proof.then(|| {
            Proofs::new(
                limiter.connection().clone(),
                names,
                Prover::new(&settings.secret_key),
            )
        });
        Ok(Self {
            pool,
            hasher: Hasher::new(settings.bcrypt_cost, settings.limits.hash_queue_per_ip)
                .context("invalid BCRYPT_COST")?,
            code_hasher: CodeHasher::new(settings.secret_key.clone())
                .with_fallbacks(settings.secret_key_fallbacks.clone()),
            sealer,
            limiter,
            proofs,
            recent: Arc::new(Recent::new(Prover::new(&settings.secret_key), RECENT_LIFE)),
            inboxes: Arc::new(Inboxes::new(
                settings.inboxes.aliases.clone(),
                settings.inboxes.dotless.clone(),
            )),
            events: Events {
                activated: settings.webhook.as_ref().is_some_and(|w| w.activated),
                registered: settings.webhook.as_ref().is_some_and(|w| w.registered),
            },
            code_ttl: settings.code_ttl,
            code_length: settings.code_length,
            pending_ttl: settings.pending_ttl,
            policy,
            disclosure: settings.disclosure,
            paces: Arc::default(),
        })
    }

    /// What a new password must be (`PASSWORD_*`).
    pub fn password_policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    /// Whether registration answers alike for every address
    /// (`REGISTRATION_DISCLOSURE=hidden`).
    pub fn hides_registrations(&self) -> bool {
        self.disclosure == Disclosure::Hidden
    }

    /// A password to sign in with, in the form passwords are hashed in
    /// (`PASSWORD_NORMALIZATION`): what was registered as `Ａｄａ…` signs
    /// in typed as `Ada…` under NFKC.
    pub fn signing_in(&self, password: crate::password::Password) -> crate::password::Password {
        match self.policy.normalize(password.as_str()) {
            std::borrow::Cow::Borrowed(_) => password,
            std::borrow::Cow::Owned(normalized) => crate::password::Password::new(normalized),
        }
    }

    /// The same workflows hashing passwords with `hasher`: for tests and
    /// benchmarks that need a smaller password-hash queue.
    pub fn with_hasher(self, hasher: Hasher) -> Self {
        Self { hasher, ..self }
    }

    /// Digits in a code (`CODE_LENGTH`).
    pub fn code_length(&self) -> usize {
        self.code_length
    }

    /// How long a code is valid (`ACTIVATION_CODE_TTL_SECONDS`).
    pub fn code_ttl(&self) -> Duration {
        self.code_ttl
    }

    /// The rate limiter, for support's views.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The inbox `email` reaches, as the limits count it.
    pub fn inbox_of(&self, email: &Email) -> String {
        self.inboxes.of(email)
    }

    /// The inbox a code emailed to `email` proves (`Inboxes::proving`).
    fn code_inbox_of(&self, email: &Email) -> String {
        self.inboxes.proving(email)
    }

    /// When a registration made now would have to be made before to be
    /// expired; `None` if registrations never expire.
    fn expired_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.pending_ttl
            .map(|ttl| now - crate::duration::to_delta(ttl))
    }

    /// Whether `user` is a pending registration that has expired: its
    /// address may be registered afresh, and its passwords open nothing.
    fn expired(&self, user: &User, now: DateTime<Utc>) -> bool {
        !user.is_active
            && self
                .expired_before(now)
                .is_some_and(|cutoff| user.created_at < cutoff)
    }

    /// When `user`'s pending registration expires, if it does.
    pub fn pending_until(&self, user: &User) -> Option<DateTime<Utc>> {
        let ttl = self.pending_ttl?;
        (!user.is_active).then(|| user.created_at + crate::duration::to_delta(ttl))
    }

    /// The account registered for `email`.
    pub async fn find_user(&self, email: &Email) -> Result<User, AccountError> {
        find_user(&self.pool, email).await
    }

    /// Answers whether the database runs a query, for health checks.
    pub async fn database_ready(&self) -> Result<(), AccountError> {
        let mut conn = self.pool.get().await?;
        Ok(db::ping(&mut conn).await?)
    }

    /// Answers whether Redis answers, for health checks.
    pub async fn redis_ready(&self) -> Result<(), AccountError> {
        Ok(self.limiter.connection().ping().await?)
    }
}

/// The name of a registrant of a pending address in Redis: its first
/// registration (bound to its creation, so a registration started afresh
/// is another) or one of its claims; each begins with
/// [`registrants_of`]'s prefixes.
fn registrant(user: &User) -> String {
    match user.claim {
        Some(claim) => format!("c{}.{claim}", user.id.0),
        None => format!("r{}.{}", user.id.0, user.created_at.timestamp_micros()),
    }
}

/// The prefixes of the names of every registrant of `user`'s address (its
/// registration, whenever made, and its claims).
fn registrants_of(user: &User) -> Vec<String> {
    vec![format!("r{}.", user.id.0), format!("c{}.", user.id.0)]
}

/// The key that names Redis keys (`redis::KeyNames`), made on first use
/// and kept in PostgreSQL sealed under `SECRET_KEY`: for `serve` and the
/// commands that read or clear counters.
pub async fn key_names(pool: &Pool, sealer: &Sealer) -> anyhow::Result<KeyNames> {
    use anyhow::Context;
    let mut conn = pool
        .get()
        .await
        .context("cannot reach the database (DATABASE_URL)")?;
    let key = db::service_keys::get_or_create(&mut conn, "redis key names", sealer).await?;
    Ok(KeyNames::new(&key))
}

/// Whether a transaction's `attempt` (from 1) should be run again: once,
/// if PostgreSQL aborted it for a deadlock or a serialization failure (see
/// [`db::is_retryable`]), which is no answer to give a client.
fn run_again<T>(result: &Result<T, AccountError>, attempt: u32) -> bool {
    let again =
        attempt < 2 && matches!(result, Err(AccountError::Database(err)) if db::is_retryable(err));
    if again {
        tracing::info!(
            "a transaction was aborted (deadlock or serialization failure); running it again"
        );
    }
    again
}

/// The account registered for `email`: for commands that have a pool but
/// need none of the workflows' other parts.
pub async fn find_user(pool: &Pool, email: &Email) -> Result<User, AccountError> {
    let mut conn = pool.get().await?;
    users::find_by_email(&mut conn, email)
        .await?
        .ok_or_else(|| AccountError::UnknownUser(email.clone()))
}
