//! SIGNED endpoint security against a running simulator: every refusal with Binance's code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use concord_exchange_sim::auth::{split_signature, verify_hmac};

const ACCOUNT: &str = "/api/v3/account";
const ADDRESS: &str = "/sapi/v1/capital/deposit/address";
const WITHDRAW: &str = "/sapi/v1/capital/withdraw/apply";

#[test]
fn documented_hmac_example_verifies_in_the_checker() {
    // rest-api.md, "SIGNED Endpoint Examples for POST /api/v3/order", examples 1 and 3.
    let body = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
    let split = split_signature("", body).unwrap();
    assert!(verify_hmac(
        DOC_SECRET.as_bytes(),
        split.payload.as_bytes(),
        &split.signature
    ));
    let split = split_signature(
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
        "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
    )
    .unwrap();
    assert!(verify_hmac(
        DOC_SECRET.as_bytes(),
        split.payload.as_bytes(),
        &split.signature
    ));
    // The test client's own signer agrees with the documented value.
    let payload = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
    assert_eq!(
        Key::doc().sign(payload),
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    );
}

#[tokio::test]
async fn unsigned_endpoints_answer() {
    let env = Env::new().await;
    let (status, body) = env.get_raw("/api/v3/ping", None, "").await;
    assert_eq!((status, body.clone()), (200, serde_json::json!({})));
    let (status, body) = env.get_raw("/api/v3/time", None, "").await;
    assert_eq!(status, 200);
    let server = body["serverTime"].as_u64().unwrap();
    assert!(server.abs_diff(now_ms()) < 5_000, "{server}");
}

#[tokio::test]
async fn hmac_and_ed25519_requests_are_accepted() {
    let env = Env::new().await;
    for key in [Key::doc(), Key::hmac_rw(), Key::ed()] {
        let (status, body) = env.get(ACCOUNT, &key, &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accountType"], "SPOT");
        let eth = body["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["asset"] == "ETH")
            .unwrap();
        assert_eq!(eth["free"], "5.00000000");
        assert_eq!(eth["locked"], "0.00000000");
    }
    // Uppercase HMAC hex is accepted too (the signature is not case sensitive).
    let ts = now_ms().to_string();
    let payload = format!("timestamp={ts}");
    let signature = Key::hmac_rw().sign(&payload).to_uppercase();
    let (status, body) = env
        .get_raw(
            ACCOUNT,
            Some(HMAC_RW_KEY),
            &format!("{payload}&signature={signature}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A recvWindow with microsecond decimals and a microsecond timestamp.
    let ts_us = (now_ms() * 1000 + 123).to_string();
    let payload = format!("recvWindow=6000.346&timestamp={ts_us}");
    let signature = Key::ed().sign(&payload);
    let (status, body) = env
        .get_raw(
            ACCOUNT,
            Some(ED_KEY),
            &format!("{payload}&signature={signature}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // omitZeroBalances drops bob's zero balances.
    let (status, body) = env
        .get(ACCOUNT, &Key::bob(), &[("omitZeroBalances", "true")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["balances"], serde_json::json!([]));
}

#[tokio::test]
async fn bad_signatures_are_1022() {
    let env = Env::new().await;
    // HMAC signed with the wrong secret.
    let wrong_secret = Key::Hmac {
        api_key: HMAC_RW_KEY.into(),
        secret: "not-the-secret".into(),
    };
    assert_error(&env.get(ACCOUNT, &wrong_secret, &[]).await, 400, -1022);
    // Ed25519 signed by another key.
    let wrong_ed = Key::Ed25519 {
        api_key: ED_KEY.into(),
        signing: ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]),
    };
    assert_error(&env.get(ACCOUNT, &wrong_ed, &[]).await, 400, -1022);
    // An Ed25519 key's request signed with HMAC.
    let hmac_for_ed = Key::Hmac {
        api_key: ED_KEY.into(),
        secret: HMAC_RW_SECRET.into(),
    };
    assert_error(&env.get(ACCOUNT, &hmac_for_ed, &[]).await, 400, -1022);
    // A valid signature over different parameters (tampered after signing).
    let query = signed(&Key::hmac_rw(), &[("coin", "ETH")]).replacen("coin=ETH", "coin=CTT", 1);
    assert_error(
        &env.get_raw(ADDRESS, Some(HMAC_RW_KEY), &query).await,
        400,
        -1022,
    );
    // Signature not the last parameter.
    let ts = now_ms().to_string();
    let payload = format!("timestamp={ts}");
    let sig = Key::hmac_rw().sign(&payload);
    let query = format!("signature={sig}&{payload}");
    assert_error(
        &env.get_raw(ACCOUNT, Some(HMAC_RW_KEY), &query).await,
        400,
        -1022,
    );
    // Garbage signature.
    let query = format!("{payload}&signature=zz");
    assert_error(
        &env.get_raw(ACCOUNT, Some(HMAC_RW_KEY), &query).await,
        400,
        -1022,
    );
}

#[tokio::test]
async fn api_key_refusals() {
    let env = Env::new().await;
    let query = signed(&Key::hmac_rw(), &[]);
    // No header, or a key of the wrong form: -2014.
    assert_error(&env.get_raw(ACCOUNT, None, &query).await, 401, -2014);
    assert_error(
        &env.get_raw(ACCOUNT, Some("short"), &query).await,
        401,
        -2014,
    );
    // A well-formed key nobody registered: -2015.
    let unknown = "Z".repeat(64);
    assert_error(
        &env.get_raw(ACCOUNT, Some(&unknown), &query).await,
        401,
        -2015,
    );
    // A read-only key cannot withdraw: -2015, and nothing is debited.
    let answer = env
        .post_body(
            WITHDRAW,
            &Key::doc(),
            &[
                ("coin", "ETH"),
                ("address", "0x000000000000000000000000000000000000dEaD"),
                ("amount", "0.01"),
            ],
        )
        .await;
    assert_error(&answer, 401, -2015);
    assert_eq!(env.free(&Key::doc(), "ETH").await, "5.00000000");
}

#[tokio::test]
async fn timing_refusals() {
    let env = Env::new().await;
    let key = Key::hmac_rw();
    let sign_at = |ts: u64, extra: &str| {
        let payload = format!("{extra}timestamp={ts}");
        format!("{payload}&signature={}", key.sign(&payload))
    };
    // Older than the default 5000 ms window.
    let stale = sign_at(now_ms() - 6_000, "");
    assert_error(
        &env.get_raw(ACCOUNT, Some(HMAC_RW_KEY), &stale).await,
        400,
        -1021,
    );
    // ... but inside an explicit 10 s window.
    let ok = sign_at(now_ms() - 6_000, "recvWindow=10000&");
    assert_eq!(env.get_raw(ACCOUNT, Some(HMAC_RW_KEY), &ok).await.0, 200);
    // More than a second ahead of the server.
    let ahead = sign_at(now_ms() + 5_000, "");
    let answer = env.get_raw(ACCOUNT, Some(HMAC_RW_KEY), &ahead).await;
    assert_error(&answer, 400, -1021);
    assert!(answer.1["msg"].as_str().unwrap().contains("ahead"));
    // recvWindow above 60000: -1131 on SAPI endpoints, -1102 on the spot API.
    let big = sign_at(now_ms(), "recvWindow=60001&");
    assert_error(
        &env.get_raw(ACCOUNT, Some(HMAC_RW_KEY), &big).await,
        400,
        -1102,
    );
    let payload = format!("coin=ETH&recvWindow=60001&timestamp={}", now_ms());
    let big = format!("{payload}&signature={}", key.sign(&payload));
    assert_error(
        &env.get_raw(ADDRESS, Some(HMAC_RW_KEY), &big).await,
        400,
        -1131,
    );
    // 60000 itself is allowed.
    let max = sign_at(now_ms(), "recvWindow=60000&");
    assert_eq!(env.get_raw(ACCOUNT, Some(HMAC_RW_KEY), &max).await.0, 200);
}

#[tokio::test]
async fn replayed_withdrawals_are_refused() {
    let env = Env::new().await;
    for key in [Key::ed(), Key::hmac_rw()] {
        let body = signed(
            &key,
            &[
                ("coin", "ETH"),
                ("address", "0x000000000000000000000000000000000000dEaD"),
                ("amount", "0.5"),
            ],
        );
        let first = env.post_raw(WITHDRAW, key.api_key(), "", &body).await;
        assert_eq!(first.0, 200, "{}", first.1);
        assert_error(
            &env.post_raw(WITHDRAW, key.api_key(), "", &body).await,
            401,
            -1099,
        );
        // The same parameters in the query string are the same signed request.
        assert_error(
            &env.post_raw(WITHDRAW, key.api_key(), &body, "").await,
            401,
            -1099,
        );
    }
    // Debited twice (once per key), not four times.
    assert_eq!(env.free(&Key::ed(), "ETH").await, "3.99980000");
    // An HMAC signature in upper case is the same request.
    let body = signed(
        &Key::hmac_rw(),
        &[
            ("coin", "ETH"),
            ("address", "0x000000000000000000000000000000000000dEaD"),
            ("amount", "0.25"),
        ],
    );
    assert_eq!(env.post_raw(WITHDRAW, HMAC_RW_KEY, "", &body).await.0, 200);
    let (payload, sig) = body.rsplit_once("&signature=").unwrap();
    let upper = format!("{payload}&signature={}", sig.to_uppercase());
    assert_error(
        &env.post_raw(WITHDRAW, HMAC_RW_KEY, "", &upper).await,
        401,
        -1099,
    );
    assert_eq!(env.free(&Key::ed(), "ETH").await, "3.74970000");
    // By default an identical read is answered again.
    let query = signed(&Key::ed(), &[("coin", "ETH")]);
    assert_eq!(env.get_raw(ADDRESS, Some(ED_KEY), &query).await.0, 200);
    assert_eq!(env.get_raw(ADDRESS, Some(ED_KEY), &query).await.0, 200);
}

#[tokio::test]
async fn replayed_reads_are_refused_when_configured() {
    let anvil = spawn_anvil();
    let mut config = base_config(&anvil, None);
    config.reject_replayed_reads = true;
    let env = Env::start(anvil, config).await;
    for key in [Key::hmac_rw(), Key::ed()] {
        let query = signed(&key, &[("coin", "ETH")]);
        let first = env.get_raw(ADDRESS, Some(key.api_key()), &query).await;
        assert_eq!(first.0, 200, "{}", first.1);
        assert_error(
            &env.get_raw(ADDRESS, Some(key.api_key()), &query).await,
            401,
            -1099,
        );
    }
    // A refused request (bad signature) is not remembered: the genuine one still passes.
    let query = signed(&Key::hmac_rw(), &[]);
    let (payload, sig) = query.rsplit_once("&signature=").unwrap();
    let mut forged = sig.to_string();
    forged.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
    let forged = format!("{payload}&signature={forged}");
    assert_error(
        &env.get_raw(ACCOUNT, Some(HMAC_RW_KEY), &forged).await,
        400,
        -1022,
    );
    assert_eq!(env.get_raw(ACCOUNT, Some(HMAC_RW_KEY), &query).await.0, 200);
}

#[tokio::test]
async fn parameter_refusals() {
    let env = Env::new().await;
    let key = Key::hmac_rw();
    // No timestamp.
    let payload = "coin=ETH";
    let query = format!("{payload}&signature={}", key.sign(payload));
    let answer = env.get_raw(ADDRESS, Some(HMAC_RW_KEY), &query).await;
    assert_error(&answer, 400, -1102);
    assert!(answer.1["msg"].as_str().unwrap().contains("'timestamp'"));
    // No signature.
    let query = format!("coin=ETH&timestamp={}", now_ms());
    let answer = env.get_raw(ADDRESS, Some(HMAC_RW_KEY), &query).await;
    assert_error(&answer, 400, -1102);
    assert!(answer.1["msg"].as_str().unwrap().contains("'signature'"));
    // No coin.
    let answer = env.get(ADDRESS, &key, &[]).await;
    assert_error(&answer, 400, -1102);
    assert!(answer.1["msg"].as_str().unwrap().contains("'coin'"));
    // A timestamp that is not a number.
    let payload = "coin=ETH&timestamp=12ab";
    let query = format!("{payload}&signature={}", key.sign(payload));
    assert_error(
        &env.get_raw(ADDRESS, Some(HMAC_RW_KEY), &query).await,
        400,
        -1100,
    );
    // A parameter twice.
    assert_error(
        &env.get(ADDRESS, &key, &[("coin", "ETH"), ("coin", "CTT")])
            .await,
        400,
        -1101,
    );
    // A parameter the endpoint does not read.
    let answer = env
        .get(ADDRESS, &key, &[("coin", "ETH"), ("symbol", "BTCUSDT")])
        .await;
    assert_error(&answer, 400, -1104);
    // Unknown coin and unknown network.
    assert_error(
        &env.get(ADDRESS, &key, &[("coin", "DOGE")]).await,
        400,
        -4018,
    );
    assert_error(
        &env.get(ADDRESS, &key, &[("coin", "ETH"), ("network", "BSC")])
            .await,
        400,
        -1130,
    );
}
