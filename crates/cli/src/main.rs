//! `concord`: every operator and trader action.
//!
//! - `concord coordinator init|run` and `concord module init|show|pin|run` set up and run
//!   the services (each its own OS process);
//! - `concord modules|groups|wallets|sign|jobs …` talk to the coordinator's REST API
//!   (`--url`, and the API token from `--token-file` or `CONCORD_TOKEN`).
//!
//! Every command that prints a result takes `--json`.

mod authority;
mod bench;
mod client;
mod demo;
mod devnet;
mod import;
mod services;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "concord",
    version,
    about = "Concord: threshold custody for transfers between wallets and exchanges"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up or run the coordinator.
    Coordinator {
        #[command(subcommand)]
        command: services::CoordinatorCommand,
    },
    /// Make and show requester keys (Ed25519, in files): traders, approvers, importers,
    /// admins.
    Keys {
        #[command(subcommand)]
        command: authority::KeysCommand,
    },
    /// Propose, sign (as an admin) and show the policy every module enforces.
    Policy {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        command: authority::PolicyCommand,
    },
    /// Create and list the coordinator's API tokens and their roles.
    Tokens {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        command: authority::TokensCommand,
    },
    /// Set up, inspect or run a secure module.
    Module {
        #[command(subcommand)]
        command: services::ModuleCommand,
    },
    /// Enroll and list modules at the coordinator.
    Modules {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        command: client::ModulesCommand,
    },
    /// Create and inspect signer groups.
    Groups {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        command: client::GroupsCommand,
    },
    /// Create and list wallets.
    Wallets {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        command: client::WalletsCommand,
    },
    /// Ask a wallet's modules to approve and sign a message.
    Sign {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(flatten)]
        args: client::SignArgs,
    },
    /// Load tests against a running system.
    Bench {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Deposit from a wallet to an exchange: every module resolves the deposit address itself.
    Deposit {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(flatten)]
        args: client::TransferArgs,
    },
    /// Withdraw from an exchange to a wallet's own address, signed by the module group.
    Withdraw {
        #[command(flatten)]
        api: client::ApiArgs,
        #[command(flatten)]
        args: client::TransferArgs,
    },
    /// List transfers, or show one.
    Transfers {
        #[command(flatten)]
        api: client::ApiArgs,
        /// A transfer id.
        id: Option<String>,
        /// Follow the transfer until it is final.
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A whole local system: anvil, exchange simulator, coordinator and three modules.
    Devnet {
        #[command(subcommand)]
        command: devnet::DevnetCommand,
    },
    /// Run the exchange simulator (a local Binance wallet-API subset over a local chain).
    ExchangeSim {
        /// Its configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Show a job: its steps, approvals, dissents and result.
    Jobs {
        #[command(flatten)]
        api: client::ApiArgs,
        /// The job id.
        id: String,
        /// Wait until the job is done or failed, showing progress.
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Sign repeatedly for a while and print latency percentiles and throughput.
    Sign(bench::BenchArgs),
    /// On a devnet of its own: deposit latency (request → accepted by anvil) and
    /// withdraw-request signing latency, as a table.
    Transfers(bench::TransferBenchArgs),
    /// On a devnet of its own: transfers through coordinator kills and exchange faults,
    /// counted from the chain and the exchange (completed, duplicated, lost, completion
    /// times, failover time), as a table.
    Soak(bench::SoakArgs),
}

/// Where to find a configuration file when only a directory is given.
pub(crate) fn config_path(dir_or_file: &std::path::Path, name: &str) -> PathBuf {
    if dir_or_file.is_dir() {
        dir_or_file.join(name)
    } else {
        dir_or_file.to_path_buf()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONCORD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Coordinator { command } => services::coordinator(command).await,
            Command::Module { command } => services::module(command).await,
            Command::Keys { command } => authority::keys(command),
            Command::Policy { api, command } => authority::policy(&api, command).await,
            Command::Tokens { api, command } => authority::tokens(&api, command).await,
            Command::Modules { api, command } => client::modules(&api, command).await,
            Command::Groups { api, command } => client::groups(&api, command).await,
            Command::Wallets { api, command } => client::wallets(&api, command).await,
            Command::Sign { api, args } => client::sign(&api, args).await,
            Command::Deposit { api, args } => client::deposit(&api, args).await,
            Command::Withdraw { api, args } => client::withdraw(&api, args).await,
            Command::Transfers {
                api,
                id,
                wait,
                json,
            } => client::transfers(&api, id, wait, json).await,
            Command::Devnet { command } => devnet::run(command).await,
            Command::ExchangeSim { config } => services::exchange_sim(&config).await,
            Command::Jobs {
                api,
                id,
                wait,
                json,
            } => client::job(&api, &id, wait, json).await,
            Command::Bench {
                api,
                command: BenchCommand::Sign(args),
            } => bench::sign(&api, args).await,
            Command::Bench {
                command: BenchCommand::Transfers(args),
                ..
            } => bench::transfers(args).await,
            Command::Bench {
                command: BenchCommand::Soak(args),
                ..
            } => bench::soak(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
