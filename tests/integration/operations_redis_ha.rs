//! Redis with high availability (docs/OPERATIONS.md "Redis with high
//! availability"): `REDIS_URL` naming Sentinels follows a failover by
//! itself, with 503s only while no primary answers; `config check` says
//! what is wrong with Sentinels, a Cluster or a replica named as the
//! server; `serve` answers 503 while the primary it is told of is unknown
//! and recovers when it appears. Real `redis-server` and Sentinel
//! processes on loopback.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::cli::{refused, stderr, stdout};
use crate::common::sentinel::{ClusterNodes, PRIMARY_NAME, Sentinels, cli};
use crate::common::server::{free_port, run};
use crate::common::{Api, PASSWORD, Server, TestApp, TestDb, settings_for, unique_email};

#[tokio::test(flavor = "multi_thread")]
async fn registrations_follow_a_sentinel_failover_within_seconds() {
    let mut sentinels = Sentinels::start();
    let db = TestDb::new().await;
    let settings = settings_for(&db, &[("REDIS_URL", &sentinels.url(PRIMARY_NAME))]);
    let app = TestApp::on(db, settings).await;

    // Register, resend, activate: through the primary the Sentinels name.
    let email = unique_email("sentinel");
    app.register(&email, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    assert_eq!(app.resend(&email, PASSWORD).await.status.code, 202);
    assert_eq!(app.resend(&email, PASSWORD).await.status.code, 429);
    let code = app.latest_code(&email).await;
    assert_eq!(app.activate(&email, PASSWORD, &code).await.status.code, 200);

    // Registrations every 50 ms; the primary killed after a second.
    let started = Instant::now();
    let mut killed = None;
    let mut answers: Vec<(Instant, u16)> = Vec::new();
    let mut n = 0;
    loop {
        if killed.is_none() && started.elapsed() > Duration::from_secs(1) {
            sentinels.kill_primary();
            killed = Some(Instant::now());
        }
        n += 1;
        let status = app
            .register(&unique_email(&format!("failover{n}")), PASSWORD)
            .await
            .status
            .code;
        answers.push((Instant::now(), status));
        let recovered = killed.map_or(0, |killed| {
            answers
                .iter()
                .filter(|(at, status)| *at > killed && *status == 201)
                .count()
        });
        if recovered >= 20 || started.elapsed() > Duration::from_secs(40) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = killed.unwrap();
    let statuses = answers
        .iter()
        .fold(BTreeMap::<u16, usize>::new(), |mut counts, (_, status)| {
            *counts.entry(*status).or_default() += 1;
            counts
        });
    assert!(
        statuses.keys().all(|status| matches!(status, 201 | 503)),
        "only 201 and 503: {statuses:?}"
    );
    let first_after = answers
        .iter()
        .find(|(at, status)| *at > killed && *status == 201)
        .map(|(at, _)| at.duration_since(killed))
        .expect("registrations came back");
    let last_503 = answers
        .iter()
        .filter(|(_, status)| *status == 503)
        .map(|(at, _)| at.duration_since(killed))
        .max();
    println!(
        "sentinel failover: 201 again {first_after:?} after the kill, last 503 at {last_503:?}; answers {statuses:?}"
    );
    assert!(
        first_after <= Duration::from_secs(10),
        "201 again only after {first_after:?}"
    );
    // Once back, it stays back: no 503 after the first success.
    assert!(
        last_503.is_none_or(|last| last < first_after),
        "{answers:?}"
    );
    assert_eq!(
        sentinels.primary_named(PRIMARY_NAME),
        Some(sentinels.replica_port)
    );

    // The limits count on the new primary.
    let email = unique_email("promoted");
    app.register(&email, PASSWORD)
        .await
        .assert_detail(201, "Activation email sent");
    assert_eq!(app.resend(&email, PASSWORD).await.status.code, 202);
    assert_eq!(app.resend(&email, PASSWORD).await.status.code, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn sentinels_that_know_no_such_primary_are_named_and_serve_recovers_when_it_appears() {
    let sentinels = Sentinels::start();
    let db = TestDb::new().await;
    let url = sentinels.url("activator-other");

    let output = run(&db.url, &[("REDIS_URL", &url)], &["config", "check"]);
    let line = refused(&output);
    assert!(
        line.contains(
            r#"the Sentinels (3 of 3 answering) know no primary named "activator-other""#
        ),
        "{line}"
    );

    let server = Server::start(&db.url, &[("REDIS_URL", &url)]);
    let health = server.get("/health/check").await;
    assert_eq!(health.status.code, 503, "{}", health.body);
    assert_eq!(health.json()["redis"], "unavailable");
    let email = unique_email("noprimary");
    let body = json!({"email": email, "password": PASSWORD});
    let refused = server.post_json("/auth/register", &body, None).await;
    refused.assert_detail(503, "Rate limiter unavailable, try again shortly");

    // The Sentinels are told of it: serve follows without a restart.
    sentinels.monitor("activator-other");
    let appeared = Instant::now();
    let recovered = loop {
        if server.get("/health/check").await.status.code == 200 {
            break appeared.elapsed();
        }
        assert!(appeared.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("sentinel: primary known again, serve healthy after {recovered:?}");
    server
        .post_json("/auth/register", &body, None)
        .await
        .assert_detail(201, "Activation email sent");
    let output = run(&db.url, &[("REDIS_URL", &url)], &["config", "check"]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_names_unreachable_sentinels_and_a_replica_named_as_the_server() {
    let sentinels = Sentinels::start();
    let db = TestDb::new().await;
    let (a, b) = (free_port(), free_port());
    let checks = [
        (
            format!("redis+sentinel://:hunter2@127.0.0.1:{a},127.0.0.1:{b}/{PRIMARY_NAME}"),
            format!("no Sentinel in REDIS_URL answers (127.0.0.1:{a}, 127.0.0.1:{b})"),
        ),
        (
            format!("redis://127.0.0.1:{}/", sentinels.replica_port),
            "REDIS_URL names a replica, which refuses writes (read-only)".to_owned(),
        ),
        (
            // The data nodes want no password: the check says so, and
            // never prints it.
            format!(
                "redis+sentinel://:hunter2@127.0.0.1:{}/{PRIMARY_NAME}",
                sentinels.sentinel_ports[1]
            ),
            format!(
                "the primary the Sentinels name for \"{PRIMARY_NAME}\" (127.0.0.1:{}) cannot be used",
                sentinels.primary_port
            ),
        ),
    ];
    for (url, expected) in checks {
        let output = run(&db.url, &[("REDIS_URL", &url)], &["config", "check"]);
        let line = refused(&output);
        assert!(line.contains(&expected), "{expected}: {line}");
        let printed = format!("{}{}", stdout(&output), stderr(&output));
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}

/// Two Redis Cluster nodes that serve slots 0 to 16000 between them: 383
/// slots are nobody's.
fn partial_cluster() -> ClusterNodes {
    let nodes = ClusterNodes::start(2);
    let (a, b) = (nodes.ports[0], nodes.ports[1]);
    cli(a, &["CLUSTER", "ADDSLOTSRANGE", "0", "8191"]);
    cli(b, &["CLUSTER", "ADDSLOTSRANGE", "8192", "16000"]);
    cli(a, &["CLUSTER", "MEET", "127.0.0.1", &b.to_string()]);
    nodes.wait_for(|info| info.contains("cluster_slots_assigned:16001"));
    nodes
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_with_slots_uncovered_is_named_and_serve_recovers_when_they_are_served() {
    let cluster = partial_cluster();
    let db = TestDb::new().await;
    let url = cluster.url();
    let output = run(&db.url, &[("REDIS_URL", &url)], &["config", "check"]);
    let line = refused(&output);
    assert!(
        line.contains("the Redis Cluster leaves 383 of 16384 slots unserved"),
        "{line}"
    );

    // A cluster that is not ok refuses every command: serve answers 503.
    let server = Server::start(&db.url, &[("REDIS_URL", &url)]);
    let email = unique_email("slots");
    let body = json!({"email": email, "password": PASSWORD});
    let refused = server.post_json("/auth/register", &body, None).await;
    refused.assert_detail(503, "Rate limiter unavailable, try again shortly");

    cli(
        cluster.ports[1],
        &["CLUSTER", "ADDSLOTSRANGE", "16001", "16383"],
    );
    cluster.wait_for(|info| info.contains("cluster_state:ok"));
    let served = Instant::now();
    loop {
        let reply = server.post_json("/auth/register", &body, None).await;
        if reply.status.code == 201 {
            break;
        }
        assert_eq!(reply.status.code, 503, "{}", reply.body);
        assert!(served.elapsed() < Duration::from_secs(15), "no recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "cluster: registrations back {:?} after the slots were served",
        served.elapsed()
    );
    let output = run(&db.url, &[("REDIS_URL", &url)], &["config", "check"]);
    assert!(output.status.success(), "{}", stderr(&output));
}
