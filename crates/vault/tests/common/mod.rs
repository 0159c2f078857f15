//! Shared helpers for the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use concord_vault::{Argon2Params, PassphraseKek, Zeroizing};

/// Cheap Argon2 parameters (8 MiB, one pass) so tests run fast.
pub const CHEAP: Argon2Params = Argon2Params {
    m_cost_kib: 8 * 1024,
    t_cost: 1,
    p_cost: 1,
};

/// A passphrase provider with cheap parameters.
pub fn kek(passphrase: &str) -> PassphraseKek {
    PassphraseKek::with_params(Zeroizing::new(passphrase.to_string()), CHEAP).unwrap()
}

/// Every file under `dir`, relative path → bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    b"<dir>".to_vec(),
                );
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Path of a secret's sealed file.
pub fn sealed(dir: &Path, name: &str) -> PathBuf {
    dir.join("secrets").join(format!("{name}.sealed"))
}
