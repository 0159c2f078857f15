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

    /// The PKCS#11 user PIN could not be obtained from its configured source.
    #[error("cannot read the PKCS#11 PIN from {from}: {reason}")]
    Pin {
        /// The source ("file /etc/concord/hsm.pin", "environment variable CONCORD_HSM_PIN").
        from: String,
        /// What went wrong.
        reason: String,
    },

    /// The token refused the PIN (or the PIN differs from the one this process logged in
    /// with).
    #[error("the PIN does not log in to the PKCS#11 token {token:?}")]
    WrongPin {
        /// The token's label.
        token: String,
    },

    /// The HSM's key-encryption key did not unwrap the vault's data key: the header names
    /// another key, or the wrapped key or the key parameters were altered.
    #[error("the HSM key-encryption key does not open this vault (or its header was altered)")]
    WrongHsmKey,

    /// No token matching the configuration is present in the PKCS#11 library's slots.
    #[error("there is no PKCS#11 token {token} in {library}; tokens present: {present}")]
    TokenNotFound {
        /// The token asked for (`label "concord"`, `slot 3`).
        token: String,
        /// The PKCS#11 library.
        library: PathBuf,
        /// The tokens that are present (labels and slots), or "none".
        present: String,
    },

    /// The vault's key-encryption key lives on another token than the provider's.
    #[error(
        "this vault's key-encryption key is on the PKCS#11 token {found:?}, but the provider uses the token {expected:?}"
    )]
    TokenMismatch {
        /// The provider's token label.
        expected: String,
        /// The token label recorded in the vault header.
        found: String,
    },

    /// A key looked up on a PKCS#11 token is not there (or not of the expected kind).
    #[error("the PKCS#11 token {token:?} holds no {what}")]
    HsmKeyNotFound {
        /// The token's label.
        token: String,
        /// The key looked for ("AES-256 key-encryption key with id … and label …").
        what: String,
    },

    /// A key was to be generated under a label the token already uses.
    #[error(
        "the PKCS#11 token {token:?} already holds an object labelled {label:?}; refusing to replace it"
    )]
    HsmLabelTaken {
        /// The token's label.
        token: String,
        /// The label asked for.
        label: String,
    },

    /// A PKCS#11 call failed (library loading, token access, a refused mechanism, …).
    #[error("PKCS#11: could not {action}: {reason}")]
    Pkcs11 {
        /// What was being done ("load the library /usr/lib/…", "sign with the key \"k\"").
        action: String,
        /// The library's answer (a `CKR_` code and its meaning) or our reason.
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
