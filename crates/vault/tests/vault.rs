//! Behaviour of a vault on disk: round trips, tampering, names, atomicity.
//!
//! Every case runs once per key-encryption-key provider: `passphrase::<case>` with the
//! passphrase provider, `pkcs11::<case>` with the PKCS#11 provider on a SoftHSM token of the
//! test's own (in a child process: see `common/hsm.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::fs;

use common::{Fixture, flip_hex, kek, sealed, snapshot};
use concord_vault::{Kek, KekParams, KekProvider, Vault, VaultError};

/// The cases, each taking the provider it runs with.
mod cases {
    use super::*;

    pub fn round_trip_across_reopen(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let secrets: Vec<(&str, Vec<u8>)> = vec![
            ("identity.key", vec![1u8; 32]),
            ("wallet-1.share", (0..=255u8).collect()),
            ("wallet-2.share", b"second".to_vec()),
            ("empty", Vec::new()),
            ("big", vec![0xa5; 100_000]),
        ];
        {
            let vault = Vault::create(&path, &*fx.provider()).unwrap();
            assert_eq!(vault.kek_kind(), fx.kind());
            for (name, value) in &secrets {
                vault.put(name, value).unwrap();
            }
            vault.put("wallet-2.share", b"overwritten").unwrap();
            vault.put("gone", b"x").unwrap();
            assert!(vault.delete("gone").unwrap());
            assert!(!vault.delete("gone").unwrap());
        }
        let vault = Vault::open(&path, &*fx.provider()).unwrap();
        assert_eq!(vault.kek_kind(), fx.kind());
        for (name, value) in &secrets {
            let expected: &[u8] = if *name == "wallet-2.share" {
                b"overwritten"
            } else {
                value
            };
            assert_eq!(
                vault.get(name).unwrap().unwrap().as_slice(),
                expected,
                "{name}"
            );
            assert!(vault.contains(name).unwrap());
        }
        assert!(vault.get("gone").unwrap().is_none());
        assert!(vault.get("never-written").unwrap().is_none());
        assert!(!vault.contains("gone").unwrap());
        assert_eq!(
            vault.list("").unwrap(),
            vec![
                "big",
                "empty",
                "identity.key",
                "wallet-1.share",
                "wallet-2.share"
            ]
        );
        assert_eq!(
            vault.list("wallet-").unwrap(),
            vec!["wallet-1.share", "wallet-2.share"]
        );
        assert!(vault.list("nothing").unwrap().is_empty());
    }

    pub fn storage_format(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(dir.path(), &*fx.provider()).unwrap();
        vault.put("s", b"0123456789").unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("vault.json")).unwrap()).unwrap();
        let keys: Vec<_> = header.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["format", "kek", "version", "wrapped_dek"]);
        assert_eq!(header["format"], "concord-vault");
        assert_eq!(header["version"], 1);
        assert_eq!(header["kek"]["kind"], fx.kind());
        fx.check_header_kek(&header["kek"]);
        assert_eq!(
            header["wrapped_dek"].as_str().unwrap().len(),
            2 * fx.wrapped_len()
        );
        let file = fs::read(sealed(dir.path(), "s")).unwrap();
        assert_eq!(file.len(), 1 + 24 + 10 + 16);
        assert_eq!(file[0], 1);
        assert!(!file.windows(10).any(|w| w == b"0123456789"));
    }

    pub fn other_credentials_change_nothing(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(dir.path(), &*fx.provider()).unwrap();
        vault.put("a", b"alpha").unwrap();
        drop(vault);
        // A leftover temporary file must survive a failed open (it is only cleaned once the
        // key is confirmed).
        fs::write(dir.path().join("secrets/.tmp-leftover"), b"half-written").unwrap();
        let before = snapshot(dir.path());
        let err = Vault::open(dir.path(), &*fx.other_provider()).unwrap_err();
        assert!(fx.is_other_credential_error(&err), "{err:?}: {err}");
        assert_eq!(snapshot(dir.path()), before);
        // The right credentials open it and clean the leftover.
        let vault = Vault::open(dir.path(), &*fx.provider()).unwrap();
        assert!(!dir.path().join("secrets/.tmp-leftover").exists());
        assert_eq!(vault.get("a").unwrap().unwrap().as_slice(), b"alpha");
    }

    pub fn flipped_byte_is_detected_and_names_the_secret(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(dir.path(), &*fx.provider()).unwrap();
        vault.put("wallet-7.share", b"the share bytes").unwrap();
        vault.put("other", b"untouched").unwrap();
        let path = sealed(dir.path(), "wallet-7.share");
        let original = fs::read(&path).unwrap();
        for i in 0..original.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = original.clone();
                bad[i] ^= bit;
                fs::write(&path, &bad).unwrap();
                let before = snapshot(dir.path());
                let err = vault.get("wallet-7.share").unwrap_err();
                assert!(
                    err.to_string().contains("\"wallet-7.share\""),
                    "byte {i}: {err}"
                );
                if i > 0 {
                    assert!(
                        matches!(err, VaultError::CorruptSecret { .. }),
                        "byte {i}: {err:?}"
                    );
                } else {
                    assert!(
                        matches!(err, VaultError::UnsupportedVersion { .. }),
                        "{err:?}"
                    );
                }
                assert_eq!(snapshot(dir.path()), before, "get changed the disk");
            }
        }
        for len in [0, 1, 24, 40, original.len() - 1] {
            fs::write(&path, &original[..len]).unwrap();
            let err = vault.get("wallet-7.share").unwrap_err();
            assert!(
                matches!(err, VaultError::CorruptSecret { .. }),
                "len {len}: {err:?}"
            );
            assert!(err.to_string().contains("wallet-7.share"), "{err}");
        }
        let mut longer = original.clone();
        longer.push(0);
        fs::write(&path, &longer).unwrap();
        assert!(vault.get("wallet-7.share").is_err());
        assert_eq!(
            vault.get("other").unwrap().unwrap().as_slice(),
            b"untouched"
        );
        fs::write(&path, &original).unwrap();
        assert_eq!(
            vault.get("wallet-7.share").unwrap().unwrap().as_slice(),
            b"the share bytes"
        );
    }

    pub fn swapped_files_do_not_open(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(dir.path(), &*fx.provider()).unwrap();
        vault.put("a", b"value of a").unwrap();
        vault.put("b", b"value of b").unwrap();
        let (pa, pb, tmp) = (
            sealed(dir.path(), "a"),
            sealed(dir.path(), "b"),
            dir.path().join("swap"),
        );
        fs::rename(&pa, &tmp).unwrap();
        fs::rename(&pb, &pa).unwrap();
        fs::rename(&tmp, &pb).unwrap();
        for name in ["a", "b"] {
            let err = vault.get(name).unwrap_err();
            assert!(
                matches!(&err, VaultError::CorruptSecret { name: n, .. } if n == name),
                "{err:?}"
            );
        }
        // A copy under a new name does not open either.
        fs::copy(&pa, sealed(dir.path(), "c")).unwrap();
        assert!(vault.get("c").is_err());
    }

    pub fn secrets_from_another_vault_do_not_open(fx: &dyn Fixture) {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let v1 = Vault::create(one.path(), &*fx.provider()).unwrap();
        let v2 = Vault::create(two.path(), &*fx.provider()).unwrap();
        v1.put("s", b"from one").unwrap();
        fs::copy(sealed(one.path(), "s"), sealed(two.path(), "s")).unwrap();
        assert!(matches!(v2.get("s"), Err(VaultError::CorruptSecret { .. })));
    }

    pub fn tampered_header_is_refused_and_left_alone(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(dir.path(), &*fx.provider()).unwrap();
        vault.put("a", b"alpha").unwrap();
        drop(vault);
        let header_path = dir.path().join("vault.json");
        let original = fs::read_to_string(&header_path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&original).unwrap();
        let wrapped = value["wrapped_dek"].as_str().unwrap().to_string();
        let n = wrapped.len();
        assert_eq!(n, 2 * fx.wrapped_len());
        let corrupt = |e: &VaultError| {
            matches!(e, VaultError::CorruptHeader { .. }) && e.to_string().contains("vault.json")
        };
        let mut cases = vec![
            (
                "wrapped dek start".to_string(),
                original.replace(&wrapped, &flip_hex(&wrapped, 0)),
                None,
            ),
            (
                "wrapped dek middle".into(),
                original.replace(&wrapped, &flip_hex(&wrapped, n / 2)),
                None,
            ),
            (
                "wrapped dek end".into(),
                original.replace(&wrapped, &flip_hex(&wrapped, n - 1)),
                None,
            ),
            (
                "wrapped dek short".into(),
                original.replace(&wrapped, &wrapped[..n - 2]),
                None,
            ),
            (
                "wrapped dek long".into(),
                original.replace(&wrapped, &format!("{wrapped}00")),
                None,
            ),
            (
                "version".into(),
                original.replace("\"version\": 1", "\"version\": 2"),
                Some(Box::new(|e: &VaultError| {
                    matches!(e, VaultError::UnsupportedVersion { found: 2, .. })
                        && e.to_string().contains("vault.json")
                }) as Box<dyn Fn(&VaultError) -> bool>),
            ),
            (
                "format".into(),
                original.replace("\"concord-vault\"", "\"other\""),
                Some(Box::new(corrupt)),
            ),
            (
                "unknown field".into(),
                original.replacen('{', "{\"extra\": 1,", 1),
                Some(Box::new(corrupt)),
            ),
            (
                "unknown kek field".into(),
                original.replacen("\"kind\"", "\"extra\": 1, \"kind\"", 1),
                Some(Box::new(corrupt)),
            ),
            (
                "not hex".into(),
                original.replace(&wrapped, &format!("zz{}", &wrapped[2..])),
                Some(Box::new(corrupt)),
            ),
            (
                "truncated".into(),
                original[..original.len() / 2].to_string(),
                Some(Box::new(corrupt)),
            ),
            ("empty".into(), String::new(), Some(Box::new(corrupt))),
        ];
        for t in fx.header_tamperings(&original) {
            cases.push((t.what, t.text, Some(t.expect)));
        }
        for (what, text, expect) in cases {
            assert_ne!(text, original, "{what}: mutation did not apply");
            fs::write(&header_path, &text).unwrap();
            let before = snapshot(dir.path());
            let err = Vault::open(dir.path(), &*fx.provider()).unwrap_err();
            match expect {
                // Unless said otherwise: the key does not unwrap.
                None => assert!(fx.is_wrong_key(&err), "{what}: {err:?}"),
                Some(expect) => assert!(expect(&err), "{what}: {err:?}"),
            }
            assert_eq!(
                snapshot(dir.path()),
                before,
                "{what}: open changed the disk"
            );
        }
        fs::write(&header_path, &original).unwrap();
        let vault = Vault::open(dir.path(), &*fx.provider()).unwrap();
        assert_eq!(vault.get("a").unwrap().unwrap().as_slice(), b"alpha");
    }

    pub fn bad_names_are_refused_by_every_operation(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(dir.path(), &*fx.provider()).unwrap();
        let long = "x".repeat(129);
        for bad in [
            "",
            "a/b",
            "../escape",
            "..",
            ".hidden",
            "sp ace",
            "tab\t",
            "ünï",
            long.as_str(),
        ] {
            let errs = [
                vault.put(bad, b"x").unwrap_err(),
                vault.get(bad).unwrap_err(),
                vault.delete(bad).unwrap_err(),
                vault.contains(bad).unwrap_err(),
            ];
            for err in errs {
                assert!(
                    matches!(err, VaultError::InvalidName { .. }),
                    "{bad:?}: {err:?}"
                );
                assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
            }
        }
        vault.put(&"x".repeat(128), b"ok").unwrap();
        assert_eq!(vault.list("").unwrap(), vec!["x".repeat(128)]);
        assert!(!dir.path().join("escape.sealed").exists());
    }

    pub fn create_refuses_an_existing_vault(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(dir.path(), &*fx.provider()).unwrap();
        vault.put("a", b"alpha").unwrap();
        drop(vault);
        let before = snapshot(dir.path());
        let err = Vault::create(dir.path(), &*fx.other_provider()).unwrap_err();
        assert!(matches!(err, VaultError::AlreadyExists { .. }), "{err:?}");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(snapshot(dir.path()), before);
        // Sealed secrets without a header (a lost header) are not silently orphaned either.
        fs::remove_file(dir.path().join("vault.json")).unwrap();
        assert!(matches!(
            Vault::create(dir.path(), &*fx.provider()),
            Err(VaultError::AlreadyExists { .. })
        ));
    }

    pub fn open_without_a_vault_is_not_found(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let err = Vault::open(dir.path().join("nope"), &*fx.provider()).unwrap_err();
        assert!(matches!(err, VaultError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    pub fn no_temporary_files_are_left_and_leftovers_are_ignored(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(dir.path(), &*fx.provider()).unwrap();
        for i in 0..20 {
            vault.put(&format!("s{}", i % 5), &[i as u8; 40]).unwrap();
        }
        vault.delete("s4").unwrap();
        let mut top: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["secrets", "vault.json"]);
        let mut inner: Vec<_> = fs::read_dir(dir.path().join("secrets"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        inner.sort();
        assert_eq!(inner, ["s0.sealed", "s1.sealed", "s2.sealed", "s3.sealed"]);
        // Simulated crash leftovers: ignored by list, removed on open.
        fs::write(dir.path().join("secrets/.tmp-Ab12Cd34Ef56"), b"partial").unwrap();
        fs::write(dir.path().join(".tmp-Zz99Yy88Xx77"), b"partial header").unwrap();
        fs::write(dir.path().join("secrets/notes.txt"), b"stray").unwrap();
        assert_eq!(vault.list("").unwrap(), ["s0", "s1", "s2", "s3"]);
        drop(vault);
        let _vault = Vault::open(dir.path(), &*fx.provider()).unwrap();
        assert!(!dir.path().join("secrets/.tmp-Ab12Cd34Ef56").exists());
        assert!(!dir.path().join(".tmp-Zz99Yy88Xx77").exists());
        assert!(
            dir.path().join("secrets/notes.txt").exists(),
            "only temp files are removed"
        );
    }

    pub fn concurrent_writers_never_expose_a_partial_value(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(dir.path(), &*fx.provider()).unwrap();
        vault.put("shared", &[0u8; 4096]).unwrap();
        std::thread::scope(|s| {
            for t in 1..=4u8 {
                let vault = &vault;
                s.spawn(move || {
                    for _ in 0..25 {
                        vault.put("shared", &[t; 4096]).unwrap();
                        vault.put(&format!("own-{t}"), &[t; 16]).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..100 {
                    let v = vault.get("shared").unwrap().unwrap();
                    assert!(v.iter().all(|b| *b == v[0]), "torn value");
                }
            });
        });
        assert_eq!(vault.list("own-").unwrap().len(), 4);
        assert!(vault.list("").unwrap().iter().all(|n| !n.starts_with('.')));
    }

    pub fn rekey_replaces_the_key_and_keeps_secrets(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let mut vault = Vault::create(dir.path(), &*fx.provider()).unwrap();
        vault.put("a", b"alpha").unwrap();
        let sealed_before = fs::read(sealed(dir.path(), "a")).unwrap();
        let header_before = fs::read(dir.path().join("vault.json")).unwrap();
        // Rekey with a new key of the same provider (a new salt; a new key in the token).
        vault.rekey(&*fx.provider()).unwrap();
        assert_eq!(vault.kek_kind(), fx.kind());
        assert_eq!(fs::read(sealed(dir.path(), "a")).unwrap(), sealed_before);
        let header_after = fs::read(dir.path().join("vault.json")).unwrap();
        assert_ne!(header_before, header_after);
        drop(vault);
        let vault = Vault::open(dir.path(), &*fx.provider()).unwrap();
        assert_eq!(vault.get("a").unwrap().unwrap().as_slice(), b"alpha");
        // Rekeying re-wraps the same data key and destroys nothing: a copy of the old header
        // still opens with the old key (the passphrase; the old key still in the token).
        drop(vault);
        fs::write(dir.path().join("vault.json"), &header_before).unwrap();
        let vault = Vault::open(dir.path(), &*fx.provider()).unwrap();
        assert_eq!(vault.get("a").unwrap().unwrap().as_slice(), b"alpha");
    }

    pub fn provider_kind_must_match(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        drop(Vault::create(dir.path(), &*fx.provider()).unwrap());
        let err = Vault::open(dir.path(), &OtherProvider).unwrap_err();
        assert!(
            matches!(
                err,
                VaultError::KekMismatch {
                    expected: "test-hsm",
                    found
                } if found == fx.kind()
            ),
            "{err:?}"
        );
        // A provider whose parameters another kind would have to open is refused at creation.
        let other = tempfile::tempdir().unwrap();
        let err = Vault::create(other.path(), &OtherProvider).unwrap_err();
        assert!(matches!(err, VaultError::InvalidParams(_)), "{err:?}");
        assert!(!other.path().join("vault.json").exists());
    }

    pub fn debug_output_is_redacted(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let provider = fx.provider();
        let vault = Vault::create(dir.path(), &*provider).unwrap();
        let (key, _) = provider.create().unwrap();
        for d in [
            format!("{vault:?}"),
            format!("{provider:?}"),
            format!("{key:?}"),
        ] {
            assert!(d.contains("<redacted"), "{d}");
            assert!(!d.contains(fx.secret()), "{d}");
        }
    }

    pub fn put_new_never_replaces_a_secret(fx: &dyn Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::create(dir.path().join("vault"), &*fx.provider()).unwrap();
        assert!(vault.put_new("key", b"first").unwrap());
        assert!(!vault.put_new("key", b"second").unwrap());
        assert_eq!(vault.get("key").unwrap().unwrap().as_slice(), b"first");
        // No temporary file is left behind by the refused write.
        let left: Vec<_> = fs::read_dir(dir.path().join("vault").join("secrets"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    pub fn wrapped_key_is_bound_to_its_aad_and_fresh_each_time(fx: &dyn Fixture) {
        let provider = fx.provider();
        let (kek, params) = provider.create().unwrap();
        let dek = [0x5au8; 32];
        let one = kek.wrap(&dek, b"aad one").unwrap();
        let two = kek.wrap(&dek, b"aad one").unwrap();
        assert_eq!(one.len(), fx.wrapped_len());
        assert_ne!(one, two, "a fresh nonce/IV per wrap");
        assert!(
            !one.windows(32).any(|w| w == dek),
            "the key is not in clear"
        );
        let again = provider.open(&params).unwrap();
        assert_eq!(*again.unwrap_key(&one, b"aad one").unwrap(), dek);
        assert_eq!(*again.unwrap_key(&two, b"aad one").unwrap(), dek);
        let err = again.unwrap_key(&one, b"aad two").unwrap_err();
        assert!(fx.is_wrong_key(&err), "{err:?}");
        for i in 0..one.len() {
            let mut bad = one.clone();
            bad[i] ^= 0x10;
            let err = again.unwrap_key(&bad, b"aad one").unwrap_err();
            assert!(fx.is_wrong_key(&err), "byte {i}: {err:?}");
        }
        for len in [0, 1, one.len() - 1] {
            let err = again.unwrap_key(&one[..len], b"aad one").unwrap_err();
            assert!(fx.is_wrong_key(&err), "len {len}: {err:?}");
        }
        // Another key of the same provider does not unwrap it.
        let (other, _) = provider.create().unwrap();
        let err = other.unwrap_key(&one, b"aad one").unwrap_err();
        assert!(fx.is_wrong_key(&err), "{err:?}");
    }
}

/// A stand-in for another provider kind.
#[derive(Debug)]
struct OtherProvider;

impl KekProvider for OtherProvider {
    fn kind(&self) -> &'static str {
        "test-hsm"
    }
    fn create(&self) -> Result<(Box<dyn Kek>, KekParams), VaultError> {
        common::kek("x").create()
    }
    fn open(&self, _: &KekParams) -> Result<Box<dyn Kek>, VaultError> {
        unreachable!("the vault checks the kind before opening")
    }
}

/// `passphrase::<case>` and `pkcs11::<case>` for each case.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod passphrase {
            $(
                #[test]
                fn $case() {
                    super::cases::$case(&crate::common::PassphraseFixture);
                }
            )*
        }
        mod pkcs11 {
            $(
                hsm_test!(fn $case(hsm) {
                    super::cases::$case(&hsm);
                });
            )*
        }
    };
}

suite!(
    round_trip_across_reopen,
    storage_format,
    other_credentials_change_nothing,
    flipped_byte_is_detected_and_names_the_secret,
    swapped_files_do_not_open,
    secrets_from_another_vault_do_not_open,
    tampered_header_is_refused_and_left_alone,
    bad_names_are_refused_by_every_operation,
    create_refuses_an_existing_vault,
    open_without_a_vault_is_not_found,
    no_temporary_files_are_left_and_leftovers_are_ignored,
    concurrent_writers_never_expose_a_partial_value,
    rekey_replaces_the_key_and_keeps_secrets,
    provider_kind_must_match,
    debug_output_is_redacted,
    put_new_never_replaces_a_secret,
    wrapped_key_is_bound_to_its_aad_and_fresh_each_time,
);

// Passphrase-only cases.

#[test]
fn opens_a_vault_written_by_format_version_1() {
    // tests/fixtures/v1 was written by the first version of this crate (passphrase
    // "concord-fixture", Argon2id m=8 MiB t=1 p=1). Copy it: opening cleans temp files.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("secrets")).unwrap();
    for rel in ["vault.json", "secrets/fixture.sealed"] {
        fs::copy(src.join(rel), dir.path().join(rel)).unwrap();
    }
    let vault = Vault::open(dir.path(), &kek("concord-fixture")).unwrap();
    assert_eq!(vault.list("").unwrap(), vec!["fixture"]);
    assert_eq!(
        vault.get("fixture").unwrap().unwrap().as_slice(),
        b"sealed by concord-vault format 1"
    );
}

#[test]
fn rekey_changes_the_passphrase_and_keeps_secrets() {
    let pass = common::PASS;
    let dir = tempfile::tempdir().unwrap();
    let mut vault = Vault::create(dir.path(), &kek(pass)).unwrap();
    vault.put("a", b"alpha").unwrap();
    let sealed_before = fs::read(sealed(dir.path(), "a")).unwrap();
    vault.rekey(&kek("new passphrase")).unwrap();
    assert_eq!(fs::read(sealed(dir.path(), "a")).unwrap(), sealed_before);
    drop(vault);
    assert!(matches!(
        Vault::open(dir.path(), &kek(pass)),
        Err(VaultError::WrongPassphrase)
    ));
    let vault = Vault::open(dir.path(), &kek("new passphrase")).unwrap();
    assert_eq!(vault.get("a").unwrap().unwrap().as_slice(), b"alpha");
}
