//! Transfers between a wallet and an exchange (the patent's FIG. 4; DESIGN flows 3 and 4),
//! as state machines whose every state has a named step that advances the record, written
//! to the store (fenced by the transfer's lease) before the next step acts on it. A step
//! that meets a fault a retry can cure leaves the transfer where it is and is tried again; a
//! transfer fails only when it provably cannot move funds any more.
//!
//! - [`deposit`]: wallet → exchange, one wallet's deposits in nonce order.
//! - [`withdrawal`]: exchange → wallet, never requested twice.
//!
//! Balances are read here too: a wallet's on chain through the coordinator's RPC, an
//! exchange account's through a module's own connector and read key.

mod balances;
mod deposit;
mod multisig;
mod withdrawal;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use concord_wire::authority::{Action, AddressRef, SignedIntent};
use concord_wire::payload::SigningPayload;
use concord_wire::rpc::{ExchangeQuery, exchange_query};
use concord_wire::units::Amount;
use serde::{Deserialize, Serialize};

use crate::config::TransferContext;
use crate::engine::{Engine, lease_deadline};
use crate::records::{
    JobKind, JobRecord, JobStatus, SignMode, TransferKind, TransferRecord, TransferStatus,
    WalletRecord, epoch_ms, epoch_ms_f64, now,
};
use crate::store::leases::Work;
use crate::{Error, failpoint};

/// How long one module may take to answer an exchange question.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two tries of a step that waits or meets a passing fault.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A request to deposit from a wallet to an exchange: a trader's signed intent (wallet,
/// exchange, coin, network, amount, rule). The transfer's id is the intent's id, so the same
/// intent sent again finds the same transfer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// The trader's signed intent; its action is a `deposit`.
    #[schema(schema_with = crate::api::deposit_intent)]
    pub intent: SignedIntent,
    /// Signing mode (default: from a presignature when one is ready).
    #[serde(default)]
    pub mode: SignMode,
}

/// A request to withdraw from an exchange to an address-book destination: a trader's signed
/// intent.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    /// The trader's signed intent; its action is a `withdraw`.
    #[schema(schema_with = crate::api::withdraw_intent)]
    pub intent: SignedIntent,
}

/// Registers an exchange's withdraw-capable API key (an Ed25519 wallet of a signer group).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    /// The Ed25519 wallet whose public key the exchange knows.
    pub wallet: concord_types::WalletId,
    /// The API key string the exchange issued for it (1 to 128 characters).
    #[schema(min_length = 1, max_length = 128)]
    pub api_key: String,
}

fn ecdsa_address(wallet: &WalletRecord) -> Result<concord_chain::Address, Error> {
    if wallet.scheme != concord_types::Scheme::EcdsaSecp256k1.to_string() {
        return Err(Error::BadRequest(format!(
            "wallet {} is {}, and transfers on an EVM chain need an ecdsa-secp256k1 wallet",
            wallet.id, wallet.scheme
        )));
    }
    concord_chain::evm_address(&wallet.public_key)
        .map_err(|e| Error::Internal(format!("wallet {}'s key: {e}", wallet.id)))
}

/// The answer to registering an exchange's withdraw key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisteredCredential {
    /// The exchange connection.
    pub exchange: String,
    /// The Ed25519 wallet that is its withdraw key.
    pub wallet: String,
    /// The API key string the exchange issued for it.
    pub api_key: String,
}

/// What a step did.
enum Step {
    /// Moved on (or made progress): run the next step now.
    Next,
    /// Nothing changed yet (waiting for the chain, the exchange or its turn): try again
    /// after a pause.
    Wait,
    /// The transfer is final.
    Done,
}

/// The fields of a transfer request, from its intent.
struct Asked<'a> {
    wallet_id: String,
    exchange: &'a str,
    coin: &'a str,
    network: &'a str,
    amount: &'a str,
    rule: concord_wire::authority::AgreementRule,
    to: Option<AddressRef>,
}

/// Where a followed transaction stands.
pub(super) enum Depth {
    /// Mined, succeeded, and as deep as the chain settings ask.
    Deep {
        /// Its block.
        block: u64,
        /// Its confirmations.
        confirmations: u64,
    },
    /// Mined, not deep enough yet.
    Shallow,
    /// Mined and reverted.
    Reverted,
    /// Pending, or unknown to the node.
    NotMined,
}

impl Engine {
    /// Waits up to `wait` for transaction `hash` to be mined to the configured depth.
    pub(super) async fn follow_tx(
        &self,
        hash: concord_chain::B256,
        wait: std::time::Duration,
        what: &str,
    ) -> Result<Depth, Error> {
        let ctx = self.transfer_ctx()?.clone();
        let status = match ctx
            .client
            .wait_for_confirmations(hash, ctx.chain.confirmations, wait)
            .await
        {
            Ok(s) => s,
            Err(concord_chain::ChainError::NotConfirmed { last, .. }) => last,
            Err(e) => return Err(deposit::chain_error(what, &e)),
        };
        Ok(match status {
            concord_chain::TxStatus::Included {
                block,
                confirmations,
                success: true,
            } if confirmations >= ctx.chain.confirmations.max(1) => Depth::Deep {
                block,
                confirmations,
            },
            concord_chain::TxStatus::Included { success: false, .. } => Depth::Reverted,
            concord_chain::TxStatus::Included { .. } => Depth::Shallow,
            concord_chain::TxStatus::Pending | concord_chain::TxStatus::Unknown => Depth::NotMined,
        })
    }

    /// The chain and exchanges transfers go over; a coordinator configured without a chain
    /// answers what needs one with a conflict (its configuration, not the request, is what
    /// stands in the way, and asking again will not help).
    pub(crate) fn transfer_ctx(&self) -> Result<&Arc<TransferContext>, Error> {
        self.transfers.as_ref().ok_or_else(|| {
            Error::Conflict(
                "this coordinator has no chain configured ([chain] in its configuration)".into(),
            )
        })
    }

    /// Writes a transfer's state (fenced by its lease) and tells long-polls.
    pub(crate) async fn save(&self, t: &TransferRecord) -> Result<(), Error> {
        self.store.save_transfer(t, &self.instance).await?;
        let _ = self.finished.send(t.id.clone());
        Ok(())
    }

    /// What a transfer request's intent asks for (the modules check the same, and decide).
    async fn asked<'a>(
        &self,
        kind: TransferKind,
        intent: &'a SignedIntent,
    ) -> Result<Asked<'a>, Error> {
        match (&intent.intent.action, kind) {
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
                    .any_wallet(&wallet.to_string())
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("wallet {wallet}")))?;
                // A multisig wallet has no key of its own (its definition is its key); a
                // threshold wallet spending on the UTXO chain is checked with its rail.
                if !w.group_id.starts_with(crate::engine::MULTISIG_GROUP)
                    && *network == self.transfer_ctx()?.chain.network
                {
                    ecdsa_address(&w)?;
                }
                Ok(Asked {
                    wallet_id: w.id,
                    exchange,
                    coin,
                    network,
                    amount,
                    rule: *rule,
                    to: None,
                })
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
            ) => Ok(Asked {
                wallet_id: match to {
                    AddressRef::Wallet(w) => w.to_string(),
                    AddressRef::Label(_) => String::new(),
                },
                exchange,
                coin,
                network,
                amount,
                rule: *rule,
                to: Some(to.clone()),
            }),
            (other, _) => Err(Error::BadRequest(format!(
                "the intent asks for a {}, not a {kind}",
                other.kind()
            ))),
        }
    }

    /// Checks a transfer request's form, records it under the intent's id (the same intent
    /// again finds the same transfer; concurrent requests create it once) and starts it.
    /// Whether the requester may ask is the modules' to decide, each against its own policy.
    pub(crate) async fn accept(
        &self,
        kind: TransferKind,
        intent: SignedIntent,
        mode: SignMode,
    ) -> Result<TransferRecord, Error> {
        let ctx = self.transfer_ctx()?;
        // The intent must ask for this kind of transfer before anything else (a deposit's
        // intent sent as a withdrawal is refused, never answered with the deposit).
        let a = self.asked(kind, &intent).await?;
        if let Some(existing) = self.existing_transfer(&intent).await? {
            return Ok(existing);
        }
        let endpoint = ctx.exchange(a.exchange)?;
        if kind == TransferKind::Withdrawal
            && !matches!(endpoint.kind.as_str(), "binance" | "coinbase" | "kraken")
        {
            return Err(Error::BadRequest(format!(
                "withdrawals from exchange {} ({}) are not supported",
                a.exchange, endpoint.kind
            )));
        }
        if kind == TransferKind::Withdrawal && self.store.credential(a.exchange).await?.is_none() {
            return Err(Error::BadRequest(format!(
                "exchange {} has no withdraw key registered (POST /v1/exchanges/{}/credential)",
                a.exchange, a.exchange
            )));
        }
        let utxo = match kind {
            TransferKind::Deposit => self.rail(&a.wallet_id, a.network).await?.is_utxo(),
            TransferKind::Withdrawal => ctx.utxo_for(a.network).is_some(),
        };
        if !utxo && a.network != ctx.chain.network {
            return Err(Error::BadRequest(format!(
                "network {} is not this coordinator's chain network ({})",
                a.network, ctx.chain.network
            )));
        }
        let decimals = match ctx.utxo_for(a.network) {
            Some(u) if utxo => {
                if a.coin != u.settings.coin {
                    return Err(Error::BadRequest(format!(
                        "coin {} is not network {}'s coin ({})",
                        a.coin, a.network, u.settings.coin
                    )));
                }
                8
            }
            _ => ctx.asset_of(a.coin)?.1,
        };
        let amount = Amount::parse(a.amount, decimals)
            .map_err(|e| Error::BadRequest(format!("amount: {e}")))?;
        let signers = self.signers_of(&intent).await?;
        let mut t = new_record(kind, &intent, &a, amount, mode);
        t.requester = signers.first().cloned();
        t.note(format!(
            "requested, intent signed by {}",
            signers.join(", ")
        ));
        if !self
            .store
            .insert_transfer(&t, &self.instance, lease_deadline())
            .await?
        {
            // A concurrent request with the same intent created it first.
            return self
                .existing_transfer(&intent)
                .await?
                .ok_or_else(|| Error::Internal("a transfer vanished".into()));
        }
        self.spawn_transfer(t.clone(), false);
        Ok(t)
    }

    async fn existing_transfer(
        &self,
        intent: &SignedIntent,
    ) -> Result<Option<TransferRecord>, Error> {
        match self.store.transfer(&intent.intent.id).await? {
            Some(t) if t.intent.as_ref() == Some(intent) => Ok(Some(t)),
            Some(_) => Err(Error::Conflict(format!(
                "intent {} was already used for another request",
                intent.intent.id
            ))),
            None => Ok(None),
        }
    }

    /// Registers an exchange's withdraw-capable key: the wallet the policy in force names.
    pub(crate) async fn register_credential(
        &self,
        exchange: &str,
        req: CredentialRequest,
    ) -> Result<(), Error> {
        let kind = self.transfer_ctx()?.exchange(exchange)?.kind.clone();
        let held = self.held_def(&req.wallet.to_string()).await?;
        let wallet = match &held {
            // Kraken's HMAC secret: one module holds it, the policy's definition names it.
            Some(def) => {
                if def.exchange != exchange || def.api_key != req.api_key {
                    return Err(Error::BadRequest(format!(
                        "held credential {} is exchange {}'s API key {:?}, not {exchange}'s {:?}",
                        req.wallet, def.exchange, def.api_key, req.api_key
                    )));
                }
                crate::engine::held_wallet(def)
            }
            None if kind == "kraken" => {
                return Err(Error::BadRequest(format!(
                    "exchange {exchange} is Kraken, whose withdraw key is an HMAC secret no group can hold in shares: register the policy's held credential for it"
                )));
            }
            None => self
                .store
                .wallet(&req.wallet.to_string())
                .await?
                .ok_or_else(|| Error::NotFound(format!("wallet {}", req.wallet)))?,
        };
        let ed25519 = wallet.scheme == concord_types::Scheme::Ed25519.as_str();
        let p256 = wallet.scheme == concord_types::Scheme::EcdsaP256.as_str();
        if held.is_none() && !(ed25519 || (p256 && kind == "coinbase")) {
            return Err(Error::BadRequest(format!(
                "wallet {} is {}; an exchange withdraw key must be an ed25519 wallet (or, for Coinbase's ES256 keys, an ecdsa-p256 one)",
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
            other => {
                return Err(Error::BadRequest(format!(
                    "policy v{} names {} as exchange {exchange}'s withdraw key, not wallet {}",
                    policy.policy.version,
                    other.map_or("no wallet".to_owned(), |r| format!(
                        "wallet {} ({:?})",
                        r.wallet, r.label
                    )),
                    req.wallet
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

    /// Runs (or resumes) a transfer in the background, under this coordinator's lease.
    pub(crate) fn spawn_transfer(&self, t: TransferRecord, resumed: bool) {
        if !self.start_running(&t.id) {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let id = t.id.clone();
            let mut t = t;
            if resumed {
                t.note(format!(
                    "resumed by a coordinator ({}) after a restart or a failover",
                    engine.instance
                ));
            }
            let outcome = engine
                .leased(Work::Transfer, &id, engine.drive(&mut t))
                .await;
            match outcome {
                Ok(()) => {}
                Err(Error::LeaseLost(e)) => {
                    tracing::info!(transfer = %id, %e, "transfer left to another coordinator")
                }
                Err(e) => {
                    tracing::warn!(transfer = %id, error = %e, "transfer failed");
                    t.error = Some(e.to_string());
                    t.step(TransferStatus::Failed, e.to_string());
                    let _ = engine.save(&t).await;
                }
            }
            engine.stop_running(&id);
        });
    }

    /// Runs a transfer's steps until it is final; retries a step that meets a fault a retry
    /// can cure, with a growing pause, without moving the transfer.
    async fn drive(&self, t: &mut TransferRecord) -> Result<(), Error> {
        let mut pause = Duration::from_millis(100);
        loop {
            let step = match t.kind {
                TransferKind::Deposit => self.deposit_step(t).await,
                TransferKind::Withdrawal => self.withdrawal_step(t).await,
            };
            match step {
                Ok(Step::Done) => return Ok(()),
                Ok(Step::Next) => pause = Duration::from_millis(100),
                Ok(Step::Wait) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
                Err(e) if e.retryable() => {
                    let why = format!("waiting: {e} (retrying)");
                    if t.error.as_deref() != Some(why.as_str()) {
                        tracing::info!(transfer = %t.id, status = %t.status, error = %e, "a step will be retried");
                        t.error = Some(why);
                        self.save(t).await?;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks every member a question; answers in member order.
    async fn ask_members(
        &self,
        members: &[String],
        exchange: &str,
        query: exchange_query::Query,
    ) -> Vec<(String, Heard)> {
        let asks = members.iter().map(|m| {
            let q = ExchangeQuery {
                request_id: String::new(),
                exchange: exchange.to_owned(),
                query: Some(query.clone()),
            };
            async move {
                let r = match self.hub.query(m, q, QUERY_TIMEOUT).await {
                    Ok(a) if a.error.is_empty() => Heard::Answer(a.json),
                    Ok(a) => Heard::Error(a.error),
                    Err(e) => Heard::Unreached(e),
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
    ) -> Result<T, Error> {
        Ok(self.ask_any_named(members, exchange, query).await?.1)
    }

    /// [`Engine::ask_any`], naming the module that answered.
    async fn ask_any_named<T: for<'de> Deserialize<'de>>(
        &self,
        members: &[String],
        exchange: &str,
        query: exchange_query::Query,
    ) -> Result<(String, T), Error> {
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
                        .map(|answer| (m.clone(), answer))
                        .map_err(|e| Error::Protocol {
                            reason: format!("module {m} sent an unreadable answer: {e}"),
                            blamed: vec![m.clone()],
                        });
                }
                Ok(a) => errors.push(format!("{m}: {}", a.error)),
                Err(e) => errors.push(e),
            }
        }
        Err(Error::Unavailable(if errors.is_empty() {
            format!("no module is connected to ask exchange {exchange}")
        } else {
            format!(
                "exchange {exchange} could not be asked: {}",
                errors.join("; ")
            )
        }))
    }

    /// The group's signature over a transfer's payload ([`Engine::sign_for`]). When the
    /// payload provably will not be signed, the modules are first told to release what they
    /// bound to it (a nonce, an exchange order), naming `what` failed.
    async fn signature_for(
        &self,
        t: &mut TransferRecord,
        wallet: &WalletRecord,
        payload: &SigningPayload,
        what: &str,
    ) -> Result<Vec<u8>, Error> {
        let result = self.signed_result(t, wallet, payload, what).await?;
        hex::decode(result["signature"].as_str().unwrap_or_default())
            .map_err(|_| Error::protocol("the signature is not hex"))
    }

    /// The finished sign job's result ([`Engine::sign_for`]), after releasing what the
    /// modules bound when the payload provably will not be signed.
    async fn signed_result(
        &self,
        t: &mut TransferRecord,
        wallet: &WalletRecord,
        payload: &SigningPayload,
        what: &str,
    ) -> Result<serde_json::Value, Error> {
        match self.sign_for(t, wallet, payload).await {
            Ok(r) => Ok(r),
            Err(e) if !e.retryable() => {
                self.release_sign_job(t, &format!("the {what} failed before it was signed"))
                    .await?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Signs a transfer's payload: the transfer's sign job (made once, named in the record
    /// before it exists), run here under the transfer's lease. A job that ended without a
    /// signature for a reason a retry can cure is replaced by a new one for the same bytes.
    async fn sign_for(
        &self,
        t: &mut TransferRecord,
        wallet: &WalletRecord,
        payload: &SigningPayload,
    ) -> Result<serde_json::Value, Error> {
        let mut job = self.sign_job(t, wallet, payload).await?;
        if job.status == JobStatus::Failed {
            // Ended before a restart without a signature: ask again, for the same bytes.
            t.sign_job_id = None;
            job = self.sign_job(t, wallet, payload).await?;
        }
        let outcome = if job.status == JobStatus::Done {
            Ok(())
        } else {
            self.run_job(&job).await
        };
        self.end_job(&job, outcome.clone()).await;
        t.mark("signature");
        let job = self
            .store
            .job(&job.id)
            .await?
            .ok_or_else(|| Error::Internal(format!("sign job {} vanished", job.id)))?;
        let result: Option<serde_json::Value> = match job.status {
            JobStatus::Done => Some(
                serde_json::from_slice(job.result.as_deref().unwrap_or_default())
                    .map_err(|e| Error::Internal(format!("sign job result: {e}")))?,
            ),
            _ => None,
        };
        // The dissenters: in a signed job's result, else in its record.
        match result.as_ref().and_then(|r| r["dissenters"].as_object()) {
            Some(dissenters) => {
                for (m, why) in dissenters {
                    t.dissenters
                        .insert(m.clone(), why.as_str().unwrap_or_default().to_owned());
                }
            }
            None => {
                for e in self.store.events(&job.id).await? {
                    if e.kind == crate::records::EventKind::Dissent
                        && let Some(m) = e.module_id
                    {
                        t.dissenters.insert(m, e.detail.clone().unwrap_or_default());
                    }
                }
            }
        }
        match (result, outcome) {
            (Some(result), _) => {
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
            (None, Err(e)) => {
                if e.retryable() {
                    // A new job next time (its approvals are asked again; the same bytes).
                    t.sign_job_id = None;
                }
                Err(e)
            }
            (None, Ok(())) => Err(Error::refused(
                job.error.unwrap_or_else(|| "the sign job failed".into()),
            )),
        }
    }

    /// The transfer's current sign job, created (and named in the record first) if needed.
    async fn sign_job(
        &self,
        t: &mut TransferRecord,
        wallet: &WalletRecord,
        payload: &SigningPayload,
    ) -> Result<JobRecord, Error> {
        let named = match &t.sign_job_id {
            Some(id) => match self.store.job(id).await? {
                Some(job) => return Ok(job),
                // Named before it was made (a restart between the two, or named with the
                // payload): made now under that id.
                None => Some(id.clone()),
            },
            None => None,
        };
        let job = JobRecord {
            wallet_id: Some(wallet.id.clone()),
            scheme: Some(wallet.scheme.clone()),
            rule: Some(t.rule),
            mode: Some(t.mode),
            payload: Some(payload.to_canonical()),
            intent: t.intent.as_ref().map(SignedIntent::to_json),
            digest: Some(payload.digest().to_vec()),
            transfer_id: Some(t.id.clone()),
            ..JobRecord::pending(
                named
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                JobKind::Sign,
                &wallet.group_id,
            )
        };
        // The transfer names its job before the job exists: a restart between the two finds
        // the id and creates nothing twice.
        if named.is_none() {
            t.sign_job_id = Some(job.id.clone());
            t.step(TransferStatus::Signing, format!("sign job {}", job.id));
            self.save(t).await?;
        }
        failpoint!("transfer::sign_job_named");
        self.store
            .insert_job(&job, &self.instance, lease_deadline())
            .await?;
        Ok(job)
    }

    /// Tells the modules that a transfer's sign job will never be signed (they free what
    /// its approvals bound).
    async fn release_sign_job(&self, t: &TransferRecord, why: &str) -> Result<(), Error> {
        let Some(job_id) = &t.sign_job_id else {
            return Ok(());
        };
        let Some(job) = self.store.job(job_id).await? else {
            return Ok(());
        };
        let group = self.group_of(&job.group_id).await?;
        self.release(job_id, &group.members, why).await;
        Ok(())
    }

    /// The wallet and its signer group's members.
    async fn wallet_and_members(&self, id: &str) -> Result<(WalletRecord, Vec<String>), Error> {
        let wallet = self
            .any_wallet(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {id}")))?;
        let group = self.group_of(&wallet.group_id).await?;
        Ok((wallet, group.members))
    }

    /// The waiting for `what` has gone on past the follow window: say so in the record
    /// (once), and keep following.
    async fn overdue(&self, t: &mut TransferRecord, what: &str) -> Result<(), Error> {
        let follow_ms = self
            .transfers
            .as_ref()
            .map_or(300_000.0, |c| c.chain.follow_secs as f64 * 1000.0);
        if epoch_ms_f64() - t.created_ms > follow_ms && t.error.is_none() {
            t.error = Some(format!(
                "still pending: {what}; it is followed until it is final, never reported failed while it can still happen"
            ));
            self.save(t).await?;
        }
        Ok(())
    }
}

fn new_record(
    kind: TransferKind,
    intent: &SignedIntent,
    a: &Asked<'_>,
    amount: Amount,
    mode: SignMode,
) -> TransferRecord {
    TransferRecord {
        id: intent.intent.id.clone(),
        kind,
        status: TransferStatus::Requested,
        wallet_id: a.wallet_id.clone(),
        exchange: a.exchange.to_owned(),
        coin: a.coin.to_owned(),
        network: a.network.to_owned(),
        amount,
        rule: a.rule,
        mode: if kind == TransferKind::Withdrawal {
            SignMode::Interactive
        } else {
            mode
        },
        destination: None,
        to: a.to.clone(),
        requester: None,
        intent: Some(intent.clone()),
        resolutions: Vec::new(),
        nonce: None,
        payload: None,
        sign_job_id: None,
        dissenters: BTreeMap::new(),
        approvers: Vec::new(),
        policy: None,
        raw_tx: None,
        signed_request: None,
        tx_hash: None,
        exchange_withdrawal_id: None,
        timings_ms: BTreeMap::new(),
        log: Vec::new(),
        error: None,
        created_at: now(),
        created_ms: epoch_ms_f64(),
    }
}

/// Milliseconds since the Unix epoch (for request timestamps).
pub(crate) fn now_ms() -> u64 {
    epoch_ms()
}

/// What one module said to a question about its exchange.
enum Heard {
    /// Its connector's answer (JSON).
    Answer(Vec<u8>),
    /// Its connector's error (the exchange, or the module's own check, said no).
    Error(String),
    /// Nothing: the module is not connected, went away or did not answer in time. It may
    /// answer once it is back (after a coordinator restart, modules reconnect).
    Unreached(String),
}
