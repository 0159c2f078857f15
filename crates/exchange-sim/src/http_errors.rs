//! Error answers no endpoint's handler wrote: unknown paths (404), known paths with another
//! method (405), and any error answer that is not JSON. Each is JSON in the shape of the path
//! asked for: Binance's `{"code", "msg"}` outside `/sim/`, the admin `{"error"}` under it.
//!
//! - [`not_found`] is the router's fallback: 404, -1020 UNSUPPORTED_OPERATION.
//! - [`method_not_allowed`] is the fallback of every route for a method it does not take:
//!   405, -1020 (axum adds the `Allow` header).
//! - [`json_errors`] is a middleware around the whole router: a 4XX or 5XX answer whose
//!   `Content-Type` is not JSON (axum's plain-text refusals, a body-limit 413 from an
//!   extractor no handler wraps) becomes the path's JSON error, its text clipped as the
//!   detail, its status and other headers kept. The simulator's own extractors already answer
//!   JSON ([`crate::api::RawBody`], the admin handlers' rejections); this is the net under
//!   them.

use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::admin::AdminError;
use crate::api_error::ApiError;
use crate::echo::clip;

/// The error shape of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Binance's `{"code", "msg"}`.
    Binance,
    /// The admin `{"error"}` (`/sim` and below).
    Admin,
}

impl Shape {
    fn of(path: &str) -> Self {
        if path == "/sim" || path.starts_with("/sim/") {
            Self::Admin
        } else {
            Self::Binance
        }
    }

    /// The error answer for `status` when nothing more precise is known.
    fn answer(self, status: StatusCode, detail: &str) -> Response {
        match self {
            Self::Binance => ApiError::for_status(status, detail).into_response(),
            Self::Admin => AdminError::for_status(status, detail).into_response(),
        }
    }
}

/// Fallback for a path no route has: 404, -1020 (`{"error"}` under `/sim/`).
pub(crate) async fn not_found(method: Method, uri: Uri) -> Response {
    let path = clip(uri.path());
    let status = StatusCode::NOT_FOUND;
    match Shape::of(uri.path()) {
        Shape::Binance => ApiError::unsupported(
            status,
            &format!("{method} {path} is not an endpoint of the simulator"),
        )
        .into_response(),
        Shape::Admin => {
            AdminError::new(status, format!("no admin endpoint {method} {path}")).into_response()
        }
    }
}

/// Fallback for a known path asked with a method it does not take: 405, -1020
/// (`{"error"}` under `/sim/`); axum adds the `Allow` header.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let what = format!("{} does not take {method}", clip(uri.path()));
    let status = StatusCode::METHOD_NOT_ALLOWED;
    match Shape::of(uri.path()) {
        Shape::Binance => ApiError::unsupported(status, &what).into_response(),
        Shape::Admin => AdminError::new(status, what).into_response(),
    }
}

/// Whether an answer says it is JSON.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Middleware around the whole router: an error answer that is not JSON becomes the path's
/// JSON error (see the module docs).
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let shape = Shape::of(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = match to_bytes(body, crate::BODY_LIMIT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let (json_parts, json_body) = shape.answer(status, &detail).into_parts();
    parts.headers.remove(CONTENT_TYPE);
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, json_body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use axum::Router;
    use axum::body::Body;
    use axum::http::header::ALLOW;
    use axum::middleware;
    use axum::routing::get;
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::*;

    /// A router whose routes answer like axum's own refusals: plain text, empty bodies.
    fn app() -> Router {
        Router::new()
            .route(
                "/api/v3/plain",
                get(|| async { (StatusCode::UNPROCESSABLE_ENTITY, "Failed to deserialize") }),
            )
            .route(
                "/sim/plain",
                get(|| async { (StatusCode::PAYLOAD_TOO_LARGE, [(ALLOW, "GET")], "") }),
            )
            .route("/api/v3/ok", get(|| async { "fine" }))
            .route(
                "/api/v3/json",
                get(|| async { ApiError::invalid_signature() }),
            )
            .layer(middleware::from_fn(json_errors))
    }

    async fn call(path: &str) -> (StatusCode, HeaderMap, String) {
        let response = app()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let text = String::from_utf8(to_bytes(body, 1 << 20).await.unwrap().to_vec()).unwrap();
        (parts.status, parts.headers, text)
    }

    #[test]
    fn shapes_follow_the_path() {
        assert_eq!(Shape::of("/sim"), Shape::Admin);
        assert_eq!(Shape::of("/sim/credit"), Shape::Admin);
        assert_eq!(Shape::of("/simulator"), Shape::Binance);
        assert_eq!(Shape::of("/"), Shape::Binance);
        assert_eq!(Shape::of("/api/v3/ping"), Shape::Binance);
    }

    #[tokio::test]
    async fn plain_error_answers_become_json() {
        let (status, headers, text) = call("/api/v3/plain").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(is_json(&headers));
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["code"], -1102);
        assert_eq!(
            json["msg"],
            "A mandatory parameter was not sent, was empty/null, or malformed. (Failed to deserialize)"
        );

        let (status, headers, text) = call("/sim/plain").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(is_json(&headers));
        assert_eq!(headers[ALLOW], "GET");
        assert_eq!(headers[CONTENT_LENGTH], text.len().to_string().as_str());
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json, serde_json::json!({"error": "payload too large"}));
    }

    #[tokio::test]
    async fn other_answers_pass_unchanged() {
        let (status, headers, text) = call("/api/v3/ok").await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "fine"));
        assert!(!is_json(&headers));
        let (status, _, text) = call("/api/v3/json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            text,
            r#"{"code":-1022,"msg":"Signature for this request is not valid."}"#
        );
    }
}
