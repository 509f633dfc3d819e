//! Activation codes, stored as keyed hashes (see `crate::codes`).

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::Purgeable;
use crate::ids::UserId;
use crate::schema::activation_codes;

/// A code as stored: its keyed hash and its life.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = activation_codes, check_for_backend(Pg))]
pub struct StoredCode {
    pub id: i64,
    pub user_id: UserId,
    pub code_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub superseded_at: Option<DateTime<Utc>>,
    /// The claim the code belongs to; `None`: the first registration.
    pub claim_id: Option<i64>,
}

impl std::fmt::Debug for StoredCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCode")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A live code of an inbox, as an activation compares with it and an
/// issuer looks at it (`crate::accounts`, "a code proves the inbox").
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = activation_codes, check_for_backend(Pg))]
pub struct InboxCode {
    pub id: i64,
    /// The registrant it was issued for (the account, and the claim or
    /// `None` for the first registration).
    pub user_id: UserId,
    pub claim_id: Option<i64>,
    pub code_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    /// Replaced, for its own registrant, by a newer code of theirs.
    pub superseded_at: Option<DateTime<Utc>>,
    /// Its length; `None` only for codes from before codes had an inbox.
    pub digits: Option<i16>,
    pub shared: bool,
    /// A long code sealed, to be sent again (`crate::seal`).
    pub sealed: Option<Vec<u8>>,
}

impl InboxCode {
    /// How many digits it has.
    pub fn length(&self) -> usize {
        self.digits
            .map_or(0, |digits| usize::try_from(digits).unwrap_or(0))
    }

    /// Whether it was issued for the registrant `(user, claim)`.
    pub fn is_of(&self, user: UserId, claim: Option<i64>) -> bool {
        self.user_id == user && self.claim_id == claim
    }
}

impl std::fmt::Debug for InboxCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxCode")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("claim_id", &self.claim_id)
            .field("digits", &self.digits)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// A code to store.
#[derive(Insertable)]
#[diesel(table_name = activation_codes)]
pub struct NewCode<'a> {
    pub user_id: UserId,
    pub code_hash: &'a [u8],
    pub expires_at: DateTime<Utc>,
    pub claim_id: Option<i64>,
    /// The inbox it is emailed to (`address::Inboxes::of`).
    pub inbox: &'a str,
    pub digits: i16,
    pub sealed: Option<&'a [u8]>,
}

/// Takes the inbox's lock until the end of the transaction: issuers and
/// activations of one inbox take turns (after locking their account's row,
/// the order every workflow keeps). An advisory lock on a hash of the
/// inbox: two inboxes whose hashes collide only wait for each other.
pub async fn lock_inbox(conn: &mut AsyncPgConnection, inbox: &str) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(727275, hashtext($1))")
        .bind::<diesel::sql_types::Text, _>(inbox)
        .execute(conn)
        .await
        .map(drop)
}

/// Supersedes the live code of `user`'s registration or claim `claim`, if
/// any, but `keep`. Must run in the same transaction as the insert of the
/// new code: the partial unique index allows one live code per
/// registration or claim.
pub async fn supersede_live(
    conn: &mut AsyncPgConnection,
    user: UserId,
    claim: Option<i64>,
    keep: Option<i64>,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    let live = activation_codes::table
        .filter(activation_codes::user_id.eq(user))
        .filter(activation_codes::claim_id.is_not_distinct_from(claim))
        .filter(activation_codes::id.ne(keep.unwrap_or(0)))
        .filter(activation_codes::used_at.is_null())
        .filter(activation_codes::superseded_at.is_null());
    diesel::update(live)
        .set(activation_codes::superseded_at.eq(now))
        .execute(conn)
        .await
}

/// Stores a new live code; see [`supersede_live`] for what must come first.
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewCode<'_>) -> QueryResult<i64> {
    diesel::insert_into(activation_codes::table)
        .values(new)
        .returning(activation_codes::id)
        .get_result(conn)
        .await
}

/// The code of `user`'s registration or claim `claim` that is neither used
/// nor superseded (it may have expired): a code verifies only its own.
pub async fn find_live(
    conn: &mut AsyncPgConnection,
    user: UserId,
    claim: Option<i64>,
) -> QueryResult<Option<StoredCode>> {
    activation_codes::table
        .filter(activation_codes::user_id.eq(user))
        .filter(activation_codes::claim_id.is_not_distinct_from(claim))
        .filter(activation_codes::used_at.is_null())
        .filter(activation_codes::superseded_at.is_null())
        .select(StoredCode::as_select())
        .first(conn)
        .await
        .optional()
}

/// The codes of `inbox` that are neither used nor expired at `now`, oldest
/// first; superseded ones among them (they still prove the inbox to the
/// inbox's other registrants).
pub async fn live_in_inbox(
    conn: &mut AsyncPgConnection,
    inbox: &str,
    now: DateTime<Utc>,
) -> QueryResult<Vec<InboxCode>> {
    activation_codes::table
        .filter(activation_codes::inbox.eq(inbox))
        .filter(activation_codes::used_at.is_null())
        .filter(activation_codes::expires_at.gt(now))
        .order(activation_codes::id.asc())
        .select(InboxCode::as_select())
        .load(conn)
        .await
}

/// Marks code `id` sent to another registrant of its inbox, alive until
/// `expires_at` now (a code sent again lives its whole life from then).
pub async fn share(
    conn: &mut AsyncPgConnection,
    id: i64,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(activation_codes::table.find(id))
        .set((
            activation_codes::shared.eq(true),
            activation_codes::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Marks code `id` used; false when it was used meanwhile.
pub async fn mark_used(
    conn: &mut AsyncPgConnection,
    id: i64,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let updated = diesel::update(
        activation_codes::table
            .find(id)
            .filter(activation_codes::used_at.is_null()),
    )
    .set(activation_codes::used_at.eq(now))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Codes with no further use: used, expired (before the cutoff), or
/// superseded short ones (a short code is its own registrant's alone). A
/// superseded long code stays until it expires: it still proves the inbox
/// to the inbox's other registrants.
pub const SPENT: Purgeable = Purgeable {
    table: "activation_codes",
    condition: "used_at IS NOT NULL OR expires_at <= $1 \
                OR (superseded_at IS NOT NULL AND digits IS DISTINCT FROM 8)",
};
