//! The `users` table: one row per person, pending until activated. Looked
//! up by normalized address; inserted so that concurrent registrations of one
//! address yield one row; deleted by `purge` when never activated.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::address::Email;
use crate::db::Purgeable;
use crate::ids::UserId;
use crate::password::PasswordHash;
use crate::schema::users;

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
    /// When the account was registered, or registered afresh after its
    /// pending registration expired.
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    /// Failed activations spent of the lifetime budget.
    pub failed_activations: i32,
    /// The language of the account's emails; `None` (accounts older than
    /// it) means `DEFAULT_LOCALE`.
    pub locale: Option<String>,
    /// The claim (`crate::db::claims`) a sign-in proved, whose password,
    /// budget and language the fields above then are ([`User::as_claim`]);
    /// `None` (always, as read from the table): the first registration.
    #[diesel(select_expression = diesel::dsl::sql::<diesel::sql_types::Nullable<BigInt>>("NULL::bigint"))]
    #[diesel(select_expression_type = diesel::expression::SqlLiteral<diesel::sql_types::Nullable<BigInt>>)]
    pub claim: Option<i64>,
}

impl User {
    /// The pending account as `claim`'s claimant signs in to it: the
    /// claim's password hash, budget and language.
    pub fn as_claim(&self, claim: &crate::db::claims::Claim) -> User {
        User {
            password_hash: claim.password_hash.clone(),
            failed_activations: claim.failed_activations,
            locale: claim.locale.clone(),
            claim: Some(claim.id),
            ..self.clone()
        }
    }
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
        Email::stored(stored)
    }
}

/// A pending account to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub locale: &'a str,
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

/// Starts a pending registration afresh for its new owner: a new password
/// hash, their language, a new creation time and a full failure budget, only if it is still
/// pending and was created before `expired_before`. Compare-and-set, so of
/// several registrations racing for one expired address exactly one wins
/// (`Some`); the others see it renewed.
pub async fn restart_registration(
    conn: &mut AsyncPgConnection,
    id: UserId,
    password_hash: &PasswordHash,
    locale: &str,
    expired_before: DateTime<Utc>,
) -> QueryResult<Option<User>> {
    diesel::update(
        users::table
            .find(id)
            .filter(users::is_active.eq(false))
            .filter(users::created_at.lt(expired_before)),
    )
    .set((
        users::password_hash.eq(&password_hash.0),
        users::locale.eq(locale),
        users::created_at.eq(diesel::dsl::now),
        users::failed_activations.eq(0),
    ))
    .returning(User::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Spends one failed activation of a pending account's budget of `max`,
/// before its code is checked, so parallel guesses cannot overspend it; only
/// for the registration made at `registered_at` (one started afresh since
/// belongs to someone else). `None` when that did not happen; else the
/// count.
pub async fn spend_activation(
    conn: &mut AsyncPgConnection,
    id: UserId,
    registered_at: DateTime<Utc>,
    max: u32,
) -> QueryResult<Option<i32>> {
    diesel::update(
        users::table
            .find(id)
            .filter(users::created_at.eq(registered_at))
            .filter(users::is_active.eq(false))
            .filter(users::failed_activations.lt(i32::try_from(max).unwrap_or(i32::MAX))),
    )
    .set(users::failed_activations.eq(users::failed_activations + 1))
    .returning(users::failed_activations)
    .get_result(conn)
    .await
    .optional()
}

/// Gives an account its whole failure budget back; returns how many failed
/// activations had been spent of it.
pub async fn restore_activation_budget(
    conn: &mut AsyncPgConnection,
    id: UserId,
) -> QueryResult<u32> {
    #[derive(QueryableByName)]
    struct Spent {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        spent: i32,
    }
    // The old value, read under the row lock the update takes anyway.
    let spent: Option<Spent> = diesel::sql_query(
        "WITH old AS (SELECT failed_activations FROM users WHERE id = $1 FOR UPDATE) \
         UPDATE users SET failed_activations = 0 FROM old WHERE users.id = $1 \
         RETURNING old.failed_activations AS spent",
    )
    .bind::<BigInt, _>(id.0)
    .get_result(conn)
    .await
    .optional()?;
    Ok(spent.map_or(0, |row| u32::try_from(row.spent).unwrap_or(0)))
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

/// Gives the account claim `claim`'s password hash and language (the claim
/// won); false when the claim ended meanwhile.
pub async fn take_claim(conn: &mut AsyncPgConnection, id: UserId, claim: i64) -> QueryResult<bool> {
    let updated = diesel::sql_query(
        "UPDATE users SET password_hash = c.password_hash, locale = c.locale \
         FROM claims c WHERE users.id = $1 AND c.id = $2 AND c.user_id = users.id",
    )
    .bind::<BigInt, _>(id.0)
    .bind::<BigInt, _>(claim)
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Marks a pending user, registered at `registered_at`, active; false when
/// it was already active or registered afresh since.
pub async fn activate(
    mut conn: &AsyncPgConnection,
    id: UserId,
    registered_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let updated = diesel::update(
        users::table
            .find(id)
            .filter(users::created_at.eq(registered_at))
            .filter(users::is_active.eq(false)),
    )
    .set((users::is_active.eq(true), users::activated_at.eq(now)))
    .execute(&mut conn)
    .await?;
    Ok(updated == 1)
}

/// Accounts never activated, created before the cutoff (their codes and
/// emails go with them by cascade).
pub const STALE_PENDING: Purgeable = Purgeable {
    table: "users",
    condition: "NOT is_active AND created_at < $1",
};

/// Reads the user.
pub async fn find(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

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

/// Deletes the account `id` and, by the foreign keys' cascade, its codes
/// and its outbox messages (a queued email is then never sent). Returns
/// how many codes and messages went with it; `None` when there was no
/// such account.
pub async fn delete(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<(i64, i64)>> {
    use crate::schema::{activation_codes, email_outbox};
    let codes: i64 = activation_codes::table
        .filter(activation_codes::user_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    let emails: i64 = email_outbox::table
        .filter(email_outbox::user_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    let deleted = diesel::delete(users::table.find(id)).execute(conn).await?;
    Ok((deleted == 1).then_some((codes, emails)))
}
