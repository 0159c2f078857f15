//! Behaviour of a vault on disk: round trips, tampering, names, atomicity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;

use common::{kek, sealed, snapshot};
use concord_vault::{Kek, KekParams, KekProvider, Vault, VaultError};

const PASS: &str = "correct horse battery staple";

#[test]
fn round_trip_across_reopen() {
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
        let vault = Vault::create(&path, &kek(PASS)).unwrap();
        assert_eq!(vault.kek_kind(), "passphrase");
        for (name, value) in &secrets {
            vault.put(name, value).unwrap();
        }
        vault.put("wallet-2.share", b"overwritten").unwrap();
        vault.put("gone", b"x").unwrap();
        assert!(vault.delete("gone").unwrap());
        assert!(!vault.delete("gone").unwrap());
    }
    let vault = Vault::open(&path, &kek(PASS)).unwrap();
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

#[test]
fn storage_format() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &kek(PASS)).unwrap();
    vault.put("s", b"0123456789").unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("vault.json")).unwrap()).unwrap();
    let keys: Vec<_> = header.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["format", "kek", "version", "wrapped_dek"]);
    assert_eq!(header["format"], "concord-vault");
    assert_eq!(header["version"], 1);
    assert_eq!(header["kek"]["kind"], "passphrase");
    assert_eq!(header["kek"]["salt"].as_str().unwrap().len(), 32);
    assert_eq!(header["kek"]["m_cost_kib"], 8192);
    assert_eq!(header["kek"]["t_cost"], 1);
    assert_eq!(header["kek"]["p_cost"], 1);
    // nonce 24 + key 32 + tag 16, hex.
    assert_eq!(header["wrapped_dek"].as_str().unwrap().len(), 2 * 72);
    let file = fs::read(sealed(dir.path(), "s")).unwrap();
    assert_eq!(file.len(), 1 + 24 + 10 + 16);
    assert_eq!(file[0], 1);
    assert!(!file.windows(10).any(|w| w == b"0123456789"));
}

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
fn wrong_passphrase_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &kek(PASS)).unwrap();
    vault.put("a", b"alpha").unwrap();
    drop(vault);
    // A leftover temporary file must survive a failed open (it is only cleaned once the key
    // is confirmed).
    fs::write(dir.path().join("secrets/.tmp-leftover"), b"half-written").unwrap();
    let before = snapshot(dir.path());
    let err = Vault::open(dir.path(), &kek("wrong")).unwrap_err();
    assert!(matches!(err, VaultError::WrongPassphrase), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the passphrase does not open this vault (or its header was altered)"
    );
    assert_eq!(snapshot(dir.path()), before);
    // The right passphrase opens it and cleans the leftover.
    let vault = Vault::open(dir.path(), &kek(PASS)).unwrap();
    assert!(!dir.path().join("secrets/.tmp-leftover").exists());
    assert_eq!(vault.get("a").unwrap().unwrap().as_slice(), b"alpha");
}

#[test]
fn flipped_byte_is_detected_and_names_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &kek(PASS)).unwrap();
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

#[test]
fn swapped_files_do_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &kek(PASS)).unwrap();
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

#[test]
fn secrets_from_another_vault_do_not_open() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let v1 = Vault::create(one.path(), &kek(PASS)).unwrap();
    let v2 = Vault::create(two.path(), &kek(PASS)).unwrap();
    v1.put("s", b"from one").unwrap();
    fs::copy(sealed(one.path(), "s"), sealed(two.path(), "s")).unwrap();
    assert!(matches!(v2.get("s"), Err(VaultError::CorruptSecret { .. })));
}

#[test]
fn tampered_header_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &kek(PASS)).unwrap();
    vault.put("a", b"alpha").unwrap();
    drop(vault);
    let header_path = dir.path().join("vault.json");
    let original = fs::read_to_string(&header_path).unwrap();
    let value: serde_json::Value = serde_json::from_str(&original).unwrap();
    let salt = value["kek"]["salt"].as_str().unwrap().to_string();
    let wrapped = value["wrapped_dek"].as_str().unwrap().to_string();
    let flip_hex = |s: &str, at: usize| {
        let mut c: Vec<char> = s.chars().collect();
        c[at] = if c[at] == '0' { '1' } else { '0' };
        c.into_iter().collect::<String>()
    };
    let cases: Vec<(&str, String)> = vec![
        ("salt", original.replace(&salt, &flip_hex(&salt, 5))),
        (
            "wrapped dek start",
            original.replace(&wrapped, &flip_hex(&wrapped, 0)),
        ),
        (
            "wrapped dek middle",
            original.replace(&wrapped, &flip_hex(&wrapped, 70)),
        ),
        (
            "wrapped dek end",
            original.replace(&wrapped, &flip_hex(&wrapped, 143)),
        ),
        (
            "wrapped dek short",
            original.replace(&wrapped, &wrapped[..142]),
        ),
        (
            "memory cost",
            original.replace("\"m_cost_kib\": 8192", "\"m_cost_kib\": 8193"),
        ),
        ("passes", original.replace("\"t_cost\": 1", "\"t_cost\": 2")),
        (
            "absurd memory",
            original.replace("\"m_cost_kib\": 8192", "\"m_cost_kib\": 4294967295"),
        ),
        (
            "version",
            original.replace("\"version\": 1", "\"version\": 2"),
        ),
        ("format", original.replace("\"concord-vault\"", "\"other\"")),
        ("kind", original.replace("\"passphrase\"", "\"pkcs11\"")),
        ("unknown field", original.replacen('{', "{\"extra\": 1,", 1)),
        (
            "not hex",
            original.replace(&wrapped, &format!("zz{}", &wrapped[2..])),
        ),
        ("truncated", original[..original.len() / 2].to_string()),
        ("empty", String::new()),
    ];
    for (what, text) in cases {
        assert_ne!(text, original, "{what}: mutation did not apply");
        fs::write(&header_path, &text).unwrap();
        let before = snapshot(dir.path());
        let err = Vault::open(dir.path(), &kek(PASS)).unwrap_err();
        match what {
            "version" => {
                assert!(
                    matches!(err, VaultError::UnsupportedVersion { found: 2, .. }),
                    "{err:?}"
                );
                assert!(err.to_string().contains("vault.json"), "{err}");
            }
            "salt" | "wrapped dek start" | "wrapped dek middle" | "wrapped dek end"
            | "wrapped dek short" | "memory cost" | "passes" => {
                assert!(
                    matches!(err, VaultError::WrongPassphrase),
                    "{what}: {err:?}"
                )
            }
            "absurd memory" => assert!(matches!(err, VaultError::InvalidParams(_)), "{err:?}"),
            _ => {
                assert!(
                    matches!(err, VaultError::CorruptHeader { .. }),
                    "{what}: {err:?}"
                );
                assert!(err.to_string().contains("vault.json"), "{err}");
            }
        }
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{what}: open changed the disk"
        );
    }
    fs::write(&header_path, &original).unwrap();
    let vault = Vault::open(dir.path(), &kek(PASS)).unwrap();
    assert_eq!(vault.get("a").unwrap().unwrap().as_slice(), b"alpha");
}

#[test]
fn bad_names_are_refused_by_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &kek(PASS)).unwrap();
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

#[test]
fn create_refuses_an_existing_vault() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &kek(PASS)).unwrap();
    vault.put("a", b"alpha").unwrap();
    drop(vault);
    let before = snapshot(dir.path());
    let err = Vault::create(dir.path(), &kek("another")).unwrap_err();
    assert!(matches!(err, VaultError::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
    // Sealed secrets without a header (a lost header) are not silently orphaned either.
    fs::remove_file(dir.path().join("vault.json")).unwrap();
    assert!(matches!(
        Vault::create(dir.path(), &kek(PASS)),
        Err(VaultError::AlreadyExists { .. })
    ));
}

#[test]
fn open_without_a_vault_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = Vault::open(dir.path().join("nope"), &kek(PASS)).unwrap_err();
    assert!(matches!(err, VaultError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn no_temporary_files_are_left_and_leftovers_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &kek(PASS)).unwrap();
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
    let _vault = Vault::open(dir.path(), &kek(PASS)).unwrap();
    assert!(!dir.path().join("secrets/.tmp-Ab12Cd34Ef56").exists());
    assert!(!dir.path().join(".tmp-Zz99Yy88Xx77").exists());
    assert!(
        dir.path().join("secrets/notes.txt").exists(),
        "only temp files are removed"
    );
}

#[test]
fn concurrent_writers_never_expose_a_partial_value() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &kek(PASS)).unwrap();
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

#[test]
fn rekey_changes_the_passphrase_and_keeps_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut vault = Vault::create(dir.path(), &kek(PASS)).unwrap();
    vault.put("a", b"alpha").unwrap();
    let sealed_before = fs::read(sealed(dir.path(), "a")).unwrap();
    vault.rekey(&kek("new passphrase")).unwrap();
    assert_eq!(fs::read(sealed(dir.path(), "a")).unwrap(), sealed_before);
    drop(vault);
    assert!(matches!(
        Vault::open(dir.path(), &kek(PASS)),
        Err(VaultError::WrongPassphrase)
    ));
    let vault = Vault::open(dir.path(), &kek("new passphrase")).unwrap();
    assert_eq!(vault.get("a").unwrap().unwrap().as_slice(), b"alpha");
}

/// A stand-in for a future provider kind (an HSM).
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

#[test]
fn provider_kind_must_match() {
    let dir = tempfile::tempdir().unwrap();
    drop(Vault::create(dir.path(), &kek(PASS)).unwrap());
    let err = Vault::open(dir.path(), &OtherProvider).unwrap_err();
    assert!(
        matches!(
            err,
            VaultError::KekMismatch {
                expected: "test-hsm",
                found: "passphrase"
            }
        ),
        "{err:?}"
    );
    // A provider whose parameters another kind would have to open is refused at creation.
    let other = tempfile::tempdir().unwrap();
    let err = Vault::create(other.path(), &OtherProvider).unwrap_err();
    assert!(matches!(err, VaultError::InvalidParams(_)), "{err:?}");
    assert!(!other.path().join("vault.json").exists());
}

#[test]
fn debug_output_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let provider = kek("hunter2-passphrase");
    let vault = Vault::create(dir.path(), &provider).unwrap();
    let (key, _) = provider.create().unwrap();
    for d in [
        format!("{vault:?}"),
        format!("{provider:?}"),
        format!("{key:?}"),
    ] {
        assert!(d.contains("<redacted>"), "{d}");
        assert!(!d.contains("hunter2"), "{d}");
    }
}

#[test]
fn put_new_never_replaces_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path().join("vault"), &kek(PASS)).unwrap();
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
