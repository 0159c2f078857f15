//! Concord's threshold-signing engines behind one small interface.
//!
//! | scheme | library | DKG | import | presign | sign |
//! |---|---|---|---|---|---|
//! | ECDSA secp256k1 | `cggmp21 =0.6.3` | [`ecdsa::keygen`] | [`ecdsa::import_secret_key`]¹ | [`ecdsa::presign`] | [`ecdsa::sign`], [`ecdsa::sign_with_presignature`] |
//! | ECDSA secp256k1 | `dkls23 =0.6.2` | [`dkls::keygen`] | [`dkls::import_secret_key`]¹ | — | [`dkls::sign`] |
//! | Schnorr / Taproot | `frost-secp256k1-tr` | [`frost::dkg`] | [`frost::import_taproot_secret_key`]¹ | — | [`frost::sign`] |
//! | Ed25519 | `frost-ed25519` | [`frost::dkg`] | [`frost::import_ed25519_seed`]¹ | — | [`frost::sign`] |
//!
//! ¹ behind the `spof-key-import` feature: an imported key existed whole once.
//!
//! [`dkg`] and [`sign`] dispatch on the scheme, for callers that handle wallets of every kind.
//! Both ECDSA engines produce the same [`ecdsa::RecoverableSignature`] for the same kind of
//! key; a [`KeyShare`] says which [`Engine`] made it. For ECDSA [`dkg`] runs the
//! [`EcdsaEngine`] it is given (a signer group's choice).
//!
//! Every protocol party is driven by a stream of incoming and a sink of outgoing
//! [`Envelope`]s (see [`transport`]), so the same code runs in-process ([`local`]) and over
//! the network. The crate does no I/O of its own. Protocols wait for as long as their peers
//! take: the caller bounds them with a timeout.
//!
//! Secrets (key shares, presignatures, auxiliary material, primes) print `<redacted>` in
//! `Debug`, are encoded into zeroizing buffers, and load only through validation
//! (see [`stored`]). Their scalars are zeroized on drop by the underlying libraries
//! (`generic-ec`'s `SecretScalar`, frost's `ZeroizeOnDrop` packages, dkls23's `Party`). One
//! exception: the Paillier primes inside ECDSA auxiliary material are GMP integers (`rug`),
//! which offer no safe way to wipe their limbs.

pub mod dkls;
pub mod ecdsa;
mod envelope;
mod error;
pub mod frost;
pub mod local;
pub mod progress;
pub mod stored;
pub mod transport;

pub use concord_types::{DerivationPath, EcdsaEngine, Scheme, SessionId, Threshold, WalletId};
pub use envelope::{ENVELOPE_VERSION, Envelope, MAX_BODY_LEN};
pub use error::TssError;
pub use progress::{NoProgress, Progress, ProgressEvent};
pub use rand_core;
pub use stored::UncheckedKeyShare;
pub use transport::{Incoming, MessageKind, Outgoing, inspect};

use dkls::{DklsKeyShare, DklsP256Share};
use ecdsa::{AuxMaterial, EcdsaKeyShare, RecoverableSignature};
use frost::{Ed25519, FrostKeyShare, Taproot};
use rand_core::{CryptoRng, RngCore};

/// The threshold-signing library (protocol family) a key share belongs to. Shares of
/// different engines never sign together, even for the same scheme and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// CGGMP21 threshold ECDSA (Paillier; presignatures).
    Cggmp21,
    /// DKLs23 threshold ECDSA (oblivious transfer; no group setup).
    Dkls23,
    /// FROST threshold Schnorr (Taproot and Ed25519).
    Frost,
}

impl Engine {
    /// Canonical name: `cggmp21`, `dkls23`, `frost`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Cggmp21 => "cggmp21",
            Engine::Dkls23 => "dkls23",
            Engine::Frost => "frost",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One party's share of a wallet key, of any scheme.
#[derive(Debug)]
pub enum KeyShare {
    /// Threshold ECDSA (cggmp21).
    Ecdsa(EcdsaKeyShare),
    /// FROST Taproot.
    Taproot(FrostKeyShare<Taproot>),
    /// FROST Ed25519.
    Ed25519(FrostKeyShare<Ed25519>),
    /// Threshold ECDSA (DKLs23).
    Dkls(DklsKeyShare),
    /// Threshold ECDSA on NIST P-256 (DKLs23): ES256 exchange keys.
    DklsP256(DklsP256Share),
}

impl KeyShare {
    /// The share's scheme (both secp256k1 ECDSA engines are [`Scheme::EcdsaSecp256k1`]).
    pub fn scheme(&self) -> Scheme {
        match self {
            KeyShare::Ecdsa(_) | KeyShare::Dkls(_) => Scheme::EcdsaSecp256k1,
            KeyShare::DklsP256(_) => Scheme::EcdsaP256,
            KeyShare::Taproot(_) => Scheme::SchnorrTaproot,
            KeyShare::Ed25519(_) => Scheme::Ed25519,
        }
    }

    /// The library the share belongs to.
    pub fn engine(&self) -> Engine {
        match self {
            KeyShare::Ecdsa(_) => Engine::Cggmp21,
            KeyShare::Dkls(_) | KeyShare::DklsP256(_) => Engine::Dkls23,
            KeyShare::Taproot(_) | KeyShare::Ed25519(_) => Engine::Frost,
        }
    }

    /// A commitment to the group's public state for this key (the same at every member of
    /// one sharing; it changes with every refresh), for the engines that refresh: DKLs23 and
    /// FROST. `None` for cggmp21.
    pub fn public_commitment(&self) -> Option<[u8; 32]> {
        match self {
            KeyShare::Dkls(s) => Some(s.public_commitment()),
            KeyShare::DklsP256(s) => Some(s.public_commitment()),
            KeyShare::Taproot(s) => frost::public_commitment(s).ok(),
            KeyShare::Ed25519(s) => frost::public_commitment(s).ok(),
            KeyShare::Ecdsa(_) => None,
        }
    }

    /// This party's index in the group.
    pub fn index(&self) -> u16 {
        match self {
            KeyShare::Ecdsa(s) => s.index(),
            KeyShare::Taproot(s) => s.index(),
            KeyShare::Ed25519(s) => s.index(),
            KeyShare::Dkls(s) => s.index(),
            KeyShare::DklsP256(s) => s.index(),
        }
    }

    /// The signing threshold.
    pub fn threshold(&self) -> Threshold {
        match self {
            KeyShare::Ecdsa(s) => s.threshold(),
            KeyShare::Taproot(s) => s.threshold(),
            KeyShare::Ed25519(s) => s.threshold(),
            KeyShare::Dkls(s) => s.threshold(),
            KeyShare::DklsP256(s) => s.threshold(),
        }
    }

    /// The group public key: 33-byte SEC1 (ECDSA), 32-byte x-only output key (Taproot),
    /// 32-byte Ed25519 key.
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            KeyShare::Ecdsa(s) => s.public_key().to_vec(),
            KeyShare::Taproot(s) => s.public_key(),
            KeyShare::Ed25519(s) => s.public_key(),
            KeyShare::Dkls(s) => s.public_key().to_vec(),
            KeyShare::DklsP256(s) => s.public_key().to_vec(),
        }
    }

    /// The wallet the share belongs to.
    pub fn wallet_id(&self) -> WalletId {
        WalletId::derive(self.scheme(), &self.public_key())
    }

    /// Fails unless the share belongs to `wallet`.
    pub fn check_wallet(&self, wallet: WalletId) -> Result<(), TssError> {
        let found = self.wallet_id();
        if found != wallet {
            return Err(TssError::WrongWallet {
                expected: wallet,
                found,
            });
        }
        Ok(())
    }
}

/// A finished signature, verified against the group key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// ECDSA `(r, s, recovery id)`.
    Ecdsa(RecoverableSignature),
    /// BIP-340 Schnorr signature, 64 bytes.
    Taproot([u8; 64]),
    /// Ed25519 signature, 64 bytes.
    Ed25519([u8; 64]),
    /// ECDSA P-256 signature `r ‖ s` (low `s`), 64 bytes: a JWS ES256 signature.
    EcdsaP256([u8; 64]),
}

impl Signature {
    /// The signature's bytes as its verifiers expect them: 65 bytes `r || s || v` for
    /// ECDSA, 64 bytes otherwise.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Signature::Ecdsa(s) => s.to_bytes().to_vec(),
            Signature::Taproot(b) | Signature::Ed25519(b) | Signature::EcdsaP256(b) => b.to_vec(),
        }
    }
}

fn sig64(scheme: Scheme, bytes: Vec<u8>) -> Result<[u8; 64], TssError> {
    bytes.try_into().map_err(|_| TssError::InvalidSignature {
        scheme,
        culprits: Vec::new(),
    })
}

/// Distributed key generation for any scheme. ECDSA runs the group's `engine`: cggmp21 needs
/// the signer group's auxiliary material (which fixes this party's index), DKLs23 needs
/// none; FROST schemes take the index directly and ignore `engine`.
#[allow(clippy::too_many_arguments)]
pub async fn dkg(
    scheme: Scheme,
    engine: EcdsaEngine,
    session: SessionId,
    index: u16,
    threshold: Threshold,
    aux: Option<&AuxMaterial>,
    incoming: impl Incoming,
    outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<KeyShare, TssError> {
    match scheme {
        Scheme::EcdsaSecp256k1 if engine == EcdsaEngine::Dkls23 => {
            dkls::keygen(session, index, threshold, incoming, outgoing)
                .await
                .map(KeyShare::Dkls)
        }
        // P-256 keys always run DKLs23, whatever the group's engine for its chain wallets:
        // it needs no group setup.
        Scheme::EcdsaP256 => dkls::keygen(session, index, threshold, incoming, outgoing)
            .await
            .map(KeyShare::DklsP256),
        Scheme::EcdsaSecp256k1 => {
            let aux = aux.ok_or_else(|| {
                TssError::params("ECDSA key generation needs the signer group's auxiliary material")
            })?;
            if aux.index() != index {
                return Err(TssError::params(format!(
                    "party {index} was given party {}'s auxiliary material",
                    aux.index()
                )));
            }
            ecdsa::keygen(session, threshold, aux, incoming, outgoing, rng)
                .await
                .map(KeyShare::Ecdsa)
        }
        Scheme::SchnorrTaproot => frost::dkg(session, index, threshold, incoming, outgoing, rng)
            .await
            .map(KeyShare::Taproot),
        Scheme::Ed25519 => frost::dkg(session, index, threshold, incoming, outgoing, rng)
            .await
            .map(KeyShare::Ed25519),
    }
}

/// Proactive refresh of any share that can be refreshed (DKLs23, FROST Taproot, FROST
/// Ed25519; all `n` members take part): the key stays, every share changes. cggmp21 0.6 has
/// no threshold refresh: its shares are refused. DKLs23 draws its randomness itself.
pub async fn refresh(
    share: &KeyShare,
    session: SessionId,
    incoming: impl Incoming,
    outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<KeyShare, TssError> {
    match share {
        KeyShare::Dkls(s) => dkls::refresh(session, s, incoming, outgoing)
            .await
            .map(KeyShare::Dkls),
        KeyShare::DklsP256(s) => dkls::refresh(session, s, incoming, outgoing)
            .await
            .map(KeyShare::DklsP256),
        KeyShare::Taproot(s) => frost::refresh(session, s, incoming, outgoing, rng)
            .await
            .map(KeyShare::Taproot),
        KeyShare::Ed25519(s) => frost::refresh(session, s, incoming, outgoing, rng)
            .await
            .map(KeyShare::Ed25519),
        KeyShare::Ecdsa(_) => Err(TssError::params(
            "cggmp21 0.6 has no threshold key refresh: a cggmp21 wallet keeps its shares",
        )),
    }
}

/// A member's part in [`repair`].
pub enum RepairPart<'a> {
    /// A surviving member, with its share of the wallet.
    Helper(&'a KeyShare),
    /// The member whose share is rebuilt: it knows the wallet's scheme and its group's engine.
    Target {
        /// The wallet's scheme.
        scheme: Scheme,
        /// The group's ECDSA engine (for an ECDSA wallet).
        engine: EcdsaEngine,
    },
}

/// Rebuilds a lost member's share for the member now at `target` (DKLs23: [`dkls::repair`];
/// FROST: [`frost::repair`]), then every member refreshes; every member gets its new share.
/// cggmp21 0.6 has no repair.
#[allow(clippy::too_many_arguments)]
pub async fn repair(
    part: RepairPart<'_>,
    session: SessionId,
    index: u16,
    target: u16,
    threshold: Threshold,
    incoming: impl Incoming,
    outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<KeyShare, TssError> {
    use frost::RepairRole as F;
    /// Which engine repairs, with this member's role in it.
    enum Which<'a> {
        Dkls(dkls::RepairRole<'a, dkls::Secp256k1>),
        DklsP256(dkls::RepairRole<'a, dkls::P256>),
        Taproot(F<'a, Taproot>),
        Ed25519(F<'a, Ed25519>),
    }
    let which = match part {
        RepairPart::Helper(KeyShare::Dkls(s)) => Which::Dkls(dkls::RepairRole::Helper(s)),
        RepairPart::Helper(KeyShare::DklsP256(s)) => Which::DklsP256(dkls::RepairRole::Helper(s)),
        RepairPart::Target {
            scheme: Scheme::EcdsaP256,
            ..
        } => Which::DklsP256(dkls::RepairRole::Target),
        RepairPart::Helper(KeyShare::Taproot(s)) => Which::Taproot(F::Helper(s)),
        RepairPart::Helper(KeyShare::Ed25519(s)) => Which::Ed25519(F::Helper(s)),
        RepairPart::Target {
            scheme: Scheme::EcdsaSecp256k1,
            engine: EcdsaEngine::Dkls23,
        } => Which::Dkls(dkls::RepairRole::Target),
        RepairPart::Target {
            scheme: Scheme::SchnorrTaproot,
            ..
        } => Which::Taproot(F::Target),
        RepairPart::Target {
            scheme: Scheme::Ed25519,
            ..
        } => Which::Ed25519(F::Target),
        RepairPart::Helper(KeyShare::Ecdsa(_))
        | RepairPart::Target {
            scheme: Scheme::EcdsaSecp256k1,
            engine: EcdsaEngine::Cggmp21,
        } => {
            return Err(TssError::params(
                "cggmp21 0.6 has no share repair: a cggmp21 wallet's lost share cannot be rebuilt",
            ));
        }
    };
    match which {
        Which::Dkls(role) => {
            dkls::repair(session, role, index, target, threshold, incoming, outgoing)
                .await
                .map(KeyShare::Dkls)
        }
        Which::DklsP256(role) => {
            dkls::repair(session, role, index, target, threshold, incoming, outgoing)
                .await
                .map(KeyShare::DklsP256)
        }
        Which::Taproot(role) => frost::repair(
            session, role, index, target, threshold, incoming, outgoing, rng,
        )
        .await
        .map(KeyShare::Taproot),
        Which::Ed25519(role) => frost::repair(
            session, role, index, target, threshold, incoming, outgoing, rng,
        )
        .await
        .map(KeyShare::Ed25519),
    }
}

/// The members that help rebuild the share of the member at `target` in a repair (every
/// other member), once `index` and `target` are checked to be in the group and the helpers
/// to be at least `t`.
pub(crate) fn repair_helpers(
    index: u16,
    target: u16,
    threshold: Threshold,
) -> Result<Vec<u16>, TssError> {
    let n = threshold.n();
    if target >= n || index >= n {
        return Err(TssError::params(format!(
            "party {index} or target {target} is not in a {threshold} group"
        )));
    }
    let helpers: Vec<u16> = (0..n).filter(|p| *p != target).collect();
    if helpers.len() < usize::from(threshold.t()) {
        return Err(TssError::params(format!(
            "a {threshold} group cannot rebuild a share: {} other members are fewer than {}",
            helpers.len(),
            threshold.t()
        )));
    }
    Ok(helpers)
}

/// Interactive threshold signing with any share. For ECDSA `message` is the 32-byte digest
/// to sign (the chain's sighash) and exactly `t` signers take part; FROST schemes sign the
/// message itself with `t` or more signers. DKLs23 draws its randomness itself and ignores
/// `rng`.
pub async fn sign(
    share: &KeyShare,
    session: SessionId,
    signers: &[u16],
    message: &[u8],
    incoming: impl Incoming,
    outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<Signature, TssError> {
    sign_gated(
        share,
        session,
        signers,
        message,
        std::future::ready(Ok(())),
        incoming,
        outgoing,
        rng,
    )
    .await
}

/// [`sign`], with this signer's share of the signature held back until `gate` resolves
/// `Ok`: DKLs23 runs its first two rounds meanwhile (see [`dkls::sign_gated`]); the other
/// engines wait for the gate before their first message.
#[allow(clippy::too_many_arguments)]
pub async fn sign_gated(
    share: &KeyShare,
    session: SessionId,
    signers: &[u16],
    message: &[u8],
    gate: impl std::future::Future<Output = Result<(), TssError>>,
    incoming: impl Incoming,
    outgoing: impl Outgoing,
    rng: &mut (impl RngCore + CryptoRng + Send),
) -> Result<Signature, TssError> {
    let digest = || -> Result<&[u8; 32], TssError> {
        message.try_into().map_err(|_| {
            TssError::params(format!(
                "ECDSA signs a 32-byte digest, got {} bytes",
                message.len()
            ))
        })
    };
    match share {
        // DKLs23 runs its first rounds before the gate opens.
        KeyShare::Dkls(s) => {
            dkls::sign_gated(session, s, signers, digest()?, gate, incoming, outgoing)
                .await
                .map(Signature::Ecdsa)
        }
        KeyShare::DklsP256(s) => {
            dkls::sign_gated(session, s, signers, digest()?, gate, incoming, outgoing)
                .await
                .map(Signature::EcdsaP256)
        }
        KeyShare::Ecdsa(s) => {
            gate.await?;
            ecdsa::sign(session, s, signers, digest()?, incoming, outgoing, rng)
                .await
                .map(Signature::Ecdsa)
        }
        KeyShare::Taproot(s) => {
            gate.await?;
            let sig = frost::sign(session, s, signers, message, incoming, outgoing, rng).await?;
            Ok(Signature::Taproot(sig64(Scheme::SchnorrTaproot, sig)?))
        }
        KeyShare::Ed25519(s) => {
            gate.await?;
            let sig = frost::sign(session, s, signers, message, incoming, outgoing, rng).await?;
            Ok(Signature::Ed25519(sig64(Scheme::Ed25519, sig)?))
        }
    }
}
