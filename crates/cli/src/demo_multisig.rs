//! The demo's UTXO and native multisig part. Threshold wallets spend on Litecoin (regtest):
//! the trader's ECDSA wallet as P2WPKH and a FROST Taproot wallet as P2TR, one signing run
//! per input. Then the patent's second signing mode, each module signing with its own
//! environment-specific key: a 2-of-3 P2WSH wallet on Litecoin and a 2-of-3 Safe on the EVM
//! chain, defined from the modules' published keys, named by the policy, funded, depositing to
//! the exchange; the forged-deposit-address attack is run again in multisig mode.

use anyhow::{Context, Result};
use concord_chain::utxo::bitcoin::ScriptBuf;
use concord_chain::utxo::{UtxoNetwork, WalletScript};
use concord_chain::{Address, Asset};
use concord_wire::authority::AgreementRule;
use serde_json::{Value, json};

use crate::demo::{Demo, every_module_refused, transfer_summary};
use crate::devnet::{self, DevnetInfo};

/// The UTXO wallets the demo makes or extends.
pub(crate) struct MultisigWallets {
    /// The trader's threshold ECDSA wallet as P2WPKH: its id and address.
    pub(crate) p2wpkh: (String, String),
    /// A threshold FROST Taproot wallet as P2TR: its id and address.
    pub(crate) p2tr: (String, String),
    /// The P2WSH wallet's id and address.
    pub(crate) p2wsh: (String, String),
    /// The Safe wallet's id and the Safe.
    pub(crate) safe: (String, Address),
}

/// Every module's published info (identity, sealing key, its own multisig key, each signed
/// by the identity), as `concord module show --json` prints it.
pub(crate) fn module_infos(info: &DevnetInfo) -> Result<Vec<concord_module::PublicInfo>> {
    info.modules
        .iter()
        .map(|m| {
            let cfg = concord_module::Config::load(&m.dir.join("module.toml"))?;
            Ok(concord_module::open_state(&cfg)?.public_info())
        })
        .collect()
}

/// Mines `coins` blocks to `script` and then enough blocks for their rewards to mature (the
/// devnet's Litecoin faucet).
pub(crate) async fn fund_ltc(info: &DevnetInfo, scripts: &[ScriptBuf], coins: u64) -> Result<()> {
    let node = info
        .ltc
        .as_ref()
        .context("this devnet runs no Litecoin node (started with --no-utxo)")?;
    let client = node.client()?;
    let miner = ScriptBuf::from_hex(
        std::fs::read_to_string(info.dir.join("litecoind/miner.script"))?.trim(),
    )?;
    for script in scripts {
        client.mine_to(coins, script).await?;
    }
    client.mine_to(100, &miner).await?;
    Ok(())
}

/// Makes a FROST Taproot wallet by DKG in the demo's group, defines both multisig wallets
/// from the modules' keys (deploying the Safe), and has the admins name them in the next
/// policy with their limits, giving the trader's wallet (`trader_wallet`) an LTC limit too.
pub(crate) async fn create(d: &mut Demo, trader_wallet: &str) -> Result<MultisigWallets> {
    let network: UtxoNetwork = devnet::LTC_CHAIN.parse()?;
    let job = d
        .api
        .post(
            "/v1/wallets",
            &json!({"group": "desk", "scheme": "schnorr-taproot"}),
        )
        .await?;
    let taproot = d
        .api
        .wait_job(job["id"].as_str().unwrap_or_default(), true)
        .await?
        .result
        .unwrap_or_default();
    let taproot_id = taproot["id"].as_str().unwrap_or_default().to_owned();
    let p2tr = network.address(
        &WalletScript::p2tr(&hex::decode(
            taproot["public_key"].as_str().unwrap_or_default(),
        )?)?
        .script_pubkey(),
    )?;
    let trader = d.api.get(&format!("/v1/wallets/{trader_wallet}")).await?;
    let p2wpkh = network.address(
        &WalletScript::p2wpkh(&hex::decode(
            trader["public_key"].as_str().unwrap_or_default(),
        )?)?
        .script_pubkey(),
    )?;
    let infos = module_infos(&d.info)?;
    let deposit_to = vec!["binance".to_owned()];
    // The P2WSH wallet as an operator makes one: `concord wallets create --kind multisig`
    // from the modules' published info, proposed as the next policy version.
    let mut files = Vec::new();
    for i in &infos {
        let f = d.info.dir.join(format!("{}.info.json", i.id));
        std::fs::write(&f, serde_json::to_vec_pretty(i)?)?;
        files.push(f);
    }
    let (p2wsh, p2wsh_address, view) = crate::authority::propose_multisig(
        &d.api,
        &crate::client::MultisigArgs {
            chain: Some(devnet::LTC_CHAIN.into()),
            chain_id: None,
            safe: None,
            threshold: Some(2),
            modules: files,
            label: Some("ltc-vault".into()),
            deposit_to: deposit_to.clone(),
            limits: vec!["LTC:5:20".into()],
        },
    )
    .await?;
    for admin in ["admin-1", "admin-2"] {
        crate::authority::approve(
            &d.api,
            &view.hash,
            &devnet::principal_key(&d.info.keys_dir, admin)?,
        )
        .await?;
    }
    let adopted = crate::demo::policy_state(d, &view.hash, true).await?;
    d.record(
        &format!(
            "policy v{}: `concord wallets create --kind multisig --chain ltc-regtest --threshold 2` defines a 2-of-3 P2WSH wallet of the modules' own keys ({p2wsh_address}), each key signed by its module's identity; admins 1 and 2 sign it",
            view.version
        ),
        adopted["modules"]
            .as_array()
            .is_some_and(|l| !l.is_empty() && l.iter().all(|m| m["policy_hash"] == json!(view.hash))),
        json!({"wallet": p2wsh.wallet.to_string(), "address": p2wsh_address, "policy": view.hash}),
    );
    let owners = infos
        .iter()
        .map(|i| i.multisig_address.parse::<Address>())
        .collect::<Result<Vec<_>, _>>()?;
    let artifacts = concord_chain::safe::artifacts(|_| {})?;
    let safe = concord_chain::safe::deploy(
        &d.info.rpc_url,
        &devnet::key32(devnet::DEV_KEY_0)?,
        &artifacts,
        &owners,
        2,
    )
    .await?;
    let (safe_rule, _) = crate::authority::multisig_rule(
        &format!("evm-{}", d.info.chain_id),
        2,
        &infos,
        "safe-desk",
        deposit_to,
        Some(safe),
    )?;
    let p2wsh_id = p2wsh.wallet.to_string();
    let mut safe_json = serde_json::to_value(&safe_rule)?;
    safe_json["limits"] = json!([{"coin": "ETH", "per_transfer": "2", "per_day": "10"}]);
    let ltc_limit = json!({"coin": "LTC", "per_transfer": "5", "per_day": "20"});
    let view = d
        .amend_policy(["admin-1", "admin-2"], |doc| {
            if let Some(ws) = doc["wallets"].as_array_mut() {
                for w in ws.iter_mut() {
                    if w["wallet"] == json!(trader_wallet)
                        && let Some(limits) = w["limits"].as_array_mut()
                    {
                        limits.push(ltc_limit.clone());
                    }
                }
                ws.push(json!({"wallet": taproot_id, "label": "desk-taproot",
                    "purpose": {"kind": "trading", "deposit_to": ["binance"]},
                    "limits": [{"coin": "LTC", "per_transfer": "100", "per_day": "200"}]}));
                for w in ws.iter_mut() {
                    // The exchange's withdraw key may send LTC to the P2WSH wallet.
                    if w["purpose"]["kind"] == "exchange_credential" {
                        if let Some(to) = w["purpose"]["withdraw_to"].as_array_mut() {
                            to.push(json!("ltc-vault"));
                        }
                        if let Some(limits) = w["limits"].as_array_mut() {
                            limits
                                .push(json!({"coin": "LTC", "per_transfer": "5", "per_day": "20"}));
                        }
                    }
                }
                ws.push(safe_json);
            }
            if let Some(book) = doc["address_book"].as_array_mut() {
                book.push(
                    json!({"label": "ltc-vault", "target": {"kind": "wallet", "wallet": p2wsh_id}}),
                );
            }
        })
        .await?;
    d.record(
        &format!(
            "policy v{}: the trader's wallet may spend LTC (P2WPKH {p2wpkh}), a FROST Taproot wallet made by DKG (P2TR {p2tr}), a 2-of-3 Safe ({safe}) of the modules' own keys, and the exchange's withdraw key may send LTC to the P2WSH wallet (address book \"ltc-vault\")",
            view.version
        ),
        true,
        json!({"p2wpkh": p2wpkh, "p2tr": p2tr, "p2wsh": p2wsh.wallet.to_string(), "address": p2wsh_address, "safe_wallet": safe_rule.wallet.to_string(), "safe": safe.to_string(), "owners": owners}),
    );
    Ok(MultisigWallets {
        p2wpkh: (trader_wallet.to_owned(), p2wpkh),
        p2tr: (taproot_id, p2tr),
        p2wsh: (p2wsh.wallet.to_string(), p2wsh_address),
        safe: (safe_rule.wallet.to_string(), safe),
    })
}

/// The demo's part: wallets made and funded, deposits, and the attack in multisig mode.
pub(crate) async fn run(d: &mut Demo, trader_wallet: &str) -> Result<()> {
    if d.info.ltc.is_none() {
        d.say("(this devnet runs no Litecoin node: the UTXO and native multisig part is skipped)");
        return Ok(());
    }
    let w = create(d, trader_wallet).await?;
    let network: UtxoNetwork = devnet::LTC_CHAIN.parse()?;
    let scripts = [&w.p2wpkh.1, &w.p2tr.1, &w.p2wsh.1]
        .into_iter()
        .map(|a| network.script_of(a))
        .collect::<Result<Vec<_>, _>>()?;
    fund_ltc(&d.info, &scripts, 2).await?;
    devnet::fund(
        &d.client,
        devnet::DEV_KEY_0,
        Asset::Native,
        w.safe.1,
        crate::demo::eth("3")?,
    )
    .await?;
    d.say("Funded: two coinbase outputs to each LTC wallet, 3 ETH to the Safe.");

    // Threshold wallets on Litecoin: one signing run per input, each over that input's hash.
    let intent = d.deposit_on("LTC", &w.p2wpkh.0, "LTC", "1", AgreementRule::All, &[])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    let (inputs, witness) = spend_of(d, &t).await;
    d.record(
        "deposit 1 LTC from the trader's threshold ECDSA wallet as P2WPKH: every module checked the spend against its own node and connector; a DKLs23 run over its BIP-143 hash; litecoind accepted it; credited",
        t["status"] == "credited" && inputs == 1 && witness == Some(2),
        with(transfer_summary(&t), "witness_items", json!(witness)),
    );
    // More than its largest coin: two inputs, two FROST runs under one approval.
    let node = d.info.ltc.as_ref().context("no Litecoin node")?.client()?;
    let coins = node.spendable(&scripts[1], 1).await?;
    let largest = coins
        .iter()
        .map(|c| c.txout.value)
        .max()
        .unwrap_or_default();
    let amount = concord_chain::utxo::bitcoin::Amount::from_sat(largest.to_sat() + 50_000_000)
        .to_string_in(concord_chain::utxo::bitcoin::Denomination::Bitcoin);
    let intent = d.deposit_on("LTC", &w.p2tr.0, "LTC", &amount, AgreementRule::All, &[])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    let (inputs, witness) = spend_of(d, &t).await;
    d.record(
        &format!("P2TR: deposit {amount} LTC from the FROST Taproot wallet: more than its largest coin, so two inputs; a FROST run per input over its BIP-341 key-path hash, both under one approval; litecoind accepted the Schnorr signatures; credited"),
        t["status"] == "credited" && inputs == 2 && witness == Some(1),
        with(transfer_summary(&t), "inputs", json!(inputs)),
    );

    // LTC from the P2WSH wallet: each approving module signs every input with its own key.
    let intent = d.deposit_on("LTC", &w.p2wsh.0, "LTC", "1.5", AgreementRule::All, &[])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    let witness = witness_of(d, &t).await;
    d.record(
        "deposit 1.5 LTC from the 2-of-3 P2WSH wallet: every module checked the spend against its own node and connector; two signed with their own keys; litecoind accepted the witness; credited",
        t["status"] == "credited" && witness == Some(4),
        with(transfer_summary(&t), "witness_items", json!(witness)),
    );

    // LTC back from the exchange to the P2WSH wallet (the address book's "ltc-vault"): each
    // module derives the wallet's address from the policy's definition itself.
    let vault = &scripts[2];
    let held = |coins: Vec<concord_chain::utxo::Utxo>| -> u64 {
        coins.iter().map(|c| c.txout.value.to_sat()).sum()
    };
    let before = held(node.spendable(vault, 1).await?);
    let intent = d.withdrawal_on(
        "LTC",
        "LTC",
        concord_wire::authority::AddressRef::Label("ltc-vault".into()),
        "2",
    )?;
    let t = d.transfer("/v1/transfers/withdrawals", &intent).await?;
    let after = held(node.spendable(vault, 1).await?);
    d.record(
        "withdraw 2 LTC from the exchange to address-book entry \"ltc-vault\" (the P2WSH wallet): every module derived the wallet's address from the policy's definition and FROST-signed the request; the exchange's LTC arrived on the P2WSH script",
        t["status"] == "arrived" && after.saturating_sub(before) == 200_000_000,
        with(transfer_summary(&t), "received_sats", json!(after.saturating_sub(before))),
    );

    // ETH from the Safe: each approving module signs the SafeTx hash it computed itself.
    let (before, _, _) = concord_chain::safe::state(&d.info.rpc_url, w.safe.1).await?;
    let intent = d.deposit(&w.safe.0, "ETH", "0.5", AgreementRule::All, &[])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    let (after, _, _) = concord_chain::safe::state(&d.info.rpc_url, w.safe.1).await?;
    d.record(
        "deposit 0.5 ETH from the 2-of-3 Safe: two modules signed the SafeTx hash with their own keys; the gas account submitted execTransaction; the Safe's nonce advanced by one; credited",
        t["status"] == "credited" && after == before + concord_chain::U256::from(1u64),
        transfer_summary(&t),
    );

    // The man in the middle on m3's exchange path forges the LTC deposit address.
    let forged_key = concord_chain::utxo::bitcoin::secp256k1::SecretKey::from_slice(
        &rand::random::<[u8; 32]>(),
    )?;
    let forged_script = WalletScript::p2wpkh(
        &forged_key
            .public_key(&concord_chain::utxo::bitcoin::secp256k1::Secp256k1::new())
            .serialize(),
    )?
    .script_pubkey();
    let forged = network.address(&forged_script)?;
    std::fs::write(&d.info.mitm_forge_file, &forged)?;
    let intent = d.deposit_on("LTC", &w.p2wsh.0, "LTC", "0.5", AgreementRule::All, &[])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    let named = t["dissenters"]
        .as_object()
        .is_some_and(|m| m.contains_key(&d.info.mitm_module));
    d.record(
        "attack in multisig mode, rule all: a man in the middle forges m3's LTC deposit address → refused, m3 named, nothing signed",
        t["status"] == "failed" && named && t["tx_hash"].is_null(),
        transfer_summary(&t),
    );
    let intent = d.deposit_on(
        "LTC",
        &w.p2wsh.0,
        "LTC",
        "0.5",
        AgreementRule::Threshold,
        &[],
    )?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    let named = t["dissenters"]
        .as_object()
        .is_some_and(|m| m.contains_key(&d.info.mitm_module));
    let honest = t["destination"].as_str() != Some(forged.as_str());
    d.record(
        "attack in multisig mode, rule threshold: m1 and m2 agree on the honest address and sign with their own keys; m3's dissent recorded; nothing reaches the forged address",
        t["status"] == "credited" && named && honest && !every_module_refused(d, &t),
        transfer_summary(&t),
    );
    let _ = std::fs::remove_file(&d.info.mitm_forge_file);
    Ok(())
}

/// The number of witness items of the first input of a deposit's transaction, as the node
/// has it (a 2-of-3 P2WSH spend: the empty item, two signatures, the script).
async fn witness_of(d: &Demo, t: &Value) -> Option<usize> {
    spend_of(d, t).await.1
}

/// A deposit's transaction as the node has it: its inputs, and the witness items of the
/// first.
async fn spend_of(d: &Demo, t: &Value) -> (usize, Option<usize>) {
    let tx = async {
        let txid = t["tx_hash"].as_str()?.parse().ok()?;
        let node = d.info.ltc.as_ref()?.client().ok()?;
        node.transaction(&txid).await.ok()?
    }
    .await;
    match tx {
        Some(tx) => (tx.input.len(), tx.input.first().map(|i| i.witness.len())),
        None => (0, None),
    }
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}
