//! Exchange withdraw keys the group cannot hold in shares (Kraken's HMAC secret): the
//! policy's *held credential* names the one module that holds the key and the members whose
//! approvals it needs. To the sign job it looks like a wallet of a group whose members are
//! the credential's (`held-<wallet id>`); its last step is not a threshold run but the
//! holder's `ExchangeSend` under the certificate: the holder checks it, sends the request
//! itself and answers with the exchange's withdrawal id. The coordinator never holds the
//! secret nor a signed request.

use std::collections::BTreeSet;

use concord_types::EcdsaEngine;
use concord_wire::authority::HeldCredential;
use concord_wire::payload::SigningPayload;
use concord_wire::rpc::{ExchangeSend, coordinator_to_module};
use tokio::time::Instant;

use super::Engine;
use super::protocol::Events;
use crate::Error;
use crate::hub::ModuleEvent;
use crate::records::{EventKind, GroupRecord, GroupStatus, JobRecord, WalletRecord};

/// The prefix of a held credential's group id.
pub(crate) const HELD_GROUP: &str = "held-";

impl Engine {
    /// The held credential `wallet_id` of the policy in force, if it is one.
    pub(crate) async fn held_def(&self, wallet_id: &str) -> Result<Option<HeldCredential>, Error> {
        let Ok(id) = wallet_id.parse::<concord_types::WalletId>() else {
            return Ok(None);
        };
        Ok(self
            .policy_in_force()
            .await?
            .and_then(|p| p.policy.wallet(&id).and_then(|r| r.held.clone())))
    }

    /// The group of a held credential (`held-<wallet id>`), from its definition.
    pub(crate) async fn held_group(&self, group_id: &str) -> Result<GroupRecord, Error> {
        let wallet_id = group_id.strip_prefix(HELD_GROUP).unwrap_or_default();
        let def = self.held_def(wallet_id).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "held credential {wallet_id} in the policy in force"
            ))
        })?;
        Ok(GroupRecord {
            id: format!("{HELD_GROUP}{}", def.wallet_id()),
            threshold: u16::from(def.threshold),
            size: def.members.len() as u16,
            status: GroupStatus::Ready,
            aux_job_id: None,
            members: def.members.iter().map(|m| m.module.clone()).collect(),
            // Never run: the holder sends with the key it holds.
            engine: EcdsaEngine::Cggmp21,
            created_at: String::new(),
        })
    }

    /// The last step of a held credential's sign job: the holder, given the certificate,
    /// sends the approved request. Returns the holder and the exchange's withdrawal id.
    pub(super) async fn send_held(
        &self,
        job: &JobRecord,
        payload: &SigningPayload,
        approvers: &BTreeSet<String>,
        certificate: &[concord_wire::rpc::Approval],
        events: &mut Events,
    ) -> Result<(String, String), Error> {
        let wallet_id = payload.wallet().to_string();
        let def = self.held_def(&wallet_id).await?.ok_or_else(|| {
            Error::refused(format!(
                "wallet {wallet_id} is no longer a held credential of the policy in force"
            ))
        })?;
        let holder = def.holder.clone();
        if !approvers.contains(&holder) {
            // Its own approval is what it sends under.
            return Err(Error::Unavailable(format!(
                "the holder of the withdraw key, {holder}, did not approve the request"
            )));
        }
        let msg = coordinator_to_module::Msg::ExchangeSend(ExchangeSend {
            job_id: job.id.clone(),
            certificate: certificate.to_vec(),
        });
        if !self.hub.send(&holder, msg).await {
            return Err(Error::Unavailable(format!(
                "the holder of the withdraw key, {holder}, is not connected"
            )));
        }
        let deadline = Instant::now() + self.timeouts.protocol;
        loop {
            let Ok(Some((module, event))) = tokio::time::timeout_at(deadline, events.recv()).await
            else {
                return Err(Error::Unavailable(format!(
                    "the holder of the withdraw key, {holder}, did not answer in time"
                )));
            };
            if module != holder {
                continue;
            }
            match event {
                ModuleEvent::ExchangeSent(s)
                    if s.error.is_empty() && !s.withdrawal_id.is_empty() =>
                {
                    self.store
                        .add_events(
                            &job.id,
                            &[crate::store::NewEvent {
                                module_id: Some(holder.clone()),
                                kind: EventKind::Note,
                                digest: None,
                                detail: Some(format!(
                                    "sent with the held withdraw key under the certificate: exchange withdrawal {}",
                                    s.withdrawal_id
                                )),
                                signature: None,
                                audit: s.audit.as_ref().map(super::sign::audit_ref),
                            }],
                        )
                        .await?;
                    return Ok((holder, s.withdrawal_id));
                }
                ModuleEvent::ExchangeSent(s) => {
                    let why = if s.error.is_empty() {
                        "answered without a withdrawal id".to_owned()
                    } else {
                        s.error
                    };
                    self.store
                        .add_event(
                            &job.id,
                            Some(&holder),
                            EventKind::Failure,
                            None,
                            Some(&why),
                            None,
                        )
                        .await?;
                    if s.outcome_unknown {
                        // Never failed while it may have happened: retried, and the holder
                        // answers again from its ledger (never sending twice).
                        return Err(Error::Unavailable(format!(
                            "the holder of the withdraw key, {holder}, does not know whether the exchange took the request: {why}"
                        )));
                    }
                    return Err(Error::refused(format!(
                        "the holder of the withdraw key, {holder}, did not send: {why}"
                    )));
                }
                ModuleEvent::Disconnected => {
                    return Err(Error::Unavailable(format!(
                        "the holder of the withdraw key, {holder}, disconnected before it answered"
                    )));
                }
                _ => continue,
            }
        }
    }
}

/// A held credential as a wallet record (no key of its own: the definition is its key).
pub(crate) fn held_wallet(def: &HeldCredential) -> WalletRecord {
    let id = def.wallet_id().to_string();
    WalletRecord {
        group_id: format!("{HELD_GROUP}{id}"),
        id,
        scheme: concord_types::Scheme::Ed25519.to_string(),
        public_key: Vec::new(),
        job_id: String::new(),
        created_at: String::new(),
    }
}
