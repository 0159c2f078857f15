//! Versioned, self-describing encodings of everything a party keeps: key shares, auxiliary
//! material, safe primes, presignatures and imported core shares.
//!
//! Every record is `magic (3 bytes) || format version (1 byte) || CBOR body`. Decoding yields
//! an *unchecked* value; only validation turns it into something the protocols accept.
//! Encodings of secrets are returned as [`Zeroizing`] buffers.
//!
//! A key share record names its scheme, index and threshold, and (DKLs23 shares only, so the
//! records of the other engines keep their bytes) its [`Engine`](crate::Engine). A DKLs23 share's body holds
//! the library's whole party state, including the pairwise OT state DKG set up.

use concord_types::{Scheme, Threshold, WalletId};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use crate::dkls::{self, DklsEngineCurve, DklsShare};
use crate::ecdsa::{self, AuxMaterial, EcdsaCoreShare, EcdsaPresignature, Primes};
use crate::frost::{Ed25519, FrostKeyShare, FrostSuite, Taproot};
use crate::transport::{cbor_decode, cbor_encode};
use crate::{KeyShare, TssError};

/// Format version written by this build.
pub const FORMAT_VERSION: u8 = 1;

const KEY_SHARE: &[u8; 3] = b"CKS";
const AUX: &[u8; 3] = b"CAX";
const PRIMES: &[u8; 3] = b"CPR";
const PRESIG: &[u8; 3] = b"CPS";
const CORE: &[u8; 3] = b"CCS";

fn encode_record(magic: &[u8; 3], value: &impl Serialize) -> Zeroizing<Vec<u8>> {
    let body = Zeroizing::new(cbor_encode(value));
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() + 4));
    out.extend_from_slice(magic);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&body);
    out
}

fn decode_record<T: DeserializeOwned>(
    magic: &[u8; 3],
    what: &'static str,
    bytes: &[u8],
) -> Result<T, TssError> {
    if bytes.len() < 4 || &bytes[..3] != magic {
        return Err(TssError::invalid_state(
            what,
            format!("this is not a stored {what} (wrong header)"),
        ));
    }
    if bytes[3] != FORMAT_VERSION {
        return Err(TssError::UnsupportedVersion {
            what,
            found: bytes[3],
            supported: FORMAT_VERSION,
        });
    }
    cbor_decode(&bytes[4..])
        .map_err(|e| TssError::invalid_state(what, format!("corrupt encoding: {e}")))
}

/// The engine as the key share record names it. Absent means the scheme's original engine
/// (cggmp21 for ECDSA, FROST otherwise), so records written before DKLs23 existed still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum RecordEngine {
    #[serde(rename = "dkls23")]
    Dkls23,
}

#[derive(Serialize, Deserialize)]
struct KeyShareRecord {
    scheme: Scheme,
    index: u16,
    threshold: Threshold,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    engine: Option<RecordEngine>,
}

impl Drop for KeyShareRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.body);
    }
}

#[derive(Serialize, Deserialize)]
struct FrostBody {
    #[serde(with = "serde_bytes")]
    key_package: Vec<u8>,
    #[serde(with = "serde_bytes")]
    public_key_package: Vec<u8>,
    #[serde(with = "serde_bytes")]
    untweaked_key: Vec<u8>,
}

impl Drop for FrostBody {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key_package);
    }
}

fn frost_body<C: FrostSuite>(share: &FrostKeyShare<C>) -> Zeroizing<Vec<u8>> {
    let body = FrostBody {
        key_package: share.key_package.serialize().unwrap_or_default(),
        public_key_package: share.public_key_package.serialize().unwrap_or_default(),
        untweaked_key: share.untweaked_key.serialize().unwrap_or_default(),
    };
    Zeroizing::new(cbor_encode(&body))
}

fn frost_from_body<C: FrostSuite>(
    index: u16,
    threshold: Threshold,
    body: &[u8],
) -> Result<FrostKeyShare<C>, TssError> {
    let bad = |e: String| TssError::invalid_state("FROST key share", e);
    let b: FrostBody = cbor_decode(body).map_err(bad)?;
    Ok(FrostKeyShare {
        index,
        threshold,
        key_package: frost_core::keys::KeyPackage::deserialize(&b.key_package)
            .map_err(|e| bad(e.to_string()))?,
        public_key_package: frost_core::keys::PublicKeyPackage::deserialize(&b.public_key_package)
            .map_err(|e| bad(e.to_string()))?,
        untweaked_key: frost_core::VerifyingKey::deserialize(&b.untweaked_key)
            .map_err(|e| bad(e.to_string()))?,
    })
}

/// A DKLs23 share's body, as written.
#[derive(Serialize)]
#[serde(bound = "")]
struct DklsBodyRef<'a, C: DklsEngineCurve> {
    party: &'a dkls::Party<C>,
    public: &'a dkls::PublicKeyPackage<C>,
    excluded: Vec<u16>,
}

/// A DKLs23 share's body, as read (the library zeroizes the party state on drop).
#[derive(Deserialize)]
#[serde(bound = "")]
struct DklsBody<C: DklsEngineCurve> {
    party: dkls::Party<C>,
    public: dkls::PublicKeyPackage<C>,
    excluded: Vec<u16>,
}

impl KeyShare {
    /// The stored encoding (secret: keep it sealed).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        match self {
            KeyShare::Ecdsa(s) => s.to_bytes(),
            KeyShare::Taproot(s) => s.to_bytes(),
            KeyShare::Ed25519(s) => s.to_bytes(),
            KeyShare::Dkls(s) => s.to_bytes(),
            KeyShare::DklsP256(s) => s.to_bytes(),
        }
    }
}

impl<C: DklsEngineCurve> DklsShare<C> {
    /// The stored encoding (secret: keep it sealed, and re-store it after
    /// [`DklsShare::exclude`]). Loads back as a [`KeyShare`].
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let body = Zeroizing::new(cbor_encode(&DklsBodyRef {
            party: &self.party,
            public: &self.public,
            excluded: self.excluded.iter().copied().collect(),
        }));
        let record = KeyShareRecord {
            scheme: C::SCHEME,
            index: self.index,
            threshold: self.threshold,
            body: body.to_vec(),
            engine: Some(RecordEngine::Dkls23),
        };
        encode_record(KEY_SHARE, &record)
    }
}

fn dkls_from_body<C: DklsEngineCurve>(
    index: u16,
    threshold: Threshold,
    body: &[u8],
) -> Result<DklsShare<C>, TssError> {
    let b: DklsBody<C> =
        cbor_decode(body).map_err(|e| TssError::invalid_state("DKLs23 key share", e))?;
    Ok(DklsShare {
        index,
        threshold,
        party: b.party,
        public: b.public,
        excluded: b.excluded.into_iter().collect(),
    })
}

impl crate::ecdsa::EcdsaKeyShare {
    /// The stored encoding (secret: keep it sealed). Loads back as a [`KeyShare`].
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let body = Zeroizing::new(cbor_encode(self.to_dirty()));
        key_share_record(
            Scheme::EcdsaSecp256k1,
            self.index(),
            self.threshold(),
            &body,
        )
    }
}

impl<C: FrostSuite> FrostKeyShare<C> {
    /// The stored encoding (secret: keep it sealed). Loads back as a [`KeyShare`].
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        key_share_record(C::SCHEME, self.index(), self.threshold(), &frost_body(self))
    }
}

fn key_share_record(
    scheme: Scheme,
    index: u16,
    threshold: Threshold,
    body: &[u8],
) -> Zeroizing<Vec<u8>> {
    let record = KeyShareRecord {
        scheme,
        index,
        threshold,
        body: body.to_vec(),
        engine: None,
    };
    encode_record(KEY_SHARE, &record)
}

enum UncheckedInner {
    Ecdsa(Box<ecdsa::DirtyShare>),
    Taproot(FrostKeyShare<Taproot>),
    Ed25519(FrostKeyShare<Ed25519>),
    Dkls(Box<dkls::DklsKeyShare>),
    DklsP256(Box<dkls::DklsP256Share>),
}

/// A key share read from storage but not yet validated. Only [`UncheckedKeyShare::validate`]
/// or [`UncheckedKeyShare::validate_for`] turn it into a usable [`KeyShare`].
pub struct UncheckedKeyShare {
    index: u16,
    threshold: Threshold,
    inner: UncheckedInner,
}

impl std::fmt::Debug for UncheckedKeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UncheckedKeyShare")
            .field("index", &self.index)
            .field("threshold", &self.threshold)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl UncheckedKeyShare {
    /// Parses a stored key share. Checks the header and version only.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TssError> {
        let record: KeyShareRecord = decode_record(KEY_SHARE, "key share", bytes)?;
        let inner = match (record.engine, record.scheme) {
            (Some(RecordEngine::Dkls23), Scheme::EcdsaSecp256k1) => UncheckedInner::Dkls(Box::new(
                dkls_from_body(record.index, record.threshold, &record.body)?,
            )),
            (Some(RecordEngine::Dkls23), Scheme::EcdsaP256) => UncheckedInner::DklsP256(Box::new(
                dkls_from_body(record.index, record.threshold, &record.body)?,
            )),
            (None, Scheme::EcdsaP256) => {
                return Err(TssError::invalid_state(
                    "key share",
                    "a P-256 key share record must name the DKLs23 engine",
                ));
            }
            (Some(RecordEngine::Dkls23), scheme) => {
                return Err(TssError::invalid_state(
                    "key share",
                    format!(
                        "the record names the DKLs23 engine for scheme {scheme}, which DKLs23 does not implement"
                    ),
                ));
            }
            (None, Scheme::EcdsaSecp256k1) => UncheckedInner::Ecdsa(Box::new(
                cbor_decode(&record.body)
                    .map_err(|e| TssError::invalid_state("ECDSA key share", e))?,
            )),
            (None, Scheme::SchnorrTaproot) => UncheckedInner::Taproot(frost_from_body(
                record.index,
                record.threshold,
                &record.body,
            )?),
            (None, Scheme::Ed25519) => UncheckedInner::Ed25519(frost_from_body(
                record.index,
                record.threshold,
                &record.body,
            )?),
        };
        Ok(UncheckedKeyShare {
            index: record.index,
            threshold: record.threshold,
            inner,
        })
    }

    /// Validates the share's internal consistency.
    pub fn validate(self) -> Result<KeyShare, TssError> {
        let share = match self.inner {
            UncheckedInner::Ecdsa(dirty) => KeyShare::Ecdsa(ecdsa::validate_share(*dirty)?),
            UncheckedInner::Taproot(s) => KeyShare::Taproot(s.validate()?),
            UncheckedInner::Ed25519(s) => KeyShare::Ed25519(s.validate()?),
            UncheckedInner::Dkls(s) => KeyShare::Dkls(s.validate()?),
            UncheckedInner::DklsP256(s) => KeyShare::DklsP256(s.validate()?),
        };
        if share.index() != self.index || share.threshold() != self.threshold {
            return Err(TssError::invalid_state(
                "key share",
                format!(
                    "the record says party {} of a {} group but the share is party {} of a {} group",
                    self.index,
                    self.threshold,
                    share.index(),
                    share.threshold()
                ),
            ));
        }
        Ok(share)
    }

    /// Validates the share and checks that it belongs to `wallet`.
    pub fn validate_for(self, wallet: WalletId) -> Result<KeyShare, TssError> {
        let share = self.validate()?;
        share.check_wallet(wallet)?;
        Ok(share)
    }
}

#[derive(Serialize, Deserialize)]
struct AuxRecord {
    index: u16,
    aux: ecdsa::DirtyAux,
}

impl AuxMaterial {
    /// The stored encoding (secret: it holds this party's Paillier key).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        encode_record(
            AUX,
            &AuxRecord {
                index: self.index,
                aux: (*self.aux).clone(),
            },
        )
    }

    /// Parses and validates stored auxiliary material.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TssError> {
        let r: AuxRecord = decode_record(AUX, "auxiliary material", bytes)?;
        ecdsa::validate_aux(r.index, r.aux)
    }
}

impl Primes {
    /// The stored encoding (secret).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        encode_record(PRIMES, &self.0)
    }

    /// Parses stored primes (sizes are checked; primality is proven later by the aux protocol).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TssError> {
        let p: cggmp21::PregeneratedPrimes = decode_record(PRIMES, "safe primes", bytes)?;
        let (p, q) = p.split();
        cggmp21::PregeneratedPrimes::new(p, q)
            .map(Primes)
            .ok_or_else(|| {
                TssError::invalid_state(
                    "safe primes",
                    "the primes are too small for 128-bit security",
                )
            })
    }
}

#[derive(Serialize, Deserialize)]
struct PresigRecord {
    wallet: WalletId,
    index: u16,
    signers: Vec<u16>,
    #[serde(with = "serde_bytes")]
    public_key: Vec<u8>,
    presig: ecdsa::Presig,
}

impl EcdsaPresignature {
    /// The stored encoding (secret).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        encode_record(
            PRESIG,
            &PresigRecord {
                wallet: self.wallet,
                index: self.index,
                signers: self.signers.clone(),
                public_key: self.public_key.to_vec(),
                presig: self.presig.clone(),
            },
        )
    }

    /// Parses and checks a stored presignature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TssError> {
        let r: PresigRecord = decode_record(PRESIG, "presignature", bytes)?;
        let bad = |m: &str| TssError::invalid_state("presignature", m);
        let public_key: [u8; 33] = r
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| bad("public key is not 33 bytes"))?;
        if ecdsa::point_from_sec1(&public_key).is_none() {
            return Err(bad("public key is not a secp256k1 point"));
        }
        if WalletId::derive(Scheme::EcdsaSecp256k1, &public_key) != r.wallet {
            return Err(bad("wallet id does not match the public key"));
        }
        let mut sorted = r.signers.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted != r.signers || sorted.len() < 2 || !sorted.contains(&r.index) {
            return Err(bad(
                "signer list is not a sorted set of at least two parties including this one",
            ));
        }
        Ok(EcdsaPresignature {
            wallet: r.wallet,
            index: r.index,
            signers: r.signers,
            public_key,
            presig: r.presig,
        })
    }
}

impl EcdsaCoreShare {
    /// The encoding an importing tool seals to the receiving party (secret).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        encode_record(CORE, &*self.0)
    }

    /// Parses and validates a core share.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TssError> {
        let dirty: ecdsa::DirtyCore = decode_record(CORE, "ECDSA core key share", bytes)?;
        ecdsa::validate_core(dirty)
    }
}
