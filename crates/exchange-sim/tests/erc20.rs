//! ERC-20 deposits and withdrawals with the test token of `concord_chain::test_token`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use common::*;
use concord_chain::erc20::IERC20;
use serde_json::Value;

const HISREC: &str = "/sapi/v1/capital/deposit/hisrec";
const WITHDRAW: &str = "/sapi/v1/capital/withdraw/apply";
const WHISTORY: &str = "/sapi/v1/capital/withdraw/history";

/// anvil, the token deployed by dev account 0, and the simulator configured with it.
async fn env_with_token() -> (Env, Address) {
    let anvil = spawn_anvil();
    let key: [u8; 32] = anvil.keys()[0].to_bytes().into();
    let token = concord_chain::test_token::deploy(&anvil.endpoint(), &key)
        .await
        .unwrap();
    let config = base_config(&anvil, Some(token));
    (Env::start(anvil, config).await, token)
}

async fn token_transfer(env: &Env, token: Address, from: usize, to: Address, value: U256) {
    let provider = wallet_provider(&env.anvil, from);
    let tx = TransactionRequest::default()
        .with_to(token)
        .with_input(IERC20::transferCall { to, value }.abi_encode());
    let receipt = provider
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
}

async fn token_balance(env: &Env, token: Address, owner: Address) -> U256 {
    let call = TransactionRequest::default()
        .with_to(token)
        .with_input(IERC20::balanceOfCall { account: owner }.abi_encode());
    let out = env.chain.call(call).await.unwrap();
    IERC20::balanceOfCall::abi_decode_returns(&out).unwrap()
}

fn only(history: &Value) -> &Value {
    let rows = history.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{history}");
    &rows[0]
}

#[tokio::test]
async fn erc20_deposit_is_credited_after_n_confirmations() {
    let (env, token) = env_with_token().await;
    let key = Key::ed();
    let address = env.deposit_address(&key, "CTT").await;
    assert_eq!(address, env.deposit_address(&key, "ETH").await);
    token_transfer(&env, token, 0, address, eth("50")).await;

    let body = wait_for("the token deposit", || async {
        let (_, body) = env.get(HISREC, &key, &[("coin", "CTT")]).await;
        (!body.as_array().unwrap().is_empty()).then_some(body)
    })
    .await;
    let deposit = only(&body);
    assert_eq!(deposit["status"], 0);
    assert_eq!(deposit["amount"], "50.00000000");
    assert_eq!(deposit["confirmTimes"], "1/3");
    assert_eq!(env.free(&key, "CTT").await, "100.00000000");

    env.mine(1).await;
    wait_for("2/3 confirmations", || async {
        let (_, body) = env.get(HISREC, &key, &[("coin", "CTT")]).await;
        (only(&body)["confirmTimes"] == "2/3").then_some(())
    })
    .await;
    let (_, body) = env.get(HISREC, &key, &[("coin", "CTT")]).await;
    assert_eq!(only(&body)["status"], 0);
    assert_eq!(env.free(&key, "CTT").await, "100.00000000");
    env.mine(1).await;
    wait_for("the token credit", || async {
        let (_, body) = env.get(HISREC, &key, &[("coin", "CTT")]).await;
        (only(&body)["status"] == 1).then_some(())
    })
    .await;
    assert_eq!(env.free(&key, "CTT").await, "150.00000000");
    // No ETH deposit was invented from the token transfer.
    let (_, body) = env.get(HISREC, &key, &[("coin", "ETH")]).await;
    assert_eq!(body, serde_json::json!([]));
}

#[tokio::test]
async fn erc20_withdrawal_executes_on_chain() {
    let (env, token) = env_with_token().await;
    let hot = env.anvil.addresses()[HOT_WALLET_INDEX];
    token_transfer(&env, token, 0, hot, eth("1000")).await;
    let key = Key::hmac_rw();
    let recipient = Address::repeat_byte(0x55);
    let (status, body) = env
        .post_body(
            WITHDRAW,
            &key,
            &[
                ("coin", "CTT"),
                ("network", "ETH"),
                ("address", &recipient.to_string()),
                ("amount", "20"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(env.free(&key, "CTT").await, "79.00000000");
    let row = wait_for("the token withdrawal", || async {
        let (_, body) = env.get(WHISTORY, &key, &[("idList", &id)]).await;
        let row = only(&body).clone();
        assert_ne!(row["status"], 5, "{row}");
        (row["status"] == 6).then_some(row)
    })
    .await;
    assert_eq!(row["transactionFee"], "1.00000000");
    let tx: alloy::primitives::B256 = row["txId"].as_str().unwrap().parse().unwrap();
    let receipt = env
        .chain
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receipt.to, Some(token));
    assert_eq!(token_balance(&env, token, recipient).await, eth("20"));
    assert_eq!(token_balance(&env, token, hot).await, eth("980"));
}

#[tokio::test]
async fn refused_withdrawal_fails_and_is_refunded_once() {
    // The hot wallet holds no CTT: the node refuses the transfer (it would revert).
    let (env, token) = env_with_token().await;
    let key = Key::ed();
    let recipient = Address::repeat_byte(0x56);
    let (status, body) = env
        .post_body(
            WITHDRAW,
            &key,
            &[
                ("coin", "CTT"),
                ("address", &recipient.to_string()),
                ("amount", "20"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let row = wait_for("the withdrawal to fail", || async {
        let (_, body) = env.get(WHISTORY, &key, &[("idList", &id)]).await;
        let row = only(&body).clone();
        assert_ne!(row["status"], 6, "{row}");
        (row["status"] == 5).then_some(row)
    })
    .await;
    assert!(!row["info"].as_str().unwrap().is_empty(), "{row}");
    assert!(row.get("txId").is_none(), "{row}");
    assert_eq!(env.free(&key, "CTT").await, "100.00000000");
    // Later polls do not refund again.
    env.mine(3).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(env.free(&key, "CTT").await, "100.00000000");
    assert_eq!(token_balance(&env, token, recipient).await, U256::ZERO);
}
