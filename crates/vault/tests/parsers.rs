//! Seeded property tests: whatever bytes are on disk, reading never panics. Each runs with the
//! passphrase provider and with the PKCS#11 provider on SoftHSM (`pkcs11_…`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::fs;

use common::{Fixture, PassphraseFixture, sealed};
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
    sealed_file_cases(&PassphraseFixture);
}

hsm_test!(
    fn pkcs11_arbitrary_sealed_file_never_panics_get(hsm) {
        sealed_file_cases(&hsm);
    }
);

#[test]
fn arbitrary_header_never_panics_open() {
    header_cases(&PassphraseFixture);
}

hsm_test!(
    fn pkcs11_arbitrary_header_never_panics_open(hsm) {
        header_cases(&hsm);
    }
);

fn sealed_file_cases(fx: &dyn Fixture) {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create(dir.path(), &*fx.provider()).unwrap();
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

fn header_cases(fx: &dyn Fixture) {
    let provider = fx.provider();
    let dir = tempfile::tempdir().unwrap();
    drop(Vault::create(dir.path(), &*provider).unwrap());
    let header = dir.path().join("vault.json");
    let valid = fs::read(&header).unwrap();

    runner(256, 9)
        .run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
            fs::write(&header, &bytes).unwrap();
            prop_assert!(Vault::open(dir.path(), &*provider).is_err());
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
            let _ = Vault::open(dir.path(), &*provider);
            Ok(())
        })
        .unwrap();
}
