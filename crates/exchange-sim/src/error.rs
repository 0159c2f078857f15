//! The crate's error type.

use std::path::PathBuf;

/// Why the simulator could not be configured or started.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML of the expected shape.
    #[error("cannot parse the simulator configuration {path}: {reason}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The configuration is inconsistent.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// The EVM node could not be reached or is not the configured chain.
    #[error("EVM node {url}: {reason}")]
    Chain {
        /// The node's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Serving HTTP failed.
    #[error("the HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}
