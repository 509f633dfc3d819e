//! A randomized adversary (docs/LIMITS.md "The owner of an address"): a
//! generator of attacker schedules (registrations, claims, resends,
//! guesses, wrong-password sprays, from generated IPv4 addresses, /64s
//! and /48s, reacting to every answer) interleaved with one owner's
//! signup. In every schedule the owner activates on the first try with the
//! newest code in the inbox, the attacker's passwords open nothing, and
//! the inbox receives no more emails than its bound. Most schedules run
//! in process, each email delivered the moment it is queued; a few dozen
//! against the real binary. A seed that ever fails is kept in `KEPT`.
//!
//! The attacker never reads the inbox; the test, which does, keeps its
//! guesses off the codes the inbox holds (the odds of a lucky guess are
//! `owner`'s tests), so a schedule fails only if the service lets the
//! owner down.

use std::collections::HashSet;
use std::time::Duration;

use activator::address::{Inboxes, normalize};
use activator::mail::courier::Courier;
use activator::mail::dispatcher::deliver_due;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::email::settled;
use crate::common::{Api, MailSink, Server, TestApp, TestDb, code_in};

/// Seeds that once failed, run first, for good.
const KEPT: &[u64] = &[];

const OWNER: &str = "0wner!Pass";

/// One step of a schedule.
#[derive(Debug, Clone)]
enum Step {
    OwnerRegisters,
    /// The owner reads the newest code in the inbox...
    OwnerReads,
    /// ...and types it, with its password: must be a 200.
    OwnerTypes,
    Register {
        spelling: usize,
        password: usize,
        client: usize,
    },
    Resend {
        spelling: usize,
        password: usize,
        client: usize,
    },
    /// A guess of `long` length with an attacker's password.
    Guess {
        spelling: usize,
        password: usize,
        client: usize,
        long: bool,
    },
    /// A wrong password for the owner's address.
    Spray {
        client: usize,
        activate: bool,
    },
}

/// A schedule: the inbox's spellings, the attacker's clients, the steps.
#[derive(Debug)]
struct Schedule {
    seed: u64,
    spellings: Vec<String>,
    clients: Vec<String>,
    home: String,
    /// The test's own client, for what it checks at the end.
    verifier: String,
    steps: Vec<Step>,
}

impl Schedule {
    fn generate(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let local = format!("own{seed}x{}", std::process::id());
        // The owner's address, then spellings that reach its inbox.
        let spellings = vec![
            format!("{local}@gmail.com"),
            format!("{}.{}@gmail.com", &local[..2], &local[2..]),
            format!("{local}+a@gmail.com"),
            format!("{local}@googlemail.com"),
            format!("{}.{}+b@googlemail.com", &local[..3], &local[3..]),
        ];
        let base = u32::try_from(seed % 60_000).unwrap();
        let mut clients = Vec::new();
        for i in 0..rng.random_range(1..12u32) {
            clients.push(match rng.random_range(0..3) {
                // An IPv4 address.
                0 => format!("10.{}.{}.{}", base >> 8, base & 0xff, i + 1),
                // A /64 of the attacker's one /48.
                1 => format!("2001:db8:{:x}:{:x}::1", base + 1, i),
                // A /48 of its own.
                _ => format!("2001:db8:{:x}:1::1", (base * 16 + i + 3) & 0xffff),
            });
        }
        let home = format!("172.16.{}.{}", base >> 8, base & 0xff);
        let verifier = format!("172.17.{}.{}", base >> 8, base & 0xff);
        let passwords = rng.random_range(1..4);
        let attacker = |rng: &mut StdRng| {
            let (spelling, password) = (
                rng.random_range(0..spellings.len()),
                rng.random_range(0..passwords),
            );
            let client = rng.random_range(0..clients.len());
            match rng.random_range(0..10) {
                0..=3 => Step::Register {
                    spelling,
                    password,
                    client,
                },
                4..=5 => Step::Resend {
                    spelling,
                    password,
                    client,
                },
                6..=8 => Step::Guess {
                    spelling,
                    password,
                    client,
                    long: rng.random_bool(0.5),
                },
                _ => Step::Spray {
                    client,
                    activate: rng.random_bool(0.5),
                },
            }
        };
        let mut steps: Vec<Step> = Vec::new();
        for owner in [Step::OwnerRegisters, Step::OwnerReads, Step::OwnerTypes] {
            // The attacker acts before, and reacts at once after, each of
            // the owner's steps.
            for _ in 0..rng.random_range(0..8) {
                steps.push(attacker(&mut rng));
            }
            steps.push(owner);
        }
        for _ in 0..rng.random_range(0..4) {
            steps.push(attacker(&mut rng));
        }
        Self {
            seed,
            spellings,
            clients,
            home,
            verifier,
            steps,
        }
    }
}

/// The attacker's `i`th password.
fn attacker_password(i: usize) -> String {
    format!("Att4cker!{i}")
}

/// Runs `schedule` against `api`; `deliver` delivers what was queued (in
/// process) or waits until the real dispatcher has. Panics, naming the
/// seed, if the owner does not win or the inbox gets too many emails.
async fn run<A: Api>(api: &A, sink: &MailSink, schedule: &Schedule, deliver: &impl AsyncFn()) {
    let seed = schedule.seed;
    // Every spelling reaches the owner's inbox (the defaults fold them).
    let inboxes = Inboxes::new(
        vec![("googlemail.com".into(), "gmail.com".into())],
        vec!["gmail.com".into()],
    );
    let inbox = inboxes.of(&normalize(&schedule.spellings[0]).unwrap());
    assert!(
        schedule
            .spellings
            .iter()
            .all(|spelling| inboxes.of(&normalize(spelling).unwrap()) == inbox)
    );
    let mail = || -> Vec<String> {
        sink.bodies_to(&schedule.spellings)
            .iter()
            .map(|body| code_in(body))
            .collect()
    };
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    // A guess that is none of the inbox's codes.
    let mut guess = |long: bool, known: &[String]| loop {
        let code = if long {
            format!("{:08}", rng.random_range(0..100_000_000u32))
        } else {
            format!("{:04}", rng.random_range(0..10_000u32))
        };
        if !known.contains(&code) {
            break code;
        }
    };
    let owner = &schedule.spellings[0];
    let mut read = None;
    let mut sites = HashSet::new();
    for step in &schedule.steps {
        match step {
            Step::OwnerRegisters => {
                sites.insert(site(&schedule.home));
                let reply = api.register_from(&schedule.home, owner, OWNER).await;
                assert!(
                    [201, 409].contains(&reply.code()),
                    "seed {seed}: the owner's registration: {reply:?}"
                );
            }
            Step::OwnerReads => {
                read = Some(
                    mail()
                        .pop()
                        .unwrap_or_else(|| panic!("seed {seed}: no email in the inbox")),
                );
            }
            Step::OwnerTypes => {
                let code = read.clone().unwrap();
                let reply = api.activate_from(&schedule.home, owner, OWNER, &code).await;
                assert_eq!(
                    reply.code(),
                    200,
                    "seed {seed}: the owner's first try with {code}: {reply:?}\n{schedule:#?}"
                );
            }
            Step::Register {
                spelling,
                password,
                client,
            } => {
                sites.insert(site(&schedule.clients[*client]));
                let reply = api
                    .register_from(
                        &schedule.clients[*client],
                        &schedule.spellings[*spelling],
                        &attacker_password(*password),
                    )
                    .await;
                assert!(reply.code() < 500, "seed {seed}: {reply:?}");
            }
            Step::Resend {
                spelling,
                password,
                client,
            } => {
                sites.insert(site(&schedule.clients[*client]));
                let reply = api
                    .resend_from(
                        &schedule.clients[*client],
                        &schedule.spellings[*spelling],
                        &attacker_password(*password),
                    )
                    .await;
                assert!(reply.code() < 500, "seed {seed}: {reply:?}");
            }
            Step::Guess {
                spelling,
                password,
                client,
                long,
            } => {
                let code = guess(*long, &mail());
                let reply = api
                    .activate_from(
                        &schedule.clients[*client],
                        &schedule.spellings[*spelling],
                        &attacker_password(*password),
                        &code,
                    )
                    .await;
                assert!(
                    [400, 401, 409, 429].contains(&reply.code()),
                    "seed {seed}: a wrong guess: {reply:?}"
                );
            }
            Step::Spray { client, activate } => {
                let client = &schedule.clients[*client];
                let reply = if *activate {
                    api.activate_from(client, owner, "Spr4y!pass", "1234").await
                } else {
                    api.resend_from(client, owner, "Spr4y!pass").await
                };
                assert!([401, 429].contains(&reply.code()), "seed {seed}: {reply:?}");
            }
        }
        // What queues an email is delivered before the next step.
        if matches!(
            step,
            Step::OwnerRegisters | Step::Register { .. } | Step::Resend { .. }
        ) {
            deliver().await;
        }
    }
    // The owner's password is the account's; no attacker's opens it (as
    // a client of the test's own sees it).
    let verifier = &schedule.verifier;
    let reply = api.resend_from(verifier, owner, OWNER).await;
    assert_eq!(reply.code(), 409, "seed {seed}: {reply:?}");
    for password in 0..3 {
        let reply = api
            .resend_from(verifier, owner, &attacker_password(password))
            .await;
        assert_eq!(reply.code(), 401, "seed {seed}: {reply:?}");
    }
    // At most the day's total, and each site's first email.
    let emails = mail().len();
    assert!(
        emails <= 30 + sites.len(),
        "seed {seed}: {emails} emails for {} sites",
        sites.len()
    );
}

/// The site of a client (an IPv4 address, an IPv6 /48), as the email
/// passes count it.
fn site(client: &str) -> String {
    match client.parse::<std::net::IpAddr>().unwrap() {
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !(u128::MAX >> 48);
            std::net::Ipv6Addr::from(bits).to_string()
        }
        v4 => v4.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_schedules_in_process_the_owner_wins_every_one() {
    // The defaults that matter here: the inbox's guessing budget.
    let app = TestApp::with(&[("INBOX_SHORT_CODE_GUESSES_DAILY", "4")]).await;
    let sink = MailSink::start();
    let seeds: Vec<u64> = KEPT.iter().copied().chain(1..=500).collect();
    // One courier for all, delivering everything queued so far each time
    // (one at a time: a delivery that claimed another schedule's email is
    // over before that schedule reads its inbox).
    let mut settings = app.settings.clone();
    settings.email_api_url = Some(sink.url.clone());
    let courier = Courier::from_settings(&settings).unwrap();
    let conn = tokio::sync::Mutex::new(activator::db::connect(&app.db.url).await.unwrap());
    let deliver = async || {
        let mut conn = conn.lock().await;
        deliver_due(&mut conn, &courier, 16).await.unwrap();
    };
    // Four schedules at a time.
    for batch in seeds.chunks(4) {
        let schedules: Vec<Schedule> = batch.iter().map(|&seed| Schedule::generate(seed)).collect();
        let runs = schedules
            .iter()
            .map(|schedule| run(&app, &sink, schedule, &deliver));
        futures_util::future::join_all(runs).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_schedules_against_the_binary_the_owner_wins_every_one() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = Server::start(&db.url, &[("EMAIL_API_URL", sink.url.as_str())]);
    for seed in 10_001..=10_032 {
        let deliver = async || {
            settled(&db, Duration::from_secs(20)).await;
        };
        run(&server, &sink, &Schedule::generate(seed), &deliver).await;
    }
}
