//! Abuse resistance (docs/LIMITS.md): guessing codes, squatting addresses,
//! flooding, mail bombing, guessing passwords. Real PostgreSQL and Redis,
//! small windows.

use futures_util::future::join_all;
use serde_json::json;
use std::time::Duration;

use crate::common::{
    MailSink, PASSWORD, Reply, Server, TestApp, assert_limited, basic, failed_activations,
    unique_email, unique_ip, wrong_code,
};

const ATTEMPTS: &str = "Too many activation attempts. Please try again later.";
const AUTH: &str = "Too many failed authentication attempts. Please try again later.";

// ---- guessing codes ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_failure_budget_outlives_lockouts_and_new_codes_until_unlock() {
    let app = TestApp::with(&[
        ("ACTIVATION_MAX_FAILURES", "3"),
        ("ACTIVATION_ATTEMPT_LIMIT", "2"),
        ("ACTIVATION_LOCK_SECONDS", "1"),
        ("RESEND_PER_MINUTE_LIMIT", "100"),
    ])
    .await;
    let email = unique_email("budget");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    for _ in 0..2 {
        app.activate(&email, PASSWORD, wrong_code(&code))
            .await
            .assert_detail(400, "Invalid or expired activation code");
    }
    // The window's lockout...
    assert_limited(&app.activate(&email, PASSWORD, &code).await, ATTEMPTS);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // ...ends, and a new code does not renew the budget.
    app.resend(&email, PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    let code = app.latest_code(&email).await;
    app.activate(&email, PASSWORD, wrong_code(&code))
        .await
        .assert_detail(400, "Invalid or expired activation code");
    assert_eq!(failed_activations(&app).await, 3);
    // Spent: even the right code is refused, for the registration's life.
    let wait = assert_limited(&app.activate(&email, PASSWORD, &code).await, ATTEMPTS);
    assert!(wait > 86_000, "until the registration expires: {wait}");

    let shown = crate::common::server::run(
        &app.db.url,
        &[("ACTIVATION_MAX_FAILURES", "3")],
        &["user", "show", &email],
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("0 failed activation(s) left: spent"),
        "{shown}"
    );

    let unlocked = crate::common::server::run(&app.db.url, &[], &["user", "unlock", &email]);
    assert!(unlocked.status.success());
    assert_eq!(failed_activations(&app).await, 0);
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_guesses_cannot_overspend_the_budget() {
    let app = TestApp::with(&[
        ("ACTIVATION_MAX_FAILURES", "3"),
        ("ACTIVATION_ATTEMPT_LIMIT", "1000"),
    ])
    .await;
    let email = unique_email("budget-race");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    let replies =
        join_all((0..20).map(|_| app.activate(&email, PASSWORD, wrong_code(&code)))).await;
    let statuses: Vec<u16> = replies.iter().map(|reply| reply.status.code).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 400).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        17,
        "{statuses:?}"
    );
    assert_eq!(failed_activations(&app).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_guessing_across_many_accounts_is_limited_by_its_ip() {
    let app = TestApp::with(&[
        ("ACTIVATION_FAILURE_PER_IP_LIMIT", "4"),
        ("ACTIVATION_FAILURE_PER_IP_WINDOW_SECONDS", "60"),
    ])
    .await;
    let (guesser, neighbour) = (unique_ip(), unique_ip());
    let mut accounts = Vec::new();
    for i in 0..3 {
        let email = unique_email(&format!("spread{i}"));
        app.register(&email, PASSWORD).await;
        let code = app.latest_code(&email).await;
        accounts.push((email, code));
    }
    // Two wrong guesses on each of two accounts: each far from its own
    // budget, but the client's share is spent.
    for (email, code) in &accounts[..2] {
        for _ in 0..2 {
            app.activate_from(&guesser, email, PASSWORD, wrong_code(code))
                .await
                .assert_detail(400, "Invalid or expired activation code");
        }
    }
    let (email, code) = &accounts[2];
    assert_limited(
        &app.activate_from(&guesser, email, PASSWORD, wrong_code(code))
            .await,
        ATTEMPTS,
    );
    // Refused before the code is looked at: even the right one waits.
    assert_limited(
        &app.activate_from(&guesser, email, PASSWORD, code).await,
        ATTEMPTS,
    );
    let spent = app
        .db
        .count("SELECT sum(failed_activations)::bigint AS n FROM users")
        .await;
    assert_eq!(spent, 4);
    // Another client is not held back, and a success costs nothing.
    app.activate_from(&neighbour, email, PASSWORD, code)
        .await
        .assert_detail(200, "Account activated");
}

// ---- squatting -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_pending_registration_starts_afresh_for_its_new_owner() {
    let app = TestApp::with(&[("PENDING_ACCOUNT_TTL_SECONDS", "1")]).await;
    let email = unique_email("squat");
    let squatter = "Squ4tter!pass";
    app.register(&email, squatter)
        .await
        .assert_detail(201, "Activation email sent");
    let old_code = app.latest_code(&email).await;
    app.activate(&email, squatter, wrong_code(&old_code)).await;
    app.register(&email, PASSWORD)
        .await
        .assert_detail(409, "Activation code already issued");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.register(&email, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    assert_eq!(app.db.count("SELECT count(*) AS n FROM users").await, 1);
    assert_eq!(failed_activations(&app).await, 0, "a new budget");
    // The new password, the new code; the old ones are void.
    app.activate(&email, squatter, &old_code)
        .await
        .assert_detail(401, "Invalid authentication credentials");
    let code = app.latest_code(&email).await;
    if code != old_code {
        app.activate(&email, PASSWORD, &old_code)
            .await
            .assert_detail(400, "Invalid or expired activation code");
    }
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
    // An active account never expires.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.register(&email, squatter)
        .await
        .assert_detail(409, "Account already active");
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_registrations_of_an_expired_address_have_exactly_one_winner() {
    let app = TestApp::with(&[
        ("PENDING_ACCOUNT_TTL_SECONDS", "1"),
        // Each of the racers counts an email before one wins.
        ("EMAIL_PER_MAILBOX_DAILY_LIMIT", "100"),
    ])
    .await;
    let email = unique_email("squat-race");
    app.register(&email, "Squ4tter!pass").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let replies = join_all((0..10).map(|_| app.register(&email, PASSWORD))).await;
    let created = replies
        .iter()
        .filter(|reply| reply.status.code == 201)
        .count();
    let refused = replies
        .iter()
        .filter(|reply| reply.status.code == 409)
        .count();
    assert_eq!((created, refused), (1, 9), "{replies:?}");
    // One live code, for the winner.
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM activation_codes WHERE used_at IS NULL AND superseded_at IS NULL")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_pending_ttl_of_zero_a_registration_never_expires() {
    let app = TestApp::with(&[("PENDING_ACCOUNT_TTL_SECONDS", "0")]).await;
    let email = unique_email("forever");
    app.register(&email, PASSWORD).await;
    let mut conn = app.db.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE users SET created_at = now() - interval '400 days'"),
        &mut conn,
    )
    .await
    .unwrap();
    app.register(&email, PASSWORD)
        .await
        .assert_detail(409, "Activation code already issued");
}

// ---- password guessing --------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_are_limited_per_email_right_password_or_not_before_any_hashing() {
    let app = TestApp::with(&[
        ("AUTH_FAILURE_LIMIT", "3"),
        ("AUTH_FAILURE_WINDOW_SECONDS", "60"),
    ])
    .await;
    let email = unique_email("guess");
    app.register(&email, PASSWORD).await;
    for _ in 0..3 {
        app.resend(&email, "Wr0ng!pass")
            .await
            .assert_detail(401, "Invalid authentication credentials");
    }
    assert_limited(&app.resend(&email, "Wr0ng!pass").await, AUTH);
    let wait = assert_limited(&app.resend(&email, PASSWORD).await, AUTH);
    assert!((1..=60).contains(&wait), "{wait}");

    // The same limit seen by an instance whose password hasher refuses all
    // work (any bcrypt call would be a 503): a 429, so no hash was tried.
    let settings = crate::common::settings_for(&app.db, &[("AUTH_FAILURE_LIMIT", "3")]);
    let accounts = activator::accounts::Accounts::build(&settings)
        .await
        .unwrap()
        .with_hasher(activator::password::Hasher::with_concurrency(4, 1, 0, 4).unwrap());
    let busy = rocket::local::asynchronous::Client::tracked(activator::rocket(
        activator::figment().merge(("log_level", "off")),
        accounts,
        crate::common::locales(&settings),
        settings.network.clone(),
    ))
    .await
    .unwrap();
    let reply = Reply::from(
        busy.post("/auth/resend")
            .header(basic(&email, PASSWORD))
            .dispatch()
            .await,
    )
    .await;
    assert_limited(&reply, AUTH);
    // A right password under the limit gives its count back: only failures
    // are counted (another address, same instance).
    let other = unique_email("guess-ok");
    app.register(&other, PASSWORD).await;
    for _ in 0..5 {
        let status = app.resend(&other, PASSWORD).await.status.code;
        assert!(status == 202 || status == 429, "{status}");
    }
    app.resend(&other, "Wr0ng!pass")
        .await
        .assert_detail(401, "Invalid authentication credentials");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_are_limited_per_client_ip_and_exempt_clients_are_not() {
    let app = TestApp::with(&[("AUTH_FAILURE_PER_IP_LIMIT", "3")]).await;
    let attacker = unique_ip();
    let attacker = attacker.as_str();
    for i in 0..3 {
        let email = unique_email(&format!("spray{i}"));
        app.resend_from(attacker, &email, "Wr0ng!pass")
            .await
            .assert_detail(401, "Invalid authentication credentials");
    }
    assert_limited(
        &app.resend_from(attacker, &unique_email("spray3"), "Wr0ng!pass")
            .await,
        AUTH,
    );
    // Other clients are not affected, and loopback is exempt.
    for (ip, tries) in [(unique_ip(), 3), ("127.0.0.1".into(), 6), ("::1".into(), 6)] {
        for _ in 0..tries {
            app.resend_from(&ip, &unique_email("other"), "Wr0ng!pass")
                .await
                .assert_detail(401, "Invalid authentication credentials");
        }
    }
}

// ---- flooding ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn registrations_are_limited_per_client_ip() {
    let app = TestApp::with(&[
        ("REGISTER_PER_IP_LIMIT", "3"),
        ("REGISTER_PER_IP_WINDOW_SECONDS", "60"),
    ])
    .await;
    // An IPv6 client is its /64: other addresses in it are the same client.
    let same_64 = |ip: &str, host: u16| {
        let prefix: Vec<&str> = ip.split(':').take(4).collect();
        format!("{}::{host:x}", prefix.join(":"))
    };
    let (flooder, neighbour) = (unique_ip(), unique_ip());
    for i in 0..3u16 {
        // Each from another address of the flooder's /64.
        app.register_from(
            &same_64(&flooder, i + 2),
            &unique_email(&format!("flood{i}")),
            PASSWORD,
        )
        .await
        .assert_detail(201, "Activation email sent");
    }
    let reply = app
        .register_from(&same_64(&flooder, 9), &unique_email("flood3"), PASSWORD)
        .await;
    let wait = assert_limited(
        &reply,
        "Too many registration attempts. Please try again later.",
    );
    assert!(wait <= 60);
    assert_eq!(app.db.count("SELECT count(*) AS n FROM users").await, 3);
    app.register_from(&neighbour, &unique_email("neighbour"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    for i in 0..5 {
        app.register_from("127.0.0.1", &unique_email(&format!("local{i}")), PASSWORD)
            .await
            .assert_detail(201, "Activation email sent");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_cannot_take_the_whole_hash_queue() {
    let app = TestApp::with(&[
        ("BCRYPT_COST", "8"),
        ("HASH_QUEUE_PER_IP", "2"),
        ("REGISTER_PER_IP_LIMIT", "1000"),
    ])
    .await;
    let (flooder, other_client) = (unique_ip(), unique_ip());
    let flood = join_all((0..20).map(|i| {
        let (app, flooder) = (&app, &flooder);
        async move {
            app.register_from(flooder, &unique_email(&format!("flood{i}")), PASSWORD)
                .await
        }
    }));
    let other = async {
        // Arrives while the flood holds its places.
        tokio::time::sleep(Duration::from_millis(20)).await;
        app.register_from(&other_client, &unique_email("fair"), PASSWORD)
            .await
    };
    let (flood, other) = tokio::join!(flood, other);
    other.assert_detail(201, "Activation email sent");
    let refused = flood
        .iter()
        .filter(|reply| reply.status.code == 429)
        .count();
    let created = flood
        .iter()
        .filter(|reply| reply.status.code == 201)
        .count();
    assert_eq!(refused + created, 20, "no 503: {flood:?}");
    assert!(refused >= 10, "{refused} refused of 20");
    for reply in flood.iter().filter(|reply| reply.status.code == 429) {
        assert_limited(
            reply,
            "Too many requests in progress. Please try again later.",
        );
    }
}

// ---- mail bombing ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn one_mailbox_gets_a_limited_number_of_emails_a_day_whatever_the_tags() {
    let app = TestApp::with(&[
        ("EMAIL_PER_MAILBOX_DAILY_LIMIT", "3"),
        ("RESEND_PER_MINUTE_LIMIT", "100"),
    ])
    .await;
    let victim = unique_email("victim");
    let (user, domain) = victim.split_once('@').unwrap();
    let tagged = |tag: &str| format!("{user}+{tag}@{domain}");
    app.register(&tagged("1"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    app.register(&tagged("2"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    app.resend(&tagged("1"), PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    const MAILBOX: &str =
        "Too many activation emails to this address today. Please try again later.";
    let wait = assert_limited(&app.register(&tagged("3"), PASSWORD).await, MAILBOX);
    assert!(wait > 86_000, "{wait}");
    assert_limited(&app.register(&victim, PASSWORD).await, MAILBOX);
    assert_limited(&app.resend(&tagged("2"), PASSWORD).await, MAILBOX);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM email_outbox").await,
        3
    );
    app.register(&unique_email("someone-else"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn fullwidth_and_unicode_domains_are_one_account_and_mailed_in_ascii() {
    let app = TestApp::new().await;
    let user = unique_email("idna").split_once('@').unwrap().0.to_owned();
    app.register(&format!("{user}@ｅｘａｍｐｌｅ.com"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    app.register(&format!("{user}@example.com"), PASSWORD)
        .await
        .assert_detail(409, "Activation code already issued");
    app.register(&format!("{user}@EXAMPLE.com"), PASSWORD)
        .await
        .assert_detail(409, "Activation code already issued");
    app.register(&format!("{user}@bücher.de"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    app.resend(&format!("{user}@xn--bcher-kva.de"), PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");

    let sink = MailSink::start();
    app.deliver(&sink).await;
    let mut recipients: Vec<String> = sink
        .delivered()
        .iter()
        .map(|message| message["to"].as_str().unwrap().to_owned())
        .collect();
    recipients.sort();
    assert_eq!(
        recipients,
        [
            format!("{user}@example.com"),
            format!("{user}@xn--bcher-kva.de")
        ],
        "each message once (the resend superseded the first code's)"
    );
}

// ---- longer codes ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn code_length_shapes_codes_validation_and_the_openapi_pattern() {
    let app = TestApp::with(&[("CODE_LENGTH", "6")]).await;
    let email = unique_email("six");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    assert_eq!(code.len(), 6);
    let reply = app.activate(&email, PASSWORD, &code[..4]).await;
    reply.assert_validation(json!(["body", "code"]), "string_too_short");
    assert!(
        reply.body.contains("at least 6 characters"),
        "{}",
        reply.body
    );
    let reply = app.activate(&email, PASSWORD, "12345a").await;
    assert!(reply.body.contains(r"'^\\d{6}$'"), "{}", reply.body);
    let doc = app.get("/openapi.json").await.json();
    let schema = &doc["components"]["schemas"]["ActivateRequest"]["properties"]["code"];
    assert_eq!(schema["pattern"], r"^\d{6}$");
    assert_eq!(
        (schema["minLength"].as_u64(), schema["maxLength"].as_u64()),
        (Some(6), Some(6))
    );

    let sink = MailSink::start();
    app.deliver(&sink).await;
    assert!(
        sink.delivered()[0]["body"]
            .as_str()
            .unwrap()
            .contains(&code)
    );
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

// ---- the client's address, through the real binary -------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_is_believed_from_trusted_proxies_only_right_most_first() {
    let db = crate::common::TestDb::new().await;
    let server = Server::start(
        &db.url,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("RATE_LIMIT_EXEMPT", ""),
            ("REGISTER_PER_IP_LIMIT", "2"),
        ],
    );
    let agent = Server::agent();
    let register = |forwarded: &[&str], extra: Option<(&str, &str)>| {
        let mut request = agent.post(format!("{}/auth/register", server.base));
        for value in forwarded {
            request = request.header("X-Forwarded-For", *value);
        }
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request
            .send_json(json!({"email": unique_email("xff"), "password": PASSWORD}))
            .unwrap()
            .status()
            .as_u16()
    };
    let (client, other) = (unique_ip(), unique_ip());
    // The client forged the left part; the proxy appended what it saw.
    assert_eq!(register(&[&format!("198.51.100.1, {client}")], None), 201);
    assert_eq!(register(&[&client], None), 201);
    assert_eq!(register(&[&format!("9.9.9.9, {client}")], None), 429);
    assert_eq!(register(&[&other], None), 201);
    // X-Real-IP changes nothing (Rocket's reading of it is off).
    let third = unique_ip();
    assert_eq!(register(&[&third], Some(("X-Real-IP", "192.0.2.1"))), 201);
    assert_eq!(register(&[&third], Some(("X-Real-IP", "192.0.2.2"))), 201);
    assert_eq!(register(&[&third], Some(("X-Real-IP", "192.0.2.3"))), 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exempt_peer_sending_forwarded_for_is_warned_about_once() {
    let db = crate::common::TestDb::new().await;
    let server = Server::start(&db.url, &[("REGISTER_PER_IP_LIMIT", "1")]);
    let agent = Server::agent();
    for _ in 0..3 {
        let status = agent
            .post(format!("{}/auth/register", server.base))
            .header("X-Forwarded-For", "203.0.113.5")
            .send_json(json!({"email": unique_email("warned"), "password": PASSWORD}))
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 201, "loopback is exempt by default");
    }
    let (_, log) = server.stop_with("TERM");
    let warnings = log
        .lines()
        .filter(|line| line.contains("TRUSTED_PROXIES"))
        .count();
    assert_eq!(warnings, 1, "{log}");
}
