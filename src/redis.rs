//! The Redis connection the limits use: one server, a Redis Cluster, or the
//! primary a set of Sentinels names.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError, RedisFuture,
    RedisResult, ServerErrorKind, Value,
};

use crate::settings::{RedisUrl, SentinelUrl};

/// How long one Redis command may take: the limits fail closed, and a request
/// should learn that quickly rather than hang.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to one Redis server or to a Redis Cluster. Cheap to clone;
/// clones share the underlying multiplexed connection.
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
    Sentinel(SentinelConnection),
}

impl RedisConnection {
    /// Connects to one server (lazily: a Redis that is down at start-up is
    /// reported by the first request and by `/health/check`, and reconnected
    /// when it is back) or, for several URLs, to a cluster.
    pub async fn connect(url: &RedisUrl) -> RedisResult<Self> {
        if let Some(sentinel) = url.sentinel() {
            return Ok(Self::Sentinel(SentinelConnection::new(&sentinel)?));
        }
        match url.0.as_slice() {
            [single] => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let client = redis::Client::open(single.as_str())?;
                Ok(Self::Single(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
            nodes => {
                let client =
                    redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
                        .connection_timeout(CONNECT_TIMEOUT)
                        .response_timeout(RESPONSE_TIMEOUT)
                        .retries(1)
                        .build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// Answers whether Redis responds.
    pub async fn ping(&self) -> RedisResult<()> {
        let mut conn = self.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
    }
}

/// What keeps Redis from serving the limits, said for an operator
/// (`config check`): for Sentinels, that none answers, that they name no
/// primary of that name, or that the server they name is a replica; for a
/// Cluster, slots no node serves; for one server, that it is a replica.
/// `None` when none of these is seen (a PING may still fail: the caller
/// tries one).
pub async fn diagnose(url: &RedisUrl) -> Option<String> {
    if let Some(sentinel) = url.sentinel() {
        return diagnose_sentinels(&sentinel).await;
    }
    match url.0.as_slice() {
        [single] => {
            let mut conn = open(single).await.ok()?;
            match redis::cmd("ROLE")
                .query_async::<redis::Role>(&mut conn)
                .await
            {
                Ok(redis::Role::Replica { .. }) => Some(
                    "REDIS_URL names a replica, which refuses writes (read-only); name the primary"
                        .to_owned(),
                ),
                _ => None,
            }
        }
        nodes => {
            for node in nodes {
                let Ok(mut conn) = open(node).await else {
                    continue;
                };
                let Ok(info) = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async::<String>(&mut conn)
                    .await
                else {
                    continue;
                };
                let field = |name: &str| {
                    info.lines()
                        .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
                        .map(str::to_owned)
                };
                let served = field("cluster_slots_ok").and_then(|n| n.parse::<u32>().ok());
                let state = field("cluster_state").unwrap_or_default();
                return match served {
                    Some(served) if served < 16384 => Some(format!(
                        "the Redis Cluster leaves {} of 16384 slots unserved (cluster_state:{state}): keys in them cannot be counted",
                        16384 - served
                    )),
                    _ if state != "ok" => {
                        Some(format!("the Redis Cluster reports cluster_state:{state}"))
                    }
                    _ => None,
                };
            }
            Some("no node of the Redis Cluster in REDIS_URL answers".to_owned())
        }
    }
}

async fn diagnose_sentinels(url: &SentinelUrl) -> Option<String> {
    let list = |hosts: &[(String, u16)]| {
        hosts
            .iter()
            .map(|(host, port)| address(host, *port))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut answering = 0;
    let mut named = Vec::new();
    for (host, port) in &url.sentinels {
        let node = node_url(
            host,
            *port,
            url.sentinel_username.as_deref(),
            url.sentinel_password.as_deref(),
            0,
        );
        let Ok(mut conn) = open(&node).await else {
            continue;
        };
        let answer = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&url.primary)
            .query_async::<Option<(String, u16)>>(&mut conn)
            .await;
        if let Ok(primary) = answer {
            answering += 1;
            named.extend(primary);
        }
    }
    if answering == 0 {
        return Some(format!(
            "no Sentinel in REDIS_URL answers ({})",
            list(&url.sentinels)
        ));
    }
    // The address most Sentinels name.
    named.sort();
    let Some(primary) = named
        .chunk_by(|a, b| a == b)
        .max_by_key(|same| same.len())
        .map(|same| same[0].clone())
    else {
        return Some(format!(
            "the Sentinels ({answering} of {} answering) know no primary named {:?}",
            url.sentinels.len(),
            url.primary
        ));
    };
    let (host, port) = &primary;
    let shown = address(host, *port);
    let node = node_url(
        host,
        *port,
        url.username.as_deref(),
        url.password.as_deref(),
        url.db,
    );
    let mut conn = match open(&node).await {
        Ok(conn) => conn,
        Err(err) => {
            return Some(format!(
                "the primary the Sentinels name for {:?} ({shown}) cannot be used: {err}",
                url.primary
            ));
        }
    };
    match redis::cmd("ROLE")
        .query_async::<redis::Role>(&mut conn)
        .await
    {
        Ok(redis::Role::Primary { .. }) => None,
        Ok(_) => Some(format!(
            "the server the Sentinels name as primary {:?} ({shown}) is a replica (read-only)",
            url.primary
        )),
        Err(err) => Some(format!(
            "the primary the Sentinels name for {:?} ({shown}) does not answer ROLE: {err}",
            url.primary
        )),
    }
}

fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The URL of one node with these credentials, each part encoded.
fn node_url(
    host: &str,
    port: u16,
    username: Option<&str>,
    password: Option<&str>,
    db: i64,
) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let user = match (username, password) {
        (None, None) => String::new(),
        (username, password) => format!(
            "{}{}@",
            utf8_percent_encode(username.unwrap_or_default(), NON_ALPHANUMERIC),
            password
                .map(|password| format!(":{}", utf8_percent_encode(password, NON_ALPHANUMERIC)))
                .unwrap_or_default()
        ),
    };
    format!("redis://{user}{}/{db}", address(host, port))
}

/// One connection to one node, for a question or two.
async fn open(url: &str) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Each command and each pipeline is a span of the trace it is sent in
/// (`redis EVALSHA`): its name, never its keys or arguments.
impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let sent = match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
            Self::Sentinel(conn) => conn.req_packed_command(cmd),
        };
        traced(sent, || crate::traces::spans::redis(command_name(cmd)))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let sent = match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(conn) => conn.req_packed_commands(pipeline, offset, count),
        };
        traced(sent, || {
            crate::traces::spans::redis_pipeline(pipeline.len())
        })
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
            Self::Sentinel(conn) => conn.db,
        }
    }
}

/// `sent` inside the span `span` makes, unless nobody listens (traces off):
/// then as it is, without another allocation.
fn traced<'a, T: Send + 'a>(
    sent: RedisFuture<'a, T>,
    span: impl FnOnce() -> tracing::Span,
) -> RedisFuture<'a, T> {
    use tracing::Instrument;
    let span = span();
    if span.is_disabled() {
        sent
    } else {
        Box::pin(sent.instrument(span))
    }
}

/// A command's name (its first word, `EVALSHA`), as Redis spells its
/// commands; anything else (never seen) is `?`.
fn command_name(cmd: &Cmd) -> &str {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name))
            if !name.is_empty() && name.iter().all(u8::is_ascii_alphabetic) =>
        {
            std::str::from_utf8(name).unwrap_or("?")
        }
        _ => "?",
    }
}

/// The primary that a set of Sentinels names, kept current: the first
/// command asks the Sentinels where it is (lazily, as for one server: no
/// primary at start-up is a 503 per request, not a refusal to start), and a
/// command that fails because the connection broke or the server has become
/// a replica (`READONLY`) drops the connection, so the next command asks
/// again and follows a failover. The failing command itself is not retried:
/// a Lua script may have run before the connection broke, and the limits
/// fail closed (503) rather than count twice.
#[derive(Clone)]
pub struct SentinelConnection {
    inner: Arc<SentinelInner>,
    db: i64,
}

struct SentinelInner {
    /// Asks the Sentinels; one lookup at a time.
    client: tokio::sync::Mutex<SentinelClient>,
    /// The connection to the primary, with its generation; or the time and
    /// error of the last failed lookup, answered again for a moment rather
    /// than asking the Sentinels for every request while none is known.
    state: StdMutex<PrimaryState>,
    /// Numbers each connection, so an error on an old one never drops
    /// its successor.
    generations: AtomicU64,
    config: AsyncConnectionConfig,
}

enum PrimaryState {
    Unknown,
    Connected(u64, MultiplexedConnection),
    Failed(Instant, RedisError),
}

/// How long a failed lookup is answered again before the Sentinels are
/// asked anew.
const LOOKUP_BACKOFF: Duration = Duration::from_millis(250);
/// How long asking the Sentinels and connecting to the primary may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

impl SentinelConnection {
    fn new(url: &SentinelUrl) -> RedisResult<Self> {
        let sentinels = url
            .sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder =
            SentinelClientBuilder::new(sentinels, &url.primary, SentinelServerType::Master)?;
        if let Some(username) = &url.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &url.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if url.db != 0 {
            builder = builder.set_client_to_redis_db(url.db);
        }
        if let Some(username) = &url.sentinel_username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = &url.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        Ok(Self {
            inner: Arc::new(SentinelInner {
                client: tokio::sync::Mutex::new(builder.build()?),
                state: StdMutex::new(PrimaryState::Unknown),
                generations: AtomicU64::new(0),
                config: AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT)),
            }),
            db: url.db,
        })
    }

    /// The current connection to the primary, asking the Sentinels when
    /// there is none.
    async fn primary(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(found) = self.known()? {
            return Ok(found);
        }
        let mut client = self.inner.client.lock().await;
        // Another command may have found it while this one waited.
        if let Some(found) = self.known()? {
            return Ok(found);
        }
        let lookup = async {
            let client = client.async_get_client().await?;
            client
                .get_multiplexed_async_connection_with_config(&self.inner.config)
                .await
        };
        let result = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from((
                ErrorKind::Io,
                "the Sentinels or the primary they name did not answer in time",
            ))),
        };
        let mut state = self.lock_state();
        match result {
            Ok(conn) => {
                let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(
                    generation,
                    "connected to the Redis primary the Sentinels name"
                );
                *state = PrimaryState::Connected(generation, conn.clone());
                Ok((generation, conn))
            }
            Err(err) => {
                *state = PrimaryState::Failed(Instant::now(), err.clone());
                Err(err)
            }
        }
    }

    /// The connection if one is known; the last lookup's error while it is
    /// recent.
    fn known(&self) -> RedisResult<Option<(u64, MultiplexedConnection)>> {
        match &*self.lock_state() {
            PrimaryState::Connected(generation, conn) => Ok(Some((*generation, conn.clone()))),
            PrimaryState::Failed(at, err) if at.elapsed() < LOOKUP_BACKOFF => Err(err.clone()),
            PrimaryState::Failed(..) | PrimaryState::Unknown => Ok(None),
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, PrimaryState> {
        // The state is replaced whole: a panic elsewhere cannot leave it
        // half-written.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After `err` on the connection of `generation`: forget that
    /// connection if the error says it no longer reaches a primary.
    fn after_error(&self, generation: u64, err: &RedisError) {
        let stale = err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_unrecoverable_error()
            || err.is_timeout()
            || matches!(
                err.kind(),
                ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
            );
        if !stale {
            return;
        }
        let mut state = self.lock_state();
        if matches!(&*state, PrimaryState::Connected(current, _) if *current == generation) {
            tracing::warn!(error = %err, "Redis primary lost; asking the Sentinels again");
            *state = PrimaryState::Unknown;
        }
    }

    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.primary().await?;
            let result = conn.req_packed_command(cmd).await;
            if let Err(err) = &result {
                self.after_error(generation, err);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.primary().await?;
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(err) = &result {
                self.after_error(generation, err);
            }
            result
        })
    }
}

/// How Redis keys are named: never after the address, inbox or client they
/// count, but after a keyed hash of it (HMAC-SHA256 under the service's
/// own naming key, `db::service_keys`), so a Redis dump names nobody and
/// an erased account leaves nothing in Redis that names it. The naming key
/// outlives `SECRET_KEY` rotations (it is sealed under it, re-sealed when
/// rotated), so a rotation resets no counter.
///
/// Each key carries its subject's hash as a Redis Cluster hash tag, so the
/// keys one script touches live in one slot.
#[derive(Clone)]
pub struct KeyNames {
    mac: hmac::Hmac<sha2::Sha256>,
}

impl KeyNames {
    pub fn new(key: &[u8; 32]) -> Self {
        use hmac::Mac;
        Self {
            mac: <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length")),
        }
    }

    /// 128 bits of the keyed hash of `subject` of `kind`, in hex.
    fn hash(&self, kind: &str, subject: &str) -> String {
        use hmac::Mac;
        let mut mac = self.mac.clone();
        // A kind holds no NUL: it separates the two unambiguously.
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(subject.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The key `name` of the normalized address `address`.
    pub fn address(&self, address: &str, name: &str) -> String {
        format!("activator:{{a:{}}}:{name}", self.hash("address", address))
    }

    /// The key `name` of the inbox `inbox` (`address::Inboxes::of`).
    pub fn inbox(&self, inbox: &str, name: &str) -> String {
        format!("activator:{{i:{}}}:{name}", self.hash("inbox", inbox))
    }

    /// The key `name` of the client network `client` (an IPv4 address, an
    /// IPv6 prefix, as `ClientIp` names it).
    pub fn client(&self, client: &str, name: &str) -> String {
        format!("activator:{{c:{}}}:{name}", self.client_field(client))
    }

    /// A client network as a field of a hash (the networks sharing a
    /// budget), named as its keys are; `-` (an exempt client, the CLI) as
    /// itself.
    pub fn client_field(&self, client: &str) -> String {
        if client == "-" {
            return client.to_owned();
        }
        self.hash("client", client)
    }
}

impl std::fmt::Debug for KeyNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyNames(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_named_by_its_first_word_only() {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg("0123abcd").arg(1).arg("activator:{a:hash}:key");
        assert_eq!(command_name(&cmd), "EVALSHA");
        assert_eq!(command_name(&redis::cmd("PING")), "PING");
        assert_eq!(command_name(&redis::cmd("weird name")), "?");
    }

    #[test]
    fn names_carry_no_subject_and_differ_by_kind_and_key() {
        let names = KeyNames::new(&[7; 32]);
        let key = names.address("ada@example.com", "auth:failures");
        assert!(!key.contains("ada") && !key.contains("example"), "{key}");
        assert!(key.starts_with("activator:{a:") && key.ends_with("}:auth:failures"));
        assert_ne!(
            names.address("ada@example.com", "x"),
            names.inbox("ada@example.com", "x")
        );
        assert_ne!(
            names.address("ada@example.com", "x"),
            KeyNames::new(&[8; 32]).address("ada@example.com", "x")
        );
        assert_eq!(
            names.address("ada@example.com", "x"),
            names.address("ada@example.com", "x")
        );
        let client = names.client("192.0.2.7", "register");
        assert!(!client.contains("192.0.2"), "{client}");
        assert_eq!(names.client_field("-"), "-");
    }

    #[test]
    fn the_keys_of_one_subject_share_one_cluster_hash_tag() {
        let names = KeyNames::new(&[7; 32]);
        let tag = |key: &str| {
            let open = key.find('{').unwrap();
            let close = open + key[open..].find('}').unwrap();
            key[open + 1..close].to_owned()
        };
        // An address with braces of its own cannot break the tag: only its
        // hash is in the key.
        let odd = "}weird%{@example.com";
        assert_eq!(
            tag(&names.address(odd, "activation:lock")),
            tag(&names.address(odd, "auth:failures"))
        );
        assert_eq!(tag(&names.address(odd, "x")).len(), 2 + 32);
    }
}
