-- Concord coordinator schema, version 1. Every job step is written before it is acted on.

CREATE TABLE modules (
    id                    TEXT PRIMARY KEY,
    identity              BLOB NOT NULL UNIQUE,   -- Ed25519 public key (TLS pin)
    sealing_key           BLOB NOT NULL,          -- X25519 public key peers seal to
    sealing_key_signature BLOB NOT NULL,          -- identity's signature over sealing_key
    enrolled_at           TEXT NOT NULL
);

CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    threshold   INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    status      TEXT NOT NULL,                    -- preparing | ready | failed
    aux_job_id  TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES groups(id),
    idx         INTEGER NOT NULL,
    module_id   TEXT NOT NULL REFERENCES modules(id),
    PRIMARY KEY (group_id, idx)
);

CREATE TABLE wallets (
    id          TEXT PRIMARY KEY,                 -- hex wallet id (hash of scheme and key)
    group_id    TEXT NOT NULL REFERENCES groups(id),
    scheme      TEXT NOT NULL,
    public_key  BLOB NOT NULL,
    job_id      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,                    -- aux_info | keygen | sign
    group_id    TEXT NOT NULL,
    wallet_id   TEXT,
    scheme      TEXT,
    rule        TEXT,                             -- all | threshold (sign jobs)
    payload     BLOB,                             -- canonical signing payload (sign jobs)
    digest      BLOB,                             -- digest the coordinator computed
    status      TEXT NOT NULL,                    -- pending | approving | signing | done | failed
    session     BLOB,                             -- current protocol session id
    signers     TEXT,                             -- JSON list of group indices
    result      BLOB,                             -- JSON result
    error       TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE job_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL REFERENCES jobs(id),
    module_id   TEXT,
    kind        TEXT NOT NULL,                    -- approval | refusal | dissent | progress | result | failure | note
    digest      BLOB,
    detail      TEXT,
    signature   BLOB,
    at          TEXT NOT NULL
);
CREATE INDEX job_events_by_job ON job_events(job_id, seq);

CREATE TABLE api_tokens (
    token_hash  BLOB PRIMARY KEY,                 -- SHA-256 of the bearer token
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE idempotency (
    token_hash  BLOB NOT NULL,
    key         TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    status      INTEGER NOT NULL,
    response    BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (token_hash, key)
);
