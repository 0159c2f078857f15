//! The API's cross-cutting concerns as layers, so that a handler is one line of intent:
//! authentication (a known token whose role allows the route's) and idempotency keys; and
//! the extractors that refuse a bad request with an [`ApiError`](super::ApiError) body.
//!
//! The layers find the [`Coordinator`] in the request's extensions (the router puts it there
//! for every request), so that the routes, with their layers and their OpenAPI document, are
//! built once without one ([`super::openapi_document`]).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::TokenRole;
use crate::store::Reservation;
use crate::{Coordinator, Error};

/// Largest request body accepted, bytes.
const MAX_BODY: usize = 1 << 20;
/// A reservation older than this without an answer (its coordinator died) is taken over, ms.
const STALE_RESERVATION_MS: u64 = 15_000;
/// How long a request waits for a concurrent one with the same key to be answered.
const WAIT_FOR_TWIN: std::time::Duration = std::time::Duration::from_secs(20);

pub(super) fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// An authenticated caller: its token's hash, name and role (put in the request by the
/// authentication layer).
#[derive(Debug, Clone)]
pub struct Caller {
    pub(super) token_hash: Vec<u8>,
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: TokenRole,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            Error::Internal("a route without the authentication layer".into()).into_response()
        })
    }
}

/// The coordinator serving a request (the router's extension).
fn coordinator_of(req: &Request) -> Result<Coordinator, Error> {
    req.extensions()
        .get::<Coordinator>()
        .cloned()
        .ok_or_else(|| {
            Error::Internal("a route outside the router that serves the coordinator".into())
        })
}

/// The authentication layer: a known token whose role allows the route's (`needed`).
pub(super) async fn authenticate(
    State(needed): State<TokenRole>,
    mut req: Request,
    next: Next,
) -> Response {
    let c = match coordinator_of(&req) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(header) = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing 'Authorization: Bearer <token>' header",
        );
    };
    let Some(token) = header.strip_prefix("Bearer ") else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the Authorization header must be 'Bearer <token>'",
        );
    };
    let token_hash = hash_token(token.trim());
    let (name, role) = match c.store().token(&token_hash).await {
        Ok(Some((name, role))) => (name, role.parse().unwrap_or(TokenRole::Viewer)),
        Ok(None) => return refuse(StatusCode::UNAUTHORIZED, "unknown API token"),
        Err(e) => return e.into_response(),
    };
    if !TokenRole::allows(role, needed) {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "this API token ({name}) has the role '{}', and this needs '{}'",
                role.as_str(),
                needed.as_str()
            ),
        );
    }
    req.extensions_mut().insert(Caller {
        token_hash,
        name,
        role,
    });
    next.run(req).await
}

/// One idempotent request, as the layer reserved it: a stable id derived from (token, route,
/// key). A handler that creates work with no id of its own (a key generation) names the work
/// by it, so that a retry taking over a reservation whose coordinator died finds the work
/// that coordinator may have created instead of creating it again.
#[derive(Debug, Clone)]
pub struct RequestScope(pub String);

impl RequestScope {
    /// The scope of key `key` on `route` ("POST /v1/wallets") for the token whose SHA-256 is
    /// `token_hash`.
    pub fn new(token_hash: &[u8], route: &str, key: &str) -> RequestScope {
        let mut h = Sha256::new();
        h.update(b"concord/idempotency/v1\0");
        for part in [token_hash, route.as_bytes(), key.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        RequestScope(uuid::Builder::from_random_bytes(id).into_uuid().to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestScope {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        parts
            .extensions
            .get::<RequestScope>()
            .cloned()
            .ok_or_else(|| {
                Error::Internal("a route without the idempotency layer".into()).into_response()
            })
    }
}

/// The idempotency layer (POSTs): the key, scoped to the caller's token and the route, is
/// reserved before the request is handled, in one statement, so that of concurrent requests
/// with one key exactly one is handled; the others wait for its answer and get it. A repeat
/// gets the stored answer; the same key with another body is refused. A server-side failure
/// is not stored (a retry may succeed).
pub(super) async fn idempotency(caller: Caller, req: Request, next: Next) -> Response {
    let c = match coordinator_of(&req) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(key) = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .map(str::to_owned)
    else {
        return Error::BadRequest(
            "every POST needs an 'Idempotency-Key' header (1 to 128 characters)".into(),
        )
        .into_response();
    };
    // The path as called, not its template: a key is scoped to one resource
    // (`/v1/exchanges/binance/credential` is not `/v1/exchanges/kraken/credential`).
    let route = format!("{} {}", req.method(), req.uri().path());
    let (mut parts, body) = req.into_parts();
    parts
        .extensions
        .insert(RequestScope::new(&caller.token_hash, &route, &key));
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return Error::BadRequest(format!("the request body is larger than {MAX_BODY} bytes"))
            .into_response();
    };
    let request_hash = Sha256::digest(&bytes).to_vec();
    if let Some(answer) = reserve(&c, &caller, &route, &key, &request_hash).await {
        return answer;
    }
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = resp.status();
    if status.is_server_error() {
        let _ = c.store().forget_key(&caller.token_hash, &route, &key).await;
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    if let Err(e) = c
        .store()
        .complete_key(&caller.token_hash, &route, &key, status.as_u16(), &body)
        .await
    {
        return e.into_response();
    }
    Response::from_parts(parts, Body::from(body))
}

/// Reserves the key; `Some(answer)` when the request must not be handled (a stored answer,
/// a conflict, or a twin that did not finish in time).
async fn reserve(
    c: &Coordinator,
    caller: &Caller,
    route: &str,
    key: &str,
    request_hash: &[u8],
) -> Option<Response> {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_TWIN;
    loop {
        let r = c
            .store()
            .reserve_key(
                &caller.token_hash,
                route,
                key,
                request_hash,
                crate::records::epoch_ms(),
                STALE_RESERVATION_MS,
            )
            .await;
        match r {
            Ok(Reservation::New) => return None,
            Ok(Reservation::Done(h, _, _) | Reservation::InProgress(h)) if h != request_hash => {
                return Some(
                    Error::Conflict(format!(
                        "idempotency key '{key}' was already used for a different request"
                    ))
                    .into_response(),
                );
            }
            Ok(Reservation::Done(_, status, response)) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                return Some(
                    (
                        status,
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        response,
                    )
                        .into_response(),
                );
            }
            Ok(Reservation::InProgress(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Ok(Reservation::InProgress(_)) => {
                return Some(
                    Error::Conflict(format!(
                        "a request with idempotency key '{key}' is still being handled; ask again later"
                    ))
                    .into_response(),
                );
            }
            Err(e) => return Some(e.into_response()),
        }
    }
}

/// A JSON request body, refused with a sentence naming what is wrong.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        read_json(&bytes)
            .map(JsonBody)
            .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")).into_response())
    }
}

/// Reads a JSON body into `T`. An integer written with a fraction of zero (`2.0`, `1e3`) is
/// an integer, as JSON Schema (and so the OpenAPI document) counts them, though serde does
/// not read it into an integer field: a body refused only for that is read again with such
/// numbers as integers. Any other error is the first reading's (it names where it is).
fn read_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let first = match serde_json::from_slice(bytes) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    if !first
        .to_string()
        .starts_with("invalid type: floating point")
    {
        return Err(first);
    }
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Err(first);
    };
    if !integral_floats_as_integers(&mut value) {
        return Err(first);
    }
    serde_json::from_value(value).map_err(|_| first)
}

/// Writes every float of `v` that is a whole number within the range of `u64` or `i64` as
/// that integer; whether any was.
fn integral_floats_as_integers(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let Some(f) = n.as_f64() else {
                return false;
            };
            // 2^64 and -2^63 are exact as f64; the casts are exact within these bounds.
            let whole = f.is_finite() && f.fract() == 0.0;
            let int = if whole && (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                Some(serde_json::Number::from(f as u64))
            } else if whole && (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                Some(serde_json::Number::from(f as i64))
            } else {
                None
            };
            match int {
                Some(i) => {
                    *n = i;
                    true
                }
                None => false,
            }
        }
        Value::Array(items) => {
            let mut any = false;
            for x in items {
                any |= integral_floats_as_integers(x);
            }
            any
        }
        Value::Object(fields) => {
            let mut any = false;
            for x in fields.values_mut() {
                any |= integral_floats_as_integers(x);
            }
            any
        }
        _ => false,
    }
}

/// A query string read into `T`, refused with a sentence naming what is wrong (axum's own
/// `Query` answers a bad one in plain text).
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| {
                Error::BadRequest(format!("invalid query string: {}", e.body_text()))
                    .into_response()
            })
    }
}
