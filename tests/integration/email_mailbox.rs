//! The development mailbox, `activator mailbox` (docs/EMAIL.md "Development
//! mailbox", docs/OPERATIONS.md "mailbox"): it takes emails over its HTTP
//! email API (JSON only) and over SMTP, and shows each with its code.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Api;
use crate::common::email::serve_with_smtp;
use crate::common::server::free_port;
use crate::common::{PASSWORD, Server, TestDb, code_in, eventually, unique_email};

// ---- over HTTP --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn serve_posts_to_the_mailbox_which_shows_the_code() {
    let port = crate::common::server::free_port();
    let mut mailbox = crate::common::server::command("postgres://unused@127.0.0.1:1/x", &[])
        .args(["mailbox", "--port", &port.to_string()])
        .args([
            "--smtp-port",
            &crate::common::server::free_port().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let agent = Server::agent();
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.get(format!("{base}/v1/messages")).call().is_err() {
        assert!(Instant::now() < deadline, "mailbox did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let db = TestDb::new().await;
    let send_url = format!("{base}/v1/send");
    let server = Server::start(&db.url, &[("EMAIL_API_URL", &send_url)]);
    let email = unique_email("mailbox");
    server.register(&email, PASSWORD).await.pair();

    let messages = eventually(Duration::from_secs(5), async || {
        let mut response = agent
            .get(format!("{base}/v1/messages?to={email}"))
            .call()
            .ok()?;
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
        (!list.is_empty()).then_some(list)
    })
    .await
    .expect("the mailbox received the email");
    assert_eq!(messages.len(), 1);
    let code = messages[0]["code"].as_str().unwrap().to_owned();
    assert_eq!(code, code_in(messages[0]["body"].as_str().unwrap()));

    let mut inbox = agent.get(format!("{base}/")).call().unwrap();
    let html = inbox.body_mut().read_to_string().unwrap();
    assert!(
        html.contains(&format!("<div class=\"code\">{code}</div>")),
        "{html}"
    );
    assert!(html.contains(&email));
    let (status, _) = server
        .post_json(
            "/auth/activate",
            &json!({"code": code}),
            Some((&email, PASSWORD)),
        )
        .await
        .pair();
    assert_eq!(status, 200);

    let _ = mailbox.kill();
    let _ = mailbox.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mailbox_takes_only_json_posts() {
    use rocket::http::ContentType;
    let figment = rocket::Config::figment().merge(("log_level", "off"));
    let client =
        rocket::local::asynchronous::Client::tracked(activator::devmail::rocket(figment, 10))
            .await
            .unwrap();
    let message = r#"{"from":"a@example.com","to":"b@example.com","subject":"s","body":"1234"}"#;
    for content_type in [
        Some(ContentType::Plain),
        Some(ContentType::Form),
        Some(ContentType::new("multipart", "form-data")),
        None,
    ] {
        let mut request = client.post("/v1/send").body(message);
        if let Some(content_type) = content_type.clone() {
            request = request.header(content_type);
        }
        let response = request.dispatch().await;
        assert_eq!(response.status().code, 415, "{content_type:?}");
    }
    let accepted = client
        .post("/v1/send")
        .header(ContentType::JSON)
        .body(message)
        .dispatch()
        .await;
    assert_eq!(accepted.status().code, 200);
    let listed = client.get("/v1/messages").dispatch().await;
    let listed: serde_json::Value =
        serde_json::from_str(&listed.into_string().await.unwrap()).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "only the JSON post got in"
    );
}

// ---- over SMTP --------------------------------------------------------------

/// A running `activator mailbox`, killed on drop.
struct Mailbox {
    child: std::process::Child,
    base: String,
    smtp_port: u16,
}

impl Mailbox {
    fn start() -> Self {
        let (port, smtp_port) = (free_port(), free_port());
        let child = crate::common::server::command("postgres://unused@127.0.0.1:1/x", &[])
            .args(["mailbox", "--port", &port.to_string()])
            .args(["--smtp-port", &smtp_port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mailbox = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            smtp_port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Server::agent()
            .get(format!("{}/v1/messages", mailbox.base))
            .call()
            .is_err()
            || std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_err()
        {
            assert!(Instant::now() < deadline, "mailbox did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        mailbox
    }

    fn messages(&self, to: &str) -> Vec<Value> {
        let mut response = Server::agent()
            .get(format!("{}/v1/messages?to={to}", self.base))
            .call()
            .unwrap();
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_sends_over_smtp_to_the_mailbox_which_shows_text_html_and_an_eight_digit_code() {
    let mailbox = Mailbox::start();
    let db = TestDb::new().await;
    let url = format!("smtp://127.0.0.1:{}", mailbox.smtp_port);
    let server = serve_with_smtp(&db, &url, &[("CODE_LENGTH", "8")]);
    let email = unique_email("mailbox-smtp");
    assert_eq!(server.register(&email, PASSWORD).await.code(), 201);

    let messages = eventually(Duration::from_secs(10), async || {
        let list = mailbox.messages(&email);
        (!list.is_empty()).then_some(list)
    })
    .await
    .expect("the mailbox received the email over SMTP");
    let message = &messages[0];
    assert_eq!(message["from"], "accounts@example.org");
    assert_eq!(message["subject"], "Your activation code");
    let code = message["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 8);
    let body = message["body"].as_str().unwrap();
    assert!(
        body.contains(&format!("Your activation code is: {code}\n")),
        "{body}"
    );
    assert!(message["html"].as_str().unwrap().contains(&code));

    let mut inbox = Server::agent()
        .get(format!("{}/", mailbox.base))
        .call()
        .unwrap();
    let page = inbox.body_mut().read_to_string().unwrap();
    assert!(page.contains("<iframe sandbox=\"\""), "{page}");

    let (status, _) = server
        .post_json(
            "/auth/activate",
            &json!({"code": code}),
            Some((&email, PASSWORD)),
        )
        .await
        .pair();
    assert_eq!(status, 200);
}

/// Speaks SMTP by hand: each line sent, each reply read.
struct Client {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Client {
    fn connect(port: u16) -> Self {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = Self {
            reader: std::io::BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(client.reply().starts_with("220 "));
        client
    }

    /// One reply, its lines joined by `|`.
    fn reply(&mut self) -> String {
        use std::io::BufRead;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("|");
            }
        }
    }

    fn send(&mut self, line: &str) -> String {
        use std::io::Write;
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mailbox_speaks_enough_smtp_and_bounds_what_it_takes() {
    let mailbox = Mailbox::start();
    let to = unique_email("raw");
    let mut client = Client::connect(mailbox.smtp_port);

    assert!(client.send("MAIL FROM:<a@example.org>").starts_with("503 "));
    let ehlo = client.send("EHLO test.example");
    assert!(
        ehlo.contains("250-8BITMIME") && ehlo.contains("SMTPUTF8"),
        "{ehlo}"
    );
    assert!(client.send("DATA").starts_with("503 "));
    assert!(client.send("NOOP").starts_with("250 "));
    assert!(
        client
            .send(&format!("NOOP {}", "x".repeat(5000)))
            .starts_with("500 ")
    );
    // A transaction dropped by RSET leaves nothing behind.
    assert!(
        client
            .send("MAIL FROM:<dropped@example.org>")
            .starts_with("250 ")
    );
    assert!(
        client
            .send("RCPT TO:<dropped@example.com>")
            .starts_with("250 ")
    );
    assert!(client.send("RSET").starts_with("250 "));
    assert!(client.send("RCPT TO:<x@example.com>").starts_with("503 "));
    assert!(
        client
            .send("MAIL FROM:<a@example.org> BODY=8BITMIME SMTPUTF8")
            .starts_with("250 ")
    );
    assert!(client.send(&format!("RCPT TO:<{to}>")).starts_with("250 "));
    assert!(client.send("DATA").starts_with("354 "));
    let data = [
        "From: Sender <a@example.org>",
        &format!("To: {to}"),
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Ihr Aktivierungscode lautet: 04271993",
        "..a line that began with a dot",
        ".",
    ]
    .join("\r\n");
    let queued = client.send(&data);
    assert!(queued.starts_with("250 "), "{queued}");
    // Too big: refused, and the session stays in step.
    assert!(
        client
            .send("MAIL FROM:<a@example.org> SIZE=99999999")
            .starts_with("552 ")
    );
    assert!(client.send("MAIL FROM:<a@example.org>").starts_with("250 "));
    assert!(client.send(&format!("RCPT TO:<{to}>")).starts_with("250 "));
    assert!(client.send("DATA").starts_with("354 "));
    let mut big = vec!["Subject: big".to_owned(), String::new()];
    big.extend(std::iter::repeat_n("y".repeat(998), 1100));
    big.push(".".to_owned());
    let big = big.join("\r\n");
    assert!(
        client.send(&big).starts_with("552 "),
        "an oversized message"
    );
    assert!(client.send("QUIT").starts_with("221 "));

    let messages = mailbox.messages(&to);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["from"], "a@example.org");
    assert_eq!(messages[0]["subject"], "Grüße");
    assert_eq!(messages[0]["code"], "04271993");
    assert_eq!(
        messages[0]["body"],
        "Ihr Aktivierungscode lautet: 04271993\n.a line that began with a dot\n"
    );
    assert_eq!(messages[0]["html"], "");
    assert!(mailbox.messages("dropped@example.com").is_empty());
}
