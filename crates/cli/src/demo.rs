//! `concord devnet demo`: the patent's FIG. 4 end to end on a fresh local devnet, with the
//! forged-deposit-address attack, and a summary of what held.

use std::path::Path;

use anyhow::{Context, Result, bail};
use concord_chain::{Address, Asset, EvmClient, U256};
use serde_json::{Value, json};

use crate::client::{Api, show_transfer};
use crate::devnet::{self, DevnetInfo};

/// The address the attacker's proxy substitutes (an address nobody holds a key to).
const FORGED: &str = "0x000000000000000000000000000000000000dEaD";

/// A demo (or benchmark) run over a devnet.
pub(crate) struct Demo {
    pub(crate) api: Api,
    pub(crate) info: DevnetInfo,
    pub(crate) client: EvmClient,
    pub(crate) json: bool,
    pub(crate) steps: Vec<Value>,
    pub(crate) ok: bool,
}

/// What [`prepare`] made.
pub(crate) struct Prepared {
    /// The trader's ECDSA wallet id.
    pub(crate) wallet: String,
    /// Its address.
    pub(crate) address: Address,
}

/// Replaces any devnet in `dir` by a fresh one (`block_time` 0: anvil mines each
/// transaction at once).
pub(crate) async fn fresh(dir: &Path, json: bool, block_time: u64) -> Result<Demo> {
    if DevnetInfo::load(dir).is_ok() {
        let _ = devnet::down(dir).await;
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot clear the previous devnet in {}", dir.display()))?;
    }
    let info = devnet::up(dir, json, block_time).await?;
    let api = Api::from_parts(&info.coordinator_url, &info.token_file)?;
    let client = EvmClient::new(&info.rpc_url)?;
    Ok(Demo {
        api,
        info,
        client,
        json,
        steps: Vec::new(),
        ok: true,
    })
}

impl Demo {
    pub(crate) fn say(&self, m: &str) {
        if !self.json {
            println!("{m}");
        }
    }

    fn record(&mut self, step: &str, held: bool, detail: Value) {
        if !held {
            self.ok = false;
        }
        let mark = if held { "ok  " } else { "FAIL" };
        self.say(&format!("[{mark}] {step}"));
        let mut v = detail;
        v["step"] = json!(step);
        v["held"] = json!(held);
        self.steps.push(v);
    }

    async fn transfer(&self, path: &str, body: Value) -> Result<Value> {
        let t = self.api.post(path, &body).await?;
        let id = t["id"].as_str().unwrap_or_default().to_owned();
        let t = self.api.wait_transfer(&id, self.json).await?;
        if !self.json {
            show_transfer(&t);
        }
        Ok(t)
    }
}

fn eth(units: &str) -> Result<U256> {
    concord_wire::units::parse_amount(units, 18).map_err(|e| anyhow::anyhow!(e))
}

/// Runs the demo.
pub async fn demo(dir: &Path, json: bool, insecure_primes: bool, stop: bool) -> Result<()> {
    let mut d = fresh(dir, json, 1).await?;
    let outcome = run(&mut d, insecure_primes).await;
    if let Err(e) = &outcome {
        d.record(
            "demo ran to the end",
            false,
            json!({"error": format!("{e:#}")}),
        );
    }
    if stop {
        let _ = devnet::down(&d.info.dir).await;
    }
    if json {
        println!(
            "{}",
            json!({
                "ok": d.ok,
                "devnet": d.info,
                "steps": d.steps,
            })
        );
    } else if d.ok {
        println!();
        println!("Everything held.");
        if !stop {
            println!(
                "The devnet is still running: `concord transfers --devnet {}`; stop it with `concord devnet down --dir {}`.",
                d.info.dir.display(),
                d.info.dir.display()
            );
        }
    }
    if !d.ok {
        bail!("the demo did not hold: see the steps marked FAIL above");
    }
    Ok(())
}

async fn run(d: &mut Demo, insecure_primes: bool) -> Result<()> {
    let Prepared { wallet, address } = prepare(d, insecure_primes).await?;
    run_flows(d, &wallet, address).await
}

/// Steps 1 to 3: the signer group, the wallets (trader's and the exchange key), funding.
pub(crate) async fn prepare(d: &mut Demo, insecure_primes: bool) -> Result<Prepared> {
    // 1. A 2-of-3 signer group.
    let members: Vec<&str> = d.info.modules.iter().map(|m| m.id.as_str()).collect();
    if insecure_primes {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tss/tests/fixtures");
        for (i, m) in d.info.modules.iter().enumerate() {
            let file = fixtures.join(format!("INSECURE-primes-{i}.bin"));
            let bytes = std::fs::read(&file).with_context(|| {
                format!(
                    "the insecure test primes ship with the source tree only ({} is missing)",
                    file.display()
                )
            })?;
            let primes = concord_tss::ecdsa::Primes::from_bytes(&bytes)?;
            let cfg = concord_module::Config::load(&m.dir.join("module.toml"))?;
            concord_module::open_state(&cfg)?.save_primes("desk", &primes)?;
        }
        d.say("Using the committed INSECURE test primes (tests only).");
    } else {
        d.say("Preparing the signer group: each module generates its safe primes (minutes on a small machine)…");
    }
    let g = d
        .api
        .post(
            "/v1/groups",
            &json!({"id": "desk", "threshold": 2, "members": members}),
        )
        .await?;
    let aux = g["aux_job_id"].as_str().unwrap_or_default().to_owned();
    d.api.wait_job(&aux, d.json).await?;
    d.record(
        "2-of-3 signer group prepared",
        true,
        json!({"group": "desk"}),
    );

    // 2. Wallets by DKG: the trader's ECDSA wallet and the exchange's sharded withdraw key.
    let job = d
        .api
        .post(
            "/v1/wallets",
            &json!({"group": "desk", "scheme": "ecdsa-secp256k1"}),
        )
        .await?;
    let w = d
        .api
        .wait_job(job["id"].as_str().unwrap_or_default(), true)
        .await?;
    let wallet = w["result"]["id"].as_str().unwrap_or_default().to_owned();
    let pk = hex::decode(w["result"]["public_key"].as_str().unwrap_or_default())?;
    let address = concord_chain::evm_address(&pk)?;
    d.record(
        "wallet created by DKG (the key never existed whole)",
        true,
        json!({"wallet": wallet, "address": address.to_string()}),
    );
    let job = d
        .api
        .post(
            "/v1/wallets",
            &json!({"group": "desk", "scheme": "ed25519", "purpose": "exchange-credential:binance"}),
        )
        .await?;
    let c = d
        .api
        .wait_job(job["id"].as_str().unwrap_or_default(), true)
        .await?;
    let cred_wallet = c["result"]["id"].as_str().unwrap_or_default().to_owned();
    let cred_pk = c["result"]["public_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Register its public key at the exchange (as a user uploads an Ed25519 key), then tell
    // the coordinator which API key it is.
    let admin = std::fs::read_to_string(&d.info.exchange_admin_token_file)?;
    let reg: Value = reqwest::Client::new()
        .post(format!("{}/sim/api-keys", d.info.exchange_url))
        .bearer_auth(admin.trim())
        .json(&json!({"account": d.info.exchange_account, "kind": "ed25519", "publicKey": cred_pk, "permissions": ["withdraw"]}))
        .send()
        .await?
        .json()
        .await?;
    let api_key = reg["apiKey"]
        .as_str()
        .with_context(|| format!("the exchange did not register the key: {reg}"))?
        .to_owned();
    d.api
        .post(
            "/v1/exchanges/binance/credential",
            &json!({"wallet": cred_wallet, "api_key": api_key}),
        )
        .await?;
    d.record(
        "exchange withdraw key created by DKG (FROST Ed25519) and registered",
        true,
        json!({"credential_wallet": cred_wallet, "api_key": api_key}),
    );

    // 3. Fund the wallet.
    let fund_eth = devnet::fund(
        &d.client,
        devnet::DEV_KEY_0,
        Asset::Native,
        address,
        eth("5")?,
    )
    .await?;
    let fund_ctt = devnet::fund(
        &d.client,
        devnet::DEV_KEY_0,
        Asset::Erc20 {
            token: d.info.token_contract,
        },
        address,
        eth("1000")?,
    )
    .await?;
    d.record(
        "wallet funded with 5 ETH and 1000 CTT",
        true,
        json!({"eth_tx": fund_eth, "ctt_tx": fund_ctt}),
    );
    Ok(Prepared { wallet, address })
}

async fn run_flows(d: &mut Demo, wallet: &str, address: Address) -> Result<()> {
    // 4. Deposit ETH and CTT to the exchange (rule `all`).
    for (coin, amount) in [("ETH", "1.5"), ("CTT", "250")] {
        let t = d
            .transfer(
                "/v1/transfers/deposits",
                json!({"wallet": wallet, "exchange": "binance", "coin": coin, "network": "ETH", "amount": amount}),
            )
            .await?;
        let held =
            t["status"] == "credited" && t["dissenters"].as_object().is_some_and(|m| m.is_empty());
        d.record(
            &format!("deposit {amount} {coin}: every module resolved the same address; signed, broadcast, credited"),
            held,
            transfer_summary(&t),
        );
    }

    // 5. Withdraw ETH back to the wallet, signed by the sharded Ed25519 API key.
    let before = d.client.balance(address).await?;
    let t = d
        .transfer(
            "/v1/transfers/withdrawals",
            json!({"wallet": wallet, "exchange": "binance", "coin": "ETH", "network": "ETH", "amount": "0.5"}),
        )
        .await?;
    let after = d.client.balance(address).await?;
    let held = t["status"] == "arrived" && after.saturating_sub(before) == eth("0.5")?;
    let mut s = transfer_summary(&t);
    s["balance_increase_wei"] = json!(after.saturating_sub(before).to_string());
    d.record(
        "withdraw 0.5 ETH: modules checked the destination is the wallet's own address, FROST-signed the request; funds arrived",
        held,
        s,
    );

    // 6. The attack: m3's exchange path returns a forged deposit address.
    std::fs::write(&d.info.mitm_forge_file, FORGED)?;
    let forged: Address = FORGED.parse()?;
    let forged_before = d.client.balance(forged).await?;
    let t = d
        .transfer(
            "/v1/transfers/deposits",
            json!({"wallet": wallet, "exchange": "binance", "coin": "ETH", "network": "ETH", "amount": "0.25", "rule": "all"}),
        )
        .await?;
    let named = t["dissenters"]
        .as_object()
        .is_some_and(|m| m.contains_key(&d.info.mitm_module));
    d.record(
        "attack, rule all: a man in the middle forges m3's deposit address → transfer refused, m3 named",
        t["status"] == "failed" && named && t["tx_hash"].is_null(),
        transfer_summary(&t),
    );
    let t = d
        .transfer(
            "/v1/transfers/deposits",
            json!({"wallet": wallet, "exchange": "binance", "coin": "ETH", "network": "ETH", "amount": "0.25", "rule": "threshold"}),
        )
        .await?;
    let named = t["dissenters"]
        .as_object()
        .is_some_and(|m| m.contains_key(&d.info.mitm_module));
    let forged_after = d.client.balance(forged).await?;
    let honest = t["destination"].as_str().map(str::to_lowercase) != Some(FORGED.to_lowercase());
    d.record(
        "attack, rule threshold: funds go to the honest address (2 of 3 agree), m3's dissent recorded, nothing reaches the forged address",
        t["status"] == "credited" && named && honest && forged_after == forged_before,
        transfer_summary(&t),
    );
    let _ = std::fs::remove_file(&d.info.mitm_forge_file);
    Ok(())
}

fn transfer_summary(t: &Value) -> Value {
    json!({
        "transfer": t["id"],
        "status": t["status"],
        "destination": t["destination"],
        "tx_hash": t["tx_hash"],
        "approvers": t["approvers"],
        "dissenters": t["dissenters"],
        "error": t["error"],
        "timings_ms": t["timings_ms"],
    })
}
