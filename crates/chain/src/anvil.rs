//! The local chain used by the tests and the devnet: the real `anvil` node, from the npm
//! package `@foundry-rs/anvil-linux-amd64` (the binary ships inside it).
//!
//! [`anvil_binary`] finds the binary (`ANVIL_BIN`, then the cache), installing the npm
//! package into the cache when it is missing. Concurrent callers (parallel test processes)
//! each install into a private directory and the first rename wins.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The npm package that carries the anvil binary.
pub const ANVIL_NPM_PACKAGE: &str = "@foundry-rs/anvil-linux-amd64";
/// The version installed when none is cached.
pub const ANVIL_VERSION: &str = "1.7.1";

/// Why the anvil binary could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum AnvilInstallError {
    /// `ANVIL_BIN` names a file that does not exist.
    #[error("ANVIL_BIN is set to {0}, which does not exist")]
    MissingOverride(PathBuf),
    /// npm could not be run or failed.
    #[error(
        "could not install the npm package {ANVIL_NPM_PACKAGE}@{ANVIL_VERSION} into {dir}: {reason} (is Node.js with npm installed?)"
    )]
    Npm {
        /// Where it was being installed.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Concord's cache directory: `$CONCORD_CACHE_DIR`, else `$XDG_CACHE_HOME/concord`, else
/// `$HOME/.cache/concord`, else a directory under the system temp dir.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONCORD_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("concord");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".cache").join("concord");
    }
    std::env::temp_dir().join("concord-cache")
}

fn binary_in(dir: &Path) -> PathBuf {
    dir.join("node_modules")
        .join(ANVIL_NPM_PACKAGE)
        .join("bin")
        .join("anvil")
}

/// The path of the anvil binary, installing the npm package into [`cache_dir`] when it is
/// not there yet. `progress` is told when an installation starts (it takes a few seconds).
pub fn anvil_binary(mut progress: impl FnMut(&str)) -> Result<PathBuf, AnvilInstallError> {
    if let Some(path) = std::env::var_os("ANVIL_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(AnvilInstallError::MissingOverride(path))
        };
    }
    let dir = cache_dir().join(format!("anvil-{ANVIL_VERSION}"));
    let bin = binary_in(&dir);
    if bin.is_file() {
        return Ok(bin);
    }
    progress(&format!(
        "installing {ANVIL_NPM_PACKAGE}@{ANVIL_VERSION} with npm into {}",
        dir.display()
    ));
    let parent = cache_dir();
    std::fs::create_dir_all(&parent).map_err(|source| AnvilInstallError::Io {
        action: "creating",
        path: parent.clone(),
        source,
    })?;
    let staging = parent.join(format!(
        ".anvil-{ANVIL_VERSION}-install-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|source| AnvilInstallError::Io {
        action: "creating",
        path: staging.clone(),
        source,
    })?;
    let output = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&staging)
        .arg(format!("{ANVIL_NPM_PACKAGE}@{ANVIL_VERSION}"))
        .output()
        .map_err(|e| AnvilInstallError::Npm {
            dir: dir.clone(),
            reason: e.to_string(),
        })?;
    if !output.status.success() || !binary_in(&staging).is_file() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(AnvilInstallError::Npm {
            dir,
            reason: format!(
                "npm exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    // Another process may have finished first; either copy is the same package.
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(AnvilInstallError::Npm {
            dir,
            reason: "the package installed but its bin/anvil is missing".into(),
        })
    }
}
