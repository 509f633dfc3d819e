//! Redis as real `redis-server` processes on loopback, killed and removed
//! on drop: a primary, its replica and three Sentinels watching it
//! (Sentinel is `redis-server --sentinel`, the same program), and Redis
//! Cluster nodes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server::free_port;

/// The name the Sentinels know the primary by.
pub const PRIMARY_NAME: &str = "activator";

pub struct Sentinels {
    dir: std::path::PathBuf,
    primary: Option<Child>,
    replica: Child,
    sentinels: Vec<Child>,
    pub primary_port: u16,
    pub replica_port: u16,
    pub sentinel_ports: Vec<u16>,
}

impl Sentinels {
    /// Starts them and waits until each Sentinel knows the replica and
    /// the two other Sentinels (a failover needs a majority that knows
    /// each other).
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "activator-sentinel-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (primary_port, replica_port) = (free_port(), free_port());
        let primary = redis_server(primary_port, &[]);
        let replica = redis_server(
            replica_port,
            &["--replicaof", "127.0.0.1", &primary_port.to_string()],
        );
        let sentinel_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let sentinels = sentinel_ports
            .iter()
            .map(|port| {
                let config = dir.join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {}\n\
                         sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary_port} 2\n\
                         sentinel down-after-milliseconds {PRIMARY_NAME} 1000\n\
                         sentinel failover-timeout {PRIMARY_NAME} 10000\n",
                        dir.display()
                    ),
                )
                .unwrap();
                spawn(
                    Command::new("redis-server")
                        .arg(&config)
                        .arg("--sentinel")
                        .stdout(Stdio::null()),
                    *port,
                )
            })
            .collect();
        let sentinels = Self {
            dir,
            primary: Some(primary),
            replica,
            sentinels,
            primary_port,
            replica_port,
            sentinel_ports,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in &sentinels.sentinel_ports {
            loop {
                let master = cli(*port, &["SENTINEL", "MASTER", PRIMARY_NAME]);
                let field = |name: &str| {
                    let lines: Vec<&str> = master.lines().collect();
                    lines
                        .iter()
                        .position(|line| *line == name)
                        .and_then(|at| lines.get(at + 1))
                        .map(|value| value.to_string())
                };
                if field("num-other-sentinels").as_deref() == Some("2")
                    && field("num-slaves").as_deref() == Some("1")
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "Sentinels did not meet: {master}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        sentinels
    }

    /// `REDIS_URL` naming the three Sentinels and the primary `name`.
    pub fn url(&self, name: &str) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{name}", hosts.join(","))
    }

    /// The port of the server the first Sentinel names as primary `name`.
    pub fn primary_named(&self, name: &str) -> Option<u16> {
        let answer = cli(
            self.sentinel_ports[0],
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name],
        );
        answer.lines().nth(1)?.trim().parse().ok()
    }

    /// Kills the primary at once (SIGKILL), as a crash would.
    pub fn kill_primary(&mut self) {
        if let Some(mut primary) = self.primary.take() {
            let _ = primary.kill();
            let _ = primary.wait();
        }
    }

    /// Has every Sentinel watch the current primary under `name` too.
    pub fn monitor(&self, name: &str) {
        let primary = self.primary_named(PRIMARY_NAME).unwrap().to_string();
        for port in &self.sentinel_ports {
            let answer = cli(
                *port,
                &["SENTINEL", "MONITOR", name, "127.0.0.1", &primary, "2"],
            );
            assert_eq!(answer.trim(), "OK", "{answer}");
        }
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        self.kill_primary();
        for child in self.sentinels.iter_mut().chain([&mut self.replica]) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn redis_server(port: u16, extra: &[&str]) -> Child {
    spawn(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null()),
        port,
    )
}

/// Spawns `command` and waits until `port` accepts connections.
fn spawn(command: &mut Command, port: u16) -> Child {
    let child = command
        .spawn()
        .expect("redis-server is installed (scripts/services.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// `redis-cli -p PORT ARGS...`'s output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `n` Redis Cluster nodes on loopback, started and answering, each with
/// its bus port (+10000) free; no slot is assigned yet.
pub struct ClusterNodes {
    nodes: Vec<Child>,
    dir: std::path::PathBuf,
    pub ports: Vec<u16>,
}

impl ClusterNodes {
    pub fn start(n: usize) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "activator-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        let mut ports = Vec::new();
        while ports.len() < n {
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
                let child = Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args([
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                    ])
                    .args(["--save", "", "--appendonly", "no"])
                    .current_dir(&node_dir)
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                let deadline = Instant::now() + Duration::from_secs(10);
                while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                    assert!(Instant::now() < deadline, "redis node did not start");
                    std::thread::sleep(Duration::from_millis(20));
                }
                child
            })
            .collect();
        Self { nodes, dir, ports }
    }

    /// `REDIS_URL` naming every node.
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until `done` holds for every node's `CLUSTER INFO`.
    pub fn wait_for(&self, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &self.ports {
            while !done(&cli(*port, &["CLUSTER", "INFO"])) {
                assert!(Instant::now() < deadline, "cluster did not converge");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for ClusterNodes {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
