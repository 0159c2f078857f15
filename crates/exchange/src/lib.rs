//! Concord's trading-platform connectors (the patent's "secure trading platform connector").
//!
//! - [`RequestSigner`] signs exchange request payloads: [`HmacSha256Signer`] for a module's
//!   own read-only key, [`Ed25519Signer`] for a whole Ed25519 key, [`NoSigner`] for a client
//!   that only submits requests signed elsewhere. A caller may implement it for a threshold
//!   group.
//! - [`binance::BinanceClient`] speaks Binance's wallet API as documented: the deposit address
//!   (always the *get* endpoint `GET /sapi/v1/capital/deposit/address`, never one that creates
//!   an address, so every module sees the same one), withdrawals, withdrawal and deposit
//!   history, and balances from `GET /api/v3/account`.
//! - For the threshold withdrawal (DESIGN flow 4) the request is split: the coordinator builds
//!   [`binance::WithdrawParams`], each module checks the exact bytes with
//!   [`binance::WithdrawParams::parse`] before joining the FROST-Ed25519 signing of them, and
//!   [`binance::BinanceClient::submit_signed_withdraw`] sends the signed request.
//! - [`kraken::KrakenClient`] speaks Kraken's funding API (deposit addresses without `new`,
//!   withdrawals to a withdrawal key registered at Kraken, withdrawal and deposit status,
//!   balances), signing with [`kraken::api_sign`]. Kraken authenticates with an HMAC secret,
//!   which no threshold scheme can shard: the one holder of a withdraw-capable Kraken secret
//!   can withdraw alone, but only to the addresses registered at Kraken as withdrawal keys.
//!
//! Amounts are decimal strings as the exchange writes them, never floating point.

mod error;
mod query;
mod signer;

pub mod binance;
pub mod coinbase;
pub mod kraken;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use error::{ErrorKind, ExchangeError, code_name};
pub use query::{decode_canonical, encode_component, is_positive_decimal};
pub use signer::{Ed25519Signer, HmacSha256Signer, KeyType, NoSigner, RequestSigner};

/// The HTTP client every connector uses: a timeout and the crate's user agent.
pub(crate) fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, ExchangeError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("concord-exchange/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ExchangeError::Config(format!("cannot build the HTTP client: {e}")))
}

/// A request that did not complete, the request named.
pub(crate) fn transport(
    method: &reqwest::Method,
    path: &str,
    error: reqwest::Error,
) -> ExchangeError {
    ExchangeError::Transport {
        timed_out: error.is_timeout(),
        message: format!("{method} {path}: {}", error.without_url()),
    }
}

/// An exchange call's outcome, counted when it failed (`concord_exchange_errors_total`, by
/// exchange, path and retryability) and with the request named in a decode error.
pub(crate) fn counted<T>(
    exchange: &'static str,
    method: &str,
    path: &str,
    r: Result<T, ExchangeError>,
) -> Result<T, ExchangeError> {
    if let Err(e) = &r {
        metrics::counter!(
            "concord_exchange_errors_total",
            "exchange" => exchange,
            "path" => path.to_owned(),
            "retryable" => if e.retryable() { "true" } else { "false" }
        )
        .increment(1);
    }
    r.map_err(|e| match e {
        ExchangeError::Decode(m) => ExchangeError::Decode(format!("{method} {path}: {m}")),
        e => e,
    })
}

/// A connector to one exchange account. Object-safe: use it as `Arc<dyn Connector>`.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The exchange's name (`"binance"`).
    fn exchange(&self) -> &str;

    /// The account's deposit address for `coin` on `network`, from the exchange's read-only
    /// *get* endpoint (never one that creates a new address).
    async fn deposit_address(
        &self,
        coin: &str,
        network: &str,
    ) -> Result<DepositAddress, ExchangeError>;

    /// Requests a withdrawal, signed with the connector's own key; returns the exchange's
    /// withdrawal id.
    async fn withdraw(&self, request: &WithdrawRequest) -> Result<String, ExchangeError>;

    /// The withdrawal with the exchange's id `id`, if the exchange knows it.
    async fn withdrawal(&self, id: &str) -> Result<Option<Withdrawal>, ExchangeError>;

    /// The withdrawal the client asked for under its own order id, if the exchange knows it
    /// (how a withdrawal whose outcome is unknown is reconciled before anything is signed
    /// again).
    async fn withdrawal_by_order_id(
        &self,
        order_id: &str,
    ) -> Result<Option<Withdrawal>, ExchangeError>;

    /// Deposits of `coin`, optionally only the one with transaction id `tx_id`.
    async fn deposits(
        &self,
        coin: &str,
        tx_id: Option<&str>,
    ) -> Result<Vec<Deposit>, ExchangeError>;

    /// The account's balances.
    async fn balances(&self) -> Result<Vec<Balance>, ExchangeError>;
}

/// Where to send `coin` on `network` so that it reaches the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositAddress {
    /// The coin, as the exchange names it (`"ETH"`).
    pub coin: String,
    /// The network asked for (`"ETH"`, `"BSC"`).
    pub network: String,
    /// The address.
    pub address: String,
    /// The memo or tag some networks need besides the address; `None` when there is none.
    pub tag: Option<String>,
}

/// A withdrawal to ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawRequest {
    /// The coin (`"ETH"`).
    pub coin: String,
    /// The network, always explicit (no exchange default is relied on).
    pub network: String,
    /// The destination address.
    pub address: String,
    /// The amount, a positive decimal string (`"0.25"`).
    pub amount: String,
    /// A client-chosen id to find the withdrawal again (and to check, after an uncertain
    /// failure, whether it happened).
    pub withdraw_order_id: Option<String>,
}

/// A withdrawal as the exchange reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    /// The exchange's withdrawal id.
    pub id: String,
    /// The coin.
    pub coin: String,
    /// The network (empty for records older than the exchange's multi-network support).
    pub network: String,
    /// The destination address.
    pub address: String,
    /// The amount sent, as a decimal string.
    pub amount: String,
    /// Where the withdrawal stands.
    pub status: WithdrawalStatus,
    /// The chain transaction id, once there is one.
    pub tx_id: Option<String>,
    /// The client-chosen id, if one was given.
    pub withdraw_order_id: Option<String>,
}

/// Binance's withdrawal status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalStatus {
    /// 0: confirmation email sent.
    EmailSent,
    /// 1: cancelled.
    Cancelled,
    /// 2: awaiting approval.
    AwaitingApproval,
    /// 3: rejected.
    Rejected,
    /// 4: processing.
    Processing,
    /// 5: failure.
    Failure,
    /// 6: completed.
    Completed,
    /// A code the documentation did not list when this was written.
    Unknown(i64),
}

impl WithdrawalStatus {
    /// The status for Binance's numeric code.
    pub fn from_code(code: i64) -> Self {
        match code {
            0 => Self::EmailSent,
            1 => Self::Cancelled,
            2 => Self::AwaitingApproval,
            3 => Self::Rejected,
            4 => Self::Processing,
            5 => Self::Failure,
            6 => Self::Completed,
            other => Self::Unknown(other),
        }
    }

    /// Binance's numeric code for this status.
    pub fn code(self) -> i64 {
        match self {
            Self::EmailSent => 0,
            Self::Cancelled => 1,
            Self::AwaitingApproval => 2,
            Self::Rejected => 3,
            Self::Processing => 4,
            Self::Failure => 5,
            Self::Completed => 6,
            Self::Unknown(code) => code,
        }
    }

    /// Whether the withdrawal will not change any more (completed, cancelled, rejected, failed).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Cancelled | Self::Rejected | Self::Failure
        )
    }
}

/// A deposit as the exchange reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deposit {
    /// The coin.
    pub coin: String,
    /// The network.
    pub network: String,
    /// The deposit address that received it.
    pub address: String,
    /// The amount, as a decimal string.
    pub amount: String,
    /// The chain transaction id.
    pub tx_id: String,
    /// Where the deposit stands.
    pub status: DepositStatus,
    /// Confirmations as the exchange writes them: `"current/required"` (`"12/12"`).
    pub confirmations: String,
}

/// Binance's deposit status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepositStatus {
    /// 0: pending.
    Pending,
    /// 1: success.
    Success,
    /// 2: rejected.
    Rejected,
    /// 6: credited but cannot withdraw yet.
    CreditedCannotWithdraw,
    /// 7: wrong deposit.
    WrongDeposit,
    /// 8: waiting for the user to confirm.
    WaitingUserConfirm,
    /// A code the documentation did not list when this was written.
    Unknown(i64),
}

impl DepositStatus {
    /// The status for Binance's numeric code.
    pub fn from_code(code: i64) -> Self {
        match code {
            0 => Self::Pending,
            1 => Self::Success,
            2 => Self::Rejected,
            6 => Self::CreditedCannotWithdraw,
            7 => Self::WrongDeposit,
            8 => Self::WaitingUserConfirm,
            other => Self::Unknown(other),
        }
    }

    /// Binance's numeric code for this status.
    pub fn code(self) -> i64 {
        match self {
            Self::Pending => 0,
            Self::Success => 1,
            Self::Rejected => 2,
            Self::CreditedCannotWithdraw => 6,
            Self::WrongDeposit => 7,
            Self::WaitingUserConfirm => 8,
            Self::Unknown(code) => code,
        }
    }

    /// Whether the deposit reached the account (credited, withdrawable or not yet).
    pub fn is_credited(self) -> bool {
        matches!(self, Self::Success | Self::CreditedCannotWithdraw)
    }
}

/// One asset's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Balance {
    /// The asset (`"ETH"`).
    pub asset: String,
    /// Available, as a decimal string.
    pub free: String,
    /// Locked (in orders or withdrawals), as a decimal string.
    pub locked: String,
}
