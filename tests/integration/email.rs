//! Delivering the activation email through the outbox (docs/EMAIL.md), against
//! the real `serve` and a real HTTP endpoint standing in for the email API:
//! one email per code, retries, dead and expired messages, several
//! instances, a crash and a clean shutdown, LISTEN/NOTIFY, the provider's
//! answers (refusals, 429s, rate limits), the dispatcher's window, no code
//! at rest, a changed `SECRET_KEY`. SMTP is `email_smtp.rs`, the email's
//! language `email_languages.rs`, the development mailbox
//! `email_mailbox.rs`.

use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use serde_json::json;

use activator::code::Code;
use activator::ids::UserId;
use activator::seal::Payload;

use crate::common::Api;
use crate::common::email::{outbox, serve_with_email_api, settled};
use crate::common::mail_sink::Answer;
use crate::common::{
    MailSink, PASSWORD, Server, TestApp, TestDb, code_in, deliver, sealer, settings_for,
    unique_email,
};

/// Queues `n` activation emails (code 1234) for new pending users, as
/// another process (another instance, the CLI) would: the messages in one
/// statement, so one commit wakes every dispatcher at once.
async fn queue_messages(db: &TestDb, n: i64, label: &str) {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let mut conn = db.connect().await;
    let users: Vec<Id> = diesel::sql_query(
        "INSERT INTO users (email, password_hash) \
         SELECT $2 || g || '@example.com', 'x' FROM generate_series(1, $1) g RETURNING id",
    )
    .bind::<diesel::sql_types::BigInt, _>(n)
    .bind::<diesel::sql_types::Text, _>(label)
    .load(&mut conn)
    .await
    .unwrap();
    let ids: Vec<i64> = users.iter().map(|user| user.id).collect();
    let payload = Payload {
        code: Code::from_digits("1234").unwrap(),
        locale: "en".into(),
    };
    let sealed: Vec<Vec<u8>> = ids
        .iter()
        .map(|&id| payload.seal(&sealer(), UserId(id)))
        .collect();
    diesel::sql_query(
        "INSERT INTO email_outbox (user_id, recipient, payload, expires_at) \
         SELECT u.id, u.email, p.payload, now() + interval '60 seconds' \
         FROM unnest($1, $2) AS p(user_id, payload) JOIN users u ON u.id = p.user_id",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(&ids)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Bytea>, _>(&sealed)
    .execute(&mut conn)
    .await
    .unwrap();
}

// ---- delivery through serve -------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_delivers_exactly_one_email_whose_code_activates() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve_with_email_api(&db, &sink, &[]);
    let email = unique_email("deliver");

    let (status, body) = server.register(&email, PASSWORD).await.pair();
    assert_eq!(status, 201, "{body}");
    let delivered = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let message = &delivered[0];
    assert_eq!(message["from"], "accounts@example.org");
    assert_eq!(message["to"], email.as_str());
    let code = code_in(message["body"].as_str().unwrap());
    // The subject carries no code: inbox previews and logs show subjects.
    assert_eq!(message["subject"], "Your activation code");
    assert!(message["body"].as_str().unwrap().contains("1 minute"));
    assert!(message["html"].as_str().unwrap().contains(&code));

    let (status, body) = server
        .post_json(
            "/auth/activate",
            &json!({"code": code}),
            Some((&email, PASSWORD)),
        )
        .await
        .pair();
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"detail":"Account activated"}"#)
    );

    let rows = settled(&db, Duration::from_secs(5)).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 1));
    // No code rests in the database once the message is sent.
    assert_eq!(rows[0].payload, None);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.posts(), 1, "sent more than once");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_failed_posts_are_retried_and_the_third_delivers() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    sink.fail_next(2);
    let server = serve_with_email_api(&db, &sink, &[]);
    let email = unique_email("retry");
    let started = Instant::now();
    server.register(&email, PASSWORD).await.pair();

    let delivered = sink.wait_for(1, Duration::from_secs(15));
    let took = started.elapsed();
    assert_eq!(delivered.len(), 1);
    assert_eq!(sink.posts(), 3);
    // Backoff of about 1 s then 2 s (±20 %): well inside the code's minute.
    assert!(
        took >= Duration::from_millis(2300) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let rows = settled(&db, Duration::from_secs(5)).await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 3));
    assert!(rows[0].last_error.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_is_dead_after_the_maximum_attempts_with_its_error_kept() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    sink.fail_always(true);
    let _server = serve_with_email_api(&db, &sink, &[("EMAIL_MAX_ATTEMPTS", "3")]);
    queue_messages(&db, 1, &unique_email("dead")).await;

    let rows = settled(&db, Duration::from_secs(15)).await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("dead", 3));
    let error = rows[0].last_error.as_deref().unwrap();
    assert!(
        error.contains("503") && error.contains("mail provider down"),
        "{error}"
    );
    assert_eq!(rows[0].payload, None);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.posts(), 3);
    assert!(sink.delivered().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_serve_processes_deliver_each_of_200_messages_once() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let _a = serve_with_email_api(&db, &sink, &[]);
    let _b = serve_with_email_api(&db, &sink, &[]);
    let label = unique_email("bulk");
    // One transaction: both dispatchers are woken at once and race.
    queue_messages(&db, 200, &label).await;

    let delivered = sink.wait_for(200, Duration::from_secs(30));
    assert_eq!(delivered.len(), 200);
    let rows = settled(&db, Duration::from_secs(10)).await;
    assert!(
        rows.iter()
            .all(|row| row.status == "sent" && row.attempts == 1),
        "{rows:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let delivered = sink.delivered();
    let mut recipients: Vec<&str> = delivered
        .iter()
        .map(|m| m["to"].as_str().unwrap())
        .collect();
    recipients.sort_unstable();
    recipients.dedup();
    assert_eq!(
        (delivered.len(), recipients.len()),
        (200, 200),
        "a message was sent twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_in_flight_when_serve_is_killed_is_delivered_after_restart() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    // The provider takes the post and never answers: serve dies mid-send.
    sink.stall(true);
    let first = serve_with_email_api(&db, &sink, &[]);
    let email = unique_email("crash");
    let (status, _) = first.register(&email, PASSWORD).await.pair();
    assert_eq!(status, 201);
    assert_eq!(sink.wait_for_posts(1, Duration::from_secs(5)), 1);
    let (status, _) = first.stop_with("KILL");
    assert!(!status.success());

    sink.stall(false);
    let second = serve_with_email_api(&db, &sink, &[]);
    // Due again when the dead instance's lease runs out (20 s).
    let delivered = sink.wait_for(1, Duration::from_secs(60));
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["to"], email.as_str());
    let code = code_in(delivered[0]["body"].as_str().unwrap());
    let (status, _) = second
        .post_json(
            "/auth/activate",
            &json!({"code": code}),
            Some((&email, PASSWORD)),
        )
        .await
        .pair();
    assert_eq!(status, 200);
    let rows = settled(&db, Duration::from_secs(5)).await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_committed_while_no_serve_runs_is_delivered_when_one_starts() {
    let app = TestApp::new().await;
    let email = unique_email("queued-offline");
    app.register(&email, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    let sink = MailSink::start();
    let _server = serve_with_email_api(&app.db, &sink, &[]);
    let delivered = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["to"], email.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_message_is_never_sent_and_loses_its_bodies() {
    let app = TestApp::with(&[("ACTIVATION_CODE_TTL_SECONDS", "1")]).await;
    app.register(&unique_email("stale"), PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let sink = MailSink::start();
    let _server = serve_with_email_api(&app.db, &sink, &[]);
    let rows = settled(&app.db, Duration::from_secs(5)).await;
    assert_eq!(rows[0].status, "expired");
    assert_eq!(rows[0].payload, None);
    assert_eq!(sink.posts(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_that_would_come_after_expiry_expires_the_message() {
    let app = TestApp::with(&[("ACTIVATION_CODE_TTL_SECONDS", "1")]).await;
    let sink = MailSink::start();
    // The first post fails after 0.5 s; the retry (0.8–1.2 s later) would
    // come after the 1 s code expired.
    sink.fail_next(1);
    sink.delay(Duration::from_millis(500));
    let _server = serve_with_email_api(&app.db, &sink, &[]);
    app.register(&unique_email("late"), PASSWORD).await;
    let rows = settled(&app.db, Duration::from_secs(5)).await;
    assert_eq!(rows[0].status, "expired");
    assert!(rows[0].last_error.as_deref().unwrap().contains("503"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.posts(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_queued_elsewhere_wakes_the_dispatcher_at_once() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let _server = serve_with_email_api(&db, &sink, &[]);
    // Let the dispatcher settle into its wait (the sweep is 5 s).
    std::thread::sleep(Duration::from_millis(300));
    queue_messages(&db, 1, &unique_email("notify")).await;
    // Well before the next sweep: the NOTIFY woke it.
    assert_eq!(sink.wait_for(1, Duration::from_millis(1500)).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_in_flight_post_finish_and_records_it() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    sink.delay(Duration::from_millis(1500));
    let server = serve_with_email_api(&db, &sink, &[]);
    queue_messages(&db, 1, &unique_email("graceful")).await;
    assert_eq!(sink.wait_for_posts(1, Duration::from_secs(5)), 1);

    let (status, log) = server.stop_with("TERM");
    assert!(status.success(), "{log}");
    assert_eq!(sink.delivered().len(), 1);
    let rows = outbox(&db).await;
    assert_eq!(rows[0].status, "sent", "{log}");
    assert!(log.contains("email dispatcher stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_email_api_the_email_goes_to_the_log_with_a_warning() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let email = unique_email("logged");
    let (status, _) = server.register(&email, PASSWORD).await.pair();
    assert_eq!(status, 201);
    let rows = settled(&db, Duration::from_secs(5)).await;
    assert_eq!(rows[0].status, "sent");
    let (_, log) = server.stop_with("TERM");
    assert!(log.contains("EMAIL_API_URL is unset"), "{log}");
    let logged = log
        .lines()
        .find(|line| line.contains("email not sent (EMAIL_API_URL is unset)"))
        .expect("the email is in the log");
    assert!(
        logged.contains(&email) && logged.contains("Your activation code is: "),
        "{logged}"
    );
}

// ---- the window, provider answers, the test seam ----------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_answer_does_not_hold_back_the_rest_of_the_window() {
    let db = TestDb::new().await;
    let settings = settings_for(&db, &[]);
    let sink = MailSink::start();
    sink.slow_for("slow", Duration::from_millis(1500));
    // Queued first, so it is claimed in the first window of 16.
    queue_messages(&db, 1, "slow").await;
    queue_messages(&db, 40, "fast").await;

    let tally = deliver(&db, &settings, &sink).await;
    assert_eq!(tally.delivered, 41);
    let order: Vec<String> = sink
        .delivered()
        .iter()
        .map(|m| m["to"].as_str().unwrap().to_owned())
        .collect();
    // Each free slot was refilled at once: all 40 others went out while
    // the slow one was still in flight.
    assert_eq!(
        order.last().map(String::as_str),
        Some("slow1@example.com"),
        "{order:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_post_carries_its_message_id_as_idempotency_key_over_reused_connections() {
    let db = TestDb::new().await;
    let settings = settings_for(&db, &[("EMAIL_CONCURRENCY", "4")]);
    let sink = MailSink::start();
    queue_messages(&db, 60, &unique_email("keys")).await;

    assert_eq!(deliver(&db, &settings, &sink).await.delivered, 60);
    let mut keys: Vec<i64> = sink
        .idempotency_keys()
        .iter()
        .map(|key| key.as_deref().expect("an Idempotency-Key").parse().unwrap())
        .collect();
    keys.sort_unstable();
    // The database is fresh: the outbox ids are 1 to 60.
    assert_eq!(keys, (1..=60).collect::<Vec<i64>>());
    // Kept alive and pooled: no more connections than the window.
    assert!(
        sink.connections() <= 4,
        "{} connections",
        sink.connections()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_refusal_is_dead_at_once_with_the_providers_status_and_reason() {
    let app = TestApp::new().await;
    let sink = MailSink::start();
    sink.answer_next(
        1,
        &Answer::new(422, r#"{"error":"recipient domain rejected"}"#),
    );
    let email = unique_email("refused");
    app.register(&email, PASSWORD).await;

    let tally = app.deliver(&sink).await;
    assert_eq!((tally.dead, tally.delivered), (1, 0));
    let rows = outbox(&app.db).await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("dead", 1));
    assert_eq!(rows[0].last_status, Some(422));
    assert_eq!(
        rows[0].last_error.as_deref(),
        Some(r#"422: {"error":"recipient domain rejected"}"#)
    );
    // Not tried again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.deliver(&sink).await, Default::default());
    assert_eq!(sink.posts(), 1);

    let shown = crate::common::server::run(&app.db.url, &[], &["user", "show", &email]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("dead after 1 attempt(s)")
            && text.contains(r#"last error: 422: {"error":"recipient domain rejected"}"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_pauses_all_sending_for_retry_after_and_is_not_an_attempt() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    sink.answer_next(1, &Answer::throttle(Some("1")));
    let _server = serve_with_email_api(&db, &sink, &[("EMAIL_CONCURRENCY", "1")]);
    let started = Instant::now();
    queue_messages(&db, 5, &unique_email("throttled")).await;

    let delivered = sink.wait_for(5, Duration::from_secs(10));
    assert_eq!(delivered.len(), 5);
    assert_eq!((sink.throttled(), sink.posts()), (1, 6));
    // Nothing went out during the pause the provider asked for.
    let first = sink.arrivals()[0].1;
    assert!(
        first - started >= Duration::from_millis(950),
        "{:?}",
        first - started
    );
    let rows = settled(&db, Duration::from_secs(5)).await;
    assert!(
        rows.iter()
            .all(|row| row.status == "sent" && row.attempts == 1),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_provider_gets_every_email_with_few_429s() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    sink.rate_limit(50);
    let _server = serve_with_email_api(&db, &sink, &[]);
    queue_messages(&db, 150, &unique_email("limited")).await;

    assert_eq!(sink.wait_for(150, Duration::from_secs(20)).len(), 150);
    let rows = settled(&db, Duration::from_secs(5)).await;
    assert!(rows.iter().all(|row| row.status == "sent"), "{rows:?}");
    assert!(
        sink.throttled() < 150 / 4,
        "{} answers 429 for 150 messages",
        sink.throttled()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outcome_that_cannot_be_recorded_loses_no_other() {
    let db = TestDb::new().await;
    let settings = settings_for(&db, &[]);
    let sink = MailSink::start();
    let mut conn = db.connect().await;
    diesel::sql_query(
        "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.status = 'sent' AND NEW.recipient LIKE 'unrecordable%' THEN \
           RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "CREATE TRIGGER refuse_one BEFORE UPDATE ON email_outbox \
         FOR EACH ROW EXECUTE FUNCTION refuse_one()",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    queue_messages(&db, 1, "unrecordable").await;
    queue_messages(&db, 9, "recordable").await;

    let tally = deliver(&db, &settings, &sink).await;
    assert_eq!((tally.delivered, sink.delivered().len()), (9, 10));
    let rows = outbox(&db).await;
    assert_eq!(rows.iter().filter(|row| row.status == "sent").count(), 9);
    // The one left queued under its lease is sent again later (at least once).
    assert_eq!(rows[0].status, "queued");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_reconnects_and_wakes_the_dispatcher_again() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let _server = serve_with_email_api(&db, &sink, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let killed = db
        .count(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE query = 'LISTEN email_outbox' AND datname = current_database()",
        )
        .await;
    assert_eq!(killed, 1);
    // The sweep is 5 s: a delivery well before it was woken by a NOTIFY on
    // the listener's new connection.
    std::thread::sleep(Duration::from_millis(1500));
    let queued = Instant::now();
    queue_messages(&db, 1, &unique_email("relisten")).await;
    assert_eq!(sink.wait_for(1, Duration::from_secs(3)).len(), 1);
    assert!(
        queued.elapsed() < Duration::from_millis(1500),
        "{:?}",
        queued.elapsed()
    );
}

// ---- no code at rest --------------------------------------------------------

/// A plain-SQL dump of the whole database, by PostgreSQL's own `pg_dump`.
fn pg_dump(url: &str) -> String {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|versions| {
            versions
                .flatten()
                .map(|version| version.path().join("bin/pg_dump"))
                .filter(|bin| bin.exists())
                .max()
        })
        .unwrap_or_else(|| "pg_dump".into());
    let output = std::process::Command::new(bin)
        .args(["--data-only", url])
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Asserts `code` (8 digits: no run of a dump's own digits is likely to
/// be it by chance) appears nowhere in `dump`: not its bare digits, in any
/// field, text or shape, nor the hex of its digits in a bytea.
#[track_caller]
fn assert_no_code(dump: &str, code: &str) {
    assert_eq!(code.len(), 8, "{code}");
    let hex: String = code.bytes().map(|b| format!("{b:02x}")).collect();
    for needle in [code.to_owned(), hex] {
        assert!(!dump.contains(&needle), "{needle:?} in the dump");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_code_rests_in_a_database_dump_in_flight_or_after_sending() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    sink.delay(Duration::from_millis(1500));
    let server = serve_with_email_api(&db, &sink, &[("CODE_LENGTH", "8")]);
    let email = unique_email("dump");
    server.register(&email, PASSWORD).await.pair();
    let code = crate::common::latest_code(&db, &email).await;
    assert_eq!(sink.wait_for_posts(1, Duration::from_secs(5)), 1);

    // In flight: claimed, posted, not answered yet.
    let dump = pg_dump(&db.url);
    assert!(dump.contains(&email), "the dump has the outbox row");
    assert_no_code(&dump, &code);

    let delivered = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(code_in(delivered[0]["body"].as_str().unwrap()), code);
    let rows = settled(&db, Duration::from_secs(5)).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].payload.as_ref()),
        ("sent", None)
    );
    assert_no_code(&pg_dump(&db.url), &code);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_sealed_under_another_secret_key_is_dead_not_sent() {
    let db = TestDb::new().await;
    queue_messages(&db, 1, &unique_email("rekeyed")).await;
    let settings = settings_for(
        &db,
        &[("SECRET_KEY", "a-new-secret-key-after-rotation-0123456789")],
    );
    let sink = MailSink::start();

    let tally = deliver(&db, &settings, &sink).await;
    assert_eq!((tally.dead, sink.posts()), (1, 0));
    let rows = outbox(&db).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].payload.as_ref()),
        ("dead", None)
    );
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("SECRET_KEY"),
        "{:?}",
        rows[0].last_error
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twelve_spellings_of_one_gmail_inbox_get_at_most_ten_emails_a_day() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = Server::start(&db.url, &[("EMAIL_API_URL", sink.url.as_str())]);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let owner = format!("owner{}x{nanos}", std::process::id());
    let (head, tail) = owner.split_at(3);
    let spellings = [
        format!("{owner}@gmail.com"),
        format!("{head}.{tail}@gmail.com"),
        format!("{}@gmail.com", owner.to_uppercase()),
        format!("{owner}+1@gmail.com"),
        format!("{owner}+news@gmail.com"),
        format!("{head}.{tail}+2@gmail.com"),
        format!("{owner}@googlemail.com"),
        format!("{head}.{tail}@googlemail.com"),
        format!("{owner}+3@googlemail.com"),
        format!("{}.{}@gmail.com", &owner[..1], &owner[1..]),
        format!("{}.{}@googlemail.com", &owner[..2], &owner[2..]),
        format!("{}.{}+4@gmail.com", &owner[..4], &owner[4..]),
    ];
    let mut statuses = Vec::new();
    for spelling in &spellings {
        statuses.push(server.register(spelling, PASSWORD).await.code());
    }
    let created = statuses.iter().filter(|&&s| s == 201).count();
    assert!(
        statuses.iter().all(|&s| s == 201 || s == 409 || s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    // What the inbox received, not what was answered: every email the
    // registrations queued is delivered (a moment for any late one), and
    // they are at most ten.
    let delivered = |sink: &MailSink| sink.bodies_to(&spellings).len();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while delivered(&sink) < created && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(delivered(&sink), created, "{statuses:?}");
    assert!(delivered(&sink) <= 10, "{statuses:?}");
}
