//! Request signers: what produces the value of Binance's `signature` parameter.

use std::fmt;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::ExchangeError;

/// The kind of API key a signer holds, which fixes the signature's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// A shared secret; the signature is the HMAC-SHA256 of the payload in lowercase hex.
    HmacSha256,
    /// An Ed25519 key; the signature is the 64-byte Ed25519 signature in standard base64.
    Ed25519,
}

impl KeyType {
    /// Whether `signature` has this key type's encoding and length (64 hex digits for
    /// HMAC-SHA256, standard base64 of 64 bytes for Ed25519). Says nothing about validity.
    pub fn is_well_formed(self, signature: &str) -> bool {
        match self {
            KeyType::HmacSha256 => {
                signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit())
            }
            KeyType::Ed25519 => {
                signature.len() == 88
                    && BASE64
                        .decode(signature)
                        .is_ok_and(|bytes| bytes.len() == 64 && BASE64.encode(&bytes) == signature)
            }
        }
    }
}

/// Something that signs exchange request payloads: a local key, or (through a caller's own
/// implementation) a threshold group of modules.
///
/// `sign` returns the value of Binance's `signature` parameter before URL-encoding: lowercase
/// hex for HMAC-SHA256, standard base64 for Ed25519. The query assembler percent-encodes it.
#[async_trait]
pub trait RequestSigner: Send + Sync {
    /// The kind of key this signer holds.
    fn key_type(&self) -> KeyType;

    /// Signs the exact payload bytes (for Binance: the query string, concatenated with the
    /// body, which this crate always leaves empty).
    async fn sign(&self, payload: &[u8]) -> Result<String, ExchangeError>;
}

/// An HMAC-SHA256 signer holding an exchange's secret key.
///
/// An HMAC secret cannot be sharded: whoever verifies it must hold the same secret, and a
/// threshold group cannot compute an HMAC without one party learning the key. Use it for a
/// module's own read-only key; a withdraw-capable key that must be split across modules has to
/// be an Ed25519 key (DESIGN flow 4).
pub struct HmacSha256Signer {
    secret: Zeroizing<Vec<u8>>,
}

impl HmacSha256Signer {
    /// A signer for the given secret key, taken as the bytes of the string the exchange shows.
    pub fn new(secret: &str) -> Result<Self, ExchangeError> {
        if secret.is_empty() {
            return Err(ExchangeError::InvalidKey(
                "the HMAC secret key is empty".to_owned(),
            ));
        }
        Ok(Self {
            secret: Zeroizing::new(secret.as_bytes().to_vec()),
        })
    }

    /// The signature of `payload`, in lowercase hex (synchronous form of [`RequestSigner::sign`]).
    pub fn sign_now(&self, payload: &[u8]) -> Result<String, ExchangeError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret)
            .map_err(|e| ExchangeError::Signing(format!("HMAC key rejected: {e}")))?;
        mac.update(payload);
        Ok(hex::encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for HmacSha256Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacSha256Signer")
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[async_trait]
impl RequestSigner for HmacSha256Signer {
    fn key_type(&self) -> KeyType {
        KeyType::HmacSha256
    }

    async fn sign(&self, payload: &[u8]) -> Result<String, ExchangeError> {
        self.sign_now(payload)
    }
}

/// An Ed25519 signer holding a whole private key (a test key, or a key that is not sharded).
///
/// For the sharded withdraw key the group signs outside this crate (FROST-Ed25519 gives a
/// standard Ed25519 signature) and the coordinator hands the result to
/// [`BinanceClient::submit_signed_withdraw`](crate::binance::BinanceClient::submit_signed_withdraw).
pub struct Ed25519Signer {
    key: SigningKey,
}

impl Ed25519Signer {
    /// A signer from an unencrypted PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), as
    /// `openssl genpkey -algorithm ed25519` and Binance's key generator produce.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, ExchangeError> {
        let key = SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| {
            ExchangeError::InvalidKey(format!(
                "the PEM text is not an unencrypted PKCS#8 Ed25519 private key: {e}"
            ))
        })?;
        Ok(Self { key })
    }

    /// A signer from a 32-byte RFC 8032 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), the form the exchange asks
    /// for when the key is registered.
    pub fn public_key_pem(&self) -> Result<String, ExchangeError> {
        self.key
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| ExchangeError::InvalidKey(format!("cannot encode the public key: {e}")))
    }

    /// The signature of `payload` in standard base64 (synchronous form of
    /// [`RequestSigner::sign`]).
    pub fn sign_now(&self, payload: &[u8]) -> String {
        BASE64.encode(self.key.sign(payload).to_bytes())
    }
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("public_key", &hex::encode(self.public_key()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[async_trait]
impl RequestSigner for Ed25519Signer {
    fn key_type(&self) -> KeyType {
        KeyType::Ed25519
    }

    async fn sign(&self, payload: &[u8]) -> Result<String, ExchangeError> {
        Ok(self.sign_now(payload))
    }
}

/// A signer that holds no key and refuses to sign: for a client (the coordinator's) that only
/// submits requests signed elsewhere, with
/// [`submit_signed_withdraw`](crate::binance::BinanceClient::submit_signed_withdraw).
#[derive(Debug, Clone, Copy)]
pub struct NoSigner {
    key_type: KeyType,
}

impl NoSigner {
    /// A keyless signer standing for an API key of the given type held elsewhere.
    pub fn new(key_type: KeyType) -> Self {
        Self { key_type }
    }
}

#[async_trait]
impl RequestSigner for NoSigner {
    fn key_type(&self) -> KeyType {
        self.key_type
    }

    async fn sign(&self, _payload: &[u8]) -> Result<String, ExchangeError> {
        Err(ExchangeError::Signing(
            "this client holds no signing key: requests must be signed by the key's holders and \
             submitted already signed"
                .to_owned(),
        ))
    }
}
