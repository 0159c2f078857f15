//! Kraken's spot REST funding subset, as docs.kraken.com documents it: `POST
//! /0/private/<Method>` for `Balance`, `DepositMethods`, `DepositAddresses`, `DepositStatus`,
//! `WithdrawAddresses`, `Withdraw` and `WithdrawStatus`.
//!
//! - Authentication: the key in `API-Key`; `API-Sign` = base64(HMAC-SHA512(base64-decoded
//!   secret, URI path ‖ SHA256(nonce ‖ body))) over the body exactly as received
//!   (form-encoded, or JSON as the newer docs show); the `nonce` must be larger than every
//!   nonce the key used before. Errors are Kraken's `{"error": ["EAPI:Invalid key"]}` with
//!   HTTP 200, as Kraken answers them.
//! - A withdrawal names a withdrawal key: an address the account holder registered at Kraken
//!   (here through `POST /sim/kraken/withdraw-keys`); an `address` given beside it must be
//!   the key's. Withdrawals are executed like Binance's (the same ledger and hot wallet).
//! - `DepositAddresses` with `new=true` is refused with `EFunding:Too many addresses`: the
//!   simulator has one address per account and network (Kraken would make another).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::Shared;
use crate::amount::{format_amount, parse_amount};
use crate::config::{CoinConfig, Permission};
use crate::state::{
    DEPOSIT_SUCCESS, KrakenWithdrawKey, Verifier, WITHDRAW_COMPLETED, WITHDRAW_FAILURE,
    WithdrawRequest,
};
use crate::time::now_ms;

/// The path prefix of Kraken's private endpoints.
pub const PRIVATE: &str = "/0/private/{method}";

/// Kraken's private calls the simulator speaks, as paths (faults may name them).
pub const PATHS: [&str; 7] = [
    "/0/private/Balance",
    "/0/private/DepositMethods",
    "/0/private/DepositAddresses",
    "/0/private/DepositStatus",
    "/0/private/WithdrawAddresses",
    "/0/private/Withdraw",
    "/0/private/WithdrawStatus",
];

/// A Kraken error answer: `{"error": [...]}` with HTTP 200.
fn error(e: &str) -> Json<Value> {
    Json(json!({ "error": [e] }))
}

fn ok(result: Value) -> Json<Value> {
    Json(json!({ "error": [], "result": result }))
}

/// Kraken's asset code in answers (the legacy X-prefixed ones for the old coins).
fn asset_code(coin: &str) -> String {
    match coin {
        "BTC" => "XXBT".into(),
        "ETH" => "XETH".into(),
        "LTC" => "XLTC".into(),
        "DOGE" => "XXDG".into(),
        other => other.into(),
    }
}

/// The coin an asset in a request names (`ETH`, `XETH`, `XBT`, `XXBT`, `USDT`, ...).
fn coin_named(shared: &Shared, asset: &str) -> Option<String> {
    let upper = asset.to_ascii_uppercase();
    let candidates = match upper.as_str() {
        "XBT" | "XXBT" => vec!["BTC".to_owned()],
        "XDG" | "XXDG" => vec!["DOGE".to_owned()],
        a if a.len() == 4 && (a.starts_with('X') || a.starts_with('Z')) => {
            vec![a.to_owned(), a[1..].to_owned()]
        }
        a => vec![a.to_owned()],
    };
    candidates
        .into_iter()
        .find(|c| shared.config.coins.iter().any(|e| &e.coin == c))
}

/// Kraken's funding method name of a coin on a network.
fn method_name(entry: &CoinConfig, native: bool) -> String {
    match (entry.coin.as_str(), native) {
        ("ETH", true) => "Ether (Hex)".into(),
        ("BTC", true) => "Bitcoin".into(),
        ("LTC", true) => "Litecoin".into(),
        ("USDT", false) => "Tether USD (ERC20)".into(),
        (coin, true) => coin.into(),
        (coin, false) => format!("{coin} (ERC20)"),
    }
}

/// The coin's entries with their method names.
fn methods(shared: &Shared, coin: &str) -> Vec<(CoinConfig, String)> {
    shared
        .config
        .coins
        .iter()
        .filter(|e| e.coin == coin)
        .map(|e| (e.clone(), method_name(e, e.contract.is_none())))
        .collect()
}

/// The request's parameters, from a form-encoded or JSON body.
fn params(headers: &HeaderMap, body: &[u8]) -> Result<BTreeMap<String, String>, &'static str> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut out = BTreeMap::new();
    if json {
        let v: Value = serde_json::from_slice(body).map_err(|_| "EGeneral:Invalid arguments")?;
        let obj = v.as_object().ok_or("EGeneral:Invalid arguments")?;
        for (k, v) in obj {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err("EGeneral:Invalid arguments"),
            };
            out.insert(k.clone(), text);
        }
    } else {
        let text = std::str::from_utf8(body).map_err(|_| "EGeneral:Invalid arguments")?;
        for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
            if out.insert(k.into_owned(), v.into_owned()).is_some() {
                return Err("EGeneral:Invalid arguments");
            }
        }
    }
    Ok(out)
}

/// Checks the key, the signature and the nonce; returns the account and the parameters.
fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
    permission: Permission,
) -> Result<(String, BTreeMap<String, String>), &'static str> {
    let api_key = headers
        .get("API-Key")
        .and_then(|v| v.to_str().ok())
        .ok_or("EAPI:Invalid key")?;
    let key = shared.ledger.key(api_key).ok_or("EAPI:Invalid key")?;
    let Verifier::Kraken(secret) = &key.verifier else {
        // A Binance key is no Kraken key.
        return Err("EAPI:Invalid key");
    };
    let sign = headers
        .get("API-Sign")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .ok_or("EAPI:Invalid signature")?;
    let params = params(headers, body)?;
    let nonce_text = params.get("nonce").ok_or("EAPI:Invalid nonce")?;
    let nonce: u64 = nonce_text
        .parse()
        .ok()
        .filter(|_| nonce_text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or("EAPI:Invalid nonce")?;
    let inner = Sha256::new()
        .chain_update(nonce_text.as_bytes())
        .chain_update(body)
        .finalize();
    let mut mac =
        <Hmac<Sha512> as Mac>::new_from_slice(secret).map_err(|_| "EGeneral:Internal error")?;
    mac.update(path.as_bytes());
    mac.update(&inner);
    // Constant-time comparison.
    mac.verify_slice(&sign)
        .map_err(|_| "EAPI:Invalid signature")?;
    // Only a genuinely signed request uses up a nonce.
    if !shared.ledger.take_kraken_nonce(api_key, nonce) {
        return Err("EAPI:Invalid nonce");
    }
    if !key.permissions.contains(&permission) {
        return Err("EGeneral:Permission denied");
    }
    Ok((key.account, params))
}

/// `POST /0/private/{method}`.
pub async fn private(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let executed_withdraw = method == "Withdraw";
    let answer = private_answer(&shared, &method, &headers, &body);
    // The `withdrawTimeoutAfterAccept` fault: the withdrawal executed, its answer withheld,
    // then the gateway's 504.
    if executed_withdraw
        && answer.0.get("result").is_some()
        && let Some(delay) = shared.faults.take_withdraw_timeout()
    {
        tracing::info!(
            delay_ms = delay.as_millis(),
            "fault: Kraken withdrawal executed, answer withheld, then 504"
        );
        tokio::time::sleep(delay).await;
        return (
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "504 Gateway Time-out: the backend did not answer in time",
        )
            .into_response();
    }
    answer.into_response()
}

/// The answer to a private call, whatever its transport does with it.
fn private_answer(shared: &Shared, method: &str, headers: &HeaderMap, body: &[u8]) -> Json<Value> {
    let path = format!("/0/private/{method}");
    let permission = if method == "Withdraw" {
        Permission::Withdraw
    } else {
        Permission::Read
    };
    let known = [
        "Balance",
        "DepositMethods",
        "DepositAddresses",
        "DepositStatus",
        "WithdrawAddresses",
        "Withdraw",
        "WithdrawStatus",
    ];
    if !known.contains(&method) {
        return error("EGeneral:Unknown method");
    }
    let (account, p) = match authenticate(shared, headers, &path, body, permission) {
        Ok(x) => x,
        Err(e) => return error(e),
    };
    let answer = match method {
        "Balance" => Ok(balance(shared, &account)),
        "DepositMethods" => deposit_methods(shared, &p),
        "DepositAddresses" => deposit_addresses(shared, &account, &p),
        "DepositStatus" => deposit_status(shared, &account, &p),
        "WithdrawAddresses" => withdraw_addresses(shared, &account, &p),
        "Withdraw" => withdraw(shared, &account, &p),
        _ => withdraw_status(shared, &account, &p),
    };
    match answer {
        Ok(v) => ok(v),
        Err(e) => error(e),
    }
}

fn balance(shared: &Shared, account: &str) -> Value {
    let mut out = serde_json::Map::new();
    for (coin, amount) in shared.ledger.balances(account) {
        let d = shared.config.coin_decimals(&coin).unwrap_or(8);
        out.insert(asset_code(&coin), json!(format_amount(amount, d)));
    }
    Value::Object(out)
}

fn asset_param(shared: &Shared, p: &BTreeMap<String, String>) -> Result<String, &'static str> {
    let asset = p.get("asset").ok_or("EGeneral:Invalid arguments:asset")?;
    coin_named(shared, asset).ok_or("EQuery:Unknown asset")
}

fn deposit_methods(shared: &Shared, p: &BTreeMap<String, String>) -> Result<Value, &'static str> {
    let coin = asset_param(shared, p)?;
    Ok(Value::Array(
        methods(shared, &coin)
            .into_iter()
            .map(|(_, m)| json!({"method": m, "limit": false, "fee": "0.0000000000", "gen-address": true}))
            .collect(),
    ))
}

fn find_method(
    shared: &Shared,
    coin: &str,
    p: &BTreeMap<String, String>,
) -> Result<CoinConfig, &'static str> {
    let method = p.get("method").ok_or("EGeneral:Invalid arguments:method")?;
    methods(shared, coin)
        .into_iter()
        .find(|(_, m)| m == method)
        .map(|(e, _)| e)
        .ok_or("EFunding:Unknown method")
}

fn deposit_addresses(
    shared: &Shared,
    account: &str,
    p: &BTreeMap<String, String>,
) -> Result<Value, &'static str> {
    let coin = asset_param(shared, p)?;
    let entry = find_method(shared, &coin, p)?;
    if p.get("new")
        .is_some_and(|v| v == "true" || v == "True" || v == "1")
    {
        return Err("EFunding:Too many addresses");
    }
    let address = shared.deposit_address_text(account, &entry.network);
    Ok(json!([{"address": address, "expiretm": "0"}]))
}

/// The coin an optional `asset` parameter names (`None`: every coin).
fn optional_asset(
    shared: &Shared,
    p: &BTreeMap<String, String>,
) -> Result<Option<String>, &'static str> {
    match p.get("asset") {
        Some(_) => asset_param(shared, p).map(Some),
        None => Ok(None),
    }
}

/// A coin on a network: its decimals (8 if unknown) and Kraken's method name for it.
fn entry_of(shared: &Shared, coin: &str, network: &str) -> (u8, String) {
    shared
        .config
        .coins
        .iter()
        .find(|e| e.coin == coin && e.network == network)
        .map_or((8, String::new()), |e| {
            (e.decimals, method_name(e, e.contract.is_none()))
        })
}

fn time_secs(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn deposit_status(
    shared: &Shared,
    account: &str,
    p: &BTreeMap<String, String>,
) -> Result<Value, &'static str> {
    let coin = optional_asset(shared, p)?;
    let list: Vec<Value> = shared
        .ledger
        .deposits_of(account)
        .into_iter()
        .filter(|d| coin.as_ref().is_none_or(|c| &d.coin == c))
        .map(|d| {
            let (decimals, method) = entry_of(shared, &d.coin, &d.network);
            json!({
                "method": method,
                "aclass": "currency",
                "asset": asset_code(&d.coin),
                "refid": d.id,
                "txid": d.tx_id,
                "info": d.address,
                "amount": format_amount(d.amount, decimals),
                "fee": "0.0000000000",
                "time": time_secs(d.insert_time),
                "status": if d.status == DEPOSIT_SUCCESS { "Success" } else { "Settled" },
            })
        })
        .collect();
    Ok(Value::Array(list))
}

fn withdraw_addresses(
    shared: &Shared,
    account: &str,
    p: &BTreeMap<String, String>,
) -> Result<Value, &'static str> {
    let coin = optional_asset(shared, p)?;
    let list: Vec<Value> = shared
        .ledger
        .kraken_withdraw_keys(account)
        .into_iter()
        .filter(|k| coin.as_ref().is_none_or(|c| &k.coin == c))
        .filter(|k| p.get("key").is_none_or(|want| want == &k.key))
        .map(|k| {
            let mut entry = json!({
                "address": k.address,
                "asset": asset_code(&k.coin),
                "method": entry_of(shared, &k.coin, &k.network).1,
                "key": k.key,
                "verified": true,
            });
            if let Some(memo) = &k.memo {
                entry["memo"] = json!(memo);
            }
            entry
        })
        .collect();
    Ok(Value::Array(list))
}

fn withdraw(
    shared: &Shared,
    account: &str,
    p: &BTreeMap<String, String>,
) -> Result<Value, &'static str> {
    let coin = asset_param(shared, p)?;
    let key_name = p.get("key").ok_or("EGeneral:Invalid arguments:key")?;
    let amount_text = p.get("amount").ok_or("EGeneral:Invalid arguments:amount")?;
    let key = shared
        .ledger
        .kraken_withdraw_keys(account)
        .into_iter()
        .find(|k| &k.key == key_name && k.coin == coin)
        .ok_or("EFunding:Unknown withdraw key")?;
    if let Some(address) = p.get("address")
        && address.trim() != key.address
    {
        return Err("EFunding:Invalid withdrawal address");
    }
    let entry = shared
        .config
        .coins
        .iter()
        .find(|e| e.coin == key.coin && e.network == key.network)
        .cloned()
        .ok_or("EFunding:Unknown asset")?;
    let amount =
        parse_amount(amount_text, entry.decimals).map_err(|_| "EFunding:Invalid amount")?;
    let min = parse_amount(&entry.withdraw_min, entry.decimals).unwrap_or_default();
    if amount.is_zero() || amount < min {
        return Err("EFunding:Invalid amount");
    }
    let fee = parse_amount(&entry.withdraw_fee, entry.decimals).unwrap_or_default();
    if let Some(max_fee) = p.get("max_fee") {
        let max = parse_amount(max_fee, entry.decimals)
            .map_err(|_| "EGeneral:Invalid arguments:max_fee")?;
        if fee > max {
            return Err("EFunding:Max fee exceeded");
        }
    }
    // Kraken's `amount` includes its fee: what leaves on chain is the rest, and
    // `WithdrawStatus` lists that (net) amount and the fee.
    let net = amount
        .checked_sub(fee)
        .filter(|n| !n.is_zero())
        .ok_or("EFunding:Invalid amount")?;
    let withdrawal = shared
        .ledger
        .apply_withdrawal(
            WithdrawRequest {
                account: account.to_owned(),
                coin: entry,
                address: key.address.clone(),
                amount: net,
                fee,
                withdraw_order_id: None,
            },
            now_ms(),
        )
        .map_err(|_| "EFunding:Insufficient funds")?;
    tracing::info!(id = %withdrawal.id, account, key = %key.key, "kraken withdrawal applied");
    if shared.withdraw_queue.send(withdrawal.id.clone()).is_err() {
        shared
            .ledger
            .mark_failed(&withdrawal.id, "The simulator is shutting down.");
        return Err("EService:Unavailable");
    }
    Ok(json!({ "refid": withdrawal.id }))
}

fn withdraw_status(
    shared: &Shared,
    account: &str,
    p: &BTreeMap<String, String>,
) -> Result<Value, &'static str> {
    let coin = optional_asset(shared, p)?;
    let keys = shared.ledger.kraken_withdraw_keys(account);
    let list: Vec<Value> = shared
        .ledger
        .withdrawals_of(account)
        .into_iter()
        .filter(|w| coin.as_ref().is_none_or(|c| &w.coin == c))
        .map(|w| {
            let (decimals, method) = entry_of(shared, &w.coin, &w.network);
            let status = match w.status {
                WITHDRAW_COMPLETED => "Success",
                WITHDRAW_FAILURE => "Failure",
                _ if w.tx_id.is_some() => "Pending",
                _ => "Initial",
            };
            let key = keys
                .iter()
                .find(|k| k.address == w.address && k.coin == w.coin)
                .map(|k| k.key.clone())
                .unwrap_or_default();
            json!({
                "method": method,
                "network": w.network,
                "aclass": "currency",
                "asset": asset_code(&w.coin),
                "refid": w.id,
                "txid": w.tx_id.clone().unwrap_or_default(),
                "info": w.address,
                "amount": format_amount(w.amount, decimals),
                "fee": format_amount(w.fee, decimals),
                "time": time_secs(w.apply_time),
                "status": status,
                "key": key,
            })
        })
        .collect();
    Ok(Value::Array(list))
}

/// Registers a withdrawal key for an account (the simulator's stand-in for the account
/// holder adding and confirming an address at Kraken).
pub fn register_withdraw_key(
    shared: &Shared,
    account: &str,
    key: &str,
    coin: &str,
    network: &str,
    address: &str,
    memo: Option<&str>,
) -> Result<(), String> {
    let entry = shared
        .config
        .coins
        .iter()
        .find(|e| e.coin == coin && e.network == network)
        .ok_or_else(|| format!("no coin {coin} on network {network}"))?;
    let address = shared
        .address_on(&entry.network, address)
        .ok_or_else(|| format!("{address:?} is not an address of network {network}"))?;
    if key.is_empty() || key.len() > 64 {
        return Err("a withdrawal key's name is 1 to 64 characters".into());
    }
    if memo.is_some_and(|m| m.is_empty() || m.len() > 64) {
        return Err("a withdrawal key's memo is 1 to 64 characters".into());
    }
    shared.ledger.add_kraken_withdraw_key(
        account,
        KrakenWithdrawKey {
            key: key.to_owned(),
            coin: coin.to_owned(),
            network: network.to_owned(),
            address,
            memo: memo.map(str::to_owned),
        },
    )
}
