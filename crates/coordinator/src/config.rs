//! The coordinator's configuration file (TOML). Relative paths are relative to the file.
//!
//! ```toml
//! grpc_listen = "127.0.0.1:7443"     # modules connect here (mutual TLS)
//! http_listen = "127.0.0.1:8080"     # REST API
//! database = "coordinator.db"        # SQLite file, or postgres://user:pass@host/db
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use concord_chain::Address;

use concord_chain::{Asset, EvmClient};

use crate::Error;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// gRPC listener for modules.
    pub grpc_listen: String,
    /// REST listener.
    pub http_listen: String,
    /// The database: a SQLite file (the default; relative to this file), or a PostgreSQL URL
    /// (`postgres://…`), which several coordinators can share.
    pub database: PathBuf,
    /// File holding the TLS identity key (hex Ed25519 seed).
    pub identity_key: PathBuf,
    /// This coordinator's id as the holder of leases on work. A coordinator restarted under
    /// the same id takes its unfinished work back at once; one that is not must wait for the
    /// leases to expire. Give every coordinator sharing a database its own. Absent: a fresh
    /// id at every start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Step timeouts.
    #[serde(default)]
    pub timeouts: TimeoutConfig,
    /// Presignatures kept ready per ECDSA wallet and signer subset (0 disables the pool).
    #[serde(default = "default_presignatures")]
    pub presignatures: usize,
    /// The chain transfers go over (none: transfers are disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainSettings>,
    /// Exchanges the coordinator sends group-signed requests to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<ExchangeEndpoint>,
}

/// The chain transfers go over, as the coordinator sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSettings {
    /// JSON-RPC endpoint.
    pub rpc_url: String,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The exchanges' network code for this chain.
    #[serde(default = "default_network")]
    pub network: String,
    /// Confirmations before a transaction counts as final (1 = included).
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// Fee cap proposed at most (wei per gas).
    #[serde(default = "default_max_fee")]
    pub max_fee_per_gas: u64,
    /// Priority fee proposed at most (wei per gas).
    #[serde(default = "default_max_priority_fee")]
    pub max_priority_fee_per_gas: u64,
    /// How long a transfer is followed before its record says it is overdue, seconds. A
    /// transfer is never failed for being slow: it stays pending, and is followed on.
    #[serde(default = "default_follow_secs")]
    pub follow_secs: u64,
    /// ERC-20 tokens by exchange coin code.
    #[serde(default)]
    pub tokens: Vec<TokenSettings>,
}

/// An ERC-20 token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// The exchange's coin code.
    pub coin: String,
    /// The contract.
    pub contract: Address,
    /// Decimals of the base unit.
    #[serde(default = "default_decimals")]
    pub decimals: u8,
}

/// An exchange the coordinator sends signed requests to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeEndpoint {
    /// The name modules know it by.
    pub name: String,
    /// The API it speaks: `binance`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Base URL of its API.
    pub url: String,
}

/// The exchanges' network code of the chain when the configuration names none.
pub(crate) const DEFAULT_NETWORK: &str = "ETH";

fn default_network() -> String {
    DEFAULT_NETWORK.into()
}
fn default_confirmations() -> u64 {
    1
}
fn default_max_fee() -> u64 {
    200_000_000_000
}
fn default_max_priority_fee() -> u64 {
    2_000_000_000
}
fn default_follow_secs() -> u64 {
    300
}
fn default_decimals() -> u8 {
    18
}
fn default_kind() -> String {
    "binance".into()
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
        if c.database.is_relative() && !c.database_is_url() {
            c.database = base.join(&c.database);
        }
        if c.identity_key.is_relative() {
            c.identity_key = base.join(&c.identity_key);
        }
        Ok(c)
    }

    /// Whether `database` is a URL (PostgreSQL, or an explicit `sqlite:` URL) rather than a
    /// file.
    pub fn database_is_url(&self) -> bool {
        let d = self.database.to_string_lossy();
        d.starts_with("postgres://") || d.starts_with("postgresql://") || d.starts_with("sqlite:")
    }

    /// Writes the configuration as TOML.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let text = toml::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))
    }
}

/// How long each step may take.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Waiting for approvals after a proposal.
    pub approval: Duration,
    /// A signing or key-generation run.
    pub protocol: Duration,
    /// Auxiliary-material preparation (safe primes take minutes on small machines).
    pub aux_info: Duration,
    /// Waiting for members to connect before a run that needs all of them.
    pub connect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            approval: Duration::from_secs(15),
            protocol: Duration::from_secs(60),
            aux_info: Duration::from_secs(1800),
            connect: Duration::from_secs(30),
        }
    }
}

/// Decimals of the chain's native coin.
pub(crate) const NATIVE_DECIMALS: u8 = 18;
/// The native coin's exchange code.
pub(crate) const NATIVE_COIN: &str = "ETH";

/// What transfers need besides the engine.
pub(crate) struct TransferContext {
    pub(crate) chain: ChainSettings,
    pub(crate) client: EvmClient,
    pub(crate) exchanges: BTreeMap<String, ExchangeEndpoint>,
}

impl TransferContext {
    pub(crate) fn new(
        chain: ChainSettings,
        exchanges: Vec<ExchangeEndpoint>,
    ) -> Result<TransferContext, Error> {
        let client = EvmClient::new(&chain.rpc_url).map_err(|e| {
            Error::BadRequest(format!(
                "the chain RPC URL {} is unusable: {e}",
                chain.rpc_url
            ))
        })?;
        for x in &exchanges {
            if x.kind != "binance" {
                return Err(Error::BadRequest(format!(
                    "exchange {}: the API kind {:?} is not supported (supported: binance)",
                    x.name, x.kind
                )));
            }
        }
        Ok(TransferContext {
            chain,
            client,
            exchanges: exchanges.into_iter().map(|x| (x.name.clone(), x)).collect(),
        })
    }

    /// The asset and decimals of an exchange coin code on this chain.
    pub(crate) fn asset_of(&self, coin: &str) -> Result<(Asset, u8), Error> {
        if coin == NATIVE_COIN {
            return Ok((Asset::Native, NATIVE_DECIMALS));
        }
        self.chain
            .tokens
            .iter()
            .find(|t| t.coin == coin)
            .map(|t| (Asset::Erc20 { token: t.contract }, t.decimals))
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "coin {coin} is neither {NATIVE_COIN} nor a configured token"
                ))
            })
    }

    pub(crate) fn exchange(&self, name: &str) -> Result<&ExchangeEndpoint, Error> {
        self.exchanges
            .get(name)
            .ok_or_else(|| Error::BadRequest(format!("exchange {name:?} is not configured")))
    }
}
