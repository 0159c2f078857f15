//! The coordinator's one error type. Who dissented, who is blamed and whether a retry can help
//! are data, not sentences to be split again.

use std::collections::BTreeMap;

/// The coordinator's errors; each maps to an HTTP status in the API.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is malformed or names something invalid.
    #[error("{0}")]
    BadRequest(String),
    /// Something named does not exist.
    #[error("{0} was not found")]
    NotFound(String),
    /// The request conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// Modules, the chain or the exchange are not reachable or did not answer: a retry may
    /// help.
    #[error("{0}")]
    Unavailable(String),
    /// The modules (or the agreement rule) refused: the dissenting modules and their reasons.
    #[error("refused: {reason}{}", dissent_list(.dissenters))]
    Refused {
        /// Why, in words.
        reason: String,
        /// Module → its reason.
        dissenters: BTreeMap<String, String>,
    },
    /// A module or protocol misbehaved; the parties blamed.
    #[error("{reason}")]
    Protocol {
        /// What went wrong.
        reason: String,
        /// Modules blamed (empty: unknown).
        blamed: Vec<String>,
    },
    /// Another coordinator took over this work (its lease expired here).
    #[error("{0}")]
    LeaseLost(String),
    /// The database failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

fn dissent_list(d: &BTreeMap<String, String>) -> String {
    if d.is_empty() {
        return String::new();
    }
    let named: Vec<String> = d.iter().map(|(m, r)| format!("{m} ({r})")).collect();
    format!("; dissenting: {}", named.join("; "))
}

impl Error {
    /// A refusal without named dissenters.
    pub fn refused(reason: impl Into<String>) -> Error {
        Error::Refused {
            reason: reason.into(),
            dissenters: BTreeMap::new(),
        }
    }

    /// A protocol fault with no one blamed.
    pub fn protocol(reason: impl Into<String>) -> Error {
        Error::Protocol {
            reason: reason.into(),
            blamed: Vec::new(),
        }
    }

    /// Whether trying the same thing again later can succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_) | Error::Storage(_) | Error::Protocol { .. }
        )
    }
}
