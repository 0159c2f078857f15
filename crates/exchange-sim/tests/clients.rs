//! Widely used exchange client libraries, unchanged, against the simulator: Kraken's
//! `krakenex` (pinned in `scripts/lib.sh`, installed by `scripts/test.sh` into a venv of its
//! own; `CONCORD_TEST_EXCHANGE_PYTHON` names its python). Without it these tests fail with
//! instructions; they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{ADMIN_TOKEN, Env};
use serde_json::{Value, json};

fn python() -> String {
    std::env::var("CONCORD_TEST_EXCHANGE_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CONCORD_TEST_EXCHANGE_PYTHON is not set: run the tests with scripts/test.sh, or \
             `. scripts/lib.sh && install_exchange_clients` first (it installs krakenex into a \
             venv and sets the variable)"
        )
    })
}

/// Runs `script` with the clients' python; its last output line is JSON.
fn run(script: &str, args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the client script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap()
}

const KRAKENEX: &str = r#"
import json, sys, krakenex
base, key, secret, to = sys.argv[1:5]
k = krakenex.API(key, secret)
k.uri = base  # the only change: where Kraken is
out = {}
out["balance"] = k.query_private("Balance")
out["methods"] = k.query_private("DepositMethods", {"asset": "XETH"})
out["addresses"] = k.query_private("DepositAddresses", {"asset": "XETH", "method": "Ether (Hex)"})
out["withdraw_keys"] = k.query_private("WithdrawAddresses", {"asset": "XETH"})
out["withdraw"] = k.query_private("Withdraw", {"asset": "XETH", "key": "own-wallet", "amount": "0.1", "address": to})
out["unknown_key"] = k.query_private("Withdraw", {"asset": "XETH", "key": "attacker", "amount": "0.1"})
out["status"] = k.query_private("WithdrawStatus", {"asset": "XETH"})
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn krakenex_works_against_the_simulator_unchanged() {
    let env = Env::new().await;
    let (status, body) = env
        .admin_post(
            "/sim/api-keys",
            ADMIN_TOKEN,
            json!({"account": "alice", "kind": "kraken", "permissions": ["read", "withdraw"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let key = body["apiKey"].as_str().unwrap().to_owned();
    let secret = body["secretKey"].as_str().unwrap().to_owned();
    let to = common::signer(&env.anvil, 5).address().to_string();
    let (status, body) = env
        .admin_post(
            "/sim/kraken/withdraw-keys",
            ADMIN_TOKEN,
            json!({"account": "alice", "key": "own-wallet", "coin": "ETH", "network": "ETH", "address": to}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let base = env.base.clone();
    let out = tokio::task::spawn_blocking(move || run(KRAKENEX, &[&base, &key, &secret, &to]))
        .await
        .unwrap();
    let ok = |name: &str| {
        assert_eq!(out[name]["error"], json!([]), "{name}: {}", out[name]);
        out[name]["result"].clone()
    };
    assert_eq!(ok("balance")["XETH"], "5.00000000");
    assert_eq!(ok("methods")[0]["method"], "Ether (Hex)");
    let expected = env.deposit_address(&common::Key::doc(), "ETH").await;
    assert_eq!(
        ok("addresses")[0]["address"]
            .as_str()
            .unwrap()
            .to_lowercase(),
        expected.to_string().to_lowercase()
    );
    assert_eq!(ok("withdraw_keys")[0]["key"], "own-wallet");
    let refid = ok("withdraw")["refid"].as_str().unwrap().to_owned();
    assert_eq!(
        out["unknown_key"]["error"],
        json!(["EFunding:Unknown withdraw key"])
    );
    let status = ok("status");
    let entry = status
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["refid"] == refid.as_str())
        .unwrap();
    assert_eq!(entry["asset"], "XETH");
    assert_eq!(entry["key"], "own-wallet");
}
