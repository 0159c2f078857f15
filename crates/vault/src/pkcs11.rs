//! Keys that never leave an HSM, over PKCS#11 (tested on SoftHSM 2.6).
//!
//! - [`Pkcs11Kek`] is a [`KekProvider`]: the vault's key-encryption key is an AES-256 key
//!   generated inside the token (sensitive, not extractable); data keys are wrapped and
//!   unwrapped with CKM_AES_GCM inside the token.
//! - [`HsmSecp256k1Key`] and [`HsmEd25519Key`] are signing keys generated and used inside the
//!   token (native-multisig keys and module identity keys). secp256k1 signatures come out of
//!   CKM_ECDSA as `r || s`; they are normalised to low-s and their recovery id is found here,
//!   outside the token, by recovering against the known public key.
//!
//! A token is reached through a [`Pkcs11Config`]: the module library, the token (by label or
//! slot id) and where the user PIN is read from ([`PinSource`]: a file or an environment
//! variable, never a command-line argument). `C_Initialize` runs once per library per process;
//! initialised libraries are kept in a process-wide cache.
//!
//! PKCS#11 logs a whole application in or out of a token, not a session: once one session is
//! logged in, `C_Login` on another answers `CKR_USER_ALREADY_LOGGED_IN` without looking at the
//! PIN. So that a second [`Token`] handle with a wrong PIN is still refused, the process keeps
//! a salted SHA-256 of the PIN each token was logged in with, and compares it in that case.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::kek::{Kek, KekParams, KekProvider};
use crate::passphrase::PassphraseSource;
use crate::seal::fill_random;

/// The kind recorded in vault headers for PKCS#11 keys.
pub(crate) const KIND: &str = "pkcs11";

/// Where a token's user PIN is read from: the same rules as a passphrase
/// (`pin = { file = "/etc/concord/hsm.pin" }` or `pin = { env = "CONCORD_HSM_PIN" }`; no
/// command-line argument). Read with [`PassphraseSource::read_pin`].
pub type PinSource = PassphraseSource;

/// DER of the secp256k1 curve's OID, 1.3.132.0.10 (the `CKA_EC_PARAMS` of its keys).
pub const SECP256K1_EC_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
/// DER of the Ed25519 OID, 1.3.101.112 (RFC 8410): the `CKA_EC_PARAMS` tried first for
/// Ed25519 keys.
pub const ED25519_EC_PARAMS_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of the PrintableString `"edwards25519"` (the PKCS#11 3.0 curve name): the
/// `CKA_EC_PARAMS` tried for Ed25519 keys when a token refuses the OID.
pub const ED25519_EC_PARAMS_NAME: &[u8] = &[
    0x13, 0x0c, b'e', b'd', b'w', b'a', b'r', b'd', b's', b'2', b'5', b'5', b'1', b'9',
];

/// AES-GCM IV length (96 bits).
const GCM_IV_LEN: usize = 12;
/// AES-GCM tag length (128 bits).
const GCM_TAG_LEN: usize = 16;
/// Length of a wrapped data key: IV, 32-byte key, tag.
const WRAPPED_LEN: usize = GCM_IV_LEN + 32 + GCM_TAG_LEN;
/// Idle sessions a token handle keeps for reuse.
const POOL_MAX: usize = 4;

/// Which token of a library to use.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenSelector {
    /// The (only) initialised token with this label (`CKA_LABEL` of the token, as shown by
    /// `softhsm2-util --show-slots`).
    Label(String),
    /// The token in the slot with this id.
    Slot(u64),
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Label(l) => write!(f, "labelled {l:?}"),
            TokenSelector::Slot(s) => write!(f, "in slot {s}"),
        }
    }
}

/// How to reach a PKCS#11 token. In a TOML configuration:
///
/// ```toml
/// [hsm]
/// library = "/usr/lib/softhsm/libsofthsm2.so"
/// token = { label = "concord" }          # or { slot = 1234 }
/// pin = { file = "/etc/concord/hsm.pin" } # or { env = "CONCORD_HSM_PIN" }
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library).
    pub library: PathBuf,
    /// The token.
    pub token: TokenSelector,
    /// Where the user PIN is read from.
    pub pin: PinSource,
}

// ---------------------------------------------------------------------------------------------
// Errors

/// `CKR_…` name of a return value (`PinIncorrect` → `CKR_PIN_INCORRECT`).
fn rv_name(rv: &RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR_");
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A short description of a cryptoki error: `C_Login returned CKR_PIN_INCORRECT`.
fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("C_{function:?} returned {}", rv_name(rv)),
        other => other.to_string(),
    }
}

fn rv_of(e: &CkError) -> Option<&RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(rv),
        _ => None,
    }
}

fn ck(action: impl Into<String>, e: &CkError) -> VaultError {
    VaultError::Pkcs11 {
        action: action.into(),
        reason: describe(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Libraries (process-wide)

/// An initialised PKCS#11 library, kept for the life of the process.
struct Library {
    path: PathBuf,
    ctx: Pkcs11,
    /// Per slot id: salted SHA-256 of the PIN this process logged the token in with.
    logins: Mutex<HashMap<u64, [u8; 32]>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves no broken invariant behind.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

static LIBRARIES: OnceLock<Mutex<HashMap<PathBuf, Arc<Library>>>> = OnceLock::new();
static PIN_SALT: OnceLock<[u8; 32]> = OnceLock::new();

/// The library at `path`, loaded and initialised once per process.
fn library(path: &Path) -> Result<Arc<Library>, VaultError> {
    let load = || format!("load the PKCS#11 library {}", path.display());
    let canonical = std::fs::canonicalize(path).map_err(|e| VaultError::Pkcs11 {
        action: load(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "the file does not exist".into()
        } else {
            e.to_string()
        },
    })?;
    let mut libs = lock(LIBRARIES.get_or_init(Default::default));
    if let Some(lib) = libs.get(&canonical) {
        return Ok(lib.clone());
    }
    let ctx = Pkcs11::new(&canonical).map_err(|e| ck(load(), &e))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        // Initialised already by other code of this process: usable as it is.
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(ck(format!("initialise {}", path.display()), &e)),
    }
    let lib = Arc::new(Library {
        path: path.to_path_buf(),
        ctx,
        logins: Mutex::new(HashMap::new()),
    });
    libs.insert(canonical, lib.clone());
    Ok(lib)
}

fn pin_verifier(slot: u64, pin: &str) -> Result<[u8; 32], VaultError> {
    let salt = match PIN_SALT.get() {
        Some(s) => *s,
        None => {
            let mut s = [0u8; 32];
            fill_random(&mut s)?;
            *PIN_SALT.get_or_init(|| s)
        }
    };
    let mut h = Sha256::new();
    h.update(b"concord-vault/pkcs11-pin\0");
    h.update(salt);
    h.update(slot.to_be_bytes());
    h.update(pin.as_bytes());
    Ok(h.finalize().into())
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------------------------
// Token

/// An open, logged-in PKCS#11 token. Cheap to clone (clones share their sessions); `Send` and
/// `Sync`. Sessions are opened on demand, logged in as the user, and kept in a small pool;
/// they close when the last clone is dropped. The PIN is kept (wiped on drop) to log in again
/// if the token logged the process out; `Debug` never shows it.
#[derive(Clone)]
pub struct Token {
    inner: Arc<TokenInner>,
}

struct TokenInner {
    lib: Arc<Library>,
    slot: Slot,
    label: String,
    pin: Zeroizing<String>,
    pool: Mutex<Vec<Session>>,
    /// Serialises "is this label free? then generate" within the process.
    generating: Mutex<()>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("library", &self.inner.lib.path)
            .field("slot", &self.inner.slot.id())
            .field("label", &self.inner.label)
            .field("pin", &"<redacted>")
            .finish()
    }
}

impl Token {
    /// Opens the configured token: loads the library (once per process), finds the token,
    /// reads the PIN from its source and logs in. Fails with [`VaultError::TokenNotFound`]
    /// (listing the tokens present), [`VaultError::Pin`] or [`VaultError::WrongPin`].
    pub fn open(config: &Pkcs11Config) -> Result<Token, VaultError> {
        let pin = config.pin.read_pin()?;
        Self::open_with_pin(&config.library, &config.token, pin)
    }

    /// Like [`open`](Self::open), with a PIN the caller already holds.
    pub fn open_with_pin(
        library_path: &Path,
        token: &TokenSelector,
        pin: Zeroizing<String>,
    ) -> Result<Token, VaultError> {
        let lib = library(library_path)?;
        let (slot, label) = find_slot(&lib, token)?;
        let token = Token {
            inner: Arc::new(TokenInner {
                lib,
                slot,
                label,
                pin,
                pool: Mutex::new(Vec::new()),
                generating: Mutex::new(()),
            }),
        };
        // Log in now, so a wrong PIN fails here rather than at first use.
        let session = token.new_session()?;
        lock(&token.inner.pool).push(session);
        Ok(token)
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The id of the token's slot.
    pub fn slot_id(&self) -> u64 {
        self.inner.slot.id()
    }

    /// The PKCS#11 library's path, as configured.
    pub fn library(&self) -> &Path {
        &self.inner.lib.path
    }

    fn new_session(&self) -> Result<Session, VaultError> {
        let session = self
            .inner
            .lib
            .ctx
            .open_rw_session(self.inner.slot)
            .map_err(|e| {
                ck(
                    format!("open a session on the token {:?}", self.label()),
                    &e,
                )
            })?;
        self.ensure_login(&session)?;
        Ok(session)
    }

    /// Logs the process in as the token's user unless it already is, in which case the PIN
    /// is checked against the one it was logged in with.
    fn ensure_login(&self, session: &Session) -> Result<(), VaultError> {
        let slot = self.slot_id();
        let mine = pin_verifier(slot, &self.inner.pin)?;
        let wrong = || VaultError::WrongPin {
            token: self.label().to_string(),
        };
        let mut logins = lock(&self.inner.lib.logins);
        let state = session
            .get_session_info()
            .map_err(|e| ck(format!("inspect a session on {:?}", self.label()), &e))?
            .session_state();
        match state {
            SessionState::RoUser | SessionState::RwUser => {}
            SessionState::RoPublic | SessionState::RwPublic => {
                let pin = AuthPin::from(self.inner.pin.as_str());
                match session.login(UserType::User, Some(&pin)) {
                    Ok(()) => {
                        logins.insert(slot, mine);
                        return Ok(());
                    }
                    Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                    Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                        return Err(wrong());
                    }
                    Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                        return Err(VaultError::Pkcs11 {
                            action: format!("log in to the token {:?}", self.label()),
                            reason: "its user PIN is locked (too many wrong PINs)".into(),
                        });
                    }
                    Err(e) => {
                        return Err(ck(format!("log in to the token {:?}", self.label()), &e));
                    }
                }
            }
            _ => {
                return Err(VaultError::Pkcs11 {
                    action: format!("log in to the token {:?}", self.label()),
                    reason: "this process is logged in to it as security officer".into(),
                });
            }
        }
        // Logged in already (by this process): the PIN must be the one it logged in with.
        match logins.get(&slot) {
            Some(known) if same(known, &mine) => Ok(()),
            Some(_) => Err(wrong()),
            None => Err(VaultError::Pkcs11 {
                action: format!("log in to the token {:?}", self.label()),
                reason: "other code of this process logged in to it, so the PIN cannot be \
                         checked"
                    .into(),
            }),
        }
    }

    /// Runs `f` on a logged-in session from the pool (or a new one), and returns the session
    /// to the pool unless `f` failed and the session no longer looks usable.
    fn with_session<R, E>(
        &self,
        f: impl FnOnce(&Session) -> Result<R, E>,
    ) -> Result<Result<R, E>, VaultError> {
        let pooled = lock(&self.inner.pool).pop();
        let session = match pooled {
            Some(s) => s,
            None => self.new_session()?,
        };
        let out = f(&session);
        let keep = out.is_ok()
            || session.get_session_info().is_ok_and(|i| {
                matches!(
                    i.session_state(),
                    SessionState::RwUser | SessionState::RoUser
                )
            });
        if keep {
            let mut pool = lock(&self.inner.pool);
            if pool.len() < POOL_MAX {
                pool.push(session);
            }
        }
        Ok(out)
    }

    /// The objects with `label` (any class).
    fn objects_labelled(s: &Session, label: &str) -> Result<Vec<ObjectHandle>, CkError> {
        s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
    }

    /// Checks the label's syntax and that no object of the token carries it yet.
    fn check_label_free(&self, label: &str) -> Result<(), VaultError> {
        crate::vault::check_name(label)?;
        let found = self
            .with_session(|s| Self::objects_labelled(s, label))?
            .map_err(|e| ck(format!("search the token {:?}", self.label()), &e))?;
        if found.is_empty() {
            Ok(())
        } else {
            Err(VaultError::HsmLabelTaken {
                token: self.label().to_string(),
                label: label.to_string(),
            })
        }
    }

    /// Every key on the token this module knows the kind of (AES-256 key-encryption keys,
    /// secp256k1 and Ed25519 private keys), sorted by label. Other objects are not listed.
    pub fn list_keys(&self) -> Result<Vec<HsmKeyInfo>, VaultError> {
        let mut keys = self
            .with_session(|s| {
                let mut out = Vec::new();
                for class in [ObjectClass::SECRET_KEY, ObjectClass::PRIVATE_KEY] {
                    for h in s.find_objects(&[Attribute::Class(class)])? {
                        if let Some(info) = key_info(s, h)? {
                            out.push(info);
                        }
                    }
                }
                Ok::<_, CkError>(out)
            })?
            .map_err(|e| ck(format!("list the keys of the token {:?}", self.label()), &e))?;
        keys.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(keys)
    }

    /// The key labelled `label`, if there is one of a known kind (see
    /// [`list_keys`](Self::list_keys)).
    pub fn find_key(&self, label: &str) -> Result<Option<HsmKeyInfo>, VaultError> {
        let found = self
            .with_session(|s| {
                for class in [ObjectClass::SECRET_KEY, ObjectClass::PRIVATE_KEY] {
                    for h in s.find_objects(&[
                        Attribute::Class(class),
                        Attribute::Label(label.as_bytes().to_vec()),
                    ])? {
                        if let Some(info) = key_info(s, h)? {
                            return Ok(Some(info));
                        }
                    }
                }
                Ok::<_, CkError>(None)
            })?
            .map_err(|e| ck(format!("search the token {:?}", self.label()), &e))?;
        Ok(found)
    }

    /// Generates a secp256k1 key pair inside the token (CKM_EC_KEY_PAIR_GEN; the private key
    /// is a token object, private, sensitive and not extractable) under `label` (the syntax
    /// of a secret name). Refuses a label the token already uses.
    pub fn generate_secp256k1(&self, label: &str) -> Result<HsmSecp256k1Key, VaultError> {
        let _guard = lock(&self.inner.generating);
        self.check_label_free(label)?;
        let id = random_id()?;
        let (public, private) = self
            .with_session(|s| {
                s.generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &public_template(label, &id, SECP256K1_EC_PARAMS),
                    &private_template(label, &id),
                )
            })?
            .map_err(|e| ck(format!("generate the secp256k1 key {label:?}"), &e))?;
        match self.secp256k1_key(label) {
            Ok(key) => Ok(key),
            Err(e) => {
                self.destroy_quietly(&[public, private]);
                Err(e)
            }
        }
    }

    /// The secp256k1 key labelled `label` ([`VaultError::HsmKeyNotFound`] if there is none).
    pub fn secp256k1_key(&self, label: &str) -> Result<HsmSecp256k1Key, VaultError> {
        let (id, point) = self.find_pair(label, KeyType::EC, "secp256k1", |p| {
            p == SECP256K1_EC_PARAMS
        })?;
        let sec1 = unwrap_ec_point(&point, |b| VerifyingKey::from_sec1_bytes(b).is_ok());
        let verifying_key =
            VerifyingKey::from_sec1_bytes(sec1).map_err(|_| VaultError::Pkcs11 {
                action: format!("read the public key of {label:?}"),
                reason: "its CKA_EC_POINT is not a secp256k1 point".into(),
            })?;
        Ok(HsmSecp256k1Key {
            token: self.clone(),
            label: label.to_string(),
            id,
            verifying_key,
        })
    }

    /// Generates an Ed25519 key pair inside the token (CKM_EC_EDWARDS_KEY_PAIR_GEN; the
    /// private key private, sensitive, not extractable) under `label`. The curve is named by
    /// its OID (1.3.101.112) or, if the token refuses that, by the PKCS#11 3.0 name
    /// `"edwards25519"`. Refuses a label the token already uses.
    pub fn generate_ed25519(&self, label: &str) -> Result<HsmEd25519Key, VaultError> {
        let _guard = lock(&self.inner.generating);
        self.check_label_free(label)?;
        let id = random_id()?;
        let mut result = Err(CkError::NotSupported);
        for params in [ED25519_EC_PARAMS_OID, ED25519_EC_PARAMS_NAME] {
            result = self.with_session(|s| {
                s.generate_key_pair(
                    &Mechanism::EccEdwardsKeyPairGen,
                    &public_template(label, &id, params),
                    &private_template(label, &id),
                )
            })?;
            match &result {
                Err(CkError::Pkcs11(
                    RvError::CurveNotSupported
                    | RvError::DomainParamsInvalid
                    | RvError::AttributeValueInvalid
                    | RvError::TemplateInconsistent,
                    _,
                )) => continue,
                _ => break,
            }
        }
        let (public, private) =
            result.map_err(|e| ck(format!("generate the Ed25519 key {label:?}"), &e))?;
        match self.ed25519_key(label) {
            Ok(key) => Ok(key),
            Err(e) => {
                self.destroy_quietly(&[public, private]);
                Err(e)
            }
        }
    }

    /// The Ed25519 key labelled `label` ([`VaultError::HsmKeyNotFound`] if there is none).
    pub fn ed25519_key(&self, label: &str) -> Result<HsmEd25519Key, VaultError> {
        let (id, point) = self.find_pair(label, KeyType::EC_EDWARDS, "Ed25519", |p| {
            p == ED25519_EC_PARAMS_OID || p == ED25519_EC_PARAMS_NAME
        })?;
        let raw = unwrap_ec_point(&point, |b| b.len() == 32);
        let public: [u8; 32] = raw.try_into().map_err(|_| VaultError::Pkcs11 {
            action: format!("read the public key of {label:?}"),
            reason: format!(
                "its CKA_EC_POINT has {} bytes, not an Ed25519 key",
                point.len()
            ),
        })?;
        Ok(HsmEd25519Key {
            token: self.clone(),
            label: label.to_string(),
            id,
            public,
        })
    }

    /// Finds the private key labelled `label` of `key_type` whose `CKA_EC_PARAMS` satisfy
    /// `params_ok`, and its public key (same id); returns the id and the public `CKA_EC_POINT`.
    fn find_pair(
        &self,
        label: &str,
        key_type: KeyType,
        curve: &str,
        params_ok: impl Fn(&[u8]) -> bool,
    ) -> Result<(Vec<u8>, Vec<u8>), VaultError> {
        let missing = |what: String| VaultError::HsmKeyNotFound {
            token: self.label().to_string(),
            what,
        };
        let found = self
            .with_session(|s| {
                for h in s.find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::KeyType(key_type),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])? {
                    let attrs =
                        s.get_attributes(h, &[AttributeType::Id, AttributeType::EcParams])?;
                    let (mut id, mut params) = (None, None);
                    for a in attrs {
                        match a {
                            Attribute::Id(v) => id = Some(v),
                            Attribute::EcParams(v) => params = Some(v),
                            _ => {}
                        }
                    }
                    let (Some(id), Some(params)) = (id, params) else {
                        continue;
                    };
                    if !params_ok(&params) {
                        continue;
                    }
                    let point = s
                        .find_objects(&[
                            Attribute::Class(ObjectClass::PUBLIC_KEY),
                            Attribute::KeyType(key_type),
                            Attribute::Id(id.clone()),
                        ])?
                        .into_iter()
                        .next()
                        .map(|p| s.get_attributes(p, &[AttributeType::EcPoint]))
                        .transpose()?
                        .and_then(|attrs| {
                            attrs.into_iter().find_map(|a| match a {
                                Attribute::EcPoint(v) => Some(v),
                                _ => None,
                            })
                        });
                    return Ok::<_, CkError>(Some((id, point)));
                }
                Ok(None)
            })?
            .map_err(|e| ck(format!("look up the {curve} key {label:?}"), &e))?;
        match found {
            None => Err(missing(format!("{curve} private key labelled {label:?}"))),
            Some((_, None)) => Err(missing(format!(
                "public key for the {curve} key labelled {label:?}"
            ))),
            Some((id, Some(point))) => Ok((id, point)),
        }
    }

    /// The handle of the private key (`class`) with `id` and `label`, in session `s`.
    fn key_handle(
        s: &Session,
        class: ObjectClass,
        id: &[u8],
        label: &str,
    ) -> Result<Option<ObjectHandle>, CkError> {
        Ok(s.find_objects(&[
            Attribute::Class(class),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?
        .into_iter()
        .next())
    }

    fn destroy_quietly(&self, objects: &[ObjectHandle]) {
        let _ = self.with_session(|s| {
            for o in objects {
                let _ = s.destroy_object(*o);
            }
            Ok::<_, CkError>(())
        });
    }
}

fn find_slot(lib: &Library, wanted: &TokenSelector) -> Result<(Slot, String), VaultError> {
    let slots = lib
        .ctx
        .get_slots_with_token()
        .map_err(|e| ck(format!("list the slots of {}", lib.path.display()), &e))?;
    let mut present = Vec::new();
    let mut matches = Vec::new();
    for slot in slots {
        let info = lib
            .ctx
            .get_token_info(slot)
            .map_err(|e| ck(format!("read the token in slot {}", slot.id()), &e))?;
        if !info.token_initialized() {
            continue;
        }
        let label = info.label().to_string();
        present.push(format!("{label:?} (slot {})", slot.id()));
        let hit = match wanted {
            TokenSelector::Label(l) => *l == label,
            TokenSelector::Slot(id) => *id == slot.id(),
        };
        if hit {
            matches.push((slot, label));
        }
    }
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(VaultError::TokenNotFound {
            token: wanted.to_string(),
            library: lib.path.clone(),
            present: if present.is_empty() {
                "none".into()
            } else {
                present.join(", ")
            },
        }),
        _ => Err(VaultError::Pkcs11 {
            action: format!("choose the token {wanted} in {}", lib.path.display()),
            reason: format!(
                "several tokens match ({}); select one by slot",
                present.join(", ")
            ),
        }),
    }
}

fn random_id() -> Result<[u8; 16], VaultError> {
    let mut id = [0u8; 16];
    fill_random(&mut id)?;
    Ok(id)
}

fn public_template(label: &str, id: &[u8], ec_params: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcParams(ec_params.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

fn private_template(label: &str, id: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

/// The content of a `CKA_EC_POINT`: tokens return a DER OCTET STRING around the point (as
/// PKCS#11 specifies), some the bare point. The wrapped reading is taken when it is
/// consistent and `valid` accepts its content; otherwise the bytes are taken as they are.
fn unwrap_ec_point(bytes: &[u8], valid: impl Fn(&[u8]) -> bool) -> &[u8] {
    let inner = match bytes {
        [0x04, len, rest @ ..] if *len < 0x80 && usize::from(*len) == rest.len() => Some(rest),
        [0x04, 0x81, len, rest @ ..] if *len >= 0x80 && usize::from(*len) == rest.len() => {
            Some(rest)
        }
        _ => None,
    };
    match inner {
        Some(inner) if valid(inner) => inner,
        _ => bytes,
    }
}

/// What kind of key an object is, and its flags; `None` for kinds this module does not use.
fn key_info(s: &Session, h: ObjectHandle) -> Result<Option<HsmKeyInfo>, CkError> {
    let attrs = s.get_attributes(
        h,
        &[
            AttributeType::Label,
            AttributeType::Id,
            AttributeType::KeyType,
            AttributeType::EcParams,
            AttributeType::ValueLen,
            AttributeType::Sensitive,
            AttributeType::Extractable,
        ],
    )?;
    let (mut label, mut id, mut key_type, mut params, mut len) = (None, None, None, None, None);
    let (mut sensitive, mut extractable) = (false, true);
    for a in attrs {
        match a {
            Attribute::Label(v) => label = Some(String::from_utf8_lossy(&v).into_owned()),
            Attribute::Id(v) => id = Some(v),
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcParams(v) => params = Some(v),
            Attribute::ValueLen(v) => len = Some(u64::from(v)),
            Attribute::Sensitive(v) => sensitive = v,
            Attribute::Extractable(v) => extractable = v,
            _ => {}
        }
    }
    let kind = match (key_type, params.as_deref(), len) {
        (Some(t), _, Some(32)) if t == KeyType::AES => HsmKeyKind::Aes256,
        (Some(t), Some(p), _) if t == KeyType::EC && p == SECP256K1_EC_PARAMS => {
            HsmKeyKind::Secp256k1
        }
        (Some(t), Some(p), _)
            if t == KeyType::EC_EDWARDS
                && (p == ED25519_EC_PARAMS_OID || p == ED25519_EC_PARAMS_NAME) =>
        {
            HsmKeyKind::Ed25519
        }
        _ => return Ok(None),
    };
    Ok(Some(HsmKeyInfo {
        label: label.unwrap_or_default(),
        id: id.unwrap_or_default(),
        kind,
        sensitive,
        extractable,
    }))
}

/// The kind of a key on a token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum HsmKeyKind {
    /// An AES-256 secret key (a vault key-encryption key).
    Aes256,
    /// A secp256k1 private key.
    Secp256k1,
    /// An Ed25519 private key.
    Ed25519,
}

/// A key found on a token (see [`Token::list_keys`]).
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct HsmKeyInfo {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// What kind of key.
    pub kind: HsmKeyKind,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
}

// ---------------------------------------------------------------------------------------------
// Signing keys

/// A secp256k1 key pair inside a token. Holds only the public key and where to find the
/// private key (its label and id); signing happens in the token.
#[derive(Clone)]
pub struct HsmSecp256k1Key {
    token: Token,
    label: String,
    id: Vec<u8>,
    verifying_key: VerifyingKey,
}

impl fmt::Debug for HsmSecp256k1Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmSecp256k1Key")
            .field("token", &self.token.label())
            .field("label", &self.label)
            .field("public_key", &hex::encode(self.public_key_compressed()))
            .finish()
    }
}

impl HsmSecp256k1Key {
    /// The key's label on the token.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying_key
    }

    /// The public key, SEC1 compressed (33 bytes).
    pub fn public_key_compressed(&self) -> [u8; 33] {
        let point = self.verifying_key.to_encoded_point(true);
        let mut out = [0u8; 33];
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// Signs a 32-byte message digest inside the token (CKM_ECDSA, no hashing), normalises
    /// the signature to low-s, and finds its recovery id by recovering the public key.
    pub fn sign_prehash(&self, prehash: &[u8; 32]) -> Result<(Signature, RecoveryId), VaultError> {
        let action = || format!("sign with the secp256k1 key {:?}", self.label);
        let raw = self
            .token
            .with_session(|s| {
                let Some(h) =
                    Token::key_handle(s, ObjectClass::PRIVATE_KEY, &self.id, &self.label)?
                else {
                    return Ok(None);
                };
                s.sign(&Mechanism::Ecdsa, h, prehash).map(Some)
            })?
            .map_err(|e| ck(action(), &e))?
            .ok_or_else(|| VaultError::HsmKeyNotFound {
                token: self.token.label().to_string(),
                what: format!("secp256k1 private key labelled {:?}", self.label),
            })?;
        let signature = Signature::from_slice(&raw).map_err(|_| VaultError::Pkcs11 {
            action: action(),
            reason: format!("the token returned {} bytes, not r || s", raw.len()),
        })?;
        let signature = signature.normalize_s().unwrap_or(signature);
        let recovery_id =
            RecoveryId::trial_recovery_from_prehash(&self.verifying_key, prehash, &signature)
                .map_err(|_| VaultError::Pkcs11 {
                    action: action(),
                    reason: "the token's signature does not verify under the key's public key"
                        .into(),
                })?;
        Ok((signature, recovery_id))
    }
}

/// An Ed25519 key pair inside a token. Holds only the public key and where to find the
/// private key; signing happens in the token.
#[derive(Clone)]
pub struct HsmEd25519Key {
    token: Token,
    label: String,
    id: Vec<u8>,
    public: [u8; 32],
}

impl fmt::Debug for HsmEd25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmEd25519Key")
            .field("token", &self.token.label())
            .field("label", &self.label)
            .field("public_key", &hex::encode(self.public))
            .finish()
    }
}

impl HsmEd25519Key {
    /// The key's label on the token.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The public key (32 bytes, RFC 8032 encoding).
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// Signs `message` inside the token (CKM_EDDSA, pure Ed25519); returns the 64-byte
    /// RFC 8032 signature.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], VaultError> {
        let action = || format!("sign with the Ed25519 key {:?}", self.label);
        let raw = self
            .token
            .with_session(|s| {
                let Some(h) =
                    Token::key_handle(s, ObjectClass::PRIVATE_KEY, &self.id, &self.label)?
                else {
                    return Ok(None);
                };
                s.sign(
                    &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                    h,
                    message,
                )
                .map(Some)
            })?
            .map_err(|e| ck(action(), &e))?
            .ok_or_else(|| VaultError::HsmKeyNotFound {
                token: self.token.label().to_string(),
                what: format!("Ed25519 private key labelled {:?}", self.label),
            })?;
        raw.as_slice().try_into().map_err(|_| VaultError::Pkcs11 {
            action: action(),
            reason: format!("the token returned {} bytes, not 64", raw.len()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Key-encryption key

/// The PKCS#11 [`KekProvider`]: the key-encryption key is an AES-256 key generated inside the
/// token (`CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE` true, `CKA_EXTRACTABLE` false) with a
/// random 16-byte `CKA_ID` and the label `concord-vault-kek-<id hex>`. Data keys are wrapped
/// with CKM_AES_GCM inside the token: a fresh random 96-bit IV per wrap, the AAD
/// authenticated, a 128-bit tag; stored as `IV || ciphertext || tag`.
///
/// A vault rekeyed away from an HSM key leaves that key on the token (another vault or a
/// backup may still use it); remove it with the token's tools once it is no longer needed.
#[derive(Clone, Debug)]
pub struct Pkcs11Kek {
    token: Token,
}

impl Pkcs11Kek {
    /// A provider using an open token.
    pub fn new(token: Token) -> Self {
        Pkcs11Kek { token }
    }

    /// Opens the configured token (reading the PIN from its source) and returns a provider
    /// using it.
    pub fn from_config(config: &Pkcs11Config) -> Result<Self, VaultError> {
        Ok(Self::new(Token::open(config)?))
    }

    /// The token.
    pub fn token(&self) -> &Token {
        &self.token
    }
}

impl KekProvider for Pkcs11Kek {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn create(&self) -> Result<(Box<dyn Kek>, KekParams), VaultError> {
        let key_id = random_id()?;
        let key_label = format!("concord-vault-kek-{}", hex::encode(key_id));
        let _guard = lock(&self.token.inner.generating);
        self.token.check_label_free(&key_label)?;
        self.token
            .with_session(|s| {
                s.generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::AES),
                        Attribute::ValueLen(32.into()),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Wrap(false),
                        Attribute::Unwrap(false),
                        Attribute::Derive(false),
                        Attribute::Label(key_label.as_bytes().to_vec()),
                        Attribute::Id(key_id.to_vec()),
                    ],
                )
            })?
            .map_err(|e| {
                ck(
                    format!(
                        "generate an AES-256 key-encryption key on the token {:?}",
                        self.token.label()
                    ),
                    &e,
                )
            })?;
        let params = KekParams::Pkcs11 {
            token_label: self.token.label().to_string(),
            key_id,
            key_label: key_label.clone(),
        };
        let kek = self.open(&params)?;
        Ok((kek, params))
    }

    fn open(&self, params: &KekParams) -> Result<Box<dyn Kek>, VaultError> {
        let KekParams::Pkcs11 {
            token_label,
            key_id,
            key_label,
        } = params
        else {
            return Err(VaultError::KekMismatch {
                expected: KIND,
                found: params.kind(),
            });
        };
        if token_label != self.token.label() {
            return Err(VaultError::TokenMismatch {
                expected: self.token.label().to_string(),
                found: token_label.clone(),
            });
        }
        let what = || {
            format!(
                "AES-256 key-encryption key with id {} and label {key_label:?}",
                hex::encode(key_id)
            )
        };
        let info = self
            .token
            .with_session(|s| {
                match Token::key_handle(s, ObjectClass::SECRET_KEY, key_id, key_label)? {
                    Some(h) => key_info(s, h),
                    None => Ok(None),
                }
            })?
            .map_err(|e| ck(format!("look up the {}", what()), &e))?;
        let Some(info) = info.filter(|i| i.kind == HsmKeyKind::Aes256) else {
            return Err(VaultError::HsmKeyNotFound {
                token: token_label.clone(),
                what: what(),
            });
        };
        if !info.sensitive || info.extractable {
            return Err(VaultError::Pkcs11 {
                action: format!("use the {}", what()),
                reason: "the key is readable outside the token (not sensitive, or extractable)"
                    .into(),
            });
        }
        Ok(Box::new(HsmKek {
            token: self.token.clone(),
            key_id: *key_id,
            key_label: key_label.clone(),
        }))
    }
}

/// An AES-256 key inside a token. Holds no key material, only where to find the key.
struct HsmKek {
    token: Token,
    key_id: [u8; 16],
    key_label: String,
}

impl fmt::Debug for HsmKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Kek")
            .field("token", &self.token.label())
            .field("key_label", &self.key_label)
            .field("key", &"<redacted: inside the token>")
            .finish()
    }
}

impl HsmKek {
    fn missing(&self) -> VaultError {
        VaultError::HsmKeyNotFound {
            token: self.token.label().to_string(),
            what: format!(
                "AES-256 key-encryption key with id {} and label {:?}",
                hex::encode(self.key_id),
                self.key_label
            ),
        }
    }
}

impl Kek for HsmKek {
    fn wrap(&self, dek: &[u8; 32], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
        let mut iv = [0u8; GCM_IV_LEN];
        fill_random(&mut iv)?;
        let action = || format!("wrap a data key with {:?}", self.key_label);
        let ct = self
            .token
            .with_session(|s| {
                let Some(h) =
                    Token::key_handle(s, ObjectClass::SECRET_KEY, &self.key_id, &self.key_label)?
                else {
                    return Ok(None);
                };
                let mut iv_param = iv;
                let params = GcmParams::new(&mut iv_param, aad, ((GCM_TAG_LEN * 8) as u64).into())?;
                s.encrypt(&Mechanism::AesGcm(params), h, dek).map(Some)
            })?
            .map_err(|e| ck(action(), &e))?
            .ok_or_else(|| self.missing())?;
        if ct.len() != 32 + GCM_TAG_LEN {
            return Err(VaultError::Pkcs11 {
                action: action(),
                reason: format!("the token returned {} bytes, expected 48", ct.len()),
            });
        }
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        if wrapped.len() != WRAPPED_LEN {
            return Err(VaultError::WrongHsmKey);
        }
        let (iv, ct) = wrapped.split_at(GCM_IV_LEN);
        let mut iv_param = [0u8; GCM_IV_LEN];
        iv_param.copy_from_slice(iv);
        let plain = self
            .token
            .with_session(|s| {
                let Some(h) =
                    Token::key_handle(s, ObjectClass::SECRET_KEY, &self.key_id, &self.key_label)?
                else {
                    return Ok(None);
                };
                let params = GcmParams::new(&mut iv_param, aad, ((GCM_TAG_LEN * 8) as u64).into())?;
                s.decrypt(&Mechanism::AesGcm(params), h, ct)
                    .map(|p| Some(Zeroizing::new(p)))
            })?
            .map_err(|e| match rv_of(&e) {
                // An authentication failure: SoftHSM answers CKR_GENERAL_ERROR, the
                // specification CKR_ENCRYPTED_DATA_INVALID.
                Some(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::GeneralError
                    | RvError::FunctionFailed,
                ) => VaultError::WrongHsmKey,
                _ => ck(format!("unwrap a data key with {:?}", self.key_label), &e),
            })?
            .ok_or_else(|| self.missing())?;
        if plain.len() != 32 {
            return Err(VaultError::WrongHsmKey);
        }
        let mut dek = Zeroizing::new([0u8; 32]);
        dek.copy_from_slice(&plain);
        Ok(dek)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn rv_names() {
        assert_eq!(rv_name(&RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            rv_name(&RvError::CryptokiAlreadyInitialized),
            "CKR_CRYPTOKI_ALREADY_INITIALIZED"
        );
        assert_eq!(
            describe(&CkError::Pkcs11(RvError::GeneralError, Function::Decrypt)),
            "C_Decrypt returned CKR_GENERAL_ERROR"
        );
    }

    #[test]
    fn ec_points_wrapped_or_raw() {
        let raw65: Vec<u8> = std::iter::once(4).chain([7u8; 64]).collect();
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&raw65);
        let ok65 = |b: &[u8]| b.len() == 65;
        assert_eq!(unwrap_ec_point(&wrapped, ok65), &raw65[..]);
        assert_eq!(unwrap_ec_point(&raw65, ok65), &raw65[..]);
        // A raw point whose second byte happens to look like a length.
        let mut tricky = raw65.clone();
        tricky[1] = 63;
        assert_eq!(unwrap_ec_point(&tricky, ok65), &tricky[..]);
        let ed = [9u8; 32];
        let mut wrapped_ed = vec![0x04, 32];
        wrapped_ed.extend_from_slice(&ed);
        let ok32 = |b: &[u8]| b.len() == 32;
        assert_eq!(unwrap_ec_point(&wrapped_ed, ok32), &ed[..]);
        assert_eq!(unwrap_ec_point(&ed, ok32), &ed[..]);
        let long: Vec<u8> = [0x04, 0x81, 0x80].into_iter().chain([1u8; 128]).collect();
        assert_eq!(unwrap_ec_point(&long, |b| b.len() == 128).len(), 128);
    }

    #[test]
    fn params_serialize_with_kind_tag() {
        let p = KekParams::Pkcs11 {
            token_label: "concord".into(),
            key_id: [0xab; 16],
            key_label: "concord-vault-kek-ab".into(),
        };
        let json = serde_json::to_string(&p).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"kind":"pkcs11","token_label":"concord","key_id":"abababababababababababababababab","key_label":"concord-vault-kek-ab"}"#
        );
        assert_eq!(serde_json::from_str::<KekParams>(&json).ok(), Some(p));
        assert!(
            serde_json::from_str::<KekParams>(&json.replace("\"key_label\"", "\"x\"")).is_err()
        );
        assert!(serde_json::from_str::<KekParams>(&json.replace("abab\"", "ab\"")).is_err());
    }

    #[test]
    fn config_deserializes_without_a_pin_value() {
        let c: Pkcs11Config = serde_json::from_str(
            r#"{"library": "/usr/lib/softhsm/libsofthsm2.so", "token": {"label": "concord"}, "pin": {"env": "CONCORD_HSM_PIN"}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.token, TokenSelector::Label("concord".into()));
        assert_eq!(c.pin, PinSource::Env("CONCORD_HSM_PIN".into()));
        let c: Pkcs11Config = serde_json::from_str(
            r#"{"library": "/x.so", "token": {"slot": 7}, "pin": {"file": "/etc/pin"}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.token, TokenSelector::Slot(7));
        for bad in [
            r#"{"library": "/x.so", "token": {"label": "a"}, "pin": {"value": "1234"}}"#,
            r#"{"library": "/x.so", "token": {"label": "a"}, "pin": "1234"}"#,
            r#"{"library": "/x.so", "token": {"label": "a"}, "pin": {"env": "P"}, "so_pin": "1"}"#,
        ] {
            assert!(serde_json::from_str::<Pkcs11Config>(bad).is_err(), "{bad}");
        }
    }
}
