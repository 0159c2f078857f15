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
    /// A wallet's balances on the chain: the native coin, then every configured token.
    pub(crate) async fn wallet_balances(&self, id: &str) -> Result<WalletBalances, Error> {
        let wallet = self
            .store
            .wallet(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {id}")))?;
        if wallet.scheme != Scheme::EcdsaSecp256k1.as_str() {
            return Err(Error::BadRequest(format!(
                "wallet {} is {}: chain balances are read for {} wallets (EVM) only",
                wallet.id,
                wallet.scheme,
                Scheme::EcdsaSecp256k1
            )));
        }
        let ctx = self.transfers.as_ref().ok_or_else(|| {
            Error::Unavailable(
                "this coordinator has no chain configured ([chain] in its configuration), so it cannot read wallet balances"
                    .into(),
            )
        })?;
        let address = ecdsa_address(&wallet)?;
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
            wallet: wallet.id,
            network: ctx.chain.network.clone(),
            address: address.to_checksum(None),
            balances,
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
