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
//! c. (`owner_under_attack`, `BENCH_ONLY=owner`) owners signing up under
//!    the attack mixes.
//! d. One client past its registration window (`REGISTER_PER_IP_LIMIT`)
//!    keeps registering: the CPU of serve and Redis per refused request
//!    against `GET /health/live` at the same rate.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{MailSink, PASSWORD, Server, agent, code_in, ms, percentile, start_server};

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
    drop(server);
    // The registration window's own limit (REGISTER_PER_IP_LIMIT, 30).
    let server = start_server(
        database_url,
        redis_url,
        sink,
        COST,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("RATE_LIMIT_EXEMPT", ""),
        ],
    );
    window_flood(&server, redis_url);
}

/// Redis' CPU time so far (user + system, its own and its children's).
fn redis_cpu(url: &str) -> Duration {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut conn).unwrap();
    let seconds: f64 = info
        .lines()
        .filter(|line| line.starts_with("used_cpu_user:") || line.starts_with("used_cpu_sys:"))
        .filter_map(|line| line.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum();
    Duration::from_secs_f64(seconds)
}

/// d. One client whose registration window is full keeps registering at
/// [`FLOOD_RATE`]: what a refusal costs the server and Redis (CPU over the
/// flood, per request), against `GET /health/live` at the same rate.
fn window_flood(server: &Server, redis_url: &str) {
    let pid = server.child.id();
    // Fill the flooding client's window (30 registrations), unless the
    // flood of b already did (its client is this one).
    for i in 0..=30 {
        let status = post(
            &server.base,
            "/auth/register",
            "203.0.113.66",
            json!({"email": format!("window-{i}-{}@example.com", std::process::id()), "password": PASSWORD}),
            None,
        );
        if status == 429 {
            break;
        }
        assert!(status == 201 && i < 30, "filling the window: {status}");
    }
    let measure = |path: &'static str| {
        let stop = Arc::new(AtomicBool::new(false));
        let (cpu, redis) = (cpu_time(pid), redis_cpu(redis_url));
        let handles = flood(&server.base, path, &stop);
        std::thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        let answers = joined(handles);
        let sent = answers.values().sum::<usize>().max(1) as f64;
        let serve = (cpu_time(pid) - cpu).as_secs_f64() / sent;
        let redis = (redis_cpu(redis_url) - redis).as_secs_f64() / sent;
        (answers, serve, redis)
    };
    let (trivial, floor, floor_redis) = measure("/health/live");
    let (refused, serve, redis) = measure("/auth/register");
    println!(
        "window flood: one client past REGISTER_PER_IP_LIMIT registering at {FLOOD_RATE}/s for 5 s: answered {refused:?}; CPU per refused request: serve {:.1} µs + Redis {:.1} µs = {:.1} µs; GET /health/live at the same rate ({trivial:?}): serve {:.1} µs + Redis {:.1} µs = {:.1} µs; ratio {:.2}",
        serve * 1e6,
        redis * 1e6,
        (serve + redis) * 1e6,
        floor * 1e6,
        floor_redis * 1e6,
        (floor + floor_redis) * 1e6,
        (serve + redis) / (floor + floor_redis),
    );
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
pub fn cpu_time(pid: u32) -> Duration {
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

/// The attack mixes of section c, alone or together.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mix {
    /// Registrations of the owner's address with passwords of the
    /// attacker's (claims), each from a new IPv4 site, then resends.
    Claims,
    /// Wrong passwords for the owner's address from 100 networks.
    Spray,
    /// Registrations of other spellings of the owner's inbox (+tags, dots,
    /// googlemail) from 16 /64s of one /48, then their resends, again and
    /// again.
    Renewals,
}

/// The spellings of one Gmail inbox the renewal bombing uses.
fn spellings(local: &str) -> Vec<String> {
    let (head, tail) = local.split_at(3);
    let mut all = vec![
        format!("{local}@googlemail.com"),
        format!("{head}.{tail}@gmail.com"),
        format!("{head}.{tail}@googlemail.com"),
    ];
    all.extend((0..13).map(|k| format!("{local}+{k}@gmail.com")));
    all
}

/// One attacker loop of `mix` against `victim` until `stop`; the sites it
/// asked from go into `sites`.
fn attacker(
    base: String,
    mix: Mix,
    thread: usize,
    victim: String,
    stop: Arc<AtomicBool>,
    sites: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
) -> Answers {
    let mut answers = Answers::new();
    let local = victim.split('@').next().unwrap().to_owned();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let (path, client, email, password) = match mix {
            Mix::Claims => (
                if i.is_multiple_of(2) {
                    "/auth/register"
                } else {
                    "/auth/resend"
                },
                format!(
                    "10.{}.{}.{}",
                    100 + thread,
                    (i / 2) / 250,
                    (i / 2) % 250 + 1
                ),
                victim.clone(),
                format!("Att4cker!{thread}-{}", i / 2),
            ),
            Mix::Spray => (
                "/auth/resend",
                format!("172.16.{}.{}", thread, i % 25 + 1),
                victim.clone(),
                "Wr0ng!pass".to_owned(),
            ),
            Mix::Renewals => {
                let all = spellings(&local);
                (
                    if i < all.len() {
                        "/auth/register"
                    } else {
                        "/auth/resend"
                    },
                    format!("2001:db8:77:{:x}::1", (thread * 4 + i % 4) % 16),
                    all[i % all.len()].clone(),
                    "Ren3wal!pass".to_owned(),
                )
            }
        };
        let site = if client.contains(':') {
            "2001:db8:77::/48".to_owned()
        } else {
            client.clone()
        };
        let status = if path == "/auth/register" {
            post(
                &base,
                path,
                &client,
                json!({"email": email, "password": password}),
                None,
            )
        } else {
            post_as(&base, path, &client, &email, &password)
        };
        if matches!(status, 201 | 202 | 409) {
            sites.lock().unwrap().insert(site);
        }
        *answers.entry(status).or_insert(0) += 1;
        i += 1;
    }
    answers
}

/// A POST with Basic credentials of `email` and `password`.
fn post_as(base: &str, path: &str, client: &str, email: &str, password: &str) -> u16 {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{email}:{password}"));
    agent()
        .post(format!("{base}{path}"))
        .header("X-Forwarded-For", client)
        .header("Authorization", format!("Basic {token}"))
        .send_json(json!({}))
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// What `rounds` owners' signups under `mixes` came to.
struct Owners {
    times: Vec<Duration>,
    first_try: usize,
    /// Per round: the emails the inbox received, and its cap (the total
    /// plus one per site that asked).
    inbox: Vec<(usize, usize)>,
    attack: Answers,
}

/// `rounds` owners, each registering a Gmail address of its own from its
/// own site while `mixes` go at that address and inbox (started a second
/// before), typing the code of the newest email in the inbox.
fn owners(server: &Server, sink: &MailSink, label: &str, rounds: usize, mixes: &[Mix]) -> Owners {
    let mut result = Owners {
        times: Vec::new(),
        first_try: 0,
        inbox: Vec::new(),
        attack: Answers::new(),
    };
    for round in 0..rounds {
        let local = format!("victim{label}{round}x{}", std::process::id());
        let victim = format!("{local}@gmail.com");
        let mut inbox = spellings(&local);
        inbox.push(victim.clone());
        let before = sink.delivered().len();
        let stop = Arc::new(AtomicBool::new(false));
        let sites = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let threads: Vec<_> = mixes
            .iter()
            .flat_map(|&mix| (0..4).map(move |t| (mix, t)))
            .map(|(mix, t)| {
                let (base, victim, stop, sites) = (
                    server.base.clone(),
                    victim.clone(),
                    stop.clone(),
                    sites.clone(),
                );
                std::thread::spawn(move || attacker(base, mix, t, victim, stop, sites))
            })
            .collect();
        if !mixes.is_empty() {
            std::thread::sleep(Duration::from_secs(1));
        }
        let home = format!("198.18.{round}.1");
        let started = Instant::now();
        let registered = post(
            &server.base,
            "/auth/register",
            &home,
            json!({"email": victim, "password": PASSWORD}),
            None,
        );
        assert!(matches!(registered, 201 | 409), "owner: {registered}");
        sites.lock().unwrap().insert(home.clone());
        // The newest email in the inbox once the owner's has arrived.
        let code = loop {
            let delivered = sink.delivered();
            let mine = delivered[before..]
                .iter()
                .filter(|message| inbox.iter().any(|to| message["to"] == to.as_str()))
                .collect::<Vec<_>>();
            if let Some(newest) = mine.last()
                && delivered[before..]
                    .iter()
                    .any(|m| m["to"] == victim.as_str())
            {
                break code_in(newest["body"].as_str().unwrap_or_default());
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no email");
            std::thread::sleep(Duration::from_millis(2));
        };
        let activated = agent()
            .post(format!("{}/auth/activate", server.base))
            .header("X-Forwarded-For", &home)
            .header("Authorization", {
                use base64::Engine;
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{victim}:{PASSWORD}"));
                format!("Basic {token}")
            })
            .send_json(json!({"code": code}))
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        result.times.push(started.elapsed());
        if activated == 200 {
            result.first_try += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            for (status, n) in thread.join().unwrap() {
                *result.attack.entry(status).or_insert(0) += n;
            }
        }
        let received = sink.delivered()[before..]
            .iter()
            .filter(|message| inbox.iter().any(|to| message["to"] == to.as_str()))
            .count();
        result
            .inbox
            .push((received, 30 + sites.lock().unwrap().len()));
    }
    result.times.sort();
    result
}

/// Section c: the owner signs up while the attack mixes of the owner's
/// property go at its address and inbox: its p50 against unloaded, its
/// first-try activations, the inbox's emails against its cap.
pub fn owner_under_attack(database_url: &str, redis_url: &str, sink: &MailSink) {
    let server = start_server(
        database_url,
        redis_url,
        sink,
        COST,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("RATE_LIMIT_EXEMPT", ""),
            ("RESEND_PER_MINUTE_LIMIT", "1"),
        ],
    );
    let rounds = super::env_or("BENCH_OWNER_ROUNDS", 6);
    let calm = owners(&server, sink, "calm", rounds, &[]);
    let calm_p50 = percentile(&calm.times, 0.5);
    println!(
        "owner at cost {COST}, unloaded: {rounds} signups (register, newest code in the inbox, activate), p50 {}, first try {}/{rounds}",
        ms(calm_p50),
        calm.first_try
    );
    for (name, mixes) in [
        ("claim flood", &[Mix::Claims][..]),
        ("sign-in spray from 100 networks", &[Mix::Spray][..]),
        ("renewal bombing", &[Mix::Renewals][..]),
        ("all three", &[Mix::Claims, Mix::Spray, Mix::Renewals][..]),
    ] {
        let loaded = owners(&server, sink, &name.replace(' ', ""), rounds, mixes);
        let p50 = percentile(&loaded.times, 0.5);
        let over = loaded
            .inbox
            .iter()
            .filter(|(received, cap)| received > cap)
            .count();
        println!(
            "owner under {name}: p50 {} ({:.2}x unloaded), first try {}/{rounds}; inbox emails per round {:?} (received, cap), over the cap in {over}; attack answered {:?}",
            ms(p50),
            p50.as_secs_f64() / calm_p50.as_secs_f64(),
            loaded.first_try,
            loaded.inbox,
            loaded.attack,
        );
    }
}
