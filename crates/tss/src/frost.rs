//! FROST threshold Schnorr (RFC 9591) for two ciphersuites, driven by the same code:
//! Ed25519 (`frost-ed25519`) and secp256k1 with BIP-340/BIP-341 (`frost-secp256k1-tr`).
//!
//! The protocol rounds are wrapped into the same stream/sink shape as cggmp21's:
//!
//! - DKG: round 1 broadcasts the commitment package; round 2 broadcasts a hash of every
//!   round-1 package received (the reliable-broadcast echo that FROST's DKG requires); round 3
//!   sends each participant its secret share point-to-point.
//! - Signing: round 1 broadcasts nonce commitments; round 2 broadcasts the signature share
//!   together with a hash of the signing package, so a party that equivocated on its
//!   commitments is caught as an inconsistent broadcast instead of honest parties being blamed.
//!   Every signer aggregates and verifies, so any of them can hand the signature on.
//!
//! The Taproot ciphersuite applies the BIP-341 key-path tweak (with an unspendable script
//! path) in its `post_dkg` hook; imported keys go through the very same hook, so a key
//! behaves identically whether it came from DKG or from import.

use std::collections::BTreeMap;
use std::fmt;

use concord_types::{Scheme, SessionId, Threshold, WalletId};
use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::{Ciphersuite, Identifier, SigningPackage, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::TssError;
pub use crate::envelope::Tag;
use crate::transport::{Incoming, Outgoing, Roster, RoundIo};

/// A FROST ciphersuite Concord runs, with what differs between them.
pub trait FrostSuite: Ciphersuite + Send + Sync + 'static {
    /// The scheme this ciphersuite implements.
    const SCHEME: Scheme;

    /// The group key as the outside world sees it: 32-byte Ed25519 key, or the 32-byte
    /// x-only BIP-340 output key for Taproot.
    fn public_key_bytes(key: &VerifyingKey<Self>) -> Vec<u8>;

    /// Protocol tags of this suite's DKG, signing, refresh and repair messages (distinct per suite,
    /// so a message can be decoded knowing nothing but its bytes).
    #[doc(hidden)]
    const TAGS: (Tag, Tag, Tag, Tag);
}

impl FrostSuite for frost_ed25519::Ed25519Sha512 {
    const SCHEME: Scheme = Scheme::Ed25519;
    const TAGS: (Tag, Tag, Tag, Tag) = (
        Tag::Ed25519Dkg,
        Tag::Ed25519Sign,
        Tag::Ed25519Refresh,
        Tag::Ed25519Repair,
    );
    fn public_key_bytes(key: &VerifyingKey<Self>) -> Vec<u8> {
        key.serialize().unwrap_or_default()
    }
}

impl FrostSuite for frost_secp256k1_tr::Secp256K1Sha256TR {
    const SCHEME: Scheme = Scheme::SchnorrTaproot;
    const TAGS: (Tag, Tag, Tag, Tag) = (
        Tag::TaprootDkg,
        Tag::TaprootSign,
        Tag::TaprootRefresh,
        Tag::TaprootRepair,
    );
    fn public_key_bytes(key: &VerifyingKey<Self>) -> Vec<u8> {
        // SEC1 compressed; BIP-340 keys are the x coordinate alone.
        key.serialize().map(|b| b[1..].to_vec()).unwrap_or_default()
    }
}

/// Ed25519 ciphersuite.
pub type Ed25519 = frost_ed25519::Ed25519Sha512;
/// Taproot (BIP-340 Schnorr over secp256k1) ciphersuite.
pub type Taproot = frost_secp256k1_tr::Secp256K1Sha256TR;

pub(crate) fn identifier<C: Ciphersuite>(index: u16) -> Result<Identifier<C>, TssError> {
    index
        .checked_add(1)
        .and_then(|i| Identifier::<C>::try_from(i).ok())
        .ok_or_else(|| {
            TssError::params(format!("party index {index} cannot be a FROST identifier"))
        })
}

/// One party's share of a FROST key.
pub struct FrostKeyShare<C: FrostSuite> {
    pub(crate) index: u16,
    pub(crate) threshold: Threshold,
    pub(crate) key_package: KeyPackage<C>,
    pub(crate) public_key_package: PublicKeyPackage<C>,
    /// The group key before any ciphersuite post-processing: the BIP-341 internal key for
    /// Taproot, the group key itself for Ed25519.
    pub(crate) untweaked_key: VerifyingKey<C>,
}

impl<C: FrostSuite> fmt::Debug for FrostKeyShare<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrostKeyShare")
            .field("scheme", &C::SCHEME)
            .field("index", &self.index)
            .field("threshold", &self.threshold)
            .field("public_key", &hex::encode(self.public_key()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl<C: FrostSuite> FrostKeyShare<C> {
    /// This party's index in the group.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The signing threshold.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// The group public key as verifiers see it (see [`FrostSuite::public_key_bytes`]).
    pub fn public_key(&self) -> Vec<u8> {
        C::public_key_bytes(self.public_key_package.verifying_key())
    }

    /// The group key before the ciphersuite's post-processing, serialized: for Taproot the
    /// BIP-341 internal key (33-byte SEC1), for Ed25519 the key itself.
    pub fn untweaked_public_key(&self) -> Vec<u8> {
        self.untweaked_key.serialize().unwrap_or_default()
    }

    /// The wallet this share belongs to.
    pub fn wallet_id(&self) -> WalletId {
        WalletId::derive(C::SCHEME, &self.public_key())
    }

    /// Checks the share's internal consistency.
    pub(crate) fn validate(self) -> Result<Self, TssError> {
        let bad = |reason: String| TssError::invalid_state("FROST key share", reason);
        let t = self.threshold;
        if self.index >= t.n() {
            return Err(bad(format!(
                "party index {} outside a {t} group",
                self.index
            )));
        }
        if *self.key_package.identifier() != identifier::<C>(self.index)? {
            return Err(bad(
                "the key package's identifier does not match the party index".into(),
            ));
        }
        if *self.key_package.min_signers() != t.t()
            || self.public_key_package.min_signers() != Some(t.t())
        {
            return Err(bad(format!("the key packages do not say threshold {t}")));
        }
        if self.public_key_package.verifying_shares().len() != usize::from(t.n()) {
            return Err(bad(format!(
                "the public key package lists {} parties, the threshold says {}",
                self.public_key_package.verifying_shares().len(),
                t.n()
            )));
        }
        if self.key_package.verifying_key() != self.public_key_package.verifying_key() {
            return Err(bad(
                "the key package and the public key package name different group keys".into(),
            ));
        }
        let own_public =
            frost_core::keys::VerifyingShare::<C>::from(*self.key_package.signing_share());
        if own_public != *self.key_package.verifying_share()
            || self
                .public_key_package
                .verifying_shares()
                .get(self.key_package.identifier())
                != Some(&own_public)
        {
            return Err(bad(
                "the secret share does not match its public verifying share".into(),
            ));
        }
        // The stored group key must be what post-processing the untweaked key gives.
        let untweaked =
            PublicKeyPackage::<C>::new(BTreeMap::new(), self.untweaked_key, Some(t.t()));
        let tweaked_vk = post_process_public::<C>(untweaked)?;
        if tweaked_vk != *self.public_key_package.verifying_key() {
            return Err(bad(
                "the group key is not the post-processed internal key".into()
            ));
        }
        Ok(self)
    }
}

/// Applies the ciphersuite's DKG post-processing to a public key package alone.
fn post_process_public<C: FrostSuite>(
    pkp: PublicKeyPackage<C>,
) -> Result<VerifyingKey<C>, TssError> {
    // post_dkg needs a key package too; a throwaway one with a dummy share is enough to get
    // the public half, which is all we keep.
    let id = identifier::<C>(0)?;
    let one = <<C::Group as frost_core::Group>::Field as frost_core::Field>::one();
    let share = frost_core::keys::SigningShare::<C>::new(one);
    let kp = KeyPackage::new(
        id,
        share,
        frost_core::keys::VerifyingShare::<C>::from(share),
        *pkp.verifying_key(),
        pkp.min_signers().unwrap_or(2),
    );
    let (_, pkp) = C::post_dkg(kp, pkp).map_err(|e| frost_error::<C>(e, &[]))?;
    Ok(*pkp.verifying_key())
}

fn frost_error<C: FrostSuite>(err: frost_core::Error<C>, roster: &[u16]) -> TssError {
    let culprits: Vec<u16> = err
        .culprits()
        .iter()
        .filter_map(|id| {
            roster
                .iter()
                .copied()
                .find(|i| identifier::<C>(*i).ok().as_ref() == Some(id))
        })
        .collect();
    match err {
        frost_core::Error::InvalidSignature | frost_core::Error::InvalidSignatureShare { .. } => {
            TssError::InvalidSignature {
                scheme: C::SCHEME,
                culprits,
            }
        }
        other => TssError::Protocol {
            scheme: C::SCHEME,
            culprits,
            detail: other.to_string(),
        },
    }
}

fn decode<T>(
    party: u16,
    what: &str,
    bytes: &[u8],
    f: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, TssError> {
    f(bytes).map_err(|reason| TssError::MalformedMessage {
        party,
        reason: format!("undecodable {what}: {reason}"),
    })
}

fn echo_hash(parts: &BTreeMap<u16, Vec<u8>>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"concord/frost/echo/v1\0");
    for (idx, bytes) in parts {
        h.update(idx.to_be_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    h.finalize().into()
}

/// Distributed key generation for a `t`-of-`n` FROST key; this party is `index`.
pub async fn dkg<C: FrostSuite>(
    session: SessionId,
    index: u16,
    threshold: Threshold,
    mut incoming: impl Incoming,
    mut outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<FrostKeyShare<C>, TssError> {
    let n = threshold.n();
    if index >= n {
        return Err(TssError::params(format!(
            "party index {index} is not in a {threshold} group"
        )));
    }
    let parties: Vec<u16> = (0..n).collect();
    let others: Vec<u16> = parties.iter().copied().filter(|p| *p != index).collect();
    let roster = Roster {
        session,
        me: index,
        parties: parties.clone(),
        tag: C::TAGS.0,
    };
    let mut io = RoundIo::new(roster, &mut incoming, &mut outgoing);
    let me = identifier::<C>(index)?;
    let fe = |e| frost_error::<C>(e, &parties);

    // Round 1: commitments and proof of knowledge, broadcast.
    let (secret1, package1) =
        frost_core::keys::dkg::part1::<C, _>(me, n, threshold.t(), &mut *rng).map_err(fe)?;
    let round1 = round1_echoed(&mut io, 0, index, &others, &package1, &parties, "DKG").await?;

    // Round 3: secret shares, point to point.
    let (secret2, packages2) = frost_core::keys::dkg::part2(secret1, &round1).map_err(fe)?;
    let round2 = round2_exchanged(&mut io, 0, &others, &packages2, &parties, "DKG").await?;

    let (key_package, public_key_package) =
        frost_core::keys::dkg::part3(&secret2, &round1, &round2).map_err(fe)?;

    // The group key before post-processing (the BIP-341 internal key for Taproot).
    let mut commitments = BTreeMap::new();
    for (id, pkg) in &round1 {
        commitments.insert(*id, pkg.commitment());
    }
    commitments.insert(me, package1.commitment());
    let untweaked = PublicKeyPackage::from_dkg_commitments(&commitments).map_err(fe)?;

    FrostKeyShare {
        index,
        threshold,
        key_package,
        public_key_package,
        untweaked_key: *untweaked.verifying_key(),
    }
    .validate()
}

/// Round 1 of a DKG or refresh: our package broadcast, the others' collected, then round 2
/// echoes a hash of all of them so that equivocation in round 1 is caught.
async fn round1_echoed<C: FrostSuite, I: Incoming, O: Outgoing>(
    io: &mut RoundIo<'_, I, O>,
    base: u8,
    index: u16,
    others: &[u16],
    own: &frost_core::keys::dkg::round1::Package<C>,
    parties: &[u16],
    what: &str,
) -> Result<BTreeMap<Identifier<C>, frost_core::keys::dkg::round1::Package<C>>, TssError> {
    let own1 = own.serialize().map_err(|e| frost_error::<C>(e, parties))?;
    io.send(None, base + 1, &own1).await?;
    let raw1 = io.collect(base + 1, others, false).await?;
    let mut round1 = BTreeMap::new();
    for (party, bytes) in &raw1 {
        let pkg = decode(*party, &format!("{what} round-1 package"), bytes, |b| {
            frost_core::keys::dkg::round1::Package::<C>::deserialize(b).map_err(|e| e.to_string())
        })?;
        round1.insert(identifier::<C>(*party)?, pkg);
    }
    let mut all1 = raw1;
    all1.insert(index, own1);
    let my_echo = echo_hash(&all1);
    io.send(None, base + 2, &my_echo).await?;
    let echoes = io.collect(base + 2, others, false).await?;
    let disagreeing: Vec<u16> = echoes
        .iter()
        .filter(|(_, e)| e.as_slice() != my_echo.as_slice())
        .map(|(p, _)| *p)
        .collect();
    if !disagreeing.is_empty() {
        return Err(TssError::InconsistentBroadcast {
            parties: disagreeing,
            round: base + 1,
        });
    }
    Ok(round1)
}

/// Round 3 of a DKG or refresh: each other party's secret package sent to it alone, ours
/// collected.
async fn round2_exchanged<C: FrostSuite, I: Incoming, O: Outgoing>(
    io: &mut RoundIo<'_, I, O>,
    base: u8,
    others: &[u16],
    packages: &BTreeMap<Identifier<C>, frost_core::keys::dkg::round2::Package<C>>,
    parties: &[u16],
    what: &str,
) -> Result<BTreeMap<Identifier<C>, frost_core::keys::dkg::round2::Package<C>>, TssError> {
    for party in others {
        let pkg = packages.get(&identifier::<C>(*party)?).ok_or_else(|| {
            TssError::params(format!("no round-2 package was made for party {party}"))
        })?;
        io.send(
            Some(*party),
            base + 3,
            &pkg.serialize().map_err(|e| frost_error::<C>(e, parties))?,
        )
        .await?;
    }
    let raw2 = io.collect(base + 3, others, true).await?;
    let mut round2 = BTreeMap::new();
    for (party, bytes) in &raw2 {
        let pkg = decode(*party, &format!("{what} round-2 package"), bytes, |b| {
            frost_core::keys::dkg::round2::Package::<C>::deserialize(b).map_err(|e| e.to_string())
        })?;
        round2.insert(identifier::<C>(*party)?, pkg);
    }
    Ok(round2)
}

/// Proactive refresh (FROST's refresh by DKG): every member (all `n`) deals a sharing of zero
/// and adds what it receives to its share, so every signing share and verifying share
/// changes while the group key (for Taproot, the tweaked output key and its internal key)
/// stays. Round 1 is echoed in round 2, as in [`dkg`], so equivocation is caught. A share
/// from before and one from after never sign together.
pub async fn refresh<C: FrostSuite>(
    session: SessionId,
    share: &FrostKeyShare<C>,
    mut incoming: impl Incoming,
    mut outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<FrostKeyShare<C>, TssError> {
    let roster = Roster {
        session,
        me: share.index,
        parties: (0..share.threshold.n()).collect(),
        tag: C::TAGS.2,
    };
    let mut io = RoundIo::new(roster, &mut incoming, &mut outgoing);
    refresh_rounds(&mut io, 0, share, rng).await
}

/// The refresh's three rounds, numbered from `base + 1`.
async fn refresh_rounds<C: FrostSuite, I: Incoming, O: Outgoing>(
    io: &mut RoundIo<'_, I, O>,
    base: u8,
    share: &FrostKeyShare<C>,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<FrostKeyShare<C>, TssError> {
    let threshold = share.threshold;
    let index = share.index;
    let n = threshold.n();
    let parties: Vec<u16> = (0..n).collect();
    let others: Vec<u16> = parties.iter().copied().filter(|p| *p != index).collect();
    let me = identifier::<C>(index)?;
    let fe = |e| frost_error::<C>(e, &parties);

    // Round 1: commitments to a sharing of zero, broadcast.
    let (secret1, package1) =
        frost_core::keys::refresh::refresh_dkg_part1::<C, _>(me, n, threshold.t(), &mut *rng)
            .map_err(fe)?;
    let round1 = round1_echoed(io, base, index, &others, &package1, &parties, "refresh").await?;

    // Round 3: the shares of zero, point to point.
    let (secret2, packages2) =
        frost_core::keys::refresh::refresh_dkg_part2(secret1, &round1).map_err(fe)?;
    let round2 = round2_exchanged(io, base, &others, &packages2, &parties, "refresh").await?;
    let (key_package, public_key_package) = frost_core::keys::refresh::refresh_dkg_shares(
        &secret2,
        &round1,
        &round2,
        share.public_key_package.clone(),
        share.key_package.clone(),
    )
    .map_err(fe)?;
    FrostKeyShare {
        index,
        threshold,
        key_package,
        public_key_package,
        untweaked_key: share.untweaked_key,
    }
    .validate()
}

/// A member's part in [`repair`].
pub enum RepairRole<'a, C: FrostSuite> {
    /// A surviving member, with its share.
    Helper(&'a FrostKeyShare<C>),
    /// The member whose share is rebuilt.
    Target,
}

/// Repair round 2, helper → target: the sum of the deltas it received, and the group's
/// public state.
#[derive(serde::Serialize, serde::Deserialize)]
struct RepairSigma {
    #[serde(with = "serde_bytes")]
    sigma: Vec<u8>,
    #[serde(with = "serde_bytes")]
    public: Vec<u8>,
    #[serde(with = "serde_bytes")]
    untweaked: Vec<u8>,
}

impl Drop for RepairSigma {
    fn drop(&mut self) {
        // The sum of the deltas a helper received: one of the pieces of the rebuilt share.
        zeroize::Zeroize::zeroize(&mut self.sigma);
    }
}

/// Decodes a repair's round-2 message completely.
pub(crate) fn inspect_repair_sigma<C: FrostSuite>(payload: &[u8]) -> Result<(), String> {
    let m: RepairSigma = ciborium::from_reader(payload).map_err(|e| e.to_string())?;
    frost_core::keys::repairable::Sigma::<C>::deserialize(&m.sigma).map_err(|e| e.to_string())?;
    PublicKeyPackage::<C>::deserialize(&m.public).map_err(|e| e.to_string())?;
    VerifyingKey::<C>::deserialize(&m.untweaked).map_err(|e| e.to_string())?;
    Ok(())
}

/// Replaces a lost member's share (frost-core's repairable threshold scheme): every other
/// member (at least `t`) splits its Lagrange-weighted share into random deltas, one per
/// helper (round 1), each helper sends the sum of what it received to the member at
/// `target` (round 2), which adds them into its share of the same key, checked against its
/// verifying share; then all `n` run a [`refresh`] (rounds 3 to 5), so the lost share never
/// signs with the new ones. No helper learns the rebuilt share. The caller must be sure the
/// party at `target` is the rightful new member.
#[allow(clippy::too_many_arguments)]
pub async fn repair<C: FrostSuite>(
    session: SessionId,
    role: RepairRole<'_, C>,
    index: u16,
    target: u16,
    threshold: Threshold,
    mut incoming: impl Incoming,
    mut outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<FrostKeyShare<C>, TssError> {
    let n = threshold.n();
    let helpers = crate::repair_helpers(index, target, threshold)?;
    let parties: Vec<u16> = (0..n).collect();
    let roster = Roster {
        session,
        me: index,
        parties: parties.clone(),
        tag: C::TAGS.3,
    };
    let mut io = RoundIo::new(roster, &mut incoming, &mut outgoing);
    let fe = |e| frost_error::<C>(e, &parties);
    let helper_ids = helpers
        .iter()
        .map(|h| identifier::<C>(*h))
        .collect::<Result<Vec<_>, _>>()?;
    let target_id = identifier::<C>(target)?;
    let rebuilt;
    let share = match role {
        RepairRole::Helper(share) => {
            if share.index != index || index == target || share.threshold != threshold {
                return Err(TssError::params(
                    "a helper repairs with its own share of the group, for another member",
                ));
            }
            let deltas = frost_core::keys::repairable::repair_share_part1(
                &helper_ids,
                &share.key_package,
                &mut *rng,
                target_id,
            )
            .map_err(fe)?;
            let others: Vec<u16> = helpers.iter().copied().filter(|h| *h != index).collect();
            for h in &others {
                let d = deltas
                    .get(&identifier::<C>(*h)?)
                    .ok_or_else(|| TssError::params(format!("no delta was made for helper {h}")))?;
                io.send(Some(*h), 1, &zeroize::Zeroizing::new(d.serialize()))
                    .await?;
            }
            let own = *deltas
                .get(&identifier::<C>(index)?)
                .ok_or_else(|| TssError::params("no delta was made for this helper"))?;
            let raw = io.collect(1, &others, true).await?;
            let mut all = vec![own];
            for (p, bytes) in &raw {
                all.push(decode(*p, "repair delta", bytes, |b| {
                    frost_core::keys::repairable::Delta::<C>::deserialize(b)
                        .map_err(|e| e.to_string())
                })?);
            }
            let sigma = frost_core::keys::repairable::repair_share_part2(&all);
            let msg = RepairSigma {
                sigma: sigma.serialize(),
                public: share.public_key_package.serialize().map_err(fe)?,
                untweaked: share.untweaked_key.serialize().map_err(fe)?,
            };
            let mut body = Vec::new();
            ciborium::into_writer(&msg, &mut body)
                .map_err(|e| TssError::params(format!("repair message: {e}")))?;
            io.send(Some(target), 2, &zeroize::Zeroizing::new(body))
                .await?;
            share
        }
        RepairRole::Target => {
            if index != target {
                return Err(TssError::params("the target repairs its own index"));
            }
            let raw = io.collect(2, &helpers, true).await?;
            let mut sigmas = Vec::new();
            let mut public_seen: Option<(Vec<u8>, Vec<u8>)> = None;
            for (p, bytes) in &raw {
                let m: RepairSigma = ciborium::from_reader(bytes.as_slice()).map_err(|e| {
                    TssError::MalformedMessage {
                        party: *p,
                        reason: format!("repair sigma: {e}"),
                    }
                })?;
                match &public_seen {
                    None => public_seen = Some((m.public.clone(), m.untweaked.clone())),
                    Some((pk, un)) if *pk == m.public && *un == m.untweaked => {}
                    Some(_) => {
                        return Err(TssError::InconsistentBroadcast {
                            parties: vec![*p],
                            round: 2,
                        });
                    }
                }
                sigmas.push(decode(*p, "repair sigma", &m.sigma, |b| {
                    frost_core::keys::repairable::Sigma::<C>::deserialize(b)
                        .map_err(|e| e.to_string())
                })?);
            }
            let (public, untweaked) = public_seen
                .ok_or_else(|| TssError::params("no helper sent its part of the repair"))?;
            let public = PublicKeyPackage::<C>::deserialize(&public).map_err(fe)?;
            let untweaked = VerifyingKey::<C>::deserialize(&untweaked).map_err(fe)?;
            let key_package =
                frost_core::keys::repairable::repair_share_part3(&sigmas, target_id, &public)
                    .map_err(fe)?;
            if public.verifying_shares().get(&target_id) != Some(key_package.verifying_share()) {
                return Err(TssError::Protocol {
                    scheme: C::SCHEME,
                    culprits: Vec::new(),
                    detail: "the rebuilt share does not match this member's verifying share (a helper sent a wrong part)".into(),
                });
            }
            rebuilt = FrostKeyShare {
                index,
                threshold,
                key_package,
                public_key_package: public,
                untweaked_key: untweaked,
            }
            .validate()?;
            &rebuilt
        }
    };
    refresh_rounds(&mut io, 2, share, rng).await
}

/// A commitment to the group's public state (the public key package: group key and every
/// member's verifying share), the same at every member; it changes with every refresh.
pub fn public_commitment<C: FrostSuite>(share: &FrostKeyShare<C>) -> Result<[u8; 32], TssError> {
    let bytes = share
        .public_key_package
        .serialize()
        .map_err(|e| TssError::params(format!("the public key package does not encode: {e}")))?;
    let mut h = Sha256::new();
    h.update(b"concord/frost/public/v1\0");
    h.update([C::SCHEME.code()]);
    h.update(bytes);
    Ok(h.finalize().into())
}

/// Threshold signing of `message` by `signers` (at least `t` group indices, including ours).
/// Returns the 64-byte signature (Ed25519 `R || s`, or BIP-340 `x(R) || s`), verified
/// against the group key.
pub async fn sign<C: FrostSuite>(
    session: SessionId,
    share: &FrostKeyShare<C>,
    signers: &[u16],
    message: &[u8],
    mut incoming: impl Incoming,
    mut outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<Vec<u8>, TssError> {
    let t = share.threshold;
    let roster = Roster::for_signers(session, share.index, t, signers, false, C::TAGS.1)?;
    let sorted = roster.parties.clone();
    let others = roster.others();
    let mut io = RoundIo::new(roster, &mut incoming, &mut outgoing);
    let fe = |e| frost_error::<C>(e, &sorted);
    let me = identifier::<C>(share.index)?;

    // Round 1: nonce commitments.
    let (nonces, commitments) =
        frost_core::round1::commit(share.key_package.signing_share(), &mut *rng);
    io.send(None, 1, &commitments.serialize().map_err(fe)?)
        .await?;
    let raw = io.collect(1, &others, false).await?;
    let mut all = BTreeMap::new();
    all.insert(me, commitments);
    for (party, bytes) in &raw {
        let c = decode(*party, "signing commitments", bytes, |b| {
            frost_core::round1::SigningCommitments::<C>::deserialize(b).map_err(|e| e.to_string())
        })?;
        all.insert(identifier::<C>(*party)?, c);
    }
    let package = SigningPackage::new(all, message);
    let package_hash: [u8; 32] = Sha256::digest(package.serialize().map_err(fe)?).into();

    // Round 2: signature shares, each with the hash of the package it signed.
    let own_share = frost_core::round2::sign(&package, &nonces, &share.key_package).map_err(fe)?;
    drop(nonces);
    let mut payload = package_hash.to_vec();
    payload.extend_from_slice(&own_share.serialize());
    io.send(None, 2, &payload).await?;
    let raw = io.collect(2, &others, false).await?;
    let mut shares = BTreeMap::new();
    shares.insert(me, own_share);
    let mut inconsistent = Vec::new();
    for (party, bytes) in &raw {
        if bytes.len() < 32 {
            return Err(TssError::MalformedMessage {
                party: *party,
                reason: "signature share message is truncated".into(),
            });
        }
        if bytes[..32] != package_hash {
            inconsistent.push(*party);
            continue;
        }
        let s = decode(*party, "signature share", &bytes[32..], |b| {
            frost_core::round2::SignatureShare::<C>::deserialize(b).map_err(|e| e.to_string())
        })?;
        shares.insert(identifier::<C>(*party)?, s);
    }
    if !inconsistent.is_empty() {
        return Err(TssError::InconsistentBroadcast {
            parties: inconsistent,
            round: 1,
        });
    }
    // `aggregate` verifies the signature against the group key (and on failure checks each
    // share to name the culprits), so what it returns is already verified.
    let signature =
        frost_core::aggregate(&package, &shares, &share.public_key_package).map_err(fe)?;
    signature.serialize().map_err(fe)
}

/// Splits a signing key into `n` shares and post-processes them exactly as DKG does.
#[cfg(feature = "spof-key-import")]
pub(crate) fn split_key<C: FrostSuite>(
    key: &frost_core::SigningKey<C>,
    threshold: Threshold,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<FrostKeyShare<C>>, TssError> {
    let all: Vec<u16> = (0..threshold.n()).collect();
    let fe = |e| frost_error::<C>(e, &all);
    let (shares, public_key_package) = frost_core::keys::split(
        key,
        threshold.n(),
        threshold.t(),
        frost_core::keys::IdentifierList::Default,
        rng,
    )
    .map_err(fe)?;
    let untweaked_key = *public_key_package.verifying_key();
    let mut out = Vec::with_capacity(shares.len());
    for index in all.iter().copied() {
        let secret = shares
            .get(&identifier::<C>(index)?)
            .ok_or_else(|| TssError::params(format!("no share was made for party {index}")))?;
        let kp = KeyPackage::try_from(secret.clone()).map_err(fe)?;
        let (key_package, pkp) = C::post_dkg(kp, public_key_package.clone()).map_err(fe)?;
        out.push(
            FrostKeyShare {
                index,
                threshold,
                key_package,
                public_key_package: pkp,
                untweaked_key,
            }
            .validate()?,
        );
    }
    Ok(out)
}

/// Splits an existing Ed25519 private key, given as its 32-byte RFC 8032 seed, into `n`
/// shares. The seed is expanded as RFC 8032 does (SHA-512, clamp, reduce), so the group key
/// is the key's usual public key.
///
/// **Single point of failure:** the key existed whole before this call.
#[cfg(feature = "spof-key-import")]
pub fn import_ed25519_seed(
    seed: &zeroize::Zeroizing<[u8; 32]>,
    threshold: Threshold,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<FrostKeyShare<Ed25519>>, TssError> {
    let expanded = ed25519_dalek::hazmat::ExpandedSecretKey::from(&**seed);
    let key = frost_ed25519::SigningKey::from_scalar(expanded.scalar)
        .map_err(|_| TssError::params("the Ed25519 seed expands to a zero scalar"))?;
    split_key(&key, threshold, rng)
}

/// Splits an existing secp256k1 private key (32 bytes, big-endian) into `n` Taproot shares.
/// The key becomes the BIP-341 internal key; the group key is its tweaked output key.
///
/// **Single point of failure:** the key existed whole before this call.
#[cfg(feature = "spof-key-import")]
pub fn import_taproot_secret_key(
    secret: &zeroize::Zeroizing<[u8; 32]>,
    threshold: Threshold,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<FrostKeyShare<Taproot>>, TssError> {
    let key = frost_secp256k1_tr::SigningKey::deserialize(secret.as_slice()).map_err(|_| {
        TssError::params("the private key is not a valid non-zero secp256k1 scalar")
    })?;
    split_key(&key, threshold, rng)
}
