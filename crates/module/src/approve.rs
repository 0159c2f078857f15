//! Deciding on a proposal. The module checks who asked (the intent's signatures against its
//! own copy of the admin-signed policy), that the coordinator's proposal is exactly what was
//! asked (field by field), that the policy allows it (the wallet's purpose, the address book,
//! limits per transfer and per rolling 24 h from its own ledger, co-signatures), and the
//! kind-specific facts against its own view of the exchange and the chain; then it recomputes
//! the digest, checks its logs (intent, nonce, exchange order), and signs and stores its
//! approval — naming the policy hash it applied — before anything is sent.

// A refusal is the wire message itself (reason, code, audit entry), returned once per
// decision: boxing it on every check would buy nothing measurable.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use concord_chain::{Address, U256};
use concord_exchange::binance::WithdrawParams;
use concord_exchange::kraken::WithdrawForm;
use concord_tss::{DerivationPath, Scheme, WalletId};
use concord_wire::authority::{
    Action, AddressRef, AddressTarget, AgreementRule, ApprovalStatement, Policy, SignedIntent,
    VerifiedIntent, WalletPurpose, WalletRule, unix_now,
};
use concord_wire::identity::IdentitySigner;
use concord_wire::payload::{Destination, SigningPayload};
use concord_wire::rpc::{Approval, Proposal, Refusal};
use concord_wire::units::{format_amount, parse_amount};

use crate::Error;
use crate::checks::Outside;
use crate::ledger::{DAY_SECS, Order, Spend};
use crate::state::{APPROVAL_TTL_SECS, ApprovalRecord, PolicyInForce, State};

/// Added to a signed exchange request's life (timestamp + receive window) for clocks that
/// differ between this module and the exchange, ms.
const ORDER_MARGIN_MS: u64 = 60_000;

/// Everything a decision needs. Cheap to share.
pub(crate) struct Decider {
    pub(crate) state: Arc<State>,
    pub(crate) identity: Arc<dyn IdentitySigner>,
    pub(crate) outside: Outside,
    /// wallet → (scheme, group public key), read once from the share.
    wallets: Mutex<HashMap<WalletId, (Scheme, Vec<u8>)>>,
    /// Serializes the last step (logs, daily limits, approval record) of concurrent decisions.
    commit: tokio::sync::Mutex<()>,
}

/// What kind of check refused a proposal: the `code` of a refusal, for counting (metrics,
/// the audit trail); its `reason` says it in words.
pub(crate) mod code {
    /// The payload is unreadable, or its digest or wallet is not what the proposal says.
    pub const PAYLOAD: &str = "payload";
    /// The signed intent is missing, unreadable, or not authorised by the policy.
    pub const INTENT: &str = "intent";
    /// The proposal is not what the intent's requester signed (wallet, amount, destination…).
    pub const MISMATCH: &str = "mismatch";
    /// The policy does not allow it (no policy, a wallet it does not name, a purpose).
    pub const POLICY: &str = "policy";
    /// Over a per-transfer or daily limit, or missing co-signatures above a threshold.
    pub const LIMIT: &str = "limit";
    /// A destination not in the address book.
    pub const DESTINATION: &str = "destination";
    /// This module's own view disagrees: its exchange connector's deposit address, its node's
    /// chain, nonces, coins and fees, its technical caps.
    pub const OUTSIDE: &str = "outside";
    /// Any other check of the transfer's bytes.
    pub const CHECK: &str = "check";
    /// A replayed or conflicting use (an intent, a nonce, an exchange order used before).
    pub const REPLAY: &str = "replay";
    /// This module could not decide (its vault or audit trail).
    pub const INTERNAL: &str = "internal";
}

pub(crate) fn refusal(
    job_id: &str,
    reason: impl Into<String>,
    computed: Option<[u8; 32]>,
) -> Refusal {
    refusal_as(job_id, code::CHECK, reason, computed)
}

pub(crate) fn refusal_as(
    job_id: &str,
    code: &str,
    reason: impl Into<String>,
    computed: Option<[u8; 32]>,
) -> Refusal {
    Refusal {
        job_id: job_id.to_owned(),
        reason: reason.into(),
        computed_digest: computed.map(|d| d.to_vec()).unwrap_or_default(),
        code: code.to_owned(),
        audit: None,
    }
}

/// The spending a decision commits against a wallet's daily limit.
struct Daily {
    wallet: WalletId,
    label: String,
    coin: String,
    amount: U256,
    per_day: U256,
    decimals: u8,
}

/// What the kind-specific checks found.
struct Checked {
    checks: Vec<String>,
    daily: Option<Daily>,
    order: Option<Order>,
}

/// One proposal under decision.
struct Case<'a> {
    job: &'a str,
    payload: &'a SigningPayload,
    digest: [u8; 32],
    intent: &'a VerifiedIntent,
    policy: &'a PolicyInForce,
    /// The payload's wallet, if it is a child wallet: (child, parent, path).
    derived: Option<(WalletId, WalletId, DerivationPath)>,
}

impl Case<'_> {
    fn refuse(&self, reason: impl Into<String>) -> Refusal {
        refusal(self.job, reason, Some(self.digest))
    }

    fn refuse_as(&self, code: &str, reason: impl Into<String>) -> Refusal {
        refusal_as(self.job, code, reason, Some(self.digest))
    }

    fn policy(&self) -> &Policy {
        self.policy.policy()
    }

    /// "policy v3 (0123abcd…)" for messages.
    fn policy_name(&self) -> String {
        format!(
            "policy v{} ({})",
            self.policy().version,
            hex::encode(&self.policy.hash[..8])
        )
    }

    /// The policy's rule for a wallet; a wallet it does not name signs nothing. A child
    /// wallet the policy does not name itself is under its parent's rule, if that rule allows
    /// children at the child's path.
    fn wallet_rule(&self, wallet: WalletId) -> Result<&WalletRule, Refusal> {
        if let Some(rule) = self.policy().wallet(&wallet) {
            return Ok(rule);
        }
        if let Some((child, parent, path)) = &self.derived
            && *child == wallet
        {
            let rule = self.policy().wallet(parent).ok_or_else(|| {
                self.refuse_as(code::POLICY, format!(
                    "wallet {wallet} is wallet {parent}'s child at {path}, and {} names neither: it signs nothing",
                    self.policy_name()
                ))
            })?;
            if !rule.allows_child(path) {
                return Err(self.refuse_as(code::POLICY, format!(
                    "wallet {wallet} is wallet {:?}'s child at {path}, a path {} does not allow for it",
                    rule.label,
                    self.policy_name()
                )));
            }
            return Ok(rule);
        }
        Err(self.refuse_as(
            code::POLICY,
            format!(
                "wallet {wallet} is not named in {}: it signs nothing",
                self.policy_name()
            ),
        ))
    }

    fn mismatch(
        &self,
        what: &str,
        proposed: impl std::fmt::Display,
        asked: impl std::fmt::Display,
    ) -> Refusal {
        self.refuse_as(code::MISMATCH, format!(
            "the proposal's {what} ({proposed}) is not the intent's ({asked}): the coordinator may only propose what the requester signed"
        ))
    }
}

/// A withdraw request as the exchange would read it: what it sends where, under which order.
struct ProposedWithdrawal {
    coin: String,
    /// The exchange network code (as the intent names it when the request names it so).
    network: String,
    address: String,
    amount: String,
    order_id: Option<String>,
    /// What the exchange calls its client order id (`withdrawOrderId`, `idem`).
    order_field: &'static str,
    /// Until when (ms since the epoch) the exchange may still accept the request.
    valid_until_ms: u64,
    /// What was checked that belongs to this exchange's API alone.
    checks: Vec<String>,
}

impl Decider {
    pub(crate) fn new(
        state: Arc<State>,
        identity: Arc<dyn IdentitySigner>,
        outside: Outside,
    ) -> Self {
        Decider {
            state,
            identity,
            outside,
            wallets: Mutex::default(),
            commit: tokio::sync::Mutex::new(()),
        }
    }

    /// The scheme and group public key of a wallet this module holds a share of.
    fn wallet(&self, wallet: WalletId) -> Result<Option<(Scheme, Vec<u8>)>, Error> {
        if let Some(w) = self
            .wallets
            .lock()
            .ok()
            .and_then(|m| m.get(&wallet).cloned())
        {
            return Ok(Some(w));
        }
        let Some(share) = self.state.share(wallet)? else {
            return Ok(None);
        };
        let w = (share.scheme(), share.public_key());
        if let Ok(mut m) = self.wallets.lock() {
            m.insert(wallet, w.clone());
        }
        Ok(Some(w))
    }

    /// Decides on a proposal.
    pub(crate) async fn decide(&self, p: &Proposal) -> Result<Approval, Refusal> {
        let state = &self.state;
        let job = p.job_id.as_str();
        let payload = SigningPayload::from_canonical(&p.payload).map_err(|e| {
            refusal_as(
                job,
                code::PAYLOAD,
                format!("cannot read the payload: {e}"),
                None,
            )
        })?;
        let digest = payload.digest();
        if p.digest != digest {
            return Err(refusal_as(
                job,
                code::PAYLOAD,
                format!(
                    "the proposed digest {} is not the digest of the payload ({})",
                    hex::encode(&p.digest),
                    hex::encode(digest)
                ),
                Some(digest),
            ));
        }
        let wallet = payload.wallet();
        if p.wallet_id != wallet.0 {
            return Err(refusal_as(
                job,
                code::PAYLOAD,
                "the proposal names another wallet than its payload",
                Some(digest),
            ));
        }
        let err = |e: Error| refusal_as(job, code::INTERNAL, e.to_string(), Some(digest));
        let refuse = |code: &str, reason: String| refusal_as(job, code, reason, Some(digest));
        // A spend on a UTXO chain may be from a native multisig wallet, which has no share
        // (this module signs with its own key); its checks need the policy's definition.
        match self.wallet(wallet).map_err(err)? {
            None if matches!(
                payload,
                SigningPayload::UtxoTransfer { .. } | SigningPayload::SafeTransfer { .. }
            ) => {}
            // A held credential's withdraw request (Kraken): no share, the policy defines it.
            None if matches!(payload, SigningPayload::ExchangeWithdrawal { .. })
                && state.policy().is_some_and(|p| {
                    p.policy().wallet(&wallet).is_some_and(|r| r.held.is_some())
                }) => {}
            None => {
                return Err(refuse(
                    code::POLICY,
                    format!("this module holds no share of wallet {wallet}"),
                ));
            }
            Some((scheme, _)) => {
                if let Some(allowed) = payload.allowed_schemes()
                    && !allowed.contains(&scheme)
                {
                    let allowed: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
                    return Err(refuse(
                        code::PAYLOAD,
                        format!(
                            "this payload must be signed with {}, and wallet {wallet} is {scheme}",
                            allowed.join(" or ")
                        ),
                    ));
                }
            }
        }
        let signed = SignedIntent::from_json(&p.intent).map_err(|e| {
            refuse(
                code::INTENT,
                format!("the request carries no readable signed intent: {e}"),
            )
        })?;
        // Asked again (a coordinator restart, a lost answer): the same statement, verbatim,
        // even if the world has moved on since.
        if let Some(prev) = state.approval(job).map_err(err)? {
            return replay(job, prev, p, digest, &signed.intent.id);
        }
        let policy = state.policy().ok_or_else(|| {
            refuse(
                code::POLICY,
                "this module has no policy yet: until its admins sign one it takes part in protocol setup only and approves nothing".into(),
            )
        })?;
        let now = unix_now();
        let intent = signed.verify(policy.policy(), now).map_err(|e| {
            refuse(
                code::INTENT,
                format!(
                    "intent refused under policy v{}: {e}",
                    policy.policy().version
                ),
            )
        })?;
        // Only a wallet the policy does not name itself may be a child under its parent's rule.
        let derived = match policy.policy().wallet(&wallet) {
            Some(_) => None,
            None => state
                .derivation(wallet)
                .map_err(err)?
                .map(|(parent, path)| (wallet, parent, path)),
        };
        let case = Case {
            job,
            payload: &payload,
            digest,
            intent: &intent,
            policy: &policy,
            derived,
        };
        let mut checked = match &payload {
            SigningPayload::Message { .. } => self.check_message(&case)?,
            SigningPayload::EvmTransfer { .. } => self.check_deposit(&case).await?,
            SigningPayload::ExchangeWithdrawal { .. } => self.check_withdrawal(&case).await?,
            SigningPayload::UtxoTransfer { .. } => self.check_utxo_deposit(&case).await?,
            SigningPayload::SafeTransfer { .. } => self.check_safe_deposit(&case).await?,
        };
        let mut checks = vec![
            format!(
                "intent {} signed by {}{} under {}",
                intent.intent.id,
                intent.requester,
                if intent.cosigners.is_empty() {
                    String::new()
                } else {
                    format!(", co-signed by {}", intent.cosigners.join(", "))
                },
                case.policy_name()
            ),
            "payload is canonical; digest recomputed from it".to_owned(),
        ];
        checks.append(&mut checked.checks);
        checked.checks = checks;
        self.commit(&case, p, checked, now).await
    }

    /// A raw message: only where the policy allows it for this wallet, and always
    /// domain-separated (the payload's signing input carries the tag).
    fn check_message(&self, c: &Case<'_>) -> Result<Checked, Refusal> {
        let SigningPayload::Message {
            wallet, message, ..
        } = c.payload
        else {
            return Err(c.refuse("not a message"));
        };
        let Action::SignMessage {
            wallet: asked_wallet,
            message: asked,
            ..
        } = &c.intent.intent.action
        else {
            return Err(c.refuse(format!(
                "the intent asks for a {}, not a message signature",
                c.intent.intent.action.kind()
            )));
        };
        if asked_wallet != wallet {
            return Err(c.mismatch("wallet", wallet, asked_wallet));
        }
        if asked != message {
            return Err(
                c.refuse("the proposed message is not the one the intent's requester signed")
            );
        }
        let rule = c.wallet_rule(*wallet)?;
        match &rule.purpose {
            WalletPurpose::Trading {
                raw_messages: true, ..
            } => {}
            WalletPurpose::Trading { .. } => {
                return Err(c.refuse(format!(
                    "{} does not allow raw message signing with wallet {:?}",
                    c.policy_name(),
                    rule.label
                )));
            }
            WalletPurpose::ExchangeCredential { exchange, .. } => {
                return Err(c.refuse(format!(
                    "wallet {:?} is exchange {exchange}'s withdraw key: it signs withdraw requests checked by this module, never raw messages",
                    rule.label
                )));
            }
        }
        let max = self.state.checks.max_message_len;
        if message.len() > max {
            return Err(c.refuse(format!("messages over {max} bytes are refused here")));
        }
        Ok(Checked {
            checks: vec![format!(
                "{} allows raw messages for wallet {:?}; signed domain-separated",
                c.policy_name(),
                rule.label
            )],
            daily: None,
            order: None,
        })
    }

    /// An EVM deposit to an exchange: the intent's wallet, exchange, coin, network and amount
    /// exactly; a wallet the policy lets deposit there; limits; then the chain and the
    /// exchange's deposit address through this module's own connections.
    async fn check_deposit(&self, c: &Case<'_>) -> Result<Checked, Refusal> {
        let SigningPayload::EvmTransfer {
            transfer,
            wallet,
            amount,
            destination,
            ..
        } = c.payload
        else {
            return Err(c.refuse("not an EVM transfer"));
        };
        let (mut checks, rule, decimals) =
            self.check_deposit_intent(c, transfer, *wallet, destination, *amount)?;
        let (limit_checks, daily) = self.limits(c, rule, destination.coin(), *amount, decimals)?;
        checks.extend(limit_checks);
        let (_, public_key) = self
            .wallet(*wallet)
            .map_err(|e| c.refuse(e.to_string()))?
            .ok_or_else(|| c.refuse(format!("this module holds no share of wallet {wallet}")))?;
        checks.extend(
            self.outside
                .check_evm_transfer(&self.state.checks, c.payload, &public_key)
                .await
                .map_err(|e| c.refuse_as(e.code, e.reason))?,
        );
        Ok(Checked {
            checks,
            daily: Some(daily),
            order: None,
        })
    }

    /// A spend on a UTXO chain to an exchange, from a native multisig wallet or a threshold
    /// wallet: the same intent, policy and limits as an EVM deposit (the fee counted); the
    /// wallet's script from the policy's definition (which lists this module's own key) or
    /// from the key this module holds a share of; then the PSBT against this module's own
    /// node and its own connector's deposit address.
    async fn check_utxo_deposit(&self, c: &Case<'_>) -> Result<Checked, Refusal> {
        let SigningPayload::UtxoTransfer {
            transfer,
            wallet,
            chain,
            amount,
            destination,
            ..
        } = c.payload
        else {
            return Err(c.refuse("not a UTXO transfer"));
        };
        let (mut checks, rule, decimals) =
            self.check_deposit_intent(c, transfer, *wallet, destination, U256::from(*amount))?;
        // The wallet's script: a multisig wallet's from the policy's definition (which lists
        // this module's own key), a threshold wallet's from the key this module holds a share
        // of (P2WPKH of an ECDSA key, P2TR of a FROST Taproot key).
        let (script, what) = match c.policy().wallet(wallet).and_then(|r| r.multisig.as_ref()) {
            Some(def) => {
                if !def.has_key(&self.state.multisig_public_key()) {
                    return Err(c.refuse(format!(
                        "this module's own key is not one of multisig wallet {wallet}'s keys"
                    )));
                }
                let (def_chain, script) = def.wallet().map_err(|e| c.refuse(e.to_string()))?;
                if def_chain.name() != chain {
                    return Err(c.refuse(format!(
                        "the proposal's chain ({chain}) is not wallet {wallet}'s ({})",
                        def_chain.name()
                    )));
                }
                let what = format!(
                    "wallet is the {}-of-{} multisig the policy defines, this module's key among them",
                    def.threshold,
                    def.members.len()
                );
                (script, what)
            }
            None => {
                let (scheme, key) = self
                    .wallet(*wallet)
                    .map_err(|e| c.refuse(e.to_string()))?
                    .ok_or_else(|| {
                        c.refuse(format!(
                            "wallet {wallet} is neither a multisig wallet of {} nor one this module holds a share of",
                            c.policy_name()
                        ))
                    })?;
                let script = concord_wire::payload::threshold_wallet_script(scheme, &key)
                    .map_err(|e| c.refuse(e.to_string()))?;
                let what = format!(
                    "wallet is this module's {scheme} threshold wallet, a {} output",
                    script.kind()
                );
                (script, what)
            }
        };
        let (utxo_checks, fee, _digests) = self
            .outside
            .check_utxo_transfer(c.payload, &script)
            .await
            .map_err(|e| c.refuse_as(code::OUTSIDE, e))?;
        // What leaves the wallet counts against its limits: the amount and the fee.
        let (limit_checks, daily) = self.limits(
            c,
            rule,
            destination.coin(),
            U256::from(amount.saturating_add(fee)),
            decimals,
        )?;
        checks.extend(limit_checks);
        checks.push(what);
        checks.extend(utxo_checks);
        Ok(Checked {
            checks,
            daily: Some(daily),
            order: None,
        })
    }

    /// A transfer out of a Safe (native multisig on the EVM chain) to an exchange: the same
    /// intent, policy and limits as any deposit; the Safe and its owners from the policy's
    /// definition (which lists this module's own key); then the Safe's nonce, owners and
    /// threshold on this module's own node, and the recipient from its own connector.
    async fn check_safe_deposit(&self, c: &Case<'_>) -> Result<Checked, Refusal> {
        let SigningPayload::SafeTransfer {
            transfer,
            wallet,
            chain_id,
            safe,
            amount,
            destination,
            ..
        } = c.payload
        else {
            return Err(c.refuse("not a Safe transfer"));
        };
        let (mut checks, rule, decimals) =
            self.check_deposit_intent(c, transfer, *wallet, destination, *amount)?;
        let (limit_checks, daily) = self.limits(c, rule, destination.coin(), *amount, decimals)?;
        checks.extend(limit_checks);
        let def = c
            .policy()
            .wallet(wallet)
            .and_then(|r| r.multisig.as_ref())
            .ok_or_else(|| {
                c.refuse(format!(
                    "wallet {wallet} is not a multisig wallet of {}",
                    c.policy_name()
                ))
            })?;
        if !def.has_key(&self.state.multisig_public_key()) {
            return Err(c.refuse(format!(
                "this module's own key is not one of multisig wallet {wallet}'s keys"
            )));
        }
        let (def_chain, def_safe, owners) =
            def.safe_owners().map_err(|e| c.refuse(e.to_string()))?;
        if def_chain != *chain_id || def_safe != *safe {
            return Err(c.refuse(format!(
                "the proposal's Safe {safe} on chain {chain_id} is not wallet {wallet}'s ({def_safe} on chain {def_chain})"
            )));
        }
        checks.push(format!(
            "wallet is the {}-of-{} Safe {safe} the policy defines, this module's key among its owners",
            def.threshold,
            def.members.len()
        ));
        checks.extend(
            self.outside
                .check_safe_transfer(c.payload, &owners, def.threshold)
                .await
                .map_err(|e| c.refuse_as(e.code, e.reason))?,
        );
        Ok(Checked {
            checks,
            daily: Some(daily),
            order: None,
        })
    }

    /// What every deposit to an exchange must match: the payload's transfer is the intent,
    /// and its wallet, exchange, coin, network and amount exactly the intent's; the policy
    /// lets the wallet deposit to that exchange. Returns what was checked, the wallet's rule
    /// (whose limits the caller applies to what leaves the wallet) and the coin's decimals.
    fn check_deposit_intent<'c>(
        &self,
        c: &'c Case<'_>,
        transfer: &str,
        wallet: WalletId,
        destination: &Destination,
        amount: U256,
    ) -> Result<(Vec<String>, &'c WalletRule, u8), Refusal> {
        let Destination::ExchangeDeposit {
            exchange,
            coin,
            network,
        } = destination;
        let i = &c.intent.intent;
        let Action::Deposit {
            wallet: w,
            exchange: x,
            coin: k,
            network: n,
            amount: a,
            ..
        } = &i.action
        else {
            return Err(c.refuse(format!(
                "the intent asks for a {}, not a deposit",
                i.action.kind()
            )));
        };
        if transfer != i.id {
            return Err(c.mismatch("transfer id", transfer, &i.id));
        }
        if *w != wallet {
            return Err(c.mismatch("wallet", wallet, w));
        }
        if x != exchange {
            return Err(c.mismatch("exchange", exchange, x));
        }
        if k != coin {
            return Err(c.mismatch("coin", coin, k));
        }
        if n != network {
            return Err(c.mismatch("network", network, n));
        }
        let decimals = self
            .outside
            .decimals(coin, network)
            .map_err(|e| c.refuse(e))?;
        let asked =
            parse_amount(a, decimals).map_err(|e| c.refuse(format!("the intent's amount: {e}")))?;
        if asked != amount {
            return Err(c.mismatch(
                "amount",
                format!("{} {coin}", format_amount(amount, decimals)),
                format!("{a} {coin}"),
            ));
        }
        let rule = c.wallet_rule(wallet)?;
        match &rule.purpose {
            WalletPurpose::Trading { deposit_to, .. } if deposit_to.contains(exchange) => {}
            WalletPurpose::Trading { .. } => {
                return Err(c.refuse(format!(
                    "{} does not let wallet {:?} deposit to exchange {exchange}",
                    c.policy_name(),
                    rule.label
                )));
            }
            WalletPurpose::ExchangeCredential { .. } => {
                return Err(c.refuse(format!(
                    "wallet {:?} is an exchange withdraw key, not a wallet that transfers",
                    rule.label
                )));
            }
        }
        let checks = vec![format!(
            "{} lets wallet {:?} deposit to {exchange}",
            c.policy_name(),
            rule.label
        )];
        Ok((checks, rule, decimals))
    }

    /// A withdraw request: the policy's withdraw key of that exchange, a destination from the
    /// address book this key may withdraw to (resolved here: a wallet's address is derived
    /// from this module's own share), the intent's coin, network, amount and order id exactly,
    /// limits, a fresh request; and never a second live request for one order.
    async fn check_withdrawal(&self, c: &Case<'_>) -> Result<Checked, Refusal> {
        let SigningPayload::ExchangeWithdrawal {
            transfer,
            wallet,
            exchange,
            ..
        } = c.payload
        else {
            return Err(c.refuse("not an exchange withdrawal"));
        };
        let i = &c.intent.intent;
        let Action::Withdraw {
            exchange: x,
            coin,
            network,
            amount,
            to,
            ..
        } = &i.action
        else {
            return Err(c.refuse(format!(
                "the intent asks for a {}, not a withdrawal",
                i.action.kind()
            )));
        };
        if *transfer != i.id {
            return Err(c.mismatch("transfer id", transfer, &i.id));
        }
        if x != exchange {
            return Err(c.mismatch("exchange", exchange, x));
        }
        let rule = c.wallet_rule(*wallet)?;
        let withdraw_to = match &rule.purpose {
            WalletPurpose::ExchangeCredential {
                exchange: e,
                withdraw_to,
            } if e == exchange => withdraw_to,
            _ => {
                return Err(c.refuse(format!(
                    "wallet {:?} is not exchange {exchange}'s withdraw key in {}",
                    rule.label,
                    c.policy_name()
                )));
            }
        };
        let entry = match to {
            AddressRef::Wallet(w) => c.policy().address_of_wallet(w),
            AddressRef::Label(l) => c.policy().address(l),
        }
        .ok_or_else(|| {
            c.refuse_as(
                code::DESTINATION,
                format!(
                    "the destination, {to}, is not in the address book of {}",
                    c.policy_name()
                ),
            )
        })?;
        if !withdraw_to.contains(&entry.label) {
            return Err(c.refuse(format!(
                "{} does not let exchange {exchange}'s key withdraw to {:?}",
                c.policy_name(),
                entry.label
            )));
        }
        let proposed = self.read_withdraw_request(c, exchange, c.payload).await?;
        if proposed.coin != *coin {
            return Err(c.mismatch("coin", &proposed.coin, coin));
        }
        if proposed.network != *network {
            return Err(c.mismatch("network", &proposed.network, network));
        }
        if proposed.order_id.as_deref() != Some(i.id.as_str()) {
            return Err(c.mismatch(
                proposed.order_field,
                proposed.order_id.as_deref().unwrap_or("none"),
                &i.id,
            ));
        }
        let decimals = self
            .outside
            .decimals(coin, network)
            .map_err(|e| c.refuse(e))?;
        let asked = parse_amount(amount, decimals)
            .map_err(|e| c.refuse(format!("the intent's amount: {e}")))?;
        let amount_proposed = parse_amount(&proposed.amount, decimals)
            .map_err(|e| c.refuse(format!("the request's amount: {e}")))?;
        if asked != amount_proposed {
            return Err(c.mismatch(
                "amount",
                format!("{} {coin}", proposed.amount),
                format!("{amount} {coin}"),
            ));
        }
        let destination = self.resolve(c, &entry.target, network)?;
        let same = match (
            proposed.address.parse::<Address>(),
            destination.parse::<Address>(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => proposed.address == destination,
        };
        if !same {
            return Err(c.refuse_as(code::DESTINATION, format!(
                "the withdraw request sends to {}, which is not {:?} of the address book ({destination})",
                proposed.address, entry.label
            )));
        }
        let (limit_checks, daily) = self.limits(c, rule, coin, amount_proposed, decimals)?;
        let mut checks = vec![
            format!(
                "wallet {:?} is exchange {exchange}'s withdraw key in {}",
                rule.label,
                c.policy_name()
            ),
            format!(
                "destination {destination} is address-book entry {:?}, allowed for this key",
                entry.label
            ),
            format!("{} is the intent id {}", proposed.order_field, i.id),
        ];
        checks.extend(limit_checks);
        checks.extend(proposed.checks);
        let order = Order {
            exchange: exchange.clone(),
            order_id: i.id.clone(),
            dead_after_ms: proposed.valid_until_ms.saturating_add(ORDER_MARGIN_MS),
        };
        // A request for this order with other bytes was signed before: sign again only if
        // that one can no longer be accepted and the exchange, asked through this module's
        // own connector, has no withdrawal under this order id.
        let earlier: Vec<([u8; 32], u64)> = self
            .state
            .logs()
            .map_err(|e| c.refuse(e.to_string()))?
            .orders(exchange, &i.id);
        if proposed.valid_until_ms == u64::MAX && earlier.iter().any(|(d, _)| *d != c.digest) {
            return Err(c.refuse(format!(
                "a request with other bytes was already approved for transfer {}: exchange {exchange} has no client order id, so this module approves one request per transfer",
                i.id
            )));
        }
        if earlier.iter().any(|(d, _)| *d != c.digest) {
            self.check_order_is_dead(c, exchange, &i.id, &earlier)
                .await?;
            checks.push(format!(
                "the earlier request for order {} has expired and the exchange has no withdrawal under it",
                i.id
            ));
        }
        Ok(Checked {
            checks,
            daily: Some(daily),
            order: Some(order),
        })
    }

    /// Reads the exchange's withdraw request in a proposal as the exchange's own API would
    /// take it, strictly, and checks what belongs to that API alone (Binance: known
    /// parameters, a fresh timestamp, a short receive window; Coinbase: the token's key,
    /// method, host, path of this module's own account and lifetime, and the send's body).
    async fn read_withdraw_request(
        &self,
        c: &Case<'_>,
        exchange: &str,
        payload: &SigningPayload,
    ) -> Result<ProposedWithdrawal, Refusal> {
        let SigningPayload::ExchangeWithdrawal {
            request,
            body,
            api_key,
            wallet,
            transfer,
            ..
        } = payload
        else {
            return Err(c.refuse("not an exchange withdrawal"));
        };
        let kind = self.outside.kind(exchange).map_err(|e| c.refuse(e))?;
        let held = c.policy().wallet(wallet).and_then(|r| r.held.as_ref());
        if held.is_some() != (kind == "kraken") {
            return Err(c.refuse(match held {
                Some(_) => format!(
                    "wallet {wallet} is a held credential of {}, and this module's connection {exchange} is a {kind} exchange, whose withdraw key the group signs with",
                    c.policy_name()
                ),
                None => format!(
                    "exchange {exchange} is Kraken, whose withdraw key cannot be a group key, and wallet {wallet} is not a held credential of {}",
                    c.policy_name()
                ),
            }));
        }
        // The group key's scheme fixes what it may sign for which exchange.
        let scheme = self
            .wallet(*wallet)
            .map_err(|e| c.refuse(e.to_string()))?
            .map(|(s, _)| s);
        match kind {
            "kraken" => {
                let Some(held) = held else {
                    return Err(c.refuse("no held credential"));
                };
                self.read_kraken_withdraw(c, exchange, held, api_key, transfer, request, body.as_deref())
                    .await
            }
            "binance" => {
                if scheme != Some(Scheme::Ed25519) {
                    return Err(c.refuse(format!(
                        "Binance's withdraw keys are Ed25519, and wallet {wallet} is {}",
                        scheme.map_or("not held here", |s| s.as_str())
                    )));
                }
                if body.is_some() {
                    return Err(c.refuse(
                        "a Binance withdraw request carries no separate body: its signature covers all it says",
                    ));
                }
                let params = WithdrawParams::parse(request).map_err(|e| {
                    c.refuse(format!(
                        "the withdraw request is not one this module signs: {e}"
                    ))
                })?;
                let checks = self
                    .outside
                    .check_withdraw_request(&self.state.checks, exchange, &params)
                    .map_err(|e| c.refuse_as(code::OUTSIDE, e))?;
                Ok(ProposedWithdrawal {
                    valid_until_ms: params.timestamp_ms.saturating_add(params.recv_window_ms),
                    coin: params.coin,
                    network: params.network,
                    address: params.address,
                    amount: params.amount,
                    order_id: params.withdraw_order_id,
                    order_field: "withdrawOrderId",
                    checks,
                })
            }
            "coinbase" => {
                let (send, checks) = self
                    .outside
                    .check_coinbase_send(&self.state.checks, exchange, api_key, scheme, request, body.as_deref())
                    .await
                    .map_err(|e| c.refuse_as(code::OUTSIDE, e))?;
                let Action::Withdraw { network, .. } = &c.intent.intent.action else {
                    return Err(c.refuse("the intent asks for no withdrawal"));
                };
                // Coinbase names networks in words (`ethereum`); the intent in exchange codes.
                let network = if send.body.network == concord_exchange::coinbase::network_name(network) {
                    network.clone()
                } else {
                    send.body.network.clone()
                };
                Ok(ProposedWithdrawal {
                    valid_until_ms: send.claims.exp.saturating_mul(1000),
                    coin: send.body.currency,
                    network,
                    address: send.body.to,
                    amount: send.body.amount,
                    order_id: send.body.idem,
                    order_field: "idem",
                    checks,
                })
            }
            other => Err(c.refuse(format!(
                "this module signs no withdraw request to a {other} exchange: its withdrawals are not built on the group's key"
            ))),
        }
    }

    /// A Kraken `Withdraw` under the policy's held credential: Kraken's exact parameters
    /// (canonical, no nonce: the holder adds it), the credential's API key, and a withdrawal
    /// key that this module's own read key finds registered, verified and withdrawing to the
    /// request's address. Kraken has no client order id: the transfer id stands for it, and
    /// the holder's ledger sends one request per transfer.
    #[allow(clippy::too_many_arguments)]
    async fn read_kraken_withdraw(
        &self,
        c: &Case<'_>,
        exchange: &str,
        held: &concord_wire::authority::HeldCredential,
        api_key: &str,
        transfer: &str,
        request: &str,
        body: Option<&str>,
    ) -> Result<ProposedWithdrawal, Refusal> {
        if body.is_some() {
            return Err(c.refuse(
                "a Kraken withdraw request carries no separate body: the parameters are the request",
            ));
        }
        if held.exchange != exchange || held.api_key != api_key {
            return Err(c.refuse(format!(
                "the request goes to {exchange} under API key {api_key:?}, and {} names {}'s key {:?}",
                c.policy_name(),
                held.exchange,
                held.api_key
            )));
        }
        let form = WithdrawForm::parse(request).map_err(|e| {
            c.refuse(format!(
                "the withdraw request is not one this module approves: {e}"
            ))
        })?;
        let coin = concord_exchange::kraken::coin_of(&form.asset);
        if concord_exchange::kraken::asset_of(&coin) != form.asset {
            return Err(c.refuse(format!(
                "the asset {:?} is not Kraken's code for {coin}",
                form.asset
            )));
        }
        let key = self
            .outside
            .kraken_withdraw_key(exchange, &coin, &form.key)
            .await
            .map_err(|e| c.refuse_as(code::OUTSIDE, e))?;
        let same = match (
            key.address.parse::<Address>(),
            form.address.parse::<Address>(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => key.address == form.address,
        };
        if !same {
            return Err(c.refuse_as(
                code::DESTINATION,
                format!(
                    "withdrawal key {:?} at exchange {exchange} withdraws to {}, not to the request's {}",
                    form.key, key.address, form.address
                ),
            ));
        }
        let Action::Withdraw { network, .. } = &c.intent.intent.action else {
            return Err(c.refuse("the intent asks for no withdrawal"));
        };
        let expected = self
            .outside
            .kraken_method(exchange, &coin, network)
            .map_err(|e| c.refuse(e))?;
        let network = if key.method == expected {
            network.clone()
        } else {
            key.method.clone()
        };
        Ok(ProposedWithdrawal {
            // Never stale: one request per transfer, bound in the holder's ledger.
            valid_until_ms: u64::MAX,
            coin,
            network,
            address: key.address.clone(),
            amount: form.amount,
            order_id: Some(transfer.to_owned()),
            order_field: "transfer",
            checks: vec![
                format!(
                    "the request is Kraken's Withdraw in canonical form under {}'s held credential {:?} (holder {})",
                    exchange, held.api_key, held.holder
                ),
                format!(
                    "withdrawal key {:?} is verified at {exchange} and withdraws to {} on {} (read with this module's own key)",
                    form.key, key.address, key.method
                ),
            ],
        })
    }

    /// Refuses unless every earlier request for the order is past its life and the exchange
    /// knows no withdrawal under the order id.
    async fn check_order_is_dead(
        &self,
        c: &Case<'_>,
        exchange: &str,
        order_id: &str,
        earlier: &[([u8; 32], u64)],
    ) -> Result<(), Refusal> {
        let now_ms = unix_now().saturating_mul(1000);
        if let Some((_, dead)) = earlier
            .iter()
            .filter(|(d, _)| *d != c.digest)
            .find(|(_, dead)| *dead > now_ms)
        {
            return Err(c.refuse(format!(
                "a withdraw request for order {order_id} was already signed with other bytes and can still be accepted by the exchange for {} s: this module signs one live request per order",
                (dead - now_ms).div_ceil(1000)
            )));
        }
        match self.outside.withdrawal_by_order(exchange, order_id).await {
            Ok(None) => Ok(()),
            Ok(Some(w)) => Err(c.refuse(format!(
                "exchange {exchange} already has withdrawal {} under order {order_id} ({:?}): it is never requested twice",
                w.id, w.status
            ))),
            Err(e) => Err(c.refuse(format!(
                "cannot confirm that exchange {exchange} has no withdrawal under order {order_id}, so this module signs no second request for it: {e}"
            ))),
        }
    }

    /// Where an address-book entry points, as this module sees it.
    fn resolve(
        &self,
        c: &Case<'_>,
        target: &AddressTarget,
        network: &str,
    ) -> Result<String, Refusal> {
        match target {
            AddressTarget::Wallet { wallet } => {
                if let Some(chain) = self.outside.utxo_network(network) {
                    return self.utxo_wallet_address(c, *wallet, chain);
                }
                let (scheme, key) = self
                    .wallet(*wallet)
                    .map_err(|e| c.refuse(e.to_string()))?
                    .ok_or_else(|| {
                        c.refuse(format!(
                            "this module holds no share of the destination wallet {wallet}, so it cannot derive its address"
                        ))
                    })?;
                if scheme != Scheme::EcdsaSecp256k1 {
                    return Err(c.refuse(format!(
                        "the destination wallet {wallet} is {scheme}, not an EVM (ECDSA) wallet"
                    )));
                }
                concord_chain::evm_address(&key)
                    .map(|a| a.to_string())
                    .map_err(|e| c.refuse(format!("cannot derive the wallet's address: {e}")))
            }
            AddressTarget::Address {
                network: n,
                address,
            } => {
                if n != network {
                    return Err(c.refuse(format!(
                        "the address-book entry is on network {n}, the withdrawal on {network}"
                    )));
                }
                Ok(address.clone())
            }
        }
    }

    /// A wallet's address on this module's UTXO chain: a multisig wallet's P2WSH (from the
    /// policy's definition), or a threshold wallet's P2WPKH / P2TR (from its key).
    fn utxo_wallet_address(
        &self,
        c: &Case<'_>,
        wallet: WalletId,
        chain: concord_chain::utxo::UtxoNetwork,
    ) -> Result<String, Refusal> {
        let script = match c.policy().wallet(&wallet).and_then(|r| r.multisig.as_ref()) {
            Some(def) => {
                let (def_chain, script) = def.wallet().map_err(|e| c.refuse(e.to_string()))?;
                if def_chain != chain {
                    return Err(c.refuse(format!(
                        "the destination wallet {wallet} is a multisig wallet on {}, not on {}",
                        def_chain.name(),
                        chain.name()
                    )));
                }
                script
            }
            None => {
                let (scheme, key) = self
                    .wallet(wallet)
                    .map_err(|e| c.refuse(e.to_string()))?
                    .ok_or_else(|| {
                        c.refuse(format!(
                            "this module holds no share of the destination wallet {wallet}, so it cannot derive its address"
                        ))
                    })?;
                concord_wire::payload::threshold_wallet_script(scheme, &key)
                    .map_err(|e| c.refuse(e.to_string()))?
            }
        };
        chain
            .address(&script.script_pubkey())
            .map_err(|e| c.refuse(format!("cannot derive the wallet's address: {e}")))
    }

    /// The wallet's limits for a coin: per transfer, co-signatures, and the daily limit to
    /// commit against (checked again under the commit lock).
    fn limits(
        &self,
        c: &Case<'_>,
        rule: &WalletRule,
        coin: &str,
        amount: U256,
        decimals: u8,
    ) -> Result<(Vec<String>, Daily), Refusal> {
        let limit = rule.limit(coin).ok_or_else(|| {
            c.refuse_as(
                code::LIMIT,
                format!(
                    "{} sets no limit for {coin} on wallet {:?}, so it is refused",
                    c.policy_name(),
                    rule.label
                ),
            )
        })?;
        let parse = |what: &str, v: &str| {
            parse_amount(v, decimals).map_err(|e| {
                c.refuse_as(code::LIMIT, format!("the policy's {what} for {coin}: {e}"))
            })
        };
        let per_transfer = parse("per_transfer", &limit.per_transfer)?;
        let per_day = parse("per_day", &limit.per_day)?;
        let shown = format_amount(amount, decimals);
        if amount > per_transfer {
            return Err(c.refuse_as(code::LIMIT, format!(
                "{shown} {coin} exceeds the limit of {} {coin} per transfer of wallet {:?} ({})",
                limit.per_transfer,
                rule.label,
                c.policy_name()
            )));
        }
        let mut checks = vec![format!(
            "{shown} {coin} within {} {coin} per transfer",
            limit.per_transfer
        )];
        if let Some(above) = &limit.cosign_above {
            let above_units = parse("cosign_above", above)?;
            if amount > above_units {
                let have = c.intent.cosigners.len();
                let need = usize::from(limit.cosigners);
                if have < need {
                    return Err(c.refuse_as(code::LIMIT, format!(
                        "{shown} {coin} is above {above} {coin}: {} needs {need} approver co-signature(s), the intent has {have}",
                        c.policy_name()
                    )));
                }
                checks.push(format!(
                    "above {above} {coin}: co-signed by {} approver(s)",
                    have
                ));
            }
        }
        Ok((
            checks,
            Daily {
                wallet: rule.wallet,
                label: rule.label.clone(),
                coin: coin.to_ascii_uppercase(),
                amount,
                per_day,
                decimals,
            },
        ))
    }

    /// The serialized last step: logs, daily limit, statement, approval stored, then sent.
    async fn commit(
        &self,
        c: &Case<'_>,
        p: &Proposal,
        mut checked: Checked,
        now: u64,
    ) -> Result<Approval, Refusal> {
        let _guard = self.commit.lock().await;
        let state = &self.state;
        let job = c.job;
        let digest = c.digest;
        let intent = &c.intent.intent;
        let wallet = c.payload.wallet();
        if let Some(prev) = state.approval(job).map_err(|e| c.refuse(e.to_string()))? {
            return replay(job, prev, p, digest, &intent.id);
        }
        let nonce_key = c.payload.nonce_key();
        {
            let logs = state.logs().map_err(|e| c.refuse(e.to_string()))?;
            // One intent, one transaction: another digest under a used intent is a second
            // payment (a withdrawal may re-sign its order, checked above and below).
            if let Some((other_job, d)) = logs
                .intent(&intent.id, now)
                .into_iter()
                .find(|(_, d)| *d != digest)
                && checked.order.is_none()
            {
                return Err(c.refuse_as(
                    code::REPLAY,
                    format!(
                        "intent {} was already used{}: a replayed intent is refused",
                        intent.id,
                        if other_job.is_empty() {
                            String::new()
                        } else {
                            format!(" (job {other_job}, digest {})", hex::encode(&d[..8]))
                        }
                    ),
                ));
            }
            if let Some(o) = &checked.order {
                let now_ms = now.saturating_mul(1000);
                if logs
                    .orders(&o.exchange, &o.order_id)
                    .iter()
                    .any(|(d, dead)| *d != digest && *dead > now_ms)
                {
                    return Err(c.refuse_as(
                        code::REPLAY,
                        format!(
                            "a withdraw request for order {} with other bytes is still live",
                            o.order_id
                        ),
                    ));
                }
            }
            if let Some(key) = &nonce_key {
                match logs.nonce(wallet, key, now) {
                    Some(d) if d != digest => {
                        let shown = key.rsplit('-').next().unwrap_or(key).to_owned();
                        return Err(c.refuse_as(code::REPLAY, format!(
                            "nonce {shown} of wallet {wallet} was already approved for another digest ({})",
                            hex::encode(d)
                        )));
                    }
                    _ => checked
                        .checks
                        .push(format!("nonce {key} not approved for another digest")),
                }
            }
            if let Some(d) = &checked.daily {
                let spent = logs.spent_since(
                    d.wallet,
                    &d.coin,
                    now.saturating_sub(DAY_SECS),
                    &intent.id,
                    now,
                );
                let total = spent.saturating_add(d.amount);
                if total > d.per_day {
                    return Err(c.refuse_as(code::LIMIT, format!(
                        "{} {} would bring wallet {:?} to {} {} in 24 h, over its daily limit of {} {} ({} {} already approved)",
                        format_amount(d.amount, d.decimals),
                        d.coin,
                        d.label,
                        format_amount(total, d.decimals),
                        d.coin,
                        format_amount(d.per_day, d.decimals),
                        d.coin,
                        format_amount(spent, d.decimals),
                        d.coin,
                    )));
                }
                checked.checks.push(format!(
                    "{} {} in 24 h within the daily limit of {} {}",
                    format_amount(total, d.decimals),
                    d.coin,
                    format_amount(d.per_day, d.decimals),
                    d.coin
                ));
            }
        }
        let rule = intent.action.rule().unwrap_or(AgreementRule::All);
        let statement = ApprovalStatement {
            version: 2,
            job_id: job.to_owned(),
            module_id: state.id.clone(),
            wallet_id: wallet,
            digest,
            policy: c.policy.hash,
            intent: intent.id.clone(),
            rule,
            // Never usable after the intent itself expires.
            expires_at: (now + APPROVAL_TTL_SECS).min(intent.expires_at),
            checks: checked.checks,
        }
        .to_bytes();
        let signature = ApprovalStatement::try_sign(&statement, self.identity.as_ref())
            .map_err(|e| c.refuse_as(code::INTERNAL, format!("signing the approval: {e}")))?
            .to_vec();
        state
            .save_approval(
                job,
                &ApprovalRecord {
                    wallet_id: wallet,
                    payload: p.payload.clone(),
                    digest,
                    statement: statement.clone(),
                    signature: signature.clone(),
                    intent: intent.id.clone(),
                    rule,
                    policy: c.policy.hash,
                    at: now,
                    nonce_key,
                    spend: checked.daily.map(|d| Spend {
                        wallet: d.wallet,
                        coin: d.coin,
                        amount: d.amount.to_string(),
                    }),
                    order: checked.order,
                    void: false,
                },
            )
            .map_err(|e| c.refuse(e.to_string()))?;
        Ok(Approval {
            job_id: job.to_owned(),
            digest: digest.to_vec(),
            statement,
            signature,
            audit: None,
        })
    }
}

fn replay(
    job: &str,
    prev: ApprovalRecord,
    p: &Proposal,
    digest: [u8; 32],
    intent: &str,
) -> Result<Approval, Refusal> {
    if prev.void {
        return Err(refusal_as(
            job,
            code::REPLAY,
            "this module released its approval of this job: it never signs under it",
            Some(digest),
        ));
    }
    if prev.digest == digest && prev.payload == p.payload && prev.intent == intent {
        Ok(Approval {
            job_id: job.to_owned(),
            digest: digest.to_vec(),
            statement: prev.statement,
            signature: prev.signature,
            audit: None,
        })
    } else {
        Err(refusal_as(
            job,
            code::REPLAY,
            "this job was already approved for another payload or intent",
            Some(digest),
        ))
    }
}

#[cfg(test)]
mod tests {
    //! A module against a coordinator that proposes what the requester did not ask for, and
    //! against requesters the policy does not allow: the real anvil chain and the real exchange
    //! simulator, the module's own connector and read key, the module's own policy copy. The
    //! tests drive the module's decision directly, standing in for a compromised coordinator.
    use super::*;
    use crate::config::{ChainConfig, ExchangeConfig};
    use concord_chain::Asset;
    use concord_tss::local::LocalNetwork;
    use concord_tss::rand_core::OsRng;
    use concord_tss::{SessionId, Threshold};
    use concord_wire::authority::{
        AddressEntry, AdminSet, CoinLimit, Intent, Principal, Role, SignedPolicy,
    };
    use concord_wire::identity::IdentityKey;
    use concord_wire::payload::Destination;
    use zeroize::Zeroizing;

    fn key(i: u8) -> IdentityKey {
        IdentityKey::from_seed(&Zeroizing::new([i; 32]))
    }
    const TRADER: u8 = 10;
    const APPROVER: u8 = 11;
    const IMPORTER: u8 = 12;
    const STRANGER: u8 = 99;
    const OUTSIDE: Address = Address::repeat_byte(0x66);

    async fn shares(state: &State, cred_scheme: Scheme) -> (WalletId, WalletId) {
        use concord_tss::ecdsa::{self, AuxMaterial};
        let fixtures =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tss/tests/fixtures");
        let t = Threshold::new(2, 2).unwrap();
        let mut handles = Vec::new();
        for ep in LocalNetwork::connect(&[0, 1]) {
            let aux = AuxMaterial::from_bytes(
                &std::fs::read(fixtures.join(format!("INSECURE-aux-n2-party{}.bin", ep.index)))
                    .unwrap(),
            )
            .unwrap();
            handles.push(tokio::spawn(async move {
                ecdsa::keygen(
                    SessionId([4; 32]),
                    t,
                    &aux,
                    ep.incoming,
                    ep.outgoing,
                    &mut OsRng,
                )
                .await
            }));
        }
        let ecdsa_share = concord_tss::KeyShare::Ecdsa(handles.remove(0).await.unwrap().unwrap());
        state.save_share(&ecdsa_share).unwrap();
        let mut handles = Vec::new();
        for ep in LocalNetwork::connect(&[0, 1]) {
            handles.push(tokio::spawn(async move {
                concord_tss::dkg(
                    cred_scheme,
                    concord_tss::EcdsaEngine::DEFAULT,
                    SessionId([5; 32]),
                    ep.index,
                    t,
                    None,
                    ep.incoming,
                    ep.outgoing,
                    &mut OsRng,
                )
                .await
            }));
        }
        let cred = handles.remove(0).await.unwrap().unwrap();
        state.save_share(&cred).unwrap();
        (ecdsa_share.wallet_id(), cred.wallet_id())
    }

    fn policy(wallet: WalletId, cred: WalletId) -> Policy {
        let p = |name: &str, i: u8, roles: &[Role]| Principal {
            name: name.into(),
            key: key(i).public(),
            roles: roles.to_vec(),
        };
        Policy {
            version: 1,
            previous: None,
            admin_quorum: 2,
            principals: vec![
                p("admin-1", 1, &[Role::Admin]),
                p("admin-2", 2, &[Role::Admin]),
                p("trader", TRADER, &[Role::Trader]),
                p("approver", APPROVER, &[Role::Approver]),
                p("importer", IMPORTER, &[Role::Importer]),
            ],
            wallets: vec![
                WalletRule {
                    wallet,
                    label: "desk".into(),
                    purpose: WalletPurpose::Trading {
                        deposit_to: vec!["binance".into()],
                        raw_messages: false,
                    },
                    limits: vec![CoinLimit {
                        coin: "ETH".into(),
                        per_transfer: "2".into(),
                        per_day: "3".into(),
                        cosign_above: Some("1".into()),
                        cosigners: 1,
                    }],
                    refresh: false,
                    derive: vec![],
                    multisig: None,
                    held: None,
                },
                WalletRule {
                    wallet: cred,
                    label: "binance-key".into(),
                    purpose: WalletPurpose::ExchangeCredential {
                        exchange: "binance".into(),
                        withdraw_to: vec!["desk".into()],
                    },
                    limits: vec![CoinLimit {
                        coin: "ETH".into(),
                        per_transfer: "1".into(),
                        per_day: "1.5".into(),
                        cosign_above: None,
                        cosigners: 0,
                    }],
                    refresh: false,
                    derive: vec![],
                    multisig: None,
                    held: None,
                },
            ],
            address_book: vec![
                AddressEntry {
                    label: "desk".into(),
                    target: AddressTarget::Wallet { wallet },
                },
                AddressEntry {
                    label: "cold".into(),
                    target: AddressTarget::Address {
                        network: "ETH".into(),
                        address: OUTSIDE.to_string(),
                    },
                },
            ],
            groups: vec![],
        }
    }

    /// A module with shares of a trading wallet and the exchange key, the policy above in
    /// force, its own chain (anvil) and exchange (the simulator) connections.
    struct Fx {
        _anvil: Anvil,
        sim: concord_exchange_sim::SimHandle,
        _dir: tempfile::TempDir,
        state: Arc<State>,
        decider: Decider,
        wallet: WalletId,
        cred: WalletId,
        /// The exchange's deposit address for ETH.
        honest: Address,
        /// The trading wallet's own address.
        own: Address,
    }

    /// Stops anvil when the test ends, however it ends.
    struct Anvil(std::process::Child);

    impl Drop for Anvil {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A fresh anvil on a free port, answering: the process and its RPC URL.
    async fn start_anvil() -> (Anvil, String) {
        let bin = concord_chain::anvil::anvil_binary(|m| eprintln!("{m}")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let anvil = Anvil(
            std::process::Command::new(bin)
                .args(["--port", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let rpc = format!("http://127.0.0.1:{port}");
        let client = concord_chain::EvmClient::new(&rpc).unwrap();
        for _ in 0..100 {
            if client.block_number().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        (anvil, rpc)
    }

    /// The simulator's read key of the account `trader` (HMAC), as the modules hold it.
    const READ_KEY: &str = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";
    const READ_SECRET: &str = "ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss";

    /// The exchange simulator on the node at `rpc`, with `coins`, an optional UTXO chain and
    /// the account `trader` (`balances`) read with [`READ_KEY`].
    async fn start_sim(
        rpc: &str,
        coins: serde_json::Value,
        utxo: Option<serde_json::Value>,
        balances: serde_json::Value,
    ) -> concord_exchange_sim::SimHandle {
        let mut config = serde_json::json!({
            "rpc_url": rpc, "chain_id": 31337, "confirmations": 1,
            "hot_wallet_key": "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
            "admin_token": "admin",
            "coins": coins,
            "accounts": [{"name": "trader", "balances": balances, "api_keys": [
                {"api_key": READ_KEY, "kind": "hmac", "secret": READ_SECRET, "permissions": ["read"]},
                {"api_key": CDP_READ_KEY, "kind": "cdp", "public_key": hex::encode(cdp_read_key().verifying_key().to_bytes()), "permissions": ["read"]},
                {"api_key": KRAKEN_READ_KEY, "kind": "kraken", "secret": KRAKEN_READ_SECRET, "permissions": ["read"]},
                {"api_key": KRAKEN_WITHDRAW_KEY, "kind": "kraken", "secret": KRAKEN_WITHDRAW_SECRET, "permissions": ["withdraw"]}]}],
        });
        if let Some(u) = utxo {
            config["utxo"] = u;
        }
        let config: concord_exchange_sim::SimConfig = serde_json::from_value(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        concord_exchange_sim::SimHandle::start(config, listener)
            .await
            .unwrap()
    }

    /// The simulator's deposit address of `trader` on `network`, from its admin endpoint.
    async fn sim_deposit_address(sim: &concord_exchange_sim::SimHandle, network: &str) -> String {
        let answer: serde_json::Value = reqwest::Client::new()
            .get(format!(
                "{}/sim/deposit-address?account=trader&network={network}",
                sim.base_url()
            ))
            .bearer_auth("admin")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["address"].as_str().unwrap().to_owned()
    }

    /// A module `m1` in `dir`: admins 1 and 2 pinned, the simulator's read secret stored.
    fn module_state(dir: &std::path::Path, checks: crate::config::LocalChecks) -> State {
        let kek = crate::state::test_kek();
        let state = State::create("m1", &dir.join("vault"), &kek, checks).unwrap();
        state
            .pin_admins(&AdminSet::new(vec![key(1).public(), key(2).public()], 2).unwrap())
            .unwrap();
        state
            .save_exchange_secret("binance", READ_SECRET.as_bytes())
            .unwrap();
        state
            .save_exchange_secret("kraken", KRAKEN_READ_SECRET.as_bytes())
            .unwrap();
        state
            .save_withdraw_secret("kraken", KRAKEN_WITHDRAW_SECRET.as_bytes())
            .unwrap();
        {
            use base64::Engine as _;
            let seed = base64::engine::general_purpose::STANDARD.encode(cdp_read_key().to_bytes());
            state
                .save_exchange_secret("coinbase", seed.as_bytes())
                .unwrap();
        }
        state
    }

    /// The module's Coinbase read key (a CDP Ed25519 key; test only).
    const CDP_READ_KEY: &str = "organizations/test/apiKeys/module-read";
    /// The module's Kraken read key and the withdraw key it holds (HMAC secrets, base64;
    /// INSECURE test keys).
    const KRAKEN_READ_KEY: &str = "kraken-read-m1";
    const KRAKEN_READ_SECRET: &str = "cmVhZC1zZWNyZXQtb2YtbTEtYXQta3Jha2VuLXRlc3Qtb25seQ==";
    const KRAKEN_WITHDRAW_KEY: &str = "kraken-withdraw";
    const KRAKEN_WITHDRAW_SECRET: &str = "d2l0aGRyYXctc2VjcmV0LWhlbGQtYnktbTEtdGVzdC1vbmx5";

    fn cdp_read_key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[0x42; 32])
    }

    /// `policy` signed by admins 1 and 2 and adopted.
    fn adopt(state: &State, policy: Policy) {
        let mut sp = SignedPolicy {
            policy,
            signatures: vec![],
        };
        sp.sign(&key(1));
        sp.sign(&key(2));
        state.adopt_policy(sp).unwrap();
    }

    /// The module's configuration: its chain (anvil at `rpc`), the simulator as `binance`,
    /// and a UTXO chain if given.
    fn module_config(
        state: &State,
        dir: &std::path::Path,
        rpc: Option<&str>,
        sim: &concord_exchange_sim::SimHandle,
        utxo: Option<crate::config::UtxoConfig>,
    ) -> crate::Config {
        crate::Config {
            id: "m1".into(),
            coordinator: crate::config::CoordinatorConfig {
                address: "127.0.0.1:1".into(),
                also: Vec::new(),
                identity: state.identity().public(),
            },
            vault: crate::config::VaultConfig {
                dir: dir.join("vault"),
                passphrase: Some(concord_vault::PassphraseSource::Env("UNUSED".into())),
                hsm: None,
            },
            checks: state.checks.clone(),
            chain: rpc.map(|rpc| ChainConfig {
                rpc_url: rpc.to_owned(),
                chain_id: 31337,
                network: "ETH".into(),
                tokens: vec![],
            }),
            exchanges: vec![
                ExchangeConfig {
                    name: "binance".into(),
                    kind: "binance".into(),
                    url: sim.base_url(),
                    read_api_key: READ_KEY.into(),
                    read_key_type: "hmac".into(),
                    api_host: None,
                    withdraw_api_key: None,
                },
                ExchangeConfig {
                    name: "coinbase".into(),
                    kind: "coinbase".into(),
                    url: sim.base_url(),
                    read_api_key: CDP_READ_KEY.into(),
                    read_key_type: "ed25519".into(),
                    api_host: None,
                    withdraw_api_key: None,
                },
                ExchangeConfig {
                    name: "kraken".into(),
                    kind: "kraken".into(),
                    url: sim.base_url(),
                    read_api_key: KRAKEN_READ_KEY.into(),
                    read_key_type: "hmac".into(),
                    api_host: None,
                    withdraw_api_key: Some(KRAKEN_WITHDRAW_KEY.into()),
                },
            ],
            utxo,
            metrics: None,
        }
    }

    /// A module's own key, made for a test.
    fn test_key(i: u8) -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_bytes((&[i; 32]).into()).unwrap()
    }

    /// The policy's rule of multisig wallet `def`: a trading wallet depositing to
    /// `binance`, with limits for `coin`.
    fn multisig_rule(
        def: &concord_wire::authority::MultisigDef,
        label: &str,
        coin: &str,
        per_transfer: &str,
        per_day: &str,
    ) -> WalletRule {
        WalletRule {
            wallet: def.wallet_id(),
            label: label.into(),
            purpose: WalletPurpose::Trading {
                deposit_to: vec!["binance".into()],
                raw_messages: false,
            },
            limits: vec![CoinLimit {
                coin: coin.into(),
                per_transfer: per_transfer.into(),
                per_day: per_day.into(),
                cosign_above: None,
                cosigners: 0,
            }],
            refresh: false,
            derive: vec![],
            multisig: Some(def.clone()),
            held: None,
        }
    }

    /// A multisig member with a test identity and own key.
    fn member(
        module: &str,
        identity: &IdentityKey,
        k: &k256::ecdsa::SigningKey,
    ) -> concord_wire::authority::MultisigMember {
        let own: [u8; 33] = k
            .verifying_key()
            .to_encoded_point(true)
            .as_bytes()
            .try_into()
            .unwrap();
        concord_wire::authority::MultisigMember {
            module: module.into(),
            identity: identity.public(),
            key: hex::encode(own),
            key_signature: hex::encode(identity.sign_multisig_key(&own)),
        }
    }

    /// This module as a multisig member, from what it publishes.
    fn own_member(state: &State) -> concord_wire::authority::MultisigMember {
        let info = state.public_info();
        concord_wire::authority::MultisigMember {
            module: "m1".into(),
            identity: state.identity().public(),
            key: info.multisig_key,
            key_signature: info.multisig_key_signature,
        }
    }

    /// An approval of `payload` under `job` by `module` for the agreement rule `rule`, signed
    /// with `identity` (another member's, made for a certificate).
    fn approval_by(
        job: &str,
        module: &str,
        identity: &IdentityKey,
        payload: &SigningPayload,
        policy: [u8; 32],
        intent: &str,
        rule: AgreementRule,
    ) -> Approval {
        let statement = ApprovalStatement {
            version: 2,
            job_id: job.into(),
            module_id: module.into(),
            wallet_id: payload.wallet(),
            digest: payload.digest(),
            policy,
            intent: intent.into(),
            rule,
            expires_at: concord_wire::authority::unix_now() + 600,
            checks: vec![],
        }
        .to_bytes();
        let signature = ApprovalStatement::sign(&statement, identity).to_vec();
        Approval {
            job_id: job.into(),
            digest: payload.digest().to_vec(),
            statement,
            signature,
            audit: None,
        }
    }

    async fn fixture(with_policy: bool) -> Fx {
        fixture_for(with_policy, "binance").await
    }

    /// [`fixture`], the exchange key being `exchange`'s (`binance` or `coinbase`).
    async fn fixture_for(with_policy: bool, exchange: &str) -> Fx {
        fixture_with(with_policy, exchange, Scheme::Ed25519).await
    }

    /// [`fixture_for`], the exchange key being a `cred_scheme` group key.
    async fn fixture_with(with_policy: bool, exchange: &str, cred_scheme: Scheme) -> Fx {
        let (anvil, rpc) = start_anvil().await;
        let sim = start_sim(
            &rpc,
            serde_json::json!([
                {"coin": "ETH", "network": "ETH", "decimals": 18, "withdraw_fee": "0", "withdraw_min": "0.001"},
                {"coin": "CTT", "network": "ETH", "decimals": 18, "contract": "0x0000000000000000000000000000000000000c77", "withdraw_fee": "0", "withdraw_min": "1"},
            ]),
            None,
            serde_json::json!({"ETH": "10"}),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let state = module_state(
            dir.path(),
            crate::config::LocalChecks {
                // Lets a test sign a request dated in the past (an expired earlier one).
                max_request_age_secs: 3600,
                ..Default::default()
            },
        );
        let (wallet, cred) = shares(&state, cred_scheme).await;
        if with_policy {
            let mut p = policy(wallet, cred);
            if let Some(WalletPurpose::ExchangeCredential { exchange: e, .. }) = p
                .wallets
                .iter_mut()
                .find(|w| w.wallet == cred)
                .map(|w| &mut w.purpose)
            {
                *e = exchange.into();
            }
            adopt(&state, p);
        }
        let config = module_config(&state, dir.path(), Some(&rpc), &sim, None);
        let outside = Outside::build(&config, &state).unwrap();
        let own = concord_chain::evm_address(&state.share(wallet).unwrap().unwrap().public_key())
            .unwrap();
        let state = Arc::new(state);
        let decider = Decider::new(state.clone(), state.identity(), outside);
        let honest: Address = sim_deposit_address(&sim, "ETH").await.parse().unwrap();
        Fx {
            _anvil: anvil,
            sim,
            _dir: dir,
            state,
            decider,
            wallet,
            cred,
            honest,
            own,
        }
    }

    fn signed(action: Action, requester: u8, cosigners: &[u8]) -> SignedIntent {
        let mut si = SignedIntent::new(Intent::new(action, 600), &key(requester));
        for c in cosigners {
            si.cosign(&key(*c));
        }
        si
    }

    fn deposit_intent(wallet: WalletId, amount: &str) -> Action {
        Action::Deposit {
            wallet,
            exchange: "binance".into(),
            coin: "ETH".into(),
            network: "ETH".into(),
            amount: amount.into(),
            rule: AgreementRule::All,
        }
    }

    /// The deposit payload a coordinator proposes for an intent (recipient, amount and nonce
    /// as given).
    fn deposit(
        si: &SignedIntent,
        wallet: WalletId,
        recipient: Address,
        amount: &str,
        nonce: u64,
    ) -> SigningPayload {
        SigningPayload::EvmTransfer {
            transfer: si.intent.id.clone(),
            wallet,
            chain_id: 31337,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            asset: Asset::Native,
            amount: concord_wire::units::parse_amount(amount, 18).unwrap(),
            recipient,
            destination: Destination::ExchangeDeposit {
                exchange: "binance".into(),
                coin: "ETH".into(),
                network: "ETH".into(),
            },
        }
    }

    fn proposal(job: &str, payload: &SigningPayload, si: &SignedIntent) -> Proposal {
        Proposal {
            job_id: job.into(),
            wallet_id: payload.wallet().0.to_vec(),
            payload: payload.to_canonical(),
            digest: payload.digest().to_vec(),
            intent: si.to_json(),
        }
    }

    async fn refused(fx: &Fx, job: &str, payload: &SigningPayload, si: &SignedIntent, want: &str) {
        let r = fx
            .decider
            .decide(&proposal(job, payload, si))
            .await
            .unwrap_err();
        assert!(r.reason.contains(want), "wanted {want:?} in: {}", r.reason);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_coordinator_gets_approved_only_what_the_intent_says() {
        let fx = fixture(true).await;
        let si = signed(deposit_intent(fx.wallet, "0.5"), TRADER, &[]);
        // Another destination: refused, naming both addresses.
        let p = deposit(&si, fx.wallet, OUTSIDE, "0.5", 0);
        refused(&fx, "j1", &p, &si, &fx.honest.to_string()).await;
        // Coded as the forged-address attack it is (operators alert on it), not an outage.
        let r = fx
            .decider
            .decide(&proposal("j1b", &p, &si))
            .await
            .unwrap_err();
        assert_eq!(r.code, code::DESTINATION, "{}", r.reason);
        // Another amount than the intent, consistently in payload and digest.
        let p = deposit(&si, fx.wallet, fx.honest, "0.9", 0);
        refused(
            &fx,
            "j2",
            &p,
            &si,
            "the proposal's amount (0.9 ETH) is not the intent's (0.5 ETH)",
        )
        .await;
        // A digest that is not the payload's.
        let mut pr = proposal("j3", &deposit(&si, fx.wallet, fx.honest, "0.5", 0), &si);
        pr.digest = deposit(&si, fx.wallet, fx.honest, "1.5", 0)
            .digest()
            .to_vec();
        let r = fx.decider.decide(&pr).await.unwrap_err();
        assert!(r.reason.contains("is not the digest"), "{}", r.reason);
        // Another transfer id than the intent's.
        let mut p = deposit(&si, fx.wallet, fx.honest, "0.5", 0);
        if let SigningPayload::EvmTransfer { transfer, .. } = &mut p {
            *transfer = "other".into();
        }
        refused(&fx, "j4", &p, &si, "transfer id").await;
        // No intent at all.
        let mut pr = proposal("j5", &deposit(&si, fx.wallet, fx.honest, "0.5", 0), &si);
        pr.intent.clear();
        let r = fx.decider.decide(&pr).await.unwrap_err();
        assert!(r.reason.contains("signed intent"), "{}", r.reason);
        // The honest proposal: approved, naming the policy hash, the intent and the rule.
        let honest = deposit(&si, fx.wallet, fx.honest, "0.5", 0);
        let a = fx
            .decider
            .decide(&proposal("j6", &honest, &si))
            .await
            .unwrap();
        let st = ApprovalStatement::from_bytes(&a.statement).unwrap();
        ApprovalStatement::verify(&a.statement, &a.signature, &fx.state.identity().public())
            .unwrap();
        assert_eq!(st.policy, fx.state.policy().unwrap().hash);
        assert_eq!(st.intent, si.intent.id);
        assert_eq!(st.digest, honest.digest());
        // Asked again under the same job: the same approval, verbatim.
        assert_eq!(
            fx.decider
                .decide(&proposal("j6", &honest, &si))
                .await
                .unwrap()
                .signature,
            a.signature
        );
        // The intent replayed for another transaction (another nonce): refused.
        refused(
            &fx,
            "j7",
            &deposit(&si, fx.wallet, fx.honest, "0.5", 1),
            &si,
            "already used",
        )
        .await;
        // The same transaction under another job is the same payment: approved again.
        fx.decider
            .decide(&proposal("j8", &honest, &si))
            .await
            .unwrap();
        // The exchange key never signs a raw message, whatever the intent.
        let msg = SigningPayload::Message {
            wallet: fx.cred,
            message: b"coin=ETH&address=0x66".to_vec(),
            nonce: None,
        };
        let si = signed(
            Action::SignMessage {
                wallet: fx.cred,
                message: b"coin=ETH&address=0x66".to_vec(),
                rule: AgreementRule::All,
            },
            TRADER,
            &[],
        );
        refused(&fx, "j9", &msg, &si, "withdraw key").await;
        fx.sim.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn intents_must_be_signed_by_the_policy_s_principals_within_its_limits() {
        let fx = fixture(false).await;
        // No policy yet: nothing is approved.
        let si = signed(deposit_intent(fx.wallet, "0.5"), TRADER, &[]);
        refused(
            &fx,
            "n1",
            &deposit(&si, fx.wallet, fx.honest, "0.5", 0),
            &si,
            "no policy yet",
        )
        .await;
        let mut sp = SignedPolicy {
            policy: policy(fx.wallet, fx.cred),
            signatures: vec![],
        };
        sp.sign(&key(1));
        sp.sign(&key(2));
        fx.state.adopt_policy(sp).unwrap();
        // A key the policy does not name; an importer asking for a deposit.
        let si = signed(deposit_intent(fx.wallet, "0.5"), STRANGER, &[]);
        refused(
            &fx,
            "k1",
            &deposit(&si, fx.wallet, fx.honest, "0.5", 0),
            &si,
            "not a principal",
        )
        .await;
        let si = signed(deposit_intent(fx.wallet, "0.5"), IMPORTER, &[]);
        refused(
            &fx,
            "k2",
            &deposit(&si, fx.wallet, fx.honest, "0.5", 0),
            &si,
            "role 'trader'",
        )
        .await;
        // Expired.
        let mut i = Intent::new(deposit_intent(fx.wallet, "0.5"), 600);
        i.created_at -= 1000;
        i.expires_at = i.created_at + 600;
        let si = SignedIntent::new(i, &key(TRADER));
        refused(
            &fx,
            "k3",
            &deposit(&si, fx.wallet, fx.honest, "0.5", 0),
            &si,
            "expired",
        )
        .await;
        // Above 1 ETH the policy wants an approver's co-signature; a trader's does not count.
        let si = signed(deposit_intent(fx.wallet, "1.5"), TRADER, &[]);
        refused(
            &fx,
            "k4",
            &deposit(&si, fx.wallet, fx.honest, "1.5", 0),
            &si,
            "needs 1 approver co-signature",
        )
        .await;
        let si = signed(deposit_intent(fx.wallet, "1.5"), TRADER, &[IMPORTER]);
        refused(
            &fx,
            "k5",
            &deposit(&si, fx.wallet, fx.honest, "1.5", 0),
            &si,
            "role 'approver'",
        )
        .await;
        // Over the limit per transfer.
        let si = signed(deposit_intent(fx.wallet, "2.5"), TRADER, &[APPROVER]);
        refused(
            &fx,
            "k6",
            &deposit(&si, fx.wallet, fx.honest, "2.5", 0),
            &si,
            "limit of 2 ETH per transfer",
        )
        .await;
        // Within the limits, co-signed: approved; then the rolling 24 h limit (3 ETH).
        let si = signed(deposit_intent(fx.wallet, "1.5"), TRADER, &[APPROVER]);
        fx.decider
            .decide(&proposal(
                "k7",
                &deposit(&si, fx.wallet, fx.honest, "1.5", 0),
                &si,
            ))
            .await
            .unwrap();
        let si = signed(deposit_intent(fx.wallet, "1"), TRADER, &[]);
        fx.decider
            .decide(&proposal(
                "k8",
                &deposit(&si, fx.wallet, fx.honest, "1", 1),
                &si,
            ))
            .await
            .unwrap();
        let si = signed(deposit_intent(fx.wallet, "0.75"), TRADER, &[]);
        refused(
            &fx,
            "k9",
            &deposit(&si, fx.wallet, fx.honest, "0.75", 2),
            &si,
            "over its daily limit of 3 ETH (2.5 ETH already approved)",
        )
        .await;
        // Raw messages are off for this wallet.
        let msg = SigningPayload::Message {
            wallet: fx.wallet,
            message: vec![7; 32],
            nonce: None,
        };
        let si = signed(
            Action::SignMessage {
                wallet: fx.wallet,
                message: vec![7; 32],
                rule: AgreementRule::All,
            },
            TRADER,
            &[],
        );
        refused(&fx, "k10", &msg, &si, "does not allow raw message signing").await;
        // A wallet the policy does not name signs nothing (here: message intent and payload
        // both for a wallet the module holds but the policy leaves out).
        let mut sp = SignedPolicy {
            policy: Policy {
                version: 2,
                previous: Some(fx.state.policy().unwrap().hash),
                wallets: vec![],
                address_book: vec![],
                groups: vec![],
                ..policy(fx.wallet, fx.cred)
            },
            signatures: vec![],
        };
        // One admin is not the quorum: the policy in force stays.
        sp.sign(&key(1));
        assert!(
            fx.state
                .adopt_policy(sp.clone())
                .unwrap_err()
                .to_string()
                .contains("1 valid signature")
        );
        sp.sign(&key(2));
        fx.state.adopt_policy(sp).unwrap();
        let si = signed(deposit_intent(fx.wallet, "0.1"), TRADER, &[]);
        refused(
            &fx,
            "k11",
            &deposit(&si, fx.wallet, fx.honest, "0.1", 2),
            &si,
            "is not named in policy v2",
        )
        .await;
        fx.sim.shutdown().await.unwrap();
    }

    fn withdraw_intent(to: AddressRef, amount: &str) -> Action {
        Action::Withdraw {
            exchange: "binance".into(),
            coin: "ETH".into(),
            network: "ETH".into(),
            amount: amount.into(),
            to,
            rule: AgreementRule::All,
        }
    }

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    fn withdrawal(
        si: &SignedIntent,
        cred: WalletId,
        to: Address,
        amount: &str,
        order: &str,
        ts: u64,
    ) -> SigningPayload {
        SigningPayload::ExchangeWithdrawal {
            transfer: si.intent.id.clone(),
            wallet: cred,
            exchange: "binance".into(),
            api_key: "group-key".into(),
            request: WithdrawParams {
                coin: "ETH".into(),
                network: "ETH".into(),
                address: to.to_string(),
                amount: amount.into(),
                withdraw_order_id: Some(order.into()),
                timestamp_ms: ts,
                recv_window_ms: 5000,
            }
            .to_query(),
            body: None,
        }
    }

    /// A Coinbase send a coordinator proposes: the token's claims as `claims` leaves them
    /// (honest: the group's key, EdDSA, POST to the simulator's host, the sends of the
    /// trader's ETH account, live now) and the body as `body` leaves it.
    fn coinbase_send(
        si: &SignedIntent,
        cred: WalletId,
        account: &str,
        host: &str,
        claims: impl FnOnce(&mut concord_exchange::coinbase::RequestClaims),
        body: impl FnOnce(&mut concord_exchange::coinbase::SendBody),
    ) -> SigningPayload {
        use concord_exchange::coinbase::{CoinbaseClient, JwtAlg, RequestClaims, send_path};
        let mut c = RequestClaims::new(
            "group-key",
            JwtAlg::EdDsa,
            "POST",
            host,
            &send_path(account),
            now_ms() / 1000,
        );
        c.exp = c.nbf + concord_exchange::coinbase::SEND_LIFETIME_SECS;
        claims(&mut c);
        let Action::Withdraw { amount, .. } = &si.intent.action else {
            panic!("a withdrawal intent");
        };
        let mut b = CoinbaseClient::send_body(&concord_exchange::WithdrawRequest {
            coin: "ETH".into(),
            network: "ETH".into(),
            address: String::new(),
            amount: amount.clone(),
            withdraw_order_id: Some(si.intent.id.clone()),
        })
        .unwrap();
        body(&mut b);
        SigningPayload::ExchangeWithdrawal {
            transfer: si.intent.id.clone(),
            wallet: cred,
            exchange: "coinbase".into(),
            api_key: "group-key".into(),
            request: c.signing_input(),
            body: Some(b.to_json()),
        }
    }

    /// Registers a Kraken withdrawal key on the simulator's account `trader`.
    async fn kraken_withdraw_key(sim: &concord_exchange_sim::SimHandle, key: &str, to: Address) {
        kraken_withdraw_key_with(sim, key, to, None).await;
    }

    /// [`kraken_withdraw_key`], with the memo Kraken would add to withdrawals to it.
    async fn kraken_withdraw_key_with(
        sim: &concord_exchange_sim::SimHandle,
        key: &str,
        to: Address,
        memo: Option<&str>,
    ) {
        let mut body = serde_json::json!({"account": "trader", "key": key, "coin": "ETH",
            "network": "ETH", "address": to.to_string()});
        if let Some(memo) = memo {
            body["memo"] = serde_json::json!(memo);
        }
        sim_admin_post(sim, "/sim/kraken/withdraw-keys", &body).await;
    }

    /// Posts `body` to the simulator's admin `path`; fails the test unless it is accepted.
    async fn sim_admin_post(
        sim: &concord_exchange_sim::SimHandle,
        path: &str,
        body: &serde_json::Value,
    ) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", sim.base_url()))
            .bearer_auth("admin")
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// Adopts a policy naming Kraken's withdraw key as a held credential: m1 (this module)
    /// holds it, m2 and m3 (`key(21)`, `key(22)`) are the other members, two approvals
    /// needed, 1 ETH per transfer and 1.5 a day. Returns the held credential's wallet id.
    fn adopt_kraken_held(fx: &Fx) -> WalletId {
        use concord_wire::authority::{HeldCredential, HeldMember};
        let def = HeldCredential {
            exchange: "kraken".into(),
            api_key: KRAKEN_WITHDRAW_KEY.into(),
            holder: "m1".into(),
            threshold: 2,
            members: vec![
                HeldMember {
                    module: "m1".into(),
                    identity: fx.state.identity().public(),
                },
                HeldMember {
                    module: "m2".into(),
                    identity: key(21).public(),
                },
                HeldMember {
                    module: "m3".into(),
                    identity: key(22).public(),
                },
            ],
        };
        let held = def.wallet_id();
        let mut p = policy(fx.wallet, fx.cred);
        p.wallets.push(WalletRule {
            wallet: held,
            label: "kraken-key".into(),
            purpose: WalletPurpose::ExchangeCredential {
                exchange: "kraken".into(),
                withdraw_to: vec!["desk".into()],
            },
            limits: vec![CoinLimit {
                coin: "ETH".into(),
                per_transfer: "1".into(),
                per_day: "1.5".into(),
                cosign_above: None,
                cosigners: 0,
            }],
            refresh: false,
            derive: vec![],
            multisig: None,
            held: Some(def),
        });
        adopt(&fx.state, p);
        held
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kraken_withdrawals_are_approved_by_the_members_and_sent_once_by_the_holder() {
        use concord_exchange::kraken::WithdrawForm;
        let fx = fixture_for(false, "binance").await;
        let (id2, id3, stranger) = (key(21), key(22), key(STRANGER));
        let held = adopt_kraken_held(&fx);
        // The desk's address under a memo, registered first: at a shared address the memo,
        // which the address book does not name, says whose funds they become.
        kraken_withdraw_key_with(&fx.sim, "desk-tagged", fx.own, Some("4242")).await;
        // The account holder registered the desk wallet, and (an attacker's doing, or a
        // mistake) another address too.
        kraken_withdraw_key(&fx.sim, "desk-wallet", fx.own).await;
        kraken_withdraw_key(&fx.sim, "elsewhere", OUTSIDE).await;
        // Asked which key withdraws to the desk, a module names the one without a memo.
        let a = fx
            .decider
            .outside
            .answer(concord_wire::rpc::ExchangeQuery {
                request_id: "wk".into(),
                exchange: "kraken".into(),
                query: Some(concord_wire::rpc::exchange_query::Query::WithdrawKey(
                    concord_wire::rpc::WithdrawKeyQuery {
                        coin: "ETH".into(),
                        address: fx.own.to_string(),
                    },
                )),
            })
            .await;
        assert!(a.error.is_empty(), "{}", a.error);
        assert_eq!(
            serde_json::from_slice::<String>(&a.json).unwrap(),
            "desk-wallet"
        );
        let si = signed(
            Action::Withdraw {
                exchange: "kraken".into(),
                coin: "ETH".into(),
                network: "ETH".into(),
                amount: "0.5".into(),
                to: AddressRef::Label("desk".into()),
                // Two of three suffice: the holder must still be one of them.
                rule: AgreementRule::Threshold,
            },
            TRADER,
            &[],
        );
        let form = |key: &str, amount: &str, to: Address| WithdrawForm {
            asset: "ETH".into(),
            key: key.into(),
            amount: amount.into(),
            address: to.to_string(),
        };
        let payload = |api_key: &str, request: String, body: Option<String>| {
            SigningPayload::ExchangeWithdrawal {
                transfer: si.intent.id.clone(),
                wallet: held,
                exchange: "kraken".into(),
                api_key: api_key.into(),
                request,
                body,
            }
        };
        let honest = payload(
            KRAKEN_WITHDRAW_KEY,
            form("desk-wallet", "0.5", fx.own).to_form(),
            None,
        );
        // The forged-address attack on Kraken: a registered key that withdraws elsewhere.
        let forged = payload(
            KRAKEN_WITHDRAW_KEY,
            form("elsewhere", "0.5", OUTSIDE).to_form(),
            None,
        );
        let r = fx
            .decider
            .decide(&proposal("k1", &forged, &si))
            .await
            .unwrap_err();
        assert_eq!(r.code, code::DESTINATION, "{}", r.reason);
        assert!(
            r.reason
                .contains("which is not \"desk\" of the address book"),
            "{}",
            r.reason
        );
        for (job, p, want) in [
            // The desk's key, but an address Kraken would refuse: never approved either.
            (
                "k2",
                payload(
                    KRAKEN_WITHDRAW_KEY,
                    form("desk-wallet", "0.5", OUTSIDE).to_form(),
                    None,
                ),
                "not to the request's",
            ),
            (
                "k3",
                payload(
                    "another-key",
                    form("desk-wallet", "0.5", fx.own).to_form(),
                    None,
                ),
                "names kraken's key",
            ),
            (
                "k4",
                payload(
                    KRAKEN_WITHDRAW_KEY,
                    format!("key=desk-wallet&asset=ETH&amount=0.5&address={}", fx.own),
                    None,
                ),
                "not one this module approves",
            ),
            (
                "k5",
                payload(
                    KRAKEN_WITHDRAW_KEY,
                    form("nope", "0.5", fx.own).to_form(),
                    None,
                ),
                "has no withdrawal key \"nope\"",
            ),
            (
                "k5m",
                payload(
                    KRAKEN_WITHDRAW_KEY,
                    form("desk-tagged", "0.5", fx.own).to_form(),
                    None,
                ),
                "carries the memo \"4242\"",
            ),
            (
                "k6",
                payload(
                    KRAKEN_WITHDRAW_KEY,
                    form("desk-wallet", "0.5", fx.own).to_form(),
                    Some("{}".into()),
                ),
                "carries no separate body",
            ),
            (
                "k7",
                payload(
                    KRAKEN_WITHDRAW_KEY,
                    form("desk-wallet", "0.9", fx.own).to_form(),
                    None,
                ),
                "amount",
            ),
        ] {
            refused(&fx, job, &p, &si, want).await;
        }
        // A Kraken request under the Binance key's group wallet: not a held credential.
        let mut on_group_key = honest.clone();
        if let SigningPayload::ExchangeWithdrawal { wallet, .. } = &mut on_group_key {
            *wallet = fx.cred;
        }
        refused(
            &fx,
            "k8",
            &on_group_key,
            &si,
            "is not exchange kraken's withdraw key",
        )
        .await;

        // The honest request: approved, the checks naming the key and its address.
        let a = fx
            .decider
            .decide(&proposal("k-ok", &honest, &si))
            .await
            .unwrap();
        let st = ApprovalStatement::from_bytes(&a.statement).unwrap();
        let all = st.checks.join("\n");
        assert!(
            all.contains("withdrawal key \"desk-wallet\" is verified"),
            "{all}"
        );
        // Another request for the same transfer (other bytes): never approved, Kraken has no
        // client order id to tell them apart.
        refused(
            &fx,
            "k-again",
            &payload(
                KRAKEN_WITHDRAW_KEY,
                form("desk-wallet", "0.50", fx.own).to_form(),
                None,
            ),
            &si,
            "already approved for transfer",
        )
        .await;

        // The holder sends only under a certificate of the members' approvals.
        let policy_hash = fx.state.policy().unwrap().hash;
        let by = |module: &str, identity: &IdentityKey| {
            approval_by(
                "k-ok",
                module,
                identity,
                &honest,
                policy_hash,
                &si.intent.id,
                AgreementRule::Threshold,
            )
        };
        let outside = &fx.decider.outside;
        let refused_send = |certificate: Vec<Approval>, want: &'static str| {
            let state = fx.state.clone();
            async move {
                let e = crate::held::send(&state, outside, "k-ok", &certificate)
                    .await
                    .err()
                    .unwrap();
                assert!(!e.outcome_unknown);
                assert!(
                    e.error.to_string().contains(want),
                    "wanted {want:?} in: {}",
                    e.error
                );
            }
        };
        refused_send(vec![], "certificate").await;
        refused_send(vec![a.clone()], "certificate").await;
        refused_send(vec![by("m2", &id2)], "certificate").await;
        // Approvals attributed to m2 and m3 but signed by a stranger.
        refused_send(
            vec![a.clone(), by("m2", &stranger), by("m3", &stranger)],
            "not signed by its pinned identity",
        )
        .await;
        // Enough members, but not the holder's own approval: its limits may not count this
        // job (an approval that expired unsent no longer does), so it never sends on others'.
        refused_send(vec![by("m2", &id2), by("m3", &id3)], "own live approval").await;
        // A job this module refused: it holds no approval to send under.
        let e = crate::held::send(&fx.state, outside, "k1", std::slice::from_ref(&a))
            .await
            .err()
            .unwrap();
        assert!(e.error.to_string().contains("no approval"), "{}", e.error);
        // Nothing reached Kraken so far.
        let kraken = fx.decider.outside.kraken("kraken").unwrap().clone();
        let none: Vec<concord_exchange::Withdrawal> = Vec::new();
        assert_eq!(
            concord_exchange::Connector::withdrawal(&*kraken, "any")
                .await
                .unwrap(),
            none.first().cloned()
        );
        let certificate = vec![a.clone(), by("m2", &id2), by("m3", &id3)];
        let (id, audit) = crate::held::send(&fx.state, outside, "k-ok", &certificate)
            .await
            .map_err(|e| e.error)
            .unwrap();
        assert!(audit.is_some());
        let w = concord_exchange::Connector::withdrawal(&*kraken, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(w.amount.parse::<f64>().unwrap(), 0.5);
        assert_eq!(w.address.parse::<Address>().unwrap(), fx.own);
        // Asked again (a lost answer, a second coordinator): the same withdrawal, not another.
        let (again, audit) = crate::held::send(&fx.state, outside, "k-ok", &certificate)
            .await
            .map_err(|e| e.error)
            .unwrap();
        assert_eq!(again, id);
        assert!(audit.is_none());
        // One withdrawal of 0.5 ETH left the account's 10 (the simulator's fee here is 0).
        let balances = concord_exchange::Connector::balances(&*kraken)
            .await
            .unwrap();
        let eth = balances.iter().find(|b| b.asset == "ETH").unwrap();
        assert_eq!(eth.free.parse::<f64>().unwrap(), 9.5, "{balances:?}");
        // Its approval is bound: the coordinator can no longer release it.
        assert!(fx.state.release_approval("k-ok").is_err());
        fx.sim.shutdown().await.unwrap();
    }

    /// A Kraken send whose answer was lost (the simulator executes the withdrawal and answers
    /// 504 late): never sent again; asked again, the holder finds it in `WithdrawStatus`, the
    /// one withdrawal of that asset, amount and address since the send that no other request
    /// claims. When two match (the account's owner withdrew the same amount to the same key
    /// meanwhile), none is taken.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kraken_send_whose_answer_was_lost_is_found_once_and_never_sent_again() {
        use concord_exchange::kraken::WithdrawForm;
        let fx = fixture_for(false, "binance").await;
        let held = adopt_kraken_held(&fx);
        kraken_withdraw_key(&fx.sim, "desk-wallet", fx.own).await;
        let outside = &fx.decider.outside;
        let kraken = outside.kraken("kraken").unwrap().clone();
        let policy_hash = fx.state.policy().unwrap().hash;
        let form_of = |amount: &str| WithdrawForm {
            asset: "ETH".into(),
            key: "desk-wallet".into(),
            amount: amount.into(),
            address: fx.own.to_string(),
        };
        let form = form_of("0.5");
        // One transfer of `amount` ETH to the desk, approved by m1 and m2: its certificate.
        let approved = |job: &'static str, amount: &'static str| {
            let si = signed(
                Action::Withdraw {
                    exchange: "kraken".into(),
                    coin: "ETH".into(),
                    network: "ETH".into(),
                    amount: amount.into(),
                    to: AddressRef::Label("desk".into()),
                    rule: AgreementRule::Threshold,
                },
                TRADER,
                &[],
            );
            let payload = SigningPayload::ExchangeWithdrawal {
                transfer: si.intent.id.clone(),
                wallet: held,
                exchange: "kraken".into(),
                api_key: KRAKEN_WITHDRAW_KEY.into(),
                request: form_of(amount).to_form(),
                body: None,
            };
            let fx = &fx;
            async move {
                let own = fx
                    .decider
                    .decide(&proposal(job, &payload, &si))
                    .await
                    .unwrap();
                let m2 = approval_by(
                    job,
                    "m2",
                    &key(21),
                    &payload,
                    policy_hash,
                    &si.intent.id,
                    AgreementRule::Threshold,
                );
                vec![own, m2]
            }
        };
        let fault = |body: serde_json::Value| {
            let sim = &fx.sim;
            async move { sim_admin_post(sim, "/sim/faults", &body).await }
        };
        // Executed, its answer lost.
        let lose_next_answer = || {
            fault(serde_json::json!({"withdrawTimeoutAfterAccept": {"count": 1, "delayMs": 50}}))
        };
        let eth = || async {
            let b = concord_exchange::Connector::balances(&*kraken)
                .await
                .unwrap();
            b.iter()
                .find(|b| b.asset == "ETH")
                .unwrap()
                .free
                .parse::<f64>()
                .unwrap()
        };

        // A send whose outcome is unknown (and never sent again): its message.
        let unknown = |job: &'static str, cert: &Vec<Approval>| {
            let state = fx.state.clone();
            let cert = cert.clone();
            async move {
                let e = crate::held::send(&state, outside, job, &cert)
                    .await
                    .err()
                    .unwrap();
                assert!(e.outcome_unknown, "{}", e.error);
                e.error.to_string()
            }
        };
        let certificate = approved("lost-1", "0.5").await;
        lose_next_answer().await;
        unknown("lost-1", &certificate).await;
        // It was executed.
        assert_eq!(eth().await, 9.5);
        // Asked again: found, not sent again.
        let (id, audit) = crate::held::send(&fx.state, outside, "lost-1", &certificate)
            .await
            .map_err(|e| e.error)
            .unwrap();
        assert!(audit.is_none(), "nothing new left this module");
        let w = concord_exchange::Connector::withdrawal(&*kraken, &id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(w.address.parse::<Address>().unwrap(), fx.own);
        let (again, _) = crate::held::send(&fx.state, outside, "lost-1", &certificate)
            .await
            .map_err(|e| e.error)
            .unwrap();
        assert_eq!(again, id);
        assert_eq!(eth().await, 9.5, "one withdrawal, whatever was asked");

        // A second transfer of the same amount to the same key, its answer lost too; the
        // first one's withdrawal (within the clock slack, but claimed) is not taken for it.
        // Meanwhile the account's owner withdraws the same amount to the same key by hand:
        // two candidates, none taken.
        let certificate = approved("lost-2", "0.5").await;
        lose_next_answer().await;
        unknown("lost-2", &certificate).await;
        let by_hand = outside
            .kraken_holder("kraken")
            .unwrap()
            .withdraw_form(&form)
            .await
            .unwrap();
        assert_eq!(eth().await, 8.5);
        let msg = unknown("lost-2", &certificate).await;
        assert!(
            msg.contains("2 withdrawals") && msg.contains(&by_hand),
            "{msg}"
        );
        assert!(
            !msg.contains(&id),
            "the first transfer's withdrawal is claimed: {msg}"
        );
        assert_eq!(eth().await, 8.5, "never sent again");
        // Two requests of the same withdrawal (0.2 ETH to the desk) lost at about the same
        // time: the first never reached Kraken's backend (a 503 before it acted), the second
        // executed with its answer lost. Neither takes the one withdrawal: which is whose
        // cannot be told (taking it for the first would report a withdrawal that never
        // happened as sent, and leave the real one unknown).
        let first = approved("twin-1", "0.2").await;
        fault(serde_json::json!({"http5xx": {"count": 1, "paths": ["/0/private/Withdraw"]}})).await;
        unknown("twin-1", &first).await;
        assert_eq!(eth().await, 8.5, "the 503 came before Kraken acted");
        let second = approved("twin-2", "0.2").await;
        lose_next_answer().await;
        unknown("twin-2", &second).await;
        assert_eq!(eth().await, 8.3);
        for (job, cert) in [("twin-1", &first), ("twin-2", &second)] {
            let msg = unknown(job, cert).await;
            assert!(msg.contains("lost at about the same time"), "{msg}");
        }
        assert_eq!(eth().await, 8.3, "never sent again");
        fx.sim.shutdown().await.unwrap();
    }

    /// The trader's ETH account at Coinbase as the module's read key lists it, the
    /// simulator's host, and the trader's signed intent to withdraw 0.5 ETH to "desk".
    async fn coinbase_setup(fx: &Fx) -> (String, String, SignedIntent) {
        let account = fx
            .decider
            .outside
            .coinbase("coinbase")
            .unwrap()
            .client
            .account_id("ETH")
            .await
            .unwrap();
        let host = fx
            .sim
            .base_url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let si = signed(
            Action::Withdraw {
                exchange: "coinbase".into(),
                coin: "ETH".into(),
                network: "ETH".into(),
                amount: "0.5".into(),
                to: AddressRef::Label("desk".into()),
                rule: AgreementRule::All,
            },
            TRADER,
            &[],
        );
        (account, host, si)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn coinbase_sends_are_read_strictly_and_checked_against_the_modules_own_account() {
        use concord_exchange::coinbase::JwtAlg;
        let fx = fixture_for(true, "coinbase").await;
        let (account, host, si) = coinbase_setup(&fx).await;
        let own = fx.own.to_string();
        let send = |claims: &dyn Fn(&mut concord_exchange::coinbase::RequestClaims),
                    body: &dyn Fn(&mut concord_exchange::coinbase::SendBody)| {
            coinbase_send(&si, fx.cred, &account, &host, claims, |b| {
                b.to = own.clone();
                body(b)
            })
        };
        let honest = |_: &mut concord_exchange::coinbase::RequestClaims| {};
        let same = |_: &mut concord_exchange::coinbase::SendBody| {};
        // The forged-address attack on a Coinbase withdrawal: the body sends elsewhere.
        let forged = send(&honest, &|b| b.to = OUTSIDE.to_string());
        refused(
            &fx,
            "c1",
            &forged,
            &si,
            "which is not \"desk\" of the address book",
        )
        .await;
        let r = fx
            .decider
            .decide(&proposal("c1b", &forged, &si))
            .await
            .unwrap_err();
        assert_eq!(r.code, code::DESTINATION, "{}", r.reason);
        // The token for something else than this send.
        type Change = Box<dyn Fn(&mut concord_exchange::coinbase::RequestClaims)>;
        let cases: Vec<(&str, Change, &str)> = vec![
            (
                "c2",
                Box::new(|c| c.path = "/v2/accounts/other/transactions".into()),
                "not the sends of the ETH account",
            ),
            (
                "c3",
                Box::new(|c| c.host = "api.example.com".into()),
                "names host",
            ),
            (
                "c4",
                Box::new(|c| c.method = "GET".into()),
                "not a send (POST)",
            ),
            (
                "c5",
                Box::new(|c| c.key_name = "another-key".into()),
                "names key",
            ),
            ("c6", Box::new(|c| c.alg = JwtAlg::Es256), "Ed25519"),
            (
                "c6b",
                Box::new(|c| c.exp = c.nbf + 120),
                "a send's token lives at most 30 s",
            ),
            (
                "c7",
                Box::new(|c| {
                    c.nbf -= 7200;
                    c.exp -= 7200;
                }),
                "not now",
            ),
        ];
        for (job, change, want) in cases {
            refused(&fx, job, &send(&*change, &same), &si, want).await;
        }
        // The body: another order, amount, currency or network; not canonical; missing.
        refused(
            &fx,
            "c8",
            &send(&honest, &|b| b.idem = Some("other".into())),
            &si,
            "idem",
        )
        .await;
        refused(
            &fx,
            "c9",
            &send(&honest, &|b| b.amount = "0.7".into()),
            &si,
            "amount",
        )
        .await;
        refused(
            &fx,
            "c10",
            &send(&honest, &|b| b.network = "base".into()),
            &si,
            "network",
        )
        .await;
        let mut loose = send(&honest, &same);
        if let SigningPayload::ExchangeWithdrawal { body, .. } = &mut loose {
            *body = body.as_ref().map(|b| b.replace(",", ", "));
        }
        refused(&fx, "c11", &loose, &si, "canonical").await;
        let mut bare = send(&honest, &same);
        if let SigningPayload::ExchangeWithdrawal { body, .. } = &mut bare {
            *body = None;
        }
        refused(&fx, "c12", &bare, &si, "needs its body").await;
        // The honest send: approved; a second token for the same order while the first
        // lives: refused.
        fx.decider
            .decide(&proposal("c13", &send(&honest, &same), &si))
            .await
            .unwrap();
        refused(
            &fx,
            "c14",
            &send(&|c| c.nonce = "another".into(), &same),
            &si,
            "signs one live request per order",
        )
        .await;
    }

    /// Coinbase's ES256 keys: the group's withdraw key is a P-256 key (DKLs23). Its tokens
    /// are ES256 only, a token claiming EdDSA is refused (a swap of algorithm is a swap of
    /// key), and a Binance request under it is refused (Binance's keys are Ed25519).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn coinbase_sends_under_a_p256_group_key_are_es256_and_nothing_else() {
        use concord_exchange::coinbase::JwtAlg;
        let fx = fixture_with(true, "coinbase", Scheme::EcdsaP256).await;
        assert_eq!(
            fx.state.share(fx.cred).unwrap().unwrap().scheme(),
            Scheme::EcdsaP256
        );
        let (account, host, si) = coinbase_setup(&fx).await;
        let own = fx.own.to_string();
        let send = |alg: JwtAlg| {
            coinbase_send(
                &si,
                fx.cred,
                &account,
                &host,
                |c| c.alg = alg,
                |b| b.to = own.clone(),
            )
        };
        refused(&fx, "p1", &send(JwtAlg::EdDsa), &si, "P-256 (ES256)").await;
        // The honest ES256 send: approved, and what the group signs is SHA-256 of the JWT's
        // signing input, as ES256 verifies it.
        let honest = send(JwtAlg::Es256);
        fx.decider
            .decide(&proposal("p3", &honest, &si))
            .await
            .unwrap();
        let SigningPayload::ExchangeWithdrawal { request, .. } = &honest else {
            unreachable!()
        };
        assert_eq!(
            honest.signing_input(Scheme::EcdsaP256),
            <sha2::Sha256 as sha2::Digest>::digest(request.as_bytes()).to_vec()
        );
        // A policy naming a P-256 key as Binance's withdraw key: its requests are refused
        // (Binance's keys are Ed25519).
        let fx = fixture_with(true, "binance", Scheme::EcdsaP256).await;
        let si = signed(
            withdraw_intent(AddressRef::Label("desk".into()), "0.5"),
            TRADER,
            &[],
        );
        let binance = withdrawal(&si, fx.cred, fx.own, "0.5", &si.intent.id, now_ms());
        refused(
            &fx,
            "p2",
            &binance,
            &si,
            "Binance's withdraw keys are Ed25519",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn withdrawals_go_only_to_the_address_book_and_once_per_order() {
        let fx = fixture(true).await;
        let now = now_ms();
        // To a label the address book does not have; to a wallet it does not name; to an
        // entry this key may not withdraw to.
        let si = signed(
            withdraw_intent(AddressRef::Label("nowhere".into()), "0.5"),
            TRADER,
            &[],
        );
        refused(
            &fx,
            "w1",
            &withdrawal(&si, fx.cred, OUTSIDE, "0.5", &si.intent.id, now),
            &si,
            "not in the address book",
        )
        .await;
        let si = signed(
            withdraw_intent(AddressRef::Wallet(WalletId([3; 32])), "0.5"),
            TRADER,
            &[],
        );
        refused(
            &fx,
            "w2",
            &withdrawal(&si, fx.cred, OUTSIDE, "0.5", &si.intent.id, now),
            &si,
            "not in the address book",
        )
        .await;
        let si = signed(
            withdraw_intent(AddressRef::Label("cold".into()), "0.5"),
            TRADER,
            &[],
        );
        refused(
            &fx,
            "w3",
            &withdrawal(&si, fx.cred, OUTSIDE, "0.5", &si.intent.id, now),
            &si,
            "does not let exchange binance's key withdraw to \"cold\"",
        )
        .await;
        // The address book's wallet, but the request sends elsewhere; another order id; the
        // trading wallet signing a withdraw request.
        let si = signed(
            withdraw_intent(AddressRef::Label("desk".into()), "0.5"),
            TRADER,
            &[],
        );
        refused(
            &fx,
            "w4",
            &withdrawal(&si, fx.cred, OUTSIDE, "0.5", &si.intent.id, now),
            &si,
            "which is not \"desk\" of the address book",
        )
        .await;
        refused(
            &fx,
            "w5",
            &withdrawal(&si, fx.cred, fx.own, "0.5", "other-order", now),
            &si,
            "withdrawOrderId",
        )
        .await;
        refused(
            &fx,
            "w6",
            &withdrawal(&si, fx.cred, fx.own, "0.7", &si.intent.id, now),
            &si,
            "amount",
        )
        .await;
        // Over the key's limit per withdrawal.
        let big = signed(
            withdraw_intent(AddressRef::Label("desk".into()), "1.2"),
            TRADER,
            &[],
        );
        refused(
            &fx,
            "w7",
            &withdrawal(&big, fx.cred, fx.own, "1.2", &big.intent.id, now),
            &big,
            "limit of 1 ETH per transfer",
        )
        .await;
        // The honest request: approved.
        let first = withdrawal(&si, fx.cred, fx.own, "0.5", &si.intent.id, now);
        fx.decider
            .decide(&proposal("w8", &first, &si))
            .await
            .unwrap();
        // A second request for the same order with other bytes while the first can still be
        // accepted: refused.
        let second = withdrawal(&si, fx.cred, fx.own, "0.5", &si.intent.id, now + 1000);
        refused(&fx, "w9", &second, &si, "signs one live request per order").await;

        // An order whose earlier request has expired and that the exchange does not know: a
        // new request may be signed (a resumed withdrawal), once.
        let old = signed(
            withdraw_intent(AddressRef::Label("desk".into()), "0.2"),
            TRADER,
            &[],
        );
        let stale = now - 200_000;
        fx.decider
            .decide(&proposal(
                "w10",
                &withdrawal(&old, fx.cred, fx.own, "0.2", &old.intent.id, stale),
                &old,
            ))
            .await
            .unwrap();
        fx.decider
            .decide(&proposal(
                "w11",
                &withdrawal(&old, fx.cred, fx.own, "0.2", &old.intent.id, now),
                &old,
            ))
            .await
            .unwrap();

        // An order the exchange already executed: never signed again. (The withdrawal is
        // made at the simulator with a key of the test's own, under the intent's order id.)
        let done = signed(
            withdraw_intent(AddressRef::Label("desk".into()), "0.1"),
            TRADER,
            &[],
        );
        fx.decider
            .decide(&proposal(
                "w12",
                &withdrawal(&done, fx.cred, fx.own, "0.1", &done.intent.id, stale),
                &done,
            ))
            .await
            .unwrap();
        let seed = [42u8; 32];
        let public = ed25519_dalek_public(&seed);
        let http = reqwest::Client::new();
        let reg: serde_json::Value = http
            .post(format!("{}/sim/api-keys", fx.sim.base_url()))
            .bearer_auth("admin")
            .json(&serde_json::json!({"account": "trader", "kind": "ed25519", "publicKey": public, "permissions": ["withdraw"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let client = concord_exchange::binance::BinanceClient::new(
            &fx.sim.base_url(),
            reg["apiKey"].as_str().unwrap().to_owned(),
            Arc::new(concord_exchange::Ed25519Signer::from_seed(&seed)),
        )
        .unwrap();
        client
            .withdraw(&concord_exchange::WithdrawRequest {
                coin: "ETH".into(),
                network: "ETH".into(),
                address: fx.own.to_string(),
                amount: "0.1".into(),
                withdraw_order_id: Some(done.intent.id.clone()),
            })
            .await
            .unwrap();
        refused(
            &fx,
            "w13",
            &withdrawal(&done, fx.cred, fx.own, "0.1", &done.intent.id, now),
            &done,
            "already has withdrawal",
        )
        .await;
        // The key's rolling 24 h limit (1.5 ETH): 0.5 + 0.2 + 0.1 approved, 0.8 more crosses it.
        let more = signed(
            withdraw_intent(AddressRef::Label("desk".into()), "0.8"),
            TRADER,
            &[],
        );
        refused(
            &fx,
            "w14",
            &withdrawal(&more, fx.cred, fx.own, "0.8", &more.intent.id, now),
            &more,
            "over its daily limit of 1.5 ETH",
        )
        .await;
        fx.sim.shutdown().await.unwrap();
    }

    /// The coordinator asks for an exchange account's balances: the module reads them
    /// through its own connector with its read key (the simulator gives that key only the
    /// read permission), and leaves out the coins it holds none of (CTT here).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exchange_balances_are_read_with_the_read_key_only() {
        use concord_wire::rpc::{BalancesQuery, ExchangeQuery, exchange_query};
        let fx = fixture(false).await;
        let ask = |exchange: &str| ExchangeQuery {
            request_id: "r1".into(),
            exchange: exchange.into(),
            query: Some(exchange_query::Query::Balances(BalancesQuery {})),
        };
        let a = fx.decider.outside.answer(ask("binance")).await;
        assert_eq!(a.request_id, "r1");
        assert!(a.error.is_empty(), "{}", a.error);
        let balances: Vec<concord_exchange::Balance> = serde_json::from_slice(&a.json).unwrap();
        assert_eq!(balances.len(), 1, "{balances:?}");
        assert_eq!(balances[0].asset, "ETH");
        assert_eq!(
            parse_amount(&balances[0].free, 18).unwrap(),
            parse_amount("10", 18).unwrap()
        );
        let a = fx.decider.outside.answer(ask("okx")).await;
        assert!(a.json.is_empty());
        assert_eq!(a.error, "this module has no connection to exchange \"okx\"");
        fx.sim.shutdown().await.unwrap();
    }

    fn ed25519_dalek_public(seed: &[u8; 32]) -> String {
        hex::encode(
            IdentityKey::from_seed(&Zeroizing::new(*seed))
                .public()
                .as_bytes(),
        )
    }

    /// A module's checks of a spend from a native multisig wallet on a UTXO chain, against a
    /// real litecoind and the exchange simulator's real LTC deposit address: the honest spend
    /// is approved; a forged recipient, an extra output, change to a foreign script, a
    /// foreign input, a fee over the caps, another amount or chain, and a wallet without this
    /// module's key are refused, each naming what is wrong.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_multisig_utxo_spend_is_checked_against_the_module_s_own_node_and_connector() {
        use concord_chain::litecoind::LocalLitecoin;
        use concord_chain::utxo::bitcoin::hashes::Hash;
        use concord_chain::utxo::bitcoin::{self, Amount, FeeRate, ScriptBuf};
        use concord_chain::utxo::{SpendRequest, UtxoNetwork, WalletScript, build_spend};
        use concord_wire::authority::{MultisigDef, MultisigMember};

        let net = UtxoNetwork::LitecoinRegtest;
        let ltc_dir = tempfile::tempdir().unwrap();
        let ltc = LocalLitecoin::start(ltc_dir.path()).await.unwrap();
        let node = ltc.node().clone();
        // anvil only because the simulator serves ETH too.
        let (_anvil, rpc) = start_anvil().await;
        let (user, password) = ltc.rpc_credentials();
        let sim = start_sim(
            &rpc,
            serde_json::json!([
                {"coin": "ETH", "network": "ETH", "decimals": 18, "withdraw_fee": "0", "withdraw_min": "0.001"},
                {"coin": "LTC", "network": "LTC", "decimals": 8, "withdraw_fee": "0", "withdraw_min": "0.01"},
            ]),
            Some(serde_json::json!({"rpc_url": node.url(), "rpc_user": user, "rpc_password": password,
                     "chain": "ltc-regtest", "network": "LTC", "hot_wallet_key": "31".repeat(32)})),
            serde_json::json!({}),
        )
        .await;

        // The module, and a 2-of-3 multisig of its own key and two others in the policy.
        let dir = tempfile::tempdir().unwrap();
        let state = module_state(dir.path(), Default::default());
        let def_of = |members: Vec<MultisigMember>| {
            let mut members = members;
            members.sort_by(|a, b| a.key.cmp(&b.key));
            MultisigDef {
                chain: "ltc-regtest".into(),
                threshold: 2,
                members,
                safe: None,
            }
        };
        let (id2, id3, id4) = (key(50), key(51), key(52));
        let (k2, k3, k4) = (test_key(0x41), test_key(0x42), test_key(0x43));
        let def = def_of(vec![
            own_member(&state),
            member("m2", &id2, &k2),
            member("m3", &id3, &k3),
        ]);
        let foreign_def = def_of(vec![
            member("m4", &id4, &k4),
            member("m2", &id2, &k2),
            member("m3", &id3, &k3),
        ]);
        let mut pol = policy(WalletId([1; 32]), WalletId([2; 32]));
        // 1.5 LTC and at most 5000 litoshis of fee.
        pol.wallets
            .push(multisig_rule(&def, "ltc-desk", "LTC", "1.50005", "10"));
        pol.wallets.push(multisig_rule(
            &foreign_def,
            "not-ours",
            "LTC",
            "1.50005",
            "10",
        ));
        adopt(&state, pol);
        let config = module_config(
            &state,
            dir.path(),
            None,
            &sim,
            Some(crate::config::UtxoConfig {
                chain: "ltc-regtest".into(),
                network: "LTC".into(),
                coin: "LTC".into(),
                rpc_url: node.url().to_owned(),
                rpc_user: user.into(),
                rpc_password: password.into(),
                max_fee_rate_sat_vb: 50,
                max_fee_sats: 100_000,
            }),
        );
        let outside = Outside::build(&config, &state).unwrap();
        let state = Arc::new(state);
        let decider = Decider::new(state.clone(), state.identity(), outside);

        // Coins of the multisig, matured; a coin of someone else.
        let (_, script) = def.wallet().unwrap();
        let own = script.script_pubkey();
        let burn = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([9; 32]));
        node.mine_to(2, &own).await.unwrap();
        node.mine_to(100, &burn).await.unwrap();
        let available = node.spendable(&own, 1).await.unwrap();
        let to = net
            .script_of(&sim_deposit_address(&sim, "LTC").await)
            .unwrap();
        let attacker = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([6; 32]));
        let amount = Amount::from_sat(150_000_000);
        let spend = |to: &ScriptBuf, wallet: &WalletScript, fee: u64| {
            build_spend(&SpendRequest {
                network: net,
                wallet,
                available: &available,
                to: to.clone(),
                amount,
                fee_rate: FeeRate::from_sat_per_vb(fee).unwrap(),
            })
            .unwrap()
        };
        let intent = |wallet: WalletId| {
            signed(
                Action::Deposit {
                    wallet,
                    exchange: "binance".into(),
                    coin: "LTC".into(),
                    network: "LTC".into(),
                    amount: "1.5".into(),
                    rule: AgreementRule::All,
                },
                TRADER,
                &[],
            )
        };
        let si = intent(def.wallet_id());
        let payload = |psbt: &bitcoin::Psbt, chain: &str, sats: u64| SigningPayload::UtxoTransfer {
            transfer: si.intent.id.clone(),
            wallet: def.wallet_id(),
            chain: chain.into(),
            psbt: psbt.serialize(),
            amount: sats,
            destination: Destination::ExchangeDeposit {
                exchange: "binance".into(),
                coin: "LTC".into(),
                network: "LTC".into(),
            },
        };
        let refused = |job: String, p: SigningPayload, si: SignedIntent, want: &'static str| {
            let decider = &decider;
            async move {
                let r = decider.decide(&proposal(&job, &p, &si)).await.unwrap_err();
                assert!(
                    r.reason.contains(want),
                    "{job}: wanted {want:?} in: {}",
                    r.reason
                );
            }
        };

        // Each attack: the PSBT the coordinator proposes, the chain and amount it names, and
        // what the refusal must say.
        let theirs = node.spendable(&burn, 1).await.unwrap();
        let mut extra = spend(&to, &script, 10);
        extra.unsigned_tx.output.push(bitcoin::TxOut {
            value: Amount::from_sat(1_000_000),
            script_pubkey: attacker.clone(),
        });
        extra.outputs.push(Default::default());
        let mut foreign_change = spend(&to, &script, 10);
        foreign_change.unsigned_tx.output[1].script_pubkey = attacker.clone();
        let mut foreign_input = spend(&to, &script, 10);
        foreign_input.unsigned_tx.input.push(bitcoin::TxIn {
            previous_output: theirs[0].outpoint,
            sequence: bitcoin::Sequence::ENABLE_LOCKTIME_NO_RBF,
            ..Default::default()
        });
        foreign_input.inputs.push(bitcoin::psbt::Input {
            witness_utxo: Some(theirs[0].txout.clone()),
            ..Default::default()
        });
        let fair = spend(&to, &script, 10);
        let attacks: Vec<(&str, bitcoin::Psbt, &str, u64, &str)> = vec![
            // The forged address: the coordinator's recipient is not the exchange's.
            (
                "forged recipient",
                spend(&attacker, &script, 10),
                "ltc-regtest",
                150_000_000,
                "neither the destination nor change",
            ),
            (
                "extra output",
                extra,
                "ltc-regtest",
                150_000_000,
                "neither the destination nor change",
            ),
            (
                "foreign change",
                foreign_change,
                "ltc-regtest",
                150_000_000,
                "neither the destination nor change",
            ),
            // A coin of the burn script, unspent on the node.
            (
                "foreign input",
                foreign_input,
                "ltc-regtest",
                150_000_000,
                "not this wallet's",
            ),
            (
                "fee over the caps",
                spend(&to, &script, 400),
                "ltc-regtest",
                150_000_000,
                "over this module's cap",
            ),
            // Within the caps, but the fee counts against the wallet's limit with the amount.
            (
                "fee over the limit",
                spend(&to, &script, 40),
                "ltc-regtest",
                150_000_000,
                "exceeds the limit",
            ),
            (
                "another amount",
                fair.clone(),
                "ltc-regtest",
                140_000_000,
                "amount",
            ),
            (
                "another chain",
                fair.clone(),
                "btc-regtest",
                150_000_000,
                "is not wallet",
            ),
        ];
        for (what, psbt, chain, sats, want) in attacks {
            let job = format!("u-{}", what.replace(' ', "-"));
            refused(job, payload(&psbt, chain, sats), si.clone(), want).await;
        }
        let p = fair;
        // A multisig wallet this module's key is not part of.
        let si2 = intent(foreign_def.wallet_id());
        let mut p2 = payload(&p, "ltc-regtest", 150_000_000);
        if let SigningPayload::UtxoTransfer {
            wallet, transfer, ..
        } = &mut p2
        {
            *wallet = foreign_def.wallet_id();
            *transfer = si2.intent.id.clone();
        }
        refused("u-not-a-member".into(), p2, si2, "own key is not one of").await;

        // The honest spend: approved, the checks naming the exchange's address and the node.
        let honest = payload(&spend(&to, &script, 10), "ltc-regtest", 150_000_000);
        let a = decider.decide(&proposal("u9", &honest, &si)).await.unwrap();
        let st = ApprovalStatement::from_bytes(&a.statement).unwrap();
        assert_eq!(st.digest, honest.digest());
        let all = st.checks.join("\n");
        assert!(all.contains(&net.address(&to).unwrap()), "{all}");
        assert!(all.contains("unspent and the wallet's"), "{all}");

        // Signing with this module's own key needs a certificate meeting the intent's rule
        // (all three members) among the members the policy names.
        let policy_hash = state.policy().unwrap().hash;
        let approval_by = |module: &str, identity: &IdentityKey| {
            approval_by(
                "u9",
                module,
                identity,
                &honest,
                policy_hash,
                &si.intent.id,
                AgreementRule::All,
            )
        };
        let refused_signing = |certificate: Vec<Approval>, want: &str| {
            let e = crate::multisig::sign(&state, "u9", &certificate).unwrap_err();
            assert!(e.to_string().contains(want), "wanted {want:?} in: {e}");
        };
        refused_signing(vec![a.clone()], "certificate");
        refused_signing(vec![a.clone(), approval_by("m2", &id2)], "certificate");
        // An approval attributed to m3 but signed by another identity.
        refused_signing(
            vec![a.clone(), approval_by("m2", &id2), approval_by("m3", &id4)],
            "not signed by its pinned identity",
        );
        // Another job's approval (no approval here) and a job that is not a multisig spend.
        assert!(crate::multisig::sign(&state, "u1", &[]).is_err());
        let certificate = vec![a.clone(), approval_by("m2", &id2), approval_by("m3", &id3)];
        let mine = crate::multisig::sign(&state, "u9", &certificate).unwrap();
        assert_eq!(
            crate::multisig::sign(&state, "u9", &certificate).unwrap(),
            mine,
            "asked again: the same signatures"
        );
        // Bound: the approval can no longer be released.
        assert!(state.release_approval("u9").is_err());

        // The module's signature and member 2's make a spend the node accepts and mines.
        let p = honest.psbt().unwrap();
        let digests = concord_chain::utxo::sighashes(&p, &script).unwrap();
        assert_eq!(mine.len(), digests.len());
        let own_key = |k: &[u8; 33]| {
            concord_chain::utxo::bitcoin::CompressedPublicKey::from_slice(k).unwrap()
        };
        let signatures: Vec<concord_chain::utxo::InputSignature> = digests
            .iter()
            .zip(&mine)
            .map(|(d, m)| {
                use k256::ecdsa::signature::hazmat::PrehashSigner;
                let theirs: k256::ecdsa::Signature = k2.sign_prehash(d).unwrap();
                let k2_public: [u8; 33] = k2
                    .verifying_key()
                    .to_encoded_point(true)
                    .as_bytes()
                    .try_into()
                    .unwrap();
                concord_chain::utxo::InputSignature::Multisig(
                    [
                        (own_key(&state.multisig_public_key()), m.to_vec()),
                        (own_key(&k2_public), theirs.to_bytes().to_vec()),
                    ]
                    .into(),
                )
            })
            .collect();
        let tx = concord_chain::utxo::finalize(&p, &script, &signatures).unwrap();
        assert_eq!(node.test_accept(&tx).await.unwrap(), Ok(()));
        let txid = node.broadcast(&tx).await.unwrap();
        node.mine_to(1, &burn).await.unwrap();
        assert_eq!(node.confirmations(&txid).await.unwrap(), Some(1));
    }

    /// A transfer out of a 2-of-3 Safe owned by three modules' own keys, on anvil with the
    /// real Safe 1.5.0: the module refuses a forged recipient, a nonce that is not the
    /// Safe's next, another Safe, a Safe whose owners are not the policy's, and another
    /// amount; approves the honest one; signs the SafeTx hash with its own key only under a
    /// certificate; its signature and a second owner's execute the transfer on chain.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_safe_transfer_is_checked_and_signed_with_the_module_s_own_key() {
        use concord_wire::authority::MultisigDef;
        const DEV0: [u8; 32] = [
            0xac, 0x09, 0x74, 0xbe, 0xc3, 0x9a, 0x17, 0xe3, 0x6b, 0xa4, 0xa6, 0xb4, 0xd2, 0x38,
            0xff, 0x94, 0x4b, 0xac, 0xb4, 0x78, 0xcb, 0xed, 0x5e, 0xfc, 0xae, 0x78, 0x4d, 0x7b,
            0xf4, 0xf2, 0xff, 0x80,
        ];
        let (_anvil, rpc) = start_anvil().await;
        let sim = start_sim(
            &rpc,
            serde_json::json!([{"coin": "ETH", "network": "ETH", "decimals": 18, "withdraw_fee": "0", "withdraw_min": "0.001"}]),
            None,
            serde_json::json!({}),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let state = module_state(dir.path(), Default::default());

        // Three owners: this module and two others; the Safe deployed with their addresses.
        let public = |k: &k256::ecdsa::SigningKey| -> [u8; 33] {
            k.verifying_key()
                .to_encoded_point(true)
                .as_bytes()
                .try_into()
                .unwrap()
        };
        let (id2, id3) = (key(50), key(51));
        let (k2, k3) = (test_key(0x41), test_key(0x42));
        let mut members = vec![
            own_member(&state),
            member("m2", &id2, &k2),
            member("m3", &id3, &k3),
        ];
        members.sort_by(|a, b| a.key.cmp(&b.key));
        let owners: Vec<Address> = members
            .iter()
            .map(|m| concord_chain::evm_address(&hex::decode(&m.key).unwrap()).unwrap())
            .collect();
        let contracts = concord_chain::safe::artifacts(|m| eprintln!("{m}")).unwrap();
        let safe = concord_chain::safe::deploy(&rpc, &DEV0, &contracts, &owners, 2)
            .await
            .unwrap();
        // A second Safe with another owner set (this module not among them).
        let stranger = concord_chain::evm_address(&public(&test_key(0x43))).unwrap();
        let other_safe =
            concord_chain::safe::deploy(&rpc, &DEV0, &contracts, &[owners[0], stranger], 2)
                .await
                .unwrap();
        let _: serde_json::Value = reqwest::Client::new()
            .post(&rpc)
            .json(
                &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "anvil_setBalance",
                "params": [safe.to_string(), "0xde0b6b3a7640000"]}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let def = MultisigDef {
            chain: "evm-31337".into(),
            threshold: 2,
            members,
            safe: Some(safe),
        };
        let mut other_def = def.clone();
        other_def.safe = Some(other_safe);
        let mut pol = policy(WalletId([1; 32]), WalletId([2; 32]));
        pol.wallets
            .push(multisig_rule(&def, "safe-desk", "ETH", "1", "2"));
        pol.wallets
            .push(multisig_rule(&other_def, "other-safe", "ETH", "1", "2"));
        adopt(&state, pol);
        let config = module_config(&state, dir.path(), Some(&rpc), &sim, None);
        let outside = Outside::build(&config, &state).unwrap();
        let state = Arc::new(state);
        let decider = Decider::new(state.clone(), state.identity(), outside);
        let to: Address = sim_deposit_address(&sim, "ETH").await.parse().unwrap();
        let amount = concord_wire::units::parse_amount("0.25", 18).unwrap();
        let intent = |wallet: WalletId| {
            signed(
                Action::Deposit {
                    wallet,
                    exchange: "binance".into(),
                    coin: "ETH".into(),
                    network: "ETH".into(),
                    amount: "0.25".into(),
                    rule: AgreementRule::All,
                },
                TRADER,
                &[],
            )
        };
        let si = intent(def.wallet_id());
        let transfer = |safe: Address, nonce: u64, recipient: Address, amount: U256| {
            SigningPayload::SafeTransfer {
                transfer: si.intent.id.clone(),
                wallet: def.wallet_id(),
                chain_id: 31337,
                safe,
                nonce,
                asset: Asset::Native,
                amount,
                recipient,
                destination: Destination::ExchangeDeposit {
                    exchange: "binance".into(),
                    coin: "ETH".into(),
                    network: "ETH".into(),
                },
            }
        };
        let attacks = [
            (
                "s-forged",
                transfer(safe, 0, OUTSIDE, amount),
                "is not the deposit address",
            ),
            ("s-nonce", transfer(safe, 3, to, amount), "next nonce"),
            (
                "s-other-safe",
                transfer(other_safe, 0, to, amount),
                "is not wallet",
            ),
            (
                "s-amount",
                transfer(safe, 0, to, amount / U256::from(2)),
                "amount",
            ),
        ];
        for (job, p, want) in attacks {
            let r = decider.decide(&proposal(job, &p, &si)).await.unwrap_err();
            assert!(
                r.reason.contains(want),
                "{job}: wanted {want:?} in: {}",
                r.reason
            );
            let forged = job == "s-forged";
            assert_eq!(
                r.code == code::DESTINATION,
                forged,
                "{job}: code {} ({})",
                r.code,
                r.reason
            );
        }
        // The Safe of the other definition has other owners than that definition says.
        let si2 = intent(other_def.wallet_id());
        let mut p2 = transfer(other_safe, 0, to, amount);
        if let SigningPayload::SafeTransfer {
            wallet, transfer, ..
        } = &mut p2
        {
            *wallet = other_def.wallet_id();
            *transfer = si2.intent.id.clone();
        }
        let r = decider
            .decide(&proposal("s-owners", &p2, &si2))
            .await
            .unwrap_err();
        assert!(r.reason.contains("not the policy's"), "{}", r.reason);

        // The honest transfer: approved; its digest is the contract's own SafeTx hash.
        let honest = transfer(safe, 0, to, amount);
        let a = decider
            .decide(&proposal("s-ok", &honest, &si))
            .await
            .unwrap();
        let tx = honest.safe_transaction().unwrap();
        assert_eq!(
            concord_chain::safe::contract_hash(&rpc, &tx)
                .await
                .unwrap()
                .0,
            honest.digest()
        );
        let policy_hash = state.policy().unwrap().hash;
        let approval_by = |module: &str, identity: &IdentityKey| {
            approval_by(
                "s-ok",
                module,
                identity,
                &honest,
                policy_hash,
                &si.intent.id,
                AgreementRule::All,
            )
        };
        assert!(crate::multisig::sign(&state, "s-ok", std::slice::from_ref(&a)).is_err());
        let certificate = vec![a.clone(), approval_by("m2", &id2), approval_by("m3", &id3)];
        let mine = crate::multisig::sign(&state, "s-ok", &certificate).unwrap();
        assert_eq!(mine.len(), 1);
        let mine: [u8; 65] = mine[0].as_slice().try_into().unwrap();
        let (theirs, recid) = k2.sign_prehash_recoverable(&honest.digest()).unwrap();
        let mut theirs65 = [0u8; 65];
        theirs65[..64].copy_from_slice(&theirs.to_bytes());
        theirs65[64] = recid.to_byte();
        let own_address = concord_chain::evm_address(&state.multisig_public_key()).unwrap();
        let k2_address = concord_chain::evm_address(&public(&k2)).unwrap();
        let packed = concord_chain::safe::pack_signatures(
            honest.digest().into(),
            &[(own_address, mine), (k2_address, theirs65)],
        )
        .unwrap();
        let client = concord_chain::EvmClient::new(&rpc).unwrap();
        let before = client.balance(to).await.unwrap();
        // Gas paid by anvil's dev account 2 (the coordinator's gas account).
        let gas: [u8; 32] =
            hex::decode("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")
                .unwrap()
                .try_into()
                .unwrap();
        concord_chain::safe::exec_transaction(&rpc, &gas, &tx, packed)
            .await
            .unwrap();
        assert_eq!(client.balance(to).await.unwrap() - before, amount);
    }
}
