//! The Binance endpoints. Paths, parameters and response fields follow Binance's docs:
//! spot `rest-api.md` (ping, time, account) and the Wallet "Capital" pages (deposit address,
//! deposit history, withdraw, withdraw history).

use std::collections::BTreeMap;
use std::sync::Arc;

use alloy::primitives::Address;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, Uri};
use serde_json::{Value, json};

use crate::Shared;
use crate::amount::{AmountError, format_amount, parse_amount};
use crate::api_error::ApiError;
use crate::auth::{
    SplitError, check_timing, parse_recv_window, parse_timestamp, split_signature,
    valid_api_key_format, verify_ed25519, verify_hmac,
};
use crate::config::{CoinConfig, Permission};
use crate::state::{DEPOSIT_SUCCESS, Verifier, WithdrawRequest};
use crate::time::{format_utc, now_ms, now_us};

/// `GET /api/v3/ping`.
pub const PING: &str = "/api/v3/ping";
/// `GET /api/v3/time`.
pub const TIME: &str = "/api/v3/time";
/// `GET /api/v3/account`.
pub const ACCOUNT: &str = "/api/v3/account";
/// `GET /sapi/v1/capital/deposit/address`.
pub const DEPOSIT_ADDRESS: &str = "/sapi/v1/capital/deposit/address";
/// `GET /sapi/v1/capital/deposit/hisrec`.
pub const DEPOSIT_HISTORY: &str = "/sapi/v1/capital/deposit/hisrec";
/// `POST /sapi/v1/capital/withdraw/apply`.
pub const WITHDRAW_APPLY: &str = "/sapi/v1/capital/withdraw/apply";
/// `GET /sapi/v1/capital/withdraw/history`.
pub const WITHDRAW_HISTORY: &str = "/sapi/v1/capital/withdraw/history";
/// Every Binance path the simulator serves (the ones faults may name).
pub const PATHS: [&str; 7] = [
    PING,
    TIME,
    ACCOUNT,
    DEPOSIT_ADDRESS,
    DEPOSIT_HISTORY,
    WITHDRAW_APPLY,
    WITHDRAW_HISTORY,
];

/// Which API family an endpoint belongs to (they answer a too-large recvWindow differently).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `/api/v3/...`
    Spot,
    /// `/sapi/v1/...`
    Sapi,
}

/// What a signed endpoint accepts.
struct Endpoint {
    family: Family,
    /// Parameters it reads, besides `timestamp`, `recvWindow` and `signature`.
    params: &'static [&'static str],
    permission: Permission,
    /// Whether the body is part of the request (POST) or ignored (GET).
    uses_body: bool,
    /// Whether the endpoint changes state (a replay of it is always refused).
    mutating: bool,
}

/// A request that passed the signature checks.
struct Signed {
    account: String,
    params: BTreeMap<String, String>,
}

const DEFAULT_RECV_WINDOW_US: u128 = 5_000_000;
const MAX_RECV_WINDOW_US: u128 = 60_000_000;
const DAY_MS: u64 = 86_400_000;
const NUMBER_RANGE: &str = "^[0-9]{1,20}$";
const DECIMAL_RANGE: &str = "^([0-9]{1,20})(\\.[0-9]{1,20})?$";

/// `GET /api/v3/ping` (NONE): `{}`.
pub async fn ping() -> Json<Value> {
    Json(json!({}))
}

/// `GET /api/v3/time` (NONE): `{"serverTime": ms}`.
pub async fn time() -> Json<Value> {
    Json(json!({ "serverTime": now_ms() }))
}

/// The body of a request to a Binance endpoint: its bytes, up to [`crate::BODY_LIMIT`]. A
/// body that cannot be read is refused as a Binance error before any other check (413 -1101
/// when it is too large).
pub struct RawBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(Bytes::from_request(request, state).await?))
    }
}

/// The value of one hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// Decodes one `application/x-www-form-urlencoded` name or value strictly: `+` is a space,
/// `%XX` a byte; `None` for a `%` not followed by two hex digits or for bytes that are not
/// UTF-8 once decoded (which a lenient decoder would pass on literally or as U+FFFD).
fn decode_component(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let high = hex_value(*bytes.get(i + 1)?)?;
                let low = hex_value(*bytes.get(i + 2)?)?;
                decoded.push((high << 4) | low);
                i += 2;
            }
            byte => decoded.push(byte),
        }
        i += 1;
    }
    String::from_utf8(decoded).ok()
}

/// Parses one part (query or body) into name → value: a name or value that is not
/// percent-encoded UTF-8 is -1100, a name twice is -1101.
fn parse_part(
    part: &str,
    into: &mut BTreeMap<String, String>,
    overwrite: bool,
) -> Result<(), ApiError> {
    let mut seen = std::collections::HashSet::new();
    for pair in part.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(name).ok_or_else(|| ApiError::undecodable(None))?;
        let value = decode_component(value).ok_or_else(|| ApiError::undecodable(Some(&name)))?;
        if !seen.insert(name.clone()) {
            return Err(ApiError::duplicate_parameter());
        }
        if overwrite || !into.contains_key(&name) {
            into.insert(name, value);
        }
    }
    Ok(())
}

/// The SIGNED endpoint security checks, in order: API key format (-2014), parameters
/// percent-encoded UTF-8 (-1100) and not duplicated (-1101), API key known (-2015), timestamp
/// and recvWindow present and well formed (-1102, -1100, -1131), timing (-1021), signature
/// (-1022), replay (-1099, withdrawals always, reads when configured), permission (-2015),
/// unknown parameters (-1104).
fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    body: &Bytes,
    endpoint: &Endpoint,
) -> Result<Signed, ApiError> {
    let api_key = headers
        .get("X-MBX-APIKEY")
        .and_then(|v| v.to_str().ok())
        .filter(|k| valid_api_key_format(k))
        .ok_or_else(ApiError::bad_api_key_format)?;
    let query = uri.query().unwrap_or("");
    let body = if endpoint.uses_body {
        std::str::from_utf8(body).map_err(|_| ApiError::illegal_chars_general())?
    } else {
        ""
    };
    // Binance: a parameter sent in both the query string and the body takes the query's value.
    let mut params = BTreeMap::new();
    parse_part(query, &mut params, true)?;
    parse_part(body, &mut params, false)?;

    let key = shared
        .ledger
        .key(api_key)
        .ok_or_else(ApiError::rejected_key)?;

    let timestamp = params
        .get("timestamp")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::mandatory("timestamp"))?;
    let timestamp = parse_timestamp(timestamp)
        .ok_or_else(|| ApiError::illegal_chars("timestamp", NUMBER_RANGE))?;
    let recv_window = match params.get("recvWindow") {
        None => DEFAULT_RECV_WINDOW_US,
        Some(text) => parse_recv_window(text).ok_or_else(|| {
            ApiError::illegal_chars("recvWindow", "^[0-9]{1,20}(\\.[0-9]{1,3})?$")
        })?,
    };
    if recv_window > MAX_RECV_WINDOW_US {
        return Err(match endpoint.family {
            Family::Sapi => ApiError::bad_recv_window(),
            Family::Spot => ApiError::greater_than("recvWindow", "60000"),
        });
    }
    let split = split_signature(query, body).map_err(|e| match e {
        SplitError::Missing => ApiError::mandatory("signature"),
        SplitError::Misplaced => ApiError::invalid_signature(),
    })?;

    let server_time = now_us();
    check_timing(timestamp, recv_window, server_time).map_err(|ahead| {
        if ahead {
            ApiError::timestamp_ahead()
        } else {
            ApiError::timestamp_outside_window()
        }
    })?;

    let valid = match &key.verifier {
        Verifier::Hmac(secret) => verify_hmac(
            secret.expose().as_bytes(),
            split.payload.as_bytes(),
            &split.signature,
        ),
        Verifier::Ed25519(public) => {
            verify_ed25519(public, split.payload.as_bytes(), &split.signature)
        }
        // A Kraken or Coinbase key is no Binance key.
        Verifier::Kraken(_) | Verifier::Cdp(_) => return Err(ApiError::rejected_key()),
    };
    if !valid {
        return Err(ApiError::invalid_signature());
    }

    // Replays: a signature accepted within its recvWindow is not accepted again (always for
    // withdrawals, for reads when `reject_replayed_reads`). HMAC signatures are
    // case-insensitive: one accepted signature in any case is one request.
    let replay_key = match key.verifier {
        Verifier::Hmac(_) => split.signature.to_ascii_lowercase(),
        Verifier::Ed25519(_) | Verifier::Kraken(_) | Verifier::Cdp(_) => split.signature.clone(),
    };
    let expires = timestamp + recv_window + 1_000_000;
    if (endpoint.mutating || shared.config.reject_replayed_reads)
        && !shared
            .ledger
            .accept_signature(api_key, &replay_key, expires, server_time)
    {
        return Err(ApiError::replayed());
    }

    if !key.permissions.contains(&endpoint.permission) {
        return Err(ApiError::rejected_key());
    }

    let sent = params.len();
    let read = params
        .keys()
        .filter(|name| {
            matches!(name.as_str(), "timestamp" | "recvWindow" | "signature")
                || endpoint.params.contains(&name.as_str())
        })
        .count();
    if read != sent {
        return Err(ApiError::unread_parameters(read, sent));
    }
    params.remove("signature");
    Ok(Signed {
        account: key.account,
        params,
    })
}

/// A non-empty string parameter.
fn opt_str<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// A mandatory string parameter (-1102).
fn req_str<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    opt_str(params, name).ok_or_else(|| ApiError::mandatory(name))
}

/// An optional unsigned integer parameter (-1100 when not digits).
fn opt_u64(params: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    match opt_str(params, name) {
        None => Ok(None),
        Some(text) => {
            if text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::illegal_chars(name, NUMBER_RANGE));
            }
            text.parse()
                .map(Some)
                .map_err(|_| ApiError::illegal_chars(name, NUMBER_RANGE))
        }
    }
}

/// An optional boolean parameter (-1130 when neither true nor false).
fn opt_bool(params: &BTreeMap<String, String>, name: &str) -> Result<Option<bool>, ApiError> {
    match opt_str(params, name) {
        None => Ok(None),
        Some(text) if text.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(text) if text.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::invalid_parameter(name)),
    }
}

/// The time window of a history query: defaults to the last `default_days` days; at most 90
/// days between startTime and endTime (-4047).
fn time_window(
    params: &BTreeMap<String, String>,
    default_days: u64,
) -> Result<(u64, u64), ApiError> {
    let now = now_ms();
    let start = opt_u64(params, "startTime")?;
    let end = opt_u64(params, "endTime")?;
    let (start, end) = match (start, end) {
        (Some(s), Some(e)) => (s, e),
        (Some(s), None) => (s, s.saturating_add(default_days * DAY_MS).min(now.max(s))),
        (None, Some(e)) => (e.saturating_sub(default_days * DAY_MS), e),
        (None, None) => (now.saturating_sub(default_days * DAY_MS), now),
    };
    if end < start || end - start > 90 * DAY_MS {
        return Err(ApiError::date_interval());
    }
    Ok((start, end))
}

/// offset/limit paging (limit default 1000, at most 1000).
fn page<T>(items: Vec<T>, params: &BTreeMap<String, String>) -> Result<Vec<T>, ApiError> {
    let offset = opt_u64(params, "offset")?.unwrap_or(0) as usize;
    let limit = opt_u64(params, "limit")?.unwrap_or(1000).clamp(1, 1000) as usize;
    Ok(items.into_iter().skip(offset).take(limit).collect())
}

/// The coin entry for (coin, network?): unknown coin -4018, network not offered -1130.
fn find_coin<'a>(
    shared: &'a Shared,
    coin: &str,
    network: Option<&str>,
) -> Result<&'a CoinConfig, ApiError> {
    let mut entries = shared
        .config
        .coins
        .iter()
        .filter(|c| c.coin == coin)
        .peekable();
    if entries.peek().is_none() {
        return Err(ApiError::asset_not_exist());
    }
    match network {
        None => entries.next().ok_or_else(ApiError::asset_not_exist),
        Some(network) => entries
            .find(|c| c.network == network)
            .ok_or_else(|| ApiError::invalid_parameter("network")),
    }
}

/// `GET /api/v3/account` (USER_DATA).
pub async fn account(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let endpoint = Endpoint {
        family: Family::Spot,
        params: &["omitZeroBalances"],
        permission: Permission::Read,
        uses_body: false,
        mutating: false,
    };
    let signed = authenticate(&shared, &headers, &uri, &body, &endpoint)?;
    let omit_zero = opt_bool(&signed.params, "omitZeroBalances")?.unwrap_or(false);
    let balances = shared.ledger.balances(&signed.account);
    let mut coins: Vec<&str> = Vec::new();
    for coin in &shared.config.coins {
        if !coins.contains(&coin.coin.as_str()) {
            coins.push(&coin.coin);
        }
    }
    let rows: Vec<Value> = coins
        .iter()
        .filter_map(|coin| {
            let value = balances.get(*coin).copied().unwrap_or_default();
            if omit_zero && value.is_zero() {
                return None;
            }
            let decimals = shared.config.coin_decimals(coin).unwrap_or(18);
            Some(json!({
                "asset": coin,
                "free": format_amount(value, decimals),
                "locked": "0.00000000",
            }))
        })
        .collect();
    let uid = shared
        .account_uids
        .get(&signed.account)
        .copied()
        .unwrap_or(0);
    Ok(Json(json!({
        "makerCommission": 0,
        "takerCommission": 0,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": "0.00000000",
            "taker": "0.00000000",
            "buyer": "0.00000000",
            "seller": "0.00000000"
        },
        "canTrade": true,
        "canWithdraw": true,
        "canDeposit": true,
        "brokered": false,
        "requireSelfTradePrevention": false,
        "preventSor": false,
        "updateTime": now_ms(),
        "accountType": "SPOT",
        "balances": rows,
        "permissions": ["SPOT"],
        "uid": uid,
    })))
}

/// `GET /sapi/v1/capital/deposit/address` (USER_DATA): the (account, network) address, the
/// same on every call and for every coin of the network.
pub async fn deposit_address_handler(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let endpoint = Endpoint {
        family: Family::Sapi,
        params: &["coin", "network", "amount"],
        permission: Permission::Read,
        uses_body: false,
        mutating: false,
    };
    let signed = authenticate(&shared, &headers, &uri, &body, &endpoint)?;
    let coin = req_str(&signed.params, "coin")?;
    let entry = find_coin(&shared, coin, opt_str(&signed.params, "network"))?;
    let address = shared.deposit_address_text(&signed.account, &entry.network);
    Ok(Json(json!({
        "address": address,
        "coin": entry.coin,
        "tag": "",
        "url": "",
    })))
}

/// `GET /sapi/v1/capital/deposit/hisrec` (USER_DATA), newest first.
pub async fn deposit_history(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let endpoint = Endpoint {
        family: Family::Sapi,
        params: &[
            "includeSource",
            "coin",
            "status",
            "startTime",
            "endTime",
            "offset",
            "limit",
            "txId",
        ],
        permission: Permission::Read,
        uses_body: false,
        mutating: false,
    };
    let signed = authenticate(&shared, &headers, &uri, &body, &endpoint)?;
    let p = &signed.params;
    let include_source = opt_bool(p, "includeSource")?.unwrap_or(false);
    let coin = opt_str(p, "coin");
    let status = opt_u64(p, "status")?;
    let tx_id = opt_str(p, "txId").map(str::to_ascii_lowercase);
    let (start, end) = time_window(p, 90)?;
    let required = shared.config.confirmations;
    let deposits: Vec<_> = shared
        .ledger
        .deposits_of(&signed.account)
        .into_iter()
        .filter(|d| coin.is_none_or(|c| d.coin == c))
        .filter(|d| status.is_none_or(|s| u64::from(d.status) == s))
        .filter(|d| tx_id.as_ref().is_none_or(|t| d.tx_id == *t))
        .filter(|d| d.insert_time >= start && d.insert_time <= end)
        .collect();
    let rows = page(deposits, p)?
        .into_iter()
        .map(|d| {
            let decimals = shared.config.coin_decimals(&d.coin).unwrap_or(18);
            let mut row = json!({
                "id": d.id,
                "amount": format_amount(d.amount, decimals),
                "coin": d.coin,
                "network": d.network,
                "status": d.status,
                "address": d.address.to_string(),
                "addressTag": "",
                "txId": d.tx_id.to_string(),
                "insertTime": d.insert_time,
                "transferType": 0,
                "confirmTimes": format!("{}/{}", d.confirmations, required),
                "unlockConfirm": required,
                "walletType": 0,
                "travelRuleStatus": 0,
            });
            if d.status == DEPOSIT_SUCCESS
                && let (Some(time), Some(obj)) = (d.complete_time, row.as_object_mut())
            {
                obj.insert("completeTime".into(), json!(time));
            }
            if include_source && let Some(obj) = row.as_object_mut() {
                obj.insert("sourceAddress".into(), json!(d.source.to_string()));
            }
            row
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

/// Parses a withdrawal address: 0x + 40 hex digits; a mixed-case one must be checksummed.
pub(crate) fn parse_evm_address(text: &str) -> Option<Address> {
    let hex_part = text.strip_prefix("0x")?;
    if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mixed = hex_part.bytes().any(|b| b.is_ascii_lowercase())
        && hex_part.bytes().any(|b| b.is_ascii_uppercase());
    if mixed {
        Address::parse_checksummed(text, None).ok()
    } else {
        text.parse().ok()
    }
}

/// `POST /sapi/v1/capital/withdraw/apply` (USER_DATA, withdraw permission): parameters in the
/// query string, the form body, or both. Debits amount + fee at once; `{"id": "..."}`.
pub async fn withdraw_apply(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let endpoint = Endpoint {
        family: Family::Sapi,
        params: &[
            "coin",
            "withdrawOrderId",
            "network",
            "address",
            "addressTag",
            "amount",
            "transactionFeeFlag",
            "name",
            "walletType",
        ],
        permission: Permission::Withdraw,
        uses_body: true,
        mutating: true,
    };
    let signed = authenticate(&shared, &headers, &uri, &body, &endpoint)?;
    let p = &signed.params;
    let coin = req_str(p, "coin")?;
    let address_text = req_str(p, "address")?;
    let amount_text = req_str(p, "amount")?;
    opt_bool(p, "transactionFeeFlag")?;
    if let Some(wallet) = opt_u64(p, "walletType")?
        && wallet > 1
    {
        return Err(ApiError::invalid_parameter("walletType"));
    }
    let entry = find_coin(&shared, coin, opt_str(p, "network"))?;
    if opt_str(p, "addressTag").is_some() {
        return Err(ApiError::tag_not_supported());
    }
    let address = shared
        .address_on(&entry.network, address_text)
        .ok_or_else(ApiError::illegal_address)?;
    let amount = parse_amount(amount_text, entry.decimals).map_err(|e| match e {
        AmountError::TooPrecise => ApiError::bad_precision(),
        AmountError::Malformed | AmountError::Overflow => {
            ApiError::illegal_chars("amount", DECIMAL_RANGE)
        }
    })?;
    let min = parse_amount(&entry.withdraw_min, entry.decimals).unwrap_or_default();
    if amount.is_zero() || amount < min {
        return Err(ApiError::below_min(&entry.withdraw_min));
    }
    let fee = parse_amount(&entry.withdraw_fee, entry.decimals).unwrap_or_default();
    let withdrawal = shared.ledger.apply_withdrawal(
        WithdrawRequest {
            account: signed.account.clone(),
            coin: entry.clone(),
            address,
            amount,
            fee,
            withdraw_order_id: opt_str(p, "withdrawOrderId").map(str::to_string),
        },
        now_ms(),
    )?;
    tracing::info!(id = %withdrawal.id, account = %signed.account, coin, address = %withdrawal.address, "withdrawal applied");
    if shared.withdraw_queue.send(withdrawal.id.clone()).is_err() {
        shared
            .ledger
            .mark_failed(&withdrawal.id, "The simulator is shutting down.");
        return Err(ApiError::unknown());
    }
    Ok(Json(json!({ "id": withdrawal.id })))
}

/// `GET /sapi/v1/capital/withdraw/history` (USER_DATA), newest first. `txId` appears once the
/// transaction is sent, `completeTime` once it is mined, `withdrawOrderId` when one was given.
pub async fn withdraw_history(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let endpoint = Endpoint {
        family: Family::Sapi,
        params: &[
            "coin",
            "withdrawOrderId",
            "status",
            "offset",
            "limit",
            "idList",
            "startTime",
            "endTime",
        ],
        permission: Permission::Read,
        uses_body: false,
        mutating: false,
    };
    let signed = authenticate(&shared, &headers, &uri, &body, &endpoint)?;
    let p = &signed.params;
    let coin = opt_str(p, "coin");
    let order_id = opt_str(p, "withdrawOrderId");
    let status = opt_u64(p, "status")?;
    let ids: Option<Vec<&str>> =
        opt_str(p, "idList").map(|l| l.split(',').map(str::trim).collect());
    if ids.as_ref().is_some_and(|ids| ids.len() > 45) {
        return Err(ApiError::invalid_parameter("idList"));
    }
    let (start, end) = time_window(p, if order_id.is_some() { 7 } else { 90 })?;
    let withdrawals: Vec<_> = shared
        .ledger
        .withdrawals_of(&signed.account)
        .into_iter()
        .filter(|w| coin.is_none_or(|c| w.coin == c))
        .filter(|w| order_id.is_none_or(|o| w.withdraw_order_id.as_deref() == Some(o)))
        .filter(|w| status.is_none_or(|s| u64::from(w.status) == s))
        .filter(|w| ids.as_ref().is_none_or(|ids| ids.contains(&w.id.as_str())))
        .filter(|w| w.apply_time >= start && w.apply_time <= end)
        .collect();
    let rows = page(withdrawals, p)?
        .into_iter()
        .map(|w| {
            let decimals = shared.config.coin_decimals(&w.coin).unwrap_or(18);
            let mut row = json!({
                "id": w.id,
                "amount": format_amount(w.amount, decimals),
                "transactionFee": format_amount(w.fee, decimals),
                "coin": w.coin,
                "status": w.status,
                "address": w.address.to_string(),
                "applyTime": format_utc(w.apply_time),
                "network": w.network,
                "transferType": 0,
                "info": w.info,
                "confirmNo": w.confirm_no,
                "walletType": 0,
                "txKey": "",
            });
            if let Some(obj) = row.as_object_mut() {
                if let Some(tx) = &w.tx_id {
                    obj.insert("txId".into(), json!(tx));
                }
                if let Some(order_id) = &w.withdraw_order_id {
                    obj.insert("withdrawOrderId".into(), json!(order_id));
                }
                if let Some(time) = w.complete_time {
                    obj.insert("completeTime".into(), json!(format_utc(time)));
                }
            }
            row
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}
