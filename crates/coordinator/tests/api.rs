//! The REST API over an in-memory store: authentication, idempotency keys, long-polling,
//! the OpenAPI document and error bodies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{call, get, post, setup};
use concord_coordinator::api;
use concord_coordinator::{JobKind, JobRecord};

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let (c, token) = setup().await;
    let (s, body) = call(&c, Request::get("/v1/modules").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    let (s, _) = call(&c, get("/v1/modules", "cct_wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body) = call(&c, get("/v1/modules", &token)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, serde_json::json!([]));
    // Health and the OpenAPI document need no token.
    let (s, doc) = call(
        &c,
        Request::get("/v1/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/v1/signatures"]["post"].is_object());
    // The read views the CLI shows are documented, and every schema referred to exists.
    for (path, method) in [
        ("/v1/groups", "get"),
        ("/v1/jobs", "get"),
        ("/v1/wallets/{id}/balances", "get"),
        ("/v1/exchanges/{name}/balances", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    let jobs = &doc["paths"]["/v1/jobs"]["get"]["parameters"];
    assert_eq!(jobs[0]["schema"]["enum"][0], "aux_info");
    assert_eq!(jobs[3]["schema"]["maximum"], 1000);
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.contains(&"#/components/schemas/WalletView".to_owned()));
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} is not defined"
        );
    }
}

#[tokio::test]
async fn posts_need_an_idempotency_key_and_replay_the_first_answer() {
    let (c, token) = setup().await;
    let body = r#"{"id":"g1","threshold":2,"members":["nobody","nobody2"]}"#;
    let (s, e) = call(&c, post("/v1/groups", &token, None, body)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("Idempotency-Key"));
    let (s1, e1) = call(&c, post("/v1/groups", &token, Some("k1"), body)).await;
    assert_eq!(s1, StatusCode::BAD_REQUEST);
    assert!(
        e1["error"]
            .as_str()
            .unwrap()
            .contains("module nobody is not enrolled"),
        "{e1}"
    );
    // Same key, other body: refused.
    let (s, e) = call(
        &c,
        post(
            "/v1/groups",
            &token,
            Some("k1"),
            r#"{"id":"g2","threshold":2,"members":[]}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("already used for a different request")
    );
    // Bad JSON is named.
    let (s, e) = call(&c, post("/v1/groups", &token, Some("k2"), "{")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("invalid JSON body"));
    // A bad threshold is named.
    let (s, e) = call(
        &c,
        post(
            "/v1/groups",
            &token,
            Some("k3"),
            r#"{"id":"g3","threshold":1,"members":["a","b"]}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("invalid threshold 1-of-2"),
        "{e}"
    );
}

#[tokio::test]
async fn enrolling_checks_the_sealing_key_signature() {
    let (c, token) = setup().await;
    let id = concord_wire::IdentityKey::generate(&mut rand::rngs::OsRng);
    let other = concord_wire::IdentityKey::generate(&mut rand::rngs::OsRng);
    let seal = concord_wire::SealingKey::generate(&mut rand::rngs::OsRng).public();
    let body = |signer: &concord_wire::IdentityKey| {
        serde_json::json!({
            "id": "m1", "identity": id.public().to_string(), "sealing_key": seal.to_string(),
            "sealing_key_signature": hex::encode(signer.sign_sealing_key(&seal)),
        })
        .to_string()
    };
    let (s, e) = call(&c, post("/v1/modules", &token, Some("a"), &body(&other))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("not signed by the module's identity")
    );
    let (s, m) = call(&c, post("/v1/modules", &token, Some("b"), &body(&id))).await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    assert_eq!(
        m["fingerprint"].as_str().unwrap(),
        id.public().fingerprint()
    );
    let (s, _) = call(&c, post("/v1/modules", &token, Some("c"), &body(&id))).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn long_poll_waits_for_a_running_job() {
    let (c, token) = setup().await;
    // A job that nobody runs stays pending: the long-poll must wait out its limit.
    let job = JobRecord::pending("j1".into(), JobKind::Sign, "g");
    c.store().insert_job(&job, "test", 0).await.unwrap();
    let start = Instant::now();
    let (s, j) = call(&c, get("/v1/jobs/j1?wait=0.5", &token)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(j["status"], "pending");
    assert!(
        start.elapsed() >= Duration::from_millis(450),
        "returned after {:?}",
        start.elapsed()
    );
    let (s, _) = call(&c, get("/v1/jobs/j1?wait=600", &token)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, e) = call(&c, get("/v1/jobs/nope", &token)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["error"], "job nope was not found");
}

#[tokio::test]
async fn token_roles_limit_what_a_caller_may_do() {
    let (c, admin) = setup().await;
    let (s, t) = call(
        &c,
        post(
            "/v1/tokens",
            &admin,
            Some("t1"),
            r#"{"name":"ro","role":"viewer"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let viewer = t["token"].as_str().unwrap().to_owned();
    let (_, t) = call(
        &c,
        post(
            "/v1/tokens",
            &admin,
            Some("t2"),
            r#"{"name":"desk","role":"trader"}"#,
        ),
    )
    .await;
    let trader = t["token"].as_str().unwrap().to_owned();
    let (_, t) = call(
        &c,
        post(
            "/v1/tokens",
            &admin,
            Some("t3"),
            r#"{"name":"ops","role":"operator"}"#,
        ),
    )
    .await;
    let operator = t["token"].as_str().unwrap().to_owned();
    // Everyone reads.
    for tok in [&viewer, &trader, &operator] {
        let (s, _) = call(&c, get("/v1/wallets", tok)).await;
        assert_eq!(s, StatusCode::OK);
    }
    let group = r#"{"id":"g1","threshold":2,"members":["a","b"]}"#;
    // A viewer or a trader cannot create groups; an operator can (and is told why not here).
    for tok in [&viewer, &trader] {
        let (s, e) = call(&c, post("/v1/groups", tok, Some("g"), group)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
        assert!(
            e["error"].as_str().unwrap().contains("needs 'operator'"),
            "{e}"
        );
    }
    let (s, e) = call(&c, post("/v1/groups", &operator, Some("g"), group)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    // Only traders (and admins) request transfers; only admins make tokens and policies.
    let (s, _) = call(
        &c,
        post("/v1/transfers/deposits", &operator, Some("d"), "{}"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&c, post("/v1/transfers/deposits", &trader, Some("d"), "{}")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    for tok in [&viewer, &trader, &operator] {
        let (s, _) = call(
            &c,
            post(
                "/v1/tokens",
                tok,
                Some("x"),
                r#"{"name":"x","role":"admin"}"#,
            ),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = call(&c, post("/v1/policies", tok, Some("p"), "{}")).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let (s, e) = call(
        &c,
        post(
            "/v1/tokens",
            &admin,
            Some("t4"),
            r#"{"name":"x","role":"root"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, list) = call(&c, get("/v1/tokens", &admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert!(
        list.to_string().find("cct_").is_none(),
        "tokens are never shown again"
    );
}

#[tokio::test]
async fn policies_are_stored_in_order_and_signatures_checked() {
    use concord_wire::authority::{Endorsement, POLICY_TAG, Policy, Principal, Role};
    use concord_wire::identity::IdentityKey;
    let (c, admin) = setup().await;
    let key = IdentityKey::from_seed(&zeroize::Zeroizing::new([1; 32]));
    let policy = Policy {
        version: 1,
        previous: None,
        admin_quorum: 1,
        principals: vec![Principal {
            name: "admin".into(),
            key: key.public(),
            roles: vec![Role::Admin],
        }],
        wallets: vec![],
        address_book: vec![],
    };
    // Not version 1 while no policy is in force: refused.
    let mut v2 = policy.clone();
    v2.version = 2;
    v2.previous = Some([0; 32]);
    let body = serde_json::json!({ "policy": v2 }).to_string();
    let (s, e) = call(&c, post("/v1/policies", &admin, Some("p1"), &body)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    // An inconsistent policy is named.
    let mut bad = policy.clone();
    bad.admin_quorum = 3;
    let body = serde_json::json!({ "policy": bad }).to_string();
    let (s, e) = call(&c, post("/v1/policies", &admin, Some("p2"), &body)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"].as_str().unwrap().contains("quorum of 3"), "{e}");
    let body = serde_json::json!({ "policy": policy }).to_string();
    let (s, v) = call(&c, post("/v1/policies", &admin, Some("p3"), &body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let hash = v["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash, hex::encode(policy.hash()));
    assert_eq!(v["status"], "proposed");
    // A signature over other bytes is refused; a good one is stored (no module to adopt it).
    let wrong = Endorsement::sign(&key, POLICY_TAG, b"something else");
    let (s, e) = call(
        &c,
        post(
            &format!("/v1/policies/{hash}/signatures"),
            &admin,
            Some("s1"),
            &serde_json::to_string(&wrong).unwrap(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let good = Endorsement::sign(&key, POLICY_TAG, &policy.to_canonical());
    let (s, v) = call(
        &c,
        post(
            &format!("/v1/policies/{hash}/signatures"),
            &admin,
            Some("s2"),
            &serde_json::to_string(&good).unwrap(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["signed"]["signatures"].as_array().unwrap().len(), 1);
    let (s, list) = call(&c, get("/v1/policies", &admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["pending"]["hash"], serde_json::json!(hash));
}

/// A coordinator reserved an idempotency key, started a key generation, and died before it
/// answered: the client's retry takes the stale reservation over and must find that job, not
/// start a second key generation (a second wallet).
#[tokio::test]
async fn a_retry_after_a_crash_finds_the_work_the_dead_request_created() {
    use sha2::{Digest, Sha256};
    let (c, token) = setup().await;
    c.store()
        .create_group(&concord_coordinator::GroupRecord {
            id: "g".into(),
            threshold: 2,
            size: 3,
            status: concord_coordinator::GroupStatus::Ready,
            aux_job_id: None,
            members: vec![],
            created_at: "now".into(),
        })
        .await
        .unwrap();
    let body = r#"{"group":"g","scheme":"ecdsa-secp256k1"}"#;
    let token_hash = Sha256::digest(token.as_bytes()).to_vec();
    let route = "POST /v1/wallets";
    // The dead coordinator's reservation, 20 s old, and the job it created.
    let long_ago = concord_coordinator::records::epoch_ms() - 20_000;
    c.store()
        .reserve_key(
            &token_hash,
            route,
            "k",
            &Sha256::digest(body.as_bytes()),
            long_ago,
            15_000,
        )
        .await
        .unwrap();
    let scope = api::RequestScope::new(&token_hash, route, "k");
    let first = c
        .create_wallet(serde_json::from_str(body).unwrap(), &scope.0)
        .await
        .unwrap();
    // The retry.
    let (s, again) = call(&c, post("/v1/wallets", &token, Some("k"), body)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["id"], first.id.as_str(), "one key generation");
    // Another key is another wallet.
    let (s, other) = call(&c, post("/v1/wallets", &token, Some("k2"), body)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{other}");
    assert_ne!(other["id"], first.id.as_str());
}
