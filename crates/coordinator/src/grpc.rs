//! The gRPC service modules connect to. A module is identified by the Ed25519 key of its
//! TLS client certificate, which must be enrolled; its Hello must name the module that key
//! was enrolled as, with the enrolled sealing key.

use std::pin::Pin;

use concord_wire::identity::PublicIdentity;
use concord_wire::rpc::module_link_server::ModuleLink;
use concord_wire::rpc::{
    CoordinatorToModule, Hello, ModuleToCoordinator, Welcome, coordinator_to_module, job_update,
    module_to_coordinator,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Response, Status, Streaming};

use crate::hub::{Hub, ModuleEvent};
use crate::records::{EventKind, ModuleRecord};
use crate::{Coordinator, Engine};

/// The `ModuleLink` service.
#[derive(Clone)]
pub struct LinkService {
    coordinator: Coordinator,
}

impl LinkService {
    /// Serves modules for this coordinator.
    pub fn new(coordinator: Coordinator) -> Self {
        LinkService { coordinator }
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<CoordinatorToModule, Status>> + Send>>;

impl LinkService {
    /// The enrolled module behind the TLS client certificate, and its Hello (which must
    /// name that module, its enrolled sealing key and our protocol version).
    async fn authenticate(
        &self,
        request: Request<Streaming<ModuleToCoordinator>>,
    ) -> Result<(ModuleRecord, Hello, Streaming<ModuleToCoordinator>), Status> {
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs())
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let identity = concord_wire::tls::peer_identity(&certs)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let module = self
            .coordinator
            .store()
            .module_by_identity(identity.as_bytes())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| Status::permission_denied("this identity key is not enrolled"))?;
        let mut inbound = request.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(ModuleToCoordinator {
                msg: Some(module_to_coordinator::Msg::Hello(h)),
            })) => h,
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        if hello.module_id != module.id
            || hello.sealing_public_key != module.sealing_key
            || hello.protocol_version != 1
        {
            return Err(Status::permission_denied(format!(
                "the Hello does not match enrolled module {} (id, sealing key or protocol version)",
                module.id
            )));
        }
        Ok((module, hello, inbound))
    }
}

/// Routes one message from a connected module: protocol relays and job events to the hub,
/// answers to their askers, release and policy reports to the store.
/// Relays are forwarded in order, before the next message is read.
async fn route(hub: &Hub, engine: &Engine, module_id: &str, msg: module_to_coordinator::Msg) {
    use module_to_coordinator::Msg;
    match msg {
        Msg::Relay(r) => {
            if let Err(e) = hub.relay(module_id, r).await {
                tracing::debug!(module = %module_id, error = %e, "relay dropped");
            }
        }
        Msg::Update(u) => {
            let job = u.job_id.clone();
            let is_progress = matches!(u.status, Some(job_update::Status::Progress(_)));
            if !hub.deliver(module_id, &job, ModuleEvent::Update(u)) && !is_progress {
                tracing::debug!(module = %module_id, %job, "update for a job nobody waits for");
            }
        }
        Msg::Approval(a) => {
            let job = a.job_id.clone();
            hub.deliver(module_id, &job, ModuleEvent::Approval(a));
        }
        Msg::Refusal(r) => {
            let job = r.job_id.clone();
            hub.deliver(module_id, &job, ModuleEvent::Refusal(r));
        }
        Msg::Answer(a) => hub.answer(module_id, a),
        Msg::MultisigSigned(m) => {
            let job = m.job_id.clone();
            if !hub.deliver(module_id, &job, ModuleEvent::MultisigSigned(m)) {
                tracing::debug!(module = %module_id, %job, "multisig signatures nobody waits for");
            }
        }
        Msg::ExchangeSent(m) => {
            let job = m.job_id.clone();
            if !hub.deliver(module_id, &job, ModuleEvent::ExchangeSent(m)) {
                tracing::warn!(module = %module_id, %job, "a held-credential answer nobody waits for");
            }
        }
        Msg::Released(r) => {
            let (engine, module_id) = (engine.clone(), module_id.to_owned());
            tokio::spawn(async move {
                let detail = if r.error.is_empty() {
                    format!("released: {}", r.released)
                } else {
                    format!("not released: {}", r.error)
                };
                let _ = engine
                    .store
                    .add_event(
                        &r.job_id,
                        Some(&module_id),
                        EventKind::Release,
                        None,
                        Some(&detail),
                        None,
                    )
                    .await;
            });
        }
        Msg::PolicyStatus(st) => {
            let (engine, module_id) = (engine.clone(), module_id.to_owned());
            tokio::spawn(async move {
                if let Err(e) = engine.policy_status(&module_id, st).await {
                    tracing::warn!(module = %module_id, error = %e, "cannot record a policy status");
                }
            });
        }
        Msg::Hello(_) => {}
    }
}

#[tonic::async_trait]
impl ModuleLink for LinkService {
    type OpenStream = Outbound;

    async fn open(
        &self,
        request: Request<Streaming<ModuleToCoordinator>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let (module, hello, mut inbound) = self.authenticate(request).await?;
        let (tx, rx) = mpsc::channel(1024);
        let hub = self.coordinator.hub().clone();
        let generation = hub.connect(&module.id, tx.clone());
        let _ = tx
            .send(Ok(CoordinatorToModule {
                msg: Some(coordinator_to_module::Msg::Welcome(Welcome {
                    protocol_version: 1,
                })),
            }))
            .await;
        let engine = self.coordinator.engine.clone();
        if let Err(e) = engine
            .module_connected(&module.id, &hello.policy_hash, hello.policy_version)
            .await
        {
            tracing::warn!(module = %module.id, error = %e, "cannot record the module's policy");
        }
        let fingerprint = PublicIdentity::try_from(module.identity.as_slice())
            .map(|k| k.fingerprint())
            .unwrap_or_default();
        tracing::info!(module = %module.id, %fingerprint, "module connected");
        let module_id = module.id;
        tokio::spawn(async move {
            while let Some(Ok(msg)) = inbound.next().await {
                if let Some(msg) = msg.msg {
                    route(&hub, &engine, &module_id, msg).await;
                }
            }
            tracing::info!(module = %module_id, "module disconnected");
            hub.disconnect(&module_id, generation);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as Outbound))
    }
}
