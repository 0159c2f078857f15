//! Sealed storage for a Concord secure module.
//!
//! A [`Vault`] is a directory of secrets, each encrypted at rest (XChaCha20-Poly1305) under a
//! random data-encryption key (DEK). The DEK is stored in the vault header wrapped by a
//! key-encryption key (KEK) from a [`KekProvider`]: [`PassphraseKek`] (Argon2id over an
//! operator's passphrase) or [`Pkcs11Kek`] (an AES key that never leaves an HSM), without
//! changes to callers. The PKCS#11 side ([`Token`]) also generates and uses signing keys
//! inside the token ([`HsmSecp256k1Key`], [`HsmEd25519Key`]).
//!
//! Every write is atomic (temporary file, fsync, rename, directory fsync): after a crash a
//! secret has either its old or its new value. Secret material lives in [`Zeroizing`]
//! buffers, and every type holding some prints `<redacted>` in its `Debug` output.
//!
//! ```no_run
//! use concord_vault::{PassphraseKek, PassphraseSource, Vault};
//!
//! # fn main() -> Result<(), concord_vault::VaultError> {
//! let kek = PassphraseKek::from_source(&PassphraseSource::Env("CONCORD_VAULT_PASS".into()))?;
//! let vault = Vault::open("/var/lib/concord/vault", &kek)?;
//! vault.put("identity.key", b"...")?;
//! let key = vault.get("identity.key")?;
//! # Ok(()) }
//! ```
//!
//! The same vault with its key-encryption key inside an HSM, and a signing key generated in
//! the same token:
//!
//! ```no_run
//! use concord_vault::{PinSource, Pkcs11Config, Pkcs11Kek, Token, TokenSelector, Vault};
//!
//! # fn main() -> Result<(), concord_vault::VaultError> {
//! let token = Token::open(&Pkcs11Config {
//!     library: "/usr/lib/softhsm/libsofthsm2.so".into(),
//!     token: TokenSelector::Label("concord".into()),
//!     pin: PinSource::File("/etc/concord/hsm.pin".into()),
//! })?;
//! let vault = Vault::create("/var/lib/concord/vault", &Pkcs11Kek::new(token.clone()))?;
//! let key = token.generate_secp256k1("wallet-1")?;
//! let (signature, recovery_id) = key.sign_prehash(&[0u8; 32])?;
//! # Ok(()) }
//! ```
//!
//! [`Zeroizing`]: zeroize::Zeroizing

mod error;
mod fsio;
mod kek;
mod passphrase;
mod pkcs11;
mod seal;
mod vault;

pub use error::VaultError;
pub use kek::{Kek, KekParams, KekProvider};
pub use passphrase::{Argon2Params, PassphraseKek, PassphraseSource};
pub use pkcs11::{
    ED25519_EC_PARAMS_NAME, ED25519_EC_PARAMS_OID, HsmEd25519Key, HsmKeyInfo, HsmKeyKind,
    HsmSecp256k1Key, PinSource, Pkcs11Config, Pkcs11Kek, SECP256K1_EC_PARAMS, Token, TokenSelector,
};
pub use seal::{open as open_sealed, seal};
pub use vault::{
    HEADER_FILE, HEADER_VERSION, MAX_NAME_LEN, SEALED_EXT, SECRET_FORMAT, SECRETS_DIR, Vault,
    check_name,
};
pub use zeroize::Zeroizing;
