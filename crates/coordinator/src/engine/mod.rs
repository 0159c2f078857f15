//! The transaction manager and signature aggregator: runs every job through its steps,
//! writing each step to the store before acting on it.
//!
//! - `aux_info`: a new signer group prepares its auxiliary material (all members).
//! - `keygen` / `import`: a wallet is created by DKG, or an existing key's sealed shards are
//!   opened (all members); every member must report the same group key.
//! - `sign`: the payload and its signed intent are proposed to every connected member; each
//!   checks them against its own policy and answers with a signed approval or a refusal.
//!   The agreement rule decides; then `t` approving members sign, each checking the
//!   certificate of approvals itself, and the signature is verified against the wallet's
//!   key before the job is done. A signer that drops out is replaced by another approver.
//! - `presign`: an ECDSA presignature for the pool.
//!
//! Work is leased (see [`crate::store::leases`]): this coordinator runs the jobs and
//! transfers it created or claimed, renews their leases while it does, and claims what
//! another coordinator left unfinished once its lease expired.

mod held;
mod multisig;
mod presign;
mod protocol;
mod setup;
mod sign;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::Error;
use crate::config::Timeouts;
use crate::hub::Hub;
use crate::records::{EventKind, GroupStatus, JobKind, JobRecord, epoch_ms};
use crate::store::Store;
use crate::store::leases::{LEASE_MS, Work};

pub(crate) use held::held_wallet;
pub(crate) use multisig::{MULTISIG_GROUP, multisig_wallet};
pub use presign::subsets;

/// Runs jobs and transfers. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) store: Store,
    pub(crate) hub: Hub,
    pub(crate) timeouts: Timeouts,
    /// Announces every job and transfer that finished, failed or moved (for long-polls).
    pub(crate) finished: tokio::sync::broadcast::Sender<String>,
    /// Chain and exchanges, when transfers are configured.
    pub(crate) transfers: Option<Arc<crate::config::TransferContext>>,
    /// This coordinator process, as lease owner.
    pub(crate) instance: Arc<str>,
    /// Work this process is running now (job and transfer ids).
    running: Arc<Mutex<HashSet<String>>>,
}

/// The lease deadline of work taken now.
pub(crate) fn lease_deadline() -> u64 {
    epoch_ms() + LEASE_MS
}

impl Engine {
    /// An engine over a store, with a fresh instance id.
    pub fn new(store: Store, timeouts: Timeouts) -> Engine {
        Engine {
            store,
            hub: Hub::default(),
            timeouts,
            finished: tokio::sync::broadcast::channel(1024).0,
            transfers: None,
            instance: uuid::Uuid::new_v4().to_string().into(),
            running: Arc::default(),
        }
    }

    /// The exchanges' network code of the EVM chain wallets' addresses are shown on: the
    /// configured chain's, else the default (`ETH`).
    pub(crate) fn evm_network(&self) -> &str {
        self.transfers
            .as_ref()
            .map_or(crate::config::DEFAULT_NETWORK, |c| c.chain.network.as_str())
    }

    /// The UTXO chain, if one is configured: its address rules and the exchanges' network
    /// code for it.
    pub(crate) fn utxo_network(&self) -> Option<(concord_chain::utxo::UtxoNetwork, &str)> {
        self.transfers
            .as_ref()
            .and_then(|c| c.utxo.as_ref())
            .map(|u| (u.network, u.settings.network.as_str()))
    }

    /// Marks `id` as run by this process; `false` if it already is.
    pub(crate) fn start_running(&self, id: &str) -> bool {
        self.running
            .lock()
            .map(|mut r| r.insert(id.to_owned()))
            .unwrap_or(false)
    }

    pub(crate) fn stop_running(&self, id: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.remove(id);
        }
    }

    /// Runs `work` while renewing the lease on `(kind, id)`; stops it (dropping the future)
    /// if the lease is lost to another coordinator.
    pub(crate) async fn leased<T>(
        &self,
        kind: Work,
        id: &str,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let renew = async {
            loop {
                tokio::time::sleep(Duration::from_millis(LEASE_MS / 3)).await;
                match self
                    .store
                    .renew_lease(kind, id, &self.instance, lease_deadline())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        return Error::LeaseLost(format!(
                            "{id} was taken over by another coordinator"
                        ));
                    }
                    // The database is unreachable: keep trying; the lease may lapse and
                    // another coordinator take over, whose writes then fence this one out.
                    Err(e) => tracing::warn!(%id, error = %e, "cannot renew a lease"),
                }
            }
        };
        tokio::select! {
            r = work => r,
            lost = renew => Err(lost),
        }
    }

    /// Starts (or resumes) a standalone job in the background, under this coordinator's
    /// lease.
    pub fn spawn(&self, job: JobRecord) {
        if !self.start_running(&job.id) {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let id = job.id.clone();
            let taken = engine
                .store
                .take_lease(
                    Work::Job,
                    &id,
                    &engine.instance,
                    epoch_ms(),
                    lease_deadline(),
                )
                .await;
            if matches!(taken, Ok(true)) {
                let outcome = engine.leased(Work::Job, &id, engine.run_job(&job)).await;
                engine.end_job(&job, outcome).await;
            }
            engine.stop_running(&id);
        });
    }

    /// Runs a job of any kind to its end (without lease handling: callers hold it).
    pub(crate) async fn run_job(&self, job: &JobRecord) -> Result<(), Error> {
        let mut events = self.hub.subscribe(&job.id);
        let outcome = match job.kind {
            JobKind::AuxInfo => self.run_aux(job, &mut events).await,
            JobKind::Keygen | JobKind::Import => self.run_keygen(job, &mut events).await,
            JobKind::Sign => self.run_sign(job, &mut events).await,
            JobKind::Presign => self.run_presign(job, &mut events).await,
            JobKind::Refresh => self.run_refresh(job, &mut events).await,
            JobKind::Derive => self.run_derive(job, &mut events).await,
            JobKind::Repair => self.run_repair(job, &mut events).await,
        };
        self.hub.finish(&job.id);
        outcome
    }

    /// Records a job's failure (a lost lease is not a failure: the new owner goes on).
    pub(crate) async fn end_job(&self, job: &JobRecord, outcome: Result<(), Error>) {
        match outcome {
            Ok(()) => {}
            Err(Error::LeaseLost(e)) => {
                tracing::info!(job = %job.id, %e, "job left to another coordinator")
            }
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "job failed");
                let _ = self.store.fail_job(&job.id, &e.to_string()).await;
                let _ = self
                    .store
                    .add_event(
                        &job.id,
                        None,
                        EventKind::Failure,
                        None,
                        Some(&e.to_string()),
                        None,
                    )
                    .await;
                if job.kind == JobKind::AuxInfo {
                    let _ = self
                        .store
                        .set_group_status(&job.group_id, GroupStatus::Failed)
                        .await;
                }
            }
        }
        let _ = self.finished.send(job.id.clone());
    }

    /// Waits until a job is done or failed, or `wait` has passed, and returns its record.
    pub(crate) async fn wait_job(
        &self,
        id: &str,
        wait: Option<Duration>,
    ) -> Result<JobRecord, Error> {
        let deadline = wait.map(|w| Instant::now() + w);
        // Subscribe before looking, so a finish between the two is not missed.
        let mut finished = self.finished.subscribe();
        loop {
            let job = self
                .store
                .job(id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("job {id}")))?;
            if job.status.is_final() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(job);
            }
            // Wake on the job's announcement; look again at least every second (another
            // coordinator may be running it, or a lagging subscriber missed it).
            let tick = Instant::now() + Duration::from_secs(1);
            let until = deadline.map_or(tick, |d| d.min(tick));
            loop {
                match tokio::time::timeout_at(until, finished.recv()).await {
                    Ok(Ok(done)) if done == id => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => break,
                }
            }
        }
    }

    /// Claims, once a second, unfinished work whose lease is free or expired — at start-up,
    /// what this coordinator left when it stopped; later, what another left when it died —
    /// and resumes it.
    pub fn start_claims(&self) {
        let engine = self.clone();
        tokio::spawn(async move {
            // The first round also takes back what this instance held before a restart.
            let mut own = true;
            loop {
                match engine.claim_once(own).await {
                    Ok(more) => own = own && more,
                    Err(e) => tracing::warn!(error = %e, "claiming unfinished work failed"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// One round of claims; `true` if it may have left claimable work behind (a full batch).
    async fn claim_once(&self, own: bool) -> Result<bool, Error> {
        const BATCH: u32 = 16;
        let now = epoch_ms();
        let jobs = self
            .store
            .claim_jobs(&self.instance, now, lease_deadline(), BATCH, own)
            .await?;
        let mut full = jobs.len() == BATCH as usize;
        for job in jobs {
            tracing::info!(job = %job.id, kind = %job.kind, status = %job.status, "resuming job");
            self.store
                .add_event(
                    &job.id,
                    None,
                    EventKind::Note,
                    None,
                    Some("resumed by a coordinator after a restart or a failover"),
                    None,
                )
                .await?;
            self.spawn(job);
        }
        if self.transfers.is_some() {
            let transfers = self
                .store
                .claim_transfers(&self.instance, now, lease_deadline(), BATCH, own)
                .await?;
            full |= transfers.len() == BATCH as usize;
            for t in transfers {
                tracing::info!(transfer = %t.id, status = %t.status, "resuming transfer");
                self.spawn_transfer(t, true);
            }
        }
        Ok(full)
    }
}
