//! Policies, intents and certificates: each rule refused where it must be, and the canonical
//! encodings pinned by snapshots.

use concord_types::{Scheme, WalletId};
use zeroize::Zeroizing;

use super::*;

fn key(i: u8) -> IdentityKey {
    IdentityKey::from_seed(&Zeroizing::new([i; 32]))
}

const WALLET: WalletId = WalletId([7; 32]);
const CRED: WalletId = WalletId([8; 32]);

fn principal(name: &str, i: u8, roles: &[Role]) -> Principal {
    Principal {
        name: name.into(),
        key: key(i).public(),
        roles: roles.to_vec(),
    }
}

fn root() -> AdminSet {
    AdminSet::new(vec![key(1).public(), key(2).public(), key(3).public()], 2).unwrap()
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
        ],
        wallets: vec![
            WalletRule {
                wallet: WALLET,
                label: "desk".into(),
                purpose: WalletPurpose::Trading {
                    deposit_to: vec!["binance".into()],
                    raw_messages: false,
                },
                limits: vec![CoinLimit {
                    coin: "ETH".into(),
                    per_transfer: "2".into(),
                    per_day: "5".into(),
                    cosign_above: Some("1".into()),
                    cosigners: 1,
                }],
                refresh: false,
                derive: vec![],
                multisig: None,
                held: None,
            },
            WalletRule {
                wallet: CRED,
                label: "binance-key".into(),
                purpose: WalletPurpose::ExchangeCredential {
                    exchange: "binance".into(),
                    withdraw_to: vec!["desk".into()],
                },
                limits: vec![],
                refresh: false,
                derive: vec![],
                multisig: None,
                held: None,
            },
        ],
        address_book: vec![AddressEntry {
            label: "desk".into(),
            target: AddressTarget::Wallet { wallet: WALLET },
        }],
        groups: vec![],
    }
}

fn signed(p: Policy, signers: &[u8]) -> SignedPolicy {
    let mut s = SignedPolicy {
        policy: p,
        signatures: vec![],
    };
    for i in signers {
        s.sign(&key(*i));
    }
    s
}

#[test]
fn a_first_policy_needs_the_pinned_quorum_and_its_own() {
    let p = policy_v1();
    p.validate().unwrap();
    signed(p.clone(), &[1, 2])
        .check_succession(None, &root())
        .unwrap();
    // One admin is not a quorum.
    let e = signed(p.clone(), &[1])
        .check_succession(None, &root())
        .unwrap_err();
    assert!(
        matches!(
            e,
            AuthorityError::Quorum {
                have: 1,
                need: 2,
                ..
            }
        ),
        "{e}"
    );
    // Signatures by keys that are not admins do not count, however many.
    let e = signed(p.clone(), &[1, 10, 11, 12])
        .check_succession(None, &root())
        .unwrap_err();
    assert!(matches!(e, AuthorityError::Quorum { have: 1, .. }), "{e}");
    // A signature over another policy does not count for this one.
    let mut other = p.clone();
    other.admin_quorum = 1;
    let mut s = signed(p.clone(), &[1]);
    s.signatures.push(signed(other, &[2]).signatures.remove(0));
    assert!(s.check_succession(None, &root()).is_err());
}

#[test]
fn policies_follow_one_another_in_order() {
    let v1 = policy_v1();
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.previous = Some(v1.hash());
    v2.principals
        .push(principal("trader-2", 13, &[Role::Trader]));
    signed(v2.clone(), &[2, 3])
        .check_succession(Some(&v1), &root())
        .unwrap();
    // Replaying v1 over v1, skipping a version, or naming another predecessor: refused.
    let e = signed(v1.clone(), &[1, 2])
        .check_succession(Some(&v1), &root())
        .unwrap_err();
    assert!(matches!(e, AuthorityError::OutOfOrder(_)), "{e}");
    let mut v3 = v2.clone();
    v3.version = 3;
    assert!(
        signed(v3, &[1, 2])
            .check_succession(Some(&v1), &root())
            .is_err()
    );
    let mut forked = v2.clone();
    forked.previous = Some([0; 32]);
    assert!(
        signed(forked, &[1, 2])
            .check_succession(Some(&v1), &root())
            .is_err()
    );
    // Rotating the admins needs the admins in force and the new ones.
    let mut rotated = v2.clone();
    for p in &mut rotated.principals {
        if p.has(Role::Admin) {
            p.roles = vec![Role::Trader];
        }
    }
    rotated
        .principals
        .push(principal("new-admin", 20, &[Role::Admin]));
    rotated.admin_quorum = 1;
    let e = signed(rotated.clone(), &[20])
        .check_succession(Some(&v1), &root())
        .unwrap_err();
    assert!(e.to_string().contains("admins in force"), "{e}");
    let e = signed(rotated.clone(), &[1, 2])
        .check_succession(Some(&v1), &root())
        .unwrap_err();
    assert!(e.to_string().contains("installs"), "{e}");
    signed(rotated, &[1, 2, 20])
        .check_succession(Some(&v1), &root())
        .unwrap();
}

#[test]
fn inconsistent_policies_are_refused_with_the_reason() {
    type Change = Box<dyn Fn(&mut Policy)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|p| p.admin_quorum = 4), "quorum of 4"),
        (Box::new(|p| p.admin_quorum = 0), "quorum of 0"),
        (
            Box::new(|p| p.principals.push(principal("admin-1", 30, &[Role::Trader]))),
            "listed twice",
        ),
        (
            Box::new(|p| p.principals.push(principal("twin", 10, &[Role::Trader]))),
            "two principals",
        ),
        (
            Box::new(|p| {
                p.wallets[1].purpose = WalletPurpose::ExchangeCredential {
                    exchange: "binance".into(),
                    withdraw_to: vec!["nowhere".into()],
                }
            }),
            "not in the address book",
        ),
        (
            Box::new(|p| p.wallets[0].limits[0].per_day = "-1".into()),
            "not a plain decimal",
        ),
        (
            Box::new(|p| p.previous = Some([1; 32])),
            "version 1 names no",
        ),
        (Box::new(|p| p.version = 0), "starts at 1"),
        (
            Box::new(|p| p.wallets[0].limits[0].cosigners = 0),
            "cosigners of at least 1",
        ),
        (
            Box::new(|p| {
                let w = p.wallets[1].clone();
                p.wallets.push(WalletRule {
                    wallet: WalletId([9; 32]),
                    ..w
                });
            }),
            "two wallets are exchange binance's withdraw credential",
        ),
        (
            Box::new(|p| {
                let def = multisig_def();
                p.wallets[0].multisig = Some(def);
            }),
            "must be its definition's hash",
        ),
        (
            Box::new(|p| {
                let mut def = multisig_def();
                def.members.reverse();
                p.wallets[0].wallet = def.wallet_id();
                p.wallets[0].multisig = Some(def);
            }),
            "ascending order",
        ),
        (
            Box::new(|p| {
                let def = multisig_def();
                p.wallets[1].wallet = def.wallet_id();
                p.wallets[1].multisig = Some(def);
            }),
            "only be a trading wallet",
        ),
        (
            Box::new(|p| {
                let mut def = multisig_def();
                def.chain = "doge".into();
                p.wallets[0].wallet = def.wallet_id();
                p.wallets[0].multisig = Some(def);
            }),
            "unknown UTXO network",
        ),
        (
            Box::new(|p| {
                // The same keys in capitals would be a second id for the same script.
                let mut def = multisig_def();
                def.members[0].key = def.members[0].key.to_uppercase();
                p.wallets[0].wallet = def.wallet_id();
                p.wallets[0].multisig = Some(def);
            }),
            "not lowercase hex",
        ),
        (
            Box::new(|p| {
                // A key its member's identity never published.
                let mut def = multisig_def();
                def.members[0].key_signature = def.members[1].key_signature.clone();
                p.wallets[0].wallet = def.wallet_id();
                p.wallets[0].multisig = Some(def);
            }),
            "is not signed by its identity",
        ),
        // Held credentials (Kraken's HMAC key, one holder).
        (
            Box::new(|p| {
                let def = held_def();
                p.wallets[1].held = Some(def);
            }),
            "held credential whose id must be its definition's hash",
        ),
        (
            Box::new(|p| {
                let mut def = held_def();
                def.holder = "m9".into();
                p.wallets[1].wallet = def.wallet_id();
                p.wallets[1].held = Some(def);
            }),
            "holder m9 is not one of its members",
        ),
        (
            Box::new(|p| {
                // One approval would be the holder's own: no check at all.
                let mut def = held_def();
                def.threshold = 1;
                p.wallets[1].wallet = def.wallet_id();
                p.wallets[1].held = Some(def);
            }),
            "threshold from 2",
        ),
        (
            Box::new(|p| {
                let mut def = held_def();
                def.threshold = 4;
                p.wallets[1].wallet = def.wallet_id();
                p.wallets[1].held = Some(def);
            }),
            "threshold from 2",
        ),
        (
            Box::new(|p| {
                let mut def = held_def();
                def.members[2].identity = def.members[0].identity;
                p.wallets[1].wallet = def.wallet_id();
                p.wallets[1].held = Some(def);
            }),
            "twice",
        ),
        (
            Box::new(|p| {
                let def = held_def();
                p.wallets[0].wallet = def.wallet_id();
                p.wallets[0].held = Some(def);
            }),
            "must be exchange binance's withdraw credential",
        ),
        (
            Box::new(|p| {
                let mut def = held_def();
                def.api_key = String::new();
                p.wallets[1].wallet = def.wallet_id();
                p.wallets[1].held = Some(def);
            }),
            "names no API key",
        ),
    ];
    // A well-formed held credential passes.
    let mut p = policy_v1();
    let def = held_def();
    p.wallets[1].wallet = def.wallet_id();
    p.wallets[1].held = Some(def);
    p.validate().unwrap();
    // A well-formed multisig wallet passes.
    let mut p = policy_v1();
    let def = multisig_def();
    p.wallets[0].wallet = def.wallet_id();
    p.wallets[0].multisig = Some(def);
    p.validate().unwrap();
    for (change, want) in cases {
        let mut p = policy_v1();
        change(&mut p);
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains(want), "wanted {want:?} in {e:?}");
    }
}

/// Binance's withdraw key held by m1, two of three approvals (the credential's exchange is
/// the one `policy_v1`'s credential wallet names).
fn held_def() -> HeldCredential {
    HeldCredential {
        exchange: "binance".into(),
        api_key: "withdraw-key".into(),
        holder: "m1".into(),
        threshold: 2,
        members: (1u8..=3)
            .map(|i| HeldMember {
                module: format!("m{i}"),
                identity: key(40 + i).public(),
            })
            .collect(),
    }
}

/// A 2-of-3 multisig definition: three modules' identities and own keys, in key order.
fn multisig_def() -> MultisigDef {
    let mut members: Vec<MultisigMember> = (1u8..=3)
        .map(|i| {
            let k = k256::ecdsa::SigningKey::from_bytes((&[i; 32]).into()).unwrap();
            let own: [u8; 33] = k
                .verifying_key()
                .to_encoded_point(true)
                .as_bytes()
                .try_into()
                .unwrap();
            let identity = key(40 + i);
            MultisigMember {
                module: format!("m{i}"),
                identity: identity.public(),
                key: hex::encode(own),
                key_signature: hex::encode(identity.sign_multisig_key(&own)),
            }
        })
        .collect();
    members.sort_by(|a, b| a.key.cmp(&b.key));
    MultisigDef {
        chain: "ltc-regtest".into(),
        threshold: 2,
        members,
        safe: None,
    }
}

fn deposit(amount: &str) -> Action {
    Action::Deposit {
        wallet: WALLET,
        exchange: "binance".into(),
        coin: "ETH".into(),
        network: "ETH".into(),
        amount: amount.into(),
        rule: AgreementRule::All,
    }
}

#[test]
fn intents_verify_against_the_policy() {
    let p = policy_v1();
    let now = unix_now();
    let mut si = SignedIntent::new(Intent::new(deposit("1.5"), 600), &key(10));
    let v = si.verify(&p, now).unwrap();
    assert_eq!(v.requester, "trader");
    assert!(v.cosigners.is_empty());
    si.cosign(&key(11));
    assert_eq!(si.verify(&p, now).unwrap().cosigners, vec!["approver"]);

    // A key not in the policy.
    let e = SignedIntent::new(Intent::new(deposit("1"), 600), &key(99))
        .verify(&p, now)
        .unwrap_err();
    assert!(matches!(e, AuthorityError::UnknownSigner { .. }), "{e}");
    // A trader importing, an importer depositing, a trader co-signing.
    let import = Action::Import {
        group: "desk".into(),
        scheme: Scheme::EcdsaSecp256k1,
        public_key: vec![2; 33],
        importer: key(50).public(),
    };
    let e = SignedIntent::new(Intent::new(import.clone(), 600), &key(10))
        .verify(&p, now)
        .unwrap_err();
    assert!(
        matches!(&e, AuthorityError::MissingRole { role: Role::Importer, principal } if principal == "trader"),
        "{e}"
    );
    SignedIntent::new(Intent::new(import, 600), &key(12))
        .verify(&p, now)
        .unwrap();
    let e = SignedIntent::new(Intent::new(deposit("1"), 600), &key(12))
        .verify(&p, now)
        .unwrap_err();
    assert!(matches!(e, AuthorityError::MissingRole { .. }), "{e}");
    let mut two_traders = SignedIntent::new(Intent::new(deposit("1"), 600), &key(10));
    two_traders.cosign(&key(12));
    assert!(matches!(
        two_traders.verify(&p, now).unwrap_err(),
        AuthorityError::MissingRole {
            role: Role::Approver,
            ..
        }
    ));
    // The same key twice.
    let mut twice = SignedIntent::new(Intent::new(deposit("1"), 600), &key(10));
    twice.signatures.push(twice.signatures[0].clone());
    assert!(matches!(
        twice.verify(&p, now).unwrap_err(),
        AuthorityError::DuplicateSigner { .. }
    ));
    // Expired, dated in the future, living too long.
    let si = SignedIntent::new(Intent::new(deposit("1"), 60), &key(10));
    assert!(matches!(
        si.verify(&p, now + 61).unwrap_err(),
        AuthorityError::Expired { .. }
    ));
    let mut i = Intent::new(deposit("1"), 60);
    i.created_at = now + 3600;
    i.expires_at = now + 3700;
    assert!(matches!(
        SignedIntent::new(i, &key(10)).verify(&p, now).unwrap_err(),
        AuthorityError::Expired { .. }
    ));
    let mut i = Intent::new(deposit("1"), 60);
    i.expires_at = i.created_at + MAX_INTENT_LIFETIME_SECS + 1;
    assert!(SignedIntent::new(i, &key(10)).verify(&p, now).is_err());
    // Altered after signing: the amount, the id.
    let mut si = SignedIntent::new(Intent::new(deposit("1"), 600), &key(10));
    si.intent.action = deposit("100");
    assert!(matches!(
        si.verify(&p, now).unwrap_err(),
        AuthorityError::BadSignature { .. }
    ));
    // Zero, negative, junk amounts; an id that cannot be an order id.
    for a in ["0", "0.000", "-1", "1e3", ""] {
        assert!(
            SignedIntent::new(Intent::new(deposit(a), 60), &key(10))
                .verify(&p, now)
                .is_err(),
            "{a}"
        );
    }
    let mut i = Intent::new(deposit("1"), 60);
    i.id = "../x".into();
    assert!(SignedIntent::new(i, &key(10)).verify(&p, now).is_err());
}

#[test]
fn an_intent_signature_is_not_a_policy_signature() {
    // The same bytes signed under one tag do not verify under another.
    let e = Endorsement::sign(&key(1), INTENT_TAG, b"x");
    assert!(e.verify(INTENT_TAG, b"x").is_ok());
    assert!(e.verify(POLICY_TAG, b"x").is_err());
    assert!(e.verify(APPROVAL_TAG, b"x").is_err());
}

fn members() -> Vec<(String, PublicIdentity)> {
    (0..3)
        .map(|i| (format!("m{}", i + 1), key(40 + i).public()))
        .collect()
}

fn approval(module: u8, digest: [u8; 32], expires_at: u64) -> (Vec<u8>, Vec<u8>) {
    let st = ApprovalStatement {
        version: 2,
        job_id: "job".into(),
        module_id: format!("m{}", module + 1),
        wallet_id: WALLET,
        digest,
        policy: [5; 32],
        intent: "i1".into(),
        rule: AgreementRule::Threshold,
        expires_at,
        checks: vec!["x".into()],
    };
    let bytes = st.to_bytes();
    let sig = ApprovalStatement::sign(&bytes, &key(40 + module)).to_vec();
    (bytes, sig)
}

#[test]
fn certificates_must_meet_the_rule_with_genuine_approvals_of_one_digest() {
    let m = members();
    let now = unix_now();
    let d = [1; 32];
    let mut check = CertificateCheck {
        job_id: "job",
        wallet: WALLET,
        digest: d,
        policy: [5; 32],
        rule: AgreementRule::Threshold,
        threshold: 2,
        members: &m,
        now,
    };
    let good = vec![approval(0, d, now + 60), approval(1, d, now + 60)];
    assert_eq!(
        check_certificate(&check, &good)
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    // One approval, or one approval twice: not enough.
    let e = check_certificate(&check, &good[..1]).unwrap_err();
    assert!(e.to_string().contains("holds 1 (m1)"), "{e}");
    assert!(check_certificate(&check, &[good[0].clone(), good[0].clone()]).is_err());
    // Another digest.
    let e =
        check_certificate(&check, &[good[0].clone(), approval(1, [2; 32], now + 60)]).unwrap_err();
    assert!(e.to_string().contains("digest"), "{e}");
    // A forged approval: m2's statement signed by someone else.
    let (st, _) = approval(1, d, now + 60);
    let forged = ApprovalStatement::sign(&st, &key(99)).to_vec();
    let e = check_certificate(&check, &[good[0].clone(), (st, forged)]).unwrap_err();
    assert!(e.to_string().contains("not signed by its pinned"), "{e}");
    // Expired.
    let e = check_certificate(&check, &[good[0].clone(), approval(1, d, now - 1)]).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    // A statement re-encoded (not canonical) is refused.
    let (st, sig) = approval(1, d, now + 60);
    let spaced = String::from_utf8(st)
        .unwrap()
        .replace(',', ", ")
        .into_bytes();
    assert!(check_certificate(&check, &[good[0].clone(), (spaced, sig)]).is_err());
    // Rule 'all' needs every member.
    check.rule = AgreementRule::All;
    let all = |r: AgreementRule| {
        (0..3)
            .map(|i| {
                let (st, _) = approval(i, d, now + 60);
                let mut s = ApprovalStatement::from_bytes(&st).unwrap();
                s.rule = r;
                let b = s.to_bytes();
                let sig = ApprovalStatement::sign(&b, &key(40 + i)).to_vec();
                (b, sig)
            })
            .collect::<Vec<_>>()
    };
    let three = all(AgreementRule::All);
    let e = check_certificate(&check, &three[..2]).unwrap_err();
    assert!(
        e.to_string().contains("rule 'all' needs approvals from 3"),
        "{e}"
    );
    check_certificate(&check, &three).unwrap();
    // Approvals made for rule 'threshold' do not count for a job under rule 'all'.
    assert!(check_certificate(&check, &all(AgreementRule::Threshold)).is_err());
}

/// The attack on a wide group: a 2-of-5 group signs nonce N with {m1, m2}; m3 approved but
/// never signed, so its approval may be released (or lapse); {m3, m4, m5} then approve another
/// transaction at N. A certificate of 3 must not be enough: under `threshold`, any certificate
/// includes one of any t members that signed before (and their bindings never lapse).
#[test]
fn threshold_certificates_always_include_a_member_of_any_earlier_signing_set() {
    for n in 1..=9 {
        for t in 1..=n {
            let need = AgreementRule::Threshold.needed(t, n);
            assert!(need >= t && need <= n, "{t}-of-{n}: {need}");
            assert!(
                need + t > n,
                "{t}-of-{n}: {need} approvals can avoid {t} signers"
            );
            assert_eq!(AgreementRule::All.needed(t, n), n);
        }
    }
    assert_eq!(AgreementRule::Threshold.needed(2, 3), 2);
    assert_eq!(AgreementRule::Threshold.needed(2, 5), 4);
    assert_eq!(AgreementRule::Threshold.needed(3, 5), 3);

    let m: Vec<(String, PublicIdentity)> = (0..5)
        .map(|i| (format!("m{}", i + 1), key(40 + i).public()))
        .collect();
    let now = unix_now();
    let d = [1; 32];
    let check = CertificateCheck {
        job_id: "job",
        wallet: WALLET,
        digest: d,
        policy: [5; 32],
        rule: AgreementRule::Threshold,
        threshold: 2,
        members: &m,
        now,
    };
    let last_three: Vec<_> = (2..5).map(|i| approval(i, d, now + 60)).collect();
    let e = check_certificate(&check, &last_three).unwrap_err();
    assert!(e.to_string().contains("needs approvals from 4"), "{e}");
    let four: Vec<_> = (1..5).map(|i| approval(i, d, now + 60)).collect();
    check_certificate(&check, &four).unwrap();
}

#[test]
fn sessions_bind_job_attempt_signers_and_digest() {
    let s = sign_session("j", 0, &[0, 1], &[1; 32]);
    assert_ne!(s, sign_session("j", 1, &[0, 1], &[1; 32]));
    assert_ne!(s, sign_session("j", 0, &[0, 2], &[1; 32]));
    assert_ne!(s, sign_session("j", 0, &[0, 1], &[2; 32]));
    assert_ne!(s, sign_session("k", 0, &[0, 1], &[1; 32]));
    assert_eq!(s, sign_session("j", 0, &[0, 1], &[1; 32]));
}

#[test]
fn raw_messages_are_domain_separated() {
    let m = tagged_message(b"hello");
    assert!(m.starts_with(b"concord/message/v1\0"));
    assert!(m.ends_with(b"hello"));
}

/// The canonical encodings are part of the protocol: a change here changes every hash and
/// signature, so it must be deliberate (regenerate with `CONCORD_UPDATE_SNAPSHOTS=1`).
#[test]
fn canonical_encodings_match_their_snapshots() {
    let mut intent = Intent::new(deposit("1.5"), 600);
    intent.id = "0123456789abcdef0123456789abcdef".into();
    intent.created_at = 1_800_000_000;
    intent.expires_at = 1_800_000_600;
    let si = SignedIntent::new(intent, &key(10));
    let policy = signed(policy_v1(), &[1, 2]);
    let statement = ApprovalStatement::from_bytes(&approval(0, [1; 32], 1_800_000_000).0).unwrap();
    let snapshot = format!(
        "intent: {}\nintent hash: {}\nsigned intent: {}\npolicy: {}\npolicy hash: {}\nsigned policy: {}\napproval: {}\n",
        String::from_utf8(si.intent.to_canonical()).unwrap(),
        hex::encode(si.intent.hash()),
        String::from_utf8(si.to_json()).unwrap(),
        String::from_utf8(policy.policy.to_canonical()).unwrap(),
        hex::encode(policy.policy.hash()),
        String::from_utf8(canonical(&policy)).unwrap(),
        String::from_utf8(statement.to_bytes()).unwrap(),
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/snapshots/authority.txt");
    if std::env::var_os("CONCORD_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &snapshot).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap();
    assert_eq!(stored, snapshot, "a canonical encoding changed");
    // And they read back to the same values.
    let back: SignedPolicy = serde_json::from_slice(&canonical(&policy)).unwrap();
    assert_eq!(back, policy);
    assert_eq!(SignedIntent::from_json(&si.to_json()).unwrap(), si);
}
