//! Support's actions on an account (the CLI's `user unlock`, `user
//! delete`): its counters and budgets restored, or everything of it erased.

use diesel_async::AsyncConnection;

use super::{AccountError, Accounts};
use crate::address::Email;
use crate::db::{self, users};
use crate::limits::Cleared;

impl Accounts {
    /// Clears the activation lockout, the failure counters and a spent
    /// failure budget of an existing account (and with `resend_limits` the
    /// resend counters).
    pub async fn unlock(
        &self,
        email: &Email,
        resend_limits: bool,
    ) -> Result<Unlocked, AccountError> {
        let user = self.find_user(email).await?;
        let (budget, claims) = {
            let mut conn = self.pool.get().await?;
            let budget = users::restore_activation_budget(&mut conn, user.id).await?
                + db::claims::restore_activation_budgets(&mut conn, user.id).await?;
            let claims: Vec<i64> = db::claims::of_user(&mut conn, user.id)
                .await?
                .iter()
                .map(|claim| claim.id)
                .collect();
            (budget, claims)
        };
        let cleared = self.limiter.unlock(email, &claims, resend_limits).await?;
        // Whatever unlocks an account also ends its credential proofs.
        self.forget_proofs(&user, &super::registrants_of(&user))
            .await?;
        Ok(Unlocked { cleared, budget })
    }

    /// Erases the account of `email`: in one transaction the account, its
    /// codes and its outbox messages; then its Redis counters and proof.
    pub async fn delete(&self, email: &Email) -> Result<Deleted, AccountError> {
        let user = self.find_user(email).await?;
        let mut conn = self.pool.get().await?;
        let deleted = conn
            .transaction(async |conn| {
                // The row first, as every workflow locks it (codes after).
                users::lock(conn, user.id).await?;
                let claims: Vec<i64> = db::claims::of_user(conn, user.id)
                    .await?
                    .iter()
                    .map(|claim| claim.id)
                    .collect();
                let told = db::outbox::has_told(conn, user.id).await?;
                let Some(deleted) = users::delete(conn, user.id).await? else {
                    return Ok(None);
                };
                if told {
                    super::events::queue_deleted(conn, user.id, chrono::Utc::now()).await?;
                }
                Ok::<_, diesel::result::Error>(Some((deleted, claims, told)))
            })
            .await?;
        let ((codes, emails), claims, told) =
            deleted.ok_or_else(|| AccountError::UnknownUser(email.clone()))?;
        if told {
            crate::metrics::get().event(super::events::DELETED, "queued");
        }
        self.limiter.forget(&user.email, &claims).await?;
        self.forget_proofs(&user, &super::registrants_of(&user))
            .await?;
        Ok(Deleted {
            codes,
            emails,
            told,
        })
    }
}

/// What `unlock` restored: Redis' counters, and how many failed activations
/// it gave back to the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlocked {
    pub cleared: Cleared,
    pub budget: u32,
}

/// What `delete` erased besides the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub codes: i64,
    pub emails: i64,
    /// Whether a `user.deleted` event was queued (the webhook's receiver
    /// had been told of the account).
    pub told: bool,
}
