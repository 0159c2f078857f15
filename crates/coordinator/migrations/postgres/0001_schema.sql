-- Concord coordinator schema for PostgreSQL: the same tables and meaning as the SQLite
-- migrations 0001-0005 (migrations/sqlite), written once in their final form. Integers are
-- BIGINT and binary values BYTEA so that both backends read back the same Rust types.

CREATE TABLE modules (
    id                    TEXT PRIMARY KEY,
    identity              BYTEA NOT NULL UNIQUE,
    sealing_key           BYTEA NOT NULL,
    sealing_key_signature BYTEA NOT NULL,
    enrolled_at           TEXT NOT NULL
);

CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    threshold   BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    status      TEXT NOT NULL,
    aux_job_id  TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES groups(id),
    idx         BIGINT NOT NULL,
    module_id   TEXT NOT NULL REFERENCES modules(id),
    PRIMARY KEY (group_id, idx)
);

CREATE TABLE wallets (
    id          TEXT PRIMARY KEY,
    group_id    TEXT NOT NULL REFERENCES groups(id),
    scheme      TEXT NOT NULL,
    public_key  BYTEA NOT NULL,
    job_id      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    group_id    TEXT NOT NULL,
    wallet_id   TEXT,
    scheme      TEXT,
    rule        TEXT,
    payload     BYTEA,
    digest      BYTEA,
    status      TEXT NOT NULL,
    session     BYTEA,
    signers     TEXT,
    result      BYTEA,
    error       TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    mode        TEXT,
    intent      BYTEA,
    attempts    BIGINT NOT NULL DEFAULT 0,
    transfer_id TEXT,
    owner       TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE job_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      TEXT NOT NULL REFERENCES jobs(id),
    module_id   TEXT,
    kind        TEXT NOT NULL,
    digest      BYTEA,
    detail      TEXT,
    signature   BYTEA,
    at          TEXT NOT NULL
);
CREATE INDEX job_events_by_job ON job_events(job_id, seq);

CREATE TABLE api_tokens (
    token_hash  BYTEA PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    role        TEXT NOT NULL DEFAULT 'admin'
);

CREATE TABLE idempotency (
    token_hash   BYTEA NOT NULL,
    route        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    status       BIGINT,
    response     BYTEA,
    created_ms   BIGINT NOT NULL,
    PRIMARY KEY (token_hash, route, key)
);

CREATE TABLE presignatures (
    fingerprint TEXT PRIMARY KEY,
    wallet_id   TEXT NOT NULL REFERENCES wallets(id),
    signers     TEXT NOT NULL,
    status      TEXT NOT NULL,
    job_id      TEXT,
    created_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX presignatures_available ON presignatures(wallet_id, status, signers);

CREATE TABLE transfers (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    record      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    wallet_id   TEXT NOT NULL DEFAULT '',
    created_us  BIGINT NOT NULL DEFAULT 0,
    owner       TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX transfers_status ON transfers(status);
CREATE INDEX transfers_queue ON transfers(wallet_id, kind, status, created_us);

CREATE TABLE wallet_nonces (
    wallet_id   TEXT NOT NULL REFERENCES wallets(id),
    chain_id    BIGINT NOT NULL,
    next_nonce  BIGINT NOT NULL,
    PRIMARY KEY (wallet_id, chain_id)
);

CREATE TABLE exchange_credentials (
    exchange    TEXT PRIMARY KEY,
    wallet_id   TEXT NOT NULL REFERENCES wallets(id),
    api_key     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE policies (
    hash        TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    document    TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX policies_by_version ON policies(version);

CREATE TABLE module_policies (
    module_id   TEXT PRIMARY KEY REFERENCES modules(id),
    policy_hash TEXT,
    version     BIGINT NOT NULL,
    offered     TEXT,
    error       TEXT,
    updated_at  TEXT NOT NULL
);
