//! Admin endpoints: registering keys as a Binance user would, crediting, health.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use alloy::primitives::Address;
use common::*;
use serde_json::json;

#[tokio::test]
async fn an_uploaded_ed25519_public_key_signs_requests() {
    let env = Env::new().await;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[21u8; 32]);
    let pem = concord_exchange_sim::auth::ed25519_public_key_pem(&signing.verifying_key());
    let (status, body) = env
        .admin_post(
            "/sim/api-keys",
            ADMIN_TOKEN,
            json!({"account": "bob", "kind": "ed25519", "publicKey": pem, "permissions": ["read", "withdraw"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let api_key = body["apiKey"].as_str().unwrap().to_string();
    assert_eq!(api_key.len(), 64);
    assert!(body.get("secretKey").is_none());
    let key = Key::Ed25519 {
        api_key: api_key.clone(),
        signing,
    };
    assert_eq!(env.free(&key, "ETH").await, "0.00000000");

    // Credit bob, then withdraw with the uploaded key.
    let (status, body) = env
        .admin_post(
            "/sim/credit",
            ADMIN_TOKEN,
            json!({"account": "bob", "coin": "ETH", "amount": "2"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["balance"], "2.00000000");
    let (status, body) = env
        .post_body(
            "/sapi/v1/capital/withdraw/apply",
            &key,
            &[
                ("coin", "ETH"),
                ("address", &Address::repeat_byte(0x61).to_string()),
                ("amount", "1"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(env.free(&key, "ETH").await, "0.99990000");

    // The same key string cannot be registered twice; a hex public key works too.
    let hex_key = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[22u8; 32])
            .verifying_key()
            .as_bytes(),
    );
    let (status, _) = env
        .admin_post(
            "/sim/api-keys",
            ADMIN_TOKEN,
            json!({"account": "bob", "kind": "ed25519", "publicKey": hex_key, "permissions": ["read"], "apiKey": api_key}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, body) = env
        .admin_post(
            "/sim/api-keys",
            ADMIN_TOKEN,
            json!({"account": "bob", "kind": "ed25519", "publicKey": hex_key, "permissions": ["read"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_generated_hmac_key_signs_requests() {
    let env = Env::new().await;
    let (status, body) = env
        .admin_post(
            "/sim/api-keys",
            ADMIN_TOKEN,
            json!({"account": "alice", "kind": "hmac", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let key = Key::Hmac {
        api_key: body["apiKey"].as_str().unwrap().into(),
        secret: body["secretKey"].as_str().unwrap().into(),
    };
    assert_eq!(env.free(&key, "ETH").await, "5.00000000");
}

#[tokio::test]
async fn admin_refusals() {
    let env = Env::new().await;
    let pem = concord_exchange_sim::auth::ed25519_public_key_pem(
        &ed25519_dalek::SigningKey::from_bytes(&[23u8; 32]).verifying_key(),
    );
    let register =
        json!({"account": "bob", "kind": "ed25519", "publicKey": pem, "permissions": ["read"]});
    assert_eq!(
        env.admin_post("/sim/api-keys", "wrong", register.clone())
            .await
            .0,
        401
    );
    let response = env
        .http
        .post(format!("{}/sim/api-keys", env.base))
        .json(&register)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let mut unknown = register.clone();
    unknown["account"] = json!("carol");
    assert_eq!(
        env.admin_post("/sim/api-keys", ADMIN_TOKEN, unknown)
            .await
            .0,
        404
    );
    let mut bad_pem = register.clone();
    bad_pem["publicKey"] = json!("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
    assert_eq!(
        env.admin_post("/sim/api-keys", ADMIN_TOKEN, bad_pem)
            .await
            .0,
        400
    );
    let mut short_key = register.clone();
    short_key["apiKey"] = json!("short");
    assert_eq!(
        env.admin_post("/sim/api-keys", ADMIN_TOKEN, short_key)
            .await
            .0,
        400
    );
    let credit = json!({"account": "bob", "coin": "ETH", "amount": "1"});
    assert_eq!(env.admin_post("/sim/credit", "wrong", credit).await.0, 401);
    let bad_coin = json!({"account": "bob", "coin": "DOGE", "amount": "1"});
    assert_eq!(
        env.admin_post("/sim/credit", ADMIN_TOKEN, bad_coin).await.0,
        400
    );
    assert_eq!(env.free(&Key::bob(), "ETH").await, "0.00000000");
}

#[tokio::test]
async fn health_and_deposit_address() {
    let env = Env::new().await;
    let body = wait_for("a first scan", || async {
        let body: serde_json::Value = env
            .http
            .get(format!("{}/sim/health", env.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["lastScannedBlock"].is_u64().then_some(body)
    })
    .await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["chainId"], env.anvil.chain_id());
    assert_eq!(
        body["hotWallet"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        env.anvil.addresses()[HOT_WALLET_INDEX]
    );
    let response = env
        .http
        .get(format!(
            "{}/sim/deposit-address?account=alice&network=ETH",
            env.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["address"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        env.deposit_address(&Key::ed(), "ETH").await
    );
}
