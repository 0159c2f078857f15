//! Binance error answers: `{"code": -1022, "msg": "..."}` with the HTTP status Binance uses
//! (4XX for the sender's mistakes; 401 for API-key refusals).
//!
//! Codes and messages are Binance's own, from the spot `errors.md` and the Wallet "Error
//! Codes" page (developers.binance.com/docs/wallet/error-code). The one code that is the
//! simulator's choice is the replay refusal ([`ApiError::replayed`]).

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::echo::{clip, clip_message, clip_quoted};

/// One Binance error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Binance error code (negative).
    pub code: i64,
    /// Binance error message.
    pub msg: String,
}

impl ApiError {
    fn new(status: StatusCode, code: i64, msg: impl Into<String>) -> Self {
        Self {
            status,
            code,
            msg: msg.into(),
        }
    }

    /// -1000 UNKNOWN.
    pub fn unknown() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            -1000,
            "An unknown error occurred while processing the request.",
        )
    }

    /// -1001 DISCONNECTED, HTTP 503: the request was not processed and may be sent again
    /// (fault injection's `http5xx` answer).
    pub fn disconnected() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            -1001,
            "Internal error; unable to process your request. Please try again.",
        )
    }

    /// -1007 TIMEOUT, HTTP 504: the gateway gave up waiting for the backend, which may or may
    /// not have executed the request (fault injection's `withdrawTimeoutAfterAccept` answer).
    pub fn backend_timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            -1007,
            "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
        )
    }

    /// -1020 UNSUPPORTED_OPERATION for a request no endpoint takes: HTTP 404 for an unknown
    /// path, 405 for a known path with another method. `what` says which (the path in it is
    /// clipped by the caller).
    pub fn unsupported(status: StatusCode, what: &str) -> Self {
        Self::new(
            status,
            -1020,
            format!("This operation is not supported: {what}."),
        )
    }

    /// -1021 INVALID_TIMESTAMP, the request is older than its recvWindow.
    pub fn timestamp_outside_window() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        )
    }

    /// -1021 INVALID_TIMESTAMP, the request is from the future.
    pub fn timestamp_ahead() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        )
    }

    /// -1022 INVALID_SIGNATURE.
    pub fn invalid_signature() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1022,
            "Signature for this request is not valid.",
        )
    }

    /// The simulator's replay refusal: -1099 ("Not found, authenticated, or authorized" in
    /// the Wallet error list) with a message saying what happened. HTTP 401.
    pub fn replayed() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            -1099,
            "Not found, authenticated, or authorized: this signed request was already accepted within its recvWindow.",
        )
    }

    /// -1100 ILLEGAL_CHARS for a numeric parameter.
    pub fn illegal_chars(param: &str, legal_range: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1100,
            format!(
                "Illegal characters found in parameter '{param}'; legal range is '{legal_range}'."
            ),
        )
    }

    /// -1100 ILLEGAL_CHARS without a parameter name (undecodable request).
    pub fn illegal_chars_general() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1100,
            "Illegal characters found in a parameter.",
        )
    }

    /// -1100 ILLEGAL_CHARS for a parameter that is not percent-encoded UTF-8 (a `%` not
    /// followed by two hex digits, or bytes that are not UTF-8 once decoded); `name` is the
    /// parameter's name when it decoded.
    pub fn undecodable(name: Option<&str>) -> Self {
        let what = match name {
            Some(name) => format!("'{}'", clip(name)),
            None => "a parameter name".to_string(),
        };
        Self::new(
            StatusCode::BAD_REQUEST,
            -1100,
            format!(
                "Illegal characters found in a parameter: {what} is not percent-encoded UTF-8."
            ),
        )
    }

    /// -1101 TOO_MANY_PARAMETERS, a parameter sent twice.
    pub fn duplicate_parameter() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1101,
            "Duplicate values for a parameter detected.",
        )
    }

    /// -1101 TOO_MANY_PARAMETERS, HTTP 413: a body over [`crate::BODY_LIMIT`] bytes.
    pub fn body_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            -1101,
            format!(
                "Too many parameters sent for this endpoint: the request body is over {} bytes.",
                crate::BODY_LIMIT
            ),
        )
    }

    /// -1102 MANDATORY_PARAM_EMPTY_OR_MALFORMED.
    pub fn mandatory(param: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1102,
            format!("Mandatory parameter '{param}' was not sent, was empty/null, or malformed."),
        )
    }

    /// -1102 for a value above its limit (the spot API's answer to a recvWindow over 60000).
    pub fn greater_than(param: &str, limit: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1102,
            format!("'{param}' contains unexpected value. Cannot be greater than '{limit}'."),
        )
    }

    /// -1104 UNREAD_PARAMETERS.
    pub fn unread_parameters(read: usize, sent: usize) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1104,
            format!(
                "Not all sent parameters were read; read '{read}' parameter(s) but was sent '{sent}'."
            ),
        )
    }

    /// -1111 BAD_PRECISION (Wallet wording).
    pub fn bad_precision() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1111,
            "Precision is over the maximum defined for this asset.",
        )
    }

    /// -1130 INVALID_PARAMETER.
    pub fn invalid_parameter(param: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1130,
            format!("Data sent for parameter '{param}' is not valid."),
        )
    }

    /// -1131 BAD_RECV_WINDOW (Wallet/SAPI endpoints).
    pub fn bad_recv_window() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1131,
            "recvWindow must be less than 60000",
        )
    }

    /// -2014 BAD_API_KEY_FMT.
    pub fn bad_api_key_format() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, -2014, "API-key format invalid.")
    }

    /// -2015 REJECTED_MBX_KEY.
    pub fn rejected_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        )
    }

    /// -4001 CAPITAL_INVALID (used for a reused withdrawOrderId).
    pub fn invalid_operation() -> Self {
        Self::new(StatusCode::BAD_REQUEST, -4001, "Invalid operation.")
    }

    /// -4018 CAPITAL_WITHDRAW_ASSET_NOT_EXIST.
    pub fn asset_not_exist() -> Self {
        Self::new(StatusCode::BAD_REQUEST, -4018, "We don't have this asset.")
    }

    /// -4022 CAPITAL_WITHDRAW_MIN_AMOUNT.
    pub fn below_min(min: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -4022,
            format!("Not less than the minimum pick-up quantity {min}."),
        )
    }

    /// -4026 CAPITAL_WITHDRAW_USER_ASSET_NOT_ENOUGH.
    pub fn insufficient_balance() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -4026,
            "You have insufficient balance.",
        )
    }

    /// -4033 CAPITAL_WITHDRAW_ILLEGAL_ADDRESS.
    pub fn illegal_address() -> Self {
        Self::new(StatusCode::BAD_REQUEST, -4033, "Illegal address.")
    }

    /// -4047 CAPITAL_DATE_INTERVAL_LIMIT.
    pub fn date_interval() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -4047,
            "Time interval must be within 0-90 days",
        )
    }

    /// -4106 TAG_NOT_SUPPORTED_FOR_NETWORK (an addressTag on an EVM network).
    pub fn tag_not_supported() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -4106,
            "Address tag is not supported for this network.",
        )
    }

    /// The Binance error for an HTTP error status that no handler chose (a refusal by axum,
    /// or an error answer that is not JSON), with `detail` (the refusal's text, clipped)
    /// after the documented message:
    ///
    /// | status | code |
    /// |---|---|
    /// | 400, 415, 422 and other 4XX | -1102 MANDATORY_PARAM_EMPTY_OR_MALFORMED |
    /// | 401, 403 | -1002 UNAUTHORIZED |
    /// | 404, 405 | -1020 UNSUPPORTED_OPERATION |
    /// | 413 | -1101 TOO_MANY_PARAMETERS ([`ApiError::body_too_large`]) |
    /// | 429 | -1003 TOO_MANY_REQUESTS |
    /// | 503 | -1001 DISCONNECTED |
    /// | 504 | -1007 TIMEOUT |
    /// | other 5XX | -1000 UNKNOWN |
    pub fn for_status(status: StatusCode, detail: &str) -> Self {
        let (code, msg) = match status {
            StatusCode::PAYLOAD_TOO_LARGE => return Self::body_too_large(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                (-1002, "You are not authorized to execute this request.")
            }
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                (-1020, "This operation is not supported.")
            }
            StatusCode::TOO_MANY_REQUESTS => (-1003, "Too many requests queued."),
            StatusCode::SERVICE_UNAVAILABLE => return Self::disconnected(),
            StatusCode::GATEWAY_TIMEOUT => return Self::backend_timeout(),
            s if s.is_server_error() => (
                -1000,
                "An unknown error occurred while processing the request.",
            ),
            _ => (
                -1102,
                "A mandatory parameter was not sent, was empty/null, or malformed.",
            ),
        };
        let detail = detail.trim();
        let msg = if detail.is_empty() {
            msg.to_string()
        } else {
            format!("{} ({})", msg, clip_quoted(detail))
        };
        Self::new(status, code, msg)
    }
}

/// A body that could not be read: 413 -1101 over the body limit, else by its status.
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        Self::for_status(rejection.status(), &rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "msg": clip_message(&self.msg)})),
        )
            .into_response()
    }
}
