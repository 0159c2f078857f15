//! The crate's one error type, and what Binance's documented error codes mean for a caller.

/// Everything that can go wrong talking to an exchange or preparing a request for it.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The exchange answered with its own error body (`{"code":-1022,"msg":"..."}` on Binance).
    #[error("the exchange refused the request with code {code} ({}) and HTTP status {http_status}: {msg}", code_name(*code).unwrap_or("undocumented code"))]
    Api {
        /// The exchange's error code (negative on Binance).
        code: i64,
        /// The exchange's message, as it sent it.
        msg: String,
        /// The HTTP status the error came with.
        http_status: u16,
    },
    /// An exchange whose errors are names, not numbers, refused the request: Kraken's
    /// `"EAPI:Invalid nonce"` (category and message; sent with HTTP 200), Coinbase's
    /// `{"id": "validation_error", "message": ...}`.
    #[error("{exchange} refused the request with {error} (HTTP status {http_status}): {message}")]
    Refused {
        /// Which exchange (`"kraken"`, `"coinbase"`).
        exchange: &'static str,
        /// The error's name as the exchange wrote it (`"EFunding:Unknown withdraw key"`,
        /// `"validation_error"`).
        error: String,
        /// The exchange's words, if any beyond the name.
        message: String,
        /// The HTTP status the error came with.
        http_status: u16,
    },
    /// The exchange answered with an HTTP error status and a body that is not its error format
    /// (a firewall page, a proxy's 502, an empty 429).
    #[error(
        "the exchange answered HTTP status {status} without an error body we understand: {body}"
    )]
    Http {
        /// The HTTP status.
        status: u16,
        /// The start of the body (at most 512 characters).
        body: String,
    },
    /// The request did not complete: connection refused or reset, DNS, TLS, or a timeout.
    #[error("the request to the exchange did not complete ({}): {message}", if *.timed_out { "timed out" } else { "connection failed" })]
    Transport {
        /// What the HTTP client said.
        message: String,
        /// Whether the request timed out (it may then have reached the exchange).
        timed_out: bool,
    },
    /// The exchange answered success with a body that does not have the documented shape.
    #[error("the exchange's answer does not have the documented shape: {0}")]
    Decode(String),
    /// A request, query string or parameter is not acceptable (refused before anything is sent).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Key material could not be used (malformed PEM, wrong length, bad base64).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The client's configuration is unusable (base URL, API key header, HTTP client).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The signer could not produce a signature.
    #[error("signing failed: {0}")]
    Signing(String),
}

impl ExchangeError {
    /// Whether trying the same operation again (with a fresh timestamp and signature) can help.
    ///
    /// Yes: timestamp outside `recvWindow` (-1021), rate limits (-1003 unless the IP is banned
    /// with HTTP 418, -4005, HTTP 429), the exchange's internal and busy errors (-1000, -1001,
    /// -1004, -1006, -1007, -1008, -4038, -4041, any HTTP 5xx) and connection failures or
    /// timeouts. No: bad signature (-1022), key or permission (-1002, -2014, -2015),
    /// insufficient balance (-4026, -4024, -5002), invalid parameters (-11xx, -4xxx otherwise),
    /// firewall blocks (HTTP 403), bans (HTTP 418) and every error raised here before sending.
    ///
    /// A retry of a *withdrawal* after an error whose [`outcome_unknown`](Self::outcome_unknown)
    /// is true must first look the withdrawal up by its `withdrawOrderId`: it may have happened.
    pub fn retryable(&self) -> bool {
        match self {
            ExchangeError::Api {
                code, http_status, ..
            } => {
                if *http_status == 418 {
                    return false;
                }
                match code {
                    -1021 | -1003 | -1000 | -1001 | -1004 | -1006 | -1007 | -1008 | -4005
                    | -4038 | -4041 => true,
                    _ => *http_status >= 500 || *http_status == 429,
                }
            }
            ExchangeError::Refused { .. } => matches!(
                self.kind(),
                ErrorKind::Timestamp | ErrorKind::RateLimited | ErrorKind::ExchangeUnavailable
            ),
            ExchangeError::Http { status, .. } => *status >= 500 || *status == 429,
            ExchangeError::Transport { .. } => true,
            ExchangeError::Decode(_)
            | ExchangeError::InvalidRequest(_)
            | ExchangeError::InvalidKey(_)
            | ExchangeError::Config(_)
            | ExchangeError::Signing(_) => false,
        }
    }

    /// Whether the request may have taken effect even though it failed: HTTP 5xx ("the execution
    /// status is UNKNOWN and could have been a success", Binance's docs), -1006/-1007, and
    /// timeouts. Connection failures before sending and every 4xx are known not to have acted.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ExchangeError::Api {
                code, http_status, ..
            } => *http_status >= 500 || matches!(code, -1006 | -1007),
            ExchangeError::Refused {
                error, http_status, ..
            } => {
                *http_status >= 500
                    || matches!(
                        error.as_str(),
                        "EService:Unavailable"
                            | "EService:Busy"
                            | "EService:Deadline elapsed"
                            | "EGeneral:Internal error"
                            | "internal_server_error"
                    )
            }
            ExchangeError::Http { status, .. } => *status >= 500,
            ExchangeError::Transport { timed_out, .. } => *timed_out,
            _ => false,
        }
    }

    /// The kind of refusal, for callers that act on the reason rather than the number.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ExchangeError::Api {
                code, http_status, ..
            } => api_kind(*code, *http_status),
            ExchangeError::Refused {
                error, http_status, ..
            } => named_kind(error, *http_status),
            ExchangeError::Http { status, .. } => match status {
                429 | 418 => ErrorKind::RateLimited,
                401 | 403 => ErrorKind::Unauthorized,
                s if *s >= 500 => ErrorKind::ExchangeUnavailable,
                _ => ErrorKind::Other,
            },
            ExchangeError::Transport { .. } => ErrorKind::Transport,
            ExchangeError::Decode(_) => ErrorKind::Other,
            ExchangeError::InvalidRequest(_) => ErrorKind::InvalidParameter,
            ExchangeError::InvalidKey(_) | ExchangeError::Config(_) => ErrorKind::Local,
            ExchangeError::Signing(_) => ErrorKind::Local,
        }
    }
}

/// Why an exchange call failed, grouped the way a caller reacts to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The timestamp fell outside `recvWindow` or was ahead of the server (-1021): sign anew.
    Timestamp,
    /// Too many requests or too much weight (-1003, -4005, HTTP 429/418): slow down.
    RateLimited,
    /// The exchange failed or was busy (-1000, -1001, -1004, -1006, -1007, -1008, HTTP 5xx).
    ExchangeUnavailable,
    /// The signature did not verify (-1022).
    BadSignature,
    /// The API key is malformed, unknown, not allowed from this IP or lacks the permission
    /// (-1002, -2014, -2015, HTTP 401/403).
    Unauthorized,
    /// Not enough of the asset (-4024, -4025, -4026, -5002).
    InsufficientBalance,
    /// A parameter is missing, malformed, unknown or not acceptable (-11xx, most -4xxx).
    InvalidParameter,
    /// The request did not complete at the transport level.
    Transport,
    /// Refused locally before anything was sent (keys, configuration, signing).
    Local,
    /// Anything else.
    Other,
}

fn api_kind(code: i64, http_status: u16) -> ErrorKind {
    match code {
        -1021 => ErrorKind::Timestamp,
        -1003 | -4005 => ErrorKind::RateLimited,
        -1000 | -1001 | -1004 | -1006 | -1007 | -1008 => ErrorKind::ExchangeUnavailable,
        -1022 => ErrorKind::BadSignature,
        -1002 | -2014 | -2015 | -4004 => ErrorKind::Unauthorized,
        -4024 | -4025 | -4026 | -5002 => ErrorKind::InsufficientBalance,
        -1199..=-1100 => ErrorKind::InvalidParameter,
        -4199..=-4000 => ErrorKind::InvalidParameter,
        _ if http_status >= 500 => ErrorKind::ExchangeUnavailable,
        _ if http_status == 429 || http_status == 418 => ErrorKind::RateLimited,
        _ => ErrorKind::Other,
    }
}

/// What a named error (Kraken's `E<Category>:<Message>`, Coinbase's error ids) means for a
/// caller; anything not listed goes by the HTTP status.
fn named_kind(error: &str, http_status: u16) -> ErrorKind {
    match error {
        // Kraken (docs.kraken.com "API error messages").
        "EAPI:Invalid nonce" => ErrorKind::Timestamp,
        "EAPI:Rate limit exceeded" | "EGeneral:Temporary lockout" => ErrorKind::RateLimited,
        "EService:Unavailable" | "EService:Busy" | "EGeneral:Internal error" => {
            ErrorKind::ExchangeUnavailable
        }
        "EAPI:Invalid signature" => ErrorKind::BadSignature,
        "EAPI:Invalid key" | "EGeneral:Permission denied" => ErrorKind::Unauthorized,
        "EFunding:Insufficient funds" => ErrorKind::InsufficientBalance,
        e if e.starts_with("EGeneral:Invalid arguments")
            || e.starts_with("EFunding:")
            || e.starts_with("EQuery:") =>
        {
            ErrorKind::InvalidParameter
        }
        // Coinbase (App API "Error messages").
        "rate_limit_exceeded" | "resource_exhausted" => ErrorKind::RateLimited,
        "internal_server_error" => ErrorKind::ExchangeUnavailable,
        "authentication_error"
        | "invalid_token"
        | "revoked_token"
        | "expired_token"
        | "unauthorized"
        | "invalid_scope" => ErrorKind::Unauthorized,
        "validation_error" | "param_required" | "invalid_request" => ErrorKind::InvalidParameter,
        _ if http_status >= 500 => ErrorKind::ExchangeUnavailable,
        _ if http_status == 429 => ErrorKind::RateLimited,
        _ if http_status == 401 || http_status == 403 => ErrorKind::Unauthorized,
        _ => ErrorKind::Other,
    }
}

/// The documented name of a Binance error code (spot `errors.md` and the wallet error-code page),
/// for the codes this crate's endpoints can return.
pub fn code_name(code: i64) -> Option<&'static str> {
    Some(match code {
        -1000 => "UNKNOWN",
        -1001 => "DISCONNECTED",
        -1002 => "UNAUTHORIZED",
        -1003 => "TOO_MANY_REQUESTS",
        -1004 => "SERVER_BUSY",
        -1006 => "UNEXPECTED_RESP",
        -1007 => "TIMEOUT",
        -1008 => "SERVER_BUSY",
        -1013 => "INVALID_MESSAGE",
        -1016 => "SERVICE_SHUTTING_DOWN",
        -1020 => "UNSUPPORTED_OPERATION",
        -1021 => "INVALID_TIMESTAMP",
        -1022 => "INVALID_SIGNATURE",
        -1100 => "ILLEGAL_CHARS",
        -1101 => "TOO_MANY_PARAMETERS",
        -1102 => "MANDATORY_PARAM_EMPTY_OR_MALFORMED",
        -1103 => "UNKNOWN_PARAM",
        -1104 => "UNREAD_PARAMETERS",
        -1105 => "PARAM_EMPTY",
        -1106 => "PARAM_NOT_REQUIRED",
        -1108 => "PARAM_OVERFLOW",
        -1111 => "BAD_PRECISION",
        -1127 => "MORE_THAN_XX_HOURS",
        -1128 => "OPTIONAL_PARAMS_BAD_COMBO",
        -1130 => "INVALID_PARAMETER",
        -2014 => "BAD_API_KEY_FMT",
        -2015 => "REJECTED_MBX_KEY",
        -4001 => "CAPITAL_INVALID",
        -4002 => "CAPITAL_IG",
        -4004 => "CAPITAL_UA",
        -4005 => "CAPAITAL_TOO_MANY_REQUEST",
        -4006 => "CAPITAL_ONLY_SUPPORT_PRIMARY_ACCOUNT",
        -4007 => "CAPITAL_ADDRESS_VERIFICATION_NOT_PASS",
        -4008 => "CAPITAL_ADDRESS_TAG_VERIFICATION_NOT_PASS",
        -4013 => "CAPITAL_WITHDRAW_2FA_VERIFY",
        -4014 => "CAPITAL_WITHDRAW_LOGIN_DELAY",
        -4015 => "CAPITAL_WITHDRAW_RESTRICTED_MINUTE",
        -4018 => "CAPITAL_WITHDRAW_ASSET_NOT_EXIST",
        -4019 => "CAPITAL_WITHDRAW_ASSET_PROHIBIT",
        -4021 => "CAPITAL_WITHDRAW_AMOUNT_MULTIPLE",
        -4022 => "CAPITAL_WITHDRAW_MIN_AMOUNT",
        -4023 => "CAPITAL_WITHDRAW_MAX_AMOUNT",
        -4024 => "CAPITAL_WITHDRAW_USER_NO_ASSET",
        -4025 => "CAPITAL_WITHDRAW_USER_ASSET_LESS_THAN_ZERO",
        -4026 => "CAPITAL_WITHDRAW_USER_ASSET_NOT_ENOUGH",
        -4028 => "CAPITAL_WITHDRAW_MORE_THAN_FEE",
        -4029 => "CAPITAL_WITHDRAW_NOT_EXIST",
        -4033 => "CAPITAL_WITHDRAW_ILLEGAL_ADDRESS",
        -4035 => "CAPITAL_WITHDRAW_NOT_WHITE_ADDRESS",
        -4038 => "CAPITAL_WITHDRAW_RESEND_EMAIL_TIME_OUT",
        -4041 => "CAPITAL_MINUTE_TOO_SMALL",
        -4042 => "CAPITAL_CHARGE_NOT_RESET",
        -4047 => "CAPITAL_DATE_INTERVAL_LIMIT",
        -5002 => "ASSET_ASSET_NOT_ENOUGH",
        _ => return None,
    })
}
