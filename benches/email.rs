//! Benchmark of the email pipeline: the release `serve` binary against a
//! provider stand-in with a latency tail and, optionally, a rate limit that
//! answers 429 + `Retry-After` (run it with `scripts/bench.sh email`, which
//! provides PostgreSQL and Redis).
//!
//! Three runs:
//! 1. window: `BENCH_MESSAGES` messages queued at once, `EMAIL_CONCURRENCY`
//!    in flight; prints delivered/s, the Little's-law bound (window / mean
//!    provider latency) and their ratio, over the whole run and while the
//!    window was full (without the drain at the end);
//! 2. burst: `BENCH_BURST` registrations (BCRYPT_COST=4, codes living 60 s)
//!    from 16 clients against the same provider; prints how many emails
//!    arrived after their code expired (the target is none) and the slowest;
//! 3. rate limit: the provider accepts `BENCH_RATE_LIMIT` posts a second and
//!    answers 429 + `Retry-After: 1` beyond; prints delivered and 429s.
//!
//! Knobs (environment): `BENCH_FAST_MS` (20), `BENCH_SLOW_MS` (1000),
//! `BENCH_SLOW_SHARE` (0.05), `BENCH_CONCURRENCY` (16), `BENCH_MESSAGES`
//! (3000), `BENCH_BURST` (2000), `BENCH_RATE_LIMIT` (100), `BENCH_RATE_MESSAGES`
//! (1000).

#[path = "../tests/integration/common/mail_sink.rs"]
#[allow(
    dead_code,
    reason = "shared with the tests; this benchmark uses part of it"
)]
mod mail_sink;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use mail_sink::{Latency, MailSink};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_activator");
const PASSWORD: &str = "Secr3t!pass";
const SECRET_KEY: &str = "benchmark-secret-key-0123456789abcdef";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn with_database(url: &str, name: &str) -> String {
    let slash = url.rfind('/').expect("a database URL");
    format!("{}/{name}", &url[..slash])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn sql(url: &str, statement: &str) -> usize {
    use diesel_async::RunQueryDsl;
    runtime().block_on(async {
        let mut conn = AsyncPgConnection::establish(url).await.unwrap();
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap()
    })
}

fn count(url: &str, query: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel_async::RunQueryDsl;
    runtime().block_on(async {
        let mut conn = AsyncPgConnection::establish(url).await.unwrap();
        diesel::sql_query(query)
            .get_result::<N>(&mut conn)
            .await
            .unwrap()
            .n
    })
}

/// A fresh, migrated database; dropped with the value.
struct Database {
    maintenance: String,
    name: String,
    url: String,
}

impl Database {
    fn new(admin_url: &str, label: &str) -> Self {
        let name = format!("activator_bench_{label}_{}", std::process::id());
        let maintenance = with_database(admin_url, "postgres");
        sql(&maintenance, &format!("CREATE DATABASE {name}"));
        let url = with_database(admin_url, &name);
        let migrated = Command::new(BIN)
            .arg("migrate")
            .env_clear()
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            migrated.status.success(),
            "{}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        Self {
            maintenance,
            name,
            url,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        sql(
            &self.maintenance,
            &format!("DROP DATABASE {} WITH (FORCE)", self.name),
        );
    }
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn serve(db: &Database, redis_url: &str, sink: &MailSink, extra: &[(&str, String)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log =
        std::fs::File::create(std::env::temp_dir().join("activator-bench-email.log")).unwrap();
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis_url)
        .env("SECRET_KEY", SECRET_KEY)
        .env("BCRYPT_COST", "4")
        .env("EMAIL_API_URL", &sink.url)
        .env("ROCKET_PORT", port.to_string())
        .env("ROCKET_PROFILE", "release")
        .env("RUST_LOG", "warn")
        // The burst's clients, on loopback without X-Forwarded-For, are
        // one exempt caller: the run measures the pipeline, not the
        // per-client limits.
        .env("RATE_LIMIT_EXEMPT", "127.0.0.1/32")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(log);
    for (name, value) in extra {
        command.env(name, value);
    }
    let server = Server {
        child: command.spawn().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent()
        .get(format!("{}/health/live", server.base))
        .call()
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// Queues one activation email for each of `n` new pending accounts through
/// the service's own workflow (as `activator user resend` does), with no
/// dispatcher running.
fn queue(db: &Database, redis_url: &str, n: usize, label: &str) {
    sql(
        &db.url,
        &format!(
            "INSERT INTO users (email, password_hash) \
             SELECT '{label}-' || g || '@example.com', 'x' FROM generate_series(1, {n}) g"
        ),
    );
    let source = std::collections::HashMap::from([
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis_url),
        ("SECRET_KEY", SECRET_KEY),
        ("BCRYPT_COST", "4"),
        ("ACTIVATION_CODE_TTL_SECONDS", "600"),
    ]);
    let settings = activator::settings::Settings::from_source(&source).unwrap();
    runtime().block_on(async {
        let accounts = activator::accounts::Accounts::build(&settings)
            .await
            .unwrap();
        // As many at once as the pool has connections for, not all of
        // them: thousands would wait out the pool's timeout.
        use futures_util::StreamExt;
        futures_util::stream::iter(1..=n)
            .for_each_concurrent(8, |i| {
                let accounts = &accounts;
                async move {
                    let email =
                        activator::address::Email::canonical(&format!("{label}-{i}@example.com"));
                    let user = accounts.find_user(&email).await.unwrap();
                    accounts.reissue(&user).await.unwrap();
                }
            })
            .await;
    });
}

struct Provider {
    latency: Latency,
}

impl Provider {
    fn mean(&self) -> Duration {
        self.latency.fast.mul_f64(1.0 - self.latency.slow_share)
            + self.latency.slow.mul_f64(self.latency.slow_share)
    }

    fn sink(&self) -> MailSink {
        let sink = MailSink::start();
        sink.latency(self.latency);
        sink
    }
}

fn window_run(
    admin_url: &str,
    redis_url: &str,
    provider: &Provider,
    window: usize,
    messages: usize,
) {
    let db = Database::new(admin_url, "window");
    queue(&db, redis_url, messages, "window");
    let sink = provider.sink();
    let started = Instant::now();
    let _server = serve(
        &db,
        redis_url,
        &sink,
        &[("EMAIL_CONCURRENCY", window.to_string())],
    );
    let delivered = sink.wait_for(messages, Duration::from_secs(600)).len();
    // From the first post's arrival to the last answer: every send whole.
    let arrivals = sink.arrivals();
    let first = arrivals.first().map_or(started, |(_, at)| *at);
    let answered = sink.answered();
    let last = answered.iter().map(|(at, _)| *at).max().unwrap_or(started);
    let rate = delivered as f64 / (last - first).as_secs_f64();
    // Little's law is about a steady state: also the rate while the window
    // was full, up to the last post's arrival, without the drain at the end
    // (where the last slow sends hold the clock with few others beside them).
    // Arrivals are listed as they are answered: the latest is sought.
    let last_post = arrivals.iter().map(|(_, at)| *at).max().unwrap_or(started);
    let steady = answered.iter().filter(|(at, _)| *at <= last_post).count() as f64
        / (last_post - first).as_secs_f64();
    // The bound from the latencies the provider really gave this run.
    let held: Duration = answered.iter().map(|(_, wait)| *wait).sum();
    let mean = held / u32::try_from(answered.len().max(1)).unwrap_or(u32::MAX);
    let bound = window as f64 / mean.as_secs_f64();
    println!(
        "window: {delivered} of {messages} delivered, {window} in flight, provider {} ms ({:.0} % at {} ms): mean {:.1} ms configured, {:.1} ms this run",
        provider.latency.fast.as_millis(),
        provider.latency.slow_share * 100.0,
        provider.latency.slow.as_millis(),
        provider.mean().as_secs_f64() * 1000.0,
        mean.as_secs_f64() * 1000.0
    );
    println!(
        "        {rate:.1} delivered/s; Little's-law bound {bound:.1}/s; ratio {:.2}; connections {}",
        rate / bound,
        sink.connections()
    );
    println!(
        "        while the window was full: {steady:.1} delivered/s; ratio {:.2}",
        steady / bound
    );
}

fn burst_run(admin_url: &str, redis_url: &str, provider: &Provider, burst: usize) {
    let db = Database::new(admin_url, "burst");
    let sink = provider.sink();
    let server = serve(
        &db,
        redis_url,
        &sink,
        &[("ACTIVATION_CODE_TTL_SECONDS", "60".to_owned())],
    );
    let ttl = Duration::from_secs(60);
    let created = Arc::new(Mutex::new(Vec::with_capacity(burst)));
    let started = Instant::now();
    let clients = 16;
    let workers: Vec<_> = (0..clients)
        .map(|client| {
            let base = server.base.clone();
            let created = created.clone();
            std::thread::spawn(move || {
                let agent = agent();
                for i in (client..burst).step_by(clients) {
                    let email = format!("burst-{i}@example.com");
                    let status = agent
                        .post(format!("{base}/auth/register"))
                        .send_json(json!({"email": email, "password": PASSWORD}))
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    if status == 201 {
                        created.lock().unwrap().push((email, Instant::now()));
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let registered_in = started.elapsed();
    let created = created.lock().unwrap().clone();
    sink.wait_for(created.len(), Duration::from_secs(180));
    let arrived: std::collections::HashMap<String, Instant> = sink
        .arrivals()
        .into_iter()
        .map(|(message, at)| (message["to"].as_str().unwrap_or_default().to_owned(), at))
        .collect();
    let mut waits: Vec<Duration> = created
        .iter()
        .filter_map(|(email, at)| {
            arrived
                .get(email)
                .map(|arrival| arrival.saturating_duration_since(*at))
        })
        .collect();
    waits.sort();
    let late = waits.iter().filter(|wait| **wait >= ttl).count();
    let missing = created.len() - waits.len();
    let expired = count(
        &db.url,
        "SELECT count(*) AS n FROM email_outbox WHERE status = 'expired'",
    );
    println!(
        "burst:  {} registrations (201) in {:.1} s; {} emails arrived, {late} after their code expired, {missing} missing ({expired} expired in the outbox)",
        created.len(),
        registered_in.as_secs_f64(),
        waits.len(),
    );
    println!(
        "        201 → email: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (codes live 60 s)",
        percentile(&waits, 0.5).as_secs_f64() * 1000.0,
        percentile(&waits, 0.99).as_secs_f64() * 1000.0,
        waits.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
}

fn rate_limit_run(
    admin_url: &str,
    redis_url: &str,
    provider: &Provider,
    limit: u32,
    messages: usize,
) {
    let db = Database::new(admin_url, "ratelimit");
    queue(&db, redis_url, messages, "limited");
    let sink = provider.sink();
    sink.rate_limit(limit);
    let _server = serve(&db, redis_url, &sink, &[]);
    let started = Instant::now();
    let delivered = sink.wait_for(messages, Duration::from_secs(600)).len();
    let took = started.elapsed();
    let sent = count(
        &db.url,
        "SELECT count(*) AS n FROM email_outbox WHERE status = 'sent'",
    );
    println!(
        "rate limit: provider takes {limit}/s; {delivered} of {messages} delivered in {:.1} s ({sent} sent in the outbox); {} answers 429 = {:.1} % of the messages",
        took.as_secs_f64(),
        sink.throttled(),
        100.0 * sink.throttled() as f64 / messages as f64
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL (run scripts/bench.sh)");
    let redis_url = std::env::var("REDIS_URL").expect("REDIS_URL (run scripts/bench.sh)");
    let provider = Provider {
        latency: Latency {
            fast: Duration::from_millis(env_or("BENCH_FAST_MS", 20)),
            slow: Duration::from_millis(env_or("BENCH_SLOW_MS", 1000)),
            slow_share: env_or("BENCH_SLOW_SHARE", 0.05),
        },
    };
    println!("# activator email pipeline benchmark (release build)\n");
    window_run(
        &admin_url,
        &redis_url,
        &provider,
        env_or("BENCH_CONCURRENCY", 16),
        env_or("BENCH_MESSAGES", 3000),
    );
    burst_run(
        &admin_url,
        &redis_url,
        &provider,
        env_or("BENCH_BURST", 2000),
    );
    rate_limit_run(
        &admin_url,
        &redis_url,
        &provider,
        env_or("BENCH_RATE_LIMIT", 100),
        env_or("BENCH_RATE_MESSAGES", 1000),
    );
}
