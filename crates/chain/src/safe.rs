//! Native multisig on EVM chains: a Safe (`@safe-global/safe-smart-account` 1.5.0) whose
//! owners are the modules' own keys, `threshold` of them needed.
//!
//! Each module computes the EIP-712 `SafeTx` hash itself ([`SafeTransaction::hash`]) from
//! the transfer it checked and signs that digest with its environment-specific key; the
//! coordinator orders the signatures by owner ([`pack_signatures`], which also checks each
//! one recovers to the owner it claims) and submits `execTransaction` from a gas account of
//! its own ([`exec_transaction`]).
//!
//! **The gas account** pays for the submission and nothing else: the Safe's funds move only
//! under `threshold` owner signatures over the exact `SafeTx` (destination, value, data,
//! nonce), which the gas account can neither make nor alter. Whoever holds it can withhold or
//! delay a signed transfer (liveness, not safety) and spend its own ETH; the `SafeTx` pays no
//! refund (`gasPrice` 0), so it cannot drain the Safe through gas either.
//!
//! The contracts are not in this repository: [`artifacts`] installs the npm package into
//! Concord's cache (like anvil) and reads the compiled bytecode from it; [`deploy`] puts a
//! singleton, a proxy factory and the Safe on a (local) chain.

// `sol!` generates items (call and return structs, event fields) that carry no doc comments
// of their own, and call builders with the Solidity functions' long argument lists; the
// interfaces below document them.
#![allow(missing_docs, clippy::too_many_arguments)]

use std::path::{Path, PathBuf};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{B256, Bytes, Signature as EvmSignature, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{Eip712Domain, SolCall, SolStruct};

use crate::anvil::{AnvilInstallError, cache_dir, npm_package};
use crate::{Address, ChainError};

/// The npm package of the Safe contracts.
pub const SAFE_NPM_PACKAGE: &str = "@safe-global/safe-smart-account";
/// Its version.
pub const SAFE_VERSION: &str = "1.5.0";

alloy::sol! {
    /// The Safe's functions used here (Safe.sol 1.5.0).
    #[sol(rpc)]
    interface ISafe {
        function setup(address[] calldata _owners, uint256 _threshold, address to, bytes calldata data, address fallbackHandler, address paymentToken, uint256 payment, address paymentReceiver) external;
        function execTransaction(address to, uint256 value, bytes calldata data, uint8 operation, uint256 safeTxGas, uint256 baseGas, uint256 gasPrice, address gasToken, address refundReceiver, bytes memory signatures) external payable returns (bool success);
        function getTransactionHash(address to, uint256 value, bytes calldata data, uint8 operation, uint256 safeTxGas, uint256 baseGas, uint256 gasPrice, address gasToken, address refundReceiver, uint256 _nonce) external view returns (bytes32);
        function nonce() external view returns (uint256);
        function getOwners() external view returns (address[] memory);
        function getThreshold() external view returns (uint256);
    }

    /// The proxy factory (SafeProxyFactory.sol 1.5.0).
    #[sol(rpc)]
    interface ISafeProxyFactory {
        function createProxyWithNonce(address _singleton, bytes memory initializer, uint256 saltNonce) external returns (address proxy);
    }

    /// The EIP-712 type the owners sign (Safe.sol's `SAFE_TX_TYPEHASH`).
    #[derive(Debug, PartialEq, Eq)]
    struct SafeTx {
        address to;
        uint256 value;
        bytes data;
        uint8 operation;
        uint256 safeTxGas;
        uint256 baseGas;
        uint256 gasPrice;
        address gasToken;
        address refundReceiver;
        uint256 nonce;
    }
}

/// A transfer out of a Safe, as its owners sign it: a plain call (never a delegate call), no
/// gas refund, at the Safe's next nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeTransaction {
    /// The chain's id (part of the signed domain).
    pub chain_id: u64,
    /// The Safe.
    pub safe: Address,
    /// The call's target: the recipient of ETH, or the token contract.
    pub to: Address,
    /// Wei sent.
    pub value: U256,
    /// The call's data (empty for ETH, `transfer(…)` for a token).
    pub data: Bytes,
    /// The Safe's nonce this transaction uses.
    pub nonce: U256,
}

impl SafeTransaction {
    /// ETH from the Safe to `to`.
    pub fn native(chain_id: u64, safe: Address, to: Address, value: U256, nonce: U256) -> Self {
        SafeTransaction {
            chain_id,
            safe,
            to,
            value,
            data: Bytes::new(),
            nonce,
        }
    }

    /// `amount` of the ERC-20 `token` from the Safe to `to`.
    pub fn erc20(
        chain_id: u64,
        safe: Address,
        token: Address,
        to: Address,
        amount: U256,
        nonce: U256,
    ) -> Self {
        let data = crate::erc20::IERC20::transferCall { to, value: amount }.abi_encode();
        SafeTransaction {
            chain_id,
            safe,
            to: token,
            value: U256::ZERO,
            data: data.into(),
            nonce,
        }
    }

    fn typed(&self) -> SafeTx {
        SafeTx {
            to: self.to,
            value: self.value,
            data: self.data.clone(),
            operation: 0,
            safeTxGas: U256::ZERO,
            baseGas: U256::ZERO,
            gasPrice: U256::ZERO,
            gasToken: Address::ZERO,
            refundReceiver: Address::ZERO,
            nonce: self.nonce,
        }
    }

    /// The EIP-712 digest the owners sign: the domain is the chain id and the Safe only.
    pub fn hash(&self) -> B256 {
        let domain = Eip712Domain::new(
            None,
            None,
            Some(U256::from(self.chain_id)),
            Some(self.safe),
            None,
        );
        self.typed().eip712_signing_hash(&domain)
    }
}

/// An owner's signature of a `SafeTx` hash: 65 bytes `r || s || v`, `v` the recovery id (0
/// or 1) or already 27/28.
pub type OwnerSignature = [u8; 65];

/// Orders owner signatures as the Safe requires (by owner address, ascending), each as
/// `r || s || v` with `v` 27 or 28, after checking each recovers to the owner it is listed
/// under: a wrong or mislabelled signature is named here, not left to a revert.
pub fn pack_signatures(
    hash: B256,
    signatures: &[(Address, OwnerSignature)],
) -> Result<Bytes, ChainError> {
    let mut sorted: Vec<(Address, [u8; 65])> = Vec::with_capacity(signatures.len());
    for (owner, sig) in signatures {
        let mut sig = *sig;
        // A recovery id (0, 1) or its Ethereum form (27, 28); nothing else (the Safe reads a
        // v above 30 as an eth_sign signature, 0 and 1 as contract or approved-hash ones).
        let parity = match sig[64] {
            0 | 27 => false,
            1 | 28 => true,
            v => {
                return Err(ChainError::InvalidSignature {
                    reason: format!(
                        "the signature listed for owner {owner} has v = {v}; 0, 1, 27 or 28 expected"
                    ),
                });
            }
        };
        sig[64] = 27 + u8::from(parity);
        let parsed = EvmSignature::from_raw(&sig).map_err(|e| ChainError::InvalidSignature {
            reason: format!("the signature listed for owner {owner}: {e}"),
        })?;
        let signer = parsed.recover_address_from_prehash(&hash).map_err(|e| {
            ChainError::InvalidSignature {
                reason: format!("the signature listed for owner {owner} recovers no key: {e}"),
            }
        })?;
        if signer != *owner {
            return Err(ChainError::InvalidSignature {
                reason: format!(
                    "the signature listed for owner {owner} was made by {signer}, over another hash or with another key"
                ),
            });
        }
        sorted.push((*owner, sig));
    }
    sorted.sort_by_key(|(owner, _)| *owner);
    if sorted.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(ChainError::InvalidSignature {
            reason: "an owner is listed twice".into(),
        });
    }
    Ok(sorted
        .into_iter()
        .flat_map(|(_, sig)| sig)
        .collect::<Vec<u8>>()
        .into())
}

/// The compiled contracts, from the npm package.
pub struct SafeArtifacts {
    /// Creation bytecode of the singleton (`Safe`).
    pub safe: Bytes,
    /// Creation bytecode of `SafeProxyFactory`.
    pub factory: Bytes,
}

fn read_bytecode(package: &Path, relative: &str) -> Result<Bytes, ChainError> {
    let path = package.join(relative);
    let decode = |reason: String| ChainError::Decode {
        reason: format!("{}: {reason}", path.display()),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| decode(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| decode(e.to_string()))?;
    let hex_code = json["bytecode"]
        .as_str()
        .ok_or_else(|| decode("no bytecode".into()))?;
    hex::decode(hex_code.trim_start_matches("0x"))
        .map(Bytes::from)
        .map_err(|e| decode(e.to_string()))
}

const SAFE_ARTIFACT: &str = "build/artifacts/contracts/Safe.sol/Safe.json";
const FACTORY_ARTIFACT: &str =
    "build/artifacts/contracts/proxies/SafeProxyFactory.sol/SafeProxyFactory.json";

/// The Safe contracts' bytecode, installing the npm package into Concord's cache the first
/// time; `progress` is told when an installation starts.
pub fn artifacts(mut progress: impl FnMut(&str)) -> Result<SafeArtifacts, AnvilInstallError> {
    let dir: PathBuf = cache_dir().join(format!("safe-{SAFE_VERSION}"));
    let package = npm_package(
        &dir,
        SAFE_NPM_PACKAGE,
        SAFE_VERSION,
        Path::new(SAFE_ARTIFACT),
        &mut progress,
    )?;
    let read = |rel| {
        read_bytecode(&package, rel).map_err(|e| AnvilInstallError::Io {
            action: "reading",
            path: package.join(rel),
            source: std::io::Error::other(e.to_string()),
        })
    };
    Ok(SafeArtifacts {
        safe: read(SAFE_ARTIFACT)?,
        factory: read(FACTORY_ARTIFACT)?,
    })
}

fn rpc_error(endpoint: &str, method: &'static str, e: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc {
        endpoint: endpoint.to_owned(),
        method,
        code: 0,
        message: e.to_string(),
    }
}

fn wallet_provider(
    rpc_url: &str,
    key: &[u8; 32],
) -> Result<impl Provider + Clone + use<>, ChainError> {
    let signer = PrivateKeySigner::from_bytes(&B256::from(*key)).map_err(|e| {
        ChainError::InvalidSignature {
            reason: format!("the paying key is not a valid secp256k1 secret key ({e})"),
        }
    })?;
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(parse_url(rpc_url)?))
}

fn parse_url(rpc_url: &str) -> Result<alloy::transports::http::reqwest::Url, ChainError> {
    rpc_url.parse().map_err(|e| ChainError::InvalidUrl {
        url: rpc_url.to_owned(),
        reason: format!("it is not a URL ({e})"),
    })
}

async fn deploy_code(
    provider: &impl Provider,
    endpoint: &str,
    code: Bytes,
) -> Result<Address, ChainError> {
    let receipt = provider
        .send_transaction(TransactionRequest::default().with_deploy_code(code))
        .await
        .map_err(|e| rpc_error(endpoint, "eth_sendTransaction", e))?
        .get_receipt()
        .await
        .map_err(|e| rpc_error(endpoint, "eth_getTransactionReceipt", e))?;
    if !receipt.status() {
        return Err(ChainError::Reverted {
            hash: receipt.transaction_hash,
            block: receipt.block_number.unwrap_or_default(),
        });
    }
    receipt
        .contract_address
        .ok_or_else(|| ChainError::BadResponse {
            endpoint: endpoint.to_owned(),
            method: "eth_getTransactionReceipt",
            reason: "a deployment's receipt names no contract".into(),
        })
}

/// Deploys a singleton, a proxy factory and a Safe proxy set up with `owners` and
/// `threshold` in the same call (so nobody can set it up first), paid by `payer`. Returns
/// the Safe's address.
pub async fn deploy(
    rpc_url: &str,
    payer: &[u8; 32],
    contracts: &SafeArtifacts,
    owners: &[Address],
    threshold: u64,
) -> Result<Address, ChainError> {
    let provider = wallet_provider(rpc_url, payer)?;
    let singleton = deploy_code(&provider, rpc_url, contracts.safe.clone()).await?;
    let factory_address = deploy_code(&provider, rpc_url, contracts.factory.clone()).await?;
    let setup = ISafe::setupCall {
        _owners: owners.to_vec(),
        _threshold: U256::from(threshold),
        to: Address::ZERO,
        data: Bytes::new(),
        fallbackHandler: Address::ZERO,
        paymentToken: Address::ZERO,
        payment: U256::ZERO,
        paymentReceiver: Address::ZERO,
    }
    .abi_encode();
    let factory = ISafeProxyFactory::new(factory_address, &provider);
    let create = factory.createProxyWithNonce(singleton, setup.into(), U256::ZERO);
    // The address is deterministic (CREATE2): read it, then make it so.
    let safe = create
        .call()
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_call", e))?;
    let receipt = create
        .send()
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_sendTransaction", e))?
        .get_receipt()
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_getTransactionReceipt", e))?;
    if !receipt.status() {
        return Err(ChainError::Reverted {
            hash: receipt.transaction_hash,
            block: receipt.block_number.unwrap_or_default(),
        });
    }
    Ok(safe)
}

/// The Safe's next nonce, its owners and threshold, as the contract reports them.
pub async fn state(rpc_url: &str, safe: Address) -> Result<(U256, Vec<Address>, U256), ChainError> {
    let provider = ProviderBuilder::new().connect_http(parse_url(rpc_url)?);
    let c = ISafe::new(safe, &provider);
    let nonce = c
        .nonce()
        .call()
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_call", e))?;
    let owners = c
        .getOwners()
        .call()
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_call", e))?;
    let threshold = c
        .getThreshold()
        .call()
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_call", e))?;
    Ok((nonce, owners, threshold))
}

/// The hash the deployed contract computes for `tx` (`getTransactionHash`): the
/// cross-check of [`SafeTransaction::hash`].
pub async fn contract_hash(rpc_url: &str, tx: &SafeTransaction) -> Result<B256, ChainError> {
    let provider = ProviderBuilder::new().connect_http(parse_url(rpc_url)?);
    let t = tx.typed();
    ISafe::new(tx.safe, &provider)
        .getTransactionHash(
            t.to,
            t.value,
            t.data,
            t.operation,
            t.safeTxGas,
            t.baseGas,
            t.gasPrice,
            t.gasToken,
            t.refundReceiver,
            t.nonce,
        )
        .call()
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_call", e))
}

/// Submits `execTransaction` with the packed owner signatures from the gas account `payer`;
/// first simulated, so a refusal by the contract (e.g. `GS026`: a signature not by an owner,
/// or owners out of order) comes back as an error naming it, without spending gas. Returns
/// the transaction's hash once mined successfully.
pub async fn exec_transaction(
    rpc_url: &str,
    payer: &[u8; 32],
    tx: &SafeTransaction,
    signatures: Bytes,
) -> Result<B256, ChainError> {
    let provider = wallet_provider(rpc_url, payer)?;
    let t = tx.typed();
    let safe = ISafe::new(tx.safe, &provider);
    let call = safe.execTransaction(
        t.to,
        t.value,
        t.data,
        t.operation,
        t.safeTxGas,
        t.baseGas,
        t.gasPrice,
        t.gasToken,
        t.refundReceiver,
        signatures,
    );
    let ok = call
        .call()
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_call", e))?;
    if !ok {
        return Err(rpc_error(
            rpc_url,
            "eth_call",
            "the Safe's inner call would fail (execTransaction returns false)",
        ));
    }
    let receipt = call
        .send()
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_sendTransaction", e))?
        .get_receipt()
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_getTransactionReceipt", e))?;
    if !receipt.status() {
        return Err(ChainError::Reverted {
            hash: receipt.transaction_hash,
            block: receipt.block_number.unwrap_or_default(),
        });
    }
    Ok(receipt.transaction_hash)
}

/// The gas account's signed EIP-1559 transaction calling `execTransaction` on `tx`'s Safe
/// with the packed owner signatures, at the account's `nonce` and under `fees`, not sent: its
/// bytes go through the same idempotent broadcast and following as any transfer. The call is
/// simulated first (a refusal by the contract, e.g. `GS026`, comes back as an error naming
/// it, before anything is signed), and its gas estimate with a quarter on top is the limit.
pub async fn exec_transaction_signed(
    rpc_url: &str,
    payer: &[u8; 32],
    tx: &SafeTransaction,
    signatures: Bytes,
    nonce: u64,
    fees: crate::FeeCaps,
) -> Result<crate::SignedTransaction, ChainError> {
    use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy::eips::eip2718::Encodable2718;
    use alloy::primitives::TxKind;
    use alloy::signers::SignerSync;

    let signer = PrivateKeySigner::from_bytes(&B256::from(*payer)).map_err(|e| {
        ChainError::InvalidSignature {
            reason: format!("the gas account's key is not a valid secp256k1 secret key ({e})"),
        }
    })?;
    let t = tx.typed();
    let input: Bytes = ISafe::execTransactionCall {
        to: t.to,
        value: t.value,
        data: t.data,
        operation: t.operation,
        safeTxGas: t.safeTxGas,
        baseGas: t.baseGas,
        gasPrice: t.gasPrice,
        gasToken: t.gasToken,
        refundReceiver: t.refundReceiver,
        signatures,
    }
    .abi_encode()
    .into();
    let provider = ProviderBuilder::new().connect_http(parse_url(rpc_url)?);
    let request = TransactionRequest::default()
        .with_from(signer.address())
        .with_to(tx.safe)
        .with_input(input.clone());
    let returned = provider
        .call(request.clone())
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_call", e))?;
    if ISafe::execTransactionCall::abi_decode_returns(&returned).ok() != Some(true) {
        return Err(rpc_error(
            rpc_url,
            "eth_call",
            "the Safe's inner call would fail (execTransaction returns false)",
        ));
    }
    let estimate = provider
        .estimate_gas(request)
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_estimateGas", e))?;
    let unsigned = TxEip1559 {
        chain_id: tx.chain_id,
        nonce,
        gas_limit: estimate + estimate / 4,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        to: TxKind::Call(tx.safe),
        value: U256::ZERO,
        access_list: Default::default(),
        input,
    };
    let signature = signer
        .sign_hash_sync(&unsigned.signature_hash())
        .map_err(|e| ChainError::InvalidSignature {
            reason: format!("the gas account could not sign: {e}"),
        })?;
    let envelope = TxEnvelope::from(unsigned.into_signed(signature));
    Ok(crate::SignedTransaction {
        raw: envelope.encoded_2718(),
        hash: *envelope.tx_hash(),
        sender: signer.address(),
    })
}

/// The Ethereum address of a gas account's key.
pub fn gas_account(payer: &[u8; 32]) -> Result<Address, ChainError> {
    PrivateKeySigner::from_bytes(&B256::from(*payer))
        .map(|s| s.address())
        .map_err(|e| ChainError::InvalidSignature {
            reason: format!("the gas account's key is not a valid secp256k1 secret key ({e})"),
        })
}

alloy::sol! {
    /// What a Safe emits when a transaction it executed succeeded.
    event ExecutionSuccess(bytes32 indexed txHash, uint256 payment);
}

/// The transaction in which `safe` executed the SafeTx whose hash is `safe_tx_hash`, if it
/// did (its `ExecutionSuccess` log): whoever submitted it — anyone holding the owners'
/// signatures can.
pub async fn executed_in(
    rpc_url: &str,
    safe: Address,
    safe_tx_hash: B256,
) -> Result<Option<B256>, ChainError> {
    use alloy::rpc::types::Filter;
    use alloy::sol_types::SolEvent;
    let provider = ProviderBuilder::new().connect_http(parse_url(rpc_url)?);
    let filter = Filter::new()
        .address(safe)
        .event_signature(ExecutionSuccess::SIGNATURE_HASH)
        .topic1(safe_tx_hash)
        .from_block(0);
    let logs = provider
        .get_logs(&filter)
        .await
        .map_err(|e| rpc_error(rpc_url, "eth_getLogs", e))?;
    Ok(logs.iter().find_map(|l| l.transaction_hash))
}
