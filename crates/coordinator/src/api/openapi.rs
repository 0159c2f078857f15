//! The OpenAPI document of the REST API (written by hand; issue 13 generates it from the
//! handlers).

use crate::records::{GroupStatus, JobKind, JobStatus, WalletKind};
use crate::store::JobFilter;

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
    let schema_ref =
        |schema: &str| serde_json::json!({ "$ref": format!("#/components/schemas/{schema}") });
    let one = |desc: &str, schema: &str| serde_json::json!({ "description": desc, "content": { "application/json": { "schema": schema_ref(schema) } } });
    let many = |desc: &str, schema: &str| serde_json::json!({ "description": desc, "content": { "application/json": { "schema": { "type": "array", "items": schema_ref(schema) } } } });
    let name_param = serde_json::json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string" },
        "description": "The exchange connection, as the modules name it" });
    let names = |all: &[&str]| serde_json::json!(all);
    let kinds: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
    let statuses: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
    let job_query = serde_json::json!([
        { "name": "kind", "in": "query", "required": false, "schema": { "type": "string", "enum": names(&kinds) } },
        { "name": "status", "in": "query", "required": false, "schema": { "type": "string", "enum": names(&statuses) } },
        { "name": "wallet", "in": "query", "required": false, "schema": { "type": "string", "minLength": 1 },
            "description": "The wallet's jobs: signatures, presignatures, its import or the key generation that made it" },
        { "name": "limit", "in": "query", "required": false,
            "schema": { "type": "integer", "minimum": 1, "maximum": JobFilter::MAX_LIMIT, "default": JobFilter::DEFAULT_LIMIT } }
    ]);
    serde_json::json!({
        "openapi": "3.0.3",
        "info": { "title": "Concord coordinator API", "version": "1" },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas(),
        },
        "paths": {
            "/v1/health": { "get": { "summary": "Liveness", "security": [], "responses": { "200": obj("OK") } } },
            "/v1/openapi.json": { "get": { "summary": "This document", "security": [], "responses": { "200": obj("OpenAPI document") } } },
            "/v1/modules": {
                "get": { "summary": "Enrolled modules and whether each is connected", "security": auth, "responses": { "200": obj("Modules"), "401": err } },
                "post": { "summary": "Enroll a module (pins its identity key)", "security": auth, "parameters": [idem], "requestBody": body("EnrollModule"),
                    "responses": { "201": obj("Enrolled"), "400": err, "401": err, "409": err } } },
            "/v1/groups": {
                "get": { "summary": "Signer groups, oldest first", "security": auth, "responses": { "200": many("Groups", "GroupRecord"), "401": err } },
                "post": { "summary": "Create a signer group; its auxiliary material is prepared in the background", "security": auth,
                "parameters": [idem], "requestBody": body("CreateGroup"), "responses": { "202": one("Group", "GroupRecord"), "400": err, "401": err, "409": err } } },
            "/v1/groups/{id}": { "get": { "summary": "A group and its status", "security": auth, "parameters": [id_param], "responses": { "200": one("Group", "GroupRecord"), "404": err } } },
            "/v1/wallets": {
                "get": { "summary": "Wallets, oldest first: each with how it was made, its group, its label and purpose in the policy in force, and its addresses", "security": auth,
                    "responses": { "200": many("Wallets", "WalletView") } },
                "post": { "summary": "Create a wallet by distributed key generation", "security": auth, "parameters": [idem], "requestBody": body("CreateWallet"),
                    "responses": { "202": obj("Key-generation job"), "400": err, "404": err, "409": err } } },
            "/v1/wallets/import": { "post": { "summary": "Import an existing key, split and sealed per module by the importing tool (the key existed whole once), under an importer's signed intent", "security": auth,
                "parameters": [idem], "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                    "required": ["intent", "importer", "shards"] } } } },
                "responses": { "202": obj("Import job"), "400": err, "404": err, "409": err } } },
            "/v1/wallets/{id}": { "get": { "summary": "A wallet: how it was made, its group, its label and purpose in the policy in force, and its addresses", "security": auth,
                "parameters": [id_param], "responses": { "200": one("Wallet", "WalletView"), "404": err } } },
            "/v1/wallets/{id}/balances": { "get": { "summary": "An ecdsa-secp256k1 wallet's balances on the coordinator's chain: the native coin and every configured token, read through the coordinator's RPC endpoint", "security": auth,
                "parameters": [id_param], "responses": { "200": one("Balances", "WalletBalances"), "400": err, "404": err, "503": err } } },
            "/v1/signatures": { "post": { "summary": "Ask the wallet's modules to approve and sign a message", "security": auth, "parameters": [idem],
                "requestBody": body("SignRequest"), "responses": { "202": obj("Sign job"), "400": err, "404": err } } },
            "/v1/jobs": { "get": { "summary": "Jobs, newest first, without their events", "security": auth, "parameters": job_query,
                "responses": { "200": many("Jobs", "JobRecord"), "400": err } } },
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
            "/v1/exchanges/{name}/balances": { "get": { "summary": "The exchange account's balances (coins it holds, free or locked), read by a connected module through its own connector and read-only key", "security": auth,
                "parameters": [name_param], "responses": { "200": one("Balances", "ExchangeBalances"), "503": err } } },
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

/// The request bodies' and the read views' schemas.
fn schemas() -> serde_json::Value {
    let string = serde_json::json!({ "type": "string" });
    let strings = serde_json::json!({ "type": "array", "items": { "type": "string" } });
    let nullable = serde_json::json!({ "type": "string", "nullable": true });
    let kinds: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
    let statuses: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
    let group_statuses: Vec<&str> = GroupStatus::ALL.iter().map(|s| s.as_str()).collect();
    let wallet_kinds: Vec<&str> = WalletKind::ALL.iter().map(|k| k.as_str()).collect();
    serde_json::json!({
        "GroupRecord": { "type": "object", "required": ["id", "threshold", "size", "status", "aux_job_id", "members", "created_at"],
            "properties": { "id": string, "threshold": { "type": "integer" }, "size": { "type": "integer" },
                "status": { "type": "string", "enum": group_statuses }, "aux_job_id": nullable,
                "members": strings, "created_at": string } },
        "JobRecord": { "type": "object", "required": ["id", "kind", "group_id", "status", "created_at", "updated_at"],
            "properties": { "id": string, "kind": { "type": "string", "enum": kinds }, "group_id": string,
                "wallet_id": nullable, "scheme": nullable, "rule": nullable, "mode": nullable,
                "digest": { "type": "string", "nullable": true, "description": "hex" },
                "status": { "type": "string", "enum": statuses }, "signers": nullable, "error": nullable,
                "transfer_id": nullable, "created_at": string, "updated_at": string } },
        "WalletAddress": { "type": "object", "required": ["network", "kind", "address"],
            "properties": { "network": { "type": "string", "description": "the exchanges' network code, e.g. ETH" },
                "kind": { "type": "string", "description": "evm" },
                "address": { "type": "string", "description": "as the network writes it (EVM: EIP-55 checksummed)" } } },
        "WalletView": { "type": "object",
            "required": ["id", "group_id", "scheme", "public_key", "job_id", "created_at", "kind", "threshold", "members", "label", "purpose", "addresses"],
            "properties": { "id": string, "group_id": string,
                "scheme": { "type": "string", "enum": ["ecdsa-secp256k1", "schnorr-taproot", "ed25519"] },
                "public_key": { "type": "string", "description": "group public key, hex" },
                "job_id": { "type": "string", "description": "the job that made it" }, "created_at": string,
                "kind": { "type": "string", "enum": wallet_kinds }, "threshold": { "type": "integer" }, "members": strings,
                "label": { "type": "string", "nullable": true, "description": "its label in the policy in force; null when the policy does not name it" },
                "purpose": { "type": "object", "nullable": true, "required": ["kind"],
                    "description": "what the policy in force lets it do: {kind: trading, deposit_to, raw_messages} or {kind: exchange_credential, exchange, withdraw_to}; null: it signs nothing" },
                "addresses": { "type": "array", "items": { "$ref": "#/components/schemas/WalletAddress" } } } },
        "ChainBalance": { "type": "object", "required": ["coin", "asset", "amount", "raw"],
            "properties": { "coin": string, "asset": { "type": "string", "description": "native, or the token contract" },
                "amount": { "type": "string", "description": "in coin units, e.g. 1.5" },
                "raw": { "type": "string", "description": "in base units, a decimal integer" } } },
        "WalletBalances": { "type": "object", "required": ["wallet", "network", "address", "balances"],
            "properties": { "wallet": string, "network": string, "address": string,
                "balances": { "type": "array", "items": { "$ref": "#/components/schemas/ChainBalance" } } } },
        "Balance": { "type": "object", "required": ["asset", "free", "locked"],
            "properties": { "asset": string, "free": { "type": "string", "description": "decimal" },
                "locked": { "type": "string", "description": "decimal" } } },
        "ExchangeBalances": { "type": "object", "required": ["exchange", "module", "balances"],
            "properties": { "exchange": string, "module": { "type": "string", "description": "the module whose connector answered" },
                "balances": { "type": "array", "items": { "$ref": "#/components/schemas/Balance" } } } },
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
    })
}
