//! The owner of an address always wins (docs/LIMITS.md "The owner of an
//! address"): limits count who is asking, so an attacker who spends them
//! from networks of their own does not lock the owner out. Against the real
//! binary, behind a trusted proxy whose `X-Forwarded-For` names the client
//! networks.

use serde_json::json;

use crate::common::email::{behind_proxy, code_for, codes_for, scrape, serve_with_metrics};
use crate::common::{MailSink, PASSWORD, Server, TestDb, unique_email};

const WRONG: &str = "Wr0ng!pass";

/// Activates `email` with `code` as the client `network`.
fn activate_from(
    server: &Server,
    network: &str,
    email: &str,
    password: &str,
    code: &str,
) -> (u16, String) {
    let body = json!({"code": code});
    server.post_from(network, "/auth/activate", &body, Some((email, password)))
}

/// A client in a /64 of its own, `2001:db8:<run + n>:<m>::7`: each test
/// run has /48s of its own (Redis keeps per-client counts across runs for
/// their windows).
fn network(n: u32, m: u32) -> String {
    static RUN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        (nanos ^ std::process::id()) & 0xffff
    });
    // `n` picks a /48 of the run's (the hash queue's and the passes'
    // client), `m` a /64 in it.
    format!("2001:db8:{:x}:{m:x}::7", (run + n * 0x100) & 0xffff)
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_from_other_networks_never_keep_the_owner_out() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = behind_proxy(&db, &sink, &[]);
    let owner = unique_email("owner-signin");
    let home = network(1, 1);
    assert_eq!(server.register_from(&home, &owner, PASSWORD), 201);
    let code = code_for(&sink, &owner);

    // Ten networks, one wrong password each: today's table row.
    for n in 0..10 {
        let (status, _) = server.post_from(
            &network(2, n),
            "/auth/resend",
            &json!({}),
            Some((&owner, WRONG)),
        );
        assert_eq!(status, 401);
    }
    // One network spends its own budget (AUTH_FAILURE_LIMIT, 10) and is
    // refused, right password or not.
    let guesser = network(3, 0);
    for _ in 0..10 {
        let (status, _) =
            server.post_from(&guesser, "/auth/resend", &json!({}), Some((&owner, WRONG)));
        assert_eq!(status, 401);
    }
    let (status, body) = activate_from(&server, &guesser, &owner, PASSWORD, &code);
    assert_eq!(status, 429, "{body}");

    // The owner, from home, activates.
    let (status, body) = activate_from(&server, &home, &owner, PASSWORD, &code);
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_ceiling_networks_that_failed_are_refused_and_the_owner_is_not() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics_url) = serve_with_metrics(
        &db,
        &sink,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("AUTH_FAILURE_LIMIT", "3"),
            ("AUTH_FAILURE_CEILING", "6"),
        ],
    );
    let owner = unique_email("owner-ceiling");
    assert_eq!(server.register_from(&network(4, 0), &owner, PASSWORD), 201);
    let code = code_for(&sink, &owner);
    // Six failures from three networks reach the ceiling.
    for n in 1..=3 {
        for _ in 0..2 {
            let body = json!({});
            let (status, _) =
                server.post_from(&network(4, n), "/auth/resend", &body, Some((&owner, WRONG)));
            assert_eq!(status, 401);
        }
    }
    // Each of them has failed: refused, though under its own limit.
    for n in 1..=3 {
        let (status, text) = activate_from(&server, &network(4, n), &owner, PASSWORD, &code);
        assert_eq!(status, 429, "{text}");
    }
    // A network that has not failed is heard: the right password works.
    let (status, text) = activate_from(&server, &network(4, 9), &owner, PASSWORD, &code);
    assert_eq!(status, 200, "{text}");
    let metrics = scrape(&metrics_url);
    assert!(
        metrics.contains("activator_rate_limited_total{limit=\"auth_failures_ceiling\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_registrations_from_one_client_leave_the_owner_their_email() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = behind_proxy(&db, &sink, &[]);
    let owner = unique_email("owner-tags");
    let (local, domain) = owner.split_once('@').unwrap();
    let attacker = network(5, 0);
    for i in 1..=10 {
        let tagged = format!("{local}+{i}@{domain}");
        assert_eq!(server.register_from(&attacker, &tagged, WRONG), 201);
    }
    // The attacker's network has spent its share of the mailbox...
    let eleventh = format!("{local}+11@{domain}");
    assert_eq!(server.register_from(&attacker, &eleventh, WRONG), 429);
    // ...and the owner, from another, registers and activates.
    assert_eq!(server.register_from(&network(5, 1), &owner, PASSWORD), 201);
    let code = code_for(&sink, &owner);
    let (status, text) = activate_from(&server, &network(5, 1), &owner, PASSWORD, &code);
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mailbox_has_a_daily_total_across_networks() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = behind_proxy(
        &db,
        &sink,
        &[
            ("EMAIL_PER_MAILBOX_DAILY_LIMIT", "2"),
            ("EMAIL_PER_MAILBOX_DAILY_TOTAL", "3"),
        ],
    );
    let owner = unique_email("owner-total");
    let (local, domain) = owner.split_once('@').unwrap();
    let tagged = |i: u32| format!("{local}+{i}@{domain}");
    // Network 0 spends its two, network 1 reaches the total with its first
    // and is refused its second; network 2 has not asked: its first goes.
    let statuses: Vec<u16> = [(0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (2, 6), (2, 7)]
        .into_iter()
        .map(|(n, i)| server.register_from(&network(6, n), &tagged(i), PASSWORD))
        .collect();
    assert_eq!(statuses, [201, 201, 429, 201, 429, 201, 429]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_of_guessing_from_64_networks_gives_one_inbox_odds_under_a_thousandth() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics_url) =
        serve_with_metrics(&db, &sink, &[("TRUSTED_PROXIES", "127.0.0.1/32")]);
    let victim = unique_email("odds");
    let (local, domain) = victim.split_once('@').unwrap();
    let networks: Vec<String> = (0..64).map(|m| network(7, m)).collect();
    // Each network registers an address of the victim's inbox while the
    // mailbox takes them, then guesses the codes (mailed to the victim)
    // from every network in turn, each address until refused.
    let mut accounts = Vec::new();
    for (i, from) in networks.iter().enumerate() {
        let address = format!("{local}+{i}@{domain}");
        match server.register_from(from, &address, WRONG) {
            201 => accounts.push(address),
            429 => {}
            other => panic!("register: {other}"),
        }
    }
    // One /48: the mailbox's total (30) and one pass past it.
    assert_eq!(accounts.len(), 31);
    let mut turn = 0;
    for address in &accounts {
        for guess in 0..12 {
            let code = format!("{:04}", (turn * 7919 + guess) % 10_000);
            let (status, text) = activate_from(
                &server,
                &networks[turn % networks.len()],
                address,
                WRONG,
                &code,
            );
            turn += 1;
            assert!([200, 400, 429].contains(&status), "{status} {text}");
        }
    }
    // The sum over every code checked of 1 / 10^length.
    let metrics = scrape(&metrics_url);
    let odds: f64 = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("activator_wrong_codes_total{length=\""))
        .map(|rest| {
            let (length, count) = rest.split_once("\"} ").unwrap();
            count.parse::<f64>().unwrap() / 10f64.powi(length.parse().unwrap())
        })
        .sum();
    assert!(odds > 0.0, "{metrics}");
    assert!(odds <= 0.001, "odds {odds}");

    // The owner still activates: the inbox's new codes are long.
    let home = network(8, 0);
    assert_eq!(server.register_from(&home, &victim, PASSWORD), 201);
    let code = code_for(&sink, &victim);
    assert_eq!(code.len(), 8, "{code}");
    let (status, text) = activate_from(&server, &home, &victim, PASSWORD, &code);
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_whose_short_code_was_voided_gets_a_long_one_past_the_mailbox_total() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = behind_proxy(&db, &sink, &[]);
    let owner = unique_email("owner-renewal");
    let (local, domain) = owner.split_once('@').unwrap();
    let home = network(9, 0);
    assert_eq!(server.register_from(&home, &owner, PASSWORD), 201);
    let short = code_for(&sink, &owner);
    assert_eq!(short.len(), 4);
    // Three networks of another site spend the mailbox's total on
    // addresses of the owner's inbox, and its budget of short codes.
    let mut theirs = Vec::new();
    for m in 0..3 {
        for i in 0..10 {
            let tagged = format!("{local}+{m}x{i}@{domain}");
            match server.register_from(&network(10, m), &tagged, WRONG) {
                201 => theirs.push((m, tagged)),
                // The owner's email took one of the total's 30.
                429 => assert_eq!((m, i), (2, 9)),
                other => panic!("{other}"),
            }
        }
    }
    for (m, tagged) in theirs.iter().take(4) {
        let (status, _) = activate_from(&server, &network(10, *m), tagged, WRONG, "0000");
        assert!(status == 400 || status == 200, "{status}");
    }
    // The owner's short code is not checked any more...
    let (status, text) = activate_from(&server, &home, &owner, PASSWORD, &short);
    assert_eq!(status, 400, "{text}");
    // ...and a resend, which the full total does not refuse, brings a long
    // one that activates.
    let (status, text) =
        server.post_from(&home, "/auth/resend", &json!({}), Some((&owner, PASSWORD)));
    assert_eq!(status, 202, "{text}");
    let long = codes_for(&sink, &owner, 2).pop().unwrap();
    assert_eq!(long.len(), 8, "{long}");
    let (status, text) = activate_from(&server, &home, &owner, PASSWORD, &long);
    assert_eq!(status, 200, "{text}");
}
