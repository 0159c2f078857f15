//! The transaction manager and signature aggregator: runs every job through its steps,
//! writing each step to the store before acting on it.
//!
//! - `aux_info`: a new signer group prepares its auxiliary material (all members).
//! - `keygen`: a wallet is created by DKG (all members); every member must report the same
//!   group key.
//! - `sign`: the payload is proposed to every connected member; each recomputes the digest
//!   and answers with a signed approval or a refusal. The agreement rule decides; then `t`
//!   approving members sign, and the signature is verified against the wallet's key before
//!   the job is done. A signer that drops out is replaced by another approver.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use concord_types::{Scheme, WalletId};
use concord_wire::authority::{ApprovalStatement, sign_session};
use concord_wire::identity::PublicIdentity;
use concord_wire::messages::{AuxResult, KeygenResult, PresignResult, SignResult};
use concord_wire::payload::SigningPayload;
use concord_wire::rpc::{
    Abort, Approval, Participant, Proposal, ProtocolKind, StartProtocol, coordinator_to_module,
    job_update,
};
use rand::RngCore;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use crate::hub::{Hub, ModuleEvent};
use crate::store::{GroupRecord, JobRecord, Store, WalletRecord, now};
use crate::{AgreementRule, Error};

/// How long each step may take.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Waiting for approvals after a proposal.
    pub approval: Duration,
    /// A signing or key-generation run.
    pub protocol: Duration,
    /// Auxiliary-material preparation (safe primes take minutes on small machines).
    pub aux_info: Duration,
    /// Waiting for members to connect before a run that needs all of them.
    pub connect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            approval: Duration::from_secs(15),
            protocol: Duration::from_secs(60),
            aux_info: Duration::from_secs(1800),
            connect: Duration::from_secs(30),
        }
    }
}

/// Why a protocol run did not finish.
enum RunError {
    /// A party disconnected, never connected, or did not answer in time.
    Unavailable(String),
    /// A party reported that the protocol failed.
    Failed {
        module: String,
        error: String,
        blamed: Vec<u32>,
    },
    /// Storage failed.
    Fatal(Error),
}

impl From<Error> for RunError {
    fn from(e: Error) -> Self {
        RunError::Fatal(e)
    }
}

/// Runs jobs. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) store: Store,
    pub(crate) hub: Hub,
    pub(crate) timeouts: Timeouts,
    /// Announces every job and transfer that finished or failed (for long-polling clients).
    pub(crate) finished: tokio::sync::broadcast::Sender<String>,
    /// Chain and exchanges, when transfers are configured.
    pub(crate) transfers: Option<std::sync::Arc<crate::transfers::TransferContext>>,
}

fn random_session() -> Vec<u8> {
    let mut s = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

impl Engine {
    /// Starts (or resumes) a job in the background.
    pub fn spawn(&self, job: JobRecord) {
        let engine = self.clone();
        tokio::spawn(async move {
            let id = job.id.clone();
            let mut events = engine.hub.subscribe(&id);
            let outcome = match job.kind.as_str() {
                "aux_info" => engine.run_aux(&job, &mut events).await,
                "keygen" => engine.run_keygen(&job, &mut events).await,
                "sign" => engine.run_sign(&job, &mut events).await,
                "presign" => engine.run_presign(&job, &mut events).await,
                "import" => engine.run_keygen(&job, &mut events).await,
                other => Err(Error::Internal(format!("unknown job kind {other}"))),
            };
            engine.hub.finish(&id);
            let failed = outcome.is_err();
            if let Err(e) = outcome {
                tracing::warn!(job = %id, error = %e, "job failed");
                let _ = engine.store.fail_job(&id, &e.to_string()).await;
                let _ = engine
                    .store
                    .add_event(&id, None, "failure", None, Some(&e.to_string()), None)
                    .await;
                if job.kind == "aux_info" {
                    let _ = engine.store.set_group_status(&job.group_id, "failed").await;
                }
            }
            tracing::debug!(job = %id, failed, "job ended");
            let _ = engine.finished.send(id);
        });
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
            if matches!(job.status.as_str(), "done" | "failed")
                || deadline.is_some_and(|d| Instant::now() >= d)
            {
                return Ok(job);
            }
            // Wake on the job's announcement; look again at least every second, since a
            // lagging subscriber may have missed it.
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

    /// Resumes every unfinished job (after a restart).
    pub async fn resume(&self) -> Result<usize, Error> {
        let jobs = self.store.unfinished_jobs().await?;
        let n = jobs.len();
        for job in jobs {
            tracing::info!(job = %job.id, kind = %job.kind, status = %job.status, "resuming job");
            self.store
                .add_event(
                    &job.id,
                    None,
                    "note",
                    None,
                    Some("resumed after a coordinator restart"),
                    None,
                )
                .await?;
            self.spawn(job);
        }
        Ok(n)
    }

    async fn participants(&self, group: &GroupRecord) -> Result<Vec<Participant>, Error> {
        let mut out = Vec::with_capacity(group.members.len());
        for (idx, m) in group.members.iter().enumerate() {
            let rec = self
                .store
                .module(m)
                .await?
                .ok_or_else(|| Error::Internal(format!("group member {m} is not enrolled")))?;
            out.push(Participant {
                index: idx as u32,
                module_id: rec.id,
                identity: rec.identity,
                sealing_public_key: rec.sealing_key,
                sealing_key_signature: rec.sealing_key_signature,
            });
        }
        Ok(out)
    }

    async fn group_of(&self, id: &str) -> Result<GroupRecord, Error> {
        self.store
            .group(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("group {id}")))
    }

    /// Waits until every listed module is connected, or the connect timeout passes.
    async fn wait_connected(&self, modules: &[String]) -> Result<(), Error> {
        let deadline = Instant::now() + self.timeouts.connect;
        loop {
            let missing: Vec<&String> = modules
                .iter()
                .filter(|m| !self.hub.is_connected(m))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "modules {} are not connected",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every member is connected, or at least `t` are and a short grace period
    /// has passed (so a job started or resumed while modules reconnect asks as many as it
    /// can), or the connect timeout passes.
    async fn wait_quorum(&self, members: &[String], t: usize) -> Result<(), Error> {
        let start = Instant::now();
        let grace = Duration::from_secs(3).min(self.timeouts.connect);
        loop {
            let up = members.iter().filter(|m| self.hub.is_connected(m)).count();
            if up == members.len() || (up >= t && start.elapsed() >= grace) {
                return Ok(());
            }
            if start.elapsed() >= self.timeouts.connect {
                return Err(Error::Unavailable(format!(
                    "only {up} of the group's modules are connected, {t} are needed"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs one protocol among `parties` (group indices) and collects every party's result.
    #[allow(clippy::too_many_arguments)]
    async fn run_protocol(
        &self,
        job: &JobRecord,
        kind: ProtocolKind,
        group: &GroupRecord,
        parties: &[u16],
        status: &str,
        timeout: Duration,
        events: &mut UnboundedReceiver<(String, ModuleEvent)>,
        session: Option<Vec<u8>>,
        fill: impl Fn(&mut StartProtocol),
    ) -> Result<BTreeMap<String, Vec<u8>>, RunError> {
        let session = session.unwrap_or_else(random_session);
        let signers = serde_json::to_string(parties).unwrap_or_default();
        self.store
            .set_job_running(&job.id, status, Some(&session), Some(&signers))
            .await?;
        let group_list = self.participants(group).await?;
        let route: HashMap<u32, String> = parties
            .iter()
            .filter_map(|i| {
                group
                    .members
                    .get(usize::from(*i))
                    .map(|m| (u32::from(*i), m.clone()))
            })
            .collect();
        self.hub.set_route(&job.id, route.clone());
        let mut start = StartProtocol {
            job_id: job.id.clone(),
            session: session.clone(),
            kind: kind as i32,
            group_id: group.id.clone(),
            scheme: job.scheme.clone().unwrap_or_default(),
            threshold: u32::from(group.threshold),
            group: group_list,
            parties: parties.iter().map(|p| u32::from(*p)).collect(),
            ..Default::default()
        };
        fill(&mut start);
        for module in route.values() {
            if !self
                .hub
                .send(module, coordinator_to_module::Msg::Start(start.clone()))
                .await
            {
                return Err(RunError::Unavailable(module.clone()));
            }
        }
        let abort = |reason: String| {
            let hub = self.hub.clone();
            let job_id = job.id.clone();
            let modules: Vec<String> = route.values().cloned().collect();
            async move {
                for m in modules {
                    hub.send(
                        &m,
                        coordinator_to_module::Msg::Abort(Abort {
                            job_id: job_id.clone(),
                            reason: reason.clone(),
                        }),
                    )
                    .await;
                }
            }
        };
        let deadline = Instant::now() + timeout;
        let mut results = BTreeMap::new();
        let mut last_stage: HashMap<String, String> = HashMap::new();
        while results.len() < route.len() {
            let next = tokio::time::timeout_at(deadline, events.recv()).await;
            let (module, event) = match next {
                Ok(Some(e)) => e,
                Ok(None) => {
                    return Err(RunError::Fatal(Error::Internal(
                        "event channel closed".into(),
                    )));
                }
                Err(_) => {
                    let missing: Vec<String> = route
                        .values()
                        .filter(|m| !results.contains_key(*m))
                        .cloned()
                        .collect();
                    abort("timed out".into()).await;
                    return Err(RunError::Unavailable(missing.join(", ")));
                }
            };
            if !route.values().any(|m| *m == module) {
                continue;
            }
            match event {
                ModuleEvent::Disconnected => {
                    if !results.contains_key(&module) {
                        abort(format!("module {module} disconnected")).await;
                        return Err(RunError::Unavailable(module));
                    }
                }
                // An update from an abandoned run of this job (a retry replaced it).
                ModuleEvent::Update(u) if u.session != session => {}
                ModuleEvent::Update(u) => match u.status {
                    Some(job_update::Status::Result(r)) => {
                        results.insert(module, r);
                    }
                    Some(job_update::Status::Failure(f)) => {
                        abort(format!("module {module} failed")).await;
                        return Err(RunError::Failed {
                            module,
                            error: f.error,
                            blamed: f.blamed,
                        });
                    }
                    // Record stage changes, not every tick.
                    Some(job_update::Status::Progress(p))
                        if last_stage.get(&module) != Some(&p.stage) =>
                    {
                        last_stage.insert(module.clone(), p.stage.clone());
                        self.store
                            .add_event(
                                &job.id,
                                Some(&module),
                                "progress",
                                None,
                                Some(&p.stage),
                                None,
                            )
                            .await?;
                    }
                    Some(job_update::Status::Progress(_)) | None => {}
                },
                ModuleEvent::Approval(_) | ModuleEvent::Refusal(_) | ModuleEvent::Policy(_) => {}
            }
        }
        Ok(results)
    }

    async fn run_aux(
        &self,
        job: &JobRecord,
        events: &mut UnboundedReceiver<(String, ModuleEvent)>,
    ) -> Result<(), Error> {
        let group = self.group_of(&job.group_id).await?;
        self.wait_connected(&group.members).await?;
        let all: Vec<u16> = (0..group.size).collect();
        let results = self
            .run_protocol(
                job,
                ProtocolKind::AuxInfo,
                &group,
                &all,
                "running",
                self.timeouts.aux_info,
                events,
                None,
                |_| {},
            )
            .await
            .map_err(|e| self.run_error(job, e))?;
        for (module, r) in &results {
            let r: AuxResult = serde_json::from_slice(r).map_err(|e| {
                Error::Protocol(format!("module {module} sent an unreadable result: {e}"))
            })?;
            if r.group_id != group.id {
                return Err(Error::Protocol(format!(
                    "module {module} prepared group {} instead of {}",
                    r.group_id, group.id
                )));
            }
        }
        self.store.set_group_status(&group.id, "ready").await?;
        self.store
            .finish_job(
                &job.id,
                &serde_json::to_vec(&serde_json::json!({"group_id": group.id})).unwrap_or_default(),
            )
            .await
    }

    fn run_error(&self, _job: &JobRecord, e: RunError) -> Error {
        match e {
            RunError::Unavailable(m) => {
                Error::Unavailable(format!("module(s) {m} did not take part"))
            }
            RunError::Failed {
                module,
                error,
                blamed,
            } => Error::Protocol(format!(
                "module {module} reported: {error}{}",
                if blamed.is_empty() {
                    String::new()
                } else {
                    format!(" (blamed indices {blamed:?})")
                }
            )),
            RunError::Fatal(e) => e,
        }
    }

    async fn run_keygen(
        &self,
        job: &JobRecord,
        events: &mut UnboundedReceiver<(String, ModuleEvent)>,
    ) -> Result<(), Error> {
        let group = self.group_of(&job.group_id).await?;
        if group.status != "ready" {
            return Err(Error::Conflict(format!(
                "group {} is {}, not ready",
                group.id, group.status
            )));
        }
        self.wait_connected(&group.members).await?;
        let all: Vec<u16> = (0..group.size).collect();
        // An import carries the importer's intent and the sealed shards; a key generation
        // runs DKG.
        let import: Option<crate::ImportWallet> = if job.kind == "import" {
            let raw = job.payload.as_deref().unwrap_or_default();
            Some(
                serde_json::from_slice(raw)
                    .map_err(|e| Error::Internal(format!("stored import request: {e}")))?,
            )
        } else {
            None
        };
        let (kind, importer, shards, wallet_raw, intent, announced) = match &import {
            Some(i) => {
                let concord_wire::authority::Action::Import {
                    scheme, public_key, ..
                } = &i.intent.intent.action
                else {
                    return Err(Error::Internal(
                        "stored import without an import intent".into(),
                    ));
                };
                let wallet = WalletId::derive(*scheme, public_key);
                let shards = i
                    .shards
                    .iter()
                    .map(|h| {
                        hex::decode(h).map_err(|_| Error::BadRequest("a shard is not hex".into()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (
                    ProtocolKind::Import,
                    hex::decode(&i.importer).unwrap_or_default(),
                    shards,
                    wallet.0.to_vec(),
                    i.intent.to_json(),
                    Some(hex::encode(public_key)),
                )
            }
            None => (
                ProtocolKind::Keygen,
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                None,
            ),
        };
        let results = self
            .run_protocol(
                job,
                kind,
                &group,
                &all,
                "running",
                self.timeouts.protocol,
                events,
                None,
                |s| {
                    s.importer = importer.clone();
                    s.import_shards = shards.clone();
                    s.wallet_id = wallet_raw.clone();
                    s.intent = intent.clone();
                },
            )
            .await
            .map_err(|e| self.run_error(job, e))?;
        let mut agreed: Option<KeygenResult> = None;
        for (module, r) in &results {
            let r: KeygenResult = serde_json::from_slice(r).map_err(|e| {
                Error::Protocol(format!("module {module} sent an unreadable result: {e}"))
            })?;
            match &agreed {
                None => agreed = Some(r),
                Some(a) if *a == r => {}
                Some(_) => {
                    return Err(Error::Protocol(format!(
                        "module {module} reports a different group key than the others"
                    )));
                }
            }
        }
        let r = agreed.ok_or_else(|| Error::Internal("no key generation results".into()))?;
        if let Some(pk) = &announced
            && !r.public_key.eq_ignore_ascii_case(pk)
        {
            return Err(Error::Protocol(
                "the modules hold shares of another key than the one announced for import".into(),
            ));
        }
        let scheme: Scheme = r.scheme;
        let public_key = hex::decode(&r.public_key)
            .map_err(|_| Error::Protocol("the reported public key is not hex".into()))?;
        if WalletId::derive(scheme, &public_key) != r.wallet_id {
            return Err(Error::Protocol(
                "the reported wallet id does not match its public key".into(),
            ));
        }
        let wallet = WalletRecord {
            id: r.wallet_id.to_string(),
            group_id: group.id.clone(),
            scheme: scheme.to_string(),
            public_key,
            job_id: job.id.clone(),
            created_at: now(),
        };
        self.store.insert_wallet(&wallet).await?;
        self.store
            .finish_job(&job.id, &serde_json::to_vec(&wallet).unwrap_or_default())
            .await
    }

    async fn run_sign(
        &self,
        job: &JobRecord,
        events: &mut UnboundedReceiver<(String, ModuleEvent)>,
    ) -> Result<(), Error> {
        let wallet_id = job
            .wallet_id
            .clone()
            .ok_or_else(|| Error::Internal("sign job without a wallet".into()))?;
        let wallet = self
            .store
            .wallet(&wallet_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {wallet_id}")))?;
        let group = self.group_of(&wallet.group_id).await?;
        let scheme: Scheme = wallet
            .scheme
            .parse()
            .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))?;
        let payload_bytes = job.payload.clone().unwrap_or_default();
        let payload = SigningPayload::from_canonical(&payload_bytes)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let digest = payload.digest();
        let rule: AgreementRule =
            job.rule.as_deref().unwrap_or("all").parse().map_err(
                |e: concord_wire::authority::AuthorityError| Error::Internal(e.to_string()),
            )?;
        let wallet_raw: WalletId = wallet_id
            .parse()
            .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))?;
        let t = usize::from(group.threshold);

        let started = Instant::now();
        // Step 1: proposal and approvals.
        self.wait_quorum(&group.members, t).await?;
        tracing::debug!(job = %job.id, ms = started.elapsed().as_millis() as u64, "quorum connected");
        self.store
            .set_job_running(&job.id, "approving", None, None)
            .await?;
        let proposal = Proposal {
            job_id: job.id.clone(),
            wallet_id: wallet_raw.0.to_vec(),
            payload: payload_bytes.clone(),
            digest: digest.to_vec(),
            intent: job.intent.clone().unwrap_or_default(),
        };
        let mut asked = BTreeSet::new();
        for m in &group.members {
            if self
                .hub
                .send(m, coordinator_to_module::Msg::Proposal(proposal.clone()))
                .await
            {
                asked.insert(m.clone());
            }
        }
        let mut approvers: BTreeSet<String> = BTreeSet::new();
        let mut certificate: Vec<Approval> = Vec::new();
        let mut policy: Option<[u8; 32]> = None;
        let mut dissenters: BTreeMap<String, String> = BTreeMap::new();
        let deadline = Instant::now() + self.timeouts.approval;
        while approvers.len() + dissenters.len() < asked.len() {
            let Ok(Some((module, event))) = tokio::time::timeout_at(deadline, events.recv()).await
            else {
                break;
            };
            if !asked.contains(&module)
                || approvers.contains(&module)
                || dissenters.contains_key(&module)
            {
                continue;
            }
            match event {
                ModuleEvent::Approval(a) => {
                    let checked = self
                        .check_approval(&module, &job.id, &wallet_id, &digest, &a)
                        .await
                        .and_then(|st| match policy {
                            Some(p) if p != st.policy => Err(format!(
                                "approved under policy {}, the others under {}",
                                hex::encode(&st.policy[..8]),
                                hex::encode(&p[..8])
                            )),
                            _ => {
                                policy = Some(st.policy);
                                Ok(())
                            }
                        });
                    match checked {
                        Ok(()) => {
                            self.store
                                .add_event(
                                    &job.id,
                                    Some(&module),
                                    "approval",
                                    Some(&a.digest),
                                    Some(&String::from_utf8_lossy(&a.statement)),
                                    Some(&a.signature),
                                )
                                .await?;
                            approvers.insert(module);
                            certificate.push(a);
                        }
                        Err(reason) => {
                            self.store
                                .add_event(
                                    &job.id,
                                    Some(&module),
                                    "dissent",
                                    Some(&a.digest),
                                    Some(&reason),
                                    Some(&a.signature),
                                )
                                .await?;
                            tracing::warn!(job = %job.id, module = %module, %reason, "ALERT: module dissents");
                            dissenters.insert(module, reason);
                        }
                    }
                }
                ModuleEvent::Refusal(r) => {
                    let reason = format!("refused: {}", r.reason);
                    self.store
                        .add_event(
                            &job.id,
                            Some(&module),
                            "dissent",
                            Some(&r.computed_digest),
                            Some(&reason),
                            None,
                        )
                        .await?;
                    tracing::warn!(job = %job.id, module = %module, %reason, "ALERT: module dissents");
                    dissenters.insert(module, reason);
                }
                ModuleEvent::Disconnected => {
                    asked.remove(&module);
                }
                ModuleEvent::Update(_) | ModuleEvent::Policy(_) => {}
            }
        }
        tracing::debug!(job = %job.id, ms = started.elapsed().as_millis() as u64, approvals = approvers.len(), "approvals collected");
        let needed = rule.needed(t, group.members.len());
        let decision = if rule == AgreementRule::All && !dissenters.is_empty() {
            Err(format!(
                "rule 'all' needs every member of the group to approve, and {} did not",
                dissenters.len()
            ))
        } else if approvers.len() < needed {
            Err(format!(
                "{} of the group's {} modules approved; rule '{rule}' needs {needed}",
                approvers.len(),
                group.members.len()
            ))
        } else {
            Ok(())
        };
        if let Err(why) = decision {
            let named: Vec<String> = dissenters
                .iter()
                .map(|(m, r)| format!("{m} ({r})"))
                .collect();
            return Err(Error::Refused(if named.is_empty() {
                why
            } else {
                format!("{why}; dissenting: {}", named.join("; "))
            }));
        }

        // Step 2: threshold signing among approvers, replacing any that drop out.
        let index_of = |m: &str| group.members.iter().position(|x| x == m).map(|i| i as u16);
        let mut candidates: Vec<u16> = approvers.iter().filter_map(|m| index_of(m)).collect();
        candidates.sort_unstable();
        let signing_input = payload.signing_input(scheme);
        let use_pool =
            scheme == Scheme::EcdsaSecp256k1 && job.mode.as_deref() != Some("interactive");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let connected: Vec<u16> = candidates
                .iter()
                .copied()
                .filter(|i| self.hub.is_connected(&group.members[usize::from(*i)]))
                .collect();
            if connected.len() < t {
                return Err(Error::Unavailable(format!(
                    "only {} approving modules are available to sign, {t} are needed",
                    connected.len()
                )));
            }
            let presig = if use_pool {
                self.reserve_presignature(&job.id, &wallet.id, &connected)
                    .await?
            } else {
                None
            };
            let (signers, fingerprint) = match presig {
                Some((fp, signers)) => (signers, fp),
                None => (connected[..t].to_vec(), Vec::new()),
            };
            tracing::debug!(job = %job.id, ms = started.elapsed().as_millis() as u64, presigned = !fingerprint.is_empty(), "signing starts");
            let approved_job = job.id.clone();
            let wallet_bytes = wallet_raw.0.to_vec();
            // The session is derived from what the run signs; each attempt gets a new one.
            let attempt = self.store.next_attempt(&job.id).await?;
            let session = sign_session(&job.id, attempt, &signers, &digest).0.to_vec();
            let run = self
                .run_protocol(
                    job,
                    ProtocolKind::Sign,
                    &group,
                    &signers,
                    "signing",
                    self.timeouts.protocol,
                    events,
                    Some(session),
                    |s| {
                        s.wallet_id = wallet_bytes.clone();
                        s.approved_job_id = approved_job.clone();
                        s.presignature = fingerprint.clone();
                        s.certificate = certificate.clone();
                        s.attempt = attempt;
                    },
                )
                .await;
            match run {
                Ok(results) => {
                    tracing::debug!(job = %job.id, ms = started.elapsed().as_millis() as u64, "signatures received");
                    let mut verified: Option<SignResult> = None;
                    for (module, r) in &results {
                        let r: SignResult = serde_json::from_slice(r).map_err(|e| {
                            Error::Protocol(format!(
                                "module {module} sent an unreadable signature: {e}"
                            ))
                        })?;
                        let sig = hex::decode(&r.signature).map_err(|_| {
                            Error::Protocol(format!("module {module} sent a non-hex signature"))
                        })?;
                        concord_wire::verify::verify_signature(
                            scheme,
                            &wallet.public_key,
                            &signing_input,
                            &sig,
                        )
                        .map_err(|e| {
                            Error::Protocol(format!("signature from module {module} rejected: {e}"))
                        })?;
                        verified = Some(r);
                    }
                    let r = verified.ok_or_else(|| Error::Internal("no signature".into()))?;
                    let result = serde_json::json!({
                        // As the signers report it, not as planned.
                        "presigned": r.presigned,
                        "signature": r.signature,
                        "signers": signers,
                        "approvers": approvers,
                        "dissenters": dissenters,
                        "digest": hex::encode(digest),
                        "policy": policy.map(hex::encode),
                    });
                    self.store
                        .add_event(
                            &job.id,
                            None,
                            "result",
                            Some(&digest),
                            Some("signature verified against the wallet key"),
                            None,
                        )
                        .await?;
                    return self
                        .store
                        .finish_job(&job.id, &serde_json::to_vec(&result).unwrap_or_default())
                        .await;
                }
                Err(RunError::Unavailable(m)) => {
                    self.store
                        .add_event(
                            &job.id,
                            None,
                            "note",
                            None,
                            Some(&format!(
                                "signer(s) {m} dropped out; retrying with another subset"
                            )),
                            None,
                        )
                        .await?;
                    candidates
                        .retain(|i| !m.split(", ").any(|x| x == group.members[usize::from(*i)]));
                }
                Err(RunError::Failed {
                    module,
                    error,
                    blamed,
                }) => {
                    self.store
                        .add_event(&job.id, Some(&module), "failure", None, Some(&error), None)
                        .await?;
                    // Leave out the parties the protocol blamed (or the reporter if none).
                    if blamed.is_empty() {
                        candidates.retain(|i| group.members[usize::from(*i)] != module);
                    } else {
                        candidates.retain(|i| !blamed.contains(&u32::from(*i)));
                    }
                }
                Err(RunError::Fatal(e)) => return Err(e),
            }
            if attempts >= 5 {
                return Err(Error::Unavailable("signing failed five times".into()));
            }
        }
    }

    /// Picks an available presignature whose signers are all among `candidates` (approving
    /// and connected) and marks it used by this job before anyone is asked to use it.
    async fn reserve_presignature(
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
                    .add_event(job_id, None, "note", None, Some(&note), None)
                    .await?;
                return Ok(Some((fp_bytes, signers)));
            }
        }
        Ok(None)
    }

    async fn run_presign(
        &self,
        job: &JobRecord,
        events: &mut UnboundedReceiver<(String, ModuleEvent)>,
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
        let results = self
            .run_protocol(
                job,
                ProtocolKind::Presign,
                &group,
                &signers,
                "running",
                self.timeouts.protocol,
                events,
                None,
                |s| {
                    s.wallet_id = wallet_raw.0.to_vec();
                },
            )
            .await
            .map_err(|e| self.run_error(job, e))?;
        let mut fingerprints = BTreeSet::new();
        for (module, r) in &results {
            let r: PresignResult = serde_json::from_slice(r).map_err(|e| {
                Error::Protocol(format!("module {module} sent an unreadable result: {e}"))
            })?;
            fingerprints.insert(r.fingerprint);
        }
        let fingerprints: Vec<String> = fingerprints.into_iter().collect();
        let [fp] = fingerprints.as_slice() else {
            return Err(Error::Protocol(
                "the signers report different presignatures".into(),
            ));
        };
        let signers_json = serde_json::to_string(&signers).unwrap_or_default();
        self.store
            .add_presignature(fp, &wallet_id, &signers_json)
            .await?;
        let result = serde_json::json!({ "fingerprint": fp, "signers": signers });
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
                    ..JobRecord::pending(uuid::Uuid::new_v4().to_string(), "presign", &group.id)
                };
                self.store.insert_job(&job).await?;
                let mut events = self.hub.subscribe(&job.id);
                let outcome = self.run_presign(&job, &mut events).await;
                self.hub.finish(&job.id);
                if let Err(e) = outcome {
                    self.store.fail_job(&job.id, &e.to_string()).await?;
                    return Err(e);
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Checks a module's approval: its signature by the module's enrolled identity, and that
    /// the statement is about this job, this wallet and this digest. Returns the statement.
    async fn check_approval(
        &self,
        module: &str,
        job_id: &str,
        wallet_id: &str,
        digest: &[u8; 32],
        a: &Approval,
    ) -> Result<ApprovalStatement, String> {
        let rec = self
            .store
            .module(module)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("module {module} is not enrolled"))?;
        let identity =
            PublicIdentity::try_from(rec.identity.as_slice()).map_err(|e| e.to_string())?;
        ApprovalStatement::verify(&a.statement, &a.signature, &identity)
            .map_err(|_| "the approval's signature does not verify".to_string())?;
        let st = ApprovalStatement::from_bytes(&a.statement).map_err(|e| e.to_string())?;
        if st.job_id != job_id || st.module_id != module || st.wallet_id.to_string() != wallet_id {
            return Err("the approval is for another job, module or wallet".into());
        }
        if st.digest != *digest || a.digest != digest.to_vec() {
            return Err(format!(
                "approved digest {} differs from the proposal's {}",
                hex::encode(st.digest),
                hex::encode(digest)
            ));
        }
        Ok(st)
    }
}

/// All `k`-element subsets of `0..n`, ascending.
fn subsets(n: u16, k: usize) -> Vec<Vec<u16>> {
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
