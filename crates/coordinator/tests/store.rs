//! The store's behaviour, the same on both backends: SQLite (a file) and PostgreSQL (a fresh
//! database on the cluster `./scripts/test.sh` starts, `CONCORD_TEST_PG_URL`). Records
//! round-trip; a transfer is created once; writes are fenced by the lease; concurrent claims
//! take each piece of work exactly once; an idempotency key is reserved by exactly one of
//! many concurrent requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use concord_coordinator::records::{
    GroupRecord, GroupStatus, JobKind, JobRecord, JobStatus, ModuleRecord, SignMode, TransferKind,
    TransferRecord, TransferStatus, WalletRecord, now,
};
use concord_coordinator::store::leases::Work;
use concord_coordinator::store::{Backend, JobFilter, Reservation, Store};
use concord_coordinator::{AgreementRule, Error};
use concord_wire::units::Amount;

/// A fresh PostgreSQL database on the test cluster.
async fn postgres() -> Store {
    use sqlx::Connection;
    let url = std::env::var("CONCORD_TEST_PG_URL").expect(
        "CONCORD_TEST_PG_URL is not set: run the tests with ./scripts/test.sh, which starts PostgreSQL",
    );
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = url.rsplit_once('/').unwrap().0;
    Store::open_url(&format!("{base}/{name}")).await.unwrap()
}

async fn sqlite(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("c.db")).await.unwrap()
}

fn transfer(id: &str, wallet: &str, created_ms: f64) -> TransferRecord {
    TransferRecord {
        id: id.into(),
        kind: TransferKind::Deposit,
        status: TransferStatus::Requested,
        wallet_id: wallet.into(),
        exchange: "binance".into(),
        coin: "ETH".into(),
        network: "ETH".into(),
        amount: Amount::parse("1", 18).unwrap(),
        rule: AgreementRule::All,
        mode: SignMode::Presigned,
        destination: None,
        to: None,
        requester: None,
        intent: None,
        resolutions: vec![],
        nonce: None,
        payload: None,
        sign_job_id: None,
        dissenters: BTreeMap::new(),
        approvers: vec![],
        policy: None,
        raw_tx: None,
        signed_request: None,
        tx_hash: None,
        exchange_withdrawal_id: None,
        timings_ms: BTreeMap::new(),
        log: vec![],
        error: None,
        created_at: now(),
        created_ms,
    }
}

async fn records_round_trip(s: &Store) {
    let m = ModuleRecord {
        id: "m1".into(),
        identity: vec![1; 32],
        sealing_key: vec![2; 32],
        sealing_key_signature: vec![3; 64],
        enrolled_at: now(),
    };
    s.enroll_module(&m).await.unwrap();
    assert!(matches!(s.enroll_module(&m).await, Err(Error::Conflict(_))));
    assert_eq!(
        s.module_by_identity(&[1; 32]).await.unwrap(),
        Some(m.clone())
    );
    let g = GroupRecord {
        id: "g".into(),
        threshold: 1,
        size: 1,
        status: GroupStatus::Preparing,
        aux_job_id: None,
        engine: concord_types::EcdsaEngine::Dkls23,
        members: vec!["m1".into()],
        created_at: now(),
    };
    s.create_group(&g).await.unwrap();
    s.set_group_status("g", GroupStatus::Ready).await.unwrap();
    assert_eq!(
        s.group("g").await.unwrap().unwrap().status,
        GroupStatus::Ready
    );
    let w = WalletRecord {
        id: "w".into(),
        group_id: "g".into(),
        scheme: "ed25519".into(),
        public_key: vec![9; 32],
        job_id: "j".into(),
        created_at: now(),
    };
    s.insert_wallet(&w).await.unwrap();
    s.insert_wallet(&w).await.unwrap();
    assert_eq!(s.wallets().await.unwrap(), vec![w]);
    let job = JobRecord {
        payload: Some(vec![1, 2, 3]),
        digest: Some(vec![4; 32]),
        rule: Some(AgreementRule::Threshold),
        ..JobRecord::pending("j1".into(), JobKind::Sign, "g")
    };
    s.insert_job(&job, "me", 0).await.unwrap();
    assert_eq!(s.job("j1").await.unwrap().unwrap(), job);
    assert_eq!(s.next_attempt("j1").await.unwrap(), 1);
    assert_eq!(s.next_attempt("j1").await.unwrap(), 2);
    s.add_event(
        "j1",
        Some("m1"),
        concord_coordinator::records::EventKind::Note,
        None,
        Some("x"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(s.events("j1").await.unwrap().len(), 1);
    s.use_nonce("w", 1, 4).await.unwrap();
    s.use_nonce("w", 1, 2).await.unwrap();
    assert_eq!(
        s.next_nonce("w", 1).await.unwrap(),
        Some(5),
        "never goes back"
    );
}

async fn transfers_are_made_once_and_fenced(s: &Store) {
    let t = transfer("t1", "w", 1.0);
    assert!(s.insert_transfer(&t, "a", u64::MAX / 2).await.unwrap());
    assert!(
        !s.insert_transfer(&t, "b", u64::MAX / 2).await.unwrap(),
        "once"
    );
    let mut moved = t.clone();
    moved.status = TransferStatus::Queued;
    s.save_transfer(&moved, "a").await.unwrap();
    assert!(matches!(
        s.save_transfer(&moved, "b").await,
        Err(Error::LeaseLost(_))
    ));
    assert_eq!(
        s.transfer("t1").await.unwrap().unwrap().status,
        TransferStatus::Queued
    );
    // The deposit queue: the first recorded not yet on chain goes first. A request stamped
    // earlier but recorded later (parallel requests commit out of order) queues behind: the
    // head may have fixed its nonce already, and two deposits would propose the same one.
    s.insert_transfer(&transfer("t0", "w", 0.5), "a", 0)
        .await
        .unwrap();
    assert_eq!(
        s.deposit_queue_head("w").await.unwrap().as_deref(),
        Some("t1")
    );
    let mut on_chain = moved.clone();
    on_chain.status = TransferStatus::Broadcast;
    s.save_transfer(&on_chain, "a").await.unwrap();
    assert_eq!(
        s.deposit_queue_head("w").await.unwrap().as_deref(),
        Some("t0")
    );
    // The same request again takes no second place in the queue.
    assert!(
        !s.insert_transfer(&transfer("t0", "w", 0.5), "a", 0)
            .await
            .unwrap()
    );
    s.insert_transfer(&transfer("t2", "w", 0.1), "a", 0)
        .await
        .unwrap();
    assert_eq!(
        s.deposit_queue_head("w").await.unwrap().as_deref(),
        Some("t0")
    );
}

async fn concurrent_claims_take_each_piece_once(s: &Store) {
    for i in 0..20 {
        s.insert_transfer(
            &transfer(&format!("c{i}"), "q", 10.0 + f64::from(i)),
            "dead",
            1,
        )
        .await
        .unwrap();
    }
    let claim = |owner: &'static str| {
        let s = s.clone();
        async move {
            let mut got = Vec::new();
            for _ in 0..10 {
                for t in s
                    .claim_transfers(owner, 1_000, u64::MAX / 2, 3, false)
                    .await
                    .unwrap()
                {
                    got.push(t.id);
                }
            }
            got
        }
    };
    let (a, b) = tokio::join!(claim("x"), claim("y"));
    let a: std::collections::BTreeSet<String> = a.into_iter().collect();
    let b: std::collections::BTreeSet<String> = b.into_iter().collect();
    assert!(
        a.is_disjoint(&b),
        "no transfer claimed by both: {a:?} {b:?}"
    );
    for i in 0..20 {
        let id = format!("c{i}");
        assert!(a.contains(&id) || b.contains(&id), "{id} was claimed");
    }
    // A held lease is not taken; an expired one is; the holder renews its own.
    assert!(
        !s.take_lease(Work::Transfer, "c0", "z", 1_000, 5_000)
            .await
            .unwrap()
    );
    let holder = if a.iter().any(|id| id == "c0") {
        "x"
    } else {
        "y"
    };
    assert!(
        s.renew_lease(Work::Transfer, "c0", holder, 9_000)
            .await
            .unwrap()
    );
    assert!(
        s.take_lease(
            Work::Transfer,
            "c0",
            "z",
            u64::MAX / 2 + 1,
            u64::MAX / 2 + 2
        )
        .await
        .unwrap()
    );
    assert!(
        !s.renew_lease(Work::Transfer, "c0", holder, 9_000)
            .await
            .unwrap()
    );
}

async fn one_request_reserves_a_key(s: &Store) {
    let reserve = |i: u8| {
        let s = s.clone();
        async move {
            s.reserve_key(b"token", "POST /x", "k", &[7], 1_000 + u64::from(i), 60_000)
                .await
                .unwrap()
        }
    };
    let all = futures::future::join_all((0..20).map(reserve)).await;
    assert_eq!(all.iter().filter(|r| **r == Reservation::New).count(), 1);
    s.complete_key(b"token", "POST /x", "k", 201, b"{}")
        .await
        .unwrap();
    assert_eq!(
        reserve(0).await,
        Reservation::Done(vec![7], 201, b"{}".to_vec())
    );
    // Another route, the same key: another request.
    assert_eq!(
        s.reserve_key(b"token", "POST /y", "k", &[8], 1_000, 60_000)
            .await
            .unwrap(),
        Reservation::New
    );
    // A reservation whose coordinator died is taken over once stale.
    s.reserve_key(b"token", "POST /z", "k", &[9], 1_000, 60_000)
        .await
        .unwrap();
    assert!(matches!(
        s.reserve_key(b"token", "POST /z", "k", &[9], 2_000, 60_000)
            .await
            .unwrap(),
        Reservation::InProgress(_)
    ));
    // Another body under the stale key is not the same request: it takes nothing over.
    assert_eq!(
        s.reserve_key(b"token", "POST /z", "k", &[10], 100_000, 60_000)
            .await
            .unwrap(),
        Reservation::InProgress(vec![9])
    );
    assert_eq!(
        s.reserve_key(b"token", "POST /z", "k", &[9], 100_000, 60_000)
            .await
            .unwrap(),
        Reservation::New
    );
}

/// Groups oldest first; jobs newest first, filtered by kind, status and wallet (a wallet's
/// jobs include the key generation that made it).
async fn groups_and_jobs_are_listed(s: &Store) {
    s.create_group(&GroupRecord {
        id: "listed".into(),
        threshold: 1,
        size: 1,
        status: GroupStatus::Ready,
        aux_job_id: None,
        engine: concord_types::EcdsaEngine::Dkls23,
        members: vec!["m1".into()],
        created_at: "2999-01-01T00:00:00Z".into(),
    })
    .await
    .unwrap();
    let groups = s.groups().await.unwrap();
    assert_eq!(groups.last().unwrap().id, "listed");
    assert_eq!(groups.last().unwrap().members, ["m1"]);
    for (id, kind, at) in [
        ("lk", JobKind::Keygen, "2000-01-01T00:00:00Z"),
        ("lp", JobKind::Presign, "2000-01-01T00:00:01Z"),
        ("ls1", JobKind::Sign, "2000-01-01T00:00:02Z"),
        ("ls2", JobKind::Sign, "2000-01-01T00:00:03Z"),
    ] {
        let job = JobRecord {
            wallet_id: (kind != JobKind::Keygen).then(|| "lw".to_owned()),
            created_at: at.into(),
            ..JobRecord::pending(id.into(), kind, "listed")
        };
        s.insert_job(&job, "me", 0).await.unwrap();
    }
    s.insert_wallet(&WalletRecord {
        id: "lw".into(),
        group_id: "listed".into(),
        scheme: "ed25519".into(),
        public_key: vec![8; 32],
        job_id: "lk".into(),
        created_at: now(),
    })
    .await
    .unwrap();
    s.fail_job("ls2", "refused").await.unwrap();
    let ids = async |filter: JobFilter| -> Vec<String> {
        s.jobs(&filter)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect()
    };
    let lw = || Some("lw".to_owned());
    assert_eq!(
        ids(JobFilter {
            wallet: lw(),
            ..Default::default()
        })
        .await,
        ["ls2", "ls1", "lp", "lk"]
    );
    assert_eq!(
        ids(JobFilter {
            wallet: lw(),
            kind: Some(JobKind::Sign),
            ..Default::default()
        })
        .await,
        ["ls2", "ls1"]
    );
    assert_eq!(
        ids(JobFilter {
            wallet: lw(),
            status: Some(JobStatus::Failed),
            ..Default::default()
        })
        .await,
        ["ls2"]
    );
    assert_eq!(
        ids(JobFilter {
            wallet: lw(),
            limit: 2,
            ..Default::default()
        })
        .await,
        ["ls2", "ls1"]
    );
    assert_eq!(
        ids(JobFilter {
            kind: Some(JobKind::Keygen),
            status: Some(JobStatus::Pending),
            ..Default::default()
        })
        .await,
        ["lk"]
    );
    assert!(s.jobs(&JobFilter::default()).await.unwrap().len() >= 4);
}

async fn battery(s: Store) {
    records_round_trip(&s).await;
    groups_and_jobs_are_listed(&s).await;
    transfers_are_made_once_and_fenced(&s).await;
    concurrent_claims_take_each_piece_once(&s).await;
    one_request_reserves_a_key(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = sqlite(&dir).await;
    assert_eq!(s.backend(), Backend::Sqlite);
    battery(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    let s = postgres().await;
    assert_eq!(s.backend(), Backend::Postgres);
    battery(s).await;
}
