//! `/auth/register`, `/auth/resend`, `/auth/activate`.
//!
//! Handlers translate HTTP into calls of `crate::accounts` and results into
//! responses. Guards are taken as `Result`s so each handler checks in the
//! order the original service did: credentials, then the body.

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::serde::json::Json;
use rocket::{State, post};
use utoipa::ToSchema;

use crate::accounts::{AccountError, Accounts, Paced};
use crate::address::Email;
use crate::api::error::{ApiError, Detail, ValidationErrors};
use crate::api::request::{self, BasicAuth, Body, Check, Fields};
use crate::client_ip::ClientIp;
use crate::code::{Code, LONG_LENGTH, Malformed};
use crate::locale::{Locale, Locales};
use crate::metrics::{self, Activation, Registration, Resend};
use crate::password::Password;
use crate::policy::{PasswordPolicy, Refusal};

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
    /// Validates the body: the address, then the password under `policy`,
    /// one error each.
    fn read(body: &Body, policy: &PasswordPolicy) -> Result<Self, ApiError> {
        // A text body may be a form holding the password: not echoed.
        let mut fields = Fields::new(request::object(body, false)?, &["password"]);
        let email = fields.string("email").and_then(|raw| {
            let checked = match request::lone_surrogates(body, "email") {
                Some(surrogates) => Err(crate::address::refuse_surrogates(raw, surrogates)),
                None => crate::address::normalize(raw),
            };
            match checked {
                Ok(email) => Some(email),
                Err(err) => {
                    fields.invalid("email", raw, Check::Email(err.reason));
                    None
                }
            }
        });
        // The address as typed gives the strength estimate its words,
        // valid or not.
        let typed = match request::object(body, false) {
            Ok(object) => object.get("email").and_then(|e| e.as_str()).unwrap_or(""),
            Err(_) => "",
        };
        let password = fields.string("password").and_then(|raw| {
            // Python holds the surrogate; pydantic-core cannot read it as
            // a string.
            if request::lone_surrogates(body, "password").is_some() {
                fields.invalid("password", raw, Check::NotUnicode);
                return None;
            }
            match policy.check(raw, typed) {
                Ok(normalized) => Some(Password::new(normalized)),
                Err(refusal) => {
                    let check = match refusal {
                        Refusal::TooShort(min) => Check::TooShort(min),
                        Refusal::TooLong(max) => Check::TooLong(max),
                        Refusal::TooManyBytes(max) => Check::TooManyBytes(max),
                        Refusal::Rule(rule) => Check::Value(rule.sentence()),
                    };
                    fields.invalid("password", raw, check);
                    None
                }
            }
        });
        let (email, password) = fields.finish(email.zip(password))?;
        Ok(Self { email, password })
    }
}

/// The language of the account's emails: the client's `Accept-Language`
/// (all its header lines as one list) negotiated against the locales there
/// are templates for (see `crate::locale`). Never refuses a request.
pub struct EmailLocale(Locale);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for EmailLocale {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let lines: Vec<&str> = request.headers().get("Accept-Language").collect();
        let header = (!lines.is_empty()).then(|| lines.join(","));
        match request.rocket().state::<Locales>() {
            Some(locales) => Outcome::Success(Self(locales.negotiate(header.as_deref()))),
            None => Outcome::Forward(Status::InternalServerError),
        }
    }
}

/// The body of `POST /auth/activate`.
#[derive(ToSchema)]
pub struct ActivateRequest {
    #[schema(schema_with = request::code_schema)]
    pub code: Code,
}

impl ActivateRequest {
    /// Validates the body, for codes of `length` digits (or of
    /// [`LONG_LENGTH`], an inbox's long codes).
    fn read(body: &Body, length: usize) -> Result<Self, ApiError> {
        let mut fields = Fields::new(request::object(body, true)?, &[]);
        let code = fields.string("code").and_then(|raw| {
            match Code::parse(raw, length)
                .or_else(|malformed| Code::parse(raw, LONG_LENGTH).map_err(|_| malformed))
            {
                Ok(code) => Some(code),
                Err(malformed) => {
                    let check = match malformed {
                        Malformed::TooShort => Check::TooShort(length),
                        Malformed::TooLong => Check::TooLong(length),
                        Malformed::NotDigits => Check::Pattern(format!(r"^\d{{{length}}}$")),
                    };
                    fields.invalid("code", raw, check);
                    None
                }
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
    params(
        ("Accept-Language" = Option<String>, Header,
            description = "The language of the account's emails, this one and every later one: the first of the listed languages (by q-value) that has templates, a regional variant falling back to its language (`fr-CH` → `fr`); otherwise `DEFAULT_LOCALE`. Never a reason to refuse the request.",
            example = "fr-CH, fr;q=0.9, en;q=0.8"),
    ),
    responses(
        (status = 201, description = "Account created (or an expired pending registration started afresh), code emailed", body = Detail,
            example = json!({"detail": "Activation email sent"})),
        (status = 400, description = "The body is not text (`There was an error parsing the body`)", body = Detail),
        (status = 409, description = "`Account already active`, or `Activation code already issued` while the registration is pending", body = Detail),
        (status = 413, description = "The body is over the size limit (16 KiB)", body = Detail),
        (status = 422, description = "Invalid body: a list of field errors, as pydantic writes them", body = ValidationErrors),
        (status = 429, description = "A limit on registrations from this client, its places in the password-hash queue, or emails to this mailbox", body = Detail,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "A dependency is unavailable or the password-hash queue is full", body = Detail,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/auth/register", data = "<body>")]
pub async fn register(
    accounts: &State<Accounts>,
    client: ClientIp,
    locale: EmailLocale,
    body: Result<Body, ApiError>,
) -> Result<(Status, Json<Detail>), ApiError> {
    let result = async {
        let RegisterRequest { email, password } =
            RegisterRequest::read(&body?, accounts.password_policy())?;
        accounts
            .paced(
                Paced::Register,
                accounts.register(&email, &password, &locale.0, client),
            )
            .await
            .map_err(ApiError::from)
    }
    .await;
    metrics::get().registration(match &result {
        Ok(_) => Registration::Created,
        Err(ApiError::AlreadyActive | ApiError::CodeAlreadyIssued) => Registration::Conflict,
        Err(ApiError::RateLimited { .. }) => Registration::RateLimited,
        Err(err) if unavailable(err) => Registration::Unavailable,
        Err(_) => Registration::Invalid,
    });
    match result {
        // REGISTRATION_DISCLOSURE=hidden: a pending or active address is
        // answered as an unknown one (counted as what it was).
        Err(ApiError::AlreadyActive | ApiError::CodeAlreadyIssued)
            if accounts.hides_registrations() => {}
        other => other?,
    }
    Ok((Status::Created, Json(Detail::new("Activation email sent"))))
}

/// Whether `err` is the service's failure rather than the client's
/// request (the outcome `unavailable`).
fn unavailable(err: &ApiError) -> bool {
    matches!(
        err,
        ApiError::Busy | ApiError::Unavailable(_) | ApiError::Internal
    )
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
        (status = 401, description = "`Invalid authentication credentials`: no, malformed or wrong Basic credentials", body = Detail,
            headers(("WWW-Authenticate" = String, description = "`Basic`"))),
        (status = 409, description = "`Account already active`", body = Detail),
        (status = 429, description = "Resend limits (a minute, a day), failed sign-ins, the hash queue, or emails to this mailbox", body = Detail,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "A dependency is unavailable or the password-hash queue is full", body = Detail,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/auth/resend")]
pub async fn resend(
    accounts: &State<Accounts>,
    client: ClientIp,
    auth: Result<BasicAuth, ApiError>,
) -> Result<(Status, Json<Detail>), ApiError> {
    let result = async {
        let mut auth = auth?;
        auth.password = accounts.signing_in(auth.password);
        accounts
            .paced(Paced::Resend, async {
                let user = accounts
                    .authenticate(&auth.email, &auth.password, client)
                    .await?;
                accounts.resend(&user, &auth.password, client).await
            })
            .await
            .map_err(ApiError::from)
    }
    .await;
    metrics::get().resend(match &result {
        Ok(()) => Resend::Sent,
        Err(ApiError::RateLimited { .. }) => Resend::RateLimited,
        Err(ApiError::AlreadyActive) => Resend::AlreadyActive,
        Err(ApiError::InvalidCredentials) => Resend::Unauthorized,
        Err(_) => Resend::Unavailable,
    });
    result?;
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
        (status = 400, description = "`Invalid or expired activation code` (also for an account already active), or a body that is not text", body = Detail),
        (status = 401, description = "`Invalid authentication credentials`: no, malformed or wrong Basic credentials", body = Detail,
            headers(("WWW-Authenticate" = String, description = "`Basic`"))),
        (status = 413, description = "The body is over the size limit (16 KiB)", body = Detail),
        (status = 422, description = "Invalid body: a list of field errors, as pydantic writes them", body = ValidationErrors),
        (status = 429, description = "Locked out after failed activations, or the account's failure budget spent; failed sign-ins; the hash queue", body = Detail,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "A dependency is unavailable or the password-hash queue is full", body = Detail,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/auth/activate", data = "<body>")]
pub async fn activate(
    accounts: &State<Accounts>,
    client: ClientIp,
    auth: Result<BasicAuth, ApiError>,
    body: Result<Body, ApiError>,
) -> Result<Json<Detail>, ApiError> {
    let result = async {
        // The original's order: the body parsed, the credentials read, the
        // body validated, and only then the credentials checked.
        let body = body?;
        let mut auth = auth?;
        auth.password = accounts.signing_in(auth.password);
        let ActivateRequest { code } = ActivateRequest::read(&body, accounts.code_length())?;
        accounts
            .paced(Paced::Activate, async {
                let user = accounts
                    .authenticate(&auth.email, &auth.password, client)
                    .await?;
                accounts.activate(&user, &code, client).await
            })
            .await
            .map_err(|err| match err {
                // As the original: an active account has no valid code.
                AccountError::AlreadyActive => ApiError::InvalidCode,
                other => other.into(),
            })
    }
    .await;
    metrics::get().activation(match &result {
        Ok(()) => Activation::Activated,
        Err(ApiError::InvalidCode) => Activation::InvalidCode,
        Err(ApiError::RateLimited { .. }) => Activation::Locked,
        Err(ApiError::InvalidCredentials) => Activation::Unauthorized,
        Err(err) if unavailable(err) => Activation::Unavailable,
        Err(_) => Activation::Invalid,
    });
    result?;
    Ok(Json(Detail::new("Account activated")))
}
