//! A UTXO node over JSON-RPC (Litecoin Core 0.21 or Bitcoin Core: the calls used are common
//! to both) and the local Litecoin node of the tests and the devnet: Debian's `litecoind`
//! package, run in `-regtest` with its own data directory, no wallet and no peers.
//!
//! The node is the judge: its consensus and policy rules accept or reject every signed
//! transaction this system broadcasts. Amounts in its JSON are decimal coins; they are read
//! into satoshis (litoshis) exactly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Amount, OutPoint, Script, ScriptBuf, Transaction, TxOut, Txid};
use serde_json::{Value, json};

use crate::utxo::Utxo;

/// Where Debian's `litecoind` package puts the daemon itself (`/usr/bin/litecoind` is a
/// wrapper that writes `~/.litecoin` first).
pub const DEBIAN_LITECOIND: &str = "/usr/lib/litecoin/litecoind";

/// Blocks after which a coinbase output may be spent.
pub const COINBASE_MATURITY: u64 = 100;

/// A node's JSON-RPC error, or a failure to reach it.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node answered with an error.
    #[error("the node refused {method}: {message} (code {code})")]
    Rpc {
        /// The call.
        method: String,
        /// The node's error code (e.g. -26 rejected by policy, -25 missing inputs).
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The node could not be reached or answered something unreadable.
    #[error("cannot reach the node for {method}: {reason}")]
    Transport {
        /// The call.
        method: String,
        /// What went wrong.
        reason: String,
    },
    /// The node's answer is not what the call returns.
    #[error("the node's answer to {method} is unreadable: {reason}")]
    Unreadable {
        /// The call.
        method: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl NodeError {
    /// Whether trying again later may help (the node unreachable or still starting).
    pub fn is_retryable(&self) -> bool {
        matches!(self, NodeError::Transport { .. })
            || matches!(self, NodeError::Rpc { code: -28, .. })
    }
}

/// A JSON-RPC client of a Bitcoin-family node.
#[derive(Clone)]
pub struct UtxoNode {
    http: reqwest::Client,
    url: String,
    user: String,
    password: String,
}

impl Drop for UtxoNode {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password);
    }
}

impl std::fmt::Debug for UtxoNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtxoNode")
            .field("url", &self.url)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Reads a decimal coin amount of the node's JSON.
fn amount(v: &Value) -> Option<Amount> {
    // f64's shortest decimal form is the node's 8-decimal text, which parses exactly.
    v.as_f64().and_then(|c| Amount::from_btc(c).ok())
}

impl UtxoNode {
    /// A client of the node at `url` (`http://127.0.0.1:19443`) with RPC credentials.
    pub fn new(
        url: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        UtxoNode {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            url: url.into(),
            user: user.into(),
            password: password.into(),
        }
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with `params` and returns its result. Failures are counted
    /// (`concord_chain_errors_total{chain="utxo"}`, by method and retryability).
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, NodeError> {
        let r = self.call_once(method, params).await;
        if let Err(e) = &r {
            metrics::counter!(
                "concord_chain_errors_total",
                "chain" => "utxo",
                "method" => method.to_owned(),
                "retryable" => if e.is_retryable() { "true" } else { "false" }
            )
            .increment(1);
        }
        r
    }

    async fn call_once(&self, method: &str, params: Value) -> Result<Value, NodeError> {
        let transport = |reason: String| NodeError::Transport {
            method: method.to_owned(),
            reason,
        };
        let body = json!({"jsonrpc": "1.0", "id": "concord", "method": method, "params": params});
        let resp = self
            .http
            .post(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| transport(e.to_string()))?;
        // Core answers JSON-RPC errors with HTTP 500 and a body, bad credentials with 401
        // and none.
        let v: Value = serde_json::from_str(&text).map_err(|_| {
            transport(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            return Err(NodeError::Rpc {
                method: method.to_owned(),
                code: e["code"].as_i64().unwrap_or(0),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }

    fn unreadable(method: &str, reason: impl Into<String>) -> NodeError {
        NodeError::Unreadable {
            method: method.to_owned(),
            reason: reason.into(),
        }
    }

    /// The height of the node's best block.
    pub async fn block_count(&self) -> Result<u64, NodeError> {
        self.call("getblockcount", json!([]))
            .await?
            .as_u64()
            .ok_or_else(|| Self::unreadable("getblockcount", "not a number"))
    }

    /// Mines `blocks` blocks paying their reward to `script` (regtest only); their hashes.
    pub async fn mine_to(&self, blocks: u64, script: &Script) -> Result<Vec<String>, NodeError> {
        let v = self
            .call(
                "generatetodescriptor",
                json!([blocks, format!("raw({})", script.to_hex_string())]),
            )
            .await?;
        serde_json::from_value(v)
            .map_err(|e| Self::unreadable("generatetodescriptor", e.to_string()))
    }

    /// An output, if it exists and is unspent (mempool spends count as spent): what it holds,
    /// its confirmations (0 in the mempool) and whether it is a coinbase output.
    pub async fn unspent_output(
        &self,
        outpoint: &OutPoint,
    ) -> Result<Option<NodeOutput>, NodeError> {
        let v = self
            .call(
                "gettxout",
                json!([outpoint.txid.to_string(), outpoint.vout, true]),
            )
            .await?;
        if v.is_null() {
            return Ok(None);
        }
        let bad = |what: &str| Self::unreadable("gettxout", format!("no {what}"));
        let value = amount(&v["value"]).ok_or_else(|| bad("value"))?;
        let script = v["scriptPubKey"]["hex"]
            .as_str()
            .and_then(|h| ScriptBuf::from_hex(h).ok())
            .ok_or_else(|| bad("scriptPubKey"))?;
        Ok(Some(NodeOutput {
            utxo: Utxo {
                outpoint: *outpoint,
                txout: TxOut {
                    value,
                    script_pubkey: script,
                },
            },
            confirmations: v["confirmations"].as_u64().unwrap_or(0),
            coinbase: v["coinbase"].as_bool().unwrap_or(false),
        }))
    }

    /// Whether an output is spent by a transaction in a block (mempool spends do not count:
    /// a transaction only in the mempool may still be replaced or dropped).
    pub async fn spent_in_chain(&self, outpoint: &OutPoint) -> Result<bool, NodeError> {
        let v = self
            .call(
                "gettxout",
                json!([outpoint.txid.to_string(), outpoint.vout, false]),
            )
            .await?;
        Ok(v.is_null())
    }

    /// The confirmed unspent outputs locked to `script` that may be spent now (coinbase
    /// outputs only once mature), each checked again with `gettxout` so that one already
    /// spent in the mempool is left out.
    pub async fn spendable(&self, script: &Script, min_conf: u64) -> Result<Vec<Utxo>, NodeError> {
        let v = self
            .call(
                "scantxoutset",
                json!(["start", [format!("raw({})", script.to_hex_string())]]),
            )
            .await?;
        let unspents = v["unspents"]
            .as_array()
            .ok_or_else(|| Self::unreadable("scantxoutset", "no unspents"))?;
        let mut out = Vec::new();
        for u in unspents {
            let (Some(txid), Some(vout)) = (
                u["txid"].as_str().and_then(|t| t.parse::<Txid>().ok()),
                u["vout"].as_u64().and_then(|v| u32::try_from(v).ok()),
            ) else {
                return Err(Self::unreadable(
                    "scantxoutset",
                    "an unspent without txid or vout",
                ));
            };
            let Some(o) = self.unspent_output(&OutPoint { txid, vout }).await? else {
                continue;
            };
            let needed = if o.coinbase {
                COINBASE_MATURITY.max(min_conf)
            } else {
                min_conf
            };
            if o.confirmations >= needed && o.utxo.txout.script_pubkey.as_script() == script {
                out.push(o.utxo);
            }
        }
        out.sort_by_key(|u| u.outpoint);
        Ok(out)
    }

    /// Whether the node would accept `tx` into its mempool now, and if not why (its reason).
    pub async fn test_accept(&self, tx: &Transaction) -> Result<Result<(), String>, NodeError> {
        let v = self
            .call("testmempoolaccept", json!([[serialize_hex(tx)]]))
            .await?;
        let r = &v[0];
        match r["allowed"].as_bool() {
            Some(true) => Ok(Ok(())),
            Some(false) => Ok(Err(r["reject-reason"]
                .as_str()
                .unwrap_or("rejected")
                .to_owned())),
            None => Err(Self::unreadable("testmempoolaccept", "no allowed field")),
        }
    }

    /// Broadcasts `tx`; idempotent by txid: a transaction already in the mempool or in a
    /// block is the same success as a new one.
    pub async fn broadcast(&self, tx: &Transaction) -> Result<Txid, NodeError> {
        let txid = tx.compute_txid();
        match self
            .call("sendrawtransaction", json!([serialize_hex(tx)]))
            .await
        {
            Ok(_) => Ok(txid),
            // -27: already in the chain; -25 (inputs missing or spent) may be this very
            // transaction, mined and its outputs spent since.
            Err(NodeError::Rpc { code: -27, .. }) => Ok(txid),
            Err(e @ NodeError::Rpc { code: -25, .. }) => match self.confirmations(&txid).await? {
                Some(_) => Ok(txid),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// A transaction's confirmations: `Some(0)` in the mempool, `None` if the node does not
    /// know it (needs `-txindex` for transactions of other wallets).
    pub async fn confirmations(&self, txid: &Txid) -> Result<Option<u64>, NodeError> {
        match self
            .call("getrawtransaction", json!([txid.to_string(), true]))
            .await
        {
            Ok(v) => Ok(Some(v["confirmations"].as_u64().unwrap_or(0))),
            Err(NodeError::Rpc { code: -5, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A transaction the node knows, decoded.
    pub async fn transaction(&self, txid: &Txid) -> Result<Option<Transaction>, NodeError> {
        match self
            .call("getrawtransaction", json!([txid.to_string(), false]))
            .await
        {
            Ok(v) => {
                let hex = v
                    .as_str()
                    .ok_or_else(|| Self::unreadable("getrawtransaction", "not hex"))?;
                deserialize_hex(hex)
                    .map(Some)
                    .map_err(|e| Self::unreadable("getrawtransaction", e.to_string()))
            }
            Err(NodeError::Rpc { code: -5, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The node's `(chain, blocks)` from `getblockchaininfo` (`"regtest"`, `"main"`, …).
    pub async fn chain(&self) -> Result<(String, u64), NodeError> {
        let v = self.call("getblockchaininfo", json!([])).await?;
        Ok((
            v["chain"].as_str().unwrap_or_default().to_owned(),
            v["blocks"].as_u64().unwrap_or(0),
        ))
    }
}

/// An unspent output as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOutput {
    /// The output.
    pub utxo: Utxo,
    /// Its confirmations (0 in the mempool).
    pub confirmations: u64,
    /// Whether a coinbase made it (spendable after [`COINBASE_MATURITY`]).
    pub coinbase: bool,
}

/// Why the local Litecoin node could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LitecoindError {
    /// The binary is not installed.
    #[error(
        "litecoind is not installed ({0} is missing): install Debian's litecoind package (apt-get install litecoind) or set LITECOIND_BIN"
    )]
    Missing(PathBuf),
    /// It could not be started or did not answer.
    #[error("litecoind: {0}")]
    Start(String),
}

/// The litecoind binary: `LITECOIND_BIN`, else Debian's.
pub fn litecoind_binary() -> Result<PathBuf, LitecoindError> {
    let path = std::env::var_os("LITECOIND_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_LITECOIND));
    if path.is_file() {
        Ok(path)
    } else {
        Err(LitecoindError::Missing(path))
    }
}

/// The RPC user of a local regtest node.
pub const REGTEST_USER: &str = "concord";

/// The arguments of a local `litecoind` in regtest: data in `dir`, RPC on 127.0.0.1:`port`
/// only (user and password), no wallet, no peers, a transaction index (transactions of any
/// wallet can be looked up), MWEB never activated.
pub fn regtest_args(dir: &Path, port: u16, user: &str, password: &str) -> Vec<String> {
    let mut args = vec!["-regtest".to_owned(), format!("-datadir={}", dir.display())];
    args.extend(
        [
            "-server",
            "-listen=0",
            "-rpcbind=127.0.0.1",
            "-rpcallowip=127.0.0.1",
            "-txindex=1",
            "-disablewallet",
            "-vbparams=mweb:-2:0",
            "-printtoconsole=0",
            "-fallbackfee=0.0002",
        ]
        .map(str::to_owned),
    );
    args.push(format!("-rpcport={port}"));
    args.push(format!("-rpcuser={user}"));
    args.push(format!("-rpcpassword={password}"));
    args
}

/// A `litecoind -regtest` of its own (stopped when dropped): no wallet, no peers, a
/// transaction index, MWEB never activated (its blocks are unreadable to rust-bitcoin, and
/// regtest would otherwise stop at height 431 without a peg-in).
pub struct LocalLitecoin {
    child: Child,
    node: UtxoNode,
    port: u16,
    password: String,
}

impl LocalLitecoin {
    /// Starts a node with its data in `dir` (created if missing) on a free port, and waits
    /// until its RPC answers.
    pub async fn start(dir: &Path) -> Result<LocalLitecoin, LitecoindError> {
        let bin = litecoind_binary()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| LitecoindError::Start(format!("creating {}: {e}", dir.display())))?;
        let port = free_port().map_err(LitecoindError::Start)?;
        let password = hex::encode(rand::random::<[u8; 16]>());
        let child = Command::new(&bin)
            .args(regtest_args(dir, port, REGTEST_USER, &password))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LitecoindError::Start(format!("running {}: {e}", bin.display())))?;
        let mut me = LocalLitecoin {
            child,
            node: UtxoNode::new(format!("http://127.0.0.1:{port}"), REGTEST_USER, &password),
            port,
            password,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match me.node.chain().await {
                Ok(_) => return Ok(me),
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    if let Ok(Some(status)) = me.child.try_wait() {
                        let mut stderr = String::new();
                        if let Some(mut s) = me.child.stderr.take() {
                            use std::io::Read;
                            let _ = s.read_to_string(&mut stderr);
                        }
                        return Err(LitecoindError::Start(format!(
                            "exited with {status} before answering: {}",
                            stderr.trim()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(LitecoindError::Start(e.to_string())),
            }
        }
    }

    /// Its RPC client.
    pub fn node(&self) -> &UtxoNode {
        &self.node
    }

    /// Its RPC user and password (random per start), for other clients of this node.
    pub fn rpc_credentials(&self) -> (&str, &str) {
        ("concord", &self.password)
    }

    /// Its RPC port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for LocalLitecoin {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}
