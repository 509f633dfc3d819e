//! Registration that tells nobody who has an account
//! (`REGISTRATION_DISCLOSURE=hidden`, docs/API.md): unknown, pending and
//! active addresses answered alike by register, and then by resend and
//! activate to the password registered, in status, body, headers and time
//! (the timing distributions compared with a two-sample
//! Kolmogorov–Smirnov test); the owners' emails. The real binary.

use std::time::{Duration, Instant};

use crate::common::email::{code_for, serve_with_email_api};
use crate::common::server::run;
use crate::common::{Api, Call, MailSink, Reply, TestDb, unique_email};

const OWNER: &str = "0wner!Pass";
const NEWCOMER: &str = "Newc0mer!pass";
/// An 8-digit code no inbox here has: a wrong code for sure.
const WRONG_CODE: &str = "01234567";

/// What a client can compare of two replies: status, body, headers.
type Observed = (u16, String, Vec<(String, String)>);

/// A reply as a client can compare two: status, body, and every header
/// but the ones that differ per request (`x-request-id`, `date`).
fn observed(reply: &Reply) -> Observed {
    let mut headers: Vec<(String, String)> = reply
        .headers
        .iter()
        .filter(|(name, _)| name != "x-request-id" && name != "date")
        .cloned()
        .collect();
    headers.sort();
    (reply.code(), reply.body.clone(), headers)
}

/// The two-sample Kolmogorov–Smirnov test: the statistic D (the largest
/// distance between the two empirical distribution functions) and its
/// asymptotic p-value, Q_KS((√n_e + 0.12 + 0.11/√n_e) D) with n_e =
/// nm/(n+m) and Q_KS(λ) = 2 Σ_{j≥1} (−1)^{j−1} e^{−2j²λ²} (Numerical
/// Recipes, 14.3).
fn kolmogorov_smirnov(a: &[f64], b: &[f64]) -> (f64, f64) {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    let ne = (n * m / (n + m)).sqrt();
    let lambda = (ne + 0.12 + 0.11 / ne) * d;
    // The series converges slowly near 0, where Q_KS is 1 to 7 digits.
    if lambda < 0.2 {
        return (d, 1.0);
    }
    let mut p = 0.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = 2.0 * (-1f64).powf(k - 1.0) * (-2.0 * k * k * lambda * lambda).exp();
        p += term;
        if term.abs() < 1e-12 {
            break;
        }
    }
    (d, p.clamp(0.0, 1.0))
}

#[test]
fn the_kolmogorov_smirnov_test_tells_shifted_samples_from_alike_ones() {
    let alike: Vec<f64> = (0..200).map(|i| f64::from(i % 50)).collect();
    let also: Vec<f64> = (0..200).map(|i| f64::from((i * 7) % 50)).collect();
    assert!(kolmogorov_smirnov(&alike, &also).1 > 0.5);
    let shifted: Vec<f64> = alike.iter().map(|x| x + 10.0).collect();
    let (d, p) = kolmogorov_smirnov(&alike, &shifted);
    assert!((d - 0.2).abs() < 1e-9 && p < 0.01, "{d} {p}");
}

/// The three standings an address can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Unknown,
    Pending,
    Active,
}

const STANDINGS: [Standing; 3] = [Standing::Unknown, Standing::Pending, Standing::Active];

/// `call` sent, timed from the client.
async fn timed(server: &impl Api, call: Call) -> (Reply, f64) {
    let started = Instant::now();
    let reply = server.send(call).await;
    (reply, started.elapsed().as_secs_f64() * 1e3)
}

/// For each standing, `n` calls made by `call` for its addresses,
/// interleaved (the standings' order shuffled each round, so the server's
/// drift over time falls on all alike): their observed replies (each
/// standing's all alike) and times.
#[allow(
    clippy::needless_range_loop,
    reason = "each round takes one address of each standing"
)]
async fn measure(
    server: &impl Api,
    addresses: &[Vec<String>; 3],
    call: impl Fn(&str) -> Call,
) -> Vec<(Observed, Vec<f64>)> {
    let mut seen: Vec<(Option<Observed>, Vec<f64>)> =
        vec![(None, Vec::new()), (None, Vec::new()), (None, Vec::new())];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..addresses[0].len() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut order = [0usize, 1, 2];
        order.rotate_left((x % 3) as usize);
        if x & 8 != 0 {
            order.swap(1, 2);
        }
        for kind in order {
            let (reply, ms) = timed(server, call(&addresses[kind][round])).await;
            let observed = observed(&reply);
            match &seen[kind].0 {
                None => seen[kind].0 = Some(observed),
                Some(first) => assert_eq!(
                    first, &observed,
                    "{:?}: one standing, two answers",
                    STANDINGS[kind]
                ),
            }
            seen[kind].1.push(ms);
        }
    }
    seen.into_iter()
        .map(|(observed, times)| (observed.unwrap(), times))
        .collect()
}

/// Asserts the three standings were answered alike, and in times the
/// Kolmogorov–Smirnov test cannot tell apart at p > 0.01; prints them.
fn assert_alike(what: &str, results: &[(Observed, Vec<f64>)]) {
    for pair in [(0, 1), (0, 2), (1, 2)] {
        let (a, b) = (&results[pair.0], &results[pair.1]);
        assert_eq!(
            a.0, b.0,
            "{what}: {:?} and {:?} answered differently",
            STANDINGS[pair.0], STANDINGS[pair.1]
        );
        let (d, p) = kolmogorov_smirnov(&a.1, &b.1);
        let median = |times: &[f64]| {
            let mut times = times.to_vec();
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        };
        println!(
            "{what}: {:?} vs {:?}: medians {:.2} ms / {:.2} ms, D = {d:.3}, p = {p:.3}",
            STANDINGS[pair.0],
            STANDINGS[pair.1],
            median(&a.1),
            median(&b.1)
        );
        assert!(
            p > 0.01,
            "{what}: {:?} and {:?} told apart by time: D = {d:.3}, p = {p:.4}",
            STANDINGS[pair.0],
            STANDINGS[pair.1]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_registrations_each_of_unknown_pending_and_active_addresses_look_alike() {
    const N: usize = 200;
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve_with_email_api(
        &db,
        &sink,
        &[
            ("REGISTRATION_DISCLOSURE", "hidden"),
            ("RATE_LIMIT_EXEMPT", "127.0.0.1/32,::1"),
            ("ACTIVATION_CODE_TTL_SECONDS", "600"),
        ],
    );
    let addresses: [Vec<String>; 3] = std::array::from_fn(|kind| {
        (0..N)
            .map(|_| unique_email(&format!("{:?}", STANDINGS[kind]).to_lowercase()))
            .collect()
    });
    // The pending and active accounts, made by their owners.
    for email in &addresses[1] {
        server
            .register(email, OWNER)
            .await
            .assert_detail(201, "Activation email sent");
    }
    for email in &addresses[2] {
        server
            .register(email, OWNER)
            .await
            .assert_detail(201, "Activation email sent");
        let code = code_for(&sink, email);
        server
            .activate(email, OWNER, &code)
            .await
            .assert_detail(200, "Account activated");
    }
    // Warm up the server's paces (not measured).
    for _ in 0..40 {
        server.register(&unique_email("warm"), NEWCOMER).await;
    }

    let registrations = measure(&server, &addresses, |email| {
        Call::post("/auth/register")
            .json(&serde_json::json!({"email": email, "password": NEWCOMER}))
    })
    .await;
    assert_eq!(registrations[0].0.0, 201);
    assert_eq!(
        registrations[0].0.1,
        r#"{"detail":"Activation email sent"}"#
    );
    assert_alike("register", &registrations);

    // The newcomer's password, then, signs in alike: resend and activate.
    let resends = measure(&server, &addresses, |email| {
        Call::post("/auth/resend").basic(email, NEWCOMER)
    })
    .await;
    assert_eq!(resends[0].0.0, 202, "{:?}", resends[0].0);
    assert_alike("resend", &resends);
    let activations = measure(&server, &addresses, |email| {
        Call::post("/auth/activate")
            .json(&serde_json::json!({ "code": WRONG_CODE }))
            .basic(email, NEWCOMER)
    })
    .await;
    assert_eq!(activations[0].0.0, 400, "{:?}", activations[0].0);
    assert_alike("activate", &activations);

    // The owners of the active accounts still sign in as before (a wrong
    // code: 400, as the original answers an active account).
    let owner = &addresses[2][0];
    let reply = server.activate(owner, OWNER, WRONG_CODE).await;
    reply.assert_detail(400, "Invalid or expired activation code");
    server
        .resend(owner, OWNER)
        .await
        .assert_detail(409, "Account already active");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_active_owner_is_told_in_its_language_and_a_pending_owner_gets_nothing_new() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    let server = serve_with_email_api(
        &db,
        &sink,
        &[
            ("REGISTRATION_DISCLOSURE", "hidden"),
            ("RATE_LIMIT_EXEMPT", "127.0.0.1/32,::1"),
        ],
    );
    let active = unique_email("active");
    let registration = Call::post("/auth/register")
        .json(&serde_json::json!({"email": active, "password": OWNER}))
        .header("Accept-Language", "fr");
    server
        .send(registration)
        .await
        .assert_detail(201, "Activation email sent");
    let french = sink.wait_for(1, Duration::from_secs(20));
    let text = french[0]["body"].as_str().unwrap();
    let code: String = text
        .split("Votre code d’activation est\u{a0}: ")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    server
        .activate(&active, OWNER, &code)
        .await
        .assert_detail(200, "Account activated");

    // Someone else, in English, registers the address: the owner hears of
    // it in French, with no code in it.
    server
        .register(&active, NEWCOMER)
        .await
        .assert_detail(201, "Activation email sent");
    let notices = sink.wait_for(2, Duration::from_secs(20));
    let notice = notices
        .iter()
        .find(|m| m["to"] == active.as_str() && m != &&notices[0])
        .unwrap();
    assert_eq!(
        notice["subject"],
        "Quelqu’un a tenté de s’inscrire avec votre adresse"
    );
    let body = notice["body"].as_str().unwrap();
    assert!(
        body.contains(&active)
            && !body
                .chars()
                .any(|c| c.is_ascii_digit() && !active.contains(c))
    );
    // The decoy never activates, whatever it types.
    server
        .activate(&active, NEWCOMER, &code)
        .await
        .assert_detail(400, "Invalid or expired activation code");

    // A pending owner registering again with its own password: nothing new.
    let pending = unique_email("pending");
    server
        .register(&pending, OWNER)
        .await
        .assert_detail(201, "Activation email sent");
    code_for(&sink, &pending);
    let before = sink.delivered().len();
    server
        .register(&pending, OWNER)
        .await
        .assert_detail(201, "Activation email sent");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sink.delivered().len(),
        before,
        "nothing sent for a known password"
    );
    // Another password records a claim, mailed its code as ever.
    server
        .register(&pending, NEWCOMER)
        .await
        .assert_detail(201, "Activation email sent");
    crate::common::email::codes_for(&sink, &pending, 2);
}

/// The answers to `n` wrong activations of each address in turn, with the
/// password registered: each standing's list, `Retry-After` rounded to
/// the minute (it counts down between the requests).
async fn wrong_activations(
    server: &impl Api,
    addresses: &[String; 3],
    n: usize,
) -> Vec<Vec<Observed>> {
    let mut answers = vec![Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..n {
        for (kind, email) in addresses.iter().enumerate() {
            let reply = server.activate(email, NEWCOMER, WRONG_CODE).await;
            let (status, body, mut headers) = observed(&reply);
            for (name, value) in &mut headers {
                if name == "retry-after" {
                    *value = (value.parse::<u64>().unwrap().div_ceil(60)).to_string();
                }
            }
            answers[kind].push((status, body, headers));
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decoys_lockout_and_failure_budget_answer_as_a_registrants() {
    let db = TestDb::new().await;
    let sink = MailSink::start();
    for (settings, n, last) in [
        (
            vec![],
            6,
            (429, "Too many activation attempts. Please try again later."),
        ),
        (
            vec![("ACTIVATION_ATTEMPT_LIMIT", "100")],
            11,
            (429, "Too many activation attempts. Please try again later."),
        ),
    ] {
        let mut env = vec![
            ("REGISTRATION_DISCLOSURE", "hidden"),
            ("RATE_LIMIT_EXEMPT", "127.0.0.1/32,::1"),
        ];
        env.extend(settings);
        let server = serve_with_email_api(&db, &sink, &env);
        let addresses: [String; 3] = std::array::from_fn(|kind| {
            unique_email(&format!("{:?}", STANDINGS[kind]).to_lowercase())
        });
        server
            .register(&addresses[1], OWNER)
            .await
            .assert_detail(201, "Activation email sent");
        server
            .register(&addresses[2], OWNER)
            .await
            .assert_detail(201, "Activation email sent");
        let code = code_for(&sink, &addresses[2]);
        server
            .activate(&addresses[2], OWNER, &code)
            .await
            .assert_detail(200, "Account activated");
        for email in &addresses {
            server
                .register(email, NEWCOMER)
                .await
                .assert_detail(201, "Activation email sent");
        }
        // The operator sees the active address's decoy for what it is;
        // the pending address's claim is a claim.
        let shown = |email: &str| {
            let output = run(&db.url, &[], &["user", "show", email, "--json"]);
            assert!(output.status.success(), "{output:?}");
            let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            report["claims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|claim| claim["decoy"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(shown(&addresses[2]), [serde_json::Value::Bool(true)]);
        assert_eq!(shown(&addresses[1]), [serde_json::Value::Bool(false)]);
        let text = run(&db.url, &[], &["user", "show", &addresses[2]]);
        assert!(
            String::from_utf8_lossy(&text.stdout).contains("decoy claim #"),
            "{text:?}"
        );
        let answers = wrong_activations(&server, &addresses, n).await;
        assert_eq!(answers[0], answers[1], "unknown and pending told apart");
        assert_eq!(answers[0], answers[2], "unknown and active told apart");
        let final_answer = answers[0].last().unwrap();
        assert_eq!(
            (final_answer.0, final_answer.1.as_str()),
            (last.0, format!(r#"{{"detail":"{}"}}"#, last.1).as_str())
        );
        assert_eq!(answers[0][0].0, 400);
    }
}
