//! Signed intents: every deposit, withdrawal, import and message-signing request, signed by
//! the principal who asks (and, where the policy wants it, co-signed by approvers).

use concord_types::{Scheme, WalletId};
use serde::{Deserialize, Serialize};

use super::{
    AgreementRule, AuthorityError, Endorsement, Role, canonical, hex_vec, policy::Policy,
    tagged_hash,
};
use crate::identity::IdentityKey;

/// Domain tag of intent signatures.
pub const INTENT_TAG: &str = "concord/intent/v1";

/// Longest an intent may live, seconds.
pub const MAX_INTENT_LIFETIME_SECS: u64 = 24 * 3600;

/// How far in the future an intent's creation time may be (clock skew), seconds.
const MAX_SKEW_SECS: u64 = 300;

/// Where a withdrawal goes: an address-book entry, by the wallet it points at or by label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AddressRef {
    /// The address-book entry of a wallet of this system.
    Wallet(WalletId),
    /// The address-book entry with this label.
    Label(String),
}

impl std::fmt::Display for AddressRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressRef::Wallet(w) => write!(f, "wallet {w}"),
            AddressRef::Label(l) => write!(f, "address-book entry {l:?}"),
        }
    }
}

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Deposit from a wallet to an exchange connection's deposit address.
    Deposit {
        /// The sending wallet.
        wallet: WalletId,
        /// The exchange connection (as modules name it).
        exchange: String,
        /// Coin code.
        coin: String,
        /// Network code.
        network: String,
        /// Amount in coin units (decimal string).
        #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]+(\\.[0-9]+)?$"))]
        amount: String,
        /// Agreement rule.
        rule: AgreementRule,
    },
    /// Withdraw from an exchange connection to an address-book destination.
    Withdraw {
        /// The exchange connection.
        exchange: String,
        /// Coin code.
        coin: String,
        /// Network code.
        network: String,
        /// Amount in coin units (decimal string).
        #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]+(\\.[0-9]+)?$"))]
        amount: String,
        /// The destination.
        to: AddressRef,
        /// Agreement rule.
        rule: AgreementRule,
    },
    /// Sign a raw message with a wallet (domain-separated; only where the policy allows it).
    SignMessage {
        /// The wallet.
        wallet: WalletId,
        /// The message, hex.
        #[serde(with = "hex_vec")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^(0x)?([0-9a-fA-F]{2})*$"))]
        message: Vec<u8>,
        /// Agreement rule.
        rule: AgreementRule,
    },
    /// Import an existing key into a signer group.
    Import {
        /// The signer group.
        group: String,
        /// The scheme.
        scheme: Scheme,
        /// The key's public key, hex, as the scheme encodes it.
        #[serde(with = "hex_vec")]
        #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^(0x)?([0-9a-fA-F]{2})*$"))]
        public_key: Vec<u8>,
        /// The importing tool's one-time key, which sealed the shards: modules open only
        /// shards sealed by it, so the coordinator cannot substitute shards of its own making.
        importer: crate::identity::PublicIdentity,
    },
}

impl Action {
    /// The role the requester needs.
    pub fn required_role(&self) -> Role {
        match self {
            Action::Import { .. } => Role::Importer,
            _ => Role::Trader,
        }
    }

    /// The action's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Deposit { .. } => "deposit",
            Action::Withdraw { .. } => "withdraw",
            Action::SignMessage { .. } => "sign_message",
            Action::Import { .. } => "import",
        }
    }

    /// The agreement rule the requester chose (imports have none).
    pub fn rule(&self) -> Option<AgreementRule> {
        match self {
            Action::Deposit { rule, .. }
            | Action::Withdraw { rule, .. }
            | Action::SignMessage { rule, .. } => Some(*rule),
            Action::Import { .. } => None,
        }
    }
}

/// A request, as its requester signs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// Format version (1).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1))]
    pub version: u8,
    /// Unique id (1 to 64 letters, digits, `-`, `_`): a module never accepts it twice, and a
    /// withdrawal's exchange order id is derived from it.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    pub id: String,
    /// When it was made, seconds since the Unix epoch.
    pub created_at: u64,
    /// When it stops being valid, seconds since the Unix epoch.
    pub expires_at: u64,
    /// What is asked.
    pub action: Action,
}

/// A fresh random intent id (32 hex digits).
pub fn new_intent_id() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// Whether `id` is a valid intent id.
pub fn intent_id_is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Intent {
    /// A new intent valid for `lifetime_secs` from now.
    pub fn new(action: Action, lifetime_secs: u64) -> Intent {
        let now = super::unix_now();
        Intent {
            version: 1,
            id: new_intent_id(),
            created_at: now,
            expires_at: now + lifetime_secs.min(MAX_INTENT_LIFETIME_SECS),
            action,
        }
    }

    /// The canonical encoding that is signed.
    pub fn to_canonical(&self) -> Vec<u8> {
        canonical(self)
    }

    /// The intent's hash.
    pub fn hash(&self) -> [u8; 32] {
        tagged_hash(INTENT_TAG, &self.to_canonical())
    }
}

/// An intent with its signatures: the requester's first, then approvers' co-signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignedIntent {
    /// The intent.
    pub intent: Intent,
    /// Signatures over its canonical encoding; the first is the requester's.
    pub signatures: Vec<Endorsement>,
}

/// An intent whose signatures verified against a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIntent {
    /// The intent.
    pub intent: Intent,
    /// The requester's principal name.
    pub requester: String,
    /// The approvers who co-signed, by principal name.
    pub cosigners: Vec<String>,
}

impl SignedIntent {
    /// Signs `intent` as its requester.
    pub fn new(intent: Intent, requester: &IdentityKey) -> SignedIntent {
        let sig = Endorsement::sign(requester, INTENT_TAG, &intent.to_canonical());
        SignedIntent {
            intent,
            signatures: vec![sig],
        }
    }

    /// Adds an approver's co-signature.
    pub fn cosign(&mut self, approver: &IdentityKey) {
        let e = Endorsement::sign(approver, INTENT_TAG, &self.intent.to_canonical());
        if !self.signatures.iter().any(|s| s.key == e.key) {
            self.signatures.push(e);
        }
    }

    /// The JSON this travels as.
    pub fn to_json(&self) -> Vec<u8> {
        canonical(self)
    }

    /// Parses the JSON this travels as.
    pub fn from_json(bytes: &[u8]) -> Result<SignedIntent, AuthorityError> {
        serde_json::from_slice(bytes)
            .map_err(|e| AuthorityError::Malformed(format!("the intent is unreadable: {e}")))
    }

    /// Checks the intent's form and lifetime at `now`, and its signatures against `policy`:
    /// every signature verifies, no key signs twice, every signer is a principal, the
    /// requester has the role the action needs and every co-signer is an approver. How many
    /// co-signatures are needed is the wallet's rule, checked by the caller.
    pub fn verify(&self, policy: &Policy, now: u64) -> Result<VerifiedIntent, AuthorityError> {
        let i = &self.intent;
        if i.version != 1 {
            return Err(AuthorityError::Malformed(format!(
                "intent format version {} is not 1",
                i.version
            )));
        }
        if !intent_id_is_valid(&i.id) {
            return Err(AuthorityError::Malformed(format!(
                "the intent id {:?} is not 1 to 64 letters, digits, '-' or '_'",
                i.id.chars().take(80).collect::<String>()
            )));
        }
        if i.expires_at <= i.created_at || i.expires_at - i.created_at > MAX_INTENT_LIFETIME_SECS {
            return Err(AuthorityError::Malformed(format!(
                "intent {} must expire after it is made and within {} h of it",
                i.id,
                MAX_INTENT_LIFETIME_SECS / 3600
            )));
        }
        if now >= i.expires_at {
            return Err(AuthorityError::Expired {
                id: i.id.clone(),
                why: format!("expired {} s ago", now - i.expires_at),
            });
        }
        if i.created_at > now + MAX_SKEW_SECS {
            return Err(AuthorityError::Expired {
                id: i.id.clone(),
                why: format!(
                    "is dated {} s in the future (clocks may differ by {MAX_SKEW_SECS} s at most)",
                    i.created_at - now
                ),
            });
        }
        self.check_action()?;
        let bytes = i.to_canonical();
        if self.signatures.is_empty() {
            return Err(AuthorityError::Malformed(format!(
                "intent {} carries no signature",
                i.id
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut names = Vec::with_capacity(self.signatures.len());
        for (n, s) in self.signatures.iter().enumerate() {
            if !seen.insert(s.key) {
                return Err(AuthorityError::DuplicateSigner {
                    fingerprint: s.key.fingerprint(),
                });
            }
            s.verify(INTENT_TAG, &bytes)?;
            let p = policy
                .principal(&s.key)
                .ok_or_else(|| AuthorityError::UnknownSigner {
                    fingerprint: s.key.fingerprint(),
                    policy_version: policy.version,
                })?;
            let role = if n == 0 {
                i.action.required_role()
            } else {
                Role::Approver
            };
            if !p.has(role) {
                return Err(AuthorityError::MissingRole {
                    principal: p.name.clone(),
                    role,
                });
            }
            names.push(p.name.clone());
        }
        let requester = names.remove(0);
        Ok(VerifiedIntent {
            intent: i.clone(),
            requester,
            cosigners: names,
        })
    }

    fn check_action(&self) -> Result<(), AuthorityError> {
        let bad = |m: String| Err(AuthorityError::Malformed(m));
        match &self.intent.action {
            Action::Deposit { amount, .. } | Action::Withdraw { amount, .. } => {
                super::check_decimal("amount", amount)?;
                if amount.bytes().all(|b| b == b'0' || b == b'.') {
                    return bad("an amount of zero is refused".into());
                }
                Ok(())
            }
            Action::SignMessage { message, .. }
                if message.len() > crate::payload::MAX_MESSAGE_LEN =>
            {
                bad(format!(
                    "a message of {} bytes exceeds the {}-byte limit",
                    message.len(),
                    crate::payload::MAX_MESSAGE_LEN
                ))
            }
            Action::Import { public_key, .. } if public_key.is_empty() || public_key.len() > 65 => {
                bad("the imported key's public key is empty or too long".into())
            }
            _ => Ok(()),
        }
    }
}
