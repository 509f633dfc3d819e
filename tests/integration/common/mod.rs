//! The test harness: real PostgreSQL and Redis (from `DATABASE_URL` and
//! `REDIS_URL`, as `scripts/test.sh` exports them), one database per test
//! cloned from a migrated template so tests run in parallel, the app built
//! exactly as `serve` builds it, the real binary, and a real HTTP endpoint
//! standing in for the email API.

pub mod api;
pub mod cli;
pub mod email;
pub mod mail_sink;
pub mod otlp_receiver;
pub mod sentinel;
pub mod server;
pub mod smtp_sink;
pub mod webhook_receiver;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use activator::db;
use activator::ids::UserId;
use activator::locale::Locales;
use activator::mail::courier::{Courier, Tally};
use activator::mail::dispatcher::deliver_due;
use activator::mail::templates::Templates;
use activator::seal::{Payload, Sealer};
use activator::settings::Settings;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rocket::http::{Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use serde_json::Value;

pub use api::{Api, Call};
pub use mail_sink::MailSink;
pub use server::Server;

/// A password that satisfies the policy.
pub const PASSWORD: &str = "Secr3t!pass";
pub const SECRET_KEY: &str = "integration-test-secret-key-0123456789";

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which starts PostgreSQL and Redis")
    })
}

/// The server's maintenance database URL, derived from `DATABASE_URL`.
pub fn admin_url() -> String {
    with_database(&required_env("DATABASE_URL"), "postgres")
}

pub fn redis_url() -> String {
    required_env("REDIS_URL")
}

/// `url` with its database name replaced.
/// A connection to the tests' Redis.
pub fn redis_connection() -> redis::Connection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// How the service on `db` names its Redis keys (the naming key is made
/// on first use and kept in `db`, so each test database has its own).
pub async fn key_names(db: &TestDb) -> activator::redis::KeyNames {
    let pool = activator::db::pool(&activator::settings::DatabaseSettings {
        url: db.url.clone(),
        pool_size: 1,
    })
    .unwrap();
    activator::accounts::key_names(&pool, &sealer())
        .await
        .unwrap()
}

/// The Redis keys the service on `db` holds for the address `email`.
pub async fn redis_keys_of(db: &TestDb, email: &str) -> Vec<String> {
    let tag = key_names(db).await.address(email, "");
    redis::cmd("KEYS")
        .arg(format!("{tag}*"))
        .query(&mut redis_connection())
        .unwrap()
}

pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let Some(slash) = base
        .rfind('/')
        .filter(|&i| i > base.find("://").unwrap() + 2)
    else {
        return format!("{base}/{name}{query}");
    };
    format!("{}/{name}{query}", &base[..slash])
}

/// A unique email address for one test.
pub fn unique_email(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label}.{}.{n}.{nanos}@example.com", std::process::id())
}

/// A client address no other test (or earlier run: Redis keeps per-IP
/// counters for their window) uses: in the IPv6 documentation prefix.
pub fn unique_ip() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // Each in a /48 of its own (the hash queue's share), and a /64 no other
    // test process uses (the counted client).
    format!(
        "2001:db8:{:x}:{:x}:{:x}:{:x}::1",
        n & 0xffff,
        std::process::id() & 0xffff,
        (nanos >> 16) & 0xffff,
        nanos & 0xffff
    )
}

/// The IPv4 client number `n` (10.0.0.0/8). Each test database names its
/// Redis keys with a key of its own, so clients of one test never share
/// counters with another's.
pub fn ipv4(n: u32) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

/// A client in the IPv6 /64 `m` of the /48 `n` (documentation prefix):
/// one site (the hash queue's and the email passes' unit) per `n`, one
/// counted network per `(n, m)`.
pub fn ipv6(n: u32, m: u32) -> String {
    format!("2001:db8:{:x}:{:x}::7", n & 0xffff, m & 0xffff)
}

/// A fingerprint of `migrations/`: a changed schema gets a new template.
fn migrations_fingerprint() -> String {
    use sha2::{Digest, Sha256};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = walk(&root);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(
            file.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.update(std::fs::read(&file).unwrap());
    }
    hex::encode(&hasher.finalize()[..6])
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn execute(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
}

/// Creates the migrated template database once per schema. An advisory lock
/// serialises test processes that start at the same time.
async fn template() -> String {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("activator_template_{}", migrations_fingerprint());
            let admin = admin_url();
            let mut conn = AsyncPgConnection::establish(&admin)
                .await
                .expect("connect to PostgreSQL");
            execute(&mut conn, "SELECT pg_advisory_lock(727274)").await;
            #[derive(diesel::QueryableByName)]
            struct Exists {
                #[diesel(sql_type = diesel::sql_types::Bool)]
                exists: bool,
            }
            let exists: Exists = diesel::sql_query(format!(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}') AS exists"
            ))
            .get_result(&mut conn)
            .await
            .unwrap();
            if !exists.exists {
                let building = format!("{name}_building");
                execute(&mut conn, &format!("DROP DATABASE IF EXISTS {building}")).await;
                execute(&mut conn, &format!("CREATE DATABASE {building}")).await;
                let url = with_database(&admin, &building);
                tokio::task::spawn_blocking(move || {
                    let mut migrating = db::migrations::connect(&url).unwrap();
                    db::migrations::run_pending(&mut migrating).unwrap();
                })
                .await
                .unwrap();
                execute(
                    &mut conn,
                    &format!("ALTER DATABASE {building} RENAME TO {name}"),
                )
                .await;
            }
            execute(&mut conn, "SELECT pg_advisory_unlock(727274)").await;
            name
        })
        .await
        .clone()
}

/// A database of one test's own, dropped at the end of the test.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A fresh database with the current schema.
    pub async fn new() -> Self {
        Self::create(Some(&template().await)).await
    }

    /// A fresh database with no schema at all.
    pub async fn empty() -> Self {
        Self::create(None).await
    }

    async fn create(template: Option<&str>) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "activator_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = AsyncPgConnection::establish(&admin_url()).await.unwrap();
        let sql = match template {
            Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
            None => format!("CREATE DATABASE {name}"),
        };
        execute(&mut conn, &sql).await;
        Self {
            url: with_database(&admin_url(), &name),
            name,
        }
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }

    /// Runs `SELECT count(*) AS n ...` and returns n.
    pub async fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.connect().await;
        diesel::sql_query(sql)
            .get_result::<N>(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
            .n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = AsyncPgConnection::establish(&admin_url()).await {
                    let _ = diesel::sql_query(sql).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

/// Settings for a test: the test's database, the shared Redis, cheap bcrypt,
/// a large inbox guessing budget, and `overrides` on top.
pub fn settings_for(db: &TestDb, overrides: &[(&str, &str)]) -> Settings {
    let mut source: HashMap<&str, &str> = HashMap::from([
        ("DATABASE_URL", db.url.as_str()),
        ("SECRET_KEY", SECRET_KEY),
        ("BCRYPT_COST", "4"),
        ("DATABASE_POOL_SIZE", "20"),
        // Tests of one account's limits guess more codes than an inbox's
        // daily budget allows; that budget is tested with the real binary
        // at its defaults (`owner`).
        ("INBOX_SHORT_CODE_GUESSES_DAILY", "1000"),
    ]);
    let redis = redis_url();
    source.insert("REDIS_URL", redis.as_str());
    for (name, value) in overrides {
        source.insert(name, value);
    }
    Settings::from_source(&source).unwrap()
}

/// The API on Rocket's local client, built as `serve` builds it.
pub struct TestApp {
    pub client: Client,
    pub db: TestDb,
    pub settings: Settings,
    /// The workflows the app runs (sharing its pool and Redis connection).
    pub accounts: activator::accounts::Accounts,
}

impl Api for TestApp {
    async fn send(&self, call: Call) -> Reply {
        let mut request = self.client.req(call.method, call.path);
        for (name, value) in call.headers {
            request = request.header(Header::new(name, value));
        }
        if let Some(client) = &call.client {
            request = request.remote(peer(client));
        }
        if let Some(body) = call.body {
            request = request.body(body);
        }
        Reply::from(request.dispatch().await).await
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    pub async fn with(overrides: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let settings = settings_for(&db, overrides);
        Self::on(db, settings).await
    }

    pub async fn on(db: TestDb, settings: Settings) -> Self {
        let accounts = activator::accounts::Accounts::build(&settings)
            .await
            .unwrap();
        let figment = activator::figment().merge(("log_level", "off"));
        let client = Client::tracked(activator::rocket(
            figment,
            accounts.clone(),
            locales(&settings),
            settings.network.clone(),
        ))
        .await
        .unwrap();
        Self {
            client,
            db,
            settings,
            accounts,
        }
    }

    /// Delivers every message due now to `sink`, in-process, the way the
    /// dispatcher would (see `deliver_due`).
    pub async fn deliver(&self, sink: &MailSink) -> Tally {
        deliver(&self.db, &self.settings, sink).await
    }

    /// The code in the newest queued email to `email`.
    pub async fn latest_code(&self, email: &str) -> String {
        latest_code(&self.db, email).await
    }
}

/// The languages emails can be written in under `settings`, as `serve`
/// negotiates them.
pub fn locales(settings: &Settings) -> Locales {
    Templates::load(settings.templates_dir.as_deref(), &settings.default_locale)
        .unwrap()
        .locales()
}

/// The dispatcher's test seam: delivers every message of `db` due now to
/// `sink` with the settings' `from` and attempt limit.
pub async fn deliver(db: &TestDb, settings: &Settings, sink: &MailSink) -> Tally {
    let mut settings = settings.clone();
    settings.email_api_url = Some(sink.url.clone());
    settings.smtp_url = None;
    let courier = Courier::from_settings(&settings).unwrap();
    let mut conn = activator::db::connect(&db.url).await.unwrap();
    deliver_due(&mut conn, &courier, settings.email_concurrency)
        .await
        .unwrap()
}

/// The code sealed in the newest outbox message to `email`, opened with the
/// tests' `SECRET_KEY` (while the message is queued; delivery clears it).
pub async fn latest_code(db: &TestDb, email: &str) -> String {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        user_id: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bytea>)]
        payload: Option<Vec<u8>>,
    }
    let mut conn = db.connect().await;
    let row: Row = diesel::sql_query(
        "SELECT user_id, payload FROM email_outbox WHERE recipient = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind::<diesel::sql_types::Text, _>(email.trim().to_lowercase())
    .get_result(&mut conn)
    .await
    .expect("an outbox message for this email");
    let sealed = row.payload.expect("the message is still queued");
    Payload::open(&sealer(), UserId(row.user_id), &sealed)
        .expect("sealed under the tests' SECRET_KEY")
        .code
        .as_str()
        .to_owned()
}

/// The outbox's sealer under the tests' `SECRET_KEY`.
pub fn sealer() -> Sealer {
    Sealer::new(&activator::settings::SecretKey::new(SECRET_KEY))
}

/// The activation code inside an email text.
pub fn code_in(text: &str) -> String {
    let at = text.find("code is: ").expect("the text states the code") + "code is: ".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

/// A socket address at `ip`, as a request's peer.
pub fn peer(ip: &str) -> std::net::SocketAddr {
    std::net::SocketAddr::new(ip.parse().unwrap(), 40_000)
}

/// The `Authorization` value for Basic credentials of any bytes (control
/// bytes and broken UTF-8 included), for a client other than Rocket's.
pub fn basic_value(raw: &[u8]) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The `Authorization` header of `user` and `password`, for Rocket's
/// client.
pub fn basic(user: &str, password: &str) -> Header<'static> {
    Header::new(
        "Authorization",
        basic_value(format!("{user}:{password}").as_bytes()),
    )
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: Status,
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: String,
}

impl Reply {
    pub async fn from(response: LocalResponse<'_>) -> Self {
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|h| (h.name().to_string().to_lowercase(), h.value().to_string()))
            .collect();
        let content_type = response.content_type().map(|ct| ct.to_string());
        let body = response.into_string().await.unwrap_or_default();
        Self {
            status,
            headers,
            content_type,
            body,
        }
    }

    /// The status code.
    pub fn code(&self) -> u16 {
        self.status.code
    }

    /// The status code and the body.
    pub fn pair(&self) -> (u16, String) {
        (self.status.code, self.body.clone())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_lowercase())
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status and a `{"detail": text}` body.
    #[track_caller]
    pub fn assert_detail(&self, status: u16, detail: &str) {
        assert_eq!(self.status.code, status, "body: {}", self.body);
        assert_eq!(self.json(), serde_json::json!({ "detail": detail }));
    }

    /// Asserts a FastAPI-shaped 422 naming `loc` with error type `kind`.
    #[track_caller]
    pub fn assert_validation(&self, loc: Value, kind: &str) {
        assert_eq!(self.status.code, 422, "body: {}", self.body);
        let errors = self.json()["detail"]
            .as_array()
            .cloned()
            .expect("detail is a list");
        assert!(
            errors
                .iter()
                .any(|e| e["loc"] == loc && e["type"] == kind && e["msg"].is_string()),
            "no {kind} error at {loc}: {}",
            self.body
        );
    }
}

// ---- accounts in a known state ---------------------------------------------

/// A code other than `right`: a guess that is wrong for sure.
pub fn wrong_code(right: &str) -> &'static str {
    if right == "0000" { "1111" } else { "0000" }
}

/// A pending account and its code.
pub async fn pending(app: &TestApp) -> (String, String) {
    let email = unique_email("pending");
    app.register(&email, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    let code = app.latest_code(&email).await;
    (email, code)
}

/// Registers `email` and activates it.
pub async fn active_user(app: &TestApp, email: &str) {
    app.register(email, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    let code = app.latest_code(email).await;
    app.activate(email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

#[derive(diesel::QueryableByName, Debug)]
pub struct UserRow {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub is_active: bool,
}

/// The accounts stored under exactly `email`.
pub async fn users_named(app: &TestApp, email: &str) -> Vec<UserRow> {
    let mut conn = app.db.connect().await;
    diesel::sql_query("SELECT is_active FROM users WHERE email = $1")
        .bind::<diesel::sql_types::Text, _>(email)
        .load(&mut conn)
        .await
        .unwrap()
}

/// The failed activations the (one) account has spent of its budget.
pub async fn failed_activations(app: &TestApp) -> i64 {
    app.db
        .count("SELECT failed_activations::bigint AS n FROM users")
        .await
}

// ---- answers -------------------------------------------------------------------

/// Asserts the status, the exact body, and a JSON content type: the
/// original's answer byte for byte.
#[track_caller]
pub fn exactly(reply: &Reply, status: u16, body: &str) {
    assert_eq!((reply.status.code, reply.body.as_str()), (status, body));
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
}

/// Asserts the original's 429 byte for byte (see [`exactly`]) and a
/// `Retry-After` of whole seconds, at least 1.
#[track_caller]
pub fn exactly_limited(reply: &Reply, detail: &str) {
    exactly(
        reply,
        429,
        &serde_json::json!({ "detail": detail }).to_string(),
    );
    assert!(retry_after(reply) >= 1);
}

/// Asserts a 429 with `detail` (compared as JSON, see
/// [`Reply::assert_detail`]) and a `Retry-After` of whole seconds, at least
/// 1; returns the seconds.
#[track_caller]
pub fn assert_limited(reply: &Reply, detail: &str) -> u64 {
    reply.assert_detail(429, detail);
    let seconds = retry_after(reply);
    assert!(seconds >= 1);
    seconds
}

/// The whole seconds of the reply's `Retry-After`.
#[track_caller]
pub fn retry_after(reply: &Reply) -> u64 {
    reply
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {reply:?}"))
        .parse()
        .unwrap()
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T>(
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
