//! Using an exchange withdraw key this module holds whole (the policy's *held credential*:
//! Kraken's HMAC secret, which no threshold scheme can shard). The group decides as for any
//! withdraw request: every member checks the request against its own policy, address book
//! and its own read key's view of the exchange, and signs an approval of its digest. This
//! module, the holder, then sends it only:
//!
//! - under an approval it gave itself for that job (so its own checks passed too), never
//!   released, under the policy in force;
//! - when it is the credential's holder in that policy, for that exchange and API key;
//! - with a certificate of the credential's threshold of members' approvals of the same
//!   digest, under the same policy;
//! - once per transfer: its ledger binds the transfer to the approved digest before the
//!   request leaves, and a request whose answer was lost is never sent again. Kraken has no
//!   client order id to find it by: asked again, the holder looks in `WithdrawStatus` for a
//!   withdrawal of the same asset, key, amount (with its fee) and address recorded between
//!   the send and the client's giving up (± [`CLOCK_SLACK_S`]) whose reference id no other
//!   ledger entry claims, and takes it only when exactly one matches and no other request of
//!   the same withdrawal was lost at about the same time.
//!
//! What this does not stop: a compromised holder has the secret and can withdraw alone, but
//! only to the withdrawal keys registered and verified on the Kraken account.

use concord_exchange::ExchangeError;
use concord_exchange::kraken::WithdrawForm;
use concord_wire::authority::tagged_hash;
use concord_wire::payload::SigningPayload;
use concord_wire::rpc::{Approval, AuditRef};

use crate::Error;
use crate::checks::Outside;
use crate::state::{HeldSend, State};

/// Domain tag of the record that binds an approval once its request left.
const HELD_SEND_TAG: &str = "concord/held-send/v1";

/// How far Kraken's clock may be from this module's when a lost answer is looked up.
pub(crate) const CLOCK_SLACK_S: u64 = 30;

/// The time window, Unix seconds, in which Kraken recorded a request that left this module
/// at `sent_at`: from then (less the clock slack) until the client gave up waiting (plus the
/// slack).
fn lookup_window(sent_at: u64) -> (u64, u64) {
    let waited = concord_exchange::kraken::DEFAULT_TIMEOUT.as_secs();
    (
        sent_at.saturating_sub(CLOCK_SLACK_S),
        sent_at.saturating_add(waited + CLOCK_SLACK_S),
    )
}

/// One held-credential send at a time in this process: the ledger's read-then-write for a
/// transfer is never interleaved.
static SENDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Why nothing was sent, or why the outcome is unknown.
pub(crate) struct HeldError {
    pub(crate) error: Error,
    /// The request left and the exchange's answer was lost: it may have been taken.
    pub(crate) outcome_unknown: bool,
}

impl From<Error> for HeldError {
    fn from(error: Error) -> Self {
        HeldError {
            error,
            outcome_unknown: false,
        }
    }
}

fn unknown(message: String) -> HeldError {
    HeldError {
        error: Error::Refused(message),
        outcome_unknown: true,
    }
}

/// Sends the withdraw request this module approved under `job` with the exchange key it
/// holds, given the certificate; returns the exchange's withdrawal id and the audit entry
/// that recorded the request leaving. Asked again for the same transfer and request, the
/// same id (and no entry), without sending anything.
pub(crate) async fn send(
    state: &State,
    outside: &Outside,
    job: &str,
    certificate: &[Approval],
) -> Result<(String, Option<AuditRef>), HeldError> {
    let _one = SENDING.lock().await;
    let approval = state
        .approval(job)?
        .ok_or_else(|| Error::Refused(format!("this module holds no approval of job {job}")))?;
    if approval.void {
        return Err(Error::Refused(format!(
            "the approval of job {job} was released: this module never sends under it"
        ))
        .into());
    }
    crate::daemon::check_policy_unchanged(state, job, &approval)?;
    let payload = SigningPayload::from_canonical(&approval.payload)
        .map_err(|e| Error::Refused(format!("the approved payload: {e}")))?;
    if payload.digest() != approval.digest {
        return Err(Error::Refused(format!(
            "the payload stored for job {job} is not the one approved"
        ))
        .into());
    }
    let SigningPayload::ExchangeWithdrawal {
        transfer,
        exchange,
        api_key,
        request,
        body: None,
        ..
    } = &payload
    else {
        return Err(Error::Refused(format!(
            "job {job} is not a withdraw request of a held credential"
        ))
        .into());
    };
    let policy = state
        .policy()
        .ok_or_else(|| Error::Refused("this module has no policy".into()))?;
    let def = policy
        .policy()
        .wallet(&approval.wallet_id)
        .and_then(|r| r.held.clone())
        .ok_or_else(|| {
            Error::Refused(format!(
                "wallet {} is not a held credential of the policy in force",
                approval.wallet_id
            ))
        })?;
    def.validate().map_err(|e| Error::Refused(e.to_string()))?;
    if def.exchange != *exchange || def.api_key != *api_key {
        return Err(Error::Refused(format!(
            "the request goes to {exchange} under API key {api_key:?}, and the held credential is {}'s key {:?}",
            def.exchange, def.api_key
        )).into());
    }
    if def.holder_identity() != Some(state.identity().public()) {
        return Err(Error::Refused(format!(
            "this module is not the holder of exchange {exchange}'s withdraw key in the policy in force ({} is)",
            def.holder
        )).into());
    }
    let members = def.certificate_members();
    let approvers = crate::daemon::certified_approvers(
        job,
        &approval,
        usize::from(def.threshold),
        &members,
        certificate,
    )
    .map_err(|e| Error::Refused(format!("the certificate: {e}")))?;
    // The holder's own approval, unexpired, is among them: its limits counted this job
    // while it decided, and still count it (an approval that expired unsent no longer does,
    // so sending under it would let the rolling limits be spent twice).
    let own = members
        .iter()
        .position(|(id, _)| *id == def.holder)
        .and_then(|i| u16::try_from(i).ok());
    if !own.is_some_and(|i| approvers.contains(&i)) {
        return Err(Error::Refused(format!(
            "the certificate lacks this module's own live approval of job {job}: the holder sends only what it approves itself, before its approval expires"
        ))
        .into());
    }
    let form = WithdrawForm::parse(request)
        .map_err(|e| Error::Refused(format!("the approved request: {e}")))?;
    let client = outside
        .kraken_holder(exchange)
        .map_err(|e| Error::Refused(e.to_string()))?;
    if client.api_key() != def.api_key {
        return Err(Error::Refused(format!(
            "this module's withdraw key for {exchange} is {:?}, and the held credential names {:?}",
            client.api_key(),
            def.api_key
        ))
        .into());
    }
    let digest = hex::encode(approval.digest);
    match state.held_send(transfer)? {
        Some(s) if s.digest != digest => {
            return Err(Error::Refused(format!(
                "a request with other bytes was already sent for transfer {transfer} (job {}): Kraken has no client order id, so this module sends one request per transfer",
                s.job
            )).into());
        }
        Some(HeldSend {
            withdrawal_id: Some(id),
            ..
        }) => return Ok((id, None)),
        Some(HeldSend {
            refused: Some(_), ..
        }) => {}
        Some(mut s) => {
            // The answer was lost: never sent twice, looked up instead.
            let Some(sent_at) = s.sent_at_s else {
                return Err(unknown(format!(
                    "the request for transfer {transfer} left this module under job {} and its answer was lost: it is never sent twice; look it up in the account's WithdrawStatus and settle it by hand",
                    s.job
                )));
            };
            let window = lookup_window(sent_at);
            let ledger = state.held_sends()?;
            let claimed: Vec<String> = ledger
                .iter()
                .filter_map(|(_, e)| e.withdrawal_id.clone())
                .collect();
            // Another request of the same withdrawal whose answer was lost too, at a time
            // whose window overlaps: which withdrawal is whose cannot be told.
            let twins = ledger
                .iter()
                .filter(|(_, e)| e.job != s.job && e.withdrawal_id.is_none() && e.refused.is_none())
                .filter(|(_, e)| {
                    e.request
                        .as_deref()
                        .and_then(|r| WithdrawForm::parse(r).ok())
                        .is_some_and(|other| other.same_withdrawal(&form))
                })
                .filter(|(_, e)| {
                    e.sent_at_s.is_none_or(|t| {
                        let w = lookup_window(t);
                        w.0 <= window.1 && window.0 <= w.1
                    })
                })
                .count();
            if twins > 0 {
                return Err(unknown(format!(
                    "the request for transfer {transfer} left this module under job {} and its answer was lost, and {twins} other request(s) of the same withdrawal ({} {} to {}) were lost at about the same time: which withdrawal is whose cannot be told, so none is taken; settle it by hand",
                    s.job, form.amount, form.asset, form.address
                )));
            }
            // Looked up with this module's own read key (the withdraw key may only withdraw).
            let reader = outside.kraken(exchange).map_err(|e| {
                unknown(format!(
                    "the request for transfer {transfer} left this module under job {} and its answer was lost; it cannot be looked up ({e}): it is never sent twice",
                    s.job
                ))
            })?;
            let found = reader
                .withdrawals_like(&form, window, &claimed)
                .await
                .map_err(|e| {
                    unknown(format!(
                        "the request for transfer {transfer} left this module under job {} and its answer was lost; looking it up in WithdrawStatus failed ({e}): it is never sent twice",
                        s.job
                    ))
                })?;
            return match found.as_slice() {
                [id] => {
                    s.withdrawal_id = Some(id.clone());
                    state.save_held_send(transfer, &s)?;
                    state.record(crate::audit::Event::HeldSendFound {
                        job: s.job.clone(),
                        transfer: transfer.clone(),
                        withdrawal: id.clone(),
                    })?;
                    Ok((id.clone(), None))
                }
                [] => Err(unknown(format!(
                    "the request for transfer {transfer} left this module under job {} and its answer was lost; WithdrawStatus lists no withdrawal of {} {} to {} since then yet: it is never sent twice, and is looked up again when asked",
                    s.job, form.amount, form.asset, form.address
                ))),
                many => Err(unknown(format!(
                    "the request for transfer {transfer} left this module under job {} and its answer was lost; {} withdrawals of {} {} to {} since then match ({}): which one is ours cannot be told, so none is taken; settle it by hand",
                    s.job,
                    many.len(),
                    form.amount,
                    form.asset,
                    form.address,
                    many.join(", ")
                ))),
            };
        }
        None => {}
    }
    // Bound before anything leaves: a release of this approval is refused from now on.
    state.sign_under_as(&tagged_hash(HELD_SEND_TAG, job.as_bytes()), job, None)?;
    let mut entry = HeldSend {
        job: job.to_owned(),
        digest,
        withdrawal_id: None,
        refused: None,
        sent_at_s: Some(concord_wire::authority::unix_now()),
        request: Some(request.clone()),
    };
    state.save_held_send(transfer, &entry)?;
    let audit = state.record(crate::audit::Event::SignatureReleased {
        job: job.to_owned(),
        session: String::new(),
        kind: "held-credential".into(),
    })?;
    match client.withdraw_form(&form).await {
        Ok(id) => {
            entry.withdrawal_id = Some(id.clone());
            // The funds left: the id is the answer whatever happens to the ledger. An entry
            // left without it only makes a later ask "outcome unknown", never a second send.
            if let Err(e) = state.save_held_send(transfer, &entry) {
                tracing::error!(%transfer, withdrawal = %id, "recording the withdrawal id failed: {e}");
            }
            Ok((id, Some(audit)))
        }
        Err(e) if definitive(&e) => {
            entry.refused = Some(e.to_string());
            if let Err(save) = state.save_held_send(transfer, &entry) {
                tracing::error!(%transfer, "recording the exchange's refusal failed: {save}");
            }
            Err(Error::Refused(format!(
                "exchange {exchange} refused the withdraw request: {e}"
            ))
            .into())
        }
        Err(e) => Err(unknown(format!(
            "exchange {exchange}'s answer to the withdraw request is unknown ({e}): it is never sent again for transfer {transfer}"
        ))),
    }
}

/// Whether an exchange error says for certain that nothing was withdrawn.
fn definitive(e: &ExchangeError) -> bool {
    matches!(
        e,
        ExchangeError::Refused { .. } | ExchangeError::InvalidRequest(_)
    ) && !e.outcome_unknown()
}
