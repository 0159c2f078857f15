//! API tokens, idempotency keys and relayed policies.

use sqlx::any::AnyRow;

use super::{Store, col, db, i64_of, int};
use crate::Error;
use crate::records::{ModulePolicy, PolicyRecord, now};

/// What an idempotency key's reservation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The key is new and now reserved for this request: handle it.
    New,
    /// A request with this key was answered: (its body's hash, status, response).
    Done(Vec<u8>, u16, Vec<u8>),
    /// A request with this key is being handled right now (its body's hash).
    InProgress(Vec<u8>),
}

/// An API token's name, role and creation time.
pub type TokenInfo = (String, String, String);

fn policy_from_row(r: &AnyRow) -> Result<PolicyRecord, Error> {
    Ok(PolicyRecord {
        hash: col(r, "hash")?,
        version: int(r, "version")?,
        document: col(r, "document")?,
        status: col(r, "status")?,
        created_at: col(r, "created_at")?,
    })
}

impl Store {
    /// Stores an API token by its hash, with its role.
    pub async fn add_token(&self, token_hash: &[u8], name: &str, role: &str) -> Result<(), Error> {
        sqlx::query(self.sql(
            "INSERT INTO api_tokens (token_hash, name, role, created_at) VALUES (?, ?, ?, ?)",
        ))
        .bind(token_hash.to_vec())
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
        let row = sqlx::query(self.sql("SELECT name, role FROM api_tokens WHERE token_hash = ?"))
            .bind(token_hash.to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| Ok((col(&r, "name")?, col(&r, "role")?)))
            .transpose()
    }

    /// Every token's name, role and creation time (never the token).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let rows = sqlx::query(
            self.sql("SELECT name, role, created_at FROM api_tokens ORDER BY created_at"),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| Ok((col(r, "name")?, col(r, "role")?, col(r, "created_at")?)))
            .collect()
    }

    /// Reserves an idempotency key (scoped to the token and the route) for a request whose
    /// body hashes to `request_hash`, in one statement: of concurrent requests with one key,
    /// exactly one gets [`Reservation::New`]. A reservation older than `stale_ms` that never
    /// got an answer (its coordinator died) is taken over.
    pub async fn reserve_key(
        &self,
        token_hash: &[u8],
        route: &str,
        key: &str,
        request_hash: &[u8],
        now_ms: u64,
        stale_ms: u64,
    ) -> Result<Reservation, Error> {
        let res = sqlx::query(self.sql(
            "INSERT INTO idempotency (token_hash, route, key, request_hash, status, response, created_ms) \
             VALUES (?, ?, ?, ?, NULL, NULL, ?) ON CONFLICT DO NOTHING",
        ))
        .bind(token_hash.to_vec())
        .bind(route)
        .bind(key)
        .bind(request_hash.to_vec())
        .bind(i64_of(now_ms))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if res.rows_affected() == 1 {
            return Ok(Reservation::New);
        }
        let Some(r) = sqlx::query(self.sql(
            "SELECT request_hash, status, response, created_ms FROM idempotency WHERE token_hash = ? AND route = ? AND key = ?",
        ))
        .bind(token_hash.to_vec())
        .bind(route)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        else {
            return Ok(Reservation::InProgress(request_hash.to_vec()));
        };
        let stored_hash: Vec<u8> = col(&r, "request_hash")?;
        let status: Option<i64> = col(&r, "status")?;
        if let Some(status) = status {
            let response: Option<Vec<u8>> = col(&r, "response")?;
            return Ok(Reservation::Done(
                stored_hash,
                u16::try_from(status).unwrap_or(500),
                response.unwrap_or_default(),
            ));
        }
        let created: i64 = col(&r, "created_ms")?;
        // Only the same request takes a dead one's reservation over (another body under the
        // key stays a conflict).
        if stored_hash == request_hash && created < i64_of(now_ms.saturating_sub(stale_ms)) {
            let taken = sqlx::query(self.sql(
                "UPDATE idempotency SET created_ms = ? WHERE token_hash = ? AND route = ? AND key = ? AND status IS NULL AND created_ms = ?",
            ))
            .bind(i64_of(now_ms))
            .bind(token_hash.to_vec())
            .bind(route)
            .bind(key)
            .bind(created)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            if taken.rows_affected() == 1 {
                return Ok(Reservation::New);
            }
        }
        Ok(Reservation::InProgress(stored_hash))
    }

    /// Stores the answer to a request under its reserved key.
    pub async fn complete_key(
        &self,
        token_hash: &[u8],
        route: &str,
        key: &str,
        status: u16,
        response: &[u8],
    ) -> Result<(), Error> {
        sqlx::query(self.sql(
            "UPDATE idempotency SET status = ?, response = ? WHERE token_hash = ? AND route = ? AND key = ?",
        ))
        .bind(i64::from(status))
        .bind(response.to_vec())
        .bind(token_hash.to_vec())
        .bind(route)
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Forgets a reservation whose request failed on the server's side (a retry may succeed).
    pub async fn forget_key(&self, token_hash: &[u8], route: &str, key: &str) -> Result<(), Error> {
        sqlx::query(self.sql(
            "DELETE FROM idempotency WHERE token_hash = ? AND route = ? AND key = ? AND status IS NULL",
        ))
        .bind(token_hash.to_vec())
        .bind(route)
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Stores a policy (insert, or replace its document and status).
    pub async fn save_policy(&self, p: &PolicyRecord) -> Result<(), Error> {
        sqlx::query(self.sql(
            "INSERT INTO policies (hash, version, document, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT(hash) DO UPDATE SET document = excluded.document, status = excluded.status, updated_at = excluded.updated_at",
        ))
        .bind(&p.hash)
        .bind(i64_of(p.version))
        .bind(&p.document)
        .bind(&p.status)
        .bind(&p.created_at)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// A policy by hash.
    pub async fn policy(&self, hash: &str) -> Result<Option<PolicyRecord>, Error> {
        let row = sqlx::query(self.sql("SELECT * FROM policies WHERE hash = ?"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(policy_from_row).transpose()
    }

    /// Every policy, by version then creation.
    pub async fn policies(&self) -> Result<Vec<PolicyRecord>, Error> {
        let rows = sqlx::query(self.sql("SELECT * FROM policies ORDER BY version, created_at"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(policy_from_row).collect()
    }

    /// Records the policy a module reports in force, and the fate of the last one offered.
    pub async fn set_module_policy(&self, m: &ModulePolicy) -> Result<(), Error> {
        sqlx::query(self.sql(
            "INSERT INTO module_policies (module_id, policy_hash, version, offered, error, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT(module_id) DO UPDATE SET policy_hash = excluded.policy_hash, version = excluded.version, \
             offered = excluded.offered, error = excluded.error, updated_at = excluded.updated_at",
        ))
        .bind(&m.module_id)
        .bind(&m.policy_hash)
        .bind(i64_of(m.version))
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
        let rows = sqlx::query(self.sql("SELECT * FROM module_policies ORDER BY module_id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(ModulePolicy {
                    module_id: col(r, "module_id")?,
                    policy_hash: col(r, "policy_hash")?,
                    version: int(r, "version")?,
                    offered: col(r, "offered")?,
                    error: col(r, "error")?,
                })
            })
            .collect()
    }
}
