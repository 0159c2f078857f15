//! The module's logs, as an index over its approval records: which intents it accepted, which
//! digest each (wallet, nonce) and exchange order is bound to, and what each wallet spent.
//! The records are the durable truth (one vault write per approval); the index is rebuilt
//! from them at start-up.

use std::collections::HashMap;

use concord_chain::U256;
use concord_tss::WalletId;
use serde::{Deserialize, Serialize};

use crate::state::ApprovalRecord;

/// The rolling window of the daily limits, seconds.
pub const DAY_SECS: u64 = 24 * 3600;

/// What an approval spends from a wallet's daily limit of a coin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    /// The wallet whose limit it counts against.
    pub wallet: WalletId,
    /// The coin code (upper case).
    pub coin: String,
    /// The amount in base units (decimal).
    pub amount: String,
}

/// An exchange order an approval signs a request for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The exchange connection.
    pub exchange: String,
    /// The client order id (`withdrawOrderId`).
    pub order_id: String,
    /// After this time (ms since the Unix epoch) the exchange can no longer accept the
    /// signed request (its timestamp plus receive window, plus a margin for clocks).
    pub dead_after_ms: u64,
}

/// A request signed for an exchange order: its digest, and when it stops being acceptable.
type SignedRequest = ([u8; 32], u64);
/// One spend: when, under which intent, how much (base units).
type SpendEntry = (u64, String, U256);

/// The index.
#[derive(Debug, Default)]
pub struct Logs {
    /// intent id → (job, digest) of each approval under it.
    intents: HashMap<String, Vec<(String, [u8; 32])>>,
    /// "wallet-key" → the digest bound to it.
    nonces: HashMap<String, [u8; 32]>,
    /// (exchange, order id) → (digest, dead after ms) of each request signed for it.
    orders: HashMap<(String, String), Vec<SignedRequest>>,
    /// (wallet, coin) → (when, intent, amount) of each spend.
    spends: HashMap<(WalletId, String), Vec<SpendEntry>>,
}

fn nonce_index(wallet: WalletId, key: &str) -> String {
    format!("{wallet}-{key}")
}

impl Logs {
    /// Adds an approval record.
    pub fn add(&mut self, job: &str, rec: &ApprovalRecord) {
        if !rec.intent.is_empty() {
            self.add_intent(&rec.intent, job, rec.digest);
        }
        if let Some(key) = &rec.nonce_key {
            self.add_nonce(&nonce_index(rec.wallet_id, key), rec.digest);
        }
        if let Some(o) = &rec.order {
            let list = self
                .orders
                .entry((o.exchange.clone(), o.order_id.clone()))
                .or_default();
            if !list.iter().any(|(d, _)| *d == rec.digest) {
                list.push((rec.digest, o.dead_after_ms));
            }
        }
        if let Some(s) = &rec.spend
            && let Ok(amount) = s.amount.parse::<U256>()
        {
            let list = self
                .spends
                .entry((s.wallet, s.coin.to_ascii_uppercase()))
                .or_default();
            if !list.iter().any(|(_, i, _)| *i == rec.intent) {
                list.push((rec.at, rec.intent.clone(), amount));
            }
        }
    }

    /// Adds an intent's use.
    pub fn add_intent(&mut self, intent: &str, job: &str, digest: [u8; 32]) {
        self.intents
            .entry(intent.to_owned())
            .or_default()
            .push((job.to_owned(), digest));
    }

    /// Binds a nonce index entry ("wallet-key") to a digest.
    pub fn add_nonce(&mut self, index: &str, digest: [u8; 32]) {
        self.nonces.entry(index.to_owned()).or_insert(digest);
    }

    /// The approvals given under an intent: (job, digest); an import's use has no job.
    pub fn intent(&self, intent: &str) -> &[(String, [u8; 32])] {
        self.intents.get(intent).map_or(&[], Vec::as_slice)
    }

    /// The digest bound to (wallet, nonce key), if any.
    pub fn nonce(&self, wallet: WalletId, key: &str) -> Option<[u8; 32]> {
        self.nonces.get(&nonce_index(wallet, key)).copied()
    }

    /// The requests signed for an exchange order: (digest, dead after ms).
    pub fn orders(&self, exchange: &str, order_id: &str) -> &[([u8; 32], u64)] {
        self.orders
            .get(&(exchange.to_owned(), order_id.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// What a wallet spent of a coin since `since` (seconds since the Unix epoch), leaving
    /// out the intent `except` (an approval again under the same intent spends nothing new).
    pub fn spent_since(&self, wallet: WalletId, coin: &str, since: u64, except: &str) -> U256 {
        self.spends
            .get(&(wallet, coin.to_ascii_uppercase()))
            .into_iter()
            .flatten()
            .filter(|(at, intent, _)| *at >= since && intent != except)
            .fold(U256::ZERO, |acc, (_, _, a)| acc.saturating_add(*a))
    }
}
