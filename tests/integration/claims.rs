//! Claims, not first come (docs/API.md "Claims"): a registration for a
//! pending address records a claim of its own and mails its code; whoever
//! activates with their own password and their own claim's code wins, in
//! either order. Against the real binary.

use serde_json::{Value, json};

use crate::common::email::{behind_proxy, code_for, codes_for};
use crate::common::server::run;
use crate::common::{MailSink, PASSWORD, Server, TestDb, unique_email};

const ATTACKER: &str = "Att4cker!pass";
const PENDING: &str = r#"{"detail":"Activation code already issued"}"#;

fn serve(db: &TestDb, sink: &MailSink) -> Server {
    Server::start(&db.url, &[("EMAIL_API_URL", sink.url.as_str())])
}

fn register(server: &Server, email: &str, password: &str) -> (u16, String) {
    server.post(
        "/auth/register",
        &json!({"email": email, "password": password}),
        None,
    )
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
    assert_eq!(register(&server, &address, ATTACKER).0, 201);
    // The owner's registration answers as the original did, and its own
    // code reaches the inbox.
    let (status, body) = register(&server, &address, PASSWORD);
    assert_eq!((status, body.as_str()), (409, PENDING));
    let codes = codes_for(&sink, &address, 2);
    let (attackers, owners) = (&codes[0], &codes[1]);
    // A code verifies only its own claim.
    assert_eq!(server.activate(&address, PASSWORD, attackers), 400);
    assert_eq!(server.activate(&address, PASSWORD, owners), 200);
    // The attacker's password opens nothing now.
    assert_eq!(server.activate(&address, ATTACKER, attackers), 401);
    assert_eq!(server.resend(&address, ATTACKER), 401);
    assert_eq!(server.resend(&address, PASSWORD), 409);
    let shown = user_show(&db, &address);
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["claims"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_claims_code_typed_with_the_owners_password_activates_nothing() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink);
    let address = unique_email("claimed-after");
    assert_eq!(register(&server, &address, PASSWORD).0, 201);
    assert_eq!(register(&server, &address, ATTACKER).0, 409);
    let codes = codes_for(&sink, &address, 2);
    let (owners, attackers) = (&codes[0], &codes[1]);
    // The attacker's claim's code (in the owner's inbox) with the owner's
    // password: nothing.
    assert_eq!(server.activate(&address, PASSWORD, attackers), 400);
    assert_eq!(user_show(&db, &address)["state"], "pending");
    assert_eq!(server.activate(&address, PASSWORD, owners), 200);
    assert_eq!(server.activate(&address, ATTACKER, attackers), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_password_again_sends_nothing_and_claims_are_bounded() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = behind_proxy(&db, &sink, &[]);
    let address = unique_email("claims-bounded");
    let register_from =
        |client: &str, password: &str| server.register_from(client, &address, password);
    assert_eq!(register(&server, &address, PASSWORD).0, 201);
    code_for(&sink, &address);
    // As the original: no new email for the same password.
    assert_eq!(register(&server, &address, PASSWORD).0, 409);
    // Five claims, each from a site of its own (unique_ip: its own /48).
    let passwords: Vec<String> = (0..5).map(|i| format!("Cl4im!pass{i}")).collect();
    let sites: Vec<String> = (0..5).map(|_| crate::common::unique_ip()).collect();
    for (password, client) in passwords.iter().zip(&sites) {
        assert_eq!(register_from(client, password), 409);
    }
    // A claimant's own password again: no new email either.
    assert_eq!(register_from(&sites[4], &passwords[4]), 409);
    let codes = codes_for(&sink, &address, 6);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        codes_for(&sink, &address, 6).len(),
        6,
        "one email per claim"
    );
    // Three live claims: the two oldest ended, their passwords open nothing.
    let shown = user_show(&db, &address);
    assert_eq!(shown["claims"].as_array().unwrap().len(), 3, "{shown}");
    assert_eq!(server.resend(&address, &passwords[0]), 401);
    assert_eq!(server.activate(&address, &passwords[1], &codes[2]), 401);
    // A new claim from a site that has one replaces it, no other.
    assert_eq!(register_from(&sites[3], "N3w!claim"), 409);
    assert_eq!(
        user_show(&db, &address)["claims"].as_array().unwrap().len(),
        3
    );
    assert_eq!(server.resend(&address, &passwords[3]), 401);
    assert_eq!(server.resend(&address, "N3w!claim"), 202);
    // A live claim resends its own code; the first registration still
    // activates with its own.
    assert_eq!(server.resend(&address, &passwords[2]), 202);
    assert_eq!(server.activate(&address, PASSWORD, &codes[0]), 200);
    assert_eq!(server.resend(&address, &passwords[3]), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn support_resends_every_claim_and_unlocks_their_budgets() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve(&db, &sink);
    let address = unique_email("claims-support");
    assert_eq!(register(&server, &address, PASSWORD).0, 201);
    assert_eq!(register(&server, &address, ATTACKER).0, 409);
    codes_for(&sink, &address, 2);
    let output = run(
        &db.url,
        &[("EMAIL_API_URL", sink.url.as_str())],
        &["user", "resend", &address],
    );
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("2 new activation codes"),
        "{output:?}"
    );
    let codes = codes_for(&sink, &address, 4);
    // The claim spends its own budget...
    for _ in 0..3 {
        let wrong = if codes[3] == "0000" { "1111" } else { "0000" };
        assert_eq!(server.activate(&address, ATTACKER, wrong), 400);
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
    // ...and the first registration activates with its new code.
    assert_eq!(server.activate(&address, PASSWORD, &codes[2]), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_claims_and_activations_have_exactly_one_winner() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = behind_proxy(&db, &sink, &[]);
    let address = unique_email("claims-race");
    assert_eq!(register(&server, &address, PASSWORD).0, 201);
    let passwords: Vec<String> = (0..3).map(|i| format!("R4ce!pass{i}")).collect();
    let registered: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = passwords
            .iter()
            .map(|password| {
                let (server, address) = (&server, &address);
                // Each claimant from a site of its own.
                let client = crate::common::unique_ip();
                scope.spawn(move || server.register_from(&client, address, password))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(registered, [409, 409, 409]);
    let codes = codes_for(&sink, &address, 4);
    let mut tries: Vec<(String, String)> = vec![(PASSWORD.to_owned(), codes[0].clone())];
    // Each claim's code reached the inbox in some order: each password
    // tries every later code (only its own can work).
    for password in &passwords {
        for code in &codes[1..] {
            tries.push((password.clone(), code.clone()));
        }
    }
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = tries
            .iter()
            .map(|(password, code)| {
                let (server, address) = (&server, &address);
                scope.spawn(move || server.activate(address, password, code))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| [200, 400, 401, 409, 429].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(user_show(&db, &address)["state"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn claiming_cannot_guess_passwords_faster_than_signing_in() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = behind_proxy(&db, &sink, &[("AUTH_FAILURE_LIMIT", "3")]);
    let address = unique_email("claims-guess");
    assert_eq!(register(&server, &address, PASSWORD).0, 201);
    code_for(&sink, &address);
    let guesser = crate::common::unique_ip();
    let register_from = |password: &str| server.register_from(&guesser, &address, password);
    // Each registration compares a guess with the address's passwords: a
    // failed sign-in of this client's for the address.
    for i in 0..3 {
        assert_eq!(register_from(&format!("Gu3ss!{i}xx")), 409);
    }
    codes_for(&sink, &address, 4);
    // The client's failures are spent: still 409, nothing compared or sent.
    assert_eq!(register_from("Gu3ss!4xx"), 409);
    assert_eq!(register_from(PASSWORD), 409);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(codes_for(&sink, &address, 4).len(), 4);
    let (status, _) = server.post_from(
        &guesser,
        "/auth/resend",
        &json!({}),
        Some((&address, PASSWORD)),
    );
    assert_eq!(status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_activation_expires_the_queued_emails_of_the_claims_it_ends() {
    // No dispatcher: both emails are still queued when the owner activates.
    let app = crate::common::TestApp::new().await;
    let (email, code) = crate::common::pending(&app).await;
    app.register_from("198.51.100.7", &email, ATTACKER)
        .await
        .assert_detail(409, "Activation code already issued");
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
    let expired = "SELECT count(*) AS n FROM email_outbox WHERE claim_id IS NOT NULL \
                   AND status = 'expired' AND payload IS NULL AND last_error = 'its claim ended'";
    assert_eq!(app.db.count(expired).await, 1);
}
