//! Pure domain types shared by every Concord crate: signature schemes, thresholds,
//! session and wallet identifiers, and their canonical encodings.
//!
//! This crate does no I/O and depends on nothing of ours.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Errors raised when building a domain value from untrusted input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypesError {
    /// The threshold `t` or group size `n` is out of range.
    #[error("invalid threshold {t}-of-{n}: need 2 <= t <= n <= {max}")]
    InvalidThreshold {
        /// Signers required.
        t: u16,
        /// Group size.
        n: u16,
        /// Largest group size supported.
        max: u16,
    },
    /// A scheme name was not recognised.
    #[error(
        "unknown signature scheme '{0}': expected one of ecdsa-secp256k1, schnorr-taproot, ed25519"
    )]
    UnknownScheme(String),
    /// A BIP-32 derivation path was malformed or asks for hardened derivation.
    #[error("invalid derivation path '{path}': {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An ECDSA engine name was not recognised.
    #[error("unknown ECDSA engine '{0}': expected dkls23 or cggmp21")]
    UnknownEngine(String),
    /// A signing payload was malformed or not canonical.
    #[error("invalid signing payload: {0}")]
    InvalidPayload(String),
    /// A hex string did not decode to the expected number of bytes.
    #[error("invalid {what}: expected {expected} hex-encoded bytes")]
    InvalidHex {
        /// What was being parsed.
        what: &'static str,
        /// Number of bytes expected.
        expected: usize,
    },
}

/// The threshold signature schemes Concord runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Threshold ECDSA on secp256k1 (CGGMP21): Ethereum and other EVM chains, Bitcoin legacy/SegWit v0.
    EcdsaSecp256k1,
    /// FROST Schnorr on secp256k1 with BIP-340 signatures and the BIP-341 key-path tweak: Bitcoin Taproot.
    SchnorrTaproot,
    /// FROST Ed25519 (RFC 8032 compatible signatures): exchange API keys, Solana-like chains.
    Ed25519,
    /// Threshold ECDSA on NIST P-256 (DKLs23): exchange API keys that sign ES256 (Coinbase CDP).
    EcdsaP256,
}

impl Scheme {
    /// All schemes, in a stable order.
    pub const ALL: [Scheme; 4] = [
        Scheme::EcdsaSecp256k1,
        Scheme::SchnorrTaproot,
        Scheme::Ed25519,
        Scheme::EcdsaP256,
    ];

    /// Canonical name, as used in configuration, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::EcdsaSecp256k1 => "ecdsa-secp256k1",
            Scheme::SchnorrTaproot => "schnorr-taproot",
            Scheme::Ed25519 => "ed25519",
            Scheme::EcdsaP256 => "ecdsa-p256",
        }
    }

    /// Stable one-byte code used in binary encodings.
    pub fn code(self) -> u8 {
        match self {
            Scheme::EcdsaSecp256k1 => 1,
            Scheme::SchnorrTaproot => 2,
            Scheme::Ed25519 => 3,
            Scheme::EcdsaP256 => 4,
        }
    }

    /// Inverse of [`Scheme::code`].
    pub fn from_code(code: u8) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = TypesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == s)
            .ok_or_else(|| TypesError::UnknownScheme(s.to_owned()))
    }
}

/// The threshold-ECDSA protocol a signer group runs for its ECDSA wallets (Schnorr and
/// Ed25519 wallets always run FROST). Chosen when the group is created and pinned by every
/// member: shares of different engines never sign together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EcdsaEngine {
    /// DKLs23 (oblivious transfer; no group setup; three-round signing in milliseconds).
    Dkls23,
    /// CGGMP21 (Paillier; safe primes and aux info per group; presignatures).
    Cggmp21,
}

impl EcdsaEngine {
    /// Both engines, the default first.
    pub const ALL: [EcdsaEngine; 2] = [EcdsaEngine::Dkls23, EcdsaEngine::Cggmp21];

    /// The engine of a group created without naming one (see ADR 0002).
    pub const DEFAULT: EcdsaEngine = EcdsaEngine::Dkls23;

    /// The engine of a group recorded before engines could be chosen.
    pub const LEGACY: EcdsaEngine = EcdsaEngine::Cggmp21;

    /// Canonical name: `dkls23` or `cggmp21`.
    pub fn as_str(self) -> &'static str {
        match self {
            EcdsaEngine::Dkls23 => "dkls23",
            EcdsaEngine::Cggmp21 => "cggmp21",
        }
    }

    /// Whether the engine needs per-group auxiliary material (safe primes, aux info).
    pub fn needs_aux(self) -> bool {
        self == EcdsaEngine::Cggmp21
    }

    /// Whether the engine can sign from a presignature made before the message is known.
    pub fn presigns(self) -> bool {
        self == EcdsaEngine::Cggmp21
    }
}

impl fmt::Display for EcdsaEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EcdsaEngine {
    type Err = TypesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EcdsaEngine::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| TypesError::UnknownEngine(s.to_owned()))
    }
}

/// A non-hardened BIP-32 derivation path, `m/44/60/0/0/7`: the child keys of a threshold
/// wallet that every member derives from its own share (hardened derivation needs the whole
/// private key, which never exists). Child numbers are below 2^31; at most
/// [`DerivationPath::MAX_DEPTH`] levels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DerivationPath(Vec<u32>);

impl DerivationPath {
    /// Deepest path accepted.
    pub const MAX_DEPTH: usize = 16;

    /// The master key itself (`m`).
    pub fn master() -> Self {
        DerivationPath(Vec::new())
    }

    /// The child numbers, from the master key down.
    pub fn children(&self) -> &[u32] {
        &self.0
    }

    /// Whether this is the master key itself.
    pub fn is_master(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `self` lies under `prefix` (or is `prefix`).
    pub fn starts_with(&self, prefix: &DerivationPath) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

impl fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for c in &self.0 {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

impl FromStr for DerivationPath {
    type Err = TypesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| TypesError::InvalidPath {
            path: s.chars().take(80).collect(),
            reason: reason.to_owned(),
        };
        let mut parts = s.split('/');
        if parts.next() != Some("m") {
            return Err(bad("it must start with m (as in m/0/7)"));
        }
        let mut children = Vec::new();
        for part in parts {
            if part.ends_with('\'') || part.ends_with('h') || part.ends_with('H') {
                return Err(bad(
                    "hardened derivation needs the whole private key, which a threshold wallet never has: use non-hardened child numbers",
                ));
            }
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("each level must be a decimal child number"));
            }
            let n: u32 = part
                .parse()
                .ok()
                .filter(|n| *n < 1 << 31)
                .ok_or_else(|| bad("child numbers must be below 2^31 (2147483648)"))?;
            children.push(n);
        }
        if children.len() > Self::MAX_DEPTH {
            return Err(bad(&format!(
                "at most {} levels are accepted",
                Self::MAX_DEPTH
            )));
        }
        Ok(DerivationPath(children))
    }
}

impl Serialize for DerivationPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DerivationPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A `t`-of-`n` threshold: any `t` of the `n` group members can sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawThreshold", into = "RawThreshold")]
pub struct Threshold {
    t: u16,
    n: u16,
}

#[derive(Serialize, Deserialize)]
struct RawThreshold {
    t: u16,
    n: u16,
}

impl TryFrom<RawThreshold> for Threshold {
    type Error = TypesError;
    fn try_from(raw: RawThreshold) -> Result<Self, Self::Error> {
        Threshold::new(raw.t, raw.n)
    }
}

impl From<Threshold> for RawThreshold {
    fn from(t: Threshold) -> Self {
        RawThreshold { t: t.t, n: t.n }
    }
}

impl Threshold {
    /// Largest group supported. Party indices and identifiers must fit comfortably in
    /// every protocol's encoding; 255 modules is far beyond any deployment.
    pub const MAX_PARTIES: u16 = 255;

    /// Builds a threshold, checking `2 <= t <= n <= MAX_PARTIES`.
    pub fn new(t: u16, n: u16) -> Result<Self, TypesError> {
        if t < 2 || t > n || n > Self::MAX_PARTIES {
            return Err(TypesError::InvalidThreshold {
                t,
                n,
                max: Self::MAX_PARTIES,
            });
        }
        Ok(Threshold { t, n })
    }

    /// Signers required.
    pub fn t(self) -> u16 {
        self.t
    }

    /// Group size.
    pub fn n(self) -> u16 {
        self.n
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-of-{}", self.t, self.n)
    }
}

/// Identifies one run of a protocol (a DKG, a presignature, a signing). Every party of the
/// run uses the same id; messages carrying another id are rejected. It also serves as the
/// execution id that binds the protocols' proofs to this run.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(#[serde(with = "hex32")] pub [u8; 32]);

impl SessionId {
    /// Derives a session id from a domain label and arbitrary context bytes.
    pub fn derive(label: &str, context: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"concord/session/v1\0");
        h.update((label.len() as u64).to_be_bytes());
        h.update(label.as_bytes());
        h.update(context);
        SessionId(h.finalize().into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", hex::encode(&self.0[..8]))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for SessionId {
    type Err = TypesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s, "session id").map(SessionId)
    }
}

/// Identifies a wallet: a hash of its scheme and group public key, so two modules that hold
/// shares of the same key agree on the id without talking to each other.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WalletId(#[serde(with = "hex32")] pub [u8; 32]);

impl WalletId {
    /// Derives the id of the wallet with `scheme` and the canonical encoding of its group key.
    pub fn derive(scheme: Scheme, group_public_key: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"concord/wallet/v1\0");
        h.update([scheme.code()]);
        h.update(group_public_key);
        WalletId(h.finalize().into())
    }
}

impl fmt::Debug for WalletId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalletId({})", hex::encode(&self.0[..8]))
    }
}

impl fmt::Display for WalletId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for WalletId {
    type Err = TypesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s, "wallet id").map(WalletId)
    }
}

fn parse_hex32(s: &str, what: &'static str) -> Result<[u8; 32], TypesError> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| TypesError::InvalidHex { what, expected: 32 })?;
    Ok(out)
}

/// OpenAPI schemas of the identifiers as they travel in JSON: 64 hex digits (the serde form,
/// which `FromStr` reads back, with or without `0x`).
#[cfg(feature = "openapi")]
mod openapi {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

    fn hex32(description: &str) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^(0x)?[0-9a-fA-F]{64}$"))
            .description(Some(description))
            .into()
    }

    impl utoipa::PartialSchema for super::WalletId {
        fn schema() -> RefOr<Schema> {
            hex32("A wallet id: SHA-256 of its scheme and group public key, 64 hex digits.")
        }
    }

    impl utoipa::ToSchema for super::WalletId {}

    impl utoipa::PartialSchema for super::SessionId {
        fn schema() -> RefOr<Schema> {
            hex32("A protocol run's id, 64 hex digits.")
        }
    }

    impl utoipa::ToSchema for super::SessionId {}
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        super::parse_hex32(&s, "32-byte value").map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_paths_parse_print_and_refuse_hardened_levels() {
        for ok in ["m", "m/0", "m/44/60/0/0/7", "m/2147483647"] {
            let p: DerivationPath = ok.parse().unwrap();
            assert_eq!(p.to_string(), ok);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<DerivationPath>(&json).unwrap(), p);
        }
        let p: DerivationPath = "m/44/60/0/0/7".parse().unwrap();
        assert_eq!(p.children(), &[44, 60, 0, 0, 7]);
        assert!(p.starts_with(&"m/44/60".parse().unwrap()));
        assert!(!p.starts_with(&"m/44/61".parse().unwrap()));
        assert!(DerivationPath::master().is_master());
        for (bad, why) in [
            ("m/44'/60", "hardened"),
            ("m/0h", "hardened"),
            ("m/0H", "hardened"),
            ("44/60", "must start with m"),
            ("", "must start with m"),
            ("m/", "decimal child number"),
            ("m//1", "decimal child number"),
            ("m/-1", "decimal child number"),
            ("m/+1", "decimal child number"),
            ("m/2147483648", "below 2^31"),
            ("m/99999999999999999999", "below 2^31"),
            ("m/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0", "at most 16"),
        ] {
            let e = bad.parse::<DerivationPath>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(serde_json::from_str::<DerivationPath>("\"m/1'\"").is_err());
    }

    #[test]
    fn threshold_bounds() {
        assert!(Threshold::new(2, 3).is_ok());
        assert!(Threshold::new(3, 3).is_ok());
        for (t, n) in [(1, 3), (4, 3), (0, 0), (2, 256)] {
            let err = Threshold::new(t, n).unwrap_err();
            assert!(err.to_string().contains(&format!("{t}-of-{n}")), "{err}");
        }
    }

    #[test]
    fn threshold_serde_rejects_bad_values() {
        let ok: Threshold = serde_json::from_str(r#"{"t":2,"n":3}"#).unwrap();
        assert_eq!(ok.to_string(), "2-of-3");
        let err = serde_json::from_str::<Threshold>(r#"{"t":4,"n":3}"#).unwrap_err();
        assert!(
            err.to_string().contains("invalid threshold 4-of-3"),
            "{err}"
        );
    }

    #[test]
    fn scheme_names_round_trip() {
        for s in Scheme::ALL {
            assert_eq!(s.as_str().parse::<Scheme>().unwrap(), s);
            assert_eq!(Scheme::from_code(s.code()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!(
            "rsa"
                .parse::<Scheme>()
                .unwrap_err()
                .to_string()
                .contains("unknown signature scheme 'rsa'")
        );
    }

    #[test]
    fn ids_encode_as_hex_and_parse_back() {
        let w = WalletId::derive(Scheme::Ed25519, b"pk");
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, format!("\"{w}\""));
        assert_eq!(serde_json::from_str::<WalletId>(&json).unwrap(), w);
        assert_eq!(w.to_string().parse::<WalletId>().unwrap(), w);
        assert!("abcd".parse::<WalletId>().is_err());
        let s = SessionId::derive("dkg", b"x");
        assert_ne!(s, SessionId::derive("dkg", b"y"));
        assert_ne!(s, SessionId::derive("dkgx", b""));
    }

    #[test]
    fn wallet_id_depends_on_scheme() {
        assert_ne!(
            WalletId::derive(Scheme::Ed25519, b"k"),
            WalletId::derive(Scheme::SchnorrTaproot, b"k")
        );
    }
}
