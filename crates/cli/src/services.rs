//! `concord coordinator …` and `concord module …`: setting up and running the services.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use concord_vault::PassphraseSource;
use concord_wire::identity::{IdentityKey, PublicIdentity};

use crate::config_path;

#[derive(Subcommand)]
pub enum CoordinatorCommand {
    /// Create a coordinator directory: configuration, TLS identity key, the API's HTTPS
    /// certificate (self-signed, or the operator's) and an admin API token. Prints the
    /// certificate's SHA-256 fingerprint, which CLI users pin (`--api-pin`).
    #[command(
        after_help = "Examples:\n  concord coordinator init --dir /srv/concord/coordinator --http-listen 0.0.0.0:8080 --api-name coordinator.internal\n  concord coordinator init --dir /srv/concord/coordinator --api-cert api.crt --api-key api.key\n  concord coordinator init --dir dev-coordinator --insecure-http   plain HTTP on 127.0.0.1 (development only)"
    )]
    Init {
        /// Directory to create (must not hold a coordinator yet).
        #[arg(long)]
        dir: PathBuf,
        /// Where modules connect (gRPC over mutual TLS).
        #[arg(long, default_value = "127.0.0.1:7443")]
        grpc_listen: String,
        /// Where the REST API listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http_listen: String,
        /// The database: a PostgreSQL URL (`postgres://user@host:port/db`), which several
        /// coordinators can share; default, a SQLite file in DIR.
        #[arg(long)]
        database: Option<String>,
        /// Another name (DNS name or IP address) the self-signed API certificate is valid
        /// for, besides 127.0.0.1 and localhost; repeat for each.
        #[arg(long = "api-name", value_name = "NAME")]
        api_names: Vec<String>,
        /// The operator's API certificate chain (PEM, the server's certificate first) instead
        /// of a self-signed one; with --api-key.
        #[arg(
            long,
            requires = "api_key",
            conflicts_with = "api_names",
            value_name = "FILE"
        )]
        api_cert: Option<PathBuf>,
        /// The private key of --api-cert (PEM; keep it mode 0600).
        #[arg(long, requires = "api_cert", value_name = "FILE")]
        api_key: Option<PathBuf>,
        /// Serve the API over plain HTTP, without TLS: development only, and only on a
        /// loopback --http-listen address.
        #[arg(long, conflicts_with_all = ["api_names", "api_cert", "api_key"])]
        insecure_http: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the coordinator.
    #[command(
        after_help = "Examples:\n  concord coordinator run --config /srv/concord/coordinator\n  concord coordinator run --config dev-coordinator --insecure-http   plain HTTP on a loopback address (development only)"
    )]
    Run {
        /// The coordinator directory or its coordinator.toml.
        #[arg(long)]
        config: PathBuf,
        /// Serve the API over plain HTTP even if the configuration has [api_tls]:
        /// development only, refused unless http_listen is a loopback address.
        #[arg(long)]
        insecure_http: bool,
    },
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum ModuleCommand {
    /// Create a module: its sealed vault (identity and sealing keys) and its configuration.
    #[command(
        after_help = "Example:\n  concord module init --dir m1 --id m1 --coordinator 10.0.0.5:7443 --coordinator-key d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a --passphrase-env CONCORD_PASS --admin 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c --admin-quorum 1"
    )]
    Init {
        /// Directory to create.
        #[arg(long)]
        dir: PathBuf,
        /// The module's id.
        #[arg(long)]
        id: String,
        /// The coordinator's gRPC address.
        #[arg(long)]
        coordinator: String,
        /// The coordinator's identity key (hex), as `concord coordinator init` printed it.
        #[arg(long)]
        coordinator_key: PublicIdentity,
        /// Read the vault passphrase from this environment variable.
        #[arg(long, conflicts_with_all = ["passphrase_file", "hsm"])]
        passphrase_env: Option<String>,
        /// Read the vault passphrase from this file.
        #[arg(long, conflicts_with = "hsm")]
        passphrase_file: Option<PathBuf>,
        /// Keep the vault's key-encryption key, the module's identity key and its own
        /// multisig key in an HSM: the path of its PKCS#11 library (e.g.
        /// /usr/lib/softhsm/libsofthsm2.so). The keys are generated inside the token and
        /// never leave it.
        #[arg(long, value_name = "PKCS11_LIBRARY")]
        hsm: Option<PathBuf>,
        /// The HSM token, by its label.
        #[arg(long, requires = "hsm", conflicts_with = "slot")]
        token: Option<String>,
        /// The HSM token, by its slot id.
        #[arg(long, requires = "hsm")]
        slot: Option<u64>,
        /// Read the HSM user PIN from this environment variable.
        #[arg(long, requires = "hsm", conflicts_with = "pin_file")]
        pin_env: Option<String>,
        /// Read the HSM user PIN from this file.
        #[arg(long, requires = "hsm")]
        pin_file: Option<PathBuf>,
        /// An admin's public key (hex, as `concord keys new` prints it); repeat for each
        /// admin. The module pins them for good: every policy it will accept must be signed
        /// by a quorum of them (or of the admins a policy they signed installs).
        #[arg(long = "admin", required = true)]
        admins: Vec<PublicIdentity>,
        /// How many admins must sign a policy.
        #[arg(long)]
        admin_quorum: u16,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the module's public keys (to enroll it at the coordinator).
    #[command(after_help = "Example:\n  concord module show --config m1 --json > m1.json")]
    Show {
        /// The module directory or its module.toml.
        #[arg(long)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pin another module's identity key: this module will join groups only with pinned peers.
    #[command(
        after_help = "Example:\n  concord module pin --config m1 --peer d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )]
    Pin {
        /// The module directory or its module.toml.
        #[arg(long)]
        config: PathBuf,
        /// The peer's identity key (hex).
        #[arg(long)]
        peer: PublicIdentity,
    },
    /// Store safe primes made elsewhere (e.g. on an offline machine) for a group this module
    /// will join, so that preparing the group skips generating them. The file is in the
    /// stored-primes format; primes anyone else has seen protect nothing.
    #[command(
        after_help = "Example:\n  concord module preload-primes --config m1 --group desk --file desk-m1.primes"
    )]
    PreloadPrimes {
        /// The module directory or its module.toml.
        #[arg(long)]
        config: PathBuf,
        /// The group the primes are for.
        #[arg(long)]
        group: String,
        /// The primes file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Store the secret of this module's own read-only API key for an exchange connection
    /// in its vault (the key's public part is `read_api_key` in module.toml).
    #[command(
        after_help = "Example:\n  concord module exchange-key --config m1 --exchange binance --secret-file m1-read.secret"
    )]
    ExchangeKey {
        /// The module directory or its module.toml.
        #[arg(long)]
        config: PathBuf,
        /// The exchange connection's name.
        #[arg(long)]
        exchange: String,
        /// File holding the secret (HMAC secret, or PKCS#8 PEM for an Ed25519 key); delete it
        /// afterwards.
        #[arg(long)]
        secret_file: PathBuf,
        /// The secret is the withdraw-capable key this module holds whole (`withdraw_api_key`
        /// in module.toml: the holder of the policy's held credential, e.g. Kraken's), not
        /// its read key.
        #[arg(long)]
        withdraw: bool,
    },
    /// Show the module's audit trail (every proposal seen, approval, refusal, signature
    /// released and policy adopted), or verify that it is whole: `--verify` checks every
    /// entry's seal and that each follows the one before, and names the first broken entry.
    #[command(
        after_help = "Examples:\n  concord module audit --config m1 --verify\n  concord module audit --config m1 --last 20"
    )]
    Audit {
        /// The module directory or its module.toml.
        #[arg(long)]
        config: PathBuf,
        /// Verify the whole trail; exits with an error naming the first broken entry.
        #[arg(long)]
        verify: bool,
        /// Show only the last N entries.
        #[arg(long)]
        last: Option<usize>,
        /// Print JSON (one entry per line).
        #[arg(long)]
        json: bool,
    },
    /// Run the module daemon.
    #[command(after_help = "Example:\n  concord module run --config m1")]
    Run {
        /// The module directory or its module.toml.
        #[arg(long)]
        config: PathBuf,
    },
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.sync_all()?;
    Ok(())
}

/// Warns when a private key file can be read by others than its owner.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the API's private key can be read by other users: chmod 600 it"
            );
        }
    }
}

/// Whether every address `listen` (`host:port`) resolves to is a loopback address.
pub(crate) fn is_loopback_listen(listen: &str) -> bool {
    use std::net::ToSocketAddrs as _;
    listen
        .to_socket_addrs()
        .map(|addrs| {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        })
        .unwrap_or(false)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

pub async fn coordinator(cmd: CoordinatorCommand) -> Result<()> {
    match cmd {
        CoordinatorCommand::Init {
            dir,
            grpc_listen,
            http_listen,
            database,
            api_names,
            api_cert,
            api_key,
            insecure_http,
            json,
        } => {
            let config_file = dir.join("coordinator.toml");
            if config_file.exists() {
                bail!("{} already holds a coordinator", dir.display());
            }
            if insecure_http && !is_loopback_listen(&http_listen) {
                return Err(crate::output::usage(format!(
                    "--insecure-http serves the API without TLS, which is allowed on a loopback \
                     address only, and --http-listen {http_listen} is not one: listen on \
                     127.0.0.1, or leave --insecure-http out (HTTPS)"
                )));
            }
            // The operator's certificate is checked before anything is written.
            let operator_tls = match (api_cert, api_key) {
                (Some(cert), Some(key)) => {
                    let (cert, key) = (std::path::absolute(&cert)?, std::path::absolute(&key)?);
                    let (chain, k) = concord_wire::api_tls::load_pem(&cert, &key)?;
                    concord_wire::api_tls::server_config(chain, k)?;
                    let fingerprint = concord_wire::api_tls::fingerprint_of_pem(&cert)?;
                    Some((
                        concord_coordinator::config::ApiTlsSettings { cert, key },
                        fingerprint,
                    ))
                }
                _ => None,
            };
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let (api_tls, api_fingerprint) = if insecure_http {
                (None, None)
            } else if let Some((settings, fingerprint)) = operator_tls {
                (Some(settings), Some(fingerprint))
            } else {
                let made = concord_wire::api_tls::self_signed(&api_names)?;
                let cert = dir.join("api.crt");
                std::fs::write(&cert, &made.cert_pem)
                    .with_context(|| format!("cannot write {}", cert.display()))?;
                write_private(&dir.join("api.key"), made.key_pem.as_bytes())?;
                (
                    Some(concord_coordinator::config::ApiTlsSettings {
                        cert: "api.crt".into(),
                        key: "api.key".into(),
                    }),
                    Some(made.fingerprint),
                )
            };
            let identity = IdentityKey::generate(&mut rand::rngs::OsRng);
            write_private(
                &dir.join("identity.key"),
                hex::encode(&identity.to_seed()[..]).as_bytes(),
            )?;
            let config = concord_coordinator::config::Config {
                grpc_listen,
                http_listen,
                database: database.as_deref().unwrap_or("coordinator.db").into(),
                identity_key: "identity.key".into(),
                instance: Some(uuid::Uuid::new_v4().to_string()),
                api_tls,
                insecure_http,
                timeouts: Default::default(),
                presignatures: 2,
                chain: None,
                exchanges: Vec::new(),
                utxo: None,
            };
            config.save(&config_file)?;
            let store = match &database {
                Some(url) => concord_coordinator::store::Store::open_url(url).await?,
                None => {
                    concord_coordinator::store::Store::open(&dir.join("coordinator.db")).await?
                }
            };
            let c = concord_coordinator::Coordinator::new(store, Default::default()).await?;
            let token = concord_coordinator::api::create_token(
                &c,
                "admin",
                concord_coordinator::api::TokenRole::Admin,
            )
            .await?;
            write_private(&dir.join("admin.token"), token.as_bytes())?;
            let public = identity.public();
            let api_url = format!(
                "{}://{}",
                if insecure_http { "http" } else { "https" },
                config.http_listen
            );
            if json {
                crate::outln!(
                    "{}",
                    serde_json::json!({
                        "config": config_file, "identity": public.to_string(),
                        "fingerprint": public.fingerprint(), "token_file": dir.join("admin.token"),
                        "api_url": api_url,
                        "api_fingerprint": api_fingerprint.map(|f| f.to_string()),
                    })
                );
            } else {
                crate::outln!("Coordinator created in {}", dir.display());
                crate::outln!("  identity key     {public}");
                crate::outln!(
                    "  fingerprint      {}   (compare it when you set up each module)",
                    public.fingerprint()
                );
                crate::outln!("  admin token      {}", dir.join("admin.token").display());
                crate::outln!("  API              {api_url}");
                match api_fingerprint {
                    Some(f) => crate::outln!(
                        "  API certificate  sha256 {f}   (give it to CLI users: --api-pin or CONCORD_API_PIN)"
                    ),
                    None => crate::outln!(
                        "  API certificate  none: PLAIN HTTP (insecure_http), for development on this machine only"
                    ),
                }
            }
            Ok(())
        }
        CoordinatorCommand::Run {
            config,
            insecure_http,
        } => {
            let path = config_path(&config, "coordinator.toml");
            let mut cfg = concord_coordinator::config::Config::load(&path)?;
            if insecure_http {
                cfg.insecure_http = true;
                cfg.api_tls = None;
            }
            let api = cfg.api_transport()?;
            let api_fingerprint = match &cfg.api_tls {
                Some(tls) => {
                    warn_if_readable_by_others(&tls.key);
                    Some(concord_wire::api_tls::fingerprint_of_pem(&tls.cert)?)
                }
                None => None,
            };
            let identity = concord_coordinator::load_identity(&cfg.identity_key)?;
            let store =
                concord_coordinator::store::Store::open_url(&cfg.database.to_string_lossy())
                    .await?;
            let mut c =
                concord_coordinator::Coordinator::new(store, (&cfg.timeouts).into()).await?;
            if let Some(chain) = cfg.chain.clone() {
                c = c.with_transfers(chain, cfg.exchanges.clone(), cfg.utxo.clone())?;
            }
            if let Some(instance) = &cfg.instance {
                c = c.with_instance(instance);
            }
            c.start_presignature_pool(cfg.presignatures);
            let grpc = tokio::net::TcpListener::bind(&cfg.grpc_listen)
                .await
                .with_context(|| format!("cannot listen on {} for modules", cfg.grpc_listen))?;
            let http = tokio::net::TcpListener::bind(&cfg.http_listen)
                .await
                .with_context(|| format!("cannot listen on {} for the API", cfg.http_listen))?;
            let http_addr = http.local_addr()?;
            match api_fingerprint {
                Some(f) => {
                    tracing::info!(grpc = %grpc.local_addr()?, api = %format!("https://{http_addr}"), api_fingerprint = %f, fingerprint = %identity.public().fingerprint(), "coordinator listening")
                }
                None => {
                    concord_coordinator::config::check_insecure_listen(http_addr)?;
                    eprintln!(
                        "WARNING: the API is served over PLAIN HTTP on {http_addr} (insecure_http): \
                         tokens and requests travel unencrypted. Development on this machine only."
                    );
                    tracing::info!(grpc = %grpc.local_addr()?, api = %format!("http://{http_addr}"), fingerprint = %identity.public().fingerprint(), "coordinator listening")
                }
            }
            concord_coordinator::serve(c, &identity, grpc, http, api, shutdown_signal()).await?;
            Ok(())
        }
    }
}

fn load_module(config: &Path) -> Result<(concord_module::Config, concord_module::State)> {
    let path = config_path(config, "module.toml");
    let cfg = concord_module::Config::load(&path)?;
    let state = concord_module::open_state(&cfg)?;
    Ok((cfg, state))
}

pub async fn module(cmd: ModuleCommand) -> Result<()> {
    match cmd {
        ModuleCommand::Init {
            dir,
            id,
            coordinator,
            coordinator_key,
            passphrase_env,
            passphrase_file,
            hsm,
            token,
            slot,
            pin_env,
            pin_file,
            admins,
            admin_quorum,
            json,
        } => {
            let admins = concord_wire::authority::AdminSet::new(admins, admin_quorum)
                .map_err(|e| anyhow::anyhow!("--admin/--admin-quorum: {e}"))?;
            let (passphrase, hsm) = match (passphrase_env, passphrase_file, hsm) {
                (Some(var), None, None) => (Some(PassphraseSource::Env(var)), None),
                (None, Some(file), None) => (
                    Some(PassphraseSource::File(std::path::absolute(&file)?)),
                    None,
                ),
                (None, None, Some(library)) => {
                    let token = match (token, slot) {
                        (Some(label), None) => concord_vault::TokenSelector::Label(label),
                        (None, Some(slot)) => concord_vault::TokenSelector::Slot(slot),
                        _ => {
                            bail!("say which HSM token holds the keys: --token LABEL or --slot ID")
                        }
                    };
                    let pin = match (pin_env, pin_file) {
                        (Some(var), None) => PassphraseSource::Env(var),
                        (None, Some(file)) => PassphraseSource::File(std::path::absolute(&file)?),
                        _ => bail!(
                            "say where the HSM PIN comes from: --pin-env VAR or --pin-file FILE (never the command line)"
                        ),
                    };
                    let library = std::path::absolute(&library)?;
                    (
                        None,
                        Some(concord_vault::Pkcs11Config {
                            library,
                            token,
                            pin,
                        }),
                    )
                }
                _ => bail!(
                    "say where the vault's key comes from: --passphrase-env VAR, --passphrase-file FILE, or --hsm PKCS11_LIBRARY with --token/--slot and --pin-env/--pin-file"
                ),
            };
            let config_file = dir.join("module.toml");
            if config_file.exists() {
                bail!("{} already holds a module", dir.display());
            }
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let dir = std::path::absolute(&dir)?;
            let config = concord_module::Config {
                id: id.clone(),
                coordinator: concord_module::config::CoordinatorConfig {
                    address: coordinator,
                    also: Vec::new(),
                    identity: coordinator_key,
                },
                vault: concord_module::config::VaultConfig {
                    dir: dir.join("vault"),
                    passphrase,
                    hsm,
                },
                checks: Default::default(),
                chain: None,
                exchanges: Vec::new(),
                utxo: None,
                metrics: None,
            };
            let keys = config.vault.keys()?;
            eprintln!(
                "{}",
                if keys.token.is_some() {
                    "Creating the sealed vault (its key, the module's identity key and its multisig key generated in the HSM)…"
                } else {
                    "Creating the sealed vault (deriving the key from the passphrase)…"
                }
            );
            let state = concord_module::State::create_with(
                &id,
                &config.vault.dir,
                keys.kek.as_ref(),
                config.checks.clone(),
                keys.token.as_ref(),
            )?;
            state.pin_admins(&admins)?;
            config.save(&config_file)?;
            if !json {
                eprintln!(
                    "Pinned {} admin key(s), quorum {}: the module accepts only policies they sign.",
                    admins.keys.len(),
                    admins.quorum
                );
            }
            print_info(&state.public_info(), json);
            Ok(())
        }
        ModuleCommand::Show { config, json } => {
            let (_, state) = load_module(&config)?;
            print_info(&state.public_info(), json);
            Ok(())
        }
        ModuleCommand::Pin { config, peer } => {
            let (_, state) = load_module(&config)?;
            if state.pin_peer(peer)? {
                crate::outln!("Pinned peer {peer} (fingerprint {}).", peer.fingerprint());
            } else {
                crate::outln!("Peer {peer} was already pinned.");
            }
            Ok(())
        }
        ModuleCommand::PreloadPrimes {
            config,
            group,
            file,
        } => {
            let (_, state) = load_module(&config)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let primes = concord_tss::ecdsa::Primes::from_bytes(&bytes)
                .with_context(|| format!("{} does not hold stored safe primes", file.display()))?;
            state.save_primes(&group, &primes)?;
            crate::outln!("Stored safe primes for group {group}.");
            Ok(())
        }
        ModuleCommand::ExchangeKey {
            config,
            exchange,
            secret_file,
            withdraw,
        } => {
            let (_, state) = load_module(&config)?;
            let secret = zeroize::Zeroizing::new(
                std::fs::read_to_string(&secret_file)
                    .with_context(|| format!("cannot read {}", secret_file.display()))?,
            );
            if withdraw {
                state.save_withdraw_secret(&exchange, secret.trim().as_bytes())?;
                crate::outln!(
                    "Stored the withdraw key's secret for exchange {exchange} in the vault: this module sends only requests a certificate of the members' approvals allows."
                );
            } else {
                state.save_exchange_secret(&exchange, secret.trim().as_bytes())?;
                crate::outln!("Stored the read key's secret for exchange {exchange} in the vault.");
            }
            Ok(())
        }
        ModuleCommand::Audit {
            config,
            verify,
            last,
            json,
        } => {
            let cfg = concord_module::Config::load(&config_path(&config, "module.toml"))?;
            let trail = concord_module::verify_audit(&cfg)?;
            let v = match trail {
                Ok(v) => v,
                Err(broken) => bail!("{broken}"),
            };
            let (seq, head) = v.head;
            if !verify || json || last.is_some() {
                let skip = last.map_or(0, |n| v.entries.len().saturating_sub(n));
                for (e, hash) in v.entries.iter().zip(&v.hashes).skip(skip) {
                    if json {
                        let mut line = serde_json::to_value(e).unwrap_or_default();
                        line["hash"] = serde_json::Value::String(hex::encode(hash));
                        crate::outln!("{line}");
                    } else {
                        crate::outln!("{}", show_entry(e));
                    }
                }
            }
            if verify {
                crate::outln!(
                    "The audit trail of module {} is intact: {} entries, each sealed and following the one before; the last is #{seq} ({}).",
                    cfg.id,
                    v.entries.len(),
                    hex::encode(head)
                );
                if v.cut_short {
                    crate::outln!(
                        "Its file ends in an entry written only in part (the module stopped while appending it; the answer it would have recorded never left): the module cuts it off when it starts."
                    );
                }
            }
            Ok(())
        }
        ModuleCommand::Run { config } => {
            let (cfg, state) = load_module(&config)?;
            tracing::info!(module = %cfg.id, fingerprint = %state.identity().public().fingerprint(), "module starting");
            concord_module::run(cfg, state, shutdown_signal()).await?;
            Ok(())
        }
    }
}

/// One audit entry on one line.
fn show_entry(e: &concord_module::audit::Entry) -> String {
    use concord_module::audit::Event;
    let what = match &e.event {
        Event::ProposalSeen { job, digest, .. } => {
            format!(
                "proposal seen     job {job}, digest {}…",
                digest.get(..16).unwrap_or(digest)
            )
        }
        Event::Approved {
            job,
            intent,
            policy,
            ..
        } => format!(
            "approved          job {job}, intent {intent}, policy {}…",
            policy.get(..16).unwrap_or(policy)
        ),
        Event::Refused {
            job, code, reason, ..
        } => {
            format!("refused ({code})  job {job}: {reason}")
        }
        Event::SignatureReleased { job, kind, .. } => {
            format!("signature released ({kind}) job {job}")
        }
        Event::ApprovalReleased { job, reason } => {
            format!("approval released job {job}: {reason}")
        }
        Event::HeldSendFound {
            job,
            transfer,
            withdrawal,
        } => format!(
            "lost answer found job {job}: transfer {transfer} is withdrawal {withdrawal} at the exchange"
        ),
        Event::PolicyAdopted { version, policy } => format!(
            "policy adopted    v{version} ({}…)",
            policy.get(..16).unwrap_or(policy)
        ),
    };
    format!("#{:<6} {} {what}", e.seq, e.time_ms)
}

fn print_info(info: &concord_module::PublicInfo, json: bool) {
    if json {
        crate::outln!("{}", serde_json::to_string(info).unwrap_or_default());
    } else {
        crate::outln!("Module {}", info.id);
        crate::outln!("  identity key           {}", info.identity);
        crate::outln!(
            "  fingerprint            {}   (compare it when enrolling)",
            info.fingerprint
        );
        crate::outln!("  sealing key            {}", info.sealing_key);
        crate::outln!("  sealing key signature  {}", info.sealing_key_signature);
        crate::outln!("  multisig key           {}", info.multisig_key);
        crate::outln!("  multisig key signature {}", info.multisig_key_signature);
        crate::outln!(
            "  multisig address       {}   (a Safe owner)",
            info.multisig_address
        );
    }
}

/// `concord exchange-sim --config F`: runs the exchange simulator until stopped.
pub async fn exchange_sim(config: &Path) -> Result<()> {
    let cfg = concord_exchange_sim::load_config(config)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the exchange API", cfg.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "exchange simulator listening");
    concord_exchange_sim::serve(cfg, listener, shutdown_signal()).await?;
    Ok(())
}
