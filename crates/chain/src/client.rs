//! A small EVM JSON-RPC client over alloy's HTTP provider: what the coordinator and the
//! modules need to propose, check, broadcast and follow transfers.

use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use alloy::transports::RpcError;
use alloy::transports::http::reqwest::{self, Url};
use serde::{Deserialize, Serialize};

use crate::erc20::IERC20;
use crate::error::{from_rpc, from_send_refusal};
use crate::{ChainError, FeeCaps, SignedTransaction};

/// Where a transaction stands on the node's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TxStatus {
    /// The node knows nothing of it (never received, dropped, or reorganised away).
    Unknown,
    /// In the node's pool, not mined yet.
    Pending,
    /// Mined.
    Included {
        /// The block that holds it.
        block: u64,
        /// 1 when its block is the head, growing by one per block on top.
        confirmations: u64,
        /// Whether its execution succeeded (receipt status 1).
        success: bool,
    },
}

/// An EVM node's JSON-RPC endpoint. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct EvmClient {
    provider: RootProvider,
    /// Scheme, host and port only: URLs of hosted nodes often carry an API key in their path.
    endpoint: String,
    poll_interval: Duration,
}

impl std::fmt::Debug for EvmClient {
    // The full URL may carry an API key: show only scheme, host and port.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmClient")
            .field("endpoint", &self.endpoint)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// Timeout of one HTTP request to the node.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Timeout for establishing a connection to the node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl EvmClient {
    /// A client for the node at `rpc_url` (`http://` or `https://`). Connects lazily: this
    /// only checks the URL.
    pub fn new(rpc_url: &str) -> Result<Self, ChainError> {
        let url: Url = rpc_url.parse().map_err(|e| ChainError::InvalidUrl {
            url: redact_unparsed(rpc_url),
            reason: format!("it is not a URL ({e})"),
        })?;
        let endpoint = endpoint_of(&url);
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(ChainError::InvalidUrl {
                url: endpoint,
                reason: "only http:// and https:// endpoints are supported".into(),
            });
        }
        if url.scheme() == "https" {
            return Err(ChainError::InvalidUrl {
                url: endpoint,
                reason: "this build has no TLS support for RPC endpoints yet; use an http:// node on loopback or behind a local TLS proxy".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ChainError::InvalidUrl {
                url: endpoint.clone(),
                reason: format!("the HTTP client could not be built ({e})"),
            })?;
        let rpc = RpcClient::new_http_with_client(http, url);
        Ok(Self {
            provider: RootProvider::new(rpc),
            endpoint,
            poll_interval: Duration::from_millis(250),
        })
    }

    /// Sets how often [`EvmClient::wait_for_confirmations`] polls the node (default 250 ms).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The node's scheme, host and port (what error messages name).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The underlying alloy provider, for calls this client does not wrap.
    pub fn provider(&self) -> &RootProvider {
        &self.provider
    }

    /// The node's chain id (`eth_chainId`).
    pub async fn chain_id(&self) -> Result<u64, ChainError> {
        self.provider
            .get_chain_id()
            .await
            .map_err(|e| from_rpc(&self.endpoint, "eth_chainId", e))
    }

    /// The next nonce of `address`, counting transactions in the node's pool
    /// (`eth_getTransactionCount` at `pending`).
    pub async fn pending_nonce(&self, address: Address) -> Result<u64, ChainError> {
        self.provider
            .get_transaction_count(address)
            .pending()
            .await
            .map_err(|e| from_rpc(&self.endpoint, "eth_getTransactionCount", e))
    }

    /// The native balance of `address` at the latest block, in wei.
    pub async fn balance(&self, address: Address) -> Result<U256, ChainError> {
        self.provider
            .get_balance(address)
            .latest()
            .await
            .map_err(|e| from_rpc(&self.endpoint, "eth_getBalance", e))
    }

    /// The ERC-20 balance of `holder` at the latest block (`balanceOf`), in base units.
    pub async fn token_balance(&self, token: Address, holder: Address) -> Result<U256, ChainError> {
        let call = IERC20::balanceOfCall { account: holder };
        let request = TransactionRequest::default()
            .with_to(token)
            .with_input(call.abi_encode());
        let output = self
            .provider
            .call(request)
            .await
            .map_err(|e| from_rpc(&self.endpoint, "eth_call", e))?;
        if output.is_empty() {
            return Err(ChainError::BadResponse {
                endpoint: self.endpoint.clone(),
                method: "eth_call",
                reason: format!("balanceOf on {token} returned nothing; is it an ERC-20 contract?"),
            });
        }
        IERC20::balanceOfCall::abi_decode_returns(&output).map_err(|e| ChainError::BadResponse {
            endpoint: self.endpoint.clone(),
            method: "eth_call",
            reason: format!("balanceOf on {token} returned undecodable data ({e})"),
        })
    }

    /// Fee caps for a transaction now, from the node's fee history: a max fee that survives
    /// several blocks of base-fee growth and the node's suggested tip.
    pub async fn suggest_fees(&self) -> Result<FeeCaps, ChainError> {
        let estimate = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| from_rpc(&self.endpoint, "eth_feeHistory", e))?;
        Ok(FeeCaps {
            max_fee_per_gas: estimate.max_fee_per_gas,
            max_priority_fee_per_gas: estimate.max_priority_fee_per_gas,
        })
    }

    /// Sends the transaction (`eth_sendRawTransaction`). Idempotent by hash: a transaction
    /// the node already holds in its pool or has already mined is `Ok(hash)`.
    pub async fn broadcast(&self, tx: &SignedTransaction) -> Result<B256, ChainError> {
        const METHOD: &str = "eth_sendRawTransaction";
        let refusal = match self.provider.send_raw_transaction(&tx.raw).await {
            Ok(pending) => {
                let hash = *pending.tx_hash();
                if hash != tx.hash {
                    return Err(ChainError::BadResponse {
                        endpoint: self.endpoint.clone(),
                        method: METHOD,
                        reason: format!(
                            "it reported hash {hash} for the transaction whose hash is {}",
                            tx.hash
                        ),
                    });
                }
                return Ok(hash);
            }
            Err(RpcError::ErrorResp(payload)) => payload,
            Err(other) => return Err(from_rpc(&self.endpoint, METHOD, other)),
        };
        let message = refusal.message.to_ascii_lowercase();
        if [
            "already known",
            "already imported",
            "known transaction",
            "already exists",
            "already in pool",
        ]
        .iter()
        .any(|m| message.contains(m))
        {
            return Ok(tx.hash);
        }
        // Nodes word duplicates differently (a mined one usually reads "nonce too low"): ask
        // whether this very transaction is known before calling it a refusal.
        if let Ok(Some(_)) = self.provider.get_transaction_by_hash(tx.hash).await {
            return Ok(tx.hash);
        }
        Err(from_send_refusal(
            &self.endpoint,
            tx.hash,
            refusal.code,
            &refusal.message,
        ))
    }

    /// Where the transaction stands: included (with its depth and outcome), pending in the
    /// node's pool, or unknown to the node.
    pub async fn status(&self, hash: B256) -> Result<TxStatus, ChainError> {
        let receipt = self
            .provider
            .get_transaction_receipt(hash)
            .await
            .map_err(|e| from_rpc(&self.endpoint, "eth_getTransactionReceipt", e))?;
        if let Some(receipt) = receipt
            && let Some(block) = receipt.block_number
        {
            let head = self.block_number().await?;
            return Ok(TxStatus::Included {
                block,
                confirmations: head.saturating_sub(block).saturating_add(1),
                success: receipt.status(),
            });
        }
        let known = self
            .provider
            .get_transaction_by_hash(hash)
            .await
            .map_err(|e| from_rpc(&self.endpoint, "eth_getTransactionByHash", e))?;
        Ok(if known.is_some() {
            TxStatus::Pending
        } else {
            TxStatus::Unknown
        })
    }

    /// Waits until the transaction has `depth` confirmations (1 = included; 0 is taken as 1)
    /// and returns its status then, whether its execution succeeded or reverted. Fails with
    /// [`ChainError::NotConfirmed`] (retryable) when `timeout` passes first. Errors of single
    /// polls that a retry can cure are ridden out until the timeout.
    pub async fn wait_for_confirmations(
        &self,
        hash: B256,
        depth: u64,
        timeout: Duration,
    ) -> Result<TxStatus, ChainError> {
        let depth = depth.max(1);
        let start = Instant::now();
        let mut last = TxStatus::Unknown;
        loop {
            match self.status(hash).await {
                Ok(status) => {
                    if let TxStatus::Included { confirmations, .. } = status
                        && confirmations >= depth
                    {
                        return Ok(status);
                    }
                    last = status;
                }
                Err(e) if e.retryable() && start.elapsed() < timeout => {
                    tracing::debug!(%hash, error = %e, "polling the transaction status failed; retrying");
                }
                Err(e) => return Err(e),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(ChainError::NotConfirmed {
                    hash,
                    depth,
                    waited,
                    last,
                });
            }
            tokio::time::sleep(self.poll_interval.min(timeout - waited)).await;
        }
    }

    /// The number of the node's latest block.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        self.provider
            .get_block_number()
            .await
            .map_err(|e| from_rpc(&self.endpoint, "eth_blockNumber", e))
    }
}

/// `scheme://host[:port]`, without path, query or credentials.
fn endpoint_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// For a string that is not a URL: at most its first characters, to avoid echoing a key.
fn redact_unparsed(text: &str) -> String {
    let shown: String = text.chars().take(24).collect();
    if shown.len() < text.len() {
        format!("{shown}…")
    } else {
        shown
    }
}
