//! The Redis connection the limits use: one server, or a Redis Cluster.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::settings::RedisUrl;

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
}

impl RedisConnection {
    /// Connects to one server (lazily: a Redis that is down at start-up is
    /// reported by the first request and by `/health/check`, and reconnected
    /// when it is back) or, for several URLs, to a cluster.
    pub async fn connect(url: &RedisUrl) -> RedisResult<Self> {
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

/// Each command and each pipeline is a span of the trace it is sent in
/// (`redis EVALSHA`): its name, never its keys or arguments.
impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let sent = match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
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
        };
        traced(sent, || {
            crate::traces::spans::redis_pipeline(pipeline.len())
        })
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
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
