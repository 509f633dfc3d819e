//! An OTLP/HTTP receiver standing in for an OpenTelemetry collector
//! (`tests/otlp/receiver.py`): it decodes every export with the
//! OpenTelemetry project's published protobuf schema (Python's
//! `opentelemetry-proto`, from the test command's virtualenv), keeps each
//! span as a JSON line and every request's raw bytes, and can be slow or
//! fail on demand.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::smtp_sink::{python, root};

pub struct Collector {
    child: Child,
    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to (spans go to its
    /// `/v1/traces`).
    pub endpoint: String,
    dir: PathBuf,
}

impl Collector {
    /// A receiver answering as `args` say (`--delay S`, `--status CODE`,
    /// `--fail-first N`; none: at once, 200).
    pub fn start(args: &[&str]) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "activator-otlp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(python())
            .arg(root().join("tests/otlp/receiver.py"))
            .args(["--port", "0"])
            .arg("--spans")
            .arg(dir.join("spans.jsonl"))
            .arg("--raw")
            .arg(dir.join("raw.bin"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the OTLP receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the receiver's first line: {line:?}"))
            .to_owned();
        Self {
            child,
            endpoint: format!("http://{address}"),
            dir,
        }
    }

    /// Every span received so far (answered 200), as the receiver wrote
    /// it: ids in hex, `name`, `kind`, `attributes`, `status`, `resource`.
    pub fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("spans.jsonl"))
            .unwrap_or_default()
            .lines()
            // A line still being written is read next time.
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The spans once `done` says they are all there, or after `timeout`.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every byte every export brought: request lines, headers, bodies as
    /// sent (and decompressed, when they were compressed).
    pub fn raw(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("raw.bin")).unwrap_or_default()
    }
}

/// With `ACTIVATOR_TEST_KEEP_SPANS` set, a receiver's files stay, and the
/// test's output names them (`tests/otlp/tree.py` shows them as trees).
impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("ACTIVATOR_TEST_KEEP_SPANS").is_some() {
            println!("spans kept in {}", self.dir.join("spans.jsonl").display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The spans of `spans` in the trace `trace_id`.
pub fn in_trace<'a>(spans: &'a [Value], trace_id: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|span| span["trace_id"] == trace_id)
        .collect()
}

/// The first span named `name`, if any.
pub fn named<'a>(spans: &[&'a Value], name: &str) -> Option<&'a Value> {
    spans.iter().copied().find(|span| span["name"] == name)
}
