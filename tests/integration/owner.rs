//! The owner of an address always wins (docs/LIMITS.md "The owner of an
//! address", its threat model): against an attacker who cannot read the
//! inbox, with as many networks as it likes, reacting at once to whatever
//! it sees, the owner who registers and types the newest code in the inbox
//! activates on the first try; one inbox gets at most its day's total of
//! emails plus one per site; nothing the attacker can see changes when the
//! owner registers. Against the real binary; clients are named through
//! loopback's `X-Forwarded-For` (a trusted proxy by default).

use std::time::Duration;

use futures_util::future::join_all;

use crate::common::email::{code_for, codes_for, scrape, serve_with_metrics, settled, value};
use crate::common::{
    Api, MailSink, PASSWORD, Reply, Server, TestDb, code_in, ipv4, ipv6, unique_email,
};

const WRONG: &str = "Wr0ng!pass";
const ATTACKER: &str = "Att4cker!pass";
const PENDING: &str = "Activation code already issued";

fn serve(db: &TestDb, sink: &MailSink, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("EMAIL_API_URL", sink.url.as_str())];
    env.extend_from_slice(extra);
    Server::start(&db.url, &env)
}

/// The code of the newest email the inbox of `spellings` (the addresses
/// that reach it) received, once `sink` has had at least `at_least`.
fn newest_code(sink: &MailSink, spellings: &[&str], at_least: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let inbox: Vec<_> = sink
            .delivered()
            .into_iter()
            .filter(|message| spellings.iter().any(|to| message["to"] == *to))
            .collect();
        if inbox.len() >= at_least {
            return code_in(inbox.last().unwrap()["body"].as_str().unwrap());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} emails",
            inbox.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_from_many_sites_never_take_the_owners_turn() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink, &[]);
    let address = unique_email("owner-claims");
    let home = ipv4(1);
    // The attacker registers first, and probes what it can see.
    assert_eq!(
        server
            .register_from(&ipv4(100), &address, ATTACKER)
            .await
            .code(),
        201
    );
    let probe = async || {
        server
            .activate_from(&ipv4(100), &address, ATTACKER, "0000")
            .await
            .pair()
    };
    let before = probe().await;
    // The owner registers; the attacker reacts at once, from eight more
    // sites, with claims of its own and a resend of its first.
    server
        .register_from(&home, &address, PASSWORD)
        .await
        .assert_detail(409, PENDING);
    let reactions = (0..8).map(|i| {
        let (server, address) = (&server, &address);
        async move {
            let password = format!("Att4cker!{i}");
            server
                .register_from(&ipv4(101 + i), address, &password)
                .await
                .code()
        }
    });
    let first = ipv4(100);
    let (claimed, resent) = tokio::join!(
        join_all(reactions),
        server.resend_from(&first, &address, ATTACKER)
    );
    assert!(claimed.iter().all(|&status| status == 409), "{claimed:?}");
    assert_eq!(resent.code(), 202);
    // What the attacker sees did not change.
    assert_eq!(probe().await, before);
    // The owner reads the newest code in the inbox, takes a second, types it.
    let code = newest_code(&sink, &[&address], 11);
    tokio::time::sleep(Duration::from_secs(1)).await;
    server
        .activate_from(&home, &address, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
    assert_eq!(server.resend(&address, ATTACKER).await.code(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn squatting_the_address_at_each_expiry_gains_nothing() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink, &[("PENDING_ACCOUNT_TTL_SECONDS", "1")]);
    for round in 0..3 {
        let address = unique_email(&format!("owner-squat{round}"));
        assert_eq!(
            server
                .register_from(&ipv4(100), &address, ATTACKER)
                .await
                .code(),
            201
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Expired: the attacker is first again.
        assert_eq!(
            server
                .register_from(&ipv4(100), &address, ATTACKER)
                .await
                .code(),
            201
        );
        server
            .register_from(&ipv4(1), &address, PASSWORD)
            .await
            .assert_detail(409, PENDING);
        let code = newest_code(&sink, &[&address], 3);
        server
            .activate_from(&ipv4(1), &address, PASSWORD, &code)
            .await
            .assert_detail(200, "Account activated");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sign_in_ceiling_never_shuts_the_owner_out() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink, &[]);
    for (label, fresh) in [("ipv4", ipv4(9_000)), ("ipv6", ipv6(9_000, 1))] {
        let address = unique_email(&format!("owner-ceiling-{label}"));
        assert_eq!(
            server
                .register_from(&ipv4(100), &address, ATTACKER)
                .await
                .code(),
            201
        );
        // 100 wrong passwords from 10 networks reach the ceiling...
        let networks = (0..10u32).map(|n| {
            let (server, address) = (&server, &address);
            async move {
                let mut statuses = Vec::new();
                for _ in 0..10 {
                    statuses.push(
                        server
                            .resend_from(&ipv4(1_000 + n), address, WRONG)
                            .await
                            .code(),
                    );
                }
                statuses
            }
        });
        let statuses: Vec<u16> = join_all(networks).await.concat();
        assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
        // ...and 100 more networks spend the tries past it, one each.
        for chunk in (0..100u32).collect::<Vec<_>>().chunks(20) {
            let passes = chunk.iter().map(|i| {
                let (server, address) = (&server, &address);
                async move {
                    server
                        .resend_from(&ipv4(2_000 + i), address, WRONG)
                        .await
                        .code()
                }
            });
            let statuses = join_all(passes).await;
            assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
        }
        assert_eq!(
            server
                .resend_from(&ipv4(3_000), &address, WRONG)
                .await
                .code(),
            429
        );
        // The owner registers from home and activates from elsewhere.
        server
            .register_from(&ipv4(1), &address, PASSWORD)
            .await
            .assert_detail(409, PENDING);
        let code = newest_code(&sink, &[&address], 2);
        server
            .activate_from(&fresh, &address, PASSWORD, &code)
            .await
            .assert_detail(200, "Account activated");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_inbox_gets_at_most_its_total_plus_one_email_per_site_a_day() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink, &[("RESEND_PER_MINUTE_LIMIT", "100")]);
    // One Gmail inbox, spelled many ways: +tags, dots, googlemail.
    let owner = format!(
        "ownerinbox{}{}@gmail.com",
        std::process::id(),
        rand_suffix()
    );
    let local = owner.split('@').next().unwrap().to_owned();
    let spellings: Vec<String> = (0..40)
        .map(|i| match i % 4 {
            0 => format!("{local}+{i}@gmail.com"),
            1 => format!("{}.{}+{i}@gmail.com", &local[..3], &local[3..]),
            2 => format!("{local}+{i}@googlemail.com"),
            _ => format!("{}.{}@gmail.com", &local[..i % 7 + 1], &local[i % 7 + 1..]),
        })
        .collect();
    // The attacker: 16 /64s of one /48, registering spellings and
    // resending each, until every request is refused.
    let mut asked = 0;
    for round in 0..3 {
        for (i, spelling) in spellings.iter().enumerate() {
            let client = ipv6(1, u32::try_from(i % 16).unwrap());
            if round == 0 {
                server.register_from(&client, spelling, ATTACKER).await;
            } else {
                server.resend_from(&client, spelling, ATTACKER).await;
            }
            asked += 1;
        }
    }
    assert_eq!(asked, 120);
    settled(&db, Duration::from_secs(30)).await;
    let inbox = |sink: &MailSink| {
        let inboxes = activator::address::Inboxes::new(
            vec![("googlemail.com".into(), "gmail.com".into())],
            vec!["gmail.com".into()],
        );
        let target = inboxes.of(&activator::address::normalize(&owner).unwrap());
        sink.delivered()
            .into_iter()
            .filter(|message| {
                let to = activator::address::normalize(message["to"].as_str().unwrap()).unwrap();
                inboxes.of(&to) == target
            })
            .count()
    };
    // The total (30) and the site's first.
    assert_eq!(inbox(&sink), 31);
    // The owner, from a site of its own, still gets its code, and in.
    let home = ipv4(1);
    assert_eq!(
        server.register_from(&home, &owner, PASSWORD).await.code(),
        201
    );
    let code = code_for(&sink, &owner);
    server
        .activate_from(&home, &owner, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
    assert_eq!(inbox(&sink), 32);
}

/// A few random hex digits, so reruns use other Gmail inboxes.
fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_401_whatever_the_account_and_its_limits() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink, &[]);
    // A pending account locked out and past its resend limit.
    let pending = unique_email("owner-401-pending");
    assert_eq!(server.register(&pending, PASSWORD).await.code(), 201);
    let code = code_for(&sink, &pending);
    let wrong_code = if code == "0000" { "1111" } else { "0000" };
    for _ in 0..5 {
        assert_eq!(
            server.activate(&pending, PASSWORD, wrong_code).await.code(),
            400
        );
    }
    assert_eq!(server.activate(&pending, PASSWORD, &code).await.code(), 429);
    assert_eq!(server.resend(&pending, PASSWORD).await.code(), 202);
    assert_eq!(server.resend(&pending, PASSWORD).await.code(), 429);
    // An active one, and none at all.
    let active = unique_email("owner-401-active");
    assert_eq!(server.register(&active, PASSWORD).await.code(), 201);
    let code = code_for(&sink, &active);
    assert_eq!(server.activate(&active, PASSWORD, &code).await.code(), 200);
    let unknown = unique_email("owner-401-unknown");
    let answers = |replies: Vec<Reply>| -> Vec<(u16, String, Vec<String>)> {
        replies
            .into_iter()
            .map(|reply| {
                let names = reply
                    .headers
                    .iter()
                    .map(|(name, _)| name.clone())
                    .filter(|name| name != "x-request-id")
                    .collect();
                (reply.code(), reply.body, names)
            })
            .collect()
    };
    for address in [&pending, &active, &unknown] {
        let replies = vec![
            server.activate(address, WRONG, "1234").await,
            server.resend(address, WRONG).await,
        ];
        let seen = answers(replies);
        for (status, body, headers) in &seen {
            assert_eq!(*status, 401, "{address}: {body}");
            assert_eq!(body, r#"{"detail":"Invalid authentication credentials"}"#);
            assert!(
                headers.contains(&"www-authenticate".to_owned()),
                "{headers:?}"
            );
            assert!(!headers.contains(&"retry-after".to_owned()), "{headers:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_pending_registration_signs_in_no_more() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink, &[("PENDING_ACCOUNT_TTL_SECONDS", "1")]);
    let address = unique_email("owner-expired");
    assert_eq!(server.register(&address, PASSWORD).await.code(), 201);
    let code = code_for(&sink, &address);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(server.resend(&address, PASSWORD).await.code(), 401);
    assert_eq!(server.activate(&address, PASSWORD, &code).await.code(), 401);
    // Registering again starts afresh.
    assert_eq!(server.register(&address, PASSWORD).await.code(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_clients_at_once_make_one_account_and_no_5xx() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink, &[]);
    let address = unique_email("owner-fifty");
    let work = (0..50u32).map(|i| {
        let (server, address) = (&server, &address);
        async move {
            let client = ipv4(500 + i);
            let password = format!("Fifty!pass{}", i % 5);
            match i % 4 {
                0 | 1 => server.register_from(&client, address, &password).await,
                2 => server.resend_from(&client, address, &password).await,
                _ => {
                    server
                        .activate_from(&client, address, &password, "0000")
                        .await
                }
            }
        }
    });
    let replies = join_all(work).await;
    for reply in &replies {
        assert!(reply.code() < 500, "{reply:?}");
    }
    assert_eq!(
        replies.iter().filter(|reply| reply.code() == 201).count(),
        1,
        "{replies:?}"
    );
    let accounts = db
        .count(&format!(
            "SELECT count(*) AS n FROM users WHERE email = '{address}'"
        ))
        .await;
    assert_eq!(accounts, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_the_attacker_sees_changes_when_the_owner_registers() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(&db, &sink, &[]);
    let verifies = || {
        value(
            &scrape(&metrics),
            "activator_password_hashes_total{work=\"verify\"}",
        )
        .unwrap()
    };
    // Two addresses the attacker registered first; the owner of one claims
    // it. The attacker's probes of both must read the same.
    let claimed = unique_email("owner-seen-claimed");
    let quiet = unique_email("owner-seen-quiet");
    let mut seen = Vec::new();
    for (address, owner_claims) in [(&claimed, true), (&quiet, false)] {
        let attacker = ipv4(if owner_claims { 100 } else { 200 });
        assert_eq!(
            server
                .register_from(&attacker, address, ATTACKER)
                .await
                .code(),
            201
        );
        code_for(&sink, address);
        if owner_claims {
            assert_eq!(
                server
                    .register_from(&ipv4(1), address, PASSWORD)
                    .await
                    .code(),
                409
            );
        }
        let before = verifies();
        let replies = vec![
            server
                .register_from(&attacker, address, "An0ther!pass")
                .await,
            server.resend_from(&attacker, address, ATTACKER).await,
            server.resend_from(&attacker, address, ATTACKER).await,
            server
                .activate_from(&attacker, address, ATTACKER, "0000")
                .await,
            server
                .activate_from(&attacker, address, ATTACKER, "00000000")
                .await,
            server
                .activate_from(&attacker, address, WRONG, "0000")
                .await,
            server.resend_from(&attacker, address, WRONG).await,
        ];
        let bcrypt = verifies() - before;
        let answers: Vec<(u16, String, Vec<String>)> = replies
            .into_iter()
            .map(|reply| {
                let names = reply
                    .headers
                    .iter()
                    .map(|(name, _)| name.clone())
                    .filter(|name| name != "x-request-id")
                    .collect();
                (reply.code(), reply.body, names)
            })
            .collect();
        seen.push((answers, bcrypt));
    }
    assert_eq!(seen[0], seen[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_of_guessing_from_64_networks_gives_one_inbox_odds_under_a_thousandth() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics_url) = serve_with_metrics(&db, &sink, &[]);
    let victim = unique_email("odds");
    let (local, domain) = victim.split_once('@').unwrap();
    let networks: Vec<String> = (0..64).map(|m| ipv6(7, m)).collect();
    // Each network registers an address of the victim's inbox while the
    // inbox takes them, then guesses the codes (mailed to the victim) from
    // every network in turn, each address until refused.
    let mut accounts = Vec::new();
    for (i, from) in networks.iter().enumerate() {
        let address = format!("{local}+{i}@{domain}");
        match server.register_from(from, &address, WRONG).await.code() {
            201 => accounts.push(address),
            429 => {}
            other => panic!("register: {other}"),
        }
    }
    // One /48: the inbox's total (30) and the site's first email.
    assert_eq!(accounts.len(), 31);
    let right: Vec<String> = accounts.iter().map(|a| code_for(&sink, a)).collect();
    let (mut sent, mut turn) = ([0u32; 9], 0);
    // Four guesses an address: below its own lockout (5).
    for (address, right) in accounts.iter().zip(&right) {
        for guess in 0..4 {
            let mut code = format!("{:04}", (turn * 7919 + guess) % 10_000);
            if code == *right {
                code = format!("{:04}", (turn * 7919 + guess + 1) % 10_000);
            }
            let reply = server
                .activate_from(&networks[turn % networks.len()], address, WRONG, &code)
                .await;
            turn += 1;
            assert_eq!(reply.code(), 400, "{reply:?}");
            sent[code.len()] += 1;
        }
    }
    // The sum over every code compared of 1 / 10^length, as the server
    // counts it; the client sent at least as many.
    let metrics = scrape(&metrics_url);
    let counted = |length: usize| {
        value(
            &metrics,
            &format!("activator_wrong_codes_total{{length=\"{length}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let odds = counted(4) / 1e4 + counted(8) / 1e8;
    assert!(counted(4) > 0.0, "{metrics}");
    assert!(counted(4) <= f64::from(sent[4]), "{metrics}");
    assert!(odds <= 0.001, "odds {odds}");
    // The client's own check: the budget spent, even the right short code
    // is no longer compared (a 400, where a check would have been a 200).
    let (address, code) = (&accounts[0], &right[0]);
    assert_eq!(
        server
            .activate_from(&networks[0], address, WRONG, code)
            .await
            .code(),
        400
    );
    // The owner still activates on the first try: its code is long now,
    // and a first attempt is always compared.
    let home = ipv4(1);
    assert_eq!(
        server.register_from(&home, &victim, PASSWORD).await.code(),
        201
    );
    let code = code_for(&sink, &victim);
    assert_eq!(code.len(), 8, "{code}");
    server
        .activate_from(&home, &victim, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");

    // Counted by the client alone, without the server's counter: the same
    // attack on a twin inbox by an attacker who types the right code every
    // time, so each guess that is compared wins. Whether a guess is
    // compared never depends on its digits, so a real attacker's guess is
    // compared where the twin's is, and wins with 1 / 10^length. The twin
    // opens an address at its first compared guess; any further compared
    // guess is paid from the inbox's budget (4 short guesses), whatever
    // the address.
    let twin = unique_email("odds-twin");
    let (local, domain) = twin.split_once('@').unwrap();
    let networks: Vec<String> = (0..64).map(|m| ipv6(8, m)).collect();
    let mut accounts = Vec::new();
    for (i, from) in networks.iter().enumerate() {
        let address = format!("{local}+{i}@{domain}");
        if server.register_from(from, &address, WRONG).await.code() == 201 {
            accounts.push(address);
        }
    }
    assert_eq!(accounts.len(), 31);
    let mut won = [0u32; 9];
    let mut turn = 0;
    for address in &accounts {
        let right = code_for(&sink, address);
        for _ in 0..4 {
            let reply = server
                .activate_from(&networks[turn % networks.len()], address, WRONG, &right)
                .await;
            turn += 1;
            if reply.code() == 200 {
                won[right.len()] += 1;
                break;
            }
            assert_eq!(reply.code(), 400, "{reply:?}");
        }
    }
    let budget = 4.0 / 1e4;
    let odds = f64::from(won[4]) / 1e4 + f64::from(won[8]) / 1e8 + budget;
    assert!(odds <= 0.001, "won {won:?}: odds {odds}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_yearly_budget_of_short_guesses_holds_too() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(
        &db,
        &sink,
        &[
            ("INBOX_SHORT_CODE_GUESSES_DAILY", "1000"),
            ("INBOX_SHORT_CODE_GUESSES_YEARLY", "3"),
            ("ACTIVATION_CODE_TTL_SECONDS", "3"),
        ],
    );
    let checked = || {
        value(
            &scrape(&metrics),
            "activator_wrong_codes_total{length=\"4\"}",
        )
        .unwrap_or(0.0)
    };
    let victim = unique_email("odds-yearly");
    let (local, domain) = victim.split_once('@').unwrap();
    // Two registrants, one after the other (the first's code expired, so
    // the second is alone in the inbox and gets a short code too), each
    // guessing wrong twice.
    let mut last = None;
    for i in 0..2 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(3100)).await;
        }
        let address = format!("{local}+{i}@{domain}");
        assert_eq!(
            server
                .register_from(&ipv4(10 + i), &address, WRONG)
                .await
                .code(),
            201
        );
        let right = code_for(&sink, &address);
        assert_eq!(right.len(), 4, "{right}");
        let wrong = if right == "0000" { "1111" } else { "0000" };
        for _ in 0..2 {
            assert_eq!(
                server
                    .activate_from(&ipv4(10 + i), &address, WRONG, wrong)
                    .await
                    .code(),
                400
            );
        }
        last = Some((address, right));
    }
    // The year's three are spent: the first's two, the second's first
    // (paid when its code was issued). Its second guess was not compared,
    // and nor is its right code, still live: a comparison would be a 200.
    assert_eq!(checked(), 3.0);
    let (address, right) = last.unwrap();
    assert_eq!(
        server
            .activate_from(&ipv4(11), &address, WRONG, &right)
            .await
            .code(),
        400
    );
    assert_eq!(checked(), 3.0);
    // The inbox's new codes are long, and the owner's first try activates.
    assert_eq!(
        server
            .register_from(&ipv4(1), &victim, PASSWORD)
            .await
            .code(),
        201
    );
    let code = code_for(&sink, &victim);
    assert_eq!(code.len(), 8, "{code}");
    server
        .activate_from(&ipv4(1), &victim, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_registrations_from_one_client_leave_the_owner_their_email() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink, &[]);
    let owner = unique_email("owner-tags");
    let (local, domain) = owner.split_once('@').unwrap();
    let attacker = ipv6(5, 0);
    for i in 1..=10 {
        let tagged = format!("{local}+{i}@{domain}");
        assert_eq!(
            server.register_from(&attacker, &tagged, WRONG).await.code(),
            201
        );
    }
    // The attacker's network has spent its share of the inbox...
    let eleventh = format!("{local}+11@{domain}");
    assert_eq!(
        server
            .register_from(&attacker, &eleventh, WRONG)
            .await
            .code(),
        429
    );
    // ...and the owner, from another, registers and activates.
    assert_eq!(
        server
            .register_from(&ipv6(5, 1), &owner, PASSWORD)
            .await
            .code(),
        201
    );
    let code = codes_for(&sink, &owner, 1).pop().unwrap();
    server
        .activate_from(&ipv6(5, 1), &owner, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inbox_takes_its_total_and_each_sites_first_email() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(
        &db,
        &sink,
        &[
            ("EMAIL_PER_MAILBOX_DAILY_LIMIT", "3"),
            ("EMAIL_PER_MAILBOX_DAILY_TOTAL", "2"),
        ],
    );
    let owner = unique_email("owner-total");
    let (local, domain) = owner.split_once('@').unwrap();
    let tagged = |i: u32| format!("{local}+{i}@{domain}");
    // Site 0 (two /64s): its first email is its own; its next two are the
    // total's; then the total refuses. Site 1's first goes all the same;
    // its second meets the full total.
    let asks = [
        (ipv6(6, 0), 1),
        (ipv6(6, 0), 2),
        (ipv6(6, 1), 3),
        (ipv6(6, 1), 4),
        (ipv6(7, 0), 5),
        (ipv6(7, 0), 6),
    ];
    let mut statuses = Vec::new();
    for (client, i) in asks {
        statuses.push(
            server
                .register_from(&client, &tagged(i), PASSWORD)
                .await
                .code(),
        );
    }
    assert_eq!(statuses, [201, 201, 201, 429, 201, 429]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_outlives_the_expiry_of_the_registration_it_claimed() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink, &[("PENDING_ACCOUNT_TTL_SECONDS", "2")]);
    for restart in [false, true] {
        let address = unique_email(&format!("owner-outlives-{restart}"));
        assert_eq!(
            server
                .register_from(&ipv4(100), &address, ATTACKER)
                .await
                .code(),
            201
        );
        // The owner claims near the end of the attacker's registration.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert_eq!(
            server
                .register_from(&ipv4(1), &address, PASSWORD)
                .await
                .code(),
            409
        );
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        // The attacker's registration has expired (and is started afresh,
        // by the attacker again); the owner's claim has not.
        assert_eq!(server.resend(&address, ATTACKER).await.code(), 401);
        let emails = if restart {
            let again = server.register_from(&ipv4(100), &address, ATTACKER).await;
            assert_eq!(again.code(), 201, "{again:?}");
            3
        } else {
            2
        };
        let code = newest_code(&sink, &[&address], emails);
        server
            .activate_from(&ipv4(1), &address, PASSWORD, &code)
            .await
            .assert_detail(200, "Account activated");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proofs_of_a_code_sent_again_live_as_long_as_it() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(
        &db,
        &sink,
        &[
            ("ACTIVATION_CODE_TTL_SECONDS", "3"),
            ("AUTH_FAILURE_LIMIT", "1"),
            ("AUTH_FAILURE_CEILING", "2"),
        ],
    );
    let address = unique_email("owner-late");
    assert_eq!(
        server
            .register_from(&ipv4(100), &address, ATTACKER)
            .await
            .code(),
        201
    );
    assert_eq!(
        server
            .register_from(&ipv4(1), &address, PASSWORD)
            .await
            .code(),
        409
    );
    // The ceiling (2) and the tries past it (2) are spent.
    for n in 0..4 {
        assert_eq!(
            server
                .resend_from(&ipv4(200 + n), &address, WRONG)
                .await
                .code(),
            401
        );
    }
    assert_eq!(
        server.resend_from(&ipv4(300), &address, WRONG).await.code(),
        429
    );
    // Two seconds on, a claim of the attacker's sends the inbox's code
    // again: it lives three seconds from then, and so does the owner's
    // proof, which typing it after its first three seconds needs.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(
        server
            .register_from(&ipv4(101), &address, "An0ther!pass")
            .await
            .code(),
        409
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let code = newest_code(&sink, &[&address], 3);
    server
        .activate_from(&ipv4(2), &address, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_email_waits_for_the_calendar_day_whoever_asked_first() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink, &[("EMAIL_PER_MAILBOX_DAILY_LIMIT", "1")]);
    let owner = unique_email("owner-day");
    let (local, domain) = owner.split_once('@').unwrap();
    // The owner's email first, then the attacker's network spends its one.
    assert_eq!(
        server
            .register_from(&ipv4(1), &owner, PASSWORD)
            .await
            .code(),
        201
    );
    let attacker = ipv4(100);
    let tagged = |i: u32| format!("{local}+{i}@{domain}");
    assert_eq!(
        server
            .register_from(&attacker, &tagged(1), WRONG)
            .await
            .code(),
        201
    );
    let refused = server.register_from(&attacker, &tagged(2), WRONG).await;
    assert_eq!(refused.code(), 429, "{refused:?}");
    // Its wait is the day's end (UTC), not a window the owner started.
    let until_midnight = 86_400
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 86_400;
    let wait = crate::common::retry_after(&refused);
    assert!(
        wait.abs_diff(until_midnight) <= 2,
        "{wait} vs {until_midnight}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_give_back_after_the_day_ended_takes_nothing_from_the_next() {
    // The script that gives an email back, run on a day that ended (its
    // keys gone) while the next day's exist: the next day is untouched.
    let mut redis = crate::common::redis_connection();
    let tag = format!("{{give-back-{}}}", unique_email("day"));
    let (old, new) = (
        [format!("{tag}:emails:1"), format!("{tag}:by-network:1")],
        [format!("{tag}:emails:2"), format!("{tag}:by-network:2")],
    );
    let _: () = redis::pipe()
        .set_ex(&new[0], 5, 600)
        .hset(&new[1], "net", 3)
        .query(&mut redis)
        .unwrap();
    let script = redis::Script::new(include_str!("../../src/limits/release_email.lua"));
    for kind in ["1", "2"] {
        let released: i64 = script
            .key(&old[0])
            .key(&old[1])
            .arg("net")
            .arg("site")
            .arg(kind)
            .invoke(&mut redis)
            .unwrap();
        assert_eq!(released, 0);
    }
    let (total, mine): (i64, i64) = redis::pipe()
        .get(&new[0])
        .hget(&new[1], "net")
        .query(&mut redis)
        .unwrap();
    assert_eq!((total, mine), (5, 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_where_the_provider_is_not_declared_is_another_inbox_for_codes() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink, &[]);
    let owner = unique_email("owner-plus");
    let (local, domain) = owner.split_once('@').unwrap();
    // At example.com `+x` may be somebody else's mailbox, read by the
    // attacker: its code there opens nothing of the owner's address.
    let theirs = format!("{local}+x@{domain}");
    assert_eq!(
        server
            .register_from(&ipv4(1), &owner, PASSWORD)
            .await
            .code(),
        201
    );
    assert_eq!(
        server
            .register_from(&ipv4(100), &theirs, ATTACKER)
            .await
            .code(),
        201
    );
    assert_eq!(
        server
            .register_from(&ipv4(101), &owner, ATTACKER)
            .await
            .code(),
        409
    );
    let read = code_for(&sink, &theirs);
    assert_eq!(
        server
            .activate_from(&ipv4(100), &owner, ATTACKER, &read)
            .await
            .code(),
        400
    );
    let code = codes_for(&sink, &owner, 1).remove(0);
    server
        .activate_from(&ipv4(1), &owner, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operators_declared_provider_folds_its_spellings_for_emails_and_codes() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    // A provider of the operator's: corp-mail.example delivers to the same
    // inboxes as corp.example, which ignores dots. Gmail's rules are off.
    let server = serve(
        &db,
        &sink,
        &[
            ("MAILBOX_ALIAS_DOMAINS", "corp-mail.example=corp.example"),
            ("MAILBOX_DOTLESS_DOMAINS", "corp.example"),
            ("EMAIL_PER_MAILBOX_DAILY_LIMIT", "2"),
        ],
    );
    let local = unique_email("corp").split_once('@').unwrap().0.to_owned();
    let (head, tail) = local.split_at(3);
    let owner = format!("{local}@corp.example");
    let alias = format!("{head}.{tail}@corp-mail.example");
    let tagged = format!("{head}.{tail}+x@corp.example");
    let from = ipv4(7);
    // One network asks the inbox for two emails a day: the third spelling
    // of the same inbox is refused.
    assert_eq!(
        server.register_from(&from, &owner, PASSWORD).await.code(),
        201
    );
    assert_eq!(
        server.register_from(&from, &alias, ATTACKER).await.code(),
        201
    );
    assert_eq!(
        server.register_from(&from, &tagged, ATTACKER).await.code(),
        429
    );
    // The two addresses prove one inbox: the code emailed for the alias
    // activates the owner's address with the owner's password.
    let code = code_for(&sink, &alias);
    assert_eq!(
        code.len(),
        8,
        "two registrants in one inbox share a long code"
    );
    server
        .activate_from(&from, &owner, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");

    // Gmail's rules off: its dotted spellings are inboxes of their own.
    let gmail = format!("{local}@gmail.com");
    let dotted = format!("{head}.{tail}@gmail.com");
    let googlemail = format!("{local}@googlemail.com");
    for address in [&gmail, &dotted, &googlemail] {
        assert_eq!(
            server.register_from(&from, address, PASSWORD).await.code(),
            201
        );
    }
    for address in [&gmail, &dotted, &googlemail] {
        assert_eq!(
            code_for(&sink, address).len(),
            4,
            "{address} is alone in its inbox"
        );
    }
}
