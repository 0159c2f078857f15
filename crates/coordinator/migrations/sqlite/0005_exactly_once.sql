-- Exactly once (issue 9). Leases: several coordinators may share one database; each piece of
-- unfinished work (a transfer, a job) is driven by the one that holds its lease, renewed
-- while it runs and taken over by another once it expires. Transfer columns for the
-- per-wallet deposit queue and for claims. Idempotency keys scoped to the caller and the
-- route, reserved before the request is handled.
ALTER TABLE transfers ADD COLUMN wallet_id TEXT NOT NULL DEFAULT '';
ALTER TABLE transfers ADD COLUMN created_us INTEGER NOT NULL DEFAULT 0;   -- request time, µs since the epoch
ALTER TABLE transfers ADD COLUMN owner TEXT;
ALTER TABLE transfers ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
UPDATE transfers SET wallet_id = COALESCE(json_extract(record, '$.wallet_id'), ''),
                     created_us = CAST(COALESCE(json_extract(record, '$.created_ms'), 0) * 1000 AS INTEGER);
CREATE INDEX transfers_queue ON transfers(wallet_id, kind, status, created_us);

ALTER TABLE jobs ADD COLUMN transfer_id TEXT;
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;

DROP TABLE idempotency;
CREATE TABLE idempotency (
    token_hash   BLOB NOT NULL,
    route        TEXT NOT NULL,                   -- method and route template
    key          TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    status       INTEGER,                         -- NULL while the first request is handled
    response     BLOB,
    created_ms   INTEGER NOT NULL,
    PRIMARY KEY (token_hash, route, key)
);
