//! Helpers shared by the API tests: an in-memory coordinator with an admin token, calls
//! through the router without a socket (each answer checked against the API's OpenAPI
//! document, [`openapi`]), a local chain (anvil), and a stand-in module that answers exchange
//! questions over the coordinator's hub.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test uses some

use axum::body::Body;
use axum::http::{Request, StatusCode};
use concord_coordinator::records::ModuleRecord;
use concord_coordinator::store::Store;
use concord_coordinator::{Coordinator, api};
use concord_wire::rpc::{ExchangeAnswer, ExchangeQuery, coordinator_to_module};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

pub mod openapi;

/// A coordinator over an in-memory store, and an admin token.
pub async fn setup() -> (Coordinator, String) {
    let store = Store::open_in_memory().await.unwrap();
    let c = Coordinator::new(store, Default::default()).await.unwrap();
    with_admin(c).await
}

/// `c` and an admin token for it.
pub async fn with_admin(c: Coordinator) -> (Coordinator, String) {
    let token = api::create_token(&c, "test", api::TokenRole::Admin)
        .await
        .unwrap();
    (c, token)
}

/// A token of `role` for `c`.
pub async fn token(c: &Coordinator, name: &str, role: api::TokenRole) -> String {
    api::create_token(c, name, role).await.unwrap()
}

/// Sends a request through the API router; the status and the JSON body (`null` if none),
/// after checking them against the API's OpenAPI document ([`openapi::check_answer`]).
pub async fn call(c: &Coordinator, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let resp = api::router(c.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let text = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    // A text answer (the metrics) as a JSON string; every other answer is JSON.
    let body = if text {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    };
    openapi::check_answer(&method, &path, status, &body);
    (status, body)
}

/// A GET with a bearer token.
pub fn get(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

/// A POST with a bearer token, an optional idempotency key and a JSON body.
pub fn post(path: &str, token: &str, key: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if let Some(k) = key {
        b = b.header("idempotency-key", k);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

/// Reads an API answer into `T` and checks that writing it back gives the same JSON (what
/// the CLI relies on to print `--json` from its typed answers).
pub fn round_trip<T: Serialize + DeserializeOwned>(answer: &serde_json::Value) -> T {
    let typed: T = serde_json::from_value(answer.clone()).unwrap_or_else(|e| {
        panic!(
            "{} does not read this answer: {e}\n{answer:#}",
            std::any::type_name::<T>()
        )
    });
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &again,
        answer,
        "{} does not write back the answer it read",
        std::any::type_name::<T>()
    );
    typed
}

/// Stops anvil when the test ends, however it ends.
pub struct Anvil(std::process::Child);

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The secret key of anvil's first funded account (10 000 ETH), a well-known test key.
pub const ANVIL_KEY_0: [u8; 32] = [
    0xac, 0x09, 0x74, 0xbe, 0xc3, 0x9a, 0x17, 0xe3, 0x6b, 0xa4, 0xa6, 0xb4, 0xd2, 0x38, 0xff, 0x94,
    0x4b, 0xac, 0xb4, 0x78, 0xcb, 0xed, 0x5e, 0xfc, 0xae, 0x78, 0x4d, 0x7b, 0xf4, 0xf2, 0xff, 0x80,
];
/// That account's address, EIP-55 checksummed.
pub const ANVIL_ADDRESS_0: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

/// The compressed SEC1 public key of a secp256k1 secret key.
pub fn secp256k1_public(secret: &[u8; 32]) -> Vec<u8> {
    let sk = k256::SecretKey::from_slice(secret).unwrap();
    k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&sk.public_key(), true)
        .as_bytes()
        .to_vec()
}

/// Starts a local chain; its guard and RPC URL.
pub async fn start_anvil() -> (Anvil, String) {
    let bin = concord_chain::anvil::anvil_binary(|m| eprintln!("{m}")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(bin)
        .args(["--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let anvil = Anvil(child);
    let rpc = format!("http://127.0.0.1:{port}");
    let client = concord_chain::EvmClient::new(&rpc).unwrap();
    for _ in 0..100 {
        if client.block_number().await.is_ok() {
            return (anvil, rpc);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("anvil did not start on {rpc}");
}

/// Records a module as enrolled (keys that are not real: it never connects over TLS).
pub async fn enroll_stand_in(c: &Coordinator, id: &str, seed: u8) {
    c.store()
        .enroll_module(&ModuleRecord {
            id: id.into(),
            identity: vec![seed; 32],
            sealing_key: vec![seed; 32],
            sealing_key_signature: vec![seed; 64],
            enrolled_at: concord_coordinator::now(),
        })
        .await
        .unwrap();
}

/// Connects a stand-in module to the coordinator's hub: it answers every exchange question
/// with `answer` (the questions it was asked go to the returned receiver).
pub fn connect_stand_in(
    c: &Coordinator,
    id: &str,
    answer: impl Fn(&ExchangeQuery) -> ExchangeAnswer + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<ExchangeQuery> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let (asked_tx, asked_rx) = tokio::sync::mpsc::unbounded_channel();
    c.hub().connect(id, tx);
    let hub = c.hub().clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.recv().await {
            if let Some(coordinator_to_module::Msg::Query(q)) = msg.msg {
                let mut a = answer(&q);
                a.request_id = q.request_id.clone();
                let _ = asked_tx.send(q);
                hub.answer(&id, a);
            }
        }
    });
    asked_rx
}

/// An exchange answer carrying `json`.
pub fn json_answer(json: serde_json::Value) -> ExchangeAnswer {
    ExchangeAnswer {
        request_id: String::new(),
        json: serde_json::to_vec(&json).unwrap(),
        error: String::new(),
    }
}

/// An exchange answer saying `error`.
pub fn error_answer(error: &str) -> ExchangeAnswer {
    ExchangeAnswer {
        request_id: String::new(),
        json: Vec::new(),
        error: error.into(),
    }
}
