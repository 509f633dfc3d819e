//! `/auth/register`, `/auth/resend`, `/auth/activate`.
//!
//! Handlers translate HTTP into calls of `crate::accounts` and results into
//! responses. Guards are taken as `Result`s so each handler checks in the
//! order the original service did: credentials, then the body.

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{State, post};
use utoipa::ToSchema;

use crate::accounts::Accounts;
use crate::address::Email;
use crate::api::error::{ApiError, Detail, ValidationErrors};
use crate::api::request::{self, BasicAuth, Fields, JsonObject};
use crate::code::{Code, Malformed};
use crate::limits::ClientIp;
use crate::password::{self, Password};

/// The body of `POST /auth/register`.
#[derive(ToSchema)]
pub struct RegisterRequest {
    /// Compared case-insensitively; surrounding spaces are ignored.
    #[schema(value_type = String, format = Email, example = "ada@example.com")]
    pub email: Email,
    #[schema(schema_with = request::password_schema)]
    pub password: Password,
}

impl RegisterRequest {
    /// Reads and validates the body, reporting every bad field at once.
    fn read(body: &JsonObject) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let email = fields
            .string("email")
            .and_then(|raw| match crate::address::normalize(raw) {
                Ok(email) => Some(email),
                Err(err) => {
                    fields.invalid("email", err.to_string(), "value_error");
                    None
                }
            });
        let password =
            fields
                .string("password")
                .and_then(|raw| match password::check_policy(raw) {
                    Ok(()) => Some(Password::new(raw)),
                    Err(msg) => {
                        fields.invalid("password", format!("Value error, {msg}"), "value_error");
                        None
                    }
                });
        let (email, password) = fields.finish(email.zip(password))?;
        Ok(Self { email, password })
    }
}

/// The body of `POST /auth/activate`.
#[derive(ToSchema)]
pub struct ActivateRequest {
    #[schema(schema_with = request::code_schema)]
    pub code: Code,
}

impl ActivateRequest {
    /// Reads and validates the body, for codes of `length` digits.
    fn read(body: &JsonObject, length: usize) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let code = fields
            .string("code")
            .and_then(|raw| match Code::parse(raw, length) {
                Ok(code) => Some(code),
                Err(malformed) => {
                    let (msg, kind) = match malformed {
                        Malformed::TooShort => (
                            format!("String should have at least {length} characters"),
                            "string_too_short",
                        ),
                        Malformed::TooLong => (
                            format!("String should have at most {length} characters"),
                            "string_too_long",
                        ),
                        Malformed::NotDigits => (
                            format!(r"String should match pattern '^\d{{{length}}}$'"),
                            "string_pattern_mismatch",
                        ),
                    };
                    fields.invalid("code", msg, kind);
                    None
                }
            });
        Ok(Self {
            code: fields.finish(code)?,
        })
    }
}

/// Register an account; the activation code is emailed.
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created, code emailed", body = Detail,
            example = json!({"detail": "Activation email sent"})),
        (status = 409, description = "`Account already active` or `Activation code already issued`", body = Detail),
        (status = 422, description = "Invalid body (FastAPI-style list of field errors)", body = ValidationErrors),
        (status = 429, description = "A limit on registrations from this client or emails to this mailbox; see `Retry-After`", body = Detail),
        (status = 503, description = "A dependency is unavailable or the server is saturated", body = Detail),
    )
)]
#[post("/auth/register", data = "<body>")]
pub async fn register(
    accounts: &State<Accounts>,
    client: ClientIp,
    body: Result<JsonObject, ApiError>,
) -> Result<(Status, Json<Detail>), ApiError> {
    let RegisterRequest { email, password } = RegisterRequest::read(&body?)?;
    accounts.register(&email, &password, client).await?;
    Ok((Status::Created, Json(Detail::new("Activation email sent"))))
}

/// Send a new activation code, superseding the previous one.
#[utoipa::path(
    post,
    path = "/auth/resend",
    tag = "auth",
    security(("basic" = [])),
    responses(
        (status = 202, description = "New code emailed", body = Detail,
            example = json!({"detail": "Activation email resent"})),
        (status = 401, description = "Invalid authentication credentials", body = Detail),
        (status = 409, description = "Account already active", body = Detail),
        (status = 429, description = "Resend limit reached; see `Retry-After`", body = Detail),
        (status = 503, description = "A dependency is unavailable", body = Detail),
    )
)]
#[post("/auth/resend")]
pub async fn resend(
    accounts: &State<Accounts>,
    client: ClientIp,
    auth: Result<BasicAuth, ApiError>,
) -> Result<(Status, Json<Detail>), ApiError> {
    let auth = auth?;
    let user = accounts
        .authenticate(&auth.email, &auth.password, client)
        .await?;
    accounts.resend(&user).await?;
    Ok((
        Status::Accepted,
        Json(Detail::new("Activation email resent")),
    ))
}

/// Activate the account with the emailed code.
#[utoipa::path(
    post,
    path = "/auth/activate",
    tag = "auth",
    security(("basic" = [])),
    request_body = ActivateRequest,
    responses(
        (status = 200, description = "Account activated", body = Detail,
            example = json!({"detail": "Account activated"})),
        (status = 400, description = "Invalid or expired activation code", body = Detail),
        (status = 401, description = "Invalid authentication credentials", body = Detail),
        (status = 409, description = "Account already active", body = Detail),
        (status = 422, description = "Invalid body", body = ValidationErrors),
        (status = 429, description = "Locked out after too many failed attempts; see `Retry-After`", body = Detail),
        (status = 503, description = "A dependency is unavailable", body = Detail),
    )
)]
#[post("/auth/activate", data = "<body>")]
pub async fn activate(
    accounts: &State<Accounts>,
    client: ClientIp,
    auth: Result<BasicAuth, ApiError>,
    body: Result<JsonObject, ApiError>,
) -> Result<Json<Detail>, ApiError> {
    let auth = auth?;
    let user = accounts
        .authenticate(&auth.email, &auth.password, client)
        .await?;
    let ActivateRequest { code } = ActivateRequest::read(&body?, accounts.code_length)?;
    accounts.activate(&user, &code).await?;
    Ok(Json(Detail::new("Account activated")))
}
