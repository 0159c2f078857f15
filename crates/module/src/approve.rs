//! Deciding on a proposal: the module recomputes the digest from the payload, checks the
//! wallet, what the wallet is for, the kind-specific facts against its own view of the
//! exchange and the chain, its policy and its nonce log, then signs and stores its approval
//! before anything is sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use concord_tss::{Scheme, WalletId};
use concord_wire::identity::IdentityKey;
use concord_wire::messages::ApprovalStatement;
use concord_wire::payload::SigningPayload;
use concord_wire::rpc::{Approval, Proposal, Refusal};

use crate::Error;
use crate::checks::Outside;
use crate::state::{ApprovalRecord, State};

/// The purpose prefix of a wallet that is an exchange's withdraw-capable API key.
pub const CREDENTIAL_PURPOSE: &str = "exchange-credential:";

/// Everything a decision needs. Cheap to share.
pub(crate) struct Decider {
    pub(crate) state: Arc<State>,
    pub(crate) identity: Arc<IdentityKey>,
    pub(crate) outside: Outside,
    /// wallet → (scheme, group public key), read once from the share.
    wallets: Mutex<HashMap<WalletId, (Scheme, Vec<u8>)>>,
    /// Serializes the last step (nonce log, approval record) of concurrent decisions.
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
        if !state.has_share(wallet).map_err(err)? {
            return Err(refuse(format!(
                "this module holds no share of wallet {wallet}"
            )));
        }
        // Asked again (a coordinator restart, a lost answer): the same statement, verbatim,
        // even if the world has moved on since.
        if let Some(prev) = state.approval(job).map_err(err)? {
            return replay(job, prev, p, digest);
        }
        let purpose = state.purpose(wallet).map_err(err)?;
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
        let policy = &state.policy;
        let mut checks = vec![
            "payload is canonical".to_owned(),
            "digest recomputed from the payload".to_owned(),
            "this module holds a share of the wallet".to_owned(),
        ];
        match &payload {
            SigningPayload::Message { message, .. } => {
                if let Some(exchange) = purpose.strip_prefix(CREDENTIAL_PURPOSE) {
                    return Err(refuse(format!(
                        "wallet {wallet} is exchange {exchange}'s withdraw key: it signs withdraw requests checked by this module, never raw messages"
                    )));
                }
                if message.len() > policy.max_message_len {
                    return Err(refuse(format!(
                        "policy: messages over {} bytes are refused",
                        policy.max_message_len
                    )));
                }
                if policy.require_nonce && payload.nonce_key().is_none() {
                    return Err(refuse(
                        "policy: a replay-protection nonce is required".into(),
                    ));
                }
                checks.push("within local policy".to_owned());
            }
            SigningPayload::EvmTransfer { .. } => {
                if !purpose.is_empty() {
                    return Err(refuse(format!(
                        "wallet {wallet} is for {purpose}, not for transfers"
                    )));
                }
                let (_, public_key) = self.wallet(wallet).map_err(err)?.ok_or_else(|| {
                    refuse(format!("this module holds no share of wallet {wallet}"))
                })?;
                let more = self
                    .outside
                    .check_evm_transfer(policy, &payload, &public_key)
                    .await
                    .map_err(refuse)?;
                checks.extend(more);
            }
            SigningPayload::ExchangeWithdrawal {
                exchange,
                destination_wallet,
                ..
            } => {
                if purpose != format!("{CREDENTIAL_PURPOSE}{exchange}") {
                    return Err(refuse(format!(
                        "wallet {wallet} is not exchange {exchange}'s withdraw key here"
                    )));
                }
                let (dest_scheme, dest_key) = self
                    .wallet(*destination_wallet)
                    .map_err(err)?
                    .ok_or_else(|| {
                        refuse(format!(
                            "this module holds no share of the destination wallet {destination_wallet}, so it cannot derive its address"
                        ))
                    })?;
                if dest_scheme != Scheme::EcdsaSecp256k1 {
                    return Err(refuse(format!(
                        "the destination wallet {destination_wallet} is {dest_scheme}, not an EVM (ECDSA) wallet"
                    )));
                }
                let more = self
                    .outside
                    .check_withdrawal(policy, &payload, &dest_key)
                    .map_err(refuse)?;
                checks.extend(more);
            }
        }
        self.commit(job, p, &payload, wallet, digest, checks).await
    }

    /// The serialized last step: nonce log, statement, approval stored, then sent.
    async fn commit(
        &self,
        job: &str,
        p: &Proposal,
        payload: &SigningPayload,
        wallet: WalletId,
        digest: [u8; 32],
        mut checks: Vec<String>,
    ) -> Result<Approval, Refusal> {
        let _guard = self.commit.lock().await;
        let state = &self.state;
        let err = |e: Error| refusal(job, e.to_string(), Some(digest));
        if let Some(prev) = state.approval(job).map_err(err)? {
            return replay(job, prev, p, digest);
        }
        if let Some(key) = payload.nonce_key() {
            match state.nonce_digest(wallet, &key).map_err(err)? {
                Some(d) if d != digest => {
                    let shown = key.rsplit('-').next().unwrap_or(&key).to_owned();
                    return Err(refusal(
                        job,
                        format!(
                            "nonce {shown} of wallet {wallet} was already approved for another digest ({})",
                            hex::encode(d)
                        ),
                        Some(digest),
                    ));
                }
                Some(_) => {}
                None => state.record_nonce(wallet, &key, &digest).map_err(err)?,
            }
            checks.push(format!("nonce {key} not approved for another digest"));
        }
        let statement = ApprovalStatement {
            version: 1,
            job_id: job.to_owned(),
            module_id: state.id.clone(),
            wallet_id: wallet,
            digest,
            checks,
        }
        .to_bytes();
        let signature = self.identity.sign(&statement).to_vec();
        state
            .save_approval(
                job,
                &ApprovalRecord {
                    wallet_id: wallet,
                    payload: p.payload.clone(),
                    digest,
                    statement: statement.clone(),
                    signature: signature.clone(),
                },
            )
            .map_err(err)?;
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
) -> Result<Approval, Refusal> {
    if prev.digest == digest && prev.payload == p.payload {
        Ok(Approval {
            job_id: job.to_owned(),
            digest: digest.to_vec(),
            statement: prev.statement,
            signature: prev.signature,
        })
    } else {
        Err(refusal(
            job,
            "this job was already approved for another payload",
            Some(digest),
        ))
    }
}
