//! Reading requests the way the original (FastAPI) service did: HTTP Basic
//! credentials, and JSON bodies validated into FastAPI-shaped 422 errors.

use rocket::data::{Data, FromData, Limits, Outcome};
use rocket::request::{self, FromRequest, Request};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::address::Email;
use crate::api::error::{ApiError, FieldError, LocPart};
use crate::password::Password;

/// HTTP Basic credentials: the email and password of `Authorization: Basic`.
/// The address is normalized, not validated, so an account stored under
/// older validation rules can still sign in.
#[derive(Debug)]
pub struct BasicAuth {
    pub email: Email,
    pub password: Password,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for BasicAuth {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> request::Outcome<Self, ApiError> {
        match parse_basic(request.headers().get_one("Authorization")) {
            Ok(auth) => request::Outcome::Success(auth),
            Err(err) => request::Outcome::Error((err.status(), err)),
        }
    }
}

/// No header is "Not authenticated"; a header that is not valid Basic
/// credentials is "Invalid authentication credentials" (as FastAPI's
/// `HTTPBasic` answers).
fn parse_basic(header: Option<&str>) -> Result<BasicAuth, ApiError> {
    use base64::Engine;
    let header = header.ok_or(ApiError::NotAuthenticated)?;
    let (scheme, encoded) = header
        .trim()
        .split_once(' ')
        .ok_or(ApiError::NotAuthenticated)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::NotAuthenticated);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ApiError::InvalidCredentials)?;
    let decoded = String::from_utf8(decoded).map_err(|_| ApiError::InvalidCredentials)?;
    // No account has a control character in its address or password, and
    // PostgreSQL refuses a NUL in text: refuse them here, like any bad
    // credential.
    if decoded.chars().any(char::is_control) {
        return Err(ApiError::InvalidCredentials);
    }
    let (email, password) = decoded
        .split_once(':')
        .ok_or(ApiError::InvalidCredentials)?;
    Ok(BasicAuth {
        email: Email::canonical(email),
        password: Password::new(password),
    })
}

/// A request body that is a JSON object, read within the `json` limit.
///
/// Like FastAPI: a body is parsed as JSON when its Content-Type is absent,
/// `application/json` or `application/*+json`; anything else, invalid JSON,
/// a missing body or a non-object body is a 422. Over the limit is a 413.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

#[rocket::async_trait]
impl<'r> FromData<'r> for JsonObject {
    type Error = ApiError;

    async fn from_data(request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r, Self> {
        match read_object(request, data).await {
            Ok(object) => Outcome::Success(object),
            Err(err) => Outcome::Error((err.status(), err)),
        }
    }
}

async fn read_object(request: &Request<'_>, data: Data<'_>) -> Result<JsonObject, ApiError> {
    let is_json = match request.content_type() {
        None => true,
        Some(content_type) => {
            content_type.top() == "application"
                && (content_type.sub() == "json" || content_type.sub().as_str().ends_with("+json"))
        }
    };
    // `crate::figment` always sets a `json` limit; Rocket's default is the
    // fallback only for a Rocket built without it.
    let limit = request.limits().get("json").unwrap_or(Limits::JSON);
    let bytes = data.open(limit).into_bytes().await.map_err(|err| {
        tracing::debug!(error = %err, "request body could not be read");
        ApiError::Validation(vec![FieldError::new(
            &["body"],
            "Request body could not be read",
            "body_read",
        )])
    })?;
    if !bytes.is_complete() {
        return Err(ApiError::PayloadTooLarge);
    }
    if !is_json {
        return Err(ApiError::Validation(vec![FieldError::new(
            &["body"],
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        )]));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Validation(vec![FieldError::new(
            &["body"],
            "Field required",
            "missing",
        )]));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(JsonObject(object)),
        Ok(_) => Err(ApiError::Validation(vec![FieldError::new(
            &["body"],
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        )])),
        Err(err) => Err(ApiError::Validation(vec![FieldError {
            loc: vec![LocPart::Name("body".into()), LocPart::Offset(err.column())],
            msg: "JSON decode error".into(),
            kind: "json_invalid".into(),
        }])),
    }
}

/// The schema of a password field, from the policy's own bounds and words.
pub fn password_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(crate::password::MIN_LENGTH))
        .max_length(Some(crate::password::MAX_LENGTH))
        .description(Some(crate::password::POLICY))
        .examples(["Secr3t!pass"])
        .build()
}

/// The schema of an activation code field, for the default length; the
/// served document has the configured one (see `api::docs`).
pub fn code_schema() -> Object {
    code_schema_of(4)
}

/// The schema of an activation code field of `length` digits.
pub fn code_schema_of(length: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(length))
        .max_length(Some(length))
        .pattern(Some(format!(r"^\d{{{length}}}$")))
        .description(Some(format!(
            "The {length}-digit code from the email (digits of other scripts are read as ASCII digits)."
        )))
        .examples([&"0427153".repeat(2)[..length]])
        .build()
}

/// Collects field errors while reading a body, so a client learns about every
/// bad field at once.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(object: &'a JsonObject) -> Self {
        Self {
            object: &object.0,
            errors: Vec::new(),
        }
    }

    /// The string field `name`, or `None` after recording why not.
    pub fn string(&mut self, name: &str) -> Option<&'a str> {
        match self.object.get(name) {
            Some(Value::String(value)) => Some(value),
            Some(_) => {
                self.errors.push(FieldError::new(
                    &["body", name],
                    "Input should be a valid string",
                    "string_type",
                ));
                None
            }
            None => {
                self.errors.push(FieldError::new(
                    &["body", name],
                    "Field required",
                    "missing",
                ));
                None
            }
        }
    }

    /// Records a failed check of field `name`.
    pub fn invalid(&mut self, name: &str, msg: impl Into<String>, kind: &str) {
        self.errors
            .push(FieldError::new(&["body", name], msg, kind));
    }

    /// The fields read, or a 422 with every error recorded.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(ApiError::Validation(self.errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn basic(raw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let auth = parse_basic(Some(&basic("a@example.com:pa:ss"))).unwrap();
        assert_eq!(auth.email.as_str(), "a@example.com");
        assert_eq!(auth.password.as_str(), "pa:ss");
    }

    #[test]
    fn a_missing_header_or_other_scheme_is_not_authenticated() {
        assert!(matches!(parse_basic(None), Err(ApiError::NotAuthenticated)));
        assert!(matches!(
            parse_basic(Some("Bearer abc")),
            Err(ApiError::NotAuthenticated)
        ));
        assert!(matches!(
            parse_basic(Some("Basic")),
            Err(ApiError::NotAuthenticated)
        ));
    }

    #[test]
    fn control_characters_in_credentials_are_invalid() {
        for byte in (0u8..0x20).chain([0x7f]) {
            let c = char::from(byte);
            for raw in [
                format!("a{c}b@x.com:Secr3t!pass"),
                format!("a@x.com:Secr3t!{c}pass"),
            ] {
                assert!(
                    matches!(
                        parse_basic(Some(&basic(&raw))),
                        Err(ApiError::InvalidCredentials)
                    ),
                    "{byte:#04x}"
                );
            }
        }
        assert!(parse_basic(Some(&basic("a@x.com:Secr3t!\u{85}pass"))).is_err());
    }

    #[test]
    fn garbage_credentials_are_invalid() {
        for header in ["Basic !!!", "Basic bm9jb2xvbg==", "Basic /w=="] {
            assert!(
                matches!(parse_basic(Some(header)), Err(ApiError::InvalidCredentials)),
                "{header}"
            );
        }
    }
}
