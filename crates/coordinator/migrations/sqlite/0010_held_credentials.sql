-- An exchange credential's wallet is either a group's Ed25519 wallet or a held credential of
-- the policy in force (Kraken's HMAC secret, held by one module: issue 14), which has no row in
-- `wallets`: the policy's definition is its key. The reference to `wallets` goes; the
-- coordinator checks either kind when the credential is registered.
CREATE TABLE exchange_credentials_new (
    exchange    TEXT PRIMARY KEY,
    wallet_id   TEXT NOT NULL,
    api_key     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
INSERT INTO exchange_credentials_new (exchange, wallet_id, api_key, created_at)
    SELECT exchange, wallet_id, api_key, created_at FROM exchange_credentials;
DROP TABLE exchange_credentials;
ALTER TABLE exchange_credentials_new RENAME TO exchange_credentials;
