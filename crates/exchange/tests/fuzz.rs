//! Fuzz harnesses for what the exchange crate parses from outside: the withdraw request a
//! module is asked to co-sign (`WithdrawParams::parse`, with its percent-decoding and amount
//! syntax) and Binance's answers (`binance::answers`, plus the connector types as they travel
//! in a module's `ExchangeAnswer`).
//!
//! Each `#[test]` is a bolero target: a bounded number of generated cases under
//! `cargo test`/`cargo nextest`; coverage-guided (libFuzzer) under `scripts/fuzz.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bolero::{TypeGenerator, check};
use concord_exchange::binance::{WithdrawParams, answers, parse_error_body};
use concord_exchange::{
    Balance, Deposit, DepositAddress, DepositStatus, ExchangeError, Withdrawal, WithdrawalStatus,
    decode_canonical, encode_component, is_positive_decimal,
};

const CASES: usize = 20000;

/// One edit of a seed document.
#[derive(Debug, Clone, TypeGenerator)]
enum Edit {
    Set { at: u16, byte: u8 },
    Insert { at: u16, byte: u8 },
    Remove { at: u16 },
    Token { at: u16, token: u8 },
    Truncate { at: u16 },
}

const TOKENS: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "0",
    "-1",
    "null",
    "true",
    "\\u0000",
    "\\ud800",
    "1e5",
    " ",
    "%",
    "%2",
    "%2F",
    "%41",
    "%e2",
    "&",
    "=",
    "&&",
    "signature=",
    "00",
    ".",
    "é",
    "18446744073709551616",
    "\"code\":-1121,",
    "\"msg\":\"x\"",
];

fn apply(seed: &str, edits: &[Edit]) -> String {
    let mut out = seed.as_bytes().to_vec();
    for e in edits {
        let pos = |at: u16, len: usize| usize::from(at) % (len + 1);
        match *e {
            Edit::Set { at, byte } => {
                if !out.is_empty() {
                    let i = usize::from(at) % out.len();
                    out[i] = byte;
                }
            }
            Edit::Insert { at, byte } => {
                let i = pos(at, out.len());
                out.insert(i, byte);
            }
            Edit::Remove { at } => {
                if !out.is_empty() {
                    let i = usize::from(at) % out.len();
                    out.remove(i);
                }
            }
            Edit::Token { at, token } => {
                let i = pos(at, out.len());
                let t = TOKENS[usize::from(token) % TOKENS.len()];
                out.splice(i..i, t.bytes());
            }
            Edit::Truncate { at } => {
                let i = pos(at, out.len());
                out.truncate(i);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pick<'a>(items: &[&'a str], i: u8) -> &'a str {
    items[usize::from(i) % items.len()]
}

// ---------------------------------------------------------------------------------------------
// Withdraw requests

const QUERIES: &[&str] = &[
    "coin=ETH&withdrawOrderId=intent-1&network=ETH&address=0x1111111111111111111111111111111111111111&amount=0.5&recvWindow=5000&timestamp=1750000000000",
    "coin=BTC&network=BTC&address=bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4&amount=12.000000000000000001&recvWindow=60000&timestamp=1",
    "coin=USDT&withdrawOrderId=a.b_c-d&network=TRX&address=T%2Fx%3Dy%2B%21&amount=100&recvWindow=1&timestamp=18446744073709551615",
];

#[derive(Debug, TypeGenerator)]
enum WithdrawInput {
    Raw(String),
    Mutated {
        seed: u8,
        edits: Vec<Edit>,
    },
    Built {
        coin: String,
        network: String,
        address: String,
        amount: String,
        withdraw_order_id: Option<String>,
        timestamp_ms: u64,
        recv_window_ms: u64,
    },
    Component(String),
    Decimal(String),
}

fn check_query(q: &str) {
    match WithdrawParams::parse(q) {
        Ok(p) => {
            // Only strings `to_query` could have written are accepted: one request, one
            // encoding, so what a module checked is byte for byte what it signs.
            assert_eq!(p.to_query(), q, "an accepted withdraw query is canonical");
            p.validate().expect("accepted parameters re-validate");
            assert!(is_positive_decimal(&p.amount));
            assert!(p.recv_window_ms >= 1 && p.recv_window_ms <= 60_000);
            assert!(!p.address.is_empty() && p.address.len() <= 128);
            let r = p.to_request();
            assert_eq!(
                (&r.coin, &r.network, &r.address, &r.amount),
                (&p.coin, &p.network, &p.address, &p.amount)
            );
        }
        Err(ExchangeError::InvalidRequest(_)) => {}
        Err(e) => panic!("unexpected kind of refusal: {e:?}"),
    }
}

/// `WithdrawParams::parse` (what a module checks before co-signing a withdraw request),
/// `decode_canonical`/`encode_component` and `is_positive_decimal`.
#[test]
fn withdraw_request() {
    for q in QUERIES {
        WithdrawParams::parse(q).expect("the seeds parse");
    }
    check!()
        .with_type::<WithdrawInput>()
        .with_iterations(CASES)
        .for_each(|input| match input {
            WithdrawInput::Raw(q) => check_query(q),
            WithdrawInput::Mutated { seed, edits } => {
                check_query(&apply(pick(QUERIES, *seed), edits))
            }
            WithdrawInput::Built {
                coin,
                network,
                address,
                amount,
                withdraw_order_id,
                timestamp_ms,
                recv_window_ms,
            } => {
                let p = WithdrawParams {
                    coin: coin.clone(),
                    network: network.clone(),
                    address: address.clone(),
                    amount: amount.clone(),
                    withdraw_order_id: withdraw_order_id.clone(),
                    timestamp_ms: *timestamp_ms,
                    recv_window_ms: *recv_window_ms % 70_000,
                };
                let q = p.to_query();
                match (p.validate(), WithdrawParams::parse(&q)) {
                    (Ok(()), Ok(parsed)) => assert_eq!(parsed, p),
                    (Err(_), Err(_)) => {}
                    (v, r) => panic!("validate {v:?} disagrees with parse {r:?}"),
                }
                check_query(&q);
            }
            WithdrawInput::Component(s) => {
                let encoded = encode_component(s);
                assert!(
                    encoded
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b))
                );
                assert_eq!(decode_canonical(&encoded, "x").unwrap(), *s);
                if let Ok(decoded) = decode_canonical(s, "x") {
                    assert_eq!(
                        encode_component(&decoded),
                        *s,
                        "only the canonical form decodes"
                    );
                }
            }
            WithdrawInput::Decimal(s) => {
                if is_positive_decimal(s) {
                    assert!(s.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
                    assert!(s.bytes().filter(|b| *b == b'.').count() <= 1);
                    assert!(!s.starts_with('.') && !s.ends_with('.'));
                    assert!(s.bytes().any(|b| (b'1'..=b'9').contains(&b)));
                }
            }
        });
}

// ---------------------------------------------------------------------------------------------
// Exchange answers

const ANSWERS: &[&str] = &[
    r#"{"serverTime":1750000000000}"#,
    r#"{"address":"0x1111111111111111111111111111111111111111","coin":"ETH","tag":"","url":"https://etherscan.io"}"#,
    r#"{"address":"rXYZ","coin":"XRP","tag":"12345"}"#,
    r#"{"id":"7213fea8e94b4a5593d507237e5a555b"}"#,
    r#"[{"id":"b6ae22b3aa844210a7041aee7589627c","amount":"8.91000000","transactionFee":"0.004","coin":"USDT","status":6,"address":"0x94df8b352de7f46f64b01d3666bf6e936e44ce60","txId":"0xb5ef8c13b968a406cc62a93a8bd80f9e9a906ef1b3fcf20a2e48573c17659268","applyTime":"2019-10-12 11:12:02","network":"ETH","transferType":0,"withdrawOrderId":"WITHDRAWtest123","info":"The address is not valid.","confirmNo":3,"walletType":1,"txKey":"","completeTime":"2023-03-23 16:52:41"},{"id":"x","amount":"1","coin":"BTC","status":99,"address":"a","txId":"","withdrawOrderId":""}]"#,
    r#"[{"id":"769800519366885376","amount":"0.001","coin":"BNB","network":"BNB","status":1,"address":"bnb136ns6lfw4zs5hg4n85vdthaad7hq5m4gtkgf23","addressTag":"101764890","txId":"98A3EA560C6B3336D348B6C83F0F95ECE4F1F5919E94BD006E5BF3BF264FACFC","insertTime":1661493146000,"transferType":0,"confirmTimes":"1/1","unlockConfirm":0,"walletType":0}]"#,
    r#"{"makerCommission":15,"balances":[{"asset":"BTC","free":"4723846.89208129","locked":"0.00000000"},{"asset":"LTC","free":"4763368.68006011","locked":"0.00000000"}],"permissions":["SPOT"]}"#,
    r#"{"code":-1121,"msg":"Invalid symbol."}"#,
    r#"<html><body>502 Bad Gateway</body></html>"#,
    r#"[]"#,
    // Kraken: results and errors (HTTP 200 either way).
    r#"{"error":[],"result":{"XETH":"1.5000000000","USDT":"10.00"}}"#,
    r#"{"error":["EAPI:Invalid nonce"]}"#,
    r#"{"error":["EFunding:Unknown withdraw key","EGeneral:Invalid arguments"],"result":{}}"#,
    r#"{"error":[],"result":[{"address":"0x1111111111111111111111111111111111111111","expiretm":"0"}]}"#,
    // Coinbase: data, lists and errors.
    r#"{"data":{"id":"2bbf394c-193b-5b2a-9155-3b4732659ede","type":"send","status":"pending","amount":{"amount":"-0.1","currency":"ETH"}}}"#,
    r#"{"pagination":{"next_uri":null},"data":[{"id":"a","currency":{"code":"ETH"},"balance":{"amount":"1","currency":"ETH"}}]}"#,
    r#"{"errors":[{"id":"validation_error","message":"Please enter a valid email or bitcoin address"}]}"#,
    r#"{"errors":[{"id":"invalid_scope","message":"Invalid scope","url":"http://developers.coinbase.com/api#permissions"}]}"#,
];

/// What a module answers the coordinator's exchange queries with (`ExchangeAnswer.json`).
const CONNECTOR_JSON: &[&str] = &[
    r#"[{"asset":"ETH","free":"1.5","locked":"0"}]"#,
    r#"{"id":"w1","coin":"ETH","network":"ETH","address":"0x11","amount":"0.5","status":{"unknown":99},"tx_id":null,"withdraw_order_id":"i-1"}"#,
    r#"{"id":"w1","coin":"ETH","network":"ETH","address":"0x11","amount":"0.5","status":"completed","tx_id":"0xab","withdraw_order_id":null}"#,
    r#"[{"coin":"ETH","network":"ETH","address":"0x11","amount":"1","tx_id":"0xab","status":"success","confirmations":"12/12"}]"#,
    r#"{"coin":"ETH","network":"ETH","address":"0x11","tag":null}"#,
    "null",
];

#[derive(Debug, TypeGenerator)]
enum AnswerInput {
    Raw {
        endpoint: u8,
        status: u16,
        body: String,
    },
    Mutated {
        endpoint: u8,
        status: u8,
        seed: u8,
        edits: Vec<Edit>,
    },
    Connector {
        seed: u8,
        edits: Vec<Edit>,
    },
}

fn round_trips<T>(v: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string(v).unwrap();
    assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), v, "{json}");
}

fn check_withdrawal(w: &Withdrawal) {
    assert_eq!(WithdrawalStatus::from_code(w.status.code()), w.status);
    assert_ne!(w.tx_id.as_deref(), Some(""));
    assert_ne!(w.withdraw_order_id.as_deref(), Some(""));
    round_trips(w);
}

fn check_deposit(d: &Deposit) {
    assert_eq!(DepositStatus::from_code(d.status.code()), d.status);
    round_trips(d);
}

fn check_answer(endpoint: u8, status: u16, body: &str) {
    let ok = (200..300).contains(&status);
    let check_err = |e: &ExchangeError| match e {
        ExchangeError::Api { http_status, .. } => assert_eq!(*http_status, status),
        ExchangeError::Http { status: s, body } => {
            assert!(!ok);
            assert_eq!(*s, status);
            assert!(body.chars().count() <= 512, "the kept body is bounded");
        }
        ExchangeError::Decode(_) => assert!(ok),
        e => panic!("unexpected kind of error: {e:?}"),
    };
    match endpoint % 6 {
        0 => match answers::server_time(status, body) {
            Ok(_) => assert!(ok),
            Err(e) => check_err(&e),
        },
        1 => match answers::deposit_address("ETH", "ETH", status, body) {
            Ok(a) => {
                assert!(ok);
                assert!(a.coin.eq_ignore_ascii_case("ETH"));
                assert!(!a.address.is_empty());
                assert_eq!(a.network, "ETH");
                assert_ne!(a.tag.as_deref(), Some(""));
                round_trips(&a);
            }
            Err(e) => check_err(&e),
        },
        2 => match answers::withdraw_id(status, body) {
            Ok(id) => assert!(ok && !id.is_empty()),
            Err(e) => check_err(&e),
        },
        3 => match answers::withdrawals(status, body) {
            Ok(list) => {
                assert!(ok);
                list.iter().for_each(check_withdrawal);
            }
            Err(e) => check_err(&e),
        },
        4 => match answers::deposits(status, body) {
            Ok(list) => {
                assert!(ok);
                list.iter().for_each(check_deposit);
            }
            Err(e) => check_err(&e),
        },
        _ => match answers::balances(status, body) {
            Ok(list) => {
                assert!(ok);
                list.iter().for_each(round_trips);
            }
            Err(e) => check_err(&e),
        },
    }
    let e = parse_error_body(status, body);
    if let ExchangeError::Http { body: kept, .. } = &e {
        assert!(kept.chars().count() <= 512);
    }
    let _ = (e.to_string(), e.kind());
    check_named_answers(status, body);
}

/// Kraken's and Coinbase's readers on the same answer: a result only from a success status
/// (Kraken: and an empty `error`), errors keep the status, every kept text is bounded, and
/// retryability is decided without panic.
fn check_named_answers(status: u16, body: &str) {
    let ok = (200..300).contains(&status);
    let check = |e: &ExchangeError, exchange: &str| {
        match e {
            ExchangeError::Refused {
                exchange: x,
                error,
                message,
                http_status,
            } => {
                assert_eq!(*x, exchange);
                assert_eq!(*http_status, status);
                assert!(error.chars().count() <= 256 && message.chars().count() <= 2 * 256 * 64);
            }
            ExchangeError::Http { status: s, body } => {
                assert!(!ok);
                assert_eq!(*s, status);
                assert!(body.chars().count() <= 512);
            }
            ExchangeError::Decode(_) => {}
            e => panic!("unexpected kind of error from {exchange}: {e:?}"),
        }
        let _ = (e.retryable(), e.outcome_unknown(), e.kind(), e.to_string());
    };
    match concord_exchange::kraken::answers::read::<serde_json::Value>(status, body) {
        Ok(_) => assert!(ok),
        Err(e) => check(&e, "kraken"),
    }
    match concord_exchange::coinbase::answers::read::<serde_json::Value>(status, body) {
        Ok(_) => assert!(ok),
        Err(e) => check(&e, "coinbase"),
    }
}

/// What a module will sign for Coinbase: only canonical bytes parse, and what parses is a
/// token of one key, for one request, living at most two minutes.
#[derive(Debug, TypeGenerator)]
enum ClaimsInput {
    Raw(String),
    Built {
        key: String,
        method: u8,
        host: String,
        path: String,
        nbf: u64,
        life: u16,
    },
    Mutated {
        edits: Vec<Edit>,
    },
}

#[test]
fn cdp_claims() {
    use concord_exchange::coinbase::{JwtAlg, MAX_LIFETIME_SECS, RequestClaims};
    let seed = RequestClaims::new(
        "organizations/o/apiKeys/k",
        JwtAlg::Es256,
        "POST",
        "api.coinbase.com",
        "/v2/accounts/2bbf394c-193b-5b2a-9155-3b4732659ede/transactions",
        1_700_000_000,
    )
    .signing_input();
    let accepted = |input: &str| {
        if let Ok(c) = RequestClaims::parse(input) {
            assert_eq!(c.signing_input(), input, "only canonical bytes parse");
            assert!(c.exp > c.nbf && c.exp - c.nbf <= MAX_LIFETIME_SECS);
            assert!(!c.key_name.is_empty());
            assert!(!c.path.contains('?') && c.path.starts_with('/'));
            assert!(!c.host.contains("://"));
        }
    };
    // The body of a send the modules sign a token for: only its canonical bytes parse.
    let body_seed = r#"{"type":"send","to":"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed","amount":"0.25","currency":"ETH","network":"ethereum","idem":"2af77b41ba64a53442a5a7bcbb9ef75a"}"#;
    let body_accepted = |input: &str| {
        if let Ok(b) = concord_exchange::coinbase::SendBody::parse(input) {
            assert_eq!(b.to_json(), input, "only canonical bodies parse");
            assert_eq!(b.kind, "send");
            assert!(!b.amount.starts_with('-') && !b.amount.is_empty());
        }
    };
    assert!(concord_exchange::coinbase::SendBody::parse(body_seed).is_ok());
    check!()
        .with_type::<ClaimsInput>()
        .with_iterations(CASES)
        .for_each(|input| match input {
            ClaimsInput::Raw(text) => {
                accepted(text);
                body_accepted(text);
            }
            ClaimsInput::Mutated { edits } => {
                accepted(&apply(&seed, edits));
                body_accepted(&apply(body_seed, edits));
            }
            ClaimsInput::Built {
                key,
                method,
                host,
                path,
                nbf,
                life,
            } => {
                let method = ["GET", "POST", "PUT", "DELETE", "PATCH"][usize::from(*method) % 5];
                let mut c = RequestClaims::new(key, JwtAlg::EdDsa, method, host, path, *nbf);
                c.exp = nbf.saturating_add(u64::from(*life));
                let input = c.signing_input();
                accepted(&input);
                // Built from acceptable parts, it parses back to itself.
                let fine = !key.is_empty()
                    && method != "PATCH"
                    && *life >= 1
                    && u64::from(*life) <= MAX_LIFETIME_SECS
                    && c.exp > *nbf
                    && !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
                    && path.starts_with('/')
                    && !path.contains(['?', '#', ' '])
                    && input.len() <= 4096;
                if fine {
                    assert_eq!(RequestClaims::parse(&input).unwrap(), c);
                }
            }
        });
}

fn check_connector_json(json: &str) {
    if let Ok(v) = serde_json::from_str::<Vec<Balance>>(json) {
        v.iter().for_each(round_trips);
    }
    if let Ok(Some(w)) = serde_json::from_str::<Option<Withdrawal>>(json) {
        check_withdrawal(&w);
    }
    if let Ok(v) = serde_json::from_str::<Vec<Deposit>>(json) {
        v.iter().for_each(check_deposit);
    }
    if let Ok(a) = serde_json::from_str::<DepositAddress>(json) {
        round_trips(&a);
    }
}

/// Binance's answers as the connector reads them (`binance::answers`, `parse_error_body`),
/// and the connector's values as a module sends them to the coordinator (JSON).
#[test]
fn exchange_answers() {
    check!()
        .with_type::<AnswerInput>()
        .with_iterations(CASES)
        .for_each(|input| match input {
            AnswerInput::Raw {
                endpoint,
                status,
                body,
            } => check_answer(*endpoint, *status, body),
            AnswerInput::Mutated {
                endpoint,
                status,
                seed,
                edits,
            } => {
                let status =
                    [200, 200, 200, 201, 400, 403, 418, 429, 500, 503][usize::from(*status) % 10];
                check_answer(*endpoint, status, &apply(pick(ANSWERS, *seed), edits));
            }
            AnswerInput::Connector { seed, edits } => {
                check_connector_json(&apply(pick(CONNECTOR_JSON, *seed), edits))
            }
        });
}
