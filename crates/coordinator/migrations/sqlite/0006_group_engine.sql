-- The threshold-ECDSA engine of a signer group (issue 11). Groups made before engines could
-- be chosen ran cggmp21.
ALTER TABLE groups ADD COLUMN engine TEXT NOT NULL DEFAULT 'cggmp21';
