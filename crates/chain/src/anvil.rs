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

/// Why an npm package (the anvil binary, the Safe contracts) could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum AnvilInstallError {
    /// `ANVIL_BIN` names a file that does not exist.
    #[error("ANVIL_BIN is set to {0}, which does not exist")]
    MissingOverride(PathBuf),
    /// npm could not be run or failed.
    #[error(
        "could not install the npm package {package} into {dir}: {reason} (is Node.js with npm installed?)"
    )]
    Npm {
        /// The package and version.
        package: String,
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
    npm_package(
        &dir,
        ANVIL_NPM_PACKAGE,
        ANVIL_VERSION,
        Path::new("bin/anvil"),
        &mut progress,
    )?;
    Ok(binary_in(&dir))
}

/// Installs `package@version` with npm into `dir` (its `node_modules/<package>`) unless the
/// package's file `marker` is there already; concurrent callers each install into a private
/// directory and the first rename wins. Returns the package's directory.
pub fn npm_package(
    dir: &Path,
    package: &str,
    version: &str,
    marker: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, AnvilInstallError> {
    let package_dir = |d: &Path| d.join("node_modules").join(package);
    let present = |d: &Path| package_dir(d).join(marker).is_file();
    if present(dir) {
        return Ok(package_dir(dir));
    }
    let spec = format!("{package}@{version}");
    progress(&format!(
        "installing {spec} with npm into {}",
        dir.display()
    ));
    let npm_error = |reason: String| AnvilInstallError::Npm {
        package: spec.clone(),
        dir: dir.to_path_buf(),
        reason,
    };
    let parent = dir.parent().unwrap_or(dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|source| AnvilInstallError::Io {
        action: "creating",
        path: parent.clone(),
        source,
    })?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(".{name}-install-{}", std::process::id()));
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
        .arg(&spec)
        .output()
        .map_err(|e| npm_error(e.to_string()))?;
    if !output.status.success() || !present(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(npm_error(format!(
            "npm exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    // Another process may have finished first; either copy is the same package.
    if std::fs::rename(&staging, dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    if present(dir) {
        Ok(package_dir(dir))
    } else {
        Err(npm_error(format!(
            "the package installed but its {} is missing",
            marker.display()
        )))
    }
}
