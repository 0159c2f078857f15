//! Sizes a signer group: both threshold-ECDSA engines side by side, for 2-of-3, 3-of-5 and
//! 5-of-9 (or the groups given), all parties in one process on 2 tokio workers, messages
//! fully encoded as on the network. Per engine and group: DKG, a cold (interactive)
//! signature, a presignature and a warm signature from one (cggmp21 only), and the
//! sustained rate of two signing loops side by side for `--seconds` (DKLs23: interactive
//! signing; cggmp21: presignature + online signing, as the pool does).
//!
//! cggmp21 runs from the INSECURE committed aux fixtures (2, 3 and 5 parties): its group
//! setup (safe primes, then aux info) is not timed here (minutes: see `bench_table`). A group
//! size without a fixture is reported as such.
//!
//! Run: `cargo run --release -p concord-tss --example engines [-- --seconds 10 --groups 2-of-3,3-of-5 --json]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a panic is a failure report

#[path = "../benches/ops/mod.rs"]
mod ops;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

fn ms(d: Option<Duration>) -> Value {
    d.map(|d| json!((d.as_secs_f64() * 1e4).round() / 10.0))
        .unwrap_or(Value::Null)
}

/// Two loops of `one` side by side for `seconds`: signatures per second.
fn sustained<F, Fut>(rt: &tokio::runtime::Runtime, seconds: u64, one: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let one = Arc::new(one);
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    rt.block_on(async {
        let loops: Vec<_> = (0..2)
            .map(|_| {
                let one = one.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        one().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for l in loops {
            l.await.expect("signing loop");
        }
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn timed<T>(n: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect()
}

fn dkls(rt: &tokio::runtime::Runtime, t: u16, n: u16, seconds: u64) -> Value {
    let dkg_runs = if n > 5 { 1 } else { 3 };
    let mut shares = None;
    let dkg = timed(dkg_runs, || {
        shares = Some(rt.block_on(ops::dkls_keygen::<concord_tss::dkls::Secp256k1>(t, n)));
    });
    let shares = shares.expect("a key");
    let signers: Vec<u16> = (0..t).collect();
    let cold = timed(20, || {
        rt.block_on(ops::dkls_sign(&shares, &signers, [7; 32]))
    });
    let rate = {
        let shares = shares.clone();
        sustained(rt, seconds, move || {
            let shares = shares.clone();
            let signers: Vec<u16> = (0..t).collect();
            async move { ops::dkls_sign(&shares, &signers, rand::random()).await }
        })
    };
    json!({
        "engine": "dkls23", "group": format!("{t}-of-{n}"),
        "group_setup_ms": 0.0,
        "dkg_ms": ms(median(dkg)),
        "cold_sign_ms": ms(median(cold)),
        "presign_ms": null, "warm_sign_ms": null,
        "sustained_per_s": (rate * 10.0).round() / 10.0,
    })
}

fn cggmp21(rt: &tokio::runtime::Runtime, t: u16, n: u16, seconds: u64) -> Value {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/INSECURE-aux-n{n}-party0.bin"));
    if !fixture.exists() {
        return json!({
            "engine": "cggmp21", "group": format!("{t}-of-{n}"),
            "note": format!("no INSECURE aux fixture for {n} parties (its setup needs {n} parties' safe primes: minutes each)"),
        });
    }
    let aux = ops::fixture_aux(n);
    let mut shares = None;
    let dkg = timed(3, || shares = Some(rt.block_on(ops::ecdsa_keygen(&aux, t))));
    let shares = shares.expect("a key");
    let signers: Vec<u16> = (0..t).collect();
    let runs = if t > 2 { 3 } else { 5 };
    let cold = timed(runs, || {
        rt.block_on(ops::ecdsa_sign(&shares, &signers, [9; 32]))
    });
    let presign = timed(runs, || rt.block_on(ops::ecdsa_presign(&shares, &signers)));
    let warm: Vec<Duration> = (0..runs)
        .map(|_| {
            let p = rt.block_on(ops::ecdsa_presign(&shares, &signers));
            let t0 = Instant::now();
            std::hint::black_box(ops::ecdsa_online_combine(p, &[7; 32]));
            t0.elapsed()
        })
        .collect();
    let rate = {
        let shares = shares.clone();
        sustained(rt, seconds, move || {
            let shares = shares.clone();
            let signers: Vec<u16> = (0..t).collect();
            async move {
                let p = ops::ecdsa_presign(&shares, &signers).await;
                ops::ecdsa_online_combine(p, &rand::random());
            }
        })
    };
    json!({
        "engine": "cggmp21", "group": format!("{t}-of-{n}"),
        "group_setup_ms": null,
        "note": "group setup (safe primes + aux info) not timed here: minutes",
        "dkg_ms": ms(median(dkg)),
        "cold_sign_ms": ms(median(cold)),
        "presign_ms": ms(median(presign)),
        "warm_sign_ms": ms(median(warm)),
        "sustained_per_s": (rate * 100.0).round() / 100.0,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let seconds: u64 = value("--seconds").map_or(10, |s| s.parse().expect("--seconds N"));
    let groups: Vec<(u16, u16)> = value("--groups")
        .unwrap_or_else(|| "2-of-3,3-of-5,5-of-9".into())
        .split(',')
        .map(|g| {
            let (t, n) = g.split_once("-of-").expect("groups like 2-of-3");
            (t.parse().expect("t"), n.parse().expect("n"))
        })
        .collect();
    let json_out = args.iter().any(|a| a == "--json");
    let rt = ops::runtime();
    let mut rows = Vec::new();
    for &(t, n) in &groups {
        for engine in ["dkls23", "cggmp21"] {
            eprintln!("measuring {engine} {t}-of-{n}…");
            rows.push(match engine {
                "dkls23" => dkls(&rt, t, n, seconds),
                _ => cggmp21(&rt, t, n, seconds),
            });
        }
    }
    if json_out {
        println!("{}", json!({ "seconds": seconds, "rows": rows }));
        return;
    }
    let cell = |v: &Value, unit: &str| match v {
        Value::Null => "—".to_owned(),
        v => format!("{v} {unit}"),
    };
    println!(
        "| engine | group | DKG | cold sign | presignature | warm sign | sustained (2 loops) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        if r.get("dkg_ms").is_none() {
            println!(
                "| {} | {} | {} | | | | |",
                r["engine"].as_str().unwrap_or(""),
                r["group"].as_str().unwrap_or(""),
                r["note"].as_str().unwrap_or("")
            );
            continue;
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r["engine"].as_str().unwrap_or(""),
            r["group"].as_str().unwrap_or(""),
            cell(&r["dkg_ms"], "ms"),
            cell(&r["cold_sign_ms"], "ms"),
            cell(&r["presign_ms"], "ms"),
            cell(&r["warm_sign_ms"], "ms"),
            cell(&r["sustained_per_s"], "/s"),
        );
    }
}
