//! The password policy an operator sets (docs/API.md "Password policy"):
//! each rule and each refusal's sentence, the strength estimate, the deny
//! list made by `passwords import` and mapped by `serve`, and what
//! `config check` says of them. The real binary.

use serde_json::{Value, json};

use crate::common::cli::{error_line, refused, succeeded};
use crate::common::server::{Server, run};
use crate::common::{Api, TestDb, unique_email};

/// The 422 item of a refused password: type, msg and ctx.
fn refusal(reply: &crate::common::Reply) -> (String, String, Value) {
    assert_eq!(reply.code(), 422, "{}", reply.body);
    let item = &reply.json()["detail"][0];
    assert_eq!(item["loc"], json!(["body", "password"]), "{}", reply.body);
    assert!(item.get("input").is_none(), "a password is never echoed");
    (
        item["type"].as_str().unwrap().to_owned(),
        item["msg"].as_str().unwrap().to_owned(),
        item["ctx"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nist_policy_takes_a_passphrase_and_refuses_each_rule_with_its_sentence() {
    let db = TestDb::new().await;
    let server = Server::start(
        &db.url,
        &[
            ("PASSWORD_POLICY", "nist"),
            ("PASSWORD_MIN_STRENGTH", "3"),
            ("RATE_LIMIT_EXEMPT", "127.0.0.1/32,::1"),
        ],
    );
    let email = unique_email("nist");
    server
        .register(&email, "correct horse battery staple")
        .await
        .assert_detail(201, "Activation email sent");
    server
        .register(
            &unique_email("nist"),
            " leading and trailing spaces are fine ",
        )
        .await
        .assert_detail(201, "Activation email sent");

    let value_error = |sentence: &str| {
        (
            "value_error".to_owned(),
            format!("Value error, {sentence}"),
            json!({"error": {}}),
        )
    };
    let cases: Vec<(&str, String, (String, String, Value))> = vec![
        (
            "a@example.com",
            "short one".into(),
            (
                "string_too_short".into(),
                "String should have at least 15 characters".into(),
                json!({"min_length": 15}),
            ),
        ),
        (
            "a@example.com",
            "é".repeat(40),
            (
                "string_too_long".into(),
                "String should have at most 72 bytes".into(),
                json!({"max_length": 72}),
            ),
        ),
        (
            "a@example.com",
            "x".repeat(73),
            (
                "string_too_long".into(),
                "String should have at most 72 characters".into(),
                json!({"max_length": 72}),
            ),
        ),
        (
            "a@example.com",
            "a tab\there in the passphrase".into(),
            value_error("Password cannot contain control characters"),
        ),
        (
            "ada.lovelace@example.com",
            "AdaLovelace1815!".into(),
            value_error("Password resembles the email address"),
        ),
        (
            "grace@example.com",
            "passwordpassword".into(),
            value_error(
                "Password is too easy to guess: repeats like \"abcabcabc\" are only slightly harder to guess than \"abc\"",
            ),
        ),
        (
            "grace@example.com",
            "qwertyuiopasdfgh".into(),
            value_error("Password is too common"),
        ),
    ];
    for (email, password, expected) in cases {
        let reply = server.register(email, &password).await;
        assert_eq!(refusal(&reply), expected, "{password:?}");
    }

    // NFKC: what was registered with a ligature signs in typed plainly.
    let email = unique_email("nfkc");
    server
        .register(&email, "a ﬁne passphrase for ＡＢＣ")
        .await
        .assert_detail(201, "Activation email sent");
    server
        .resend(&email, "a fine passphrase for ABC")
        .await
        .assert_detail(202, "Activation email resent");

    // The document states the policy in force.
    let document = server.get("/openapi.json").await.json();
    let schema = &document["components"]["schemas"]["RegisterRequest"]["properties"]["password"];
    assert_eq!(schema["minLength"], 15, "{schema}");
    let words = schema["description"].as_str().unwrap();
    assert!(
        words.contains("no composition rules")
            && words.contains("NFKC")
            && words.contains("zxcvbn"),
        "{words}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_policy_is_the_originals_in_answers_and_in_the_document() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[("RATE_LIMIT_EXEMPT", "127.0.0.1/32,::1")]);
    let reply = server
        .register(&unique_email("default"), "correct horse battery staple")
        .await;
    assert_eq!(
        refusal(&reply).1,
        "Value error, Password cannot contain whitespace characters"
    );
    let document = server.get("/openapi.json").await.json();
    let schema = &document["components"]["schemas"]["RegisterRequest"]["properties"]["password"];
    assert_eq!(
        (schema["minLength"].clone(), schema["maxLength"].clone()),
        (json!(8), json!(72))
    );
    assert_eq!(schema["pattern"], activator::password::PATTERN);

    // The original's rules with a strength estimate on top.
    let server = Server::start(
        &db.url,
        &[
            ("PASSWORD_MIN_STRENGTH", "3"),
            ("RATE_LIMIT_EXEMPT", "127.0.0.1/32,::1"),
        ],
    );
    let reply = server.register(&unique_email("common"), "Password1!").await;
    assert_eq!(refusal(&reply).1, "Value error, Password is too common");
    let reply = server.register(&unique_email("common"), "Sh0rt!").await;
    assert_eq!(
        refusal(&reply).0,
        "string_too_short",
        "the rules come first"
    );
}

/// `SHA1:COUNT` lines as the breach corpus's downloadable form has them:
/// `n` made-up passwords `breached-<i>` seen `i % 5` times, and the ones
/// given with their counts.
fn corpus(n: usize, known: &[(&str, u64)]) -> String {
    let line = |password: &str, count: u64| {
        let sha1 = sha1_smol::Sha1::from(password.as_bytes())
            .digest()
            .to_string();
        format!("{}:{count}\n", sha1.to_uppercase())
    };
    let mut text: String = (0..n)
        .map(|i| line(&format!("breached-{i}"), (i % 5) as u64))
        .collect();
    for (password, count) in known {
        text.push_str(&line(password, *count));
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_of_an_imported_breach_corpus_is_refused() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("activator-denylist-{}", unique_email("d")));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("pwned.txt");
    let out = dir.join("denylist.bin");
    std::fs::write(
        &input,
        corpus(50_000, &[("Tr0ub4dor&3x", 120), ("Rarely!Seen9", 1)]),
    )
    .unwrap();
    let printed = succeeded(&run(
        &db.url,
        &[],
        &[
            "passwords",
            "import",
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            "--min-count",
            "2",
        ],
    ));
    assert!(printed.contains("50002 lines read"), "{printed}");
    let file = out.to_str().unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert!(
        !bytes.windows(8).any(|w| w == b"Tr0ub4do"),
        "no plaintext in the file"
    );

    let server = Server::start(
        &db.url,
        &[
            ("PASSWORD_DENYLIST_FILE", file),
            ("RATE_LIMIT_EXEMPT", "127.0.0.1/32,::1"),
        ],
    );
    let reply = server
        .register(&unique_email("breached"), "Tr0ub4dor&3x")
        .await;
    assert_eq!(
        refusal(&reply).1,
        "Value error, Password appears in a list of breached passwords"
    );
    // Seen once: below --min-count, not in the list.
    server
        .register(&unique_email("rare"), "Rarely!Seen9")
        .await
        .assert_detail(201, "Activation email sent");

    let checked = succeeded(&run(
        &db.url,
        &[("PASSWORD_DENYLIST_FILE", file)],
        &["config", "check"],
    ));
    let entries = 50_000 * 3 / 5 + 1;
    assert!(
        checked.contains(&format!(
            "password deny list: {file}: {entries} passwords, made 20"
        )),
        "{checked}"
    );
    assert!(
        checked.contains("password policy: 8–72 characters"),
        "{checked}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_damaged_deny_list_stops_serve_and_config_check_naming_it() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("activator-denylist-{}", unique_email("bad")));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("denylist.bin");
    let path = file.to_str().unwrap();
    let missing = [("PASSWORD_DENYLIST_FILE", path)];

    let line = refused(&run(&db.url, &missing, &["serve"]));
    assert!(
        line.contains(path) && line.contains("PASSWORD_DENYLIST_FILE"),
        "{line}"
    );
    let output = run(&db.url, &missing, &["config", "check"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(error_line(&output).contains(path));

    // Cut short, and a plain list where the filter should be.
    std::fs::write(dir.join("list.txt"), "123456\npassword\n").unwrap();
    succeeded(&run(
        &db.url,
        &[],
        &[
            "passwords",
            "import",
            dir.join("list.txt").to_str().unwrap(),
            path,
        ],
    ));
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
    let line = refused(&run(&db.url, &missing, &["serve"]));
    assert!(line.contains(path) && line.contains("not usable"), "{line}");
    std::fs::write(&file, "123456\npassword\n").unwrap();
    let line = refused(&run(&db.url, &missing, &["serve"]));
    assert!(
        line.contains(path) && line.contains("not a deny list"),
        "{line}"
    );

    // An import of a malformed corpus names the line, and writes nothing.
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, corpus(3, &[]) + "ZZZZ:1\n").unwrap();
    let line = refused(&run(
        &db.url,
        &[],
        &[
            "passwords",
            "import",
            bad.to_str().unwrap(),
            dir.join("new.bin").to_str().unwrap(),
        ],
    ));
    assert!(line.contains("line 4"), "{line}");
    assert!(!dir.join("new.bin").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
