//! Seeded property tests: whatever bytes are on disk, reading never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;

use common::{kek, sealed};
use concord_vault::Vault;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn runner(cases: u32, seed: u8) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

#[test]
fn arbitrary_sealed_file_never_panics_get() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &kek("pw")).unwrap();
    vault.put("target", b"a secret value").unwrap();
    let path = sealed(dir.path(), "target");
    let valid = fs::read(&path).unwrap();

    runner(512, 7)
        .run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
            fs::write(&path, &bytes).unwrap();
            // Any outcome but a panic; random bytes must not authenticate.
            prop_assert!(vault.get("target").is_err());
            Ok(())
        })
        .unwrap();

    // Small mutations of a valid file: flips, truncations, extensions.
    let len = valid.len();
    runner(512, 8)
        .run(
            &(0..len, any::<u8>(), 0..len + 8, any::<bool>()),
            |(at, x, cut, extend)| {
                let mut bytes = valid.clone();
                bytes[at] ^= x;
                if extend {
                    bytes.resize(cut.max(len), x);
                } else {
                    bytes.truncate(cut);
                }
                fs::write(&path, &bytes).unwrap();
                let res = vault.get("target");
                if bytes == valid {
                    let got = res.unwrap().unwrap();
                    prop_assert_eq!(got.as_slice(), b"a secret value");
                } else {
                    prop_assert!(res.is_err());
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn arbitrary_header_never_panics_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Vault::create(dir.path(), &kek("pw")).unwrap());
    let header = dir.path().join("vault.json");
    let valid = fs::read(&header).unwrap();

    runner(256, 9)
        .run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
            fs::write(&header, &bytes).unwrap();
            prop_assert!(Vault::open(dir.path(), &kek("pw")).is_err());
            Ok(())
        })
        .unwrap();

    // One changed byte of a valid header (some still parse and run the key derivation).
    runner(64, 10)
        .run(&(0..valid.len(), 1..=255u8), |(at, x)| {
            let mut bytes = valid.clone();
            bytes[at] ^= x;
            fs::write(&header, &bytes).unwrap();
            // Whitespace or key-order changes may still open; nothing may panic.
            let _ = Vault::open(dir.path(), &kek("pw"));
            Ok(())
        })
        .unwrap();
}
