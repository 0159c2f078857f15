//! `concord bench sign`: a bounded load against a running system, printing one table;
//! `concord bench api`: the REST API's latency over HTTPS and over plain HTTP.
//!
//! Each client loops: request a signature of a fresh random message, long-poll the job until
//! it is done, record the latency (request sent → verified signature in hand). Samples are
//! split into warm (a pooled presignature was used) and cold (interactive signing). The bare
//! engines, in-process, are measured by `concord-tss`'s `engines` example
//! (`scripts/bench-signing.sh` runs both and prints one table).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest as _;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use concord_wire::authority::{Action, AddressRef, AgreementRule};

use crate::authority::SignerArgs;
use crate::client::Api;

/// Arguments of `concord bench sign`.
#[derive(Args)]
pub struct BenchArgs {
    /// Wallet to sign with (id or unique prefix).
    #[arg(long, value_parser = crate::args::wallet_ref)]
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
    /// ECDSA signing mode.
    #[arg(long, value_enum, default_value = "presigned")]
    mode: crate::args::Mode,
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
pub async fn sign(api: Api, args: BenchArgs) -> Result<()> {
    if args.duration == 0 || args.duration > 600 {
        return Err(crate::output::usage(
            "--duration must be between 1 and 600 seconds",
        ));
    }
    if args.concurrency == 0 || args.concurrency > 32 {
        return Err(crate::output::usage(
            "--concurrency must be between 1 and 32",
        ));
    }
    let wallet = api.resolve_wallet(&args.wallet).await?;
    let api = Arc::new(api);
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let samples = Arc::new(std::sync::Mutex::new(Samples::default()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let api = api.clone();
        let samples = samples.clone();
        let signer = args.signer.clone();
        let mode = args.mode.as_str();
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
        crate::outln!("{report}");
    } else {
        crate::outln!(
            "{} s, {} client(s), {} signatures, {} failed",
            elapsed.as_secs(),
            args.concurrency,
            total,
            s.failed
        );
        crate::outln!("| kind | count | p50 | p99 | max | signatures/s |");
        crate::outln!("|---|---|---|---|---|---|");
        for r in report["rows"].as_array().into_iter().flatten() {
            let get = |k: &str| r[k].as_f64().map(|v| Duration::from_secs_f64(v / 1e3));
            crate::outln!(
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

/// Arguments of `concord bench transfers`.
#[derive(clap::Args)]
pub struct TransferBenchArgs {
    /// Directory for the benchmark's own devnet (replaced if it exists).
    /// [default: ~/.local/state/concord/devnet-bench]
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
    /// Deposits, and withdrawals, to measure.
    #[arg(long, default_value_t = 30)]
    count: usize,
    /// Seconds between two deposits (the presignature pool refills in between).
    #[arg(long, default_value_t = 1.5)]
    interval: f64,
    #[command(flatten)]
    setup: crate::demo::GroupSetup,
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
/// (request → transaction accepted by anvil; signed interactively by a DKLs23 group, from a
/// ready presignature by a cggmp21 group) and withdraw-request signing with the sharded
/// Ed25519 key (FROST), with latency percentiles.
pub async fn transfers(args: TransferBenchArgs) -> Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| crate::connect::state_dir().join("devnet-bench"));
    let mut d = crate::demo::fresh(&dir, true, 0).await?;
    let outcome = async {
        let p = crate::demo::prepare(&mut d, args.setup).await?;
        // Let the pool fill before the first deposit.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let started = Instant::now();
        let (mut accepted, mut client_seen, mut signed) = (Vec::new(), Vec::new(), Vec::new());
        // Where the time goes: request → each step of the deposit machine.
        let mut steps: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
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
            for step in ["resolving", "signing", "signature", "signed"] {
                if let Some(at) = ms_of(&t, step) {
                    steps.entry(step.to_owned()).or_default().push(at);
                }
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
        // Native multisig: a 2-of-3 P2WSH wallet on Litecoin and a 2-of-3 Safe, each module
        // signing with its own key.
        let mut multisig_rows = Vec::new();
        if d.info.ltc.is_some() {
            let w = crate::demo_multisig::create(&mut d, &p.wallet).await?;
            let network: concord_chain::utxo::UtxoNetwork = crate::devnet::LTC_CHAIN.parse()?;
            let scripts = [&w.p2wpkh.1, &w.p2tr.1, &w.p2wsh.1]
                .into_iter()
                .map(|a| network.script_of(a))
                .collect::<Result<Vec<_>, _>>()?;
            crate::demo_multisig::fund_ltc(&d.info, &scripts, args.count as u64 + 5).await?;
            crate::devnet::fund(
                &d.client,
                crate::devnet::DEV_KEY_0,
                concord_chain::Asset::Native,
                w.safe.1,
                crate::demo::eth("1")?,
            )
            .await?;
            for (what, wallet, network, coin) in [
                ("P2WPKH (threshold ECDSA) deposit: request → tx accepted by litecoind", &w.p2wpkh.0, "LTC", "LTC"),
                ("P2TR (FROST Taproot) deposit: request → tx accepted by litecoind", &w.p2tr.0, "LTC", "LTC"),
                ("P2WSH 2-of-3 deposit: request → tx accepted by litecoind", &w.p2wsh.0, "LTC", "LTC"),
                ("Safe 2-of-3 deposit: request → execTransaction accepted by anvil", &w.safe.0, "ETH", "ETH"),
            ] {
                let (times, elapsed) =
                    deposit_latencies(&d, wallet, network, coin, args.count, args.interval).await?;
                multisig_rows.push(row(what, times, elapsed));
            }
        }
        Ok::<_, anyhow::Error>(json!({
            "engine": concord_tss::EcdsaEngine::from(args.setup.engine),
            "presigned_deposits": presigned,
            "rows": [
                row("deposit: request → tx accepted by anvil (coordinator clock)", accepted, deposits_elapsed),
                row("deposit: request → threshold signature verified", signed, deposits_elapsed),
                row("deposit: client POST → broadcast seen by long-poll", client_seen, deposits_elapsed),
                row("withdraw request: FROST-Ed25519 signing (proposal → verified signature)", frost, withdrawals_elapsed),
                row("withdraw request: request → verified signature", to_signature, withdrawals_elapsed),
            ],
            "multisig": multisig_rows,
            "deposit_steps": steps
                .into_iter()
                .map(|(step, v)| row(&format!("deposit: request → {step}"), v, deposits_elapsed))
                .collect::<Vec<_>>(),
        }))
    }
    .await;
    let _ = crate::devnet::down(&dir).await;
    let report = outcome?;
    if args.json {
        crate::outln!("{report}");
        return Ok(());
    }
    crate::outln!(
        "Signer group engine: {}; deposits from a presignature: {} of {}",
        report["engine"].as_str().unwrap_or(""),
        report["presigned_deposits"],
        args.count
    );
    crate::outln!("| measurement | count | p50 | p99 | max |");
    crate::outln!("|---|---|---|---|---|");
    let rows = report["rows"].as_array().into_iter().flatten();
    let multisig = report["multisig"].as_array().into_iter().flatten();
    let steps = report["deposit_steps"].as_array().into_iter().flatten();
    for r in rows.chain(multisig).chain(steps) {
        let f = |k: &str| {
            r[k].as_f64()
                .map(|v| format!("{v:.1} ms"))
                .unwrap_or_else(|| "-".into())
        };
        crate::outln!(
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

/// `count` deposits of a small amount from `wallet`, one after another: request → its
/// transaction accepted by the node (the coordinator's clock), and the time they all took.
async fn deposit_latencies(
    d: &crate::demo::Demo,
    wallet: &str,
    network: &str,
    coin: &str,
    count: usize,
    interval: f64,
) -> Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let mut accepted = Vec::new();
    for _ in 0..count {
        let intent = d.deposit_on(network, wallet, coin, "0.001", AgreementRule::All, &[])?;
        let t = d
            .api
            .post("/v1/transfers/deposits", &json!({ "intent": intent }))
            .await?;
        let id = t["id"].as_str().unwrap_or_default().to_owned();
        let t = d
            .api
            .get(&format!("/v1/transfers/{id}?wait=30&until=broadcast"))
            .await?;
        match ms_of(&t, "broadcast") {
            Some(a) => accepted.push(a),
            None => anyhow::bail!(
                "deposit {id} of {coin} did not reach the chain: {}",
                t["error"].as_str().unwrap_or("no error recorded")
            ),
        }
        tokio::time::sleep(Duration::from_secs_f64(interval)).await;
    }
    Ok((accepted, started.elapsed()))
}

/// Arguments of `concord bench soak`.
#[derive(clap::Args)]
pub struct SoakArgs {
    /// Directory for the soak's own devnet (replaced if it exists).
    /// [default: ~/.local/state/concord/devnet-soak]
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
    /// Transfers to run (deposits and withdrawals, alternately).
    #[arg(long, default_value_t = 40)]
    transfers: usize,
    /// Coordinator kills (`kill -9`, at random moments; each killed one is restarted).
    #[arg(long, default_value_t = 2)]
    kills: usize,
    /// Run two coordinators on this PostgreSQL database (default: one, on SQLite).
    #[arg(long)]
    postgres: Option<String>,
    /// Exchange faults of each kind to inject (a 5xx answer to a withdraw request; a timeout
    /// after accepting one).
    #[arg(long, default_value_t = 2)]
    exchange_faults: usize,
    #[command(flatten)]
    setup: crate::demo::GroupSetup,
    /// Give up waiting for the transfers after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One submitted transfer, as the soak follows it.
struct Followed {
    id: String,
    deposit: bool,
    submitted: Instant,
    done: Option<(Instant, String)>,
    /// The transfer's record when it finished (its log shows resumptions after kills).
    record: Option<serde_json::Value>,
}

/// One coordinator kill.
struct Kill {
    at: Instant,
    wall: std::time::SystemTime,
    /// Which coordinator was killed.
    index: usize,
}

/// `concord bench soak`: transfers through coordinator kills and exchange faults, counted
/// afterwards from the chain and the exchange: completed, duplicated, lost, completion
/// times, and how long the surviving coordinator took to finish a transfer after a kill.
pub async fn soak(args: SoakArgs) -> Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| crate::connect::state_dir().join("devnet-soak"));
    let coordinators = if args.postgres.is_some() { 2 } else { 1 };
    if crate::devnet::DevnetInfo::load(&dir).is_ok() {
        let _ = crate::devnet::down(&dir).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    let opts = crate::devnet::UpOptions {
        block_time: 1,
        follow_secs: 120,
        postgres: args.postgres.clone(),
        coordinators,
        utxo: false,
        hsm: false,
    };
    let info = crate::devnet::up(&dir, true, &opts).await?;
    let outcome = async {
        let mut d = crate::demo::attach(info, true)?;
        let p = crate::demo::prepare_with(&mut d, args.setup, "5").await?;
        run_soak(&mut d, &p, &args).await
    }
    .await;
    let _ = crate::devnet::down(&dir).await;
    let report = outcome?;
    if args.json {
        crate::outln!("{report}");
    } else {
        print_soak(&report);
    }
    Ok(())
}

fn print_soak(r: &serde_json::Value) {
    crate::outln!(
        "| backend | transfers | completed | failed | duplicated | lost | p50 | p99 | kills | kill → first interrupted transfer taken over (±1 s) | kill → first such transfer completed |"
    );
    crate::outln!("|---|---|---|---|---|---|---|---|---|---|---|");
    let f = |k: &str| {
        r[k].as_f64()
            .map(|v| format!("{:.1} s", v / 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    let list = |k: &str| {
        r[k].as_array()
            .map(|v| {
                v.iter()
                    .map(|x| match x.as_f64() {
                        Some(ms) => format!("{:.1} s", ms / 1000.0),
                        None => "none in flight".into(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    crate::outln!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r["backend"].as_str().unwrap_or(""),
        r["transfers"],
        r["completed"],
        r["failed"],
        r["duplicated"],
        r["lost"],
        f("p50_ms"),
        f("p99_ms"),
        r["kills"],
        list("resume_ms"),
        list("failover_ms"),
    );
}

async fn run_soak(
    d: &mut crate::demo::Demo,
    p: &crate::demo::Prepared,
    args: &SoakArgs,
) -> Result<serde_json::Value> {
    let urls = if d.info.coordinator_urls.is_empty() {
        vec![d.info.coordinator_url.clone()]
    } else {
        d.info.coordinator_urls.clone()
    };
    let trust = crate::client::Trust::pin_text(d.info.api_pin.as_deref())?;
    let clients: Vec<Api> = urls
        .iter()
        .map(|u| Api::from_parts(u, &d.info.trader_token_file, &trust))
        .collect::<Result<_>>()?;
    let faults = args.exchange_faults;
    if faults > 0 {
        let admin = std::fs::read_to_string(&d.info.exchange_admin_token_file)?;
        reqwest::Client::new()
            .post(format!("{}/sim/faults", d.info.exchange_url))
            .bearer_auth(admin.trim())
            .json(&json!({
                "http5xx": {"count": faults, "paths": ["/sapi/v1/capital/withdraw/apply"]},
                "withdrawTimeoutAfterAccept": {"count": faults, "delayMs": 9000},
            }))
            .send()
            .await?
            .error_for_status()?;
    }
    let nonce0 = d.client.pending_nonce(p.address).await?;
    let exchange0 = exchange_eth(&d.info).await?;
    let killer = tokio::spawn(kill_coordinators(d.info.clone(), args.kills));
    let mut followed = submit_all(d, p, &clients, args.transfers).await?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while followed.iter().any(|f| f.done.is_none()) && Instant::now() < deadline {
        for f in followed.iter_mut().filter(|f| f.done.is_none()) {
            for c in &clients {
                if let Ok(t) = c.get(&format!("/v1/transfers/{}", f.id)).await {
                    let status = t["status"].as_str().unwrap_or("").to_owned();
                    if matches!(status.as_str(), "credited" | "arrived" | "failed") {
                        f.done = Some((Instant::now(), status));
                        f.record = Some(t);
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let kills = killer
        .await
        .map_err(|e| anyhow::anyhow!("the killer task: {e}"))??;
    audit(d, p, &followed, &kills, nonce0, exchange0, args).await
}

/// Submits the transfers, alternately deposits and withdrawals of 0.001 ETH, to the
/// coordinators in turn, retrying on another while one is down.
async fn submit_all(
    d: &crate::demo::Demo,
    p: &crate::demo::Prepared,
    clients: &[Api],
    n: usize,
) -> Result<Vec<Followed>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let deposit = i % 2 == 0;
        let (path, intent) = if deposit {
            (
                "/v1/transfers/deposits",
                d.deposit(&p.wallet, "ETH", "0.001", AgreementRule::All, &[])?,
            )
        } else {
            (
                "/v1/transfers/withdrawals",
                d.withdrawal(AddressRef::Label("desk".into()), "0.001")?,
            )
        };
        let submitted = Instant::now();
        let mut k = i;
        loop {
            match clients[k % clients.len()]
                .post(path, &json!({ "intent": intent }))
                .await
            {
                Ok(_) => break,
                Err(_) if submitted.elapsed() < Duration::from_secs(60) => {
                    k += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        out.push(Followed {
            id: intent.intent.id.clone(),
            deposit,
            submitted,
            done: None,
            record: None,
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(out)
}

/// Kills a random coordinator `kills` times at random moments; returns when each kill
/// happened. A lone coordinator is restarted after 3 s; one of two only after 10 s, past its
/// leases (6 s), so that the survivor must take its transfers over.
async fn kill_coordinators(mut info: crate::devnet::DevnetInfo, kills: usize) -> Result<Vec<Kill>> {
    use rand::Rng as _;
    let n = info.coordinator_dirs.len().max(1);
    let mut at = Vec::new();
    for _ in 0..kills {
        let wait = rand::thread_rng().gen_range(2_000..5_000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let i = rand::thread_rng().gen_range(0..n);
        crate::devnet::kill_coordinator(&info, i);
        at.push(Kill {
            at: Instant::now(),
            wall: std::time::SystemTime::now(),
            index: i,
        });
        tokio::time::sleep(Duration::from_secs(if n > 1 { 10 } else { 3 })).await;
        crate::devnet::restart_coordinator(&mut info, i).await?;
    }
    Ok(at)
}

pub(crate) async fn exchange_eth(info: &crate::devnet::DevnetInfo) -> Result<f64> {
    let sim: toml::Value = toml::from_str(&std::fs::read_to_string(
        info.dir.join("exchange/sim.toml"),
    )?)?;
    let key = &sim["accounts"][0]["api_keys"][0];
    let client = concord_exchange::binance::BinanceClient::new(
        &info.exchange_url,
        key["api_key"].as_str().unwrap_or_default().to_owned(),
        Arc::new(concord_exchange::HmacSha256Signer::new(
            key["secret"].as_str().unwrap_or_default(),
        )?),
    )?;
    Ok(client
        .balances()
        .await?
        .into_iter()
        .find(|b| b.asset == "ETH")
        .and_then(|b| b.free.parse().ok())
        .unwrap_or(0.0))
}

/// Counts what really happened: on chain (the wallet's nonce) and at the exchange (its ETH).
async fn audit(
    d: &crate::demo::Demo,
    p: &crate::demo::Prepared,
    followed: &[Followed],
    kills: &[Kill],
    nonce0: u64,
    exchange0: f64,
    args: &SoakArgs,
) -> Result<serde_json::Value> {
    fn status(f: &Followed) -> Option<&str> {
        f.done.as_ref().map(|(_, s)| s.as_str())
    }
    let credited = followed
        .iter()
        .filter(|f| status(f) == Some("credited"))
        .count();
    let arrived = followed
        .iter()
        .filter(|f| status(f) == Some("arrived"))
        .count();
    let failed = followed
        .iter()
        .filter(|f| status(f) == Some("failed"))
        .count();
    let lost = followed.iter().filter(|f| f.done.is_none()).count();
    // Deposits: every transaction of the wallet is a credited deposit, or a duplicate.
    let sent = d.client.pending_nonce(p.address).await? - nonce0;
    let extra_deposits = (sent as i64 - credited as i64).max(0);
    // Withdrawals: the exchange's ETH moved by exactly the credited deposits and the
    // arrived withdrawals (each 0.001 plus the 0.0001 fee).
    let moved = exchange_eth(&d.info).await? - exchange0;
    let expected = 0.001 * credited as f64 - 0.0011 * arrived as f64;
    let extra_withdrawals = ((expected - moved) / 0.0011).round().max(0.0) as i64;
    let mut times: Vec<Duration> = followed
        .iter()
        .filter_map(|f| f.done.as_ref().map(|(t, _)| *t - f.submitted))
        .collect();
    times.sort();
    let (resume, failover) = takeovers(followed, kills, &instances(&d.info));
    Ok(json!({
        "backend": if args.postgres.is_some() { "PostgreSQL, 2 coordinators" } else { "SQLite, 1 coordinator" },
        "transfers": followed.len(),
        "deposits": followed.iter().filter(|f| f.deposit).count(),
        "completed": credited + arrived,
        "failed": failed,
        "duplicated": extra_deposits + extra_withdrawals,
        "lost": lost,
        "p50_ms": percentile(&times, 0.5).map(|d| d.as_secs_f64() * 1e3),
        "p99_ms": percentile(&times, 0.99).map(|d| d.as_secs_f64() * 1e3),
        "kills": kills.len(),
        "resume_ms": resume,
        "failover_ms": failover,
        "exchange_faults_each": args.exchange_faults,
    }))
}

/// Each coordinator's instance id (its transfers' logs name it when it resumes one).
fn instances(info: &crate::devnet::DevnetInfo) -> Vec<String> {
    let dirs = if info.coordinator_dirs.is_empty() {
        vec![info.dir.join("coordinator")]
    } else {
        info.coordinator_dirs.clone()
    };
    dirs.iter()
        .map(|d| {
            std::fs::read_to_string(d.join("coordinator.toml"))
                .ok()
                .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
                .and_then(|t| t.get("instance")?.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect()
}

/// When, and by which coordinator instance, a transfer was resumed (from its log; whole
/// seconds).
fn resumptions(f: &Followed) -> Vec<(std::time::SystemTime, String)> {
    let Some(log) = f.record.as_ref().and_then(|r| r["log"].as_array()) else {
        return Vec::new();
    };
    log.iter()
        .filter_map(|l| l.as_str())
        .filter_map(|l| {
            let (time, rest) = l.split_once(' ')?;
            let rest = rest.strip_prefix("resumed by a coordinator (")?;
            let instance = rest.split_once(')')?.0.to_owned();
            Some((humantime::parse_rfc3339(time).ok()?, instance))
        })
        .collect()
}

/// For each kill, in ms: kill → the first of the killed coordinator's transfers resumed
/// (± 1 s: the logs' times are whole seconds), and kill → the first such transfer
/// completed by another coordinator (with one coordinator, by the restarted one).
fn takeovers(
    followed: &[Followed],
    kills: &[Kill],
    instances: &[String],
) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    let (mut resume, mut failover) = (Vec::new(), Vec::new());
    for (i, k) in kills.iter().enumerate() {
        let since_epoch = k
            .wall
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let from = k.wall - Duration::from_nanos(u64::from(since_epoch.subsec_nanos()));
        let until = kills.get(i + 1).map(|n| n.wall);
        let killed = instances.get(k.index).map(String::as_str).unwrap_or("");
        let others = instances.len() > 1;
        let taken: Vec<(&Followed, std::time::SystemTime)> = followed
            .iter()
            .filter_map(|f| {
                resumptions(f)
                    .into_iter()
                    .filter(|(t, by)| {
                        *t >= from && until.is_none_or(|u| *t < u) && (!others || by != killed)
                    })
                    .map(|(t, _)| t)
                    .min()
                    .map(|t| (f, t))
            })
            .collect();
        resume.push(
            taken
                .iter()
                .map(|(_, t)| *t)
                .min()
                .map(|t| t.duration_since(k.wall).unwrap_or_default().as_secs_f64() * 1e3),
        );
        failover.push(
            taken
                .iter()
                .filter_map(|(f, _)| f.done.as_ref().map(|(t, _)| *t))
                .min()
                .map(|t| t.saturating_duration_since(k.at).as_secs_f64() * 1e3),
        );
    }
    (resume, failover)
}

/// Arguments of `concord bench api`.
#[derive(clap::Args)]
pub struct ApiBenchArgs {
    /// Requests per row of the table (1 to 100000).
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// The authenticated GET each request makes.
    #[arg(long, default_value = "/v1/wallets")]
    path: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A coordinator process of the benchmark's own, killed when dropped.
struct BenchCoordinator {
    child: std::process::Child,
    api: reqwest::Url,
    trust: crate::client::Trust,
    token: String,
}

impl Drop for BenchCoordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes and starts a coordinator in `dir` on 127.0.0.1: HTTPS with a self-signed
/// certificate (pinned), or plain HTTP.
async fn bench_coordinator(dir: &std::path::Path, plain: bool) -> Result<BenchCoordinator> {
    use anyhow::Context as _;
    let (grpc, http) = (
        format!("127.0.0.1:{}", crate::devnet::free_port()?),
        format!("127.0.0.1:{}", crate::devnet::free_port()?),
    );
    let d = dir.display().to_string();
    let mut init = vec![
        "coordinator",
        "init",
        "--dir",
        &d,
        "--grpc-listen",
        &grpc,
        "--http-listen",
        &http,
        "--json",
    ];
    if plain {
        init.push("--insecure-http");
    }
    let created = crate::devnet::concord(&init)?;
    let trust = crate::client::Trust::pin_text(created["api_fingerprint"].as_str())?;
    let api: reqwest::Url = created["api_url"]
        .as_str()
        .context("coordinator init printed no API URL")?
        .parse()?;
    let log = std::fs::File::create(dir.join("coordinator.log"))?;
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["coordinator", "run", "--config", &d])
        .env("CONCORD_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()?;
    let token = std::fs::read_to_string(dir.join("admin.token"))?
        .trim()
        .to_owned();
    let c = BenchCoordinator {
        child,
        api,
        trust,
        token,
    };
    let client = crate::client::http_client(&c.api, &c.trust)?;
    let health = c.api.join("/v1/health")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(health.clone())
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if Instant::now() > deadline {
            anyhow::bail!(
                "the benchmark's coordinator did not start (see {})",
                dir.join("coordinator.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(c)
}

/// `concord bench api`: two coordinators of its own on 127.0.0.1, one over HTTPS (its
/// certificate pinned, as the CLI does) and one over plain HTTP (`insecure_http`); the same
/// authenticated GET to each, interleaved so both see the same machine, on a kept-alive
/// connection and on a new connection per request (the TLS handshake's cost); latency
/// percentiles as a table.
pub async fn api(args: ApiBenchArgs) -> Result<()> {
    if args.count == 0 || args.count > 100_000 {
        return Err(crate::output::usage("--count must be between 1 and 100000"));
    }
    let root = std::env::temp_dir().join(format!("concord-bench-api-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&root)?;
    let outcome = async {
        let https = bench_coordinator(&root.join("https"), false).await?;
        let http = bench_coordinator(&root.join("http"), true).await?;
        let mut rows: Vec<(&str, &str, &BenchCoordinator, reqwest::Client, Vec<Duration>)> =
            Vec::new();
        for (name, c) in [("HTTPS (pinned)", &https), ("plain HTTP", &http)] {
            let builder = || crate::client::http_client_builder(&c.api, &c.trust);
            rows.push((name, "kept alive", c, builder()?.build()?, Vec::new()));
            rows.push((
                name,
                "new per request",
                c,
                builder()?.pool_max_idle_per_host(0).build()?,
                Vec::new(),
            ));
        }
        let warmup = 20.min(args.count);
        for i in 0..warmup + args.count {
            for (_, _, c, client, samples) in rows.iter_mut() {
                let url = c.api.join(&args.path)?;
                let t0 = Instant::now();
                let resp = client.get(url).bearer_auth(&c.token).send().await?;
                let status = resp.status();
                resp.bytes().await?;
                let took = t0.elapsed();
                if !status.is_success() {
                    anyhow::bail!("GET {} answered {status}", args.path);
                }
                if i >= warmup {
                    samples.push(took);
                }
            }
        }
        let results: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|(api, connection, _, _, mut v)| {
                v.sort();
                let us = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
                json!({
                    "api": api,
                    "connection": connection,
                    "requests": v.len(),
                    "p50_ms": us(percentile(&v, 0.5)),
                    "p99_ms": us(percentile(&v, 0.99)),
                    "mean_ms": v.iter().sum::<Duration>().as_secs_f64() * 1e3 / v.len().max(1) as f64,
                })
            })
            .collect();
        anyhow::Ok(results)
    }
    .await;
    let _ = std::fs::remove_dir_all(&root);
    let results = outcome?;
    if args.json {
        crate::outln!(
            "{}",
            json!({ "path": args.path, "count": args.count, "rows": results })
        );
        return Ok(());
    }
    crate::outln!(
        "GET {} with a token, {} requests per row, one client, 127.0.0.1:",
        args.path,
        args.count
    );
    let f = |v: &serde_json::Value| {
        v.as_f64()
            .map(|x| format!("{x:.3} ms"))
            .unwrap_or_else(|| "—".into())
    };
    let mut t = crate::output::Table::new(&["api", "connection", "requests", "p50", "p99", "mean"]);
    for r in &results {
        t.row([
            r["api"].as_str().unwrap_or("").to_owned(),
            r["connection"].as_str().unwrap_or("").to_owned(),
            r["requests"].to_string(),
            f(&r["p50_ms"]),
            f(&r["p99_ms"]),
            f(&r["mean_ms"]),
        ]);
    }
    t.right(2).right(3).right(4).right(5);
    crate::outln!("{}", t.render());
    Ok(())
}

/// `concord bench keys`: signing with keys in SoftHSM versus in the file vault.
#[derive(Args)]
pub struct KeyBenchArgs {
    /// Signatures per row (at most 10 000).
    #[arg(long, default_value_t = 500)]
    count: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Times `f` `count` times.
fn timed(
    count: usize,
    mut f: impl FnMut(usize) -> Result<()>,
) -> Result<(Vec<Duration>, Duration)> {
    let start = Instant::now();
    let mut v = Vec::with_capacity(count);
    for i in 0..count {
        let t = Instant::now();
        f(i)?;
        v.push(t.elapsed());
    }
    Ok((v, start.elapsed()))
}

/// Signing latency with keys in a SoftHSM token (through PKCS#11) versus keys in the file
/// vault (decrypted once, signed in process), in one run: secp256k1 (a module's multisig
/// key: CKM_ECDSA, low-s and the recovery id found outside, versus k256), Ed25519
/// (CKM_EDDSA versus ed25519-dalek), and opening a vault (its data key unwrapped by AES-GCM
/// inside the token versus Argon2id over a passphrase). The token is made for the run and
/// deleted after it (SoftHSM's configuration is the system's or `SOFTHSM2_CONF`'s).
pub async fn keys(args: KeyBenchArgs) -> Result<()> {
    let count = args.count.clamp(1, 10_000);
    let dir = tempfile_dir()?;
    let (library, label, pin_file) = crate::devnet::softhsm_token(&dir)?;
    let outcome = async {
        let config = concord_vault::Pkcs11Config {
            library: library.clone().into(),
            token: concord_vault::TokenSelector::Label(label.clone()),
            pin: concord_vault::PassphraseSource::File(pin_file.clone()),
        };
        let token = concord_vault::Token::open(&config)?;
        let mut rows = Vec::new();
        let digests: Vec<[u8; 32]> = (0..count)
            .map(|i| sha2::Sha256::digest(i.to_be_bytes()).into())
            .collect();

        // secp256k1: the file vault's key (as the module holds it after opening its vault).
        let file_key = k256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let (v, e) = timed(count, |i| {
            let (sig, _): (k256::ecdsa::Signature, k256::ecdsa::RecoveryId) = file_key
                .sign_prehash_recoverable(&digests[i])
                .map_err(|e| anyhow::anyhow!("k256: {e}"))?;
            let _ = sig.normalize_s();
            Ok(())
        })?;
        rows.push(row("secp256k1 sign: file vault (k256)", v, e));
        let hsm_key = token.generate_secp256k1("bench-secp256k1")?;
        let mut made = Vec::with_capacity(count);
        let (v, e) = timed(count, |i| {
            made.push(hsm_key.sign_prehash(&digests[i])?.0);
            Ok(())
        })?;
        rows.push(row("secp256k1 sign: SoftHSM (CKM_ECDSA)", v, e));
        // Every signature checked by an independent verifier (outside the timing).
        for (sig, d) in made.iter().zip(&digests) {
            k256::ecdsa::signature::hazmat::PrehashVerifier::verify_prehash(
                hsm_key.verifying_key(),
                d,
                sig,
            )
            .map_err(|e| anyhow::anyhow!("the HSM's signature does not verify: {e}"))?;
        }

        // Ed25519 (identity keys).
        let file_ed = concord_wire::identity::IdentityKey::generate(&mut rand::rngs::OsRng);
        let (v, e) = timed(count, |i| {
            let _ = file_ed.sign(&digests[i]);
            Ok(())
        })?;
        rows.push(row("Ed25519 sign: file vault (ed25519-dalek)", v, e));
        let hsm_ed = token.generate_ed25519("bench-ed25519")?;
        let public = concord_wire::identity::PublicIdentity::from_bytes(&hsm_ed.public_key())?;
        let mut made = Vec::with_capacity(count);
        let (v, e) = timed(count, |i| {
            made.push(hsm_ed.sign(&digests[i])?);
            Ok(())
        })?;
        rows.push(row("Ed25519 sign: SoftHSM (CKM_EDDSA)", v, e));
        for (sig, d) in made.iter().zip(&digests) {
            public
                .verify(d, sig)
                .map_err(|e| anyhow::anyhow!("the HSM's Ed25519 signature does not verify: {e}"))?;
        }

        // Opening a vault: its data key unwrapped.
        let opens = count.min(20);
        let pass_dir = dir.join("vault-passphrase");
        let kek =
            concord_vault::PassphraseKek::new(zeroize::Zeroizing::new("bench passphrase".into()))?;
        concord_vault::Vault::create(&pass_dir, &kek)?;
        let (v, e) = timed(opens, |_| {
            concord_vault::Vault::open(&pass_dir, &kek)?;
            Ok(())
        })?;
        rows.push(row("vault open: passphrase (Argon2id, 64 MiB)", v, e));
        let hsm_dir = dir.join("vault-hsm");
        let hsm_kek = concord_vault::Pkcs11Kek::new(token.clone());
        concord_vault::Vault::create(&hsm_dir, &hsm_kek)?;
        let (v, e) = timed(opens, |_| {
            concord_vault::Vault::open(&hsm_dir, &hsm_kek)?;
            Ok(())
        })?;
        rows.push(row("vault open: SoftHSM (AES-GCM in the token)", v, e));
        Ok::<_, anyhow::Error>(rows)
    }
    .await;
    let _ = std::process::Command::new("softhsm2-util")
        .args(["--delete-token", "--token", &label])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let rows = outcome?;
    if args.json {
        crate::outln!("{}", json!({ "rows": rows }));
    } else {
        crate::outln!("{:<44} {:>6} {:>10} {:>10}", "", "count", "p50", "p99");
        for r in &rows {
            let f = |k: &str| {
                r[k].as_f64()
                    .map(|v| format!("{v:.3} ms"))
                    .unwrap_or_else(|| "—".into())
            };
            crate::outln!(
                "{:<44} {:>6} {:>10} {:>10}",
                r["kind"].as_str().unwrap_or_default(),
                r["count"],
                f("p50_ms"),
                f("p99_ms")
            );
        }
    }
    Ok(())
}

/// A fresh directory for a bench's files (under the system's temporary directory).
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("concord-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
