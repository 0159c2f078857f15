//! Format snapshots: stored objects and protocol messages written by an earlier build must
//! still load (and stored objects re-encode to the same bytes). Regenerate deliberately with
//! the `gen_snapshots` example when a format changes, and bump its version.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a panic is a failure report

mod common;

use common::fixtures;
use concord_tss::ecdsa::{AuxMaterial, EcdsaCoreShare, EcdsaPresignature, Primes};
use concord_tss::{Engine, Envelope, KeyShare, Scheme, UncheckedKeyShare, inspect};

fn snapshot(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("snapshots").join(name)).unwrap()
}

#[test]
fn stored_key_shares_still_load_and_reencode_identically() {
    for (file, scheme) in [
        ("ecdsa-key-share.bin", Scheme::EcdsaSecp256k1),
        ("taproot-key-share.bin", Scheme::SchnorrTaproot),
        ("ed25519-key-share.bin", Scheme::Ed25519),
    ] {
        let bytes = snapshot(file);
        let share: KeyShare = UncheckedKeyShare::from_bytes(&bytes)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(share.scheme(), scheme, "{file}");
        assert_eq!(share.index(), 0, "{file}");
        assert_eq!(share.threshold().to_string(), "2-of-2", "{file}");
        assert_eq!(
            &*share.to_bytes(),
            &bytes[..],
            "{file} re-encodes byte for byte"
        );
    }
}

#[test]
fn stored_ecdsa_material_still_loads() {
    let presig = EcdsaPresignature::from_bytes(&snapshot("ecdsa-presignature.bin")).unwrap();
    assert_eq!(presig.signers(), &[0, 1]);
    assert_eq!(&*presig.to_bytes(), &snapshot("ecdsa-presignature.bin")[..]);
    let core = EcdsaCoreShare::from_bytes(&snapshot("ecdsa-core-share.bin")).unwrap();
    assert_eq!(core.index(), 0);
    for n in [2u16, 3, 5] {
        for i in 0..n {
            let path = fixtures().join(format!("INSECURE-aux-n{n}-party{i}.bin"));
            let bytes = std::fs::read(path).unwrap();
            let aux = AuxMaterial::from_bytes(&bytes).unwrap();
            assert_eq!((aux.index(), aux.group_size()), (i, n));
            assert_eq!(&*aux.to_bytes(), &bytes[..]);
        }
    }
    for i in 0..5 {
        let bytes = std::fs::read(fixtures().join(format!("INSECURE-primes-{i}.bin"))).unwrap();
        assert_eq!(&*Primes::from_bytes(&bytes).unwrap().to_bytes(), &bytes[..]);
    }
}

#[test]
fn stored_dkls_share_still_loads_and_reencodes_identically() {
    let bytes = snapshot("dkls-key-share.bin");
    let share: KeyShare = UncheckedKeyShare::from_bytes(&bytes)
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(share.scheme(), Scheme::EcdsaSecp256k1);
    assert_eq!(share.engine(), Engine::Dkls23);
    assert_eq!(share.index(), 0);
    assert_eq!(share.threshold().to_string(), "2-of-2");
    assert_eq!(&*share.to_bytes(), &bytes[..], "re-encodes byte for byte");
}

/// Decodes every recorded message of a snapshot file; returns the protocols seen.
fn decode_recorded(file: &str) -> std::collections::BTreeSet<String> {
    let text = String::from_utf8(snapshot(file)).unwrap();
    let mut protocols = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.splitn(3, '|');
        let (protocol, round, hexed) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let bytes = hex::decode(hexed).unwrap();
        let env = Envelope::decode(&bytes).unwrap();
        assert_eq!(env.encode(), bytes, "envelope re-encodes identically");
        let kind = inspect(&env).unwrap_or_else(|e| panic!("{protocol} round {round}: {e}"));
        assert_eq!(kind.protocol, protocol);
        assert_eq!(kind.round.map(|r| r.to_string()).unwrap_or_default(), round);
        protocols.insert(protocol.to_owned());
    }
    protocols
}

#[test]
fn recorded_messages_of_every_protocol_still_decode() {
    let protocols = decode_recorded("messages.txt");
    assert_eq!(
        protocols.len(),
        8,
        "all eight message kinds are covered: {protocols:?}"
    );
    let protocols = decode_recorded("dkls-messages.txt");
    assert_eq!(
        protocols.into_iter().collect::<Vec<_>>(),
        ["DKLs23 key generation", "DKLs23 signing"],
    );
}

#[test]
fn corrupted_stored_objects_are_clear_errors() {
    let bytes = snapshot("ed25519-key-share.bin");
    let mut wrong_version = bytes.clone();
    wrong_version[3] = 9;
    let err = UncheckedKeyShare::from_bytes(&wrong_version)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unsupported key share format version 9"),
        "{err}"
    );
    let err = UncheckedKeyShare::from_bytes(&snapshot("ecdsa-presignature.bin"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a stored key share"), "{err}");
    let err = UncheckedKeyShare::from_bytes(&bytes[..bytes.len() - 5])
        .unwrap_err()
        .to_string();
    assert!(err.contains("corrupt encoding"), "{err}");
    let err = EcdsaPresignature::from_bytes(&bytes)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a stored presignature"), "{err}");
}
