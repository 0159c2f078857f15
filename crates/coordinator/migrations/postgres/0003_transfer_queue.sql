-- The order transfers were recorded in, per wallet (issue 11). A wallet's deposits take their
-- turn in this order: a deposit recorded after another never goes before it, even if its
-- request was stamped earlier (concurrent requests commit out of order). Transfers recorded
-- before this column existed keep 0 and go first, by request time.
CREATE TABLE transfer_queues (
    wallet_id   TEXT PRIMARY KEY,
    last_seq    BIGINT NOT NULL
);
ALTER TABLE transfers ADD COLUMN queue_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX transfers_queue_seq ON transfers(wallet_id, kind, queue_seq);
