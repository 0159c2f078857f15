//! A sign job, as named steps: propose the payload and its intent to every member and
//! collect the answers; decide by the agreement rule; sign among approvers with the
//! certificate of approvals (replacing signers that drop out); verify the signature.

use std::collections::{BTreeMap, BTreeSet};

use concord_types::{EcdsaEngine, Scheme, WalletId};
use concord_wire::authority::{AgreementRule, ApprovalStatement, input_session, sign_session};
use concord_wire::identity::PublicIdentity;
use concord_wire::messages::SignResult;
use concord_wire::payload::SigningPayload;
use concord_wire::rpc::{
    Approval, AuditRef, Certificate, Proposal, ProtocolKind, Release, coordinator_to_module,
};
use tokio::time::Instant;

use super::Engine;
use super::protocol::{Events, PreparedStart, Run, RunError};
use crate::Error;
use crate::hub::ModuleEvent;
use crate::records::{
    EventKind, GroupRecord, JobRecord, JobStatus, SignMode, SignatureMade, WalletRecord,
};
use crate::store::NewEvent;

/// A sign job's fixed facts.
struct SignCtx {
    wallet: WalletRecord,
    wallet_id: WalletId,
    group: GroupRecord,
    scheme: Scheme,
    payload: SigningPayload,
    payload_bytes: Vec<u8>,
    digest: [u8; 32],
    rule: AgreementRule,
}

/// A DKLs23 signing run started with the proposal, its certificate to follow: the signers'
/// first two rounds (no signature material) overlap the approvals.
struct EarlyRun {
    signers: Vec<u16>,
    modules: Vec<String>,
    session: Vec<u8>,
    /// The run's events that came while the approvals were collected.
    backlog: Vec<(String, ModuleEvent)>,
}

/// What the members answered.
#[derive(Default)]
struct Answers {
    approvers: BTreeSet<String>,
    certificate: Vec<Approval>,
    policy: Option<[u8; 32]>,
    dissenters: BTreeMap<String, String>,
    /// The approvals and dissents, to be written to the job's record in one go (off the
    /// signing run's path).
    events: Vec<NewEvent>,
}

impl Engine {
    async fn sign_ctx(&self, job: &JobRecord) -> Result<SignCtx, Error> {
        let wallet_id = job
            .wallet_id
            .clone()
            .ok_or_else(|| Error::Internal("sign job without a wallet".into()))?;
        let wallet = self
            .any_wallet(&wallet_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {wallet_id}")))?;
        let group = self.group_of(&wallet.group_id).await?;
        let internal = |e: concord_types::TypesError| Error::Internal(e.to_string());
        let payload_bytes = job.payload.clone().unwrap_or_default();
        let payload = SigningPayload::from_canonical(&payload_bytes).map_err(internal)?;
        Ok(SignCtx {
            scheme: wallet.scheme.parse().map_err(internal)?,
            wallet_id: wallet_id.parse().map_err(internal)?,
            digest: payload.digest(),
            payload,
            payload_bytes,
            rule: job.rule.unwrap_or_default(),
            wallet,
            group,
        })
    }

    /// The whole job: answers, decision, signature, verified result.
    pub(crate) async fn run_sign(&self, job: &JobRecord, events: &mut Events) -> Result<(), Error> {
        let ctx = self.sign_ctx(job).await?;
        let started = Instant::now();
        let (answers, early) = self.collect_answers(job, &ctx, events).await?;
        tracing::debug!(job = %job.id, ms = started.elapsed().as_millis() as u64, approvals = answers.approvers.len(), "approvals collected");
        // The answers go to the job's record while the signers work (the certificate they
        // sign under carries the approvals themselves).
        let record = self.store.add_events(&job.id, &answers.events);
        if let Err(e) = decide(&ctx, &answers) {
            record.await?;
            if let Some(run) = &early {
                self.abort(job, &run.modules, "not approved").await;
            }
            if matches!(e, Error::Refused { .. }) {
                // Nothing will be signed under these approvals: the modules free what they
                // bound (nonce, order, limit).
                self.release(&job.id, &ctx.group.members, "refused by the agreement rule")
                    .await;
            }
            return Err(e);
        }
        let multisig = ctx.group.id.starts_with(super::multisig::MULTISIG_GROUP);
        let held = ctx.group.id.starts_with(super::held::HELD_GROUP);
        let result = if held {
            // The holder sends the approved request with the key it holds, under the
            // certificate; nothing is signed here.
            let (recorded, sent) = tokio::join!(
                record,
                self.send_held(
                    job,
                    &ctx.payload,
                    &answers.approvers,
                    &answers.certificate,
                    events
                )
            );
            recorded?;
            let (holder, id) = sent?;
            SignatureMade {
                presigned: false,
                signature: String::new(),
                signers: ctx
                    .group
                    .members
                    .iter()
                    .position(|m| *m == holder)
                    .map(|i| i as u16)
                    .into_iter()
                    .collect(),
                approvers: answers.approvers.iter().cloned().collect(),
                dissenters: answers.dissenters.clone(),
                digest: hex::encode(ctx.digest),
                policy: answers.policy.map(hex::encode),
                multisig: BTreeMap::new(),
                inputs: Vec::new(),
                exchange_withdrawal_id: Some(id),
            }
        } else if multisig {
            // Each approver signs with its own key; the chain (P2WSH, Safe) counts them.
            let (recorded, signed) = tokio::join!(
                record,
                self.sign_multisig(
                    job,
                    &ctx.payload,
                    &answers.approvers,
                    &answers.certificate,
                    events
                )
            );
            recorded?;
            let by_module = signed?;
            SignatureMade {
                presigned: false,
                signature: String::new(),
                signers: by_module
                    .keys()
                    .filter_map(|m| ctx.group.members.iter().position(|x| x == m))
                    .map(|i| i as u16)
                    .collect(),
                approvers: answers.approvers.iter().cloned().collect(),
                dissenters: answers.dissenters.clone(),
                digest: hex::encode(ctx.digest),
                policy: answers.policy.map(hex::encode),
                multisig: by_module,
                inputs: Vec::new(),
                exchange_withdrawal_id: None,
            }
        } else {
            // One run per input of a UTXO spend (each signs that input's hash), one otherwise.
            let runs = ctx.payload.signing_runs();
            let all = async {
                let (first, signers) = self
                    .sign_among_approvers(job, &ctx, &answers, early, events, 0)
                    .await?;
                let mut inputs = Vec::new();
                if matches!(ctx.payload, SigningPayload::UtxoTransfer { .. }) {
                    inputs.push(first.signature.clone());
                    for i in 1..runs {
                        let (r, _) = self
                            .sign_among_approvers(job, &ctx, &answers, None, events, i as u32)
                            .await?;
                        inputs.push(r.signature);
                    }
                }
                Ok::<_, Error>((first, signers, inputs))
            };
            let (recorded, signed) = tokio::join!(record, all);
            recorded?;
            let (r, signers, inputs) = signed?;
            SignatureMade {
                // As the signers report it, not as planned.
                presigned: r.presigned,
                signature: r.signature,
                signers,
                approvers: answers.approvers.iter().cloned().collect(),
                dissenters: answers.dissenters.clone(),
                digest: hex::encode(ctx.digest),
                policy: answers.policy.map(hex::encode),
                multisig: BTreeMap::new(),
                inputs,
                exchange_withdrawal_id: None,
            }
        };
        let engine = if held {
            "held"
        } else if multisig {
            "multisig"
        } else if result.presigned {
            "presigned"
        } else {
            "online"
        };
        metrics::histogram!(
            "concord_coordinator_signing_seconds",
            "scheme" => ctx.scheme.to_string(),
            "engine" => engine
        )
        .record(started.elapsed().as_secs_f64());
        self.store
            .finish_job_with(
                &job.id,
                &serde_json::to_vec(&result).unwrap_or_default(),
                &NewEvent {
                    module_id: None,
                    kind: EventKind::Result,
                    digest: Some(ctx.digest.to_vec()),
                    detail: Some(if held {
                        "sent by the holder of the withdraw key under the certificate".into()
                    } else if multisig {
                        "each signer's signatures verified against its own key".into()
                    } else {
                        "signature verified against the wallet key".into()
                    }),
                    signature: None,
                    audit: None,
                },
            )
            .await
    }

    /// Step 1: the proposal to every connected member, and their signed answers. For a
    /// DKLs23 wallet, the signing run among the first `t` connected members starts right
    /// behind the proposal, its certificate to follow (each signer runs the first rounds while
    /// it decides, and holds its signature share back until it approved those bytes and the
    /// certificate checks out).
    async fn collect_answers(
        &self,
        job: &JobRecord,
        ctx: &SignCtx,
        events: &mut Events,
    ) -> Result<(Answers, Option<EarlyRun>), Error> {
        let t = usize::from(ctx.group.threshold);
        self.wait_quorum(&ctx.group.members, t).await?;
        // A DKLs23 run's start is made ready first, so that it follows the proposal at once:
        // the group's secp256k1 wallets when the group runs DKLs23, its P-256 keys always.
        let dkls = (ctx.scheme == Scheme::EcdsaSecp256k1
            && ctx.group.engine == EcdsaEngine::Dkls23)
            || ctx.scheme == Scheme::EcdsaP256;
        let early_start = if dkls {
            self.prepare_early(job, ctx).await?
        } else {
            None
        };
        if early_start.is_none() {
            self.store
                .set_job_running(&job.id, JobStatus::Approving, None, None)
                .await?;
        }
        let proposal = Proposal {
            job_id: job.id.clone(),
            wallet_id: ctx.wallet_id.0.to_vec(),
            payload: ctx.payload_bytes.clone(),
            digest: ctx.digest.to_vec(),
            intent: job.intent.clone().unwrap_or_default(),
        };
        let mut asked = BTreeSet::new();
        for m in &ctx.group.members {
            if self
                .hub
                .send(m, coordinator_to_module::Msg::Proposal(proposal.clone()))
                .await
            {
                asked.insert(m.clone());
            }
        }
        let mut early = match early_start {
            Some((signers, start)) => self.start_early(signers, &start, &asked).await?,
            None => None,
        };
        let mut a = Answers::default();
        let deadline = Instant::now() + self.timeouts.approval;
        while a.approvers.len() + a.dissenters.len() < asked.len() {
            let Ok(Some((module, event))) = tokio::time::timeout_at(deadline, events.recv()).await
            else {
                break;
            };
            if !asked.contains(&module)
                || a.approvers.contains(&module)
                || a.dissenters.contains_key(&module)
            {
                continue;
            }
            match event {
                ModuleEvent::Approval(ap) => {
                    self.take_approval(job, ctx, &module, ap, &mut a).await
                }
                ModuleEvent::Refusal(r) => {
                    metrics::counter!("concord_coordinator_module_answers_total", "answer" => "refused", "code" => refusal_code(&r.code)).increment(1);
                    let reason = format!("refused: {}", r.reason);
                    self.dissent(
                        job,
                        &module,
                        Some(&r.computed_digest),
                        &reason,
                        (None, r.audit.as_ref()),
                        &mut a,
                    );
                }
                ModuleEvent::Disconnected => {
                    asked.remove(&module);
                    if let Some(run) = &mut early {
                        run.backlog.push((module, ModuleEvent::Disconnected));
                    }
                }
                other => {
                    if let Some(run) = &mut early {
                        run.backlog.push((module, other));
                    }
                }
            }
        }
        Ok((a, early))
    }

    /// The start of a signing run among the first `t` connected members (in index order),
    /// its certificate to follow: a new attempt counted, nothing sent yet. `None` if fewer
    /// than `t` members are connected.
    async fn prepare_early(
        &self,
        job: &JobRecord,
        ctx: &SignCtx,
    ) -> Result<Option<(Vec<u16>, PreparedStart)>, Error> {
        let t = usize::from(ctx.group.threshold);
        let signers: Vec<u16> = (0..ctx.group.members.len())
            .filter(|i| self.hub.is_connected(&ctx.group.members[*i]))
            .take(t)
            .map(|i| i as u16)
            .collect();
        if signers.len() < t {
            return Ok(None);
        }
        let attempt = self
            .store
            .begin_attempt(&job.id, JobStatus::Approving)
            .await?;
        let session = sign_session(&job.id, attempt, &signers, &ctx.digest)
            .0
            .to_vec();
        let run = Run {
            job,
            kind: ProtocolKind::Sign,
            group: &ctx.group,
            parties: &signers,
            status: JobStatus::Approving,
            timeout: self.timeouts.protocol,
            session: Some(session),
        };
        // The run is written down with its certificate (`finish_early`).
        let fill = |s: &mut concord_wire::rpc::StartProtocol| {
            s.wallet_id = ctx.wallet_id.0.to_vec();
            s.approved_job_id = job.id.clone();
            s.attempt = attempt;
            s.certificate_follows = true;
        };
        match self.prepare_start(run, fill, false).await {
            Ok(start) => Ok(Some((signers, start))),
            Err(RunError::Fatal(e)) => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// Sends the early run's start, if every one of its signers was sent the proposal;
    /// `None` if not (or a signer is gone by now).
    async fn start_early(
        &self,
        signers: Vec<u16>,
        start: &PreparedStart,
        asked: &BTreeSet<String>,
    ) -> Result<Option<EarlyRun>, Error> {
        if !start
            .start
            .parties
            .iter()
            .filter_map(|p| start.start.group.get(*p as usize))
            .all(|m| asked.contains(&m.module_id))
        {
            return Ok(None);
        }
        match self.send_start(start).await {
            Ok((session, modules)) => Ok(Some(EarlyRun {
                signers,
                modules,
                session,
                backlog: Vec::new(),
            })),
            Err(RunError::Fatal(e)) => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// The early run, if its signers all approved: the certificate to them, then their
    /// results. `None`: the run was given up (a signer did not approve), sign as usual.
    async fn finish_early(
        &self,
        job: &JobRecord,
        ctx: &SignCtx,
        answers: &Answers,
        run: EarlyRun,
        events: &mut Events,
    ) -> Option<Result<SignResult, RunError>> {
        let approved = run.signers.iter().all(|i| {
            answers
                .approvers
                .contains(&ctx.group.members[usize::from(*i)])
        });
        if !approved {
            self.abort(
                job,
                &run.modules,
                "a signer of the early run did not approve",
            )
            .await;
            return None;
        }
        let certificate = Certificate {
            job_id: job.id.clone(),
            session: run.session.clone(),
            approvals: answers.certificate.clone(),
        };
        for m in &run.modules {
            if !self
                .hub
                .send(
                    m,
                    coordinator_to_module::Msg::Certificate(certificate.clone()),
                )
                .await
            {
                self.abort(job, &run.modules, &format!("module {m} disconnected"))
                    .await;
                return Some(Err(RunError::Unavailable(vec![m.clone()])));
            }
        }
        let signers = serde_json::to_string(&run.signers).unwrap_or_default();
        if let Err(e) = self
            .store
            .set_job_running(
                &job.id,
                JobStatus::Signing,
                Some(&run.session),
                Some(&signers),
            )
            .await
        {
            return Some(Err(RunError::Fatal(e)));
        }
        Some(
            match self
                .collect_results(
                    job,
                    &run.modules,
                    &run.session,
                    self.timeouts.protocol,
                    events,
                    run.backlog,
                )
                .await
            {
                Ok(results) => self.verify_results(ctx, &results, 0),
                Err(e) => Err(e),
            },
        )
    }

    /// An approval: counted if it checks out (signed by the module, for this job, wallet
    /// and digest, under the same policy as the others), else a dissent.
    async fn take_approval(
        &self,
        job: &JobRecord,
        ctx: &SignCtx,
        module: &str,
        ap: Approval,
        a: &mut Answers,
    ) {
        let checked = self
            .check_approval(module, &job.id, &ctx.wallet.id, &ctx.digest, &ap)
            .await
            .and_then(|st| match a.policy {
                Some(p) if p != st.policy => Err(format!(
                    "approved under policy {}, the others under {}",
                    hex::encode(&st.policy[..8]),
                    hex::encode(&p[..8])
                )),
                _ => {
                    a.policy = Some(st.policy);
                    Ok(())
                }
            });
        match checked {
            Ok(()) => {
                metrics::counter!("concord_coordinator_module_answers_total", "answer" => "approved", "code" => "").increment(1);
                a.events.push(NewEvent {
                    module_id: Some(module.to_owned()),
                    kind: EventKind::Approval,
                    digest: Some(ap.digest.clone()),
                    detail: Some(String::from_utf8_lossy(&ap.statement).into_owned()),
                    signature: Some(ap.signature.clone()),
                    audit: ap.audit.as_ref().map(audit_ref),
                });
                a.approvers.insert(module.to_owned());
                a.certificate.push(ap);
            }
            Err(reason) => {
                metrics::counter!("concord_coordinator_module_answers_total", "answer" => "unacceptable", "code" => "").increment(1);
                self.dissent(
                    job,
                    module,
                    Some(&ap.digest),
                    &reason,
                    (Some(&ap.signature), ap.audit.as_ref()),
                    a,
                )
            }
        }
    }

    fn dissent(
        &self,
        job: &JobRecord,
        module: &str,
        digest: Option<&[u8]>,
        reason: &str,
        (signature, audit): (Option<&[u8]>, Option<&AuditRef>),
        a: &mut Answers,
    ) {
        metrics::counter!("concord_coordinator_dissents_total").increment(1);
        a.events.push(NewEvent {
            module_id: Some(module.to_owned()),
            kind: EventKind::Dissent,
            digest: digest.map(<[u8]>::to_vec),
            detail: Some(reason.to_owned()),
            signature: signature.map(<[u8]>::to_vec),
            audit: audit.map(audit_ref),
        });
        tracing::warn!(job = %job.id, module, %reason, "ALERT: module dissents");
        a.dissenters.insert(module.to_owned(), reason.to_owned());
    }

    /// Step 3: threshold signing among approvers with the certificate, replacing signers
    /// that drop out, and the signature verified against the wallet's key.
    async fn sign_among_approvers(
        &self,
        job: &JobRecord,
        ctx: &SignCtx,
        answers: &Answers,
        early: Option<EarlyRun>,
        events: &mut Events,
        input: u32,
    ) -> Result<(SignResult, Vec<u16>), Error> {
        let t = usize::from(ctx.group.threshold);
        let index_of = |m: &str| {
            ctx.group
                .members
                .iter()
                .position(|x| x == m)
                .map(|i| i as u16)
        };
        let mut candidates: Vec<u16> = answers
            .approvers
            .iter()
            .filter_map(|m| index_of(m))
            .collect();
        candidates.sort_unstable();
        if let Some(run) = early {
            let signers = run.signers.clone();
            match self.finish_early(job, ctx, answers, run, events).await {
                None => {}
                Some(Ok(r)) => return Ok((r, signers)),
                Some(Err(RunError::Fatal(e))) => return Err(e),
                Some(Err(e)) => {
                    self.drop_failed_signers(job, ctx, e, &mut candidates)
                        .await?
                }
            }
        }
        let use_pool = ctx.scheme == Scheme::EcdsaSecp256k1
            && ctx.group.engine.presigns()
            && job.mode != Some(SignMode::Interactive);
        for _ in 0..5 {
            let connected: Vec<u16> = candidates
                .iter()
                .copied()
                .filter(|i| self.hub.is_connected(&ctx.group.members[usize::from(*i)]))
                .collect();
            if connected.len() < t {
                return Err(Error::Unavailable(format!(
                    "only {} approving modules are available to sign, {t} are needed",
                    connected.len()
                )));
            }
            let presig = if use_pool {
                self.reserve_presignature(&job.id, &ctx.wallet.id, &connected)
                    .await?
            } else {
                None
            };
            let (signers, fingerprint) = match presig {
                Some((fp, signers)) => (signers, fp),
                None => (connected[..t].to_vec(), Vec::new()),
            };
            match self
                .sign_once(job, ctx, answers, (&signers, fingerprint, input), events)
                .await
            {
                Ok(r) => return Ok((r, signers)),
                Err(RunError::Fatal(e)) => return Err(e),
                Err(e) => {
                    self.drop_failed_signers(job, ctx, e, &mut candidates)
                        .await?
                }
            }
        }
        Err(Error::Unavailable("signing failed five times".into()))
    }

    /// One signing run of `input` by `signers` (from the presignature `fingerprint`, if not
    /// empty); the session is derived from what it signs, fresh per attempt.
    async fn sign_once(
        &self,
        job: &JobRecord,
        ctx: &SignCtx,
        answers: &Answers,
        (signers, fingerprint, input): (&[u16], Vec<u8>, u32),
        events: &mut Events,
    ) -> Result<SignResult, RunError> {
        let attempt = self.store.next_attempt(&job.id).await?;
        let run = Run {
            job,
            kind: ProtocolKind::Sign,
            group: &ctx.group,
            parties: signers,
            status: JobStatus::Signing,
            timeout: self.timeouts.protocol,
            session: Some(
                input_session(&job.id, attempt, signers, &ctx.digest, input)
                    .0
                    .to_vec(),
            ),
        };
        let results = self
            .run_protocol(run, events, |s| {
                s.wallet_id = ctx.wallet_id.0.to_vec();
                s.approved_job_id = job.id.clone();
                s.presignature = fingerprint.clone();
                s.certificate = answers.certificate.clone();
                s.attempt = attempt;
                s.input = input;
            })
            .await?;
        self.verify_results(ctx, &results, input)
    }

    /// Every signer's reported signature, verified against the wallet's key.
    fn verify_results(
        &self,
        ctx: &SignCtx,
        results: &BTreeMap<String, Vec<u8>>,
        input: u32,
    ) -> Result<SignResult, RunError> {
        let input = ctx
            .payload
            .signing_input_of(ctx.scheme, &ctx.wallet.public_key, input)
            .map_err(|e| RunError::Fatal(Error::Internal(format!("input {input}: {e}"))))?;
        let mut verified = None;
        for (module, r) in results {
            let r: SignResult = serde_json::from_slice(r).map_err(|e| {
                RunError::Fatal(Error::Protocol {
                    reason: format!("module {module} sent an unreadable signature: {e}"),
                    blamed: vec![module.clone()],
                })
            })?;
            let sig = hex::decode(&r.signature).map_err(|_| {
                RunError::Fatal(Error::Protocol {
                    reason: format!("module {module} sent a non-hex signature"),
                    blamed: vec![module.clone()],
                })
            })?;
            concord_wire::verify::verify_signature(
                ctx.scheme,
                &ctx.wallet.public_key,
                &input,
                &sig,
            )
            .map_err(|e| {
                RunError::Fatal(Error::Protocol {
                    reason: format!("signature from module {module} rejected: {e}"),
                    blamed: vec![module.clone()],
                })
            })?;
            verified = Some(r);
        }
        verified.ok_or_else(|| RunError::Fatal(Error::Internal("no signature".into())))
    }

    /// After a failed run: leave out the parties that dropped out or were blamed.
    async fn drop_failed_signers(
        &self,
        job: &JobRecord,
        ctx: &SignCtx,
        e: RunError,
        candidates: &mut Vec<u16>,
    ) -> Result<(), Error> {
        let name = |i: &u16| ctx.group.members[usize::from(*i)].clone();
        match e {
            RunError::Unavailable(gone) => {
                let note = format!(
                    "signer(s) {} dropped out; retrying with another subset",
                    gone.join(", ")
                );
                self.store
                    .add_event(&job.id, None, EventKind::Note, None, Some(&note), None)
                    .await?;
                candidates.retain(|i| !gone.contains(&name(i)));
            }
            RunError::Failed {
                module,
                error,
                blamed,
            } => {
                self.store
                    .add_event(
                        &job.id,
                        Some(&module),
                        EventKind::Failure,
                        None,
                        Some(&error),
                        None,
                    )
                    .await?;
                // Leave out the parties the protocol blamed (or the reporter if none).
                if blamed.is_empty() {
                    candidates.retain(|i| name(i) != module);
                } else {
                    candidates.retain(|i| !blamed.contains(&u32::from(*i)));
                }
            }
            RunError::Fatal(e) => return Err(e),
        }
        Ok(())
    }

    /// Tells every member that `job` will never be signed: each releases its approval if it
    /// did not sign under it (freeing the nonce, order and limit it bound). Modules that
    /// miss this ignore their unsigned approval once it expires.
    pub(crate) async fn release(&self, job_id: &str, members: &[String], reason: &str) {
        for m in members {
            self.hub
                .send(
                    m,
                    coordinator_to_module::Msg::Release(Release {
                        job_id: job_id.to_owned(),
                        reason: reason.to_owned(),
                    }),
                )
                .await;
        }
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

/// Step 2: the agreement rule. Under `all` every member must approve; under `threshold`,
/// `t` and a majority (modules check the same from the certificate). Too few answers
/// without a refusal is unavailability (a retry may help), not a refusal.
fn decide(ctx: &SignCtx, a: &Answers) -> Result<(), Error> {
    let n = ctx.group.members.len();
    let needed = ctx.rule.needed(usize::from(ctx.group.threshold), n);
    let reason = if ctx.rule == AgreementRule::All && !a.dissenters.is_empty() {
        format!(
            "rule 'all' needs every member of the group to approve, and {} did not",
            a.dissenters.len()
        )
    } else if a.approvers.len() < needed {
        let why = format!(
            "{} of the group's {n} modules approved; rule '{}' needs {needed}",
            a.approvers.len(),
            ctx.rule
        );
        if n - a.dissenters.len() >= needed {
            return Err(Error::Unavailable(format!(
                "{why} (the others did not answer)"
            )));
        }
        why
    } else {
        return Ok(());
    };
    Err(Error::Refused {
        reason,
        dissenters: a.dissenters.clone(),
    })
}

/// A module's audit entry as the job's record shows it: `<seq>:<SHA-256 hex>`.
pub(crate) fn audit_ref(r: &AuditRef) -> String {
    format!("{}:{}", r.seq, hex::encode(&r.hash))
}

/// A module's refusal code as a metric label: one of the codes modules send, else `other`
/// (a module never sets the coordinator's label values).
fn refusal_code(code: &str) -> &'static str {
    const CODES: [&str; 10] = [
        "payload",
        "intent",
        "mismatch",
        "policy",
        "limit",
        "destination",
        "outside",
        "check",
        "replay",
        "internal",
    ];
    CODES.into_iter().find(|c| *c == code).unwrap_or("other")
}
