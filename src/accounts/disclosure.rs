//! Registration that tells nobody who has an account
//! (`REGISTRATION_DISCLOSURE=hidden`; docs/API.md "Registration that
//! discloses nothing").
//!
//! Whoever registers an address gets 201 `Activation email sent` whether
//! it is unknown, pending or active, and from then on the same answers to
//! the password they registered:
//!
//! - an unknown address is registered, a pending one claimed (as with the
//!   original's disclosure, but answered 201);
//! - for an active one, the password is hashed under the account's salt
//!   (the same bcrypt work as the others), the owner is emailed a notice
//!   of its own (counted by the inbox's limits like any email), and a
//!   password other than the owner's is recorded as a *decoy* claim: a
//!   claim of the active account that signs in as a pending registrant's
//!   would (resend 202, sending the owner the notice again; activate 400,
//!   with the registrant's lockout and failure budget), and never
//!   activates anything. A decoy expires as a claim does.
//!
//! What differs in work (a claim's transaction or none, a code or a
//! notice) is hidden in time: each answer of register, resend and
//! activate is held until the slowest of the last few of its kind took
//! ([`Pace`]), so all answer at about the same time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use chrono::Utc;
use diesel_async::AsyncPgConnection;

use super::register::{Newcomer, Registered};
use super::{AccountError, Accounts};
use crate::db::claims::{self, NewClaim};
use crate::db::outbox;
use crate::db::users::{self, User};
use crate::password::same_digest;
use crate::seal::Notice;

/// How many recent answers the floor is the slowest of.
const RECENT: usize = 64;
/// No answer is held longer than this: a floor past it is an overloaded
/// server's, and its answers are slow whatever the address.
const MOST: Duration = Duration::from_secs(5);
/// How long a notice may wait for delivery: it tells of an attempt, so
/// is worth sending later than a code, but not a day later.
const NOTICE_LIFE: Duration = Duration::from_secs(3600);

/// The pace of one kind of answer: each is held until the slowest of the
/// last [`RECENT`] of its kind (this one included) took, so an answer's
/// time tells nothing of the work it needed.
#[derive(Default)]
pub struct Pace {
    recent: Mutex<VecDeque<Duration>>,
}

impl Pace {
    /// Waits until `started` plus the floor, having counted this answer's
    /// own time (`started` until now) in it.
    pub async fn hold(&self, started: Instant) {
        let floor = self.floor_with(started.elapsed());
        tokio::time::sleep_until(started + floor).await;
    }

    /// Counts an answer that took `took`; the time every answer now takes
    /// at least.
    fn floor_with(&self, took: Duration) -> Duration {
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(took);
        recent.iter().copied().max().unwrap_or_default().min(MOST)
    }
}

/// The paces of the answers that could tell an address's standing apart.
#[derive(Default)]
pub struct Paces {
    pub register: Pace,
    pub resend: Pace,
    pub activate: Pace,
}

/// Which answer [`Accounts::paced`] holds.
#[derive(Debug, Clone, Copy)]
pub enum Paced {
    Register,
    Resend,
    Activate,
}

impl Accounts {
    /// Runs `work`, and with `REGISTRATION_DISCLOSURE=hidden` holds its
    /// answer to the pace of its kind ([`Pace`]).
    pub async fn paced<T>(&self, kind: Paced, work: impl Future<Output = T>) -> T {
        if !self.hides_registrations() {
            return work.await;
        }
        let started = Instant::now();
        let answer = work.await;
        let pace = match kind {
            Paced::Register => &self.paces.register,
            Paced::Resend => &self.paces.resend,
            Paced::Activate => &self.paces.activate,
        };
        pace.hold(started).await;
        answer
    }

    /// A registration for active `user`'s address with hidden disclosure:
    /// the password hashed under the account's salt (the work any
    /// registration costs), then in one transaction the notice to the
    /// owner and, for a password that is not the owner's nor a live
    /// decoy's, a decoy claim. If the account is no longer active, says
    /// how the address stands now.
    pub(super) async fn notify_owner(
        &self,
        newcomer: Newcomer<'_>,
        user: &User,
    ) -> Result<Registered, AccountError> {
        let hash = self
            .hasher
            .hash_like(newcomer.password, &user.password_hash, newcomer.client)
            .await?;
        let counted = self.inbox_of(&user.email);
        let site = newcomer.client.site_name();
        let mut conn = self.pool.get().await?;
        transaction!(&mut conn, "claim", async |conn| {
            let Some(current) = users::lock(conn, user.id).await?.filter(|u| u.is_active) else {
                return Ok(Registered::Changed(
                    self.standing(conn, newcomer.email).await?,
                ));
            };
            let now = Utc::now();
            let decoy = if same_digest(&current.password_hash, &hash) {
                None
            } else {
                if let Some(cutoff) = self.expired_before(now) {
                    // Decoys that expired sign in no more: ended, for purge.
                    claims::end_made_before(conn, current.id, cutoff).await?;
                }
                let live = claims::of_user(conn, current.id).await?;
                match live
                    .into_iter()
                    .find(|claim| same_digest(&claim.password_hash, &hash))
                {
                    Some(known) => Some(known),
                    None => Some(
                        claims::insert(
                            conn,
                            &NewClaim {
                                user_id: current.id,
                                password_hash: &hash.0,
                                locale: newcomer.locale.as_str(),
                                network: &site,
                            },
                        )
                        .await?,
                    ),
                }
            };
            self.queue_notice(conn, &current, &counted).await?;
            Ok(Registered::Notified(
                decoy.map(|claim| current.as_claim(&claim)),
            ))
        })
    }

    /// Queues the notice to active `owner` that someone tried to register
    /// its address, in the owner's language, in the caller's transaction.
    pub(super) async fn queue_notice(
        &self,
        conn: &mut AsyncPgConnection,
        owner: &User,
        counted_inbox: &str,
    ) -> Result<(), AccountError> {
        let notice = Notice {
            locale: owner.locale.clone().unwrap_or_default(),
        };
        outbox::insert(
            conn,
            &outbox::NewMessage {
                user_id: Some(owner.id),
                recipient: owner.email.as_str(),
                payload: &notice.seal(&self.sealer, owner.id),
                expires_at: Utc::now() + crate::duration::to_delta(NOTICE_LIFE),
                kind: outbox::EMAIL,
                event_type: None,
                claim_id: None,
                inbox: Some(counted_inbox),
            },
        )
        .await?;
        tracing::info!(user_id = %owner.id, "a registration for an active address; its owner is notified");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_slowest_of_the_recent_answers_and_at_most_the_most() {
        let pace = Pace::default();
        let ms = Duration::from_millis;
        assert_eq!(pace.floor_with(ms(40)), ms(40));
        assert_eq!(pace.floor_with(ms(3)), ms(40));
        for _ in 0..RECENT {
            pace.floor_with(ms(5));
        }
        assert_eq!(pace.floor_with(ms(2)), ms(5), "the slow one was forgotten");
        assert_eq!(pace.floor_with(Duration::from_secs(60)), MOST);
    }

    #[tokio::test]
    async fn an_answer_waits_for_the_floor() {
        let pace = Pace::default();
        pace.floor_with(Duration::from_millis(30));
        let started = Instant::now();
        pace.hold(started).await;
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
