//! The `users` table: one row per person, pending until activated. Looked
//! up by normalized address; inserted so that concurrent registrations of one
//! address yield one row; deleted by `purge` when never activated.

use chrono::{DateTime, Utc};
use diesel::deserialize::{FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{Output, ToSql};
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::address::Email;
use crate::db::Purgeable;
use crate::password::PasswordHash;
use crate::schema::users;

/// A user's primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = BigInt)]
pub struct UserId(pub i64);

impl ToSql<BigInt, Pg> for UserId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> diesel::serialize::Result {
        <i64 as ToSql<BigInt, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<BigInt, Pg> for UserId {
    fn from_sql(bytes: PgValue<'_>) -> diesel::deserialize::Result<Self> {
        <i64 as FromSql<BigInt, Pg>>::from_sql(bytes).map(UserId)
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An account as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Pg))]
pub struct User {
    pub id: UserId,
    #[diesel(deserialize_as = String)]
    pub email: Email,
    #[diesel(deserialize_as = String)]
    pub password_hash: PasswordHash,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
}

impl From<String> for PasswordHash {
    fn from(hash: String) -> Self {
        Self(hash)
    }
}

/// A stored address is already normalized: the table's CHECK constraint
/// refuses any other.
impl From<String> for Email {
    fn from(stored: String) -> Self {
        Email::canonical(&stored)
    }
}

/// A pending account to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
}

/// The account stored under the normalized `email`, if any.
pub async fn find_by_email(
    conn: &mut AsyncPgConnection,
    email: &Email,
) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email.eq(email.as_str()))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Inserts the user unless the address is taken; `None` means it was. The
/// unique constraint decides, so concurrent registrations of one address
/// produce exactly one row.
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewUser<'_>) -> QueryResult<Option<User>> {
    diesel::insert_into(users::table)
        .values(new)
        .on_conflict(users::email)
        .do_nothing()
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Replaces the user's password hash with `new`, unless it changed since it
/// was `old` (a concurrent rehash, a password change). Returns whether it
/// replaced it.
pub async fn replace_password_hash(
    conn: &mut AsyncPgConnection,
    id: UserId,
    old: &PasswordHash,
    new: &PasswordHash,
) -> QueryResult<bool> {
    let updated = diesel::update(
        users::table
            .find(id)
            .filter(users::password_hash.eq(&old.0)),
    )
    .set(users::password_hash.eq(&new.0))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Marks a pending user active; false when the user was already active.
pub async fn activate(
    conn: &mut AsyncPgConnection,
    id: UserId,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let updated = diesel::update(users::table.find(id).filter(users::is_active.eq(false)))
        .set((users::is_active.eq(true), users::activated_at.eq(now)))
        .execute(conn)
        .await?;
    Ok(updated == 1)
}

/// Accounts never activated, created before the cutoff (their codes and
/// emails go with them by cascade).
pub const STALE_PENDING: Purgeable = Purgeable {
    table: "users",
    condition: "NOT is_active AND created_at < $1",
};

/// Reads the user and locks its row until the end of the transaction.
pub async fn lock(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .for_update()
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}
