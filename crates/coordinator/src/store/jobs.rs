//! Jobs, their events, and the presignature pool.

use sqlx::any::AnyRow;

use super::{Store, col, db, state};
use crate::Error;
use crate::records::{EventKind, JobEvent, JobKind, JobRecord, JobStatus, now};

/// Ends a job with its result (binds: status, result, time, id).
const FINISH_JOB: &str = "UPDATE jobs SET status = ?, result = ?, error = NULL, owner = NULL, updated_at = ? WHERE id = ?";

/// An event to append to a job's record (see [`Store::add_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The module it concerns, if any.
    pub module_id: Option<String>,
    /// What it records.
    pub kind: EventKind,
    /// The digest it concerns, if any.
    pub digest: Option<Vec<u8>>,
    /// What happened, in words.
    pub detail: Option<String>,
    /// The module's signature, if it signed something.
    pub signature: Option<Vec<u8>>,
    /// The entry of the module's audit trail that records its answer (`<seq>:<hash hex>`).
    pub audit: Option<String>,
}

/// Which jobs to list: each filter that is set must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFilter {
    /// Jobs of this kind.
    pub kind: Option<JobKind>,
    /// Jobs in this state.
    pub status: Option<JobStatus>,
    /// Jobs for this wallet: its signatures, presignatures and import, and the key
    /// generation that made it.
    pub wallet: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
}

impl JobFilter {
    /// How many jobs a list holds unless asked for another number.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// The most jobs one list holds.
    pub const MAX_LIMIT: u32 = 1000;
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter {
            kind: None,
            status: None,
            wallet: None,
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

fn job_from_row(r: &AnyRow) -> Result<JobRecord, Error> {
    let rule: Option<String> = col(r, "rule")?;
    let mode: Option<String> = col(r, "mode")?;
    Ok(JobRecord {
        id: col(r, "id")?,
        kind: state(r, "kind")?,
        group_id: col(r, "group_id")?,
        wallet_id: col(r, "wallet_id")?,
        scheme: col(r, "scheme")?,
        rule: rule
            .map(|s| {
                s.parse()
                    .map_err(|e| Error::Storage(format!("column rule: {e}")))
            })
            .transpose()?,
        mode: mode
            .map(|s| s.parse().map_err(Error::Storage))
            .transpose()?,
        payload: col(r, "payload")?,
        intent: col(r, "intent")?,
        digest: col(r, "digest")?,
        status: state(r, "status")?,
        session: col(r, "session")?,
        signers: col(r, "signers")?,
        result: col(r, "result")?,
        error: col(r, "error")?,
        transfer_id: col(r, "transfer_id")?,
        created_at: col(r, "created_at")?,
        updated_at: col(r, "updated_at")?,
    })
}

impl Store {
    /// Records a new job, leased to `owner` until `lease_until` (ms since the Unix epoch) so
    /// that no other coordinator claims it before its creator runs it (a job with this id
    /// already recorded is left as it is: `false`).
    pub async fn insert_job(
        &self,
        j: &JobRecord,
        owner: &str,
        lease_until: u64,
    ) -> Result<bool, Error> {
        let res = sqlx::query(self.sql(
            "INSERT INTO jobs (id, kind, group_id, wallet_id, scheme, rule, mode, payload, intent, digest, status, session, signers, result, error, transfer_id, created_at, updated_at, owner, lease_until) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        ))
        .bind(&j.id)
        .bind(j.kind.as_str())
        .bind(&j.group_id)
        .bind(&j.wallet_id)
        .bind(&j.scheme)
        .bind(j.rule.map(|r| r.as_str()))
        .bind(j.mode.map(|m| m.as_str()))
        .bind(&j.payload)
        .bind(&j.intent)
        .bind(&j.digest)
        .bind(j.status.as_str())
        .bind(&j.session)
        .bind(&j.signers)
        .bind(&j.result)
        .bind(&j.error)
        .bind(&j.transfer_id)
        .bind(&j.created_at)
        .bind(&j.updated_at)
        .bind(owner)
        .bind(super::i64_of(lease_until))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(res.rows_affected() == 1)
    }

    /// A job by id.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>, Error> {
        let row = sqlx::query(self.sql("SELECT * FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Jobs matching `filter`, newest first (by creation time, to the second; then by id).
    pub async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, Error> {
        let mut clauses = Vec::new();
        let mut binds: Vec<&str> = Vec::new();
        if let Some(kind) = filter.kind {
            clauses.push("kind = ?");
            binds.push(kind.as_str());
        }
        if let Some(status) = filter.status {
            clauses.push("status = ?");
            binds.push(status.as_str());
        }
        if let Some(wallet) = &filter.wallet {
            clauses.push("(wallet_id = ? OR id IN (SELECT job_id FROM wallets WHERE id = ?))");
            binds.extend([wallet.as_str(), wallet.as_str()]);
        }
        let filter_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let sql = self.sql(&format!(
            "SELECT * FROM jobs{filter_sql} ORDER BY created_at DESC, id DESC LIMIT ?"
        ));
        let mut query = sqlx::query(sql);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(job_from_row).collect()
    }

    /// Moves a job to `status`, recording the session and signers it now uses.
    pub async fn set_job_running(
        &self,
        id: &str,
        status: JobStatus,
        session: Option<&[u8]>,
        signers: Option<&str>,
    ) -> Result<(), Error> {
        sqlx::query(self.sql(
            "UPDATE jobs SET status = ?, session = COALESCE(?, session), signers = COALESCE(?, signers), updated_at = ? WHERE id = ?",
        ))
        .bind(status.as_str())
        .bind(session.map(<[u8]>::to_vec))
        .bind(signers)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Finishes a job with a result.
    pub async fn finish_job(&self, id: &str, result: &[u8]) -> Result<(), Error> {
        sqlx::query(self.sql(FINISH_JOB))
            .bind(JobStatus::Done.as_str())
            .bind(result.to_vec())
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Finishes a job with a result and appends `event` to its record, in one transaction.
    pub async fn finish_job_with(
        &self,
        id: &str,
        result: &[u8],
        event: &NewEvent,
    ) -> Result<(), Error> {
        let at = now();
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert_event(self, &mut *tx, id, event, &at).await?;
        sqlx::query(self.sql(FINISH_JOB))
            .bind(JobStatus::Done.as_str())
            .bind(result.to_vec())
            .bind(&at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Fails a job.
    pub async fn fail_job(&self, id: &str, error: &str) -> Result<(), Error> {
        sqlx::query(self.sql(
            "UPDATE jobs SET status = ?, error = ?, owner = NULL, updated_at = ? WHERE id = ?",
        ))
        .bind(JobStatus::Failed.as_str())
        .bind(error)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// The next signing attempt of a job (1, 2, …), counted across restarts so that every
    /// session id derived from it is fresh.
    pub async fn next_attempt(&self, job_id: &str) -> Result<u32, Error> {
        let row = sqlx::query(
            self.sql("UPDATE jobs SET attempts = attempts + 1 WHERE id = ? RETURNING attempts"),
        )
        .bind(job_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        super::int(&row, "attempts")
    }

    /// Counts a new attempt of a job and sets its state, in one write; returns the attempt.
    pub async fn begin_attempt(&self, job_id: &str, status: JobStatus) -> Result<u32, Error> {
        let row = sqlx::query(self.sql(
            "UPDATE jobs SET attempts = attempts + 1, status = ?, updated_at = ? WHERE id = ? RETURNING attempts",
        ))
        .bind(status.as_str())
        .bind(now())
        .bind(job_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        super::int(&row, "attempts")
    }

    /// Appends events to a job's record, in order, in one transaction.
    pub async fn add_events(&self, job_id: &str, events: &[NewEvent]) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let at = now();
        let mut tx = self.pool.begin().await.map_err(db)?;
        for e in events {
            insert_event(self, &mut *tx, job_id, e, &at).await?;
        }
        tx.commit().await.map_err(db)
    }

    /// Appends an event to a job's record.
    pub async fn add_event(
        &self,
        job_id: &str,
        module_id: Option<&str>,
        kind: EventKind,
        digest: Option<&[u8]>,
        detail: Option<&str>,
        signature: Option<&[u8]>,
    ) -> Result<(), Error> {
        let event = NewEvent {
            module_id: module_id.map(str::to_owned),
            kind,
            digest: digest.map(<[u8]>::to_vec),
            detail: detail.map(str::to_owned),
            signature: signature.map(<[u8]>::to_vec),
            audit: None,
        };
        insert_event(self, &self.pool, job_id, &event, &now()).await
    }

    /// A job's events, in order.
    pub async fn events(&self, job_id: &str) -> Result<Vec<JobEvent>, Error> {
        let rows = sqlx::query(self.sql("SELECT * FROM job_events WHERE job_id = ? ORDER BY seq"))
            .bind(job_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(JobEvent {
                    seq: col(r, "seq")?,
                    module_id: col(r, "module_id")?,
                    kind: state(r, "kind")?,
                    digest: col(r, "digest")?,
                    detail: col(r, "detail")?,
                    signature: col(r, "signature")?,
                    audit: col(r, "audit")?,
                    at: col(r, "at")?,
                })
            })
            .collect()
    }

    /// How many presignatures each wallet has ready (the pool's depth, for metrics).
    pub async fn presignature_depths(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query(self.sql(
            "SELECT wallet_id, COUNT(*) AS n FROM presignatures WHERE status = 'available' GROUP BY wallet_id ORDER BY wallet_id",
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| Ok((col(r, "wallet_id")?, col(r, "n")?)))
            .collect()
    }

    /// How many jobs are in each status (for metrics).
    pub async fn job_counts(&self) -> Result<Vec<(String, String, i64)>, Error> {
        let rows = sqlx::query(self.sql(
            "SELECT kind, status, COUNT(*) AS n FROM jobs GROUP BY kind, status ORDER BY kind, status",
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| Ok((col(r, "kind")?, col(r, "status")?, col(r, "n")?)))
            .collect()
    }

    /// Records a new presignature made by `signers` for a wallet.
    pub async fn add_presignature(
        &self,
        fingerprint: &str,
        wallet_id: &str,
        signers: &str,
    ) -> Result<(), Error> {
        sqlx::query(self.sql(
            "INSERT INTO presignatures (fingerprint, wallet_id, signers, status, created_at) VALUES (?, ?, ?, 'available', ?) ON CONFLICT DO NOTHING",
        ))
        .bind(fingerprint)
        .bind(wallet_id)
        .bind(signers)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Available presignatures of a wallet: (fingerprint, signers as a JSON list).
    pub async fn available_presignatures(
        &self,
        wallet_id: &str,
    ) -> Result<Vec<(String, String)>, Error> {
        let rows = sqlx::query(self.sql(
            "SELECT fingerprint, signers FROM presignatures WHERE wallet_id = ? AND status = 'available' ORDER BY created_at",
        ))
        .bind(wallet_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| Ok((col(r, "fingerprint")?, col(r, "signers")?)))
            .collect()
    }

    /// Marks a presignature used by a job; `false` if it was not available (taken already).
    pub async fn use_presignature(&self, fingerprint: &str, job_id: &str) -> Result<bool, Error> {
        let res = sqlx::query(self.sql(
            "UPDATE presignatures SET status = 'used', job_id = ?, used_at = ? WHERE fingerprint = ? AND status = 'available'",
        ))
        .bind(job_id)
        .bind(now())
        .bind(fingerprint)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(res.rows_affected() == 1)
    }
}

/// Appends `e` to job `job_id`'s record, through `db_exec` (the pool, or a transaction).
async fn insert_event<'e>(
    store: &Store,
    db_exec: impl sqlx::Executor<'e, Database = sqlx::Any>,
    job_id: &str,
    e: &NewEvent,
    at: &str,
) -> Result<(), Error> {
    sqlx::query(store.sql(
        "INSERT INTO job_events (job_id, module_id, kind, digest, detail, signature, audit, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ))
    .bind(job_id)
    .bind(e.module_id.as_deref())
    .bind(e.kind.as_str())
    .bind(e.digest.clone())
    .bind(e.detail.as_deref())
    .bind(e.signature.clone())
    .bind(e.audit.as_deref())
    .bind(at)
    .execute(db_exec)
    .await
    .map_err(db)?;
    Ok(())
}
