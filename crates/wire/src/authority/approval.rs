//! Approvals and certificates: what a module signs when it approves a digest, and the check
//! every signer runs on the set of approvals before it joins a signing run.

use std::collections::{BTreeMap, BTreeSet};

use concord_types::{SessionId, WalletId};
use serde::{Deserialize, Serialize};

use super::policy::short_hash;
use super::{AgreementRule, AuthorityError, canonical, tagged_hash};
use crate::WireError;
use crate::identity::{IdentityKey, IdentitySigner, PublicIdentity};

/// Domain tag of approval signatures.
pub const APPROVAL_TAG: &str = "concord/approval/v2";

/// What a module states, and signs with its identity key, when it approves a sign job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalStatement {
    /// Statement format version (2).
    pub version: u8,
    /// The job approved.
    pub job_id: String,
    /// The approving module.
    pub module_id: String,
    /// The wallet that will sign.
    pub wallet_id: WalletId,
    /// The digest the module computed from the payload itself.
    #[serde(with = "hex::serde")]
    pub digest: [u8; 32],
    /// The hash of the policy the module applied.
    #[serde(with = "hex::serde")]
    pub policy: [u8; 32],
    /// The intent approved.
    pub intent: String,
    /// The agreement rule the intent asks for.
    pub rule: AgreementRule,
    /// Until when the approval may be used to sign, seconds since the Unix epoch.
    pub expires_at: u64,
    /// What the module checked, in words.
    pub checks: Vec<String>,
}

impl ApprovalStatement {
    /// The canonical bytes that travel and are signed (under [`APPROVAL_TAG`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical(self)
    }

    /// Parses a statement, accepting only its canonical encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<ApprovalStatement, AuthorityError> {
        let st: ApprovalStatement = serde_json::from_slice(bytes).map_err(|e| {
            AuthorityError::Malformed(format!("the approval statement is unreadable: {e}"))
        })?;
        if st.version != 2 {
            return Err(AuthorityError::Malformed(format!(
                "approval statement version {} is not 2",
                st.version
            )));
        }
        if st.to_bytes() != bytes {
            return Err(AuthorityError::Malformed(
                "the approval statement is not in canonical form".into(),
            ));
        }
        Ok(st)
    }

    /// Signs the statement's bytes with a module's identity key.
    pub fn sign(bytes: &[u8], identity: &IdentityKey) -> [u8; 64] {
        identity.sign(&tagged_hash(APPROVAL_TAG, bytes))
    }

    /// [`ApprovalStatement::sign`] through any identity signer (a key in an HSM can fail).
    pub fn try_sign(bytes: &[u8], identity: &dyn IdentitySigner) -> Result<[u8; 64], WireError> {
        identity.try_sign(&tagged_hash(APPROVAL_TAG, bytes))
    }

    /// Checks a module's signature over the statement's bytes.
    pub fn verify(
        bytes: &[u8],
        signature: &[u8],
        identity: &PublicIdentity,
    ) -> Result<(), AuthorityError> {
        identity
            .verify(&tagged_hash(APPROVAL_TAG, bytes), signature)
            .map_err(|_| AuthorityError::BadSignature {
                fingerprint: identity.fingerprint(),
            })
    }
}

/// What a certificate must prove, from the checking module's own records.
#[derive(Debug, Clone)]
pub struct CertificateCheck<'a> {
    /// The job approved.
    pub job_id: &'a str,
    /// The wallet that signs.
    pub wallet: WalletId,
    /// The digest this module approved.
    pub digest: [u8; 32],
    /// The policy hash this module applied.
    pub policy: [u8; 32],
    /// The rule the intent asks for.
    pub rule: AgreementRule,
    /// The group's threshold.
    pub threshold: usize,
    /// Every group member, in index order: module id and pinned identity key.
    pub members: &'a [(String, PublicIdentity)],
    /// The time now, seconds since the Unix epoch.
    pub now: u64,
}

/// Checks a certificate (approvals as (statement, signature) pairs): each is signed by the
/// pinned identity of the group member it names, for this job, wallet, digest, policy and
/// rule, and unexpired; together they come from enough distinct members for the rule.
/// Returns the approving members' group indices.
pub fn check_certificate(
    check: &CertificateCheck<'_>,
    approvals: &[(Vec<u8>, Vec<u8>)],
) -> Result<BTreeSet<u16>, AuthorityError> {
    let bad = |m: String| AuthorityError::Certificate(m);
    let mut approvers: BTreeMap<u16, String> = BTreeMap::new();
    for (statement, signature) in approvals {
        let st = ApprovalStatement::from_bytes(statement)?;
        let index = check
            .members
            .iter()
            .position(|(id, _)| *id == st.module_id)
            .ok_or_else(|| {
                bad(format!(
                    "the certificate holds an approval by {:?}, which is not a member of the group",
                    st.module_id
                ))
            })?;
        let (_, identity) = &check.members[index];
        ApprovalStatement::verify(statement, signature, identity).map_err(|_| {
            bad(format!(
                "the approval attributed to {} is not signed by its pinned identity key {}",
                st.module_id,
                identity.fingerprint()
            ))
        })?;
        if st.job_id != check.job_id || st.wallet_id != check.wallet {
            return Err(bad(format!(
                "{}'s approval is for job {} of wallet {}, not job {} of wallet {}",
                st.module_id, st.job_id, st.wallet_id, check.job_id, check.wallet
            )));
        }
        if st.digest != check.digest {
            return Err(bad(format!(
                "{}'s approval is for digest {}, and this module approved {}",
                st.module_id,
                hex::encode(st.digest),
                hex::encode(check.digest)
            )));
        }
        if st.policy != check.policy {
            return Err(bad(format!(
                "{}'s approval applied policy {}, and this module applied {}",
                st.module_id,
                short_hash(&st.policy),
                short_hash(&check.policy)
            )));
        }
        if st.rule != check.rule {
            return Err(bad(format!(
                "{}'s approval names rule '{}', the intent asks for '{}'",
                st.module_id, st.rule, check.rule
            )));
        }
        if st.expires_at <= check.now {
            return Err(bad(format!(
                "{}'s approval expired {} s ago",
                st.module_id,
                check.now - st.expires_at
            )));
        }
        approvers.insert(index as u16, st.module_id);
    }
    let needed = check.rule.needed(check.threshold, check.members.len());
    if approvers.len() < needed {
        let names: Vec<&str> = approvers.values().map(String::as_str).collect();
        return Err(bad(format!(
            "rule '{}' needs approvals from {needed} member(s) of the {}-member group; the certificate holds {} ({})",
            check.rule,
            check.members.len(),
            approvers.len(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )));
    }
    Ok(approvers.into_keys().collect())
}

/// The session id of a signing run, derived from what it signs: the job, the attempt, the
/// signers and the digest. Modules recompute it, so a run's relays are bound to exactly those
/// signers and that digest, and a module that logs the sessions it ran never runs one twice.
pub fn sign_session(job_id: &str, attempt: u32, signers: &[u16], digest: &[u8; 32]) -> SessionId {
    let mut ctx = Vec::with_capacity(job_id.len() + 48 + signers.len() * 2);
    ctx.extend_from_slice(&(job_id.len() as u64).to_be_bytes());
    ctx.extend_from_slice(job_id.as_bytes());
    ctx.extend_from_slice(&attempt.to_be_bytes());
    ctx.extend_from_slice(&(signers.len() as u64).to_be_bytes());
    for s in signers {
        ctx.extend_from_slice(&s.to_be_bytes());
    }
    ctx.extend_from_slice(digest);
    SessionId::derive("sign", &ctx)
}

/// The session id of the signing run of input `input` of a UTXO spend: input 0's is
/// [`sign_session`]'s (one-run payloads sign input 0); another input's binds its index too,
/// so one session is one input at every signer.
pub fn input_session(
    job_id: &str,
    attempt: u32,
    signers: &[u16],
    digest: &[u8; 32],
    input: u32,
) -> SessionId {
    if input == 0 {
        return sign_session(job_id, attempt, signers, digest);
    }
    let base = sign_session(job_id, attempt, signers, digest);
    let mut ctx = base.0.to_vec();
    ctx.extend_from_slice(&input.to_be_bytes());
    SessionId::derive("sign-input", &ctx)
}
