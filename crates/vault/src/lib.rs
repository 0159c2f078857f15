//! Sealed storage for a Concord secure module.
//!
//! A [`Vault`] is a directory of secrets, each encrypted at rest (XChaCha20-Poly1305) under a
//! random data-encryption key (DEK). The DEK is stored in the vault header wrapped by a
//! key-encryption key (KEK) from a [`KekProvider`]: [`PassphraseKek`] (Argon2id over an
//! operator's passphrase) today, an HSM over PKCS#11 later, without changes to callers.
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
//! [`Zeroizing`]: zeroize::Zeroizing

mod error;
mod fsio;
mod kek;
mod passphrase;
mod seal;
mod vault;

pub use error::VaultError;
pub use kek::{Kek, KekParams, KekProvider};
pub use passphrase::{Argon2Params, PassphraseKek, PassphraseSource};
pub use seal::{open as open_sealed, seal};
pub use vault::{
    HEADER_FILE, HEADER_VERSION, MAX_NAME_LEN, SEALED_EXT, SECRET_FORMAT, SECRETS_DIR, Vault,
    check_name,
};
pub use zeroize::Zeroizing;
