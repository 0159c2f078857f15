//! Leases: several coordinators may share one database. Each unfinished transfer and each
//! job not run by a transfer is driven by the coordinator that holds its lease (`owner`,
//! `lease_until`); the holder renews it while it runs, every write of a transfer's step is
//! fenced by it, and once it expires (the holder died or lost the database) another
//! coordinator claims the work and resumes it from its last written step. PostgreSQL claims
//! with `FOR UPDATE SKIP LOCKED`, so two coordinators never wait on each other's rows; SQLite
//! serializes writers anyway.

use super::{Backend, Store, col, db, i64_of};
use crate::Error;
use crate::records::{JobRecord, TransferRecord};

/// How long a lease lasts without renewal, ms.
pub const LEASE_MS: u64 = 6_000;

/// Which work a lease is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A transfer.
    Transfer,
    /// A job.
    Job,
}

impl Work {
    fn table(self) -> &'static str {
        match self {
            Work::Transfer => "transfers",
            Work::Job => "jobs",
        }
    }
}

impl Store {
    fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// Claims up to `limit` unfinished transfers whose lease is free or expired at `now_ms`
    /// — with `own`, also those leased to `owner` itself (a coordinator restarted under the
    /// same instance id takes its work back at once) — oldest first, for `owner` until
    /// `lease_until`.
    pub async fn claim_transfers(
        &self,
        owner: &str,
        now_ms: u64,
        lease_until: u64,
        limit: u32,
        own: bool,
    ) -> Result<Vec<TransferRecord>, Error> {
        let sql = format!(
            "UPDATE transfers SET owner = ?, lease_until = ? WHERE id IN (\
               SELECT id FROM transfers WHERE status NOT IN ('credited', 'arrived', 'failed') \
               AND (owner IS NULL OR owner = ? OR lease_until < ?) ORDER BY created_us, id LIMIT ?{}) RETURNING record",
            self.skip_locked()
        );
        let rows = sqlx::query(self.sql(&sql))
            .bind(owner)
            .bind(i64_of(lease_until))
            .bind(if own { owner } else { "" })
            .bind(i64_of(now_ms))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(&col::<String>(r, "record")?)
                    .map_err(|e| Error::Storage(format!("stored transfer: {e}")))
            })
            .collect()
    }

    /// Claims up to `limit` unfinished jobs that no transfer runs, whose lease is free or
    /// expired (with `own`, or `owner`'s own).
    pub async fn claim_jobs(
        &self,
        owner: &str,
        now_ms: u64,
        lease_until: u64,
        limit: u32,
        own: bool,
    ) -> Result<Vec<JobRecord>, Error> {
        let sql = format!(
            "UPDATE jobs SET owner = ?, lease_until = ? WHERE id IN (\
               SELECT id FROM jobs WHERE status NOT IN ('done', 'failed') AND transfer_id IS NULL \
               AND (owner IS NULL OR owner = ? OR lease_until < ?) ORDER BY created_at, id LIMIT ?{}) RETURNING id",
            self.skip_locked()
        );
        let rows = sqlx::query(self.sql(&sql))
            .bind(owner)
            .bind(i64_of(lease_until))
            .bind(if own { owner } else { "" })
            .bind(i64_of(now_ms))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(j) = self.job(&col::<String>(r, "id")?).await? {
                out.push(j);
            }
        }
        Ok(out)
    }

    /// Takes a lease on one piece of work for `owner` if it is free or expired (or already
    /// `owner`'s); `false` if another coordinator holds it.
    pub async fn take_lease(
        &self,
        work: Work,
        id: &str,
        owner: &str,
        now_ms: u64,
        lease_until: u64,
    ) -> Result<bool, Error> {
        let sql = format!(
            "UPDATE {} SET owner = ?, lease_until = ? WHERE id = ? AND (owner IS NULL OR owner = ? OR lease_until < ?)",
            work.table()
        );
        let res = sqlx::query(self.sql(&sql))
            .bind(owner)
            .bind(i64_of(lease_until))
            .bind(id)
            .bind(owner)
            .bind(i64_of(now_ms))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(res.rows_affected() == 1)
    }

    /// Extends `owner`'s lease; `false` if it no longer holds it.
    pub async fn renew_lease(
        &self,
        work: Work,
        id: &str,
        owner: &str,
        lease_until: u64,
    ) -> Result<bool, Error> {
        let sql = format!(
            "UPDATE {} SET lease_until = ? WHERE id = ? AND owner = ?",
            work.table()
        );
        let res = sqlx::query(self.sql(&sql))
            .bind(i64_of(lease_until))
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(res.rows_affected() == 1)
    }

    /// Gives a lease up (the work waits, or another coordinator may take it now).
    pub async fn drop_lease(&self, work: Work, id: &str, owner: &str) -> Result<(), Error> {
        let sql = format!(
            "UPDATE {} SET owner = NULL, lease_until = 0 WHERE id = ? AND owner = ?",
            work.table()
        );
        sqlx::query(self.sql(&sql))
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}
