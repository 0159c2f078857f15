//! Threshold ECDSA on NIST P-256 with DKLs23 (the ES256 keys of exchange APIs): DKG, signing
//! by every signer subset, storage, refresh, and the generic dispatch. Every signature is
//! checked with `p256` (an implementation independent of dkls23's), as a JWS ES256 verifier
//! would check it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use std::sync::Arc;

use common::*;
use concord_tss::dkls::{self, DklsP256Share};
use concord_tss::{KeyShare, Scheme, SessionId, Signature, Threshold, UncheckedKeyShare};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256};

fn check_with_p256(public_key: &[u8; 33], digest: &[u8; 32], sig: &[u8; 64]) {
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).unwrap();
    let s = p256::ecdsa::Signature::from_slice(sig).unwrap();
    assert!(s.normalize_s().is_none(), "s must be low");
    vk.verify_prehash(digest, &s)
        .expect("p256 verifies the threshold signature");
}

async fn keygen(t: u16, n: u16, label: &str) -> Arc<Vec<DklsP256Share>> {
    let threshold = Threshold::new(t, n).unwrap();
    let session = SessionId::derive("test-dkls-p256-keygen", label.as_bytes());
    let parties: Vec<u16> = (0..n).collect();
    let shares: Vec<DklsP256Share> = run(&parties, move |ep| async move {
        dkls::keygen(session, ep.index, threshold, ep.incoming, ep.outgoing).await
    })
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let pk = shares[0].public_key();
    for s in shares.iter() {
        assert_eq!(s.public_key(), pk, "every party derives the same group key");
        assert_eq!(
            s.wallet_id(),
            concord_tss::WalletId::derive(Scheme::EcdsaP256, &pk)
        );
    }
    // The group key is a P-256 point.
    p256::PublicKey::from_sec1_bytes(&pk).expect("a P-256 point");
    Arc::new(shares)
}

async fn sign(shares: &Arc<Vec<DklsP256Share>>, signers: &[u16], digest: [u8; 32]) -> [u8; 64] {
    let session = SessionId::derive("test-dkls-p256-sign", &digest);
    let shares = shares.clone();
    let set = signers.to_vec();
    let results = run(signers, move |ep| {
        let shares = shares.clone();
        let set = set.clone();
        async move {
            dkls::sign(
                session,
                &shares[ep.index as usize],
                &set,
                &digest,
                ep.incoming,
                ep.outgoing,
            )
            .await
        }
    })
    .await;
    let sigs: Vec<[u8; 64]> = results.into_iter().map(|r| r.unwrap()).collect();
    assert!(sigs.windows(2).all(|w| w[0] == w[1]), "every signer agrees");
    sigs[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p256_two_of_three_every_subset_signs_es256() {
    let shares = keygen(2, 3, "subsets").await;
    let pk = shares[0].public_key();
    for signers in subsets(3, 2) {
        // What an ES256 JWT signs: SHA-256 of `header.payload`.
        let digest: [u8; 32] = Sha256::digest(format!("eyJhbGciOiJFUzI1NiJ9.{signers:?}")).into();
        let sig = sign(&shares, &signers, digest).await;
        check_with_p256(&pk, &digest, &sig);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p256_share_is_stored_refreshed_and_signs_through_the_generic_dispatch() {
    let shares = keygen(2, 3, "stored").await;
    let pk = shares[0].public_key();
    // Stored and read back as a P-256 share (not a secp256k1 one).
    let reloaded: Vec<KeyShare> = shares
        .iter()
        .map(|s| {
            UncheckedKeyShare::from_bytes(&s.to_bytes())
                .unwrap()
                .validate()
                .unwrap()
        })
        .collect();
    for s in &reloaded {
        assert_eq!(s.scheme(), Scheme::EcdsaP256);
        assert_eq!(s.public_key(), pk.to_vec());
        assert!(!format!("{s:?}").contains(&hex::encode(s.to_bytes().as_slice())));
    }
    // Refresh: every share changes, the key stays.
    let generic = Arc::new(reloaded);
    let session = SessionId::derive("test-dkls-p256-refresh", b"1");
    let g = generic.clone();
    let refreshed: Vec<KeyShare> = run(&[0, 1, 2], move |ep| {
        let g = g.clone();
        async move {
            concord_tss::refresh(
                &g[ep.index as usize],
                session,
                ep.incoming,
                ep.outgoing,
                &mut rng(ep.index.into()),
            )
            .await
        }
    })
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    for (old, new) in generic.iter().zip(&refreshed) {
        assert_eq!(new.public_key(), pk.to_vec());
        assert_ne!(old.public_commitment(), new.public_commitment());
    }
    // The refreshed shares sign through the generic dispatch.
    let digest: [u8; 32] = Sha256::digest(b"after refresh").into();
    let refreshed = Arc::new(refreshed);
    let session = SessionId::derive("test-dkls-p256-dispatch", b"1");
    let results = run(&[1, 2], move |ep| {
        let r = refreshed.clone();
        async move {
            concord_tss::sign(
                &r[ep.index as usize],
                session,
                &[1, 2],
                &digest,
                ep.incoming,
                ep.outgoing,
                &mut rng(9),
            )
            .await
        }
    })
    .await;
    for r in results {
        let Signature::EcdsaP256(sig) = r.unwrap() else {
            panic!("a P-256 share signs P-256 ECDSA");
        };
        check_with_p256(&pk, &digest, &sig);
    }
}
