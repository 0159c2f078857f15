//! The simulator's configuration file (TOML). `sim.example.toml` beside this crate's
//! `Cargo.toml` shows every field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::SimError;
use crate::amount::parse_amount;
use crate::auth::{parse_ed25519_public_key, valid_api_key_format};

/// A secret string (HMAC secret, private key, admin token): zeroized on drop, printed as
/// `<redacted>` by `Debug`. It serializes as the plain string, so a written config file holds it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The whole simulator configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Where the binary listens (the library's [`crate::serve`] takes a bound listener instead).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// JSON-RPC URL of the EVM node that carries every configured network.
    pub rpc_url: String,
    /// The chain id the node must report; withdrawals are signed for it.
    pub chain_id: u64,
    /// Confirmations after which a deposit is credited (1 = credited in the block that mined it).
    pub confirmations: u64,
    /// Seed from which deposit addresses are derived (the same seed gives the same addresses).
    #[serde(default = "default_seed")]
    pub address_seed: String,
    /// The hot wallet's private key (hex, with or without `0x`); exclusive with `hot_wallet_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_wallet_key: Option<Secret>,
    /// A file holding the hot wallet's private key in hex; relative paths are taken from the
    /// config file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_wallet_key_file: Option<PathBuf>,
    /// Bearer token of the `/sim/` admin endpoints.
    pub admin_token: Secret,
    /// How often the chain is polled for new blocks, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// Also refuse a replayed read (GET). Replayed withdrawals are always refused; reads are
    /// answered by default, because a client may legitimately send the same read twice in
    /// one millisecond (identical parameters and timestamp give an identical signature).
    #[serde(default)]
    pub reject_replayed_reads: bool,
    /// First block scanned for deposits; default: the node's head when the simulator starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_block: Option<u64>,
    /// Coins and the networks they are offered on.
    pub coins: Vec<CoinConfig>,
    /// A UTXO chain (Litecoin, Bitcoin) beside the EVM node, if any: its network's coins
    /// are deposited to and withdrawn on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utxo: Option<UtxoChainConfig>,
    /// User accounts.
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8765))
}

fn default_seed() -> String {
    "concord-exchange-sim".to_string()
}

fn default_poll_ms() -> u64 {
    250
}

/// One coin on one network. A coin offered on several networks has one entry per network; the
/// first entry is its default network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoinConfig {
    /// The coin, as Binance names it ("ETH", "USDT", ...).
    pub coin: String,
    /// The network, as Binance names it ("ETH" for Ethereum mainnet-style networks).
    pub network: String,
    /// Decimals of the coin on this network (18 for ETH).
    pub decimals: u8,
    /// ERC-20 contract; absent for the network's native coin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<Address>,
    /// Fee charged on top of each withdrawal, as a decimal string.
    pub withdraw_fee: String,
    /// Smallest withdrawal amount, as a decimal string.
    pub withdraw_min: String,
}

/// A UTXO chain served by a Bitcoin-family node over JSON-RPC (Litecoin Core in the devnet).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UtxoChainConfig {
    /// The node's JSON-RPC URL.
    pub rpc_url: String,
    /// RPC user.
    pub rpc_user: String,
    /// RPC password.
    pub rpc_password: Secret,
    /// The chain: `ltc`, `ltc-regtest`, `btc`, `btc-testnet` or `btc-regtest` (address
    /// prefixes).
    pub chain: String,
    /// The Binance network code served by this node ("LTC"); its coin entry has no contract.
    pub network: String,
    /// The hot wallet's secp256k1 key (hex): withdrawals are paid from its P2WPKH address.
    pub hot_wallet_key: Secret,
    /// Fee rate of withdrawal transactions, satoshis (litoshis) per virtual byte.
    #[serde(default = "default_utxo_fee_rate")]
    pub fee_rate_sat_vb: u64,
}

fn default_utxo_fee_rate() -> u64 {
    10
}

impl UtxoChainConfig {
    /// The chain's address rules.
    pub fn chain(&self) -> Result<concord_chain::utxo::UtxoNetwork, SimError> {
        self.chain
            .parse()
            .map_err(|e: concord_chain::utxo::UtxoError| {
                SimError::Config(format!("utxo.chain: {e}"))
            })
    }

    /// The hot wallet's key.
    pub fn hot_wallet_key(
        &self,
    ) -> Result<concord_chain::utxo::bitcoin::secp256k1::SecretKey, SimError> {
        let text = self.hot_wallet_key.expose().trim();
        let mut bytes = hex::decode(text.strip_prefix("0x").unwrap_or(text))
            .map_err(|_| SimError::Config("utxo.hot_wallet_key is not hex".into()))?;
        let key =
            concord_chain::utxo::bitcoin::secp256k1::SecretKey::from_slice(&bytes).map_err(|_| {
                SimError::Config(
                    "utxo.hot_wallet_key is not a secp256k1 secret key (32 bytes)".into(),
                )
            });
        bytes.zeroize();
        key
    }
}

/// One user account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Unique account name (also feeds the deposit address derivation).
    pub name: String,
    /// Opening balances: coin → decimal string.
    #[serde(default)]
    pub balances: BTreeMap<String, String>,
    /// API keys of the account.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
}

/// One API key of an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyConfig {
    /// The API key string sent in `X-MBX-APIKEY`: 64 ASCII letters and digits, like Binance's.
    pub api_key: String,
    /// How requests made with the key are signed.
    #[serde(flatten)]
    pub kind: ApiKeyKind,
    /// What the key may do.
    pub permissions: Vec<Permission>,
}

/// The kind of an API key and its verification material.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ApiKeyKind {
    /// HMAC-SHA256 over the request, hex signature.
    Hmac {
        /// The shared secret.
        secret: Secret,
    },
    /// Ed25519 over the request, base64 signature.
    Ed25519 {
        /// The public key: PEM (SubjectPublicKeyInfo, as uploaded to Binance) or 32 bytes hex.
        public_key: String,
    },
    /// A Kraken key: HMAC-SHA512 `API-Sign` with this secret (standard base64, as Kraken
    /// shows it). Used on Kraken's routes only (`/0/private/…`).
    Kraken {
        /// The secret, base64.
        secret: Secret,
    },
    /// A Coinbase CDP key (its `api_key` is the key's name): JWTs signed ES256 (an EC P-256
    /// public key, PEM SubjectPublicKeyInfo) or EdDSA (an Ed25519 public key, PEM or hex).
    /// Used on Coinbase's routes only (`/v2/…`).
    Cdp {
        /// The public key.
        public_key: String,
    },
}

/// A permission of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Read balances, deposit addresses and histories ("Enable Reading").
    Read,
    /// Submit withdrawals ("Enable Withdrawals").
    Withdraw,
}

/// Reads and validates a configuration file.
pub fn load_config(path: impl AsRef<Path>) -> Result<SimConfig, SimError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| SimError::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    let mut config: SimConfig = toml::from_str(&text).map_err(|e| SimError::ParseConfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if let Some(file) = &config.hot_wallet_key_file
        && file.is_relative()
        && let Some(dir) = path.parent()
    {
        config.hot_wallet_key_file = Some(dir.join(file));
    }
    config.validate()?;
    Ok(config)
}

impl SimConfig {
    /// Parses and validates a configuration from TOML text (relative key files are taken from
    /// the current directory).
    pub fn from_toml_str(text: &str) -> Result<Self, SimError> {
        let config: SimConfig = toml::from_str(text).map_err(|e| SimError::ParseConfig {
            path: PathBuf::from("<string>"),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML text (secrets included: it is a config file).
    pub fn to_toml_string(&self) -> Result<String, SimError> {
        toml::to_string(self).map_err(|e| SimError::Config(format!("cannot write as TOML: {e}")))
    }

    /// Checks everything that can be checked without the chain.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |msg: String| Err(SimError::Config(msg));
        if url::Url::parse(&self.rpc_url).is_err() {
            return bad(format!("rpc_url {:?} is not a URL", self.rpc_url));
        }
        if self.confirmations == 0 {
            return bad("confirmations must be at least 1".into());
        }
        if self.poll_interval_ms == 0 {
            return bad("poll_interval_ms must be at least 1".into());
        }
        if self.admin_token.expose().is_empty() {
            return bad("admin_token is empty".into());
        }
        match (&self.hot_wallet_key, &self.hot_wallet_key_file) {
            (Some(_), Some(_)) => {
                return bad("give hot_wallet_key or hot_wallet_key_file, not both".into());
            }
            (None, None) => return bad("hot_wallet_key or hot_wallet_key_file is required".into()),
            _ => {}
        }
        if self.coins.is_empty() {
            return bad("no coins are configured".into());
        }
        for (i, coin) in self.coins.iter().enumerate() {
            if coin.coin.is_empty() || coin.network.is_empty() {
                return bad(format!("coin entry {i} has an empty coin or network name"));
            }
            if coin.decimals > 36 {
                return bad(format!(
                    "coin {} has {} decimals; at most 36",
                    coin.coin, coin.decimals
                ));
            }
            if self.coins[..i]
                .iter()
                .any(|c| c.coin == coin.coin && c.network == coin.network)
            {
                return bad(format!(
                    "coin {} on network {} is configured twice",
                    coin.coin, coin.network
                ));
            }
            if coin.contract.is_none()
                && self.coins[..i]
                    .iter()
                    .any(|c| c.network == coin.network && c.contract.is_none())
            {
                return bad(format!(
                    "network {} has two native coins (entries without a contract)",
                    coin.network
                ));
            }
            if let Some(contract) = coin.contract
                && self.coins[..i].iter().any(|c| c.contract == Some(contract))
            {
                return bad(format!("contract {contract} is configured for two coins"));
            }
            if self.coins[..i]
                .iter()
                .any(|c| c.coin == coin.coin && c.decimals != coin.decimals)
            {
                return bad(format!(
                    "coin {} has different decimals on different networks; the simulator keeps one balance per coin",
                    coin.coin
                ));
            }
            for (field, value) in [
                ("withdraw_fee", &coin.withdraw_fee),
                ("withdraw_min", &coin.withdraw_min),
            ] {
                if parse_amount(value, coin.decimals).is_err() {
                    return bad(format!(
                        "coin {} on {}: {field} {value:?} is not a decimal amount with at most {} decimals",
                        coin.coin, coin.network, coin.decimals
                    ));
                }
            }
        }
        if let Some(u) = &self.utxo {
            if url::Url::parse(&u.rpc_url).is_err() {
                return bad(format!("utxo.rpc_url {:?} is not a URL", u.rpc_url));
            }
            u.chain()?;
            u.hot_wallet_key()?;
            if u.fee_rate_sat_vb == 0 {
                return bad("utxo.fee_rate_sat_vb must be at least 1".into());
            }
            let on: Vec<&CoinConfig> = self
                .coins
                .iter()
                .filter(|c| c.network == u.network)
                .collect();
            match on.as_slice() {
                [] => {
                    return bad(format!(
                        "no coin is configured on the UTXO network {}",
                        u.network
                    ));
                }
                [c] if c.contract.is_some() => {
                    return bad(format!(
                        "coin {} on UTXO network {} cannot have a contract",
                        c.coin, u.network
                    ));
                }
                [c] if c.decimals != 8 => {
                    return bad(format!(
                        "coin {} on UTXO network {} has {} decimals; UTXO coins have 8",
                        c.coin, u.network, c.decimals
                    ));
                }
                [_] => {}
                _ => {
                    return bad(format!(
                        "the UTXO network {} carries one coin only",
                        u.network
                    ));
                }
            }
        }
        let mut keys = std::collections::HashSet::new();
        for (i, account) in self.accounts.iter().enumerate() {
            if account.name.is_empty() {
                return bad(format!("account entry {i} has an empty name"));
            }
            if self.accounts[..i].iter().any(|a| a.name == account.name) {
                return bad(format!("account {} is configured twice", account.name));
            }
            for (coin, value) in &account.balances {
                let Some(decimals) = self.coin_decimals(coin) else {
                    return bad(format!(
                        "account {} has a balance of unknown coin {coin}",
                        account.name
                    ));
                };
                if parse_amount(value, decimals).is_err() {
                    return bad(format!(
                        "account {}: balance {value:?} of {coin} is not a decimal amount with at most {decimals} decimals",
                        account.name
                    ));
                }
            }
            for key in &account.api_keys {
                key.validate().map_err(|reason| {
                    SimError::Config(format!("account {}: {reason}", account.name))
                })?;
                if !keys.insert(key.api_key.clone()) {
                    return bad(format!("API key {} is configured twice", key.api_key));
                }
            }
        }
        Ok(())
    }

    /// Whether `network` is the UTXO chain's (else the EVM node's).
    pub fn is_utxo_network(&self, network: &str) -> bool {
        self.utxo.as_ref().is_some_and(|u| u.network == network)
    }

    /// Decimals of a coin (the same on every network it is offered on).
    pub fn coin_decimals(&self, coin: &str) -> Option<u8> {
        self.coins
            .iter()
            .find(|c| c.coin == coin)
            .map(|c| c.decimals)
    }

    /// Loads the hot wallet's signer from `hot_wallet_key` or `hot_wallet_key_file`.
    pub fn hot_wallet_signer(&self) -> Result<PrivateKeySigner, SimError> {
        let text = match (&self.hot_wallet_key, &self.hot_wallet_key_file) {
            (Some(key), _) => key.clone(),
            (None, Some(path)) => Secret::new(std::fs::read_to_string(path).map_err(|source| {
                SimError::ReadConfig {
                    path: path.clone(),
                    source,
                }
            })?),
            (None, None) => {
                return Err(SimError::Config(
                    "hot_wallet_key or hot_wallet_key_file is required".into(),
                ));
            }
        };
        let trimmed = text.expose().trim();
        let hex_text = trimmed.strip_prefix("0x").unwrap_or(trimmed);
        let mut bytes = hex::decode(hex_text).map_err(|_| {
            SimError::Config("the hot wallet key is not hex (64 hex digits expected)".into())
        })?;
        let signer = if bytes.len() == 32 {
            PrivateKeySigner::from_slice(&bytes).map_err(|_| {
                SimError::Config("the hot wallet key is not a valid secp256k1 secret key".into())
            })
        } else {
            Err(SimError::Config(format!(
                "the hot wallet key has {} bytes; 32 expected",
                bytes.len()
            )))
        };
        bytes.zeroize();
        signer
    }
}

impl ApiKeyConfig {
    /// Checks the key string and its verification material.
    pub fn validate(&self) -> Result<(), String> {
        if let ApiKeyKind::Cdp { public_key } = &self.kind {
            if self.api_key.is_empty()
                || self.api_key.len() > 200
                || !self.api_key.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!(
                    "CDP key name {:?} is not 1 to 200 printable ASCII characters",
                    self.api_key
                ));
            }
            if self.permissions.is_empty() {
                return Err(format!("API key {} has no permissions", self.api_key));
            }
            crate::coinbase::CdpVerifier::parse(public_key)
                .map_err(|e| format!("CDP key {}: {e}", self.api_key))?;
            return Ok(());
        }
        if let ApiKeyKind::Kraken { secret } = &self.kind {
            // Kraken's keys are 56 base64 characters; any printable key string is taken.
            if self.api_key.is_empty()
                || self.api_key.len() > 128
                || !self.api_key.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!(
                    "Kraken API key {:?} is not 1 to 128 printable ASCII characters",
                    self.api_key
                ));
            }
            if self.permissions.is_empty() {
                return Err(format!("API key {} has no permissions", self.api_key));
            }
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(secret.expose().trim())
                .map_err(|_| {
                    format!("Kraken API key {}: the secret is not base64", self.api_key)
                })?;
            if decoded.is_empty() {
                return Err(format!(
                    "Kraken API key {}: the secret is empty",
                    self.api_key
                ));
            }
            return Ok(());
        }
        if !valid_api_key_format(&self.api_key) {
            return Err(format!(
                "API key {:?} is not 64 ASCII letters and digits",
                self.api_key
            ));
        }
        if self.permissions.is_empty() {
            return Err(format!("API key {} has no permissions", self.api_key));
        }
        match &self.kind {
            ApiKeyKind::Hmac { secret } => {
                if secret.expose().is_empty() {
                    return Err(format!("API key {} has an empty HMAC secret", self.api_key));
                }
            }
            ApiKeyKind::Ed25519 { public_key } => {
                parse_ed25519_public_key(public_key)
                    .map_err(|reason| format!("API key {}: {reason}", self.api_key))?;
            }
            ApiKeyKind::Kraken { .. } | ApiKeyKind::Cdp { .. } => {}
        }
        Ok(())
    }
}
