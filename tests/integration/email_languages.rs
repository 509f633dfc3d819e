//! The email's language (docs/EMAIL.md "Languages", "Templates"): chosen
//! from `Accept-Language` at registration, else `DEFAULT_LOCALE`, and kept
//! with the account for every later email, over the HTTP email API and SMTP.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use mail_parser::MessageParser;
use rocket::http::{ContentType, Header};
use serde_json::{Value, json};

use crate::common::email::{parts, serve_with_smtp};
use crate::common::server::run;
use crate::common::smtp_sink::SmtpSink;
use crate::common::{
    MailSink, PASSWORD, Reply, Server, TestApp, TestDb, peer, unique_email, unique_ip,
};

/// Registers `email` from a fresh client address, with `Accept-Language`
/// lines `languages`.
async fn register_in(app: &TestApp, email: &str, languages: &[&str]) -> Reply {
    let mut request = app
        .client
        .post("/auth/register")
        .remote(peer(&unique_ip()))
        .header(ContentType::JSON)
        .body(json!({"email": email, "password": PASSWORD}).to_string());
    for language in languages {
        request = request.header(Header::new("Accept-Language", language.to_string()));
    }
    Reply::from(request.dispatch().await).await
}

async fn locale_of(app: &TestApp, email: &str) -> Option<String> {
    #[derive(diesel::QueryableByName)]
    struct Locale {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        locale: Option<String>,
    }
    let mut conn = app.db.connect().await;
    let row: Locale = diesel::sql_query("SELECT locale FROM users WHERE email = $1")
        .bind::<diesel::sql_types::Text, _>(email)
        .get_result(&mut conn)
        .await
        .unwrap();
    row.locale
}

/// The newest email delivered to `to`.
fn last_to<'a>(delivered: &'a [Value], to: &str) -> &'a Value {
    delivered
        .iter()
        .rev()
        .find(|message| message["to"] == to)
        .expect("an email to this address")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_accounts_language_is_the_best_accept_language_we_have() {
    let app = TestApp::new().await;
    let cases: [(&[&str], &str); 10] = [
        (&[], "en"),
        (&["fr"], "fr"),
        (&["fr-CH"], "fr"),
        (&["de;q=0.5, es;q=0.9"], "es"),
        (&["it, pt-BR;q=0.9, de-AT;q=0.2"], "de"),
        (&["it, pt"], "en"),
        (&["*"], "en"),
        (&["es;q=0, de"], "de"),
        (&["@@@ not a header ;;; q=x"], "en"),
        (&["it", "es;q=0.8"], "es"),
    ];
    for (languages, expected) in cases {
        let email = unique_email("lang");
        register_in(&app, &email, languages)
            .await
            .assert_detail(201, "Activation email sent");
        assert_eq!(
            locale_of(&app, &email).await.as_deref(),
            Some(expected),
            "{languages:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_language_we_have_the_default_locale_is_used() {
    let app = TestApp::with(&[("DEFAULT_LOCALE", "es")]).await;
    let sink = MailSink::start();
    let email = unique_email("default");
    register_in(&app, &email, &["it"]).await;
    assert_eq!(locale_of(&app, &email).await.as_deref(), Some("es"));
    app.deliver(&sink).await;
    let delivered = sink.delivered();
    let message = last_to(&delivered, &email);
    assert_eq!(message["subject"], "Su código de activación");
    assert!(
        message["body"]
            .as_str()
            .unwrap()
            .contains("Este código es válido durante 1 minuto.")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resend_and_a_support_resend_keep_the_accounts_language() {
    let app = TestApp::with(&[("ACTIVATION_CODE_TTL_SECONDS", "120")]).await;
    let sink = MailSink::start();
    let email = unique_email("keeps");
    register_in(&app, &email, &["de-AT, en;q=0.5"]).await;
    app.deliver(&sink).await;

    // Asking in another language later changes nothing: the account's
    // language was chosen at registration.
    let request = app
        .client
        .post("/auth/resend")
        .remote(peer(&unique_ip()))
        .header(Header::new("Accept-Language", "fr"))
        .header(crate::common::basic(&email, PASSWORD));
    Reply::from(request.dispatch().await)
        .await
        .assert_detail(202, "Activation email resent");
    app.deliver(&sink).await;

    let output = run(
        &app.db.url,
        &[("ACTIVATION_CODE_TTL_SECONDS", "120")],
        &["user", "resend", &email],
    );
    assert!(output.status.success(), "{output:?}");
    app.deliver(&sink).await;

    let shown = run(&app.db.url, &[], &["user", "show", &email]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("language    de\n"), "{shown}");

    let delivered = sink.delivered();
    let mine: Vec<&Value> = delivered.iter().filter(|m| m["to"] == email).collect();
    assert_eq!(mine.len(), 3);
    for message in mine {
        assert_eq!(message["subject"], "Ihr Aktivierungscode");
        let body = message["body"].as_str().unwrap();
        assert!(body.contains("Ihr Aktivierungscode lautet: "), "{body}");
        assert!(body.contains("Der Code ist 2 Minuten gültig."), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_writes_the_smtp_email_in_the_accounts_language() {
    let sink = SmtpSink::start();
    let db = TestDb::new().await;
    let server = serve_with_smtp(&db, &sink.url(), &[]);
    let email = unique_email("fr");
    let mut response = Server::agent()
        .post(format!("{}/auth/register", server.base))
        .header("Accept-Language", "fr-CH, fr;q=0.9, en;q=0.8")
        .send_json(json!({"email": email, "password": PASSWORD}))
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let _ = response.body_mut().read_to_string();

    let messages = sink.wait_for(1, Duration::from_secs(10));
    let raw = messages[0]["data"].as_str().unwrap();
    let message = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(message.subject(), Some("Votre code d’activation"));
    let (text, html) = parts(raw, &email);
    assert!(
        text.contains("Votre code d’activation est\u{a0}: ")
            && text.contains("Ce code est valable 1 minute."),
        "{text}"
    );
    assert!(html.contains("<html lang=\"fr\">"), "{html}");
}
