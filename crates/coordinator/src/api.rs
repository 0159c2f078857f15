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
//! with a sentence that says what is wrong.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::RngCore;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::{Coordinator, CreateGroup, CreateWallet, EnrollModule, Error, SignRequest};

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
        .add_token(&hash_token(&token), name, role.as_str())
        .await?;
    Ok(token)
}

fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl Error {
    /// The HTTP status this error answers with.
    fn http_status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Protocol(_) | Error::Storage(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.http_status();
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// An authenticated caller: its token's hash, name and role (put in the request by the
/// authentication layer).
#[derive(Debug, Clone)]
pub struct Caller {
    token_hash: Vec<u8>,
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: TokenRole,
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// The authentication layer: a known token whose role allows the route's.
async fn authenticate(
    State((c, needed)): State<(Coordinator, TokenRole)>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let header = match req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(h) => h,
        None => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "missing 'Authorization: Bearer <token>' header",
            );
        }
    };
    let Some(token) = header.strip_prefix("Bearer ") else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the Authorization header must be 'Bearer <token>'",
        );
    };
    let token_hash = hash_token(token.trim());
    let (name, role) = match c.store().token(&token_hash).await {
        Ok(Some((name, role))) => (name, role.parse().unwrap_or(TokenRole::Viewer)),
        Ok(None) => return refuse(StatusCode::UNAUTHORIZED, "unknown API token"),
        Err(e) => return e.into_response(),
    };
    if !TokenRole::allows(role, needed) {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "this API token ({name}) has the role '{}', and this needs '{}'",
                role.as_str(),
                needed.as_str()
            ),
        );
    }
    req.extensions_mut().insert(Caller {
        token_hash,
        name,
        role,
    });
    next.run(req).await
}

impl FromRequestParts<Coordinator> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &Coordinator) -> Result<Self, Response> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            Error::Internal("a route without the authentication layer".into()).into_response()
        })
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))
}

/// Runs a POST once per idempotency key: a repeat with the same body gets the stored
/// response; the same key with a different body is refused.
async fn idempotent<F, Fut>(
    c: &Coordinator,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
    handler: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, serde_json::Value), Error>>,
{
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 128)
    else {
        return Error::BadRequest(
            "every POST needs an 'Idempotency-Key' header (1 to 128 characters)".into(),
        )
        .into_response();
    };
    let request_hash = Sha256::digest(body).to_vec();
    match c.store().idempotent_response(&caller.token_hash, key).await {
        Ok(Some((stored_hash, status, response))) => {
            if stored_hash != request_hash {
                return Error::Conflict(format!(
                    "idempotency key '{key}' was already used for a different request"
                ))
                .into_response();
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let body: serde_json::Value = serde_json::from_slice(&response).unwrap_or_default();
            return (status, Json(body)).into_response();
        }
        Ok(None) => {}
        Err(e) => return e.into_response(),
    }
    let (status, value) = match handler().await {
        Ok(answer) => answer,
        // Server-side failures are not recorded: a retry with the same key may succeed.
        Err(e @ (Error::Storage(_) | Error::Internal(_) | Error::Unavailable(_))) => {
            return e.into_response();
        }
        Err(e) => {
            let status = e.http_status();
            (status, serde_json::json!({ "error": e.to_string() }))
        }
    };
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    if let Err(e) = c
        .store()
        .store_idempotent_response(
            &caller.token_hash,
            key,
            &request_hash,
            status.as_u16(),
            &bytes,
        )
        .await
    {
        return e.into_response();
    }
    (status, Json(value)).into_response()
}

/// An idempotent POST: parses the body as `R`, runs `op`, answers `status` with its result.
async fn idempotent_post<R, T, F, Fut>(
    c: &Coordinator,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
    status: StatusCode,
    op: F,
) -> Response
where
    R: DeserializeOwned,
    T: serde::Serialize,
    F: FnOnce(Coordinator, R) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    idempotent(c, caller, headers, body, || async {
        let req: R = parse(body)?;
        Ok((status, json(&op(c.clone(), req).await?)))
    })
    .await
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_document())
}

async fn enroll(
    State(c): State<Coordinator>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent_post(
        &c,
        &caller,
        &headers,
        &body,
        StatusCode::CREATED,
        |c, req: EnrollModule| async move { c.enroll(req).await },
    )
    .await
}

async fn list_modules(State(c): State<Coordinator>) -> Result<Json<serde_json::Value>, Error> {
    Ok(Json(json(&c.modules().await?)))
}

async fn create_group(
    State(c): State<Coordinator>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent_post(
        &c,
        &caller,
        &headers,
        &body,
        StatusCode::ACCEPTED,
        |c, req: CreateGroup| async move { c.create_group(req).await },
    )
    .await
}

async fn get_group(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Error> {
    Ok(Json(json(&c.group(&id).await?)))
}

async fn create_wallet(
    State(c): State<Coordinator>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent_post(
        &c,
        &caller,
        &headers,
        &body,
        StatusCode::ACCEPTED,
        |c, req: CreateWallet| async move { c.create_wallet(req).await },
    )
    .await
}

async fn import_wallet(
    State(c): State<Coordinator>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent_post(
        &c,
        &caller,
        &headers,
        &body,
        StatusCode::ACCEPTED,
        |c, req: crate::ImportWallet| async move { c.import_wallet(req).await },
    )
    .await
}

async fn list_wallets(State(c): State<Coordinator>) -> Result<Json<serde_json::Value>, Error> {
    Ok(Json(json(&c.wallets().await?)))
}

async fn get_wallet(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Error> {
    Ok(Json(json(&c.wallet(&id).await?)))
}

async fn sign(
    State(c): State<Coordinator>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent_post(
        &c,
        &caller,
        &headers,
        &body,
        StatusCode::ACCEPTED,
        |c, req: SignRequest| async move { c.request_signature(req).await },
    )
    .await
}

/// `?wait=SECONDS` (at most 60) holds the request until the job finishes or fails.
#[derive(serde::Deserialize)]
struct JobQuery {
    #[serde(default)]
    wait: Option<f64>,
}

async fn get_job(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<JobQuery>,
) -> Result<Json<serde_json::Value>, Error> {
    let wait = q.wait.unwrap_or(0.0);
    if !(0.0..=60.0).contains(&wait) {
        return Err(Error::BadRequest(
            "wait must be between 0 and 60 seconds".into(),
        ));
    }
    let view = c
        .job_wait(&id, std::time::Duration::from_secs_f64(wait))
        .await?;
    Ok(Json(json(&view)))
}

async fn deposit(
    State(c): State<Coordinator>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent_post(
        &c,
        &caller,
        &headers,
        &body,
        StatusCode::ACCEPTED,
        |c, req: crate::transfers::DepositRequest| async move { c.request_deposit(req).await },
    )
    .await
}

async fn withdraw(
    State(c): State<Coordinator>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent_post(
        &c,
        &caller,
        &headers,
        &body,
        StatusCode::ACCEPTED,
        |c, req: crate::transfers::WithdrawalRequest| async move {
            c.request_withdrawal(req).await
        },
    )
    .await
}

async fn register_credential(
    State(c): State<Coordinator>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent_post(
        &c,
        &caller,
        &headers,
        &body,
        StatusCode::OK,
        move |c, req: crate::transfers::CredentialRequest| async move {
            c.register_credential(&name, req).await
        },
    )
    .await
}

async fn list_transfers(State(c): State<Coordinator>) -> Result<Json<serde_json::Value>, Error> {
    Ok(Json(json(&c.transfers().await?)))
}

/// `?wait=SECONDS` (at most 300) holds the request until the transfer reaches a final
/// status, or the status named by `until`.
#[derive(serde::Deserialize)]
struct TransferQuery {
    #[serde(default)]
    wait: Option<f64>,
    #[serde(default)]
    until: Option<String>,
}

async fn get_transfer(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<TransferQuery>,
) -> Result<Json<serde_json::Value>, Error> {
    let wait = q.wait.unwrap_or(0.0);
    if !(0.0..=300.0).contains(&wait) {
        return Err(Error::BadRequest(
            "wait must be between 0 and 300 seconds".into(),
        ));
    }
    let t = c
        .transfer_wait(
            &id,
            std::time::Duration::from_secs_f64(wait),
            q.until.as_deref(),
        )
        .await?;
    Ok(Json(json(&t)))
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

async fn create_token_route(
    State(c): State<Coordinator>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent_post(
        &c,
        &caller,
        &headers,
        &body,
        StatusCode::CREATED,
        |c, req: CreateToken| async move {
            let token = create_token(&c, &req.name, req.role).await?;
            Ok(serde_json::json!({"name": req.name, "role": req.role, "token": token}))
        },
    )
    .await
}

async fn list_tokens(State(c): State<Coordinator>) -> Result<Json<serde_json::Value>, Error> {
    let list: Vec<serde_json::Value> = c
        .store()
        .tokens()
        .await?
        .into_iter()
        .map(|(name, role, created_at)| serde_json::json!({"name": name, "role": role, "created_at": created_at}))
        .collect();
    Ok(Json(serde_json::Value::Array(list)))
}

async fn propose_policy(
    State(c): State<Coordinator>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent_post(
        &c,
        &caller,
        &headers,
        &body,
        StatusCode::CREATED,
        |c, req: crate::policy::ProposePolicy| async move { c.propose_policy(req).await },
    )
    .await
}

async fn sign_policy(
    State(c): State<Coordinator>,
    caller: Caller,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent_post(
        &c,
        &caller,
        &headers,
        &body,
        StatusCode::OK,
        move |c, req: concord_wire::authority::Endorsement| async move {
            c.sign_policy(&hash, req).await
        },
    )
    .await
}

async fn list_policies(State(c): State<Coordinator>) -> Result<Json<serde_json::Value>, Error> {
    Ok(Json(c.policies().await?))
}

async fn get_policy(
    State(c): State<Coordinator>,
    Path(hash): Path<String>,
) -> Result<Json<serde_json::Value>, Error> {
    Ok(Json(json(&c.policy(&hash).await?)))
}

/// The API's routes, each behind the authentication layer with the role it needs.
pub fn router(c: Coordinator) -> Router {
    use axum::routing::MethodRouter;
    let auth = |role: TokenRole, m: MethodRouter<Coordinator>| {
        m.route_layer(axum::middleware::from_fn_with_state(
            (c.clone(), role),
            authenticate,
        ))
    };
    let view = |m| auth(TokenRole::Viewer, m);
    let op = |m| auth(TokenRole::Operator, m);
    let trade = |m| auth(TokenRole::Trader, m);
    let admin = |m| auth(TokenRole::Admin, m);
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi))
        .route(
            "/v1/modules",
            op(post(enroll)).merge(view(get(list_modules))),
        )
        .route("/v1/groups", op(post(create_group)))
        .route("/v1/groups/{id}", view(get(get_group)))
        .route(
            "/v1/wallets",
            op(post(create_wallet)).merge(view(get(list_wallets))),
        )
        .route("/v1/wallets/import", op(post(import_wallet)))
        .route("/v1/wallets/{id}", view(get(get_wallet)))
        .route("/v1/signatures", trade(post(sign)))
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
            "/v1/tokens",
            admin(post(create_token_route)).merge(admin(get(list_tokens))),
        )
        .route(
            "/v1/policies",
            admin(post(propose_policy)).merge(view(get(list_policies))),
        )
        .route("/v1/policies/{hash}", view(get(get_policy)))
        .route("/v1/policies/{hash}/signatures", admin(post(sign_policy)))
        .with_state(c)
}

/// The OpenAPI 3.0 document of this API.
pub fn openapi_document() -> serde_json::Value {
    let auth = serde_json::json!([{ "bearer": [] }]);
    let idem = serde_json::json!({
        "name": "Idempotency-Key", "in": "header", "required": true,
        "schema": { "type": "string", "minLength": 1, "maxLength": 128 },
        "description": "Repeating a POST with the same key and body returns the first response."
    });
    let id_param = serde_json::json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } });
    let err = serde_json::json!({ "description": "Error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let obj = |desc: &str| serde_json::json!({ "description": desc, "content": { "application/json": { "schema": { "type": "object" } } } });
    let body = |schema: &str| serde_json::json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    serde_json::json!({
        "openapi": "3.0.3",
        "info": { "title": "Concord coordinator API", "version": "1" },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "EnrollModule": { "type": "object", "required": ["id", "identity", "sealing_key", "sealing_key_signature"],
                    "properties": { "id": { "type": "string" }, "identity": { "type": "string", "description": "Ed25519 identity key, hex" },
                        "sealing_key": { "type": "string", "description": "X25519 sealing key, hex" },
                        "sealing_key_signature": { "type": "string", "description": "identity signature over the sealing key, hex" } } },
                "CreateGroup": { "type": "object", "required": ["id", "threshold", "members"],
                    "properties": { "id": { "type": "string" }, "threshold": { "type": "integer", "minimum": 2 },
                        "members": { "type": "array", "items": { "type": "string" } } } },
                "CreateWallet": { "type": "object", "required": ["group", "scheme"],
                    "properties": { "group": { "type": "string" },
                        "scheme": { "type": "string", "enum": ["ecdsa-secp256k1", "schnorr-taproot", "ed25519"] } } },
                "SignedIntent": { "type": "object", "required": ["intent", "signatures"],
                    "description": "A request signed by its requester (first signature) and co-signing approvers; modules check it against their own admin-signed policy",
                    "properties": { "intent": { "type": "object", "required": ["version", "id", "created_at", "expires_at", "action"] },
                        "signatures": { "type": "array", "items": { "type": "object", "required": ["key", "signature"] } } } },
                "SignRequest": { "type": "object", "required": ["intent"],
                    "properties": { "intent": { "$ref": "#/components/schemas/SignedIntent" },
                        "mode": { "type": "string", "enum": ["presigned", "interactive"] } } },
                "TransferRequest": { "type": "object", "required": ["intent"],
                    "properties": { "intent": { "$ref": "#/components/schemas/SignedIntent" },
                        "mode": { "type": "string", "enum": ["presigned", "interactive"] } } },
                "CreateToken": { "type": "object", "required": ["name", "role"],
                    "properties": { "name": { "type": "string" }, "role": { "type": "string", "enum": ["admin", "operator", "trader", "viewer"] } } },
                "ProposePolicy": { "type": "object", "required": ["policy"], "properties": { "policy": { "type": "object" } } },
                "Endorsement": { "type": "object", "required": ["key", "signature"],
                    "properties": { "key": { "type": "string", "description": "Ed25519 public key, hex" }, "signature": { "type": "string", "description": "hex" } } }
            }
        },
        "paths": {
            "/v1/health": { "get": { "summary": "Liveness", "security": [], "responses": { "200": obj("OK") } } },
            "/v1/openapi.json": { "get": { "summary": "This document", "security": [], "responses": { "200": obj("OpenAPI document") } } },
            "/v1/modules": {
                "get": { "summary": "Enrolled modules and whether each is connected", "security": auth, "responses": { "200": obj("Modules"), "401": err } },
                "post": { "summary": "Enroll a module (pins its identity key)", "security": auth, "parameters": [idem], "requestBody": body("EnrollModule"),
                    "responses": { "201": obj("Enrolled"), "400": err, "401": err, "409": err } } },
            "/v1/groups": { "post": { "summary": "Create a signer group; its auxiliary material is prepared in the background", "security": auth,
                "parameters": [idem], "requestBody": body("CreateGroup"), "responses": { "202": obj("Group"), "400": err, "401": err, "409": err } } },
            "/v1/groups/{id}": { "get": { "summary": "A group and its status", "security": auth, "parameters": [id_param], "responses": { "200": obj("Group"), "404": err } } },
            "/v1/wallets": {
                "get": { "summary": "Wallets", "security": auth, "responses": { "200": obj("Wallets") } },
                "post": { "summary": "Create a wallet by distributed key generation", "security": auth, "parameters": [idem], "requestBody": body("CreateWallet"),
                    "responses": { "202": obj("Key-generation job"), "400": err, "404": err, "409": err } } },
            "/v1/wallets/import": { "post": { "summary": "Import an existing key, split and sealed per module by the importing tool (the key existed whole once), under an importer's signed intent", "security": auth,
                "parameters": [idem], "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                    "required": ["intent", "importer", "shards"] } } } },
                "responses": { "202": obj("Import job"), "400": err, "404": err, "409": err } } },
            "/v1/wallets/{id}": { "get": { "summary": "A wallet", "security": auth, "parameters": [id_param], "responses": { "200": obj("Wallet"), "404": err } } },
            "/v1/signatures": { "post": { "summary": "Ask the wallet's modules to approve and sign a message", "security": auth, "parameters": [idem],
                "requestBody": body("SignRequest"), "responses": { "202": obj("Sign job"), "400": err, "404": err } } },
            "/v1/jobs/{id}": { "get": { "summary": "A job, its events (approvals, dissents…) and result; ?wait=SECONDS holds the request until it ends", "security": auth,
                "parameters": [id_param, { "name": "wait", "in": "query", "required": false, "schema": { "type": "number", "minimum": 0, "maximum": 60 } }],
                "responses": { "200": obj("Job"), "404": err } } },
            "/v1/transfers": { "get": { "summary": "Transfers, newest first", "security": auth, "responses": { "200": obj("Transfers") } } },
            "/v1/transfers/deposits": { "post": { "summary": "Deposit from a wallet to an exchange (trader role; a trader's signed deposit intent; its id is the transfer's)", "security": auth,
                "parameters": [idem], "requestBody": body("TransferRequest"), "responses": { "202": obj("Transfer"), "400": err, "403": err, "404": err, "409": err } } },
            "/v1/transfers/withdrawals": { "post": { "summary": "Withdraw from an exchange to an address-book entry (trader role; a trader's signed withdraw intent)", "security": auth,
                "parameters": [idem], "requestBody": body("TransferRequest"), "responses": { "202": obj("Transfer"), "400": err, "403": err, "404": err, "409": err } } },
            "/v1/transfers/{id}": { "get": { "summary": "A transfer; ?wait=SECONDS holds the request until it is final (or reaches ?until=STEP)", "security": auth,
                "parameters": [id_param], "responses": { "200": obj("Transfer"), "404": err } } },
            "/v1/exchanges/{name}/credential": { "post": { "summary": "Register the exchange's withdraw key (the wallet the policy names as its withdraw key) and its API key string (operator role)", "security": auth,
                "parameters": [idem], "responses": { "200": obj("Registered"), "400": err, "403": err, "409": err } } },
            "/v1/tokens": {
                "get": { "summary": "API tokens: names and roles (admin role)", "security": auth, "responses": { "200": obj("Tokens"), "403": err } },
                "post": { "summary": "Create an API token with a role (admin role); the token is shown once", "security": auth, "parameters": [idem],
                    "requestBody": body("CreateToken"), "responses": { "201": obj("Token"), "400": err, "403": err } } },
            "/v1/policies": {
                "get": { "summary": "The policy in force and the newest proposal", "security": auth, "responses": { "200": obj("Policies") } },
                "post": { "summary": "Propose a policy (admin role); modules adopt it once a quorum of their admins signed it", "security": auth, "parameters": [idem],
                    "requestBody": body("ProposePolicy"), "responses": { "201": obj("Policy"), "400": err, "403": err, "409": err } } },
            "/v1/policies/{hash}": { "get": { "summary": "A policy, its signatures and each module's report", "security": auth,
                "parameters": [{ "name": "hash", "in": "path", "required": true, "schema": { "type": "string" } }], "responses": { "200": obj("Policy"), "404": err } } },
            "/v1/policies/{hash}/signatures": { "post": { "summary": "Add an admin's signature and offer the policy to the modules (admin role)", "security": auth,
                "parameters": [{ "name": "hash", "in": "path", "required": true, "schema": { "type": "string" } }, idem], "requestBody": body("Endorsement"),
                "responses": { "200": obj("Policy and each module's answer"), "400": err, "403": err, "404": err } } }
        }
    })
}
