//! Signing with this module's own key, for a native multisig wallet (a P2WSH on a UTXO
//! chain, a Safe on an EVM chain): only under an approval this module gave, once a
//! certificate of approvals meets the intent's rule among the wallet's members (as the
//! policy names them), and only the digests it computes itself from what it approved. The chain enforces the wallet's threshold; the certificate enforces
//! the intent's rule (a coordinator cannot collect `t` signatures when the rule asked for
//! every member).

use concord_chain::utxo::sighashes;
use concord_wire::authority::tagged_hash;
use concord_wire::payload::SigningPayload;
use concord_wire::rpc::Approval;

use crate::Error;
use crate::state::State;

/// Domain tag of the record that binds an approval once its multisig signatures left.
const MULTISIG_SIGN_TAG: &str = "concord/multisig-sign/v1";

/// This module's signatures of what it approved under `job`, given the certificate: for a
/// UTXO spend, each input's (64 bytes `r || s`, low S, in input order); for a Safe
/// transfer, the SafeTx hash's (65 bytes `r || s || recovery id`). The approval is bound
/// from then on (never released). Asked again, the same signatures (deterministic, RFC
/// 6979).
pub(crate) fn sign(
    state: &State,
    job: &str,
    certificate: &[Approval],
) -> Result<Vec<Vec<u8>>, Error> {
    let approval = state
        .approval(job)?
        .ok_or_else(|| Error::Refused(format!("this module holds no approval of job {job}")))?;
    if approval.void {
        return Err(Error::Refused(format!(
            "the approval of job {job} was released: this module never signs under it"
        )));
    }
    crate::daemon::check_policy_unchanged(state, job, &approval)?;
    let payload = SigningPayload::from_canonical(&approval.payload)
        .map_err(|e| Error::Refused(format!("the approved payload: {e}")))?;
    if payload.digest() != approval.digest {
        return Err(Error::Refused(format!(
            "the payload stored for job {job} is not the one approved"
        )));
    }
    if !matches!(
        payload,
        SigningPayload::UtxoTransfer { .. } | SigningPayload::SafeTransfer { .. }
    ) {
        return Err(Error::Refused(format!(
            "job {job} is not a spend from a multisig wallet"
        )));
    }
    let policy = state
        .policy()
        .ok_or_else(|| Error::Refused("this module has no policy".into()))?;
    let def = policy
        .policy()
        .wallet(&approval.wallet_id)
        .and_then(|r| r.multisig.clone())
        .ok_or_else(|| {
            Error::Refused(format!(
                "wallet {} is not a multisig wallet of the policy in force",
                approval.wallet_id
            ))
        })?;
    let own = state.multisig_public_key();
    if !def.has_key(&own) {
        return Err(Error::Refused(format!(
            "this module's own key is not one of multisig wallet {}'s keys",
            approval.wallet_id
        )));
    }
    def.validate().map_err(|e| Error::Refused(e.to_string()))?;
    let members = def.certificate_members();
    crate::daemon::certified_approvers(
        job,
        &approval,
        usize::from(def.threshold),
        &members,
        certificate,
    )
    .map_err(|e| Error::Refused(format!("the certificate: {e}")))?;
    // What is signed, recomputed from what was approved.
    let digests: Vec<[u8; 32]> = match &payload {
        SigningPayload::SafeTransfer { .. } => vec![payload.digest()],
        _ => {
            let (_, script) = def.wallet().map_err(|e| Error::Refused(e.to_string()))?;
            let psbt = payload
                .psbt()
                .ok_or_else(|| Error::Refused("the approved PSBT does not parse".into()))?;
            sighashes(&psbt, &script).map_err(|e| Error::Refused(e.to_string()))?
        }
    };
    // Bound before anything leaves: a release of this approval is refused from now on.
    let record = tagged_hash(MULTISIG_SIGN_TAG, job.as_bytes());
    // Recorded in the audit trail by the daemon once the signatures are made.
    state.sign_under_as(&record, job, None)?;
    digests
        .iter()
        .map(|d| match &payload {
            SigningPayload::SafeTransfer { .. } => state
                .sign_recoverable_with_multisig_key(d)
                .map(|s| s.to_vec()),
            _ => state.sign_with_multisig_key(d).map(|s| s.to_vec()),
        })
        .collect()
}
