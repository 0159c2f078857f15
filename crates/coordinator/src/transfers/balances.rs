//! Balances, for people to look at (nothing is decided on them): a wallet's on the
//! coordinator's chain, read through the coordinator's own RPC endpoint; an exchange
//! account's, read by a module through its own connector and read-only key (the coordinator
//! holds no exchange credential).

use concord_chain::ChainError;
use concord_exchange::Balance;
use concord_types::Scheme;
use concord_wire::rpc::{BalancesQuery, exchange_query};
use concord_wire::units::format_amount;

use super::ecdsa_address;
use crate::Error;
use crate::config::{NATIVE_COIN, NATIVE_DECIMALS};
use crate::engine::Engine;
use crate::records::{ChainBalance, ExchangeBalances, NATIVE_ASSET, WalletBalances};

/// Whether a balance is more than nothing (free or locked): exchanges list every coin they
/// offer, most of them at zero.
fn holds_any(b: &Balance) -> bool {
    let nonzero = |v: &str| v.bytes().any(|c| c.is_ascii_digit() && c != b'0');
    nonzero(&b.free) || nonzero(&b.locked)
}

impl Engine {
    /// A wallet's balances: an ECDSA wallet's EVM account and a Safe's (the native coin, then
    /// every configured token); a FROST Taproot wallet's P2TR and a multisig wallet's P2WSH
    /// coins on the UTXO chain.
    /// A wallet that does not exist is not found whatever the configuration; one that does,
    /// on a coordinator without a chain, is a conflict with its configuration.
    pub(crate) async fn wallet_balances(&self, id: &str) -> Result<WalletBalances, Error> {
        let no_chain = || {
            Error::Conflict(
                "this coordinator has no chain configured ([chain] in its configuration), so it cannot read wallet balances"
                    .into(),
            )
        };
        // A native multisig wallet: its Safe's balances, or its P2WSH's coins.
        if let Some(def) = self.multisig_def(id).await? {
            self.transfers.as_ref().ok_or_else(no_chain)?;
            if let Ok((_, safe, _)) = def.safe_owners() {
                return self.evm_balances(id, safe).await;
            }
            let (chain, script) = def.wallet().map_err(|e| Error::Internal(e.to_string()))?;
            return self.utxo_balances(id, chain, &script).await;
        }
        let wallet = self
            .store
            .wallet(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {id}")))?;
        let ctx = self.transfers.as_ref().ok_or_else(no_chain)?;
        match (wallet.scheme.parse::<Scheme>(), ctx.utxo.as_ref()) {
            (Ok(Scheme::EcdsaSecp256k1), _) => {
                let address = ecdsa_address(&wallet)?;
                self.evm_balances(&wallet.id, address).await
            }
            // A FROST Taproot wallet's P2TR coins on the UTXO chain.
            (Ok(scheme @ Scheme::SchnorrTaproot), Some(u)) => {
                let script =
                    concord_wire::payload::threshold_wallet_script(scheme, &wallet.public_key)
                        .map_err(|e| Error::Internal(e.to_string()))?;
                self.utxo_balances(&wallet.id, u.network, &script).await
            }
            _ => Err(Error::BadRequest(format!(
                "wallet {} is {}: it holds nothing on a chain configured here",
                wallet.id, wallet.scheme
            ))),
        }
    }

    /// An EVM address's balances: the native coin, then every configured token.
    async fn evm_balances(
        &self,
        wallet: &str,
        address: concord_chain::Address,
    ) -> Result<WalletBalances, Error> {
        let ctx = self.transfer_ctx()?;
        let unreadable = |coin: &str, e: ChainError| {
            Error::Unavailable(format!(
                "the {coin} balance of {address} could not be read: {e}"
            ))
        };
        let native = ctx
            .client
            .balance(address)
            .await
            .map_err(|e| unreadable(NATIVE_COIN, e))?;
        let tokens = futures::future::try_join_all(ctx.chain.tokens.iter().map(|t| async {
            let raw = ctx
                .client
                .token_balance(t.contract, address)
                .await
                .map_err(|e| unreadable(&t.coin, e))?;
            Ok::<_, Error>(ChainBalance {
                coin: t.coin.clone(),
                asset: t.contract.to_checksum(None),
                amount: format_amount(raw, t.decimals),
                raw: raw.to_string(),
            })
        }))
        .await?;
        let mut balances = vec![ChainBalance {
            coin: NATIVE_COIN.to_owned(),
            asset: NATIVE_ASSET.to_owned(),
            amount: format_amount(native, NATIVE_DECIMALS),
            raw: native.to_string(),
        }];
        balances.extend(tokens);
        Ok(WalletBalances {
            wallet: wallet.to_owned(),
            network: ctx.chain.network.clone(),
            address: address.to_checksum(None),
            balances,
        })
    }

    /// A UTXO wallet's confirmed coins, summed, as the coordinator's node reports them.
    async fn utxo_balances(
        &self,
        wallet: &str,
        chain: concord_chain::utxo::UtxoNetwork,
        script: &concord_chain::utxo::WalletScript,
    ) -> Result<WalletBalances, Error> {
        let ctx = self.transfer_ctx()?;
        let u = ctx
            .utxo
            .as_ref()
            .filter(|u| u.network == chain)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "wallet {wallet} is on {}, which this coordinator has no node for",
                    chain.name()
                ))
            })?;
        let script_pubkey = script.script_pubkey();
        let address = chain
            .address(&script_pubkey)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let coins = u.node.spendable(&script_pubkey, 1).await.map_err(|e| {
            Error::Unavailable(format!(
                "the {} balance of {address} could not be read: {e}",
                u.settings.coin
            ))
        })?;
        let sats: u64 = coins.iter().map(|c| c.txout.value.to_sat()).sum();
        Ok(WalletBalances {
            wallet: wallet.to_owned(),
            network: u.settings.network.clone(),
            address,
            balances: vec![ChainBalance {
                coin: u.settings.coin.clone(),
                asset: NATIVE_ASSET.to_owned(),
                amount: format_amount(concord_chain::U256::from(sats), 8),
                raw: sats.to_string(),
            }],
        })
    }

    /// An exchange account's balances, asked of the enrolled modules one after another
    /// until one's connector answers; coins at zero are left out.
    pub(crate) async fn exchange_balances(
        &self,
        exchange: &str,
    ) -> Result<ExchangeBalances, Error> {
        let modules: Vec<String> = self
            .store
            .modules()
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        if modules.is_empty() {
            // Nothing to wait for: only modules read exchange accounts, and none is enrolled.
            return Err(Error::Conflict(format!(
                "no module is enrolled: exchange {exchange}'s balances are read by a module, through its own connector"
            )));
        }
        let (module, all): (String, Vec<Balance>) = self
            .ask_any_named(
                &modules,
                exchange,
                exchange_query::Query::Balances(BalancesQuery {}),
            )
            .await?;
        Ok(ExchangeBalances {
            exchange: exchange.to_owned(),
            module,
            balances: all.into_iter().filter(holds_any).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_balances_are_told_apart() {
        let b = |free: &str, locked: &str| Balance {
            asset: "ETH".into(),
            free: free.into(),
            locked: locked.into(),
        };
        assert!(!holds_any(&b("0", "0")));
        assert!(!holds_any(&b("0.00000000", "0.00000000")));
        assert!(!holds_any(&b("", "")));
        assert!(holds_any(&b("0.00000001", "0")));
        assert!(holds_any(&b("0", "10")));
    }
}
