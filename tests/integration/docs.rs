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
        ("/auth/register", "post", &["201", "409", "422"][..]),
        ("/auth/resend", "post", &["202", "401", "409", "429"]),
        (
            "/auth/activate",
            "post",
            &["200", "400", "401", "409", "422", "429"],
        ),
        ("/health/check", "get", &["200", "503"]),
        ("/health/live", "get", &["200"]),
    ];
    for (path, method, statuses) in expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} missing");
        for status in statuses {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {path} lacks {status}"
            );
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
async fn the_docs_page_loads_scalar_from_this_server() {
    let app = TestApp::new().await;
    let page = app.get("/docs").await;
    assert_eq!(page.status.code, 200);
    assert!(
        page.content_type
            .as_deref()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.body
            .contains(r#"<script src="/docs/scalar.js"></script>"#)
    );
    assert!(page.body.contains("'/openapi.json'"));
    assert!(
        !page.body.contains("https://"),
        "the page must not need the internet"
    );

    let script = app.get("/docs/scalar.js").await;
    assert_eq!(script.status.code, 200);
    assert_eq!(script.content_type.as_deref(), Some("text/javascript"));
    assert!(script.body.len() > 1_000_000 && script.body.contains("createApiReference"));
}
