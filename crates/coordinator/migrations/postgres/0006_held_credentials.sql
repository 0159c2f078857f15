-- An exchange credential's wallet is either a group's Ed25519 wallet or a held credential of
-- the policy in force (Kraken's HMAC secret, held by one module: issue 14), which has no row in
-- `wallets`: the policy's definition is its key. The reference to `wallets` goes; the
-- coordinator checks either kind when the credential is registered.
ALTER TABLE exchange_credentials DROP CONSTRAINT IF EXISTS exchange_credentials_wallet_id_fkey;
