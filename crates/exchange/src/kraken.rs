//! Kraken's spot REST API, funding subset (docs.kraken.com, "Spot REST Authentication" and
//! the Funding endpoints): deposit methods and addresses, withdrawal to a withdrawal key,
//! withdrawal and deposit status, balances.
//!
//! Every private call is `POST /0/private/<Method>` with a form-encoded body holding a
//! `nonce`, the key in `API-Key` and [`api_sign`] in `API-Sign`. Errors come back as
//! `{"error": ["EAPI:Invalid nonce"], ...}`, usually with HTTP 200 ([`ExchangeError::Refused`]).
//!
//! **What this key can and cannot be protected by.** Kraken authenticates with an HMAC-SHA512
//! secret. Computing an HMAC needs the whole secret in one place, so no threshold scheme can
//! shard it: the module holding a withdraw-capable Kraken secret can withdraw alone. What
//! bounds it is Kraken's own design: a withdrawal names a *withdrawal key*, an address the
//! account holder registered (and confirmed) at Kraken beforehand, so that module can move
//! funds only to addresses already registered there. Register only the system's own wallets.
//!
//! The deposit address is always read with `new` left out (`DepositAddresses` never asked to
//! create one), so every module sees the same address.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderValue;
use serde::Deserialize;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::query::{decode_canonical, encode_component, is_positive_decimal};
use crate::{
    Balance, Connector, Deposit, DepositAddress, DepositStatus, ExchangeError, WithdrawRequest,
    Withdrawal, WithdrawalStatus,
};

/// How long a request may take before it is given up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The header carrying the API key.
pub const API_KEY_HEADER: &str = "API-Key";
/// The header carrying [`api_sign`].
pub const API_SIGN_HEADER: &str = "API-Sign";

/// The value of Kraken's `API-Sign` header: base64 of
/// HMAC-SHA512(key = base64-decoded secret, message = `uri_path` ‖ SHA256(`nonce` ‖ `post_data`)).
///
/// `uri_path` is the part of the URL starting with `/0/private`; `post_data` is the exact
/// form-encoded body, which itself contains `nonce=<nonce>`.
pub fn api_sign(
    uri_path: &str,
    nonce: u64,
    post_data: &str,
    secret_base64: &str,
) -> Result<String, ExchangeError> {
    let secret = decode_secret(secret_base64)?;
    sign_with(&secret, uri_path, nonce, post_data)
}

fn decode_secret(secret_base64: &str) -> Result<Zeroizing<Vec<u8>>, ExchangeError> {
    let secret = Zeroizing::new(BASE64.decode(secret_base64.trim()).map_err(|e| {
        ExchangeError::InvalidKey(format!("the Kraken secret is not standard base64: {e}"))
    })?);
    if secret.is_empty() {
        return Err(ExchangeError::InvalidKey(
            "the Kraken secret is empty".to_owned(),
        ));
    }
    Ok(secret)
}

fn sign_with(
    secret: &[u8],
    uri_path: &str,
    nonce: u64,
    post_data: &str,
) -> Result<String, ExchangeError> {
    let inner = Sha256::new()
        .chain_update(nonce.to_string().as_bytes())
        .chain_update(post_data.as_bytes())
        .finalize();
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(secret)
        .map_err(|e| ExchangeError::Signing(format!("HMAC key rejected: {e}")))?;
    mac.update(uri_path.as_bytes());
    mac.update(&inner);
    Ok(BASE64.encode(mac.finalize().into_bytes()))
}

/// Kraken's name of a coin in requests (`XBT` for bitcoin, `XDG` for dogecoin; others as is).
pub fn asset_of(coin: &str) -> String {
    match coin {
        "BTC" => "XBT".to_owned(),
        "DOGE" => "XDG".to_owned(),
        other => other.to_owned(),
    }
}

/// The coin an asset code in Kraken's answers names: the legacy X/Z-prefixed codes
/// (`XXBT`, `XETH`, `XLTC`, `ZUSD`) and the plain ones (`USDT`).
pub fn coin_of(asset: &str) -> String {
    match asset {
        "XXBT" | "XBT" => "BTC".to_owned(),
        "XXDG" | "XDG" => "DOGE".to_owned(),
        "XETH" => "ETH".to_owned(),
        "XLTC" => "LTC".to_owned(),
        "XETC" => "ETC".to_owned(),
        "XXRP" => "XRP".to_owned(),
        "XXLM" => "XLM".to_owned(),
        "ZUSD" => "USD".to_owned(),
        "ZEUR" => "EUR".to_owned(),
        "ZGBP" => "GBP".to_owned(),
        other => other.to_owned(),
    }
}

/// Kraken's funding method for a coin on a network, as its `DepositMethods` names them.
fn default_method(coin: &str, network: &str) -> Option<&'static str> {
    Some(match (coin, network) {
        ("ETH", "ETH") => "Ether (Hex)",
        ("BTC", "BTC") => "Bitcoin",
        ("LTC", "LTC") => "Litecoin",
        ("USDT", "ETH") => "Tether USD (ERC20)",
        ("USDC", "ETH") => "USDC",
        _ => return None,
    })
}

/// A Kraken `Withdraw` as modules approve it: every parameter but the nonce (which the
/// holder of the secret adds when it sends), in Kraken's documented order. Its exact text is
/// what the group approves, so it is read only in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawForm {
    /// Kraken's asset code (`XETH`).
    pub asset: String,
    /// The withdrawal key's name, as registered on the account.
    pub key: String,
    /// The amount, a positive decimal.
    pub amount: String,
    /// The address the key must have: Kraken refuses the withdrawal if the key's is another.
    pub address: String,
}

impl WithdrawForm {
    /// Whether `other` asks for the same withdrawal: asset, key, address and amount, however
    /// each is written.
    pub fn same_withdrawal(&self, other: &WithdrawForm) -> bool {
        coin_of(&self.asset) == coin_of(&other.asset)
            && self.key == other.key
            && same_address(&self.address, &other.address)
            && !canonical_decimal(&self.amount).is_empty()
            && canonical_decimal(&self.amount) == canonical_decimal(&other.amount)
    }

    /// The parameters form-encoded: `asset=…&key=…&amount=…&address=…`.
    pub fn to_form(&self) -> String {
        format!(
            "asset={}&key={}&amount={}&address={}",
            encode_component(&self.asset),
            encode_component(&self.key),
            encode_component(&self.amount),
            encode_component(&self.address)
        )
    }

    /// Reads a form [`WithdrawForm::to_form`] made, and nothing else: those four parameters
    /// in that order, canonically encoded, a positive amount, no empty value.
    pub fn parse(form: &str) -> Result<WithdrawForm, ExchangeError> {
        let bad =
            |m: String| ExchangeError::InvalidRequest(format!("the Kraken withdraw request: {m}"));
        let parts: Vec<&str> = form.split('&').collect();
        let names = ["asset", "key", "amount", "address"];
        if parts.len() != names.len() {
            return Err(bad(format!(
                "it has {} parameters, not asset, key, amount and address",
                parts.len()
            )));
        }
        let mut values = Vec::with_capacity(names.len());
        for (part, name) in parts.iter().zip(names) {
            let value = part
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix('='))
                .ok_or_else(|| bad(format!("expected {name}=… where it has {part:?}")))?;
            let value = decode_canonical(value, name)?;
            if value.is_empty() {
                return Err(bad(format!("{name} is empty")));
            }
            values.push(value);
        }
        let [asset, key, amount, address]: [String; 4] = values
            .try_into()
            .map_err(|_| bad("four parameters were expected".into()))?;
        if !is_positive_decimal(&amount) {
            return Err(bad(format!(
                "the amount {amount:?} is not a positive decimal"
            )));
        }
        let parsed = WithdrawForm {
            asset,
            key,
            amount,
            address,
        };
        if parsed.to_form() != form {
            return Err(bad("it is not in canonical form".into()));
        }
        Ok(parsed)
    }
}

/// A withdrawal key registered on a Kraken account, as `WithdrawAddresses` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct WithdrawKey {
    /// Its name.
    pub key: String,
    /// The address it withdraws to.
    pub address: String,
    /// Kraken's funding method (the network, in Kraken's words).
    #[serde(default)]
    pub method: String,
    /// Whether the account holder confirmed it.
    #[serde(default)]
    pub verified: bool,
    /// The memo (destination tag) Kraken adds to withdrawals to this key, for coins whose
    /// deposit addresses are shared and told apart by one; none for Ethereum's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    /// Kraken's other name for a memo on some coins (`tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl WithdrawKey {
    /// The memo or tag Kraken adds to withdrawals to this key, if it has one that is not
    /// empty. A key with one pays whoever the memo names at a shared address: never an
    /// address-book destination.
    pub fn memo(&self) -> Option<&str> {
        [&self.memo, &self.tag]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .find(|m| !m.is_empty())
    }

    /// Whether withdrawals to this key go to its address alone: verified by the account
    /// holder, and no memo.
    pub fn is_plain(&self) -> bool {
        self.verified && self.memo().is_none()
    }
}

/// A client for one Kraken account's funding API, signing with one API key and its secret.
pub struct KrakenClient {
    base_url: String,
    api_key: HeaderValue,
    secret: Zeroizing<Vec<u8>>,
    http: reqwest::Client,
    /// The last nonce sent: each request takes a larger one (microseconds since the epoch, or
    /// one more than the last when the clock has not moved on).
    last_nonce: AtomicU64,
    /// (coin, network) → Kraken's method name, beyond the built-in ones.
    methods: BTreeMap<(String, String), String>,
}

impl fmt::Debug for KrakenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KrakenClient")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// One entry of `DepositAddresses`.
#[derive(Debug, Deserialize)]
struct RawDepositAddress {
    address: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    memo: Option<String>,
}

/// One entry of `WithdrawStatus` / `DepositStatus`.
#[derive(Debug, Deserialize)]
struct RawStatus {
    #[serde(default)]
    method: String,
    #[serde(default)]
    network: Option<String>,
    asset: String,
    refid: String,
    #[serde(default)]
    txid: Option<String>,
    /// The address, for a withdrawal or a deposit.
    #[serde(default)]
    info: String,
    amount: String,
    status: String,
    #[serde(rename = "status-prop", default)]
    status_prop: Option<String>,
    /// When Kraken recorded it, Unix seconds.
    #[serde(default)]
    time: Option<f64>,
    /// Kraken's fee for it (its `amount` is net of it).
    #[serde(default)]
    fee: Option<String>,
    /// The withdrawal key it went to, where Kraken names it.
    #[serde(default)]
    key: Option<String>,
}

impl KrakenClient {
    /// A client for the API at `base_url` (`https://api.kraken.com`, or a local simulator),
    /// sending `api_key` in `API-Key` and signing with `secret_base64` (the secret as Kraken
    /// shows it: standard base64).
    pub fn new(base_url: &str, api_key: &str, secret_base64: &str) -> Result<Self, ExchangeError> {
        let parsed = url::Url::parse(base_url).map_err(|e| {
            ExchangeError::Config(format!("the base URL {base_url:?} is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none()
            || parsed.query().is_some()
        {
            return Err(ExchangeError::Config(format!(
                "the base URL {base_url:?} is not an http(s) URL with a host and no query"
            )));
        }
        if api_key.is_empty() {
            return Err(ExchangeError::Config("the API key is empty".to_owned()));
        }
        let mut header = HeaderValue::from_str(api_key).map_err(|_| {
            ExchangeError::Config(
                "the API key has characters an HTTP header cannot carry".to_owned(),
            )
        })?;
        header.set_sensitive(true);
        let http = crate::http_client(DEFAULT_TIMEOUT)?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: header,
            secret: decode_secret(secret_base64)?,
            http,
            last_nonce: AtomicU64::new(0),
            methods: BTreeMap::new(),
        })
    }

    /// The API key (its public name) this client sends in `API-Key`.
    pub fn api_key(&self) -> &str {
        // Built from a `&str` in `new`, so always visible ASCII.
        self.api_key.to_str().unwrap_or_default()
    }

    /// Names Kraken's funding method for `coin` on `network` (the built-in names cover ETH,
    /// BTC, LTC and USDT/USDC on Ethereum).
    pub fn with_method(mut self, coin: &str, network: &str, method: &str) -> Self {
        self.methods
            .insert((coin.to_owned(), network.to_owned()), method.to_owned());
        self
    }

    /// Kraken's method for `coin` on `network`.
    pub fn method(&self, coin: &str, network: &str) -> Result<String, ExchangeError> {
        self.methods
            .get(&(coin.to_owned(), network.to_owned()))
            .cloned()
            .or_else(|| default_method(coin, network).map(str::to_owned))
            .ok_or_else(|| {
                ExchangeError::InvalidRequest(format!(
                    "no Kraken funding method is known for {coin} on network {network}: name it with KrakenClient::with_method"
                ))
            })
    }

    /// A nonce larger than every one this client sent (Kraken refuses a nonce that is not).
    fn nonce(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut last = self.last_nonce.load(Ordering::SeqCst);
        loop {
            let next = now.max(last.saturating_add(1));
            match self
                .last_nonce
                .compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// `POST /0/private/<method>` with `params` (form-encoded after the nonce), read as
    /// Kraken's `{"error": [...], "result": T}`.
    async fn private<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: &[(&str, &str)],
    ) -> Result<T, ExchangeError> {
        let path = format!("/0/private/{method}");
        let nonce = self.nonce();
        let mut body = format!("nonce={nonce}");
        for (k, v) in params {
            body.push('&');
            body.push_str(k);
            body.push('=');
            body.push_str(&encode_component(v));
        }
        let sign = sign_with(&self.secret, &path, nonce, &body)?;
        tracing::debug!(path, "kraken request");
        let r = async {
            let response = self
                .http
                .post(format!("{}{path}", self.base_url))
                .header(API_KEY_HEADER, self.api_key.clone())
                .header(API_SIGN_HEADER, sign)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded; charset=utf-8",
                )
                .body(body)
                .send()
                .await
                .map_err(|e| crate::transport(&reqwest::Method::POST, &path, e))?;
            let status = response.status().as_u16();
            let text = response
                .text()
                .await
                .map_err(|e| crate::transport(&reqwest::Method::POST, &path, e))?;
            answers::read(status, &text)
        }
        .await;
        crate::counted("kraken", "POST", &path, r)
    }

    /// `DepositAddresses` for `coin` on `network` (never with `new`): the account's existing
    /// addresses, first one used.
    pub async fn deposit_addresses(
        &self,
        coin: &str,
        network: &str,
    ) -> Result<Vec<DepositAddress>, ExchangeError> {
        let method = self.method(coin, network)?;
        let raw: Vec<RawDepositAddress> = self
            .private(
                "DepositAddresses",
                &[("asset", &asset_of(coin)), ("method", &method)],
            )
            .await?;
        Ok(raw
            .into_iter()
            .map(|a| DepositAddress {
                coin: coin.to_owned(),
                network: network.to_owned(),
                address: a.address,
                tag: a.tag.or(a.memo).filter(|t| !t.is_empty()),
            })
            .collect())
    }

    /// The withdrawal keys registered on the account for `coin` (`WithdrawAddresses`).
    pub async fn withdraw_keys(&self, coin: &str) -> Result<Vec<WithdrawKey>, ExchangeError> {
        self.private("WithdrawAddresses", &[("asset", &asset_of(coin))])
            .await
    }

    /// Sends a `Withdraw` whose parameters the group approved, exactly as approved (this
    /// client adds only the nonce); returns Kraken's reference id.
    pub async fn withdraw_form(&self, form: &WithdrawForm) -> Result<String, ExchangeError> {
        #[derive(Deserialize)]
        struct Refid {
            refid: String,
        }
        let r: Refid = self
            .private(
                "Withdraw",
                &[
                    ("asset", &form.asset),
                    ("key", &form.key),
                    ("amount", &form.amount),
                    ("address", &form.address),
                ],
            )
            .await?;
        Ok(r.refid)
    }

    /// The withdrawal key registered at Kraken for `address` (verified, without a memo), if
    /// any.
    pub async fn withdrawal_key(
        &self,
        coin: &str,
        address: &str,
    ) -> Result<Option<String>, ExchangeError> {
        Ok(self
            .withdraw_keys(coin)
            .await?
            .into_iter()
            .find(|a| a.is_plain() && a.address == address)
            .map(|a| a.key))
    }

    /// `Withdraw` of `amount` of `coin` to the withdrawal key `key`, with `address` for Kraken
    /// to confirm the key's address is that one; returns Kraken's reference id.
    pub async fn withdraw_to_key(
        &self,
        coin: &str,
        key: &str,
        amount: &str,
        address: &str,
    ) -> Result<String, ExchangeError> {
        if !is_positive_decimal(amount) {
            return Err(ExchangeError::InvalidRequest(format!(
                "the amount {amount:?} is not a positive decimal"
            )));
        }
        self.withdraw_form(&WithdrawForm {
            asset: asset_of(coin),
            key: key.to_owned(),
            amount: amount.to_owned(),
            address: address.to_owned(),
        })
        .await
    }

    /// The withdrawals `WithdrawStatus` lists that could be the one `form` asked for, when
    /// the answer to it was lost (Kraken has no client order id to find it by): the same
    /// asset, withdrawal key (where Kraken names it) and address, the amount asked for
    /// (Kraken lists a withdrawal's amount net of its fee: `amount` + `fee` is what was
    /// asked), recorded within `window` (Unix seconds, Kraken's clock, both ends included),
    /// with a reference id not in `claimed` (the ones already known to be other requests').
    /// Their reference ids, oldest first. More than one means the match is ambiguous; none
    /// means Kraken lists none yet, not that nothing was withdrawn.
    pub async fn withdrawals_like(
        &self,
        form: &WithdrawForm,
        window: (u64, u64),
        claimed: &[String],
    ) -> Result<Vec<String>, ExchangeError> {
        let coin = coin_of(&form.asset);
        let (from, to) = (window.0 as f64, window.1 as f64);
        let mut found: Vec<(f64, String)> = self
            .statuses("WithdrawStatus", Some(&coin))
            .await?
            .into_iter()
            .filter(|s| coin_of(&s.asset) == coin)
            .filter(|s| {
                s.key
                    .as_deref()
                    .is_none_or(|k| k.is_empty() || k == form.key)
            })
            .filter(|s| same_address(&s.info, &form.address))
            .filter(|s| {
                asked_amount(&s.amount, s.fee.as_deref()).as_deref()
                    == Some(&*canonical_decimal(&form.amount))
            })
            .filter(|s| s.time.is_some_and(|t| t >= from && t <= to))
            .filter(|s| !claimed.contains(&s.refid))
            .map(|s| (s.time.unwrap_or_default(), s.refid))
            .collect();
        found.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }

    async fn statuses(
        &self,
        method: &str,
        coin: Option<&str>,
    ) -> Result<Vec<RawStatus>, ExchangeError> {
        let asset = coin.map(asset_of);
        let params: Vec<(&str, &str)> = asset.iter().map(|a| ("asset", a.as_str())).collect();
        self.private(method, &params).await
    }
}

/// A non-negative decimal string written one way (`"0.1000"`, `".1"` and `"0.1"` alike:
/// `"0.1"`); an empty string for anything that is not one.
fn canonical_decimal(x: &str) -> String {
    let x = x.trim();
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    let (int, frac) = x.split_once('.').unwrap_or((x, ""));
    if x.is_empty() || !digits(int) || !digits(frac) || (int.is_empty() && frac.is_empty()) {
        return String::new();
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    }
}

/// What a `WithdrawStatus` entry's withdrawal asked for: its `amount` plus its `fee`,
/// exactly (decimal, no rounding), canonical; `None` if either is not a decimal.
fn asked_amount(amount: &str, fee: Option<&str>) -> Option<String> {
    let units = |x: &str, scale: usize| -> Option<u128> {
        let c = canonical_decimal(x);
        if c.is_empty() {
            return None;
        }
        let (int, frac) = c.split_once('.').unwrap_or((&c, ""));
        let padded = format!("{int}{frac:0<scale$}");
        padded.parse().ok()
    };
    let fee = fee.filter(|f| !f.trim().is_empty()).unwrap_or("0");
    let scale_of = |x: &str| {
        canonical_decimal(x)
            .split_once('.')
            .map_or(0, |(_, f)| f.len())
    };
    let scale = scale_of(amount).max(scale_of(fee));
    let sum = units(amount, scale)?.checked_add(units(fee, scale)?)?;
    let text = sum.to_string();
    let text = if scale == 0 {
        text
    } else {
        let padded = format!("{text:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        format!("{int}.{frac}")
    };
    Some(canonical_decimal(&text))
}

/// Whether two addresses are the same: EVM addresses whatever their case (checksum or not),
/// any other kind exactly (base58 is case-sensitive).
fn same_address(a: &str, b: &str) -> bool {
    let evm = |x: &str| {
        x.len() == 42 && x.starts_with("0x") && x[2..].bytes().all(|c| c.is_ascii_hexdigit())
    };
    if evm(a) && evm(b) {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

fn withdrawal_of(s: RawStatus) -> Withdrawal {
    let status = match (s.status.as_str(), s.status_prop.as_deref()) {
        (_, Some("canceled")) => WithdrawalStatus::Cancelled,
        ("Initial" | "Pending" | "Settled", _) => WithdrawalStatus::Processing,
        ("Success", _) => WithdrawalStatus::Completed,
        ("Failure", _) => WithdrawalStatus::Failure,
        _ => WithdrawalStatus::Unknown(-1),
    };
    Withdrawal {
        id: s.refid,
        coin: coin_of(&s.asset),
        network: s.network.unwrap_or(s.method),
        address: s.info,
        amount: s.amount,
        status,
        tx_id: s.txid.filter(|t| !t.is_empty()),
        withdraw_order_id: None,
    }
}

fn deposit_of(s: RawStatus) -> Deposit {
    let status = match s.status.as_str() {
        "Success" => DepositStatus::Success,
        "Initial" | "Pending" | "Settled" => DepositStatus::Pending,
        "Failure" => DepositStatus::Rejected,
        _ => DepositStatus::Unknown(-1),
    };
    Deposit {
        coin: coin_of(&s.asset),
        network: s.network.unwrap_or(s.method),
        address: s.info,
        amount: s.amount,
        tx_id: s.txid.unwrap_or_default(),
        status,
        confirmations: String::new(),
    }
}

/// How the client reads Kraken's answers: an HTTP status and body in, the result or the
/// error out, with no I/O (untrusted input, fuzzed in `tests/fuzz.rs`).
pub mod answers {
    use serde::Deserialize;
    use serde::de::DeserializeOwned;

    use crate::ExchangeError;

    #[derive(Deserialize)]
    struct Envelope<T> {
        #[serde(default)]
        error: Vec<String>,
        result: Option<T>,
    }

    /// Reads `{"error": [...], "result": T}`: a non-empty `error` is
    /// [`ExchangeError::Refused`] with the first error (`"EAPI:Invalid nonce"`, its category
    /// and message; any later ones joined into the message), whatever the HTTP status; an
    /// HTTP error status without Kraken's envelope is [`ExchangeError::Http`].
    pub fn read<T: DeserializeOwned>(status: u16, body: &str) -> Result<T, ExchangeError> {
        let envelope: Result<Envelope<serde_json::Value>, _> = serde_json::from_str(body);
        match envelope {
            Ok(e) if !e.error.is_empty() => Err(refused(&e.error, status)),
            Ok(e) if (200..300).contains(&status) => {
                let result = e.result.ok_or_else(|| {
                    ExchangeError::Decode("the answer has neither an error nor a result".into())
                })?;
                serde_json::from_value(result).map_err(|e| ExchangeError::Decode(e.to_string()))
            }
            Ok(_) | Err(_) if !(200..300).contains(&status) => Err(ExchangeError::Http {
                status,
                body: body.chars().take(512).collect(),
            }),
            Ok(_) => Err(ExchangeError::Decode(
                "the answer has neither an error nor a result".into(),
            )),
            Err(e) => Err(ExchangeError::Decode(e.to_string())),
        }
    }

    fn refused(errors: &[String], status: u16) -> ExchangeError {
        let first: String = errors[0].chars().take(256).collect();
        let message = errors[1..]
            .iter()
            .map(|e| e.chars().take(256).collect::<String>())
            .collect::<Vec<_>>()
            .join("; ");
        ExchangeError::Refused {
            exchange: "kraken",
            error: first,
            message,
            http_status: status,
        }
    }
}

#[async_trait]
impl Connector for KrakenClient {
    fn exchange(&self) -> &str {
        "kraken"
    }

    async fn deposit_address(
        &self,
        coin: &str,
        network: &str,
    ) -> Result<DepositAddress, ExchangeError> {
        self.deposit_addresses(coin, network)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ExchangeError::InvalidRequest(format!(
                    "Kraken lists no {coin} deposit address on {network} for this account (this connector never asks Kraken to create one: make one at Kraken first)"
                ))
            })
    }

    /// Finds the verified withdrawal key Kraken has for the request's address and withdraws
    /// to it (Kraken withdraws only to registered keys). A client order id cannot be carried:
    /// Kraken has none.
    async fn withdraw(&self, request: &WithdrawRequest) -> Result<String, ExchangeError> {
        if request.withdraw_order_id.is_some() {
            return Err(ExchangeError::InvalidRequest(
                "Kraken withdrawals carry no client order id: a withdrawal with one cannot be found again by it".into(),
            ));
        }
        self.method(&request.coin, &request.network)?;
        let key = self
            .withdrawal_key(&request.coin, &request.address)
            .await?
            .ok_or_else(|| {
                ExchangeError::InvalidRequest(format!(
                    "no verified Kraken withdrawal key has the address {} for {}: register it at Kraken first",
                    request.address, request.coin
                ))
            })?;
        self.withdraw_to_key(&request.coin, &key, &request.amount, &request.address)
            .await
    }

    async fn withdrawal(&self, id: &str) -> Result<Option<Withdrawal>, ExchangeError> {
        Ok(self
            .statuses("WithdrawStatus", None)
            .await?
            .into_iter()
            .find(|s| s.refid == id)
            .map(withdrawal_of))
    }

    /// Kraken has no client order id: always an error, never a silent "not found" (a caller
    /// reconciling an uncertain withdrawal must not take it for "did not happen").
    async fn withdrawal_by_order_id(
        &self,
        order_id: &str,
    ) -> Result<Option<Withdrawal>, ExchangeError> {
        Err(ExchangeError::InvalidRequest(format!(
            "Kraken withdrawals carry no client order id: {order_id} cannot be looked up"
        )))
    }

    async fn deposits(
        &self,
        coin: &str,
        tx_id: Option<&str>,
    ) -> Result<Vec<Deposit>, ExchangeError> {
        Ok(self
            .statuses("DepositStatus", Some(coin))
            .await?
            .into_iter()
            .map(deposit_of)
            .filter(|d| tx_id.is_none_or(|t| d.tx_id == t))
            .collect())
    }

    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError> {
        let raw: BTreeMap<String, String> = self.private("Balance", &[]).await?;
        Ok(raw
            .into_iter()
            .map(|(asset, amount)| Balance {
                asset: coin_of(&asset),
                free: amount,
                locked: "0".to_owned(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kraken's documented `WithdrawStatus` example lists `amount` 0.72485 and `fee` 0.00015
    /// for the documented `Withdraw` of 0.725: what was asked is their exact sum.
    #[test]
    fn a_status_entry_s_asked_amount_is_its_amount_plus_its_fee() {
        assert_eq!(asked_amount("0.72485", Some("0.00015")).unwrap(), "0.725");
        assert_eq!(asked_amount("0.0999", Some("0.0001")).unwrap(), "0.1");
        assert_eq!(
            asked_amount("0.5000000000", Some("0.0000000000")).unwrap(),
            "0.5"
        );
        assert_eq!(asked_amount("2", None).unwrap(), "2");
        assert_eq!(asked_amount("1.9", Some("0.1")).unwrap(), "2");
        assert_eq!(
            asked_amount("0.000000000000000001", Some("0")).unwrap(),
            "0.000000000000000001"
        );
        assert!(asked_amount("-1", Some("0")).is_none());
        assert!(asked_amount("1e3", None).is_none());
        assert!(asked_amount("", None).is_none());
        assert_eq!(canonical_decimal("000.100"), "0.1");
        assert_eq!(canonical_decimal(".5"), "0.5");
        assert_eq!(canonical_decimal("7."), "7");
        assert_eq!(canonical_decimal("."), "");
        assert!(same_address(
            "0x8b5063591dAe63db54c2dbDF75941719252f9ea7",
            "0x8b5063591dae63db54c2dbdf75941719252f9ea7"
        ));
        assert!(!same_address("LTC1QABC", "ltc1qabc"));
    }

    #[test]
    fn nonces_only_grow() {
        let c = KrakenClient::new("http://127.0.0.1:1", "k", "c2VjcmV0").unwrap();
        let mut last = 0;
        for _ in 0..1000 {
            let n = c.nonce();
            assert!(n > last);
            last = n;
        }
    }

    #[test]
    fn errors_are_read_whatever_the_status() {
        let e = answers::read::<serde_json::Value>(200, r#"{"error":["EAPI:Invalid nonce"]}"#)
            .unwrap_err();
        assert!(
            matches!(&e, ExchangeError::Refused { error, .. } if error == "EAPI:Invalid nonce")
        );
        assert!(e.retryable());
        let e = answers::read::<serde_json::Value>(
            200,
            r#"{"error":["EFunding:Unknown withdraw key"],"result":{}}"#,
        )
        .unwrap_err();
        assert!(!e.retryable() && !e.outcome_unknown());
        let e = answers::read::<serde_json::Value>(502, "<html>bad gateway</html>").unwrap_err();
        assert!(matches!(e, ExchangeError::Http { status: 502, .. }));
        assert!(e.outcome_unknown());
        let ok: BTreeMap<String, String> =
            answers::read(200, r#"{"error":[],"result":{"XETH":"1.5"}}"#).unwrap();
        assert_eq!(ok["XETH"], "1.5");
        assert!(answers::read::<serde_json::Value>(200, r#"{"error":[]}"#).is_err());
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let c = KrakenClient::new("http://127.0.0.1:1", "my-key-123", "c2VjcmV0").unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("my-key-123") && !d.contains("c2VjcmV0"), "{d}");
    }

    #[test]
    fn a_withdrawal_key_s_memo_is_read() {
        // An entry as `WithdrawAddresses` lists it for a coin told apart by a memo.
        let listed = r#"[{"address":"rDestination","asset":"XXRP","method":"Ripple XRP","key":"desk-xrp","memo":"1234","verified":true},
                         {"address":"0xabc","asset":"XETH","method":"Ether","key":"desk","verified":true}]"#;
        let keys: Vec<WithdrawKey> = serde_json::from_str(listed).unwrap();
        assert_eq!(keys[0].memo.as_deref(), Some("1234"));
        assert_eq!(keys[1].memo, None);
        assert_eq!(keys[1].tag, None);
    }

    #[test]
    fn a_withdraw_form_is_read_only_in_its_canonical_form() {
        let f = WithdrawForm {
            asset: "XETH".into(),
            key: "desk wallet".into(),
            amount: "0.25".into(),
            address: "0xAbC0000000000000000000000000000000000001".into(),
        };
        let text = f.to_form();
        assert_eq!(
            text,
            "asset=XETH&key=desk%20wallet&amount=0.25&address=0xAbC0000000000000000000000000000000000001"
        );
        assert_eq!(WithdrawForm::parse(&text).unwrap(), f);
        for (bad, why) in [
            ("key=k&asset=XETH&amount=1&address=a", "expected asset"),
            ("asset=XETH&key=k&amount=1", "3 parameters"),
            (
                "asset=XETH&key=k&amount=1&address=a&new=true",
                "5 parameters",
            ),
            ("asset=XETH&key=desk+wallet&amount=1&address=a", "canonical"),
            ("asset=XETH&key=k&amount=-1&address=a", "positive decimal"),
            ("asset=XETH&key=&amount=1&address=a", "key is empty"),
            ("asset=XETH&key=k%2&amount=1&address=a", "key"),
        ] {
            let e = WithdrawForm::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
