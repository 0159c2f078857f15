//! Coinbase's App API (v2) subset with CDP API keys, as docs.cdp.coinbase.com documents it:
//! `GET /v2/accounts`, `GET /v2/accounts/:id`, `GET /v2/accounts/:id/addresses`, `GET`/`POST
//! /v2/accounts/:id/transactions` (a `send`), `GET /v2/accounts/:id/transactions/:tx`.
//!
//! - Authentication: `Authorization: Bearer <JWT>`, signed ES256 or EdDSA by a registered CDP
//!   key: header `kid` = the key's name and `alg` its algorithm; claims `iss` = `cdp`, `sub` =
//!   the key's name, `nbf` ≤ now (5 s of skew), now < `exp` ≤ now + 120 s (+5 s), and `uri`
//!   (or `uris`, as cdp-sdk writes it) naming this request: `"<METHOD> <Host header><path>"`.
//!   A token is taken once (what it signed is remembered while it lives; not its signature,
//!   which ECDSA's malleability would let a replay change): Coinbase's docs do not say
//!   whether a token may be reused within its two minutes; the simulator refuses it.
//! - Answers: `{"data": ...}`, lists with `{"pagination": {...}, "data": [...]}`; errors
//!   `{"errors": [{"id", "message"}]}` with Coinbase's ids and statuses
//!   (`authentication_error` 401, `invalid_scope` 403, `not_found` 404, `validation_error` and
//!   `param_required` 400).
//! - One wallet account per coin; its addresses are the account's deposit addresses, one per
//!   network (listed; creating one is not offered). A send with an `idem` seen before returns
//!   that send. Received crypto is listed as a `send` with a positive amount.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Shared;
use crate::amount::{format_amount, parse_amount};
use crate::config::{CoinConfig, Permission};
use crate::state::{
    DEPOSIT_SUCCESS, Verifier, WITHDRAW_COMPLETED, WITHDRAW_FAILURE, WithdrawRequest,
};
use crate::time::{now_ms, now_us};

/// How a CDP key's tokens are verified.
#[derive(Clone)]
pub enum CdpVerifier {
    /// ES256: ECDSA P-256 with SHA-256, `r ‖ s`.
    Es256(p256::ecdsa::VerifyingKey),
    /// EdDSA: pure Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl CdpVerifier {
    /// An EC P-256 public key in PEM (`-----BEGIN PUBLIC KEY-----`), or an Ed25519 public key
    /// (PEM or 64 hex digits).
    pub fn parse(text: &str) -> Result<Self, String> {
        use p256::pkcs8::DecodePublicKey as _;
        if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_pem(text.trim()) {
            return Ok(CdpVerifier::Es256(key));
        }
        crate::auth::parse_ed25519_public_key(text)
            .map(CdpVerifier::Ed25519)
            .map_err(|e| format!("neither an EC P-256 nor an Ed25519 public key ({e})"))
    }

    fn alg(&self) -> &'static str {
        match self {
            CdpVerifier::Es256(_) => "ES256",
            CdpVerifier::Ed25519(_) => "EdDSA",
        }
    }

    fn verify(&self, input: &[u8], sig: &[u8]) -> bool {
        match self {
            CdpVerifier::Es256(key) => {
                use p256::ecdsa::signature::Verifier as _;
                p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| key.verify(input, &s).is_ok())
            }
            CdpVerifier::Ed25519(key) => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| key.verify_strict(input, &s).is_ok()),
        }
    }
}

/// A Coinbase error answer.
pub struct CbError(StatusCode, &'static str, String);

impl IntoResponse for CbError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"errors": [{"id": self.1, "message": self.2}]})),
        )
            .into_response()
    }
}

fn auth_error(message: impl Into<String>) -> CbError {
    CbError(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        message.into(),
    )
}

fn not_found() -> CbError {
    CbError(StatusCode::NOT_FOUND, "not_found", "Not found".into())
}

fn validation(message: impl Into<String>) -> CbError {
    CbError(StatusCode::BAD_REQUEST, "validation_error", message.into())
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: String,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    iss: String,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    uris: Option<Vec<String>>,
}

const SKEW_SECS: u64 = 5;
const MAX_LIFETIME_SECS: u64 = 120;

/// Checks the bearer token for this request; returns the account.
fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    permission: Permission,
) -> Result<String, CbError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| auth_error("missing bearer token"))?;
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(auth_error("the token is not a JWS"));
    };
    let header: Header = B64URL
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| auth_error("the token's header is unreadable"))?;
    let claims: Claims = B64URL
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| auth_error("the token's claims are unreadable"))?;
    let sig = B64URL
        .decode(s)
        .map_err(|_| auth_error("the token's signature is unreadable"))?;
    let key = shared
        .ledger
        .key(&header.kid)
        .ok_or_else(|| auth_error("unknown API key"))?;
    let Verifier::Cdp(verifier) = &key.verifier else {
        // A Binance or Kraken key is no CDP key.
        return Err(auth_error("unknown API key"));
    };
    if header.alg != verifier.alg() {
        return Err(auth_error("the token's algorithm is not the key's"));
    }
    let input = &token[..h.len() + 1 + c.len()];
    if !verifier.verify(input.as_bytes(), &sig) {
        return Err(auth_error("invalid signature"));
    }
    if claims.iss != "cdp" || claims.sub != header.kid {
        return Err(auth_error("the token is not this key's (iss, sub)"));
    }
    let now = now_ms() / 1000;
    let (Some(nbf), Some(exp)) = (claims.nbf, claims.exp) else {
        return Err(auth_error("the token has no nbf or exp"));
    };
    if nbf > now.saturating_add(SKEW_SECS)
        || exp <= now
        || exp > now.saturating_add(MAX_LIFETIME_SECS + SKEW_SECS)
    {
        return Err(auth_error("the token is expired or not yet valid"));
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let this = format!("{method} {host}{}", uri.path());
    let named = claims
        .uri
        .iter()
        .chain(claims.uris.iter().flatten())
        .any(|u| *u == this);
    if !named {
        return Err(auth_error(format!("the token is not for {this}")));
    }
    // A token is taken once: remembered by what was signed (header and claims, which carry a
    // nonce), not by its signature, which an ECDSA signature's (r, n - s) twin would evade.
    let expires_us = (u128::from(exp) + u128::from(SKEW_SECS)) * 1_000_000;
    let signed = hex::encode(Sha256::digest(input.as_bytes()));
    if !shared
        .ledger
        .accept_signature(&header.kid, &signed, expires_us, now_us())
    {
        return Err(auth_error("the token was used already"));
    }
    if !key.permissions.contains(&permission) {
        return Err(CbError(
            StatusCode::FORBIDDEN,
            "invalid_scope",
            "Invalid scope".into(),
        ));
    }
    Ok(key.account)
}

/// A UUID-shaped id derived from its parts (stable for a seed).
fn derived_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let d = hex::encode(&h.finalize()[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &d[..8],
        &d[8..12],
        &d[12..16],
        &d[16..20],
        &d[20..]
    )
}

/// Coinbase's network name of a network.
fn network_name(network: &str) -> String {
    match network {
        "ETH" => "ethereum".into(),
        "BTC" => "bitcoin".into(),
        "LTC" => "litecoin".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// The coins the simulator offers, each once (its first entry: default network).
fn coins(shared: &Shared) -> Vec<CoinConfig> {
    let mut out: Vec<CoinConfig> = Vec::new();
    for c in &shared.config.coins {
        if !out.iter().any(|o| o.coin == c.coin) {
            out.push(c.clone());
        }
    }
    out
}

fn account_id(shared: &Shared, account: &str, coin: &str) -> String {
    derived_id(&[
        "coinbase-account",
        &shared.config.address_seed,
        account,
        coin,
    ])
}

/// Authenticates the request and finds the account id `id` of the caller's account: (the
/// caller's account, the id's coin).
fn authenticated_account(
    shared: &Shared,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    id: &str,
    permission: Permission,
) -> Result<(String, CoinConfig), CbError> {
    let account = authenticate(shared, headers, method, uri, permission)?;
    let coin = coin_of_account(shared, &account, id)?;
    Ok((account, coin))
}

/// The coin of account id `id` of `account`.
fn coin_of_account(shared: &Shared, account: &str, id: &str) -> Result<CoinConfig, CbError> {
    coins(shared)
        .into_iter()
        .find(|c| account_id(shared, account, &c.coin) == id)
        .ok_or_else(not_found)
}

fn time(ms: u64) -> String {
    crate::time::format_utc(ms).replace(' ', "T") + "Z"
}

fn account_json(shared: &Shared, account: &str, coin: &CoinConfig) -> Value {
    let id = account_id(shared, account, &coin.coin);
    let balance = shared
        .ledger
        .balances(account)
        .get(&coin.coin)
        .copied()
        .unwrap_or_default();
    json!({
        "id": id,
        "name": format!("{} Wallet", coin.coin),
        "primary": true,
        "type": "wallet",
        "currency": {"code": coin.coin, "name": coin.coin, "exponent": coin.decimals, "type": "crypto"},
        "balance": {"amount": format_amount(balance, coin.decimals), "currency": coin.coin},
        "created_at": time(0),
        "updated_at": time(0),
        "resource": "account",
        "resource_path": format!("/v2/accounts/{id}"),
    })
}

fn page(data: Vec<Value>) -> Json<Value> {
    Json(json!({
        "pagination": {"ending_before": null, "starting_after": null, "limit": 100, "order": "desc", "previous_uri": null, "next_uri": null},
        "data": data,
    }))
}

/// `GET /v2/accounts`.
pub async fn accounts(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, CbError> {
    let account = authenticate(&shared, &headers, &method, &uri, Permission::Read)?;
    Ok(page(
        coins(&shared)
            .iter()
            .map(|c| account_json(&shared, &account, c))
            .collect(),
    ))
}

/// `GET /v2/accounts/:id` (an id, or a currency code as Coinbase also takes).
pub async fn account(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, CbError> {
    let account = authenticate(&shared, &headers, &method, &uri, Permission::Read)?;
    let coin = coins(&shared)
        .into_iter()
        .find(|c| c.coin == id)
        .map_or_else(|| coin_of_account(&shared, &account, &id), Ok)?;
    Ok(Json(
        json!({"data": account_json(&shared, &account, &coin)}),
    ))
}

/// `GET /v2/accounts/:id/addresses`: the account's deposit address on each network of its coin.
pub async fn addresses(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, CbError> {
    let (account, coin) =
        authenticated_account(&shared, &headers, &method, &uri, &id, Permission::Read)?;
    let list = shared
        .config
        .coins
        .iter()
        .filter(|c| c.coin == coin.coin)
        .map(|c| {
            let address = shared.deposit_address_text(&account, &c.network);
            let aid = derived_id(&[
                "coinbase-address",
                &shared.config.address_seed,
                &account,
                &c.network,
            ]);
            json!({
                "id": aid,
                "address": address,
                "name": format!("{} address", c.network),
                "network": network_name(&c.network),
                "created_at": time(0),
                "updated_at": time(0),
                "resource": "address",
                "resource_path": format!("/v2/accounts/{id}/addresses/{aid}"),
            })
        })
        .collect();
    Ok(page(list))
}

fn withdrawal_json(account_id: &str, w: &crate::state::Withdrawal, decimals: u8) -> Value {
    let status = match w.status {
        WITHDRAW_COMPLETED => "completed",
        WITHDRAW_FAILURE => "failed",
        _ => "pending",
    };
    json!({
        "id": w.id,
        "type": "send",
        "status": status,
        "amount": {"amount": format!("-{}", format_amount(w.amount, decimals)), "currency": w.coin},
        "description": null,
        "created_at": time(w.apply_time),
        "updated_at": time(w.complete_time.unwrap_or(w.apply_time)),
        "resource": "transaction",
        "resource_path": format!("/v2/accounts/{account_id}/transactions/{}", w.id),
        "network": {
            "status": if w.status == WITHDRAW_COMPLETED { "confirmed" } else { "pending" },
            "hash": w.tx_id,
            "network_name": network_name(&w.network),
            "transaction_fee": {"amount": format_amount(w.fee, decimals), "currency": w.coin},
        },
        "to": {"resource": format!("{}_address", network_name(&w.network)), "address": w.address},
        "idem": w.withdraw_order_id,
    })
}

fn deposit_json(account_id: &str, d: &crate::state::Deposit, decimals: u8) -> Value {
    let id = derived_id(&["coinbase-receive", &d.id]);
    json!({
        "id": id,
        "type": "send",
        "status": if d.status == DEPOSIT_SUCCESS { "completed" } else { "pending" },
        "amount": {"amount": format_amount(d.amount, decimals), "currency": d.coin},
        "description": null,
        "created_at": time(d.insert_time),
        "updated_at": time(d.complete_time.unwrap_or(d.insert_time)),
        "resource": "transaction",
        "resource_path": format!("/v2/accounts/{account_id}/transactions/{id}"),
        "network": {
            "status": if d.status == DEPOSIT_SUCCESS { "confirmed" } else { "unconfirmed" },
            "hash": d.tx_id,
            "network_name": network_name(&d.network),
        },
        "address": d.address,
    })
}

fn transactions_of(shared: &Shared, account: &str, coin: &CoinConfig, id: &str) -> Vec<Value> {
    let mut out: Vec<(u64, Value)> = shared
        .ledger
        .withdrawals_of(account)
        .iter()
        .filter(|w| w.coin == coin.coin)
        .map(|w| (w.apply_time, withdrawal_json(id, w, coin.decimals)))
        .collect();
    out.extend(
        shared
            .ledger
            .deposits_of(account)
            .iter()
            .filter(|d| d.coin == coin.coin)
            .map(|d| (d.insert_time, deposit_json(id, d, coin.decimals))),
    );
    out.sort_by_key(|v| std::cmp::Reverse(v.0));
    out.into_iter().map(|(_, v)| v).collect()
}

/// `GET /v2/accounts/:id/transactions`.
pub async fn transactions(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, CbError> {
    let (account, coin) =
        authenticated_account(&shared, &headers, &method, &uri, &id, Permission::Read)?;
    Ok(page(transactions_of(&shared, &account, &coin, &id)))
}

/// `GET /v2/accounts/:id/transactions/:tx`.
pub async fn transaction(
    State(shared): State<Arc<Shared>>,
    Path((id, tx)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, CbError> {
    let (account, coin) =
        authenticated_account(&shared, &headers, &method, &uri, &id, Permission::Read)?;
    transactions_of(&shared, &account, &coin, &id)
        .into_iter()
        .find(|t| t["id"] == tx.as_str())
        .map(|t| Json(json!({"data": t})))
        .ok_or_else(not_found)
}

#[derive(Deserialize)]
struct SendBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    to: Option<String>,
    amount: Option<String>,
    currency: Option<String>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    idem: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    skip_notifications: Option<bool>,
    #[serde(default)]
    destination_tag: Option<String>,
}

/// `POST /v2/accounts/:id/transactions` with `type: send`.
pub async fn send(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), CbError> {
    let (account, coin) =
        authenticated_account(&shared, &headers, &method, &uri, &id, Permission::Withdraw)?;
    let b: SendBody = serde_json::from_slice(&body).map_err(|_| {
        CbError(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is not JSON".into(),
        )
    })?;
    let _ = (&b.description, b.skip_notifications);
    let param = |v: &Option<String>, name: &str| {
        v.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
            CbError(
                StatusCode::BAD_REQUEST,
                "param_required",
                format!("{name} is required"),
            )
        })
    };
    if param(&b.kind, "type")? != "send" {
        return Err(validation("only type send is offered"));
    }
    let to = param(&b.to, "to")?;
    let amount_text = param(&b.amount, "amount")?;
    if param(&b.currency, "currency")? != coin.coin {
        return Err(validation("the currency is not the account's"));
    }
    if b.destination_tag.is_some() {
        return Err(validation(
            "destination_tag is not supported on this network",
        ));
    }
    let entry = match &b.network {
        None => coin.clone(),
        Some(n) => shared
            .config
            .coins
            .iter()
            .find(|c| c.coin == coin.coin && network_name(&c.network) == *n)
            .cloned()
            .ok_or_else(|| validation(format!("{} is not offered on network {n}", coin.coin)))?,
    };
    // A send with an idem seen before is that send.
    if let Some(idem) = &b.idem
        && let Some(w) = shared
            .ledger
            .withdrawals_of(&account)
            .into_iter()
            .find(|w| w.withdraw_order_id.as_ref() == Some(idem))
    {
        return Ok((
            StatusCode::CREATED,
            Json(json!({"data": withdrawal_json(&id, &w, coin.decimals)})),
        ));
    }
    let address = shared
        .address_on(&entry.network, &to)
        .ok_or_else(|| validation("Please enter a valid address"))?;
    let amount = parse_amount(&amount_text, entry.decimals)
        .map_err(|_| validation("Please enter a valid amount"))?;
    let min = parse_amount(&entry.withdraw_min, entry.decimals).unwrap_or_default();
    if amount.is_zero() || amount < min {
        return Err(validation(format!(
            "the amount is below the minimum of {}",
            entry.withdraw_min
        )));
    }
    let fee = parse_amount(&entry.withdraw_fee, entry.decimals).unwrap_or_default();
    let applied = shared.ledger.apply_withdrawal(
        WithdrawRequest {
            account: account.clone(),
            coin: entry.clone(),
            address,
            amount,
            fee,
            withdraw_order_id: b.idem.clone(),
        },
        now_ms(),
    );
    let (w, fresh) = match applied {
        Ok(w) => (w, true),
        // Two sends with one idem at once: the other one was applied (and queued by it).
        Err(_) if b.idem.is_some() => (
            shared
                .ledger
                .withdrawals_of(&account)
                .into_iter()
                .find(|w| w.withdraw_order_id == b.idem)
                .ok_or_else(|| validation("Insufficient funds"))?,
            false,
        ),
        Err(_) => return Err(validation("Insufficient funds")),
    };
    if fresh && shared.withdraw_queue.send(w.id.clone()).is_err() {
        shared
            .ledger
            .mark_failed(&w.id, "The simulator is shutting down.");
        return Err(CbError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "shutting down".into(),
        ));
    }
    tracing::info!(id = %w.id, account, "coinbase send applied");
    Ok((
        StatusCode::CREATED,
        Json(json!({"data": withdrawal_json(&id, &w, coin.decimals)})),
    ))
}
