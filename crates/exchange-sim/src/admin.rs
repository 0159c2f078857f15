//! Admin endpoints (not Binance), under `/sim/`, behind `Authorization: Bearer <admin_token>`
//! except `GET /sim/health`. Answers are JSON; errors are `{"error": "..."}`.
//!
//! - `POST /sim/api-keys` `{"account", "kind": "ed25519"|"hmac", "publicKey"?, "secret"?,
//!   "permissions": ["read","withdraw"], "apiKey"?}` → `{"apiKey", "secretKey"?}`: like a user
//!   uploading an Ed25519 public key (or asking for an HMAC key) in Binance's API Management.
//! - `POST /sim/credit` `{"account", "coin", "amount"}` → `{"account", "coin", "balance"}`.
//! - `GET /sim/deposit-address?account=..&network=..` → `{"address"}` (as the network writes
//!   addresses: `0x…` on EVM networks, `rltc1…` on Litecoin regtest).
//! - `GET /sim/health` → `{"status", "chainId", "hotWallet", "lastScannedBlock", "lastError"}`,
//!   and `utxo: {"chain", "network", "hotWallet", "nextBlock"}` when a UTXO chain is configured.
//! - `POST /sim/faults` `{"withdrawTimeoutAfterAccept"?: {"count", "delayMs"}, "http5xx"?:
//!   {"count", "status"?: 503|500, "paths"?: [..]}, "slow"?: {"count", "delayMs", "paths"?}}`
//!   replaces the active faults (a kind left out is cleared) and answers them like `GET`;
//!   `GET /sim/faults` → the same shape with the remaining counts, `null` for an inactive (or
//!   used-up) kind; `DELETE /sim/faults` clears them all. A bad body is refused with 400 and a
//!   message naming the field (e.g. `http5xx.paths[0]: ...`). Semantics in [`crate::faults`].
//!
//! Every endpoint checks the token before it looks at the body or the query. A body that is
//! not the endpoint's JSON, or a query that is not its parameters, is refused with 400 (415
//! without `Content-Type: application/json`, 413 over [`crate::BODY_LIMIT`]); messages repeat
//! inputs clipped ([`crate::echo`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng as _;
use rand::distributions::Alphanumeric;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Shared;
use crate::amount::{format_amount, parse_amount};
use crate::config::{ApiKeyConfig, ApiKeyKind, Permission, Secret};
use crate::echo::{clip, clip_message, clip_quoted};
use crate::faults::FaultSet;

/// An admin error answer: `{"error": "..."}` with an HTTP status.
pub struct AdminError(StatusCode, String);

impl AdminError {
    /// An error answer with this status and message.
    pub(crate) fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self(status, msg.into())
    }

    /// 404 for an account the ledger does not have.
    fn no_account(account: &str) -> Self {
        Self(
            StatusCode::NOT_FOUND,
            format!("there is no account {}", clip(account)),
        )
    }

    /// A request axum refused before the handler looked at it (an extractor's rejection):
    /// 413 over the body limit, 415 without a JSON content type, a server error as it is,
    /// 400 for the rest (not JSON, JSON of the wrong shape, a bad query); the refusal's own
    /// message with the inputs it quotes clipped.
    fn rejected(status: StatusCode, text: &str) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self(
                status,
                format!("the request body is over {} bytes", crate::BODY_LIMIT),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self(status, clip_quoted(text)),
            status if status.is_server_error() => Self(status, clip_quoted(text)),
            _ => Self(StatusCode::BAD_REQUEST, clip_quoted(text)),
        }
    }

    /// The error for an HTTP error status that no handler chose (an error answer that is not
    /// JSON): the status kept, `detail` (clipped) or the status's reason as the message.
    pub(crate) fn for_status(status: StatusCode, detail: &str) -> Self {
        match detail.trim() {
            "" => Self(
                status,
                status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_ascii_lowercase(),
            ),
            detail => Self(status, clip_quoted(detail)),
        }
    }
}

impl From<JsonRejection> for AdminError {
    fn from(rejection: JsonRejection) -> Self {
        Self::rejected(rejection.status(), &rejection.body_text())
    }
}

impl From<QueryRejection> for AdminError {
    fn from(rejection: QueryRejection) -> Self {
        Self::rejected(rejection.status(), &rejection.body_text())
    }
}

impl From<BytesRejection> for AdminError {
    fn from(rejection: BytesRejection) -> Self {
        Self::rejected(rejection.status(), &rejection.body_text())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": clip_message(&self.1) }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, msg.into())
}

/// Checks the bearer token (compared through SHA-256 digests, so the comparison time does not
/// depend on how much of the token matches).
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), AdminError> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = Sha256::digest(shared.config.admin_token.expose().as_bytes());
    if given.is_empty() || Sha256::digest(given.as_bytes()) != expected {
        return Err(AdminError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin bearer token".into(),
        ));
    }
    Ok(())
}

fn random_alphanumeric(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Body of `POST /sim/api-keys`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterKey {
    account: String,
    kind: String,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    permissions: Vec<Permission>,
    #[serde(default)]
    api_key: Option<String>,
}

/// `POST /sim/api-keys`.
pub async fn register_key(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Json<RegisterKey>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    authorize(&shared, &headers)?;
    let Json(body) = body?;
    if !shared.ledger.has_account(&body.account) {
        return Err(AdminError::no_account(&body.account));
    }
    let api_key = body.api_key.unwrap_or_else(|| random_alphanumeric(64));
    let mut generated_secret = None;
    let kind = match body.kind.as_str() {
        "ed25519" => {
            if body.secret.is_some() {
                return Err(bad("an ed25519 key takes publicKey, not secret"));
            }
            ApiKeyKind::Ed25519 {
                public_key: body
                    .public_key
                    .ok_or_else(|| bad("an ed25519 key needs publicKey (PEM or hex)"))?,
            }
        }
        "kraken" => {
            if body.public_key.is_some() {
                return Err(bad("a kraken key takes secret, not publicKey"));
            }
            let secret = match body.secret {
                Some(s) => s,
                None => {
                    use base64::Engine as _;
                    let mut bytes = [0u8; 64];
                    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
                    let s = base64::engine::general_purpose::STANDARD.encode(bytes);
                    generated_secret = Some(s.clone());
                    s
                }
            };
            ApiKeyKind::Kraken {
                secret: Secret::new(secret),
            }
        }
        "cdp-es256" | "cdp-ed25519" => {
            if body.secret.is_some() {
                return Err(bad(
                    "a CDP key takes publicKey (or none: one is made), not secret",
                ));
            }
            let public_key = match body.public_key {
                Some(p) => p,
                None => {
                    let (public, secret) = new_cdp_key(body.kind == "cdp-es256")?;
                    generated_secret = Some(secret);
                    public
                }
            };
            ApiKeyKind::Cdp { public_key }
        }
        "hmac" => {
            if body.public_key.is_some() {
                return Err(bad("an hmac key takes secret, not publicKey"));
            }
            let secret = match body.secret {
                Some(s) => s,
                None => {
                    let s = random_alphanumeric(64);
                    generated_secret = Some(s.clone());
                    s
                }
            };
            ApiKeyKind::Hmac {
                secret: Secret::new(secret),
            }
        }
        other => {
            return Err(bad(format!(
                "unknown key kind {:?}; ed25519, hmac, kraken, cdp-es256 or cdp-ed25519",
                clip(other)
            )));
        }
    };
    let config = ApiKeyConfig {
        api_key: api_key.clone(),
        kind,
        permissions: body.permissions,
    };
    config.validate().map_err(|e| bad(clip_quoted(&e)))?;
    shared
        .ledger
        .add_key(&config, &body.account)
        .map_err(|e| AdminError(StatusCode::CONFLICT, e))?;
    tracing::info!(account = %body.account, api_key = %api_key, "API key registered");
    let mut answer = json!({ "apiKey": api_key });
    if let (Some(secret), Some(obj)) = (generated_secret, answer.as_object_mut()) {
        obj.insert("secretKey".into(), json!(secret));
    }
    Ok(Json(answer))
}

/// A fresh CDP key: (public key as registered, secret: a PKCS#8 PEM for ES256, base64 seed ‖
/// public key for Ed25519, as Coinbase's portal gives it).
fn new_cdp_key(es256: bool) -> Result<(String, String), AdminError> {
    use base64::Engine as _;
    if es256 {
        use p256::pkcs8::EncodePublicKey as _;
        let secret = p256::SecretKey::random(&mut rand::thread_rng());
        let public = secret
            .public_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        // PKCS#8 (RustCrypto's SEC1 output leaves out the curve, which OpenSSL-based
        // clients such as coinbase-advanced-py then cannot read).
        use p256::pkcs8::EncodePrivateKey as _;
        let pem = secret
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok((public, pem.to_string()))
    } else {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut seed);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = key.verifying_key().to_bytes();
        let mut both = seed.to_vec();
        both.extend_from_slice(&public);
        Ok((
            hex::encode(public),
            base64::engine::general_purpose::STANDARD.encode(both),
        ))
    }
}

/// Body of `POST /sim/kraken/withdraw-keys`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KrakenWithdrawKeyBody {
    account: String,
    key: String,
    coin: String,
    network: String,
    address: String,
    /// The memo Kraken adds to withdrawals to this key (coins told apart by a memo).
    #[serde(default)]
    memo: Option<String>,
}

/// `POST /sim/kraken/withdraw-keys`: registers a Kraken withdrawal key (a named address the
/// account may withdraw to), as the account holder would at Kraken.
pub async fn register_kraken_withdraw_key(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Json<KrakenWithdrawKeyBody>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    authorize(&shared, &headers)?;
    let Json(b) = body?;
    if !shared.ledger.has_account(&b.account) {
        return Err(AdminError::no_account(&b.account));
    }
    crate::kraken::register_withdraw_key(
        &shared,
        &b.account,
        &b.key,
        &b.coin,
        &b.network,
        &b.address,
        b.memo.as_deref(),
    )
    .map_err(|e| bad(clip_quoted(&e)))?;
    tracing::info!(account = %b.account, key = %b.key, "kraken withdrawal key registered");
    Ok(Json(json!({ "key": b.key })))
}

/// Body of `POST /sim/credit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credit {
    account: String,
    coin: String,
    amount: String,
}

/// `POST /sim/credit`.
pub async fn credit(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Json<Credit>, JsonRejection>,
) -> Result<Json<Value>, AdminError> {
    authorize(&shared, &headers)?;
    let Json(body) = body?;
    let decimals = shared
        .config
        .coin_decimals(&body.coin)
        .ok_or_else(|| bad(format!("unknown coin {}", clip(&body.coin))))?;
    let amount = parse_amount(&body.amount, decimals).map_err(|_| {
        bad(format!(
            "amount {:?} is not a decimal with at most {decimals} decimals",
            clip(&body.amount)
        ))
    })?;
    if !shared.ledger.has_account(&body.account) {
        return Err(AdminError::no_account(&body.account));
    }
    let balance = shared
        .ledger
        .credit(&body.account, &body.coin, amount)
        .map_err(|e| AdminError(StatusCode::NOT_FOUND, e))?;
    Ok(Json(json!({
        "account": body.account,
        "coin": body.coin,
        "balance": format_amount(balance, decimals),
    })))
}

/// Query of `GET /sim/deposit-address`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressQuery {
    account: String,
    network: String,
}

/// `GET /sim/deposit-address`.
pub async fn admin_deposit_address(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Result<Query<AddressQuery>, QueryRejection>,
) -> Result<Json<Value>, AdminError> {
    authorize(&shared, &headers)?;
    let Query(AddressQuery { account, network }) = query?;
    if !shared.ledger.has_account(&account) {
        return Err(AdminError::no_account(&account));
    }
    if !shared.config.coins.iter().any(|c| c.network == network) {
        return Err(bad(format!(
            "no coin is offered on network {}",
            clip(&network)
        )));
    }
    let address = shared.deposit_address_text(&account, &network);
    Ok(Json(json!({ "address": address })))
}

/// `GET /sim/health` (no token).
pub async fn health(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let last = shared.chain_status.last_scanned.load(Ordering::SeqCst);
    let error = shared
        .chain_status
        .last_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut health = json!({
        "status": if error.is_none() { "ok" } else { "degraded" },
        "chainId": shared.config.chain_id,
        "hotWallet": shared.hot_wallet.to_string(),
        "lastScannedBlock": if last == u64::MAX { Value::Null } else { json!(last) },
        "lastError": error,
    });
    if let Some(u) = &shared.utxo {
        health["utxo"] = json!({
            "chain": u.chain.name(),
            "network": u.network,
            "hotWallet": u.hot_wallet_address(),
            "nextBlock": u.next_block(),
        });
    }
    Json(health)
}

/// `GET /sim/faults`: the active faults with their remaining counts.
pub async fn get_faults(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<FaultSet>, AdminError> {
    authorize(&shared, &headers)?;
    Ok(Json(shared.faults.current()))
}

/// `POST /sim/faults`: replaces the active faults. The token is checked before the body is
/// looked at; a body that is not a [`FaultSet`] is refused with 400 naming the bad field.
pub async fn set_faults(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FaultSet>, AdminError> {
    authorize(&shared, &headers)?;
    let Json(set) = Json::<FaultSet>::from_bytes(&body?)?;
    tracing::info!(faults = ?set, "faults set");
    Ok(Json(shared.faults.replace(set)))
}

/// `DELETE /sim/faults`: clears every fault; answers the (empty) set.
pub async fn clear_faults(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<FaultSet>, AdminError> {
    authorize(&shared, &headers)?;
    tracing::info!("faults cleared");
    Ok(Json(shared.faults.replace(FaultSet::default())))
}
