//! The `secret_key_uses` table: when each key (`SECRET_KEY` or one of
//! `SECRET_KEY_FALLBACKS`, by fingerprint) last verified a code or opened a
//! sealed value, as `serve` records it, so that `config check` can say when
//! a fallback was last needed.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::secret_key_uses;

/// Records that the key `fingerprint` was used at `at` (a later use kept).
pub async fn record(
    conn: &mut AsyncPgConnection,
    fingerprint: &str,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(secret_key_uses::table)
        .values((
            secret_key_uses::fingerprint.eq(fingerprint),
            secret_key_uses::last_used_at.eq(at),
        ))
        .on_conflict(secret_key_uses::fingerprint)
        .do_update()
        .set(
            secret_key_uses::last_used_at.eq(diesel::dsl::sql::<diesel::sql_types::Timestamptz>(
                "GREATEST(secret_key_uses.last_used_at, excluded.last_used_at)",
            )),
        )
        .execute(conn)
        .await
        .map(drop)
}

/// When the key `fingerprint` was last used, if ever recorded.
pub async fn last_used(
    conn: &mut AsyncPgConnection,
    fingerprint: &str,
) -> QueryResult<Option<DateTime<Utc>>> {
    secret_key_uses::table
        .find(fingerprint)
        .select(secret_key_uses::last_used_at)
        .first(conn)
        .await
        .optional()
}
