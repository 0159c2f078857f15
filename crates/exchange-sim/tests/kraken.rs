//! Kraken's funding subset of the simulator, driven by the project's Kraken connector
//! (`concord_exchange::kraken::KrakenClient`) and by hand-signed requests for the attacks:
//! deposit address, deposit credited, withdrawal to a registered withdrawal key executed on
//! chain, balances; refused: a wrong signature, a reused nonce, a Binance key, a read-only
//! key withdrawing, an unknown withdrawal key, an address that is not the key's, `new=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use alloy::primitives::Address;
use alloy::providers::Provider;
use base64::Engine as _;
use common::{ADMIN_TOKEN, Env, eth, wait_for};
use concord_exchange::kraken::{KrakenClient, api_sign};
use concord_exchange::{Connector, ExchangeError, WithdrawRequest, WithdrawalStatus};
use serde_json::{Value, json};

/// The account's own addresses to withdraw to (anvil dev account 5).
fn own_wallet(env: &Env) -> Address {
    common::signer(&env.anvil, 5).address()
}

/// Registers a Kraken key for alice; returns (key, secret).
async fn kraken_key(env: &Env, permissions: &[&str]) -> (String, String) {
    let (status, body) = env
        .admin_post(
            "/sim/api-keys",
            ADMIN_TOKEN,
            json!({"account": "alice", "kind": "kraken", "permissions": permissions}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (
        body["apiKey"].as_str().unwrap().to_owned(),
        body["secretKey"].as_str().unwrap().to_owned(),
    )
}

async fn register_withdraw_key(env: &Env, key: &str, address: &str) -> (u16, Value) {
    env.admin_post(
        "/sim/kraken/withdraw-keys",
        ADMIN_TOKEN,
        json!({"account": "alice", "key": key, "coin": "ETH", "network": "ETH", "address": address}),
    )
    .await
}

/// A hand-made private request: the body as given, signed for `nonce` with `secret`
/// (`sign_secret` lets an attack sign with another secret).
async fn raw(
    env: &Env,
    method: &str,
    api_key: &str,
    sign_secret: &str,
    nonce: u64,
    rest: &str,
) -> Value {
    let path = format!("/0/private/{method}");
    let body = if rest.is_empty() {
        format!("nonce={nonce}")
    } else {
        format!("nonce={nonce}&{rest}")
    };
    let sign = api_sign(&path, nonce, &body, sign_secret).unwrap();
    let r = env
        .http
        .post(format!("{}{path}", env.base))
        .header("API-Key", api_key)
        .header("API-Sign", sign)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    // Kraken answers its errors with HTTP 200 too.
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

fn error_of(v: &Value) -> &str {
    v["error"][0].as_str().unwrap_or("")
}

#[tokio::test]
async fn deposit_and_withdraw_through_the_kraken_connector() {
    let env = Env::new().await;
    let (key, secret) = kraken_key(&env, &["read", "withdraw"]).await;
    let client = KrakenClient::new(&env.base, &key, &secret).unwrap();

    // The deposit address is the account's (as the Binance API gives it), never a new one.
    let deposit = client.deposit_address("ETH", "ETH").await.unwrap();
    let expected = env.deposit_address(&common::Key::doc(), "ETH").await;
    assert_eq!(deposit.address.parse::<Address>().unwrap(), expected);

    // A deposit is credited.
    let before = client.balances().await.unwrap();
    let eth_before = before
        .iter()
        .find(|b| b.asset == "ETH")
        .unwrap()
        .free
        .clone();
    let tx = env.send_eth(3, expected, eth("0.5")).await;
    env.mine(3).await;
    let seen = wait_for("the deposit credited", || async {
        client
            .deposits("ETH", Some(&tx.to_string()))
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.status.is_credited())
    })
    .await;
    assert_eq!(seen.amount.parse::<f64>().unwrap(), 0.5);
    let after = client.balances().await.unwrap();
    let eth_after = after
        .iter()
        .find(|b| b.asset == "ETH")
        .unwrap()
        .free
        .clone();
    assert!(
        (eth_after.parse::<f64>().unwrap() - eth_before.parse::<f64>().unwrap() - 0.5).abs() < 1e-9,
        "{eth_before} → {eth_after}"
    );

    // Without a withdrawal key for the address: refused before anything is sent.
    let to = own_wallet(&env);
    let request = WithdrawRequest {
        coin: "ETH".into(),
        network: "ETH".into(),
        address: to.to_string(),
        amount: "0.25".into(),
        withdraw_order_id: None,
    };
    let err = client.withdraw(&request).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no verified Kraken withdrawal key"),
        "{err}"
    );

    // Registered: withdrawn on chain to that address.
    let (status, body) = register_withdraw_key(&env, "own-wallet", &to.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let balance_before = env.chain.get_balance(to).await.unwrap();
    let refid = client.withdraw(&request).await.unwrap();
    let done = wait_for("the withdrawal completed", || async {
        env.mine(1).await;
        client
            .withdrawal(&refid)
            .await
            .unwrap()
            .filter(|w| w.status == WithdrawalStatus::Completed)
    })
    .await;
    assert_eq!(done.address, to.to_string());
    assert!(done.tx_id.is_some());
    assert_eq!(
        env.chain.get_balance(to).await.unwrap() - balance_before,
        eth("0.25") - eth("0.0001"),
        "Kraken's amount includes its fee"
    );
    // WithdrawStatus lists the net amount and the fee, as Kraken's documentation does.
    assert_eq!(done.amount.parse::<f64>().unwrap(), 0.2499);
    // No client order id at Kraken: looking one up is an error, never "not found".
    assert!(client.withdrawal_by_order_id("x").await.is_err());
}

#[tokio::test]
async fn kraken_refuses_what_its_documentation_says_it_refuses() {
    let env = Env::new().await;
    let (key, secret) = kraken_key(&env, &["read", "withdraw"]).await;
    let (read_key, read_secret) = kraken_key(&env, &["read"]).await;
    let to = own_wallet(&env).to_string();
    register_withdraw_key(&env, "own-wallet", &to).await;
    let other = Address::repeat_byte(0x42).to_string();
    let n = 1_700_000_000_000u64;

    // A signature made with another secret.
    let wrong = base64::engine::general_purpose::STANDARD.encode([9u8; 64]);
    let v = raw(&env, "Balance", &key, &wrong, n, "").await;
    assert_eq!(error_of(&v), "EAPI:Invalid signature", "{v}");
    // Genuine, then the same nonce again, then a smaller one.
    let v = raw(&env, "Balance", &key, &secret, n + 10, "").await;
    assert!(v["error"].as_array().unwrap().is_empty(), "{v}");
    let v = raw(&env, "Balance", &key, &secret, n + 10, "").await;
    assert_eq!(error_of(&v), "EAPI:Invalid nonce", "{v}");
    let v = raw(&env, "Balance", &key, &secret, n + 5, "").await;
    assert_eq!(error_of(&v), "EAPI:Invalid nonce", "{v}");
    // The failed signature did not use up a nonce: n+11 still works.
    let v = raw(&env, "Balance", &key, &secret, n + 11, "").await;
    assert!(v["error"].as_array().unwrap().is_empty(), "{v}");
    // A Binance key is no Kraken key, and an unknown key is refused.
    let v = raw(&env, "Balance", common::HMAC_RW_KEY, &secret, n + 12, "").await;
    assert_eq!(error_of(&v), "EAPI:Invalid key", "{v}");
    // A read-only key cannot withdraw.
    let v = raw(
        &env,
        "Withdraw",
        &read_key,
        &read_secret,
        n,
        "asset=ETH&key=own-wallet&amount=0.1",
    )
    .await;
    assert_eq!(error_of(&v), "EGeneral:Permission denied", "{v}");
    // A withdrawal key nobody registered.
    let v = raw(
        &env,
        "Withdraw",
        &key,
        &secret,
        n + 13,
        "asset=ETH&key=attacker&amount=0.1",
    )
    .await;
    assert_eq!(error_of(&v), "EFunding:Unknown withdraw key", "{v}");
    // The key's address is the only one it withdraws to.
    let rest = format!("asset=ETH&key=own-wallet&amount=0.1&address={other}");
    let v = raw(&env, "Withdraw", &key, &secret, n + 14, &rest).await;
    assert_eq!(error_of(&v), "EFunding:Invalid withdrawal address", "{v}");
    // More than the balance.
    let v = raw(
        &env,
        "Withdraw",
        &key,
        &secret,
        n + 15,
        "asset=XETH&key=own-wallet&amount=1000",
    )
    .await;
    assert_eq!(error_of(&v), "EFunding:Insufficient funds", "{v}");
    // Never a new deposit address.
    let v = raw(
        &env,
        "DepositAddresses",
        &key,
        &secret,
        n + 16,
        "asset=ETH&method=Ether+%28Hex%29&new=true",
    )
    .await;
    assert_eq!(error_of(&v), "EFunding:Too many addresses", "{v}");
    let v = raw(
        &env,
        "DepositAddresses",
        &key,
        &secret,
        n + 17,
        "asset=ETH&method=Ether+%28Hex%29",
    )
    .await;
    assert!(v["result"][0]["address"].as_str().is_some(), "{v}");
    // An unknown method.
    let v = raw(&env, "AddOrder", &key, &secret, n + 18, "").await;
    assert_eq!(error_of(&v), "EGeneral:Unknown method", "{v}");

    // The connector reads the refusal as the named error it is.
    let client = KrakenClient::new(&env.base, &read_key, &read_secret).unwrap();
    let err = client
        .withdraw_to_key("ETH", "own-wallet", "0.1", &to)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExchangeError::Refused { exchange: "kraken", error, .. } if error == "EGeneral:Permission denied"),
        "{err}"
    );
    assert!(!err.retryable());
}
