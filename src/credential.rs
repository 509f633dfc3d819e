//! The proof of a verified credential: an HMAC-SHA256, under a key derived
//! from `SECRET_KEY` with HKDF, of an address and a password that were just
//! known to belong together (the password hashed at registration, or
//! verified by bcrypt since). Kept in Redis for a code's lifetime
//! ([`Proofs`]), naming the registration or claim the password is, it lets
//! the activation or resend that follows skip a second bcrypt
//! verification (a signup costs one hash), and no limit on failed sign-ins
//! refuses a password so proven (docs/LIMITS.md "The owner of an address").
//!
//! Neither the password nor anything a password can be recovered from rests
//! anywhere without `SECRET_KEY`: whoever holds both a Redis dump and the key
//! within a code's lifetime can test guesses at HMAC speed instead of
//! bcrypt's, which is the trade-off `CREDENTIAL_PROOF=off` declines. A new
//! key (rotation) matches no proof made under the old one: they die with it.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use redis::RedisResult;
use sha2::Sha256;

use crate::address::Email;
use crate::password::Password;
use crate::redis::{KeyNames, RedisConnection};
use crate::settings::SecretKey;

type HmacSha256 = Hmac<Sha256>;

/// What tells this key apart from any other derived from `SECRET_KEY`.
const PURPOSE: &[u8] = b"activator credential proof v1";

/// Makes and checks proofs. Cheap to clone; never printed.
#[derive(Clone)]
pub struct Prover {
    mac: HmacSha256,
}

impl Prover {
    pub fn new(secret: &SecretKey) -> Self {
        let mac = <HmacSha256 as Mac>::new_from_slice(&secret.derive(PURPOSE))
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        Self { mac }
    }

    /// The proof that `password` is `email`'s, for the registration that
    /// `bound` names (see [`registration`]; empty: any).
    pub fn proof(&self, email: &Email, bound: &str, password: &Password) -> Vec<u8> {
        self.mac(email, bound, password)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Whether `stored` proves that `password` is `email`'s, for the
    /// registration `bound` names (constant time).
    pub fn verify(&self, email: &Email, bound: &str, password: &Password, stored: &[u8]) -> bool {
        self.mac(email, bound, password)
            .verify_slice(stored)
            .is_ok()
    }

    fn mac(&self, email: &Email, bound: &str, password: &Password) -> HmacSha256 {
        let mut mac = self.mac.clone();
        // Neither the address nor `bound` can hold a NUL: it separates the
        // three unambiguously.
        mac.update(email.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(bound.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_str().as_bytes());
        mac
    }
}

/// Credentials verified moments ago, in this process's memory only: keyed
/// by their proof (an HMAC: never the password), each with the hash it was
/// verified against and whose (the registration's, `None`, or a claim's).
/// A sign-in that finds its proof here, against the same stored hash,
/// costs no second bcrypt verification; a changed hash (a rehash, a claim
/// that won) matches nothing. Bounded: past [`Recent::CAPACITY`] entries the
/// expired go, and if none has, all.
pub struct Recent {
    prover: Prover,
    life: std::time::Duration,
    entries: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Entry>>,
}

struct Entry {
    until: std::time::Instant,
    hash: String,
    claim: Option<i64>,
}

impl Recent {
    pub const CAPACITY: usize = 10_000;

    pub fn new(prover: Prover, life: std::time::Duration) -> Self {
        Self {
            prover,
            life,
            entries: std::sync::Mutex::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Vec<u8>, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers that `password` is `email`'s, verified against `hash`
    /// (of the registration, or of `claim`).
    pub fn remember(&self, email: &Email, password: &Password, hash: &str, claim: Option<i64>) {
        let now = std::time::Instant::now();
        let mut entries = self.entries();
        if entries.len() >= Self::CAPACITY {
            entries.retain(|_, entry| entry.until > now);
            if entries.len() >= Self::CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            self.prover.proof(email, "", password),
            Entry {
                until: now + self.life,
                hash: hash.to_owned(),
                claim,
            },
        );
    }

    /// The hash `password` was verified against for `email` moments ago,
    /// and whose, if it was.
    pub fn recall(&self, email: &Email, password: &Password) -> Option<(String, Option<i64>)> {
        let proof = self.prover.proof(email, "", password);
        let entries = self.entries();
        entries
            .get(&proof)
            .filter(|entry| entry.until > std::time::Instant::now())
            .map(|entry| (entry.hash.clone(), entry.claim))
    }
}

/// What binds a proof to one registration of an address: its account's id
/// and creation time. A proof outlives nothing it was made for: an account
/// erased, or registered afresh, makes another.
pub fn registration(id: i64, created_at: chrono::DateTime<chrono::Utc>) -> String {
    format!("{id}:{}", created_at.timestamp_micros())
}

/// The proofs kept in Redis: one hash per inbox a code proves
/// (`address::Inboxes::proving`), a field per proven credential (its
/// proof, never the password) whose value names the registrant it proved
/// and until when. Cheap to clone.
///
/// By inbox, so that when the inbox's code is sent again (and lives longer)
/// every proof kept for it lives as long ([`Proofs::extend`]): whoever
/// types that code within its life signs in without bcrypt, and no limit
/// on failed sign-ins refuses them.
#[derive(Clone)]
pub struct Proofs {
    conn: RedisConnection,
    names: Arc<KeyNames>,
    prover: Prover,
    extend: Arc<redis::Script>,
    forget: Arc<redis::Script>,
}

/// Every proof of a hash (KEYS[1]) lives at least until ARGV[1] (ms since
/// the epoch); the hash too (its TTL ARGV[2] ms, only ever lengthened).
const EXTEND: &str = r"
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local registrant, untl = string.match(all[i + 1], '^(.*)|(%d+)$')
  if untl and tonumber(untl) < tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], all[i], registrant .. '|' .. ARGV[1])
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2], 'GT')
end
return 1
";

/// Deletes the proofs of a hash (KEYS[1]) whose registrant's name starts
/// with one of ARGV.
const FORGET: &str = r"
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  for _, prefix in ipairs(ARGV) do
    if string.sub(all[i + 1], 1, #prefix) == prefix then
      redis.call('HDEL', KEYS[1], all[i])
      break
    end
  end
end
return 1
";

impl Proofs {
    pub fn new(conn: RedisConnection, names: KeyNames, prover: Prover) -> Self {
        Self {
            conn,
            names: Arc::new(names),
            prover,
            extend: Arc::new(redis::Script::new(EXTEND)),
            forget: Arc::new(redis::Script::new(FORGET)),
        }
    }

    fn key(&self, inbox: &str) -> String {
        self.names.inbox(inbox, "credential:proofs")
    }

    /// Keeps, for `ttl`, the proof that `password` is `registrant`'s (a
    /// registration or a claim of `email`, named by the caller), under
    /// `inbox`, the inbox `email`'s codes prove.
    pub async fn keep(
        &self,
        inbox: &str,
        email: &Email,
        password: &Password,
        registrant: &str,
        ttl: Duration,
    ) -> RedisResult<()> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let until = now_ms().saturating_add(ttl_ms);
        let key = self.key(inbox);
        redis::pipe()
            .hset(
                &key,
                self.prover.proof(email, "", password),
                format!("{registrant}|{until}"),
            )
            .ignore()
            // The hash lives as long as its longest-lived proof.
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms)
            .arg("NX")
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms)
            .arg("GT")
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
    }

    /// The registrant `password` was proven to be for `email`, if a proof
    /// of it is kept under `inbox` and has not expired.
    pub async fn recall(
        &self,
        inbox: &str,
        email: &Email,
        password: &Password,
    ) -> RedisResult<Option<String>> {
        let value: Option<String> = redis::cmd("HGET")
            .arg(self.key(inbox))
            .arg(self.prover.proof(email, "", password))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(value.and_then(|value| {
            let (registrant, until) = value.rsplit_once('|')?;
            (until.parse::<u64>().ok()? > now_ms()).then(|| registrant.to_owned())
        }))
    }

    /// Every proof kept under `inbox` lives at least `ttl` more: the inbox's
    /// code was sent again and lives that long.
    pub async fn extend(&self, inbox: &str, ttl: Duration) -> RedisResult<()> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.extend
            .key(self.key(inbox))
            .arg(now_ms().saturating_add(ttl_ms))
            .arg(ttl_ms)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    /// Ends the proofs kept under `inbox` for the registrants whose names
    /// start with one of `prefixes` (an account activated, unlocked,
    /// registered afresh or erased).
    pub async fn forget(&self, inbox: &str, prefixes: &[String]) -> RedisResult<()> {
        if prefixes.is_empty() {
            return Ok(());
        }
        let mut invocation = self.forget.prepare_invoke();
        invocation.key(self.key(inbox));
        for prefix in prefixes {
            invocation.arg(prefix);
        }
        invocation
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

impl std::fmt::Debug for Prover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prover(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_for_its_address_and_password_under_its_key_only() {
        let prover = |key: &str| Prover::new(&SecretKey::new(key));
        let ada = Email::stored("ada@example.com".into());
        let password = Password::new("Secr3t!pass");
        let first = registration(1, chrono::DateTime::UNIX_EPOCH);
        let proof = prover("one key of at least thirty-two bytes").proof(&ada, &first, &password);
        assert_eq!(proof.len(), 32);
        assert!(!proof.windows(6).any(|w| w == b"Secr3t"));
        let same = prover("one key of at least thirty-two bytes");
        assert!(same.verify(&ada, &first, &password, &proof));
        assert!(!same.verify(&ada, &first, &Password::new("Secr3t!pasS"), &proof));
        let bob = Email::stored("bob@example.com".into());
        assert!(!same.verify(&bob, &first, &password, &proof));
        // Another registration of the address (erased, or started afresh).
        let again = registration(
            1,
            chrono::DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(1),
        );
        assert!(!same.verify(&ada, &again, &password, &proof));
        assert!(!same.verify(
            &ada,
            &registration(2, chrono::DateTime::UNIX_EPOCH),
            &password,
            &proof
        ));
        let rotated = prover("another key of at least thirty-two bytes");
        assert!(!rotated.verify(&ada, &first, &password, &proof));
    }
}
