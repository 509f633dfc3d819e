//! `activator healthcheck`, the container image's HEALTHCHECK: the real
//! binary probing a real `serve`, and probing nothing.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::cli::error_line;
use crate::common::server::{free_port, run};
use crate::common::{Server, TestDb};

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
