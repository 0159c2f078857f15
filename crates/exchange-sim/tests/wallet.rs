//! Deposits and withdrawals over a real anvil.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use common::*;
use serde_json::Value;

const HISREC: &str = "/sapi/v1/capital/deposit/hisrec";
const WITHDRAW: &str = "/sapi/v1/capital/withdraw/apply";
const WHISTORY: &str = "/sapi/v1/capital/withdraw/history";

#[tokio::test]
async fn deposit_address_is_stable_and_shared_by_the_coins_of_a_network() {
    let env = Env::new().await;
    let key = Key::hmac_rw();
    let first = env.deposit_address(&key, "ETH").await;
    for _ in 0..3 {
        assert_eq!(env.deposit_address(&key, "ETH").await, first);
    }
    assert_eq!(env.deposit_address(&Key::ed(), "CTT").await, first);
    let (status, body) = env
        .get(
            "/sapi/v1/capital/deposit/address",
            &key,
            &[("coin", "ETH"), ("network", "ETH")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["address"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        first
    );
    assert_eq!(body["coin"], "ETH");
    assert_eq!(body["tag"], "");
    // Derived from the seed, the account and the network.
    assert_eq!(
        first,
        concord_exchange_sim::deposit_address(SEED, "alice", "ETH")
    );
    let bob = env.deposit_address(&Key::bob(), "ETH").await;
    assert_ne!(bob, first);
    assert_eq!(
        bob,
        concord_exchange_sim::deposit_address(SEED, "bob", "ETH")
    );
}

fn only(history: &Value) -> &Value {
    let rows = history.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{history}");
    &rows[0]
}

#[tokio::test]
async fn eth_deposit_is_pending_then_credited_after_n_confirmations() {
    let env = Env::new().await;
    let key = Key::hmac_rw();
    let address = env.deposit_address(&key, "ETH").await;
    let tx = env.send_eth(0, address, eth("1.5")).await;

    let row = wait_for("the deposit to be seen", || async {
        let (status, body) = env.get(HISREC, &key, &[]).await;
        assert_eq!(status, 200, "{body}");
        (!body.as_array().unwrap().is_empty()).then_some(body)
    })
    .await;
    let deposit = only(&row);
    assert_eq!(deposit["status"], 0, "{deposit}");
    assert_eq!(deposit["confirmTimes"], "1/3");
    assert_eq!(deposit["amount"], "1.50000000");
    assert_eq!(deposit["coin"], "ETH");
    assert_eq!(deposit["network"], "ETH");
    assert_eq!(deposit["txId"], tx.to_string());
    assert_eq!(
        deposit["address"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        address
    );
    assert_eq!(env.free(&key, "ETH").await, "5.00000000");

    env.mine(1).await;
    wait_for("2/3 confirmations", || async {
        let (_, body) = env.get(HISREC, &key, &[]).await;
        (only(&body)["confirmTimes"] == "2/3").then_some(())
    })
    .await;
    let (_, body) = env.get(HISREC, &key, &[]).await;
    assert_eq!(only(&body)["status"], 0);
    assert_eq!(env.free(&key, "ETH").await, "5.00000000");

    env.mine(1).await;
    wait_for("the credit", || async {
        let (_, body) = env.get(HISREC, &key, &[]).await;
        (only(&body)["status"] == 1).then_some(())
    })
    .await;
    let (_, body) = env.get(HISREC, &key, &[("includeSource", "true")]).await;
    let deposit = only(&body);
    assert_eq!(deposit["confirmTimes"], "3/3");
    assert!(deposit["completeTime"].is_u64());
    assert_eq!(
        deposit["sourceAddress"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        env.anvil.addresses()[0]
    );
    assert_eq!(env.free(&key, "ETH").await, "6.50000000");

    // More blocks: still one deposit, credited once.
    env.mine(5).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (_, body) = env.get(HISREC, &key, &[]).await;
    only(&body);
    assert_eq!(env.free(&key, "ETH").await, "6.50000000");
    // Filters.
    let (_, body) = env.get(HISREC, &key, &[("status", "0")]).await;
    assert_eq!(body, serde_json::json!([]));
    let (_, body) = env.get(HISREC, &key, &[("txId", &tx.to_string())]).await;
    only(&body);
    let (_, body) = env.get(HISREC, &key, &[("coin", "CTT")]).await;
    assert_eq!(body, serde_json::json!([]));
    // bob sees none of it.
    let (_, body) = env.get(HISREC, &Key::bob(), &[]).await;
    assert_eq!(body, serde_json::json!([]));
}

async fn wait_completed(env: &Env, key: &Key, id: &str) -> Value {
    wait_for("the withdrawal to complete", || async {
        let (status, body) = env.get(WHISTORY, key, &[("idList", id)]).await;
        assert_eq!(status, 200, "{body}");
        let row = only(&body).clone();
        assert_ne!(row["status"], 5, "withdrawal failed: {row}");
        (row["status"] == 6).then_some(row)
    })
    .await
}

#[tokio::test]
async fn eth_withdrawal_executes_on_chain() {
    let env = Env::new().await;
    let key = Key::ed();
    let recipient = Address::repeat_byte(0x42);
    assert_eq!(env.chain.get_balance(recipient).await.unwrap(), U256::ZERO);

    // Parameters in the form body.
    let (status, body) = env
        .post_body(
            WITHDRAW,
            &key,
            &[
                ("coin", "ETH"),
                ("network", "ETH"),
                ("address", &recipient.to_string()),
                ("amount", "0.25"),
                ("withdrawOrderId", "concord-1"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(env.free(&key, "ETH").await, "4.74990000");

    let row = wait_completed(&env, &key, &id).await;
    assert_eq!(row["amount"], "0.25000000");
    assert_eq!(row["transactionFee"], "0.00010000");
    assert_eq!(row["coin"], "ETH");
    assert_eq!(row["network"], "ETH");
    assert_eq!(row["withdrawOrderId"], "concord-1");
    assert!(row["completeTime"].is_string(), "{row}");
    let tx: alloy::primitives::B256 = row["txId"].as_str().unwrap().parse().unwrap();
    let receipt = env
        .chain
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.status());
    assert_eq!(receipt.from, env.anvil.addresses()[HOT_WALLET_INDEX]);
    assert_eq!(receipt.to, Some(recipient));
    assert_eq!(env.chain.get_balance(recipient).await.unwrap(), eth("0.25"));

    // Parameters in the query string, HMAC key; found by withdrawOrderId.
    let (status, body) = env
        .post_query(
            WITHDRAW,
            &Key::hmac_rw(),
            &[
                ("coin", "ETH"),
                ("address", &recipient.to_string().to_lowercase()),
                ("amount", "0.1"),
                ("withdrawOrderId", "concord-2"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id2 = body["id"].as_str().unwrap().to_string();
    wait_completed(&env, &key, &id2).await;
    assert_eq!(env.chain.get_balance(recipient).await.unwrap(), eth("0.35"));
    let (_, body) = env
        .get(WHISTORY, &key, &[("withdrawOrderId", "concord-2")])
        .await;
    assert_eq!(only(&body)["id"], id2.as_str());
    let (_, body) = env.get(WHISTORY, &key, &[("coin", "ETH")]).await;
    assert_eq!(body.as_array().unwrap().len(), 2);
    assert_eq!(body[0]["id"], id2.as_str(), "newest first");
    assert_eq!(env.free(&key, "ETH").await, "4.64980000");

    // A withdrawOrderId is used once.
    let answer = env
        .post_body(
            WITHDRAW,
            &key,
            &[
                ("coin", "ETH"),
                ("address", &recipient.to_string()),
                ("amount", "0.1"),
                ("withdrawOrderId", "concord-2"),
            ],
        )
        .await;
    assert_error(&answer, 400, -4001);
    // Mixed: coin in the query string, the rest in the body; the query string is signed
    // together with the body.
    let ts = now_ms();
    let query = "coin=ETH";
    let body_params = format!("address={recipient}&amount=0.01&timestamp={ts}");
    let signature = key.sign(&format!("{query}{body_params}"));
    let answer = env
        .post_raw(
            WITHDRAW,
            ED_KEY,
            query,
            &format!("{body_params}&signature={signature}"),
        )
        .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
}

#[tokio::test]
async fn withdraw_refusals() {
    let env = Env::new().await;
    let key = Key::hmac_rw();
    let to = Address::repeat_byte(0x43).to_string();
    let apply = |coin: &'static str, address: String, amount: &'static str| {
        let key = key.clone();
        let env = &env;
        async move {
            env.post_body(
                WITHDRAW,
                &key,
                &[("coin", coin), ("address", &address), ("amount", amount)],
            )
            .await
        }
    };
    assert_error(&apply("ETH", to.clone(), "5").await, 400, -4026); // 5 + fee > 5
    assert_error(&apply("ETH", to.clone(), "100").await, 400, -4026);
    assert_error(&apply("DOGE", to.clone(), "1").await, 400, -4018);
    assert_error(&apply("ETH", to.clone(), "0.0001").await, 400, -4022);
    assert_error(&apply("ETH", to.clone(), "0").await, 400, -4022);
    assert_error(
        &apply("ETH", to.clone(), "1.0000000000000000001").await,
        400,
        -1111,
    );
    assert_error(&apply("ETH", to.clone(), "1e3").await, 400, -1100);
    assert_error(&apply("ETH", "0x1234".into(), "1").await, 400, -4033);
    assert_error(
        &apply("ETH", "not-an-address".into(), "1").await,
        400,
        -4033,
    );
    // A mixed-case address with a wrong checksum.
    let bad_checksum = "0x52908400098527886E0F7030069857D2E4169EE7".replace('E', "e");
    assert_error(&apply("ETH", bad_checksum, "1").await, 400, -4033);
    // Missing amount, wrong network, a tag on an EVM network.
    let answer = env
        .post_body(WITHDRAW, &key, &[("coin", "ETH"), ("address", &to)])
        .await;
    assert_error(&answer, 400, -1102);
    let answer = env
        .post_body(
            WITHDRAW,
            &key,
            &[
                ("coin", "ETH"),
                ("network", "TRX"),
                ("address", &to),
                ("amount", "1"),
            ],
        )
        .await;
    assert_error(&answer, 400, -1130);
    let answer = env
        .post_body(
            WITHDRAW,
            &key,
            &[
                ("coin", "ETH"),
                ("address", &to),
                ("amount", "1"),
                ("addressTag", "7"),
            ],
        )
        .await;
    assert_error(&answer, 400, -4106);
    // bob has nothing and only reads.
    let answer = env
        .post_body(
            WITHDRAW,
            &Key::bob(),
            &[("coin", "ETH"), ("address", &to), ("amount", "1")],
        )
        .await;
    assert_error(&answer, 401, -2015);
    // Nothing moved.
    assert_eq!(env.free(&key, "ETH").await, "5.00000000");
    let (_, body) = env.get(WHISTORY, &key, &[]).await;
    assert_eq!(body, serde_json::json!([]));
}

#[tokio::test]
async fn concurrent_withdrawals_never_overdraw() {
    let anvil = spawn_anvil();
    let mut config = base_config(&anvil, None);
    config.accounts[0].balances.insert("ETH".into(), "1".into());
    let env = Env::start(anvil, config).await;
    let to = Address::repeat_byte(0x44).to_string();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let http = env.http.clone();
        let base = env.base.clone();
        let to = to.clone();
        tasks.push(tokio::spawn(async move {
            let key = if i % 2 == 0 {
                Key::ed()
            } else {
                Key::hmac_rw()
            };
            let order = format!("order-{i}");
            let body = signed(
                &key,
                &[
                    ("coin", "ETH"),
                    ("address", &to),
                    ("amount", "0.1"),
                    ("withdrawOrderId", &order),
                ],
            );
            let response = http
                .post(format!("{base}{WITHDRAW}"))
                .header("X-MBX-APIKEY", key.api_key())
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let value: Value = response.json().await.unwrap();
            (status, value)
        }));
    }
    let mut accepted = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        if status == 200 {
            accepted += 1;
        } else {
            assert_eq!(body["code"], -4026, "{body}");
            refused += 1;
        }
    }
    // 9 × (0.1 + 0.0001) = 0.9009 ≤ 1 < 10 × 0.1001.
    assert_eq!((accepted, refused), (9, 11));
    assert_eq!(env.free(&Key::ed(), "ETH").await, "0.09910000");
    wait_for("every withdrawal to complete", || async {
        let (_, body) = env.get(WHISTORY, &Key::ed(), &[("status", "6")]).await;
        (body.as_array().unwrap().len() == 9).then_some(())
    })
    .await;
    assert_eq!(
        env.chain
            .get_balance(Address::repeat_byte(0x44))
            .await
            .unwrap(),
        eth("0.9")
    );
}
