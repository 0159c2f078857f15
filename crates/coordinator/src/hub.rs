//! The modules connected right now: one outgoing channel each, and the routing of what they
//! send to the jobs waiting for it. Relayed protocol messages are sealed end to end; the hub
//! only checks that a module sends as its own index in the job it names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use concord_wire::rpc::{
    Approval, CoordinatorToModule, ExchangeAnswer, ExchangeQuery, ExchangeSent, JobUpdate,
    MultisigSigned, PolicyStatus, Refusal, Relay, Released, coordinator_to_module,
};
use tokio::sync::{mpsc, oneshot};

/// Something a module told us about a job.
#[derive(Debug, Clone)]
pub enum ModuleEvent {
    /// Progress, result or failure of a protocol run.
    Update(JobUpdate),
    /// A signed approval.
    Approval(Approval),
    /// A refusal.
    Refusal(Refusal),
    /// The module's answer to an offered policy.
    Policy(PolicyStatus),
    /// The module's answer to a release.
    Released(Released),
    /// The module's own-key signatures of a multisig spend (or its refusal).
    MultisigSigned(MultisigSigned),
    /// The holder's answer to an `ExchangeSend` (the exchange's withdrawal id, or why not).
    ExchangeSent(ExchangeSent),
    /// The module's stream closed.
    Disconnected,
}

type Outbox = mpsc::Sender<Result<CoordinatorToModule, tonic::Status>>;

struct Link {
    outbox: Outbox,
    generation: u64,
}

#[derive(Default)]
struct Inner {
    links: HashMap<String, Link>,
    next_generation: u64,
    /// job id → who listens to that job's events.
    waiters: HashMap<String, mpsc::UnboundedSender<(String, ModuleEvent)>>,
    /// job id → (group index → module id) of the current protocol run.
    routes: HashMap<String, HashMap<u32, String>>,
    /// request id → (the module asked, who waits for its answer).
    queries: HashMap<String, (String, oneshot::Sender<ExchangeAnswer>)>,
}

/// Connected modules and job event routing. Cheap to clone.
#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<Mutex<Inner>>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock means a panic elsewhere; the routing data is still consistent
        // (every update is a single insert or remove), so keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a module's stream, replacing an older one. Returns its generation.
    pub fn connect(&self, module_id: &str, outbox: Outbox) -> u64 {
        let mut inner = self.lock();
        inner.next_generation += 1;
        let generation = inner.next_generation;
        inner
            .links
            .insert(module_id.to_owned(), Link { outbox, generation });
        metrics::gauge!("concord_coordinator_module_links").set(inner.links.len() as f64);
        metrics::gauge!("concord_coordinator_module_connected", "module" => module_id.to_owned())
            .set(1.0);
        generation
    }

    /// Unregisters a stream (if it is still the current one) and tells every job.
    pub fn disconnect(&self, module_id: &str, generation: u64) {
        let waiters: Vec<_> = {
            let mut inner = self.lock();
            match inner.links.get(module_id) {
                Some(l) if l.generation == generation => {
                    inner.links.remove(module_id);
                    metrics::gauge!("concord_coordinator_module_links")
                        .set(inner.links.len() as f64);
                    metrics::gauge!("concord_coordinator_module_connected", "module" => module_id.to_owned())
                        .set(0.0);
                }
                _ => return,
            }
            inner.waiters.values().cloned().collect()
        };
        for w in waiters {
            let _ = w.send((module_id.to_owned(), ModuleEvent::Disconnected));
        }
    }

    /// Whether the module has a stream open.
    pub fn is_connected(&self, module_id: &str) -> bool {
        self.lock().links.contains_key(module_id)
    }

    /// Sends a message down a module's stream.
    pub async fn send(&self, module_id: &str, msg: coordinator_to_module::Msg) -> bool {
        let outbox = self.lock().links.get(module_id).map(|l| l.outbox.clone());
        match outbox {
            Some(o) => o
                .send(Ok(CoordinatorToModule { msg: Some(msg) }))
                .await
                .is_ok(),
            None => false,
        }
    }

    /// Subscribes to a job's events (one subscriber per job).
    pub fn subscribe(&self, job_id: &str) -> mpsc::UnboundedReceiver<(String, ModuleEvent)> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().waiters.insert(job_id.to_owned(), tx);
        rx
    }

    /// Ends a job's subscription and routing.
    pub fn finish(&self, job_id: &str) {
        let mut inner = self.lock();
        inner.waiters.remove(job_id);
        inner.routes.remove(job_id);
    }

    /// Sets who is who in a job's current protocol run.
    pub fn set_route(&self, job_id: &str, route: HashMap<u32, String>) {
        self.lock().routes.insert(job_id.to_owned(), route);
    }

    /// Passes a module's event to the job's subscriber. Returns false if nobody listens.
    pub fn deliver(&self, module_id: &str, job_id: &str, event: ModuleEvent) -> bool {
        let waiter = self.lock().waiters.get(job_id).cloned();
        match waiter {
            Some(w) => w.send((module_id.to_owned(), event)).is_ok(),
            None => false,
        }
    }

    /// Asks one module a read-only exchange question through its own connector, waiting at
    /// most `timeout` for the answer.
    pub async fn query(
        &self,
        module_id: &str,
        mut query: ExchangeQuery,
        timeout: std::time::Duration,
    ) -> Result<ExchangeAnswer, String> {
        let id = uuid::Uuid::new_v4().to_string();
        query.request_id = id.clone();
        let (tx, rx) = oneshot::channel();
        self.lock()
            .queries
            .insert(id.clone(), (module_id.to_owned(), tx));
        if !self
            .send(module_id, coordinator_to_module::Msg::Query(query))
            .await
        {
            self.lock().queries.remove(&id);
            return Err(format!("module {module_id} is not connected"));
        }
        let answer = tokio::time::timeout(timeout, rx).await;
        self.lock().queries.remove(&id);
        match answer {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(_)) => Err(format!("module {module_id} went away before answering")),
            Err(_) => Err(format!(
                "module {module_id} did not answer within {} ms",
                timeout.as_millis()
            )),
        }
    }

    /// Passes a module's answer to whoever asked it (only the module asked may answer).
    pub fn answer(&self, module_id: &str, answer: ExchangeAnswer) {
        let mut inner = self.lock();
        match inner.queries.get(&answer.request_id) {
            Some((asked, _)) if asked == module_id => {
                if let Some((_, tx)) = inner.queries.remove(&answer.request_id) {
                    let _ = tx.send(answer);
                }
            }
            Some(_) => {
                tracing::warn!(module = %module_id, request = %answer.request_id, "an answer to a question asked of another module was dropped");
            }
            None => {}
        }
    }

    /// Routes a sealed relay message. The sender must be the module at `from_index` in the
    /// job's current run; anything else is dropped (and reported to the caller).
    pub async fn relay(&self, module_id: &str, relay: Relay) -> Result<(), String> {
        let target = {
            let inner = self.lock();
            let Some(route) = inner.routes.get(&relay.job_id) else {
                return Err(format!("job {} has no protocol running", relay.job_id));
            };
            if route.get(&relay.from_index).map(String::as_str) != Some(module_id) {
                return Err(format!(
                    "module {module_id} sent as index {} of job {}, which is not its index",
                    relay.from_index, relay.job_id
                ));
            }
            match route.get(&relay.to_index) {
                Some(t) => t.clone(),
                None => {
                    return Err(format!(
                        "job {} has no party with index {}",
                        relay.job_id, relay.to_index
                    ));
                }
            }
        };
        if self
            .send(&target, coordinator_to_module::Msg::Relay(relay))
            .await
        {
            Ok(())
        } else {
            Err(format!("module {target} is not connected"))
        }
    }
}
