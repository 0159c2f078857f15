//! The crate's one error type. Every message reads as a sentence an operator can act on and
//! names the thing at fault (a path, a secret's name, an environment variable); none ever
//! contains secret material.

use std::path::PathBuf;

/// Everything that can go wrong while creating, opening or using a vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The key-encryption key derived from the passphrase did not unwrap the vault's data key:
    /// either the passphrase is wrong or the header's key parameters were changed.
    #[error("the passphrase does not open this vault (or its header was altered)")]
    WrongPassphrase,

    /// A sealed secret failed authentication or is malformed. Nothing was returned from it.
    #[error("the sealed secret {name:?} is corrupt or was tampered with: {reason}")]
    CorruptSecret {
        /// The secret's name.
        name: String,
        /// What was wrong.
        reason: &'static str,
    },

    /// The vault header could not be parsed or holds values this build refuses.
    #[error("the vault header {path} is corrupt or was altered: {reason}")]
    CorruptHeader {
        /// The header file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// A stored object has a format version this build cannot read.
    #[error("{what} has format version {found}, but this build reads only version {supported}")]
    UnsupportedVersion {
        /// What was being read (the header's path, or a secret's name).
        what: String,
        /// Version found.
        found: u64,
        /// Version this build reads.
        supported: u64,
    },

    /// A file-system operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done ("read", "create", "rename", …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A secret name is outside the allowed alphabet or length.
    #[error("invalid secret name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name (as given).
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// `Vault::create` was pointed at a directory that already holds a vault.
    #[error("a vault already exists in {dir}; open it instead of creating a new one")]
    AlreadyExists {
        /// The vault directory.
        dir: PathBuf,
    },

    /// `Vault::open` was pointed at a directory without a vault header.
    #[error("there is no vault in {dir} (no vault.json); create one first")]
    NotFound {
        /// The directory that was searched.
        dir: PathBuf,
    },

    /// The vault was sealed by another kind of key-encryption-key provider than the one given.
    #[error(
        "this vault is sealed with a {found} key-encryption key, but a {expected} provider was given"
    )]
    KekMismatch {
        /// The provider's kind.
        expected: &'static str,
        /// The kind recorded in the vault header.
        found: &'static str,
    },

    /// Key-derivation parameters are out of the accepted range.
    #[error("invalid key-encryption parameters: {0}")]
    InvalidParams(String),

    /// The passphrase could not be obtained from its configured source.
    #[error("cannot read the passphrase from {from}: {reason}")]
    Passphrase {
        /// The source ("file /etc/concord/pass", "environment variable CONCORD_PASS").
        from: String,
        /// What went wrong.
        reason: String,
    },

    /// The system random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),

    /// A cryptographic primitive refused its input (only for absurd sizes).
    #[error("{0}")]
    Crypto(&'static str),
}

impl VaultError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        VaultError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
