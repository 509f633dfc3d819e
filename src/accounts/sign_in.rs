//! Signing in: HTTP Basic credentials checked against an account's
//! registration or one of its claims, with every refusal that needs no
//! password decided first, and the proofs of credentials verified moments
//! ago (in Redis for a registration's code life, in memory for a minute)
//! sparing a second bcrypt.

use super::{AccountError, Accounts, SignIn, allowed};
use crate::address::Email;
use crate::client_ip::ClientIp;
use crate::db::users::User;
use crate::db::{self, users};
use crate::password::Password;

impl Accounts {
    /// Checks HTTP Basic credentials. Failures are limited per email and per
    /// client IP, and counted before the password is checked, so a limited
    /// client is refused (429) before any bcrypt work and parallel guesses
    /// cannot exceed the limits. Successful sign-ins are limited too
    /// (checked before, counted after), and credentials verified moments ago
    /// cost no second bcrypt. An unknown email costs a bcrypt verification
    /// too, so it cannot be told apart from a wrong password by timing
    /// (a pending address with claims costs one more per claim).
    pub async fn authenticate(
        &self,
        email: &Email,
        password: &Password,
        client: ClientIp,
        purpose: SignIn,
    ) -> Result<User, AccountError> {
        allowed(self.limiter.reserve_auth_failure(email, client).await?)?;
        let checked = self.check_password(email, password, client, purpose).await;
        if !matches!(checked, Err(AccountError::InvalidCredentials))
            && let Err(err) = self.limiter.release_auth_failure(email, client).await
        {
            tracing::warn!(error = %err, "could not give back an authentication's count");
        }
        if let Ok(user) = &checked
            && let Err(err) = self
                .limiter
                .record_sign_in(email, user.is_active, client)
                .await
        {
            tracing::warn!(error = %err, "could not count a sign-in");
        }
        checked
    }

    async fn check_password(
        &self,
        email: &Email,
        password: &Password,
        client: ClientIp,
        purpose: SignIn,
    ) -> Result<User, AccountError> {
        let user = {
            let mut conn = self.pool.get().await?;
            users::find_by_email(&mut conn, email).await?
        };
        if let Some(user) = &user {
            if let Some(refusal) = self.refused_before_password(user, purpose).await? {
                return Err(refusal);
            }
            if self.proven(user, password).await {
                return Ok(user.clone());
            }
            if let Some(known) = self.recalled(user, password).await? {
                return Ok(known);
            }
        }
        let matches = self
            .hasher
            .verify(
                password,
                user.as_ref().map(|user| &user.password_hash),
                client,
            )
            .await?;
        match user {
            Some(user) if matches => {
                if user.password_hash.cost() != Some(self.hasher.cost()) {
                    self.rehash(&user, password, client).await;
                } else {
                    self.recent
                        .remember(email, password, &user.password_hash.0, None);
                }
                Ok(user)
            }
            // A pending address's claims have passwords of their own.
            Some(user) if !user.is_active => {
                let live = {
                    let mut conn = self.pool.get().await?;
                    db::claims::of_user(&mut conn, user.id).await?
                };
                for claim in &live {
                    if self
                        .hasher
                        .verify(password, Some(&claim.password_hash), client)
                        .await?
                    {
                        self.recent.remember(
                            email,
                            password,
                            &claim.password_hash.0,
                            Some(claim.id),
                        );
                        return Ok(user.as_claim(claim));
                    }
                }
                Err(AccountError::InvalidCredentials)
            }
            _ => Err(AccountError::InvalidCredentials),
        }
    }

    /// What `purpose` would be refused for on pending `user` whatever the
    /// password: its lockout (activate), its resend limits (resend), its
    /// spent failure budget (activate); decided before any password work.
    /// Only for an account without claims: a claimant's own limits are its
    /// own, known once its password is.
    async fn refused_before_password(
        &self,
        user: &User,
        purpose: SignIn,
    ) -> Result<Option<AccountError>, AccountError> {
        if user.is_active {
            return Ok(None);
        }
        let mut refusal = self
            .limiter
            .refusal(&user.email, purpose == SignIn::Activate)
            .await?
            .map(|(limit, retry_after)| AccountError::RateLimited { limit, retry_after });
        let max = self.limiter.policy().activation_max_failures;
        if refusal.is_none()
            && purpose == SignIn::Activate
            && u32::try_from(user.failed_activations).unwrap_or(0) >= max
        {
            let mut conn = self.pool.get().await?;
            // Only the budget's refusal: whatever else changed meanwhile is
            // for the password to decide.
            refusal = Some(self.why_not(&mut conn, user).await?)
                .filter(|why| matches!(why, AccountError::RateLimited { .. }));
        }
        let Some(refusal) = refusal else {
            return Ok(None);
        };
        let mut conn = self.pool.get().await?;
        if !db::claims::of_user(&mut conn, user.id).await?.is_empty() {
            return Ok(None);
        }
        Ok(Some(refusal))
    }

    /// `user` as `password` signed in to it moments ago (its registration,
    /// or one of its claims), if it did and the hash it was verified
    /// against is still that one's: no bcrypt work then.
    async fn recalled(
        &self,
        user: &User,
        password: &Password,
    ) -> Result<Option<User>, AccountError> {
        let Some((hash, claim)) = self.recent.recall(&user.email, password) else {
            return Ok(None);
        };
        let Some(claim) = claim else {
            return Ok((hash == user.password_hash.0).then(|| user.clone()));
        };
        if user.is_active {
            return Ok(None);
        }
        let mut conn = self.pool.get().await?;
        Ok(db::claims::of_user(&mut conn, user.id)
            .await?
            .iter()
            .find(|live| live.id == claim && live.password_hash.0 == hash)
            .map(|live| user.as_claim(live)))
    }

    /// Keeps a proof that `password` is `user`'s for as long as its code
    /// lives, so that signing in to activate costs no second bcrypt (see
    /// `crate::credential`). Best effort: without it, bcrypt decides.
    pub(super) async fn keep_proof(&self, user: &User, password: &Password) {
        let Some(prover) = &self.prover else {
            return;
        };
        let bound = crate::credential::registration(user.id.0, user.created_at);
        let proof = prover.proof(&user.email, &bound, password);
        if let Err(err) = self
            .limiter
            .store_proof(&user.email, &proof, self.code_ttl)
            .await
        {
            tracing::warn!(error = %err, "could not keep a credential proof");
        }
    }

    /// Whether a kept proof shows `password` to be pending `user`'s, so no
    /// bcrypt work is needed. Anything else (no proof, another password, an
    /// active account, Redis failing) leaves it to bcrypt.
    async fn proven(&self, user: &User, password: &Password) -> bool {
        let Some(prover) = &self.prover else {
            return false;
        };
        if user.is_active {
            return false;
        }
        match self.limiter.proof(&user.email).await {
            Ok(Some(stored)) => {
                let bound = crate::credential::registration(user.id.0, user.created_at);
                prover.verify(&user.email, &bound, password, &stored)
            }
            Ok(None) => false,
            Err(err) => {
                tracing::warn!(error = %err, "could not read a credential proof");
                false
            }
        }
    }

    /// Rehashes a password that was hashed at another cost than
    /// `BCRYPT_COST` (the setting changed since), now that it is known to be
    /// right: a wrong password then costs the same time on every account
    /// again. Best effort: a failure leaves the old hash, logged.
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
