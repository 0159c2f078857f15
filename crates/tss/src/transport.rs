//! Transport glue: every protocol party is driven by a stream of incoming [`Envelope`]s and a
//! sink of outgoing ones, so the same code runs over in-process channels in tests and over
//! the network inside the module daemon.
//!
//! Two drivers sit on top of that pair:
//! - an adapter to `round_based` (cggmp21's own networking abstraction);
//! - [`RoundIo`], a small round collector for the protocols we drive by hand (FROST, DKLs23,
//!   the ECDSA online round), which buffers early messages and rejects duplicates.
//!
//! Both check, for every message, that it belongs to this session, comes from a participant
//! other than ourselves, is addressed to us (or broadcast), and decodes; a failure names the
//! sending party.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cggmp21::round_based::{self, MessageDestination, MessageType, MpcParty};
use concord_types::SessionId;
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde::{Serialize, de::DeserializeOwned};

use crate::TssError;
use crate::envelope::{Envelope, Tag};

/// The incoming half of a party's connection: envelopes addressed to it (or broadcast).
pub trait Incoming: Stream<Item = Envelope> + Unpin + Send {}
impl<T: Stream<Item = Envelope> + Unpin + Send> Incoming for T {}

/// The outgoing half of a party's connection.
pub trait Outgoing: Sink<Envelope, Error = TssError> + Unpin + Send {}
impl<T: Sink<Envelope, Error = TssError> + Unpin + Send> Outgoing for T {}

/// Who takes part in one protocol run, as group indices.
#[derive(Debug, Clone)]
pub(crate) struct Roster {
    pub session: SessionId,
    pub me: u16,
    /// Participants including `me`, in protocol order (position = protocol-local index).
    pub parties: Vec<u16>,
    pub tag: Tag,
}

impl Roster {
    /// Builds the roster of a signing session after checking the signer list: no party twice,
    /// every signer a group member, this party among them, and `exact` (ECDSA) or at least
    /// (FROST) `t` signers. Parties are put in ascending order, the order every signer uses.
    pub fn for_signers(
        session: SessionId,
        me: u16,
        threshold: concord_types::Threshold,
        signers: &[u16],
        exact: bool,
        tag: Tag,
    ) -> Result<Roster, TssError> {
        let t = threshold;
        let mut sorted = signers.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != signers.len() {
            return Err(TssError::params(format!(
                "signer list {signers:?} names a party twice"
            )));
        }
        if let Some(bad) = sorted.iter().find(|i| **i >= t.n()) {
            return Err(TssError::params(format!(
                "signer {bad} is not a member of this {t} group (indices run 0..{})",
                t.n()
            )));
        }
        let enough = if exact {
            sorted.len() == usize::from(t.t())
        } else {
            sorted.len() >= usize::from(t.t())
        };
        if !enough {
            return Err(TssError::params(format!(
                "{} for this {t} wallet needs {} {} signers, got {}",
                tag.name(),
                if exact { "exactly" } else { "at least" },
                t.t(),
                sorted.len()
            )));
        }
        if !sorted.contains(&me) {
            return Err(TssError::params(format!(
                "party {me} is not among the signers {sorted:?}"
            )));
        }
        Ok(Roster {
            session,
            me,
            parties: sorted,
            tag,
        })
    }

    /// Every participant but us.
    pub fn others(&self) -> Vec<u16> {
        self.parties
            .iter()
            .copied()
            .filter(|p| *p != self.me)
            .collect()
    }

    pub fn position(&self, party: u16) -> Option<usize> {
        self.parties.iter().position(|p| *p == party)
    }

    /// Checks addressing and strips the protocol tag, returning the payload.
    pub fn check<'a>(&self, env: &'a Envelope) -> Result<&'a [u8], TssError> {
        let party = env.sender;
        if env.session != self.session {
            return Err(TssError::WrongSession { party });
        }
        if party == self.me || self.position(party).is_none() {
            return Err(TssError::UnexpectedSender { party });
        }
        if let Some(recipient) = env.recipient
            && recipient != self.me
        {
            return Err(TssError::WrongRecipient { party, recipient });
        }
        match env.body.split_first() {
            Some((tag, rest)) if *tag == self.tag as u8 => Ok(rest),
            Some((tag, _)) => Err(TssError::MalformedMessage {
                party,
                reason: format!(
                    "expected a {} message (tag {}), got tag {tag}",
                    self.tag.name(),
                    self.tag as u8
                ),
            }),
            None => Err(TssError::MalformedMessage {
                party,
                reason: "empty message body".into(),
            }),
        }
    }

    pub fn envelope(&self, recipient: Option<u16>, payload: &[u8]) -> Envelope {
        let mut body = Vec::with_capacity(payload.len() + 1);
        body.push(self.tag as u8);
        body.extend_from_slice(payload);
        Envelope {
            session: self.session,
            sender: self.me,
            recipient,
            body,
        }
    }
}

pub(crate) fn cbor_encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing CBOR into a Vec cannot fail for the plain data types we serialize.
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        debug_assert!(false, "CBOR encoding failed: {e}");
    }
    out
}

pub(crate) fn cbor_decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| e.to_string())
}

/// Error type handed to `round_based`; the precise cause is kept in an [`ErrorSlot`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct AdapterError(String);

/// Where the round-based adapter leaves the precise error (with the blamed party) that it
/// could only report to cggmp21 as an opaque I/O error.
#[derive(Clone, Default)]
pub(crate) struct ErrorSlot(Arc<Mutex<Option<TssError>>>);

impl ErrorSlot {
    fn put(&self, err: TssError) -> AdapterError {
        let text = err.to_string();
        if let Ok(mut slot) = self.0.lock()
            && slot.is_none()
        {
            *slot = Some(err);
        }
        AdapterError(text)
    }

    /// Takes the recorded error, if the transport caused the failure.
    pub fn take(&self) -> Option<TssError> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

/// Wraps an envelope stream and sink as a `round_based` party whose protocol-local indices
/// are positions in `roster.parties`.
#[allow(clippy::type_complexity)]
pub(crate) fn round_based_party<M, I, O>(
    roster: Roster,
    incoming: I,
    outgoing: O,
) -> (
    MpcParty<
        M,
        (
            impl Stream<Item = Result<round_based::Incoming<M>, AdapterError>> + Unpin,
            impl Sink<round_based::Outgoing<M>, Error = AdapterError> + Unpin,
        ),
    >,
    ErrorSlot,
)
where
    M: Serialize + DeserializeOwned + Send + 'static,
    I: Incoming,
    O: Outgoing,
{
    let slot = ErrorSlot::default();
    let in_roster = roster.clone();
    let in_slot = slot.clone();
    let mut next_id: u64 = 0;
    let incoming = incoming.map(move |env| {
        let payload = in_roster.check(&env).map_err(|e| in_slot.put(e))?;
        let msg: M = cbor_decode(payload).map_err(|reason| {
            in_slot.put(TssError::MalformedMessage {
                party: env.sender,
                reason: format!("undecodable {} message: {reason}", in_roster.tag.name()),
            })
        })?;
        let sender = in_roster
            .position(env.sender)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| in_slot.put(TssError::UnexpectedSender { party: env.sender }))?;
        let id = next_id;
        next_id += 1;
        Ok(round_based::Incoming {
            id,
            sender,
            msg_type: if env.recipient.is_some() {
                MessageType::P2P
            } else {
                MessageType::Broadcast
            },
            msg,
        })
    });

    let out_roster = roster;
    let out_slot = slot.clone();
    let outgoing = outgoing
        .sink_map_err({
            let slot = slot.clone();
            move |e| slot.put(e)
        })
        .with(move |out: round_based::Outgoing<M>| {
            let result = match out.recipient {
                MessageDestination::AllParties => {
                    Ok(out_roster.envelope(None, &cbor_encode(&out.msg)))
                }
                MessageDestination::OneParty(pos) => match out_roster.parties.get(pos as usize) {
                    Some(idx) => Ok(out_roster.envelope(Some(*idx), &cbor_encode(&out.msg))),
                    None => Err(out_slot.put(TssError::params(format!(
                        "protocol addressed party position {pos}, outside the roster"
                    )))),
                },
            };
            futures::future::ready(result)
        });
    (MpcParty::connected((incoming, outgoing)), slot)
}

/// Collects protocol rounds for the hand-driven protocols. Body layout after the tag:
/// one round byte, then the round's payload.
pub(crate) struct RoundIo<'a, I, O> {
    roster: Roster,
    incoming: &'a mut I,
    outgoing: &'a mut O,
    /// Messages that arrived before their round was collected: (sender, p2p, round, payload).
    pending: Vec<(u16, bool, u8, Vec<u8>)>,
    done_rounds: Vec<u8>,
}

impl<'a, I: Incoming, O: Outgoing> RoundIo<'a, I, O> {
    pub fn new(roster: Roster, incoming: &'a mut I, outgoing: &'a mut O) -> Self {
        RoundIo {
            roster,
            incoming,
            outgoing,
            pending: Vec::new(),
            done_rounds: Vec::new(),
        }
    }

    /// Sends `payload` for `round` to one party, or to all other participants.
    pub async fn send(
        &mut self,
        to: Option<u16>,
        round: u8,
        payload: &[u8],
    ) -> Result<(), TssError> {
        let mut framed = Vec::with_capacity(payload.len() + 1);
        framed.push(round);
        framed.extend_from_slice(payload);
        let env = self.roster.envelope(to, &framed);
        self.outgoing.send(env).await
    }

    /// Waits for exactly one message of `round` from each of `from`.
    pub async fn collect(
        &mut self,
        round: u8,
        from: &[u16],
        p2p: bool,
    ) -> Result<BTreeMap<u16, Vec<u8>>, TssError> {
        let mut got: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        let pending = std::mem::take(&mut self.pending);
        for (sender, is_p2p, r, payload) in pending {
            if r == round {
                self.accept(&mut got, from, sender, is_p2p, round, p2p, payload)?;
            } else {
                self.pending.push((sender, is_p2p, r, payload));
            }
        }
        while got.len() < from.len() {
            let Some(env) = self.incoming.next().await else {
                let missing: Vec<u16> = from
                    .iter()
                    .copied()
                    .filter(|p| !got.contains_key(p))
                    .collect();
                return Err(TssError::Transport(format!(
                    "connection closed while waiting for round {round} from parties {missing:?}"
                )));
            };
            let payload = self.roster.check(&env)?;
            let Some((r, payload)) = payload.split_first() else {
                return Err(TssError::MalformedMessage {
                    party: env.sender,
                    reason: "message has no round number".into(),
                });
            };
            let is_p2p = env.recipient.is_some();
            if *r == round {
                self.accept(
                    &mut got,
                    from,
                    env.sender,
                    is_p2p,
                    round,
                    p2p,
                    payload.to_vec(),
                )?;
            } else if self.done_rounds.contains(r) {
                return Err(TssError::DuplicateMessage {
                    party: env.sender,
                    round: *r,
                });
            } else {
                self.pending
                    .push((env.sender, is_p2p, *r, payload.to_vec()));
            }
        }
        self.done_rounds.push(round);
        Ok(got)
    }

    #[allow(clippy::too_many_arguments)]
    fn accept(
        &self,
        got: &mut BTreeMap<u16, Vec<u8>>,
        from: &[u16],
        sender: u16,
        is_p2p: bool,
        round: u8,
        want_p2p: bool,
        payload: Vec<u8>,
    ) -> Result<(), TssError> {
        if !from.contains(&sender) {
            return Err(TssError::UnexpectedSender { party: sender });
        }
        if is_p2p != want_p2p {
            return Err(TssError::MalformedMessage {
                party: sender,
                reason: format!(
                    "round {round} message should be {} but was {}",
                    if want_p2p {
                        "point-to-point"
                    } else {
                        "broadcast"
                    },
                    if is_p2p {
                        "point-to-point"
                    } else {
                        "broadcast"
                    }
                ),
            });
        }
        if got.insert(sender, payload).is_some() {
            return Err(TssError::DuplicateMessage {
                party: sender,
                round,
            });
        }
        Ok(())
    }
}

/// What a message is, established by fully decoding its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageKind {
    /// The protocol, e.g. `"FROST Taproot signing"`.
    pub protocol: &'static str,
    /// The round, for the hand-driven protocols (cggmp21 messages carry theirs inside).
    pub round: Option<u8>,
}

/// Decodes an envelope's body completely, without running any protocol: the module daemon
/// uses it to reject junk early, and the snapshot tests to prove old messages still decode.
pub fn inspect(env: &Envelope) -> Result<MessageKind, TssError> {
    use crate::frost::{Ed25519, Taproot};
    let party = env.sender;
    let bad = |reason: String| TssError::MalformedMessage { party, reason };
    let (code, rest) = env
        .body
        .split_first()
        .ok_or_else(|| bad("empty message body".into()))?;
    let tag = Tag::from_u8(*code).ok_or_else(|| bad(format!("unknown protocol tag {code}")))?;
    let cbor = |r: Result<(), String>| {
        r.map_err(|e| bad(format!("undecodable {} message: {e}", tag.name())))
    };
    use crate::dkls::{
        P256, Secp256k1 as K1, inspect_keygen, inspect_refresh, inspect_repair, inspect_sign,
    };
    let cbor_bad = |e: String| bad(format!("undecodable {} message: {e}", tag.name()));
    type Sha = sha2::Sha256;
    type L = cggmp21::security_level::SecurityLevel128;
    type E = cggmp21::supported_curves::Secp256k1;
    let round = match tag {
        Tag::EcdsaKeygen => {
            cbor(cbor_decode::<cggmp21::keygen::ThresholdMsg<E, L, Sha>>(rest).map(drop))?;
            None
        }
        Tag::EcdsaAuxInfo => {
            cbor(cbor_decode::<cggmp21::key_refresh::msg::aux_only::Msg<Sha, L>>(rest).map(drop))?;
            None
        }
        Tag::EcdsaSigning => {
            cbor(cbor_decode::<cggmp21::signing::msg::Msg<E, Sha>>(rest).map(drop))?;
            None
        }
        Tag::EcdsaOnline => {
            let (round, payload) = rest
                .split_first()
                .ok_or_else(|| bad("no round number".into()))?;
            cbor(cbor_decode::<crate::ecdsa::EcdsaPartialSignature>(payload).map(drop))?;
            Some(*round)
        }
        // A refresh has the DKG's messages (its round-1 commitments leave out the zero term).
        Tag::Ed25519Dkg | Tag::Ed25519Refresh => {
            Some(inspect_frost_dkg::<Ed25519>(rest).map_err(bad)?)
        }
        Tag::TaprootDkg | Tag::TaprootRefresh => {
            Some(inspect_frost_dkg::<Taproot>(rest).map_err(bad)?)
        }
        Tag::Ed25519Repair => Some(inspect_frost_repair::<Ed25519>(rest).map_err(bad)?),
        Tag::TaprootRepair => Some(inspect_frost_repair::<Taproot>(rest).map_err(bad)?),
        Tag::Ed25519Sign => Some(inspect_frost_sign::<Ed25519>(rest).map_err(bad)?),
        Tag::TaprootSign => Some(inspect_frost_sign::<Taproot>(rest).map_err(bad)?),
        Tag::DklsKeygen => Some(inspect_keygen::<K1>(rest).map_err(&cbor_bad)?),
        Tag::DklsSign => Some(inspect_sign::<K1>(rest).map_err(&cbor_bad)?),
        Tag::DklsRefresh => Some(inspect_refresh::<K1>(rest).map_err(&cbor_bad)?),
        Tag::DklsRepair => Some(inspect_repair::<K1>(rest).map_err(&cbor_bad)?),
        Tag::DklsP256Keygen => Some(inspect_keygen::<P256>(rest).map_err(&cbor_bad)?),
        Tag::DklsP256Sign => Some(inspect_sign::<P256>(rest).map_err(&cbor_bad)?),
        Tag::DklsP256Refresh => Some(inspect_refresh::<P256>(rest).map_err(&cbor_bad)?),
        Tag::DklsP256Repair => Some(inspect_repair::<P256>(rest).map_err(&cbor_bad)?),
    };
    Ok(MessageKind {
        protocol: tag.name(),
        round,
    })
}

fn inspect_frost_dkg<C: crate::frost::FrostSuite>(body: &[u8]) -> Result<u8, String> {
    use frost_core::keys::dkg::{round1, round2};
    let (round, payload) = body.split_first().ok_or("no round number")?;
    match round {
        1 => round1::Package::<C>::deserialize(payload)
            .map(drop)
            .map_err(|e| e.to_string())?,
        2 if payload.len() == 32 => {}
        2 => return Err(format!("echo must be 32 bytes, got {}", payload.len())),
        3 => round2::Package::<C>::deserialize(payload)
            .map(drop)
            .map_err(|e| e.to_string())?,
        r => return Err(format!("no DKG round {r}")),
    }
    Ok(*round)
}

/// A FROST repair body: round 1 a delta, round 2 a sigma with the public state, rounds 3 to
/// 5 the refresh that follows (shaped like a DKG's rounds 1 to 3).
fn inspect_frost_repair<C: crate::frost::FrostSuite>(body: &[u8]) -> Result<u8, String> {
    let (round, payload) = body.split_first().ok_or("no round number")?;
    match round {
        1 => frost_core::keys::repairable::Delta::<C>::deserialize(payload)
            .map(drop)
            .map_err(|e| e.to_string())?,
        2 => crate::frost::inspect_repair_sigma::<C>(payload)?,
        3..=5 => {
            let mut shifted = vec![round - 2];
            shifted.extend_from_slice(payload);
            inspect_frost_dkg::<C>(&shifted)?;
        }
        r => return Err(format!("no repair round {r}")),
    }
    Ok(*round)
}

fn inspect_frost_sign<C: crate::frost::FrostSuite>(body: &[u8]) -> Result<u8, String> {
    let (round, payload) = body.split_first().ok_or("no round number")?;
    match round {
        1 => frost_core::round1::SigningCommitments::<C>::deserialize(payload)
            .map(drop)
            .map_err(|e| e.to_string())?,
        2 if payload.len() > 32 => {
            frost_core::round2::SignatureShare::<C>::deserialize(&payload[32..])
                .map(drop)
                .map_err(|e| e.to_string())?
        }
        2 => return Err("signature share message is truncated".into()),
        r => return Err(format!("no signing round {r}")),
    }
    Ok(*round)
}
