//! The in-memory ledger: balances, API keys, deposits, withdrawals and accepted signatures.
//!
//! Everything lives behind one mutex that is never held across an `await`, so every balance
//! change is a single check-and-update: a balance never goes negative, a withdrawal is debited
//! once, and refunded at most once (only on its way from "processing" to "failure").

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use alloy::primitives::{Address, U256, keccak256};
use ed25519_dalek::VerifyingKey;

use crate::api_error::ApiError;
use crate::config::{ApiKeyConfig, ApiKeyKind, CoinConfig, Permission, Secret, SimConfig};

/// Binance withdraw status "Processing".
pub const WITHDRAW_PROCESSING: u8 = 4;
/// Binance withdraw status "Failure".
pub const WITHDRAW_FAILURE: u8 = 5;
/// Binance withdraw status "Completed".
pub const WITHDRAW_COMPLETED: u8 = 6;
/// Binance deposit status "pending".
pub const DEPOSIT_PENDING: u8 = 0;
/// Binance deposit status "success".
pub const DEPOSIT_SUCCESS: u8 = 1;

/// How an API key's requests are verified.
#[derive(Clone)]
pub enum Verifier {
    /// HMAC-SHA256 with this secret.
    Hmac(Secret),
    /// Ed25519 with this public key.
    Ed25519(VerifyingKey),
    /// Kraken's HMAC-SHA512 `API-Sign` with this (decoded) secret; Kraken's routes only.
    Kraken(zeroize::Zeroizing<Vec<u8>>),
    /// A Coinbase CDP key's JWT verifier; Coinbase's routes only.
    Cdp(crate::coinbase::CdpVerifier),
}

/// A registered API key.
#[derive(Clone)]
pub struct KeyEntry {
    /// The account the key belongs to.
    pub account: String,
    /// Verification material.
    pub verifier: Verifier,
    /// Permissions.
    pub permissions: Vec<Permission>,
}

/// One deposit seen on chain.
#[derive(Debug, Clone)]
pub struct Deposit {
    /// Binance-style numeric id.
    pub id: String,
    /// Account credited.
    pub account: String,
    /// Coin.
    pub coin: String,
    /// Network.
    pub network: String,
    /// Amount in base units.
    pub amount: U256,
    /// The deposit address, as the chain writes it.
    pub address: String,
    /// Who sent it (transaction sender, or the token transfer's `from`; empty on a UTXO
    /// chain, where a transaction has no single sender).
    pub source: String,
    /// Transaction hash (EVM: `0x…`; UTXO: the txid).
    pub tx_id: String,
    /// Block that mined it.
    pub block_number: u64,
    /// When the simulator saw it (ms).
    pub insert_time: u64,
    /// When it was credited (ms).
    pub complete_time: Option<u64>,
    /// Confirmations so far, capped at the required number.
    pub confirmations: u64,
    /// 0 pending, 1 success.
    pub status: u8,
}

/// One withdrawal.
#[derive(Debug, Clone)]
pub struct Withdrawal {
    /// 32 hex digits, like Binance's ids.
    pub id: String,
    /// Account debited.
    pub account: String,
    /// Coin.
    pub coin: String,
    /// Network.
    pub network: String,
    /// Recipient, as the chain writes it.
    pub address: String,
    /// Amount sent, base units.
    pub amount: U256,
    /// Fee charged on top, base units.
    pub fee: U256,
    /// Client's id, if given.
    pub withdraw_order_id: Option<String>,
    /// 4 processing, 5 failure, 6 completed.
    pub status: u8,
    /// Transaction hash once sent.
    pub tx_id: Option<String>,
    /// When applied (ms).
    pub apply_time: u64,
    /// When completed (ms).
    pub complete_time: Option<u64>,
    /// Failure reason.
    pub info: String,
    /// Confirmations of the withdrawal transaction.
    pub confirm_no: u64,
}

/// What a withdrawal request asks for, once its parameters are checked.
pub struct WithdrawRequest {
    /// Account to debit.
    pub account: String,
    /// Coin config entry (coin + network).
    pub coin: CoinConfig,
    /// Recipient, checked against the network's address rules.
    pub address: String,
    /// Amount to send.
    pub amount: U256,
    /// Fee charged on top.
    pub fee: U256,
    /// Client's id.
    pub withdraw_order_id: Option<String>,
}

/// Everything the ledger holds.
pub struct Ledger {
    /// account → coin → base units.
    balances: BTreeMap<String, BTreeMap<String, U256>>,
    /// api key → entry.
    keys: HashMap<String, KeyEntry>,
    /// Deposits in the order seen.
    deposits: Vec<Deposit>,
    /// (tx, log index or output index) → position in `deposits`.
    deposit_index: HashMap<(String, Option<u64>), usize>,
    /// Withdrawals in the order applied.
    withdrawals: Vec<Withdrawal>,
    /// (api key, signature) → expiry in µs: signatures accepted and still inside their window.
    accepted_signatures: HashMap<(String, String), u128>,
    /// Next deposit id.
    next_deposit_id: u64,
    /// Kraken: api key → the largest nonce accepted.
    kraken_nonces: HashMap<String, u64>,
    /// Kraken: account → withdrawal keys (name, coin, address), as registered at Kraken.
    kraken_withdraw_keys: BTreeMap<String, Vec<KrakenWithdrawKey>>,
}

/// A withdrawal key registered at Kraken: a name the account holder gave an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KrakenWithdrawKey {
    /// The key's name (what `Withdraw` takes as `key`).
    pub key: String,
    /// The coin.
    pub coin: String,
    /// The network.
    pub network: String,
    /// The address.
    pub address: String,
    /// The memo (destination tag) Kraken adds to withdrawals to this key, if the holder gave
    /// one: on a shared address, it names whose funds they become.
    pub memo: Option<String>,
}

/// The shared ledger.
pub struct SharedLedger(Mutex<Ledger>);

impl SharedLedger {
    /// Builds the ledger from a validated configuration.
    pub fn from_config(config: &SimConfig) -> Result<Self, String> {
        let mut balances = BTreeMap::new();
        let mut keys = HashMap::new();
        for account in &config.accounts {
            let mut coins = BTreeMap::new();
            for (coin, value) in &account.balances {
                let decimals = config
                    .coin_decimals(coin)
                    .ok_or_else(|| format!("unknown coin {coin}"))?;
                let amount = crate::amount::parse_amount(value, decimals)
                    .map_err(|_| format!("bad balance {value:?} of {coin}"))?;
                coins.insert(coin.clone(), amount);
            }
            balances.insert(account.name.clone(), coins);
            for key in &account.api_keys {
                keys.insert(key.api_key.clone(), key_entry(&account.name, key)?);
            }
        }
        Ok(Self(Mutex::new(Ledger {
            balances,
            keys,
            deposits: Vec::new(),
            deposit_index: HashMap::new(),
            withdrawals: Vec::new(),
            accepted_signatures: HashMap::new(),
            next_deposit_id: 770_000_000_000_000_001,
            kraken_nonces: HashMap::new(),
            kraken_withdraw_keys: BTreeMap::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Looks up an API key.
    pub fn key(&self, api_key: &str) -> Option<KeyEntry> {
        self.lock().keys.get(api_key).cloned()
    }

    /// Registers an API key; fails if the key string is taken or the account unknown.
    pub fn add_key(&self, config: &ApiKeyConfig, account: &str) -> Result<(), String> {
        let entry = key_entry(account, config)?;
        let mut ledger = self.lock();
        if !ledger.balances.contains_key(account) {
            return Err(format!("there is no account {account}"));
        }
        if ledger.keys.contains_key(&config.api_key) {
            return Err("that API key is already registered".into());
        }
        ledger.keys.insert(config.api_key.clone(), entry);
        Ok(())
    }

    /// Takes a Kraken nonce for `api_key`: `false` unless it is larger than every nonce that
    /// key used before (Kraken's `EAPI:Invalid nonce`).
    pub fn take_kraken_nonce(&self, api_key: &str, nonce: u64) -> bool {
        let mut ledger = self.lock();
        let last = ledger.kraken_nonces.entry(api_key.to_string()).or_insert(0);
        if nonce <= *last {
            return false;
        }
        *last = nonce;
        true
    }

    /// Registers a Kraken withdrawal key for `account`; fails if the account is unknown or
    /// the name is taken for that coin.
    pub fn add_kraken_withdraw_key(
        &self,
        account: &str,
        key: KrakenWithdrawKey,
    ) -> Result<(), String> {
        let mut ledger = self.lock();
        if !ledger.balances.contains_key(account) {
            return Err(format!("there is no account {account}"));
        }
        let keys = ledger
            .kraken_withdraw_keys
            .entry(account.to_string())
            .or_default();
        if keys.iter().any(|k| k.key == key.key && k.coin == key.coin) {
            return Err(format!(
                "account {account} has a {} withdrawal key named {} already",
                key.coin, key.key
            ));
        }
        keys.push(key);
        Ok(())
    }

    /// The Kraken withdrawal keys of `account`.
    pub fn kraken_withdraw_keys(&self, account: &str) -> Vec<KrakenWithdrawKey> {
        self.lock()
            .kraken_withdraw_keys
            .get(account)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether an account exists.
    pub fn has_account(&self, account: &str) -> bool {
        self.lock().balances.contains_key(account)
    }

    /// Records an accepted signature; `false` if it was already accepted and has not expired.
    pub fn accept_signature(
        &self,
        api_key: &str,
        signature: &str,
        expires_us: u128,
        now_us: u128,
    ) -> bool {
        let mut ledger = self.lock();
        ledger
            .accepted_signatures
            .retain(|_, expiry| *expiry >= now_us);
        let key = (api_key.to_string(), signature.to_string());
        if ledger.accepted_signatures.contains_key(&key) {
            return false;
        }
        ledger.accepted_signatures.insert(key, expires_us);
        true
    }

    /// The balances of an account (coin → base units).
    pub fn balances(&self, account: &str) -> BTreeMap<String, U256> {
        self.lock()
            .balances
            .get(account)
            .cloned()
            .unwrap_or_default()
    }

    /// Adds to a balance (admin credit); returns the new balance.
    pub fn credit(&self, account: &str, coin: &str, amount: U256) -> Result<U256, String> {
        let mut ledger = self.lock();
        let coins = ledger
            .balances
            .get_mut(account)
            .ok_or_else(|| format!("there is no account {account}"))?;
        let balance = coins.entry(coin.to_string()).or_insert(U256::ZERO);
        *balance = balance
            .checked_add(amount)
            .ok_or_else(|| "the balance would overflow".to_string())?;
        Ok(*balance)
    }

    /// Debits amount + fee and records a processing withdrawal, in one step.
    pub fn apply_withdrawal(
        &self,
        request: WithdrawRequest,
        now_ms: u64,
    ) -> Result<Withdrawal, ApiError> {
        let mut ledger = self.lock();
        if let Some(order_id) = &request.withdraw_order_id
            && ledger.withdrawals.iter().any(|w| {
                w.account == request.account && w.withdraw_order_id.as_ref() == Some(order_id)
            })
        {
            return Err(ApiError::invalid_operation());
        }
        let total = request
            .amount
            .checked_add(request.fee)
            .ok_or_else(ApiError::insufficient_balance)?;
        let coins = ledger
            .balances
            .get_mut(&request.account)
            .ok_or_else(ApiError::rejected_key)?;
        let balance = coins.get(&request.coin.coin).copied().unwrap_or(U256::ZERO);
        if balance.is_zero() {
            return Err(ApiError::insufficient_balance());
        }
        let Some(rest) = balance.checked_sub(total) else {
            return Err(ApiError::insufficient_balance());
        };
        coins.insert(request.coin.coin.clone(), rest);
        let withdrawal = Withdrawal {
            id: uuid::Uuid::new_v4().simple().to_string(),
            account: request.account,
            coin: request.coin.coin,
            network: request.coin.network,
            address: request.address,
            amount: request.amount,
            fee: request.fee,
            withdraw_order_id: request.withdraw_order_id,
            status: WITHDRAW_PROCESSING,
            tx_id: None,
            apply_time: now_ms,
            complete_time: None,
            info: String::new(),
            confirm_no: 0,
        };
        ledger.withdrawals.push(withdrawal.clone());
        Ok(withdrawal)
    }

    /// A withdrawal by id.
    pub fn withdrawal(&self, id: &str) -> Option<Withdrawal> {
        self.lock().withdrawals.iter().find(|w| w.id == id).cloned()
    }

    /// Records the transaction that carries a withdrawal.
    pub fn mark_sent(&self, id: &str, tx: String) {
        let mut ledger = self.lock();
        if let Some(w) = ledger.withdrawals.iter_mut().find(|w| w.id == id) {
            w.tx_id = Some(tx);
        }
    }

    /// Completes a processing withdrawal.
    pub fn mark_completed(&self, id: &str, confirmations: u64, now_ms: u64) {
        let mut ledger = self.lock();
        if let Some(w) = ledger.withdrawals.iter_mut().find(|w| w.id == id)
            && w.status == WITHDRAW_PROCESSING
        {
            w.status = WITHDRAW_COMPLETED;
            w.confirm_no = confirmations;
            w.complete_time = Some(now_ms);
        }
    }

    /// Updates the confirmation count of a completed withdrawal.
    pub fn set_withdraw_confirmations(&self, id: &str, confirmations: u64) {
        let mut ledger = self.lock();
        if let Some(w) = ledger.withdrawals.iter_mut().find(|w| w.id == id) {
            w.confirm_no = confirmations;
        }
    }

    /// Fails a processing withdrawal and refunds amount + fee, once.
    pub fn mark_failed(&self, id: &str, info: &str) {
        let mut ledger = self.lock();
        let Some(position) = ledger.withdrawals.iter().position(|w| w.id == id) else {
            return;
        };
        if ledger.withdrawals[position].status != WITHDRAW_PROCESSING {
            return;
        }
        let w = &mut ledger.withdrawals[position];
        w.status = WITHDRAW_FAILURE;
        w.info = info.to_string();
        let (account, coin, refund) = (
            w.account.clone(),
            w.coin.clone(),
            w.amount.saturating_add(w.fee),
        );
        let balance = ledger
            .balances
            .entry(account)
            .or_default()
            .entry(coin)
            .or_insert(U256::ZERO);
        *balance = balance.saturating_add(refund);
    }

    /// Withdrawals that were sent and wait for their receipt, as (id, network, tx).
    pub fn sent_processing(&self) -> Vec<(String, String, String)> {
        self.lock()
            .withdrawals
            .iter()
            .filter(|w| w.status == WITHDRAW_PROCESSING)
            .filter_map(|w| {
                w.tx_id
                    .clone()
                    .map(|tx| (w.id.clone(), w.network.clone(), tx))
            })
            .collect()
    }

    /// Completed withdrawals whose confirmation count may still grow, as (id, network, tx).
    pub fn completed_recent(&self, below: u64) -> Vec<(String, String, String)> {
        self.lock()
            .withdrawals
            .iter()
            .filter(|w| w.status == WITHDRAW_COMPLETED && w.confirm_no < below)
            .filter_map(|w| {
                w.tx_id
                    .clone()
                    .map(|tx| (w.id.clone(), w.network.clone(), tx))
            })
            .collect()
    }

    /// The withdrawals of an account, newest first.
    pub fn withdrawals_of(&self, account: &str) -> Vec<Withdrawal> {
        let ledger = self.lock();
        ledger
            .withdrawals
            .iter()
            .rev()
            .filter(|w| w.account == account)
            .cloned()
            .collect()
    }

    /// Records a deposit seen on chain, once per (tx, log index); `true` if it is new.
    #[allow(clippy::too_many_arguments)]
    pub fn record_deposit(
        &self,
        account: &str,
        coin: &str,
        network: &str,
        address: String,
        source: String,
        amount: U256,
        tx_id: String,
        log_index: Option<u64>,
        block_number: u64,
        now_ms: u64,
    ) -> bool {
        let mut ledger = self.lock();
        if ledger
            .deposit_index
            .contains_key(&(tx_id.clone(), log_index))
        {
            return false;
        }
        let id = ledger.next_deposit_id.to_string();
        ledger.next_deposit_id += 1;
        let position = ledger.deposits.len();
        ledger.deposits.push(Deposit {
            id,
            account: account.to_string(),
            coin: coin.to_string(),
            network: network.to_string(),
            amount,
            address,
            source,
            tx_id: tx_id.clone(),
            block_number,
            insert_time: now_ms,
            complete_time: None,
            // Found in a block: that block is its first confirmation (a reader between this
            // and the poll's confirmation pass never sees "0/N" for a mined deposit).
            confirmations: 1,
            status: DEPOSIT_PENDING,
        });
        ledger.deposit_index.insert((tx_id, log_index), position);
        true
    }

    /// Updates every pending deposit on a network of this chain (`on`) to its confirmations at
    /// chain head `head`, crediting those that reached `required`. Returns how many were
    /// credited.
    pub fn confirm_deposits(
        &self,
        head: u64,
        required: u64,
        now_ms: u64,
        on: impl Fn(&str) -> bool,
    ) -> usize {
        let mut ledger = self.lock();
        let mut credits = Vec::new();
        for deposit in ledger
            .deposits
            .iter_mut()
            .filter(|d| d.status == DEPOSIT_PENDING && on(&d.network))
        {
            let confirmations = head.saturating_add(1).saturating_sub(deposit.block_number);
            deposit.confirmations = confirmations.min(required);
            if confirmations >= required {
                deposit.status = DEPOSIT_SUCCESS;
                deposit.complete_time = Some(now_ms);
                credits.push((
                    deposit.account.clone(),
                    deposit.coin.clone(),
                    deposit.amount,
                ));
            }
        }
        let credited = credits.len();
        for (account, coin, amount) in credits {
            let balance = ledger
                .balances
                .entry(account)
                .or_default()
                .entry(coin)
                .or_insert(U256::ZERO);
            *balance = balance.saturating_add(amount);
        }
        credited
    }

    /// The deposits of an account, newest first.
    pub fn deposits_of(&self, account: &str) -> Vec<Deposit> {
        self.lock()
            .deposits
            .iter()
            .rev()
            .filter(|d| d.account == account)
            .cloned()
            .collect()
    }
}

fn key_entry(account: &str, config: &ApiKeyConfig) -> Result<KeyEntry, String> {
    config.validate()?;
    let verifier = match &config.kind {
        ApiKeyKind::Hmac { secret } => Verifier::Hmac(secret.clone()),
        ApiKeyKind::Ed25519 { public_key } => {
            Verifier::Ed25519(crate::auth::parse_ed25519_public_key(public_key)?)
        }
        ApiKeyKind::Cdp { public_key } => {
            Verifier::Cdp(crate::coinbase::CdpVerifier::parse(public_key)?)
        }
        ApiKeyKind::Kraken { secret } => {
            use base64::Engine as _;
            Verifier::Kraken(zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(secret.expose().trim())
                    .map_err(|_| "the Kraken secret is not base64".to_string())?,
            ))
        }
    };
    Ok(KeyEntry {
        account: account.to_string(),
        verifier,
        permissions: config.permissions.clone(),
    })
}

/// The deposit address of (account, network): the last 20 bytes of
/// keccak256("concord-exchange-sim/deposit-address/v1" ‖ len ‖ seed ‖ len ‖ account ‖ len ‖ network),
/// lengths as 8-byte big-endian. Stable for a seed, shared by every coin of the network. No
/// key is known for it: what is deposited stays there (the hot wallet pays withdrawals).
pub fn deposit_address(seed: &str, account: &str, network: &str) -> Address {
    let mut preimage = b"concord-exchange-sim/deposit-address/v1".to_vec();
    for part in [seed, account, network] {
        preimage.extend_from_slice(&(part.len() as u64).to_be_bytes());
        preimage.extend_from_slice(part.as_bytes());
    }
    Address::from_slice(&keccak256(&preimage)[12..])
}

/// The deposit output script of (account, network) on a UTXO chain: a P2WPKH whose 20-byte
/// program is [`deposit_address`]'s 20 bytes. No key is known for it either.
pub fn utxo_deposit_script(
    seed: &str,
    account: &str,
    network: &str,
) -> concord_chain::utxo::bitcoin::ScriptBuf {
    use concord_chain::utxo::bitcoin::{ScriptBuf, WPubkeyHash, hashes::Hash};
    let program: [u8; 20] = deposit_address(seed, account, network).into_array();
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(program))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_addresses_are_stable_and_distinct() {
        let a = deposit_address("seed", "alice", "ETH");
        assert_eq!(a, deposit_address("seed", "alice", "ETH"));
        assert_ne!(a, deposit_address("seed", "alice", "BSC"));
        assert_ne!(a, deposit_address("seed", "bob", "ETH"));
        assert_ne!(a, deposit_address("other", "alice", "ETH"));
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(
            deposit_address("s", "ab", "c"),
            deposit_address("s", "a", "bc")
        );
    }
}
