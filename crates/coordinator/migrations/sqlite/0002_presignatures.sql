-- The ECDSA presignature pool. The coordinator only tracks fingerprints; the secret halves
-- live in each signer's vault and are deleted there before use.
CREATE TABLE presignatures (
    fingerprint TEXT PRIMARY KEY,                 -- hex, identical at every signer
    wallet_id   TEXT NOT NULL REFERENCES wallets(id),
    signers     TEXT NOT NULL,                    -- JSON list of group indices
    status      TEXT NOT NULL,                    -- available | used
    job_id      TEXT,                             -- the sign job that used it
    created_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX presignatures_available ON presignatures(wallet_id, status, signers);

-- How a sign job signs: 'presigned' (default: from the pool when one fits) or 'interactive'.
ALTER TABLE jobs ADD COLUMN mode TEXT;
