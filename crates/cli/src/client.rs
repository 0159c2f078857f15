//! The coordinator API client and the commands that use it.
//!
//! Every answer is deserialised into the API's own type (`concord_coordinator`'s views and
//! records) before it is printed: `--json` prints that type again, so its shape is the
//! API's; people get aligned tables and sentences.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use concord_coordinator::records::{
    EventKind, ExchangeBalances, GroupRecord, JobKind, JobRecord, JobStatus, TransferRecord,
    WalletBalances,
};
use concord_coordinator::{JobView, ModuleView, WalletView};
use concord_tss::WalletId;
use concord_wire::api_tls::CertFingerprint;
use concord_wire::authority::{Action, AddressRef, WalletPurpose};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::args::{self, Mode, Rule, Scheme};
use crate::authority::SignerArgs;
use crate::outln;
use crate::output::{Table, or_dash, short, time, usage};

/// `--json`: print the API's answer as JSON instead of for people.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct JsonFlag {
    /// Print JSON (the API's own shape) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ModulesCommand {
    /// Enroll a module from the JSON `concord module show --json` printed.
    #[command(after_help = "Example:\n  concord modules enroll --info m1.json")]
    Enroll {
        /// That JSON, in a file.
        #[arg(long)]
        info: PathBuf,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List enrolled modules and whether each is connected.
    #[command(after_help = "Example:\n  concord modules list")]
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand)]
pub enum GroupsCommand {
    /// Create a signer group; its members pin it (and, for cggmp21, prepare its auxiliary
    /// material) in the background.
    #[command(
        after_help = "Examples:\n  concord groups create --id desk --threshold 2 --members m1,m2,m3 --wait\n  concord groups create --id vault --threshold 3 --members m1,m2,m3,m4,m5 --engine cggmp21 --wait"
    )]
    Create {
        /// Group id.
        #[arg(long, value_parser = args::id)]
        id: String,
        /// Signers required.
        #[arg(long)]
        threshold: u16,
        /// Member module ids, comma-separated (their order fixes their indices).
        #[arg(long, value_delimiter = ',', required = true, value_parser = args::id)]
        members: Vec<String>,
        /// Threshold-ECDSA engine of the group's secp256k1 ECDSA wallets (Schnorr and Ed25519
        /// wallets always run FROST, ecdsa-p256 exchange keys DKLs23).
        #[arg(long, value_enum, default_value_t = args::Engine::Dkls23)]
        engine: args::Engine,
        /// Wait until the group is ready, showing progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Replace a lost member of a DKLs23 group by another enrolled module: the others rebuild
    /// its shares for the new module (none of them learns them) and every share is
    /// refreshed. The admins first list the group's members, the new one at the lost one's
    /// place, in the policy (`[[groups]]`); every member checks it.
    #[command(after_help = "Example:\n  concord groups replace desk --member m2 --with m4 --wait")]
    Replace {
        /// Group id.
        #[arg(value_parser = args::id)]
        group: String,
        /// The lost member module.
        #[arg(long, value_parser = args::id)]
        member: String,
        /// The enrolled module that takes its place.
        #[arg(long = "with", value_parser = args::id)]
        with: String,
        /// Wait until every member uses its new shares.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List signer groups.
    #[command(after_help = "Example:\n  concord groups list")]
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show a group: threshold, members and whether each is connected, its wallets.
    #[command(after_help = "Example:\n  concord groups show desk")]
    Show {
        /// Group id.
        #[arg(value_parser = args::id)]
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// What kind of wallet `concord wallets create` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WalletKind {
    /// A key shared by a signer group (DKG): ECDSA, FROST Taproot or FROST Ed25519.
    Threshold,
    /// The member modules' own keys: P2WSH k-of-n on a UTXO chain, a Safe on the EVM chain.
    Multisig,
}

/// `concord wallets create --kind multisig`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct MultisigArgs {
    /// The chain: ltc, btc (and ltc-regtest, btc-testnet, btc-regtest) for a P2WSH, eth for
    /// a Safe (with --chain-id and --safe). For a threshold wallet it only sets the default
    /// scheme: a threshold wallet has an address on every chain configured here.
    #[arg(long, required_if_eq("kind", "multisig"))]
    pub chain: Option<String>,
    /// multisig on eth: the EVM chain id.
    #[arg(long)]
    pub chain_id: Option<u64>,
    /// multisig on eth: the Safe, deployed with the members' addresses (`concord module
    /// show`) as owners and the threshold.
    #[arg(long)]
    pub safe: Option<concord_chain::Address>,
    /// multisig: signatures needed.
    #[arg(long, required_if_eq("kind", "multisig"))]
    pub threshold: Option<u8>,
    /// multisig: a member module's published info (`concord module show --json`); once per
    /// member.
    #[arg(long = "module")]
    pub modules: Vec<PathBuf>,
    /// multisig: the wallet's label in the policy.
    #[arg(long, required_if_eq("kind", "multisig"))]
    pub label: Option<String>,
    /// multisig: an exchange connection it may deposit to (repeat for more).
    #[arg(long = "deposit-to")]
    pub deposit_to: Vec<String>,
    /// multisig: a limit, COIN:PER_TRANSFER:PER_DAY (repeat per coin); a coin without a
    /// limit is refused by every module.
    #[arg(long = "limit")]
    pub limits: Vec<String>,
}

#[derive(Subcommand)]
pub enum WalletsCommand {
    /// Create a wallet: a threshold wallet by distributed key generation in a signer group (no
    /// module ever holds the whole key), or a native multisig wallet of the modules' own keys
    /// (a P2WSH on Litecoin/Bitcoin, a Safe on the EVM chain), proposed as the next policy
    /// version for the admins to sign.
    #[command(
        after_help = "Examples:\n  concord wallets create --group desk --scheme ecdsa-secp256k1 --wait\n  concord wallets create --group desk --scheme ecdsa-p256 --wait   # a Coinbase ES256 API key\n  concord wallets create --kind multisig --chain ltc --threshold 2 --module m1.json --module m2.json --module m3.json --label ltc-vault --deposit-to binance --limit LTC:5:20\n  concord wallets create --kind multisig --chain eth --chain-id 1 --safe 0x41675C099F32341bf84BFc5382aF534df5C7461a --threshold 2 --module m1.json --module m2.json --module m3.json --label safe-desk --limit ETH:2:10"
    )]
    Create {
        /// threshold: a key shared by a signer group (DKG); multisig: the modules' own keys.
        #[arg(long, value_enum, default_value_t = WalletKind::Threshold)]
        kind: WalletKind,
        /// threshold: the signer group.
        #[arg(long, value_parser = args::id)]
        group: Option<String>,
        /// threshold: the signature scheme (with --chain and no scheme: ecdsa-secp256k1, an
        /// EVM account and a P2WPKH; schnorr-taproot makes a P2TR). What the wallet may do
        /// (trading, or an exchange's withdraw key) is the admin-signed policy's to say.
        #[arg(long, value_enum)]
        scheme: Option<Scheme>,
        /// threshold: wait for the wallet, showing progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        multisig: MultisigArgs,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Import an existing private key: it is split here, in memory, each shard sealed to its
    /// module, and wiped. The key existed whole once: prefer wallets created by DKG.
    #[command(
        after_help = "Example:\n  concord wallets import --group desk --scheme ed25519 --key-file api.key --key importer.key"
    )]
    Import {
        /// Signer group.
        #[arg(long, value_parser = args::id)]
        group: String,
        /// ecdsa-secp256k1 (32-byte private key), schnorr-taproot (32-byte private key, the
        /// BIP-341 internal key) or ed25519 (32-byte RFC 8032 seed).
        #[arg(long, value_enum)]
        scheme: Scheme,
        /// File holding the key, hex (it is read, used and wiped from memory; delete the file).
        #[arg(long)]
        key_file: PathBuf,
        /// The importer's signature (`--key`: a principal with the importer role).
        #[command(flatten)]
        signer: SignerArgs,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List wallets: scheme, purpose, group and address.
    #[command(after_help = "Example:\n  concord wallets list")]
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show a wallet: every address, its group, what the policy lets it do.
    #[command(after_help = "Example:\n  concord wallets show 3f2a")]
    Show {
        /// Wallet id or a unique prefix of it.
        #[arg(value_parser = args::wallet_ref)]
        wallet: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Derive a child wallet (non-hardened BIP-32) of a DKLs23 wallet: a new address under
    /// the same key. Every member checks the path against the policy (the wallet's `derive`
    /// prefixes) and derives the child itself; the child is under its parent's rule.
    #[command(after_help = "Example:\n  concord wallets derive 3f2a --path m/0/7 --wait")]
    Derive {
        /// The parent wallet: id or a unique prefix of it.
        #[arg(value_parser = args::wallet_ref)]
        wallet: String,
        /// The child's path below it (non-hardened: m/0/7, never m/0'/7).
        #[arg(long, value_parser = args::derivation_path)]
        path: concord_tss::DerivationPath,
        /// Wait for the child wallet.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Re-randomise every member's share of a wallet (proactive refresh): same key, same
    /// addresses, new shares; the old ones are replaced once every member holds its new one.
    /// Every member must be connected, and the policy must say `refresh = true` for the
    /// wallet (each module checks). DKLs23 and FROST (Taproot, Ed25519) wallets; cggmp21
    /// has no refresh.
    #[command(after_help = "Example:\n  concord wallets refresh 3f2a --wait")]
    Refresh {
        /// Wallet id or a unique prefix of it.
        #[arg(value_parser = args::wallet_ref)]
        wallet: String,
        /// Wait until every member uses its new share.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// Arguments of `concord sign`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["message", "text"])))]
pub struct SignArgs {
    /// Wallet id or a unique prefix of it.
    #[arg(long, value_parser = args::wallet_ref)]
    wallet: String,
    /// The message, as hex bytes (`0x` optional). Messages are signed domain-separated: the
    /// tag "concord/message/v1" and a zero byte, then the bytes; ECDSA signs the SHA-256 of
    /// that, Schnorr and Ed25519 sign it as is. Only if the policy allows raw messages for
    /// the wallet.
    #[arg(long, value_parser = args::hex_bytes)]
    message: Option<args::HexBytes>,
    /// The message as text (its UTF-8 bytes), instead of --message.
    #[arg(long)]
    text: Option<String>,
    /// Agreement rule.
    #[arg(long, value_enum, default_value = "all")]
    rule: Rule,
    /// The requester's signature (`--key`: a trader of the policy).
    #[command(flatten)]
    signer: SignerArgs,
    /// ECDSA only: how the signature is made.
    #[arg(long, value_enum, default_value = "presigned")]
    mode: Mode,
    /// Wait for the signature, showing progress.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    out: JsonFlag,
}

/// Arguments of `concord deposit` and `concord withdraw`.
#[derive(Args)]
pub struct TransferArgs {
    /// Wallet id or a unique prefix: the sender of a deposit; for a withdrawal, the wallet
    /// of the address book to receive it (or use --to).
    #[arg(long, value_parser = args::wallet_ref)]
    wallet: Option<String>,
    /// Withdrawals: the address-book entry (its label) to send to.
    #[arg(long, conflicts_with = "wallet")]
    to: Option<String>,
    /// The exchange connection (as modules name it).
    #[arg(long, default_value = "binance", value_parser = args::id)]
    exchange: String,
    /// Coin code, any case.
    #[arg(long, default_value = "ETH", value_parser = args::code)]
    coin: String,
    /// Network code, any case.
    #[arg(long, default_value = "ETH", value_parser = args::code)]
    network: String,
    /// Amount in coin units, a plain decimal more than zero (e.g. 0.5). A value starting
    /// with '-' is refused (write it --amount=-1 to have it checked).
    #[arg(long, value_parser = args::amount, allow_negative_numbers = true)]
    amount: String,
    /// Agreement rule.
    #[arg(long, value_enum, default_value = "all")]
    rule: Rule,
    /// The requester's signature (`--key`: a trader of the policy; `--cosign` for
    /// approvers where the policy asks for them).
    #[command(flatten)]
    signer: SignerArgs,
    /// Follow the transfer until it is final, showing each step.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    out: JsonFlag,
}

/// `concord transfers`: list, or show one.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TransfersArgs {
    #[command(subcommand)]
    command: Option<TransfersCommand>,
    /// A transfer id (`concord transfers ID` is `concord transfers show ID`).
    #[arg(value_parser = args::id)]
    id: Option<String>,
    /// With an id: follow the transfer until it is final.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    out: JsonFlag,
}

#[derive(Subcommand)]
pub enum TransfersCommand {
    /// Transfers, newest first.
    #[command(after_help = "Example:\n  concord transfers list")]
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// One transfer: every step, who approved, the chain transaction.
    #[command(
        after_help = "Example:\n  concord transfers show 5c1e0f3a9b7d4e2f8a6c1d0e9f8b7a6c --wait"
    )]
    Show {
        /// The transfer id.
        #[arg(value_parser = args::id)]
        id: String,
        /// Follow it until it is final.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// `concord jobs`: list, or show one.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct JobsArgs {
    #[command(subcommand)]
    command: Option<JobsCommand>,
    /// A job id (`concord jobs ID` is `concord jobs show ID`).
    #[arg(value_parser = args::id)]
    id: Option<String>,
    /// With an id: wait until the job is done or failed, showing progress.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    out: JsonFlag,
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Jobs (key generations, imports, signatures, presignatures, group set-up), newest
    /// first.
    #[command(after_help = "Example:\n  concord jobs list --kind sign --status failed")]
    List {
        /// Only jobs of this kind.
        #[arg(long, value_parser = names(JobKind::ALL.iter().map(|k| k.as_str())))]
        kind: Option<String>,
        /// Only jobs in this state.
        #[arg(long, value_parser = names(JobStatus::ALL.iter().map(|k| k.as_str())))]
        status: Option<String>,
        /// Only jobs of this wallet (id or unique prefix).
        #[arg(long, value_parser = args::wallet_ref)]
        wallet: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// One job: its steps, approvals, dissents and result.
    #[command(after_help = "Example:\n  concord jobs show 0f9c2d4e8b1a4c3d9e7f112233445566 --wait")]
    Show {
        /// The job id.
        #[arg(value_parser = args::id)]
        id: String,
        /// Wait until it is done or failed, showing progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// A flag that takes one of the API's own state names.
fn names(all: impl Iterator<Item = &'static str>) -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(all)
}

/// Arguments of `concord balances`.
#[derive(Args)]
pub struct BalancesArgs {
    /// Only this wallet's chain balances (id or unique prefix).
    #[arg(long, value_parser = args::wallet_ref, conflicts_with = "exchange_only")]
    wallet: Option<String>,
    /// The exchange connection whose account to read (through the modules' read keys).
    #[arg(long, default_value = "binance", value_parser = args::id)]
    exchange: String,
    /// Only the exchange account.
    #[arg(long)]
    exchange_only: bool,
    #[command(flatten)]
    out: JsonFlag,
}

/// An authenticated client of the coordinator API.
pub(crate) struct Api {
    http: reqwest::Client,
    base: reqwest::Url,
    token: String,
}

/// How long a request may take (long polls hold up to 300 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(330);

/// How the CLI trusts a coordinator's HTTPS certificate.
#[derive(Debug, Clone, Default)]
pub(crate) enum Trust {
    /// The SHA-256 fingerprint of its certificate (`--api-pin`).
    Pin(CertFingerprint),
    /// A certificate authority's certificates, in a PEM file (`--api-ca`).
    Ca(PathBuf),
    /// Neither: only a plain-HTTP coordinator on a loopback address can be reached.
    #[default]
    None,
}

impl Trust {
    /// A pin given as text (`devnet.json`), or none.
    pub(crate) fn pin_text(pin: Option<&str>) -> Result<Trust> {
        Ok(match pin {
            Some(p) => Trust::Pin(p.parse()?),
            None => Trust::None,
        })
    }
}

/// The sentence saying how to trust an HTTPS coordinator.
const HOW_TO_TRUST: &str = "pass --api-pin SHA256 with the fingerprint of its API certificate \
(`concord coordinator init` printed it; `concord coordinator run` logs it at start; \
`openssl x509 -in api.crt -noout -fingerprint -sha256` on the coordinator's machine shows it), \
or --api-ca FILE to trust the certificate authority that issued it; or set CONCORD_API_PIN or \
CONCORD_API_CA";

/// Checks a coordinator URL.
fn coordinator_url(url: &str) -> Result<reqwest::Url> {
    reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| {
            usage(format!(
                "{url:?} is not a coordinator URL (e.g. https://127.0.0.1:8080)"
            ))
        })
}

/// An HTTP client for the coordinator at `base`, trusting its certificate as `trust` says.
/// An `https` URL needs a pin or a CA; a plain `http` one is accepted only for a loopback
/// host (the coordinator serves plain HTTP nowhere else) and takes neither.
pub(crate) fn http_client(base: &reqwest::Url, trust: &Trust) -> Result<reqwest::Client> {
    Ok(http_client_builder(base, trust)?.build()?)
}

/// [`http_client`]'s builder, for callers that set more.
pub(crate) fn http_client_builder(
    base: &reqwest::Url,
    trust: &Trust,
) -> Result<reqwest::ClientBuilder> {
    let builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
    let tls = match (base.scheme(), trust) {
        ("https", Trust::Pin(pin)) => concord_wire::api_tls::pinned_client_config(*pin)?,
        ("https", Trust::Ca(file)) => concord_wire::api_tls::ca_client_config(file)?,
        ("https", Trust::None) => {
            return Err(usage(format!(
                "{base} is an HTTPS coordinator but nothing says which certificate to trust: \
                 {HOW_TO_TRUST}"
            )));
        }
        (_, Trust::None) => {
            let loopback = match base.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if !loopback {
                return Err(usage(format!(
                    "{base} is plain HTTP to another machine: the API token would travel \
                     unencrypted, and a coordinator serves plain HTTP on a loopback address \
                     only. Use its https:// URL"
                )));
            }
            return Ok(builder);
        }
        (_, _) => {
            return Err(usage(format!(
                "{base} is plain HTTP: --api-pin and --api-ca (CONCORD_API_PIN, CONCORD_API_CA) \
                 are for an https:// URL"
            )));
        }
    };
    Ok(builder.use_preconfigured_tls(tls))
}

impl Api {
    /// A client for `url` with `token`, trusting the coordinator's certificate as `trust`
    /// says.
    pub(crate) fn with_token(url: &str, token: String, trust: &Trust) -> Result<Api> {
        let base = coordinator_url(url)?;
        Ok(Api {
            http: http_client(&base, trust)?,
            base,
            token,
        })
    }

    /// A client for `url` with the token in `token_file`.
    pub(crate) fn from_parts(
        url: &str,
        token_file: &std::path::Path,
        trust: &Trust,
    ) -> Result<Api> {
        let token = std::fs::read_to_string(token_file)
            .with_context(|| format!("cannot read the API token from {}", token_file.display()))?
            .trim()
            .to_owned();
        Api::with_token(url, token, trust)
    }

    /// A client of a devnet's (first) coordinator with its admin token.
    pub(crate) fn for_devnet(info: &crate::devnet::DevnetInfo) -> Result<Api> {
        Api::from_parts(
            &info.coordinator_url,
            &info.token_file,
            &Trust::pin_text(info.api_pin.as_deref())?,
        )
    }

    /// The URL of a path given as segments, each percent-encoded (an id can never climb
    /// to another route).
    fn url_of(&self, segments: &[&str], query: &[(&str, String)]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (k, v.as_str())));
        }
        url
    }

    async fn check(&self, resp: reqwest::Response) -> Result<Value> {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let msg = body
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the coordinator at {} answered {status}", self.base));
        Err(match status.as_u16() {
            401 => anyhow!(
                "{msg} (the coordinator refused the API token: check --token-file or CONCORD_TOKEN)"
            ),
            _ => anyhow!(msg),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| no_answer(&self.base, &e))?;
        self.check(resp).await
    }

    /// GETs a path the CLI built itself (`/v1/...`).
    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        let url = self.base.join(path)?;
        self.send(self.http.get(url)).await
    }

    /// GETs a text answer (`/metrics`) of a path the CLI built itself.
    pub(crate) async fn get_text(&self, path: &str) -> Result<String> {
        let url = self.base.join(path)?;
        let resp = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot reach the coordinator at {}: {}",
                    self.base,
                    root_cause(&e)
                )
            })?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("the coordinator answered {status} to {path}: {text}");
        }
        Ok(text)
    }

    /// GETs `segments` (percent-encoded) with `query`, as the API type `T`.
    pub(crate) async fn fetch<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T> {
        let v = self
            .send(self.http.get(self.url_of(segments, query)))
            .await?;
        serde_json::from_value(v).with_context(|| {
            format!(
                "the coordinator's answer to /{} is not what this concord understands (versions differ?)",
                segments.join("/")
            )
        })
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.post_with_key(path, body, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// Posts a request that starts a job and waits quietly for the job's end: its id, and
    /// how it ended (an error if it failed).
    pub(crate) async fn post_job(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(String, Result<JobView>)> {
        let job = self.post(path, body).await?;
        let id = job["id"].as_str().unwrap_or_default().to_owned();
        let outcome = self.wait_job(&id, true).await;
        Ok((id, outcome))
    }

    /// Posts with the caller's own `Idempotency-Key` (a retry sends the same one).
    pub(crate) async fn post_with_key(&self, path: &str, body: &Value, key: &str) -> Result<Value> {
        let url = self.base.join(path)?;
        self.send(
            self.http
                .post(url)
                .header("Idempotency-Key", key)
                .json(body),
        )
        .await
    }

    /// Posts and reads the answer as the API type `T`.
    pub(crate) async fn post_as<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        let v = self.post(path, body).await?;
        serde_json::from_value(v).with_context(|| {
            format!("the coordinator's answer to {path} is not what this concord understands")
        })
    }

    /// A wallet id from an id or a unique prefix.
    pub(crate) async fn resolve_wallet(&self, prefix: &str) -> Result<WalletId> {
        if prefix.len() == 64 {
            return prefix
                .parse()
                .map_err(|e| usage(format!("--wallet {prefix}: {e}")));
        }
        let wallets: Vec<WalletView> = self.fetch(&["v1", "wallets"], &[]).await?;
        let found: Vec<&WalletView> = wallets
            .iter()
            .filter(|w| w.wallet.id.starts_with(prefix))
            .collect();
        match found.as_slice() {
            [w] => Ok(w.wallet.id.parse()?),
            [] => bail!("no wallet id starts with {prefix} (see `concord wallets list`)"),
            many => bail!(
                "{} wallets start with {prefix}: give more digits ({})",
                many.len(),
                many.iter()
                    .map(|w| short(&w.wallet.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Polls a job until it is done or failed, printing each new event and, while nothing
    /// changes, a line every 10 s saying what it waits for.
    pub(crate) async fn wait_job(&self, id: &str, quiet: bool) -> Result<JobView> {
        let mut seen = HashSet::new();
        let started = Instant::now();
        let mut last_news = Instant::now();
        loop {
            let job: JobView = self
                .fetch(&["v1", "jobs", id], &[("wait", "10".into())])
                .await?;
            for e in &job.events {
                if seen.insert(e.seq) {
                    last_news = Instant::now();
                    if !quiet {
                        eprintln!(
                            "  [{}] {}",
                            e.module_id.as_deref().unwrap_or("coordinator"),
                            event_text(e)
                        );
                    }
                }
            }
            match job.job.status.as_str() {
                "done" => return Ok(job),
                "failed" => bail!(
                    "job {id} failed: {}",
                    job.job.error.as_deref().unwrap_or("no reason recorded")
                ),
                status if !quiet && last_news.elapsed() >= Duration::from_secs(10) => {
                    last_news = Instant::now();
                    eprintln!(
                        "  … still {status} after {} s{}",
                        started.elapsed().as_secs(),
                        job.job
                            .error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_else(|| ", waiting for the modules".into())
                    );
                }
                _ => {}
            }
        }
    }

    /// Follows a transfer until it is final, printing each new step and, while nothing
    /// changes, a line every 10 s saying what it waits for.
    pub(crate) async fn wait_transfer(&self, id: &str, quiet: bool) -> Result<TransferRecord> {
        let mut shown = 0;
        let started = Instant::now();
        let mut last_news = Instant::now();
        loop {
            let t: TransferRecord = self
                .fetch(&["v1", "transfers", id], &[("wait", "10".into())])
                .await?;
            if t.log.len() > shown {
                last_news = Instant::now();
                if !quiet {
                    for line in &t.log[shown..] {
                        eprintln!("  {line}");
                    }
                }
                shown = t.log.len();
            }
            if t.is_final() {
                return Ok(t);
            }
            if !quiet && last_news.elapsed() >= Duration::from_secs(10) {
                last_news = Instant::now();
                eprintln!(
                    "  … still {} after {} s: {}",
                    t.status,
                    started.elapsed().as_secs(),
                    t.error.as_deref().unwrap_or(pending_reason(&t))
                );
            }
        }
    }
}

/// The innermost cause of an HTTP client error, as a sentence fragment.
/// Why a request to the coordinator at `base` got no answer, as a sentence: a certificate
/// that is not the pinned one, or not trusted; or no connection.
pub(crate) fn no_answer(base: &reqwest::Url, e: &reqwest::Error) -> anyhow::Error {
    if let Some(m) = concord_wire::api_tls::find_pin_mismatch(e) {
        return anyhow!(
            "refused the coordinator at {base}: its API certificate has SHA-256 fingerprint {}, \
             but the pinned one is {}. Nothing was sent. Either this is not your coordinator, or \
             its certificate was replaced: ask its operator for the new fingerprint before you \
             pin it (--api-pin or CONCORD_API_PIN)",
            m.presented,
            m.pinned
        );
    }
    match concord_wire::api_tls::find_rustls_error(e) {
        Some(r @ rustls::Error::InvalidCertificate(_)) => {
            return anyhow!(
                "refused the coordinator at {base}: its API certificate is not trusted ({r}). \
                 Nothing was sent"
            );
        }
        Some(r) => {
            return anyhow!(
                "no TLS connection to the coordinator at {base}: {r} (does it serve plain HTTP? \
                 then its URL is http://…, on a loopback address only)"
            );
        }
        None => {}
    }
    let cause = if e.is_timeout() {
        "no answer in time".to_owned()
    } else {
        root_cause(e)
    };
    let hint = if base.scheme() == "http" && cause.contains("invalid HTTP version") {
        "it answered in something other than plain HTTP: does it serve HTTPS? then its URL is https://…"
    } else {
        "is it running? give another with --devnet DIR or --url URL"
    };
    anyhow!("cannot reach the coordinator at {base}: {cause} ({hint})")
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Why a transfer in `t.status` is not final yet, when its record says nothing more.
fn pending_reason(t: &TransferRecord) -> &'static str {
    match t.status.as_str() {
        "requested" | "queued" => "waiting for its turn in the wallet's queue",
        "resolving" => "asking every module for the exchange's deposit address",
        "signing" => "the modules are checking and signing",
        "signed" | "broadcast" => "waiting for the chain to include the transaction",
        "confirmed" => "waiting for the exchange to credit the deposit",
        "submitted" | "sent" => "waiting for the exchange to send the withdrawal",
        "unknown" => "looking the withdrawal up at the exchange",
        _ => "waiting",
    }
}

/// A job event as a line for people (an approval's JSON statement is not shown raw).
fn event_text(e: &concord_coordinator::records::JobEvent) -> String {
    let digest = e
        .digest
        .as_deref()
        .map(|d| format!(" digest {}", short(&hex::encode(d))))
        .unwrap_or_default();
    match e.kind {
        EventKind::Approval => format!("approved{digest}"),
        _ => {
            let detail = e.detail.as_deref().unwrap_or("");
            // Some details are a module's JSON statement: say what it is, not the blob.
            if detail.starts_with('{') {
                format!("{}{digest}", e.kind)
            } else {
                format!("{}: {detail}", e.kind)
            }
        }
    }
}

/// Prints `value` as JSON, or for people.
fn print<T: Serialize>(value: &T, out: JsonFlag, human: impl FnOnce(&T)) -> Result<()> {
    if out.json {
        outln!("{}", serde_json::to_string(value)?);
    } else {
        human(value);
    }
    Ok(())
}

pub async fn modules(api: &Api, cmd: ModulesCommand) -> Result<()> {
    match cmd {
        ModulesCommand::Enroll { info, out } => {
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
            let m: ModuleView = api.post_as("/v1/modules", &body).await?;
            print(&m, out, |m| {
                outln!(
                    "Enrolled module {} (fingerprint {}).",
                    m.module.id,
                    m.fingerprint
                );
            })
        }
        ModulesCommand::List { out } => {
            let list: Vec<ModuleView> = api.fetch(&["v1", "modules"], &[]).await?;
            print(&list, out, |list| {
                modules_table(list).print_or("No module enrolled yet.")
            })
        }
    }
}

/// Modules as a table.
pub(crate) fn modules_table(list: &[ModuleView]) -> Table {
    let mut t = Table::new(&["module", "fingerprint", "connected", "enrolled"]);
    for m in list {
        t.row([
            m.module.id.clone(),
            m.fingerprint.clone(),
            if m.connected { "yes" } else { "NO" }.into(),
            time(&m.module.enrolled_at),
        ]);
    }
    t
}

/// Groups as a table.
pub(crate) fn groups_table(list: &[GroupRecord]) -> Table {
    let mut t = Table::new(&[
        "group",
        "threshold",
        "engine",
        "members",
        "status",
        "created",
    ]);
    for g in list {
        t.row([
            g.id.clone(),
            format!("{}-of-{}", g.threshold, g.size),
            g.engine.to_string(),
            g.members.join(","),
            g.status.to_string(),
            time(&g.created_at),
        ]);
    }
    t
}

pub async fn groups(api: &Api, cmd: GroupsCommand) -> Result<()> {
    match cmd {
        GroupsCommand::Create {
            id,
            threshold,
            members,
            engine,
            wait,
            out,
        } => {
            let engine = concord_tss::EcdsaEngine::from(engine);
            let g: GroupRecord = api
                .post_as(
                    "/v1/groups",
                    &json!({ "id": id, "threshold": threshold, "members": members, "engine": engine }),
                )
                .await?;
            if !out.json {
                if engine.needs_aux() {
                    outln!(
                        "Group {id} created ({threshold}-of-{}, {engine}); preparing its auxiliary material.",
                        members.len()
                    );
                } else {
                    outln!(
                        "Group {id} created ({threshold}-of-{}, {engine}); its members are pinning it.",
                        members.len()
                    );
                }
            }
            let g = match (wait, g.aux_job_id.as_deref()) {
                (true, Some(job)) => {
                    if !out.json && engine.needs_aux() {
                        eprintln!(
                            "Waiting for every member to prepare (safe primes take a minute or more each)…"
                        );
                    }
                    api.wait_job(job, out.json).await?;
                    api.fetch(&["v1", "groups", &id], &[]).await?
                }
                _ => g,
            };
            print(&g, out, |g| {
                outln!("Group {id} is {}.", g.status);
                if !wait && let Some(job) = &g.aux_job_id {
                    outln!("Follow it: concord jobs {job} --wait");
                }
            })
        }
        GroupsCommand::Replace {
            group,
            member,
            with,
            wait,
            out,
        } => {
            let job: JobRecord = api
                .post_as(
                    &format!("/v1/groups/{group}/replace"),
                    &json!({ "member": member, "with": with }),
                )
                .await?;
            let job_id = job.id.clone();
            if !wait {
                return print(&job, out, |_| {
                    outln!("Repair started: job {job_id}.");
                    outln!("Follow it: concord jobs {job_id} --wait");
                });
            }
            if !out.json {
                eprintln!(
                    "Rebuilding {with}'s shares from the other members, then refreshing every share…"
                );
            }
            let done = api.wait_job(&job_id, out.json).await?;
            let result = done.result.clone().unwrap_or_default();
            print(&result, out, |r| {
                outln!(
                    "Group {group}: {with} replaces {member}; {} wallet(s) rebuilt and every share refreshed.",
                    r["wallets"].as_array().map_or(0, Vec::len)
                );
            })
        }
        GroupsCommand::List { out } => {
            let list: Vec<GroupRecord> = api.fetch(&["v1", "groups"], &[]).await?;
            print(&list, out, |list| {
                groups_table(list).print_or(
                    "No group yet: `concord groups create --id ID --threshold T --members M1,M2,…`.",
                )
            })
        }
        GroupsCommand::Show { id, out } => {
            let g: GroupRecord = api.fetch(&["v1", "groups", &id], &[]).await?;
            if out.json {
                return print(&g, out, |_| {});
            }
            let modules: Vec<ModuleView> = api.fetch(&["v1", "modules"], &[]).await?;
            let wallets: Vec<WalletView> = api.fetch(&["v1", "wallets"], &[]).await?;
            outln!(
                "Group {}: {}-of-{}, engine {}, {} (created {})",
                g.id,
                g.threshold,
                g.size,
                g.engine,
                g.status,
                time(&g.created_at)
            );
            let mut t = Table::new(&["index", "module", "connected"]);
            for (i, m) in g.members.iter().enumerate() {
                let connected = modules
                    .iter()
                    .find(|v| &v.module.id == m)
                    .map(|v| v.connected);
                t.row([
                    i.to_string(),
                    m.clone(),
                    match connected {
                        Some(true) => "yes",
                        Some(false) => "NO",
                        None => "not enrolled",
                    }
                    .into(),
                ]);
            }
            outln!("{}", t.render());
            let mine: Vec<WalletView> = wallets
                .into_iter()
                .filter(|w| w.wallet.group_id == g.id)
                .collect();
            if !mine.is_empty() {
                outln!();
                outln!("{}", wallets_table(&mine).render());
            }
            Ok(())
        }
    }
}

/// A wallet's purpose in a few words.
fn purpose_text(w: &WalletView) -> String {
    match &w.purpose {
        None => "none (not in the policy)".into(),
        Some(WalletPurpose::Trading { deposit_to, .. }) if deposit_to.is_empty() => {
            "trading".into()
        }
        Some(WalletPurpose::Trading { deposit_to, .. }) => {
            format!("trading → {}", deposit_to.join(","))
        }
        Some(WalletPurpose::ExchangeCredential { exchange, .. }) => {
            format!("{exchange} withdraw key")
        }
    }
}

/// The wallet's first address, for a table column.
fn main_address(w: &WalletView) -> String {
    w.addresses
        .first()
        .map(|a| a.address.clone())
        .unwrap_or_else(|| "-".into())
}

/// A wallet's group as people read it: a multisig wallet's members sign with their own keys.
fn group_name(w: &WalletView) -> String {
    if w.kind == concord_coordinator::records::WalletKind::Multisig {
        "own keys".into()
    } else {
        w.wallet.group_id.clone()
    }
}

/// Wallets as a table.
pub(crate) fn wallets_table(list: &[WalletView]) -> Table {
    let mut t = Table::new(&[
        "wallet", "label", "scheme", "kind", "purpose", "group", "address", "created",
    ]);
    for w in list {
        t.row([
            short(&w.wallet.id),
            or_dash(w.label.as_deref()),
            w.wallet.scheme.clone(),
            w.kind.to_string(),
            purpose_text(w),
            format!("{} ({}-of-{})", group_name(w), w.threshold, w.members.len()),
            main_address(w),
            time(&w.wallet.created_at),
        ]);
    }
    t
}

/// One wallet, whole.
pub(crate) fn show_wallet(w: &WalletView) {
    outln!("Wallet {}", w.wallet.id);
    let mut t = Table::new(&["", ""]);
    t.row(["label".into(), or_dash(w.label.as_deref())]);
    t.row(["scheme".into(), w.wallet.scheme.clone()]);
    t.row(["kind".into(), w.kind.to_string()]);
    if let Some(d) = &w.derived_from {
        t.row(["derived from".into(), format!("{} at {}", d.wallet, d.path)]);
    }
    t.row(["purpose".into(), purpose_text(w)]);
    t.row([
        "group".into(),
        format!(
            "{} ({}-of-{}: {})",
            group_name(w),
            w.threshold,
            w.members.len(),
            w.members.join(", ")
        ),
    ]);
    t.row([
        "public key".into(),
        if w.kind == concord_coordinator::records::WalletKind::Multisig {
            "none: each member signs with its own key".into()
        } else {
            hex::encode(&w.wallet.public_key)
        },
    ]);
    for a in &w.addresses {
        t.row([
            format!("address {}", a.network),
            format!("{} ({})", a.address, a.kind),
        ]);
    }
    if w.addresses.is_empty() {
        t.row([
            "address".to_owned(),
            "none on a chain configured here".to_owned(),
        ]);
    }
    t.row(["created".into(), time(&w.wallet.created_at)]);
    // Skip the empty header line.
    let text = t.render();
    for line in text.lines().skip(1) {
        outln!("  {line}");
    }
}

pub async fn wallets(api: &Api, cmd: WalletsCommand) -> Result<()> {
    match cmd {
        WalletsCommand::Create {
            kind: WalletKind::Multisig,
            multisig,
            out,
            ..
        } => crate::authority::create_multisig(api, &multisig, out.json).await,
        WalletsCommand::Create {
            group,
            scheme,
            wait,
            multisig,
            out,
            ..
        } => {
            // A chain named without a scheme: the ECDSA key every chain here takes (an EVM
            // account; P2WPKH on Litecoin and Bitcoin). Its addresses are all shown below.
            let scheme = match (scheme, multisig.chain.as_deref()) {
                (Some(s), _) => Some(s),
                (None, Some(_)) => Some(Scheme::EcdsaSecp256k1),
                (None, None) => None,
            };
            let (Some(group), Some(scheme)) = (group, scheme) else {
                bail!("a threshold wallet needs --group and --scheme (or --chain)");
            };
            if matches!(scheme, Scheme::Ed25519 | Scheme::EcdsaP256) && multisig.chain.is_some() {
                bail!(
                    "an {} wallet has no address on a chain here: it is an exchange's API key",
                    scheme.as_str()
                );
            }
            let body = json!({ "group": group, "scheme": scheme.as_str() });
            let job: JobRecord = api.post_as("/v1/wallets", &body).await?;
            let id = job.id.clone();
            if !wait {
                return print(&job, out, |_| {
                    outln!("Key generation started: job {id}.");
                    outln!("Follow it: concord jobs {id} --wait");
                });
            }
            if !out.json {
                eprintln!("Generating the key: each member of {group} takes part…");
            }
            let done = api.wait_job(&id, out.json).await?;
            let wallet_id = done
                .result
                .as_ref()
                .and_then(|r| r["id"].as_str())
                .ok_or_else(|| anyhow!("job {id} finished without naming its wallet"))?;
            let w: WalletView = api.fetch(&["v1", "wallets", wallet_id], &[]).await?;
            print(&w, out, show_wallet)
        }
        WalletsCommand::Import {
            group,
            scheme,
            key_file,
            signer,
            out,
        } => {
            let result =
                crate::import::import(api, &group, scheme.as_str(), &key_file, &signer, out.json)
                    .await?;
            let wallet_id = result["id"]
                .as_str()
                .ok_or_else(|| anyhow!("the import finished without naming its wallet"))?;
            let w: WalletView = api.fetch(&["v1", "wallets", wallet_id], &[]).await?;
            print(&w, out, |w| {
                outln!("Imported.");
                show_wallet(w)
            })
        }
        WalletsCommand::List { out } => {
            let list: Vec<WalletView> = api.fetch(&["v1", "wallets"], &[]).await?;
            print(&list, out, |list| {
                wallets_table(list).print_or(
                    "No wallet yet: `concord wallets create --group G --scheme ecdsa-secp256k1 --wait`.",
                )
            })
        }
        WalletsCommand::Show { wallet, out } => {
            let id = api.resolve_wallet(&wallet).await?.to_string();
            let w: WalletView = api.fetch(&["v1", "wallets", &id], &[]).await?;
            print(&w, out, show_wallet)
        }
        WalletsCommand::Derive {
            wallet,
            path,
            wait,
            out,
        } => {
            let id = api.resolve_wallet(&wallet).await?.to_string();
            let job: JobRecord = api
                .post_as(
                    &format!("/v1/wallets/{id}/derive"),
                    &json!({ "path": path.to_string() }),
                )
                .await?;
            let job_id = job.id.clone();
            if !wait {
                return print(&job, out, |_| {
                    outln!("Derivation of {path} started: job {job_id}.");
                    outln!("Follow it: concord jobs {job_id} --wait");
                });
            }
            let done = api.wait_job(&job_id, out.json).await?;
            let child = done
                .result
                .as_ref()
                .and_then(|r| r["id"].as_str())
                .ok_or_else(|| anyhow!("job {job_id} finished without naming the child wallet"))?;
            let w: WalletView = api.fetch(&["v1", "wallets", child], &[]).await?;
            print(&w, out, show_wallet)
        }
        WalletsCommand::Refresh { wallet, wait, out } => {
            let id = api.resolve_wallet(&wallet).await?.to_string();
            let job: JobRecord = api
                .post_as(&format!("/v1/wallets/{id}/refresh"), &json!({}))
                .await?;
            let job_id = job.id.clone();
            if !wait {
                return print(&job, out, |_| {
                    outln!("Refresh started: job {job_id}.");
                    outln!("Follow it: concord jobs {job_id} --wait");
                });
            }
            if !out.json {
                eprintln!("Refreshing: every member re-randomises its share…");
            }
            let done = api.wait_job(&job_id, out.json).await?;
            let result = done.result.clone().unwrap_or_default();
            print(&result, out, |r| {
                outln!(
                    "Wallet {} refreshed: every member ({}) now uses its new share; the key is unchanged.",
                    short(&id),
                    r["members"]
                        .as_array()
                        .map(|m| m
                            .iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                );
            })
        }
    }
}

pub async fn sign(api: &Api, a: SignArgs) -> Result<()> {
    let wallet = api.resolve_wallet(&a.wallet).await?;
    let message = match (a.message, a.text) {
        (Some(m), None) => m.0,
        (None, Some(t)) => t.into_bytes(),
        _ => return Err(usage("give --message HEX or --text TEXT")),
    };
    let intent = a.signer.sign(Action::SignMessage {
        wallet,
        message,
        rule: a.rule.into(),
    })?;
    let body = json!({ "intent": intent, "mode": a.mode.as_str() });
    let job: JobRecord = api.post_as("/v1/signatures", &body).await?;
    let id = job.id.clone();
    if !a.wait {
        return print(&job, a.out, |_| {
            outln!("Signing requested: job {id}.");
            outln!("Follow it: concord jobs {id} --wait");
        });
    }
    let done = api.wait_job(&id, a.out.json).await?;
    print(&done, a.out, show_job)
}

/// Jobs as a table.
pub(crate) fn jobs_table(list: &[JobRecord]) -> Table {
    let mut t = Table::new(&[
        "job", "kind", "status", "group", "wallet", "created", "error",
    ]);
    for j in list {
        t.row([
            j.id.clone(),
            j.kind.to_string(),
            j.status.to_string(),
            j.group_id.clone(),
            j.wallet_id
                .as_deref()
                .map(short)
                .unwrap_or_else(|| "-".into()),
            time(&j.created_at),
            or_dash(j.error.as_deref()),
        ]);
    }
    t
}

/// One job, whole: what it made (a wallet, a signature), then its events.
pub(crate) fn show_job(v: &JobView) {
    let j = &v.job;
    outln!("Job {} ({}): {}", j.id, j.kind, j.status);
    let mut t = Table::new(&["", ""]);
    t.row(["group".into(), j.group_id.clone()]);
    if let Some(w) = &j.wallet_id {
        t.row(["wallet".into(), w.clone()]);
    }
    if let Some(s) = &j.scheme {
        t.row(["scheme".into(), s.clone()]);
    }
    if let Some(tr) = &j.transfer_id {
        t.row(["transfer".into(), tr.clone()]);
    }
    if let Some(d) = &j.digest {
        t.row(["digest".into(), hex::encode(d)]);
    }
    if let Some(r) = &v.result {
        match j.kind.as_str() {
            "keygen" | "import" => {
                if let Some(id) = r["id"].as_str() {
                    t.row(["new wallet".into(), id.to_owned()]);
                }
                if let Some(pk) = r["public_key"].as_str() {
                    t.row(["public key".into(), pk.to_owned()]);
                }
                if let Some(a) = r["address"].as_str() {
                    t.row(["address".into(), a.to_owned()]);
                }
            }
            "sign" => {
                if let Some(s) = r["signature"].as_str() {
                    t.row(["signature".into(), s.to_owned()]);
                }
                if !r["signers"].is_null() {
                    t.row([
                        "signed by".into(),
                        format!("group indices {}", r["signers"]),
                    ]);
                }
                if let Some(a) = r["approvers"].as_array() {
                    let names: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                    t.row(["approved by".into(), names.join(", ")]);
                }
                if let Some(d) = r["dissenters"].as_object().filter(|d| !d.is_empty()) {
                    for (m, why) in d {
                        t.row([
                            format!("DISSENT {m}"),
                            why.as_str().unwrap_or("").to_owned(),
                        ]);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(e) = &j.error {
        t.row(["error".into(), e.clone()]);
    }
    t.row(["created".into(), time(&j.created_at)]);
    t.row(["updated".into(), time(&j.updated_at)]);
    for line in t.render().lines().skip(1) {
        outln!("  {line}");
    }
    if !v.events.is_empty() {
        outln!("  events");
        for e in &v.events {
            outln!(
                "    {}  {:<12} {}",
                time(&e.at),
                e.module_id.as_deref().unwrap_or("coordinator"),
                event_text(e)
            );
        }
    }
}

pub async fn jobs(api: &Api, a: JobsArgs) -> Result<()> {
    let cmd = match (a.command, a.id) {
        (Some(c), _) => c,
        (None, Some(id)) => JobsCommand::Show {
            id,
            wait: a.wait,
            out: a.out,
        },
        (None, None) => JobsCommand::List {
            kind: None,
            status: None,
            wallet: None,
            limit: 50,
            out: a.out,
        },
    };
    match cmd {
        JobsCommand::List {
            kind,
            status,
            wallet,
            limit,
            out,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(kind.map(|k| ("kind", k)));
            query.extend(status.map(|s| ("status", s)));
            if let Some(w) = wallet {
                query.push(("wallet", api.resolve_wallet(&w).await?.to_string()));
            }
            let list: Vec<JobRecord> = api.fetch(&["v1", "jobs"], &query).await?;
            print(&list, out, |list| {
                jobs_table(list).print_or("No job matches.")
            })
        }
        JobsCommand::Show { id, wait, out } => {
            let job = if wait {
                api.wait_job(&id, out.json).await?
            } else {
                api.fetch(&["v1", "jobs", &id], &[]).await?
            };
            print(&job, out, show_job)
        }
    }
}

/// Transfers as a table.
pub(crate) fn transfers_table(list: &[TransferRecord]) -> Table {
    let mut t = Table::new(&[
        "transfer",
        "kind",
        "status",
        "amount",
        "coin",
        "wallet",
        "requested",
        "tx",
    ]);
    t.right(3);
    for tr in list {
        t.row([
            tr.id.clone(),
            tr.kind.to_string(),
            tr.status.to_string(),
            tr.amount.to_string(),
            tr.coin.clone(),
            if tr.wallet_id.is_empty() {
                "-".into()
            } else {
                short(&tr.wallet_id)
            },
            time(&tr.created_at),
            tr.tx_hash
                .as_deref()
                .map(short)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

/// One transfer for people: what, where, who, each step with its time.
pub(crate) fn show_transfer(t: &TransferRecord) {
    outln!("Transfer {} ({}): {}", t.id, t.kind, t.status);
    let mut rows = Table::new(&["", ""]);
    rows.row([
        "amount".into(),
        format!(
            "{} {} on {} via exchange {}",
            t.amount, t.coin, t.network, t.exchange
        ),
    ]);
    if !t.wallet_id.is_empty() {
        rows.row(["wallet".into(), t.wallet_id.clone()]);
    }
    if let Some(to) = &t.to {
        rows.row([
            "to".into(),
            match to {
                AddressRef::Wallet(w) => format!("wallet {w}"),
                AddressRef::Label(l) => format!("address-book entry {l}"),
            },
        ]);
    }
    if let Some(d) = &t.destination {
        rows.row(["destination".into(), d.clone()]);
    }
    if let Some(r) = &t.requester {
        rows.row(["asked by".into(), r.clone()]);
    }
    if !t.approvers.is_empty() {
        rows.row([
            "approved by".into(),
            format!(
                "{}{}",
                t.approvers.join(", "),
                t.policy
                    .as_deref()
                    .map(|p| format!(" under policy {}", short(p)))
                    .unwrap_or_default()
            ),
        ]);
    }
    for (m, why) in &t.dissenters {
        rows.row([format!("DISSENT {m}"), why.clone()]);
    }
    if let Some(j) = &t.sign_job_id {
        rows.row(["sign job".into(), j.clone()]);
    }
    if let Some(n) = t.nonce {
        rows.row(["nonce".into(), n.to_string()]);
    }
    if let Some(h) = &t.tx_hash {
        rows.row(["tx".into(), h.clone()]);
    }
    if let Some(w) = &t.exchange_withdrawal_id {
        rows.row(["exchange id".into(), w.clone()]);
    }
    rows.row(["requested".into(), time(&t.created_at)]);
    if let Some(e) = &t.error {
        rows.row([
            if t.is_final() { "error" } else { "waiting" }.into(),
            e.clone(),
        ]);
    } else if !t.is_final() {
        rows.row(["waiting".to_owned(), pending_reason(t).to_owned()]);
    }
    for line in rows.render().lines().skip(1) {
        outln!("  {line}");
    }
    if !t.log.is_empty() {
        outln!("  steps");
        for line in &t.log {
            outln!("    {line}");
        }
    }
}

async fn transfer(api: &Api, a: TransferArgs, deposit: bool) -> Result<()> {
    let wallet = match &a.wallet {
        Some(w) => Some(api.resolve_wallet(w).await?),
        None => None,
    };
    let rule = a.rule.into();
    let (path, action) = if deposit {
        let wallet = wallet.ok_or_else(|| usage("a deposit needs --wallet W (the sender)"))?;
        (
            "/v1/transfers/deposits",
            Action::Deposit {
                wallet,
                exchange: a.exchange.clone(),
                coin: a.coin.clone(),
                network: a.network.clone(),
                amount: a.amount.clone(),
                rule,
            },
        )
    } else {
        let to = match (wallet, &a.to) {
            (Some(w), None) => AddressRef::Wallet(w),
            (None, Some(label)) => AddressRef::Label(label.clone()),
            _ => {
                return Err(usage(
                    "a withdrawal needs --wallet W or --to LABEL (an address-book entry)",
                ));
            }
        };
        (
            "/v1/transfers/withdrawals",
            Action::Withdraw {
                exchange: a.exchange.clone(),
                coin: a.coin.clone(),
                network: a.network.clone(),
                amount: a.amount.clone(),
                to,
                rule,
            },
        )
    };
    let intent = a.signer.sign(action)?;
    let t: TransferRecord = api.post_as(path, &json!({ "intent": intent })).await?;
    if !a.wait {
        return print(&t, a.out, |t| {
            outln!("Transfer {} requested ({}).", t.id, t.status);
            outln!("Follow it: concord transfers {} --wait", t.id);
        });
    }
    let t = api.wait_transfer(&t.id, a.out.json).await?;
    print(&t, a.out, show_transfer)?;
    if t.status.as_str() == "failed" {
        bail!(
            "transfer {} failed: {}",
            t.id,
            t.error.as_deref().unwrap_or("no reason recorded")
        );
    }
    Ok(())
}

/// `concord deposit`: from a wallet to its exchange deposit address.
pub async fn deposit(api: &Api, a: TransferArgs) -> Result<()> {
    transfer(api, a, true).await
}

/// `concord withdraw`: from the exchange back to the wallet's own address.
pub async fn withdraw(api: &Api, a: TransferArgs) -> Result<()> {
    transfer(api, a, false).await
}

/// `concord transfers [list | show ID | ID]`.
pub async fn transfers(api: &Api, a: TransfersArgs) -> Result<()> {
    let cmd = match (a.command, a.id) {
        (Some(c), _) => c,
        (None, Some(id)) => TransfersCommand::Show {
            id,
            wait: a.wait,
            out: a.out,
        },
        (None, None) => TransfersCommand::List { out: a.out },
    };
    match cmd {
        TransfersCommand::Show { id, wait, out } => {
            let t = if wait {
                api.wait_transfer(&id, out.json).await?
            } else {
                api.fetch(&["v1", "transfers", &id], &[]).await?
            };
            print(&t, out, show_transfer)?;
            if wait && t.status.as_str() == "failed" {
                bail!("transfer {id} failed");
            }
            Ok(())
        }
        TransfersCommand::List { out } => {
            let list: Vec<TransferRecord> = api.fetch(&["v1", "transfers"], &[]).await?;
            print(&list, out, |list| {
                transfers_table(list).print_or("No transfer yet: `concord deposit --help`.")
            })
        }
    }
}

/// What `concord balances --json` prints.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Balances {
    /// Each wallet's chain balances.
    pub wallets: Vec<WalletBalances>,
    /// The exchange account's balances (absent with `--wallet`).
    pub exchange: Option<ExchangeBalances>,
}

/// Chain and exchange balances as one table.
pub(crate) fn balances_table(b: &Balances) -> Table {
    let mut t = Table::new(&["where", "account", "coin", "amount", "locked"]);
    t.right(3).right(4);
    for w in &b.wallets {
        for c in &w.balances {
            t.row([
                format!("chain {}", w.network),
                format!("{} ({})", short(&w.wallet), w.address),
                c.coin.clone(),
                c.amount.clone(),
                "-".into(),
            ]);
        }
    }
    if let Some(x) = &b.exchange {
        for c in &x.balances {
            t.row([
                format!("exchange {}", x.exchange),
                format!("read by {}", x.module),
                c.asset.clone(),
                c.free.clone(),
                c.locked.clone(),
            ]);
        }
    }
    t
}

/// `concord balances`.
pub async fn balances(api: &Api, a: BalancesArgs) -> Result<()> {
    // What can be read is shown; what cannot is named after it (exit code 1).
    let mut unread = Vec::new();
    let mut wallets = Vec::new();
    if !a.exchange_only {
        let ids: Vec<String> = match &a.wallet {
            Some(w) => vec![api.resolve_wallet(w).await?.to_string()],
            None => {
                let list: Vec<WalletView> = api.fetch(&["v1", "wallets"], &[]).await?;
                // Every wallet that holds something on a chain: its EVM account, a Safe, or a
                // UTXO script (an ECDSA wallet's balances are its EVM account's).
                list.into_iter()
                    .filter(|w| !w.addresses.is_empty())
                    .map(|w| w.wallet.id)
                    .collect()
            }
        };
        for id in ids {
            match api
                .fetch::<WalletBalances>(&["v1", "wallets", &id, "balances"], &[])
                .await
            {
                Ok(b) => wallets.push(b),
                Err(e) => unread.push(format!("wallet {}: {e:#}", short(&id))),
            }
        }
    }
    let mut exchange = None;
    if a.wallet.is_none() {
        match api
            .fetch::<ExchangeBalances>(&["v1", "exchanges", &a.exchange, "balances"], &[])
            .await
        {
            Ok(x) => exchange = Some(x),
            Err(e) => unread.push(format!("exchange {}: {e:#}", a.exchange)),
        }
    }
    let b = Balances { wallets, exchange };
    print(&b, a.out, |b| {
        if !(b.wallets.is_empty() && b.exchange.is_none()) {
            balances_table(b).print_or("Nothing held.");
        }
    })?;
    if !unread.is_empty() {
        bail!("could not read every balance: {}", unread.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet(id: char, scheme: &str, purpose: Value, address: Option<&str>) -> WalletView {
        serde_json::from_value(json!({
            "id": id.to_string().repeat(64), "group_id": "desk", "scheme": scheme,
            "public_key": "02".to_owned() + &"ab".repeat(32), "job_id": "j1",
            "created_at": "2026-11-30T09:11:41Z", "kind": "generated", "threshold": 2,
            "members": ["m1", "m2", "m3"], "label": "trader desk", "purpose": purpose,
            "addresses": address.map(|a| vec![json!({"network": "ETH", "kind": "evm", "address": a})]).unwrap_or_default(),
        }))
        .unwrap()
    }

    #[test]
    fn wallets_table_shows_purpose_group_and_address() {
        let list = vec![
            wallet(
                'a',
                "ecdsa-secp256k1",
                json!({"kind": "trading", "deposit_to": ["binance"], "raw_messages": false}),
                Some("0xc3dC0A207706760674f7C4F63a2a953d0Acd0f42"),
            ),
            wallet(
                'b',
                "ed25519",
                json!({"kind": "exchange_credential", "exchange": "binance", "withdraw_to": ["desk"]}),
                None,
            ),
        ];
        insta::assert_snapshot!(wallets_table(&list).render());
    }

    #[test]
    fn transfers_table_has_a_header_times_and_wallets() {
        let t: TransferRecord = serde_json::from_value(json!({
            "id": "cdeef676c42b910e6905c364468afe31", "kind": "deposit", "status": "credited",
            "wallet_id": "a".repeat(64), "exchange": "binance", "coin": "ETH", "network": "ETH",
            "amount": "1.5", "rule": "all", "mode": "presigned",
            "tx_hash": "0x".to_owned() + &"12".repeat(32),
            "created_at": "2026-11-30T09:11:41Z", "created_ms": 1.0,
        }))
        .unwrap();
        let mut w = t.clone();
        w.id = "0123456789abcdef0123456789abcdef".into();
        w.kind = serde_json::from_value(json!("withdrawal")).unwrap();
        w.status = serde_json::from_value(json!("unknown")).unwrap();
        w.amount = serde_json::from_value(json!("0.25")).unwrap();
        w.tx_hash = None;
        insta::assert_snapshot!(transfers_table(&[t, w]).render());
    }

    #[test]
    fn jobs_and_balances_tables() {
        let j: JobRecord = serde_json::from_value(json!({
            "id": "job-1", "kind": "sign", "group_id": "desk", "wallet_id": "a".repeat(64),
            "scheme": "ecdsa-secp256k1", "rule": "all", "mode": "presigned", "status": "failed",
            "signers": null, "error": "refused by m3: not the deposit address", "transfer_id": null,
            "created_at": "2026-11-30T09:11:41Z", "updated_at": "2026-11-30T09:11:42Z",
        }))
        .unwrap();
        insta::assert_snapshot!("jobs", jobs_table(&[j]).render());
        let b: Balances = serde_json::from_value(json!({
            "wallets": [{"wallet": "a".repeat(64), "network": "ETH",
                "address": "0xc3dC0A207706760674f7C4F63a2a953d0Acd0f42",
                "balances": [
                    {"coin": "ETH", "asset": "native", "amount": "3.4799", "raw": "3479900000000000000"},
                    {"coin": "CTT", "asset": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "amount": "750", "raw": "750000000000000000000"}]}],
            "exchange": {"exchange": "binance", "module": "m1",
                "balances": [{"asset": "ETH", "free": "1.0001", "locked": "0"}]},
        }))
        .unwrap();
        insta::assert_snapshot!("balances", balances_table(&b).render());
    }
}
