//! The coordinator's persistent state, through sqlx on SQLite (the embedded default, a file)
//! or PostgreSQL (several coordinators on one database), chosen by the configuration's URL.
//! One set of queries serves both (written with `?` placeholders, numbered for PostgreSQL
//! here); the schema has one migration directory per backend (`migrations/sqlite`,
//! `migrations/postgres`) with the same tables and meaning. Every step of a job or a transfer
//! is written here before it is acted on, and unfinished work is leased to one coordinator
//! at a time (see [`leases`]).

mod jobs;
pub mod leases;
mod misc;
mod setup;
mod transfers;

use std::sync::Once;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::Error;

pub use crate::records::now;
pub use jobs::{JobFilter, NewEvent};
pub use misc::{Reservation, TokenInfo};

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (a file, or memory for tests).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The coordinator's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

fn db(e: sqlx::Error) -> Error {
    Error::Storage(e.to_string())
}

/// A column of a row, with the column named in the error.
fn col<T>(r: &AnyRow, name: &str) -> Result<T, Error>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    r.try_get(name)
        .map_err(|e| Error::Storage(format!("column {name}: {e}")))
}

/// An integer column that must fit `T`.
fn int<T: TryFrom<i64>>(r: &AnyRow, name: &str) -> Result<T, Error> {
    let v: i64 = col(r, name)?;
    T::try_from(v).map_err(|_| Error::Storage(format!("column {name}: {v} is out of range")))
}

/// A stored state name parsed into its enum.
fn state<T: std::str::FromStr<Err = String>>(r: &AnyRow, name: &str) -> Result<T, Error> {
    let v: String = col(r, name)?;
    v.parse().map_err(Error::Storage)
}

/// `n` as a database integer.
fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

static DRIVERS: Once = Once::new();

/// Numbers `?` placeholders (`$1`, `$2`, …) for PostgreSQL; SQL string literals are left
/// alone.
fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let (mut n, mut quoted) = (0, false);
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

impl Store {
    /// Opens the database `url` names and applies its migrations: `postgres://…` or
    /// `postgresql://…` for PostgreSQL, `sqlite://PATH` or a plain path for SQLite (created
    /// if missing).
    pub async fn open_url(url: &str) -> Result<Store, Error> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else if url.starts_with("sqlite:") {
            (Backend::Sqlite, url.to_owned())
        } else {
            (Backend::Sqlite, format!("sqlite://{url}?mode=rwc"))
        };
        let options = AnyPoolOptions::new().max_connections(match backend {
            Backend::Sqlite => 4,
            Backend::Postgres => 8,
        });
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL + NORMAL: a commit is durable once in the write-ahead log, which
                    // survives a coordinator crash; only an operating-system crash can lose
                    // the last commits, and redoing those steps is safe (modules keep their
                    // own fsynced records and answer a repeated step identically).
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options.connect(&url).await.map_err(|e| {
            Error::Storage(format!(
                "cannot open the database ({}): {e}",
                redact_url(&url)
            ))
        })?;
        Self::migrate(pool, backend).await
    }

    /// Opens (creating if needed) the SQLite database at `path`.
    pub async fn open(path: &std::path::Path) -> Result<Store, Error> {
        Self::open_url(&path.display().to_string()).await
    }

    /// An in-memory SQLite database, for tests.
    pub async fn open_in_memory() -> Result<Store, Error> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .map_err(db)?;
        Self::migrate(pool, Backend::Sqlite).await
    }

    async fn migrate(pool: AnyPool, backend: Backend) -> Result<Store, Error> {
        let outcome = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await,
        };
        outcome.map_err(|e| Error::Storage(format!("migration failed: {e}")))?;
        Ok(Store { pool, backend })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A query in this backend's placeholder style.
    fn sql(&self, sql: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(match self.backend {
            Backend::Sqlite => sql.to_owned(),
            Backend::Postgres => number_placeholders(sql),
        })
    }
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(
            number_placeholders("UPDATE t SET a = ?, b = 'x?' WHERE id = ? AND c = '?'"),
            "UPDATE t SET a = $1, b = 'x?' WHERE id = $2 AND c = '?'"
        );
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact_url("postgres://concord:secret@127.0.0.1:5432/db"),
            "postgres://concord:***@127.0.0.1:5432/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
