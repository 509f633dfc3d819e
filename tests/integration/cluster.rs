//! The rate limits on a Redis Cluster: a comma-separated `REDIS_URL` selects
//! the cluster client, and every key of one email shares a hash slot.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::common::server::free_port;
use crate::common::{PASSWORD, TestApp, TestDb, settings_for, unique_email, wrong_code};

/// Three masters on loopback, each also using port + 10000 for its bus.
struct LocalCluster {
    nodes: Vec<Child>,
    dir: std::path::PathBuf,
    pub url: String,
}

impl LocalCluster {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "activator-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // Ports whose bus port (+10000) is free as well.
        let mut ports = Vec::new();
        while ports.len() < 3 {
            let port = free_port();
            if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
                ports.push(port);
            }
        }
        let nodes = ports
            .iter()
            .map(|port| {
                let node_dir = dir.join(port.to_string());
                std::fs::create_dir_all(&node_dir).unwrap();
                Command::new("redis-server")
                    .args([
                        "--port",
                        &port.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                    ])
                    .args([
                        "--cluster-config-file",
                        "nodes.conf",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .current_dir(&node_dir)
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for port in &ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "redis node did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
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
        for port in &ports {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster did not converge");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let url = ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect::<Vec<_>>()
            .join(",");
        Self { nodes, dir, url }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
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
