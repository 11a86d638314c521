//! The HTTP contract, operations: health and readiness, unknown paths and
//! methods, the OpenAPI document, the metrics endpoints.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{Backend, assert_error, spawn_app};

/// Health, readiness, unknown paths and wrong methods.
pub async fn ops_routes_and_unknown_paths<B: Backend>() {
    let app = spawn_app::<B>().await;
    let health = app.get("/health", None).await;
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        health.headers()["server-timing"]
            .to_str()
            .unwrap()
            .contains("app;dur=")
    );
    assert_eq!(app.get("/ready", None).await.status(), StatusCode::OK);
    assert_error(
        app.get("/api/nope", None).await,
        404,
        "not_found",
        "unknown path",
    )
    .await;
    assert_error(
        app.send(Method::PUT, "/api/feed", None).await,
        405,
        "method_not_allowed",
        "PUT feed",
    )
    .await;
}

/// The OpenAPI document lists every route of the contract.
pub async fn openapi_covers_the_contract<B: Backend>() {
    let app = spawn_app::<B>().await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/register", &["post"][..]),
        ("/api/login", &["post"]),
        ("/api/logout", &["post"]),
        ("/api/me", &["get"]),
        ("/api/users/{id}", &["get"]),
        ("/api/users/{id}/follow", &["post", "delete"]),
        ("/api/users/{id}/photos", &["get"]),
        ("/api/photos", &["post"]),
        ("/api/photos/{id}", &["get"]),
        ("/api/photos/{id}/like", &["post", "delete"]),
        ("/api/feed", &["get"]),
        ("/api/explore", &["get"]),
        ("/uploads/{name}", &["get"]),
        ("/health", &["get"]),
        ("/ready", &["get"]),
        ("/api/openapi.json", &["get"]),
    ] {
        for m in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*m)).is_some(),
                "{m} {path} missing"
            );
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "Photo",
        "PhotoPage",
        "UserProfile",
        "ErrorBody",
        "AuthBody",
        "LikeState",
        "FollowState",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    let register = &paths["/api/register"]["post"]["responses"];
    for code in ["201", "400", "409", "422"] {
        assert!(register.get(code).is_some(), "register documents {code}");
    }
    // Admitted operations may be shed; the operator routes never are.
    assert!(paths["/api/feed"]["get"]["responses"].get("503").is_some());
    assert!(
        paths["/api/openapi.json"]["get"]["responses"]
            .get("503")
            .is_some()
    );
    assert!(paths["/health"]["get"]["responses"].get("503").is_none());
    assert!(paths["/metrics"]["get"]["responses"].get("503").is_none());
}

/// `/metrics` is Prometheus text with route templates (never raw ids);
/// `/api/metrics` summarizes the recent window per route.
pub async fn metrics_endpoints<B: Backend>() {
    let app = spawn_app::<B>().await;
    let user = app.make_user("metered").await;
    for _ in 0..5 {
        app.get(&format!("/api/users/{}", user.id), None).await;
        app.get("/api/users/abc", None).await;
        app.get("/api/feed", Some(&user.token)).await;
    }
    let text = app.get("/metrics", None).await;
    assert_eq!(text.status(), StatusCode::OK);
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = text.text().await.unwrap();
    for needle in [
        "# TYPE http_server_request_duration_seconds histogram",
        "http_route=\"/api/users/{id}\"",
        "http_response_status_code=\"400\"",
        "http_server_active_requests",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }
    assert!(
        !text.contains(&format!("/api/users/{}\"", user.id)),
        "raw ids never become labels"
    );
    // The window holds finished seconds: wait for the current one to end.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let m: Value = app
        .get("/api/metrics?history=5", None)
        .await
        .json()
        .await
        .unwrap();
    let routes = m["routes"].as_array().unwrap();
    let route = |r: &str| routes.iter().find(|x| x["route"] == r).cloned();
    let users = route("/api/users/{id}").expect("users route in the window");
    assert_eq!(users["count"], 10);
    assert_eq!(users["clientErrors"], 5);
    assert!(route("/api/feed").is_some());
    assert!(m["rps"].as_f64().unwrap() > 0.0);
    assert!(m["p99Ms"].as_f64().unwrap() >= m["p50Ms"].as_f64().unwrap());
    assert!(m["requestsTotal"].as_u64().unwrap() >= 15);
    assert!(m["processRssBytes"].as_u64().unwrap() > 0);
    assert!(
        !m["figures"].as_array().unwrap().is_empty(),
        "the stage reports saturation figures"
    );
    let page = app.get("/metrics.html", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("/static/metrics.js"));
    assert_eq!(
        app.get("/static/metrics.js", None).await.status(),
        StatusCode::OK
    );
}

/// Generates one `#[tokio::test]` per case of this suite for a backend
/// (used by `contract_tests!`).
#[macro_export]
macro_rules! ops_contract_tests {
    ($backend:ty) => {
        $crate::__contract_cases!($backend; ops;
            ops_routes_and_unknown_paths,
            openapi_covers_the_contract,
            metrics_endpoints
        );
    };
}
