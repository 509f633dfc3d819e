//! Telling the rest of the system (docs/EMAIL.md "Events"): signed
//! `user.activated` (and, when asked, `user.registered`) events through the
//! outbox to `WEBHOOK_URL`, each post verified by the Standard Webhooks
//! reference library. Against the real binary.

use std::time::Duration;

use serde_json::Value;

use crate::common::Api;
use crate::common::email::code_for;
use crate::common::server::run;
use crate::common::webhook_receiver::{Receiver, SECRET};
use crate::common::{MailSink, PASSWORD, Server, TestDb, unique_email};

fn serve(db: &TestDb, sink: &MailSink, receiver: &Receiver, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("EMAIL_API_URL", sink.url.as_str()),
        ("WEBHOOK_URL", receiver.url.as_str()),
        ("WEBHOOK_SECRET", SECRET),
    ];
    env.extend_from_slice(extra);
    Server::start(&db.url, &env)
}

/// Registers and activates a new address; returns it and its code.
async fn signup(server: &Server, sink: &MailSink, label: &str) -> (String, String) {
    let email = unique_email(label);
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let code = code_for(sink, &email);
    assert_eq!(server.activate(&email, PASSWORD, &code).await.code(), 200);
    (email, code)
}

fn user_show(db: &TestDb, email: &str) -> Value {
    let output = run(&db.url, &[], &["user", "show", email, "--json"]);
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `email`'s first event as `user show` reports it, once its status is
/// `status` (recorded after the answer arrives), within 5 s.
fn first_event_once(db: &TestDb, email: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let event = user_show(db, email)["events"][0].clone();
        if event["status"] == status {
            return event;
        }
        assert!(std::time::Instant::now() < deadline, "{event}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_activation_posts_exactly_one_verified_event_and_a_registration_none() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let receiver = Receiver::start(SECRET, 0, Duration::ZERO);
    let server = serve(&db, &sink, &receiver, &[]);
    let pending = unique_email("never-activated");
    assert_eq!(server.register(&pending, PASSWORD).await.code(), 201);
    let (email, code) = signup(&server, &sink, "activated").await;

    let received = receiver.wait_for(1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    let received = if received.len() == 1 {
        receiver.received()
    } else {
        received
    };
    assert_eq!(received.len(), 1, "{received:?}");
    let post = &received[0];
    assert_eq!(post["verified"], true, "{post}");
    let event = &post["body"];
    assert_eq!(event["type"], "user.activated");
    assert_eq!(event["data"]["email"], email.as_str());
    assert_eq!(event["data"]["locale"], "en");
    for field in ["id", "registered_at", "activated_at"] {
        assert!(!event["data"][field].is_null(), "{field}: {event}");
    }
    assert!(event["timestamp"].is_string());
    let text = event.to_string();
    for secret in [PASSWORD, code.as_str(), "$2"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let shown = user_show(&db, &email);
    assert_eq!(shown["events"][0]["type"], "user.activated");
    assert_eq!(shown["events"][0]["status"], "sent");
    assert_eq!(user_show(&db, &pending)["events"], Value::Array(vec![]));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_500s_then_204_is_delivered_with_the_same_webhook_id() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let receiver = Receiver::start(SECRET, 2, Duration::ZERO);
    let server = serve(&db, &sink, &receiver, &[]);
    let (email, _) = signup(&server, &sink, "retried").await;
    let received = receiver.wait_for(3, Duration::from_secs(30));
    let statuses: Vec<&Value> = received.iter().map(|post| &post["status"]).collect();
    assert_eq!(statuses, [500, 500, 204], "{received:?}");
    let ids: Vec<&Value> = received.iter().map(|post| &post["webhook_id"]).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0] && id.is_string()),
        "{ids:?}"
    );
    assert!(received.iter().all(|post| post["verified"] == true));
    // Recorded once the third answer is in.
    let event = first_event_once(&db, &email, "sent");
    assert_eq!(event["attempts"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_with_another_secret_fails_to_verify_and_the_event_is_dead() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let receiver = Receiver::start("whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY", 0, Duration::ZERO);
    let server = serve(&db, &sink, &receiver, &[]);
    let (email, _) = signup(&server, &sink, "other-secret").await;
    let received = receiver.wait_for(1, Duration::from_secs(20));
    assert_eq!(received[0]["verified"], false, "{received:?}");
    assert_eq!(received[0]["status"], 401);
    let event = first_event_once(&db, &email, "dead");
    let error = event["last_error"].as_str().unwrap();
    assert!(error.starts_with("401"), "{event}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_in_flight_when_serve_is_killed_is_delivered_after_restart() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    // The first post is held long enough for the kill.
    let receiver = Receiver::start(SECRET, 0, Duration::from_secs(3));
    let server = serve(&db, &sink, &receiver, &[]);
    signup(&server, &sink, "killed").await;
    receiver.wait_for(1, Duration::from_secs(20));
    let (status, _) = server.stop_with("KILL");
    assert!(!status.success());
    // A new instance takes the event once its lease runs out.
    let _restarted = serve(&db, &sink, &receiver, &[]);
    let received = receiver.wait_for(2, Duration::from_secs(60));
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[0]["webhook_id"], received[1]["webhook_id"]);
    assert!(received.iter().all(|post| post["verified"] == true));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_holds_its_answer_holds_up_no_activation() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    // The first post waits a minute for its answer.
    let receiver = Receiver::start(SECRET, 0, Duration::from_secs(60));
    let server = serve(&db, &sink, &receiver, &[]);
    let (first, _) = signup(&server, &sink, "held").await;
    receiver.wait_for(1, Duration::from_secs(20));
    // Meanwhile other accounts register, get their email and activate
    // (`signup` asserts each 201 and 200), each within two seconds ...
    for i in 0..3 {
        let started = std::time::Instant::now();
        signup(&server, &sink, &format!("while-held-{i}")).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    // ... while the first event is still waiting for its answer.
    assert_eq!(user_show(&db, &first)["events"][0]["status"], "queued");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_is_down_holds_up_no_activation_and_its_events_wait() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    // Nothing listens there: every post is refused at once.
    let down = format!(
        "http://127.0.0.1:{}/hooks",
        crate::common::server::free_port()
    );
    let server = Server::start(
        &db.url,
        &[
            ("EMAIL_API_URL", sink.url.as_str()),
            ("WEBHOOK_URL", down.as_str()),
            ("WEBHOOK_SECRET", SECRET),
        ],
    );
    let mut activated = Vec::new();
    for i in 0..3 {
        let started = std::time::Instant::now();
        activated.push(
            signup(&server, &sink, &format!("receiver-down-{i}"))
                .await
                .0,
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    // The receiver was tried and failed; it is backed off as a whole, so
    // the others need not have been tried yet: every event waits queued.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = user_show(&db, &activated[0])["events"][0].clone();
        if event["attempts"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{event}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for email in &activated {
        let event = user_show(&db, email)["events"][0].clone();
        assert_eq!(event["status"], "queued", "{event}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_post_each_event_once() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let receiver = Receiver::start(SECRET, 0, Duration::ZERO);
    let servers = [
        serve(&db, &sink, &receiver, &[]),
        serve(&db, &sink, &receiver, &[]),
    ];
    let signups = 20;
    for i in 0..signups {
        signup(&servers[i % 2], &sink, &format!("twice{i}")).await;
    }
    receiver.wait_for(signups, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    let received = receiver.received();
    let ids: std::collections::HashSet<&str> = received
        .iter()
        .map(|post| post["webhook_id"].as_str().unwrap())
        .collect();
    assert_eq!((received.len(), ids.len()), (signups, signups));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_without_webhook_url_leaves_events_to_one_that_has_it() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let receiver = Receiver::start(SECRET, 0, Duration::ZERO);
    let hooked = serve(&db, &sink, &receiver, &[]);
    // Shares the outbox, sends emails, has nowhere to post events.
    let _plain = Server::start(&db.url, &[("EMAIL_API_URL", sink.url.as_str())]);
    let signups = 12;
    let mut emails = Vec::new();
    for i in 0..signups {
        emails.push(signup(&hooked, &sink, &format!("mixed{i}")).await.0);
    }
    receiver.wait_for(signups, Duration::from_secs(30));
    for email in &emails {
        let event = first_event_once(&db, email, "sent");
        assert_eq!(event["type"], "user.activated", "{event}");
    }
    assert_eq!(receiver.received().len(), signups);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_registered_is_sent_only_when_webhook_events_names_it() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let receiver = Receiver::start(SECRET, 0, Duration::ZERO);
    let server = serve(
        &db,
        &sink,
        &receiver,
        &[("WEBHOOK_EVENTS", "user.registered,user.activated")],
    );
    let email = unique_email("registered");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let received = receiver.wait_for(1, Duration::from_secs(20));
    assert_eq!(
        received[0]["body"]["type"], "user.registered",
        "{received:?}"
    );
    assert_eq!(received[0]["body"]["data"]["email"], email.as_str());
    assert!(received[0]["body"]["data"]["activated_at"].is_null());
    assert_eq!(received[0]["verified"], true);
}

/// A receiver that accepts connections and never answers: each is kept
/// open, and counted.
struct HungReceiver {
    url: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HungReceiver {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        Self { url, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_events_to_a_hung_receiver_delay_no_email_and_are_backed_off_as_one() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let receiver = HungReceiver::start();
    let server = Server::start(
        &db.url,
        &[
            ("EMAIL_API_URL", sink.url.as_str()),
            ("WEBHOOK_URL", receiver.url.as_str()),
            ("WEBHOOK_SECRET", SECRET),
        ],
    );
    let owner = unique_email("events-owner");
    assert_eq!(server.register(&owner, PASSWORD).await.code(), 201);
    code_for(&sink, &owner);
    // 200 due events, as 200 activations would have queued them.
    let mut conn = db.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "INSERT INTO email_outbox (user_id, recipient, payload, kind, event_type, expires_at) \
             SELECT id, '', convert_to('{\"type\":\"user.activated\"}', 'UTF8'), 'event', \
                    'user.activated', now() + interval '1 day' \
             FROM users, generate_series(1, 200)",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(10);
    while receiver.accepted() == 0 {
        assert!(std::time::Instant::now() < deadline, "no event was posted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Ten new users, each email delivered as fast as with no events at all.
    let mut waits = Vec::new();
    for i in 0..10 {
        let email = unique_email(&format!("while-hung-{i}"));
        let client = crate::common::unique_ip();
        assert_eq!(
            server.register_from(&client, &email, PASSWORD).await.code(),
            201
        );
        let queued = std::time::Instant::now();
        while sink.bodies_to(std::slice::from_ref(&email)).is_empty() {
            assert!(
                queued.elapsed() < Duration::from_secs(10),
                "{email}: no email"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        waits.push(queued.elapsed());
    }
    let slowest = waits.iter().max().unwrap();
    assert!(*slowest < Duration::from_secs(2), "{waits:?}");

    // The receiver is backed off as a whole: the first window of posts
    // times out (10 s), then one probe at a time after a pause. Post by
    // post, each event's own retry a second later would have opened a
    // second window by now.
    let until = started + Duration::from_secs(14);
    tokio::time::sleep_until(until.into()).await;
    let accepted = receiver.accepted();
    assert!((1..=5).contains(&accepted), "{accepted} connections");
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM email_outbox WHERE kind = 'event' AND status = 'queued'"
        )
        .await,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_account_the_receiver_knows_tells_it_by_id_alone() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let receiver = Receiver::start(SECRET, 0, Duration::ZERO);
    let server = serve(&db, &sink, &receiver, &[]);
    let (email, _) = signup(&server, &sink, "erased").await;
    let activated = receiver.wait_for(1, Duration::from_secs(20));
    assert_eq!(activated.len(), 1, "{activated:?}");
    let id = activated[0]["body"]["data"]["id"].clone();
    // An account no event told of leaves nothing to say.
    let pending = unique_email("erased-pending");
    assert_eq!(server.register(&pending, PASSWORD).await.code(), 201);

    for address in [&email, &pending] {
        let output = run(&db.url, &[], &["user", "delete", address]);
        assert!(output.status.success(), "{output:?}");
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(
            said.contains("a user.deleted event is queued"),
            address == &email,
            "{said}"
        );
    }
    let received = receiver.wait_for(2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(700));
    let received = receiver
        .received()
        .into_iter()
        .chain(received)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(received.len(), 2, "{received:?}");
    let deleted = &received[1];
    assert_eq!(deleted["verified"], true, "{deleted}");
    assert_eq!(deleted["body"]["type"], "user.deleted");
    assert_eq!(deleted["body"]["data"]["id"], id);
    assert!(
        deleted["body"]["data"]["deleted_at"].is_string(),
        "{deleted}"
    );
    let data = deleted["body"]["data"].as_object().unwrap();
    assert_eq!(data.len(), 2, "the id and when, nothing else: {deleted}");
    assert!(!deleted.to_string().contains(&email), "{deleted}");
    // Nothing in the outbox names the erased address any more.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM email_outbox WHERE recipient = '{email}' \
             OR (kind = 'event' AND convert_from(payload, 'UTF8') LIKE '%{email}%')"
        ))
        .await,
        0
    );
    // A moment for any post that should not come.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(receiver.received().len(), 2, "one event per deletion told");
}
