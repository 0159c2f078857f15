-- The next nonce of each EVM account that is not a wallet of this system, on each chain, as
-- this coordinator has used them (issue 12): the gas account that submits the Safe wallets'
-- execTransaction.
CREATE TABLE account_nonces (
    account     TEXT NOT NULL,
    chain_id    BIGINT NOT NULL,
    next_nonce  BIGINT NOT NULL,
    PRIMARY KEY (account, chain_id)
);
