//! Codes, and asking for a new one (docs/LIMITS.md "A code proves the
//! inbox"). Every code is emailed to the inbox of the address it is issued
//! for; any live code of an inbox activates any password registered for an
//! address that reaches it. What a code is, is decided per inbox, under a
//! lock of the inbox's, from the codes it has live:
//!
//! - a **short** code (`CODE_LENGTH` digits) only while the registrant it
//!   is for is alone in the inbox (nobody else has a live code there), and
//!   the inbox's guessing budget has paid for its first attempt, so no
//!   guess of anyone else's can take that attempt from it; a short code is
//!   compared only for its own registrant;
//! - else a **long** code (8 digits), one the inbox's registrants share: a
//!   newcomer is sent the code the inbox has live rather than a new one
//!   (which also bounds the codes a guess is compared with), and a code is
//!   replaced only by a resend of a registrant who alone holds it.
//!
//! A new code supersedes its registrant's earlier ones for that registrant
//! (the original's rule); a long one superseded still proves the inbox to
//! the others until it expires, so nobody's resend takes the owner's code
//! away.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;

use super::{AccountError, Accounts, allowed, registrant};
use crate::client_ip::ClientIp;
use crate::code::{Code, LONG_LENGTH};
use crate::db::activation_codes::{self, InboxCode};
use crate::db::users::User;
use crate::db::{claims, outbox, users};
use crate::password::Password;
use crate::seal::Payload;

impl Accounts {
    /// A registrant's request for a new code, from `client`, signed in
    /// with `password`: refused by the registrant's own resend limits (a
    /// minute, a day) or the inbox's emails, else as [`Accounts::issue`];
    /// the password is then proven for the new code's life.
    pub async fn resend(
        &self,
        user: &User,
        password: &Password,
        client: ClientIp,
    ) -> Result<(), AccountError> {
        // A decoy claim (`super::disclosure`) asks as a pending registrant.
        if user.is_active && user.claim.is_none() {
            return Err(AccountError::AlreadyActive);
        }
        allowed(self.limiter.check_resend(&user.email, user.claim).await?)?;
        let inbox = self.inbox_of(&user.email);
        let slot = match self.limiter.reserve_email(&inbox, client).await? {
            Ok(slot) => slot,
            Err(refusal) => return allowed(refusal),
        };
        let resent = self.reissue_for(user, false).await;
        if resent.is_err()
            && let Err(err) = self.limiter.release_email(&inbox, client, slot).await
        {
            tracing::warn!(error = %err, "could not give back an inbox's email count");
        }
        if resent.is_ok() {
            self.keep_proof(user, password).await;
        }
        resent
    }

    /// Support's new code (`user resend`), regardless of limits: as the
    /// first registration's resend, and a long code every claimant can use
    /// too when the address has claims.
    pub async fn reissue(&self, user: &User) -> Result<(), AccountError> {
        let claimed = {
            let mut conn = self.pool.get().await?;
            !claims::of_user(&mut conn, user.id).await?.is_empty()
        };
        self.reissue_for(user, claimed).await
    }

    /// Issues `user`'s (a registration's or a claim's) next code, in a
    /// transaction of its own, with the account's row locked first as
    /// every workflow does; a long one if `long`.
    async fn reissue_for(&self, user: &User, long: bool) -> Result<(), AccountError> {
        let mut conn = self.pool.get().await?;
        transaction!(&mut conn, "issue code", async |conn| {
            let current = users::lock(conn, user.id)
                .await?
                .ok_or_else(|| AccountError::UnknownUser(user.email.clone()))?;
            if current.is_active {
                // A decoy claim's "new code" is the owner's notice again.
                return match user.claim {
                    Some(claim) if user.is_active && claims::exists(conn, claim).await? => {
                        self.queue_notice(conn, &current, &self.inbox_of(&current.email))
                            .await
                    }
                    Some(_) => Err(AccountError::InvalidCredentials),
                    None => Err(AccountError::AlreadyActive),
                };
            }
            if current.created_at != user.created_at {
                // Registered afresh since `user` signed in: not theirs now.
                return Err(AccountError::InvalidCredentials);
            }
            match user.claim {
                // An ended claim opens nothing.
                Some(claim) if !claims::exists(conn, claim).await? => {
                    Err(AccountError::InvalidCredentials)
                }
                Some(_) => self.issue_code(conn, user, long).await,
                None => self.issue_code(conn, &current, long).await,
            }
        })
    }

    /// Issues `registrant`'s next code and queues its email, in the
    /// caller's transaction (whose lock of the account's row comes first).
    pub(super) async fn issue(
        &self,
        conn: &mut AsyncPgConnection,
        registrant: &User,
    ) -> Result<(), AccountError> {
        self.issue_code(conn, registrant, false).await
    }

    /// [`Accounts::issue`]; a long code if `long`.
    async fn issue_code(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
        long: bool,
    ) -> Result<(), AccountError> {
        // The inbox its codes prove, and the inbox its budget counts.
        let (inbox, counted) = (self.code_inbox_of(&user.email), self.inbox_of(&user.email));
        let now = Utc::now();
        let expires_at = now + crate::duration::to_delta(self.code_ttl);
        // Issuers and activations of one inbox take turns.
        activation_codes::lock_inbox(conn, &inbox).await?;
        let live = activation_codes::live_in_inbox(conn, &inbox, now).await?;
        let mine = |code: &InboxCode| code.is_of(user.id, user.claim);
        let alone = live.iter().all(|code| mine(code) && !code.shared);
        let short = !long
            && self.code_length < LONG_LENGTH
            && alone
            && self
                .limiter
                .reserve_short_code(
                    &counted,
                    &registrant(user),
                    self.code_length,
                    user.failed_activations == 0,
                )
                .await?;
        // The inbox's long code: the newest that no resend replaced.
        let shared = live
            .iter()
            .rev()
            .find(|code| code.length() == LONG_LENGTH && code.superseded_at.is_none())
            .filter(|code| !short && (code.shared || !mine(code)))
            .and_then(|code| Some((code, self.open_code(code)?)));
        let code = match shared {
            Some((shared, code)) => {
                activation_codes::share(conn, shared.id, expires_at.max(shared.expires_at)).await?;
                self.supersede(conn, user, Some(shared.id), now).await?;
                // The code lives longer now: so do the credentials proven
                // for it, or the owner typing it late would need bcrypt and
                // pass the failed sign-in limits (best effort).
                if let Some(proofs) = &self.proofs
                    && let Err(err) = proofs.extend(&inbox, self.code_ttl).await
                {
                    tracing::warn!(error = %err, "could not extend the credential proofs");
                }
                code
            }
            None => {
                let code = Code::generate(if short { self.code_length } else { LONG_LENGTH });
                self.supersede(conn, user, None, now).await?;
                self.store(conn, user, &inbox, &code, expires_at).await?;
                code
            }
        };
        // The account's language, kept since registration (the dispatcher
        // falls back to the default for one it no longer has).
        let payload = Payload {
            code,
            locale: user.locale.clone().unwrap_or_default(),
        };
        outbox::insert(
            conn,
            &outbox::NewMessage {
                user_id: Some(user.id),
                recipient: user.email.as_str(),
                payload: &payload.seal(&self.sealer, user.id),
                expires_at,
                kind: outbox::EMAIL,
                event_type: None,
                claim_id: user.claim,
                inbox: Some(&counted),
            },
        )
        .await?;
        Ok(())
    }

    /// Supersedes `user`'s live codes (but `keep`) and the emails still
    /// queued with them: a registrant's new code replaces its old ones.
    async fn supersede(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
        keep: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<(), AccountError> {
        activation_codes::supersede_live(conn, user.id, user.claim, keep, now).await?;
        outbox::supersede_queued(conn, user.id, user.claim, now).await?;
        Ok(())
    }

    /// Stores `code` for `user`, emailed to `inbox`: its keyed hash, and a
    /// long code sealed too (to be sent again to the inbox's others).
    async fn store(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
        inbox: &str,
        code: &Code,
        expires_at: DateTime<Utc>,
    ) -> Result<(), AccountError> {
        let digits = code.as_str().len();
        let sealed = (digits == LONG_LENGTH).then(|| {
            self.sealer
                .seal(code.as_str().as_bytes(), &code_context(user.id.0))
        });
        activation_codes::insert(
            conn,
            &activation_codes::NewCode {
                user_id: user.id,
                code_hash: &self.code_hasher.hash(user.id, code),
                expires_at,
                claim_id: user.claim,
                inbox,
                digits: i16::try_from(digits).unwrap_or(i16::MAX),
                sealed: sealed.as_deref(),
            },
        )
        .await?;
        Ok(())
    }

    /// The digits of a long code kept sealed; `None` if it does not open
    /// (sealed under a key no longer listed: a new code is issued instead).
    fn open_code(&self, stored: &InboxCode) -> Option<Code> {
        let digits = self
            .sealer
            .open(stored.sealed.as_deref()?, &code_context(stored.user_id.0))
            .ok()?;
        Code::from_digits(std::str::from_utf8(&digits).ok()?)
    }
}

/// What a sealed code is bound to: its row's account (the associated data
/// of `seal::Sealer`), so it opens nowhere else.
fn code_context(user: i64) -> Vec<u8> {
    let mut context = b"activation code ".to_vec();
    context.extend_from_slice(&user.to_be_bytes());
    context
}
