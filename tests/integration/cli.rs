//! The operator's commands, run as the real binary against real PostgreSQL
//! and Redis (docs/OPERATIONS.md "Commands"): `migrate` (and `serve`'s
//! refusal of, or `--migrate` for, pending migrations), `user resend`,
//! `user unlock`, `user show`, `user delete`, `purge`, `healthcheck`; usage
//! errors (exit 2), and broken settings, a placeholder or short
//! `SECRET_KEY` or an unreachable database (one line, exit 1;
//! docs/OPERATIONS.md "Configuration"). `config check` is `cli_config.rs`.

use std::process::Output;
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::common::Api;
use crate::common::cli::{error_line, refused, stderr, stdout, succeeded};
use crate::common::server::{free_port, run};
use crate::common::{
    MailSink, PASSWORD, Server, TestApp, TestDb, code_in, unique_email, wrong_code,
};

async fn sql(app: &TestApp, statement: &str) -> usize {
    let mut conn = app.db.connect().await;
    diesel::sql_query(statement)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|err| panic!("{statement}: {err}"))
}

// ---- migrate ----------------------------------------------------------------

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
        [
            "activation_codes",
            "claims",
            "email_outbox",
            "secret_key_uses",
            "service_keys",
            "users"
        ]
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
        [
            "activation_codes",
            "claims",
            "email_outbox",
            "secret_key_uses",
            "service_keys",
            "users"
        ]
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
    let (status, body) = server.get("/health/check").await.pair();
    assert_eq!(status, 200, "{body}");
    let after = run(&db.url, &[], &["migrate", "--status"]);
    assert!(
        stdout(&after)
            .lines()
            .all(|line| line.starts_with("applied"))
    );
}

// ---- user resend ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn user_resend_queues_a_code_that_a_running_serve_delivers() {
    let app = TestApp::new().await;
    let sink = MailSink::start();
    let server = Server::start(&app.db.url, &[("EMAIL_API_URL", &sink.url)]);
    let email = unique_email("cli-resend");
    server.register(&email, PASSWORD).await.pair();
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).len(), 1);
    // The user's own resend limit is spent; support is not bound by it.
    assert_eq!(server.resend(&email, PASSWORD).await.code(), 202);
    assert_eq!(server.resend(&email, PASSWORD).await.code(), 429);

    let out = succeeded(&run(
        &app.db.url,
        &[],
        &["user", "resend", &email.to_uppercase()],
    ));
    assert!(
        out.contains("queued a new activation code for") && out.contains(&email),
        "{out}"
    );
    let delivered = sink.wait_for(3, Duration::from_secs(2));
    assert_eq!(
        delivered.len(),
        3,
        "the running serve delivers it within a second or so"
    );
    let newest = code_in(delivered[2]["body"].as_str().unwrap());
    let older = code_in(delivered[1]["body"].as_str().unwrap());
    if older != newest {
        let (status, _) = server
            .post_json(
                "/auth/activate",
                &json!({"code": older}),
                Some((&email, PASSWORD)),
            )
            .await
            .pair();
        assert_eq!(status, 400, "a superseded code is refused");
    }
    let (status, _) = server
        .post_json(
            "/auth/activate",
            &json!({"code": newest}),
            Some((&email, PASSWORD)),
        )
        .await
        .pair();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_resend_refuses_unknown_and_active_accounts() {
    let app = TestApp::new().await;
    let unknown = unique_email("cli-unknown");
    let err = refused(&run(&app.db.url, &[], &["user", "resend", &unknown]));
    assert!(err.contains(&format!("no account for {unknown}")), "{err}");

    let email = unique_email("cli-active");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
    let err = refused(&run(&app.db.url, &[], &["user", "resend", &email]));
    assert!(err.contains("already active"), "{err}");
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM email_outbox").await,
        1,
        "nothing queued"
    );
}

// ---- user unlock ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn user_unlock_lets_a_locked_user_activate_again() {
    let app = TestApp::new().await;
    let email = unique_email("cli-unlock");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    for _ in 0..5 {
        app.activate(&email, PASSWORD, wrong_code(&code)).await;
    }
    assert_eq!(app.activate(&email, PASSWORD, &code).await.status.code, 429);

    let out = succeeded(&run(&app.db.url, &[], &["user", "unlock", &email]));
    assert_eq!(
        out.trim(),
        format!(
            "cleared the activation lockout, the failure counters, 5 failed activation(s) from the budget for {email}"
        )
    );
    app.activate(&email, PASSWORD, &code)
        .await
        .assert_detail(200, "Account activated");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_unlock_says_what_it_cleared() {
    let app = TestApp::new().await;
    let email = unique_email("cli-unlock-say");
    app.register(&email, PASSWORD).await;
    let out = succeeded(&run(&app.db.url, &[], &["user", "unlock", &email]));
    assert_eq!(out.trim(), format!("{email} had nothing to clear"));

    let code = app.latest_code(&email).await;
    app.activate(&email, PASSWORD, wrong_code(&code)).await;
    app.resend(&email, PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
    assert_eq!(app.resend(&email, PASSWORD).await.status.code, 429);
    let out = succeeded(&run(
        &app.db.url,
        &[],
        &["user", "unlock", &email, "--resend-limits"],
    ));
    assert_eq!(
        out.trim(),
        format!(
            "cleared the failure counters, 1 failed activation(s) from the budget, \
             the resend counters for {email}"
        )
    );
    app.resend(&email, PASSWORD)
        .await
        .assert_detail(202, "Activation email resent");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_unlock_refuses_an_unknown_account() {
    let app = TestApp::new().await;
    let email = unique_email("cli-unlock-unknown");
    let err = refused(&run(&app.db.url, &[], &["user", "unlock", &email]));
    assert!(err.contains("no account for"), "{err}");
}

// ---- user show --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn user_show_reports_account_lock_code_and_email_state() {
    let app = TestApp::new().await;
    let email = unique_email("cli-show");
    app.register(&email, PASSWORD).await;
    let code = app.latest_code(&email).await;
    for _ in 0..5 {
        app.activate(&email, PASSWORD, wrong_code(&code)).await;
    }

    let text = succeeded(&run(&app.db.url, &[], &["user", "show", &email]));
    assert!(text.contains(&format!("email       {email}")), "{text}");
    assert!(text.contains("account     pending"), "{text}");
    assert!(text.contains("lockout     locked, "), "{text}");
    assert!(text.contains("code        valid until "), "{text}");
    assert!(
        text.contains("last email  queued after 0 attempt(s)"),
        "{text}"
    );
    assert!(!text.contains(&code), "the code is never shown: {text}");

    let json: Value = serde_json::from_str(&succeeded(&run(
        &app.db.url,
        &[],
        &["user", "show", &email, "--json"],
    )))
    .unwrap();
    assert_eq!(json["email"], email.as_str());
    assert_eq!(json["state"], "pending");
    assert_eq!(json["locked"], true);
    let left = json["lock_seconds_left"].as_u64().unwrap();
    assert!((800..=900).contains(&left), "{left}");
    assert_eq!(json["code"]["expired"], false);
    assert_eq!(json["last_email"]["status"], "queued");
    assert_eq!(json["last_email"]["attempts"], 0);
    assert!(!json.to_string().contains(&format!("\"{code}\"")));
}

#[tokio::test(flavor = "multi_thread")]
async fn user_show_reports_a_dead_email_with_its_error() {
    let app = TestApp::new().await;
    let email = unique_email("cli-show-dead");
    app.register(&email, PASSWORD).await;
    sql(
        &app,
        "UPDATE email_outbox SET status = 'dead', attempts = 5, finished_at = now(), \
               payload = NULL, last_status = 503, last_error = '503: down'",
    )
    .await;
    let json: Value = serde_json::from_str(&succeeded(&run(
        &app.db.url,
        &[],
        &["user", "show", &email, "--json"],
    )))
    .unwrap();
    assert_eq!(json["last_email"]["status"], "dead");
    assert_eq!(json["last_email"]["attempts"], 5);
    assert_eq!(json["last_email"]["last_error"], "503: down");
    let text = succeeded(&run(&app.db.url, &[], &["user", "show", &email]));
    assert!(
        text.contains("dead after 5 attempt(s)") && text.contains("last error: 503: down"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_commands_refuse_unknown_users_and_malformed_emails() {
    let app = TestApp::new().await;
    let err = refused(&run(
        &app.db.url,
        &[],
        &["user", "show", "nobody@example.com"],
    ));
    assert_eq!(err, "activator: no account for nobody@example.com");
    let output = run(&app.db.url, &[], &["user", "show", "not-an-email"]);
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn user_commands_reach_accounts_stored_under_older_validation_rules() {
    let app = TestApp::new().await;
    sql(
        &app,
        "INSERT INTO users (email, password_hash) VALUES ('old-rules@localhost', 'x')",
    )
    .await;
    let text = succeeded(&run(
        &app.db.url,
        &[],
        &["user", "show", " Old-Rules@LOCALHOST "],
    ));
    assert!(text.contains("email       old-rules@localhost"), "{text}");
    let out = succeeded(&run(
        &app.db.url,
        &[],
        &["user", "resend", "old-rules@localhost"],
    ));
    assert!(out.starts_with("queued a new activation code"), "{out}");
}

// ---- purge ------------------------------------------------------------------

/// Rows in (activation_codes, email_outbox, users).
async fn rows(app: &TestApp) -> (i64, i64, i64) {
    let count = |table: &str| format!("SELECT count(*) AS n FROM {table}");
    (
        app.db.count(&count("activation_codes")).await,
        app.db.count(&count("email_outbox")).await,
        app.db.count(&count("users")).await,
    )
}

/// Seeds spent and live rows: 3 spent codes (used, superseded short,
/// expired), 1 live, and 1 long one superseded but not expired (it still
/// proves the inbox to others); 3 old finished emails (sent, dead, expired),
/// 1 recent sent and 1 queued; a claim ended two days ago, one ended now,
/// one live; 2 pending accounts older than 10 days, 1 recent, 1 old but
/// active.
async fn seed_purgeable(app: &TestApp) {
    sql(app, "INSERT INTO users (id, email, password_hash, is_active, created_at, activated_at) VALUES \
        (1, 'old1@example.com', 'x', false, now() - interval '10 days', NULL), \
        (2, 'old2@example.com', 'x', false, now() - interval '10 days', NULL), \
        (3, 'new@example.com', 'x', false, now(), NULL), \
        (4, 'active@example.com', 'x', true, now() - interval '30 days', now() - interval '30 days')").await;
    sql(app, "INSERT INTO activation_codes (user_id, code_hash, expires_at, used_at, superseded_at) VALUES \
        (4, 'a', now() - interval '30 days', now() - interval '30 days', NULL), \
        (3, 'b', now() + interval '1 minute', NULL, now()), \
        (1, 'c', now() - interval '10 days', NULL, NULL), \
        (3, 'd', now() + interval '1 minute', NULL, NULL)").await;
    sql(app, "INSERT INTO activation_codes (user_id, code_hash, expires_at, superseded_at, inbox, digits, claim_id) VALUES \
        (3, 'e', now() + interval '1 minute', now(), 'new@example.com', 8, NULL)").await;
    sql(
        app,
        "INSERT INTO claims (user_id, password_hash, ended_at) VALUES \
        (3, 'x', now() - interval '2 days'), (3, 'x', now()), (3, 'x', NULL)",
    )
    .await;
    sql(app, "INSERT INTO email_outbox (user_id, recipient, payload, status, created_at, expires_at, finished_at) VALUES \
        (4, 'active@example.com', NULL, 'sent', now() - interval '30 days', now() - interval '30 days', now() - interval '30 days'), \
        (4, 'active@example.com', NULL, 'dead', now() - interval '9 days', now() - interval '9 days', now() - interval '8 days'), \
        (4, 'active@example.com', NULL, 'expired', now() - interval '9 days', now() - interval '9 days', now() - interval '8 days'), \
        (3, 'new@example.com', NULL, 'sent', now() - interval '1 day', now(), now() - interval '1 day'), \
        (3, 'new@example.com', 'sealed', 'queued', now(), now() + interval '1 minute', NULL)").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_dry_run_counts_and_deletes_nothing() {
    let app = TestApp::new().await;
    seed_purgeable(&app).await;
    let out = succeeded(&run(
        &app.db.url,
        &[],
        &["purge", "--dry-run", "--unactivated-older-than", "7"],
    ));
    assert_eq!(
        out.trim(),
        "would delete 3 code(s), 3 email(s), 1 ended claim(s), 2 account(s)"
    );
    assert_eq!(rows(&app).await, (5, 5, 4));
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_deletes_spent_codes_and_old_emails_but_accounts_only_when_asked() {
    let app = TestApp::new().await;
    seed_purgeable(&app).await;
    let out = succeeded(&run(
        &app.db.url,
        &[],
        &["purge", "--json", "--batch-size", "2"],
    ));
    let counts: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        counts,
        json!({"dry_run": false, "codes": 3, "emails": 3, "claims": 1, "accounts": 0})
    );
    assert_eq!(rows(&app).await, (2, 2, 4));
    assert_eq!(app.db.count("SELECT count(*) AS n FROM claims").await, 2);

    let out = succeeded(&run(
        &app.db.url,
        &[],
        &["purge", "--unactivated-older-than", "7"],
    ));
    assert_eq!(
        out.trim(),
        "deleted 0 code(s), 0 email(s), 0 ended claim(s), 2 account(s)"
    );
    assert_eq!(app.db.count("SELECT count(*) AS n FROM users").await, 2);

    let out = succeeded(&run(&app.db.url, &[], &["purge"]));
    assert_eq!(
        out.trim(),
        "deleted 0 code(s), 0 email(s), 0 ended claim(s), 0 account(s)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_running_at_once_delete_every_row_once() {
    let app = TestApp::new().await;
    sql(&app, "INSERT INTO users (email, password_hash) SELECT 'p' || g || '@example.com', 'x' FROM generate_series(1, 3000) g").await;
    sql(
        &app,
        "INSERT INTO activation_codes (user_id, code_hash, expires_at, used_at) \
               SELECT id, 'h', now() - interval '1 day', now() - interval '1 day' FROM users",
    )
    .await;
    let url = app.db.url.clone();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || run(&url, &[], &["purge", "--json", "--batch-size", "100"]))
        })
        .collect();
    let mut total = 0;
    for run in runs {
        let output = run.join().unwrap();
        let counts: Value = serde_json::from_str(&succeeded(&output)).unwrap();
        total += counts["codes"].as_u64().unwrap();
    }
    assert_eq!(total, 3000);
    assert_eq!(
        app.db
            .count("SELECT count(*) AS n FROM activation_codes")
            .await,
        0
    );
}

// ---- healthcheck ------------------------------------------------------------

fn healthcheck(database_url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut all = vec!["healthcheck"];
    all.extend_from_slice(args);
    run(database_url, env, &all)
}

#[track_caller]
fn healthy(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty() && output.stderr.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_passes_against_a_running_serve() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let url = format!("{}/health/live", server.base);
    healthy(&healthcheck(&db.url, &[], &["--url", &url]));
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_finds_serve_where_rocket_settings_bind_it() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    // As in the container: serve binds every interface, the probe loopback.
    healthy(&healthcheck(
        &db.url,
        &[("ROCKET_ADDRESS", "0.0.0.0"), ("ROCKET_PORT", &port)],
        &[],
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_fails_with_one_line_when_nothing_listens() {
    let db = TestDb::new().await;
    let url = format!("http://127.0.0.1:{}/health/live", free_port());
    let output = healthcheck(&db.url, &[], &["--url", &url]);
    assert_eq!(output.status.code(), Some(1));
    let line = error_line(&output);
    assert!(line.contains(&url) && line.contains("no answer"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_fails_on_an_answer_other_than_2xx() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let url = format!("{}/health/nothing-here", server.base);
    let output = healthcheck(&db.url, &[], &["--url", &url]);
    assert_eq!(output.status.code(), Some(1));
    let line = error_line(&output);
    assert!(line.contains("404"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_gives_up_on_a_server_that_never_answers() {
    let db = TestDb::new().await;
    // Accepts connections (the kernel does, from the backlog) and never
    // answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health/live", listener.local_addr().unwrap());
    let started = Instant::now();
    let output = healthcheck(&db.url, &[], &["--url", &url, "--timeout", "1"]);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1));
    let line = error_line(&output);
    assert!(line.contains(&url), "{line}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(listener);
}

// ---- usage errors, settings, an unreachable database ------------------------

#[test]
fn a_usage_error_exits_2() {
    let output = run("postgres://x@127.0.0.1:1/x", &[], &["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["user"][..],
        &["user", "show"],
        &["purge", "--batch-size", "0"],
        &["migrate", "--status", "--revert"],
    ] {
        let output = run("postgres://x@127.0.0.1:1/x", &[], args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
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
fn an_invalid_url_setting_is_named_but_not_echoed() {
    for (name, value) in [
        ("DATABASE_URL", "postgres://app:hunter2@db host/activator"),
        ("REDIS_URL", "redis://:hunter2@[::1"),
        ("EMAIL_API_URL", "http://user:hunter2@exa mple.com/send"),
    ] {
        let output = crate::common::server::run(
            "postgres://postgres@127.0.0.1:1/activator",
            &[(name, value)],
            &["serve"],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(name) && !stderr.contains("hunter2"),
            "{stderr}"
        );
    }
}

#[test]
fn a_broken_env_file_is_named_by_line_without_its_text() {
    let dir = std::env::temp_dir().join(format!("activator-dotenv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        "LOG_FORMAT=text\n# a comment\nSECRET_KEY='hunter2-unterminated\n",
    )
    .unwrap();
    let output = crate::common::server::command("postgres://x@127.0.0.1:1/x", &[])
        .current_dir(&dir)
        .args(["migrate", "--status"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let line = refused(&output);
    assert!(line.contains(".env") && line.contains("line 3"), "{line}");
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("hunter2"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_the_placeholder_key_and_short_keys_naming_the_setting() {
    let db = TestDb::new().await;
    for key in [
        "change-me-to-a-long-random-string",
        "thirty-one-bytes-is-not-enough!",
    ] {
        let output = run(&db.url, &[("SECRET_KEY", key)], &["serve"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{key}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("SECRET_KEY") && !stderr.contains(key),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn user_delete_erases_the_account_its_codes_emails_and_counters() {
    let db = TestDb::new().await;
    // No email API reachable: the email stays queued, and must never go.
    let (server, _metrics) = {
        let sink = MailSink::start();
        sink.stall(true);
        let metrics = format!("127.0.0.1:{}", free_port());
        let env = [
            ("EMAIL_API_URL", "http://127.0.0.1:9/unreachable"),
            ("METRICS_ADDRESS", metrics.as_str()),
        ];
        (Server::start(&db.url, &env), metrics)
    };
    let email = unique_email("erase");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    // A failed sign-in leaves a counter in Redis.
    let (status, _) = server
        .post_json("/auth/resend", &json!({}), Some((&email, "Wr0ng!pass")))
        .await
        .pair();
    assert_eq!(status, 401);
    let count = |table: &str| {
        format!(
            "SELECT count(*) AS n FROM {table} t JOIN users u ON u.id = t.user_id WHERE u.email = '{email}'"
        )
    };
    assert_eq!(db.count(&count("activation_codes")).await, 1);
    assert_eq!(db.count(&count("email_outbox")).await, 1);

    let output = run(&db.url, &[], &["user", "delete", &email]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("1 code(s), 1 email(s)"), "{stdout}");
    let accounts = db
        .count(&format!(
            "SELECT count(*) AS n FROM users WHERE email = '{email}'"
        ))
        .await;
    assert_eq!(accounts, 0);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM activation_codes").await,
        0
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM email_outbox").await, 0);
    let keys = crate::common::redis_keys_of(&db, &email).await;
    assert!(keys.is_empty(), "{keys:?}");
    // Nothing in Redis names the address: not a key, not a value (what an
    // inbox or a client counted stays, under a keyed hash of it).
    let (local, domain) = email.split_once('@').unwrap();
    let mut redis = crate::common::redis_connection();
    let all: Vec<String> = redis::cmd("KEYS")
        .arg("activator:*")
        .query(&mut redis)
        .unwrap();
    for key in &all {
        assert!(!key.contains(local) && !key.contains(domain), "{key}");
        let value: Option<Vec<u8>> = redis::cmd("DUMP").arg(key).query(&mut redis).unwrap();
        assert!(
            !value
                .unwrap_or_default()
                .windows(local.len())
                .any(|w| w == local.as_bytes()),
            "{key} holds the address"
        );
    }
    // The address can be registered afresh.
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);

    // An unknown address: one line, exit 1.
    let output = run(&db.url, &[], &["user", "delete", "nobody@example.com"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no account for nobody@example.com"),
        "{stderr}"
    );
}
