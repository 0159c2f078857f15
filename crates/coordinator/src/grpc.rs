//! The gRPC service modules connect to. A module is identified by the Ed25519 key of its
//! TLS client certificate, which must be enrolled; its Hello must name the module that key
//! was enrolled as, with the enrolled sealing key.

use std::pin::Pin;

use concord_wire::identity::PublicIdentity;
use concord_wire::rpc::module_link_server::ModuleLink;
use concord_wire::rpc::{
    CoordinatorToModule, ModuleToCoordinator, Welcome, coordinator_to_module, job_update,
    module_to_coordinator,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Response, Status, Streaming};

use crate::Coordinator;
use crate::hub::ModuleEvent;

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

#[tonic::async_trait]
impl ModuleLink for LinkService {
    type OpenStream = Outbound;

    async fn open(
        &self,
        request: Request<Streaming<ModuleToCoordinator>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs())
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let identity = concord_wire::tls::peer_identity(&certs)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let store = self.coordinator.store().clone();
        let module = store
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
        tracing::info!(module = %module.id, fingerprint = %PublicIdentity::try_from(module.identity.as_slice()).map(|k| k.fingerprint()).unwrap_or_default(), "module connected");
        let module_id = module.id.clone();
        tokio::spawn(async move {
            while let Some(item) = inbound.next().await {
                let Ok(msg) = item else { break };
                match msg.msg {
                    Some(module_to_coordinator::Msg::Relay(r)) => {
                        if let Err(e) = hub.relay(&module_id, r).await {
                            tracing::debug!(module = %module_id, error = %e, "relay dropped");
                        }
                    }
                    Some(module_to_coordinator::Msg::Update(u)) => {
                        let job = u.job_id.clone();
                        let is_progress = matches!(u.status, Some(job_update::Status::Progress(_)));
                        if !hub.deliver(&module_id, &job, ModuleEvent::Update(u)) && !is_progress {
                            tracing::debug!(module = %module_id, %job, "update for a job nobody waits for");
                        }
                    }
                    Some(module_to_coordinator::Msg::Approval(a)) => {
                        let job = a.job_id.clone();
                        hub.deliver(&module_id, &job, ModuleEvent::Approval(a));
                    }
                    Some(module_to_coordinator::Msg::Refusal(r)) => {
                        let job = r.job_id.clone();
                        hub.deliver(&module_id, &job, ModuleEvent::Refusal(r));
                    }
                    Some(module_to_coordinator::Msg::Answer(a)) => hub.answer(&module_id, a),
                    Some(module_to_coordinator::Msg::Released(r)) => {
                        let engine = engine.clone();
                        let module_id = module_id.clone();
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
                                    crate::records::EventKind::Release,
                                    None,
                                    Some(&detail),
                                    None,
                                )
                                .await;
                        });
                    }
                    Some(module_to_coordinator::Msg::PolicyStatus(st)) => {
                        let engine = engine.clone();
                        let module_id = module_id.clone();
                        tokio::spawn(async move {
                            if let Err(e) = engine.policy_status(&module_id, st).await {
                                tracing::warn!(module = %module_id, error = %e, "cannot record a policy status");
                            }
                        });
                    }
                    Some(module_to_coordinator::Msg::Hello(_)) | None => {}
                }
            }
            tracing::info!(module = %module_id, "module disconnected");
            hub.disconnect(&module_id, generation);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as Outbound))
    }
}
