//! The data layer: the connection pool, embedded migrations, and one module
//! per table with its model and queries. Used alike by the API, the
//! dispatcher and the CLI.

pub mod activation_codes;
pub mod claims;
pub mod migrations;
pub mod outbox;
pub mod secret_key_uses;
pub mod service_keys;
pub mod users;

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Timestamptz};
use diesel::{ConnectionResult, QueryResult};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;

use crate::settings::DatabaseSettings;

/// The pool of PostgreSQL connections shared by request handlers.
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;

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
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Rows of one table that `purge` deletes: those matching `condition`, an
/// SQL predicate in which `$1` is the cutoff time.
pub struct Purgeable {
    pub table: &'static str,
    pub condition: &'static str,
}

impl Purgeable {
    /// Deletes every matching row, `batch` rows per statement, each its own
    /// short transaction, so a busy `serve` never waits long on its locks.
    /// `FOR UPDATE SKIP LOCKED`: rows another purge (or a request) holds are
    /// left for later rather than waited for, so purges running at once
    /// share the work instead of queueing. Returns how many it deleted.
    pub async fn delete(
        &self,
        conn: &mut AsyncPgConnection,
        cutoff: DateTime<Utc>,
        batch: i64,
    ) -> QueryResult<u64> {
        let Self { table, condition } = self;
        let statement = format!(
            "DELETE FROM {table} WHERE id IN \
             (SELECT id FROM {table} WHERE {condition} LIMIT $2 FOR UPDATE SKIP LOCKED)"
        );
        let mut total = 0;
        loop {
            let deleted = diesel::sql_query(&statement)
                .bind::<Timestamptz, _>(cutoff)
                .bind::<BigInt, _>(batch)
                .execute(conn)
                .await?;
            total += deleted as u64;
            if i64::try_from(deleted).unwrap_or(i64::MAX) < batch {
                return Ok(total);
            }
        }
    }

    /// How many rows [`Purgeable::delete`] would delete now.
    pub async fn count(
        &self,
        conn: &mut AsyncPgConnection,
        cutoff: DateTime<Utc>,
    ) -> QueryResult<u64> {
        let Self { table, condition } = self;
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM {table} WHERE {condition}"
        ))
        .bind::<Timestamptz, _>(cutoff)
        .get_result::<Count>(conn)
        .await
        .map(|count| count.n.unsigned_abs())
    }
}

/// The SQLSTATE PostgreSQL gave `err`, if it came from the server.
pub fn sqlstate(err: &diesel::result::Error) -> Option<diesel::result::SqlState> {
    match err {
        diesel::result::Error::DatabaseError(_, info) => info.sqlstate(),
        _ => None,
    }
}

/// Whether `err` means the connection is gone (or the server too sick to
/// answer), as opposed to a problem with one statement. Read from the
/// SQLSTATE, never from the message, which `lc_messages` may translate.
pub fn is_connection_error(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | Error::BrokenTransactionManager => true,
        Error::DatabaseError(..) => sqlstate(err).is_some_and(|state| {
            matches!(
                state.as_str(),
                // A server going down, crashed, or not taking connections
                // yet (starting, in recovery).
                "57P01" | "57P02" | "57P03"
                // A statement cancelled: statement_timeout, a lock timeout,
                // an administrator: a sick database.
                | "57014"
                // A primary demoted in a failover, reached before the
                // connection is replaced.
                | "25006"
            ) || state.class().as_str() == "08"
        }),
        _ => false,
    }
}

/// Whether PostgreSQL aborted a transaction that may simply run again, by
/// its SQLSTATE (never its message, which `lc_messages` may translate): a
/// serialization failure (40001) or a deadlock (40P01, which one lock order
/// everywhere should prevent; this is the safety net).
pub fn is_retryable(err: &diesel::result::Error) -> bool {
    sqlstate(err).is_some_and(|state| matches!(state.as_str(), "40001" | "40P01"))
}

/// Answers whether PostgreSQL can run a query.
pub async fn ping(conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    diesel::sql_query("SELECT 1").execute(conn).await.map(drop)
}

/// What threatens a failover that `url` expects, said for an operator
/// (`config check`): for a URL naming several hosts, a connection that
/// reached a standby, a primary with no standby connected, a primary whose
/// commits wait for a synchronous standby that is not there, a standby
/// replaying more than [`REPLAY_LAG_LIMIT_SECONDS`] behind. Nothing for a
/// URL of one host. Must not be called on a Tokio worker.
pub fn replication_problems(conn: &mut migrations::MigrationConnection, url: &str) -> Vec<String> {
    use diesel::sql_types::{Bool, Double, Nullable, Text};

    #[derive(diesel::QueryableByName)]
    struct Server {
        #[diesel(sql_type = Bool)]
        standby: bool,
        #[diesel(sql_type = Text)]
        synchronous_names: String,
    }
    #[derive(diesel::QueryableByName)]
    struct Standby {
        #[diesel(sql_type = Nullable<Text>)]
        name: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        sync_state: Option<String>,
        #[diesel(sql_type = Nullable<Double>)]
        lag: Option<f64>,
    }

    if hosts(url) < 2 {
        return Vec::new();
    }
    // The migration harness's connection is synchronous: diesel's own
    // RunQueryDsl, not diesel_async's.
    let server = diesel::RunQueryDsl::get_result::<Server>(
        diesel::sql_query(
            "SELECT pg_is_in_recovery() AS standby, \
             current_setting('synchronous_standby_names') AS synchronous_names",
        ),
        conn,
    );
    let Ok(server) = server else {
        return Vec::new();
    };
    if server.standby {
        return vec![
            "DATABASE_URL reaches a standby (read-only): add target_session_attrs=read-write"
                .to_owned(),
        ];
    }
    // Without pg_read_all_stats the rows are there, their columns NULL:
    // only what can be seen is judged.
    let Ok(standbys) = diesel::RunQueryDsl::load::<Standby>(
        diesel::sql_query(
            "SELECT application_name AS name, sync_state, \
             EXTRACT(EPOCH FROM replay_lag)::float8 AS lag FROM pg_stat_replication",
        ),
        conn,
    ) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    if standbys.is_empty() {
        problems.push(format!(
            "DATABASE_URL names {} hosts but the primary has no standby connected: a failover has nowhere to go",
            hosts(url)
        ));
    }
    let synchronous = standbys
        .iter()
        .any(|standby| matches!(standby.sync_state.as_deref(), Some("sync" | "quorum")));
    // Standbys whose state this user may not see are not judged.
    let hidden =
        !standbys.is_empty() && standbys.iter().all(|standby| standby.sync_state.is_none());
    let commits_wait = !server.synchronous_names.trim().is_empty() && !synchronous && !hidden;
    if commits_wait {
        problems.push(
            "the primary's synchronous_standby_names names no connected standby: every commit waits for one"
                .to_owned(),
        );
    }
    for standby in &standbys {
        if let Some(lag) = standby.lag.filter(|lag| *lag > REPLAY_LAG_LIMIT_SECONDS) {
            problems.push(format!(
                "standby {:?} replays {lag:.0} s behind the primary",
                standby.name.as_deref().unwrap_or("?")
            ));
        }
    }
    problems
}

/// A standby further behind than this is reported.
pub const REPLAY_LAG_LIMIT_SECONDS: f64 = 10.0;

/// How many hosts a libpq-style URL names (`h1:5432,h2:5432`).
fn hosts(url: &str) -> usize {
    let after = url.split_once("://").map_or(url, |(_, after)| after);
    let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    hosts.split(',').count()
}
