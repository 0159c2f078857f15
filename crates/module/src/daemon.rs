//! The module daemon: dials the coordinator over pinned-key mutual TLS, reconnects with
//! backoff, and serves what arrives on its one stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::Event;
use concord_tss::rand_core::OsRng;
use concord_tss::{EcdsaEngine, KeyShare, Scheme, SessionId, Threshold};
use concord_wire::authority::{CertificateCheck, SignedPolicy, check_certificate, input_session};
use concord_wire::identity::{PublicIdentity, SealingPublicKey};
use concord_wire::messages::{AuxResult, KeygenResult, PresignResult, RefreshResult, SignResult};
use concord_wire::payload::SigningPayload;
use concord_wire::rpc::module_link_client::ModuleLinkClient;
use concord_wire::rpc::{
    Approval, ExchangeSent, Failure, Hello, JobUpdate, MultisigSigned, PolicyStatus, Proposal,
    ProtocolKind, Refusal, Relay, Released, StartProtocol, coordinator_to_module, job_update,
    module_to_coordinator,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::approve::Decider;
use crate::checks::Outside;
use crate::state::{GroupDef, Member, State};
use crate::transport::{Blame, SealedSink, Uplink, open_relays, send_up};
use crate::{Config, Error};

/// Protocol version spoken on the link.
pub const PROTOCOL_VERSION: u32 = 1;

/// Relays buffered for a job whose start has not arrived yet (bounded against abuse).
const MAX_EARLY_RELAYS: usize = 4096;

/// A protocol run: (job id, session id).
type RunKey = (String, Vec<u8>);

struct Ctx {
    state: Arc<State>,
    identity: Arc<dyn concord_wire::identity::IdentitySigner>,
    sealing: Arc<concord_wire::identity::SealingKey>,
    /// Decides on proposals, with this module's own view of exchanges and chain.
    decider: Arc<Decider>,
    /// (job id, session) → the running protocol's relay inbox. A job may be run again (after
    /// a failure or a coordinator restart) under a new session while an old run winds down.
    running: Mutex<HashMap<RunKey, mpsc::UnboundedSender<Relay>>>,
    /// job id → relays that arrived before the job's start.
    early: Mutex<HashMap<String, Vec<Relay>>>,
    /// (job id, session) → task, to abort.
    tasks: Mutex<HashMap<RunKey, tokio::task::AbortHandle>>,
    /// (job id, session) → where the certificate of a signing run started without one
    /// (`certificate_follows`) is handed to the run.
    certificates: Mutex<HashMap<RunKey, oneshot::Sender<Vec<Approval>>>>,
    /// Moves after each decided proposal and each abort: a signing run that started before
    /// this module's own approval was stored waits on it.
    decided: tokio::sync::watch::Sender<u64>,
    /// The latest proposals, newest last (at most [`RECENT_PROPOSALS`]): a signing run
    /// started with its certificate to follow runs its first rounds on the proposal's bytes
    /// while this module still decides on them.
    proposals: Mutex<std::collections::VecDeque<Proposal>>,
}

/// How many proposals [`Ctx::proposals`] keeps.
const RECENT_PROPOSALS: usize = 64;

impl Ctx {
    fn remember_proposal(&self, p: &Proposal) {
        if let Ok(mut recent) = self.proposals.lock() {
            if recent.len() >= RECENT_PROPOSALS {
                recent.pop_front();
            }
            recent.push_back(p.clone());
        }
    }

    fn proposal(&self, job_id: &str) -> Option<Proposal> {
        self.proposals
            .lock()
            .ok()?
            .iter()
            .rev()
            .find(|p| p.job_id == job_id)
            .cloned()
    }
}

/// How long a signing run started with `certificate_follows` waits for this module's own
/// approval, and then for the certificate (the coordinator aborts it sooner if it gives up).
const CERTIFICATE_WAIT: Duration = Duration::from_secs(120);

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    config: Config,
    state: State,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let state = Arc::new(state);
    // The metrics recorder first: what is counted before it is installed is lost.
    concord_wire::telemetry::prometheus();
    // The audit trail is verified whole before anything is decided: a broken one stops here.
    let trail = state.audit()?;
    tracing::info!(trail = %trail.path().display(), "audit trail verified");
    if let Some(m) = &config.metrics {
        let listener = tokio::net::TcpListener::bind(m.listen).await.map_err(|e| {
            Error::Config(format!("cannot listen for metrics on {}: {e}", m.listen))
        })?;
        tracing::info!(listen = %m.listen, "serving metrics at /metrics");
        tokio::spawn(async move {
            if let Err(e) = concord_wire::telemetry::serve_metrics(listener).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    // The keys are read once from the vault and shared by every job.
    let identity = state.identity();
    let sealing = state.sealing();
    let outside = Outside::build(&config, &state)?;
    let decider = Arc::new(Decider::new(state.clone(), identity.clone(), outside));
    let ctx = Arc::new(Ctx {
        state,
        identity,
        sealing,
        decider,
        running: Mutex::default(),
        early: Mutex::default(),
        tasks: Mutex::default(),
        certificates: Mutex::default(),
        decided: tokio::sync::watch::Sender::new(0),
        proposals: Mutex::default(),
    });
    // One link per coordinator address (several coordinators may share one database; each
    // drives the work it holds, and every one of them can reach this module).
    let links = config
        .coordinator
        .addresses()
        .into_iter()
        .map(|address| connect_loop(&config, address, ctx.clone()));
    tokio::select! {
        r = futures::future::try_join_all(links) => r.map(|_| ()),
        _ = shutdown => Ok(()),
    }
}

async fn connect_loop(config: &Config, address: String, ctx: Arc<Ctx>) -> Result<(), Error> {
    let tls = concord_wire::tls::client_config(ctx.identity.as_ref(), config.coordinator.identity)
        .map_err(|e| Error::Link(e.to_string()))?;
    let mut backoff = Duration::from_millis(200);
    let uplink: Uplink = Arc::new(Mutex::new(None));
    loop {
        match session(&address, &ctx, &uplink, tls.clone()).await {
            Ok(()) => {
                tracing::info!(coordinator = %address, "the coordinator closed the link; reconnecting");
                backoff = Duration::from_millis(200);
            }
            Err(e) => {
                tracing::warn!(coordinator = %address, error = %e, retry_in_ms = backoff.as_millis() as u64, "coordinator link failed");
            }
        }
        if let Ok(mut u) = uplink.lock() {
            *u = None;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn session(
    address: &str,
    ctx: &Arc<Ctx>,
    uplink: &Uplink,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(), Error> {
    let channel = concord_wire::connect_channel(address, tls)
        .await
        .map_err(|e| Error::Link(e.to_string()))?;
    let mut client = ModuleLinkClient::new(channel);
    let (tx, rx) = mpsc::unbounded_channel();
    let info = ctx.state.public_info();
    let policy = ctx.state.policy();
    let hello = Hello {
        module_id: ctx.state.id.clone(),
        protocol_version: PROTOCOL_VERSION,
        sealing_public_key: hex::decode(&info.sealing_key).unwrap_or_default(),
        sealing_key_signature: hex::decode(&info.sealing_key_signature).unwrap_or_default(),
        replay: Vec::new(),
        policy_hash: policy.as_ref().map(|p| p.hash.to_vec()).unwrap_or_default(),
        policy_version: policy.as_ref().map_or(0, |p| p.policy().version),
    };
    let _ = tx.send(concord_wire::rpc::ModuleToCoordinator {
        msg: Some(module_to_coordinator::Msg::Hello(hello)),
    });
    let response = client
        .open(UnboundedReceiverStream::new(rx))
        .await
        .map_err(|s| {
            Error::Link(format!(
                "the coordinator refused the stream: {}",
                status_chain(&s)
            ))
        })?;
    if let Ok(mut u) = uplink.lock() {
        *u = Some(tx);
    }
    tracing::info!(coordinator = %address, "connected to the coordinator");
    let _counted = LinkUp::new();
    let mut inbound = response.into_inner();
    while let Some(msg) = inbound
        .message()
        .await
        .map_err(|s| Error::Link(status_chain(&s)))?
    {
        match msg.msg {
            Some(coordinator_to_module::Msg::Welcome(_)) => {}
            Some(coordinator_to_module::Msg::Relay(r)) => route_relay(ctx, r),
            Some(coordinator_to_module::Msg::Start(s)) => start_job(ctx, s, uplink),
            Some(coordinator_to_module::Msg::Proposal(p)) => {
                ctx.remember_proposal(&p);
                // Checks may ask the exchange and the chain: decide off the stream's loop.
                let (ctx, uplink) = (ctx.clone(), uplink.clone());
                tokio::spawn(async move {
                    let answer = decide_and_record(&ctx, &p).await;
                    ctx.decided.send_modify(|n| *n = n.wrapping_add(1));
                    send_up(&uplink, answer);
                });
            }
            Some(coordinator_to_module::Msg::Certificate(c)) => {
                let sender = ctx
                    .certificates
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(&(c.job_id.clone(), c.session.clone())));
                match sender {
                    Some(tx) => {
                        let _ = tx.send(c.approvals);
                    }
                    None => {
                        tracing::debug!(job = %c.job_id, "a certificate for no run waiting here")
                    }
                }
            }
            Some(coordinator_to_module::Msg::Query(q)) => {
                let (ctx, uplink) = (ctx.clone(), uplink.clone());
                tokio::spawn(async move {
                    let answer = ctx.decider.outside.answer(q).await;
                    send_up(&uplink, module_to_coordinator::Msg::Answer(answer));
                });
            }
            Some(coordinator_to_module::Msg::Policy(u)) => {
                let status = adopt_policy(&ctx.state, &u.signed_policy);
                send_up(uplink, module_to_coordinator::Msg::PolicyStatus(status));
            }
            Some(coordinator_to_module::Msg::Release(r)) => {
                let answer = match ctx.state.release_approval(&r.job_id) {
                    Ok(released) => {
                        if released {
                            tracing::info!(job = %r.job_id, reason = %r.reason, "approval released");
                            // The release stands (the approval binds nothing); an entry that
                            // cannot be written is logged loudly.
                            if let Err(e) = ctx.state.record(Event::ApprovalReleased {
                                job: r.job_id.clone(),
                                reason: r.reason.clone(),
                            }) {
                                tracing::error!(job = %r.job_id, error = %e, "the audit trail did not record an approval's release");
                            }
                        }
                        Released {
                            job_id: r.job_id,
                            released,
                            error: String::new(),
                        }
                    }
                    Err(e) => Released {
                        job_id: r.job_id,
                        released: false,
                        error: e.to_string(),
                    },
                };
                send_up(uplink, module_to_coordinator::Msg::Released(answer));
            }
            Some(coordinator_to_module::Msg::MultisigSign(m)) => {
                let signed = crate::multisig::sign(&ctx.state, &m.job_id, &m.certificate).and_then(
                    |signatures| {
                        // Recorded before the signatures leave; no record, no signatures.
                        let audit = ctx.state.record(Event::SignatureReleased {
                            job: m.job_id.clone(),
                            session: String::new(),
                            kind: "multisig".into(),
                        })?;
                        Ok((signatures, audit))
                    },
                );
                let answer = match signed {
                    Ok((signatures, audit)) => {
                        tracing::info!(job = %m.job_id, inputs = signatures.len(), "multisig spend signed with this module's own key");
                        metrics::counter!("concord_module_signatures_released_total", "kind" => "multisig").increment(1);
                        MultisigSigned {
                            job_id: m.job_id,
                            signatures,
                            error: String::new(),
                            audit: Some(audit),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(job = %m.job_id, error = %e, "multisig signing refused");
                        MultisigSigned {
                            job_id: m.job_id,
                            signatures: Vec::new(),
                            error: e.to_string(),
                            audit: None,
                        }
                    }
                };
                send_up(uplink, module_to_coordinator::Msg::MultisigSigned(answer));
            }
            Some(coordinator_to_module::Msg::ExchangeSend(m)) => {
                let (ctx, uplink) = (ctx.clone(), uplink.clone());
                tokio::spawn(async move {
                    let sent = crate::held::send(
                        &ctx.state,
                        &ctx.decider.outside,
                        &m.job_id,
                        &m.certificate,
                    )
                    .await;
                    let answer = match sent {
                        Ok((id, audit)) => {
                            tracing::info!(job = %m.job_id, withdrawal = %id, "withdraw request sent with the held exchange key");
                            metrics::counter!("concord_module_signatures_released_total", "kind" => "held-credential").increment(1);
                            ExchangeSent {
                                job_id: m.job_id,
                                withdrawal_id: id,
                                error: String::new(),
                                audit,
                                outcome_unknown: false,
                            }
                        }
                        Err(e) => {
                            tracing::warn!(job = %m.job_id, error = %e.error, outcome_unknown = e.outcome_unknown, "held-credential send refused");
                            ExchangeSent {
                                job_id: m.job_id,
                                withdrawal_id: String::new(),
                                error: e.error.to_string(),
                                audit: None,
                                outcome_unknown: e.outcome_unknown,
                            }
                        }
                    };
                    send_up(&uplink, module_to_coordinator::Msg::ExchangeSent(answer));
                });
            }
            Some(coordinator_to_module::Msg::Abort(a)) => {
                if let Ok(mut tasks) = ctx.tasks.lock() {
                    tasks.retain(|(job, _), h| {
                        let keep = *job != a.job_id;
                        if !keep {
                            h.abort();
                        }
                        keep
                    });
                }
                if let Ok(mut r) = ctx.running.lock() {
                    r.retain(|(job, _), _| *job != a.job_id);
                }
                if let Ok(mut c) = ctx.certificates.lock() {
                    c.retain(|(job, _), _| *job != a.job_id);
                }
                ctx.decided.send_modify(|n| *n = n.wrapping_add(1));
                tracing::info!(job = %a.job_id, reason = %a.reason, "job aborted by the coordinator");
            }
            None => {}
        }
    }
    Ok(())
}

/// Adopts a policy the coordinator relays, if this module's admins' quorum signed it and it
/// follows the policy in force; answers with the policy in force either way.
fn adopt_policy(state: &State, bytes: &[u8]) -> PolicyStatus {
    let parsed: Result<SignedPolicy, String> =
        serde_json::from_slice(bytes).map_err(|e| format!("the policy is unreadable: {e}"));
    let offered = parsed
        .as_ref()
        .map(|p| p.policy.hash().to_vec())
        .unwrap_or_default();
    let before = state.policy().map(|p| p.hash);
    let outcome = parsed.and_then(|p| state.adopt_policy(p).map_err(|e| e.to_string()));
    let error = match &outcome {
        Ok(p) => {
            tracing::info!(version = p.policy().version, hash = %hex::encode(&p.hash[..8]), "policy in force");
            if before != Some(p.hash)
                && let Err(e) = state.record(Event::PolicyAdopted {
                    version: p.policy().version,
                    policy: hex::encode(p.hash),
                })
            {
                tracing::error!(error = %e, "the audit trail did not record the policy adopted");
            }
            String::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "policy not adopted");
            e.clone()
        }
    };
    let current = state.policy();
    PolicyStatus {
        policy_hash: current
            .as_ref()
            .map(|p| p.hash.to_vec())
            .unwrap_or_default(),
        policy_version: current.as_ref().map_or(0, |p| p.policy().version),
        offered_hash: offered,
        error,
    }
}

/// A tonic status with the chain of errors behind it (where the useful detail is, e.g. a TLS
/// alert saying the certificate was refused).
fn status_chain(s: &tonic::Status) -> String {
    let mut out = s.message().to_owned();
    let mut cur = std::error::Error::source(s);
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

fn route_relay(ctx: &Arc<Ctx>, relay: Relay) {
    let key = (relay.job_id.clone(), relay.session.clone());
    let inbox = ctx.running.lock().ok().and_then(|r| r.get(&key).cloned());
    match inbox {
        Some(tx) => {
            let _ = tx.send(relay);
        }
        None => {
            if let Ok(mut early) = ctx.early.lock() {
                let total: usize = early.values().map(Vec::len).sum();
                if total < MAX_EARLY_RELAYS {
                    early.entry(relay.job_id.clone()).or_default().push(relay);
                }
            }
        }
    }
}

/// The run's wallet id.
fn wallet_of(s: &StartProtocol) -> Result<concord_tss::WalletId, Error> {
    s.wallet_id
        .as_slice()
        .try_into()
        .map(concord_tss::WalletId)
        .map_err(|_| Error::Refused("the wallet id is not 32 bytes".into()))
}

/// A refresh only where the admin-signed policy in force says `refresh = true` for the wallet.
fn check_refresh_allowed(state: &State, wallet: concord_tss::WalletId) -> Result<(), Error> {
    let policy = state.policy().ok_or_else(|| {
        Error::Refused("no policy is in force here: nothing may be refreshed".into())
    })?;
    match policy.policy().wallet(&wallet) {
        Some(rule) if rule.refresh => Ok(()),
        Some(rule) => Err(Error::Refused(format!(
            "the policy in force does not allow refreshing wallet {} ({}): it needs refresh = true",
            wallet, rule.label
        ))),
        None => Err(Error::Refused(format!(
            "the policy in force does not name wallet {wallet}: it may not be refreshed"
        ))),
    }
}

/// Checks the coordinator's description of the group against what this module knows: every
/// member must be this module or a peer its operator pinned, and every sealing key must be
/// signed by its member's identity. The first time, the definition is pinned; afterwards it
/// must not change.
fn check_group(
    state: &State,
    identity: &PublicIdentity,
    s: &StartProtocol,
) -> Result<GroupDef, Error> {
    let peers = state.pinned_peers()?;
    let n = u16::try_from(s.group.len())
        .map_err(|_| Error::Refused("the group is too large".into()))?;
    let t = u16::try_from(s.threshold).map_err(|_| Error::Refused("bad threshold".into()))?;
    Threshold::new(t, n).map_err(|e| Error::Refused(e.to_string()))?;
    let mut members = Vec::with_capacity(s.group.len());
    for (i, p) in s.group.iter().enumerate() {
        if p.index as usize != i {
            return Err(Error::Refused(
                "group members are not listed in index order".into(),
            ));
        }
        let id = PublicIdentity::try_from(p.identity.as_slice())
            .map_err(|e| Error::Refused(format!("member {i}: {e}")))?;
        if id != *identity && !peers.contains(&id) {
            return Err(Error::Refused(format!(
                "member {i} ({}, {}) is not a peer this module's operator pinned",
                p.module_id,
                id.fingerprint()
            )));
        }
        let sealing = SealingPublicKey::try_from(p.sealing_public_key.as_slice())
            .map_err(|e| Error::Refused(format!("member {i}: {e}")))?;
        id.verify_sealing_key(&sealing, &p.sealing_key_signature)
            .map_err(|_| {
                Error::Refused(format!(
                    "member {i}'s sealing key is not signed by its identity"
                ))
            })?;
        members.push(Member {
            index: i as u16,
            module_id: p.module_id.clone(),
            identity: id,
            sealing_key: sealing,
        });
    }
    let engine = if s.engine.is_empty() {
        EcdsaEngine::LEGACY
    } else {
        s.engine
            .parse::<EcdsaEngine>()
            .map_err(|e| Error::Refused(e.to_string()))?
    };
    let def = GroupDef {
        group_id: s.group_id.clone(),
        threshold: t,
        members,
        engine,
    };
    if def
        .members
        .iter()
        .filter(|m| m.identity == *identity)
        .count()
        != 1
    {
        return Err(Error::Refused(
            "this module is not a member of the group exactly once".into(),
        ));
    }
    let kind = ProtocolKind::try_from(s.kind);
    // The admins' word on the group's members, for a repair that replaces a lost member.
    let named_by_policy = || -> bool {
        state.policy().is_some_and(|p| {
            p.policy().group(&s.group_id).is_some_and(|g| {
                g.members.len() == def.members.len()
                    && g.members
                        .iter()
                        .zip(&def.members)
                        .all(|(k, m)| *k == m.identity)
            })
        })
    };
    match state.group(&s.group_id)? {
        Some(pinned) if pinned == def => Ok(pinned),
        Some(pinned)
            if kind == Ok(ProtocolKind::Repair)
                && pinned.threshold == def.threshold
                && pinned.members.len() == def.members.len()
                && pinned.engine == def.engine
                && named_by_policy() =>
        {
            tracing::warn!(group = %s.group_id, "group members replaced as the policy in force names them");
            state.save_group(&def)?;
            Ok(def)
        }
        Some(_) => Err(Error::Refused(format!(
            "the coordinator describes group {} differently from when this module joined it (a member is replaced only in a repair, as the policy in force names the group's members)",
            s.group_id
        ))),
        None if kind == Ok(ProtocolKind::AuxInfo) => {
            state.save_group(&def)?;
            Ok(def)
        }
        None if kind == Ok(ProtocolKind::Repair) && named_by_policy() => {
            state.save_group(&def)?;
            Ok(def)
        }
        None => Err(Error::Refused(format!(
            "this module has not joined group {}",
            s.group_id
        ))),
    }
}

/// The policy this module approved `job_id` under is still in force.
pub(crate) fn check_policy_unchanged(
    state: &State,
    job_id: &str,
    approval: &crate::state::ApprovalRecord,
) -> Result<(), Error> {
    let in_force = state.policy().map(|p| p.hash);
    if in_force != Some(approval.policy) {
        return Err(Error::Refused(format!(
            "the policy changed since this module approved job {job_id} (approved under {}, in force now {}): it must be approved again",
            hex::encode(&approval.policy[..8]),
            in_force.map_or("none".to_owned(), |h| hex::encode(&h[..8]))
        )));
    }
    Ok(())
}

/// The members (their indices in `members`) whose approvals in `certificate` are of the
/// same job, wallet, digest, policy and rule as this module's own `approval`, signed by their
/// pinned identities and live; an error when there are fewer than the rule asks with
/// `threshold`.
pub(crate) fn certified_approvers(
    job_id: &str,
    approval: &crate::state::ApprovalRecord,
    threshold: usize,
    members: &[(String, PublicIdentity)],
    certificate: &[Approval],
) -> Result<std::collections::BTreeSet<u16>, concord_wire::authority::AuthorityError> {
    let certificate: Vec<(Vec<u8>, Vec<u8>)> = certificate
        .iter()
        .map(|a| (a.statement.clone(), a.signature.clone()))
        .collect();
    check_certificate(
        &CertificateCheck {
            job_id,
            wallet: approval.wallet_id,
            digest: approval.digest,
            policy: approval.policy,
            rule: approval.rule,
            threshold,
            members,
            now: concord_wire::authority::unix_now(),
        },
        &certificate,
    )
}

/// Before this module's share of a signature leaves it: the policy it approved under is
/// still in force; the certificate holds genuine approvals of this job, wallet, digest and
/// policy from enough members for the intent's rule (each checked against the identity
/// pinned in the group); every signer is among them.
fn check_sign_certificate(
    state: &State,
    group: &GroupDef,
    job_id: &str,
    approval: &crate::state::ApprovalRecord,
    parties: &[u16],
    certificate: &[Approval],
) -> Result<(), Error> {
    check_policy_unchanged(state, job_id, approval)?;
    let members: Vec<(String, PublicIdentity)> = group
        .members
        .iter()
        .map(|m| (m.module_id.clone(), m.identity))
        .collect();
    let approvers = certified_approvers(
        job_id,
        approval,
        usize::from(group.threshold),
        &members,
        certificate,
    )
    .map_err(|e| Error::Refused(format!("the signing run's certificate: {e}")))?;
    if let Some(p) = parties.iter().find(|p| !approvers.contains(p)) {
        return Err(Error::Refused(format!(
            "signer {p} of the run did not approve job {job_id}"
        )));
    }
    Ok(())
}

/// Before joining a signing run of `digest` (with its certificate, checked before this, or
/// with the certificate to follow): the session id is the one derived from (job, attempt,
/// signers, digest), and this module never ran it before; the approval, if this module
/// decided already (a run with its certificate always has one), was not released and the
/// policy it was given under is still in force. A run whose certificate follows may start
/// before this module decided: its signature share waits for both (see
/// [`check_followed_certificate`]).
fn check_sign_start(
    state: &State,
    s: &StartProtocol,
    digest: &[u8; 32],
    approval: Option<&crate::state::ApprovalRecord>,
    parties: &[u16],
    session: &SessionId,
) -> Result<(), Error> {
    if let Some(approval) = approval {
        check_policy_unchanged(state, &s.approved_job_id, approval)?;
        if approval.digest != *digest {
            return Err(Error::Refused(format!(
                "this module approved other bytes for job {} than the run would sign",
                s.approved_job_id
            )));
        }
        if approval.void {
            return Err(Error::Refused(format!(
                "the approval of job {} was released: this module never signs under it",
                s.approved_job_id
            )));
        }
    }
    let expected = input_session(&s.approved_job_id, s.attempt, parties, digest, s.input);
    if expected != *session {
        return Err(Error::Refused(
            "the session id is not the one derived from the job, attempt, signers and digest"
                .into(),
        ));
    }
    let fresh = if s.certificate_follows {
        state.use_session_early(&session.0, &s.approved_job_id)?
    } else {
        state.use_session(&session.0, &s.approved_job_id)?
    };
    if !fresh {
        return Err(Error::Refused(format!(
            "session {} was run before: a module never runs a session twice",
            hex::encode(&session.0[..8])
        )));
    }
    Ok(())
}

/// The certificate of a run that started without one, before this module's signature share
/// leaves it: this module approved exactly the `digest` the run signs, and the certificate
/// is checked against that approval as it stands now (still held, not released, under the
/// policy in force) exactly as a certificate at the start would be; then the approval is
/// bound (no release any more) before round 3 is sent.
fn check_followed_certificate(
    state: &State,
    group: &GroupDef,
    job_id: &str,
    digest: &[u8; 32],
    parties: &[u16],
    session: &SessionId,
    certificate: &[Approval],
) -> Result<(), Error> {
    let approval = state
        .approval(job_id)?
        .ok_or_else(|| Error::Refused(format!("this module holds no approval of job {job_id}")))?;
    if approval.digest != *digest {
        return Err(Error::Refused(format!(
            "this module approved other bytes for job {job_id} than the run signs"
        )));
    }
    if approval.void {
        return Err(Error::Refused(format!(
            "the approval of job {job_id} was released: this module never signs under it"
        )));
    }
    check_sign_certificate(state, group, job_id, &approval, parties, certificate)?;
    state.sign_under(&session.0, job_id)
}

/// Before joining a signing run that carries its certificate: both checks above.
fn check_sign_join(
    state: &State,
    group: &GroupDef,
    s: &StartProtocol,
    approval: &crate::state::ApprovalRecord,
    parties: &[u16],
    session: &SessionId,
) -> Result<(), Error> {
    check_sign_certificate(
        state,
        group,
        &s.approved_job_id,
        approval,
        parties,
        &s.certificate,
    )?;
    check_sign_start(state, s, &approval.digest, Some(approval), parties, session)
}

/// A signing run started with its certificate to follow may reach this module before its
/// own decision on the proposal is stored: waits for this module's approval of `job_id`
/// (never for long: the coordinator aborts the run when the module refuses).
async fn own_approval(
    ctx: &Ctx,
    job_id: &str,
    run: (&str, &[u8]),
) -> Result<crate::state::ApprovalRecord, Error> {
    let mut decided = ctx.decided.subscribe();
    let deadline = tokio::time::Instant::now() + CERTIFICATE_WAIT;
    loop {
        decided.borrow_and_update();
        if let Some(a) = ctx.state.approval(job_id)? {
            return Ok(a);
        }
        let running = ctx
            .running
            .lock()
            .map(|r| r.contains_key(&(run.0.to_owned(), run.1.to_vec())))
            .unwrap_or(false);
        if !running {
            return Err(Error::Refused(format!(
                "the run was aborted before this module approved job {job_id}"
            )));
        }
        if tokio::time::timeout_at(deadline, decided.changed())
            .await
            .is_err()
        {
            return Err(Error::Refused(format!(
                "this module did not approve job {job_id}"
            )));
        }
    }
}

/// An import needs an intent signed by an `importer` principal of the policy in force, for
/// exactly this group, scheme and key, never used before, and a wallet this module does not
/// hold yet. Returns the intent id.
fn check_import_intent(
    state: &State,
    s: &StartProtocol,
    wallet: concord_tss::WalletId,
) -> Result<String, Error> {
    let policy = state.policy().ok_or_else(|| {
        Error::Refused(
            "this module has no policy yet, so it names no importer: no key is imported".into(),
        )
    })?;
    let signed = concord_wire::authority::SignedIntent::from_json(&s.intent)
        .map_err(|e| Error::Refused(format!("an import needs an importer's signed intent: {e}")))?;
    let v = signed
        .verify(policy.policy(), concord_wire::authority::unix_now())
        .map_err(|e| {
            Error::Refused(format!(
                "import intent refused under policy v{}: {e}",
                policy.policy().version
            ))
        })?;
    let concord_wire::authority::Action::Import {
        group,
        scheme,
        public_key,
        importer,
    } = &v.intent.action
    else {
        return Err(Error::Refused(format!(
            "the intent asks for a {}, not an import",
            v.intent.action.kind()
        )));
    };
    if *group != s.group_id || scheme.as_str() != s.scheme {
        return Err(Error::Refused(format!(
            "the intent imports into group {group} as {scheme}, the coordinator asks for group {} as {}",
            s.group_id, s.scheme
        )));
    }
    // An exchange's ES256 key is made by DKG: one imported existed whole with whoever
    // imports it, and is never taken as the group's.
    if *scheme == Scheme::EcdsaP256 || s.scheme == Scheme::EcdsaP256.as_str() {
        return Err(Error::Refused(
            "an ecdsa-p256 key is made by DKG only: an imported one existed whole outside the group"
                .into(),
        ));
    }
    if concord_tss::WalletId::derive(*scheme, public_key) != wallet {
        return Err(Error::Refused(
            "the coordinator announces another key than the one the intent imports".into(),
        ));
    }
    if importer.as_bytes().as_slice() != s.importer.as_slice() {
        return Err(Error::Refused(
            "the shards are sealed by another key than the importer's intent names: they are not the importer's".into(),
        ));
    }
    if !state
        .logs()?
        .intent(&v.intent.id, concord_wire::authority::unix_now())
        .is_empty()
    {
        return Err(Error::Refused(format!(
            "intent {} was already used: a replayed intent is refused",
            v.intent.id
        )));
    }
    if state.has_share(wallet)? {
        return Err(Error::Refused(format!(
            "this module already holds wallet {wallet}: an import never overwrites a share"
        )));
    }
    Ok(v.intent.id)
}

fn update(job_id: &str, session: &[u8], status: job_update::Status) -> module_to_coordinator::Msg {
    module_to_coordinator::Msg::Update(JobUpdate {
        job_id: job_id.to_owned(),
        status: Some(status),
        session: session.to_vec(),
        audit: None,
    })
}

/// Counts a live link to a coordinator (`concord_module_coordinator_links`) while it lives.
struct LinkUp;

impl LinkUp {
    fn new() -> LinkUp {
        metrics::gauge!("concord_module_coordinator_links").increment(1.0);
        LinkUp
    }
}

impl Drop for LinkUp {
    fn drop(&mut self) {
        metrics::gauge!("concord_module_coordinator_links").decrement(1.0);
    }
}

/// Decides on a proposal and records it in the audit trail: the proposal seen, then the
/// approval or refusal; the answer leaves only once both are written (a trail that cannot be
/// written turns an approval into a refusal saying so — the approval, stored, is sent again
/// when the coordinator asks again).
async fn decide_and_record(ctx: &Ctx, p: &Proposal) -> module_to_coordinator::Msg {
    let state = &ctx.state;
    metrics::counter!("concord_module_proposals_total").increment(1);
    if let Err(e) = state.record(Event::ProposalSeen {
        job: p.job_id.clone(),
        wallet: hex::encode(&p.wallet_id),
        digest: hex::encode(&p.digest),
    }) {
        tracing::error!(job = %p.job_id, error = %e, "the audit trail cannot be written");
        return module_to_coordinator::Msg::Refusal(trail_failure(p, &e));
    }
    let decided = ctx.decider.decide(p).await;
    let policy = || {
        state
            .policy()
            .map(|p| hex::encode(p.hash))
            .unwrap_or_default()
    };
    match decided {
        Ok(mut a) => {
            let statement = concord_wire::authority::ApprovalStatement::from_bytes(&a.statement);
            let event = match statement {
                Ok(st) => Event::Approved {
                    job: p.job_id.clone(),
                    digest: hex::encode(&a.digest),
                    intent: st.intent.clone(),
                    policy: hex::encode(st.policy),
                    checks: st.checks.clone(),
                },
                Err(_) => Event::Approved {
                    job: p.job_id.clone(),
                    digest: hex::encode(&a.digest),
                    intent: String::new(),
                    policy: policy(),
                    checks: Vec::new(),
                },
            };
            match state.record(event) {
                Ok(r) => {
                    metrics::counter!("concord_module_decisions_total", "decision" => "approved", "code" => "").increment(1);
                    a.audit = Some(r);
                    module_to_coordinator::Msg::Approval(a)
                }
                Err(e) => {
                    tracing::error!(job = %p.job_id, error = %e, "the audit trail cannot be written");
                    module_to_coordinator::Msg::Refusal(trail_failure(p, &e))
                }
            }
        }
        Err(mut r) => {
            tracing::warn!(job = %p.job_id, code = %r.code, reason = %r.reason, "refused a proposal");
            metrics::counter!("concord_module_decisions_total", "decision" => "refused", "code" => r.code.clone()).increment(1);
            match state.record(Event::Refused {
                job: p.job_id.clone(),
                code: r.code.clone(),
                reason: r.reason.clone(),
                policy: policy(),
            }) {
                Ok(a) => r.audit = Some(a),
                Err(e) => {
                    tracing::error!(job = %p.job_id, error = %e, "the audit trail cannot be written")
                }
            }
            module_to_coordinator::Msg::Refusal(r)
        }
    }
}

/// The refusal a module sends when its audit trail cannot record its answer.
fn trail_failure(p: &Proposal, e: &Error) -> Refusal {
    Refusal {
        job_id: p.job_id.clone(),
        reason: format!("this module's audit trail cannot record its answer: {e}"),
        computed_digest: Vec::new(),
        code: crate::approve::code::INTERNAL.into(),
        audit: None,
    }
}

fn start_job(ctx: &Arc<Ctx>, s: StartProtocol, uplink: &Uplink) {
    let uplink = uplink.clone();
    let job_id = s.job_id.clone();
    let (relay_tx, relay_rx) = mpsc::unbounded_channel();
    let early = ctx
        .early
        .lock()
        .ok()
        .and_then(|mut e| e.remove(&job_id))
        .unwrap_or_default();
    for r in early {
        if r.session == s.session {
            let _ = relay_tx.send(r);
        }
    }
    let key = (job_id.clone(), s.session.clone());
    if let Ok(mut running) = ctx.running.lock() {
        running.insert(key.clone(), relay_tx);
    }
    // Registered before the next message is read: the Certificate always follows the Start
    // on the stream.
    let certificate = s.certificate_follows.then(|| {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut c) = ctx.certificates.lock() {
            c.insert(key.clone(), tx);
        }
        rx
    });
    let task_ctx = ctx.clone();
    let handle = tokio::spawn(async move {
        let id = s.job_id.clone();
        let run_session = s.session.clone();
        let run_key = (id.clone(), run_session.clone());
        // The threshold protocols compute for hundreds of milliseconds between two awaits
        // (Paillier proofs). Driving them on a blocking thread keeps the runtime's workers
        // free for the coordinator link, approvals and one-round online signing, which would
        // otherwise queue behind a background presignature.
        let rt = tokio::runtime::Handle::current();
        let run_ctx = task_ctx.clone();
        let kind = s.kind;
        let started = std::time::Instant::now();
        let run_uplink = uplink.clone();
        let outcome = match tokio::task::spawn_blocking(move || {
            rt.block_on(run_protocol(
                &run_ctx,
                s,
                relay_rx,
                certificate,
                &run_uplink,
            ))
        })
        .await
        {
            Ok(o) => o,
            Err(e) => Err((
                format!("the protocol task ended abnormally: {e}"),
                Vec::new(),
            )),
        };
        tracing::debug!(job = %id, kind, ms = started.elapsed().as_millis() as u64, ok = outcome.is_ok(), "protocol run ended");
        if let Ok(mut r) = task_ctx.running.lock() {
            r.remove(&run_key);
        }
        if let Ok(mut t) = task_ctx.tasks.lock() {
            t.remove(&run_key);
        }
        if let Ok(mut c) = task_ctx.certificates.lock() {
            c.remove(&run_key);
        }
        metrics::histogram!("concord_module_protocol_seconds", "kind" => ProtocolKind::try_from(kind).map_or("unknown", |k| k.as_str_name()), "outcome" => if outcome.is_ok() { "ok" } else { "failed" }).record(started.elapsed().as_secs_f64());
        let msg = match outcome {
            Ok(result) => {
                let mut msg = update(&id, &run_session, job_update::Status::Result(result));
                if let module_to_coordinator::Msg::Update(u) = &mut msg {
                    u.audit = task_ctx.state.take_release(&run_session);
                    if u.audit.is_some() {
                        metrics::counter!("concord_module_signatures_released_total", "kind" => "threshold").increment(1);
                    }
                }
                msg
            }
            Err((error, blamed)) => {
                tracing::warn!(job = %id, %error, "protocol run failed");
                update(
                    &id,
                    &run_session,
                    job_update::Status::Failure(Failure { error, blamed }),
                )
            }
        };
        send_up(&uplink, msg);
    });
    if let Ok(mut t) = ctx.tasks.lock() {
        t.insert(key, handle.abort_handle());
    }
}

async fn run_protocol(
    ctx: &Arc<Ctx>,
    s: StartProtocol,
    relays: mpsc::UnboundedReceiver<Relay>,
    certificate: Option<oneshot::Receiver<Vec<Approval>>>,
    uplink: &Uplink,
) -> Result<Vec<u8>, (String, Vec<u32>)> {
    let fail = |e: Error| (e.to_string(), Vec::new());
    let me_key = ctx.identity.public();
    let group = Arc::new(check_group(&ctx.state, &me_key, &s).map_err(fail)?);
    let me = group
        .index_of(&me_key)
        .ok_or_else(|| fail(Error::Refused("not a member".into())))?;
    let session: [u8; 32] = s
        .session
        .as_slice()
        .try_into()
        .map_err(|_| fail(Error::Refused("the session id is not 32 bytes".into())))?;
    let session = SessionId(session);
    let parties: Vec<u16> = s
        .parties
        .iter()
        .map(|p| u16::try_from(*p).unwrap_or(u16::MAX))
        .collect();
    if !parties.contains(&me)
        || parties
            .iter()
            .any(|p| usize::from(*p) >= group.members.len())
    {
        return Err(fail(Error::Refused(
            "this module is not among the run's parties, or a party is unknown".into(),
        )));
    }
    let kind = ProtocolKind::try_from(s.kind)
        .map_err(|_| fail(Error::Refused(format!("unknown protocol kind {}", s.kind))))?;
    let blame = Blame::default();
    let incoming = UnboundedReceiverStream::new(open_relays(
        relays,
        ctx.sealing.clone(),
        group.clone(),
        session,
        me,
        parties.clone(),
        blame.clone(),
    ));
    let outgoing = SealedSink {
        uplink: uplink.clone(),
        identity: ctx.identity.clone(),
        group: group.clone(),
        job_id: s.job_id.clone(),
        session,
        me,
        parties: parties.clone(),
        failpoint: (kind == ProtocolKind::Sign).then_some("module::sign::sent"),
    };
    let threshold = Threshold::new(group.threshold, group.members.len() as u16)
        .map_err(|e| fail(Error::Refused(e.to_string())))?;
    let state = &ctx.state;
    let result: Result<Vec<u8>, Error> = async {
        match kind {
            // A DKLs23 group needs no auxiliary material: joining is pinning its definition
            // (done above, in check_group).
            ProtocolKind::AuxInfo if !group.engine.needs_aux() => Ok(serde_json::to_vec(&AuxResult {
                group_id: group.group_id.clone(),
            })
            .unwrap_or_default()),
            ProtocolKind::AuxInfo => {
                let primes = match state.primes(&group.group_id)? {
                    Some(p) => p,
                    None => {
                        let uplink = uplink.clone();
                        let job = s.job_id.clone();
                        let run = s.session.clone();
                        let primes = tokio::task::spawn_blocking(move || {
                            let mut progress = |e: concord_tss::ProgressEvent| {
                                send_up(
                                    &uplink,
                                    update(
                                        &job,
                                        &run,
                                        job_update::Status::Progress(concord_wire::rpc::Progress {
                                            stage: format!(
                                                "{} {}/{}",
                                                e.stage,
                                                e.done,
                                                e.total.unwrap_or(0)
                                            ),
                                            done: e.done,
                                            total: e.total.unwrap_or(0),
                                        }),
                                    ),
                                );
                            };
                            concord_tss::ecdsa::Primes::generate(&mut OsRng, &mut progress)
                        })
                        .await
                        .map_err(|e| Error::Protocol(e.to_string()))?;
                        state.save_primes(&group.group_id, &primes)?;
                        primes
                    }
                };
                let uplink = uplink.clone();
                let job = s.job_id.clone();
                let run = s.session.clone();
                let mut progress = move |e: concord_tss::ProgressEvent| {
                    send_up(
                        &uplink,
                        update(
                            &job,
                            &run,
                            job_update::Status::Progress(concord_wire::rpc::Progress {
                                stage: format!("{} {}", e.stage, e.done + 1),
                                done: e.done,
                                total: e.total.unwrap_or(0),
                            }),
                        ),
                    );
                };
                let aux = concord_tss::ecdsa::generate_aux(
                    session,
                    me,
                    threshold.n(),
                    primes,
                    incoming,
                    outgoing,
                    &mut OsRng,
                    &mut progress,
                )
                .await
                .map_err(|e| Error::Protocol(e.to_string()))?;
                state.save_aux(&group.group_id, &aux)?;
                Ok(serde_json::to_vec(&AuxResult {
                    group_id: group.group_id.clone(),
                })
                .unwrap_or_default())
            }
            ProtocolKind::Keygen => {
                let scheme: Scheme = s
                    .scheme
                    .parse()
                    .map_err(|e: concord_types::TypesError| Error::Refused(e.to_string()))?;
                let aux = match scheme {
                    Scheme::EcdsaSecp256k1 if group.engine.needs_aux() => {
                        Some(state.aux(&group.group_id)?.ok_or_else(|| {
                            Error::Refused(format!(
                                "group {}'s auxiliary material is not ready here",
                                group.group_id
                            ))
                        })?)
                    }
                    _ => None,
                };
                let share = concord_tss::dkg(
                    scheme,
                    group.engine,
                    session,
                    me,
                    threshold,
                    aux.as_ref(),
                    incoming,
                    outgoing,
                    &mut OsRng,
                )
                .await
                .map_err(|e| Error::Protocol(e.to_string()))?;
                state.save_share(&share)?;
                Ok(serde_json::to_vec(&KeygenResult {
                    wallet_id: share.wallet_id(),
                    scheme,
                    public_key: hex::encode(share.public_key()),
                })
                .unwrap_or_default())
            }
            ProtocolKind::Presign => {
                let wallet = concord_tss::WalletId(
                    s.wallet_id
                        .as_slice()
                        .try_into()
                        .map_err(|_| Error::Refused("the wallet id is not 32 bytes".into()))?,
                );
                let share = state.share(wallet)?.ok_or_else(|| {
                    Error::Refused(format!("this module holds no share of wallet {wallet}"))
                })?;
                let share = match &*share {
                    KeyShare::Ecdsa(share) => share,
                    KeyShare::Dkls(_) | KeyShare::DklsP256(_) => {
                        return Err(Error::Refused(
                            "DKLs23 wallets sign interactively: the engine has no presignatures".into(),
                        ));
                    }
                    _ => {
                        return Err(Error::Refused(
                            "presignatures exist only for ECDSA wallets".into(),
                        ));
                    }
                };
                let presig = concord_tss::ecdsa::presign(
                    session, share, &parties, incoming, outgoing, &mut OsRng,
                )
                .await
                .map_err(|e| Error::Protocol(e.to_string()))?;
                state.save_presignature(&presig)?;
                Ok(serde_json::to_vec(&PresignResult {
                    fingerprint: hex::encode(presig.fingerprint()),
                })
                .unwrap_or_default())
            }
            ProtocolKind::Sign => {
                let follows = match (s.certificate_follows, certificate) {
                    (true, Some(rx)) if s.presignature.is_empty() => Some(rx),
                    (true, _) => {
                        return Err(Error::Refused(
                            "a certificate may follow the start of an interactive signing run only".into(),
                        ));
                    }
                    (false, _) => None,
                };
                // What the run signs: this module's approved bytes; with the certificate to
                // follow, the proposal's while this module still decides on them (its
                // signature share then waits for an approval of exactly these bytes).
                let (approval, payload_bytes) = if follows.is_some() {
                    match state.approval(&s.approved_job_id)? {
                        Some(a) => {
                            let bytes = a.payload.clone();
                            (Some(a), bytes)
                        }
                        None => match ctx.proposal(&s.approved_job_id) {
                            Some(p) => (None, p.payload),
                            None => {
                                let a = own_approval(ctx, &s.approved_job_id, (&s.job_id, &s.session)).await?;
                                let bytes = a.payload.clone();
                                (Some(a), bytes)
                            }
                        },
                    }
                } else {
                    let a = state.approval(&s.approved_job_id)?.ok_or_else(|| {
                        Error::Refused(format!(
                            "this module did not approve job {}",
                            s.approved_job_id
                        ))
                    })?;
                    let bytes = a.payload.clone();
                    (Some(a), bytes)
                };
                let payload = SigningPayload::from_canonical(&payload_bytes)
                    .map_err(|e| Error::Refused(format!("the payload to sign: {e}")))?;
                let digest = payload.digest();
                if approval.as_ref().is_some_and(|a| a.digest != digest) {
                    return Err(Error::Refused("the stored approval is inconsistent".into()));
                }
                let wallet = payload.wallet();
                if s.wallet_id != wallet.0 {
                    return Err(Error::Refused(
                        "the signing run names another wallet than the approved one".into(),
                    ));
                }
                match (&approval, follows.is_some()) {
                    (Some(a), false) => check_sign_join(state, &group, &s, a, &parties, &session)?,
                    (a, _) => check_sign_start(state, &s, &digest, a.as_ref(), &parties, &session)?,
                }
                // With the certificate to follow: rounds 1 and 2 (and the signature share,
                // held back) are computed now; the share leaves only once this module
                // approved these bytes and the certificate checks out exactly as above.
                let refused: Arc<Mutex<Option<Error>>> = Arc::default();
                // The certificate is waited for and checked, and the approval bound, on a
                // task of its own: off the rounds' path, while they compute.
                let check = follows.map(|rx| {
                    let (ctx, group, job) = (ctx.clone(), group.clone(), s.approved_job_id.clone());
                    let parties = parties.clone();
                    let run: RunKey = (s.job_id.clone(), s.session.clone());
                    tokio::spawn(async move {
                        own_approval(&ctx, &job, (&run.0, &run.1)).await?;
                        let approvals = match tokio::time::timeout(CERTIFICATE_WAIT, rx).await {
                            Ok(Ok(approvals)) => approvals,
                            Ok(Err(_)) => return Err(Error::Refused("the run was aborted before its certificate came".into())),
                            Err(_) => return Err(Error::Refused(format!("no certificate came within {} s", CERTIFICATE_WAIT.as_secs()))),
                        };
                        if !ctx.running.lock().is_ok_and(|r| r.contains_key(&run)) {
                            return Err(Error::Refused("the run was aborted before its certificate came".into()));
                        }
                        check_followed_certificate(&ctx.state, &group, &job, &digest, &parties, &session, &approvals)
                    })
                });
                let gate = {
                    let refused = refused.clone();
                    async move {
                        let Some(check) = check else { return Ok(()) };
                        let checked = check.await.unwrap_or_else(|e| {
                            Err(Error::Protocol(format!("the certificate check ended abnormally: {e}")))
                        });
                        checked.map_err(|e| {
                            let reason = e.to_string();
                            if let Ok(mut r) = refused.lock() {
                                *r = Some(e);
                            }
                            concord_tss::TssError::Transport(reason)
                        })
                    }
                };
                let share = state
                    .share(wallet)?
                    .ok_or_else(|| Error::Refused("no share of this wallet".into()))?;
                // For a UTXO spend, the hash of the input this run signs, from the approved
                // PSBT (an index it does not have is refused).
                let input = payload
                    .signing_input_of(share.scheme(), &share.public_key(), s.input)
                    .map_err(|e| Error::Refused(format!("input {}: {e}", s.input)))?;
                let presigned = !s.presignature.is_empty();
                let sig = if !presigned {
                    match concord_tss::sign_gated(&share, session, &parties, &input, gate, incoming, outgoing, &mut OsRng).await {
                        Ok(sig) => sig,
                        Err(_) if refused.lock().is_ok_and(|r| r.is_some()) => {
                            return Err(refused.lock().ok().and_then(|mut r| r.take()).unwrap_or_else(|| Error::Refused("the certificate was refused".into())));
                        }
                        Err(e @ concord_tss::TssError::CheatingParty { party, .. }) => {
                            // DKLs23's abort rule: a party caught cheating never signs with
                            // this share again (the ban is stored with the share).
                            if let KeyShare::Dkls(_) | KeyShare::DklsP256(_) = *share {
                                state.ban(wallet, party)?;
                            }
                            return Err(Error::Cheating { party, reason: e.to_string() });
                        }
                        Err(e) => return Err(Error::Protocol(e.to_string())),
                    }
                } else {
                    let fingerprint: [u8; 32] = s.presignature.as_slice().try_into().map_err(|_| {
                        Error::Refused("the presignature fingerprint is not 32 bytes".into())
                    })?;
                    // Deleted from the vault before anything derived from it leaves here.
                    let presig = state
                        .take_presignature(wallet, &fingerprint)?
                        .ok_or_else(|| {
                            Error::Refused(format!(
                                "presignature {} is not held here (already used?)",
                                hex::encode(&fingerprint[..8])
                            ))
                        })?;
                    if presig.signers() != parties.as_slice() {
                        return Err(Error::Refused("the presignature was made for other signers".into()));
                    }
                    let digest: [u8; 32] = input
                        .as_slice()
                        .try_into()
                        .map_err(|_| Error::Refused("presignatures sign 32-byte digests only".into()))?;
                    concord_tss::ecdsa::sign_with_presignature(session, presig, &digest, incoming, outgoing)
                        .await
                        .map(concord_tss::Signature::Ecdsa)
                        .map_err(|e| Error::Protocol(e.to_string()))?
                };
                Ok(serde_json::to_vec(&SignResult {
                    signature: hex::encode(sig.to_bytes()),
                    presigned,
                })
                .unwrap_or_default())
            }
            ProtocolKind::Import => {
                let wallet = concord_tss::WalletId(
                    s.wallet_id.as_slice().try_into().map_err(|_| Error::Refused("the wallet id is not 32 bytes".into()))?,
                );
                let intent = check_import_intent(state, &s, wallet)?;
                let importer = PublicIdentity::try_from(s.importer.as_slice())
                    .map_err(|e| Error::Refused(format!("importer key: {e}")))?;
                let sealed = s
                    .import_shards
                    .get(usize::from(me))
                    .ok_or_else(|| Error::Refused("no shard was sent for this module".into()))?;
                let session = concord_wire::messages::import_session(&group.group_id, &wallet);
                let plain = concord_wire::seal::open(
                    &ctx.sealing,
                    me,
                    &importer,
                    concord_wire::messages::IMPORTER_INDEX,
                    &session,
                    sealed,
                )
                .map_err(|e| Error::Refused(format!("the imported shard does not open: {e}")))?;
                let scheme: Scheme = s.scheme.parse().map_err(|e: concord_types::TypesError| Error::Refused(e.to_string()))?;
                let share = match scheme {
                    Scheme::EcdsaSecp256k1 if group.engine.needs_aux() => {
                        let core = concord_tss::ecdsa::EcdsaCoreShare::from_bytes(&plain)
                            .map_err(|e| Error::Refused(format!("the imported shard is invalid: {e}")))?;
                        let aux = state.aux(&group.group_id)?.ok_or_else(|| {
                            Error::Refused(format!("group {}'s auxiliary material is not ready here", group.group_id))
                        })?;
                        KeyShare::Ecdsa(core.complete(&aux).map_err(|e| Error::Refused(e.to_string()))?)
                    }
                    _ => concord_tss::UncheckedKeyShare::from_bytes(&plain)
                        .and_then(|u| u.validate())
                        .map_err(|e| Error::Refused(format!("the imported shard is invalid: {e}")))?,
                };
                let engine_ok = match share.engine() {
                    concord_tss::Engine::Cggmp21 => group.engine == EcdsaEngine::Cggmp21,
                    concord_tss::Engine::Dkls23 => group.engine == EcdsaEngine::Dkls23,
                    concord_tss::Engine::Frost => !matches!(scheme, Scheme::EcdsaSecp256k1 | Scheme::EcdsaP256),
                };
                if !engine_ok {
                    return Err(Error::Refused(format!(
                        "the imported shard is a {} share; group {} runs {}",
                        share.engine(),
                        group.group_id,
                        group.engine
                    )));
                }
                if share.scheme() != scheme || share.index() != me || share.threshold() != threshold || share.wallet_id() != wallet {
                    return Err(Error::Refused(
                        "the imported shard is not this module's share of the announced wallet, scheme and threshold".into(),
                    ));
                }
                // The intent is spent before the share is stored: a crash between the two
                // leaves no share, never a second import under one intent.
                state.record_intent(&intent)?;
                state.save_share(&share)?;
                Ok(serde_json::to_vec(&KeygenResult {
                    wallet_id: share.wallet_id(),
                    scheme,
                    public_key: hex::encode(share.public_key()),
                })
                .unwrap_or_default())
            }
            ProtocolKind::Refresh => {
                let wallet = wallet_of(&s)?;
                check_refresh_allowed(state, wallet)?;
                if parties.len() != group.members.len() {
                    return Err(Error::Refused(
                        "a refresh needs every member of the group".into(),
                    ));
                }
                if let Some((parent, path)) = state.derivation(wallet)? {
                    return Err(Error::Refused(format!(
                        "wallet {wallet} is wallet {parent}'s child at {path}: refresh the parent, its children follow"
                    )));
                }
                let share = state.share(wallet)?.ok_or_else(|| {
                    Error::Refused(format!("this module holds no share of wallet {wallet}"))
                })?;
                if share.public_commitment().is_none() {
                    return Err(Error::Refused(format!(
                        "wallet {wallet} is a {} share: cggmp21 0.6 has no threshold refresh",
                        share.engine()
                    )));
                }
                let new = concord_tss::refresh(&share, session, incoming, outgoing, &mut OsRng)
                    .await
                    .map_err(|e| Error::Protocol(e.to_string()))?;
                let commitment = new
                    .public_commitment()
                    .ok_or_else(|| Error::Protocol("the refreshed share has no commitment".into()))?;
                // Set aside, not in use: the old share signs until every member has its new one.
                state.set_aside_refreshed(&new)?;
                Ok(serde_json::to_vec(&RefreshResult {
                    wallet_id: wallet,
                    public_key: hex::encode(new.public_key()),
                    commitment: hex::encode(commitment),
                })
                .unwrap_or_default())
            }
            ProtocolKind::Derive => {
                let parent = wallet_of(&s)?;
                let path: concord_tss::DerivationPath = s
                    .derivation_path
                    .parse()
                    .map_err(|e: concord_types::TypesError| Error::Refused(e.to_string()))?;
                if path.is_master() {
                    return Err(Error::Refused(
                        "path m is the wallet itself, not a child".into(),
                    ));
                }
                if let Some((grandparent, at)) = state.derivation(parent)? {
                    return Err(Error::Refused(format!(
                        "wallet {parent} is itself wallet {grandparent}'s child at {at}: derive from {grandparent}"
                    )));
                }
                let policy = state.policy().ok_or_else(|| {
                    Error::Refused("no policy is in force here: no child wallet may be derived".into())
                })?;
                let rule = policy.policy().wallet(&parent).ok_or_else(|| {
                    Error::Refused(format!(
                        "the policy in force does not name wallet {parent}: it has no child wallets"
                    ))
                })?;
                if !rule.allows_child(&path) {
                    return Err(Error::Refused(format!(
                        "the policy in force allows children of wallet {parent} ({}) only under [{}], not at {path}",
                        rule.label,
                        rule.derive.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    )));
                }
                let parent_share = state.share(parent)?;
                let Some(KeyShare::Dkls(p)) = parent_share.as_deref() else {
                    return Err(Error::Refused(format!(
                        "wallet {parent} is not a DKLs23 wallet held here: only DKLs23 wallets have child wallets"
                    )));
                };
                // Derived here, from this module's own share and the public chain code.
                let child = p.derive(&path).map_err(|e| Error::Refused(e.to_string()))?;
                state.save_derivation(child.wallet_id(), parent, &path)?;
                Ok(serde_json::to_vec(&KeygenResult {
                    wallet_id: child.wallet_id(),
                    scheme: Scheme::EcdsaSecp256k1,
                    public_key: hex::encode(child.public_key()),
                })
                .unwrap_or_default())
            }
            ProtocolKind::Repair => {
                let wallet = wallet_of(&s)?;
                let target = u16::try_from(s.repair_target)
                    .ok()
                    .filter(|t| usize::from(*t) < group.members.len())
                    .ok_or_else(|| Error::Refused("the repair names no member of the group".into()))?;
                let named = state.policy().is_some_and(|p| p.policy().group(&group.group_id).is_some());
                if !named {
                    return Err(Error::Refused(format!(
                        "the policy in force does not list group {}'s members: no share is rebuilt",
                        group.group_id
                    )));
                }
                let scheme: Scheme = s
                    .scheme
                    .parse()
                    .map_err(|e: concord_types::TypesError| Error::Refused(e.to_string()))?;
                if scheme == Scheme::EcdsaSecp256k1 && group.engine != EcdsaEngine::Dkls23 {
                    return Err(Error::Refused(
                        "cggmp21 0.6 has no share repair: only DKLs23 and FROST shares are rebuilt".into(),
                    ));
                }
                if parties.len() != group.members.len() {
                    return Err(Error::Refused("a repair needs every member of the group".into()));
                }
                if let Some((parent, path)) = state.derivation(wallet)? {
                    return Err(Error::Refused(format!(
                        "wallet {wallet} is wallet {parent}'s child at {path}: repair the parent"
                    )));
                }
                let own = state.share(wallet)?;
                let new = if me == target {
                    if own.is_some() {
                        return Err(Error::Refused(format!(
                            "this module holds a share of wallet {wallet}: it is not the member to rebuild"
                        )));
                    }
                    concord_tss::repair(
                        concord_tss::RepairPart::Target { scheme, engine: group.engine },
                        session,
                        me,
                        target,
                        threshold,
                        incoming,
                        outgoing,
                        &mut OsRng,
                    )
                    .await
                } else {
                    let Some(share) = own.filter(|sh| sh.scheme() == scheme) else {
                        return Err(Error::Refused(format!(
                            "this module holds no {scheme} share of wallet {wallet} to help with"
                        )));
                    };
                    concord_tss::repair(
                        concord_tss::RepairPart::Helper(&share),
                        session,
                        me,
                        target,
                        threshold,
                        incoming,
                        outgoing,
                        &mut OsRng,
                    )
                    .await
                }
                .map_err(|e| Error::Protocol(e.to_string()))?;
                if new.wallet_id() != wallet {
                    return Err(Error::Protocol("the rebuilt share is of another wallet".into()));
                }
                let commitment = new
                    .public_commitment()
                    .ok_or_else(|| Error::Protocol("the rebuilt share has no commitment".into()))?;
                if me == target {
                    state.set_aside_rebuilt(&new)?;
                } else {
                    state.set_aside_refreshed(&new)?;
                }
                Ok(serde_json::to_vec(&RefreshResult {
                    wallet_id: wallet,
                    public_key: hex::encode(new.public_key()),
                    commitment: hex::encode(commitment),
                })
                .unwrap_or_default())
            }
            ProtocolKind::RefreshCommit => {
                // What is committed was authorised when it was set aside (a refresh the policy
                // allows, or a repair of a group the policy lists); only the agreed one is.
                let wallet = wallet_of(&s)?;
                let expected: [u8; 32] = s.refresh_commitment.as_slice().try_into().map_err(|_| {
                    Error::Refused("the refresh commitment is not 32 bytes".into())
                })?;
                let commitment_of = |share: &KeyShare| share.public_commitment();
                let current = state.share(wallet)?;
                if current.as_deref().and_then(commitment_of) != Some(expected) {
                    let aside = state.refreshed(wallet)?.ok_or_else(|| {
                        Error::Refused(format!(
                            "no refreshed share of wallet {wallet} is set aside here"
                        ))
                    })?;
                    if commitment_of(&aside) != Some(expected) {
                        return Err(Error::Refused(
                            "the refreshed share set aside here is not the one the members agreed on".into(),
                        ));
                    }
                    state.commit_refreshed(wallet, &aside)?;
                }
                let current = state.share(wallet)?.ok_or_else(|| {
                    Error::Vault(format!("wallet {wallet}'s committed share is not readable"))
                })?;
                Ok(serde_json::to_vec(&RefreshResult {
                    wallet_id: wallet,
                    public_key: hex::encode(current.public_key()),
                    commitment: hex::encode(expected),
                })
                .unwrap_or_default())
            }
            ProtocolKind::Unspecified => Err(Error::Refused(
                "the coordinator sent no protocol kind".into(),
            )),
        }
    }
    .await;
    result.map_err(|e| match (blame.take(), e) {
        (Some((reason, party)), _) => (reason, vec![u32::from(party)]),
        (None, Error::Cheating { party, reason }) => (reason, vec![u32::from(party)]),
        (None, e) => (e.to_string(), Vec::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_tss::local::LocalNetwork;
    use concord_wire::authority::{
        Action, AdminSet, AgreementRule, ApprovalStatement, Intent, Policy, Principal, Role,
        SignedIntent, WalletPurpose, WalletRule,
    };
    use concord_wire::identity::{IdentityKey, IdentitySigner};
    use concord_wire::rpc::Proposal;
    use zeroize::Zeroizing;

    fn key(i: u8) -> IdentityKey {
        IdentityKey::from_seed(&Zeroizing::new([i; 32]))
    }

    fn state(dir: &std::path::Path) -> State {
        let kek = crate::state::test_kek();
        let st = State::create("m1", dir, &kek, Default::default()).unwrap();
        st.pin_admins(&AdminSet::new(vec![key(1).public()], 1).unwrap())
            .unwrap();
        st
    }

    /// Decoded shares are cached: a share written after it was read (a refresh committed) is
    /// the one read next, never the cached old one.
    #[tokio::test]
    async fn a_committed_refresh_is_the_share_read_next() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path());
        let shares = ed25519_shares(Threshold::new(2, 2).unwrap(), &[0, 1]).await;
        let wallet = shares[0].wallet_id();
        st.save_share(&shares[0]).unwrap();
        let before = st.share(wallet).unwrap().unwrap().public_commitment();
        assert_eq!(
            st.share(wallet).unwrap().unwrap().public_commitment(),
            before,
            "read twice, the same share"
        );
        let shares = std::sync::Arc::new(shares);
        let mut handles = Vec::new();
        for ep in LocalNetwork::connect(&[0, 1]) {
            let shares = shares.clone();
            handles.push(tokio::spawn(async move {
                concord_tss::refresh(
                    &shares[usize::from(ep.index)],
                    SessionId([8; 32]),
                    ep.incoming,
                    ep.outgoing,
                    &mut OsRng,
                )
                .await
            }));
        }
        let refreshed = handles.remove(0).await.unwrap().unwrap();
        assert_ne!(refreshed.public_commitment(), before);
        st.commit_refreshed(wallet, &refreshed).unwrap();
        assert_eq!(
            st.share(wallet).unwrap().unwrap().public_commitment(),
            refreshed.public_commitment(),
            "after the commit, the refreshed share is read, not the cached one"
        );
    }

    /// The nonce-release rule, as a coordinator could abuse it: an approval this module
    /// never signed under can be released (it then binds nothing, and the module never signs
    /// under it); one it signed under cannot (its nonce stays bound), across a restart too.
    #[test]
    fn a_released_approval_binds_nothing_and_a_signed_one_cannot_be_released() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path());
        let wallet = concord_tss::WalletId::derive(concord_tss::Scheme::EcdsaSecp256k1, &[2; 33]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let nonce = "evm-31337-5";
        let rec = |d: u8| crate::state::ApprovalRecord {
            wallet_id: wallet,
            payload: vec![],
            digest: [d; 32],
            statement: vec![],
            signature: vec![],
            intent: format!("intent-{d}"),
            rule: AgreementRule::All,
            policy: [0; 32],
            at: now,
            nonce_key: Some(nonce.into()),
            spend: None,
            order: None,
            void: false,
        };
        st.save_approval("job-a", &rec(1)).unwrap();
        assert_eq!(st.logs().unwrap().nonce(wallet, nonce, now), Some([1; 32]));
        assert!(st.release_approval("job-a").unwrap());
        assert!(!st.release_approval("job-a").unwrap(), "released once");
        assert_eq!(st.logs().unwrap().nonce(wallet, nonce, now), None);
        let err = st.use_session(&[9; 32], "job-a").unwrap_err();
        assert!(err.to_string().contains("released"), "{err}");

        st.save_approval("job-b", &rec(2)).unwrap();
        assert!(st.use_session(&[8; 32], "job-b").unwrap());
        let err = st.release_approval("job-b").unwrap_err();
        assert!(err.to_string().contains("already signed"), "{err}");
        assert_eq!(st.logs().unwrap().nonce(wallet, nonce, now), Some([2; 32]));

        drop(st);
        let kek = crate::state::test_kek();
        let st = State::open("m1", dir.path(), &kek, Default::default()).unwrap();
        assert_eq!(st.logs().unwrap().nonce(wallet, nonce, now), Some([2; 32]));
        assert!(st.release_approval("job-b").is_err());
        assert!(st.use_session(&[7; 32], "job-a").is_err());
    }

    /// A policy naming a trader (10), an importer (12), and `wallet` as a trading wallet that
    /// may sign raw messages.
    fn adopt(st: &State, wallet: Option<concord_tss::WalletId>) {
        let p = |name: &str, i: u8, roles: &[Role]| Principal {
            name: name.into(),
            key: key(i).public(),
            roles: roles.to_vec(),
        };
        let current = st.policy();
        let mut sp = concord_wire::authority::SignedPolicy {
            policy: Policy {
                version: current.as_ref().map_or(1, |c| c.policy().version + 1),
                previous: current.as_ref().map(|c| c.hash),
                admin_quorum: 1,
                principals: vec![
                    p("admin", 1, &[Role::Admin]),
                    p("trader", 10, &[Role::Trader]),
                    p("importer", 12, &[Role::Importer]),
                ],
                wallets: wallet
                    .map(|w| WalletRule {
                        wallet: w,
                        label: "signer".into(),
                        purpose: WalletPurpose::Trading {
                            deposit_to: vec![],
                            raw_messages: true,
                        },
                        limits: vec![],
                        refresh: false,
                        derive: vec![],
                        multisig: None,
                        held: None,
                    })
                    .into_iter()
                    .collect(),
                address_book: vec![],
                groups: vec![],
            },
            signatures: vec![],
        };
        sp.sign(&key(1));
        st.adopt_policy(sp).unwrap();
    }

    async fn ed25519_shares(t: Threshold, parties: &[u16]) -> Vec<KeyShare> {
        let session = SessionId([1; 32]);
        let mut handles = Vec::new();
        for ep in LocalNetwork::connect(parties) {
            handles.push(tokio::spawn(async move {
                concord_tss::dkg(
                    Scheme::Ed25519,
                    concord_tss::EcdsaEngine::DEFAULT,
                    session,
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
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap().unwrap());
        }
        out
    }

    fn message(wallet: concord_tss::WalletId, m: &[u8], nonce: Option<u64>) -> SigningPayload {
        SigningPayload::Message {
            wallet,
            message: m.to_vec(),
            nonce,
        }
    }

    fn intent_for(p: &SigningPayload) -> SignedIntent {
        let SigningPayload::Message {
            wallet, message, ..
        } = p
        else {
            unreachable!()
        };
        SignedIntent::new(
            Intent::new(
                Action::SignMessage {
                    wallet: *wallet,
                    message: message.clone(),
                    rule: AgreementRule::Threshold,
                },
                600,
            ),
            &key(10),
        )
    }

    fn proposal(job: &str, payload: &SigningPayload, si: &SignedIntent) -> Proposal {
        Proposal {
            job_id: job.into(),
            wallet_id: payload.wallet().0.to_vec(),
            payload: payload.to_canonical(),
            digest: payload.digest().to_vec(),
            intent: si.to_json(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proposals_are_checked_against_the_payload_and_the_logs() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(&dir.path().join("vault"));
        let share = ed25519_shares(Threshold::new(2, 2).unwrap(), &[0, 1])
            .await
            .remove(0);
        let wallet = share.wallet_id();
        st.save_share(&share).unwrap();
        adopt(&st, Some(wallet));
        let id = st.identity();
        let st = Arc::new(st);
        let decider = Decider::new(st.clone(), id.clone(), Outside::default());

        // A digest that is not the payload's: refused, with the digest the module computed.
        let m = message(wallet, b"pay 1", Some(1));
        let si = intent_for(&m);
        let mut p = proposal("j1", &m, &si);
        let honest = p.digest.clone();
        p.digest = vec![0; 32];
        let r = decider.decide(&p).await.unwrap_err();
        assert!(
            r.reason.contains("is not the digest of the payload"),
            "{}",
            r.reason
        );
        assert_eq!(r.computed_digest, honest);

        // The honest proposal: a signed approval of exactly that digest.
        let p = proposal("j1", &m, &si);
        let a = decider.decide(&p).await.unwrap();
        ApprovalStatement::verify(&a.statement, &a.signature, &id.public()).unwrap();
        assert_eq!(
            ApprovalStatement::from_bytes(&a.statement)
                .unwrap()
                .digest
                .to_vec(),
            p.digest
        );
        // Asked again: the same approval, verbatim.
        assert_eq!(decider.decide(&p).await.unwrap().signature, a.signature);
        // The same job id for another payload: refused.
        let m2 = message(wallet, b"pay 2", Some(9));
        let r = decider
            .decide(&proposal("j1", &m2, &intent_for(&m2)))
            .await
            .unwrap_err();
        assert!(
            r.reason.contains("already approved for another payload"),
            "{}",
            r.reason
        );
        // Another message than the intent's.
        let r = decider.decide(&proposal("j2", &m2, &si)).await.unwrap_err();
        assert!(r.reason.contains("not the one the intent"), "{}", r.reason);
        // The same nonce for another digest, under a new job: refused.
        let m3 = message(wallet, b"pay 3", Some(1));
        let r = decider
            .decide(&proposal("j3", &m3, &intent_for(&m3)))
            .await
            .unwrap_err();
        assert!(
            r.reason.contains("nonce 1") && r.reason.contains("another digest"),
            "{}",
            r.reason
        );
        // A wallet this module holds no share of: refused.
        let m4 = message(concord_tss::WalletId([9; 32]), b"x", None);
        let r = decider
            .decide(&proposal("j4", &m4, &intent_for(&m4)))
            .await
            .unwrap_err();
        assert!(r.reason.contains("holds no share"), "{}", r.reason);
        // The logs survive a restart: the nonce is still bound.
        drop(decider);
        let kek = crate::state::test_kek();
        let reopened = Arc::new(
            State::open("m1", &dir.path().join("vault"), &kek, Default::default()).unwrap(),
        );
        let decider = Decider::new(reopened.clone(), reopened.identity(), Outside::default());
        let r = decider
            .decide(&proposal("j5", &m3, &intent_for(&m3)))
            .await
            .unwrap_err();
        assert!(r.reason.contains("nonce 1"), "{}", r.reason);
        // The same intent for the same bytes under another job (a coordinator that lost the
        // first job) signs nothing new: approved again. For other bytes, refused.
        decider.decide(&proposal("j6", &m, &si)).await.unwrap();
        let mut other = si.clone();
        if let Action::SignMessage { message, .. } = &mut other.intent.action {
            *message = b"pay 4".to_vec();
        }
        let other = SignedIntent::new(other.intent, &key(10));
        let mut replay = other.clone();
        replay.intent.id = si.intent.id.clone();
        let replay = SignedIntent::new(replay.intent, &key(10));
        let r = decider
            .decide(&proposal("j7", &message(wallet, b"pay 4", None), &replay))
            .await
            .unwrap_err();
        assert!(r.reason.contains("already used"), "{}", r.reason);
    }

    /// The engine is pinned with the group: a coordinator that later describes the group with
    /// another engine (to make members run a protocol they did not agree to) is refused, an
    /// unknown engine is refused, and an old coordinator's empty engine means cggmp21.
    #[test]
    fn a_group_s_engine_is_pinned_at_setup_and_cannot_be_swapped() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(&dir.path().join("vault"));
        let me = st.identity();
        let others = [key(51), key(52)];
        for o in &others {
            st.pin_peer(o.public()).unwrap();
        }
        let group: Vec<concord_wire::rpc::Participant> = [me.as_ref(), &others[0], &others[1]]
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                let s = concord_wire::identity::SealingKey::generate(&mut OsRng);
                concord_wire::rpc::Participant {
                    index: i as u32,
                    module_id: format!("m{}", i + 1),
                    identity: k.public().as_bytes().to_vec(),
                    sealing_public_key: s.public().as_bytes().to_vec(),
                    sealing_key_signature: k.try_sign_sealing_key(&s.public()).unwrap().to_vec(),
                }
            })
            .collect();
        let start = |id: &str, kind: ProtocolKind, engine: &str| StartProtocol {
            job_id: "j".into(),
            kind: kind as i32,
            group_id: id.into(),
            threshold: 2,
            group: group.clone(),
            engine: engine.into(),
            ..Default::default()
        };
        let me = me.public();
        // Joining (group setup) pins the engine.
        let def = check_group(&st, &me, &start("g", ProtocolKind::AuxInfo, "dkls23")).unwrap();
        assert_eq!(def.engine, EcdsaEngine::Dkls23);
        assert_eq!(
            check_group(&st, &me, &start("g", ProtocolKind::Keygen, "dkls23"))
                .unwrap()
                .engine,
            EcdsaEngine::Dkls23
        );
        for (engine, kind) in [
            ("cggmp21", ProtocolKind::Keygen),
            ("cggmp21", ProtocolKind::AuxInfo),
            ("", ProtocolKind::Sign),
        ] {
            let e = check_group(&st, &me, &start("g", kind, engine)).unwrap_err();
            assert!(e.to_string().contains("differently"), "{e}");
        }
        let e = check_group(&st, &me, &start("h", ProtocolKind::AuxInfo, "gg18")).unwrap_err();
        assert!(e.to_string().contains("unknown ECDSA engine 'gg18'"), "{e}");
        // A coordinator from before engines could be chosen sends none: cggmp21.
        let def = check_group(&st, &me, &start("old", ProtocolKind::AuxInfo, "")).unwrap();
        assert_eq!(def.engine, EcdsaEngine::Cggmp21);
        assert_eq!(
            st.group("old").unwrap().unwrap().engine,
            EcdsaEngine::Cggmp21
        );
    }

    /// A group of three pinned members (this module is m1, index 0), an approval record of
    /// this module for job "job", and the other members' keys to make approvals with.
    struct SignSetup {
        _dir: tempfile::TempDir,
        st: State,
        group: GroupDef,
        others: Vec<IdentityKey>,
        record: crate::state::ApprovalRecord,
    }

    async fn sign_setup(rule: AgreementRule) -> SignSetup {
        let dir = tempfile::tempdir().unwrap();
        let st = state(&dir.path().join("vault"));
        let share = ed25519_shares(Threshold::new(2, 3).unwrap(), &[0, 1, 2])
            .await
            .remove(0);
        let wallet = share.wallet_id();
        st.save_share(&share).unwrap();
        adopt(&st, Some(wallet));
        let others = vec![key(41), key(42)];
        let sealing = |k: &dyn IdentitySigner| {
            let s = concord_wire::identity::SealingKey::generate(&mut OsRng);
            (s.public(), k.try_sign_sealing_key(&s.public()).unwrap())
        };
        let me = st.identity();
        let mut members = Vec::new();
        for (i, k) in [me.as_ref(), &others[0], &others[1]]
            .into_iter()
            .enumerate()
        {
            let (pk, _) = sealing(k);
            members.push(Member {
                index: i as u16,
                module_id: format!("m{}", i + 1),
                identity: k.public(),
                sealing_key: pk,
            });
        }
        let group = GroupDef {
            group_id: "g".into(),
            threshold: 2,
            members,
            engine: EcdsaEngine::DEFAULT,
        };
        let m = message(wallet, b"hello", None);
        let mut si = intent_for(&m);
        if let Action::SignMessage { rule: r, .. } = &mut si.intent.action {
            *r = rule;
        }
        let si = SignedIntent::new(si.intent, &key(10));
        let st = Arc::new(st);
        let decider = Decider::new(st.clone(), st.identity(), Outside::default());
        decider.decide(&proposal("job", &m, &si)).await.unwrap();
        drop(decider);
        let st = Arc::try_unwrap(st).unwrap();
        let record = st.approval("job").unwrap().unwrap();
        SignSetup {
            _dir: dir,
            st,
            group,
            others,
            record,
        }
    }

    /// An approval of `job` by member `index` (1 or 2), signed by `signer`.
    fn approval_by(
        s: &SignSetup,
        index: usize,
        digest: [u8; 32],
        signer: &IdentityKey,
    ) -> Approval {
        let st = ApprovalStatement {
            version: 2,
            job_id: "job".into(),
            module_id: format!("m{}", index + 1),
            wallet_id: s.record.wallet_id,
            digest,
            policy: s.record.policy,
            intent: s.record.intent.clone(),
            rule: s.record.rule,
            expires_at: concord_wire::authority::unix_now() + 60,
            checks: vec![],
        }
        .to_bytes();
        Approval {
            job_id: "job".into(),
            digest: digest.to_vec(),
            signature: ApprovalStatement::sign(&st, signer).to_vec(),
            statement: st,
            audit: None,
        }
    }

    fn own(s: &SignSetup) -> Approval {
        Approval {
            job_id: "job".into(),
            digest: s.record.digest.to_vec(),
            statement: s.record.statement.clone(),
            signature: s.record.signature.clone(),
            audit: None,
        }
    }

    fn start(
        s: &SignSetup,
        certificate: Vec<Approval>,
        parties: &[u16],
        attempt: u32,
    ) -> (StartProtocol, SessionId) {
        let session =
            concord_wire::authority::sign_session("job", attempt, parties, &s.record.digest);
        (
            StartProtocol {
                job_id: "job".into(),
                approved_job_id: "job".into(),
                session: session.0.to_vec(),
                certificate,
                attempt,
                ..Default::default()
            },
            session,
        )
    }

    fn refused(
        s: &SignSetup,
        sp: &StartProtocol,
        parties: &[u16],
        session: &SessionId,
        want: &str,
    ) {
        let e = check_sign_join(&s.st, &s.group, sp, &s.record, parties, session)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "wanted {want:?} in: {e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_module_joins_signing_only_with_a_certificate_that_meets_the_rule() {
        let s = sign_setup(AgreementRule::Threshold).await;
        let d = s.record.digest;
        let parties = [0u16, 1];
        // No certificate; only this module's own approval.
        let (sp, session) = start(&s, vec![], &parties, 1);
        refused(&s, &sp, &parties, &session, "holds 0");
        let (sp, session) = start(&s, vec![own(&s)], &parties, 1);
        refused(&s, &sp, &parties, &session, "holds 1 (m1)");
        // m2's approval of another digest.
        let (sp, session) = start(
            &s,
            vec![own(&s), approval_by(&s, 1, [9; 32], &s.others[0])],
            &parties,
            1,
        );
        refused(&s, &sp, &parties, &session, "for digest");
        // A forged approval: m2's statement signed by m3's key (or the coordinator's).
        let (sp, session) = start(
            &s,
            vec![own(&s), approval_by(&s, 1, d, &s.others[1])],
            &parties,
            1,
        );
        refused(
            &s,
            &sp,
            &parties,
            &session,
            "not signed by its pinned identity key",
        );
        // A genuine certificate, but a signer that did not approve.
        let cert = vec![own(&s), approval_by(&s, 1, d, &s.others[0])];
        let (sp, session) = start(&s, cert.clone(), &[0, 2], 1);
        refused(
            &s,
            &sp,
            &[0, 2],
            &session,
            "signer 2 of the run did not approve",
        );
        // A session id that is not derived from the run.
        let (mut sp, _) = start(&s, cert.clone(), &parties, 1);
        let other = SessionId([3; 32]);
        sp.session = other.0.to_vec();
        refused(
            &s,
            &sp,
            &parties,
            &other,
            "session id is not the one derived",
        );
        // The good one, once: the same session again is refused.
        let (sp, session) = start(&s, cert.clone(), &parties, 1);
        check_sign_join(&s.st, &s.group, &sp, &s.record, &parties, &session).unwrap();
        refused(&s, &sp, &parties, &session, "was run before");
        // The next attempt is a new session.
        let (sp, session) = start(&s, cert, &parties, 2);
        check_sign_join(&s.st, &s.group, &sp, &s.record, &parties, &session).unwrap();
    }

    /// A DKLs23 run started with its certificate to follow: the module's signature share
    /// waits for a certificate checked exactly like one at the start (the engine test shows
    /// nothing of round 3 leaves before): none, a partial or forged one, a signer that did
    /// not approve, or an approval released meanwhile gets no signature share. Until the
    /// certificate passes, the approval binds nothing (a refused job's nonce is released);
    /// once it passed, the approval stands.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_certificate_that_follows_the_start_is_checked_like_one_at_the_start() {
        let refused = |r: Result<(), Error>, want: &str| {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should say {want:?}");
        };
        // Started before this module decided: the run's first rounds use the proposal's
        // bytes; nothing of the approval is looked at yet.
        let early_start = |s: &SignSetup, parties: &[u16], attempt: u32| {
            let (mut sp, session) = start(s, vec![], parties, attempt);
            sp.certificate_follows = true;
            check_sign_start(&s.st, &sp, &s.record.digest, None, parties, &session).unwrap();
            session
        };
        let s = sign_setup(AgreementRule::Threshold).await;
        let d = s.record.digest;
        let parties = [0u16, 1];
        let session = early_start(&s, &parties, 1);
        let check = |parties: &[u16], cert: &[Approval]| {
            check_followed_certificate(&s.st, &s.group, "job", &d, parties, &session, cert)
        };
        refused(check(&parties, &[]), "holds 0");
        refused(check(&parties, &[own(&s)]), "holds 1 (m1)");
        refused(
            check(
                &parties,
                &[own(&s), approval_by(&s, 1, [9; 32], &s.others[0])],
            ),
            "for digest",
        );
        refused(
            check(&parties, &[own(&s), approval_by(&s, 1, d, &s.others[1])]),
            "not signed by its pinned identity key",
        );
        let cert = [own(&s), approval_by(&s, 1, d, &s.others[0])];
        refused(check(&[0, 2], &cert), "signer 2 of the run did not approve");
        refused(
            check_followed_certificate(&s.st, &s.group, "other-job", &d, &parties, &session, &cert),
            "holds no approval of job other-job",
        );
        // The run's rounds used other bytes than this module then approved (a proposal
        // swapped under it, or a start naming a digest of the coordinator's choosing): its
        // signature share never leaves, whatever the certificate says.
        refused(
            check_followed_certificate(&s.st, &s.group, "job", &[7; 32], &parties, &session, &cert),
            "approved other bytes",
        );
        // A run started once this module decided is held to its approval at once.
        let (mut sp, other) = start(&s, vec![], &parties, 2);
        sp.certificate_follows = true;
        refused(
            check_sign_start(&s.st, &sp, &[7; 32], Some(&s.record), &parties, &other),
            "approved other bytes",
        );
        // Rounds 1 and 2 ran, nothing of round 3: the coordinator gives the job up and the
        // approval is released; a certificate coming after that gets no signature share.
        assert!(s.st.release_approval("job").unwrap());
        refused(check(&parties, &cert), "was released");

        // The good certificate: the approval is bound for good before round 3, and the
        // session is never run again.
        let s = sign_setup(AgreementRule::Threshold).await;
        let session = early_start(&s, &parties, 1);
        let cert = [own(&s), approval_by(&s, 1, s.record.digest, &s.others[0])];
        check_followed_certificate(
            &s.st,
            &s.group,
            "job",
            &s.record.digest,
            &parties,
            &session,
            &cert,
        )
        .unwrap();
        refused(
            s.st.release_approval("job").map(drop),
            "already signed under",
        );
        let (mut sp, session) = start(&s, vec![], &parties, 1);
        sp.certificate_follows = true;
        refused(
            check_sign_start(
                &s.st,
                &sp,
                &s.record.digest,
                Some(&s.record),
                &parties,
                &session,
            ),
            "was run before",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rule_all_needs_every_member_and_a_policy_change_voids_approvals() {
        let s = sign_setup(AgreementRule::All).await;
        let d = s.record.digest;
        let parties = [0u16, 1];
        let two = vec![own(&s), approval_by(&s, 1, d, &s.others[0])];
        let (sp, session) = start(&s, two.clone(), &parties, 1);
        refused(
            &s,
            &sp,
            &parties,
            &session,
            "rule 'all' needs approvals from 3",
        );
        let mut three = two;
        three.push(approval_by(&s, 2, d, &s.others[1]));
        let (sp, session) = start(&s, three.clone(), &parties, 1);
        check_sign_join(&s.st, &s.group, &sp, &s.record, &parties, &session).unwrap();
        // The admins change the policy: approvals under the old one no longer sign.
        adopt(&s.st, Some(s.record.wallet_id));
        let (sp, session) = start(&s, three, &parties, 2);
        refused(&s, &sp, &parties, &session, "the policy changed since");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_import_needs_an_importer_s_fresh_intent_and_a_new_wallet() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(&dir.path().join("vault"));
        let existing = ed25519_shares(Threshold::new(2, 2).unwrap(), &[0, 1])
            .await
            .remove(0);
        st.save_share(&existing).unwrap();
        let pk = vec![2u8; 33];
        let wallet = concord_tss::WalletId::derive(Scheme::EcdsaSecp256k1, &pk);
        let import = |pk: Vec<u8>, who: u8| {
            SignedIntent::new(
                Intent::new(
                    Action::Import {
                        group: "g".into(),
                        scheme: Scheme::EcdsaSecp256k1,
                        public_key: pk,
                        importer: key(55).public(),
                    },
                    600,
                ),
                &key(who),
            )
        };
        let start = |si: &SignedIntent, w: concord_tss::WalletId| StartProtocol {
            group_id: "g".into(),
            scheme: "ecdsa-secp256k1".into(),
            wallet_id: w.0.to_vec(),
            intent: si.to_json(),
            importer: key(55).public().as_bytes().to_vec(),
            ..Default::default()
        };
        let check = |si: &SignedIntent, w| {
            check_import_intent(&st, &start(si, w), w).map_err(|e| e.to_string())
        };
        // No policy: nothing is imported.
        let e = check(&import(pk.clone(), 12), wallet).unwrap_err();
        assert!(e.contains("no policy yet"), "{e}");
        adopt(&st, None);
        // A trader cannot import; nor can a key the policy does not name.
        let e = check(&import(pk.clone(), 10), wallet).unwrap_err();
        assert!(e.contains("role 'importer'"), "{e}");
        let e = check(&import(pk.clone(), 77), wallet).unwrap_err();
        assert!(e.contains("not a principal"), "{e}");
        // Another key than the intent's.
        let e = check(&import(vec![3u8; 33], 12), wallet).unwrap_err();
        assert!(e.contains("another key"), "{e}");
        // Never over a wallet this module holds.
        let held = existing.wallet_id();
        let si = SignedIntent::new(
            Intent::new(
                Action::Import {
                    group: "g".into(),
                    scheme: Scheme::Ed25519,
                    public_key: existing.public_key(),
                    importer: key(55).public(),
                },
                600,
            ),
            &key(12),
        );
        let mut sp = start(&si, held);
        sp.scheme = "ed25519".into();
        let e = check_import_intent(&st, &sp, held).unwrap_err().to_string();
        assert!(e.contains("already holds wallet"), "{e}");
        assert!(
            st.save_share(&existing)
                .unwrap_err()
                .to_string()
                .contains("never overwritten")
        );
        // Shards sealed by another key than the importer's intent names (a coordinator
        // substituting shards of its own making).
        let si = import(pk.clone(), 12);
        let mut forged = start(&si, wallet);
        forged.importer = key(56).public().as_bytes().to_vec();
        let e = check_import_intent(&st, &forged, wallet)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sealed by another key"), "{e}");
        // An ES256 exchange key, even by the importer: refused (made by DKG only).
        let p256 = SignedIntent::new(
            Intent::new(
                Action::Import {
                    group: "g".into(),
                    scheme: Scheme::EcdsaP256,
                    public_key: pk.clone(),
                    importer: key(55).public(),
                },
                600,
            ),
            &key(12),
        );
        let p256_wallet = concord_tss::WalletId::derive(Scheme::EcdsaP256, &pk);
        let mut sp = start(&p256, p256_wallet);
        sp.scheme = "ecdsa-p256".into();
        let e = check_import_intent(&st, &sp, p256_wallet)
            .unwrap_err()
            .to_string();
        assert!(e.contains("made by DKG only"), "{e}");
        // The importer's intent: accepted, once.
        let id = check(&si, wallet).unwrap();
        st.record_intent(&id).unwrap();
        let e = check(&si, wallet).unwrap_err();
        assert!(e.contains("already used"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_presignature_can_be_taken_only_once() {
        use concord_tss::ecdsa::{self, AuxMaterial};
        let dir = tempfile::tempdir().unwrap();
        let st = state(&dir.path().join("vault"));
        let fixtures =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tss/tests/fixtures");
        let aux = |i: u16| {
            AuxMaterial::from_bytes(
                &std::fs::read(fixtures.join(format!("INSECURE-aux-n2-party{i}.bin"))).unwrap(),
            )
            .unwrap()
        };
        let t = Threshold::new(2, 2).unwrap();
        let mut handles = Vec::new();
        for ep in LocalNetwork::connect(&[0, 1]) {
            let a = aux(ep.index);
            handles.push(tokio::spawn(async move {
                let share = ecdsa::keygen(
                    SessionId([2; 32]),
                    t,
                    &a,
                    ep.incoming,
                    ep.outgoing,
                    &mut OsRng,
                )
                .await?;
                Ok::<_, concord_tss::TssError>(share)
            }));
        }
        let mut shares = Vec::new();
        for h in handles {
            shares.push(Arc::new(h.await.unwrap().unwrap()));
        }
        let mut handles = Vec::new();
        for ep in LocalNetwork::connect(&[0, 1]) {
            let share = shares[ep.index as usize].clone();
            handles.push(tokio::spawn(async move {
                ecdsa::presign(
                    SessionId([3; 32]),
                    &share,
                    &[0, 1],
                    ep.incoming,
                    ep.outgoing,
                    &mut OsRng,
                )
                .await
            }));
        }
        let presig = handles.remove(0).await.unwrap().unwrap();
        let (wallet, fp) = (presig.wallet_id(), presig.fingerprint());
        st.save_presignature(&presig).unwrap();
        assert_eq!(st.presignature_count(wallet).unwrap(), 1);
        assert!(st.take_presignature(wallet, &fp).unwrap().is_some());
        assert!(
            st.take_presignature(wallet, &fp).unwrap().is_none(),
            "never twice"
        );
        assert_eq!(st.presignature_count(wallet).unwrap(), 0);
        // Two sign runs racing for one presignature (a coordinator started both with one
        // fingerprint): at most one gets it, however the reads and deletes interleave.
        let st = Arc::new(st);
        for _ in 0..20 {
            st.save_presignature(&presig).unwrap();
            let takers: Vec<_> = (0..4)
                .map(|_| {
                    let st = st.clone();
                    std::thread::spawn(move || st.take_presignature(wallet, &fp).unwrap())
                })
                .collect();
            let got = takers
                .into_iter()
                .map(|t| t.join().is_ok_and(|p| p.is_some()))
                .filter(|got| *got)
                .count();
            assert_eq!(got, 1, "{got} sign runs got one presignature");
        }
    }
}
