//! Binance error bodies, as the documentation records them, mapped to errors that say whether a
//! retry can help.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use concord_exchange::binance::parse_error_body;
use concord_exchange::{ErrorKind, ExchangeError, code_name};

struct Case {
    status: u16,
    body: &'static str,
    code: i64,
    kind: ErrorKind,
    retryable: bool,
    outcome_unknown: bool,
}

const CASES: &[Case] = &[
    Case {
        status: 400,
        body: r#"{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}"#,
        code: -1021,
        kind: ErrorKind::Timestamp,
        retryable: true,
        outcome_unknown: false,
    },
    Case {
        status: 400,
        body: r#"{"code":-1021,"msg":"Timestamp for this request was 1000ms ahead of the server's time."}"#,
        code: -1021,
        kind: ErrorKind::Timestamp,
        retryable: true,
        outcome_unknown: false,
    },
    Case {
        status: 429,
        body: r#"{"code":-1003,"msg":"Too much request weight used; current limit is 1200 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."}"#,
        code: -1003,
        kind: ErrorKind::RateLimited,
        retryable: true,
        outcome_unknown: false,
    },
    Case {
        status: 418,
        body: r#"{"code":-1003,"msg":"Way too much request weight used; IP banned until 1700000000000. Please use WebSocket Streams for live updates to avoid bans."}"#,
        code: -1003,
        kind: ErrorKind::RateLimited,
        retryable: false,
        outcome_unknown: false,
    },
    Case {
        status: 400,
        body: r#"{"code":-1022,"msg":"Signature for this request is not valid."}"#,
        code: -1022,
        kind: ErrorKind::BadSignature,
        retryable: false,
        outcome_unknown: false,
    },
    Case {
        status: 401,
        body: r#"{"code":-2014,"msg":"API-key format invalid."}"#,
        code: -2014,
        kind: ErrorKind::Unauthorized,
        retryable: false,
        outcome_unknown: false,
    },
    Case {
        status: 401,
        body: r#"{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}"#,
        code: -2015,
        kind: ErrorKind::Unauthorized,
        retryable: false,
        outcome_unknown: false,
    },
    Case {
        status: 400,
        body: r#"{"code":-4026,"msg":"You have insufficient balance."}"#,
        code: -4026,
        kind: ErrorKind::InsufficientBalance,
        retryable: false,
        outcome_unknown: false,
    },
    Case {
        status: 400,
        body: r#"{"code":-1102,"msg":"Mandatory parameter 'address' was not sent, was empty/null, or malformed."}"#,
        code: -1102,
        kind: ErrorKind::InvalidParameter,
        retryable: false,
        outcome_unknown: false,
    },
    Case {
        status: 400,
        body: r#"{"code":-1101,"msg":"Duplicate values for a parameter detected."}"#,
        code: -1101,
        kind: ErrorKind::InvalidParameter,
        retryable: false,
        outcome_unknown: false,
    },
    Case {
        status: 400,
        body: r#"{"code":-4022,"msg":"Not less than the minimum pick-up quantity 0.01."}"#,
        code: -4022,
        kind: ErrorKind::InvalidParameter,
        retryable: false,
        outcome_unknown: false,
    },
    Case {
        status: 500,
        body: r#"{"code":-1001,"msg":"Internal error; unable to process your request. Please try again."}"#,
        code: -1001,
        kind: ErrorKind::ExchangeUnavailable,
        retryable: true,
        outcome_unknown: true,
    },
    Case {
        status: 503,
        body: r#"{"code":-1007,"msg":"Timeout waiting for response from backend server. Send status unknown; execution status unknown."}"#,
        code: -1007,
        kind: ErrorKind::ExchangeUnavailable,
        retryable: true,
        outcome_unknown: true,
    },
    Case {
        status: 400,
        body: r#"{"code":-1008,"msg":"Server is currently overloaded with other requests. Please try again in a few minutes."}"#,
        code: -1008,
        kind: ErrorKind::ExchangeUnavailable,
        retryable: true,
        outcome_unknown: false,
    },
];

#[test]
fn documented_error_bodies_map_to_api_errors() {
    for case in CASES {
        let error = parse_error_body(case.status, case.body);
        let ExchangeError::Api {
            code,
            ref msg,
            http_status,
        } = error
        else {
            panic!("{} did not map to an API error: {error:?}", case.body);
        };
        assert_eq!(code, case.code, "{}", case.body);
        assert_eq!(http_status, case.status);
        assert!(case.body.contains(msg.as_str()) && !msg.is_empty());
        assert_eq!(error.kind(), case.kind, "{}", case.body);
        assert_eq!(error.retryable(), case.retryable, "{}", case.body);
        assert_eq!(
            error.outcome_unknown(),
            case.outcome_unknown,
            "{}",
            case.body
        );
        // The message reads as a sentence naming the documented code.
        let shown = error.to_string();
        assert!(shown.contains(&case.code.to_string()), "{shown}");
        assert!(shown.contains(code_name(case.code).unwrap()), "{shown}");
    }
}

#[test]
fn bodies_that_are_not_binance_errors_keep_the_http_status() {
    let waf = parse_error_body(403, "<html><body>Request blocked</body></html>");
    assert!(matches!(waf, ExchangeError::Http { status: 403, .. }));
    assert!(!waf.retryable());
    assert_eq!(waf.kind(), ErrorKind::Unauthorized);

    let gateway = parse_error_body(502, "Bad Gateway");
    assert!(gateway.retryable());
    assert!(gateway.outcome_unknown());

    let empty_429 = parse_error_body(429, "");
    assert!(empty_429.retryable());
    assert_eq!(empty_429.kind(), ErrorKind::RateLimited);

    let long = "x".repeat(5000);
    let ExchangeError::Http { body, .. } = parse_error_body(500, &long) else {
        panic!("not an HTTP error");
    };
    assert_eq!(body.len(), 512);
}

#[test]
fn unknown_codes_follow_the_http_status() {
    let e = parse_error_body(400, r#"{"code":-9999,"msg":"new"}"#);
    assert!(!e.retryable());
    assert_eq!(e.kind(), ErrorKind::Other);
    assert!(e.to_string().contains("undocumented code"));
    let e = parse_error_body(504, r#"{"code":-9999,"msg":"new"}"#);
    assert!(e.retryable());
    assert_eq!(e.kind(), ErrorKind::ExchangeUnavailable);
}

#[test]
fn local_errors_are_not_retryable() {
    for e in [
        ExchangeError::InvalidRequest("x".into()),
        ExchangeError::InvalidKey("x".into()),
        ExchangeError::Config("x".into()),
        ExchangeError::Signing("x".into()),
        ExchangeError::Decode("x".into()),
    ] {
        assert!(!e.retryable(), "{e}");
        assert!(!e.outcome_unknown(), "{e}");
    }
    let refused = ExchangeError::Transport {
        message: "connection refused".into(),
        timed_out: false,
    };
    assert!(refused.retryable() && !refused.outcome_unknown());
    let timeout = ExchangeError::Transport {
        message: "timed out".into(),
        timed_out: true,
    };
    assert!(timeout.retryable() && timeout.outcome_unknown());
}
