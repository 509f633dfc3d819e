//! The ports of the original service's Python libraries
//! (`activator::compat`) against vectors recorded from the real libraries
//! (`tests/fixtures/`): pydantic's `EmailStr` over email-validator, which
//! judges addresses (docs/API.md "Email addresses"), and CPython's
//! `json.loads`, which reads bodies (docs/API.md "Request bodies"). Only
//! these vector tests are here: the original's answers through the API,
//! body for body, and the differences kept on purpose (docs/API.md
//! "Differences from the original service") are tested with the workflow
//! they belong to, in `register.rs`, `sign_in.rs`, `resend.rs`,
//! `activate.rs` and `operations.rs`.

use activator::compat::pydantic::validate;
use serde_json::{Value, json};

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
