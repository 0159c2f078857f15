//! A module's (or the coordinator's) keys.
//!
//! - [`IdentityKey`] / [`PublicIdentity`]: the Ed25519 "environment-specific key". It
//!   authenticates the party in mutual TLS ([`crate::tls`]), signs every sealed MPC message
//!   ([`crate::seal`]) and vouches for the party's sealing key.
//! - [`IdentitySigner`]: what signs as a party. [`IdentityKey`] is one; a module whose
//!   identity key lives in an HSM supplies another, which asks the token to sign (the secret
//!   never enters this process).
//! - [`SealingKey`] / [`SealingPublicKey`]: the static X25519 key that peers seal MPC messages
//!   to with HPKE.
//!
//! Operators pin public keys by comparing [`PublicIdentity::fingerprint`]s by eye.
//!
//! Everything the identity key signs starts with its own prefix, so no signature can be
//! replayed from one use to another: TLS 1.3 `CertificateVerify` content (64 spaces), X.509
//! certificates (a DER `SEQUENCE`, `0x30`), sealed-message signatures (`concord/mpc/v1/...`)
//! and sealing-key bindings (`concord/sealing-key/v1`). Other signed objects should take
//! their own `concord/...` tag.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::WireError;

/// Domain tag of the signature that binds a sealing key to an identity key.
const SEALING_KEY_BINDING_TAG: &[u8] = b"concord/sealing-key/v1";
/// Domain tag of the signature that binds a module's own secp256k1 key (its native-multisig
/// key) to its identity key.
const MULTISIG_KEY_BINDING_TAG: &[u8] = b"concord/multisig-key/v1";

/// A party's Ed25519 identity key (secret). Zeroized on drop; `Debug` prints `<redacted>`.
pub struct IdentityKey(SigningKey);

impl IdentityKey {
    /// A fresh identity key from a cryptographically secure RNG.
    pub fn generate<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        IdentityKey(SigningKey::generate(rng))
    }

    /// The identity key with this 32-byte Ed25519 seed (RFC 8032 secret key).
    pub fn from_seed(seed: &Zeroizing<[u8; 32]>) -> Self {
        IdentityKey(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed, for sealed storage.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half, which peers pin.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity(self.0.verifying_key().to_bytes())
    }

    /// A pure Ed25519 signature (RFC 8032) of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }

    /// Signs `sealing` as this party's sealing key (sent to peers beside the key, checked
    /// with [`PublicIdentity::verify_sealing_key`]).
    pub fn sign_sealing_key(&self, sealing: &SealingPublicKey) -> [u8; 64] {
        self.sign(&sealing_key_binding(sealing))
    }

    /// Signs `key` (a 33-byte compressed secp256k1 public key) as this module's own
    /// native-multisig key (checked with [`PublicIdentity::verify_multisig_key`]).
    pub fn sign_multisig_key(&self, key: &[u8; 33]) -> [u8; 64] {
        self.sign(&multisig_key_binding(key))
    }

    /// The underlying dalek key, for the TLS signer and the certificate builder.
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityKey(<redacted>)")
    }
}

/// What signs as a party: its identity key in this process ([`IdentityKey`]), or one kept
/// elsewhere (an HSM) that signs on request and can fail.
///
/// Every use of a party's identity key that a module makes (mutual TLS, sealed MPC messages,
/// approvals, key bindings) goes through this trait, so a module's identity key can live in a
/// token.
pub trait IdentitySigner: Send + Sync {
    /// The public half, which peers pin.
    fn public(&self) -> PublicIdentity;

    /// A pure Ed25519 signature (RFC 8032) of `msg`, checked against
    /// [`IdentitySigner::public`] by implementations that sign outside this process.
    fn try_sign(&self, msg: &[u8]) -> Result<[u8; 64], WireError>;

    /// Another handle to the same signer, for a holder that keeps its own (the TLS stack).
    fn handle(&self) -> std::sync::Arc<dyn IdentitySigner>;

    /// [`IdentityKey::sign_sealing_key`] through this signer.
    fn try_sign_sealing_key(&self, sealing: &SealingPublicKey) -> Result<[u8; 64], WireError> {
        self.try_sign(&sealing_key_binding(sealing))
    }

    /// [`IdentityKey::sign_multisig_key`] through this signer.
    fn try_sign_multisig_key(&self, key: &[u8; 33]) -> Result<[u8; 64], WireError> {
        self.try_sign(&multisig_key_binding(key))
    }
}

impl IdentitySigner for IdentityKey {
    fn public(&self) -> PublicIdentity {
        IdentityKey::public(self)
    }

    fn try_sign(&self, msg: &[u8]) -> Result<[u8; 64], WireError> {
        Ok(self.sign(msg))
    }

    fn handle(&self) -> std::sync::Arc<dyn IdentitySigner> {
        // A second copy of the secret, zeroized on drop like the first (what the TLS stack
        // held before signers existed).
        std::sync::Arc::new(IdentityKey(self.0.clone()))
    }
}

fn sealing_key_binding(sealing: &SealingPublicKey) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SEALING_KEY_BINDING_TAG.len() + 32);
    msg.extend_from_slice(SEALING_KEY_BINDING_TAG);
    msg.extend_from_slice(sealing.as_bytes());
    msg
}

fn multisig_key_binding(key: &[u8; 33]) -> Vec<u8> {
    [MULTISIG_KEY_BINDING_TAG, key.as_slice()].concat()
}

/// A party's public Ed25519 identity key: a valid, not small-order, curve point.
///
/// Serialized (serde, `Display`, `FromStr`) as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicIdentity([u8; 32]);

impl PublicIdentity {
    /// Checks and wraps a 32-byte compressed Ed25519 public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, WireError> {
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|_| WireError::invalid_key("identity key", "not a valid Ed25519 point"))?;
        if key.is_weak() {
            return Err(WireError::invalid_key(
                "identity key",
                "a small-order Ed25519 point",
            ));
        }
        Ok(PublicIdentity(*bytes))
    }

    /// The 32-byte compressed key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Checks an Ed25519 signature with `verify_strict` (no malleable or small-order
    /// signatures).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), WireError> {
        let bad = || WireError::BadSignature {
            fingerprint: self.fingerprint(),
        };
        let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| bad())?;
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| bad())?;
        key.verify_strict(msg, &sig).map_err(|_| bad())
    }

    /// Checks that this identity vouches for `sealing` as its sealing key.
    pub fn verify_sealing_key(
        &self,
        sealing: &SealingPublicKey,
        sig: &[u8],
    ) -> Result<(), WireError> {
        self.verify(&sealing_key_binding(sealing), sig)
    }

    /// Checks that this identity signed `key` as its module's native-multisig key.
    pub fn verify_multisig_key(&self, key: &[u8; 33], sig: &[u8]) -> Result<(), WireError> {
        self.verify(&multisig_key_binding(key), sig)
    }

    /// What operators compare by eye when pinning: `SHA256:` and the first 20 bytes of the
    /// SHA-256 of the key, in hex, in groups of 4 characters separated by `:`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }
}

fn fingerprint(key: &[u8; 32]) -> String {
    let digest = Sha256::digest(key);
    let mut out = String::from("SHA256:");
    for (i, c) in hex::encode(&digest[..20]).chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(':');
        }
        out.push(c);
    }
    out
}

fn parse_hex32(what: &'static str, s: &str) -> Result<[u8; 32], WireError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out)
        .map_err(|e| WireError::invalid_key(what, format!("expected 64 hex characters: {e}")))?;
    Ok(out)
}

impl fmt::Display for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicIdentity({})", hex::encode(self.0))
    }
}

impl TryFrom<&[u8]> for PublicIdentity {
    type Error = WireError;
    fn try_from(bytes: &[u8]) -> Result<Self, WireError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| WireError::InvalidKey {
            what: "identity key",
            reason: format!("expected 32 bytes, got {}", bytes.len()),
        })?;
        PublicIdentity::from_bytes(&arr)
    }
}

impl FromStr for PublicIdentity {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        PublicIdentity::from_bytes(&parse_hex32("identity key", s)?)
    }
}

impl Serialize for PublicIdentity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicIdentity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The OpenAPI format of an Ed25519 public key ([`PublicIdentity`]): 64 hex characters that
/// encode a point of the curve that is not of small order. JSON Schema cannot say which
/// strings those are; the format names the rule for clients and test generators.
pub const PUBLIC_IDENTITY_FORMAT: &str = "ed25519-public-key";

/// The OpenAPI schema of what travels: 64 hex characters, of format
/// [`PUBLIC_IDENTITY_FORMAT`].
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for PublicIdentity {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::schema::SchemaFormat::Custom(
                PUBLIC_IDENTITY_FORMAT.to_owned(),
            )))
            .pattern(Some("^[0-9a-fA-F]{64}$"))
            .description(Some(
                "An Ed25519 public key (a party's identity or a principal's key), 64 hex digits: \
                 the compressed encoding of a point of the curve that is not of small order.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for PublicIdentity {}

/// A party's static X25519 sealing key (secret), the HPKE recipient key of sealed MPC
/// messages. Zeroized on drop; `Debug` prints `<redacted>`.
pub struct SealingKey(x25519_dalek::StaticSecret);

impl SealingKey {
    /// A fresh sealing key from a cryptographically secure RNG.
    pub fn generate<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        SealingKey::from_bytes(&bytes)
    }

    /// The sealing key with these 32 secret bytes.
    pub fn from_bytes(bytes: &Zeroizing<[u8; 32]>) -> Self {
        SealingKey(x25519_dalek::StaticSecret::from(**bytes))
    }

    /// The 32 secret bytes, for sealed storage.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half, which peers seal to.
    pub fn public(&self) -> SealingPublicKey {
        SealingPublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

/// A party's public X25519 sealing key.
///
/// Serialized (serde, `Display`, `FromStr`) as 64 lowercase hex characters. Peers accept it
/// only with the owner's identity signature ([`PublicIdentity::verify_sealing_key`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SealingPublicKey([u8; 32]);

impl SealingPublicKey {
    /// Wraps a 32-byte X25519 public key. Low-order keys are caught when sealing (HPKE
    /// refuses an all-zero shared secret).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        SealingPublicKey(*bytes)
    }

    /// The 32-byte key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Same format as [`PublicIdentity::fingerprint`].
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }
}

impl fmt::Display for SealingPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SealingPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingPublicKey({})", hex::encode(self.0))
    }
}

impl TryFrom<&[u8]> for SealingPublicKey {
    type Error = WireError;
    fn try_from(bytes: &[u8]) -> Result<Self, WireError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| WireError::InvalidKey {
            what: "sealing key",
            reason: format!("expected 32 bytes, got {}", bytes.len()),
        })?;
        Ok(SealingPublicKey::from_bytes(&arr))
    }
}

impl FromStr for SealingPublicKey {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        Ok(SealingPublicKey(parse_hex32("sealing key", s)?))
    }
}

impl Serialize for SealingPublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SealingPublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(7)
    }

    #[test]
    fn rfc8032_test_1_seed_gives_the_published_public_key_and_signature() {
        // RFC 8032 section 7.1, TEST 1 (empty message).
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let key = IdentityKey::from_seed(&Zeroizing::new(seed));
        assert_eq!(
            key.public().to_string(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = key.sign(b"");
        assert_eq!(
            hex::encode(sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        key.public().verify(b"", &sig).unwrap();
        assert_eq!(*key.to_seed(), seed);
    }

    #[test]
    fn verify_rejects_other_messages_keys_and_lengths() {
        let mut rng = rng();
        let a = IdentityKey::generate(&mut rng);
        let b = IdentityKey::generate(&mut rng);
        let sig = a.sign(b"hello");
        a.public().verify(b"hello", &sig).unwrap();
        assert!(matches!(
            a.public().verify(b"hellO", &sig),
            Err(WireError::BadSignature { .. })
        ));
        assert!(b.public().verify(b"hello", &sig).is_err());
        assert!(a.public().verify(b"hello", &sig[..63]).is_err());
    }

    #[test]
    fn public_identity_round_trips_through_text_and_serde() {
        let id = IdentityKey::generate(&mut rng()).public();
        assert_eq!(id.to_string().parse::<PublicIdentity>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<PublicIdentity>(&json).unwrap(), id);
        assert!(serde_json::from_str::<PublicIdentity>("\"00\"").is_err());
    }

    #[test]
    fn public_identity_rejects_bad_and_small_order_points() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicIdentity::from_bytes(&identity).is_err());
        // Not hex, wrong length.
        assert!("zz".parse::<PublicIdentity>().is_err());
        assert!("00".repeat(31).parse::<PublicIdentity>().is_err());
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert!(PublicIdentity::from_bytes(&off_curve).is_err());
    }

    #[test]
    fn fingerprint_is_sha256_prefix_grouped() {
        let id = IdentityKey::generate(&mut rng()).public();
        let fp = id.fingerprint();
        let digest = Sha256::digest(id.as_bytes());
        assert_eq!(
            fp.trim_start_matches("SHA256:").replace(':', ""),
            hex::encode(&digest[..20])
        );
        assert_eq!(fp.len(), "SHA256:".len() + 40 + 9);
    }

    #[test]
    fn sealing_key_round_trips_and_binding_verifies() {
        let mut rng = rng();
        let id = IdentityKey::generate(&mut rng);
        let sk = SealingKey::generate(&mut rng);
        let pk = sk.public();
        assert_eq!(SealingKey::from_bytes(&sk.to_bytes()).public(), pk);
        assert_eq!(pk.to_string().parse::<SealingPublicKey>().unwrap(), pk);
        let json = serde_json::to_string(&pk).unwrap();
        assert_eq!(serde_json::from_str::<SealingPublicKey>(&json).unwrap(), pk);

        let sig = id.sign_sealing_key(&pk);
        id.public().verify_sealing_key(&pk, &sig).unwrap();
        let other = SealingKey::generate(&mut rng).public();
        assert!(id.public().verify_sealing_key(&other, &sig).is_err());
        // The binding is domain-separated from a plain signature of the key bytes.
        assert!(id.public().verify(pk.as_bytes(), &sig).is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut rng = rng();
        let id = IdentityKey::generate(&mut rng);
        let sk = SealingKey::generate(&mut rng);
        assert_eq!(format!("{id:?}"), "IdentityKey(<redacted>)");
        assert_eq!(format!("{sk:?}"), "SealingKey(<redacted>)");
    }
}
