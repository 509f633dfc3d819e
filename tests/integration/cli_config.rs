//! `activator config check` (docs/OPERATIONS.md "config check"): the
//! settings, PostgreSQL, Redis, the migrations and the templates checked
//! before a deploy, the effective settings printed without a secret, one
//! line per problem. The real binary.

use crate::common::TestDb;
use crate::common::cli::{stderr, stdout};
use crate::common::server::run;

#[tokio::test(flavor = "multi_thread")]
async fn config_check_passes_a_good_configuration_and_prints_it_without_secrets() {
    let db = TestDb::new().await;
    let url = db.url.replace("postgres@", "postgres:hunter2-db-password@");
    for level in ["warn", "trace"] {
        let output = run(
            &url,
            &[
                ("SMTP_URL", "smtp://mailer:hunter2-smtp@127.0.0.1:2525"),
                (
                    "WEBHOOK_URL",
                    "http://hooks:hunter2-hook@127.0.0.1:9/?token=hunter2",
                ),
                ("WEBHOOK_SECRET", "whsec_aHVudGVyMi1ob29rLXNlY3JldC0wMTIz"),
                ("RUST_LOG", level),
            ],
            &["config", "check"],
        );
        let stdout = stdout(&output);
        assert!(output.status.success(), "{output:?}");
        assert!(stdout.contains("configuration ok"), "{stdout}");
        assert!(stdout.contains("SECRET_KEY=(set, redacted)"), "{stdout}");
        assert!(stdout.contains("BCRYPT_COST=4\n"), "{stdout}");
        assert!(stdout.contains("CODE_LENGTH=4 (default)"), "{stdout}");
        for secret in ["hunter2", "aHVudGVyMi1ob29r", crate::common::SECRET_KEY] {
            assert!(
                !stdout.contains(secret),
                "{level}: {secret} printed: {stdout}"
            );
            assert!(
                !stderr(&output).contains(secret),
                "{level}: {secret} logged"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_names_each_problem_on_a_line_and_exits_1() {
    let db = TestDb::empty().await;
    let output = run(
        &db.url,
        &[
            ("REDIS_URL", "redis://127.0.0.1:1/"),
            ("SYSTEM_EMAIL", "not an address"),
        ],
        &["config", "check"],
    );
    let stderr = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].contains("SYSTEM_EMAIL"), "{stderr}");
    assert!(lines[1].contains("pending migration"), "{stderr}");
    assert!(lines[2].contains("REDIS_URL"), "{stderr}");

    // A setting that cannot be read is the one line.
    let output = run(&db.url, &[("SECRET_KEY", "short")], &["config", "check"]);
    let stderr = crate::common::cli::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("SECRET_KEY") && !stderr.contains("short"),
        "{stderr}"
    );
}
