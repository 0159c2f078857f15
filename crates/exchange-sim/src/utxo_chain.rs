//! The simulator's UTXO chain (Litecoin in the devnet): a watcher that reads each new block
//! from the node, records outputs paying a deposit address as deposits (credited after the
//! configured confirmations) and follows withdrawal transactions; and the sender that pays a
//! withdrawal from the hot wallet's P2WPKH coins (a spend built, signed and checked with the
//! project's UTXO adapter, judged by the node).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy::primitives::U256;
use concord_chain::litecoind::UtxoNode;
use concord_chain::utxo::bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use concord_chain::utxo::bitcoin::{Amount, CompressedPublicKey, FeeRate, ScriptBuf, Txid};
use concord_chain::utxo::{
    InputSignature, SpendRequest, UtxoNetwork, WalletScript, build_spend, finalize, sighashes,
};
use serde_json::json;
use tokio::sync::watch;

use crate::config::{SimConfig, UtxoChainConfig};
use crate::state::{Withdrawal, utxo_deposit_script};
use crate::time::now_ms;
use crate::{Shared, SimError};

/// Most blocks read in one poll.
const MAX_BLOCKS_PER_POLL: u64 = 200;

/// The UTXO chain's side of the simulator.
pub struct UtxoShared {
    /// The node.
    pub node: UtxoNode,
    /// Its address rules.
    pub chain: UtxoNetwork,
    /// The Binance network code it serves ("LTC").
    pub network: String,
    /// The coin of that network ("LTC").
    pub coin: String,
    hot_key: SecretKey,
    hot_wallet: WalletScript,
    fee_rate: FeeRate,
    /// Deposit scripts → account.
    scripts: HashMap<ScriptBuf, String>,
    /// The next block to read.
    next_block: AtomicU64,
}

impl Drop for UtxoShared {
    fn drop(&mut self) {
        // secp256k1's own erase: the key's bytes overwritten before the memory is freed.
        self.hot_key.non_secure_erase();
    }
}

impl UtxoShared {
    /// Connects to the node (which must be on the configured chain) and builds the deposit
    /// scripts of every account; reading starts at the node's next block.
    pub async fn connect(
        config: &SimConfig,
        u: &UtxoChainConfig,
        accounts: &[String],
    ) -> Result<Self, SimError> {
        let chain = u.chain()?;
        let node = UtxoNode::new(&u.rpc_url, &u.rpc_user, u.rpc_password.expose());
        let chain_error = |reason: String| SimError::Chain {
            url: u.rpc_url.clone(),
            reason,
        };
        let (name, blocks) = node.chain().await.map_err(|e| chain_error(e.to_string()))?;
        let expected = chain.node_chain();
        if name != expected {
            return Err(chain_error(format!(
                "the node is on chain {name:?}; utxo.chain {} needs {expected:?}",
                u.chain
            )));
        }
        let coin = config
            .coins
            .iter()
            .find(|c| c.network == u.network)
            .map(|c| c.coin.clone())
            .ok_or_else(|| SimError::Config(format!("no coin on network {}", u.network)))?;
        let hot_key = u.hot_wallet_key()?;
        let public = CompressedPublicKey(hot_key.public_key(&Secp256k1::new()));
        let hot_wallet = WalletScript::p2wpkh(&public.to_bytes())
            .map_err(|e| SimError::Config(format!("utxo.hot_wallet_key: {e}")))?;
        let scripts = accounts
            .iter()
            .map(|a| {
                (
                    utxo_deposit_script(&config.address_seed, a, &u.network),
                    a.clone(),
                )
            })
            .collect();
        let fee_rate = FeeRate::from_sat_per_vb(u.fee_rate_sat_vb)
            .ok_or_else(|| SimError::Config("utxo.fee_rate_sat_vb is too large".into()))?;
        tracing::info!(
            chain = %chain,
            hot_wallet = %chain.address(&hot_wallet.script_pubkey()).unwrap_or_default(),
            blocks,
            "UTXO chain connected"
        );
        Ok(UtxoShared {
            node,
            chain,
            network: u.network.clone(),
            coin,
            hot_key,
            hot_wallet,
            fee_rate,
            scripts,
            next_block: AtomicU64::new(blocks + 1),
        })
    }

    /// The deposit address of `account` on this chain.
    pub fn deposit_address(&self, seed: &str, account: &str) -> String {
        self.chain
            .address(&utxo_deposit_script(seed, account, &self.network))
            .unwrap_or_default()
    }

    /// The next block the watcher reads.
    pub fn next_block(&self) -> u64 {
        self.next_block.load(Ordering::SeqCst)
    }

    /// The hot wallet's address (fund it to pay withdrawals).
    pub fn hot_wallet_address(&self) -> String {
        self.chain
            .address(&self.hot_wallet.script_pubkey())
            .unwrap_or_default()
    }
}

/// Polls the node until `shutdown` flips.
pub async fn run_watcher(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(shared.config.poll_interval_ms);
    loop {
        if let Some(u) = &shared.utxo
            && let Err(e) = poll_once(&shared, u).await
        {
            tracing::warn!(error = %e, "UTXO chain poll failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One poll: read new blocks, update deposit confirmations, follow withdrawals.
async fn poll_once(shared: &Shared, u: &UtxoShared) -> Result<(), String> {
    let head = u.node.block_count().await.map_err(|e| e.to_string())?;
    let mut next = u.next_block.load(Ordering::SeqCst);
    let last = head.min(next + MAX_BLOCKS_PER_POLL - 1);
    while next <= last {
        scan_block(shared, u, next).await?;
        next += 1;
        u.next_block.store(next, Ordering::SeqCst);
    }
    let scanned = next.saturating_sub(1);
    let credited =
        shared
            .ledger
            .confirm_deposits(scanned, shared.config.confirmations, now_ms(), |n| {
                n == u.network
            });
    if credited > 0 {
        tracing::info!(credited, network = %u.network, "deposits credited");
    }
    follow_withdrawals(shared, u).await
}

/// Records every output of block `height` that pays a deposit script.
async fn scan_block(shared: &Shared, u: &UtxoShared, height: u64) -> Result<(), String> {
    let hash = u
        .node
        .call("getblockhash", json!([height]))
        .await
        .map_err(|e| e.to_string())?;
    let block = u
        .node
        .call("getblock", json!([hash, 2]))
        .await
        .map_err(|e| e.to_string())?;
    for tx in block["tx"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        // A coinbase paying a deposit address is not a deposit (nobody sent it, and it is not
        // spendable for 100 blocks).
        if tx["vin"][0].get("coinbase").is_some() {
            continue;
        }
        let txid = tx["txid"].as_str().unwrap_or_default();
        for out in tx["vout"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let Some(script) = out["scriptPubKey"]["hex"]
                .as_str()
                .and_then(|h| ScriptBuf::from_hex(h).ok())
            else {
                continue;
            };
            let Some(account) = u.scripts.get(&script) else {
                continue;
            };
            let (Some(value), Some(n)) = (
                out["value"].as_f64().and_then(|v| Amount::from_btc(v).ok()),
                out["n"].as_u64(),
            ) else {
                return Err(format!("block {height}: output {txid}:? is unreadable"));
            };
            if value == Amount::ZERO {
                continue;
            }
            let address = u.chain.address(&script).unwrap_or_default();
            if shared.ledger.record_deposit(
                account,
                &u.coin,
                &u.network,
                address,
                String::new(),
                U256::from(value.to_sat()),
                txid.to_owned(),
                Some(n),
                height,
                now_ms(),
            ) {
                tracing::info!(%txid, n, account, coin = %u.coin, %value, "deposit seen");
            }
        }
    }
    Ok(())
}

/// Completes withdrawals once their transaction is mined, and counts their confirmations.
async fn follow_withdrawals(shared: &Shared, u: &UtxoShared) -> Result<(), String> {
    let required = shared.config.confirmations;
    for (id, network, tx) in shared.ledger.sent_processing() {
        if network != u.network {
            continue;
        }
        let Ok(txid) = tx.parse::<Txid>() else {
            continue;
        };
        if let Some(c) = u
            .node
            .confirmations(&txid)
            .await
            .map_err(|e| e.to_string())?
            && c >= 1
        {
            tracing::info!(%id, %txid, "withdrawal completed");
            shared.ledger.mark_completed(&id, c.min(required), now_ms());
        }
    }
    for (id, network, tx) in shared.ledger.completed_recent(required) {
        if network != u.network {
            continue;
        }
        if let Ok(txid) = tx.parse::<Txid>()
            && let Ok(Some(c)) = u.node.confirmations(&txid).await
        {
            shared
                .ledger
                .set_withdraw_confirmations(&id, c.min(required));
        }
    }
    Ok(())
}

/// Pays a withdrawal from the hot wallet's confirmed coins, change back to it; returns the
/// broadcast transaction's id.
pub async fn send(u: &UtxoShared, w: &Withdrawal) -> Result<Txid, String> {
    let to = u.chain.script_of(&w.address).map_err(|e| e.to_string())?;
    let amount = u64::try_from(w.amount)
        .map(Amount::from_sat)
        .map_err(|_| "the amount does not fit the chain".to_owned())?;
    let own = u.hot_wallet.script_pubkey();
    let available = u.node.spendable(&own, 1).await.map_err(|e| e.to_string())?;
    let psbt = build_spend(&SpendRequest {
        network: u.chain,
        wallet: &u.hot_wallet,
        available: &available,
        to,
        amount,
        fee_rate: u.fee_rate,
    })
    .map_err(|e| format!("the hot wallet: {e}"))?;
    let secp = Secp256k1::signing_only();
    let signatures: Vec<InputSignature> = sighashes(&psbt, &u.hot_wallet)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|d| {
            InputSignature::Ecdsa(
                secp.sign_ecdsa(&Message::from_digest(d), &u.hot_key)
                    .serialize_compact()
                    .to_vec(),
            )
        })
        .collect();
    let tx = finalize(&psbt, &u.hot_wallet, &signatures).map_err(|e| e.to_string())?;
    match u.node.broadcast(&tx).await {
        Ok(txid) => Ok(txid),
        // The node may have taken it before the answer was lost: never refund a payment that
        // went out.
        Err(e) if e.is_retryable() => {
            let txid = tx.compute_txid();
            match u.node.confirmations(&txid).await {
                Ok(Some(_)) => Ok(txid),
                _ => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}
