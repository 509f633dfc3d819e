//! A webhook receiver that verifies each post with the Standard Webhooks
//! reference library (`tests/webhooks/receiver.py`, Python's
//! `standardwebhooks` from the test command's virtualenv).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::smtp_sink::{python, root};

/// A secret in the specification's form (24 random bytes, base64).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub struct Receiver {
    child: Child,
    pub url: String,
}

impl Receiver {
    /// A receiver verifying with `secret`, answering 500 to the first
    /// `fail_first` posts, holding the first one `hold` before answering.
    pub fn start(secret: &str, fail_first: usize, hold: Duration) -> Self {
        let mut child = Command::new(python())
            .arg(root().join("tests/webhooks/receiver.py"))
            .args(["--secret", secret])
            .args(["--fail-first", &fail_first.to_string()])
            .args(["--hold", &hold.as_secs_f64().to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the webhook receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the receiver's port");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}/hooks"),
        }
    }

    /// Every post so far: `webhook_id`, `verified`, `body`, `status`.
    pub fn received(&self) -> Vec<Value> {
        let mut response = super::Server::agent().get(&self.url).call().unwrap();
        response.body_mut().read_json().unwrap()
    }

    /// The posts once there are at least `n`, or after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= n || Instant::now() > deadline {
                return received;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
