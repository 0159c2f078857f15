//! The crate's one error type, and the translation of node and transport failures into it.

use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::transports::http::reqwest;
use alloy::transports::{RpcError, TransportErrorKind};

use crate::client::TxStatus;

/// Everything that can go wrong in the chain adapters. [`ChainError::retryable`] says whether
/// trying the same thing again later can help.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The bytes are not a SEC1-encoded secp256k1 public key.
    #[error("the public key ({len} bytes) is not a valid SEC1 secp256k1 point: {reason}")]
    InvalidPublicKey {
        /// Length of the rejected input.
        len: usize,
        /// Why it was rejected.
        reason: String,
    },
    /// The signature is malformed or recovers no key.
    #[error("the signature is invalid: {reason}")]
    InvalidSignature {
        /// Why it was rejected.
        reason: String,
    },
    /// The signature's `s` is in the upper half of the curve order (EIP-2 forbids it).
    #[error(
        "the signature has a high s value; Ethereum accepts only low-s signatures (EIP-2), so it must be normalized before it is attached"
    )]
    HighS,
    /// The signature is valid but was made by another key than the wallet's.
    #[error(
        "the signature recovers to {recovered}, not to the wallet's address {expected}, so it was not made by the wallet's key"
    )]
    WrongSender {
        /// The wallet's address.
        expected: Address,
        /// The address the signature recovers to.
        recovered: Address,
    },
    /// Transaction bytes that do not decode.
    #[error("the transaction bytes could not be decoded: {reason}")]
    Decode {
        /// Why decoding failed.
        reason: String,
    },
    /// An RPC URL that cannot be used.
    #[error("the RPC URL {url:?} cannot be used: {reason}")]
    InvalidUrl {
        /// The URL as given (with any path or credentials removed).
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A fee field is above the policy's cap.
    #[error("the {field} of {value} wei exceeds the policy cap of {cap} wei")]
    FeeCapExceeded {
        /// `max_fee_per_gas` or `max_priority_fee_per_gas`.
        field: &'static str,
        /// The proposed value.
        value: u128,
        /// The policy's cap.
        cap: u128,
    },
    /// The priority fee is above the total fee cap, which no EIP-1559 chain accepts.
    #[error(
        "the max_priority_fee_per_gas of {priority} wei is above the max_fee_per_gas of {max} wei"
    )]
    PriorityAboveMax {
        /// The proposed priority fee cap.
        priority: u128,
        /// The proposed total fee cap.
        max: u128,
    },
    /// The node could not be reached (connection refused, DNS, timeout, dropped connection).
    #[error("the node at {endpoint} could not be reached for {method}: {reason}")]
    Unreachable {
        /// The node's scheme, host and port.
        endpoint: String,
        /// The JSON-RPC method being called.
        method: &'static str,
        /// What the transport said.
        reason: String,
    },
    /// The node (or a proxy in front of it) answered with an HTTP error status.
    #[error("the node at {endpoint} answered {method} with HTTP status {status}: {body}")]
    Http {
        /// The node's scheme, host and port.
        endpoint: String,
        /// The JSON-RPC method being called.
        method: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The node answered a query with a JSON-RPC error.
    #[error("the node at {endpoint} answered {method} with error {code}: {message}")]
    Rpc {
        /// The node's scheme, host and port.
        endpoint: String,
        /// The JSON-RPC method being called.
        method: &'static str,
        /// The JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The node's answer could not be understood.
    #[error(
        "the node at {endpoint} sent an answer to {method} that could not be understood: {reason}"
    )]
    BadResponse {
        /// The node's scheme, host and port.
        endpoint: String,
        /// The JSON-RPC method being called.
        method: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The node refused the transaction because its nonce is already used.
    #[error("the node refused transaction {hash} because its nonce is already used: {message}")]
    NonceTooLow {
        /// The transaction's hash.
        hash: B256,
        /// The node's message.
        message: String,
    },
    /// The node refused the transaction because earlier nonces are still missing.
    #[error(
        "the node refused transaction {hash} because earlier nonces of the sender are still missing: {message}"
    )]
    NonceTooHigh {
        /// The transaction's hash.
        hash: B256,
        /// The node's message.
        message: String,
    },
    /// The node refused the transaction's fees (below the base fee, or a pool replacement rule).
    #[error("the node refused transaction {hash} because its fees are too low: {message}")]
    Underpriced {
        /// The transaction's hash.
        hash: B256,
        /// The node's message.
        message: String,
    },
    /// The sender cannot pay for value plus the maximum fee.
    #[error(
        "the node refused transaction {hash} because the sender's funds are insufficient: {message}"
    )]
    InsufficientFunds {
        /// The transaction's hash.
        hash: B256,
        /// The node's message.
        message: String,
    },
    /// The transaction was signed for another chain than the node's.
    #[error("the node refused transaction {hash} because it is for another chain id: {message}")]
    WrongChainId {
        /// The transaction's hash.
        hash: B256,
        /// The node's message.
        message: String,
    },
    /// The node refused the transaction for another reason.
    #[error("the node refused transaction {hash}: {message}")]
    Rejected {
        /// The transaction's hash.
        hash: B256,
        /// The node's message.
        message: String,
    },
    /// The transaction was mined but its execution failed.
    #[error("transaction {hash} was mined in block {block} but its execution reverted")]
    Reverted {
        /// The transaction's hash.
        hash: B256,
        /// The block that holds it.
        block: u64,
    },
    /// The transaction did not reach the wanted depth in time.
    #[error(
        "transaction {hash} did not reach {depth} confirmation(s) within {waited:?}; last seen as {last:?}"
    )]
    NotConfirmed {
        /// The transaction's hash.
        hash: B256,
        /// The wanted number of confirmations.
        depth: u64,
        /// How long it was waited for.
        waited: Duration,
        /// The last status seen.
        last: TxStatus,
    },
}

impl ChainError {
    /// Whether trying again later can help: node unreachable, timeouts, HTTP 5xx/429, rate
    /// limits, a nonce gap or fees below the pool's floor, a transaction not yet confirmed.
    /// Never for a bad signature, a wrong sender, an already used nonce, a revert or
    /// insufficient funds.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. }
            | Self::NonceTooHigh { .. }
            | Self::Underpriced { .. }
            | Self::NotConfirmed { .. } => true,
            Self::Http { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Rpc { code, message, .. } => rpc_error_is_transient(*code, message),
            Self::InvalidPublicKey { .. }
            | Self::InvalidSignature { .. }
            | Self::HighS
            | Self::WrongSender { .. }
            | Self::Decode { .. }
            | Self::InvalidUrl { .. }
            | Self::FeeCapExceeded { .. }
            | Self::PriorityAboveMax { .. }
            | Self::BadResponse { .. }
            | Self::NonceTooLow { .. }
            | Self::InsufficientFunds { .. }
            | Self::WrongChainId { .. }
            | Self::Rejected { .. }
            | Self::Reverted { .. } => false,
        }
    }
}

/// JSON-RPC errors worth retrying: server-side failures and rate limits.
fn rpc_error_is_transient(code: i64, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    // -32603 internal error, -32005 limit exceeded (EIP-1474), 429 as used by some providers.
    matches!(code, -32603 | -32005 | 429)
        || [
            "rate limit",
            "too many requests",
            "timeout",
            "timed out",
            "temporarily",
            "try again",
            "busy",
        ]
        .iter()
        .any(|needle| m.contains(needle))
}

/// Keeps error texts short when a node or proxy returns a large body.
fn truncate(text: &str) -> String {
    const LIMIT: usize = 300;
    let text = text.trim();
    if text.len() <= LIMIT {
        return text.to_owned();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Translates a transport-level failure of a query `method` into a [`ChainError`].
pub(crate) fn from_rpc(
    endpoint: &str,
    method: &'static str,
    err: RpcError<TransportErrorKind>,
) -> ChainError {
    let e = from_rpc_error(endpoint, method, err);
    metrics::counter!(
        "concord_chain_errors_total",
        "chain" => "evm",
        "method" => method,
        "retryable" => if e.retryable() { "true" } else { "false" }
    )
    .increment(1);
    e
}

fn from_rpc_error(
    endpoint: &str,
    method: &'static str,
    err: RpcError<TransportErrorKind>,
) -> ChainError {
    let endpoint = endpoint.to_owned();
    match err {
        RpcError::ErrorResp(payload) => ChainError::Rpc {
            endpoint,
            method,
            code: payload.code,
            message: truncate(&payload.message),
        },
        RpcError::Transport(kind) => from_transport(endpoint, method, kind),
        RpcError::NullResp => ChainError::Unreachable {
            endpoint,
            method,
            reason: "the node returned an empty answer".into(),
        },
        RpcError::DeserError { err, text } => ChainError::BadResponse {
            endpoint,
            method,
            reason: format!("{err} (answer: {})", truncate(&text)),
        },
        other => ChainError::BadResponse {
            endpoint,
            method,
            reason: truncate(&other.to_string()),
        },
    }
}

fn from_transport(endpoint: String, method: &'static str, kind: TransportErrorKind) -> ChainError {
    if let Some(http) = kind.as_http_error() {
        return ChainError::Http {
            endpoint,
            method,
            status: http.status,
            body: truncate(&http.body),
        };
    }
    match kind {
        TransportErrorKind::NonRetryable(err) => ChainError::BadResponse {
            endpoint,
            method,
            reason: truncate(&full_chain(err.as_ref())),
        },
        // Custom errors carry reqwest's error (connection refused, timeout, dropped
        // connection, body read failure). Its text would repeat the whole URL, which may
        // hold an API key: drop it.
        TransportErrorKind::Custom(err) => {
            let reason = match err.downcast::<reqwest::Error>() {
                Ok(err) => full_chain(&err.without_url()),
                Err(err) => full_chain(err.as_ref()),
            };
            ChainError::Unreachable {
                endpoint,
                method,
                reason: truncate(&reason),
            }
        }
        // The backend being gone is a connection loss too.
        other => ChainError::Unreachable {
            endpoint,
            method,
            reason: truncate(&full_chain(&other)),
        },
    }
}

/// An error and all its sources, joined: reqwest hides "Connection refused" in a source.
fn full_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let next = inner.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = inner.source();
    }
    text
}

/// Translates the node's refusal of `eth_sendRawTransaction` into a [`ChainError`], from the
/// messages geth, reth, erigon, nethermind, besu and anvil use.
pub(crate) fn from_send_refusal(
    endpoint: &str,
    hash: B256,
    code: i64,
    message: &str,
) -> ChainError {
    let m = message.to_ascii_lowercase();
    let message = truncate(message);
    let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if has(&[
        "nonce too low",
        "nonce is too low",
        "oldnonce",
        "old nonce",
        "already been used",
    ]) {
        ChainError::NonceTooLow { hash, message }
    } else if has(&["nonce too high", "nonce is too high", "nonce gap"]) {
        ChainError::NonceTooHigh { hash, message }
    } else if has(&[
        "insufficient funds",
        "insufficient balance",
        "not enough funds",
    ]) {
        ChainError::InsufficientFunds { hash, message }
    } else if has(&["chain id", "chainid", "chain_id", "incompatible chain"]) {
        ChainError::WrongChainId { hash, message }
    } else if has(&[
        "underpriced",
        "less than block base fee",
        "fee cap less than",
        "feecap too low",
        "fee too low",
        "max fee per gas less than",
        "gas price too low",
        "gasprice too low",
    ]) {
        ChainError::Underpriced { hash, message }
    } else if rpc_error_is_transient(code, &m) && !has(&["signature", "sender"]) {
        // A refusal that is really a server hiccup: keep it retryable.
        ChainError::Rpc {
            endpoint: endpoint.to_owned(),
            method: "eth_sendRawTransaction",
            code,
            message,
        }
    } else {
        ChainError::Rejected { hash, message }
    }
}
