//! The ECDSA presignature pool: kept full per wallet and signer subset, one presignature at a
//! time; a sign job reserves one whose signers all approved and are connected.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use concord_types::{Scheme, WalletId};
use concord_wire::messages::PresignResult;
use concord_wire::rpc::ProtocolKind;

use super::Engine;
use super::protocol::{Events, Run};
use crate::Error;
use crate::records::{EventKind, JobKind, JobRecord, JobStatus, PresignatureMade};

impl Engine {
    /// Picks an available presignature whose signers are all among `candidates` (approving
    /// and connected) and marks it used by this job before anyone is asked to use it.
    pub(crate) async fn reserve_presignature(
        &self,
        job_id: &str,
        wallet_id: &str,
        candidates: &[u16],
    ) -> Result<Option<(Vec<u8>, Vec<u16>)>, Error> {
        for (fp, signers) in self.store.available_presignatures(wallet_id).await? {
            let Ok(signers) = serde_json::from_str::<Vec<u16>>(&signers) else {
                continue;
            };
            if signers.iter().all(|s| candidates.contains(s))
                && self.store.use_presignature(&fp, job_id).await?
            {
                let fp_bytes = hex::decode(&fp)
                    .map_err(|_| Error::Internal("stored fingerprint is not hex".into()))?;
                let note = format!("using presignature {} of signers {signers:?}", &fp[..16]);
                self.store
                    .add_event(job_id, None, EventKind::Note, None, Some(&note), None)
                    .await?;
                return Ok(Some((fp_bytes, signers)));
            }
        }
        Ok(None)
    }

    pub(crate) async fn run_presign(
        &self,
        job: &JobRecord,
        events: &mut Events,
    ) -> Result<(), Error> {
        let group = self.group_of(&job.group_id).await?;
        let wallet_id = job.wallet_id.clone().unwrap_or_default();
        let wallet_raw: WalletId = wallet_id
            .parse()
            .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))?;
        let signers: Vec<u16> = job
            .signers
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| Error::Internal("presign job without signers".into()))?;
        let run = Run {
            job,
            kind: ProtocolKind::Presign,
            group: &group,
            parties: &signers,
            status: JobStatus::Running,
            timeout: self.timeouts.protocol,
            session: None,
        };
        let results = self
            .run_protocol(run, events, |s| s.wallet_id = wallet_raw.0.to_vec())
            .await
            .map_err(|e| e.into_error(&group))?;
        let mut fingerprints = BTreeSet::new();
        for (module, r) in &results {
            let r: PresignResult = serde_json::from_slice(r).map_err(|e| Error::Protocol {
                reason: format!("module {module} sent an unreadable result: {e}"),
                blamed: vec![module.clone()],
            })?;
            fingerprints.insert(r.fingerprint);
        }
        let fingerprints: Vec<String> = fingerprints.into_iter().collect();
        let [fp] = fingerprints.as_slice() else {
            return Err(Error::protocol(
                "the signers report different presignatures",
            ));
        };
        let signers_json = serde_json::to_string(&signers).unwrap_or_default();
        self.store
            .add_presignature(fp, &wallet_id, &signers_json)
            .await?;
        let result = PresignatureMade {
            fingerprint: fp.clone(),
            signers,
        };
        self.store
            .finish_job(&job.id, &serde_json::to_vec(&result).unwrap_or_default())
            .await
    }

    /// Keeps `target` presignatures available for every ECDSA wallet and every signer subset
    /// of its group whose members are all connected, making one presignature at a time.
    pub async fn run_pool(self, target: usize) {
        if target == 0 {
            return;
        }
        loop {
            match self.refill_once(target).await {
                Ok(true) => {}
                Ok(false) => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(e) => {
                    tracing::warn!(error = %e, "presignature pool refill failed");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    async fn refill_once(&self, target: usize) -> Result<bool, Error> {
        for wallet in self.store.wallets().await? {
            if wallet.scheme != Scheme::EcdsaSecp256k1.as_str() {
                continue;
            }
            let group = self.group_of(&wallet.group_id).await?;
            if !group.engine.presigns() {
                continue;
            }
            let mut counts: HashMap<String, usize> = HashMap::new();
            for (_, signers) in self.store.available_presignatures(&wallet.id).await? {
                *counts.entry(signers).or_default() += 1;
            }
            for subset in subsets(group.size, usize::from(group.threshold)) {
                let key = serde_json::to_string(&subset).unwrap_or_default();
                let connected = subset
                    .iter()
                    .all(|i| self.hub.is_connected(&group.members[usize::from(*i)]));
                if !connected || counts.get(&key).copied().unwrap_or(0) >= target {
                    continue;
                }
                let job = JobRecord {
                    wallet_id: Some(wallet.id.clone()),
                    scheme: Some(wallet.scheme.clone()),
                    signers: Some(key),
                    ..JobRecord::pending(
                        uuid::Uuid::new_v4().to_string(),
                        JobKind::Presign,
                        &group.id,
                    )
                };
                self.store
                    .insert_job(&job, &self.instance, super::lease_deadline())
                    .await?;
                // Under this coordinator's lease, run here (another coordinator's pool makes
                // its own).
                self.store
                    .take_lease(
                        crate::store::leases::Work::Job,
                        &job.id,
                        &self.instance,
                        crate::records::epoch_ms(),
                        super::lease_deadline(),
                    )
                    .await?;
                let outcome = self
                    .leased(crate::store::leases::Work::Job, &job.id, self.run_job(&job))
                    .await;
                let failed = outcome.as_ref().err().cloned();
                self.end_job(&job, outcome).await;
                if let Some(e) = failed {
                    return Err(e);
                }
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// All `k`-element subsets of `0..n`, ascending.
pub fn subsets(n: u16, k: usize) -> Vec<Vec<u16>> {
    fn go(start: u16, n: u16, k: usize, cur: &mut Vec<u16>, out: &mut Vec<Vec<u16>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            go(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(0, n, k, &mut Vec::new(), &mut out);
    out
}
