//! Fuzz harnesses for concord-wire's parsers of untrusted input: signing payloads (with the
//! PSBTs they carry), sealed relays, signed intents and amounts, signed policies, approval
//! certificates, the gRPC messages and finished signatures.
//!
//! Each `#[test]` is a bolero target: under `cargo test`/`cargo nextest` it runs a bounded
//! number of generated cases (and every input saved under `tests/__fuzz__/`); under
//! `scripts/fuzz.sh` the same target runs coverage-guided (libFuzzer). Inputs are structured:
//! raw bytes, a valid seed document mutated by a list of edits (so most cases get past the
//! first check), or a value built field by field. Every harness asserts properties — round
//! trips, that an accepted value re-validates, that a signature binds exactly what was
//! signed — not only the absence of panics.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![allow(clippy::large_enum_variant, clippy::type_complexity)] // generated inputs, fixtures

use std::sync::LazyLock;

use bolero::{TypeGenerator, check};
use concord_chain::utxo::bitcoin::{Amount as Sats, FeeRate, OutPoint, TxOut, Txid, hashes::Hash};
use concord_chain::utxo::{SpendRequest, Utxo, UtxoNetwork, WalletScript, build_spend};
use concord_chain::{Address, Asset, U256};
use concord_types::{DerivationPath, EcdsaEngine, Scheme, Threshold, WalletId};
use concord_wire::authority::{
    Action, AddressEntry, AddressRef, AddressTarget, AdminSet, AgreementRule, ApprovalStatement,
    AuthorityError, CertificateCheck, CoinLimit, Intent, MultisigDef, MultisigMember, Policy,
    Principal, Role, SignedIntent, SignedPolicy, WalletPurpose, WalletRule, check_certificate,
};
use concord_wire::identity::{IdentityKey, PublicIdentity, SealingKey, SealingPublicKey};
use concord_wire::payload::{Destination, SigningPayload};
use concord_wire::rpc;
use concord_wire::seal::{self, OVERHEAD, SealedHeader};
use concord_wire::units::{Amount, format_amount, parse_amount};
use concord_wire::verify::verify_signature;
use prost::Message as _;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use zeroize::Zeroizing;

/// Cases per harness under `cargo test` (each harness takes a few seconds unoptimized).
const CASES: usize = 5000;

// ---------------------------------------------------------------------------------------------
// Mutating seeds

/// One edit of a seed document.
#[derive(Debug, Clone, TypeGenerator)]
enum Edit {
    Set { at: u16, byte: u8 },
    Insert { at: u16, byte: u8 },
    Remove { at: u16 },
    Token { at: u16, token: u8 },
    Truncate { at: u16 },
    Flip { at: u16, bit: u8 },
}

/// Fragments that move a JSON, protobuf or hex document somewhere interesting.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"0",
    b"-1",
    b"null",
    b"true",
    b"\\u0000",
    b"\\ud800",
    b"18446744073709551616",
    b"340282366920938463463374607431768211456",
    b"1e5",
    b" ",
    b"00",
    b"ff",
    b"0x",
    b".",
    b"\"kind\":",
    b"\xff\xff\xff\xff\x0f",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
];

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for e in edits {
        let pos = |at: u16, len: usize| usize::from(at) % (len + 1);
        match *e {
            Edit::Set { at, byte } => {
                if !out.is_empty() {
                    let i = usize::from(at) % out.len();
                    out[i] = byte;
                }
            }
            Edit::Insert { at, byte } => {
                let i = pos(at, out.len());
                out.insert(i, byte);
            }
            Edit::Remove { at } => {
                if !out.is_empty() {
                    let i = usize::from(at) % out.len();
                    out.remove(i);
                }
            }
            Edit::Token { at, token } => {
                let i = pos(at, out.len());
                let t = TOKENS[usize::from(token) % TOKENS.len()];
                out.splice(i..i, t.iter().copied());
            }
            Edit::Truncate { at } => {
                let i = pos(at, out.len());
                out.truncate(i);
            }
            Edit::Flip { at, bit } => {
                if !out.is_empty() {
                    let i = usize::from(at) % out.len();
                    out[i] ^= 1 << (bit % 8);
                }
            }
        }
    }
    out
}

fn pick<T>(items: &[T], i: u8) -> &T {
    &items[usize::from(i) % items.len()]
}

// ---------------------------------------------------------------------------------------------
// Fixtures

fn key(i: u8) -> IdentityKey {
    IdentityKey::from_seed(&Zeroizing::new([i; 32]))
}

fn sealing(i: u8) -> SealingKey {
    SealingKey::from_bytes(&Zeroizing::new([i; 32]))
}

/// A fixed secp256k1 key (compressed) and the x-only key of another.
fn ecdsa_key(i: u8) -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&[i; 32]).unwrap()
}

fn ecdsa_public(i: u8) -> Vec<u8> {
    ecdsa_key(i)
        .verifying_key()
        .to_encoded_point(true)
        .as_bytes()
        .to_vec()
}

fn schnorr_key(i: u8) -> k256::schnorr::SigningKey {
    k256::schnorr::SigningKey::from_bytes(&[i; 32]).unwrap()
}

const NOW: u64 = 1_750_000_000;
const WALLET: WalletId = WalletId([7; 32]);
const CRED: WalletId = WalletId([8; 32]);

fn destination() -> Destination {
    Destination::ExchangeDeposit {
        exchange: "binance".into(),
        coin: "LTC".into(),
        network: "LTC".into(),
    }
}

/// A two-input spend from the P2WPKH wallet of `ecdsa_public(5)` (and one from the P2TR
/// wallet of `schnorr_key(6)`), as the coordinator builds them.
static PSBTS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let p2wpkh = WalletScript::p2wpkh(&ecdsa_public(5)).unwrap();
    let xonly = schnorr_key(6).verifying_key().to_bytes();
    let p2tr = WalletScript::p2tr(&xonly).unwrap();
    [p2wpkh, p2tr]
        .iter()
        .map(|wallet| {
            let coin = |n: u8| Utxo {
                outpoint: OutPoint {
                    txid: Txid::from_byte_array([n; 32]),
                    vout: u32::from(n),
                },
                txout: TxOut {
                    value: Sats::from_sat(60_000),
                    script_pubkey: wallet.script_pubkey(),
                },
            };
            build_spend(&SpendRequest {
                network: UtxoNetwork::LitecoinRegtest,
                wallet,
                available: &[coin(1), coin(2)],
                to: UtxoNetwork::LitecoinRegtest
                    .script_of("rltc1qw508d6qejxtdg4y5r3zarvary0c5xw7kmz7yrh")
                    .unwrap_or_else(|_| wallet.script_pubkey()),
                amount: Sats::from_sat(100_000),
                fee_rate: FeeRate::from_sat_per_vb(2).unwrap(),
            })
            .unwrap()
            .serialize()
        })
        .collect()
});

fn withdraw_query() -> String {
    "coin=ETH&withdrawOrderId=intent-1&network=ETH&address=0x1111111111111111111111111111111111111111&amount=0.5&recvWindow=5000&timestamp=1750000000000".into()
}

static PAYLOADS: LazyLock<Vec<SigningPayload>> = LazyLock::new(|| {
    let evm = |asset| SigningPayload::EvmTransfer {
        transfer: "t-1".into(),
        wallet: WALLET,
        chain_id: 31337,
        nonce: 4,
        gas_limit: 21_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        asset,
        amount: U256::from(10u64).pow(U256::from(18u64)),
        recipient: Address::repeat_byte(0x11),
        destination: destination(),
    };
    let mut out = vec![
        SigningPayload::Message {
            wallet: WALLET,
            message: b"hello".to_vec(),
            nonce: Some(7),
        },
        SigningPayload::Message {
            wallet: WALLET,
            message: vec![],
            nonce: None,
        },
        evm(Asset::Native),
        evm(Asset::Erc20 {
            token: Address::repeat_byte(0x22),
        }),
        SigningPayload::ExchangeWithdrawal {
            transfer: "t-2".into(),
            wallet: CRED,
            exchange: "binance".into(),
            api_key: "key".into(),
            request: withdraw_query(),
            body: None,
        },
        SigningPayload::ExchangeWithdrawal {
            transfer: "t-2c".into(),
            wallet: CRED,
            exchange: "coinbase".into(),
            api_key: "organizations/o/apiKeys/k".into(),
            request: "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJrIn0".into(),
            body: Some(
                r#"{"type":"send","to":"0x00","amount":"1","currency":"ETH","network":"ethereum"}"#
                    .into(),
            ),
        },
        SigningPayload::SafeTransfer {
            transfer: "t-3".into(),
            wallet: WALLET,
            chain_id: 1,
            safe: Address::repeat_byte(0x33),
            nonce: 0,
            asset: Asset::Native,
            amount: U256::from(5u64),
            recipient: Address::repeat_byte(0x44),
            destination: destination(),
        },
    ];
    for psbt in PSBTS.iter() {
        out.push(SigningPayload::UtxoTransfer {
            transfer: "t-4".into(),
            wallet: WALLET,
            chain: "ltc-regtest".into(),
            psbt: psbt.clone(),
            amount: 100_000,
            destination: destination(),
        });
    }
    out
});

static PAYLOAD_SEEDS: LazyLock<Vec<Vec<u8>>> =
    LazyLock::new(|| PAYLOADS.iter().map(SigningPayload::to_canonical).collect());

// ---------------------------------------------------------------------------------------------
// Signing payloads

#[derive(Debug, TypeGenerator)]
enum PayloadInput {
    Raw(Vec<u8>),
    Mutated { seed: u8, edits: Vec<Edit> },
    Built(GenPayload),
}

#[derive(Debug, TypeGenerator)]
enum GenAsset {
    Native,
    Erc20([u8; 20]),
}

#[derive(Debug, TypeGenerator)]
enum GenPayload {
    Message {
        wallet: [u8; 32],
        message: Vec<u8>,
        nonce: Option<u64>,
    },
    Evm {
        transfer: String,
        chain_id: u64,
        nonce: u64,
        gas_limit: u64,
        max_fee: u128,
        priority_fee: u128,
        asset: GenAsset,
        amount: [u8; 32],
        recipient: [u8; 20],
        exchange: String,
        coin: String,
        network: String,
    },
    Withdrawal {
        transfer: String,
        exchange: String,
        api_key: String,
        request: String,
        body: Option<String>,
    },
    Safe {
        transfer: String,
        chain_id: u64,
        safe: [u8; 20],
        nonce: u64,
        asset: GenAsset,
        amount: [u8; 32],
        recipient: [u8; 20],
    },
    Utxo {
        transfer: String,
        chain: String,
        psbt: u8,
        edits: Vec<Edit>,
        amount: u64,
    },
}

fn asset(a: &GenAsset) -> Asset {
    match a {
        GenAsset::Native => Asset::Native,
        GenAsset::Erc20(t) => Asset::Erc20 {
            token: Address::from(*t),
        },
    }
}

fn build_payload(g: &GenPayload) -> SigningPayload {
    match g {
        GenPayload::Message {
            wallet,
            message,
            nonce,
        } => SigningPayload::Message {
            wallet: WalletId(*wallet),
            message: message.clone(),
            nonce: *nonce,
        },
        GenPayload::Evm {
            transfer,
            chain_id,
            nonce,
            gas_limit,
            max_fee,
            priority_fee,
            asset: a,
            amount,
            recipient,
            exchange,
            coin,
            network,
        } => SigningPayload::EvmTransfer {
            transfer: transfer.clone(),
            wallet: WALLET,
            chain_id: *chain_id,
            nonce: *nonce,
            gas_limit: *gas_limit,
            max_fee_per_gas: *max_fee,
            max_priority_fee_per_gas: *priority_fee,
            asset: asset(a),
            amount: U256::from_be_bytes(*amount),
            recipient: Address::from(*recipient),
            destination: Destination::ExchangeDeposit {
                exchange: exchange.clone(),
                coin: coin.clone(),
                network: network.clone(),
            },
        },
        GenPayload::Withdrawal {
            transfer,
            exchange,
            api_key,
            request,
            body,
        } => SigningPayload::ExchangeWithdrawal {
            transfer: transfer.clone(),
            wallet: CRED,
            exchange: exchange.clone(),
            api_key: api_key.clone(),
            request: request.clone(),
            body: body.clone(),
        },
        GenPayload::Safe {
            transfer,
            chain_id,
            safe,
            nonce,
            asset: a,
            amount,
            recipient,
        } => SigningPayload::SafeTransfer {
            transfer: transfer.clone(),
            wallet: WALLET,
            chain_id: *chain_id,
            safe: Address::from(*safe),
            nonce: *nonce,
            asset: asset(a),
            amount: U256::from_be_bytes(*amount),
            recipient: Address::from(*recipient),
            destination: destination(),
        },
        GenPayload::Utxo {
            transfer,
            chain,
            psbt,
            edits,
            amount,
        } => SigningPayload::UtxoTransfer {
            transfer: transfer.clone(),
            wallet: WALLET,
            chain: chain.clone(),
            psbt: apply(pick::<Vec<u8>>(&PSBTS, *psbt), edits),
            amount: *amount,
            destination: destination(),
        },
    }
}

/// Everything a module derives from an accepted payload: none of it may panic, and what
/// is derived twice is the same.
fn exercise_payload(p: &SigningPayload) {
    let digest = p.digest();
    assert_eq!(digest, p.digest(), "the digest is deterministic");
    let runs = p.signing_runs();
    assert!(runs >= 1);
    let _ = (p.nonce_key(), p.allowed_schemes(), p.transfer(), p.wallet());
    let _ = (p.evm_transfer(), p.safe_transaction());
    let ecdsa = ecdsa_public(5);
    let xonly = schnorr_key(6).verifying_key().to_bytes().to_vec();
    for scheme in Scheme::ALL {
        let input = p.signing_input(scheme);
        if scheme == Scheme::EcdsaSecp256k1 {
            assert_eq!(input, digest.to_vec());
        }
        let key: &[u8] = match scheme {
            Scheme::EcdsaSecp256k1 => &ecdsa,
            _ => &xonly,
        };
        for i in 0..=runs.min(4) {
            let got = p.signing_input_of(scheme, key, i as u32);
            if let SigningPayload::UtxoTransfer { .. } = p {
                if let Ok(h) = &got {
                    assert_eq!(h.len(), 32, "a sighash is 32 bytes");
                    assert!(i < runs, "input {i} of {runs} has a signing input");
                }
            } else if i == 0 {
                assert_eq!(got.unwrap(), input);
            } else {
                assert!(got.is_err());
            }
        }
    }
    if let SigningPayload::UtxoTransfer { psbt, .. } = p {
        let parsed = p.psbt().expect("an accepted UTXO payload's PSBT parses");
        assert_eq!(
            &parsed.serialize(),
            psbt,
            "the PSBT is in canonical encoding"
        );
        assert_eq!(runs, parsed.inputs.len());
    }
}

fn check_payload_bytes(bytes: &[u8]) {
    if let Ok(p) = SigningPayload::from_canonical(bytes) {
        assert_eq!(
            p.to_canonical(),
            bytes,
            "only the canonical encoding is accepted"
        );
        p.check().expect("an accepted payload re-checks");
        assert_eq!(
            SigningPayload::from_canonical(&p.to_canonical()).unwrap(),
            p
        );
        exercise_payload(&p);
    }
}

/// `SigningPayload::from_canonical` (what every module parses a proposal's payload with).
#[test]
fn signing_payload() {
    check!()
        .with_type::<PayloadInput>()
        .with_iterations(CASES)
        .for_each(|input| match input {
            PayloadInput::Raw(bytes) => check_payload_bytes(bytes),
            PayloadInput::Mutated { seed, edits } => {
                check_payload_bytes(&apply(pick::<Vec<u8>>(&PAYLOAD_SEEDS, *seed), edits))
            }
            PayloadInput::Built(g) => {
                let p = build_payload(g);
                let bytes = p.to_canonical();
                match (p.check(), SigningPayload::from_canonical(&bytes)) {
                    (Ok(()), Ok(q)) => {
                        assert_eq!(q, p, "a valid payload survives its canonical encoding");
                        exercise_payload(&q);
                    }
                    (Err(_), Err(_)) => {}
                    (Ok(()), Err(e)) => panic!("a valid payload does not parse back: {e}"),
                    (Err(e), Ok(_)) => panic!("an invalid payload ({e}) parses back"),
                }
            }
        });
}

// ---------------------------------------------------------------------------------------------
// Sealed relays

const SESSION: [u8; 32] = [3; 32];
const SENDER: u16 = 1;
const RECIPIENT: u16 = 2;

static SEALED: LazyLock<Vec<(Vec<u8>, Vec<u8>)>> = LazyLock::new(|| {
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    [b"".to_vec(), b"hello".to_vec(), vec![0xa5; 300]]
        .into_iter()
        .map(|pt| {
            let sealed = seal::seal(
                &key(1),
                SENDER,
                &sealing(2).public(),
                RECIPIENT,
                &SESSION,
                &pt,
                &mut rng,
            )
            .unwrap();
            (sealed, pt)
        })
        .collect()
});

#[derive(Debug, TypeGenerator)]
enum SealInput {
    Raw(Vec<u8>),
    Mutated {
        seed: u8,
        edits: Vec<Edit>,
    },
    RoundTrip {
        sender: u16,
        recipient: u16,
        session: [u8; 32],
        plaintext: Vec<u8>,
        rng: [u8; 32],
    },
}

fn check_sealed(bytes: &[u8]) {
    let sender = key(1).public();
    let recipient = sealing(2);
    let genuine = |pt: &[u8]| {
        SEALED
            .iter()
            .any(|(s, p)| s.as_slice() == bytes && p.as_slice() == pt)
    };
    if let Ok(pt) = seal::open(&recipient, RECIPIENT, &sender, SENDER, &SESSION, bytes) {
        assert!(genuine(&pt), "a sealed message opens only as it was sealed");
    }
    if let Some(h) = SealedHeader::peek(bytes) {
        assert_eq!(&h.session[..], &bytes[1..33]);
        // Opening as whoever the header claims: still only the genuine message opens.
        if let Ok(pt) = seal::open(
            &recipient,
            h.recipient,
            &sender,
            h.sender,
            &h.session,
            bytes,
        ) {
            assert!(genuine(&pt), "a sealed message opens only as it was sealed");
            assert_eq!(
                (h.sender, h.recipient, h.session),
                (SENDER, RECIPIENT, SESSION)
            );
        }
    } else if bytes.len() >= seal::HEADER_LEN {
        assert_ne!(bytes[0], seal::VERSION);
    }
}

/// `seal::open` (every relayed MPC message a module receives) and `SealedHeader::peek`.
#[test]
fn sealed_relay() {
    check!()
        .with_type::<SealInput>()
        .with_iterations(CASES)
        .for_each(|input| match input {
            SealInput::Raw(bytes) => check_sealed(bytes),
            SealInput::Mutated { seed, edits } => {
                check_sealed(&apply(&pick(&SEALED, *seed).0, edits))
            }
            SealInput::RoundTrip {
                sender,
                recipient,
                session,
                plaintext,
                rng,
            } => {
                let mut rng = ChaCha20Rng::from_seed(*rng);
                let sealed = seal::seal(
                    &key(1),
                    *sender,
                    &sealing(2).public(),
                    *recipient,
                    session,
                    plaintext,
                    &mut rng,
                )
                .unwrap();
                assert_eq!(sealed.len(), plaintext.len() + OVERHEAD);
                let h = SealedHeader::peek(&sealed).unwrap();
                assert_eq!(
                    (h.sender, h.recipient, &h.session),
                    (*sender, *recipient, session)
                );
                let opened = seal::open(
                    &sealing(2),
                    *recipient,
                    &key(1).public(),
                    *sender,
                    session,
                    &sealed,
                )
                .unwrap();
                assert_eq!(opened.as_slice(), plaintext.as_slice());
                // Another recipient index, sender or key: refused.
                let r2 = recipient.wrapping_add(1);
                assert!(
                    seal::open(&sealing(2), r2, &key(1).public(), *sender, session, &sealed)
                        .is_err()
                );
                assert!(
                    seal::open(
                        &sealing(2),
                        *recipient,
                        &key(4).public(),
                        *sender,
                        session,
                        &sealed
                    )
                    .is_err()
                );
                assert!(
                    seal::open(
                        &sealing(4),
                        *recipient,
                        &key(1).public(),
                        *sender,
                        session,
                        &sealed
                    )
                    .is_err()
                );
            }
        });
}

// ---------------------------------------------------------------------------------------------
// Intents and amounts

fn principal(name: &str, i: u8, roles: &[Role]) -> Principal {
    Principal {
        name: name.into(),
        key: key(i).public(),
        roles: roles.to_vec(),
    }
}

fn policy_v1() -> Policy {
    Policy {
        version: 1,
        previous: None,
        admin_quorum: 2,
        principals: vec![
            principal("admin-1", 1, &[Role::Admin]),
            principal("admin-2", 2, &[Role::Admin]),
            principal("admin-3", 3, &[Role::Admin]),
            principal("trader", 10, &[Role::Trader]),
            principal("approver", 11, &[Role::Approver]),
            principal("importer", 12, &[Role::Importer]),
            principal("both", 13, &[Role::Trader, Role::Approver]),
        ],
        wallets: vec![
            WalletRule {
                wallet: WALLET,
                label: "desk".into(),
                purpose: WalletPurpose::Trading {
                    deposit_to: vec!["binance".into()],
                    raw_messages: true,
                },
                limits: vec![CoinLimit {
                    coin: "ETH".into(),
                    per_transfer: "2".into(),
                    per_day: "5".into(),
                    cosign_above: Some("1".into()),
                    cosigners: 1,
                }],
                refresh: true,
                derive: vec!["m/0/1".parse().unwrap()],
                multisig: None,
                held: None,
            },
            WalletRule {
                wallet: CRED,
                label: "binance-key".into(),
                purpose: WalletPurpose::ExchangeCredential {
                    exchange: "binance".into(),
                    withdraw_to: vec!["desk".into(), "cold".into()],
                },
                limits: vec![],
                refresh: false,
                derive: vec![],
                multisig: None,
                held: None,
            },
        ],
        address_book: vec![
            AddressEntry {
                label: "desk".into(),
                target: AddressTarget::Wallet { wallet: WALLET },
            },
            AddressEntry {
                label: "cold".into(),
                target: AddressTarget::Address {
                    network: "ETH".into(),
                    address: "0x1111111111111111111111111111111111111111".into(),
                },
            },
        ],
        groups: vec![concord_wire::authority::GroupRule {
            group: "g1".into(),
            members: vec![key(21).public(), key(22).public(), key(23).public()],
        }],
    }
}

static POLICY: LazyLock<Policy> = LazyLock::new(policy_v1);

fn actions() -> Vec<Action> {
    vec![
        Action::Deposit {
            wallet: WALLET,
            exchange: "binance".into(),
            coin: "ETH".into(),
            network: "ETH".into(),
            amount: "1.5".into(),
            rule: AgreementRule::All,
        },
        Action::Withdraw {
            exchange: "binance".into(),
            coin: "ETH".into(),
            network: "ETH".into(),
            amount: "0.5".into(),
            to: AddressRef::Label("cold".into()),
            rule: AgreementRule::Threshold,
        },
        Action::Withdraw {
            exchange: "binance".into(),
            coin: "ETH".into(),
            network: "ETH".into(),
            amount: "0.5".into(),
            to: AddressRef::Wallet(WALLET),
            rule: AgreementRule::All,
        },
        Action::SignMessage {
            wallet: WALLET,
            message: b"hello".to_vec(),
            rule: AgreementRule::All,
        },
        Action::Import {
            group: "g1".into(),
            scheme: Scheme::EcdsaSecp256k1,
            public_key: ecdsa_public(5),
            importer: key(30).public(),
        },
    ]
}

fn intent(action: Action, id: &str) -> Intent {
    Intent {
        version: 1,
        id: id.into(),
        created_at: NOW - 60,
        expires_at: NOW + 3600,
        action,
    }
}

static INTENTS: LazyLock<Vec<SignedIntent>> = LazyLock::new(|| {
    actions()
        .into_iter()
        .enumerate()
        .map(|(n, action)| {
            let requester = if matches!(action, Action::Import { .. }) {
                12
            } else {
                10
            };
            let mut si = SignedIntent::new(intent(action, &format!("intent-{n}")), &key(requester));
            if n % 2 == 0 {
                si.cosign(&key(11));
            }
            si
        })
        .collect()
});

static INTENT_SEEDS: LazyLock<Vec<Vec<u8>>> =
    LazyLock::new(|| INTENTS.iter().map(SignedIntent::to_json).collect());

#[derive(Debug, TypeGenerator)]
enum GenAction {
    Deposit {
        wallet: bool,
        exchange: String,
        amount: String,
        threshold: bool,
    },
    Withdraw {
        amount: String,
        label: Option<String>,
        threshold: bool,
    },
    SignMessage {
        message: Vec<u8>,
    },
    Import {
        scheme: u8,
        public_key: Vec<u8>,
    },
}

#[derive(Debug, TypeGenerator)]
enum IntentInput {
    Raw(Vec<u8>),
    Mutated {
        seed: u8,
        edits: Vec<Edit>,
    },
    Built {
        action: GenAction,
        version: u8,
        id: String,
        created_at: u64,
        lifetime: u64,
        requester: u8,
        cosigners: Vec<u8>,
    },
    Amount {
        text: String,
        decimals: u8,
    },
    Digits {
        int: u64,
        frac: Vec<u8>,
        decimals: u8,
    },
}

const SIGNERS: [u8; 8] = [10, 11, 12, 13, 1, 30, 10, 11];

fn check_verified(si: &SignedIntent, now: u64) {
    match si.verify(&POLICY, now) {
        Ok(v) => {
            assert!(
                INTENTS.iter().any(|s| s.intent == si.intent),
                "only a genuinely signed intent verifies"
            );
            assert_eq!(v.intent, si.intent);
            let first = POLICY.principal(&si.signatures[0].key).unwrap();
            assert_eq!(v.requester, first.name);
            assert_eq!(v.cosigners.len() + 1, si.signatures.len());
        }
        Err(AuthorityError::BadSignature { .. })
        | Err(AuthorityError::Malformed(_))
        | Err(AuthorityError::Expired { .. })
        | Err(AuthorityError::UnknownSigner { .. })
        | Err(AuthorityError::MissingRole { .. })
        | Err(AuthorityError::DuplicateSigner { .. }) => {}
        Err(e) => panic!("unexpected kind of refusal: {e:?}"),
    }
}

fn check_intent_bytes(bytes: &[u8]) {
    if let Ok(si) = SignedIntent::from_json(bytes) {
        let again = SignedIntent::from_json(&si.to_json()).expect("its own JSON parses");
        assert_eq!(again, si, "an intent survives its JSON");
        assert_eq!(again.intent.hash(), si.intent.hash());
        check_verified(&si, NOW);
        check_verified(&si, si.intent.created_at.min(NOW + 1_000_000));
    }
}

fn check_amount(text: &str, decimals: u8) {
    if let Ok(v) = parse_amount(text, decimals) {
        let shown = format_amount(v, decimals);
        assert_eq!(
            parse_amount(&shown, decimals),
            Ok(v),
            "{text:?} → {shown:?}"
        );
        let a = Amount::parse(text, decimals).expect("an amount that parses makes an Amount");
        assert_eq!(a.to_base(decimals), Ok(v));
        assert_eq!(a.as_str(), shown);
    }
    if let Ok(a) = Amount::try_from(text.to_owned()) {
        // The normal form is a fixed point.
        assert_eq!(Amount::try_from(a.as_str().to_owned()).unwrap(), a);
    }
}

/// `SignedIntent::from_json` and `SignedIntent::verify` (what a module does with a
/// proposal's intent), and the amounts intents carry (`units::parse_amount`, `Amount`).
#[test]
fn signed_intent() {
    check!()
        .with_type::<IntentInput>()
        .with_iterations(CASES)
        .for_each(|input| match input {
            IntentInput::Raw(bytes) => check_intent_bytes(bytes),
            IntentInput::Mutated { seed, edits } => {
                check_intent_bytes(&apply(pick::<Vec<u8>>(&INTENT_SEEDS, *seed), edits))
            }
            IntentInput::Built {
                action,
                version,
                id,
                created_at,
                lifetime,
                requester,
                cosigners,
            } => {
                let action = match action {
                    GenAction::Deposit {
                        wallet,
                        exchange,
                        amount,
                        threshold,
                    } => Action::Deposit {
                        wallet: if *wallet { WALLET } else { CRED },
                        exchange: exchange.clone(),
                        coin: "ETH".into(),
                        network: "ETH".into(),
                        amount: amount.clone(),
                        rule: if *threshold {
                            AgreementRule::Threshold
                        } else {
                            AgreementRule::All
                        },
                    },
                    GenAction::Withdraw {
                        amount,
                        label,
                        threshold,
                    } => Action::Withdraw {
                        exchange: "binance".into(),
                        coin: "ETH".into(),
                        network: "ETH".into(),
                        amount: amount.clone(),
                        to: label
                            .clone()
                            .map_or(AddressRef::Wallet(WALLET), AddressRef::Label),
                        rule: if *threshold {
                            AgreementRule::Threshold
                        } else {
                            AgreementRule::All
                        },
                    },
                    GenAction::SignMessage { message } => Action::SignMessage {
                        wallet: WALLET,
                        message: message.clone(),
                        rule: AgreementRule::All,
                    },
                    GenAction::Import { scheme, public_key } => Action::Import {
                        group: "g1".into(),
                        scheme: *pick(&Scheme::ALL, *scheme),
                        public_key: public_key.clone(),
                        importer: key(30).public(),
                    },
                };
                let i = Intent {
                    version: *version,
                    id: id.clone(),
                    created_at: *created_at % (2 * NOW),
                    expires_at: (*created_at % (2 * NOW)).saturating_add(*lifetime % 200_000),
                    action,
                };
                let mut si = SignedIntent::new(i, &key(*pick(&SIGNERS, *requester)));
                for c in cosigners.iter().take(4) {
                    si.cosign(&key(*pick(&SIGNERS, *c)));
                }
                let json = si.to_json();
                assert_eq!(SignedIntent::from_json(&json).unwrap(), si);
                match si.verify(&POLICY, NOW) {
                    Ok(v) => {
                        let i = &si.intent;
                        assert_eq!(i.version, 1);
                        assert!(concord_wire::authority::intent_id_is_valid(&i.id));
                        assert!(i.created_at < i.expires_at && NOW < i.expires_at);
                        let p = POLICY.principal(&si.signatures[0].key).unwrap();
                        assert!(p.has(i.action.required_role()));
                        assert_eq!(v.requester, p.name);
                        if let Action::Deposit { amount, .. } | Action::Withdraw { amount, .. } =
                            &i.action
                        {
                            assert!(concord_wire::authority::check_decimal("a", amount).is_ok());
                            assert!(amount.bytes().any(|b| (b'1'..=b'9').contains(&b)));
                        }
                    }
                    Err(AuthorityError::BadSignature { .. }) => {
                        panic!("a freshly signed intent has a bad signature")
                    }
                    Err(_) => {}
                }
            }
            IntentInput::Amount { text, decimals } => check_amount(text, *decimals),
            IntentInput::Digits {
                int,
                frac,
                decimals,
            } => {
                let frac: String = frac.iter().map(|d| char::from(b'0' + d % 10)).collect();
                let text = if frac.is_empty() {
                    int.to_string()
                } else {
                    format!("{int}.{frac}")
                };
                check_amount(&text, *decimals);
            }
        });
}

// ---------------------------------------------------------------------------------------------
// Policies

fn root() -> AdminSet {
    AdminSet::new(vec![key(1).public(), key(2).public(), key(3).public()], 2).unwrap()
}

fn multisig_member(module: &str, identity: u8, secp: u8) -> (Vec<u8>, MultisigMember) {
    let k = ecdsa_public(secp);
    let k33: [u8; 33] = k.as_slice().try_into().unwrap();
    let sig = key(identity).sign_multisig_key(&k33);
    (
        k.clone(),
        MultisigMember {
            module: module.into(),
            identity: key(identity).public(),
            key: hex::encode(&k),
            key_signature: hex::encode(sig),
        },
    )
}

fn multisig(chain: &str, safe: Option<Address>) -> MultisigDef {
    let mut members = vec![
        multisig_member("m1", 21, 41),
        multisig_member("m2", 22, 42),
        multisig_member("m3", 23, 43),
    ];
    members.sort_by(|a, b| a.0.cmp(&b.0));
    MultisigDef {
        chain: chain.into(),
        threshold: 2,
        members: members.into_iter().map(|(_, m)| m).collect(),
        safe,
    }
}

fn policy_v2(v1: &Policy) -> Policy {
    let mut p = v1.clone();
    p.version = 2;
    p.previous = Some(v1.hash());
    for (label, def) in [
        ("ltc-multisig", multisig("ltc-regtest", None)),
        (
            "safe",
            multisig("evm-31337", Some(Address::repeat_byte(0x55))),
        ),
    ] {
        p.wallets.push(WalletRule {
            wallet: def.wallet_id(),
            label: label.into(),
            purpose: WalletPurpose::Trading {
                deposit_to: vec!["binance".into()],
                raw_messages: false,
            },
            limits: vec![],
            refresh: false,
            derive: vec![],
            multisig: Some(def),
            held: None,
        });
    }
    p
}

fn signed(policy: Policy, admins: &[u8]) -> SignedPolicy {
    let mut sp = SignedPolicy {
        policy,
        signatures: vec![],
    };
    for a in admins {
        sp.sign(&key(*a));
    }
    sp
}

static POLICIES: LazyLock<Vec<SignedPolicy>> = LazyLock::new(|| {
    let v1 = policy_v1();
    let v2 = policy_v2(&v1);
    assert!(v2.validate().is_ok(), "{:?}", v2.validate());
    vec![signed(v1, &[1, 2]), signed(v2, &[1, 2, 3])]
});

static POLICY_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    POLICIES
        .iter()
        .map(|p| serde_json::to_vec(p).unwrap())
        .collect()
});

#[derive(Debug, TypeGenerator)]
enum PolicyInput {
    Raw(Vec<u8>),
    Mutated { seed: u8, edits: Vec<Edit> },
}

fn check_policy_bytes(bytes: &[u8]) {
    // As the module reads a policy update (`serde_json::from_slice`).
    let Ok(sp) = serde_json::from_slice::<SignedPolicy>(bytes) else {
        return;
    };
    let again: SignedPolicy = serde_json::from_slice(&serde_json::to_vec(&sp).unwrap()).unwrap();
    assert_eq!(again, sp, "a policy survives its JSON");
    assert_eq!(again.policy.to_canonical(), sp.policy.to_canonical());
    let valid = sp.policy.validate();
    for w in &sp.policy.wallets {
        if let Some(m) = &w.multisig {
            let _ = (m.evm_chain_id(), m.wallet_id(), m.certificate_members());
            if m.validate().is_ok() {
                match m.evm_chain_id() {
                    Some(_) => assert!(m.safe_owners().is_ok()),
                    None => assert!(m.wallet().is_ok()),
                }
            }
        }
        for d in &w.derive {
            let _ = w.allows_child(d);
        }
    }
    let first = sp.check_succession(None, &root());
    if first.is_ok() {
        assert!(valid.is_ok());
        assert_eq!(
            sp.policy, POLICIES[0].policy,
            "only the signed policy succeeds"
        );
    }
    let second = sp.check_succession(Some(&POLICIES[0].policy), &root());
    if second.is_ok() {
        assert!(valid.is_ok());
        assert_eq!(
            sp.policy, POLICIES[1].policy,
            "only the signed policy succeeds"
        );
    }
    let _ = sp.check_succession(Some(&POLICIES[1].policy), &sp.policy.admins());
}

/// The JSON of a `SignedPolicy` as a module reads a policy update, `Policy::validate`
/// (multisig definitions included) and `SignedPolicy::check_succession`.
#[test]
fn signed_policy() {
    check!()
        .with_type::<PolicyInput>()
        .with_iterations(CASES)
        .for_each(|input| match input {
            PolicyInput::Raw(bytes) => check_policy_bytes(bytes),
            PolicyInput::Mutated { seed, edits } => {
                check_policy_bytes(&apply(pick::<Vec<u8>>(&POLICY_SEEDS, *seed), edits))
            }
        });
}

// ---------------------------------------------------------------------------------------------
// Approval certificates

const JOB: &str = "job-1";
const DIGEST: [u8; 32] = [0xd1; 32];
const POLICY_HASH: [u8; 32] = [0xe1; 32];

static MEMBERS: LazyLock<Vec<(String, PublicIdentity)>> = LazyLock::new(|| {
    (0..3u8)
        .map(|i| (format!("m{}", i + 1), key(21 + i).public()))
        .collect()
});

fn statement(member: u8, rule: AgreementRule) -> ApprovalStatement {
    ApprovalStatement {
        version: 2,
        job_id: JOB.into(),
        module_id: format!("m{}", member + 1),
        wallet_id: WALLET,
        digest: DIGEST,
        policy: POLICY_HASH,
        intent: "intent-0".into(),
        rule,
        expires_at: NOW + 600,
        checks: vec!["the digest".into(), "the \"limits\"".into()],
    }
}

/// (statement bytes, signature) of each member under each rule.
static APPROVALS: LazyLock<Vec<(Vec<u8>, Vec<u8>)>> = LazyLock::new(|| {
    let mut out = vec![];
    for rule in [AgreementRule::All, AgreementRule::Threshold] {
        for m in 0..3u8 {
            let bytes = statement(m, rule).to_bytes();
            let sig = ApprovalStatement::sign(&bytes, &key(21 + m)).to_vec();
            out.push((bytes, sig));
        }
    }
    out
});

#[derive(Debug, TypeGenerator)]
enum ApprovalPart {
    Seed {
        seed: u8,
        signature_of: u8,
    },
    Mutated {
        seed: u8,
        edits: Vec<Edit>,
        signature_of: u8,
    },
    Raw {
        statement: Vec<u8>,
        signature: Vec<u8>,
    },
}

#[derive(Debug, TypeGenerator)]
struct CertificateInput {
    threshold_rule: bool,
    threshold: u8,
    now_offset: u16,
    approvals: Vec<ApprovalPart>,
}

/// `ApprovalStatement::from_bytes` and `check_certificate` (what every signer checks before
/// its share of a signature leaves it).
#[test]
fn approval_certificate() {
    check!()
        .with_type::<CertificateInput>()
        .with_iterations(CASES)
        .for_each(|input| {
            let approvals: Vec<(Vec<u8>, Vec<u8>)> = input
                .approvals
                .iter()
                .take(8)
                .map(|a| match a {
                    ApprovalPart::Seed { seed, signature_of } => (
                        pick(&APPROVALS, *seed).0.clone(),
                        pick(&APPROVALS, *signature_of).1.clone(),
                    ),
                    ApprovalPart::Mutated {
                        seed,
                        edits,
                        signature_of,
                    } => (
                        apply(&pick(&APPROVALS, *seed).0, edits),
                        pick(&APPROVALS, *signature_of).1.clone(),
                    ),
                    ApprovalPart::Raw {
                        statement,
                        signature,
                    } => (statement.clone(), signature.clone()),
                })
                .collect();
            for (st, _) in &approvals {
                if let Ok(s) = ApprovalStatement::from_bytes(st) {
                    assert_eq!(&s.to_bytes(), st, "only the canonical encoding is accepted");
                    assert_eq!(s.version, 2);
                }
            }
            let rule = if input.threshold_rule {
                AgreementRule::Threshold
            } else {
                AgreementRule::All
            };
            let threshold = usize::from(input.threshold % 4);
            let check = CertificateCheck {
                job_id: JOB,
                wallet: WALLET,
                digest: DIGEST,
                policy: POLICY_HASH,
                rule,
                threshold,
                members: &MEMBERS,
                now: NOW + u64::from(input.now_offset),
            };
            if let Ok(approvers) = check_certificate(&check, &approvals) {
                assert!(approvers.len() >= rule.needed(threshold, MEMBERS.len()));
                for (st, sig) in &approvals {
                    let genuine = APPROVALS.iter().position(|(s, g)| s == st && g == sig);
                    let n = genuine.expect("only genuinely signed statements are accepted");
                    let s = ApprovalStatement::from_bytes(st).unwrap();
                    assert_eq!(s.rule, rule);
                    assert!(s.expires_at > check.now);
                    assert!(approvers.contains(&((n % 3) as u16)));
                }
                assert!(approvers.iter().all(|i| usize::from(*i) < MEMBERS.len()));
            }
        });
}

// ---------------------------------------------------------------------------------------------
// gRPC messages

fn participant(i: u8) -> rpc::Participant {
    let id = key(21 + i);
    let sk = sealing(31 + i).public();
    rpc::Participant {
        index: u32::from(i),
        module_id: format!("m{}", i + 1),
        identity: id.public().as_bytes().to_vec(),
        sealing_public_key: sk.as_bytes().to_vec(),
        sealing_key_signature: id.sign_sealing_key(&sk).to_vec(),
    }
}

fn rpc_approval(n: usize) -> rpc::Approval {
    rpc::Approval {
        job_id: JOB.into(),
        digest: DIGEST.to_vec(),
        statement: APPROVALS[n].0.clone(),
        signature: APPROVALS[n].1.clone(),
        audit: Some(rpc::AuditRef {
            seq: 7,
            hash: vec![3; 32],
        }),
    }
}

static GRPC_SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    use rpc::coordinator_to_module::Msg as Down;
    use rpc::module_to_coordinator::Msg as Up;
    let sk = sealing(31).public();
    let relay = rpc::Relay {
        job_id: JOB.into(),
        session: SESSION.to_vec(),
        from_index: u32::from(SENDER),
        to_index: u32::from(RECIPIENT),
        sealed: SEALED[1].0.clone(),
    };
    let up = [
        Up::Hello(rpc::Hello {
            module_id: "m1".into(),
            protocol_version: 1,
            sealing_public_key: sk.as_bytes().to_vec(),
            sealing_key_signature: key(21).sign_sealing_key(&sk).to_vec(),
            replay: vec![rpc::JobUpdate {
                job_id: JOB.into(),
                status: Some(rpc::job_update::Status::Failure(rpc::Failure {
                    error: "no".into(),
                    blamed: vec![2],
                })),
                session: SESSION.to_vec(),
                audit: None,
            }],
            policy_hash: POLICY_HASH.to_vec(),
            policy_version: 2,
        }),
        Up::Relay(relay.clone()),
        Up::Approval(rpc_approval(0)),
        Up::Refusal(rpc::Refusal {
            job_id: JOB.into(),
            reason: "limits".into(),
            computed_digest: DIGEST.to_vec(),
            code: "limit".into(),
            audit: None,
        }),
        Up::Answer(rpc::ExchangeAnswer {
            request_id: "r".into(),
            json: br#"[{"asset":"ETH","free":"1.5","locked":"0"}]"#.to_vec(),
            error: String::new(),
        }),
        Up::ExchangeSent(rpc::ExchangeSent {
            job_id: JOB.into(),
            withdrawal_id: "AGBSO6T-UFMTTQ-I7KGS6".into(),
            error: String::new(),
            audit: None,
            outcome_unknown: false,
        }),
        Up::MultisigSigned(rpc::MultisigSigned {
            job_id: JOB.into(),
            signatures: vec![vec![1; 64], vec![2; 64]],
            error: String::new(),
            audit: Some(rpc::AuditRef {
                seq: 9,
                hash: vec![4; 32],
            }),
        }),
    ];
    let down = [
        Down::Relay(relay),
        Down::Start(rpc::StartProtocol {
            job_id: JOB.into(),
            session: SESSION.to_vec(),
            kind: rpc::ProtocolKind::Sign as i32,
            group_id: "g1".into(),
            scheme: "ecdsa-secp256k1".into(),
            threshold: 2,
            group: (0..3).map(participant).collect(),
            parties: vec![0, 1],
            wallet_id: WALLET.0.to_vec(),
            approved_job_id: JOB.into(),
            certificate: vec![rpc_approval(0), rpc_approval(1)],
            attempt: 1,
            intent: INTENT_SEEDS[0].clone(),
            engine: "dkls23".into(),
            derivation_path: "m/0/1".into(),
            input: 1,
            ..Default::default()
        }),
        Down::Proposal(rpc::Proposal {
            job_id: JOB.into(),
            wallet_id: WALLET.0.to_vec(),
            payload: PAYLOAD_SEEDS[2].clone(),
            digest: PAYLOADS[2].digest().to_vec(),
            intent: INTENT_SEEDS[0].clone(),
        }),
        Down::Policy(rpc::PolicyUpdate {
            signed_policy: POLICY_SEEDS[1].clone(),
        }),
        Down::Certificate(rpc::Certificate {
            job_id: JOB.into(),
            session: SESSION.to_vec(),
            approvals: vec![rpc_approval(3), rpc_approval(4)],
        }),
        Down::MultisigSign(rpc::MultisigSign {
            job_id: JOB.into(),
            certificate: vec![rpc_approval(2)],
        }),
        Down::ExchangeSend(rpc::ExchangeSend {
            job_id: JOB.into(),
            certificate: vec![rpc_approval(0), rpc_approval(1)],
        }),
    ];
    let mut out: Vec<Vec<u8>> = up
        .into_iter()
        .map(|m| rpc::ModuleToCoordinator { msg: Some(m) }.encode_to_vec())
        .collect();
    out.extend(
        down.into_iter()
            .map(|m| rpc::CoordinatorToModule { msg: Some(m) }.encode_to_vec()),
    );
    out
});

/// The project's own reading of the identity, sealing key and group fields of the
/// messages: what verifies must be exactly what the fixtures signed.
fn check_participant(p: &rpc::Participant) {
    let (Ok(id), Ok(sk)) = (
        PublicIdentity::try_from(p.identity.as_slice()),
        SealingPublicKey::try_from(p.sealing_public_key.as_slice()),
    ) else {
        return;
    };
    if id.verify_sealing_key(&sk, &p.sealing_key_signature).is_ok() {
        let genuine = (0..3u8).any(|i| {
            key(21 + i).public() == id
                && sealing(31 + i).public() == sk
                && p.sealing_key_signature
                    == key(21 + i)
                        .sign_sealing_key(&sealing(31 + i).public())
                        .to_vec()
        });
        assert!(genuine, "only a genuine sealing-key binding verifies");
    }
}

fn check_approvals(approvals: &[rpc::Approval]) {
    for a in approvals {
        if let Ok(s) = ApprovalStatement::from_bytes(&a.statement) {
            assert_eq!(s.to_bytes(), a.statement);
        }
    }
    let members: Vec<(String, PublicIdentity)> = MEMBERS.clone();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = approvals
        .iter()
        .map(|a| (a.statement.clone(), a.signature.clone()))
        .collect();
    let _ = check_certificate(
        &CertificateCheck {
            job_id: JOB,
            wallet: WALLET,
            digest: DIGEST,
            policy: POLICY_HASH,
            rule: AgreementRule::All,
            threshold: 2,
            members: &members,
            now: NOW,
        },
        &pairs,
    );
}

fn check_start(s: &rpc::StartProtocol) {
    for p in &s.group {
        check_participant(p);
    }
    if let Ok(kind) = rpc::ProtocolKind::try_from(s.kind) {
        assert_eq!(kind as i32, s.kind);
        let name = kind.as_str_name();
        assert_eq!(rpc::ProtocolKind::from_str_name(name), Some(kind));
    }
    if let (Ok(t), Ok(n)) = (u16::try_from(s.threshold), u16::try_from(s.group.len())) {
        let _ = Threshold::new(t, n);
    }
    if let Ok(scheme) = s.scheme.parse::<Scheme>() {
        assert_eq!(scheme.to_string().parse::<Scheme>().unwrap(), scheme);
    }
    if let Ok(engine) = s.engine.parse::<EcdsaEngine>() {
        assert_eq!(engine.to_string().parse::<EcdsaEngine>().unwrap(), engine);
    }
    if let Ok(path) = s.derivation_path.parse::<DerivationPath>() {
        assert!(path.children().len() <= DerivationPath::MAX_DEPTH);
        assert_eq!(path.to_string().parse::<DerivationPath>().unwrap(), path);
    }
    let _ = <[u8; 32]>::try_from(s.wallet_id.as_slice());
    if !s.intent.is_empty() {
        check_intent_bytes(&s.intent);
    }
    check_approvals(&s.certificate);
    for shard in &s.import_shards {
        let _ = SealedHeader::peek(shard);
    }
}

fn check_down(m: &rpc::CoordinatorToModule) {
    use rpc::coordinator_to_module::Msg;
    match &m.msg {
        Some(Msg::Relay(r)) => check_sealed(&r.sealed),
        Some(Msg::Start(s)) => check_start(s),
        Some(Msg::Proposal(p)) => {
            if let Ok(payload) = SigningPayload::from_canonical(&p.payload) {
                assert_eq!(payload.to_canonical(), p.payload);
                exercise_payload(&payload);
            }
            check_intent_bytes(&p.intent);
        }
        Some(Msg::Policy(u)) => check_policy_bytes(&u.signed_policy),
        Some(Msg::Certificate(c)) => check_approvals(&c.approvals),
        Some(Msg::MultisigSign(c)) => check_approvals(&c.certificate),
        Some(Msg::ExchangeSend(c)) => check_approvals(&c.certificate),
        Some(Msg::Query(q)) => {
            let _ = (&q.request_id, &q.exchange, &q.query);
        }
        Some(Msg::Welcome(_) | Msg::Abort(_) | Msg::Release(_)) | None => {}
    }
}

fn check_up(m: &rpc::ModuleToCoordinator) {
    use rpc::module_to_coordinator::Msg;
    match &m.msg {
        Some(Msg::Hello(h)) => {
            if let Ok(sk) = SealingPublicKey::try_from(h.sealing_public_key.as_slice())
                && key(21)
                    .public()
                    .verify_sealing_key(&sk, &h.sealing_key_signature)
                    .is_ok()
            {
                assert_eq!(sk, sealing(31).public());
            }
            for u in &h.replay {
                let _ = &u.status;
            }
        }
        Some(Msg::Relay(r)) => check_sealed(&r.sealed),
        Some(Msg::Approval(a)) => check_approvals(std::slice::from_ref(a)),
        _ => {}
    }
}

#[derive(Debug, TypeGenerator)]
enum GrpcInput {
    Raw { down: bool, bytes: Vec<u8> },
    Mutated { seed: u8, edits: Vec<Edit> },
}

fn check_grpc(down: bool, bytes: &[u8]) {
    if down {
        if let Ok(m) = rpc::CoordinatorToModule::decode(bytes) {
            let encoded = m.encode_to_vec();
            assert_eq!(encoded.len(), m.encoded_len());
            assert_eq!(
                rpc::CoordinatorToModule::decode(encoded.as_slice()).unwrap(),
                m
            );
            check_down(&m);
        }
    } else if let Ok(m) = rpc::ModuleToCoordinator::decode(bytes) {
        let encoded = m.encode_to_vec();
        assert_eq!(encoded.len(), m.encoded_len());
        assert_eq!(
            rpc::ModuleToCoordinator::decode(encoded.as_slice()).unwrap(),
            m
        );
        check_up(&m);
    }
}

/// The gRPC messages (prost) both ways, then the project's own reading of their fields:
/// identities and sealing-key bindings, protocol kinds, schemes, engines, derivation paths,
/// payloads, intents, policies, certificates and sealed relays inside them.
#[test]
fn grpc_messages() {
    check!()
        .with_type::<GrpcInput>()
        .with_iterations(CASES)
        .for_each(|input| match input {
            GrpcInput::Raw { down, bytes } => check_grpc(*down, bytes),
            GrpcInput::Mutated { seed, edits } => {
                let n = usize::from(*seed) % GRPC_SEEDS.len();
                let bytes = apply(&GRPC_SEEDS[n], edits);
                // The first seeds are module → coordinator messages; decode each both ways.
                check_grpc(true, &bytes);
                check_grpc(false, &bytes);
            }
        });
}

// ---------------------------------------------------------------------------------------------
// Finished signatures

/// (scheme, public key, signing input, signature), each genuine.
static SIGNATURES: LazyLock<Vec<(Scheme, Vec<u8>, Vec<u8>, Vec<u8>)>> = LazyLock::new(|| {
    let digest = [0x42u8; 32];
    let (sig, rid) = ecdsa_key(5).sign_prehash_recoverable(&digest).unwrap();
    let mut ecdsa = sig.to_bytes().to_vec();
    ecdsa.push(rid.to_byte());
    let msg = b"concord/message/v1\0hello".to_vec();
    let schnorr = schnorr_key(6).sign_raw(&msg, &[7; 32]).unwrap();
    let ed = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let ed_sig = ed25519_dalek::Signer::sign(&ed, &msg);
    vec![
        (
            Scheme::EcdsaSecp256k1,
            ecdsa_public(5),
            digest.to_vec(),
            ecdsa,
        ),
        (
            Scheme::SchnorrTaproot,
            schnorr_key(6).verifying_key().to_bytes().to_vec(),
            msg.clone(),
            schnorr.to_bytes().to_vec(),
        ),
        (
            Scheme::Ed25519,
            ed.verifying_key().to_bytes().to_vec(),
            msg,
            ed_sig.to_bytes().to_vec(),
        ),
    ]
});

#[derive(Debug, TypeGenerator)]
enum SignatureInput {
    Raw {
        scheme: u8,
        key: Vec<u8>,
        input: Vec<u8>,
        signature: Vec<u8>,
    },
    Mutated {
        seed: u8,
        scheme: u8,
        key: Vec<Edit>,
        input: Vec<Edit>,
        signature: Vec<Edit>,
    },
}

fn check_signature(scheme: Scheme, key: &[u8], input: &[u8], signature: &[u8]) {
    if verify_signature(scheme, key, input, signature).is_ok() {
        assert!(
            SIGNATURES
                .iter()
                .any(|(s, k, i, g)| *s == scheme && k == key && i == input && g == signature),
            "only a genuine signature verifies (no malleability)"
        );
    }
}

/// `verify::verify_signature`: a finished signature from the group (or a multisig member)
/// checked before it is used. Mutating a genuine signature, key or input never verifies.
#[test]
fn finished_signature() {
    for (s, k, i, g) in SIGNATURES.iter() {
        verify_signature(*s, k, i, g).expect("the fixtures verify");
    }
    check!()
        .with_type::<SignatureInput>()
        .with_iterations(CASES)
        .for_each(|input| match input {
            SignatureInput::Raw {
                scheme,
                key,
                input,
                signature,
            } => check_signature(*pick(&Scheme::ALL, *scheme), key, input, signature),
            SignatureInput::Mutated {
                seed,
                scheme,
                key,
                input,
                signature,
            } => {
                let (s, k, i, g) = pick(&SIGNATURES, *seed);
                let s = if *scheme < 16 {
                    *pick(&Scheme::ALL, *scheme)
                } else {
                    *s
                };
                check_signature(s, &apply(k, key), &apply(i, input), &apply(g, signature));
            }
        });
}

#[test]
fn fixtures_are_accepted() {
    // The seeds themselves pass, so mutations start from valid documents.
    for (p, bytes) in PAYLOADS.iter().zip(PAYLOAD_SEEDS.iter()) {
        assert_eq!(&SigningPayload::from_canonical(bytes).unwrap(), p);
    }
    for si in INTENTS.iter() {
        si.verify(&POLICY, NOW).unwrap();
    }
    POLICIES[0].check_succession(None, &root()).unwrap();
    POLICIES[1]
        .check_succession(Some(&POLICIES[0].policy), &root())
        .unwrap();
    for (sealed, pt) in SEALED.iter() {
        let opened = seal::open(
            &sealing(2),
            RECIPIENT,
            &key(1).public(),
            SENDER,
            &SESSION,
            sealed,
        )
        .unwrap();
        assert_eq!(opened.as_slice(), pt.as_slice());
    }
    let pairs = vec![
        APPROVALS[0].clone(),
        APPROVALS[1].clone(),
        APPROVALS[2].clone(),
    ];
    let check = CertificateCheck {
        job_id: JOB,
        wallet: WALLET,
        digest: DIGEST,
        policy: POLICY_HASH,
        rule: AgreementRule::All,
        threshold: 2,
        members: &MEMBERS,
        now: NOW,
    };
    assert_eq!(check_certificate(&check, &pairs).unwrap().len(), 3);
    for seed in GRPC_SEEDS.iter() {
        assert!(
            rpc::CoordinatorToModule::decode(seed.as_slice()).is_ok()
                || rpc::ModuleToCoordinator::decode(seed.as_slice()).is_ok()
        );
    }
}
