//! The data layer: the connection pool, embedded migrations, and one module
//! per table with its model and queries. Used alike by the API, the
//! dispatcher and the CLI.

pub mod codes;
pub mod migrations;
pub mod outbox;
pub mod users;

use std::time::Duration;

use diesel::ConnectionResult;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;

use crate::settings::DatabaseSettings;

pub use diesel_async::AsyncPgConnection as Connection;

/// The pool of PostgreSQL connections shared by request handlers.
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;

/// A connection checked out of the [`Pool`].
pub type PooledConnection = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

/// How long a request waits for a free connection before it is answered 503.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// No statement of ours runs long; one that does is stuck on a lock or a
/// sick server, and is better cancelled than left holding a connection.
const STATEMENT_TIMEOUT_MS: u32 = 10_000;

/// Builds the pool. Connections are opened lazily, each with a statement
/// timeout.
pub fn pool(settings: &DatabaseSettings) -> Result<Pool, deadpool::managed::BuildError> {
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(|url| connect(url).boxed());
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(&settings.url, config);
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
}

/// Opens one connection outside the pool (the CLI, the dispatcher's
/// listener), with the same session settings as pooled ones.
pub async fn connect(url: &str) -> ConnectionResult<AsyncPgConnection> {
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(url))
        .await
        .map_err(|_| {
            diesel::ConnectionError::BadConnection(format!(
                "timed out after {}s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })??;
    diesel::sql_query(format!("SET statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        .execute(&mut conn)
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// The result of a `SELECT count(*) AS n ...` written in SQL.
#[derive(diesel::QueryableByName)]
pub struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub n: i64,
}

/// Answers whether PostgreSQL can run a query.
pub async fn ping(conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    diesel::sql_query("SELECT 1").execute(conn).await.map(drop)
}
