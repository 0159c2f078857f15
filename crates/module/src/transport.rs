//! The threshold protocols' transport inside a module: every outgoing envelope is sealed to
//! its recipient (a broadcast is sealed once per other party) and sent up the coordinator
//! link; every relayed message is opened with this module's sealing key and checked against
//! the sender's pinned identity before the protocol sees it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use concord_tss::{Envelope, SessionId, TssError};
use concord_wire::identity::IdentitySigner;
use concord_wire::rpc::{ModuleToCoordinator, Relay, module_to_coordinator};
use futures::Sink;
use tokio::sync::mpsc;

use crate::state::GroupDef;

/// Where messages to the coordinator go (replaced on every reconnection).
pub(crate) type Uplink = Arc<Mutex<Option<mpsc::UnboundedSender<ModuleToCoordinator>>>>;

pub(crate) fn send_up(uplink: &Uplink, msg: module_to_coordinator::Msg) -> bool {
    let tx = uplink.lock().ok().and_then(|g| g.clone());
    match tx {
        Some(tx) => tx.send(ModuleToCoordinator { msg: Some(msg) }).is_ok(),
        None => false,
    }
}

/// Seals and sends a protocol party's envelopes.
pub(crate) struct SealedSink {
    pub uplink: Uplink,
    pub identity: Arc<dyn IdentitySigner>,
    pub group: Arc<GroupDef>,
    pub job_id: String,
    pub session: SessionId,
    pub me: u16,
    pub parties: Vec<u16>,
    /// A failpoint evaluated after each message sent (tests: a module dying mid-protocol).
    pub failpoint: Option<&'static str>,
}

impl SealedSink {
    fn send_one(&self, to: u16, plaintext: &[u8]) -> Result<(), TssError> {
        let member = self
            .group
            .members
            .get(usize::from(to))
            .ok_or_else(|| TssError::Transport(format!("no group member with index {to}")))?;
        let sealed = concord_wire::seal::seal(
            self.identity.as_ref(),
            self.me,
            &member.sealing_key,
            to,
            self.session.as_bytes(),
            plaintext,
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| TssError::Transport(e.to_string()))?;
        let relay = Relay {
            job_id: self.job_id.clone(),
            session: self.session.as_bytes().to_vec(),
            from_index: u32::from(self.me),
            to_index: u32::from(to),
            sealed,
        };
        if send_up(&self.uplink, module_to_coordinator::Msg::Relay(relay)) {
            Ok(())
        } else {
            Err(TssError::Transport("the coordinator link is down".into()))
        }
    }
}

impl Sink<Envelope> for SealedSink {
    type Error = TssError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), TssError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, env: Envelope) -> Result<(), TssError> {
        let bytes = env.encode();
        match env.recipient {
            Some(to) => self.send_one(to, &bytes)?,
            None => {
                for to in self.parties.iter().copied().filter(|p| *p != self.me) {
                    self.send_one(to, &bytes)?;
                }
            }
        }
        if let Some(name) = self.failpoint {
            crate::failpoint(name);
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), TssError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), TssError>> {
        Poll::Ready(Ok(()))
    }
}

/// The first authentication failure seen on a job's incoming relays, with the blamed index.
#[derive(Clone, Default)]
pub(crate) struct Blame(Arc<Mutex<Option<(String, u16)>>>);

impl Blame {
    fn set(&self, reason: String, party: u16) {
        if let Ok(mut g) = self.0.lock()
            && g.is_none()
        {
            *g = Some((reason, party));
        }
    }

    /// Takes the recorded failure.
    pub fn take(&self) -> Option<(String, u16)> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

/// Opens relayed messages for one protocol run and hands the envelopes on. Stops at the first
/// message that fails authentication (recording who sent it), which ends the protocol run.
pub(crate) fn open_relays(
    mut relays: mpsc::UnboundedReceiver<Relay>,
    sealing: Arc<concord_wire::identity::SealingKey>,
    group: Arc<GroupDef>,
    session: SessionId,
    me: u16,
    parties: Vec<u16>,
    blame: Blame,
) -> mpsc::UnboundedReceiver<Envelope> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(relay) = relays.recv().await {
            let from = u16::try_from(relay.from_index).unwrap_or(u16::MAX);
            let result = (|| {
                if !parties.contains(&from) || from == me {
                    return Err(format!(
                        "a message claims to come from index {}, not a party of this run",
                        relay.from_index
                    ));
                }
                if relay.session != session.as_bytes() || relay.to_index != u32::from(me) {
                    return Err(format!(
                        "a message from party {from} is for another session or recipient"
                    ));
                }
                let member = group
                    .members
                    .get(usize::from(from))
                    .ok_or_else(|| format!("no group member with index {from}"))?;
                let plain = concord_wire::seal::open(
                    &sealing,
                    me,
                    &member.identity,
                    from,
                    session.as_bytes(),
                    &relay.sealed,
                )
                .map_err(|e| {
                    format!(
                        "message from party {from} ({}) rejected: {e}",
                        member.module_id
                    )
                })?;
                let env = Envelope::decode(&plain)
                    .map_err(|e| format!("message from party {from}: {e}"))?;
                if env.sender != from || env.session != session {
                    return Err(format!(
                        "party {from}'s sealed message names another sender or session"
                    ));
                }
                Ok(env)
            })();
            match result {
                Ok(env) => {
                    if tx.send(env).is_err() {
                        break;
                    }
                }
                Err(reason) => {
                    tracing::warn!(%reason, "rejected a relayed message");
                    blame.set(reason, from);
                    break;
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Member;
    use concord_wire::identity::IdentityKey;
    use concord_wire::identity::SealingKey;

    #[tokio::test]
    async fn an_altered_relay_is_rejected_and_its_sender_named() {
        let mut rng = rand::rngs::OsRng;
        let (a, b) = (
            IdentityKey::generate(&mut rng),
            IdentityKey::generate(&mut rng),
        );
        let (a_seal, b_seal) = (
            SealingKey::generate(&mut rng),
            SealingKey::generate(&mut rng),
        );
        let group = GroupDef {
            group_id: "g".into(),
            threshold: 2,
            members: vec![
                Member {
                    index: 0,
                    module_id: "a".into(),
                    identity: a.public(),
                    sealing_key: a_seal.public(),
                },
                Member {
                    index: 1,
                    module_id: "b".into(),
                    identity: b.public(),
                    sealing_key: b_seal.public(),
                },
            ],
            engine: concord_types::EcdsaEngine::DEFAULT,
        };
        let session = SessionId([3; 32]);
        let env = Envelope {
            session,
            sender: 0,
            recipient: Some(1),
            body: vec![7; 40],
        };
        let b_public = b_seal.public();
        let seal = |bytes: &[u8]| {
            concord_wire::seal::seal(
                &a,
                0,
                &b_public,
                1,
                session.as_bytes(),
                bytes,
                &mut rand::rngs::OsRng,
            )
            .unwrap()
        };
        let relay = |sealed: Vec<u8>| Relay {
            job_id: "j".into(),
            session: session.as_bytes().to_vec(),
            from_index: 0,
            to_index: 1,
            sealed,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let blame = Blame::default();
        let mut out = open_relays(
            rx,
            Arc::new(b_seal),
            Arc::new(group),
            session,
            1,
            vec![0, 1],
            blame.clone(),
        );
        // An intact message goes through.
        tx.send(relay(seal(&env.encode()))).unwrap();
        assert_eq!(out.recv().await.unwrap(), env);
        // One altered ciphertext byte: rejected, the stream ends, the sender is named.
        let mut altered = seal(&env.encode());
        let mid = altered.len() / 2;
        altered[mid] ^= 1;
        tx.send(relay(altered)).unwrap();
        assert!(out.recv().await.is_none());
        let (reason, party) = blame.take().unwrap();
        assert_eq!(party, 0);
        assert!(reason.contains("party 0 (a)"), "{reason}");
    }
}
