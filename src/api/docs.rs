//! API documentation: the OpenAPI document generated from the handlers'
//! annotations, and the Scalar UI, served from assets compiled into the
//! binary so it works without internet access: the page under a
//! Content-Security-Policy that lets in nothing but this server, and the
//! bundle gzipped, under a digest-named URL browsers cache for good.

use std::borrow::Cow;

use rocket::http::ContentType;
use rocket::request::{self, FromRequest, Request};
use rocket::response::{self, Responder, Response};
use rocket::{State, get};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};

use crate::api::error::{Detail, FieldError, LocPart, ValidationErrors};

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
/// the activation code's schema for the configured `CODE_LENGTH` and the
/// password's for the policy in force.
pub struct Document(String);

impl Document {
    pub fn new(code_length: usize, policy: &crate::policy::PasswordPolicy) -> Self {
        let mut doc = ApiDoc::openapi();
        if let Some(RefOr::T(Schema::Object(request))) = doc
            .components
            .as_mut()
            .and_then(|components| components.schemas.get_mut("RegisterRequest"))
        {
            request.properties.insert(
                "password".into(),
                RefOr::T(Schema::Object(crate::api::request::password_schema_of(
                    policy,
                ))),
            );
        }
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

/// The docs page's policy: its own scripts and requests only. Scalar
/// injects its styles, so they need 'unsafe-inline'; nothing else is let in.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page. `init.js` comes first: it must run before the bundle loads
/// (see its comments).
const PAGE: &str = concat!(
    r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>activator API</title>
</head>
<body>
  <div id="app"></div>
  <script src="/docs/init.js"></script>
  <script src="/docs/scalar-"#,
    env!("SCALAR_JS_DIGEST"),
    r#".js"></script>
</body>
</html>
"#
);

/// Starts Scalar with every feature that reaches outside services off:
/// the AI agent (`agent`, which also fetched a registry from scalar.com on
/// every load), the developer toolbar with Share and Deploy
/// (`showDeveloperTools`), the link to Scalar's hosted client
/// (`hideClientButton`), fonts from Scalar's CDN (`withDefaultFonts`), and
/// the "Powered by" link (hidden by style).
const INIT_JS: &str = r#"// Loaded before the Scalar bundle; starts it once the page has loaded.
(function () {
  'use strict';
  // zod, inside the bundle, probes `new Function('')` once while the bundle
  // loads, to choose a faster parser. The page's CSP (no 'unsafe-eval')
  // refuses it: caught and harmless, but reported as a violation. zod skips
  // the probe when the user agent mentions Cloudflare, so say so until the
  // bundle has run.
  var ua = navigator.userAgent;
  Object.defineProperty(navigator, 'userAgent', { value: ua + ' Cloudflare', configurable: true });
  document.addEventListener('DOMContentLoaded', function () {
    delete navigator.userAgent;
    Scalar.createApiReference('#app', {
      url: '/openapi.json',
      withDefaultFonts: false,
      hideClientButton: true,
      showDeveloperTools: 'never',
      agent: { disabled: true },
      telemetry: false,
      customCss: 'a[href^="https://www.scalar.com"]{display:none!important}',
    });
  });
})();
"#;

/// The Scalar bundle, gzipped at build time (see `build.rs`).
const SCALAR_JS_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/scalar.js.gz"));

/// A static answer with its caching and security headers.
pub struct Asset {
    content_type: ContentType,
    body: Cow<'static, [u8]>,
    gzipped: bool,
    cache: &'static str,
    policy: Option<&'static str>,
}

impl<'r> Responder<'r, 'static> for Asset {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut response = Response::build();
        response
            .header(self.content_type)
            .raw_header("Cache-Control", self.cache)
            .sized_body(self.body.len(), std::io::Cursor::new(self.body));
        if self.gzipped {
            response.raw_header("Content-Encoding", "gzip");
        }
        if self.cache != NO_CACHE {
            response.raw_header("Vary", "Accept-Encoding");
        }
        if let Some(policy) = self.policy {
            response.raw_header("Content-Security-Policy", policy);
        }
        response.ok()
    }
}

/// Pages and the small script may change with any release: revalidate.
const NO_CACHE: &str = "no-cache";
/// The bundle's URL names its digest: a new bundle is a new URL.
const FOR_GOOD: &str = "public, max-age=31536000, immutable";

#[get("/docs")]
pub fn docs() -> Asset {
    Asset {
        content_type: ContentType::HTML,
        body: Cow::Borrowed(PAGE.as_bytes()),
        gzipped: false,
        cache: NO_CACHE,
        policy: Some(CONTENT_SECURITY_POLICY),
    }
}

#[get("/docs/init.js")]
pub fn init_js() -> Asset {
    Asset {
        content_type: ContentType::JavaScript,
        body: Cow::Borrowed(INIT_JS.as_bytes()),
        gzipped: false,
        cache: NO_CACHE,
        policy: None,
    }
}

/// The bundle at `/docs/scalar-<digest>.js`: gzipped to the clients that
/// take gzip (every browser), decompressed here for any other.
#[get("/docs/<file>", rank = 2)]
pub fn scalar_js(file: &str, encodings: AcceptEncoding) -> Option<Asset> {
    if file != concat!("scalar-", env!("SCALAR_JS_DIGEST"), ".js") {
        return None;
    }
    let (body, gzipped) = if encodings.gzip {
        (Cow::Borrowed(SCALAR_JS_GZ), true)
    } else {
        // Decompressed once, for the first such client; shared after.
        static PLAIN: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
        let plain = PLAIN.get_or_init(|| {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(SCALAR_JS_GZ), &mut plain)
                .ok()
                .map(|_| plain)
        });
        (Cow::Borrowed(plain.as_deref()?), false)
    };
    Some(Asset {
        content_type: ContentType::JavaScript,
        body,
        gzipped,
        cache: FOR_GOOD,
        policy: None,
    })
}

/// Whether the client takes gzip (`Accept-Encoding`, q-values honoured).
pub struct AcceptEncoding {
    gzip: bool,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for AcceptEncoding {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let header = request
            .headers()
            .get("Accept-Encoding")
            .collect::<Vec<_>>()
            .join(",");
        request::Outcome::Success(Self {
            gzip: accepts_gzip(&header),
        })
    }
}

/// `gzip` (or `*`) listed with a q-value above zero.
fn accepts_gzip(header: &str) -> bool {
    let mut gzip = None;
    let mut any = None;
    for entry in header.split(',') {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|param| param.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(quality > 0.0),
            "*" => any = Some(quality > 0.0),
            _ => {}
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_taken_unless_refused() {
        for (header, gzip) in [
            ("gzip, deflate, br", true),
            ("br;q=1.0, gzip;q=0.8", true),
            ("gzip;q=0", false),
            ("*", true),
            ("*;q=0, gzip;q=0.5", true),
            ("identity", false),
            ("", false),
        ] {
            assert_eq!(accepts_gzip(header), gzip, "{header:?}");
        }
    }

    #[test]
    fn the_bundle_gzipped_at_build_time_opens() {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(SCALAR_JS_GZ), &mut plain)
            .unwrap();
        assert!(plain.len() > 3_000_000 && SCALAR_JS_GZ.len() < plain.len() / 3);
    }
}
