//! Threshold ECDSA on secp256k1 with DKLs23 (`dkls23 =0.6.2`, by 0xCarbon): oblivious
//! transfer instead of Paillier, so there is no signer-group setup (no safe primes, no
//! auxiliary material) and signing is three rounds of cheap curve and hash work.
//!
//! [`keygen`] runs the library's distributed key generation; besides the key share it sets up
//! a zero-sharing seed and a two-party multiplication (base OT) state with every other member.
//! That pairwise state is reused by every later signature, so it is part of [`DklsKeyShare`]
//! and of its stored encoding: a restarted module signs without redoing any setup.
//! [`sign`] takes exactly `t` signers and returns the same [`RecoverableSignature`] as the
//! cggmp21 engine: low `s`, recovery id, verified with `k256` before it is returned.
//! [`import_secret_key`] (feature `spof-key-import`) splits an existing key.
//!
//! The library's rounds are wired to [`Envelope`](crate::Envelope)s by the crate's round
//! collector (see [`transport`](crate::transport); body: protocol tag, round byte, CBOR of
//! the library's own message type):
//!
//! | protocol | round | kind | content |
//! |---|---|---|---|
//! | DKG | 1 | point-to-point | the recipient's evaluation of our random polynomial (secret) |
//! | DKG | 2 | broadcast | commitment to our discrete-log proof; commitment to our chain-code part |
//! | DKG | 3 | point-to-point | commitment to our zero-sharing seed for the pair |
//! | DKG | 4 | broadcast | the proof and chain-code part opened; a hash of every round-2 broadcast we received (echo) |
//! | DKG | 5 | point-to-point | the zero-sharing seed opened; base-OT initialisation of the pair's multiplications |
//! | signing | 1 | point-to-point | commitment to our nonce point; OT-extension message |
//! | signing | 2 | point-to-point | opening, consistency values, multiplication output |
//! | signing | 3 | broadcast | our shares `u`, `w` of the signature's denominator and numerator |
//!
//! The round-4 echo is the reliable-broadcast check: a party that sent different round-2
//! broadcasts to different members is caught as an [`TssError::InconsistentBroadcast`], and
//! everything opened in round 4 is bound to round 2 by the commitments.
//!
//! **Abort rules.** The library classifies each abort. A failed check of the pairwise
//! multiplication during signing means the counterparty cheated in a way that leaks
//! information about the reused OT state: it comes out as [`TssError::CheatingParty`], and that
//! party must never sign with this key again ([`DklsKeyShare::exclude`] records it in the
//! share, and [`sign`] then refuses any signer set that includes it). Every other abort is
//! recoverable ([`TssError::Protocol`], naming the party the library names, if any); the
//! signers may retry with a fresh session id.
//!
//! **Randomness.** dkls23 draws every random value from its own OS-seeded thread generator
//! (`rand::rng()`); it accepts none from the caller, so [`keygen`] and [`sign`] take no RNG.
//!
//! **Secrets.** The library zeroizes its party state on drop; [`DklsKeyShare`] prints
//! `<redacted>` in `Debug`, encodes into a zeroizing buffer and loads only through
//! [`crate::UncheckedKeyShare::validate`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use concord_types::{DerivationPath, Scheme, SessionId, Threshold, WalletId};
use dkls23::protocols::dkg::{
    BroadcastDerivationPhase2to4, BroadcastDerivationPhase3to4, ProofCommitment,
    TransmitInitMulPhase3to4, TransmitInitZeroSharePhase2to4, TransmitInitZeroSharePhase3to4,
};
use dkls23::protocols::signing::{Broadcast3to4, SignData, TransmitPhase1to2, TransmitPhase2to3};
use dkls23::protocols::{Abort, AbortKind, AbortReason, Parameters, PartyIndex};
use dkls23::{DkgSession, SignSession};
use k256_dkls::elliptic_curve::group::{Curve as _, CurveAffine, Group as _};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::TssError;
use crate::ecdsa::RecoverableSignature;
use crate::envelope::Tag;
use crate::transport::{Incoming, Outgoing, Roster, RoundIo, cbor_decode, cbor_encode};

/// secp256k1, as dkls23 names it (`k256` 0.14): chain wallets.
pub type Secp256k1 = k256_dkls::Secp256k1;
/// A DKLs23 key share on secp256k1.
pub type DklsKeyShare = DklsShare<Secp256k1>;
/// A DKLs23 key share on NIST P-256.
pub type DklsP256Share = DklsShare<P256>;

/// NIST P-256, as dkls23 names it (`p256` 0.14): ES256 exchange API keys.
pub type P256 = p256_dkls::NistP256;
pub(crate) type Party<C> = dkls23::protocols::Party<C>;
pub(crate) type PublicKeyPackage<C> = dkls23::protocols::PublicKeyPackage<C>;

/// The envelope tags of one curve's protocols.
#[derive(Debug, Clone, Copy)]
pub struct CurveTags {
    /// Key generation.
    pub keygen: Tag,
    /// Signing.
    pub sign: Tag,
    /// Proactive refresh.
    pub refresh: Tag,
    /// Share repair.
    pub repair: Tag,
}

/// A curve the DKLs23 engine runs on: what differs between secp256k1 and P-256 (the scheme,
/// the envelope tags, and the independent verifier a signature passes before it leaves).
pub trait DklsEngineCurve:
    dkls23::curve::DklsCurve<
        Scalar: Serialize + DeserializeOwned + Zeroize + Send + Sync,
        AffinePoint: Serialize + DeserializeOwned + Send + Sync,
    >
{
    /// The scheme of this curve's keys.
    const SCHEME: Scheme;
    /// This curve's envelope tags.
    const TAGS: CurveTags;
    /// The signature the engine returns.
    type Signature;
    /// Normalises `s` to the lower half and verifies the signature with an implementation
    /// independent of the protocol's (`k256` / `p256`) before anything leaves the engine.
    fn finish(
        sig: &dkls23::EcdsaSignature,
        public_key: &[u8; 33],
        digest: &[u8; 32],
    ) -> Result<Self::Signature, TssError>;
}

impl DklsEngineCurve for Secp256k1 {
    const SCHEME: Scheme = Scheme::EcdsaSecp256k1;
    const TAGS: CurveTags = CurveTags {
        keygen: Tag::DklsKeygen,
        sign: Tag::DklsSign,
        refresh: Tag::DklsRefresh,
        repair: Tag::DklsRepair,
    };
    type Signature = RecoverableSignature;
    fn finish(
        sig: &dkls23::EcdsaSignature,
        public_key: &[u8; 33],
        digest: &[u8; 32],
    ) -> Result<RecoverableSignature, TssError> {
        finish_secp256k1(sig, public_key, digest)
    }
}

impl DklsEngineCurve for P256 {
    const SCHEME: Scheme = Scheme::EcdsaP256;
    const TAGS: CurveTags = CurveTags {
        keygen: Tag::DklsP256Keygen,
        sign: Tag::DklsP256Sign,
        refresh: Tag::DklsP256Refresh,
        repair: Tag::DklsP256Repair,
    };
    type Signature = [u8; 64];
    fn finish(
        sig: &dkls23::EcdsaSignature,
        public_key: &[u8; 33],
        digest: &[u8; 32],
    ) -> Result<[u8; 64], TssError> {
        finish_p256(sig, public_key, digest)
    }
}

/// The library's 1-based party index of group index `index`.
fn party_index(index: u16) -> Result<PartyIndex, TssError> {
    index
        .checked_add(1)
        .and_then(|i| u8::try_from(i).ok())
        .and_then(|i| PartyIndex::new(i).ok())
        .ok_or_else(|| {
            TssError::params(format!(
                "party index {index} is too large for DKLs23 (at most 254)"
            ))
        })
}

/// The group index of the library's party index.
fn group_index(party: PartyIndex) -> u16 {
    u16::from(party.as_u8()).saturating_sub(1)
}

fn parameters(threshold: Threshold) -> Result<Parameters, TssError> {
    let (t, n) = (threshold.t(), threshold.n());
    let too_big = || {
        TssError::params(format!(
            "DKLs23 supports groups of at most 255 parties, not {threshold}"
        ))
    };
    let t = u8::try_from(t).map_err(|_| too_big())?;
    let n = u8::try_from(n).map_err(|_| too_big())?;
    Parameters::new(t, n).map_err(|e| TssError::params(format!("threshold {threshold}: {e}")))
}

/// The party an abort reason names, if the library attributes the failure to one.
fn named_party(reason: &AbortReason) -> Option<PartyIndex> {
    match reason {
        AbortReason::UnexpectedSender { sender } | AbortReason::DuplicateSender { sender } => {
            Some(*sender)
        }
        AbortReason::MissingMessageFromParty { party }
        | AbortReason::MissingCommittedPoint { party }
        | AbortReason::ChainCodeCommitmentFailed { party } => Some(*party),
        AbortReason::SessionBindingMismatch { counterparty }
        | AbortReason::ProofVerificationFailed { counterparty }
        | AbortReason::CommitmentMismatch { counterparty }
        | AbortReason::TrivialInstancePoint { counterparty }
        | AbortReason::OtConsistencyCheckFailed { counterparty }
        | AbortReason::MultiplicationVerificationFailed { counterparty, .. }
        | AbortReason::GammaUInconsistency { counterparty }
        | AbortReason::ZeroShareDecommitFailed { counterparty } => Some(*counterparty),
        // Input validation, our own state, or failures nobody in particular is blamed for.
        _ => None,
    }
}

/// Turns a library abort into our error, keeping its blame.
fn abort_error<C: DklsEngineCurve>(abort: Abort) -> TssError {
    let detail = abort.description();
    match abort.kind {
        AbortKind::BanCounterparty(party) => TssError::CheatingParty {
            scheme: C::SCHEME,
            party: group_index(party),
            detail,
        },
        AbortKind::Recoverable => {
            let culprits: Vec<u16> = named_party(&abort.reason)
                .filter(|p| *p != abort.index)
                .map(group_index)
                .into_iter()
                .collect();
            match abort.reason {
                AbortReason::SignatureVerificationFailed => TssError::InvalidSignature {
                    scheme: C::SCHEME,
                    culprits,
                },
                _ => TssError::Protocol {
                    scheme: C::SCHEME,
                    culprits,
                    detail,
                },
            }
        }
    }
}

fn decode<T: DeserializeOwned>(party: u16, what: &str, bytes: &[u8]) -> Result<T, TssError> {
    cbor_decode(bytes).map_err(|reason| TssError::MalformedMessage {
        party,
        reason: format!("undecodable DKLs23 {what}: {reason}"),
    })
}

/// Fails unless a message's own sender field names the party the envelope came from.
fn check_sender(party: u16, claimed: PartyIndex, what: &str) -> Result<(), TssError> {
    if group_index(claimed) != party {
        return Err(TssError::MalformedMessage {
            party,
            reason: format!(
                "its {what} claims to come from party {}",
                group_index(claimed)
            ),
        });
    }
    Ok(())
}

/// Groups outgoing point-to-point messages by recipient (group index).
fn by_recipient<T>(messages: Vec<T>, recipient: impl Fn(&T) -> PartyIndex) -> BTreeMap<u16, T> {
    messages
        .into_iter()
        .map(|m| (group_index(recipient(&m)), m))
        .collect()
}

fn missing_message(party: u16, round: u8) -> TssError {
    TssError::params(format!(
        "the DKLs23 library produced no round-{round} message for party {party}"
    ))
}

/// One party's share of a DKLs23 threshold ECDSA key: its Shamir share, the group's public
/// verifying shares, and the pairwise zero-sharing seeds and OT state set up by DKG (reused by
/// every signature). Secret.
pub struct DklsShare<C: DklsEngineCurve> {
    pub(crate) index: u16,
    pub(crate) threshold: Threshold,
    pub(crate) party: Party<C>,
    pub(crate) public: PublicKeyPackage<C>,
    /// Parties caught cheating in a way that forbids ever signing with them again.
    pub(crate) excluded: BTreeSet<u16>,
}

impl<C: DklsEngineCurve> fmt::Debug for DklsShare<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DklsShare")
            .field("scheme", &C::SCHEME)
            .field("index", &self.index)
            .field("threshold", &self.threshold)
            .field("public_key", &hex::encode(self.public_key()))
            .field("excluded", &self.excluded)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl<C: DklsEngineCurve> DklsShare<C> {
    /// This party's index in the group.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The signing threshold.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// The group public key, SEC1 compressed (33 bytes).
    pub fn public_key(&self) -> [u8; 33] {
        sec1::<C>(&self.party.pk)
    }

    /// The wallet this share belongs to (the same as a cggmp21 share of the same key).
    pub fn wallet_id(&self) -> WalletId {
        WalletId::derive(C::SCHEME, &self.public_key())
    }

    /// Parties this share refuses to sign with, because they were caught cheating.
    pub fn excluded(&self) -> &BTreeSet<u16> {
        &self.excluded
    }

    /// A commitment to the group's public state: the group key, every member's public
    /// verifying share, the threshold and the chain code. The same at every member of one
    /// sharing; it changes with every refresh (the verifying shares move), so members compare
    /// it to agree they hold shares of the same refresh.
    pub fn public_commitment(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"concord/dkls23/public/v1\0");
        h.update(self.public_key());
        h.update(self.threshold.t().to_be_bytes());
        h.update(self.threshold.n().to_be_bytes());
        h.update(self.chain_code());
        for i in 0..self.threshold.n() {
            let share = party_index(i)
                .ok()
                .and_then(|p| self.public.verifying_share(p))
                .map(sec1::<C>)
                .unwrap_or([0; 33]);
            h.update(share);
        }
        h.finalize().into()
    }

    /// The BIP-32 chain code agreed at DKG (or given at import), the same in every member's
    /// share. Public, but with the public key it reveals every non-hardened child key.
    pub fn chain_code(&self) -> [u8; 32] {
        *self.party.chain_code()
    }

    /// This member's share of the non-hardened BIP-32 child key at `path`, derived locally
    /// from public data (the chain code and the group key): every member derives its own and
    /// together they sign for the child key, with the same pairwise OT state. The child's
    /// public key is BIP-32's public derivation of [`DklsKeyShare::public_key`]; exclusions
    /// carry over.
    pub fn derive(&self, path: &DerivationPath) -> Result<DklsShare<C>, TssError> {
        let bad = |e: dkls23::protocols::derivation::ErrorDeriv| {
            TssError::params(format!("derivation of {path}: {}", e.description))
        };
        let mut party = self
            .party
            .derive_from_path("m", |_| String::new())
            .map_err(bad)?;
        let mut public = self.public.clone();
        for &child in path.children() {
            let chain_code = *party.chain_code();
            public = public.derive_child(&chain_code, child).map_err(bad)?;
            party = party.derive_child(child, |_| String::new()).map_err(bad)?;
        }
        DklsShare {
            index: self.index,
            threshold: self.threshold,
            party,
            public,
            excluded: self.excluded.clone(),
        }
        .validate()
    }

    /// Records that `party` was caught cheating ([`TssError::CheatingParty`]): from now on
    /// [`sign`] refuses every signer set that includes it. The caller persists the share.
    pub fn exclude(&mut self, party: u16) -> Result<(), TssError> {
        if party >= self.threshold.n() || party == self.index {
            return Err(TssError::params(format!(
                "party {party} is not another member of this {} group",
                self.threshold
            )));
        }
        self.excluded.insert(party);
        Ok(())
    }

    /// Checks the share's internal consistency: parameters, indices, the secret share against
    /// its public verifying share, the group key, and that the pairwise state with every other
    /// member is present and well formed (the library's own dimension checks).
    pub(crate) fn validate(self) -> Result<Self, TssError> {
        let bad = |reason: String| TssError::invalid_state("DKLs23 key share", reason);
        let t = self.threshold;
        let params = parameters(t).map_err(|e| bad(e.to_string()))?;
        let p = &self.party;
        if (p.parameters.threshold, p.parameters.share_count)
            != (params.threshold, params.share_count)
            || (self.public.threshold(), self.public.share_count())
                != (params.threshold, params.share_count)
        {
            return Err(bad(format!("the library state does not say threshold {t}")));
        }
        if self.index >= t.n() {
            return Err(bad(format!(
                "party index {} outside a {t} group",
                self.index
            )));
        }
        let me = party_index(self.index).map_err(|e| bad(e.to_string()))?;
        if p.party_index != me {
            return Err(bad(format!(
                "the library state is party {}'s, not party {}'s",
                group_index(p.party_index),
                self.index
            )));
        }
        let identity = <C::AffinePoint as CurveAffine>::identity();
        if p.pk == identity || *self.public.verifying_key() != p.pk {
            return Err(bad(
                "the group key is missing or differs from the public key package".into(),
            ));
        }
        let own_public = (C::ProjectivePoint::generator() * p.poly_point).to_affine();
        if self.public.verifying_share(me) != Some(&own_public) {
            return Err(bad(
                "the secret share does not match its public verifying share".into(),
            ));
        }
        if p.derivation_data.pk != p.pk || p.derivation_data.poly_point != p.poly_point {
            return Err(bad(
                "the BIP-32 derivation data names another key or share".into()
            ));
        }
        let others: Vec<u16> = (0..t.n()).filter(|i| *i != self.index).collect();
        if p.mul_senders.len() != others.len()
            || p.mul_receivers.len() != others.len()
            || p.zero_share.seeds.len() != others.len()
        {
            return Err(bad(format!(
                "the pairwise state covers {} / {} / {} parties, the group has {} others",
                p.mul_senders.len(),
                p.mul_receivers.len(),
                p.zero_share.seeds.len(),
                others.len()
            )));
        }
        for other in others {
            let j = party_index(other).map_err(|e| bad(e.to_string()))?;
            if self.public.verifying_share(j).is_none() {
                return Err(bad(format!("no verifying share for party {other}")));
            }
            let sender = p.mul_senders.get(&j);
            let receiver = p.mul_receivers.get(&j);
            match (sender, receiver) {
                (Some(s), Some(r)) => {
                    s.check_state()
                        .map_err(|e| bad(format!("pair with party {other}: {}", e.description)))?;
                    r.check_state(None)
                        .map_err(|e| bad(format!("pair with party {other}: {}", e.description)))?;
                }
                _ => return Err(bad(format!("no multiplication state for party {other}"))),
            }
            if !p.zero_share.seeds.iter().any(|s| s.index_counterparty == j) {
                return Err(bad(format!("no zero-sharing seed for party {other}")));
            }
        }
        if let Some(bad_party) = self
            .excluded
            .iter()
            .find(|x| **x >= t.n() || **x == self.index)
        {
            return Err(bad(format!(
                "excluded party {bad_party} is not another member of the group"
            )));
        }
        Ok(self)
    }
}

fn sec1<C: DklsEngineCurve>(point: &C::AffinePoint) -> [u8; 33] {
    let bytes = dkls23::utilities::hashes::point_to_bytes::<C>(point);
    let mut out = [0u8; 33];
    if bytes.len() == 33 {
        out.copy_from_slice(&bytes);
    }
    out
}

/// DKG round 2, broadcast: commitments only.
#[derive(Serialize, Deserialize)]
pub(crate) struct KeygenCommit {
    proof_commitment: [u8; 32],
    derivation: BroadcastDerivationPhase2to4,
}

/// DKG round 4, broadcast: openings, and the echo of round 2.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct KeygenReveal<C: DklsEngineCurve> {
    proof: ProofCommitment<C>,
    derivation: BroadcastDerivationPhase3to4,
    echo: [u8; 32],
}

/// DKG round 5, point to point: the pair's zero-sharing seed and multiplication setup.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct KeygenPair<C: DklsEngineCurve> {
    zero: TransmitInitZeroSharePhase3to4,
    mul: TransmitInitMulPhase3to4<C>,
}

fn echo_hash(parts: &BTreeMap<u16, Vec<u8>>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"concord/dkls23/echo/v1\0");
    for (idx, bytes) in parts {
        h.update(idx.to_be_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    h.finalize().into()
}

/// Distributed key generation of a `t`-of-`n` DKLs23 key; this party is `index`. Every
/// member of the group (all `n`) takes part. The key never exists whole.
pub async fn keygen<C: DklsEngineCurve>(
    session: SessionId,
    index: u16,
    threshold: Threshold,
    mut incoming: impl Incoming,
    mut outgoing: impl Outgoing,
) -> Result<DklsShare<C>, TssError> {
    let params = parameters(threshold)?;
    let n = threshold.n();
    if index >= n {
        return Err(TssError::params(format!(
            "party index {index} is not in a {threshold} group"
        )));
    }
    let me = party_index(index)?;
    let parties: Vec<u16> = (0..n).collect();
    let others: Vec<u16> = parties.iter().copied().filter(|p| *p != index).collect();
    let roster = Roster {
        session,
        me: index,
        parties,
        tag: C::TAGS.keygen,
    };
    let mut io = RoundIo::new(roster, &mut incoming, &mut outgoing);
    let mut dkg = DkgSession::<C>::new(params, me, session.as_bytes().to_vec());

    // Round 1: each member's evaluation of our polynomial, point to point (secret).
    let fragments = Zeroizing::new(dkg.phase1());
    for party in &others {
        let fragment = fragments
            .get(usize::from(*party))
            .ok_or_else(|| missing_message(*party, 1))?;
        io.send(Some(*party), 1, &Zeroizing::new(cbor_encode(fragment)))
            .await?;
    }
    let received = io.collect(1, &others, true).await?;
    let mut mine: Zeroizing<Vec<C::Scalar>> = Zeroizing::new(Vec::with_capacity(usize::from(n)));
    mine.push(
        *fragments
            .get(usize::from(index))
            .ok_or_else(|| missing_message(index, 1))?,
    );
    drop(fragments);
    for (party, bytes) in &received {
        mine.push(decode(*party, "polynomial fragment", bytes)?);
    }
    drop(received);

    // Round 2 (broadcast) and 3 (point to point): commitments.
    let (proof, zero2, derivation2) = dkg.phase2(&mine).map_err(abort_error::<C>)?;
    drop(mine);
    let own_commit = cbor_encode(&KeygenCommit {
        proof_commitment: proof.commitment,
        derivation: derivation2.clone(),
    });
    io.send(None, 2, &own_commit).await?;
    let mut zero2 = by_recipient(zero2, |m| m.parties.receiver);
    for party in &others {
        let msg = zero2
            .remove(party)
            .ok_or_else(|| missing_message(*party, 3))?;
        io.send(Some(*party), 3, &cbor_encode(&msg)).await?;
    }
    let commits_raw = io.collect(2, &others, false).await?;
    let zero2_raw = io.collect(3, &others, true).await?;
    let mut commitments: BTreeMap<u16, [u8; 32]> = BTreeMap::new();
    let mut derivations2 = BTreeMap::new();
    derivations2.insert(me, derivation2);
    for (party, bytes) in &commits_raw {
        let c: KeygenCommit = decode(*party, "key generation commitment", bytes)?;
        check_sender(*party, c.derivation.sender_index, "chain-code commitment")?;
        commitments.insert(*party, c.proof_commitment);
        derivations2.insert(party_index(*party)?, c.derivation);
    }
    let mut zero_received2 = Vec::with_capacity(others.len());
    for (party, bytes) in &zero2_raw {
        let m: TransmitInitZeroSharePhase2to4 = decode(*party, "zero-sharing commitment", bytes)?;
        check_sender(*party, m.parties.sender, "zero-sharing commitment")?;
        zero_received2.push(m);
    }
    let mut all_commits = commits_raw;
    all_commits.insert(index, own_commit);
    let echo = echo_hash(&all_commits);

    // Round 4 (broadcast) and 5 (point to point): openings and the pairwise OT setup.
    let (zero3, mul3, derivation3) = dkg.phase3().map_err(abort_error::<C>)?;
    io.send(
        None,
        4,
        &cbor_encode(&KeygenReveal {
            proof: proof.clone(),
            derivation: derivation3.clone(),
            echo,
        }),
    )
    .await?;
    let mut zero3 = by_recipient(zero3, |m| m.parties.receiver);
    let mut mul3 = by_recipient(mul3, |m| m.parties.receiver);
    for party in &others {
        let pair = KeygenPair {
            zero: zero3
                .remove(party)
                .ok_or_else(|| missing_message(*party, 5))?,
            mul: mul3
                .remove(party)
                .ok_or_else(|| missing_message(*party, 5))?,
        };
        io.send(Some(*party), 5, &Zeroizing::new(cbor_encode(&pair)))
            .await?;
    }
    let reveals_raw = io.collect(4, &others, false).await?;
    let pairs_raw = io.collect(5, &others, true).await?;

    let mut proofs = vec![proof];
    let mut derivations3 = BTreeMap::new();
    derivations3.insert(me, derivation3);
    let mut disagreeing = Vec::new();
    for (party, bytes) in &reveals_raw {
        let r: KeygenReveal<C> = decode(*party, "key generation opening", bytes)?;
        if r.echo != echo {
            disagreeing.push(*party);
            continue;
        }
        check_sender(*party, r.proof.index, "proof")?;
        check_sender(*party, r.derivation.sender_index, "chain-code opening")?;
        if commitments.get(party) != Some(&r.proof.commitment) {
            return Err(TssError::Protocol {
                scheme: C::SCHEME,
                culprits: vec![*party],
                detail: format!(
                    "party {party} opened a proof that is not the one it committed to in round 2"
                ),
            });
        }
        proofs.push(r.proof);
        derivations3.insert(party_index(*party)?, r.derivation);
    }
    if !disagreeing.is_empty() {
        return Err(TssError::InconsistentBroadcast {
            parties: disagreeing,
            round: 2,
        });
    }
    let mut zero_received3 = Vec::with_capacity(others.len());
    let mut mul_received = Vec::with_capacity(others.len());
    for (party, bytes) in &pairs_raw {
        let p: KeygenPair<C> = decode(*party, "pairwise setup", bytes)?;
        check_sender(*party, p.zero.parties.sender, "zero-sharing seed")?;
        check_sender(*party, p.mul.parties.sender, "multiplication setup")?;
        zero_received3.push(p.zero);
        mul_received.push(p.mul);
    }

    let (party, public) = dkg
        .phase4(
            &proofs,
            &zero_received2,
            &zero_received3,
            &mul_received,
            &derivations2,
            &derivations3,
            |_| String::new(),
        )
        .map_err(abort_error::<C>)?;
    DklsShare {
        index,
        threshold,
        party,
        public,
        excluded: BTreeSet::new(),
    }
    .validate()
}

/// Refresh round 4, broadcast: the opening of the round-2 commitment, and the echo of round 2.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct RefreshReveal<C: DklsEngineCurve> {
    proof: ProofCommitment<C>,
    echo: [u8; 32],
}

/// Proactive refresh ("complete refresh"): every member of the group (all `n`) re-randomises
/// its share with a fresh sharing of zero and re-runs the pairwise OT setup, so the group key
/// (and the BIP-32 chain code) stay the same while every secret share, zero-sharing seed and
/// OT state change. A share from before the refresh and one from after never sign together:
/// the old shares are to be deleted once every member holds its new one. A party whose
/// correction would change the group key is caught (the sum of corrections must be zero).
/// Exclusions carry over.
pub async fn refresh<C: DklsEngineCurve>(
    session: SessionId,
    share: &DklsShare<C>,
    mut incoming: impl Incoming,
    mut outgoing: impl Outgoing,
) -> Result<DklsShare<C>, TssError> {
    let n = share.threshold.n();
    let roster = Roster {
        session,
        me: share.index,
        parties: (0..n).collect(),
        tag: C::TAGS.refresh,
    };
    let mut io = RoundIo::new(roster, &mut incoming, &mut outgoing);
    refresh_rounds(
        &mut io,
        0,
        session,
        share.index,
        share.threshold,
        &share.party,
        &share.public,
        &share.excluded,
    )
    .await
}

/// A member's part in [`repair`]: a surviving member with its share, or the member whose
/// share is rebuilt (a new module taking a lost one's index).
pub enum RepairRole<'a, C: DklsEngineCurve> {
    /// A surviving member: it sends the target one masked term, then refreshes.
    Helper(&'a DklsShare<C>),
    /// The member whose share is rebuilt.
    Target,
}

/// Repair round 1, helper → target: its masked term and the group's public package.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct RepairMessage<C: DklsEngineCurve> {
    term: dkls23::protocols::repair::RepairTerm<C>,
    public: PublicKeyPackage<C>,
}

/// Replaces a lost member's share: every other member (at least `t` of them) sends the
/// member at `target` one masked term from which only it can assemble its share of the same
/// key (no helper learns it); then all `n` run a complete [`refresh`], which gives the
/// target its pairwise state and re-randomises every share, so the lost share (wherever it
/// is) never signs with the new ones. Every member gets its new share; the key and chain code
/// are unchanged. The caller must be sure the party at `target` is the rightful new member
/// (the policy names it): whoever the helpers accept receives a share.
#[allow(clippy::too_many_arguments)]
pub async fn repair<C: DklsEngineCurve>(
    session: SessionId,
    role: RepairRole<'_, C>,
    index: u16,
    target: u16,
    threshold: Threshold,
    mut incoming: impl Incoming,
    mut outgoing: impl Outgoing,
) -> Result<DklsShare<C>, TssError> {
    let n = threshold.n();
    let helpers = crate::repair_helpers(index, target, threshold)?;
    let roster = Roster {
        session,
        me: index,
        parties: (0..n).collect(),
        tag: C::TAGS.repair,
    };
    let mut io = RoundIo::new(roster, &mut incoming, &mut outgoing);
    let repair_id = session.as_bytes().to_vec();
    let helper_ids = helpers
        .iter()
        .map(|h| party_index(*h))
        .collect::<Result<Vec<_>, _>>()?;
    let target_id = party_index(target)?;
    let bad_repair = |e: dkls23::protocols::repair::RepairError| TssError::Protocol {
        scheme: C::SCHEME,
        culprits: Vec::new(),
        detail: format!("repair: {e:?}"),
    };
    let (party, public, excluded) = match role {
        RepairRole::Helper(share) => {
            if share.index != index || index == target || share.threshold != threshold {
                return Err(TssError::params(
                    "a helper repairs with its own share of the group, for another member",
                ));
            }
            let term = share
                .party
                .repair_term(&helper_ids, target_id, &repair_id)
                .map_err(bad_repair)?;
            let msg = RepairMessage {
                term,
                public: share.public.clone(),
            };
            io.send(Some(target), 1, &Zeroizing::new(cbor_encode(&msg)))
                .await?;
            return refresh_rounds(
                &mut io,
                1,
                session,
                index,
                threshold,
                &share.party,
                &share.public,
                &share.excluded,
            )
            .await;
        }
        RepairRole::Target => {
            if index != target {
                return Err(TssError::params("the target repairs its own index"));
            }
            let raw = io.collect(1, &helpers, true).await?;
            let mut terms = Vec::with_capacity(raw.len());
            let mut public: Option<PublicKeyPackage<C>> = None;
            let mut public_bytes: Option<Vec<u8>> = None;
            for (p, bytes) in &raw {
                let m: RepairMessage<C> = decode(*p, "repair term", bytes)?;
                check_sender(*p, m.term.helper, "repair term")?;
                let encoded = cbor_encode(&m.public);
                match &public_bytes {
                    None => public_bytes = Some(encoded),
                    Some(b) if *b == encoded => {}
                    Some(_) => {
                        return Err(TssError::InconsistentBroadcast {
                            parties: vec![*p],
                            round: 1,
                        });
                    }
                }
                public.get_or_insert(m.public.clone());
                terms.push(m.term);
            }
            let public = public.ok_or_else(|| missing_message(target, 1))?;
            let party =
                dkls23::protocols::repair::repair_assemble(&public, target_id, &terms, |_| {
                    String::new()
                })
                .map_err(bad_repair)?;
            (party, public, BTreeSet::new())
        }
    };
    refresh_rounds(
        &mut io, 1, session, index, threshold, &party, &public, &excluded,
    )
    .await
}

/// The complete refresh's five rounds (numbered from `offset + 1`) for one party, which may
/// be a repaired one without pairwise state.
#[allow(clippy::too_many_arguments)]
async fn refresh_rounds<C: DklsEngineCurve, I: Incoming, O: Outgoing>(
    io: &mut RoundIo<'_, I, O>,
    offset: u8,
    session: SessionId,
    index: u16,
    threshold: Threshold,
    party: &Party<C>,
    public_before: &PublicKeyPackage<C>,
    excluded: &BTreeSet<u16>,
) -> Result<DklsShare<C>, TssError> {
    let n = threshold.n();
    let others: Vec<u16> = (0..n).filter(|p| *p != index).collect();
    let sid = session.as_bytes().to_vec();
    let r = |k: u8| offset + k;
    // Round 1: each member's evaluation of our sharing of zero, point to point (secret).
    let fragments = Zeroizing::new(party.refresh_complete_phase1());
    for other in &others {
        let fragment = fragments
            .get(usize::from(*other))
            .ok_or_else(|| missing_message(*other, r(1)))?;
        io.send(Some(*other), r(1), &Zeroizing::new(cbor_encode(fragment)))
            .await?;
    }
    let received = io.collect(r(1), &others, true).await?;
    let mut mine: Zeroizing<Vec<C::Scalar>> = Zeroizing::new(Vec::with_capacity(usize::from(n)));
    mine.push(
        *fragments
            .get(usize::from(index))
            .ok_or_else(|| missing_message(index, r(1)))?,
    );
    drop(fragments);
    for (p, bytes) in &received {
        mine.push(decode(*p, "refresh fragment", bytes)?);
    }
    drop(received);

    // Round 2 (broadcast) and 3 (point to point): commitments.
    let (correction, proof, zero_keep2, zero2) = party.refresh_complete_phase2(&sid, &mine);
    let correction = Zeroizing::new(correction);
    drop(mine);
    let own_commit = cbor_encode(&proof.commitment);
    io.send(None, r(2), &own_commit).await?;
    let mut zero2 = by_recipient(zero2, |m| m.parties.receiver);
    for other in &others {
        let msg = zero2
            .remove(other)
            .ok_or_else(|| missing_message(*other, r(3)))?;
        io.send(Some(*other), r(3), &cbor_encode(&msg)).await?;
    }
    let commits_raw = io.collect(r(2), &others, false).await?;
    let zero2_raw = io.collect(r(3), &others, true).await?;
    let mut commitments: BTreeMap<u16, [u8; 32]> = BTreeMap::new();
    for (p, bytes) in &commits_raw {
        commitments.insert(*p, decode(*p, "refresh commitment", bytes)?);
    }
    let mut zero_received2 = Vec::with_capacity(others.len());
    for (p, bytes) in &zero2_raw {
        let m: TransmitInitZeroSharePhase2to4 = decode(*p, "zero-sharing commitment", bytes)?;
        check_sender(*p, m.parties.sender, "zero-sharing commitment")?;
        zero_received2.push(m);
    }
    let mut all_commits = commits_raw;
    all_commits.insert(index, own_commit);
    let echo = echo_hash(&all_commits);

    // Round 4 (broadcast) and 5 (point to point): openings and the new pairwise OT setup.
    let (zero_keep3, zero3, mul_keep3, mul3) = party.refresh_complete_phase3(&sid, &zero_keep2);
    drop(zero_keep2);
    io.send(
        None,
        r(4),
        &cbor_encode(&RefreshReveal {
            proof: proof.clone(),
            echo,
        }),
    )
    .await?;
    let mut zero3 = by_recipient(zero3, |m| m.parties.receiver);
    let mut mul3 = by_recipient(mul3, |m| m.parties.receiver);
    for other in &others {
        let pair = KeygenPair {
            zero: zero3
                .remove(other)
                .ok_or_else(|| missing_message(*other, r(5)))?,
            mul: mul3
                .remove(other)
                .ok_or_else(|| missing_message(*other, r(5)))?,
        };
        io.send(Some(*other), r(5), &Zeroizing::new(cbor_encode(&pair)))
            .await?;
    }
    let reveals_raw = io.collect(r(4), &others, false).await?;
    let pairs_raw = io.collect(r(5), &others, true).await?;
    let mut proofs = vec![proof];
    let mut disagreeing = Vec::new();
    for (p, bytes) in &reveals_raw {
        let r: RefreshReveal<C> = decode(*p, "refresh opening", bytes)?;
        if r.echo != echo {
            disagreeing.push(*p);
            continue;
        }
        check_sender(*p, r.proof.index, "proof")?;
        if commitments.get(p) != Some(&r.proof.commitment) {
            return Err(TssError::Protocol {
                scheme: C::SCHEME,
                culprits: vec![*p],
                detail: format!(
                    "party {p} opened a proof that is not the one it committed to in round 2"
                ),
            });
        }
        proofs.push(r.proof);
    }
    if !disagreeing.is_empty() {
        return Err(TssError::InconsistentBroadcast {
            parties: disagreeing,
            round: r(2),
        });
    }
    let mut zero_received3 = Vec::with_capacity(others.len());
    let mut mul_received = Vec::with_capacity(others.len());
    for (p, bytes) in &pairs_raw {
        let pair: KeygenPair<C> = decode(*p, "pairwise setup", bytes)?;
        check_sender(*p, pair.zero.parties.sender, "zero-sharing seed")?;
        check_sender(*p, pair.mul.parties.sender, "multiplication setup")?;
        zero_received3.push(pair.zero);
        mul_received.push(pair.mul);
    }
    let new_party = party
        .refresh_complete_phase4(
            &sid,
            &correction,
            &proofs,
            &zero_keep3,
            &zero_received2,
            &zero_received3,
            &mul_keep3,
            &mul_received,
        )
        .map_err(abort_error::<C>)?;
    let public = public_before
        .refresh(&sid, &proofs)
        .map_err(|reason| TssError::Protocol {
            scheme: C::SCHEME,
            culprits: Vec::new(),
            detail: format!("the refreshed public key package does not verify: {reason:?}"),
        })?;
    DklsShare {
        index,
        threshold,
        party: new_party,
        public,
        excluded: excluded.clone(),
    }
    .validate()
}

/// Splits an existing secp256k1 private key (32 bytes, big-endian) into `n` complete DKLs23
/// shares, with their pairwise state dealt by this function (the library's `re_key`). Each
/// share is then sealed to its module as a stored key share ([`DklsKeyShare::to_bytes`]).
///
/// **Single point of failure:** the key existed whole before this call, and whoever ran it
/// also saw every pair's OT seeds. Prefer [`keygen`]; after an import, a refresh (which
/// re-runs the OT setup among the members) removes the dealer's knowledge of the OT state,
/// though not of the key.
#[cfg(feature = "spof-key-import")]
pub fn import_secret_key(
    secret: &Zeroizing<[u8; 32]>,
    threshold: Threshold,
    rng: &mut (impl rand_core::RngCore + rand_core::CryptoRng),
) -> Result<Vec<DklsKeyShare>, TssError> {
    import_extended_key(secret, None, threshold, rng)
}

/// [`import_secret_key`] of a BIP-32 extended private key: its key and chain code, so the
/// wallet's non-hardened children ([`DklsKeyShare::derive`]) are the extended key's. Without
/// a chain code, a random one is drawn. Same single point of failure.
#[cfg(feature = "spof-key-import")]
pub fn import_extended_key(
    secret: &Zeroizing<[u8; 32]>,
    chain_code: Option<[u8; 32]>,
    threshold: Threshold,
    rng: &mut (impl rand_core::RngCore + rand_core::CryptoRng),
) -> Result<Vec<DklsKeyShare>, TssError> {
    use k256_dkls::elliptic_curve::ff::PrimeField;
    let params = parameters(threshold)?;
    let repr = k256_dkls::FieldBytes::from(**secret);
    let scalar: Option<k256_dkls::Scalar> = k256_dkls::Scalar::from_repr(repr).into();
    let scalar = Zeroizing::new(scalar.ok_or_else(|| {
        TssError::params(
            "the private key is not a valid secp256k1 scalar (it must be below the group order)",
        )
    })?);
    if bool::from(scalar.is_zero()) {
        return Err(TssError::params("the private key is zero"));
    }
    // The library binds the shares' pairwise state to a session id of our choosing.
    let mut session_id = [0u8; 32];
    rng.fill_bytes(&mut session_id);
    let (parties, public) = dkls23::protocols::re_key::re_key::<Secp256k1>(
        &params,
        &session_id,
        &scalar,
        chain_code,
        |_| String::new(),
    );
    parties
        .into_iter()
        .map(|party| {
            DklsKeyShare {
                index: group_index(party.party_index),
                threshold,
                party,
                public: public.clone(),
                excluded: BTreeSet::new(),
            }
            .validate()
        })
        .collect()
}

/// Interactive signing of a 32-byte digest (the chain's sighash) by exactly `t` signers
/// (group indices, including ours). Returns `(r, s, recovery id)` with low `s`, verified with
/// `k256` against the group key. Refuses signer sets with an [excluded](DklsKeyShare::exclude)
/// party.
pub async fn sign<C: DklsEngineCurve>(
    session: SessionId,
    share: &DklsShare<C>,
    signers: &[u16],
    digest: &[u8; 32],
    incoming: impl Incoming,
    outgoing: impl Outgoing,
) -> Result<C::Signature, TssError> {
    sign_gated(
        session,
        share,
        signers,
        digest,
        std::future::ready(Ok(())),
        incoming,
        outgoing,
    )
    .await
}

/// [`sign`], with this signer's share of the signature held back until `gate` says so.
///
/// Rounds 1 and 2 (nonce commitments and the OT-based multiplications, all bound to the
/// session, the signers and the digest) carry no signature material: the message enters
/// only in round 3, whose broadcast `(u, w)` is this party's share of the signature. So the
/// first two rounds may run while the caller is still making sure it may sign (the
/// coordinator collecting the other members' approvals); round 3 is computed as soon as
/// round 2 is in, held in this signer's memory, and sent only once `gate` resolves `Ok`. An
/// `Err` ends the run with that error, the share dropped unsent. A run that stops before
/// round 3 is sent leaves nothing usable behind: its instance key is never used again (the
/// state is dropped with the run).
pub async fn sign_gated<C: DklsEngineCurve>(
    session: SessionId,
    share: &DklsShare<C>,
    signers: &[u16],
    digest: &[u8; 32],
    gate: impl std::future::Future<Output = Result<(), TssError>>,
    mut incoming: impl Incoming,
    mut outgoing: impl Outgoing,
) -> Result<C::Signature, TssError> {
    let roster = Roster::for_signers(
        session,
        share.index,
        share.threshold,
        signers,
        true,
        C::TAGS.sign,
    )?;
    if let Some(party) = roster.parties.iter().find(|p| share.excluded.contains(p)) {
        return Err(TssError::params(format!(
            "party {party} was caught cheating and is excluded from signing with this key; choose other signers"
        )));
    }
    let others = roster.others();
    let counterparties = others
        .iter()
        .map(|p| party_index(*p))
        .collect::<Result<Vec<_>, _>>()?;
    let data = SignData {
        sign_id: session.as_bytes().to_vec(),
        counterparties,
        message_hash: *digest,
    };
    let mut io = RoundIo::new(roster, &mut incoming, &mut outgoing);
    let (mut signing, round1) = SignSession::new(&share.party, data).map_err(abort_error::<C>)?;

    // Round 1: nonce commitments and OT-extension messages, point to point.
    let mut round1 = by_recipient(round1, |m| m.parties.receiver);
    for party in &others {
        let msg = round1
            .remove(party)
            .ok_or_else(|| missing_message(*party, 1))?;
        io.send(Some(*party), 1, &cbor_encode(&msg)).await?;
    }
    let mut received1 = Vec::with_capacity(others.len());
    for (party, bytes) in io.collect(1, &others, true).await? {
        let m: TransmitPhase1to2 = decode(party, "signing round-1 message", &bytes)?;
        check_sender(party, m.parties.sender, "round-1 message")?;
        received1.push(m);
    }

    // Round 2: openings and multiplication outputs, point to point.
    let round2 = signing.phase2(&received1).map_err(abort_error::<C>)?;
    drop(received1);
    let mut round2 = by_recipient(round2, |m| m.parties.receiver);
    for party in &others {
        let msg = round2
            .remove(party)
            .ok_or_else(|| missing_message(*party, 2))?;
        io.send(Some(*party), 2, &Zeroizing::new(cbor_encode(&msg)))
            .await?;
    }
    let mut received2 = Vec::with_capacity(others.len());
    for (party, bytes) in io.collect(2, &others, true).await? {
        let m: TransmitPhase2to3<C> = decode(party, "signing round-2 message", &bytes)?;
        check_sender(party, m.parties.sender, "round-2 message")?;
        received2.push(m);
    }

    // Round 3: shares of the signature, broadcast; every signer assembles and verifies.
    // The share is computed at once (off the path after the gate) and leaves only once the
    // gate opens; a shut gate drops it unsent.
    let own = signing.phase3(&received2).map_err(abort_error::<C>)?;
    drop(received2);
    let encoded = Zeroizing::new(cbor_encode(&own));
    gate.await?;
    io.send(None, 3, &encoded).await?;
    let mut all = vec![own];
    for (party, bytes) in io.collect(3, &others, false).await? {
        all.push(decode::<Broadcast3to4<C>>(
            party,
            "signing round-3 message",
            &bytes,
        )?);
    }
    let sig = signing.phase4(&all, true).map_err(abort_error::<C>)?;
    C::finish(&sig, &share.public_key(), digest)
}

/// Normalises `s` to the lower half, finds the recovery id and verifies with `k256` (an
/// implementation independent of the protocol's) before anything leaves the engine.
fn finish_secp256k1(
    sig: &dkls23::EcdsaSignature,
    public_key: &[u8; 33],
    digest: &[u8; 32],
) -> Result<RecoverableSignature, TssError> {
    let invalid = || TssError::InvalidSignature {
        scheme: Scheme::EcdsaSecp256k1,
        culprits: Vec::new(),
    };
    let parsed = k256::ecdsa::Signature::from_scalars(sig.r, sig.s).map_err(|_| invalid())?;
    let flipped = parsed.normalize_s().is_some();
    let low = parsed.normalize_s().unwrap_or(parsed);
    let bytes = low.to_bytes();
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&bytes[..32]);
    s.copy_from_slice(&bytes[32..]);
    // The library's recovery id is for the `s` it returned; negating `s` flips the parity.
    let first = (sig.recovery_id & 1) ^ u8::from(flipped);
    for recovery_id in [first, first ^ 1] {
        let candidate = RecoverableSignature { r, s, recovery_id };
        if candidate.verify(public_key, digest).is_ok() {
            return Ok(candidate);
        }
    }
    Err(invalid())
}

/// Normalises `s` to the lower half and verifies with `p256` (an implementation independent
/// of the protocol's): the ES256 signature `r ‖ s`.
fn finish_p256(
    sig: &dkls23::EcdsaSignature,
    public_key: &[u8; 33],
    digest: &[u8; 32],
) -> Result<[u8; 64], TssError> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let invalid = || TssError::InvalidSignature {
        scheme: Scheme::EcdsaP256,
        culprits: Vec::new(),
    };
    let parsed = p256::ecdsa::Signature::from_scalars(sig.r, sig.s).map_err(|_| invalid())?;
    let low = parsed.normalize_s().unwrap_or(parsed);
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| invalid())?;
    key.verify_prehash(digest, &low).map_err(|_| invalid())?;
    Ok(low.to_bytes().into())
}

/// Decodes a DKLs23 key-generation body (after the tag) completely; returns its round.
pub(crate) fn inspect_keygen<C: DklsEngineCurve>(body: &[u8]) -> Result<u8, String> {
    let (round, payload) = body.split_first().ok_or("no round number")?;
    match round {
        1 => cbor_decode::<C::Scalar>(payload).map(drop)?,
        2 => cbor_decode::<KeygenCommit>(payload).map(drop)?,
        3 => cbor_decode::<TransmitInitZeroSharePhase2to4>(payload).map(drop)?,
        4 => cbor_decode::<KeygenReveal<C>>(payload).map(drop)?,
        5 => cbor_decode::<KeygenPair<C>>(payload).map(drop)?,
        r => return Err(format!("no DKLs23 key generation round {r}")),
    }
    Ok(*round)
}

/// Decodes a DKLs23 repair body (after the tag) completely; returns its round (1: a repair
/// term; 2 to 6: the refresh that follows).
pub(crate) fn inspect_repair<C: DklsEngineCurve>(body: &[u8]) -> Result<u8, String> {
    let (round, payload) = body.split_first().ok_or("no round number")?;
    match round {
        1 => cbor_decode::<RepairMessage<C>>(payload).map(drop)?,
        2..=6 => refresh_payload::<C>(round - 1, payload)?,
        r => return Err(format!("no DKLs23 repair round {r}")),
    }
    Ok(*round)
}

/// Decodes a DKLs23 refresh body (after the tag) completely; returns its round.
pub(crate) fn inspect_refresh<C: DklsEngineCurve>(body: &[u8]) -> Result<u8, String> {
    let (round, payload) = body.split_first().ok_or("no round number")?;
    refresh_payload::<C>(*round, payload)?;
    Ok(*round)
}

fn refresh_payload<C: DklsEngineCurve>(round: u8, payload: &[u8]) -> Result<(), String> {
    match round {
        1 => cbor_decode::<C::Scalar>(payload).map(drop)?,
        2 => cbor_decode::<[u8; 32]>(payload).map(drop)?,
        3 => cbor_decode::<TransmitInitZeroSharePhase2to4>(payload).map(drop)?,
        4 => cbor_decode::<RefreshReveal<C>>(payload).map(drop)?,
        5 => cbor_decode::<KeygenPair<C>>(payload).map(drop)?,
        r => return Err(format!("no DKLs23 refresh round {r}")),
    }
    Ok(())
}

/// Decodes a DKLs23 signing body (after the tag) completely; returns its round.
pub(crate) fn inspect_sign<C: DklsEngineCurve>(body: &[u8]) -> Result<u8, String> {
    let (round, payload) = body.split_first().ok_or("no round number")?;
    match round {
        1 => cbor_decode::<TransmitPhase1to2>(payload).map(drop)?,
        2 => cbor_decode::<TransmitPhase2to3<C>>(payload).map(drop)?,
        3 => cbor_decode::<Broadcast3to4<C>>(payload).map(drop)?,
        r => return Err(format!("no DKLs23 signing round {r}")),
    }
    Ok(*round)
}
