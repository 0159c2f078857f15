//! The read views the CLI shows, through the REST API over an in-memory store: wallets (kind,
//! group, policy label and purpose, addresses), groups, the job list and its filters, a
//! wallet's chain balances (a real local chain), an exchange account's balances (read by a
//! module through its own connector), and every answer read into its type and written back
//! unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use axum::http::StatusCode;
use common::{
    ANVIL_ADDRESS_0, ANVIL_KEY_0, call, connect_stand_in, enroll_stand_in, error_answer, get,
    json_answer, post, round_trip, secp256k1_public, setup, start_anvil, token, with_admin,
};
use concord_coordinator::api::{ApiError, CreatedToken, TokenRole, TokenView};
use concord_coordinator::policy::{Policies, PolicyView};
use concord_coordinator::records::{EventKind, PolicyRecord, Resolution, SignedRequest};
use concord_coordinator::store::Store;
use concord_coordinator::transfers::RegisteredCredential;
use concord_coordinator::{
    AgreementRule, ChainBalance, Coordinator, ExchangeBalances, GroupRecord, GroupStatus, JobKind,
    JobRecord, JobStatus, JobView, ModuleView, SignMode, TransferKind, TransferRecord,
    TransferStatus, WalletAddress, WalletBalances, WalletCreated, WalletKind, WalletRecord,
    WalletView,
};
use concord_types::{Scheme, WalletId};
use concord_wire::authority::{
    Action, AddressEntry, AddressRef, AddressTarget, CoinLimit, Endorsement, Intent, POLICY_TAG,
    Policy, Principal, Role, SignedIntent, SignedPolicy, WalletPurpose, WalletRule,
};
use concord_wire::identity::IdentityKey;
use concord_wire::rpc::exchange_query;
use concord_wire::units::Amount;
use zeroize::Zeroizing;

fn key(i: u8) -> IdentityKey {
    IdentityKey::from_seed(&Zeroizing::new([i; 32]))
}
const ADMIN: u8 = 1;
const TRADER: u8 = 10;

/// An ed25519 group key (any 32 bytes do for the coordinator's records).
const ED_KEY: [u8; 32] = [7; 32];

struct Wallets {
    /// The generated ECDSA wallet (anvil's first account's key), the policy's "desk".
    ecdsa: String,
    /// The imported ed25519 wallet, the policy's exchange withdraw key.
    ed: String,
    /// A generated schnorr-taproot wallet the policy does not name.
    taproot: String,
    /// The policy in force.
    policy: Policy,
}

fn policy(ecdsa: WalletId, ed: WalletId) -> Policy {
    let p = |name: &str, i: u8, roles: &[Role]| Principal {
        name: name.into(),
        key: key(i).public(),
        roles: roles.to_vec(),
    };
    Policy {
        version: 1,
        previous: None,
        admin_quorum: 1,
        principals: vec![
            p("admin", ADMIN, &[Role::Admin]),
            p("trader", TRADER, &[Role::Trader]),
        ],
        wallets: vec![
            WalletRule {
                wallet: ecdsa,
                label: "desk".into(),
                purpose: WalletPurpose::Trading {
                    deposit_to: vec!["binance".into()],
                    raw_messages: false,
                },
                limits: vec![CoinLimit {
                    coin: "ETH".into(),
                    per_transfer: "2".into(),
                    per_day: "3".into(),
                    cosign_above: None,
                    cosigners: 0,
                }],
                refresh: false,
                derive: vec![],
                multisig: None,
                held: None,
            },
            WalletRule {
                wallet: ed,
                label: "binance-key".into(),
                purpose: WalletPurpose::ExchangeCredential {
                    exchange: "binance".into(),
                    withdraw_to: vec!["desk".into()],
                },
                limits: vec![],
                refresh: false,
                derive: vec![],
                multisig: None,
                held: None,
            },
        ],
        address_book: vec![AddressEntry {
            label: "desk".into(),
            target: AddressTarget::Wallet { wallet: ecdsa },
        }],
        groups: vec![],
    }
}

/// A ready 2-of-3 group `g` (m1, m2, m3) with three wallets made by finished jobs, and a
/// policy in force (as a module reported it) naming two of them.
async fn seed_wallets(c: &Coordinator) -> Wallets {
    let store = c.store();
    for (i, m) in ["m1", "m2", "m3"].into_iter().enumerate() {
        if store.module(m).await.unwrap().is_none() {
            enroll_stand_in(c, m, i as u8 + 1).await;
        }
    }
    store
        .create_group(&GroupRecord {
            id: "g".into(),
            threshold: 2,
            size: 3,
            status: GroupStatus::Ready,
            aux_job_id: None,
            engine: concord_types::EcdsaEngine::Cggmp21,
            members: vec!["m1".into(), "m2".into(), "m3".into()],
            created_at: "2026-01-01T00:00:00Z".into(),
        })
        .await
        .unwrap();
    let make = async |job: &str, kind: JobKind, scheme: Scheme, public_key: Vec<u8>| {
        let id = WalletId::derive(scheme, &public_key);
        let rec = WalletRecord {
            id: id.to_string(),
            group_id: "g".into(),
            scheme: scheme.to_string(),
            public_key,
            job_id: job.into(),
            created_at: concord_coordinator::now(),
        };
        let j = JobRecord {
            scheme: Some(scheme.to_string()),
            wallet_id: (kind == JobKind::Import).then(|| id.to_string()),
            ..JobRecord::pending(job.into(), kind, "g")
        };
        store.insert_job(&j, "test", 0).await.unwrap();
        store.insert_wallet(&rec).await.unwrap();
        let created = WalletCreated::of(rec, "ETH").unwrap();
        store
            .finish_job(job, &serde_json::to_vec(&created).unwrap())
            .await
            .unwrap();
        id
    };
    let ecdsa = make(
        "kg-ecdsa",
        JobKind::Keygen,
        Scheme::EcdsaSecp256k1,
        secp256k1_public(&ANVIL_KEY_0),
    )
    .await;
    let ed = make("im-ed", JobKind::Import, Scheme::Ed25519, ED_KEY.to_vec()).await;
    let taproot = make(
        "kg-taproot",
        JobKind::Keygen,
        Scheme::SchnorrTaproot,
        secp256k1_public(&[3; 32])[1..].to_vec(),
    )
    .await;
    let policy = policy(ecdsa, ed);
    let mut signed = SignedPolicy {
        policy: policy.clone(),
        signatures: vec![],
    };
    signed.sign(&key(ADMIN));
    store
        .save_policy(&PolicyRecord {
            hash: hex::encode(policy.hash()),
            version: 1,
            document: serde_json::to_string(&signed).unwrap(),
            status: "active".into(),
            created_at: concord_coordinator::now(),
        })
        .await
        .unwrap();
    Wallets {
        ecdsa: ecdsa.to_string(),
        ed: ed.to_string(),
        taproot: taproot.to_string(),
        policy,
    }
}

/// A coordinator with a chain (anvil, with the test token deployed and configured as `CTT`)
/// and the exchange `binance`.
async fn with_chain(rpc: &str) -> (Coordinator, concord_chain::Address) {
    let token = concord_chain::test_token::deploy(rpc, &ANVIL_KEY_0)
        .await
        .unwrap();
    let chain: concord_coordinator::config::ChainSettings =
        serde_json::from_value(serde_json::json!({
            "rpc_url": rpc, "chain_id": 31337,
            "tokens": [{ "coin": "CTT", "contract": token }],
        }))
        .unwrap();
    let exchange: concord_coordinator::config::ExchangeEndpoint = serde_json::from_value(
        serde_json::json!({ "name": "binance", "url": "http://127.0.0.1:9" }),
    )
    .unwrap();
    let store = Store::open_in_memory().await.unwrap();
    let c = Coordinator::new(store, Default::default())
        .await
        .unwrap()
        .with_transfers(chain, vec![exchange], None)
        .unwrap();
    (c, token)
}

fn error_of(body: &serde_json::Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn wallets_show_their_kind_group_policy_and_addresses() {
    let (c, admin) = setup().await;
    let viewer = token(&c, "ro", TokenRole::Viewer).await;
    let w = seed_wallets(&c).await;
    let (s, list) = call(&c, get("/v1/wallets", &viewer)).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let list: Vec<WalletView> = round_trip(&list);
    assert_eq!(list.len(), 3);
    let by_id = |id: &str| list.iter().find(|v| v.wallet.id == id).unwrap().clone();

    let ecdsa = by_id(&w.ecdsa);
    assert_eq!(ecdsa.kind, WalletKind::Generated);
    assert_eq!(ecdsa.threshold, 2);
    assert_eq!(ecdsa.members, ["m1", "m2", "m3"]);
    assert_eq!(ecdsa.label.as_deref(), Some("desk"));
    assert!(matches!(
        ecdsa.purpose,
        Some(WalletPurpose::Trading { ref deposit_to, .. }) if deposit_to == &["binance"]
    ));
    assert_eq!(
        ecdsa.addresses,
        [WalletAddress {
            network: "ETH".into(),
            kind: "evm".into(),
            address: ANVIL_ADDRESS_0.into(),
        }]
    );

    let ed = by_id(&w.ed);
    assert_eq!(ed.kind, WalletKind::Imported);
    assert_eq!(ed.label.as_deref(), Some("binance-key"));
    assert!(matches!(
        ed.purpose,
        Some(WalletPurpose::ExchangeCredential { ref exchange, .. }) if exchange == "binance"
    ));
    assert!(ed.addresses.is_empty(), "no address kind for ed25519 yet");

    // Not in the policy: no label, no purpose (in JSON: null).
    let taproot = by_id(&w.taproot);
    assert_eq!(taproot.kind, WalletKind::Generated);
    assert_eq!((taproot.label, taproot.purpose), (None, None));
    assert!(taproot.addresses.is_empty(), "UTXO addresses come later");

    // The flattened record keeps its field names.
    let (s, one) = call(&c, get(&format!("/v1/wallets/{}", w.ecdsa), &viewer)).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    for field in [
        "id",
        "group_id",
        "scheme",
        "public_key",
        "job_id",
        "created_at",
        "kind",
        "threshold",
        "members",
        "label",
        "purpose",
        "addresses",
    ] {
        assert!(one.get(field).is_some(), "{field} missing from {one}");
    }
    assert_eq!(one["kind"], "generated");
    assert_eq!(one["purpose"]["kind"], "trading");
    assert_eq!(one["addresses"][0]["address"], ANVIL_ADDRESS_0);
    assert_eq!(round_trip::<WalletView>(&one), ecdsa);

    // The job that made it carries the wallet and its addresses.
    let (s, job) = call(&c, get("/v1/jobs/kg-ecdsa", &admin)).await;
    assert_eq!(s, StatusCode::OK, "{job}");
    let job: JobView = round_trip(&job);
    let made: WalletCreated = round_trip(job.result.as_ref().unwrap());
    assert_eq!(made.wallet.id, w.ecdsa);
    assert_eq!(made.addresses, ecdsa.addresses);

    let (s, e) = call(&c, get("/v1/wallets/nope", &viewer)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&e), "wallet nope was not found");
}

#[tokio::test]
async fn groups_are_listed_oldest_first() {
    let (c, _) = setup().await;
    let viewer = token(&c, "ro", TokenRole::Viewer).await;
    let (s, empty) = call(&c, get("/v1/groups", &viewer)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(empty, serde_json::json!([]));
    enroll_stand_in(&c, "a", 1).await;
    enroll_stand_in(&c, "b", 2).await;
    for (id, at) in [
        ("late", "2026-03-01T00:00:00Z"),
        ("early", "2026-01-01T00:00:00Z"),
    ] {
        c.store()
            .create_group(&GroupRecord {
                id: id.into(),
                threshold: 2,
                size: 2,
                status: GroupStatus::Preparing,
                aux_job_id: Some(format!("aux-{id}")),
                engine: concord_types::EcdsaEngine::Cggmp21,
                members: vec!["a".into(), "b".into()],
                created_at: at.into(),
            })
            .await
            .unwrap();
    }
    let (s, list) = call(&c, get("/v1/groups", &viewer)).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let list: Vec<GroupRecord> = round_trip(&list);
    let ids: Vec<_> = list.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["early", "late"]);
    assert_eq!(list[0].members, ["a", "b"]);
}

#[tokio::test]
async fn jobs_are_listed_newest_first_and_filtered() {
    let (c, _) = setup().await;
    let viewer = token(&c, "ro", TokenRole::Viewer).await;
    let w = seed_wallets(&c).await;
    let store = c.store();
    // Three sign jobs of the ECDSA wallet, a presignature, at known times.
    for (id, kind, at) in [
        ("s1", JobKind::Sign, "2000-02-01T00:00:01Z"),
        ("s2", JobKind::Sign, "2000-02-01T00:00:03Z"),
        ("p1", JobKind::Presign, "2000-02-01T00:00:02Z"),
        ("s3", JobKind::Sign, "2000-02-01T00:00:04Z"),
    ] {
        let j = JobRecord {
            wallet_id: Some(w.ecdsa.clone()),
            created_at: at.into(),
            updated_at: at.into(),
            ..JobRecord::pending(id.into(), kind, "g")
        };
        store.insert_job(&j, "test", 0).await.unwrap();
    }
    store.fail_job("s1", "refused").await.unwrap();
    store.finish_job("s2", b"{}").await.unwrap();

    let ids = async |query: &str| -> Vec<String> {
        let (s, list) = call(&c, get(&format!("/v1/jobs{query}"), &viewer)).await;
        assert_eq!(s, StatusCode::OK, "{query}: {list}");
        for j in list.as_array().unwrap() {
            assert!(j.get("events").is_none(), "a listed job has no events: {j}");
        }
        round_trip::<Vec<JobRecord>>(&list)
            .into_iter()
            .map(|j| j.id)
            .collect()
    };
    // Newest first; the seeded wallets' jobs were made now, after the ones of 2000.
    let all = ids("").await;
    assert_eq!(all.len(), 7, "{all:?}");
    assert_eq!(&all[3..], ["s3", "s2", "p1", "s1"]);
    assert_eq!(ids("?kind=sign").await, ["s3", "s2", "s1"]);
    assert_eq!(ids("?kind=sign&status=failed").await, ["s1"]);
    assert_eq!(ids("?status=done&kind=sign").await, ["s2"]);
    assert_eq!(ids("?kind=sign&limit=2").await, ["s3", "s2"]);
    assert_eq!(ids("?kind=keygen").await.len(), 2);
    // A wallet's jobs include the one that made it.
    assert_eq!(
        ids(&format!("?wallet={}", w.ecdsa)).await,
        ["kg-ecdsa", "s3", "s2", "p1", "s1"]
    );
    assert_eq!(ids(&format!("?wallet={}", w.ed)).await, ["im-ed"]);
    assert!(ids("?wallet=unknown").await.is_empty());

    for (query, names) in [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=ten", "limit"),
        ("?kind=dance", "kind"),
        ("?status=asleep", "status"),
        ("?wallet=", "wallet"),
        ("?colour=red", "colour"),
    ] {
        let (s, e) = call(&c, get(&format!("/v1/jobs{query}"), &viewer)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {e}");
        let _: ApiError = round_trip(&e);
        assert!(error_of(&e).contains(names), "{query}: {e}");
    }
    let (_, e) = call(&c, get("/v1/jobs?kind=dance", &viewer)).await;
    assert_eq!(
        error_of(&e),
        "kind \"dance\" is not a job kind: expected aux_info, keygen, import, sign, presign, refresh, derive or repair"
    );
    let (_, e) = call(&c, get("/v1/jobs?limit=5000", &viewer)).await;
    assert_eq!(
        error_of(&e),
        "limit must be a whole number from 1 to 1000, not \"5000\""
    );
}

#[tokio::test]
async fn wallet_balances_read_the_chain() {
    let (_anvil, rpc) = start_anvil().await;
    let (c, token_address) = with_chain(&rpc).await;
    let (c, _) = with_admin(c).await;
    let viewer = token(&c, "ro", TokenRole::Viewer).await;
    let w = seed_wallets(&c).await;
    let (s, b) = call(
        &c,
        get(&format!("/v1/wallets/{}/balances", w.ecdsa), &viewer),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let b: WalletBalances = round_trip(&b);
    assert_eq!(b.wallet, w.ecdsa);
    assert_eq!(b.network, "ETH");
    assert_eq!(b.address, ANVIL_ADDRESS_0);
    // The account deployed the token (paying gas) and holds its whole supply.
    let client = concord_chain::EvmClient::new(&rpc).unwrap();
    let wei = client
        .balance(ANVIL_ADDRESS_0.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        b.balances,
        [
            ChainBalance {
                coin: "ETH".into(),
                asset: "native".into(),
                amount: Amount::from_base(wei, 18).to_string(),
                raw: wei.to_string(),
            },
            ChainBalance {
                coin: "CTT".into(),
                asset: token_address.to_checksum(None),
                amount: "1000000000".into(),
                raw: "1000000000000000000000000000".into(),
            },
        ]
    );
    assert!(
        b.balances[0].amount.starts_with("9999.99"),
        "{:?}",
        b.balances
    );

    // An Ed25519 wallet (an exchange's API key) holds nothing on a chain.
    let (s, e) = call(&c, get(&format!("/v1/wallets/{}/balances", w.ed), &viewer)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(
        error_of(&e),
        format!(
            "wallet {} is ed25519: it holds nothing on a chain configured here",
            w.ed
        )
    );
    let (s, _) = call(&c, get("/v1/wallets/nope/balances", &viewer)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A coordinator without a chain says so: a conflict with its configuration (neither the
    // request's fault nor an outage a retry would outlast); a wallet it does not have is not
    // found, whatever its configuration.
    let (bare, admin) = setup().await;
    let (s, e) = call(&bare, get("/v1/wallets/nope/balances", &admin)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let w = seed_wallets(&bare).await;
    let (s, e) = call(
        &bare,
        get(&format!("/v1/wallets/{}/balances", w.ecdsa), &admin),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(
        error_of(&e),
        "this coordinator has no chain configured ([chain] in its configuration), so it cannot read wallet balances"
    );
}

#[tokio::test]
async fn exchange_balances_are_read_through_a_modules_connector() {
    let (c, _) = setup().await;
    let viewer = token(&c, "ro", TokenRole::Viewer).await;
    // Nobody to ask, ever: no module is enrolled (a conflict with the coordinator's state,
    // not a server error).
    let (s, e) = call(&c, get("/v1/exchanges/binance/balances", &viewer)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(
        error_of(&e),
        "no module is enrolled: exchange binance's balances are read by a module, through its own connector"
    );
    for (i, m) in ["m1", "m2", "m3"].into_iter().enumerate() {
        enroll_stand_in(&c, m, i as u8 + 1).await;
    }
    // Nobody to ask now: the enrolled modules are not connected (an outage: a retry may help).
    let (s, e) = call(&c, get("/v1/exchanges/binance/balances", &viewer)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert_eq!(
        error_of(&e),
        "no module is connected to ask exchange binance"
    );
    // m1 has no connection to the exchange; m2 answers (zero balances left out); m3 is not
    // connected.
    let mut asked_m1 = connect_stand_in(&c, "m1", |_| {
        error_answer("this module has no connection to exchange \"binance\"")
    });
    let mut asked_m2 = connect_stand_in(&c, "m2", |q| match &q.query {
        Some(exchange_query::Query::Balances(_)) => json_answer(serde_json::json!([
            { "asset": "ETH", "free": "1.5", "locked": "0.25" },
            { "asset": "BTC", "free": "0.00000000", "locked": "0.00000000" },
            { "asset": "CTT", "free": "0", "locked": "3" },
        ])),
        _ => error_answer("not asked in this test"),
    });
    let (s, b) = call(&c, get("/v1/exchanges/binance/balances", &viewer)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let b: ExchangeBalances = round_trip(&b);
    assert_eq!(b.exchange, "binance");
    assert_eq!(b.module, "m2");
    let assets: Vec<_> = b.balances.iter().map(|x| x.asset.as_str()).collect();
    assert_eq!(assets, ["ETH", "CTT"]);
    assert_eq!(b.balances[0].free, "1.5");
    for asked in [
        asked_m1.recv().await.unwrap(),
        asked_m2.recv().await.unwrap(),
    ] {
        assert_eq!(asked.exchange, "binance");
        assert!(matches!(
            asked.query,
            Some(exchange_query::Query::Balances(_))
        ));
    }

    // Every connected module fails: each one's reason is named.
    let (c2, admin) = setup().await;
    enroll_stand_in(&c2, "m1", 1).await;
    let _asked = connect_stand_in(&c2, "m1", |_| {
        error_answer("this module has no connection to exchange \"kraken\"")
    });
    let (s, e) = call(&c2, get("/v1/exchanges/kraken/balances", &admin)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert_eq!(
        error_of(&e),
        "exchange kraken could not be asked: m1: this module has no connection to exchange \"kraken\""
    );
}

/// Every answer of the API, read into the type the CLI reads it into, writes back the same
/// JSON.
#[tokio::test]
async fn every_answer_round_trips_through_its_type() {
    let (_anvil, rpc) = start_anvil().await;
    let (c, _) = with_chain(&rpc).await;
    let (c, admin) = with_admin(c).await;

    // Modules: enrolled for real (their keys checked), one connected stand-in.
    for (i, id) in ["m1", "m2", "m3"].into_iter().enumerate() {
        let identity = key(50 + i as u8);
        let seal = concord_wire::SealingKey::generate(&mut rand::rngs::OsRng).public();
        let body = serde_json::json!({
            "id": id, "identity": identity.public().to_string(), "sealing_key": seal.to_string(),
            "sealing_key_signature": hex::encode(identity.sign_sealing_key(&seal)),
        });
        let (s, m) = call(&c, post("/v1/modules", &admin, Some(id), &body.to_string())).await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
        round_trip::<ModuleView>(&m);
    }
    let w = seed_wallets(&c).await;
    // Policies: the one in force, a proposal following it, signed (before a module is
    // connected: a signature waits a while for connected modules to answer).
    let mut v2 = w.policy.clone();
    v2.version = 2;
    v2.previous = Some(w.policy.hash());
    v2.wallets[0].label = "desk-2".into();
    let body = serde_json::json!({ "policy": v2 }).to_string();
    let (s, p) = call(&c, post("/v1/policies", &admin, Some("p2"), &body)).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let p: PolicyView = round_trip(&p);
    let sig = Endorsement::sign(&key(ADMIN), POLICY_TAG, &v2.to_canonical());
    let (s, p2) = call(
        &c,
        post(
            &format!("/v1/policies/{}/signatures", p.hash),
            &admin,
            Some("s2"),
            &serde_json::to_string(&sig).unwrap(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p2}");
    round_trip::<PolicyView>(&p2);
    let (_, p2) = call(&c, get(&format!("/v1/policies/{}", p.hash), &admin)).await;
    round_trip::<PolicyView>(&p2);
    let (_, all) = call(&c, get("/v1/policies", &admin)).await;
    let all: Policies = round_trip(&all);
    assert_eq!(all.current.unwrap().version, 1);
    assert_eq!(all.pending.unwrap().hash, p.hash);

    let _asked = connect_stand_in(&c, "m1", |q| match &q.query {
        Some(exchange_query::Query::Balances(_)) => {
            json_answer(serde_json::json!([{ "asset": "ETH", "free": "2", "locked": "0" }]))
        }
        _ => error_answer("not asked in this test"),
    });
    let (s, m) = call(&c, get("/v1/modules", &admin)).await;
    assert_eq!(s, StatusCode::OK);
    let modules: Vec<ModuleView> = round_trip(&m);
    assert!(modules.iter().any(|m| m.module.id == "m1" && m.connected));

    // Groups.
    let body = r#"{"id":"g2","threshold":2,"members":["m1","m2","m3"]}"#;
    let (s, g) = call(&c, post("/v1/groups", &admin, Some("g2"), body)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{g}");
    let g2: GroupRecord = round_trip(&g);
    let (_, g) = call(&c, get("/v1/groups/g2", &admin)).await;
    round_trip::<GroupRecord>(&g);
    let (_, g) = call(&c, get("/v1/groups", &admin)).await;
    assert_eq!(round_trip::<Vec<GroupRecord>>(&g).len(), 2);

    // Jobs: one started through the API, one view with a result, the list.
    let (s, j) = call(
        &c,
        post(
            "/v1/wallets",
            &admin,
            Some("w1"),
            r#"{"group":"g","scheme":"ecdsa-secp256k1"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{j}");
    round_trip::<JobRecord>(&j);
    let (_, j) = call(
        &c,
        get(&format!("/v1/jobs/{}", g2.aux_job_id.unwrap()), &admin),
    )
    .await;
    round_trip::<JobView>(&j);
    let (_, j) = call(&c, get("/v1/jobs/im-ed", &admin)).await;
    let j: JobView = round_trip(&j);
    assert_eq!(j.job.status, JobStatus::Done);
    round_trip::<WalletCreated>(j.result.as_ref().unwrap());
    // A sign job with every field and an event of each sort.
    let signed = JobRecord {
        wallet_id: Some(w.ecdsa.clone()),
        scheme: Some("ecdsa-secp256k1".into()),
        rule: Some(AgreementRule::Threshold),
        mode: Some(SignMode::Presigned),
        digest: Some(vec![0xab; 32]),
        transfer_id: Some("t-1".into()),
        ..JobRecord::pending("sign-1".into(), JobKind::Sign, "g")
    };
    c.store().insert_job(&signed, "elsewhere", 0).await.unwrap();
    c.store()
        .set_job_running("sign-1", JobStatus::Signing, Some(&[1; 32]), Some("[0,1]"))
        .await
        .unwrap();
    for kind in EventKind::ALL {
        c.store()
            .add_event(
                "sign-1",
                Some("m1"),
                *kind,
                Some(&[0xab; 32]),
                Some(kind.as_str()),
                Some(&[0xcd; 64]),
            )
            .await
            .unwrap();
    }
    c.store()
        .add_event("sign-1", None, EventKind::Note, None, None, None)
        .await
        .unwrap();
    c.store()
        .fail_job("sign-1", "refused: over the daily limit")
        .await
        .unwrap();
    let (_, j) = call(&c, get("/v1/jobs/sign-1", &admin)).await;
    let j: JobView = round_trip(&j);
    assert_eq!(j.events.len(), EventKind::ALL.len() + 1);
    assert_eq!(j.job.signers.as_deref(), Some("[0,1]"));
    let (_, j) = call(&c, get("/v1/jobs", &admin)).await;
    round_trip::<Vec<JobRecord>>(&j);

    // Wallets and balances.
    let (_, v) = call(&c, get("/v1/wallets", &admin)).await;
    round_trip::<Vec<WalletView>>(&v);
    let (_, v) = call(&c, get(&format!("/v1/wallets/{}", w.ed), &admin)).await;
    round_trip::<WalletView>(&v);
    let (s, v) = call(
        &c,
        get(&format!("/v1/wallets/{}/balances", w.ecdsa), &admin),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    round_trip::<WalletBalances>(&v);
    let (s, v) = call(&c, get("/v1/exchanges/binance/balances", &admin)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    round_trip::<ExchangeBalances>(&v);

    // The exchange's withdraw key.
    let body = serde_json::json!({ "wallet": w.ed, "api_key": "key-1" }).to_string();
    let (s, v) = call(
        &c,
        post(
            "/v1/exchanges/binance/credential",
            &admin,
            Some("cred"),
            &body,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let cred: RegisteredCredential = round_trip(&v);
    assert_eq!(cred.wallet, w.ed);

    // Tokens.
    let (s, t) = call(
        &c,
        post(
            "/v1/tokens",
            &admin,
            Some("t1"),
            r#"{"name":"desk","role":"trader"}"#,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let created: CreatedToken = round_trip(&t);
    assert_eq!(created.role, TokenRole::Trader);
    let (_, t) = call(&c, get("/v1/tokens", &admin)).await;
    let tokens: Vec<TokenView> = round_trip(&t);
    assert!(tokens.iter().any(|t| t.name == "desk"));

    // Transfers: a deposit requested through the API, and a withdrawal record with every
    // field filled in.
    let intent = SignedIntent::new(
        Intent::new(
            Action::Deposit {
                wallet: w.ecdsa.parse().unwrap(),
                exchange: "binance".into(),
                coin: "ETH".into(),
                network: "ETH".into(),
                amount: "0.5".into(),
                rule: AgreementRule::All,
            },
            600,
        ),
        &key(TRADER),
    );
    let body = serde_json::json!({ "intent": intent }).to_string();
    let (s, t) = call(
        &c,
        post("/v1/transfers/deposits", &admin, Some("d1"), &body),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{t}");
    let deposit: TransferRecord = round_trip(&t);
    assert_eq!(deposit.requester.as_deref(), Some("trader"));
    let withdrawal = full_withdrawal(&w);
    c.store()
        .insert_transfer(&withdrawal, "elsewhere", 0)
        .await
        .unwrap();
    let (_, t) = call(&c, get(&format!("/v1/transfers/{}", withdrawal.id), &admin)).await;
    assert_eq!(round_trip::<TransferRecord>(&t), withdrawal);
    // A withdrawal whose signed request the exchange may still take: its signature is
    // withheld from the transfer and from its sign job (a bearer credential; a Coinbase
    // token does not even bind the send's body).
    let mut live = full_withdrawal(&w);
    live.id = "live-1".into();
    live.sign_job_id = Some("sign-live".into());
    if let Some(sr) = live.signed_request.as_mut() {
        sr.valid_until_ms = concord_coordinator::records::epoch_ms() + 60_000;
    }
    c.store()
        .insert_transfer(&live, "elsewhere", 0)
        .await
        .unwrap();
    let job = JobRecord {
        transfer_id: Some("live-1".into()),
        ..JobRecord::pending("sign-live".into(), JobKind::Sign, "g")
    };
    c.store().insert_job(&job, "elsewhere", 0).await.unwrap();
    c.store()
        .finish_job(
            "sign-live",
            br#"{"presigned":false,"signature":"abcd","signers":[0,1],"approvers":["m1","m2"],"dissenters":{},"digest":"ab","policy":null}"#,
        )
        .await
        .unwrap();
    let (_, t) = call(&c, get("/v1/transfers/live-1", &admin)).await;
    let t: TransferRecord = round_trip(&t);
    assert_eq!(
        t.signed_request.unwrap().signature,
        "",
        "withheld while live"
    );
    let (_, j) = call(&c, get("/v1/jobs/sign-live", &admin)).await;
    let j: JobView = round_trip(&j);
    let result = j.result.unwrap();
    assert_eq!(result["signature"], "", "withheld from the job too");
    assert_eq!(result["approvers"], serde_json::json!(["m1", "m2"]));
    let (_, t) = call(&c, get("/v1/transfers", &admin)).await;
    assert_eq!(round_trip::<Vec<TransferRecord>>(&t).len(), 3);

    // Errors.
    let (s, e) = call(&c, get("/v1/transfers/nope", &admin)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let e: ApiError = round_trip(&e);
    assert_eq!(e.error, "transfer nope was not found");
}

/// A withdrawal's record with every optional field set.
fn full_withdrawal(w: &Wallets) -> TransferRecord {
    let intent = SignedIntent::new(
        Intent::new(
            Action::Withdraw {
                exchange: "binance".into(),
                coin: "ETH".into(),
                network: "ETH".into(),
                amount: "0.25".into(),
                to: AddressRef::Label("desk".into()),
                rule: AgreementRule::Threshold,
            },
            600,
        ),
        &key(TRADER),
    );
    TransferRecord {
        id: intent.intent.id.clone(),
        kind: TransferKind::Withdrawal,
        status: TransferStatus::Sent,
        wallet_id: w.ecdsa.clone(),
        exchange: "binance".into(),
        coin: "ETH".into(),
        network: "ETH".into(),
        amount: Amount::parse("0.25", 18).unwrap(),
        rule: AgreementRule::Threshold,
        mode: SignMode::Interactive,
        destination: Some(ANVIL_ADDRESS_0.into()),
        to: Some(AddressRef::Label("desk".into())),
        requester: Some("trader".into()),
        intent: Some(intent),
        resolutions: vec![
            Resolution {
                module: "m1".into(),
                address: Some(ANVIL_ADDRESS_0.into()),
                error: None,
            },
            Resolution {
                module: "m3".into(),
                address: None,
                error: Some("module m3 is not connected".into()),
            },
        ],
        nonce: Some(7),
        payload: Some("a1b2".into()),
        sign_job_id: Some("job-1".into()),
        dissenters: [("m3".to_owned(), "over the daily limit".to_owned())].into(),
        approvers: vec!["m1".into(), "m2".into()],
        policy: Some(hex::encode(w.policy.hash())),
        raw_tx: Some("02f8".into()),
        signed_request: Some(SignedRequest {
            request: "coin=ETH&amount=0.25".into(),
            signature: "c2ln".into(),
            valid_until_ms: 1_790_000_000_000,
        }),
        tx_hash: Some(format!("0x{}", "ab".repeat(32))),
        exchange_withdrawal_id: Some("wd-9".into()),
        timings_ms: [("signed".to_owned(), 812.125), ("sent".to_owned(), 2_500.5)].into(),
        log: vec!["2026-01-01T00:00:00Z requested: by trader".into()],
        error: Some("waiting: the exchange is slow (retrying)".into()),
        created_at: "2026-01-01T00:00:00Z".into(),
        created_ms: 1_767_225_600_123.456,
    }
}
