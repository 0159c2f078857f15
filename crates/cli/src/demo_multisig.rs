//! The demo's native multisig part (the patent's second signing mode): each module signs with
//! its own environment-specific key. A 2-of-3 P2WSH wallet on Litecoin (regtest) and a 2-of-3
//! Safe on the EVM chain are defined from the modules' published keys, named by the policy,
//! funded, and deposit to the exchange; the forged-deposit-address attack is run again in
//! multisig mode.

use anyhow::{Context, Result};
use concord_chain::utxo::bitcoin::ScriptBuf;
use concord_chain::utxo::{UtxoNetwork, WalletScript};
use concord_chain::{Address, Asset};
use concord_wire::authority::AgreementRule;
use serde_json::{Value, json};

use crate::demo::{Demo, every_module_refused, transfer_summary};
use crate::devnet::{self, DevnetInfo};

/// The multisig wallets the demo makes.
pub(crate) struct MultisigWallets {
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
pub(crate) async fn fund_ltc(info: &DevnetInfo, script: &ScriptBuf, coins: u64) -> Result<()> {
    let node = info
        .ltc
        .as_ref()
        .context("this devnet runs no Litecoin node (started with --no-utxo)")?;
    let client = node.client()?;
    let miner = ScriptBuf::from_hex(
        std::fs::read_to_string(info.dir.join("litecoind/miner.script"))?.trim(),
    )?;
    client.mine_to(coins, script).await?;
    client.mine_to(100, &miner).await?;
    Ok(())
}

/// Defines both multisig wallets from the modules' keys (deploying the Safe), and has the
/// admins name them in the next policy with their limits.
pub(crate) async fn create(d: &mut Demo) -> Result<MultisigWallets> {
    let infos = module_infos(&d.info)?;
    let deposit_to = vec!["binance".to_owned()];
    let (p2wsh, p2wsh_address) = crate::authority::multisig_rule(
        devnet::LTC_CHAIN,
        2,
        &infos,
        "ltc-desk",
        deposit_to.clone(),
        None,
    )?;
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
    let mut p2wsh_json = serde_json::to_value(&p2wsh)?;
    p2wsh_json["limits"] = json!([{"coin": "LTC", "per_transfer": "5", "per_day": "20"}]);
    let mut safe_json = serde_json::to_value(&safe_rule)?;
    safe_json["limits"] = json!([{"coin": "ETH", "per_transfer": "2", "per_day": "10"}]);
    let view = d
        .amend_policy(["admin-1", "admin-2"], |doc| {
            if let Some(ws) = doc["wallets"].as_array_mut() {
                ws.push(p2wsh_json);
                ws.push(safe_json);
            }
        })
        .await?;
    d.record(
        &format!(
            "policy v{}: a 2-of-3 P2WSH wallet on Litecoin ({p2wsh_address}) and a 2-of-3 Safe ({safe}) of the modules' own keys, each key signed by its module's identity",
            view.version
        ),
        true,
        json!({"p2wsh": p2wsh.wallet.to_string(), "address": p2wsh_address, "safe_wallet": safe_rule.wallet.to_string(), "safe": safe.to_string(), "owners": owners}),
    );
    Ok(MultisigWallets {
        p2wsh: (p2wsh.wallet.to_string(), p2wsh_address),
        safe: (safe_rule.wallet.to_string(), safe),
    })
}

/// The demo's part: wallets made and funded, deposits, and the attack in multisig mode.
pub(crate) async fn run(d: &mut Demo) -> Result<()> {
    if d.info.ltc.is_none() {
        d.say("(this devnet runs no Litecoin node: the native multisig part is skipped)");
        return Ok(());
    }
    let w = create(d).await?;
    let network: UtxoNetwork = devnet::LTC_CHAIN.parse()?;
    let script = network.script_of(&w.p2wsh.1)?;
    fund_ltc(&d.info, &script, 2).await?;
    devnet::fund(
        &d.client,
        devnet::DEV_KEY_0,
        Asset::Native,
        w.safe.1,
        crate::demo::eth("3")?,
    )
    .await?;
    d.say("Funded: two coinbase outputs to the P2WSH wallet, 3 ETH to the Safe.");

    // LTC from the P2WSH wallet: each approving module signs every input with its own key.
    let intent = d.deposit_on("LTC", &w.p2wsh.0, "LTC", "1.5", AgreementRule::All, &[])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    let witness = witness_of(d, &t).await;
    d.record(
        "deposit 1.5 LTC from the 2-of-3 P2WSH wallet: every module checked the spend against its own node and connector; two signed with their own keys; litecoind accepted the witness; credited",
        t["status"] == "credited" && witness == Some(4),
        with(transfer_summary(&t), "witness_items", json!(witness)),
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
    let txid = t["tx_hash"].as_str()?.parse().ok()?;
    let node = d.info.ltc.as_ref()?.client().ok()?;
    let tx = node.transaction(&txid).await.ok()??;
    tx.input.first().map(|i| i.witness.len())
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}
