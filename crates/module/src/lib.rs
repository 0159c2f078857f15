//! Concord's secure module (patent 200-1 … 200-N): holds its identity key, its shards of
//! wallet keys and its own view of the world, all in a sealed vault. It dials out to the
//! coordinator (it listens on no port), checks every job against its own pinned peers and
//! policy, recomputes every digest it is asked to approve, and joins threshold signing only
//! for a digest it approved.

mod approve;
pub mod audit;
mod checks;
pub mod config;
pub mod daemon;
mod held;
mod ledger;
mod multisig;
pub mod state;
mod transport;

pub use config::Config;
pub use daemon::run;
pub use state::{PolicyInForce, PublicInfo, State};

/// The module's errors, as sentences.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is missing or wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The vault cannot be opened or read.
    #[error("vault: {0}")]
    Vault(String),
    /// The coordinator cannot be reached or broke the protocol.
    #[error("coordinator link: {0}")]
    Link(String),
    /// A job was refused by this module's checks.
    #[error("{0}")]
    Refused(String),
    /// A threshold protocol failed.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A threshold protocol named a party that cheated (recorded against it for good).
    #[error("protocol: {reason}")]
    Cheating {
        /// The party's index in the group.
        party: u16,
        /// What it did.
        reason: String,
    },
}

/// A named failpoint, for the tests that kill a module in the middle of a protocol: with the
/// `failpoints` feature and `CONCORD_MODULE_FAILPOINT` set to `name`, the process stops
/// dead there (abort, like `kill -9`). Without the feature it is nothing at all.
#[inline]
pub(crate) fn failpoint(name: &str) {
    #[cfg(feature = "failpoints")]
    if std::env::var("CONCORD_MODULE_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: stopping the process");
        std::process::abort();
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Verifies the module's audit trail (the vault opened with the configured passphrase, for
/// the trail's key): every entry, or the first broken one.
pub fn verify_audit(config: &Config) -> Result<Result<audit::Verified, audit::Broken>, Error> {
    let keys = config.vault.keys()?;
    State::verify_audit(&config.vault.dir, keys.kek.as_ref())
}

/// Opens the module's state from its configuration (the vault's key from its passphrase or
/// its HSM, as the configuration says).
pub fn open_state(config: &Config) -> Result<State, Error> {
    let keys = config.vault.keys()?;
    State::open_with(
        &config.id,
        &config.vault.dir,
        keys.kek.as_ref(),
        config.checks.clone(),
        keys.token.as_ref(),
    )
}
