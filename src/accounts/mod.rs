//! The account workflows: register, authenticate, issue a code (resend and
//! its support variant), activate, unlock. Plain async functions shared by
//! the HTTP handlers and the CLI; they know nothing of HTTP.
//!
//! Abuse resistance lives here, as each workflow's first steps
//! (docs/LIMITS.md): per-IP and per-mailbox limits before any hashing,
//! failed authentications counted before the password is checked, a pending
//! account's lifetime budget of failed activations, and pending
//! registrations that expire so nobody can squat an address.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use diesel_async::AsyncPgConnection;

use crate::address::Email;
use crate::client_ip::ClientIp;
use crate::code::{Code, CodeHasher, LONG_LENGTH};
use crate::credential::{Prover, Recent};
use crate::db::users::{NewUser, User};
use crate::db::{self, Pool, activation_codes, outbox, users};
use crate::limits::{Attempt, Decision, Limit, Limiter};
use crate::locale::Locale;
use crate::password::{HashError, Hasher, Password, PasswordHash};
use crate::seal::{Payload, Sealer};

mod claims;
mod events;
mod sign_in;
mod support;

pub use support::{Deleted, Unlocked};

use crate::settings::Settings;
use claims::Newcomer;
use events::{ACTIVATED, Events, REGISTERED, queue_event};

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
    /// A registration found the address pending inside its transaction
    /// (another came first meanwhile); it carries the newcomer's hash, to
    /// record the claim with. Never leaves the workflows.
    #[error("another registration of the address came first")]
    LostRace(Box<User>, PasswordHash),
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

/// What a sign-in is for: its refusals that need no password come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    Resend,
    Activate,
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
/// outbox's sealing key and the rate limiter. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    pool: Pool,
    hasher: Hasher,
    code_hasher: CodeHasher,
    sealer: Sealer,
    limiter: Limiter,
    /// Proofs of credentials just verified (`CREDENTIAL_PROOF`); `None`:
    /// off.
    prover: Option<Prover>,
    /// Credentials verified moments ago, in memory.
    recent: Arc<Recent>,
    /// Which events are queued for the webhook (`WEBHOOK_EVENTS`, when
    /// `WEBHOOK_URL` is set).
    events: Events,
    code_ttl: Duration,
    code_length: usize,
    /// How long a registration stays pending; `None`: for ever.
    pending_ttl: Option<Duration>,
}

impl Accounts {
    /// Builds the pool, the Redis connection and the workflows' other parts
    /// from `settings`. Connections are opened when first used (a single
    /// Redis) or now (a Redis Cluster).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        use anyhow::Context;
        Ok(Self {
            pool: db::pool(&settings.database).context("cannot set up the database pool")?,
            hasher: Hasher::new(settings.bcrypt_cost, settings.limits.hash_queue_per_ip)
                .context("invalid BCRYPT_COST")?,
            code_hasher: CodeHasher::new(settings.secret_key.clone())
                .with_fallbacks(settings.secret_key_fallbacks.clone()),
            sealer: Sealer::new(&settings.secret_key),
            limiter: Limiter::connect(settings).await?,
            prover: settings
                .credential_proof
                .then(|| Prover::new(&settings.secret_key)),
            recent: Arc::new(Recent::new(Prover::new(&settings.secret_key), RECENT_LIFE)),
            events: Events {
                activated: settings.webhook.as_ref().is_some_and(|w| w.activated),
                registered: settings.webhook.as_ref().is_some_and(|w| w.registered),
            },
            code_ttl: settings.code_ttl,
            code_length: settings.code_length,
            pending_ttl: settings.pending_ttl,
        })
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

    /// When a registration made now would have to be made before to be
    /// expired; `None` if registrations never expire.
    fn expired_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.pending_ttl
            .map(|ttl| now - crate::duration::to_delta(ttl))
    }

    /// When `user`'s pending registration expires, if it does.
    pub fn pending_until(&self, user: &User) -> Option<DateTime<Utc>> {
        let ttl = self.pending_ttl?;
        (!user.is_active).then(|| user.created_at + crate::duration::to_delta(ttl))
    }

    /// Why `user` blocks a new registration of its address, if it does: an
    /// active account, or a pending one that has not expired.
    fn refusal_for_existing(&self, user: &User, now: DateTime<Utc>) -> Option<AccountError> {
        if user.is_active {
            Some(AccountError::AlreadyActive)
        } else if self
            .expired_before(now)
            .is_some_and(|cutoff| user.created_at < cutoff)
        {
            None
        } else {
            Some(AccountError::CodeAlreadyIssued)
        }
    }

    /// Creates a pending account (or starts an expired pending one afresh)
    /// whose emails are in `locale` (negotiated by the caller) and queues
    /// its activation email, all in one transaction. One account
    /// per address also under concurrency: the unique constraint (or the
    /// compare-and-set of a fresh start) decides, the losers get the
    /// winner's state.
    pub async fn register(
        &self,
        email: &Email,
        password: &Password,
        locale: &Locale,
        client: ClientIp,
    ) -> Result<User, AccountError> {
        // Every check that can refuse comes before paying for a hash, the
        // in-process ones before any round trip.
        self.hasher.admits(client)?;
        allowed(self.limiter.check_register(client).await?)?;
        let newcomer = Newcomer {
            password,
            locale,
            client,
        };
        let existing = {
            let mut conn = self.pool.get().await?;
            users::find_by_email(&mut conn, email).await?
        };
        if let Some(user) = existing
            && let Some(refusal) = self.refusal_for_existing(&user, Utc::now())
        {
            if matches!(refusal, AccountError::CodeAlreadyIssued) {
                // Pending: a claim of the newcomer's own (`claims.rs`).
                self.claim(&user, newcomer, None).await?;
            }
            return Err(refusal);
        }
        allowed(
            self.limiter
                .reserve_mailbox_email(email, client, false)
                .await?,
        )?;
        let registered = self.create(email, password, locale.as_str(), client).await;
        if registered.is_err()
            && let Err(err) = self.limiter.release_mailbox_email(email, client).await
        {
            tracing::warn!(error = %err, "could not give back a mailbox's email count");
        }
        let (user, restarted) = match registered {
            // Another registration of the address won the race: a claim.
            Err(AccountError::LostRace(user, hash)) => {
                self.claim(&user, newcomer, Some(hash)).await?;
                return Err(AccountError::CodeAlreadyIssued);
            }
            registered => registered?,
        };
        if restarted {
            // A new owner: the old one's counters are none of theirs.
            if let Err(err) = self.limiter.unlock(email, &[], true).await {
                tracing::warn!(error = %err, "could not clear the counters of a renewed registration");
            }
        }
        if self.events.registered {
            crate::metrics::get().event(REGISTERED, "queued");
        }
        self.keep_proof(&user, password).await;
        Ok(user)
    }

    /// Hashes the password and writes the account and its first code; true
    /// when an expired pending registration was started afresh.
    async fn create(
        &self,
        email: &Email,
        password: &Password,
        locale: &str,
        client: ClientIp,
    ) -> Result<(User, bool), AccountError> {
        let hash = self.hasher.hash(password, client).await?;
        let length = self.code_length_for(email).await?;
        let mut conn = self.pool.get().await?;
        for attempt in 1.. {
            let created = conn
                .transaction(async |conn| {
                    let new = NewUser {
                        email: email.as_str(),
                        password_hash: &hash.0,
                        locale,
                    };
                    if let Some(user) = users::insert(conn, &new).await? {
                        self.issue_code(conn, &user, length).await?;
                        if self.events.registered {
                            queue_event(conn, REGISTERED, &user, None).await?;
                        }
                        return Ok((user, false));
                    }
                    let now = Utc::now();
                    let existing = users::find_by_email(conn, email)
                        .await?
                        .ok_or_else(|| AccountError::UnknownUser(email.clone()))?;
                    match self.refusal_for_existing(&existing, now) {
                        Some(AccountError::CodeAlreadyIssued) => {
                            return Err(AccountError::LostRace(Box::new(existing), hash.clone()));
                        }
                        Some(refusal) => return Err(refusal),
                        None => {}
                    }
                    let cutoff = self.expired_before(now).unwrap_or(now);
                    match users::restart_registration(conn, existing.id, &hash, locale, cutoff)
                        .await?
                    {
                        Some(user) => {
                            tracing::info!(
                                user_id = %user.id,
                                "an expired pending registration starts afresh"
                            );
                            // Its claims expired with it.
                            db::claims::end_all(conn, user.id).await?;
                            self.issue_code(conn, &user, length).await?;
                            if self.events.registered {
                                queue_event(conn, REGISTERED, &user, None).await?;
                            }
                            Ok((user, true))
                        }
                        // Renewed by a concurrent registration.
                        None => Err(AccountError::CodeAlreadyIssued),
                    }
                })
                .await;
            if !run_again(&created, attempt) {
                return created;
            }
        }
        unreachable!("run_again stops after the second attempt")
    }

    /// A user's request for a new code, from `client`: limited per email (a
    /// minute, a day) and per mailbox, then as `reissue`.
    pub async fn resend(&self, user: &User, client: ClientIp) -> Result<(), AccountError> {
        if user.is_active {
            return Err(AccountError::AlreadyActive);
        }
        // Once the inbox's short codes are no longer checked, a new (long)
        // code is the owner's way in: the mailbox's total does not refuse
        // it (its per-network share and the resend limits still do).
        let length = self.code_length_for(&user.email).await?;
        let renewal = length > self.code_length;
        allowed(
            self.limiter
                .reserve_mailbox_email(&user.email, client, renewal)
                .await?,
        )?;
        let resent = async {
            allowed(self.limiter.check_resend(&user.email, user.claim).await?)?;
            self.reissue_at(user, length).await
        };
        let resent = resent.await;
        if resent.is_err()
            && let Err(err) = self
                .limiter
                .release_mailbox_email(&user.email, client)
                .await
        {
            tracing::warn!(error = %err, "could not give back a mailbox's email count");
        }
        resent
    }

    /// Issues a new code (superseding older ones) and queues its email,
    /// regardless of resend limits: the support action.
    pub async fn reissue(&self, user: &User) -> Result<(), AccountError> {
        let length = self.code_length_for(&user.email).await?;
        self.reissue_at(user, length).await
    }

    /// [`Accounts::reissue`] with a code of `length` digits.
    async fn reissue_at(&self, user: &User, length: usize) -> Result<(), AccountError> {
        let mut conn = self.pool.get().await?;
        for attempt in 1.. {
            let reissued = conn
                .transaction(async |conn| {
                    // Lock the user: issuers of one user's codes take turns,
                    // and an activation or a fresh registration that
                    // committed meanwhile is seen.
                    let current = users::lock(conn, user.id)
                        .await?
                        .ok_or_else(|| AccountError::UnknownUser(user.email.clone()))?;
                    if current.is_active {
                        return Err(AccountError::AlreadyActive);
                    }
                    if current.created_at != user.created_at {
                        // Registered afresh since `user` signed in: not theirs now.
                        return Err(AccountError::InvalidCredentials);
                    }
                    match user.claim {
                        // A claim ended by newer ones opens nothing.
                        Some(claim) if !db::claims::exists(conn, claim).await? => {
                            Err(AccountError::InvalidCredentials)
                        }
                        Some(_) => self.issue_code(conn, user, length).await,
                        None => self.issue_code(conn, &current, length).await,
                    }
                })
                .await;
            if !run_again(&reissued, attempt) {
                if reissued.is_ok() && user.claim.is_none() {
                    // A new code: the proof made for the old one ends.
                    if let Err(err) = self.limiter.forget_proof(&user.email).await {
                        tracing::warn!(error = %err, "could not end a credential proof");
                    }
                }
                return reissued;
            }
        }
        unreachable!("run_again stops after the second attempt")
    }

    /// The length of `email`'s next code: `CODE_LENGTH`, or
    /// [`LONG_LENGTH`] once its inbox has spent its budget of wrong short
    /// codes (docs/LIMITS.md "Guessing odds per inbox").
    async fn code_length_for(&self, email: &Email) -> Result<usize, AccountError> {
        if self.code_length < LONG_LENGTH && self.limiter.inbox_guessed_out(email).await? {
            return Ok(LONG_LENGTH);
        }
        Ok(self.code_length)
    }

    /// Supersedes the live code (and the emails still queued with it),
    /// stores a new one and queues its email, the code sealed (the
    /// dispatcher writes the email when it sends it). Runs inside the
    /// caller's transaction.
    async fn issue_code(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
        length: usize,
    ) -> Result<(), AccountError> {
        let now = Utc::now();
        let expires_at = now + crate::duration::to_delta(self.code_ttl);
        let code = Code::generate(length);
        activation_codes::supersede_live(conn, user.id, user.claim, now).await?;
        outbox::supersede_queued(conn, user.id, user.claim, now).await?;
        activation_codes::insert(
            conn,
            &activation_codes::NewCode {
                user_id: user.id,
                code_hash: &self.code_hasher.hash(user.id, &code),
                expires_at,
                claim_id: user.claim,
            },
        )
        .await?;
        // The account's language, kept since registration (the dispatcher
        // falls back to the default for one it no longer has).
        let payload = Payload {
            code,
            locale: user.locale.clone().unwrap_or_default(),
        };
        outbox::insert(
            conn,
            &outbox::NewMessage {
                user_id: user.id,
                recipient: user.email.as_str(),
                payload: &payload.seal(&self.sealer, user.id),
                expires_at,
                kind: outbox::EMAIL,
                event_type: None,
                claim_id: user.claim,
            },
        )
        .await?;
        Ok(())
    }

    /// Activates `user` with `code`. An attempt is counted three times
    /// before the code is looked at: against the client (wrong codes from
    /// one IP, across accounts), in the Redis window that locks out a burst
    /// (see `crate::limits`), and against the account's lifetime budget of
    /// failures, in the database. Once the budget is spent, even the right
    /// code is refused until `user unlock` or the registration expires.
    /// Marking the code used and the user active is one transaction, and
    /// only for the registration `user` signed in to: if it was registered
    /// afresh since, by its new owner, the attempt is refused as bad
    /// credentials.
    pub async fn activate(
        &self,
        user: &User,
        code: &Code,
        client: ClientIp,
    ) -> Result<(), AccountError> {
        if user.is_active {
            // As the original: a failed attempt like any other, so that
            // after the window's limit the account is locked out (429).
            let attempt = self.reserve_attempt(user).await?;
            self.limiter
                .record_failure(&user.email, user.claim, attempt)
                .await?;
            return Err(AccountError::AlreadyActive);
        }
        allowed(self.limiter.reserve_activation_failure(client).await?)?;
        // A short code is counted against the inbox (all its addresses)
        // before it is checked; once the inbox has spent that budget, short
        // codes are not checked at all: its codes are long now.
        let short = code.as_str().len() < LONG_LENGTH;
        if short {
            let reserved = self.limiter.reserve_inbox_guess(&user.email).await;
            if !matches!(reserved, Ok(true)) {
                // Not checked: no guess of this client's either. The owner
                // of a short code asks for a new (long) one.
                if let Err(err) = self.limiter.release_activation_failure(client).await {
                    tracing::warn!(error = %err, "could not give back an activation's count");
                }
                reserved?;
                return Err(AccountError::InvalidCode);
            }
        }
        let tried = self.try_activate(user, code).await;
        if !matches!(tried, Err(AccountError::InvalidCode)) {
            if let Err(err) = self.limiter.release_activation_failure(client).await {
                tracing::warn!(error = %err, "could not give back an activation's count");
            }
            if short && let Err(err) = self.limiter.release_inbox_guess(&user.email).await {
                tracing::warn!(error = %err, "could not give back an inbox's guess");
            }
        }
        tried
    }

    async fn try_activate(&self, user: &User, code: &Code) -> Result<(), AccountError> {
        let email = &user.email;
        let attempt = self.reserve_attempt(user).await?;
        let mut conn = self.pool.get().await?;
        let max = self.limiter.policy().activation_max_failures;
        let spent = match user.claim {
            // A claim's own budget.
            Some(claim) => db::claims::spend_activation(&mut conn, claim, max).await?,
            None => users::spend_activation(&mut conn, user.id, user.created_at, max).await?,
        };
        if spent.is_none() {
            return Err(self.why_not(&mut conn, user).await?);
        }
        // `Some(true)`: activated; `Some(false)`: not the code; `None`: the
        // account changed under us (the transaction is rolled back).
        let mut activated = self
            .try_code(&mut conn, user, code)
            .await
            .map_err(AccountError::from);
        if run_again(&activated, 1) {
            activated = self
                .try_code(&mut conn, user, code)
                .await
                .map_err(AccountError::from);
        }
        let activated = activated?;
        let Some(activated) = activated else {
            return Err(self.why_not(&mut conn, user).await?);
        };
        if activated {
            if self.events.activated {
                crate::metrics::get().event(ACTIVATED, "queued");
            }
            // The account is active whatever Redis says now; stale counters
            // only matter to an account that can no longer activate.
            if let Err(err) = self.limiter.clear_attempts(email).await {
                tracing::warn!(error = %err, "could not clear activation counters");
            }
            Ok(())
        } else {
            crate::metrics::get().wrong_code(code.as_str().len());
            self.limiter
                .record_failure(email, user.claim, attempt)
                .await?;
            Err(AccountError::InvalidCode)
        }
    }

    /// In one transaction: checks `code` against `user`'s live code, marks
    /// it used and the user active. `Some(true)`: activated; `Some(false)`:
    /// not the code; `None`: the account changed under us (activated, or
    /// registered afresh), the transaction rolled back. The user's row is
    /// locked first, then its code: the order of every workflow that
    /// touches both (a resend, a fresh start), so none deadlocks another.
    async fn try_code(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
        code: &Code,
    ) -> Result<Option<bool>, diesel::result::Error> {
        let activated = conn
            .transaction(async |conn| {
                let now = Utc::now();
                let current = users::lock(conn, user.id).await?;
                if current.is_none_or(|current| {
                    current.is_active || current.created_at != user.created_at
                }) {
                    return Err(Rollback::ChangedMeanwhile);
                }
                // A code verifies only its own registration or claim.
                let Some(stored) = activation_codes::find_live(conn, user.id, user.claim).await?
                else {
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
                // A claim wins: the account takes its password and
                // language; every claim ends (their codes with them).
                if let Some(claim) = user.claim
                    && !users::take_claim(conn, user.id, claim).await?
                {
                    return Err(Rollback::ChangedMeanwhile);
                }
                db::claims::end_all(conn, user.id).await?;
                // The event is pipelined with the activation (one round trip
                // for both); if the account changed meanwhile, the rollback
                // takes it too.
                let activate = users::activate(conn, user.id, user.created_at, now);
                let activated = if self.events.activated {
                    let event = queue_event(conn, ACTIVATED, user, Some(now));
                    futures_util::future::try_join(activate, event).await?.0
                } else {
                    activate.await?
                };
                if !activated {
                    return Err(Rollback::ChangedMeanwhile);
                }
                Ok(true)
            })
            .await;
        match activated {
            Ok(activated) => Ok(Some(activated)),
            Err(Rollback::ChangedMeanwhile) => Ok(None),
            Err(Rollback::Failed(err)) => Err(err),
        }
    }

    /// Reserves an activation attempt in the window of `user`'s
    /// registration or claim, or refuses it while that is locked out.
    async fn reserve_attempt(&self, user: &User) -> Result<Attempt, AccountError> {
        self.limiter
            .reserve_attempt(&user.email, user.claim)
            .await?
            .map_err(|retry_after| AccountError::RateLimited {
                limit: Limit::ActivationAttempts,
                retry_after,
            })
    }

    /// Why `user`, as it signed in, cannot be activated any more: registered
    /// afresh by someone else (bad credentials now), already active, or its
    /// failure budget spent (429 until the registration expires and the
    /// address can be registered afresh; without expiry, a lockout's
    /// length).
    async fn why_not(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
    ) -> Result<AccountError, AccountError> {
        let current = users::find(conn, user.id)
            .await?
            .ok_or_else(|| AccountError::UnknownUser(user.email.clone()))?;
        if current.created_at != user.created_at {
            return Ok(AccountError::InvalidCredentials);
        }
        if current.is_active {
            return Ok(AccountError::AlreadyActive);
        }
        if let Some(claim) = user.claim
            && !db::claims::exists(conn, claim).await?
        {
            // Ended by newer claims, or by another's activation.
            return Ok(AccountError::InvalidCredentials);
        }
        let retry_after = self
            .pending_until(&current)
            .and_then(|until| (until - Utc::now()).to_std().ok())
            .unwrap_or(self.limiter.policy().lock);
        Ok(AccountError::RateLimited {
            limit: Limit::ActivationBudget,
            retry_after,
        })
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

/// Whether PostgreSQL aborted a transaction that may simply run again: a
/// serialization failure, or a deadlock (which one lock order everywhere
/// should prevent; this is the safety net). PostgreSQL says "deadlock
/// detected" in English unless `lc_messages` says otherwise.
fn retryable(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

/// Whether a transaction's `attempt` (from 1) should be run again: once,
/// if PostgreSQL aborted it for a deadlock or a serialization failure (see
/// [`retryable`]), which is no answer to give a client.
fn run_again<T>(result: &Result<T, AccountError>, attempt: u32) -> bool {
    let again = attempt < 2 && matches!(result, Err(AccountError::Database(err)) if retryable(err));
    if again {
        tracing::info!(
            "a transaction was aborted (deadlock or serialization failure); running it again"
        );
    }
    again
}

/// Why the activation's transaction rolled back.
enum Rollback {
    /// The account was activated or registered afresh by a concurrent
    /// request.
    ChangedMeanwhile,
    Failed(diesel::result::Error),
}

impl From<diesel::result::Error> for Rollback {
    fn from(err: diesel::result::Error) -> Self {
        Self::Failed(err)
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
