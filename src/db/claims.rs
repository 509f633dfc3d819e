//! The `claims` table: registrations made for an address while an earlier
//! one was pending, each with its own password hash (under the first
//! registration's salt), language and failure budget; the codes issued for
//! it are in `activation_codes`, with its id. The first registration is the
//! `users` row itself; see `crate::accounts` for how a claim wins. A claim
//! ends (the account was activated, or registered afresh) but is not
//! deleted until `purge`: codes it was sent may prove the inbox to others
//! until they expire.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::{Purgeable, outbox};
use crate::ids::UserId;
use crate::password::PasswordHash;
use crate::schema::claims;

/// A claim as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = claims, check_for_backend(Pg))]
pub struct Claim {
    pub id: i64,
    pub user_id: UserId,
    #[diesel(deserialize_as = String)]
    pub password_hash: PasswordHash,
    pub locale: Option<String>,
    pub created_at: DateTime<Utc>,
    pub failed_activations: i32,
    /// The client's site it came from (an IPv4 address, an IPv6 /48).
    pub network: String,
}

/// A claim to record.
#[derive(Debug, Insertable)]
#[diesel(table_name = claims)]
pub struct NewClaim<'a> {
    pub user_id: UserId,
    pub password_hash: &'a str,
    pub locale: &'a str,
    pub network: &'a str,
}

/// The live claims of `user`, oldest first.
pub async fn of_user(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<Vec<Claim>> {
    claims::table
        .filter(claims::user_id.eq(user))
        .filter(claims::ended_at.is_null())
        .order(claims::id.asc())
        .select(Claim::as_select())
        .load(conn)
        .await
}

/// Records a claim; returns it.
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewClaim<'_>) -> QueryResult<Claim> {
    diesel::insert_into(claims::table)
        .values(new)
        .returning(Claim::as_returning())
        .get_result(conn)
        .await
}

/// Ends every live claim of `user` (it was activated, or registered
/// afresh): their passwords open nothing now, and their emails still
/// queued expire. Their codes stay, for the inbox's other registrants,
/// until they expire.
pub async fn end_all(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<()> {
    let now = Utc::now();
    let ended = diesel::update(
        claims::table
            .filter(claims::user_id.eq(user))
            .filter(claims::ended_at.is_null()),
    )
    .set(claims::ended_at.eq(now))
    .returning(claims::id)
    .load(conn)
    .await?;
    expire_emails(conn, &ended).await
}

/// Ends the live claims of `user` made before `cutoff` (they expired with
/// the registration started afresh), as [`end_all`] does.
pub async fn end_made_before(
    conn: &mut AsyncPgConnection,
    user: UserId,
    cutoff: DateTime<Utc>,
) -> QueryResult<()> {
    let ended = diesel::update(
        claims::table
            .filter(claims::user_id.eq(user))
            .filter(claims::ended_at.is_null())
            .filter(claims::created_at.lt(cutoff)),
    )
    .set(claims::ended_at.eq(Utc::now()))
    .returning(claims::id)
    .load(conn)
    .await?;
    expire_emails(conn, &ended).await
}

/// The queued emails of claims just ended expire: their codes open nothing.
/// No statement when none ended (most activations: an address with no
/// claims).
async fn expire_emails(conn: &mut AsyncPgConnection, ended: &[i64]) -> QueryResult<()> {
    if ended.is_empty() {
        return Ok(());
    }
    outbox::supersede_claims(conn, ended, Utc::now())
        .await
        .map(drop)
}

/// Whether claim `id` is still live.
pub async fn exists(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        claims::table.find(id).filter(claims::ended_at.is_null()),
    ))
    .get_result(conn)
    .await
}

/// When claim `id` was made, if it is still live.
pub async fn made_at(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<DateTime<Utc>>> {
    claims::table
        .find(id)
        .filter(claims::ended_at.is_null())
        .select(claims::created_at)
        .get_result(conn)
        .await
        .optional()
}

/// Spends one failed activation of claim `id`'s budget of `max`, before
/// its code is checked; `None` when the claim has none left or ended.
pub async fn spend_activation(
    conn: &mut AsyncPgConnection,
    id: i64,
    max: u32,
) -> QueryResult<Option<i32>> {
    diesel::update(
        claims::table
            .find(id)
            .filter(claims::ended_at.is_null())
            .filter(claims::failed_activations.lt(i32::try_from(max).unwrap_or(i32::MAX))),
    )
    .set(claims::failed_activations.eq(claims::failed_activations + 1))
    .returning(claims::failed_activations)
    .get_result(conn)
    .await
    .optional()
}

/// Gives every claim of `user` its whole budget back; returns how many
/// failed activations they had spent.
pub async fn restore_activation_budgets(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> QueryResult<u32> {
    #[derive(QueryableByName)]
    struct Spent {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        spent: i32,
    }
    // The old values, read under the row locks the update takes anyway.
    let spent: Vec<Spent> = diesel::sql_query(
        "WITH old AS (SELECT id, failed_activations FROM claims \
         WHERE user_id = $1 AND ended_at IS NULL FOR UPDATE) \
         UPDATE claims SET failed_activations = 0 FROM old WHERE claims.id = old.id \
         RETURNING old.failed_activations AS spent",
    )
    .bind::<diesel::sql_types::BigInt, _>(user.0)
    .load(conn)
    .await?;
    Ok(spent
        .into_iter()
        .map(|row| u32::try_from(row.spent).unwrap_or(0))
        .sum())
}

/// Claims ended before the cutoff: whatever codes they were sent have long
/// expired (their codes go with them by cascade).
pub const ENDED: Purgeable = Purgeable {
    table: "claims",
    condition: "ended_at < $1",
};
