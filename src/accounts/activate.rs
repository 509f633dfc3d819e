//! Activating: a password registered for a pending address (its first
//! registration's, or a claim's) with a live code of the address's inbox
//! (docs/LIMITS.md "A code proves the inbox").

use chrono::Utc;

use super::events::{ACTIVATED, queue_event};
use super::{AccountError, Accounts, allowed, registrant};
use crate::client_ip::ClientIp;
use crate::code::{Code, LONG_LENGTH};
use crate::db::activation_codes::{self, InboxCode};
use crate::db::users::User;
use crate::db::{claims, users};
use crate::limits::{Attempt, GuessPaid, Limit, cost_of};

/// What a code did, as the transaction that compared it saw.
enum Tried {
    Activated(GuessPaid),
    /// Not a live code of the inbox; `checked`: compared with some (one
    /// guess of an attacker's, counted as such), else refused unchecked.
    Wrong {
        checked: bool,
    },
    /// The registration or claim is not what signed in any more, or has
    /// spent its failure budget.
    Refused,
}

impl Accounts {
    /// Activates `user` (a registrant, as it signed in) with `code`. Every
    /// attempt counts in the registrant's lockout window, whatever becomes
    /// of it, and against the client's wrong codes (given back unless the
    /// code is wrong); in the database it spends one of the registrant's
    /// lifetime budget of failures. Then the code is compared, in one
    /// transaction with the activation: a short code with the registrant's
    /// own, a long one with the inbox's (docs/LIMITS.md); the comparison is
    /// paid from the inbox's guessing budget, except a registrant's first
    /// attempt (paid when its short code was issued, free for a long one):
    /// so the owner's first try is always compared, and guesses are bounded
    /// per inbox. On success the account takes the registrant's password
    /// and language, and every claim ends.
    pub async fn activate(
        &self,
        user: &User,
        code: &Code,
        client: ClientIp,
    ) -> Result<(), AccountError> {
        let attempt = self.reserve_attempt(user).await?;
        let tried = self.use_attempt(user, code, client, attempt).await;
        if tried.as_ref().is_err_and(AccountError::is_unavailable) {
            // Not an attempt at the code but a store that failed (a 503,
            // retried by the client): it does not count for the lockout.
            if let Err(err) = self.limiter.release_attempt(&user.email, user.claim).await {
                tracing::warn!(error = %err, "could not give back an activation attempt");
            }
        }
        tried
    }

    /// The activation of `user` with `code`, its `attempt` reserved.
    async fn use_attempt(
        &self,
        user: &User,
        code: &Code,
        client: ClientIp,
        attempt: Attempt,
    ) -> Result<(), AccountError> {
        // A decoy claim (`super::disclosure`) goes on as a pending
        // registrant's attempt, and never matches.
        if user.is_active && user.claim.is_none() {
            // As the original: a failed attempt like any other, so that
            // after the window's limit the account is locked out (429).
            self.limiter
                .record_failure(&user.email, user.claim, attempt)
                .await?;
            return Err(AccountError::AlreadyActive);
        }
        allowed(self.limiter.reserve_activation_failure(client).await?)?;
        let tried = self.try_code(user, code).await;
        if let Err(AccountError::InvalidCode) = &tried {
            self.limiter
                .record_failure(&user.email, user.claim, attempt)
                .await?;
        } else if let Err(err) = self.limiter.release_activation_failure(client).await {
            tracing::warn!(error = %err, "could not give back an activation's count");
        }
        tried
    }

    async fn try_code(&self, user: &User, code: &Code) -> Result<(), AccountError> {
        // The inbox its codes prove, and the inbox its budget counts.
        let (inbox, counted) = (self.code_inbox_of(&user.email), self.inbox_of(&user.email));
        let me = registrant(user);
        let length = code.as_str().len();
        let max = self.limiter.policy().activation_max_failures;
        let mut conn = self.pool.get().await?;
        let tried = transaction!(&mut conn, "activate", async |conn| {
            let now = Utc::now();
            let current = users::lock(conn, user.id).await?;
            if let (Some(current), Some(claim)) = (&current, user.claim)
                && current.is_active
                && user.is_active
            {
                // A decoy: its budget spent as a claim's, no code compared.
                return Ok(match claims::spend_activation(conn, claim, max).await? {
                    Some(_) => Tried::Wrong { checked: false },
                    None => Tried::Refused,
                });
            }
            if current
                .is_none_or(|current| current.is_active || current.created_at != user.created_at)
            {
                return Ok(Tried::Refused);
            }
            let spent = match user.claim {
                Some(claim) => claims::spend_activation(conn, claim, max).await?,
                None => users::spend_activation(conn, user.id, user.created_at, max).await?,
            };
            let Some(spent) = spent else {
                return Ok(Tried::Refused);
            };
            activation_codes::lock_inbox(conn, &inbox).await?;
            let live = activation_codes::live_in_inbox(conn, &inbox, now).await?;
            let candidates: Vec<&InboxCode> = live
                .iter()
                .filter(|stored| stored.length() == length)
                .filter(|stored| {
                    let mine = stored.is_of(user.id, user.claim);
                    if length < LONG_LENGTH {
                        // A short code is its own registrant's alone.
                        mine && stored.superseded_at.is_none()
                    } else {
                        // A long one proves the inbox to all but the
                        // registrant whose newer code replaced it.
                        !(mine && stored.superseded_at.is_some())
                    }
                })
                .collect();
            if candidates.is_empty() {
                return Ok(Tried::Wrong { checked: false });
            }
            let first = spent == 1;
            let paid = if first && length == LONG_LENGTH {
                GuessPaid::First
            } else {
                let cost = cost_of(length) * u64::try_from(candidates.len()).unwrap_or(u64::MAX);
                self.limiter.pay_guess(&counted, &me, cost, first).await?
            };
            if paid == GuessPaid::Refused {
                return Ok(Tried::Wrong { checked: false });
            }
            let Some(matched) = candidates.iter().find(|stored| {
                self.code_hasher
                    .verify(stored.user_id, code, &stored.code_hash)
            }) else {
                return Ok(Tried::Wrong { checked: true });
            };
            if !activation_codes::mark_used(conn, matched.id, now).await? {
                return Ok(Tried::Wrong { checked: true });
            }
            // A claim wins: the account takes its password and language.
            if let Some(claim) = user.claim
                && !users::take_claim(conn, user.id, claim).await?
            {
                return Err(AccountError::InvalidCredentials);
            }
            claims::end_all(conn, user.id).await?;
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
                return Err(AccountError::AlreadyActive);
            }
            Ok(Tried::Activated(paid))
        })?;
        match tried {
            Tried::Activated(paid) => {
                if self.events.activated {
                    crate::metrics::get().event(ACTIVATED, "queued");
                }
                if let Err(err) = self.limiter.give_back_guess(&counted, paid).await {
                    tracing::warn!(error = %err, "could not give back an inbox's guess");
                }
                // The account is active whatever Redis says now; stale
                // counters only matter to an account that cannot activate.
                self.forget_counters(user, &super::registrants_of(user))
                    .await;
                Ok(())
            }
            Tried::Wrong { checked } => {
                if checked {
                    crate::metrics::get().wrong_code(length);
                }
                Err(AccountError::InvalidCode)
            }
            Tried::Refused => Err(self.why_not(user).await?),
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
    /// afresh by someone else or its claim ended (bad credentials now),
    /// already active, or its failure budget spent (429 until the
    /// registration expires and the address can be registered afresh;
    /// without expiry, a lockout's length).
    async fn why_not(&self, user: &User) -> Result<AccountError, AccountError> {
        let mut conn = self.pool.get().await?;
        let current = users::find(&mut conn, user.id)
            .await?
            .ok_or_else(|| AccountError::UnknownUser(user.email.clone()))?;
        if current.created_at != user.created_at {
            return Ok(AccountError::InvalidCredentials);
        }
        let decoy = current.is_active && user.is_active && user.claim.is_some();
        if current.is_active && !decoy {
            return Ok(AccountError::AlreadyActive);
        }
        if let Some(claim) = user.claim
            && !claims::exists(&mut conn, claim).await?
        {
            return Ok(AccountError::InvalidCredentials);
        }
        // With hidden disclosure, until the registrant's own registration
        // or claim expires: a claim's time would tell that someone else
        // registered the address first.
        let until = match user.claim {
            Some(claim) if self.hides_registrations() => claims::made_at(&mut conn, claim)
                .await?
                .zip(self.pending_ttl)
                .map(|(made, ttl)| made + crate::duration::to_delta(ttl)),
            _ => self.pending_until(&current),
        };
        let retry_after = until
            .and_then(|until| (until - Utc::now()).to_std().ok())
            .unwrap_or(self.limiter.policy().lock);
        Ok(AccountError::RateLimited {
            limit: Limit::ActivationBudget,
            retry_after,
        })
    }
}
