//! The module's configuration file (TOML).
//!
//! ```toml
//! id = "m1"
//!
//! [coordinator]
//! address = "127.0.0.1:7443"
//! identity = "<the coordinator's Ed25519 identity key, hex>"
//!
//! [vault]
//! dir = "/var/lib/concord/m1/vault"
//! passphrase = { env = "CONCORD_M1_PASSPHRASE" }   # or { file = "/run/secrets/m1" }
//! ```
//!
//! The passphrase is read from a file or an environment variable, never from a
//! command-line argument.

use std::path::{Path, PathBuf};

use concord_vault::PassphraseSource;
use concord_wire::identity::PublicIdentity;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This module's id, as enrolled at the coordinator.
    pub id: String,
    /// Where the coordinator is and which key it must present.
    pub coordinator: CoordinatorConfig,
    /// The sealed vault.
    pub vault: VaultConfig,
    /// Local policy.
    #[serde(default)]
    pub policy: Policy,
}

/// The coordinator this module dials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// `host:port` of its gRPC listener.
    pub address: String,
    /// Its pinned identity key.
    pub identity: PublicIdentity,
}

/// The vault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Vault directory.
    pub dir: PathBuf,
    /// Where the passphrase comes from.
    pub passphrase: PassphraseSource,
}

/// What this module agrees to sign, whatever the coordinator proposes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Largest message (bytes) it approves.
    pub max_message_len: usize,
    /// Refuse payloads without a replay-protection nonce.
    pub require_nonce: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_message_len: concord_types::payload::MAX_MESSAGE_LEN,
            require_nonce: false,
        }
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            Error::Config(format!(
                "{} is not a valid module configuration: {e}",
                path.display()
            ))
        })?;
        if config.id.is_empty() || config.id.len() > 64 {
            return Err(Error::Config(
                "the module id must be 1 to 64 characters".into(),
            ));
        }
        Ok(config)
    }

    /// Writes the configuration as TOML.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let text = toml::to_string_pretty(self).map_err(|e| Error::Config(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))
    }
}
