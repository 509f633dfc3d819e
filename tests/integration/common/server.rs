//! The real `activator` binary, run as a child process.

use std::io::Read;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_activator");

/// Environment for the binary: the test's database, the shared Redis,
/// cheap bcrypt, nothing inherited that could change behaviour.
pub fn command(database_url: &str, extra: &[(&str, &str)]) -> Command {
    wrapped_command(&[], database_url, extra)
}

/// The binary run through `wrapper` (a program and its arguments, such as
/// `prlimit --nofile=256:4096`), with [`command`]'s environment.
pub fn wrapped_command(wrapper: &[&str], database_url: &str, extra: &[(&str, &str)]) -> Command {
    let mut command = match wrapper {
        [] => Command::new(BIN),
        [program, args @ ..] => {
            let mut command = Command::new(program);
            command.args(args).arg(BIN);
            command
        }
    };
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", super::redis_url())
        .env("SECRET_KEY", super::SECRET_KEY)
        .env("BCRYPT_COST", "4")
        // Many servers run at once: none takes the default metrics port
        // unless a test gives it one.
        .env("METRICS_ADDRESS", "")
        // No `.env` of the developer's should leak in.
        .current_dir(std::env::temp_dir());
    for (name, value) in extra {
        command.env(name, value);
    }
    command
}

/// Runs the binary to completion.
pub fn run(database_url: &str, extra: &[(&str, &str)], args: &[&str]) -> Output {
    command(database_url, extra).args(args).output().unwrap()
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `activator serve`, killed on drop. Its stderr goes to a file
/// (a pipe nobody reads would fill up and block it).
pub struct Server {
    pub child: Child,
    pub base: String,
    log: std::path::PathBuf,
}

impl Server {
    /// Starts `serve` and waits until `/health/live` answers.
    pub fn start(database_url: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_with_args(database_url, extra, &[])
    }

    /// Starts `serve` with extra arguments (e.g. `--migrate`).
    pub fn start_with_args(database_url: &str, extra: &[(&str, &str)], args: &[&str]) -> Self {
        Self::start_wrapped(&[], database_url, extra, args)
    }

    /// Starts `serve` through `wrapper` (see [`wrapped_command`]).
    pub fn start_wrapped(
        wrapper: &[&str],
        database_url: &str,
        extra: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        let port = free_port();
        let port_text = port.to_string();
        let mut env: Vec<(&str, &str)> =
            vec![("ROCKET_PORT", &port_text), ("ROCKET_ADDRESS", "127.0.0.1")];
        env.extend_from_slice(extra);
        let log =
            std::env::temp_dir().join(format!("activator-serve-{}-{port}.log", std::process::id()));
        let child = wrapped_command(wrapper, database_url, &env)
            .arg("serve")
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_until_live();
        server
    }

    fn wait_until_live(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(500)))
            .build()
            .into();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "serve exited with {status} before answering: {}",
                    self.stderr()
                );
            }
            if agent
                .get(format!("{}/health/live", self.base))
                .call()
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not answer /health/live within 30s");
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// Sends `signal` and waits for the process to exit; returns its stderr.
    pub fn stop_with(mut self, signal: &str) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.stderr())
    }

    /// Sends `request` (raw bytes) and returns the answer's status line.
    pub fn raw(&self, request: &[u8]) -> String {
        let address = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// What the server has logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl super::Api for Server {
    fn send(&self, call: super::Call) -> impl std::future::Future<Output = super::Reply> + Send {
        let base = self.base.clone();
        async move {
            tokio::task::spawn_blocking(move || send(&base, call))
                .await
                .unwrap()
        }
    }
}

/// Sends `call` to the server at `base` with a blocking client: waits up
/// to a minute (a loaded hash queue), never follows a redirect.
fn send(base: &str, call: super::Call) -> super::Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(call.method.as_str())
        .uri(format!("{base}{}", call.path));
    for (name, value) in &call.headers {
        request = request.header(name, value);
    }
    if let Some(client) = &call.client {
        request = request.header("X-Forwarded-For", client);
    }
    let request = request.body(call.body.unwrap_or_default()).unwrap();
    let mut response = agent.run(request).unwrap();
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_lowercase(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let content_type = headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| value.clone());
    super::Reply {
        status: rocket::http::Status::new(status),
        headers,
        content_type,
        body: response.body_mut().read_to_string().unwrap_or_default(),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
