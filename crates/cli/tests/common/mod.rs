//! Helpers shared by the end-to-end tests over a devnet: the `concord` binary, a devnet that
//! stops when the test ends, the coordinator API as a trader, the chain and the exchange as
//! an auditor sees them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_chain::{Address, EvmClient, U256};
use concord_exchange::HmacSha256Signer;
use concord_exchange::binance::BinanceClient;
use concord_wire::authority::{Action, AddressRef, AgreementRule, Intent, SignedIntent};
use concord_wire::identity::IdentityKey;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_concord");

/// Runs `concord` and returns its output.
pub fn concord(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run concord")
}

/// Runs `concord`, requiring success, and parses the last JSON line it printed.
pub fn concord_json(args: &[&str]) -> Value {
    let out = concord(args);
    assert!(
        out.status.success(),
        "concord {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    serde_json::from_str(line).unwrap()
}

/// An HTTP client that pins the devnet's coordinator API certificate (`api_pin` in
/// devnet.json); plain-HTTP services (the chain, the exchange) are reached as usual.
pub fn api_client(info: &Value) -> reqwest::Client {
    let pin = info["api_pin"]
        .as_str()
        .expect("devnet.json has no api_pin");
    let tls = concord_wire::api_tls::pinned_client_config(pin.parse().unwrap()).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

/// Stops the devnet in a directory when dropped.
pub struct Down(pub PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = concord(&["devnet", "down", "--dir", &self.0.display().to_string()]);
    }
}

/// A process of the test's own, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running devnet with a prepared wallet, driven as a trader and audited on chain and at
/// the exchange.
pub struct Net {
    pub dir: PathBuf,
    pub info: Value,
    pub wallet: String,
    pub address: Address,
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
    pub chain: EvmClient,
    /// The coordinator started by the test (after the devnet's own was stopped).
    pub coordinator: Option<Proc>,
    _down: Down,
    _tmp: tempfile::TempDir,
}

impl Net {
    /// `concord devnet up` (1-second blocks, a short follow window) and `devnet prepare`.
    pub async fn start(fund_eth: &str) -> Net {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("devnet");
        let d = dir.display().to_string();
        let info = concord_json(&[
            "devnet",
            "up",
            "--dir",
            &d,
            "--block-time",
            "1",
            "--follow-secs",
            "4",
            "--json",
        ]);
        let down = Down(dir.clone());
        let p = concord_json(&[
            "devnet",
            "prepare",
            "--dir",
            &d,
            "--insecure-test-primes",
            "--fund-eth",
            fund_eth,
        ]);
        for s in p["steps"].as_array().unwrap() {
            assert_eq!(s["held"], true, "{s}");
        }
        let token = std::fs::read_to_string(info["trader_token_file"].as_str().unwrap())
            .unwrap()
            .trim()
            .to_owned();
        let http = api_client(&info);
        Net {
            url: info["coordinator_url"].as_str().unwrap().to_owned(),
            chain: EvmClient::new(info["rpc_url"].as_str().unwrap()).unwrap(),
            wallet: p["wallet"].as_str().unwrap().to_owned(),
            address: p["address"].as_str().unwrap().parse().unwrap(),
            dir,
            info,
            token,
            http,
            coordinator: None,
            _down: down,
            _tmp: tmp,
        }
    }

    pub fn key(&self, name: &str) -> IdentityKey {
        let keys = self.info["keys_dir"].as_str().unwrap();
        let hex_seed =
            std::fs::read_to_string(Path::new(keys).join(format!("{name}.key"))).unwrap();
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_seed.trim(), &mut *seed).unwrap();
        IdentityKey::from_seed(&seed)
    }

    /// A trader's intent (co-signed as named).
    pub fn intent(&self, action: Action, cosigners: &[&str]) -> SignedIntent {
        let mut si = SignedIntent::new(Intent::new(action, 3600), &self.key("trader"));
        for c in cosigners {
            si.cosign(&self.key(c));
        }
        si
    }

    pub fn deposit(&self, amount: &str, rule: AgreementRule) -> SignedIntent {
        self.intent(
            Action::Deposit {
                wallet: self.wallet.parse().unwrap(),
                exchange: "binance".into(),
                coin: "ETH".into(),
                network: "ETH".into(),
                amount: amount.into(),
                rule,
            },
            &[],
        )
    }

    pub fn withdrawal(&self, amount: &str) -> SignedIntent {
        self.intent(
            Action::Withdraw {
                exchange: "binance".into(),
                coin: "ETH".into(),
                network: "ETH".into(),
                amount: amount.into(),
                to: AddressRef::Label("desk".into()),
                rule: AgreementRule::All,
            },
            &[],
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Posts a transfer request (`kind`: deposits or withdrawals) with an idempotency key;
    /// returns the HTTP status and body (status 0: no answer, the coordinator went away).
    pub async fn post(&self, kind: &str, intent: &SignedIntent, key: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/transfers/{kind}", self.url))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", key)
            .json(&json!({ "intent": intent }))
            .send()
            .await;
        match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Posts a transfer, retrying (same key, same intent) while the coordinator is away.
    pub async fn post_retrying(&self, kind: &str, intent: &SignedIntent) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let resp = self
                .http
                .post(format!("{}/v1/transfers/{kind}", self.url))
                .bearer_auth(&self.token)
                .header("Idempotency-Key", intent.intent.id.clone())
                .json(&json!({ "intent": intent }))
                .send()
                .await;
            if let Ok(r) = resp
                && r.status().is_success()
            {
                let v: Value = r.json().await.unwrap();
                return v["id"].as_str().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the coordinator never took the request"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until a transfer is final (or `secs` pass), riding out a coordinator that is
    /// away.
    pub async fn wait_final(&self, id: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let resp = self
                .http
                .get(format!("{}/v1/transfers/{id}?wait=5", self.url))
                .bearer_auth(&self.token)
                .send()
                .await;
            if let Ok(r) = resp
                && let Ok(t) = r.json::<Value>().await
                && matches!(
                    t["status"].as_str(),
                    Some("credited" | "arrived" | "failed")
                )
            {
                return t;
            }
            if Instant::now() > deadline {
                return self.get(&format!("/v1/transfers/{id}")).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The wallet's next nonce on chain (its number of sent transactions).
    pub async fn nonce(&self) -> u64 {
        self.chain.pending_nonce(self.address).await.unwrap()
    }

    /// The wallet's ETH balance on chain.
    pub async fn balance(&self) -> U256 {
        self.chain.balance(self.address).await.unwrap()
    }

    /// The exchange account's free balance of a coin, as an auditor with a read key sees it.
    pub async fn exchange_balance(&self, coin: &str) -> String {
        let sim: toml::Value =
            toml::from_str(&std::fs::read_to_string(self.dir.join("exchange/sim.toml")).unwrap())
                .unwrap();
        let key = &sim["accounts"][0]["api_keys"][0];
        let client = BinanceClient::new(
            self.info["exchange_url"].as_str().unwrap(),
            key["api_key"].as_str().unwrap().to_owned(),
            Arc::new(HmacSha256Signer::new(key["secret"].as_str().unwrap()).unwrap()),
        )
        .unwrap();
        client
            .balances()
            .await
            .unwrap()
            .into_iter()
            .find(|b| b.asset == coin)
            .map(|b| b.free)
            .unwrap_or_default()
    }

    /// Sets the exchange simulator's faults (its admin API).
    pub async fn exchange_faults(&self, faults: Value) {
        let admin =
            std::fs::read_to_string(self.info["exchange_admin_token_file"].as_str().unwrap())
                .unwrap();
        let r = self
            .http
            .post(format!(
                "{}/sim/faults",
                self.info["exchange_url"].as_str().unwrap()
            ))
            .bearer_auth(admin.trim())
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }

    /// Calls a JSON-RPC method of the devnet's anvil.
    pub async fn anvil(&self, method: &str, params: Value) -> Value {
        self.http
            .post(self.info["rpc_url"].as_str().unwrap())
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Stops the coordinator (the devnet's, or the test's own) dead: `kill -9`.
    pub fn kill_coordinator(&mut self) {
        if let Some(mut p) = self.coordinator.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        } else if let Some(pid) = self.info["pids"]["coordinator"].as_u64() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }

    /// Starts a coordinator on the devnet's configuration (with `FAILPOINTS` if given) and
    /// waits for its API.
    pub async fn start_coordinator(&mut self, failpoints: Option<&str>) {
        let config = self.dir.join("coordinator").display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs/coordinator-test.log"))
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["coordinator", "run", "--config", &config])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(f) = failpoints {
            cmd.env("FAILPOINTS", f);
        }
        self.coordinator = Some(Proc(cmd.spawn().unwrap()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .http
            .get(format!("{}/v1/health", self.url))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the coordinator did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Points the devnet coordinator's configuration at another chain RPC URL (takes effect
    /// at its next start).
    pub fn set_coordinator_rpc(&self, url: &str) {
        let path = self.dir.join("coordinator/coordinator.toml");
        let mut config: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["chain"].as_table_mut().unwrap()["rpc_url"] = toml::Value::String(url.into());
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    }

    /// Waits until the test's coordinator process has stopped by itself (a failpoint);
    /// `false` if it still runs after `secs`.
    pub async fn coordinator_stopped(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(p) = &mut self.coordinator
                && let Ok(Some(_)) = p.0.try_wait()
            {
                self.coordinator = None;
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every module is connected to the coordinator again.
    pub async fn wait_modules(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self.get("/v1/modules").await;
            if list
                .as_array()
                .is_some_and(|l| l.len() == 3 && l.iter().all(|m| m["connected"] == true))
            {
                return;
            }
            assert!(Instant::now() < deadline, "the modules did not reconnect");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `x` ETH in wei.
pub fn eth(x: &str) -> U256 {
    concord_wire::units::parse_amount(x, 18).unwrap()
}

/// A TCP relay in front of the chain's RPC that the test can cut (every open connection
/// dropped, new ones refused) and restore: the chain RPC "dropped and restored".
pub struct RpcSwitch {
    pub url: String,
    on: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RpcSwitch {
    /// Starts relaying to `upstream` (an `http://host:port` URL).
    pub async fn start(upstream: &str) -> RpcSwitch {
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (on, watch) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*watch.borrow() {
                    continue; // dropped: the connection is closed at once
                }
                let target = target.clone();
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|on| !*on) => {}
                    }
                });
            }
        });
        RpcSwitch { url, on, task }
    }

    /// Cuts the RPC: open connections are dropped, new ones closed.
    pub fn cut(&self) {
        self.on.send_replace(false);
    }

    /// Restores the RPC.
    pub fn restore(&self) {
        self.on.send_replace(true);
    }
}

impl Drop for RpcSwitch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
