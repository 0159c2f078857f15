//! Transfers, the per-wallet deposit queue and account nonces.

use super::{Store, col, db, i64_of};
use crate::Error;
use crate::records::{TransferKind, TransferRecord, TransferStatus, now};

/// Statuses of a deposit that has not reached the chain yet: such deposits of one wallet go
/// one at a time, in the order they were recorded (their nonces follow one another).
const BEFORE_CHAIN: [TransferStatus; 5] = [
    TransferStatus::Requested,
    TransferStatus::Queued,
    TransferStatus::Resolving,
    TransferStatus::Signing,
    TransferStatus::Signed,
];

fn parse(record: &str) -> Result<TransferRecord, Error> {
    serde_json::from_str(record).map_err(|e| Error::Storage(format!("stored transfer: {e}")))
}

impl Store {
    /// Records a new transfer, leased to `owner` for `lease_ms`; `false` if a transfer with
    /// this id exists already (nothing is written then).
    pub async fn insert_transfer(
        &self,
        t: &TransferRecord,
        owner: &str,
        lease_until: u64,
    ) -> Result<bool, Error> {
        let record = serde_json::to_string(t).map_err(|e| Error::Internal(e.to_string()))?;
        // Its place in the wallet's queue is taken in the same transaction, under the
        // queue row's lock: places are handed out in the order the transfers are recorded.
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = sqlx::query(self.sql(
            "INSERT INTO transfer_queues (wallet_id, last_seq) VALUES (?, 1) \
             ON CONFLICT (wallet_id) DO UPDATE SET last_seq = transfer_queues.last_seq + 1 \
             RETURNING last_seq",
        ))
        .bind(&t.wallet_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let seq: i64 = col(&row, "last_seq")?;
        let res = sqlx::query(self.sql(
            "INSERT INTO transfers (id, kind, status, record, created_at, updated_at, wallet_id, created_us, owner, lease_until, queue_seq) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        ))
        .bind(&t.id)
        .bind(t.kind.as_str())
        .bind(t.status.as_str())
        .bind(&record)
        .bind(&t.created_at)
        .bind(now())
        .bind(&t.wallet_id)
        .bind((t.created_ms * 1000.0) as i64)
        .bind(owner)
        .bind(i64_of(lease_until))
        .bind(seq)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if res.rows_affected() != 1 {
            // Made before (the same request again): its place is not taken twice.
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    /// Writes a transfer's new state, if `owner` still holds its lease (otherwise another
    /// coordinator has taken it over, and this one must stop).
    pub async fn save_transfer(&self, t: &TransferRecord, owner: &str) -> Result<(), Error> {
        let record = serde_json::to_string(t).map_err(|e| Error::Internal(e.to_string()))?;
        let final_owner: Option<&str> = if t.is_final() { None } else { Some(owner) };
        let res = sqlx::query(self.sql(
            "UPDATE transfers SET status = ?, record = ?, updated_at = ?, owner = ? WHERE id = ? AND owner = ?",
        ))
        .bind(t.status.as_str())
        .bind(&record)
        .bind(now())
        .bind(final_owner)
        .bind(&t.id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if res.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost(format!(
                "transfer {} is no longer leased to this coordinator",
                t.id
            )))
        }
    }

    /// A transfer by id.
    pub async fn transfer(&self, id: &str) -> Result<Option<TransferRecord>, Error> {
        let row = sqlx::query(self.sql("SELECT record FROM transfers WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| parse(&col::<String>(&r, "record")?))
            .transpose()
    }

    /// The newest transfers, newest first.
    pub async fn transfers(&self, limit: u32) -> Result<Vec<TransferRecord>, Error> {
        let rows = sqlx::query(
            self.sql("SELECT record FROM transfers ORDER BY created_us DESC, id DESC LIMIT ?"),
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| parse(&col::<String>(r, "record")?))
            .collect()
    }

    /// A wallet's latest failed deposits, newest first (which nonces they may still hold).
    pub async fn failed_deposits(
        &self,
        wallet_id: &str,
        limit: u32,
    ) -> Result<Vec<TransferRecord>, Error> {
        let rows = sqlx::query(self.sql(
            "SELECT record FROM transfers WHERE kind = ? AND wallet_id = ? AND status = ? \
             ORDER BY created_us DESC, id DESC LIMIT ?",
        ))
        .bind(TransferKind::Deposit.as_str())
        .bind(wallet_id)
        .bind(TransferStatus::Failed.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| parse(&col::<String>(r, "record")?))
            .collect()
    }

    /// The deposit of `wallet_id` that goes next: the first recorded that has not reached the
    /// chain.
    pub async fn deposit_queue_head(&self, wallet_id: &str) -> Result<Option<String>, Error> {
        self.deposit_queue_head_in(wallet_id, &BEFORE_CHAIN).await
    }

    /// [`Store::deposit_queue_head`] for a wallet whose deposits wait until the earlier ones
    /// are mined, not only accepted by the node (a Safe: its nonce advances only when its
    /// transaction is executed).
    pub async fn deposit_queue_head_until_mined(
        &self,
        wallet_id: &str,
    ) -> Result<Option<String>, Error> {
        let mut statuses = BEFORE_CHAIN.to_vec();
        statuses.push(TransferStatus::Broadcast);
        self.deposit_queue_head_in(wallet_id, &statuses).await
    }

    async fn deposit_queue_head_in(
        &self,
        wallet_id: &str,
        statuses: &[TransferStatus],
    ) -> Result<Option<String>, Error> {
        let marks = vec!["?"; statuses.len()].join(", ");
        let sql = format!(
            "SELECT id FROM transfers WHERE kind = ? AND wallet_id = ? AND status IN ({marks}) \
             ORDER BY queue_seq, created_us, id LIMIT 1"
        );
        let mut query = sqlx::query(self.sql(&sql))
            .bind(TransferKind::Deposit.as_str())
            .bind(wallet_id);
        for status in statuses {
            query = query.bind(status.as_str());
        }
        let row = query.fetch_optional(&self.pool).await.map_err(db)?;
        row.map(|r| col(&r, "id")).transpose()
    }

    /// How many transfers are in each status (for operators and tests).
    pub async fn transfer_counts(&self) -> Result<Vec<(TransferStatus, i64)>, Error> {
        let rows = sqlx::query(
            self.sql("SELECT status, COUNT(*) AS n FROM transfers GROUP BY status ORDER BY status"),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| Ok((super::state(r, "status")?, col(r, "n")?)))
            .collect()
    }

    /// The next account nonce of a wallet on a chain, as this system has used them.
    pub async fn next_nonce(&self, wallet_id: &str, chain_id: u64) -> Result<Option<u64>, Error> {
        self.next_in(Nonces::Wallet, wallet_id, chain_id).await
    }

    /// Records that `nonce` is used (a transaction with it was accepted by the node or mined).
    pub async fn use_nonce(&self, wallet_id: &str, chain_id: u64, nonce: u64) -> Result<(), Error> {
        self.use_in(Nonces::Wallet, wallet_id, chain_id, nonce)
            .await
    }

    /// The next nonce of an account that is not a wallet (the Safe gas account), as this
    /// system has used them.
    pub async fn next_account_nonce(
        &self,
        account: &str,
        chain_id: u64,
    ) -> Result<Option<u64>, Error> {
        self.next_in(Nonces::Account, account, chain_id).await
    }

    /// Records that `nonce` of an account that is not a wallet is used.
    pub async fn use_account_nonce(
        &self,
        account: &str,
        chain_id: u64,
        nonce: u64,
    ) -> Result<(), Error> {
        self.use_in(Nonces::Account, account, chain_id, nonce).await
    }

    async fn next_in(&self, t: Nonces, who: &str, chain_id: u64) -> Result<Option<u64>, Error> {
        let (table, key) = t.table();
        let sql = format!("SELECT next_nonce FROM {table} WHERE {key} = ? AND chain_id = ?");
        let row = sqlx::query(self.sql(&sql))
            .bind(who)
            .bind(i64_of(chain_id))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| super::int(&r, "next_nonce")).transpose()
    }

    async fn use_in(&self, t: Nonces, who: &str, chain_id: u64, nonce: u64) -> Result<(), Error> {
        let (table, key) = t.table();
        let sql = format!(
            "INSERT INTO {table} ({key}, chain_id, next_nonce) VALUES (?, ?, ?) \
             ON CONFLICT({key}, chain_id) DO UPDATE SET next_nonce = CASE WHEN excluded.next_nonce > {table}.next_nonce THEN excluded.next_nonce ELSE {table}.next_nonce END"
        );
        sqlx::query(self.sql(&sql))
            .bind(who)
            .bind(i64_of(chain_id))
            .bind(i64_of(nonce + 1))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}

/// Whose nonces: a wallet's, or another account's.
#[derive(Clone, Copy)]
enum Nonces {
    Wallet,
    Account,
}

impl Nonces {
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Nonces::Wallet => ("wallet_nonces", "wallet_id"),
            Nonces::Account => ("account_nonces", "account"),
        }
    }
}
