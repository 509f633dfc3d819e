//! One way to speak to the service, whichever form runs it: the app in
//! process ([`TestApp`](super::TestApp), Rocket's local client) or the real
//! binary ([`Server`](super::Server)). Both answer a [`Call`] with a
//! [`Reply`], so a test reads the same against either, and asserts with
//! the same words (`Reply::assert_detail`, `exactly`, `assert_limited`).
//!
//! A call made *from* a client (`Call::from`) comes from that client's
//! address: the socket's peer in process, a trusted proxy's
//! `X-Forwarded-For` against the binary (loopback is a trusted proxy by
//! default).

use std::future::Future;

use rocket::http::Method;
use serde_json::{Value, json};

use super::Reply;

/// A request as a test sends it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// The client's address, if not the default one.
    pub client: Option<String>,
}

impl Call {
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
            client: None,
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new(Method::Get, path)
    }

    pub fn post(path: &str) -> Self {
        Self::new(Method::Post, path)
    }

    /// `body` as JSON, with its content type.
    pub fn json(self, body: &Value) -> Self {
        self.header("Content-Type", "application/json")
            .body(body.to_string())
    }

    /// The raw body `body`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// HTTP Basic credentials.
    pub fn basic(self, user: &str, password: &str) -> Self {
        self.header(
            "Authorization",
            &super::basic_value(format!("{user}:{password}").as_bytes()),
        )
    }

    /// From the client at `client` (an address).
    pub fn from(mut self, client: &str) -> Self {
        self.client = Some(client.to_owned());
        self
    }
}

/// The service, as a test speaks to it.
pub trait Api: Sync {
    /// Sends `call` and reads the answer whole.
    fn send(&self, call: Call) -> impl Future<Output = Reply> + Send;

    fn get(&self, path: &str) -> impl Future<Output = Reply> + Send {
        self.send(Call::get(path))
    }

    /// POSTs `body` as JSON, with optional Basic credentials.
    fn post_json(
        &self,
        path: &str,
        body: &Value,
        auth: Option<(&str, &str)>,
    ) -> impl Future<Output = Reply> + Send {
        let call = Call::post(path).json(body);
        self.send(match auth {
            Some((user, password)) => call.basic(user, password),
            None => call,
        })
    }

    fn register(&self, email: &str, password: &str) -> impl Future<Output = Reply> + Send {
        self.send(registration(email, password))
    }

    fn register_from(
        &self,
        client: &str,
        email: &str,
        password: &str,
    ) -> impl Future<Output = Reply> + Send {
        self.send(registration(email, password).from(client))
    }

    fn resend(&self, email: &str, password: &str) -> impl Future<Output = Reply> + Send {
        self.send(Call::post("/auth/resend").basic(email, password))
    }

    fn resend_from(
        &self,
        client: &str,
        email: &str,
        password: &str,
    ) -> impl Future<Output = Reply> + Send {
        self.send(
            Call::post("/auth/resend")
                .basic(email, password)
                .from(client),
        )
    }

    fn activate(
        &self,
        email: &str,
        password: &str,
        code: &str,
    ) -> impl Future<Output = Reply> + Send {
        self.send(activation(email, password, code))
    }

    fn activate_from(
        &self,
        client: &str,
        email: &str,
        password: &str,
        code: &str,
    ) -> impl Future<Output = Reply> + Send {
        self.send(activation(email, password, code).from(client))
    }
}

fn registration(email: &str, password: &str) -> Call {
    Call::post("/auth/register").json(&json!({"email": email, "password": password}))
}

fn activation(email: &str, password: &str, code: &str) -> Call {
    Call::post("/auth/activate")
        .json(&json!({ "code": code }))
        .basic(email, password)
}
