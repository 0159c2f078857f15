//! FROST Ed25519 and Taproot: DKG, import, signing, published vectors and bad input.
//! Ed25519 signatures are checked with ed25519-dalek `verify_strict`; Taproot signatures
//! with k256's BIP-340 verifier, against an output key computed here by the BIP-341 rule.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a panic is a failure report

mod common;

use std::sync::Arc;

use common::*;
use concord_tss::frost::{self, Ed25519, FrostKeyShare, FrostSuite, Taproot};
use concord_tss::local::Tamper;
use concord_tss::{KeyShare, Scheme, SessionId, Threshold, TssError, UncheckedKeyShare};
use k256::elliptic_curve::PrimeField;
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

async fn dkg<C: FrostSuite>(t: u16, n: u16, label: &str) -> Arc<Vec<FrostKeyShare<C>>> {
    let threshold = Threshold::new(t, n).unwrap();
    let session = SessionId::derive(
        "test-frost-dkg",
        format!("{}-{label}", C::SCHEME).as_bytes(),
    );
    let parties: Vec<u16> = (0..n).collect();
    let shares: Vec<FrostKeyShare<C>> = run(&parties, move |ep| async move {
        let seed = u64::from(ep.index) ^ u64::from_be_bytes(session.0[..8].try_into().unwrap());
        frost::dkg::<C>(
            session,
            ep.index,
            threshold,
            ep.incoming,
            ep.outgoing,
            &mut rng(seed),
        )
        .await
    })
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    for s in &shares {
        assert_eq!(
            s.public_key(),
            shares[0].public_key(),
            "every party derives the same group key"
        );
        assert_eq!(s.untweaked_public_key(), shares[0].untweaked_public_key());
        assert_eq!(s.threshold(), threshold);
    }
    Arc::new(shares)
}

async fn sign<C: FrostSuite>(
    shares: &Arc<Vec<FrostKeyShare<C>>>,
    signers: &[u16],
    msg: &[u8],
) -> Vec<Result<Vec<u8>, TssError>> {
    sign_tampered(shares, signers, msg, |_, _| Tamper::Deliver).await
}

async fn sign_tampered<C: FrostSuite>(
    shares: &Arc<Vec<FrostKeyShare<C>>>,
    signers: &[u16],
    msg: &[u8],
    hook: impl Fn(&mut concord_tss::Envelope, u16) -> Tamper + Send + Sync + 'static,
) -> Vec<Result<Vec<u8>, TssError>> {
    let session = SessionId::derive(
        "test-frost-sign",
        &[msg, format!("{signers:?}").as_bytes()].concat(),
    );
    let signer_list = signers.to_vec();
    let msg = msg.to_vec();
    let shares = shares.clone();
    run_tampered(signers, hook, move |ep| {
        let shares = shares.clone();
        let signer_list = signer_list.clone();
        let msg = msg.clone();
        async move {
            frost::sign(
                session,
                &shares[ep.index as usize],
                &signer_list,
                &msg,
                ep.incoming,
                ep.outgoing,
                &mut rng(9),
            )
            .await
        }
    })
    .await
}

fn verify_ed25519(public_key: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(public_key.try_into().unwrap()).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(sig).unwrap();
    vk.verify_strict(msg, &sig)
        .expect("ed25519-dalek verify_strict accepts the threshold signature");
}

fn tagged_hash(tag: &str, data: &[&[u8]]) -> [u8; 32] {
    let t = Sha256::digest(tag.as_bytes());
    let mut h = Sha256::new();
    h.update(t);
    h.update(t);
    for d in data {
        h.update(d);
    }
    h.finalize().into()
}

/// BIP-341 key-path output key for an internal key with no script tree, computed here with
/// k256 alone: Q = lift_x(x(P)) + int(hash_TapTweak(x(P)))·G.
fn bip341_output_key(internal_sec1: &[u8]) -> [u8; 32] {
    let encoded = k256::EncodedPoint::from_bytes(internal_sec1).unwrap();
    let p = k256::AffinePoint::from_encoded_point(&encoded).unwrap();
    let x: [u8; 32] = p.x().into();
    let p_even = if bool::from(p.y_is_odd()) {
        -k256::ProjectivePoint::from(p)
    } else {
        k256::ProjectivePoint::from(p)
    };
    let t = k256::Scalar::from_repr(tagged_hash("TapTweak", &[&x]).into()).unwrap();
    let q = (p_even + k256::ProjectivePoint::GENERATOR * t).to_affine();
    let qx = q.to_encoded_point(true);
    qx.as_bytes()[1..].try_into().unwrap()
}

fn verify_bip340(xonly: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let Ok(vk) = k256::schnorr::VerifyingKey::from_bytes(xonly) else {
        return false;
    };
    let Ok(sig) = k256::schnorr::Signature::try_from(sig) else {
        return false;
    };
    vk.verify_raw(msg, &sig).is_ok()
}

fn check_taproot(share: &FrostKeyShare<Taproot>, msg: &[u8], sig: &[u8]) {
    let q = bip341_output_key(&share.untweaked_public_key());
    assert_eq!(
        share.public_key(),
        q.to_vec(),
        "group key is the BIP-341 output key of the internal key"
    );
    assert!(
        verify_bip340(&q, msg, sig),
        "k256 BIP-340 verification against the independently tweaked key"
    );
}

#[test]
fn bip340_reference_vectors_through_the_verifier_we_use() {
    let csv = std::fs::read_to_string(fixtures().join("bip340-vectors.csv")).unwrap();
    let mut checked = 0;
    for line in csv.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let pk = hex::decode(cols[2]).unwrap();
        let msg = hex::decode(cols[4]).unwrap();
        let sig = hex::decode(cols[5]).unwrap();
        let expected = cols[6] == "TRUE";
        assert_eq!(
            verify_bip340(&pk, &msg, &sig),
            expected,
            "BIP-340 vector {}",
            cols[0]
        );
        checked += 1;
    }
    assert_eq!(checked, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_threshold_matrix() {
    for (t, n) in [(2, 2), (2, 3), (3, 5)] {
        let shares = dkg::<Ed25519>(t, n, &format!("{t}of{n}")).await;
        let pk = shares[0].public_key();
        let mut sets = subsets(n, t as usize);
        sets.push((0..n).collect()); // more signers than the threshold
        for subset in sets {
            let msg = format!("ed25519 {t}-of-{n} by {subset:?}").into_bytes();
            let sigs: Vec<_> = sign(&shares, &subset, &msg)
                .await
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            assert!(
                sigs.iter().all(|s| s == &sigs[0]),
                "every signer outputs the same signature"
            );
            verify_ed25519(&pk, &msg, &sigs[0]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taproot_threshold_matrix() {
    for (t, n) in [(2, 2), (2, 3), (3, 5)] {
        let shares = dkg::<Taproot>(t, n, &format!("{t}of{n}")).await;
        for subset in subsets(n, t as usize) {
            let msg: [u8; 32] = Sha256::digest(format!("taproot {t}-of-{n} by {subset:?}")).into();
            let sigs: Vec<_> = sign(&shares, &subset, &msg)
                .await
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            assert!(sigs.iter().all(|s| s == &sigs[0]));
            check_taproot(&shares[0], &msg, &sigs[0]);
        }
    }
}

const RFC8032_TEST1_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8032_TEST1_PUBLIC: &str =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC8032_TEST1_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8032_test1_seed_imports_to_its_public_key() {
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(RFC8032_TEST1_SEED, &mut *seed).unwrap();
    let shares =
        frost::import_ed25519_seed(&seed, Threshold::new(2, 3).unwrap(), &mut rng(3)).unwrap();
    drop(seed);
    assert_eq!(hex::encode(shares[0].public_key()), RFC8032_TEST1_PUBLIC);
    // The RFC's own signature of the empty message verifies under the same key.
    verify_ed25519(
        &shares[0].public_key(),
        b"",
        &hex::decode(RFC8032_TEST1_SIG).unwrap(),
    );
    // And so does the threshold signature (nonces differ, so the bytes do too).
    let shares = Arc::new(shares);
    for subset in subsets(3, 2) {
        let sig = sign(&shares, &subset, b"").await.remove(0).unwrap();
        verify_ed25519(&shares[0].public_key(), b"", &sig);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taproot_import_gets_the_same_tweak_as_dkg() {
    // BIP-340 vector 1's key pair.
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(
        "B7E151628AED2A6ABF7158809CF4F3C762E7160F38B4DA56A784D9045190CFEF",
        &mut *secret,
    )
    .unwrap();
    let shares =
        frost::import_taproot_secret_key(&secret, Threshold::new(2, 3).unwrap(), &mut rng(4))
            .unwrap();
    assert_eq!(
        hex::encode_upper(&shares[0].untweaked_public_key()[1..]),
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "the imported key is the internal key"
    );
    let shares = Arc::new(shares);
    let msg: [u8; 32] = Sha256::digest(b"imported taproot").into();
    for subset in subsets(3, 2) {
        let sig = sign(&shares, &subset, &msg).await.remove(0).unwrap();
        check_taproot(&shares[0], &msg, &sig);
    }
    let err = frost::import_taproot_secret_key(
        &Zeroizing::new([0; 32]),
        Threshold::new(2, 3).unwrap(),
        &mut rng(1),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("not a valid non-zero secp256k1 scalar"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_round_trip_and_refuse_another_wallet() {
    let a = dkg::<Ed25519>(2, 3, "store-a").await;
    let b = dkg::<Taproot>(2, 3, "store-b").await;
    let bytes = a[1].to_bytes();
    let back = UncheckedKeyShare::from_bytes(&bytes)
        .unwrap()
        .validate_for(a[1].wallet_id())
        .unwrap();
    assert!(matches!(back, KeyShare::Ed25519(_)));
    assert_eq!(back.scheme(), Scheme::Ed25519);
    assert_eq!(back.index(), 1);
    assert_eq!(&*back.to_bytes(), &*bytes, "stable encoding");
    assert!(format!("{back:?}").contains("<redacted>"));
    let err = UncheckedKeyShare::from_bytes(&bytes)
        .unwrap()
        .validate_for(b[0].wallet_id())
        .unwrap_err();
    assert!(matches!(err, TssError::WrongWallet { .. }), "{err}");
    // A share whose secret does not match its public verifying share fails validation.
    let mut tampered = b[2].to_bytes().to_vec();
    let pos = tampered.len() / 3;
    tampered[pos] ^= 1;
    let result = UncheckedKeyShare::from_bytes(&tampered).and_then(|u| u.validate());
    assert!(result.is_err(), "a tampered share must not validate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_signers_is_a_clear_error() {
    let shares = dkg::<Ed25519>(3, 5, "few").await;
    // Both parties refuse; whichever does first stops the run and the other is reported
    // aborted, so the clear error is looked for in either.
    let results = sign(&shares, &[0, 1], b"m").await;
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    assert!(
        results.iter().any(|r| r
            .as_ref()
            .is_err_and(|e| e.to_string().contains("needs at least 3 signers, got 2"))),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_dkg_and_signing_messages() {
    // Truncated DKG message from party 2.
    let threshold = Threshold::new(2, 3).unwrap();
    let session = SessionId::derive("test-frost-hostile", b"1");
    let r = run_tampered(
        &[0, 1, 2],
        |env, to| {
            if env.sender == 2 && to == 0 {
                env.body.truncate(10);
            }
            Tamper::Deliver
        },
        move |ep| async move {
            frost::dkg::<Ed25519>(
                session,
                ep.index,
                threshold,
                ep.incoming,
                ep.outgoing,
                &mut rng(1),
            )
            .await
        },
    )
    .await;
    let err = r[0].as_ref().unwrap_err();
    assert!(
        matches!(err, TssError::MalformedMessage { party: 2, .. }),
        "{err}"
    );

    // Party 1 equivocates: party 0 gets a different (well-formed) round-1 package than party 2.
    let session = SessionId::derive("test-frost-hostile", b"2");
    let r = run_tampered(
        &[0, 1, 2],
        |env, to| {
            if env.sender == 1 && to == 0 && env.body.get(1) == Some(&1) {
                let id = frost_core::Identifier::<Ed25519>::try_from(2u16).unwrap();
                let (_, other) =
                    frost_core::keys::dkg::part1::<Ed25519, _>(id, 3, 2, rng(77)).unwrap();
                let mut body = vec![env.body[0], 1];
                body.extend_from_slice(&other.serialize().unwrap());
                env.body = body;
            }
            Tamper::Deliver
        },
        move |ep| async move {
            frost::dkg::<Ed25519>(
                session,
                ep.index,
                threshold,
                ep.incoming,
                ep.outgoing,
                &mut rng(2),
            )
            .await
        },
    )
    .await;
    let inconsistent = r
        .iter()
        .filter(|r| matches!(r, Err(TssError::InconsistentBroadcast { round: 1, .. })))
        .count();
    assert!(inconsistent >= 1, "equivocation detected: {r:?}");
    assert!(
        r.iter().all(|r| r.is_err()),
        "no party finishes a DKG with inconsistent broadcasts"
    );

    // In signing, an invalid signature share is blamed on its sender.
    let shares = dkg::<Taproot>(2, 3, "hostile-sign").await;
    let r = sign_tampered(&shares, &[0, 2], &[7u8; 32], |env, to| {
        // Round 2 payload: 32-byte package hash, then the share. Corrupt the share's last byte.
        if env.sender == 2 && to == 0 && env.body.get(1) == Some(&2) {
            let last = env.body.len() - 1;
            env.body[last] ^= 1;
        }
        Tamper::Deliver
    })
    .await;
    let err = r[0].as_ref().unwrap_err();
    assert!(err.blamed() == vec![2], "{err}");
}

#[test]
fn debug_output_is_redacted() {
    let shares = frost::import_ed25519_seed(
        &Zeroizing::new([5; 32]),
        Threshold::new(2, 2).unwrap(),
        &mut rng(1),
    )
    .unwrap();
    let s = format!("{:?}", shares[0]);
    assert!(
        s.contains("<redacted>") && !s.contains("signing_share"),
        "{s}"
    );
}

async fn refresh<C: FrostSuite>(
    shares: &Arc<Vec<FrostKeyShare<C>>>,
    label: &str,
) -> Arc<Vec<FrostKeyShare<C>>> {
    let session = SessionId::derive("test-frost-refresh", label.as_bytes());
    let parties: Vec<u16> = (0..shares.len() as u16).collect();
    let shares = shares.clone();
    Arc::new(
        run(&parties, move |ep| {
            let shares = shares.clone();
            async move {
                let seed = 7 ^ u64::from(ep.index);
                frost::refresh(
                    session,
                    &shares[ep.index as usize],
                    ep.incoming,
                    ep.outgoing,
                    &mut rng(seed),
                )
                .await
            }
        })
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect(),
    )
}

/// Reloaded through the stored format, as a module does.
fn reload<C: FrostSuite>(s: &FrostKeyShare<C>) -> KeyShare {
    UncheckedKeyShare::from_bytes(&s.to_bytes())
        .unwrap()
        .validate()
        .unwrap()
}

/// Every pair of the 2-of-3 `shares` signs for `pk`, checked with an independent verifier.
async fn every_pair_signs(shares: &Arc<Vec<FrostKeyShare<Ed25519>>>, pk: &[u8], label: &str) {
    for subset in subsets(3, 2) {
        let msg = format!("{label} {subset:?}").into_bytes();
        let sig = sign(shares, &subset, &msg).await.remove(0).unwrap();
        verify_ed25519(pk, &msg, &sig);
    }
}

/// Party 0's share `a` and party 1's share `b`, of two sharings of one key, make no
/// signature together.
async fn never_sign_together(a: &FrostKeyShare<Ed25519>, b: &FrostKeyShare<Ed25519>, msg: &[u8]) {
    let copy = |s: &FrostKeyShare<Ed25519>| match reload(s) {
        KeyShare::Ed25519(s) => s,
        other => panic!("{other:?}"),
    };
    let mixed = Arc::new(vec![copy(a), copy(b)]);
    let results = sign(&mixed, &[0, 1], msg).await;
    assert!(results.iter().all(Result::is_err), "{results:?}");
}

/// A refresh (both suites) keeps the group key (Taproot: the tweaked output key and its
/// internal key), changes every share and the public commitment; every subset signs with
/// the new shares, checked by independent verifiers; an old and a new share never make a
/// valid signature together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_keeps_the_key_and_old_and_new_shares_never_sign_together() {
    let old = dkg::<Ed25519>(2, 3, "refresh").await;
    let new = refresh(&old, "ed25519").await;
    let pk = old[0].public_key();
    for (o, m) in old.iter().zip(new.iter()) {
        assert_eq!(m.public_key(), pk);
        assert_ne!(o.to_bytes().as_slice(), m.to_bytes().as_slice());
        assert_ne!(
            frost::public_commitment(o).unwrap(),
            frost::public_commitment(m).unwrap()
        );
        assert!(matches!(reload(m), KeyShare::Ed25519(_)));
    }
    every_pair_signs(&new, &pk, "refreshed").await;
    never_sign_together(&old[0], &new[1], b"mixed").await;

    let old = dkg::<Taproot>(2, 3, "refresh").await;
    let new = refresh(&old, "taproot").await;
    for (o, m) in old.iter().zip(new.iter()) {
        assert_eq!(m.public_key(), o.public_key());
        assert_eq!(m.untweaked_public_key(), o.untweaked_public_key());
        assert_ne!(o.to_bytes().as_slice(), m.to_bytes().as_slice());
    }
    for subset in subsets(3, 2) {
        let msg = [subset[0] as u8; 32];
        let sig = sign(&new, &subset, &msg).await.remove(0).unwrap();
        check_taproot(&new[0], &msg, &sig);
    }
}

/// Repair (both suites): the others rebuild a lost member's share for a new member at its
/// index, then all refresh: same key, every subset including the new member signs, and the
/// lost share does not sign with the new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_share_is_rebuilt_for_a_new_member_and_the_lost_one_is_useless() {
    async fn repaired<C: FrostSuite>(
        shares: &Arc<Vec<FrostKeyShare<C>>>,
        target: u16,
    ) -> Arc<Vec<FrostKeyShare<C>>> {
        let threshold = shares[0].threshold();
        let session = SessionId::derive("test-frost-repair", C::SCHEME.as_str().as_bytes());
        let parties: Vec<u16> = (0..threshold.n()).collect();
        let shares = shares.clone();
        Arc::new(
            run(&parties, move |ep| {
                let shares = shares.clone();
                async move {
                    let role = if ep.index == target {
                        frost::RepairRole::Target
                    } else {
                        frost::RepairRole::Helper(&shares[ep.index as usize])
                    };
                    frost::repair::<C>(
                        session,
                        role,
                        ep.index,
                        target,
                        threshold,
                        ep.incoming,
                        ep.outgoing,
                        &mut rng(u64::from(ep.index) + 99),
                    )
                    .await
                }
            })
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect(),
        )
    }
    let old = dkg::<Ed25519>(2, 3, "repair").await;
    let new = repaired(&old, 1).await;
    let pk = old[0].public_key();
    assert!(new.iter().all(|s| s.public_key() == pk));
    every_pair_signs(&new, &pk, "repaired").await;
    never_sign_together(&new[0], &old[1], b"lost").await;

    let old = dkg::<Taproot>(2, 3, "repair").await;
    let new = repaired(&old, 2).await;
    for (o, m) in old.iter().zip(new.iter()) {
        assert_eq!(m.public_key(), o.public_key());
        assert_eq!(m.untweaked_public_key(), o.untweaked_public_key());
    }
    for subset in subsets(3, 2) {
        let msg = [subset[1] as u8 + 1; 32];
        let sig = sign(&new, &subset, &msg).await.remove(0).unwrap();
        check_taproot(&new[0], &msg, &sig);
    }
}
