//! A real SMTP server for the tests: aiosmtpd (`tests/smtp/sink.py`) in the
//! virtualenv `scripts/test.sh` makes, on two loopback ports: one plain
//! (STARTTLS offered), one that requires STARTTLS, both with the test
//! certificate `tests/smtp/cert.pem`. Recipients' local parts script its
//! answers (`reject…` 550, `flaky…` 451 once, `busy…` 452 once); it
//! reports every RCPT answer and every message it takes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::server::free_port;

/// The running server, stopped on drop.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub tls_port: u16,
    events: Arc<(Mutex<Vec<Value>>, Condvar)>,
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test certificate (for `localhost` and 127.0.0.1), to trust through
/// `SSL_CERT_FILE`.
pub fn cert_file() -> String {
    root().join("tests/smtp/cert.pem").display().to_string()
}

/// The Python with aiosmtpd: `ACTIVATOR_TEST_PYTHON`, else the virtualenv
/// `scripts/test.sh` makes.
pub fn python() -> PathBuf {
    if let Ok(python) = std::env::var("ACTIVATOR_TEST_PYTHON") {
        return python.into();
    }
    let python = root().join(".local/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the tests with scripts/test.sh, which makes the virtualenv with aiosmtpd",
        python.display()
    );
    python
}

impl SmtpSink {
    pub fn start() -> Self {
        let (port, tls_port) = (free_port(), free_port());
        let mut child = Command::new(python())
            .arg(root().join("tests/smtp/sink.py"))
            .args([
                "--port",
                &port.to_string(),
                "--tls-port",
                &tls_port.to_string(),
            ])
            .arg("--cert")
            .arg(root().join("tests/smtp/cert.pem"))
            .arg("--key")
            .arg(root().join("tests/smtp/key.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the SMTP sink");
        let events: Arc<(Mutex<Vec<Value>>, Condvar)> = Arc::default();
        let stdout = child.stdout.take().unwrap();
        let reading = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                let (lock, changed) = &*reading;
                lock.lock().unwrap().push(event);
                changed.notify_all();
            }
        });
        let sink = Self {
            child,
            port,
            tls_port,
            events,
        };
        sink.wait(Duration::from_secs(30), |events| {
            events.iter().any(|e| e["kind"] == "ready")
        })
        .expect("the SMTP sink did not start");
        sink
    }

    /// `SMTP_URL` for the plain port.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Waits until `done` holds for the events so far.
    fn wait(&self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Option<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.events;
        let mut events = lock.lock().unwrap();
        loop {
            if done(&events) {
                return Some(events.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            events = changed.wait_timeout(events, left).unwrap().0;
        }
    }

    /// The messages taken, once there are `n` (or what there is after
    /// `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let messages = |events: &[Value]| -> Vec<Value> {
            events
                .iter()
                .filter(|e| e["kind"] == "message")
                .cloned()
                .collect()
        };
        match self.wait(timeout, |events| messages(events).len() >= n) {
            Some(events) => messages(&events),
            None => messages(&self.events.0.lock().unwrap()),
        }
    }

    /// The RCPT answers given to `address`, in order.
    /// The replies given to `address`, once there are at least `n` (or
    /// after 5 s): the sink reports each on its output, which may arrive
    /// after activator has recorded the answer.
    pub fn replies_to(&self, address: &str, n: usize) -> Vec<String> {
        let (lock, changed) = &*self.events;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut events = lock.lock().unwrap();
        loop {
            let replies: Vec<String> = events
                .iter()
                .filter(|e| e["kind"] == "rcpt" && e["rcpt"] == address)
                .map(|e| e["reply"].as_str().unwrap_or_default().to_owned())
                .collect();
            let now = std::time::Instant::now();
            if replies.len() >= n || now >= deadline {
                return replies;
            }
            events = changed.wait_timeout(events, deadline - now).unwrap().0;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
