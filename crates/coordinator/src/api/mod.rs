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
//! | `GET /v1/modules`, `POST /v1/modules` | [`ModuleView`](crate::ModuleView) (list, one) |
//! | `GET /v1/groups`, `GET /v1/groups/{id}`, `POST /v1/groups` | [`GroupRecord`](crate::GroupRecord) (oldest first) |
//! | `GET /v1/wallets`, `GET /v1/wallets/{id}` | [`WalletView`](crate::WalletView): the record, how it was made, its group, its label and purpose in the policy in force, its addresses |
//! | `GET /v1/wallets/{id}/balances` | [`WalletBalances`](crate::WalletBalances): native coin and configured tokens, from the coordinator's chain RPC |
//! | `POST /v1/wallets`, `POST /v1/wallets/import`, `POST /v1/signatures` | [`JobRecord`]; a finished key generation's or import's result is a [`WalletCreated`](crate::WalletCreated) |
//! | `GET /v1/jobs?kind=&status=&wallet=&limit=` | [`JobRecord`] list, newest first, without events (limit 1 to 1000, default 100) |
//! | `GET /v1/jobs/{id}` | [`JobView`](crate::JobView): the job, its events, its result |
//! | `GET /v1/transfers`, `GET /v1/transfers/{id}`, `POST /v1/transfers/…` | [`TransferRecord`](crate::TransferRecord) |
//! | `GET /v1/exchanges/{name}/balances` | [`ExchangeBalances`](crate::ExchangeBalances): read by a module through its own connector and read-only key |
//! | `POST /v1/exchanges/{name}/credential` | [`RegisteredCredential`](crate::transfers::RegisteredCredential) |
//! | `GET /v1/tokens`, `POST /v1/tokens` | [`TokenView`] list, [`CreatedToken`] |
//! | `GET /v1/policies` | [`Policies`](crate::policy::Policies) |
//! | `GET /v1/policies/{hash}`, `POST /v1/policies`, `POST /v1/policies/{hash}/signatures` | [`PolicyView`](crate::policy::PolicyView) |

mod layers;
mod openapi;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use rand::RngCore;
use serde::{Deserialize, Serialize};

pub use layers::{Caller, JsonBody, RequestScope};
pub use openapi::openapi_document;

use crate::records::{JobKind, JobRecord, JobStatus};
use crate::store::JobFilter;
use crate::transfers::{CredentialRequest, DepositRequest, WithdrawalRequest};
use crate::{
    Coordinator, CreateGroup, CreateWallet, EnrollModule, Error, ImportWallet, SignRequest,
};

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// A sentence that says what is wrong.
    pub error: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.http_status();
        let body = ApiError {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

/// A handler's answer: a status and a JSON body.
type Answer = Result<(StatusCode, Json<serde_json::Value>), Error>;

fn answer<T: Serialize>(status: StatusCode, v: &T) -> Answer {
    Ok((status, Json(serde_json::to_value(v).unwrap_or_default())))
}

fn ok<T: Serialize>(v: &T) -> Answer {
    answer(StatusCode::OK, v)
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_document())
}

async fn enroll(State(c): State<Coordinator>, JsonBody(r): JsonBody<EnrollModule>) -> Answer {
    answer(StatusCode::CREATED, &c.enroll(r).await?)
}

async fn list_modules(State(c): State<Coordinator>) -> Answer {
    ok(&c.modules().await?)
}

async fn create_group(State(c): State<Coordinator>, JsonBody(r): JsonBody<CreateGroup>) -> Answer {
    answer(StatusCode::ACCEPTED, &c.create_group(r).await?)
}

async fn get_group(State(c): State<Coordinator>, Path(id): Path<String>) -> Answer {
    ok(&c.group(&id).await?)
}

async fn create_wallet(
    State(c): State<Coordinator>,
    scope: RequestScope,
    JsonBody(r): JsonBody<CreateWallet>,
) -> Answer {
    answer(StatusCode::ACCEPTED, &c.create_wallet(r, &scope.0).await?)
}

async fn import_wallet(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<ImportWallet>,
) -> Answer {
    answer(StatusCode::ACCEPTED, &c.import_wallet(r).await?)
}

async fn list_wallets(State(c): State<Coordinator>) -> Answer {
    ok(&c.wallet_views().await?)
}

async fn get_wallet(State(c): State<Coordinator>, Path(id): Path<String>) -> Answer {
    ok(&c.wallet_view(&id).await?)
}

async fn wallet_balances(State(c): State<Coordinator>, Path(id): Path<String>) -> Answer {
    ok(&c.wallet_balances(&id).await?)
}

async fn list_groups(State(c): State<Coordinator>) -> Answer {
    ok(&c.groups().await?)
}

async fn exchange_balances(State(c): State<Coordinator>, Path(name): Path<String>) -> Answer {
    ok(&c.exchange_balances(&name).await?)
}

/// Reads `GET /v1/jobs`'s query: `kind`, `status`, `wallet` and `limit`, each at most once.
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

async fn list_jobs(State(c): State<Coordinator>, Query(q): Query<Vec<(String, String)>>) -> Answer {
    ok(&c.jobs(&job_filter(&q)?).await?)
}

async fn sign(State(c): State<Coordinator>, JsonBody(r): JsonBody<SignRequest>) -> Answer {
    let job: JobRecord = c.request_signature(r).await?;
    answer(StatusCode::ACCEPTED, &job)
}

/// `?wait=SECONDS` holds a GET until the job or transfer is final (or reaches `until`).
#[derive(serde::Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: Option<f64>,
    #[serde(default)]
    until: Option<String>,
}

fn wait_of(q: &WaitQuery, max: f64) -> Result<std::time::Duration, Error> {
    let wait = q.wait.unwrap_or(0.0);
    if !(0.0..=max).contains(&wait) {
        return Err(Error::BadRequest(format!(
            "wait must be between 0 and {max} seconds"
        )));
    }
    Ok(std::time::Duration::from_secs_f64(wait))
}

async fn get_job(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Answer {
    ok(&c.job_wait(&id, wait_of(&q, 60.0)?).await?)
}

async fn deposit(State(c): State<Coordinator>, JsonBody(r): JsonBody<DepositRequest>) -> Answer {
    answer(StatusCode::ACCEPTED, &c.request_deposit(r).await?)
}

async fn withdraw(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<WithdrawalRequest>,
) -> Answer {
    answer(StatusCode::ACCEPTED, &c.request_withdrawal(r).await?)
}

async fn register_credential(
    State(c): State<Coordinator>,
    Path(name): Path<String>,
    JsonBody(r): JsonBody<CredentialRequest>,
) -> Answer {
    ok(&c.register_credential(&name, r).await?)
}

async fn list_transfers(State(c): State<Coordinator>) -> Answer {
    ok(&c.transfers().await?)
}

async fn get_transfer(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Answer {
    ok(&c
        .transfer_wait(&id, wait_of(&q, 300.0)?, q.until.as_deref())
        .await?)
}

/// Request to create an API token.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A name for it.
    pub name: String,
    /// Its role.
    pub role: TokenRole,
}

/// A token just created: the only time the token itself is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: TokenRole,
    /// The bearer token (`cct_…`); only its hash is kept.
    pub token: String,
}

/// An API token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: TokenRole,
    /// When it was created.
    pub created_at: String,
}

async fn create_token_route(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<CreateToken>,
) -> Answer {
    let token = create_token(&c, &r.name, r.role).await?;
    answer(
        StatusCode::CREATED,
        &CreatedToken {
            name: r.name,
            role: r.role,
            token,
        },
    )
}

async fn list_tokens(State(c): State<Coordinator>) -> Answer {
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
    ok(&list)
}

async fn propose_policy(
    State(c): State<Coordinator>,
    JsonBody(r): JsonBody<crate::policy::ProposePolicy>,
) -> Answer {
    answer(StatusCode::CREATED, &c.propose_policy(r).await?)
}

async fn sign_policy(
    State(c): State<Coordinator>,
    Path(hash): Path<String>,
    JsonBody(r): JsonBody<concord_wire::authority::Endorsement>,
) -> Answer {
    ok(&c.sign_policy(&hash, r).await?)
}

async fn list_policies(State(c): State<Coordinator>) -> Answer {
    ok(&c.policies().await?)
}

async fn get_policy(State(c): State<Coordinator>, Path(hash): Path<String>) -> Answer {
    ok(&c.policy(&hash).await?)
}

/// The API's routes: each behind the authentication layer with the role it needs, every
/// POST behind the idempotency layer.
pub fn router(c: Coordinator) -> Router {
    let auth = |role: TokenRole, m: MethodRouter<Coordinator>| {
        m.route_layer(axum::middleware::from_fn_with_state(
            (c.clone(), role),
            layers::authenticate,
        ))
    };
    let post_as = |role: TokenRole, m: MethodRouter<Coordinator>| {
        auth(
            role,
            m.route_layer(axum::middleware::from_fn_with_state(
                c.clone(),
                layers::idempotency,
            )),
        )
    };
    let view = |m| auth(TokenRole::Viewer, m);
    let op = |m| post_as(TokenRole::Operator, m);
    let trade = |m| post_as(TokenRole::Trader, m);
    let admin = |m| post_as(TokenRole::Admin, m);
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi))
        .route(
            "/v1/modules",
            op(post(enroll)).merge(view(get(list_modules))),
        )
        .route(
            "/v1/groups",
            op(post(create_group)).merge(view(get(list_groups))),
        )
        .route("/v1/groups/{id}", view(get(get_group)))
        .route(
            "/v1/wallets",
            op(post(create_wallet)).merge(view(get(list_wallets))),
        )
        .route("/v1/wallets/import", op(post(import_wallet)))
        .route("/v1/wallets/{id}", view(get(get_wallet)))
        .route("/v1/wallets/{id}/balances", view(get(wallet_balances)))
        .route("/v1/signatures", trade(post(sign)))
        .route("/v1/jobs", view(get(list_jobs)))
        .route("/v1/jobs/{id}", view(get(get_job)))
        .route("/v1/transfers", view(get(list_transfers)))
        .route("/v1/transfers/deposits", trade(post(deposit)))
        .route("/v1/transfers/withdrawals", trade(post(withdraw)))
        .route("/v1/transfers/{id}", view(get(get_transfer)))
        .route(
            "/v1/exchanges/{name}/credential",
            op(post(register_credential)),
        )
        .route(
            "/v1/exchanges/{name}/balances",
            view(get(exchange_balances)),
        )
        .route(
            "/v1/tokens",
            admin(post(create_token_route)).merge(auth(TokenRole::Admin, get(list_tokens))),
        )
        .route(
            "/v1/policies",
            admin(post(propose_policy)).merge(view(get(list_policies))),
        )
        .route("/v1/policies/{hash}", view(get(get_policy)))
        .route("/v1/policies/{hash}/signatures", admin(post(sign_policy)))
        .with_state(c)
}
