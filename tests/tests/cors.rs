//! CORS from a configured allow-list: exact origins only, preflight answered, never `*`.

use lambda_http::http::Method;
use nodeai::api::Route;
use nodeai_tests::{RequestSpec, TestApp};

const ALLOWED: &str = "https://app.example.com";

#[tokio::test]
async fn allowed_origins_get_cors_headers_and_others_do_not() {
    let t = TestApp::with_settings(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com,http://localhost:3000")]).await;
    let ok = t.send(Route::ListWorkflows, RequestSpec::new(&[]).key(&t.key).header("origin", ALLOWED)).await;
    assert_eq!(ok.header("access-control-allow-origin"), Some(ALLOWED));
    assert!(ok.header("access-control-expose-headers").unwrap().contains("x-request-id"));
    assert_eq!(ok.header("vary"), Some("origin"));
    assert_eq!(ok.header("access-control-allow-credentials"), None);

    let error = t.send(Route::ListWorkflows, RequestSpec::new(&[]).header("origin", ALLOWED)).await;
    assert_eq!(error.status, 401);
    assert_eq!(error.header("access-control-allow-origin"), Some(ALLOWED), "errors are readable by the app too");

    for origin in ["https://evil.example.com", "https://app.example.com.evil.com", "null", "*"] {
        let reply = t.send(Route::ListWorkflows, RequestSpec::new(&[]).key(&t.key).header("origin", origin)).await;
        assert_eq!(reply.header("access-control-allow-origin"), None, "{origin}");
    }
}

#[tokio::test]
async fn preflight_lists_the_paths_methods() {
    let t = TestApp::with_settings(&[("CORS_ALLOWED_ORIGINS", ALLOWED)]).await;
    let preflight = |origin: &str| {
        RequestSpec::new(&[])
            .method(Method::OPTIONS)
            .path("/v1/workflows/01ARZ3NDEKTSV4RRFFQ69G5FAV")
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
    };
    let reply = t.send(Route::Fallback, preflight(ALLOWED)).await;
    assert_eq!(reply.status, 204, "{}", reply.raw);
    assert_eq!(reply.header("access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(reply.header("access-control-allow-methods"), Some("GET, PUT, DELETE"));
    assert!(reply.header("access-control-allow-headers").unwrap().contains("authorization"));
    assert!(reply.header("access-control-max-age").is_some());

    let refused = t.send(Route::Fallback, preflight("https://evil.example.com")).await;
    assert_eq!(refused.header("access-control-allow-origin"), None);
    assert_eq!(refused.header("access-control-allow-methods"), None);

    let unknown = t
        .send(Route::Fallback, RequestSpec::new(&[]).method(Method::OPTIONS).path("/nope").header("origin", ALLOWED))
        .await;
    unknown.assert_error(404, "ROUTE_NOT_FOUND");
}

#[tokio::test]
async fn without_an_allow_list_there_are_no_cors_headers() {
    let t = TestApp::new().await;
    let reply = t.send(Route::ListWorkflows, RequestSpec::new(&[]).key(&t.key).header("origin", ALLOWED)).await;
    assert_eq!(reply.header("access-control-allow-origin"), None);
}
