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

/// A code to store.
#[derive(Insertable)]
#[diesel(table_name = activation_codes)]
pub struct NewCode<'a> {
    pub user_id: UserId,
    pub code_hash: &'a [u8],
    pub expires_at: DateTime<Utc>,
    pub claim_id: Option<i64>,
}

/// Supersedes the live code of `user`'s registration or claim `claim`, if
/// any. Must run in the same transaction as the insert of the new code: the
/// partial unique index allows one live code per registration or claim.
pub async fn supersede_live(
    conn: &mut AsyncPgConnection,
    user: UserId,
    claim: Option<i64>,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    let live = activation_codes::table
        .filter(activation_codes::user_id.eq(user))
        .filter(activation_codes::claim_id.is_not_distinct_from(claim))
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

/// Marks a live code used; false when it was used or superseded meanwhile.
pub async fn mark_used(
    conn: &mut AsyncPgConnection,
    id: i64,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let updated = diesel::update(
        activation_codes::table
            .find(id)
            .filter(activation_codes::used_at.is_null())
            .filter(activation_codes::superseded_at.is_null()),
    )
    .set(activation_codes::used_at.eq(now))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Codes with no further use: used, superseded, or expired (before the
/// cutoff).
pub const SPENT: Purgeable = Purgeable {
    table: "activation_codes",
    condition: "used_at IS NOT NULL OR superseded_at IS NOT NULL OR expires_at <= $1",
};
