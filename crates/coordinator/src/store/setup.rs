//! Modules, signer groups, wallets and exchange credentials.

use sqlx::any::AnyRow;

use super::{Store, col, db, int, state};
use crate::Error;
use crate::records::{GroupRecord, GroupStatus, ModuleRecord, WalletRecord, now};

fn module_from_row(r: &AnyRow) -> Result<ModuleRecord, Error> {
    Ok(ModuleRecord {
        id: col(r, "id")?,
        identity: col(r, "identity")?,
        sealing_key: col(r, "sealing_key")?,
        sealing_key_signature: col(r, "sealing_key_signature")?,
        enrolled_at: col(r, "enrolled_at")?,
    })
}

fn wallet_from_row(r: &AnyRow) -> Result<WalletRecord, Error> {
    Ok(WalletRecord {
        id: col(r, "id")?,
        group_id: col(r, "group_id")?,
        scheme: col(r, "scheme")?,
        public_key: col(r, "public_key")?,
        job_id: col(r, "job_id")?,
        created_at: col(r, "created_at")?,
    })
}

fn unique(e: sqlx::Error, what: impl FnOnce() -> String) -> Error {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::Conflict(what()),
        e => db(e),
    }
}

impl Store {
    /// Enrolls a module. Its id and identity must both be new.
    pub async fn enroll_module(&self, m: &ModuleRecord) -> Result<(), Error> {
        sqlx::query(self.sql(
            "INSERT INTO modules (id, identity, sealing_key, sealing_key_signature, enrolled_at) VALUES (?, ?, ?, ?, ?)",
        ))
        .bind(&m.id)
        .bind(&m.identity)
        .bind(&m.sealing_key)
        .bind(&m.sealing_key_signature)
        .bind(&m.enrolled_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            unique(e, || {
                format!(
                    "a module with id '{}' or this identity key is already enrolled",
                    m.id
                )
            })
        })?;
        Ok(())
    }

    /// The module enrolled with this identity key.
    pub async fn module_by_identity(&self, identity: &[u8]) -> Result<Option<ModuleRecord>, Error> {
        let row = sqlx::query(self.sql("SELECT * FROM modules WHERE identity = ?"))
            .bind(identity.to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(module_from_row).transpose()
    }

    /// A module by id.
    pub async fn module(&self, id: &str) -> Result<Option<ModuleRecord>, Error> {
        let row = sqlx::query(self.sql("SELECT * FROM modules WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(module_from_row).transpose()
    }

    /// Every enrolled module.
    pub async fn modules(&self) -> Result<Vec<ModuleRecord>, Error> {
        let rows = sqlx::query(self.sql("SELECT * FROM modules ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(module_from_row).collect()
    }

    /// Every enrolled identity key (for the TLS pin store).
    pub async fn identities(&self) -> Result<Vec<Vec<u8>>, Error> {
        let rows = sqlx::query(self.sql("SELECT identity FROM modules"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|r| col(r, "identity")).collect()
    }

    /// Creates a group with its members (module ids in index order) in one transaction.
    pub async fn create_group(&self, g: &GroupRecord) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(self.sql(
            "INSERT INTO groups (id, threshold, size, status, aux_job_id, engine, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&g.id)
        .bind(i64::from(g.threshold))
        .bind(i64::from(g.size))
        .bind(g.status.as_str())
        .bind(&g.aux_job_id)
        .bind(g.engine.as_str())
        .bind(&g.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| unique(e, || format!("group '{}' already exists", g.id)))?;
        for (idx, m) in g.members.iter().enumerate() {
            sqlx::query(
                self.sql("INSERT INTO group_members (group_id, idx, module_id) VALUES (?, ?, ?)"),
            )
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
        let Some(r) = sqlx::query(self.sql("SELECT * FROM groups WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let members = sqlx::query(
            self.sql("SELECT module_id FROM group_members WHERE group_id = ? ORDER BY idx"),
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(|r| col::<String>(r, "module_id"))
        .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(GroupRecord {
            id: col(&r, "id")?,
            threshold: int(&r, "threshold")?,
            size: int(&r, "size")?,
            status: state(&r, "status")?,
            aux_job_id: col(&r, "aux_job_id")?,
            members,
            engine: col::<String>(&r, "engine")?.parse().map_err(
                |e: concord_types::TypesError| Error::Internal(format!("stored group {id}: {e}")),
            )?,
            created_at: col(&r, "created_at")?,
        }))
    }

    /// Every group, oldest first.
    pub async fn groups(&self) -> Result<Vec<GroupRecord>, Error> {
        let mut groups = Vec::new();
        for id in self.group_ids().await? {
            // A group is never deleted; one missing here was not committed yet.
            if let Some(g) = self.group(&id).await? {
                groups.push(g);
            }
        }
        Ok(groups)
    }

    /// Every group id, oldest first.
    pub async fn group_ids(&self) -> Result<Vec<String>, Error> {
        let rows = sqlx::query(self.sql("SELECT id FROM groups ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|r| col(r, "id")).collect()
    }

    /// Sets a group's status.
    pub async fn set_group_status(&self, id: &str, status: GroupStatus) -> Result<(), Error> {
        sqlx::query(self.sql("UPDATE groups SET status = ? WHERE id = ?"))
            .bind(status.as_str())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Puts module `module` at index `idx` of a group (a replaced member).
    pub async fn replace_group_member(
        &self,
        group: &str,
        idx: u16,
        module: &str,
    ) -> Result<(), Error> {
        sqlx::query(
            self.sql("UPDATE group_members SET module_id = ? WHERE group_id = ? AND idx = ?"),
        )
        .bind(module)
        .bind(group)
        .bind(i64::from(idx))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Records a new wallet (idempotent: the same wallet twice is not an error).
    pub async fn insert_wallet(&self, w: &WalletRecord) -> Result<(), Error> {
        sqlx::query(self.sql(
            "INSERT INTO wallets (id, group_id, scheme, public_key, job_id, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        ))
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

    /// A wallet by id.
    pub async fn wallet(&self, id: &str) -> Result<Option<WalletRecord>, Error> {
        let row = sqlx::query(self.sql("SELECT * FROM wallets WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(wallet_from_row).transpose()
    }

    /// Every wallet.
    pub async fn wallets(&self) -> Result<Vec<WalletRecord>, Error> {
        let rows = sqlx::query(self.sql("SELECT * FROM wallets ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(wallet_from_row).collect()
    }

    /// Registers (or replaces) an exchange's withdraw-capable key.
    pub async fn set_credential(
        &self,
        exchange: &str,
        wallet_id: &str,
        api_key: &str,
    ) -> Result<(), Error> {
        sqlx::query(self.sql(
            "INSERT INTO exchange_credentials (exchange, wallet_id, api_key, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT(exchange) DO UPDATE SET wallet_id = excluded.wallet_id, api_key = excluded.api_key, created_at = excluded.created_at",
        ))
        .bind(exchange)
        .bind(wallet_id)
        .bind(api_key)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// An exchange's withdraw key: (wallet id, API key).
    pub async fn credential(&self, exchange: &str) -> Result<Option<(String, String)>, Error> {
        let row = sqlx::query(
            self.sql("SELECT wallet_id, api_key FROM exchange_credentials WHERE exchange = ?"),
        )
        .bind(exchange)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| Ok((col(&r, "wallet_id")?, col(&r, "api_key")?)))
            .transpose()
    }
}
