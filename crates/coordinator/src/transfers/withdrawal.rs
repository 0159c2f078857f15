//! A withdrawal, exchange → wallet, as named steps; never requested twice:
//!
//! - `requested` → **prepare** the withdraw request to the address-book destination, with
//!   the exchange's client order id (Binance's `withdrawOrderId`, Coinbase's `idem`) = the
//!   intent's id, and write its exact bytes down (Binance: the query string; Coinbase: the
//!   token's claims for a send from the coin's account, which a module names, and the send's
//!   body);
//! - `signing` → **sign** it with the group's sharded Ed25519 API key (modules sign one
//!   live request per order); the signed request is kept. Kraken instead: the members
//!   approve the `Withdraw` parameters (each resolving the withdrawal key with its own read
//!   key), and the holder of the policy's held credential sends them itself under the
//!   certificate, once per transfer, straight to `submitted`;
//! - `signed` → **submit** it; an answer whose outcome is unknown (a timeout, a 5xx, a
//!   dropped connection) moves it to `unknown`, never to failed;
//! - `unknown` → **reconcile**: look the order up at the exchange through the modules' read
//!   keys; found → submitted; not found → the same bytes again while the exchange may still
//!   accept them, else a fresh request (which the modules sign only once the old one is dead
//!   and they too find no withdrawal under the order);
//! - `submitted` → **follow the exchange** until it sends the funds;
//! - `sent` → **follow the chain** until they arrive.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use concord_chain::B256;
use concord_exchange::binance::{BinanceClient, WithdrawParams};
use concord_exchange::coinbase::{CoinbaseClient, JwtAlg, RequestClaims};
use concord_exchange::kraken::WithdrawForm;
use concord_exchange::{ExchangeError, WithdrawRequest, Withdrawal, WithdrawalStatus};
use concord_wire::authority::{AddressRef, AddressTarget};
use concord_wire::payload::SigningPayload;
use concord_wire::rpc::exchange_query;

use super::{Depth, Step, ecdsa_address, now_ms};
use crate::engine::Engine;
use crate::records::{SignedRequest, TransferRecord, TransferStatus};
use crate::{Error, failpoint};

/// How long a signed withdraw request stays acceptable (Binance's `recvWindow`), ms.
const RECV_WINDOW_MS: u64 = 10_000;
/// How long the coordinator waits for the exchange's answer to a withdraw request.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(8);
/// Modules sign a new request for an order only once the earlier one is past its receive
/// window by 60 s of their own clocks; the coordinator waits 15 s more, so that a module
/// clock up to 15 s behind its own does not turn a resumed withdrawal into a refusal.
const MODULE_MARGIN_MS: u64 = 75_000;

/// A prepared withdraw request, read back from the payload the modules sign.
enum Prepared {
    /// Binance's query string.
    Binance(WithdrawParams),
    /// A Coinbase send: the token's claims and the body.
    Coinbase { claims: RequestClaims, body: String },
    /// A Kraken `Withdraw`'s parameters, which the holder of the held credential sends
    /// itself once the members approved them.
    Kraken,
}

impl Prepared {
    /// Until when (ms since the epoch) the exchange may accept it.
    fn valid_until_ms(&self) -> u64 {
        match self {
            Prepared::Binance(p) => p.timestamp_ms.saturating_add(p.recv_window_ms),
            Prepared::Coinbase { claims, .. } => claims.exp.saturating_mul(1000),
            // Never stale: one request per transfer, bound in the holder's ledger.
            Prepared::Kraken => u64::MAX,
        }
    }
}

impl Engine {
    /// Runs the step of the withdrawal's current state.
    pub(super) async fn withdrawal_step(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        match t.status {
            TransferStatus::Requested => self.withdraw_prepare(t).await,
            TransferStatus::Signing => self.withdraw_sign(t).await,
            TransferStatus::Signed => self.withdraw_submit(t).await,
            TransferStatus::Unknown => self.withdraw_reconcile(t).await,
            TransferStatus::Submitted => self.withdraw_follow_exchange(t).await,
            TransferStatus::Sent => self.withdraw_follow_chain(t).await,
            TransferStatus::Arrived | TransferStatus::Failed => Ok(Step::Done),
            other => Err(Error::Internal(format!("a withdrawal cannot be {other}"))),
        }
    }

    /// The exchange's withdraw key: its wallet, its signer group's members and the API key.
    async fn credential_of(
        &self,
        exchange: &str,
    ) -> Result<(crate::records::WalletRecord, Vec<String>, String), Error> {
        let (wallet_id, api_key) = self.store.credential(exchange).await?.ok_or_else(|| {
            Error::BadRequest(format!(
                "exchange {exchange} has no withdraw key registered"
            ))
        })?;
        let (wallet, members) = self.wallet_and_members(&wallet_id).await?;
        Ok((wallet, members, api_key))
    }

    /// Where a withdrawal goes, as the coordinator understands the intent: the address-book
    /// entry it names in the policy in force here, or, for a wallet the address book does not
    /// name, that wallet's own address (the modules, which decide, will refuse it).
    async fn withdrawal_destination(&self, t: &TransferRecord) -> Result<String, Error> {
        let to = t
            .to
            .as_ref()
            .ok_or_else(|| Error::Internal(format!("withdrawal {} has no destination", t.id)))?;
        let policy = self.policy_in_force().await?;
        let entry = policy.as_ref().and_then(|p| match to {
            AddressRef::Wallet(w) => p.policy.address_of_wallet(w),
            AddressRef::Label(l) => p.policy.address(l),
        });
        let wallet: concord_types::WalletId = match (entry.map(|e| e.target.clone()), to) {
            (Some(AddressTarget::Address { address, .. }), _) => return Ok(address),
            (Some(AddressTarget::Wallet { wallet }), _) => wallet,
            (None, AddressRef::Wallet(wallet)) => *wallet,
            (None, AddressRef::Label(l)) => {
                return Err(Error::BadRequest(format!(
                    "the address book of the policy in force has no entry {l:?}"
                )));
            }
        };
        let (w, _) = self.wallet_and_members(&wallet.to_string()).await?;
        if let Some(u) = self.transfer_ctx()?.utxo_for(&t.network) {
            // On the UTXO chain: a multisig wallet's P2WSH, a threshold wallet's P2WPKH / P2TR.
            let script = match self.multisig_def(&w.id).await? {
                Some(def) => def.wallet().map_err(|e| Error::Internal(e.to_string()))?.1,
                None => {
                    let scheme: concord_types::Scheme = w
                        .scheme
                        .parse()
                        .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))?;
                    concord_wire::payload::threshold_wallet_script(scheme, &w.public_key).map_err(
                        |e| {
                            Error::BadRequest(format!(
                                "wallet {} cannot receive on network {}: {e}",
                                w.id, t.network
                            ))
                        },
                    )?
                }
            };
            return u
                .network
                .address(&script.script_pubkey())
                .map_err(|e| Error::Internal(e.to_string()));
        }
        Ok(ecdsa_address(&w)?.to_string())
    }

    /// Writes down the exact request: order id = intent id, a fresh timestamp. A request
    /// prepared before (now stale) must first be dead for the modules too.
    async fn withdraw_prepare(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("withdrawal::requested");
        if t.payload.is_some() {
            let (_, old) = Self::stored_request(t)?;
            if now_ms() < old.valid_until_ms().saturating_add(MODULE_MARGIN_MS) {
                return Ok(Step::Wait);
            }
        }
        let address = self.withdrawal_destination(t).await?;
        let (cred, members, api_key) = self.credential_of(&t.exchange).await?;
        let endpoint = self.transfer_ctx()?.exchange(&t.exchange)?.clone();
        let (request, body) = match endpoint.kind.as_str() {
            "coinbase" => {
                // The coin's account, as a module's read key lists it: a proposal, which
                // every signer checks against its own listing.
                let account: String = self
                    .ask_any(
                        &members,
                        &t.exchange,
                        exchange_query::Query::Account(concord_wire::rpc::AccountQuery {
                            coin: t.coin.clone(),
                        }),
                    )
                    .await?;
                let host = CoinbaseClient::without_key(&endpoint.url)
                    .map_err(|e| Error::BadRequest(format!("exchange {}: {e}", t.exchange)))?
                    .host()
                    .to_owned();
                // The token's algorithm is the withdraw key's: EdDSA for an Ed25519 group
                // key, ES256 for a P-256 one.
                let alg = if cred.scheme == concord_types::Scheme::EcdsaP256.as_str() {
                    JwtAlg::Es256
                } else {
                    JwtAlg::EdDsa
                };
                let mut claims = RequestClaims::new(
                    &api_key,
                    alg,
                    "POST",
                    &host,
                    &concord_exchange::coinbase::send_path(&account),
                    now_ms() / 1000,
                );
                claims.exp = claims
                    .nbf
                    .saturating_add(concord_exchange::coinbase::SEND_LIFETIME_SECS);
                let body = CoinbaseClient::send_body(&WithdrawRequest {
                    coin: t.coin.clone(),
                    network: t.network.clone(),
                    address: address.clone(),
                    amount: t.amount.to_string(),
                    withdraw_order_id: Some(t.id.clone()),
                })
                .map_err(|e| Error::BadRequest(format!("exchange {}: {e}", t.exchange)))?;
                (claims.signing_input(), Some(body.to_json()))
            }
            "kraken" => {
                // The withdrawal key Kraken has for the destination, as a module's read key
                // lists it: a proposal, which every member resolves again itself.
                let key: String = self
                    .ask_any(
                        &members,
                        &t.exchange,
                        exchange_query::Query::WithdrawKey(concord_wire::rpc::WithdrawKeyQuery {
                            coin: t.coin.clone(),
                            address: address.clone(),
                        }),
                    )
                    .await?;
                let form = WithdrawForm {
                    asset: concord_exchange::kraken::asset_of(&t.coin),
                    key,
                    amount: t.amount.to_string(),
                    address: address.clone(),
                };
                (form.to_form(), None)
            }
            _ => (
                WithdrawParams {
                    coin: t.coin.clone(),
                    network: t.network.clone(),
                    address: address.clone(),
                    amount: t.amount.to_string(),
                    withdraw_order_id: Some(t.id.clone()),
                    timestamp_ms: now_ms(),
                    recv_window_ms: RECV_WINDOW_MS,
                }
                .to_query(),
                None,
            ),
        };
        let payload = SigningPayload::ExchangeWithdrawal {
            transfer: t.id.clone(),
            wallet: cred
                .id
                .parse()
                .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))?,
            exchange: t.exchange.clone(),
            api_key,
            request,
            body,
        };
        t.destination = Some(address.clone());
        t.payload = Some(hex::encode(payload.to_canonical()));
        t.sign_job_id = None;
        t.step(
            TransferStatus::Signing,
            format!("withdraw request to {address} under order {}", t.id),
        );
        self.save(t).await?;
        Ok(Step::Next)
    }

    fn stored_request(t: &TransferRecord) -> Result<(SigningPayload, Prepared), Error> {
        let raw = hex::decode(t.payload.as_deref().unwrap_or_default())
            .map_err(|_| Error::Internal("stored payload is not hex".into()))?;
        let payload =
            SigningPayload::from_canonical(&raw).map_err(|e| Error::Internal(e.to_string()))?;
        let SigningPayload::ExchangeWithdrawal { request, body, .. } = &payload else {
            return Err(Error::Internal("not a withdraw request".into()));
        };
        let bad = |e: ExchangeError| Error::Internal(e.to_string());
        let prepared = match body {
            Some(body) => Prepared::Coinbase {
                claims: RequestClaims::parse(request).map_err(bad)?,
                body: body.clone(),
            },
            None => match WithdrawForm::parse(request) {
                Ok(_) => Prepared::Kraken,
                Err(_) => Prepared::Binance(WithdrawParams::parse(request).map_err(bad)?),
            },
        };
        Ok((payload, prepared))
    }

    /// The group signs the stored request (a stale one is prepared afresh first).
    async fn withdraw_sign(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("withdrawal::signing");
        let (payload, prepared) = Self::stored_request(t)?;
        let signed_before = match &t.sign_job_id {
            Some(id) => self
                .store
                .job(id)
                .await?
                .is_some_and(|j| j.status == crate::records::JobStatus::Done),
            None => false,
        };
        if !signed_before && prepared.valid_until_ms() < now_ms() {
            t.step(
                TransferStatus::Requested,
                "the request went stale before it was signed: a fresh one once it is dead",
            );
            self.save(t).await?;
            return Ok(Step::Next);
        }
        let (cred, _, _) = self.credential_of(&t.exchange).await?;
        if let Prepared::Kraken = prepared {
            // The holder sent it once the members approved: its answer is the withdrawal.
            let result = self.signed_result(t, &cred, &payload, "withdrawal").await?;
            let id = result["exchange_withdrawal_id"]
                .as_str()
                .filter(|id| !id.is_empty())
                .ok_or_else(|| {
                    Error::protocol("the held credential's job ended without a withdrawal id")
                })?
                .to_owned();
            t.exchange_withdrawal_id = Some(id.clone());
            t.error = None;
            t.step(
                TransferStatus::Submitted,
                format!(
                    "the holder of {}'s withdraw key sent the request the members approved: withdrawal {id}",
                    t.exchange
                ),
            );
            self.save(t).await?;
            return Ok(Step::Next);
        }
        let signature = self.signature_for(t, &cred, &payload, "withdrawal").await?;
        let SigningPayload::ExchangeWithdrawal { request, .. } = &payload else {
            return Err(Error::Internal("not a withdraw request".into()));
        };
        t.signed_request = Some(SignedRequest {
            request: request.clone(),
            signature: base64::engine::general_purpose::STANDARD.encode(signature),
            valid_until_ms: prepared.valid_until_ms(),
        });
        t.error = None;
        t.step(
            TransferStatus::Signed,
            "withdraw request signed by the group's key",
        );
        self.save(t).await?;
        Ok(Step::Next)
    }

    /// Sends the signed request; an unknown outcome is reconciled, never failed.
    async fn withdraw_submit(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("withdrawal::signed");
        let sr = t
            .signed_request
            .clone()
            .ok_or_else(|| Error::Internal("signed withdrawal without its request".into()))?;
        if sr.valid_until_ms <= now_ms() {
            // Too late to send: it may have been sent before a restart; look first.
            t.step(
                TransferStatus::Unknown,
                "the signed request expired before it was sent (or answered)",
            );
            self.save(t).await?;
            return Ok(Step::Next);
        }
        match self.send_signed(t, &sr).await? {
            Ok(id) => {
                failpoint!("withdrawal::submit_unsaved");
                t.exchange_withdrawal_id = Some(id.clone());
                t.error = None;
                t.step(
                    TransferStatus::Submitted,
                    format!("exchange {} accepted withdrawal {id}", t.exchange),
                );
            }
            Err(e) if outcome_unknown(&e) => {
                t.error = Some(format!("the exchange's answer is unknown: {e}"));
                t.step(
                    TransferStatus::Unknown,
                    "outcome unknown: looking the order up before anything else",
                );
            }
            Err(e) => {
                // A refusal may be the exchange recognising a request it already accepted
                // (sent before a crash, or by another coordinator): look before failing.
                let Some(w) = self.find_order(t).await? else {
                    return Err(Error::refused(format!(
                        "exchange {} refused the withdraw request: {e}",
                        t.exchange
                    )));
                };
                t.exchange_withdrawal_id = Some(w.id.clone());
                t.error = None;
                t.step(
                    TransferStatus::Submitted,
                    format!(
                        "exchange {} refused the request again but already has withdrawal {} under order {}",
                        t.exchange, w.id, t.id
                    ),
                );
            }
        }
        self.save(t).await?;
        Ok(Step::Next)
    }

    /// Sends a signed request to the exchange: the exchange's answer (its withdrawal id, or
    /// what went wrong), or an error of this side (no client could be built).
    async fn send_signed(
        &self,
        t: &TransferRecord,
        sr: &SignedRequest,
    ) -> Result<Result<String, ExchangeError>, Error> {
        let endpoint = self.transfer_ctx()?.exchange(&t.exchange)?.clone();
        let unusable =
            |e: ExchangeError| Error::BadRequest(format!("exchange {}: {e}", t.exchange));
        match Self::stored_request(t)?.1 {
            Prepared::Binance(_) => {
                let (_, _, api_key) = self.credential_of(&t.exchange).await?;
                let client = BinanceClient::new(
                    &endpoint.url,
                    api_key,
                    Arc::new(concord_exchange::NoSigner::new(
                        concord_exchange::KeyType::Ed25519,
                    )),
                )
                .and_then(|c| c.with_timeout(SUBMIT_TIMEOUT))
                .map_err(unusable)?;
                Ok(client
                    .submit_signed_withdraw(&sr.request, &sr.signature)
                    .await)
            }
            Prepared::Coinbase { claims, body } => {
                let client = CoinbaseClient::without_key(&endpoint.url)
                    .and_then(|c| c.with_timeout(SUBMIT_TIMEOUT))
                    .map_err(unusable)?;
                let account = claims
                    .path
                    .strip_prefix("/v2/accounts/")
                    .and_then(|p| p.strip_suffix("/transactions"))
                    .ok_or_else(|| {
                        Error::Internal(format!(
                            "the stored token is not for a send: {}",
                            claims.path
                        ))
                    })?;
                let signature = base64::engine::general_purpose::STANDARD
                    .decode(&sr.signature)
                    .map_err(|_| Error::Internal("the stored signature is not base64".into()))?;
                let token = concord_exchange::coinbase::finish(&sr.request, &signature);
                Ok(client.submit_send(account, &body, &token).await)
            }
            Prepared::Kraken => Err(Error::Internal(
                "a Kraken withdrawal is sent by the holder of its key, never from here".into(),
            )),
        }
    }

    /// The exchange's withdrawal under this transfer's order id, asked through the modules'
    /// read keys.
    async fn find_order(&self, t: &TransferRecord) -> Result<Option<Withdrawal>, Error> {
        let (_, members, _) = self.credential_of(&t.exchange).await?;
        self.ask_any(
            &members,
            &t.exchange,
            exchange_query::Query::WithdrawalOrder(concord_wire::rpc::WithdrawalOrderQuery {
                order_id: t.id.clone(),
            }),
        )
        .await
    }

    /// Looks the order up at the exchange: found → submitted; not found → the same bytes
    /// again while acceptable, else a fresh request.
    async fn withdraw_reconcile(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("withdrawal::unknown");
        match self.find_order(t).await? {
            Some(w) => {
                t.exchange_withdrawal_id = Some(w.id.clone());
                t.error = None;
                t.step(
                    TransferStatus::Submitted,
                    format!(
                        "exchange {} has withdrawal {} under order {}: reconciled, not requested again",
                        t.exchange, w.id, t.id
                    ),
                );
            }
            None if t
                .signed_request
                .as_ref()
                .is_some_and(|s| s.valid_until_ms > now_ms()) =>
            {
                t.step(
                    TransferStatus::Signed,
                    "not at the exchange: sending the same signed request again",
                );
            }
            None => {
                // The payload stays: a fresh request waits until this one is dead.
                t.signed_request = None;
                t.step(
                    TransferStatus::Requested,
                    "not at the exchange and the signed request has expired: a fresh request under the same order",
                );
            }
        }
        self.save(t).await?;
        Ok(Step::Next)
    }

    /// Follows the withdrawal at the exchange (through the modules' read keys).
    async fn withdraw_follow_exchange(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("withdrawal::submitted");
        let (_, members, _) = self.credential_of(&t.exchange).await?;
        let id = t.exchange_withdrawal_id.clone().unwrap_or_default();
        let w: Option<Withdrawal> = self
            .ask_any(
                &members,
                &t.exchange,
                exchange_query::Query::Withdrawal(concord_wire::rpc::WithdrawalQuery {
                    id: id.clone(),
                }),
            )
            .await?;
        match w.as_ref().map(|w| (&w.status, &w.tx_id)) {
            Some((WithdrawalStatus::Completed, Some(tx))) if !tx.is_empty() => {
                t.tx_hash = Some(tx.clone());
                t.error = None;
                t.step(
                    TransferStatus::Sent,
                    format!("exchange sent transaction {tx}"),
                );
                self.save(t).await?;
                Ok(Step::Next)
            }
            Some((
                s @ (WithdrawalStatus::Cancelled
                | WithdrawalStatus::Rejected
                | WithdrawalStatus::Failure),
                _,
            )) => Err(Error::refused(format!(
                "exchange {} reports withdrawal {id} as {s:?}",
                t.exchange
            ))),
            _ => {
                self.overdue(t, "the exchange has not sent the withdrawal yet")
                    .await?;
                Ok(Step::Wait)
            }
        }
    }

    /// Follows the funds on chain until they arrive.
    async fn withdraw_follow_chain(&self, t: &mut TransferRecord) -> Result<Step, Error> {
        failpoint!("withdrawal::sent");
        if self.transfer_ctx()?.utxo_for(&t.network).is_some() {
            return self.withdraw_follow_utxo(t).await;
        }
        let hash: B256 = t
            .tx_hash
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|_| {
                Error::protocol(format!(
                    "the exchange's tx id {:?} is not a transaction hash",
                    t.tx_hash
                ))
            })?;
        match self
            .follow_tx(hash, Duration::from_secs(10), "following the withdrawal")
            .await?
        {
            Depth::Deep {
                block,
                confirmations,
            } => {
                t.error = None;
                t.step(
                    TransferStatus::Arrived,
                    format!(
                        "{} {} reached {} in block {block} ({confirmations} confirmation(s))",
                        t.amount,
                        t.coin,
                        t.destination.as_deref().unwrap_or("the destination")
                    ),
                );
                self.save(t).await?;
                Ok(Step::Done)
            }
            Depth::Reverted => Err(Error::refused(format!(
                "the exchange's transaction {hash} was reverted"
            ))),
            Depth::Shallow | Depth::NotMined => {
                self.overdue(t, "the exchange's transaction is not confirmed yet")
                    .await?;
                Ok(Step::Wait)
            }
        }
    }
}

/// Whether a failed submission may have taken effect at the exchange (then it is reconciled
/// by order id, never called failed): what the connector says, and any transport failure (a
/// connection dropped after the request left may have been acted on).
fn outcome_unknown(e: &ExchangeError) -> bool {
    // A success status whose body cannot be read (`Decode`) may well be an acceptance.
    e.outcome_unknown()
        || matches!(
            e,
            ExchangeError::Transport { .. } | ExchangeError::Decode(_)
        )
}
