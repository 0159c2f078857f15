//! The REST API over an in-memory store: authentication, idempotency keys, long-polling,
//! error bodies, and the OpenAPI document: every route in it with its method, role,
//! parameters and answers, the router serving exactly what it lists, and real answers
//! matching their schemas (every call here is also checked against it, `common::call`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{call, get, post, setup};
use concord_coordinator::api::{self, IDEMPOTENCY_KEY, ROLE_EXTENSION, SECURITY_SCHEME, TokenRole};
use concord_coordinator::records::{EventKind, Resolution, SignedRequest};
use concord_coordinator::{
    AgreementRule, GroupRecord, GroupStatus, JobFilter, JobKind, JobRecord, JobStatus, SignMode,
    TransferKind, TransferRecord, TransferStatus, WalletCreated, WalletKind, WalletRecord,
};
use concord_types::{Scheme, WalletId};
use concord_wire::authority::Role;
use serde::Serialize;
use serde_json::{Value, json};

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
    assert_eq!(&doc, common::openapi::document());
    assert_eq!(doc["openapi"], "3.1.0");
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
    assert_eq!(jobs[0]["name"], "kind");
    assert_eq!(jobs[0]["schema"]["$ref"], "#/components/schemas/JobKind");
    assert_eq!(
        doc["components"]["schemas"]["JobKind"]["enum"][0],
        "aux_info"
    );
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
    for name in [
        "WalletView",
        "TransferRecord",
        "JobView",
        "ApiError",
        "SignedIntent",
    ] {
        assert!(
            all.contains(&format!("#/components/schemas/{name}")),
            "{name}"
        );
    }
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
    assert_eq!(s1, StatusCode::NOT_FOUND);
    assert!(
        e1["error"]
            .as_str()
            .unwrap()
            .contains("module nobody was not found"),
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
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
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
        groups: vec![],
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
            engine: concord_types::EcdsaEngine::Cggmp21,
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

/// Every route of the router, as `(method, path template, role, success status)`: the role
/// its authentication layer needs (`None`: no token). A route added to the router is added
/// to the document with it (the router is built from the documented handlers), and then
/// this list must name it too.
const ROUTES: &[(&str, &str, Option<TokenRole>, u16)] = {
    use TokenRole::{Admin, Operator, Trader, Viewer};
    &[
        ("get", "/v1/health", None, 200),
        ("get", "/v1/openapi.json", None, 200),
        ("post", "/v1/modules", Some(Operator), 201),
        ("get", "/v1/modules", Some(Viewer), 200),
        ("post", "/v1/groups", Some(Operator), 202),
        ("get", "/v1/groups", Some(Viewer), 200),
        ("get", "/v1/groups/{id}", Some(Viewer), 200),
        ("post", "/v1/groups/{id}/replace", Some(Operator), 202),
        ("post", "/v1/wallets", Some(Operator), 202),
        ("get", "/v1/wallets", Some(Viewer), 200),
        ("post", "/v1/wallets/import", Some(Operator), 202),
        ("get", "/v1/wallets/{id}", Some(Viewer), 200),
        ("get", "/v1/wallets/{id}/balances", Some(Viewer), 200),
        ("post", "/v1/wallets/{id}/refresh", Some(Operator), 202),
        ("post", "/v1/wallets/{id}/derive", Some(Operator), 202),
        ("post", "/v1/signatures", Some(Trader), 202),
        ("get", "/v1/jobs", Some(Viewer), 200),
        ("get", "/v1/jobs/{id}", Some(Viewer), 200),
        ("get", "/v1/transfers", Some(Viewer), 200),
        ("post", "/v1/transfers/deposits", Some(Trader), 202),
        ("post", "/v1/transfers/withdrawals", Some(Trader), 202),
        ("get", "/v1/transfers/{id}", Some(Viewer), 200),
        (
            "post",
            "/v1/exchanges/{name}/credential",
            Some(Operator),
            200,
        ),
        ("get", "/v1/exchanges/{name}/balances", Some(Viewer), 200),
        ("post", "/v1/tokens", Some(Admin), 201),
        ("get", "/v1/tokens", Some(Admin), 200),
        ("post", "/v1/policies", Some(Admin), 201),
        ("get", "/v1/policies", Some(Viewer), 200),
        ("get", "/v1/policies/{hash}", Some(Viewer), 200),
        ("post", "/v1/policies/{hash}/signatures", Some(Admin), 200),
        ("get", "/metrics", Some(Viewer), 200),
    ]
};

/// The document's operations: `(method, path template, operation)`.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.clone(), path.clone(), op));
        }
    }
    ops
}

/// A concrete path for a template (`x` for every parameter).
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn the_document_lists_every_route_with_its_role_parameters_and_answers() {
    let doc = common::openapi::document();
    let documented: BTreeSet<(String, String)> = operations(doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, listed,
        "the document's routes are not the list's"
    );
    let statuses = |op: &Value| -> BTreeSet<String> {
        op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for &(method, path, role, success) in ROUTES {
        let op = &doc["paths"][path][method];
        let what = format!("{method} {path}");
        // Described from the handler's doc comment.
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{what} has no summary"
        );
        assert!(op["operationId"].is_string(), "{what}");
        // Security: the bearer scheme and the role the layer enforces, or none.
        let answers = statuses(op);
        match role {
            None => {
                assert!(op.get("security").is_none(), "{what} needs no token");
                assert!(op.get(ROLE_EXTENSION).is_none(), "{what}");
                assert!(!answers.contains("401"), "{what}");
            }
            Some(role) => {
                assert_eq!(op["security"], json!([{ SECURITY_SCHEME: [] }]), "{what}");
                assert_eq!(op[ROLE_EXTENSION], role.as_str(), "{what}");
                assert!(answers.contains("401"), "{what}");
                assert_eq!(answers.contains("403"), role != TokenRole::Viewer, "{what}");
                assert!(answers.contains("500"), "{what}");
            }
        }
        // Its success answer, and no other 2xx.
        let ok: Vec<&String> = answers.iter().filter(|s| s.starts_with('2')).collect();
        assert_eq!(ok, [&success.to_string()], "{what}");
        // Every answer is JSON (but the metrics' text): the error ones are ApiError bodies.
        for (status, response) in op["responses"].as_object().unwrap() {
            let schema = if path == "/metrics" && status == "200" {
                &response["content"]["text/plain"]["schema"]
            } else {
                &response["content"]["application/json"]["schema"]
            };
            assert!(schema.is_object(), "{what} {status} has no JSON body");
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{what} {status} has no description"
            );
            if !status.starts_with('2') {
                assert_eq!(
                    schema["$ref"], "#/components/schemas/ApiError",
                    "{what} {status}"
                );
            }
        }
        // Parameters: every path parameter; on a POST the Idempotency-Key header; a body.
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let named = |name: &str, place: &str| {
            params
                .iter()
                .find(|p| p["name"] == name && p["in"] == place)
        };
        for seg in path.split('/').filter(|s| s.starts_with('{')) {
            let name = seg.trim_matches(['{', '}']);
            let p = named(name, "path").unwrap_or_else(|| panic!("{what}: no {name}"));
            assert_eq!(p["required"], true, "{what}");
        }
        let key = named(IDEMPOTENCY_KEY, "header");
        if method == "post" {
            let key = key.unwrap_or_else(|| panic!("{what} has no Idempotency-Key"));
            assert_eq!(key["required"], true);
            assert_eq!(key["schema"]["maxLength"], 128);
            assert!(statuses(op).contains("409"), "{what}");
            assert_eq!(op["requestBody"]["required"], true, "{what}");
            assert!(
                op["requestBody"]["content"]["application/json"]["schema"]["$ref"].is_string(),
                "{what} has no body schema"
            );
        } else {
            assert!(key.is_none(), "{what}");
            assert!(op.get("requestBody").is_none(), "{what}");
        }
    }
    // The query parameters: the long-polls' and the job list's filters.
    let query = |method: &str, path: &str| -> Vec<String> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(query("get", "/v1/jobs"), api::JobQuery::NAMES);
    assert_eq!(query("get", "/v1/jobs/{id}"), ["wait"]);
    assert_eq!(query("get", "/v1/transfers/{id}"), ["wait", "until"]);
    let wait_max =
        |path: &str| doc["paths"][path]["get"]["parameters"][1]["schema"]["maximum"].as_f64();
    assert_eq!(wait_max("/v1/jobs/{id}"), Some(api::JOB_WAIT_MAX));
    assert_eq!(wait_max("/v1/transfers/{id}"), Some(api::TRANSFER_WAIT_MAX));
    let limit = &doc["paths"]["/v1/jobs"]["get"]["parameters"][3]["schema"];
    assert_eq!(limit["maximum"], JobFilter::MAX_LIMIT);
    assert_eq!(limit["default"], JobFilter::DEFAULT_LIMIT);
}

/// The state enums' schemas are string enums of the names the API writes.
#[test]
fn state_schemas_list_the_names_the_api_writes() {
    let doc = common::openapi::document();
    fn names<T: Serialize>(all: &[T]) -> Value {
        serde_json::to_value(all).unwrap()
    }
    for (schema, all) in [
        ("JobKind", names(JobKind::ALL)),
        ("JobStatus", names(JobStatus::ALL)),
        ("EventKind", names(EventKind::ALL)),
        ("GroupStatus", names(GroupStatus::ALL)),
        ("TransferKind", names(TransferKind::ALL)),
        ("TransferStatus", names(TransferStatus::ALL)),
        ("WalletKind", names(WalletKind::ALL)),
        ("Scheme", names(&Scheme::ALL)),
        ("TokenRole", names(&TokenRole::ALL)),
        (
            "SignMode",
            names(&[SignMode::Presigned, SignMode::Interactive]),
        ),
        (
            "AgreementRule",
            names(&[AgreementRule::All, AgreementRule::Threshold]),
        ),
        (
            "Role",
            names(&[Role::Trader, Role::Approver, Role::Importer, Role::Admin]),
        ),
    ] {
        let s = &doc["components"]["schemas"][schema];
        assert_eq!(s["type"], "string", "{schema}");
        assert_eq!(s["enum"], all, "{schema}");
        assert!(
            s["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{schema}"
        );
    }
    // Each state's meaning is in the description, from its doc comment.
    let kinds = doc["components"]["schemas"]["JobKind"]["description"]
        .as_str()
        .unwrap();
    assert!(
        kinds.contains("- `aux_info`: A signer group prepares"),
        "{kinds}"
    );
}

/// Fields with custom serde are documented as what travels.
#[test]
fn hex_and_decimal_fields_are_documented_as_the_strings_they_are() {
    let doc = common::openapi::document();
    let schemas = &doc["components"]["schemas"];
    let prop = |schema: &str, field: &str| &schemas[schema]["properties"][field];
    for (schema, field) in [
        ("ModuleRecord", "identity"),
        ("WalletRecord", "public_key"),
        ("Endorsement", "signature"),
    ] {
        assert_eq!(prop(schema, field)["type"], "string", "{schema}.{field}");
        assert!(
            prop(schema, field)["pattern"].is_string(),
            "{schema}.{field}"
        );
    }
    for (schema, field) in [
        ("JobRecord", "digest"),
        ("JobEvent", "signature"),
        ("Policy", "previous"),
    ] {
        assert_eq!(
            prop(schema, field)["type"],
            json!(["string", "null"]),
            "{schema}.{field}"
        );
    }
    for name in ["WalletId", "PublicIdentity", "Amount"] {
        assert_eq!(schemas[name]["type"], "string", "{name}");
        assert!(schemas[name]["pattern"].is_string(), "{name}");
    }
    let id = WalletId::derive(Scheme::Ed25519, &[7; 32]);
    common::openapi::assert_conforms("WalletId", &serde_json::to_value(id).unwrap());
    let amount = concord_wire::units::Amount::parse("0.0100", 18).unwrap();
    common::openapi::assert_conforms("Amount", &serde_json::to_value(amount).unwrap());
    let key = concord_wire::IdentityKey::from_seed(&zeroize::Zeroizing::new([1; 32]));
    let e = concord_wire::authority::Endorsement::sign(&key, "t", b"x");
    common::openapi::assert_conforms("Endorsement", &serde_json::to_value(e).unwrap());
}

/// The router serves exactly the documented methods on every documented path, and each
/// answers (through `call`, which checks every answer against the document).
#[tokio::test]
async fn the_router_serves_exactly_the_documented_operations() {
    let (c, admin) = setup().await;
    let doc = common::openapi::document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = concrete(path);
        for method in ["get", "post", "put", "delete", "patch"] {
            let req = Request::builder()
                .method(method.to_ascii_uppercase().as_str())
                .uri(&uri)
                .header("authorization", format!("Bearer {admin}"))
                .header("idempotency-key", format!("probe-{method}-{uri}"))
                .body(Body::from("{}"))
                .unwrap();
            let (s, body) = call(&c, req).await;
            if item.get(method).is_some() {
                let unrouted = body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("has no route"));
                assert!(
                    !(s == StatusCode::NOT_FOUND && unrouted),
                    "{method} {uri} is documented but not routed"
                );
                assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            } else {
                assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}: {body}");
                assert!(
                    body["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("is not a method of")),
                    "{method} {uri}: a JSON error names the method: {body}"
                );
            }
        }
    }
    // A path the document does not have is not routed either, and says so in JSON, its
    // echo of the path clipped.
    let (s, body) = call(&c, get("/v1/nothing", &admin)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("has no route /v1/nothing")
    );
    let long = format!("/v1/{}", "x".repeat(5000));
    let (s, body) = call(&c, get(&long, &admin)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().len() < 300, "{body}");
}

/// The role each operation documents is the one its authentication layer enforces: every
/// token role is refused (403) exactly where the documented role does not allow it.
#[tokio::test]
async fn documented_roles_are_the_roles_the_layers_enforce() {
    let (c, _) = setup().await;
    let mut tokens = Vec::new();
    for role in TokenRole::ALL {
        tokens.push((role, common::token(&c, role.as_str(), role).await));
    }
    let doc = common::openapi::document();
    for (method, path, op) in operations(doc) {
        let Some(needed) = op[ROLE_EXTENSION].as_str() else {
            continue;
        };
        let needed: TokenRole = needed.parse().unwrap();
        for (role, token) in &tokens {
            let req = Request::builder()
                .method(method.to_ascii_uppercase().as_str())
                .uri(concrete(&path))
                .header("authorization", format!("Bearer {token}"))
                .header("idempotency-key", format!("roles-{role:?}"))
                .body(Body::from("{}"))
                .unwrap();
            let (s, body) = call(&c, req).await;
            let refused = s == StatusCode::FORBIDDEN;
            assert_eq!(
                refused,
                !role.allows(needed),
                "{method} {path} documents role {needed:?}; a {role:?} token got {s}: {body}"
            );
            assert_ne!(s, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }
}

/// The job list reads exactly the query parameters its document names.
#[tokio::test]
async fn job_list_reads_the_documented_parameters() {
    let (c, token) = setup().await;
    for (name, value) in [
        ("kind", "sign"),
        ("status", "done"),
        ("wallet", "w"),
        ("limit", "5"),
    ] {
        assert!(api::JobQuery::NAMES.contains(&name));
        let (s, body) = call(&c, get(&format!("/v1/jobs?{name}={value}"), &token)).await;
        assert_eq!(s, StatusCode::OK, "{name}: {body}");
    }
    let (s, _) = call(&c, get("/v1/jobs?colour=red", &token)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A wait past the documented maximum, or not a number, is refused with an ApiError (the
    // job has ended: a wait within the maximum answers at once).
    let job = JobRecord::pending("j1".into(), JobKind::Sign, "g");
    c.store().insert_job(&job, "test", 0).await.unwrap();
    c.store().fail_job("j1", "given up").await.unwrap();
    let (s, _) = call(&c, get("/v1/jobs/j1?wait=60", &token)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&c, get("/v1/jobs/j1?wait=60.5", &token)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, e) = call(&c, get("/v1/jobs/j1?wait=soon", &token)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("invalid query string"),
        "{e}"
    );
    let (s, e) = call(&c, get("/v1/transfers/t1?wait=301", &token)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
}

/// Real answers of the API — a wallet, a transfer, a job with events, an error — match their
/// schemas in the document; and the check is not vacuous: a changed answer does not.
#[tokio::test]
async fn real_answers_match_their_schemas() {
    use common::openapi::{assert_conforms, errors_against};
    let (c, token) = setup().await;
    let store = c.store();
    for (i, m) in ["m1", "m2"].into_iter().enumerate() {
        common::enroll_stand_in(&c, m, i as u8 + 1).await;
    }
    store
        .create_group(&GroupRecord {
            id: "g".into(),
            threshold: 2,
            size: 2,
            status: GroupStatus::Ready,
            aux_job_id: None,
            engine: concord_types::EcdsaEngine::Cggmp21,
            members: vec!["m1".into(), "m2".into()],
            created_at: concord_coordinator::now(),
        })
        .await
        .unwrap();
    // A wallet made by a finished key generation.
    let public_key = common::secp256k1_public(&[3; 32]);
    let id = WalletId::derive(Scheme::EcdsaSecp256k1, &public_key).to_string();
    let wallet = WalletRecord {
        id: id.clone(),
        group_id: "g".into(),
        scheme: Scheme::EcdsaSecp256k1.to_string(),
        public_key,
        job_id: "kg".into(),
        created_at: concord_coordinator::now(),
    };
    let kg = JobRecord {
        scheme: Some(wallet.scheme.clone()),
        ..JobRecord::pending("kg".into(), JobKind::Keygen, "g")
    };
    store.insert_job(&kg, "test", 0).await.unwrap();
    store.insert_wallet(&wallet).await.unwrap();
    let created = WalletCreated::of(wallet, "ETH").unwrap();
    store
        .finish_job("kg", &serde_json::to_vec(&created).unwrap())
        .await
        .unwrap();
    store
        .add_event(
            "kg",
            Some("m1"),
            EventKind::Result,
            Some(&[0xab; 32]),
            Some("verified"),
            Some(&[0xcd; 64]),
        )
        .await
        .unwrap();
    let (s, w) = call(&c, get(&format!("/v1/wallets/{id}"), &token)).await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_conforms("WalletView", &w);
    let (s, j) = call(&c, get("/v1/jobs/kg", &token)).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["events"].as_array().unwrap().len(), 1);
    assert_conforms("JobView", &j);
    assert_conforms("WalletCreated", &j["result"]);
    assert_conforms("JobResult", &j["result"]);
    // A transfer with every field filled in.
    let t = transfer(&id);
    store.insert_transfer(&t, "elsewhere", 0).await.unwrap();
    let (s, tr) = call(&c, get(&format!("/v1/transfers/{}", t.id), &token)).await;
    assert_eq!(s, StatusCode::OK, "{tr}");
    assert_conforms("TransferRecord", &tr);
    let (s, e) = call(&c, get("/v1/transfers/nope", &token)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_conforms("ApiError", &e);

    // Answers changed as a drifted type would change them are refused.
    let schema = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let changed = |v: &Value, edit: &dyn Fn(&mut Value)| {
        let mut v = v.clone();
        edit(&mut v);
        v
    };
    for (name, v) in [
        ("WalletView", changed(&w, &|v| v["kind"] = json!("minted"))),
        (
            "WalletView",
            changed(&w, &|v| v["threshold"] = json!("two")),
        ),
        (
            "WalletView",
            changed(&w, &|v| {
                v.as_object_mut().unwrap().remove("id");
            }),
        ),
        (
            "WalletView",
            changed(&w, &|v| v["public_key"] = json!("not hex")),
        ),
        (
            "JobView",
            changed(&j, &|v| v["events"][0]["kind"] = json!("applause")),
        ),
        (
            "JobView",
            changed(&j, &|v| {
                v.as_object_mut().unwrap().remove("events");
            }),
        ),
        (
            "JobView",
            changed(&j, &|v| v["result"]["public_key"] = json!(7)),
        ),
        (
            "TransferRecord",
            changed(&tr, &|v| v["amount"] = json!("1e3")),
        ),
        (
            "TransferRecord",
            changed(&tr, &|v| v["status"] = json!("lost")),
        ),
        (
            "TransferRecord",
            changed(&tr, &|v| {
                v["intent"]["intent"]["action"]["kind"] = json!("steal")
            }),
        ),
        (
            "TransferRecord",
            changed(&tr, &|v| v["intent"]["signatures"][0]["extra"] = json!(1)),
        ),
        ("ApiError", json!({ "message": "no" })),
    ] {
        assert!(
            !errors_against(&schema(name), &v).is_empty(),
            "{name} accepted {v:#}"
        );
    }
}

/// A transfer record with every optional field set.
fn transfer(wallet: &str) -> TransferRecord {
    use concord_wire::authority::{Action, AddressRef, Intent, SignedIntent};
    let key = concord_wire::IdentityKey::from_seed(&zeroize::Zeroizing::new([10; 32]));
    let intent = SignedIntent::new(
        Intent::new(
            Action::Withdraw {
                exchange: "binance".into(),
                coin: "ETH".into(),
                network: "ETH".into(),
                amount: "0.25".into(),
                to: AddressRef::Wallet(wallet.parse().unwrap()),
                rule: AgreementRule::Threshold,
            },
            600,
        ),
        &key,
    );
    TransferRecord {
        id: intent.intent.id.clone(),
        kind: TransferKind::Withdrawal,
        status: TransferStatus::Unknown,
        wallet_id: wallet.into(),
        exchange: "binance".into(),
        coin: "ETH".into(),
        network: "ETH".into(),
        amount: concord_wire::units::Amount::parse("0.25", 18).unwrap(),
        rule: AgreementRule::Threshold,
        mode: SignMode::Interactive,
        destination: Some("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".into()),
        to: Some(AddressRef::Wallet(wallet.parse().unwrap())),
        requester: Some("trader".into()),
        intent: Some(intent),
        resolutions: vec![
            Resolution {
                module: "m1".into(),
                address: Some("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".into()),
                error: None,
            },
            Resolution {
                module: "m2".into(),
                address: None,
                error: Some("not connected".into()),
            },
        ],
        nonce: Some(7),
        payload: Some("a1b2".into()),
        sign_job_id: Some("job-1".into()),
        dissenters: [("m2".to_owned(), "over the daily limit".to_owned())].into(),
        approvers: vec!["m1".into()],
        policy: Some("ab".repeat(32)),
        raw_tx: Some("02f8".into()),
        signed_request: Some(SignedRequest {
            request: "coin=ETH&amount=0.25".into(),
            signature: "c2ln".into(),
            valid_until_ms: 1_790_000_000_000,
        }),
        tx_hash: Some(format!("0x{}", "ab".repeat(32))),
        exchange_withdrawal_id: Some("wd-9".into()),
        timings_ms: [("signed".to_owned(), 812.125)].into(),
        log: vec!["2026-01-01T00:00:00Z requested".into()],
        error: Some("waiting".into()),
        created_at: "2026-01-01T00:00:00Z".into(),
        created_ms: 1_767_225_600_123.456,
    }
}

// What schemathesis (scripts/schemathesis.sh) found against a running coordinator, each
// class kept fixed here: a request the document accepts is not refused as malformed unless
// a rule JSON Schema cannot state is broken; what the document refuses, the handler refuses.

/// The JSON schema of `method path`'s request body in the document (the component it
/// names, if it names one).
fn request_schema(method: &str, path: &str) -> &'static Value {
    let doc = common::openapi::document();
    let s = &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
    assert!(s.is_object(), "{method} {path} has no JSON request body");
    match s["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => s,
    }
}

/// Checks that the document's request schema of `method template` accepts `body`.
fn assert_request_conforms(method: &str, template: &str, body: &Value) {
    let errors = common::openapi::errors_against(request_schema(method, template), body);
    assert!(
        errors.is_empty(),
        "{method} {template}'s request schema refuses:\n{}\n{body:#}",
        errors.join("\n")
    );
}

/// Checks that the document's request schema of `method template` refuses `body`.
fn assert_request_refused(method: &str, template: &str, body: &Value) {
    let errors = common::openapi::errors_against(request_schema(method, template), body);
    assert!(
        !errors.is_empty(),
        "{method} {template}'s request schema accepts what the handler refuses:\n{body:#}"
    );
}

/// A signed intent's JSON (no signatures: the coordinator leaves checking them to the
/// modules) asking for `action`.
fn intent_json(action: Value) -> Value {
    json!({
        "intent": {
            "version": 1, "id": "i-1", "created_at": 1_700_000_000u64,
            "expires_at": 1_700_000_600u64, "action": action,
        },
        "signatures": [],
    })
}

fn sign_action() -> Value {
    json!({ "kind": "sign_message", "wallet": "ab".repeat(32), "message": "00", "rule": "all" })
}

fn withdraw_action() -> Value {
    json!({
        "kind": "withdraw", "exchange": "binance", "coin": "ETH", "network": "ETH",
        "amount": "1", "to": { "label": "cold" }, "rule": "all",
    })
}

fn deposit_action() -> Value {
    json!({
        "kind": "deposit", "wallet": "ab".repeat(32), "exchange": "binance", "coin": "ETH",
        "network": "ETH", "amount": "1", "rule": "all",
    })
}

/// A coordinator whose state stands in the way of a well-formed request (no chain
/// configured, no module enrolled) answers 409, documented, neither 400 (the request is not
/// at fault) nor 5xx (nothing failed, and asking again will not help); a thing named that
/// does not exist is 404 whatever the configuration.
#[tokio::test]
async fn state_in_the_way_is_a_conflict_and_a_missing_thing_is_not_found() {
    let (c, admin) = setup().await;
    let no_chain = "this coordinator has no chain configured";
    for (path, template, body) in [
        (
            "/v1/transfers/deposits",
            "/v1/transfers/deposits",
            json!({ "intent": intent_json(deposit_action()) }),
        ),
        (
            "/v1/transfers/withdrawals",
            "/v1/transfers/withdrawals",
            json!({ "intent": intent_json(withdraw_action()) }),
        ),
        (
            "/v1/exchanges/binance/credential",
            "/v1/exchanges/{name}/credential",
            json!({ "wallet": "ab".repeat(32), "api_key": "k" }),
        ),
    ] {
        assert_request_conforms("post", template, &body);
        let (s, e) = call(&c, post(path, &admin, Some(path), &body.to_string())).await;
        assert_eq!(s, StatusCode::CONFLICT, "{path}: {e}");
        assert!(e["error"].as_str().unwrap().contains(no_chain), "{e}");
    }
    let (s, e) = call(
        &c,
        get(&format!("/v1/wallets/{}/balances", "ab".repeat(32)), &admin),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, e) = call(&c, get("/v1/exchanges/0/balances", &admin)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("no module is enrolled"),
        "{e}"
    );
    // Members that are not enrolled are things that do not exist.
    let body = json!({ "id": "g", "threshold": 2, "members": ["m1", "m2"] });
    assert_request_conforms("post", "/v1/groups", &body);
    let (s, e) = call(&c, post("/v1/groups", &admin, Some("g"), &body.to_string())).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("module m1 was not found"),
        "{e}"
    );
}

/// What a handler refuses as malformed, the document's request schema refuses too: the
/// members of a group are distinct module ids, a derivation path's child numbers are below
/// 2^31 (16 at most), a route's intent asks for the one action it takes, and an action
/// has no field its kind does not.
#[tokio::test]
async fn request_schemas_are_as_strict_as_the_handlers() {
    let (c, admin) = setup().await;
    let mut extra = sign_action();
    extra["note"] = json!("x");
    let deep = format!("m{}", "/1".repeat(17));
    for (i, (path, template, body, says)) in [
        (
            "/v1/groups",
            "/v1/groups",
            json!({ "id": "g", "threshold": 2, "members": ["m1", "m1"] }),
            "a module is listed twice",
        ),
        (
            "/v1/wallets/w/derive",
            "/v1/wallets/{id}/derive",
            json!({ "path": "m/2147483648" }),
            "child numbers must be below 2^31",
        ),
        (
            "/v1/wallets/w/derive",
            "/v1/wallets/{id}/derive",
            json!({ "path": deep }),
            "at most 16 levels",
        ),
        (
            "/v1/signatures",
            "/v1/signatures",
            json!({ "intent": intent_json(withdraw_action()) }),
            "the intent asks for a withdraw, not a message signature",
        ),
        (
            "/v1/wallets/import",
            "/v1/wallets/import",
            json!({
                "intent": intent_json(sign_action()), "importer": "ab".repeat(32), "shards": [],
            }),
            "the intent asks for a sign_message, not an import",
        ),
        (
            "/v1/signatures",
            "/v1/signatures",
            json!({ "intent": intent_json(extra) }),
            "unknown field `note`",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        assert_request_refused("post", template, &body);
        let key = format!("k{i}");
        let (s, e) = call(&c, post(path, &admin, Some(&key), &body.to_string())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {e}");
        assert!(e["error"].as_str().unwrap().contains(says), "{path}: {e}");
    }
    // The transfer routes take only their own kind of intent (the handler checks it after
    // the chain, which this coordinator does not have).
    for (template, wrong) in [
        ("/v1/transfers/deposits", withdraw_action()),
        ("/v1/transfers/withdrawals", deposit_action()),
    ] {
        assert_request_refused("post", template, &json!({ "intent": intent_json(wrong) }));
    }
    let credential = |key: String| json!({ "wallet": "ab".repeat(32), "api_key": key });
    assert_request_refused(
        "post",
        "/v1/exchanges/{name}/credential",
        &credential(String::new()),
    );
    assert_request_refused(
        "post",
        "/v1/exchanges/{name}/credential",
        &credential("k".repeat(129)),
    );
}

/// The documented pattern of a derivation path accepts exactly the child paths the parser
/// reads (1 to 16 child numbers below 2^31, leading zeros allowed).
#[test]
fn the_derivation_path_pattern_is_the_parser() {
    let schema = &request_schema("post", "/v1/wallets/{id}/derive")["properties"]["path"];
    let derived =
        &common::openapi::document()["components"]["schemas"]["DerivedFrom"]["properties"]["path"];
    assert_eq!(schema["pattern"], derived["pattern"]);
    let level = |n: &str, times: usize| format!("m{}", format!("/{n}").repeat(times));
    let mut paths = vec![
        "m".to_owned(),
        "m/".to_owned(),
        "m/1h".to_owned(),
        "m/1'".to_owned(),
        "m/-1".to_owned(),
        "m/+1".to_owned(),
        "m/1/".to_owned(),
        "n/1".to_owned(),
        "m/0x1".to_owned(),
        level("1", 16),
        level("1", 17),
    ];
    for n in [
        0u64,
        1,
        7,
        999_999_999,
        1_000_000_000,
        1_999_999_999,
        2_000_000_000,
        2_147_483_647,
        2_147_483_648,
        2_147_483_650,
        2_200_000_000,
        4_294_967_295,
        4_294_967_296,
        99_999_999_999,
    ] {
        paths.push(format!("m/{n}"));
        paths.push(format!("m/000{n}"));
        paths.push(format!("m/44/{n}/0"));
    }
    for path in paths {
        let parsed = path
            .parse::<concord_types::DerivationPath>()
            .is_ok_and(|p| !p.is_master());
        let documented = common::openapi::errors_against(schema, &json!(path)).is_empty();
        assert_eq!(
            documented, parsed,
            "{path}: documented {documented}, parsed {parsed}"
        );
    }
}

/// Enum variants serde reads with `deny_unknown_fields` are documented closed
/// (`additionalProperties: false`), as structs are; every enum of object variants in the
/// document is one of them.
#[test]
fn closed_enum_variants_are_documented_closed() {
    use concord_wire::authority::{Action, AddressRef, AddressTarget, WalletPurpose};
    let schemas = &common::openapi::document()["components"]["schemas"];
    for (name, schema) in schemas.as_object().unwrap() {
        let variants = schema["oneOf"].as_array().into_iter().flatten();
        let objects: Vec<&Value> = variants.filter(|v| v["type"] == "object").collect();
        if objects.is_empty() {
            continue;
        }
        assert!(
            api::CLOSED_ENUMS.contains(&name.as_str()),
            "{name} has object variants: say in CLOSED_ENUMS whether serde refuses unknown fields"
        );
        for v in objects {
            assert_eq!(v["additionalProperties"], json!(false), "{name}: {v}");
        }
    }
    fn refuses_extra<T: serde::de::DeserializeOwned>(name: &str, mut v: Value) {
        assert!(
            serde_json::from_value::<T>(v.clone()).is_ok(),
            "{name}: {v}"
        );
        common::openapi::assert_conforms(name, &v);
        v["extra"] = json!(1);
        assert!(
            serde_json::from_value::<T>(v.clone()).is_err(),
            "{name}: {v}"
        );
        let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
        assert!(
            !common::openapi::errors_against(&schema, &v).is_empty(),
            "{name}: {v}"
        );
    }
    refuses_extra::<Action>("Action", sign_action());
    refuses_extra::<AddressRef>("AddressRef", json!({ "label": "cold" }));
    refuses_extra::<AddressTarget>(
        "AddressTarget",
        json!({ "kind": "address", "network": "ETH", "address": "0x00" }),
    );
    refuses_extra::<WalletPurpose>(
        "WalletPurpose",
        json!({ "kind": "trading", "deposit_to": [], "raw_messages": false }),
    );
}

/// An integer written with a zero fraction (`2.0`, `1.7e9`) is an integer, as JSON Schema
/// counts them: a body the document accepts for it is read, not refused; a fraction is still
/// refused where an integer is due.
#[tokio::test]
async fn integers_written_with_a_zero_fraction_are_integers() {
    let (c, admin) = setup().await;
    let group = json!({ "id": "g", "threshold": 2.0, "members": ["m1", "m2"] });
    assert_request_conforms("post", "/v1/groups", &group);
    let (s, e) = call(
        &c,
        post("/v1/groups", &admin, Some("g"), &group.to_string()),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "read, then the members are not found: {e}"
    );
    let mut sign = json!({ "intent": intent_json(sign_action()) });
    sign["intent"]["intent"]["created_at"] = json!(1.7e9);
    sign["intent"]["intent"]["version"] = json!(1.0);
    assert_request_conforms("post", "/v1/signatures", &sign);
    let (s, e) = call(
        &c,
        post("/v1/signatures", &admin, Some("s"), &sign.to_string()),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "read, then the wallet is not found: {e}"
    );
    let half = json!({ "id": "g", "threshold": 2.5, "members": ["m1", "m2"] });
    assert_request_refused("post", "/v1/groups", &half);
    let (s, e) = call(&c, post("/v1/groups", &admin, Some("h"), &half.to_string())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("invalid JSON body"),
        "{e}"
    );
}

/// An Ed25519 public key is documented with the format that names its rule (a point of the
/// curve not of small order), which JSON Schema cannot check: 64 hex digits that are not
/// such a point fit the pattern, and are refused.
#[tokio::test]
async fn public_keys_are_documented_with_their_format() {
    let schemas = &common::openapi::document()["components"]["schemas"];
    assert_eq!(
        schemas["PublicIdentity"]["format"],
        concord_wire::identity::PUBLIC_IDENTITY_FORMAT
    );
    let (c, admin) = setup().await;
    let body = json!({
        "id": "m1", "identity": "00".repeat(32), "sealing_key": "11".repeat(32),
        "sealing_key_signature": "22".repeat(64),
    });
    assert_request_conforms("post", "/v1/modules", &body);
    let (s, e) = call(
        &c,
        post("/v1/modules", &admin, Some("m"), &body.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"].as_str().unwrap().contains("small-order"), "{e}");
}

/// A live signed withdraw request is a bearer credential (a Coinbase token does not even bind
/// the send's body): the API withholds its signature until the exchange can no longer take
/// it, and shows the rest.
#[test]
fn a_live_signed_request_s_signature_is_withheld_from_the_api() {
    let now = concord_coordinator::records::epoch_ms();
    let mut t = transfer(&"ab".repeat(32));
    if let Some(sr) = t.signed_request.as_mut() {
        sr.valid_until_ms = now + 60_000;
    }
    let shown = t.clone().for_api();
    let sr = shown.signed_request.unwrap();
    assert!(sr.signature.is_empty(), "a live signature is withheld");
    assert_eq!(sr.request, "coin=ETH&amount=0.25");
    if let Some(sr) = t.signed_request.as_mut() {
        sr.valid_until_ms = now - 1;
    }
    let shown = t.clone().for_api();
    assert_eq!(
        shown.signed_request.unwrap().signature,
        "c2ln",
        "a dead request is shown whole"
    );
}
