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

/// Live claims per address besides its first registration; a new one from
/// another site ends the oldest.
pub const MAX_CLAIMS: usize = 3;

/// Who asks for a claim: the password they chose, their language, where
/// they are.
#[derive(Clone, Copy)]
pub(super) struct Newcomer<'a> {
    pub(super) password: &'a Password,
    pub(super) locale: &'a Locale,
    pub(super) client: ClientIp,
}

/// What a registration for a pending address did.
enum Claimed {
    /// A claim of its own, its code's email queued.
    Recorded,
    /// Its password is the registration's or a live claim's: nothing.
    SamePassword,
    /// Nothing recorded (no email left for the client, or the account
    /// changed meanwhile).
    Nothing,
}

impl Accounts {
    /// Support's new code (`user resend`): one for the first registration
    /// and one for each live claim, each to the address (whoever reads it
    /// holds one of the passwords). Returns how many were queued.
    pub async fn reissue_every_claim(&self, user: &User) -> Result<usize, AccountError> {
        let length = self.code_length_for(&user.email).await?;
        self.reissue_at(user, length).await?;
        let live = {
            let mut conn = self.pool.get().await?;
            claims::of_user(&mut conn, user.id).await?
        };
        let mut codes = 1;
        for claim in &live {
            match self.reissue_at(&user.as_claim(claim), length).await {
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
    /// the original), the client has no failed sign-ins left for the
    /// address, or the mailbox no email for this client (nothing recorded).
    /// Either way the caller answers 409. Errors are the dependencies'
    /// (503) and the hash queue's.
    ///
    /// Comparing the password with the address's is a sign-in as far as the
    /// failed sign-in limits go: counted as a failure before any bcrypt
    /// work, given back when it matches. So registering cannot guess a
    /// password faster than signing in.
    pub(super) async fn claim(
        &self,
        user: &User,
        newcomer: Newcomer<'_>,
        hash: Option<PasswordHash>,
    ) -> Result<(), AccountError> {
        let (email, client) = (&user.email, newcomer.client);
        if self.limiter.reserve_auth_failure(email, client).await? != Decision::Allowed {
            return Ok(());
        }
        let mailbox = self
            .limiter
            .reserve_mailbox_email(email, client, false)
            .await;
        let reserved = matches!(mailbox, Ok(Decision::Allowed));
        let recorded = match mailbox {
            Ok(Decision::Allowed) => self.check_and_record(user, newcomer, hash).await,
            Ok(Decision::Limited { .. }) => Ok(Claimed::Nothing),
            Err(err) => Err(err.into()),
        };
        // Only a recorded claim keeps what was counted: a sign-in that
        // failed (another password), an email queued.
        let kept = matches!(recorded, Ok(Claimed::Recorded));
        if !kept && let Err(err) = self.limiter.release_auth_failure(email, client).await {
            tracing::warn!(error = %err, "could not give back an authentication's count");
        }
        if !kept
            && reserved
            && let Err(err) = self.limiter.release_mailbox_email(email, client).await
        {
            tracing::warn!(error = %err, "could not give back a mailbox's email count");
        }
        recorded.map(drop)
    }

    /// Compares `password` with the address's registration and live claims
    /// (the same one again: nothing), then records its claim.
    async fn check_and_record(
        &self,
        user: &User,
        newcomer: Newcomer<'_>,
        hash: Option<PasswordHash>,
    ) -> Result<Claimed, AccountError> {
        let live = {
            let mut conn = self.pool.get().await?;
            claims::of_user(&mut conn, user.id).await?
        };
        for known in
            std::iter::once(&user.password_hash).chain(live.iter().map(|c| &c.password_hash))
        {
            if self
                .hasher
                .verify(newcomer.password, Some(known), newcomer.client)
                .await?
            {
                return Ok(Claimed::SamePassword);
            }
        }
        self.record_claim(user, newcomer, hash).await
    }

    /// Hashes the password (unless done), then in one transaction, with the
    /// user's row locked first as every workflow does: ends the claim made
    /// earlier from the client's site (an IPv4 address, an IPv6 /48), or
    /// else the oldest beyond [`MAX_CLAIMS`]; records the new one and
    /// issues its code. So ending someone else's claim takes claims from
    /// [`MAX_CLAIMS`] sites, each an email. If the account was activated or
    /// registered afresh meanwhile, records nothing.
    async fn record_claim(
        &self,
        user: &User,
        newcomer: Newcomer<'_>,
        hash: Option<PasswordHash>,
    ) -> Result<Claimed, AccountError> {
        let site = newcomer.client.site_name();
        let hash = match hash {
            Some(hash) => hash,
            None => self.hasher.hash(newcomer.password, newcomer.client).await?,
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
                    let mut ended: Vec<i64> = live
                        .iter()
                        .filter(|claim| claim.network == site)
                        .map(|claim| claim.id)
                        .collect();
                    if ended.is_empty() {
                        let beyond = (live.len() + 1).saturating_sub(MAX_CLAIMS);
                        ended = live.iter().take(beyond).map(|c| c.id).collect();
                    }
                    if !ended.is_empty() {
                        claims::end(conn, &ended).await?;
                    }
                    let claim = claims::insert(
                        conn,
                        &NewClaim {
                            user_id: user.id,
                            password_hash: &hash.0,
                            locale: newcomer.locale.as_str(),
                            network: &site,
                        },
                    )
                    .await?;
                    self.issue_code(conn, &user.as_claim(&claim), length)
                        .await?;
                    Ok::<_, AccountError>(Some(claim.id))
                })
                .await;
            if !run_again(&recorded, attempt) {
                return recorded.map(|recorded| match recorded {
                    Some(claim) => {
                        tracing::info!(user_id = %user.id, claim, "a claim to a pending address");
                        Claimed::Recorded
                    }
                    None => Claimed::Nothing,
                });
            }
        }
        unreachable!("run_again stops after the second attempt")
    }
}
