//! Binance error answers: `{"code": -1022, "msg": "..."}` with the HTTP status Binance uses
//! (4XX for the sender's mistakes; 401 for API-key refusals).
//!
//! Codes and messages are Binance's own, from the spot `errors.md` and the Wallet "Error
//! Codes" page (developers.binance.com/docs/wallet/error-code). The one code that is the
//! simulator's choice is the replay refusal ([`ApiError::replayed`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

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

    /// -1101 TOO_MANY_PARAMETERS, a parameter sent twice.
    pub fn duplicate_parameter() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            -1101,
            "Duplicate values for a parameter detected.",
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "msg": self.msg})),
        )
            .into_response()
    }
}
