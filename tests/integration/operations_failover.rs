//! Surviving a PostgreSQL failover (docs/OPERATIONS.md "Database
//! failover"): a `DATABASE_URL` naming a primary and its synchronous
//! standby (`tests/failover/cluster.sh`), the primary stopped and the
//! standby promoted while registrations run. Against the real binary and
//! real PostgreSQL servers.

use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;

use crate::common::Api;
use crate::common::cli::stderr;
use crate::common::server::{command, free_port};
use crate::common::{MailSink, PASSWORD, Server};

/// The primary and standby of one test, stopped and removed on drop.
struct Cluster {
    dir: std::path::PathBuf,
}

impl Cluster {
    fn script(args: &[&str]) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/failover/cluster.sh");
        let output = Command::new("bash")
            .arg(script)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "cluster.sh {args:?}: {output:?}");
    }

    fn up(primary: u16, standby: u16) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "activator-failover-{}-{primary}",
            std::process::id()
        ));
        let path = dir.to_str().unwrap().to_owned();
        Self::script(&["up", &path, &primary.to_string(), &standby.to_string()]);
        Self { dir }
    }

    fn fail(&self) {
        Self::script(&["fail", self.dir.to_str().unwrap()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/failover/cluster.sh");
        let _ = Command::new("bash")
            .arg(script)
            .arg("down")
            .arg(&self.dir)
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_come_back_on_the_promoted_standby_within_seconds() {
    let (primary, standby) = (free_port(), free_port());
    let cluster = Cluster::up(primary, standby);
    let url = format!(
        "postgresql://postgres@127.0.0.1:{primary},127.0.0.1:{standby}/activator?target_session_attrs=read-write"
    );
    let migrated = command(&url, &[]).arg("migrate").output().unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let sink = MailSink::start();
    // One client registering again and again: exempt, its own limits are
    // not what this tests.
    let server = Server::start(
        &url,
        &[
            ("EMAIL_API_URL", sink.url.as_str()),
            ("RATE_LIMIT_EXEMPT", "127.0.0.1/32"),
        ],
    );
    let runtime = tokio::runtime::Handle::current();

    // (when answered, status, email) of every registration.
    let answers: Mutex<Vec<(Instant, u16, String)>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let switched = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let email = format!("failover-{}-{i}@example.com", std::process::id());
                i += 1;
                let body = json!({"email": email, "password": PASSWORD});
                let status = runtime
                    .block_on(server.post_json("/auth/register", &body, None))
                    .code();
                answers
                    .lock()
                    .unwrap()
                    .push((Instant::now(), status, email));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        std::thread::sleep(Duration::from_secs(2));
        cluster.fail();
        let switched = Instant::now();
        // Until registrations succeed again for a while, or 30 s.
        let deadline = switched + Duration::from_secs(30);
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let recovered = answers
                .lock()
                .unwrap()
                .iter()
                .filter(|(at, status, _)| *at > switched && *status == 201)
                .count();
            if recovered >= 10 || Instant::now() > deadline {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        switched
    });
    let answers = answers.into_inner().unwrap();
    let statuses: std::collections::BTreeMap<u16, usize> =
        answers
            .iter()
            .fold(Default::default(), |mut counts, (_, status, _)| {
                *counts.entry(*status).or_default() += 1;
                counts
            });
    assert!(
        statuses.keys().all(|status| matches!(status, 201 | 503)),
        "only 201 and 503: {statuses:?}"
    );
    let first_after = answers
        .iter()
        .find(|(at, status, _)| *at > switched && *status == 201)
        .map(|(at, _, _)| at.duration_since(switched))
        .expect("registrations came back");
    assert!(
        first_after < Duration::from_secs(20),
        "201 again after {first_after:?}"
    );
    println!("failover: 201 again {first_after:?} after the switch; answers {statuses:?}");

    // Every 201 answered before the switch is on the new primary.
    let before: Vec<&String> = answers
        .iter()
        .filter(|(at, status, _)| *at <= switched && *status == 201)
        .map(|(_, _, email)| email)
        .collect();
    assert!(!before.is_empty());
    let promoted = format!("postgres://postgres@127.0.0.1:{standby}/activator");
    let mut conn = activator::db::connect(&promoted).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        email: String,
    }
    let stored: Vec<Row> =
        diesel_async::RunQueryDsl::load(diesel::sql_query("SELECT email FROM users"), &mut conn)
            .await
            .unwrap();
    let stored: std::collections::HashSet<String> = stored.into_iter().map(|r| r.email).collect();
    for email in &before {
        assert!(stored.contains(*email), "{email} lost in the failover");
    }

    // The emails of registrations made after the switch arrive.
    let after: Vec<&String> = answers
        .iter()
        .filter(|(at, status, _)| *at > switched && *status == 201)
        .map(|(_, _, email)| email)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let delivered: std::collections::HashSet<String> = sink
            .delivered()
            .iter()
            .filter_map(|message| message["to"].as_str().map(str::to_owned))
            .collect();
        let missing = after
            .iter()
            .filter(|email| !delivered.contains(**email))
            .count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} emails missing",
            after.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_names_a_missing_standby_and_passes_when_it_is_back() {
    let (primary, standby) = (free_port(), free_port());
    let cluster = Cluster::up(primary, standby);
    let url = format!(
        "postgresql://postgres@127.0.0.1:{primary},127.0.0.1:{standby}/activator?target_session_attrs=read-write"
    );
    let migrated = command(&url, &[]).arg("migrate").output().unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let check = || {
        command(&url, &[])
            .args(["config", "check"])
            .output()
            .unwrap()
    };
    let output = check();
    assert!(output.status.success(), "{}", stderr(&output));

    let dir = cluster.dir.to_str().unwrap().to_owned();
    Cluster::script(&["stop-standby", &dir]);
    let output = check();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("activator: "))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("DATABASE_URL names 2 hosts but the primary has no standby connected"),
        "{text}"
    );
    assert!(
        lines[1].contains("synchronous_standby_names names no connected standby"),
        "{text}"
    );

    Cluster::script(&["start-standby", &dir]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().status.success() {
        assert!(Instant::now() < deadline, "{}", stderr(&check()));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// PgBouncer in `mode`, in front of the tests' PostgreSQL, run as the
/// postgres user (it refuses root); stopped on drop.
struct Bouncer {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Bouncer {
    fn start(mode: &str) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("activator-pgbouncer-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let admin = url::Url::parse(&crate::common::admin_url()).unwrap();
        let config = format!(
            "[databases]\n* = host={} port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {dir}/users.txt\npool_mode = {mode}\nlogfile = {dir}/pgbouncer.log\n",
            admin.host_str().unwrap(),
            admin.port().unwrap_or(5432),
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), config).unwrap();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        let as_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        let mut command = if as_root {
            Command::new("chown")
                .args(["-R", "postgres:", dir.to_str().unwrap()])
                .status()
                .unwrap();
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", "/usr/sbin/pgbouncer"]);
            command
        } else {
            Command::new("/usr/sbin/pgbouncer")
        };
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, dir, port }
    }

    /// `database_url` with PgBouncer in PostgreSQL's place.
    fn url(&self, database_url: &str) -> String {
        let mut url = url::Url::parse(database_url).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-f", &self.dir.join("pgbouncer.ini").display().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_pgbouncer_in_session_mode_everything_works() {
    let db = crate::common::TestDb::new().await;
    let bouncer = Bouncer::start("session");
    let url = bouncer.url(&db.url);
    let sink = MailSink::start();
    let server = Server::start(&url, &[("EMAIL_API_URL", sink.url.as_str())]);
    let email = crate::common::unique_email("bouncer");
    let started = Instant::now();
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);
    let code = crate::common::email::code_for(&sink, &email);
    // Woken by NOTIFY through PgBouncer, not by the 5 s sweep.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.activate(&email, PASSWORD, &code).await.code(), 200);
    let shown = command(&url, &[])
        .args(["user", "show", &email, "--json"])
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    assert!(String::from_utf8_lossy(&shown.stdout).contains("\"state\": \"active\""));
}

/// One PostgreSQL server whose messages are German (`lc_messages =
/// de_DE.UTF-8`, Debian's translations), removed on drop.
struct German {
    dir: std::path::PathBuf,
    url: String,
}

impl German {
    fn up() -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("activator-german-{}-{port}", std::process::id()));
        Cluster::script(&[
            "alone",
            dir.to_str().unwrap(),
            &port.to_string(),
            "de_DE.UTF-8",
        ]);
        Self {
            dir,
            url: format!("postgresql://postgres@127.0.0.1:{port}/activator"),
        }
    }

    /// A fast restart: every session is terminated (57P01).
    fn restart(&self) {
        Cluster::script(&["restart", self.dir.to_str().unwrap()]);
    }
}

impl Drop for German {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/failover/cluster.sh");
        let _ = Command::new("bash")
            .arg(script)
            .arg("down")
            .arg(&self.dir)
            .output();
    }
}

async fn execute(conn: &mut AsyncPgConnection, sql: &str) -> diesel::QueryResult<usize> {
    diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), conn).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_speaks_german_is_read_by_its_sqlstates() {
    let german = German::up();
    let connect = || AsyncPgConnection::establish(&german.url);
    let (mut a, mut b) = (connect().await.unwrap(), connect().await.unwrap());
    // The server's messages are German indeed.
    let err = execute(&mut a, "SELECT 1/0").await.unwrap_err();
    assert!(err.to_string().contains("Division durch Null"), "{err}");

    // A deadlock: two transactions lock two rows in opposite orders.
    execute(&mut a, "CREATE TABLE pair (id int PRIMARY KEY)")
        .await
        .unwrap();
    execute(&mut a, "INSERT INTO pair VALUES (1), (2)")
        .await
        .unwrap();
    for (conn, first) in [(&mut a, 1), (&mut b, 2)] {
        execute(conn, "BEGIN").await.unwrap();
        execute(conn, &format!("UPDATE pair SET id = id WHERE id = {first}"))
            .await
            .unwrap();
    }
    let (left, right) = tokio::join!(
        execute(&mut a, "UPDATE pair SET id = id WHERE id = 2"),
        execute(&mut b, "UPDATE pair SET id = id WHERE id = 1"),
    );
    let deadlock = [left, right]
        .into_iter()
        .find_map(Result::err)
        .expect("one of the two is aborted");
    assert!(deadlock.to_string().contains("Verklemmung"), "{deadlock}");
    assert!(activator::db::is_retryable(&deadlock), "{deadlock}");
    assert!(!activator::db::is_connection_error(&deadlock), "{deadlock}");

    // A session the administrator ends: the connection is gone.
    let mut c = connect().await.unwrap();
    execute(&mut a, "ROLLBACK").await.unwrap();
    execute(
        &mut a,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND datname = 'activator'",
    )
    .await
    .unwrap();
    let ended = execute(&mut c, "SELECT 1").await.unwrap_err();
    assert!(activator::db::is_connection_error(&ended), "{ended:?}");
    assert!(!activator::db::is_retryable(&ended), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_german_server_restarting_under_registrations_gives_503s_never_a_500() {
    let german = German::up();
    let migrated = command(&german.url, &[]).arg("migrate").output().unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let sink = MailSink::start();
    let server = Server::start(
        &german.url,
        &[
            ("EMAIL_API_URL", sink.url.as_str()),
            ("RATE_LIMIT_EXEMPT", "127.0.0.1/32"),
        ],
    );
    let statuses = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let runtime = tokio::runtime::Handle::current();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let email = crate::common::unique_email(&format!("german-{i}"));
                let status = runtime.block_on(server.register(&email, PASSWORD)).code();
                statuses.lock().unwrap().push(status);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        german.restart();
        // Until registrations succeed again after the restart.
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen = statuses.lock().unwrap().len();
        loop {
            let after: Vec<u16> = statuses.lock().unwrap()[seen..].to_vec();
            if after.iter().filter(|&&status| status == 201).count() >= 5 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no 201 after the restart: {after:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let statuses = statuses.into_inner().unwrap();
    assert!(
        statuses.iter().all(|status| matches!(status, 201 | 503)),
        "{statuses:?}"
    );
    // The restart was met: requests while it ran were refused, not failed.
    assert!(statuses.contains(&503), "{statuses:?}");
    let log = server.stderr();
    assert!(!log.contains("status=500"), "{log}");
}
