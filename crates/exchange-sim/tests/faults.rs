//! Fault injection through `/sim/faults`: withdrawals accepted but answered with a timeout,
//! 5XX answers without side effect, slow answers, exact counts under concurrency, and the
//! admin endpoint's refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const PING: &str = "/api/v3/ping";
const TIME: &str = "/api/v3/time";
const ACCOUNT: &str = "/api/v3/account";
const WITHDRAW: &str = "/sapi/v1/capital/withdraw/apply";
const WHISTORY: &str = "/sapi/v1/capital/withdraw/history";
const FAULTS: &str = "/sim/faults";

async fn set_faults(env: &Env, faults: Value) -> Value {
    let (status, body) = env
        .admin_request(
            Method::POST,
            FAULTS,
            Some(ADMIN_TOKEN),
            Some(&faults.to_string()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn faults(env: &Env) -> Value {
    let (status, body) = env
        .admin_request(Method::GET, FAULTS, Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn no_faults() -> Value {
    json!({"withdrawTimeoutAfterAccept": null, "http5xx": null, "slow": null})
}

/// A POST of a signed form body through `client`; the transport error, if any.
async fn post_with(
    client: &reqwest::Client,
    url: String,
    api_key: String,
    body: String,
) -> Result<(u16, Value), reqwest::Error> {
    let response = client
        .post(url)
        .header("X-MBX-APIKEY", api_key)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// The withdrawals of `key` with this withdrawOrderId.
async fn by_order_id(env: &Env, key: &Key, order_id: &str) -> Vec<Value> {
    let (status, body) = env
        .get(WHISTORY, key, &[("withdrawOrderId", order_id)])
        .await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

/// Waits for the withdrawal with this withdrawOrderId to complete; its history row.
async fn wait_completed(env: &Env, key: &Key, order_id: &str) -> Value {
    wait_for("the withdrawal to complete", || async {
        let rows = by_order_id(env, key, order_id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        let row = rows[0].clone();
        assert_ne!(row["status"], 5, "withdrawal failed: {row}");
        (row["status"] == 6).then_some(row)
    })
    .await
}

/// Checks that the completed withdrawal `row` paid `amount` to `recipient` from the hot wallet.
async fn assert_paid_on_chain(env: &Env, row: &Value, recipient: Address, amount: U256) {
    let tx: B256 = row["txId"].as_str().unwrap().parse().unwrap();
    let receipt = env
        .chain
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.status());
    assert_eq!(receipt.from, env.anvil.addresses()[HOT_WALLET_INDEX]);
    assert_eq!(receipt.to, Some(recipient));
    assert_eq!(env.chain.get_balance(recipient).await.unwrap(), amount);
}

#[tokio::test]
async fn an_accepted_withdrawal_times_out_for_the_client_but_is_executed() {
    let env = Env::new().await;
    let key = Key::ed();
    let recipient = Address::repeat_byte(0x51);
    let body = set_faults(
        &env,
        json!({"withdrawTimeoutAfterAccept": {"count": 1, "delayMs": 3000}}),
    )
    .await;
    assert_eq!(
        body,
        json!({"withdrawTimeoutAfterAccept": {"count": 1, "delayMs": 3000}, "http5xx": null, "slow": null})
    );

    // A client whose timeout is shorter than the delay: it sees a timeout, nothing else.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let recipient_text = recipient.to_string();
    let params = [
        ("coin", "ETH"),
        ("address", recipient_text.as_str()),
        ("amount", "0.25"),
        ("withdrawOrderId", "fault-timeout-1"),
    ];
    let started = Instant::now();
    let error = post_with(
        &impatient,
        format!("{}{WITHDRAW}", env.base),
        key.api_key().into(),
        signed(&key, &params),
    )
    .await
    .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() < Duration::from_millis(3000));
    assert_eq!(faults(&env).await, no_faults());

    // The exchange has the withdrawal: debited, in the history under its withdrawOrderId,
    // and paid on chain.
    let rows = by_order_id(&env, &key, "fault-timeout-1").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["amount"], "0.25000000");
    assert_eq!(env.free(&key, "ETH").await, "4.74990000");
    let row = wait_completed(&env, &key, "fault-timeout-1").await;
    assert_eq!(row["id"], rows[0]["id"]);
    assert_paid_on_chain(&env, &row, recipient, eth("0.25")).await;

    // A blind retry with the same withdrawOrderId is refused: the client must look it up.
    let retry = env.post_body(WITHDRAW, &key, &params).await;
    assert_error(&retry, 400, -4001);
    assert_eq!(env.free(&key, "ETH").await, "4.74990000");
    assert_eq!(by_order_id(&env, &key, "fault-timeout-1").await.len(), 1);
}

#[tokio::test]
async fn an_accepted_withdrawal_is_answered_504_after_the_delay() {
    let env = Env::new().await;
    let key = Key::hmac_rw();
    let recipient = Address::repeat_byte(0x52).to_string();
    set_faults(
        &env,
        json!({"withdrawTimeoutAfterAccept": {"count": 1, "delayMs": 500}}),
    )
    .await;

    // A refused withdrawal passes through at once and leaves the fault in place.
    let started = Instant::now();
    let refused = env
        .post_body(
            WITHDRAW,
            &key,
            &[("coin", "ETH"), ("address", &recipient), ("amount", "100")],
        )
        .await;
    assert_error(&refused, 400, -4026);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(faults(&env).await["withdrawTimeoutAfterAccept"]["count"], 1);

    // An accepted one: 504 with Binance's TIMEOUT error after the delay.
    let started = Instant::now();
    let answer = env
        .post_body(
            WITHDRAW,
            &key,
            &[
                ("coin", "ETH"),
                ("address", &recipient),
                ("amount", "1"),
                ("withdrawOrderId", "fault-504-1"),
            ],
        )
        .await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_error(&answer, 504, -1007);
    assert_eq!(
        answer.1["msg"],
        "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
    );
    let rows = by_order_id(&env, &key, "fault-504-1").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(env.free(&key, "ETH").await, "3.99990000");
    assert_eq!(faults(&env).await, no_faults());

    // Used up: the next withdrawal is answered normally.
    let started = Instant::now();
    let (status, body) = env
        .post_body(
            WITHDRAW,
            &key,
            &[
                ("coin", "ETH"),
                ("address", &recipient),
                ("amount", "1"),
                ("withdrawOrderId", "fault-504-2"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(
        by_order_id(&env, &key, "fault-504-2").await[0]["id"],
        body["id"]
    );
    wait_completed(&env, &key, "fault-504-1").await;
    wait_completed(&env, &key, "fault-504-2").await;
    assert_eq!(
        env.chain
            .get_balance(recipient.parse().unwrap())
            .await
            .unwrap(),
        eth("2")
    );
}

#[tokio::test]
async fn http_5xx_answers_have_no_side_effect_then_service_resumes() {
    let env = Env::new().await;
    let key = Key::ed();
    let recipient = Address::repeat_byte(0x53);
    let recipient_text = recipient.to_string();
    let params = [
        ("coin", "ETH"),
        ("address", recipient_text.as_str()),
        ("amount", "0.25"),
        ("withdrawOrderId", "fault-5xx-1"),
    ];
    let body = set_faults(&env, json!({"http5xx": {"count": 2, "paths": [WITHDRAW]}})).await;
    assert_eq!(
        body["http5xx"],
        json!({"count": 2, "status": 503, "paths": [WITHDRAW]})
    );

    let first_attempt = signed(&key, &params);
    let answer = env
        .post_raw(WITHDRAW, key.api_key(), "", &first_attempt)
        .await;
    assert_error(&answer, 503, -1001);
    assert_eq!(
        answer.1["msg"],
        "Internal error; unable to process your request. Please try again."
    );
    assert_error(&env.post_body(WITHDRAW, &key, &params).await, 503, -1001);
    // Nothing happened: no withdrawal, no debit; other paths are not affected.
    assert!(by_order_id(&env, &key, "fault-5xx-1").await.is_empty());
    assert_eq!(env.free(&key, "ETH").await, "5.00000000");
    assert_eq!(faults(&env).await, no_faults());

    // Normal service: even the first attempt's exact request is accepted (the 503 did not
    // reach the replay check either), once.
    let (status, body) = env
        .post_raw(WITHDRAW, key.api_key(), "", &first_attempt)
        .await;
    assert_eq!(status, 200, "{body}");
    let rows = by_order_id(&env, &key, "fault-5xx-1").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], body["id"]);
    assert_eq!(env.free(&key, "ETH").await, "4.74990000");
    let row = wait_completed(&env, &key, "fault-5xx-1").await;
    assert_paid_on_chain(&env, &row, recipient, eth("0.25")).await;

    // Without paths: every Binance path, never the admin ones; status 500 on request.
    set_faults(&env, json!({"http5xx": {"count": 1, "status": 500}})).await;
    let (status, health) = env
        .admin_request(Method::GET, "/sim/health", None, None)
        .await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(faults(&env).await["http5xx"]["count"], 1);
    let answer = env.get_raw(PING, None, "").await;
    assert_error(&answer, 500, -1000);
    let (status, body) = env.get_raw(PING, None, "").await;
    assert_eq!((status, body), (200, json!({})));
}

#[tokio::test]
async fn slow_answers_take_at_least_the_delay() {
    let env = Env::new().await;
    let key = Key::doc();
    let delay = Duration::from_millis(700);
    set_faults(
        &env,
        json!({"slow": {"count": 2, "delayMs": 700, "paths": [TIME, ACCOUNT]}}),
    )
    .await;

    let started = Instant::now();
    let (status, body) = env.get_raw(TIME, None, "").await;
    assert!(started.elapsed() >= delay);
    assert_eq!(status, 200, "{body}");
    assert!(body["serverTime"].is_u64(), "{body}");

    // Not listed: not delayed.
    let started = Instant::now();
    assert_eq!(env.get_raw(PING, None, "").await.0, 200);
    assert!(started.elapsed() < delay);

    // A signed request is delayed too, then handled normally.
    let started = Instant::now();
    assert_eq!(env.free(&key, "ETH").await, "5.00000000");
    assert!(started.elapsed() >= delay);
    assert_eq!(faults(&env).await, no_faults());

    let started = Instant::now();
    assert_eq!(env.get_raw(TIME, None, "").await.0, 200);
    assert!(started.elapsed() < delay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_consume_exactly_count_faults() {
    let env = Env::new().await;
    let ping_url = format!("{}{PING}", env.base);

    // 5XX: 12 pings at once, 3 faults.
    set_faults(&env, json!({"http5xx": {"count": 3, "paths": [PING]}})).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (client, url) = (env.http.clone(), ping_url.clone());
        tasks.spawn(async move { client.get(url).send().await.unwrap().status().as_u16() });
    }
    let mut statuses = tasks.join_all().await;
    statuses.sort_unstable();
    let mut expected = vec![200u16; 9];
    expected.extend([503; 3]);
    assert_eq!(statuses, expected);
    assert_eq!(faults(&env).await, no_faults());

    // Slow: 6 pings at once, 2 faults.
    let delay = Duration::from_millis(1000);
    set_faults(
        &env,
        json!({"slow": {"count": 2, "delayMs": 1000, "paths": [PING]}}),
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (client, url) = (env.http.clone(), ping_url.clone());
        tasks.spawn(async move {
            let started = Instant::now();
            assert_eq!(client.get(url).send().await.unwrap().status().as_u16(), 200);
            started.elapsed()
        });
    }
    let times = tasks.join_all().await;
    let slow = times.iter().filter(|t| **t >= delay).count();
    assert_eq!(slow, 2, "{times:?}");
    assert_eq!(faults(&env).await, no_faults());

    // Withdraw timeout: 5 valid withdrawals at once, 2 faults.
    set_faults(
        &env,
        json!({"withdrawTimeoutAfterAccept": {"count": 2, "delayMs": 300}}),
    )
    .await;
    let key = Key::hmac_rw();
    let recipient = Address::repeat_byte(0x54).to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..5 {
        let order_id = format!("fault-concurrent-{i}");
        let body = signed(
            &key,
            &[
                ("coin", "ETH"),
                ("address", &recipient),
                ("amount", "0.01"),
                ("withdrawOrderId", &order_id),
            ],
        );
        let (client, url) = (env.http.clone(), format!("{}{WITHDRAW}", env.base));
        let api_key = key.api_key().to_string();
        tasks.spawn(async move { post_with(&client, url, api_key, body).await.unwrap() });
    }
    let answers = tasks.join_all().await;
    let timed_out = answers.iter().filter(|a| a.0 == 504).count();
    let accepted = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!((timed_out, accepted), (2, 3), "{answers:?}");
    for answer in answers.iter().filter(|a| a.0 == 504) {
        assert_error(answer, 504, -1007);
    }
    for i in 0..5 {
        let order_id = format!("fault-concurrent-{i}");
        assert_eq!(by_order_id(&env, &key, &order_id).await.len(), 1);
    }
    assert_eq!(env.free(&key, "ETH").await, "4.94950000");
    assert_eq!(faults(&env).await, no_faults());
}

#[tokio::test]
async fn fault_admin_refuses_bad_tokens_and_bad_bodies() {
    let env = Env::new().await;
    let valid = json!({"http5xx": {"count": 1}}).to_string();
    for token in [None, Some("wrong")] {
        for (method, body) in [
            (Method::POST, Some(valid.as_str())),
            (Method::POST, Some("not json")),
            (Method::GET, None),
            (Method::DELETE, None),
        ] {
            let (status, answer) = env.admin_request(method.clone(), FAULTS, token, body).await;
            assert_eq!(status, 401, "{method} {token:?}: {answer}");
            assert_eq!(answer["error"], "missing or wrong admin bearer token");
        }
    }
    assert_eq!(faults(&env).await, no_faults());

    let refusals = [
        ("not json", "JSON"),
        ("", "JSON"),
        (
            r#"{"withdraw_timeout_after_accept": {"count": 1, "delay_ms": 3000}}"#,
            "unknown field `withdraw_timeout_after_accept`",
        ),
        (r#"{"slow": {"count": 1}}"#, "slow: missing field `delayMs`"),
        (
            r#"{"slow": {"count": 1, "delayMs": 600000}}"#,
            "slow.delayMs: delayMs must be at most 60000",
        ),
        (r#"{"http5xx": {"count": 0}}"#, "http5xx.count"),
        (r#"{"http5xx": {"count": -1}}"#, "http5xx.count"),
        (
            r#"{"http5xx": {"count": 1, "status": 502}}"#,
            "http5xx.status",
        ),
        (r#"{"http5xx": {"count": 1, "paths": []}}"#, "http5xx.paths"),
        (
            r#"{"http5xx": {"count": 1, "paths": ["/sim/credit"]}}"#,
            "http5xx.paths[0]: \"/sim/credit\" is an admin path; faults never apply to /sim/ paths",
        ),
        (
            r#"{"slow": {"count": 1, "delayMs": 1, "paths": ["/api/v3/ping", "/api/v3/order"]}}"#,
            "slow.paths[1]: \"/api/v3/order\" is not a Binance or Kraken path",
        ),
        (
            r#"{"withdrawTimeoutAfterAccept": {"count": 1, "delayMs": 1, "paths": [""]}}"#,
            "withdrawTimeoutAfterAccept.paths: unknown field `paths`",
        ),
    ];
    for (body, expected) in refusals {
        let (status, answer) = env
            .admin_request(Method::POST, FAULTS, Some(ADMIN_TOKEN), Some(body))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
    }
    assert_eq!(faults(&env).await, no_faults());

    // POST replaces the whole set; DELETE and `{}` clear it.
    set_faults(
        &env,
        json!({"slow": {"count": 1, "delayMs": 10}, "http5xx": {"count": 4, "paths": [PING]}}),
    )
    .await;
    let body = set_faults(&env, json!({"slow": {"count": 3, "delayMs": 20}})).await;
    assert_eq!(
        body,
        json!({"withdrawTimeoutAfterAccept": null, "http5xx": null, "slow": {"count": 3, "delayMs": 20}})
    );
    assert_eq!(faults(&env).await, body);
    let (status, body) = env
        .admin_request(Method::DELETE, FAULTS, Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!((status, body), (200, no_faults()));
    assert_eq!(faults(&env).await, no_faults());
    set_faults(&env, json!({"slow": {"count": 3, "delayMs": 20}})).await;
    assert_eq!(set_faults(&env, json!({})).await, no_faults());
}
