//! Prints one table of median timings for every threshold operation, 2-of-3 unless stated,
//! all parties in one process on 2 tokio workers, messages fully encoded as on the network.
//! Rows marked "raw" run the bare library with no Concord code, on one thread; rows marked
//! "1 thread" run our code on one thread too, for a like-for-like comparison.
//!
//! Run: `cargo run --release -p concord-tss --example bench_table [-- --quick]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a panic is a failure report

#[path = "../benches/ops/mod.rs"]
mod ops;

use std::time::{Duration, Instant};

use concord_tss::frost::{Ed25519, Taproot};

struct Row {
    name: &'static str,
    samples: Vec<Duration>,
}

fn time<T>(n: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect()
}

/// Times `run` on inputs made by `setup`, excluding the setup.
fn time_with<S, T>(
    n: usize,
    mut setup: impl FnMut() -> S,
    mut run: impl FnMut(S) -> T,
) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let s = setup();
            let t = Instant::now();
            std::hint::black_box(run(s));
            t.elapsed()
        })
        .collect()
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let k = |full: usize| if quick { full.div_ceil(5).max(1) } else { full };
    let rt = ops::runtime();
    let one = ops::runtime_single();
    let mut rows = Vec::new();
    let mut push = |name, samples| {
        let row = Row { name, samples };
        eprintln!("measured {}", row.name);
        rows.push(row);
    };

    let ed = rt.block_on(ops::frost_dkg::<Ed25519>(2, 3));
    let tr = rt.block_on(ops::frost_dkg::<Taproot>(2, 3));
    let raw_ed = ops::RawFrost::<Ed25519>::new(2, 3);
    let raw_tr = ops::RawFrost::<Taproot>::new(2, 3);
    push(
        "FROST Ed25519 DKG",
        time(k(200), || rt.block_on(ops::frost_dkg::<Ed25519>(2, 3))),
    );
    push(
        "FROST Ed25519 sign",
        time(k(500), || {
            rt.block_on(ops::frost_sign(&ed, &[0, 2], b"withdraw"))
        }),
    );
    push(
        "FROST Ed25519 sign (1 thread)",
        time(k(500), || {
            one.block_on(ops::frost_sign(&ed, &[0, 2], b"withdraw"))
        }),
    );
    push(
        "FROST Ed25519 sign (raw frost-core)",
        time(k(500), || raw_ed.sign(2, b"withdraw")),
    );
    push(
        "FROST Taproot DKG",
        time(k(200), || rt.block_on(ops::frost_dkg::<Taproot>(2, 3))),
    );
    push(
        "FROST Taproot sign",
        time(k(500), || {
            rt.block_on(ops::frost_sign(&tr, &[0, 2], &[5; 32]))
        }),
    );
    push(
        "FROST Taproot sign (1 thread)",
        time(k(500), || {
            one.block_on(ops::frost_sign(&tr, &[0, 2], &[5; 32]))
        }),
    );
    push(
        "FROST Taproot sign (raw frost-core)",
        time(k(500), || raw_tr.sign(2, &[5; 32])),
    );

    let aux = ops::fixture_aux(3);
    let shares = rt.block_on(ops::ecdsa_keygen(&aux, 2));
    push(
        "ECDSA keygen",
        time(k(20), || rt.block_on(ops::ecdsa_keygen(&aux, 2))),
    );
    push(
        "ECDSA presignature",
        time(k(15), || rt.block_on(ops::ecdsa_presign(&shares, &[0, 1]))),
    );
    push(
        "ECDSA presignature (1 thread)",
        time(k(15), || one.block_on(ops::ecdsa_presign(&shares, &[0, 1]))),
    );
    push(
        "ECDSA presignature (raw cggmp21)",
        time(k(15), || {
            rt.block_on(ops::raw_cggmp21_presign(&shares, &[0, 1]))
        }),
    );
    push(
        "ECDSA online sign: partials + combine + verify",
        time_with(
            k(30),
            || rt.block_on(ops::ecdsa_presign(&shares, &[0, 1])),
            |p| ops::ecdsa_online_combine(p, &[7; 32]),
        ),
    );
    push(
        "ECDSA online sign: one-round protocol",
        time_with(
            k(30),
            || rt.block_on(ops::ecdsa_presign(&shares, &[0, 1])),
            |p| rt.block_on(ops::ecdsa_online_protocol(p, [7; 32])),
        ),
    );
    push(
        "ECDSA full interactive sign",
        time(k(15), || {
            rt.block_on(ops::ecdsa_sign(&shares, &[1, 2], [9; 32]))
        }),
    );
    push(
        "ECDSA aux info, 3 parties (fixture primes)",
        time(k(5).min(3), || rt.block_on(ops::aux_info(3))),
    );
    push(
        "Safe primes, one party (p and q)",
        time(if quick { 1 } else { 3 }, ops::safe_primes),
    );

    println!("| operation (2-of-3) | median | min | max | runs |");
    println!("|---|---|---|---|---|");
    for mut r in rows {
        r.samples.sort();
        let median = r.samples[r.samples.len() / 2];
        println!(
            "| {} | {} | {} | {} | {} |",
            r.name,
            fmt(median),
            fmt(r.samples[0]),
            fmt(*r.samples.last().unwrap_or(&median)),
            r.samples.len()
        );
    }
}
