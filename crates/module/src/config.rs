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
    /// This module's own technical checks (fee and gas caps, nonce gap, request age). What
    /// may be done at all, by whom, and how much, is the admin-signed policy in the vault.
    #[serde(default)]
    pub checks: LocalChecks,
    /// This module's own view of the chain (for EVM transfers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainConfig>,
    /// This module's own exchange connections, each with its own read-only key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<ExchangeConfig>,
    /// This module's own view of a UTXO chain (for spends from multisig wallets on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utxo: Option<UtxoConfig>,
    /// Where this module serves its Prometheus metrics (`GET /metrics`, plain HTTP: bind it
    /// to loopback or a monitoring network). None: not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
}

/// The module's metrics listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` to listen on, e.g. `127.0.0.1:9464`.
    pub listen: std::net::SocketAddr,
}

/// A UTXO chain this module checks spends against, through its own node. `Debug` leaves the
/// RPC password out; it is wiped when the configuration is dropped.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UtxoConfig {
    /// The chain: `ltc-regtest`, `ltc`, `btc`, `btc-testnet` or `btc-regtest`.
    pub chain: String,
    /// The exchanges' network code for it (`LTC`).
    pub network: String,
    /// The exchanges' coin code of its coin (`LTC`).
    pub coin: String,
    /// This module's own node's JSON-RPC URL.
    pub rpc_url: String,
    /// RPC user.
    pub rpc_user: String,
    /// RPC password (of this module's own node; keep the file owner-only).
    pub rpc_password: String,
    /// Highest fee rate a spend may pay, satoshis per virtual byte.
    #[serde(default = "default_max_fee_rate")]
    pub max_fee_rate_sat_vb: u64,
    /// Highest fee a spend may pay, satoshis.
    #[serde(default = "default_max_fee")]
    pub max_fee_sats: u64,
}

impl std::fmt::Debug for UtxoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtxoConfig")
            .field("chain", &self.chain)
            .field("network", &self.network)
            .field("coin", &self.coin)
            .field("rpc_url", &self.rpc_url)
            .field("rpc_user", &self.rpc_user)
            .field("rpc_password", &"<redacted>")
            .field("max_fee_rate_sat_vb", &self.max_fee_rate_sat_vb)
            .field("max_fee_sats", &self.max_fee_sats)
            .finish()
    }
}

impl Drop for UtxoConfig {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.rpc_password);
    }
}

fn default_max_fee_rate() -> u64 {
    50
}

fn default_max_fee() -> u64 {
    100_000
}

/// The chain this module checks transfers against, through its own RPC endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC endpoint (this module's own node or provider).
    pub rpc_url: String,
    /// The chain id every transfer must carry (and the node must report).
    pub chain_id: u64,
    /// The exchanges' network code for this chain (`ETH` for Ethereum).
    #[serde(default = "default_network")]
    pub network: String,
    /// ERC-20 tokens by exchange coin code. A coin not listed here is not a token; `ETH` is
    /// the native coin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenConfig>,
}

/// An ERC-20 token this module knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The exchange's coin code (e.g. `CTT`).
    pub coin: String,
    /// The token contract.
    pub contract: concord_chain::Address,
    /// Decimals of the token's base unit.
    #[serde(default = "default_decimals")]
    pub decimals: u8,
}

fn default_network() -> String {
    "ETH".into()
}

fn default_decimals() -> u8 {
    18
}

/// One exchange connection of this module.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The name proposals use for it (e.g. `binance`).
    pub name: String,
    /// The API it speaks: `binance`, `kraken` or `coinbase` (the App API with a CDP key).
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Base URL of the exchange's API.
    pub url: String,
    /// This module's own read-only API key (public part; a CDP key's name for Coinbase).
    /// Its secret is in the vault (`concord module exchange-key`), never in this file.
    pub read_api_key: String,
    /// `hmac` or `ed25519`: the read key's type (Binance; Kraken's is HMAC-SHA512, a CDP
    /// key's type is read from its secret).
    #[serde(default = "default_key_type")]
    pub read_key_type: String,
    /// The host (and port) the exchange's signed withdraw requests must name (Coinbase: the
    /// `uri` claim of a send's token, `api.coinbase.com`). A module reaching the exchange
    /// through a proxy sets it to the exchange's own host; by default it is `url`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_host: Option<String>,
    /// The withdraw-capable API key this module holds whole, when it is the holder of the
    /// exchange's held credential in the policy (Kraken: an HMAC secret no threshold scheme
    /// can shard). Its secret is in the vault (`concord module exchange-key --withdraw`); the
    /// module uses it only for a request a certificate of the members' approvals allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdraw_api_key: Option<String>,
}

fn default_kind() -> String {
    "binance".into()
}

fn default_key_type() -> String {
    "hmac".into()
}

/// The coordinator this module dials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// `host:port` of its gRPC listener.
    pub address: String,
    /// More coordinators sharing the same database (high availability): the module keeps a
    /// link to each, so whichever holds a piece of work can reach it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    /// Their pinned identity key (the coordinators of one deployment share it).
    pub identity: PublicIdentity,
}

impl CoordinatorConfig {
    /// Every address to keep a link to.
    pub fn addresses(&self) -> Vec<String> {
        std::iter::once(self.address.clone())
            .chain(self.also.iter().cloned())
            .collect()
    }
}

/// The vault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Vault directory.
    pub dir: PathBuf,
    /// Where the passphrase comes from (a vault whose key is a passphrase's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<PassphraseSource>,
    /// The HSM (PKCS#11) whose token holds the vault's key-encryption key and the module's
    /// own multisig key (a vault whose key is in an HSM): library, token, PIN source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm: Option<concord_vault::Pkcs11Config>,
}

/// What opens a module's vault: its key-encryption-key provider, and the HSM's token when
/// the module uses one.
pub struct VaultKeys {
    /// The key-encryption-key provider.
    pub kek: Box<dyn concord_vault::KekProvider>,
    /// The token (logged in), for keys that live in it.
    pub token: Option<concord_vault::Token>,
}

impl VaultConfig {
    /// The key-encryption key's provider (and the HSM's token): exactly one of
    /// `passphrase` and `hsm` must be set.
    pub fn keys(&self) -> Result<VaultKeys, crate::Error> {
        let err = |e: concord_vault::VaultError| crate::Error::Vault(e.to_string());
        match (&self.passphrase, &self.hsm) {
            (Some(p), None) => Ok(VaultKeys {
                kek: Box::new(concord_vault::PassphraseKek::from_source(p).map_err(err)?),
                token: None,
            }),
            (None, Some(h)) => {
                let token = concord_vault::Token::open(h).map_err(err)?;
                Ok(VaultKeys {
                    kek: Box::new(concord_vault::Pkcs11Kek::new(token.clone())),
                    token: Some(token),
                })
            }
            (Some(_), Some(_)) => Err(crate::Error::Config(
                "[vault] sets both a passphrase and an HSM: a vault's key comes from one of them"
                    .into(),
            )),
            (None, None) => Err(crate::Error::Config(
                "[vault] sets neither a passphrase nor an HSM: say where the vault's key comes from".into(),
            )),
        }
    }
}

/// The technical checks this module applies on top of the signed policy, whatever the
/// coordinator proposes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalChecks {
    /// Largest message (bytes) it approves.
    pub max_message_len: usize,
    /// Fee caps for EVM transfers (wei per gas).
    pub max_fee_per_gas: u64,
    /// Priority fee cap for EVM transfers (wei per gas).
    pub max_priority_fee_per_gas: u64,
    /// Gas limit cap for EVM transfers.
    pub max_gas_limit: u64,
    /// How far ahead of the chain's pending nonce a transfer's nonce may be.
    pub max_nonce_gap: u64,
    /// How old (or how far in the future) a withdraw request's timestamp may be, seconds.
    pub max_request_age_secs: u64,
}

impl Default for LocalChecks {
    fn default() -> Self {
        LocalChecks {
            max_message_len: concord_wire::payload::MAX_MESSAGE_LEN,
            max_fee_per_gas: 500_000_000_000,
            max_priority_fee_per_gas: 50_000_000_000,
            max_gas_limit: 200_000,
            max_nonce_gap: 16,
            max_request_age_secs: 60,
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
