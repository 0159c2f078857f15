//! Two coordinators on one PostgreSQL database, killed at random moments while transfers
//! run and the exchange times out and fails: `concord bench soak` counts, from the chain
//! and the exchange rather than from the coordinators' own records, that every transfer
//! completed exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::concord;
use sqlx::Connection as _;

/// A fresh database on the test cluster (`./scripts/test.sh` starts it and exports
/// `CONCORD_TEST_PG_URL`).
async fn fresh_database() -> String {
    let url = std::env::var("CONCORD_TEST_PG_URL").expect(
        "CONCORD_TEST_PG_URL is not set: run the tests with ./scripts/test.sh, which starts PostgreSQL",
    );
    let name = format!("soak_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("{}/{name}", url.rsplit_once('/').unwrap().0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_killed_at_random_lose_and_duplicate_nothing() {
    let url = fresh_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("soak");
    let out = tokio::task::spawn_blocking(move || {
        concord(&[
            "bench",
            "soak",
            "--dir",
            &dir.display().to_string(),
            "--postgres",
            &url,
            "--transfers",
            "50",
            "--kills",
            "2",
            "--exchange-faults",
            "2",
            "--insecure-test-primes",
            "--json",
        ])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench soak failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap();
    let r: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(r["kills"], 2, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["duplicated"], 0, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["completed"], 50, "{r}");
}
