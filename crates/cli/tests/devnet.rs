//! The whole system on a local devnet: real anvil, the exchange simulator, the coordinator
//! and three modules as separate processes over mutual TLS. Runs `concord devnet demo`
//! (a policy change under the admins' quorum, deposits and a withdrawal under signed intents,
//! a limit, the import-and-withdraw attack, the forged-deposit-address attack under both
//! agreement rules), then further attacks on the still-running devnet, each refused by every
//! module with its reason in the transfer's record. Uses the committed INSECURE test primes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;

use concord_exchange::binance::BinanceClient;
use concord_exchange::{HmacSha256Signer, WithdrawRequest};
use concord_tss::WalletId;
use concord_wire::authority::{Action, AddressRef, AgreementRule, Intent, SignedIntent};
use concord_wire::identity::IdentityKey;
use serde_json::{Value, json};

fn concord(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(args)
        .output()
        .expect("run concord")
}

struct Down(std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = concord(&["devnet", "down", "--dir", &self.0.display().to_string()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_demo_holds_and_single_credentials_cannot_withdraw() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("devnet");
    let dir_s = dir.display().to_string();
    let out = concord(&[
        "devnet",
        "demo",
        "--dir",
        &dir_s,
        "--insecure-test-primes",
        "--json",
    ]);
    let _down = Down(dir.clone());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no JSON summary; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let summary: Value = serde_json::from_str(line).unwrap();
    let steps = summary["steps"].as_array().unwrap();
    for s in steps {
        assert_eq!(s["held"], true, "step did not hold: {s}");
    }
    assert_eq!(summary["ok"], true, "{summary}");
    assert!(out.status.success());
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    for expected in [
        "attack: a policy change signed by one admin",
        "policy v2 signed by admin-1 and admin-3",
        "deposit 1.5 ETH",
        "the same signed intent sent again",
        "deposit 250 CTT",
        "withdraw 0.5 ETH",
        "a 3 ETH deposit",
        "attack: import of an outside key",
        "attack: the importer's key imports it",
        "attack, rule all",
        "attack, rule threshold",
        "deposit 0.1 ETH to kraken: each module read the address through Kraken's DepositAddresses",
        "attack on kraken, rule all: a man in the middle forges m3's kraken deposit address",
        "deposit 0.1 ETH to coinbase: each module read the address through Coinbase's account address list",
        "attack on coinbase, rule all: a man in the middle forges m3's coinbase deposit address",
        "balances at kraken: read by module",
        "balances at coinbase: read by module",
        "withdraw 0.2 ETH from Coinbase to \"desk\": each module checked the send token's claims",
        "withdraw 0.1 ETH from Kraken to \"desk\": each module resolved withdrawal key",
        "Kraken's answer lost: the next Withdraw executed",
        "trader's wallet (ECDSA) and the withdraw keys of Binance (FROST Ed25519) and Coinbase (ES256: threshold ECDSA on P-256, DKLs23)",
        "20 parallel requests of one withdrawal",
        "5 parallel deposits from one wallet",
        "wallets list: each wallet with its purpose",
        "balances: the wallet's ETH and CTT",
        "coordinator killed mid-withdrawal",
        "policy v3: `concord wallets create --kind multisig",
        "policy v4: the trader's wallet may spend LTC",
        "deposit 1 LTC from the trader's threshold ECDSA wallet as P2WPKH",
        "P2TR: deposit",
        "deposit 1.5 LTC from the 2-of-3 P2WSH wallet",
        "withdraw 2 LTC from the exchange to address-book entry",
        "deposit 0.5 ETH from the 2-of-3 Safe",
        "attack in multisig mode, rule all",
        "attack in multisig mode, rule threshold",
        "coordinator /metrics (parsed as Prometheus text) moved",
        "module m1: /metrics moved",
        "module m2: /metrics moved",
        "module m3: /metrics moved",
        "a copy of m1's audit trail with one byte changed in entry 3",
        "the modules counted the forged-address attacks above as refusals coded destination",
        "the job's record names, for each module whose signature share left it",
        "module m2 keeps its vault key",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(expected)),
            "missing step {expected}: {names:?}"
        );
    }
    // Coinbase's send token was signed ES256 by the group's P-256 key.
    let coinbase = steps
        .iter()
        .find(|s| {
            s["step"]
                .as_str()
                .unwrap()
                .starts_with("withdraw 0.2 ETH from Coinbase")
        })
        .unwrap();
    assert_eq!(coinbase["jwt_alg"], "ES256", "{coinbase}");
    // Rule all: refused with m3 named, nothing broadcast; threshold: m1 and m2 signed.
    let all = steps
        .iter()
        .find(|s| s["step"].as_str().unwrap().starts_with("attack, rule all"))
        .unwrap();
    assert_eq!(all["status"], "failed");
    assert!(
        all["dissenters"]["m3"]
            .as_str()
            .unwrap()
            .contains("0x000000000000000000000000000000000000dEaD")
    );
    assert!(all["tx_hash"].is_null());
    let thr = steps
        .iter()
        .find(|s| {
            s["step"]
                .as_str()
                .unwrap()
                .starts_with("attack, rule threshold")
        })
        .unwrap();
    assert_eq!(thr["approvers"], json!(["m1", "m2"]));

    let devnet = &summary["devnet"];
    let exchange_url = devnet["exchange_url"].as_str().unwrap();
    cli_views_are_the_apis_own(&dir_s);
    let live = Live::new(devnet);
    live.refusals().await;
    // One stolen read key (m1's, from the exchange's configuration): it cannot withdraw.
    let sim: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("exchange/sim.toml")).unwrap()).unwrap();
    let key = &sim["accounts"][0]["api_keys"][0];
    let stolen = BinanceClient::new(
        exchange_url,
        key["api_key"].as_str().unwrap().to_owned(),
        Arc::new(HmacSha256Signer::new(key["secret"].as_str().unwrap()).unwrap()),
    )
    .unwrap();
    let err = stolen
        .withdraw(&WithdrawRequest {
            coin: "ETH".into(),
            network: "ETH".into(),
            address: "0x000000000000000000000000000000000000dEaD".into(),
            amount: "1".into(),
            withdraw_order_id: None,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("-2015"), "{err}");
    // The stolen key still reads: the balance is intact.
    let balances = stolen.balances().await.unwrap();
    assert!(balances.iter().any(|b| b.asset == "ETH"));

    // One module's credential shard: with m2 and m3 stopped, m1 alone cannot sign a
    // withdraw request; the transfer fails and no withdrawal reaches the exchange.
    for m in ["m2", "m3"] {
        let pid = devnet["pids"][m].as_u64().unwrap();
        Command::new("kill").arg(pid.to_string()).status().unwrap();
    }
    // The withdrawal waits for enough modules (it is not failed: they may come back), and
    // nothing reaches the exchange meanwhile.
    let t = live
        .transfer_for(
            "withdrawals",
            live.intent(withdraw("0.1"), "trader", &[]),
            "submitted",
            10,
        )
        .await;
    assert!(
        t["status"] == "requested" || t["status"] == "signing",
        "{t}"
    );
    assert!(t["exchange_withdrawal_id"].is_null(), "{t}");
}

fn withdraw(amount: &str) -> Action {
    Action::Withdraw {
        exchange: "binance".into(),
        coin: "ETH".into(),
        network: "ETH".into(),
        amount: amount.into(),
        to: AddressRef::Label("desk".into()),
        rule: AgreementRule::All,
    }
}

/// The running devnet, through the coordinator's API and the devnet's principal keys.
struct Live {
    url: String,
    token: String,
    keys: std::path::PathBuf,
    http: reqwest::Client,
}

impl Live {
    fn new(devnet: &Value) -> Live {
        Live {
            url: devnet["coordinator_url"].as_str().unwrap().to_owned(),
            token: std::fs::read_to_string(devnet["trader_token_file"].as_str().unwrap())
                .unwrap()
                .trim()
                .to_owned(),
            keys: devnet["keys_dir"].as_str().unwrap().into(),
            http: {
                let pin = devnet["api_pin"]
                    .as_str()
                    .expect("devnet.json has no api_pin");
                let tls =
                    concord_wire::api_tls::pinned_client_config(pin.parse().unwrap()).unwrap();
                reqwest::Client::builder()
                    .use_preconfigured_tls(tls)
                    .build()
                    .unwrap()
            },
        }
    }

    fn key(&self, name: &str) -> IdentityKey {
        let hex_seed = std::fs::read_to_string(self.keys.join(format!("{name}.key"))).unwrap();
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_seed.trim(), &mut *seed).unwrap();
        IdentityKey::from_seed(&seed)
    }

    fn intent(&self, action: Action, by: &str, cosigners: &[&str]) -> SignedIntent {
        let mut si = SignedIntent::new(Intent::new(action, 600), &self.key(by));
        for c in cosigners {
            si.cosign(&self.key(c));
        }
        si
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Posts a transfer and waits until it is final (or reaches `until`).
    async fn transfer(&self, kind: &str, intent: SignedIntent, until: &str) -> Value {
        self.transfer_for(kind, intent, until, 120).await
    }

    /// Posts a transfer and waits at most `secs` until it is final (or reaches `until`).
    async fn transfer_for(
        &self,
        kind: &str,
        intent: SignedIntent,
        until: &str,
        secs: u64,
    ) -> Value {
        let t: Value = self
            .http
            .post(format!("{}/v1/transfers/{kind}", self.url))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", intent.intent.id.clone())
            .json(&json!({ "intent": intent }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = t["id"].as_str().unwrap_or_else(|| panic!("{t}"));
        let until = if until.is_empty() {
            String::new()
        } else {
            format!("&until={until}")
        };
        self.get(&format!("/v1/transfers/{id}?wait={secs}{until}"))
            .await
    }

    /// Attacks through the API with signed intents: each is refused by every module, each
    /// with its reason in the transfer's record, and nothing reaches the chain or the
    /// exchange.
    async fn refusals(&self) {
        let wallets = self.get("/v1/wallets").await;
        let wallet: WalletId = wallets
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["scheme"] == "ecdsa-secp256k1")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let deposit = |amount: &str| Action::Deposit {
            wallet,
            exchange: "binance".into(),
            coin: "ETH".into(),
            network: "ETH".into(),
            amount: amount.into(),
            rule: AgreementRule::All,
        };
        let refused_by_all = |t: &Value, why: &str| {
            assert_eq!(t["status"], "failed", "{t}");
            assert!(
                t["tx_hash"].is_null() && t["exchange_withdrawal_id"].is_null(),
                "{t}"
            );
            for m in ["m1", "m2", "m3"] {
                let reason = t["dissenters"][m]
                    .as_str()
                    .unwrap_or_else(|| panic!("{m} is not named: {t}"));
                assert!(reason.contains(why), "{m}: wanted {why:?} in {reason:?}");
            }
        };
        // An intent signed by a key the policy does not name.
        let stranger = IdentityKey::generate(&mut rand::rngs::OsRng);
        let si = SignedIntent::new(Intent::new(deposit("0.1"), 600), &stranger);
        refused_by_all(
            &self.transfer("deposits", si, "").await,
            "is not a principal",
        );
        // An importer asking for a deposit.
        let si = self.intent(deposit("0.1"), "importer", &[]);
        refused_by_all(&self.transfer("deposits", si, "").await, "role 'trader'");
        // An expired intent.
        let mut i = Intent::new(deposit("0.1"), 600);
        i.created_at -= 700;
        i.expires_at = i.created_at + 600;
        let si = SignedIntent::new(i, &self.key("trader"));
        refused_by_all(&self.transfer("deposits", si, "").await, "expired");
        // Above 1 ETH without the approver's co-signature.
        let si = self.intent(deposit("1.2"), "trader", &[]);
        refused_by_all(
            &self.transfer("deposits", si, "").await,
            "needs 1 approver co-signature",
        );
        // The withdraw key's rolling 24 h limit (5 ETH; 0.53 withdrawn by the demo): four
        // withdrawals of 1 ETH are signed and sent, the fifth of 0.6 crosses the limit.
        for _ in 0..4 {
            let t = self
                .transfer(
                    "withdrawals",
                    self.intent(withdraw("1"), "trader", &[]),
                    "submitted",
                )
                .await;
            assert!(t["exchange_withdrawal_id"].is_string(), "{t}");
        }
        let t = self
            .transfer(
                "withdrawals",
                self.intent(withdraw("0.6"), "trader", &[]),
                "",
            )
            .await;
        refused_by_all(&t, "over its daily limit of 5 ETH");
    }
}

/// Runs `concord --devnet DIR ARGS --json` and reads its output as the API type `T`; what it
/// printed is exactly `T` printed again (the shape is the API's, not walked by key).
fn cli_json<T: serde::de::DeserializeOwned + serde::Serialize>(dir: &str, args: &[&str]) -> T {
    let mut all = vec!["--devnet", dir];
    all.extend_from_slice(args);
    all.push("--json");
    let out = concord(&all);
    assert!(
        out.status.success(),
        "concord {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("concord {all:?} printed no JSON ({e})"));
    let typed: T = serde_json::from_value(printed.clone())
        .unwrap_or_else(|e| panic!("concord {all:?}: not its API type: {e}\n{printed}"));
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        printed,
        "concord {all:?}"
    );
    typed
}

/// Every `--json` output of the commands that read the coordinator deserialises into the
/// API type it came from; the tables a person reads show the same things.
fn cli_views_are_the_apis_own(dir: &str) {
    use concord_coordinator::records::{GroupRecord, JobRecord, TransferRecord};
    use concord_coordinator::{JobView, ModuleView, WalletView};
    let wallets: Vec<WalletView> = cli_json(dir, &["wallets", "list"]);
    let trader = wallets
        .iter()
        .find(|w| !w.addresses.is_empty())
        .expect("an ECDSA wallet with an address");
    let prefix = &trader.wallet.id[..8];
    let one: WalletView = cli_json(dir, &["wallets", "show", prefix]);
    assert_eq!(one.wallet.id, trader.wallet.id);
    let groups: Vec<GroupRecord> = cli_json(dir, &["groups", "list"]);
    assert!(groups.iter().any(|g| g.id == "desk"));
    let _: GroupRecord = cli_json(dir, &["groups", "show", "desk"]);
    let modules: Vec<ModuleView> = cli_json(dir, &["modules", "list"]);
    assert_eq!(modules.len(), 3);
    let jobs: Vec<JobRecord> = cli_json(dir, &["jobs", "list", "--kind", "sign", "--limit", "5"]);
    assert!(!jobs.is_empty() && jobs.len() <= 5 && jobs.iter().all(|j| j.kind.as_str() == "sign"));
    let job: JobView = cli_json(dir, &["jobs", &jobs[0].id]);
    assert_eq!(job.job.id, jobs[0].id);
    let transfers: Vec<TransferRecord> = cli_json(dir, &["transfers"]);
    let _: TransferRecord = cli_json(dir, &["transfers", "show", &transfers[0].id]);
    let balances: Value = cli_json(dir, &["balances"]);
    let chain: Vec<concord_coordinator::records::WalletBalances> =
        serde_json::from_value(balances["wallets"].clone()).unwrap();
    assert!(
        chain
            .iter()
            .any(|b| b.address == trader.addresses[0].address)
    );
    // The UTXO wallets' coins too (the P2WSH vault received LTC in the demo), read from the
    // coordinator's node.
    assert!(
        chain.iter().any(|b| b.network == "LTC"
            && b.address.starts_with("rltc1q")
            && b.balances.iter().any(|c| c.coin == "LTC" && c.raw != "0")),
        "{balances}"
    );
    let _: concord_coordinator::records::ExchangeBalances =
        serde_json::from_value(balances["exchange"].clone()).unwrap();
    let _: Option<concord_coordinator::policy::PolicyView> = cli_json(dir, &["policy", "show"]);

    // For people: headers, the wallet's address, a prefix that resolves.
    let human = |args: &[&str]| {
        let mut all = vec!["--devnet", dir];
        all.extend_from_slice(args);
        let out = concord(&all);
        assert!(out.status.success(), "concord {all:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let list = human(&["wallets", "list"]);
    assert!(list.starts_with("WALLET"), "{list}");
    assert!(list.contains(&trader.addresses[0].address), "{list}");
    assert!(list.contains("binance withdraw key"), "{list}");
    let b = human(&["balances", "--wallet", prefix]);
    assert!(b.starts_with("WHERE") && b.contains("chain ETH"), "{b}");
    let t = human(&["transfers"]);
    assert!(t.starts_with("TRANSFER") && t.contains("credited"), "{t}");
}
