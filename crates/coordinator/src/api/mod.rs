//! REST/JSON API for operators and traders.
//!
//! Every request but `/v1/health` and `/v1/openapi.json` carries `Authorization: Bearer
//! <token>`; tokens are stored only as SHA-256 hashes, each with a role (an authentication
//! layer checks it per route): `viewer` reads; `trader` also requests transfers and
//! signatures; `operator` also enrolls modules and creates groups, wallets and imports;
//! `admin` may do everything, and alone creates tokens and proposes and signs policies.
//! Roles are defence in depth: the modules check every intent's signatures against their own
//! admin-signed policy and decide. Every POST carries an
//! `Idempotency-Key`: repeating a POST with the same key and body returns the first
//! response; the same key with another body is refused. Errors are JSON `{"error": "..."}`
//! ([`ApiError`]) with a sentence that says what is wrong.
//!
//! Every answer is one of this crate's types, serialised as it stands, so a client reads it
//! back into the same type and writes the same JSON again (tested route by route):
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/health` | [`Health`] |
//! | `GET /v1/modules`, `POST /v1/modules` | [`ModuleView`] (list, one) |
//! | `GET /v1/groups`, `GET /v1/groups/{id}`, `POST /v1/groups` | [`GroupRecord`] (oldest first) |
//! | `POST /v1/groups/{id}/replace` | [`JobRecord`]: the repair job |
//! | `GET /v1/wallets`, `GET /v1/wallets/{id}` | [`WalletView`]: the record, how it was made, its group, its label and purpose in the policy in force, its addresses |
//! | `GET /v1/wallets/{id}/balances` | [`WalletBalances`]: native coin and configured tokens, from the coordinator's chain RPC |
//! | `POST /v1/wallets`, `POST /v1/wallets/import`, `POST /v1/wallets/{id}/refresh`, `POST /v1/wallets/{id}/derive`, `POST /v1/signatures` | [`JobRecord`] |
//! | `GET /v1/jobs?kind=&status=&wallet=&limit=` | [`JobRecord`] list, newest first, without events (limit 1 to 1000, default 100) |
//! | `GET /v1/jobs/{id}` | [`JobView`]: the job, its events, its result ([`JobResult`](crate::JobResult): a key generation's or import's is a [`WalletCreated`](crate::WalletCreated)) |
//! | `GET /v1/transfers`, `GET /v1/transfers/{id}`, `POST /v1/transfers/…` | [`TransferRecord`] |
//! | `GET /v1/exchanges/{name}/balances` | [`ExchangeBalances`]: read by a module through its own connector and read-only key |
//! | `POST /v1/exchanges/{name}/credential` | [`RegisteredCredential`] |
//! | `GET /v1/tokens`, `POST /v1/tokens` | [`TokenView`] list, [`CreatedToken`] |
//! | `GET /v1/policies` | [`Policies`] |
//! | `GET /v1/policies/{hash}`, `POST /v1/policies`, `POST /v1/policies/{hash}/signatures` | [`PolicyView`] |
//!
//! The OpenAPI 3.1 document (`GET /v1/openapi.json`, [`openapi_document`]) is generated from
//! the same declarations the router is built from: each handler's `#[utoipa::path]` (method,
//! path, parameters, body, answers; its doc comment is the operation's summary and
//! description) is registered with `utoipa_axum::routes!`, the types' schemas are derived
//! (`ToSchema`, `IntoParams`), and each layer adds to the operations it wraps what it does
//! (bearer security, the role, 401 and 403; the `Idempotency-Key` header, its 400 and 409).
//! A route cannot be served without being documented, nor documented without being served;
//! the tests check every answer they get against the document's schema for it.

mod layers;
mod openapi;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Json, Router};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub use layers::{Caller, JsonBody, QueryParams, RequestScope};
pub use openapi::{
    CLOSED_ENUMS, IDEMPOTENCY_KEY, ROLE_EXTENSION, SECURITY_SCHEME, openapi_document,
};
pub(crate) use openapi::{
    deposit_intent, group_members, import_intent, sign_message_intent, withdraw_intent,
};

use crate::policy::{Policies, PolicyView, ProposePolicy};
use crate::records::{JobKind, JobRecord, JobStatus};
use crate::store::JobFilter;
use crate::transfers::{
    CredentialRequest, DepositRequest, RegisteredCredential, WithdrawalRequest,
};
use crate::{
    Coordinator, CreateGroup, CreateWallet, DeriveWallet, EnrollModule, Error, ExchangeBalances,
    GroupRecord, ImportWallet, JobView, ModuleView, RefreshWallet, ReplaceMember, SignRequest,
    TransferRecord, WalletBalances, WalletView,
};
use concord_wire::authority::Endorsement;

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// Everything, including tokens and policies.
    Admin,
    /// Modules, groups, wallets, imports, exchange credentials; and reads.
    Operator,
    /// Transfers and signatures; and reads.
    Trader,
    /// Reads.
    Viewer,
}

impl TokenRole {
    /// Every role, strongest first.
    pub const ALL: [TokenRole; 4] = [
        TokenRole::Admin,
        TokenRole::Operator,
        TokenRole::Trader,
        TokenRole::Viewer,
    ];

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Operator => "operator",
            TokenRole::Trader => "trader",
            TokenRole::Viewer => "viewer",
        }
    }

    /// Whether a token of this role may do what `needed` may.
    pub fn allows(self, needed: TokenRole) -> bool {
        self == needed || self == TokenRole::Admin || needed == TokenRole::Viewer
    }
}

impl std::str::FromStr for TokenRole {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "admin" => Ok(TokenRole::Admin),
            "operator" => Ok(TokenRole::Operator),
            "trader" => Ok(TokenRole::Trader),
            "viewer" => Ok(TokenRole::Viewer),
            other => Err(Error::BadRequest(format!(
                "unknown token role {other:?}: expected admin, operator, trader or viewer"
            ))),
        }
    }
}

/// Creates an API token with a role, stores its hash, and returns the token (shown once).
pub async fn create_token(c: &Coordinator, name: &str, role: TokenRole) -> Result<String, Error> {
    if name.is_empty() || name.len() > 64 {
        return Err(Error::BadRequest(
            "a token's name must be 1 to 64 characters".into(),
        ));
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = format!("cct_{}", hex::encode(raw));
    c.store()
        .add_token(&layers::hash_token(&token), name, role.as_str())
        .await?;
    Ok(token)
}

impl Error {
    /// The HTTP status this error answers with.
    fn http_status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Protocol { .. }
            | Error::LeaseLost(_)
            | Error::Storage(_)
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiError {
    /// A sentence that says what is wrong.
    pub error: String,
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let status = self.http_status();
        let body = ApiError {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

/// A handler's answer: a status and a JSON body of type `T` (the type its
/// `#[utoipa::path]` names for that status).
type Answer<T> = Result<(StatusCode, Json<T>), Error>;

fn ok<T>(v: T) -> Answer<T> {
    Ok((StatusCode::OK, Json(v)))
}

fn created<T>(v: T) -> Answer<T> {
    Ok((StatusCode::CREATED, Json(v)))
}

fn accepted<T>(v: T) -> Answer<T> {
    Ok((StatusCode::ACCEPTED, Json(v)))
}

/// `GET /v1/health`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// Liveness.
///
/// Answers as long as the coordinator serves HTTP; needs no token.
#[utoipa::path(get, path = "/v1/health", tag = "service",
    responses((status = 200, description = "Serving", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// This document.
///
/// The OpenAPI document of this API, generated from its handlers and types; needs no token.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(openapi_document())
}

/// Metrics.
///
/// The coordinator's metrics in the Prometheus text format: transfers and jobs by state,
/// module answers by kind and refusal code, dissents, signing latency by scheme and engine,
/// presignature pool depth per wallet, module links, chain and exchange call errors by
/// retryability. Counts and durations only: no key, address or amount.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "The metrics (text format 0.0.4)", body = String, content_type = "text/plain"),
        (status = 500, description = "The store cannot be read", body = ApiError),
    ))]
async fn metrics_text(State(c): State<Coordinator>) -> Result<axum::response::Response, Error> {
    c.refresh_gauges().await?;
    Ok(axum::response::IntoResponse::into_response((
        [(
            axum::http::header::CONTENT_TYPE,
            concord_wire::telemetry::CONTENT_TYPE,
        )],
        concord_wire::telemetry::render(),
    )))
}

/// Enroll a module.
///
/// Pins its Ed25519 identity key (for mutual TLS) after checking that it signed its X25519
/// sealing key.
#[utoipa::path(post, path = "/v1/modules", tag = "modules", request_body = EnrollModule,
    responses(
        (status = 201, description = "Enrolled", body = ModuleView),
        (status = 400, body = ApiError),
        (status = 409, description = "A module with this id is enrolled already", body = ApiError),
    ))]
async fn enroll(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<EnrollModule>,
) -> Answer<ModuleView> {
    created(c.enroll(r).await?)
}

/// Enrolled modules.
///
/// Each with its identity fingerprint and whether its stream is open now.
#[utoipa::path(get, path = "/v1/modules", tag = "modules",
    responses((status = 200, description = "The modules", body = Vec<ModuleView>)))]
async fn list_modules(State(c): State<Coordinator>) -> Answer<Vec<ModuleView>> {
    ok(c.modules().await?)
}

/// Create a signer group.
///
/// Its auxiliary material (Paillier primes for threshold ECDSA) is prepared in the
/// background, by the job the answer names; wallets can be made once it is `ready`.
#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = CreateGroup,
    responses(
        (status = 202, description = "Created; preparing", body = GroupRecord),
        (status = 400, body = ApiError),
        (status = 404, description = "A member module is not enrolled", body = ApiError),
        (status = 409, description = "A group with this id exists", body = ApiError),
    ))]
async fn create_group(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<CreateGroup>,
) -> Answer<GroupRecord> {
    accepted(c.create_group(r).await?)
}

/// Signer groups, oldest first.
#[utoipa::path(get, path = "/v1/groups", tag = "groups",
    responses((status = 200, description = "The groups", body = Vec<GroupRecord>)))]
async fn list_groups(State(c): State<Coordinator>) -> Answer<Vec<GroupRecord>> {
    ok(c.groups().await?)
}

/// A signer group and its status.
#[utoipa::path(get, path = "/v1/groups/{id}", tag = "groups",
    params(("id" = String, Path, description = "The group's id")),
    responses(
        (status = 200, description = "The group", body = GroupRecord),
        (status = 404, body = ApiError),
    ))]
async fn get_group(State(c): State<Coordinator>, Path(id): Path<String>) -> Answer<GroupRecord> {
    ok(c.group(&id).await?)
}

/// Create a wallet by distributed key generation.
///
/// The key never exists whole. The answer is the key-generation job (named after the
/// request's idempotency key); its result, once done, is the wallet and its addresses.
#[utoipa::path(post, path = "/v1/wallets", tag = "wallets", request_body = CreateWallet,
    responses(
        (status = 202, description = "The key-generation job", body = JobRecord),
        (status = 400, body = ApiError),
        (status = 404, description = "No such group", body = ApiError),
        (status = 409, description = "The group is not ready", body = ApiError),
    ))]
async fn create_wallet(
    State(c): State<Coordinator>,
    scope: RequestScope,
    JsonBody(r): JsonBody<CreateWallet>,
) -> Answer<JobRecord> {
    accepted(c.create_wallet(r, &scope.0).await?)
}

/// Import an existing key.
///
/// The key was split and each shard sealed to one module by the importing tool (the key
/// existed whole once), under an importer's signed intent. The answer is the import job; its
/// result, once done, is the wallet and its addresses.
#[utoipa::path(post, path = "/v1/wallets/import", tag = "wallets", request_body = ImportWallet,
    responses(
        (status = 202, description = "The import job", body = JobRecord),
        (status = 400, body = ApiError),
        (status = 404, description = "No such group", body = ApiError),
        (status = 409, description = "The group is not ready, the wallet exists, or the intent id was used for another request", body = ApiError),
    ))]
async fn import_wallet(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<ImportWallet>,
) -> Answer<JobRecord> {
    accepted(c.import_wallet(r).await?)
}

/// Wallets, oldest first.
///
/// Each with how it was made, its group, its label and purpose in the policy in force, and
/// its addresses.
#[utoipa::path(get, path = "/v1/wallets", tag = "wallets",
    responses((status = 200, description = "The wallets", body = Vec<WalletView>)))]
async fn list_wallets(State(c): State<Coordinator>) -> Answer<Vec<WalletView>> {
    ok(c.wallet_views().await?)
}

/// A wallet.
///
/// How it was made, its group, its label and purpose in the policy in force, and its
/// addresses.
#[utoipa::path(get, path = "/v1/wallets/{id}", tag = "wallets",
    params(("id" = String, Path, description = "The wallet's id (64 hex digits)")),
    responses(
        (status = 200, description = "The wallet", body = WalletView),
        (status = 404, body = ApiError),
    ))]
async fn get_wallet(State(c): State<Coordinator>, Path(id): Path<String>) -> Answer<WalletView> {
    ok(c.wallet_view(&id).await?)
}

/// Refresh a wallet's shares.
///
/// Every member of the wallet's group re-randomises its share (proactive refresh); the key
/// and addresses stay. Each module refuses unless the admin-signed policy in force says
/// `refresh = true` for the wallet. The old shares are replaced only once every member holds
/// its new one. The answer is the refresh job.
#[utoipa::path(post, path = "/v1/wallets/{id}/refresh", tag = "wallets", request_body = RefreshWallet,
    params(("id" = String, Path, description = "The wallet's id (64 hex digits)")),
    responses(
        (status = 202, description = "The refresh job", body = JobRecord),
        (status = 400, description = "The wallet's engine cannot refresh", body = ApiError),
        (status = 404, body = ApiError),
    ))]
async fn refresh_wallet(
    State(c): State<Coordinator>,
    scope: RequestScope,
    Path(id): Path<String>,
    JsonBody(_): JsonBody<RefreshWallet>,
) -> Answer<JobRecord> {
    accepted(c.refresh_wallet(&id, &scope.0).await?)
}

/// Replace a lost member of a signer group.
///
/// A DKLs23 group's member whose module is lost: the group's record names the new module at
/// its index, then every other member rebuilds the new member's share of each wallet (none
/// of them learns it) and all refresh their shares (the lost shares never sign with the new
/// ones). Each member refuses unless the policy in force lists the group's members with the
/// new module there. The answer is the repair job.
#[utoipa::path(post, path = "/v1/groups/{id}/replace", tag = "groups", request_body = ReplaceMember,
    params(("id" = String, Path, description = "The group's id")),
    responses(
        (status = 202, description = "The repair job", body = JobRecord),
        (status = 400, description = "Not a DKLs23 group, or the lost module is not a member", body = ApiError),
        (status = 404, description = "No such group, or the new module is not enrolled", body = ApiError),
        (status = 409, description = "The new module is already a member", body = ApiError),
    ))]
async fn replace_member(
    State(c): State<Coordinator>,
    scope: RequestScope,
    Path(id): Path<String>,
    JsonBody(r): JsonBody<ReplaceMember>,
) -> Answer<JobRecord> {
    accepted(c.replace_member(&id, r, &scope.0).await?)
}

/// Derive a child wallet.
///
/// A non-hardened BIP-32 child of a DKLs23 wallet: every member of its group checks the
/// path against the policy in force (the parent's `derive` prefixes) and derives the child
/// key from its own share. The child is a wallet of its own (its own address), under its
/// parent's rule. The answer is the derivation job; its result, once done, is the wallet.
#[utoipa::path(post, path = "/v1/wallets/{id}/derive", tag = "wallets", request_body = DeriveWallet,
    params(("id" = String, Path, description = "The parent wallet's id (64 hex digits)")),
    responses(
        (status = 202, description = "The derivation job", body = JobRecord),
        (status = 400, description = "Not a DKLs23 wallet, a derived one, or a bad path", body = ApiError),
        (status = 404, body = ApiError),
    ))]
async fn derive_wallet(
    State(c): State<Coordinator>,
    scope: RequestScope,
    Path(id): Path<String>,
    JsonBody(r): JsonBody<DeriveWallet>,
) -> Answer<JobRecord> {
    accepted(c.derive_wallet(&id, r, &scope.0).await?)
}

/// A wallet's balances on chain.
///
/// An ecdsa-secp256k1 wallet's balances on the coordinator's chain: the native coin and
/// every configured token, read through the coordinator's RPC endpoint.
#[utoipa::path(get, path = "/v1/wallets/{id}/balances", tag = "wallets",
    params(("id" = String, Path, description = "The wallet's id (64 hex digits)")),
    responses(
        (status = 200, description = "The balances", body = WalletBalances),
        (status = 400, description = "The wallet holds nothing on a chain configured here", body = ApiError),
        (status = 404, body = ApiError),
        (status = 409, description = "This coordinator has no chain configured", body = ApiError),
        (status = 503, description = "The chain did not answer", body = ApiError),
    ))]
async fn wallet_balances(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
) -> Answer<WalletBalances> {
    ok(c.wallet_balances(&id).await?)
}

/// An exchange account's balances.
///
/// The coins it holds (free or locked), read by a connected module through its own
/// connector and read-only key.
#[utoipa::path(get, path = "/v1/exchanges/{name}/balances", tag = "exchanges",
    params(("name" = String, Path, description = "The exchange connection, as the modules name it")),
    responses(
        (status = 200, description = "The balances", body = ExchangeBalances),
        (status = 409, description = "No module is enrolled to ask the exchange", body = ApiError),
        (status = 503, description = "No connected module could ask the exchange", body = ApiError),
    ))]
async fn exchange_balances(
    State(c): State<Coordinator>,
    Path(name): Path<String>,
) -> Answer<ExchangeBalances> {
    ok(c.exchange_balances(&name).await?)
}

/// `GET /v1/jobs`'s query: each parameter at most once, no other.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Jobs of this kind only.
    pub kind: Option<JobKind>,
    /// Jobs in this status only.
    pub status: Option<JobStatus>,
    /// The wallet's jobs only: its signatures and presignatures, its import or the key
    /// generation that made it.
    #[param(min_length = 1)]
    pub wallet: Option<String>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<u32>,
}

impl JobQuery {
    /// The parameters' names, as `job_filter` reads them.
    pub const NAMES: [&'static str; 4] = ["kind", "status", "wallet", "limit"];
}

/// Reads `GET /v1/jobs`'s query ([`JobQuery`]): `kind`, `status`, `wallet` and `limit`, each
/// at most once.
fn job_filter(query: &[(String, String)]) -> Result<JobFilter, Error> {
    fn names<T: Copy + std::fmt::Display>(all: &[T]) -> String {
        let names: Vec<String> = all.iter().map(ToString::to_string).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }
    let mut filter = JobFilter::default();
    let mut seen = std::collections::HashSet::new();
    for (name, value) in query {
        if !seen.insert(name.as_str()) {
            return Err(Error::BadRequest(format!(
                "the query parameter {name} is given twice"
            )));
        }
        match name.as_str() {
            "kind" => {
                filter.kind = Some(value.parse().map_err(|_| {
                    Error::BadRequest(format!(
                        "kind {value:?} is not a job kind: expected {}",
                        names(JobKind::ALL)
                    ))
                })?);
            }
            "status" => {
                filter.status = Some(value.parse().map_err(|_| {
                    Error::BadRequest(format!(
                        "status {value:?} is not a job status: expected {}",
                        names(JobStatus::ALL)
                    ))
                })?);
            }
            "wallet" if value.is_empty() => {
                return Err(Error::BadRequest(
                    "wallet is empty: give a wallet id, or leave the parameter out".into(),
                ));
            }
            "wallet" => filter.wallet = Some(value.clone()),
            "limit" => {
                filter.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=JobFilter::MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Error::BadRequest(format!(
                            "limit must be a whole number from 1 to {}, not {value:?}",
                            JobFilter::MAX_LIMIT
                        ))
                    })?;
            }
            other => {
                return Err(Error::BadRequest(format!(
                    "unknown query parameter {other:?}: GET /v1/jobs takes kind, status, wallet and limit"
                )));
            }
        }
    }
    Ok(filter)
}

/// Jobs, newest first, without their events.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobQuery),
    responses(
        (status = 200, description = "The jobs", body = Vec<JobRecord>),
        (status = 400, description = "A parameter is unknown, given twice or invalid", body = ApiError),
    ))]
async fn list_jobs(
    State(c): State<Coordinator>,
    QueryParams(q): QueryParams<Vec<(String, String)>>,
) -> Answer<Vec<JobRecord>> {
    ok(c.jobs(&job_filter(&q)?).await?)
}

/// Ask the wallet's modules to approve and sign a message.
///
/// Under a trader's signed intent (wallet, message, agreement rule); each module checks it
/// against its own policy. The answer is the sign job (its id is the intent's).
#[utoipa::path(post, path = "/v1/signatures", tag = "signatures", request_body = SignRequest,
    responses(
        (status = 202, description = "The sign job", body = JobRecord),
        (status = 400, body = ApiError),
        (status = 404, description = "No such wallet", body = ApiError),
        (status = 409, description = "The intent id was used for another request", body = ApiError),
    ))]
async fn sign(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<SignRequest>,
) -> Answer<JobRecord> {
    accepted(c.request_signature(r).await?)
}

/// The longest `GET /v1/jobs/{id}?wait=` holds a request, seconds.
pub const JOB_WAIT_MAX: f64 = 60.0;
/// The longest `GET /v1/transfers/{id}?wait=` holds a request, seconds.
pub const TRANSFER_WAIT_MAX: f64 = 300.0;

/// `GET /v1/jobs/{id}`'s query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobWait {
    /// Hold the request up to this many seconds (at most 60) until the job is done or failed;
    /// default 0: answer at once.
    #[param(minimum = 0, maximum = 60)]
    pub wait: Option<f64>,
}

/// `GET /v1/transfers/{id}`'s query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransferWait {
    /// Hold the request up to this many seconds (at most 300) until the transfer is final
    /// (or reached `until`); default 0: answer at once.
    #[param(minimum = 0, maximum = 300)]
    pub wait: Option<f64>,
    /// Answer as soon as the transfer reached this step: a status (`broadcast`…) or
    /// `signature` (the group's signature was verified).
    pub until: Option<String>,
}

fn wait_of(wait: Option<f64>, max: f64) -> Result<std::time::Duration, Error> {
    let wait = wait.unwrap_or(0.0);
    if !(0.0..=max).contains(&wait) {
        return Err(Error::BadRequest(format!(
            "wait must be between 0 and {max} seconds"
        )));
    }
    Ok(std::time::Duration::from_secs_f64(wait))
}

/// A job.
///
/// Its events (approvals, dissents…) and its result; `?wait=SECONDS` holds the request
/// until the job ends.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id"), JobWait),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 400, description = "`wait` is out of range", body = ApiError),
        (status = 404, body = ApiError),
    ))]
async fn get_job(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<JobWait>,
) -> Answer<JobView> {
    ok(c.job_wait(&id, wait_of(q.wait, JOB_WAIT_MAX)?).await?)
}

/// Deposit from a wallet to an exchange.
///
/// Under a trader's signed deposit intent; the transfer's id is the intent's, so the same
/// intent again finds the same transfer. Each module resolves the deposit address itself
/// and checks the transaction against its own policy.
#[utoipa::path(post, path = "/v1/transfers/deposits", tag = "transfers", request_body = DepositRequest,
    responses(
        (status = 202, description = "The transfer, requested", body = TransferRecord),
        (status = 400, body = ApiError),
        (status = 404, description = "No such wallet, or the exchange is not configured", body = ApiError),
        (status = 409, description = "The intent id was used for another request, or this coordinator has no chain configured", body = ApiError),
    ))]
async fn deposit(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<DepositRequest>,
) -> Answer<TransferRecord> {
    accepted(c.request_deposit(r).await?)
}

/// Withdraw from an exchange to an address-book entry.
///
/// Under a trader's signed withdraw intent; the modules sign the exchange's withdraw request
/// with the exchange's sharded withdraw key.
#[utoipa::path(post, path = "/v1/transfers/withdrawals", tag = "transfers", request_body = WithdrawalRequest,
    responses(
        (status = 202, description = "The transfer, requested", body = TransferRecord),
        (status = 400, body = ApiError),
        (status = 404, description = "The exchange is not configured", body = ApiError),
        (status = 409, description = "The intent id was used for another request, or this coordinator has no chain configured", body = ApiError),
    ))]
async fn withdraw(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<WithdrawalRequest>,
) -> Answer<TransferRecord> {
    accepted(c.request_withdrawal(r).await?)
}

/// Register an exchange's withdraw key.
///
/// The ed25519 wallet the policy in force names as the exchange's withdraw key, and the API
/// key string the exchange issued for it.
#[utoipa::path(post, path = "/v1/exchanges/{name}/credential", tag = "exchanges", request_body = CredentialRequest,
    params(("name" = String, Path, description = "The exchange connection, as the modules name it")),
    responses(
        (status = 200, description = "Registered", body = RegisteredCredential),
        (status = 400, body = ApiError),
        (status = 404, description = "No such wallet, or the exchange is not configured", body = ApiError),
        (status = 409, description = "No policy is in force yet, or this coordinator has no chain configured", body = ApiError),
    ))]
async fn register_credential(
    State(c): State<Coordinator>,
    Path(name): Path<String>,
    JsonBody(r): JsonBody<CredentialRequest>,
) -> Answer<RegisteredCredential> {
    ok(c.register_credential(&name, r).await?)
}

/// Transfers, newest first.
#[utoipa::path(get, path = "/v1/transfers", tag = "transfers",
    responses((status = 200, description = "The transfers (the newest 1000)", body = Vec<TransferRecord>)))]
async fn list_transfers(State(c): State<Coordinator>) -> Answer<Vec<TransferRecord>> {
    ok(c.transfers().await?)
}

/// A transfer.
///
/// `?wait=SECONDS` holds the request until it is final (or reaches `?until=STEP`).
#[utoipa::path(get, path = "/v1/transfers/{id}", tag = "transfers",
    params(("id" = String, Path, description = "The transfer's id (its intent's)"), TransferWait),
    responses(
        (status = 200, description = "The transfer", body = TransferRecord),
        (status = 400, description = "`wait` is out of range", body = ApiError),
        (status = 404, body = ApiError),
    ))]
async fn get_transfer(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<TransferWait>,
) -> Answer<TransferRecord> {
    let wait = wait_of(q.wait, TRANSFER_WAIT_MAX)?;
    ok(c.transfer_wait(&id, wait, q.until.as_deref()).await?)
}

/// Request to create an API token.
#[derive(Debug, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A name for it (1 to 64 characters).
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// Its role.
    pub role: TokenRole,
}

/// A token just created: the only time the token itself is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: TokenRole,
    /// The bearer token (`cct_…`); only its hash is kept.
    pub token: String,
}

/// An API token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: TokenRole,
    /// When it was created.
    pub created_at: String,
}

/// Create an API token with a role.
///
/// The token is shown once, in this answer; only its SHA-256 is kept.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses(
        (status = 201, description = "Created", body = CreatedToken),
        (status = 400, body = ApiError),
    ))]
async fn create_token_route(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<CreateToken>,
) -> Answer<CreatedToken> {
    let token = create_token(&c, &r.name, r.role).await?;
    created(CreatedToken {
        name: r.name,
        role: r.role,
        token,
    })
}

/// API tokens: names and roles.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, description = "The tokens", body = Vec<TokenView>)))]
async fn list_tokens(State(c): State<Coordinator>) -> Answer<Vec<TokenView>> {
    let list = c
        .store()
        .tokens()
        .await?
        .into_iter()
        .map(|(name, role, created_at)| {
            Ok(TokenView {
                role: role.parse().map_err(|_| {
                    Error::Storage(format!("token {name:?} has an unknown role {role:?}"))
                })?,
                name,
                created_at,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    ok(list)
}

/// Propose a policy.
///
/// Modules adopt it once a quorum of their admins signed it; its version and `previous`
/// must follow the newest policy known here.
#[utoipa::path(post, path = "/v1/policies", tag = "policies", request_body = ProposePolicy,
    responses(
        (status = 201, description = "Proposed", body = PolicyView),
        (status = 400, body = ApiError),
        (status = 409, description = "It does not follow the policy in force", body = ApiError),
    ))]
async fn propose_policy(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<ProposePolicy>,
) -> Answer<PolicyView> {
    created(c.propose_policy(r).await?)
}

/// Sign a policy.
///
/// Adds an admin's signature (checked against the key it names) and offers the policy to
/// the connected modules, waiting briefly for their answers.
#[utoipa::path(post, path = "/v1/policies/{hash}/signatures", tag = "policies", request_body = Endorsement,
    params(("hash" = String, Path, description = "The policy's hash, hex")),
    responses(
        (status = 200, description = "The policy and each module's report", body = PolicyView),
        (status = 400, description = "The signature does not verify", body = ApiError),
        (status = 404, body = ApiError),
    ))]
async fn sign_policy(
    State(c): State<Coordinator>,
    Path(hash): Path<String>,
    JsonBody(r): JsonBody<Endorsement>,
) -> Answer<PolicyView> {
    ok(c.sign_policy(&hash, r).await?)
}

/// The policy in force and the newest proposal.
#[utoipa::path(get, path = "/v1/policies", tag = "policies",
    responses((status = 200, description = "The policies", body = Policies)))]
async fn list_policies(State(c): State<Coordinator>) -> Answer<Policies> {
    ok(c.policies().await?)
}

/// A policy, its signatures and each module's report.
#[utoipa::path(get, path = "/v1/policies/{hash}", tag = "policies",
    params(("hash" = String, Path, description = "The policy's hash, hex")),
    responses(
        (status = 200, description = "The policy", body = PolicyView),
        (status = 404, body = ApiError),
    ))]
async fn get_policy(State(c): State<Coordinator>, Path(hash): Path<String>) -> Answer<PolicyView> {
    ok(c.policy(&hash).await?)
}

/// A route, documented, behind the authentication layer with the role it needs; the layer
/// adds the bearer security, the role and its answers (401, 403, 500) to the route's
/// operations.
fn authenticated(
    role: TokenRole,
    (schemas, mut paths, route): UtoipaMethodRouter<Coordinator>,
) -> UtoipaMethodRouter<Coordinator> {
    openapi::document_authentication(&mut paths, role);
    (schemas, paths, route).map(|m| {
        m.route_layer(axum::middleware::from_fn_with_state(
            role,
            layers::authenticate,
        ))
    })
}

/// A route, documented, behind the idempotency layer; the layer adds the `Idempotency-Key`
/// header and its answers (400, 409) to the route's operations.
fn idempotent(
    (schemas, mut paths, route): UtoipaMethodRouter<Coordinator>,
) -> UtoipaMethodRouter<Coordinator> {
    openapi::document_idempotency(&mut paths);
    (schemas, paths, route).map(|m| m.route_layer(axum::middleware::from_fn(layers::idempotency)))
}

/// The API's routes and their document, built from the same declarations: each handler's
/// `#[utoipa::path]` through `routes!`, each behind the authentication layer with the role it
/// needs, every POST also behind the idempotency layer (inside authentication). Routes are
/// added only with `.routes(…)`, never with axum's `.route(…)`, which would leave them out of
/// the document.
fn api() -> OpenApiRouter<Coordinator> {
    let view = |r| authenticated(TokenRole::Viewer, r);
    let admin_view = |r| authenticated(TokenRole::Admin, r);
    let op = |r| authenticated(TokenRole::Operator, idempotent(r));
    let trade = |r| authenticated(TokenRole::Trader, idempotent(r));
    let admin = |r| authenticated(TokenRole::Admin, idempotent(r));
    OpenApiRouter::with_openapi(openapi::frame())
        .routes(routes!(health))
        .routes(routes!(openapi_json))
        .routes(view(routes!(metrics_text)))
        .routes(op(routes!(enroll)))
        .routes(view(routes!(list_modules)))
        .routes(op(routes!(create_group)))
        .routes(view(routes!(list_groups)))
        .routes(view(routes!(get_group)))
        .routes(op(routes!(replace_member)))
        .routes(op(routes!(create_wallet)))
        .routes(view(routes!(list_wallets)))
        .routes(op(routes!(import_wallet)))
        .routes(view(routes!(get_wallet)))
        .routes(view(routes!(wallet_balances)))
        .routes(op(routes!(refresh_wallet)))
        .routes(op(routes!(derive_wallet)))
        .routes(trade(routes!(sign)))
        .routes(view(routes!(list_jobs)))
        .routes(view(routes!(get_job)))
        .routes(view(routes!(list_transfers)))
        .routes(trade(routes!(deposit)))
        .routes(trade(routes!(withdraw)))
        .routes(view(routes!(get_transfer)))
        .routes(op(routes!(register_credential)))
        .routes(view(routes!(exchange_balances)))
        .routes(admin(routes!(create_token_route)))
        .routes(admin_view(routes!(list_tokens)))
        .routes(admin(routes!(propose_policy)))
        .routes(view(routes!(list_policies)))
        .routes(view(routes!(get_policy)))
        .routes(admin(routes!(sign_policy)))
}

/// The API's routes over `c`, as `api()` declares and documents them ([`openapi_document`]).
pub fn router(c: Coordinator) -> Router {
    let (routes, _document) = api().split_for_parts();
    routes
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::Extension(c.clone()))
        .with_state(c)
}

/// A path as an error message repeats it: at most 80 characters.
fn clipped(path: &str) -> String {
    match path.char_indices().nth(80) {
        Some((at, _)) => format!("{}… ({} characters)", &path[..at], path.chars().count()),
        None => path.to_owned(),
    }
}

/// Any path the API does not have: a JSON 404, like every other error.
async fn unknown_route(uri: axum::http::Uri) -> axum::response::Response {
    let error = format!(
        "the API has no route {} (see /v1/openapi.json)",
        clipped(uri.path())
    );
    axum::response::IntoResponse::into_response((StatusCode::NOT_FOUND, Json(ApiError { error })))
}

/// A route called with a method it does not take: a JSON 405.
async fn wrong_method(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    let error = format!(
        "{method} is not a method of {} (see /v1/openapi.json)",
        clipped(uri.path())
    );
    axum::response::IntoResponse::into_response((
        StatusCode::METHOD_NOT_ALLOWED,
        Json(ApiError { error }),
    ))
}
