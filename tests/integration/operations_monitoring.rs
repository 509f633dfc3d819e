//! Watching the service (docs/OPERATIONS.md "Metrics", "Outbox gauges",
//! "Request ids", "Access log", "Logs"): `/metrics` on its own listener,
//! counters that move by exactly what happened, the exposition as promtool
//! and a real Prometheus read it, request ids and access-log lines, no
//! secret and no query string in the log even at trace, and floods said
//! once in a while.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::Api;
use crate::common::email::{scrape, serve_with_metrics, value};
use crate::common::server::{Server, free_port};
use crate::common::{MailSink, PASSWORD, TestDb, code_in, eventually, unique_email, wrong_code};

#[track_caller]
fn assert_series(text: &str, series: &str, expected: f64) {
    assert_eq!(value(text, series), Some(expected), "{series}");
}

// ---- metrics ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn counters_move_by_exactly_what_happened() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(&db, &sink, &[]);
    let (ada, bob) = (unique_email("ada"), unique_email("bob"));

    assert_eq!(server.register(&ada, PASSWORD).await.code(), 201);
    assert_eq!(server.register(&bob, PASSWORD).await.code(), 201);
    assert_eq!(server.register(&ada, PASSWORD).await.code(), 409);
    let invalid = json!({"email": "not-an-address", "password": PASSWORD});
    assert_eq!(
        server
            .post_json("/auth/register", &invalid, None)
            .await
            .pair()
            .0,
        422
    );
    let delivered = sink.wait_for(2, Duration::from_secs(5));
    let code = delivered
        .iter()
        .find(|message| message["to"] == ada.as_str())
        .map(|message| code_in(message["body"].as_str().unwrap()))
        .unwrap();
    let wrong = wrong_code(&code);
    assert_eq!(server.activate(&ada, PASSWORD, wrong).await.code(), 400);
    assert_eq!(
        server.activate(&ada, "Wr0ng!password", &code).await.code(),
        401
    );
    assert_eq!(server.activate(&ada, PASSWORD, &code).await.code(), 200);
    assert_eq!(server.resend(&bob, PASSWORD).await.code(), 202);
    assert_eq!(server.resend(&bob, PASSWORD).await.code(), 429);
    assert_eq!(server.resend(&ada, PASSWORD).await.code(), 409);
    assert_eq!(
        server
            .get("/no/such/path?email=x@example.com")
            .await
            .pair()
            .0,
        404
    );
    // Three emails (two registrations, one resend), recorded as sent before
    // the first scrape: the sent count is read at most once a minute.
    all_sent(&db, 3).await;

    let text = scrape(&metrics);
    for (series, expected) in [
        ("activator_registrations_total{outcome=\"created\"}", 2.0),
        ("activator_registrations_total{outcome=\"conflict\"}", 1.0),
        ("activator_registrations_total{outcome=\"invalid\"}", 1.0),
        (
            "activator_registrations_total{outcome=\"rate_limited\"}",
            0.0,
        ),
        (
            "activator_registrations_total{outcome=\"unavailable\"}",
            0.0,
        ),
        ("activator_activations_total{outcome=\"activated\"}", 1.0),
        ("activator_activations_total{outcome=\"invalid_code\"}", 1.0),
        ("activator_activations_total{outcome=\"unauthorized\"}", 1.0),
        ("activator_activations_total{outcome=\"locked\"}", 0.0),
        ("activator_activations_total{outcome=\"invalid\"}", 0.0),
        ("activator_resends_total{outcome=\"sent\"}", 1.0),
        ("activator_resends_total{outcome=\"rate_limited\"}", 1.0),
        ("activator_resends_total{outcome=\"already_active\"}", 1.0),
        ("activator_resends_total{outcome=\"unauthorized\"}", 0.0),
        (
            "activator_rate_limited_total{limit=\"resend_per_minute\"}",
            1.0,
        ),
        (
            "activator_rate_limited_total{limit=\"activation_attempts\"}",
            0.0,
        ),
        (
            "activator_http_requests_total{method=\"POST\",route=\"/auth/register\",status=\"201\"}",
            2.0,
        ),
        (
            "activator_http_requests_total{method=\"POST\",route=\"/auth/register\",status=\"409\"}",
            1.0,
        ),
        (
            "activator_http_requests_total{method=\"POST\",route=\"/auth/register\",status=\"422\"}",
            1.0,
        ),
        (
            "activator_http_requests_total{method=\"POST\",route=\"/auth/activate\",status=\"200\"}",
            1.0,
        ),
        (
            "activator_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}",
            1.0,
        ),
        (
            "activator_http_request_duration_seconds_count{method=\"POST\",route=\"/auth/register\"}",
            4.0,
        ),
        ("activator_password_hash_waiting", 0.0),
        ("activator_password_hash_rejected_total", 0.0),
    ] {
        assert_series(&text, series, expected);
    }
    // Nobody's address, code or path reaches a label.
    assert!(!text.contains('@'), "an address in the metrics");
    assert!(!text.contains("/no/such/path"));
    assert!(
        !text
            .lines()
            .any(|line| !line.starts_with('#') && line.contains(&format!("\"{code}\"")))
    );
    assert!(value(&text, "process_resident_memory_bytes").unwrap() > 0.0);
    assert!(value(&text, "process_open_fds").unwrap() > 0.0);

    // Each of them sent and timed, the outbox gauges read.
    for (series, expected) in [
        ("activator_emails_total{result=\"delivered\"}", 3.0),
        ("activator_emails_total{result=\"dead\"}", 0.0),
        ("activator_email_send_duration_seconds_count", 3.0),
        ("activator_outbox_messages{state=\"sent\"}", 3.0),
        ("activator_outbox_messages{state=\"queued\"}", 0.0),
        ("activator_outbox_oldest_pending_age_seconds", 0.0),
    ] {
        assert_series(&text, series, expected);
    }
}

/// Waits until `n` outbox messages are recorded as sent.
async fn all_sent(db: &TestDb, n: i64) {
    let sent = eventually(Duration::from_secs(10), async || {
        let count = db
            .count("SELECT count(*) AS n FROM email_outbox WHERE status = 'sent'")
            .await;
        (count == n).then_some(())
    })
    .await;
    assert!(sent.is_some(), "{n} emails sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn outbox_gauges_are_read_at_most_once_a_second() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(&db, &sink, &[]);
    assert_eq!(
        server
            .register(&unique_email("gauge"), PASSWORD)
            .await
            .code(),
        201
    );
    all_sent(&db, 1).await;
    assert_series(
        &scrape(&metrics),
        "activator_outbox_messages{state=\"sent\"}",
        1.0,
    );
    // A reading taken now (the last one is over a second old)...
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let read_at = Instant::now();
    let before = scrape(&metrics);
    assert_series(&before, "activator_outbox_messages{state=\"queued\"}", 0.0);
    // ...then a message queued an hour ago and not due for another (the
    // dispatcher leaves it alone)...
    let mut conn = db.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "INSERT INTO email_outbox (user_id, recipient, payload, expires_at, created_at, next_attempt_at) \
             SELECT id, email, '\\x00', now() + interval '2 hours', now() - interval '1 hour', now() + interval '1 hour' FROM users",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    // ...is not seen by scrapes within that second: they share the reading.
    let mut scrapes = 0;
    while read_at.elapsed() < Duration::from_millis(700) {
        let text = scrape(&metrics);
        if read_at.elapsed() < Duration::from_millis(900) {
            assert_series(&text, "activator_outbox_messages{state=\"queued\"}", 0.0);
            scrapes += 1;
        }
    }
    assert!(scrapes > 3, "{scrapes} scrapes");
    // ...and a second later the new message shows, with its age.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let text = scrape(&metrics);
    assert_series(&text, "activator_outbox_messages{state=\"queued\"}", 1.0);
    let age = value(&text, "activator_outbox_oldest_pending_age_seconds").unwrap();
    assert!((3590.0..3700.0).contains(&age), "{age}");
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_accepts_the_exposition() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(&db, &sink, &[]);
    server
        .register(&unique_email("promtool"), PASSWORD)
        .await
        .pair();
    server.get("/health/live").await.pair();
    let text = scrape(&metrics);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_are_not_on_the_api_port_and_can_be_turned_off() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, _) = serve_with_metrics(&db, &sink, &[]);
    assert_eq!(server.get("/metrics").await.pair().0, 404);
    drop(server);
    // Off: the default port is not taken (nothing listens there because of
    // this server) and serve runs.
    let server = Server::start(&db.url, &[("METRICS_ADDRESS", "")]);
    assert_eq!(server.get("/health/live").await.pair().0, 200);
    // A taken address stops start-up with a line naming the setting.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = crate::common::server::command(
        &db.url,
        &[
            ("METRICS_ADDRESS", address.as_str()),
            ("ROCKET_PORT", &free_port().to_string()),
        ],
    )
    .arg("serve")
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("METRICS_ADDRESS"), "{stderr}");
}

/// A Prometheus server on loopback, stopped on drop.
struct Prometheus {
    child: Child,
    base: String,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` (`host:port`) every second.
    fn start(target: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "activator-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: activator\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/test.sh installs it)");
        Self {
            child,
            base: format!("http://{listen}"),
            _dir: TempDir(dir),
        }
    }

    /// The value of an instant query's single result, if it has one.
    fn query(&self, query: &str) -> Option<f64> {
        let mut response = Server::agent()
            .get(format!("{}/api/v1/query", self.base))
            .query("query", query)
            .call()
            .ok()?;
        let body: serde_json::Value =
            serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
        let result = body["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_the_service() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, metrics) = serve_with_metrics(&db, &sink, &[]);
    let target = metrics
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let prometheus = Prometheus::start(&target);
    for name in ["scraped-1", "scraped-2"] {
        assert_eq!(
            server.register(&unique_email(name), PASSWORD).await.code(),
            201
        );
    }
    let seen = eventually(Duration::from_secs(30), async || {
        prometheus
            .query("activator_registrations_total{job=\"activator\",outcome=\"created\"}")
            .filter(|created| *created == 2.0)
    })
    .await;
    assert_eq!(seen, Some(2.0), "Prometheus read the counter");
    assert_eq!(prometheus.query("up{job=\"activator\"}"), Some(1.0));
}

// ---- request ids and the access log -----------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_has_a_request_id_and_one_access_line() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let (server, _) = serve_with_metrics(&db, &sink, &[("LOG_FORMAT", "json")]);
    let email = unique_email("access");
    let agent = Server::agent();
    let register = |id: Option<&str>| {
        let mut request = agent.post(format!("{}/auth/register", server.base));
        if let Some(id) = id {
            request = request.header("X-Request-Id", id);
        }
        let response = request
            .send_json(json!({"email": email, "password": PASSWORD}))
            .unwrap();
        let id = response.headers().get("x-request-id").unwrap();
        (response.status().as_u16(), id.to_str().unwrap().to_owned())
    };
    // The caller's sane id is kept; another is replaced.
    assert_eq!(
        register(Some("client-42:attempt/1")).1,
        "client-42:attempt/1"
    );
    let (status, replaced) = register(Some("two words"));
    assert_eq!(status, 409);
    assert_eq!(replaced.len(), 32, "{replaced}");
    let (_, generated) = register(None);
    assert!(generated.len() == 32 && generated != replaced);
    // Errors Rocket answers itself carry one too.
    let response = agent
        .get(format!("{}/nowhere", server.base))
        .call()
        .unwrap();
    let missing = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let code = code_in(
        sink.wait_for(1, Duration::from_secs(5))[0]["body"]
            .as_str()
            .unwrap(),
    );
    let (status, _) = server
        .post_json(
            "/auth/activate",
            &json!({ "code": code }),
            Some((&email, PASSWORD)),
        )
        .await
        .pair();
    assert_eq!(status, 200);

    let (_, log) = server.stop_with("TERM");
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "activator::access")
        .collect();
    for (id, route, status) in [
        ("client-42:attempt/1", "/auth/register", 201),
        (replaced.as_str(), "/auth/register", 409),
        (generated.as_str(), "/auth/register", 409),
        (missing.as_str(), "unmatched", 404),
    ] {
        let lines: Vec<_> = access
            .iter()
            .filter(|line| line["request_id"] == id)
            .collect();
        assert_eq!(lines.len(), 1, "one line for {id}: {access:?}");
        let line = lines[0];
        assert_eq!(line["route"], route);
        assert_eq!(line["status"], status);
        assert!(
            line["method"].is_string() && line["duration_ms"].is_f64(),
            "{line}"
        );
    }
    let activation = access
        .iter()
        .find(|line| line["route"] == "/auth/activate")
        .expect("the activation's line");
    assert_eq!(activation["status"], 200);
    // Never a password, a code, credentials or a body.
    use base64::Engine;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{email}:{PASSWORD}"));
    assert!(!log.contains(PASSWORD));
    assert!(!log.contains(&credentials));
    assert!(!log.contains(&format!("\"{code}\"")), "the code in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_text_log_has_the_same_access_line() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let response = Server::agent()
        .get(format!("{}/health/live", server.base))
        .header("X-Request-Id", "probe-7")
        .call()
        .unwrap();
    assert_eq!(response.headers().get("x-request-id").unwrap(), "probe-7");
    let (_, log) = server.stop_with("TERM");
    let line = log
        .lines()
        .find(|line| line.contains("request_id=probe-7"))
        .unwrap_or_else(|| panic!("no access line: {log}"));
    for field in [
        "activator::access",
        "method=\"GET\"",
        "route=\"/health/live\"",
        "status=200",
        "duration_ms=",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
}

// ---- secrets stay out of the log --------------------------------------------

/// Runs register, resend, a wrong and a right activation against `serve`
/// with `RUST_LOG=trace` and every secret distinctive, then returns the log
/// and the secrets it must not hold.
async fn a_session_at_trace(log_format: &str) -> (String, Vec<String>) {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    // Trust authentication ignores the password, and the sink the
    // credentials and key: they are there to be looked for in the log.
    let database_url = db.url.replacen("postgres@", "postgres:db-pass-7c1f@", 1);
    let email_api = sink
        .url
        .replacen("http://", "http://mailer:api-pass-93ad@", 1)
        + "?key=query-key-5b2e";
    let secret_key = "secret-key-5d0c9e2a41-0123456789abcdef";
    let server = Server::start(
        &database_url,
        &[
            ("RUST_LOG", "trace"),
            ("LOG_FORMAT", log_format),
            ("EMAIL_API_URL", &email_api),
            ("SECRET_KEY", secret_key),
        ],
    );
    let email = unique_email("trace");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let first = sink.wait_for(1, Duration::from_secs(5));
    let auth = Some((email.as_str(), PASSWORD));
    let (status, _) = server
        .post_json("/auth/activate", &json!({"code": "0000"}), auth)
        .await
        .pair();
    assert_eq!(status, 400);
    assert_eq!(
        server
            .post_json("/auth/resend", &json!({}), auth)
            .await
            .pair()
            .0,
        202
    );
    let second = sink.wait_for(2, Duration::from_secs(5));
    let code = crate::common::code_in(second[1]["body"].as_str().unwrap());
    assert_eq!(
        server
            .post_json("/auth/activate", &json!({"code": code}), auth)
            .await
            .code(),
        200
    );
    let (_, log) = server.stop_with("TERM");
    assert!(
        log.contains("activation email sent"),
        "the log was captured"
    );
    assert!(
        log.lines().any(|line| line.contains("DEBUG")),
        "RUST_LOG=trace took effect: {log}"
    );

    let mut hash = None;
    let hashes = db
        .count("SELECT count(*) AS n FROM users WHERE password_hash LIKE '$2b$%'")
        .await;
    assert_eq!(hashes, 1);
    {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Hash {
            #[diesel(sql_type = diesel::sql_types::Text)]
            password_hash: String,
        }
        let mut conn = db.connect().await;
        let row: Hash = diesel::sql_query("SELECT password_hash FROM users")
            .get_result(&mut conn)
            .await
            .unwrap();
        hash.replace(row.password_hash);
    }
    use base64::Engine;
    let authorization =
        base64::engine::general_purpose::STANDARD.encode(format!("{email}:{PASSWORD}"));
    let first_code = crate::common::code_in(first[0]["body"].as_str().unwrap());
    let mut secrets = vec![
        PASSWORD.to_owned(),
        authorization,
        secret_key.to_owned(),
        "db-pass-7c1f".to_owned(),
        "api-pass-93ad".to_owned(),
        "query-key-5b2e".to_owned(),
        hash.unwrap()[7..].to_owned(),
    ];
    for code in [first_code, code] {
        secrets.extend([
            format!("code is: {code}"),
            format!("\"{code}\""),
            format!(": {code}"),
            format!(">{code}<"),
        ]);
    }
    (log, secrets)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_the_log_even_at_trace() {
    for format in ["text", "json"] {
        let (log, secrets) = a_session_at_trace(format).await;
        let leaks: Vec<String> = secrets
            .iter()
            .flat_map(|secret| {
                log.lines()
                    .filter(|line| line.contains(secret.as_str()))
                    .map(move |line| format!("{secret:?} in: {}", &line[..line.len().min(300)]))
            })
            .collect();
        assert!(leaks.is_empty(), "{format} log:\n{}", leaks.join("\n"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_query_string_reaches_the_log_at_any_level() {
    let db = TestDb::new().await;
    for (level, format) in [("info", "text"), ("debug", "json"), ("trace", "text")] {
        let server = Server::start(&db.url, &[("RUST_LOG", level), ("LOG_FORMAT", format)]);
        let query = "?email=query-owner%40example.com&password=Qu3ry!secret&code=4321";
        let reply = server
            .post_json(
                &format!("/auth/activate{query}"),
                &json!({"code": "1234"}),
                None,
            )
            .await;
        assert_eq!(reply.code(), 401);
        assert_eq!(
            server.get(&format!("/no/such/path{query}")).await.pair().0,
            404
        );
        let log = server.stderr();
        assert!(log.contains("activator::access"), "{level}: no access line");
        for secret in ["Qu3ry!secret", "password=", "code=4321", "query-owner"] {
            assert!(
                !log.contains(secret),
                "{level}/{format}: {secret} in the log"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_bad_headers_or_busy_answers_is_said_once_in_a_while() {
    let db = TestDb::new().await;
    let server = Server::start(
        &db.url,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("BCRYPT_COST", "10"),
            ("REGISTER_PER_IP_LIMIT", "1000"),
        ],
    );
    let base = server.base.trim_start_matches("http://").to_owned();
    for _ in 0..200 {
        let request = format!(
            "GET /health/live HTTP/1.1\r\nHost: {base}\r\nX-Note: caf\u{e9}\r\nConnection: close\r\n\r\n"
        );
        let mut bytes = request.into_bytes();
        // The header value as Latin-1: 0xE9, not UTF-8.
        let at = bytes.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
        bytes.splice(at..at + 2, [0xe9]);
        assert!(server.raw(&bytes).contains(" 200 "));
    }
    // More registrations at once than the hash queue holds (32 per core),
    // from many clients (each holds at most 4 places).
    let flood = (0..240).map(|i| {
        let email = unique_email(&format!("flood{i}"));
        let client = format!("198.51.100.{}", i % 200 + 1);
        let server = &server;
        async move { server.register_from(&client, &email, PASSWORD).await.code() }
    });
    let statuses: Vec<u16> = futures_util::future::join_all(flood).await;
    let busy = statuses.iter().filter(|&&s| s == 503).count();
    assert!(busy >= 10, "only {busy} busy answers: {statuses:?}");
    let log = server.stderr();
    let said = |needle: &str| log.lines().filter(|line| line.contains(needle)).count();
    let header_lines = said("not UTF-8") + said("invalid UTF-8");
    assert!(
        (1..=2).contains(&header_lines),
        "{header_lines} lines for 200 bad headers"
    );
    let busy_lines = said("password hashing queue is full");
    assert!(
        (1..=2).contains(&busy_lines),
        "{busy_lines} lines for {busy} busy answers"
    );
}
