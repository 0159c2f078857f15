//! `concord keys`, `concord policy` and `concord tokens`, and how the CLI signs intents.
//!
//! Requester keys are Ed25519 keys in files (64 hex digits, mode 0600), like SSH keys: the
//! public half goes into the policy with its roles; the file signs intents and, for admins,
//! policies. The coordinator carries what they sign and can change none of it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use concord_coordinator::policy::{Policies, PolicyView};
use concord_wire::authority::{
    Action, AddressTarget, Endorsement, Intent, POLICY_TAG, Policy, SignedIntent, WalletPurpose,
    WalletRule,
};
use concord_wire::identity::IdentityKey;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::client::Api;

/// Reads a key file (64 hex digits: an Ed25519 seed).
pub(crate) fn load_key(path: &Path) -> Result<IdentityKey> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?,
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut *seed).map_err(|_| {
        anyhow!(
            "{} is not a key file (64 hex digits, as `concord keys new` writes)",
            path.display()
        )
    })?;
    Ok(IdentityKey::from_seed(&seed))
}

/// Writes a new key file (mode 0600; never over an existing file).
pub(crate) fn write_key(path: &Path, key: &IdentityKey) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (does it exist already?)", path.display()))?;
    let text = Zeroizing::new(hex::encode(&key.to_seed()[..]));
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a new requester key (Ed25519) in a file and print its public key, which the
    /// admins put into the policy with its roles.
    #[command(after_help = "Example:\n  concord keys new --out trader.key")]
    New {
        /// The key file to create (mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a key file's public key and fingerprint.
    #[command(after_help = "Example:\n  concord keys show --key trader.key")]
    Show {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn keys(cmd: KeysCommand) -> Result<()> {
    let (key, json) = match cmd {
        KeysCommand::New { out, json } => {
            let key = IdentityKey::generate(&mut rand::rngs::OsRng);
            write_key(&out, &key)?;
            if !json {
                crate::outln!("New key in {}", out.display());
            }
            (key, json)
        }
        KeysCommand::Show { key, json } => (load_key(&key)?, json),
    };
    let public = key.public();
    if json {
        crate::outln!(
            "{}",
            json!({"public_key": public.to_string(), "fingerprint": public.fingerprint()})
        );
    } else {
        crate::outln!("  public key   {public}");
        crate::outln!("  fingerprint  {}", public.fingerprint());
    }
    Ok(())
}

/// Who signs a request: the requester's key, and approvers' co-signatures.
#[derive(Args, Clone)]
pub struct SignerArgs {
    /// The requester's key file (a principal of the policy with the role the request
    /// needs: trader, or importer for an import).
    #[arg(long, env = "CONCORD_KEY_FILE")]
    pub key: Option<PathBuf>,
    /// An approver's key file, to co-sign (repeat for each approver the policy asks for).
    #[arg(long = "cosign")]
    pub cosign: Vec<PathBuf>,
    /// How long the signed request stays valid, seconds (1 to 86400).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub expires_in: u64,
}

impl SignerArgs {
    /// Makes and signs the intent for `action`.
    pub fn sign(&self, action: Action) -> Result<SignedIntent> {
        let key = self.key.as_ref().ok_or_else(|| {
            anyhow!("no requester key: pass --key FILE or set CONCORD_KEY_FILE (a principal of the policy)")
        })?;
        let mut si = SignedIntent::new(Intent::new(action, self.expires_in), &load_key(key)?);
        for c in &self.cosign {
            si.cosign(&load_key(c)?);
        }
        Ok(si)
    }
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Propose a policy from a TOML or JSON file (the policy's fields; `version` and
    /// `previous` are filled in to follow the policy in force). Admins then sign it with
    /// `concord policy approve`; each module adopts it once a quorum of its admins signed.
    #[command(after_help = "Example:\n  concord policy propose --file policy.toml")]
    Propose {
        /// The policy file.
        #[arg(long)]
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a proposed policy, check its hash, sign it with an admin key and hand the
    /// signature to the modules; prints what each module says.
    #[command(after_help = "Example:\n  concord policy approve --key admin-1.key")]
    Approve {
        /// The admin's key file.
        #[arg(long)]
        key: PathBuf,
        /// The policy's hash (default: the newest proposal not in force).
        #[arg(value_parser = crate::args::hash)]
        hash: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Define a native multisig wallet for a policy file, from the member modules' published
    /// info (`concord module show --json`, one file each): checks each module's key is
    /// signed by its identity, orders them (BIP-67) and prints the wallet rule to paste into
    /// the policy's `wallets` (its id is the definition's hash) and the wallet's address.
    /// Runs offline.
    #[command(
        after_help = "Example:\n  concord policy multisig --chain ltc-regtest --threshold 2 --label ltc-desk --module m1.json --module m2.json --module m3.json --deposit-to binance"
    )]
    Multisig {
        /// The chain: ltc-regtest, ltc, btc, btc-testnet, btc-regtest, or evm-<chain id> for
        /// a Safe.
        #[arg(long)]
        chain: String,
        /// On an EVM chain: the Safe whose owners are the modules' addresses.
        #[arg(long)]
        safe: Option<concord_chain::Address>,
        /// Signatures needed.
        #[arg(long)]
        threshold: u8,
        /// A member module's info file (`concord module show --json`); once per member.
        #[arg(long = "module", required = true)]
        modules: Vec<PathBuf>,
        /// The wallet's label in the policy.
        #[arg(long)]
        label: String,
        /// Exchange connections it may deposit to.
        #[arg(long = "deposit-to")]
        deposit_to: Vec<String>,
        /// Print JSON (the wallet rule only).
        #[arg(long)]
        json: bool,
    },
    /// Show the policy in force (or one by hash) and each module's report.
    #[command(after_help = "Example:\n  concord policy show")]
    Show {
        /// A policy's hash.
        #[arg(value_parser = crate::args::hash)]
        hash: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Proposes `policy` (version and previous filled in here when zero/absent).
pub(crate) async fn propose(api: &Api, mut doc: Value) -> Result<PolicyView> {
    let policies: Policies = api.fetch(&["v1", "policies"], &[]).await?;
    let (version, previous) = match policies.current.filter(|c| c.status == "active") {
        Some(c) => (c.version + 1, json!(c.hash)),
        None => (1, Value::Null),
    };
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| anyhow!("the policy file must hold a table of the policy's fields"))?;
    obj.entry("version").or_insert(json!(version));
    obj.entry("previous").or_insert(previous);
    let policy: Policy = serde_json::from_value(doc).context("the policy file")?;
    policy.validate()?;
    let view: PolicyView = serde_json::from_value(
        api.post("/v1/policies", &json!({ "policy": policy }))
            .await?,
    )?;
    Ok(view)
}

/// Checks the policy's hash, signs it with `key` and posts the signature.
pub(crate) async fn approve(api: &Api, hash: &str, key: &IdentityKey) -> Result<PolicyView> {
    let view: PolicyView = api.fetch(&["v1", "policies", hash], &[]).await?;
    let computed = hex::encode(view.signed.policy.hash());
    if computed != hash {
        bail!("the coordinator's policy hashes to {computed}, not {hash}: not signing it");
    }
    let e = Endorsement::sign(key, POLICY_TAG, &view.signed.policy.to_canonical());
    let view: PolicyView = serde_json::from_value(
        api.post(&format!("/v1/policies/{hash}/signatures"), &json!(e))
            .await?,
    )?;
    Ok(view)
}

fn read_policy_file(file: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))
    } else {
        let v: toml::Value = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", file.display()))?;
        Ok(serde_json::to_value(v)?)
    }
}

/// Prints a policy for people.
pub(crate) fn show_policy(v: &PolicyView) {
    let p = &v.signed.policy;
    crate::outln!("Policy v{} ({}), {}", p.version, v.hash, v.status);
    if let Some(prev) = p.previous {
        crate::outln!("  replaces     {}", hex::encode(prev));
    }
    crate::outln!(
        "  signed by    {} key(s); {} admin signature(s) needed for the next change",
        v.signed.signatures.len(),
        p.admin_quorum
    );
    crate::outln!("  principals");
    for pr in &p.principals {
        let roles: Vec<&str> = pr.roles.iter().map(|r| r.as_str()).collect();
        crate::outln!(
            "    {:<16} {}  {}",
            pr.name,
            pr.key.fingerprint(),
            roles.join(", ")
        );
    }
    if !p.wallets.is_empty() {
        crate::outln!("  wallets");
    }
    for w in &p.wallets {
        let what = match &w.purpose {
            WalletPurpose::Trading {
                deposit_to,
                raw_messages,
            } => format!(
                "trading; deposits to [{}]{}",
                deposit_to.join(", "),
                if *raw_messages { "; raw messages" } else { "" }
            ),
            WalletPurpose::ExchangeCredential {
                exchange,
                withdraw_to,
            } => format!(
                "withdraw key of {exchange}; withdraws to [{}]",
                withdraw_to.join(", ")
            ),
        };
        crate::outln!("    {:<16} {}  {what}", w.label, w.wallet);
        for l in &w.limits {
            crate::outln!(
                "      {:<6} {} per transfer, {} per 24 h{}",
                l.coin,
                l.per_transfer,
                l.per_day,
                l.cosign_above.as_ref().map_or(String::new(), |a| format!(
                    ", {} approver(s) above {a}",
                    l.cosigners
                ))
            );
        }
    }
    if !p.address_book.is_empty() {
        crate::outln!("  address book");
    }
    for a in &p.address_book {
        match &a.target {
            AddressTarget::Wallet { wallet } => {
                crate::outln!("    {:<16} wallet {wallet}", a.label)
            }
            AddressTarget::Address { network, address } => {
                crate::outln!("    {:<16} {network} {address}", a.label)
            }
        }
    }
    crate::outln!("  modules");
    for m in &v.modules {
        let state = match (&m.policy_hash, &m.error) {
            (Some(h), _) if *h == v.hash => "in force".to_owned(),
            (_, Some(e)) if m.offered.as_deref() == Some(v.hash.as_str()) => {
                format!("not adopted: {e}")
            }
            (Some(h), _) => format!("has v{} ({})", m.version, &h[..16.min(h.len())]),
            (None, _) => "no policy yet".to_owned(),
        };
        crate::outln!("    {:<16} {state}", m.module_id);
    }
}

/// The wallet rule of a native multisig wallet from its members' published info.
pub(crate) fn multisig_rule(
    chain: &str,
    threshold: u8,
    infos: &[concord_module::PublicInfo],
    label: &str,
    deposit_to: Vec<String>,
    safe: Option<concord_chain::Address>,
) -> Result<(WalletRule, String)> {
    let mut members = Vec::with_capacity(infos.len());
    for info in infos {
        let identity: concord_wire::identity::PublicIdentity = info
            .identity
            .parse()
            .with_context(|| format!("module {}'s identity key", info.id))?;
        let key: [u8; 33] = hex::decode(&info.multisig_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| anyhow!("module {}'s info carries no multisig key (a module from before they had one: open it once with this version)", info.id))?;
        let sig = hex::decode(&info.multisig_key_signature).unwrap_or_default();
        identity.verify_multisig_key(&key, &sig).map_err(|_| {
            anyhow!(
                "module {}'s multisig key is not signed by its identity {}: the info file is not that module's",
                info.id,
                identity.fingerprint()
            )
        })?;
        members.push(concord_wire::authority::MultisigMember {
            module: info.id.clone(),
            identity,
            key: hex::encode(key),
            key_signature: hex::encode(sig),
        });
    }
    members.sort_by(|a, b| a.key.cmp(&b.key));
    let def = concord_wire::authority::MultisigDef {
        chain: chain.to_owned(),
        threshold,
        members,
        safe,
    };
    def.validate()?;
    let address = match def.evm_chain_id() {
        Some(_) => {
            let (_, safe, owners) = def.safe_owners()?;
            let owners: Vec<String> = owners.iter().map(|o| o.to_string()).collect();
            format!("Safe {safe}, owners {}", owners.join(", "))
        }
        None => {
            let (network, script) = def.wallet()?;
            network.address(&script.script_pubkey())?
        }
    };
    let rule = WalletRule {
        wallet: def.wallet_id(),
        label: label.to_owned(),
        purpose: concord_wire::authority::WalletPurpose::Trading {
            deposit_to,
            raw_messages: false,
        },
        limits: Vec::new(),
        refresh: false,
        derive: Vec::new(),
        multisig: Some(def),
        held: None,
    };
    Ok((rule, address))
}

/// The policy in force as a document for its next version (`version` and `previous` left
/// for [`propose`] to fill in).
pub(crate) async fn next_policy_doc(api: &Api) -> Result<Value> {
    let policies = api.get("/v1/policies").await?;
    let current = policies["current"]["hash"]
        .as_str()
        .context("no policy is in force yet")?
        .to_owned();
    let mut doc = api.get(&format!("/v1/policies/{current}")).await?["signed"]["policy"].clone();
    if let Some(o) = doc.as_object_mut() {
        o.remove("version");
        o.remove("previous");
    }
    Ok(doc)
}

/// `concord wallets create --kind multisig`: the wallet defined from the member modules'
/// published keys, and the next policy version naming it proposed for the admins to sign.
pub(crate) async fn create_multisig(
    api: &Api,
    args: &crate::client::MultisigArgs,
    json: bool,
) -> Result<()> {
    let (rule, address, view) = propose_multisig(api, args).await?;
    let id = rule.wallet.to_string();
    if json {
        crate::outln!(
            "{}",
            json!({"wallet": id, "address": address, "policy": view.hash, "version": view.version})
        );
    } else {
        crate::outln!("Multisig wallet {:?} ({id}): {address}", rule.label);
        crate::outln!(
            "Proposed as policy v{} ({}): it exists once a quorum of admins signs it:",
            view.version,
            view.hash
        );
        crate::outln!("  concord policy approve --key ADMIN.key {}", view.hash);
    }
    Ok(())
}

/// [`create_multisig`]'s work: the wallet's rule, its address, the policy proposed.
pub(crate) async fn propose_multisig(
    api: &Api,
    args: &crate::client::MultisigArgs,
) -> Result<(WalletRule, String, PolicyView)> {
    let chain = args.chain.as_deref().context("--chain is needed")?;
    let chain = match (chain, args.chain_id) {
        ("eth", Some(id)) => format!("evm-{id}"),
        ("eth", None) => bail!("a Safe wallet (--chain eth) needs --chain-id"),
        (c, _) => c.to_owned(),
    };
    if args.modules.is_empty() {
        bail!("name each member module's info with --module FILE (`concord module show --json`)");
    }
    let infos = read_module_infos(&args.modules)?;
    let (rule, address) = multisig_rule(
        &chain,
        args.threshold.context("--threshold is needed")?,
        &infos,
        args.label.as_deref().context("--label is needed")?,
        args.deposit_to.clone(),
        args.safe,
    )?;
    let mut entry = serde_json::to_value(&rule)?;
    entry["limits"] = Value::Array(
        args.limits
            .iter()
            .map(|l| match l.split(':').collect::<Vec<_>>()[..] {
                [coin, per_transfer, per_day] => Ok(json!({
                    "coin": coin, "per_transfer": per_transfer, "per_day": per_day
                })),
                _ => Err(anyhow!(
                    "--limit {l:?} is not COIN:PER_TRANSFER:PER_DAY (e.g. LTC:5:20)"
                )),
            })
            .collect::<Result<_>>()?,
    );
    let mut doc = next_policy_doc(api).await?;
    let id = rule.wallet.to_string();
    let wallets = doc["wallets"]
        .as_array_mut()
        .context("the policy in force has no wallets list")?;
    if wallets.iter().any(|w| w["wallet"] == json!(id)) {
        bail!("wallet {id} is in the policy in force already");
    }
    wallets.push(entry);
    let view = propose(api, doc).await?;
    Ok((rule, address, view))
}

/// Module info files (`concord module show --json`).
fn read_module_infos(files: &[PathBuf]) -> Result<Vec<concord_module::PublicInfo>> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            serde_json::from_str::<concord_module::PublicInfo>(&text).with_context(|| {
                format!(
                    "{} is not a module's info (`concord module show --json`)",
                    f.display()
                )
            })
        })
        .collect()
}

/// `concord policy multisig`: offline.
pub fn policy_multisig(cmd: PolicyCommand) -> Result<()> {
    let PolicyCommand::Multisig {
        chain,
        safe,
        threshold,
        modules,
        label,
        deposit_to,
        json,
    } = cmd
    else {
        return Err(anyhow!("not a multisig definition"));
    };
    let infos = read_module_infos(&modules)?;
    let (rule, address) = multisig_rule(&chain, threshold, &infos, &label, deposit_to, safe)?;
    if json {
        crate::outln!("{}", serde_json::to_string(&rule)?);
    } else {
        crate::outln!(
            "Multisig wallet {:?}: {threshold} of {} module keys on {chain}",
            rule.label,
            infos.len()
        );
        crate::outln!("  wallet id   {}", rule.wallet);
        crate::outln!("  address     {address}");
        crate::outln!(
            "Add this to the policy's wallets (set its limits), then `concord policy propose`:"
        );
        crate::outln!("{}", serde_json::to_string_pretty(&rule)?);
    }
    Ok(())
}

pub async fn policy(api: &Api, cmd: PolicyCommand) -> Result<()> {
    match cmd {
        cmd @ PolicyCommand::Multisig { .. } => return policy_multisig(cmd),
        PolicyCommand::Propose { file, json } => {
            let view = propose(api, read_policy_file(&file)?).await?;
            if json {
                crate::outln!("{}", serde_json::to_string(&view)?);
            } else {
                show_policy(&view);
                crate::outln!(
                    "Proposed. Each admin checks it and signs: `concord policy approve --key ADMIN.key {}`",
                    view.hash
                );
            }
        }
        PolicyCommand::Approve { key, hash, json } => {
            let hash = match hash {
                Some(h) => h,
                None => api
                    .fetch::<Policies>(&["v1", "policies"], &[])
                    .await?
                    .pending
                    .map(|p| p.hash)
                    .ok_or_else(|| anyhow!("no proposed policy is waiting for signatures"))?,
            };
            let view = approve(api, &hash, &load_key(&key)?).await?;
            if json {
                crate::outln!("{}", serde_json::to_string(&view)?);
            } else {
                show_policy(&view);
            }
        }
        PolicyCommand::Show { hash, json } => {
            let view: Option<PolicyView> = match hash {
                Some(h) => Some(api.fetch(&["v1", "policies", &h], &[]).await?),
                None => {
                    api.fetch::<Policies>(&["v1", "policies"], &[])
                        .await?
                        .current
                }
            };
            match (view, json) {
                (Some(v), true) => crate::outln!("{}", serde_json::to_string(&v)?),
                (Some(v), false) => show_policy(&v),
                (None, true) => crate::outln!("null"),
                (None, false) => crate::outln!(
                    "No policy yet: the modules approve nothing until their admins sign one (`concord policy propose`)."
                ),
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create an API token with a role (admin, operator, trader, viewer); it is shown once.
    #[command(
        after_help = "Example:\n  concord tokens create --name desk-viewer --role viewer --out viewer.token"
    )]
    Create {
        /// A name for it (1 to 64 characters).
        #[arg(long, value_parser = crate::args::token_name)]
        name: String,
        /// Its role.
        #[arg(long, value_enum)]
        role: crate::args::Role,
        /// Write the token to this file (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (names and roles).
    #[command(after_help = "Example:\n  concord tokens list")]
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn tokens(api: &Api, cmd: TokensCommand) -> Result<()> {
    match cmd {
        TokensCommand::Create {
            name,
            role,
            out,
            json,
        } => {
            let role: concord_coordinator::api::TokenRole = role.into();
            let t: concord_coordinator::api::CreatedToken = api
                .post_as("/v1/tokens", &json!({"name": name, "role": role}))
                .await?;
            let token = t.token.as_str();
            if let Some(out) = &out {
                crate::devnet::write_private(out, token)?;
            }
            if json {
                crate::outln!("{}", serde_json::to_string(&t)?);
            } else if let Some(out) = out {
                crate::outln!(
                    "Token {name} ({}) written to {}.",
                    role.as_str(),
                    out.display()
                );
            } else {
                crate::outln!("Token {name} ({}): {token}", role.as_str());
                crate::outln!("It is shown once; keep it in a file readable only by its user.");
            }
        }
        TokensCommand::List { json } => {
            let list: Vec<concord_coordinator::api::TokenView> =
                api.fetch(&["v1", "tokens"], &[]).await?;
            if json {
                crate::outln!("{}", serde_json::to_string(&list)?);
            } else {
                let mut t = crate::output::Table::new(&["name", "role", "created"]);
                for tok in &list {
                    t.row([
                        tok.name.clone(),
                        tok.role.as_str().to_owned(),
                        crate::output::time(&tok.created_at),
                    ]);
                }
                t.print_or("No token.");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn module(id: &str, dir: &Path) -> concord_module::PublicInfo {
        let kek = concord_vault::PassphraseKek::with_params(
            Zeroizing::new("test passphrase".into()),
            concord_vault::Argon2Params {
                m_cost_kib: 8 * 1024,
                t_cost: 1,
                p_cost: 1,
            },
        )
        .unwrap();
        concord_module::State::create(id, &dir.join(id), &kek, Default::default())
            .unwrap()
            .public_info()
    }

    /// The policy entry of a multisig wallet from three modules' published info: a valid
    /// definition whose address is the P2WSH of their keys; an info whose key another module
    /// published is refused.
    #[test]
    fn a_multisig_wallet_is_defined_from_the_modules_published_keys() {
        let dir = tempfile::tempdir().unwrap();
        let infos: Vec<_> = ["m1", "m2", "m3"]
            .iter()
            .map(|id| module(id, dir.path()))
            .collect();
        let (rule, address) = multisig_rule(
            "ltc-regtest",
            2,
            &infos,
            "ltc-desk",
            vec!["binance".into()],
            None,
        )
        .unwrap();
        let def = rule.multisig.clone().unwrap();
        assert_eq!(rule.wallet, def.wallet_id());
        let (network, script) = def.wallet().unwrap();
        assert_eq!(network.address(&script.script_pubkey()).unwrap(), address);
        assert!(address.starts_with("rltc1q"), "{address}");
        // The order the modules are given in does not matter.
        let mut reversed = infos.clone();
        reversed.reverse();
        let (again, _) = multisig_rule(
            "ltc-regtest",
            2,
            &reversed,
            "ltc-desk",
            vec!["binance".into()],
            None,
        )
        .unwrap();
        assert_eq!(again.wallet, rule.wallet);
        // A key passed off as another module's.
        let mut forged = infos.clone();
        forged[0].multisig_key = infos[1].multisig_key.clone();
        let e = multisig_rule("ltc-regtest", 2, &forged, "x", vec![], None).unwrap_err();
        assert!(e.to_string().contains("not signed by its identity"), "{e}");
        // A threshold over the members.
        assert!(multisig_rule("ltc-regtest", 4, &infos, "x", vec![], None).is_err());
        // A Safe: on an EVM chain it names its Safe, and the owners are the modules'
        // addresses; a UTXO chain names none.
        let safe = concord_chain::Address::repeat_byte(0x5a);
        let (rule, shown) =
            multisig_rule("evm-31337", 2, &infos, "safe-desk", vec![], Some(safe)).unwrap();
        assert_eq!(rule.multisig.as_ref().unwrap().safe, Some(safe));
        for info in &infos {
            assert!(shown.contains(&info.multisig_address), "{shown}");
        }
        let e = multisig_rule("evm-31337", 2, &infos, "x", vec![], None).unwrap_err();
        assert!(e.to_string().contains("names its Safe"), "{e}");
        assert!(multisig_rule("ltc-regtest", 2, &infos, "x", vec![], Some(safe)).is_err());
    }
}
