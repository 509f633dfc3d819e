//! The email-validator port against vectors produced by the real Python
//! stack of the original service (pydantic 2.11 `EmailStr` over
//! email-validator 2.3.0): every input, the same verdict, the same sentence,
//! the same normalized parts.

use activator::compat::pydantic::validate;
use serde_json::Value;

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
