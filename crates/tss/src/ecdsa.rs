//! Threshold ECDSA on secp256k1 with CGGMP21 (`cggmp21 =0.6.3`).
//!
//! A signer group prepares its auxiliary material once ([`Primes::generate`] then
//! [`generate_aux`]); every wallet of the group reuses it: [`keygen`] produces a key share
//! that embeds it. Signing is either interactive ([`sign`]) or split into an offline
//! [`presign`] and a one-round online step ([`sign_with_presignature`]).
//!
//! Signatures come out as 64-byte `(r, s)` with low `s`, plus the recovery id, and are
//! verified with `k256` (an implementation independent of the protocol's) before they are
//! returned.

use std::fmt;

#[cfg(feature = "spof-key-import")]
use cggmp21::generic_ec::{NonZero, SecretScalar};
use cggmp21::generic_ec::{Point, Scalar};
use cggmp21::key_share::{AnyKeyShare, DirtyAuxInfo, DirtyKeyShare};
use cggmp21::security_level::SecurityLevel128;
use cggmp21::supported_curves::Secp256k1;
use cggmp21::{DataToSign, ExecutionId, KeyShare, PartialSignature, Presignature};
use concord_types::{Scheme, SessionId, Threshold, WalletId};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::envelope::Tag;
use crate::progress::{Progress, ProgressEvent, RoundTracer};
use crate::transport::{
    Incoming, Outgoing, Roster, RoundIo, cbor_decode, cbor_encode, round_based_party,
};
use crate::{TssError, error::chain};

type E = Secp256k1;
type L = SecurityLevel128;

fn protocol_error(err: &dyn std::error::Error) -> TssError {
    TssError::Protocol {
        scheme: Scheme::EcdsaSecp256k1,
        culprits: Vec::new(),
        detail: chain(err),
    }
}

/// A party's pair of Paillier safe primes, the expensive part of the auxiliary material.
/// Secret: anyone holding them can decrypt this party's Paillier ciphertexts.
pub struct Primes(pub(crate) cggmp21::PregeneratedPrimes<L>);

impl fmt::Debug for Primes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Primes(<redacted>)")
    }
}

impl Primes {
    /// Generates two 1024-bit safe primes (about a minute on a small machine). `progress`
    /// is told when each prime is found.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng), progress: &mut dyn Progress) -> Primes {
        use cggmp21::fast_paillier::utils::generate_safe_prime;
        use cggmp21::security_level::KeygenSecurityLevel;
        let bits = 4 * L::SECURITY_BITS;
        progress.report(ProgressEvent::new("safe prime", 0, Some(2)));
        let p = generate_safe_prime(&mut *rng, bits);
        progress.report(ProgressEvent::new("safe prime", 1, Some(2)));
        let q = generate_safe_prime(&mut *rng, bits);
        progress.report(ProgressEvent::new("safe prime", 2, Some(2)));
        // Sizes are right by construction; `new` only checks sizes.
        match cggmp21::PregeneratedPrimes::new(p, q) {
            Some(primes) => Primes(primes),
            None => unreachable_primes(),
        }
    }
}

#[cold]
fn unreachable_primes() -> ! {
    // generate_safe_prime returns primes of exactly the requested size.
    panic!("safe prime generation returned primes of the wrong size")
}

/// This party's auxiliary material for a signer group: its Paillier key (secret) and every
/// member's public Paillier and ring-Pedersen parameters. Generated once per group, reused
/// by every wallet of the group.
pub struct AuxMaterial {
    pub(crate) index: u16,
    pub(crate) aux: cggmp21::key_share::AuxInfo<L>,
}

impl fmt::Debug for AuxMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuxMaterial")
            .field("index", &self.index)
            .field("n", &self.aux.parties.len())
            .field("paillier_key", &"<redacted>")
            .finish()
    }
}

impl AuxMaterial {
    /// This party's index in the signer group.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Size of the signer group the material was made for.
    pub fn group_size(&self) -> u16 {
        u16::try_from(self.aux.parties.len()).unwrap_or(u16::MAX)
    }
}

/// Runs the auxiliary-information protocol of the signer group (`n` members), consuming this
/// member's [`Primes`].
#[allow(clippy::too_many_arguments)]
pub async fn generate_aux(
    session: SessionId,
    index: u16,
    n: u16,
    primes: Primes,
    incoming: impl Incoming,
    outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
    progress: &mut dyn Progress,
) -> Result<AuxMaterial, TssError> {
    if n < 2 || index >= n {
        return Err(TssError::params(format!(
            "party index {index} is not in a signer group of {n} (need n >= 2, index < n)"
        )));
    }
    let roster = Roster {
        session,
        me: index,
        parties: (0..n).collect(),
        tag: Tag::EcdsaAuxInfo,
    };
    let (party, slot) =
        round_based_party::<cggmp21::key_refresh::msg::aux_only::Msg<Sha256, L>, _, _>(
            roster, incoming, outgoing,
        );
    let mut tracer = RoundTracer::new("auxiliary info round", progress);
    let aux = cggmp21::aux_info_gen(ExecutionId::new(session.as_bytes()), index, n, primes.0)
        .set_progress_tracer(&mut tracer)
        .start(rng, party)
        .await
        .map_err(|e| slot.take().unwrap_or_else(|| protocol_error(&e)))?;
    Ok(AuxMaterial { index, aux })
}

/// One party's share of a threshold ECDSA key, with the group's auxiliary material.
pub struct EcdsaKeyShare {
    pub(crate) share: KeyShare<E, L>,
}

impl fmt::Debug for EcdsaKeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcdsaKeyShare")
            .field("index", &self.index())
            .field("threshold", &self.threshold())
            .field("public_key", &hex::encode(self.public_key()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl EcdsaKeyShare {
    /// Combines a key share's core (from [`keygen`] or import) with this party's aux material.
    pub(crate) fn from_parts(
        core: cggmp21::IncompleteKeyShare<E>,
        aux: &AuxMaterial,
    ) -> Result<EcdsaKeyShare, TssError> {
        if core.i != aux.index {
            return Err(TssError::invalid_state(
                "key share",
                format!(
                    "key share is for party {} but the auxiliary material is party {}'s",
                    core.i, aux.index
                ),
            ));
        }
        let share = KeyShare::from_parts((core, aux.aux.clone()))
            .map_err(|e| TssError::invalid_state("key share", chain(&e.into_error())))?;
        Ok(EcdsaKeyShare { share })
    }

    /// This party's index in the group.
    pub fn index(&self) -> u16 {
        self.share.core.i
    }

    /// The signing threshold.
    pub fn threshold(&self) -> Threshold {
        let n = self.share.n();
        let t = self.share.min_signers();
        // A validated share always has 2 <= t <= n.
        Threshold::new(t, n).unwrap_or_else(|_| unreachable_threshold(t, n))
    }

    /// The group public key, SEC1 compressed (33 bytes).
    pub fn public_key(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out.copy_from_slice(self.share.core.shared_public_key.to_bytes(true).as_bytes());
        out
    }

    /// The wallet this share belongs to.
    pub fn wallet_id(&self) -> WalletId {
        WalletId::derive(Scheme::EcdsaSecp256k1, &self.public_key())
    }

    /// The underlying cggmp21 key share, for benchmarks that measure the bare library.
    #[doc(hidden)]
    pub fn raw_cggmp21(&self) -> &KeyShare<E, L> {
        &self.share
    }

    pub(crate) fn to_dirty(&self) -> &DirtyKeyShare<E, L> {
        &self.share
    }
}

#[cold]
fn unreachable_threshold(t: u16, n: u16) -> Threshold {
    panic!("validated key share has an invalid threshold {t}-of-{n}")
}

/// Distributed key generation, `t`-of-`n` over the signer group whose aux material is `aux`.
/// The key never exists whole.
pub async fn keygen(
    session: SessionId,
    threshold: Threshold,
    aux: &AuxMaterial,
    incoming: impl Incoming,
    outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<EcdsaKeyShare, TssError> {
    let index = aux.index;
    let n = threshold.n();
    if aux.group_size() != n {
        return Err(TssError::params(format!(
            "threshold {threshold} does not match the signer group's auxiliary material for {} parties",
            aux.group_size()
        )));
    }
    let roster = Roster {
        session,
        me: index,
        parties: (0..n).collect(),
        tag: Tag::EcdsaKeygen,
    };
    let (party, slot) = round_based_party::<cggmp21::keygen::ThresholdMsg<E, L, Sha256>, _, _>(
        roster, incoming, outgoing,
    );
    let core = cggmp21::keygen::<E>(ExecutionId::new(session.as_bytes()), index, n)
        .set_threshold(threshold.t())
        .start(rng, party)
        .await
        .map_err(|e| slot.take().unwrap_or_else(|| protocol_error(&e)))?;
    EcdsaKeyShare::from_parts(core, aux)
}

/// The core (no aux material) of one party's share of an imported key, as the importing
/// tool seals it to that party. Secret.
pub struct EcdsaCoreShare(pub(crate) cggmp21::IncompleteKeyShare<E>);

impl fmt::Debug for EcdsaCoreShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcdsaCoreShare")
            .field("index", &self.0.i)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl EcdsaCoreShare {
    /// Party index the core share is for.
    pub fn index(&self) -> u16 {
        self.0.i
    }

    /// The group public key (SEC1 compressed) the share belongs to.
    pub fn public_key(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out.copy_from_slice(self.0.shared_public_key.to_bytes(true).as_bytes());
        out
    }

    /// Completes the share with the receiving party's aux material.
    pub fn complete(self, aux: &AuxMaterial) -> Result<EcdsaKeyShare, TssError> {
        EcdsaKeyShare::from_parts(self.0, aux)
    }
}

/// Splits an existing secp256k1 private key into `n` core shares (Shamir, threshold `t`).
///
/// **Single point of failure:** the key existed whole before this call; whoever held it can
/// still sign alone. Prefer [`keygen`].
#[cfg(feature = "spof-key-import")]
pub fn import_secret_key(
    secret: &zeroize::Zeroizing<[u8; 32]>,
    threshold: Threshold,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<EcdsaCoreShare>, TssError> {
    let scalar = SecretScalar::<E>::from_be_bytes(secret.as_slice()).map_err(|_| {
        TssError::params(
            "the private key is not a valid secp256k1 scalar (it must be below the group order)",
        )
    })?;
    let scalar = NonZero::from_secret_scalar(scalar)
        .ok_or_else(|| TssError::params("the private key is zero"))?;
    let cores = cggmp21::trusted_dealer::builder::<E, L>(threshold.n())
        .set_threshold(Some(threshold.t()))
        .set_shared_secret_key(scalar)
        .generate_core_shares(rng)
        .map_err(|e| TssError::params(chain(&e)))?;
    Ok(cores.into_iter().map(EcdsaCoreShare).collect())
}

/// A presignature: everything needed to sign one message without interaction, for one
/// fixed set of signers.
///
/// **Never use one twice**: two signatures from one presignature reveal the key. It is
/// consumed by value; the caller must persist that it is consumed *before* the partial
/// signature leaves the party, so that a crash cannot make it usable again.
pub struct EcdsaPresignature {
    pub(crate) wallet: WalletId,
    pub(crate) index: u16,
    pub(crate) signers: Vec<u16>,
    pub(crate) public_key: [u8; 33],
    pub(crate) presig: Presignature<E>,
}

impl fmt::Debug for EcdsaPresignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcdsaPresignature")
            .field("wallet", &self.wallet)
            .field("index", &self.index)
            .field("signers", &self.signers)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl EcdsaPresignature {
    /// The wallet the presignature is for.
    pub fn wallet_id(&self) -> WalletId {
        self.wallet
    }

    /// The signers (group indices, ascending) that must all take part in the online step.
    pub fn signers(&self) -> &[u16] {
        &self.signers
    }

    /// This party's index.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The group public key (SEC1 compressed) the signature will verify against.
    pub fn public_key(&self) -> [u8; 33] {
        self.public_key
    }

    /// A public fingerprint of the presignature (its nonce point), identical at every signer:
    /// useful to log and to match presignatures across parties without revealing anything.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = Sha256::new();
        h.update(b"concord/presignature/v1\0");
        h.update(self.presig.R.to_bytes(true).as_bytes());
        h.finalize().into()
    }

    /// Issues this party's partial signature on a 32-byte digest, consuming the presignature.
    pub fn issue_partial(self, digest: &[u8; 32]) -> EcdsaPartialSignature {
        let data = DataToSign::<E>::from_scalar(Scalar::from_be_bytes_mod_order(digest));
        let index = self.index;
        let partial = self.presig.issue_partial_signature(data);
        EcdsaPartialSignature {
            signer: index,
            r: partial
                .r
                .to_be_bytes()
                .as_bytes()
                .try_into()
                .unwrap_or([0; 32]),
            sigma: partial
                .sigma
                .to_be_bytes()
                .as_bytes()
                .try_into()
                .unwrap_or([0; 32]),
        }
    }
}

/// One signer's contribution to a signature made from presignatures. Not secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcdsaPartialSignature {
    /// Group index of the signer.
    pub signer: u16,
    /// The `r` the partial signature commits to (same at every signer).
    pub r: [u8; 32],
    /// The signer's share of `s`.
    pub sigma: [u8; 32],
}

/// A final ECDSA signature: `r`, low `s`, and the recovery id (`v` = 27 + recovery id in
/// legacy Ethereum encodings, or `y_parity` in typed transactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverableSignature {
    /// `r`, big-endian.
    pub r: [u8; 32],
    /// `s`, big-endian, in the lower half of the group order.
    pub s: [u8; 32],
    /// 0 or 1: parity of the nonce point's `y` (the nonce's `x` never exceeds the order in practice).
    pub recovery_id: u8,
}

impl RecoverableSignature {
    /// `r || s` (64 bytes).
    pub fn to_rs_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.r);
        out[32..].copy_from_slice(&self.s);
        out
    }

    /// `r || s || recovery_id` (65 bytes), the layout Ethereum tooling expects.
    pub fn to_bytes(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&self.to_rs_bytes());
        out[64] = self.recovery_id;
        out
    }

    /// Verifies with `k256` against a SEC1 public key and a 32-byte digest, and checks that
    /// the recovery id recovers that key.
    pub fn verify(&self, public_key: &[u8], digest: &[u8; 32]) -> Result<(), TssError> {
        let bad = || TssError::InvalidSignature {
            scheme: Scheme::EcdsaSecp256k1,
            culprits: Vec::new(),
        };
        let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
            .map_err(|_| TssError::params("the public key is not a valid SEC1 secp256k1 point"))?;
        let sig = k256::ecdsa::Signature::from_scalars(self.r, self.s).map_err(|_| bad())?;
        if sig.normalize_s().is_some() {
            return Err(bad());
        }
        vk.verify_prehash(digest, &sig).map_err(|_| bad())?;
        let rid = k256::ecdsa::RecoveryId::from_byte(self.recovery_id).ok_or_else(bad)?;
        let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(digest, &sig, rid)
            .map_err(|_| bad())?;
        if recovered != vk {
            return Err(bad());
        }
        Ok(())
    }
}

/// Turns a verified-by-cggmp21 `(r, s)` into a [`RecoverableSignature`], finding the
/// recovery id with k256 and verifying independently.
fn finish(
    sig: cggmp21::Signature<E>,
    public_key: &[u8; 33],
    digest: &[u8; 32],
) -> Result<RecoverableSignature, TssError> {
    let sig = sig.normalize_s();
    let mut rs = [0u8; 64];
    sig.write_to_slice(&mut rs);
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&rs[..32]);
    s.copy_from_slice(&rs[32..]);
    for recovery_id in [0u8, 1] {
        let candidate = RecoverableSignature { r, s, recovery_id };
        if candidate.verify(public_key, digest).is_ok() {
            return Ok(candidate);
        }
    }
    Err(TssError::InvalidSignature {
        scheme: Scheme::EcdsaSecp256k1,
        culprits: Vec::new(),
    })
}

fn signer_roster(
    session: SessionId,
    share: &EcdsaKeyShare,
    signers: &[u16],
    tag: Tag,
) -> Result<Roster, TssError> {
    Roster::for_signers(
        session,
        share.index(),
        share.threshold(),
        signers,
        true,
        tag,
    )
}

/// Generates a presignature with exactly `t` signers (group indices).
pub async fn presign(
    session: SessionId,
    share: &EcdsaKeyShare,
    signers: &[u16],
    incoming: impl Incoming,
    outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<EcdsaPresignature, TssError> {
    let roster = signer_roster(session, share, signers, Tag::EcdsaSigning)?;
    let parties = roster.parties.clone();
    let position = position_of(&parties, share.index())?;
    let (party, slot) = round_based_party::<cggmp21::signing::msg::Msg<E, Sha256>, _, _>(
        roster, incoming, outgoing,
    );
    let presig = cggmp21::signing(
        ExecutionId::new(session.as_bytes()),
        position,
        &parties,
        &share.share,
    )
    .generate_presignature(rng, party)
    .await
    .map_err(|e| slot.take().unwrap_or_else(|| protocol_error(&e)))?;
    Ok(EcdsaPresignature {
        wallet: share.wallet_id(),
        index: share.index(),
        signers: parties,
        public_key: share.public_key(),
        presig,
    })
}

fn position_of(parties: &[u16], index: u16) -> Result<u16, TssError> {
    parties
        .iter()
        .position(|p| *p == index)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            TssError::params(format!(
                "party {index} is not among the signers {parties:?}"
            ))
        })
}

/// Interactive signing of a 32-byte digest by exactly `t` signers.
pub async fn sign(
    session: SessionId,
    share: &EcdsaKeyShare,
    signers: &[u16],
    digest: &[u8; 32],
    incoming: impl Incoming,
    outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<RecoverableSignature, TssError> {
    let roster = signer_roster(session, share, signers, Tag::EcdsaSigning)?;
    let parties = roster.parties.clone();
    let position = position_of(&parties, share.index())?;
    let (party, slot) = round_based_party::<cggmp21::signing::msg::Msg<E, Sha256>, _, _>(
        roster, incoming, outgoing,
    );
    let data = DataToSign::<E>::from_scalar(Scalar::from_be_bytes_mod_order(digest));
    let sig = cggmp21::signing(
        ExecutionId::new(session.as_bytes()),
        position,
        &parties,
        &share.share,
    )
    .sign(rng, party, data)
    .await
    .map_err(|e| slot.take().unwrap_or_else(|| protocol_error(&e)))?;
    finish(sig, &share.public_key(), digest)
}

/// Combines the partial signatures of every signer of a presignature into a signature,
/// verified against `public_key` before it is returned.
pub fn combine(
    public_key: &[u8; 33],
    digest: &[u8; 32],
    signers: &[u16],
    partials: &[EcdsaPartialSignature],
) -> Result<RecoverableSignature, TssError> {
    let mut got: Vec<u16> = partials.iter().map(|p| p.signer).collect();
    got.sort_unstable();
    let mut want = signers.to_vec();
    want.sort_unstable();
    if got != want {
        return Err(TssError::params(format!(
            "partial signatures from parties {got:?} do not match the presignature's signers {want:?}"
        )));
    }
    let Some(first) = partials.first() else {
        return Err(TssError::params("no partial signatures to combine"));
    };
    let mismatched: Vec<u16> = partials
        .iter()
        .filter(|p| p.r != first.r)
        .map(|p| p.signer)
        .collect();
    if !mismatched.is_empty() {
        return Err(TssError::InconsistentBroadcast {
            parties: mismatched,
            round: 1,
        });
    }
    let mut parts = Vec::with_capacity(partials.len());
    for p in partials {
        let r = Scalar::<E>::from_be_bytes(p.r).map_err(|_| TssError::MalformedMessage {
            party: p.signer,
            reason: "partial signature r is not a scalar".into(),
        })?;
        let sigma =
            Scalar::<E>::from_be_bytes(p.sigma).map_err(|_| TssError::MalformedMessage {
                party: p.signer,
                reason: "partial signature sigma is not a scalar".into(),
            })?;
        parts.push(PartialSignature { r, sigma });
    }
    let sig = PartialSignature::combine(&parts).ok_or(TssError::InvalidSignature {
        scheme: Scheme::EcdsaSecp256k1,
        culprits: Vec::new(),
    })?;
    finish(sig, public_key, digest)
}

/// The online step: every signer of the presignature broadcasts its partial signature and
/// each combines and verifies. One round.
pub async fn sign_with_presignature(
    session: SessionId,
    presignature: EcdsaPresignature,
    digest: &[u8; 32],
    mut incoming: impl Incoming,
    mut outgoing: impl Outgoing,
) -> Result<RecoverableSignature, TssError> {
    let signers = presignature.signers.clone();
    let public_key = presignature.public_key;
    let me = presignature.index;
    let roster = Roster {
        session,
        me,
        parties: signers.clone(),
        tag: Tag::EcdsaOnline,
    };
    let others: Vec<u16> = signers.iter().copied().filter(|p| *p != me).collect();
    let mine = presignature.issue_partial(digest);
    let mut io = RoundIo::new(roster, &mut incoming, &mut outgoing);
    io.send(None, 1, &cbor_encode(&mine)).await?;
    let received = io.collect(1, &others, false).await?;
    let mut partials = vec![mine];
    for (party, bytes) in received {
        let p: EcdsaPartialSignature =
            cbor_decode(&bytes).map_err(|reason| TssError::MalformedMessage {
                party,
                reason: format!("undecodable partial signature: {reason}"),
            })?;
        if p.signer != party {
            return Err(TssError::MalformedMessage {
                party,
                reason: format!("partial signature claims to be party {}'s", p.signer),
            });
        }
        partials.push(p);
    }
    combine(&public_key, digest, &signers, &partials)
}

/// Derives the public point of a 33-byte SEC1 key as cggmp21 sees it (used by validation).
pub(crate) fn point_from_sec1(bytes: &[u8]) -> Option<Point<E>> {
    Point::<E>::from_bytes(bytes).ok()
}

pub(crate) type DirtyShare = DirtyKeyShare<E, L>;
pub(crate) type DirtyAux = DirtyAuxInfo<L>;
pub(crate) type DirtyCore = cggmp21::key_share::DirtyIncompleteKeyShare<E>;
pub(crate) type Presig = Presignature<E>;

pub(crate) fn validate_share(dirty: DirtyShare) -> Result<EcdsaKeyShare, TssError> {
    let share = cggmp21::key_share::Valid::validate(dirty)
        .map_err(|e| TssError::invalid_state("ECDSA key share", chain(&e.into_error())))?;
    Ok(EcdsaKeyShare { share })
}

pub(crate) fn validate_aux(index: u16, dirty: DirtyAux) -> Result<AuxMaterial, TssError> {
    if usize::from(index) >= dirty.parties.len() {
        return Err(TssError::invalid_state(
            "auxiliary material",
            format!(
                "party index {index} outside a group of {}",
                dirty.parties.len()
            ),
        ));
    }
    let aux = cggmp21::key_share::Valid::validate(dirty)
        .map_err(|e| TssError::invalid_state("auxiliary material", chain(&e.into_error())))?;
    // The secret primes must match this party's public modulus.
    let own = &aux.parties[usize::from(index)];
    if cggmp21::rug::Integer::from(&aux.p * &aux.q) != own.N {
        return Err(TssError::invalid_state(
            "auxiliary material",
            format!("the Paillier primes do not match party {index}'s public modulus"),
        ));
    }
    Ok(AuxMaterial { index, aux })
}

pub(crate) fn validate_core(dirty: DirtyCore) -> Result<EcdsaCoreShare, TssError> {
    let core = cggmp21::key_share::Valid::validate(dirty)
        .map_err(|e| TssError::invalid_state("ECDSA core key share", chain(&e.into_error())))?;
    Ok(EcdsaCoreShare(core))
}
