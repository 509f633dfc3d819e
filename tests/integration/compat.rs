//! The ports of the original service's Python libraries
//! (`activator::compat`) against vectors recorded from the real libraries
//! (`tests/fixtures/`): pydantic's `EmailStr` over email-validator, which
//! judges addresses (docs/API.md "Email addresses"), and CPython's
//! `json.loads`, which reads bodies (docs/API.md "Request bodies"), and the
//! lone surrogates Python kept and Rust cannot (docs/API.md "Lone
//! surrogates"). Only these are here: the original's answers through the API,
//! body for body, and the differences kept on purpose (docs/API.md
//! "Differences from the original service") are tested with the workflow
//! they belong to, in `register.rs`, `sign_in.rs`, `resend.rs`,
//! `activate.rs` and `operations.rs`.

use std::io::Read;
use std::io::Write;
use std::net::TcpStream;

use activator::compat::pydantic::validate;
use serde_json::{Value, json};

use crate::common::Server;
use crate::common::TestDb;

#[test]
fn the_port_agrees_with_email_validator_on_every_vector() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/email-validator-vectors.json"
    );
    let vectors: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(vectors.len() > 1000);
    let failures: Vec<String> = vectors
        .iter()
        .filter_map(|vector| {
            let input = vector["input"].as_str().unwrap();
            let got = validate(input);
            let text = |key: &str| vector[key].as_str().unwrap_or_default();
            let agrees = match (&got, vector["ok"].as_bool().unwrap()) {
                (Ok(address), true) => {
                    address.local_part == text("local_part")
                        && address.domain == text("domain")
                        && address.ascii_domain == text("ascii_domain")
                        && address.normalized() == text("normalized")
                }
                (Err(reason), false) => reason == text("reason"),
                _ => false,
            };
            (!agrees).then(|| {
                format!(
                    "{input:?}: expected {}, got {got:?}",
                    if vector["ok"] == true {
                        text("normalized")
                    } else {
                        text("reason")
                    }
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

/// The port of Python's `json.loads` against vectors recorded from CPython
/// 3.12 (what the original parsed bodies with): the same verdict, message
/// and character offset for malformed bodies, the same value (key order
/// included) for the others.
#[test]
fn malformed_bodies_are_judged_as_python_judged_them() {
    use activator::compat::pyjson::{self, Error};
    use base64::Engine;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/python-json-vectors.json"
    );
    // serde_json stops at 128 levels; some vectors nest deeper.
    let vectors = pyjson::parse(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .value;
    let vectors = vectors.as_array().unwrap();
    assert!(vectors.len() > 600);
    let mut failures = Vec::new();
    for vector in vectors {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(vector["input_b64"].as_str().unwrap())
            .unwrap();
        let got = match pyjson::loads(&bytes) {
            Ok(parsed) => json!({"ok": parsed.value}),
            Err(Error::Decode(e)) => json!({"error": "decode", "msg": e.msg, "pos": e.pos}),
            Err(Error::NotText) => json!({"error": "not_text"}),
            Err(Error::TooDeep) => json!({"error": "too_deep"}),
            Err(Error::IntTooLong) => json!({"error": "int_too_long"}),
        };
        let want = &vector["expect"];
        let agrees = if want.get("error").is_some() {
            &got == want
        } else {
            // The texts, not the values: `Value`'s equality ignores the
            // key order that Python's dicts keep.
            serde_json::to_string(&got["ok"]).unwrap()
                == serde_json::to_string(&want["ok"]).unwrap()
        };
        if !agrees {
            failures.push(format!("{}: want {want}, got {got}", vector["name"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lone_surrogates_are_refused_as_the_original_refused_them() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    let base = server.base.trim_start_matches("http://").to_owned();
    let send = |body: &str| {
        let request = format!(
            "POST /auth/register HTTP/1.1\r\nHost: {base}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let address = server.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str::<Value>(body).unwrap())
    };
    let (status, body) = send(r#"{"email":"\ud800@example.com","password":"Secr3t!pass"}"#);
    assert_eq!(status, 422, "{body}");
    let item = &body["detail"][0];
    assert_eq!(item["type"], "value_error");
    assert_eq!(item["loc"], json!(["body", "email"]));
    assert_eq!(
        item["msg"],
        "value is not a valid email address: The email address contains unsafe characters: U+D800."
    );
    let (status, body) = send(r#"{"email":"ada@example.com","password":"Secr3t!p\udc00ss"}"#);
    assert_eq!(status, 422, "{body}");
    let item = &body["detail"][0];
    assert_eq!(item["type"], "string_unicode");
    assert_eq!(item["loc"], json!(["body", "password"]));
    assert_eq!(
        item["msg"],
        "Input should be a valid string, unable to parse raw data as a unicode string"
    );
    assert!(item.get("input").is_none(), "a password is never echoed");
}
