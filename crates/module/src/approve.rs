//! Deciding on a proposal. The module checks who asked (the intent's signatures against its
//! own copy of the admin-signed policy), that the coordinator's proposal is exactly what was
//! asked (field by field), that the policy allows it (the wallet's purpose, the address book,
//! limits per transfer and per rolling 24 h from its own ledger, co-signatures), and the
//! kind-specific facts against its own view of the exchange and the chain; then it recomputes
//! the digest, checks its logs (intent, nonce, exchange order), and signs and stores its
//! approval — naming the policy hash it applied — before anything is sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use concord_chain::{Address, U256};
use concord_exchange::binance::WithdrawParams;
use concord_tss::{Scheme, WalletId};
use concord_wire::authority::{
    Action, AddressRef, AddressTarget, AgreementRule, ApprovalStatement, Policy, SignedIntent,
    VerifiedIntent, WalletPurpose, WalletRule, unix_now,
};
use concord_wire::identity::IdentityKey;
use concord_wire::payload::{Destination, SigningPayload};
use concord_wire::rpc::{Approval, Proposal, Refusal};
use concord_wire::units::{format_amount, parse_amount};

use crate::Error;
use crate::checks::Outside;
use crate::ledger::{DAY_SECS, Order, Spend};
use crate::state::{ApprovalRecord, PolicyInForce, State};

/// How long an approval may be used to sign, seconds.
pub(crate) const APPROVAL_TTL_SECS: u64 = 600;
/// Added to a signed exchange request's life (timestamp + receive window) for clocks that
/// differ between this module and the exchange, ms.
const ORDER_MARGIN_MS: u64 = 60_000;

/// Everything a decision needs. Cheap to share.
pub(crate) struct Decider {
    pub(crate) state: Arc<State>,
    pub(crate) identity: Arc<IdentityKey>,
    pub(crate) outside: Outside,
    /// wallet → (scheme, group public key), read once from the share.
    wallets: Mutex<HashMap<WalletId, (Scheme, Vec<u8>)>>,
    /// Serializes the last step (logs, daily limits, approval record) of concurrent decisions.
    commit: tokio::sync::Mutex<()>,
}

pub(crate) fn refusal(
    job_id: &str,
    reason: impl Into<String>,
    computed: Option<[u8; 32]>,
) -> Refusal {
    Refusal {
        job_id: job_id.to_owned(),
        reason: reason.into(),
        computed_digest: computed.map(|d| d.to_vec()).unwrap_or_default(),
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
}

impl Case<'_> {
    fn refuse(&self, reason: impl Into<String>) -> Refusal {
        refusal(self.job, reason, Some(self.digest))
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

    /// The policy's rule for a wallet; a wallet it does not name signs nothing.
    fn wallet_rule(&self, wallet: WalletId) -> Result<&WalletRule, Refusal> {
        self.policy().wallet(&wallet).ok_or_else(|| {
            self.refuse(format!(
                "wallet {wallet} is not named in {}: it signs nothing",
                self.policy_name()
            ))
        })
    }

    fn mismatch(
        &self,
        what: &str,
        proposed: impl std::fmt::Display,
        asked: impl std::fmt::Display,
    ) -> Refusal {
        self.refuse(format!(
            "the proposal's {what} ({proposed}) is not the intent's ({asked}): the coordinator may only propose what the requester signed"
        ))
    }
}

impl Decider {
    pub(crate) fn new(state: Arc<State>, identity: Arc<IdentityKey>, outside: Outside) -> Self {
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
        let payload = SigningPayload::from_canonical(&p.payload)
            .map_err(|e| refusal(job, format!("cannot read the payload: {e}"), None))?;
        let digest = payload.digest();
        if p.digest != digest {
            return Err(refusal(
                job,
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
            return Err(refusal(
                job,
                "the proposal names another wallet than its payload",
                Some(digest),
            ));
        }
        let err = |e: Error| refusal(job, e.to_string(), Some(digest));
        let refuse = |reason: String| refusal(job, reason, Some(digest));
        let (scheme, _) = self
            .wallet(wallet)
            .map_err(err)?
            .ok_or_else(|| refuse(format!("this module holds no share of wallet {wallet}")))?;
        if let Some(required) = payload.required_scheme()
            && required != scheme
        {
            return Err(refuse(format!(
                "this payload must be signed with {required}, and wallet {wallet} is {scheme}"
            )));
        }
        let signed = SignedIntent::from_json(&p.intent).map_err(|e| {
            refuse(format!(
                "the request carries no readable signed intent: {e}"
            ))
        })?;
        // Asked again (a coordinator restart, a lost answer): the same statement, verbatim,
        // even if the world has moved on since.
        if let Some(prev) = state.approval(job).map_err(err)? {
            return replay(job, prev, p, digest, &signed.intent.id);
        }
        let policy = state.policy().ok_or_else(|| {
            refuse(
                "this module has no policy yet: until its admins sign one it takes part in protocol setup only and approves nothing".into(),
            )
        })?;
        let now = unix_now();
        let intent = signed.verify(policy.policy(), now).map_err(|e| {
            refuse(format!(
                "intent refused under policy v{}: {e}",
                policy.policy().version
            ))
        })?;
        let case = Case {
            job,
            payload: &payload,
            digest,
            intent: &intent,
            policy: &policy,
        };
        let mut checked = match &payload {
            SigningPayload::Message { .. } => self.check_message(&case)?,
            SigningPayload::EvmTransfer { .. } => self.check_deposit(&case).await?,
            SigningPayload::ExchangeWithdrawal { .. } => self.check_withdrawal(&case).await?,
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
            destination:
                Destination::ExchangeDeposit {
                    exchange,
                    coin,
                    network,
                },
            ..
        } = c.payload
        else {
            return Err(c.refuse("not an EVM transfer"));
        };
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
        if *transfer != i.id {
            return Err(c.mismatch("transfer id", transfer, &i.id));
        }
        if w != wallet {
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
        let decimals = self.outside.decimals(coin).map_err(|e| c.refuse(e))?;
        let asked =
            parse_amount(a, decimals).map_err(|e| c.refuse(format!("the intent's amount: {e}")))?;
        if asked != *amount {
            return Err(c.mismatch(
                "amount",
                format!("{} {coin}", format_amount(*amount, decimals)),
                format!("{a} {coin}"),
            ));
        }
        let rule = c.wallet_rule(*wallet)?;
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
        let (limit_checks, daily) = self.limits(c, rule, coin, *amount, decimals)?;
        let (_, public_key) = self
            .wallet(*wallet)
            .map_err(|e| c.refuse(e.to_string()))?
            .ok_or_else(|| c.refuse(format!("this module holds no share of wallet {wallet}")))?;
        let mut checks = vec![format!(
            "{} lets wallet {:?} deposit to {exchange}",
            c.policy_name(),
            rule.label
        )];
        checks.extend(limit_checks);
        checks.extend(
            self.outside
                .check_evm_transfer(&self.state.checks, c.payload, &public_key)
                .await
                .map_err(|e| c.refuse(e))?,
        );
        Ok(Checked {
            checks,
            daily: Some(daily),
            order: None,
        })
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
            request,
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
            c.refuse(format!(
                "the destination, {to}, is not in the address book of {}",
                c.policy_name()
            ))
        })?;
        if !withdraw_to.contains(&entry.label) {
            return Err(c.refuse(format!(
                "{} does not let exchange {exchange}'s key withdraw to {:?}",
                c.policy_name(),
                entry.label
            )));
        }
        let params = WithdrawParams::parse(request).map_err(|e| {
            c.refuse(format!(
                "the withdraw request is not one this module signs: {e}"
            ))
        })?;
        if params.coin != *coin {
            return Err(c.mismatch("coin", &params.coin, coin));
        }
        if params.network != *network {
            return Err(c.mismatch("network", &params.network, network));
        }
        if params.withdraw_order_id.as_deref() != Some(i.id.as_str()) {
            return Err(c.mismatch(
                "withdrawOrderId",
                params.withdraw_order_id.as_deref().unwrap_or("none"),
                &i.id,
            ));
        }
        let decimals = self.outside.decimals(coin).map_err(|e| c.refuse(e))?;
        let asked = parse_amount(amount, decimals)
            .map_err(|e| c.refuse(format!("the intent's amount: {e}")))?;
        let proposed = parse_amount(&params.amount, decimals)
            .map_err(|e| c.refuse(format!("the request's amount: {e}")))?;
        if asked != proposed {
            return Err(c.mismatch(
                "amount",
                format!("{} {coin}", params.amount),
                format!("{amount} {coin}"),
            ));
        }
        let destination = self.resolve(c, &entry.target, network)?;
        let same = match (
            params.address.parse::<Address>(),
            destination.parse::<Address>(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => params.address == destination,
        };
        if !same {
            return Err(c.refuse(format!(
                "the withdraw request sends to {}, which is not {:?} of the address book ({destination})",
                params.address, entry.label
            )));
        }
        let (limit_checks, daily) = self.limits(c, rule, coin, proposed, decimals)?;
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
            format!("withdrawOrderId is the intent id {}", i.id),
        ];
        checks.extend(limit_checks);
        checks.extend(
            self.outside
                .check_withdraw_request(&self.state.checks, exchange, &params)
                .map_err(|e| c.refuse(e))?,
        );
        let order = Order {
            exchange: exchange.clone(),
            order_id: i.id.clone(),
            dead_after_ms: params
                .timestamp_ms
                .saturating_add(params.recv_window_ms)
                .saturating_add(ORDER_MARGIN_MS),
        };
        // A request for this order with other bytes was signed before: sign again only if
        // that one can no longer be accepted and the exchange, asked through this module's
        // own connector, has no withdrawal under this order id.
        let earlier: Vec<([u8; 32], u64)> = self
            .state
            .logs()
            .map_err(|e| c.refuse(e.to_string()))?
            .orders(exchange, &i.id)
            .to_vec();
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
            c.refuse(format!(
                "{} sets no limit for {coin} on wallet {:?}, so it is refused",
                c.policy_name(),
                rule.label
            ))
        })?;
        let parse = |what: &str, v: &str| {
            parse_amount(v, decimals)
                .map_err(|e| c.refuse(format!("the policy's {what} for {coin}: {e}")))
        };
        let per_transfer = parse("per_transfer", &limit.per_transfer)?;
        let per_day = parse("per_day", &limit.per_day)?;
        let shown = format_amount(amount, decimals);
        if amount > per_transfer {
            return Err(c.refuse(format!(
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
                    return Err(c.refuse(format!(
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
            if let Some((other_job, d)) = logs.intent(&intent.id).iter().find(|(_, d)| *d != digest)
                && checked.order.is_none()
            {
                return Err(c.refuse(format!(
                    "intent {} was already used{}: a replayed intent is refused",
                    intent.id,
                    if other_job.is_empty() {
                        String::new()
                    } else {
                        format!(" (job {other_job}, digest {})", hex::encode(&d[..8]))
                    }
                )));
            }
            if let Some(o) = &checked.order {
                let now_ms = now.saturating_mul(1000);
                if logs
                    .orders(&o.exchange, &o.order_id)
                    .iter()
                    .any(|(d, dead)| *d != digest && *dead > now_ms)
                {
                    return Err(c.refuse(format!(
                        "a withdraw request for order {} with other bytes is still live",
                        o.order_id
                    )));
                }
            }
            if let Some(key) = &nonce_key {
                match logs.nonce(wallet, key) {
                    Some(d) if d != digest => {
                        let shown = key.rsplit('-').next().unwrap_or(key).to_owned();
                        return Err(c.refuse(format!(
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
                let spent =
                    logs.spent_since(d.wallet, &d.coin, now.saturating_sub(DAY_SECS), &intent.id);
                let total = spent.saturating_add(d.amount);
                if total > d.per_day {
                    return Err(c.refuse(format!(
                        "{} {} would bring wallet {:?} to {} {} in 24 h, over its daily limit of {} {} ({} already approved)",
                        format_amount(d.amount, d.decimals),
                        d.coin,
                        d.label,
                        format_amount(total, d.decimals),
                        d.coin,
                        format_amount(d.per_day, d.decimals),
                        d.coin,
                        format_amount(spent, d.decimals),
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
            expires_at: now + APPROVAL_TTL_SECS,
            checks: checked.checks,
        }
        .to_bytes();
        let signature = ApprovalStatement::sign(&statement, &self.identity).to_vec();
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
                },
            )
            .map_err(|e| c.refuse(e.to_string()))?;
        Ok(Approval {
            job_id: job.to_owned(),
            digest: digest.to_vec(),
            statement,
            signature,
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
    if prev.digest == digest && prev.payload == p.payload && prev.intent == intent {
        Ok(Approval {
            job_id: job.to_owned(),
            digest: digest.to_vec(),
            statement: prev.statement,
            signature: prev.signature,
        })
    } else {
        Err(refusal(
            job,
            "this job was already approved for another payload or intent",
            Some(digest),
        ))
    }
}

#[cfg(test)]
mod tests {
    //! A module against a coordinator that proposes what the trader did not ask for: the real
    //! anvil chain and the real exchange simulator, the module's own connector and read key.
    use super::*;
    use crate::config::{ChainConfig, ExchangeConfig};
    use concord_chain::{Address, Asset};
    use concord_tss::local::LocalNetwork;
    use concord_tss::rand_core::OsRng;
    use concord_tss::{SessionId, Threshold};
    use concord_vault::{Argon2Params, PassphraseKek};
    use concord_wire::payload::Destination;

    async fn shares(state: &State) -> (WalletId, WalletId) {
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
        state.save_purpose(ecdsa_share.wallet_id(), "").unwrap();
        state.save_share(&ecdsa_share).unwrap();
        let mut handles = Vec::new();
        for ep in LocalNetwork::connect(&[0, 1]) {
            handles.push(tokio::spawn(async move {
                concord_tss::dkg(
                    Scheme::Ed25519,
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
        state
            .save_purpose(cred.wallet_id(), "exchange-credential:binance")
            .unwrap();
        state.save_share(&cred).unwrap();
        (ecdsa_share.wallet_id(), cred.wallet_id())
    }

    fn proposal(job: &str, payload: &SigningPayload) -> Proposal {
        Proposal {
            job_id: job.into(),
            wallet_id: payload.wallet().0.to_vec(),
            payload: payload.to_canonical(),
            digest: payload.digest().to_vec(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_coordinator_cannot_get_another_destination_amount_or_withdraw_address_approved() {
        // The chain.
        let bin = concord_chain::anvil::anvil_binary(|m| eprintln!("{m}")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut anvil = std::process::Command::new(bin)
            .args(["--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let rpc = format!("http://127.0.0.1:{port}");
        let client = concord_chain::EvmClient::new(&rpc).unwrap();
        for _ in 0..100 {
            if client.block_number().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // The exchange, with this module's read key.
        let (key, secret) = ("k".repeat(64), "s".repeat(64));
        let sim: concord_exchange_sim::SimConfig = serde_json::from_value(serde_json::json!({
            "rpc_url": rpc, "chain_id": 31337, "confirmations": 1,
            "hot_wallet_key": "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
            "admin_token": "admin",
            "coins": [{"coin": "ETH", "network": "ETH", "decimals": 18, "withdraw_fee": "0", "withdraw_min": "0.001"}],
            "accounts": [{"name": "trader", "api_keys": [{"api_key": key, "kind": "hmac", "secret": secret, "permissions": ["read"]}]}],
        }))
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = concord_exchange_sim::SimHandle::start(sim, listener)
            .await
            .unwrap();
        // The module.
        let dir = tempfile::tempdir().unwrap();
        let kek = PassphraseKek::with_params(
            zeroize::Zeroizing::new("test passphrase".into()),
            Argon2Params {
                m_cost_kib: 8 * 1024,
                t_cost: 1,
                p_cost: 1,
            },
        )
        .unwrap();
        let mut policy = crate::config::Policy::default();
        policy.max_transfer.insert("ETH".into(), "2".into());
        policy.max_withdrawal.insert("ETH".into(), "2".into());
        let state = State::create("m1", &dir.path().join("vault"), &kek, policy).unwrap();
        state
            .save_exchange_secret("binance", secret.as_bytes())
            .unwrap();
        let (wallet, cred) = shares(&state).await;
        let mut config = crate::Config {
            id: "m1".into(),
            coordinator: crate::config::CoordinatorConfig {
                address: "127.0.0.1:1".into(),
                identity: state.identity().public(),
            },
            vault: crate::config::VaultConfig {
                dir: dir.path().join("vault"),
                passphrase: concord_vault::PassphraseSource::Env("UNUSED".into()),
            },
            policy: state.policy.clone(),
            chain: None,
            exchanges: Vec::new(),
        };
        config.chain = Some(ChainConfig {
            rpc_url: rpc.clone(),
            chain_id: 31337,
            network: "ETH".into(),
            tokens: vec![],
        });
        config.exchanges = vec![ExchangeConfig {
            name: "binance".into(),
            kind: "binance".into(),
            url: sim.base_url(),
            read_api_key: key.clone(),
            read_key_type: "hmac".into(),
        }];
        let outside = Outside::build(&config, &state).unwrap();
        let state = Arc::new(state);
        let decider = Decider::new(state.clone(), state.identity(), outside);

        // What the exchange really says.
        let http = reqwest::Client::new();
        let honest: serde_json::Value = http
            .get(format!(
                "{}/sim/deposit-address?account=trader&network=ETH",
                sim.base_url()
            ))
            .bearer_auth("admin")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let honest: Address = honest["address"].as_str().unwrap().parse().unwrap();
        let deposit = |recipient: Address, amount: &str| SigningPayload::EvmTransfer {
            transfer: "t".into(),
            wallet,
            chain_id: 31337,
            nonce: 0,
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
        };
        // Another destination: refused, naming both addresses.
        let attacker = Address::repeat_byte(0x66);
        let r = decider
            .decide(&proposal("j1", &deposit(attacker, "1")))
            .await
            .unwrap_err();
        assert!(
            r.reason.contains(&attacker.to_string()) && r.reason.contains(&honest.to_string()),
            "{}",
            r.reason
        );
        // Another amount than the transaction the digest fixes: refused.
        let mut p = proposal("j2", &deposit(honest, "1"));
        p.digest = deposit(honest, "1.5").digest().to_vec();
        let r = decider.decide(&p).await.unwrap_err();
        assert!(r.reason.contains("is not the digest"), "{}", r.reason);
        // An amount over the module's policy: refused.
        let r = decider
            .decide(&proposal("j3", &deposit(honest, "3")))
            .await
            .unwrap_err();
        assert!(
            r.reason.contains("exceeds this module's limit"),
            "{}",
            r.reason
        );
        // The honest transfer: approved.
        decider
            .decide(&proposal("j4", &deposit(honest, "1")))
            .await
            .unwrap();
        // The exchange key never signs a raw message.
        let msg = SigningPayload::Message {
            wallet: cred,
            message: b"coin=ETH&address=0x66".to_vec(),
            nonce: None,
        };
        let r = decider.decide(&proposal("j5", &msg)).await.unwrap_err();
        assert!(r.reason.contains("withdraw key"), "{}", r.reason);
        // A withdraw request to any address but the wallet's own: refused.
        let own = concord_chain::evm_address(&state.share(wallet).unwrap().unwrap().public_key())
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let withdraw = |to: Address| SigningPayload::ExchangeWithdrawal {
            transfer: "w".into(),
            wallet: cred,
            exchange: "binance".into(),
            api_key: "group-key".into(),
            request: concord_exchange::binance::WithdrawParams {
                coin: "ETH".into(),
                network: "ETH".into(),
                address: to.to_string(),
                amount: "1".into(),
                withdraw_order_id: Some("w1".into()),
                timestamp_ms: now,
                recv_window_ms: 5000,
            }
            .to_query(),
            destination_wallet: wallet,
        };
        let r = decider
            .decide(&proposal("j6", &withdraw(attacker)))
            .await
            .unwrap_err();
        assert!(
            r.reason.contains("not the wallet's own address"),
            "{}",
            r.reason
        );
        decider
            .decide(&proposal("j7", &withdraw(own)))
            .await
            .unwrap();
        sim.shutdown().await.unwrap();
        let _ = anvil.kill();
        let _ = anvil.wait();
    }
}
