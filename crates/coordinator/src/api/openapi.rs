//! The OpenAPI document of the REST API (written by hand; issue 13 generates it from the
//! handlers).

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
            "schemas": schemas(),
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

/// The request bodies' schemas.
fn schemas() -> serde_json::Value {
    serde_json::json!({
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
