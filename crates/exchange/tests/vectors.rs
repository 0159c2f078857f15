//! Each signer against the exchange's own documented example (or, where the exchange publishes
//! none, against an independent implementation and the strict verifier).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use concord_exchange::{
    Ed25519Signer, HmacSha256Signer, KeyType, NoSigner, RequestSigner, encode_component, kraken,
};
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, VerifyingKey};

// Binance, REST API "Request security", SIGNED request example (HMAC).
const BINANCE_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

#[tokio::test]
async fn binance_hmac_documented_example_ascii() {
    let signer = HmacSha256Signer::new(BINANCE_SECRET).unwrap();
    let payload = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
    assert_eq!(
        signer.sign(payload.as_bytes()).await.unwrap(),
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    );
    assert_eq!(signer.key_type(), KeyType::HmacSha256);
}

#[tokio::test]
async fn binance_hmac_documented_example_non_ascii_symbol() {
    // The docs build the payload from symbol "１２３４５６" and percent-encode it before signing.
    let payload = format!(
        "symbol={}&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
        encode_component("１２３４５６")
    );
    assert_eq!(
        payload,
        "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    );
    let signer = HmacSha256Signer::new(BINANCE_SECRET).unwrap();
    assert_eq!(
        signer.sign(payload.as_bytes()).await.unwrap(),
        "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
    );
}

#[test]
fn hmac_signer_debug_is_redacted_and_empty_secret_refused() {
    let signer = HmacSha256Signer::new(BINANCE_SECRET).unwrap();
    let shown = format!("{signer:?}");
    assert!(shown.contains("<redacted>"));
    assert!(!shown.contains("NhqPtmd"));
    assert!(HmacSha256Signer::new("").is_err());
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Binance publishes no Ed25519 key with an expected signature (see tests/fixtures/README.md):
/// the signer must reproduce OpenSSL's signature of the docs' example payload with an
/// OpenSSL-generated PKCS#8 key, and the signature must pass ed25519-dalek's `verify_strict`
/// under the public key OpenSSL derived.
#[tokio::test]
async fn ed25519_pem_key_matches_openssl_and_verifies_strictly() {
    let signer = Ed25519Signer::from_pkcs8_pem(&fixture("test-ed25519-prv-key.pem")).unwrap();
    let openssl_public =
        VerifyingKey::from_public_key_pem(&fixture("test-ed25519-pub-key.pem")).unwrap();
    assert_eq!(signer.public_key(), openssl_public.to_bytes());
    assert_eq!(
        signer.public_key_pem().unwrap().trim(),
        fixture("test-ed25519-pub-key.pem").trim()
    );

    let payload = fixture("binance-example-payload.txt");
    assert_eq!(
        payload,
        "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=1&price=0.2&timestamp=1668481559918&recvWindow=5000"
    );
    let signature = signer.sign(payload.as_bytes()).await.unwrap();
    assert_eq!(
        signature,
        fixture("binance-example-payload.ed25519-sig.b64").trim()
    );
    assert!(KeyType::Ed25519.is_well_formed(&signature));

    let bytes: [u8; 64] = BASE64.decode(&signature).unwrap().try_into().unwrap();
    openssl_public
        .verify_strict(payload.as_bytes(), &Signature::from_bytes(&bytes))
        .unwrap();
    // One changed byte of the payload no longer verifies.
    let tampered = payload.replace("quantity=1", "quantity=2");
    assert!(
        openssl_public
            .verify_strict(tampered.as_bytes(), &Signature::from_bytes(&bytes))
            .is_err()
    );
}

/// RFC 8032 section 7.1, TEST 1: the seed gives the published public key and the published
/// signature of the empty message, both from a raw seed and from the same seed wrapped as PKCS#8.
#[tokio::test]
async fn ed25519_rfc8032_test1_from_seed_and_from_pkcs8() {
    let seed: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let signature_hex = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    let from_seed = Ed25519Signer::from_seed(&seed);
    assert_eq!(hex::encode(from_seed.public_key()), public);
    let sig = from_seed.sign(b"").await.unwrap();
    assert_eq!(hex::encode(BASE64.decode(&sig).unwrap()), signature_hex);

    // PKCS#8 v1 (RFC 8410): SEQUENCE { INTEGER 0, AlgorithmIdentifier id-Ed25519, OCTET STRING
    // { OCTET STRING seed } }.
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&seed);
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        BASE64.encode(&der)
    );
    let from_pem = Ed25519Signer::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(hex::encode(from_pem.public_key()), public);
    assert_eq!(from_pem.sign(b"").await.unwrap(), sig);
    assert!(!format!("{from_pem:?}").contains("9d61b1"));
}

#[test]
fn ed25519_refuses_bad_pem() {
    assert!(Ed25519Signer::from_pkcs8_pem("not a key").is_err());
    // An RSA-shaped or truncated body is refused, not misread.
    let truncated =
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
    assert!(Ed25519Signer::from_pkcs8_pem(truncated).is_err());
}

#[test]
fn binance_signature_url_encoding_matches_docs() {
    // The docs' step 3 percent-encodes the base64 signature: '/' -> %2F, '+' -> %2B, '=' -> %3D.
    let raw = "HaZnek7KOGa/k5+f6Q1nw8lzMUpo36mRVvvLHCMUCXxlmdQQGZge1luAUKnleD/DYeD19YrqzeHbb6xU3MkSIXKhAO1MaYq48uGVYb3vJScEZVOutgMInrZzUcCWNulNkfcbmExSiymCZ5xQBw5QDuzpuDFqRZ1Xt+BZxEHBN9OYQKpoe0+ovjnXyVOaH8VUKhE/ghUWnThrXJr+hmSc5t7ggjiVPQc7pGn3qSNGCQwdpkQC9GHMr/r+8n6qeEKMYB5j/1wC4d8Jae8FQiU8xcXR0NlUgV2LAw61/ZJv5BTJpa+z5Lv1W9v6jHQWRX2O8uaG3KU/lR3spR7+oGlWOw=";
    let encoded = "HaZnek7KOGa%2Fk5%2Bf6Q1nw8lzMUpo36mRVvvLHCMUCXxlmdQQGZge1luAUKnleD%2FDYeD19YrqzeHbb6xU3MkSIXKhAO1MaYq48uGVYb3vJScEZVOutgMInrZzUcCWNulNkfcbmExSiymCZ5xQBw5QDuzpuDFqRZ1Xt%2BBZxEHBN9OYQKpoe0%2BovjnXyVOaH8VUKhE%2FghUWnThrXJr%2BhmSc5t7ggjiVPQc7pGn3qSNGCQwdpkQC9GHMr%2Fr%2B8n6qeEKMYB5j%2F1wC4d8Jae8FQiU8xcXR0NlUgV2LAw61%2FZJv5BTJpa%2Bz5Lv1W9v6jHQWRX2O8uaG3KU%2FlR3spR7%2BoGlWOw%3D";
    assert_eq!(encode_component(raw), encoded);
    // Hex HMAC signatures pass through unchanged.
    let hex_sig = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
    assert_eq!(encode_component(hex_sig), hex_sig);
}

#[test]
fn signature_shapes() {
    let hex_sig = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
    assert!(KeyType::HmacSha256.is_well_formed(hex_sig));
    assert!(!KeyType::HmacSha256.is_well_formed(&hex_sig[1..]));
    assert!(!KeyType::Ed25519.is_well_formed(hex_sig));
    let ed = BASE64.encode([7u8; 64]);
    assert!(KeyType::Ed25519.is_well_formed(&ed));
    assert!(!KeyType::Ed25519.is_well_formed(&BASE64.encode([7u8; 63])));
    assert!(!KeyType::Ed25519.is_well_formed(&encode_component(&ed)));
}

#[tokio::test]
async fn no_signer_refuses_to_sign() {
    let signer = NoSigner::new(KeyType::Ed25519);
    assert_eq!(signer.key_type(), KeyType::Ed25519);
    assert!(signer.sign(b"anything").await.is_err());
}

/// Kraken, "Spot REST Authentication", the documented AddOrder example.
#[test]
fn kraken_documented_api_sign_example() {
    let sign = kraken::api_sign(
        "/0/private/AddOrder",
        1_616_492_376_594,
        "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25",
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==",
    )
    .unwrap();
    assert_eq!(
        sign,
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
    );
}

#[test]
fn kraken_refuses_a_secret_that_is_not_base64() {
    assert!(kraken::api_sign("/0/private/Balance", 1, "nonce=1", "not base64!").is_err());
    assert!(kraken::api_sign("/0/private/Balance", 1, "nonce=1", "").is_err());
}
