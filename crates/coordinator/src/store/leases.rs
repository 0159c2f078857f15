//! Leases: several coordinators may share one database. Each unfinished transfer and each
//! job not run by a transfer is driven by the coordinator that holds its lease (`owner`,
//! `lease_until`); the holder renews it while it runs, every write of a transfer's step is
//! fenced by it, and once it expires (the holder died or lost the database) another
//! coordinator claims the work and resumes it from its last written step. PostgreSQL claims
//! with `FOR UPDATE SKIP LOCKED`, so two coordinators never wait on each other's rows; SQLite
//! serializes writers anyway.

use sqlx::any::AnyRow;

use super::{Backend, Store, col, db, i64_of};
use crate::Error;
use crate::records::{JobRecord, JobStatus, TransferRecord, TransferStatus};

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

    /// The SQL condition of work still to do (a job a transfer runs is the transfer's).
    fn unfinished(self) -> String {
        let list = |names: Vec<&str>| {
            names
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Work::Transfer => format!(
                "status NOT IN ({})",
                list(TransferStatus::FINAL.map(TransferStatus::as_str).to_vec())
            ),
            Work::Job => format!(
                "status NOT IN ({}) AND transfer_id IS NULL",
                list(JobStatus::FINAL.map(JobStatus::as_str).to_vec())
            ),
        }
    }

    /// The column work is claimed in the order of (oldest first).
    fn age(self) -> &'static str {
        match self {
            Work::Transfer => "created_us",
            Work::Job => "created_at",
        }
    }
}

/// Who claims, until when, how much.
struct Claim<'a> {
    owner: &'a str,
    now_ms: u64,
    lease_until: u64,
    limit: u32,
    own: bool,
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
        let claim = Claim {
            owner,
            now_ms,
            lease_until,
            limit,
            own,
        };
        self.claim(Work::Transfer, "record", &claim)
            .await?
            .iter()
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
        let claim = Claim {
            owner,
            now_ms,
            lease_until,
            limit,
            own,
        };
        let rows = self.claim(Work::Job, "id", &claim).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(j) = self.job(&col::<String>(r, "id")?).await? {
                out.push(j);
            }
        }
        Ok(out)
    }

    /// Leases unfinished work of one kind in one statement; returns the `returning` column
    /// of each row claimed.
    async fn claim(
        &self,
        work: Work,
        returning: &str,
        c: &Claim<'_>,
    ) -> Result<Vec<AnyRow>, Error> {
        let table = work.table();
        let sql = format!(
            "UPDATE {table} SET owner = ?, lease_until = ? WHERE id IN (\
               SELECT id FROM {table} WHERE {} \
               AND (owner IS NULL OR owner = ? OR lease_until < ?) ORDER BY {}, id LIMIT ?{}) RETURNING {returning}",
            work.unfinished(),
            work.age(),
            self.skip_locked()
        );
        sqlx::query(self.sql(&sql))
            .bind(c.owner)
            .bind(i64_of(c.lease_until))
            .bind(if c.own { c.owner } else { "" })
            .bind(i64_of(c.now_ms))
            .bind(i64::from(c.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)
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
