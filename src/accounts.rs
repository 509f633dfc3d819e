//! The account workflows: register, authenticate, issue a code (resend and
//! its support variant), activate, unlock. Plain async functions shared by
//! the HTTP handlers and the CLI; they know nothing of HTTP.

use std::time::Duration;

use chrono::Utc;
use diesel_async::AsyncConnection;
use diesel_async::AsyncPgConnection;

use crate::address::Email;
use crate::code::{Code, CodeHasher};
use crate::db::users::{NewUser, User};
use crate::db::{self, Pool, activation_codes, outbox, users};
use crate::limits::{Attempt, Cleared, Decision, Limiter};
use crate::mail::templates::DEFAULT_LOCALE;
use crate::password::{HashError, Hasher, Password};
use crate::seal::Sealer;
use crate::settings::Settings;

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
    #[error("rate limited for {0:?}")]
    RateLimited(Duration),
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

impl From<HashError> for AccountError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => Self::Busy,
            other => Self::Hash(other),
        }
    }
}

/// What the workflows work with: the database, bcrypt, the code key, the
/// outbox's sealing key and the rate limiter. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    pub pool: Pool,
    pub hasher: Hasher,
    pub code_hasher: CodeHasher,
    pub sealer: Sealer,
    pub limiter: Limiter,
    pub code_ttl: Duration,
}

fn refusal_for_existing(user: &User) -> AccountError {
    if user.is_active {
        AccountError::AlreadyActive
    } else {
        AccountError::CodeAlreadyIssued
    }
}

impl Accounts {
    /// Builds the pool, the Redis connection and the workflows' other parts
    /// from `settings`. Connections are opened when first used (a single
    /// Redis) or now (a Redis Cluster).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        use anyhow::Context;
        Ok(Self {
            pool: db::pool(&settings.database).context("cannot set up the database pool")?,
            hasher: Hasher::new(settings.bcrypt_cost).context("invalid BCRYPT_COST")?,
            code_hasher: CodeHasher::new(settings.secret_key.clone()),
            sealer: Sealer::new(&settings.secret_key),
            limiter: Limiter::connect(settings).await?,
            code_ttl: settings.code_ttl,
        })
    }

    /// Creates a pending account and queues its activation email, all in one
    /// transaction. One account per address also under concurrency: the
    /// unique constraint decides, the losers get the winner's state.
    pub async fn register(&self, email: &Email, password: &Password) -> Result<User, AccountError> {
        // Refuse known addresses before paying for a hash.
        {
            let mut conn = self.pool.get().await?;
            if let Some(user) = users::find_by_email(&mut conn, email).await? {
                return Err(refusal_for_existing(&user));
            }
        }
        let hash = self.hasher.hash(password).await?;
        let mut conn = self.pool.get().await?;
        conn.transaction(async |conn| {
            let new = NewUser {
                email: email.as_str(),
                password_hash: &hash.0,
            };
            let Some(user) = users::insert(conn, &new).await? else {
                let user = users::find_by_email(conn, email)
                    .await?
                    .ok_or_else(|| AccountError::UnknownUser(email.clone()))?;
                return Err(refusal_for_existing(&user));
            };
            self.issue_code(conn, &user).await?;
            Ok(user)
        })
        .await
    }

    /// Checks HTTP Basic credentials. An unknown email costs a bcrypt
    /// verification too, so it cannot be told apart by timing.
    pub async fn authenticate(
        &self,
        email: &Email,
        password: &Password,
    ) -> Result<User, AccountError> {
        let user = {
            let mut conn = self.pool.get().await?;
            users::find_by_email(&mut conn, email).await?
        };
        let matches = self
            .hasher
            .verify(password, user.as_ref().map(|user| &user.password_hash))
            .await?;
        match user {
            Some(user) if matches => {
                if user.password_hash.cost() != Some(self.hasher.cost()) {
                    self.rehash(&user, password).await;
                }
                Ok(user)
            }
            _ => Err(AccountError::InvalidCredentials),
        }
    }

    /// Rehashes a password that was hashed at another cost than
    /// `BCRYPT_COST` (the setting changed since), now that it is known to be
    /// right: a wrong password then costs the same time on every account
    /// again. Best effort: a failure leaves the old hash, logged.
    async fn rehash(&self, user: &User, password: &Password) {
        let replaced = async {
            let new = self.hasher.hash(password).await?;
            let mut conn = self.pool.get().await?;
            Ok::<_, AccountError>(
                users::replace_password_hash(&mut conn, user.id, &user.password_hash, &new).await?,
            )
        };
        match replaced.await {
            Ok(true) => tracing::info!(
                user_id = %user.id,
                from = user.password_hash.cost(),
                to = self.hasher.cost(),
                "password rehashed at the configured cost"
            ),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(user_id = %user.id, error = %err, "could not rehash a password")
            }
        }
    }

    /// A user's request for a new code: rate limited, then as `reissue`.
    pub async fn resend(&self, user: &User) -> Result<(), AccountError> {
        if user.is_active {
            return Err(AccountError::AlreadyActive);
        }
        match self.limiter.check_resend(&user.email).await? {
            Decision::Allowed => self.reissue(user).await,
            Decision::Limited { retry_after } => Err(AccountError::RateLimited(retry_after)),
        }
    }

    /// Issues a new code (superseding older ones) and queues its email,
    /// regardless of resend limits: the support action.
    pub async fn reissue(&self, user: &User) -> Result<(), AccountError> {
        let mut conn = self.pool.get().await?;
        conn.transaction(async |conn| {
            // Lock the user: issuers of one user's codes take turns, and an
            // activation that committed meanwhile is seen.
            let user = users::lock(conn, user.id)
                .await?
                .ok_or_else(|| AccountError::UnknownUser(user.email.clone()))?;
            if user.is_active {
                return Err(AccountError::AlreadyActive);
            }
            self.issue_code(conn, &user).await
        })
        .await
    }

    /// Supersedes the live code, stores a new one and queues its email, the
    /// code sealed (the dispatcher writes the email when it sends it). Runs
    /// inside the caller's transaction.
    async fn issue_code(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
    ) -> Result<(), AccountError> {
        let now = Utc::now();
        let expires_at = now + crate::duration::to_delta(self.code_ttl);
        let code = Code::generate();
        activation_codes::supersede_live(conn, user.id, now).await?;
        activation_codes::insert(
            conn,
            &activation_codes::NewCode {
                user_id: user.id,
                code_hash: &self.code_hasher.hash(user.id, &code),
                expires_at,
            },
        )
        .await?;
        let payload = outbox::Payload {
            code,
            locale: DEFAULT_LOCALE.to_owned(),
        };
        outbox::insert(
            conn,
            &outbox::NewMessage {
                user_id: user.id,
                recipient: user.email.as_str(),
                payload: &payload.seal(&self.sealer, user.id),
                expires_at,
            },
        )
        .await?;
        Ok(())
    }

    /// Activates `user` with `code`. The attempt is counted before the code
    /// is looked at (see `crate::limits`); marking the code used and the user
    /// active is one transaction.
    pub async fn activate(&self, user: &User, code: &Code) -> Result<(), AccountError> {
        if user.is_active {
            return Err(AccountError::AlreadyActive);
        }
        let email = &user.email;
        let attempt: Attempt = match self.limiter.reserve_attempt(email).await? {
            Ok(attempt) => attempt,
            Err(wait) => return Err(AccountError::RateLimited(wait)),
        };
        let mut conn = self.pool.get().await?;
        let activated = conn
            .transaction(async |conn| {
                let now = Utc::now();
                let Some(stored) = activation_codes::find_live(conn, user.id).await? else {
                    return Ok(false);
                };
                if stored.expires_at <= now
                    || !self.code_hasher.verify(user.id, code, &stored.code_hash)
                {
                    return Ok(false);
                }
                if !activation_codes::mark_used(conn, stored.id, now).await? {
                    return Ok(false);
                }
                if !users::activate(conn, user.id, now).await? {
                    // Activated by a concurrent request: roll back the code.
                    return Err(AccountError::AlreadyActive);
                }
                Ok::<_, AccountError>(true)
            })
            .await?;
        if activated {
            // The account is active whatever Redis says now; stale counters
            // only matter to an account that can no longer activate.
            if let Err(err) = self.limiter.clear_attempts(email).await {
                tracing::warn!(error = %err, "could not clear activation counters");
            }
            Ok(())
        } else {
            self.limiter.record_failure(email, attempt).await?;
            Err(AccountError::InvalidCode)
        }
    }

    /// Clears the activation lockout (and with `resend_limits` the resend
    /// counters) of an existing account.
    pub async fn unlock(
        &self,
        email: &Email,
        resend_limits: bool,
    ) -> Result<Cleared, AccountError> {
        self.find_user(email).await?;
        Ok(self.limiter.unlock(email, resend_limits).await?)
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
}

/// The account registered for `email`: for commands that have a pool but
/// need none of the workflows' other parts.
pub async fn find_user(pool: &Pool, email: &Email) -> Result<User, AccountError> {
    let mut conn = pool.get().await?;
    users::find_by_email(&mut conn, email)
        .await?
        .ok_or_else(|| AccountError::UnknownUser(email.clone()))
}
