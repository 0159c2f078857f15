//! Everything a module keeps, all of it in its sealed vault: identity and sealing keys, the
//! peers its operator pinned, its signer groups and their auxiliary material, key shares,
//! approvals, and the nonce log that stops it from signing two digests for one nonce.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use concord_tss::ecdsa::{AuxMaterial, EcdsaPresignature, Primes};
use concord_tss::{KeyShare, UncheckedKeyShare, WalletId};
use concord_vault::{KekProvider, Vault};
use concord_wire::identity::{
    IdentityKey, IdentitySigner, PublicIdentity, SealingKey, SealingPublicKey,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Error;
use crate::config::LocalChecks;
use crate::ledger::{Logs, Order, Spend};
use concord_wire::authority::{AdminSet, AgreementRule, Policy, SignedPolicy};
use concord_wire::rpc::AuditRef;

const IDENTITY: &str = "identity";
const SEALING: &str = "sealing";
/// The module's own secp256k1 key (native multisig: P2WSH, Safe owner), 32 bytes.
const MULTISIG: &str = "multisig-key";
const PEERS: &str = "peers";
const ADMINS: &str = "admins";
const POLICY: &str = "policy";
const APPROVAL_PREFIX: &str = "approval-";
const INTENT_PREFIX: &str = "intent-";
const NONCE_PREFIX: &str = "nonce-";
const SESSION_PREFIX: &str = "session-";
/// A session record's content while the run has sent nothing of its signature share (a
/// DKLs23 run started before its certificate): the session is used, the approval not bound.
const EARLY_SESSION: &str = "early:";

/// How long an approval may be used to sign, seconds.
pub const APPROVAL_TTL_SECS: u64 = 600;

fn session_name(session: &[u8; 32]) -> String {
    format!("{SESSION_PREFIX}{}", hex::encode(session))
}

fn presig_name(wallet: WalletId, fingerprint: &[u8; 32]) -> String {
    format!("presig-{wallet}-{}", hex::encode(&fingerprint[..16]))
}

/// A module's public description, which its operator hands to the coordinator's operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicInfo {
    /// Module id.
    pub id: String,
    /// Ed25519 identity key, hex.
    pub identity: String,
    /// Identity fingerprint, to compare by eye.
    pub fingerprint: String,
    /// X25519 sealing key, hex.
    pub sealing_key: String,
    /// Identity signature over the sealing key, hex.
    pub sealing_key_signature: String,
    /// The module's own secp256k1 key for native multisig wallets (33 bytes compressed,
    /// hex), generated in and never leaving this module's vault.
    pub multisig_key: String,
    /// Identity signature over the multisig key, hex.
    pub multisig_key_signature: String,
    /// The Ethereum address of the multisig key (a Safe owner).
    pub multisig_address: String,
}

/// One member of a signer group, as this module pinned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Index in the group.
    pub index: u16,
    /// Module id.
    pub module_id: String,
    /// Identity key.
    pub identity: PublicIdentity,
    /// Sealing key (checked against the identity's signature).
    pub sealing_key: SealingPublicKey,
}

/// A child wallet: its parent (a wallet this module holds a share of) and path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DerivedWallet {
    parent: WalletId,
    path: concord_types::DerivationPath,
}

/// A signer group this module belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDef {
    /// Group id.
    pub group_id: String,
    /// Signers required.
    pub threshold: u16,
    /// Members in index order.
    pub members: Vec<Member>,
    /// The group's threshold-ECDSA engine, pinned with the definition (groups pinned before
    /// engines could be chosen run cggmp21).
    #[serde(default = "legacy_engine")]
    pub engine: concord_types::EcdsaEngine,
}

fn legacy_engine() -> concord_types::EcdsaEngine {
    concord_types::EcdsaEngine::LEGACY
}

impl GroupDef {
    /// This module's index in the group.
    pub fn index_of(&self, identity: &PublicIdentity) -> Option<u16> {
        self.members
            .iter()
            .find(|m| m.identity == *identity)
            .map(|m| m.index)
    }
}

/// An approval this module gave: kept so a repeated proposal gets the same answer and a
/// signing run is joined only for what was approved. The approval records are also the
/// module's logs: the intents it accepted, the nonces and exchange orders it bound to a
/// digest, and what it spent per wallet and coin (rebuilt from them at start-up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The wallet.
    pub wallet_id: WalletId,
    /// Canonical payload approved.
    #[serde(with = "hex::serde")]
    pub payload: Vec<u8>,
    /// Digest approved.
    #[serde(with = "hex::serde")]
    pub digest: [u8; 32],
    /// The signed statement.
    #[serde(with = "hex::serde")]
    pub statement: Vec<u8>,
    /// Its signature.
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
    /// The intent approved.
    #[serde(default)]
    pub intent: String,
    /// The agreement rule the intent asks for.
    #[serde(default)]
    pub rule: AgreementRule,
    /// The hash of the policy applied.
    #[serde(default, with = "hex::serde")]
    pub policy: [u8; 32],
    /// When it was given, seconds since the Unix epoch.
    #[serde(default)]
    pub at: u64,
    /// The replay-protection key bound to the digest (an account nonce), if any.
    #[serde(default)]
    pub nonce_key: Option<String>,
    /// What the approval spends from the wallet's daily limit.
    #[serde(default)]
    pub spend: Option<Spend>,
    /// The exchange order the approval signs a request for.
    #[serde(default)]
    pub order: Option<Order>,
    /// Released: the coordinator gave the job up before this module signed under it; the
    /// module never will, and the approval binds nothing any more.
    #[serde(default)]
    pub void: bool,
}

/// The policy a module enforces, with its hash.
#[derive(Debug, Clone)]
pub struct PolicyInForce {
    /// The signed policy.
    pub signed: SignedPolicy,
    /// Its hash.
    pub hash: [u8; 32],
}

impl PolicyInForce {
    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.signed.policy
    }
}

/// The module's state over its vault.
pub struct State {
    /// Module id.
    pub id: String,
    /// Local technical checks.
    pub checks: LocalChecks,
    vault: Vault,
    identity: Arc<dyn IdentitySigner>,
    /// The identity's signatures over the sealing and multisig keys.
    bindings: KeyBindings,
    sealing: Arc<SealingKey>,
    /// The module's own secp256k1 key, in the vault or in an HSM.
    multisig: Arc<MultisigKey>,
    policy: std::sync::RwLock<Option<Arc<PolicyInForce>>>,
    logs: std::sync::Mutex<Logs>,
    shares: std::sync::Mutex<ShareCache>,
    /// Held while a signing session is checked unused and recorded: two starts of one
    /// session never both pass. Apart from the log lock, so that recording an early session
    /// (which binds nothing) never holds up an approval being stored. Taken before the log
    /// lock when both are held.
    sessions: std::sync::Mutex<()>,
    /// The hash-chained, sealed audit trail beside the vault, opened (and verified) by the
    /// first [`State::audit`]: the daemon's start. Commands that only read the vault leave it.
    audit: std::sync::OnceLock<crate::audit::AuditLog>,
    /// Session → the audit entry of its share's release, until the run's result names it.
    released: std::sync::Mutex<HashMap<[u8; 32], AuditRef>>,
    /// Held while the audit trail is opened (once).
    audit_open: std::sync::Mutex<()>,
}

/// Decoded key shares, so that a signature does not decode its share from the vault each
/// time (a DKLs23 share is ~150 KB of OT state: ~5 ms to decode, on every approval and
/// signing run). The vault stays the record: every write of a share empties the cache, and
/// a share decoded before a write is not kept (the generation moved on). The decoded shares
/// live in this process's memory as long as it runs; the vault's key, which decrypts them
/// all, lives there anyway.
#[derive(Default)]
struct ShareCache {
    generation: u64,
    shares: std::collections::HashMap<WalletId, Arc<KeyShare>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("id", &self.id)
            .field("identity", &self.identity.public())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

fn vault_err(e: concord_vault::VaultError) -> Error {
    Error::Vault(e.to_string())
}

fn json_err(what: &str, e: serde_json::Error) -> Error {
    Error::Vault(format!("the stored {what} is unreadable: {e}"))
}

/// Names, in the vault, the token label of a multisig key that lives in an HSM.
const MULTISIG_HSM: &str = "multisig-key-hsm";
/// Names, in the vault, the token label of an identity key that lives in an HSM.
const IDENTITY_HSM: &str = "identity-key-hsm";

/// Records in the vault (under `name`, once) the token label and public key of a key made
/// in an HSM: on opening, the token's key under that label must be this one (another object
/// given the label is refused).
fn record_hsm_key(
    vault: &Vault,
    name: &str,
    what: &str,
    label: &str,
    public: &[u8],
) -> Result<(), Error> {
    let marker = serde_json::json!({ "label": label, "public": hex::encode(public) });
    if !vault
        .put_new(name, marker.to_string().as_bytes())
        .map_err(vault_err)?
    {
        return Err(Error::Vault(format!(
            "this vault names {what} in an HSM already"
        )));
    }
    Ok(())
}

/// The (label, public key hex) recorded by [`record_hsm_key`].
fn recorded_hsm_key(marker: &[u8]) -> Result<(String, String), Error> {
    let marker: serde_json::Value =
        serde_json::from_slice(marker).map_err(|e| json_err("HSM key record", e))?;
    match (marker["label"].as_str(), marker["public"].as_str()) {
        (Some(label), Some(public)) => Ok((label.to_owned(), public.to_owned())),
        _ => Err(Error::Vault(
            "the stored HSM key record names no label and public key".into(),
        )),
    }
}

/// Checks the token's key `label` is the recorded one (`public`, hex of `actual`) and can never
/// leave the token.
fn check_hsm_key(
    token: &concord_vault::Token,
    what: &str,
    label: &str,
    public: &str,
    actual: &[u8],
) -> Result<(), Error> {
    if hex::encode(actual) != public {
        return Err(Error::Vault(format!(
            "the token's key {label:?} is not the {what} this vault recorded ({public}): refused"
        )));
    }
    let info = token
        .find_key(label)
        .map_err(vault_err)?
        .ok_or_else(|| Error::Vault(format!("the token holds no key {label:?}")))?;
    if !info.sensitive || info.extractable {
        return Err(Error::Vault(format!(
            "the token's key {label:?} can leave the token (sensitive {}, extractable {}): refused",
            info.sensitive, info.extractable
        )));
    }
    Ok(())
}

/// A module's identity key generated and used inside an HSM (PKCS#11 `CKM_EDDSA`): TLS,
/// sealed MPC messages, approvals and key bindings are signed by the token, and every
/// signature is checked against the recorded public key before it leaves.
#[derive(Clone)]
struct HsmIdentity {
    key: concord_vault::HsmEd25519Key,
    public: PublicIdentity,
}

impl HsmIdentity {
    fn new(key: concord_vault::HsmEd25519Key) -> Result<Self, Error> {
        let public = PublicIdentity::from_bytes(&key.public_key()).map_err(|e| {
            Error::Vault(format!("the token's identity key {:?}: {e}", key.label()))
        })?;
        Ok(HsmIdentity { key, public })
    }
}

impl IdentitySigner for HsmIdentity {
    fn public(&self) -> PublicIdentity {
        self.public
    }

    fn try_sign(&self, msg: &[u8]) -> Result<[u8; 64], concord_wire::WireError> {
        let sig = self.key.sign(msg).map_err(|e| {
            concord_wire::WireError::SignerFailed(format!("the HSM identity key: {e}"))
        })?;
        // A token that returns a wrong signature (a fault, or not the key recorded) is caught
        // here, not by a peer.
        self.public.verify(msg, &sig).map_err(|_| {
            concord_wire::WireError::SignerFailed(format!(
                "the HSM's signature with {:?} does not verify against the recorded key",
                self.key.label()
            ))
        })?;
        Ok(sig)
    }

    fn handle(&self) -> Arc<dyn IdentitySigner> {
        Arc::new(self.clone())
    }
}

/// A fresh Ed25519 identity key generated inside the token, its label recorded in the vault.
fn new_hsm_identity(
    vault: &Vault,
    token: &concord_vault::Token,
    id: &str,
) -> Result<HsmIdentity, Error> {
    let mut tag = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut tag);
    let label = format!("concord-{id}-identity-{}", hex::encode(tag));
    let key = token.generate_ed25519(&label).map_err(vault_err)?;
    record_hsm_key(
        vault,
        IDENTITY_HSM,
        "an identity key",
        &label,
        &key.public_key(),
    )?;
    HsmIdentity::new(key)
}

/// The signatures binding the sealing and multisig keys to the identity, made once when the
/// state opens (Ed25519 is deterministic: the same bytes each time), so a token that cannot
/// sign is found at start, not when a peer asks.
struct KeyBindings {
    sealing: [u8; 64],
    multisig: [u8; 64],
}

impl KeyBindings {
    fn sign(
        identity: &dyn IdentitySigner,
        sealing: &SealingPublicKey,
        multisig: &[u8; 33],
    ) -> Result<Self, Error> {
        let err =
            |e: concord_wire::WireError| Error::Vault(format!("binding keys to the identity: {e}"));
        Ok(KeyBindings {
            sealing: identity.try_sign_sealing_key(sealing).map_err(err)?,
            multisig: identity.try_sign_multisig_key(multisig).map_err(err)?,
        })
    }
}

/// The module's own secp256k1 key: sealed in the vault, or generated and used inside an HSM
/// (PKCS#11; never leaves the token).
pub(crate) enum MultisigKey {
    /// In the vault (k256 zeroizes it on drop).
    Vault(k256::ecdsa::SigningKey),
    /// In the token; this is only its public key and label.
    Hsm(concord_vault::HsmSecp256k1Key),
}

impl MultisigKey {
    fn verifying_key(&self) -> k256::ecdsa::VerifyingKey {
        match self {
            MultisigKey::Vault(k) => *k.verifying_key(),
            MultisigKey::Hsm(k) => *k.verifying_key(),
        }
    }

    /// A low-s signature of a 32-byte digest and its recovery id.
    fn sign_recoverable(
        &self,
        digest: &[u8; 32],
    ) -> Result<(k256::ecdsa::Signature, k256::ecdsa::RecoveryId), Error> {
        let (sig, recid) = match self {
            MultisigKey::Vault(k) => k
                .sign_prehash_recoverable(digest)
                .map_err(|e| Error::Protocol(format!("signing with the multisig key: {e}")))?,
            // Low s and its recovery id already (the token signs; both are found outside).
            MultisigKey::Hsm(k) => {
                return k.sign_prehash(digest).map_err(|e| {
                    Error::Vault(format!("signing with the multisig key in the HSM: {e}"))
                });
            }
        };
        Ok(match sig.normalize_s() {
            Some(low) => (
                low,
                k256::ecdsa::RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced()),
            ),
            None => (sig, recid),
        })
    }

    /// Where the key lives, for operators.
    pub(crate) fn home(&self) -> &'static str {
        match self {
            MultisigKey::Vault(_) => "vault",
            MultisigKey::Hsm(_) => "hsm",
        }
    }
}

/// The compressed (33-byte) public key of a module's own multisig key.
fn multisig_public(key: &MultisigKey) -> [u8; 33] {
    let point = key.verifying_key().to_encoded_point(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(point.as_bytes());
    out
}

/// A fresh secp256k1 key generated inside the token, its label recorded in the vault.
fn new_hsm_multisig_key(
    vault: &Vault,
    token: &concord_vault::Token,
    id: &str,
) -> Result<concord_vault::HsmSecp256k1Key, Error> {
    let mut tag = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut tag);
    let label = format!("concord-{id}-multisig-{}", hex::encode(tag));
    let key = token.generate_secp256k1(&label).map_err(vault_err)?;
    record_hsm_key(
        vault,
        MULTISIG_HSM,
        "a multisig key",
        &label,
        &key.public_key_compressed(),
    )?;
    Ok(key)
}

/// A fresh secp256k1 key, sealed in the vault before it is used.
fn new_multisig_key(vault: &Vault) -> Result<k256::ecdsa::SigningKey, Error> {
    let key = k256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let mut bytes = Zeroizing::new([0u8; 32]);
    bytes.copy_from_slice(&key.to_bytes());
    // Never replaces a key already there.
    vault.put_new(MULTISIG, &bytes[..]).map_err(vault_err)?;
    Ok(key)
}

/// The audit trail's key, from the vault (made the first time; two processes at once: one
/// makes it, both use that one).
fn audit_key(vault: &Vault) -> Result<Zeroizing<[u8; 32]>, Error> {
    if vault
        .get(crate::audit::AUDIT_KEY)
        .map_err(vault_err)?
        .is_none()
    {
        let mut fresh = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut fresh[..]);
        vault
            .put_new(crate::audit::AUDIT_KEY, &fresh[..])
            .map_err(vault_err)?;
    }
    let stored = vault
        .get(crate::audit::AUDIT_KEY)
        .map_err(vault_err)?
        .ok_or_else(|| Error::Vault("the vault holds no audit key".into()))?;
    let key: [u8; 32] = stored
        .as_slice()
        .try_into()
        .map_err(|_| Error::Vault("the stored audit key is not 32 bytes".into()))?;
    Ok(Zeroizing::new(key))
}

impl State {
    /// Creates a new vault with fresh identity, sealing and multisig keys.
    pub fn create(
        id: &str,
        dir: &std::path::Path,
        kek: &dyn KekProvider,
        checks: LocalChecks,
    ) -> Result<State, Error> {
        State::create_with(id, dir, kek, checks, None)
    }

    /// [`State::create`], the multisig key generated inside `hsm`'s token when one is given
    /// (it never leaves it; the vault records its label).
    pub fn create_with(
        id: &str,
        dir: &std::path::Path,
        kek: &dyn KekProvider,
        checks: LocalChecks,
        hsm: Option<&concord_vault::Token>,
    ) -> Result<State, Error> {
        let vault = Vault::create(dir, kek).map_err(vault_err)?;
        let identity: Arc<dyn IdentitySigner> = match hsm {
            Some(token) => Arc::new(new_hsm_identity(&vault, token, id)?),
            None => {
                let identity = IdentityKey::generate(&mut rand::rngs::OsRng);
                vault
                    .put(IDENTITY, identity.to_seed().as_ref())
                    .map_err(vault_err)?;
                Arc::new(identity)
            }
        };
        let sealing = SealingKey::generate(&mut rand::rngs::OsRng);
        vault
            .put(SEALING, sealing.to_bytes().as_ref())
            .map_err(vault_err)?;
        vault.put(PEERS, b"[]").map_err(vault_err)?;
        let multisig = match hsm {
            Some(token) => MultisigKey::Hsm(new_hsm_multisig_key(&vault, token, id)?),
            None => MultisigKey::Vault(new_multisig_key(&vault)?),
        };
        let bindings = KeyBindings::sign(
            identity.as_ref(),
            &sealing.public(),
            &multisig_public(&multisig),
        )?;
        Ok(State {
            id: id.to_owned(),
            checks,
            vault,
            identity,
            bindings,
            sealing: Arc::new(sealing),
            multisig: Arc::new(multisig),
            policy: Default::default(),
            logs: Default::default(),
            shares: Default::default(),
            sessions: Default::default(),
            audit: Default::default(),
            released: Default::default(),
            audit_open: Default::default(),
        })
    }

    /// Opens an existing vault (a wrong passphrase is a clear error and changes nothing).
    pub fn open(
        id: &str,
        dir: &std::path::Path,
        kek: &dyn KekProvider,
        checks: LocalChecks,
    ) -> Result<State, Error> {
        State::open_with(id, dir, kek, checks, None)
    }

    /// [`State::open`] with the module's HSM (needed when its multisig key lives there).
    pub fn open_with(
        id: &str,
        dir: &std::path::Path,
        kek: &dyn KekProvider,
        checks: LocalChecks,
        hsm: Option<&concord_vault::Token>,
    ) -> Result<State, Error> {
        let vault = Vault::open(dir, kek).map_err(vault_err)?;
        let identity: Arc<dyn IdentitySigner> = match vault.get(IDENTITY_HSM).map_err(vault_err)? {
            Some(marker) => {
                let (label, public) = recorded_hsm_key(&marker)?;
                let token = hsm.ok_or_else(|| {
                    Error::Config(format!(
                        "this module's identity key is in an HSM (token key {label:?}): configure [vault.hsm] to open it"
                    ))
                })?;
                let key = token.ed25519_key(&label).map_err(vault_err)?;
                check_hsm_key(token, "identity key", &label, &public, &key.public_key())?;
                Arc::new(HsmIdentity::new(key)?)
            }
            None => {
                // A vault made with its identity key in the vault (without an HSM, or before
                // identity keys could live in one) keeps it there.
                let seed = vault
                    .get(IDENTITY)
                    .map_err(vault_err)?
                    .ok_or_else(|| Error::Vault("the vault holds no identity key".into()))?;
                let seed: Zeroizing<[u8; 32]> =
                    Zeroizing::new(seed.as_slice().try_into().map_err(|_| {
                        Error::Vault("the stored identity key is not 32 bytes".into())
                    })?);
                Arc::new(IdentityKey::from_seed(&seed))
            }
        };
        let sealing = vault
            .get(SEALING)
            .map_err(vault_err)?
            .ok_or_else(|| Error::Vault("the vault holds no sealing key".into()))?;
        let sealing: Zeroizing<[u8; 32]> = Zeroizing::new(
            sealing
                .as_slice()
                .try_into()
                .map_err(|_| Error::Vault("the stored sealing key is not 32 bytes".into()))?,
        );
        // A vault made before modules had their own key gets one now, once (two processes
        // opening it at once: one creates it, the other reads that one).
        let read = |bytes: &[u8]| {
            k256::ecdsa::SigningKey::from_slice(bytes).map_err(|_| {
                Error::Vault("the stored multisig key is not a secp256k1 secret key".into())
            })
        };
        let in_hsm = vault.get(MULTISIG_HSM).map_err(vault_err)?;
        let multisig = match (in_hsm, vault.get(MULTISIG).map_err(vault_err)?) {
            (Some(marker), _) => {
                let (label, public) = recorded_hsm_key(&marker)?;
                let token = hsm.ok_or_else(|| {
                    Error::Config(format!(
                        "this module's multisig key is in an HSM (token key {label:?}): configure [vault.hsm] to open it"
                    ))
                })?;
                let key = token.secp256k1_key(&label).map_err(vault_err)?;
                check_hsm_key(
                    token,
                    "multisig key",
                    &label,
                    &public,
                    &key.public_key_compressed(),
                )?;
                MultisigKey::Hsm(key)
            }
            (None, Some(bytes)) => MultisigKey::Vault(read(&bytes)?),
            (None, None) if hsm.is_some() => {
                return Err(Error::Vault(
                    "this module's configuration names an HSM, yet its vault records no multisig key in it: refused (a key in the vault is never made in its place)".into(),
                ));
            }
            (None, None) => {
                let key = new_multisig_key(&vault)?;
                let stored = vault
                    .get(MULTISIG)
                    .map_err(vault_err)?
                    .ok_or_else(|| Error::Vault("the new multisig key was not stored".into()))?;
                let key = if stored.as_slice() == &key.to_bytes()[..] {
                    key
                } else {
                    read(&stored)?
                };
                tracing::warn!(
                    module = id,
                    key = %hex::encode(key.verifying_key().to_encoded_point(true).as_bytes()),
                    "this vault had no multisig key: one was generated; multisig wallets defined with an earlier key of this module no longer count it as a signer"
                );
                MultisigKey::Vault(key)
            }
        };
        let sealing = SealingKey::from_bytes(&sealing);
        let bindings = KeyBindings::sign(
            identity.as_ref(),
            &sealing.public(),
            &multisig_public(&multisig),
        )?;
        let state = State {
            id: id.to_owned(),
            checks,
            vault,
            identity,
            bindings,
            sealing: Arc::new(sealing),
            multisig: Arc::new(multisig),
            policy: Default::default(),
            logs: Default::default(),
            shares: Default::default(),
            sessions: Default::default(),
            audit: Default::default(),
            released: Default::default(),
            audit_open: Default::default(),
        };
        state.load_authority()?;
        Ok(state)
    }

    /// Reads the policy in force and rebuilds the logs from the approval records.
    fn load_authority(&self) -> Result<(), Error> {
        if let Some(signed) = self.get_json::<SignedPolicy>(POLICY, "policy")? {
            let hash = signed.policy.hash();
            if let Ok(mut p) = self.policy.write() {
                *p = Some(Arc::new(PolicyInForce { signed, hash }));
            }
        }
        let mut logs = Logs::default();
        for name in self.vault.list(APPROVAL_PREFIX).map_err(vault_err)? {
            let job = &name[APPROVAL_PREFIX.len()..];
            if let Some(rec) = self.get_json::<ApprovalRecord>(&name, "approval")? {
                logs.add(job, &rec, APPROVAL_TTL_SECS);
            }
        }
        for name in self.vault.list(SESSION_PREFIX).map_err(vault_err)? {
            if let Some(job) = self.vault.get(&name).map_err(vault_err)? {
                let job = String::from_utf8_lossy(&job);
                if !job.starts_with(EARLY_SESSION) {
                    logs.add_signed(&job);
                }
            }
        }
        for name in self.vault.list(INTENT_PREFIX).map_err(vault_err)? {
            logs.add_import(&name[INTENT_PREFIX.len()..]);
        }
        // Nonce records written before the approval records carried them.
        for name in self.vault.list(NONCE_PREFIX).map_err(vault_err)? {
            if let Some(h) = self.get_json::<String>(&name, "nonce record")? {
                let mut d = [0u8; 32];
                if hex::decode_to_slice(&h, &mut d).is_ok() {
                    logs.add_legacy_nonce(&name[NONCE_PREFIX.len()..], d);
                }
            }
        }
        if let Ok(mut l) = self.logs.lock() {
            *l = logs;
        }
        Ok(())
    }

    /// The module's logs (intents, nonces, orders, spending), under their lock.
    pub(crate) fn logs(&self) -> Result<std::sync::MutexGuard<'_, Logs>, Error> {
        self.logs
            .lock()
            .map_err(|_| Error::Vault("the log index is poisoned".into()))
    }

    /// The admin keys and quorum pinned at init, if any.
    pub fn admins(&self) -> Result<Option<AdminSet>, Error> {
        self.get_json(ADMINS, "admin set")
    }

    /// Pins the admin keys and quorum: once, at init. Afterwards only a policy signed by
    /// their quorum changes who the admins are.
    pub fn pin_admins(&self, admins: &AdminSet) -> Result<(), Error> {
        AdminSet::new(admins.keys.clone(), admins.quorum)
            .map_err(|e| Error::Config(e.to_string()))?;
        if self.vault.contains(ADMINS).map_err(vault_err)? {
            return Err(Error::Config(
                "the admin keys are pinned already; only a policy signed by their quorum changes them".into(),
            ));
        }
        self.put_json(ADMINS, admins)
    }

    /// The policy in force, if the admins signed one.
    pub fn policy(&self) -> Option<Arc<PolicyInForce>> {
        self.policy.read().ok().and_then(|p| p.clone())
    }

    /// Adopts a new policy if it may replace the one in force (see
    /// [`SignedPolicy::check_succession`]); returns the policy in force afterwards. Offered
    /// the policy already in force, changes nothing.
    pub fn adopt_policy(&self, signed: SignedPolicy) -> Result<Arc<PolicyInForce>, Error> {
        let current = self.policy();
        let hash = signed.policy.hash();
        if let Some(c) = &current
            && c.hash == hash
        {
            return Ok(c.clone());
        }
        let root = self.admins()?.ok_or_else(|| {
            Error::Refused(
                "no admin keys are pinned in this module (`concord module init --admin …`), so it accepts no policy".into(),
            )
        })?;
        signed
            .check_succession(current.as_ref().map(|c| c.policy()), &root)
            .map_err(|e| Error::Refused(e.to_string()))?;
        self.put_json(POLICY, &signed)?;
        let in_force = Arc::new(PolicyInForce { signed, hash });
        if let Ok(mut p) = self.policy.write() {
            *p = Some(in_force.clone());
        }
        Ok(in_force)
    }

    /// The audit trail, opened (and verified whole) the first time: a broken trail is an
    /// error naming its first broken entry, and nothing is appended to it.
    pub fn audit(&self) -> Result<&crate::audit::AuditLog, Error> {
        if let Some(log) = self.audit.get() {
            return Ok(log);
        }
        let _one = self
            .audit_open
            .lock()
            .map_err(|_| Error::Vault("the audit trail's lock is poisoned".into()))?;
        if let Some(log) = self.audit.get() {
            return Ok(log);
        }
        // A vault that holds the trail's key had a trail: it must still be there.
        let had_trail = self
            .vault
            .contains(crate::audit::AUDIT_KEY)
            .map_err(vault_err)?;
        let log =
            crate::audit::AuditLog::open(self.vault.dir(), audit_key(&self.vault)?, had_trail)?;
        Ok(self.audit.get_or_init(|| log))
    }

    /// Appends an event to the audit trail; its reference. A trail that cannot be written is
    /// an error: the answer it would record does not leave the module.
    pub(crate) fn record(&self, event: crate::audit::Event) -> Result<AuditRef, Error> {
        self.audit()?.append(event)
    }

    /// Verifies the audit trail of the vault in `dir` (opened with `kek`) without opening it
    /// for writing: every entry, or the first broken one.
    pub fn verify_audit(
        dir: &std::path::Path,
        kek: &dyn KekProvider,
    ) -> Result<Result<crate::audit::Verified, crate::audit::Broken>, Error> {
        let vault = Vault::open(dir, kek).map_err(vault_err)?;
        // Read only: a vault without the trail's key never had a trail (unless its file
        // is there, which is then an error).
        match vault.get(crate::audit::AUDIT_KEY).map_err(vault_err)? {
            Some(key) => {
                let key: [u8; 32] = key.as_slice().try_into().map_err(|_| {
                    Error::Vault("the stored audit key is not 32 bytes".into())
                })?;
                crate::audit::verify(vault.dir(), Zeroizing::new(key))
            }
            None if vault.dir().join(crate::audit::AUDIT_FILE).exists() => Err(Error::Vault(
                "the vault holds no audit key, yet an audit trail is beside it: it was not made by this vault's module".into(),
            )),
            None => crate::audit::verify(vault.dir(), Zeroizing::new([0u8; 32])),
        }
    }

    /// The identity key.
    pub fn identity(&self) -> Arc<dyn IdentitySigner> {
        self.identity.clone()
    }

    /// The sealing key.
    pub fn sealing(&self) -> Arc<SealingKey> {
        self.sealing.clone()
    }

    /// The module's own secp256k1 public key (native multisig), 33 bytes compressed.
    pub fn multisig_public_key(&self) -> [u8; 33] {
        multisig_public(&self.multisig)
    }

    /// Signs a 32-byte digest with this module's own key: deterministic (RFC 6979), low S,
    /// 64 bytes `r || s`. Only [`crate::multisig::sign`] calls it, on digests it computed
    /// from a spend this module approved.
    pub(crate) fn sign_with_multisig_key(&self, digest: &[u8; 32]) -> Result<[u8; 64], Error> {
        let (sig, _) = self.multisig.sign_recoverable(digest)?;
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        Ok(out)
    }

    /// Where the module's own multisig key lives: `vault` or `hsm`.
    pub fn multisig_key_home(&self) -> &'static str {
        self.multisig.home()
    }

    /// [`State::sign_with_multisig_key`], with the recovery id after `r || s` (what a Safe
    /// takes, as `v` = 27 + it).
    pub(crate) fn sign_recoverable_with_multisig_key(
        &self,
        digest: &[u8; 32],
    ) -> Result<[u8; 65], Error> {
        let (sig, recid) = self.multisig.sign_recoverable(digest)?;
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = recid.to_byte();
        Ok(out)
    }

    /// What the operator hands to the coordinator's operator.
    pub fn public_info(&self) -> PublicInfo {
        let sealing = self.sealing.public();
        let sig = self.bindings.sealing;
        let multisig = self.multisig_public_key();
        PublicInfo {
            id: self.id.clone(),
            identity: self.identity.public().to_string(),
            fingerprint: self.identity.public().fingerprint(),
            sealing_key: sealing.to_string(),
            sealing_key_signature: hex::encode(sig),
            multisig_key: hex::encode(multisig),
            multisig_key_signature: hex::encode(self.bindings.multisig),
            multisig_address: concord_chain::evm_address(&multisig)
                .map(|a| a.to_string())
                .unwrap_or_default(),
        }
    }

    /// Peers (other modules' identity keys) the operator pinned.
    pub fn pinned_peers(&self) -> Result<BTreeSet<PublicIdentity>, Error> {
        let raw = self
            .vault
            .get(PEERS)
            .map_err(vault_err)?
            .unwrap_or_else(|| Zeroizing::new(b"[]".to_vec()));
        serde_json::from_slice(&raw).map_err(|e| json_err("peer list", e))
    }

    /// Pins a peer's identity key.
    pub fn pin_peer(&self, peer: PublicIdentity) -> Result<bool, Error> {
        let mut peers = self.pinned_peers()?;
        let added = peers.insert(peer);
        let bytes = serde_json::to_vec(&peers).map_err(|e| Error::Vault(e.to_string()))?;
        self.vault.put(PEERS, &bytes).map_err(vault_err)?;
        Ok(added)
    }

    fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, Error> {
        match self.vault.get(name).map_err(vault_err)? {
            Some(raw) => Ok(Some(
                serde_json::from_slice(&raw).map_err(|e| json_err(what, e))?,
            )),
            None => Ok(None),
        }
    }

    fn put_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), Error> {
        let bytes =
            Zeroizing::new(serde_json::to_vec(value).map_err(|e| Error::Vault(e.to_string()))?);
        self.vault.put(name, &bytes).map_err(vault_err)
    }

    /// A group this module pinned.
    pub fn group(&self, group_id: &str) -> Result<Option<GroupDef>, Error> {
        self.get_json(&format!("group-{group_id}"), "group definition")
    }

    /// Pins a group definition.
    pub fn save_group(&self, group: &GroupDef) -> Result<(), Error> {
        self.put_json(&format!("group-{}", group.group_id), group)
    }

    /// Safe primes generated for a group (kept so an interrupted preparation resumes).
    pub fn primes(&self, group_id: &str) -> Result<Option<Primes>, Error> {
        match self
            .vault
            .get(&format!("primes-{group_id}"))
            .map_err(vault_err)?
        {
            Some(raw) => Ok(Some(
                Primes::from_bytes(&raw).map_err(|e| Error::Vault(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// Stores safe primes.
    pub fn save_primes(&self, group_id: &str, primes: &Primes) -> Result<(), Error> {
        self.vault
            .put(&format!("primes-{group_id}"), &primes.to_bytes())
            .map_err(vault_err)
    }

    /// The group's ECDSA auxiliary material.
    pub fn aux(&self, group_id: &str) -> Result<Option<AuxMaterial>, Error> {
        match self
            .vault
            .get(&format!("aux-{group_id}"))
            .map_err(vault_err)?
        {
            Some(raw) => Ok(Some(
                AuxMaterial::from_bytes(&raw).map_err(|e| Error::Vault(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// Stores auxiliary material.
    pub fn save_aux(&self, group_id: &str, aux: &AuxMaterial) -> Result<(), Error> {
        // The primes stay: a re-run of the group's preparation (after a member crashed) needs
        // them again, and they are the same secret the aux material holds.
        self.vault
            .put(&format!("aux-{group_id}"), &aux.to_bytes())
            .map_err(vault_err)
    }

    /// This module's share of a wallet, validated and checked to belong to it: its own, or
    /// for a child wallet, derived from its parent's.
    pub fn share(&self, wallet: WalletId) -> Result<Option<Arc<KeyShare>>, Error> {
        let generation = {
            let cache = self.share_cache();
            if let Some(s) = cache.shares.get(&wallet) {
                return Ok(Some(s.clone()));
            }
            cache.generation
        };
        let share = self.decode_share(wallet)?.map(Arc::new);
        if let Some(s) = &share {
            let mut cache = self.share_cache();
            if cache.generation == generation {
                cache.shares.insert(wallet, s.clone());
            }
        }
        Ok(share)
    }

    fn share_cache(&self) -> std::sync::MutexGuard<'_, ShareCache> {
        self.shares.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After any write of a share: decoded shares are read again from the vault.
    fn shares_changed(&self) {
        let mut cache = self.share_cache();
        cache.generation += 1;
        cache.shares.clear();
    }

    /// `wallet`'s share read from the vault: its own, else derived from its parent's.
    fn decode_share(&self, wallet: WalletId) -> Result<Option<KeyShare>, Error> {
        // A wallet's own share first: the common case reads one vault entry.
        if let Some(own) = self.share_of_own(wallet)? {
            return Ok(Some(own));
        }
        if let Some((parent, path)) = self.derivation(wallet)? {
            let Some(KeyShare::Dkls(p)) = self.share_of_own(parent)? else {
                return Err(Error::Vault(format!(
                    "child wallet {wallet}'s parent {parent} is not a DKLs23 share held here"
                )));
            };
            let child = p.derive(&path).map_err(|e| Error::Vault(e.to_string()))?;
            if child.wallet_id() != wallet {
                return Err(Error::Vault(format!(
                    "wallet {parent} at {path} derives another wallet than {wallet}"
                )));
            }
            return Ok(Some(KeyShare::Dkls(child)));
        }
        Ok(None)
    }

    /// A share stored as such (not a derived child).
    fn share_of_own(&self, wallet: WalletId) -> Result<Option<KeyShare>, Error> {
        match self
            .vault
            .get(&format!("share-{wallet}"))
            .map_err(vault_err)?
        {
            Some(raw) => {
                let share = UncheckedKeyShare::from_bytes(&raw)
                    .and_then(|u| u.validate_for(wallet))
                    .map_err(|e| {
                        Error::Vault(format!("the key share of wallet {wallet} is unusable: {e}"))
                    })?;
                Ok(Some(share))
            }
            None => Ok(None),
        }
    }

    /// The parent wallet and path of a child wallet this module derived, if `wallet` is one.
    pub fn derivation(
        &self,
        wallet: WalletId,
    ) -> Result<Option<(WalletId, concord_types::DerivationPath)>, Error> {
        let rec: Option<DerivedWallet> =
            self.get_json(&format!("derived-{wallet}"), "derived wallet")?;
        Ok(rec.map(|r| (r.parent, r.path)))
    }

    /// Records a child wallet (its share is derived from the parent's whenever it is used, so
    /// a refresh of the parent carries over). The parent must be a wallet this module holds a
    /// share of itself (children have no children).
    pub fn save_derivation(
        &self,
        child: WalletId,
        parent: WalletId,
        path: &concord_types::DerivationPath,
    ) -> Result<(), Error> {
        if !self.has_share(parent)? {
            return Err(Error::Refused(format!(
                "this module holds no share of wallet {parent} of its own to derive from"
            )));
        }
        self.put_json(
            &format!("derived-{child}"),
            &DerivedWallet {
                parent,
                path: path.clone(),
            },
        )
    }

    /// Whether this module holds a share of `wallet` (without loading it).
    pub fn has_share(&self, wallet: WalletId) -> Result<bool, Error> {
        self.vault
            .contains(&format!("share-{wallet}"))
            .map_err(vault_err)
    }

    /// Stores a key share under its wallet id. Never over an existing share: a wallet this
    /// module holds cannot be replaced by a key generation or an import.
    pub fn save_share(&self, share: &KeyShare) -> Result<(), Error> {
        if self.has_share(share.wallet_id())? {
            return Err(Error::Refused(format!(
                "this module already holds a share of wallet {}: it is never overwritten",
                share.wallet_id()
            )));
        }
        let stored = self
            .vault
            .put(&format!("share-{}", share.wallet_id()), &share.to_bytes())
            .map_err(vault_err);
        self.shares_changed();
        stored
    }

    /// Sets a refreshed share aside until every member holds one (a refresh run replaces an
    /// earlier set-aside share that was never committed). The share in use is untouched.
    pub fn set_aside_refreshed(&self, share: &KeyShare) -> Result<(), Error> {
        let Some(old) = self.share_of_own(share.wallet_id())? else {
            return Err(Error::Refused(format!(
                "this module holds no share of wallet {} to refresh",
                share.wallet_id()
            )));
        };
        if old.index() != share.index()
            || old.threshold() != share.threshold()
            || old.engine() != share.engine()
            || old.public_key() != share.public_key()
        {
            return Err(Error::Refused(format!(
                "the refreshed share of wallet {} changes its key, index, threshold or engine",
                share.wallet_id()
            )));
        }
        self.vault
            .put(
                &format!("refreshed-{}", share.wallet_id()),
                &share.to_bytes(),
            )
            .map_err(vault_err)
    }

    /// Sets aside a share rebuilt for this module by a repair (it holds none of the wallet
    /// yet), until every member holds its new share.
    pub fn set_aside_rebuilt(&self, share: &KeyShare) -> Result<(), Error> {
        if self.share_of_own(share.wallet_id())?.is_some() {
            return Err(Error::Refused(format!(
                "this module already holds a share of wallet {}",
                share.wallet_id()
            )));
        }
        self.vault
            .put(
                &format!("refreshed-{}", share.wallet_id()),
                &share.to_bytes(),
            )
            .map_err(vault_err)
    }

    /// The refreshed share set aside for `wallet`, if any.
    pub fn refreshed(&self, wallet: WalletId) -> Result<Option<KeyShare>, Error> {
        match self
            .vault
            .get(&format!("refreshed-{wallet}"))
            .map_err(vault_err)?
        {
            Some(raw) => UncheckedKeyShare::from_bytes(&raw)
                .and_then(|u| u.validate_for(wallet))
                .map(Some)
                .map_err(|e| {
                    Error::Vault(format!(
                        "the refreshed share of wallet {wallet} is unusable: {e}"
                    ))
                }),
            None => Ok(None),
        }
    }

    /// Puts the set-aside refreshed share of `wallet` in use in place of the old one (which
    /// is overwritten: gone from the vault) and forgets the set-aside copy. Idempotent: once
    /// committed, a repeated commit finds nothing set aside and the share in use already is
    /// the refreshed one.
    pub fn commit_refreshed(&self, wallet: WalletId, share: &KeyShare) -> Result<(), Error> {
        let stored = self
            .vault
            .put(&format!("share-{wallet}"), &share.to_bytes())
            .map_err(vault_err);
        self.shares_changed();
        stored?;
        self.vault
            .delete(&format!("refreshed-{wallet}"))
            .map_err(vault_err)?;
        Ok(())
    }

    /// Bans `party` (caught cheating) from signing with this module's DKLs23 share of
    /// `wallet` for good; for a child wallet, the ban goes on its parent's share (the one
    /// stored), so every child of it refuses the party too.
    pub fn ban(&self, wallet: WalletId, party: u16) -> Result<(), Error> {
        let own = self
            .derivation(wallet)?
            .map_or(wallet, |(parent, _)| parent);
        match self.share_of_own(own)? {
            Some(KeyShare::Dkls(mut d)) => {
                d.exclude(party)
                    .map_err(|e| Error::Protocol(e.to_string()))?;
                self.update_share(&KeyShare::Dkls(d))
            }
            Some(KeyShare::DklsP256(mut d)) => {
                d.exclude(party)
                    .map_err(|e| Error::Protocol(e.to_string()))?;
                self.update_share(&KeyShare::DklsP256(d))
            }
            _ => Err(Error::Refused(format!(
                "wallet {own} holds no DKLs23 share here to ban a party from"
            ))),
        }
    }

    /// Rewrites a share this module already holds with the same wallet, index and threshold:
    /// a DKLs23 share after a party was banned from it. Never creates a share.
    pub fn update_share(&self, share: &KeyShare) -> Result<(), Error> {
        let Some(old) = self.share_of_own(share.wallet_id())? else {
            return Err(Error::Refused(format!(
                "this module holds no share of wallet {} to update",
                share.wallet_id()
            )));
        };
        if old.index() != share.index()
            || old.threshold() != share.threshold()
            || old.engine() != share.engine()
        {
            return Err(Error::Refused(format!(
                "the update of wallet {}'s share changes its index, threshold or engine",
                share.wallet_id()
            )));
        }
        let stored = self
            .vault
            .put(&format!("share-{}", share.wallet_id()), &share.to_bytes())
            .map_err(vault_err);
        self.shares_changed();
        stored
    }

    /// Stores an ECDSA presignature under its wallet and fingerprint.
    pub fn save_presignature(&self, p: &EcdsaPresignature) -> Result<(), Error> {
        self.vault
            .put(&presig_name(p.wallet_id(), &p.fingerprint()), &p.to_bytes())
            .map_err(vault_err)
    }

    /// Takes a presignature out of the vault for use: it is deleted (durably) before it is
    /// returned, so that no crash can make it usable twice; of two concurrent takers (two
    /// sign runs a coordinator started with one fingerprint) only the one whose delete
    /// removed the file gets it — two signatures under one presignature would give the key
    /// away.
    pub fn take_presignature(
        &self,
        wallet: WalletId,
        fingerprint: &[u8; 32],
    ) -> Result<Option<EcdsaPresignature>, Error> {
        let name = presig_name(wallet, fingerprint);
        let Some(raw) = self.vault.get(&name).map_err(vault_err)? else {
            return Ok(None);
        };
        let presig =
            EcdsaPresignature::from_bytes(&raw).map_err(|e| Error::Vault(e.to_string()))?;
        if !self.vault.delete(&name).map_err(vault_err)? {
            return Ok(None);
        }
        Ok(Some(presig))
    }

    /// Number of presignatures held for a wallet.
    pub fn presignature_count(&self, wallet: WalletId) -> Result<usize, Error> {
        Ok(self
            .vault
            .list(&format!("presig-{wallet}-"))
            .map_err(vault_err)?
            .len())
    }

    /// The approval given for a job.
    pub fn approval(&self, job_id: &str) -> Result<Option<ApprovalRecord>, Error> {
        let name = format!("{APPROVAL_PREFIX}{job_id}");
        if concord_vault::check_name(&name).is_err() {
            return Ok(None);
        }
        self.get_json(&name, "approval")
    }

    /// Records an approval (before it is sent), and adds it to the logs.
    pub fn save_approval(&self, job_id: &str, a: &ApprovalRecord) -> Result<(), Error> {
        let name = format!("{APPROVAL_PREFIX}{job_id}");
        concord_vault::check_name(&name).map_err(|e| Error::Refused(e.to_string()))?;
        self.put_json(&name, a)?;
        self.logs()?.add(job_id, a, APPROVAL_TTL_SECS);
        Ok(())
    }

    /// Releases the approval of a job the coordinator gave up: it is marked void and binds
    /// nothing any more. Refused if this module already signed under it (then it stands).
    /// Returns whether an approval was released (`false`: none, or released before).
    pub fn release_approval(&self, job_id: &str) -> Result<bool, Error> {
        // Under the log lock: a signing session of the job cannot slip in between.
        let mut logs = self.logs()?;
        if logs.has_signed(job_id) {
            return Err(Error::Refused(format!(
                "this module already signed under its approval of job {job_id}: it stands"
            )));
        }
        let Some(mut rec) = self.approval(job_id)? else {
            return Ok(false);
        };
        if rec.void {
            return Ok(false);
        }
        rec.void = true;
        self.put_json(&format!("{APPROVAL_PREFIX}{job_id}"), &rec)?;
        logs.void(job_id);
        Ok(true)
    }

    /// Records that an intent (an import's) was used, for good.
    pub fn record_intent(&self, intent: &str) -> Result<(), Error> {
        let name = format!("{INTENT_PREFIX}{intent}");
        concord_vault::check_name(&name).map_err(|e| Error::Refused(e.to_string()))?;
        self.put_json(&name, &true)?;
        self.logs()?.add_import(intent);
        Ok(())
    }

    /// Marks a signing session of `job` as run, durably, before anything of it leaves the
    /// module; `false` if it was run before (never twice). From then on the job's approval
    /// can no longer be released.
    pub fn use_session(&self, session: &[u8; 32], job: &str) -> Result<bool, Error> {
        self.start_session(session, job, true)
    }

    /// Marks a signing session of `job` as run, durably, when it starts before its
    /// certificate came (`false` if it was run before: never twice) — without binding the
    /// job's approval yet: until [`State::sign_under`], the approval may still be released.
    pub fn use_session_early(&self, session: &[u8; 32], job: &str) -> Result<bool, Error> {
        self.start_session(session, job, false)
    }

    /// Before anything of this module's signature share leaves an early session of `job`:
    /// binds the job's approval for good (it can no longer be released); refused if it was
    /// released meanwhile.
    pub fn sign_under(&self, session: &[u8; 32], job: &str) -> Result<(), Error> {
        self.sign_under_as(session, job, Some("threshold"))
    }

    /// [`State::sign_under`], the release recorded in the audit trail as `kind` (none: the
    /// caller records it, as a multisig signing does once its signatures are made).
    pub(crate) fn sign_under_as(
        &self,
        session: &[u8; 32],
        job: &str,
        kind: Option<&str>,
    ) -> Result<(), Error> {
        // Under the log lock: a release of the job cannot slip in between.
        let mut logs = self.logs()?;
        self.refuse_released(job)?;
        if let Some(kind) = kind {
            self.record_release(session, job, kind)?;
        }
        self.vault
            .put(&session_name(session), job.as_bytes())
            .map_err(vault_err)?;
        logs.add_signed(job);
        Ok(())
    }

    /// Records in the audit trail that this module's share of a signing session is about to
    /// leave it (kept for the run's result to name).
    fn record_release(&self, session: &[u8; 32], job: &str, kind: &str) -> Result<(), Error> {
        let r = self.record(crate::audit::Event::SignatureReleased {
            job: job.to_owned(),
            session: hex::encode(session),
            kind: kind.into(),
        })?;
        if let Ok(mut m) = self.released.lock() {
            // Runs whose result never came leave theirs: keep the map small.
            if m.len() > 4096 {
                m.clear();
            }
            m.insert(*session, r);
        }
        Ok(())
    }

    /// The audit entry that recorded the release of this module's share of `session`, once.
    pub(crate) fn take_release(&self, session: &[u8]) -> Option<AuditRef> {
        let session: [u8; 32] = session.try_into().ok()?;
        self.released.lock().ok()?.remove(&session)
    }

    fn start_session(&self, session: &[u8; 32], job: &str, bind: bool) -> Result<bool, Error> {
        let name = session_name(session);
        let _unique = self
            .sessions
            .lock()
            .map_err(|_| Error::Vault("the session lock is poisoned".into()))?;
        if self.vault.contains(&name).map_err(vault_err)? {
            return Ok(false);
        }
        if !bind {
            // Binds nothing: a release may still come, and `sign_under` checks for it.
            self.refuse_released(job)?;
            self.vault
                .put(&name, format!("{EARLY_SESSION}{job}").as_bytes())
                .map_err(vault_err)?;
            return Ok(true);
        }
        // Under the log lock: a release of the job cannot slip in between.
        let mut logs = self.logs()?;
        self.refuse_released(job)?;
        self.record_release(session, job, "threshold")?;
        self.vault.put(&name, job.as_bytes()).map_err(vault_err)?;
        logs.add_signed(job);
        Ok(true)
    }

    fn refuse_released(&self, job: &str) -> Result<(), Error> {
        if self.approval(job)?.is_some_and(|a| a.void) {
            return Err(Error::Refused(format!(
                "the approval of job {job} was released: this module never signs under it"
            )));
        }
        Ok(())
    }

    /// The secret of this module's read-only key for an exchange connection.
    pub fn exchange_secret(&self, exchange: &str) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        self.vault
            .get(&exchange_secret_name(exchange)?)
            .map_err(vault_err)
    }

    /// Stores the secret of this module's read-only key for an exchange connection.
    pub fn save_exchange_secret(&self, exchange: &str, secret: &[u8]) -> Result<(), Error> {
        self.vault
            .put(&exchange_secret_name(exchange)?, secret)
            .map_err(vault_err)
    }

    /// The secret of the withdraw-capable key this module holds whole for an exchange
    /// connection (a held credential's), if it holds one.
    pub fn withdraw_secret(&self, exchange: &str) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        self.vault
            .get(&withdraw_secret_name(exchange)?)
            .map_err(vault_err)
    }

    /// Stores the secret of the withdraw-capable key this module holds whole.
    pub fn save_withdraw_secret(&self, exchange: &str, secret: &[u8]) -> Result<(), Error> {
        self.vault
            .put(&withdraw_secret_name(exchange)?, secret)
            .map_err(vault_err)
    }

    /// What this module's ledger says about a held credential's request for `transfer`.
    pub(crate) fn held_send(&self, transfer: &str) -> Result<Option<HeldSend>, Error> {
        let Some(raw) = self
            .vault
            .get(&held_send_name(transfer))
            .map_err(vault_err)?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| Error::Vault(format!("the ledger entry of transfer {transfer}: {e}")))
    }

    /// Every held-credential request this module's ledger holds, by vault entry name.
    pub(crate) fn held_sends(&self) -> Result<Vec<(String, HeldSend)>, Error> {
        let mut out = Vec::new();
        for name in self.vault.list("held-send-").map_err(vault_err)? {
            let Some(raw) = self.vault.get(&name).map_err(vault_err)? else {
                continue;
            };
            let entry: HeldSend = serde_json::from_slice(&raw)
                .map_err(|e| Error::Vault(format!("the ledger entry {name}: {e}")))?;
            out.push((name, entry));
        }
        Ok(out)
    }

    /// Writes down a held credential's request for `transfer` (before it is sent, then with
    /// the exchange's answer).
    pub(crate) fn save_held_send(&self, transfer: &str, s: &HeldSend) -> Result<(), Error> {
        let raw = serde_json::to_vec(s).map_err(|e| Error::Vault(e.to_string()))?;
        self.vault
            .put(&held_send_name(transfer), &raw)
            .map_err(vault_err)
    }
}

/// A passphrase key-encryption key with cheap Argon2 parameters, for tests only.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_kek() -> concord_vault::PassphraseKek {
    concord_vault::PassphraseKek::with_params(
        zeroize::Zeroizing::new("test passphrase".into()),
        concord_vault::Argon2Params {
            m_cost_kib: 8 * 1024,
            t_cost: 1,
            p_cost: 1,
        },
    )
    .unwrap()
}

fn withdraw_secret_name(exchange: &str) -> Result<String, Error> {
    let name = format!("exchange-withdraw-{exchange}");
    concord_vault::check_name(&name).map_err(|e| {
        Error::Config(format!(
            "the exchange name {exchange:?} cannot name a vault entry: {e}"
        ))
    })?;
    Ok(name)
}

/// The vault entry of a held credential's request for a transfer (the transfer id hashed:
/// it is the coordinator's text).
fn held_send_name(transfer: &str) -> String {
    format!(
        "held-send-{}",
        hex::encode(concord_wire::authority::tagged_hash(
            "concord/held-send/v1",
            transfer.as_bytes()
        ))
    )
}

/// A held credential's request for one transfer, as the holder's ledger keeps it: bound to
/// the job and digest the members approved before anything is sent, then the exchange's
/// withdrawal id once it answered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct HeldSend {
    /// The sign job it was approved under.
    pub(crate) job: String,
    /// The approved request's digest, hex.
    pub(crate) digest: String,
    /// The exchange's withdrawal id, once it answered.
    pub(crate) withdrawal_id: Option<String>,
    /// Why the exchange refused it, when it did (nothing was withdrawn).
    pub(crate) refused: Option<String>,
    /// When it was about to leave, Unix seconds by this module's clock: a lost answer is
    /// looked up among the withdrawals made around then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sent_at_s: Option<u64>,
    /// The request as approved (Kraken's `Withdraw` form): another lost answer for the same
    /// withdrawal at the same time makes a lookup ambiguous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request: Option<String>,
}

fn exchange_secret_name(exchange: &str) -> Result<String, Error> {
    let name = format!("exchange-read-{exchange}");
    concord_vault::check_name(&name).map_err(|e| {
        Error::Config(format!(
            "the exchange name {exchange:?} cannot name a vault entry: {e}"
        ))
    })?;
    Ok(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod multisig_key_tests {
    use super::*;

    /// A module's own key: made with the vault, published signed by its identity, the same
    /// after a restart; a vault from before gets one at its next opening, kept from then on.
    #[test]
    fn a_module_has_its_own_multisig_key_bound_to_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let kek = test_kek();
        let st = State::create("m1", dir.path(), &kek, Default::default()).unwrap();
        let info = st.public_info();
        let key: [u8; 33] = hex::decode(&info.multisig_key).unwrap().try_into().unwrap();
        let sig = hex::decode(&info.multisig_key_signature).unwrap();
        st.identity()
            .public()
            .verify_multisig_key(&key, &sig)
            .unwrap();
        // Not a sealing-key signature, nor another key's.
        let mut other = key;
        other[32] ^= 1;
        assert!(
            st.identity()
                .public()
                .verify_multisig_key(&other, &sig)
                .is_err()
        );
        assert_eq!(
            info.multisig_address,
            concord_chain::evm_address(&key).unwrap().to_string()
        );
        drop(st);
        let st = State::open("m1", dir.path(), &kek, Default::default()).unwrap();
        assert_eq!(st.multisig_public_key(), key, "the key survives a restart");
        // A vault made before modules had their own key.
        assert!(st.vault.delete(MULTISIG).unwrap());
        drop(st);
        let st = State::open("m1", dir.path(), &kek, Default::default()).unwrap();
        let fresh = st.multisig_public_key();
        assert_ne!(fresh, key);
        drop(st);
        let st = State::open("m1", dir.path(), &kek, Default::default()).unwrap();
        assert_eq!(st.multisig_public_key(), fresh, "generated once, then kept");
        // The secret is in the vault, sealed: not in its file in the clear.
        let secret = st.vault.get(MULTISIG).unwrap().unwrap();
        for entry in std::fs::read_dir(dir.path().join("secrets")).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(32).any(|w| w == &secret[..]));
        }
    }
}
