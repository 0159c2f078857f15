//! Coinbase's App API (v2), with CDP API keys (docs.cdp.coinbase.com, "API key
//! authentication"): the account's addresses (listed, never created), sending crypto,
//! following a send, balances.
//!
//! **Authentication.** Every request carries `Authorization: Bearer <JWT>`, a JWS signed by
//! the CDP key: header `{"alg", "kid": <key name>, "nonce", "typ": "JWT"}`, claims `{"sub":
//! <key name>, "iss": "cdp", "nbf", "exp" (two minutes at most), "uri": "<METHOD>
//! <host><path>"}`. The token binds the method, host and path, **not the query or the body**:
//! whoever holds a token for `POST …/transactions` may send any body with it while it lasts.
//! A threshold-signed token therefore proves that enough modules agreed a send should happen
//! now, on that account, but it cannot bind the destination or the amount; those are bounded
//! by the account's own settings at Coinbase (an address allowlist) and by giving the finished
//! token to no one who chooses the body. See DESIGN, flow 4.
//!
//! The request is split as for Binance: [`RequestClaims`] makes the exact bytes a signer
//! signs ([`RequestClaims::signing_input`]), [`RequestClaims::parse`] reads them back strictly
//! (what a module checks before it joins a signing), [`finish`] makes the token.
//!
//! Keys: ES256 (ECDSA P-256, what the App API takes) or Ed25519 (`EdDSA`; Coinbase's App API
//! docs say its App endpoints do not take Ed25519 keys, Advanced Trade does).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as B64URL};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::query::is_positive_decimal;
use crate::{
    Balance, Connector, Deposit, DepositAddress, DepositStatus, ExchangeError, WithdrawRequest,
    Withdrawal, WithdrawalStatus,
};

/// Coinbase's API host, as the `uri` claim names it.
pub const HOST: &str = "api.coinbase.com";
/// The longest a token may live (Coinbase: "Your JWT expires after 2 minutes").
pub const MAX_LIFETIME_SECS: u64 = 120;
/// The longest a send's token made by the module group may live: the coordinator sends it
/// at once, and a live token lets its holder send another body, so its life is kept short.
pub const SEND_LIFETIME_SECS: u64 = 30;
/// How long a request may take before it is given up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The JWS algorithm of a CDP key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlg {
    /// ECDSA P-256 with SHA-256, signature `r ‖ s` (64 bytes).
    #[serde(rename = "ES256")]
    Es256,
    /// Pure Ed25519 (RFC 8037).
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl JwtAlg {
    /// The algorithm's JWS name: `ES256` or `EdDSA`.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlg::Es256 => "ES256",
            JwtAlg::EdDsa => "EdDSA",
        }
    }
}

/// The JWT header, in the order it is serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: JwtAlg,
    kid: String,
    nonce: String,
    typ: String,
}

/// The JWT claims, in the order they are serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    sub: String,
    iss: String,
    nbf: u64,
    exp: u64,
    uri: String,
}

/// What one request's token says: which key, which request, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestClaims {
    /// The CDP key's name (`organizations/{org}/apiKeys/{id}`, or a bare id): `kid` and `sub`.
    pub key_name: String,
    /// The signature algorithm.
    pub alg: JwtAlg,
    /// The HTTP method (`GET`, `POST`).
    pub method: String,
    /// The host the request goes to (`api.coinbase.com`, or `127.0.0.1:PORT` for a local
    /// simulator), without a scheme.
    pub host: String,
    /// The path, without a query.
    pub path: String,
    /// Not before (seconds since the Unix epoch).
    pub nbf: u64,
    /// Expiry (seconds since the Unix epoch), at most [`MAX_LIFETIME_SECS`] after `nbf`.
    pub exp: u64,
    /// A random string, so two tokens for one request at one second differ.
    pub nonce: String,
}

impl RequestClaims {
    /// The claims of a request made now: `nbf` = `now`, `exp` = `now` + 120 s, a fresh
    /// 32-byte hex nonce.
    pub fn new(
        key_name: &str,
        alg: JwtAlg,
        method: &str,
        host: &str,
        path: &str,
        now: u64,
    ) -> Self {
        let mut nonce = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut nonce);
        RequestClaims {
            key_name: key_name.to_owned(),
            alg,
            method: method.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            nbf: now,
            // Saturating: a clock (or a caller) at the end of time gets a token that is
            // refused, not a panic (found by the `cdp_claims` fuzz harness).
            exp: now.saturating_add(MAX_LIFETIME_SECS),
            nonce: hex::encode(nonce),
        }
    }

    fn uri(&self) -> String {
        format!("{} {}{}", self.method, self.host, self.path)
    }

    /// The JWS signing input `base64url(header) "." base64url(claims)`: the exact bytes the
    /// key signs. Deterministic for given claims.
    pub fn signing_input(&self) -> String {
        let header = Header {
            alg: self.alg,
            kid: self.key_name.clone(),
            nonce: self.nonce.clone(),
            typ: "JWT".into(),
        };
        let claims = Claims {
            sub: self.key_name.clone(),
            iss: "cdp".into(),
            nbf: self.nbf,
            exp: self.exp,
            uri: self.uri(),
        };
        // Serializing these structs cannot fail (strings and integers only).
        let h = serde_json::to_vec(&header).unwrap_or_default();
        let c = serde_json::to_vec(&claims).unwrap_or_default();
        format!("{}.{}", B64URL.encode(h), B64URL.encode(c))
    }

    /// Reads a signing input back, strictly: only the exact bytes [`signing_input`] makes
    /// for some claims are accepted (no other field, order, spacing or padding), `kid` and
    /// `sub` name one key, `iss` is `cdp`, the `uri` is `<METHOD> <host><path>` with no
    /// query, and the token lives at most [`MAX_LIFETIME_SECS`].
    ///
    /// [`signing_input`]: RequestClaims::signing_input
    pub fn parse(signing_input: &str) -> Result<Self, ExchangeError> {
        let bad = |what: &str| ExchangeError::InvalidRequest(format!("the token {what}"));
        if signing_input.len() > 4096 {
            return Err(bad("is longer than 4096 bytes"));
        }
        let (h, c) = signing_input
            .split_once('.')
            .ok_or_else(|| bad("is not header.claims"))?;
        let header: Header = serde_json::from_slice(
            &B64URL
                .decode(h)
                .map_err(|_| bad("header is not base64url without padding"))?,
        )
        .map_err(|e| bad(&format!("header is not the expected JSON: {e}")))?;
        let claims: Claims = serde_json::from_slice(
            &B64URL
                .decode(c)
                .map_err(|_| bad("claims are not base64url without padding"))?,
        )
        .map_err(|e| bad(&format!("claims are not the expected JSON: {e}")))?;
        if header.typ != "JWT" || claims.iss != "cdp" {
            return Err(bad("is not a CDP JWT (typ JWT, iss cdp)"));
        }
        if header.kid != claims.sub || header.kid.is_empty() {
            return Err(bad("names two keys (kid and sub differ) or none"));
        }
        if claims.exp <= claims.nbf || claims.exp - claims.nbf > MAX_LIFETIME_SECS {
            return Err(bad(&format!(
                "lives {} s, not 1 to {MAX_LIFETIME_SECS} s",
                claims.exp.saturating_sub(claims.nbf)
            )));
        }
        let (method, target) = claims
            .uri
            .split_once(' ')
            .ok_or_else(|| bad("uri is not \"METHOD host/path\""))?;
        if !matches!(method, "GET" | "POST" | "PUT" | "DELETE") {
            return Err(bad("uri's method is not GET, POST, PUT or DELETE"));
        }
        let slash = target.find('/').ok_or_else(|| bad("uri has no path"))?;
        let (host, path) = target.split_at(slash);
        if host.is_empty()
            || host.contains("://")
            || path.contains(['?', '#', ' '])
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            return Err(bad(
                "uri is not \"METHOD host/path\" without a scheme or query",
            ));
        }
        let parsed = RequestClaims {
            key_name: header.kid,
            alg: header.alg,
            method: method.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            nbf: claims.nbf,
            exp: claims.exp,
            nonce: header.nonce,
        };
        if parsed.signing_input() != signing_input {
            return Err(bad("is not in the canonical form this system makes"));
        }
        Ok(parsed)
    }

    /// Whether the token is good at `now` (seconds): `nbf` ≤ `now` + `skew` and `now` < `exp`.
    pub fn live_at(&self, now: u64, skew: u64) -> bool {
        self.nbf <= now.saturating_add(skew) && now < self.exp
    }
}

/// The compact JWS: the signing input, a dot, the base64url signature.
pub fn finish(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", B64URL.encode(signature))
}

/// A CDP key that signs tokens.
pub trait CdpSigner: Send + Sync {
    /// The key's name (`kid`, `sub`).
    fn key_name(&self) -> &str;
    /// Its algorithm.
    fn alg(&self) -> JwtAlg;
    /// The JWS signature of `input` (ES256: `r ‖ s`; EdDSA: 64 bytes).
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, ExchangeError>;
}

/// A whole CDP key in this process: ES256 (the SEC1 PEM Coinbase gives) or Ed25519 (its
/// base64 `seed ‖ public key`).
pub enum CdpKey {
    /// ECDSA P-256.
    Es256 {
        /// The key's name.
        name: String,
        /// The secret key (zeroized on drop by p256).
        key: p256::ecdsa::SigningKey,
    },
    /// Ed25519.
    Ed25519 {
        /// The key's name.
        name: String,
        /// The secret key (zeroized on drop by ed25519-dalek).
        key: ed25519_dalek::SigningKey,
    },
}

impl fmt::Debug for CdpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CdpKey")
            .field("name", &self.key_name())
            .field("alg", &self.alg())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl CdpKey {
    /// A key from the name and secret Coinbase's portal gives: an EC private key in PEM
    /// (`-----BEGIN EC PRIVATE KEY-----`, SEC1) is ES256; a PKCS#8 PEM (`-----BEGIN PRIVATE
    /// KEY-----`) is P-256 or Ed25519; otherwise base64 of an Ed25519 seed ‖ public key (64
    /// bytes; the public key must be the seed's) or of a seed alone.
    pub fn from_secret(name: &str, secret: &str) -> Result<Self, ExchangeError> {
        if name.is_empty() {
            return Err(ExchangeError::InvalidKey(
                "the CDP key name is empty".into(),
            ));
        }
        let secret = secret.trim();
        if secret.starts_with("-----BEGIN PRIVATE KEY-----") {
            // PKCS#8, as coinbase-advanced-py also takes: P-256 or Ed25519.
            use p256::pkcs8::DecodePrivateKey as _;
            if let Ok(key) = p256::SecretKey::from_pkcs8_pem(secret) {
                return Ok(CdpKey::Es256 {
                    name: name.to_owned(),
                    key: key.into(),
                });
            }
            let key = ed25519_dalek::SigningKey::from_pkcs8_pem(secret).map_err(|e| {
                ExchangeError::InvalidKey(format!(
                    "the CDP key is PKCS#8 but neither P-256 nor Ed25519: {e}"
                ))
            })?;
            return Ok(CdpKey::Ed25519 {
                name: name.to_owned(),
                key,
            });
        }
        if secret.starts_with("-----BEGIN EC PRIVATE KEY-----") {
            let key = p256::SecretKey::from_sec1_pem(secret).map_err(|e| {
                ExchangeError::InvalidKey(format!("the CDP EC key is not SEC1 PEM P-256: {e}"))
            })?;
            return Ok(CdpKey::Es256 {
                name: name.to_owned(),
                key: key.into(),
            });
        }
        let raw = Zeroizing::new(BASE64.decode(secret).map_err(|_| {
            ExchangeError::InvalidKey(
                "the CDP key secret is neither an EC PEM nor base64 Ed25519".into(),
            )
        })?);
        let seed: [u8; 32] = raw
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                ExchangeError::InvalidKey("the Ed25519 secret is shorter than 32 bytes".into())
            })?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        match raw.len() {
            32 => {}
            64 if raw[32..] == key.verifying_key().to_bytes() => {}
            64 => {
                return Err(ExchangeError::InvalidKey(
                    "the Ed25519 secret's public half is not its seed's".into(),
                ));
            }
            n => {
                return Err(ExchangeError::InvalidKey(format!(
                    "the Ed25519 secret is {n} bytes, not 32 or 64"
                )));
            }
        }
        Ok(CdpKey::Ed25519 {
            name: name.to_owned(),
            key,
        })
    }
}

impl CdpSigner for CdpKey {
    fn key_name(&self) -> &str {
        match self {
            CdpKey::Es256 { name, .. } | CdpKey::Ed25519 { name, .. } => name,
        }
    }

    fn alg(&self) -> JwtAlg {
        match self {
            CdpKey::Es256 { .. } => JwtAlg::Es256,
            CdpKey::Ed25519 { .. } => JwtAlg::EdDsa,
        }
    }

    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, ExchangeError> {
        Ok(match self {
            CdpKey::Es256 { key, .. } => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = key.sign(input);
                sig.to_bytes().to_vec()
            }
            CdpKey::Ed25519 { key, .. } => {
                use ed25519_dalek::Signer as _;
                key.sign(input).to_bytes().to_vec()
            }
        })
    }
}

/// Coinbase's network name for a network (`ETH` → `ethereum`).
pub fn network_name(network: &str) -> String {
    match network {
        "ETH" => "ethereum".into(),
        "BTC" => "bitcoin".into(),
        "LTC" => "litecoin".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// A send as Coinbase's `POST /v2/accounts/:id/transactions` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// Always `send`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The blockchain address.
    pub to: String,
    /// The amount, a positive decimal.
    pub amount: String,
    /// The currency (`ETH`).
    pub currency: String,
    /// Coinbase's network name (`ethereum`).
    pub network: String,
    /// The idempotency token: a second send with it returns the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idem: Option<String>,
}

impl SendBody {
    /// The exact JSON sent (compact, fields in declaration order).
    pub fn to_json(&self) -> String {
        // Strings only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a send body back, strictly: only the exact bytes [`SendBody::to_json`] makes
    /// (no other field, order or spacing), of type `send`, with a positive decimal amount.
    pub fn parse(json: &str) -> Result<Self, ExchangeError> {
        let bad = |what: String| ExchangeError::InvalidRequest(format!("the send body {what}"));
        let body: SendBody = serde_json::from_str(json)
            .map_err(|e| bad(format!("is not the expected JSON: {e}")))?;
        if body.kind != "send" {
            return Err(bad(format!("is of type {:?}, not send", body.kind)));
        }
        if !is_positive_decimal(&body.amount) {
            return Err(bad(format!(
                "has amount {:?}, not a positive decimal",
                body.amount
            )));
        }
        if body.to_json() != json {
            return Err(bad("is not in the canonical form this system makes".into()));
        }
        Ok(body)
    }
}

/// The path of the sends (and transactions) of account `account`.
pub fn send_path(account: &str) -> String {
    format!("/v2/accounts/{account}/transactions")
}

/// The signer of a client that only sends tokens signed elsewhere (by a threshold group).
struct NoKey;

impl CdpSigner for NoKey {
    fn key_name(&self) -> &str {
        ""
    }
    fn alg(&self) -> JwtAlg {
        JwtAlg::EdDsa
    }
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, ExchangeError> {
        Err(ExchangeError::Config(
            "this Coinbase client holds no key: it sends tokens signed elsewhere".into(),
        ))
    }
}

/// A client for one Coinbase account, signing each request's token with one CDP key.
pub struct CoinbaseClient {
    base_url: String,
    host: String,
    signer: Arc<dyn CdpSigner>,
    http: reqwest::Client,
}

impl fmt::Debug for CoinbaseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoinbaseClient")
            .field("base_url", &self.base_url)
            .field("key", &self.signer.key_name())
            .field("alg", &self.signer.alg())
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Money {
    amount: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Currency {
    Code(String),
    Object { code: String },
}

impl Currency {
    fn code(&self) -> &str {
        match self {
            Currency::Code(c) | Currency::Object { code: c } => c,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Account {
    id: String,
    currency: Currency,
    balance: Money,
}

#[derive(Debug, Deserialize)]
struct Address {
    address: String,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    destination_tag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TxNetwork {
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    network_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TxTo {
    #[serde(default)]
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Transaction {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    status: String,
    amount: Money,
    #[serde(default)]
    network: Option<TxNetwork>,
    #[serde(default)]
    to: Option<TxTo>,
    #[serde(default)]
    idem: Option<String>,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Debug, Deserialize)]
struct Pagination {
    #[serde(default)]
    next_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
struct One<T> {
    data: T,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl CoinbaseClient {
    /// A client for the API at `base_url` (`https://api.coinbase.com`, or a local simulator),
    /// signing with `signer`. The `uri` claim names `base_url`'s host (and port, if any).
    pub fn new(base_url: &str, signer: Arc<dyn CdpSigner>) -> Result<Self, ExchangeError> {
        let parsed = url::Url::parse(base_url).map_err(|e| {
            ExchangeError::Config(format!("the base URL {base_url:?} is not a URL: {e}"))
        })?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => {
                return Err(ExchangeError::Config(format!(
                    "the base URL {base_url:?} has no host"
                )));
            }
        };
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.query().is_some()
            || parsed.path() != "/"
        {
            return Err(ExchangeError::Config(format!(
                "the base URL {base_url:?} is not an http(s) URL of a host alone"
            )));
        }
        // A token lets whoever reads it on the way send any body for its life: plain HTTP
        // only to this machine (a local simulator or a TLS front).
        let loopback = match parsed.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if parsed.scheme() == "http" && !loopback {
            return Err(ExchangeError::Config(format!(
                "the base URL {base_url:?} is plain HTTP to another machine: Coinbase is spoken over HTTPS"
            )));
        }
        let http = crate::http_client(DEFAULT_TIMEOUT)?;
        Ok(CoinbaseClient {
            base_url: base_url.trim_end_matches('/').to_owned(),
            host,
            signer,
            http,
        })
    }

    /// A client that holds no key: it sends requests with tokens signed elsewhere
    /// ([`CoinbaseClient::submit_send`]), as the coordinator does with the group's.
    pub fn without_key(base_url: &str) -> Result<Self, ExchangeError> {
        Self::new(base_url, Arc::new(NoKey))
    }

    /// The host (and port) tokens for this client's API name in their `uri` claim.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sets the request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, ExchangeError> {
        self.http = crate::http_client(timeout)?;
        Ok(self)
    }

    /// The claims of a request to `path` made now with this client's key.
    pub fn claims(&self, method: &str, path: &str) -> RequestClaims {
        RequestClaims::new(
            self.signer.key_name(),
            self.signer.alg(),
            method,
            &self.host,
            path,
            now_secs(),
        )
    }

    /// Signs `claims` with this client's key: the bearer token.
    pub fn token(&self, claims: &RequestClaims) -> Result<String, ExchangeError> {
        let input = claims.signing_input();
        Ok(finish(&input, &self.signer.sign(input.as_bytes())?))
    }

    /// Sends a request with `token` (a JSON body for a POST); returns the answer read as `T`.
    pub async fn send_with_token<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        token: &str,
        body: Option<&str>,
    ) -> Result<T, ExchangeError> {
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.base_url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned());
        }
        let r = async {
            let response = request
                .send()
                .await
                .map_err(|e| crate::transport(&method, path, e))?;
            let status = response.status().as_u16();
            let text = response
                .text()
                .await
                .map_err(|e| crate::transport(&method, path, e))?;
            answers::read(status, &text)
        }
        .await;
        crate::counted("coinbase", method.as_str(), path, r)
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<T, ExchangeError> {
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        let token = self.token(&self.claims("GET", path))?;
        self.send_with_token(Method::GET, path_and_query, &token, None)
            .await
    }

    /// Every page of a list endpoint (following `next_uri`, at most 20 pages).
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Vec<T>, ExchangeError> {
        let mut out = Vec::new();
        let mut next = Some(format!("{path}?limit=100"));
        for _ in 0..20 {
            let Some(uri) = next.take() else { break };
            let page: Page<T> = self.get(&uri).await?;
            out.extend(page.data);
            next = page
                .pagination
                .and_then(|p| p.next_uri)
                .filter(|u| !u.is_empty() && u.starts_with("/v2/"));
        }
        Ok(out)
    }

    async fn accounts(&self) -> Result<Vec<Account>, ExchangeError> {
        self.list("/v2/accounts").await
    }

    /// The id of the account holding `coin`.
    pub async fn account_id(&self, coin: &str) -> Result<String, ExchangeError> {
        self.accounts()
            .await?
            .into_iter()
            .find(|a| a.currency.code() == coin)
            .map(|a| a.id)
            .ok_or_else(|| {
                ExchangeError::InvalidRequest(format!("the Coinbase account has no {coin} wallet"))
            })
    }

    /// The body of a send of `request`.
    pub fn send_body(request: &WithdrawRequest) -> Result<SendBody, ExchangeError> {
        if !is_positive_decimal(&request.amount) {
            return Err(ExchangeError::InvalidRequest(format!(
                "the amount {:?} is not a positive decimal",
                request.amount
            )));
        }
        Ok(SendBody {
            kind: "send".into(),
            to: request.address.clone(),
            amount: request.amount.clone(),
            currency: request.coin.clone(),
            network: network_name(&request.network),
            idem: request.withdraw_order_id.clone(),
        })
    }

    /// Sends `body` (the exact JSON of a [`SendBody`]) from account `account` with `token` (a
    /// token for `POST /v2/accounts/{account}/transactions`, signed by this client's key or
    /// by a threshold group holding it); returns the transaction's id.
    pub async fn submit_send(
        &self,
        account: &str,
        body: &str,
        token: &str,
    ) -> Result<String, ExchangeError> {
        let tx: One<Transaction> = self
            .send_with_token(Method::POST, &send_path(account), token, Some(body))
            .await?;
        Ok(tx.data.id)
    }

    async fn transactions(&self, account: &str) -> Result<Vec<Transaction>, ExchangeError> {
        self.list(&send_path(account)).await
    }

    async fn find_send(
        &self,
        matches: impl Fn(&Transaction) -> bool,
    ) -> Result<Option<Withdrawal>, ExchangeError> {
        for account in self.accounts().await? {
            let code = account.currency.code().to_owned();
            if let Some(tx) = self
                .transactions(&account.id)
                .await?
                .into_iter()
                .find(|t| t.kind == "send" && t.amount.amount.starts_with('-') && matches(t))
            {
                return Ok(Some(withdrawal_of(tx, &code)));
            }
        }
        Ok(None)
    }
}

fn withdrawal_of(t: Transaction, coin: &str) -> Withdrawal {
    let status = match t.status.as_str() {
        "pending" | "waiting_for_signature" | "waiting_for_clearing" => {
            WithdrawalStatus::Processing
        }
        "completed" => WithdrawalStatus::Completed,
        "failed" | "expired" => WithdrawalStatus::Failure,
        "canceled" => WithdrawalStatus::Cancelled,
        _ => WithdrawalStatus::Unknown(-1),
    };
    let network = t.network.as_ref();
    Withdrawal {
        id: t.id,
        coin: coin.to_owned(),
        network: network
            .and_then(|n| n.network_name.clone())
            .unwrap_or_default(),
        address: t.to.and_then(|to| to.address).unwrap_or_default(),
        amount: t.amount.amount.trim_start_matches('-').to_owned(),
        status,
        tx_id: network
            .and_then(|n| n.hash.clone())
            .filter(|h| !h.is_empty()),
        withdraw_order_id: t.idem,
    }
}

/// How the client reads Coinbase's answers (untrusted input, fuzzed in `tests/fuzz.rs`).
pub mod answers {
    use serde::Deserialize;
    use serde::de::DeserializeOwned;

    use crate::ExchangeError;

    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }

    #[derive(Deserialize)]
    struct ErrorEntry {
        id: String,
        #[serde(default)]
        message: String,
    }

    /// Reads an answer: a success body as `T`; Coinbase's `{"errors": [{"id", "message"}]}`
    /// as [`ExchangeError::Refused`] (first error; the others' ids joined into the message);
    /// any other error status as [`ExchangeError::Http`].
    pub fn read<T: DeserializeOwned>(status: u16, body: &str) -> Result<T, ExchangeError> {
        if (200..300).contains(&status) {
            return serde_json::from_str(body).map_err(|e| ExchangeError::Decode(e.to_string()));
        }
        match serde_json::from_str::<Errors>(body) {
            Ok(e) if !e.errors.is_empty() => {
                let first = &e.errors[0];
                let mut message: String = first.message.chars().take(256).collect();
                for more in &e.errors[1..] {
                    message.push_str("; ");
                    message.extend(more.id.chars().take(64));
                }
                Err(ExchangeError::Refused {
                    exchange: "coinbase",
                    error: first.id.chars().take(64).collect(),
                    message,
                    http_status: status,
                })
            }
            _ => Err(ExchangeError::Http {
                status,
                body: body.chars().take(512).collect(),
            }),
        }
    }
}

#[async_trait]
impl Connector for CoinbaseClient {
    fn exchange(&self) -> &str {
        "coinbase"
    }

    /// The first of the coin account's existing addresses on the network (listed with `GET
    /// /v2/accounts/:id/addresses`; never one created).
    async fn deposit_address(
        &self,
        coin: &str,
        network: &str,
    ) -> Result<DepositAddress, ExchangeError> {
        let account = self.account_id(coin).await?;
        let want = network_name(network);
        let addresses: Vec<Address> = self
            .list(&format!("/v2/accounts/{account}/addresses"))
            .await?;
        addresses
            .into_iter()
            .find(|a| a.network.as_deref() == Some(want.as_str()))
            .map(|a| DepositAddress {
                coin: coin.to_owned(),
                network: network.to_owned(),
                address: a.address,
                tag: a.destination_tag.filter(|t| !t.is_empty()),
            })
            .ok_or_else(|| {
                ExchangeError::InvalidRequest(format!(
                    "Coinbase lists no {coin} address on {want} for this account (this connector never creates one)"
                ))
            })
    }

    /// Signs a token with this client's own key and sends (`idem` = the order id).
    async fn withdraw(&self, request: &WithdrawRequest) -> Result<String, ExchangeError> {
        let body = Self::send_body(request)?;
        let account = self.account_id(&request.coin).await?;
        let token = self.token(&self.claims("POST", &send_path(&account)))?;
        self.submit_send(&account, &body.to_json(), &token).await
    }

    async fn withdrawal(&self, id: &str) -> Result<Option<Withdrawal>, ExchangeError> {
        self.find_send(|t| t.id == id).await
    }

    /// The send whose `idem` is `order_id` (Coinbase keeps it with the transaction).
    async fn withdrawal_by_order_id(
        &self,
        order_id: &str,
    ) -> Result<Option<Withdrawal>, ExchangeError> {
        self.find_send(|t| t.idem.as_deref() == Some(order_id))
            .await
    }

    /// Received crypto: the coin account's transactions with a positive amount.
    async fn deposits(
        &self,
        coin: &str,
        tx_id: Option<&str>,
    ) -> Result<Vec<Deposit>, ExchangeError> {
        let account = self.account_id(coin).await?;
        Ok(self
            .transactions(&account)
            .await?
            .into_iter()
            .filter(|t| !t.amount.amount.starts_with('-'))
            .map(|t| {
                let hash = t
                    .network
                    .as_ref()
                    .and_then(|n| n.hash.clone())
                    .unwrap_or_default();
                Deposit {
                    coin: coin.to_owned(),
                    network: t
                        .network
                        .as_ref()
                        .and_then(|n| n.network_name.clone())
                        .unwrap_or_default(),
                    address: t.address.unwrap_or_default(),
                    amount: t.amount.amount,
                    tx_id: hash,
                    status: match t.status.as_str() {
                        "completed" => DepositStatus::Success,
                        "failed" | "canceled" | "expired" => DepositStatus::Rejected,
                        _ => DepositStatus::Pending,
                    },
                    confirmations: String::new(),
                }
            })
            .filter(|d| tx_id.is_none_or(|t| d.tx_id == t))
            .collect())
    }

    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        Ok(self
            .accounts()
            .await?
            .into_iter()
            .map(|a| Balance {
                asset: a.currency.code().to_owned(),
                free: a.balance.amount,
                locked: "0".into(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// coinbase-advanced-py's own test key (tests/constants.py, `TEST_ED25519_API_SECRET`):
    /// 64 bytes, seed ‖ public key.
    const SDK_ED25519: &str =
        "k0BUni0p0vZG1BdpVjS6ogBJ7kxm630AJ2dN+tuputDOKsRAwgyrpEQLeBtS1znTmzPX6Xr2eOWpzx6nW8knkA==";
    /// coinbase-advanced-py's own test EC key (tests/constants.py, `TEST_API_SECRET`).
    const SDK_EC: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKwf3Uox30cRWzRBOPoPOH5p0Gpb0Dt8zUKXUEM5fMkGoAoGCCqGSM49\nAwEHoUQDQgAEbAtpLlSZYVOwYICz+uEyxcS29vRIujiES/gQ1DC7FV4zK4JuYE9v\nqDyGZQYjdXHLM7I6f/QnnOITL+dXYWBHRA==\n-----END EC PRIVATE KEY-----\n";
    const NAME: &str = "organizations/test-organization/apiKeys/test-api-key";

    #[test]
    fn the_sdk_test_keys_load() {
        let ed = CdpKey::from_secret(NAME, SDK_ED25519).unwrap();
        assert_eq!(ed.alg(), JwtAlg::EdDsa);
        let ec = CdpKey::from_secret(NAME, SDK_EC).unwrap();
        assert_eq!(ec.alg(), JwtAlg::Es256);
        // The same Ed25519 key as PKCS#8 (the SDK's `TEST_ED25519_PKCS8_API_SECRET`) and as
        // a seed alone (`TEST_ED25519_SEED_API_SECRET`): the same signatures.
        let pkcs8 = CdpKey::from_secret(
            NAME,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJNAVJ4tKdL2RtQXaVY0uqIASe5MZut9ACdnTfrbqbrQ\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let seed =
            CdpKey::from_secret(NAME, "k0BUni0p0vZG1BdpVjS6ogBJ7kxm630AJ2dN+tuputA=").unwrap();
        assert_eq!(pkcs8.sign(b"x").unwrap(), ed.sign(b"x").unwrap());
        assert_eq!(seed.sign(b"x").unwrap(), ed.sign(b"x").unwrap());
        // A 64-byte secret whose public half is another key's.
        let mut raw = BASE64.decode(SDK_ED25519).unwrap();
        raw[40] ^= 1;
        assert!(CdpKey::from_secret(NAME, &BASE64.encode(raw)).is_err());
        assert!(!format!("{ed:?}").contains("k0BU"));
    }

    #[test]
    fn claims_round_trip_and_only_canonical_bytes_parse() {
        let c = RequestClaims::new(
            NAME,
            JwtAlg::EdDsa,
            "POST",
            HOST,
            "/v2/accounts/a/transactions",
            1_700_000_000,
        );
        let input = c.signing_input();
        assert_eq!(RequestClaims::parse(&input).unwrap(), c);
        assert!(c.live_at(1_700_000_000, 0) && !c.live_at(1_700_000_120, 0));
        let (h, _) = input.split_once('.').unwrap();
        let forge =
            |claims: serde_json::Value| format!("{h}.{}", B64URL.encode(claims.to_string()));
        let uri = "POST api.coinbase.com/v2/accounts/a/transactions";
        // Longer than two minutes.
        assert!(
            RequestClaims::parse(&forge(
                serde_json::json!({"sub": NAME, "iss": "cdp", "nbf": 1, "exp": 122, "uri": uri})
            ))
            .is_err()
        );
        // Another key in sub than in kid.
        assert!(
            RequestClaims::parse(&forge(
                serde_json::json!({"sub": "other", "iss": "cdp", "nbf": 1, "exp": 100, "uri": uri})
            ))
            .is_err()
        );
        // A query in the uri, a scheme, an extra claim.
        assert!(RequestClaims::parse(&forge(serde_json::json!({"sub": NAME, "iss": "cdp", "nbf": 1, "exp": 100, "uri": format!("{uri}?x=1")}))).is_err());
        assert!(RequestClaims::parse(&forge(serde_json::json!({"sub": NAME, "iss": "cdp", "nbf": 1, "exp": 100, "uri": "POST https://api.coinbase.com/v2/x"}))).is_err());
        assert!(RequestClaims::parse(&forge(serde_json::json!({"sub": NAME, "iss": "cdp", "nbf": 1, "exp": 100, "uri": uri, "aud": ["x"]}))).is_err());
        // Fields out of order: not the bytes this system makes.
        assert!(
            RequestClaims::parse(&forge(
                serde_json::json!({"iss": "cdp", "sub": NAME, "nbf": 1, "exp": 100, "uri": uri})
            ))
            .is_err()
        );
    }

    #[test]
    fn es256_and_ed25519_tokens_verify_independently() {
        use p256::ecdsa::signature::Verifier as _;
        let ec = CdpKey::from_secret(NAME, SDK_EC).unwrap();
        let c = RequestClaims::new(
            NAME,
            JwtAlg::Es256,
            "GET",
            HOST,
            "/v2/accounts",
            1_700_000_000,
        );
        let input = c.signing_input();
        let sig = ec.sign(input.as_bytes()).unwrap();
        assert_eq!(sig.len(), 64);
        let CdpKey::Es256 { key, .. } = &ec else {
            unreachable!()
        };
        key.verifying_key()
            .verify(
                input.as_bytes(),
                &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
            )
            .unwrap();
        let ed = CdpKey::from_secret(NAME, SDK_ED25519).unwrap();
        let sig = ed.sign(input.as_bytes()).unwrap();
        let public: [u8; 32] = BASE64.decode(SDK_ED25519).unwrap()[32..]
            .try_into()
            .unwrap();
        ed25519_dalek::VerifyingKey::from_bytes(&public)
            .unwrap()
            .verify_strict(
                input.as_bytes(),
                &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
            )
            .unwrap();
        let token = finish(&input, &sig);
        assert_eq!(token.split('.').count(), 3);
    }

    #[test]
    fn errors_keep_coinbase_s_ids() {
        let e = answers::read::<serde_json::Value>(
            400,
            r#"{"errors":[{"id":"validation_error","message":"Please enter a valid address"}]}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&e, ExchangeError::Refused { exchange: "coinbase", error, http_status: 400, .. } if error == "validation_error")
        );
        assert!(!e.retryable());
        let e = answers::read::<serde_json::Value>(
            429,
            r#"{"errors":[{"id":"rate_limit_exceeded","message":"x"}]}"#,
        )
        .unwrap_err();
        assert!(e.retryable());
        let e = answers::read::<serde_json::Value>(503, "upstream").unwrap_err();
        assert!(matches!(e, ExchangeError::Http { status: 503, .. }));
    }
}
