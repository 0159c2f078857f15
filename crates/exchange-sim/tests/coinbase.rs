//! Coinbase's App API subset of the simulator, driven by the project's Coinbase connector
//! (`concord_exchange::coinbase::CoinbaseClient`) with ES256 and Ed25519 CDP keys, and by
//! hand-made tokens for the attacks: a token for another request, expired, too long-lived,
//! replayed, signed by another key, another key's name, a read-only key sending; and a CDP
//! Ed25519 key that is a 2-of-3 FROST group's, whose send token one member cannot make.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use alloy::primitives::Address;
use alloy::providers::Provider;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use common::{ADMIN_TOKEN, Env, eth, wait_for};
use concord_exchange::coinbase::{
    CdpKey, CdpSigner, CoinbaseClient, JwtAlg, RequestClaims, finish,
};
use concord_exchange::{Connector, ExchangeError, WithdrawRequest, WithdrawalStatus};
use serde_json::{Value, json};

/// Registers a CDP key for `account` (the simulator makes it); returns the client's key.
async fn cdp_key(env: &Env, account: &str, kind: &str, permissions: &[&str]) -> CdpKey {
    let name = format!("organizations/test/apiKeys/{}-{}", kind, uuid_like());
    let (status, body) = env
        .admin_post(
            "/sim/api-keys",
            ADMIN_TOKEN,
            json!({"account": account, "kind": kind, "permissions": permissions, "apiKey": name}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    CdpKey::from_secret(&name, body["secretKey"].as_str().unwrap()).unwrap()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!("{:08}", N.fetch_add(1, Ordering::SeqCst))
}

fn host(env: &Env) -> String {
    env.base.trim_start_matches("http://").to_owned()
}

fn now() -> u64 {
    common::now_ms() / 1000
}

/// A raw request with `token`.
async fn raw(
    env: &Env,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = env
        .http
        .request(method.parse().unwrap(), format!("{}{path}", env.base))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn error_id(v: &Value) -> &str {
    v["errors"][0]["id"].as_str().unwrap_or("")
}

#[tokio::test]
async fn deposit_and_send_through_the_coinbase_connector() {
    let env = Env::new().await;
    for kind in ["cdp-es256", "cdp-ed25519"] {
        let key = cdp_key(&env, "alice", kind, &["read", "withdraw"]).await;
        let alg = key.alg();
        let client = CoinbaseClient::new(&env.base, Arc::new(key)).unwrap();
        // The ETH account's address: the account's deposit address (never a created one).
        let deposit = client.deposit_address("ETH", "ETH").await.unwrap();
        let expected = env.deposit_address(&common::Key::doc(), "ETH").await;
        assert_eq!(
            deposit.address.parse::<Address>().unwrap(),
            expected,
            "{alg:?}"
        );
    }
    let key = cdp_key(&env, "alice", "cdp-es256", &["read", "withdraw"]).await;
    let client = CoinbaseClient::new(&env.base, Arc::new(key)).unwrap();
    let to_deposit = env.deposit_address(&common::Key::doc(), "ETH").await;

    // Received crypto is credited and listed.
    let tx = env.send_eth(3, to_deposit, eth("0.5")).await;
    env.mine(3).await;
    wait_for("the deposit credited", || async {
        client
            .deposits("ETH", Some(&tx.to_string()))
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.status.is_credited())
    })
    .await;
    let balances = client.balances().await.unwrap();
    assert_eq!(
        balances
            .iter()
            .find(|b| b.asset == "ETH")
            .unwrap()
            .free
            .parse::<f64>()
            .unwrap(),
        5.5
    );

    // A send, with an idem: executed on chain; sent again with the same idem, the same send.
    let to = common::signer(&env.anvil, 5).address();
    let before = env.chain.get_balance(to).await.unwrap();
    let request = WithdrawRequest {
        coin: "ETH".into(),
        network: "ETH".into(),
        address: to.to_string(),
        amount: "0.25".into(),
        withdraw_order_id: Some("6f8f9b1e-8f7a-4c1d-9a51-3f0f1c2d3e4f".into()),
    };
    let id = client.withdraw(&request).await.unwrap();
    let again = client.withdraw(&request).await.unwrap();
    assert_eq!(id, again, "one idem, one send");
    let done = wait_for("the send completed", || async {
        env.mine(1).await;
        client
            .withdrawal(&id)
            .await
            .unwrap()
            .filter(|w| w.status == WithdrawalStatus::Completed)
    })
    .await;
    assert_eq!(done.address, to.to_string());
    assert_eq!(done.amount.parse::<f64>().unwrap(), 0.25);
    assert_eq!(
        env.chain.get_balance(to).await.unwrap() - before,
        eth("0.25")
    );
    let by_idem = client
        .withdrawal_by_order_id("6f8f9b1e-8f7a-4c1d-9a51-3f0f1c2d3e4f")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_idem.id, id);
    assert!(
        client
            .withdrawal_by_order_id("unknown")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn coinbase_refuses_tokens_that_are_not_for_this_request() {
    let env = Env::new().await;
    let key = cdp_key(&env, "alice", "cdp-ed25519", &["read", "withdraw"]).await;
    let other = cdp_key(&env, "alice", "cdp-ed25519", &["read", "withdraw"]).await;
    let reader = cdp_key(&env, "alice", "cdp-es256", &["read"]).await;
    let client = CoinbaseClient::new(
        &env.base,
        Arc::new(cdp_key(&env, "alice", "cdp-es256", &["read"]).await),
    )
    .unwrap();
    let account = client.account_id("ETH").await.unwrap();
    let send_path = format!("/v2/accounts/{account}/transactions");
    let to = common::signer(&env.anvil, 5).address().to_string();
    let body = json!({"type": "send", "to": to, "amount": "0.1", "currency": "ETH", "network": "ethereum"});
    let token = |k: &CdpKey, method: &str, path: &str, nbf: u64, exp: u64| {
        let mut c = RequestClaims::new(k.key_name(), k.alg(), method, &host(&env), path, nbf);
        c.exp = exp;
        let input = c.signing_input();
        finish(&input, &k.sign(input.as_bytes()).unwrap())
    };
    let n = now();

    // A token for reading the accounts, used to send.
    let t = token(&key, "GET", "/v2/accounts", n, n + 120);
    let (s, v) = raw(&env, "POST", &send_path, &t, Some(body.clone())).await;
    assert_eq!((s, error_id(&v)), (401, "authentication_error"), "{v}");
    // A token for another host (the real Coinbase's) is not for this one.
    let mut c = RequestClaims::new(
        key.key_name(),
        JwtAlg::EdDsa,
        "POST",
        "api.coinbase.com",
        &send_path,
        n,
    );
    c.exp = n + 120;
    let input = c.signing_input();
    let t = finish(&input, &key.sign(input.as_bytes()).unwrap());
    let (s, _) = raw(&env, "POST", &send_path, &t, Some(body.clone())).await;
    assert_eq!(s, 401);
    // Expired; living longer than two minutes.
    let t = token(&key, "POST", &send_path, n - 300, n - 180);
    assert_eq!(
        raw(&env, "POST", &send_path, &t, Some(body.clone()))
            .await
            .0,
        401
    );
    let t = token(&key, "POST", &send_path, n, n + 3600);
    assert_eq!(
        raw(&env, "POST", &send_path, &t, Some(body.clone()))
            .await
            .0,
        401
    );
    // Signed by another key under this key's name.
    let mut c = RequestClaims::new(
        key.key_name(),
        JwtAlg::EdDsa,
        "POST",
        &host(&env),
        &send_path,
        n,
    );
    c.exp = n + 120;
    let input = c.signing_input();
    let t = finish(&input, &other.sign(input.as_bytes()).unwrap());
    let (s, v) = raw(&env, "POST", &send_path, &t, Some(body.clone())).await;
    assert_eq!(s, 401, "{v}");
    // A read-only key cannot send.
    let t = token(&reader, "POST", &send_path, n, n + 120);
    let (s, v) = raw(&env, "POST", &send_path, &t, Some(body.clone())).await;
    assert_eq!((s, error_id(&v)), (403, "invalid_scope"), "{v}");
    // A Binance key's name is no CDP key.
    let mut c = RequestClaims::new(
        common::HMAC_RW_KEY,
        JwtAlg::EdDsa,
        "GET",
        &host(&env),
        "/v2/accounts",
        n,
    );
    c.exp = n + 120;
    let input = c.signing_input();
    let t = finish(&input, &key.sign(input.as_bytes()).unwrap());
    assert_eq!(raw(&env, "GET", "/v2/accounts", &t, None).await.0, 401);

    // The genuine token works once; replayed, it is refused.
    let t = token(&key, "POST", &send_path, n, n + 120);
    let (s, v) = raw(&env, "POST", &send_path, &t, Some(body.clone())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["data"]["status"], "pending");
    let (s, v) = raw(&env, "POST", &send_path, &t, Some(body.clone())).await;
    assert_eq!((s, error_id(&v)), (401, "authentication_error"), "{v}");
    // An ES256 token replayed with its signature's twin (r, n - s), which verifies too: still
    // the same token, refused.
    let es = cdp_key(&env, "alice", "cdp-es256", &["read", "withdraw"]).await;
    let t = token(&es, "POST", &send_path, n, n + 120);
    let (s, v) = raw(&env, "POST", &send_path, &t, Some(body.clone())).await;
    assert_eq!(s, 201, "{v}");
    let (input, sig) = t.rsplit_once('.').unwrap();
    let sig = B64URL.decode(sig).unwrap();
    let parsed = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    let (r, s_) = parsed.split_scalars();
    let twin = p256::ecdsa::Signature::from_scalars(r, -*s_).unwrap();
    assert_ne!(twin.to_bytes().to_vec(), sig);
    // The twin verifies (p256 does not require low s), so only remembering what was signed
    // stops it.
    let CdpKey::Es256 { key: es_key, .. } = &es else {
        unreachable!()
    };
    use p256::ecdsa::signature::Verifier as _;
    es_key
        .verifying_key()
        .verify(input.as_bytes(), &twin)
        .unwrap();
    let replay = format!("{input}.{}", B64URL.encode(twin.to_bytes()));
    let (s, v) = raw(&env, "POST", &send_path, &replay, Some(body.clone())).await;
    assert_eq!((s, error_id(&v)), (401, "authentication_error"), "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("used already"),
        "{v}"
    );
    // Coinbase's validation errors.
    let t = token(&key, "POST", &send_path, n, n + 120);
    let (s, v) = raw(
        &env,
        "POST",
        &send_path,
        &t,
        Some(json!({"type": "send", "to": "not-an-address", "amount": "0.1", "currency": "ETH"})),
    )
    .await;
    assert_eq!((s, error_id(&v)), (400, "validation_error"), "{v}");
    let t = token(&key, "POST", &send_path, n, n + 120);
    let (s, v) = raw(
        &env,
        "POST",
        &send_path,
        &t,
        Some(json!({"type": "send", "amount": "0.1", "currency": "ETH"})),
    )
    .await;
    assert_eq!((s, error_id(&v)), (400, "param_required"), "{v}");

    // The connector reads refusals as Coinbase's named errors.
    let ro = CoinbaseClient::new(&env.base, Arc::new(reader)).unwrap();
    let err = ro
        .withdraw(&WithdrawRequest {
            coin: "ETH".into(),
            network: "ETH".into(),
            address: to.clone(),
            amount: "0.1".into(),
            withdraw_order_id: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExchangeError::Refused { exchange: "coinbase", error, http_status: 403, .. } if error == "invalid_scope"),
        "{err}"
    );
}

/// The group's signature over a token's signing input, by the members in `up` of the
/// signer set `signers` (each gives up after 3 s): EdDSA signs the input, ES256 its SHA-256.
async fn group_sign(
    shares: &Arc<Vec<concord_tss::KeyShare>>,
    signers: &[u16],
    up: &[u16],
    input: &[u8],
) -> Vec<Option<Result<Vec<u8>, concord_tss::TssError>>> {
    use sha2::Digest as _;
    let message = match shares[0].scheme() {
        concord_tss::Scheme::EcdsaP256 => sha2::Sha256::digest(input).to_vec(),
        _ => input.to_vec(),
    };
    let session = concord_tss::SessionId::derive("test-cdp-group", &message);
    let mut runs = Vec::new();
    for ep in concord_tss::local::LocalNetwork::connect(signers) {
        if !up.contains(&ep.index) {
            continue;
        }
        let shares = shares.clone();
        let (signers, message) = (signers.to_vec(), message.clone());
        runs.push(tokio::spawn(async move {
            tokio::time::timeout(
                std::time::Duration::from_secs(3),
                concord_tss::sign(
                    &shares[ep.index as usize],
                    session,
                    &signers,
                    &message,
                    ep.incoming,
                    ep.outgoing,
                    &mut rand::rngs::OsRng,
                ),
            )
            .await
            .ok()
            .map(|r| r.map(|sig| sig.to_bytes()))
        }));
    }
    let mut out = Vec::new();
    for r in runs {
        out.push(r.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_under_a_group_held_cdp_key_needs_two_of_three_members() {
    two_of_three_members_authenticate_a_send(concord_tss::Scheme::Ed25519).await;
}

/// ES256: the group's key is P-256, threshold ECDSA (DKLs23).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_under_a_group_held_es256_cdp_key_needs_two_of_three_members() {
    two_of_three_members_authenticate_a_send(concord_tss::Scheme::EcdsaP256).await;
}

/// A CDP key that is the group's key (EdDSA: FROST Ed25519; ES256: DKLs23 P-256): one
/// member alone cannot authenticate a send, a token signed by any other key is refused, two
/// members' token is taken.
async fn two_of_three_members_authenticate_a_send(scheme: concord_tss::Scheme) {
    let env = Env::new().await;
    // The group's key, by DKG: no member ever holds it whole.
    let threshold = concord_tss::Threshold::new(2, 3).unwrap();
    let session = concord_tss::SessionId::derive("test-cdp-dkg", scheme.as_str().as_bytes());
    let mut runs = Vec::new();
    for ep in concord_tss::local::LocalNetwork::connect(&[0, 1, 2]) {
        runs.push(tokio::spawn(async move {
            concord_tss::dkg(
                scheme,
                concord_tss::EcdsaEngine::DEFAULT,
                session,
                ep.index,
                threshold,
                None,
                ep.incoming,
                ep.outgoing,
                &mut rand::rngs::OsRng,
            )
            .await
        }));
    }
    let mut shares: Vec<concord_tss::KeyShare> = Vec::new();
    for r in runs {
        shares.push(r.await.unwrap().unwrap());
    }
    assert_eq!(shares[0].scheme(), scheme);
    let shares = Arc::new(shares);
    // Its public key uploaded as a CDP key that may send: Ed25519 as hex, P-256 as the PEM
    // Coinbase gives.
    let es256 = scheme == concord_tss::Scheme::EcdsaP256;
    let (kind, public_key, alg) = if es256 {
        use p256::pkcs8::EncodePublicKey as _;
        let key = p256::PublicKey::from_sec1_bytes(&shares[0].public_key()).unwrap();
        let pem = key.to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap();
        ("cdp-es256", pem, JwtAlg::Es256)
    } else {
        (
            "cdp-ed25519",
            hex::encode(shares[0].public_key()),
            JwtAlg::EdDsa,
        )
    };
    let name = format!("organizations/test/apiKeys/group-{}", uuid_like());
    let (status, body) = env
        .admin_post(
            "/sim/api-keys",
            ADMIN_TOKEN,
            json!({"account": "alice", "kind": kind, "apiKey": name,
                "publicKey": public_key, "permissions": ["read", "withdraw"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let reader = cdp_key(&env, "alice", "cdp-ed25519", &["read"]).await;
    let client = CoinbaseClient::new(&env.base, Arc::new(reader)).unwrap();
    let account = client.account_id("ETH").await.unwrap();
    let path = concord_exchange::coinbase::send_path(&account);
    let to = common::signer(&env.anvil, 6).address();
    let body = |idem: &str| {
        CoinbaseClient::send_body(&WithdrawRequest {
            coin: "ETH".into(),
            network: "ETH".into(),
            address: to.to_string(),
            amount: "0.1".into(),
            withdraw_order_id: Some(idem.into()),
        })
        .unwrap()
        .to_json()
    };
    let claims = || RequestClaims::new(&name, alg, "POST", &host(&env), &path, now());
    let sender = CoinbaseClient::without_key(&env.base).unwrap();

    // Two of the three modules down: the one left cannot sign alone (the engine refuses a
    // signer set below the threshold, and waits in vain for a second signer that is down).
    let input = claims().signing_input();
    let alone = group_sign(&shares, &[0], &[0], input.as_bytes()).await;
    assert!(
        matches!(alone.as_slice(), [Some(Err(_))]),
        "one signer is below the threshold"
    );
    let waiting = group_sign(&shares, &[0, 1], &[0], input.as_bytes()).await;
    assert!(
        !matches!(waiting.as_slice(), [Some(Ok(_))]),
        "a member whose co-signer is down makes no signature"
    );
    // What it could sign alone, a token under the key's name with a key it holds, is
    // refused: Coinbase verifies the group's public key.
    let forged = if es256 {
        use p256::ecdsa::signature::Signer as _;
        let own = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let sig: p256::ecdsa::Signature = own.sign(input.as_bytes());
        finish(&input, &sig.to_bytes())
    } else {
        use ed25519_dalek::Signer as _;
        let own = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        finish(&input, &own.sign(input.as_bytes()).to_bytes())
    };
    let refused = sender
        .submit_send(&account, &body("idem-alone"), &forged)
        .await;
    assert!(
        matches!(
            &refused,
            Err(ExchangeError::Refused {
                http_status: 401,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(
        client
            .withdrawal_by_order_id("idem-alone")
            .await
            .unwrap()
            .is_none(),
        "nothing was sent"
    );

    // Two members up (any two): the token is the group's, and Coinbase takes the send.
    let input = claims().signing_input();
    let signed = group_sign(&shares, &[0, 2], &[0, 2], input.as_bytes()).await;
    let signature = match signed.as_slice() {
        [Some(Ok(a)), Some(Ok(b))] if a == b => a.clone(),
        other => panic!("two members sign: {other:?}"),
    };
    let id = sender
        .submit_send(&account, &body("idem-group"), &finish(&input, &signature))
        .await
        .unwrap();
    let found = client
        .withdrawal_by_order_id("idem-group")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.address, to.to_string());
}
