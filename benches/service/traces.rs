//! Section 9: what traces cost. Three servers on one database, started
//! together: one exporting every span (`OTEL_TRACES_SAMPLER=always_on`) to
//! the tests' OTLP receiver (`tests/otlp/receiver.py`, a Python process on
//! the same cores, decoding each export with OpenTelemetry's schema), and
//! two without traces, the second for the run's own noise. Rounds of the
//! register load go to each in turn (off, on, off again, then the next
//! round), so drift hits all three alike; `/health/live` is sampled every
//! 10 ms during each. Then `/health/live` alone, one request at a time,
//! the servers in turn; each server's resident memory (now and at its
//! peak); and what the receiver got and the exporter dropped.
//!
//! Bounded: `BENCH_TRACE_ROUNDS` (default 4) rounds of
//! `BENCH_TRACE_SECONDS` (default 5) per server, about 70 s in all.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{MailSink, Server, agent, env_or, ms, percentile, register_load, start_server};

pub fn run(database_url: &str, redis_url: &str, sink: &MailSink, cost: u32, clients: usize) {
    let rounds: usize = env_or("BENCH_TRACE_ROUNDS", 4);
    let seconds: u64 = env_or("BENCH_TRACE_SECONDS", 5);
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".local/venv/bin/python");
    // The collector runs elsewhere in production; here it shares the two
    // cores, so it gets what the service leaves (nice 19), and its own
    // CPU time is reported.
    if !python.exists() {
        println!(
            "traces: skipped, no {} (scripts/test.sh makes it)",
            python.display()
        );
        return;
    }
    let receiver = Command::new("nice")
        .args(["-n", "19"])
        .arg(&python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/receiver.py"))
        // Decoded, counted, not written anywhere.
        .args(["--port", "0", "--spans", "", "--raw", ""])
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut receiver) = receiver else {
        println!("traces: skipped, the OTLP receiver did not start");
        return;
    };
    let mut line = String::new();
    BufReader::new(receiver.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let collector = format!("http://{}", line.trim().trim_start_matches("listening on "));

    let metrics = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let off = start_server(
        database_url,
        redis_url,
        sink,
        cost,
        &with(&[("METRICS_ADDRESS", "")]),
    );
    let on = start_server(
        database_url,
        redis_url,
        sink,
        cost,
        &with(&[
            ("METRICS_ADDRESS", metrics.as_str()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_TRACES_SAMPLER", "always_on"),
        ]),
    );
    let again = start_server(
        database_url,
        redis_url,
        sink,
        cost,
        &with(&[("METRICS_ADDRESS", "")]),
    );
    let servers: [(&str, &Server); 3] = [
        ("traces off", &off),
        ("traces on (every span)", &on),
        ("traces off again", &again),
    ];

    let mut created = [0usize; 3];
    let mut elapsed = [Duration::ZERO; 3];
    let mut health: [Vec<Duration>; 3] = Default::default();
    let mut other = [0usize; 3];
    for round in 0..rounds {
        for (which, (_, server)) in servers.iter().enumerate() {
            let label = format!("traces-{which}-{round}");
            let load = register_load(&server.base, clients, seconds, &label);
            created[which] += load.created;
            elapsed[which] += load.elapsed;
            health[which].extend(load.health);
            other[which] += load.other.values().sum::<usize>();
        }
    }
    // Unloaded: `/health/live` one at a time, the servers in turn, so what
    // a span costs a request is not lost in the load's noise.
    let mut idle: [Vec<Duration>; 3] = Default::default();
    let client = agent();
    for _ in 0..5 {
        for (which, (_, server)) in servers.iter().enumerate() {
            let url = format!("{}/health/live", server.base);
            for _ in 0..200 {
                let asked = std::time::Instant::now();
                let answered = client.get(&url).call().is_ok_and(|mut answer| {
                    answer.status() == 200 && answer.body_mut().read_to_vec().is_ok()
                });
                assert!(answered, "/health/live failed");
                idle[which].push(asked.elapsed());
            }
        }
    }
    let rate = |which: usize| created[which] as f64 / elapsed[which].as_secs_f64();
    let mut p99 = [Duration::ZERO; 3];
    for (which, (label, server)) in servers.iter().enumerate() {
        health[which].sort();
        p99[which] = percentile(&health[which], 0.99);
        idle[which].sort();
        let (rss, peak) = memory(server);
        println!(
            "traces: register {label}: {:.1}/s ({} in {:.0} s, {} other statuses); /health/live during it p50 {}, p99 {} over {} samples; alone p50 {}, p99 {} over {}; RSS {:.1} MiB, peak {:.1} MiB",
            rate(which),
            created[which],
            elapsed[which].as_secs_f64(),
            other[which],
            ms(percentile(&health[which], 0.5)),
            ms(p99[which]),
            health[which].len(),
            ms(percentile(&idle[which], 0.5)),
            ms(percentile(&idle[which], 0.99)),
            idle[which].len(),
            rss,
            peak,
        );
    }
    let idle_p99 = |which: usize| percentile(&idle[which], 0.99).as_secs_f64();
    let (rss_off, _) = memory(&off);
    let (rss_again, _) = memory(&again);
    let share = |a: f64, b: f64| 100.0 * (a - b) / b;
    let (rss, _) = memory(&on);
    println!(
        "traces: on vs off: register {:+.1} % (off again vs off {:+.1} %); /health/live p99 under load {:+.1} % (off again {:+.1} %), alone {:+.1} % (off again {:+.1} %); RSS {:+.1} MiB (off again {:+.1} MiB)",
        share(rate(1), rate(0)),
        share(rate(2), rate(0)),
        share(p99[1].as_secs_f64(), p99[0].as_secs_f64()),
        share(p99[2].as_secs_f64(), p99[0].as_secs_f64()),
        share(idle_p99(1), idle_p99(0)),
        share(idle_p99(2), idle_p99(0)),
        rss - rss_off,
        rss_again - rss_off,
    );
    // Every span out before its counts are read.
    std::thread::sleep(Duration::from_secs(6));
    let stats: serde_json::Value = agent()
        .get(format!("{collector}/_stats"))
        .call()
        .ok()
        .and_then(|mut answer| answer.body_mut().read_json().ok())
        .unwrap_or_default();
    let scraped = agent()
        .get(format!("http://{metrics}/metrics"))
        .call()
        .ok()
        .and_then(|mut answer| answer.body_mut().read_to_string().ok())
        .unwrap_or_default();
    let dropped: Vec<&str> = scraped
        .lines()
        .filter(|line| line.starts_with("activator_trace_spans_dropped_total{"))
        .collect();
    println!(
        "traces: the receiver got {} spans in {} exports, decoding them in {:.1} s of CPU; {}",
        stats["spans"],
        stats["trace_requests"],
        cpu_seconds(receiver.id()),
        dropped.join(", ")
    );
    let _ = receiver.kill();
    let _ = receiver.wait();
}

/// `extra` and room for the load from one address, and for its hash
/// queue's places.
fn with<'a>(extra: &[(&'static str, &'a str)]) -> Vec<(&'static str, &'a str)> {
    let mut env = vec![
        ("REGISTER_PER_IP_LIMIT", "1000000"),
        ("HASH_QUEUE_PER_IP", "10000"),
    ];
    env.extend_from_slice(extra);
    env
}

/// `server`'s resident memory and its peak, in MiB (Linux).
fn memory(server: &Server) -> (f64, f64) {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

/// The CPU time (user and system) process `pid` has used, in seconds
/// (Linux, at the usual 100 ticks a second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis: utime and stime
    // are the 12th and 13th of them.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
