//! Binance's wallet API, as documented (developers.binance.com, "Wallet" and "Spot API").
//!
//! Every call here is a `SIGNED` (USER_DATA) request: the endpoint's parameters, then
//! `recvWindow` and `timestamp`, form the query string; the signer signs exactly that string
//! (the body is always empty, so the documented payload "query string concatenated with the
//! body" is the query string); `&signature=` and the percent-encoded signature are appended;
//! the API key travels in the `X-MBX-APIKEY` header.
//!
//! | operation | endpoint |
//! |---|---|
//! | deposit address | `GET /sapi/v1/capital/deposit/address` (`coin`, `network`) — the *get* endpoint; this crate never calls one that creates an address |
//! | withdraw | `POST /sapi/v1/capital/withdraw/apply` (`coin`, `withdrawOrderId`, `network`, `address`, `amount`), answer `{"id": ...}` |
//! | withdrawal status | `GET /sapi/v1/capital/withdraw/history` by `idList` or by `withdrawOrderId` |
//! | deposits | `GET /sapi/v1/capital/deposit/hisrec` (`coin`, `txId`) |
//! | balances | `GET /api/v3/account`, its `balances` array (`asset`, `free`, `locked`): the spot wallet, which withdrawals draw from by default |
//! | server time | `GET /api/v3/time` (unsigned), to measure clock skew |

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::query::{build_query, decode_canonical, encode_component, is_positive_decimal};
use crate::{
    Balance, Connector, Deposit, DepositAddress, ExchangeError, KeyType, RequestSigner,
    WithdrawRequest, Withdrawal,
};

/// `recvWindow` used unless configured otherwise (Binance's own default), in milliseconds.
pub const DEFAULT_RECV_WINDOW_MS: u64 = 5_000;
/// The largest `recvWindow` Binance accepts, in milliseconds.
pub const MAX_RECV_WINDOW_MS: u64 = 60_000;
/// HTTP timeout used unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The header carrying the API key.
pub const API_KEY_HEADER: &str = "X-MBX-APIKEY";

const PATH_DEPOSIT_ADDRESS: &str = "/sapi/v1/capital/deposit/address";
const PATH_WITHDRAW: &str = "/sapi/v1/capital/withdraw/apply";
const PATH_WITHDRAW_HISTORY: &str = "/sapi/v1/capital/withdraw/history";
const PATH_DEPOSIT_HISTORY: &str = "/sapi/v1/capital/deposit/hisrec";
const PATH_ACCOUNT: &str = "/api/v3/account";
const PATH_TIME: &str = "/api/v3/time";

/// The parameters of `POST /sapi/v1/capital/withdraw/apply` that Concord uses, with their
/// timestamp: exactly what a threshold group signs.
///
/// [`to_query`](Self::to_query) writes them in one fixed order and encoding:
/// `coin`, `withdrawOrderId` (when present), `network`, `address`, `amount`, `recvWindow`,
/// `timestamp` (the documentation's order), values percent-encoded canonically (every byte
/// outside `A-Z a-z 0-9 - _ . ~`, uppercase hex). [`parse`](Self::parse) accepts only strings
/// `to_query` could have written, so a module that parses what it is asked to sign and checks
/// the fields knows every byte it signs.
///
/// Memo/tag networks are not supported here (no `addressTag`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawParams {
    /// The coin, uppercase letters and digits (`"ETH"`).
    pub coin: String,
    /// The network, uppercase letters and digits (`"ETH"`), always explicit.
    pub network: String,
    /// The destination address (printable ASCII, at most 128 characters).
    pub address: String,
    /// A positive decimal in plain notation (`"0.25"`).
    pub amount: String,
    /// The client's id for the withdrawal (letters, digits, `-`, `_`, `.`; at most 64).
    pub withdraw_order_id: Option<String>,
    /// Milliseconds since the Unix epoch at signing time.
    pub timestamp_ms: u64,
    /// How long after `timestamp_ms` the exchange may still accept the request (1..=60000).
    pub recv_window_ms: u64,
}

const WITHDRAW_ORDER: [&str; 7] = [
    "coin",
    "withdrawOrderId",
    "network",
    "address",
    "amount",
    "recvWindow",
    "timestamp",
];

impl WithdrawParams {
    /// The exact query string that is signed and sent, in the fixed order and encoding.
    pub fn to_query(&self) -> String {
        let recv_window = self.recv_window_ms.to_string();
        let timestamp = self.timestamp_ms.to_string();
        let mut params: Vec<(&str, &str)> = vec![("coin", &self.coin)];
        if let Some(id) = &self.withdraw_order_id {
            params.push(("withdrawOrderId", id));
        }
        params.extend([
            ("network", self.network.as_str()),
            ("address", self.address.as_str()),
            ("amount", self.amount.as_str()),
            ("recvWindow", recv_window.as_str()),
            ("timestamp", timestamp.as_str()),
        ]);
        build_query(params)
    }

    /// Parses a withdraw query strictly: every mandatory parameter present once, no unknown,
    /// duplicate or empty parameter, no `signature`, the fixed order, canonical encoding, and
    /// values of the documented shapes (the amount a positive decimal).
    pub fn parse(query: &str) -> Result<Self, ExchangeError> {
        if query.is_empty() {
            return Err(invalid("the withdraw query is empty"));
        }
        let mut seen: Vec<(&str, String)> = Vec::with_capacity(WITHDRAW_ORDER.len());
        for part in query.split('&') {
            if part.is_empty() {
                return Err(invalid(
                    "the withdraw query has an empty parameter (a stray '&')",
                ));
            }
            let Some((name, raw)) = part.split_once('=') else {
                return Err(invalid(format!(
                    "the withdraw query's parameter {part:?} has no '='"
                )));
            };
            if name == "signature" {
                return Err(invalid(
                    "the withdraw query contains a signature; the payload to sign must not, the \
                     signature is appended when the request is sent",
                ));
            }
            if !WITHDRAW_ORDER.contains(&name) {
                return Err(invalid(format!(
                    "the withdraw query has the unknown parameter {name:?}"
                )));
            }
            if seen.iter().any(|(n, _)| *n == name) {
                return Err(invalid(format!(
                    "the withdraw query has the parameter {name:?} more than once"
                )));
            }
            let value = decode_canonical(raw, &format!("the withdraw parameter {name:?}"))?;
            seen.push((name, value));
        }
        for mandatory in WITHDRAW_ORDER.iter().filter(|n| **n != "withdrawOrderId") {
            if !seen.iter().any(|(n, _)| n == mandatory) {
                return Err(invalid(format!(
                    "the withdraw query lacks the mandatory parameter {mandatory:?}"
                )));
            }
        }
        let canonical: Vec<&str> = WITHDRAW_ORDER
            .iter()
            .copied()
            .filter(|n| seen.iter().any(|(s, _)| s == n))
            .collect();
        let actual: Vec<&str> = seen.iter().map(|(n, _)| *n).collect();
        if actual != canonical {
            return Err(invalid(format!(
                "the withdraw query's parameters are in the order {} instead of {}",
                actual.join(", "),
                canonical.join(", ")
            )));
        }
        let get = |name: &str| -> String {
            seen.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let params = WithdrawParams {
            coin: get("coin"),
            network: get("network"),
            address: get("address"),
            amount: get("amount"),
            withdraw_order_id: seen
                .iter()
                .find(|(n, _)| *n == "withdrawOrderId")
                .map(|(_, v)| v.clone()),
            timestamp_ms: parse_canonical_u64(&get("timestamp"), "timestamp")?,
            recv_window_ms: parse_canonical_u64(&get("recvWindow"), "recvWindow")?,
        };
        params.check_fields()?;
        Ok(params)
    }

    /// Checks every field has an acceptable shape, i.e. that [`parse`](Self::parse) would
    /// accept [`to_query`](Self::to_query) and give these parameters back.
    pub fn validate(&self) -> Result<(), ExchangeError> {
        let parsed = Self::parse(&self.to_query())?;
        if parsed != *self {
            return Err(invalid(
                "the withdraw parameters do not survive their own encoding",
            ));
        }
        Ok(())
    }

    /// The withdrawal these parameters ask for, without timing.
    pub fn to_request(&self) -> WithdrawRequest {
        WithdrawRequest {
            coin: self.coin.clone(),
            network: self.network.clone(),
            address: self.address.clone(),
            amount: self.amount.clone(),
            withdraw_order_id: self.withdraw_order_id.clone(),
        }
    }

    fn check_fields(&self) -> Result<(), ExchangeError> {
        check_symbol(&self.coin, "coin")?;
        check_symbol(&self.network, "network")?;
        if self.address.is_empty()
            || self.address.len() > 128
            || !self.address.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(format!(
                "the withdraw address {:?} is not 1 to 128 printable ASCII characters",
                self.address
            )));
        }
        if !is_positive_decimal(&self.amount) {
            return Err(invalid(format!(
                "the withdraw amount {:?} is not a positive decimal in plain notation (digits, \
                 at most one point, no sign or exponent, no leading zeros, at most 18 decimals)",
                self.amount
            )));
        }
        if let Some(id) = &self.withdraw_order_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        {
            return Err(invalid(format!(
                "the withdrawOrderId {id:?} is not 1 to 64 letters, digits, '-', '_' or '.'"
            )));
        }
        if self.recv_window_ms == 0 || self.recv_window_ms > MAX_RECV_WINDOW_MS {
            return Err(invalid(format!(
                "recvWindow {} is outside 1..={MAX_RECV_WINDOW_MS} milliseconds",
                self.recv_window_ms
            )));
        }
        if self.timestamp_ms == 0 {
            return Err(invalid("the timestamp is zero"));
        }
        Ok(())
    }
}

fn check_symbol(value: &str, what: &str) -> Result<(), ExchangeError> {
    if value.is_empty()
        || value.len() > 32
        || !value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(invalid(format!(
            "the {what} {value:?} is not 1 to 32 uppercase letters and digits"
        )));
    }
    Ok(())
}

fn parse_canonical_u64(value: &str, what: &str) -> Result<u64, ExchangeError> {
    let canonical = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && !(value.len() > 1 && value.starts_with('0'));
    let parsed = if canonical {
        value.parse::<u64>().ok()
    } else {
        None
    };
    parsed.ok_or_else(|| {
        invalid(format!(
            "the {what} {value:?} is not a decimal integer without sign or leading zeros"
        ))
    })
}

fn invalid(message: impl Into<String>) -> ExchangeError {
    ExchangeError::InvalidRequest(message.into())
}

/// Maps an HTTP error answer to an error: Binance's `{"code":..,"msg":..}` becomes
/// [`ExchangeError::Api`], anything else [`ExchangeError::Http`] with the start of the body.
pub fn parse_error_body(http_status: u16, body: &str) -> ExchangeError {
    #[derive(Deserialize)]
    struct ErrorBody {
        code: i64,
        #[serde(default)]
        msg: String,
    }
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(e) => ExchangeError::Api {
            code: e.code,
            msg: e.msg,
            http_status,
        },
        Err(_) => ExchangeError::Http {
            status: http_status,
            body: body.chars().take(512).collect(),
        },
    }
}

/// A client for one Binance account's wallet API, signing with one API key.
pub struct BinanceClient {
    base_url: String,
    api_key: HeaderValue,
    signer: Arc<dyn RequestSigner>,
    http: reqwest::Client,
    recv_window_ms: u64,
    time_offset_ms: i64,
}

impl fmt::Debug for BinanceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BinanceClient")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("key_type", &self.signer.key_type())
            .field("recv_window_ms", &self.recv_window_ms)
            .field("time_offset_ms", &self.time_offset_ms)
            .finish()
    }
}

impl BinanceClient {
    /// A client for the API at `base_url` (`https://api.binance.com`, or a local simulator),
    /// sending `api_key` in `X-MBX-APIKEY` and signing with `signer`.
    pub fn new(
        base_url: &str,
        api_key: String,
        signer: Arc<dyn RequestSigner>,
    ) -> Result<Self, ExchangeError> {
        let parsed = url::Url::parse(base_url).map_err(|e| {
            ExchangeError::Config(format!("the base URL {base_url:?} is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ExchangeError::Config(format!(
                "the base URL {base_url:?} is not an http(s) URL with a host"
            )));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(ExchangeError::Config(format!(
                "the base URL {base_url:?} has a query or fragment"
            )));
        }
        if api_key.is_empty() {
            return Err(ExchangeError::Config("the API key is empty".to_owned()));
        }
        let mut header = HeaderValue::from_str(&api_key).map_err(|_| {
            ExchangeError::Config(
                "the API key has characters an HTTP header cannot carry".to_owned(),
            )
        })?;
        header.set_sensitive(true);
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: header,
            signer,
            http: crate::http_client(DEFAULT_TIMEOUT)?,
            recv_window_ms: DEFAULT_RECV_WINDOW_MS,
            time_offset_ms: 0,
        })
    }

    /// Uses `recv_window_ms` (1..=60000) as `recvWindow` on every request.
    pub fn with_recv_window_ms(mut self, recv_window_ms: u64) -> Result<Self, ExchangeError> {
        if recv_window_ms == 0 || recv_window_ms > MAX_RECV_WINDOW_MS {
            return Err(ExchangeError::Config(format!(
                "recvWindow {recv_window_ms} is outside 1..={MAX_RECV_WINDOW_MS} milliseconds"
            )));
        }
        self.recv_window_ms = recv_window_ms;
        Ok(self)
    }

    /// Gives up on a request after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, ExchangeError> {
        self.http = crate::http_client(timeout)?;
        Ok(self)
    }

    /// Adds `offset_ms` to the local clock for every `timestamp` (server time minus local time,
    /// e.g. measured with [`server_time`](Self::server_time)).
    pub fn with_time_offset_ms(mut self, offset_ms: i64) -> Self {
        self.time_offset_ms = offset_ms;
        self
    }

    /// The `recvWindow` sent with each request, in milliseconds.
    pub fn recv_window_ms(&self) -> u64 {
        self.recv_window_ms
    }

    /// The kind of API key this client signs with.
    pub fn key_type(&self) -> KeyType {
        self.signer.key_type()
    }

    /// The `timestamp` a request made now carries: the clock plus the configured offset.
    pub fn timestamp_ms(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        now.saturating_add_signed(self.time_offset_ms)
    }

    /// The exchange's clock (`GET /api/v3/time`), in milliseconds since the Unix epoch.
    pub async fn server_time(&self) -> Result<u64, ExchangeError> {
        let url = format!("{}{PATH_TIME}", self.base_url);
        let (status, body) = self.send(Method::GET, PATH_TIME, url, false).await?;
        in_context(&Method::GET, PATH_TIME, answers::server_time(status, &body))
    }

    /// The deposit address for `coin` on `network`, from `GET /sapi/v1/capital/deposit/address`
    /// (the read-only endpoint; it never asks for a new address).
    pub async fn deposit_address(
        &self,
        coin: &str,
        network: &str,
    ) -> Result<DepositAddress, ExchangeError> {
        if coin.is_empty() || network.is_empty() {
            return Err(invalid("a deposit address needs both a coin and a network"));
        }
        let (status, body) = self
            .signed(
                Method::GET,
                PATH_DEPOSIT_ADDRESS,
                &[("coin", coin), ("network", network)],
            )
            .await?;
        in_context(
            &Method::GET,
            PATH_DEPOSIT_ADDRESS,
            answers::deposit_address(coin, network, status, &body),
        )
    }

    /// Withdraw parameters for `request`, timestamped now with this client's `recvWindow`,
    /// checked as [`WithdrawParams::parse`] would check them.
    pub fn build_withdraw(
        &self,
        request: &WithdrawRequest,
    ) -> Result<WithdrawParams, ExchangeError> {
        let params = WithdrawParams {
            coin: request.coin.clone(),
            network: request.network.clone(),
            address: request.address.clone(),
            amount: request.amount.clone(),
            withdraw_order_id: request.withdraw_order_id.clone(),
            timestamp_ms: self.timestamp_ms(),
            recv_window_ms: self.recv_window_ms,
        };
        params.validate()?;
        Ok(params)
    }

    /// Requests a withdrawal signed with this client's own signer; returns its id.
    pub async fn withdraw(&self, request: &WithdrawRequest) -> Result<String, ExchangeError> {
        let query = self.build_withdraw(request)?.to_query();
        let signature = self.signer.sign(query.as_bytes()).await?;
        self.post_withdraw(&query, &signature).await
    }

    /// Sends a withdraw request signed elsewhere (by the module group): `query` must be a
    /// canonical [`WithdrawParams`] query (it is parsed strictly first) and `signature` the
    /// unencoded signature of exactly those bytes, in this client's key type's encoding.
    /// Returns the withdrawal id.
    pub async fn submit_signed_withdraw(
        &self,
        query: &str,
        signature: &str,
    ) -> Result<String, ExchangeError> {
        WithdrawParams::parse(query)?;
        if !self.signer.key_type().is_well_formed(signature) {
            return Err(invalid(format!(
                "the signature is not a well-formed {:?} signature (64 hex digits for HMAC, \
                 base64 of 64 bytes for Ed25519)",
                self.signer.key_type()
            )));
        }
        self.post_withdraw(query, signature).await
    }

    async fn post_withdraw(&self, query: &str, signature: &str) -> Result<String, ExchangeError> {
        let (status, body) = self
            .send_signed(Method::POST, PATH_WITHDRAW, query, signature)
            .await?;
        in_context(
            &Method::POST,
            PATH_WITHDRAW,
            answers::withdraw_id(status, &body),
        )
    }

    /// The withdrawal with Binance's id `id` (`GET /sapi/v1/capital/withdraw/history?idList=`).
    pub async fn withdrawal_by_id(&self, id: &str) -> Result<Option<Withdrawal>, ExchangeError> {
        if id.is_empty() || id.contains(',') {
            return Err(invalid(format!("{id:?} is not a single withdrawal id")));
        }
        let list = self.withdraw_history(&[("idList", id)]).await?;
        Ok(list.into_iter().find(|w| w.id == id))
    }

    /// The withdrawal with the client's `withdrawOrderId` (the exchange searches the last seven
    /// days when no time range is given).
    pub async fn withdrawal_by_order_id(
        &self,
        withdraw_order_id: &str,
    ) -> Result<Option<Withdrawal>, ExchangeError> {
        if withdraw_order_id.is_empty() {
            return Err(invalid("the withdrawOrderId is empty"));
        }
        let list = self
            .withdraw_history(&[("withdrawOrderId", withdraw_order_id)])
            .await?;
        Ok(list
            .into_iter()
            .find(|w| w.withdraw_order_id.as_deref() == Some(withdraw_order_id)))
    }

    async fn withdraw_history(
        &self,
        params: &[(&str, &str)],
    ) -> Result<Vec<Withdrawal>, ExchangeError> {
        let (status, body) = self
            .signed(Method::GET, PATH_WITHDRAW_HISTORY, params)
            .await?;
        in_context(
            &Method::GET,
            PATH_WITHDRAW_HISTORY,
            answers::withdrawals(status, &body),
        )
    }

    /// Deposits (`GET /sapi/v1/capital/deposit/hisrec`), optionally of one coin and one
    /// transaction id (the exchange's default window is the last 90 days).
    pub async fn deposit_history(
        &self,
        coin: Option<&str>,
        tx_id: Option<&str>,
    ) -> Result<Vec<Deposit>, ExchangeError> {
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(coin) = coin {
            params.push(("coin", coin));
        }
        if let Some(tx_id) = tx_id {
            params.push(("txId", tx_id));
        }
        let (status, body) = self
            .signed(Method::GET, PATH_DEPOSIT_HISTORY, &params)
            .await?;
        in_context(
            &Method::GET,
            PATH_DEPOSIT_HISTORY,
            answers::deposits(status, &body),
        )
    }

    /// The spot wallet's balances (`GET /api/v3/account`, its `balances` array).
    pub async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        let (status, body) = self.signed(Method::GET, PATH_ACCOUNT, &[]).await?;
        in_context(&Method::GET, PATH_ACCOUNT, answers::balances(status, &body))
    }

    /// Builds, signs and sends a SIGNED request: `params`, then `recvWindow` and `timestamp`.
    async fn signed(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<(u16, String), ExchangeError> {
        let recv_window = self.recv_window_ms.to_string();
        let timestamp = self.timestamp_ms().to_string();
        let query = build_query(params.iter().copied().chain([
            ("recvWindow", recv_window.as_str()),
            ("timestamp", timestamp.as_str()),
        ]));
        let signature = self.signer.sign(query.as_bytes()).await?;
        self.send_signed(method, path, &query, &signature).await
    }

    async fn send_signed(
        &self,
        method: Method,
        path: &str,
        query: &str,
        signature: &str,
    ) -> Result<(u16, String), ExchangeError> {
        let url = format!(
            "{}{path}?{query}&signature={}",
            self.base_url,
            encode_component(signature)
        );
        self.send(method, path, url, true).await
    }

    /// Sends a request and returns the answer's HTTP status and body, read by [`answers`].
    /// A request that gets no answer is counted (see [`count_error`]).
    async fn send(
        &self,
        method: Method,
        path: &str,
        url: String,
        with_key: bool,
    ) -> Result<(u16, String), ExchangeError> {
        let r = self.send_once(method, path, url, with_key).await;
        if let Err(e) = &r {
            count_error(path, e);
        }
        r
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        url: String,
        with_key: bool,
    ) -> Result<(u16, String), ExchangeError> {
        tracing::debug!(%method, path, "binance request");
        let mut request = self.http.request(method.clone(), url);
        if with_key {
            request = request.header(API_KEY_HEADER, self.api_key.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| crate::transport(&method, path, e))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| crate::transport(&method, path, e))?;
        if !status.is_success() {
            tracing::debug!(%method, path, status = status.as_u16(), "binance refused");
        }
        Ok((status.as_u16(), body))
    }
}

/// How the client reads Binance's answers: an HTTP status and body in, the connector's
/// value or error out, with no I/O (every function here is what [`BinanceClient`] applies to
/// what the exchange sent; the answers are untrusted input, fuzzed in `tests/fuzz.rs`).
pub mod answers {
    use serde::Deserialize;
    use serde::de::DeserializeOwned;

    use super::parse_error_body;
    use crate::{
        Balance, Deposit, DepositAddress, DepositStatus, ExchangeError, Withdrawal,
        WithdrawalStatus,
    };

    /// Reads an answer's JSON: an error status is [`parse_error_body`]'s error; a success
    /// whose body is not `T` is a decode error, unless it is Binance's `{"code":..,"msg":..}`
    /// (some gateways answer errors with a success status), which keeps its code.
    pub fn read<T: DeserializeOwned>(status: u16, body: &str) -> Result<T, ExchangeError> {
        if !(200..300).contains(&status) {
            return Err(parse_error_body(status, body));
        }
        serde_json::from_str(body).map_err(|e| match parse_error_body(status, body) {
            api @ ExchangeError::Api { .. } => api,
            _ => ExchangeError::Decode(e.to_string()),
        })
    }

    /// `GET /api/v3/time`: the exchange's clock, in milliseconds since the Unix epoch.
    pub fn server_time(status: u16, body: &str) -> Result<u64, ExchangeError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Time {
            server_time: u64,
        }
        read::<Time>(status, body).map(|t| t.server_time)
    }

    /// `GET /sapi/v1/capital/deposit/address` asked for `coin` on `network`: the address, for
    /// that coin, not empty.
    pub fn deposit_address(
        coin: &str,
        network: &str,
        status: u16,
        body: &str,
    ) -> Result<DepositAddress, ExchangeError> {
        #[derive(Deserialize)]
        struct Raw {
            address: String,
            coin: String,
            #[serde(default)]
            tag: Option<String>,
        }
        let raw: Raw = read(status, body)?;
        if !raw.coin.eq_ignore_ascii_case(coin) {
            return Err(ExchangeError::Decode(format!(
                "asked for the {coin} deposit address, the exchange answered for {:?}",
                raw.coin
            )));
        }
        if raw.address.is_empty() {
            return Err(ExchangeError::Decode(format!(
                "the exchange answered an empty {coin} deposit address on {network}"
            )));
        }
        Ok(DepositAddress {
            coin: raw.coin,
            network: network.to_owned(),
            address: raw.address,
            tag: raw.tag.filter(|t| !t.is_empty()),
        })
    }

    /// `POST /sapi/v1/capital/withdraw/apply`: the withdrawal's id, not empty.
    pub fn withdraw_id(status: u16, body: &str) -> Result<String, ExchangeError> {
        #[derive(Deserialize)]
        struct Raw {
            id: String,
        }
        let raw: Raw = read(status, body)?;
        if raw.id.is_empty() {
            return Err(ExchangeError::Decode(
                "the exchange accepted the withdrawal but answered an empty id".to_owned(),
            ));
        }
        Ok(raw.id)
    }

    /// `GET /sapi/v1/capital/withdraw/history`: the withdrawals listed.
    pub fn withdrawals(status: u16, body: &str) -> Result<Vec<Withdrawal>, ExchangeError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            id: String,
            amount: String,
            coin: String,
            status: i64,
            address: String,
            #[serde(default)]
            tx_id: Option<String>,
            #[serde(default)]
            network: Option<String>,
            #[serde(default)]
            withdraw_order_id: Option<String>,
        }
        let raw: Vec<Raw> = read(status, body)?;
        Ok(raw
            .into_iter()
            .map(|r| Withdrawal {
                id: r.id,
                coin: r.coin,
                network: r.network.unwrap_or_default(),
                address: r.address,
                amount: r.amount,
                status: WithdrawalStatus::from_code(r.status),
                tx_id: r.tx_id.filter(|t| !t.is_empty()),
                withdraw_order_id: r.withdraw_order_id.filter(|t| !t.is_empty()),
            })
            .collect())
    }

    /// `GET /sapi/v1/capital/deposit/hisrec`: the deposits listed.
    pub fn deposits(status: u16, body: &str) -> Result<Vec<Deposit>, ExchangeError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            amount: String,
            coin: String,
            #[serde(default)]
            network: String,
            status: i64,
            address: String,
            #[serde(default)]
            tx_id: String,
            #[serde(default)]
            confirm_times: String,
        }
        let raw: Vec<Raw> = read(status, body)?;
        Ok(raw
            .into_iter()
            .map(|r| Deposit {
                coin: r.coin,
                network: r.network,
                address: r.address,
                amount: r.amount,
                tx_id: r.tx_id,
                status: DepositStatus::from_code(r.status),
                confirmations: r.confirm_times,
            })
            .collect())
    }

    /// `GET /api/v3/account`: its `balances`.
    pub fn balances(status: u16, body: &str) -> Result<Vec<Balance>, ExchangeError> {
        #[derive(Deserialize)]
        struct Raw {
            balances: Vec<Balance>,
        }
        read::<Raw>(status, body).map(|r| r.balances)
    }
}

/// Names the request in a decode error of its answer.
/// Counts a failed exchange call (`concord_exchange_errors_total`, by exchange, path and
/// retryability).
fn count_error(path: &str, e: &ExchangeError) {
    metrics::counter!(
        "concord_exchange_errors_total",
        "exchange" => "binance",
        "path" => path.to_owned(),
        "retryable" => if e.retryable() { "true" } else { "false" }
    )
    .increment(1);
}

/// An answer's error with the request it answered named; every error answer is counted
/// (see [`count_error`]).
fn in_context<T>(
    method: &Method,
    path: &str,
    r: Result<T, ExchangeError>,
) -> Result<T, ExchangeError> {
    if let Err(e) = &r {
        count_error(path, e);
    }
    r.map_err(|e| match e {
        ExchangeError::Decode(m) => ExchangeError::Decode(format!("{method} {path}: {m}")),
        e => e,
    })
}

#[async_trait]
impl Connector for BinanceClient {
    fn exchange(&self) -> &str {
        "binance"
    }

    async fn deposit_address(
        &self,
        coin: &str,
        network: &str,
    ) -> Result<DepositAddress, ExchangeError> {
        BinanceClient::deposit_address(self, coin, network).await
    }

    async fn withdraw(&self, request: &WithdrawRequest) -> Result<String, ExchangeError> {
        BinanceClient::withdraw(self, request).await
    }

    async fn withdrawal(&self, id: &str) -> Result<Option<Withdrawal>, ExchangeError> {
        self.withdrawal_by_id(id).await
    }

    async fn withdrawal_by_order_id(
        &self,
        order_id: &str,
    ) -> Result<Option<Withdrawal>, ExchangeError> {
        BinanceClient::withdrawal_by_order_id(self, order_id).await
    }

    async fn deposits(
        &self,
        coin: &str,
        tx_id: Option<&str>,
    ) -> Result<Vec<Deposit>, ExchangeError> {
        self.deposit_history(Some(coin), tx_id).await
    }

    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        BinanceClient::balances(self).await
    }
}
