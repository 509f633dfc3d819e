//! Section 9 (`BENCH_ONLY=capacity`): what one signup costs the stores,
//! measured on a PostgreSQL and a Redis of this run's own (nothing else
//! writes to them): statements and transactions (pg_stat_statements,
//! pg_stat_database), WAL bytes, PostgreSQL's and Redis' CPU time, and Redis
//! commands, per signup (register, the email sent, activate), over
//! `BENCH_CAPACITY_SIGNUPS` (1,000) signups by 8 clients after a warm-up.
//! From them: the signups per second one PostgreSQL primary core and one
//! Redis shard carry (docs/OPERATIONS.md, "Capacity").

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{MailSink, start_server};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cmd` as the postgres user when run as root (initdb refuses root).
fn as_postgres(program: &str) -> Command {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"));
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command.current_dir("/");
        command
    } else {
        Command::new(program)
    }
}

fn pg_bin(name: &str) -> String {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    versions.sort();
    versions
        .last()
        .unwrap()
        .join("bin")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A PostgreSQL cluster of the run's own, with pg_stat_statements.
struct Postgres {
    dir: std::path::PathBuf,
    port: u16,
}

impl Postgres {
    fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("activator-capacity-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown")
            .args(["postgres:", dir.to_str().unwrap()])
            .status();
        let data = dir.join("data");
        let ok = as_postgres(&pg_bin("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
            ])
            .args(["-E", "UTF8", "--locale=C", "--no-sync"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "initdb");
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 \
             -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all",
            dir.display()
        );
        let ok = as_postgres(&pg_bin("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-l"])
            .arg(dir.join("log"))
            .args(["-o", &options, "-w", "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "pg_ctl start");
        let postgres = Self { dir, port };
        postgres.query("postgres", "CREATE DATABASE activator");
        postgres.query("activator", "CREATE EXTENSION pg_stat_statements");
        postgres
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/activator", self.port)
    }

    /// One value, as text.
    fn query(&self, database: &str, sql: &str) -> String {
        let output = as_postgres(&pg_bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-XAtqc", sql])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn number(&self, sql: &str) -> f64 {
        self.query("activator", sql).parse().unwrap()
    }

    /// The CPU time of the cluster's processes so far (the postmaster's
    /// children included, while they live).
    fn cpu(&self) -> Duration {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap();
        let pid: u32 = pid.lines().next().unwrap().trim().parse().unwrap();
        let mut total = super::attack::cpu_time(pid);
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let after = &stat[stat.rfind(')').unwrap_or(0) + 2..];
            if after.split(' ').nth(1) == Some(&pid.to_string()) {
                total += super::attack::cpu_time(child);
            }
        }
        total
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&pg_bin("pg_ctl"))
            .args([
                "-D",
                self.dir.join("data").to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Redis {
    child: Child,
    url: String,
}

impl Redis {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        }
    }

    /// (commands processed, CPU seconds) so far.
    fn stats(&self) -> (f64, f64) {
        let mut conn = redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let info: String = redis::cmd("INFO").query(&mut conn).unwrap();
        let field = |name: &str| -> f64 {
            info.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0.0)
        };
        (
            field("total_commands_processed:"),
            field("used_cpu_user:") + field("used_cpu_sys:"),
        )
    }
}

impl Redis {
    /// Calls so far of each command (`INFO commandstats`), by name.
    fn calls(&self) -> std::collections::BTreeMap<String, f64> {
        let mut conn = redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut conn)
            .unwrap();
        info.lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats
                    .split(',')
                    .find_map(|stat| stat.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run() {
    let postgres = Postgres::start();
    let redis = Redis::start();
    let migrated = Command::new(super::bin())
        .arg("migrate")
        .env("DATABASE_URL", postgres.url())
        .output()
        .unwrap();
    assert!(migrated.status.success(), "migrate");
    let sink = MailSink::start();
    // Cost 4: the hash is CPU of serve's, not of the stores'.
    let server = start_server(&postgres.url(), &redis.url, &sink, 4, &[]);
    let signups: usize = super::env_or("BENCH_CAPACITY_SIGNUPS", 1000);
    let clients = 8;
    super::signup_count(&server.base, &sink, clients, 100, "warm");
    // Every email of the warm-up sent before counting starts.
    std::thread::sleep(Duration::from_secs(2));
    postgres.query("activator", "SELECT pg_stat_statements_reset()");
    let lsn = postgres.query("activator", "SELECT pg_current_wal_lsn()");
    let commits =
        postgres.number("SELECT xact_commit FROM pg_stat_database WHERE datname = 'activator'");
    let (commands, redis_cpu) = redis.stats();
    let calls = redis.calls();
    let pg_cpu = postgres.cpu();
    let started = Instant::now();
    super::signup_count(&server.base, &sink, clients, signups, "count");
    // The last emails sent and recorded.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.delivered().len() < 100 + signups && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let elapsed = started.elapsed();
    let n = signups as f64;
    let statements = postgres.number(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
         WHERE d.datname = 'activator' AND s.query NOT LIKE '%pg_stat%' AND s.query NOT LIKE '%pg_current_wal_lsn%'",
    );
    let wal = postgres.number(&format!(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')"
    ));
    let transactions = postgres
        .number("SELECT xact_commit FROM pg_stat_database WHERE datname = 'activator'")
        - commits;
    let pg_cpu = (postgres.cpu() - pg_cpu).as_secs_f64();
    let (commands_after, redis_cpu_after) = redis.stats();
    let (commands, redis_cpu) = (commands_after - commands - 1.0, redis_cpu_after - redis_cpu);
    println!(
        "capacity: {signups} signups (register, email, activate) by {clients} clients in {:.1} s; per signup: {:.1} PostgreSQL statements, {:.1} transactions (psql's included), {:.0} WAL bytes, {:.0} µs PostgreSQL CPU; {:.1} Redis commands, {:.0} µs Redis CPU",
        elapsed.as_secs_f64(),
        statements / n,
        transactions / n,
        wal / n,
        pg_cpu / n * 1e6,
        commands / n,
        redis_cpu / n * 1e6,
    );
    let mut by_command: Vec<(String, f64)> = redis
        .calls()
        .into_iter()
        .map(|(name, after)| {
            let before = calls.get(&name).copied().unwrap_or(0.0);
            (name, (after - before) / n)
        })
        .filter(|(_, per_signup)| *per_signup >= 0.05)
        .collect();
    by_command.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "capacity: Redis commands per signup, by command: {}",
        by_command
            .iter()
            .map(|(name, per_signup)| format!("{name} {per_signup:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "capacity: at those costs one PostgreSQL core carries {:.0} signups/s and one Redis shard (one core) {:.0} signups/s; WAL at 100 signups/s: {:.1} MB/s",
        n / pg_cpu,
        n / redis_cpu,
        wal / n * 100.0 / 1e6,
    );
}
