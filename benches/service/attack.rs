//! Section 8: the owner-always-wins attacks, measured (docs/LIMITS.md).
//!
//! a. 24 IPv6 /64s of one /56 sign in, 4 loops each, with 12 accounts of
//!    their own at cost 12, while another client registers: its
//!    registrations' statuses and p50, and the bcrypt verifications the
//!    attack got.
//! b. One client floods registrations that the hash queue refuses while
//!    another registers: the other's p50 unloaded and loaded, and the CPU
//!    a refused request costs the server (its CPU time over the flood, less
//!    the hashes it did, per refused request).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{MailSink, PASSWORD, Server, agent, ms, percentile, start_server};

/// Cost of the attacks' bcrypt, as the issue measured them.
const COST: u32 = 12;

pub fn run(database_url: &str, redis_url: &str, sink: &MailSink, bcrypt_rate_at_12: f64) {
    let metrics = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let server = start_server(
        database_url,
        redis_url,
        sink,
        COST,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("RATE_LIMIT_EXEMPT", ""),
            ("REGISTER_PER_IP_LIMIT", "100000"),
            ("METRICS_ADDRESS", metrics.as_str()),
        ],
    );
    let metrics = format!("http://{metrics}/metrics");
    sign_in_flood(&server, &metrics);
    refused_flood(&server, &metrics, bcrypt_rate_at_12);
}

fn post(base: &str, path: &str, client: &str, body: serde_json::Value, auth: Option<&str>) -> u16 {
    let mut request = agent()
        .post(format!("{base}{path}"))
        .header("X-Forwarded-For", client);
    if let Some(email) = auth {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{email}:{PASSWORD}"));
        request = request.header("Authorization", format!("Basic {token}"));
    }
    request
        .send_json(body)
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A series of the metrics' text, summed over its label sets.
fn counter(metrics: &str, name: &str) -> f64 {
    let text = agent()
        .get(metrics)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The other client: `n` registrations, one every `gap`; statuses and
/// sorted times.
fn other_client(base: &str, label: &str, n: usize, gap: Duration) -> (Vec<u16>, Vec<Duration>) {
    let mut statuses = Vec::new();
    let mut times = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        statuses.push(post(
            base,
            "/auth/register",
            "2001:db8:ee::1",
            json!({"email": format!("{label}-{i}-{}@example.com", std::process::id()), "password": PASSWORD}),
            None,
        ));
        times.push(t.elapsed());
        std::thread::sleep(gap);
    }
    times.sort();
    (statuses, times)
}

fn sign_in_flood(server: &Server, metrics: &str) {
    let accounts: Vec<String> = (0..12)
        .map(|i| format!("attacker-{i}-{}@example.com", std::process::id()))
        .collect();
    for (i, email) in accounts.iter().enumerate() {
        // Registered from addresses of their own site, not the attack's.
        let status = post(
            &server.base,
            "/auth/register",
            &format!("2001:db8:dd:{i:x}::1"),
            json!({"email": email, "password": PASSWORD}),
            None,
        );
        assert_eq!(status, 201);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let verified_before = counter(metrics, "activator_password_hashes_total{work=\"verify\"}");
    let loops: Vec<_> = (0..24 * 4)
        .map(|i| {
            let (base, stop, email) = (server.base.clone(), stop.clone(), accounts[i % 12].clone());
            let client = format!("2001:db8:aa:bb{:02x}::{:x}", i % 24, i / 24 + 1);
            std::thread::spawn(move || {
                let mut statuses: HashMap<u16, usize> = HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let status = post(&base, "/auth/resend", &client, json!({}), Some(&email));
                    *statuses.entry(status).or_insert(0) += 1;
                }
                statuses
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let (statuses, times) = other_client(
        &server.base,
        "owner-signin-flood",
        20,
        Duration::from_millis(300),
    );
    stop.store(true, Ordering::Relaxed);
    let mut attack: HashMap<u16, usize> = HashMap::new();
    for handle in loops {
        for (status, n) in handle.join().unwrap() {
            *attack.entry(status).or_insert(0) += n;
        }
    }
    let verified =
        counter(metrics, "activator_password_hashes_total{work=\"verify\"}") - verified_before;
    println!(
        "sign-in flood at cost {COST}: 24 /64s of one /56, 4 loops each, 12 accounts: answered {attack:?} with {verified:.0} bcrypt verifications; another client's 20 registrations meanwhile: statuses {statuses:?}, p50 {}, max {}",
        ms(percentile(&times, 0.5)),
        ms(*times.last().unwrap_or(&Duration::ZERO)),
    );
}

/// The server's CPU time so far (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command's closing parenthesis; utime and stime
    // are the 12th and 13th of them, in clock ticks.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Linux reports them in USER_HZ, 100 a second.
    Duration::from_millis(ticks * 10)
}

/// The flood: 2,000 requests a second from one client.
const FLOOD_RATE: u32 = 2_000;
const FLOOD_THREADS: u32 = 8;

type Answers = HashMap<u16, usize>;

/// Floods `path` from one client at [`FLOOD_RATE`] until `stop`.
fn flood(
    base: &str,
    path: &'static str,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Answers>> {
    let gap = Duration::from_secs(1) / (FLOOD_RATE / FLOOD_THREADS);
    (0..FLOOD_THREADS)
        .map(|t| {
            let (base, stop) = (base.to_owned(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut answers = Answers::new();
                let mut next = Instant::now();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let answer = if path == "/health/live" {
                        agent.get(format!("{base}{path}")).call()
                    } else {
                        let email = format!("flood-{t}-{i}-{}@example.com", std::process::id());
                        agent
                            .post(format!("{base}{path}"))
                            .header("X-Forwarded-For", "203.0.113.66")
                            .send_json(json!({"email": email, "password": PASSWORD}))
                    };
                    let status = answer.map(|r| r.status().as_u16()).unwrap_or(0);
                    *answers.entry(status).or_insert(0) += 1;
                    i += 1;
                    next += gap;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                answers
            })
        })
        .collect()
}

fn joined(handles: Vec<std::thread::JoinHandle<Answers>>) -> Answers {
    let mut all = Answers::new();
    for handle in handles {
        for (status, n) in handle.join().unwrap() {
            *all.entry(status).or_insert(0) += n;
        }
    }
    all
}

fn refused_flood(server: &Server, metrics: &str, bcrypt_rate_at_12: f64) {
    let pid = server.child.id();
    // The floor: what any request costs the server (routing, the access
    // log, metrics): a trivial route at the same rate.
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_time(pid);
    let trivial = flood(&server.base, "/health/live", &stop);
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let trivial = joined(trivial);
    let floor =
        (cpu_time(pid) - cpu_before).as_secs_f64() / trivial.values().sum::<usize>().max(1) as f64;

    let (_, unloaded) = other_client(
        &server.base,
        "owner-unloaded",
        10,
        Duration::from_millis(300),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_time(pid);
    let hashed_before = counter(metrics, "activator_password_hashes_total");
    let started = Instant::now();
    let flooders = flood(&server.base, "/auth/register", &stop);
    std::thread::sleep(Duration::from_secs(1));
    let (statuses, loaded) = other_client(
        &server.base,
        "owner-flooded",
        10,
        Duration::from_millis(300),
    );
    stop.store(true, Ordering::Relaxed);
    let answers = joined(flooders);
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    let hashed = counter(metrics, "activator_password_hashes_total") - hashed_before;
    let refused = *answers.get(&429).unwrap_or(&0);
    // A hash at cost 12 costs a core 1 / (rate per core) seconds.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let hashing = Duration::from_secs_f64(hashed * cores / bcrypt_rate_at_12);
    let per_refusal = cpu.saturating_sub(hashing).as_secs_f64() / refused.max(1) as f64;
    let sent = answers.values().sum::<usize>();
    println!(
        "refused flood: one client's {sent} registrations in {:.1} s ({:.0}/s) answered {answers:?}; another client's p50 {} unloaded, {} during it (statuses {statuses:?}); server CPU {:.2} s, of which {hashed:.0} hashes ≈ {:.2} s: {:.1} µs per refused request (GET /health/live at the same rate: {:.1} µs)",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        ms(percentile(&unloaded, 0.5)),
        ms(percentile(&loaded, 0.5)),
        cpu.as_secs_f64(),
        hashing.as_secs_f64(),
        per_refusal * 1e6,
        floor * 1e6,
    );
}
