//! A TEST / DEVNET ERC-20 token, `ConcordTestToken` ("CTT", 18 decimals): the whole supply
//! (10^9 tokens) is minted to the deployer. Its source is `contracts/ConcordTestToken.sol`,
//! compiled once with solc-js by `contracts/build.sh`; the creation bytecode is committed.
//! It has had no review for use with real value: use it on local chains only.

use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{B256, Bytes};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;

pub use crate::erc20::IERC20;
use crate::{Address, ChainError, EvmClient, TxStatus};

/// The creation bytecode, hex without `0x` (solc 0.8.26, optimizer on, 200 runs).
pub const CREATION_BYTECODE_HEX: &str = include_str!("../contracts/ConcordTestToken.bin");
/// The contract's ABI as JSON.
pub const ABI_JSON: &str = include_str!("../contracts/ConcordTestToken.abi.json");
/// The token's name.
pub const NAME: &str = "Concord Test Token";
/// The token's symbol.
pub const SYMBOL: &str = "CTT";
/// The token's decimals.
pub const DECIMALS: u8 = 18;

/// How long [`deploy`] waits for the deployment to be mined.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(60);

/// The creation bytecode as bytes.
pub fn creation_bytecode() -> Result<Vec<u8>, ChainError> {
    hex::decode(CREATION_BYTECODE_HEX.trim()).map_err(|e| ChainError::Decode {
        reason: format!("the committed test-token bytecode is not hex ({e})"),
    })
}

/// Deploys the test token from the account of `deployer_private_key` (which receives the
/// whole supply) and returns the token's address once the deployment is mined.
pub async fn deploy(rpc_url: &str, deployer_private_key: &[u8; 32]) -> Result<Address, ChainError> {
    let signer = PrivateKeySigner::from_bytes(&B256::from(*deployer_private_key)).map_err(|e| {
        ChainError::InvalidSignature {
            reason: format!("the deployer key is not a valid secp256k1 secret key ({e})"),
        }
    })?;
    let client = EvmClient::new(rpc_url)?;
    let url = rpc_url.parse().map_err(|e| ChainError::InvalidUrl {
        url: client.endpoint().to_owned(),
        reason: format!("it is not a URL ({e})"),
    })?;
    let endpoint = client.endpoint().to_owned();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url);
    let request = TransactionRequest::default().with_deploy_code(Bytes::from(creation_bytecode()?));
    let pending = provider
        .send_transaction(request)
        .await
        .map_err(|e| crate::error::from_rpc(&endpoint, "eth_sendRawTransaction", e))?;
    let hash = *pending.tx_hash();
    match client
        .wait_for_confirmations(hash, 1, DEPLOY_TIMEOUT)
        .await?
    {
        TxStatus::Included { success: true, .. } => {}
        TxStatus::Included { block, .. } => return Err(ChainError::Reverted { hash, block }),
        other => {
            return Err(ChainError::NotConfirmed {
                hash,
                depth: 1,
                waited: DEPLOY_TIMEOUT,
                last: other,
            });
        }
    }
    let receipt = provider
        .get_transaction_receipt(hash)
        .await
        .map_err(|e| crate::error::from_rpc(&endpoint, "eth_getTransactionReceipt", e))?;
    receipt
        .and_then(|r| r.contract_address)
        .ok_or_else(|| ChainError::BadResponse {
            endpoint,
            method: "eth_getTransactionReceipt",
            reason: format!("the receipt of deployment {hash} names no contract address"),
        })
}
