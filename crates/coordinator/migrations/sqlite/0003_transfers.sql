-- Transfers between wallets and exchanges (deposits and withdrawals). The record is one JSON
-- document rewritten at every step (kind and status are columns for queries); every step is
-- written before it is acted on.
CREATE TABLE transfers (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,                    -- deposit | withdrawal
    status      TEXT NOT NULL,
    record      TEXT NOT NULL,                    -- JSON TransferRecord
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX transfers_status ON transfers(status);

-- The next account nonce of each wallet on each chain, as this coordinator has used them.
CREATE TABLE wallet_nonces (
    wallet_id   TEXT NOT NULL REFERENCES wallets(id),
    chain_id    INTEGER NOT NULL,
    next_nonce  INTEGER NOT NULL,
    PRIMARY KEY (wallet_id, chain_id)
);

-- An exchange's withdraw-capable API key: an Ed25519 wallet of a signer group, registered at
-- the exchange under `api_key`.
CREATE TABLE exchange_credentials (
    exchange    TEXT PRIMARY KEY,
    wallet_id   TEXT NOT NULL REFERENCES wallets(id),
    api_key     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
