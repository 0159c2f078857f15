//! Regenerates the format snapshots under `crates/tss/tests/fixtures/snapshots/`: one stored
//! object of every kind, and the messages party 0 sends in every protocol. The snapshot test
//! proves later versions still load them; regenerate only when a format changes on purpose
//! (and bump its version). Uses the INSECURE fixture primes and aux material.
//!
//! Run: `cargo run -p concord-tss --features spof-key-import --example gen_snapshots`
//! (`-- --only-dkls` rewrites only the DKLs23 files, `dkls-key-share.bin` and
//! `dkls-messages.txt`, leaving the older snapshots as they are).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a panic is a failure report

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use concord_tss::dkls;
use concord_tss::ecdsa::{self, AuxMaterial, Primes};
use concord_tss::frost::{self, Ed25519, Taproot};
use concord_tss::local::{LocalNetwork, Tamper};
use concord_tss::{Envelope, NoProgress, SessionId, Threshold, TssError, inspect};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

type Log = Arc<Mutex<Vec<Envelope>>>;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

async fn run<T: Send + 'static, F, Fut>(log: &Log, n: u16, f: F) -> Vec<T>
where
    F: Fn(concord_tss::local::Endpoint) -> Fut,
    Fut: std::future::Future<Output = Result<T, TssError>> + Send + 'static,
{
    let log = log.clone();
    let eps = LocalNetwork::connect_tampered(&(0..n).collect::<Vec<_>>(), move |env, to| {
        // Record each message once (broadcasts are delivered to every peer).
        if env.sender == 0 && (env.recipient.is_some() || to == 1) {
            log.lock().unwrap().push(env.clone());
        }
        Tamper::Deliver
    });
    let handles: Vec<_> = eps.into_iter().map(|ep| tokio::spawn(f(ep))).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap().unwrap());
    }
    out
}

fn rng(i: u16) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(1000 + u64::from(i))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = dir().join("snapshots");
    std::fs::create_dir_all(&out)?;
    let t22 = Threshold::new(2, 2)?;
    let sid = |s: &str| SessionId::derive("snapshot", s.as_bytes());

    // DKLs23: DKG and signing (the library draws its own randomness: not reproducible).
    let log: Log = Arc::default();
    let dk = Arc::new(
        run(&log, 2, move |ep| async move {
            dkls::keygen::<dkls::Secp256k1>(
                sid("dkls-dkg"),
                ep.index,
                t22,
                ep.incoming,
                ep.outgoing,
            )
            .await
        })
        .await,
    );
    std::fs::write(out.join("dkls-key-share.bin"), &*dk[0].to_bytes())?;
    run(&log, 2, move |ep| {
        let dk = dk.clone();
        async move {
            dkls::sign(
                sid("dkls-sign"),
                &dk[ep.index as usize],
                &[0, 1],
                &[4; 32],
                ep.incoming,
                ep.outgoing,
            )
            .await
        }
    })
    .await;
    write_messages(&log, &out.join("dkls-messages.txt"))?;
    if std::env::args().any(|a| a == "--only-dkls") {
        eprintln!("DKLs23 snapshots written to {}", out.display());
        return Ok(());
    }

    let log: Log = Arc::default();

    // ECDSA: aux info, keygen, presign, online, full sign.
    run(&log, 2, |ep| async move {
        let p = Primes::from_bytes(
            &std::fs::read(dir().join(format!("INSECURE-primes-{}.bin", ep.index))).unwrap(),
        )?;
        ecdsa::generate_aux(
            sid("aux"),
            ep.index,
            2,
            p,
            ep.incoming,
            ep.outgoing,
            &mut rng(ep.index),
            &mut NoProgress,
        )
        .await
    })
    .await;
    let load_aux = |i: u16| {
        AuxMaterial::from_bytes(
            &std::fs::read(dir().join(format!("INSECURE-aux-n2-party{i}.bin"))).unwrap(),
        )
        .unwrap()
    };
    let shares = Arc::new(
        run(&log, 2, move |ep| async move {
            ecdsa::keygen(
                sid("keygen"),
                t22,
                &load_aux(ep.index),
                ep.incoming,
                ep.outgoing,
                &mut rng(ep.index),
            )
            .await
        })
        .await,
    );
    std::fs::write(out.join("ecdsa-key-share.bin"), &*shares[0].to_bytes())?;
    let s = shares.clone();
    let presigs = run(&log, 2, move |ep| {
        let s = s.clone();
        async move {
            ecdsa::presign(
                sid("presign"),
                &s[ep.index as usize],
                &[0, 1],
                ep.incoming,
                ep.outgoing,
                &mut rng(ep.index),
            )
            .await
        }
    })
    .await;
    std::fs::write(out.join("ecdsa-presignature.bin"), &*presigs[0].to_bytes())?;
    let presigs = Arc::new(Mutex::new(
        presigs.into_iter().map(Some).collect::<Vec<_>>(),
    ));
    run(&log, 2, move |ep| {
        let p = presigs.lock().unwrap()[ep.index as usize].take().unwrap();
        async move {
            ecdsa::sign_with_presignature(sid("online"), p, &[1; 32], ep.incoming, ep.outgoing)
                .await
        }
    })
    .await;
    let s = shares.clone();
    run(&log, 2, move |ep| {
        let s = s.clone();
        async move {
            ecdsa::sign(
                sid("sign"),
                &s[ep.index as usize],
                &[0, 1],
                &[2; 32],
                ep.incoming,
                ep.outgoing,
                &mut rng(ep.index),
            )
            .await
        }
    })
    .await;
    let key = zeroize::Zeroizing::new([7u8; 32]);
    let cores = ecdsa::import_secret_key(&key, t22, &mut rng(0))?;
    std::fs::write(out.join("ecdsa-core-share.bin"), &*cores[0].to_bytes())?;

    // FROST, both suites: DKG and signing.
    let ed = Arc::new(
        run(&log, 2, move |ep| async move {
            frost::dkg::<Ed25519>(
                sid("ed-dkg"),
                ep.index,
                t22,
                ep.incoming,
                ep.outgoing,
                &mut rng(ep.index),
            )
            .await
        })
        .await,
    );
    std::fs::write(out.join("ed25519-key-share.bin"), &*ed[0].to_bytes())?;
    run(&log, 2, move |ep| {
        let ed = ed.clone();
        async move {
            frost::sign(
                sid("ed-sign"),
                &ed[ep.index as usize],
                &[0, 1],
                b"snapshot",
                ep.incoming,
                ep.outgoing,
                &mut rng(ep.index),
            )
            .await
        }
    })
    .await;
    let tr = Arc::new(
        run(&log, 2, move |ep| async move {
            frost::dkg::<Taproot>(
                sid("tr-dkg"),
                ep.index,
                t22,
                ep.incoming,
                ep.outgoing,
                &mut rng(ep.index),
            )
            .await
        })
        .await,
    );
    std::fs::write(out.join("taproot-key-share.bin"), &*tr[0].to_bytes())?;
    run(&log, 2, move |ep| {
        let tr = tr.clone();
        async move {
            frost::sign(
                sid("tr-sign"),
                &tr[ep.index as usize],
                &[0, 1],
                &[3; 32],
                ep.incoming,
                ep.outgoing,
                &mut rng(ep.index),
            )
            .await
        }
    })
    .await;

    write_messages(&log, &out.join("messages.txt"))?;
    eprintln!("snapshots written to {}", out.display());
    Ok(())
}

fn write_messages(log: &Log, path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut lines = String::from(
        "# protocol|round|envelope hex — messages party 0 sent; every line must still decode\n",
    );
    for env in log.lock().unwrap().iter() {
        let kind = inspect(env)?;
        let round = kind.round.map(|r| r.to_string()).unwrap_or_default();
        lines.push_str(&format!(
            "{}|{}|{}\n",
            kind.protocol,
            round,
            hex::encode(env.encode())
        ));
    }
    std::fs::write(path, lines)?;
    Ok(())
}
