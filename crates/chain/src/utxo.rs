//! The UTXO adapter (Bitcoin and Litecoin) on rust-bitcoin: network parameters and addresses,
//! the wallet's output scripts (P2WPKH for threshold ECDSA, P2TR key path for FROST Taproot,
//! P2WSH k-of-n `OP_CHECKMULTISIG` for native multisig), spends built as PSBTs (BIP-174) with
//! coin selection, change back to the wallet and a fee rate, the digests each input is signed
//! over (BIP-143, BIP-341), the checks a module makes on a PSBT before it signs, and the
//! witnesses assembled from the signatures.
//!
//! Bitcoin and Litecoin share the transaction format, the script rules and the signature
//! hashes; they differ in address prefixes and in the dust threshold ([`UtxoNetwork`]). A PSBT
//! carries no network, so one travels unchanged on either chain.

use std::collections::BTreeMap;
use std::fmt;

use bitcoin::absolute::LockTime;
use bitcoin::bech32::{Hrp, segwit};
use bitcoin::blockdata::opcodes::all::OP_CHECKMULTISIG;
use bitcoin::blockdata::script::Builder;
use bitcoin::hashes::Hash;
use bitcoin::key::TweakedPublicKey;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{XOnlyPublicKey, ecdsa, schnorr};
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::transaction::{InputWeightPrediction, Version, predict_weight};
use bitcoin::{
    Amount, CompressedPublicKey, FeeRate, OutPoint, PublicKey, Script, ScriptBuf, Sequence,
    Transaction, TxIn, TxOut, Weight, WitnessProgram, WitnessVersion,
};

pub use bitcoin;

/// Why a UTXO operation failed, in words naming the thing that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UtxoError(pub String);

fn err(reason: impl Into<String>) -> UtxoError {
    UtxoError(reason.into())
}

/// A UTXO network this adapter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UtxoNetwork {
    /// Bitcoin main network.
    Bitcoin,
    /// Bitcoin test network (testnet3, testnet4 and signet share the prefixes).
    BitcoinTestnet,
    /// Bitcoin regression-test network.
    BitcoinRegtest,
    /// Litecoin main network.
    Litecoin,
    /// Litecoin regression-test network (the devnet's `litecoind -regtest`).
    LitecoinRegtest,
}

impl UtxoNetwork {
    /// Every network, for listings and parsing.
    pub const ALL: [UtxoNetwork; 5] = [
        UtxoNetwork::Bitcoin,
        UtxoNetwork::BitcoinTestnet,
        UtxoNetwork::BitcoinRegtest,
        UtxoNetwork::Litecoin,
        UtxoNetwork::LitecoinRegtest,
    ];

    /// The network's name as configured: `btc`, `btc-testnet`, `btc-regtest`, `ltc`,
    /// `ltc-regtest`.
    pub fn name(self) -> &'static str {
        match self {
            UtxoNetwork::Bitcoin => "btc",
            UtxoNetwork::BitcoinTestnet => "btc-testnet",
            UtxoNetwork::BitcoinRegtest => "btc-regtest",
            UtxoNetwork::Litecoin => "ltc",
            UtxoNetwork::LitecoinRegtest => "ltc-regtest",
        }
    }

    /// An amount as this network's coin: `0.50000000 LTC`.
    pub fn show(self, amount: Amount) -> String {
        format!(
            "{} {}",
            amount.to_string_in(bitcoin::Denomination::Bitcoin),
            self.coin()
        )
    }

    /// The coin's ticker: `BTC` or `LTC`.
    pub fn coin(self) -> &'static str {
        match self {
            UtxoNetwork::Bitcoin | UtxoNetwork::BitcoinTestnet | UtxoNetwork::BitcoinRegtest => {
                "BTC"
            }
            UtxoNetwork::Litecoin | UtxoNetwork::LitecoinRegtest => "LTC",
        }
    }

    /// The chain name its node reports in `getblockchaininfo` (`main`, `test`, `regtest`).
    pub fn node_chain(self) -> &'static str {
        match self {
            UtxoNetwork::Bitcoin | UtxoNetwork::Litecoin => "main",
            UtxoNetwork::BitcoinTestnet => "test",
            UtxoNetwork::BitcoinRegtest | UtxoNetwork::LitecoinRegtest => "regtest",
        }
    }

    /// The human-readable part of its segwit addresses (BIP-173).
    pub fn hrp(self) -> &'static str {
        match self {
            UtxoNetwork::Bitcoin => "bc",
            UtxoNetwork::BitcoinTestnet => "tb",
            UtxoNetwork::BitcoinRegtest => "bcrt",
            UtxoNetwork::Litecoin => "ltc",
            UtxoNetwork::LitecoinRegtest => "rltc",
        }
    }

    /// Base58 version bytes of pay-to-pubkey-hash and pay-to-script-hash addresses. Litecoin
    /// writes P2SH with its own prefix (`M…`, `Q…`) and also reads Bitcoin's (`3…`, `2…`).
    fn base58_versions(self) -> (u8, u8, Option<u8>) {
        match self {
            UtxoNetwork::Bitcoin => (0, 5, None),
            UtxoNetwork::BitcoinTestnet | UtxoNetwork::BitcoinRegtest => (111, 196, None),
            UtxoNetwork::Litecoin => (48, 50, Some(5)),
            UtxoNetwork::LitecoinRegtest => (111, 58, Some(196)),
        }
    }

    /// The fee rate the node's dust rule is computed at: an output worth less than spending
    /// it would cost at this rate is not relayed (Bitcoin Core 3 sat/vB; Litecoin Core ten
    /// times that).
    pub fn dust_relay_fee(self) -> FeeRate {
        match self {
            UtxoNetwork::Bitcoin | UtxoNetwork::BitcoinTestnet | UtxoNetwork::BitcoinRegtest => {
                FeeRate::from_sat_per_kwu(750)
            }
            UtxoNetwork::Litecoin | UtxoNetwork::LitecoinRegtest => FeeRate::from_sat_per_kwu(7500),
        }
    }

    /// The smallest amount an output to `script` may carry on this network.
    pub fn dust_limit(self, script: &Script) -> Amount {
        script.minimal_non_dust_custom(self.dust_relay_fee())
    }

    /// The address of an output script on this network.
    pub fn address(self, script: &Script) -> Result<String, UtxoError> {
        if let Some(version) = script.witness_version() {
            let hrp = Hrp::parse(self.hrp()).map_err(|e| err(e.to_string()))?;
            return segwit::encode(hrp, version.to_fe(), &script.as_bytes()[2..])
                .map_err(|e| err(format!("cannot encode the segwit address: {e}")));
        }
        let (p2pkh, p2sh, _) = self.base58_versions();
        let (version, hash) = if script.is_p2pkh() {
            (p2pkh, &script.as_bytes()[3..23])
        } else if script.is_p2sh() {
            (p2sh, &script.as_bytes()[2..22])
        } else {
            return Err(err(format!(
                "script {} has no address form",
                script.to_hex_string()
            )));
        };
        let mut data = vec![version];
        data.extend_from_slice(hash);
        Ok(bitcoin::base58::encode_check(&data))
    }

    /// The output script an address of this network pays to. Fails, saying why, for an
    /// address of another network or a malformed one.
    pub fn script_of(self, address: &str) -> Result<ScriptBuf, UtxoError> {
        let address = address.trim();
        let lower = address.to_ascii_lowercase();
        if lower.starts_with(&format!("{}1", self.hrp())) {
            let (hrp, version, program) = segwit::decode(address)
                .map_err(|e| err(format!("{address:?} is not a valid segwit address: {e}")))?;
            if hrp.to_lowercase() != self.hrp() {
                return Err(err(format!("{address:?} is not a {} address", self.name())));
            }
            let version =
                WitnessVersion::try_from(version).map_err(|e| err(format!("{address:?}: {e}")))?;
            let program = WitnessProgram::new(version, &program)
                .map_err(|e| err(format!("{address:?}: {e}")))?;
            return Ok(ScriptBuf::new_witness_program(&program));
        }
        let data = bitcoin::base58::decode_check(address).map_err(|_| {
            err(format!(
                "{address:?} is neither a {} segwit address ({}1…) nor a valid base58 address",
                self.name(),
                self.hrp()
            ))
        })?;
        let (p2pkh, p2sh, p2sh_also) = self.base58_versions();
        let (&version, hash) = data
            .split_first()
            .filter(|(_, h)| h.len() == 20)
            .ok_or_else(|| err(format!("{address:?} does not carry a 20-byte hash")))?;
        let hash: [u8; 20] = hash
            .try_into()
            .map_err(|_| err(format!("{address:?} does not carry a 20-byte hash")))?;
        if version == p2pkh {
            Ok(ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array(
                hash,
            )))
        } else if version == p2sh || Some(version) == p2sh_also {
            Ok(ScriptBuf::new_p2sh(&bitcoin::ScriptHash::from_byte_array(
                hash,
            )))
        } else {
            Err(err(format!(
                "{address:?} is not a {} address (version byte {version})",
                self.name()
            )))
        }
    }
}

impl fmt::Display for UtxoNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for UtxoNetwork {
    type Err = UtxoError;
    fn from_str(s: &str) -> Result<Self, UtxoError> {
        UtxoNetwork::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| {
                err(format!(
                    "unknown UTXO network {s:?} (known: {})",
                    UtxoNetwork::ALL.map(|n| n.name()).join(", ")
                ))
            })
    }
}

/// Most keys an `OP_CHECKMULTISIG` takes (consensus).
pub const MAX_MULTISIG_KEYS: usize = 20;

/// What a wallet's coins are locked to, and so how its inputs are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletScript {
    /// Pay to witness public key hash: one key, a threshold ECDSA group key.
    P2wpkh {
        /// The group's public key.
        key: CompressedPublicKey,
    },
    /// Pay to Taproot, key path only: the FROST group's *output* key (the engines already
    /// applied the BIP-341 tweak with no script tree, so it is not tweaked again here).
    P2tr {
        /// The tweaked output key.
        output_key: XOnlyPublicKey,
    },
    /// Pay to witness script hash of `threshold OP_CHECKMULTISIG` over each module's own
    /// key, sorted as BIP-67 sorts them.
    P2wsh {
        /// Signatures needed.
        threshold: u8,
        /// The keys, in BIP-67 order (by their compressed serialisation).
        keys: Vec<CompressedPublicKey>,
    },
}

impl WalletScript {
    /// A P2WPKH wallet of a threshold ECDSA key (33-byte compressed SEC1).
    pub fn p2wpkh(group_key: &[u8]) -> Result<Self, UtxoError> {
        let key = CompressedPublicKey::from_slice(group_key)
            .map_err(|e| err(format!("not a compressed secp256k1 public key: {e}")))?;
        Ok(WalletScript::P2wpkh { key })
    }

    /// A P2TR wallet of a FROST Taproot group: its 32-byte x-only output key.
    pub fn p2tr(output_key: &[u8]) -> Result<Self, UtxoError> {
        let output_key = XOnlyPublicKey::from_slice(output_key)
            .map_err(|e| err(format!("not an x-only secp256k1 public key: {e}")))?;
        Ok(WalletScript::P2tr { output_key })
    }

    /// A `threshold`-of-n multisig of the modules' own keys (33-byte compressed each); the
    /// order given does not matter (BIP-67 sorts them), a key given twice is refused.
    pub fn multisig(threshold: u8, keys: &[Vec<u8>]) -> Result<Self, UtxoError> {
        let mut parsed = keys
            .iter()
            .map(|k| {
                CompressedPublicKey::from_slice(k)
                    .map_err(|e| err(format!("not a compressed secp256k1 public key: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        parsed.sort_by_key(|k| k.to_bytes());
        if parsed.windows(2).any(|w| w[0] == w[1]) {
            return Err(err("a multisig key is listed twice"));
        }
        if parsed.is_empty() || parsed.len() > MAX_MULTISIG_KEYS {
            return Err(err(format!(
                "a multisig takes 1 to {MAX_MULTISIG_KEYS} keys, not {}",
                parsed.len()
            )));
        }
        if threshold == 0 || usize::from(threshold) > parsed.len() {
            return Err(err(format!(
                "threshold {threshold} is not between 1 and the {} keys",
                parsed.len()
            )));
        }
        Ok(WalletScript::P2wsh {
            threshold,
            keys: parsed,
        })
    }

    /// The witness script of a multisig wallet.
    pub fn witness_script(&self) -> Option<ScriptBuf> {
        let WalletScript::P2wsh { threshold, keys } = self else {
            return None;
        };
        let mut b = Builder::new().push_int(i64::from(*threshold));
        for k in keys {
            b = b.push_key(&PublicKey::from(*k));
        }
        Some(
            b.push_int(keys.len() as i64)
                .push_opcode(OP_CHECKMULTISIG)
                .into_script(),
        )
    }

    /// The output script coins of this wallet are locked to.
    pub fn script_pubkey(&self) -> ScriptBuf {
        match self {
            WalletScript::P2wpkh { key } => ScriptBuf::new_p2wpkh(&key.wpubkey_hash()),
            WalletScript::P2tr { output_key } => {
                ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(*output_key))
            }
            WalletScript::P2wsh { .. } => self
                .witness_script()
                .map(|w| w.to_p2wsh())
                .unwrap_or_default(),
        }
    }

    /// The kind, as a word: `p2wpkh`, `p2tr` or `p2wsh`.
    pub fn kind(&self) -> &'static str {
        match self {
            WalletScript::P2wpkh { .. } => "p2wpkh",
            WalletScript::P2tr { .. } => "p2tr",
            WalletScript::P2wsh { .. } => "p2wsh",
        }
    }

    /// The weight one of this wallet's inputs adds once signed (at most).
    fn input_weight(&self) -> InputWeightPrediction {
        match self {
            WalletScript::P2wpkh { .. } => InputWeightPrediction::P2WPKH_MAX,
            WalletScript::P2tr { .. } => InputWeightPrediction::P2TR_KEY_DEFAULT_SIGHASH,
            WalletScript::P2wsh { threshold, .. } => {
                let script_len = self.witness_script().map(|s| s.len()).unwrap_or(0);
                // The empty dummy, `threshold` DER signatures of at most 73 bytes with their
                // sighash byte, the witness script.
                let mut elements = vec![0];
                elements.extend(std::iter::repeat_n(73, usize::from(*threshold)));
                elements.push(script_len);
                InputWeightPrediction::new(0, elements)
            }
        }
    }
}

/// An unspent output of the wallet, as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utxo {
    /// Where it is.
    pub outpoint: OutPoint,
    /// What it holds and what it is locked to.
    pub txout: TxOut,
}

/// A spend to build: `amount` to `to`, paid from `available`, the change back to the wallet.
#[derive(Debug, Clone)]
pub struct SpendRequest<'a> {
    /// The network (dust rule).
    pub network: UtxoNetwork,
    /// The paying wallet.
    pub wallet: &'a WalletScript,
    /// The wallet's spendable outputs.
    pub available: &'a [Utxo],
    /// The destination's output script.
    pub to: ScriptBuf,
    /// What the destination receives.
    pub amount: Amount,
    /// The fee rate paid.
    pub fee_rate: FeeRate,
}

/// The most a spend's fee may be: both caps hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeCap {
    /// Highest fee rate.
    pub max_fee_rate: FeeRate,
    /// Highest absolute fee.
    pub max_fee: Amount,
}

/// Builds the unsigned spend: inputs taken largest first until they pay the amount and the
/// fee at `fee_rate`; change to the wallet's own script unless it would be dust (then it is
/// left to the fee). Every input carries its spent output (`witness_utxo`), and a multisig
/// input its witness script, so a signer can compute its digest from the PSBT alone — and
/// check it against its own node.
pub fn build_spend(req: &SpendRequest<'_>) -> Result<Psbt, UtxoError> {
    let own = req.wallet.script_pubkey();
    let dust = req.network.dust_limit(&req.to);
    if req.amount < dust {
        return Err(err(format!(
            "{} is below the dust limit of {dust} for that destination",
            req.amount
        )));
    }
    let mut coins: Vec<&Utxo> = req
        .available
        .iter()
        .filter(|u| u.txout.script_pubkey == own)
        .collect();
    coins.sort_by(|a, b| {
        b.txout
            .value
            .cmp(&a.txout.value)
            .then(a.outpoint.cmp(&b.outpoint))
    });
    let weight_of = |inputs: usize, with_change: bool| -> Weight {
        let mut outs = vec![req.to.len()];
        if with_change {
            outs.push(own.len());
        }
        predict_weight(std::iter::repeat_n(req.wallet.input_weight(), inputs), outs)
    };
    let fee_at = |w: Weight| {
        req.fee_rate
            .fee_wu(w)
            .ok_or_else(|| err("the fee overflows"))
    };
    let mut chosen = Vec::new();
    let mut total = Amount::ZERO;
    let mut plan = None;
    for coin in coins {
        chosen.push(coin);
        total = total
            .checked_add(coin.txout.value)
            .ok_or_else(|| err("the coins' total overflows"))?;
        let fee_with = fee_at(weight_of(chosen.len(), true))?;
        let fee_without = fee_at(weight_of(chosen.len(), false))?;
        let overflow = || err("the amount and its fee overflow");
        let need_with = req.amount.checked_add(fee_with).ok_or_else(overflow)?;
        let need_without = req.amount.checked_add(fee_without).ok_or_else(overflow)?;
        if let Some(change) = total.checked_sub(need_with)
            && change >= req.network.dust_limit(&own)
        {
            plan = Some(Some(change));
            break;
        }
        if total >= need_without {
            plan = Some(None);
            break;
        }
    }
    let Some(change) = plan else {
        return Err(err(format!(
            "the wallet's {} confirmed coins hold {total}, less than {} and its fee",
            req.available.len(),
            req.amount
        )));
    };
    let mut output = vec![TxOut {
        value: req.amount,
        script_pubkey: req.to.clone(),
    }];
    if let Some(change) = change {
        output.push(TxOut {
            value: change,
            script_pubkey: own.clone(),
        });
    }
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: chosen
            .iter()
            .map(|u| TxIn {
                previous_output: u.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_LOCKTIME_NO_RBF,
                witness: Default::default(),
            })
            .collect(),
        output,
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).map_err(|e| err(e.to_string()))?;
    for (input, coin) in psbt.inputs.iter_mut().zip(&chosen) {
        input.witness_utxo = Some(coin.txout.clone());
        input.witness_script = req.wallet.witness_script();
    }
    Ok(psbt)
}

/// The spent outputs of a PSBT's inputs, in input order (each must carry its witness UTXO).
pub fn spent_outputs(psbt: &Psbt) -> Result<Vec<TxOut>, UtxoError> {
    psbt.inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            input
                .witness_utxo
                .clone()
                .ok_or_else(|| err(format!("input {i} does not say what it spends")))
        })
        .collect()
}

/// The 32-byte digest each input is signed over: BIP-143 (`SIGHASH_ALL`) for P2WPKH and
/// P2WSH, BIP-341 key path (`SIGHASH_DEFAULT`) for P2TR. Computed from the unsigned
/// transaction and the spent outputs the PSBT carries — which a module first checks against
/// its own node ([`check_spend`]).
pub fn sighashes(psbt: &Psbt, wallet: &WalletScript) -> Result<Vec<[u8; 32]>, UtxoError> {
    let prevouts = spent_outputs(psbt)?;
    let own = wallet.script_pubkey();
    let mut cache = SighashCache::new(&psbt.unsigned_tx);
    prevouts
        .iter()
        .enumerate()
        .map(|(i, prev)| {
            if prev.script_pubkey != own {
                return Err(err(format!("input {i} does not spend the wallet's script")));
            }
            let digest = match wallet {
                WalletScript::P2wpkh { .. } => cache
                    .p2wpkh_signature_hash(
                        i,
                        &prev.script_pubkey,
                        prev.value,
                        EcdsaSighashType::All,
                    )
                    .map_err(|e| err(e.to_string()))?
                    .to_byte_array(),
                WalletScript::P2wsh { .. } => {
                    let script = wallet.witness_script().unwrap_or_default();
                    cache
                        .p2wsh_signature_hash(i, &script, prev.value, EcdsaSighashType::All)
                        .map_err(|e| err(e.to_string()))?
                        .to_byte_array()
                }
                WalletScript::P2tr { .. } => cache
                    .taproot_key_spend_signature_hash(
                        i,
                        &Prevouts::All(&prevouts),
                        TapSighashType::Default,
                    )
                    .map_err(|e| err(e.to_string()))?
                    .to_byte_array(),
            };
            Ok(digest)
        })
        .collect()
}

/// What a module expects a spend to do, from its own view: pay `amount` to `to` (the
/// deposit address its own connector returned), from coins its own node reports unspent and
/// the wallet's, change only back to the wallet, the fee within its caps.
#[derive(Debug, Clone)]
pub struct SpendExpectation<'a> {
    /// The network (dust rule, for the report).
    pub network: UtxoNetwork,
    /// The paying wallet, derived by the module from its own share or keys.
    pub wallet: &'a WalletScript,
    /// The destination's output script.
    pub to: &'a Script,
    /// What the destination must receive.
    pub amount: Amount,
    /// The module's fee caps.
    pub caps: FeeCap,
}

/// What a checked spend does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSpend {
    /// The transaction id it will have.
    pub txid: bitcoin::Txid,
    /// The fee it pays.
    pub fee: Amount,
    /// Its fee rate once signed (at most; from the predicted weight).
    pub fee_rate: FeeRate,
    /// The change back to the wallet.
    pub change: Amount,
    /// The digest of each input.
    pub sighashes: Vec<[u8; 32]>,
}

/// Checks a PSBT against a module's own view before it signs anything of it, and returns the
/// digests it may sign. `unspent` answers, from the module's own node, what an outpoint holds
/// if it exists and is unspent. Refused, naming what is wrong: a version or lock time other
/// than the builder's, an input the node does not know as unspent, one not the wallet's, a
/// spent output in the PSBT that differs from the node's, an output that is neither exactly
/// the destination nor change to the wallet, the destination paid another amount, a fee over
/// the caps, and any field the builder does not set (it would be signed blind or carried
/// along).
pub fn check_spend(
    psbt: &Psbt,
    expect: &SpendExpectation<'_>,
    mut unspent: impl FnMut(&OutPoint) -> Option<TxOut>,
) -> Result<CheckedSpend, UtxoError> {
    let tx = &psbt.unsigned_tx;
    if tx.version != Version::TWO || tx.lock_time != LockTime::ZERO {
        return Err(err(
            "the transaction's version or lock time is not what this system builds",
        ));
    }
    if tx.input.is_empty() {
        return Err(err("the transaction spends nothing"));
    }
    if !psbt.proprietary.is_empty() || !psbt.unknown.is_empty() || !psbt.xpub.is_empty() {
        return Err(err(
            "the PSBT carries global fields this system does not set",
        ));
    }
    let own = expect.wallet.script_pubkey();
    let witness_script = expect.wallet.witness_script();
    let mut seen = std::collections::BTreeSet::new();
    let mut total_in = Amount::ZERO;
    for (i, (txin, input)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
        if !seen.insert(txin.previous_output) {
            return Err(err(format!("input {i} spends an outpoint twice")));
        }
        if txin.sequence != Sequence::ENABLE_LOCKTIME_NO_RBF {
            return Err(err(format!("input {i} has an unexpected sequence number")));
        }
        let Some(node) = unspent(&txin.previous_output) else {
            return Err(err(format!(
                "input {i} spends {}, which this module's node does not know as unspent",
                txin.previous_output
            )));
        };
        if node.script_pubkey != own {
            return Err(err(format!(
                "input {i} spends {}, which is not this wallet's",
                txin.previous_output
            )));
        }
        if input.witness_utxo.as_ref() != Some(&node) {
            return Err(err(format!(
                "input {i}'s spent output in the PSBT is not the one this module's node reports"
            )));
        }
        if input.witness_script != witness_script {
            return Err(err(format!(
                "input {i}'s witness script is not the wallet's"
            )));
        }
        if input.non_witness_utxo.is_some()
            || input.redeem_script.is_some()
            || input.sighash_type.is_some()
            || !input.partial_sigs.is_empty()
            || input.tap_internal_key.is_some()
            || input.tap_merkle_root.is_some()
            || input.tap_key_sig.is_some()
            || !input.tap_script_sigs.is_empty()
            || !input.tap_scripts.is_empty()
            || !input.ripemd160_preimages.is_empty()
            || !input.sha256_preimages.is_empty()
            || !input.hash160_preimages.is_empty()
            || !input.hash256_preimages.is_empty()
            || !input.tap_key_origins.is_empty()
            || !input.bip32_derivation.is_empty()
            || input.final_script_sig.is_some()
            || input.final_script_witness.is_some()
            || !input.proprietary.is_empty()
            || !input.unknown.is_empty()
        {
            return Err(err(format!(
                "input {i} carries PSBT fields this system does not set"
            )));
        }
        total_in += node.value;
    }
    let mut paid = None;
    let mut change = None;
    for (i, out) in tx.output.iter().enumerate() {
        if out.script_pubkey.as_script() == expect.to && paid.is_none() {
            paid = Some(out.value);
        } else if out.script_pubkey == own && change.is_none() {
            change = Some(out.value);
        } else {
            return Err(err(format!(
                "output {i} pays {} to {}, which is neither the destination nor change to the wallet",
                expect.network.show(out.value),
                expect
                    .network
                    .address(&out.script_pubkey)
                    .unwrap_or_else(|_| out.script_pubkey.to_hex_string())
            )));
        }
    }
    for (i, out) in psbt.outputs.iter().enumerate() {
        if out.redeem_script.is_some()
            || out.witness_script.is_some()
            || !out.bip32_derivation.is_empty()
            || out.tap_internal_key.is_some()
            || out.tap_tree.is_some()
            || !out.tap_key_origins.is_empty()
            || !out.proprietary.is_empty()
            || !out.unknown.is_empty()
        {
            return Err(err(format!(
                "output {i} carries PSBT fields this system does not set"
            )));
        }
    }
    match paid {
        Some(v) if v == expect.amount => {}
        Some(v) => {
            return Err(err(format!(
                "the destination is paid {}, not {}",
                expect.network.show(v),
                expect.network.show(expect.amount)
            )));
        }
        None => return Err(err("no output pays the destination")),
    }
    let total_out = tx
        .output
        .iter()
        .try_fold(Amount::ZERO, |a, o| a.checked_add(o.value))
        .ok_or_else(|| err("the outputs overflow"))?;
    let fee = total_in
        .checked_sub(total_out)
        .ok_or_else(|| err("the outputs spend more than the inputs hold"))?;
    let weight = predict_weight(
        std::iter::repeat_n(expect.wallet.input_weight(), tx.input.len()),
        tx.output.iter().map(|o| o.script_pubkey.len()),
    );
    // The fee over the signed transaction's largest weight: its actual rate can be a few
    // per cent higher (shorter signatures), which the absolute cap bounds.
    let fee_rate = FeeRate::from_sat_per_kwu(fee.to_sat() * 1000 / weight.to_wu().max(1));
    if fee > expect.caps.max_fee {
        return Err(err(format!(
            "the fee {} is over this module's cap of {}",
            expect.network.show(fee),
            expect.network.show(expect.caps.max_fee)
        )));
    }
    if fee_rate > expect.caps.max_fee_rate {
        return Err(err(format!(
            "the fee rate {} sat/vB is over this module's cap of {} sat/vB",
            fee_rate.to_sat_per_vb_ceil(),
            expect.caps.max_fee_rate.to_sat_per_vb_floor()
        )));
    }
    Ok(CheckedSpend {
        txid: tx.compute_txid(),
        fee,
        fee_rate,
        change: change.unwrap_or(Amount::ZERO),
        sighashes: sighashes(psbt, expect.wallet)?,
    })
}

/// A signature over one input's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSignature {
    /// A threshold ECDSA signature of a P2WPKH input: 64 bytes `r || s` (a recovery byte
    /// after them is ignored); normalised to low S here.
    Ecdsa(Vec<u8>),
    /// A BIP-340 signature of a P2TR key-path input, 64 bytes.
    Schnorr([u8; 64]),
    /// ECDSA signatures of a multisig input by some of its keys (64 bytes `r || s` each).
    Multisig(BTreeMap<CompressedPublicKey, Vec<u8>>),
}

fn ecdsa_sig(bytes: &[u8]) -> Result<bitcoin::ecdsa::Signature, UtxoError> {
    let compact = bytes
        .get(..64)
        .ok_or_else(|| err("an ECDSA signature is 64 bytes r || s"))?;
    let mut sig = ecdsa::Signature::from_compact(compact)
        .map_err(|e| err(format!("not an ECDSA signature: {e}")))?;
    sig.normalize_s();
    Ok(bitcoin::ecdsa::Signature::sighash_all(sig))
}

/// Puts the signatures into the inputs' witnesses and returns the transaction to broadcast,
/// after checking each signature against its digest and key (a wrong one is named, never
/// broadcast). A multisig input takes exactly `threshold` signatures in the script's key
/// order; more valid ones are left out.
pub fn finalize(
    psbt: &Psbt,
    wallet: &WalletScript,
    signatures: &[InputSignature],
) -> Result<Transaction, UtxoError> {
    let digests = sighashes(psbt, wallet)?;
    if signatures.len() != digests.len() {
        return Err(err(format!(
            "{} signatures for {} inputs",
            signatures.len(),
            digests.len()
        )));
    }
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let mut tx = psbt.unsigned_tx.clone();
    for (i, ((txin, digest), sig)) in tx
        .input
        .iter_mut()
        .zip(&digests)
        .zip(signatures)
        .enumerate()
    {
        let msg = bitcoin::secp256k1::Message::from_digest(*digest);
        txin.witness = match (wallet, sig) {
            (WalletScript::P2wpkh { key }, InputSignature::Ecdsa(bytes)) => {
                let sig = ecdsa_sig(bytes)?;
                secp.verify_ecdsa(&msg, &sig.signature, &key.0)
                    .map_err(|_| err(format!("the signature of input {i} does not verify")))?;
                bitcoin::Witness::p2wpkh(&sig, &key.0)
            }
            (WalletScript::P2tr { output_key }, InputSignature::Schnorr(bytes)) => {
                let sig = schnorr::Signature::from_slice(bytes)
                    .map_err(|e| err(format!("input {i}: {e}")))?;
                secp.verify_schnorr(&sig, &msg, output_key)
                    .map_err(|_| err(format!("the signature of input {i} does not verify")))?;
                bitcoin::Witness::p2tr_key_spend(&bitcoin::taproot::Signature {
                    signature: sig,
                    sighash_type: TapSighashType::Default,
                })
            }
            (WalletScript::P2wsh { threshold, keys }, InputSignature::Multisig(by_key)) => {
                let mut w = bitcoin::Witness::new();
                w.push([]);
                let mut used = 0;
                for k in keys {
                    if used == usize::from(*threshold) {
                        break;
                    }
                    let Some(bytes) = by_key.get(k) else { continue };
                    let sig = ecdsa_sig(bytes)?;
                    secp.verify_ecdsa(&msg, &sig.signature, &k.0).map_err(|_| {
                        err(format!(
                            "the signature of input {i} by key {k} does not verify"
                        ))
                    })?;
                    w.push(sig.serialize());
                    used += 1;
                }
                if let Some(stray) = by_key.keys().find(|k| !keys.contains(k)) {
                    return Err(err(format!(
                        "input {i} was signed by {stray}, which is not a key of this multisig"
                    )));
                }
                if used < usize::from(*threshold) {
                    return Err(err(format!(
                        "input {i} has {used} signatures of the {threshold} it needs"
                    )));
                }
                w.push(wallet.witness_script().unwrap_or_default().as_bytes());
                w
            }
            _ => {
                return Err(err(format!(
                    "input {i}: a signature of the wrong kind for a {} wallet",
                    wallet.kind()
                )));
            }
        };
    }
    Ok(tx)
}
