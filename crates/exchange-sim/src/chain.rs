//! The simulator's side of the chain: a watcher that turns transfers to deposit addresses into
//! deposits (credited after N confirmations) and follows withdrawal transactions to their
//! receipts, and an executor that sends withdrawals from the hot wallet one at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy::consensus::Transaction as _;
use alloy::eips::BlockNumberOrTag;
use alloy::network::{TransactionBuilder, TransactionResponse as _};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use tokio::sync::{mpsc, watch};

use crate::Shared;
use crate::config::CoinConfig;
use crate::time::now_ms;

alloy::sol! {
    /// The two ERC-20 pieces the simulator uses.
    interface IErc20 {
        /// Emitted by every token transfer.
        event Transfer(address indexed from, address indexed to, uint256 value);
        /// Moves `amount` of the caller's tokens to `to`.
        function transfer(address to, uint256 amount) external returns (bool);
    }
}

/// The deposit key of an internal transfer counts down from here (ERC-20 deposits use their
/// log index, top-level transfers none).
const INTERNAL_KEY: u64 = u64::MAX;

/// Most blocks scanned in one poll (keeps `eth_getLogs` ranges small).
const MAX_BLOCKS_PER_POLL: u64 = 500;

/// Where the watcher stands; shared with `/sim/health`.
#[derive(Default)]
pub struct ChainStatus {
    /// Last block scanned (`u64::MAX` before the first scan).
    pub last_scanned: std::sync::atomic::AtomicU64,
    /// Last error met while polling, cleared by a successful poll.
    pub last_error: std::sync::Mutex<Option<String>>,
    /// The node has no call traces (`trace_block`): internal transfers are not seen.
    pub no_traces: std::sync::atomic::AtomicBool,
}

/// Deposit addresses: address → (account, network).
pub type AddressBook = HashMap<Address, (String, String)>;

/// Polls the chain until `shutdown` flips.
pub async fn run_watcher(
    shared: Arc<Shared>,
    mut next_block: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(shared.config.poll_interval_ms);
    loop {
        match poll_once(&shared, next_block).await {
            Ok(next) => {
                next_block = next;
                set_error(&shared, None);
            }
            Err(e) => {
                tracing::warn!(error = %e, "chain poll failed; retrying");
                set_error(&shared, Some(e));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn set_error(shared: &Shared, error: Option<String>) {
    let mut slot = shared
        .chain_status
        .last_error
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    *slot = error;
}

/// One poll: scan new blocks, update deposit confirmations, follow withdrawals.
async fn poll_once(shared: &Shared, next_block: u64) -> Result<u64, String> {
    let provider = &shared.provider;
    let head = provider
        .get_block_number()
        .await
        .map_err(|e| format!("eth_blockNumber: {e}"))?;
    let mut next = next_block;
    if head >= next {
        let to = head.min(next + MAX_BLOCKS_PER_POLL - 1);
        scan_native(shared, next, to).await?;
        scan_internal(shared, next, to).await?;
        scan_tokens(shared, next, to).await?;
        shared.chain_status.last_scanned.store(to, Ordering::SeqCst);
        next = to + 1;
    }
    let scanned_head = next.saturating_sub(1);
    let credited = shared.ledger.confirm_deposits(
        scanned_head,
        shared.config.confirmations,
        now_ms(),
        |network| !shared.config.is_utxo_network(network),
    );
    if credited > 0 {
        tracing::info!(credited, "deposits credited");
    }
    follow_withdrawals(shared, head).await?;
    Ok(next)
}

/// The native coin of each network that has one (no contract), by network code.
fn native_coins(shared: &Shared) -> HashMap<&str, &CoinConfig> {
    shared
        .config
        .coins
        .iter()
        .filter(|c| c.contract.is_none())
        .map(|c| (c.network.as_str(), c))
        .collect()
}

/// Native coin transfers (top-level transactions) to deposit addresses.
async fn scan_native(shared: &Shared, from: u64, to: u64) -> Result<(), String> {
    let natives = native_coins(shared);
    if natives.is_empty() {
        return Ok(());
    }
    for number in from..=to {
        let block = shared
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .full()
            .await
            .map_err(|e| format!("eth_getBlockByNumber({number}): {e}"))?
            .ok_or_else(|| format!("block {number} is missing"))?;
        for tx in block.into_transactions_vec() {
            let Some(recipient) = tx.to() else { continue };
            let Some((account, network)) = shared.addresses.get(&recipient) else {
                continue;
            };
            let value = tx.value();
            if value.is_zero() {
                continue;
            }
            let Some(coin) = natives.get(network.as_str()) else {
                continue;
            };
            let hash = tx.tx_hash();
            let receipt = shared
                .provider
                .get_transaction_receipt(hash)
                .await
                .map_err(|e| format!("eth_getTransactionReceipt({hash}): {e}"))?;
            if !receipt.is_some_and(|r| r.status()) {
                continue;
            }
            if shared.ledger.record_deposit(
                account,
                &coin.coin,
                network,
                recipient.to_string(),
                tx.from().to_string(),
                value,
                hash.to_string(),
                None,
                number,
                now_ms(),
            ) {
                tracing::info!(%hash, account, coin = %coin.coin, %value, "deposit seen");
            }
        }
    }
    Ok(())
}

/// Native coin sent to deposit addresses by contracts (a Safe's `execTransaction`, any
/// internal call with value), from the node's call traces (`trace_block`), as exchanges credit
/// them. The top-level call of each transaction is [`scan_native`]'s. A node without traces
/// is asked no more.
async fn scan_internal(shared: &Shared, from: u64, to: u64) -> Result<(), String> {
    if shared.chain_status.no_traces.load(Ordering::Relaxed) {
        return Ok(());
    }
    let natives = native_coins(shared);
    if natives.is_empty() {
        return Ok(());
    }
    for number in from..=to {
        let traces: Vec<serde_json::Value> = match shared
            .provider
            .raw_request("trace_block".into(), (BlockNumberOrTag::Number(number),))
            .await
        {
            Ok(t) => t,
            Err(e)
                if e.to_string().contains("-32601")
                    || e.to_string().to_lowercase().contains("method not found")
                    || e.to_string().contains("does not exist") =>
            {
                tracing::warn!(error = %e, "the node has no call traces: internal transfers are not credited");
                shared.chain_status.no_traces.store(true, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) => return Err(format!("trace_block({number}): {e}")),
        };
        for (ordinal, trace) in credited_calls(&traces).into_iter().enumerate() {
            let top_level = trace["traceAddress"]
                .as_array()
                .is_none_or(|a| a.is_empty());
            if top_level || trace["type"] != "call" {
                continue;
            }
            let action = &trace["action"];
            if action["callType"] != "call" {
                continue;
            }
            let (Some(recipient), Some(value), Some(hash)) = (
                action["to"]
                    .as_str()
                    .and_then(|a| a.parse::<Address>().ok()),
                action["value"]
                    .as_str()
                    .and_then(|v| v.parse::<U256>().ok()),
                trace["transactionHash"]
                    .as_str()
                    .and_then(|h| h.parse::<B256>().ok()),
            ) else {
                continue;
            };
            if value.is_zero() {
                continue;
            }
            let Some((account, network)) = shared.addresses.get(&recipient) else {
                continue;
            };
            let Some(coin) = natives.get(network.as_str()) else {
                continue;
            };
            let receipt = shared
                .provider
                .get_transaction_receipt(hash)
                .await
                .map_err(|e| format!("eth_getTransactionReceipt({hash}): {e}"))?;
            if !receipt.is_some_and(|r| r.status()) {
                continue;
            }
            let source = action["from"].as_str().unwrap_or_default().to_owned();
            if shared.ledger.record_deposit(
                account,
                &coin.coin,
                network,
                recipient.to_string(),
                source,
                value,
                hash.to_string(),
                // Each internal transfer its own deposit (a transaction may pay several):
                // keyed apart from the top-level one and from each other, stably across scans.
                Some(INTERNAL_KEY - ordinal as u64),
                number,
                now_ms(),
            ) {
                tracing::info!(%hash, account, coin = %coin.coin, %value, "internal deposit seen");
            }
        }
    }
    Ok(())
}

/// The call traces whose effects stand: a call that failed, or any call inside one that
/// failed (its parent's revert undoes it even if it succeeded itself), moved nothing and is
/// left out — crediting those is how exchanges get paid with phantom deposits.
fn credited_calls(traces: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    let path = |t: &serde_json::Value| -> Option<(String, Vec<u64>)> {
        let tx = t["transactionHash"].as_str()?.to_owned();
        let at = t["traceAddress"]
            .as_array()?
            .iter()
            .map(|v| v.as_u64())
            .collect::<Option<Vec<_>>>()?;
        Some((tx, at))
    };
    let failed: Vec<(String, Vec<u64>)> = traces
        .iter()
        .filter(|t| !t["error"].is_null())
        .filter_map(path)
        .collect();
    traces
        .iter()
        .filter(|t| {
            let Some((tx, at)) = path(t) else {
                return false;
            };
            !failed
                .iter()
                .any(|(ftx, fat)| *ftx == tx && at.starts_with(fat))
        })
        .collect()
}

/// ERC-20 `Transfer` logs of configured tokens to deposit addresses.
async fn scan_tokens(shared: &Shared, from: u64, to: u64) -> Result<(), String> {
    let tokens: HashMap<Address, &CoinConfig> = shared
        .config
        .coins
        .iter()
        .filter_map(|c| c.contract.map(|a| (a, c)))
        .collect();
    if tokens.is_empty() {
        return Ok(());
    }
    let filter = Filter::new()
        .from_block(from)
        .to_block(to)
        .address(tokens.keys().copied().collect::<Vec<_>>())
        .event_signature(IErc20::Transfer::SIGNATURE_HASH);
    let logs = shared
        .provider
        .get_logs(&filter)
        .await
        .map_err(|e| format!("eth_getLogs({from}..={to}): {e}"))?;
    for log in logs {
        if log.removed {
            continue;
        }
        let Some(coin) = tokens.get(&log.address()) else {
            continue;
        };
        let Ok(event) = IErc20::Transfer::decode_log_data(log.data()) else {
            continue;
        };
        let Some((account, network)) = shared.addresses.get(&event.to) else {
            continue;
        };
        if *network != coin.network || event.value.is_zero() {
            continue;
        }
        let (Some(hash), Some(index), Some(number)) =
            (log.transaction_hash, log.log_index, log.block_number)
        else {
            continue;
        };
        if shared.ledger.record_deposit(
            account,
            &coin.coin,
            network,
            event.to.to_string(),
            event.from.to_string(),
            event.value,
            hash.to_string(),
            Some(index),
            number,
            now_ms(),
        ) {
            tracing::info!(%hash, account, coin = %coin.coin, value = %event.value, "token deposit seen");
        }
    }
    Ok(())
}

/// Completes or fails sent withdrawals from their receipts.
async fn follow_withdrawals(shared: &Shared, head: u64) -> Result<(), String> {
    let evm = |network: &str, tx: &str| {
        (!shared.config.is_utxo_network(network))
            .then(|| tx.parse::<B256>().ok())
            .flatten()
    };
    for (id, network, tx) in shared.ledger.sent_processing() {
        let Some(tx) = evm(&network, &tx) else {
            continue;
        };
        let receipt = shared
            .provider
            .get_transaction_receipt(tx)
            .await
            .map_err(|e| format!("eth_getTransactionReceipt({tx}): {e}"))?;
        let Some(receipt) = receipt else { continue };
        let confirmations = receipt
            .block_number
            .map_or(1, |b| head.saturating_add(1).saturating_sub(b));
        if receipt.status() {
            tracing::info!(%id, %tx, "withdrawal completed");
            shared.ledger.mark_completed(&id, confirmations, now_ms());
        } else {
            tracing::warn!(%id, %tx, "withdrawal transaction reverted; refunding");
            shared
                .ledger
                .mark_failed(&id, "The withdrawal transaction reverted on chain.");
        }
    }
    let required = shared.config.confirmations;
    for (id, network, tx) in shared.ledger.completed_recent(required) {
        let Some(tx) = evm(&network, &tx) else {
            continue;
        };
        if let Ok(Some(receipt)) = shared.provider.get_transaction_receipt(tx).await
            && let Some(block) = receipt.block_number
        {
            let confirmations = head.saturating_add(1).saturating_sub(block).min(required);
            shared.ledger.set_withdraw_confirmations(&id, confirmations);
        }
    }
    Ok(())
}

/// Sends queued withdrawals from the hot wallet, one at a time (so nonces never collide).
pub async fn run_executor(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<String>) {
    while let Some(id) = queue.recv().await {
        let Some(withdrawal) = shared.ledger.withdrawal(&id) else {
            continue;
        };
        let Some(coin) = shared
            .config
            .coins
            .iter()
            .find(|c| c.coin == withdrawal.coin && c.network == withdrawal.network)
        else {
            shared
                .ledger
                .mark_failed(&id, "The coin is no longer configured.");
            continue;
        };
        if let Some(utxo) = shared
            .utxo
            .as_ref()
            .filter(|u| u.network == withdrawal.network)
        {
            match crate::utxo_chain::send(utxo, &withdrawal).await {
                Ok(txid) => {
                    tracing::info!(%id, %txid, "withdrawal sent");
                    shared.ledger.mark_sent(&id, txid.to_string());
                }
                Err(e) => {
                    tracing::warn!(%id, error = %e, "withdrawal not sent; refunding");
                    shared
                        .ledger
                        .mark_failed(&id, &format!("The withdrawal could not be sent: {e}"));
                }
            }
            continue;
        }
        let Ok(to) = withdrawal.address.parse::<Address>() else {
            shared
                .ledger
                .mark_failed(&id, "The withdrawal address is not an EVM address.");
            continue;
        };
        let request = transfer_request(coin, to, withdrawal.amount)
            .with_from(shared.hot_wallet)
            .with_chain_id(shared.config.chain_id);
        match shared.provider.send_transaction(request).await {
            Ok(pending) => {
                let hash: B256 = *pending.tx_hash();
                tracing::info!(%id, %hash, "withdrawal sent");
                shared.ledger.mark_sent(&id, hash.to_string());
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "withdrawal refused by the node; refunding");
                shared
                    .ledger
                    .mark_failed(&id, &format!("The withdrawal could not be sent: {e}"));
            }
        }
    }
}

/// The transaction that moves `amount` of `coin` to `to`: a value transfer for the native
/// coin, `transfer(to, amount)` on the token contract otherwise.
fn transfer_request(coin: &CoinConfig, to: Address, amount: U256) -> TransactionRequest {
    match coin.contract {
        None => TransactionRequest::default().with_to(to).with_value(amount),
        Some(token) => TransactionRequest::default()
            .with_to(token)
            .with_input(IErc20::transferCall { to, amount }.abi_encode()),
    }
}

/// Builds the address book for every account and network.
pub fn address_book(seed: &str, accounts: &[String], networks: &[String]) -> AddressBook {
    let mut book = AddressBook::new();
    for account in accounts {
        for network in networks {
            book.insert(
                crate::state::deposit_address(seed, account, network),
                (account.clone(), network.clone()),
            );
        }
    }
    book
}

/// The provider type used everywhere.
pub type SimProvider = DynProvider;

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// A transfer inside a call that reverted moved nothing: never credited, even when the
    /// inner call itself reports no error; its siblings outside the reverted frame stand.
    #[test]
    fn calls_under_a_reverted_frame_are_not_credited() {
        let tx = "0x01";
        let t = |at: serde_json::Value, error: Option<&str>| json!({"transactionHash": tx, "traceAddress": at, "type": "call", "error": error});
        let traces = vec![
            t(json!([]), None),
            t(json!([0]), Some("Reverted")),
            t(json!([0, 0]), None),
            t(json!([0, 0, 1]), None),
            t(json!([1]), None),
            t(json!([1, 0]), None),
            json!({"transactionHash": "0x02", "traceAddress": [0, 0], "type": "call", "error": null}),
        ];
        let kept: Vec<(String, serde_json::Value)> = super::credited_calls(&traces)
            .into_iter()
            .map(|t| {
                (
                    t["transactionHash"].as_str().unwrap().to_owned(),
                    t["traceAddress"].clone(),
                )
            })
            .collect();
        assert_eq!(
            kept,
            vec![
                (tx.to_owned(), json!([])),
                (tx.to_owned(), json!([1])),
                (tx.to_owned(), json!([1, 0])),
                ("0x02".to_owned(), json!([0, 0])),
            ]
        );
    }
}
