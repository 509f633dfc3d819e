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
use utoipa::ToSchema;

use crate::accounts::AccountError;
use crate::limits::{Limit, retry_after_seconds};

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

/// A 422 body: `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ValidationErrors {
    pub detail: Vec<FieldError>,
}

/// One entry of a FastAPI-style 422 body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where: `["body"]`, `["body", "email"]`, or `["body", 12]` for the
    /// character offset of a JSON syntax error.
    pub loc: Vec<LocPart>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A step of a `loc` path: a name, or an offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LocPart {
    Name(String),
    Offset(usize),
}

impl FieldError {
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc: loc
                .iter()
                .map(|part| LocPart::Name((*part).to_owned()))
                .collect(),
            msg: msg.into(),
            kind: kind.to_owned(),
        }
    }
}

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
    #[error("not authenticated")]
    NotAuthenticated,
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
            Self::NotAuthenticated | Self::InvalidCredentials => Status::Unauthorized,
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
            Self::NotAuthenticated => "Not authenticated",
            Self::InvalidCredentials => "Invalid authentication credentials",
            Self::AlreadyActive => "Account already active",
            Self::CodeAlreadyIssued => "Activation code already issued",
            Self::InvalidCode => "Invalid or expired activation code",
            Self::RateLimited { limit, .. } => match limit {
                // The original service's sentences (COMPAT.md).
                Limit::ActivationAttempts | Limit::ActivationBudget => {
                    "Too many activation attempts. Please try again later."
                }
                Limit::ResendPerMinute => {
                    "Too many resend requests. Please wait before trying again."
                }
                Limit::ResendDaily => "Daily resend limit reached. Please try again later.",
                // Limits it did not have, in the same style.
                Limit::AuthFailures | Limit::AuthFailuresPerIp => {
                    "Too many failed authentication attempts. Please try again later."
                }
                Limit::RegisterPerIp => "Too many registration attempts. Please try again later.",
                Limit::HashQueuePerIp => "Too many requests in progress. Please try again later.",
                Limit::MailboxDaily => {
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
                tracing::warn!("password hashing queue is full; answering 503");
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
        let header = match &self {
            Self::NotAuthenticated | Self::InvalidCredentials => {
                Some(Header::new("WWW-Authenticate", "Basic"))
            }
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

/// Every error Rocket answers by itself (no route, a failed guard, a panic)
/// gets the same JSON shape. A path that exists under other methods is a 405
/// with `Allow` listing them, as clients of the original service expect.
#[catch(default)]
pub fn default_catcher(status: Status, request: &Request<'_>) -> CaughtError {
    let allowed = if status == Status::NotFound {
        methods_of_path(request)
    } else {
        Vec::new()
    };
    let status = if allowed.is_empty() {
        status
    } else {
        Status::MethodNotAllowed
    };
    CaughtError { status, allowed }
}

/// What the default catcher answers.
pub struct CaughtError {
    status: Status,
    allowed: Vec<String>,
}

impl<'r> Responder<'r, 'static> for CaughtError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let detail = Detail::new(self.status.reason().unwrap_or("Error"));
        let mut response = Response::build_from(Json(detail).respond_to(request)?);
        response.status(self.status);
        if !self.allowed.is_empty() {
            response.header(Header::new("Allow", self.allowed.join(", ")));
        }
        response.ok()
    }
}

/// The methods routes serve at the request's path.
fn methods_of_path(request: &Request<'_>) -> Vec<String> {
    let path = request.uri().path();
    let mut methods: Vec<String> = request
        .rocket()
        .routes()
        .filter(|route| route.uri.path() == path.as_str())
        .map(|route| route.method.as_str().to_owned())
        .collect();
    methods.sort();
    methods.dedup();
    methods
}
