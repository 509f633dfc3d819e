//! The binary, migrations, settings and health probes.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::cli::{error_line, stderr, stdout};
use crate::common::server::{free_port, run};
use crate::common::{TestApp, TestDb, settings_for};

/// How many migrations the binary embeds: one folder each.
fn migration_count() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().is_dir())
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_applies_everything_once_and_then_is_a_no_op() {
    let db = TestDb::empty().await;
    let total = migration_count();
    let status = run(&db.url, &[], &["migrate", "--status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert_eq!(
        stdout(&status)
            .lines()
            .filter(|l| l.starts_with("pending"))
            .count(),
        total
    );

    let first = run(&db.url, &[], &["migrate"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).starts_with(&format!("applied {total} migration(s)")),
        "{}",
        stdout(&first)
    );

    let second = run(&db.url, &[], &["migrate"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(stdout(&second).trim(), "database is up to date");

    let status = run(&db.url, &[], &["migrate", "--status"]);
    let lines: Vec<String> = stdout(&status).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), total);
    assert!(
        lines.iter().all(|line| line.starts_with("applied")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_migration_reverts_and_reapplies() {
    let db = TestDb::empty().await;
    assert!(run(&db.url, &[], &["migrate"]).status.success());
    let tables = async || {
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = diesel::sql_types::Text)]
            tablename: String,
        }
        let mut conn = db.connect().await;
        let names: Vec<Name> = diesel_async::RunQueryDsl::load(
            diesel::sql_query(
                "SELECT tablename::text AS tablename FROM pg_tables WHERE schemaname = 'public' \
                 AND tablename <> '__diesel_schema_migrations' ORDER BY 1",
            ),
            &mut conn,
        )
        .await
        .unwrap();
        names.into_iter().map(|n| n.tablename).collect::<Vec<_>>()
    };
    assert_eq!(
        tables().await,
        ["activation_codes", "email_outbox", "users"]
    );

    for _ in 0..migration_count() {
        let revert = run(&db.url, &[], &["migrate", "--revert"]);
        assert!(revert.status.success(), "{}", stderr(&revert));
        assert!(stdout(&revert).starts_with("reverted "));
    }
    assert!(tables().await.is_empty());

    let again = run(&db.url, &[], &["migrate"]);
    assert!(
        stdout(&again).starts_with(&format!("applied {} migration(s)", migration_count())),
        "{}",
        stdout(&again)
    );
    assert_eq!(
        tables().await,
        ["activation_codes", "email_outbox", "users"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_a_database_with_pending_migrations() {
    let db = TestDb::empty().await;
    let output = run(&db.url, &[], &["serve"]);
    assert_eq!(output.status.code(), Some(1));
    let err = error_line(&output);
    assert!(
        err.contains("pending migration") && err.contains("activator migrate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_with_migrate_applies_them_and_serves() {
    let db = TestDb::empty().await;
    let server = crate::common::Server::start_with_args(&db.url, &[], &["--migrate"]);
    let (status, body) = server.get("/health/check");
    assert_eq!(status, 200, "{body}");
    let after = run(&db.url, &[], &["migrate", "--status"]);
    assert!(
        stdout(&after)
            .lines()
            .all(|line| line.starts_with("applied"))
    );
}

#[test]
fn an_unreachable_database_is_one_line_and_exit_1() {
    let port = free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nowhere");
    for args in [
        &["migrate"][..],
        &["serve"],
        &["purge"],
        &["user", "show", "a@example.com"],
    ] {
        let output = run(&url, &[], args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let err = error_line(&output);
        assert!(err.contains("database"), "{args:?}: {err}");
    }
}

#[test]
fn a_malformed_or_missing_setting_is_named() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("BCRYPT_COST", "99")], "BCRYPT_COST"),
        (
            &[("ACTIVATION_CODE_TTL_SECONDS", "soon")],
            "ACTIVATION_CODE_TTL_SECONDS",
        ),
        (&[("SECRET_KEY", "short")], "SECRET_KEY"),
        (&[("LOG_FORMAT", "yaml")], "LOG_FORMAT"),
    ];
    for (env, name) in cases {
        let output = run("postgres://postgres@127.0.0.1:1/x", env, &["serve"]);
        assert_eq!(output.status.code(), Some(1));
        let err = error_line(&output);
        assert!(err.contains(name), "{err}");
    }
    let output = run("not a url", &[], &["migrate"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(error_line(&output).contains("DATABASE_URL"));

    let output = crate::common::server::command("postgres://x@127.0.0.1:1/x", &[])
        .env_remove("SECRET_KEY")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(error_line(&output).contains("missing setting SECRET_KEY"));
}

#[test]
fn a_usage_error_exits_2() {
    let output = run("postgres://x@127.0.0.1:1/x", &[], &["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
}

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

/// A Redis of one test's own, to stop mid-test.
pub struct PrivateRedis {
    child: Child,
    pub url: String,
}

impl PrivateRedis {
    pub fn start() -> Self {
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

    pub fn stop(&mut self) {
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
async fn unknown_paths_and_methods_answer_json() {
    let app = TestApp::new().await;
    let reply = app.get("/nope").await;
    reply.assert_detail(404, "Not Found");
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let reply = app.get("/auth/register").await;
    reply.assert_detail(405, "Method Not Allowed");
    assert_eq!(reply.header("allow"), Some("POST"));
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
    let (status, reply) = server.post("/auth/register", &body, None);
    assert_eq!(
        (status, reply.as_str()),
        (413, r#"{"detail":"Request body too large"}"#)
    );
}
