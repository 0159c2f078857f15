//! An in-process network connecting parties by channels: the transport for tests,
//! benchmarks and single-machine tools. It can tamper with messages in flight, to test
//! how protocols react to a hostile relay.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Sink;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};

use crate::TssError;
use crate::envelope::Envelope;

/// What a tamper hook decides for one message in flight.
pub enum Tamper {
    /// Deliver the (possibly modified) message.
    Deliver,
    /// Drop it.
    Drop,
}

type Hook = Arc<dyn Fn(&mut Envelope, u16) -> Tamper + Send + Sync>;

/// One party's end of a [`LocalNetwork`].
pub struct Endpoint {
    /// Group index of this party.
    pub index: u16,
    /// Messages addressed to this party.
    pub incoming: UnboundedReceiver<Envelope>,
    /// Where this party sends.
    pub outgoing: LocalSink,
}

/// Sends a party's messages to their recipients.
#[derive(Clone)]
pub struct LocalSink {
    me: u16,
    peers: Arc<BTreeMap<u16, UnboundedSender<Envelope>>>,
    hook: Option<Hook>,
}

impl LocalSink {
    fn deliver(&self, to: u16, mut env: Envelope) -> Result<(), TssError> {
        if let Some(hook) = &self.hook
            && let Tamper::Drop = hook(&mut env, to)
        {
            return Ok(());
        }
        match self.peers.get(&to) {
            // A peer that already finished (or failed) has dropped its receiver; messages to
            // it are moot, as on a real network.
            Some(tx) => {
                let _ = tx.unbounded_send(env);
                Ok(())
            }
            None => Err(TssError::Transport(format!(
                "party {} addressed unknown party {to}",
                self.me
            ))),
        }
    }
}

impl Sink<Envelope> for LocalSink {
    type Error = TssError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), TssError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, env: Envelope) -> Result<(), TssError> {
        if env.sender != self.me {
            return Err(TssError::Transport(format!(
                "party {} tried to send as party {}",
                self.me, env.sender
            )));
        }
        match env.recipient {
            Some(to) => self.deliver(to, env),
            None => {
                for to in self.peers.keys().copied().filter(|p| *p != self.me) {
                    self.deliver(to, env.clone())?;
                }
                Ok(())
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), TssError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), TssError>> {
        Poll::Ready(Ok(()))
    }
}

/// A set of parties connected by in-memory channels.
pub struct LocalNetwork;

impl LocalNetwork {
    /// Connects the parties with the given group indices; returns one endpoint each, in order.
    pub fn connect(parties: &[u16]) -> Vec<Endpoint> {
        Self::connect_with(parties, None)
    }

    /// Like [`LocalNetwork::connect`], with a hook that sees (and may alter or drop) every
    /// message before delivery, along with its recipient.
    pub fn connect_tampered(
        parties: &[u16],
        hook: impl Fn(&mut Envelope, u16) -> Tamper + Send + Sync + 'static,
    ) -> Vec<Endpoint> {
        Self::connect_with(parties, Some(Arc::new(hook)))
    }

    fn connect_with(parties: &[u16], hook: Option<Hook>) -> Vec<Endpoint> {
        let mut senders = BTreeMap::new();
        let mut receivers = Vec::new();
        for p in parties {
            let (tx, rx) = unbounded();
            senders.insert(*p, tx);
            receivers.push((*p, rx));
        }
        let peers = Arc::new(senders);
        receivers
            .into_iter()
            .map(|(index, incoming)| Endpoint {
                index,
                incoming,
                outgoing: LocalSink {
                    me: index,
                    peers: peers.clone(),
                    hook: hook.clone(),
                },
            })
            .collect()
    }
}
