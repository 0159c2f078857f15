//! The coordinator's persistent state: SQLite through sqlx, one schema and one set of
//! migrations (`migrations/`). Every job step is written here before it is acted on, so a
//! restarted coordinator resumes where it stopped.

use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, SqlitePool as Pool};

use crate::Error;

/// Current time, RFC 3339 (UTC, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// An enrolled module.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModuleRecord {
    /// Operator-chosen id.
    pub id: String,
    /// Ed25519 identity key (hex in JSON).
    #[serde(with = "hex::serde")]
    pub identity: Vec<u8>,
    /// X25519 sealing key.
    #[serde(with = "hex::serde")]
    pub sealing_key: Vec<u8>,
    /// The identity's signature over the sealing key.
    #[serde(with = "hex::serde")]
    pub sealing_key_signature: Vec<u8>,
    /// When it was enrolled.
    pub enrolled_at: String,
}

/// A signer group.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupRecord {
    /// Group id.
    pub id: String,
    /// Signers required.
    pub threshold: u16,
    /// Members.
    pub size: u16,
    /// `preparing`, `ready` or `failed`.
    pub status: String,
    /// The job preparing its auxiliary material.
    pub aux_job_id: Option<String>,
    /// Member module ids in index order.
    pub members: Vec<String>,
    /// When it was created.
    pub created_at: String,
}

/// A wallet.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WalletRecord {
    /// Wallet id (hex).
    pub id: String,
    /// Its signer group.
    pub group_id: String,
    /// Scheme name.
    pub scheme: String,
    /// Group public key.
    #[serde(with = "hex::serde")]
    pub public_key: Vec<u8>,
    /// The key-generation job that made it.
    pub job_id: String,
    /// When it was created.
    pub created_at: String,
}

/// A job: a group's aux material, a wallet's key generation, or a signature.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// `aux_info`, `keygen` or `sign`.
    pub kind: String,
    /// Signer group.
    pub group_id: String,
    /// Wallet (sign jobs).
    pub wallet_id: Option<String>,
    /// Scheme (keygen and sign jobs).
    pub scheme: Option<String>,
    /// Agreement rule (sign jobs).
    pub rule: Option<String>,
    /// `presigned` or `interactive` (ECDSA sign jobs).
    pub mode: Option<String>,
    /// Canonical signing payload (sign jobs).
    #[serde(skip)]
    pub payload: Option<Vec<u8>>,
    /// The signed intent the job answers (JSON; sign and import jobs).
    #[serde(skip)]
    pub intent: Option<Vec<u8>>,
    /// Digest the coordinator computed (sign jobs).
    #[serde(serialize_with = "opt_hex")]
    pub digest: Option<Vec<u8>>,
    /// `pending`, `approving`, `signing`, `done` or `failed`.
    pub status: String,
    /// Current protocol session.
    #[serde(skip)]
    pub session: Option<Vec<u8>>,
    /// Group indices signing (JSON list).
    pub signers: Option<String>,
    /// Result (JSON).
    #[serde(skip)]
    pub result: Option<Vec<u8>>,
    /// Why it failed.
    pub error: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl JobRecord {
    /// A new pending job of `kind` in `group_id`, everything else empty: callers fill in what
    /// their kind needs with struct-update syntax.
    pub fn pending(id: String, kind: &str, group_id: &str) -> JobRecord {
        let t = now();
        JobRecord {
            id,
            kind: kind.to_owned(),
            group_id: group_id.to_owned(),
            wallet_id: None,
            scheme: None,
            rule: None,
            mode: None,
            payload: None,
            intent: None,
            digest: None,
            status: "pending".into(),
            session: None,
            signers: None,
            result: None,
            error: None,
            created_at: t.clone(),
            updated_at: t,
        }
    }
}

fn opt_hex<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_some(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

/// A policy the coordinator relays: as proposed and signed so far.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PolicyRecord {
    /// Its hash, hex.
    pub hash: String,
    /// Its version.
    pub version: u64,
    /// JSON of the signed policy.
    #[serde(skip)]
    pub document: String,
    /// `proposed` (no module adopted it), `active` (in force in at least one module) or
    /// `superseded`.
    pub status: String,
    /// When it was proposed.
    pub created_at: String,
}

/// The policy a module reports in force.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModulePolicy {
    /// The module.
    pub module_id: String,
    /// The hash of its policy in force (none yet: `None`).
    pub policy_hash: Option<String>,
    /// Its version (0: none).
    pub version: u64,
    /// The last policy offered to it.
    pub offered: Option<String>,
    /// Why it did not adopt that one.
    pub error: Option<String>,
}

/// One recorded event of a job: an approval, a refusal, a dissent, a result…
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JobEvent {
    /// Order of recording.
    pub seq: i64,
    /// The module concerned, if any.
    pub module_id: Option<String>,
    /// `approval`, `refusal`, `dissent`, `progress`, `result`, `failure` or `note`.
    pub kind: String,
    /// Digest the module approved or computed.
    #[serde(serialize_with = "opt_hex")]
    pub digest: Option<Vec<u8>>,
    /// Human-readable detail.
    pub detail: Option<String>,
    /// The module's signature over its statement (approvals).
    #[serde(serialize_with = "opt_hex")]
    pub signature: Option<Vec<u8>>,
    /// When.
    pub at: String,
}

/// The coordinator's database.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

fn db(e: sqlx::Error) -> Error {
    Error::Storage(e.to_string())
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Store, Error> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(db)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit is durable once in the write-ahead log, which survives a
            // coordinator crash; only an operating-system crash can lose the last commits.
            // Redoing those steps is safe: modules keep their own fsynced records (approvals,
            // consumed presignatures, nonces) and answer a repeated step identically.
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
        Self::migrate(pool).await
    }

    /// An in-memory database, for tests.
    pub async fn open_in_memory() -> Result<Store, Error> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db)?
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(db)?;
        Self::migrate(pool).await
    }

    async fn migrate(pool: SqlitePool) -> Result<Store, Error> {
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| Error::Storage(format!("migration failed: {e}")))?;
        Ok(Store { pool })
    }

    /// Enrolls a module. Its id and identity must both be new.
    pub async fn enroll_module(&self, m: &ModuleRecord) -> Result<(), Error> {
        let res = sqlx::query(
            "INSERT INTO modules (id, identity, sealing_key, sealing_key_signature, enrolled_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&m.id)
        .bind(&m.identity)
        .bind(&m.sealing_key)
        .bind(&m.sealing_key_signature)
        .bind(&m.enrolled_at)
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::Conflict(format!(
                    "a module with id '{}' or the same identity key is already enrolled",
                    m.id
                )))
            }
            Err(e) => Err(db(e)),
        }
    }

    fn module_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<ModuleRecord, Error> {
        Ok(ModuleRecord {
            id: r.try_get("id").map_err(db)?,
            identity: r.try_get("identity").map_err(db)?,
            sealing_key: r.try_get("sealing_key").map_err(db)?,
            sealing_key_signature: r.try_get("sealing_key_signature").map_err(db)?,
            enrolled_at: r.try_get("enrolled_at").map_err(db)?,
        })
    }

    /// The module enrolled with this identity key.
    pub async fn module_by_identity(&self, identity: &[u8]) -> Result<Option<ModuleRecord>, Error> {
        let row = sqlx::query("SELECT * FROM modules WHERE identity = ?")
            .bind(identity)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(Self::module_from_row).transpose()
    }

    /// A module by id.
    pub async fn module(&self, id: &str) -> Result<Option<ModuleRecord>, Error> {
        let row = sqlx::query("SELECT * FROM modules WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(Self::module_from_row).transpose()
    }

    /// Every enrolled module.
    pub async fn modules(&self) -> Result<Vec<ModuleRecord>, Error> {
        let rows = sqlx::query("SELECT * FROM modules ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(Self::module_from_row).collect()
    }

    /// Every enrolled identity key (for the TLS pin store at start-up).
    pub async fn identities(&self) -> Result<Vec<Vec<u8>>, Error> {
        let rows = sqlx::query("SELECT identity FROM modules")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| r.try_get("identity").map_err(db))
            .collect()
    }

    /// Creates a group with its members (module ids in index order) in one transaction.
    pub async fn create_group(&self, g: &GroupRecord) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("INSERT INTO groups (id, threshold, size, status, aux_job_id, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&g.id)
            .bind(i64::from(g.threshold))
            .bind(i64::from(g.size))
            .bind(&g.status)
            .bind(&g.aux_job_id)
            .bind(&g.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    Error::Conflict(format!("group '{}' already exists", g.id))
                }
                e => db(e),
            })?;
        for (idx, m) in g.members.iter().enumerate() {
            sqlx::query("INSERT INTO group_members (group_id, idx, module_id) VALUES (?, ?, ?)")
                .bind(&g.id)
                .bind(idx as i64)
                .bind(m)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    /// A group and its members.
    pub async fn group(&self, id: &str) -> Result<Option<GroupRecord>, Error> {
        let Some(r) = sqlx::query("SELECT * FROM groups WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let members =
            sqlx::query("SELECT module_id FROM group_members WHERE group_id = ? ORDER BY idx")
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?
                .iter()
                .map(|r| r.try_get::<String, _>("module_id").map_err(db))
                .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(GroupRecord {
            id: r.try_get("id").map_err(db)?,
            threshold: u16::try_from(r.try_get::<i64, _>("threshold").map_err(db)?).unwrap_or(0),
            size: u16::try_from(r.try_get::<i64, _>("size").map_err(db)?).unwrap_or(0),
            status: r.try_get("status").map_err(db)?,
            aux_job_id: r.try_get("aux_job_id").map_err(db)?,
            members,
            created_at: r.try_get("created_at").map_err(db)?,
        }))
    }

    /// Every group id.
    pub async fn group_ids(&self) -> Result<Vec<String>, Error> {
        let rows = sqlx::query("SELECT id FROM groups ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|r| r.try_get("id").map_err(db)).collect()
    }

    /// Sets a group's status.
    pub async fn set_group_status(&self, id: &str, status: &str) -> Result<(), Error> {
        sqlx::query("UPDATE groups SET status = ? WHERE id = ?")
            .bind(status)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Records a new wallet (idempotent: the same wallet twice is not an error).
    pub async fn insert_wallet(&self, w: &WalletRecord) -> Result<(), Error> {
        sqlx::query("INSERT OR IGNORE INTO wallets (id, group_id, scheme, public_key, job_id, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&w.id)
            .bind(&w.group_id)
            .bind(&w.scheme)
            .bind(&w.public_key)
            .bind(&w.job_id)
            .bind(&w.created_at)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    fn wallet_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<WalletRecord, Error> {
        Ok(WalletRecord {
            id: r.try_get("id").map_err(db)?,
            group_id: r.try_get("group_id").map_err(db)?,
            scheme: r.try_get("scheme").map_err(db)?,
            public_key: r.try_get("public_key").map_err(db)?,
            job_id: r.try_get("job_id").map_err(db)?,
            created_at: r.try_get("created_at").map_err(db)?,
        })
    }

    /// A wallet by id.
    pub async fn wallet(&self, id: &str) -> Result<Option<WalletRecord>, Error> {
        let row = sqlx::query("SELECT * FROM wallets WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(Self::wallet_from_row).transpose()
    }

    /// The wallet made by a key-generation job.
    pub async fn wallet_by_job(&self, job_id: &str) -> Result<Option<WalletRecord>, Error> {
        let row = sqlx::query("SELECT * FROM wallets WHERE job_id = ?")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(Self::wallet_from_row).transpose()
    }

    /// Every wallet.
    pub async fn wallets(&self) -> Result<Vec<WalletRecord>, Error> {
        let rows = sqlx::query("SELECT * FROM wallets ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(Self::wallet_from_row).collect()
    }

    /// Records a new job.
    pub async fn insert_job(&self, j: &JobRecord) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO jobs (id, kind, group_id, wallet_id, scheme, rule, mode, payload, intent, digest, status, session, signers, result, error, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&j.id)
        .bind(&j.kind)
        .bind(&j.group_id)
        .bind(&j.wallet_id)
        .bind(&j.scheme)
        .bind(&j.rule)
        .bind(&j.mode)
        .bind(&j.payload)
        .bind(&j.intent)
        .bind(&j.digest)
        .bind(&j.status)
        .bind(&j.session)
        .bind(&j.signers)
        .bind(&j.result)
        .bind(&j.error)
        .bind(&j.created_at)
        .bind(&j.updated_at)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    fn job_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<JobRecord, Error> {
        Ok(JobRecord {
            id: r.try_get("id").map_err(db)?,
            kind: r.try_get("kind").map_err(db)?,
            group_id: r.try_get("group_id").map_err(db)?,
            wallet_id: r.try_get("wallet_id").map_err(db)?,
            scheme: r.try_get("scheme").map_err(db)?,
            rule: r.try_get("rule").map_err(db)?,
            mode: r.try_get("mode").map_err(db)?,
            payload: r.try_get("payload").map_err(db)?,
            intent: r.try_get("intent").map_err(db)?,
            digest: r.try_get("digest").map_err(db)?,
            status: r.try_get("status").map_err(db)?,
            session: r.try_get("session").map_err(db)?,
            signers: r.try_get("signers").map_err(db)?,
            result: r.try_get("result").map_err(db)?,
            error: r.try_get("error").map_err(db)?,
            created_at: r.try_get("created_at").map_err(db)?,
            updated_at: r.try_get("updated_at").map_err(db)?,
        })
    }

    /// A job by id.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>, Error> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(Self::job_from_row).transpose()
    }

    /// Jobs not yet done or failed, oldest first (resumed after a restart).
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE status NOT IN ('done', 'failed') ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(Self::job_from_row).collect()
    }

    /// Moves a job to `status`, recording the session and signers it now uses.
    pub async fn set_job_running(
        &self,
        id: &str,
        status: &str,
        session: Option<&[u8]>,
        signers: Option<&str>,
    ) -> Result<(), Error> {
        sqlx::query("UPDATE jobs SET status = ?, session = COALESCE(?, session), signers = COALESCE(?, signers), updated_at = ? WHERE id = ?")
            .bind(status)
            .bind(session)
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
        sqlx::query("UPDATE jobs SET status = 'done', result = ?, error = NULL, updated_at = ? WHERE id = ?")
            .bind(result)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Fails a job.
    pub async fn fail_job(&self, id: &str, error: &str) -> Result<(), Error> {
        sqlx::query("UPDATE jobs SET status = 'failed', error = ?, updated_at = ? WHERE id = ?")
            .bind(error)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Appends an event to a job's record.
    pub async fn add_event(
        &self,
        job_id: &str,
        module_id: Option<&str>,
        kind: &str,
        digest: Option<&[u8]>,
        detail: Option<&str>,
        signature: Option<&[u8]>,
    ) -> Result<(), Error> {
        sqlx::query("INSERT INTO job_events (job_id, module_id, kind, digest, detail, signature, at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(job_id)
            .bind(module_id)
            .bind(kind)
            .bind(digest)
            .bind(detail)
            .bind(signature)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// A job's events, in order.
    pub async fn events(&self, job_id: &str) -> Result<Vec<JobEvent>, Error> {
        let rows = sqlx::query("SELECT * FROM job_events WHERE job_id = ? ORDER BY seq")
            .bind(job_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(JobEvent {
                    seq: r.try_get("seq").map_err(db)?,
                    module_id: r.try_get("module_id").map_err(db)?,
                    kind: r.try_get("kind").map_err(db)?,
                    digest: r.try_get("digest").map_err(db)?,
                    detail: r.try_get("detail").map_err(db)?,
                    signature: r.try_get("signature").map_err(db)?,
                    at: r.try_get("at").map_err(db)?,
                })
            })
            .collect()
    }

    /// Records a new presignature made by `signers` for a wallet.
    pub async fn add_presignature(
        &self,
        fingerprint: &str,
        wallet_id: &str,
        signers: &str,
    ) -> Result<(), Error> {
        sqlx::query("INSERT OR IGNORE INTO presignatures (fingerprint, wallet_id, signers, status, created_at) VALUES (?, ?, ?, 'available', ?)")
            .bind(fingerprint)
            .bind(wallet_id)
            .bind(signers)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Available presignatures of a wallet, by signer set (JSON list) and count.
    pub async fn available_presignatures(
        &self,
        wallet_id: &str,
    ) -> Result<Vec<(String, String)>, Error> {
        let rows = sqlx::query("SELECT fingerprint, signers FROM presignatures WHERE wallet_id = ? AND status = 'available' ORDER BY created_at")
            .bind(wallet_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("fingerprint").map_err(db)?,
                    r.try_get("signers").map_err(db)?,
                ))
            })
            .collect()
    }

    /// Marks a presignature used by a job — before the job asks anyone to use it, so it is
    /// never offered twice. Returns false if it was no longer available.
    pub async fn use_presignature(&self, fingerprint: &str, job_id: &str) -> Result<bool, Error> {
        let res = sqlx::query("UPDATE presignatures SET status = 'used', job_id = ?, used_at = ? WHERE fingerprint = ? AND status = 'available'")
            .bind(job_id)
            .bind(now())
            .bind(fingerprint)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(res.rows_affected() == 1)
    }

    /// Stores an API token by its hash, with its role.
    pub async fn add_token(&self, token_hash: &[u8], name: &str, role: &str) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, name, role, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(name)
        .bind(role)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// The name and role of the token with this hash, if any.
    pub async fn token(&self, token_hash: &[u8]) -> Result<Option<(String, String)>, Error> {
        let row = sqlx::query("SELECT name, role FROM api_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| {
            Ok((
                r.try_get("name").map_err(db)?,
                r.try_get("role").map_err(db)?,
            ))
        })
        .transpose()
    }

    /// Every token's name, role and creation time (never the token).
    pub async fn tokens(&self) -> Result<Vec<(String, String, String)>, Error> {
        let rows = sqlx::query("SELECT name, role, created_at FROM api_tokens ORDER BY created_at")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("name").map_err(db)?,
                    r.try_get("role").map_err(db)?,
                    r.try_get("created_at").map_err(db)?,
                ))
            })
            .collect()
    }

    /// The next signing attempt of a job (1, 2, …), counted across restarts so that every
    /// session id derived from it is fresh.
    pub async fn next_attempt(&self, job_id: &str) -> Result<u32, Error> {
        let row =
            sqlx::query("UPDATE jobs SET attempts = attempts + 1 WHERE id = ? RETURNING attempts")
                .bind(job_id)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        let n: i64 = row.try_get("attempts").map_err(db)?;
        u32::try_from(n).map_err(|_| Error::Internal("attempt counter out of range".into()))
    }

    /// Stores a policy (insert or replace its document and status).
    pub async fn save_policy(&self, p: &PolicyRecord) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO policies (hash, version, document, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT(hash) DO UPDATE SET document = excluded.document, status = excluded.status, updated_at = excluded.updated_at",
        )
        .bind(&p.hash)
        .bind(i64::try_from(p.version).unwrap_or(i64::MAX))
        .bind(&p.document)
        .bind(&p.status)
        .bind(&p.created_at)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    fn policy_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<PolicyRecord, Error> {
        Ok(PolicyRecord {
            hash: r.try_get("hash").map_err(db)?,
            version: u64::try_from(r.try_get::<i64, _>("version").map_err(db)?).unwrap_or(0),
            document: r.try_get("document").map_err(db)?,
            status: r.try_get("status").map_err(db)?,
            created_at: r.try_get("created_at").map_err(db)?,
        })
    }

    /// A policy by hash.
    pub async fn policy(&self, hash: &str) -> Result<Option<PolicyRecord>, Error> {
        let row = sqlx::query("SELECT * FROM policies WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(Self::policy_from_row).transpose()
    }

    /// Every policy, by version then creation.
    pub async fn policies(&self) -> Result<Vec<PolicyRecord>, Error> {
        let rows = sqlx::query("SELECT * FROM policies ORDER BY version, created_at")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(Self::policy_from_row).collect()
    }

    /// Records the policy a module reports in force, and the fate of the last one offered.
    pub async fn set_module_policy(&self, m: &ModulePolicy) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO module_policies (module_id, policy_hash, version, offered, error, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT(module_id) DO UPDATE SET policy_hash = excluded.policy_hash, version = excluded.version, \
             offered = excluded.offered, error = excluded.error, updated_at = excluded.updated_at",
        )
        .bind(&m.module_id)
        .bind(&m.policy_hash)
        .bind(i64::try_from(m.version).unwrap_or(i64::MAX))
        .bind(&m.offered)
        .bind(&m.error)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// What every module reported.
    pub async fn module_policies(&self) -> Result<Vec<ModulePolicy>, Error> {
        let rows = sqlx::query("SELECT * FROM module_policies ORDER BY module_id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(ModulePolicy {
                    module_id: r.try_get("module_id").map_err(db)?,
                    policy_hash: r.try_get("policy_hash").map_err(db)?,
                    version: u64::try_from(r.try_get::<i64, _>("version").map_err(db)?)
                        .unwrap_or(0),
                    offered: r.try_get("offered").map_err(db)?,
                    error: r.try_get("error").map_err(db)?,
                })
            })
            .collect()
    }

    /// A stored response for (token, idempotency key): request hash, status, body.
    pub async fn idempotent_response(
        &self,
        token_hash: &[u8],
        key: &str,
    ) -> Result<Option<(Vec<u8>, u16, Vec<u8>)>, Error> {
        let row = sqlx::query("SELECT request_hash, status, response FROM idempotency WHERE token_hash = ? AND key = ?")
            .bind(token_hash)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| {
            Ok((
                r.try_get("request_hash").map_err(db)?,
                u16::try_from(r.try_get::<i64, _>("status").map_err(db)?).unwrap_or(500),
                r.try_get("response").map_err(db)?,
            ))
        })
        .transpose()
    }

    /// Stores the response to a POST under its idempotency key.
    pub async fn store_idempotent_response(
        &self,
        token_hash: &[u8],
        key: &str,
        request_hash: &[u8],
        status: u16,
        response: &[u8],
    ) -> Result<(), Error> {
        sqlx::query("INSERT OR IGNORE INTO idempotency (token_hash, key, request_hash, status, response, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(token_hash)
            .bind(key)
            .bind(request_hash)
            .bind(i64::from(status))
            .bind(response)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Stores a transfer (insert or overwrite: every step rewrites the record).
    pub async fn save_transfer(&self, t: &crate::transfers::TransferRecord) -> Result<(), Error> {
        let record = serde_json::to_string(t).map_err(|e| Error::Internal(e.to_string()))?;
        sqlx::query(
            "INSERT INTO transfers (id, kind, status, record, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET status = excluded.status, record = excluded.record, updated_at = excluded.updated_at",
        )
        .bind(&t.id)
        .bind(t.kind.as_str())
        .bind(&t.status)
        .bind(record)
        .bind(&t.created_at)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    fn transfer_from_row(
        r: &sqlx::sqlite::SqliteRow,
    ) -> Result<crate::transfers::TransferRecord, Error> {
        let record: String = r.try_get("record").map_err(db)?;
        serde_json::from_str(&record)
            .map_err(|e| Error::Storage(format!("a stored transfer is unreadable: {e}")))
    }

    /// A transfer.
    pub async fn transfer(
        &self,
        id: &str,
    ) -> Result<Option<crate::transfers::TransferRecord>, Error> {
        let row = sqlx::query("SELECT record FROM transfers WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(Self::transfer_from_row).transpose()
    }

    /// Transfers, newest first (at most `limit`).
    pub async fn transfers(
        &self,
        limit: u32,
    ) -> Result<Vec<crate::transfers::TransferRecord>, Error> {
        let rows = sqlx::query(
            "SELECT record FROM transfers ORDER BY created_at DESC, rowid DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(Self::transfer_from_row).collect()
    }

    /// Transfers that have not reached a final status.
    pub async fn unfinished_transfers(
        &self,
    ) -> Result<Vec<crate::transfers::TransferRecord>, Error> {
        let rows = sqlx::query(
            "SELECT record FROM transfers WHERE status NOT IN ('credited', 'arrived', 'failed') ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(Self::transfer_from_row).collect()
    }

    /// The next nonce this coordinator would use for a wallet on a chain.
    pub async fn next_nonce(&self, wallet_id: &str, chain_id: u64) -> Result<Option<u64>, Error> {
        let row = sqlx::query(
            "SELECT next_nonce FROM wallet_nonces WHERE wallet_id = ? AND chain_id = ?",
        )
        .bind(wallet_id)
        .bind(chain_id as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            r.try_get::<i64, _>("next_nonce")
                .map(|n| n as u64)
                .map_err(db)
        })
        .transpose()
    }

    /// Records that `nonce` is used: the next is at least `nonce + 1`.
    pub async fn use_nonce(&self, wallet_id: &str, chain_id: u64, nonce: u64) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO wallet_nonces (wallet_id, chain_id, next_nonce) VALUES (?, ?, ?) \
             ON CONFLICT(wallet_id, chain_id) DO UPDATE SET next_nonce = MAX(next_nonce, excluded.next_nonce)",
        )
        .bind(wallet_id)
        .bind(chain_id as i64)
        .bind((nonce + 1) as i64)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Registers (or replaces) an exchange's withdraw-capable key.
    pub async fn set_credential(
        &self,
        exchange: &str,
        wallet_id: &str,
        api_key: &str,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO exchange_credentials (exchange, wallet_id, api_key, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT(exchange) DO UPDATE SET wallet_id = excluded.wallet_id, api_key = excluded.api_key",
        )
        .bind(exchange)
        .bind(wallet_id)
        .bind(api_key)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// An exchange's withdraw-capable key: (wallet id, API key).
    pub async fn credential(&self, exchange: &str) -> Result<Option<(String, String)>, Error> {
        let row =
            sqlx::query("SELECT wallet_id, api_key FROM exchange_credentials WHERE exchange = ?")
                .bind(exchange)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        row.map(|r| {
            Ok((
                r.try_get("wallet_id").map_err(db)?,
                r.try_get("api_key").map_err(db)?,
            ))
        })
        .transpose()
    }
}
