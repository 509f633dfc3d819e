//! Claims, not first come (docs/API.md "Claims"): a registration for an
//! address whose registration is pending does not lose the newcomer. It
//! records a claim of its own (its own password hash, code, failure budget
//! and language) and mails that code to the address; the answer stays the
//! original's 409 `Activation code already issued`, whatever the password.
//! Whoever activates with a claim's password and that claim's code wins
//! (`Accounts::activate`): the account takes the claim's password and every
//! other claim ends. A code verifies only its own claim, so this holds in
//! both orders: an attacker registering first, or after the owner.

use diesel_async::AsyncConnection;

use super::{AccountError, Accounts, run_again};
use crate::client_ip::ClientIp;
use crate::db::claims::{self, NewClaim};
use crate::db::users::{self, User};
use crate::limits::Decision;
use crate::locale::Locale;
use crate::password::{Password, PasswordHash};

/// Live claims per address besides its first registration; a new one ends
/// the oldest.
pub const MAX_CLAIMS: usize = 3;

impl Accounts {
    /// Support's new code (`user resend`): one for the first registration
    /// and one for each live claim, each to the address (whoever reads it
    /// holds one of the passwords). Returns how many were queued.
    pub async fn reissue_every_claim(&self, user: &User) -> Result<usize, AccountError> {
        self.reissue(user).await?;
        let live = {
            let mut conn = self.pool.get().await?;
            claims::of_user(&mut conn, user.id).await?
        };
        let mut codes = 1;
        for claim in &live {
            match self.reissue(&user.as_claim(claim)).await {
                Ok(()) => codes += 1,
                // Ended meanwhile.
                Err(AccountError::InvalidCredentials) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(codes)
    }

    /// Records `password`'s claim to pending `user` (hashed already, when
    /// `hash` is given) and queues its code's email, unless the password is
    /// the first registration's or a live claim's (then nothing is sent, as
    /// the original) or the mailbox has no email left for this client
    /// (nothing recorded). Either way the caller answers 409. Errors are the
    /// dependencies' (503) and the hash queue's.
    pub(super) async fn claim(
        &self,
        user: &User,
        password: &Password,
        locale: &Locale,
        client: ClientIp,
        hash: Option<PasswordHash>,
    ) -> Result<(), AccountError> {
        let live = {
            let mut conn = self.pool.get().await?;
            claims::of_user(&mut conn, user.id).await?
        };
        // The same password as a registration of the address: as the
        // original, no new email.
        for known in
            std::iter::once(&user.password_hash).chain(live.iter().map(|c| &c.password_hash))
        {
            if self.hasher.verify(password, Some(known), client).await? {
                return Ok(());
            }
        }
        let Decision::Allowed = self
            .limiter
            .reserve_mailbox_email(&user.email, client, false)
            .await?
        else {
            return Ok(());
        };
        let recorded = self
            .record_claim(user, password, locale, client, hash)
            .await;
        if recorded.is_err()
            && let Err(err) = self
                .limiter
                .release_mailbox_email(&user.email, client)
                .await
        {
            tracing::warn!(error = %err, "could not give back a mailbox's email count");
        }
        recorded
    }

    /// Hashes the password (unless done), then in one transaction, with the
    /// user's row locked first as every workflow does: ends the oldest
    /// claims beyond [`MAX_CLAIMS`], records the new one and issues its
    /// code. If the account was activated or registered afresh meanwhile,
    /// records nothing.
    async fn record_claim(
        &self,
        user: &User,
        password: &Password,
        locale: &Locale,
        client: ClientIp,
        hash: Option<PasswordHash>,
    ) -> Result<(), AccountError> {
        let hash = match hash {
            Some(hash) => hash,
            None => self.hasher.hash(password, client).await?,
        };
        let length = self.code_length_for(&user.email).await?;
        let mut conn = self.pool.get().await?;
        for attempt in 1.. {
            let recorded = conn
                .transaction(async |conn| {
                    let current = users::lock(conn, user.id).await?;
                    if current.is_none_or(|current| {
                        current.is_active || current.created_at != user.created_at
                    }) {
                        return Ok(None);
                    }
                    let live = claims::of_user(conn, user.id).await?;
                    let beyond = (live.len() + 1).saturating_sub(MAX_CLAIMS);
                    if beyond > 0 {
                        let oldest: Vec<i64> = live.iter().take(beyond).map(|c| c.id).collect();
                        claims::end(conn, &oldest).await?;
                    }
                    let claim = claims::insert(
                        conn,
                        &NewClaim {
                            user_id: user.id,
                            password_hash: &hash.0,
                            locale: locale.as_str(),
                        },
                    )
                    .await?;
                    self.issue_code(conn, &user.as_claim(&claim), length)
                        .await?;
                    Ok::<_, AccountError>(Some(claim.id))
                })
                .await;
            if !run_again(&recorded, attempt) {
                if let Ok(Some(claim)) = recorded {
                    tracing::info!(user_id = %user.id, claim, "a claim to a pending address");
                }
                return recorded.map(drop);
            }
        }
        unreachable!("run_again stops after the second attempt")
    }
}
