//! Key-encryption-key providers.
//!
//! A vault's secrets are encrypted under a random data-encryption key (DEK); the DEK is stored
//! in the vault header *wrapped* (encrypted) by a key-encryption key (KEK). Where the KEK comes
//! from is a [`KekProvider`]'s business: a passphrase through Argon2id
//! ([`PassphraseKek`](crate::PassphraseKek)), or an AES key inside an HSM over PKCS#11
//! ([`Pkcs11Kek`](crate::Pkcs11Kek)). Callers only see the two traits, so adding a provider
//! changes no caller.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::VaultError;

/// A source of key-encryption keys: creates a fresh one for a new vault, or re-opens the one
/// described by a vault header's [`KekParams`].
pub trait KekProvider: Send + Sync + std::fmt::Debug {
    /// The provider's kind, as recorded in the header (`"passphrase"`, `"pkcs11"`). It
    /// equals [`KekParams::kind`] of the parameters this provider creates.
    fn kind(&self) -> &'static str;

    /// Creates a new key-encryption key and the public parameters needed to open it again.
    /// The parameters are stored in the vault header (they are not secret).
    fn create(&self) -> Result<(Box<dyn Kek>, KekParams), VaultError>;

    /// Re-opens the key-encryption key described by `params` (read from a vault header).
    fn open(&self, params: &KekParams) -> Result<Box<dyn Kek>, VaultError>;
}

/// A key-encryption key: wraps and unwraps 32-byte data keys with authenticated encryption.
///
/// Implementations hold (or reference) secret key material: they must zeroize it on drop and
/// their `Debug` must not print it.
pub trait Kek: Send + Sync + std::fmt::Debug {
    /// Encrypts `dek`, authenticating `aad` with it.
    fn wrap(&self, dek: &[u8; 32], aad: &[u8]) -> Result<Vec<u8>, VaultError>;

    /// Decrypts a wrapped key. Fails (with the provider's "wrong key" error) when the key is
    /// not the one that wrapped it, or `wrapped` or `aad` were altered.
    fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<[u8; 32]>, VaultError>;
}

/// The public parameters of a key-encryption key, stored in the vault header. Serialized with
/// a `kind` tag: `{"kind": "passphrase", "salt": "<hex>", "m_cost_kib": 65536, …}` or
/// `{"kind": "pkcs11", "token_label": "concord", "key_id": "<32 hex>", "key_label": "…"}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum KekParams {
    /// Argon2id (version 0x13) over a passphrase; the derived 32-byte key wraps with
    /// XChaCha20-Poly1305.
    Passphrase {
        /// Random salt, 16 bytes.
        #[serde(with = "hex_array")]
        salt: [u8; 16],
        /// Argon2 memory cost, in KiB.
        m_cost_kib: u32,
        /// Argon2 number of passes.
        t_cost: u32,
        /// Argon2 parallelism (lanes).
        p_cost: u32,
    },
    /// An AES-256 key generated inside a PKCS#11 token (sensitive, not extractable); data keys
    /// are wrapped with CKM_AES_GCM inside the token (96-bit IV, 128-bit tag).
    Pkcs11 {
        /// The label of the token holding the key.
        token_label: String,
        /// The key object's `CKA_ID`, 16 random bytes.
        #[serde(with = "hex_array")]
        key_id: [u8; 16],
        /// The key object's `CKA_LABEL`.
        key_label: String,
    },
}

impl KekParams {
    /// The kind of provider that opens these parameters.
    pub fn kind(&self) -> &'static str {
        match self {
            KekParams::Passphrase { .. } => crate::passphrase::KIND,
            KekParams::Pkcs11 { .. } => crate::pkcs11::KIND,
        }
    }
}

/// Hex (de)serialization of a fixed-size byte array.
mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(D::Error::custom)?;
        v.try_into().map_err(|v: Vec<u8>| {
            D::Error::custom(format!("expected {N} bytes, found {}", v.len()))
        })
    }
}
