//! A deposit, wallet → exchange, as named steps:
//!
//! - `requested` → **queue**: deposits of one wallet go one at a time until their
//!   transaction is accepted by the node, oldest first, so nonces never leave gaps;
//! - `queued` → **take the turn** when the earlier ones have reached the chain;
//! - `resolving` → **resolve and propose**: every module reports the exchange's deposit
//!   address through its own connector; the wallet's balance is checked; the nonce (the
//!   chain's next, or this system's record if ahead) and fees are fixed, and the exact
//!   payload is written to the record — re-proposed unchanged until it is signed;
//! - `signing` → **sign**: the sign job (approvals, certificate, threshold signature); a
//!   refusal releases the modules' approvals (their binding of the nonce) and fails the
//!   deposit, which moved nothing;
//! - `signed` → **broadcast** the stored transaction (idempotent by hash); only once the node
//!   accepted it does its nonce count as used and the next deposit take its turn;
//! - `broadcast` → **follow the chain** until mined to the configured depth — re-broadcast
//!   the same bytes while it is pending, never failed while it can still be mined, failed
//!   only once another transaction used its nonce;
//! - `confirmed` → **follow the exchange** until it credits the deposit.

use std::time::Duration;

use concord_chain::{Address, EvmTransfer, FeeCaps, SignedTransaction, TxStatus, U256};
use concord_exchange::{Deposit, DepositAddress};
use concord_wire::payload::{Destination, SigningPayload};
use concord_wire::rpc::exchange_query;

use super::multisig::Rail;
use super::{Depth, Heard, Step, ecdsa_address};
use crate::engine::Engine;
use crate::records::{EventKind, Resolution, TransferRecord, TransferStatus, epoch_ms_f64};
use crate::{Error, failpoint};

/// How long a pending transaction waits between two re-broadcasts of its bytes.
const REBROADCAST: Duration = Duration::from_secs(3);
/// How long a module's approval never signed under binds its nonce (the modules'
/// `APPROVAL_TTL_SECS`, plus a minute for clocks), ms.
const APPROVAL_TTL_MS: f64 = 660_000.0;

impl Engine {
    /// Runs the step of the deposit's current state.
    pub(super) async fn deposit_step(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        match t.status {
            TransferStatus::Requested => {
                failpoint!("deposit::requested");
                t.step(
                    TransferStatus::Queued,
                    "in the wallet's queue: its deposits reach the chain in nonce order",
                );
                // Written with the turn when it is the queue's head already, else now.
                let step = self.deposit_turn(t).await?;
                if t.status == TransferStatus::Queued {
                    self.save(t).await?;
                }
                Ok(step)
            }
            TransferStatus::Queued => self.deposit_turn(t).await,
            TransferStatus::Resolving => match self.rail(&t.wallet_id, &t.network).await? {
                _ if t.payload.is_some() => self.deposit_propose(t).await,
                Rail::Evm => self.deposit_propose(t).await,
                Rail::Safe(def) => {
                    failpoint!("deposit::resolving");
                    self.safe_propose(t, &def).await
                }
                Rail::Utxo(def) => {
                    failpoint!("deposit::resolving");
                    self.utxo_propose(t, &def).await
                }
                Rail::UtxoThreshold(script) => {
                    failpoint!("deposit::resolving");
                    self.utxo_threshold_propose(t, &script).await
                }
            },
            TransferStatus::Signing => match self.rail(&t.wallet_id, &t.network).await? {
                Rail::Evm => self.deposit_sign(t).await,
                Rail::Safe(def) => {
                    let (wallet, _) = self.wallet_and_members(&t.wallet_id).await?;
                    self.safe_sign(t, &wallet, &def, &Self::stored_payload(t)?)
                        .await
                }
                Rail::Utxo(def) => {
                    let (wallet, _) = self.wallet_and_members(&t.wallet_id).await?;
                    self.utxo_sign(t, &wallet, &def, &Self::stored_payload(t)?)
                        .await
                }
                Rail::UtxoThreshold(script) => {
                    let (wallet, _) = self.wallet_and_members(&t.wallet_id).await?;
                    let payload = Self::stored_payload(t)?;
                    self.utxo_threshold_sign(t, &wallet, &script, &payload)
                        .await
                }
            },
            TransferStatus::Signed if is_utxo(t) => self.utxo_broadcast(t).await,
            TransferStatus::Signed => self.deposit_broadcast(t).await,
            TransferStatus::Broadcast if is_utxo(t) => self.utxo_follow_chain(t).await,
            TransferStatus::Broadcast => self.deposit_follow_chain(t).await,
            TransferStatus::Confirmed => self.deposit_follow_exchange(t).await,
            TransferStatus::Credited | TransferStatus::Failed => Ok(Step::Done),
            other => Err(Error::Internal(format!("a deposit cannot be {other}"))),
        }
    }

    /// Takes the turn when every earlier deposit of the wallet has reached the chain.
    async fn deposit_turn(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("deposit::queued");
        let head = match self.rail(&t.wallet_id, &t.network).await? {
            Rail::Safe(_) => {
                self.store
                    .deposit_queue_head_until_mined(&t.wallet_id)
                    .await?
            }
            _ => self.store.deposit_queue_head(&t.wallet_id).await?,
        };
        match head {
            Some(head) if head == t.id => {
                t.step(
                    TransferStatus::Resolving,
                    "its turn: asking every module for the deposit address",
                );
                self.save(t).await?;
                Ok(Step::Next)
            }
            _ => Ok(Step::Wait),
        }
    }

    /// Every module resolves the deposit address through its own connector; the balance is
    /// checked; nonce, fees and the exact payload are fixed and written down.
    async fn deposit_propose(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("deposit::resolving");
        if t.payload.is_some() {
            t.step(
                TransferStatus::Signing,
                "proposing the payload fixed before",
            );
            self.save(t).await?;
            return Ok(Step::Next);
        }
        let ctx = self.transfer_ctx()?.clone();
        let wallet = self
            .store
            .wallet(&t.wallet_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {}", t.wallet_id)))?;
        let group = self.group_of(&wallet.group_id).await?;
        let members = &group.members;
        let sender = ecdsa_address(&wallet)?;
        let (asset, decimals) = ctx.asset_of(&t.coin)?;
        let amount = t.amount.to_base(decimals).map_err(Error::BadRequest)?;
        // The modules' answers and the chain reads at once (none depends on another).
        let (recipient, fees, eth, pending) = tokio::join!(
            self.resolve_deposit_address(t, members, usize::from(group.threshold), |a| a
                .parse::<Address>()
                .ok()
                .map(|a| a.to_string())),
            ctx.client.suggest_fees(),
            ctx.client.balance(sender),
            ctx.client.pending_nonce(sender),
        );
        let recipient: Address = recipient?
            .parse()
            .map_err(|_| Error::Internal("a resolved address".into()))?;
        let fees = fees.map_err(|e| chain_error("reading the fees", &e))?;
        let eth = eth.map_err(|e| chain_error("reading the balance", &e))?;
        let pending = pending.map_err(|e| chain_error("reading the nonce", &e))?;
        let fees = FeeCaps {
            max_fee_per_gas: fees
                .max_fee_per_gas
                .min(u128::from(ctx.chain.max_fee_per_gas)),
            max_priority_fee_per_gas: fees
                .max_priority_fee_per_gas
                .min(u128::from(ctx.chain.max_priority_fee_per_gas)),
        };
        let gas_limit = EvmTransfer::default_gas_limit(&asset);
        self.check_funds(sender, eth, &asset, amount, gas_limit, &fees)
            .await?;
        let recorded = self
            .store
            .next_nonce(&wallet.id, ctx.chain.chain_id)
            .await?;
        let nonce = concord_chain::next_nonce(pending, recorded);
        self.check_released(&wallet.id, nonce).await?;
        let payload = SigningPayload::EvmTransfer {
            transfer: t.id.clone(),
            wallet: wallet
                .id
                .parse()
                .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))?,
            chain_id: ctx.chain.chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            asset,
            amount,
            recipient,
            destination: deposit_destination(t),
        };
        self.propose(
            t,
            &payload,
            recipient.to_string(),
            Some(nonce),
            format!("proposing nonce {nonce} to {recipient}"),
        )
        .await
    }

    /// Writes the exact payload down with its destination (and nonce), and names the sign
    /// job in the same write (the job is made under this id next): re-proposed unchanged
    /// until it is signed.
    pub(super) async fn propose(
        &self,
        t: &mut TransferRecord,
        payload: &SigningPayload,
        destination: String,
        nonce: Option<u64>,
        note: String,
    ) -> Result<Step, Error> {
        t.destination = Some(destination);
        t.nonce = nonce;
        t.payload = Some(hex::encode(payload.to_canonical()));
        t.sign_job_id = Some(uuid::Uuid::new_v4().to_string());
        t.step(TransferStatus::Signing, note);
        self.save(t).await?;
        Ok(Step::Next)
    }

    /// The deposit address at least `needed` modules reported (each through its own
    /// connector), as `normalize` writes it (`None`: not an address of the chain).
    pub(super) async fn resolve_deposit_address(
        &self,
        t: &mut TransferRecord,
        members: &[String],
        needed: usize,
        normalize: impl Fn(&str) -> Option<String>,
    ) -> Result<String, Error> {
        let answers = self
            .ask_members(
                members,
                &t.exchange,
                exchange_query::Query::DepositAddress(concord_wire::rpc::DepositAddressQuery {
                    coin: t.coin.clone(),
                    network: t.network.clone(),
                }),
            )
            .await;
        let unreached = answers
            .iter()
            .filter(|(_, h)| matches!(h, Heard::Unreached(_)))
            .count();
        t.resolutions = answers
            .into_iter()
            .map(|(module, heard)| {
                let r = match heard {
                    Heard::Answer(json) => serde_json::from_slice::<DepositAddress>(&json)
                        .map_err(|e| format!("unreadable answer: {e}")),
                    Heard::Error(e) | Heard::Unreached(e) => Err(e),
                };
                match r {
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
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for r in &t.resolutions {
            if let Some(a) = r.address.as_deref().and_then(&normalize) {
                *counts.entry(a).or_default() += 1;
            }
        }
        match counts.iter().max_by_key(|(_, n)| **n) {
            Some((a, n)) if *n >= needed => Ok(a.clone()),
            _ => {
                let seen: Vec<String> = t
                    .resolutions
                    .iter()
                    .map(|r| match (&r.address, &r.error) {
                        (Some(a), _) => format!("{}: {a}", r.module),
                        (None, Some(e)) => format!("{}: {e}", r.module),
                        _ => r.module.clone(),
                    })
                    .collect();
                let reason = format!(
                    "fewer than {needed} modules report the same deposit address ({})",
                    seen.join("; ")
                );
                // A retry may help while no address conflicts and the modules not heard
                // from could still make up the count (they reconnect after a restart),
                // until the trader's intent expires.
                let best = counts.values().copied().max().unwrap_or(0);
                let expired = t
                    .intent
                    .as_ref()
                    .is_none_or(|i| i.intent.expires_at <= concord_wire::authority::unix_now());
                if !expired && counts.len() <= 1 && (best == 0 || best + unreached >= needed) {
                    Err(Error::Unavailable(reason))
                } else {
                    Err(Error::refused(reason))
                }
            }
        }
    }

    /// Refuses a deposit the wallet cannot pay (the amount and the most gas it may burn):
    /// the node would refuse it, after its nonce was bound. `eth` is the sender's balance,
    /// read with the other chain reads.
    async fn check_funds(
        &self,
        sender: Address,
        eth: U256,
        asset: &concord_chain::Asset,
        amount: U256,
        gas_limit: u64,
        fees: &FeeCaps,
    ) -> Result<(), Error> {
        let client = &self.transfer_ctx()?.client;
        let read = |e: concord_chain::ChainError| chain_error("reading the balance", &e);
        let gas = U256::from(gas_limit) * U256::from(fees.max_fee_per_gas);
        let (need_eth, token) = match asset {
            concord_chain::Asset::Native => (amount.saturating_add(gas), None),
            concord_chain::Asset::Erc20 { token } => (gas, Some(*token)),
        };
        if eth < need_eth {
            return Err(Error::refused(format!(
                "wallet {sender} holds {eth} wei; the deposit needs {need_eth} wei (amount and the most gas it may cost)"
            )));
        }
        if let Some(token) = token {
            let held = client.token_balance(token, sender).await.map_err(read)?;
            if held < amount {
                return Err(Error::refused(format!(
                    "wallet {sender} holds {held} of token {token}; the deposit sends {amount}"
                )));
            }
        }
        Ok(())
    }

    pub(super) fn stored_payload(t: &TransferRecord) -> Result<SigningPayload, Error> {
        let raw = hex::decode(t.payload.as_deref().unwrap_or_default())
            .map_err(|_| Error::Internal("stored payload is not hex".into()))?;
        SigningPayload::from_canonical(&raw).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Proposal, approvals, certificate, threshold signature; the signed transaction kept.
    async fn deposit_sign(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("deposit::signing");
        let (wallet, _) = self.wallet_and_members(&t.wallet_id).await?;
        let sender = ecdsa_address(&wallet)?;
        let payload = Self::stored_payload(t)?;
        // Refused: nothing was signed, and the modules free the nonce they bound to it.
        let signature = self.signature_for(t, &wallet, &payload, "deposit").await?;
        let tx = payload
            .evm_transfer()
            .ok_or_else(|| Error::Internal("not an EVM payload".into()))?;
        let signed = tx
            .attach(&signature, sender)
            .map_err(|e| Error::protocol(format!("the signed transaction: {e}")))?;
        t.raw_tx = Some(hex::encode(&signed.raw));
        t.tx_hash = Some(signed.hash.to_string());
        t.error = None;
        t.step(
            TransferStatus::Signed,
            format!("transaction {} from {sender} verified", signed.hash),
        );
        self.save(t).await?;
        Ok(Step::Next)
    }

    fn stored_tx(t: &TransferRecord) -> Result<SignedTransaction, Error> {
        let raw = hex::decode(t.raw_tx.as_deref().unwrap_or_default())
            .map_err(|_| Error::Internal("stored raw transaction".into()))?;
        SignedTransaction::decode(&raw)
            .map_err(|e| Error::Internal(format!("stored raw transaction: {e}")))
    }

    /// A nonce an earlier deposit of the wallet failed at is proposed again only once every
    /// module that approved that deposit answered its release — a release lost on the way
    /// (a module away, or another coordinator's proposal overtaking it) would otherwise get
    /// the new deposit refused. Unanswered releases are sent again; a module that signed
    /// under its approval keeps the nonce bound for good, and the wallet's deposits then wait
    /// (said in the record) rather than fail one after another. Approvals never signed under
    /// lapse after [`APPROVAL_TTL_MS`]; past that, nothing is waited for.
    pub(super) async fn check_released(&self, wallet_id: &str, nonce: u64) -> Result<(), Error> {
        for p in self.store.failed_deposits(wallet_id, 10).await? {
            let (Some(job), Some(at)) = (&p.sign_job_id, p.nonce) else {
                continue;
            };
            let failed_at = p.created_ms + p.timings_ms.get("failed").copied().unwrap_or(0.0);
            if at != nonce || epoch_ms_f64() - failed_at > APPROVAL_TTL_MS {
                continue;
            }
            let events = self.store.events(job).await?;
            let approvers: std::collections::BTreeSet<&str> = events
                .iter()
                .filter(|e| e.kind == EventKind::Approval)
                .filter_map(|e| e.module_id.as_deref())
                .collect();
            let answer = |m: &str| {
                events
                    .iter()
                    .rev()
                    .find(|e| e.kind == EventKind::Release && e.module_id.as_deref() == Some(m))
                    .and_then(|e| e.detail.clone())
            };
            let mut missing = Vec::new();
            for m in approvers {
                match answer(m) {
                    Some(d) if d.starts_with("released") => {}
                    Some(d) => {
                        return Err(Error::Unavailable(format!(
                            "nonce {nonce} is still bound at module {m} to failed deposit {} ({d}); this wallet's deposits wait until an operator releases it",
                            p.id
                        )));
                    }
                    None => missing.push(m.to_owned()),
                }
            }
            if !missing.is_empty() {
                self.release(
                    job,
                    &missing,
                    "a deposit failed at this nonce; it is needed again",
                )
                .await;
                return Err(Error::Unavailable(format!(
                    "waiting for {} to release nonce {nonce}, bound to failed deposit {}",
                    missing.join(", "),
                    p.id
                )));
            }
        }
        Ok(())
    }

    /// Sends the stored transaction; its nonce counts as used once the node accepts it.
    async fn deposit_broadcast(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("deposit::signed");
        let ctx = self.transfer_ctx()?.clone();
        let signed = Self::stored_tx(t)?;
        let safe = matches!(
            Self::stored_payload(t)?,
            SigningPayload::SafeTransfer { .. }
        );
        match ctx.client.broadcast(&signed).await {
            Ok(_) => {}
            Err(concord_chain::ChainError::NonceTooLow { .. }) => {
                // Our own transaction may be the one that used it (a broadcast before a
                // restart); if not, another used the nonce and this one can never be mined.
                // A node that cannot say is asked again, never taken for a "no".
                match ctx.client.status(signed.hash).await {
                    Ok(TxStatus::Included { .. } | TxStatus::Pending) => {}
                    Ok(TxStatus::Unknown) if safe => return self.safe_resubmit(t).await,
                    Ok(TxStatus::Unknown) => {
                        return Err(Error::refused(format!(
                            "nonce {} of the wallet was used by another transaction: transaction {} can never be mined",
                            t.nonce.unwrap_or_default(),
                            signed.hash
                        )));
                    }
                    Err(e) => return Err(chain_error("looking the transaction up", &e)),
                }
            }
            Err(e) if e.retryable() => return Err(chain_error("broadcasting", &e)),
            Err(e) => {
                // Signed and perhaps valid later (funded, fees lower): never failed while it
                // can still be mined. It waits, and holds its wallet's queue.
                let why = format!("the node does not take the signed transaction yet: {e}");
                if t.error.as_deref() != Some(why.as_str()) {
                    t.error = Some(why);
                    self.save(t).await?;
                }
                return Ok(Step::Wait);
            }
        }
        failpoint!("deposit::broadcast_unsaved");
        if safe {
            // The gas account's nonce (the Safe's own advances on chain when executed).
            let nonce = signed
                .nonce()
                .map_err(|e| Error::Internal(format!("stored transaction: {e}")))?;
            self.store
                .use_account_nonce(&signed.sender.to_string(), ctx.chain.chain_id, nonce)
                .await?;
        } else {
            self.store
                .use_nonce(
                    &t.wallet_id,
                    ctx.chain.chain_id,
                    t.nonce.unwrap_or_default(),
                )
                .await?;
        }
        t.error = None;
        t.step(
            TransferStatus::Broadcast,
            format!("transaction {} accepted by the node", signed.hash),
        );
        self.save(t).await?;
        Ok(Step::Next)
    }

    /// Follows the transaction until mined to depth; pending is never failed.
    async fn deposit_follow_chain(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("deposit::broadcast");
        let signed = Self::stored_tx(t)?;
        match self
            .follow_tx(signed.hash, REBROADCAST, "following the transaction")
            .await?
        {
            Depth::Deep {
                block,
                confirmations,
            } => {
                t.error = None;
                t.step(
                    TransferStatus::Confirmed,
                    format!("in block {block} with {confirmations} confirmation(s)"),
                );
                self.save(t).await?;
                Ok(Step::Next)
            }
            Depth::Reverted => {
                // A Safe's transfer may have been executed by another submitter first.
                if let Some(step) = self.safe_executed_elsewhere(t).await? {
                    return Ok(step);
                }
                Err(Error::refused(format!(
                    "transaction {} was reverted by the chain",
                    signed.hash
                )))
            }
            Depth::Shallow => Ok(Step::Wait),
            Depth::NotMined => self.keep_pending(t, &signed).await,
        }
    }

    /// A transaction not mined yet: provably dropped if another used its nonce; otherwise
    /// its same bytes are sent again (a node that lost it takes it back).
    async fn keep_pending(
        &self,
        t: &mut TransferRecord,
        signed: &SignedTransaction,
    ) -> Result<Step, Error> {
        let ctx = self.transfer_ctx()?.clone();
        // The sender and nonce of the transaction itself (a Safe's is its gas account's).
        let sender = signed.sender;
        let mined_nonce = ctx
            .client
            .pending_nonce(sender)
            .await
            .map_err(|e| chain_error("reading the nonce", &e))?;
        let nonce = signed
            .nonce()
            .map_err(|e| Error::Internal(format!("stored transaction: {e}")))?;
        let safe = matches!(
            Self::stored_payload(t)?,
            SigningPayload::SafeTransfer { .. }
        );
        match ctx.client.broadcast(signed).await {
            Ok(_) => {}
            Err(concord_chain::ChainError::NonceTooLow { .. }) if mined_nonce > nonce => {
                // Mined in the meantime, or replaced: the next round tells which. A node that
                // cannot say is asked again.
                match ctx.client.status(signed.hash).await {
                    Ok(TxStatus::Included { .. }) => {}
                    Ok(_) if safe => return self.safe_resubmit(t).await,
                    Ok(_) => {
                        return Err(Error::refused(format!(
                            "another transaction used nonce {}: transaction {} was dropped and can never be mined",
                            nonce, signed.hash
                        )));
                    }
                    Err(e) => return Err(chain_error("looking the transaction up", &e)),
                }
            }
            Err(e) if e.retryable() => return Err(chain_error("re-broadcasting", &e)),
            Err(e) => tracing::warn!(transfer = %t.id, error = %e, "re-broadcast refused"),
        }
        self.overdue(t, "the transaction is not mined yet").await?;
        Ok(Step::Wait)
    }

    /// Follows the exchange (through the modules' read keys) until it credits the deposit.
    async fn deposit_follow_exchange(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("deposit::confirmed");
        // The wallet's members ask; a wallet gone since (a policy that no longer defines a
        // multisig wallet) does not fail a deposit already on chain: any enrolled module asks.
        let members = match self.wallet_and_members(&t.wallet_id).await {
            Ok((_, members)) => members,
            Err(Error::NotFound(_)) => self
                .store
                .modules()
                .await?
                .into_iter()
                .map(|m| m.id)
                .collect(),
            Err(e) => return Err(e),
        };
        let hash = t.tx_hash.clone().unwrap_or_default();
        let deposits: Vec<Deposit> = self
            .ask_any(
                &members,
                &t.exchange,
                exchange_query::Query::Deposit(concord_wire::rpc::DepositQuery {
                    coin: t.coin.clone(),
                    tx_id: hash.clone(),
                }),
            )
            .await?;
        if let Some(d) = deposits
            .iter()
            .find(|d| same_tx(&d.tx_id, &hash) && d.status.is_credited())
        {
            t.error = None;
            t.step(
                TransferStatus::Credited,
                format!("exchange {} credited {} {}", t.exchange, d.amount, d.coin),
            );
            self.save(t).await?;
            return Ok(Step::Done);
        }
        self.overdue(t, "the exchange has not credited the deposit yet")
            .await?;
        Ok(Step::Wait)
    }
}

/// Where a deposit is meant to go, as the trader asked (modules resolve it themselves).
pub(super) fn deposit_destination(t: &TransferRecord) -> Destination {
    Destination::ExchangeDeposit {
        exchange: t.exchange.clone(),
        coin: t.coin.clone(),
        network: t.network.clone(),
    }
}

/// Whether the deposit is a spend on the UTXO chain (by its stored payload).
fn is_utxo(t: &TransferRecord) -> bool {
    Engine::stored_payload(t).is_ok_and(|p| matches!(p, SigningPayload::UtxoTransfer { .. }))
}

/// Whether an exchange's transaction id names our transaction (EVM hashes with or without
/// `0x`, in either case; UTXO txids as hex).
fn same_tx(tx_id: &str, hash: &str) -> bool {
    let bare = |s: &str| s.trim().trim_start_matches("0x").to_ascii_lowercase();
    !hash.is_empty() && bare(tx_id) == bare(hash)
}

/// A chain error as the transfer's: retryable ones leave the transfer waiting.
pub(super) fn chain_error(what: &str, e: &concord_chain::ChainError) -> Error {
    if e.retryable() {
        Error::Unavailable(format!("{what}: {e}"))
    } else {
        Error::refused(format!("{what}: {e}"))
    }
}
