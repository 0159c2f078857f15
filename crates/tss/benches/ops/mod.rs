//! Benchmark operations, shared by the criterion bench (`benches/tss.rs`) and the table
//! printer (`examples/bench_table.rs`). All parties run in one process on a 2-worker tokio
//! runtime, connected by in-memory channels; messages are fully encoded and decoded, as on
//! the network. "raw" operations call the libraries directly, with no Concord wrapper, to
//! show what the wrappers cost.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cggmp21::round_based::sim;
use cggmp21::supported_curves::Secp256k1;

use concord_tss::dkls::{self, DklsEngineCurve, DklsShare};
use concord_tss::ecdsa::{self, AuxMaterial, EcdsaKeyShare, EcdsaPresignature, Primes};
use concord_tss::frost::{self, FrostKeyShare, FrostSuite};
use concord_tss::local::{Endpoint, LocalNetwork};
use concord_tss::{NoProgress, SessionId, Threshold, TssError};
use rand::rngs::OsRng;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A single-threaded runtime: every party on one core, like the raw-library baselines.
pub fn runtime_single() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture_primes(i: u16) -> Primes {
    Primes::from_bytes(
        &std::fs::read(fixtures().join(format!("INSECURE-primes-{i}.bin"))).expect("fixture"),
    )
    .expect("fixture primes")
}

pub fn fixture_aux(n: u16) -> Arc<Vec<AuxMaterial>> {
    Arc::new(
        (0..n)
            .map(|i| {
                AuxMaterial::from_bytes(
                    &std::fs::read(fixtures().join(format!("INSECURE-aux-n{n}-party{i}.bin")))
                        .expect("fixture"),
                )
                .expect("fixture aux")
            })
            .collect(),
    )
}

fn session() -> SessionId {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut OsRng, &mut b);
    SessionId(b)
}

async fn all<T: Send + 'static, F, Fut>(parties: &[u16], f: F) -> Vec<T>
where
    F: Fn(Endpoint) -> Fut,
    Fut: std::future::Future<Output = Result<T, TssError>> + Send + 'static,
{
    let handles: Vec<_> = LocalNetwork::connect(parties)
        .into_iter()
        .map(|ep| tokio::spawn(f(ep)))
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("party task").expect("protocol"));
    }
    out
}

/// One pair of 1024-bit safe primes (one party's share of the group's aux material).
pub fn safe_primes() -> Primes {
    Primes::generate(&mut OsRng, &mut NoProgress)
}

/// The aux-info protocol for `n` parties, from the fixture primes.
pub async fn aux_info(n: u16) -> Vec<AuxMaterial> {
    let s = session();
    let parties: Vec<u16> = (0..n).collect();
    all(&parties, move |ep| async move {
        ecdsa::generate_aux(
            s,
            ep.index,
            n,
            fixture_primes(ep.index),
            ep.incoming,
            ep.outgoing,
            &mut OsRng,
            &mut NoProgress,
        )
        .await
    })
    .await
}

pub async fn ecdsa_keygen(aux: &Arc<Vec<AuxMaterial>>, t: u16) -> Arc<Vec<EcdsaKeyShare>> {
    let n = aux.len() as u16;
    let th = Threshold::new(t, n).expect("threshold");
    let s = session();
    let aux = aux.clone();
    let parties: Vec<u16> = (0..n).collect();
    Arc::new(
        all(&parties, move |ep| {
            let aux = aux.clone();
            async move {
                ecdsa::keygen(
                    s,
                    th,
                    &aux[ep.index as usize],
                    ep.incoming,
                    ep.outgoing,
                    &mut OsRng,
                )
                .await
            }
        })
        .await,
    )
}

pub async fn ecdsa_presign(
    shares: &Arc<Vec<EcdsaKeyShare>>,
    signers: &[u16],
) -> Vec<EcdsaPresignature> {
    let s = session();
    let shares = shares.clone();
    let list = signers.to_vec();
    all(signers, move |ep| {
        let shares = shares.clone();
        let list = list.clone();
        async move {
            ecdsa::presign(
                s,
                &shares[ep.index as usize],
                &list,
                ep.incoming,
                ep.outgoing,
                &mut OsRng,
            )
            .await
        }
    })
    .await
}

/// Online signing without any transport: each signer issues its partial, one party combines
/// (and verifies with k256), as the aggregator does.
pub fn ecdsa_online_combine(
    presigs: Vec<EcdsaPresignature>,
    digest: &[u8; 32],
) -> ecdsa::RecoverableSignature {
    let signers = presigs[0].signers().to_vec();
    let pk = presigs[0].public_key();
    let partials: Vec<_> = presigs
        .into_iter()
        .map(|p| p.issue_partial(digest))
        .collect();
    ecdsa::combine(&pk, digest, &signers, &partials).expect("combine")
}

/// Online signing as the one-round protocol over the in-memory network.
pub async fn ecdsa_online_protocol(presigs: Vec<EcdsaPresignature>, digest: [u8; 32]) {
    let s = session();
    let signers = presigs[0].signers().to_vec();
    let slots = Arc::new(Mutex::new(
        presigs.into_iter().map(Some).collect::<Vec<_>>(),
    ));
    let order = signers.clone();
    all(&signers, move |ep| {
        let pos = order.iter().position(|p| *p == ep.index).expect("signer");
        let p = slots.lock().expect("lock")[pos]
            .take()
            .expect("presignature");
        async move { ecdsa::sign_with_presignature(s, p, &digest, ep.incoming, ep.outgoing).await }
    })
    .await;
}

pub async fn ecdsa_sign(shares: &Arc<Vec<EcdsaKeyShare>>, signers: &[u16], digest: [u8; 32]) {
    let s = session();
    let shares = shares.clone();
    let list = signers.to_vec();
    all(signers, move |ep| {
        let shares = shares.clone();
        let list = list.clone();
        async move {
            ecdsa::sign(
                s,
                &shares[ep.index as usize],
                &list,
                &digest,
                ep.incoming,
                ep.outgoing,
                &mut OsRng,
            )
            .await
        }
    })
    .await;
}

pub async fn frost_dkg<C: FrostSuite>(t: u16, n: u16) -> Arc<Vec<FrostKeyShare<C>>> {
    let th = Threshold::new(t, n).expect("threshold");
    let s = session();
    let parties: Vec<u16> = (0..n).collect();
    Arc::new(
        all(&parties, move |ep| async move {
            frost::dkg::<C>(s, ep.index, th, ep.incoming, ep.outgoing, &mut OsRng).await
        })
        .await,
    )
}

pub async fn frost_sign<C: FrostSuite>(
    shares: &Arc<Vec<FrostKeyShare<C>>>,
    signers: &[u16],
    msg: &'static [u8],
) {
    let s = session();
    let shares = shares.clone();
    let list = signers.to_vec();
    all(signers, move |ep| {
        let shares = shares.clone();
        let list = list.clone();
        async move {
            frost::sign(
                s,
                &shares[ep.index as usize],
                &list,
                msg,
                ep.incoming,
                ep.outgoing,
                &mut OsRng,
            )
            .await
        }
    })
    .await;
}

/// Raw frost-core signing by `t` of a dealer-split key, in one thread, no messages: the
/// library's own cost.
pub struct RawFrost<C: frost_core::Ciphersuite> {
    key_packages: BTreeMap<frost_core::Identifier<C>, frost_core::keys::KeyPackage<C>>,
    public: frost_core::keys::PublicKeyPackage<C>,
}

impl<C: frost_core::Ciphersuite> RawFrost<C> {
    pub fn new(t: u16, n: u16) -> Self {
        let (shares, public) = frost_core::keys::generate_with_dealer::<C, _>(
            n,
            t,
            frost_core::keys::IdentifierList::Default,
            &mut OsRng,
        )
        .expect("dealer");
        let key_packages = shares
            .into_iter()
            .map(|(id, s)| {
                (
                    id,
                    frost_core::keys::KeyPackage::try_from(s).expect("key package"),
                )
            })
            .collect();
        RawFrost {
            key_packages,
            public,
        }
    }

    pub fn sign(&self, t: usize, msg: &[u8]) {
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for (id, kp) in self.key_packages.iter().take(t) {
            let (n, c) = frost_core::round1::commit(kp.signing_share(), &mut OsRng);
            nonces.insert(*id, n);
            commitments.insert(*id, c);
        }
        let package = frost_core::SigningPackage::new(commitments, msg);
        let mut shares = BTreeMap::new();
        for (id, n) in &nonces {
            shares.insert(
                *id,
                frost_core::round2::sign(&package, n, &self.key_packages[id]).expect("share"),
            );
        }
        let sig = frost_core::aggregate(&package, &shares, &self.public).expect("aggregate");
        self.public
            .verifying_key()
            .verify(msg, &sig)
            .expect("verify");
    }
}

/// Raw cggmp21 presignature generation over round-based's own in-memory simulator (no
/// encoding, no Concord code): the library's own cost.
pub async fn raw_cggmp21_presign(shares: &Arc<Vec<EcdsaKeyShare>>, signers: &[u16]) {
    let signers = signers.to_vec();
    let n = signers.len() as u16;
    let eid_bytes: [u8; 32] = rand::random();
    let shares = shares.clone();
    let results = sim::async_env::run::<cggmp21::signing::msg::Msg<Secp256k1, sha2::Sha256>, _>(
        n,
        |i, party| {
            let shares = shares.clone();
            let signers = signers.clone();
            async move {
                let eid = cggmp21::ExecutionId::new(&eid_bytes);
                let share = shares[signers[i as usize] as usize].raw_cggmp21();
                cggmp21::signing(eid, i, &signers, share)
                    .generate_presignature(&mut OsRng, party)
                    .await
            }
        },
    )
    .await;
    results.expect_ok();
}

/// DKLs23 distributed key generation, `t`-of-`n` (no group setup exists to reuse).
pub async fn dkls_keygen<C: DklsEngineCurve>(t: u16, n: u16) -> Arc<Vec<DklsShare<C>>>
where
    C::Signature: Send,
{
    let th = Threshold::new(t, n).expect("threshold");
    let s = session();
    let parties: Vec<u16> = (0..n).collect();
    Arc::new(
        all(&parties, move |ep| async move {
            dkls::keygen(s, ep.index, th, ep.incoming, ep.outgoing).await
        })
        .await,
    )
}

/// DKLs23 interactive signing (three rounds) by exactly `t` signers.
pub async fn dkls_sign<C: DklsEngineCurve>(
    shares: &Arc<Vec<DklsShare<C>>>,
    signers: &[u16],
    digest: [u8; 32],
) where
    C::Signature: Send + 'static,
{
    let s = session();
    let shares = shares.clone();
    let list = signers.to_vec();
    all(signers, move |ep| {
        let shares = shares.clone();
        let list = list.clone();
        async move {
            dkls::sign(
                s,
                &shares[ep.index as usize],
                &list,
                &digest,
                ep.incoming,
                ep.outgoing,
            )
            .await
        }
    })
    .await;
}

/// Raw dkls23 key generation: every party's four phases run by the library in one thread,
/// messages handed over in memory with no encoding and no Concord code (the library's own
/// cost, to compare with [`dkls_keygen`]).
pub fn raw_dkls_keygen(t: u16, n: u16) {
    use dkls23::protocols::{Parameters, PartyIndex};
    type C = k256_dkls::Secp256k1;
    let params = Parameters::new(t as u8, n as u8).expect("parameters");
    let sid: [u8; 32] = rand::random();
    let idx = |i: u16| PartyIndex::new(i as u8 + 1).expect("index");
    let mut sessions: Vec<dkls23::DkgSession<C>> = (0..n)
        .map(|i| dkls23::DkgSession::new(params.clone(), idx(i), sid.to_vec()))
        .collect();
    let fragments: Vec<Vec<k256_dkls::Scalar>> = sessions.iter().map(|s| s.phase1()).collect();
    let mut proofs = Vec::new();
    let mut zero2 = Vec::new();
    let mut bip2 = BTreeMap::new();
    for (i, s) in sessions.iter_mut().enumerate() {
        let mine: Vec<_> = fragments.iter().map(|f| f[i]).collect();
        let (p, z, b) = s.phase2(&mine).expect("phase 2");
        proofs.push(p);
        zero2.extend(z);
        bip2.insert(idx(i as u16), b);
    }
    let mut zero3 = Vec::new();
    let mut mul3 = Vec::new();
    let mut bip3 = BTreeMap::new();
    for (i, s) in sessions.iter_mut().enumerate() {
        let (z, m, b) = s.phase3().expect("phase 3");
        zero3.extend(z);
        mul3.extend(m);
        bip3.insert(idx(i as u16), b);
    }
    for (i, s) in sessions.into_iter().enumerate() {
        let me = idx(i as u16);
        let z2: Vec<_> = zero2
            .iter()
            .filter(|m| m.parties.receiver == me)
            .cloned()
            .collect();
        let z3: Vec<_> = zero3
            .iter()
            .filter(|m| m.parties.receiver == me)
            .cloned()
            .collect();
        let m3: Vec<_> = mul3
            .iter()
            .filter(|m| m.parties.receiver == me)
            .cloned()
            .collect();
        s.phase4(&proofs, &z2, &z3, &m3, &bip2, &bip3, |_| String::new())
            .expect("phase 4");
    }
}
