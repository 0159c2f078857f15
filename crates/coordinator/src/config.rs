//! The coordinator's configuration file (TOML). Relative paths are relative to the file.
//!
//! ```toml
//! grpc_listen = "127.0.0.1:7443"     # modules connect here (mutual TLS)
//! http_listen = "127.0.0.1:8080"     # REST API
//! database = "coordinator.db"        # SQLite file
//! identity_key = "identity.key"      # the coordinator's TLS identity (hex seed, mode 0600)
//!
//! presignatures = 2                 # kept ready per ECDSA wallet and signer subset
//!
//! [timeouts]
//! approval_secs = 15
//! protocol_secs = 60
//! aux_info_secs = 1800
//! connect_secs = 30
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::jobs::Timeouts;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// gRPC listener for modules.
    pub grpc_listen: String,
    /// REST listener.
    pub http_listen: String,
    /// SQLite database file.
    pub database: PathBuf,
    /// File holding the TLS identity key (hex Ed25519 seed).
    pub identity_key: PathBuf,
    /// Step timeouts.
    #[serde(default)]
    pub timeouts: TimeoutConfig,
    /// Presignatures kept ready per ECDSA wallet and signer subset (0 disables the pool).
    #[serde(default = "default_presignatures")]
    pub presignatures: usize,
    /// The chain transfers go over (none: transfers are disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<crate::transfers::ChainSettings>,
    /// Exchanges the coordinator sends group-signed requests to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<crate::transfers::ExchangeEndpoint>,
}

fn default_presignatures() -> usize {
    2
}

/// Step timeouts, in seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// Waiting for approvals.
    pub approval_secs: u64,
    /// A key-generation or signing run.
    pub protocol_secs: u64,
    /// Preparing a group's auxiliary material.
    pub aux_info_secs: u64,
    /// Waiting for members to connect.
    pub connect_secs: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        let d = Timeouts::default();
        TimeoutConfig {
            approval_secs: d.approval.as_secs(),
            protocol_secs: d.protocol.as_secs(),
            aux_info_secs: d.aux_info.as_secs(),
            connect_secs: d.connect.as_secs(),
        }
    }
}

impl From<&TimeoutConfig> for Timeouts {
    fn from(t: &TimeoutConfig) -> Self {
        Timeouts {
            approval: Duration::from_secs(t.approval_secs),
            protocol: Duration::from_secs(t.protocol_secs),
            aux_info: Duration::from_secs(t.aux_info_secs),
            connect: Duration::from_secs(t.connect_secs),
        }
    }
}

impl Config {
    /// Reads a configuration file, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::BadRequest(format!("cannot read {}: {e}", path.display())))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| {
            Error::BadRequest(format!(
                "{} is not a valid coordinator configuration: {e}",
                path.display()
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if c.database.is_relative() {
            c.database = base.join(&c.database);
        }
        if c.identity_key.is_relative() {
            c.identity_key = base.join(&c.identity_key);
        }
        Ok(c)
    }

    /// Writes the configuration as TOML.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let text = toml::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))
    }
}
