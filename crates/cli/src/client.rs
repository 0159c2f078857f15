//! The coordinator API client commands.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use concord_tss::WalletId;
use concord_wire::authority::{Action, AddressRef, AgreementRule};
use serde_json::{Value, json};

use crate::authority::SignerArgs;

/// Where the API is and how to authenticate.
#[derive(Args)]
pub struct ApiArgs {
    /// The coordinator's API URL.
    #[arg(long, env = "CONCORD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// File holding the API token (or set CONCORD_TOKEN).
    #[arg(long, env = "CONCORD_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Talk to the local devnet in this directory (its devnet.json gives URL and token).
    #[arg(long, env = "CONCORD_DEVNET")]
    devnet: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ModulesCommand {
    /// Enroll a module from the JSON `concord module show --json` printed.
    Enroll {
        /// That JSON, in a file.
        #[arg(long)]
        info: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List enrolled modules and whether each is connected.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum GroupsCommand {
    /// Create a signer group; its auxiliary material is prepared in the background.
    Create {
        /// Group id.
        #[arg(long)]
        id: String,
        /// Signers required.
        #[arg(long)]
        threshold: u16,
        /// Member module ids, comma-separated (their order fixes their indices).
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
        /// Wait until the group is ready, showing progress.
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a group.
    Show {
        /// Group id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum WalletsCommand {
    /// Create a wallet by distributed key generation.
    Create {
        /// Signer group.
        #[arg(long)]
        group: String,
        /// ecdsa-secp256k1, schnorr-taproot or ed25519. What the wallet may do (trading, or
        /// an exchange's withdraw key) is the admin-signed policy's to say.
        #[arg(long)]
        scheme: String,
        /// Wait for the wallet, showing progress.
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import an existing private key: it is split here, in memory, each shard sealed to its
    /// module, and wiped. The key existed whole once: prefer wallets created by DKG.
    Import {
        /// Signer group.
        #[arg(long)]
        group: String,
        /// ecdsa-secp256k1 (32-byte private key), schnorr-taproot (32-byte private key, the
        /// BIP-341 internal key) or ed25519 (32-byte RFC 8032 seed).
        #[arg(long)]
        scheme: String,
        /// File holding the key, hex (it is read, used and wiped from memory; delete the file).
        #[arg(long)]
        key_file: PathBuf,
        /// The importer's signature (`--key`: a principal with the importer role).
        #[command(flatten)]
        signer: SignerArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List wallets.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `concord sign`.
#[derive(Args)]
pub struct SignArgs {
    /// Wallet id.
    #[arg(long)]
    wallet: String,
    /// The message to sign, hex. It is signed domain-separated (the tag
    /// "concord/message/v1" and a zero byte first; ECDSA signs the SHA-256 of that), and only
    /// if the policy allows raw messages for the wallet.
    #[arg(long)]
    message: String,
    /// Agreement rule: all (every member of the group approves; the default) or threshold.
    #[arg(long, default_value = "all")]
    rule: String,
    /// The requester's signature (`--key`: a trader of the policy).
    #[command(flatten)]
    signer: SignerArgs,
    /// ECDSA: presigned (default; a pooled presignature when one fits) or interactive.
    #[arg(long, default_value = "presigned")]
    mode: String,
    /// Wait for the signature, showing progress.
    #[arg(long)]
    wait: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// An authenticated client of the coordinator API.
pub(crate) struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    pub(crate) fn new(args: &ApiArgs) -> Result<Api> {
        if let Some(dir) = &args.devnet {
            let info = crate::devnet::DevnetInfo::load(dir)?;
            return Api::from_parts(&info.coordinator_url, &info.token_file);
        }
        let token = match (&args.token_file, std::env::var("CONCORD_TOKEN")) {
            (Some(f), _) => std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the API token from {}", f.display()))?
                .trim()
                .to_owned(),
            (None, Ok(t)) => t.trim().to_owned(),
            (None, Err(_)) => bail!("no API token: pass --token-file FILE or set CONCORD_TOKEN"),
        };
        Ok(Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            url: args.url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// A client for `url` with the token in `token_file`.
    pub(crate) fn from_parts(url: &str, token_file: &std::path::Path) -> Result<Api> {
        let token = std::fs::read_to_string(token_file)
            .with_context(|| format!("cannot read the API token from {}", token_file.display()))?
            .trim()
            .to_owned();
        Ok(Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(330))
                .build()?,
            url: url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn check(resp: reqwest::Response) -> Result<Value> {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            let msg = body
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("the coordinator answered {status}"));
            Err(anyhow!(msg))
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the coordinator at {}", self.url))?;
        Self::check(resp).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.post_with_key(path, body, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// Posts with the caller's own `Idempotency-Key` (a retry sends the same one).
    pub(crate) async fn post_with_key(&self, path: &str, body: &Value, key: &str) -> Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the coordinator at {}", self.url))?;
        Self::check(resp).await
    }

    /// Polls a job until it is done or failed, printing each new event.
    pub(crate) async fn wait_job(&self, id: &str, quiet: bool) -> Result<Value> {
        let mut seen = HashSet::new();
        loop {
            let job = self.get(&format!("/v1/jobs/{id}?wait=1")).await?;
            if !quiet && let Some(events) = job.get("events").and_then(Value::as_array) {
                for e in events {
                    let seq = e.get("seq").and_then(Value::as_i64).unwrap_or(0);
                    if seen.insert(seq) {
                        let module = e
                            .get("module_id")
                            .and_then(Value::as_str)
                            .unwrap_or("coordinator");
                        let kind = e.get("kind").and_then(Value::as_str).unwrap_or("");
                        let detail = e.get("detail").and_then(Value::as_str).unwrap_or("");
                        let detail = if kind == "approval" {
                            "approved"
                        } else {
                            detail
                        };
                        eprintln!("  [{module}] {kind}: {detail}");
                    }
                }
            }
            match job.get("status").and_then(Value::as_str) {
                Some("done") => return Ok(job),
                Some("failed") => {
                    let err = job
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error");
                    bail!("job {id} failed: {err}");
                }
                _ => {}
            }
        }
    }
}

fn print(value: &Value, json: bool, human: impl FnOnce(&Value)) {
    if json {
        println!("{value}");
    } else {
        human(value);
    }
}

pub async fn modules(args: &ApiArgs, cmd: ModulesCommand) -> Result<()> {
    let api = Api::new(args)?;
    match cmd {
        ModulesCommand::Enroll { info, json } => {
            let text = std::fs::read_to_string(&info)
                .with_context(|| format!("cannot read {}", info.display()))?;
            let info: Value = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not the JSON `concord module show --json` prints",
                    info.display()
                )
            })?;
            let body = json!({
                "id": info["id"], "identity": info["identity"],
                "sealing_key": info["sealing_key"], "sealing_key_signature": info["sealing_key_signature"],
            });
            let m = api.post("/v1/modules", &body).await?;
            print(&m, json, |m| {
                println!(
                    "Enrolled module {} (fingerprint {}).",
                    m["id"].as_str().unwrap_or(""),
                    m["fingerprint"].as_str().unwrap_or("")
                );
            });
        }
        ModulesCommand::List { json } => {
            let list = api.get("/v1/modules").await?;
            print(&list, json, |list| {
                for m in list.as_array().into_iter().flatten() {
                    println!(
                        "{:<16} {}  {}",
                        m["id"].as_str().unwrap_or(""),
                        m["fingerprint"].as_str().unwrap_or(""),
                        if m["connected"].as_bool() == Some(true) {
                            "connected"
                        } else {
                            "not connected"
                        }
                    );
                }
            });
        }
    }
    Ok(())
}

pub async fn groups(args: &ApiArgs, cmd: GroupsCommand) -> Result<()> {
    let api = Api::new(args)?;
    match cmd {
        GroupsCommand::Create {
            id,
            threshold,
            members,
            wait,
            json,
        } => {
            let g = api
                .post(
                    "/v1/groups",
                    &json!({ "id": id, "threshold": threshold, "members": members }),
                )
                .await?;
            if !json {
                println!(
                    "Group {id} created ({threshold}-of-{}); preparing its auxiliary material.",
                    members.len()
                );
            }
            let g = if wait {
                let job = g["aux_job_id"].as_str().unwrap_or_default().to_owned();
                if !json {
                    eprintln!(
                        "Waiting for every member to prepare (safe primes take a minute or more each)…"
                    );
                }
                api.wait_job(&job, json).await?;
                api.get(&format!("/v1/groups/{id}")).await?
            } else {
                g
            };
            print(&g, json, |g| {
                println!("Group {id} is {}.", g["status"].as_str().unwrap_or("?"))
            });
        }
        GroupsCommand::Show { id, json } => {
            let g = api.get(&format!("/v1/groups/{id}")).await?;
            print(&g, json, |g| {
                println!(
                    "Group {}: {}-of-{}, {}",
                    id,
                    g["threshold"],
                    g["size"],
                    g["status"].as_str().unwrap_or("?")
                );
                for (i, m) in g["members"].as_array().into_iter().flatten().enumerate() {
                    println!("  {i}: {}", m.as_str().unwrap_or(""));
                }
            });
        }
    }
    Ok(())
}

pub async fn wallets(args: &ApiArgs, cmd: WalletsCommand) -> Result<()> {
    let api = Api::new(args)?;
    match cmd {
        WalletsCommand::Create {
            group,
            scheme,
            wait,
            json,
        } => {
            let body = json!({ "group": group, "scheme": scheme });
            let job = api.post("/v1/wallets", &body).await?;
            let id = job["id"].as_str().unwrap_or_default().to_owned();
            if !wait {
                print(&job, json, |_| {
                    println!("Key generation started: job {id}.")
                });
                return Ok(());
            }
            let done = api.wait_job(&id, json).await?;
            let wallet = done["result"].clone();
            print(&wallet, json, |w| {
                println!("Wallet {}", w["id"].as_str().unwrap_or(""));
                println!("  scheme      {}", w["scheme"].as_str().unwrap_or(""));
                println!("  public key  {}", w["public_key"].as_str().unwrap_or(""));
            });
        }
        WalletsCommand::Import {
            group,
            scheme,
            key_file,
            signer,
            json,
        } => {
            let wallet =
                crate::import::import(&api, &group, &scheme, &key_file, &signer, json).await?;
            print(&wallet, json, |w| {
                println!("Imported wallet {}", w["id"].as_str().unwrap_or(""));
                println!("  scheme      {}", w["scheme"].as_str().unwrap_or(""));
                println!("  public key  {}", w["public_key"].as_str().unwrap_or(""));
            });
        }
        WalletsCommand::List { json } => {
            let list = api.get("/v1/wallets").await?;
            print(&list, json, |list| {
                for w in list.as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<16} group {}",
                        w["id"].as_str().unwrap_or(""),
                        w["scheme"].as_str().unwrap_or(""),
                        w["group_id"].as_str().unwrap_or("")
                    );
                }
            });
        }
    }
    Ok(())
}

pub async fn sign(args: &ApiArgs, a: SignArgs) -> Result<()> {
    let api = Api::new(args)?;
    let wallet: WalletId = a
        .wallet
        .parse()
        .map_err(|e| anyhow!("--wallet: {e} (a wallet id is 64 hex digits)"))?;
    let message = hex::decode(a.message.trim_start_matches("0x"))
        .map_err(|_| anyhow!("--message must be hex"))?;
    let rule: AgreementRule = a.rule.parse().map_err(|e| anyhow!("--rule: {e}"))?;
    let intent = a.signer.sign(Action::SignMessage {
        wallet,
        message,
        rule,
    })?;
    let body = json!({ "intent": intent, "mode": a.mode });
    let job = api.post("/v1/signatures", &body).await?;
    let id = job["id"].as_str().unwrap_or_default().to_owned();
    if !a.wait {
        print(&job, a.json, |_| println!("Signing requested: job {id}."));
        return Ok(());
    }
    let done = api.wait_job(&id, a.json).await?;
    print(&done, a.json, |d| {
        let r = &d["result"];
        println!("Signature {}", r["signature"].as_str().unwrap_or(""));
        println!("  signed by group indices {}", r["signers"]);
        println!("  approvals from {}", r["approvers"]);
        if r["dissenters"].as_object().is_some_and(|o| !o.is_empty()) {
            println!("  dissent recorded: {}", r["dissenters"]);
        }
    });
    Ok(())
}

pub async fn job(args: &ApiArgs, id: &str, wait: bool, json: bool) -> Result<()> {
    let api = Api::new(args)?;
    let job = if wait {
        api.wait_job(id, json).await?
    } else {
        api.get(&format!("/v1/jobs/{id}")).await?
    };
    print(&job, json, |j| {
        println!(
            "Job {} ({}): {}",
            id,
            j["kind"].as_str().unwrap_or(""),
            j["status"].as_str().unwrap_or("")
        );
        if let Some(e) = j["error"].as_str() {
            println!("  error: {e}");
        }
        for e in j["events"].as_array().into_iter().flatten() {
            println!(
                "  {} [{}] {}: {}",
                e["at"].as_str().unwrap_or(""),
                e["module_id"].as_str().unwrap_or("coordinator"),
                e["kind"].as_str().unwrap_or(""),
                e["detail"].as_str().unwrap_or("")
            );
        }
    });
    Ok(())
}

/// Arguments of `concord deposit` and `concord withdraw`.
#[derive(Args)]
pub struct TransferArgs {
    /// The wallet (ECDSA): the sender of a deposit; for a withdrawal, the wallet of the
    /// address book to receive it (or use --to).
    #[arg(long)]
    wallet: Option<String>,
    /// Withdrawals: the address-book entry (its label) to send to.
    #[arg(long, conflicts_with = "wallet")]
    to: Option<String>,
    /// The exchange connection (as modules name it).
    #[arg(long, default_value = "binance")]
    exchange: String,
    /// Coin code.
    #[arg(long, default_value = "ETH")]
    coin: String,
    /// Network code.
    #[arg(long, default_value = "ETH")]
    network: String,
    /// Amount in coin units (e.g. 0.5).
    #[arg(long)]
    amount: String,
    /// Agreement rule: all (every member of the group approves) or threshold.
    #[arg(long, default_value = "all")]
    rule: String,
    /// The requester's signature (`--key`: a trader of the policy; `--cosign` for
    /// approvers where the policy asks for them).
    #[command(flatten)]
    signer: SignerArgs,
    /// Follow the transfer until it is final, showing each step.
    #[arg(long)]
    wait: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Api {
    /// Follows a transfer until it is final, printing each new step.
    pub(crate) async fn wait_transfer(&self, id: &str, quiet: bool) -> Result<Value> {
        let mut shown = 0;
        loop {
            let t = self.get(&format!("/v1/transfers/{id}?wait=2")).await?;
            if !quiet && let Some(log) = t["log"].as_array() {
                for line in log.iter().skip(shown) {
                    eprintln!("  {}", line.as_str().unwrap_or(""));
                }
                shown = log.len();
            }
            if matches!(
                t["status"].as_str(),
                Some("credited" | "arrived" | "failed")
            ) {
                return Ok(t);
            }
        }
    }
}

/// Prints a transfer for people.
pub(crate) fn show_transfer(t: &Value) {
    println!(
        "Transfer {} ({}): {}",
        t["id"].as_str().unwrap_or(""),
        t["kind"].as_str().unwrap_or(""),
        t["status"].as_str().unwrap_or("")
    );
    println!(
        "  {} {} on {} via exchange {}",
        t["amount"].as_str().unwrap_or(""),
        t["coin"].as_str().unwrap_or(""),
        t["network"].as_str().unwrap_or(""),
        t["exchange"].as_str().unwrap_or("")
    );
    if let Some(d) = t["destination"].as_str() {
        println!("  to        {d}");
    }
    if let Some(h) = t["tx_hash"].as_str() {
        println!("  tx        {h}");
    }
    if let Some(r) = t["requester"].as_str() {
        println!("  asked by  {r}");
    }
    if let Some(a) = t["approvers"].as_array().filter(|a| !a.is_empty()) {
        let names: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
        println!(
            "  approved  {}{}",
            names.join(", "),
            t["policy"].as_str().map_or(String::new(), |p| format!(
                " under policy {}",
                &p[..16.min(p.len())]
            ))
        );
    }
    if let Some(d) = t["dissenters"].as_object() {
        for (m, why) in d {
            println!("  DISSENT   {m}: {}", why.as_str().unwrap_or(""));
        }
    }
    if let Some(e) = t["error"].as_str() {
        println!("  error     {e}");
    }
}

async fn transfer(args: &ApiArgs, a: TransferArgs, deposit: bool) -> Result<()> {
    let api = Api::new(args)?;
    let rule: AgreementRule = a.rule.parse().map_err(|e| anyhow!("--rule: {e}"))?;
    let wallet = a
        .wallet
        .as_deref()
        .map(|w| {
            w.parse::<WalletId>()
                .map_err(|e| anyhow!("--wallet: {e} (a wallet id is 64 hex digits)"))
        })
        .transpose()?;
    let coin = a.coin.to_ascii_uppercase();
    let network = a.network.to_ascii_uppercase();
    let (path, action) = if deposit {
        let wallet = wallet.ok_or_else(|| anyhow!("a deposit needs --wallet (the sender)"))?;
        (
            "/v1/transfers/deposits",
            Action::Deposit {
                wallet,
                exchange: a.exchange.clone(),
                coin,
                network,
                amount: a.amount.clone(),
                rule,
            },
        )
    } else {
        let to = match (wallet, &a.to) {
            (Some(w), None) => AddressRef::Wallet(w),
            (None, Some(label)) => AddressRef::Label(label.clone()),
            _ => bail!("a withdrawal needs --wallet W or --to LABEL (an address-book entry)"),
        };
        (
            "/v1/transfers/withdrawals",
            Action::Withdraw {
                exchange: a.exchange.clone(),
                coin,
                network,
                amount: a.amount.clone(),
                to,
                rule,
            },
        )
    };
    let intent = a.signer.sign(action)?;
    let t = api.post(path, &json!({ "intent": intent })).await?;
    let id = t["id"].as_str().unwrap_or_default().to_owned();
    if !a.wait {
        print(&t, a.json, |_| println!("Transfer {id} requested."));
        return Ok(());
    }
    let t = api.wait_transfer(&id, a.json).await?;
    print(&t, a.json, show_transfer);
    if t["status"] == "failed" {
        bail!(
            "transfer {id} failed: {}",
            t["error"].as_str().unwrap_or("unknown error")
        );
    }
    Ok(())
}

/// `concord deposit`: from a wallet to its exchange deposit address.
pub async fn deposit(args: &ApiArgs, a: TransferArgs) -> Result<()> {
    transfer(args, a, true).await
}

/// `concord withdraw`: from the exchange back to the wallet's own address.
pub async fn withdraw(args: &ApiArgs, a: TransferArgs) -> Result<()> {
    transfer(args, a, false).await
}

/// `concord transfers [ID]`.
pub async fn transfers(args: &ApiArgs, id: Option<String>, wait: bool, json: bool) -> Result<()> {
    let api = Api::new(args)?;
    match id {
        Some(id) => {
            let t = if wait {
                api.wait_transfer(&id, json).await?
            } else {
                api.get(&format!("/v1/transfers/{id}")).await?
            };
            print(&t, json, show_transfer);
        }
        None => {
            let list = api.get("/v1/transfers").await?;
            print(&list, json, |list| {
                for t in list.as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<10} {:<9} {:>10} {:<5} {}",
                        t["id"].as_str().unwrap_or(""),
                        t["kind"].as_str().unwrap_or(""),
                        t["status"].as_str().unwrap_or(""),
                        t["amount"].as_str().unwrap_or(""),
                        t["coin"].as_str().unwrap_or(""),
                        t["tx_hash"].as_str().unwrap_or("")
                    );
                }
            });
        }
    }
    Ok(())
}
