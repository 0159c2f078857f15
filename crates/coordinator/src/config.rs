//! The coordinator's configuration file (TOML). Relative paths are relative to the file.
//!
//! ```toml
//! grpc_listen = "127.0.0.1:7443"     # modules connect here (mutual TLS)
//! http_listen = "127.0.0.1:8080"     # REST API (HTTPS)
//! database = "coordinator.db"        # SQLite file, or postgres://user:pass@host/db
//! identity_key = "identity.key"      # the coordinator's TLS identity (hex seed, mode 0600)
//!
//! presignatures = 2                 # kept ready per ECDSA wallet and signer subset
//!
//! [api_tls]                          # the API's certificate chain and key (PEM)
//! cert = "api.crt"
//! key = "api.key"                    # mode 0600
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
    /// The API's TLS certificate and key. Required unless `insecure_http` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_tls: Option<ApiTlsSettings>,
    /// Serve the API over plain HTTP (no TLS): for development on a loopback address only;
    /// refused when `http_listen` is any other address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_http: bool,
    /// The chain transfers go over (none: transfers are disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainSettings>,
    /// Exchanges the coordinator sends group-signed requests to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<ExchangeEndpoint>,
    /// A UTXO chain deposits from native multisig (P2WSH) wallets go over (none: only the
    /// EVM chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utxo: Option<UtxoSettings>,
}

/// The API's TLS certificate and key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTlsSettings {
    /// PEM file with the server certificate first, then any intermediate certificates.
    pub cert: PathBuf,
    /// PEM file with the certificate's private key (mode 0600).
    pub key: PathBuf,
}

/// How the API is served.
#[derive(Clone)]
pub enum ApiTransport {
    /// HTTPS with this TLS configuration.
    Https(std::sync::Arc<rustls::ServerConfig>),
    /// Plain HTTP (`insecure_http`): loopback addresses only.
    InsecureHttp,
}

impl std::fmt::Debug for ApiTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiTransport::Https(_) => "Https",
            ApiTransport::InsecureHttp => "InsecureHttp",
        })
    }
}

/// Refuses plain HTTP (`insecure_http`) on `addr` unless it is a loopback address.
pub fn check_insecure_listen(addr: std::net::SocketAddr) -> Result<(), Error> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "insecure_http serves the API without TLS, which is allowed on a loopback address \
             only, and {addr} is not one: configure [api_tls], or listen on 127.0.0.1"
        )))
    }
}

/// A UTXO chain (Bitcoin, Litecoin) as the coordinator sees it, through its own node. `Debug`
/// leaves the RPC password out; it is wiped when the settings are dropped.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UtxoSettings {
    /// The chain: `ltc-regtest`, `ltc`, `btc`, `btc-testnet` or `btc-regtest`.
    pub chain: String,
    /// The exchanges' network code for it (`LTC`).
    pub network: String,
    /// The exchanges' coin code of its coin (`LTC`).
    pub coin: String,
    /// The node's JSON-RPC URL.
    pub rpc_url: String,
    /// RPC user.
    pub rpc_user: String,
    /// RPC password.
    pub rpc_password: String,
    /// The fee rate proposed, satoshis per virtual byte (modules cap it by their own policy).
    #[serde(default = "default_fee_rate")]
    pub fee_rate_sat_vb: u64,
    /// Confirmations before a spend counts as final, and before an output is spent.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
}

impl std::fmt::Debug for UtxoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtxoSettings")
            .field("chain", &self.chain)
            .field("network", &self.network)
            .field("coin", &self.coin)
            .field("rpc_url", &self.rpc_url)
            .field("rpc_user", &self.rpc_user)
            .field("rpc_password", &"<redacted>")
            .field("fee_rate_sat_vb", &self.fee_rate_sat_vb)
            .field("confirmations", &self.confirmations)
            .finish()
    }
}

impl Drop for UtxoSettings {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.rpc_password);
    }
}

fn default_fee_rate() -> u64 {
    2
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
    /// The file holding the gas account's key (hex secp256k1, mode 0600) that submits the
    /// Safe wallets' `execTransaction`: it pays the gas and can do nothing else with a Safe
    /// (the Safe checks the owners' signatures; no refund is ever signed). None: Safe
    /// transfers are disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_gas_key: Option<PathBuf>,
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
    /// The API it speaks: `binance`, `kraken` or `coinbase` (deposits to all three;
    /// withdrawals from Binance only).
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
        if let Some(tls) = &mut c.api_tls {
            for p in [&mut tls.cert, &mut tls.key] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        if let Some(chain) = &mut c.chain
            && let Some(k) = &mut chain.safe_gas_key
            && k.is_relative()
        {
            *k = base.join(&*k);
        }
        Ok(c)
    }

    /// Whether `database` is a URL (PostgreSQL, or an explicit `sqlite:` URL) rather than a
    /// file.
    pub fn database_is_url(&self) -> bool {
        let d = self.database.to_string_lossy();
        d.starts_with("postgres://") || d.starts_with("postgresql://") || d.starts_with("sqlite:")
    }

    /// How the API is to be served: HTTPS with `[api_tls]`, or plain HTTP when
    /// `insecure_http` is set (whether `http_listen` is a loopback address is checked where
    /// it is bound, by [`crate::serve`]). Neither, or both, is a configuration error.
    pub fn api_transport(&self) -> Result<ApiTransport, Error> {
        match (&self.api_tls, self.insecure_http) {
            (Some(_), true) => Err(Error::BadRequest(
                "the configuration has both [api_tls] and insecure_http = true: remove one \
                 (insecure_http serves the API without TLS)"
                    .into(),
            )),
            (None, true) => Ok(ApiTransport::InsecureHttp),
            (None, false) => Err(Error::BadRequest(
                "the configuration has no [api_tls] (cert, key): the API is served over HTTPS \
                 only; `concord coordinator init` makes a certificate, or set insecure_http = \
                 true for plain HTTP on a loopback address (development only)"
                    .into(),
            )),
            (Some(tls), false) => {
                let (chain, key) = concord_wire::api_tls::load_pem(&tls.cert, &tls.key)
                    .map_err(|e| Error::BadRequest(format!("[api_tls]: {e}")))?;
                let config = concord_wire::api_tls::server_config(chain, key)
                    .map_err(|e| Error::BadRequest(format!("[api_tls]: {e}")))?;
                Ok(ApiTransport::Https(config))
            }
        }
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
    /// The UTXO chain, if one is configured.
    pub(crate) utxo: Option<UtxoContext>,
    /// The gas account that submits Safe transactions, if one is configured.
    pub(crate) gas_key: Option<zeroize::Zeroizing<[u8; 32]>>,
}

/// A UTXO chain and the coordinator's node on it.
pub(crate) struct UtxoContext {
    pub(crate) settings: UtxoSettings,
    pub(crate) network: concord_chain::utxo::UtxoNetwork,
    pub(crate) node: concord_chain::litecoind::UtxoNode,
}

/// Reads a hex secp256k1 key from a file (whitespace around it ignored).
fn read_key_file(path: &Path) -> Result<zeroize::Zeroizing<[u8; 32]>, Error> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        Error::BadRequest(format!("cannot read the gas key {}: {e}", path.display()))
    })?);
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim().trim_start_matches("0x"), &mut *key).map_err(|_| {
        Error::BadRequest(format!(
            "{} does not hold a 32-byte hex key",
            path.display()
        ))
    })?;
    Ok(key)
}

impl TransferContext {
    pub(crate) fn new(
        chain: ChainSettings,
        exchanges: Vec<ExchangeEndpoint>,
        utxo: Option<UtxoSettings>,
    ) -> Result<TransferContext, Error> {
        let gas_key = chain
            .safe_gas_key
            .as_deref()
            .map(read_key_file)
            .transpose()?;
        let utxo = utxo
            .map(|settings| {
                let network =
                    settings
                        .chain
                        .parse()
                        .map_err(|e: concord_chain::utxo::UtxoError| {
                            Error::BadRequest(format!("[utxo] chain: {e}"))
                        })?;
                let node = concord_chain::litecoind::UtxoNode::new(
                    settings.rpc_url.clone(),
                    &settings.rpc_user,
                    &settings.rpc_password,
                );
                Ok::<_, Error>(UtxoContext {
                    settings,
                    network,
                    node,
                })
            })
            .transpose()?;
        let client = EvmClient::new(&chain.rpc_url).map_err(|e| {
            Error::BadRequest(format!(
                "the chain RPC URL {} is unusable: {e}",
                chain.rpc_url
            ))
        })?;
        for x in &exchanges {
            if !matches!(x.kind.as_str(), "binance" | "kraken" | "coinbase") {
                return Err(Error::BadRequest(format!(
                    "exchange {}: the API kind {:?} is not supported (supported: binance, kraken, coinbase)",
                    x.name, x.kind
                )));
            }
        }
        Ok(TransferContext {
            chain,
            client,
            exchanges: exchanges.into_iter().map(|x| (x.name.clone(), x)).collect(),
            utxo,
            gas_key,
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

    /// The UTXO chain whose exchange network code is `network`, if configured.
    pub(crate) fn utxo_for(&self, network: &str) -> Option<&UtxoContext> {
        self.utxo.as_ref().filter(|u| u.settings.network == network)
    }

    pub(crate) fn exchange(&self, name: &str) -> Result<&ExchangeEndpoint, Error> {
        self.exchanges
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("exchange {name:?} is not configured")))
    }
}
