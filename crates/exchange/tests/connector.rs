//! The Binance connector against a small local HTTP peer that checks each request the way
//! Binance's request-security page says Binance does (API key header, signature over the exact
//! query, timestamp within `recvWindow`) and answers with the documented response shapes.
//!
//! This peer is a test double, used only because the full exchange simulator is a separate
//! crate (`concord-exchange-sim`); an integration test against the simulator belongs beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use concord_exchange::binance::{BinanceClient, WithdrawParams};
use concord_exchange::{
    Connector, DepositStatus, Ed25519Signer, ErrorKind, ExchangeError, HmacSha256Signer, KeyType,
    NoSigner, RequestSigner, WithdrawRequest, WithdrawalStatus, encode_component,
};
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const API_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
const DEPOSIT_ADDRESS: &str = "0x94df8b352de7f46f64b01d3666bf6e936e44ce60";
const DEST: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

enum Verifier {
    Hmac(String),
    Ed25519(VerifyingKey),
}

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    query: String,
    api_key: Option<String>,
}

struct Fake {
    api_key: String,
    verifier: Verifier,
    clock_offset_ms: i64,
    withdrawals: Mutex<Vec<Value>>,
    requests: Mutex<Vec<Recorded>>,
    fail_with: Mutex<Option<(u16, String)>>,
    delay: Mutex<Option<Duration>>,
}

type Reply = (StatusCode, String);

fn reply(status: u16, body: Value) -> Reply {
    (StatusCode::from_u16(status).unwrap(), body.to_string())
}

fn error(status: u16, code: i64, msg: &str) -> Reply {
    reply(status, json!({ "code": code, "msg": msg }))
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Fixed-point value of a decimal string with 18 decimals (the test double's own arithmetic).
fn units(s: &str) -> u128 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<18}");
    int.parse::<u128>().unwrap() * 10u128.pow(18) + frac[..18].parse::<u128>().unwrap()
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Reply {
    let raw_query = uri.query().unwrap_or("").to_owned();
    let path = uri.path().to_owned();
    let api_key = headers
        .get("X-MBX-APIKEY")
        .map(|v| v.to_str().unwrap().to_owned());
    fake.requests.lock().unwrap().push(Recorded {
        method: method.clone(),
        path: path.clone(),
        query: raw_query.clone(),
        api_key: api_key.clone(),
    });
    let delay = *fake.delay.lock().unwrap();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if let Some((status, body)) = fake.fail_with.lock().unwrap().clone() {
        return (StatusCode::from_u16(status).unwrap(), body);
    }
    let server_time = now_ms() + fake.clock_offset_ms;
    if method == Method::GET && path == "/api/v3/time" {
        return reply(200, json!({ "serverTime": server_time }));
    }

    // SIGNED endpoint security, as documented.
    match api_key {
        None => return error(401, -2014, "API-key format invalid."),
        Some(k) if k != fake.api_key => {
            return error(
                401,
                -2015,
                "Invalid API-key, IP, or permissions for action.",
            );
        }
        Some(_) => {}
    }
    let Some((payload, signature_raw)) = raw_query.rsplit_once("&signature=") else {
        return error(
            400,
            -1102,
            "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
        );
    };
    let signature: String = url::form_urlencoded::parse(format!("s={signature_raw}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    let valid = match &fake.verifier {
        Verifier::Hmac(secret) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(payload.as_bytes());
            hex::encode(mac.finalize().into_bytes()).eq_ignore_ascii_case(&signature)
        }
        Verifier::Ed25519(key) => BASE64
            .decode(&signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .is_some_and(|b| {
                key.verify_strict(payload.as_bytes(), &Signature::from_bytes(&b))
                    .is_ok()
            }),
    };
    if !valid {
        return error(400, -1022, "Signature for this request is not valid.");
    }
    let mut params = BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(payload.as_bytes()) {
        if params
            .insert(name.into_owned(), value.into_owned())
            .is_some()
        {
            return error(400, -1101, "Duplicate values for a parameter detected.");
        }
    }
    let Some(timestamp) = params.get("timestamp").and_then(|t| t.parse::<i64>().ok()) else {
        return error(
            400,
            -1102,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        );
    };
    let recv_window: i64 = params
        .get("recvWindow")
        .map_or(5000, |r| r.parse().unwrap());
    if !(timestamp < server_time + 1000 && server_time - timestamp <= recv_window) {
        return error(
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        );
    }

    let param = |name: &str| params.get(name).cloned();
    match (method.as_str(), path.as_str()) {
        ("GET", "/sapi/v1/capital/deposit/address") => {
            let coin = param("coin").unwrap();
            reply(
                200,
                json!({
                    "address": DEPOSIT_ADDRESS,
                    "coin": coin,
                    "tag": "",
                    "url": format!("https://etherscan.io/address/{DEPOSIT_ADDRESS}"),
                }),
            )
        }
        ("POST", "/sapi/v1/capital/withdraw/apply") => {
            let (Some(coin), Some(address), Some(amount)) =
                (param("coin"), param("address"), param("amount"))
            else {
                return error(
                    400,
                    -1102,
                    "Mandatory parameter 'coin' was not sent, was empty/null, or malformed.",
                );
            };
            if units(&amount) > units("10.5") {
                return error(400, -4026, "You have insufficient balance.");
            }
            let mut withdrawals = fake.withdrawals.lock().unwrap();
            let id = format!("b6ae22b3aa844210a7041aee758962{:02}", withdrawals.len());
            let mut record = json!({
                "id": id,
                "amount": amount,
                "transactionFee": "0.004",
                "coin": coin,
                "status": 6,
                "address": address,
                "txId": "0xb5ef8c13b968a406cc62a93a8bd80f9e9a906ef1b3fcf20a2e48573c17659268",
                "applyTime": "2019-10-12 11:12:02",
                "network": param("network").unwrap_or_default(),
                "transferType": 0,
                "info": "",
                "confirmNo": 3,
                "walletType": 1,
                "txKey": "",
                "completeTime": "2023-03-23 16:52:41"
            });
            if let Some(order_id) = param("withdrawOrderId") {
                record["withdrawOrderId"] = json!(order_id);
            }
            withdrawals.push(record);
            reply(200, json!({ "id": id }))
        }
        ("GET", "/sapi/v1/capital/withdraw/history") => {
            let ids: Option<Vec<String>> =
                param("idList").map(|l| l.split(',').map(str::to_owned).collect());
            let order_id = param("withdrawOrderId");
            let list: Vec<Value> = fake
                .withdrawals
                .lock()
                .unwrap()
                .iter()
                .filter(|w| {
                    ids.as_ref()
                        .is_none_or(|ids| ids.iter().any(|i| w["id"] == json!(i)))
                })
                .filter(|w| {
                    order_id
                        .as_ref()
                        .is_none_or(|o| w["withdrawOrderId"] == json!(o))
                })
                .cloned()
                .collect();
            reply(200, Value::Array(list))
        }
        ("GET", "/sapi/v1/capital/deposit/hisrec") => {
            // The two records of the documentation's response example.
            let records = json!([
                {
                    "id": "769800519366885376", "amount": "0.001", "coin": "BNB", "network": "BNB",
                    "status": 1, "address": "bnb136ns6lfw4zs5hg4n85vdthaad7hq5m4gtkgf23",
                    "addressTag": "101764890",
                    "txId": "98A3EA560C6B3336D348B6C83F0F95ECE4F1F5919E94BD006E5BF3BF264FACFC",
                    "insertTime": 1661493146000u64, "completeTime": 1661493146000u64,
                    "transferType": 0, "confirmTimes": "1/1", "unlockConfirm": 0,
                    "walletType": 0, "travelRuleStatus": 0
                },
                {
                    "id": "769754833590042625", "amount": "0.50000000", "coin": "IOTA",
                    "network": "IOTA", "status": 6,
                    "address": "SIZ9VLMHWATXKV99LH99CIGFJFUMLEHGWVZVNNZXRJJVWBPHYWPPBOSDORZ9EQSHCZAMPVAPGFYQAUUV9DROOXJLNW",
                    "addressTag": "",
                    "txId": "ESBFVQUTPIWQNJSPXFNHNYHSQNTGKRVKPRABQWTAXCDWOAKDKYWPTVG9BGXNVNKTLEJGESAVXIKIZ9999",
                    "insertTime": 1599620082000u64, "completeTime": 1661493146000u64,
                    "transferType": 0, "confirmTimes": "1/1", "unlockConfirm": 0,
                    "walletType": 0, "travelRuleStatus": 0
                }
            ]);
            let coin = param("coin");
            let tx = param("txId");
            let list: Vec<Value> = records
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| coin.as_ref().is_none_or(|c| d["coin"] == json!(c)))
                .filter(|d| tx.as_ref().is_none_or(|t| d["txId"] == json!(t)))
                .cloned()
                .collect();
            reply(200, Value::Array(list))
        }
        ("GET", "/api/v3/account") => reply(
            200,
            json!({
                "makerCommission": 15, "takerCommission": 15, "buyerCommission": 0,
                "sellerCommission": 0, "canTrade": true, "canWithdraw": true, "canDeposit": true,
                "brokered": false, "requireSelfTradePrevention": false, "preventSor": false,
                "updateTime": 123456789, "accountType": "SPOT",
                "balances": [
                    { "asset": "ETH", "free": "10.50000000", "locked": "0.00000000" },
                    { "asset": "BTC", "free": "4723846.89208129", "locked": "0.05000000" }
                ],
                "permissions": ["SPOT"], "uid": 354937868
            }),
        ),
        _ => error(
            404,
            -1000,
            "An unknown error occurred while processing the request.",
        ),
    }
}

struct Peer {
    fake: Arc<Fake>,
    url: String,
}

impl Peer {
    fn requests(&self) -> Vec<Recorded> {
        self.fake.requests.lock().unwrap().clone()
    }
    fn last(&self) -> Recorded {
        self.requests().last().cloned().unwrap()
    }
}

async fn start(verifier: Verifier, clock_offset_ms: i64) -> Peer {
    let fake = Arc::new(Fake {
        api_key: API_KEY.to_owned(),
        verifier,
        clock_offset_ms,
        withdrawals: Mutex::new(Vec::new()),
        requests: Mutex::new(Vec::new()),
        fail_with: Mutex::new(None),
        delay: Mutex::new(None),
    });
    let app = Router::new().fallback(handle).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Peer { fake, url }
}

fn hmac_client(peer: &Peer) -> BinanceClient {
    BinanceClient::new(
        &peer.url,
        API_KEY.to_owned(),
        Arc::new(HmacSha256Signer::new(SECRET).unwrap()),
    )
    .unwrap()
}

fn withdraw_request(amount: &str, order_id: &str) -> WithdrawRequest {
    WithdrawRequest {
        coin: "ETH".into(),
        network: "ETH".into(),
        address: DEST.into(),
        amount: amount.into(),
        withdraw_order_id: Some(order_id.into()),
    }
}

/// Splits a recorded query into `(name, raw value)` pairs, in order.
fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect()
}

fn names(query: &str) -> Vec<String> {
    pairs(query).into_iter().map(|(n, _)| n).collect()
}

#[tokio::test]
async fn hmac_client_reads_and_withdraws_as_documented() {
    let peer = start(Verifier::Hmac(SECRET.to_owned()), 0).await;
    let client: Arc<dyn Connector> = Arc::new(hmac_client(&peer));
    assert_eq!(client.exchange(), "binance");

    let address = client.deposit_address("ETH", "ETH").await.unwrap();
    assert_eq!(address.address, DEPOSIT_ADDRESS);
    assert_eq!(
        (address.coin.as_str(), address.network.as_str()),
        ("ETH", "ETH")
    );
    assert_eq!(address.tag, None);
    let req = peer.last();
    assert_eq!(req.method, Method::GET);
    assert_eq!(req.path, "/sapi/v1/capital/deposit/address");
    assert_eq!(req.api_key.as_deref(), Some(API_KEY));
    assert_eq!(
        names(&req.query),
        ["coin", "network", "recvWindow", "timestamp", "signature"]
    );
    assert!(
        req.query
            .starts_with("coin=ETH&network=ETH&recvWindow=5000&timestamp=")
    );

    let balances = client.balances().await.unwrap();
    assert_eq!(balances.len(), 2);
    assert_eq!(balances[0].asset, "ETH");
    assert_eq!(balances[0].free, "10.50000000");
    assert_eq!(balances[1].locked, "0.05000000");
    assert_eq!(peer.last().path, "/api/v3/account");
    assert_eq!(
        names(&peer.last().query),
        ["recvWindow", "timestamp", "signature"]
    );

    let deposits = client.deposits("BNB", None).await.unwrap();
    assert_eq!(deposits.len(), 1);
    assert_eq!(deposits[0].status, DepositStatus::Success);
    assert_eq!(deposits[0].confirmations, "1/1");
    assert_eq!(deposits[0].amount, "0.001");
    let iota = client
        .deposits(
            "IOTA",
            Some(
                "ESBFVQUTPIWQNJSPXFNHNYHSQNTGKRVKPRABQWTAXCDWOAKDKYWPTVG9BGXNVNKTLEJGESAVXIKIZ9999",
            ),
        )
        .await
        .unwrap();
    assert_eq!(iota.len(), 1);
    assert_eq!(iota[0].status, DepositStatus::CreditedCannotWithdraw);
    assert!(iota[0].status.is_credited());
    assert_eq!(iota[0].status.code(), 6);
    assert_eq!(
        names(&peer.last().query),
        ["coin", "txId", "recvWindow", "timestamp", "signature"]
    );

    let id = client
        .withdraw(&withdraw_request("1.25", "transfer-1"))
        .await
        .unwrap();
    let req = peer.last();
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, "/sapi/v1/capital/withdraw/apply");
    let (payload, _) = req.query.rsplit_once("&signature=").unwrap();
    // The payload is exactly a canonical WithdrawParams query.
    let parsed = WithdrawParams::parse(payload).unwrap();
    assert_eq!(parsed.to_request(), withdraw_request("1.25", "transfer-1"));
    assert_eq!(parsed.recv_window_ms, 5000);

    let withdrawal = client.withdrawal(&id).await.unwrap().unwrap();
    assert_eq!(withdrawal.id, id);
    assert_eq!(withdrawal.amount, "1.25");
    assert_eq!(withdrawal.address, DEST);
    assert_eq!(withdrawal.network, "ETH");
    assert_eq!(withdrawal.status, WithdrawalStatus::Completed);
    assert!(withdrawal.status.is_final());
    assert!(withdrawal.tx_id.is_some());
    assert_eq!(withdrawal.withdraw_order_id.as_deref(), Some("transfer-1"));
    assert_eq!(names(&peer.last().query)[0], "idList");
    assert_eq!(client.withdrawal("no-such-id").await.unwrap(), None);
}

#[tokio::test]
async fn withdrawal_found_by_withdraw_order_id() {
    let peer = start(Verifier::Hmac(SECRET.to_owned()), 0).await;
    let client = hmac_client(&peer);
    let id = client
        .withdraw(&withdraw_request("0.5", "order-42"))
        .await
        .unwrap();
    let found = client
        .withdrawal_by_order_id("order-42")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, id);
    assert!(
        peer.last()
            .query
            .starts_with("withdrawOrderId=order-42&recvWindow=")
    );
    assert_eq!(
        client.withdrawal_by_order_id("order-43").await.unwrap(),
        None
    );
}

/// The threshold path: the coordinator's client holds no key, the "group" (here one whole
/// Ed25519 key standing for the FROST group) signs the exact query bytes, the signed request
/// goes out with its base64 signature percent-encoded, and the peer verifies it strictly.
#[tokio::test]
async fn ed25519_signed_elsewhere_is_submitted_and_verified() {
    let group = Ed25519Signer::from_seed(&[42u8; 32]);
    let verifying = VerifyingKey::from_bytes(&group.public_key()).unwrap();
    let peer = start(Verifier::Ed25519(verifying), 0).await;
    let coordinator = BinanceClient::new(
        &peer.url,
        API_KEY.to_owned(),
        Arc::new(NoSigner::new(KeyType::Ed25519)),
    )
    .unwrap();

    let params = coordinator
        .build_withdraw(&withdraw_request("2.5", "transfer-ed"))
        .unwrap();
    let query = params.to_query();
    // A module re-parses what it is asked to sign and gets the same intent back.
    assert_eq!(WithdrawParams::parse(&query).unwrap(), params);
    let signature = group.sign(query.as_bytes()).await.unwrap();

    let id = coordinator
        .submit_signed_withdraw(&query, &signature)
        .await
        .unwrap();
    assert!(!id.is_empty());
    let req = peer.last();
    assert_eq!(
        req.query,
        format!("{query}&signature={}", encode_component(&signature))
    );

    // Same signature, other bytes: the exchange refuses it.
    let tampered = WithdrawParams {
        amount: "9.5".into(),
        ..params.clone()
    };
    let err = coordinator
        .submit_signed_withdraw(&tampered.to_query(), &signature)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExchangeError::Api { code: -1022, .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::BadSignature);
    assert!(!err.retryable());

    // Refused locally, nothing sent: a non-canonical query, a hex signature for an Ed25519 key.
    let sent = peer.requests().len();
    let mut parts: Vec<&str> = query.split('&').collect();
    let n = parts.len();
    parts.swap(n - 1, n - 2);
    let reordered = parts.join("&");
    let err = coordinator
        .submit_signed_withdraw(&reordered, &signature)
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::InvalidRequest(_)), "{err}");
    let err = coordinator
        .submit_signed_withdraw(&format!("{query}&name=x"), &signature)
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::InvalidRequest(_)), "{err}");
    let err = coordinator
        .submit_signed_withdraw(&query, &"ab".repeat(32))
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::InvalidRequest(_)), "{err}");
    // The keyless client cannot sign a request itself.
    let err = coordinator
        .withdraw(&withdraw_request("1", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::Signing(_)), "{err}");
    assert_eq!(peer.requests().len(), sent);
}

#[tokio::test]
async fn ed25519_client_with_its_own_key_signs_every_call() {
    let pem = std::fs::read_to_string(format!(
        "{}/tests/fixtures/test-ed25519-prv-key.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let signer = Ed25519Signer::from_pkcs8_pem(&pem).unwrap();
    let peer = start(
        Verifier::Ed25519(VerifyingKey::from_bytes(&signer.public_key()).unwrap()),
        0,
    )
    .await;
    let client = BinanceClient::new(&peer.url, API_KEY.to_owned(), Arc::new(signer)).unwrap();
    assert_eq!(client.key_type(), KeyType::Ed25519);
    client.deposit_address("ETH", "ETH").await.unwrap();
    client.balances().await.unwrap();
    client.withdraw(&withdraw_request("1", "w")).await.unwrap();
}

#[tokio::test]
async fn wrong_key_and_wrong_secret_are_refused_and_not_retryable() {
    let peer = start(Verifier::Hmac(SECRET.to_owned()), 0).await;
    let wrong_key = BinanceClient::new(
        &peer.url,
        "someone-elses-key".to_owned(),
        Arc::new(HmacSha256Signer::new(SECRET).unwrap()),
    )
    .unwrap();
    let err = wrong_key.balances().await.unwrap_err();
    assert!(
        matches!(
            err,
            ExchangeError::Api {
                code: -2015,
                http_status: 401,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(!err.retryable());

    let wrong_secret = BinanceClient::new(
        &peer.url,
        API_KEY.to_owned(),
        Arc::new(HmacSha256Signer::new("not-the-secret").unwrap()),
    )
    .unwrap();
    let err = wrong_secret
        .deposit_address("ETH", "ETH")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExchangeError::Api { code: -1022, .. }),
        "{err}"
    );
    assert!(!err.retryable());
}

#[tokio::test]
async fn clock_skew_gives_a_retryable_timestamp_error_and_an_offset_fixes_it() {
    // The exchange's clock runs 70 s ahead of ours: every request is outside recvWindow.
    let peer = start(Verifier::Hmac(SECRET.to_owned()), 70_000).await;
    let client = hmac_client(&peer);
    let err = client.balances().await.unwrap_err();
    assert!(
        matches!(err, ExchangeError::Api { code: -1021, .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Timestamp);
    assert!(err.retryable());

    let server = client.server_time().await.unwrap();
    let offset = i64::try_from(server).unwrap() - now_ms();
    assert!((69_000..=71_000).contains(&offset), "{offset}");
    let client = client.with_time_offset_ms(offset);
    client.balances().await.unwrap();
}

#[tokio::test]
async fn recv_window_is_configurable_within_the_documented_bounds() {
    let peer = start(Verifier::Hmac(SECRET.to_owned()), 0).await;
    let client = hmac_client(&peer).with_recv_window_ms(10_000).unwrap();
    assert_eq!(client.recv_window_ms(), 10_000);
    client.balances().await.unwrap();
    assert!(peer.last().query.starts_with("recvWindow=10000&timestamp="));
    let timestamp: u64 = pairs(&peer.last().query)[1].1.parse().unwrap();
    assert!(timestamp.abs_diff(u64::try_from(now_ms()).unwrap()) < 5_000);

    assert!(matches!(
        hmac_client(&peer).with_recv_window_ms(0),
        Err(ExchangeError::Config(_))
    ));
    assert!(matches!(
        hmac_client(&peer).with_recv_window_ms(60_001),
        Err(ExchangeError::Config(_))
    ));
}

#[tokio::test]
async fn insufficient_balance_is_not_retryable() {
    let peer = start(Verifier::Hmac(SECRET.to_owned()), 0).await;
    let err = hmac_client(&peer)
        .withdraw(&withdraw_request("11", "too-much"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExchangeError::Api { code: -4026, .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::InsufficientBalance);
    assert!(!err.retryable());
}

#[tokio::test]
async fn invalid_withdraw_requests_are_refused_before_sending() {
    let peer = start(Verifier::Hmac(SECRET.to_owned()), 0).await;
    let client = hmac_client(&peer);
    for amount in ["0", "-1", "1e3", "1,5", ""] {
        let err = client
            .withdraw(&withdraw_request(amount, "x"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ExchangeError::InvalidRequest(_)),
            "{amount}: {err}"
        );
    }
    let mut no_network = withdraw_request("1", "x");
    no_network.network.clear();
    assert!(client.withdraw(&no_network).await.is_err());
    assert!(client.deposit_address("ETH", "").await.is_err());
    assert!(peer.requests().is_empty());
}

#[tokio::test]
async fn server_errors_and_firewall_pages_keep_their_status() {
    let peer = start(Verifier::Hmac(SECRET.to_owned()), 0).await;
    let client = hmac_client(&peer);
    *peer.fake.fail_with.lock().unwrap() = Some((502, "<html>Bad Gateway</html>".to_owned()));
    let err = client
        .withdraw(&withdraw_request("1", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExchangeError::Http { status: 502, .. }),
        "{err}"
    );
    assert!(err.retryable());
    assert!(err.outcome_unknown());

    *peer.fake.fail_with.lock().unwrap() = Some((403, "Request blocked".to_owned()));
    let err = client.balances().await.unwrap_err();
    assert!(
        matches!(err, ExchangeError::Http { status: 403, .. }),
        "{err}"
    );
    assert!(!err.retryable());

    // A success status with a body of the wrong shape.
    *peer.fake.fail_with.lock().unwrap() = Some((200, r#"{"unexpected":true}"#.to_owned()));
    let err = client.balances().await.unwrap_err();
    assert!(matches!(err, ExchangeError::Decode(_)), "{err}");
    // A success status carrying Binance's error body keeps the code.
    *peer.fake.fail_with.lock().unwrap() = Some((
        200,
        r#"{"code":-1008,"msg":"Server is currently overloaded."}"#.to_owned(),
    ));
    let err = client.balances().await.unwrap_err();
    assert!(
        matches!(err, ExchangeError::Api { code: -1008, .. }),
        "{err}"
    );
    assert!(err.retryable());
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transport_errors() {
    let peer = start(Verifier::Hmac(SECRET.to_owned()), 0).await;
    *peer.fake.delay.lock().unwrap() = Some(Duration::from_secs(2));
    let client = hmac_client(&peer)
        .with_timeout(Duration::from_millis(200))
        .unwrap();
    let err = client
        .withdraw(&withdraw_request("1", "slow"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ExchangeError::Transport {
                timed_out: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.retryable());
    assert!(err.outcome_unknown());

    // A port nobody listens on.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let closed = BinanceClient::new(
        &format!("http://{addr}"),
        API_KEY.to_owned(),
        Arc::new(HmacSha256Signer::new(SECRET).unwrap()),
    )
    .unwrap();
    let err = closed.balances().await.unwrap_err();
    assert!(
        matches!(
            err,
            ExchangeError::Transport {
                timed_out: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.retryable());
    assert!(!err.outcome_unknown());
}

#[test]
fn configuration_is_checked() {
    let signer: Arc<dyn RequestSigner> = Arc::new(HmacSha256Signer::new(SECRET).unwrap());
    for bad in [
        "not a url",
        "ftp://example.com",
        "http://h/?q=1",
        "unix:/tmp/x",
    ] {
        assert!(
            matches!(
                BinanceClient::new(bad, API_KEY.to_owned(), signer.clone()),
                Err(ExchangeError::Config(_))
            ),
            "{bad}"
        );
    }
    assert!(BinanceClient::new("http://127.0.0.1:1", String::new(), signer.clone()).is_err());
    assert!(
        BinanceClient::new(
            "http://127.0.0.1:1",
            "key\nX-Other: 1".into(),
            signer.clone()
        )
        .is_err()
    );
    let client = BinanceClient::new("http://127.0.0.1:1/", API_KEY.to_owned(), signer).unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains(API_KEY), "{shown}");
    assert!(shown.contains("<redacted>"));
}
