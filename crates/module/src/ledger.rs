//! The module's logs, as an index over its approval records: which intents it accepted, which
//! digest each (wallet, nonce) and exchange order is bound to, what each wallet spent, and
//! which approvals it has signed under. The records are the durable truth (one vault write per
//! approval, one per signing session, one per release); the index is rebuilt from them at
//! start-up.
//!
//! An approval binds (its nonce, its order, its intent, its spend) while it is **live**: not
//! released, and either signed under or not yet expired. An unsigned approval that expired or
//! was released can never be signed under again (a signer joins a run only with its own
//! unexpired approval in the certificate), so it binds nothing: this is how a nonce a module
//! never signed under is freed for the next transaction, without ever letting two
//! transactions be signed for one (wallet, chain, nonce) by this module.

use std::collections::{HashMap, HashSet};

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

/// One approval, as indexed.
#[derive(Debug, Clone)]
struct Entry {
    intent: String,
    digest: [u8; 32],
    at: u64,
    expires_at: u64,
    nonce: Option<String>,
    order: Option<(String, String, u64)>,
    spend: Option<(WalletId, String, U256)>,
    void: bool,
}

/// The index.
#[derive(Debug, Default)]
pub struct Logs {
    /// job → its approval.
    entries: HashMap<String, Entry>,
    /// Jobs this module ran a signing session for.
    signed: HashSet<String>,
    /// Intents spent by imports.
    imports: HashSet<String>,
    /// Nonce bindings from before approval records carried them: "wallet-key" → digest.
    legacy_nonces: HashMap<String, [u8; 32]>,
}

fn nonce_index(wallet: WalletId, key: &str) -> String {
    format!("{wallet}-{key}")
}

impl Logs {
    /// Adds an approval record (`ttl`: how long approvals may be signed under, seconds).
    pub fn add(&mut self, job: &str, rec: &ApprovalRecord, ttl: u64) {
        // The statement says until when the approval may be signed under (never after its
        // intent expires); records without one last `ttl`.
        let expires_at = concord_wire::authority::ApprovalStatement::from_bytes(&rec.statement)
            .map(|st| st.expires_at)
            .unwrap_or_else(|_| rec.at.saturating_add(ttl));
        let entry = Entry {
            intent: rec.intent.clone(),
            digest: rec.digest,
            at: rec.at,
            expires_at,
            nonce: rec
                .nonce_key
                .as_ref()
                .map(|k| nonce_index(rec.wallet_id, k)),
            order: rec
                .order
                .as_ref()
                .map(|o| (o.exchange.clone(), o.order_id.clone(), o.dead_after_ms)),
            spend: rec.spend.as_ref().and_then(|s| {
                s.amount
                    .parse::<U256>()
                    .ok()
                    .map(|a| (s.wallet, s.coin.to_ascii_uppercase(), a))
            }),
            void: rec.void,
        };
        self.entries.insert(job.to_owned(), entry);
    }

    /// Records that this module ran a signing session for `job`.
    pub fn add_signed(&mut self, job: &str) {
        self.signed.insert(job.to_owned());
    }

    /// Whether this module ran a signing session for `job`.
    pub fn has_signed(&self, job: &str) -> bool {
        self.signed.contains(job)
    }

    /// Records an intent spent by an import.
    pub fn add_import(&mut self, intent: &str) {
        self.imports.insert(intent.to_owned());
    }

    /// A nonce binding from before approval records carried them.
    pub fn add_legacy_nonce(&mut self, index: &str, digest: [u8; 32]) {
        self.legacy_nonces.entry(index.to_owned()).or_insert(digest);
    }

    /// Marks an approval released (it will never be signed under).
    pub fn void(&mut self, job: &str) {
        if let Some(e) = self.entries.get_mut(job) {
            e.void = true;
        }
    }

    fn live(&self, now: u64) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries
            .iter()
            .filter(move |(job, e)| !e.void && (self.signed.contains(*job) || e.expires_at > now))
    }

    /// The live approvals under an intent: (job, digest); an import's use is ("", zero).
    pub fn intent(&self, intent: &str, now: u64) -> Vec<(String, [u8; 32])> {
        let mut out: Vec<(String, [u8; 32])> = self
            .live(now)
            .filter(|(_, e)| e.intent == intent)
            .map(|(j, e)| (j.clone(), e.digest))
            .collect();
        if self.imports.contains(intent) {
            out.push((String::new(), [0; 32]));
        }
        out
    }

    /// The digest a live approval binds (wallet, nonce key) to, if any.
    pub fn nonce(&self, wallet: WalletId, key: &str, now: u64) -> Option<[u8; 32]> {
        let index = nonce_index(wallet, key);
        self.live(now)
            .find(|(_, e)| e.nonce.as_deref() == Some(index.as_str()))
            .map(|(_, e)| e.digest)
            .or_else(|| self.legacy_nonces.get(&index).copied())
    }

    /// The requests signed or approved for an exchange order and not released:
    /// (digest, dead after ms).
    pub fn orders(&self, exchange: &str, order_id: &str) -> Vec<([u8; 32], u64)> {
        self.entries
            .values()
            .filter(|e| !e.void)
            .filter_map(|e| match &e.order {
                Some((x, o, dead)) if x == exchange && o == order_id => Some((e.digest, *dead)),
                _ => None,
            })
            .collect()
    }

    /// What a wallet's live approvals spent of a coin since `since` (seconds since the Unix
    /// epoch), leaving out the intent `except` (an approval again under the same intent
    /// spends nothing new). Approvals under one intent for one amount count once, dated by
    /// the newest of them (a withdrawal signed again later is spent again then).
    pub fn spent_since(
        &self,
        wallet: WalletId,
        coin: &str,
        since: u64,
        except: &str,
        now: u64,
    ) -> U256 {
        let coin = coin.to_ascii_uppercase();
        let mut newest: HashMap<(&str, U256), u64> = HashMap::new();
        for (_, e) in self.live(now).filter(|(_, e)| e.intent != except) {
            if let Some((w, c, a)) = &e.spend
                && *w == wallet
                && *c == coin
            {
                let at = newest.entry((e.intent.as_str(), *a)).or_insert(e.at);
                *at = (*at).max(e.at);
            }
        }
        newest
            .into_iter()
            .filter(|(_, at)| *at >= since)
            .fold(U256::ZERO, |acc, ((_, a), _)| acc.saturating_add(a))
    }
}
