//! Threshold signing demo: three parties (in one process) create a 2-of-3 wallet of each
//! scheme by DKG and sign with two of them; every signature is checked by an independent
//! verifier. ECDSA first prepares the signer group's auxiliary material: real safe primes by
//! default (a minute or two, with progress), or the committed INSECURE test primes with
//! `--insecure-test-primes`.
//!
//! Run: `cargo run --release -p concord-tss --example demo [-- --insecure-test-primes]`

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use concord_tss::ecdsa::{self, AuxMaterial, Primes};
use concord_tss::frost::{self, Ed25519, Taproot};
use concord_tss::local::LocalNetwork;
use concord_tss::{ProgressEvent, SessionId, Threshold, TssError};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use rand::rngs::OsRng;
use sha3::{Digest, Keccak256};

fn session(label: &str) -> SessionId {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut OsRng, &mut b);
    SessionId::derive(label, &b)
}

async fn all<T: Send + 'static, F, Fut>(n: u16, f: F) -> Result<Vec<T>, TssError>
where
    F: Fn(concord_tss::local::Endpoint) -> Fut,
    Fut: std::future::Future<Output = Result<T, TssError>> + Send + 'static,
{
    let parties: Vec<u16> = (0..n).collect();
    let handles: Vec<_> = LocalNetwork::connect(&parties)
        .into_iter()
        .map(|ep| tokio::spawn(f(ep)))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.map_err(|e| TssError::Transport(e.to_string()))??);
    }
    Ok(out)
}

fn check(ok: bool, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    if ok {
        println!("  ✓ {what}");
        Ok(())
    } else {
        Err(format!("verification failed: {what}").into())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let insecure = std::env::args().any(|a| a == "--insecure-test-primes");
    let t = Threshold::new(2, 3)?;
    println!("Concord threshold engines: 3 parties, {t} wallets\n");

    // Signer group: safe primes per party, then the aux-info protocol.
    let started = Instant::now();
    let primes: Vec<Primes> = if insecure {
        println!(
            "ECDSA signer group: using the committed INSECURE test primes (never in production)"
        );
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        (0..3)
            .map(|i| {
                Primes::from_bytes(&std::fs::read(
                    dir.join(format!("INSECURE-primes-{i}.bin")),
                )?)
                .map_err(Into::into)
            })
            .collect::<Result<_, Box<dyn std::error::Error>>>()?
    } else {
        println!(
            "ECDSA signer group: generating safe primes for 3 parties (about a minute each on 2 cores)"
        );
        let mut handles = Vec::new();
        for i in 0..3u16 {
            handles.push(tokio::task::spawn_blocking(move || {
                let mut progress = move |e: ProgressEvent| {
                    println!(
                        "  party {i}: {} {}/{}",
                        e.stage,
                        e.done,
                        e.total.unwrap_or(0)
                    );
                    let _ = std::io::stdout().flush();
                };
                Primes::generate(&mut OsRng, &mut progress)
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await?);
        }
        out
    };
    let primes = Arc::new(std::sync::Mutex::new(
        primes.into_iter().map(Some).collect::<Vec<_>>(),
    ));
    let s = session("demo-aux");
    let aux: Vec<AuxMaterial> = all(3, move |ep| {
        let p = primes
            .lock()
            .map(|mut v| v[ep.index as usize].take())
            .ok()
            .flatten();
        async move {
            let p = p.ok_or_else(|| TssError::InvalidParameters("primes missing".into()))?;
            let mut progress = move |e: ProgressEvent| {
                if ep.index == 0 {
                    match e.total {
                        Some(_) => println!("  auxiliary info: complete"),
                        None => println!("  auxiliary info: round {}", e.done + 1),
                    }
                }
            };
            ecdsa::generate_aux(
                s,
                ep.index,
                3,
                p,
                ep.incoming,
                ep.outgoing,
                &mut OsRng,
                &mut progress,
            )
            .await
        }
    })
    .await?;
    println!(
        "  signer group ready in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    let aux = Arc::new(aux);

    // ECDSA wallet (Ethereum).
    println!("ECDSA secp256k1 (Ethereum):");
    let s = session("demo-ecdsa-dkg");
    let a = aux.clone();
    let shares = Arc::new(
        all(3, move |ep| {
            let a = a.clone();
            async move {
                ecdsa::keygen(
                    s,
                    t,
                    &a[ep.index as usize],
                    ep.incoming,
                    ep.outgoing,
                    &mut OsRng,
                )
                .await
            }
        })
        .await?,
    );
    let pk = shares[0].public_key();
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk)?;
    let address = Keccak256::digest(&vk.to_encoded_point(false).as_bytes()[1..]);
    println!("  wallet address 0x{}", hex::encode(&address[12..]));
    let digest: [u8; 32] = Keccak256::digest(b"concord demo transaction").into();
    let s = session("demo-ecdsa-sign");
    let sh = shares.clone();
    let signers = [0u16, 2];
    let sig = all(3, move |ep| {
        let sh = sh.clone();
        async move {
            if !signers.contains(&ep.index) {
                return Ok(None);
            }
            ecdsa::sign(
                s,
                &sh[ep.index as usize],
                &signers,
                &digest,
                ep.incoming,
                ep.outgoing,
                &mut OsRng,
            )
            .await
            .map(Some)
        }
    })
    .await?
    .into_iter()
    .flatten()
    .next()
    .ok_or("no signature")?;
    let k256_sig = k256::ecdsa::Signature::from_slice(&sig.to_rs_bytes())?;
    check(
        vk.verify_prehash(&digest, &k256_sig).is_ok(),
        "parties 0 and 2 signed; k256 verifies the signature",
    )?;
    let rid = k256::ecdsa::RecoveryId::from_byte(sig.recovery_id).ok_or("bad recovery id")?;
    let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &k256_sig, rid)?;
    check(
        recovered == vk,
        "the recovery id recovers the wallet's key, as the chain will",
    )?;

    // Taproot wallet (Bitcoin).
    println!("\nSchnorr Taproot (Bitcoin):");
    let s = session("demo-tr-dkg");
    let tr = Arc::new(
        all(3, move |ep| async move {
            frost::dkg::<Taproot>(s, ep.index, t, ep.incoming, ep.outgoing, &mut OsRng).await
        })
        .await?,
    );
    println!("  output key (x-only) {}", hex::encode(tr[0].public_key()));
    let sighash = [0x42u8; 32];
    let s = session("demo-tr-sign");
    let trc = tr.clone();
    let sig = all(3, move |ep| {
        let trc = trc.clone();
        async move {
            if ep.index == 0 {
                return Ok(None);
            }
            frost::sign(
                s,
                &trc[ep.index as usize],
                &[1, 2],
                &sighash,
                ep.incoming,
                ep.outgoing,
                &mut OsRng,
            )
            .await
            .map(Some)
        }
    })
    .await?
    .into_iter()
    .flatten()
    .next()
    .ok_or("no signature")?;
    let xonly = k256::schnorr::VerifyingKey::from_bytes(&tr[0].public_key())?;
    check(
        xonly
            .verify_raw(
                &sighash,
                &k256::schnorr::Signature::try_from(sig.as_slice())?,
            )
            .is_ok(),
        "parties 1 and 2 signed; k256 verifies the BIP-340 signature",
    )?;

    // Ed25519 (exchange API key).
    println!("\nEd25519 (exchange withdraw key):");
    let s = session("demo-ed-dkg");
    let ed = Arc::new(
        all(3, move |ep| async move {
            frost::dkg::<Ed25519>(s, ep.index, t, ep.incoming, ep.outgoing, &mut OsRng).await
        })
        .await?,
    );
    println!("  public key {}", hex::encode(ed[0].public_key()));
    let request: &'static [u8] =
        b"coin=ETH&network=ETH&address=0xabc&amount=1.5&timestamp=1700000000000";
    let s = session("demo-ed-sign");
    let edc = ed.clone();
    let sig = all(3, move |ep| {
        let edc = edc.clone();
        async move {
            if ep.index == 1 {
                return Ok(None);
            }
            frost::sign(
                s,
                &edc[ep.index as usize],
                &[0, 2],
                request,
                ep.incoming,
                ep.outgoing,
                &mut OsRng,
            )
            .await
            .map(Some)
        }
    })
    .await?
    .into_iter()
    .flatten()
    .next()
    .ok_or("no signature")?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(ed[0].public_key().as_slice().try_into()?)?;
    check(
        vk.verify_strict(request, &ed25519_dalek::Signature::from_slice(&sig)?)
            .is_ok(),
        "parties 0 and 2 signed; ed25519-dalek verify_strict accepts the request signature",
    )?;

    println!(
        "\nAll signatures verified ({:.1} s).",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
