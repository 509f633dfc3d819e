//! The API's error type and its one JSON shape.
//!
//! Policy: every error answer is a JSON object with a `detail` key, using the
//! exact texts of the service this one replaces. Client mistakes are 4xx.
//! Failures of PostgreSQL or Redis are logged with their cause and answered
//! 503 with a generic text; nothing internal reaches the client. Only a bug
//! is a 500.

use std::time::Duration;

use std::borrow::Cow;

use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder, Response};
use rocket::serde::json::Json;
use rocket::{Request, catch};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::accounts::AccountError;
use crate::api::client::{self, Network};
use crate::limits::{Limit, retry_after_seconds};
use crate::quieted::{QUIET_FOR, Quieted};

/// `{"detail": "..."}`: the body of every answer but a 422 and the health
/// probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Detail {
    #[schema(value_type = String, example = "Activation email sent")]
    pub detail: Cow<'static, str>,
}

impl Detail {
    pub fn new(detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            detail: detail.into(),
        }
    }
}

/// A 422 body: `{"detail": [{"type": "...", "loc": [...], "msg": "...",
/// "input": ..., "ctx": {...}}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ValidationErrors {
    pub detail: Vec<FieldError>,
}

/// One entry of a 422 body, as pydantic writes it: its keys in this order,
/// `input` and `ctx` only where pydantic gives them.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    /// pydantic's error type: `missing`, `string_too_short`, `value_error`, …
    #[serde(rename = "type")]
    #[schema(example = "string_too_short")]
    pub kind: String,
    /// Where: `["body"]`, `["body", "email"]`, or `["body", 12]` for the
    /// character offset of a JSON syntax error.
    pub loc: Vec<LocPart>,
    #[schema(example = "String should have at least 8 characters")]
    pub msg: String,
    /// The offending value as received, of any JSON type (never a
    /// password).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value)]
    pub input: Option<Value>,
    /// The rule's parameters: `{"min_length": 8}`, `{"reason": "..."}`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub ctx: Option<Value>,
}

/// A step of a `loc` path: a name, or an offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LocPart {
    Name(String),
    Offset(usize),
}

impl FieldError {
    /// An error of `kind` at `loc` (names), without `input` or `ctx`.
    pub fn new(kind: &str, loc: &[&str], msg: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            loc: loc
                .iter()
                .map(|part| LocPart::Name((*part).to_owned()))
                .collect(),
            msg: msg.into(),
            input: None,
            ctx: None,
        }
    }

    pub fn input(mut self, input: Value) -> Self {
        self.input = Some(input);
        self
    }

    pub fn ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(ctx);
        self
    }
}

/// 503s for a full password-hash queue, said once in a while.
static BUSY: Quieted = Quieted::new(QUIET_FOR);

/// What the service depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Postgres,
    Redis,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A body that is not text in any encoding JSON allows.
    #[error("body could not be parsed")]
    BodyNotText,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("account already active")]
    AlreadyActive,
    #[error("activation code already issued")]
    CodeAlreadyIssued,
    #[error("invalid or expired activation code")]
    InvalidCode,
    #[error("rate limited")]
    RateLimited { limit: Limit, retry_after: Duration },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("busy")]
    Busy,
    /// A dependency failed; the cause is logged, not shown.
    #[error("{0:?} unavailable")]
    Unavailable(Dependency),
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> Status {
        match self {
            Self::Validation(_) => Status::UnprocessableEntity,
            Self::BodyNotText => Status::BadRequest,
            Self::InvalidCredentials => Status::Unauthorized,
            Self::AlreadyActive | Self::CodeAlreadyIssued => Status::Conflict,
            Self::InvalidCode => Status::BadRequest,
            Self::RateLimited { .. } => Status::TooManyRequests,
            Self::PayloadTooLarge => Status::PayloadTooLarge,
            Self::Busy | Self::Unavailable(_) => Status::ServiceUnavailable,
            Self::Internal => Status::InternalServerError,
        }
    }

    /// The `detail` text of every variant but `Validation`.
    fn detail(&self) -> &'static str {
        match self {
            Self::Validation(_) => "Validation error",
            Self::BodyNotText => "There was an error parsing the body",
            Self::InvalidCredentials => "Invalid authentication credentials",
            Self::AlreadyActive => "Account already active",
            Self::CodeAlreadyIssued => "Activation code already issued",
            Self::InvalidCode => "Invalid or expired activation code",
            Self::RateLimited { limit, .. } => match limit {
                // The original service's sentences (docs/COMPATIBILITY.md).
                Limit::ActivationAttempts
                | Limit::ActivationBudget
                | Limit::ActivationFailuresPerIp => {
                    "Too many activation attempts. Please try again later."
                }
                Limit::ResendPerMinute => {
                    "Too many resend requests. Please wait before trying again."
                }
                Limit::ResendDaily => "Daily resend limit reached. Please try again later.",
                // Limits it did not have, in the same style.
                Limit::AuthFailures | Limit::AuthFailuresCeiling | Limit::AuthFailuresPerIp => {
                    "Too many failed authentication attempts. Please try again later."
                }
                Limit::SignIns | Limit::SignInsPerIp => {
                    "Too many sign-ins. Please try again later."
                }
                Limit::RegisterPerIp => "Too many registration attempts. Please try again later.",
                Limit::HashQueuePerIp => "Too many requests in progress. Please try again later.",
                Limit::MailboxDaily | Limit::MailboxDailyTotal => {
                    "Too many activation emails to this address today. Please try again later."
                }
            },
            Self::PayloadTooLarge => "Request body too large",
            Self::Busy => "Server busy, try again shortly",
            Self::Unavailable(Dependency::Redis) => "Rate limiter unavailable, try again shortly",
            Self::Unavailable(Dependency::Postgres) => "Service temporarily unavailable",
            Self::Internal => "Internal server error",
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::AlreadyActive => Self::AlreadyActive,
            AccountError::CodeAlreadyIssued => Self::CodeAlreadyIssued,
            AccountError::InvalidCredentials | AccountError::UnknownUser(_) => {
                Self::InvalidCredentials
            }
            AccountError::InvalidCode => Self::InvalidCode,
            AccountError::RateLimited { limit, retry_after } => {
                Self::RateLimited { limit, retry_after }
            }
            AccountError::Busy => {
                // A flood repeats this thousands of times a second (and
                // `activator_password_hash_rejected_total` counts each).
                if let Some(requests) = BUSY.count() {
                    tracing::warn!(requests, "password hashing queue is full; answering 503");
                }
                Self::Busy
            }
            AccountError::Pool(err) => {
                tracing::error!(error = %err, "no database connection");
                Self::Unavailable(Dependency::Postgres)
            }
            AccountError::Database(err) => database(err),
            AccountError::Redis(err) => {
                tracing::error!(error = %err, "redis failed");
                Self::Unavailable(Dependency::Redis)
            }
            err @ AccountError::Hash(_) => {
                tracing::error!(error = %err, "request failed");
                Self::Internal
            }
        }
    }
}

/// A lost or refused connection is an outage (503); anything else is a bug.
fn database(err: diesel::result::Error) -> ApiError {
    if crate::db::is_connection_error(&err) {
        tracing::error!(error = %err, "database unavailable");
        ApiError::Unavailable(Dependency::Postgres)
    } else {
        tracing::error!(error = %err, "database query failed");
        ApiError::Internal
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let status = self.status();
        if let Self::RateLimited { limit, .. } = &self {
            crate::metrics::get().rate_limited(limit.as_str());
        }
        let header = match &self {
            Self::InvalidCredentials => Some(Header::new("WWW-Authenticate", "Basic")),
            Self::RateLimited { retry_after, .. } => Some(Header::new(
                "Retry-After",
                retry_after_seconds(*retry_after).to_string(),
            )),
            Self::Busy | Self::Unavailable(_) => Some(Header::new("Retry-After", "1")),
            _ => None,
        };
        let body = match self {
            Self::Validation(detail) => Json(ValidationErrors { detail }).respond_to(request)?,
            other => Json(Detail::new(other.detail())).respond_to(request)?,
        };
        let mut response = Response::build_from(body);
        response.status(status).header(ContentType::JSON);
        if let Some(header) = header {
            response.header(header);
        }
        response.ok()
    }
}

/// Marks a request Rocket could parse: it reached the request fairings.
/// Rocket answers a request it cannot parse (a method it does not know,
/// such as `QUERY` or `FOO`) with a 400 on a salvaged copy that has the
/// path but not the method; the catcher tells those apart by this mark.
pub struct Parsed;

/// A request for a known path with trailing slashes, which the original
/// answered with a 307 to the path without them (Rocket would route it to
/// the path's handler, ignoring empty segments).
struct TrailingSlashes(String);

/// A path no route has, where such a request is sent to meet the catcher.
const NO_ROUTE: &str = "/.trailing-slashes";

/// The fairing that sets [`Parsed`] and turns requests with trailing
/// slashes into 307s.
pub fn mark_parsed() -> rocket::fairing::AdHoc {
    rocket::fairing::AdHoc::on_request("parsed requests", |request, _| {
        Box::pin(async move {
            request.local_cache(|| Some(Parsed));
            if let Some(location) = trailing_slash_redirect(request)
                && let Ok(no_route) = rocket::http::uri::Origin::parse(NO_ROUTE)
            {
                request.local_cache(|| Some(TrailingSlashes(location)));
                request.set_uri(no_route);
            }
        })
    })
}

/// Where a request for a known path with trailing slashes is sent: the
/// path without them, with its query, absolute on the request's `Host` in
/// the scheme the client used (`client::Network::scheme`: a trusted
/// proxy's `X-Forwarded-Proto`), so a client that follows it never sends
/// its credentials in clear; relative when that scheme is not known.
fn trailing_slash_redirect(request: &Request<'_>) -> Option<String> {
    let path = request.uri().path();
    let stripped = path.as_str().trim_end_matches('/');
    if stripped.len() == path.as_str().len()
        || stripped.is_empty()
        || methods_of_path(request.rocket(), stripped).is_empty()
    {
        return None;
    }
    let query = request
        .uri()
        .query()
        .map(|query| format!("?{query}"))
        .unwrap_or_default();
    let headers = request.headers();
    let scheme = request
        .rocket()
        .state::<Network>()
        .map_or(Some("http"), |network| {
            let forwarded_for: Vec<&str> = headers.get("X-Forwarded-For").collect();
            network.scheme(
                client::peer(request),
                &forwarded_for,
                headers.get_one("X-Forwarded-Proto"),
            )
        });
    Some(match (scheme, headers.get_one("Host")) {
        (Some(scheme), Some(host)) => format!("{scheme}://{host}{stripped}{query}"),
        _ => format!("{stripped}{query}"),
    })
}

/// Every error Rocket answers by itself (no route, a failed guard, a panic)
/// gets the same JSON shape, as the original's router answered:
/// - a path that exists under other methods (or a method Rocket does not
///   know) is a 405 with `Allow` listing the path's methods;
/// - a known path with trailing slashes is a 307 to the path without them;
/// - anything else keeps its status, with its reason as `detail`.
#[catch(default)]
pub fn default_catcher(status: Status, request: &Request<'_>) -> CaughtError {
    if let Some(TrailingSlashes(location)) = request.local_cache(|| None::<TrailingSlashes>) {
        return CaughtError::Redirect(location.clone());
    }
    let unparsed = status == Status::BadRequest && request.local_cache(|| None::<Parsed>).is_none();
    if status != Status::NotFound && !unparsed {
        return CaughtError::Status(status);
    }
    let allowed = methods_of_path(request.rocket(), request.uri().path().as_str());
    if !allowed.is_empty() {
        return CaughtError::MethodNotAllowed(allowed);
    }
    if let Some(location) = trailing_slash_redirect(request) {
        return CaughtError::Redirect(location);
    }
    CaughtError::Status(Status::NotFound)
}

/// What the default catcher answers.
pub enum CaughtError {
    Status(Status),
    MethodNotAllowed(Vec<String>),
    /// A 307 to this location, with an empty body.
    Redirect(String),
}

impl<'r> Responder<'r, 'static> for CaughtError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let (status, allowed) = match self {
            Self::Redirect(location) => {
                return Response::build()
                    .status(Status::TemporaryRedirect)
                    .raw_header("Location", location)
                    .ok();
            }
            Self::Status(status) => (status, None),
            Self::MethodNotAllowed(allowed) => (Status::MethodNotAllowed, Some(allowed)),
        };
        let detail = Detail::new(status.reason().unwrap_or("Error"));
        let mut response = Response::build_from(Json(detail).respond_to(request)?);
        response.status(status);
        if let Some(allowed) = allowed {
            response.header(Header::new("Allow", allowed.join(", ")));
        }
        response.ok()
    }
}

/// The methods routes serve at `path`.
fn methods_of_path(rocket: &rocket::Rocket<rocket::Orbit>, path: &str) -> Vec<String> {
    let mut methods: Vec<String> = rocket
        .routes()
        .filter(|route| route.uri.path() == path)
        .map(|route| route.method.as_str().to_owned())
        .collect();
    methods.sort();
    methods.dedup();
    methods
}
