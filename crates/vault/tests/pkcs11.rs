//! The PKCS#11 side on SoftHSM: the key-encryption key's attributes, PINs and tokens, signing
//! keys generated and used inside the token (checked by independent verifiers: k256 and
//! ed25519-dalek), and keys found again after reopening. Each test runs in a child process
//! with tokens of its own (see `common/hsm.rs`). The shared vault cases run on this provider
//! in `vault.rs` (`pkcs11::…`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::fs;

use common::hsm::{self, Hsm, OTHER_TOKEN, PIN, PIN_ENV, TOKEN};
use concord_vault::{
    ED25519_EC_PARAMS_NAME, ED25519_EC_PARAMS_OID, HsmKeyKind, KekParams, KekProvider, PinSource,
    Pkcs11Config, Pkcs11Kek, SECP256K1_EC_PARAMS, Token, TokenSelector, Vault, VaultError,
};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use k256::ecdsa::signature::hazmat::PrehashVerifier;

/// A session of our own on [`TOKEN`], straight through cryptoki (not through the crate), to
/// look at objects independently. Open a crate [`Token`] first: the crate refuses to trust a
/// login it did not make itself.
fn raw_session(hsm: &Hsm) -> Session {
    let ctx = Pkcs11::new(&hsm.library).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("{e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == TOKEN)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::from(PIN))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("{e}"),
    }
    session
}

fn find_by_label(s: &Session, class: ObjectClass, label: &str) -> cryptoki::object::ObjectHandle {
    let found = s
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1, "{label}");
    found[0]
}

fn bool_attr(s: &Session, h: cryptoki::object::ObjectHandle, t: AttributeType) -> bool {
    let attrs = s.get_attributes(h, &[t]).unwrap();
    match attrs.as_slice() {
        [Attribute::Token(v)]
        | [Attribute::Private(v)]
        | [Attribute::Sensitive(v)]
        | [Attribute::Extractable(v)]
        | [Attribute::AlwaysSensitive(v)]
        | [Attribute::NeverExtractable(v)] => *v,
        other => panic!("{t:?}: {other:?}"),
    }
}

/// Checks, independently of the crate, that a key object cannot be read out of the token:
/// token object, private, sensitive and never otherwise, not extractable and never otherwise;
/// its secret value unreadable; wrapping it out refused.
fn assert_key_stays_inside(s: &Session, h: cryptoki::object::ObjectHandle, secret: AttributeType) {
    assert!(bool_attr(s, h, AttributeType::Token));
    assert!(bool_attr(s, h, AttributeType::Private));
    assert!(bool_attr(s, h, AttributeType::Sensitive));
    assert!(bool_attr(s, h, AttributeType::AlwaysSensitive));
    assert!(!bool_attr(s, h, AttributeType::Extractable));
    assert!(bool_attr(s, h, AttributeType::NeverExtractable));
    // Reading the value fails: the token says it is sensitive…
    let info = s.get_attribute_info(h, &[secret]).unwrap();
    assert!(
        matches!(info.as_slice(), [AttributeInfo::Sensitive]),
        "{info:?}"
    );
    // …and a plain read of it returns nothing.
    assert!(s.get_attributes(h, &[secret]).unwrap().is_empty());
    // Wrapping it out under a key of ours is refused.
    let wrapping = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(32.into()),
                Attribute::Wrap(true),
                Attribute::Encrypt(true),
            ],
        )
        .unwrap();
    let err = s
        .wrap_key(&Mechanism::AesKeyWrapPad, wrapping, h)
        .unwrap_err();
    assert!(
        matches!(err, CkError::Pkcs11(RvError::KeyUnextractable, _)),
        "{err:?}"
    );
    s.destroy_object(wrapping).unwrap();
}

fn kek_params(dir: &std::path::Path) -> (String, String) {
    let header: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("vault.json")).unwrap()).unwrap();
    (
        header["kek"]["key_id"].as_str().unwrap().to_string(),
        header["kek"]["key_label"].as_str().unwrap().to_string(),
    )
}

hsm_tests!(
    cases:
    kek_object_is_sensitive_and_not_extractable,
    an_extractable_key_is_refused_as_kek,
    wrong_pin_is_refused,
    pin_comes_from_a_file_or_the_environment,
    tokens_are_found_by_label_or_slot_and_missing_ones_are_named,
    a_missing_kek_object_is_named,
    a_header_naming_another_vaults_key_does_not_open,
    rekey_from_passphrase_to_the_hsm_and_back,
    secp256k1_signatures_verify_are_low_s_and_recover,
    ed25519_signatures_verify_with_dalek,
    softhsm_accepts_both_ed25519_curve_encodings,
    keys_are_found_again_after_reopening,
    keys_are_found_again_by_a_new_process phases &["create", "use"],
    labels_are_never_reused_and_missing_keys_are_named,
    tokens_and_keys_are_shared_between_threads,
    debug_output_never_shows_the_pin,
);

/// The tests' bodies, run in the child processes.
mod cases {
    use super::*;

    pub fn kek_object_is_sensitive_and_not_extractable(hsm: Hsm) {
        let kek = hsm.kek();
        let dir = hsm.work("vault");
        let vault = Vault::create(&dir, &kek).unwrap();
        vault.put("s", b"secret").unwrap();
        let (id, label) = kek_params(&dir);
        let s = raw_session(&hsm);
        let h = find_by_label(&s, ObjectClass::SECRET_KEY, &label);
        let attrs = s
            .get_attributes(
                h,
                &[
                    AttributeType::Id,
                    AttributeType::KeyType,
                    AttributeType::ValueLen,
                ],
            )
            .unwrap();
        assert!(
            attrs.contains(&Attribute::Id(hex::decode(&id).unwrap())),
            "{attrs:?}"
        );
        assert!(
            attrs.contains(&Attribute::KeyType(KeyType::AES)),
            "{attrs:?}"
        );
        assert!(attrs.contains(&Attribute::ValueLen(32.into())), "{attrs:?}");
        assert_key_stays_inside(&s, h, AttributeType::Value);
        let listed = kek.token().find_key(&label).unwrap().unwrap();
        assert_eq!(listed.kind, HsmKeyKind::Aes256);
        assert!(listed.sensitive && !listed.extractable);
    }

    pub fn an_extractable_key_is_refused_as_kek(hsm: Hsm) {
        // A header pointing at a key that can leave the token is refused, even with the id and
        // label right.
        let kek = hsm.kek();
        let s = raw_session(&hsm);
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::ValueLen(32.into()),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(b"weak".to_vec()),
                Attribute::Id(vec![7; 16]),
            ],
        )
        .unwrap();
        let params = KekParams::Pkcs11 {
            token_label: TOKEN.into(),
            key_id: [7; 16],
            key_label: "weak".into(),
        };
        let err = kek.open(&params).unwrap_err();
        assert!(
            matches!(&err, VaultError::Pkcs11 { reason, .. }
                if reason.contains("readable outside the token")),
            "{err:?}"
        );
    }

    pub fn wrong_pin_is_refused(hsm: Hsm) {
        let dir = hsm.work("vault");
        drop(Vault::create(&dir, &hsm.kek()).unwrap());
        // No session open: the token itself refuses the PIN.
        let bad = hsm.config_with_pin("0000-not-the-pin");
        let err = Token::open(&bad).unwrap_err();
        assert!(
            matches!(&err, VaultError::WrongPin { token } if token == TOKEN),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the PIN does not log in to the PKCS#11 token \"concord-test\""
        );
        // While this process is logged in (the token then accepts any C_Login as "already
        // logged in"), a wrong PIN is still refused.
        let good = hsm.token();
        let err = Pkcs11Kek::from_config(&bad).unwrap_err();
        assert!(matches!(err, VaultError::WrongPin { .. }), "{err:?}");
        // And the right PIN is accepted both ways.
        let vault = Vault::open(&dir, &hsm.kek()).unwrap();
        drop((vault, good));
        Vault::open(&dir, &hsm.kek()).unwrap();
        // The other token's PIN does not open this token either.
        let err = Token::open(&hsm.config_with_pin(hsm::OTHER_PIN)).unwrap_err();
        assert!(matches!(err, VaultError::WrongPin { .. }), "{err:?}");
    }

    pub fn pin_comes_from_a_file_or_the_environment(hsm: Hsm) {
        let mut config = hsm.config();
        // The file (with its trailing newline stripped).
        assert_eq!(
            fs::read_to_string(hsm.pin_file()).unwrap(),
            format!("{PIN}\n")
        );
        Token::open(&config).unwrap();
        // The environment.
        config.pin = PinSource::Env(PIN_ENV.into());
        let token = Token::open(&config).unwrap();
        assert_eq!(token.label(), TOKEN);
        // Unusable sources are named, and the PIN is never in a message.
        let missing_var = "CONCORD_TEST_HSM_PIN_SURELY_UNSET_51c2";
        let missing_file = hsm.dir.join("no-such.pin");
        let empty_file = hsm.dir.join("empty.pin");
        fs::write(&empty_file, "\n").unwrap();
        for (source, expect) in [
            (
                PinSource::Env(missing_var.into()),
                format!("environment variable {missing_var}: the variable is not set"),
            ),
            (
                PinSource::File(missing_file.clone()),
                format!("file {}: the file does not exist", missing_file.display()),
            ),
            (
                PinSource::File(empty_file.clone()),
                format!("file {}: the PIN is empty", empty_file.display()),
            ),
        ] {
            config.pin = source;
            let err = Token::open(&config).unwrap_err();
            assert!(matches!(err, VaultError::Pin { .. }), "{err:?}");
            let msg = err.to_string();
            assert_eq!(msg, format!("cannot read the PKCS#11 PIN from {expect}"));
        }
    }

    pub fn tokens_are_found_by_label_or_slot_and_missing_ones_are_named(hsm: Hsm) {
        let token = hsm.token();
        let other = Token::open(&hsm.other_config()).unwrap();
        assert_eq!(other.label(), OTHER_TOKEN);
        assert_ne!(token.slot_id(), other.slot_id());
        // By slot id.
        let by_slot = Token::open(&Pkcs11Config {
            token: TokenSelector::Slot(token.slot_id()),
            ..hsm.config()
        })
        .unwrap();
        assert_eq!(by_slot.label(), TOKEN);
        // A label no token has: the error lists the tokens present.
        let err = Token::open(&Pkcs11Config {
            token: TokenSelector::Label("no-such-token".into()),
            ..hsm.config()
        })
        .unwrap_err();
        assert!(matches!(err, VaultError::TokenNotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("labelled \"no-such-token\""), "{msg}");
        assert!(msg.contains(&hsm.library.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("\"{TOKEN}\" (slot {})", token.slot_id())),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("\"{OTHER_TOKEN}\" (slot {})", other.slot_id())),
            "{msg}"
        );
        let err = Token::open(&Pkcs11Config {
            token: TokenSelector::Slot(4_000_000_001),
            ..hsm.config()
        })
        .unwrap_err();
        assert!(err.to_string().contains("in slot 4000000001"), "{err}");
        // A library that is not there.
        let err = Token::open(&Pkcs11Config {
            library: hsm.dir.join("libnothing.so"),
            ..hsm.config()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("libnothing.so") && err.to_string().contains("does not exist"),
            "{err}"
        );
        // A vault on one token, opened with the other: named, and nothing changes.
        let dir = hsm.work("vault");
        drop(Vault::create(&dir, &hsm.kek()).unwrap());
        let err = Vault::open(&dir, &hsm.other_kek()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this vault's key-encryption key is on the PKCS#11 token \"concord-test\", but the \
             provider uses the token \"concord-other\""
        );
    }

    pub fn a_missing_kek_object_is_named(hsm: Hsm) {
        let dir = hsm.work("vault");
        let kek = hsm.kek();
        drop(Vault::create(&dir, &kek).unwrap());
        let (id, label) = kek_params(&dir);
        let s = raw_session(&hsm);
        s.destroy_object(find_by_label(&s, ObjectClass::SECRET_KEY, &label))
            .unwrap();
        let err = Vault::open(&dir, &kek).unwrap_err();
        assert!(matches!(err, VaultError::HsmKeyNotFound { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "the PKCS#11 token \"concord-test\" holds no AES-256 key-encryption key with id \
                 {id} and label \"{label}\""
            )
        );
    }

    pub fn a_header_naming_another_vaults_key_does_not_open(hsm: Hsm) {
        // Both keys exist on the token; the header's wrapped key belongs to the first.
        let kek = hsm.kek();
        let (one, two) = (hsm.work("one"), hsm.work("two"));
        drop(Vault::create(&one, &kek).unwrap());
        drop(Vault::create(&two, &kek).unwrap());
        let header_one = fs::read_to_string(one.join("vault.json")).unwrap();
        let (id1, label1) = kek_params(&one);
        let (id2, label2) = kek_params(&two);
        let swapped = header_one.replace(&label1, &label2).replace(&id1, &id2);
        assert_ne!(swapped, header_one);
        fs::write(one.join("vault.json"), swapped).unwrap();
        let err = Vault::open(&one, &kek).unwrap_err();
        assert!(matches!(err, VaultError::WrongHsmKey), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the HSM key-encryption key does not open this vault (or its header was altered)"
        );
    }

    pub fn rekey_from_passphrase_to_the_hsm_and_back(hsm: Hsm) {
        let dir = hsm.work("vault");
        let pass = common::kek(common::PASS);
        let mut vault = Vault::create(&dir, &pass).unwrap();
        vault.put("identity.key", b"module identity").unwrap();
        vault.put("wallet-1.share", &[9u8; 300]).unwrap();
        let sealed_before = fs::read(common::sealed(&dir, "identity.key")).unwrap();

        vault.rekey(&hsm.kek()).unwrap();
        assert_eq!(vault.kek_kind(), "pkcs11");
        drop(vault);
        assert_eq!(
            fs::read(common::sealed(&dir, "identity.key")).unwrap(),
            sealed_before
        );
        let err = Vault::open(&dir, &pass).unwrap_err();
        assert!(
            matches!(
                err,
                VaultError::KekMismatch {
                    expected: "passphrase",
                    found: "pkcs11"
                }
            ),
            "{err:?}"
        );
        let mut vault = Vault::open(&dir, &hsm.kek()).unwrap();
        assert_eq!(
            vault.get("identity.key").unwrap().unwrap().as_slice(),
            b"module identity"
        );
        vault.put("added-on-hsm", b"x").unwrap();

        vault.rekey(&common::kek("back to a passphrase")).unwrap();
        assert_eq!(vault.kek_kind(), "passphrase");
        drop(vault);
        assert!(matches!(
            Vault::open(&dir, &hsm.kek()),
            Err(VaultError::KekMismatch {
                expected: "pkcs11",
                found: "passphrase"
            })
        ));
        let vault = Vault::open(&dir, &common::kek("back to a passphrase")).unwrap();
        assert_eq!(
            vault.get("wallet-1.share").unwrap().unwrap().as_slice(),
            &[9u8; 300]
        );
        assert_eq!(vault.get("added-on-hsm").unwrap().unwrap().as_slice(), b"x");
        assert_eq!(
            fs::read(common::sealed(&dir, "identity.key")).unwrap(),
            sealed_before
        );
    }

    pub fn secp256k1_signatures_verify_are_low_s_and_recover(hsm: Hsm) {
        let token = hsm.token();
        let key = token.generate_secp256k1("multisig-1").unwrap();
        let compressed = key.public_key_compressed();
        assert!(compressed[0] == 2 || compressed[0] == 3);
        // An independent verifier, from the 33 bytes only.
        let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&compressed).unwrap();
        assert_eq!(&vk, key.verifying_key());
        for i in 0..200 {
            let digest: [u8; 32] = rand::random();
            let (sig, recid) = key.sign_prehash(&digest).unwrap();
            assert!(sig.normalize_s().is_none(), "signature {i} is high-s");
            vk.verify_prehash(&digest, &sig).unwrap();
            let recovered =
                k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, recid).unwrap();
            assert_eq!(recovered, vk, "signature {i}: the recovery id is wrong");
            // Bound to the exact digest.
            let mut other = digest;
            other[i % 32] ^= 1 << (i % 8);
            assert!(vk.verify_prehash(&other, &sig).is_err(), "signature {i}");
            if i < 4 {
                let flipped = k256::ecdsa::RecoveryId::from_byte(recid.to_byte() ^ 1).unwrap();
                let wrong = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, flipped);
                assert!(wrong.map_or(true, |k| k != vk));
            }
        }
        // The token's own CKM_ECDSA output is high-s about half of the time: what the
        // normalisation above exists for.
        let s = raw_session(&hsm);
        let h = find_by_label(&s, ObjectClass::PRIVATE_KEY, "multisig-1");
        let mut high = 0;
        for _ in 0..64 {
            let digest: [u8; 32] = rand::random();
            let raw = s.sign(&Mechanism::Ecdsa, h, &digest).unwrap();
            assert_eq!(raw.len(), 64);
            let sig = k256::ecdsa::Signature::from_slice(&raw).unwrap();
            match sig.normalize_s() {
                // k256 (like Bitcoin and Ethereum) refuses high-s signatures.
                Some(low) => {
                    high += 1;
                    assert!(vk.verify_prehash(&digest, &sig).is_err());
                    vk.verify_prehash(&digest, &low).unwrap();
                }
                None => vk.verify_prehash(&digest, &sig).unwrap(),
            }
        }
        assert!(
            high > 0,
            "the token never produced a high-s signature in 64 tries"
        );
        assert_key_stays_inside(&s, h, AttributeType::Value);
    }

    pub fn ed25519_signatures_verify_with_dalek(hsm: Hsm) {
        let token = hsm.token();
        let key = token.generate_ed25519("identity").unwrap();
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key()).unwrap();
        for (i, len) in [0usize, 1, 31, 32, 64, 100, 1000, 4096]
            .into_iter()
            .enumerate()
        {
            let msg: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            let sig = key.sign(&msg).unwrap();
            let sig = ed25519_dalek::Signature::from_bytes(&sig);
            vk.verify_strict(&msg, &sig).unwrap();
            // Deterministic (RFC 8032), and bound to the message.
            assert_eq!(key.sign(&msg).unwrap(), sig.to_bytes());
            let mut other = msg.clone();
            other.push(0);
            assert!(vk.verify_strict(&other, &sig).is_err());
        }
        for _ in 0..50 {
            let msg: [u8; 48] = std::array::from_fn(|_| rand::random());
            let sig = ed25519_dalek::Signature::from_bytes(&key.sign(&msg).unwrap());
            vk.verify_strict(&msg, &sig).unwrap();
        }
        let s = raw_session(&hsm);
        let h = find_by_label(&s, ObjectClass::PRIVATE_KEY, "identity");
        assert_key_stays_inside(&s, h, AttributeType::Value);
        // The crate asks for the curve by OID and SoftHSM 2.6.1 accepts that, but records the
        // private key's CKA_EC_PARAMS as the PKCS#11 3.0 name.
        let params = s.get_attributes(h, &[AttributeType::EcParams]).unwrap();
        assert_eq!(
            params,
            [Attribute::EcParams(ED25519_EC_PARAMS_NAME.to_vec())]
        );
        let public = find_by_label(&s, ObjectClass::PUBLIC_KEY, "identity");
        let params = s
            .get_attributes(public, &[AttributeType::EcParams])
            .unwrap();
        assert_eq!(
            params,
            [Attribute::EcParams(ED25519_EC_PARAMS_OID.to_vec())]
        );
    }

    pub fn softhsm_accepts_both_ed25519_curve_encodings(hsm: Hsm) {
        // Documents the token, straight through cryptoki: CKM_EC_EDWARDS_KEY_PAIR_GEN takes
        // CKA_EC_PARAMS as the DER OID 1.3.101.112 and as the PrintableString "edwards25519";
        // CKA_EC_POINT comes back as a DER OCTET STRING around the 32-byte key.
        let token = hsm.token();
        let s = raw_session(&hsm);
        for (i, params) in [ED25519_EC_PARAMS_OID, ED25519_EC_PARAMS_NAME]
            .into_iter()
            .enumerate()
        {
            let label = format!("probe-{i}");
            let (public, _) = s
                .generate_key_pair(
                    &Mechanism::EccEdwardsKeyPairGen,
                    &[
                        Attribute::Token(true),
                        Attribute::Verify(true),
                        Attribute::EcParams(params.to_vec()),
                        Attribute::Label(label.clone().into_bytes()),
                        Attribute::Id(vec![i as u8; 4]),
                    ],
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Sign(true),
                        Attribute::Label(label.clone().into_bytes()),
                        Attribute::Id(vec![i as u8; 4]),
                    ],
                )
                .unwrap_or_else(|e| panic!("{params:02x?}: {e}"));
            let point = s.get_attributes(public, &[AttributeType::EcPoint]).unwrap();
            let [Attribute::EcPoint(point)] = point.as_slice() else {
                panic!("{point:?}")
            };
            assert_eq!(point.len(), 34);
            assert_eq!(&point[..2], &[0x04, 0x20]);
            // The crate finds and uses either form.
            let key = token.ed25519_key(&label).unwrap();
            assert_eq!(&key.public_key()[..], &point[2..]);
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key()).unwrap();
            let sig = ed25519_dalek::Signature::from_bytes(&key.sign(b"probe").unwrap());
            vk.verify_strict(b"probe", &sig).unwrap();
        }
        // secp256k1 public points come back DER-wrapped too (65-byte uncompressed point).
        let key = token.generate_secp256k1("probe-k1").unwrap();
        let h = find_by_label(&s, ObjectClass::PUBLIC_KEY, "probe-k1");
        let attrs = s
            .get_attributes(h, &[AttributeType::EcPoint, AttributeType::EcParams])
            .unwrap();
        assert!(attrs.contains(&Attribute::EcParams(SECP256K1_EC_PARAMS.to_vec())));
        let point = attrs
            .iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(&point[..3], &[0x04, 0x41, 0x04]);
        assert_eq!(
            &point[2..],
            key.verifying_key().to_encoded_point(false).as_bytes()
        );
    }

    pub fn keys_are_found_again_after_reopening(hsm: Hsm) {
        let (k1_public, ed_public, kek_label);
        {
            let token = hsm.token();
            k1_public = token
                .generate_secp256k1("wallet-7")
                .unwrap()
                .public_key_compressed();
            ed_public = token
                .generate_ed25519("module-identity")
                .unwrap()
                .public_key();
            let dir = hsm.work("vault");
            let vault = Vault::create(&dir, &Pkcs11Kek::new(token.clone())).unwrap();
            vault.put("s", b"kept").unwrap();
            kek_label = kek_params(&dir).1;
            // Every session closes here: the process is logged out of the token.
        }
        let token = hsm.token();
        let keys = token.list_keys().unwrap();
        let listed: Vec<_> = keys.iter().map(|k| (k.label.as_str(), k.kind)).collect();
        let mut expected = vec![
            (kek_label.as_str(), HsmKeyKind::Aes256),
            ("module-identity", HsmKeyKind::Ed25519),
            ("wallet-7", HsmKeyKind::Secp256k1),
        ];
        expected.sort_by_key(|(label, _)| label.to_string());
        assert_eq!(listed, expected);
        assert!(
            keys.iter()
                .all(|k| k.sensitive && !k.extractable && k.id.len() == 16),
            "{keys:?}"
        );
        let k1 = token.secp256k1_key("wallet-7").unwrap();
        assert_eq!(k1.public_key_compressed(), k1_public);
        let digest = [0x42u8; 32];
        let (sig, _) = k1.sign_prehash(&digest).unwrap();
        k1.verifying_key().verify_prehash(&digest, &sig).unwrap();
        let ed = token.ed25519_key("module-identity").unwrap();
        assert_eq!(ed.public_key(), ed_public);
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&ed_public).unwrap();
        vk.verify_strict(
            b"m",
            &ed25519_dalek::Signature::from_bytes(&ed.sign(b"m").unwrap()),
        )
        .unwrap();
        let vault = Vault::open(hsm.work("vault"), &hsm.kek()).unwrap();
        assert_eq!(vault.get("s").unwrap().unwrap().as_slice(), b"kept");
        assert_eq!(
            token.find_key("wallet-7").unwrap().unwrap().kind,
            HsmKeyKind::Secp256k1
        );
        assert!(token.find_key("nothing-here").unwrap().is_none());
    }

    pub fn keys_are_found_again_by_a_new_process(hsm: Hsm) {
        let token = hsm.token();
        let public = hsm.dir.join("public-keys");
        match hsm.phase.as_str() {
            "create" => {
                let k1 = token.generate_secp256k1("wallet-9").unwrap();
                let ed = token.generate_ed25519("identity-9").unwrap();
                let mut both = k1.public_key_compressed().to_vec();
                both.extend_from_slice(&ed.public_key());
                fs::write(&public, both).unwrap();
                let vault = Vault::create(hsm.work("vault"), &hsm.kek()).unwrap();
                vault.put("s", b"from the first process").unwrap();
            }
            "use" => {
                let both = fs::read(&public).unwrap();
                let k1 = token.secp256k1_key("wallet-9").unwrap();
                assert_eq!(&k1.public_key_compressed()[..], &both[..33]);
                let digest = [7u8; 32];
                let (sig, recid) = k1.sign_prehash(&digest).unwrap();
                let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&both[..33]).unwrap();
                assert_eq!(
                    k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, recid).unwrap(),
                    vk
                );
                let ed = token.ed25519_key("identity-9").unwrap();
                let vk = ed25519_dalek::VerifyingKey::from_bytes(&both[33..].try_into().unwrap())
                    .unwrap();
                vk.verify_strict(
                    b"x",
                    &ed25519_dalek::Signature::from_bytes(&ed.sign(b"x").unwrap()),
                )
                .unwrap();
                let vault = Vault::open(hsm.work("vault"), &hsm.kek()).unwrap();
                assert_eq!(
                    vault.get("s").unwrap().unwrap().as_slice(),
                    b"from the first process"
                );
            }
            other => panic!("phase {other:?}"),
        }
    }

    pub fn labels_are_never_reused_and_missing_keys_are_named(hsm: Hsm) {
        let token = hsm.token();
        let k1 = token.generate_secp256k1("taken").unwrap();
        for err in [
            token.generate_secp256k1("taken").unwrap_err(),
            token.generate_ed25519("taken").unwrap_err(),
        ] {
            assert!(matches!(err, VaultError::HsmLabelTaken { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                "the PKCS#11 token \"concord-test\" already holds an object labelled \"taken\"; \
                 refusing to replace it"
            );
        }
        // The first key is untouched.
        assert_eq!(
            token
                .secp256k1_key("taken")
                .unwrap()
                .public_key_compressed(),
            k1.public_key_compressed()
        );
        assert_eq!(token.list_keys().unwrap().len(), 1);
        // A vault key-encryption key's label is taken too.
        let dir = hsm.work("vault");
        drop(Vault::create(&dir, &hsm.kek()).unwrap());
        let kek_label = kek_params(&dir).1;
        assert!(matches!(
            token.generate_ed25519(&kek_label),
            Err(VaultError::HsmLabelTaken { .. })
        ));
        // Labels follow the secret-name rules.
        for bad in ["", "a/b", ".hidden", "sp ace"] {
            assert!(
                matches!(
                    token.generate_secp256k1(bad),
                    Err(VaultError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        // Missing keys, or keys of the other kind, are named.
        let err = token.secp256k1_key("absent").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the PKCS#11 token \"concord-test\" holds no secp256k1 private key labelled \"absent\""
        );
        let err = token.ed25519_key("taken").unwrap_err();
        assert!(matches!(err, VaultError::HsmKeyNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("Ed25519"), "{err}");
        // A key deleted behind a handle's back.
        let ed = token.generate_ed25519("short-lived").unwrap();
        let s = raw_session(&hsm);
        s.destroy_object(find_by_label(&s, ObjectClass::PRIVATE_KEY, "short-lived"))
            .unwrap();
        let err = ed.sign(b"m").unwrap_err();
        assert!(matches!(err, VaultError::HsmKeyNotFound { .. }), "{err:?}");
    }

    pub fn tokens_and_keys_are_shared_between_threads(hsm: Hsm) {
        let token = hsm.token();
        let k1 = token.generate_secp256k1("threads").unwrap();
        let ed = token.generate_ed25519("threads-ed").unwrap();
        let kek = Pkcs11Kek::new(token.clone());
        let vault_dir = hsm.work("vault");
        drop(Vault::create(&vault_dir, &kek).unwrap());
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let (k1, ed, kek, vault_dir) = (&k1, &ed, &kek, &vault_dir);
                s.spawn(move || {
                    for i in 0..20u8 {
                        let digest = [t ^ i; 32];
                        let (sig, recid) = k1.sign_prehash(&digest).unwrap();
                        assert_eq!(
                            &k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, recid)
                                .unwrap(),
                            k1.verifying_key()
                        );
                        let vk = ed25519_dalek::VerifyingKey::from_bytes(&ed.public_key()).unwrap();
                        let sig = ed25519_dalek::Signature::from_bytes(&ed.sign(&digest).unwrap());
                        vk.verify_strict(&digest, &sig).unwrap();
                        if i % 5 == 0 {
                            Vault::open(vault_dir, kek).unwrap();
                        }
                    }
                });
            }
        });
    }

    pub fn debug_output_never_shows_the_pin(hsm: Hsm) {
        let config = hsm.config();
        let token = hsm.token();
        let kek = Pkcs11Kek::new(token.clone());
        let (key, params) = kek.create().unwrap();
        let k1 = token.generate_secp256k1("dbg-k1").unwrap();
        let ed = token.generate_ed25519("dbg-ed").unwrap();
        let vault = Vault::create(hsm.work("vault"), &kek).unwrap();
        let env_config = Pkcs11Config {
            pin: PinSource::Env(PIN_ENV.into()),
            ..hsm.config()
        };
        let errors = [
            Token::open(&hsm.config_with_pin("wrong-pin-123")).unwrap_err(),
            Vault::open(hsm.work("vault"), &hsm.other_kek()).unwrap_err(),
            token.secp256k1_key("absent").unwrap_err(),
        ];
        let mut shown = vec![
            format!("{config:?}"),
            format!("{env_config:?}"),
            format!("{token:?}"),
            format!("{kek:?}"),
            format!("{key:?}"),
            format!("{params:?}"),
            format!("{k1:?}"),
            format!("{ed:?}"),
            format!("{vault:?}"),
            format!("{:?}", token.list_keys().unwrap()),
        ];
        for e in &errors {
            shown.push(format!("{e:?}"));
            shown.push(e.to_string());
        }
        for d in &shown {
            assert!(!d.contains(PIN), "{d}");
            assert!(!d.contains("wrong-pin-123"), "{d}");
        }
        assert!(format!("{token:?}").contains("pin: \"<redacted>\""));
        assert!(format!("{kek:?}").contains("<redacted>"));
        assert!(format!("{key:?}").contains("<redacted"));
        assert!(format!("{k1:?}").contains(&hex::encode(k1.public_key_compressed())));
    }
}
