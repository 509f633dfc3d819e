//! Signing in: HTTP Basic credentials checked against an account, or, for
//! a pending address, against every password registered for it (its first
//! registration and its claims, all hashed under one salt: one bcrypt
//! computation whatever their number).
//!
//! The original's order: a wrong password is a 401 before any limit of
//! the account's says 429, so whoever does not know the password learns
//! nothing of the account's limits. Only the client's own limits (its
//! failed and successful sign-ins, its failures for this address) refuse
//! before bcrypt, bounding that work; a credential proven moments ago (a
//! proof in Redis, or in memory) needs no bcrypt and is refused by no
//! failure limit.

use chrono::Utc;

use super::{AccountError, Accounts, allowed, registrant};
use crate::address::Email;
use crate::client_ip::ClientIp;
use crate::db::claims::{self, Claim};
use crate::db::users::{self, User};
use crate::password::Password;

/// Who may sign in to an address now ([`Accounts::signable`]).
struct Signable {
    user: User,
    /// Whether its first registration may (an active account's: yes).
    registration: bool,
    /// Its live claims that have not expired.
    claims: Vec<Claim>,
}

impl Accounts {
    /// Checks HTTP Basic credentials; the account as the password signs in
    /// to it (a pending address's registration, or one of its claims). An
    /// unknown address, an expired pending registration and a wrong
    /// password are the same 401 after the same bcrypt work.
    pub async fn authenticate(
        &self,
        email: &Email,
        password: &Password,
        client: ClientIp,
    ) -> Result<User, AccountError> {
        if let Some(user) = self.recognized(email, password).await? {
            allowed(self.limiter.check_sign_ins_per_ip(client).await?)?;
            return self.admitted(user, client).await;
        }
        allowed(self.limiter.reserve_auth_failure(email, client).await?)?;
        let checked = self.check_password(email, password, client).await;
        if !matches!(checked, Err(AccountError::InvalidCredentials))
            && let Err(err) = self.limiter.release_auth_failure(email, client).await
        {
            tracing::warn!(error = %err, "could not give back an authentication's count");
        }
        self.admitted(checked?, client).await
    }

    /// A signed-in `user`, once its account's own limit allows: an active
    /// account's successful sign-ins (`SIGN_IN_LIMIT`), asked only now that
    /// the password is known right. Counts the client's sign-in.
    async fn admitted(&self, user: User, client: ClientIp) -> Result<User, AccountError> {
        // A decoy claim (`super::disclosure`) signs in as a pending
        // registrant does: no limit of the account's.
        if user.is_active && user.claim.is_none() {
            allowed(self.limiter.check_sign_ins(&user.email).await?)?;
        }
        if let Err(err) = self.limiter.record_sign_in(client).await {
            tracing::warn!(error = %err, "could not count a sign-in");
        }
        Ok(user)
    }

    /// `user` as `password` was proven to be moments ago, with no bcrypt
    /// work: a proof kept in Redis for a pending registrant's code life, or
    /// a credential verified in this process in the last minute; `None`
    /// when neither holds (or no longer names the account as it is).
    async fn recognized(
        &self,
        email: &Email,
        password: &Password,
    ) -> Result<Option<User>, AccountError> {
        let remembered = self.recent.recall(email, password);
        let proven = match (&remembered, &self.proofs) {
            (None, Some(proofs)) => {
                let inbox = self.code_inbox_of(email);
                match proofs.recall(&inbox, email, password).await {
                    Ok(proven) => proven,
                    Err(err) => {
                        tracing::warn!(error = %err, "could not read a credential proof");
                        None
                    }
                }
            }
            _ => None,
        };
        if remembered.is_none() && proven.is_none() {
            return Ok(None);
        }
        let Some(signable) = self.signable(email).await? else {
            return Ok(None);
        };
        let Signable {
            user,
            registration,
            claims,
        } = signable;
        if let Some((hash, claim)) = remembered {
            return Ok(match claim {
                None => (registration && hash == user.password_hash.0).then_some(user),
                Some(claim) => claims
                    .iter()
                    .find(|live| live.id == claim && live.password_hash.0 == hash)
                    .map(|live| user.as_claim(live)),
            });
        }
        // An active account's own password is never proven (it is not
        // registered any more); its decoy claims' are.
        let proven = proven.unwrap_or_default();
        if !user.is_active && registration && proven == registrant(&user) {
            return Ok(Some(user));
        }
        Ok(claims
            .iter()
            .find(|claim| proven == registrant(&user.as_claim(claim)))
            .map(|claim| user.as_claim(claim)))
    }

    /// The account of `email` and, when it is pending, who may sign in to
    /// it now: its first registration unless expired, and its live claims
    /// that have not expired (each registration and claim expires
    /// `PENDING_ACCOUNT_TTL_SECONDS` after it was made).
    async fn signable(&self, email: &Email) -> Result<Option<Signable>, AccountError> {
        tracing::Instrument::instrument(
            self.read_signable(email),
            crate::traces::spans::read("account"),
        )
        .await
    }

    async fn read_signable(&self, email: &Email) -> Result<Option<Signable>, AccountError> {
        let mut conn = self.pool.get().await?;
        let Some(user) = users::find_by_email(&mut conn, email).await? else {
            return Ok(None);
        };
        let now = Utc::now();
        let cutoff = self.expired_before(now);
        if user.is_active {
            // With hidden disclosure, the decoy claims of an active
            // account sign in too (`super::disclosure`).
            let claims = if self.hides_registrations() {
                claims::of_user(&mut conn, user.id)
                    .await?
                    .into_iter()
                    .filter(|claim| cutoff.is_none_or(|cutoff| claim.created_at >= cutoff))
                    .collect()
            } else {
                Vec::new()
            };
            return Ok(Some(Signable {
                user,
                registration: true,
                claims,
            }));
        }
        let claims = claims::of_user(&mut conn, user.id)
            .await?
            .into_iter()
            .filter(|claim| cutoff.is_none_or(|cutoff| claim.created_at >= cutoff))
            .collect();
        Ok(Some(Signable {
            registration: !self.expired(&user, now),
            user,
            claims,
        }))
    }

    /// Verifies `password` for `email` with bcrypt: one computation for an
    /// unknown address (against a dummy hash), an active account (and its
    /// decoy claims, with hidden disclosure), or a pending one and all its
    /// claims.
    async fn check_password(
        &self,
        email: &Email,
        password: &Password,
        client: ClientIp,
    ) -> Result<User, AccountError> {
        let (user, registration, live) = match self.signable(email).await? {
            Some(signable) if !signable.user.is_active || !signable.claims.is_empty() => {
                (signable.user, signable.registration, signable.claims)
            }
            other => {
                let user = other.map(|signable| signable.user);
                return self.check_account(user, email, password, client).await;
            }
        };
        let hash = self
            .hasher
            .digest_like(password, &user.password_hash, client)
            .await?;
        if registration && crate::password::same_digest(&user.password_hash, &hash) {
            if user.is_active && user.password_hash.cost() != Some(self.hasher.cost()) {
                self.rehash(&user, password, client).await;
            } else {
                self.recent
                    .remember(email, password, &user.password_hash.0, None);
            }
            return Ok(user);
        }
        if let Some(claim) = self.claim_of(&live, &hash, password, client).await? {
            self.recent
                .remember(email, password, &claim.password_hash.0, Some(claim.id));
            return Ok(user.as_claim(claim));
        }
        Err(AccountError::InvalidCredentials)
    }

    /// The claim of `live` whose password `hash` (under the registration's
    /// salt) is. A claim recorded before claims shared the registration's
    /// salt is verified on its own.
    async fn claim_of<'a>(
        &self,
        live: &'a [Claim],
        hash: &crate::password::PasswordHash,
        password: &Password,
        client: ClientIp,
    ) -> Result<Option<&'a Claim>, AccountError> {
        if let Some(claim) = live
            .iter()
            .find(|claim| crate::password::same_digest(&claim.password_hash, hash))
        {
            return Ok(Some(claim));
        }
        for claim in live
            .iter()
            .filter(|claim| !crate::password::same_salt(&claim.password_hash, hash))
        {
            if self
                .hasher
                .verify(password, Some(&claim.password_hash), client)
                .await?
            {
                return Ok(Some(claim));
            }
        }
        Ok(None)
    }

    /// Verifies `password` against an active account (rehashed at the
    /// configured cost once known right) or, for no account, a dummy hash.
    async fn check_account(
        &self,
        user: Option<User>,
        email: &Email,
        password: &Password,
        client: ClientIp,
    ) -> Result<User, AccountError> {
        let matches = self
            .hasher
            .verify(
                password,
                user.as_ref().map(|user| &user.password_hash),
                client,
            )
            .await?;
        let user = user
            .filter(|_| matches)
            .ok_or(AccountError::InvalidCredentials)?;
        if user.password_hash.cost() != Some(self.hasher.cost()) {
            self.rehash(&user, password, client).await;
        } else {
            self.recent
                .remember(email, password, &user.password_hash.0, None);
        }
        Ok(user)
    }

    /// Rehashes an active account's password that was hashed at another
    /// cost than `BCRYPT_COST` (the setting changed since), now that it is
    /// known to be right: a wrong password then costs the same time on
    /// every account again. Best effort: a failure leaves the old hash,
    /// logged.
    async fn rehash(&self, user: &User, password: &Password, client: ClientIp) {
        let replaced = async {
            let new = self.hasher.hash(password, client).await?;
            let mut conn = self.pool.get().await?;
            Ok::<_, AccountError>(
                users::replace_password_hash(&mut conn, user.id, &user.password_hash, &new).await?,
            )
        };
        match replaced.await {
            Ok(true) => tracing::info!(
                user_id = %user.id,
                from = user.password_hash.cost(),
                to = self.hasher.cost(),
                "password rehashed at the configured cost"
            ),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(user_id = %user.id, error = %err, "could not rehash a password")
            }
        }
    }
}
