//! Native multisig wallets (a P2WSH on a UTXO chain, a Safe on the EVM chain), as the
//! coordinator drives them. Such a wallet has no shares and no signer group: the policy in
//! force defines it (its members, their own keys, the threshold), and each approving module
//! signs with its own key. To the sign job it looks like a wallet of a group whose members
//! are the definition's modules (`multisig-<wallet id>`); its last step is not a threshold
//! run but each approver's `MultisigSign` under the certificate, every signature checked
//! here against the member's key before it is kept.

use std::collections::{BTreeMap, BTreeSet};

use concord_chain::utxo::bitcoin::secp256k1;
use concord_types::EcdsaEngine;
use concord_wire::authority::MultisigDef;
use concord_wire::payload::SigningPayload;
use concord_wire::rpc::{MultisigSign, coordinator_to_module};
use tokio::time::Instant;

use super::Engine;
use super::protocol::Events;
use crate::Error;
use crate::hub::ModuleEvent;
use crate::records::{EventKind, GroupRecord, GroupStatus, JobRecord, WalletRecord};

/// The prefix of a multisig wallet's group id.
pub(crate) const MULTISIG_GROUP: &str = "multisig-";

impl Engine {
    /// The definition of multisig wallet `wallet_id` in the policy in force, if it is one.
    pub(crate) async fn multisig_def(&self, wallet_id: &str) -> Result<Option<MultisigDef>, Error> {
        let Ok(id) = wallet_id.parse::<concord_types::WalletId>() else {
            return Ok(None);
        };
        Ok(self
            .policy_in_force()
            .await?
            .and_then(|p| p.policy.wallet(&id).and_then(|r| r.multisig.clone())))
    }

    /// A wallet by id: one of this coordinator's (made by a key-generation job), else a
    /// held credential or multisig wallet of the policy in force.
    pub(crate) async fn any_wallet(&self, id: &str) -> Result<Option<WalletRecord>, Error> {
        if let Some(w) = self.store.wallet(id).await? {
            return Ok(Some(w));
        }
        if let Some(def) = self.held_def(id).await? {
            return Ok(Some(super::held::held_wallet(&def)));
        }
        Ok(self
            .multisig_def(id)
            .await?
            .map(|def| multisig_wallet(&def)))
    }

    /// The group of a multisig wallet (`multisig-<wallet id>`), from its definition.
    pub(crate) async fn multisig_group(&self, group_id: &str) -> Result<GroupRecord, Error> {
        let wallet_id = group_id.strip_prefix(MULTISIG_GROUP).unwrap_or_default();
        let def = self.multisig_def(wallet_id).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "multisig wallet {wallet_id} in the policy in force"
            ))
        })?;
        Ok(multisig_group(&def))
    }

    /// The last step of a multisig wallet's sign job: each approver (at most the threshold,
    /// others standing in for those that fail) signs with its own key under the certificate.
    /// Returns each signer's signatures (hex), every one checked against its member's key.
    pub(super) async fn sign_multisig(
        &self,
        job: &JobRecord,
        payload: &SigningPayload,
        approvers: &BTreeSet<String>,
        certificate: &[concord_wire::rpc::Approval],
        events: &mut Events,
    ) -> Result<BTreeMap<String, Vec<String>>, Error> {
        let wallet_id = payload.wallet().to_string();
        let def = self.multisig_def(&wallet_id).await?.ok_or_else(|| {
            Error::refused(format!(
                "wallet {wallet_id} is no longer a multisig wallet of the policy in force"
            ))
        })?;
        let t = usize::from(def.threshold);
        let check = SignatureCheck::new(&def, payload)?;
        let mut waiting: Vec<String> = approvers.iter().cloned().collect();
        // Asked and not answered yet; signed (verified); failed, each once, with why. A module
        // is in one of them at most: a second answer from it changes nothing.
        let mut pending = BTreeSet::new();
        let mut signed = BTreeMap::new();
        let mut failed: BTreeMap<String, String> = BTreeMap::new();
        let deadline = Instant::now() + self.timeouts.protocol;
        loop {
            // Ask as many as are still needed, among approvers not asked yet.
            while signed.len() + pending.len() < t && !waiting.is_empty() {
                let m = waiting.remove(0);
                let msg = coordinator_to_module::Msg::MultisigSign(MultisigSign {
                    job_id: job.id.clone(),
                    certificate: certificate.to_vec(),
                });
                if self.hub.send(&m, msg).await {
                    pending.insert(m);
                } else {
                    failed.insert(m, "not connected".into());
                }
            }
            if signed.len() >= t {
                return Ok(signed);
            }
            if signed.len() + pending.len() < t {
                let why: Vec<String> = failed.iter().map(|(m, e)| format!("{m}: {e}")).collect();
                return Err(Error::Unavailable(format!(
                    "{} of the {t} signatures multisig wallet {wallet_id} needs were made ({})",
                    signed.len(),
                    why.join("; ")
                )));
            }
            let Ok(Some((module, event))) = tokio::time::timeout_at(deadline, events.recv()).await
            else {
                return Err(Error::Unavailable(format!(
                    "the approvers did not sign in time ({} of {t} signatures)",
                    signed.len()
                )));
            };
            if !pending.contains(&module) {
                continue;
            }
            let why = match event {
                ModuleEvent::MultisigSigned(s) if s.error.is_empty() => {
                    match check.check(&module, &s.signatures) {
                        Ok(()) => {
                            // With the module's audit entry of the release.
                            self.store
                                .add_events(
                                    &job.id,
                                    &[crate::store::NewEvent {
                                        module_id: Some(module.clone()),
                                        kind: EventKind::Note,
                                        digest: None,
                                        detail: Some(
                                            "signed with its own key; every signature verified"
                                                .into(),
                                        ),
                                        signature: None,
                                        audit: s.audit.as_ref().map(super::sign::audit_ref),
                                    }],
                                )
                                .await?;
                            pending.remove(&module);
                            signed.insert(module, s.signatures.iter().map(hex::encode).collect());
                            continue;
                        }
                        Err(e) => e,
                    }
                }
                ModuleEvent::MultisigSigned(s) => format!("refused to sign: {}", s.error),
                ModuleEvent::Disconnected => "disconnected".to_owned(),
                _ => continue,
            };
            self.store
                .add_event(
                    &job.id,
                    Some(&module),
                    EventKind::Failure,
                    None,
                    Some(&why),
                    None,
                )
                .await?;
            tracing::warn!(job = %job.id, %module, %why, "multisig signer failed");
            pending.remove(&module);
            failed.insert(module, why);
        }
    }
}

/// A multisig wallet as a wallet record (no key of its own: the definition is its key).
pub(crate) fn multisig_wallet(def: &MultisigDef) -> WalletRecord {
    let id = def.wallet_id().to_string();
    WalletRecord {
        group_id: format!("{MULTISIG_GROUP}{id}"),
        id,
        scheme: concord_types::Scheme::EcdsaSecp256k1.to_string(),
        public_key: Vec::new(),
        job_id: String::new(),
        created_at: String::new(),
    }
}

/// A multisig wallet's members as a group (its threshold the wallet's).
fn multisig_group(def: &MultisigDef) -> GroupRecord {
    GroupRecord {
        id: format!("{MULTISIG_GROUP}{}", def.wallet_id()),
        threshold: u16::from(def.threshold),
        size: def.members.len() as u16,
        status: GroupStatus::Ready,
        aux_job_id: None,
        members: def.members.iter().map(|m| m.module.clone()).collect(),
        // Never run: a multisig wallet signs with the members' own keys.
        engine: EcdsaEngine::Cggmp21,
        created_at: String::new(),
    }
}

/// What each member's signatures must verify against: its key, and the digests the
/// coordinator computes itself from the payload.
struct SignatureCheck {
    keys: BTreeMap<String, secp256k1::PublicKey>,
    digests: Vec<[u8; 32]>,
    /// A Safe transfer: 65-byte recoverable signatures of the SafeTx hash.
    safe: bool,
}

impl SignatureCheck {
    fn new(def: &MultisigDef, payload: &SigningPayload) -> Result<SignatureCheck, Error> {
        let bad = |e: String| Error::Internal(format!("multisig wallet definition: {e}"));
        let keys = def
            .members
            .iter()
            .map(|m| {
                let k = hex::decode(&m.key)
                    .ok()
                    .and_then(|b| secp256k1::PublicKey::from_slice(&b).ok())
                    .ok_or_else(|| bad(format!("{}'s key", m.module)))?;
                Ok((m.module.clone(), k))
            })
            .collect::<Result<_, Error>>()?;
        let (digests, safe) = match payload {
            SigningPayload::SafeTransfer { .. } => (vec![payload.digest()], true),
            SigningPayload::UtxoTransfer { .. } => {
                let (_, script) = def.wallet().map_err(|e| bad(e.to_string()))?;
                let psbt = payload
                    .psbt()
                    .ok_or_else(|| Error::Internal("the stored PSBT does not parse".into()))?;
                let digests = concord_chain::utxo::sighashes(&psbt, &script)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                (digests, false)
            }
            _ => return Err(Error::Internal("not a multisig payload".into())),
        };
        Ok(SignatureCheck {
            keys,
            digests,
            safe,
        })
    }

    /// Checks one member's signatures: one per digest, each by its own key.
    fn check(&self, module: &str, signatures: &[Vec<u8>]) -> Result<(), String> {
        let key = self
            .keys
            .get(module)
            .ok_or_else(|| format!("{module} is not a member of this multisig wallet"))?;
        if signatures.len() != self.digests.len() {
            return Err(format!(
                "sent {} signatures for {} digests",
                signatures.len(),
                self.digests.len()
            ));
        }
        let secp = secp256k1::Secp256k1::verification_only();
        for (i, (sig, digest)) in signatures.iter().zip(&self.digests).enumerate() {
            let want = if self.safe { 65 } else { 64 };
            if sig.len() != want {
                return Err(format!("signature {i} is {} bytes, not {want}", sig.len()));
            }
            if self.safe {
                // As the Safe will read it: `v` included, recovered to the member's address.
                let owner = concord_chain::evm_address(&key.serialize())
                    .map_err(|e| format!("the member's key: {e}"))?;
                let sig: [u8; 65] = sig[..].try_into().map_err(|_| "not 65 bytes".to_owned())?;
                concord_chain::safe::pack_signatures(
                    concord_chain::B256::from(*digest),
                    &[(owner, sig)],
                )
                .map_err(|e| format!("signature {i}: {e}"))?;
                continue;
            }
            let mut parsed = secp256k1::ecdsa::Signature::from_compact(&sig[..64])
                .map_err(|e| format!("signature {i} is not an ECDSA signature: {e}"))?;
            parsed.normalize_s();
            secp.verify_ecdsa(&secp256k1::Message::from_digest(*digest), &parsed, key)
                .map_err(|_| format!("signature {i} does not verify against its key"))?;
        }
        Ok(())
    }
}
