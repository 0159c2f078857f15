//! One protocol run among some members of a group: the start message, relays, progress and
//! results, with the run's timeout and aborts.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use concord_wire::rpc::{
    Abort, Participant, ProtocolKind, StartProtocol, coordinator_to_module, job_update,
};
use rand::RngCore;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::Engine;
use crate::Error;
use crate::hub::ModuleEvent;
use crate::records::{EventKind, GroupRecord, JobRecord, JobStatus};

/// Events a job receives from the hub.
pub(crate) type Events = UnboundedReceiver<(String, ModuleEvent)>;

/// Why a protocol run did not finish.
pub(crate) enum RunError {
    /// These parties disconnected, never connected, or did not answer in time.
    Unavailable(Vec<String>),
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

impl RunError {
    /// As the job's error, naming the parties.
    pub(crate) fn into_error(self, group: &GroupRecord) -> Error {
        match self {
            RunError::Unavailable(m) => {
                Error::Unavailable(format!("module(s) {} did not take part", m.join(", ")))
            }
            RunError::Failed {
                module,
                error,
                blamed,
            } => Error::Protocol {
                reason: format!("module {module} reported: {error}"),
                blamed: blamed
                    .iter()
                    .filter_map(|i| group.members.get(*i as usize).cloned())
                    .collect(),
            },
            RunError::Fatal(e) => e,
        }
    }
}

/// One run to start: what, among whom, with what session.
pub(crate) struct Run<'a> {
    pub(crate) job: &'a JobRecord,
    pub(crate) kind: ProtocolKind,
    pub(crate) group: &'a GroupRecord,
    pub(crate) parties: &'a [u16],
    pub(crate) status: JobStatus,
    pub(crate) timeout: Duration,
    /// The session id (none: a random one).
    pub(crate) session: Option<Vec<u8>>,
}

/// A run's start, ready to send: the message and the parties' module ids by index.
pub(crate) struct PreparedStart {
    pub(crate) start: StartProtocol,
    route: HashMap<u32, String>,
}

fn random_session() -> Vec<u8> {
    let mut s = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

impl Engine {
    pub(crate) async fn participants(
        &self,
        group: &GroupRecord,
    ) -> Result<Vec<Participant>, Error> {
        // Read at once: a signing run's start waits for these.
        let records =
            futures::future::try_join_all(group.members.iter().map(|m| self.store.module(m)))
                .await?;
        group
            .members
            .iter()
            .zip(records)
            .enumerate()
            .map(|(idx, (m, rec))| {
                let rec = rec
                    .ok_or_else(|| Error::Internal(format!("group member {m} is not enrolled")))?;
                Ok(Participant {
                    index: idx as u32,
                    module_id: rec.id,
                    identity: rec.identity,
                    sealing_public_key: rec.sealing_key,
                    sealing_key_signature: rec.sealing_key_signature,
                })
            })
            .collect()
    }

    pub(crate) async fn group_of(&self, id: &str) -> Result<GroupRecord, Error> {
        if id.starts_with(super::multisig::MULTISIG_GROUP) {
            return self.multisig_group(id).await;
        }
        if id.starts_with(super::held::HELD_GROUP) {
            return self.held_group(id).await;
        }
        self.store
            .group(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("group {id}")))
    }

    /// Waits until every listed module is connected, or the connect timeout passes.
    pub(crate) async fn wait_connected(&self, modules: &[String]) -> Result<(), Error> {
        let deadline = Instant::now() + self.timeouts.connect;
        loop {
            let missing: Vec<&str> = modules
                .iter()
                .filter(|m| !self.hub.is_connected(m))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "modules {} are not connected",
                    missing.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every member is connected, or at least `t` are and a short grace period
    /// has passed (so a job started or resumed while modules reconnect asks as many as it
    /// can), or the connect timeout passes.
    pub(crate) async fn wait_quorum(&self, members: &[String], t: usize) -> Result<(), Error> {
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

    /// Runs one protocol among `run.parties` and collects every party's result.
    pub(crate) async fn run_protocol(
        &self,
        run: Run<'_>,
        events: &mut Events,
        fill: impl Fn(&mut StartProtocol),
    ) -> Result<BTreeMap<String, Vec<u8>>, RunError> {
        let (job, timeout) = (run.job, run.timeout);
        let (session, modules) = self.start_run(run, fill).await?;
        self.collect_results(job, &modules, &session, timeout, events, Vec::new())
            .await
    }

    /// Starts one protocol run among `run.parties`; returns its session and the parties'
    /// module ids.
    pub(crate) async fn start_run(
        &self,
        run: Run<'_>,
        fill: impl Fn(&mut StartProtocol),
    ) -> Result<(Vec<u8>, Vec<String>), RunError> {
        let start = self.prepare_start(run, fill, true).await?;
        self.send_start(&start).await
    }

    /// Everything a run's start needs, read (and, with `record`, the run written down in the
    /// job) ahead of [`Engine::send_start`]: nothing is sent yet.
    pub(crate) async fn prepare_start(
        &self,
        run: Run<'_>,
        fill: impl Fn(&mut StartProtocol),
        record: bool,
    ) -> Result<PreparedStart, RunError> {
        let session = run.session.clone().unwrap_or_else(random_session);
        if record {
            let signers = serde_json::to_string(run.parties).unwrap_or_default();
            self.store
                .set_job_running(&run.job.id, run.status, Some(&session), Some(&signers))
                .await?;
        }
        let route: HashMap<u32, String> = run
            .parties
            .iter()
            .filter_map(|i| {
                run.group
                    .members
                    .get(usize::from(*i))
                    .map(|m| (u32::from(*i), m.clone()))
            })
            .collect();
        let mut start = StartProtocol {
            job_id: run.job.id.clone(),
            session: session.clone(),
            kind: run.kind as i32,
            group_id: run.group.id.clone(),
            scheme: run.job.scheme.clone().unwrap_or_default(),
            threshold: u32::from(run.group.threshold),
            group: self.participants(run.group).await?,
            parties: run.parties.iter().map(|p| u32::from(*p)).collect(),
            engine: run.group.engine.as_str().to_owned(),
            ..Default::default()
        };
        fill(&mut start);
        Ok(PreparedStart { start, route })
    }

    /// Sends a prepared start to the run's parties; returns its session and their module ids.
    pub(crate) async fn send_start(
        &self,
        prepared: &PreparedStart,
    ) -> Result<(Vec<u8>, Vec<String>), RunError> {
        let start = &prepared.start;
        self.hub.set_route(&start.job_id, prepared.route.clone());
        for module in prepared.route.values() {
            if !self
                .hub
                .send(module, coordinator_to_module::Msg::Start(start.clone()))
                .await
            {
                return Err(RunError::Unavailable(vec![module.clone()]));
            }
        }
        let modules: Vec<String> = prepared.route.values().cloned().collect();
        Ok((start.session.clone(), modules))
    }

    /// Collects every party's result of the run with `session` (first from `backlog`, the
    /// events that came while the caller waited for something else), aborting it on a
    /// failure, a disconnection or the timeout.
    pub(crate) async fn collect_results(
        &self,
        job: &JobRecord,
        modules: &[String],
        session: &[u8],
        timeout: Duration,
        events: &mut Events,
        backlog: Vec<(String, ModuleEvent)>,
    ) -> Result<BTreeMap<String, Vec<u8>>, RunError> {
        let deadline = Instant::now() + timeout;
        let mut results = BTreeMap::new();
        let mut last_stage: HashMap<String, String> = HashMap::new();
        let mut backlog = backlog.into_iter();
        while results.len() < modules.len() {
            let next = match backlog.next() {
                Some(e) => Ok(Some(e)),
                None => tokio::time::timeout_at(deadline, events.recv()).await,
            };
            let (module, event) = match next {
                Ok(Some(e)) => e,
                Ok(None) => {
                    return Err(RunError::Fatal(Error::Internal(
                        "event channel closed".into(),
                    )));
                }
                Err(_) => {
                    let missing: Vec<String> = modules
                        .iter()
                        .filter(|m| !results.contains_key(*m))
                        .cloned()
                        .collect();
                    self.abort(job, modules, "timed out").await;
                    return Err(RunError::Unavailable(missing));
                }
            };
            if !modules.contains(&module) {
                continue;
            }
            match event {
                ModuleEvent::Disconnected if !results.contains_key(&module) => {
                    self.abort(job, modules, &format!("module {module} disconnected"))
                        .await;
                    return Err(RunError::Unavailable(vec![module]));
                }
                // An update from an abandoned run of this job (a retry replaced it).
                ModuleEvent::Update(u) if u.session != session => {}
                ModuleEvent::Update(u) => match u.status {
                    Some(job_update::Status::Result(r)) => {
                        // A signing run's result names the module's audit entry that recorded
                        // its share leaving it: kept with the job, as for approvals.
                        if let Some(audit) = u.audit.as_ref() {
                            self.store
                                .add_events(
                                    &job.id,
                                    &[crate::store::NewEvent {
                                        module_id: Some(module.clone()),
                                        kind: EventKind::Progress,
                                        digest: None,
                                        detail: Some("signature share released".into()),
                                        signature: None,
                                        audit: Some(super::sign::audit_ref(audit)),
                                    }],
                                )
                                .await?;
                        }
                        results.insert(module, r);
                    }
                    Some(job_update::Status::Failure(f)) => {
                        self.abort(job, modules, &format!("module {module} failed"))
                            .await;
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
                                EventKind::Progress,
                                None,
                                Some(&p.stage),
                                None,
                            )
                            .await?;
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(results)
    }

    pub(crate) async fn abort(&self, job: &JobRecord, modules: &[String], reason: &str) {
        for m in modules {
            self.hub
                .send(
                    m,
                    coordinator_to_module::Msg::Abort(Abort {
                        job_id: job.id.clone(),
                        reason: reason.to_owned(),
                    }),
                )
                .await;
        }
    }
}
