//! Threshold ECDSA (cggmp21): aux info, DKG, presign, online and interactive signing,
//! import, and bad input. Every signature is checked with k256, including public-key
//! recovery from the recovery id.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a panic is a failure report

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use concord_tss::ecdsa::{self, EcdsaKeyShare, EcdsaPresignature, RecoverableSignature};
use concord_tss::local::Tamper;
use concord_tss::{KeyShare, SessionId, Threshold, TssError, UncheckedKeyShare};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use zeroize::Zeroizing;

fn digest(label: &str) -> [u8; 32] {
    use sha3::{Digest, Keccak256};
    Keccak256::digest(label.as_bytes()).into()
}

/// Independent check: k256 verifies the prehash and recovers the group key from the recovery id.
fn check_with_k256(public_key: &[u8; 33], digest: &[u8; 32], sig: &RecoverableSignature) {
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).unwrap();
    let s = k256::ecdsa::Signature::from_slice(&sig.to_rs_bytes()).unwrap();
    assert!(s.normalize_s().is_none(), "s must be low");
    vk.verify_prehash(digest, &s)
        .expect("k256 verifies the threshold signature");
    let rid = k256::ecdsa::RecoveryId::from_byte(sig.recovery_id).unwrap();
    let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(digest, &s, rid).unwrap();
    assert_eq!(recovered, vk, "recovery id recovers the group key");
}

async fn keygen(t: u16, n: u16, label: &str) -> Arc<Vec<EcdsaKeyShare>> {
    let threshold = Threshold::new(t, n).unwrap();
    let session = SessionId::derive("test-ecdsa-keygen", label.as_bytes());
    let parties: Vec<u16> = (0..n).collect();
    let shares: Vec<EcdsaKeyShare> = run(&parties, move |ep| async move {
        let aux = aux(n, ep.index);
        let seed = u64::from(ep.index) ^ u64::from_be_bytes(session.0[..8].try_into().unwrap());
        ecdsa::keygen(
            session,
            threshold,
            &aux,
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
    let pk = shares[0].public_key();
    for (i, s) in shares.iter().enumerate() {
        assert_eq!(s.index() as usize, i);
        assert_eq!(s.public_key(), pk, "every party derives the same group key");
        assert_eq!(s.threshold(), threshold);
    }
    Arc::new(shares)
}

async fn sign(
    shares: &Arc<Vec<EcdsaKeyShare>>,
    signers: &[u16],
    msg: [u8; 32],
) -> Vec<Result<RecoverableSignature, TssError>> {
    let session = SessionId::derive(
        "test-ecdsa-sign",
        &[&msg[..], &format!("{signers:?}").into_bytes()].concat(),
    );
    let signer_list = signers.to_vec();
    let shares = shares.clone();
    run(signers, move |ep| {
        let shares = shares.clone();
        let signer_list = signer_list.clone();
        async move {
            ecdsa::sign(
                session,
                &shares[ep.index as usize],
                &signer_list,
                &msg,
                ep.incoming,
                ep.outgoing,
                &mut rng(100 + u64::from(ep.index)),
            )
            .await
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aux_info_protocol_runs_from_fixture_primes() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let session = SessionId::derive("test-aux", b"n2");
    let ev = events.clone();
    let results = run(&[0, 1], move |ep| {
        let ev = ev.clone();
        async move {
            let mut progress = move |e: concord_tss::ProgressEvent| ev.lock().unwrap().push(e);
            ecdsa::generate_aux(
                session,
                ep.index,
                2,
                primes(ep.index),
                ep.incoming,
                ep.outgoing,
                &mut rng(ep.index.into()),
                &mut progress,
            )
            .await
        }
    })
    .await;
    for (i, r) in results.into_iter().enumerate() {
        let aux = r.unwrap();
        assert_eq!(aux.index() as usize, i);
        assert_eq!(aux.group_size(), 2);
        let reloaded = ecdsa::AuxMaterial::from_bytes(&aux.to_bytes()).unwrap();
        assert_eq!(&*reloaded.to_bytes(), &*aux.to_bytes());
        assert!(format!("{aux:?}").contains("<redacted>"));
    }
    let events = events.lock().unwrap();
    assert!(
        events.iter().any(|e| e.total.is_some()),
        "progress reports completion: {events:?}"
    );
    assert!(
        events.len() >= 4,
        "progress reported each round: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_every_signer_subset_signs() {
    let shares = keygen(2, 3, "2of3").await;
    for (k, subset) in subsets(3, 2).into_iter().enumerate() {
        let msg = digest(&format!("2-of-3 subset {k}"));
        let sigs: Vec<_> = sign(&shares, &subset, msg)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        for s in &sigs {
            assert_eq!(s, &sigs[0], "every signer outputs the same signature");
        }
        check_with_k256(&shares[0].public_key(), &msg, &sigs[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_two_signs() {
    let shares = keygen(2, 2, "2of2").await;
    let msg = digest("2-of-2");
    let sig = sign(&shares, &[0, 1], msg).await.remove(0).unwrap();
    check_with_k256(&shares[0].public_key(), &msg, &sig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_five_signs() {
    let shares = keygen(3, 5, "3of5").await;
    for subset in [vec![0, 1, 2], vec![1, 3, 4]] {
        let msg = digest(&format!("3-of-5 {subset:?}"));
        let sig = sign(&shares, &subset, msg).await.remove(0).unwrap();
        check_with_k256(&shares[0].public_key(), &msg, &sig);
    }
}

async fn presign(
    shares: &Arc<Vec<EcdsaKeyShare>>,
    signers: &[u16],
    label: &[u8],
) -> Vec<EcdsaPresignature> {
    let session = SessionId::derive("test-presign", label);
    let sh = shares.clone();
    let sl = signers.to_vec();
    run(signers, move |ep| {
        let sh = sh.clone();
        let sl = sl.clone();
        async move {
            ecdsa::presign(
                session,
                &sh[ep.index as usize],
                &sl,
                ep.incoming,
                ep.outgoing,
                &mut rng(7),
            )
            .await
        }
    })
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presignature_then_online_signing() {
    let shares = keygen(2, 3, "presign").await;
    let signers = vec![0u16, 2];
    let presigs = presign(&shares, &signers, b"1").await;
    assert_eq!(presigs[0].fingerprint(), presigs[1].fingerprint());
    assert_eq!(presigs[0].signers(), &signers[..]);
    assert!(format!("{:?}", presigs[0]).contains("<redacted>"));

    // Presignatures survive storage.
    let stored: Vec<_> = presigs.iter().map(|p| p.to_bytes()).collect();
    drop(presigs);
    let msg = digest("online");
    let pk = shares[0].public_key();
    let stored = Arc::new(stored);
    let st = stored.clone();
    let online = SessionId::derive("test-online", b"1");
    let sigs: Vec<RecoverableSignature> = run(&signers, move |ep| {
        let st = st.clone();
        async move {
            let pos = if ep.index == 0 { 0 } else { 1 };
            let presig = EcdsaPresignature::from_bytes(&st[pos]).unwrap();
            ecdsa::sign_with_presignature(online, presig, &msg, ep.incoming, ep.outgoing).await
        }
    })
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    assert_eq!(sigs[0], sigs[1]);
    check_with_k256(&pk, &msg, &sigs[0]);

    // The non-interactive path the aggregator uses: partials collected, then combined.
    let presigs = presign(&shares, &signers, b"2").await;
    let msg = digest("combined");
    let partials: Vec<_> = presigs.into_iter().map(|p| p.issue_partial(&msg)).collect();
    let sig = ecdsa::combine(&pk, &msg, &signers, &partials).unwrap();
    check_with_k256(&pk, &msg, &sig);
    // A partial for another digest does not combine into a valid signature.
    let err = ecdsa::combine(&pk, &digest("other"), &signers, &partials).unwrap_err();
    assert!(matches!(err, TssError::InvalidSignature { .. }), "{err}");
    // Missing a signer is named.
    let err = ecdsa::combine(&pk, &msg, &signers, &partials[..1]).unwrap_err();
    assert!(
        err.to_string()
            .contains("do not match the presignature's signers"),
        "{err}"
    );
}

/// Anvil's (and Hardhat's) well-known first development account.
const ANVIL_KEY0: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ANVIL_ADDR0: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_key_keeps_its_ethereum_address_and_signs() {
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(ANVIL_KEY0, &mut *secret).unwrap();
    let threshold = Threshold::new(2, 3).unwrap();
    let cores = ecdsa::import_secret_key(&secret, threshold, &mut rng(1)).unwrap();
    drop(secret);
    // Each core share travels sealed to its module; check its stored form round-trips.
    let shares: Vec<EcdsaKeyShare> = cores
        .into_iter()
        .map(|c| {
            let c = ecdsa::EcdsaCoreShare::from_bytes(&c.to_bytes()).unwrap();
            let i = c.index();
            c.complete(&aux(3, i)).unwrap()
        })
        .collect();
    assert_eq!(eth_address(&shares[0].public_key()), ANVIL_ADDR0);
    let shares = Arc::new(shares);
    let msg = digest("imported");
    let sig = sign(&shares, &[1, 2], msg).await.remove(0).unwrap();
    check_with_k256(&shares[0].public_key(), &msg, &sig);
    // Recover the signer's Ethereum address from (r, s, v) alone, as the chain does.
    let s = k256::ecdsa::Signature::from_slice(&sig.to_rs_bytes()).unwrap();
    let rid = k256::ecdsa::RecoveryId::from_byte(sig.recovery_id).unwrap();
    let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(&msg, &s, rid).unwrap();
    assert_eq!(
        eth_address(recovered.to_encoded_point(true).as_bytes()),
        ANVIL_ADDR0
    );
}

#[tokio::test]
async fn import_rejects_invalid_keys() {
    let t = Threshold::new(2, 3).unwrap();
    let zero = Zeroizing::new([0u8; 32]);
    let err = ecdsa::import_secret_key(&zero, t, &mut rng(1)).unwrap_err();
    assert!(err.to_string().contains("zero"), "{err}");
    let too_big = Zeroizing::new([0xffu8; 32]);
    let err = ecdsa::import_secret_key(&too_big, t, &mut rng(1)).unwrap_err();
    assert!(err.to_string().contains("below the group order"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_clear_errors() {
    let shares = keygen(2, 3, "params").await;
    // Every party refuses; whichever refuses first stops the others ("another party
    // failed"), so look for the reason among all of them.
    let results = sign(&shares, &[0, 1, 2], digest("x")).await;
    assert!(results.iter().all(Result::is_err), "{results:?}");
    assert!(
        results.iter().any(|r| r
            .as_ref()
            .is_err_and(|e| e.to_string().contains("exactly 2 signers"))),
        "{results:?}"
    );
    let mut ep = concord_tss::local::LocalNetwork::connect(&[0, 7]).remove(0);
    let err = ecdsa::sign(
        SessionId([0; 32]),
        &shares[0],
        &[0, 7],
        &digest("x"),
        &mut ep.incoming,
        &mut ep.outgoing,
        &mut rng(1),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("signer 7 is not a member"),
        "{err}"
    );
    // Wrong threshold for the group's aux material.
    let th = Threshold::new(2, 5).unwrap();
    let r = run(&[0, 1, 2], move |ep| async move {
        ecdsa::keygen(
            SessionId([0; 32]),
            th,
            &aux(3, ep.index),
            ep.incoming,
            ep.outgoing,
            &mut rng(1),
        )
        .await
    })
    .await;
    let err = r.into_iter().next().unwrap().unwrap_err();
    assert!(
        err.to_string()
            .contains("does not match the signer group's auxiliary material for 3 parties"),
        "{err}"
    );
    // A threshold out of range cannot even be built.
    assert!(Threshold::new(4, 3).is_err());
    // The generic `sign` insists on a 32-byte digest for ECDSA, before any message is sent.
    let share = KeyShare::Ecdsa(reload(&shares[0]));
    let mut ep = concord_tss::local::LocalNetwork::connect(&[0, 1]).remove(0);
    let err = concord_tss::sign(
        &share,
        SessionId([0; 32]),
        &[0, 1],
        b"short",
        &mut ep.incoming,
        &mut ep.outgoing,
        &mut rng(1),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("32-byte digest, got 5 bytes"),
        "{err}"
    );
}

/// Round-trips a share through its stored form (also how tests get a second copy).
fn reload(share: &EcdsaKeyShare) -> EcdsaKeyShare {
    let bytes = share.to_bytes();
    match UncheckedKeyShare::from_bytes(&bytes)
        .unwrap()
        .validate()
        .unwrap()
    {
        KeyShare::Ecdsa(s) => s,
        other => panic!("reloaded as {:?}", other.scheme()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_of_another_wallet_is_refused() {
    let a = keygen(2, 2, "wallet-a").await;
    let b = keygen(2, 2, "wallet-b").await;
    let bytes = a[0].to_bytes();
    let err = UncheckedKeyShare::from_bytes(&bytes)
        .unwrap()
        .validate_for(b[0].wallet_id())
        .unwrap_err();
    assert!(matches!(err, TssError::WrongWallet { .. }), "{err}");
    assert!(
        err.to_string().contains(&b[0].wallet_id().to_string()),
        "{err}"
    );
    // Shares of different wallets cannot sign together: party 1 of wallet B with party 0 of A.
    let mixed = Arc::new(vec![reload(&a[0]), reload(&b[1])]);
    let results = sign(&mixed, &[0, 1], digest("mixed")).await;
    assert!(
        results.iter().all(|r| r.is_err()),
        "mixed wallets must not produce a signature"
    );
}

fn flip_sender(env: &mut concord_tss::Envelope, from: u16, to_value: u16) {
    if env.sender == from {
        env.sender = to_value;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_name_the_sender() {
    let shares = keygen(2, 3, "hostile").await;
    let msg = digest("hostile");

    // Truncated message from party 1 to party 0.
    let r = sign_tampered(&shares, &[0, 1], msg, |env, to| {
        if env.sender == 1 && to == 0 {
            let keep = env.body.len() / 2;
            env.body.truncate(keep);
        }
        Tamper::Deliver
    })
    .await;
    let err = r[0].as_ref().unwrap_err();
    assert!(
        matches!(err, TssError::MalformedMessage { party: 1, .. }),
        "{err}"
    );

    // Garbled message from party 1 to party 0.
    let r = sign_tampered(&shares, &[0, 1], msg, |env, to| {
        if env.sender == 1 && to == 0 {
            for b in env.body.iter_mut().skip(1) {
                *b = 0xff;
            }
        }
        Tamper::Deliver
    })
    .await;
    let err = r[0].as_ref().unwrap_err();
    assert!(
        matches!(err, TssError::MalformedMessage { party: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("party 1"), "{err}");

    // A message from a party outside the session (2 is not a signer here).
    let r = sign_tampered(&shares, &[0, 1], msg, |env, _| {
        flip_sender(env, 1, 2);
        Tamper::Deliver
    })
    .await;
    let err = r[0].as_ref().unwrap_err();
    assert!(
        matches!(err, TssError::UnexpectedSender { party: 2 }),
        "{err}"
    );

    // A message from another session.
    let r = sign_tampered(&shares, &[0, 1], msg, |env, _| {
        if env.sender == 1 {
            env.session = SessionId([9; 32]);
        }
        Tamper::Deliver
    })
    .await;
    let err = r[0].as_ref().unwrap_err();
    assert!(matches!(err, TssError::WrongSession { party: 1 }), "{err}");
}

async fn sign_tampered(
    shares: &Arc<Vec<EcdsaKeyShare>>,
    signers: &[u16],
    msg: [u8; 32],
    hook: impl Fn(&mut concord_tss::Envelope, u16) -> Tamper + Send + Sync + 'static,
) -> Vec<Result<RecoverableSignature, TssError>> {
    let session = SessionId::derive("test-ecdsa-tamper", &msg);
    let signer_list = signers.to_vec();
    let shares = shares.clone();
    run_tampered(signers, hook, move |ep| {
        let shares = shares.clone();
        let signer_list = signer_list.clone();
        async move {
            ecdsa::sign(
                session,
                &shares[ep.index as usize],
                &signer_list,
                &msg,
                ep.incoming,
                ep.outgoing,
                &mut rng(5),
            )
            .await
        }
    })
    .await
}
