//! Shared helpers for the integration tests: fixtures and running n parties in-process.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;

use concord_tss::ecdsa::{AuxMaterial, Primes};
use concord_tss::local::{Endpoint, LocalNetwork, Tamper};
use concord_tss::{Envelope, TssError};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// INSECURE committed test primes of party `i` (0..5).
pub fn primes(i: u16) -> Primes {
    Primes::from_bytes(&std::fs::read(fixtures().join(format!("INSECURE-primes-{i}.bin"))).unwrap())
        .unwrap()
}

/// INSECURE committed aux material of party `i` in a group of `n` (n in 2, 3, 5).
pub fn aux(n: u16, i: u16) -> AuxMaterial {
    AuxMaterial::from_bytes(
        &std::fs::read(fixtures().join(format!("INSECURE-aux-n{n}-party{i}.bin"))).unwrap(),
    )
    .unwrap()
}

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Runs one future per party concurrently on the runtime and returns each party's result,
/// in the order of `parties`.
pub async fn run<T, F, Fut>(parties: &[u16], f: F) -> Vec<Result<T, TssError>>
where
    T: Send + 'static,
    F: Fn(Endpoint) -> Fut,
    Fut: Future<Output = Result<T, TssError>> + Send + 'static,
{
    run_on(LocalNetwork::connect(parties), f).await
}

/// Like [`run`], with a tamper hook on the network.
pub async fn run_tampered<T, F, Fut>(
    parties: &[u16],
    hook: impl Fn(&mut Envelope, u16) -> Tamper + Send + Sync + 'static,
    f: F,
) -> Vec<Result<T, TssError>>
where
    T: Send + 'static,
    F: Fn(Endpoint) -> Fut,
    Fut: Future<Output = Result<T, TssError>> + Send + 'static,
{
    run_on(LocalNetwork::connect_tampered(parties, hook), f).await
}

/// Runs the parties; as soon as one fails, the others (which would wait for it forever) are
/// stopped and reported as aborted.
pub async fn run_on<T, F, Fut>(endpoints: Vec<Endpoint>, f: F) -> Vec<Result<T, TssError>>
where
    T: Send + 'static,
    F: Fn(Endpoint) -> Fut,
    Fut: Future<Output = Result<T, TssError>> + Send + 'static,
{
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;
    let handles: Vec<_> = endpoints
        .into_iter()
        .map(|ep| tokio::spawn(f(ep)))
        .collect();
    let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
    let mut pending: FuturesUnordered<_> = handles
        .into_iter()
        .enumerate()
        .map(|(i, h)| async move { (i, h.await) })
        .collect();
    let mut out: Vec<Option<Result<T, TssError>>> = (0..aborts.len()).map(|_| None).collect();
    while let Some((i, res)) = pending.next().await {
        match res {
            Ok(r) => {
                let failed = r.is_err();
                out[i] = Some(r);
                if failed {
                    aborts.iter().for_each(|a| a.abort());
                }
            }
            Err(e) if e.is_cancelled() => {
                out[i] = Some(Err(TssError::Transport(
                    "aborted: another party failed".into(),
                )))
            }
            Err(e) => panic!("party task panicked: {e}"),
        }
    }
    out.into_iter()
        .map(|r| r.expect("every party reported"))
        .collect()
}

/// All k-element subsets of 0..n, ascending.
pub fn subsets(n: u16, k: usize) -> Vec<Vec<u16>> {
    fn go(start: u16, n: u16, k: usize, cur: &mut Vec<u16>, out: &mut Vec<Vec<u16>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            go(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(0, n, k, &mut Vec::new(), &mut out);
    out
}

/// Ethereum address of a SEC1 public key: last 20 bytes of keccak256(uncompressed x || y).
pub fn eth_address(sec1: &[u8]) -> String {
    use sha3::{Digest, Keccak256};
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).unwrap();
    let uncompressed = vk.to_encoded_point(false);
    let hash = Keccak256::digest(&uncompressed.as_bytes()[1..]);
    format!("0x{}", hex::encode(&hash[12..]))
}
