//! Criterion benchmarks of every threshold operation (all parties in one process).
//! `cargo bench -p concord-tss --bench tss -- 'dkls|ecdsa-2of3'` compares the two ECDSA
//! engines without the slow Paillier setup.
//! `cargo bench -p concord-tss` runs them all (about 15 minutes: safe primes and aux info
//! take tens of seconds per sample); `cargo run --release -p concord-tss --example
//! bench_table` prints one table of medians with fewer samples.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a panic is a failure report
#![allow(missing_docs)] // criterion_group! generates undocumented public functions

#[path = "ops/mod.rs"]
mod ops;

use std::time::Duration;

use concord_tss::dkls;
use concord_tss::frost::{Ed25519, Taproot};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn slow(c: &mut Criterion) {
    let rt = ops::runtime();
    let mut g = c.benchmark_group("ecdsa-setup");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    g.bench_function("safe_primes_one_party", |b| b.iter(ops::safe_primes));
    g.bench_function("aux_info_3_parties", |b| {
        b.iter(|| rt.block_on(ops::aux_info(3)))
    });
    g.finish();
}

fn ecdsa(c: &mut Criterion) {
    let rt = ops::runtime();
    let aux = ops::fixture_aux(3);
    let shares = rt.block_on(ops::ecdsa_keygen(&aux, 2));
    let mut g = c.benchmark_group("ecdsa-2of3");
    g.sample_size(10);
    g.bench_function("keygen", |b| {
        b.iter(|| rt.block_on(ops::ecdsa_keygen(&aux, 2)))
    });
    g.bench_function("presign", |b| {
        b.iter(|| rt.block_on(ops::ecdsa_presign(&shares, &[0, 1])))
    });
    g.bench_function("presign_raw_cggmp21", |b| {
        b.iter(|| rt.block_on(ops::raw_cggmp21_presign(&shares, &[0, 1])))
    });
    g.bench_function("online_sign_combine", |b| {
        b.iter_batched(
            || rt.block_on(ops::ecdsa_presign(&shares, &[0, 1])),
            |p| ops::ecdsa_online_combine(p, &[7; 32]),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("online_sign_protocol", |b| {
        b.iter_batched(
            || rt.block_on(ops::ecdsa_presign(&shares, &[0, 1])),
            |p| rt.block_on(ops::ecdsa_online_protocol(p, [7; 32])),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("full_sign", |b| {
        b.iter(|| rt.block_on(ops::ecdsa_sign(&shares, &[1, 2], [9; 32])))
    });
    g.finish();
}

fn frost(c: &mut Criterion) {
    let rt = ops::runtime();
    let ed = rt.block_on(ops::frost_dkg::<Ed25519>(2, 3));
    let tr = rt.block_on(ops::frost_dkg::<Taproot>(2, 3));
    let raw_ed = ops::RawFrost::<Ed25519>::new(2, 3);
    let raw_tr = ops::RawFrost::<Taproot>::new(2, 3);
    let mut g = c.benchmark_group("frost-2of3");
    g.bench_function("ed25519_dkg", |b| {
        b.iter(|| rt.block_on(ops::frost_dkg::<Ed25519>(2, 3)))
    });
    g.bench_function("ed25519_sign", |b| {
        b.iter(|| rt.block_on(ops::frost_sign(&ed, &[0, 2], b"withdraw")))
    });
    g.bench_function("ed25519_sign_raw_frost", |b| {
        b.iter(|| raw_ed.sign(2, b"withdraw"))
    });
    g.bench_function("taproot_dkg", |b| {
        b.iter(|| rt.block_on(ops::frost_dkg::<Taproot>(2, 3)))
    });
    g.bench_function("taproot_sign", |b| {
        b.iter(|| rt.block_on(ops::frost_sign(&tr, &[0, 2], &[5; 32])))
    });
    g.bench_function("taproot_sign_raw_frost", |b| {
        b.iter(|| raw_tr.sign(2, &[5; 32]))
    });
    g.finish();
}

/// DKLs23 DKG and signing for growing groups, so an operator can size one. Signing uses the
/// first `t` members.
fn dkls(c: &mut Criterion) {
    let rt = ops::runtime();
    for (t, n) in [(2u16, 3u16), (3, 5), (5, 9)] {
        let shares = rt.block_on(ops::dkls_keygen::<dkls::Secp256k1>(t, n));
        let signers: Vec<u16> = (0..t).collect();
        let mut g = c.benchmark_group(format!("dkls-{t}of{n}"));
        g.sample_size(10);
        g.bench_function("keygen", |b| {
            b.iter(|| rt.block_on(ops::dkls_keygen::<dkls::Secp256k1>(t, n)))
        });
        if n == 3 {
            g.bench_function("keygen_raw_dkls23", |b| {
                b.iter(|| ops::raw_dkls_keygen(t, n))
            });
        }
        g.bench_function("sign", |b| {
            b.iter(|| rt.block_on(ops::dkls_sign(&shares, &signers, [9; 32])))
        });
        g.finish();
    }
}

/// DKLs23 on NIST P-256 (the ES256 exchange keys): a 2-of-3 group's DKG and the signing of
/// one token digest, beside secp256k1's (`dkls-2of3`).
fn dkls_p256(c: &mut Criterion) {
    let rt = ops::runtime();
    let shares = rt.block_on(ops::dkls_keygen::<dkls::P256>(2, 3));
    let mut g = c.benchmark_group("dkls-p256-2of3");
    g.sample_size(10);
    g.bench_function("keygen", |b| {
        b.iter(|| rt.block_on(ops::dkls_keygen::<dkls::P256>(2, 3)))
    });
    g.bench_function("sign", |b| {
        b.iter(|| rt.block_on(ops::dkls_sign(&shares, &[0, 1], [9; 32])))
    });
    g.finish();
}

criterion_group!(benches, frost, ecdsa, dkls, dkls_p256, slow);
criterion_main!(benches);
