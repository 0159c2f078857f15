//! Test harness: a real anvil, the simulator on 127.0.0.1:0, and a client that signs requests
//! by the rules of Binance's docs (written here independently of the simulator's checker).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use base64::Engine as _;
use concord_exchange_sim::{
    AccountConfig, ApiKeyConfig, ApiKeyKind, CoinConfig, Permission, Secret, SimConfig, SimHandle,
};
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Binance's documented example API key and HMAC secret (rest-api.md).
pub const DOC_API_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
pub const DOC_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
/// alice's HMAC key with read + withdraw.
pub const HMAC_RW_KEY: &str = "HmacReadWrite000000000000000000000000000000000000000000000000001";
pub const HMAC_RW_SECRET: &str = "another-hmac-secret-for-the-tests";
/// alice's Ed25519 key with read + withdraw.
pub const ED_KEY: &str = "Ed25519ReadWrite000000000000000000000000000000000000000000000001";
pub const ED_SEED: [u8; 32] = [7u8; 32];
/// bob's HMAC key (read only).
pub const BOB_KEY: &str = "BobReadOnly00000000000000000000000000000000000000000000000000001";
pub const BOB_SECRET: &str = "bob-secret";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const SEED: &str = "test-seed";
/// Anvil dev account used as the hot wallet.
pub const HOT_WALLET_INDEX: usize = 9;

/// How a test client signs.
#[derive(Clone)]
pub enum Key {
    Hmac {
        api_key: String,
        secret: String,
    },
    Ed25519 {
        api_key: String,
        signing: ed25519_dalek::SigningKey,
    },
}

impl Key {
    pub fn doc() -> Self {
        Key::Hmac {
            api_key: DOC_API_KEY.into(),
            secret: DOC_SECRET.into(),
        }
    }
    pub fn hmac_rw() -> Self {
        Key::Hmac {
            api_key: HMAC_RW_KEY.into(),
            secret: HMAC_RW_SECRET.into(),
        }
    }
    pub fn ed() -> Self {
        Key::Ed25519 {
            api_key: ED_KEY.into(),
            signing: ed25519_dalek::SigningKey::from_bytes(&ED_SEED),
        }
    }
    pub fn bob() -> Self {
        Key::Hmac {
            api_key: BOB_KEY.into(),
            secret: BOB_SECRET.into(),
        }
    }
    pub fn api_key(&self) -> &str {
        match self {
            Key::Hmac { api_key, .. } | Key::Ed25519 { api_key, .. } => api_key,
        }
    }
    /// The signature of `total_params`, encoded for a query string or form body:
    /// HMAC → lowercase hex; Ed25519 → base64, percent-encoded.
    pub fn sign(&self, total_params: &str) -> String {
        match self {
            Key::Hmac { secret, .. } => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(total_params.as_bytes());
                hex::encode(mac.finalize().into_bytes())
            }
            Key::Ed25519 { signing, .. } => {
                let signature = signing.sign(total_params.as_bytes());
                let b64 = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
                url::form_urlencoded::byte_serialize(b64.as_bytes()).collect()
            }
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `k=v&...` with values percent-encoded.
pub fn encode(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| {
            let v: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `params&timestamp=now` followed by `&signature=...`.
pub fn signed(key: &Key, params: &[(&str, &str)]) -> String {
    let ts = now_ms().to_string();
    let mut all: Vec<(&str, &str)> = params.to_vec();
    all.push(("timestamp", &ts));
    let payload = encode(&all);
    let signature = key.sign(&payload);
    format!("{payload}&signature={signature}")
}

pub struct Env {
    pub anvil: AnvilInstance,
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub base: String,
    pub chain: DynProvider,
}

pub fn spawn_anvil() -> AnvilInstance {
    let path = concord_chain::anvil::anvil_binary(|msg| eprintln!("{msg}")).unwrap();
    Anvil::at(path).spawn()
}

pub fn key_hex(anvil: &AnvilInstance, index: usize) -> String {
    hex::encode(anvil.keys()[index].to_bytes())
}

pub fn signer(anvil: &AnvilInstance, index: usize) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::from_slice(&anvil.keys()[index].to_bytes())).unwrap()
}

/// A provider that signs with anvil dev account `index`.
pub fn wallet_provider(anvil: &AnvilInstance, index: usize) -> DynProvider {
    ProviderBuilder::new()
        .wallet(signer(anvil, index))
        .connect_http(anvil.endpoint_url())
        .erased()
}

pub fn eth(text: &str) -> U256 {
    concord_exchange_sim::amount::parse_amount(text, 18).unwrap()
}

/// The configuration the tests start from: alice (5 ETH, 100 CTT) with the doc HMAC key
/// (read only), an HMAC read+withdraw key and an Ed25519 read+withdraw key; bob (read only).
pub fn base_config(anvil: &AnvilInstance, token: Option<Address>) -> SimConfig {
    let ed_public = ed25519_dalek::SigningKey::from_bytes(&ED_SEED).verifying_key();
    let mut coins = vec![CoinConfig {
        coin: "ETH".into(),
        network: "ETH".into(),
        decimals: 18,
        contract: None,
        withdraw_fee: "0.0001".into(),
        withdraw_min: "0.001".into(),
    }];
    coins.push(CoinConfig {
        coin: "CTT".into(),
        network: "ETH".into(),
        decimals: 18,
        // Without a deployed token, a placeholder contract (no code): nothing is ever sent to it.
        contract: Some(token.unwrap_or(Address::repeat_byte(0x77))),
        withdraw_fee: "1".into(),
        withdraw_min: "10".into(),
    });
    SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        rpc_url: anvil.endpoint(),
        chain_id: anvil.chain_id(),
        confirmations: 3,
        address_seed: SEED.into(),
        hot_wallet_key: Some(Secret::new(key_hex(anvil, HOT_WALLET_INDEX))),
        hot_wallet_key_file: None,
        admin_token: Secret::new(ADMIN_TOKEN),
        poll_interval_ms: 50,
        reject_replayed_reads: false,
        start_block: None,
        coins,
        utxo: None,
        accounts: vec![
            AccountConfig {
                name: "alice".into(),
                balances: [
                    ("ETH".to_string(), "5".to_string()),
                    ("CTT".to_string(), "100".to_string()),
                ]
                .into_iter()
                .collect(),
                api_keys: vec![
                    ApiKeyConfig {
                        api_key: DOC_API_KEY.into(),
                        kind: ApiKeyKind::Hmac {
                            secret: Secret::new(DOC_SECRET),
                        },
                        permissions: vec![Permission::Read],
                    },
                    ApiKeyConfig {
                        api_key: HMAC_RW_KEY.into(),
                        kind: ApiKeyKind::Hmac {
                            secret: Secret::new(HMAC_RW_SECRET),
                        },
                        permissions: vec![Permission::Read, Permission::Withdraw],
                    },
                    ApiKeyConfig {
                        api_key: ED_KEY.into(),
                        kind: ApiKeyKind::Ed25519 {
                            public_key: concord_exchange_sim::auth::ed25519_public_key_pem(
                                &ed_public,
                            ),
                        },
                        permissions: vec![Permission::Read, Permission::Withdraw],
                    },
                ],
            },
            AccountConfig {
                name: "bob".into(),
                balances: Default::default(),
                api_keys: vec![ApiKeyConfig {
                    api_key: BOB_KEY.into(),
                    kind: ApiKeyKind::Hmac {
                        secret: Secret::new(BOB_SECRET),
                    },
                    permissions: vec![Permission::Read],
                }],
            },
        ],
    }
}

impl Env {
    pub async fn start(anvil: AnvilInstance, config: SimConfig) -> Env {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = SimHandle::start(config, listener).await.unwrap();
        let base = sim.base_url();
        let chain = ProviderBuilder::new()
            .connect_http(anvil.endpoint_url())
            .erased();
        Env {
            anvil,
            sim,
            http: reqwest::Client::new(),
            base,
            chain,
        }
    }

    pub async fn new() -> Env {
        let anvil = spawn_anvil();
        let config = base_config(&anvil, None);
        Env::start(anvil, config).await
    }

    /// A GET with the given raw query and API key header (None: no header).
    pub async fn get_raw(&self, path: &str, api_key: Option<&str>, query: &str) -> (u16, Value) {
        let mut request = self.http.get(format!("{}{path}?{query}", self.base));
        if let Some(key) = api_key {
            request = request.header("X-MBX-APIKEY", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// A signed GET.
    pub async fn get(&self, path: &str, key: &Key, params: &[(&str, &str)]) -> (u16, Value) {
        self.get_raw(path, Some(key.api_key()), &signed(key, params))
            .await
    }

    /// A POST with a raw query string and raw form body.
    pub async fn post_raw(
        &self,
        path: &str,
        api_key: &str,
        query: &str,
        body: &str,
    ) -> (u16, Value) {
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let response = self
            .http
            .post(url)
            .header("X-MBX-APIKEY", api_key)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// A signed POST with every parameter in the form body.
    pub async fn post_body(&self, path: &str, key: &Key, params: &[(&str, &str)]) -> (u16, Value) {
        self.post_raw(path, key.api_key(), "", &signed(key, params))
            .await
    }

    /// A signed POST with every parameter in the query string.
    pub async fn post_query(&self, path: &str, key: &Key, params: &[(&str, &str)]) -> (u16, Value) {
        self.post_raw(path, key.api_key(), &signed(key, params), "")
            .await
    }

    /// An admin request.
    pub async fn admin_post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// An admin request with any method, an optional bearer token and an optional raw JSON
    /// body.
    pub async fn admin_request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The `free` balance of `asset` in `/api/v3/account`.
    pub async fn free(&self, key: &Key, asset: &str) -> String {
        let (status, body) = self.get("/api/v3/account", key, &[]).await;
        assert_eq!(status, 200, "{body}");
        body["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["asset"] == asset)
            .map(|b| b["free"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {asset} in {body}"))
    }

    pub async fn mine(&self, blocks: u64) {
        let _: Value = self
            .chain
            .raw_request("anvil_mine".into(), (U256::from(blocks),))
            .await
            .unwrap();
    }

    pub async fn deposit_address(&self, key: &Key, coin: &str) -> Address {
        let (status, body) = self
            .get("/sapi/v1/capital/deposit/address", key, &[("coin", coin)])
            .await;
        assert_eq!(status, 200, "{body}");
        body["address"].as_str().unwrap().parse().unwrap()
    }

    /// Sends `value` wei from anvil dev account `from`; returns the hash once mined.
    pub async fn send_eth(&self, from: usize, to: Address, value: U256) -> B256 {
        let provider = wallet_provider(&self.anvil, from);
        let tx = TransactionRequest::default().with_to(to).with_value(value);
        let receipt = provider
            .send_transaction(tx)
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status());
        receipt.transaction_hash
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most 20 s.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > Duration::from_secs(20) {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts a Binance error answer.
#[track_caller]
pub fn assert_error(answer: &(u16, Value), status: u16, code: i64) {
    assert_eq!(answer.0, status, "HTTP status of {}", answer.1);
    assert_eq!(answer.1["code"], code, "error code of {}", answer.1);
    assert!(answer.1["msg"].is_string(), "no msg in {}", answer.1);
}

/// A whole answer, for tests of its headers and raw body.
pub struct Raw {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Raw {
    /// The `Content-Type` header, or "".
    pub fn content_type(&self) -> &str {
        self.header("content-type")
    }

    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends `request` and keeps the whole answer.
pub async fn send_raw(request: reqwest::RequestBuilder) -> Raw {
    // (Without the URL: a test's URL may be 60 KB long.)
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", e.without_url()));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Raw {
        status,
        headers,
        text,
    }
}
