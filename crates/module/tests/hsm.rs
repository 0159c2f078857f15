//! A module on SoftHSM: its identity key (Ed25519) and its multisig key (secp256k1) are made
//! and used inside the token, its vault key is the token's AES key, and no identity seed is
//! ever in the vault. Signatures are checked with ed25519-dalek, independently of the token.
//! Each test runs in a child process with tokens of its own (the vault crate's
//! `common/hsm.rs`, shared by path).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
#[path = "../../vault/tests/common/mod.rs"]
mod common;

hsm_tests!(
    cases:
    the_identity_key_is_made_and_used_inside_the_token phases &["create", "reopen"],
    a_swapped_or_missing_identity_key_in_the_token_is_refused,
);

mod cases {
    use crate::common::hsm::Hsm;
    use concord_module::State;
    use concord_vault::{HsmKeyKind, Pkcs11Kek, Vault};
    use concord_wire::identity::{PublicIdentity, SealingPublicKey};
    use ed25519_dalek::Verifier as _;

    /// The Ed25519 keys on the token: label, public key, sensitive, extractable.
    fn ed25519_keys(token: &concord_vault::Token) -> Vec<(String, [u8; 32], bool, bool)> {
        token
            .list_keys()
            .unwrap()
            .into_iter()
            .filter(|k| matches!(k.kind, HsmKeyKind::Ed25519))
            .map(|k| {
                let public = token.ed25519_key(&k.label).unwrap().public_key();
                (k.label, public, k.sensitive, k.extractable)
            })
            .collect()
    }

    /// `State::create_with` on a token: the identity is the token's key, the key bindings are
    /// signed there, the vault holds no identity seed, and a second process finds the same key
    /// (and refuses to open without the token).
    pub fn the_identity_key_is_made_and_used_inside_the_token(hsm: Hsm) {
        let token = hsm.token();
        let kek = Pkcs11Kek::new(token.clone());
        let dir = hsm.work("m2-vault");
        let saved = hsm.dir.join("identity");
        match hsm.phase.as_str() {
            "create" => {
                let state =
                    State::create_with("m2", &dir, &kek, Default::default(), Some(&token)).unwrap();
                let info = state.public_info();
                let identity: PublicIdentity = info.identity.parse().unwrap();
                // The token holds exactly one Ed25519 key: this identity, never extractable.
                let keys = ed25519_keys(&token);
                assert_eq!(keys.len(), 1, "{keys:?}");
                let (label, public, sensitive, extractable) = &keys[0];
                assert!(label.starts_with("concord-m2-identity-"), "{label}");
                assert_eq!(public, identity.as_bytes());
                assert!(*sensitive && !*extractable);
                // The key bindings it published verify against it.
                let sealing: SealingPublicKey = info.sealing_key.parse().unwrap();
                let sealing_sig = hex::decode(&info.sealing_key_signature).unwrap();
                identity.verify_sealing_key(&sealing, &sealing_sig).unwrap();
                let multisig: [u8; 33] =
                    hex::decode(&info.multisig_key).unwrap().try_into().unwrap();
                let multisig_sig = hex::decode(&info.multisig_key_signature).unwrap();
                identity
                    .verify_multisig_key(&multisig, &multisig_sig)
                    .unwrap();
                // A signature through the state's signer, checked by ed25519-dalek.
                let msg = b"concord/test/v1 a message the module signs";
                let sig = state.identity().try_sign(msg).unwrap();
                let dalek = ed25519_dalek::VerifyingKey::from_bytes(identity.as_bytes()).unwrap();
                dalek
                    .verify(msg, &ed25519_dalek::Signature::from_bytes(&sig))
                    .unwrap();
                // No identity seed in the vault: only the token's label and public key.
                drop(state);
                let vault = Vault::open(&dir, &kek).unwrap();
                assert!(vault.get("identity").unwrap().is_none());
                let marker = vault.get("identity-key-hsm").unwrap().unwrap();
                let marker = String::from_utf8(marker.to_vec()).unwrap();
                assert!(
                    marker.contains(label.as_str()) && marker.contains(&info.identity),
                    "{marker}"
                );
                std::fs::write(&saved, &info.identity).unwrap();
            }
            "reopen" => {
                let created = std::fs::read_to_string(&saved).unwrap();
                // Without the token: a clear refusal, not a fresh key.
                let err = State::open_with("m2", &dir, &kek, Default::default(), None)
                    .expect_err("opened without its HSM");
                assert!(
                    err.to_string().contains("identity key is in an HSM"),
                    "{err}"
                );
                let state =
                    State::open_with("m2", &dir, &kek, Default::default(), Some(&token)).unwrap();
                assert_eq!(state.public_info().identity, created);
                assert_eq!(state.identity().public().to_string(), created);
                assert_eq!(ed25519_keys(&token).len(), 1, "no second key was made");
            }
            other => panic!("unknown phase {other:?}"),
        }
    }

    /// The vault names the token key its identity is; a token whose key under that name is
    /// another one (a key swapped in the token) is refused, and so is a vault that names a
    /// key the token does not hold.
    pub fn a_swapped_or_missing_identity_key_in_the_token_is_refused(hsm: Hsm) {
        let token = hsm.token();
        let kek = Pkcs11Kek::new(token.clone());
        let a = hsm.work("a");
        let b = hsm.work("b");
        drop(State::create_with("ma", &a, &kek, Default::default(), Some(&token)).unwrap());
        drop(State::create_with("mb", &b, &kek, Default::default(), Some(&token)).unwrap());
        let marker = |dir: &std::path::Path| -> serde_json::Value {
            let vault = Vault::open(dir, &kek).unwrap();
            serde_json::from_slice(&vault.get("identity-key-hsm").unwrap().unwrap()).unwrap()
        };
        let (marker_a, marker_b) = (marker(&a), marker(&b));
        let rewrite = |value: serde_json::Value| {
            let vault = Vault::open(&a, &kek).unwrap();
            vault
                .put("identity-key-hsm", value.to_string().as_bytes())
                .unwrap();
        };
        // A's record now points at B's token key (as if that key sat under A's label).
        rewrite(serde_json::json!({"label": marker_b["label"], "public": marker_a["public"]}));
        let err = State::open_with("ma", &a, &kek, Default::default(), Some(&token))
            .expect_err("opened with another identity key");
        assert!(
            err.to_string()
                .contains("is not the identity key this vault recorded"),
            "{err}"
        );
        // A label the token does not hold.
        let missing = "concord-ma-identity-0000000000000000";
        rewrite(serde_json::json!({"label": missing, "public": marker_a["public"]}));
        let err = State::open_with("ma", &a, &kek, Default::default(), Some(&token))
            .expect_err("opened without its identity key");
        assert!(err.to_string().contains(missing), "{err}");
    }
}
