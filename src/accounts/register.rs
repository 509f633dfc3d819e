//! Registering: a new account, an expired pending one started afresh, or a
//! claim to a pending one (docs/API.md "Claims"). The wire answers are the
//! original's: 201 for an account made, 409 `Account already active`, 409
//! `Activation code already issued` for a pending address whatever the
//! password. A registration for a pending address with a password of its
//! own records a claim (its own password hash, under the registration's
//! salt; its own failure budget and language) and mails the inbox a code;
//! the same password as a registrant's records nothing, as the original
//! sent nothing. No claim ends another: any of the address's passwords
//! activates with any live code of its inbox.

use chrono::Utc;
use diesel_async::AsyncPgConnection;

use super::events::{REGISTERED, queue_event};
use super::{AccountError, Accounts, allowed, registrant};
use crate::address::Email;
use crate::client_ip::ClientIp;
use crate::db::claims::{self, Claim, NewClaim};
use crate::db::users::{self, NewUser, User};
use crate::locale::Locale;
use crate::password::{Password, PasswordHash};

/// Who registers: the address, the password they chose, their language,
/// where they are.
#[derive(Clone, Copy)]
pub(super) struct Newcomer<'a> {
    pub(super) email: &'a Email,
    pub(super) password: &'a Password,
    pub(super) locale: &'a Locale,
    pub(super) client: ClientIp,
}

/// The address as a registration finds it.
pub(super) enum Standing {
    /// No account, or a pending registration that expired (`Some`): a new
    /// registration.
    Open(Option<User>),
    /// A pending registration and its live claims.
    Pending(User, Vec<Claim>),
    Active(User),
}

/// What a registration did.
pub(super) enum Registered {
    /// An account made (or an expired one started afresh), its code sent.
    Account(User),
    /// A claim recorded, its code sent.
    Claim(User),
    /// The password is one the address already has: nothing sent.
    Known,
    /// The address is active and disclosure hidden: its owner notified,
    /// and the decoy claim the password signs in as, if it is not the
    /// owner's (`super::disclosure`).
    Notified(Option<User>),
    /// The address changed between the look and the write: look again.
    Changed(Standing),
}

impl Accounts {
    /// Registers `email` with `password`; its emails will be in `locale`.
    /// `Ok` is a new account (201); a pending address answers
    /// [`AccountError::CodeAlreadyIssued`] (having recorded a claim, or
    /// not), an active one [`AccountError::AlreadyActive`]. One account per
    /// address, also under concurrency: the unique constraint (or the
    /// compare-and-set of a fresh start) decides, the others become claims.
    ///
    /// The stores are asked in this order, every refusal before any hash:
    /// memory (the client's places in the hash queue), Redis (the client's
    /// registrations), PostgreSQL (the address, read once), Redis (the
    /// inbox's emails), bcrypt, PostgreSQL (one transaction: the account or
    /// claim, its code, its email), Redis (the credential's proof).
    pub async fn register(
        &self,
        email: &Email,
        password: &Password,
        locale: &Locale,
        client: ClientIp,
    ) -> Result<(), AccountError> {
        self.hasher.admits(client)?;
        allowed(self.limiter.check_register(client).await?)?;
        // No connection is held across the hash: a pool as large as the
        // hash queue would be needed otherwise.
        let standing = tracing::Instrument::instrument(
            async {
                let mut conn = self.pool.get().await?;
                self.standing(&mut conn, email).await
            },
            crate::traces::spans::read("account"),
        )
        .await?;
        if matches!(standing, Standing::Active(_)) && !self.hides_registrations() {
            return Err(AccountError::AlreadyActive);
        }
        let inbox = self.inbox_of(email);
        let slot = match self.limiter.reserve_email(&inbox, client).await? {
            Ok(slot) => slot,
            Err(refusal) => return allowed(refusal),
        };
        let newcomer = Newcomer {
            email,
            password,
            locale,
            client,
        };
        let registered = self.write(newcomer, standing).await;
        if !matches!(
            registered,
            Ok(Registered::Account(_) | Registered::Claim(_) | Registered::Notified(_))
        ) && let Err(err) = self.limiter.release_email(&inbox, client, slot).await
        {
            tracing::warn!(error = %err, "could not give back an inbox's email count");
        }
        match registered? {
            Registered::Account(user) | Registered::Claim(user) => {
                self.keep_proof(&user, password).await;
                if user.claim.is_some() {
                    Err(AccountError::CodeAlreadyIssued)
                } else {
                    Ok(())
                }
            }
            Registered::Known => Err(AccountError::CodeAlreadyIssued),
            Registered::Notified(decoy) => {
                if let Some(decoy) = decoy {
                    self.keep_proof(&decoy, password).await;
                }
                Err(AccountError::AlreadyActive)
            }
            Registered::Changed(Standing::Active(_)) => Err(AccountError::AlreadyActive),
            Registered::Changed(_) => Err(AccountError::CodeAlreadyIssued),
        }
    }

    /// The address as it stands now.
    pub(super) async fn standing(
        &self,
        conn: &mut AsyncPgConnection,
        email: &Email,
    ) -> Result<Standing, AccountError> {
        let Some(user) = users::find_by_email(conn, email).await? else {
            return Ok(Standing::Open(None));
        };
        let now = Utc::now();
        Ok(if user.is_active {
            Standing::Active(user)
        } else if self.expired(&user, now) {
            Standing::Open(Some(user))
        } else {
            // Claims that expired sign in no more: not the address's now.
            let cutoff = self.expired_before(now);
            let claims = claims::of_user(conn, user.id)
                .await?
                .into_iter()
                .filter(|claim| cutoff.is_none_or(|cutoff| claim.created_at >= cutoff))
                .collect();
            Standing::Pending(user, claims)
        })
    }

    /// Hashes the password and writes the registration the address's
    /// standing calls for; when the address changed meanwhile (a
    /// concurrent registration won), writes what it calls for then: a
    /// claim, under the winner's salt.
    async fn write(
        &self,
        newcomer: Newcomer<'_>,
        mut standing: Standing,
    ) -> Result<Registered, AccountError> {
        // Twice at most: a race lost turns an account into a claim once.
        for _ in 0..3 {
            let written = match standing {
                Standing::Active(user) if self.hides_registrations() => {
                    self.notify_owner(newcomer, &user).await?
                }
                Standing::Active(user) => return Ok(Registered::Changed(Standing::Active(user))),
                Standing::Open(expired) => {
                    // A registration started afresh keeps its salt: claims
                    // made before it expired, still live, share it.
                    let hash = match &expired {
                        Some(old) => {
                            self.hasher
                                .hash_like(newcomer.password, &old.password_hash, newcomer.client)
                                .await?
                        }
                        None => self.hasher.hash(newcomer.password, newcomer.client).await?,
                    };
                    let mut conn = self.pool.get().await?;
                    self.create(&mut conn, newcomer, expired, &hash).await?
                }
                Standing::Pending(user, claims) => {
                    let hash = self
                        .hasher
                        .hash_like(newcomer.password, &user.password_hash, newcomer.client)
                        .await?;
                    let known = std::iter::once(&user.password_hash)
                        .chain(claims.iter().map(|claim| &claim.password_hash))
                        .any(|known| crate::password::same_digest(known, &hash));
                    if known {
                        return Ok(Registered::Known);
                    }
                    let mut conn = self.pool.get().await?;
                    self.record_claim(&mut conn, newcomer, &user, &hash).await?
                }
            };
            match written {
                Registered::Changed(now) => standing = now,
                done => return Ok(done),
            }
        }
        // The address keeps changing under us: as the original would
        // answer a conflict.
        Ok(Registered::Changed(Standing::Open(None)))
    }

    /// In one transaction: the account (or the expired one started afresh
    /// for its new registrant, ending the claims that expired too), its
    /// first code and its email, and the `user.registered` event.
    async fn create(
        &self,
        conn: &mut AsyncPgConnection,
        newcomer: Newcomer<'_>,
        expired: Option<User>,
        hash: &PasswordHash,
    ) -> Result<Registered, AccountError> {
        let locale = newcomer.locale.as_str();
        let created = transaction!(conn, "register", async |conn| {
            let user = match &expired {
                None => {
                    let new = NewUser {
                        email: newcomer.email.as_str(),
                        password_hash: &hash.0,
                        locale,
                    };
                    users::insert(conn, &new).await?
                }
                Some(old) => {
                    let now = Utc::now();
                    let cutoff = self.expired_before(now).unwrap_or(now);
                    let renewed =
                        users::restart_registration(conn, old.id, hash, locale, cutoff).await?;
                    if let Some(user) = &renewed {
                        tracing::info!(
                            user_id = %user.id,
                            "an expired pending registration starts afresh"
                        );
                        // The claims that expired with it end; younger
                        // ones stay, with the codes they were sent.
                        claims::end_made_before(conn, user.id, cutoff).await?;
                    }
                    renewed
                }
            };
            let Some(user) = user else {
                // Another registration came first: look again.
                return Ok(Registered::Changed(
                    self.standing(conn, newcomer.email).await?,
                ));
            };
            self.issue(conn, &user).await?;
            if self.events.registered {
                queue_event(conn, REGISTERED, &user, None).await?;
            }
            Ok(Registered::Account(user))
        })?;
        if let Registered::Account(_) = &created {
            if self.events.registered {
                crate::metrics::get().event(REGISTERED, "queued");
            }
            if let Some(old) = &expired {
                // A new registration: the old one's counters and proof are
                // none of its.
                self.forget_counters(old, &[super::registrant(old)]).await;
            }
        }
        Ok(created)
    }

    /// In one transaction, with the account's row locked first as every
    /// workflow does: the claim of `hash` to pending `user`, its code and
    /// its email. If the account was activated or registered afresh
    /// meanwhile, records nothing and says how it stands now.
    async fn record_claim(
        &self,
        conn: &mut AsyncPgConnection,
        newcomer: Newcomer<'_>,
        user: &User,
        hash: &PasswordHash,
    ) -> Result<Registered, AccountError> {
        let site = newcomer.client.site_name();
        transaction!(conn, "claim", async |conn| {
            let current = users::lock(conn, user.id).await?;
            if current
                .is_none_or(|current| current.is_active || current.created_at != user.created_at)
            {
                return Ok(Registered::Changed(
                    self.standing(conn, newcomer.email).await?,
                ));
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
            let claimant = user.as_claim(&claim);
            self.issue(conn, &claimant).await?;
            tracing::info!(user_id = %user.id, claim = claim.id, "a claim to a pending address");
            Ok(Registered::Claim(claimant))
        })
    }

    /// Keeps a proof that `password` is `user`'s (a registration or a
    /// claim) for as long as a code lives, so that signing in to activate
    /// costs no second bcrypt and no failed sign-in limit refuses it (see
    /// `crate::credential`). Best effort: without it, bcrypt decides.
    pub(super) async fn keep_proof(&self, user: &User, password: &Password) {
        let Some(proofs) = &self.proofs else {
            return;
        };
        let inbox = self.code_inbox_of(&user.email);
        if let Err(err) = proofs
            .keep(
                &inbox,
                &user.email,
                password,
                &registrant(user),
                self.code_ttl,
            )
            .await
        {
            tracing::warn!(error = %err, "could not keep a credential proof");
        }
    }

    /// Clears what Redis counted for `user`'s address (its registration's
    /// counters, the address's sign-ins) and the proofs of `registrants`
    /// (name prefixes): an activation, a new owner. Logged, not answered:
    /// the outcome is decided.
    pub(super) async fn forget_counters(&self, user: &User, registrants: &[String]) {
        if let Err(err) = self.limiter.unlock(&user.email, &[], true).await {
            tracing::warn!(error = %err, "could not clear an address's counters");
        }
        if let Err(err) = self.forget_proofs(user, registrants).await {
            tracing::warn!(error = %err, "could not end an address's credential proofs");
        }
    }

    /// Ends the proofs of `registrants` (name prefixes) of `user`'s
    /// address.
    pub(super) async fn forget_proofs(
        &self,
        user: &User,
        registrants: &[String],
    ) -> Result<(), AccountError> {
        if let Some(proofs) = &self.proofs {
            proofs
                .forget(&self.code_inbox_of(&user.email), registrants)
                .await?;
        }
        Ok(())
    }
}
