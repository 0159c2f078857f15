//! Fuzz harnesses for the UTXO side's parsers of untrusted input: the PSBT a module is asked
//! to sign (parsed, its digests computed, checked against the module's own node by
//! `utxo::check_spend`) and the deposit addresses an exchange answers (`script_of`).
//!
//! Each `#[test]` is a bolero target: a bounded number of generated cases under
//! `cargo test`/`cargo nextest`; coverage-guided (libFuzzer) under `scripts/fuzz.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::LazyLock;

use bolero::{TypeGenerator, check};
use concord_chain::utxo::bitcoin::secp256k1::{Secp256k1, SecretKey};
use concord_chain::utxo::bitcoin::{
    Amount, FeeRate, OutPoint, Psbt, ScriptBuf, TxOut, Txid, hashes::Hash,
};
use concord_chain::utxo::{
    FeeCap, SpendExpectation, SpendRequest, Utxo, UtxoNetwork, WalletScript, build_spend,
    check_spend, sighashes, spent_outputs,
};

const CASES: usize = 20000;

/// One edit of a seed document.
#[derive(Debug, Clone, TypeGenerator)]
enum Edit {
    Set {
        at: u16,
        byte: u8,
    },
    Insert {
        at: u16,
        byte: u8,
    },
    Remove {
        at: u16,
    },
    Truncate {
        at: u16,
    },
    Flip {
        at: u16,
        bit: u8,
    },
    /// A varint or count that claims much (length fields must not make the parser allocate).
    Big {
        at: u16,
        kind: u8,
    },
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for e in edits {
        let pos = |at: u16, len: usize| usize::from(at) % (len + 1);
        match *e {
            Edit::Set { at, byte } => {
                if !out.is_empty() {
                    let i = usize::from(at) % out.len();
                    out[i] = byte;
                }
            }
            Edit::Insert { at, byte } => {
                let i = pos(at, out.len());
                out.insert(i, byte);
            }
            Edit::Remove { at } => {
                if !out.is_empty() {
                    let i = usize::from(at) % out.len();
                    out.remove(i);
                }
            }
            Edit::Truncate { at } => {
                let i = pos(at, out.len());
                out.truncate(i);
            }
            Edit::Flip { at, bit } => {
                if !out.is_empty() {
                    let i = usize::from(at) % out.len();
                    out[i] ^= 1 << (bit % 8);
                }
            }
            Edit::Big { at, kind } => {
                let i = pos(at, out.len());
                let t: &[u8] = match kind % 4 {
                    0 => &[0xfd, 0xff, 0xff],
                    1 => &[0xfe, 0xff, 0xff, 0xff, 0x7f],
                    2 => &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                    _ => &[0xfc],
                };
                out.splice(i..i, t.iter().copied());
            }
        }
    }
    out
}

fn pubkey(i: u8) -> Vec<u8> {
    SecretKey::from_slice(&[i; 32])
        .unwrap()
        .public_key(&Secp256k1::new())
        .serialize()
        .to_vec()
}

fn xonly(i: u8) -> Vec<u8> {
    SecretKey::from_slice(&[i; 32])
        .unwrap()
        .x_only_public_key(&Secp256k1::new())
        .0
        .serialize()
        .to_vec()
}

static WALLETS: LazyLock<Vec<WalletScript>> = LazyLock::new(|| {
    let mut keys = vec![pubkey(11), pubkey(12), pubkey(13)];
    keys.sort();
    vec![
        WalletScript::p2wpkh(&pubkey(5)).unwrap(),
        WalletScript::p2tr(&xonly(6)).unwrap(),
        WalletScript::multisig(2, &keys).unwrap(),
    ]
});

const NET: UtxoNetwork = UtxoNetwork::LitecoinRegtest;
const AMOUNT: u64 = 100_000;

fn destination() -> ScriptBuf {
    WalletScript::p2wpkh(&pubkey(9)).unwrap().script_pubkey()
}

/// Each wallet's coins, as its node reports them.
fn coins(wallet: &WalletScript) -> Vec<Utxo> {
    (1..=3u8)
        .map(|n| Utxo {
            outpoint: OutPoint {
                txid: Txid::from_byte_array([n; 32]),
                vout: u32::from(n),
            },
            txout: TxOut {
                value: Amount::from_sat(40_000 * u64::from(n)),
                script_pubkey: wallet.script_pubkey(),
            },
        })
        .collect()
}

/// A spend from each wallet, as the coordinator builds it.
static SPENDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    WALLETS
        .iter()
        .flat_map(|w| {
            let available = coins(w);
            [AMOUNT, 150_000].map(|amount| {
                build_spend(&SpendRequest {
                    network: NET,
                    wallet: w,
                    available: &available,
                    to: destination(),
                    amount: Amount::from_sat(amount),
                    fee_rate: FeeRate::from_sat_per_vb(2).unwrap(),
                })
                .unwrap()
                .serialize()
            })
        })
        .collect()
});

#[derive(Debug, TypeGenerator)]
enum PsbtInput {
    Raw {
        wallet: u8,
        node_agrees: bool,
        bytes: Vec<u8>,
    },
    Mutated {
        seed: u8,
        node_agrees: bool,
        edits: Vec<Edit>,
    },
    Address {
        network: u8,
        text: String,
    },
    Mangled {
        network: u8,
        seed: u8,
        edits: Vec<Edit>,
    },
}

fn check_psbt(wallet_index: usize, node_agrees: bool, bytes: &[u8]) {
    let Ok(psbt) = Psbt::deserialize(bytes) else {
        return;
    };
    // What parses re-encodes to something that parses to the same PSBT.
    let again = Psbt::deserialize(&psbt.serialize()).expect("a PSBT's own encoding parses");
    assert_eq!(again, psbt);
    if let Ok(outs) = spent_outputs(&psbt) {
        assert_eq!(outs.len(), psbt.inputs.len());
    }
    for w in WALLETS.iter() {
        if let Ok(h) = sighashes(&psbt, w) {
            assert_eq!(h.len(), psbt.inputs.len());
        }
    }
    let wallet = &WALLETS[wallet_index % WALLETS.len()];
    let node = coins(wallet);
    let to = destination();
    let expect = SpendExpectation {
        network: NET,
        wallet,
        to: &to,
        amount: Amount::from_sat(AMOUNT),
        caps: FeeCap {
            max_fee_rate: FeeRate::from_sat_per_vb(50).unwrap(),
            max_fee: Amount::from_sat(50_000),
        },
    };
    // The module's node: its own coins, or (to reach deeper) one that agrees with whatever
    // the PSBT says it spends, while never reporting more than all the coins there are.
    let mut reported = Amount::ZERO;
    let lookup = |op: &OutPoint| -> Option<TxOut> {
        if let Some(c) = node.iter().find(|c| c.outpoint == *op) {
            return Some(c.txout.clone());
        }
        if !node_agrees {
            return None;
        }
        let i = psbt
            .unsigned_tx
            .input
            .iter()
            .position(|t| t.previous_output == *op)?;
        let out = psbt.inputs.get(i)?.witness_utxo.clone()?;
        reported = reported.checked_add(out.value)?;
        (reported <= Amount::MAX_MONEY).then_some(out)
    };
    if let Ok(checked) = check_spend(&psbt, &expect, lookup) {
        let tx = &psbt.unsigned_tx;
        assert_eq!(checked.txid, tx.compute_txid());
        assert_eq!(checked.sighashes, sighashes(&psbt, wallet).unwrap());
        assert_eq!(checked.sighashes.len(), tx.input.len());
        assert!(checked.fee <= expect.caps.max_fee);
        let paid: Vec<_> = tx.output.iter().filter(|o| o.script_pubkey == to).collect();
        assert!(!paid.is_empty() && paid[0].value == expect.amount);
        let own = wallet.script_pubkey();
        assert!(
            tx.output
                .iter()
                .all(|o| o.script_pubkey == to || o.script_pubkey == own)
        );
        let total_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
        let total_in: u64 = psbt
            .inputs
            .iter()
            .map(|i| i.witness_utxo.as_ref().unwrap().value.to_sat())
            .sum();
        assert_eq!(total_in - total_out, checked.fee.to_sat());
        if !node_agrees {
            for t in &tx.input {
                assert!(node.iter().any(|c| c.outpoint == t.previous_output));
            }
        }
    }
}

fn check_address(network: UtxoNetwork, text: &str) {
    if let Ok(script) = network.script_of(text) {
        // An address that reads as a script writes back as one that reads as that script.
        if let Ok(shown) = network.address(&script) {
            assert_eq!(
                network.script_of(&shown).unwrap(),
                script,
                "{text:?} → {shown:?}"
            );
        }
    }
}

/// The PSBT of a UTXO spend: `Psbt::deserialize`, `spent_outputs`, `sighashes` and
/// `check_spend` (what a module runs before it signs any input); and `UtxoNetwork::script_of`
/// on the deposit addresses an exchange answers.
#[test]
fn utxo_spend() {
    check!()
        .with_type::<PsbtInput>()
        .with_iterations(CASES)
        .for_each(|input| match input {
            PsbtInput::Raw {
                wallet,
                node_agrees,
                bytes,
            } => check_psbt(usize::from(*wallet), *node_agrees, bytes),
            PsbtInput::Mutated {
                seed,
                node_agrees,
                edits,
            } => {
                let n = usize::from(*seed) % SPENDS.len();
                check_psbt(n / 2, *node_agrees, &apply(&SPENDS[n], edits));
            }
            PsbtInput::Address { network, text } => {
                check_address(UtxoNetwork::ALL[usize::from(*network) % 5], text)
            }
            PsbtInput::Mangled {
                network,
                seed,
                edits,
            } => {
                let net = UtxoNetwork::ALL[usize::from(*network) % 5];
                let w = &WALLETS[usize::from(*seed) % WALLETS.len()];
                let mut candidates = vec![net.address(&w.script_pubkey()).unwrap()];
                let p2pkh = ScriptBuf::new_p2pkh(
                    &concord_chain::utxo::bitcoin::PubkeyHash::from_byte_array([7; 20]),
                );
                candidates.push(net.address(&p2pkh).unwrap());
                let base = &candidates[usize::from(*seed / 3) % candidates.len()];
                let text = String::from_utf8_lossy(&apply(base.as_bytes(), edits)).into_owned();
                check_address(net, &text);
            }
        });
}

#[test]
fn seeds_pass_the_module_check() {
    for (n, bytes) in SPENDS.iter().enumerate() {
        let psbt = Psbt::deserialize(bytes).unwrap();
        let wallet = &WALLETS[n / 2];
        let node = coins(wallet);
        let to = destination();
        let expect = SpendExpectation {
            network: NET,
            wallet,
            to: &to,
            amount: Amount::from_sat(if n % 2 == 0 { AMOUNT } else { 150_000 }),
            caps: FeeCap {
                max_fee_rate: FeeRate::from_sat_per_vb(50).unwrap(),
                max_fee: Amount::from_sat(50_000),
            },
        };
        check_spend(&psbt, &expect, |op| {
            node.iter()
                .find(|c| c.outpoint == *op)
                .map(|c| c.txout.clone())
        })
        .unwrap();
    }
}
