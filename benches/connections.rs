//! How many idle and slow connections one `serve` holds while
//! `/health/live` still answers in under 50 ms (run it with
//! `scripts/bench.sh connections`, which provides PostgreSQL and Redis).
//!
//! The release binary runs under `prlimit --nofile=1024:BENCH_FD_LIMIT`
//! (it raises its soft limit to the hard one at start). This process opens
//! connections in steps of `BENCH_STEP`: half idle (connected, nothing
//! sent), half slow (a request line and one header, then nothing: the
//! "slowloris" pattern). After each step it probes `/health/live` 40 times
//! on fresh connections, as an orchestrator would, and reads the server's
//! resident memory and open files. It stops when a probe fails or this
//! process runs out of files. Last, it checks whether the server ever closes
//! an idle keep-alive connection.
//!
//! Knobs: `BENCH_FD_LIMIT` (10000; below this process's own hard limit, so
//! the server's is the one reached), `BENCH_STEP` (1000).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

const BIN: &str = env!("CARGO_BIN_EXE_activator");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sql(url: &str, statement: &str) {
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
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `GET /health/live` on a fresh connection: how long until the whole
/// answer arrived, or `None` if it did not within a second.
fn probe(port: u16) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    answer
        .starts_with(b"HTTP/1.1 200")
        .then(|| started.elapsed())
}

/// A `/proc/<pid>/status` value in kB, or a count of `/proc/<pid>/fd`.
fn resident_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn main() {
    let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL (run scripts/bench.sh)");
    let redis_url = std::env::var("REDIS_URL").expect("REDIS_URL (run scripts/bench.sh)");
    let fd_limit: u64 = env_or("BENCH_FD_LIMIT", 10_000);
    let step: usize = env_or("BENCH_STEP", 1000);
    let own = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        own > fd_limit + 100,
        "this process may open {own} files; BENCH_FD_LIMIT must be below that"
    );

    let slash = admin_url.rfind('/').unwrap();
    let name = format!("activator_bench_conn_{}", std::process::id());
    let maintenance = format!("{}/postgres", &admin_url[..slash]);
    sql(&maintenance, &format!("CREATE DATABASE {name}"));
    let database_url = format!("{}/{name}", &admin_url[..slash]);
    assert!(
        Command::new(BIN)
            .arg("migrate")
            .env_clear()
            .env("DATABASE_URL", &database_url)
            .output()
            .unwrap()
            .status
            .success()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server(
        Command::new("prlimit")
            .arg(format!("--nofile=1024:{fd_limit}"))
            .arg(BIN)
            .arg("serve")
            .env_clear()
            .env("DATABASE_URL", &database_url)
            .env("REDIS_URL", &redis_url)
            .env("SECRET_KEY", "benchmark-secret-key-0123456789abcdef")
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_PROFILE", "release")
            .env("RUST_LOG", "warn")
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe(port).is_none() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    println!("# idle and slow connections held by one serve (open files limit {fd_limit})\n");
    println!(
        "| connections | /health/live p50 | p99 | max | failed probes | server RSS | server open files |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut held: Vec<TcpStream> = Vec::new();
    let mut last_good = 0;
    'steps: loop {
        for i in 0..step {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                break 'steps;
            };
            if i % 2 == 1 {
                let _ = stream.write_all(b"POST /auth/register HTTP/1.1\r\nHost: bench\r\n");
            }
            held.push(stream);
        }
        // Let the server accept what is in its backlog.
        std::thread::sleep(Duration::from_millis(300));
        let mut times: Vec<Duration> = Vec::new();
        let mut failed = 0;
        for _ in 0..40 {
            match probe(port) {
                Some(time) => times.push(time),
                None => failed += 1,
            }
        }
        times.sort();
        let at = |p: f64| {
            times
                .get(((times.len().max(1) - 1) as f64 * p).round() as usize)
                .map_or("-".to_owned(), |d| {
                    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
                })
        };
        println!(
            "| {} | {} | {} | {} | {failed} | {:.0} MiB | {} |",
            held.len(),
            at(0.5),
            at(0.99),
            at(1.0),
            resident_mib(pid),
            open_files(pid)
        );
        if failed > 0 {
            break;
        }
        if times
            .last()
            .is_some_and(|max| *max < Duration::from_millis(50))
        {
            last_good = held.len();
        }
    }
    println!("\nheld with every probe under 50 ms: {last_good} connections (half idle, half slow)");
    drop(held);
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "after closing them: /health/live {}",
        probe(port).map_or("fails".to_owned(), |d| format!(
            "answers in {:.1} ms",
            d.as_secs_f64() * 1000.0
        ))
    );

    // Does the server ever close an idle keep-alive connection?
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: bench\r\n\r\n")
        .unwrap();
    let mut buffer = [0u8; 512];
    let _ = stream.read(&mut buffer).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(12)))
        .unwrap();
    let closed = matches!(stream.read(&mut buffer), Ok(0));
    println!(
        "an idle keep-alive connection after 12 s: {}",
        if closed {
            "closed by the server"
        } else {
            "still open"
        }
    );

    drop(server);
    sql(&maintenance, &format!("DROP DATABASE {name} WITH (FORCE)"));
}
