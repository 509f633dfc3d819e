//! `/openapi.json` and the Scalar UI at `/docs`, served with no internet.

use serde_json::json;

use crate::common::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_describes_every_route_status_and_basic_auth() {
    let app = TestApp::new().await;
    let reply = app.get("/openapi.json").await;
    assert_eq!(reply.status.code, 200);
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["basic"],
        json!({"type": "http", "scheme": "basic"})
    );

    let expected = [
        (
            "/auth/register",
            "post",
            &["201", "400", "409", "413", "422", "429", "503"][..],
        ),
        ("/auth/resend", "post", &["202", "401", "409", "429", "503"]),
        (
            "/auth/activate",
            "post",
            &["200", "400", "401", "413", "422", "429", "503"],
        ),
        ("/health/check", "get", &["200", "503"]),
        ("/health/live", "get", &["200"]),
    ];
    for (path, method, statuses) in expected {
        let responses = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} missing"));
        let mut documented: Vec<&str> = responses.keys().map(String::as_str).collect();
        documented.sort_unstable();
        assert_eq!(documented, statuses, "{method} {path}");
        if let Some(limited) = responses.get("429") {
            assert!(limited["headers"]["Retry-After"].is_object(), "{path}");
        }
        if let Some(refused) = responses.get("401") {
            assert!(refused["headers"]["WWW-Authenticate"].is_object(), "{path}");
        }
    }
    for path in ["/auth/resend", "/auth/activate"] {
        assert_eq!(
            doc["paths"][path]["post"]["security"],
            json!([{"basic": []}])
        );
    }
    let register = &doc["components"]["schemas"]["RegisterRequest"];
    assert_eq!(register["required"], json!(["email", "password"]));
    assert_eq!(
        doc["components"]["schemas"]["ActivateRequest"]["properties"]["code"]["pattern"],
        r"^\d{4}$"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_page_loads_only_this_servers_scripts_under_a_strict_policy() {
    let app = TestApp::new().await;
    let page = app.get("/docs").await;
    assert_eq!(page.status.code, 200);
    assert!(
        page.content_type
            .as_deref()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(
        page.header("content-security-policy"),
        Some(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    );
    assert!(
        !page.body.contains("https://"),
        "the page must not need the internet"
    );
    let init = page
        .body
        .find(r#"<script src="/docs/init.js">"#)
        .expect("init.js");
    let bundle_at = page
        .body
        .find(r#"<script src="/docs/scalar-"#)
        .expect("the bundle");
    assert!(init < bundle_at, "init.js runs first");
    let bundle = &page.body[bundle_at + 13..];
    let bundle = &bundle[..bundle.find('"').unwrap()];
    assert!(
        bundle.starts_with("/docs/scalar-") && bundle.ends_with(".js"),
        "{bundle}"
    );

    let init = app.get("/docs/init.js").await;
    assert_eq!(init.content_type.as_deref(), Some("text/javascript"));
    for setting in [
        "url: '/openapi.json'",
        "agent: { disabled: true }",
        "showDeveloperTools: 'never'",
        "hideClientButton: true",
        "withDefaultFonts: false",
    ] {
        assert!(init.body.contains(setting), "{setting}");
    }
    assert!(!page.body.contains("<script>") && !init.body.contains("<script"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bundle_is_served_gzipped_and_cached_for_good() {
    use rocket::http::Header;
    let app = TestApp::new().await;
    let page = app.get("/docs").await;
    let at = page.body.find("/docs/scalar-").unwrap();
    let path = &page.body[at..at + page.body[at..].find('"').unwrap()];

    let response = app
        .client
        .get(path.to_owned())
        .header(Header::new("Accept-Encoding", "gzip, deflate, br"))
        .dispatch()
        .await;
    assert_eq!(response.status().code, 200);
    let headers = response.headers().clone();
    assert_eq!(headers.get_one("Content-Encoding"), Some("gzip"));
    assert_eq!(
        headers.get_one("Cache-Control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(headers.get_one("Vary"), Some("Accept-Encoding"));
    let gzipped = response.into_bytes().await.unwrap();
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&gzipped[..]),
        &mut unzipped,
    )
    .unwrap();
    assert!(gzipped.len() < 1_100_000, "{} bytes", gzipped.len());
    assert!(unzipped.len() > 3_000_000);

    // A client that takes no gzip gets the same script, plain.
    let plain = app.get(path).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body.as_bytes(), &unzipped[..]);
    assert!(plain.body.contains("createApiReference"));
    // Any other name is not served.
    assert_eq!(app.get("/docs/scalar.js").await.status.code, 404);
}
