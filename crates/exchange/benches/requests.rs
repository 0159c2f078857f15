//! Withdraw-request signing per exchange and scheme, with the whole key in this process (what
//! one holder of the key does; the threshold FROST-Ed25519 signing of a Binance withdraw
//! request is `frost-2of3/ed25519_sign` in concord-tss's bench):
//! - Binance: HMAC-SHA256 and Ed25519 over the canonical withdraw query;
//! - Kraken: HMAC-SHA512 `API-Sign` over the `Withdraw` body;
//! - Coinbase: a CDP JWT for `POST /v2/accounts/:id/transactions`, ES256 and EdDSA (claims
//!   made, signed, finished); and what each module does to a group send before it signs:
//!   the token's claims and the send's body read back strictly;
//! - Kraken under a held credential: a member's strict read of the `Withdraw` form it
//!   approves, and the holder's `API-Sign` of the form with its nonce added.
//!
//! `cargo bench -p concord-exchange --bench requests`.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};

use concord_exchange::binance::WithdrawParams;
use concord_exchange::coinbase::{CdpKey, CdpSigner, JwtAlg, RequestClaims, finish};
use concord_exchange::{Ed25519Signer, HmacSha256Signer, kraken};

const ADDRESS: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn requests(c: &mut Criterion) {
    let query = WithdrawParams {
        coin: "ETH".into(),
        network: "ETH".into(),
        address: ADDRESS.into(),
        amount: "0.25".into(),
        withdraw_order_id: Some("i-0123456789abcdef".into()),
        timestamp_ms: 1_750_000_000_000,
        recv_window_ms: 5000,
    }
    .to_query();
    let hmac =
        HmacSha256Signer::new("NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j")
            .unwrap_or_else(|e| panic!("{e}"));
    let ed = Ed25519Signer::from_seed(&[7u8; 32]);
    let kraken_secret =
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";
    let kraken_body =
        format!("nonce=1616492376594&asset=ETH&key=own-wallet&amount=0.25&address={ADDRESS}");
    // coinbase-advanced-py's own test keys (tests/constants.py; insecure, public).
    let es256 = CdpKey::from_secret(
        "organizations/test-organization/apiKeys/test-api-key",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKwf3Uox30cRWzRBOPoPOH5p0Gpb0Dt8zUKXUEM5fMkGoAoGCCqGSM49\nAwEHoUQDQgAEbAtpLlSZYVOwYICz+uEyxcS29vRIujiES/gQ1DC7FV4zK4JuYE9v\nqDyGZQYjdXHLM7I6f/QnnOITL+dXYWBHRA==\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let eddsa = CdpKey::from_secret(
        "organizations/test-organization/apiKeys/test-api-key",
        "k0BUni0p0vZG1BdpVjS6ogBJ7kxm630AJ2dN+tuputDOKsRAwgyrpEQLeBtS1znTmzPX6Xr2eOWpzx6nW8knkA==",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let path = "/v2/accounts/2bbf394c-193b-5b2a-9155-3b4732659ede/transactions";

    let mut g = c.benchmark_group("withdraw-request");
    g.bench_function("binance_hmac_sha256", |b| {
        b.iter(|| hmac.sign_now(query.as_bytes()))
    });
    g.bench_function("binance_ed25519", |b| {
        b.iter(|| ed.sign_now(query.as_bytes()))
    });
    g.bench_function("kraken_hmac_sha512", |b| {
        b.iter(|| {
            kraken::api_sign(
                "/0/private/Withdraw",
                1_616_492_376_594,
                &kraken_body,
                kraken_secret,
            )
        })
    });
    for (name, key, alg) in [
        ("coinbase_jwt_es256", &es256, JwtAlg::Es256),
        ("coinbase_jwt_eddsa", &eddsa, JwtAlg::EdDsa),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let claims = RequestClaims::new(
                    key.key_name(),
                    alg,
                    "POST",
                    "api.coinbase.com",
                    path,
                    1_750_000_000,
                );
                let input = claims.signing_input();
                finish(&input, &key.sign(input.as_bytes()).unwrap_or_default())
            })
        });
    }
    let claims = RequestClaims::new(
        eddsa.key_name(),
        JwtAlg::EdDsa,
        "POST",
        "api.coinbase.com",
        path,
        1_750_000_000,
    )
    .signing_input();
    let body = concord_exchange::coinbase::SendBody {
        kind: "send".into(),
        to: ADDRESS.into(),
        amount: "0.25".into(),
        currency: "ETH".into(),
        network: "ethereum".into(),
        idem: Some("i-0123456789abcdef".into()),
    }
    .to_json();
    g.bench_function("coinbase_send_read_by_a_module", |b| {
        b.iter(|| {
            (
                RequestClaims::parse(&claims).is_ok(),
                concord_exchange::coinbase::SendBody::parse(&body).is_ok(),
            )
        })
    });
    let form = kraken::WithdrawForm {
        asset: "ETH".into(),
        key: "desk-wallet".into(),
        amount: "0.25".into(),
        address: ADDRESS.into(),
    }
    .to_form();
    g.bench_function("kraken_withdraw_form_read_by_a_module", |b| {
        b.iter(|| kraken::WithdrawForm::parse(&form).is_ok())
    });
    g.bench_function("kraken_withdraw_form_signed_by_the_holder", |b| {
        b.iter(|| {
            let body = format!("nonce=1616492376594&{form}");
            kraken::api_sign(
                "/0/private/Withdraw",
                1_616_492_376_594,
                &body,
                kraken_secret,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, requests);
criterion_main!(benches);
