//! Rate limits in Redis, per normalized email, per client IP and per
//! mailbox (docs/LIMITS.md). The scripts are the `.lua` files beside this
//! one.
//!
//! Every check-and-record is one Lua script, so it is atomic: N concurrent
//! resends see exactly one "allowed". All keys of one email share the hash tag
//! `{email}`, so a script's keys live in one slot on Redis Cluster.
//!
//! Activation: an attempt is recorded *before* the code is checked. If the
//! user is locked, or the attempt would exceed `ACTIVATION_ATTEMPT_LIMIT`, it
//! is refused without looking at the code, so a burst of parallel guesses
//! cannot test more codes than the limit allows. A failed attempt that reaches
//! the limit starts the lockout; a successful one clears the counters.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use redis::{RedisResult, Script};

use crate::address::{Email, Inboxes};
use crate::client_ip::ClientIp;
use crate::redis::RedisConnection;
use crate::settings::{LimitSettings, Settings};

mod shared;

use shared::{PastTotal, SharedKeys};

/// A limit that can refuse a request: what its 429 says, and its label in
/// `activator_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Failed activations within `ACTIVATION_ATTEMPT_WINDOW_SECONDS`, then
    /// the lockout.
    ActivationAttempts,
    /// A pending account's lifetime budget of failed activations.
    ActivationBudget,
    /// Failed activations (wrong codes, any account) from one client IP.
    ActivationFailuresPerIp,
    ResendPerMinute,
    ResendDaily,
    /// Failed Basic authentications of one email from one client network.
    AuthFailures,
    /// Failed Basic authentications of one email from all networks: past
    /// it, only networks that have not failed for it are heard.
    AuthFailuresCeiling,
    /// Failed Basic authentications from one client IP.
    AuthFailuresPerIp,
    /// Successful Basic authentications of one email.
    SignIns,
    /// Successful Basic authentications from one client IP.
    SignInsPerIp,
    RegisterPerIp,
    /// Places one client IP holds in the password-hash queue.
    HashQueuePerIp,
    /// Activation emails a day to one mailbox asked for from one client
    /// network.
    MailboxDaily,
    /// Activation emails a day to one mailbox from all networks.
    MailboxDailyTotal,
}

impl Limit {
    pub const ALL: [Limit; 14] = [
        Limit::ActivationAttempts,
        Limit::ActivationBudget,
        Limit::ActivationFailuresPerIp,
        Limit::ResendPerMinute,
        Limit::ResendDaily,
        Limit::AuthFailures,
        Limit::AuthFailuresCeiling,
        Limit::AuthFailuresPerIp,
        Limit::SignIns,
        Limit::SignInsPerIp,
        Limit::RegisterPerIp,
        Limit::HashQueuePerIp,
        Limit::MailboxDaily,
        Limit::MailboxDailyTotal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ActivationAttempts => "activation_attempts",
            Self::ActivationBudget => "activation_budget",
            Self::ActivationFailuresPerIp => "activation_failures_per_ip",
            Self::ResendPerMinute => "resend_per_minute",
            Self::ResendDaily => "resend_daily",
            Self::AuthFailures => "auth_failures",
            Self::AuthFailuresCeiling => "auth_failures_ceiling",
            Self::AuthFailuresPerIp => "auth_failures_per_ip",
            Self::SignIns => "sign_ins",
            Self::SignInsPerIp => "sign_ins_per_ip",
            Self::RegisterPerIp => "register_per_ip",
            Self::HashQueuePerIp => "hash_queue_per_ip",
            Self::MailboxDaily => "mailbox_daily",
            Self::MailboxDailyTotal => "mailbox_daily_total",
        }
    }
}

/// The outcome of a rate-limited step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Limited { limit: Limit, retry_after: Duration },
}

/// An activation attempt that was allowed, and its number in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
}

/// What `unlock` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cleared {
    pub lock: bool,
    pub failures: bool,
    pub resend_limits: bool,
}

/// An email's lockout state, for support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockState {
    /// Time left on the lockout, if locked.
    pub locked_for: Option<Duration>,
    /// Failed activations counted in the current window.
    pub attempts: u32,
    /// Failed Basic authentications counted in the current window.
    pub auth_failures: u32,
}

/// Reserves an activation attempt, or refuses it while locked (`reserve_attempt.lua`).
const RESERVE_ATTEMPT: &str = include_str!("reserve_attempt.lua");

/// Starts the lockout (`lock.lua`).
const LOCK: &str = include_str!("lock.lua");

/// Counts one in each of several fixed windows, or none when one is full (`count.lua`).
const COUNT: &str = include_str!("count.lua");

/// Gives back one count of a reservation not used (`give_back.lua`).
const GIVE_BACK: &str = include_str!("give_back.lua");

/// Counts one in a budget shared among client networks (`count_shared.lua`).
const COUNT_SHARED: &str = include_str!("count_shared.lua");

/// Gives back one count of a shared budget (`give_back_shared.lua`).
const GIVE_BACK_SHARED: &str = include_str!("give_back_shared.lua");

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);
const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// The rate limiter. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    conn: RedisConnection,
    policy: LimitSettings,
    /// How addresses fold into the mailboxes the email limit counts.
    inboxes: Arc<Inboxes>,
    reserve_attempt: Arc<Script>,
    lock: Arc<Script>,
    count: Arc<Script>,
    give_back: Arc<Script>,
    count_shared: Arc<Script>,
    give_back_shared: Arc<Script>,
}

/// A Redis key with the hash tag `{tag}`: one email's (or IP's, or
/// mailbox's) keys share a slot, so a script's keys do on Redis Cluster.
/// Redis Cluster's tag ends at the first `}`, which an address's local part
/// may hold: `%` and `}` are written `%25` and `%7D` in it (one tag per
/// address still, and other addresses' keys unchanged).
fn key(tag: &str, name: &str) -> String {
    let tag = if tag.contains(['%', '}']) {
        std::borrow::Cow::Owned(tag.replace('%', "%25").replace('}', "%7D"))
    } else {
        std::borrow::Cow::Borrowed(tag)
    };
    format!("activator:{{{tag}}}:{name}")
}

/// The Redis keys of one email.
struct EmailKeys {
    attempts: String,
    lock: String,
    resend_minute: String,
    resend_day: String,
    auth_failures: String,
    /// Failed authentications by client network (a hash).
    auth_failures_by_network: String,
    /// Successful sign-ins.
    sign_ins: String,
    proof: String,
}

impl EmailKeys {
    /// The failed authentications, shared among client networks.
    fn auth_failures_shared(&self) -> SharedKeys {
        SharedKeys {
            total: self.auth_failures.clone(),
            by_network: self.auth_failures_by_network.clone(),
        }
    }

    fn of(email: &Email) -> Self {
        Self::of_claim(email, None)
    }

    /// The keys of `email`'s registration (`None`) or of one of its claims:
    /// each has its own activation window, lockout and resend limits (one
    /// claimant cannot spend another's); failed sign-ins and the proof are
    /// the address's.
    fn of_claim(email: &Email, claim: Option<i64>) -> Self {
        let tag = email.as_str();
        let of = |name: &str| match claim {
            Some(claim) => key(tag, &format!("{name}:claim:{claim}")),
            None => key(tag, name),
        };
        Self {
            attempts: of("activation:attempts"),
            lock: of("activation:lock"),
            resend_minute: of("resend:minute"),
            resend_day: of("resend:day"),
            auth_failures: key(tag, "auth:failures"),
            auth_failures_by_network: key(tag, "auth:failures:by-network"),
            sign_ins: key(tag, "sign-ins"),
            proof: key(tag, "credential:proof"),
        }
    }
}

fn ip_key(ip: IpAddr, name: &str) -> String {
    key(&format!("ip:{ip}"), name)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Redis' PTTL in milliseconds as a duration; a key without expiry (which
/// these scripts never create) is treated as one more window of a second.
fn pttl(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(1_000).max(1))
}

impl Limiter {
    pub fn new(conn: RedisConnection, policy: LimitSettings) -> Self {
        Self {
            conn,
            policy,
            inboxes: Arc::default(),
            reserve_attempt: Script::new(RESERVE_ATTEMPT).into(),
            lock: Script::new(LOCK).into(),
            count: Script::new(COUNT).into(),
            give_back: Script::new(GIVE_BACK).into(),
            count_shared: Script::new(COUNT_SHARED).into(),
            give_back_shared: Script::new(GIVE_BACK_SHARED).into(),
        }
    }

    /// Connects to the Redis of `settings`, with its limits.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        use anyhow::Context;
        let redis = RedisConnection::connect(&settings.redis_url)
            .await
            .context("cannot connect to Redis (REDIS_URL)")?;
        let inboxes = Inboxes::new(
            settings.inboxes.aliases.clone(),
            settings.inboxes.dotless.clone(),
        );
        Ok(Self::new(redis, settings.limits).with_inboxes(inboxes))
    }

    /// The same limiter, folding addresses into mailboxes by `inboxes`.
    pub fn with_inboxes(self, inboxes: Inboxes) -> Self {
        Self {
            inboxes: Arc::new(inboxes),
            ..self
        }
    }

    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    pub fn policy(&self) -> &LimitSettings {
        &self.policy
    }

    /// Counts one in each of `counters` (key, limit, window) unless one is
    /// full; a full one is reported as `limits[i]`.
    async fn count(
        &self,
        counters: &[(String, u32, Duration)],
        limits: &[Limit],
    ) -> RedisResult<Decision> {
        let mut invocation = self.count.prepare_invoke();
        for (key, limit, window) in counters {
            invocation.key(key).arg(*limit).arg(millis(*window));
        }
        let (full, wait): (usize, i64) = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(match full.checked_sub(1).and_then(|i| limits.get(i)) {
            None => Decision::Allowed,
            Some(&limit) => Decision::Limited {
                limit,
                retry_after: pttl(wait),
            },
        })
    }

    async fn give_back(&self, key: &str) -> RedisResult<()> {
        self.give_back
            .key(key)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// Records an activation attempt before its code is checked; `Err` holds
    /// the refusal when the user is locked out.
    pub async fn reserve_attempt(
        &self,
        email: &Email,
        claim: Option<i64>,
    ) -> RedisResult<Result<Attempt, Duration>> {
        let keys = EmailKeys::of_claim(email, claim);
        let (locked, value): (i64, i64) = self
            .reserve_attempt
            .key(&keys.attempts)
            .key(&keys.lock)
            .arg(self.policy.attempt_limit)
            .arg(millis(self.policy.attempt_window))
            .arg(millis(self.policy.lock))
            .invoke_async(&mut self.conn.clone())
            .await?;
        if locked == 1 {
            Ok(Err(pttl(value)))
        } else {
            Ok(Ok(Attempt {
                number: u32::try_from(value).unwrap_or(u32::MAX),
            }))
        }
    }

    /// Called after attempt `attempt` failed: when it was the last one the
    /// limit allows, the lockout starts now, so the next attempt is refused.
    pub async fn record_failure(
        &self,
        email: &Email,
        claim: Option<i64>,
        attempt: Attempt,
    ) -> RedisResult<()> {
        if attempt.number < self.policy.attempt_limit {
            return Ok(());
        }
        let keys = EmailKeys::of_claim(email, claim);
        self.lock
            .key(&keys.attempts)
            .key(&keys.lock)
            .arg(millis(self.policy.lock))
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// What refuses `email`'s first registration whatever the password: its
    /// lockout (`activation`), or its resend limits (otherwise); `None` if
    /// nothing does. Looks, counts nothing.
    pub async fn refusal(
        &self,
        email: &Email,
        activation: bool,
    ) -> RedisResult<Option<(Limit, Duration)>> {
        let keys = EmailKeys::of(email);
        let limited = |limit, ms: i64| (limit, pttl(ms));
        if activation {
            let locked: i64 = redis::cmd("PTTL")
                .arg(&keys.lock)
                .query_async(&mut self.conn.clone())
                .await?;
            return Ok((locked > 0).then(|| limited(Limit::ActivationAttempts, locked)));
        }
        let (minute, minute_ms, day, day_ms): (Option<u32>, i64, Option<u32>, i64) = redis::pipe()
            .get(&keys.resend_minute)
            .pttl(&keys.resend_minute)
            .get(&keys.resend_day)
            .pttl(&keys.resend_day)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(if minute.unwrap_or(0) >= self.policy.resend_per_minute {
            Some(limited(Limit::ResendPerMinute, minute_ms))
        } else if day.unwrap_or(0) >= self.policy.resend_daily {
            Some(limited(Limit::ResendDaily, day_ms))
        } else {
            None
        })
    }

    /// Clears the activation counters after a successful activation.
    pub async fn clear_attempts(&self, email: &Email) -> RedisResult<()> {
        self.unlock(email, &[], false).await.map(drop)
    }

    /// Counts a resend, unless that would exceed the per-minute or daily limit.
    pub async fn check_resend(&self, email: &Email, claim: Option<i64>) -> RedisResult<Decision> {
        let keys = EmailKeys::of_claim(email, claim);
        self.count(
            &[
                (keys.resend_minute, self.policy.resend_per_minute, MINUTE),
                (keys.resend_day, self.policy.resend_daily, DAY),
            ],
            &[Limit::ResendPerMinute, Limit::ResendDaily],
        )
        .await
    }

    /// Counts a registration from `ip`, unless its window is full.
    pub async fn check_register(&self, ip: ClientIp) -> RedisResult<Decision> {
        let policy = &self.policy;
        self.count_ip(
            ip,
            "register",
            (policy.register_per_ip, policy.register_window),
            Limit::RegisterPerIp,
        )
        .await
    }

    /// Counts one event of `what` for `ip` within `(limit, window)`, unless
    /// the window is full; a request without a counted IP (exempt) passes.
    async fn count_ip(
        &self,
        ip: ClientIp,
        what: &str,
        (limit, window): (u32, Duration),
        reached: Limit,
    ) -> RedisResult<Decision> {
        match ip.0 {
            Some(ip) => {
                self.count(&[(ip_key(ip, what), limit, window)], &[reached])
                    .await
            }
            None => Ok(Decision::Allowed),
        }
    }

    /// Counts an activation as failed for `ip` before its code is checked,
    /// unless the client has no failures left; a successful one is given
    /// back with [`Limiter::release_activation_failure`]. Each account has
    /// its own budget; this bounds what one client tries across accounts it
    /// registered for addresses it cannot read.
    pub async fn reserve_activation_failure(&self, ip: ClientIp) -> RedisResult<Decision> {
        let policy = &self.policy;
        self.count_ip(
            ip,
            "activation:failures",
            (
                policy.activation_failures_per_ip,
                policy.activation_failure_window,
            ),
            Limit::ActivationFailuresPerIp,
        )
        .await
    }

    /// Gives back what [`Limiter::reserve_activation_failure`] counted.
    pub async fn release_activation_failure(&self, ip: ClientIp) -> RedisResult<()> {
        match ip.0 {
            Some(ip) => self.give_back(&ip_key(ip, "activation:failures")).await,
            None => Ok(()),
        }
    }

    /// Counts a Basic authentication as failed before the password is
    /// checked (so parallel guesses cannot exceed the limits), unless the
    /// email or the client IP has no failures left. A successful one is
    /// given back with [`Limiter::release_auth_failure`].
    pub async fn reserve_auth_failure(&self, email: &Email, ip: ClientIp) -> RedisResult<Decision> {
        let policy = &self.policy;
        // Two scripts: the email's and the IP's keys live in other slots.
        // Each also checks (without counting) its successful sign-ins.
        if let Some(ip) = ip.0 {
            let decision = self
                .count(
                    &[
                        (
                            ip_key(ip, "auth:failures"),
                            policy.auth_failures_per_ip,
                            policy.auth_failure_window,
                        ),
                        (
                            ip_key(ip, "sign-ins"),
                            policy.sign_ins_per_ip,
                            Duration::ZERO,
                        ),
                    ],
                    &[Limit::AuthFailuresPerIp, Limit::SignInsPerIp],
                )
                .await?;
            if decision != Decision::Allowed {
                return Ok(decision);
            }
        }
        let keys = EmailKeys::of(email);
        let decision = self
            .count_shared(
                &keys.auth_failures_shared(),
                ip,
                (policy.auth_failures_per_email, policy.auth_failure_ceiling),
                policy.auth_failure_window,
                PastTotal::FirstTryPasses,
                [Limit::AuthFailures, Limit::AuthFailuresCeiling],
                Some((&keys.sign_ins, policy.sign_ins_per_email, Limit::SignIns)),
            )
            .await?;
        if decision != Decision::Allowed
            && let Some(ip) = ip.0
        {
            self.give_back(&ip_key(ip, "auth:failures")).await?;
        }
        Ok(decision)
    }

    /// Counts a successful sign-in from `ip`, and to `email` when its
    /// account is `active` (checked, before any password work, by
    /// [`Limiter::reserve_auth_failure`]). A pending address's sign-ins are
    /// not counted for it: its registration and its claims have passwords
    /// of their own, and one claimant must not spend another's.
    pub async fn record_sign_in(
        &self,
        email: &Email,
        active: bool,
        ip: ClientIp,
    ) -> RedisResult<()> {
        let window = self.policy.auth_failure_window;
        let mut counters = Vec::new();
        if active {
            counters.push((EmailKeys::of(email).sign_ins, u32::MAX, window));
        }
        if let Some(ip) = ip.0 {
            counters.push((ip_key(ip, "sign-ins"), u32::MAX, window));
        }
        // Two slots: one script each.
        for counter in counters {
            self.count(&[counter], &[Limit::SignIns]).await?;
        }
        Ok(())
    }

    /// Gives back what [`Limiter::reserve_auth_failure`] counted, for an
    /// authentication that did not fail.
    pub async fn release_auth_failure(&self, email: &Email, ip: ClientIp) -> RedisResult<()> {
        self.give_back_shared(&EmailKeys::of(email).auth_failures_shared(), ip)
            .await?;
        if let Some(ip) = ip.0 {
            self.give_back(&ip_key(ip, "auth:failures")).await?;
        }
        Ok(())
    }

    /// Removes the lockout and the failure counters (activations and
    /// authentications), and with `resend_limits` the resend counters too,
    /// of `email`'s registration and of its `claims`. Reports which of the
    /// registration's keys existed.
    pub async fn unlock(
        &self,
        email: &Email,
        claims: &[i64],
        resend_limits: bool,
    ) -> RedisResult<Cleared> {
        let keys = EmailKeys::of(email);
        let mut pipe = redis::pipe();
        for &claim in claims {
            let keys = EmailKeys::of_claim(email, Some(claim));
            pipe.del(&keys.lock).ignore().del(&keys.attempts).ignore();
            if resend_limits {
                pipe.del(&keys.resend_minute)
                    .ignore()
                    .del(&keys.resend_day)
                    .ignore();
            }
        }
        pipe.del(&keys.lock)
            .del(&keys.attempts)
            .del(&keys.auth_failures);
        pipe.del(&keys.auth_failures_by_network)
            .ignore()
            .del(&keys.sign_ins)
            .ignore();
        if resend_limits {
            pipe.del(&keys.resend_minute).del(&keys.resend_day);
        }
        // Whatever unlocks an account also ends its credential proof.
        pipe.del(&keys.proof).ignore();
        let deleted: Vec<i64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(Cleared {
            lock: deleted.first() == Some(&1),
            failures: deleted.iter().skip(1).take(2).any(|&n| n == 1),
            resend_limits: deleted.iter().skip(3).any(|&n| n == 1),
        })
    }

    /// Keeps `proof` (`credential::Prover`) of `email`'s credentials for
    /// `ttl`, replacing any other.
    pub async fn store_proof(&self, email: &Email, proof: &[u8], ttl: Duration) -> RedisResult<()> {
        redis::cmd("SET")
            .arg(EmailKeys::of(email).proof)
            .arg(proof)
            .arg("PX")
            .arg(millis(ttl).max(1))
            .query_async(&mut self.conn.clone())
            .await
    }

    /// The proof kept for `email`'s credentials, if any.
    pub async fn proof(&self, email: &Email) -> RedisResult<Option<Vec<u8>>> {
        redis::cmd("GET")
            .arg(EmailKeys::of(email).proof)
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Forgets everything counted for `email` (its account is erased): the
    /// lockout, the counters, the resend limits, the proof. The mailbox's
    /// and the clients' counts are shared with others and stay.
    pub async fn forget(&self, email: &Email, claims: &[i64]) -> RedisResult<()> {
        // What a full unlock clears is every key of the email's.
        self.unlock(email, claims, true).await.map(drop)
    }

    /// Ends `email`'s proof (a new code, a new owner).
    pub async fn forget_proof(&self, email: &Email) -> RedisResult<()> {
        redis::cmd("DEL")
            .arg(EmailKeys::of(email).proof)
            .query_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// The lockout state, for support.
    pub async fn lock_state(&self, email: &Email) -> RedisResult<LockState> {
        let keys = EmailKeys::of(email);
        let (lock_ms, attempts, auth_failures): (i64, Option<u32>, Option<u32>) = redis::pipe()
            .pttl(&keys.lock)
            .get(&keys.attempts)
            .get(&keys.auth_failures)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(LockState {
            locked_for: (lock_ms > 0).then(|| pttl(lock_ms)),
            attempts: attempts.unwrap_or(0),
            auth_failures: auth_failures.unwrap_or(0),
        })
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_millis()
        .div_ceil(1000)
        .max(1)
        .try_into()
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
