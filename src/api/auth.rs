//! `/auth/register`, `/auth/resend`, `/auth/activate`.
//!
//! Handlers translate HTTP into calls of `crate::accounts` and results into
//! responses. Guards are taken as `Result`s so each handler checks in the
//! order the original service did: credentials, then the body.

use rocket::http::Status;
use rocket::serde::json::{Json, Value, json};
use rocket::{State, post};
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::Accounts;
use crate::api::error::ApiError;
use crate::api::request::{BasicAuth, Fields, JsonObject};
use crate::codes::Code;
use crate::db::Pool;
use crate::password::{self, Password};

/// `{"detail": "..."}`, the body of every answer here.
#[derive(Serialize, ToSchema)]
pub struct Detail {
    #[schema(example = "Activation email sent")]
    pub detail: String,
}

/// The body of `POST /auth/register`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RegisterRequest {
    /// Compared case-insensitively; surrounding spaces are ignored.
    #[schema(example = "ada@example.com", format = "email")]
    email: String,
    /// 8–72 bytes (not characters), no whitespace, with a lowercase and an
    /// uppercase letter, a digit and a special character.
    #[schema(
        example = "Secr3t!pass",
        min_length = 8,
        max_length = 72,
        pattern = r"^(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])(?=.*[^A-Za-z0-9])\S{8,72}$"
    )]
    password: String,
}

/// The body of `POST /auth/activate`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ActivateRequest {
    /// The 4-digit code from the email.
    #[schema(example = "0427", pattern = r"^\d{4}$")]
    code: String,
}

fn detail(status: Status, text: &str) -> (Status, Json<Value>) {
    (status, Json(json!({ "detail": text })))
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
        (status = 422, description = "Invalid body (FastAPI-style list of field errors)", body = crate::api::docs::ValidationErrors),
        (status = 503, description = "A dependency is unavailable or the server is saturated", body = Detail),
    )
)]
#[post("/auth/register", data = "<body>")]
pub async fn register(
    accounts: &State<Accounts>,
    pool: &State<Pool>,
    body: Result<JsonObject, ApiError>,
) -> Result<(Status, Json<Value>), ApiError> {
    let body = body?;
    let mut fields = Fields::new(&body);
    let email = fields
        .string("email")
        .and_then(|raw| match crate::email::normalize(raw) {
            Ok(email) => Some(email),
            Err(err) => {
                fields.invalid("email", err.to_string(), "value_error");
                None
            }
        });
    let password = fields
        .string("password")
        .and_then(|raw| match password::check_policy(raw) {
            Ok(()) => Some(Password::new(raw)),
            Err(msg) => {
                fields.invalid("password", format!("Value error, {msg}"), "value_error");
                None
            }
        });
    let (email, password) = fields.finish(email.zip(password))?;
    accounts.register(pool, &email, &password).await?;
    Ok(detail(Status::Created, "Activation email sent"))
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
    pool: &State<Pool>,
    auth: Result<BasicAuth, ApiError>,
) -> Result<(Status, Json<Value>), ApiError> {
    let auth = auth?;
    let user = accounts
        .authenticate(pool, &auth.email, &auth.password)
        .await?;
    accounts.resend(pool, &user).await?;
    Ok(detail(Status::Accepted, "Activation email resent"))
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
        (status = 422, description = "Invalid body", body = crate::api::docs::ValidationErrors),
        (status = 429, description = "Locked out after too many failed attempts; see `Retry-After`", body = Detail),
        (status = 503, description = "A dependency is unavailable", body = Detail),
    )
)]
#[post("/auth/activate", data = "<body>")]
pub async fn activate(
    accounts: &State<Accounts>,
    pool: &State<Pool>,
    auth: Result<BasicAuth, ApiError>,
    body: Result<JsonObject, ApiError>,
) -> Result<(Status, Json<Value>), ApiError> {
    let auth = auth?;
    let user = accounts
        .authenticate(pool, &auth.email, &auth.password)
        .await?;
    let body = body?;
    let mut fields = Fields::new(&body);
    let code = fields.string("code").and_then(|raw| {
        let code = Code::parse(raw);
        if code.is_none() {
            fields.invalid(
                "code",
                r"String should match pattern '^\d{4}$'",
                "string_pattern_mismatch",
            );
        }
        code
    });
    let code = fields.finish(code)?;
    accounts.activate(pool, &user, &code).await?;
    Ok(detail(Status::Ok, "Account activated"))
}
