//! Rate limits in Redis, per normalized email (SPEC §4).
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

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Script, Value};

use crate::address::Email;
use crate::settings::{LimitSettings, RedisUrl, Settings};

/// How long one Redis command may take: the limits fail closed, and a request
/// should learn that quickly rather than hang.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to one Redis server or to a Redis Cluster. Cheap to clone;
/// clones share the underlying multiplexed connection.
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl RedisConnection {
    /// Connects to one server (lazily: a Redis that is down at start-up is
    /// reported by the first request and by `/health/check`, and reconnected
    /// when it is back) or, for several URLs, to a cluster.
    pub async fn connect(url: &RedisUrl) -> RedisResult<Self> {
        match url.0.as_slice() {
            [single] => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let client = redis::Client::open(single.as_str())?;
                Ok(Self::Single(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
            nodes => {
                let client =
                    redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
                        .connection_timeout(CONNECT_TIMEOUT)
                        .response_timeout(RESPONSE_TIMEOUT)
                        .retries(1)
                        .build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// Answers whether Redis responds.
    pub async fn ping(&self) -> RedisResult<()> {
        let mut conn = self.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The outcome of a rate-limited step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Limited { retry_after: Duration },
}

/// An activation attempt that was allowed, and its number in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
}

/// What `unlock` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Cleared {
    pub lock: bool,
    pub failures: bool,
    pub resend_limits: bool,
}

/// An email's activation lockout state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LockState {
    /// Time left on the lockout, if locked.
    pub locked_for: Option<Duration>,
    /// Attempts counted in the current window.
    pub attempts: u32,
}

/// Reserves an activation attempt. Returns `{1, pttl}` when locked (or when
/// this attempt exceeds the limit, which starts the lockout), else `{0, n}`
/// with the attempt's number in the window.
const RESERVE_ATTEMPT: &str = r"
local locked = redis.call('PTTL', KEYS[2])
if locked > 0 then return {1, locked} end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return {1, tonumber(ARGV[3])}
end
return {0, n}
";

/// Starts the lockout (after the failure that reached the limit).
const LOCK: &str = r"
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
redis.call('DEL', KEYS[1])
return 1
";

/// Counts a resend against both windows, or returns the milliseconds until
/// the first full window frees a slot. Nothing is counted when refused.
const RESEND: &str = r"
for i = 1, 2 do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used >= tonumber(ARGV[2 * i - 1]) then
    return redis.call('PTTL', KEYS[i])
  end
end
for i = 1, 2 do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  end
end
return 0
";

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// The rate limiter. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    conn: RedisConnection,
    policy: LimitSettings,
    reserve_attempt: std::sync::Arc<Script>,
    lock: std::sync::Arc<Script>,
    resend: std::sync::Arc<Script>,
}

/// The Redis keys of one email.
struct Keys {
    attempts: String,
    lock: String,
    resend_minute: String,
    resend_day: String,
}

impl Keys {
    fn of(email: &Email) -> Self {
        let key = |name: &str| format!("activator:{{{email}}}:{name}");
        Self {
            attempts: key("activation:attempts"),
            lock: key("activation:lock"),
            resend_minute: key("resend:minute"),
            resend_day: key("resend:day"),
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

impl Limiter {
    pub fn new(conn: RedisConnection, policy: LimitSettings) -> Self {
        Self {
            conn,
            policy,
            reserve_attempt: Script::new(RESERVE_ATTEMPT).into(),
            lock: Script::new(LOCK).into(),
            resend: Script::new(RESEND).into(),
        }
    }

    /// Connects to the Redis of `settings`, with its limits.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        use anyhow::Context;
        let redis = RedisConnection::connect(&settings.redis_url)
            .await
            .context("cannot connect to Redis (REDIS_URL)")?;
        Ok(Self::new(redis, settings.limits))
    }

    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// Records an activation attempt before its code is checked; `Err` holds
    /// the refusal when the user is locked out.
    pub async fn reserve_attempt(&self, email: &Email) -> RedisResult<Result<Attempt, Duration>> {
        let keys = Keys::of(email);
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
    pub async fn record_failure(&self, email: &Email, attempt: Attempt) -> RedisResult<()> {
        if attempt.number < self.policy.attempt_limit {
            return Ok(());
        }
        let keys = Keys::of(email);
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
        self.unlock(email, false).await.map(drop)
    }

    /// Counts a resend, unless that would exceed the per-minute or daily limit.
    pub async fn check_resend(&self, email: &Email) -> RedisResult<Decision> {
        let keys = Keys::of(email);
        let wait: i64 = self
            .resend
            .key(&keys.resend_minute)
            .key(&keys.resend_day)
            .arg(self.policy.resend_per_minute)
            .arg(millis(MINUTE))
            .arg(self.policy.resend_daily)
            .arg(millis(DAY))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if wait == 0 {
            Decision::Allowed
        } else {
            Decision::Limited {
                retry_after: pttl(wait),
            }
        })
    }

    /// Removes the lockout and the attempt counter, and with `resend_limits`
    /// the resend counters too. Reports which keys existed.
    pub async fn unlock(&self, email: &Email, resend_limits: bool) -> RedisResult<Cleared> {
        let keys = Keys::of(email);
        let mut pipe = redis::pipe();
        pipe.del(&keys.lock).del(&keys.attempts);
        if resend_limits {
            pipe.del(&keys.resend_minute).del(&keys.resend_day);
        }
        let deleted: Vec<i64> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(Cleared {
            lock: deleted.first() == Some(&1),
            failures: deleted.get(1) == Some(&1),
            resend_limits: deleted.iter().skip(2).any(|&n| n == 1),
        })
    }

    /// The lockout state, for support.
    pub async fn lock_state(&self, email: &Email) -> RedisResult<LockState> {
        let keys = Keys::of(email);
        let (lock_ms, attempts): (i64, Option<u32>) = redis::pipe()
            .pttl(&keys.lock)
            .get(&keys.attempts)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(LockState {
            locked_for: (lock_ms > 0).then(|| pttl(lock_ms)),
            attempts: attempts.unwrap_or(0),
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
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_email_share_a_hash_tag() {
        let keys = Keys::of(&crate::address::normalize("Someone@Example.com").unwrap());
        for key in [
            &keys.attempts,
            &keys.lock,
            &keys.resend_minute,
            &keys.resend_day,
        ] {
            assert!(key.starts_with("activator:{someone@example.com}:"), "{key}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(900)), 900);
    }
}
