//! The passphrase key-encryption-key provider: Argon2id over an operator's passphrase.
//!
//! Passphrases come from a file or an environment variable ([`PassphraseSource`]), never from
//! command-line arguments: those are visible to every user of the machine (`ps`,
//! `/proc/<pid>/cmdline`) and end up in shell histories.

use std::fmt;
use std::path::PathBuf;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::VaultError;
use crate::kek::{Kek, KekParams, KekProvider};
use crate::seal::{self, NONCE_LEN, TAG_LEN, fill_random};

/// The kind recorded in vault headers for passphrase-derived keys.
pub(crate) const KIND: &str = "passphrase";

/// Salt length, in bytes.
const SALT_LEN: usize = 16;

/// Where an operator's passphrase is read from. In a TOML configuration:
/// `passphrase = { file = "/etc/concord/vault.pass" }` or `passphrase = { env = "CONCORD_VAULT_PASS" }`.
///
/// There is deliberately no variant for a command-line argument: arguments are readable by
/// every local user and recorded in shell histories. Prefer a file readable only by the
/// module's user; an environment variable stays readable in `/proc/<pid>/environ` by that user
/// for the life of the process.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PassphraseSource {
    /// A file holding the passphrase; one trailing newline (`\n` or `\r\n`) is stripped.
    File(PathBuf),
    /// The name of an environment variable holding the passphrase (taken as is).
    Env(String),
}

impl fmt::Display for PassphraseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassphraseSource::File(p) => write!(f, "file {}", p.display()),
            PassphraseSource::Env(v) => write!(f, "environment variable {v}"),
        }
    }
}

impl PassphraseSource {
    /// Reads the passphrase. Fails, naming the file or variable, when it is missing,
    /// unreadable, not UTF-8, or empty.
    pub fn read(&self) -> Result<Zeroizing<String>, VaultError> {
        self.read_secret("passphrase", |from, reason| VaultError::Passphrase {
            from,
            reason,
        })
    }

    /// Reads a PKCS#11 PIN, with the same rules as [`read`](Self::read) (one trailing newline
    /// of a file stripped, a variable taken as is, empty refused); errors are
    /// [`VaultError::Pin`].
    pub fn read_pin(&self) -> Result<Zeroizing<String>, VaultError> {
        self.read_secret("PIN", |from, reason| VaultError::Pin { from, reason })
    }

    fn read_secret(
        &self,
        what: &str,
        error: impl Fn(String, String) -> VaultError,
    ) -> Result<Zeroizing<String>, VaultError> {
        let fail = |reason: &str| error(self.to_string(), reason.to_string());
        let pass = match self {
            PassphraseSource::File(path) => {
                let mut bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        fail("the file does not exist")
                    } else {
                        fail(&e.to_string())
                    }
                })?);
                let mut pass = match String::from_utf8(std::mem::take(&mut *bytes)) {
                    Ok(s) => Zeroizing::new(s),
                    Err(e) => {
                        e.into_bytes().zeroize();
                        return Err(fail("the file is not valid UTF-8"));
                    }
                };
                if pass.ends_with('\n') {
                    pass.pop();
                    if pass.ends_with('\r') {
                        pass.pop();
                    }
                }
                pass
            }
            PassphraseSource::Env(name) => match std::env::var(name) {
                Ok(s) => Zeroizing::new(s),
                Err(std::env::VarError::NotPresent) => {
                    return Err(fail("the variable is not set"));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(fail("the variable is not valid UTF-8"));
                }
            },
        };
        if pass.is_empty() {
            return Err(fail(&format!("the {what} is empty")));
        }
        Ok(pass)
    }
}

/// Argon2id cost parameters. [`Default`] is 64 MiB, 3 passes, 1 lane.
///
/// Accepted ranges (also enforced on the values read back from a vault header, so an altered
/// header cannot make `open` allocate absurd memory): memory 8 MiB to 4 GiB, 1 to 64 passes,
/// 1 to 16 lanes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Argon2Params {
    /// Memory cost, in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Parallelism (lanes).
    pub p_cost: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Argon2Params {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl Argon2Params {
    /// Smallest accepted memory cost (8 MiB).
    pub const MIN_M_COST_KIB: u32 = 8 * 1024;
    /// Largest accepted memory cost (4 GiB).
    pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    /// Largest accepted number of passes.
    pub const MAX_T_COST: u32 = 64;
    /// Largest accepted parallelism.
    pub const MAX_P_COST: u32 = 16;

    /// Checks the ranges and builds the argon2 crate's parameters (32-byte output).
    fn checked(&self) -> Result<Params, VaultError> {
        let bad = |m: String| Err(VaultError::InvalidParams(m));
        if !(Self::MIN_M_COST_KIB..=Self::MAX_M_COST_KIB).contains(&self.m_cost_kib) {
            return bad(format!(
                "Argon2 memory cost {} KiB is outside {}..={} KiB",
                self.m_cost_kib,
                Self::MIN_M_COST_KIB,
                Self::MAX_M_COST_KIB
            ));
        }
        if !(1..=Self::MAX_T_COST).contains(&self.t_cost) {
            return bad(format!(
                "Argon2 pass count {} is outside 1..={}",
                self.t_cost,
                Self::MAX_T_COST
            ));
        }
        if !(1..=Self::MAX_P_COST).contains(&self.p_cost) {
            return bad(format!(
                "Argon2 parallelism {} is outside 1..={}",
                self.p_cost,
                Self::MAX_P_COST
            ));
        }
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| VaultError::InvalidParams(format!("Argon2 rejected the parameters: {e}")))
    }
}

/// The passphrase [`KekProvider`]: derives the key-encryption key with Argon2id from a
/// passphrase and a random 16-byte salt, and wraps data keys with XChaCha20-Poly1305.
///
/// The cost parameters given at construction are used by [`KekProvider::create`] and recorded
/// in the vault header; [`KekProvider::open`] uses the header's parameters, so a vault opens
/// whatever the current defaults are.
pub struct PassphraseKek {
    passphrase: Zeroizing<String>,
    params: Argon2Params,
}

impl fmt::Debug for PassphraseKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassphraseKek")
            .field("passphrase", &"<redacted>")
            .field("params", &self.params)
            .finish()
    }
}

impl PassphraseKek {
    /// A provider for `passphrase` with the default cost parameters. Fails on an empty
    /// passphrase.
    pub fn new(passphrase: Zeroizing<String>) -> Result<Self, VaultError> {
        Self::with_params(passphrase, Argon2Params::default())
    }

    /// A provider for `passphrase` creating vaults with explicit cost parameters.
    pub fn with_params(
        passphrase: Zeroizing<String>,
        params: Argon2Params,
    ) -> Result<Self, VaultError> {
        if passphrase.is_empty() {
            return Err(VaultError::Passphrase {
                from: "the caller".into(),
                reason: "the passphrase is empty".into(),
            });
        }
        params.checked()?;
        Ok(PassphraseKek { passphrase, params })
    }

    /// A provider reading its passphrase from `source`, with the default cost parameters.
    pub fn from_source(source: &PassphraseSource) -> Result<Self, VaultError> {
        Self::new(source.read()?)
    }

    /// The cost parameters new vaults are created with.
    pub fn params(&self) -> Argon2Params {
        self.params
    }

    fn derive(
        &self,
        salt: &[u8; SALT_LEN],
        params: Argon2Params,
    ) -> Result<Box<dyn Kek>, VaultError> {
        let params = params.checked()?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        // Own the work memory so it is wiped afterwards: it is derived from the passphrase.
        let mut blocks = Zeroizing::new(vec![Block::default(); params.block_count()]);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into_with_memory(
                self.passphrase.as_bytes(),
                salt,
                &mut *key,
                &mut blocks[..],
            )
            .map_err(|e| VaultError::InvalidParams(format!("Argon2 failed: {e}")))?;
        Ok(Box::new(DerivedKek { key }))
    }
}

impl KekProvider for PassphraseKek {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn create(&self) -> Result<(Box<dyn Kek>, KekParams), VaultError> {
        let mut salt = [0u8; SALT_LEN];
        fill_random(&mut salt)?;
        let kek = self.derive(&salt, self.params)?;
        Ok((
            kek,
            KekParams::Passphrase {
                salt,
                m_cost_kib: self.params.m_cost_kib,
                t_cost: self.params.t_cost,
                p_cost: self.params.p_cost,
            },
        ))
    }

    fn open(&self, params: &KekParams) -> Result<Box<dyn Kek>, VaultError> {
        match params {
            KekParams::Passphrase {
                salt,
                m_cost_kib,
                t_cost,
                p_cost,
            } => self.derive(
                salt,
                Argon2Params {
                    m_cost_kib: *m_cost_kib,
                    t_cost: *t_cost,
                    p_cost: *p_cost,
                },
            ),
            other => Err(VaultError::KekMismatch {
                expected: KIND,
                found: other.kind(),
            }),
        }
    }
}

/// A key derived from a passphrase. Wiped on drop.
struct DerivedKek {
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for DerivedKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassphraseDerivedKek")
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Length of a wrapped data key: nonce, 32-byte key, tag.
const WRAPPED_LEN: usize = NONCE_LEN + 32 + TAG_LEN;

impl Kek for DerivedKek {
    fn wrap(&self, dek: &[u8; 32], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
        seal::seal(&self.key, dek, aad)
    }

    fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        if wrapped.len() != WRAPPED_LEN {
            return Err(VaultError::WrongPassphrase);
        }
        let plain = seal::open(&self.key, wrapped, aad).ok_or(VaultError::WrongPassphrase)?;
        let mut dek = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(VaultError::WrongPassphrase);
        }
        dek.copy_from_slice(&plain);
        Ok(dek)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Params {
        Argon2Params {
            m_cost_kib: 8 * 1024,
            t_cost: 1,
            p_cost: 1,
        }
    }

    fn provider(p: &str) -> PassphraseKek {
        PassphraseKek::with_params(Zeroizing::new(p.to_string()), cheap()).unwrap()
    }

    #[test]
    fn wrap_unwrap_with_reopened_key() {
        let prov = provider("correct horse");
        let (kek, params) = prov.create().unwrap();
        let dek = [42u8; 32];
        let wrapped = kek.wrap(&dek, b"aad").unwrap();
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        let again = prov.open(&params).unwrap();
        assert_eq!(*again.unwrap_key(&wrapped, b"aad").unwrap(), dek);
        assert!(matches!(
            again.unwrap_key(&wrapped, b"other"),
            Err(VaultError::WrongPassphrase)
        ));
        let wrong = provider("battery staple").open(&params).unwrap();
        assert!(matches!(
            wrong.unwrap_key(&wrapped, b"aad"),
            Err(VaultError::WrongPassphrase)
        ));
    }

    #[test]
    fn params_are_recorded_and_bounded() {
        let prov = provider("x");
        let (_, params) = prov.create().unwrap();
        match &params {
            KekParams::Passphrase {
                m_cost_kib,
                t_cost,
                p_cost,
                ..
            } => assert_eq!((*m_cost_kib, *t_cost, *p_cost), (8192, 1, 1)),
            other => panic!("{other:?}"),
        }
        assert_eq!(Argon2Params::default().m_cost_kib, 65536);
        assert_eq!(Argon2Params::default().t_cost, 3);
        for bad in [
            Argon2Params {
                m_cost_kib: 1024,
                ..cheap()
            },
            Argon2Params {
                m_cost_kib: u32::MAX,
                ..cheap()
            },
            Argon2Params {
                t_cost: 0,
                ..cheap()
            },
            Argon2Params {
                p_cost: 0,
                ..cheap()
            },
            Argon2Params {
                p_cost: 17,
                ..cheap()
            },
        ] {
            assert!(matches!(
                PassphraseKek::with_params(Zeroizing::new("x".into()), bad),
                Err(VaultError::InvalidParams(_))
            ));
        }
        // A header asking for absurd memory is refused before allocating.
        let huge = KekParams::Passphrase {
            salt: [0; 16],
            m_cost_kib: u32::MAX,
            t_cost: 1,
            p_cost: 1,
        };
        assert!(matches!(
            prov.open(&huge),
            Err(VaultError::InvalidParams(_))
        ));
    }

    #[test]
    fn empty_passphrase_is_refused() {
        let err = PassphraseKek::new(Zeroizing::new(String::new())).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn debug_is_redacted() {
        let prov = provider("hunter2-secret");
        let d = format!("{prov:?}");
        assert!(d.contains("<redacted>") && !d.contains("hunter2"), "{d}");
        let (kek, _) = prov.create().unwrap();
        let d = format!("{kek:?}");
        assert!(d.contains("<redacted>"), "{d}");
    }

    #[test]
    fn params_serialize_with_kind_tag() {
        let p = KekParams::Passphrase {
            salt: [0xab; 16],
            m_cost_kib: 65536,
            t_cost: 3,
            p_cost: 1,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"passphrase","salt":"abababababababababababababababab","m_cost_kib":65536,"t_cost":3,"p_cost":1}"#
        );
        assert_eq!(serde_json::from_str::<KekParams>(&json).unwrap(), p);
        assert!(serde_json::from_str::<KekParams>(&json.replace("\"t_cost\"", "\"x\"")).is_err());
        assert!(serde_json::from_str::<KekParams>(&json.replace("abab\"", "ab\"")).is_err());
    }
}
