//! `concord devnet demo`: the patent's FIG. 4 end to end on a fresh local devnet, with the
//! forged-deposit-address attack, and a summary of what held.

use std::path::Path;

use anyhow::{Context, Result, bail};
use concord_chain::{Address, Asset, EvmClient, U256};
use serde_json::{Value, json};

use concord_wire::authority::{Action, AddressRef, AgreementRule, Intent, SignedIntent};

use crate::client::{Api, show_transfer};
use crate::devnet::{self, DevnetInfo};

/// The address the attacker's proxy substitutes (an address nobody holds a key to).
pub(crate) const FORGED: &str = "0x000000000000000000000000000000000000dEaD";

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

/// How the demo's signer group is made: `--engine` and `--insecure-test-primes`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct GroupSetup {
    /// Threshold-ECDSA engine of the demo's signer group.
    #[arg(long, value_enum, default_value_t = crate::args::Engine::Dkls23)]
    pub engine: crate::args::Engine,
    /// With `--engine cggmp21`: use the committed INSECURE test primes from the source tree
    /// instead of generating the group's safe primes (which takes minutes): for tests only.
    #[arg(long)]
    pub insecure_test_primes: bool,
}

/// The key of Ethereum's EIP-155 example transaction: public, so "a key the caller holds".
const OUTSIDE_KEY: &str = "4646464646464646464646464646464646464646464646464646464646464646";

/// Replaces any devnet in `dir` by a fresh one (`block_time` 0: anvil mines each
/// transaction at once).
pub(crate) async fn fresh(dir: &Path, json: bool, block_time: u64) -> Result<Demo> {
    if DevnetInfo::load(dir).is_ok() {
        let _ = devnet::down(dir).await;
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot clear the previous devnet in {}", dir.display()))?;
    }
    let info = devnet::up(dir, json, &devnet::UpOptions::with_block_time(block_time)).await?;
    attach(info, json)
}

/// A demo over the devnet described by `info`, already running.
pub(crate) fn attach(info: DevnetInfo, json: bool) -> Result<Demo> {
    let api = Api::for_devnet(&info)?;
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
            crate::outln!("{m}");
        }
    }

    pub(crate) fn record(&mut self, step: &str, held: bool, detail: Value) {
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

    /// Signs an intent with the devnet's trader key and the named co-signers' keys.
    pub(crate) fn intent(&self, action: Action, cosigners: &[&str]) -> Result<SignedIntent> {
        let mut si = SignedIntent::new(
            Intent::new(action, 600),
            &devnet::principal_key(&self.info.keys_dir, "trader")?,
        );
        for c in cosigners {
            si.cosign(&devnet::principal_key(&self.info.keys_dir, c)?);
        }
        Ok(si)
    }

    /// A deposit intent of the trader on the EVM chain (network ETH).
    pub(crate) fn deposit(
        &self,
        wallet: &str,
        coin: &str,
        amount: &str,
        rule: AgreementRule,
        cosigners: &[&str],
    ) -> Result<SignedIntent> {
        self.deposit_on("ETH", wallet, coin, amount, rule, cosigners)
    }

    /// A deposit intent of the trader on the exchange's `network`.
    pub(crate) fn deposit_on(
        &self,
        network: &str,
        wallet: &str,
        coin: &str,
        amount: &str,
        rule: AgreementRule,
        cosigners: &[&str],
    ) -> Result<SignedIntent> {
        self.intent(
            Action::Deposit {
                wallet: wallet.parse()?,
                exchange: "binance".into(),
                coin: coin.into(),
                network: network.into(),
                amount: amount.into(),
                rule,
            },
            cosigners,
        )
    }

    /// The next policy version: the one in force, edited by `edit`, proposed and signed by
    /// `admins`, then waited for until every module adopted it.
    pub(crate) async fn amend_policy(
        &self,
        admins: [&str; 2],
        edit: impl FnOnce(&mut Value),
    ) -> Result<concord_coordinator::policy::PolicyView> {
        let mut doc = crate::authority::next_policy_doc(&self.api).await?;
        edit(&mut doc);
        let view = crate::authority::propose(&self.api, doc).await?;
        for admin in admins {
            crate::authority::approve(
                &self.api,
                &view.hash,
                &devnet::principal_key(&self.info.keys_dir, admin)?,
            )
            .await?;
        }
        policy_state(self, &view.hash, true).await?;
        Ok(view)
    }

    /// A withdrawal intent of the trader (ETH).
    pub(crate) fn withdrawal(&self, to: AddressRef, amount: &str) -> Result<SignedIntent> {
        self.withdrawal_on("ETH", "ETH", to, amount)
    }

    /// A withdrawal intent of the trader of `coin` on `network`.
    pub(crate) fn withdrawal_on(
        &self,
        network: &str,
        coin: &str,
        to: AddressRef,
        amount: &str,
    ) -> Result<SignedIntent> {
        self.intent(
            Action::Withdraw {
                exchange: "binance".into(),
                coin: coin.into(),
                network: network.into(),
                amount: amount.into(),
                to,
                rule: AgreementRule::All,
            },
            &[],
        )
    }

    pub(crate) async fn transfer(&self, path: &str, intent: &SignedIntent) -> Result<Value> {
        let t = self.api.post(path, &json!({ "intent": intent })).await?;
        let id = t["id"].as_str().unwrap_or_default().to_owned();
        let t = self.api.wait_transfer(&id, self.json).await?;
        if !self.json {
            show_transfer(&t);
        }
        Ok(serde_json::to_value(&t)?)
    }
}

pub(crate) fn eth(units: &str) -> Result<U256> {
    concord_wire::units::parse_amount(units, 18).map_err(|e| anyhow::anyhow!(e))
}

/// Runs the demo.
pub async fn demo(dir: &Path, json: bool, setup: GroupSetup, stop: bool) -> Result<()> {
    let mut d = fresh(dir, json, 1).await?;
    let outcome = run(&mut d, setup).await;
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
        crate::outln!(
            "{}",
            json!({
                "ok": d.ok,
                "devnet": d.info,
                "steps": d.steps,
            })
        );
    } else if d.ok {
        crate::outln!();
        crate::outln!("Everything held.");
        if !stop {
            let (flag, dir_flag) = crate::connect::devnet_flags(&d.info.dir);
            crate::outln!(
                "The devnet is still running: look around with `concord wallets list{flag}`, `concord balances{flag}`, `concord transfers{flag}`; stop it with `concord devnet down{dir_flag}`."
            );
        }
    }
    if !d.ok {
        bail!("the demo did not hold: see the steps marked FAIL above");
    }
    Ok(())
}

async fn run(d: &mut Demo, setup: GroupSetup) -> Result<()> {
    let Prepared { wallet, address } = prepare(d, setup).await?;
    run_flows(d, &wallet, address).await?;
    crate::demo_exchanges::run(d, &wallet, address).await?;
    crate::demo_multisig::run(d, &wallet).await?;
    lifecycle(d, setup, &wallet, address).await?;
    exactly_once(d, &wallet, address).await?;
    look_around(d, &wallet, address).await?;
    crate::demo_operator::run(d, &wallet).await
}

/// The key lifecycle: the trader's wallet refreshed (every member re-randomises its share; the
/// key and address stay; deposits go on with the new shares), and a refresh of a wallet the
/// policy does not allow refused by every module.
async fn lifecycle(d: &mut Demo, setup: GroupSetup, wallet: &str, address: Address) -> Result<()> {
    let engine = concord_tss::EcdsaEngine::from(setup.engine);
    if engine != concord_tss::EcdsaEngine::Dkls23 {
        let refused = d
            .api
            .post(&format!("/v1/wallets/{wallet}/refresh"), &json!({}))
            .await;
        d.record(
            "cggmp21 wallets cannot be refreshed (cggmp21 0.6 has no threshold refresh): the coordinator says so",
            refused
                .as_ref()
                .err()
                .is_some_and(|e| format!("{e:#}").contains("cannot be refreshed") || format!("{e:#}").contains("only DKLs23")),
            json!({"error": refused.err().map(|e| format!("{e:#}"))}),
        );
        return Ok(());
    }
    let (job, done) = d
        .api
        .post_job(&format!("/v1/wallets/{wallet}/refresh"), &json!({}))
        .await?;
    let r = done?.result.unwrap_or_default();
    let w = d.api.get(&format!("/v1/wallets/{wallet}")).await?;
    let same_key = r["public_key"] == w["public_key"];
    let before = d.client.balance(address).await?;
    let intent = d.deposit(wallet, "ETH", "0.1", AgreementRule::All, &[])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    let after = d.client.balance(address).await?;
    d.record(
        "key refresh (DKLs23): every module re-randomised its share of the trader's wallet (the policy allows it), the old shares replaced once all held new ones; same key and address; a deposit then signs with the new shares",
        same_key
            && r["members"].as_array().map(Vec::len) == Some(d.info.modules.len())
            && t["status"] == "credited"
            && after < before,
        json!({"refresh_job": job, "commitment": r["commitment"], "deposit": transfer_summary(&t)}),
    );
    // The exchange's withdraw key (FROST Ed25519) too: the HD step's withdrawal is then
    // signed with the refreshed shares and accepted by the exchange.
    let cred = wallets_labelled(d, "binance-withdraw-key").await?;
    if let Some(cred) = cred {
        let (job, done) = d
            .api
            .post_job(&format!("/v1/wallets/{cred}/refresh"), &json!({}))
            .await?;
        let r = done?.result.unwrap_or_default();
        d.record(
            "key refresh (FROST Ed25519): every module re-randomised its share of the exchange's withdraw key; the exchange still knows the same public key",
            r["members"].as_array().map(Vec::len) == Some(d.info.modules.len()),
            json!({"refresh_job": job, "commitment": r["commitment"]}),
        );
    }
    hd_wallets(d, wallet).await?;
    // The imported outside key's wallet is in no policy entry: no refresh.
    let wallets = d.api.get("/v1/wallets").await?;
    let unlisted = wallets.as_array().and_then(|l| {
        l.iter()
            .find(|w| w["kind"] == "imported" && w["label"].is_null())
            .and_then(|w| w["id"].as_str().map(str::to_owned))
    });
    if let Some(other) = unlisted {
        let (_, outcome) = d
            .api
            .post_job(&format!("/v1/wallets/{other}/refresh"), &json!({}))
            .await?;
        let refused = outcome
            .as_ref()
            .err()
            .is_some_and(|e| format!("{e:#}").contains("may not be refreshed"));
        d.record(
            "attack: refresh of a wallet the policy does not name → every module refuses",
            refused,
            json!({"wallet": other, "error": outcome.err().map(|e| format!("{e:#}"))}),
        );
    }
    Ok(())
}

/// The id of the wallet the policy in force labels `label`.
pub(crate) async fn wallets_labelled(d: &Demo, label: &str) -> Result<Option<String>> {
    let wallets = d.api.get("/v1/wallets").await?;
    Ok(wallets.as_array().and_then(|l| {
        l.iter()
            .find(|w| w["label"] == label)
            .and_then(|w| w["id"].as_str().map(str::to_owned))
    }))
}

/// HD wallets: a child of the trader's wallet derived by every module (the policy allows
/// children under m/0), funded, depositing to the exchange from its own address; then the
/// admins add it to the address book and the exchange pays a withdrawal out to it.
async fn hd_wallets(d: &mut Demo, wallet: &str) -> Result<()> {
    let (_, done) = d
        .api
        .post_job(
            &format!("/v1/wallets/{wallet}/derive"),
            &json!({"path": "m/0/1"}),
        )
        .await?;
    let child = done?
        .result
        .as_ref()
        .and_then(|r| r["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let view = d.api.get(&format!("/v1/wallets/{child}")).await?;
    let child_address = concord_chain::evm_address(&hex::decode(
        view["public_key"].as_str().unwrap_or_default(),
    )?)?;
    d.record(
        &format!("child wallet m/0/1 of the trader's wallet: every module checked the path against the policy and derived the key from its own share (non-hardened BIP-32); its own address {child_address}"),
        view["kind"] == "derived" && view["derived_from"]["path"] == "m/0/1",
        json!({"wallet": child, "address": child_address.to_string()}),
    );
    devnet::fund(
        &d.client,
        devnet::DEV_KEY_0,
        Asset::Native,
        child_address,
        eth("1")?,
    )
    .await?;
    let intent = d.deposit(&child, "ETH", "0.2", AgreementRule::All, &[])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    d.record(
        "deposit 0.2 ETH from the child's address: under its parent's rule, signed by the threshold for the child key, credited",
        t["status"] == "credited",
        transfer_summary(&t),
    );
    // Policy v+1: the admins add the child to the address book, as a withdrawal destination.
    let view = d
        .amend_policy(["admin-1", "admin-3"], |doc| {
            if let Some(book) = doc["address_book"].as_array_mut() {
                book.push(
                    json!({"label": "desk-child", "target": {"kind": "wallet", "wallet": child}}),
                );
            }
            if let Some(ws) = doc["wallets"].as_array_mut() {
                for w in ws {
                    // (Read before indexing mutably: a missing key would be inserted as null.)
                    if w["purpose"]["kind"] == "exchange_credential"
                        && let Some(to) = w["purpose"]["withdraw_to"].as_array_mut()
                    {
                        to.push(json!("desk-child"));
                    }
                }
            }
        })
        .await?;
    let before = d.client.balance(child_address).await?;
    let intent = d.withdrawal(AddressRef::Label("desk-child".into()), "0.3")?;
    let t = d.transfer("/v1/transfers/withdrawals", &intent).await?;
    let after = d.client.balance(child_address).await?;
    d.record(
        &format!("policy v{}: the admins add the child to the address book; a withdrawal of 0.3 ETH from the exchange lands on the child's address (each module derived that address itself)", view.version),
        t["status"] == "arrived" && after > before,
        transfer_summary(&t),
    );
    Ok(())
}

/// What a newcomer sees with `concord wallets list` and `concord balances`, checked against
/// independent reads: the wallet's address from its key, its balances from anvil, the
/// exchange account from the simulator with the trader's own key.
async fn look_around(d: &mut Demo, wallet: &str, address: Address) -> Result<()> {
    use concord_coordinator::WalletView;
    use concord_coordinator::records::{ExchangeBalances, WalletBalances};
    use concord_wire::authority::WalletPurpose;
    let wallets: Vec<WalletView> = d.api.fetch(&["v1", "wallets"], &[]).await?;
    let mine = wallets.iter().find(|w| w.wallet.id == wallet);
    let shows_address = mine.is_some_and(|w| {
        w.addresses
            .iter()
            .any(|a| a.address == address.to_checksum(None))
            && matches!(w.purpose, Some(WalletPurpose::Trading { .. }))
    });
    let shows_key = wallets
        .iter()
        .any(|w| matches!(&w.purpose, Some(WalletPurpose::ExchangeCredential { exchange, .. }) if exchange == "binance"));
    // With a Litecoin node: the multisig wallets of the policy too, with their P2WSH or Safe,
    // and the trader's wallet with its P2WPKH address as well.
    let multisig: Vec<&WalletView> = wallets
        .iter()
        .filter(|w| w.kind == concord_coordinator::records::WalletKind::Multisig)
        .collect();
    let shows_utxo = d.info.ltc.is_none()
        || (multisig.len() == 2
            && multisig.iter().all(|w| {
                w.addresses
                    .iter()
                    .any(|a| a.kind == "p2wsh" || a.kind == "safe")
            })
            && mine.is_some_and(|w| w.addresses.iter().any(|a| a.kind == "p2wpkh")));
    if !d.json {
        crate::outln!("{}", crate::client::wallets_table(&wallets).render());
    }
    d.record(
        "wallets list: each wallet with its purpose from the policy in force and its address (the trader's wallet at its key's address, and its P2WPKH on Litecoin; the exchange's withdraw key named as such; the policy's multisig wallets with their P2WSH and Safe)",
        shows_address && shows_key && shows_utxo,
        json!({"wallets": wallets.len()}),
    );

    let chain: WalletBalances = d
        .api
        .fetch(&["v1", "wallets", wallet, "balances"], &[])
        .await?;
    let exchange: ExchangeBalances = d
        .api
        .fetch(&["v1", "exchanges", "binance", "balances"], &[])
        .await?;
    let on_chain = d.client.balance(address).await?;
    let ctt = d
        .client
        .token_balance(d.info.token_contract, address)
        .await?;
    let raw = |coin: &str| {
        chain
            .balances
            .iter()
            .find(|b| b.coin == coin)
            .map(|b| b.raw.clone())
    };
    let at_exchange = crate::bench::exchange_eth(&d.info).await?;
    let reported: Option<f64> = exchange
        .balances
        .iter()
        .find(|b| b.asset == "ETH")
        .and_then(|b| b.free.parse().ok());
    if !d.json {
        let b = crate::client::Balances {
            wallets: vec![chain.clone()],
            exchange: Some(exchange.clone()),
        };
        crate::outln!("{}", crate::client::balances_table(&b).render());
    }
    d.record(
        "balances: the wallet's ETH and CTT as anvil reports them, the exchange account's ETH as the exchange reports it to the trader (read through a module's read key)",
        raw("ETH") == Some(on_chain.to_string())
            && raw("CTT") == Some(ctt.to_string())
            && reported.is_some_and(|r| (r - at_exchange).abs() < 1e-9),
        json!({"chain": chain, "exchange": exchange}),
    );
    Ok(())
}

/// The exchange's ETH minus a withdrawal's amount and its 0.0001 fee, as the simulator
/// charges it.
const WITHDRAW_FEE: f64 = 0.0001;

/// Exactly once: one request raced 20 times under one key, parallel deposits from one
/// wallet, and the coordinator killed in the middle of a withdrawal.
async fn exactly_once(d: &mut Demo, wallet: &str, address: Address) -> Result<()> {
    // 20 parallel POSTs of one withdrawal, one Idempotency-Key.
    let (before, exchange_before) = (
        d.client.balance(address).await?,
        crate::bench::exchange_eth(&d.info).await?,
    );
    let intent = d.withdrawal(AddressRef::Label("desk".into()), "0.01")?;
    let body = json!({ "intent": intent });
    let key = uuid::Uuid::new_v4().to_string();
    let answers = futures::future::join_all((0..20).map(|_| {
        d.api
            .post_with_key("/v1/transfers/withdrawals", &body, &key)
    }))
    .await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    let t = d.api.wait_transfer(&intent.intent.id, true).await?;
    let received = d.client.balance(address).await?.saturating_sub(before);
    let paid = exchange_before - crate::bench::exchange_eth(&d.info).await?;
    d.record(
        "20 parallel requests of one withdrawal under one Idempotency-Key → one transfer, one withdrawal at the exchange",
        ids.len() == 1
            && answers.iter().all(Result::is_ok)
            && t.status.as_str() == "arrived"
            && received == eth("0.01")?
            && (paid - 0.01 - WITHDRAW_FEE).abs() < 1e-9,
        json!({"transfers": ids, "received_wei": received.to_string(), "exchange_paid": paid}),
    );

    // Parallel deposits from one wallet: queued, given nonces one at a time, all credited.
    let intents = (0..5)
        .map(|_| d.deposit(wallet, "ETH", "0.01", AgreementRule::All, &[]))
        .collect::<Result<Vec<_>>>()?;
    let nonce = d.client.pending_nonce(address).await?;
    let bodies: Vec<Value> = intents.iter().map(|i| json!({ "intent": i })).collect();
    futures::future::try_join_all(
        bodies
            .iter()
            .map(|b| d.api.post("/v1/transfers/deposits", b)),
    )
    .await?;
    let mut nonces = Vec::new();
    let mut errors = Vec::new();
    for i in &intents {
        let t = d.api.wait_transfer(&i.intent.id, true).await?;
        nonces.push(
            (t.status.as_str() == "credited")
                .then_some(t.nonce)
                .flatten(),
        );
        if let Some(e) = &t.error {
            errors.push(format!("{}: {e}", t.id));
        }
    }
    let mut got: Vec<u64> = nonces.iter().flatten().copied().collect();
    got.sort_unstable();
    d.record(
        "5 parallel deposits from one wallet → 5 credited, one nonce each, no gap",
        got == (nonce..nonce + 5).collect::<Vec<_>>(),
        json!({"nonces": nonces, "errors": errors}),
    );

    // The coordinator killed (kill -9) while a withdrawal is in flight, then restarted.
    let (before, exchange_before) = (
        d.client.balance(address).await?,
        crate::bench::exchange_eth(&d.info).await?,
    );
    let intent = d.withdrawal(AddressRef::Label("desk".into()), "0.02")?;
    d.api
        .post("/v1/transfers/withdrawals", &json!({ "intent": intent }))
        .await?;
    let id = intent.intent.id.clone();
    let at = d
        .api
        .get(&format!("/v1/transfers/{id}?wait=10&until=signed"))
        .await?;
    crate::devnet::kill_coordinator(&d.info, 0);
    d.say(&format!(
        "  coordinator killed with withdrawal {id} {}; restarting it…",
        at["status"].as_str().unwrap_or("")
    ));
    crate::devnet::restart_coordinator(&mut d.info, 0).await?;
    let t = d.api.wait_transfer(&id, true).await?;
    let received = d.client.balance(address).await?.saturating_sub(before);
    let paid = exchange_before - crate::bench::exchange_eth(&d.info).await?;
    d.record(
        "coordinator killed mid-withdrawal and restarted → resumed from its record, looked up at the exchange by order id, paid once",
        t.status.as_str() == "arrived"
            && t.log.iter().any(|l| l.contains("resumed"))
            && received == eth("0.02")?
            && (paid - 0.02 - WITHDRAW_FEE).abs() < 1e-9,
        json!({"transfer": id, "killed_at": at["status"], "received_wei": received.to_string(), "exchange_paid": paid}),
    );
    Ok(())
}

/// Waits until every module reports policy `hash` in force, or reports why not.
pub(crate) async fn policy_state(d: &Demo, hash: &str, want_adopted: bool) -> Result<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v = d.api.get(&format!("/v1/policies/{hash}")).await?;
        let mods = v["modules"].as_array().cloned().unwrap_or_default();
        let adopted = mods
            .iter()
            .filter(|m| m["policy_hash"] == json!(hash))
            .count();
        let refused = mods
            .iter()
            .filter(|m| m["offered"] == json!(hash) && m["error"].is_string())
            .count();
        let done = if want_adopted {
            adopted == mods.len()
        } else {
            refused == mods.len()
        };
        if (done && !mods.is_empty()) || std::time::Instant::now() > deadline {
            return Ok(v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Steps 1 to 4: the signer group, the wallets (trader's and the exchange key), the policy
/// that says what they may do, the exchange key's registration, funding.
pub(crate) async fn prepare(d: &mut Demo, setup: GroupSetup) -> Result<Prepared> {
    prepare_with(d, setup, "5").await
}

/// [`prepare`], funding the wallet with `fund_eth` ETH.
pub(crate) async fn prepare_with(
    d: &mut Demo,
    setup: GroupSetup,
    fund_eth: &str,
) -> Result<Prepared> {
    // 1. A 2-of-3 signer group.
    let members: Vec<&str> = d.info.modules.iter().map(|m| m.id.as_str()).collect();
    let engine = concord_tss::EcdsaEngine::from(setup.engine);
    if !engine.needs_aux() {
        d.say(&format!(
            "Signer group desk runs {engine}: no safe primes, no auxiliary material; its members pin it."
        ));
    } else if setup.insecure_test_primes {
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
            &json!({"id": "desk", "threshold": 2, "members": members, "engine": engine}),
        )
        .await?;
    let aux = g["aux_job_id"].as_str().unwrap_or_default().to_owned();
    let started = std::time::Instant::now();
    d.api.wait_job(&aux, d.json).await?;
    let setup_ms = started.elapsed().as_secs_f64() * 1e3;
    d.record(
        &format!("2-of-3 signer group prepared ({engine}, {setup_ms:.0} ms)"),
        true,
        json!({"group": "desk", "engine": engine, "setup_ms": setup_ms}),
    );

    // 2. Wallets by DKG: the trader's ECDSA wallet and the exchange's sharded withdraw key.
    // A new wallet can do nothing until the policy names it.
    let mut made = Vec::new();
    // Coinbase's CDP key is ES256: a P-256 key, threshold ECDSA (DKLs23) among the modules.
    for scheme in ["ecdsa-secp256k1", "ed25519", "ecdsa-p256"] {
        let job = d
            .api
            .post("/v1/wallets", &json!({"group": "desk", "scheme": scheme}))
            .await?;
        let w = d
            .api
            .wait_job(job["id"].as_str().unwrap_or_default(), true)
            .await?
            .result
            .unwrap_or_default();
        made.push((
            w["id"].as_str().unwrap_or_default().to_owned(),
            w["public_key"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    let [(wallet, pk), (cred_wallet, cred_pk), (coinbase_wallet, _)] =
        <[(String, String); 3]>::try_from(made)
            .map_err(|_| anyhow::anyhow!("three wallets were made"))?;
    let address = concord_chain::evm_address(&hex::decode(&pk)?)?;
    d.record(
        "trader's wallet (ECDSA) and the withdraw keys of Binance (FROST Ed25519) and Coinbase (ES256: threshold ECDSA on P-256, DKLs23) created by DKG: no key ever existed whole",
        true,
        json!({"wallet": wallet, "address": address.to_string(), "credential_wallet": cred_wallet, "coinbase_credential_wallet": coinbase_wallet}),
    );

    // 3. The policy that says what they may do, signed by two of the three admins.
    // Kraken's withdraw key is an HMAC secret: the policy names the module that holds it and
    // the approvals it needs (a held credential), not a group wallet.
    let kraken = crate::demo_exchanges::kraken_held_credential(&d.info)?;
    let kraken_wallet = kraken.wallet_id().to_string();
    let mut doc = json!({
        "admin_quorum": 2,
        "principals": devnet::principals(&d.info.keys_dir)?,
        "wallets": [
            {"wallet": wallet, "label": "desk", "purpose": {"kind": "trading", "deposit_to": ["binance", "kraken", "coinbase"]},
             "refresh": true, "derive": ["m/0"],
             "limits": [
                {"coin": "ETH", "per_transfer": "2", "per_day": "10", "cosign_above": "1", "cosigners": 1},
                {"coin": "CTT", "per_transfer": "1000", "per_day": "5000"}]},
            {"wallet": cred_wallet, "label": "binance-withdraw-key", "refresh": true,
             "purpose": {"kind": "exchange_credential", "exchange": "binance", "withdraw_to": ["desk"]},
             "limits": [{"coin": "ETH", "per_transfer": "1", "per_day": "5"}]},
            {"wallet": coinbase_wallet, "label": "coinbase-withdraw-key",
             "purpose": {"kind": "exchange_credential", "exchange": "coinbase", "withdraw_to": ["desk"]},
             "limits": [{"coin": "ETH", "per_transfer": "1", "per_day": "5"}]},
            {"wallet": kraken_wallet, "label": "kraken-withdraw-key",
             "purpose": {"kind": "exchange_credential", "exchange": "kraken", "withdraw_to": ["desk"]},
             "limits": [{"coin": "ETH", "per_transfer": "1", "per_day": "5"}],
             "held": kraken},
        ],
        "address_book": [{"label": "desk", "target": {"kind": "wallet", "wallet": wallet}}],
    });
    if let Some(o) = doc.as_object_mut() {
        o.remove("version");
    }
    let view = crate::authority::propose(&d.api, doc).await?;
    let hash = view.hash.clone();
    crate::authority::approve(
        &d.api,
        &hash,
        &devnet::principal_key(&d.info.keys_dir, "admin-1")?,
    )
    .await?;
    let v = policy_state(d, &hash, false).await?;
    let refused_all = v["modules"].as_array().is_some_and(|l| {
        l.iter().all(|m| {
            m["policy_hash"] != json!(hash)
                && m["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("1 valid signature"))
        })
    });
    d.record(
        "attack: a policy change signed by one admin (quorum 2) → every module refuses it",
        refused_all,
        json!({"policy": hash, "modules": v["modules"]}),
    );
    crate::authority::approve(
        &d.api,
        &hash,
        &devnet::principal_key(&d.info.keys_dir, "admin-3")?,
    )
    .await?;
    let v = policy_state(d, &hash, true).await?;
    let adopted = v["modules"]
        .as_array()
        .is_some_and(|l| !l.is_empty() && l.iter().all(|m| m["policy_hash"] == json!(hash)));
    d.record(
        &format!("policy v{} signed by admin-1 and admin-3 → every module verified the quorum and enforces it", view.version),
        adopted,
        json!({"policy": hash, "version": view.version}),
    );
    if !d.json
        && let Ok(v) = serde_json::from_value(v)
    {
        crate::authority::show_policy(&v);
    }

    // 4. Register the withdraw key at the exchange (as a user uploads an Ed25519 key), then
    // tell the coordinator which API key it is.
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
        "exchange withdraw key registered at the exchange and the coordinator",
        true,
        json!({"credential_wallet": cred_wallet, "api_key": api_key}),
    );

    // 5. Fund the wallet.
    let eth_tx = devnet::fund(
        &d.client,
        devnet::DEV_KEY_0,
        Asset::Native,
        address,
        eth(fund_eth)?,
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
        &format!("wallet funded with {fund_eth} ETH and 1000 CTT"),
        true,
        json!({"eth_tx": eth_tx, "ctt_tx": fund_ctt}),
    );
    Ok(Prepared { wallet, address })
}

pub(crate) fn every_module_refused(d: &Demo, t: &Value) -> bool {
    let dissent = t["dissenters"].as_object();
    d.info
        .modules
        .iter()
        .all(|m| dissent.is_some_and(|o| o.contains_key(&m.id)))
}

async fn run_flows(d: &mut Demo, wallet: &str, address: Address) -> Result<()> {
    // Deposits of ETH (co-signed by the approver: above 1 ETH the policy asks for it) and CTT.
    for (coin, amount, cosign) in [("ETH", "1.5", &["approver"][..]), ("CTT", "250", &[][..])] {
        let intent = d.deposit(wallet, coin, amount, AgreementRule::All, cosign)?;
        let t = d.transfer("/v1/transfers/deposits", &intent).await?;
        let held =
            t["status"] == "credited" && t["dissenters"].as_object().is_some_and(|m| m.is_empty());
        d.record(
            &format!("deposit {amount} {coin}{}: signed intent checked by every module; same address resolved by each; signed, broadcast, credited",
                if cosign.is_empty() { "" } else { " (co-signed by the approver)" }),
            held,
            transfer_summary(&t),
        );
        if coin == "ETH" {
            // The same signed intent again: the same transfer, never a second payment.
            let again = d
                .api
                .post("/v1/transfers/deposits", &json!({ "intent": intent }))
                .await?;
            d.record(
                "the same signed intent sent again → the same transfer, no second payment",
                again["id"] == t["id"],
                json!({"transfer": again["id"], "status": again["status"]}),
            );
        }
    }

    // Withdraw ETH back to the wallet (an address-book entry), signed by the sharded key.
    let before = d.client.balance(address).await?;
    let intent = d.withdrawal(AddressRef::Label("desk".into()), "0.5")?;
    let t = d.transfer("/v1/transfers/withdrawals", &intent).await?;
    let after = d.client.balance(address).await?;
    let held = t["status"] == "arrived" && after.saturating_sub(before) == eth("0.5")?;
    let mut s = transfer_summary(&t);
    s["balance_increase_wei"] = json!(after.saturating_sub(before).to_string());
    d.record(
        "withdraw 0.5 ETH to address-book entry \"desk\": every module resolved the destination itself and FROST-signed the request (order id = intent id); funds arrived",
        held,
        s,
    );

    // Over the policy's limit per transfer: every module refuses.
    let intent = d.deposit(wallet, "ETH", "3", AgreementRule::All, &["approver"])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    d.record(
        "a 3 ETH deposit (limit 2 per transfer) → refused by every module, nothing broadcast",
        t["status"] == "failed" && t["tx_hash"].is_null() && every_module_refused(d, &t),
        transfer_summary(&t),
    );

    // The attack of the story: a caller with an API token imports a key it holds, then
    // withdraws the exchange's funds to it.
    let key_file = d.info.dir.join("outside.key");
    std::fs::write(&key_file, OUTSIDE_KEY)?;
    let attacker = d.info.dir.join("keys").join("attacker.key");
    let _ = std::fs::remove_file(&attacker);
    crate::authority::write_key(
        &attacker,
        &concord_wire::identity::IdentityKey::generate(&mut rand::rngs::OsRng),
    )?;
    let signer = |key: &Path| crate::authority::SignerArgs {
        key: Some(key.to_path_buf()),
        cosign: vec![],
        expires_in: 600,
    };
    let refused = crate::import::import(
        &d.api,
        "desk",
        "ecdsa-secp256k1",
        &key_file,
        &signer(&attacker),
        true,
    )
    .await;
    let refused_by_all = refused.as_ref().err().is_some_and(|e| {
        let e = format!("{e:#}");
        e.contains("not a principal")
    });
    d.record(
        "attack: import of an outside key with an intent signed by a key the policy does not name → every module refuses",
        refused_by_all,
        json!({"error": refused.err().map(|e| format!("{e:#}"))}),
    );
    let imported = crate::import::import(
        &d.api,
        "desk",
        "ecdsa-secp256k1",
        &key_file,
        &signer(&d.info.keys_dir.join("importer.key")),
        true,
    )
    .await?;
    let _ = std::fs::remove_file(&key_file);
    let outside_wallet = imported["id"].as_str().unwrap_or_default().to_owned();
    let outside_address = concord_chain::evm_address(&hex::decode(
        imported["public_key"].as_str().unwrap_or_default(),
    )?)?;
    let outside_before = d.client.balance(outside_address).await?;
    let intent = d.withdrawal(AddressRef::Wallet(outside_wallet.parse()?), "0.3")?;
    let t = d.transfer("/v1/transfers/withdrawals", &intent).await?;
    let outside_after = d.client.balance(outside_address).await?;
    d.record(
        &format!("attack: the importer's key imports it, a trader asks to withdraw 0.3 ETH to it ({outside_address}) → every module refuses: not in the address book; nothing reaches the exchange"),
        t["status"] == "failed"
            && t["exchange_withdrawal_id"].is_null()
            && every_module_refused(d, &t)
            && outside_after == outside_before,
        transfer_summary(&t),
    );

    // The man in the middle on m3's exchange path forges the deposit address.
    std::fs::write(&d.info.mitm_forge_file, FORGED)?;
    let forged: Address = FORGED.parse()?;
    let forged_before = d.client.balance(forged).await?;
    let intent = d.deposit(wallet, "ETH", "0.25", AgreementRule::All, &[])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    let named = t["dissenters"]
        .as_object()
        .is_some_and(|m| m.contains_key(&d.info.mitm_module));
    d.record(
        "attack, rule all: a man in the middle forges m3's deposit address → transfer refused, m3 named",
        t["status"] == "failed" && named && t["tx_hash"].is_null(),
        transfer_summary(&t),
    );
    let intent = d.deposit(wallet, "ETH", "0.25", AgreementRule::Threshold, &[])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    let named = t["dissenters"]
        .as_object()
        .is_some_and(|m| m.contains_key(&d.info.mitm_module));
    let forged_after = d.client.balance(forged).await?;
    let honest = t["destination"].as_str().map(str::to_lowercase) != Some(FORGED.to_lowercase());
    d.record(
        "attack, rule threshold: funds go to the honest address (2 of 3 agree, each checked the other's signed approvals), m3's dissent recorded, nothing reaches the forged address",
        t["status"] == "credited" && named && honest && forged_after == forged_before,
        transfer_summary(&t),
    );
    let _ = std::fs::remove_file(&d.info.mitm_forge_file);
    Ok(())
}

pub(crate) fn transfer_summary(t: &Value) -> Value {
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
