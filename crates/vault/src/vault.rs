//! The vault: a directory of sealed secrets under one data-encryption key.
//!
//! Layout:
//!
//! ```text
//! <dir>/vault.json              header: format, version, KEK kind + params, wrapped DEK (hex)
//! <dir>/secrets/<name>.sealed   0x01 || 24-byte nonce || XChaCha20-Poly1305(DEK, secret, AAD)
//! ```
//!
//! The AAD of a secret is `"concord-vault/secret\0" || 0x01 || name`, so a sealed file renamed
//! or copied to another name does not open. The AAD of the wrapped DEK is
//! `"concord-vault/dek\0" || 0x01 || JSON(KEK params)`, so the key parameters cannot be swapped
//! for others without the unwrap failing.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::fsio::{self, TMP_PREFIX};
use crate::kek::{Kek, KekParams, KekProvider};
use crate::seal::{self, fill_random};

/// Name of the header file inside a vault directory.
pub const HEADER_FILE: &str = "vault.json";
/// Name of the directory holding sealed secrets.
pub const SECRETS_DIR: &str = "secrets";
/// Extension of sealed secret files.
pub const SEALED_EXT: &str = ".sealed";
/// Header format version written and read by this build.
pub const HEADER_VERSION: u64 = 1;
/// Sealed-secret format version (first byte of each sealed file) written and read by this build.
pub const SECRET_FORMAT: u8 = 1;
/// Longest accepted secret name.
pub const MAX_NAME_LEN: usize = 128;

/// Value of the header's `format` field.
const FORMAT_NAME: &str = "concord-vault";
const SECRET_AAD_PREFIX: &[u8] = b"concord-vault/secret\0";
const DEK_AAD_PREFIX: &[u8] = b"concord-vault/dek\0";

/// Checks a secret name: 1 to 128 characters from `[A-Za-z0-9._-]`, not starting with a dot
/// (dot files are reserved for the vault's temporary files).
pub fn check_name(name: &str) -> Result<(), VaultError> {
    let bad = |reason: &'static str| {
        let shown: String = if name.chars().count() > MAX_NAME_LEN + 16 {
            name.chars().take(MAX_NAME_LEN).chain("…".chars()).collect()
        } else {
            name.to_string()
        };
        Err(VaultError::InvalidName {
            name: shown,
            reason,
        })
    };
    if name.is_empty() {
        return bad("a name must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("a name must be at most 128 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("a name may contain only letters A-Z and a-z, digits, '.', '_' and '-'");
    }
    if name.starts_with('.') {
        return bad("a name must not start with '.'");
    }
    Ok(())
}

/// The header file's content.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u64,
    kek: KekParams,
    /// The wrapped data-encryption key, hex.
    wrapped_dek: String,
}

/// The fields read first, so that a future version's header gives "unsupported version" rather
/// than a parse error.
#[derive(Deserialize)]
struct HeaderProbe {
    format: String,
    version: u64,
}

fn dek_aad(params: &KekParams) -> Result<Vec<u8>, VaultError> {
    let mut aad = DEK_AAD_PREFIX.to_vec();
    aad.push(SECRET_FORMAT);
    serde_json::to_writer(&mut aad, params)
        .map_err(|_| VaultError::Crypto("could not encode the key-encryption parameters"))?;
    Ok(aad)
}

fn secret_aad(name: &str) -> Vec<u8> {
    let mut aad = SECRET_AAD_PREFIX.to_vec();
    aad.push(SECRET_FORMAT);
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn file_name(name: &str) -> String {
    format!("{name}{SEALED_EXT}")
}

/// A directory of secrets sealed under one data-encryption key (DEK), itself wrapped by a
/// key-encryption key from a [`KekProvider`]. Cheap operations take `&self`; a `Vault` may be
/// shared between threads. The DEK is wiped when the vault is dropped.
pub struct Vault {
    dir: PathBuf,
    secrets: PathBuf,
    dek: Zeroizing<[u8; 32]>,
    kek_kind: &'static str,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("dir", &self.dir)
            .field("kek_kind", &self.kek_kind)
            .field("dek", &"<redacted>")
            .finish()
    }
}

impl Vault {
    /// Creates a new vault in `dir` (created if missing): a fresh random DEK, wrapped by a new
    /// key from `provider`. Fails with [`VaultError::AlreadyExists`] if `dir` already holds a
    /// vault header or sealed secrets; never overwrites anything.
    pub fn create(dir: impl AsRef<Path>, provider: &dyn KekProvider) -> Result<Vault, VaultError> {
        let dir = dir.as_ref().to_path_buf();
        let secrets = dir.join(SECRETS_DIR);
        let exists = || VaultError::AlreadyExists { dir: dir.clone() };
        if fs::symlink_metadata(dir.join(HEADER_FILE)).is_ok() {
            return Err(exists());
        }
        if secrets.is_dir() && !list_names(&secrets, "")?.is_empty() {
            return Err(exists());
        }
        let (kek, params) = created(provider)?;
        let mut dek = Zeroizing::new([0u8; 32]);
        fill_random(&mut dek[..])?;
        let wrapped = kek.wrap(&dek, &dek_aad(&params)?)?;
        fsio::ensure_dir(&dir)?;
        fsio::ensure_dir(&secrets)?;
        write_header(&dir, &params, &wrapped, true).map_err(|e| match e {
            VaultError::Io { source, .. } if source.kind() == ErrorKind::AlreadyExists => exists(),
            e => e,
        })?;
        Ok(Vault {
            dir,
            secrets,
            dek,
            kek_kind: params.kind(),
        })
    }

    /// Opens the vault in `dir` with `provider`. A wrong key leaves the directory untouched;
    /// only once the key is confirmed are temporary files from interrupted writes removed.
    pub fn open(dir: impl AsRef<Path>, provider: &dyn KekProvider) -> Result<Vault, VaultError> {
        let dir = dir.as_ref().to_path_buf();
        let header_path = dir.join(HEADER_FILE);
        let text = match fs::read(&header_path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(VaultError::NotFound { dir });
            }
            Err(e) => return Err(VaultError::io("read", header_path, e)),
        };
        let corrupt = |reason: String| VaultError::CorruptHeader {
            path: header_path.clone(),
            reason,
        };
        let probe: HeaderProbe = serde_json::from_slice(&text)
            .map_err(|e| corrupt(format!("not a vault header: {e}")))?;
        if probe.format != FORMAT_NAME {
            return Err(corrupt(format!(
                "its format is {:?}, not {FORMAT_NAME:?}",
                probe.format
            )));
        }
        if probe.version != HEADER_VERSION {
            return Err(VaultError::UnsupportedVersion {
                what: format!("the vault header {}", header_path.display()),
                found: probe.version,
                supported: HEADER_VERSION,
            });
        }
        let header: Header = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
        let wrapped = hex::decode(&header.wrapped_dek)
            .map_err(|e| corrupt(format!("wrapped_dek is not hex: {e}")))?;
        if header.kek.kind() != provider.kind() {
            return Err(VaultError::KekMismatch {
                expected: provider.kind(),
                found: header.kek.kind(),
            });
        }
        let kek = provider.open(&header.kek)?;
        let dek = kek.unwrap_key(&wrapped, &dek_aad(&header.kek)?)?;
        let secrets = dir.join(SECRETS_DIR);
        if !secrets.is_dir() {
            return Err(VaultError::io(
                "find the secrets directory",
                secrets,
                std::io::Error::from(ErrorKind::NotFound),
            ));
        }
        fsio::remove_temp_files(&dir)?;
        fsio::remove_temp_files(&secrets)?;
        Ok(Vault {
            dir,
            secrets,
            dek,
            kek_kind: header.kek.kind(),
        })
    }

    /// Re-wraps the data key under a new key from `provider` (a passphrase change, or a move to
    /// an HSM) and atomically replaces the header. Secrets are untouched: they stay sealed
    /// under the same data key.
    pub fn rekey(&mut self, provider: &dyn KekProvider) -> Result<(), VaultError> {
        let (kek, params) = created(provider)?;
        let wrapped = kek.wrap(&self.dek, &dek_aad(&params)?)?;
        write_header(&self.dir, &params, &wrapped, false)?;
        self.kek_kind = params.kind();
        Ok(())
    }

    /// The vault's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kind of key-encryption key sealing this vault (`"passphrase"` or `"pkcs11"`).
    pub fn kek_kind(&self) -> &'static str {
        self.kek_kind
    }

    /// Seals `secret` under `name`, atomically replacing any previous value.
    pub fn put(&self, name: &str, secret: &[u8]) -> Result<(), VaultError> {
        check_name(name)?;
        let sealed = seal::seal(&self.dek, secret, &secret_aad(name))?;
        let mut file = Vec::with_capacity(1 + sealed.len());
        file.push(SECRET_FORMAT);
        file.extend_from_slice(&sealed);
        fsio::write_atomic(&self.secrets, &file_name(name), &file, false)
    }

    /// Seals `secret` under `name` only if nothing is stored under it yet; `false` (and
    /// nothing written) if something is. Two processes racing to create one secret: exactly
    /// one wins, the other reads the winner's.
    pub fn put_new(&self, name: &str, secret: &[u8]) -> Result<bool, VaultError> {
        check_name(name)?;
        let sealed = seal::seal(&self.dek, secret, &secret_aad(name))?;
        let mut file = Vec::with_capacity(1 + sealed.len());
        file.push(SECRET_FORMAT);
        file.extend_from_slice(&sealed);
        match fsio::write_atomic(&self.secrets, &file_name(name), &file, true) {
            Ok(()) => Ok(true),
            Err(VaultError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The secret stored under `name`, or `None` if there is none. Fails, naming the secret,
    /// if its file does not authenticate (altered, truncated, or renamed from another name).
    pub fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        check_name(name)?;
        let path = self.secrets.join(file_name(name));
        let file = match fs::read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(VaultError::io("read", path, e)),
        };
        let corrupt = |reason| VaultError::CorruptSecret {
            name: name.to_string(),
            reason,
        };
        let (&format, sealed) = file.split_first().ok_or(corrupt("the file is empty"))?;
        if format != SECRET_FORMAT {
            return Err(VaultError::UnsupportedVersion {
                what: format!("the sealed secret {name:?}"),
                found: format.into(),
                supported: SECRET_FORMAT.into(),
            });
        }
        if sealed.len() < seal::NONCE_LEN + seal::TAG_LEN {
            return Err(corrupt("the file is truncated"));
        }
        seal::open(&self.dek, sealed, &secret_aad(name))
            .map(Some)
            .ok_or(corrupt("it does not authenticate under this vault's key"))
    }

    /// Removes the secret stored under `name`. Returns whether there was one.
    pub fn delete(&self, name: &str) -> Result<bool, VaultError> {
        check_name(name)?;
        fsio::remove(&self.secrets, &file_name(name))
    }

    /// Whether a secret is stored under `name` (without decrypting it).
    pub fn contains(&self, name: &str) -> Result<bool, VaultError> {
        check_name(name)?;
        let path = self.secrets.join(file_name(name));
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(VaultError::io("inspect", path, e)),
        }
    }

    /// Names of the stored secrets starting with `prefix` (`""` for all), sorted. Temporary
    /// files and files that are not sealed secrets are ignored.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, VaultError> {
        list_names(&self.secrets, prefix)
    }
}

/// A new key from `provider`, checking that a provider of the same kind will open it.
fn created(provider: &dyn KekProvider) -> Result<(Box<dyn Kek>, KekParams), VaultError> {
    let (kek, params) = provider.create()?;
    if params.kind() != provider.kind() {
        return Err(VaultError::InvalidParams(format!(
            "a {} provider produced parameters of kind {}",
            provider.kind(),
            params.kind()
        )));
    }
    Ok((kek, params))
}

fn list_names(secrets: &Path, prefix: &str) -> Result<Vec<String>, VaultError> {
    let entries = fs::read_dir(secrets).map_err(|e| VaultError::io("list", secrets, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| VaultError::io("list", secrets, e))?;
        let file_name = entry.file_name();
        let Some(name) = file_name
            .to_str()
            .filter(|n| !n.starts_with(TMP_PREFIX))
            .and_then(|n| n.strip_suffix(SEALED_EXT))
        else {
            continue;
        };
        if check_name(name).is_err() || !name.starts_with(prefix) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

fn write_header(
    dir: &Path,
    params: &KekParams,
    wrapped: &[u8],
    no_clobber: bool,
) -> Result<(), VaultError> {
    let header = Header {
        format: FORMAT_NAME.to_string(),
        version: HEADER_VERSION,
        kek: params.clone(),
        wrapped_dek: hex::encode(wrapped),
    };
    let mut text = serde_json::to_vec_pretty(&header)
        .map_err(|_| VaultError::Crypto("could not encode the vault header"))?;
    text.push(b'\n');
    fsio::write_atomic(dir, HEADER_FILE, &text, no_clobber)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "wallet-1.share", "A_b.C-9", "x..y", &"n".repeat(128)] {
            check_name(ok).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            ".tmp-abc",
            "..",
            "a/b",
            "../x",
            "a b",
            "é",
            "a\0b",
            "a\\b",
            &"n".repeat(129),
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(matches!(err, VaultError::InvalidName { .. }), "{bad:?}");
            if bad.len() <= MAX_NAME_LEN + 16 {
                assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
            }
        }
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let kek = crate::PassphraseKek::with_params(
            Zeroizing::new("pw".into()),
            crate::Argon2Params {
                m_cost_kib: 8192,
                t_cost: 1,
                p_cost: 1,
            },
        )
        .unwrap();
        let vault = Vault::create(dir.path(), &kek).unwrap();
        let d = format!("{vault:?}");
        assert!(d.contains("<redacted>"), "{d}");
        assert!(!d.contains(&hex::encode(*vault.dek)), "{d}");
        assert!(
            !d.contains(format!("{:?}", &vault.dek[..4]).trim_end_matches(']')),
            "{d}"
        );
    }

    #[test]
    fn aads_differ_by_name_and_purpose() {
        assert_ne!(secret_aad("a"), secret_aad("b"));
        assert_ne!(secret_aad("ab"), secret_aad("a"));
        assert!(secret_aad("x").starts_with(SECRET_AAD_PREFIX));
    }
}
