//! Generates the INSECURE test fixtures committed under `crates/tss/tests/fixtures/`:
//! Paillier safe primes for 5 parties and the ECDSA auxiliary material of signer groups of
//! 2, 3 and 5 parties made from them by the real aux-info protocol.
//!
//! These primes are public (they are in the repository): material made from them protects
//! nothing. They exist only so that tests do not spend minutes finding safe primes.
//!
//! Run: `cargo run --release -p concord-tss --example gen_fixtures -- crates/tss/tests/fixtures`

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a panic is a failure report

use std::path::PathBuf;
use std::time::Instant;

use concord_tss::ecdsa::{Primes, generate_aux};
use concord_tss::local::LocalNetwork;
use concord_tss::{NoProgress, SessionId};
use futures::StreamExt;
use rand::rngs::OsRng;

const PARTIES: u16 = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "crates/tss/tests/fixtures".into()),
    );
    std::fs::create_dir_all(&dir)?;

    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..PARTIES {
        let path = dir.join(format!("INSECURE-primes-{i}.bin"));
        if path.exists() {
            continue;
        }
        handles.push(tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let primes = Primes::generate(&mut OsRng, &mut NoProgress);
            std::fs::write(&path, &*primes.to_bytes()).map(|_| {
                eprintln!("primes for party {i}: {:.1} s", t.elapsed().as_secs_f64());
            })
        }));
    }
    for h in handles {
        h.await??;
    }
    eprintln!("all primes: {:.1} s", start.elapsed().as_secs_f64());

    for n in [2u16, 3, 5] {
        let t = Instant::now();
        let endpoints = LocalNetwork::connect(&(0..n).collect::<Vec<_>>());
        let session = SessionId::derive("fixture-aux", &n.to_be_bytes());
        let mut tasks = Vec::new();
        for ep in endpoints {
            let primes = Primes::from_bytes(&std::fs::read(
                dir.join(format!("INSECURE-primes-{}.bin", ep.index)),
            )?)?;
            tasks.push(tokio::spawn(async move {
                generate_aux(
                    session,
                    ep.index,
                    n,
                    primes,
                    ep.incoming.boxed(),
                    ep.outgoing,
                    &mut OsRng,
                    &mut NoProgress,
                )
                .await
            }));
        }
        for task in tasks {
            let aux = task.await??;
            std::fs::write(
                dir.join(format!("INSECURE-aux-n{n}-party{}.bin", aux.index())),
                &*aux.to_bytes(),
            )?;
        }
        eprintln!(
            "aux info for {n} parties: {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
