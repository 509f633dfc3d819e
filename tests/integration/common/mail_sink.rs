//! A real HTTP endpoint standing in for the email API: it records every
//! message posted to it and can be told how to answer: fail, throttle with
//! 429 + `Retry-After`, refuse for good, answer slowly (always, for some
//! recipients, or with a latency tail), or enforce a rate limit. The
//! benchmark includes this file too.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One scripted answer: status, optional `Retry-After`, body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            retry_after: None,
            body: body.to_owned(),
        }
    }

    pub fn throttle(retry_after: Option<&str>) -> Self {
        Self {
            status: 429,
            retry_after: retry_after.map(str::to_owned),
            body: r#"{"error":"slow down"}"#.to_owned(),
        }
    }
}

/// A latency tail: most answers after `fast`, a share `slow_share` after
/// `slow`.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub fast: Duration,
    pub slow: Duration,
    pub slow_share: f64,
}

#[derive(Default)]
struct State {
    /// Messages answered 2xx, in arrival order.
    delivered: Vec<Value>,
    /// When each delivered message arrived.
    arrived: Vec<Instant>,
    /// Every post, including refused ones.
    posts: usize,
    /// Posts answered 429.
    throttled: usize,
    /// TCP connections accepted.
    connections: usize,
    /// When each answer left, and how long the sink took over it.
    answered: Vec<(Instant, Duration)>,
    /// The `Idempotency-Key` of every post, in arrival order.
    idempotency_keys: Vec<Option<String>>,
    /// The `traceparent` of every post, in arrival order.
    traceparents: Vec<Option<String>>,
    /// Answers for the next posts, in order, before the default one.
    script: VecDeque<Answer>,
    /// Refuse every post with a 503.
    fail_always: bool,
    /// Answer each post only after this long.
    delay: Duration,
    /// Answer posts to recipients starting with this only after that long.
    slow_recipients: Option<(String, Duration)>,
    latency: Option<Latency>,
    /// At most this many posts accepted per second; the others get 429 with
    /// `Retry-After: 1`.
    rate_limit: Option<u32>,
    window: (u64, u32),
    /// Read posts but never answer them (a hung provider).
    stall: bool,
}

#[derive(Clone)]
pub struct MailSink {
    pub url: String,
    state: Arc<(Mutex<State>, Condvar)>,
    started: Instant,
}

struct Request {
    key: Option<String>,
    traceparent: Option<String>,
    body: Vec<u8>,
}

/// Reads one request (keep-alive); `None` when the client closed.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let mut content_length = 0usize;
    let mut key = None;
    let mut traceparent = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("idempotency-key") {
                key = Some(value.trim().to_owned());
            } else if name.eq_ignore_ascii_case("traceparent") {
                traceparent = Some(value.trim().to_owned());
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        key,
        traceparent,
        body,
    })
}

impl MailSink {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/send", listener.local_addr().unwrap());
        let sink = Self {
            url,
            state: Arc::default(),
            started: Instant::now(),
        };
        let accepting = sink.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                accepting.state.0.lock().unwrap().connections += 1;
                let sink = accepting.clone();
                std::thread::spawn(move || sink.serve(stream));
            }
        });
        sink
    }

    /// Serves one connection, request after request (keep-alive).
    fn serve(&self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        while let Some(request) = read_request(&mut reader) {
            let message: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            // Count the post as soon as it has arrived.
            let arrived = Instant::now();
            let (wait, stall) = {
                let (lock, changed) = &*self.state;
                let mut state = lock.lock().unwrap();
                state.posts += 1;
                state.idempotency_keys.push(request.key);
                state.traceparents.push(request.traceparent);
                changed.notify_all();
                (self.pause_for(&state, &message), state.stall)
            };
            if stall {
                std::thread::sleep(Duration::from_secs(3600));
                return;
            }
            std::thread::sleep(wait);
            let answer = self.answer(message, arrived);
            self.state
                .0
                .lock()
                .unwrap()
                .answered
                .push((Instant::now(), wait));
            let mut head = format!(
                "HTTP/1.1 {} Answer\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                answer.status,
                answer.body.len()
            );
            if let Some(retry_after) = &answer.retry_after {
                head.push_str(&format!("Retry-After: {retry_after}\r\n"));
            }
            head.push_str("\r\n");
            if writer
                .write_all(format!("{head}{}", answer.body).as_bytes())
                .is_err()
            {
                return;
            }
        }
    }

    /// How long to take over a post.
    fn pause_for(&self, state: &State, message: &Value) -> Duration {
        let mut wait = state.delay;
        if let Some((prefix, delay)) = &state.slow_recipients
            && message["to"]
                .as_str()
                .is_some_and(|to| to.starts_with(prefix))
        {
            wait = wait.max(*delay);
        }
        if let Some(latency) = state.latency {
            wait += if rand::random::<f64>() < latency.slow_share {
                latency.slow
            } else {
                latency.fast
            };
        }
        wait
    }

    /// Decides the answer to a post, and records it.
    fn answer(&self, message: Value, arrived: Instant) -> Answer {
        let (lock, changed) = &*self.state;
        let mut state = lock.lock().unwrap();
        let answer = if let Some(answer) = state.script.pop_front() {
            answer
        } else if state.fail_always {
            Answer::new(503, r#"{"error":"mail provider down"}"#)
        } else if let Some(limit) = state.rate_limit {
            let second = self.started.elapsed().as_secs();
            if state.window.0 != second {
                state.window = (second, 0);
            }
            state.window.1 += 1;
            if state.window.1 > limit {
                Answer::throttle(Some("1"))
            } else {
                Answer::new(200, r#"{"status":"queued"}"#)
            }
        } else {
            Answer::new(200, r#"{"status":"queued"}"#)
        };
        if (200..300).contains(&answer.status) {
            state.delivered.push(message);
            state.arrived.push(arrived);
        } else if answer.status == 429 {
            state.throttled += 1;
        }
        changed.notify_all();
        answer
    }

    /// Answers the next `n` posts 503, then accepts again.
    pub fn fail_next(&self, n: usize) {
        let answer = Answer::new(503, r#"{"error":"mail provider down"}"#);
        self.answer_next(n, &answer);
    }

    /// Answers the next `n` posts with `answer`.
    pub fn answer_next(&self, n: usize, answer: &Answer) {
        let mut state = self.state.0.lock().unwrap();
        state.script.extend(std::iter::repeat_n(answer.clone(), n));
    }

    pub fn delay(&self, delay: Duration) {
        self.state.0.lock().unwrap().delay = delay;
    }

    /// Answers posts to recipients starting with `prefix` after `delay`.
    pub fn slow_for(&self, prefix: &str, delay: Duration) {
        self.state.0.lock().unwrap().slow_recipients = Some((prefix.to_owned(), delay));
    }

    #[allow(dead_code, reason = "the benchmark's latency tail; no test needs one")]
    pub fn latency(&self, latency: Latency) {
        self.state.0.lock().unwrap().latency = Some(latency);
    }

    pub fn rate_limit(&self, per_second: u32) {
        self.state.0.lock().unwrap().rate_limit = Some(per_second);
    }

    pub fn stall(&self, stall: bool) {
        self.state.0.lock().unwrap().stall = stall;
    }

    pub fn fail_always(&self, fail: bool) {
        self.state.0.lock().unwrap().fail_always = fail;
    }

    pub fn delivered(&self) -> Vec<Value> {
        self.state.0.lock().unwrap().delivered.clone()
    }

    /// The bodies of the delivered messages to any of `recipients`, in
    /// arrival order (without copying the others).
    pub fn bodies_to(&self, recipients: &[String]) -> Vec<String> {
        let state = self.state.0.lock().unwrap();
        state
            .delivered
            .iter()
            .filter(|message| {
                let to = message["to"].as_str().unwrap_or_default();
                recipients.iter().any(|recipient| recipient == to)
            })
            .map(|message| message["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Delivered messages with the time each arrived.
    pub fn arrivals(&self) -> Vec<(Value, Instant)> {
        let state = self.state.0.lock().unwrap();
        state
            .delivered
            .iter()
            .cloned()
            .zip(state.arrived.iter().copied())
            .collect()
    }

    /// When each answer left and how long the sink held it, in order.
    #[allow(dead_code, reason = "for the benchmark's latency figures")]
    pub fn answered(&self) -> Vec<(Instant, Duration)> {
        self.state.0.lock().unwrap().answered.clone()
    }

    pub fn posts(&self) -> usize {
        self.state.0.lock().unwrap().posts
    }

    /// Posts answered 429.
    pub fn throttled(&self) -> usize {
        self.state.0.lock().unwrap().throttled
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.0.lock().unwrap().connections
    }

    /// The `Idempotency-Key` header of every post, in arrival order.
    pub fn idempotency_keys(&self) -> Vec<Option<String>> {
        self.state.0.lock().unwrap().idempotency_keys.clone()
    }

    /// The `traceparent` header of every post, in arrival order.
    #[allow(dead_code, reason = "the benchmark includes this file too")]
    pub fn traceparents(&self) -> Vec<Option<String>> {
        self.state.0.lock().unwrap().traceparents.clone()
    }

    /// Waits until at least `n` messages were delivered; returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.state;
        let mut state = lock.lock().unwrap();
        while state.delivered.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = changed.wait_timeout(state, left).unwrap().0;
        }
        state.delivered.clone()
    }

    /// Waits until at least `n` posts (accepted or refused) arrived.
    pub fn wait_for_posts(&self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.state;
        let mut state = lock.lock().unwrap();
        while state.posts < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = changed.wait_timeout(state, left).unwrap().0;
        }
        state.posts
    }
}
