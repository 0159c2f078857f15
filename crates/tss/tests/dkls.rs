//! Threshold ECDSA with DKLs23: DKG, signing by every signer subset, import, storage, blame,
//! redaction and message inspection. Every signature is checked with k256, including
//! public-key recovery from the recovery id (an implementation independent of dkls23's).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a panic is a failure report

mod common;

use std::sync::{Arc, Mutex};

use ciborium::Value;
use common::*;
use concord_tss::dkls::{self, DklsKeyShare};
use concord_tss::ecdsa::RecoverableSignature;
use concord_tss::local::Tamper;
use concord_tss::{
    Engine, Envelope, KeyShare, Scheme, SessionId, Signature, Threshold, TssError,
    UncheckedKeyShare, inspect,
};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use zeroize::Zeroizing;

/// Protocol tags of DKLs23 envelopes (first body byte), then the round byte.
const KEYGEN_TAG: u8 = 9;
const SIGN_TAG: u8 = 10;

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
    assert!(sig.recovery_id <= 1);
    let rid = k256::ecdsa::RecoveryId::from_byte(sig.recovery_id).unwrap();
    let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(digest, &s, rid).unwrap();
    assert_eq!(recovered, vk, "recovery id recovers the group key");
}

async fn keygen(t: u16, n: u16, label: &str) -> Arc<Vec<DklsKeyShare>> {
    let threshold = Threshold::new(t, n).unwrap();
    let session = SessionId::derive("test-dkls-keygen", label.as_bytes());
    let parties: Vec<u16> = (0..n).collect();
    let shares: Vec<DklsKeyShare> = run(&parties, move |ep| async move {
        dkls::keygen(session, ep.index, threshold, ep.incoming, ep.outgoing).await
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
        assert!(s.excluded().is_empty());
    }
    Arc::new(shares)
}

fn sign_session(msg: &[u8; 32], signers: &[u16]) -> SessionId {
    SessionId::derive(
        "test-dkls-sign",
        &[&msg[..], &format!("{signers:?}").into_bytes()].concat(),
    )
}

async fn sign(
    shares: &Arc<Vec<DklsKeyShare>>,
    signers: &[u16],
    msg: [u8; 32],
) -> Vec<Result<RecoverableSignature, TssError>> {
    sign_tampered(shares, signers, msg, |_, _| Tamper::Deliver).await
}

async fn sign_tampered(
    shares: &Arc<Vec<DklsKeyShare>>,
    signers: &[u16],
    msg: [u8; 32],
    hook: impl Fn(&mut Envelope, u16) -> Tamper + Send + Sync + 'static,
) -> Vec<Result<RecoverableSignature, TssError>> {
    let session = sign_session(&msg, signers);
    let signer_list = signers.to_vec();
    let shares = shares.clone();
    run_tampered(signers, hook, move |ep| {
        let shares = shares.clone();
        let signer_list = signer_list.clone();
        async move {
            dkls::sign(
                session,
                &shares[ep.index as usize],
                &signer_list,
                &msg,
                ep.incoming,
                ep.outgoing,
            )
            .await
        }
    })
    .await
}

/// Signs with `signers` and checks that every signer returns the same signature, which k256
/// accepts; returns it.
async fn sign_ok(
    shares: &Arc<Vec<DklsKeyShare>>,
    signers: &[u16],
    msg: [u8; 32],
) -> RecoverableSignature {
    let sigs: Vec<_> = sign(shares, signers, msg)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for s in &sigs {
        assert_eq!(s, &sigs[0], "every signer outputs the same signature");
    }
    check_with_k256(&shares[0].public_key(), &msg, &sigs[0]);
    sigs[0]
}

/// A fresh `t`-of-`n` key, then a signature by each of its `count` signer subsets.
async fn every_signer_subset_signs(t: u16, n: u16, count: usize) {
    let shares = keygen(t, n, &format!("{t}of{n}")).await;
    let subsets = subsets(n, usize::from(t));
    assert_eq!(subsets.len(), count);
    for (k, subset) in subsets.into_iter().enumerate() {
        sign_ok(&shares, &subset, digest(&format!("{t}-of-{n} subset {k}"))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_every_signer_subset_signs() {
    every_signer_subset_signs(2, 3, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_five_every_signer_subset_signs() {
    every_signer_subset_signs(3, 5, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_two_signs_many_times_with_the_same_setup() {
    let shares = keygen(2, 2, "2of2").await;
    // The pairwise OT state from DKG is reused by every signature.
    for k in 0..5 {
        sign_ok(&shares, &[0, 1], digest(&format!("2-of-2 #{k}"))).await;
    }
}

/// Round-trips a share through its stored form.
fn reload(share: &DklsKeyShare) -> DklsKeyShare {
    let bytes = share.to_bytes();
    match UncheckedKeyShare::from_bytes(&bytes)
        .unwrap()
        .validate_for(share.wallet_id())
        .unwrap()
    {
        KeyShare::Dkls(s) => s,
        other => panic!("reloaded as {:?} / {}", other.scheme(), other.engine()),
    }
}

/// Anvil's (and Hardhat's) well-known first development account.
const ANVIL_KEY0: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ANVIL_ADDR0: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_anvil_key_keeps_its_address_and_signs() {
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(ANVIL_KEY0, &mut *secret).unwrap();
    let threshold = Threshold::new(2, 3).unwrap();
    let imported = dkls::import_secret_key(&secret, threshold, &mut rng(1)).unwrap();
    drop(secret);
    assert_eq!(imported.len(), 3);
    // Each share travels sealed to its module in its stored form.
    let shares: Vec<DklsKeyShare> = imported.iter().map(reload).collect();
    drop(imported);
    for (i, s) in shares.iter().enumerate() {
        assert_eq!(s.index() as usize, i);
        assert_eq!(eth_address(&s.public_key()), ANVIL_ADDR0);
    }
    let shares = Arc::new(shares);
    for subset in subsets(3, 2) {
        let msg = digest(&format!("imported {subset:?}"));
        let sig = sign_ok(&shares, &subset, msg).await;
        // Recover the signer's Ethereum address from (r, s, v) alone, as the chain does.
        let s = k256::ecdsa::Signature::from_slice(&sig.to_rs_bytes()).unwrap();
        let rid = k256::ecdsa::RecoveryId::from_byte(sig.recovery_id).unwrap();
        let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(&msg, &s, rid).unwrap();
        assert_eq!(
            eth_address(recovered.to_encoded_point(true).as_bytes()),
            ANVIL_ADDR0
        );
    }
}

#[test]
fn import_rejects_invalid_keys() {
    let t = Threshold::new(2, 3).unwrap();
    let zero = Zeroizing::new([0u8; 32]);
    let err = dkls::import_secret_key(&zero, t, &mut rng(1)).unwrap_err();
    assert!(err.to_string().contains("zero"), "{err}");
    let too_big = Zeroizing::new([0xffu8; 32]);
    let err = dkls::import_secret_key(&too_big, t, &mut rng(1)).unwrap_err();
    assert!(err.to_string().contains("below the group order"), "{err}");
}

/// The CBOR map entry `name` of `v`.
fn field<'a>(v: &'a mut Value, name: &str) -> &'a mut Value {
    match v {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no field {name}")),
        other => panic!("not a map: {other:?}"),
    }
}

fn record_value(bytes: &[u8]) -> Value {
    ciborium::from_reader(&bytes[4..]).unwrap()
}

fn record_bytes(header: &[u8], v: &Value) -> Vec<u8> {
    let mut out = header[..4].to_vec();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_share_round_trips_with_its_pairwise_state_and_is_validated() {
    let shares = keygen(2, 3, "stored").await;
    let bytes = shares[1].to_bytes();

    // The record holds the pairwise OT state of DKG: one multiplication state per other member.
    let mut record = record_value(&bytes);
    let body = field(&mut record, "body").as_bytes().unwrap().clone();
    let mut body: Value = ciborium::from_reader(&body[..]).unwrap();
    let party = field(&mut body, "party");
    for pairwise in ["mul_senders", "mul_receivers"] {
        assert_eq!(
            field(party, pairwise).as_map().unwrap().len(),
            2,
            "{pairwise}"
        );
    }

    // Loading gives the same share back: same bytes, same key, same engine.
    let share = UncheckedKeyShare::from_bytes(&bytes)
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(share.scheme(), Scheme::EcdsaSecp256k1);
    assert_eq!(share.engine(), Engine::Dkls23);
    assert_eq!(
        (share.index(), share.threshold()),
        (1, shares[1].threshold())
    );
    assert_eq!(share.public_key(), shares[1].public_key().to_vec());
    assert_eq!(share.wallet_id(), shares[1].wallet_id());
    assert_eq!(&*share.to_bytes(), &*bytes, "re-encodes byte for byte");

    // Reloaded shares sign without any new setup, also mixed with never-stored ones.
    let reloaded = Arc::new(vec![
        reload(&shares[0]),
        reload(&shares[1]),
        reload(&shares[2]),
    ]);
    sign_ok(&reloaded, &[1, 2], digest("after restart")).await;

    // A record that says party 0 but holds party 1's state is refused.
    let mut record = record_value(&bytes);
    *field(&mut record, "index") = Value::Integer(0.into());
    let err = UncheckedKeyShare::from_bytes(&record_bytes(&bytes, &record))
        .unwrap()
        .validate()
        .unwrap_err();
    assert!(
        err.to_string().contains("is party 1's, not party 0's"),
        "{err}"
    );

    // A share of another wallet is refused.
    let other = keygen(2, 3, "stored-other").await;
    let err = UncheckedKeyShare::from_bytes(&bytes)
        .unwrap()
        .validate_for(other[1].wallet_id())
        .unwrap_err();
    assert!(matches!(err, TssError::WrongWallet { .. }), "{err}");

    // Truncated records are refused.
    let err = UncheckedKeyShare::from_bytes(&bytes[..bytes.len() - 9]).unwrap_err();
    assert!(err.to_string().contains("corrupt encoding"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_shows_no_secret() {
    let shares = keygen(2, 3, "debug").await;
    let bytes = shares[0].to_bytes();
    let mut record = record_value(&bytes);
    let body = field(&mut record, "body").as_bytes().unwrap().clone();
    let mut body: Value = ciborium::from_reader(&body[..]).unwrap();
    let secret = field(field(&mut body, "party"), "poly_point")
        .as_bytes()
        .unwrap()
        .clone();
    assert_eq!(secret.len(), 32);

    let unchecked = UncheckedKeyShare::from_bytes(&bytes).unwrap();
    let texts = [
        format!("{:?}", shares[0]),
        format!("{:#?}", shares[0]),
        format!("{unchecked:?}"),
        format!("{:?}", unchecked.validate().unwrap()),
    ];
    for text in texts {
        assert!(text.contains("<redacted>"), "{text}");
        for needle in [
            hex::encode(&secret),
            hex::encode_upper(&secret),
            format!("{:?}", secret),
            format!("{:?}", &secret[..8]),
        ] {
            assert!(
                !text.contains(&needle),
                "Debug leaks the secret share: {text}"
            );
        }
        assert!(
            text.len() < 400,
            "Debug prints only public metadata: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_dispatch_signs_with_a_dkls_share() {
    let shares = keygen(2, 3, "dispatch").await;
    let pk = shares[0].public_key();
    let generic = Arc::new(vec![
        KeyShare::Dkls(reload(&shares[0])),
        KeyShare::Dkls(reload(&shares[1])),
    ]);
    assert_eq!(generic[0].public_key(), pk.to_vec());
    let msg = digest("dispatch");
    let session = SessionId::derive("test-dkls-dispatch", b"1");
    let results = run(&[0, 1], move |ep| {
        let generic = generic.clone();
        async move {
            concord_tss::sign(
                &generic[ep.index as usize],
                session,
                &[0, 1],
                &msg,
                ep.incoming,
                ep.outgoing,
                &mut rng(3),
            )
            .await
        }
    })
    .await;
    for r in results {
        let Signature::Ecdsa(sig) = r.unwrap() else {
            panic!("a DKLs23 share signs ECDSA");
        };
        check_with_k256(&pk, &msg, &sig);
        assert_eq!(Signature::Ecdsa(sig).to_bytes().len(), 65);
    }
    // Digests only.
    let share = KeyShare::Dkls(reload(&shares[0]));
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

/// Rewrites the CBOR payload of a DKLs23 envelope (after its tag and round bytes).
fn rewrite(env: &mut Envelope, f: impl FnOnce(&mut Value)) {
    let mut v: Value = ciborium::from_reader(&env.body[2..]).unwrap();
    f(&mut v);
    let mut body = env.body[..2].to_vec();
    ciborium::into_writer(&v, &mut body).unwrap();
    env.body = body;
}

/// Changes one bit of a byte string, or of the last byte of an array of bytes.
fn flip_last_bit(v: &mut Value) {
    match v {
        Value::Bytes(b) => {
            let last = b.len() - 1;
            b[last] ^= 1;
        }
        Value::Array(items) => {
            let last = items.last_mut().unwrap();
            let byte = u8::try_from(last.as_integer().unwrap()).unwrap();
            *last = Value::Integer((byte ^ 1).into());
        }
        other => panic!("not bytes: {other:?}"),
    }
}

fn is(env: &Envelope, tag: u8, round: u8, from: u16, to: u16, recipient: u16) -> bool {
    env.body.first() == Some(&tag)
        && env.body.get(1) == Some(&round)
        && env.sender == from
        && to == recipient
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_messages_are_refused_with_the_party_named() {
    let shares = keygen(2, 3, "hostile").await;
    let msg = digest("hostile");

    // Garbled bytes from party 1: undecodable, party 1 named.
    let r = sign_tampered(&shares, &[0, 1], msg, |env, to| {
        if is(env, SIGN_TAG, 1, 1, to, 0) {
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

    // A well-formed round-2 message whose opening does not match party 1's round-1 commitment:
    // the library's recoverable abort, party 1 named.
    let r = sign_tampered(&shares, &[0, 1], msg, |env, to| {
        if is(env, SIGN_TAG, 2, 1, to, 0) {
            rewrite(env, |v| flip_last_bit(field(v, "psi")));
        }
        Tamper::Deliver
    })
    .await;
    let err = r[0].as_ref().unwrap_err();
    assert!(
        matches!(err, TssError::Protocol { culprits, .. } if culprits == &[1]),
        "{err}"
    );
    assert!(err.to_string().contains("blamed: party 1"), "{err}");

    // Cheating in the pairwise multiplication: the library says the counterparty must be banned
    // (it could otherwise learn about the reused OT state), so party 1 comes out as a cheater.
    let r = sign_tampered(&shares, &[0, 1], msg, |env, to| {
        if is(env, SIGN_TAG, 2, 1, to, 0) {
            rewrite(env, |v| {
                let verify_u = field(field(v, "mul_transmit"), "verify_u");
                let Value::Array(items) = verify_u else {
                    panic!("verify_u is not an array: {verify_u:?}");
                };
                flip_last_bit(&mut items[0]);
            });
        }
        Tamper::Deliver
    })
    .await;
    let err = r[0].as_ref().unwrap_err();
    assert!(
        matches!(err, TssError::CheatingParty { party: 1, .. }),
        "{err}"
    );
    assert_eq!(err.blamed(), vec![1]);
    assert!(
        err.to_string()
            .contains("party 1 cheated and must be excluded"),
        "{err}"
    );

    // Party 0 records the ban; from then on it refuses to sign with party 1, across restarts.
    let mut mine = reload(&shares[0]);
    mine.exclude(1).unwrap();
    let mine = reload(&mine);
    assert_eq!(mine.excluded().iter().copied().collect::<Vec<_>>(), vec![1]);
    assert!(format!("{mine:?}").contains("excluded: {1}"));
    let mut ep = concord_tss::local::LocalNetwork::connect(&[0, 1]).remove(0);
    let err = dkls::sign(
        SessionId([1; 32]),
        &mine,
        &[0, 1],
        &msg,
        &mut ep.incoming,
        &mut ep.outgoing,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("party 1 was caught cheating and is excluded"),
        "{err}"
    );
    let after_ban = Arc::new(vec![mine, reload(&shares[1]), reload(&shares[2])]);
    sign_ok(&after_ban, &[0, 2], digest("without the cheater")).await;
    assert!(shares[0].excluded().is_empty());
    let mut again = reload(&shares[0]);
    assert!(again.exclude(0).is_err(), "a party cannot exclude itself");
    assert!(again.exclude(3).is_err(), "only members can be excluded");

    // Envelope-level checks still apply: another session, party 1 named.
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

async fn keygen_tampered(
    t: u16,
    n: u16,
    hook: impl Fn(&mut Envelope, u16) -> Tamper + Send + Sync + 'static,
) -> Vec<Result<DklsKeyShare, TssError>> {
    let threshold = Threshold::new(t, n).unwrap();
    let session = SessionId::derive("test-dkls-keygen-tampered", b"x");
    let parties: Vec<u16> = (0..n).collect();
    run_tampered(&parties, hook, move |ep| async move {
        dkls::keygen(session, ep.index, threshold, ep.incoming, ep.outgoing).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheating_in_key_generation_is_refused_with_the_party_named() {
    // Party 2 opens a zero-sharing seed to party 0 that is not the one it committed to.
    let r = keygen_tampered(2, 3, |env, to| {
        if is(env, KEYGEN_TAG, 5, 2, to, 0) {
            rewrite(env, |v| {
                flip_last_bit(field(field(v, "zero"), "seed"));
            });
        }
        Tamper::Deliver
    })
    .await;
    let err = r[0].as_ref().unwrap_err();
    assert!(
        matches!(err, TssError::Protocol { culprits, .. } if culprits == &[2]),
        "{err}"
    );

    // Party 1 sends party 0 a different round-2 broadcast than everyone else got: caught by the
    // echo in round 4 (party 2 saw another round 2 than party 0 did).
    let r = keygen_tampered(2, 3, |env, to| {
        if is(env, KEYGEN_TAG, 2, 1, to, 0) {
            rewrite(env, |v| {
                flip_last_bit(field(v, "proof_commitment"));
            });
        }
        Tamper::Deliver
    })
    .await;
    let err = r
        .iter()
        .find_map(|r| match r {
            Err(e @ TssError::InconsistentBroadcast { .. }) => Some(e),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no party detected the equivocation: {r:?}"));
    assert!(!err.blamed().is_empty(), "{err}");

    // A party that opens a proof other than the one it committed to is named. Both other
    // parties receive the bad opening; whichever catches it first stops the run (the other
    // is then reported aborted), so the blame is looked for in either.
    let r = keygen_tampered(2, 3, |env, _| {
        if env.body.first() == Some(&KEYGEN_TAG) && env.body.get(1) == Some(&4) && env.sender == 1 {
            rewrite(env, |v| {
                flip_last_bit(field(field(v, "proof"), "commitment"));
            });
        }
        Tamper::Deliver
    })
    .await;
    // The honest parties never finish with a key (the cheater's own run may).
    assert!(
        r[0].is_err() && r[2].is_err(),
        "an honest party finished: {r:?}"
    );
    let err = r
        .iter()
        .find_map(|r| match r {
            Err(e @ TssError::Protocol { .. }) => Some(e),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no party named the cheater: {r:?}"));
    assert!(
        matches!(err, TssError::Protocol { culprits, .. } if culprits == &[1]),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_clear_errors() {
    let shares = keygen(2, 3, "params").await;
    // Every party refuses; whichever refuses first stops the others, so look among all.
    let r = sign(&shares, &[0, 1, 2], digest("x")).await;
    assert!(r.iter().all(Result::is_err), "{r:?}");
    assert!(
        r.iter().any(|r| r
            .as_ref()
            .is_err_and(|e| e.to_string().contains("exactly 2 signers"))),
        "{r:?}"
    );
    let mut ep = concord_tss::local::LocalNetwork::connect(&[0, 7]).remove(0);
    let err = dkls::sign(
        SessionId([0; 32]),
        &shares[0],
        &[0, 7],
        &digest("x"),
        &mut ep.incoming,
        &mut ep.outgoing,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("signer 7 is not a member"),
        "{err}"
    );
    let mut ep = concord_tss::local::LocalNetwork::connect(&[0, 1]).remove(0);
    let err = dkls::keygen::<dkls::Secp256k1>(
        SessionId([0; 32]),
        3,
        Threshold::new(2, 3).unwrap(),
        &mut ep.incoming,
        &mut ep.outgoing,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not in a 2-of-3 group"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_decodes_without_running_the_protocol() {
    let seen: Arc<Mutex<Vec<Envelope>>> = Arc::default();
    let log = seen.clone();
    let threshold = Threshold::new(2, 3).unwrap();
    let session = SessionId::derive("test-dkls-inspect", b"keygen");
    let shares: Vec<DklsKeyShare> = run_tampered(
        &[0, 1, 2],
        move |env, _| {
            log.lock().unwrap().push(env.clone());
            Tamper::Deliver
        },
        move |ep| async move {
            dkls::keygen(session, ep.index, threshold, ep.incoming, ep.outgoing).await
        },
    )
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let log = seen.clone();
    let shares = Arc::new(shares);
    let msg = digest("inspect");
    sign_tampered(&shares, &[0, 2], msg, move |env, _| {
        log.lock().unwrap().push(env.clone());
        Tamper::Deliver
    })
    .await
    .into_iter()
    .for_each(|r| check_with_k256(&shares[0].public_key(), &msg, &r.unwrap()));

    let mut kinds = std::collections::BTreeSet::new();
    for env in seen.lock().unwrap().iter() {
        let decoded = Envelope::decode(&env.encode()).unwrap();
        let kind = inspect(&decoded).unwrap();
        kinds.insert((kind.protocol, kind.round.unwrap()));
    }
    let expected: std::collections::BTreeSet<_> = (1..=5)
        .map(|r| ("DKLs23 key generation", r))
        .chain((1..=3).map(|r| ("DKLs23 signing", r)))
        .collect();
    assert_eq!(kinds, expected);

    // Junk is refused with the sender named.
    let junk = Envelope {
        session: SessionId([0; 32]),
        sender: 4,
        recipient: None,
        body: vec![SIGN_TAG, 2, 0xff, 0x00],
    };
    let err = inspect(&junk).unwrap_err();
    assert!(
        matches!(err, TssError::MalformedMessage { party: 4, .. }),
        "{err}"
    );
    let junk = Envelope {
        body: vec![KEYGEN_TAG, 9],
        ..junk
    };
    assert!(inspect(&junk).unwrap_err().to_string().contains("round 9"));
}

/// An independent BIP-32 implementation (rust-bitcoin): the child public key of `path` under
/// the extended public key (`public_key`, `chain_code`).
fn bip32_child(public_key: &[u8; 33], chain_code: [u8; 32], path: &str) -> [u8; 33] {
    use bitcoin::bip32::{ChainCode, ChildNumber, Fingerprint, Xpub};
    use std::str::FromStr;
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let xpub = Xpub {
        network: bitcoin::NetworkKind::Main,
        depth: 0,
        parent_fingerprint: Fingerprint::default(),
        child_number: ChildNumber::from_normal_idx(0).unwrap(),
        public_key: bitcoin::secp256k1::PublicKey::from_slice(public_key).unwrap(),
        chain_code: ChainCode::from(chain_code),
    };
    let path = bitcoin::bip32::DerivationPath::from_str(path).unwrap();
    xpub.derive_pub(&secp, &path)
        .unwrap()
        .public_key
        .serialize()
}

/// Every member derives its share of a child key itself; the children's public keys are
/// BIP-32's public derivation (checked with rust-bitcoin); every signer subset signs for the
/// child, the signature does not verify under the parent key, and a parent share cannot sign
/// together with a child share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_children_match_bip32_and_sign() {
    let shares = keygen(2, 3, "hd").await;
    let pk = shares[0].public_key();
    let chain_code = shares[0].chain_code();
    assert!(shares.iter().all(|s| s.chain_code() == chain_code));
    for path in ["m", "m/0", "m/7", "m/44/60/0/0/3", "m/2147483647/1"] {
        let p: concord_tss::DerivationPath = path.parse().unwrap();
        let children: Vec<DklsKeyShare> = shares.iter().map(|s| s.derive(&p).unwrap()).collect();
        let child_pk = children[0].public_key();
        assert!(children.iter().all(|c| c.public_key() == child_pk));
        assert_eq!(child_pk, bip32_child(&pk, chain_code, path), "{path}");
        assert_eq!(p.is_master(), child_pk == pk, "{path}");
    }
    let p: concord_tss::DerivationPath = "m/44/60/0/0/3".parse().unwrap();
    let children = Arc::new(
        shares
            .iter()
            .map(|s| reload(&s.derive(&p).unwrap()))
            .collect::<Vec<_>>(),
    );
    for signers in [[0u16, 1], [0, 2], [1, 2]] {
        let msg = digest(&format!("child {signers:?}"));
        let sig = sign_ok(&children, &signers, msg).await;
        let parent = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).unwrap();
        let s = k256::ecdsa::Signature::from_slice(&sig.to_rs_bytes()).unwrap();
        assert!(
            parent.verify_prehash(&msg, &s).is_err(),
            "a child's signature is not the parent's"
        );
    }
    // Member 0 with its parent share, member 1 with its child share: no valid signature.
    let mixed = Arc::new(vec![
        shares[0]
            .derive(&concord_tss::DerivationPath::master())
            .unwrap(),
        children[1]
            .derive(&concord_tss::DerivationPath::master())
            .unwrap(),
    ]);
    let results = sign(&mixed, &[0, 1], digest("mixed")).await;
    assert!(results.iter().any(Result::is_err), "{results:?}");
}

/// BIP-32's published test vector 1: an extended private key imported with its chain code;
/// the members' non-hardened children equal the vector's (and rust-bitcoin's) child keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bip32_test_vector_1_children_of_an_imported_extended_key() {
    use bitcoin::bip32::{Xpriv, Xpub};
    use std::str::FromStr;
    let secp = bitcoin::secp256k1::Secp256k1::new();
    // (extended private key, non-hardened path below it, the vector's extended public key there)
    let cases = [
        (
            // m/0H
            "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7",
            "m/1",
            // m/0H/1
            "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
        ),
        (
            // m/0H/1/2H
            "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM",
            "m/2/1000000000",
            // m/0H/1/2H/2/1000000000
            "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
        ),
    ];
    let t = Threshold::new(2, 3).unwrap();
    for (xprv, path, want) in cases {
        let xprv = Xpriv::from_str(xprv).unwrap();
        let want = Xpub::from_str(want).unwrap().public_key.serialize();
        let secret = Zeroizing::new(xprv.private_key.secret_bytes());
        let shares = dkls::import_extended_key(
            &secret,
            Some(xprv.chain_code.to_bytes()),
            t,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        assert_eq!(
            shares[0].public_key(),
            Xpub::from_priv(&secp, &xprv).public_key.serialize()
        );
        let p: concord_tss::DerivationPath = path.parse().unwrap();
        let children: Vec<DklsKeyShare> = shares.iter().map(|s| s.derive(&p).unwrap()).collect();
        assert_eq!(children[0].public_key(), want, "{path}");
        assert_eq!(
            children[0].public_key(),
            bip32_child(&shares[0].public_key(), shares[0].chain_code(), path)
        );
        let children = Arc::new(children);
        sign_ok(&children, &[0, 2], digest(path)).await;
    }
}

const REFRESH_TAG: u8 = 11;

async fn refresh_tampered(
    shares: &Arc<Vec<DklsKeyShare>>,
    label: &str,
    hook: impl Fn(&mut Envelope, u16) -> Tamper + Send + Sync + 'static,
) -> Vec<Result<DklsKeyShare, TssError>> {
    let session = SessionId::derive("test-dkls-refresh", label.as_bytes());
    let parties: Vec<u16> = (0..shares.len() as u16).collect();
    let shares = shares.clone();
    run_tampered(&parties, hook, move |ep| {
        let shares = shares.clone();
        async move {
            dkls::refresh(
                session,
                &shares[ep.index as usize],
                ep.incoming,
                ep.outgoing,
            )
            .await
        }
    })
    .await
}

async fn refresh(shares: &Arc<Vec<DklsKeyShare>>, label: &str) -> Arc<Vec<DklsKeyShare>> {
    Arc::new(
        refresh_tampered(shares, label, |_, _| Tamper::Deliver)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect(),
    )
}

/// A refresh keeps the group key and chain code and changes every secret; every signer
/// subset signs with the new shares; an old share and a new share cannot sign together; the
/// refreshed share stores and reloads; children derive the same keys as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_keeps_the_key_and_old_and_new_shares_never_sign_together() {
    for (t, n) in [(2u16, 3u16), (3, 5)] {
        let old = keygen(t, n, &format!("refresh {t}-of-{n}")).await;
        let new = refresh(&old, &format!("r {t}-of-{n}")).await;
        for (o, m) in old.iter().zip(new.iter()) {
            assert_eq!(o.public_key(), m.public_key());
            assert_eq!(o.chain_code(), m.chain_code());
            assert_eq!(o.index(), m.index());
            assert_ne!(
                o.to_bytes().as_slice(),
                m.to_bytes().as_slice(),
                "the stored share changed"
            );
        }
        let path: concord_tss::DerivationPath = "m/0/5".parse().unwrap();
        assert_eq!(
            old[0].derive(&path).unwrap().public_key(),
            new[1].derive(&path).unwrap().public_key()
        );
        let new = Arc::new(new.iter().map(reload).collect::<Vec<_>>());
        let signers: Vec<u16> = (0..t).collect();
        sign_ok(&new, &signers, digest("after refresh")).await;
        let last: Vec<u16> = (n - t..n).collect();
        sign_ok(&new, &last, digest("after refresh, other signers")).await;
        // Signer 0 kept its old share, the others hold new ones: no signature comes out.
        let mut mixed: Vec<DklsKeyShare> = new.iter().map(reload).collect();
        mixed[0] = reload(&old[0]);
        let results = sign(&Arc::new(mixed), &signers, digest("mixed")).await;
        assert!(results.iter().any(Result::is_err), "{results:?}");
        assert!(
            results.iter().all(|r| r.is_err()),
            "nobody gets a signature from a mix: {results:?}"
        );
    }
}

/// Cheating during a refresh is caught: a tampered opening names its sender; a refresh
/// message is not accepted as a key-generation one (distinct protocol tag), and a missing
/// member stalls it (all `n` take part) rather than producing partial shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheating_in_a_refresh_is_refused_with_the_party_named() {
    let shares = keygen(2, 3, "refresh cheat").await;
    let r = refresh_tampered(&shares, "cheat", |env, _| {
        if env.body.first() == Some(&REFRESH_TAG) && env.body.get(1) == Some(&4) && env.sender == 1
        {
            rewrite(env, |v| {
                flip_last_bit(field(field(v, "proof"), "commitment"));
            });
        }
        Tamper::Deliver
    })
    .await;
    // Whoever processes the bad opening first names party 1 (the others may be stopped by
    // its failure first).
    assert!(
        r.iter()
            .any(|r| matches!(r, Err(TssError::Protocol { culprits, .. }) if culprits == &[1])),
        "{r:?}"
    );
    // No honest member gets a new share (the cheater, who saw honest messages, may; the
    // members never agree on one, so nothing is committed).
    assert!(r[0].is_err() && r[2].is_err(), "{r:?}");
    // A refresh fragment altered in transit: the receiver's check of its point fails.
    let r = refresh_tampered(&shares, "cheat 2", |env, to| {
        if is(env, REFRESH_TAG, 1, 2, to, 0) {
            rewrite(env, flip_last_bit);
        }
        Tamper::Deliver
    })
    .await;
    assert!(r[0].is_err(), "{:?}", r[0]);
}

/// Repair: a member's share is lost; the others hand a new member at its index the pieces of
/// its share (none of them learns it), then all refresh: same key, every subset including
/// the new member signs, and the lost share no longer signs with the new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_share_is_rebuilt_for_a_new_member_and_the_lost_one_is_useless() {
    for (t, n, target) in [(2u16, 3u16, 1u16), (3, 5, 4)] {
        let old = keygen(t, n, &format!("repair {t}-of-{n}")).await;
        let threshold = Threshold::new(t, n).unwrap();
        let session = SessionId::derive("test-dkls-repair", format!("{t}{n}").as_bytes());
        let parties: Vec<u16> = (0..n).collect();
        let shares = old.clone();
        let new: Vec<DklsKeyShare> = run(&parties, move |ep| {
            let shares = shares.clone();
            async move {
                let role = if ep.index == target {
                    dkls::RepairRole::Target
                } else {
                    dkls::RepairRole::Helper(&shares[ep.index as usize])
                };
                dkls::repair(
                    session,
                    role,
                    ep.index,
                    target,
                    threshold,
                    ep.incoming,
                    ep.outgoing,
                )
                .await
            }
        })
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        for (o, m) in old.iter().zip(&new) {
            assert_eq!(o.public_key(), m.public_key());
            assert_eq!(o.chain_code(), m.chain_code());
        }
        let new = Arc::new(new.iter().map(reload).collect::<Vec<_>>());
        let with_target: Vec<u16> = (n - t..n).collect();
        assert!(with_target.contains(&target));
        sign_ok(&new, &with_target, digest("after repair")).await;
        let first: Vec<u16> = (0..t).collect();
        sign_ok(&new, &first, digest("after repair, first signers")).await;
        // The lost share (whoever kept it) does not sign with the new ones.
        let mut mixed: Vec<DklsKeyShare> = new.iter().map(reload).collect();
        mixed[target as usize] = reload(&old[target as usize]);
        let results = sign(&Arc::new(mixed), &with_target, digest("lost")).await;
        assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    }
    // Too few others to rebuild from (2-of-2), or a helper naming itself: clear errors.
    let two = keygen(2, 2, "repair 2-of-2").await;
    let mut eps = concord_tss::local::LocalNetwork::connect(&[0, 1]);
    let a = eps.remove(0);
    let e = dkls::repair(
        SessionId([1; 32]),
        dkls::RepairRole::Helper(&two[0]),
        0,
        1,
        Threshold::new(2, 2).unwrap(),
        a.incoming,
        a.outgoing,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("cannot rebuild"), "{e}");
}

/// A signer's share of the signature (round 3) waits for its gate (in the system: the
/// certificate of approvals). Rounds 1 and 2 run before the gate opens; a gate that stays
/// shut means no round-3 message from that signer and no signature for anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_signer_holds_its_signature_share_until_the_gate_opens() {
    let shares = keygen(2, 3, "gated").await;
    let msg = digest("gated");
    let signers = [0u16, 2];
    for open in [true, false] {
        let sent: Arc<Mutex<Vec<(u16, u8)>>> = Arc::default();
        let log = sent.clone();
        let hook = move |env: &mut Envelope, _to: u16| {
            if env.body.first() == Some(&SIGN_TAG) {
                log.lock().unwrap().push((env.sender, env.body[1]));
            }
            Tamper::Deliver
        };
        let session = sign_session(&msg, &signers);
        let (run_shares, seen) = (shares.clone(), sent.clone());
        let results = run_tampered(&signers, hook, move |ep| {
            let (shares, seen) = (run_shares.clone(), seen.clone());
            async move {
                let me = ep.index;
                let gate = async move {
                    if me != 2 {
                        return Ok(());
                    }
                    // Opens (or stays shut) only once both signers sent round 2.
                    while seen.lock().unwrap().iter().filter(|(_, r)| *r == 2).count() < 2 {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    if open {
                        Ok(())
                    } else {
                        Err(TssError::Transport(
                            "no certificate: this signer does not sign".into(),
                        ))
                    }
                };
                dkls::sign_gated(
                    session,
                    &shares[usize::from(me)],
                    &signers,
                    &msg,
                    gate,
                    ep.incoming,
                    ep.outgoing,
                )
                .await
            }
        })
        .await;
        let rounds_of = |p: u16| -> Vec<u8> {
            let mut r: Vec<u8> = sent
                .lock()
                .unwrap()
                .iter()
                .filter(|(s, _)| *s == p)
                .map(|(_, r)| *r)
                .collect();
            r.sort_unstable();
            r
        };
        if open {
            let sig = *results[0].as_ref().unwrap();
            assert_eq!(results[1].as_ref().unwrap(), &sig);
            check_with_k256(&shares[0].public_key(), &msg, &sig);
            assert_eq!(rounds_of(2), vec![1, 2, 3]);
        } else {
            assert!(results.iter().all(Result::is_err), "no signature anywhere");
            assert_eq!(
                rounds_of(2),
                vec![1, 2],
                "the gated signer sent nothing of round 3"
            );
        }
    }
}
