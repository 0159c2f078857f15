//! The module's own view of the outside world, and the checks it runs on transfers with it.
//!
//! A module never takes the coordinator's word for a destination: it asks the exchange
//! through its own connector and read-only key, reads the chain through its own RPC endpoint,
//! derives the wallet's address from the group key in its own share, and compares.

use std::collections::HashMap;
use std::sync::Arc;

use concord_chain::{Address, Asset, EvmClient, FeePolicy};
use concord_exchange::binance::{BinanceClient, WithdrawParams};
use concord_exchange::kraken::KrakenClient;
use concord_exchange::{Connector, DepositAddress};
use concord_exchange::{Ed25519Signer, HmacSha256Signer, RequestSigner};
use concord_wire::payload::{Destination, SigningPayload};
use concord_wire::rpc::{ExchangeAnswer, ExchangeQuery, exchange_query};
use tokio::sync::OnceCell;

use crate::Error;
use crate::config::{ChainConfig, Config, LocalChecks, UtxoConfig};
use crate::state::State;
use concord_chain::litecoind::{COINBASE_MATURITY, UtxoNode};
use concord_chain::utxo::bitcoin::{Amount, FeeRate};
use concord_chain::utxo::{
    FeeCap, SpendExpectation, UtxoError, UtxoNetwork, WalletScript, check_spend,
};

/// Decimals of the chain's native coin (ETH).
const NATIVE_DECIMALS: u8 = 18;
/// The native coin's exchange code.
const NATIVE_COIN: &str = "ETH";

/// The chain as this module sees it.
pub(crate) struct ChainView {
    config: ChainConfig,
    client: EvmClient,
    /// The chain id the node reports, asked once.
    node_chain_id: OnceCell<u64>,
}

/// A UTXO chain as this module sees it.
pub(crate) struct UtxoView {
    config: UtxoConfig,
    chain: UtxoNetwork,
    node: UtxoNode,
    /// The node's chain name (`main`, `test`, `regtest`), asked once.
    node_chain: OnceCell<String>,
}

/// Exchanges and chains, through this module's own connections.
#[derive(Default)]
pub(crate) struct Outside {
    chain: Option<ChainView>,
    utxo: Option<UtxoView>,
    exchanges: HashMap<String, Arc<dyn Connector>>,
    /// Each exchange connection's API kind (`binance`, `kraken`, `coinbase`), by name.
    kinds: HashMap<String, String>,
    /// The Coinbase connections, with the host their sends' tokens must name.
    coinbase: HashMap<String, CoinbaseView>,
    /// The Kraken connections, with this module's read key.
    kraken: HashMap<String, Arc<KrakenClient>>,
    /// The Kraken connections whose withdraw key this module holds whole (the holder of
    /// the policy's held credential): used only by [`crate::held::send`].
    kraken_withdraw: HashMap<String, Arc<KrakenClient>>,
    /// Deposit addresses this module's own connector gave it, with when: a deposit's
    /// approval reuses the one fetched moments before for the same deposit's resolution
    /// (never older than [`RECENT_ADDRESS`]) instead of asking the exchange twice.
    recent: std::sync::Mutex<HashMap<AddressKey, (std::time::Instant, DepositAddress)>>,
}

/// A Coinbase connection: this module's own client (read key) and the API host a send's
/// token must name.
pub(crate) struct CoinbaseView {
    pub(crate) client: Arc<concord_exchange::coinbase::CoinbaseClient>,
    pub(crate) host: String,
}

/// A Coinbase send as a proposal asks for it: the token's claims and the body.
pub(crate) struct CoinbaseSend {
    pub(crate) claims: concord_exchange::coinbase::RequestClaims,
    pub(crate) body: concord_exchange::coinbase::SendBody,
}

/// (exchange, coin, network).
type AddressKey = (String, String, String);

/// How long a deposit address this module fetched itself stands for a deposit's approval.
const RECENT_ADDRESS: std::time::Duration = std::time::Duration::from_secs(5);

impl Outside {
    /// The UTXO chain this module checks, if its exchanges' network code is `network`.
    pub(crate) fn utxo_network(&self, network: &str) -> Option<UtxoNetwork> {
        self.utxo
            .as_ref()
            .filter(|u| u.config.network == network)
            .map(|u| u.chain)
    }

    /// Builds the connections the configuration names, with read keys from the vault.
    pub(crate) fn build(config: &Config, state: &State) -> Result<Outside, Error> {
        let chain = match &config.chain {
            Some(c) => Some(ChainView {
                client: EvmClient::new(&c.rpc_url).map_err(|e| {
                    Error::Config(format!("the chain RPC URL {} is unusable: {e}", c.rpc_url))
                })?,
                config: c.clone(),
                node_chain_id: OnceCell::new(),
            }),
            None => None,
        };
        let mut exchanges: HashMap<String, Arc<dyn Connector>> = HashMap::new();
        let mut coinbase = HashMap::new();
        let mut kraken = HashMap::new();
        let mut kraken_withdraw = HashMap::new();
        let kinds = config
            .exchanges
            .iter()
            .map(|x| (x.name.clone(), x.kind.clone()))
            .collect();
        for x in &config.exchanges {
            if !matches!(x.kind.as_str(), "binance" | "kraken" | "coinbase") {
                return Err(Error::Config(format!(
                    "exchange {}: the API kind {:?} is not supported (supported: binance, kraken, coinbase)",
                    x.name, x.kind
                )));
            }
            let Some(secret) = state.exchange_secret(&x.name)? else {
                tracing::warn!(exchange = %x.name, "no read-key secret in the vault for this exchange; run `concord module exchange-key`");
                continue;
            };
            let secret = std::str::from_utf8(&secret).map_err(|_| {
                Error::Config(format!(
                    "exchange {}: the read key's secret in the vault is not text",
                    x.name
                ))
            })?;
            let unusable = |e: concord_exchange::ExchangeError| {
                Error::Config(format!(
                    "exchange {}: the read key is unusable: {e}",
                    x.name
                ))
            };
            match x.kind.as_str() {
                // Kraken: the key and its HMAC secret (base64, as Kraken shows it).
                "kraken" => {
                    let client = Arc::new(
                        KrakenClient::new(&x.url, &x.read_api_key, secret).map_err(unusable)?,
                    );
                    kraken.insert(x.name.clone(), client.clone());
                    exchanges.insert(x.name.clone(), client);
                    if let Some(key) = &x.withdraw_api_key {
                        let Some(w) = state.withdraw_secret(&x.name)? else {
                            return Err(Error::Config(format!(
                                "exchange {}: withdraw_api_key is set and its secret is not in the vault; run `concord module exchange-key --withdraw`",
                                x.name
                            )));
                        };
                        let w = std::str::from_utf8(&w).map_err(|_| {
                            Error::Config(format!(
                                "exchange {}: the withdraw key's secret in the vault is not text",
                                x.name
                            ))
                        })?;
                        let client = KrakenClient::new(&x.url, key, w).map_err(|e| {
                            Error::Config(format!(
                                "exchange {}: the withdraw key is unusable: {e}",
                                x.name
                            ))
                        })?;
                        kraken_withdraw.insert(x.name.clone(), Arc::new(client));
                    }
                    continue;
                }
                // Coinbase: a CDP key (its name, and its secret as the portal gives it).
                "coinbase" => {
                    let key =
                        concord_exchange::coinbase::CdpKey::from_secret(&x.read_api_key, secret)
                            .map_err(unusable)?;
                    let client = Arc::new(
                        concord_exchange::coinbase::CoinbaseClient::new(&x.url, Arc::new(key))
                            .map_err(unusable)?,
                    );
                    let host = x
                        .api_host
                        .clone()
                        .unwrap_or_else(|| client.host().to_owned());
                    coinbase.insert(
                        x.name.clone(),
                        CoinbaseView {
                            client: client.clone(),
                            host,
                        },
                    );
                    exchanges.insert(x.name.clone(), client);
                    continue;
                }
                _ => {}
            }
            let signer: Arc<dyn RequestSigner> = match x.read_key_type.as_str() {
                "hmac" => Arc::new(HmacSha256Signer::new(secret).map_err(|e| {
                    Error::Config(format!(
                        "exchange {}: the read key is unusable: {e}",
                        x.name
                    ))
                })?),
                "ed25519" => Arc::new(Ed25519Signer::from_pkcs8_pem(secret).map_err(|e| {
                    Error::Config(format!(
                        "exchange {}: the read key is unusable (a PKCS#8 PEM is expected): {e}",
                        x.name
                    ))
                })?),
                other => {
                    return Err(Error::Config(format!(
                        "exchange {}: the read key type {other:?} is not hmac or ed25519",
                        x.name
                    )));
                }
            };
            let client = BinanceClient::new(&x.url, x.read_api_key.clone(), signer)
                .map_err(|e| Error::Config(format!("exchange {}: {e}", x.name)))?;
            exchanges.insert(x.name.clone(), Arc::new(client));
        }
        let utxo = match &config.utxo {
            Some(u) => Some(UtxoView {
                chain: u
                    .chain
                    .parse()
                    .map_err(|e: UtxoError| Error::Config(format!("utxo.chain: {e}")))?,
                node: UtxoNode::new(&u.rpc_url, &u.rpc_user, &u.rpc_password),
                config: u.clone(),
                node_chain: OnceCell::new(),
            }),
            None => None,
        };
        Ok(Outside {
            chain,
            utxo,
            exchanges,
            kinds,
            coinbase,
            kraken,
            kraken_withdraw,
            recent: Default::default(),
        })
    }

    fn chain(&self) -> Result<&ChainView, String> {
        self.chain
            .as_ref()
            .ok_or_else(|| "this module has no chain configured".to_owned())
    }

    fn connector(&self, exchange: &str) -> Result<&Arc<dyn Connector>, String> {
        self.exchanges
            .get(exchange)
            .ok_or_else(|| format!("this module has no connection to exchange {exchange:?}"))
    }

    /// The API kind of exchange connection `exchange` (`binance`, `kraken`, `coinbase`).
    pub(crate) fn kind(&self, exchange: &str) -> Result<&str, String> {
        self.kinds
            .get(exchange)
            .map(String::as_str)
            .ok_or_else(|| format!("this module has no connection to exchange {exchange:?}"))
    }

    /// This module's own Coinbase connection `exchange`.
    pub(crate) fn coinbase(&self, exchange: &str) -> Result<&CoinbaseView, String> {
        self.coinbase.get(exchange).ok_or_else(|| {
            format!("this module has no Coinbase connection {exchange:?} with a read key")
        })
    }

    /// This module's own Kraken connection `exchange` (read key).
    pub(crate) fn kraken(&self, exchange: &str) -> Result<&Arc<KrakenClient>, String> {
        self.kraken.get(exchange).ok_or_else(|| {
            format!("this module has no Kraken connection {exchange:?} with a read key")
        })
    }

    /// Kraken's funding method for `coin` on `network`, as this module's connection names it.
    pub(crate) fn kraken_method(
        &self,
        exchange: &str,
        coin: &str,
        network: &str,
    ) -> Result<String, String> {
        self.kraken(exchange)?
            .method(coin, network)
            .map_err(|e| describe(exchange, &e))
    }

    /// The Kraken withdraw key this module holds whole for `exchange`, if it is the holder.
    pub(crate) fn kraken_holder(&self, exchange: &str) -> Result<&Arc<KrakenClient>, String> {
        self.kraken_withdraw.get(exchange).ok_or_else(|| {
            format!("this module holds no withdraw key of Kraken connection {exchange:?}")
        })
    }

    /// The verified withdrawal key `key` for `coin` on Kraken connection `exchange`, as this
    /// module's own read key lists it (`WithdrawAddresses`).
    pub(crate) async fn kraken_withdraw_key(
        &self,
        exchange: &str,
        coin: &str,
        key: &str,
    ) -> Result<concord_exchange::kraken::WithdrawKey, String> {
        let keys = self
            .kraken(exchange)?
            .withdraw_keys(coin)
            .await
            .map_err(|e| describe(exchange, &e))?;
        let found = keys.into_iter().find(|k| k.key == key).ok_or_else(|| {
            format!("exchange {exchange} has no withdrawal key {key:?} for {coin}")
        })?;
        if !found.verified {
            return Err(format!(
                "withdrawal key {key:?} at exchange {exchange} is not verified"
            ));
        }
        // A memo or tag would send the funds to whoever the tag names at a shared address,
        // which the address book does not say: such a key is never a destination here.
        if let Some(m) = found.memo() {
            return Err(format!(
                "withdrawal key {key:?} at exchange {exchange} carries the memo {m:?}: the address book names addresses, not memos"
            ));
        }
        Ok(found)
    }

    /// Answers a read-only exchange question through this module's own connector.
    pub(crate) async fn answer(&self, q: ExchangeQuery) -> ExchangeAnswer {
        let result: Result<Vec<u8>, String> = async {
            let connector = self.connector(&q.exchange)?;
            let json = |v: Result<serde_json::Value, concord_exchange::ExchangeError>| {
                v.map(|v| serde_json::to_vec(&v).unwrap_or_default())
                    .map_err(|e| describe(&q.exchange, &e))
            };
            match q.query {
                Some(exchange_query::Query::DepositAddress(d)) => {
                    let answer = connector.deposit_address(&d.coin, &d.network).await;
                    if let (Ok(a), Ok(mut recent)) = (&answer, self.recent.lock()) {
                        recent.insert(
                            (q.exchange.clone(), d.coin.clone(), d.network.clone()),
                            (std::time::Instant::now(), a.clone()),
                        );
                    }
                    json(answer.map(|a| serde_json::to_value(a).unwrap_or_default()))
                }
                Some(exchange_query::Query::Withdrawal(w)) => json(
                    connector
                        .withdrawal(&w.id)
                        .await
                        .map(|a| serde_json::to_value(a).unwrap_or_default()),
                ),
                Some(exchange_query::Query::WithdrawalOrder(w)) => json(
                    connector
                        .withdrawal_by_order_id(&w.order_id)
                        .await
                        .map(|a| serde_json::to_value(a).unwrap_or_default()),
                ),
                Some(exchange_query::Query::Deposit(d)) => json(
                    connector
                        .deposits(&d.coin, Some(&d.tx_id))
                        .await
                        .map(|a| serde_json::to_value(a).unwrap_or_default()),
                ),
                // The connector holds the read key only: the withdraw key is a threshold
                // key whose share signs nothing but a checked withdraw request.
                Some(exchange_query::Query::Balances(_)) => {
                    json(connector.balances().await.map(|all| {
                        let held: Vec<_> = all.into_iter().filter(holds_any).collect();
                        serde_json::to_value(held).unwrap_or_default()
                    }))
                }
                Some(exchange_query::Query::WithdrawKey(k)) => {
                    let keys = self
                        .kraken(&q.exchange)?
                        .withdraw_keys(&k.coin)
                        .await
                        .map_err(|e| describe(&q.exchange, &e))?;
                    let same = |a: &str| match (a.parse::<Address>(), k.address.parse::<Address>())
                    {
                        (Ok(x), Ok(y)) => x == y,
                        _ => a == k.address,
                    };
                    keys.into_iter()
                        .find(|w| w.is_plain() && same(&w.address))
                        .map(|w| serde_json::to_vec(&w.key).unwrap_or_default())
                        .ok_or_else(|| {
                            format!(
                                "exchange {} has no verified withdrawal key for {} at {}",
                                q.exchange, k.coin, k.address
                            )
                        })
                }
                Some(exchange_query::Query::Account(a)) => {
                    let cb = self.coinbase(&q.exchange)?;
                    json(
                        cb.client
                            .account_id(&a.coin)
                            .await
                            .map(serde_json::Value::String),
                    )
                }
                None => Err("the query is empty".to_owned()),
            }
        }
        .await;
        match result {
            Ok(json) => ExchangeAnswer {
                request_id: q.request_id,
                json,
                error: String::new(),
            },
            Err(error) => ExchangeAnswer {
                request_id: q.request_id,
                json: Vec::new(),
                error,
            },
        }
    }

    /// The deposit address from this module's own connector: the one it fetched for this
    /// deposit's resolution moments ago, else asked again.
    async fn deposit_address(
        &self,
        connector: &Arc<dyn Connector>,
        exchange: &str,
        coin: &str,
        network: &str,
    ) -> Result<DepositAddress, concord_exchange::ExchangeError> {
        let key = (exchange.to_owned(), coin.to_owned(), network.to_owned());
        let fresh = self.recent.lock().ok().and_then(|mut r| {
            // Taken, not copied: one resolution serves one approval.
            r.remove(&key)
                .filter(|(at, _)| at.elapsed() < RECENT_ADDRESS)
                .map(|(_, a)| a)
        });
        match fresh {
            Some(a) => Ok(a),
            None => connector.deposit_address(coin, network).await,
        }
    }

    /// The asset and decimals an exchange coin code stands for on this module's chain.
    fn asset_of(&self, coin: &str) -> Result<(Asset, u8), String> {
        if coin == NATIVE_COIN {
            return Ok((Asset::Native, NATIVE_DECIMALS));
        }
        let chain = self.chain()?;
        chain
            .config
            .tokens
            .iter()
            .find(|t| t.coin == coin)
            .map(|t| (Asset::Erc20 { token: t.contract }, t.decimals))
            .ok_or_else(|| {
                format!("coin {coin} is neither {NATIVE_COIN} nor a token this module knows")
            })
    }

    /// Checks an EVM transfer to an exchange against this module's own view; returns what
    /// was checked, or why it is refused.
    pub(crate) async fn check_evm_transfer(
        &self,
        checks: &LocalChecks,
        payload: &SigningPayload,
        wallet_public_key: &[u8],
    ) -> Result<Vec<String>, Refused> {
        let SigningPayload::EvmTransfer {
            chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas,
            max_priority_fee_per_gas,
            asset,
            amount,
            recipient,
            destination,
            ..
        } = payload
        else {
            return Err("not an EVM transfer".into());
        };
        let chain = self.chain()?;
        Self::check_chain_id(chain, *chain_id)?;
        let sender = concord_chain::evm_address(wallet_public_key)
            .map_err(|e| format!("cannot derive the wallet's address: {e}"))?;
        let Destination::ExchangeDeposit {
            exchange,
            coin,
            network,
        } = destination;
        let (expected_asset, decimals) = self.asset_of(coin)?;
        if *asset != expected_asset {
            return Err(format!(
                "the transaction sends {asset:?}, but coin {coin} is {expected_asset:?} here"
            )
            .into());
        }
        Self::check_network(chain, network)?;
        FeePolicy {
            max_fee_per_gas: u128::from(checks.max_fee_per_gas),
            max_priority_fee_per_gas: u128::from(checks.max_priority_fee_per_gas),
        }
        .check(&concord_chain::FeeCaps {
            max_fee_per_gas: *max_fee_per_gas,
            max_priority_fee_per_gas: *max_priority_fee_per_gas,
        })
        .map_err(|e| format!("this module's fee caps: {e}"))?;
        if *gas_limit > checks.max_gas_limit {
            return Err(format!(
                "gas limit {gas_limit} exceeds this module's cap of {}",
                checks.max_gas_limit
            )
            .into());
        }
        let connector = self.connector(exchange)?;
        // Ask the exchange, the node's chain id and the sender's nonce at once.
        let (deposit, node_chain_id, pending) = tokio::join!(
            self.deposit_address(connector, exchange, coin, network),
            chain
                .node_chain_id
                .get_or_try_init(|| chain.client.chain_id()),
            chain.client.pending_nonce(sender),
        );
        Self::check_node_chain_id(chain, node_chain_id)?;
        let pending = pending.map_err(|e| format!("cannot read this module's chain: {e}"))?;
        Self::check_evm_recipient(deposit, *recipient, exchange, coin, network)?;
        if *nonce < pending {
            return Err(format!(
                "nonce {nonce} of {sender} is already used on chain (next is {pending})"
            )
            .into());
        }
        if *nonce > pending + checks.max_nonce_gap {
            return Err(format!(
                "nonce {nonce} is more than {} ahead of the chain's next nonce {pending} for {sender}",
                checks.max_nonce_gap
            ).into());
        }
        Ok(vec![
            format!("chain id {chain_id} matches this module's node"),
            format!("sender {sender} derived from the wallet's group key"),
            format!(
                "recipient {recipient} is the {coin}/{network} deposit address exchange {exchange} gave this module"
            ),
            format!(
                "asset {coin} is {} here, {} sent",
                if matches!(expected_asset, Asset::Native) {
                    "the native coin".to_owned()
                } else {
                    format!("{expected_asset:?}")
                },
                format_units(*amount, decimals)
            ),
            format!("nonce {nonce} not yet used on chain (next {pending})"),
            "fee caps and gas limit within this module's caps".to_owned(),
        ])
    }

    /// Checks a withdraw request's technical side against this module's own view: the
    /// exchange connection exists, the network is this module's chain, the coin is known, the
    /// timestamp is fresh and the receive window short. What may be withdrawn, how much and to
    /// where, is the policy's (checked by the decider).
    pub(crate) fn check_withdraw_request(
        &self,
        checks: &LocalChecks,
        exchange: &str,
        params: &WithdrawParams,
    ) -> Result<Vec<String>, String> {
        self.connector(exchange)?;
        // The coin on its network, as this module knows them: its UTXO chain's, or its EVM
        // chain's coin or tokens.
        if self.utxo_network(&params.network).is_some() {
            self.decimals(&params.coin, &params.network)?;
        } else {
            let chain = self.chain()?;
            if params.network != chain.config.network {
                return Err(format!(
                    "network {} is not this module's chain network ({})",
                    params.network, chain.config.network
                ));
            }
            self.asset_of(&params.coin)?;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let age_ms = now_ms.abs_diff(params.timestamp_ms);
        if age_ms > checks.max_request_age_secs * 1000 {
            return Err(format!(
                "the request's timestamp is {} s away from this module's clock (limit {} s)",
                age_ms / 1000,
                checks.max_request_age_secs
            ));
        }
        if params.recv_window_ms > MAX_RECV_WINDOW_MS {
            return Err(format!(
                "the request's receive window of {} ms is longer than {MAX_RECV_WINDOW_MS} ms",
                params.recv_window_ms
            ));
        }
        Ok(vec![
            "request parsed strictly (known parameters, canonical order)".to_owned(),
            format!("network {} is this module's chain", params.network),
            "timestamp fresh, receive window short".to_owned(),
        ])
    }

    /// Reads a Coinbase send the group is asked to sign a token for, and checks what only
    /// Coinbase's API decides: the token (parsed strictly) names the withdraw key the request
    /// goes under, the algorithm of the group's key (EdDSA for Ed25519, ES256 for P-256),
    /// `POST` to this module's own idea of
    /// Coinbase's host, the sends of the coin's account as this module's own read key lists
    /// it, and is live now by this module's clock for at most two minutes; the body is a send
    /// in its canonical form. Where it sends, how much and under which `idem` the caller
    /// compares with the intent and the policy.
    ///
    /// The token does not bind the body (Coinbase's JWT claims name the method, host and path
    /// only): a holder of a live token can send another body with it. The body's digest is
    /// in what every module approves and logs, and Coinbase's address allowlist is what
    /// bounds such a swap at the exchange.
    pub(crate) async fn check_coinbase_send(
        &self,
        checks: &LocalChecks,
        exchange: &str,
        api_key: &str,
        scheme: Option<concord_types::Scheme>,
        request: &str,
        body: Option<&str>,
    ) -> Result<(CoinbaseSend, Vec<String>), String> {
        use concord_exchange::coinbase::{JwtAlg, RequestClaims, SendBody, send_path};
        let cb = self.coinbase(exchange)?;
        let claims = RequestClaims::parse(request).map_err(|e| e.to_string())?;
        if claims.key_name != api_key {
            return Err(format!(
                "the token names key {:?}, not the withdraw key {api_key:?} the request goes under",
                claims.key_name
            ));
        }
        let (alg, alg_name) = match scheme {
            Some(concord_types::Scheme::Ed25519) => (JwtAlg::EdDsa, "Ed25519 (EdDSA)"),
            Some(concord_types::Scheme::EcdsaP256) => (JwtAlg::Es256, "P-256 (ES256)"),
            other => {
                return Err(format!(
                    "Coinbase's withdraw keys are Ed25519 or P-256, and the group's key here is {}",
                    other.map_or("not held", |s| s.as_str())
                ));
            }
        };
        if claims.alg != alg {
            return Err(format!(
                "the token is {:?}, but the group's withdraw key is {alg_name}",
                claims.alg
            ));
        }
        if claims.exp - claims.nbf > concord_exchange::coinbase::SEND_LIFETIME_SECS {
            return Err(format!(
                "the token lives {} s; a send's token lives at most {} s (a live token lets its holder send another body)",
                claims.exp - claims.nbf,
                concord_exchange::coinbase::SEND_LIFETIME_SECS
            ));
        }
        if claims.method != "POST" {
            return Err(format!(
                "the token is for a {} request, not a send (POST)",
                claims.method
            ));
        }
        if claims.host != cb.host {
            return Err(format!(
                "the token names host {:?}, not Coinbase's as this module knows it ({:?})",
                claims.host, cb.host
            ));
        }
        let body = body.ok_or("a Coinbase send needs its body, and the proposal has none")?;
        let body = SendBody::parse(body).map_err(|e| e.to_string())?;
        let account = cb
            .client
            .account_id(&body.currency)
            .await
            .map_err(|e| describe(exchange, &e))?;
        if claims.path != send_path(&account) {
            return Err(format!(
                "the token is for {}, not the sends of the {} account this module's own read key lists ({})",
                claims.path,
                body.currency,
                send_path(&account)
            ));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if now.abs_diff(claims.nbf) > checks.max_request_age_secs || !claims.live_at(now, 5) {
            return Err(format!(
                "the token lives from {} to {} (Unix seconds), not now ({now}) by this module's clock (limit {} s)",
                claims.nbf, claims.exp, checks.max_request_age_secs
            ));
        }
        Ok((
            CoinbaseSend { claims, body },
            vec![
                format!(
                    "token parsed strictly: the withdraw key, {}, POST, at most 30 s",
                    alg.as_str()
                ),
                format!(
                    "host {} and the sends of account {account} (this module's own read key)",
                    cb.host
                ),
                "token live by this module's clock; send body canonical".to_owned(),
            ],
        ))
    }

    /// Looks a withdrawal up by its client order id, through this module's own connector.
    pub(crate) async fn withdrawal_by_order(
        &self,
        exchange: &str,
        order_id: &str,
    ) -> Result<Option<concord_exchange::Withdrawal>, String> {
        self.connector(exchange)?
            .withdrawal_by_order_id(order_id)
            .await
            .map_err(|e| describe(exchange, &e))
    }

    /// Decimals of an exchange coin code on this module's chain.
    pub(crate) fn decimals(&self, coin: &str, network: &str) -> Result<u8, String> {
        match &self.utxo {
            Some(u) if u.config.network == network => {
                if u.config.coin == coin {
                    Ok(UTXO_DECIMALS)
                } else {
                    Err(format!(
                        "coin {coin} is not {network}'s coin here ({})",
                        u.config.coin
                    ))
                }
            }
            _ => self.asset_of(coin).map(|(_, d)| d),
        }
    }

    /// Checks a spend from a UTXO wallet to an exchange against this module's own view: the
    /// chain is this module's, the destination is the deposit address its own connector
    /// returns, every input is unspent per its own node and the wallet's, nothing else is
    /// paid than the change back to the wallet, the fee within its caps
    /// ([`concord_chain::utxo::check_spend`]). Returns what was checked and the digest of
    /// each input.
    pub(crate) async fn check_utxo_transfer(
        &self,
        payload: &SigningPayload,
        wallet: &WalletScript,
    ) -> Result<(Vec<String>, u64, Vec<[u8; 32]>), String> {
        let SigningPayload::UtxoTransfer {
            chain,
            amount,
            destination:
                Destination::ExchangeDeposit {
                    exchange,
                    coin,
                    network,
                },
            ..
        } = payload
        else {
            return Err("not a UTXO transfer".into());
        };
        let u = self
            .utxo
            .as_ref()
            .ok_or_else(|| "this module has no UTXO chain configured".to_owned())?;
        if *chain != u.config.chain {
            return Err(format!(
                "chain {chain} is not this module's UTXO chain ({})",
                u.config.chain
            ));
        }
        if *network != u.config.network || *coin != u.config.coin {
            return Err(format!(
                "{coin} on {network} is not this module's UTXO coin ({} on {})",
                u.config.coin, u.config.network
            ));
        }
        // The node must be on the chain this module is configured for (a mainnet module
        // reading a regtest node would take made-up coins for real ones).
        let node_chain = u
            .node_chain
            .get_or_try_init(|| async { u.node.chain().await.map(|(name, _)| name) })
            .await
            .map_err(|e| format!("cannot read this module's {chain} node: {e}"))?;
        let expected = u.chain.node_chain();
        if node_chain != expected {
            return Err(format!(
                "this module's {chain} node is on chain {node_chain:?}, not {expected:?}"
            ));
        }
        let psbt = payload
            .psbt()
            .ok_or_else(|| "the PSBT does not parse".to_owned())?;
        let connector = self.connector(exchange)?;
        // Ask the exchange and this module's node (every input) at once.
        let (deposit, found) = tokio::join!(
            self.deposit_address(connector, exchange, coin, network),
            futures::future::join_all(
                psbt.unsigned_tx
                    .input
                    .iter()
                    .map(|i| u.node.unspent_output(&i.previous_output))
            ),
        );
        let deposit = deposit.map_err(|e| describe(exchange, &e))?;
        if !deposit.tag.as_deref().unwrap_or("").is_empty() {
            return Err(format!(
                "exchange {exchange} asks for a memo/tag ({:?}) on {coin}/{network}, which this spend cannot carry",
                deposit.tag
            ));
        }
        let to = u.chain.script_of(&deposit.address).map_err(|e| {
            format!(
                "exchange {exchange} gave a deposit address this module cannot pay on {chain}: {e}"
            )
        })?;
        let mut view = HashMap::new();
        for (input, found) in psbt.unsigned_tx.input.iter().zip(found) {
            let o = input.previous_output;
            if let Some(found) =
                found.map_err(|e| format!("cannot read this module's {chain} node: {e}"))?
            {
                // Only coins that cannot vanish: confirmed, and a coinbase's matured.
                if found.confirmations == 0 {
                    return Err(format!("input {o} is not confirmed yet"));
                }
                if found.coinbase && found.confirmations < COINBASE_MATURITY {
                    return Err(format!(
                        "input {o} is a coinbase output with {} of the {COINBASE_MATURITY} confirmations it needs",
                        found.confirmations
                    ));
                }
                view.insert(o, found.utxo.txout);
            }
        }
        let checked = check_spend(
            &psbt,
            &SpendExpectation {
                network: u.chain,
                wallet,
                to: &to,
                amount: Amount::from_sat(*amount),
                caps: FeeCap {
                    max_fee_rate: FeeRate::from_sat_per_vb(u.config.max_fee_rate_sat_vb)
                        .unwrap_or(FeeRate::MAX),
                    max_fee: Amount::from_sat(u.config.max_fee_sats),
                },
            },
            |o| view.get(o).cloned(),
        )
        .map_err(|e| format!("the spend: {e}"))?;
        Ok((
            vec![
                format!(
                    "recipient {} is the {coin}/{network} deposit address exchange {exchange} gave this module",
                    deposit.address
                ),
                format!(
                    "{} input(s) unspent and the wallet's per this module's {chain} node",
                    psbt.unsigned_tx.input.len()
                ),
                format!(
                    "outputs: {} to the deposit address, {} change to the wallet; nothing else",
                    Amount::from_sat(*amount),
                    checked.change
                ),
                format!(
                    "fee {} ({} sat/vB at most) within this module's caps",
                    checked.fee,
                    checked.fee_rate.to_sat_per_vb_ceil()
                ),
                format!("transaction {}", checked.txid),
            ],
            checked.fee.to_sat(),
            checked.sighashes,
        ))
    }
}

impl Outside {
    /// Checks a Safe transfer to an exchange against this module's own view: its chain; the
    /// asset is the coin's here; the recipient is the deposit address its own connector
    /// returns; the Safe on its own node has exactly the definition's owners and threshold,
    /// and the transaction takes the Safe's next nonce (no signature for a later one).
    pub(crate) async fn check_safe_transfer(
        &self,
        payload: &SigningPayload,
        owners: &[Address],
        threshold: u8,
    ) -> Result<Vec<String>, Refused> {
        let SigningPayload::SafeTransfer {
            chain_id,
            safe,
            nonce,
            asset,
            amount,
            recipient,
            destination:
                Destination::ExchangeDeposit {
                    exchange,
                    coin,
                    network,
                },
            ..
        } = payload
        else {
            return Err("not a Safe transfer".into());
        };
        let chain = self.chain()?;
        Self::check_chain_id(chain, *chain_id)?;
        Self::check_network(chain, network)?;
        let (expected_asset, decimals) = self.asset_of(coin)?;
        if *asset != expected_asset {
            return Err(format!(
                "the transaction sends {asset:?}, but coin {coin} is {expected_asset:?} here"
            )
            .into());
        }
        let connector = self.connector(exchange)?;
        // Ask the exchange, the node's chain id and the Safe at once.
        let (deposit, node_chain_id, state) = tokio::join!(
            self.deposit_address(connector, exchange, coin, network),
            chain
                .node_chain_id
                .get_or_try_init(|| chain.client.chain_id()),
            concord_chain::safe::state(&chain.config.rpc_url, *safe),
        );
        Self::check_node_chain_id(chain, node_chain_id)?;
        let (safe_nonce, safe_owners, safe_threshold) =
            state.map_err(|e| format!("cannot read Safe {safe} on this module's chain: {e}"))?;
        Self::check_evm_recipient(deposit, *recipient, exchange, coin, network)?;
        let mut have = safe_owners.clone();
        have.sort();
        let mut want = owners.to_vec();
        want.sort();
        if have != want || safe_threshold != concord_chain::U256::from(threshold) {
            return Err(format!(
                "Safe {safe} on this module's chain has owners {have:?} and threshold {safe_threshold}, not the policy's {want:?} and {threshold}"
            ).into());
        }
        if concord_chain::U256::from(*nonce) != safe_nonce {
            return Err(format!(
                "nonce {nonce} is not Safe {safe}'s next nonce ({safe_nonce}) on this module's chain"
            ).into());
        }
        Ok(vec![
            format!("chain id {chain_id} matches this module's node"),
            format!(
                "recipient {recipient} is the {coin}/{network} deposit address exchange {exchange} gave this module"
            ),
            format!(
                "Safe {safe}: owners and threshold as the policy defines; nonce {nonce} is its next"
            ),
            format!("{} {coin} sent", format_units(*amount, decimals)),
        ])
    }
}

impl Outside {
    /// The transfer's chain id is this module's chain's.
    fn check_chain_id(chain: &ChainView, chain_id: u64) -> Result<(), String> {
        if chain_id != chain.config.chain_id {
            return Err(format!(
                "chain id {chain_id} is not this module's chain ({})",
                chain.config.chain_id
            ));
        }
        Ok(())
    }

    /// The exchange network named is this module's chain's.
    fn check_network(chain: &ChainView, network: &str) -> Result<(), String> {
        if network != chain.config.network {
            return Err(format!(
                "network {network} is not this module's chain network ({})",
                chain.config.network
            ));
        }
        Ok(())
    }

    /// This module's node reports the configured chain id.
    fn check_node_chain_id(
        chain: &ChainView,
        node_chain_id: Result<&u64, concord_chain::ChainError>,
    ) -> Result<(), String> {
        let node_chain_id =
            node_chain_id.map_err(|e| format!("cannot read this module's chain: {e}"))?;
        if *node_chain_id != chain.config.chain_id {
            return Err(format!(
                "this module's node reports chain id {node_chain_id}, not {}",
                chain.config.chain_id
            ));
        }
        Ok(())
    }

    /// The proposed EVM recipient is the deposit address this module's own connector
    /// returned (no memo or tag, which an EVM transfer cannot carry).
    fn check_evm_recipient(
        deposit: Result<DepositAddress, concord_exchange::ExchangeError>,
        recipient: Address,
        exchange: &str,
        coin: &str,
        network: &str,
    ) -> Result<(), Refused> {
        let deposit = deposit.map_err(|e| describe(exchange, &e))?;
        if !deposit.tag.as_deref().unwrap_or("").is_empty() {
            return Err(format!(
                "exchange {exchange} asks for a memo/tag ({:?}) on {coin}/{network}, which EVM transfers cannot carry",
                deposit.tag
            )
            .into());
        }
        let resolved: Address = deposit.address.parse().map_err(|_| {
            format!(
                "exchange {exchange} gave a deposit address that is not an EVM address: {:?}",
                deposit.address
            )
        })?;
        if resolved != recipient {
            // The forged-address attack: a destination refusal, not an outage.
            return Err(Refused {
                code: crate::approve::code::DESTINATION,
                reason: format!(
                    "the proposed recipient {recipient} is not the deposit address {resolved} that exchange {exchange} gave this module for {coin} on {network}"
                ),
            });
        }
        Ok(())
    }
}

/// Decimals of a UTXO chain's coin.
const UTXO_DECIMALS: u8 = 8;

/// The longest receive window a withdraw request may ask for (Binance's own maximum).
const MAX_RECV_WINDOW_MS: u64 = 60_000;

/// Whether a balance is more than nothing (free or locked): exchanges list every coin they
/// offer, most of them at zero.
fn holds_any(b: &concord_exchange::Balance) -> bool {
    let nonzero = |v: &str| v.bytes().any(|c| c.is_ascii_digit() && c != b'0');
    nonzero(&b.free) || nonzero(&b.locked)
}

/// Why an outside check refused, and the refusal code it carries: `destination` when the
/// proposed recipient is not the one this module resolved itself (the forged-address
/// attack), `outside` for everything else (its chain, its exchange, its caps).
#[derive(Debug)]
pub(crate) struct Refused {
    /// The refusal code (`crate::approve::code`).
    pub(crate) code: &'static str,
    /// Why, in words.
    pub(crate) reason: String,
}

impl From<String> for Refused {
    fn from(reason: String) -> Self {
        Refused {
            code: crate::approve::code::OUTSIDE,
            reason,
        }
    }
}

impl From<&str> for Refused {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
}

fn describe(exchange: &str, e: &concord_exchange::ExchangeError) -> String {
    let retry = if e.retryable() {
        "a retry may help"
    } else {
        "a retry will not help"
    };
    format!("exchange {exchange}: {e} ({retry})")
}

use concord_wire::units::format_amount as format_units;
