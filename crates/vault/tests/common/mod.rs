//! Shared helpers for the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use concord_vault::{Argon2Params, KekProvider, PassphraseKek, VaultError, Zeroizing};

#[macro_use]
pub mod hsm;

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

/// A key-encryption-key provider kind the shared vault suite runs on: the passphrase provider
/// ([`PassphraseFixture`]) and the PKCS#11 provider on SoftHSM ([`hsm::Hsm`]).
pub trait Fixture {
    /// The kind recorded in headers.
    fn kind(&self) -> &'static str;
    /// The provider with the right credentials.
    fn provider(&self) -> Box<dyn KekProvider>;
    /// A provider of the same kind with other credentials (another passphrase; the other
    /// token).
    fn other_provider(&self) -> Box<dyn KekProvider>;
    /// Whether `err` is what opening with [`Fixture::other_provider`] gives.
    fn is_other_credential_error(&self, err: &VaultError) -> bool;
    /// Whether `err` is the provider's "this key does not unwrap" error.
    fn is_wrong_key(&self, err: &VaultError) -> bool;
    /// The secret the provider was made from (passphrase, PIN): never in Debug output.
    fn secret(&self) -> &'static str;
    /// Length of the wrapped data key in bytes.
    fn wrapped_len(&self) -> usize;
    /// Checks the provider-specific part of a header's `kek` object.
    fn check_header_kek(&self, kek: &serde_json::Value);
    /// Provider-specific header tamperings: (what, altered header text, expected error).
    fn header_tamperings(&self, header: &str) -> Vec<Tampering>;
}

/// One altered header and the error its opening must give.
pub struct Tampering {
    /// What was altered.
    pub what: String,
    /// The altered header.
    pub text: String,
    /// Whether the error is the expected one.
    pub expect: Box<dyn Fn(&VaultError) -> bool>,
}

impl Tampering {
    pub fn new(
        what: &str,
        text: String,
        expect: impl Fn(&VaultError) -> bool + 'static,
    ) -> Tampering {
        Tampering {
            what: what.to_string(),
            text,
            expect: Box::new(expect),
        }
    }
}

/// Flips one hex digit of `s` at `at`.
pub fn flip_hex(s: &str, at: usize) -> String {
    let mut c: Vec<char> = s.chars().collect();
    c[at] = if c[at] == '0' { '1' } else { '0' };
    c.into_iter().collect()
}

/// The passphrase provider, with cheap Argon2 parameters.
pub struct PassphraseFixture;

/// The passphrase of [`PassphraseFixture::provider`].
pub const PASS: &str = "correct horse battery staple";

impl Fixture for PassphraseFixture {
    fn kind(&self) -> &'static str {
        "passphrase"
    }
    fn provider(&self) -> Box<dyn KekProvider> {
        Box::new(kek(PASS))
    }
    fn other_provider(&self) -> Box<dyn KekProvider> {
        Box::new(kek("another passphrase"))
    }
    fn is_other_credential_error(&self, err: &VaultError) -> bool {
        matches!(err, VaultError::WrongPassphrase)
            && err.to_string()
                == "the passphrase does not open this vault (or its header was altered)"
    }
    fn is_wrong_key(&self, err: &VaultError) -> bool {
        matches!(err, VaultError::WrongPassphrase)
    }
    fn secret(&self) -> &'static str {
        PASS
    }
    fn wrapped_len(&self) -> usize {
        24 + 32 + 16
    }
    fn check_header_kek(&self, kek: &serde_json::Value) {
        assert_eq!(kek["salt"].as_str().unwrap().len(), 32);
        assert_eq!(kek["m_cost_kib"], 8192);
        assert_eq!(kek["t_cost"], 1);
        assert_eq!(kek["p_cost"], 1);
    }
    fn header_tamperings(&self, header: &str) -> Vec<Tampering> {
        let value: serde_json::Value = serde_json::from_str(header).unwrap();
        let salt = value["kek"]["salt"].as_str().unwrap().to_string();
        let wrong = |e: &VaultError| matches!(e, VaultError::WrongPassphrase);
        vec![
            Tampering::new("salt", header.replace(&salt, &flip_hex(&salt, 5)), wrong),
            Tampering::new(
                "memory cost",
                header.replace("\"m_cost_kib\": 8192", "\"m_cost_kib\": 8193"),
                wrong,
            ),
            Tampering::new(
                "passes",
                header.replace("\"t_cost\": 1", "\"t_cost\": 2"),
                wrong,
            ),
            Tampering::new(
                "absurd memory",
                header.replace("\"m_cost_kib\": 8192", "\"m_cost_kib\": 4294967295"),
                |e| matches!(e, VaultError::InvalidParams(_)),
            ),
            Tampering::new(
                "kind",
                header.replace("\"passphrase\"", "\"pkcs11\""),
                |e| matches!(e, VaultError::CorruptHeader { .. }),
            ),
        ]
    }
}

impl Fixture for hsm::Hsm {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }
    fn provider(&self) -> Box<dyn KekProvider> {
        Box::new(self.kek())
    }
    fn other_provider(&self) -> Box<dyn KekProvider> {
        Box::new(self.other_kek())
    }
    fn is_other_credential_error(&self, err: &VaultError) -> bool {
        matches!(err, VaultError::TokenMismatch { expected, found }
            if expected == hsm::OTHER_TOKEN && found == hsm::TOKEN)
    }
    fn is_wrong_key(&self, err: &VaultError) -> bool {
        matches!(err, VaultError::WrongHsmKey)
    }
    fn secret(&self) -> &'static str {
        hsm::PIN
    }
    fn wrapped_len(&self) -> usize {
        12 + 32 + 16
    }
    fn check_header_kek(&self, kek: &serde_json::Value) {
        let keys: Vec<_> = kek.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["key_id", "key_label", "kind", "token_label"]);
        assert_eq!(kek["token_label"], hsm::TOKEN);
        let id = kek["key_id"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(
            kek["key_label"].as_str().unwrap(),
            format!("concord-vault-kek-{id}")
        );
    }
    fn header_tamperings(&self, header: &str) -> Vec<Tampering> {
        let value: serde_json::Value = serde_json::from_str(header).unwrap();
        let id = value["kek"]["key_id"].as_str().unwrap().to_string();
        let label = value["kek"]["key_label"].as_str().unwrap().to_string();
        let not_found = |e: &VaultError| matches!(e, VaultError::HsmKeyNotFound { .. });
        vec![
            // The label contains the id: change only the id field.
            Tampering::new(
                "key id",
                header.replace(
                    &format!("\"key_id\": \"{id}\""),
                    &format!("\"key_id\": \"{}\"", flip_hex(&id, 3)),
                ),
                not_found,
            ),
            Tampering::new(
                "key label",
                header.replace(&format!("\"{label}\""), &format!("\"{label}x\"")),
                not_found,
            ),
            Tampering::new(
                "token label",
                header.replace(
                    &format!("\"token_label\": \"{}\"", hsm::TOKEN),
                    &format!("\"token_label\": \"{}\"", hsm::OTHER_TOKEN),
                ),
                |e| matches!(e, VaultError::TokenMismatch { .. }),
            ),
            Tampering::new(
                "short key id",
                header.replace(
                    &format!("\"key_id\": \"{id}\""),
                    &format!("\"key_id\": \"{}\"", &id[..30]),
                ),
                |e| matches!(e, VaultError::CorruptHeader { .. }),
            ),
            Tampering::new(
                "kind",
                header.replace("\"pkcs11\"", "\"passphrase\""),
                |e| matches!(e, VaultError::CorruptHeader { .. }),
            ),
        ]
    }
}
