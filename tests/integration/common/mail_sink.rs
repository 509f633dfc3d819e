//! A real HTTP endpoint standing in for the email API: it records every
//! message posted to it and can be told to fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

#[derive(Default)]
struct State {
    /// Messages answered 2xx, in arrival order.
    delivered: Vec<Value>,
    /// When each delivered message arrived.
    arrived: Vec<Instant>,
    /// Every post, including refused ones.
    posts: usize,
    /// Refuse this many posts before accepting again.
    fail_next: usize,
    /// Refuse every post.
    fail_always: bool,
    /// Answer each post only after this long.
    delay: Duration,
    /// Read posts but never answer them (a hung provider).
    stall: bool,
}

#[derive(Clone)]
pub struct MailSink {
    pub url: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl MailSink {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/send", listener.local_addr().unwrap());
        let sink = Self {
            url,
            state: Arc::default(),
        };
        let accepting = sink.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = accepting.clone();
                std::thread::spawn(move || sink.serve(stream));
            }
        });
        sink
    }

    /// Serves one connection, request after request (keep-alive).
    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut content_length = 0usize;
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; content_length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            // Count the post as soon as it has arrived.
            let arrived = Instant::now();
            let (delay, stall) = {
                let (lock, changed) = &*self.state;
                let mut state = lock.lock().unwrap();
                state.posts += 1;
                changed.notify_all();
                (state.delay, state.stall)
            };
            if stall {
                std::thread::sleep(Duration::from_secs(3600));
                return;
            }
            std::thread::sleep(delay);
            let accepted = {
                let (lock, changed) = &*self.state;
                let mut state = lock.lock().unwrap();
                let refuse = state.fail_always || state.fail_next > 0;
                if state.fail_next > 0 {
                    state.fail_next -= 1;
                }
                if !refuse {
                    state
                        .delivered
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    state.arrived.push(arrived);
                }
                changed.notify_all();
                !refuse
            };
            let (status, answer) = if accepted {
                ("200 OK", r#"{"status":"queued"}"#)
            } else {
                (
                    "503 Service Unavailable",
                    r#"{"error":"mail provider down"}"#,
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            );
            if writer.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    }

    pub fn fail_next(&self, n: usize) {
        self.state.0.lock().unwrap().fail_next = n;
    }

    pub fn delay(&self, delay: Duration) {
        self.state.0.lock().unwrap().delay = delay;
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

    /// Delivered messages with the time each arrived.
    #[allow(
        dead_code,
        reason = "used by benches/service.rs, which includes this file"
    )]
    pub fn arrivals(&self) -> Vec<(Value, Instant)> {
        let state = self.state.0.lock().unwrap();
        state
            .delivered
            .iter()
            .cloned()
            .zip(state.arrived.iter().copied())
            .collect()
    }

    pub fn posts(&self) -> usize {
        self.state.0.lock().unwrap().posts
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
