//! Concord's chain adapters: they turn a threshold signature into a real transaction.
//!
//! The EVM adapter: [`evm_address`] derives a wallet's address from its group public key;
//! [`EvmTransfer`] describes a native or ERC-20 transfer, builds its unsigned EIP-1559
//! transaction and the digest the modules sign ([`EvmTransfer::sighash`]);
//! [`EvmTransfer::attach`] turns the 65-byte `r || s || v` signature into a
//! [`SignedTransaction`], refusing any signature not made by the wallet's key;
//! [`EvmClient`] reads the chain, broadcasts idempotently and follows confirmations.
//!
//! The UTXO adapter ([`utxo`], Bitcoin and Litecoin on rust-bitcoin): P2WPKH (threshold
//! ECDSA), P2TR key path (FROST Taproot) and P2WSH k-of-n (native multisig) wallets; spends
//! built as PSBTs, checked by a module against its own node ([`utxo::check_spend`]), their
//! digests, and the witnesses assembled from the signatures; [`litecoind`] talks to a node
//! over JSON-RPC and runs the local `litecoind -regtest`.
//!
//! Native multisig on EVM ([`safe`]): a Safe whose owners are the modules' own keys; the
//! EIP-712 `SafeTx` hash each module signs, the signatures ordered for `execTransaction`.
//!
//! [`test_token`] is a test/devnet ERC-20 and [`anvil`] makes the local chain available for
//! the tests and the devnet.

pub mod anvil;
mod client;
pub mod erc20;
mod error;
mod evm;
pub mod litecoind;
pub mod safe;
pub mod test_token;
pub mod utxo;

pub use alloy::primitives::{Address, B256, U256};
pub use client::{EvmClient, TxStatus};
pub use error::ChainError;
pub use evm::{Asset, EvmTransfer, FeeCaps, FeePolicy, SignedTransaction, evm_address, next_nonce};
