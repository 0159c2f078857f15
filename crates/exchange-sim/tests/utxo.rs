//! Litecoin on the simulator, against a real `litecoind -regtest`: deposits to an account's
//! `rltc1…` address are credited after the configured confirmations under Binance's coin and
//! network code `LTC`; withdrawals are paid from the hot wallet's coins and arrive on chain;
//! addresses of other networks are refused.
//!
//! Keys here are made for the test run and worth nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use concord_chain::litecoind::LocalLitecoin;
use concord_chain::utxo::bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use concord_chain::utxo::bitcoin::{Amount, CompressedPublicKey, FeeRate, ScriptBuf, Txid};
use concord_chain::utxo::{
    InputSignature, SpendRequest, UtxoNetwork, WalletScript, build_spend, finalize, sighashes,
};
use concord_exchange_sim::{CoinConfig, Secret, UtxoChainConfig};
use serde_json::Value;

const HOT_KEY: [u8; 32] = [0x31; 32];

fn wallet(seed: u8) -> (SecretKey, WalletScript) {
    let key = SecretKey::from_slice(&[seed; 32]).unwrap();
    let public = CompressedPublicKey(key.public_key(&Secp256k1::new()));
    (key, WalletScript::p2wpkh(&public.to_bytes()).unwrap())
}

/// A plain single-key P2WPKH payment (the depositor's own wallet).
async fn pay(
    node: &concord_chain::litecoind::UtxoNode,
    from: u8,
    to: ScriptBuf,
    amount: Amount,
) -> Txid {
    let (key, w) = wallet(from);
    let available = node.spendable(&w.script_pubkey(), 1).await.unwrap();
    let psbt = build_spend(&SpendRequest {
        network: UtxoNetwork::LitecoinRegtest,
        wallet: &w,
        available: &available,
        to,
        amount,
        fee_rate: FeeRate::from_sat_per_vb(5).unwrap(),
    })
    .unwrap();
    let secp = Secp256k1::new();
    let sigs: Vec<_> = sighashes(&psbt, &w)
        .unwrap()
        .into_iter()
        .map(|d| {
            InputSignature::Ecdsa(
                secp.sign_ecdsa(&Message::from_digest(d), &key)
                    .serialize_compact()
                    .to_vec(),
            )
        })
        .collect();
    node.broadcast(&finalize(&psbt, &w, &sigs).unwrap())
        .await
        .unwrap()
}

async fn history(env: &Env, path: &str, coin: &str) -> Vec<Value> {
    let (status, body) = env.get(path, &Key::hmac_rw(), &[("coin", coin)]).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

#[tokio::test]
async fn ltc_deposits_are_credited_after_confirmations_and_withdrawals_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let ltc = LocalLitecoin::start(dir.path()).await.unwrap();
    let node = ltc.node().clone();
    let net = UtxoNetwork::LitecoinRegtest;
    let (_, hot) = wallet(HOT_KEY[0]);
    let (_, depositor) = wallet(0x32);
    let burn = wallet(0x39).1.script_pubkey();
    node.mine_to(2, &hot.script_pubkey()).await.unwrap();
    node.mine_to(1, &depositor.script_pubkey()).await.unwrap();
    node.mine_to(100, &burn).await.unwrap();

    let anvil = spawn_anvil();
    let mut config = base_config(&anvil, None);
    config.coins.push(CoinConfig {
        coin: "LTC".into(),
        network: "LTC".into(),
        decimals: 8,
        contract: None,
        withdraw_fee: "0.001".into(),
        withdraw_min: "0.01".into(),
    });
    let (user, password) = ltc.rpc_credentials();
    config.utxo = Some(UtxoChainConfig {
        rpc_url: node.url().to_owned(),
        rpc_user: user.into(),
        rpc_password: Secret::new(password),
        chain: "ltc-regtest".into(),
        network: "LTC".into(),
        hot_wallet_key: Secret::new(hex::encode(HOT_KEY)),
        fee_rate_sat_vb: 10,
    });
    let env = Env::start(anvil, config).await;
    let (_, health) = env.get_raw("/sim/health", None, "").await;
    assert_eq!(
        health["utxo"]["hotWallet"],
        net.address(&hot.script_pubkey()).unwrap()
    );

    // The deposit address is Litecoin's, and the node reads it.
    let (status, body) = env
        .get(
            "/sapi/v1/capital/deposit/address",
            &Key::hmac_rw(),
            &[("coin", "LTC"), ("network", "LTC")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let address = body["address"].as_str().unwrap().to_owned();
    assert!(address.starts_with("rltc1q"), "{address}");
    let v = node
        .call("validateaddress", serde_json::json!([address]))
        .await
        .unwrap();
    assert_eq!(v["isvalid"], true);

    // 2.5 LTC deposited: seen at one confirmation, credited at three (the configuration).
    let txid = pay(
        &node,
        0x32,
        net.script_of(&address).unwrap(),
        Amount::from_sat(250_000_000),
    )
    .await;
    node.mine_to(1, &burn).await.unwrap();
    let row = wait_for("the deposit to be seen", || async {
        history(&env, "/sapi/v1/capital/deposit/hisrec", "LTC")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(row["txId"], txid.to_string());
    assert_eq!(row["network"], "LTC");
    assert_eq!(row["address"], address);
    assert_eq!(row["status"], 0, "{row}");
    assert_eq!(
        env.free(&Key::hmac_rw(), "LTC")
            .await
            .parse::<f64>()
            .unwrap_or(0.0),
        0.0
    );
    node.mine_to(2, &burn).await.unwrap();
    wait_for("the deposit to be credited", || async {
        let rows = history(&env, "/sapi/v1/capital/deposit/hisrec", "LTC").await;
        (rows[0]["status"] == 1).then_some(())
    })
    .await;
    assert_eq!(env.free(&Key::hmac_rw(), "LTC").await, "2.50000000");
    // A block reward paid to the deposit address is not a deposit.
    node.mine_to(1, &net.script_of(&address).unwrap())
        .await
        .unwrap();
    node.mine_to(3, &burn).await.unwrap();
    wait_for("the watcher to pass the reward's block", || async {
        let (_, h) = env.get_raw("/sim/health", None, "").await;
        (h["utxo"]["nextBlock"].as_u64() > Some(node.block_count().await.unwrap())).then_some(())
    })
    .await;
    assert_eq!(
        history(&env, "/sapi/v1/capital/deposit/hisrec", "LTC")
            .await
            .len(),
        1
    );
    assert_eq!(env.free(&Key::hmac_rw(), "LTC").await, "2.50000000");

    // Addresses of other networks are refused on LTC, and an LTC address on ETH.
    let (_, outsider) = wallet(0x33);
    let to = net.address(&outsider.script_pubkey()).unwrap();
    let btc = UtxoNetwork::BitcoinRegtest
        .address(&outsider.script_pubkey())
        .unwrap();
    for (coin, network, addr) in [
        ("LTC", "LTC", "0x00000000000000000000000000000000000000aa"),
        ("LTC", "LTC", btc.as_str()),
        ("ETH", "ETH", to.as_str()),
    ] {
        let answer = env
            .post_body(
                "/sapi/v1/capital/withdraw/apply",
                &Key::hmac_rw(),
                &[
                    ("coin", coin),
                    ("network", network),
                    ("address", addr),
                    ("amount", "0.5"),
                ],
            )
            .await;
        assert_error(&answer, 400, -4033);
    }

    // 1.2 LTC withdrawn: paid from the hot wallet, completed once mined.
    let (status, body) = env
        .post_body(
            "/sapi/v1/capital/withdraw/apply",
            &Key::hmac_rw(),
            &[
                ("coin", "LTC"),
                ("network", "LTC"),
                ("address", &to),
                ("amount", "1.2"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = wait_for("the withdrawal to be sent", || async {
        history(&env, "/sapi/v1/capital/withdraw/history", "LTC")
            .await
            .into_iter()
            .next()
            .and_then(|w| w["txId"].as_str().map(str::to_owned))
    })
    .await;
    let sent: Txid = sent.parse().unwrap();
    let tx = node
        .transaction(&sent)
        .await
        .unwrap()
        .expect("the node knows the withdrawal");
    assert!(
        tx.output
            .iter()
            .any(|o| o.script_pubkey == outsider.script_pubkey()
                && o.value == Amount::from_sat(120_000_000))
    );
    node.mine_to(1, &burn).await.unwrap();
    let done = wait_for("the withdrawal to complete", || async {
        history(&env, "/sapi/v1/capital/withdraw/history", "LTC")
            .await
            .into_iter()
            .next()
            .filter(|w| w["status"] == 6)
    })
    .await;
    assert_eq!(done["address"], to);
    assert_eq!(env.free(&Key::hmac_rw(), "LTC").await, "1.29900000");
}
