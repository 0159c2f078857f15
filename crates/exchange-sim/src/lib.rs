//! Concord exchange simulator: a local trading platform that speaks a faithful subset of the
//! Binance wallet API (same paths, parameters, signature checks, JSON shapes and error codes)
//! over a local EVM chain, so that exchange clients written from Binance's documentation work
//! against it unchanged.
//!
//! - Binance endpoints: `GET /api/v3/ping`, `GET /api/v3/time`, `GET /api/v3/account`,
//!   `GET /sapi/v1/capital/deposit/address`, `GET /sapi/v1/capital/deposit/hisrec`,
//!   `POST /sapi/v1/capital/withdraw/apply`, `GET /sapi/v1/capital/withdraw/history`
//!   signed as Binance documents (see [`auth`]).
//! - Kraken's funding subset: `POST /0/private/{Balance, DepositMethods, DepositAddresses,
//!   DepositStatus, WithdrawAddresses, Withdraw, WithdrawStatus}` with `API-Key`/`API-Sign`
//!   and growing nonces, Kraken's `{"error": [...]}` answers (see `kraken`).
//! - Admin endpoints under `/sim/` (not Binance; bearer admin token): `POST /sim/api-keys`,
//!   `POST /sim/kraken/withdraw-keys`,
//!   `POST /sim/credit`, `GET /sim/deposit-address`, `POST`/`GET`/`DELETE /sim/faults`, and
//!   `GET /sim/health` (no token).
//! - Fault injection for tests, set through `/sim/faults`: withdrawals accepted but answered
//!   with a 504 after a delay, 5XX answers without side effect, slow answers; a middleware
//!   around the Binance routes only (never the `/sim/` ones).
//! - A chain watcher credits deposits after N confirmations; withdrawals are sent from the hot
//!   wallet with alloy's local signer, one at a time.
//! - Every error answer is JSON: Binance's `{"code", "msg"}` outside `/sim/` (unknown paths
//!   and methods -1020, bodies over [`BODY_LIMIT`] 413 -1101, parameters that are not
//!   percent-encoded UTF-8 -1100), `{"error"}` under it; a message repeats at most 64
//!   characters of an input.
//!
//! The crate's README lists every endpoint, parameter and error code with its source.
//!
//! Start it with [`serve`] on a bound listener, or [`SimHandle::start`] in tests.

mod admin;
pub mod amount;
mod api;
mod api_error;
pub mod auth;
mod chain;
mod coinbase;
mod config;
mod echo;
mod error;
mod faults;
mod http_errors;
mod kraken;
mod state;
mod time;
mod utxo_chain;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use config::{
    AccountConfig, ApiKeyConfig, ApiKeyKind, CoinConfig, Permission, Secret, SimConfig,
    UtxoChainConfig, load_config,
};
pub use error::SimError;
pub use state::deposit_address;

/// The largest request body read, in bytes (256 KiB; a request of any endpoint is under
/// 2 KiB). A larger body is refused with 413: Binance's -1101 TOO_MANY_PARAMETERS outside
/// `/sim/`, `{"error"}` under it.
pub const BODY_LIMIT: usize = 256 * 1024;

/// State shared by the HTTP handlers and the background tasks.
pub(crate) struct Shared {
    /// The validated configuration.
    pub config: SimConfig,
    /// Balances, keys, deposits, withdrawals.
    pub ledger: state::SharedLedger,
    /// Deposit addresses → (account, network).
    pub addresses: chain::AddressBook,
    /// Provider to the node, signing with the hot wallet.
    pub provider: chain::SimProvider,
    /// The hot wallet's address.
    pub hot_wallet: Address,
    /// The watcher's progress.
    pub chain_status: chain::ChainStatus,
    /// Queue of withdrawal ids for the executor.
    pub withdraw_queue: mpsc::UnboundedSender<String>,
    /// account → Binance-style numeric uid.
    pub account_uids: HashMap<String, u64>,
    /// The active injected faults.
    pub faults: faults::Faults,
    /// The UTXO chain, if one is configured.
    pub utxo: Option<utxo_chain::UtxoShared>,
}

impl Shared {
    /// `text` as an address of `network`, written as that network writes it: an address of
    /// the UTXO chain (its prefix) as given, or a checksummed EVM address; `None` if it is not
    /// one.
    pub fn address_on(&self, network: &str, text: &str) -> Option<String> {
        match self.utxo.as_ref().filter(|u| u.network == network) {
            Some(u) => u.chain.script_of(text).ok().map(|_| text.trim().to_owned()),
            None => api::parse_evm_address(text).map(|a| a.to_string()),
        }
    }

    /// The deposit address of (account, network), as that network writes addresses.
    pub fn deposit_address_text(&self, account: &str, network: &str) -> String {
        match self.utxo.as_ref().filter(|u| u.network == network) {
            Some(u) => u.deposit_address(&self.config.address_seed, account),
            None => state::deposit_address(&self.config.address_seed, account, network).to_string(),
        }
    }
}

/// Builds the router over the shared state: the Binance routes inside the fault middleware,
/// the admin routes outside it; JSON answers for unknown paths and methods; bodies read up to
/// [`BODY_LIMIT`]; every error answer JSON (see `http_errors`).
fn router(shared: Arc<Shared>) -> Router {
    let binance = Router::new()
        .route(api::PING, get(api::ping))
        .route(api::TIME, get(api::time))
        .route(api::ACCOUNT, get(api::account))
        .route(api::DEPOSIT_ADDRESS, get(api::deposit_address_handler))
        .route(api::DEPOSIT_HISTORY, get(api::deposit_history))
        .route(api::WITHDRAW_APPLY, post(api::withdraw_apply))
        .route(api::WITHDRAW_HISTORY, get(api::withdraw_history))
        .route(kraken::PRIVATE, post(kraken::private))
        .route("/v2/accounts", get(coinbase::accounts))
        .route("/v2/accounts/{id}", get(coinbase::account))
        .route("/v2/accounts/{id}/addresses", get(coinbase::addresses))
        .route(
            "/v2/accounts/{id}/transactions",
            get(coinbase::transactions).post(coinbase::send),
        )
        .route(
            "/v2/accounts/{id}/transactions/{tx}",
            get(coinbase::transaction),
        )
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            faults::inject,
        ));
    let admin = Router::new()
        .route("/sim/health", get(admin::health))
        .route("/sim/api-keys", post(admin::register_key))
        .route("/sim/credit", post(admin::credit))
        .route(
            "/sim/kraken/withdraw-keys",
            post(admin::register_kraken_withdraw_key),
        )
        .route("/sim/deposit-address", get(admin::admin_deposit_address))
        .route(
            "/sim/faults",
            get(admin::get_faults)
                .post(admin::set_faults)
                .delete(admin::clear_faults),
        );
    binance
        .merge(admin)
        .fallback(http_errors::not_found)
        .method_not_allowed_fallback(http_errors::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(http_errors::json_errors))
        .with_state(shared)
}

/// What [`prepare`] sets up before serving.
struct Prepared {
    shared: Arc<Shared>,
    start_block: u64,
    queue: mpsc::UnboundedReceiver<String>,
}

/// Validates the configuration, connects to the node (checking its chain id) and builds the
/// ledger.
async fn prepare(config: SimConfig) -> Result<Prepared, SimError> {
    config.validate()?;
    let signer = config.hot_wallet_signer()?;
    let hot_wallet = signer.address();
    let url: url::Url = config
        .rpc_url
        .parse()
        .map_err(|_| SimError::Config(format!("rpc_url {:?} is not a URL", config.rpc_url)))?;
    let chain_error = |reason: String| SimError::Chain {
        url: config.rpc_url.clone(),
        reason,
    };
    let provider = ProviderBuilder::new()
        .wallet(signer)
        .connect_http(url)
        .erased();
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| chain_error(format!("eth_chainId failed: {e}")))?;
    if chain_id != config.chain_id {
        return Err(chain_error(format!(
            "the node reports chain id {chain_id}, the configuration says {}",
            config.chain_id
        )));
    }
    let head = provider
        .get_block_number()
        .await
        .map_err(|e| chain_error(format!("eth_blockNumber failed: {e}")))?;
    let start_block = config.start_block.unwrap_or(head);
    let ledger = state::SharedLedger::from_config(&config).map_err(SimError::Config)?;
    let accounts: Vec<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
    // The EVM node's networks; the UTXO chain's has a watcher of its own.
    let mut networks: Vec<String> = Vec::new();
    for coin in &config.coins {
        if !networks.contains(&coin.network) && !config.is_utxo_network(&coin.network) {
            networks.push(coin.network.clone());
        }
    }
    let addresses = chain::address_book(&config.address_seed, &accounts, &networks);
    let utxo = match &config.utxo {
        Some(u) => Some(utxo_chain::UtxoShared::connect(&config, u, &accounts).await?),
        None => None,
    };
    let account_uids = accounts
        .iter()
        .enumerate()
        .map(|(i, name)| (name.clone(), 100_000_001 + i as u64))
        .collect();
    let (sender, queue) = mpsc::unbounded_channel();
    let chain_status = chain::ChainStatus::default();
    chain_status.last_scanned.store(u64::MAX, Ordering::SeqCst);
    tracing::info!(%hot_wallet, chain_id, start_block, "exchange simulator ready");
    Ok(Prepared {
        shared: Arc::new(Shared {
            config,
            ledger,
            addresses,
            provider,
            hot_wallet,
            chain_status,
            withdraw_queue: sender,
            account_uids,
            faults: faults::Faults::default(),
            utxo,
        }),
        start_block,
        queue,
    })
}

/// Serves prepared state until `shutdown` resolves, then stops the background tasks.
async fn run(
    prepared: Prepared,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    let Prepared {
        shared,
        start_block,
        queue,
    } = prepared;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_rx_utxo = stop_rx.clone();
    let watcher = tokio::spawn(chain::run_watcher(shared.clone(), start_block, stop_rx));
    let executor = tokio::spawn(chain::run_executor(shared.clone(), queue));
    let utxo_watcher = shared
        .utxo
        .is_some()
        .then(|| tokio::spawn(utxo_chain::run_watcher(shared.clone(), stop_rx_utxo)));
    let result = axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    executor.abort();
    let _ = watcher.await;
    if let Some(w) = utxo_watcher {
        let _ = w.await;
    }
    let _ = executor.await;
    result.map_err(SimError::Serve)
}

/// Runs the simulator on `listener` until `shutdown` resolves: connects to the node at
/// `rpc_url` (its chain id must match), polls it for deposits, sends withdrawals from the hot
/// wallet, and answers HTTP.
pub async fn serve(
    config: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    let prepared = prepare(config).await?;
    run(prepared, listener, shutdown).await
}

/// A simulator running in the background (for tests and the devnet).
pub struct SimHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), SimError>>,
}

impl SimHandle {
    /// Connects to the node, then serves on `listener` in a background task. Configuration and
    /// chain errors are returned here, before anything is served.
    pub async fn start(config: SimConfig, listener: TcpListener) -> Result<Self, SimError> {
        let addr = listener.local_addr()?;
        let prepared = prepare(config).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(prepared, listener, async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, the base URL for clients.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the background tasks.
    pub async fn shutdown(mut self) -> Result<(), SimError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(SimError::Serve(std::io::Error::other(format!(
                "the simulator task failed: {e}"
            )))),
        }
    }
}
