//! The password deny list (run it with `scripts/bench.sh passwords`):
//!
//! 1. importing `BENCH_ENTRIES` (default 10,000,000) `SHA1:COUNT` lines,
//!    made up here, into a filter file: the time, the file's size and its
//!    bytes an entry;
//! 2. a look-up's time (SHA-1 of the password and both filters probed),
//!    over a million passwords not in the list, and how many of them the
//!    list claims (its false positives);
//! 3. registration latency (p50, p90) of the release binary with the
//!    filter and without it, the two servers asked in turn so the run's
//!    noise falls on both alike, `BENCH_REGISTRATIONS` (default 300) each,
//!    at `BENCH_COST` (default 10).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use activator::policy::denylist::{self, DenyList, Format};
use diesel_async::{AsyncConnection, AsyncPgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_activator");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: made-up hashes, fast and the same every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn import(entries: usize, dir: &std::path::Path) -> std::path::PathBuf {
    let input = dir.join("corpus.txt");
    let out = dir.join("denylist.bin");
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    {
        let mut file =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&input).unwrap());
        for _ in 0..entries {
            let (a, b, c) = (random.next(), random.next(), random.next() as u32);
            let count = random.next() % 1000 + 1;
            writeln!(file, "{a:016X}{b:016X}{c:08X}:{count}").unwrap();
        }
        file.flush().unwrap();
    }
    let size = std::fs::metadata(&input).unwrap().len();
    let started = Instant::now();
    let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&input).unwrap());
    let imported = denylist::import(reader, Format::Auto, 0, &out).unwrap();
    let took = started.elapsed();
    println!(
        "import of {entries} SHA1:COUNT lines ({:.0} MB): {:.1} s; filter {} entries, {:.1} MB, {:.2} bytes an entry",
        size as f64 / 1e6,
        took.as_secs_f64(),
        imported.entries,
        imported.bytes as f64 / 1e6,
        imported.bytes as f64 / imported.entries as f64
    );
    std::fs::remove_file(&input).unwrap();
    out
}

fn lookups(list: &DenyList) {
    let passwords: Vec<String> = (0..1_000_000)
        .map(|i| format!("not-breached-{i}!Aa1"))
        .collect();
    // Once to bring the file into the page cache, as a running server has it.
    let mut found = passwords.iter().filter(|p| list.contains(p)).count();
    let started = Instant::now();
    found += passwords.iter().filter(|p| list.contains(p)).count();
    let took = started.elapsed();
    println!(
        "look-up (SHA-1 and both filters): {:.0} ns each over {} passwords not in the list; false positives: {} of {}",
        took.as_nanos() as f64 / passwords.len() as f64,
        passwords.len(),
        found / 2,
        passwords.len()
    );
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

fn start(database_url: &str, extra: &[(&str, &str)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env(
            "REDIS_URL",
            std::env::var("REDIS_URL").expect("REDIS_URL (run scripts/bench.sh)"),
        )
        .env("SECRET_KEY", "benchmark-secret-key-0123456789abcdef")
        .env("BCRYPT_COST", env_or("BENCH_COST", 10u32).to_string())
        .env("ROCKET_PORT", port.to_string())
        .env("ROCKET_PROFILE", "release")
        .env("METRICS_ADDRESS", "")
        .env("RATE_LIMIT_EXEMPT", "127.0.0.1/32,::1")
        .envs(extra.iter().copied())
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(format!("{}/health/live", server.base))
        .call()
        .is_err()
    {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn latency(list: &std::path::Path) {
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL (run scripts/bench.sh)");
    let slash = admin.rfind('/').unwrap();
    let name = format!("activator_bench_passwords_{}", std::process::id());
    let maintenance = format!("{}/postgres", &admin[..slash]);
    let database_url = format!("{}/{name}", &admin[..slash]);
    let sql = |url: &str, statement: String| {
        use diesel_async::RunQueryDsl;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut conn = AsyncPgConnection::establish(url).await.unwrap();
                diesel::sql_query(statement)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            });
    };
    sql(&maintenance, format!("CREATE DATABASE {name}"));
    let migrated = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &database_url)
        .output()
        .unwrap();
    assert!(migrated.status.success());
    let with = start(
        &database_url,
        &[("PASSWORD_DENYLIST_FILE", list.to_str().unwrap())],
    );
    let without = start(&database_url, &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let n: usize = env_or("BENCH_REGISTRATIONS", 300);
    let mut times = [Vec::new(), Vec::new()];
    for i in 0..n + 20 {
        for (k, server) in [&with, &without].into_iter().enumerate() {
            let email = format!("bench-{k}-{i}-{}@example.com", std::process::id());
            let started = Instant::now();
            let status = agent
                .post(format!("{}/auth/register", server.base))
                .send_json(serde_json::json!({"email": email, "password": "Secr3t!pass"}))
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            assert_eq!(status, 201);
            if i >= 20 {
                times[k].push(started.elapsed());
            }
        }
    }
    let p = |times: &mut Vec<Duration>, q: f64| {
        times.sort();
        times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
    };
    let (with_p50, without_p50) = (p(&mut times[0], 0.5), p(&mut times[1], 0.5));
    println!(
        "register at cost {}, {n} each, asked in turn: p50 {with_p50:.2} ms with the filter, {without_p50:.2} ms without ({:+.2} %); p90 {:.2} / {:.2} ms",
        env_or("BENCH_COST", 10u32),
        (with_p50 / without_p50 - 1.0) * 100.0,
        p(&mut times[0], 0.9),
        p(&mut times[1], 0.9),
    );
    drop((with, without));
    sql(&maintenance, format!("DROP DATABASE {name} WITH (FORCE)"));
}

fn main() {
    let entries: usize = env_or("BENCH_ENTRIES", 10_000_000);
    let dir =
        std::env::temp_dir().join(format!("activator-bench-passwords-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!("# password deny list (release build)\n");
    let out = import(entries, &dir);
    let list = DenyList::open(&out).unwrap();
    lookups(&list);
    if std::env::var("DATABASE_URL").is_ok() {
        latency(&out);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
