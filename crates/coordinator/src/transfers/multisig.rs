//! Deposits from native multisig wallets (the patent's second signing mode): the same
//! machine as a threshold wallet's deposit ([`super::deposit`]), with the steps that differ.
//!
//! - **Safe** (EVM): the proposal is the `SafeTx` at the Safe's next nonce; each approving
//!   module signs its hash with its own key; the owners' signatures are packed in owner order
//!   (each recovered to its owner first) and the gas account's transaction calling
//!   `execTransaction` is signed here — the transaction that goes through the same idempotent
//!   broadcast and following as any other. The gas account pays gas and can do nothing else
//!   with a Safe: no refund is ever signed, and the Safe checks the owners' signatures.
//! - **P2WSH** (UTXO): the proposal is the unsigned spend (PSBT) of the wallet's confirmed
//!   coins read from the coordinator's node; each approving module signs every input with its
//!   own key; the witnesses are assembled and every signature verified before anything is
//!   broadcast; broadcast is idempotent by txid, and the spend is followed to depth.

use concord_chain::utxo::bitcoin::{self, Amount, FeeRate, consensus::encode};
use concord_chain::utxo::{InputSignature, SpendRequest, UtxoNetwork, WalletScript};
use concord_chain::{Address, FeeCaps};
use concord_wire::authority::MultisigDef;
use concord_wire::payload::SigningPayload;

use super::Step;
use super::deposit::{chain_error, deposit_destination};
use crate::engine::Engine;
use crate::records::{TransferRecord, TransferStatus, WalletRecord};
use crate::{Error, failpoint};

/// How a deposit's wallet pays.
pub(super) enum Rail {
    /// A threshold ECDSA wallet's own EVM transaction.
    Evm,
    /// A Safe's transaction, submitted by the gas account.
    Safe(Box<MultisigDef>),
    /// A P2WSH multisig spend on the UTXO chain.
    Utxo(Box<MultisigDef>),
    /// A threshold wallet's spend on the UTXO chain (P2WPKH of an ECDSA key, P2TR of a FROST
    /// Taproot key): one signing run per input.
    UtxoThreshold(Box<WalletScript>),
}

impl Rail {
    /// Whether the deposit is a spend on the UTXO chain.
    pub(super) fn is_utxo(&self) -> bool {
        matches!(self, Rail::Utxo(_) | Rail::UtxoThreshold(_))
    }
}

impl Engine {
    /// How the deposit's wallet pays, checking it can on the asked network. A wallet of this
    /// coordinator's (made by key generation) is a threshold wallet, found without reading
    /// the policy; any other is looked up among the policy's multisig wallets.
    pub(super) async fn rail(&self, wallet_id: &str, network: &str) -> Result<Rail, Error> {
        let ctx = self.transfer_ctx()?;
        let utxo = ctx.utxo_for(network);
        if let Some(wallet) = self.store.wallet(wallet_id).await? {
            if utxo.is_none() {
                return Ok(Rail::Evm);
            }
            let scheme: concord_types::Scheme = wallet
                .scheme
                .parse()
                .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))?;
            let script = concord_wire::payload::threshold_wallet_script(scheme, &wallet.public_key)
                .map_err(|e| {
                    Error::BadRequest(format!(
                        "wallet {wallet_id} cannot spend on network {network}: {e}"
                    ))
                })?;
            return Ok(Rail::UtxoThreshold(Box::new(script)));
        }
        let Some(def) = self.multisig_def(wallet_id).await? else {
            return match utxo {
                // Refused by the EVM path with its own sentence.
                None => Ok(Rail::Evm),
                Some(_) => Err(Error::NotFound(format!("wallet {wallet_id}"))),
            };
        };
        match (def.evm_chain_id(), utxo) {
            (None, Some(u)) if def.chain == u.network.name() => Ok(Rail::Utxo(Box::new(def))),
            (None, _) => Err(Error::BadRequest(format!(
                "wallet {wallet_id} is a multisig wallet on {}, and network {network} is not that chain here{}",
                def.chain,
                ctx.utxo.as_ref().map_or(
                    " (this coordinator has no [utxo] chain configured)".to_owned(),
                    |u| format!(
                        " (this coordinator's UTXO chain is {} on network {})",
                        u.network.name(),
                        u.settings.network
                    )
                )
            ))),
            (Some(id), None) if id == ctx.chain.chain_id => Ok(Rail::Safe(Box::new(def))),
            (Some(_), _) => Err(Error::BadRequest(format!(
                "wallet {wallet_id} is a Safe on {}, and deposits from it go over network {} on chain {}",
                def.chain, ctx.chain.network, ctx.chain.chain_id
            ))),
        }
    }

    /// A Safe deposit's proposal: the deposit address every module resolves, the Safe's next
    /// nonce and balance, the `SafeTx` fixed and written down.
    pub(super) async fn safe_propose(
        &self,
        t: &mut TransferRecord,
        def: &MultisigDef,
    ) -> Result<Step, Error> {
        let ctx = self.transfer_ctx()?.clone();
        let bad = |e: concord_wire::authority::AuthorityError| Error::Internal(e.to_string());
        let (chain_id, safe, _) = def.safe_owners().map_err(bad)?;
        let (asset, decimals) = ctx.asset_of(&t.coin)?;
        let amount = t.amount.to_base(decimals).map_err(Error::BadRequest)?;
        let members: Vec<String> = def.members.iter().map(|m| m.module.clone()).collect();
        let (recipient, state, held) = tokio::join!(
            self.resolve_deposit_address(t, &members, usize::from(def.threshold), |a| a
                .parse::<Address>()
                .ok()
                .map(|a| a.to_string())),
            concord_chain::safe::state(&ctx.chain.rpc_url, safe),
            async {
                match &asset {
                    concord_chain::Asset::Native => ctx.client.balance(safe).await,
                    concord_chain::Asset::Erc20 { token } => {
                        ctx.client.token_balance(*token, safe).await
                    }
                }
            },
        );
        let recipient: Address = recipient?
            .parse()
            .map_err(|_| Error::Internal("a resolved address".into()))?;
        let (nonce, _, _) = state.map_err(|e| chain_error("reading the Safe", &e))?;
        let held = held.map_err(|e| chain_error("reading the Safe's balance", &e))?;
        if held < amount {
            return Err(Error::refused(format!(
                "Safe {safe} holds {held} of {}; the deposit sends {amount}",
                t.coin
            )));
        }
        let nonce = u64::try_from(nonce)
            .map_err(|_| Error::Internal(format!("Safe {safe}'s nonce {nonce}")))?;
        self.check_released(&t.wallet_id, nonce).await?;
        let payload = SigningPayload::SafeTransfer {
            transfer: t.id.clone(),
            wallet: parse_wallet(&t.wallet_id)?,
            chain_id,
            safe,
            nonce,
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
            format!("proposing Safe {safe}'s nonce {nonce} to {recipient}"),
        )
        .await
    }

    /// The owners' signatures, packed, and the gas account's `execTransaction` signed.
    pub(super) async fn safe_sign(
        &self,
        t: &mut TransferRecord,
        wallet: &WalletRecord,
        def: &MultisigDef,
        payload: &SigningPayload,
    ) -> Result<Step, Error> {
        failpoint!("deposit::signing");
        let ctx = self.transfer_ctx()?.clone();
        let gas_key = ctx.gas_key.clone().ok_or_else(|| {
            Error::refused(
                "this coordinator has no gas account for Safe transactions ([chain] safe_gas_key)",
            )
        })?;
        let by_module = self.multisig_signatures_for(t, wallet, payload).await?;
        let tx = payload
            .safe_transaction()
            .ok_or_else(|| Error::Internal("not a Safe payload".into()))?;
        let mut owners = Vec::new();
        for (module, sigs) in &by_module {
            let key = member_key(def, module)?;
            let owner = concord_chain::evm_address(&key)
                .map_err(|e| Error::Internal(format!("{module}'s key: {e}")))?;
            let sig: [u8; 65] = sigs
                .first()
                .and_then(|s| hex::decode(s).ok())
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| Error::protocol(format!("{module}'s Safe signature")))?;
            owners.push((owner, sig));
        }
        let packed = concord_chain::safe::pack_signatures(tx.hash(), &owners)
            .map_err(|e| Error::protocol(format!("the owners' signatures: {e}")))?;
        let gas = concord_chain::safe::gas_account(&gas_key)
            .map_err(|e| Error::refused(e.to_string()))?;
        let (fees, pending) =
            tokio::join!(ctx.client.suggest_fees(), ctx.client.pending_nonce(gas));
        let fees = fees.map_err(|e| chain_error("reading the fees", &e))?;
        let pending = pending.map_err(|e| chain_error("reading the gas account's nonce", &e))?;
        let recorded = self
            .store
            .next_account_nonce(&gas.to_string(), ctx.chain.chain_id)
            .await?;
        let fees = FeeCaps {
            max_fee_per_gas: fees
                .max_fee_per_gas
                .min(u128::from(ctx.chain.max_fee_per_gas)),
            max_priority_fee_per_gas: fees
                .max_priority_fee_per_gas
                .min(u128::from(ctx.chain.max_priority_fee_per_gas)),
        };
        let signed = concord_chain::safe::exec_transaction_signed(
            &ctx.chain.rpc_url,
            &gas_key,
            &tx,
            packed,
            concord_chain::next_nonce(pending, recorded),
            fees,
        )
        .await;
        let signed = match signed {
            Ok(s) => s,
            Err(e) => {
                // Executed already by someone holding the signatures: follow that.
                if let Some(step) = self.safe_executed_elsewhere(t).await? {
                    return Ok(step);
                }
                // Never failed while the owners' signatures stand and the nonce is unused (an
                // unfunded gas account, a node away): it waits, said in the record.
                return Err(Error::Unavailable(format!(
                    "preparing execTransaction: {e}"
                )));
            }
        };
        t.raw_tx = Some(hex::encode(&signed.raw));
        t.tx_hash = Some(signed.hash.to_string());
        t.error = None;
        t.step(
            TransferStatus::Signed,
            format!(
                "{} owners signed Safe {}'s transaction; execTransaction {} from gas account {gas}",
                by_module.len(),
                tx.safe,
                signed.hash
            ),
        );
        self.save(t).await?;
        Ok(Step::Next)
    }

    /// The gas account's transaction can never be mined (another used its nonce) while the
    /// Safe's nonce is still unused: the owners' signatures stand, and `execTransaction` is
    /// signed again at the gas account's next nonce.
    pub(super) async fn safe_resubmit(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        let ctx = self.transfer_ctx()?.clone();
        let payload = Self::stored_payload(t)?;
        let tx = payload
            .safe_transaction()
            .ok_or_else(|| Error::Internal("not a Safe payload".into()))?;
        let (nonce, _, _) = concord_chain::safe::state(&ctx.chain.rpc_url, tx.safe)
            .await
            .map_err(|e| chain_error("reading the Safe", &e))?;
        if nonce != tx.nonce {
            if let Some(step) = self.safe_executed_elsewhere(t).await? {
                return Ok(step);
            }
            return Err(Error::refused(format!(
                "Safe {}'s nonce {} was used by another transaction than execTransaction {}",
                tx.safe,
                tx.nonce,
                t.tx_hash.as_deref().unwrap_or_default()
            )));
        }
        t.raw_tx = None;
        t.tx_hash = None;
        t.step(
            TransferStatus::Signing,
            "the gas account's nonce was used by another transaction: execTransaction is signed again at its next nonce",
        );
        self.save(t).await?;
        Ok(Step::Next)
    }

    /// The deposit's SafeTx executed in another transaction than ours (anyone who saw the
    /// owners' signatures in our transaction may submit them first, and ours then reverts):
    /// that transaction is followed instead, and the deposit is never reported failed.
    /// `None` if the Safe did not execute it.
    pub(super) async fn safe_executed_elsewhere(
        &self,
        t: &mut TransferRecord,
    ) -> Result<Option<Step>, Error> {
        let ctx = self.transfer_ctx()?.clone();
        let Some(tx) = Self::stored_payload(t)?.safe_transaction() else {
            return Ok(None);
        };
        let Some(hash) = concord_chain::safe::executed_in(&ctx.chain.rpc_url, tx.safe, tx.hash())
            .await
            .map_err(|e| chain_error("looking for the Safe's execution", &e))?
        else {
            return Ok(None);
        };
        if t.tx_hash.as_deref() != Some(hash.to_string().as_str()) {
            t.tx_hash = Some(hash.to_string());
            t.note(format!(
                "Safe {} executed this transfer in transaction {hash}, submitted by another account with the owners' signatures",
                tx.safe
            ));
            self.save(t).await?;
        }
        Ok(Some(
            match self
                .follow_tx(
                    hash,
                    std::time::Duration::from_secs(3),
                    "following the execution",
                )
                .await?
            {
                super::Depth::Deep {
                    block,
                    confirmations,
                } => {
                    t.error = None;
                    t.step(
                        TransferStatus::Confirmed,
                        format!("in block {block} with {confirmations} confirmation(s)"),
                    );
                    self.save(t).await?;
                    Step::Next
                }
                _ => Step::Wait,
            },
        ))
    }

    /// A P2WSH deposit's proposal: see [`Engine::utxo_spend_propose`].
    pub(super) async fn utxo_propose(
        &self,
        t: &mut TransferRecord,
        def: &MultisigDef,
    ) -> Result<Step, Error> {
        let (network, script) = def.wallet().map_err(|e| Error::Internal(e.to_string()))?;
        let members: Vec<String> = def.members.iter().map(|m| m.module.clone()).collect();
        let what = format!(
            "the {}-of-{} P2WSH wallet",
            def.threshold,
            def.members.len()
        );
        self.utxo_spend_propose(
            t,
            network,
            &script,
            &members,
            usize::from(def.threshold),
            &what,
        )
        .await
    }

    /// A threshold wallet's spend on the UTXO chain: proposed as a multisig wallet's is.
    pub(super) async fn utxo_threshold_propose(
        &self,
        t: &mut TransferRecord,
        script: &WalletScript,
    ) -> Result<Step, Error> {
        let ctx = self.transfer_ctx()?.clone();
        let u = ctx
            .utxo_for(&t.network)
            .ok_or_else(|| Error::Internal("no UTXO chain".into()))?;
        let (wallet, _) = self.wallet_and_members(&t.wallet_id).await?;
        let group = self.group_of(&wallet.group_id).await?;
        let what = format!(
            "the {}-of-{} {} wallet",
            group.threshold,
            group.members.len(),
            script.kind()
        );
        self.utxo_spend_propose(
            t,
            u.network,
            script,
            &group.members,
            usize::from(group.threshold),
            &what,
        )
        .await
    }

    /// A spend's proposal: the deposit address `needed` of `members` resolve (each through
    /// its own connector), the wallet's confirmed coins from the coordinator's node, the
    /// unsigned spend fixed and written down.
    async fn utxo_spend_propose(
        &self,
        t: &mut TransferRecord,
        network: UtxoNetwork,
        script: &WalletScript,
        members: &[String],
        needed: usize,
        what: &str,
    ) -> Result<Step, Error> {
        let ctx = self.transfer_ctx()?.clone();
        let u = ctx
            .utxo_for(&t.network)
            .ok_or_else(|| Error::Internal("no UTXO chain".into()))?;
        let amount = t
            .amount
            .to_base(8)
            .map_err(Error::BadRequest)
            .and_then(|a| {
                u64::try_from(a)
                    .map_err(|_| Error::BadRequest(format!("amount {} is too large", t.amount)))
            })?;
        let wallet_script = script.script_pubkey();
        let (recipient, coins) = tokio::join!(
            self.resolve_deposit_address(t, members, needed, |a| {
                network.script_of(a).ok().map(|_| a.to_owned())
            }),
            u.node
                .spendable(&wallet_script, u.settings.confirmations.max(1)),
        );
        let recipient = recipient?;
        let coins = coins.map_err(|e| node_error("reading the wallet's coins", &e))?;
        let to = network
            .script_of(&recipient)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let psbt = concord_chain::utxo::build_spend(&SpendRequest {
            network,
            wallet: script,
            available: &coins,
            to,
            amount: Amount::from_sat(amount),
            fee_rate: FeeRate::from_sat_per_vb(u.settings.fee_rate_sat_vb)
                .unwrap_or(FeeRate::BROADCAST_MIN),
        })
        .map_err(|e| {
            Error::refused(format!(
                "the spend from {}: {e}",
                network.address(&wallet_script).unwrap_or_default()
            ))
        })?;
        let inputs = psbt.inputs.len();
        let payload = SigningPayload::UtxoTransfer {
            transfer: t.id.clone(),
            wallet: parse_wallet(&t.wallet_id)?,
            chain: network.name().to_owned(),
            psbt: psbt.serialize(),
            amount,
            destination: deposit_destination(t),
        };
        let note = format!("proposing a spend of {inputs} coin(s) of {what} to {recipient}");
        self.propose(t, &payload, recipient, None, note).await
    }

    /// Each signer's signatures into the inputs' witnesses (every one verified), the
    /// transaction kept.
    pub(super) async fn utxo_sign(
        &self,
        t: &mut TransferRecord,
        wallet: &WalletRecord,
        def: &MultisigDef,
        payload: &SigningPayload,
    ) -> Result<Step, Error> {
        failpoint!("deposit::signing");
        let by_module = self.multisig_signatures_for(t, wallet, payload).await?;
        let (_, script) = def.wallet().map_err(|e| Error::Internal(e.to_string()))?;
        let psbt = payload
            .psbt()
            .ok_or_else(|| Error::Internal("the stored PSBT does not parse".into()))?;
        let mut inputs = vec![std::collections::BTreeMap::new(); psbt.inputs.len()];
        for (module, sigs) in &by_module {
            let key = bitcoin::CompressedPublicKey::from_slice(&member_key(def, module)?)
                .map_err(|e| Error::Internal(format!("{module}'s key: {e}")))?;
            for (i, s) in sigs.iter().enumerate() {
                let sig = hex::decode(s)
                    .map_err(|_| Error::protocol(format!("{module}'s signature {i}")))?;
                if let Some(input) = inputs.get_mut(i) {
                    input.insert(key, sig);
                }
            }
        }
        let signatures: Vec<InputSignature> =
            inputs.into_iter().map(InputSignature::Multisig).collect();
        let tx = concord_chain::utxo::finalize(&psbt, &script, &signatures)
            .map_err(|e| Error::protocol(format!("the multisig spend: {e}")))?;
        let by = by_module.keys().cloned().collect::<Vec<_>>().join(", ");
        self.keep_spend(
            t,
            &tx,
            &format!("by {by}: every input's signatures verified"),
        )
        .await
    }

    /// The signed spend kept with its txid (broadcast next).
    async fn keep_spend(
        &self,
        t: &mut TransferRecord,
        tx: &bitcoin::Transaction,
        how: &str,
    ) -> Result<Step, Error> {
        let txid = tx.compute_txid();
        t.raw_tx = Some(encode::serialize_hex(tx));
        t.tx_hash = Some(txid.to_string());
        t.error = None;
        t.step(TransferStatus::Signed, format!("spend {txid} signed {how}"));
        self.save(t).await?;
        Ok(Step::Next)
    }

    /// A threshold wallet's spend: one signature per input from the sign job (each run over
    /// that input's hash, verified against the wallet's key), into the witnesses.
    pub(super) async fn utxo_threshold_sign(
        &self,
        t: &mut TransferRecord,
        wallet: &WalletRecord,
        script: &WalletScript,
        payload: &SigningPayload,
    ) -> Result<Step, Error> {
        failpoint!("deposit::signing");
        let result = self.signed_result(t, wallet, payload, "deposit").await?;
        let psbt = payload
            .psbt()
            .ok_or_else(|| Error::Internal("the stored PSBT does not parse".into()))?;
        let sigs: Vec<String> = serde_json::from_value(result["inputs"].clone())
            .map_err(|e| Error::Internal(format!("the sign job's result: {e}")))?;
        let signatures = sigs
            .iter()
            .map(|s| {
                let bytes = hex::decode(s)
                    .map_err(|_| Error::protocol("an input's signature is not hex"))?;
                Ok(match script {
                    WalletScript::P2tr { .. } => InputSignature::Schnorr(
                        bytes
                            .try_into()
                            .map_err(|_| Error::protocol("a Schnorr signature is 64 bytes"))?,
                    ),
                    _ => InputSignature::Ecdsa(bytes),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let tx = concord_chain::utxo::finalize(&psbt, script, &signatures)
            .map_err(|e| Error::protocol(format!("the spend: {e}")))?;
        let how = format!(
            "by the threshold: {} input signature(s) verified",
            signatures.len()
        );
        self.keep_spend(t, &tx, &how).await
    }

    fn stored_utxo_tx(t: &TransferRecord) -> Result<bitcoin::Transaction, Error> {
        encode::deserialize_hex(t.raw_tx.as_deref().unwrap_or_default())
            .map_err(|e| Error::Internal(format!("stored raw transaction: {e}")))
    }

    /// Sends the stored spend (idempotent by txid).
    pub(super) async fn utxo_broadcast(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("deposit::signed");
        let tx = Self::stored_utxo_tx(t)?;
        let txid = tx.compute_txid();
        match self.utxo_send(t, &tx).await? {
            None => {
                t.error = None;
                t.step(
                    TransferStatus::Broadcast,
                    format!("spend {txid} accepted by the node"),
                );
                self.save(t).await?;
                Ok(Step::Next)
            }
            Some(why) => {
                if t.error.as_deref() != Some(why.as_str()) {
                    t.error = Some(why);
                    self.save(t).await?;
                }
                Ok(Step::Wait)
            }
        }
    }

    /// Broadcasts `tx`: `None` once the node has it; `Some(why)` while it does not take it
    /// yet; refused once one of its coins was spent by another transaction (it can never be
    /// mined, and moved nothing).
    async fn utxo_send(
        &self,
        t: &TransferRecord,
        tx: &bitcoin::Transaction,
    ) -> Result<Option<String>, Error> {
        let ctx = self.transfer_ctx()?.clone();
        let u = ctx
            .utxo_for(&t.network)
            .ok_or_else(|| Error::Internal("no UTXO chain".into()))?;
        let txid = tx.compute_txid();
        match u.node.broadcast(tx).await {
            Ok(_) => Ok(None),
            Err(e) if e.is_retryable() => Err(node_error("broadcasting", &e)),
            Err(e) => {
                // Failed only once another transaction spending one of its coins is in a
                // block (a conflict only in the mempool may still be dropped).
                for input in &tx.input {
                    let spent = u
                        .node
                        .spent_in_chain(&input.previous_output)
                        .await
                        .map_err(|e| node_error("reading an input", &e))?;
                    if spent
                        && u.node
                            .confirmations(&txid)
                            .await
                            .map_err(|e| node_error("looking the spend up", &e))?
                            .is_none()
                    {
                        return Err(Error::refused(format!(
                            "coin {} was spent by another transaction: spend {txid} can never be mined",
                            input.previous_output
                        )));
                    }
                }
                Ok(Some(format!(
                    "the node does not take the signed spend yet: {e}"
                )))
            }
        }
    }

    /// Follows the spend until it is as deep as the settings ask, sending it again while the
    /// node does not have it.
    pub(super) async fn utxo_follow_chain(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("deposit::broadcast");
        let ctx = self.transfer_ctx()?.clone();
        let u = ctx
            .utxo_for(&t.network)
            .ok_or_else(|| Error::Internal("no UTXO chain".into()))?;
        let tx = Self::stored_utxo_tx(t)?;
        let txid = tx.compute_txid();
        let depth = u.settings.confirmations.max(1);
        match u
            .node
            .confirmations(&txid)
            .await
            .map_err(|e| node_error("following the spend", &e))?
        {
            Some(n) if n >= depth => {
                t.error = None;
                t.step(
                    TransferStatus::Confirmed,
                    format!("spend {txid} has {n} confirmation(s)"),
                );
                self.save(t).await?;
                Ok(Step::Next)
            }
            Some(_) => {
                self.overdue(t, "the spend is not mined deep enough yet")
                    .await?;
                Ok(Step::Wait)
            }
            None => {
                // The node lost it (a restart): the same bytes again.
                if let Some(why) = self.utxo_send(t, &tx).await? {
                    tracing::warn!(transfer = %t.id, %why, "re-broadcast refused");
                }
                self.overdue(t, "the spend is not mined yet").await?;
                Ok(Step::Wait)
            }
        }
    }

    /// Follows an exchange's withdrawal on the UTXO chain until it is as deep as the
    /// settings ask.
    pub(super) async fn withdraw_follow_utxo(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        let ctx = self.transfer_ctx()?.clone();
        let u = ctx
            .utxo_for(&t.network)
            .ok_or_else(|| Error::Internal("no UTXO chain".into()))?;
        let tx_id = t.tx_hash.clone().unwrap_or_default();
        let Ok(txid) = tx_id.parse::<bitcoin::Txid>() else {
            let why = format!(
                "the exchange names {tx_id:?} as its transaction, which is not a transaction id on {}; waiting for one",
                t.network
            );
            if t.error.as_deref() != Some(why.as_str()) {
                t.error = Some(why);
                self.save(t).await?;
            }
            return Ok(Step::Wait);
        };
        let depth = u.settings.confirmations.max(1);
        let (confirmations, tx) =
            tokio::join!(u.node.confirmations(&txid), u.node.transaction(&txid));
        let confirmations =
            confirmations.map_err(|e| node_error("following the withdrawal", &e))?;
        // The transaction the exchange names must pay the destination what was asked, as this
        // coordinator's own node reads it (one module's exchange link could name any other).
        if let Some(tx) = tx.map_err(|e| node_error("reading the withdrawal", &e))? {
            let to = u
                .network
                .script_of(t.destination.as_deref().unwrap_or_default())
                .map_err(|e| Error::Internal(format!("the destination: {e}")))?;
            let want = t
                .amount
                .to_base(8)
                .ok()
                .and_then(|a| u64::try_from(a).ok())
                .unwrap_or(u64::MAX);
            if !tx
                .output
                .iter()
                .any(|o| o.script_pubkey == to && o.value.to_sat() == want)
            {
                // Not failed: the exchange (or one module's link to it) misreports, and the
                // withdrawal may still arrive. Said in the record; the exchange is asked again.
                let why = format!(
                    "the exchange named transaction {txid}, which does not pay {} {} to {}: not counted as arrived; asking the exchange again",
                    t.amount,
                    t.coin,
                    t.destination.as_deref().unwrap_or_default()
                );
                tracing::warn!(transfer = %t.id, %why, "ALERT: withdrawal transaction mismatch");
                t.tx_hash = None;
                t.error = Some(why.clone());
                t.step(TransferStatus::Submitted, why);
                self.save(t).await?;
                return Ok(Step::Wait);
            }
        }
        match confirmations {
            Some(n) if n >= depth => {
                t.error = None;
                t.step(
                    TransferStatus::Arrived,
                    format!(
                        "{} {} reached {} in transaction {txid} ({n} confirmation(s))",
                        t.amount,
                        t.coin,
                        t.destination.as_deref().unwrap_or("the destination")
                    ),
                );
                self.save(t).await?;
                Ok(Step::Done)
            }
            _ => {
                self.overdue(t, "the exchange's transaction is not confirmed yet")
                    .await?;
                Ok(Step::Wait)
            }
        }
    }

    /// The group's signatures for a multisig wallet's payload: each signer's own (hex), by
    /// module. As [`Engine::signature_for`], what a refused payload bound is released first.
    async fn multisig_signatures_for(
        &self,
        t: &mut TransferRecord,
        wallet: &WalletRecord,
        payload: &SigningPayload,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>, Error> {
        let result = self.signed_result(t, wallet, payload, "deposit").await?;
        serde_json::from_value(result["multisig"].clone())
            .map_err(|e| Error::Internal(format!("the multisig sign job's result: {e}")))
    }
}

/// The own key (33 bytes) of a member of a multisig wallet, as the policy's definition has it.
fn member_key(def: &MultisigDef, module: &str) -> Result<Vec<u8>, Error> {
    def.members
        .iter()
        .find(|m| m.module == module)
        .and_then(|m| hex::decode(&m.key).ok())
        .ok_or_else(|| Error::Internal(format!("{module} signed but is no member with a key")))
}

fn parse_wallet(id: &str) -> Result<concord_types::WalletId, Error> {
    id.parse()
        .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))
}

/// A UTXO node's error as the transfer's: passing ones leave the transfer waiting.
fn node_error(what: &str, e: &concord_chain::litecoind::NodeError) -> Error {
    if e.is_retryable() {
        Error::Unavailable(format!("{what}: {e}"))
    } else {
        Error::refused(format!("{what}: {e}"))
    }
}
