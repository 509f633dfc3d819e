//! The original service's exact answers (docs/COMPATIBILITY.md), one test per
//! row: the whole body, byte for byte, and the headers that matter. The
//! differences kept on purpose are tested as such, at the end.

use std::io::{Read, Write};

use rocket::http::{ContentType, Header};
use serde_json::json;

use crate::common::{
    PASSWORD, Reply, Server, TestApp, TestDb, basic, exactly, exactly_limited, pending,
    unique_email, wrong_code,
};

async fn register_raw(app: &TestApp, body: &str) -> Reply {
    Reply::from(
        app.client
            .post("/auth/register")
            .header(ContentType::JSON)
            .body(body)
            .dispatch()
            .await,
    )
    .await
}

// ---- 422 items -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_password_of_0_to_7_characters_is_string_too_short() {
    let app = TestApp::new().await;
    for password in ["", "Ab1!", "Ab1!xyz"] {
        exactly(
            &app.register(&unique_email("short"), password).await,
            422,
            r#"{"detail":[{"type":"string_too_short","loc":["body","password"],"msg":"String should have at least 8 characters","ctx":{"min_length":8}}]}"#,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_over_72_characters_is_string_too_long() {
    let app = TestApp::new().await;
    exactly(
        &app.register(&unique_email("long"), &format!("Aa1!{}", "x".repeat(69)))
            .await,
        422,
        r#"{"detail":[{"type":"string_too_long","loc":["body","password"],"msg":"String should have at most 72 characters","ctx":{"max_length":72}}]}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_lacking_a_class_is_the_validators_value_error() {
    let app = TestApp::new().await;
    for password in [
        "nouppercase1!",
        "NOLOWERCASE1!",
        "NoDigits!!",
        "NoSpecial123",
    ] {
        exactly(
            &app.register(&unique_email("classes"), password).await,
            422,
            r#"{"detail":[{"type":"value_error","loc":["body","password"],"msg":"Value error, Password must include at least one lowercase letter, one uppercase letter, one digit, and one special character","ctx":{"error":{}}}]}"#,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_with_a_leading_or_trailing_space_says_so() {
    let app = TestApp::new().await;
    for password in [" Secr3t!pass", "Secr3t!pass ", "\tsecretpass"] {
        exactly(
            &app.register(&unique_email("ends"), password).await,
            422,
            r#"{"detail":[{"type":"value_error","loc":["body","password"],"msg":"Value error, Password cannot contain leading or trailing spaces","ctx":{"error":{}}}]}"#,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_with_whitespace_inside_says_so() {
    let app = TestApp::new().await;
    for password in [
        "Secr3t! pass",
        "Secr3t!\tpass",
        "Secr3t!\u{2003}pass",
        "no digits here",
    ] {
        exactly(
            &app.register(&unique_email("inside"), password).await,
            422,
            r#"{"detail":[{"type":"value_error","loc":["body","password"],"msg":"Value error, Password cannot contain whitespace characters","ctx":{"error":{}}}]}"#,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_null_body_is_missing_at_body_with_input_null() {
    let app = TestApp::new().await;
    let missing =
        r#"{"detail":[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]}"#;
    exactly(&register_raw(&app, "null").await, 422, missing);
    // No body at all is the same.
    exactly(&register_raw(&app, "").await, 422, missing);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_field_echoes_the_whole_body() {
    let app = TestApp::new().await;
    exactly(
        &register_raw(&app, r#"{"email":"a@example.com","extra":[1,2.5]}"#).await,
        422,
        r#"{"detail":[{"type":"missing","loc":["body","password"],"msg":"Field required","input":{"email":"a@example.com","extra":[1,2.5]}}]}"#,
    );
    // Keys keep the order they were sent in, as Python's dicts do.
    exactly(
        &register_raw(&app, r#"{"zeta":1,"email":"a@example.com","alpha":2}"#).await,
        422,
        r#"{"detail":[{"type":"missing","loc":["body","password"],"msg":"Field required","input":{"zeta":1,"email":"a@example.com","alpha":2}}]}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_json_is_json_invalid_at_its_character_offset() {
    let app = TestApp::new().await;
    exactly(
        &register_raw(&app, "{\"email\":\"a@example.com\",\n \"password\":\"x\",}").await,
        422,
        r#"{"detail":[{"type":"json_invalid","loc":["body",42],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting property name enclosed in double quotes"}}]}"#,
    );
    // Characters, not bytes: "ä😀" is 2 characters and 6 bytes.
    exactly(
        &register_raw(&app, r#"["ä😀",x]"#).await,
        422,
        r#"{"detail":[{"type":"json_invalid","loc":["body",6],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting value"}}]}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_of_the_wrong_length_is_checked_before_the_pattern() {
    let app = TestApp::new().await;
    let (email, _) = pending(&app).await;
    for (code, body) in [
        (
            "123",
            r#"{"detail":[{"type":"string_too_short","loc":["body","code"],"msg":"String should have at least 4 characters","input":"123","ctx":{"min_length":4}}]}"#,
        ),
        (
            "12345",
            r#"{"detail":[{"type":"string_too_long","loc":["body","code"],"msg":"String should have at most 4 characters","input":"12345","ctx":{"max_length":4}}]}"#,
        ),
        (
            " 123 ",
            r#"{"detail":[{"type":"string_too_long","loc":["body","code"],"msg":"String should have at most 4 characters","input":" 123 ","ctx":{"max_length":4}}]}"#,
        ),
    ] {
        exactly(&app.activate(&email, PASSWORD, code).await, 422, body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_that_is_not_digits_is_a_pattern_mismatch() {
    let app = TestApp::new().await;
    let (email, _) = pending(&app).await;
    exactly(
        &app.activate(&email, PASSWORD, "abcd").await,
        422,
        r#"{"detail":[{"type":"string_pattern_mismatch","loc":["body","code"],"msg":"String should match pattern '^\\d{4}$'","input":"abcd","ctx":{"pattern":"^\\d{4}$"}}]}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_addresses_carry_email_validators_sentence_as_reason() {
    let app = TestApp::new().await;
    let long = format!("{}@example.com", "x".repeat(300));
    for (email, reason) in [
        (
            "no-at-sign.example.com",
            "An email address must have an @-sign.",
        ),
        (
            "a@localhost",
            "The part after the @-sign is not valid. It should have a period.",
        ),
        (
            "a b@example.com",
            "The email address contains invalid characters before the @-sign: SPACE.",
        ),
        (
            "a@example.com.",
            "An email address cannot end with a period.",
        ),
        (
            ".a@example.com",
            "An email address cannot start with a period.",
        ),
        (
            long.as_str(),
            "The email address is too long (58 characters too many).",
        ),
        (
            "a@example.test",
            "The part after the @-sign is a special-use or reserved name that cannot be used with email.",
        ),
    ] {
        let expected = json!({"detail": [{
            "type": "value_error",
            "loc": ["body", "email"],
            "msg": format!("value is not a valid email address: {reason}"),
            "input": email,
            "ctx": {"reason": reason},
        }]});
        exactly(
            &app.register(email, PASSWORD).await,
            422,
            &expected.to_string(),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_field_is_listed_in_the_models_order() {
    let app = TestApp::new().await;
    exactly(
        &register_raw(&app, r#"{"password":"short","email":42}"#).await,
        422,
        r#"{"detail":[{"type":"string_type","loc":["body","email"],"msg":"Input should be a valid string","input":42},{"type":"string_too_short","loc":["body","password"],"msg":"String should have at least 8 characters","ctx":{"min_length":8}}]}"#,
    );
}

// ---- other answers -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn health_check_is_exactly_status_ok() {
    let app = TestApp::new().await;
    exactly(&app.get("/health/check").await, 200, r#"{"status":"ok"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_utf8_is_a_400() {
    let app = TestApp::new().await;
    for body in [&b"\xff\xfe\x00"[..], b"{\"email\":\"\xe9\"}", b"\xc3"] {
        let reply = Reply::from(
            app.client
                .post("/auth/register")
                .header(ContentType::JSON)
                .body(body)
                .dispatch()
                .await,
        )
        .await;
        exactly(
            &reply,
            400,
            r#"{"detail":"There was an error parsing the body"}"#,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_authorization_is_the_same_401() {
    let app = TestApp::new().await;
    let (email, code) = pending(&app).await;
    let wrong_password = basic(&email, "Wr0ng!pass");
    let headers: Vec<Option<Header<'static>>> = vec![
        None,
        Some(Header::new("Authorization", "Bearer token")),
        Some(Header::new("Authorization", "Basic")),
        Some(Header::new("Authorization", "Basic ")),
        Some(Header::new("Authorization", "Basic !!!")),
        Some(Header::new("Authorization", "Basic bm9jb2xvbg==")),
        Some(wrong_password),
        Some(basic(&unique_email("nobody"), PASSWORD)),
    ];
    for header in headers {
        for path in ["/auth/activate", "/auth/resend"] {
            let mut request = app
                .client
                .post(path)
                .header(ContentType::JSON)
                .body(json!({"code": code}).to_string());
            if let Some(header) = header.clone() {
                request = request.header(header);
            }
            let reply = Reply::from(request.dispatch().await).await;
            exactly(
                &reply,
                401,
                r#"{"detail":"Invalid authentication credentials"}"#,
            );
            assert_eq!(reply.header("www-authenticate"), Some("Basic"), "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn activating_an_active_account_is_400_with_any_code() {
    let app = TestApp::new().await;
    let (email, code) = pending(&app).await;
    exactly(
        &app.activate(&email, PASSWORD, &code).await,
        200,
        r#"{"detail":"Account activated"}"#,
    );
    for code in [code.as_str(), wrong_code(&code)] {
        exactly(
            &app.activate(&email, PASSWORD, code).await,
            400,
            r#"{"detail":"Invalid or expired activation code"}"#,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn codes_in_other_unicode_digits_pass_validation() {
    let app = TestApp::new().await;
    let (email, code) = pending(&app).await;
    for other in ["１２３４", "١٢٣٤", "𝟏𝟐𝟑𝟒"] {
        // A wrong code, unless it is by chance the right one.
        let reply = app.activate(&email, PASSWORD, other).await;
        if code != "1234" {
            exactly(
                &reply,
                400,
                r#"{"detail":"Invalid or expired activation code"}"#,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_during_a_lockout_is_the_originals_429() {
    let app = TestApp::new().await;
    let (email, code) = pending(&app).await;
    for _ in 0..5 {
        app.activate(&email, PASSWORD, wrong_code(&code)).await;
    }
    exactly_limited(
        &app.activate(&email, PASSWORD, &code).await,
        "Too many activation attempts. Please try again later.",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_within_the_minute_is_the_originals_429() {
    let app = TestApp::new().await;
    let (email, _) = pending(&app).await;
    exactly(
        &app.resend(&email, PASSWORD).await,
        202,
        r#"{"detail":"Activation email resent"}"#,
    );
    exactly_limited(
        &app.resend(&email, PASSWORD).await,
        "Too many resend requests. Please wait before trying again.",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_past_the_daily_cap_is_the_originals_429() {
    let app = TestApp::with(&[
        ("RESEND_PER_MINUTE_LIMIT", "100"),
        ("RESEND_DAILY_LIMIT", "2"),
    ])
    .await;
    let (email, _) = pending(&app).await;
    for _ in 0..2 {
        app.resend(&email, PASSWORD)
            .await
            .assert_detail(202, "Activation email resent");
    }
    exactly_limited(
        &app.resend(&email, PASSWORD).await,
        "Daily resend limit reached. Please try again later.",
    );
}

// ---- routing ------------------------------------------------------------------------

/// One raw HTTP/1.1 request to the real binary (Rocket's local client knows
/// only the methods it knows); the status line and the whole answer.
fn raw(server: &Server, request: &str) -> String {
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn a_method_a_path_does_not_have_is_405_with_allow_known_or_not() {
    let db = TestDb::new().await;
    let server = Server::start(&db.url, &[]);
    for method in ["GET", "PUT", "DELETE", "OPTIONS", "QUERY", "FOO"] {
        for (path, allow) in [("/auth/register", "POST"), ("/health/check", "GET")] {
            if method == "GET" && allow == "GET" {
                continue;
            }
            let answer = raw(
                &server,
                &format!(
                    "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            );
            assert!(
                answer.starts_with("HTTP/1.1 405"),
                "{method} {path}: {answer}"
            );
            assert!(
                answer.contains(&format!("\r\nallow: {allow}\r\n")),
                "{answer}"
            );
            assert!(
                answer.ends_with(r#"{"detail":"Method Not Allowed"}"#),
                "{answer}"
            );
        }
        let answer = raw(
            &server,
            &format!(
                "{method} /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        );
        assert!(answer.starts_with("HTTP/1.1 404"), "{method}: {answer}");
        assert!(answer.ends_with(r#"{"detail":"Not Found"}"#), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_known_path_with_a_trailing_slash_redirects_307_to_it() {
    let app = TestApp::new().await;
    for (path, location) in [
        ("/auth/register/", "http://api.example.com/auth/register"),
        (
            "/health/check//?x=1",
            "http://api.example.com/health/check?x=1",
        ),
    ] {
        let reply = Reply::from(
            app.client
                .post(path)
                .header(Header::new("Host", "api.example.com"))
                .dispatch()
                .await,
        )
        .await;
        assert_eq!(
            (reply.status.code, reply.body.as_str()),
            (307, ""),
            "{path}"
        );
        assert_eq!(reply.header("location"), Some(location));
    }
    exactly(
        &app.get("/nowhere/").await,
        404,
        r#"{"detail":"Not Found"}"#,
    );
}

// ---- differences kept on purpose (docs/COMPATIBILITY.md) ---------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_same_address_in_other_letter_case_is_the_same_account() {
    let app = TestApp::new().await;
    let email = unique_email("Case");
    app.register(&email, PASSWORD).await;
    exactly(
        &app.register(&email.to_uppercase(), PASSWORD).await,
        409,
        r#"{"detail":"Activation code already issued"}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_over_72_bytes_is_refused_not_truncated() {
    let app = TestApp::new().await;
    let password = format!("Aa1!{}", "é".repeat(68));
    assert_eq!((password.chars().count(), password.len()), (72, 140));
    exactly(
        &app.register(&unique_email("bytes"), &password).await,
        422,
        r#"{"detail":[{"type":"string_too_long","loc":["body","password"],"msg":"String should have at most 72 bytes","ctx":{"max_length":72}}]}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_part_over_64_characters_is_refused() {
    let app = TestApp::new().await;
    let email = format!("{}@example.com", "a".repeat(65));
    let reason = "The email address is too long before the @-sign (1 character too many).";
    let expected = json!({"detail": [{
        "type": "value_error",
        "loc": ["body", "email"],
        "msg": format!("value is not a valid email address: {reason}"),
        "input": email,
        "ctx": {"reason": reason},
    }]});
    exactly(
        &app.register(&email, PASSWORD).await,
        422,
        &expected.to_string(),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_typed_in_other_digits_activates() {
    let app = TestApp::new().await;
    let (email, code) = pending(&app).await;
    let arabic_indic: String = code
        .chars()
        .map(|c| char::from_u32(0x0660 + c.to_digit(10).unwrap()).unwrap())
        .collect();
    exactly(
        &app.activate(&email, PASSWORD, &arabic_indic).await,
        200,
        r#"{"detail":"Account activated"}"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_is_never_echoed() {
    let app = TestApp::new().await;
    let password = "Secr3t!pass".repeat(7);
    let reply = app.register(&unique_email("echo"), &password).await;
    assert_eq!(reply.status.code, 422);
    assert!(!reply.body.contains("Secr3t"), "{}", reply.body);
    // Not inside an echoed body either.
    let reply = register_raw(&app, r#"{"password":"Secr3t!pass"}"#).await;
    exactly(
        &reply,
        422,
        r#"{"detail":[{"type":"missing","loc":["body","email"],"msg":"Field required","input":{}}]}"#,
    );
}

// ---- Python's json.loads -------------------------------------------------------------

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
