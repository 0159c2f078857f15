//! `concord devnet`: a whole local system on one machine, each part its own OS process —
//! the real `anvil` chain, the exchange simulator, the coordinator and three secure modules
//! over mutual TLS on 127.0.0.1 — and `concord devnet demo`, which walks through a deposit,
//! a withdrawal and a forged-deposit-address attack on it.
//!
//! Module m3 reaches the exchange through a man-in-the-middle proxy (`concord devnet mitm`)
//! that passes everything through untouched until it is armed (a file naming a forged
//! address appears): then it rewrites the deposit address the exchange returns, exactly what
//! an attacker on that module's network path could do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use concord_chain::{Address, Asset, EvmClient, EvmTransfer, U256};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::Api;

/// Anvil's well-known development accounts (public test keys; never use them elsewhere).
pub(crate) const DEV_KEY_0: &str =
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const DEV_KEY_1: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// Anvil's third development account: the coordinator's gas account for Safe transactions.
const DEV_KEY_2: &str = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
/// The UTXO chain of the devnet: Litecoin in regtest, the exchanges' network code LTC.
pub(crate) const LTC_CHAIN: &str = "ltc-regtest";
const CHAIN_ID: u64 = 31337;
const EXCHANGE: &str = "binance";
/// The Kraken connection's name (the same simulator, Kraken's API, an account of its own).
pub(crate) const KRAKEN: &str = "kraken";
/// The Coinbase connection's name (the same simulator, Coinbase's App API with CDP keys).
pub(crate) const COINBASE: &str = "coinbase";
/// The trader's account at "Kraken" in the simulator.
pub(crate) const KRAKEN_ACCOUNT: &str = "trader-kraken";
/// The module that holds Kraken's withdraw key whole (the policy's held credential).
pub(crate) const KRAKEN_HOLDER: &str = "m1";
/// The trader's account at "Coinbase" in the simulator.
pub(crate) const COINBASE_ACCOUNT: &str = "trader-coinbase";
const MODULES: [&str; 3] = ["m1", "m2", "m3"];
/// The module whose exchange connection goes through the proxy.
const MITM_MODULE: &str = "m3";
/// The module whose vault key, identity key and multisig key live in SoftHSM (PKCS#11).
pub(crate) const HSM_MODULE: &str = "m2";
/// Where Debian's SoftHSM 2 library is.
const SOFTHSM_LIBRARIES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];
/// The devnet's principals and their roles (INSECURE keys in the devnet's directory).
pub(crate) const PRINCIPALS: [(&str, &str); 6] = [
    ("admin-1", "admin"),
    ("admin-2", "admin"),
    ("admin-3", "admin"),
    ("trader", "trader"),
    ("approver", "approver"),
    ("importer", "importer"),
];

/// A devnet principal's key.
pub(crate) fn principal_key(
    keys_dir: &Path,
    name: &str,
) -> Result<concord_wire::identity::IdentityKey> {
    crate::authority::load_key(&keys_dir.join(format!("{name}.key")))
}

/// The devnet's principals, as a policy lists them.
pub(crate) fn principals(keys_dir: &Path) -> Result<Value> {
    let mut out = Vec::new();
    for (name, role) in PRINCIPALS {
        out.push(json!({"name": name, "key": principal_key(keys_dir, name)?.public().to_string(), "roles": [role]}));
    }
    Ok(Value::Array(out))
}

#[derive(Subcommand)]
pub enum DevnetCommand {
    /// Start anvil, the exchange simulator, the coordinator and three modules; return once
    /// all are ready. Writes DIR/devnet.json.
    #[command(after_help = "Example:\n  concord devnet up --block-time 1")]
    Up {
        /// Directory for the devnet's files [default: ~/.local/state/concord/devnet, under
        /// $CONCORD_HOME or $XDG_STATE_HOME when set].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Seconds between blocks (0: a block per transaction, anvil's automine).
        #[arg(long, default_value_t = 1)]
        block_time: u64,
        /// How long the coordinator follows a transfer before its record says it is overdue
        /// (it is followed on, never failed for being slow), seconds.
        #[arg(long, default_value_t = 120)]
        follow_secs: u64,
        /// Keep the coordinators' state in this PostgreSQL database (default: SQLite).
        #[arg(long)]
        postgres: Option<String>,
        /// How many coordinators share the database (more than one needs --postgres); every
        /// module keeps a link to each.
        #[arg(long, default_value_t = 1)]
        coordinators: usize,
        /// Start no Litecoin node (litecoind in regtest is otherwise started, for deposits
        /// from native multisig P2WSH wallets).
        #[arg(long)]
        no_utxo: bool,
        /// Keep every module's keys in its vault (module m2's vault key, identity key and multisig key are
        /// otherwise generated in a SoftHSM token of its own, through PKCS#11).
        #[arg(long)]
        no_hsm: bool,
        /// Print devnet.json.
        #[arg(long)]
        json: bool,
    },
    /// (tests) On a running devnet: the signer group, the wallets, the policy naming them,
    /// the exchange's withdraw key registered, the wallet funded. Prints JSON.
    #[command(hide = true)]
    Prepare {
        /// The devnet's directory [default: ~/.local/state/concord/devnet].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        #[command(flatten)]
        setup: crate::demo::GroupSetup,
        /// ETH to fund the wallet with.
        #[arg(long, default_value = "5")]
        fund_eth: String,
    },
    /// Stop the processes of the devnet in DIR.
    #[command(after_help = "Example:\n  concord devnet down")]
    Down {
        /// The devnet's directory [default: ~/.local/state/concord/devnet].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Bring a fresh devnet up, create a 2-of-3 wallet by DKG, fund it, deposit to the
    /// exchange, withdraw back, run the attacks (policy, limits, import, forged deposit
    /// address), show transfers happening exactly once (raced requests, parallel deposits, a
    /// coordinator killed mid-withdrawal), show the wallets and balances as `concord wallets
    /// list` and `concord balances` do, and print a summary. Exits 0 only if everything held.
    #[command(
        after_help = "Examples:\n  concord devnet demo\n  concord devnet demo --engine cggmp21 --insecure-test-primes"
    )]
    Demo {
        /// Directory for the devnet's files (a previous devnet there is stopped and replaced)
        /// [default: ~/.local/state/concord/devnet].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        setup: crate::demo::GroupSetup,
        /// Stop the devnet when the demo ends (default: leave it running to explore).
        #[arg(long)]
        down: bool,
    },
    /// (internal) The man-in-the-middle proxy in front of one module's exchange connection.
    #[command(hide = true)]
    Mitm {
        /// Where to listen.
        #[arg(long)]
        listen: String,
        /// The real exchange's base URL.
        #[arg(long)]
        upstream: String,
        /// When this file exists, deposit addresses are replaced by the address it holds.
        #[arg(long)]
        forge_file: PathBuf,
    },
    /// (internal) Mines a block on the devnet's Litecoin node every interval, as anvil does
    /// on its own.
    #[command(hide = true)]
    LtcMiner {
        /// The devnet's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Milliseconds between blocks.
        #[arg(long, default_value_t = 1000)]
        every_ms: u64,
    },
}

/// What `devnet up` wrote: how to reach every part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevnetInfo {
    /// The devnet's directory.
    pub dir: PathBuf,
    /// Anvil's JSON-RPC URL.
    pub rpc_url: String,
    /// The chain id.
    pub chain_id: u64,
    /// The coordinator's REST API.
    pub coordinator_url: String,
    /// The SHA-256 fingerprint of the coordinators' API certificate (one certificate for
    /// all of them), which every client pins. None: plain HTTP (an older devnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_pin: Option<String>,
    /// Every coordinator's REST API (more than one on a shared PostgreSQL database).
    #[serde(default)]
    pub coordinator_urls: Vec<String>,
    /// Every coordinator's directory (its process is `pids[coordinator_name(i)]`).
    #[serde(default)]
    pub coordinator_dirs: Vec<PathBuf>,
    /// The exchange simulator's API.
    pub exchange_url: String,
    /// The coordinator's admin API token file.
    pub token_file: PathBuf,
    /// A coordinator API token with the trader role.
    #[serde(default)]
    pub trader_token_file: PathBuf,
    /// The requester keys (INSECURE devnet keys): admin-1..3 (quorum 2), trader, approver,
    /// importer; `<name>.key` in this directory.
    #[serde(default)]
    pub keys_dir: PathBuf,
    /// The exchange simulator's admin token file.
    pub exchange_admin_token_file: PathBuf,
    /// The trader's account name at the exchange.
    pub exchange_account: String,
    /// The test ERC-20 token (coin CTT).
    pub token_contract: Address,
    /// The modules.
    pub modules: Vec<ModuleEntry>,
    /// Process ids by service name.
    pub pids: BTreeMap<String, u32>,
    /// The proxy's arming file (write a forged address into it to arm it).
    pub mitm_forge_file: PathBuf,
    /// The module behind the proxy.
    pub mitm_module: String,
    /// The Litecoin regtest node (none: started without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ltc: Option<LtcNode>,
    /// The coordinator's gas account key file (it submits Safe transactions; an INSECURE
    /// anvil development key).
    #[serde(default)]
    pub safe_gas_key_file: PathBuf,
    /// The SoftHSM token of module [`HSM_MODULE`] (deleted by `devnet down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm_token: Option<String>,
}

/// The devnet's Litecoin node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LtcNode {
    /// JSON-RPC URL.
    pub rpc_url: String,
    /// RPC user.
    pub rpc_user: String,
    /// File holding the RPC password.
    pub rpc_password_file: PathBuf,
}

impl LtcNode {
    /// A client of the node.
    pub fn client(&self) -> Result<concord_chain::litecoind::UtxoNode> {
        let password = std::fs::read_to_string(&self.rpc_password_file)
            .with_context(|| format!("cannot read {}", self.rpc_password_file.display()))?;
        Ok(concord_chain::litecoind::UtxoNode::new(
            self.rpc_url.clone(),
            &self.rpc_user,
            password.trim(),
        ))
    }

    fn password(&self) -> Result<String> {
        Ok(std::fs::read_to_string(&self.rpc_password_file)?
            .trim()
            .to_owned())
    }
}

/// One module of the devnet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleEntry {
    /// Module id.
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The exchange URL it uses.
    pub exchange_url: String,
    /// Where it serves its Prometheus metrics (`http://127.0.0.1:PORT/metrics`).
    #[serde(default)]
    pub metrics_url: String,
}

impl DevnetInfo {
    /// Reads DIR/devnet.json.
    pub fn load(dir: &Path) -> Result<DevnetInfo> {
        let path = dir.join("devnet.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no devnet in {} (start one with `concord devnet up --dir {}`)",
                dir.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is unreadable", path.display()))
    }

    pub(crate) fn save(&self) -> Result<()> {
        let path = self.dir.join("devnet.json");
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Children started by this process (reaped when stopped).
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

fn random_token(len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| {
            let c = rng.gen_range(0..62u8);
            char::from(match c {
                0..=9 => b'0' + c,
                10..=35 => b'a' + c - 10,
                _ => b'A' + c - 36,
            })
        })
        .collect()
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn spawn(dir: &Path, name: &str, program: &Path, args: &[String]) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in the terminal does not stop the devnet.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {name} ({})", program.display()))?;
    let pid = child.id();
    if let Ok(mut c) = CHILDREN.lock() {
        c.push(child);
    }
    Ok(pid)
}

pub(crate) fn concord(args: &[&str]) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let out = Command::new(&exe)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "`concord {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    Ok(serde_json::from_str(line)?)
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{what} did not become ready within {} s", timeout.as_secs())
}

fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub(crate) fn key32(hex_key: &str) -> Result<[u8; 32]> {
    let mut k = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut k)?;
    Ok(k)
}

fn address_of(key: &k256::ecdsa::SigningKey) -> Result<Address> {
    Ok(concord_chain::evm_address(
        key.verifying_key().to_encoded_point(false).as_bytes(),
    )?)
}

/// Sends ETH or a token from a development key, signing the transfer's sighash with k256
/// exactly as the threshold engine's output is used (attach, sender check, broadcast).
pub(crate) async fn fund(
    client: &EvmClient,
    from_key: &str,
    asset: Asset,
    to: Address,
    amount: U256,
) -> Result<String> {
    let key = k256::ecdsa::SigningKey::from_slice(&key32(from_key)?)?;
    let from = address_of(&key)?;
    let tx = EvmTransfer {
        chain_id: client.chain_id().await?,
        nonce: client.pending_nonce(from).await?,
        // Enough for a contract's receive function too (a Safe's proxy emits an event).
        gas_limit: EvmTransfer::default_gas_limit(&asset).max(100_000),
        fees: client.suggest_fees().await?,
        asset,
        recipient: to,
        amount,
    };
    let (sig, rid) = key.sign_prehash_recoverable(tx.sighash().as_slice())?;
    let (sig, rid) = match sig.normalize_s() {
        Some(n) => (
            n,
            k256::ecdsa::RecoveryId::new(!rid.is_y_odd(), rid.is_x_reduced()),
        ),
        None => (sig, rid),
    };
    let mut raw = sig.to_bytes().to_vec();
    raw.push(rid.to_byte());
    let signed = tx.attach(&raw, from)?;
    client.broadcast(&signed).await?;
    let status = client
        .wait_for_confirmations(signed.hash, 1, Duration::from_secs(60))
        .await?;
    if let concord_chain::TxStatus::Included { success: false, .. } = status {
        bail!("funding {to} failed: transaction {} reverted", signed.hash);
    }
    Ok(signed.hash.to_string())
}

/// How `devnet up` sets things up.
#[derive(Debug, Clone)]
pub(crate) struct UpOptions {
    /// Seconds between blocks (0: a block per transaction).
    pub(crate) block_time: u64,
    /// How long the coordinator follows a transfer before its record says it is overdue.
    pub(crate) follow_secs: u64,
    /// A PostgreSQL database for the coordinators (none: SQLite).
    pub(crate) postgres: Option<String>,
    /// How many coordinators (more than one needs PostgreSQL).
    pub(crate) coordinators: usize,
    /// Whether to start the Litecoin regtest node.
    pub(crate) utxo: bool,
    /// Whether module [`HSM_MODULE`] keeps its keys in SoftHSM (a token of its own).
    pub(crate) hsm: bool,
}

impl UpOptions {
    pub(crate) fn with_block_time(block_time: u64) -> UpOptions {
        UpOptions {
            block_time,
            follow_secs: 120,
            postgres: None,
            coordinators: 1,
            utxo: true,
            hsm: true,
        }
    }
}

/// The name of the `i`-th coordinator's process (0: `coordinator`).
pub(crate) fn coordinator_name(i: usize) -> String {
    if i == 0 {
        "coordinator".into()
    } else {
        format!("coordinator-{}", i + 1)
    }
}

/// `concord devnet up`.
pub async fn up(dir: &Path, quiet: bool, opts: &UpOptions) -> Result<DevnetInfo> {
    let block_time = opts.block_time;
    let say = |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    if let Ok(info) = DevnetInfo::load(dir)
        && info.pids.values().any(|p| alive(*p))
    {
        bail!(
            "a devnet is already running in {} (stop it with `concord devnet down --dir {}`)",
            dir.display(),
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    let dir = std::path::absolute(dir)?;
    let mut pids = BTreeMap::new();

    // The chain.
    let anvil = concord_chain::anvil::anvil_binary(|m| say(&format!("  {m}")))?;
    let rpc_port = free_port()?;
    let mut args = vec![
        "--port".to_owned(),
        rpc_port.to_string(),
        "--chain-id".into(),
        CHAIN_ID.to_string(),
    ];
    if block_time > 0 {
        say(&format!(
            "Starting anvil on 127.0.0.1:{rpc_port} ({block_time}-second blocks)…"
        ));
        args.extend(["--block-time".into(), block_time.to_string()]);
    } else {
        say(&format!(
            "Starting anvil on 127.0.0.1:{rpc_port} (a block per transaction)…"
        ));
    }
    pids.insert("anvil".to_owned(), spawn(&dir, "anvil", &anvil, &args)?);
    let rpc_url = format!("http://127.0.0.1:{rpc_port}");
    let client = EvmClient::new(&rpc_url)?;
    wait_for("anvil", Duration::from_secs(30), || async {
        client.block_number().await.is_ok()
    })
    .await?;
    say("Deploying the test token CTT and funding the exchange's hot wallet…");
    let token = concord_chain::test_token::deploy(&rpc_url, &key32(DEV_KEY_0)?).await?;
    let hot_wallet = address_of(&k256::ecdsa::SigningKey::from_slice(&key32(DEV_KEY_1)?)?)?;
    fund(
        &client,
        DEV_KEY_0,
        Asset::Erc20 { token },
        hot_wallet,
        U256::from(1_000_000u64) * U256::from(10u64).pow(U256::from(18u64)),
    )
    .await?;

    // The Litecoin node (regtest), its first coins mined to the exchange's hot wallet.
    let exchange_dir = dir.join("exchange");
    std::fs::create_dir_all(&exchange_dir)?;
    let ltc_hot_key = hex::encode(rand::random::<[u8; 32]>());
    let ltc = if opts.utxo {
        say("Starting litecoind (regtest) and mining the exchange's first LTC…");
        Some(start_litecoind(&dir, &mut pids, &ltc_hot_key).await?)
    } else {
        None
    };
    say("Installing the Safe contracts (npm @safe-global/safe-smart-account)…");
    concord_chain::safe::artifacts(|m| say(&format!("  {m}")))?;

    // The exchange simulator, with one read-only key per module.
    let sim_port = free_port()?;
    let exchange_url = format!("http://127.0.0.1:{sim_port}");
    let admin_token = random_token(40);
    let admin_token_file = exchange_dir.join("admin.token");
    write_private(&admin_token_file, &admin_token)?;
    write_private(&exchange_dir.join("hot-wallet.key"), DEV_KEY_1)?;
    let mut read_keys = BTreeMap::new();
    let mut api_keys = Vec::new();
    for m in MODULES {
        let (key, secret) = (random_token(64), random_token(64));
        api_keys.push(
            json!({"api_key": key, "kind": "hmac", "secret": secret, "permissions": ["read"]}),
        );
        read_keys.insert(m, (key, secret));
    }
    // Kraken and Coinbase: accounts of their own at the same simulator (it speaks all three
    // APIs), each module with its own read key there: a Kraken key (HMAC-SHA512 secret, base64)
    // and a CDP key (ES256, its secret a PKCS#8 PEM).
    let mut kraken_keys = BTreeMap::new();
    let mut cdp_keys = BTreeMap::new();
    let (mut kraken_api, mut cdp_api) = (Vec::new(), Vec::new());
    for m in MODULES {
        use base64::Engine as _;
        use p256::pkcs8::EncodePublicKey as _;
        let key = random_token(56);
        let mut raw = [0u8; 64];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        let secret = base64::engine::general_purpose::STANDARD.encode(raw);
        kraken_api.push(
            json!({"api_key": key, "kind": "kraken", "secret": secret, "permissions": ["read"]}),
        );
        kraken_keys.insert(m, (key, secret));
        let cdp = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let name = format!("organizations/devnet/apiKeys/{}", uuid::Uuid::new_v4());
        let public = cdp
            .public_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|e| anyhow!("a CDP public key: {e}"))?;
        let pem = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&cdp, p256::pkcs8::LineEnding::LF)
            .map_err(|e| anyhow!("a CDP key: {e}"))?;
        cdp_api.push(
            json!({"api_key": name, "kind": "cdp", "public_key": public, "permissions": ["read"]}),
        );
        cdp_keys.insert(m, (name, pem.to_string()));
    }
    // Kraken's withdraw key: an HMAC secret no group can hold in shares. One module holds it
    // whole (the policy's held credential names it) and sends only what a certificate of the
    // members' approvals allows.
    let kraken_withdraw = {
        use base64::Engine as _;
        let mut raw = [0u8; 64];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        (
            random_token(56),
            base64::engine::general_purpose::STANDARD.encode(raw),
        )
    };
    kraken_api.push(json!({"api_key": kraken_withdraw.0, "kind": "kraken",
        "secret": kraken_withdraw.1, "permissions": ["withdraw"]}));
    let sim_config = json!({
        "listen": format!("127.0.0.1:{sim_port}"),
        "rpc_url": rpc_url,
        "chain_id": CHAIN_ID,
        "confirmations": 2,
        "address_seed": random_token(32),
        "hot_wallet_key_file": "hot-wallet.key",
        "admin_token": admin_token,
        "coins": [
            {"coin": "ETH", "network": "ETH", "decimals": 18, "withdraw_fee": "0.0001", "withdraw_min": "0.001"},
            {"coin": "CTT", "network": "ETH", "decimals": 18, "contract": token.to_string(), "withdraw_fee": "1", "withdraw_min": "1"},
        ],
        "accounts": [
            {"name": "trader", "balances": {"ETH": "20", "CTT": "50000"}, "api_keys": api_keys},
            {"name": KRAKEN_ACCOUNT, "balances": {"ETH": "2"}, "api_keys": kraken_api},
            {"name": COINBASE_ACCOUNT, "balances": {"ETH": "2"}, "api_keys": cdp_api},
        ],
    });
    let mut sim_config = sim_config;
    if let Some(node) = &ltc {
        sim_config["utxo"] = json!({
            "rpc_url": node.rpc_url, "rpc_user": node.rpc_user, "rpc_password": node.password()?,
            "chain": LTC_CHAIN, "network": "LTC", "hot_wallet_key": ltc_hot_key,
        });
        if let Some(coins) = sim_config["coins"].as_array_mut() {
            coins.push(json!({"coin": "LTC", "network": "LTC", "decimals": 8, "withdraw_fee": "0.001", "withdraw_min": "0.01"}));
        }
        sim_config["accounts"][0]["balances"]["LTC"] = json!("20");
    }
    let sim_config: concord_exchange_sim::SimConfig =
        serde_json::from_value(sim_config).context("the devnet's exchange configuration")?;
    let sim_file = exchange_dir.join("sim.toml");
    write_private(&sim_file, &sim_config.to_toml_string()?)?;
    let exe = std::env::current_exe()?;
    say(&format!(
        "Starting the exchange simulator on {exchange_url}…"
    ));
    pids.insert(
        "exchange".to_owned(),
        spawn(
            &dir,
            "exchange",
            &exe,
            &[
                "exchange-sim".into(),
                "--config".into(),
                sim_file.display().to_string(),
            ],
        )?,
    );
    let http = reqwest::Client::new();
    wait_for(
        "the exchange simulator",
        Duration::from_secs(30),
        || async {
            http.get(format!("{exchange_url}/api/v3/ping"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await?;

    // The proxy in front of m3's exchange connection.
    let mitm_port = free_port()?;
    let mitm_url = format!("http://127.0.0.1:{mitm_port}");
    let forge_file = dir.join("mitm-forged-address");
    let _ = std::fs::remove_file(&forge_file);
    pids.insert(
        "mitm".to_owned(),
        spawn(
            &dir,
            "mitm",
            &exe,
            &[
                "devnet".into(),
                "mitm".into(),
                "--listen".into(),
                format!("127.0.0.1:{mitm_port}"),
                "--upstream".into(),
                exchange_url.clone(),
                "--forge-file".into(),
                forge_file.display().to_string(),
            ],
        )?,
    );

    // The coordinator.
    let (grpc_port, http_port) = (free_port()?, free_port()?);
    let coord_dir = dir.join("coordinator");
    let mut init: Vec<String> = vec![
        "coordinator".into(),
        "init".into(),
        "--dir".into(),
        coord_dir.display().to_string(),
        "--grpc-listen".into(),
        format!("127.0.0.1:{grpc_port}"),
        "--http-listen".into(),
        format!("127.0.0.1:{http_port}"),
        "--json".into(),
    ];
    if let Some(url) = &opts.postgres {
        init.extend(["--database".into(), url.clone()]);
    }
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    let created = concord(&init)?;
    let coordinator_key = created["identity"].as_str().unwrap_or_default().to_owned();
    let api_pin = created["api_fingerprint"]
        .as_str()
        .context("coordinator init printed no API certificate fingerprint")?
        .to_owned();
    let trust = crate::client::Trust::pin_text(Some(&api_pin))?;
    let coord_file = coord_dir.join("coordinator.toml");
    let mut cfg = concord_coordinator::config::Config::load(&coord_file)?;
    cfg.chain = Some(concord_coordinator::config::ChainSettings {
        rpc_url: rpc_url.clone(),
        chain_id: CHAIN_ID,
        network: "ETH".into(),
        confirmations: 1,
        max_fee_per_gas: 200_000_000_000,
        max_priority_fee_per_gas: 2_000_000_000,
        follow_secs: opts.follow_secs,
        tokens: vec![concord_coordinator::config::TokenSettings {
            coin: "CTT".into(),
            contract: token,
            decimals: 18,
        }],
        safe_gas_key: Some("gas.key".into()),
    });
    let safe_gas_key_file = coord_dir.join("gas.key");
    write_private(&safe_gas_key_file, DEV_KEY_2)?;
    cfg.utxo = match &ltc {
        Some(node) => Some(concord_coordinator::config::UtxoSettings {
            chain: LTC_CHAIN.into(),
            network: "LTC".into(),
            coin: "LTC".into(),
            rpc_url: node.rpc_url.clone(),
            rpc_user: node.rpc_user.clone(),
            rpc_password: node.password()?,
            fee_rate_sat_vb: 2,
            confirmations: 1,
        }),
        None => None,
    };
    cfg.exchanges = [
        (EXCHANGE, "binance"),
        (KRAKEN, "kraken"),
        (COINBASE, "coinbase"),
    ]
    .into_iter()
    .map(
        |(name, kind)| concord_coordinator::config::ExchangeEndpoint {
            name: name.into(),
            kind: kind.into(),
            url: exchange_url.clone(),
        },
    )
    .collect();
    cfg.save(&coord_file)?;
    // More coordinators on the same (PostgreSQL) database: the same identity key, their own
    // ports and instance ids.
    let mut coordinators = vec![(
        coord_dir.clone(),
        format!("127.0.0.1:{grpc_port}"),
        http_port,
    )];
    for i in 2..=opts.coordinators.max(1) {
        let d = dir.join(format!("coordinator-{i}"));
        std::fs::create_dir_all(&d)?;
        for f in [
            "identity.key",
            "admin.token",
            "gas.key",
            "api.crt",
            "api.key",
        ] {
            std::fs::copy(coord_dir.join(f), d.join(f))?;
        }
        let (g, h) = (free_port()?, free_port()?);
        let mut c = cfg.clone();
        c.grpc_listen = format!("127.0.0.1:{g}");
        c.http_listen = format!("127.0.0.1:{h}");
        c.instance = Some(uuid::Uuid::new_v4().to_string());
        c.identity_key = "identity.key".into();
        c.api_tls = Some(concord_coordinator::config::ApiTlsSettings {
            cert: "api.crt".into(),
            key: "api.key".into(),
        });
        c.save(&d.join("coordinator.toml"))?;
        coordinators.push((d, format!("127.0.0.1:{g}"), h));
    }
    let mut coordinator_urls = Vec::new();
    for (i, (d, _, port)) in coordinators.iter().enumerate() {
        let name = coordinator_name(i);
        say(&format!("Starting {name}…"));
        pids.insert(
            name.clone(),
            spawn(
                &dir,
                &name,
                &exe,
                &[
                    "coordinator".into(),
                    "run".into(),
                    "--config".into(),
                    d.display().to_string(),
                ],
            )?,
        );
        let url = format!("https://127.0.0.1:{port}");
        let api_http = crate::client::http_client(&url.parse()?, &trust)?;
        wait_for(&name, Duration::from_secs(30), || async {
            api_http
                .get(format!("{url}/v1/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await?;
        coordinator_urls.push(url);
    }
    let coordinator_url = coordinator_urls[0].clone();
    let token_file = coord_dir.join("admin.token");
    let api = Api::from_parts(&coordinator_url, &token_file, &trust)?;

    // The people: admins (quorum 2 of 3), a trader, an approver, an importer. Their keys sit
    // in the devnet's directory, which is fine for a devnet only.
    let keys_dir = dir.join("keys");
    let mut admin_keys = Vec::new();
    for name in PRINCIPALS.iter().map(|(n, _)| *n) {
        let key = concord_wire::identity::IdentityKey::generate(&mut rand::rngs::OsRng);
        crate::authority::write_key(&keys_dir.join(format!("{name}.key")), &key)?;
        if name.starts_with("admin") {
            admin_keys.push(key.public().to_string());
        }
    }
    let trader_token_file = coord_dir.join("trader.token");
    let t = api
        .post("/v1/tokens", &json!({"name": "trader", "role": "trader"}))
        .await?;
    write_private(&trader_token_file, t["token"].as_str().unwrap_or_default())?;

    // The modules: vault (with the admins pinned), configuration with their own chain and
    // exchange views, read key, enrollment, pinned peers.
    let mut modules = Vec::new();
    let mut infos = Vec::new();
    let mut hsm_token = None;
    for m in MODULES {
        let mdir = dir.join(m);
        std::fs::create_dir_all(&mdir)?;
        let pass = mdir.join("passphrase");
        write_private(&pass, &random_token(32))?;
        say(&format!("Creating module {m} (sealed vault)…"));
        let (mdir_s, grpc_s, pass_s) = (
            mdir.display().to_string(),
            format!("127.0.0.1:{grpc_port}"),
            pass.display().to_string(),
        );
        let hsm = if opts.hsm && m == HSM_MODULE {
            let (library, label, pin_file) = softhsm_token(&mdir)?;
            hsm_token = Some(label.clone());
            say(&format!(
                "Module {m} keeps its vault key, identity key and multisig key in SoftHSM token {label} (PKCS#11)…"
            ));
            Some((library, label, pin_file.display().to_string()))
        } else {
            None
        };
        let mut args = vec![
            "module",
            "init",
            "--dir",
            &mdir_s,
            "--id",
            m,
            "--coordinator",
            &grpc_s,
            "--coordinator-key",
            &coordinator_key,
            "--admin-quorum",
            "2",
            "--json",
        ];
        match &hsm {
            Some((library, label, pin_file)) => args.extend([
                "--hsm",
                library.as_str(),
                "--token",
                label.as_str(),
                "--pin-file",
                pin_file.as_str(),
            ]),
            None => args.extend(["--passphrase-file", &pass_s]),
        }
        for k in &admin_keys {
            args.extend(["--admin", k.as_str()]);
        }
        let info = concord(&args)?;
        let file = mdir.join("module.toml");
        let mut mc = concord_module::Config::load(&file)?;
        mc.coordinator.also = coordinators[1..]
            .iter()
            .map(|(_, g, _)| g.clone())
            .collect();
        let url = if m == MITM_MODULE {
            mitm_url.clone()
        } else {
            exchange_url.clone()
        };
        mc.chain = Some(concord_module::config::ChainConfig {
            rpc_url: rpc_url.clone(),
            chain_id: CHAIN_ID,
            network: "ETH".into(),
            tokens: vec![concord_module::config::TokenConfig {
                coin: "CTT".into(),
                contract: token,
                decimals: 18,
            }],
        });
        mc.utxo = match &ltc {
            Some(node) => Some(concord_module::config::UtxoConfig {
                chain: LTC_CHAIN.into(),
                network: "LTC".into(),
                coin: "LTC".into(),
                rpc_url: node.rpc_url.clone(),
                rpc_user: node.rpc_user.clone(),
                rpc_password: node.password()?,
                max_fee_rate_sat_vb: 50,
                max_fee_sats: 100_000,
            }),
            None => None,
        };
        let (read_key, read_secret) = read_keys.get(m).cloned().unwrap_or_default();
        let (kraken_key, kraken_secret) = kraken_keys.get(m).cloned().unwrap_or_default();
        let (cdp_name, cdp_secret) = cdp_keys.get(m).cloned().unwrap_or_default();
        mc.exchanges = vec![
            concord_module::config::ExchangeConfig {
                name: EXCHANGE.into(),
                kind: "binance".into(),
                url: url.clone(),
                read_api_key: read_key,
                read_key_type: "hmac".into(),
                api_host: None,
                withdraw_api_key: None,
            },
            concord_module::config::ExchangeConfig {
                name: KRAKEN.into(),
                kind: "kraken".into(),
                url: url.clone(),
                read_api_key: kraken_key,
                read_key_type: "hmac".into(),
                api_host: None,
                withdraw_api_key: (m == KRAKEN_HOLDER).then(|| kraken_withdraw.0.clone()),
            },
            concord_module::config::ExchangeConfig {
                name: COINBASE.into(),
                kind: "coinbase".into(),
                url: url.clone(),
                read_api_key: cdp_name,
                read_key_type: "es256".into(),
                // The host the coordinator's sends name: the exchange's own, even for the
                // module that reaches it through the proxy.
                api_host: Some(exchange_url.trim_start_matches("http://").to_owned()),
                withdraw_api_key: None,
            },
        ];
        let metrics_port = free_port()?;
        mc.metrics = Some(concord_module::config::MetricsConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port)),
        });
        mc.save(&file)?;
        let state = concord_module::open_state(&mc)?;
        state.save_exchange_secret(EXCHANGE, read_secret.as_bytes())?;
        state.save_exchange_secret(KRAKEN, kraken_secret.as_bytes())?;
        if m == KRAKEN_HOLDER {
            state.save_withdraw_secret(KRAKEN, kraken_withdraw.1.as_bytes())?;
        }
        state.save_exchange_secret(COINBASE, cdp_secret.as_bytes())?;
        api.post("/v1/modules", &info).await?;
        infos.push(info);
        modules.push(ModuleEntry {
            id: m.to_owned(),
            dir: mdir,
            exchange_url: url,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
        });
    }
    for (i, m) in modules.iter().enumerate() {
        let mc = concord_module::Config::load(&m.dir.join("module.toml"))?;
        let state = concord_module::open_state(&mc)?;
        for (j, peer) in infos.iter().enumerate() {
            if i != j {
                let key = peer["identity"]
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| anyhow!("peer key: {e}"))?;
                state.pin_peer(key)?;
            }
        }
    }
    for m in &modules {
        say(&format!("Starting module {}…", m.id));
        pids.insert(
            m.id.clone(),
            spawn(
                &dir,
                &m.id,
                &exe,
                &[
                    "module".into(),
                    "run".into(),
                    "--config".into(),
                    m.dir.display().to_string(),
                ],
            )?,
        );
    }
    wait_for(
        "the modules' connections",
        Duration::from_secs(60),
        || async {
            api.get("/v1/modules").await.is_ok_and(|list| {
                list.as_array().is_some_and(|l| {
                    l.len() == MODULES.len() && l.iter().all(|m| m["connected"] == true)
                })
            })
        },
    )
    .await?;
    // The first policy: who is who. Wallets come into it once they exist (the demo).
    say("Admins 1 and 2 sign the first policy (the principals and their roles)…");
    let view = crate::authority::propose(
        &api,
        json!({ "admin_quorum": 2, "principals": principals(&keys_dir)? }),
    )
    .await?;
    for admin in ["admin-1", "admin-2"] {
        crate::authority::approve(&api, &view.hash, &principal_key(&keys_dir, admin)?).await?;
    }
    wait_for(
        "the modules to adopt the first policy",
        Duration::from_secs(30),
        || async {
            api.get(&format!("/v1/policies/{}", view.hash))
                .await
                .is_ok_and(|v| {
                    v["modules"].as_array().is_some_and(|l| {
                        l.len() == MODULES.len()
                            && l.iter().all(|m| m["policy_hash"] == json!(view.hash))
                    })
                })
        },
    )
    .await?;
    let info = DevnetInfo {
        dir: dir.clone(),
        rpc_url,
        chain_id: CHAIN_ID,
        coordinator_url,
        api_pin: Some(api_pin),
        coordinator_urls,
        coordinator_dirs: coordinators.iter().map(|(d, _, _)| d.clone()).collect(),
        exchange_url,
        token_file,
        trader_token_file,
        keys_dir,
        exchange_admin_token_file: admin_token_file,
        exchange_account: "trader".into(),
        token_contract: token,
        modules,
        pids,
        mitm_forge_file: forge_file,
        mitm_module: MITM_MODULE.into(),
        ltc,
        safe_gas_key_file,
        hsm_token,
    };
    info.save()?;
    say(&format!("Devnet up: {}", dir.join("devnet.json").display()));
    Ok(info)
}

/// Starts the devnet's litecoind (regtest) and mines 101 blocks to the exchange's hot wallet
/// (its first coinbase mature: the coins LTC withdrawals are paid from).
async fn start_litecoind(
    dir: &Path,
    pids: &mut BTreeMap<String, u32>,
    hot_key: &str,
) -> Result<LtcNode> {
    use concord_chain::litecoind;
    let bin = litecoind::litecoind_binary()?;
    let data = dir.join("litecoind");
    std::fs::create_dir_all(&data)?;
    let port = free_port()?;
    let password_file = data.join("rpc.password");
    let password = random_token(32);
    write_private(&password_file, &password)?;
    let args = litecoind::regtest_args(&data, port, litecoind::REGTEST_USER, &password);
    pids.insert(
        "litecoind".to_owned(),
        spawn(dir, "litecoind", &bin, &args)?,
    );
    let node = LtcNode {
        rpc_url: format!("http://127.0.0.1:{port}"),
        rpc_user: litecoind::REGTEST_USER.into(),
        rpc_password_file: password_file,
    };
    let client = node.client()?;
    wait_for("litecoind", Duration::from_secs(60), || async {
        client.chain().await.is_ok()
    })
    .await?;
    let key =
        concord_chain::utxo::bitcoin::secp256k1::SecretKey::from_slice(&hex::decode(hot_key)?)?;
    let public = key.public_key(&concord_chain::utxo::bitcoin::secp256k1::Secp256k1::new());
    let hot = concord_chain::utxo::WalletScript::p2wpkh(&public.serialize())?;
    client.mine_to(101, &hot.script_pubkey()).await?;
    // A block a second from now on, like anvil's.
    std::fs::write(data.join("node.json"), serde_json::to_vec_pretty(&node)?)?;
    std::fs::write(
        data.join("miner.script"),
        hot.script_pubkey().to_hex_string(),
    )?;
    let exe = std::env::current_exe()?;
    pids.insert(
        "ltc-miner".to_owned(),
        spawn(
            dir,
            "ltc-miner",
            &exe,
            &[
                "devnet".into(),
                "ltc-miner".into(),
                "--dir".into(),
                dir.display().to_string(),
            ],
        )?,
    );
    Ok(node)
}

/// `concord devnet down`.
pub async fn down(dir: &Path) -> Result<usize> {
    let info = DevnetInfo::load(dir)?;
    let mut stopped = 0;
    for pid in info.pids.values() {
        if alive(*pid) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            stopped += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut children) = CHILDREN.lock() {
            children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        }
        if !info.pids.values().any(|p| alive(*p)) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for pid in info.pids.values() {
        if alive(*pid) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
    if let Some(label) = &info.hsm_token {
        let _ = Command::new("softhsm2-util")
            .args(["--delete-token", "--token", label])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    Ok(stopped)
}

/// A SoftHSM token of the devnet's own for module [`HSM_MODULE`] (SoftHSM's configuration
/// is the system's, or `SOFTHSM2_CONF`'s): its library, its label, and its user PIN in a
/// file of the module's directory (an INSECURE development PIN).
pub(crate) fn softhsm_token(mdir: &Path) -> Result<(String, String, PathBuf)> {
    let library = SOFTHSM_LIBRARIES
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            anyhow!(
                "SoftHSM 2 is not installed (no libsofthsm2.so): `apt-get install softhsm2`, or start the devnet with --no-hsm"
            )
        })?;
    let label = format!("concord-devnet-{}", &random_token(8)[..8]);
    let pin = random_token(12);
    let pin_file = mdir.join("hsm.pin");
    write_private(&pin_file, &pin)?;
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            &label,
            "--pin",
            &pin,
            "--so-pin",
            &random_token(12),
        ])
        .output()
        .context("cannot run softhsm2-util (apt-get install softhsm2)")?;
    if !out.status.success() {
        bail!(
            "softhsm2-util could not make a token: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(((*library).to_owned(), label, pin_file))
}

/// Kills coordinator `i` of a running devnet dead (`kill -9`), as a crash would.
pub(crate) fn kill_coordinator(info: &DevnetInfo, i: usize) {
    if let Some(pid) = info.pids.get(&coordinator_name(i)) {
        let _ = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    if let Ok(mut children) = CHILDREN.lock() {
        children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
    }
}

/// Starts coordinator `i` of a running devnet again on its own configuration, records its
/// process (so `devnet down` stops it) and waits for its API.
pub(crate) async fn restart_coordinator(info: &mut DevnetInfo, i: usize) -> Result<()> {
    let name = coordinator_name(i);
    let dir = info
        .coordinator_dirs
        .get(i)
        .cloned()
        .unwrap_or_else(|| info.dir.join("coordinator"));
    let url = info
        .coordinator_urls
        .get(i)
        .cloned()
        .unwrap_or_else(|| info.coordinator_url.clone());
    let restarts = info.pids.keys().filter(|k| k.starts_with(&name)).count();
    let pid = spawn(
        &info.dir,
        &format!("{name}-restart-{restarts}"),
        &std::env::current_exe()?,
        &[
            "coordinator".into(),
            "run".into(),
            "--config".into(),
            dir.display().to_string(),
        ],
    )?;
    info.pids.insert(name.clone(), pid);
    info.save()?;
    let http = crate::client::http_client(
        &url.parse()?,
        &crate::client::Trust::pin_text(info.api_pin.as_deref())?,
    )?;
    wait_for(&name, Duration::from_secs(30), || async {
        http.get(format!("{url}/v1/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
}

/// A devnet's directory: the one given, else the default (outside the work tree).
fn dir_of(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(crate::connect::default_devnet_dir)
}

/// Entry point of `concord devnet …`.
pub async fn run(cmd: DevnetCommand) -> Result<()> {
    match cmd {
        DevnetCommand::Up {
            dir,
            block_time,
            follow_secs,
            postgres,
            coordinators,
            no_utxo,
            no_hsm,
            json,
        } => {
            let dir = dir_of(dir);
            if coordinators > 1 && postgres.is_none() {
                bail!(
                    "--coordinators {coordinators} needs --postgres URL: coordinators share one PostgreSQL database"
                );
            }
            let info = up(
                &dir,
                json,
                &UpOptions {
                    block_time,
                    follow_secs,
                    postgres,
                    coordinators,
                    utxo: !no_utxo,
                    hsm: !no_hsm,
                },
            )
            .await?;
            if json {
                crate::outln!("{}", serde_json::to_string(&info)?);
            } else {
                crate::outln!("Devnet up in {}", info.dir.display());
                crate::outln!(
                    "  chain        {} (chain id {})",
                    info.rpc_url,
                    info.chain_id
                );
                crate::outln!("  exchange     {}", info.exchange_url);
                crate::outln!("  coordinator  {}", info.coordinator_url);
                if let Some(pin) = &info.api_pin {
                    crate::outln!("  API pin      sha256 {pin}");
                }
                crate::outln!(
                    "  API token    {} (admin), {} (trader)",
                    info.token_file.display(),
                    info.trader_token_file.display()
                );
                crate::outln!(
                    "  keys         {} (INSECURE devnet keys: admins, trader, approver, importer)",
                    info.keys_dir.display()
                );
                let (flag, dir_flag) = crate::connect::devnet_flags(&info.dir);
                crate::outln!(
                    "Try: concord --help, e.g. `concord wallets list{flag}`; stop with `concord devnet down{dir_flag}`."
                );
            }
            Ok(())
        }
        DevnetCommand::Prepare {
            dir,
            setup,
            fund_eth,
        } => {
            let dir = dir_of(dir);
            let mut d = crate::demo::attach(DevnetInfo::load(&dir)?, true)?;
            let p = crate::demo::prepare_with(&mut d, setup, &fund_eth).await?;
            crate::outln!(
                "{}",
                json!({"wallet": p.wallet, "address": p.address.to_string(), "steps": d.steps})
            );
            Ok(())
        }
        DevnetCommand::Down { dir } => {
            let dir = dir_of(dir);
            let n = down(&dir).await?;
            crate::outln!(
                "Stopped {n} process(es) of the devnet in {}.",
                dir.display()
            );
            Ok(())
        }
        DevnetCommand::Demo {
            dir,
            json,
            setup,
            down: stop,
        } => crate::demo::demo(&dir_of(dir), json, setup, stop).await,
        DevnetCommand::Mitm {
            listen,
            upstream,
            forge_file,
        } => mitm(&listen, &upstream, forge_file).await,
        DevnetCommand::LtcMiner { dir, every_ms } => ltc_miner(&dir, every_ms).await,
    }
}

/// Mines a block every `every_ms` on the devnet's Litecoin node, rewards to the exchange's
/// hot wallet (they keep its LTC withdrawals paid).
async fn ltc_miner(dir: &Path, every_ms: u64) -> Result<()> {
    let node: LtcNode = serde_json::from_slice(&std::fs::read(dir.join("litecoind/node.json"))?)?;
    let client = node.client()?;
    let script = concord_chain::utxo::bitcoin::ScriptBuf::from_hex(
        std::fs::read_to_string(dir.join("litecoind/miner.script"))?.trim(),
    )?;
    loop {
        if let Err(e) = client.mine_to(1, &script).await {
            tracing::warn!(error = %e, "mining a Litecoin block failed");
        }
        tokio::time::sleep(Duration::from_millis(every_ms)).await;
    }
}

/// The man-in-the-middle proxy: forwards every request to the real exchange; when armed,
/// replaces the `address` of deposit-address answers with the forged one.
async fn mitm(listen: &str, upstream: &str, forge_file: PathBuf) -> Result<()> {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let upstream = upstream.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (http, upstream, forge_file) = (http.clone(), upstream.clone(), forge_file.clone());
        async move {
            let url = format!(
                "{upstream}{}",
                uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
            );
            let mut req = http.request(
                reqwest::Method::from_bytes(method.as_str().as_bytes())
                    .unwrap_or(reqwest::Method::GET),
                &url,
            );
            // Every header that authenticates (Binance's key, Kraken's key and signature,
            // Coinbase's bearer token, which names the host it was made for: kept).
            for name in [
                "x-mbx-apikey",
                "content-type",
                "api-key",
                "api-sign",
                "authorization",
                "host",
            ] {
                if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                    req = req.header(name, v);
                }
            }
            let resp = match req.body(body.to_vec()).send().await {
                Ok(r) => r,
                Err(e) => return json_response(StatusCode::BAD_GATEWAY, e.to_string()),
            };
            let status =
                StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = resp.text().await.unwrap_or_default();
            let forged = std::fs::read_to_string(&forge_file).ok();
            let path = uri.path();
            let text = match forged {
                Some(addr) => match serde_json::from_str::<Value>(&text) {
                    // Binance's deposit address.
                    Ok(mut v)
                        if path == "/sapi/v1/capital/deposit/address"
                            && v.get("address").is_some() =>
                    {
                        v["address"] = json!(addr.trim());
                        v.to_string()
                    }
                    // Kraken's DepositAddresses and Coinbase's account addresses: every one.
                    Ok(mut v)
                        if path == "/0/private/DepositAddresses"
                            || (path.starts_with("/v2/accounts/")
                                && path.ends_with("/addresses")) =>
                    {
                        let list = if path.starts_with("/0/") {
                            "result"
                        } else {
                            "data"
                        };
                        if let Some(items) = v[list].as_array_mut() {
                            for item in items {
                                item["address"] = json!(addr.trim());
                            }
                        }
                        v.to_string()
                    }
                    _ => text,
                },
                None => text,
            };
            json_response(status, text)
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn json_response(status: axum::http::StatusCode, body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
