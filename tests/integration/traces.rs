//! Traces (docs/OPERATIONS.md "Traces"): the real binary exporting over
//! OTLP/HTTP to a receiver that decodes with the OpenTelemetry project's
//! own published schema (`tests/otlp/receiver.py`). One trace from a
//! registration to the provider's answer, across a restart; a refused
//! request's limit and no hash; no address, password, code, key or client
//! in any exported byte; `traceparent` in, out and through the outbox; a
//! collector that is down or slow holds up no request.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::email::{code_for, scrape, serve_with_metrics, value};
use crate::common::otlp_receiver::{Collector, in_trace, named};
use crate::common::server::free_port;
use crate::common::webhook_receiver::{Receiver, SECRET};
use crate::common::{Api, Call, MailSink, PASSWORD, SECRET_KEY, Server, TestDb, unique_email};

/// Spans leave within this of their end in these tests.
const EXPORT_EVERY_MS: &str = "100";

/// How long the tests wait for spans to arrive.
const ARRIVAL: Duration = Duration::from_secs(20);

fn traced(endpoint: &str, extra: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            endpoint.to_owned(),
        ),
        (
            "OTEL_BSP_SCHEDULE_DELAY".to_owned(),
            EXPORT_EVERY_MS.to_owned(),
        ),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

fn start(db: &TestDb, env: &[(String, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start(&db.url, &env)
}

/// The one span named `name` (e.g. `POST /auth/register`).
#[track_caller]
fn only<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = spans.iter().filter(|span| span["name"] == name).collect();
    assert_eq!(found.len(), 1, "{name}: {found:#?}");
    found[0]
}

fn names(spans: &[&Value]) -> Vec<String> {
    spans
        .iter()
        .map(|span| span["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Whether `spans` hold a span named `name` whose attribute `key` is `value`.
fn has(spans: &[Value], name: &str, key: &str, value: &str) -> bool {
    spans
        .iter()
        .any(|span| span["name"] == name && span["attributes"][key] == value)
}

/// Whether `child` descends from `ancestor` within `spans`.
fn descends(spans: &[&Value], child: &Value, ancestor: &Value) -> bool {
    let mut parent = child["parent_span_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    while !parent.is_empty() {
        if parent == ancestor["span_id"] {
            return true;
        }
        parent = spans
            .iter()
            .find(|span| span["span_id"] == parent.as_str())
            .and_then(|span| span["parent_span_id"].as_str())
            .unwrap_or_default()
            .to_owned();
    }
    false
}

/// The value of `series` at `metrics` once it is above zero, or 0 after
/// `timeout`.
fn once_positive(metrics: &str, series: &str, timeout: Duration) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let now = value(&scrape(metrics), series).unwrap_or(0.0);
        if now > 0.0 || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[track_caller]
fn assert_absent(haystack: &[u8], needle: &str, what: &str) {
    assert!(
        !haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes()),
        "an export holds the {what}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_leads_from_a_registration_to_the_providers_answer() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let collector = Collector::start(&[]);
    let receiver = Receiver::start(SECRET, 0, Duration::ZERO);
    let mut env = traced(
        &collector.endpoint,
        // Eight digits: a code that no header or number in an export can
        // hold by chance, so that its absence means something.
        &[("CODE_LENGTH", "8"), ("WEBHOOK_SECRET", SECRET)],
    );
    env.push(("EMAIL_API_URL".into(), sink.url.clone()));
    env.push(("WEBHOOK_URL".into(), receiver.url.clone()));
    let server = start(&db, &env);
    // A client behind the trusted proxy (loopback): its address must not
    // reach a span.
    let client = "203.0.113.77";
    let email = unique_email("traced");

    assert_eq!(
        server.register_from(client, &email, PASSWORD).await.code(),
        201
    );
    let code = code_for(&sink, &email);
    assert_eq!(
        server
            .activate_from(client, &email, PASSWORD, &code)
            .await
            .code(),
        200
    );
    assert_eq!(receiver.wait_for(1, ARRIVAL).len(), 1);
    let spans = collector.wait_for(ARRIVAL, |spans| {
        has(
            spans,
            "email deliver",
            "activator.delivery.outcome",
            "delivered",
        ) && has(
            spans,
            "event deliver",
            "activator.delivery.outcome",
            "delivered",
        ) && spans
            .iter()
            .any(|span| span["name"] == "POST /auth/activate")
    });

    // The registration: its request, its limits, the hash, the
    // transaction, the outbox insert, and the email's delivery, one trace.
    let register = only(&spans, "POST /auth/register");
    let trace_id = register["trace_id"].as_str().unwrap();
    assert_eq!(register["kind"], "SERVER");
    assert_eq!(register["attributes"]["http.request.method"], "POST");
    assert_eq!(register["attributes"]["http.route"], "/auth/register");
    assert_eq!(register["attributes"]["http.response.status_code"], 201);
    assert_eq!(register["resource"]["service.name"], "activator");
    let trace = in_trace(&spans, trace_id);
    for name in [
        "limit hash_queue_per_ip",
        "limit register_per_ip",
        "limit mailbox_daily",
        "postgresql read",
        "redis EVALSHA",
        "password wait",
        "password hash",
        "postgresql transaction",
        "outbox insert",
        "email deliver",
    ] {
        let span = named(&trace, name).unwrap_or_else(|| panic!("no {name}: {:?}", names(&trace)));
        assert!(
            descends(&trace, span, register),
            "{name} is not under the request"
        );
    }
    let limit = named(&trace, "limit register_per_ip").unwrap();
    assert_eq!(limit["attributes"]["activator.limit.outcome"], "allowed");
    let transaction = named(&trace, "postgresql transaction").unwrap();
    assert_eq!(transaction["attributes"]["db.system"], "postgresql");
    assert_eq!(
        transaction["attributes"]["activator.transaction"],
        "register"
    );
    assert_eq!(
        named(&trace, "redis EVALSHA").unwrap()["attributes"]["db.system"],
        "redis"
    );
    let delivery = named(&trace, "email deliver").unwrap();
    assert_eq!(
        delivery["attributes"]["activator.delivery.outcome"],
        "delivered"
    );
    assert_eq!(delivery["attributes"]["activator.delivery.status"], 200);
    assert_eq!(delivery["attributes"]["activator.delivery.attempt"], 1);
    // The provider was sent the delivery's context.
    let traceparent = format!("00-{trace_id}-{}-01", delivery["span_id"].as_str().unwrap());
    assert_eq!(sink.traceparents(), vec![Some(traceparent)]);

    // The activation's trace holds its event's delivery.
    let activate = only(&spans, "POST /auth/activate");
    let activation = in_trace(&spans, activate["trace_id"].as_str().unwrap());
    assert_ne!(activate["trace_id"], register["trace_id"]);
    for name in [
        "limit activation_attempts",
        "postgresql transaction",
        "event deliver",
    ] {
        assert!(
            named(&activation, name).is_some(),
            "no {name}: {:?}",
            names(&activation)
        );
    }
    assert_eq!(
        named(&activation, "event deliver").unwrap()["attributes"]["activator.event.type"],
        "user.activated"
    );

    // The log lines of the request and of the delivery carry the trace id.
    let log = server.stderr();
    let marked = format!("trace_id={trace_id}");
    assert!(
        log.lines()
            .any(|line| line.contains(&marked) && line.contains("route=\"/auth/register\"")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|line| line.contains(&marked) && line.contains("activation email sent")),
        "{log}"
    );

    // Not one exported byte names the account, its secrets, or the client.
    let raw = collector.raw();
    assert!(!raw.is_empty());
    assert_absent(&raw, &email, "address");
    assert_absent(
        &raw,
        email.split('@').next().unwrap(),
        "address's local part",
    );
    assert_absent(&raw, PASSWORD, "password");
    assert_absent(&raw, &code, "code");
    assert_absent(&raw, SECRET_KEY, "SECRET_KEY");
    assert_absent(&raw, SECRET, "webhook secret");
    assert_absent(&raw, client, "client's address");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_registration_shows_the_limit_that_refused_it_and_no_hash() {
    let db = TestDb::new().await;
    let collector = Collector::start(&[]);
    let server = start(
        &db,
        &traced(&collector.endpoint, &[("REGISTER_PER_IP_LIMIT", "1")]),
    );
    let client = "198.51.100.20";
    let first = unique_email("first");
    assert_eq!(
        server.register_from(client, &first, PASSWORD).await.code(),
        201
    );
    let second = unique_email("second");
    assert_eq!(
        server.register_from(client, &second, PASSWORD).await.code(),
        429
    );

    let spans = collector.wait_for(ARRIVAL, |spans| {
        spans
            .iter()
            .filter(|span| span["name"] == "POST /auth/register")
            .count()
            == 2
    });
    let refused = spans
        .iter()
        .find(|span| {
            span["name"] == "POST /auth/register"
                && span["attributes"]["http.response.status_code"] == 429
        })
        .expect("the refused request's span");
    let trace = in_trace(&spans, refused["trace_id"].as_str().unwrap());
    let limit = named(&trace, "limit register_per_ip").expect("its limit check");
    assert_eq!(limit["attributes"]["activator.limit.outcome"], "refused");
    assert_eq!(
        limit["attributes"]["activator.limit.refused_by"],
        "register_per_ip"
    );
    for never in [
        "password wait",
        "password hash",
        "postgresql transaction",
        "outbox insert",
    ] {
        assert!(
            named(&trace, never).is_none(),
            "{never}: {:?}",
            names(&trace)
        );
    }
    // A 429 is the client's: the server span has not failed.
    assert_eq!(refused["status"]["code"], "UNSET");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxys_traceparent_is_continued_and_a_malformed_one_starts_a_trace() {
    let db = TestDb::new().await;
    let collector = Collector::start(&[]);
    // Loopback, where the test connects from, is a trusted proxy by default.
    let server = start(&db, &traced(&collector.endpoint, &[]));
    let (trace, parent) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let valid = format!("00-{trace}-{parent}-01");
    let call = |path: &str, traceparent: &str| {
        Call::get(path)
            .header("traceparent", traceparent)
            .header("tracestate", "vendor=opaque")
    };
    assert_eq!(server.send(call("/health/check", &valid)).await.code(), 200);
    let malformed = format!("00-{}-{parent}-01", "Z".repeat(32));
    assert_eq!(
        server.send(call("/openapi.json", &malformed)).await.code(),
        200
    );
    assert_eq!(server.send(call("/docs", "garbage")).await.code(), 200);
    let email = unique_email("malformed");
    let registration = Call::post("/auth/register")
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .header(
            "traceparent",
            "00-00000000000000000000000000000000-0000000000000000-01",
        );
    assert_eq!(server.send(registration).await.code(), 201);

    let spans = collector.wait_for(ARRIVAL, |spans| {
        [
            "GET /health/check",
            "GET /openapi.json",
            "GET /docs",
            "POST /auth/register",
        ]
        .iter()
        .all(|name| spans.iter().any(|span| span["name"] == *name))
    });
    let continued = only(&spans, "GET /health/check");
    assert_eq!(continued["trace_id"], trace);
    assert_eq!(continued["parent_span_id"], parent);
    assert_eq!(continued["trace_state"], "vendor=opaque");
    for name in ["GET /openapi.json", "GET /docs", "POST /auth/register"] {
        let started = only(&spans, name);
        assert_ne!(started["trace_id"], trace, "{name}");
        assert_eq!(started["parent_span_id"], "", "{name} has a parent");
    }

    // From a peer that is not a trusted proxy, the same header starts a
    // trace of its own.
    let collector = Collector::start(&[]);
    let server = start(
        &db,
        &traced(&collector.endpoint, &[("TRUSTED_PROXIES", "")]),
    );
    assert_eq!(server.send(call("/health/check", &valid)).await.code(), 200);
    let spans = collector.wait_for(ARRIVAL, |spans| {
        spans.iter().any(|span| span["name"] == "GET /health/check")
    });
    let untrusted = only(&spans, "GET /health/check");
    assert_ne!(untrusted["trace_id"], trace);
    assert_eq!(untrusted["parent_span_id"], "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_holds_up_no_request_and_its_drops_are_counted() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let down = format!("http://127.0.0.1:{}", free_port());
    let env = traced(&down, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "300")]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (server, metrics) = serve_with_metrics(&db, &sink, &env);

    let started = Instant::now();
    for _ in 0..20 {
        let asked = Instant::now();
        assert_eq!(server.get("/health/live").await.code(), 200);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
    }
    let email = unique_email("down");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    code_for(&sink, &email);
    assert!(started.elapsed() < Duration::from_secs(10));

    let dropped = r#"activator_trace_spans_dropped_total{reason="export_failed"}"#;
    assert!(once_positive(&metrics, dropped, Duration::from_secs(20)) > 0.0);
    // One line says the collector cannot be reached, at start-up; the
    // failures after it are said at most once a minute.
    let log = server.stderr();
    let said = log
        .lines()
        .filter(|line| line.contains("cannot export traces"))
        .count();
    assert_eq!(said, 1, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_collector_holds_up_no_request_and_what_does_not_fit_is_counted() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let collector = Collector::start(&["--delay", "5"]);
    let env = traced(&collector.endpoint, &[("OTEL_BSP_MAX_QUEUE_SIZE", "4")]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (server, metrics) = serve_with_metrics(&db, &sink, &env);

    for _ in 0..30 {
        let asked = Instant::now();
        assert_eq!(server.get("/health/live").await.code(), 200);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let dropped = r#"activator_trace_spans_dropped_total{reason="queue_full"}"#;
    assert!(once_positive(&metrics, dropped, Duration::from_secs(10)) > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_sent_after_a_restart_is_in_its_registrations_trace() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let collector = Collector::start(&[]);
    // No provider answers the first server: its attempt fails and is
    // retried, by the second.
    let nowhere = format!("http://127.0.0.1:{}/v1/send", free_port());
    let mut env = traced(&collector.endpoint, &[]);
    env.push(("EMAIL_API_URL".into(), nowhere));
    let first = start(&db, &env);
    let email = unique_email("restart");
    assert_eq!(first.register(&email, PASSWORD).await.code(), 201);
    let spans = collector.wait_for(ARRIVAL, |spans| {
        has(
            spans,
            "email deliver",
            "activator.delivery.outcome",
            "retried",
        )
    });
    let failed = spans
        .iter()
        .find(|span| span["name"] == "email deliver")
        .expect("the first attempt");
    assert_eq!(failed["status"]["code"], "ERROR");
    assert!(
        failed["attributes"]["activator.delivery.retry_in_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let (status, _) = first.stop_with("TERM");
    assert!(status.success());

    let mut env = traced(&collector.endpoint, &[]);
    env.push(("EMAIL_API_URL".into(), sink.url.clone()));
    let _second = start(&db, &env);
    code_for(&sink, &email);
    let spans = collector.wait_for(ARRIVAL, |spans| {
        has(
            spans,
            "email deliver",
            "activator.delivery.outcome",
            "delivered",
        )
    });
    let register = only(&spans, "POST /auth/register");
    let delivered = spans
        .iter()
        .find(|span| {
            span["name"] == "email deliver"
                && span["attributes"]["activator.delivery.outcome"] == "delivered"
        })
        .unwrap();
    assert_eq!(delivered["trace_id"], register["trace_id"]);
    assert_eq!(failed["trace_id"], register["trace_id"]);
    assert_eq!(delivered["attributes"]["activator.delivery.attempt"], 2);
    assert!(
        sink.traceparents()[0]
            .as_deref()
            .is_some_and(|tp| tp.contains(register["trace_id"].as_str().unwrap()))
    );
}
