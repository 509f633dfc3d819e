//! Running the service (docs/OPERATIONS.md): the health endpoints ("Health
//! endpoints"), Redis down answered with 503s (docs/LIMITS.md "When Redis is
//! down"), a Redis Cluster (docs/LIMITS.md "Redis keys and Redis Cluster"),
//! `serve`'s start-up ("serve": open files, templates, the body limit),
//! routing answers (docs/API.md "Routing answers": 404, 405, 307), the API
//! documentation (docs/API.md "API documentation"), and the client's
//! address behind a proxy (docs/LIMITS.md "Client networks"). Metrics and
//! logs are `operations_monitoring.rs`. Rotating `SECRET_KEY` with the old
//! key as a fallback.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rocket::http::Header;
use serde_json::json;

use crate::common::cli::error_line;
use crate::common::email::code_for;
use crate::common::sentinel::ClusterNodes;
use crate::common::server::{free_port, run};
use crate::common::{Api, Call};
use crate::common::{
    MailSink, PASSWORD, Reply, Server, TestApp, TestDb, exactly, settings_for, unique_email,
    unique_ip, users_named, wrong_code,
};

// ---- health -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn health_is_ok_when_postgres_and_redis_answer() {
    let app = TestApp::new().await;
    let reply = app.get("/health/check").await;
    assert_eq!(reply.status.code, 200);
    // Exactly the original's body.
    assert_eq!(reply.body, r#"{"status":"ok"}"#);
    let live = app.get("/health/live").await;
    assert_eq!(live.status.code, 200);
    assert_eq!(live.json(), json!({"status": "ok"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_is_exactly_status_ok() {
    let app = TestApp::new().await;
    exactly(&app.get("/health/check").await, 200, r#"{"status":"ok"}"#);
}

/// A Redis of one test's own, to stop mid-test.
struct PrivateRedis {
    child: Child,
    url: String,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        let redis = Self {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_503_naming_redis_when_redis_stops() {
    let mut redis = PrivateRedis::start();
    let db = TestDb::new().await;
    let settings = settings_for(&db, &[("REDIS_URL", &redis.url)]);
    let app = TestApp::on(db, settings).await;
    assert_eq!(app.get("/health/check").await.status.code, 200);

    redis.stop();
    let reply = app.get("/health/check").await;
    assert_eq!(reply.status.code, 503, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["redis"], "unavailable");
    assert_eq!(body["postgres"], "ok");
    assert_eq!(body["detail"], "redis is unavailable");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_503_naming_postgres_when_the_database_is_gone() {
    let app = TestApp::new().await;
    assert_eq!(app.get("/health/check").await.status.code, 200);
    {
        use diesel_async::{AsyncConnection, RunQueryDsl};
        let mut admin = diesel_async::AsyncPgConnection::establish(&crate::common::admin_url())
            .await
            .unwrap();
        diesel::sql_query(format!("DROP DATABASE {} WITH (FORCE)", app.db.name))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let reply = app.get("/health/check").await;
    assert_eq!(reply.status.code, 503, "{}", reply.body);
    assert_eq!(reply.json()["postgres"], "unavailable");
    assert_eq!(reply.json()["redis"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_down_limited_endpoints_answer_503_json() {
    let mut redis = PrivateRedis::start();
    let db = TestDb::new().await;
    let settings = settings_for(&db, &[("REDIS_URL", &redis.url)]);
    let app = TestApp::on(db, settings).await;
    let email = unique_email("noredis");
    app.register(&email, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    let code = app.latest_code(&email).await;
    redis.stop();

    let resend = app.resend(&email, PASSWORD).await;
    assert_eq!(resend.status.code, 503, "{}", resend.body);
    assert!(resend.json()["detail"].is_string());
    let activate = app.activate(&email, PASSWORD, &code).await;
    assert_eq!(activate.status.code, 503, "{}", activate.body);
    assert!(activate.json()["detail"].is_string());
    // Fail closed: nothing was activated or issued.
    assert!(!users_named(&app, &email.to_lowercase()).await[0].is_active);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM email_outbox").await,
        1
    );
}

/// How many accounts, claims and outbox rows there are.
async fn rows_of(app: &TestApp) -> (i64, i64, i64) {
    (
        app.db.count("SELECT count(*) AS n FROM users").await,
        app.db.count("SELECT count(*) AS n FROM claims").await,
        app.db.count("SELECT count(*) AS n FROM email_outbox").await,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_down_every_owner_flow_is_503_never_401_or_429() {
    let mut redis = PrivateRedis::start();
    let db = TestDb::new().await;
    let settings = settings_for(&db, &[("REDIS_URL", &redis.url)]);
    let app = TestApp::on(db, settings).await;
    let email = unique_email("noredis-owner");
    app.register(&email, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    let code = app.latest_code(&email).await;
    let rows = rows_of(&app).await;
    redis.stop();

    let wrong = "Wr0ng!pass";
    let other = unique_email("noredis-new");
    for (what, reply) in [
        ("a new address", app.register(&other, PASSWORD).await),
        ("a claim", app.register(&email, "Cl4imant!pass").await),
        (
            "the same password again",
            app.register(&email, PASSWORD).await,
        ),
        ("resend, wrong password", app.resend(&email, wrong).await),
        ("resend", app.resend(&email, PASSWORD).await),
        (
            "activate, wrong password",
            app.activate(&email, wrong, &code).await,
        ),
        (
            "activate, wrong code",
            app.activate(&email, PASSWORD, "0000").await,
        ),
        ("activate", app.activate(&email, PASSWORD, &code).await),
    ] {
        reply.assert_detail(503, "Rate limiter unavailable, try again shortly");
        assert_eq!(reply.header("retry-after"), Some("1"), "{what}");
    }
    // Nothing was created, claimed, queued or activated meanwhile.
    assert_eq!(rows_of(&app).await, rows);
    assert!(!users_named(&app, &email.to_lowercase()).await[0].is_active);
}

// ---- Redis Cluster ----------------------------------------------------------

/// Three masters on loopback, each also using port + 10000 for its bus.
struct LocalCluster {
    _nodes: ClusterNodes,
    pub url: String,
}

impl LocalCluster {
    fn start() -> Self {
        let nodes = ClusterNodes::start(3);
        let addresses: Vec<String> = nodes
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        // Wait until every node agrees the cluster is up.
        nodes.wait_for(|info| info.contains("cluster_state:ok"));
        let url = nodes.url();
        Self { _nodes: nodes, url }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_work_on_a_redis_cluster() {
    let cluster = LocalCluster::start();
    let db = TestDb::new().await;
    let settings = settings_for(
        &db,
        &[
            ("REDIS_URL", &cluster.url),
            ("ACTIVATION_ATTEMPT_LIMIT", "2"),
        ],
    );
    assert_eq!(settings.redis_url.0.len(), 3);
    let app = TestApp::on(db, settings).await;
    assert_eq!(app.get("/health/check").await.status.code, 200);

    // Resend: atomic across the cluster, many emails spread over the slots.
    for n in 0..5 {
        let email = unique_email(&format!("cluster{n}"));
        app.register(&email, PASSWORD)
            .await
            .assert_detail(201, "Activation email sent");
        let replies = join_all((0..5).map(|_| app.resend(&email, PASSWORD))).await;
        let statuses: Vec<u16> = replies.iter().map(|r| r.status.code).collect();
        assert_eq!(
            statuses.iter().filter(|&&s| s == 202).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|&&s| s == 429).count(),
            4,
            "{statuses:?}"
        );
    }

    // Activation lockout and its reset.
    let email = unique_email("cluster-lock");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    let wrong = wrong_code(&code);
    for _ in 0..2 {
        app.activate(&email, PASSWORD, wrong)
            .await
            .assert_detail(400, "Invalid or expired activation code");
    }
    assert_eq!(app.activate(&email, PASSWORD, &code).await.status.code, 429);
}

// ---- serve's start-up -------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn serve_raises_its_open_files_limit_to_the_hard_limit() {
    let db = TestDb::new().await;
    let server = Server::start_wrapped(&["prlimit", "--nofile=256:4096"], &db.url, &[], &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{open_files}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_email_template_stops_start_up_naming_it() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("activator-bad-templates-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("fr")).unwrap();
    std::fs::write(
        dir.join("fr").join("body.txt.hbs"),
        "Code : {{#if code}}never closed",
    )
    .unwrap();
    let output = run(
        &db.url,
        &[("TEMPLATES_DIR", dir.to_str().unwrap())],
        &["serve"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = error_line(&output);
    assert!(err.contains("fr/body.txt.hbs"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_rocket_toml_the_body_limit_is_still_16_kib() {
    // The binary runs in a temporary directory, away from Rocket.toml.
    let db = TestDb::new().await;
    let server = crate::common::Server::start(&db.url, &[]);
    let body = json!({"email": "big@example.com", "password": "x".repeat(17 * 1024)});
    let (status, reply) = server.post_json("/auth/register", &body, None).await.pair();
    assert_eq!(
        (status, reply.as_str()),
        (413, r#"{"detail":"Request body too large"}"#)
    );
}

// ---- routing ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_and_methods_answer_json() {
    let app = TestApp::new().await;
    let reply = app.get("/nope").await;
    reply.assert_detail(404, "Not Found");
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let reply = app.get("/auth/register").await;
    reply.assert_detail(405, "Method Not Allowed");
    assert_eq!(reply.header("allow"), Some("POST"));
}

/// One raw HTTP/1.1 request to the real binary (Rocket's local client knows
/// only the methods it knows); the status line and the whole answer.
fn raw(server: &Server, request: &str) -> String {
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn a_method_a_path_does_not_have_is_405_with_allow_known_or_not() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    for method in ["GET", "PUT", "DELETE", "OPTIONS", "QUERY", "FOO"] {
        for (path, allow) in [("/auth/register", "POST"), ("/health/check", "GET")] {
            if method == "GET" && allow == "GET" {
                continue;
            }
            let answer = raw(
                &server,
                &format!(
                    "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            );
            assert!(
                answer.starts_with("HTTP/1.1 405"),
                "{method} {path}: {answer}"
            );
            assert!(
                answer.contains(&format!("\r\nallow: {allow}\r\n")),
                "{answer}"
            );
            assert!(
                answer.ends_with(r#"{"detail":"Method Not Allowed"}"#),
                "{answer}"
            );
        }
        let answer = raw(
            &server,
            &format!(
                "{method} /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        );
        assert!(answer.starts_with("HTTP/1.1 404"), "{method}: {answer}");
        assert!(answer.ends_with(r#"{"detail":"Not Found"}"#), "{answer}");
    }
}

/// The `Location` of a `POST /auth/activate/?next=1` with `headers`.
async fn redirect_of(server: &Server, headers: &[(&str, &str)]) -> String {
    let mut call = Call::post("/auth/activate/?next=1");
    for (name, value) in headers {
        call = call.header(name, value);
    }
    let reply = server.send(call).await;
    assert_eq!(reply.code(), 307, "{headers:?}");
    reply.header("location").unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trailing_slash_redirect_keeps_the_scheme_a_trusted_proxy_forwarded() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let host = server.base.trim_start_matches("http://").to_owned();
    // Loopback is a trusted proxy by default: a TLS client behind it is
    // sent back to https, on the host the proxy forwarded.
    let tls = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
    ];
    assert_eq!(
        redirect_of(&server, &tls).await,
        format!("https://{host}/auth/activate?next=1")
    );
    let plain = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "http"),
    ];
    assert_eq!(
        redirect_of(&server, &plain).await,
        format!("http://{host}/auth/activate?next=1")
    );
    // A proxy that does not say which scheme: relative, so the client
    // keeps its own.
    for unknown in [
        &[("X-Forwarded-For", "203.0.113.7")][..],
        &[
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "wss"),
        ][..],
    ] {
        assert_eq!(redirect_of(&server, unknown).await, "/auth/activate?next=1");
    }
    // A client that connected directly: http, as the original.
    assert_eq!(
        redirect_of(&server, &[]).await,
        format!("http://{host}/auth/activate?next=1")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_known_path_with_a_trailing_slash_redirects_307_to_it() {
    let app = TestApp::new().await;
    for (path, location) in [
        ("/auth/register/", "http://api.example.com/auth/register"),
        (
            "/health/check//?x=1",
            "http://api.example.com/health/check?x=1",
        ),
    ] {
        let reply = Reply::from(
            app.client
                .post(path)
                .header(Header::new("Host", "api.example.com"))
                .dispatch()
                .await,
        )
        .await;
        assert_eq!(
            (reply.status.code, reply.body.as_str()),
            (307, ""),
            "{path}"
        );
        assert_eq!(reply.header("location"), Some(location));
    }
    exactly(
        &app.get("/nowhere/").await,
        404,
        r#"{"detail":"Not Found"}"#,
    );
}

// ---- API documentation ------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_describes_every_route_status_and_basic_auth() {
    let app = TestApp::new().await;
    let reply = app.get("/openapi.json").await;
    assert_eq!(reply.status.code, 200);
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["basic"],
        json!({"type": "http", "scheme": "basic"})
    );

    let expected = [
        (
            "/auth/register",
            "post",
            &["201", "400", "409", "413", "422", "429", "503"][..],
        ),
        ("/auth/resend", "post", &["202", "401", "409", "429", "503"]),
        (
            "/auth/activate",
            "post",
            &["200", "400", "401", "413", "422", "429", "503"],
        ),
        ("/health/check", "get", &["200", "503"]),
        ("/health/live", "get", &["200"]),
    ];
    for (path, method, statuses) in expected {
        let responses = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} missing"));
        let mut documented: Vec<&str> = responses.keys().map(String::as_str).collect();
        documented.sort_unstable();
        assert_eq!(documented, statuses, "{method} {path}");
        if let Some(limited) = responses.get("429") {
            assert!(limited["headers"]["Retry-After"].is_object(), "{path}");
        }
        if let Some(refused) = responses.get("401") {
            assert!(refused["headers"]["WWW-Authenticate"].is_object(), "{path}");
        }
    }
    for path in ["/auth/resend", "/auth/activate"] {
        assert_eq!(
            doc["paths"][path]["post"]["security"],
            json!([{"basic": []}])
        );
    }
    let register = &doc["components"]["schemas"]["RegisterRequest"];
    assert_eq!(register["required"], json!(["email", "password"]));
    assert_eq!(
        doc["components"]["schemas"]["ActivateRequest"]["properties"]["code"]["pattern"],
        r"^(\d{4}|\d{8})$"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_page_loads_only_this_servers_scripts_under_a_strict_policy() {
    let app = TestApp::new().await;
    let page = app.get("/docs").await;
    assert_eq!(page.status.code, 200);
    assert!(
        page.content_type
            .as_deref()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(
        page.header("content-security-policy"),
        Some(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    );
    assert!(
        !page.body.contains("https://"),
        "the page must not need the internet"
    );
    let init = page
        .body
        .find(r#"<script src="/docs/init.js">"#)
        .expect("init.js");
    let bundle_at = page
        .body
        .find(r#"<script src="/docs/scalar-"#)
        .expect("the bundle");
    assert!(init < bundle_at, "init.js runs first");
    let bundle = &page.body[bundle_at + 13..];
    let bundle = &bundle[..bundle.find('"').unwrap()];
    assert!(
        bundle.starts_with("/docs/scalar-") && bundle.ends_with(".js"),
        "{bundle}"
    );

    let init = app.get("/docs/init.js").await;
    assert_eq!(init.content_type.as_deref(), Some("text/javascript"));
    for setting in [
        "url: '/openapi.json'",
        "agent: { disabled: true }",
        "showDeveloperTools: 'never'",
        "hideClientButton: true",
        "withDefaultFonts: false",
    ] {
        assert!(init.body.contains(setting), "{setting}");
    }
    assert!(!page.body.contains("<script>") && !init.body.contains("<script"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bundle_is_served_gzipped_and_cached_for_good() {
    use rocket::http::Header;
    let app = TestApp::new().await;
    let page = app.get("/docs").await;
    let at = page.body.find("/docs/scalar-").unwrap();
    let path = &page.body[at..at + page.body[at..].find('"').unwrap()];

    let response = app
        .client
        .get(path.to_owned())
        .header(Header::new("Accept-Encoding", "gzip, deflate, br"))
        .dispatch()
        .await;
    assert_eq!(response.status().code, 200);
    let headers = response.headers().clone();
    assert_eq!(headers.get_one("Content-Encoding"), Some("gzip"));
    assert_eq!(
        headers.get_one("Cache-Control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(headers.get_one("Vary"), Some("Accept-Encoding"));
    let gzipped = response.into_bytes().await.unwrap();
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&gzipped[..]),
        &mut unzipped,
    )
    .unwrap();
    assert!(gzipped.len() < 1_100_000, "{} bytes", gzipped.len());
    assert!(unzipped.len() > 3_000_000);

    // A client that takes no gzip gets the same script, plain.
    let plain = app.get(path).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body.as_bytes(), &unzipped[..]);
    assert!(plain.body.contains("createApiReference"));
    // Any other name is not served.
    assert_eq!(app.get("/docs/scalar.js").await.status.code, 404);
}

// ---- behind a proxy ---------------------------------------------------------

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
async fn loopback_is_a_trusted_proxy_by_default_and_limited_like_any_client_without_one() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[("REGISTER_PER_IP_LIMIT", "1")]);
    // A proxy on this host: each client it names is counted apart.
    for client in ["203.0.113.5", "203.0.113.6"] {
        let reply = server
            .register_from(client, &unique_email("proxied"), PASSWORD)
            .await;
        assert_eq!(reply.code(), 201, "{reply:?}");
    }
    // Loopback with no header is a client like any other: limited.
    assert_eq!(
        server
            .register(&unique_email("local"), PASSWORD)
            .await
            .code(),
        201
    );
    assert_eq!(
        server
            .register(&unique_email("local"), PASSWORD)
            .await
            .code(),
        429
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exempt_peer_sending_forwarded_for_is_warned_about_once() {
    let db = TestDb::new().await;
    // A proxy that is exempt but not trusted: its header is not believed,
    // and the operator is told once.
    let server = Server::start(
        &db.url,
        &[
            ("REGISTER_PER_IP_LIMIT", "1"),
            ("TRUSTED_PROXIES", ""),
            ("RATE_LIMIT_EXEMPT", "127.0.0.0/8,::1"),
        ],
    );
    for _ in 0..3 {
        let reply = server
            .register_from("203.0.113.5", &unique_email("warned"), PASSWORD)
            .await;
        assert_eq!(reply.code(), 201, "the exempt peer is not limited");
    }
    let (_, log) = server.stop_with("TERM");
    let warnings = log
        .lines()
        .filter(|line| line.contains("TRUSTED_PROXIES"))
        .count();
    assert_eq!(warnings, 1, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_address_that_does_not_read_or_is_loopback_is_never_exempt() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[("TRUSTED_PROXIES", "127.0.0.1/32")]);
    // Counted against the proxy (that no other test trusts), or against the
    // forwarded loopback address: never exempt, so at most 30 of 40.
    let unreadable = ["junk", "unknown", "", "[::1]", "fe80::1%eth0"];
    let cases: [Vec<&str>; 2] = [
        unreadable.iter().cycle().take(40).copied().collect(),
        vec!["127.0.0.5"; 40],
    ];
    for (case, forwarded) in cases.iter().enumerate() {
        let mut created = 0;
        let mut limited = 0;
        for (i, hop) in forwarded.iter().enumerate() {
            let email = unique_email(&format!("fwd{case}-{i}"));
            let (status, body) = server
                .send(
                    Call::post("/auth/register")
                        .header("X-Forwarded-For", hop)
                        .json(&json!({"email": email, "password": PASSWORD})),
                )
                .await
                .pair();
            match status {
                201 => created += 1,
                429 => limited += 1,
                other => panic!("{hop:?}: {other} {body}"),
            }
        }
        assert!(created <= 30, "case {case}: {created} of 40 created");
        assert!(limited >= 10, "case {case}: {limited} limited");
    }
}

// ---- key rotation -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_with_the_old_one_as_fallback_keeps_codes_and_queued_emails() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let email = unique_email("rotation");
    let new_key = "the-rotated-integration-test-secret-key-0123456789";
    let failures = |env: &[(&str, &str)]| {
        let shown = run(&db.url, env, &["user", "show", &email, "--json"]);
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        shown["auth_failures_in_window"].clone()
    };
    {
        let old = Server::start(&db.url, &[("EMAIL_API_URL", sink.url.as_str())]);
        assert_eq!(old.register(&email, PASSWORD).await.code(), 201);
        code_for(&sink, &email);
        // An attacker's counts, which a rotation must not reset.
        for _ in 0..3 {
            assert_eq!(old.resend(&email, "Wr0ng!pass").await.code(), 401);
        }
    }
    assert_eq!(failures(&[]), 3);
    // A new code queued under the old key while no server runs.
    let resent = run(&db.url, &[], &["user", "resend", &email]);
    assert!(resent.status.success(), "{resent:?}");
    let posts = sink.posts();

    let fallbacks = crate::common::SECRET_KEY;
    let rotated = Server::start(
        &db.url,
        &[
            ("EMAIL_API_URL", sink.url.as_str()),
            ("SECRET_KEY", new_key),
            ("SECRET_KEY_FALLBACKS", fallbacks),
        ],
    );
    // The queued email opens under the fallback and is sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.posts() == posts {
        assert!(Instant::now() < deadline, "the queued email was not sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = code_for(&sink, &email);
    // The counters are where they were, under either key.
    assert_eq!(failures(&[("SECRET_KEY", new_key)]), 3);
    // Its code, hashed under the old key, still activates.
    assert_eq!(rotated.activate(&email, PASSWORD, &code).await.code(), 200);
    // New registrations work under the new key alone.
    let newcomer = unique_email("rotation-new");
    assert_eq!(rotated.register(&newcomer, PASSWORD).await.code(), 201);
    let code = code_for(&sink, &newcomer);
    // Stopped, serve has recorded when the fallback was last needed;
    // `config check` says so, by the key's fingerprint, never the key.
    let (stopped, _) = rotated.stop_with("TERM");
    assert!(stopped.success(), "{stopped:?}");
    let unused = "a-fallback-that-nothing-was-sealed-under-0123456789";
    let checked = run(
        &db.url,
        &[
            ("SECRET_KEY", new_key),
            ("SECRET_KEY_FALLBACKS", &format!("{fallbacks},{unused}")),
        ],
        &["config", "check"],
    );
    assert!(checked.status.success(), "{checked:?}");
    let said = String::from_utf8_lossy(&checked.stdout).into_owned();
    let line = |n: usize| {
        let start = format!("SECRET_KEY_FALLBACKS: fallback {n} (fingerprint ");
        said.lines()
            .find(|line| line.starts_with(&start))
            .unwrap_or_else(|| panic!("no line for fallback {n}: {said}"))
            .to_owned()
    };
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        line(1).contains(&format!(" last used {today}T")),
        "{}",
        line(1)
    );
    assert!(line(2).ends_with(" never used by serve"), "{}", line(2));
    assert!(
        !said.contains(fallbacks) && !said.contains(unused),
        "{said}"
    );
    let only_new = Server::start(
        &db.url,
        &[
            ("EMAIL_API_URL", sink.url.as_str()),
            ("SECRET_KEY", new_key),
        ],
    );
    assert_eq!(
        only_new.activate(&newcomer, PASSWORD, &code).await.code(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_key_without_the_old_one_as_fallback_stops_start_up_naming_it() {
    let db = TestDb::new().await;
    // The first start makes the key that names Redis keys, sealed under
    // the tests' key.
    drop(Server::start(&db.url, &[]));
    let output = crate::common::server::command(
        &db.url,
        &[(
            "SECRET_KEY",
            "a-replacement-key-with-no-fallback-0123456789",
        )],
    )
    .arg("serve")
    .output()
    .unwrap();
    assert!(!output.status.success());
    let line = error_line(&output);
    assert!(line.contains("SECRET_KEY_FALLBACKS"), "{line}");
    assert!(!line.contains("a-replacement-key"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fallback_that_is_secret_key_itself_stops_start_up_naming_it() {
    let db = TestDb::new().await;
    let key = crate::common::SECRET_KEY;
    for command in ["serve", "config"] {
        let mut run = crate::common::server::command(&db.url, &[("SECRET_KEY_FALLBACKS", key)]);
        run.arg(command);
        if command == "config" {
            run.arg("check");
        }
        let output = run.output().unwrap();
        assert!(!output.status.success(), "{command}: {output:?}");
        let line = error_line(&output);
        assert!(
            line.contains("SECRET_KEY_FALLBACKS") && line.contains("holds SECRET_KEY itself"),
            "{command}: {line}"
        );
        assert!(!line.contains(key), "{command}: {line}");
    }
}

/// Commands this Redis has processed so far.
fn commands_processed(url: &str) -> u64 {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A registration of a new address labelled `label` from `client`.
async fn register_new(server: &Server, client: &str, label: &str) -> Reply {
    server
        .register_from(client, &unique_email(label), PASSWORD)
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_registration_window_is_refused_from_memory_and_exactly_across_instances() {
    let redis = PrivateRedis::start();
    let db = TestDb::new().await;
    let env = [
        ("REDIS_URL", redis.url.as_str()),
        ("REGISTER_PER_IP_LIMIT", "3"),
        ("REGISTER_PER_IP_WINDOW_SECONDS", "3"),
    ];
    let (a, b) = (Server::start(&db.url, &env), Server::start(&db.url, &env));
    let client = crate::common::ipv4(9);
    // The window fills across both instances.
    assert_eq!(register_new(&a, &client, "window-1").await.code(), 201);
    assert_eq!(register_new(&b, &client, "window-2").await.code(), 201);
    assert_eq!(register_new(&a, &client, "window-3").await.code(), 201);
    const FULL: &str = "Too many registration attempts. Please try again later.";
    let first = crate::common::assert_limited(&register_new(&a, &client, "window-4").await, FULL);
    crate::common::assert_limited(&register_new(&b, &client, "window-5").await, FULL);

    // Refused again and again on either: from memory, no Redis command.
    let before = commands_processed(&redis.url);
    for i in 0..100 {
        let server = if i % 2 == 0 { &a } else { &b };
        let wait =
            crate::common::assert_limited(&register_new(server, &client, "flood").await, FULL);
        assert!(wait <= first, "{wait} > {first}");
    }
    let asked = commands_processed(&redis.url) - before - 1;
    assert!(asked <= 2, "{asked} Redis commands for 100 refusals");

    // Never longer than Redis keeps the window: right after it ends, both
    // instances count again (the fourth of the new window is refused).
    tokio::time::sleep(Duration::from_millis(first * 1000 + 100)).await;
    assert_eq!(register_new(&a, &client, "next-1").await.code(), 201);
    assert_eq!(register_new(&b, &client, "next-2").await.code(), 201);
    assert_eq!(register_new(&b, &client, "next-3").await.code(), 201);
    crate::common::assert_limited(&register_new(&a, &client, "next-4").await, FULL);
}
