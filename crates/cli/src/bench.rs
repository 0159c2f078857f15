//! `concord bench sign`: a bounded load against a running system, printing one table.
//!
//! Each client loops: request a signature of a fresh random message, long-poll the job until
//! it is done, record the latency (request sent → verified signature in hand). Samples are
//! split into warm (a pooled presignature was used) and cold (interactive signing). With
//! `--raw-fixtures DIR`, the same run also measures the bare threshold engine in-process
//! (three parties, 2-of-3 ECDSA, INSECURE fixture aux material) for comparison.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;

use concord_wire::authority::{Action, AddressRef, AgreementRule};

use crate::authority::SignerArgs;
use crate::client::{Api, ApiArgs};

/// Arguments of `concord bench sign`.
#[derive(Args)]
pub struct BenchArgs {
    /// Wallet to sign with.
    #[arg(long)]
    wallet: String,
    /// How long to run, in seconds (bounded: at most 600).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Concurrent clients (at most 32).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Pause between a client's requests, in milliseconds (lets the presignature pool refill).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// ECDSA signing mode: presigned (default) or interactive.
    #[arg(long, default_value = "presigned")]
    mode: String,
    /// Also measure the bare engine with the INSECURE fixtures in this directory.
    #[arg(long)]
    raw_fixtures: Option<PathBuf>,
    /// The requester (a trader of the policy, which must allow raw messages for the wallet).
    #[command(flatten)]
    signer: SignerArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Default)]
struct Samples {
    warm: Vec<Duration>,
    cold: Vec<Duration>,
    failed: usize,
    first_error: Option<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
        .unwrap_or_else(|| "—".into())
}

fn row(name: &str, mut v: Vec<Duration>, elapsed: Duration) -> serde_json::Value {
    v.sort();
    json!({
        "kind": name,
        "count": v.len(),
        "p50_ms": percentile(&v, 0.5).map(|d| d.as_secs_f64() * 1e3),
        "p99_ms": percentile(&v, 0.99).map(|d| d.as_secs_f64() * 1e3),
        "max_ms": v.last().map(|d| d.as_secs_f64() * 1e3),
        "per_second": v.len() as f64 / elapsed.as_secs_f64(),
    })
}

/// Runs the load and prints the table.
pub async fn sign(api: &ApiArgs, args: BenchArgs) -> Result<()> {
    if args.duration == 0 || args.duration > 600 {
        bail!("--duration must be between 1 and 600 seconds");
    }
    if args.concurrency == 0 || args.concurrency > 32 {
        bail!("--concurrency must be between 1 and 32");
    }
    let api = Arc::new(Api::new(api)?);
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let samples = Arc::new(std::sync::Mutex::new(Samples::default()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let api = api.clone();
        let samples = samples.clone();
        let wallet: concord_tss::WalletId = args
            .wallet
            .parse()
            .map_err(|e| anyhow::anyhow!("--wallet: {e}"))?;
        let signer = args.signer.clone();
        let mode = args.mode.clone();
        let pause = Duration::from_millis(args.pause_ms);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let msg: [u8; 16] = rand::random();
                let t0 = Instant::now();
                let outcome = async {
                    let intent = signer.sign(Action::SignMessage {
                        wallet,
                        message: msg.to_vec(),
                        rule: AgreementRule::All,
                    })?;
                    let job = api
                        .post("/v1/signatures", &json!({ "intent": intent, "mode": mode }))
                        .await?;
                    let id = job["id"].as_str().unwrap_or_default().to_owned();
                    let done = api.get(&format!("/v1/jobs/{id}?wait=60")).await?;
                    anyhow::Ok(done)
                }
                .await;
                let elapsed = t0.elapsed();
                {
                    let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
                    match outcome {
                        Ok(done) if done["status"] == "done" => {
                            if done["result"]["presigned"] == true {
                                s.warm.push(elapsed);
                            } else {
                                s.cold.push(elapsed);
                            }
                        }
                        Ok(done) => {
                            s.failed += 1;
                            if s.first_error.is_none() {
                                s.first_error = Some(match done["error"].as_str() {
                                    Some(e) => e.to_owned(),
                                    None => format!(
                                        "the job was still {} after the wait: {}",
                                        done["status"],
                                        done.to_string().chars().take(300).collect::<String>()
                                    ),
                                });
                            }
                        }
                        Err(e) => {
                            s.failed += 1;
                            if s.first_error.is_none() {
                                s.first_error = Some(format!("{e:#}"));
                            }
                        }
                    }
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    let s = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    let total = s.warm.len() + s.cold.len();
    let mut rows = vec![
        row("warm (presignature ready)", s.warm.clone(), elapsed),
        row("cold (interactive)", s.cold.clone(), elapsed),
    ];
    let mut all = s.warm.clone();
    all.extend(&s.cold);
    rows.push(row("all signatures", all, elapsed));
    if let Some(dir) = &args.raw_fixtures {
        eprintln!("Measuring the bare engine for {} s…", args.duration.min(60));
        rows.push(raw_engine(dir, Duration::from_secs(args.duration.min(60))).await?);
    }
    if let Some(e) = &s.first_error {
        eprintln!("first failure: {e}");
    }
    let report = json!({
        "first_error": s.first_error,
        "duration_s": elapsed.as_secs_f64(),
        "concurrency": args.concurrency,
        "failed": s.failed,
        "signatures": total,
        "rows": rows,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} s, {} client(s), {} signatures, {} failed",
            elapsed.as_secs(),
            args.concurrency,
            total,
            s.failed
        );
        println!("| kind | count | p50 | p99 | max | signatures/s |");
        println!("|---|---|---|---|---|---|");
        for r in report["rows"].as_array().into_iter().flatten() {
            let get = |k: &str| r[k].as_f64().map(|v| Duration::from_secs_f64(v / 1e3));
            println!(
                "| {} | {} | {} | {} | {} | {:.2} |",
                r["kind"].as_str().unwrap_or(""),
                r["count"],
                ms(get("p50_ms")),
                ms(get("p99_ms")),
                ms(get("max_ms")),
                r["per_second"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// The bare engine: 2-of-3 ECDSA, presignature then online signing, all parties in this
/// process, for `duration`.
async fn raw_engine(dir: &std::path::Path, duration: Duration) -> Result<serde_json::Value> {
    use concord_tss::ecdsa::{self, AuxMaterial};
    use concord_tss::local::LocalNetwork;
    use concord_tss::{SessionId, Threshold};
    let aux: Vec<AuxMaterial> = (0..3)
        .map(|i| {
            let bytes = std::fs::read(dir.join(format!("INSECURE-aux-n3-party{i}.bin")))?;
            Ok(AuxMaterial::from_bytes(&bytes)?)
        })
        .collect::<Result<_>>()?;
    let aux = Arc::new(aux);
    let t = Threshold::new(2, 3)?;
    let sid = |label: &str| SessionId::derive(label, &rand::random::<[u8; 16]>());
    let s = sid("raw-keygen");
    let mut handles = Vec::new();
    for ep in LocalNetwork::connect(&[0, 1, 2]) {
        let aux = aux.clone();
        handles.push(tokio::spawn(async move {
            ecdsa::keygen(
                s,
                t,
                &aux[ep.index as usize],
                ep.incoming,
                ep.outgoing,
                &mut rand::rngs::OsRng,
            )
            .await
        }));
    }
    let mut shares = Vec::new();
    for h in handles {
        shares.push(h.await??);
    }
    let shares = Arc::new(shares);
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < duration {
        let t0 = Instant::now();
        let s = sid("raw-presign");
        let mut hs = Vec::new();
        for ep in LocalNetwork::connect(&[0, 1]) {
            let shares = shares.clone();
            hs.push(tokio::spawn(async move {
                let p = ecdsa::presign(
                    s,
                    &shares[ep.index as usize],
                    &[0, 1],
                    ep.incoming,
                    ep.outgoing,
                    &mut rand::rngs::OsRng,
                )
                .await?;
                Ok::<_, concord_tss::TssError>(p)
            }));
        }
        let mut presigs = Vec::new();
        for h in hs {
            presigs.push(h.await??);
        }
        let digest: [u8; 32] = rand::random();
        let pk = presigs[0].public_key();
        let partials: Vec<_> = presigs
            .into_iter()
            .map(|p| p.issue_partial(&digest))
            .collect();
        ecdsa::combine(&pk, &digest, &[0, 1], &partials)?;
        samples.push(t0.elapsed());
    }
    Ok(row(
        "bare engine: presignature + online signing",
        samples,
        started.elapsed(),
    ))
}

/// Arguments of `concord bench transfers`.
#[derive(clap::Args)]
pub struct TransferBenchArgs {
    /// Directory for the benchmark's own devnet (replaced if it exists).
    #[arg(long, default_value = "devnet-bench")]
    dir: std::path::PathBuf,
    /// Deposits, and withdrawals, to measure.
    #[arg(long, default_value_t = 30)]
    count: usize,
    /// Seconds between two deposits (the presignature pool refills in between).
    #[arg(long, default_value_t = 1.5)]
    interval: f64,
    /// Use the committed INSECURE test primes (tests only).
    #[arg(long)]
    insecure_test_primes: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn ms_of(t: &serde_json::Value, step: &str) -> Option<Duration> {
    t["timings_ms"][step]
        .as_f64()
        .map(|v| Duration::from_secs_f64(v / 1e3))
}

/// `concord bench transfers`: a devnet with anvil mining each transaction at once; deposits
/// with a presignature ready (request → transaction accepted by anvil) and withdraw-request
/// signing with the sharded Ed25519 key (FROST), with latency percentiles.
pub async fn transfers(args: TransferBenchArgs) -> Result<()> {
    let mut d = crate::demo::fresh(&args.dir, true, 0).await?;
    let outcome = async {
        let p = crate::demo::prepare(&mut d, args.insecure_test_primes).await?;
        // Let the pool fill before the first deposit.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let started = Instant::now();
        let (mut accepted, mut client_seen, mut signed) = (Vec::new(), Vec::new(), Vec::new());
        let mut presigned = 0;
        for _ in 0..args.count {
            let sent = Instant::now();
            let intent = d.deposit(&p.wallet, "ETH", "0.001", AgreementRule::All, &[])?;
            let t = d
                .api
                .post("/v1/transfers/deposits", &json!({ "intent": intent }))
                .await?;
            let id = t["id"].as_str().unwrap_or_default().to_owned();
            let t = d
                .api
                .get(&format!("/v1/transfers/{id}?wait=30&until=broadcast"))
                .await?;
            client_seen.push(sent.elapsed());
            let job = t["sign_job_id"].as_str().unwrap_or_default();
            let j = d.api.get(&format!("/v1/jobs/{job}")).await?;
            if j["result"]["presigned"] == true {
                presigned += 1;
            }
            match (ms_of(&t, "broadcast"), ms_of(&t, "signature")) {
                (Some(a), Some(s)) => {
                    accepted.push(a);
                    signed.push(s);
                }
                _ => anyhow::bail!(
                    "deposit {id} did not reach the chain: {}",
                    t["error"].as_str().unwrap_or("no error recorded")
                ),
            }
            tokio::time::sleep(Duration::from_secs_f64(args.interval)).await;
        }
        let deposits_elapsed = started.elapsed();
        let started = Instant::now();
        let (mut frost, mut to_signature) = (Vec::new(), Vec::new());
        for _ in 0..args.count {
            let intent = d.withdrawal(AddressRef::Label("desk".into()), "0.01")?;
            let t = d
                .api
                .post("/v1/transfers/withdrawals", &json!({ "intent": intent }))
                .await?;
            let id = t["id"].as_str().unwrap_or_default().to_owned();
            let t = d
                .api
                .get(&format!("/v1/transfers/{id}?wait=30&until=submitted"))
                .await?;
            match (ms_of(&t, "signing"), ms_of(&t, "signature")) {
                (Some(a), Some(b)) => {
                    frost.push(b.saturating_sub(a));
                    to_signature.push(b);
                }
                _ => anyhow::bail!(
                    "withdrawal {id} was not signed: {}",
                    t["error"].as_str().unwrap_or("no error recorded")
                ),
            }
        }
        let withdrawals_elapsed = started.elapsed();
        Ok::<_, anyhow::Error>(json!({
            "presigned_deposits": presigned,
            "rows": [
                row("deposit: request → tx accepted by anvil (coordinator clock)", accepted, deposits_elapsed),
                row("deposit: request → threshold signature verified", signed, deposits_elapsed),
                row("deposit: client POST → broadcast seen by long-poll", client_seen, deposits_elapsed),
                row("withdraw request: FROST-Ed25519 signing (proposal → verified signature)", frost, withdrawals_elapsed),
                row("withdraw request: request → verified signature", to_signature, withdrawals_elapsed),
            ],
        }))
    }
    .await;
    let _ = crate::devnet::down(&args.dir).await;
    let report = outcome?;
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "Deposits from a presignature: {} of {}",
        report["presigned_deposits"], args.count
    );
    println!("| measurement | count | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    for r in report["rows"].as_array().into_iter().flatten() {
        let f = |k: &str| {
            r[k].as_f64()
                .map(|v| format!("{v:.1} ms"))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            r["kind"].as_str().unwrap_or(""),
            r["count"],
            f("p50_ms"),
            f("p99_ms"),
            f("max_ms")
        );
    }
    Ok(())
}
