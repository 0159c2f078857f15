//! Every transfer exactly once, through crashes, races and faults: a devnet of separate
//! processes (real anvil, the exchange simulator, three modules, the coordinator), the
//! coordinator killed dead at every step of both transfer machines (named failpoints, the
//! `failpoints` feature), parallel requests with one idempotency key, deposits that cannot
//! go out, parallel deposits of one wallet, a deposit refused under rule `all`, a
//! transaction pending past the follow window, an exchange that times out after accepting a
//! withdrawal. Each check counts what really happened: the wallet's transactions on chain
//! (its nonce), balances on chain and at the exchange.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Net, RpcSwitch, eth};
use concord_wire::authority::AgreementRule;
use serde_json::json;

/// The deposit machine's failpoints, in step order.
const DEPOSIT_POINTS: [&str; 9] = [
    "deposit::requested",
    "deposit::queued",
    "deposit::resolving",
    "transfer::sign_job_named",
    "deposit::signing",
    "deposit::signed",
    "deposit::broadcast_unsaved",
    "deposit::broadcast",
    "deposit::confirmed",
];

/// The withdrawal machine's failpoints, in step order (`withdrawal::unknown` needs an
/// exchange timeout, tested with one below).
const WITHDRAWAL_POINTS: [&str; 7] = [
    "withdrawal::requested",
    "withdrawal::signing",
    "transfer::sign_job_named",
    "withdrawal::signed",
    "withdrawal::submit_unsaved",
    "withdrawal::submitted",
    "withdrawal::sent",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_step_each_transfer_happens_exactly_once() {
    let mut net = Net::start("5").await;
    net.kill_coordinator();
    for point in DEPOSIT_POINTS {
        let nonce = net.nonce().await;
        net.start_coordinator(Some(&format!("{point}=return")))
            .await;
        let intent = net.deposit("0.01", AgreementRule::All);
        // The answer may never come: the coordinator can die before it is written.
        let _ = net
            .post("deposits", &intent, &format!("first-{point}"))
            .await;
        assert!(
            net.coordinator_stopped(60).await,
            "{point}: the coordinator never reached the failpoint"
        );
        net.start_coordinator(None).await;
        // The user's retry of the same intent finds the transfer.
        let id = net.post_retrying("deposits", &intent).await;
        assert_eq!(id, intent.intent.id);
        let t = net.wait_final(&id, 90).await;
        assert_eq!(t["status"], "credited", "{point}: {t}");
        assert_eq!(
            net.nonce().await,
            nonce + 1,
            "{point}: exactly one transaction on chain"
        );
        net.kill_coordinator();
    }
    for point in WITHDRAWAL_POINTS {
        let (before, at_exchange) = (net.balance().await, net.exchange_balance("ETH").await);
        net.start_coordinator(Some(&format!("{point}=return")))
            .await;
        let intent = net.withdrawal("0.01");
        let _ = net
            .post("withdrawals", &intent, &format!("first-{point}"))
            .await;
        assert!(
            net.coordinator_stopped(60).await,
            "{point}: the coordinator never reached the failpoint"
        );
        net.start_coordinator(None).await;
        let id = net.post_retrying("withdrawals", &intent).await;
        let t = net.wait_final(&id, 150).await;
        assert_eq!(t["status"], "arrived", "{point}: {t}");
        assert_eq!(
            net.balance().await - before,
            eth("0.01"),
            "{point}: the wallet received exactly one withdrawal"
        );
        // At the exchange: 0.01 and the 0.0001 fee, once.
        let after: f64 = net.exchange_balance("ETH").await.parse().unwrap();
        let at_exchange: f64 = at_exchange.parse().unwrap();
        assert!(
            (at_exchange - after - 0.0101).abs() < 1e-9,
            "{point}: one withdrawal at the exchange ({at_exchange} → {after})"
        );
        net.kill_coordinator();
    }
    // The wallet is usable for the next transfer.
    net.start_coordinator(None).await;
    let id = net
        .post_retrying("deposits", &net.deposit("0.01", AgreementRule::All))
        .await;
    assert_eq!(net.wait_final(&id, 90).await["status"], "credited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_refusals_timeouts_and_slow_blocks_never_pay_twice_nor_wedge_a_wallet() {
    let mut net = Net::start("1").await;
    net.wait_modules().await;

    // 20 parallel POSTs of one deposit with one idempotency key: one transfer, one
    // transaction.
    let nonce = net.nonce().await;
    let intent = net.deposit("0.01", AgreementRule::All);
    let posts = (0..20).map(|_| net.post("deposits", &intent, "one-key"));
    let answers = futures::future::join_all(posts).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(s, v)| {
            assert!(*s == 202 || *s == 200, "{s} {v}");
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one transfer: {ids:?}");
    let id = ids.into_iter().next().unwrap();
    assert_eq!(net.wait_final(&id, 60).await["status"], "credited");
    assert_eq!(net.nonce().await, nonce + 1, "one transaction");
    // The same key and body on another route is another request (and this body is not a
    // withdrawal).
    let (s, v) = net.post("withdrawals", &intent, "one-key").await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("not a withdrawal"),
        "{v}"
    );

    // A deposit the wallet cannot pay (1 ETH funded, 1.5 asked, co-signed as the policy
    // wants above 1): refused before any nonce is bound; three honest deposits then go
    // through.
    let t = net
        .post(
            "deposits",
            &net.intent(deposit_action(&net, "1.5"), &["approver"]),
            "big",
        )
        .await;
    let t = net.wait_final(t.1["id"].as_str().unwrap(), 60).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert!(t["error"].as_str().unwrap().contains("holds"), "{t}");
    assert!(t["raw_tx"].is_null(), "nothing was signed: {t}");
    honest_deposits(&net, 3).await;

    // A deposit refused under rule `all` (a man in the middle forges m3's deposit address):
    // nothing is broadcast, the modules release the nonce they bound, three honest
    // deposits then go through.
    let forge = net.info["mitm_forge_file"].as_str().unwrap().to_owned();
    std::fs::write(&forge, "0x000000000000000000000000000000000000dEaD").unwrap();
    let (_, v) = net
        .post("deposits", &net.deposit("0.01", AgreementRule::All), "mitm")
        .await;
    let t = net.wait_final(v["id"].as_str().unwrap(), 60).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert!(t["dissenters"]["m3"].is_string(), "{t}");
    std::fs::remove_file(&forge).unwrap();
    honest_deposits(&net, 3).await;

    // Ten parallel deposits from one wallet: all credited, one nonce each.
    let first = net.nonce().await;
    let intents: Vec<_> = (0..10)
        .map(|i| net.deposit(&format!("0.00{}", i + 1), AgreementRule::All))
        .collect();
    let keys: Vec<String> = (0..10).map(|i| format!("par-{i}")).collect();
    let posts = intents
        .iter()
        .zip(&keys)
        .map(|(si, k)| net.post("deposits", si, k));
    let answers = futures::future::join_all(posts).await;
    let mut done = Vec::new();
    for (_, v) in &answers {
        done.push(net.wait_final(v["id"].as_str().unwrap(), 120).await);
    }
    // Parallel requests have no order of their own: each got its own nonce, with no gap.
    let mut nonces: Vec<u64> = done
        .iter()
        .map(|t| {
            assert_eq!(t["status"], "credited", "{t}");
            t["nonce"].as_u64().unwrap()
        })
        .collect();
    nonces.sort_unstable();
    assert_eq!(nonces, (first..first + 10).collect::<Vec<_>>());
    assert_eq!(net.nonce().await, first + 10);

    // A transaction still pending when the follow window (4 s here) ends: pending, never
    // failed; mined later, then credited.
    net.anvil("evm_setIntervalMining", json!([0])).await;
    net.anvil("evm_setAutomine", json!([false])).await;
    let (_, v) = net
        .post("deposits", &net.deposit("0.01", AgreementRule::All), "slow")
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let t = net.get(&format!("/v1/transfers/{id}")).await;
    assert_eq!(t["status"], "broadcast", "{t}");
    assert!(
        t["error"].as_str().unwrap_or("").contains("still pending"),
        "{t}"
    );
    net.anvil("evm_setIntervalMining", json!([1])).await;
    assert_eq!(net.wait_final(&id, 60).await["status"], "credited");

    // The exchange times out after accepting a withdrawal: the outcome is unknown, looked up
    // by order id, found: one withdrawal. The user's retry of the same intent finds it.
    net.exchange_faults(json!({"withdrawTimeoutAfterAccept": {"count": 1, "delayMs": 10000}}))
        .await;
    let before = net.balance().await;
    let intent = net.withdrawal("0.02");
    let (_, v) = net.post("withdrawals", &intent, "w-timeout").await;
    let id = v["id"].as_str().unwrap().to_owned();
    let t = net.wait_final(&id, 120).await;
    assert_eq!(t["status"], "arrived", "{t}");
    let log = t["log"].to_string();
    assert!(log.contains("unknown") && log.contains("reconciled"), "{t}");
    assert_eq!(net.balance().await - before, eth("0.02"), "one withdrawal");
    let (_, again) = net.post("withdrawals", &intent, "w-timeout-retry").await;
    assert_eq!(again["id"], json!(id));

    // The exchange answers a withdraw request with a 503 (without taking it): unknown,
    // looked up, not there, the same signed bytes sent again: one withdrawal.
    net.exchange_faults(json!({"http5xx": {"count": 1, "status": 503,
        "paths": ["/sapi/v1/capital/withdraw/apply"]}}))
        .await;
    let before = net.balance().await;
    let (_, v) = net
        .post("withdrawals", &net.withdrawal("0.03"), "w-502")
        .await;
    let t = net.wait_final(v["id"].as_str().unwrap(), 120).await;
    assert_eq!(t["status"], "arrived", "{t}");
    assert!(
        t["log"].to_string().contains("same signed request again"),
        "{t}"
    );
    assert_eq!(net.balance().await - before, eth("0.03"), "one withdrawal");

    // The coordinator's chain RPC dropped, then restored: the deposit waits (never failed)
    // and goes out once, when the chain is back.
    let switch = RpcSwitch::start(net.info["rpc_url"].as_str().unwrap()).await;
    net.kill_coordinator();
    net.set_coordinator_rpc(&switch.url);
    net.start_coordinator(None).await;
    net.wait_modules().await;
    let nonce = net.nonce().await;
    switch.cut();
    let (_, v) = net
        .post(
            "deposits",
            &net.deposit("0.01", AgreementRule::All),
            "rpc-cut",
        )
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let t = net.get(&format!("/v1/transfers/{id}")).await;
    assert!(
        !matches!(t["status"].as_str(), Some("failed" | "credited")),
        "the chain is unreachable: {t}"
    );
    assert_eq!(
        net.nonce().await,
        nonce,
        "nothing sent while the RPC was cut"
    );
    switch.restore();
    assert_eq!(net.wait_final(&id, 90).await["status"], "credited");
    assert_eq!(net.nonce().await, nonce + 1, "one transaction");
    net.kill_coordinator();
}

fn deposit_action(net: &Net, amount: &str) -> concord_wire::authority::Action {
    concord_wire::authority::Action::Deposit {
        wallet: net.wallet.parse().unwrap(),
        exchange: "binance".into(),
        coin: "ETH".into(),
        network: "ETH".into(),
        amount: amount.into(),
        rule: AgreementRule::All,
    }
}

/// `n` deposits one after another, each credited, each one transaction.
async fn honest_deposits(net: &Net, n: u64) {
    let nonce = net.nonce().await;
    for i in 0..n {
        let (_, v) = net
            .post(
                "deposits",
                &net.deposit("0.01", AgreementRule::All),
                &uuid::Uuid::new_v4().to_string(),
            )
            .await;
        let t = net.wait_final(v["id"].as_str().unwrap(), 60).await;
        assert_eq!(t["status"], "credited", "honest deposit {i}: {t}");
    }
    assert_eq!(net.nonce().await, nonce + n);
}
