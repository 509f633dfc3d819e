//! Rate limits in Redis, per address (and per registration or claim of a
//! pending one), per client network and per inbox (docs/LIMITS.md). The
//! scripts are the `.lua` files beside this one.
//!
//! Every check-and-record is one Lua script, so it is atomic: N concurrent
//! resends see exactly one "allowed". Keys are named by `redis::KeyNames`:
//! a keyed hash of their subject, never an address or an IP, and one hash
//! tag per subject, so a script's keys live in one slot on Redis Cluster.
//!
//! Activation: an attempt is recorded *before* the code is checked. If the
//! user is locked, or the attempt would exceed `ACTIVATION_ATTEMPT_LIMIT`, it
//! is refused without looking at the code, so a burst of parallel guesses
//! cannot test more codes than the limit allows. A failed attempt that reaches
//! the limit starts the lockout; a successful one clears the counters.
//!
//! Each check is a span of its traces (`limit <name>`), saying whether it
//! allowed or which limit refused, and nothing of whom it counted.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use redis::{RedisResult, Script};

use crate::address::Email;
use crate::client_ip::ClientIp;
use crate::redis::{KeyNames, RedisConnection};
use crate::settings::{LimitSettings, Settings};

mod inbox;
mod remembered;
mod shared;

pub use inbox::{EmailSlot, GuessPaid, cost_of};
use shared::SharedKeys;

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

/// An address's lockout state and counts, for support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockState {
    /// Time left on the lockout, if locked.
    pub locked_for: Option<Duration>,
    /// Activation attempts counted in the current window.
    pub attempts: u32,
    /// Failed Basic authentications counted in the current window.
    pub auth_failures: u32,
    /// Resends in the current day's window.
    pub resends_today: u32,
}

/// Reserves an activation attempt, or refuses it while locked (`reserve_attempt.lua`).
const RESERVE_ATTEMPT: &str = include_str!("reserve_attempt.lua");

/// Starts the lockout (`lock.lua`).
const LOCK: &str = include_str!("lock.lua");

/// Counts one in each of several fixed windows, or none when one is full (`count.lua`).
const COUNT: &str = include_str!("count.lua");

/// Gives back one count of a reservation not used (`give_back.lua`).
const GIVE_BACK: &str = include_str!("give_back.lua");

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);
const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// The rate limiter. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    conn: RedisConnection,
    policy: LimitSettings,
    names: Arc<KeyNames>,
    reserve_attempt: Arc<Script>,
    lock: Arc<Script>,
    count: Arc<Script>,
    give_back: Arc<Script>,
    shared: Arc<shared::Scripts>,
    inbox: Arc<inbox::Scripts>,
    /// Full windows that only ever fill, until they end.
    remembered: Arc<remembered::Remembered>,
}

/// The Redis keys of one address, and of its first registration (`None`)
/// or one of its claims: each registration and claim has its own
/// activation window, lockout and resend limits (one claimant cannot spend
/// another's); failed and successful sign-ins are the address's.
struct AddressKeys {
    attempts: String,
    lock: String,
    resend_minute: String,
    resend_day: String,
    auth_failures: SharedKeys,
    /// Successful sign-ins (of an active account).
    sign_ins: String,
}

impl AddressKeys {
    fn of(names: &KeyNames, email: &Email, claim: Option<i64>) -> Self {
        let address = email.as_str();
        let of = |name: &str| match claim {
            Some(claim) => names.address(address, &format!("{name}:claim:{claim}")),
            None => names.address(address, name),
        };
        Self {
            attempts: of("activation:attempts"),
            lock: of("activation:lock"),
            resend_minute: of("resend:minute"),
            resend_day: of("resend:day"),
            auth_failures: SharedKeys {
                total: names.address(address, "auth:failures"),
                by_network: names.address(address, "auth:failures:by-network"),
            },
            sign_ins: names.address(address, "sign-ins"),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Redis' PTTL in milliseconds as a duration; a key without expiry (which
/// these scripts never create) is treated as one more window of a second.
fn pttl(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(1_000).max(1))
}

/// What a check decided, as its span records it: the limit that refused,
/// if one did.
trait Verdict {
    fn refused_by(&self) -> Option<&'static str>;
}

impl Verdict for Decision {
    fn refused_by(&self) -> Option<&'static str> {
        match self {
            Decision::Allowed => None,
            Decision::Limited { limit, .. } => Some(limit.as_str()),
        }
    }
}

impl<T> Verdict for Result<T, Decision> {
    fn refused_by(&self) -> Option<&'static str> {
        self.as_ref().err().and_then(Verdict::refused_by)
    }
}

/// Runs the check `name` in a span of its own (`limit <name>`, the Redis
/// round trips inside it), recording whether it allowed or which limit
/// refused (`traces::spans::limit`).
async fn checked<T: Verdict>(
    name: &'static str,
    check: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    use tracing::Instrument;
    let span = crate::traces::spans::limit(name);
    let decided = check.instrument(span.clone()).await;
    match &decided {
        Ok(verdict) => crate::traces::spans::limit_decided(&span, verdict.refused_by()),
        Err(_) => crate::traces::spans::limit_failed(&span),
    }
    decided
}

impl Limiter {
    pub fn new(conn: RedisConnection, policy: LimitSettings, names: KeyNames) -> Self {
        Self {
            conn,
            policy,
            names: Arc::new(names),
            reserve_attempt: Script::new(RESERVE_ATTEMPT).into(),
            lock: Script::new(LOCK).into(),
            count: Script::new(COUNT).into(),
            give_back: Script::new(GIVE_BACK).into(),
            shared: Arc::default(),
            inbox: Arc::default(),
            remembered: Arc::default(),
        }
    }

    /// Connects to the Redis of `settings`, with its limits, naming keys
    /// with `names`.
    pub async fn connect(settings: &Settings, names: KeyNames) -> anyhow::Result<Self> {
        use anyhow::Context;
        let redis = RedisConnection::connect(&settings.redis_url)
            .await
            .context("cannot connect to Redis (REDIS_URL)")?;
        Ok(Self::new(redis, settings.limits, names))
    }

    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    pub fn policy(&self) -> &LimitSettings {
        &self.policy
    }

    /// How this limiter names its keys.
    pub fn names(&self) -> &KeyNames {
        &self.names
    }

    fn keys(&self, email: &Email, claim: Option<i64>) -> AddressKeys {
        AddressKeys::of(&self.names, email, claim)
    }

    /// The key `name` of the client `ip`.
    fn client_key(&self, ip: IpAddr, name: &str) -> String {
        self.names.client(&ip.to_string(), name)
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

    /// Counts an activation attempt of `email`'s registration or claim
    /// `claim`, whatever then becomes of it (a code checked or not); `Err`
    /// holds the refusal when it is locked out (the attempt that passes the
    /// window's limit starts the lockout).
    pub async fn reserve_attempt(
        &self,
        email: &Email,
        claim: Option<i64>,
    ) -> RedisResult<Result<Attempt, Duration>> {
        let keys = self.keys(email, claim);
        let reserved = checked("activation_attempts", async {
            let (locked, value): (i64, i64) = self
                .reserve_attempt
                .key(&keys.attempts)
                .key(&keys.lock)
                .arg(self.policy.attempt_limit)
                .arg(millis(self.policy.attempt_window))
                .arg(millis(self.policy.lock))
                .invoke_async(&mut self.conn.clone())
                .await?;
            Ok(if locked == 1 {
                Err(Decision::Limited {
                    limit: Limit::ActivationAttempts,
                    retry_after: pttl(value),
                })
            } else {
                Ok(Attempt {
                    number: u32::try_from(value).unwrap_or(u32::MAX),
                })
            })
        })
        .await?;
        Ok(reserved.map_err(|refused| match refused {
            Decision::Limited { retry_after, .. } => retry_after,
            Decision::Allowed => Duration::ZERO,
        }))
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
        let keys = self.keys(email, claim);
        self.lock
            .key(&keys.attempts)
            .key(&keys.lock)
            .arg(millis(self.policy.lock))
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// Clears the activation counters after a successful activation.
    pub async fn clear_attempts(&self, email: &Email) -> RedisResult<()> {
        self.unlock(email, &[], false).await.map(drop)
    }

    /// Counts a resend of `email`'s registration or claim `claim`, unless
    /// that would exceed the per-minute or daily limit.
    pub async fn check_resend(&self, email: &Email, claim: Option<i64>) -> RedisResult<Decision> {
        let keys = self.keys(email, claim);
        checked(
            "resend",
            self.count(
                &[
                    (keys.resend_minute, self.policy.resend_per_minute, MINUTE),
                    (keys.resend_day, self.policy.resend_daily, DAY),
                ],
                &[Limit::ResendPerMinute, Limit::ResendDaily],
            ),
        )
        .await
    }

    /// Counts a registration from `ip`, unless its window is full (a full
    /// one is remembered until it ends: registrations are never given
    /// back).
    pub async fn check_register(&self, ip: ClientIp) -> RedisResult<Decision> {
        let policy = &self.policy;
        checked(
            "register_per_ip",
            self.count_ip_remembered(
                ip,
                "register",
                (policy.register_per_ip, policy.register_window),
                Limit::RegisterPerIp,
            ),
        )
        .await
    }

    /// [`Limiter::count_ip`] for a window that only ever fills: a full one
    /// is remembered until it ends, and refused from memory meanwhile.
    async fn count_ip_remembered(
        &self,
        ip: ClientIp,
        what: &'static str,
        (limit, window): (u32, Duration),
        reached: Limit,
    ) -> RedisResult<Decision> {
        let Some(addr) = ip.0 else {
            return Ok(Decision::Allowed);
        };
        if let Some(retry_after) = self.remembered.refusal(what, addr) {
            return Ok(Decision::Limited {
                limit: reached,
                retry_after,
            });
        }
        let decision = self.count_ip(ip, what, (limit, window), reached).await?;
        if let Decision::Limited { retry_after, .. } = decision {
            self.remembered.remember(what, addr, retry_after);
        }
        Ok(decision)
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
                self.count(&[(self.client_key(ip, what), limit, window)], &[reached])
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
        checked(
            "activation_failures_per_ip",
            self.count_ip(
                ip,
                "activation:failures",
                (
                    policy.activation_failures_per_ip,
                    policy.activation_failure_window,
                ),
                Limit::ActivationFailuresPerIp,
            ),
        )
        .await
    }

    /// Gives back what [`Limiter::reserve_activation_failure`] counted.
    /// Gives back an activation attempt reserved by [`Limiter::reserve_attempt`]
    /// that never reached the code (a store failed).
    pub async fn release_attempt(&self, email: &Email, claim: Option<i64>) -> RedisResult<()> {
        self.give_back(&self.keys(email, claim).attempts).await
    }

    pub async fn release_activation_failure(&self, ip: ClientIp) -> RedisResult<()> {
        match ip.0 {
            Some(ip) => {
                self.give_back(&self.client_key(ip, "activation:failures"))
                    .await
            }
            None => Ok(()),
        }
    }

    /// Counts a Basic sign-in that needs bcrypt as failed before its
    /// password is checked (so parallel guesses cannot exceed the limits),
    /// unless the client has no failures (or sign-ins) left, or has failed
    /// for this address as much as it may. These are the client's own
    /// limits: none of them says anything of the account. A sign-in that
    /// turns out right is given back with [`Limiter::release_auth_failure`].
    pub async fn reserve_auth_failure(&self, email: &Email, ip: ClientIp) -> RedisResult<Decision> {
        checked("auth_failures", self.count_auth_failure(email, ip)).await
    }

    async fn count_auth_failure(&self, email: &Email, ip: ClientIp) -> RedisResult<Decision> {
        let policy = &self.policy;
        // Two scripts: the address's and the client's keys live in other
        // slots. The client's also checks (without counting) its
        // successful sign-ins.
        if let Some(ip) = ip.0 {
            let decision = self
                .count(
                    &[
                        (
                            self.client_key(ip, "auth:failures"),
                            policy.auth_failures_per_ip,
                            policy.auth_failure_window,
                        ),
                        (
                            self.client_key(ip, "sign-ins"),
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
        let decision = self
            .count_shared(
                &self.keys(email, None).auth_failures,
                ip,
                (policy.auth_failures_per_email, policy.auth_failure_ceiling),
                policy.auth_failure_window,
                [Limit::AuthFailures, Limit::AuthFailuresCeiling],
            )
            .await?;
        if decision != Decision::Allowed
            && let Some(ip) = ip.0
        {
            self.give_back(&self.client_key(ip, "auth:failures"))
                .await?;
        }
        Ok(decision)
    }

    /// Gives back what [`Limiter::reserve_auth_failure`] counted, for a
    /// sign-in that did not fail.
    pub async fn release_auth_failure(&self, email: &Email, ip: ClientIp) -> RedisResult<()> {
        self.give_back_shared(&self.keys(email, None).auth_failures, ip)
            .await?;
        if let Some(ip) = ip.0 {
            self.give_back(&self.client_key(ip, "auth:failures"))
                .await?;
        }
        Ok(())
    }

    /// Counts a successful sign-in to active `email`, unless it has had its
    /// window's share (`SIGN_IN_LIMIT`): asked only once the password is
    /// known right, so it tells nothing to whoever does not know it.
    pub async fn check_sign_ins(&self, email: &Email) -> RedisResult<Decision> {
        checked(
            "sign_ins",
            self.count(
                &[(
                    self.keys(email, None).sign_ins,
                    self.policy.sign_ins_per_email,
                    self.policy.auth_failure_window,
                )],
                &[Limit::SignIns],
            ),
        )
        .await
    }

    /// Whether `ip` may sign in again (its successful sign-ins), checked
    /// without counting: for a sign-in proven without bcrypt, which passes
    /// no failure limit.
    /// A full window is remembered until it ends: sign-ins are never given
    /// back.
    pub async fn check_sign_ins_per_ip(&self, ip: ClientIp) -> RedisResult<Decision> {
        checked(
            "sign_ins_per_ip",
            self.count_ip_remembered(
                ip,
                "sign-ins",
                (self.policy.sign_ins_per_ip, Duration::ZERO),
                Limit::SignInsPerIp,
            ),
        )
        .await
    }

    /// Counts a successful sign-in from `ip` (checked, before any password
    /// work, by [`Limiter::reserve_auth_failure`]).
    pub async fn record_sign_in(&self, ip: ClientIp) -> RedisResult<()> {
        let Some(ip) = ip.0 else {
            return Ok(());
        };
        let counter = (
            self.client_key(ip, "sign-ins"),
            u32::MAX,
            self.policy.auth_failure_window,
        );
        self.count(&[counter], &[Limit::SignInsPerIp])
            .await
            .map(drop)
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
        let keys = self.keys(email, None);
        let mut pipe = redis::pipe();
        for &claim in claims {
            let keys = self.keys(email, Some(claim));
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
            .del(&keys.auth_failures.total);
        pipe.del(&keys.auth_failures.by_network)
            .ignore()
            .del(&keys.sign_ins)
            .ignore();
        if resend_limits {
            pipe.del(&keys.resend_minute).del(&keys.resend_day);
        }
        let deleted: Vec<i64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(Cleared {
            lock: deleted.first() == Some(&1),
            failures: deleted.iter().skip(1).take(2).any(|&n| n == 1),
            resend_limits: deleted.iter().skip(3).any(|&n| n == 1),
        })
    }

    /// Forgets everything counted for `email` (its account is erased): the
    /// lockouts, the counters, the resend limits. What an inbox or a
    /// client counted stays, shared with others: its keys name neither.
    pub async fn forget(&self, email: &Email, claims: &[i64]) -> RedisResult<()> {
        self.unlock(email, claims, true).await.map(drop)
    }

    /// The lockout state and counts of `email`'s first registration, for
    /// support.
    pub async fn lock_state(&self, email: &Email) -> RedisResult<LockState> {
        let keys = self.keys(email, None);
        let (lock_ms, attempts, auth_failures, resends): (
            i64,
            Option<u32>,
            Option<u32>,
            Option<u32>,
        ) = redis::pipe()
            .pttl(&keys.lock)
            .get(&keys.attempts)
            .get(&keys.auth_failures.total)
            .get(&keys.resend_day)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(LockState {
            locked_for: (lock_ms > 0).then(|| pttl(lock_ms)),
            attempts: attempts.unwrap_or(0),
            auth_failures: auth_failures.unwrap_or(0),
            resends_today: resends.unwrap_or(0),
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
