//! Claims (docs/API.md "Claims"): a registration for a pending address
//! with a password of its own records a claim and mails the inbox a code;
//! any of the address's passwords activates with any live code of its
//! inbox, so whoever reads the inbox wins, in either order, and no claim
//! ends another. Against the real binary; clients are named through
//! loopback's `X-Forwarded-For` (a trusted proxy by default).

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;

use crate::common::email::{code_for, codes_for, scrape, serve_with_metrics, value};
use crate::common::server::run;
use crate::common::{Api, MailSink, PASSWORD, Server, TestDb, ipv4, unique_email};

const ATTACKER: &str = "Att4cker!pass";
const PENDING: &str = "Activation code already issued";

fn serve(db: &TestDb, sink: &MailSink) -> Server {
    Server::start(&db.url, &[("EMAIL_API_URL", sink.url.as_str())])
}

fn user_show(db: &TestDb, email: &str) -> Value {
    let output = run(&db.url, &[], &["user", "show", email, "--json"]);
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_wins_when_an_attacker_registered_the_address_first() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink);
    let address = unique_email("claimed-first");
    server
        .register_from(&ipv4(1), &address, ATTACKER)
        .await
        .assert_detail(201, "Activation email sent");
    // The owner's registration answers as the original did, and a code
    // reaches the inbox: a long one, the inbox having two registrants.
    server
        .register_from(&ipv4(2), &address, PASSWORD)
        .await
        .assert_detail(409, PENDING);
    let codes = codes_for(&sink, &address, 2);
    assert_eq!((codes[0].len(), codes[1].len()), (4, 8), "{codes:?}");
    // The newest code in the inbox, with the owner's password.
    server
        .activate_from(&ipv4(2), &address, PASSWORD, &codes[1])
        .await
        .assert_detail(200, "Account activated");
    // The attacker's password opens nothing now.
    assert_eq!(
        server.activate(&address, ATTACKER, &codes[0]).await.code(),
        401
    );
    assert_eq!(server.resend(&address, ATTACKER).await.code(), 401);
    assert_eq!(server.resend(&address, PASSWORD).await.code(), 409);
    let shown = user_show(&db, &address);
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["claims"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_who_registered_first_activates_with_a_newer_code_the_attacker_triggered() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink);
    let address = unique_email("claimed-after");
    server
        .register_from(&ipv4(1), &address, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    server
        .register_from(&ipv4(2), &address, ATTACKER)
        .await
        .assert_detail(409, PENDING);
    let codes = codes_for(&sink, &address, 2);
    let (owners, newest) = (&codes[0], &codes[1]);
    assert_eq!((owners.len(), newest.len()), (4, 8), "{codes:?}");
    // The newest email in the owner's inbox is the attacker's doing: its
    // code proves the inbox, and activates the owner's password.
    server
        .activate_from(&ipv4(1), &address, PASSWORD, newest)
        .await
        .assert_detail(200, "Account activated");
    assert_eq!(
        server.activate(&address, ATTACKER, newest).await.code(),
        401
    );
    // The owner's own code would have done as well: another address.
    let other = unique_email("claimed-after-own");
    assert_eq!(
        server
            .register_from(&ipv4(3), &other, PASSWORD)
            .await
            .code(),
        201
    );
    assert_eq!(
        server
            .register_from(&ipv4(4), &other, ATTACKER)
            .await
            .code(),
        409
    );
    let codes = codes_for(&sink, &other, 2);
    server
        .activate_from(&ipv4(3), &other, PASSWORD, &codes[0])
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_password_again_sends_nothing_and_no_claim_ends_another() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink);
    let address = unique_email("claims-unbounded");
    assert_eq!(
        server
            .register_from(&ipv4(1), &address, PASSWORD)
            .await
            .code(),
        201
    );
    code_for(&sink, &address);
    // As the original: no new email for the same password.
    server
        .register_from(&ipv4(1), &address, PASSWORD)
        .await
        .assert_detail(409, PENDING);
    // Eight claims from eight sites: each one a 409 and an email, none
    // ends another, and one long code goes to them all.
    let passwords: Vec<String> = (0..8).map(|i| format!("Cl4im!pass{i}")).collect();
    for (i, password) in passwords.iter().enumerate() {
        let client = ipv4(10 + u32::try_from(i).unwrap());
        server
            .register_from(&client, &address, password)
            .await
            .assert_detail(409, PENDING);
    }
    // A claimant's own password again: nothing.
    assert_eq!(
        server
            .register_from(&ipv4(17), &address, &passwords[7])
            .await
            .code(),
        409
    );
    let codes = codes_for(&sink, &address, 9);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(codes_for(&sink, &address, 9).len(), 9, "one email a claim");
    assert!(codes[1..].iter().all(|code| code == &codes[1]), "{codes:?}");
    let shown = user_show(&db, &address);
    assert_eq!(shown["claims"].as_array().unwrap().len(), 8, "{shown}");
    // Every claimant still signs in; the first registration activates
    // with the newest code, and every claim ends.
    assert_eq!(server.resend(&address, &passwords[0]).await.code(), 202);
    let newest = codes_for(&sink, &address, 10).pop().unwrap();
    server
        .activate(&address, PASSWORD, &newest)
        .await
        .assert_detail(200, "Account activated");
    for password in &passwords {
        assert_eq!(server.resend(&address, password).await.code(), 401);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_to_an_address_with_many_claims_costs_one_bcrypt() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(&db, &sink, &[("CREDENTIAL_PROOF", "off")]);
    let verifies = || {
        value(
            &scrape(&metrics),
            "activator_password_hashes_total{work=\"verify\"}",
        )
        .unwrap()
    };
    let address = unique_email("claims-one-hash");
    assert_eq!(
        server
            .register_from(&ipv4(1), &address, PASSWORD)
            .await
            .code(),
        201
    );
    for i in 0..10 {
        let password = format!("Cl4im!pass{i}");
        assert_eq!(
            server
                .register_from(&ipv4(2 + i), &address, &password)
                .await
                .code(),
            409
        );
    }
    let before = verifies();
    assert_eq!(
        server
            .resend_from(&ipv4(50), &address, "Wr0ng!pass")
            .await
            .code(),
        401
    );
    assert_eq!(verifies() - before, 1.0, "a wrong password: one");
    assert_eq!(
        server
            .resend_from(&ipv4(51), &address, "Cl4im!pass9")
            .await
            .code(),
        202
    );
    assert_eq!(verifies() - before, 2.0, "the last claim's: one");
}

#[tokio::test(flavor = "multi_thread")]
async fn support_resends_a_code_every_registrant_can_use_and_unlocks_their_budgets() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink);
    let address = unique_email("claims-support");
    assert_eq!(
        server
            .register_from(&ipv4(1), &address, PASSWORD)
            .await
            .code(),
        201
    );
    assert_eq!(
        server
            .register_from(&ipv4(2), &address, ATTACKER)
            .await
            .code(),
        409
    );
    codes_for(&sink, &address, 2);
    let output = run(
        &db.url,
        &[("EMAIL_API_URL", sink.url.as_str())],
        &["user", "resend", &address],
    );
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("queued a new activation code"),
        "{output:?}"
    );
    let codes = codes_for(&sink, &address, 3);
    assert_eq!(codes[2].len(), 8, "a code the claims can use: {codes:?}");
    // The claim spends its own budget...
    let wrong = if codes[2] == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    for _ in 0..3 {
        assert_eq!(server.activate(&address, ATTACKER, wrong).await.code(), 400);
    }
    let shown = user_show(&db, &address);
    assert_eq!(shown["claims"][0]["activation_failures_left"], 7, "{shown}");
    assert_eq!(shown["activation_failures_left"], 10, "{shown}");
    let output = run(&db.url, &[], &["user", "unlock", &address]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        user_show(&db, &address)["claims"][0]["activation_failures_left"],
        10
    );
    // ...and the first registration activates with support's code.
    server
        .activate(&address, PASSWORD, &codes[2])
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_claims_and_activations_have_exactly_one_winner() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink);
    let address = unique_email("claims-race");
    assert_eq!(
        server
            .register_from(&ipv4(1), &address, PASSWORD)
            .await
            .code(),
        201
    );
    let passwords: Vec<String> = (0..3).map(|i| format!("R4ce!pass{i}")).collect();
    let registered = join_all(passwords.iter().enumerate().map(|(i, password)| {
        let client = ipv4(10 + u32::try_from(i).unwrap());
        let (server, address) = (&server, &address);
        async move {
            server
                .register_from(&client, address, password)
                .await
                .code()
        }
    }))
    .await;
    assert_eq!(registered, [409, 409, 409]);
    let codes = codes_for(&sink, &address, 4);
    // Every password with every code, at once, each from a client of its
    // own: exactly one activation wins.
    let everyone: Vec<&str> = std::iter::once(PASSWORD)
        .chain(passwords.iter().map(String::as_str))
        .collect();
    let tries: Vec<(u32, &str, &String)> = everyone
        .iter()
        .flat_map(|password| codes.iter().map(move |code| (*password, code)))
        .enumerate()
        .map(|(i, (password, code))| (100 + u32::try_from(i).unwrap(), password, code))
        .collect();
    let statuses = join_all(tries.iter().map(|(client, password, code)| {
        let (server, address) = (&server, &address);
        async move {
            server
                .activate_from(&ipv4(*client), address, password, code)
                .await
                .code()
        }
    }))
    .await;
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 400, 401].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(user_show(&db, &address)["state"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_network_claims_no_faster_than_its_share_of_the_inboxs_emails() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = Server::start(
        &db.url,
        &[
            ("EMAIL_API_URL", sink.url.as_str()),
            ("EMAIL_PER_MAILBOX_DAILY_LIMIT", "3"),
        ],
    );
    let address = unique_email("claims-guess");
    assert_eq!(
        server
            .register_from(&ipv4(1), &address, PASSWORD)
            .await
            .code(),
        201
    );
    code_for(&sink, &address);
    // A registration that guesses the password wrong records a claim: an
    // email of the guesser's network's share. Three, then 429.
    let guesser = ipv4(2);
    for i in 0..3 {
        assert_eq!(
            server
                .register_from(&guesser, &address, &format!("Gu3ss!{i}xx"))
                .await
                .code(),
            409
        );
    }
    let refused = server.register_from(&guesser, &address, "Gu3ss!4xx").await;
    assert_eq!(refused.code(), 429, "{refused:?}");
    // The right password records nothing and sends nothing: the 409 of a
    // claim, and no email (not even the network's).
    assert_eq!(
        server
            .register_from(&ipv4(3), &address, PASSWORD)
            .await
            .code(),
        409
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(codes_for(&sink, &address, 4).len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_activation_expires_the_queued_emails_of_the_claims_it_ends() {
    // No dispatcher: both emails are still queued when the owner activates.
    let app = crate::common::TestApp::new().await;
    let (email, code) = crate::common::pending(&app).await;
    app.register_from("198.51.100.7", &email, ATTACKER)
        .await
        .assert_detail(409, PENDING);
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
    let expired = "SELECT count(*) AS n FROM email_outbox WHERE claim_id IS NOT NULL \
                   AND status = 'expired' AND payload IS NULL AND last_error = 'its claim ended'";
    assert_eq!(app.db.count(expired).await, 1);
}
