//! Embedded migrations (the `migrations/` folder is compiled into the binary).
//!
//! Diesel's migration harness is synchronous. It runs here on an
//! `AsyncConnectionWrapper`, which drives the async connection with its own
//! small runtime, so callers inside Tokio must use `spawn_blocking`.

use diesel::migration::MigrationVersion;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A synchronous connection for the migration harness.
pub type MigrationConnection = AsyncConnectionWrapper<AsyncPgConnection>;

/// One migration and whether it has been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The migration's folder name, e.g. `2026-11-24-000001_create_users`.
    pub name: String,
    pub applied: bool,
}

/// Opens a connection for migrating. Must not be called on a Tokio worker.
pub fn connect(url: &str) -> Result<MigrationConnection, diesel::ConnectionError> {
    <MigrationConnection as diesel::Connection>::establish(url)
}

/// Applies every pending migration; returns the versions applied.
pub fn run_pending(conn: &mut MigrationConnection) -> Result<Vec<String>, BoxError> {
    let applied = conn.run_pending_migrations(MIGRATIONS)?;
    Ok(applied.iter().map(ToString::to_string).collect())
}

/// Reverts the most recent migration; returns its version.
pub fn revert_last(conn: &mut MigrationConnection) -> Result<String, BoxError> {
    Ok(conn.revert_last_migration(MIGRATIONS)?.to_string())
}

/// Every embedded migration, oldest first, with whether it is applied.
pub fn status(conn: &mut MigrationConnection) -> Result<Vec<Migration>, BoxError> {
    let applied: Vec<MigrationVersion> = conn.applied_migrations()?;
    let mut all: Vec<Migration> =
        diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)?
            .iter()
            .map(|migration| {
                let name = migration.name();
                Migration {
                    name: name.to_string(),
                    applied: applied.contains(&name.version()),
                }
            })
            .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// Names of the migrations embedded in this binary that the database has not applied.
pub fn pending(conn: &mut MigrationConnection) -> Result<Vec<String>, BoxError> {
    Ok(status(conn)?
        .into_iter()
        .filter(|migration| !migration.applied)
        .map(|migration| migration.name)
        .collect())
}
