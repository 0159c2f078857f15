#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Sealed MPC messages: round trips, every kind of tampering, replays, the format snapshot.

use concord_wire::seal::{self, HEADER_LEN, OVERHEAD, SIGNATURE_LEN, SealedHeader};
use concord_wire::{IdentityKey, SealingKey, WireError};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const SESSION: [u8; 32] = [0x5e; 32];
const OTHER_SESSION: [u8; 32] = [0xa5; 32];

struct Party {
    identity: IdentityKey,
    sealing: SealingKey,
}

/// Parties 1, 2 and 3 of a session, keys from a fixed seed.
fn parties() -> (Party, Party, Party, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let party = |rng: &mut ChaCha20Rng| Party {
        identity: IdentityKey::generate(rng),
        sealing: SealingKey::generate(rng),
    };
    let (a, b, c) = (party(&mut rng), party(&mut rng), party(&mut rng));
    (a, b, c, rng)
}

/// Party 1 seals `msg` to party 2.
fn sealed_1_to_2(msg: &[u8]) -> (Vec<u8>, Party, Party, Party) {
    let (a, b, c, mut rng) = parties();
    let sealed = seal::seal(
        &a.identity,
        1,
        &b.sealing.public(),
        2,
        &SESSION,
        msg,
        &mut rng,
    )
    .unwrap();
    (sealed, a, b, c)
}

fn open_as_2(
    b: &Party,
    a: &Party,
    sealed: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, WireError> {
    seal::open(&b.sealing, 2, &a.identity.public(), 1, &SESSION, sealed)
}

#[test]
fn round_trip() {
    for msg in [&b""[..], b"round 1 commitment", &[7u8; 10_000]] {
        let (sealed, a, b, _) = sealed_1_to_2(msg);
        assert_eq!(sealed.len(), msg.len() + OVERHEAD);
        assert_eq!(open_as_2(&b, &a, &sealed).unwrap().as_slice(), msg);
    }
}

#[test]
fn sealing_twice_gives_different_bytes() {
    let (a, b, _, mut rng) = parties();
    let s1 = seal::seal(
        &a.identity,
        1,
        &b.sealing.public(),
        2,
        &SESSION,
        b"m",
        &mut rng,
    )
    .unwrap();
    let s2 = seal::seal(
        &a.identity,
        1,
        &b.sealing.public(),
        2,
        &SESSION,
        b"m",
        &mut rng,
    )
    .unwrap();
    assert_ne!(s1, s2);
    assert_eq!(open_as_2(&b, &a, &s2).unwrap().as_slice(), b"m");
}

#[test]
fn the_layout_is_the_documented_one() {
    let msg = b"layout";
    let (sealed, a, b, _) = sealed_1_to_2(msg);
    assert_eq!(sealed[0], 1);
    assert_eq!(&sealed[1..33], &SESSION);
    assert_eq!(&sealed[33..35], &1u16.to_be_bytes());
    assert_eq!(&sealed[35..37], &2u16.to_be_bytes());
    let ct_len = u32::from_be_bytes(sealed[69..73].try_into().unwrap()) as usize;
    assert_eq!(ct_len, msg.len() + 16);
    assert_eq!(sealed.len(), HEADER_LEN + ct_len + SIGNATURE_LEN);
    // The signature covers the domain tag and every preceding byte.
    let (signed, sig) = sealed.split_at(sealed.len() - SIGNATURE_LEN);
    let mut tagged = b"concord/mpc/v1/signature".to_vec();
    tagged.extend_from_slice(signed);
    a.identity.public().verify(&tagged, sig).unwrap();
    assert_eq!(
        SealedHeader::peek(&sealed),
        Some(SealedHeader {
            session: SESSION,
            sender: 1,
            recipient: 2
        })
    );
    let _ = b;
}

#[test]
fn hpke_parameters_are_the_documented_ones() {
    // Decrypt independently with the hpke crate, from the documented info and AAD.
    use hpke::{Deserializable, Kem, OpModeR};
    type K = hpke::kem::X25519HkdfSha256;
    let (sealed, _a, b, _) = sealed_1_to_2(b"independent");
    let mut info = b"concord/mpc/v1".to_vec();
    info.extend_from_slice(&SESSION);
    info.extend_from_slice(&1u16.to_be_bytes());
    info.extend_from_slice(&2u16.to_be_bytes());
    let sk = <K as Kem>::PrivateKey::from_bytes(b.sealing.to_bytes().as_ref()).unwrap();
    let enc = <K as Kem>::EncappedKey::from_bytes(&sealed[37..69]).unwrap();
    let ct = &sealed[HEADER_LEN..sealed.len() - SIGNATURE_LEN];
    let pt = hpke::single_shot_open::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, K>(
        &OpModeR::Base,
        &sk,
        &enc,
        &info,
        ct,
        &sealed[..HEADER_LEN],
    )
    .unwrap();
    assert_eq!(pt, b"independent");
}

/// Seeded RNG, fixed keys: the sealed bytes of this message never change. If this fails, the
/// wire format changed: bump the version instead.
#[test]
fn snapshot_of_a_sealed_message() {
    let (sealed, a, b, _) = sealed_1_to_2(b"snapshot");
    assert_eq!(hex::encode(&sealed), SNAPSHOT, "sealed format changed");
    assert_eq!(
        open_as_2(&b, &a, &hex::decode(SNAPSHOT).unwrap())
            .unwrap()
            .as_slice(),
        b"snapshot"
    );
}

const SNAPSHOT: &str = "015e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e00010002494711435d56a1f249a43bd996fd41073875a33454609fb1b680ec4ff0c1452000000018cb5983db3d44ee6630b9b8c3dbeed6b2d3d40b17aca747d00a007c2949b1f6280e094a9d4b1a5ce0d243fea1acd990dc371e27efce3d05330616d24178d4f4a635accf63729358fa802b885d691d7de7065441e4bb02d709";

#[test]
fn any_altered_byte_is_refused_naming_the_sender() {
    let (sealed, a, b, _) = sealed_1_to_2(b"do not touch");
    for i in 0..sealed.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = sealed.clone();
            bad[i] ^= flip;
            let err = open_as_2(&b, &a, &bad).unwrap_err();
            assert_eq!(err.blamed(), Some(1), "byte {i}: {err}");
            let expected = match i {
                0 => {
                    matches!(err, WireError::UnsupportedVersion { sender: 1, found, .. } if found == 1 ^ flip)
                }
                1..=32 => matches!(err, WireError::WrongSession { sender: 1 }),
                33..=34 => matches!(err, WireError::WrongSender { sender: 1, .. }),
                35..=36 => matches!(
                    err,
                    WireError::WrongRecipient {
                        sender: 1,
                        expected: 2,
                        ..
                    }
                ),
                69..=72 => matches!(err, WireError::Malformed { sender: 1, .. }),
                _ => matches!(err, WireError::Tampered { sender: 1 }),
            };
            assert!(expected, "byte {i}: unexpected {err:?}");
        }
    }
}

#[test]
fn wrong_recipient_key_cannot_decrypt() {
    let (sealed, a, b, c) = sealed_1_to_2(b"for party 2 only");
    // Party 3 holds the message and claims to be party 2: the signature checks, HPKE fails.
    let err = seal::open(&c.sealing, 2, &a.identity.public(), 1, &SESSION, &sealed).unwrap_err();
    assert!(
        matches!(err, WireError::Undecryptable { sender: 1 }),
        "{err}"
    );
    let _ = b;
}

#[test]
fn replay_into_another_session_or_to_another_recipient_is_refused() {
    let (sealed, a, b, c) = sealed_1_to_2(b"once");
    let err = seal::open(
        &b.sealing,
        2,
        &a.identity.public(),
        1,
        &OTHER_SESSION,
        &sealed,
    )
    .unwrap_err();
    assert!(
        matches!(err, WireError::WrongSession { sender: 1 }),
        "{err}"
    );
    let err = seal::open(&c.sealing, 3, &a.identity.public(), 1, &SESSION, &sealed).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::WrongRecipient {
                sender: 1,
                recipient: 2,
                expected: 3
            }
        ),
        "{err}"
    );
    // Delivered as if from another sender.
    let err = seal::open(&b.sealing, 2, &c.identity.public(), 3, &SESSION, &sealed).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::WrongSender {
                sender: 3,
                claimed: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn rewriting_the_header_and_resigning_needs_the_senders_key() {
    // The relay rewrites session and recipient to replay the message elsewhere, and signs
    // with its own key: the pinned sender's key refuses the signature.
    let (sealed, a, b, c) = sealed_1_to_2(b"once");
    let mut bad = sealed[..sealed.len() - SIGNATURE_LEN].to_vec();
    bad[1..33].copy_from_slice(&OTHER_SESSION);
    let mut tagged = b"concord/mpc/v1/signature".to_vec();
    tagged.extend_from_slice(&bad);
    bad.extend_from_slice(&c.identity.sign(&tagged));
    let err = seal::open(&b.sealing, 2, &a.identity.public(), 1, &OTHER_SESSION, &bad).unwrap_err();
    assert!(matches!(err, WireError::Tampered { sender: 1 }), "{err}");
}

#[test]
fn signed_by_another_identity_than_the_pinned_sender_is_refused() {
    let (a, b, c, mut rng) = parties();
    // Party 3 seals to party 2 but claims index 1.
    let sealed = seal::seal(
        &c.identity,
        1,
        &b.sealing.public(),
        2,
        &SESSION,
        b"forged",
        &mut rng,
    )
    .unwrap();
    let err = open_as_2(&b, &a, &sealed).unwrap_err();
    assert!(matches!(err, WireError::Tampered { sender: 1 }), "{err}");
}

#[test]
fn truncated_or_extended_messages_are_malformed() {
    let (sealed, a, b, _) = sealed_1_to_2(b"whole");
    for len in 0..sealed.len() {
        let err = open_as_2(&b, &a, &sealed[..len]).unwrap_err();
        assert!(
            matches!(err, WireError::Malformed { sender: 1, .. }),
            "length {len}: {err:?}"
        );
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(matches!(
        open_as_2(&b, &a, &longer),
        Err(WireError::Malformed { sender: 1, .. })
    ));
}

#[test]
fn sealing_to_a_low_order_key_fails_cleanly() {
    let (a, _, _, mut rng) = parties();
    let zero = concord_wire::SealingPublicKey::from_bytes(&[0u8; 32]);
    let err = seal::seal(&a.identity, 1, &zero, 2, &SESSION, b"x", &mut rng).unwrap_err();
    assert!(
        matches!(err, WireError::Sealing { recipient: 2, .. }),
        "{err}"
    );
}

#[test]
fn arbitrary_bytes_never_panic_open() {
    let (sealed, a, b, _) = sealed_1_to_2(b"seed material");
    let config = Config {
        cases: 2_000,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[9u8; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = prop_oneof![
        // Pure noise of any length around the interesting sizes.
        proptest::collection::vec(any::<u8>(), 0..400),
        // A real header (so the checks get past step 2) with a random tail.
        proptest::collection::vec(any::<u8>(), 0..300).prop_map({
            let header = sealed[..HEADER_LEN].to_vec();
            move |tail| [header.clone(), tail].concat()
        }),
        // The real message with random byte edits.
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8).prop_map({
            let sealed = sealed.clone();
            move |edits| {
                let mut m = sealed.clone();
                for (i, v) in edits {
                    let at = i.index(m.len());
                    m[at] = v;
                }
                m
            }
        }),
    ];
    runner
        .run(&strategy, |bytes| {
            match open_as_2(&b, &a, &bytes) {
                Ok(pt) => prop_assert_eq!(pt.as_slice(), b"seed material"),
                Err(e) => prop_assert_eq!(e.blamed(), Some(1)),
            }
            Ok(())
        })
        .unwrap();
}
