//! The UTXO adapter against the real judges: spends from P2WPKH (threshold ECDSA, DKLs23),
//! P2TR (FROST Taproot) and P2WSH 2-of-3 (each module's own key) wallets, signed by the
//! project's engines, accepted and mined by `litecoind -regtest`; every input also verified by
//! Bitcoin Core's own script interpreter (`bitcoinconsensus`, Taproot included), on Litecoin
//! and on Bitcoin regtest; and a module's checks refusing what the PSBT must not carry.
//!
//! Keys here are made for the test run and worth nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::BTreeMap;

use concord_chain::litecoind::{LocalLitecoin, UtxoNode};
use concord_chain::utxo::bitcoin::hashes::Hash;
use concord_chain::utxo::bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use concord_chain::utxo::bitcoin::{
    self, Amount, CompressedPublicKey, FeeRate, OutPoint, ScriptBuf, Transaction, TxOut, Txid,
};
use concord_chain::utxo::{
    FeeCap, InputSignature, SpendExpectation, SpendRequest, Utxo, UtxoNetwork, WalletScript,
    build_spend, check_spend, finalize, spent_outputs,
};
use concord_tss::local::LocalNetwork;
use concord_tss::{EcdsaEngine, KeyShare, Scheme, SessionId, Signature, Threshold};

// ---------------------------------------------------------------------------------------
// Signers: a 2-of-3 group of the project's engines, or three modules' own keys.

struct Group {
    shares: Vec<KeyShare>,
}

impl Group {
    async fn new(scheme: Scheme, label: &str) -> Group {
        let threshold = Threshold::new(2, 3).unwrap();
        let session = SessionId::derive("test-utxo-dkg", label.as_bytes());
        let eps = LocalNetwork::connect(&[0, 1, 2]);
        let shares = futures::future::join_all(eps.into_iter().map(|ep| async move {
            concord_tss::dkg(
                scheme,
                EcdsaEngine::Dkls23,
                session,
                ep.index,
                threshold,
                None,
                ep.incoming,
                ep.outgoing,
                &mut rand::rngs::OsRng,
            )
            .await
            .unwrap()
        }))
        .await;
        Group { shares }
    }

    fn public_key(&self) -> Vec<u8> {
        self.shares[0].public_key()
    }

    /// Signers 0 and 2 sign `digest`.
    async fn sign(&self, digest: &[u8; 32]) -> Signature {
        let signers = [0u16, 2];
        let session = SessionId::derive("test-utxo-sign", digest);
        let eps = LocalNetwork::connect(&signers);
        let sigs = futures::future::join_all(eps.into_iter().map(|ep| {
            let share = &self.shares[usize::from(ep.index)];
            async move {
                concord_tss::sign(
                    share,
                    session,
                    &signers,
                    digest,
                    ep.incoming,
                    ep.outgoing,
                    &mut rand::rngs::OsRng,
                )
                .await
                .unwrap()
            }
        }))
        .await;
        sigs.into_iter().next().unwrap()
    }
}

fn module_keys() -> Vec<SecretKey> {
    (1u8..=3)
        .map(|i| SecretKey::from_slice(&[i; 32]).unwrap())
        .collect()
}

fn compressed(k: &SecretKey) -> CompressedPublicKey {
    CompressedPublicKey(k.public_key(&Secp256k1::new()))
}

fn ecdsa_by(k: &SecretKey, digest: &[u8; 32]) -> Vec<u8> {
    Secp256k1::new()
        .sign_ecdsa(&Message::from_digest(*digest), k)
        .serialize_compact()
        .to_vec()
}

enum Wallet {
    Threshold(WalletScript, Group),
    Multisig(WalletScript, Vec<SecretKey>),
}

impl Wallet {
    async fn p2wpkh() -> Wallet {
        let g = Group::new(Scheme::EcdsaSecp256k1, "p2wpkh").await;
        Wallet::Threshold(WalletScript::p2wpkh(&g.public_key()).unwrap(), g)
    }
    async fn p2tr() -> Wallet {
        let g = Group::new(Scheme::SchnorrTaproot, "p2tr").await;
        Wallet::Threshold(WalletScript::p2tr(&g.public_key()).unwrap(), g)
    }
    fn p2wsh() -> Wallet {
        let keys = module_keys();
        let publics: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| compressed(k).to_bytes().to_vec())
            .collect();
        Wallet::Multisig(WalletScript::multisig(2, &publics).unwrap(), keys)
    }
    fn script(&self) -> &WalletScript {
        match self {
            Wallet::Threshold(s, _) | Wallet::Multisig(s, _) => s,
        }
    }

    /// Each input signed: by the threshold group, or by modules 1 and 3 with their own keys.
    async fn sign(&self, digests: &[[u8; 32]]) -> Vec<InputSignature> {
        let mut out = Vec::new();
        for d in digests {
            out.push(match self {
                Wallet::Threshold(_, g) => match g.sign(d).await {
                    Signature::Ecdsa(s) => InputSignature::Ecdsa(s.to_rs_bytes().to_vec()),
                    Signature::Taproot(s) => InputSignature::Schnorr(s),
                    Signature::Ed25519(_) | Signature::EcdsaP256(_) => unreachable!(),
                },
                Wallet::Multisig(_, keys) => InputSignature::Multisig(
                    [&keys[0], &keys[2]]
                        .into_iter()
                        .map(|k| (compressed(k), ecdsa_by(k, d)))
                        .collect(),
                ),
            });
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The independent verifier: Bitcoin Core's script interpreter.

fn core_verify(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), String> {
    let bytes = bitcoin::consensus::encode::serialize(tx);
    let scripts: Vec<Vec<u8>> = prevouts
        .iter()
        .map(|p| p.script_pubkey.to_bytes())
        .collect();
    let utxos: Vec<bitcoinconsensus::Utxo> = prevouts
        .iter()
        .zip(&scripts)
        .map(|(p, s)| bitcoinconsensus::Utxo {
            script_pubkey: s.as_ptr(),
            script_pubkey_len: s.len() as u32,
            value: p.value.to_sat() as i64,
        })
        .collect();
    for i in 0..tx.input.len() {
        bitcoinconsensus::verify(
            &scripts[i],
            prevouts[i].value.to_sat(),
            &bytes,
            Some(&utxos),
            i,
        )
        .map_err(|e| format!("input {i}: {e:?}"))?;
    }
    Ok(())
}

fn destination() -> ScriptBuf {
    let k = SecretKey::from_slice(&[0x42; 32]).unwrap();
    ScriptBuf::new_p2wpkh(&compressed(&k).wpubkey_hash())
}

const CAPS: FeeCap = FeeCap {
    max_fee_rate: FeeRate::from_sat_per_kwu(25 * 250),
    max_fee: Amount::from_sat(100_000),
};

fn expectation<'a>(
    network: UtxoNetwork,
    wallet: &'a WalletScript,
    to: &'a ScriptBuf,
    amount: Amount,
) -> SpendExpectation<'a> {
    SpendExpectation {
        network,
        wallet,
        to,
        amount,
        caps: CAPS,
    }
}

async fn node_view(node: &UtxoNode, psbt: &bitcoin::Psbt) -> BTreeMap<OutPoint, TxOut> {
    let mut view = BTreeMap::new();
    for i in &psbt.unsigned_tx.input {
        if let Some(o) = node.unspent_output(&i.previous_output).await.unwrap() {
            view.insert(i.previous_output, o.utxo.txout);
        }
    }
    view
}

// ---------------------------------------------------------------------------------------

#[test]
fn addresses_match_the_bips_and_rust_bitcoin() {
    // BIP-173 and BIP-350 vectors.
    let n = UtxoNetwork::Bitcoin;
    let p2wpkh = n
        .script_of("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4")
        .unwrap();
    assert_eq!(
        p2wpkh.to_hex_string(),
        "0014751e76e8199196d454941c45d1b3a323f1433bd6"
    );
    assert_eq!(
        n.address(&p2wpkh).unwrap(),
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    );
    let p2tr = n
        .script_of("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0")
        .unwrap();
    assert_eq!(
        p2tr.to_hex_string(),
        "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    );
    // A Litecoin address is not a Bitcoin one, nor the other way round.
    assert!(
        UtxoNetwork::Litecoin
            .script_of("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")
            .is_err()
    );
    assert!(
        n.script_of(&UtxoNetwork::Litecoin.address(&p2wpkh).unwrap())
            .is_err()
    );
    // Every wallet kind on every Bitcoin network: the same text as rust-bitcoin's own
    // `Address`, and back.
    let publics: Vec<Vec<u8>> = module_keys()
        .iter()
        .map(|k| compressed(k).to_bytes().to_vec())
        .collect();
    let xonly = compressed(&module_keys()[0])
        .0
        .x_only_public_key()
        .0
        .serialize();
    for w in [
        WalletScript::p2wpkh(&publics[0]).unwrap(),
        WalletScript::p2tr(&xonly).unwrap(),
        WalletScript::multisig(2, &publics).unwrap(),
    ] {
        for (net, btc) in [
            (UtxoNetwork::Bitcoin, bitcoin::Network::Bitcoin),
            (UtxoNetwork::BitcoinTestnet, bitcoin::Network::Testnet),
            (UtxoNetwork::BitcoinRegtest, bitcoin::Network::Regtest),
        ] {
            let spk = w.script_pubkey();
            let theirs = bitcoin::Address::from_script(&spk, btc)
                .unwrap()
                .to_string();
            assert_eq!(net.address(&spk).unwrap(), theirs, "{} on {net}", w.kind());
            assert_eq!(net.script_of(&theirs).unwrap(), spk);
        }
    }
    // Base58: P2PKH and P2SH on Bitcoin main (rust-bitcoin), and Litecoin's own P2SH
    // prefix, with Bitcoin's still read.
    let pkh = ScriptBuf::new_p2pkh(&compressed(&module_keys()[0]).pubkey_hash());
    let sh = ScriptBuf::new_p2sh(
        &WalletScript::multisig(2, &publics)
            .unwrap()
            .witness_script()
            .unwrap()
            .script_hash(),
    );
    for s in [&pkh, &sh] {
        let theirs = bitcoin::Address::from_script(s, bitcoin::Network::Bitcoin)
            .unwrap()
            .to_string();
        assert_eq!(UtxoNetwork::Bitcoin.address(s).unwrap(), theirs);
    }
    let ltc_sh = UtxoNetwork::Litecoin.address(&sh).unwrap();
    assert!(ltc_sh.starts_with('M'), "{ltc_sh}");
    assert_eq!(UtxoNetwork::Litecoin.script_of(&ltc_sh).unwrap(), sh);
    let btc_sh = UtxoNetwork::Bitcoin.address(&sh).unwrap();
    assert_eq!(UtxoNetwork::Litecoin.script_of(&btc_sh).unwrap(), sh);
    assert!(
        UtxoNetwork::Litecoin
            .address(&pkh)
            .unwrap()
            .starts_with('L')
    );
}

#[test]
fn multisig_keys_are_sorted_and_checked() {
    let publics: Vec<Vec<u8>> = module_keys()
        .iter()
        .map(|k| compressed(k).to_bytes().to_vec())
        .collect();
    let mut reversed = publics.clone();
    reversed.reverse();
    assert_eq!(
        WalletScript::multisig(2, &publics).unwrap().script_pubkey(),
        WalletScript::multisig(2, &reversed)
            .unwrap()
            .script_pubkey(),
        "BIP-67: the order given does not matter"
    );
    assert!(WalletScript::multisig(0, &publics).is_err());
    assert!(WalletScript::multisig(4, &publics).is_err());
    let twice = vec![publics[0].clone(), publics[0].clone()];
    assert!(
        WalletScript::multisig(1, &twice)
            .unwrap_err()
            .0
            .contains("twice")
    );
}

/// P2WPKH (DKLs23), P2TR (FROST) and P2WSH 2-of-3 spends on litecoind regtest: built,
/// checked against the node, signed, verified by Core's interpreter, accepted, broadcast
/// twice (same txid), mined; the destination holds the amount and the change is the
/// wallet's.
#[tokio::test]
async fn threshold_and_multisig_spends_are_accepted_and_mined_by_litecoind() {
    let dir = tempfile::tempdir().unwrap();
    let ltc = LocalLitecoin::start(dir.path()).await.unwrap();
    let node = ltc.node();
    let net = UtxoNetwork::LitecoinRegtest;
    let wallets = [
        Wallet::p2wpkh().await,
        Wallet::p2tr().await,
        Wallet::p2wsh(),
    ];
    // The node itself parses every address to the same script.
    for w in &wallets {
        let spk = w.script().script_pubkey();
        let v = node
            .call(
                "validateaddress",
                serde_json::json!([net.address(&spk).unwrap()]),
            )
            .await
            .unwrap();
        assert_eq!(v["isvalid"], true, "{}", w.script().kind());
        assert_eq!(v["scriptPubKey"], spk.to_hex_string());
    }
    for w in &wallets {
        node.mine_to(2, &w.script().script_pubkey()).await.unwrap();
    }
    node.mine_to(100, &destination()).await.unwrap();
    let to = destination();
    for w in &wallets {
        let own = w.script().script_pubkey();
        let available = node.spendable(&own, 1).await.unwrap();
        assert_eq!(
            available.len(),
            2,
            "{}: both coinbases matured",
            w.script().kind()
        );
        // More than one coinbase holds: two inputs, change back.
        let amount = available[0].txout.value + Amount::from_sat(123_456_789);
        let psbt = build_spend(&SpendRequest {
            network: net,
            wallet: w.script(),
            available: &available,
            to: to.clone(),
            amount,
            fee_rate: FeeRate::from_sat_per_vb(5).unwrap(),
        })
        .unwrap();
        assert_eq!(psbt.unsigned_tx.input.len(), 2);
        let view = node_view(node, &psbt).await;
        let checked = check_spend(&psbt, &expectation(net, w.script(), &to, amount), |o| {
            view.get(o).cloned()
        })
        .unwrap();
        assert!(checked.change > Amount::ZERO);
        let sigs = w.sign(&checked.sighashes).await;
        let tx = finalize(&psbt, w.script(), &sigs).unwrap();
        core_verify(&tx, &spent_outputs(&psbt).unwrap()).unwrap();
        assert_eq!(
            node.test_accept(&tx).await.unwrap(),
            Ok(()),
            "{}",
            w.script().kind()
        );
        let txid = node.broadcast(&tx).await.unwrap();
        assert_eq!(txid, checked.txid);
        assert_eq!(
            node.broadcast(&tx).await.unwrap(),
            txid,
            "idempotent in the mempool"
        );
        assert_eq!(node.confirmations(&txid).await.unwrap(), Some(0));
        node.mine_to(1, &to).await.unwrap();
        assert_eq!(node.confirmations(&txid).await.unwrap(), Some(1));
        assert_eq!(
            node.broadcast(&tx).await.unwrap(),
            txid,
            "idempotent once mined"
        );
        let paid = node
            .unspent_output(&OutPoint { txid, vout: 0 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(paid.utxo.txout.value, amount);
        assert_eq!(paid.utxo.txout.script_pubkey, to);
        let change = node
            .unspent_output(&OutPoint { txid, vout: 1 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(change.utxo.txout.script_pubkey, own);
        assert_eq!(change.utxo.txout.value, checked.change);
    }
}

/// One module's key alone cannot spend a 2-of-3 multisig output: the assembler refuses to
/// finalize, and a witness forged with one signature is refused by the node and by Core's
/// interpreter; a key outside the multisig is refused too.
#[tokio::test]
async fn a_stolen_module_key_cannot_spend_a_multisig_output() {
    let dir = tempfile::tempdir().unwrap();
    let ltc = LocalLitecoin::start(dir.path()).await.unwrap();
    let node = ltc.node();
    let net = UtxoNetwork::LitecoinRegtest;
    let w = Wallet::p2wsh();
    let Wallet::Multisig(script, keys) = &w else {
        unreachable!()
    };
    node.mine_to(1, &script.script_pubkey()).await.unwrap();
    node.mine_to(100, &destination()).await.unwrap();
    let available = node.spendable(&script.script_pubkey(), 1).await.unwrap();
    let psbt = build_spend(&SpendRequest {
        network: net,
        wallet: script,
        available: &available,
        to: destination(),
        amount: Amount::from_sat(100_000_000),
        fee_rate: FeeRate::from_sat_per_vb(5).unwrap(),
    })
    .unwrap();
    let digest = concord_chain::utxo::sighashes(&psbt, script).unwrap()[0];
    let one =
        InputSignature::Multisig([(compressed(&keys[1]), ecdsa_by(&keys[1], &digest))].into());
    let e = finalize(&psbt, script, std::slice::from_ref(&one)).unwrap_err();
    assert!(e.0.contains("1 signatures of the 2"), "{e}");
    let outsider = SecretKey::from_slice(&[9; 32]).unwrap();
    let stray = InputSignature::Multisig(
        [&keys[1], &outsider]
            .into_iter()
            .map(|k| (compressed(k), ecdsa_by(k, &digest)))
            .collect(),
    );
    assert!(
        finalize(&psbt, script, &[stray])
            .unwrap_err()
            .0
            .contains("not a key of this multisig")
    );
    // The thief assembles the witness by hand: dummy, their one signature, the script.
    let mut tx = psbt.unsigned_tx.clone();
    let sig = bitcoin::ecdsa::Signature::sighash_all(
        bitcoin::secp256k1::ecdsa::Signature::from_compact(&ecdsa_by(&keys[1], &digest)).unwrap(),
    );
    let mut witness = bitcoin::Witness::new();
    witness.push([]);
    witness.push(sig.serialize());
    witness.push(script.witness_script().unwrap().as_bytes());
    tx.input[0].witness = witness;
    assert!(core_verify(&tx, &spent_outputs(&psbt).unwrap()).is_err());
    let refused = node.test_accept(&tx).await.unwrap().unwrap_err();
    assert!(refused.contains("script-verify"), "{refused}");
}

/// What a module refuses in a PSBT, from its own view of the chain.
#[test]
fn a_module_refuses_a_psbt_that_does_more_than_the_transfer() {
    let net = UtxoNetwork::LitecoinRegtest;
    let key = SecretKey::from_slice(&[7; 32]).unwrap();
    let wallet = WalletScript::p2wpkh(&compressed(&key).to_bytes()).unwrap();
    let own = wallet.script_pubkey();
    let coin = |n: u8, sats: u64| Utxo {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([n; 32]),
            vout: 0,
        },
        txout: TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: own.clone(),
        },
    };
    let coins = vec![coin(1, 300_000_000), coin(2, 200_000_000)];
    let foreign = Utxo {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([3; 32]),
            vout: 1,
        },
        txout: TxOut {
            value: Amount::from_sat(500_000_000),
            script_pubkey: destination(),
        },
    };
    let mut view: BTreeMap<OutPoint, TxOut> = coins
        .iter()
        .map(|u| (u.outpoint, u.txout.clone()))
        .collect();
    view.insert(foreign.outpoint, foreign.txout.clone());
    let to = destination();
    let amount = Amount::from_sat(350_000_000);
    let spend = |fee_rate: u64| {
        build_spend(&SpendRequest {
            network: net,
            wallet: &wallet,
            available: &coins,
            to: to.clone(),
            amount,
            fee_rate: FeeRate::from_sat_per_vb(fee_rate).unwrap(),
        })
        .unwrap()
    };
    let expect = expectation(net, &wallet, &to, amount);
    let check = |p: &bitcoin::Psbt| {
        check_spend(p, &expect, |o| view.get(o).cloned())
            .map(|_| ())
            .map_err(|e| e.0)
    };
    check(&spend(10)).unwrap();
    let attacker = ScriptBuf::new_p2wpkh(
        &compressed(&SecretKey::from_slice(&[0x66; 32]).unwrap()).wpubkey_hash(),
    );

    // An extra output.
    let mut p = spend(10);
    p.unsigned_tx.output.push(TxOut {
        value: Amount::from_sat(1_000_000),
        script_pubkey: attacker.clone(),
    });
    p.outputs.push(Default::default());
    assert!(
        check(&p)
            .unwrap_err()
            .contains("neither the destination nor change")
    );

    // Change to an address not the wallet's.
    let mut p = spend(10);
    p.unsigned_tx.output[1].script_pubkey = attacker.clone();
    assert!(
        check(&p)
            .unwrap_err()
            .contains("neither the destination nor change")
    );

    // A foreign input (an output the node knows, not the wallet's), and one the node does
    // not know as unspent.
    let mut p = spend(10);
    p.unsigned_tx.input.push(bitcoin::TxIn {
        previous_output: foreign.outpoint,
        sequence: bitcoin::Sequence::ENABLE_LOCKTIME_NO_RBF,
        ..Default::default()
    });
    p.inputs.push(bitcoin::psbt::Input {
        witness_utxo: Some(foreign.txout.clone()),
        ..Default::default()
    });
    assert!(check(&p).unwrap_err().contains("not this wallet's"));
    let mut p = spend(10);
    p.unsigned_tx.input[0].previous_output.vout = 7;
    assert!(check(&p).unwrap_err().contains("does not know as unspent"));

    // The PSBT lies about what an input holds (a hidden fee).
    let mut p = spend(10);
    p.inputs[0].witness_utxo.as_mut().unwrap().value = Amount::from_sat(1);
    assert!(
        check(&p)
            .unwrap_err()
            .contains("not the one this module's node reports")
    );

    // A fee over the cap, by rate and by amount.
    assert!(check(&spend(500)).unwrap_err().contains("fee"));

    // Another amount to the destination; no output to it at all.
    let mut p = spend(10);
    p.unsigned_tx.output[0].value = Amount::from_sat(349_000_000);
    p.unsigned_tx.output[1].value += Amount::from_sat(1_000_000);
    assert!(check(&p).unwrap_err().contains("paid"));
    let mut p = spend(10);
    p.unsigned_tx.output[0].script_pubkey = attacker;
    assert!(check(&p).is_err());

    // Two change outputs (the second worth nothing): only one change output is the wallet's.
    let mut p = spend(10);
    p.unsigned_tx.output[1].value -= Amount::from_sat(1);
    p.unsigned_tx.output.insert(
        1,
        TxOut {
            value: Amount::ZERO,
            script_pubkey: own.clone(),
        },
    );
    p.outputs.push(Default::default());
    assert!(
        check(&p)
            .unwrap_err()
            .contains("neither the destination nor change")
    );

    // Fields the builder never sets: a sighash type other than the default, unknown keys.
    let mut p = spend(10);
    p.inputs[0].sighash_type = Some(bitcoin::EcdsaSighashType::None.into());
    assert!(
        check(&p)
            .unwrap_err()
            .contains("fields this system does not set")
    );
    let mut p = spend(10);
    p.unsigned_tx.lock_time = bitcoin::absolute::LockTime::from_height(500_000).unwrap();
    assert!(check(&p).is_err());
}

/// The same three spends built for Bitcoin regtest pass Bitcoin Core's interpreter; any
/// tampered signature fails it.
#[tokio::test]
async fn bitcoin_spends_pass_core_s_interpreter_and_tampered_ones_fail() {
    let net = UtxoNetwork::BitcoinRegtest;
    let wallets = [
        Wallet::p2wpkh().await,
        Wallet::p2tr().await,
        Wallet::p2wsh(),
    ];
    for w in &wallets {
        let own = w.script().script_pubkey();
        assert!(net.address(&own).unwrap().starts_with("bcrt1"));
        // A funding transaction of the test's own; only its outputs matter to the checks.
        let funding = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![Default::default()],
            output: vec![
                TxOut {
                    value: Amount::from_sat(70_000),
                    script_pubkey: own.clone(),
                },
                TxOut {
                    value: Amount::from_sat(90_000),
                    script_pubkey: own.clone(),
                },
            ],
        };
        let txid = funding.compute_txid();
        let coins: Vec<Utxo> = funding
            .output
            .iter()
            .enumerate()
            .map(|(i, o)| Utxo {
                outpoint: OutPoint {
                    txid,
                    vout: i as u32,
                },
                txout: o.clone(),
            })
            .collect();
        let to = destination();
        let amount = Amount::from_sat(120_000);
        let psbt = build_spend(&SpendRequest {
            network: net,
            wallet: w.script(),
            available: &coins,
            to: to.clone(),
            amount,
            fee_rate: FeeRate::from_sat_per_vb(2).unwrap(),
        })
        .unwrap();
        let view: BTreeMap<_, _> = coins
            .iter()
            .map(|u| (u.outpoint, u.txout.clone()))
            .collect();
        let checked = check_spend(&psbt, &expectation(net, w.script(), &to, amount), |o| {
            view.get(o).cloned()
        })
        .unwrap();
        let sigs = w.sign(&checked.sighashes).await;
        let tx = finalize(&psbt, w.script(), &sigs).unwrap();
        let prevouts = spent_outputs(&psbt).unwrap();
        core_verify(&tx, &prevouts).unwrap();
        // Flip one bit of the first input's signature.
        let mut bad = tx.clone();
        let mut items: Vec<Vec<u8>> = bad.input[0].witness.iter().map(|i| i.to_vec()).collect();
        let at = if matches!(w.script(), WalletScript::P2wsh { .. }) {
            1
        } else {
            0
        };
        items[at][10] ^= 1;
        bad.input[0].witness = bitcoin::Witness::from_slice(&items);
        assert!(
            core_verify(&bad, &prevouts).is_err(),
            "{}: a tampered signature verifies",
            w.script().kind()
        );
        // And the assembler refuses a signature over another digest.
        let mut wrong = sigs.clone();
        wrong.swap(0, 1);
        assert!(finalize(&psbt, w.script(), &wrong).is_err());
    }
}
