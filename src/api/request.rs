//! Reading requests the way the original (FastAPI) service did, so clients
//! get the same answers in the same order:
//!
//! 1. the body is *parsed* ([`Body`]): a 400 for bytes that are not text, a
//!    422 `json_invalid` for malformed JSON;
//! 2. HTTP Basic credentials are read ([`BasicAuth`]): a 401;
//! 3. the body is *validated* into the operation's model ([`object`],
//!    [`Fields`]): a 422 listing, in the model's field order, the first
//!    failed check of each field, in pydantic's words.
//!
//! Handlers take the guards as `Result`s and check them in that order.

use rocket::data::{Data, FromData, Limits, Outcome};
use rocket::request::{self, FromRequest, Request};
use serde_json::{Map, Value, json};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::address::Email;
use crate::api::error::{ApiError, FieldError, LocPart};
use crate::compat::pyjson::{self, Quirk, QuirkKind};
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
            Some(auth) => request::Outcome::Success(auth),
            None => request::Outcome::Error((
                ApiError::InvalidCredentials.status(),
                ApiError::InvalidCredentials,
            )),
        }
    }
}

/// The longest address a Basic header may name.
const MAX_BASIC_EMAIL_CHARS: usize = 1024;

/// Every way Basic credentials can be wrong (none, another scheme, not
/// base64, no colon) is the one 401, as with the original.
fn parse_basic(header: Option<&str>) -> Option<BasicAuth> {
    use base64::Engine;
    let (scheme, encoded) = header?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    // No account has a control character in its address or password, and
    // PostgreSQL refuses a NUL in text: refuse them here, like any bad
    // credential.
    if decoded.chars().any(char::is_control) {
        return None;
    }
    let (email, password) = decoded.split_once(':')?;
    // No registered address is longer (254 bytes, plus what IDNA's mapping
    // drops): refused before it becomes a Redis key or a query.
    if email.trim().chars().count() > MAX_BASIC_EMAIL_CHARS {
        return None;
    }
    Some(BasicAuth {
        email: Email::canonical(email),
        password: Password::new(password),
    })
}

/// A request body as FastAPI read it, before validation.
#[derive(Debug)]
pub enum Body {
    /// No body at all (zero bytes, whatever the Content-Type).
    Absent,
    /// A body read as JSON (see [`reads_as_json`]), as Python's `json.loads`
    /// read it, with what `serde_json` could hold only approximately.
    Json(Value, Vec<Quirk>),
    /// A body of another Content-Type, as text.
    Text(String),
}

#[rocket::async_trait]
impl<'r> FromData<'r> for Body {
    type Error = ApiError;

    async fn from_data(request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r, Self> {
        match read_body(request, data).await {
            Ok(body) => Outcome::Success(body),
            Err(err) => Outcome::Error((err.status(), err)),
        }
    }
}

async fn read_body(request: &Request<'_>, data: Data<'_>) -> Result<Body, ApiError> {
    // `crate::figment` always sets a `json` limit; Rocket's default is the
    // fallback only for a Rocket built without it.
    let limit = request.limits().get("json").unwrap_or(Limits::JSON);
    let bytes = data.open(limit).into_bytes().await.map_err(|err| {
        tracing::debug!(error = %err, "request body could not be read");
        ApiError::BodyNotText
    })?;
    if !bytes.is_complete() {
        return Err(ApiError::PayloadTooLarge);
    }
    if bytes.is_empty() {
        return Ok(Body::Absent);
    }
    if !reads_as_json(request.headers().get_one("Content-Type")) {
        // The original could not echo non-UTF-8 text either (it answered
        // 500); here it is the 400 of a body that is not text.
        return String::from_utf8(bytes.into_inner())
            .map(Body::Text)
            .map_err(|_| ApiError::BodyNotText);
    }
    match pyjson::loads(&bytes) {
        Ok(parsed) => Ok(Body::Json(parsed.value, parsed.quirks)),
        Err(pyjson::Error::Decode(error)) => Err(ApiError::Validation(vec![FieldError {
            kind: "json_invalid".into(),
            loc: vec![LocPart::Name("body".into()), LocPart::Offset(error.pos)],
            msg: "JSON decode error".into(),
            input: Some(json!({})),
            ctx: Some(json!({ "error": error.msg })),
        }])),
        Err(_) => Err(ApiError::BodyNotText),
    }
}

/// FastAPI's rule: a body is JSON when its Content-Type is missing or empty,
/// or (up to any `;`, trimmed, lower-cased) is `application/json` or
/// `application/<anything>+json`. Only the first Content-Type header counts.
fn reads_as_json(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() {
        return true;
    }
    match essence.split_once('/') {
        Some(("application", subtype)) if !subtype.contains('/') => {
            subtype == "json" || subtype.ends_with("+json")
        }
        _ => false,
    }
}

/// The body as the object a model reads its fields from; otherwise the one
/// 422 item pydantic gave: `missing` for no body (or `null`),
/// `model_attributes_type` for anything else. `echo_text` says whether a
/// text body may be echoed (not where it may hold a password).
pub fn object(body: &Body, echo_text: bool) -> Result<&Map<String, Value>, ApiError> {
    let not_an_object = || {
        FieldError::new(
            "model_attributes_type",
            &["body"],
            "Input should be a valid dictionary or object to extract fields from",
        )
    };
    let error = match body {
        Body::Json(Value::Object(object), _) => return Ok(object),
        Body::Absent | Body::Json(Value::Null, _) => {
            FieldError::new("missing", &["body"], "Field required").input(Value::Null)
        }
        Body::Json(other, _) => not_an_object().input(other.clone()),
        Body::Text(text) if echo_text => not_an_object().input(Value::String(text.clone())),
        Body::Text(_) => not_an_object(),
    };
    Err(ApiError::Validation(vec![error]))
}

/// The lone UTF-16 surrogates that top-level string field `name` held
/// (Python keeps them in a `str`; here each is U+FFFD), if any.
pub fn lone_surrogates<'a>(body: &'a Body, name: &str) -> Option<&'a [u16]> {
    let Body::Json(_, quirks) = body else {
        return None;
    };
    quirks
        .iter()
        .find(|quirk| {
            quirk.kind == QuirkKind::LoneSurrogate
                && !quirk.surrogates.is_empty()
                && quirk.pointer.strip_prefix('/') == Some(name)
        })
        .map(|quirk| quirk.surrogates.as_slice())
}

/// Reads a model's fields from a body object, collecting one error per
/// field (its first failed check) in the order the fields are read.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    /// Fields whose value is never echoed, not even inside the whole body.
    secret: &'static [&'static str],
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(object: &'a Map<String, Value>, secret: &'static [&'static str]) -> Self {
        Self {
            object,
            secret,
            errors: Vec::new(),
        }
    }

    /// The body object as an error's `input`, secret fields left out.
    fn whole_body(&self) -> Value {
        Value::Object(
            self.object
                .iter()
                .filter(|(name, _)| !self.secret.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        )
    }

    /// `input` for an error of field `name`: its value, unless secret.
    fn echo(&self, name: &str, value: Value) -> Option<Value> {
        (!self.secret.contains(&name)).then_some(value)
    }

    /// The string field `name`, or `None` after recording why not
    /// (`missing`, or `string_type`: no coercion, as in the original).
    pub fn string(&mut self, name: &str) -> Option<&'a str> {
        match self.object.get(name) {
            Some(Value::String(value)) => Some(value),
            Some(other) => {
                let mut error = FieldError::new(
                    "string_type",
                    &["body", name],
                    "Input should be a valid string",
                );
                error.input = self.echo(name, other.clone());
                self.errors.push(error);
                None
            }
            None => {
                let error = FieldError::new("missing", &["body", name], "Field required")
                    .input(self.whole_body());
                self.errors.push(error);
                None
            }
        }
    }

    /// Records a failed check of field `name` whose value was `value`.
    pub fn invalid(&mut self, name: &str, value: &str, check: Check) {
        let (kind, msg, ctx) = check.describe();
        let mut error = FieldError::new(kind, &["body", name], msg);
        error.ctx = ctx;
        error.input = self.echo(name, Value::String(value.to_owned()));
        self.errors.push(error);
    }

    /// The fields read, or a 422 with every error recorded.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(ApiError::Validation(self.errors)),
        }
    }
}

/// A failed check of a string field, in pydantic's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Fewer characters than this.
    TooShort(usize),
    /// More characters than this.
    TooLong(usize),
    /// More UTF-8 bytes than this (bcrypt reads 72): not a check of the
    /// original's, which truncated silently.
    TooManyBytes(usize),
    Pattern(String),
    /// A validator's `ValueError`, its sentence.
    Value(std::borrow::Cow<'static, str>),
    /// An email address email-validator refused, its sentence.
    Email(String),
    /// A string Python holds but cannot encode: it has a lone surrogate
    /// (pydantic-core's `string_unicode`).
    NotUnicode,
}

impl Check {
    fn describe(&self) -> (&'static str, String, Option<Value>) {
        let (kind, msg, ctx) = match self {
            Self::TooShort(min) => (
                "string_too_short",
                format!("String should have at least {min} characters"),
                json!({ "min_length": min }),
            ),
            Self::TooLong(max) => (
                "string_too_long",
                format!("String should have at most {max} characters"),
                json!({ "max_length": max }),
            ),
            Self::TooManyBytes(max) => (
                "string_too_long",
                format!("String should have at most {max} bytes"),
                json!({ "max_length": max }),
            ),
            Self::Pattern(pattern) => (
                "string_pattern_mismatch",
                format!("String should match pattern '{pattern}'"),
                json!({ "pattern": pattern }),
            ),
            Self::Value(sentence) => (
                "value_error",
                format!("Value error, {sentence}"),
                // pydantic's encoding of the ValueError itself.
                json!({ "error": {} }),
            ),
            Self::Email(reason) => (
                "value_error",
                format!("value is not a valid email address: {reason}"),
                json!({ "reason": reason }),
            ),
            Self::NotUnicode => {
                let msg =
                    "Input should be a valid string, unable to parse raw data as a unicode string";
                return ("string_unicode", msg.to_owned(), None);
            }
        };
        (kind, msg, Some(ctx))
    }
}

/// The schema of a password field under the default policy; the served
/// document has the policy in force (see `api::docs`).
pub fn password_schema() -> Object {
    password_schema_of(&crate::policy::PasswordPolicy::default())
}

/// The schema of a password field under `policy`: its bounds, its rules
/// as a pattern and in words. The 72-byte limit is in the description: a
/// schema cannot count bytes.
pub fn password_schema_of(policy: &crate::policy::PasswordPolicy) -> Object {
    let rules = &policy.rules;
    let mut description = rules.describe();
    if let Some(list) = &policy.denylist {
        description.push_str(&format!(
            "; not one of the {} passwords of a list of breached ones",
            list.entries()
        ));
    }
    if policy.min_strength > 0 {
        description.push_str(&format!(
            "; a zxcvbn strength score of at least {} of 4, the address's own words counted as guessable",
            policy.min_strength
        ));
    }
    description.push('.');
    let example = if rules.character_classes {
        "Secr3t!pass"
    } else {
        "correct horse battery staple"
    };
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(rules.min_length))
        .max_length(Some(rules.max_length))
        .pattern(rules.pattern())
        .description(Some(description))
        .examples([example])
        .build()
}

/// The schema of an activation code field, for the default length; the
/// served document has the configured one (see `api::docs`).
pub fn code_schema() -> Object {
    code_schema_of(4)
}

/// The schema of an activation code field of `length` digits.
pub fn code_schema_of(length: usize) -> Object {
    use crate::code::LONG_LENGTH;
    let (pattern, longest, also) = if length < LONG_LENGTH {
        (
            format!(r"^(\d{{{length}}}|\d{{{LONG_LENGTH}}})$"),
            LONG_LENGTH,
            format!(
                ", or the {LONG_LENGTH}-digit one mailed once the address's inbox has spent its budget of wrong codes (docs/LIMITS.md)"
            ),
        )
    } else {
        (format!(r"^\d{{{length}}}$"), length, String::new())
    };
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(length))
        .max_length(Some(longest))
        .pattern(Some(pattern))
        .description(Some(format!(
            "The {length}-digit code from the email{also} (digits of other scripts are read as ASCII digits)."
        )))
        .examples([&"0427153".repeat(2)[..length]])
        .build()
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
        assert!(parse_basic(Some(&format!("basic  {}", &basic("a@b.co:x")[6..]))).is_some());
    }

    #[test]
    fn every_malformed_authorization_is_refused_alike() {
        for header in [
            None,
            Some(""),
            Some("Basic"),
            Some("Basic "),
            Some("Bearer abc"),
            Some("Basic !!!"),
            Some("Basic bm9jb2xvbg=="),
            Some("Basic /w=="),
        ] {
            assert!(parse_basic(header).is_none(), "{header:?}");
        }
    }

    #[test]
    fn an_address_longer_than_any_account_is_refused() {
        let long = format!("{}@example.com", "a".repeat(MAX_BASIC_EMAIL_CHARS));
        assert!(parse_basic(Some(&basic(&format!("{long}:Secr3t!pass")))).is_none());
        let longest = format!("{}@b.co", "a".repeat(MAX_BASIC_EMAIL_CHARS - 5));
        assert!(parse_basic(Some(&basic(&format!("{longest}:Secr3t!pass")))).is_some());
    }

    #[test]
    fn control_characters_in_credentials_are_refused() {
        for byte in (0u8..0x20).chain([0x7f]) {
            let c = char::from(byte);
            for raw in [
                format!("a{c}b@x.com:Secr3t!pass"),
                format!("a@x.com:Secr3t!{c}pass"),
            ] {
                assert!(parse_basic(Some(&basic(&raw))).is_none(), "{byte:#04x}");
            }
        }
        assert!(parse_basic(Some(&basic("a@x.com:Secr3t!\u{85}pass"))).is_none());
    }

    #[test]
    fn content_types_read_as_json_follow_fastapi() {
        for (content_type, json) in [
            (None, true),
            (Some(""), true),
            (Some("application/json"), true),
            (Some("Application/JSON; charset=utf-8"), true),
            (Some("application/json;"), true),
            (Some("application/vnd.x+json"), true),
            (Some("application/+json"), true),
            (Some("text/plain"), false),
            (Some("application/jsonx"), false),
            (Some("application/json+x"), false),
            (Some("text/json"), false),
            (Some("application/x-json"), false),
            (Some("application / json"), false),
            (Some("application/json, text/plain"), false),
            (Some("*/*"), false),
        ] {
            assert_eq!(reads_as_json(content_type), json, "{content_type:?}");
        }
    }

    #[test]
    fn errors_keep_pydantics_key_order_and_leave_secrets_out() {
        let object = json!({"password": "Secr3t!pass", "zeta": 1})
            .as_object()
            .unwrap()
            .clone();
        let mut fields = Fields::new(&object, &["password"]);
        assert_eq!(fields.string("email"), None);
        fields.invalid("password", "Secr3t!pass", Check::TooShort(20));
        let Err(ApiError::Validation(errors)) = fields.finish(None::<()>) else {
            panic!("no errors");
        };
        assert_eq!(
            serde_json::to_string(&errors).unwrap(),
            r#"[{"type":"missing","loc":["body","email"],"msg":"Field required","input":{"zeta":1}},{"type":"string_too_short","loc":["body","password"],"msg":"String should have at least 20 characters","ctx":{"min_length":20}}]"#
        );
    }
}
