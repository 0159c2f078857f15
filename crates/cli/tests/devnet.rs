//! The whole system on a local devnet: real anvil, the exchange simulator, the coordinator
//! and three modules as separate processes over mutual TLS. Runs `concord devnet demo`
//! (deposit, withdrawal, the forged-deposit-address attack under both agreement rules), then
//! further attacks on the still-running devnet. Uses the committed INSECURE test primes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;

use concord_exchange::binance::BinanceClient;
use concord_exchange::{HmacSha256Signer, WithdrawRequest};
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
        "deposit 1.5 ETH",
        "deposit 250 CTT",
        "withdraw 0.5 ETH",
        "attack, rule all",
        "attack, rule threshold",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(expected)),
            "missing step {expected}: {names:?}"
        );
    }
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
    let api = |path: &str| format!("{}{path}", devnet["coordinator_url"].as_str().unwrap());
    let token = std::fs::read_to_string(devnet["token_file"].as_str().unwrap()).unwrap();
    let http = reqwest::Client::new();
    let wallets: Value = http
        .get(api("/v1/wallets"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wallet = wallets
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["scheme"] == "ecdsa-secp256k1")
        .unwrap()["id"]
        .clone();
    let t: Value = http
        .post(api("/v1/transfers/withdrawals"))
        .bearer_auth(token.trim())
        .header("Idempotency-Key", "lone-shard")
        .json(&json!({"wallet": wallet, "exchange": "binance", "coin": "ETH", "network": "ETH", "amount": "0.1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = t["id"].as_str().unwrap();
    let t: Value = http
        .get(api(&format!("/v1/transfers/{id}?wait=120")))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["status"], "failed", "{t}");
    assert!(t["exchange_withdrawal_id"].is_null(), "{t}");
}
