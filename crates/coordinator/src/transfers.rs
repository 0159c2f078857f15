//! Transfers between a wallet and an exchange (the patent's FIG. 4; DESIGN flows 3 and 4).
//!
//! **Deposit, wallet → exchange.** The coordinator asks every connected module for the
//! exchange's deposit address (each through its own connector and read key), proposes a
//! transaction to the address at least `t` of them reported, with a nonce from the chain and
//! its own record and fees under its caps; every module rebuilds and checks it against its
//! own view and approves or refuses; the agreement rule decides; the approvers sign; the
//! signature is attached, the recovered sender checked against the wallet, the transaction
//! broadcast (idempotent by hash), followed to the configured depth, and then until the
//! exchange credits it.
//!
//! **Withdrawal, exchange → wallet.** The coordinator builds the exchange's withdraw request
//! to the wallet's own address; the modules check it (each derives the address from the
//! group key itself) and sign it with the sharded Ed25519 API key (FROST); the coordinator
//! sends the signed request (it holds no exchange secret) and follows the withdrawal until
//! the funds are confirmed on chain.
//!
//! Every step is written to the store before it is acted on; unfinished transfers resume
//! after a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use concord_chain::{Address, Asset, B256, EvmClient, EvmTransfer, FeeCaps, TxStatus};
use concord_exchange::binance::{BinanceClient, WithdrawParams};
use concord_exchange::{Deposit, DepositAddress, Withdrawal, WithdrawalStatus};
use concord_types::{Scheme, WalletId};
use concord_wire::authority::{Action, AddressRef, AddressTarget, SignedIntent};
use concord_wire::payload::{Destination, SigningPayload};
use concord_wire::rpc::{ExchangeQuery, exchange_query};
use concord_wire::units::{format_amount, parse_amount};
use serde::{Deserialize, Serialize};

use crate::jobs::Engine;
use crate::store::{JobRecord, WalletRecord, now};
use crate::{AgreementRule, Error, SignMode};

/// Decimals of the chain's native coin.
const NATIVE_DECIMALS: u8 = 18;
/// The native coin's exchange code.
const NATIVE_COIN: &str = "ETH";
/// How long one module may take to answer an exchange question.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The chain transfers go over, as the coordinator sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSettings {
    /// JSON-RPC endpoint.
    pub rpc_url: String,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The exchanges' network code for this chain.
    #[serde(default = "default_network")]
    pub network: String,
    /// Confirmations before a transaction counts as final (1 = included).
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// Fee cap proposed at most (wei per gas).
    #[serde(default = "default_max_fee")]
    pub max_fee_per_gas: u64,
    /// Priority fee proposed at most (wei per gas).
    #[serde(default = "default_max_priority_fee")]
    pub max_priority_fee_per_gas: u64,
    /// How long to follow a transfer at the exchange before giving up on it, seconds.
    #[serde(default = "default_follow_secs")]
    pub follow_secs: u64,
    /// ERC-20 tokens by exchange coin code.
    #[serde(default)]
    pub tokens: Vec<TokenSettings>,
}

/// An ERC-20 token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// The exchange's coin code.
    pub coin: String,
    /// The contract.
    pub contract: Address,
    /// Decimals of the base unit.
    #[serde(default = "default_decimals")]
    pub decimals: u8,
}

/// An exchange the coordinator sends signed requests to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeEndpoint {
    /// The name modules know it by.
    pub name: String,
    /// The API it speaks: `binance`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Base URL of its API.
    pub url: String,
}

fn default_network() -> String {
    "ETH".into()
}
fn default_confirmations() -> u64 {
    1
}
fn default_max_fee() -> u64 {
    200_000_000_000
}
fn default_max_priority_fee() -> u64 {
    2_000_000_000
}
fn default_follow_secs() -> u64 {
    300
}
fn default_decimals() -> u8 {
    18
}
fn default_kind() -> String {
    "binance".into()
}

/// What transfers need besides the engine.
pub(crate) struct TransferContext {
    pub(crate) chain: ChainSettings,
    pub(crate) client: EvmClient,
    pub(crate) exchanges: BTreeMap<String, ExchangeEndpoint>,
}

impl TransferContext {
    pub(crate) fn new(
        chain: ChainSettings,
        exchanges: Vec<ExchangeEndpoint>,
    ) -> Result<TransferContext, Error> {
        let client = EvmClient::new(&chain.rpc_url).map_err(|e| {
            Error::BadRequest(format!(
                "the chain RPC URL {} is unusable: {e}",
                chain.rpc_url
            ))
        })?;
        for x in &exchanges {
            if x.kind != "binance" {
                return Err(Error::BadRequest(format!(
                    "exchange {}: the API kind {:?} is not supported (supported: binance)",
                    x.name, x.kind
                )));
            }
        }
        Ok(TransferContext {
            chain,
            client,
            exchanges: exchanges.into_iter().map(|x| (x.name.clone(), x)).collect(),
        })
    }

    /// The asset and decimals of an exchange coin code on this chain.
    fn asset_of(&self, coin: &str) -> Result<(Asset, u8), Error> {
        if coin == NATIVE_COIN {
            return Ok((Asset::Native, NATIVE_DECIMALS));
        }
        self.chain
            .tokens
            .iter()
            .find(|t| t.coin == coin)
            .map(|t| (Asset::Erc20 { token: t.contract }, t.decimals))
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "coin {coin} is neither {NATIVE_COIN} nor a configured token"
                ))
            })
    }

    fn exchange(&self, name: &str) -> Result<&ExchangeEndpoint, Error> {
        self.exchanges
            .get(name)
            .ok_or_else(|| Error::BadRequest(format!("exchange {name:?} is not configured")))
    }
}

/// Deposit or withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferKind {
    /// Wallet → exchange.
    Deposit,
    /// Exchange → wallet.
    Withdrawal,
}

impl TransferKind {
    /// The name stored and shown.
    pub fn as_str(&self) -> &'static str {
        match self {
            TransferKind::Deposit => "deposit",
            TransferKind::Withdrawal => "withdrawal",
        }
    }
}

/// What one module said the deposit address is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resolution {
    /// The module.
    pub module: String,
    /// The address it reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Or why it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A transfer's whole record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TransferRecord {
    /// Transfer id.
    pub id: String,
    /// Deposit or withdrawal.
    pub kind: TransferKind,
    /// Deposits: `requested`, `resolving`, `signing`, `signed`, `broadcast`, `confirmed`,
    /// `credited`. Withdrawals: `requested`, `signing`, `submitted`, `sent`, `arrived`.
    /// Either: `failed`.
    pub status: String,
    /// The trader's wallet (sender of a deposit; receiver of a withdrawal to a wallet, empty
    /// for one to an outside address).
    pub wallet_id: String,
    /// The exchange connection.
    pub exchange: String,
    /// Coin code.
    pub coin: String,
    /// Network code.
    pub network: String,
    /// Amount in coin units, as requested.
    pub amount: String,
    /// Agreement rule.
    pub rule: AgreementRule,
    /// Signing mode for ECDSA (`presigned` or `interactive`).
    pub mode: SignMode,
    /// Where the funds go: the deposit address (deposits) or the withdrawal's destination
    /// address.
    #[serde(default)]
    pub destination: Option<String>,
    /// A withdrawal's address-book destination, as the intent names it.
    #[serde(default)]
    pub to: Option<AddressRef>,
    /// The principal who signed the intent.
    #[serde(default)]
    pub requester: Option<String>,
    /// The signed intent (the transfer's id is its id).
    #[serde(default)]
    pub intent: Option<SignedIntent>,
    /// Each module's report of the deposit address.
    #[serde(default)]
    pub resolutions: Vec<Resolution>,
    /// The account nonce used (deposits).
    #[serde(default)]
    pub nonce: Option<u64>,
    /// The sign job.
    #[serde(default)]
    pub sign_job_id: Option<String>,
    /// Modules that refused, with their reasons.
    #[serde(default)]
    pub dissenters: BTreeMap<String, String>,
    /// Modules that approved.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// The hash of the policy the approving modules applied.
    #[serde(default)]
    pub policy: Option<String>,
    /// The signed transaction (hex), once signed.
    #[serde(default)]
    pub raw_tx: Option<String>,
    /// The chain transaction hash.
    #[serde(default)]
    pub tx_hash: Option<String>,
    /// The exchange's withdrawal id.
    #[serde(default)]
    pub exchange_withdrawal_id: Option<String>,
    /// Milliseconds from the request to each step, as measured here.
    #[serde(default)]
    pub timings_ms: BTreeMap<String, f64>,
    /// What happened, in order.
    #[serde(default)]
    pub log: Vec<String>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// When it was requested.
    pub created_at: String,
    /// Request time, ms since the Unix epoch (for timings).
    pub created_ms: f64,
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn epoch_ms_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

impl TransferRecord {
    fn step(&mut self, status: &str, note: impl Into<String>) {
        self.status = status.to_owned();
        self.log
            .push(format!("{} {status}: {}", now(), note.into()));
        self.mark(status);
    }

    /// Records when a step was reached (ms since the request, to the microsecond).
    fn mark(&mut self, what: &str) {
        self.timings_ms.insert(
            what.to_owned(),
            ((epoch_ms_f64() - self.created_ms) * 1000.0).round() / 1000.0,
        );
    }

    /// Whether the transfer has reached a final status (credited, arrived or failed).
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "credited" | "arrived" | "failed")
    }
}

/// A request to deposit from a wallet to an exchange: a trader's signed intent (wallet,
/// exchange, coin, network, amount, rule). The transfer's id is the intent's id, so the same
/// intent sent again finds the same transfer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// The trader's signed intent.
    pub intent: SignedIntent,
    /// Signing mode (default: from a presignature when one is ready).
    #[serde(default)]
    pub mode: SignMode,
}

/// A request to withdraw from an exchange to an address-book destination: a trader's signed
/// intent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    /// The trader's signed intent.
    pub intent: SignedIntent,
}

/// Registers an exchange's withdraw-capable API key (an Ed25519 wallet of a signer group).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    /// The Ed25519 wallet whose public key the exchange knows.
    pub wallet: WalletId,
    /// The API key string the exchange issued for it.
    pub api_key: String,
}

fn ecdsa_address(wallet: &WalletRecord) -> Result<Address, Error> {
    if wallet.scheme != Scheme::EcdsaSecp256k1.to_string() {
        return Err(Error::BadRequest(format!(
            "wallet {} is {}, and transfers on an EVM chain need an ecdsa-secp256k1 wallet",
            wallet.id, wallet.scheme
        )));
    }
    concord_chain::evm_address(&wallet.public_key)
        .map_err(|e| Error::Internal(format!("wallet {}'s key: {e}", wallet.id)))
}

impl Engine {
    fn transfer_ctx(&self) -> Result<&Arc<TransferContext>, Error> {
        self.transfers.as_ref().ok_or_else(|| {
            Error::BadRequest(
                "this coordinator has no chain configured ([chain] in its configuration)".into(),
            )
        })
    }

    async fn save(&self, t: &TransferRecord) -> Result<(), Error> {
        self.store.save_transfer(t).await
    }

    /// Accepts a deposit request and starts it.
    pub(crate) async fn request_deposit(
        &self,
        req: DepositRequest,
    ) -> Result<TransferRecord, Error> {
        self.accept(TransferKind::Deposit, req.intent, req.mode)
            .await
    }

    /// Accepts a withdrawal request and starts it.
    pub(crate) async fn request_withdrawal(
        &self,
        req: WithdrawalRequest,
    ) -> Result<TransferRecord, Error> {
        self.accept(TransferKind::Withdrawal, req.intent, SignMode::Interactive)
            .await
    }

    /// Checks a transfer request (defence in depth: the modules check the intent again
    /// against their own policy and decide), records it under the intent's id and starts it.
    async fn accept(
        &self,
        kind: TransferKind,
        intent: SignedIntent,
        mode: SignMode,
    ) -> Result<TransferRecord, Error> {
        let ctx = self.transfer_ctx()?;
        if let Some(existing) = self.store.transfer(&intent.intent.id).await? {
            if existing.intent.as_ref() == Some(&intent) {
                return Ok(existing);
            }
            return Err(Error::Conflict(format!(
                "intent {} was already used for another request",
                intent.intent.id
            )));
        }
        let (wallet_id, exchange, coin, network, amount, rule, to) = match (
            &intent.intent.action,
            kind,
        ) {
            (
                Action::Deposit {
                    wallet,
                    exchange,
                    coin,
                    network,
                    amount,
                    rule,
                },
                TransferKind::Deposit,
            ) => {
                let w = self
                    .store
                    .wallet(&wallet.to_string())
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("wallet {wallet}")))?;
                ecdsa_address(&w)?;
                (w.id, exchange, coin, network, amount, *rule, None)
            }
            (
                Action::Withdraw {
                    exchange,
                    coin,
                    network,
                    amount,
                    to,
                    rule,
                },
                TransferKind::Withdrawal,
            ) => {
                if self.store.credential(exchange).await?.is_none() {
                    return Err(Error::BadRequest(format!(
                        "exchange {exchange} has no withdraw key registered (POST /v1/exchanges/{exchange}/credential)"
                    )));
                }
                let wallet = match to {
                    AddressRef::Wallet(w) => w.to_string(),
                    AddressRef::Label(_) => String::new(),
                };
                (
                    wallet,
                    exchange,
                    coin,
                    network,
                    amount,
                    *rule,
                    Some(to.clone()),
                )
            }
            (other, _) => {
                return Err(Error::BadRequest(format!(
                    "the intent asks for a {}, not a {}",
                    other.kind(),
                    kind.as_str()
                )));
            }
        };
        ctx.exchange(exchange)?;
        if *network != ctx.chain.network {
            return Err(Error::BadRequest(format!(
                "network {network} is not this coordinator's chain network ({})",
                ctx.chain.network
            )));
        }
        let (_, decimals) = ctx.asset_of(coin)?;
        let amount = parse_amount(amount, decimals)
            .map_err(|e| Error::BadRequest(format!("amount: {e}")))?;
        let t = TransferRecord {
            id: intent.intent.id.clone(),
            kind,
            status: "requested".into(),
            wallet_id,
            exchange: exchange.clone(),
            coin: coin.clone(),
            network: network.clone(),
            amount: format_amount(amount, decimals),
            rule,
            mode,
            destination: None,
            to,
            requester: None,
            resolutions: Vec::new(),
            nonce: None,
            sign_job_id: None,
            dissenters: BTreeMap::new(),
            approvers: Vec::new(),
            policy: None,
            raw_tx: None,
            tx_hash: None,
            exchange_withdrawal_id: None,
            timings_ms: BTreeMap::new(),
            log: Vec::new(),
            error: None,
            created_at: now(),
            created_ms: epoch_ms_f64(),
            intent: None,
        };
        let signers = self.signers_of(&intent).await?;
        let mut t = t;
        t.intent = Some(intent);
        t.requester = signers.first().cloned();
        t.log.push(format!(
            "{} requested, intent signed by {}",
            now(),
            signers.join(", ")
        ));
        self.save(&t).await?;
        self.spawn_transfer(t.clone());
        Ok(t)
    }

    /// Registers an exchange's withdraw-capable key.
    pub(crate) async fn register_credential(
        &self,
        exchange: &str,
        req: CredentialRequest,
    ) -> Result<(), Error> {
        let ctx = self.transfer_ctx()?;
        ctx.exchange(exchange)?;
        let wallet = self
            .store
            .wallet(&req.wallet.to_string())
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {}", req.wallet)))?;
        if wallet.scheme != Scheme::Ed25519.to_string() {
            return Err(Error::BadRequest(format!(
                "wallet {} is {}; an exchange withdraw key must be an ed25519 wallet",
                wallet.id, wallet.scheme
            )));
        }
        let policy = self.policy_in_force().await?.ok_or_else(|| {
            Error::Conflict(
                "no policy is in force yet: it must name the exchange's withdraw key first".into(),
            )
        })?;
        match policy.policy.credential(exchange) {
            Some(rule) if rule.wallet == req.wallet => {}
            Some(rule) => {
                return Err(Error::BadRequest(format!(
                    "policy v{} names wallet {} ({:?}) as exchange {exchange}'s withdraw key, not {}",
                    policy.policy.version, rule.wallet, rule.label, req.wallet
                )));
            }
            None => {
                return Err(Error::BadRequest(format!(
                    "policy v{} names no withdraw key for exchange {exchange}",
                    policy.policy.version
                )));
            }
        }
        if req.api_key.is_empty() || req.api_key.len() > 128 {
            return Err(Error::BadRequest(
                "api_key must be 1 to 128 characters".into(),
            ));
        }
        self.store
            .set_credential(exchange, &wallet.id, &req.api_key)
            .await
    }

    /// Runs (or resumes) a transfer in the background.
    pub(crate) fn spawn_transfer(&self, t: TransferRecord) {
        let engine = self.clone();
        tokio::spawn(async move {
            let id = t.id.clone();
            let mut t = t;
            let outcome = match t.kind {
                TransferKind::Deposit => engine.run_deposit(&mut t).await,
                TransferKind::Withdrawal => engine.run_withdrawal(&mut t).await,
            };
            if let Err(e) = outcome {
                tracing::warn!(transfer = %id, error = %e, "transfer failed");
                t.error = Some(e.to_string());
                t.step("failed", e.to_string());
                let _ = engine.save(&t).await;
            }
            let _ = engine.finished.send(id);
        });
    }

    /// Resumes every unfinished transfer (after a restart).
    pub(crate) async fn resume_transfers(&self) -> Result<usize, Error> {
        if self.transfers.is_none() {
            return Ok(0);
        }
        let list = self.store.unfinished_transfers().await?;
        let n = list.len();
        for mut t in list {
            tracing::info!(transfer = %t.id, status = %t.status, "resuming transfer");
            t.log
                .push(format!("{} resumed after a coordinator restart", now()));
            self.save(&t).await?;
            self.spawn_transfer(t);
        }
        Ok(n)
    }

    /// Asks every connected member a question; answers in member order.
    async fn ask_members(
        &self,
        members: &[String],
        exchange: &str,
        query: exchange_query::Query,
    ) -> Vec<(String, Result<Vec<u8>, String>)> {
        let asks = members.iter().map(|m| {
            let q = ExchangeQuery {
                request_id: String::new(),
                exchange: exchange.to_owned(),
                query: Some(query.clone()),
            };
            async move {
                let r = match self.hub.query(m, q, QUERY_TIMEOUT).await {
                    Ok(a) if a.error.is_empty() => Ok(a.json),
                    Ok(a) => Err(a.error),
                    Err(e) => Err(e),
                };
                (m.clone(), r)
            }
        });
        futures::future::join_all(asks).await
    }

    /// Asks members one after another until one answers (for following a transfer).
    async fn ask_any<T: for<'de> Deserialize<'de>>(
        &self,
        members: &[String],
        exchange: &str,
        query: exchange_query::Query,
    ) -> Result<T, String> {
        let mut errors = Vec::new();
        for m in members.iter().filter(|m| self.hub.is_connected(m)) {
            let q = ExchangeQuery {
                request_id: String::new(),
                exchange: exchange.to_owned(),
                query: Some(query.clone()),
            };
            match self.hub.query(m, q, QUERY_TIMEOUT).await {
                Ok(a) if a.error.is_empty() => {
                    return serde_json::from_slice(&a.json)
                        .map_err(|e| format!("module {m} sent an unreadable answer: {e}"));
                }
                Ok(a) => errors.push(format!("{m}: {}", a.error)),
                Err(e) => errors.push(e),
            }
        }
        Err(if errors.is_empty() {
            "no module is connected".into()
        } else {
            errors.join("; ")
        })
    }

    /// Creates the sign job for a transfer's payload, once, and waits for it.
    async fn sign_for(
        &self,
        t: &mut TransferRecord,
        wallet: &WalletRecord,
        payload: &SigningPayload,
    ) -> Result<serde_json::Value, Error> {
        let job_id = match &t.sign_job_id {
            Some(id) if self.store.job(id).await?.is_some() => id.clone(),
            _ => {
                let job = JobRecord {
                    wallet_id: Some(wallet.id.clone()),
                    scheme: Some(wallet.scheme.clone()),
                    rule: Some(t.rule.to_string()),
                    mode: Some(t.mode.as_str().into()),
                    payload: Some(payload.to_canonical()),
                    intent: t.intent.as_ref().map(SignedIntent::to_json),
                    digest: Some(payload.digest().to_vec()),
                    ..JobRecord::pending(uuid::Uuid::new_v4().to_string(), "sign", &wallet.group_id)
                };
                // The transfer names its job before the job exists: a restart between the
                // two finds the id and creates nothing twice.
                t.sign_job_id = Some(job.id.clone());
                t.step("signing", format!("sign job {}", job.id));
                self.save(t).await?;
                self.store.insert_job(&job).await?;
                self.spawn(job.clone());
                job.id
            }
        };
        let job = self.wait_job(&job_id, None).await?;
        t.mark("signature");
        let events = self.store.events(&job_id).await?;
        for e in events {
            if e.kind == "dissent"
                && let Some(m) = e.module_id
            {
                t.dissenters.insert(m, e.detail.clone().unwrap_or_default());
            }
        }
        match job.status.as_str() {
            "done" => {
                let result: serde_json::Value =
                    serde_json::from_slice(job.result.as_deref().unwrap_or_default())
                        .map_err(|e| Error::Internal(format!("sign job result: {e}")))?;
                t.policy = result["policy"].as_str().map(str::to_owned);
                t.approvers = result["approvers"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(result)
            }
            _ => Err(Error::Refused(
                job.error
                    .unwrap_or_else(|| "the sign job failed".into())
                    .trim_start_matches("refused: ")
                    .to_owned(),
            )),
        }
    }

    async fn run_deposit(&self, t: &mut TransferRecord) -> Result<(), Error> {
        let ctx = self.transfer_ctx()?.clone();
        let wallet = self
            .store
            .wallet(&t.wallet_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {}", t.wallet_id)))?;
        let group = self
            .store
            .group(&wallet.group_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("group {}", wallet.group_id)))?;
        let sender = ecdsa_address(&wallet)?;
        let (asset, decimals) = ctx.asset_of(&t.coin)?;
        let amount = parse_amount(&t.amount, decimals).map_err(Error::BadRequest)?;
        let wallet_id: WalletId = wallet
            .id
            .parse()
            .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))?;

        if t.raw_tx.is_none() {
            // Step 1: every module resolves the deposit address through its own connector.
            let payload = match (&t.destination, t.nonce) {
                (Some(_), Some(nonce)) if t.sign_job_id.is_some() => {
                    // Resumed after the proposal was fixed: the sign job holds the payload.
                    let job = self
                        .store
                        .job(t.sign_job_id.as_deref().unwrap_or_default())
                        .await?;
                    match job.and_then(|j| j.payload) {
                        Some(p) => SigningPayload::from_canonical(&p)
                            .map_err(|e| Error::Internal(e.to_string()))?,
                        None => {
                            return Err(Error::Internal(format!(
                                "the sign job of transfer {} (nonce {nonce}) is missing",
                                t.id
                            )));
                        }
                    }
                }
                _ => {
                    t.step("resolving", "asking every module for the deposit address");
                    self.save(t).await?;
                    let answers = self
                        .ask_members(
                            &group.members,
                            &t.exchange,
                            exchange_query::Query::DepositAddress(
                                concord_wire::rpc::DepositAddressQuery {
                                    coin: t.coin.clone(),
                                    network: t.network.clone(),
                                },
                            ),
                        )
                        .await;
                    t.resolutions = answers
                        .into_iter()
                        .map(|(module, r)| {
                            match r.and_then(|json| {
                                serde_json::from_slice::<DepositAddress>(&json)
                                    .map_err(|e| format!("unreadable answer: {e}"))
                            }) {
                                Ok(a) => Resolution {
                                    module,
                                    address: Some(a.address),
                                    error: None,
                                },
                                Err(e) => Resolution {
                                    module,
                                    address: None,
                                    error: Some(e),
                                },
                            }
                        })
                        .collect();
                    let mut counts: BTreeMap<Address, Vec<String>> = BTreeMap::new();
                    for r in &t.resolutions {
                        if let Some(a) = r.address.as_deref().and_then(|a| a.parse().ok()) {
                            counts.entry(a).or_default().push(r.module.clone());
                        }
                    }
                    let t_needed = usize::from(group.threshold);
                    let best = counts
                        .iter()
                        .max_by_key(|(_, ms)| ms.len())
                        .map(|(a, ms)| (*a, ms.len()));
                    let recipient = match best {
                        Some((a, n)) if n >= t_needed => a,
                        _ => {
                            let seen: Vec<String> = t
                                .resolutions
                                .iter()
                                .map(|r| match (&r.address, &r.error) {
                                    (Some(a), _) => format!("{} → {a}", r.module),
                                    (_, Some(e)) => format!("{} → error: {e}", r.module),
                                    _ => r.module.clone(),
                                })
                                .collect();
                            return Err(Error::Refused(format!(
                                "fewer than {t_needed} modules agree on the deposit address: {}",
                                seen.join("; ")
                            )));
                        }
                    };
                    if counts.len() > 1 {
                        let odd: Vec<String> = counts
                            .iter()
                            .filter(|(a, _)| **a != recipient)
                            .map(|(a, ms)| format!("{} reported {a}", ms.join(", ")))
                            .collect();
                        tracing::warn!(transfer = %t.id, odd = %odd.join("; "), "ALERT: modules disagree on the deposit address");
                    }
                    // Step 2: nonce and fees.
                    let (pending, fees) =
                        tokio::join!(ctx.client.pending_nonce(sender), ctx.client.suggest_fees());
                    let pending = pending.map_err(|e| chain_error("reading the nonce", &e))?;
                    let fees = fees.map_err(|e| chain_error("reading fees", &e))?;
                    let recorded = self
                        .store
                        .next_nonce(&wallet.id, ctx.chain.chain_id)
                        .await?;
                    let nonce = concord_chain::next_nonce(pending, recorded);
                    let fees = FeeCaps {
                        max_fee_per_gas: fees
                            .max_fee_per_gas
                            .min(u128::from(ctx.chain.max_fee_per_gas)),
                        max_priority_fee_per_gas: fees
                            .max_priority_fee_per_gas
                            .min(u128::from(ctx.chain.max_priority_fee_per_gas)),
                    };
                    let payload = SigningPayload::EvmTransfer {
                        transfer: t.id.clone(),
                        wallet: wallet_id,
                        chain_id: ctx.chain.chain_id,
                        nonce,
                        gas_limit: EvmTransfer::default_gas_limit(&asset),
                        max_fee_per_gas: fees.max_fee_per_gas,
                        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
                        asset: asset.clone(),
                        amount,
                        recipient,
                        destination: Destination::ExchangeDeposit {
                            exchange: t.exchange.clone(),
                            coin: t.coin.clone(),
                            network: t.network.clone(),
                        },
                    };
                    t.destination = Some(recipient.to_string());
                    t.nonce = Some(nonce);
                    payload
                }
            };
            // Step 3: proposal, approvals, agreement, threshold signature.
            let result = self.sign_for(t, &wallet, &payload).await?;
            let signature = hex::decode(result["signature"].as_str().unwrap_or_default())
                .map_err(|_| Error::Protocol("the signature is not hex".into()))?;
            let tx = payload
                .evm_transfer()
                .ok_or_else(|| Error::Internal("not an EVM payload".into()))?;
            // Step 4: attach, and check the recovered sender is the wallet.
            let signed = tx
                .attach(&signature, sender)
                .map_err(|e| Error::Protocol(format!("the signed transaction: {e}")))?;
            self.store
                .use_nonce(&wallet.id, ctx.chain.chain_id, tx.nonce)
                .await?;
            t.raw_tx = Some(hex::encode(&signed.raw));
            t.tx_hash = Some(signed.hash.to_string());
            t.step(
                "signed",
                format!("transaction {} from {sender} verified", signed.hash),
            );
            self.save(t).await?;
        }

        // Step 5: broadcast (idempotent by hash), retrying while a retry can help.
        let raw = hex::decode(t.raw_tx.as_deref().unwrap_or_default())
            .map_err(|_| Error::Internal("stored raw transaction".into()))?;
        let signed = concord_chain::SignedTransaction::decode(&raw)
            .map_err(|e| Error::Internal(format!("stored raw transaction: {e}")))?;
        if t.status == "signed" {
            let mut attempt = 0;
            loop {
                match ctx.client.broadcast(&signed).await {
                    Ok(_) => break,
                    Err(e) if e.retryable() && attempt < 10 => {
                        attempt += 1;
                        tracing::warn!(transfer = %t.id, error = %e, "broadcast failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    }
                    Err(e) => return Err(chain_error("broadcasting", &e)),
                }
            }
            t.step(
                "broadcast",
                format!("transaction {} accepted by the node", signed.hash),
            );
            self.save(t).await?;
        }
        // Step 6: confirmations.
        if t.status == "broadcast" {
            let status = ctx
                .client
                .wait_for_confirmations(
                    signed.hash,
                    ctx.chain.confirmations,
                    Duration::from_secs(ctx.chain.follow_secs),
                )
                .await
                .map_err(|e| chain_error("following the transaction", &e))?;
            match status {
                TxStatus::Included {
                    block,
                    confirmations,
                    success: true,
                } => {
                    t.step(
                        "confirmed",
                        format!("in block {block} with {confirmations} confirmation(s)"),
                    );
                    self.save(t).await?;
                }
                TxStatus::Included { success: false, .. } => {
                    return Err(Error::Refused(format!(
                        "transaction {} was reverted by the chain",
                        signed.hash
                    )));
                }
                _ => {
                    return Err(Error::Unavailable(format!(
                        "transaction {} has not reached {} confirmation(s) within {} s",
                        signed.hash, ctx.chain.confirmations, ctx.chain.follow_secs
                    )));
                }
            }
        }
        // Step 7: follow the exchange until it credits the deposit.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(ctx.chain.follow_secs);
        let tx_id = signed.hash.to_string();
        loop {
            let deposits: Result<Vec<Deposit>, String> = self
                .ask_any(
                    &group.members,
                    &t.exchange,
                    exchange_query::Query::Deposit(concord_wire::rpc::DepositQuery {
                        coin: t.coin.clone(),
                        tx_id: tx_id.clone(),
                    }),
                )
                .await;
            match deposits {
                Ok(list) => {
                    if let Some(d) = list
                        .iter()
                        .find(|d| same_tx(&d.tx_id, &signed.hash) && d.status.is_credited())
                    {
                        t.step(
                            "credited",
                            format!("exchange {} credited {} {}", t.exchange, d.amount, d.coin),
                        );
                        self.save(t).await?;
                        return Ok(());
                    }
                }
                Err(e) => {
                    tracing::debug!(transfer = %t.id, error = %e, "deposit status not available yet")
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "exchange {} has not credited transaction {tx_id} within {} s",
                    t.exchange, ctx.chain.follow_secs
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Where a withdrawal goes, as the coordinator understands the intent: the address-book
    /// entry it names in the policy in force here, or, for a wallet the address book does not
    /// name, that wallet's own address (the modules, which decide, will refuse it).
    async fn withdrawal_destination(&self, t: &TransferRecord) -> Result<String, Error> {
        let to = t
            .to
            .as_ref()
            .ok_or_else(|| Error::Internal(format!("withdrawal {} has no destination", t.id)))?;
        let policy = self.policy_in_force().await?;
        let entry = policy.as_ref().and_then(|p| match to {
            AddressRef::Wallet(w) => p.policy.address_of_wallet(w),
            AddressRef::Label(l) => p.policy.address(l),
        });
        let wallet = match (entry.map(|e| &e.target), to) {
            (Some(AddressTarget::Address { address, .. }), _) => return Ok(address.clone()),
            (Some(AddressTarget::Wallet { wallet }), _) | (None, AddressRef::Wallet(wallet)) => {
                *wallet
            }
            (None, AddressRef::Label(l)) => {
                return Err(Error::BadRequest(format!(
                    "the address book of the policy in force has no entry {l:?}"
                )));
            }
        };
        let w = self
            .store
            .wallet(&wallet.to_string())
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {wallet}")))?;
        Ok(ecdsa_address(&w)?.to_string())
    }

    async fn run_withdrawal(&self, t: &mut TransferRecord) -> Result<(), Error> {
        let ctx = self.transfer_ctx()?.clone();
        let address = self.withdrawal_destination(t).await?;
        let endpoint = ctx.exchange(&t.exchange)?.clone();
        let (cred_wallet_id, api_key) =
            self.store.credential(&t.exchange).await?.ok_or_else(|| {
                Error::BadRequest(format!(
                    "exchange {} has no withdraw key registered",
                    t.exchange
                ))
            })?;
        let cred_wallet = self
            .store
            .wallet(&cred_wallet_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {cred_wallet_id}")))?;
        let group = self
            .store
            .group(&cred_wallet.group_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("group {}", cred_wallet.group_id)))?;
        let client = BinanceClient::new(
            &endpoint.url,
            api_key.clone(),
            Arc::new(concord_exchange::NoSigner::new(
                concord_exchange::KeyType::Ed25519,
            )),
        )
        .map_err(|e| Error::BadRequest(format!("exchange {}: {e}", t.exchange)))?;

        // Resumed after a request may have been signed and sent: look the order up at the
        // exchange first (through the modules' read keys); it is never requested twice.
        if t.exchange_withdrawal_id.is_none()
            && t.sign_job_id.is_some()
            && self.reconcile_withdrawal(t, &group.members).await?
        {
            self.save(t).await?;
        }
        if t.exchange_withdrawal_id.is_none() {
            // A signed request is only good for its receive window: a resumed transfer that
            // the exchange does not know signs a fresh one (the modules sign it only once the
            // earlier one has expired and they too find no withdrawal under the order id).
            t.sign_job_id = None;
            t.destination = Some(address.clone());
            let params = WithdrawParams {
                coin: t.coin.clone(),
                network: t.network.clone(),
                address: address.clone(),
                amount: t.amount.clone(),
                withdraw_order_id: Some(t.id.clone()),
                timestamp_ms: epoch_ms(),
                recv_window_ms: 5_000,
            };
            let request = params.to_query();
            let payload = SigningPayload::ExchangeWithdrawal {
                transfer: t.id.clone(),
                wallet: cred_wallet_id
                    .parse()
                    .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))?,
                exchange: t.exchange.clone(),
                api_key: api_key.clone(),
                request: request.clone(),
            };
            let result = self.sign_for(t, &cred_wallet, &payload).await?;
            let signature = hex::decode(result["signature"].as_str().unwrap_or_default())
                .map_err(|_| Error::Protocol("the signature is not hex".into()))?;
            let signature = base64::engine::general_purpose::STANDARD.encode(signature);
            match client.submit_signed_withdraw(&request, &signature).await {
                Ok(id) => {
                    t.exchange_withdrawal_id = Some(id.clone());
                    t.step(
                        "submitted",
                        format!(
                            "exchange {} accepted withdrawal {id} to {address}",
                            t.exchange
                        ),
                    );
                }
                // The exchange may have taken it: look before calling it failed.
                Err(e)
                    if e.outcome_unknown()
                        && self.reconcile_withdrawal(t, &group.members).await? => {}
                Err(e) => {
                    let retry = if e.retryable() {
                        "a retry may help"
                    } else {
                        "a retry will not help"
                    };
                    return Err(Error::Refused(format!(
                        "exchange {} refused the withdraw request: {e} ({retry})",
                        t.exchange
                    )));
                }
            }
            self.save(t).await?;
        }
        let id = t.exchange_withdrawal_id.clone().unwrap_or_default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(ctx.chain.follow_secs);
        // Follow the withdrawal at the exchange (through the modules' read keys).
        if t.status == "submitted" {
            loop {
                let w: Result<Option<Withdrawal>, String> = self
                    .ask_any(
                        &group.members,
                        &t.exchange,
                        exchange_query::Query::Withdrawal(concord_wire::rpc::WithdrawalQuery {
                            id: id.clone(),
                        }),
                    )
                    .await;
                match w {
                    Ok(Some(w)) => match (&w.status, &w.tx_id) {
                        (WithdrawalStatus::Completed, Some(tx)) if !tx.is_empty() => {
                            t.tx_hash = Some(tx.clone());
                            t.step("sent", format!("exchange sent transaction {tx}"));
                            self.save(t).await?;
                            break;
                        }
                        (
                            WithdrawalStatus::Cancelled
                            | WithdrawalStatus::Rejected
                            | WithdrawalStatus::Failure,
                            _,
                        ) => {
                            return Err(Error::Refused(format!(
                                "exchange {} reports withdrawal {id} as {:?}",
                                t.exchange, w.status
                            )));
                        }
                        _ => {}
                    },
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(transfer = %t.id, error = %e, "withdrawal status not available yet")
                    }
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(Error::Unavailable(format!(
                        "exchange {} has not sent withdrawal {id} within {} s",
                        t.exchange, ctx.chain.follow_secs
                    )));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        // Follow the funds on chain.
        let hash: B256 = t
            .tx_hash
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|_| {
                Error::Protocol(format!(
                    "the exchange's tx id {:?} is not a transaction hash",
                    t.tx_hash
                ))
            })?;
        let status = ctx
            .client
            .wait_for_confirmations(
                hash,
                ctx.chain.confirmations,
                Duration::from_secs(ctx.chain.follow_secs),
            )
            .await
            .map_err(|e| chain_error("following the withdrawal", &e))?;
        match status {
            TxStatus::Included {
                block,
                confirmations,
                success: true,
            } => {
                t.step(
                    "arrived",
                    format!(
                        "{} {} reached {address} in block {block} ({confirmations} confirmation(s))",
                        t.amount, t.coin
                    ),
                );
                self.save(t).await
            }
            TxStatus::Included { success: false, .. } => Err(Error::Refused(format!(
                "the exchange's transaction {hash} was reverted"
            ))),
            _ => Err(Error::Unavailable(format!(
                "the exchange's transaction {hash} is not confirmed within {} s",
                ctx.chain.follow_secs
            ))),
        }
    }
}

impl Engine {
    /// Looks a withdrawal up by its order id (the transfer's id) through the modules' read
    /// keys; if the exchange has it, records it as submitted. Returns whether it did.
    async fn reconcile_withdrawal(
        &self,
        t: &mut TransferRecord,
        members: &[String],
    ) -> Result<bool, Error> {
        let found: Result<Option<Withdrawal>, String> = self
            .ask_any(
                members,
                &t.exchange,
                exchange_query::Query::WithdrawalOrder(concord_wire::rpc::WithdrawalOrderQuery {
                    order_id: t.id.clone(),
                }),
            )
            .await;
        match found {
            Ok(Some(w)) => {
                t.exchange_withdrawal_id = Some(w.id.clone());
                t.step(
                    "submitted",
                    format!(
                        "exchange {} already has withdrawal {} under order {}: reconciled, not requested again",
                        t.exchange, w.id, t.id
                    ),
                );
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(Error::Unavailable(format!(
                "cannot look withdrawal order {} up at exchange {}: {e}",
                t.id, t.exchange
            ))),
        }
    }
}

fn same_tx(tx_id: &str, hash: &B256) -> bool {
    tx_id.parse::<B256>().map(|h| h == *hash).unwrap_or(false)
}

fn chain_error(what: &str, e: &concord_chain::ChainError) -> Error {
    if e.retryable() {
        Error::Unavailable(format!("{what}: {e} (a retry may help)"))
    } else {
        Error::Refused(format!("{what}: {e}"))
    }
}
