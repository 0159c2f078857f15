//! What a wallet is asked to sign, in one canonical encoding, and the digest modules approve.
//!
//! The coordinator proposes a payload; every module parses it, recomputes the digest itself
//! and approves that digest only. Parsing accepts only the canonical encoding (compact JSON,
//! fields in declaration order), so two modules that accept the same bytes agree on the same
//! payload.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Scheme, TypesError, WalletId};

/// Largest message a [`SigningPayload::Message`] may carry.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// A request to sign, as modules see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SigningPayload {
    /// Sign raw bytes with a wallet. ECDSA signs their SHA-256 digest; FROST schemes sign the
    /// bytes themselves.
    Message {
        /// The wallet that signs.
        wallet: WalletId,
        /// The bytes, hex-encoded in the canonical form.
        #[serde(with = "hex_bytes")]
        message: Vec<u8>,
        /// Optional replay-protection nonce: a module never signs two different digests for
        /// the same (wallet, nonce).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

impl SigningPayload {
    /// The canonical encoding (compact JSON).
    pub fn to_canonical(&self) -> Vec<u8> {
        // Serializing these plain types to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a payload, accepting only its canonical encoding.
    pub fn from_canonical(bytes: &[u8]) -> Result<Self, TypesError> {
        let payload: SigningPayload =
            serde_json::from_slice(bytes).map_err(|e| TypesError::InvalidPayload(e.to_string()))?;
        if payload.to_canonical() != bytes {
            return Err(TypesError::InvalidPayload(
                "the payload is not in canonical form (compact JSON, fields in order)".into(),
            ));
        }
        payload.check()?;
        Ok(payload)
    }

    /// Checks the payload's own limits.
    pub fn check(&self) -> Result<(), TypesError> {
        match self {
            SigningPayload::Message { message, .. } if message.len() > MAX_MESSAGE_LEN => {
                Err(TypesError::InvalidPayload(format!(
                    "message of {} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit",
                    message.len()
                )))
            }
            SigningPayload::Message { .. } => Ok(()),
        }
    }

    /// The wallet asked to sign.
    pub fn wallet(&self) -> WalletId {
        match self {
            SigningPayload::Message { wallet, .. } => *wallet,
        }
    }

    /// The replay-protection nonce, if the payload carries one.
    pub fn nonce(&self) -> Option<u64> {
        match self {
            SigningPayload::Message { nonce, .. } => *nonce,
        }
    }

    /// The digest every module must compute identically and approve: it fixes exactly what
    /// will be signed.
    pub fn digest(&self) -> [u8; 32] {
        match self {
            SigningPayload::Message { message, .. } => Sha256::digest(message).into(),
        }
    }

    /// The bytes the threshold protocol signs under `scheme`: the 32-byte digest for ECDSA,
    /// the message itself for FROST schemes.
    pub fn signing_input(&self, scheme: Scheme) -> Vec<u8> {
        match (self, scheme) {
            (_, Scheme::EcdsaSecp256k1) => self.digest().to_vec(),
            (SigningPayload::Message { message, .. }, _) => message.clone(),
        }
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SigningPayload {
        SigningPayload::Message {
            wallet: WalletId([1; 32]),
            message: b"hello".to_vec(),
            nonce: Some(7),
        }
    }

    #[test]
    fn canonical_round_trip_and_digest() {
        let p = sample();
        let bytes = p.to_canonical();
        assert_eq!(SigningPayload::from_canonical(&bytes).unwrap(), p);
        assert_eq!(p.digest(), <[u8; 32]>::from(Sha256::digest(b"hello")));
        assert_eq!(p.signing_input(Scheme::EcdsaSecp256k1), p.digest().to_vec());
        assert_eq!(p.signing_input(Scheme::Ed25519), b"hello".to_vec());
    }

    #[test]
    fn non_canonical_and_unknown_fields_are_refused() {
        let bytes = String::from_utf8(sample().to_canonical()).unwrap();
        let spaced = bytes.replace(',', ", ");
        let err = SigningPayload::from_canonical(spaced.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("canonical"), "{err}");
        let extra = bytes.replace("}", ",\"to\":\"x\"}");
        assert!(SigningPayload::from_canonical(extra.as_bytes()).is_err());
        assert!(SigningPayload::from_canonical(b"{").is_err());
    }

    #[test]
    fn oversized_message_is_refused() {
        let p = SigningPayload::Message {
            wallet: WalletId([0; 32]),
            message: vec![0; MAX_MESSAGE_LEN + 1],
            nonce: None,
        };
        let err = SigningPayload::from_canonical(&p.to_canonical()).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
}
