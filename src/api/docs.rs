//! API documentation: the OpenAPI document generated from the handlers'
//! annotations, and the Scalar UI, served from assets compiled into the
//! binary so it works without internet access.

use rocket::http::ContentType;
use rocket::response::content::RawHtml;
use rocket::{State, get};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};

use crate::api::error::{Detail, FieldError, LocPart, ValidationErrors};

/// The vendored Scalar bundle (see `assets/scalar/LICENSE.md`).
const SCALAR_JS: &[u8] = include_bytes!("../../assets/scalar/standalone.js");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "activator",
        description = "Register with an email and a password, receive a 4-digit code by email, activate the account with it.\n\nEvery error body is a JSON object with a `detail` key. Endpoints that take HTTP Basic credentials answer 401 with `WWW-Authenticate: Basic`; rate-limited answers (429) carry `Retry-After` in seconds.",
    ),
    paths(
        crate::api::auth::register,
        crate::api::auth::resend,
        crate::api::auth::activate,
        crate::api::health::check,
        crate::api::health::live,
    ),
    components(schemas(Detail, ValidationErrors, FieldError, LocPart)),
    modifiers(&BasicAuthScheme),
    tags(
        (name = "auth", description = "Registration and activation"),
        (name = "health", description = "Probes for orchestrators"),
    )
)]
pub struct ApiDoc;

struct BasicAuthScheme;

impl Modify for BasicAuthScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

/// The OpenAPI document as served: generated from the handlers once, with
/// the activation code's schema for the configured `CODE_LENGTH`.
pub struct Document(String);

impl Document {
    pub fn new(code_length: usize) -> Self {
        let mut doc = ApiDoc::openapi();
        if let Some(RefOr::T(Schema::Object(request))) = doc
            .components
            .as_mut()
            .and_then(|components| components.schemas.get_mut("ActivateRequest"))
        {
            request.properties.insert(
                "code".into(),
                RefOr::T(Schema::Object(crate::api::request::code_schema_of(
                    code_length,
                ))),
            );
        }
        // Serializing a document built from our own types cannot fail.
        Self(serde_json::to_string(&doc).unwrap_or_default())
    }
}

#[get("/openapi.json")]
pub fn openapi(document: &State<Document>) -> (ContentType, &str) {
    (ContentType::JSON, &document.0)
}

#[get("/docs")]
pub fn docs() -> RawHtml<&'static str> {
    RawHtml(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>activator API</title>
</head>
<body>
  <div id="app"></div>
  <script src="/docs/scalar.js"></script>
  <script>
    Scalar.createApiReference('#app', {
      url: '/openapi.json',
      withDefaultFonts: false,
      hideClientButton: true,
      telemetry: false,
    })
  </script>
</body>
</html>
"#,
    )
}

#[get("/docs/scalar.js")]
pub fn scalar_js() -> (ContentType, &'static [u8]) {
    (ContentType::JavaScript, SCALAR_JS)
}
