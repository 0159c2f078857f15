//! Policies, relayed: the coordinator stores what admins propose and sign, hands it to every
//! module, and records what each module reports in force. It cannot make or change a policy:
//! each module checks its admins' signatures and the order of versions itself. The
//! coordinator's copy of the policy in force serves only its own defence-in-depth checks
//! (refusing early what modules would refuse) and building requests.

use std::collections::BTreeMap;
use std::time::Duration;

use concord_wire::authority::{Endorsement, POLICY_TAG, Policy, SignedIntent, SignedPolicy};
use concord_wire::rpc::{PolicyStatus, PolicyUpdate, coordinator_to_module};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::engine::Engine;
use crate::hub::ModuleEvent;
use crate::records::{ModulePolicy, PolicyRecord, now};

/// How long adding a signature waits for connected modules to answer.
const STATUS_WAIT: Duration = Duration::from_secs(5);

/// A policy as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyView {
    /// Its hash, hex.
    pub hash: String,
    /// Its version.
    pub version: u64,
    /// `proposed`, `active` or `superseded`.
    pub status: String,
    /// The signed policy.
    pub signed: SignedPolicy,
    /// Each module's report: the policy in force there and, if this one was refused, why.
    pub modules: Vec<ModulePolicy>,
}

/// The policies as `GET /v1/policies` shows them.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policies {
    /// The policy in force in the modules (as the coordinator last heard), or else the
    /// newest proposal.
    pub current: Option<PolicyView>,
    /// The newest proposal not in force yet (what `policy approve` signs by default).
    pub pending: Option<PolicyView>,
}

/// Proposing a policy: the document; version and predecessor follow the policy in force.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposePolicy {
    /// The policy (its `version` and `previous` must follow the newest policy known here).
    pub policy: Policy,
}

fn hash_hex(p: &Policy) -> String {
    hex::encode(p.hash())
}

fn parse_doc(r: &PolicyRecord) -> Result<SignedPolicy, Error> {
    serde_json::from_str(&r.document)
        .map_err(|e| Error::Internal(format!("stored policy {}: {e}", r.hash)))
}

impl Engine {
    /// The policy in force in the modules, as the coordinator last heard: the newest active.
    pub async fn policy_in_force(&self) -> Result<Option<SignedPolicy>, Error> {
        let list = self.store.policies().await?;
        list.iter()
            .rev()
            .find(|r| r.status == "active")
            .map(parse_doc)
            .transpose()
    }

    /// Who signed an intent, by the names of the policy in force here (key fingerprints for
    /// keys it does not name). Only for the record: whether the signers may ask is for the
    /// modules to decide, each against its own copy of the policy, and their verdicts are what
    /// the transfer's record shows.
    pub async fn signers_of(&self, intent: &SignedIntent) -> Result<Vec<String>, Error> {
        let policy = self.policy_in_force().await?;
        Ok(intent
            .signatures
            .iter()
            .map(|s| {
                policy
                    .as_ref()
                    .and_then(|p| p.policy.principal(&s.key))
                    .map_or_else(
                        || format!("key {}", s.key.fingerprint()),
                        |p| p.name.clone(),
                    )
            })
            .collect())
    }

    /// Stores a proposed policy (unsigned) after checking it follows the newest known one.
    pub async fn propose_policy(&self, req: ProposePolicy) -> Result<PolicyView, Error> {
        let p = req.policy;
        p.validate().map_err(|e| Error::BadRequest(e.to_string()))?;
        let newest = self.policy_in_force().await?;
        let (want_version, want_previous) = match &newest {
            Some(c) => (c.policy.version + 1, Some(c.policy.hash())),
            None => (1, None),
        };
        if p.version != want_version || p.previous != want_previous {
            return Err(Error::Conflict(format!(
                "the policy must be version {want_version}{}: it follows the policy in force",
                want_previous.map_or(String::new(), |h| format!(
                    " with previous = {}",
                    hex::encode(h)
                ))
            )));
        }
        let hash = hash_hex(&p);
        if self.store.policy(&hash).await?.is_none() {
            let signed = SignedPolicy {
                policy: p,
                signatures: Vec::new(),
            };
            self.store
                .save_policy(&PolicyRecord {
                    hash: hash.clone(),
                    version: want_version,
                    document: serde_json::to_string(&signed)
                        .map_err(|e| Error::Internal(e.to_string()))?,
                    status: "proposed".into(),
                    created_at: now(),
                })
                .await?;
            tracing::info!(policy = %hash, version = want_version, "policy proposed");
        }
        self.policy_view(&hash).await
    }

    /// Adds an admin's signature (checked against the key it names; whether the key is an
    /// admin is the modules' to decide), offers the policy to every connected module and
    /// waits briefly for their answers.
    pub async fn sign_policy(&self, hash: &str, e: Endorsement) -> Result<PolicyView, Error> {
        let rec = self
            .store
            .policy(hash)
            .await?
            .ok_or_else(|| Error::NotFound(format!("policy {hash}")))?;
        let mut signed = parse_doc(&rec)?;
        e.verify(POLICY_TAG, &signed.policy.to_canonical())
            .map_err(|_| {
                Error::BadRequest(format!(
                    "the signature does not verify for key {} over policy {hash}",
                    e.key
                ))
            })?;
        signed.signatures.retain(|s| s.key != e.key);
        signed.signatures.push(e);
        self.store
            .save_policy(&PolicyRecord {
                document: serde_json::to_string(&signed)
                    .map_err(|e| Error::Internal(e.to_string()))?,
                ..rec
            })
            .await?;
        let waiter = format!("policy-{hash}");
        let mut events = self.hub.subscribe(&waiter);
        let mut asked = Vec::new();
        for m in self.store.modules().await? {
            if self.offer_policy(&m.id, &signed).await {
                asked.push(m.id);
            }
        }
        let deadline = tokio::time::Instant::now() + STATUS_WAIT;
        let mut answered = 0;
        while answered < asked.len() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some((_, ModuleEvent::Policy(_)))) => answered += 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        self.hub.finish(&waiter);
        self.policy_view(hash).await
    }

    async fn offer_policy(&self, module: &str, signed: &SignedPolicy) -> bool {
        let Ok(doc) = serde_json::to_vec(signed) else {
            return false;
        };
        self.hub
            .send(
                module,
                coordinator_to_module::Msg::Policy(PolicyUpdate { signed_policy: doc }),
            )
            .await
    }

    /// A module connected reporting its policy in force: record it, and offer it every newer
    /// policy that was signed, in version order.
    pub async fn module_connected(
        &self,
        module: &str,
        policy_hash: &[u8],
        version: u64,
    ) -> Result<(), Error> {
        self.store
            .set_module_policy(&ModulePolicy {
                module_id: module.to_owned(),
                policy_hash: (!policy_hash.is_empty()).then(|| hex::encode(policy_hash)),
                version,
                offered: None,
                error: None,
            })
            .await?;
        let mut by_version: BTreeMap<u64, PolicyRecord> = BTreeMap::new();
        for r in self.store.policies().await? {
            if r.version <= version {
                continue;
            }
            // Prefer the one modules adopted; else the newest proposal of that version.
            let keep = match by_version.get(&r.version) {
                Some(prev) => prev.status != "active" && prev.status != "superseded",
                None => true,
            };
            if keep {
                by_version.insert(r.version, r);
            }
        }
        for r in by_version.values() {
            let signed = parse_doc(r)?;
            if !signed.signatures.is_empty() {
                self.offer_policy(module, &signed).await;
            }
        }
        Ok(())
    }

    /// A module's answer to an offered policy.
    pub async fn policy_status(&self, module: &str, s: PolicyStatus) -> Result<(), Error> {
        let hash = (!s.policy_hash.is_empty()).then(|| hex::encode(&s.policy_hash));
        let offered = (!s.offered_hash.is_empty()).then(|| hex::encode(&s.offered_hash));
        self.store
            .set_module_policy(&ModulePolicy {
                module_id: module.to_owned(),
                policy_hash: hash.clone(),
                version: s.policy_version,
                offered: offered.clone(),
                error: (!s.error.is_empty()).then(|| s.error.clone()),
            })
            .await?;
        if let Some(h) = &hash
            && let Some(rec) = self.store.policy(h).await?
            && rec.status != "active"
        {
            for other in self.store.policies().await? {
                if other.status == "active" && other.version < rec.version {
                    self.store
                        .save_policy(&PolicyRecord {
                            status: "superseded".into(),
                            ..other
                        })
                        .await?;
                }
            }
            if rec.status == "proposed" {
                tracing::info!(policy = %h, version = rec.version, module, "policy in force");
                self.store
                    .save_policy(&PolicyRecord {
                        status: "active".into(),
                        ..rec
                    })
                    .await?;
            }
        }
        if let Some(o) = offered {
            self.hub
                .deliver(module, &format!("policy-{o}"), ModuleEvent::Policy(s));
        }
        Ok(())
    }

    /// A policy with every module's report.
    pub async fn policy_view(&self, hash: &str) -> Result<PolicyView, Error> {
        let rec = self
            .store
            .policy(hash)
            .await?
            .ok_or_else(|| Error::NotFound(format!("policy {hash}")))?;
        let signed = parse_doc(&rec)?;
        Ok(PolicyView {
            hash: rec.hash,
            version: rec.version,
            status: rec.status,
            signed,
            modules: self.store.module_policies().await?,
        })
    }

    /// The newest policy: the one in force, or else the newest proposal.
    pub async fn current_policy(&self) -> Result<Option<PolicyView>, Error> {
        let list = self.store.policies().await?;
        let pick = list
            .iter()
            .rev()
            .find(|r| r.status == "active")
            .or_else(|| list.last());
        match pick {
            Some(r) => Ok(Some(self.policy_view(&r.hash).await?)),
            None => Ok(None),
        }
    }

    /// The newest proposal that is not in force yet (what `policy approve` signs by default).
    pub async fn pending_policy(&self) -> Result<Option<PolicyView>, Error> {
        let list = self.store.policies().await?;
        let active = list
            .iter()
            .filter(|r| r.status == "active")
            .map(|r| r.version)
            .max()
            .unwrap_or(0);
        match list
            .iter()
            .rev()
            .find(|r| r.status == "proposed" && r.version > active)
        {
            Some(r) => Ok(Some(self.policy_view(&r.hash).await?)),
            None => Ok(None),
        }
    }
}
