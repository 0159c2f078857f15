//! Authority: who may ask a module for what.
//!
//! A module trusts nothing the coordinator says about authority. It pins a set of *admin*
//! keys and a quorum when it is created ([`AdminSet`]); everything else it accepts derives
//! from a [`Policy`] signed by that quorum ([`SignedPolicy`]): the principals (requester keys
//! and their [`Role`]s), what each wallet may do, the address book, limits and when human
//! approvers must co-sign. Every request is an [`Intent`] signed by a principal
//! ([`SignedIntent`]); every approval a module gives is an [`ApprovalStatement`] naming the
//! policy hash it applied; a module joins a signing run only when handed a certificate of
//! approvals that satisfies the [`AgreementRule`] ([`check_certificate`]).
//!
//! **Encoding and signatures.** Each signed object has one canonical encoding (compact JSON,
//! fields in declaration order, produced by [`canonical`] from the typed value, so two
//! parties that hold the same value hash the same bytes) and is signed with Ed25519 over a
//! domain-separated hash, [`tagged_hash`]`(tag, canonical bytes)`, with its own tag
//! ([`INTENT_TAG`], [`POLICY_TAG`], [`APPROVAL_TAG`]): a signature for one kind of object can
//! never be replayed as another, nor as a TLS handshake, a sealed MPC message or a sealing-key
//! binding (which carry their own prefixes).

mod approval;
mod intent;
mod policy;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::{IdentityKey, PublicIdentity};

pub use approval::{
    APPROVAL_TAG, ApprovalStatement, CertificateCheck, check_certificate, input_session,
    sign_session,
};
pub use intent::{
    Action, AddressRef, INTENT_TAG, Intent, MAX_INTENT_LIFETIME_SECS, SignedIntent, VerifiedIntent,
    intent_id_is_valid, new_intent_id,
};
pub use policy::{
    AddressEntry, AddressTarget, AdminSet, CoinLimit, GroupRule, HELD_CREDENTIAL_TAG,
    HeldCredential, HeldMember, MULTISIG_WALLET_TAG, MultisigDef, MultisigMember, POLICY_TAG,
    Policy, Principal, SignedPolicy, WalletPurpose, WalletRule, check_decimal,
};

/// Domain tag of raw messages a wallet signs where a policy allows it: what is signed is
/// [`tagged_message`]`(message)` (or its SHA-256 for ECDSA), never the caller's bytes alone,
/// so no message can be a valid signature over a chain transaction's sighash.
pub const MESSAGE_TAG: &str = "concord/message/v1";

/// `tag || 0x00 || message`: the bytes a FROST wallet signs for a raw message.
pub fn tagged_message(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MESSAGE_TAG.len() + 1 + message.len());
    out.extend_from_slice(MESSAGE_TAG.as_bytes());
    out.push(0);
    out.extend_from_slice(message);
    out
}

/// SHA-256 of `tag || 0x00 || bytes`: what an Ed25519 authority signature signs.
pub fn tagged_hash(tag: &str, bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag.as_bytes());
    h.update([0u8]);
    h.update(bytes);
    h.finalize().into()
}

/// The one canonical encoder of signed objects: compact JSON with fields in declaration order
/// (maps are `BTreeMap`s or lists, so the order is fixed by the value).
pub fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain types (strings, integers, lists, no maps with non-string
    // keys) to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Why an authority object is refused. Each names what is wrong, with the data to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// The object is malformed or breaks its own rules.
    #[error("{0}")]
    Malformed(String),
    /// A signature does not verify.
    #[error("the signature by key {fingerprint} does not verify")]
    BadSignature {
        /// Fingerprint of the key.
        fingerprint: String,
    },
    /// A signer is not a principal of the policy.
    #[error("key {fingerprint} is not a principal of policy v{policy_version}")]
    UnknownSigner {
        /// Fingerprint of the key.
        fingerprint: String,
        /// The policy version checked against.
        policy_version: u64,
    },
    /// A signer lacks the role the request needs.
    #[error("principal {principal} does not have the role '{role}' this needs")]
    MissingRole {
        /// The principal's name.
        principal: String,
        /// The role needed.
        role: Role,
    },
    /// The same key signed twice.
    #[error("key {fingerprint} signed more than once")]
    DuplicateSigner {
        /// Fingerprint of the key.
        fingerprint: String,
    },
    /// The intent has expired (or is not valid yet).
    #[error("intent {id} {why}")]
    Expired {
        /// The intent id.
        id: String,
        /// Expired when, or valid from when, in words.
        why: String,
    },
    /// Fewer signatures than the quorum.
    #[error("{have} valid signature(s) from {what}, {need} needed")]
    Quorum {
        /// Which set of signers.
        what: String,
        /// Valid signatures found.
        have: usize,
        /// Needed.
        need: usize,
    },
    /// A policy does not follow the one in force.
    #[error("{0}")]
    OutOfOrder(String),
    /// An approval certificate does not satisfy the rule.
    #[error("{0}")]
    Certificate(String),
}

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May request transfers and message signatures (as the intent's requester).
    Trader,
    /// May co-sign another principal's intent.
    Approver,
    /// May import an existing key.
    Importer,
    /// May sign policy changes.
    Admin,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Trader => "trader",
            Role::Approver => "approver",
            Role::Importer => "importer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AuthorityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "trader" => Ok(Role::Trader),
            "approver" => Ok(Role::Approver),
            "importer" => Ok(Role::Importer),
            "admin" => Ok(Role::Admin),
            _ => Err(AuthorityError::Malformed(format!(
                "unknown role {s:?}: expected trader, approver, importer or admin"
            ))),
        }
    }
}

/// When enough modules agree for a transaction to be signed. Each module enforces it itself
/// from the certificate of approvals it is handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AgreementRule {
    /// Every member of the signer group approved (default). A module cannot tell a member
    /// that refused from one whose refusal the coordinator hid, so "every member that
    /// answered" is not checkable: `all` means every member, and a member that is down makes
    /// `all` unavailable (use `threshold` for availability).
    #[default]
    All,
    /// `t` matching approvals suffice, and at least a majority of the group; dissenters are
    /// recorded.
    Threshold,
}

impl AgreementRule {
    /// How many distinct members' approvals the rule needs in a `t`-of-`n` group. Under
    /// `threshold` that is `t`, but never less than `n - t + 1`: then every certificate
    /// includes at least one member of any `t` members that signed before, and a member that
    /// signed under an approval keeps its binding for good (intent, nonce, order, spend) —
    /// whereas an approval never signed under may lapse or be released. So a coordinator
    /// cannot have one intent, nonce or exchange order signed twice by two sets of members:
    /// with `t` alone (or a bare majority) a 2-of-5 group could sign one nonce with {1, 2}
    /// and, once 3's unsigned approval was released, again with {3, 4, 5}.
    pub fn needed(self, t: usize, n: usize) -> usize {
        match self {
            AgreementRule::All => n,
            AgreementRule::Threshold => t.max((n + 1).saturating_sub(t)),
        }
    }

    /// The rule's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgreementRule::All => "all",
            AgreementRule::Threshold => "threshold",
        }
    }
}

impl fmt::Display for AgreementRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AgreementRule {
    type Err = AuthorityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(AgreementRule::All),
            "threshold" => Ok(AgreementRule::Threshold),
            other => Err(AuthorityError::Malformed(format!(
                "unknown agreement rule '{other}': expected 'all' or 'threshold'"
            ))),
        }
    }
}

/// One Ed25519 signature over an authority object, with the key that made it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Endorsement {
    /// The signer's public key.
    pub key: PublicIdentity,
    /// The signature, hex.
    #[serde(with = "hex::serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-fA-F]{128}$"))]
    pub signature: [u8; 64],
}

impl fmt::Debug for Endorsement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endorsement({})", self.key.fingerprint())
    }
}

impl Endorsement {
    /// Signs `tagged_hash(tag, bytes)` with `key`.
    pub fn sign(key: &IdentityKey, tag: &str, bytes: &[u8]) -> Endorsement {
        Endorsement {
            key: key.public(),
            signature: key.sign(&tagged_hash(tag, bytes)),
        }
    }

    /// Checks the signature over `tagged_hash(tag, bytes)`.
    pub fn verify(&self, tag: &str, bytes: &[u8]) -> Result<(), AuthorityError> {
        self.key
            .verify(&tagged_hash(tag, bytes), &self.signature)
            .map_err(|_| AuthorityError::BadSignature {
                fingerprint: self.key.fingerprint(),
            })
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

mod hex_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s.trim_start_matches("0x")).map_err(serde::de::Error::custom)
    }
}

mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
            Ok(out)
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests;
